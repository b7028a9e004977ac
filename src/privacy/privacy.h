// The privacy module: turns a RawEvent into a stored Event. Nothing but the
// policy reads a RawEvent, and nothing that identifies a person leaves it in
// clear unless a policy line asks for it.
//
// This is the minimal policy of the Foundation issue (the full policy engine
// comes later behind the same Policy type):
//   - the distinct id becomes a 128-bit keyed pseudonym (BLAKE2b keyed with
//     the project's key, kept in the key folder outside the data folder);
//   - the client IP, user agent, page URL and referrer are discarded;
//   - properties named for people ($email, $name, $first_name, $last_name,
//     $phone) are dropped;
//   - the insert id is the client's id (keyed-hashed, or taken as is when it
//     is already 32 hex digits, as in a minpanel export), else a keyed hash of
//     (event name, time, distinct id, properties).
// A distinct id of the form "psn_<32 hex>" is already a pseudonym (a
// minpanel export) and is taken as is, so re-importing an export neither
// pseudonymises twice nor defeats de-duplication.
//
// KeyStore is thread-safe. Policy is immutable and thread-safe.
// Key file format: docs/formats/keys.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

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

// What the policy did to one event, for metrics and dry runs.
struct PolicyCounters {
  uint64_t properties_dropped = 0;
  uint64_t context_fields_discarded = 0;
};

class Policy {
 public:
  explicit Policy(ProjectKey key) : key_(key) {}

  // Consumes `raw`; the returned Event holds no raw identifier.
  Event Apply(RawEvent&& raw, PolicyCounters* counters) const;
  ProfileUpdate Apply(RawProfileUpdate&& raw, PolicyCounters* counters) const;

  // The subject a distinct id maps to: the same input always gives the
  // same pseudonym under the same key.
  Id128 Pseudonym(std::string_view distinct_id) const;

 private:
  Id128 InsertId(const RawEvent& raw) const;
  Id128 KeyedHash(uint8_t domain, std::string_view data) const;

  ProjectKey key_;
};

}  // namespace minpanel::privacy
