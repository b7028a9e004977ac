#include "privacy/keys.h"

#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <string>

namespace minpanel::privacy {
namespace {

constexpr SecretFileFormat kKeyFileFormat{
    .magic = std::string_view("MPKEY\0\0\0", 8), .format_version = 1, .kind = "key file"};
constexpr std::string_view kKeyFileExtension = ".key";

std::string FilePrefix(uint32_t project_id) { return "project-" + std::to_string(project_id); }

// The version in a replaced-key file name "project-<id>.v<version>.key", or
// 0 when `name` is not one (the current key, a temporary file, another
// project's file).
uint32_t OldVersionOfName(std::string_view name, uint32_t project_id) {
  const std::string prefix = FilePrefix(project_id) + ".v";
  if (name.size() <= prefix.size() + kKeyFileExtension.size() || !name.starts_with(prefix) ||
      !name.ends_with(kKeyFileExtension)) {
    return 0;
  }
  const std::string_view digits =
      name.substr(prefix.size(), name.size() - prefix.size() - kKeyFileExtension.size());
  if (digits.front() == '0') {
    return 0;  // names are written without leading zeros
  }
  uint32_t version = 0;
  const auto parsed = std::from_chars(digits.data(), digits.data() + digits.size(), version);
  if (parsed.ec != std::errc() || parsed.ptr != digits.data() + digits.size()) {
    return 0;
  }
  return version;
}

}  // namespace

KeyStore::KeyStore(std::string folder, std::shared_ptr<FileSystem> file_system)
    : folder_(std::move(folder)), file_system_(std::move(file_system)) {}

Result<std::unique_ptr<KeyStore>> KeyStore::Open(std::string folder,
                                                 std::shared_ptr<FileSystem> file_system) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(folder, kSecretFolderMode));
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(folder), std::move(file_system)));
}

std::string KeyStore::CurrentPath(uint32_t project_id) const {
  return folder_ + "/" + FilePrefix(project_id) + std::string(kKeyFileExtension);
}

std::string KeyStore::OldVersionPath(uint32_t project_id, uint32_t version) const {
  return folder_ + "/" + FilePrefix(project_id) + ".v" + std::to_string(version) +
         std::string(kKeyFileExtension);
}

Result<ProjectKey> KeyStore::Load(const std::string& path) {
  ProjectKey key;
  MP_ASSIGN_OR_RETURN(key.version, ReadSecretFile(*file_system_, path, kKeyFileFormat, &key.bytes));
  if (key.version == 0) {
    return Status::Corruption("key file " + path + ": key version 0");
  }
  return key;
}

Status KeyStore::Write(const std::string& path, const ProjectKey& key) {
  return WriteSecretFile(*file_system_, path, kKeyFileFormat, key.version, key.bytes);
}

Result<std::vector<uint32_t>> KeyStore::OldVersions(uint32_t project_id) {
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system_->ListDirectory(folder_));
  std::vector<uint32_t> versions;
  for (const std::string& name : names) {
    if (const uint32_t version = OldVersionOfName(name, project_id); version != 0) {
      versions.push_back(version);
    }
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

Result<ProjectKey> KeyStore::GetOrCreate(uint32_t project_id) {
  std::lock_guard lock(mutex_);
  if (const auto cached = cache_.find(project_id); cached != cache_.end()) {
    return cached->second;
  }
  const std::string path = CurrentPath(project_id);
  ProjectKey key;
  if (file_system_->Exists(path)) {
    MP_ASSIGN_OR_RETURN(key, Load(path));
  } else {
    // Replaced keys without a current one (the current file was lost):
    // the new key takes the next version, so that no two keys of the
    // project ever share a version number.
    MP_ASSIGN_OR_RETURN(const std::vector<uint32_t> old_versions, OldVersions(project_id));
    key.version = old_versions.empty() ? 1 : old_versions.back() + 1;
    randombytes_buf(key.bytes.data(), key.bytes.size());
    MP_RETURN_IF_ERROR(Write(path, key));
  }
  cache_[project_id] = key;
  return key;
}

Result<KeyRotation> KeyStore::Rotate(uint32_t project_id, bool destroy_old) {
  std::lock_guard lock(mutex_);
  const std::string current_path = CurrentPath(project_id);
  if (!file_system_->Exists(current_path)) {
    return Status::NotFound("project " + std::to_string(project_id) +
                            " has no pseudonym key yet (nothing was stored): nothing to replace");
  }
  // The file, not the cache: another process may have rotated it since.
  MP_ASSIGN_OR_RETURN(const ProjectKey current, Load(current_path));
  if (current.version >= kKeyVersionsMax) {
    return Status::ResourceExhausted("project " + std::to_string(project_id) + ": key version " +
                                     std::to_string(current.version) + " reached the limit of " +
                                     std::to_string(kKeyVersionsMax) + " (kKeyVersionsMax)");
  }
  if (!destroy_old) {
    // Kept before the current file is replaced: a failure in between leaves
    // a copy of the key in force, never a key that exists nowhere.
    const std::string old_path = OldVersionPath(project_id, current.version);
    if (file_system_->Exists(old_path)) {
      // Left by a rotation that failed after keeping it; never overwrite a
      // kept key with other bytes, which would unlink its events silently.
      MP_ASSIGN_OR_RETURN(const ProjectKey kept, Load(old_path));
      if (kept.version != current.version || kept.bytes != current.bytes) {
        return Status::Corruption("key file " + old_path + " differs from the current key " +
                                  current_path + " of the same version; not replacing either");
      }
    } else {
      MP_RETURN_IF_ERROR(Write(old_path, current));
    }
  }
  ProjectKey next;
  next.version = current.version + 1;
  randombytes_buf(next.bytes.data(), next.bytes.size());
  MP_RETURN_IF_ERROR(Write(current_path, next));
  cache_[project_id] = next;

  KeyRotation rotation;
  rotation.old_version = current.version;
  rotation.new_version = next.version;
  if (destroy_old) {
    MP_ASSIGN_OR_RETURN(const std::vector<uint32_t> old_versions, OldVersions(project_id));
    for (const uint32_t version : old_versions) {
      const Status removed = file_system_->Remove(OldVersionPath(project_id, version));
      if (!removed.ok()) {
        return Status::IoError("the new key (version " + std::to_string(next.version) +
                               ") is in force, but a replaced key was not removed: " +
                               removed.message() + "; remove it by hand");
      }
      ++rotation.old_keys_destroyed;
    }
    MP_RETURN_IF_ERROR(file_system_->SyncDirectory(folder_));
  }
  return rotation;
}

Result<std::vector<ProjectKey>> KeyStore::AllVersions(uint32_t project_id) {
  std::lock_guard lock(mutex_);
  std::vector<ProjectKey> keys;
  const std::string current_path = CurrentPath(project_id);
  if (file_system_->Exists(current_path)) {
    MP_ASSIGN_OR_RETURN(ProjectKey current, Load(current_path));
    keys.push_back(current);
  }
  MP_ASSIGN_OR_RETURN(std::vector<uint32_t> old_versions, OldVersions(project_id));
  std::reverse(old_versions.begin(), old_versions.end());
  for (const uint32_t version : old_versions) {
    const std::string path = OldVersionPath(project_id, version);
    MP_ASSIGN_OR_RETURN(ProjectKey key, Load(path));
    if (key.version != version) {
      return Status::Corruption("key file " + path + ": holds key version " +
                                std::to_string(key.version));
    }
    if (!keys.empty() && version >= keys.front().version) {
      // A copy of the current key left by a failed rotation is that key;
      // anything else contradicts the current file.
      if (version == keys.front().version && key.bytes == keys.front().bytes) {
        continue;
      }
      return Status::Corruption("key file " + path + " contradicts the current key " +
                                current_path + " (version " + std::to_string(keys.front().version) +
                                ")");
    }
    keys.push_back(key);
  }
  return keys;
}

void KeyStore::Forget() {
  std::lock_guard lock(mutex_);
  cache_.clear();
}

}  // namespace minpanel::privacy
