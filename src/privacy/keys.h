// The pseudonym keys of every project: one file per project in the key
// folder, outside the data folder (docs/formats/keys.md).
//
// KeyStore is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/core.h"

namespace minpanel::privacy {

inline constexpr size_t kKeyBytes = 32;

struct ProjectKey {
  uint32_t version = 0;
  std::array<uint8_t, kKeyBytes> bytes{};
};

// The pseudonym keys, one file per project in a folder (0700, files 0600).
class KeyStore {
 public:
  // Opens (creating) the key folder. `folder` must not be inside the data
  // folder, so that a copy of the data alone cannot be reversed.
  static Result<std::unique_ptr<KeyStore>> Open(std::string folder,
                                                std::shared_ptr<FileSystem> file_system);

  // The project's current key, created (random, version 1) on first use.
  Result<ProjectKey> GetOrCreate(uint32_t project_id);

 private:
  KeyStore(std::string folder, std::shared_ptr<FileSystem> file_system);
  Result<ProjectKey> Load(const std::string& path);

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::mutex mutex_;
  std::map<uint32_t, ProjectKey> cache_;
};

}  // namespace minpanel::privacy
