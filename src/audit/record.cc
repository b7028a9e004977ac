// The audit record's payload (JSON) and the chain hash;
// docs/formats/audit.md.
#include <simdjson.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "audit/audit.h"

namespace minpanel::audit {
namespace {

void AppendJsonString(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (byte < 0x20) {
      out->append("\\u00");
      out->push_back(kHex[byte >> 4]);
      out->push_back(kHex[byte & 0xf]);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

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

}  // namespace

std::string Sha256Hex(std::string_view text) {
  std::array<uint8_t, kHashBytes> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const uint8_t*>(text.data()), text.size());
  return HexOf(digest);
}

std::string HexOf(const std::array<uint8_t, kHashBytes>& hash) {
  std::string hex(kHashBytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), hash.data(), hash.size());
  hex.pop_back();
  return hex;
}

std::array<uint8_t, kHashBytes> ChainHash(const std::array<uint8_t, kHashBytes>& previous,
                                          std::string_view payload) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  crypto_hash_sha256_update(&state, previous.data(), previous.size());
  const auto length = static_cast<uint32_t>(payload.size());
  const uint8_t length_bytes[4] = {static_cast<uint8_t>(length), static_cast<uint8_t>(length >> 8),
                                   static_cast<uint8_t>(length >> 16),
                                   static_cast<uint8_t>(length >> 24)};
  crypto_hash_sha256_update(&state, length_bytes, sizeof(length_bytes));
  crypto_hash_sha256_update(&state, reinterpret_cast<const uint8_t*>(payload.data()),
                            payload.size());
  std::array<uint8_t, kHashBytes> hash{};
  crypto_hash_sha256_final(&state, hash.data());
  return hash;
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
  entry.outcome = outcome;
  return entry;
}

namespace {

uint32_t ReadU32(std::string_view bytes, size_t offset) {
  uint32_t value = 0;
  for (size_t byte_idx = 0; byte_idx < 4; ++byte_idx) {
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + byte_idx]))
             << (8 * byte_idx);
  }
  return value;
}

}  // namespace

Result<LogStart> ReadLogStart(std::string_view log_bytes) {
  if (log_bytes.size() < kFileHeaderBytes) {
    if (log_bytes != kFileMagic.substr(0, std::min(log_bytes.size(), kFileMagic.size()))) {
      return Status::Corruption("not an audit log header");
    }
    return Status::NotFound("the header is incomplete");
  }
  const uint32_t version = ReadU32(log_bytes, kFileMagic.size());
  if (log_bytes.substr(0, kFileMagic.size()) != kFileMagic || version == 0 ||
      version > kFileVersionPruned) {
    return Status::Corruption("not an audit log header");
  }
  LogStart start;
  if (version == kFileVersion) {
    return start;
  }
  if (log_bytes.size() < kFileHeaderBytesPruned) {
    return Status::NotFound("the header is incomplete");
  }
  start.header_bytes = kFileHeaderBytesPruned;
  for (size_t byte_idx = 0; byte_idx < 8; ++byte_idx) {
    start.base_seq |= static_cast<uint64_t>(static_cast<uint8_t>(log_bytes[16 + byte_idx]))
                      << (8 * byte_idx);
  }
  std::memcpy(start.base_hash.data(), log_bytes.data() + 24, kHashBytes);
  if (start.base_seq == 0) {
    return Status::Corruption("a pruned log's header names no record");
  }
  return start;
}

std::string PrunedHeader(uint64_t base_seq, const std::array<uint8_t, kHashBytes>& base_hash) {
  std::string header(kFileMagic);
  for (size_t byte_idx = 0; byte_idx < 4; ++byte_idx) {
    header.push_back(static_cast<char>((kFileVersionPruned >> (8 * byte_idx)) & 0xff));
  }
  header.append(4, '\0');
  for (size_t byte_idx = 0; byte_idx < 8; ++byte_idx) {
    header.push_back(static_cast<char>((base_seq >> (8 * byte_idx)) & 0xff));
  }
  header.append(reinterpret_cast<const char*>(base_hash.data()), kHashBytes);
  return header;
}

Decoded DecodeLog(std::string_view log_bytes) {
  Decoded decoded;
  auto start = ReadLogStart(log_bytes);
  if (!start.ok()) {
    decoded.broken = start.status().code() == StatusCode::kCorruption;
    return decoded;
  }
  decoded.base_seq = start->base_seq;
  decoded.base_hash = start->base_hash;
  decoded.head = start->base_hash;
  size_t offset = start->header_bytes;
  decoded.end_offset = offset;
  while (offset < log_bytes.size()) {
    if (log_bytes.size() - offset < 4) {
      return decoded;  // torn tail
    }
    const uint32_t length = ReadU32(log_bytes, offset);
    if (length > kRecordBytesMax) {
      decoded.broken = true;
      return decoded;
    }
    if (log_bytes.size() - offset - 4 < static_cast<uint64_t>(length) + kHashBytes) {
      return decoded;  // torn tail
    }
    const std::string_view payload = log_bytes.substr(offset + 4, length);
    const std::array<uint8_t, kHashBytes> hash = ChainHash(decoded.head, payload);
    if (std::memcmp(hash.data(), log_bytes.data() + offset + 4 + length, kHashBytes) != 0) {
      decoded.broken = true;
      return decoded;
    }
    auto entry = DecodeEntry(payload);
    if (!entry.ok() || entry->seq != decoded.base_seq + decoded.entries.size() + 1) {
      decoded.broken = true;
      return decoded;
    }
    decoded.entries.push_back(std::move(entry).value());
    decoded.head = hash;
    offset += 4 + length + kHashBytes;
    decoded.end_offset = offset;
    decoded.record_ends.push_back(offset);
  }
  return decoded;
}

Result<AnchorLine> ParseAnchorLine(std::string_view line) {
  AnchorLine anchor;
  const size_t first_space = line.find(' ');
  // npos first: line.data() + npos would overflow the pointer.
  if (first_space == std::string_view::npos || line.size() < first_space + 1 + kHashBytes * 2) {
    return Status::Corruption("malformed");
  }
  const auto parsed = std::from_chars(line.data(), line.data() + first_space, anchor.seq);
  if (parsed.ec != std::errc() || parsed.ptr != line.data() + first_space) {
    return Status::Corruption("malformed");
  }
  anchor.hash_hex = line.substr(first_space + 1, kHashBytes * 2);
  // "SEQ HASH TIME" is what a signature covers; a fourth field is the signature.
  const size_t signature_space = line.find(' ', first_space + 1 + kHashBytes * 2 + 1);
  anchor.signed_text = line.substr(0, signature_space);
  if (signature_space != std::string_view::npos) {
    anchor.signature_hex = line.substr(signature_space + 1);
  }
  return anchor;
}

namespace {

// Checks one anchor line against the chain's hashes (positions base+1 on)
// and, given a key, its signature. Empty when it holds.
std::string CheckAnchor(const AnchorLine& anchor, uint64_t line_number, uint64_t base_seq,
                        const std::array<uint8_t, kHashBytes>& base_hash,
                        const std::vector<std::array<uint8_t, kHashBytes>>& hashes,
                        const PublicKey* public_key, VerifyReport* report) {
  const std::string name = "anchor " + std::to_string(line_number);
  if (!anchor.signature_hex.empty() && public_key != nullptr) {
    if (!AnchorSignatureValid(*public_key, anchor.signed_text, anchor.signature_hex)) {
      return name + " (record " + std::to_string(anchor.seq) +
             "): its signature does not verify under the audit public key (a forged "
             "checkpoint, or another key)";
    }
    ++report->signed_checkpoints;
  }
  if (anchor.seq == 0 || anchor.seq < base_seq) {
    return "";  // an anchor of an empty log, or of a pruned record
  }
  if (anchor.seq == base_seq) {
    if (HexOf(base_hash) != anchor.hash_hex) {
      return name + ": record " + std::to_string(anchor.seq) +
             "'s hash differs from the one the pruned log starts after";
    }
    if (!anchor.signature_hex.empty()) {
      report->base_vouched = true;
    }
    ++report->anchors;
    return "";
  }
  if (anchor.seq > base_seq + hashes.size()) {
    return name + " names record " + std::to_string(anchor.seq) + " but the log ends at record " +
           std::to_string(base_seq + hashes.size()) + " (truncated or records dropped)";
  }
  if (HexOf(hashes[anchor.seq - base_seq - 1]) != anchor.hash_hex) {
    return name + ": record " + std::to_string(anchor.seq) +
           "'s chain hash differs from the anchored one (the chain was rewritten)";
  }
  ++report->anchors;
  return "";
}

}  // namespace

VerifyReport VerifyBytes(std::string_view log_bytes, std::string_view anchors_text,
                         const PublicKey* public_key) {
  VerifyReport report;
  const Decoded decoded = DecodeLog(log_bytes);
  report.records = decoded.entries.size();
  report.base_seq = decoded.base_seq;
  report.head_hash_hex = HexOf(decoded.head);
  const uint64_t next = decoded.base_seq + decoded.entries.size() + 1;
  if (decoded.broken && decoded.end_offset == 0) {
    report.problem = "the log does not start with the audit log header (" +
                     std::string(kFileMagic) +
                     ", version <= " + std::to_string(kFileVersionPruned) + ")";
    return report;
  }
  if (decoded.broken) {
    report.problem = "record " + std::to_string(next) + " (at byte " +
                     std::to_string(decoded.end_offset) +
                     ") is broken: its hash, sequence number or contents do not follow record " +
                     std::to_string(next - 1) + " (edited, dropped, inserted or reordered records)";
    return report;
  }
  report.torn_tail_bytes = log_bytes.size() > decoded.end_offset && decoded.end_offset > 0
                               ? log_bytes.size() - decoded.end_offset
                               : 0;
  // Hashes of every position after the base, for the anchors.
  std::vector<std::array<uint8_t, kHashBytes>> hashes;
  hashes.reserve(decoded.entries.size());
  {
    const auto start = ReadLogStart(log_bytes);
    std::array<uint8_t, kHashBytes> head = decoded.base_hash;
    size_t offset = start.ok() ? start->header_bytes : kFileHeaderBytes;
    for (size_t record_idx = 0; record_idx < decoded.entries.size(); ++record_idx) {
      const uint32_t length = ReadU32(log_bytes, offset);
      head = ChainHash(head, log_bytes.substr(offset + 4, length));
      hashes.push_back(head);
      offset += 4 + length + kHashBytes;
    }
  }
  size_t line_start = 0;
  uint64_t line_number = 0;
  while (line_start < anchors_text.size()) {
    size_t line_end = anchors_text.find('\n', line_start);
    if (line_end == std::string_view::npos) {
      break;  // a torn last anchor line: written by a crashed process
    }
    const std::string_view line = anchors_text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    ++line_number;
    const auto anchor = ParseAnchorLine(line);
    if (!anchor.ok()) {
      report.problem = "anchors line " + std::to_string(line_number) + " is malformed";
      return report;
    }
    report.problem = CheckAnchor(*anchor, line_number, decoded.base_seq, decoded.base_hash, hashes,
                                 public_key, &report);
    if (!report.problem.empty()) {
      return report;
    }
  }
  if (decoded.base_seq > 0 && !report.base_vouched) {
    report.problem = "the log starts after record " + std::to_string(decoded.base_seq) +
                     " but no signed checkpoint names that record (records cut from the head)";
    return report;
  }
  if (decoded.base_seq > 0 && public_key == nullptr) {
    report.problem = "the log was pruned after record " + std::to_string(decoded.base_seq) +
                     ": its checkpoint's signature needs the audit public key to be checked";
    return report;
  }
  report.ok = true;
  return report;
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
  if (filter.project.has_value() && std::find(entry.projects.begin(), entry.projects.end(),
                                              *filter.project) == entry.projects.end()) {
    return false;
  }
  return entry.time_ms >= filter.from_ms && entry.time_ms < filter.to_ms;
}

}  // namespace minpanel::audit
