// What the service's small registries (projects.json, access_keys.json)
// share: an exclusive lock file that serialises writers across processes,
// the reading of a versioned JSON list file, and the random ids and secrets
// they hand out with the hashes they keep of them. Internal to service.
#pragma once

#include <fcntl.h>
#include <simdjson.h>
#include <sodium.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"

namespace minpanel::service::internal {

// `bytes` random bytes (libsodium's CSPRNG; sodium_init must have run) in
// lowercase hex, 2 * `bytes` characters: project tokens and secrets, access
// key ids and secrets, GDPR task ids.
inline std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  hex.pop_back();
  return hex;
}

// The SHA-256 of `text` in lowercase hex: the only form in which
// projects.json and access_keys.json keep a secret ("secret_sha256").
inline std::string Sha256Hex(std::string_view text) {
  uint8_t digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const uint8_t*>(text.data()), text.size());
  std::string hex(sizeof(digest) * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), digest, sizeof(digest));
  hex.pop_back();
  return hex;
}

// Holds an exclusive flock on a file while alive (created 0600 if missing).
class FileLock {
 public:
  explicit FileLock(const std::string& path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) {
      ::close(fd_);  // releases the lock
    }
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

// Reads `path`, a file {"format": `format`, "version": N, `list_key`: [...]},
// parsing each entry with `parse` (element → Result<T>). A missing file is
// an empty list; another format, a version newer than `version_max` or
// malformed JSON is Corruption naming the file (`what` names the kind).
template <typename T, typename Parse>
Result<std::vector<T>> ReadListFile(FileSystem& file_system, const std::string& path,
                                    std::string_view format, int64_t version_max,
                                    const char* list_key, std::string_view what, Parse parse) {
  if (!file_system.Exists(path)) {
    return std::vector<T>{};
  }
  MP_ASSIGN_OR_RETURN(std::string contents, file_system.ReadFile(path));
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string_view file_format;
  int64_t version = 0;
  simdjson::dom::array entries;
  if (parser.parse(contents).get(root) || root["format"].get(file_format) ||
      file_format != format || root["version"].get(version) || root[list_key].get(entries)) {
    return Status::Corruption(path + ": not a minpanel " + std::string(what) + " file");
  }
  if (version > version_max) {
    return Status::Corruption(path + ": format version " + std::to_string(version) +
                              " is newer than this binary");
  }
  std::vector<T> items;
  for (simdjson::dom::element entry : entries) {
    MP_ASSIGN_OR_RETURN(T item, parse(entry));
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace minpanel::service::internal
