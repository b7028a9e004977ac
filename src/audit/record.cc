// The audit record's payload (JSON) and the chain hash;
// docs/formats/audit.md.
#include <openssl/evp.h>
#include <simdjson.h>
#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "audit/audit.h"
#include "audit/log_format.h"
#include "core/text.h"

namespace minpanel::audit {
namespace {

void AppendField(std::string_view name, std::string_view value, std::string* out) {
  out->append(",\"");
  out->append(name);
  out->append("\":");
  AppendJsonString(value, out);
}

void AppendNumber(std::string_view name, uint64_t value, std::string* out) {
  out->append(",\"");
  out->append(name);
  out->append("\":");
  out->append(std::to_string(value));
}

void AppendList(std::string_view name, const std::vector<std::string>& values, std::string* out) {
  out->append(",\"");
  out->append(name);
  out->append("\":[");
  for (size_t value_idx = 0; value_idx < values.size(); ++value_idx) {
    if (value_idx > 0) {
      out->push_back(',');
    }
    AppendJsonString(values[value_idx], out);
  }
  out->push_back(']');
}

Status StringList(simdjson::dom::element root, const char* name, std::vector<std::string>* out) {
  simdjson::dom::array array;
  if (root[name].get(array)) {
    return Status::Corruption(std::string("audit record: '") + name + "' is not a list");
  }
  if (array.size() > kRecordListItemsMax) {
    return Status::Corruption(std::string("audit record: '") + name + "' is over " +
                              std::to_string(kRecordListItemsMax) + " items");
  }
  for (simdjson::dom::element item : array) {
    std::string_view text;
    if (item.get(text)) {
      return Status::Corruption(std::string("audit record: '") + name + "' holds a non-string");
    }
    out->emplace_back(text);
  }
  return Status::Ok();
}

// SHA-256 through OpenSSL's EVP, whose SHA-NI / AVX2 code hashes a
// 300-byte record about 4x faster here than libsodium's portable C (0.7
// against 3.2 us): the chain walk of a year's log is mostly this. The
// digest is fetched once (an implicit fetch per use costs as much again).
// A failure here is the library's, not the input's: it crashes loudly.
class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new()) {
    static EVP_MD* const kDigest = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    Require(context_ != nullptr && kDigest != nullptr &&
            EVP_DigestInit_ex(context_, kDigest, nullptr) == 1);
  }
  ~Sha256() { EVP_MD_CTX_free(context_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* bytes, size_t size) {
    Require(EVP_DigestUpdate(context_, bytes, size) == 1);
  }
  std::array<uint8_t, kHashBytes> Final() {
    std::array<uint8_t, kHashBytes> hash{};
    unsigned int size = 0;
    Require(EVP_DigestFinal_ex(context_, hash.data(), &size) == 1 && size == kHashBytes);
    return hash;
  }

 private:
  static void Require(bool ok) {
    if (!ok) {
      std::fprintf(stderr, "audit: OpenSSL's SHA-256 failed\n");
      std::abort();
    }
  }
  EVP_MD_CTX* context_;
};

}  // namespace

std::string Sha256Hex(std::string_view text) {
  Sha256 digest;
  digest.Update(text.data(), text.size());
  return HexOf(digest.Final());
}

std::string HexOf(const std::array<uint8_t, kHashBytes>& hash) {
  std::string hex(kHashBytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), hash.data(), hash.size());
  hex.pop_back();
  return hex;
}

std::array<uint8_t, kHashBytes> ChainHash(const std::array<uint8_t, kHashBytes>& previous,
                                          std::string_view payload) {
  Sha256 digest;
  digest.Update(previous.data(), previous.size());
  const auto length = static_cast<uint32_t>(payload.size());
  const uint8_t length_bytes[4] = {static_cast<uint8_t>(length), static_cast<uint8_t>(length >> 8),
                                   static_cast<uint8_t>(length >> 16),
                                   static_cast<uint8_t>(length >> 24)};
  digest.Update(length_bytes, sizeof(length_bytes));
  digest.Update(payload.data(), payload.size());
  return digest.Final();
}

std::string EncodeEntry(const AuditEntry& entry) {
  std::string out =
      "{\"seq\":" + std::to_string(entry.seq) + ",\"time_ms\":" + std::to_string(entry.time_ms);
  AppendField("key", entry.key, &out);
  AppendField("act", entry.act, &out);
  AppendField("route", entry.route, &out);
  out.append(",\"projects\":[");
  for (size_t project_idx = 0; project_idx < entry.projects.size(); ++project_idx) {
    out.append(project_idx == 0 ? "" : ",");
    out.append(std::to_string(entry.projects[project_idx]));
  }
  out.push_back(']');
  AppendField("params_sha256", entry.params_sha256, &out);
  AppendList("events", entry.events, &out);
  AppendList("properties", entry.properties, &out);
  AppendNumber("rows", entry.rows, &out);
  AppendNumber("subjects", entry.subjects, &out);
  AppendNumber("bytes", entry.bytes, &out);
  AppendField("subjects_file", entry.subjects_file, &out);
  AppendField("subjects_sha256", entry.subjects_sha256, &out);
  AppendField("target", entry.target, &out);
  // Optional: only watermarked exports have it.
  if (!entry.watermark.empty()) {
    AppendField("watermark", entry.watermark, &out);
  }
  // Optional: only exports asked with a reason have it.
  if (!entry.reason.empty()) {
    AppendField("reason", entry.reason, &out);
  }
  // Optional: only records of a request over the network have it.
  if (!entry.address.empty()) {
    AppendField("address", entry.address, &out);
  }
  // Optional: only the records of reads have it; older records lack it.
  if (entry.policy_version.has_value()) {
    AppendNumber("policy_version", *entry.policy_version, &out);
  }
  // Optional: only the records that open a read have it; older ones lack it.
  if (!entry.params.empty()) {
    AppendField("params", entry.params, &out);
  }
  AppendField("outcome", entry.outcome, &out);
  out.push_back('}');
  return out;
}

Result<AuditEntry> DecodeEntry(std::string_view payload) {
  if (payload.size() > kRecordBytesMax) {
    return Status::Corruption("audit record: over " + std::to_string(kRecordBytesMax) + " bytes");
  }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(payload.data(), payload.size()).get(root)) {
    return Status::Corruption("audit record: not JSON");
  }
  AuditEntry entry;
  std::string_view key, act, route, params, subjects_file, subjects_sha256, target, outcome;
  int64_t time_ms = 0;
  simdjson::dom::array projects;
  if (root["seq"].get(entry.seq) || root["time_ms"].get(time_ms) || root["key"].get(key) ||
      root["act"].get(act) || root["route"].get(route) || root["projects"].get(projects) ||
      root["params_sha256"].get(params) || root["rows"].get(entry.rows) ||
      root["subjects"].get(entry.subjects) || root["bytes"].get(entry.bytes) ||
      root["subjects_file"].get(subjects_file) || root["subjects_sha256"].get(subjects_sha256) ||
      root["target"].get(target) || root["outcome"].get(outcome)) {
    return Status::Corruption("audit record: a field is missing or has a wrong type");
  }
  if (projects.size() > kRecordListItemsMax) {
    return Status::Corruption("audit record: 'projects' is over the limit");
  }
  for (simdjson::dom::element project : projects) {
    uint64_t id = 0;
    if (project.get(id) || id > UINT32_MAX) {
      return Status::Corruption("audit record: a project is not a project id");
    }
    entry.projects.push_back(static_cast<uint32_t>(id));
  }
  MP_RETURN_IF_ERROR(StringList(root, "events", &entry.events));
  MP_RETURN_IF_ERROR(StringList(root, "properties", &entry.properties));
  entry.time_ms = time_ms;
  entry.key = key;
  entry.act = act;
  entry.route = route;
  entry.params_sha256 = params;
  entry.subjects_file = subjects_file;
  entry.subjects_sha256 = subjects_sha256;
  entry.target = target;
  std::string_view watermark;
  if (root["watermark"].get(watermark) == simdjson::SUCCESS) {
    entry.watermark = watermark;
  }
  std::string_view reason;
  if (root["reason"].get(reason) == simdjson::SUCCESS) {
    entry.reason = reason;
  }
  std::string_view address;
  if (root["address"].get(address) == simdjson::SUCCESS) {
    entry.address = address;
  }
  simdjson::dom::element policy_version;
  if (root["policy_version"].get(policy_version) == simdjson::SUCCESS) {
    uint64_t version = 0;
    if (policy_version.get(version) || version > UINT32_MAX) {
      return Status::Corruption("audit record: 'policy_version' is not a policy version");
    }
    entry.policy_version = static_cast<uint32_t>(version);
  }
  simdjson::dom::element asked;
  if (root["params"].get(asked) == simdjson::SUCCESS) {
    std::string_view text;
    if (asked.get(text) || text.size() > kRecordParamsBytesMax) {
      return Status::Corruption("audit record: 'params' is not a string of at most " +
                                std::to_string(kRecordParamsBytesMax) + " bytes");
    }
    entry.params = text;
  }
  entry.outcome = outcome;
  return entry;
}

bool Matches(const Filter& filter, const AuditEntry& entry) {
  if (!filter.key.empty() && entry.key != filter.key) {
    return false;
  }
  if (!filter.act.empty() && !entry.act.starts_with(filter.act)) {
    return false;
  }
  if (!filter.route.empty() && entry.route != filter.route) {
    return false;
  }
  if (!filter.target.empty() && entry.target != filter.target) {
    return false;
  }
  if (!filter.reason_prefix.empty() && !entry.reason.starts_with(filter.reason_prefix)) {
    return false;
  }
  if (filter.project.has_value() && std::find(entry.projects.begin(), entry.projects.end(),
                                              *filter.project) == entry.projects.end()) {
    return false;
  }
  return entry.time_ms >= filter.from_ms && entry.time_ms < filter.to_ms;
}

}  // namespace minpanel::audit
