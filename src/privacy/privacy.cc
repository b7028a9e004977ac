#include "privacy/privacy.h"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

namespace minpanel::privacy {
namespace {

constexpr std::string_view kKeyFileMagic("MPKEY\0\0\0", 8);
constexpr uint32_t kKeyFileFormatVersion = 1;
constexpr size_t kKeyFileBytes = 8 + 4 + 4 + kKeyBytes;
constexpr uint32_t kKeyFolderMode = 0700;
constexpr uint32_t kKeyFileMode = 0600;

// Hash domains keep the different uses of one key apart.
constexpr uint8_t kDomainSubject = 's';
constexpr uint8_t kDomainGroup = 'g';
constexpr uint8_t kDomainClientInsertId = 'i';
constexpr uint8_t kDomainContentInsertId = 'c';

// Names of people under which SDKs send personal data; dropped by default.
constexpr std::array<std::string_view, 5> kPersonPropertyNames = {
    "$email", "$name", "$first_name", "$last_name", "$phone"};

void PutU32(std::string* out, uint32_t value) {
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    out->push_back(static_cast<char>((value >> (8 * byte_idx)) & 0xFF));
  }
}

uint32_t GetU32(std::string_view data) {
  uint32_t value = 0;
  for (int byte_idx = 3; byte_idx >= 0; --byte_idx) {
    value = (value << 8) | static_cast<uint8_t>(data[byte_idx]);
  }
  return value;
}

bool IsPersonProperty(std::string_view key) {
  return std::find(kPersonPropertyNames.begin(), kPersonPropertyNames.end(), key) !=
         kPersonPropertyNames.end();
}

size_t DropPersonProperties(Properties* properties) {
  const auto removed = std::remove_if(properties->begin(), properties->end(),
                                      [](const Property& p) { return IsPersonProperty(p.key); });
  const auto dropped = static_cast<size_t>(properties->end() - removed);
  properties->erase(removed, properties->end());
  return dropped;
}

// A canonical byte encoding of properties for the content insert id.
void AppendCanonical(const Properties& properties, std::string* out) {
  for (const Property& property : properties) {
    out->append(property.key);
    out->push_back('\0');
    const Value& value = property.value;
    out->push_back(static_cast<char>(value.type()));
    switch (value.type()) {
      case Value::Type::kNull:
        break;
      case Value::Type::kBool:
        out->push_back(value.as_bool() ? '1' : '0');
        break;
      case Value::Type::kInt:
        out->append(std::to_string(value.as_int()));
        break;
      case Value::Type::kDouble: {
        const auto bits = std::bit_cast<uint64_t>(value.as_double());
        out->append(reinterpret_cast<const char*>(&bits), sizeof(bits));
        break;
      }
      case Value::Type::kString:
        out->append(value.as_string());
        break;
      case Value::Type::kList:
        for (const std::string& item : value.as_list()) {
          out->append(item);
          out->push_back('\0');
        }
        break;
    }
    out->push_back('\0');
  }
}

}  // namespace

KeyStore::KeyStore(std::string folder, std::shared_ptr<FileSystem> file_system)
    : folder_(std::move(folder)), file_system_(std::move(file_system)) {}

Result<std::unique_ptr<KeyStore>> KeyStore::Open(std::string folder,
                                                 std::shared_ptr<FileSystem> file_system) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(folder, kKeyFolderMode));
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(folder), std::move(file_system)));
}

Result<ProjectKey> KeyStore::Load(const std::string& path) {
  MP_ASSIGN_OR_RETURN(std::string contents, file_system_->ReadFile(path));
  if (contents.size() != kKeyFileBytes || contents.compare(0, 8, kKeyFileMagic) != 0) {
    return Status::Corruption("key file " + path + ": wrong size or magic");
  }
  const uint32_t format_version = GetU32(std::string_view(contents).substr(8, 4));
  if (format_version > kKeyFileFormatVersion) {
    return Status::Corruption("key file " + path + ": format version " +
                              std::to_string(format_version) + " is newer than this binary");
  }
  ProjectKey key;
  key.version = GetU32(std::string_view(contents).substr(12, 4));
  std::memcpy(key.bytes.data(), contents.data() + 16, kKeyBytes);
  sodium_memzero(contents.data(), contents.size());
  return key;
}

Result<ProjectKey> KeyStore::GetOrCreate(uint32_t project_id) {
  std::lock_guard lock(mutex_);
  if (const auto cached = cache_.find(project_id); cached != cache_.end()) {
    return cached->second;
  }
  const std::string path = folder_ + "/project-" + std::to_string(project_id) + ".key";
  ProjectKey key;
  if (file_system_->Exists(path)) {
    MP_ASSIGN_OR_RETURN(key, Load(path));
  } else {
    key.version = 1;
    randombytes_buf(key.bytes.data(), key.bytes.size());
    std::string contents(kKeyFileMagic);
    PutU32(&contents, kKeyFileFormatVersion);
    PutU32(&contents, key.version);
    contents.append(reinterpret_cast<const char*>(key.bytes.data()), key.bytes.size());
    const Status written = file_system_->WriteFileAtomically(path, contents, kKeyFileMode);
    sodium_memzero(contents.data(), contents.size());
    MP_RETURN_IF_ERROR(written);
  }
  cache_[project_id] = key;
  return key;
}

Id128 Policy::KeyedHash(uint8_t domain, std::string_view data) const {
  std::array<uint8_t, 16> digest{};
  crypto_generichash_state state;
  crypto_generichash_init(&state, key_.bytes.data(), key_.bytes.size(), digest.size());
  crypto_generichash_update(&state, &domain, 1);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  crypto_generichash_final(&state, digest.data(), digest.size());
  return Id128::FromBytes(digest);
}

Id128 Policy::Pseudonym(std::string_view distinct_id) const {
  if (distinct_id.starts_with(kPseudonymPrefix)) {
    if (auto literal = Id128::FromHex(distinct_id.substr(kPseudonymPrefix.size()))) {
      return *literal;
    }
  }
  return KeyedHash(kDomainSubject, distinct_id);
}

Id128 Policy::InsertId(const RawEvent& raw) const {
  if (raw.insert_id.has_value()) {
    if (auto literal = Id128::FromHex(*raw.insert_id)) {
      return *literal;
    }
    return KeyedHash(kDomainClientInsertId, *raw.insert_id);
  }
  std::string canonical;
  canonical.reserve(256);
  canonical.append(raw.name);
  canonical.push_back('\0');
  canonical.append(std::to_string(raw.time_ms));
  canonical.push_back('\0');
  canonical.append(raw.distinct_id);
  canonical.push_back('\0');
  AppendCanonical(raw.properties, &canonical);
  return KeyedHash(kDomainContentInsertId, canonical);
}

Event Policy::Apply(RawEvent&& raw, PolicyCounters* counters) const {
  Event event;
  event.insert_id = InsertId(raw);
  event.name = std::move(raw.name);
  event.time_ms = raw.time_ms;
  event.subject = Pseudonym(raw.distinct_id);
  event.key_version = key_.version;
  counters->properties_dropped += DropPersonProperties(&raw.properties);
  event.properties = std::move(raw.properties);
  for (const std::string* field :
       {&raw.client_ip, &raw.user_agent, &raw.page_url, &raw.referrer, &raw.library}) {
    counters->context_fields_discarded += field->empty() ? 0 : 1;
  }
  return event;
}

ProfileUpdate Policy::Apply(RawProfileUpdate&& raw, PolicyCounters* counters) const {
  ProfileUpdate update;
  if (raw.group_key.empty()) {
    update.subject = Pseudonym(raw.distinct_id);
  } else {
    std::string group_identity = raw.group_key;
    group_identity.push_back('\0');
    group_identity.append(raw.distinct_id);
    update.subject = KeyedHash(kDomainGroup, group_identity);
  }
  update.group_key = std::move(raw.group_key);
  update.time_ms = raw.time_ms;
  update.key_version = key_.version;
  update.operation = raw.operation;
  counters->properties_dropped += DropPersonProperties(&raw.properties);
  update.properties = std::move(raw.properties);
  counters->context_fields_discarded += raw.client_ip.empty() ? 0 : 1;
  return update;
}

}  // namespace minpanel::privacy
