// Identity merging: which subject ids are one person. The links come from
// the stored identify / alias / merge events themselves (docs/identity.md),
// so there is no identity storage: erasing a subject's events removes the
// links they carried, and a restart rebuilds nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/core.h"
#include "store/segment.h"

namespace minpanel::query {

// The most ids one person may gather (Mixpanel's simplified ID merge allows
// 500). A link that would make a person larger is ignored: its two sides stay
// separate persons (docs/identity.md, "Limits").
inline constexpr size_t kIdentityIdsPerPersonMax = 500;

enum class IdentityLinkKind : uint8_t {
  kIdentify,          // $identify: $anon_distinct_id -> the identified distinct_id
  kIdentified,        // an ordinary event naming a device or anonymous id beside the user id
  kAlias,             // $create_alias: alias / previousId <-> distinct_id
  kDevice,            // "$device:X" distinct_id <-> its $device_id X
  kMergeDangerously,  // PostHog $merge_dangerously: alias <-> distinct_id, both identified
};

// One link, as read from one event: `member` joins `anchor`'s person.
// `anchor_identified`: the anchor is a user id (a person holds at most one,
// except through kMergeDangerously).
struct IdentityLink {
  int64_t time_ms = 0;
  Id128 member;
  Id128 anchor;
  IdentityLinkKind kind = IdentityLinkKind::kIdentify;
  bool anchor_identified = false;
  bool member_identified = false;
};

// The links one segment's events carry (each distinct link once, at its
// earliest time). Reads only the blocks of the identity events' names and,
// for the id properties of ordinary events ($device_id, $user_id,
// anonymousId), only segments that hold those keys.
Result<std::vector<IdentityLink>> ReadIdentityLinks(const store::SegmentReader& segment);

// What one identity map holds (reported in /metrics per project;
// docs/identity.md, "Counters").
struct IdentityStats {
  uint64_t links = 0;               // links read (each distinct one once per segment)
  uint64_t merges = 0;              // links that joined two persons
  uint64_t persons = 0;             // persons of more than one id
  uint64_t linked_ids = 0;          // ids in those persons
  uint64_t person_ids_max = 0;      // ids in the largest person: the longest chain
  uint64_t refused_identified = 0;  // links ignored: two identified ids
  uint64_t refused_limit = 0;       // links ignored: past kIdentityIdsPerPersonMax
};

// Subject -> person (a union-find built from links in time order).
class IdentityMap {
 public:
  // Applies the links in (time, member, anchor, kind) order, so the answer
  // does not depend on how the links were split between segments.
  static IdentityMap Build(std::vector<IdentityLink> links);

  // The person of `subject` when it shares one with another id; nullptr when
  // the subject is a person of its own.
  const Id128* Find(const Id128& subject) const {
    if (person_.empty()) {
      return nullptr;
    }
    const auto it = person_.find(subject);
    return it == person_.end() ? nullptr : &it->second;
  }
  bool empty() const { return person_.empty(); }
  // (id, person) of every id that shares a person, sorted by id: a scan that
  // meets subjects in increasing order finds them by walking it (no hash
  // lookup per subject).
  const std::vector<std::pair<Id128, Id128>>& sorted() const { return sorted_; }
  // Ids that share a person with another id.
  size_t linked_ids() const { return person_.size(); }
  size_t persons() const { return persons_; }
  // Links ignored: both sides already had a different identified id, or the
  // person would pass kIdentityIdsPerPersonMax.
  size_t refused_identified() const { return refused_identified_; }
  size_t refused_limit() const { return refused_limit_; }
  IdentityStats stats() const {
    return IdentityStats{links_,         merges_,         persons_,
                         person_.size(), person_ids_max_, refused_identified_,
                         refused_limit_};
  }

 private:
  std::unordered_map<Id128, Id128, Id128Hash> person_;
  std::vector<std::pair<Id128, Id128>> sorted_;
  size_t persons_ = 0;
  size_t refused_identified_ = 0;
  size_t refused_limit_ = 0;
  size_t links_ = 0;
  size_t merges_ = 0;
  size_t person_ids_max_ = 0;
};

// The identity map of a snapshot's segments. The links of each segment are
// cached while the segment lives (keyed by the reader object, so a segment
// rewritten by erasure or compaction is read again), and the map of the last
// snapshot is cached too: a snapshot of the same segments costs a lookup.
Result<std::shared_ptr<const IdentityMap>> ResolveIdentities(
    const std::vector<std::shared_ptr<const store::SegmentReader>>& segments);

}  // namespace minpanel::query
