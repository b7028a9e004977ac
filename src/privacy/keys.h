// The pseudonym keys of every project: one current key file per project in
// the key folder, outside the data folder, and the replaced keys beside it
// (docs/formats/keys.md).
//
// A project's key is stable: replacing it (Rotate) is an explicit
// anonymisation step, after which the same person gets another subject.
// The replaced keys are kept, unless destroyed, so that a person's
// pseudonym can still be computed under every version that ever existed.
//
// KeyStore is thread-safe. Other processes (the `minpanel project
// rotate-key` command) may rotate a key while a server holds it cached;
// the server sees the new key after Forget() (SIGHUP).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/core.h"
#include "core/secret_files.h"

namespace minpanel::privacy {

inline constexpr size_t kKeyBytes = kSecretBytes;
// How many keys a project can have had: each replacement is a deliberate
// act, and every version is a pseudonym to compute when a person asks what
// is held about them.
inline constexpr uint32_t kKeyVersionsMax = 1000;

struct ProjectKey {
  uint32_t version = 0;
  Secret bytes{};
};

struct KeyRotation {
  uint32_t old_version = 0;
  uint32_t new_version = 0;
  // Files of earlier replaced keys that destroy_old removed (the key just
  // replaced is then never written to a file of its own).
  size_t old_keys_destroyed = 0;
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

  // Replaces the project's key with a new random one, version + 1. The
  // replaced key is first kept as project-<id>.v<version>.key; with
  // `destroy_old` it and every older one are removed instead, which makes
  // events stored under them permanently unlinkable to a person. On a
  // failure the previous key stays in force. NotFound when the project has
  // no key yet (nothing was pseudonymised: nothing to replace);
  // ResourceExhausted past kKeyVersionsMax; Corruption when a kept file
  // contradicts the current key.
  Result<KeyRotation> Rotate(uint32_t project_id, bool destroy_old);

  // Every key the project has had and still holds, newest (the current)
  // first; empty when it has no key yet. Corruption names a damaged file.
  Result<std::vector<ProjectKey>> AllVersions(uint32_t project_id);

  // Drops the cached keys, so that the next GetOrCreate re-reads the files
  // (a key rotated by another process).
  void Forget();

 private:
  KeyStore(std::string folder, std::shared_ptr<FileSystem> file_system);
  std::string CurrentPath(uint32_t project_id) const;
  std::string OldVersionPath(uint32_t project_id, uint32_t version) const;
  Result<ProjectKey> Load(const std::string& path);
  Status Write(const std::string& path, const ProjectKey& key);
  // The versions of the project's replaced-key files, ascending.
  Result<std::vector<uint32_t>> OldVersions(uint32_t project_id);

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::mutex mutex_;
  std::map<uint32_t, ProjectKey> cache_;
};

}  // namespace minpanel::privacy
