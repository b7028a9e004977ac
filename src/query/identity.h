// Identity merging: which subject ids are one person. The links come from
// the stored identify / alias / merge events themselves (docs/identity.md),
// so there is no identity storage: erasing a subject's events removes the
// links they carried, and a restart rebuilds nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/core.h"
#include "store/segment.h"

namespace minpanel::query {

// The most ids one person may gather (Mixpanel's simplified ID merge allows
// 500). A link that would make a person larger is ignored: its two sides stay
// separate persons (docs/identity.md, "Limits").
inline constexpr size_t kIdentityIdsPerPersonMax = 500;
// The most ids stored in folded rows one query tells apart (MatchRow holds
// their index in 24 bits); a snapshot with more is refused until a
// compaction refolds (docs/identity.md, "Folded segments").
inline constexpr size_t kPersonPlanStoredIdsMax = (size_t{1} << 24) - 1;

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

// Which values of the segments' subject columns a query sets aside as parts
// of a larger person (docs/identity.md, "Folded segments"). A value is
// counted as it comes when every row kept under it is of one person and no
// row of that person is kept under another value in the snapshot — a
// person folded into its segments, or an id alone. The others are set
// aside (PersonSpill) and counted with the rest of their person after the
// scan; the rows of a value that holds rows of several persons (a folded
// segment whose fold no longer matches the map, or a query counting stored
// ids) are told apart by their stored subject (MatchRow::stored).
class PersonPlan {
 public:
  // `identity`: the snapshot's map, or nullptr to count stored subjects.
  static Result<PersonPlan> Build(
      const std::vector<std::shared_ptr<const store::SegmentReader>>& segments,
      std::shared_ptr<const IdentityMap> identity);

  bool empty() const { return set_aside_.empty(); }
  // Sorted and unique.
  const std::vector<Id128>& set_aside() const { return set_aside_; }
  // The person a stored subject counts as: its person in the map, or itself.
  const Id128& PersonOf(const Id128& stored) const {
    const Id128* person = identity_ != nullptr ? identity_->Find(stored) : nullptr;
    return person != nullptr ? *person : stored;
  }
  // 1 + the index of a stored subject of some folded row (0: none). At most
  // 2^24 - 1 (MatchRow::stored): a snapshot with more is refused.
  uint32_t StoredIndex(const Id128& stored) const {
    const auto found = stored_index_.find(stored);
    return found == stored_index_.end() ? 0 : found->second;
  }
  // The stored subject of a MatchRow::stored value other than 0.
  const Id128& Stored(uint32_t index) const { return stored_[index - 1]; }
  // Whether `segment` holds values with rows of several persons: its rows
  // are then never folded (ScanPlan::fold_rows), so each keeps its tag.
  bool TagsRowsOf(const store::SegmentReader* segment) const {
    return tagging_.contains(segment);
  }
  // Values of folded segments whose rows stay whole (reported by tests and
  // the bench): counted as they come though they hold several stored ids.
  size_t folded_whole() const { return folded_whole_; }

 private:
  std::shared_ptr<const IdentityMap> identity_;
  std::vector<Id128> set_aside_;
  std::vector<Id128> stored_;
  std::unordered_map<Id128, uint32_t, Id128Hash> stored_index_;
  std::unordered_set<const store::SegmentReader*> tagging_;
  size_t folded_whole_ = 0;
};

// Whether a query over `segments` needs a PersonPlan: some segment is folded
// or `identity` links ids.
bool NeedsPersonPlan(const std::vector<std::shared_ptr<const store::SegmentReader>>& segments,
                     const IdentityMap* identity);

// The subject each row of a block was stored under: its subject column with
// the stored subject runs of a folded block applied.
Status ReadStoredRowSubjects(const store::SegmentReader& segment, size_t block_idx,
                             store::SubjectRuns* runs, std::vector<Id128>* subjects);

// The fold compaction writes segments with (store::Options::subject_fold):
// every linked id of `map` kept under its person. Its generation is a hash
// of the table (never 0).
std::shared_ptr<const store::SubjectFold> SubjectFoldOf(const IdentityMap& map);

// The plan of a snapshot and map, cached as the map is (the last one).
Result<std::shared_ptr<const PersonPlan>> ResolvePersonPlan(
    const std::vector<std::shared_ptr<const store::SegmentReader>>& segments,
    std::shared_ptr<const IdentityMap> identity);

// The identity map of a snapshot's segments. The links of each segment are
// cached while the segment lives (keyed by the reader object, so a segment
// rewritten by erasure or compaction is read again), and the map of the last
// snapshot is cached too: a snapshot of the same segments costs a lookup.
Result<std::shared_ptr<const IdentityMap>> ResolveIdentities(
    const std::vector<std::shared_ptr<const store::SegmentReader>>& segments);

}  // namespace minpanel::query
