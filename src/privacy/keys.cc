#include "privacy/keys.h"

#include <sodium.h>

#include <cstring>
#include <string>

namespace minpanel::privacy {
namespace {

constexpr std::string_view kKeyFileMagic("MPKEY\0\0\0", 8);
constexpr uint32_t kKeyFileFormatVersion = 1;
constexpr size_t kKeyFileBytes = 8 + 4 + 4 + kKeyBytes;
constexpr uint32_t kKeyFolderMode = 0700;
constexpr uint32_t kKeyFileMode = 0600;

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

}  // namespace minpanel::privacy
