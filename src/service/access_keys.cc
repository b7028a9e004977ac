#include "service/access_keys.h"

#include <simdjson.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <mutex>

#include "query/query.h"
#include "service/registry_file.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kFileFormat = "minpanel-access-keys";
constexpr int64_t kFileFormatVersion = 1;
constexpr uint32_t kFileMode = 0600;
constexpr size_t kIdBytes = 8;
constexpr size_t kSecretBytes = 32;

constexpr std::array<std::pair<Scope, std::string_view>, kScopeCount> kScopeNames = {{
    {Scope::kIngest, "ingest"},
    {Scope::kQueryAggregate, "query:aggregate"},
    {Scope::kQuerySubjects, "query:subjects"},
    {Scope::kExport, "export"},
    {Scope::kAdmin, "admin"},
    {Scope::kAuditRead, "audit:read"},
    {Scope::kMetrics, "metrics"},
}};

Status CheckList(std::string_view field, const std::vector<std::string>& items) {
  if (items.size() > kAccessKeyListItemsMax) {
    return Status::ResourceExhausted(
        std::string(field) + ": " + std::to_string(items.size()) + " items, over the limit of " +
        std::to_string(kAccessKeyListItemsMax) + " (kAccessKeyListItemsMax)");
  }
  for (const std::string& item : items) {
    if (item.empty() || item.size() > kAccessKeyItemBytesMax) {
      return Status::InvalidArgument(std::string(field) + ": each item must be 1 to " +
                                     std::to_string(kAccessKeyItemBytesMax) + " bytes");
    }
  }
  return Status::Ok();
}

void AppendList(const std::vector<std::string>& items, std::string* out) {
  out->push_back('[');
  for (size_t item_idx = 0; item_idx < items.size(); ++item_idx) {
    out->append(item_idx == 0 ? "" : ",");
    query::AppendJsonString(items[item_idx], out);
  }
  out->push_back(']');
}

Status ReadList(simdjson::dom::element element, const char* name, std::vector<std::string>* out) {
  simdjson::dom::array array;
  if (element[name].get(array)) {
    return Status::Corruption(std::string("access_keys.json: '") + name + "' is not a list");
  }
  for (simdjson::dom::element item : array) {
    std::string_view text;
    if (item.get(text)) {
      return Status::Corruption(std::string("access_keys.json: '") + name + "' holds a non-string");
    }
    out->emplace_back(text);
  }
  return Status::Ok();
}

Result<AccessKey> ParseKey(simdjson::dom::element element) {
  AccessKey key;
  std::string_view id, name, created_by, hash;
  uint64_t scopes = 0, project_id = 0;
  if (element["id"].get(id) || element["name"].get(name) || element["scopes"].get(scopes) ||
      element["project_id"].get(project_id) || element["expires_ms"].get(key.expires_ms) ||
      element["created_ms"].get(key.created_ms) || element["revoked_ms"].get(key.revoked_ms) ||
      element["created_by"].get(created_by) || element["secret_sha256"].get(hash) ||
      scopes > kAllScopes || project_id > UINT32_MAX) {
    return Status::Corruption("access_keys.json: a key lacks a field or has a wrong type");
  }
  key.id = id;
  key.name = name;
  key.scopes = static_cast<uint32_t>(scopes);
  key.project_id = static_cast<uint32_t>(project_id);
  key.created_by = created_by;
  key.secret_sha256_hex = hash;
  MP_RETURN_IF_ERROR(ReadList(element, "events", &key.events));
  MP_RETURN_IF_ERROR(ReadList(element, "properties", &key.properties));
  // Optional: files written before k-suppression lack it.
  uint64_t min_group_size = 0;
  if (element["min_group_size"].get(min_group_size) == simdjson::SUCCESS) {
    key.min_group_size = static_cast<uint32_t>(std::min<uint64_t>(min_group_size, UINT32_MAX));
  }
  // The limits came after the first keys: absent means none of its own.
  for (const auto& [name, value] :
       {std::pair{"rate", &key.limits.requests_per_second},
        std::pair{"export_rows_per_day", &key.limits.export_rows_per_day},
        std::pair{"export_subjects_per_day", &key.limits.export_subjects_per_day}}) {
    const auto field = element[name];
    if (field.error() == simdjson::NO_SUCH_FIELD) {
      continue;
    }
    if (field.get(*value)) {
      return Status::Corruption(std::string("access_keys.json: '") + name + "' is not a number");
    }
  }
  // Optional: only a suspended key has them.
  std::string_view suspended_rule;
  if (element["suspended_ms"].get(key.suspended_ms) == simdjson::SUCCESS &&
      element["suspended_rule"].get(suspended_rule) == simdjson::SUCCESS) {
    key.suspended_rule = suspended_rule;
  }
  return key;
}

}  // namespace

std::string_view ScopeName(Scope scope) {
  for (const auto& [value, name] : kScopeNames) {
    if (value == scope) {
      return name;
    }
  }
  return "unknown";
}

std::optional<Scope> ParseScope(std::string_view name) {
  for (const auto& [value, scope_name] : kScopeNames) {
    if (scope_name == name) {
      return value;
    }
  }
  return std::nullopt;
}

std::string ScopeList(uint32_t scopes) {
  std::string list;
  for (const auto& [value, name] : kScopeNames) {
    if ((scopes & static_cast<uint32_t>(value)) != 0) {
      list += list.empty() ? "" : ",";
      list += name;
    }
  }
  return list;
}

bool IsAccessKeySecret(std::string_view secret) { return secret.starts_with(kAccessKeyPrefix); }

AccessKeyStore::AccessKeyStore(std::string data_folder, std::shared_ptr<FileSystem> file_system,
                               std::shared_ptr<Clock> clock)
    : path_(data_folder + "/access_keys.json"),
      lock_path_(data_folder + "/access_keys.lock"),
      file_system_(std::move(file_system)),
      clock_(std::move(clock)) {}

Result<std::unique_ptr<AccessKeyStore>> AccessKeyStore::Open(
    std::string data_folder, std::shared_ptr<FileSystem> file_system,
    std::shared_ptr<Clock> clock) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  std::unique_ptr<AccessKeyStore> store(
      new AccessKeyStore(std::move(data_folder), std::move(file_system), std::move(clock)));
  MP_RETURN_IF_ERROR(store->Reload());
  return store;
}

Result<std::vector<AccessKey>> AccessKeyStore::ReadFile() const {
  return internal::ReadListFile<AccessKey>(
      *file_system_, path_, kFileFormat, kFileFormatVersion, "keys", "access keys", ParseKey);
}

Status AccessKeyStore::WriteFile(const std::vector<AccessKey>& keys) const {
  std::string text = "{\"format\":\"minpanel-access-keys\",\"version\":1,\"keys\":[\n";
  for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
    const AccessKey& key = keys[key_idx];
    text += "{\"id\":\"" + key.id + "\",\"name\":";
    query::AppendJsonString(key.name, &text);
    text += ",\"scopes\":" + std::to_string(key.scopes) +
            ",\"project_id\":" + std::to_string(key.project_id) + ",\"events\":";
    AppendList(key.events, &text);
    text += ",\"properties\":";
    AppendList(key.properties, &text);
    text += ",\"expires_ms\":" + std::to_string(key.expires_ms) +
            ",\"created_ms\":" + std::to_string(key.created_ms) +
            ",\"revoked_ms\":" + std::to_string(key.revoked_ms) + ",\"created_by\":";
    query::AppendJsonString(key.created_by, &text);
    if (key.min_group_size != 0) {
      text += ",\"min_group_size\":" + std::to_string(key.min_group_size);
    }
    text += ",\"rate\":" + std::to_string(key.limits.requests_per_second) +
            ",\"export_rows_per_day\":" + std::to_string(key.limits.export_rows_per_day) +
            ",\"export_subjects_per_day\":" + std::to_string(key.limits.export_subjects_per_day);
    if (key.suspended_ms != 0) {
      text += ",\"suspended_ms\":" + std::to_string(key.suspended_ms) + ",\"suspended_rule\":";
      query::AppendJsonString(key.suspended_rule, &text);
    }
    text += ",\"secret_sha256\":\"" + key.secret_sha256_hex + "\"}";
    text += key_idx + 1 < keys.size() ? ",\n" : "\n";
  }
  text += "]}\n";
  return file_system_->WriteFileAtomically(path_, text, kFileMode);
}

void AccessKeyStore::Install(std::vector<AccessKey> keys) {
  std::unique_lock lock(mutex_);
  keys_ = std::move(keys);
  by_id_.clear();
  for (size_t key_idx = 0; key_idx < keys_.size(); ++key_idx) {
    by_id_[keys_[key_idx].id] = key_idx;
  }
}

Status AccessKeyStore::Reload() {
  MP_ASSIGN_OR_RETURN(std::vector<AccessKey> keys, ReadFile());
  Install(std::move(keys));
  return Status::Ok();
}

Result<AccessKeyWithSecret> AccessKeyStore::Create(const AccessKeySpec& spec) {
  if (spec.name.empty() || spec.name.size() > kAccessKeyNameBytesMax) {
    return Status::InvalidArgument("name: 1 to " + std::to_string(kAccessKeyNameBytesMax) +
                                   " bytes (kAccessKeyNameBytesMax)");
  }
  if (spec.scopes == 0 || (spec.scopes & ~kAllScopes) != 0) {
    return Status::InvalidArgument("scopes: at least one of " + ScopeList(kAllScopes));
  }
  MP_RETURN_IF_ERROR(CheckList("events", spec.events));
  MP_RETURN_IF_ERROR(CheckList("properties", spec.properties));
  if (spec.min_group_size > query::kMinGroupSizeMax) {
    return Status::InvalidArgument("min_group_size: at most " +
                                   std::to_string(query::kMinGroupSizeMax) +
                                   " (kMinGroupSizeMax)");
  }
  if (spec.expires_ms != 0 && spec.expires_ms <= clock_->NowMs()) {
    return Status::InvalidArgument("expires_ms: must be in the future (or 0: never)");
  }
  MP_RETURN_IF_ERROR(CheckKeyLimits(spec.limits));
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<AccessKey> keys, ReadFile());
  if (keys.size() >= kAccessKeysMax) {
    return Status::ResourceExhausted("keys: the limit is " + std::to_string(kAccessKeysMax) +
                                     " (kAccessKeysMax)");
  }
  AccessKeyWithSecret created;
  created.key.id = std::string(kAccessKeyPrefix) + internal::RandomHex(kIdBytes);
  created.secret = created.key.id + "_" + internal::RandomHex(kSecretBytes);
  created.key.name = spec.name;
  created.key.scopes = spec.scopes;
  created.key.project_id = spec.project_id;
  created.key.events = spec.events;
  created.key.properties = spec.properties;
  created.key.expires_ms = spec.expires_ms;
  created.key.limits = spec.limits;
  created.key.min_group_size = spec.min_group_size;
  created.key.created_ms = clock_->NowMs();
  created.key.created_by = spec.created_by;
  created.key.secret_sha256_hex = internal::Sha256Hex(created.secret);
  keys.push_back(created.key);
  MP_RETURN_IF_ERROR(WriteFile(keys));
  Install(std::move(keys));
  return created;
}

Result<AccessKeyWithSecret> AccessKeyStore::Rotate(std::string_view id) {
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<AccessKey> keys, ReadFile());
  for (AccessKey& key : keys) {
    if (key.id != id) {
      continue;
    }
    if (key.revoked_ms != 0) {
      return Status::InvalidArgument("key " + key.id + ": revoked; create a new one");
    }
    AccessKeyWithSecret rotated;
    rotated.secret = key.id + "_" + internal::RandomHex(kSecretBytes);
    key.secret_sha256_hex = internal::Sha256Hex(rotated.secret);
    rotated.key = key;
    MP_RETURN_IF_ERROR(WriteFile(keys));
    Install(std::move(keys));
    return rotated;
  }
  return Status::NotFound("key " + std::string(id) + ": no such key");
}

Result<AccessKey> AccessKeyStore::Change(std::string_view id,
                                         const std::function<Status(AccessKey&)>& change) {
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<AccessKey> keys, ReadFile());
  for (AccessKey& key : keys) {
    if (key.id != id) {
      continue;
    }
    MP_RETURN_IF_ERROR(change(key));
    const AccessKey changed = key;
    MP_RETURN_IF_ERROR(WriteFile(keys));
    Install(std::move(keys));
    return changed;
  }
  return Status::NotFound("key " + std::string(id) + ": no such key");
}

Result<AccessKey> AccessKeyStore::Revoke(std::string_view id) {
  return Change(id, [this](AccessKey& key) {
    if (key.revoked_ms == 0) {
      key.revoked_ms = clock_->NowMs();
    }
    return Status::Ok();
  });
}

Result<AccessKey> AccessKeyStore::Suspend(std::string_view id, std::string_view rule) {
  return Change(id, [this, rule](AccessKey& key) {
    if (key.suspended_ms == 0) {
      key.suspended_ms = clock_->NowMs();
      key.suspended_rule = rule;
    }
    return Status::Ok();
  });
}

Result<AccessKey> AccessKeyStore::Enable(std::string_view id) {
  return Change(id, [](AccessKey& key) {
    if (key.revoked_ms != 0) {
      return Status::InvalidArgument("key " + key.id + ": revoked; create a new one");
    }
    key.suspended_ms = 0;
    key.suspended_rule.clear();
    return Status::Ok();
  });
}

Result<std::vector<AccessKey>> AccessKeyStore::RemoveProject(uint32_t project_id) {
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<AccessKey> keys, ReadFile());
  std::vector<AccessKey> removed;
  std::vector<AccessKey> kept;
  for (AccessKey& key : keys) {
    (key.project_id == project_id ? removed : kept).push_back(std::move(key));
  }
  if (removed.empty()) {
    return removed;
  }
  MP_RETURN_IF_ERROR(WriteFile(kept));
  Install(std::move(kept));
  return removed;
}

std::vector<AccessKey> AccessKeyStore::List() const {
  std::shared_lock lock(mutex_);
  return keys_;
}

std::optional<AccessKey> AccessKeyStore::FindById(std::string_view id) const {
  std::shared_lock lock(mutex_);
  const auto found = by_id_.find(std::string(id));
  if (found == by_id_.end()) {
    return std::nullopt;
  }
  return keys_[found->second];
}

std::optional<AccessKey> AccessKeyStore::FindBySecret(std::string_view secret) const {
  // The id is the public prefix; the rest is compared through its hash, in
  // constant time.
  const size_t id_bytes = kAccessKeyPrefix.size() + kIdBytes * 2;
  if (!IsAccessKeySecret(secret) || secret.size() <= id_bytes) {
    return std::nullopt;
  }
  const std::string hash = internal::Sha256Hex(secret);
  std::shared_lock lock(mutex_);
  const auto found = by_id_.find(std::string(secret.substr(0, id_bytes)));
  if (found == by_id_.end()) {
    return std::nullopt;
  }
  const AccessKey& key = keys_[found->second];
  if (key.secret_sha256_hex.size() != hash.size() ||
      sodium_memcmp(key.secret_sha256_hex.data(), hash.data(), hash.size()) != 0) {
    return std::nullopt;
  }
  return key;
}

}  // namespace minpanel::service
