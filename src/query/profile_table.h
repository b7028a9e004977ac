// Profiles in queries (docs/queries.md, "Profile and group properties"): the
// person and group profiles of a project, folded from the profile updates
// the store keeps ($set, $set_once, $add, $union, $append, $remove, $unset,
// $delete, after the privacy policy) into one property map per subject and
// one per (group key, group id).
//
// A ProfileTable is immutable once built: many queries on many threads may
// read it at once. ProfileTableCache is thread-safe; it builds a table per
// project once and hands out the same one while the store's profile updates
// and deletions are unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/core.h"
#include "query/identity.h"
#include "store/store.h"

namespace minpanel::query {

// The most memory one project's profile table may take (its own count, see
// ProfileTable::memory_bytes); a build past it is ResourceExhausted. About
// 72 bytes per profile plus 80 per property and the bytes of long strings
// (docs/queries.md, "Profile and group properties").
inline constexpr uint64_t kProfileTableBytesMax = 1ULL << 30;

// One property of a profile and the store position (0, 1, 2, ... in store
// order) of the update that last wrote it: when a person's ids each have a
// profile, the value written last wins.
struct ProfileProperty {
  std::string key;
  Value value;
  uint64_t sequence = 0;
};

// A profile's properties, sorted by key.
using Profile = std::vector<ProfileProperty>;

// Returns the property `key` of `profile`, or nullptr.
const ProfileProperty* FindProfileProperty(const Profile& profile, std::string_view key);

class ProfileTable {
 public:
  // Folds updates one at a time, in store order.
  class Builder {
   public:
    explicit Builder(uint64_t bytes_max = kProfileTableBytesMax) : bytes_max_(bytes_max) {}
    // ResourceExhausted once the table would pass `bytes_max`.
    Status Add(const ProfileUpdate& update);
    std::shared_ptr<const ProfileTable> Finish();

   private:
    std::shared_ptr<ProfileTable> table_ = std::make_shared<ProfileTable>();
    uint64_t bytes_max_;
    uint64_t sequence_ = 0;
  };

  // Reads every profile update of the project (Engine::ScanProfiles) and
  // folds them. ResourceExhausted past `bytes_max`; the engine's errors.
  static Result<std::shared_ptr<const ProfileTable>> Build(
      store::Engine& engine, uint32_t project_id, uint64_t bytes_max = kProfileTableBytesMax);

  // The same profiles, where the ids `identity` links are one person: each
  // such subject finds its person's profile, the union of the profiles of
  // the person's ids, each key taking the value written last (the highest
  // sequence). Costs in proportion to the linked ids only.
  std::shared_ptr<const ProfileTable> WithPersons(
      std::shared_ptr<const IdentityMap> identity) const;

  // The person profile of `subject` (its person's, after WithPersons), or
  // nullptr when it has none.
  const Profile* FindPerson(const Id128& subject) const;
  // The profile of the group `group` (its pseudonym) of key `group_key`.
  const Profile* FindGroup(std::string_view group_key, const Id128& group) const;

  size_t person_profiles() const { return data_->persons.size(); }
  size_t group_profiles() const;
  uint64_t updates() const { return data_->updates; }
  // The table's own count of its memory: the profile maps' nodes and
  // buckets, each property, and every string longer than fits in place.
  uint64_t memory_bytes() const { return data_->bytes; }

  ProfileTable() : data_(std::make_shared<Data>()) {}

 private:
  using ProfileMap = std::unordered_map<Id128, Profile, Id128Hash>;
  struct Data {
    ProfileMap persons;
    std::unordered_map<std::string, ProfileMap> groups;  // by group key
    uint64_t updates = 0;
    uint64_t bytes = 0;
  };
  std::shared_ptr<Data> data_;
  // WithPersons: the merged profiles by person, and the map.
  std::shared_ptr<const IdentityMap> identity_;
  std::shared_ptr<const ProfileMap> merged_;
};

// The profile table of each project, rebuilt only when the store's profile
// updates or deletions have changed since it was built (Engine::GetStats:
// `profile_updates`, `deletions_logged`; a change in any project rebuilds,
// never a stale answer).
class ProfileTableCache {
 public:
  explicit ProfileTableCache(uint64_t bytes_max = kProfileTableBytesMax) : bytes_max_(bytes_max) {}
  Result<std::shared_ptr<const ProfileTable>> Get(store::Engine& engine, uint32_t project_id);
  // Forgets every table (e.g. after the engine was replaced).
  void Clear();

 private:
  struct Entry {
    const store::Engine* engine = nullptr;
    uint64_t profile_updates = 0;
    uint64_t deletions_logged = 0;
    std::shared_ptr<const ProfileTable> table;
  };
  uint64_t bytes_max_;
  std::mutex mutex_;
  std::unordered_map<uint32_t, Entry> entries_;
};

}  // namespace minpanel::query
