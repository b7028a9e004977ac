// Identity links from stored events, the union-find that turns them into
// persons, and the per-segment cache. The rules are in docs/identity.md.
#include "query/identity.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <optional>
#include <string_view>
#include <tuple>

namespace minpanel::query {
namespace {

using store::PropertyColumn;
using store::PropertyTag;

constexpr std::string_view kIdentifyEvent = "$identify";
constexpr std::string_view kAliasEvent = "$create_alias";
constexpr std::string_view kMergeEvent = "$merge_dangerously";

// An id property as the policy stores it: "psn_" and 32 hex digits. Raw
// values (a policy that keeps the id) cannot name a subject and link nothing.
std::optional<Id128> PseudonymAt(const PropertyColumn& column, size_t row_idx) {
  if (row_idx >= column.size() || column.tags[row_idx] != PropertyTag::kString) {
    return std::nullopt;
  }
  const std::string_view text = column.strings[row_idx];
  if (!text.starts_with(kPseudonymPrefix)) {
    return std::nullopt;
  }
  return Id128::FromHex(text.substr(kPseudonymPrefix.size()));
}

struct LinkKey {
  Id128 member;
  Id128 anchor;
  IdentityLinkKind kind;
  friend bool operator==(const LinkKey&, const LinkKey&) = default;
};

struct LinkKeyHash {
  size_t operator()(const LinkKey& key) const {
    return Id128Hash{}(key.member) * 0x9e3779b97f4a7c15ULL ^ Id128Hash {}(key.anchor) ^
           static_cast<size_t>(key.kind);
  }
};

class LinkSet {
 public:
  void Add(int64_t time_ms, const Id128& member, const Id128& anchor, IdentityLinkKind kind,
           bool member_identified, bool anchor_identified) {
    if (member == anchor) {
      return;
    }
    const auto [it, inserted] = index_.try_emplace(LinkKey{member, anchor, kind}, links_.size());
    if (inserted) {
      links_.push_back(
          IdentityLink{time_ms, member, anchor, kind, anchor_identified, member_identified});
    } else {
      links_[it->second].time_ms = std::min(links_[it->second].time_ms, time_ms);
    }
  }
  std::vector<IdentityLink> Take() { return std::move(links_); }

 private:
  std::unordered_map<LinkKey, size_t, LinkKeyHash> index_;
  std::vector<IdentityLink> links_;
};

// The subject each row of a block was stored under (a link names the ids
// it was sent with, also in a folded segment).
Status ReadRowSubjects(const store::SegmentReader& segment, size_t block_idx,
                       store::SubjectRuns* runs, std::vector<Id128>* subjects) {
  return ReadStoredRowSubjects(segment, block_idx, runs, subjects);
}

// $identify, $create_alias and $merge_dangerously, from their blocks only.
Status ReadLinkEvents(const store::SegmentReader& segment, LinkSet* links) {
  const std::optional<uint32_t> identify = segment.FindEventName(kIdentifyEvent);
  const std::optional<uint32_t> alias = segment.FindEventName(kAliasEvent);
  const std::optional<uint32_t> merge = segment.FindEventName(kMergeEvent);
  store::BlockFilter filter;
  for (const auto& code : {identify, alias, merge}) {
    if (code) {
      filter.name_codes.push_back(*code);
    }
  }
  if (filter.name_codes.empty()) {
    return Status::Ok();
  }
  std::sort(filter.name_codes.begin(), filter.name_codes.end());
  std::vector<uint32_t> names;
  std::vector<int64_t> times;
  store::SubjectRuns runs;
  std::vector<Id128> subjects;
  PropertyColumn anon;
  PropertyColumn alias_column;
  PropertyColumn previous;
  for (const size_t block_idx : segment.MatchingBlocks(filter)) {
    MP_RETURN_IF_ERROR(segment.ReadNameCodes(block_idx, &names));
    MP_RETURN_IF_ERROR(segment.ReadTimes(block_idx, &times));
    MP_RETURN_IF_ERROR(ReadRowSubjects(segment, block_idx, &runs, &subjects));
    MP_RETURN_IF_ERROR(segment.ReadProperty(block_idx, "$anon_distinct_id", &anon));
    MP_RETURN_IF_ERROR(segment.ReadProperty(block_idx, "alias", &alias_column));
    MP_RETURN_IF_ERROR(segment.ReadProperty(block_idx, "previousId", &previous));
    for (size_t row_idx = 0; row_idx < names.size() && row_idx < subjects.size(); ++row_idx) {
      const uint32_t name = names[row_idx];
      const Id128& subject = subjects[row_idx];
      if (identify && name == *identify) {
        if (const auto member = PseudonymAt(anon, row_idx)) {
          links->Add(times[row_idx], *member, subject, IdentityLinkKind::kIdentify, false, true);
        }
      } else if (alias && name == *alias) {
        // Mixpanel and PostHog: alias; Segment's alias: previousId.
        std::optional<Id128> member = PseudonymAt(alias_column, row_idx);
        if (!member) {
          member = PseudonymAt(previous, row_idx);
        }
        if (member) {
          links->Add(times[row_idx], *member, subject, IdentityLinkKind::kAlias, false, false);
        }
      } else if (merge && name == *merge) {
        if (const auto member = PseudonymAt(alias_column, row_idx)) {
          links->Add(times[row_idx], *member, subject, IdentityLinkKind::kMergeDangerously, true,
                     true);
        }
      }
    }
  }
  return Status::Ok();
}

// Ordinary events that carry the ids of the simplified ID merge ($device_id
// and $user_id) or Segment's anonymousId beside the userId subject.
Status ReadIdProperties(const store::SegmentReader& segment, LinkSet* links) {
  const bool device = segment.FindPropertyKey("$device_id") != nullptr;
  const bool anonymous = segment.FindPropertyKey("anonymousId") != nullptr;
  if (!device && !anonymous) {
    return Status::Ok();
  }
  const bool user = segment.FindPropertyKey("$user_id") != nullptr;
  std::vector<int64_t> times;
  store::SubjectRuns runs;
  std::vector<Id128> subjects;
  PropertyColumn device_column;
  PropertyColumn user_column;
  PropertyColumn anonymous_column;
  for (size_t block_idx = 0; block_idx < segment.block_count(); ++block_idx) {
    MP_RETURN_IF_ERROR(segment.ReadTimes(block_idx, &times));
    MP_RETURN_IF_ERROR(ReadRowSubjects(segment, block_idx, &runs, &subjects));
    if (device) {
      MP_RETURN_IF_ERROR(segment.ReadProperty(block_idx, "$device_id", &device_column));
    }
    if (user) {
      MP_RETURN_IF_ERROR(segment.ReadProperty(block_idx, "$user_id", &user_column));
    }
    if (anonymous) {
      MP_RETURN_IF_ERROR(segment.ReadProperty(block_idx, "anonymousId", &anonymous_column));
    }
    for (size_t row_idx = 0; row_idx < times.size() && row_idx < subjects.size(); ++row_idx) {
      const Id128& subject = subjects[row_idx];
      const int64_t time_ms = times[row_idx];
      const std::optional<Id128> device_id =
          device ? PseudonymAt(device_column, row_idx) : std::nullopt;
      const std::optional<Id128> user_id = user ? PseudonymAt(user_column, row_idx) : std::nullopt;
      if (device_id && user_id) {
        links->Add(time_ms, *device_id, *user_id, IdentityLinkKind::kIdentified, false, true);
        if (!(subject == *user_id)) {
          links->Add(time_ms, subject, *user_id, IdentityLinkKind::kIdentified, false, true);
        }
      } else if (device_id) {
        // "$device:X" as distinct_id, X as $device_id: one device.
        links->Add(time_ms, subject, *device_id, IdentityLinkKind::kDevice, false, false);
      }
      if (anonymous) {
        if (const auto anonymous_id = PseudonymAt(anonymous_column, row_idx)) {
          links->Add(time_ms, *anonymous_id, subject, IdentityLinkKind::kIdentified, false, true);
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<IdentityLink>> ReadIdentityLinks(const store::SegmentReader& segment) {
  LinkSet links;
  MP_RETURN_IF_ERROR(ReadLinkEvents(segment, &links));
  MP_RETURN_IF_ERROR(ReadIdProperties(segment, &links));
  return links.Take();
}

IdentityMap IdentityMap::Build(std::vector<IdentityLink> links) {
  IdentityMap map;
  if (links.empty()) {
    return map;
  }
  map.links_ = links.size();
  std::sort(links.begin(), links.end(), [](const IdentityLink& left, const IdentityLink& right) {
    return std::tie(left.time_ms, left.member, left.anchor, left.kind) <
           std::tie(right.time_ms, right.member, right.anchor, right.kind);
  });
  std::unordered_map<Id128, uint32_t, Id128Hash> index;
  std::vector<Id128> ids;
  std::vector<uint32_t> parent;
  std::vector<uint32_t> size;
  // Per root: its identified id (an index), or UINT32_MAX.
  std::vector<uint32_t> user;
  auto node = [&](const Id128& id) {
    const auto [it, inserted] = index.try_emplace(id, static_cast<uint32_t>(ids.size()));
    if (inserted) {
      ids.push_back(id);
      parent.push_back(it->second);
      size.push_back(1);
      user.push_back(UINT32_MAX);
    }
    return it->second;
  };
  auto find = [&](uint32_t at) {
    while (parent[at] != at) {
      parent[at] = parent[parent[at]];
      at = parent[at];
    }
    return at;
  };
  for (const IdentityLink& link : links) {
    const uint32_t member = node(link.member);
    const uint32_t anchor = node(link.anchor);
    const uint32_t member_root = find(member);
    const uint32_t anchor_root = find(anchor);
    // The identified id each side would bring: the one its person has, or
    // the id this link names as identified.
    const bool dangerous = link.kind == IdentityLinkKind::kMergeDangerously;
    uint32_t member_user = user[member_root];
    uint32_t anchor_user = user[anchor_root];
    if (link.member_identified && member_user != UINT32_MAX && member_user != member &&
        !dangerous) {
      ++map.refused_identified_;  // the member already belongs to another user
      continue;
    }
    if (link.anchor_identified && anchor_user != UINT32_MAX && anchor_user != anchor &&
        !dangerous) {
      ++map.refused_identified_;
      continue;
    }
    if (link.member_identified && member_user == UINT32_MAX) {
      member_user = member;
    }
    if (link.anchor_identified && anchor_user == UINT32_MAX) {
      anchor_user = anchor;
    }
    // An id a link names as identified stays identified even when the link
    // is refused below: a user id seen with another user's device must not
    // later join that user's person through an alias (rule 2).
    if (link.member_identified && user[member_root] == UINT32_MAX) {
      user[member_root] = member_user;
    }
    if (link.anchor_identified && user[anchor_root] == UINT32_MAX) {
      user[anchor_root] = anchor_user;
    }
    if (member_root == anchor_root) {
      user[anchor_root] = anchor_user != UINT32_MAX ? anchor_user : member_user;
      continue;
    }
    if (member_user != UINT32_MAX && anchor_user != UINT32_MAX && member_user != anchor_user &&
        !dangerous) {
      ++map.refused_identified_;  // two users are not merged into one person
      continue;
    }
    if (size[member_root] + size[anchor_root] > kIdentityIdsPerPersonMax) {
      ++map.refused_limit_;
      continue;
    }
    // The smaller tree under the larger; the person keeps the anchor's user.
    const uint32_t root = size[member_root] >= size[anchor_root] ? member_root : anchor_root;
    const uint32_t child = root == member_root ? anchor_root : member_root;
    parent[child] = root;
    size[root] += size[child];
    ++map.merges_;
    map.person_ids_max_ = std::max<size_t>(map.person_ids_max_, size[root]);
    user[root] = anchor_user != UINT32_MAX ? anchor_user : member_user;
  }
  // The person's id: its identified id, else its lowest id.
  std::vector<uint32_t> canonical(ids.size(), UINT32_MAX);
  for (uint32_t at = 0; at < ids.size(); ++at) {
    const uint32_t root = find(at);
    if (size[root] < 2) {
      continue;
    }
    if (user[root] != UINT32_MAX) {
      canonical[root] = user[root];
    } else if (canonical[root] == UINT32_MAX || ids[at] < ids[canonical[root]]) {
      canonical[root] = at;
    }
  }
  for (uint32_t at = 0; at < ids.size(); ++at) {
    const uint32_t root = find(at);
    if (size[root] < 2) {
      continue;
    }
    if (root == at) {
      ++map.persons_;
    }
    map.person_.emplace(ids[at], ids[canonical[root]]);
    map.sorted_.emplace_back(ids[at], ids[canonical[root]]);
  }
  std::sort(map.sorted_.begin(), map.sorted_.end());
  return map;
}

namespace {

struct SegmentLinks {
  std::weak_ptr<const store::SegmentReader> segment;
  std::shared_ptr<const std::vector<IdentityLink>> links;
};

struct IdentityCache {
  std::mutex mutex;
  std::unordered_map<const store::SegmentReader*, SegmentLinks> segments;
  // The last snapshot's map and its segments.
  std::vector<std::weak_ptr<const store::SegmentReader>> last_segments;
  std::shared_ptr<const IdentityMap> last_map;
};

IdentityCache& Cache() {
  static IdentityCache* cache = new IdentityCache();
  return *cache;
}

bool SameObject(const std::weak_ptr<const store::SegmentReader>& weak,
                const std::shared_ptr<const store::SegmentReader>& strong) {
  return !weak.owner_before(strong) && !strong.owner_before(weak) && !weak.expired();
}

}  // namespace

Result<std::shared_ptr<const IdentityMap>> ResolveIdentities(
    const std::vector<std::shared_ptr<const store::SegmentReader>>& segments) {
  IdentityCache& cache = Cache();
  std::vector<std::shared_ptr<const std::vector<IdentityLink>>> per_segment(segments.size());
  std::vector<size_t> missing;
  {
    std::lock_guard lock(cache.mutex);
    if (cache.last_map != nullptr && cache.last_segments.size() == segments.size()) {
      bool same = true;
      for (size_t segment_idx = 0; same && segment_idx < segments.size(); ++segment_idx) {
        same = SameObject(cache.last_segments[segment_idx], segments[segment_idx]);
      }
      if (same) {
        return cache.last_map;
      }
    }
    std::erase_if(cache.segments, [](const auto& entry) { return entry.second.segment.expired(); });
    for (size_t segment_idx = 0; segment_idx < segments.size(); ++segment_idx) {
      const auto it = cache.segments.find(segments[segment_idx].get());
      if (it != cache.segments.end() && SameObject(it->second.segment, segments[segment_idx])) {
        per_segment[segment_idx] = it->second.links;
      } else {
        missing.push_back(segment_idx);
      }
    }
  }
  // Read outside the lock: two queries may read one new segment at once,
  // which costs time but not correctness.
  for (const size_t segment_idx : missing) {
    MP_ASSIGN_OR_RETURN(std::vector<IdentityLink> links, ReadIdentityLinks(*segments[segment_idx]));
    per_segment[segment_idx] = std::make_shared<const std::vector<IdentityLink>>(std::move(links));
  }
  std::vector<IdentityLink> all;
  for (const auto& links : per_segment) {
    all.insert(all.end(), links->begin(), links->end());
  }
  auto map = std::make_shared<const IdentityMap>(IdentityMap::Build(std::move(all)));
  std::lock_guard lock(cache.mutex);
  for (const size_t segment_idx : missing) {
    cache.segments[segments[segment_idx].get()] =
        SegmentLinks{segments[segment_idx], per_segment[segment_idx]};
  }
  cache.last_segments.assign(segments.begin(), segments.end());
  cache.last_map = map;
  return map;
}

Status ReadStoredRowSubjects(const store::SegmentReader& segment, size_t block_idx,
                             store::SubjectRuns* runs, std::vector<Id128>* subjects) {
  MP_RETURN_IF_ERROR(segment.ReadSubjects(block_idx, runs));
  subjects->clear();
  for (size_t run_idx = 0; run_idx < runs->subjects.size(); ++run_idx) {
    subjects->insert(subjects->end(), runs->run_lengths[run_idx], runs->subjects[run_idx]);
  }
  if (segment.summary().stored_subject_runs == 0) {
    return Status::Ok();
  }
  std::vector<store::StoredSubjectRun> stored_runs;
  MP_RETURN_IF_ERROR(segment.ReadStoredSubjects(block_idx, &stored_runs));
  for (const store::StoredSubjectRun& run : stored_runs) {
    if (run.row_begin + run.row_count > subjects->size()) {
      return Status::Corruption(segment.name() + ": block " + std::to_string(block_idx) +
                                " has stored subject runs past its rows");
    }
    std::fill_n(subjects->begin() + run.row_begin, run.row_count, run.subject);
  }
  return Status::Ok();
}

bool NeedsPersonPlan(const std::vector<std::shared_ptr<const store::SegmentReader>>& segments,
                     const IdentityMap* identity) {
  if (identity != nullptr && !identity->empty()) {
    return true;
  }
  return std::any_of(segments.begin(), segments.end(), [](const auto& segment) {
    return segment->summary().stored_subject_runs > 0;
  });
}

namespace {

// Which persons the rows under each subject-column value belong to, and
// under which values each person's rows are kept, over a snapshot.
class PersonPlacement {
 public:
  void Add(const Id128& value, const Id128& person) {
    AddUnique(&persons_of_value_[value], person);
    AddUnique(&values_of_person_[person], value);
  }
  // Values holding rows of more than one person.
  bool Mixed(const Id128& value) const { return persons_of_value_.at(value).size() > 1; }
  // Values to set aside: mixed, or holding a person whose rows lie under
  // another value too.
  std::vector<Id128> SetAside() const {
    std::vector<Id128> values;
    for (const auto& [value, persons] : persons_of_value_) {
      bool whole = persons.size() == 1 && values_of_person_.at(persons.front()).size() == 1;
      if (!whole) {
        values.push_back(value);
      }
    }
    std::sort(values.begin(), values.end());
    return values;
  }

 private:
  static void AddUnique(std::vector<Id128>* ids, const Id128& id) {
    if (std::find(ids->begin(), ids->end(), id) == ids->end()) {
      ids->push_back(id);
    }
  }
  std::unordered_map<Id128, std::vector<Id128>, Id128Hash> persons_of_value_;
  std::unordered_map<Id128, std::vector<Id128>, Id128Hash> values_of_person_;
};

// A stored subject kept under another value, in one segment.
struct FoldedRows {
  Id128 stored;
  Id128 value;
  const store::SegmentReader* segment = nullptr;
};

// Records, for one block, the ids of interest (linked, or stored in some
// folded row) its subject column holds, and the stored subjects its folded
// rows are kept under.
Status PlaceBlock(const store::SegmentReader& segment, size_t block_idx, const PersonPlan& plan,
                  const std::vector<Id128>& interest, store::SubjectRuns* runs,
                  std::vector<store::StoredSubjectRun>* stored_runs, PersonPlacement* placement,
                  std::vector<FoldedRows>* folded) {
  const store::SegmentBlockInfo& info = segment.block(block_idx);
  const auto first_linked = std::lower_bound(interest.begin(), interest.end(), info.subject_first);
  const bool any_linked =
      first_linked != interest.end() && !(info.subject_last < *first_linked);
  stored_runs->clear();
  if (segment.summary().stored_subject_runs > 0) {
    MP_RETURN_IF_ERROR(segment.ReadStoredSubjects(block_idx, stored_runs));
  }
  if (!any_linked && stored_runs->empty()) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(segment.ReadSubjects(block_idx, runs));
  auto cursor = first_linked;
  size_t stored_idx = 0;
  uint32_t run_begin = 0;
  for (size_t run_idx = 0; run_idx < runs->subjects.size(); ++run_idx) {
    const Id128& value = runs->subjects[run_idx];
    const uint32_t run_end = run_begin + runs->run_lengths[run_idx];
    while (cursor != interest.end() && *cursor < value) {
      ++cursor;
    }
    const bool value_linked = cursor != interest.end() && *cursor == value;
    bool value_folded = false;
    while (stored_idx < stored_runs->size() && (*stored_runs)[stored_idx].row_begin < run_end) {
      const Id128& stored = (*stored_runs)[stored_idx].subject;
      placement->Add(value, plan.PersonOf(stored));
      folded->push_back(FoldedRows{stored, value, &segment});
      value_folded = true;
      ++stored_idx;
    }
    if (value_linked || value_folded) {
      // The value's own rows (a folded value is counted as holding some).
      placement->Add(value, plan.PersonOf(value));
    }
    run_begin = run_end;
  }
  return Status::Ok();
}

}  // namespace

Result<PersonPlan> PersonPlan::Build(
    const std::vector<std::shared_ptr<const store::SegmentReader>>& segments,
    std::shared_ptr<const IdentityMap> identity) {
  PersonPlan plan;
  if (identity != nullptr && !identity->empty()) {
    plan.identity_ = std::move(identity);
  }
  static const std::vector<std::pair<Id128, Id128>> kNoLinks;
  const std::vector<std::pair<Id128, Id128>>& linked =
      plan.identity_ != nullptr ? plan.identity_->sorted() : kNoLinks;
  PersonPlacement placement;
  std::vector<FoldedRows> folded;
  store::SubjectRuns runs;
  std::vector<store::StoredSubjectRun> stored_runs;
  // The ids whose rows may lie under another value: the linked ones and
  // those stored in folded rows (from the footers: no read). Their plain
  // rows are found wherever they are a value.
  std::vector<Id128> interest;
  for (const auto& [id, person] : linked) {
    interest.push_back(id);
  }
  for (const auto& segment : segments) {
    for (size_t block_idx = 0;
         segment->summary().stored_subject_runs > 0 && block_idx < segment->block_count();
         ++block_idx) {
      MP_RETURN_IF_ERROR(segment->ReadStoredSubjects(block_idx, &stored_runs));
      for (const store::StoredSubjectRun& run : stored_runs) {
        interest.push_back(run.subject);
      }
    }
  }
  std::sort(interest.begin(), interest.end());
  interest.erase(std::unique(interest.begin(), interest.end()), interest.end());
  for (const auto& segment : segments) {
    for (size_t block_idx = 0; !interest.empty() && block_idx < segment->block_count();
         ++block_idx) {
      if (segment->block(block_idx).row_count == 0) {
        continue;
      }
      MP_RETURN_IF_ERROR(PlaceBlock(*segment, block_idx, plan, interest, &runs, &stored_runs,
                                    &placement, &folded));
    }
  }
  plan.set_aside_ = placement.SetAside();
  // Every stored subject of a folded row gets an index, in id order; the
  // segments holding values of several persons are not folded by row.
  for (const FoldedRows& rows : folded) {
    plan.stored_.push_back(rows.stored);
    if (placement.Mixed(rows.value)) {
      plan.tagging_.insert(rows.segment);
    }
  }
  std::sort(plan.stored_.begin(), plan.stored_.end());
  plan.stored_.erase(std::unique(plan.stored_.begin(), plan.stored_.end()), plan.stored_.end());
  if (plan.stored_.size() > kPersonPlanStoredIdsMax) {
    return Status::ResourceExhausted(
        "identity: " + std::to_string(plan.stored_.size()) +
        " ids stored in folded rows, over the limit of " +
        std::to_string(kPersonPlanStoredIdsMax) + " (kPersonPlanStoredIdsMax)");
  }
  for (uint32_t index = 0; index < plan.stored_.size(); ++index) {
    plan.stored_index_.emplace(plan.stored_[index], index + 1);
  }
  std::unordered_set<Id128, Id128Hash> whole;
  for (const FoldedRows& rows : folded) {
    if (!std::binary_search(plan.set_aside_.begin(), plan.set_aside_.end(), rows.value)) {
      whole.insert(rows.value);
    }
  }
  plan.folded_whole_ = whole.size();
  return plan;
}

namespace {

struct PersonPlanCache {
  std::mutex mutex;
  std::vector<std::weak_ptr<const store::SegmentReader>> segments;
  std::weak_ptr<const IdentityMap> identity;
  bool with_identity = false;
  std::shared_ptr<const PersonPlan> plan;
};

PersonPlanCache& PlanCache() {
  static PersonPlanCache* cache = new PersonPlanCache();
  return *cache;
}

}  // namespace

Result<std::shared_ptr<const PersonPlan>> ResolvePersonPlan(
    const std::vector<std::shared_ptr<const store::SegmentReader>>& segments,
    std::shared_ptr<const IdentityMap> identity) {
  PersonPlanCache& cache = PlanCache();
  {
    std::lock_guard lock(cache.mutex);
    bool same = cache.plan != nullptr && cache.segments.size() == segments.size() &&
                cache.with_identity == (identity != nullptr) &&
                (identity == nullptr || (!cache.identity.owner_before(identity) &&
                                         !identity.owner_before(cache.identity) &&
                                         !cache.identity.expired()));
    for (size_t segment_idx = 0; same && segment_idx < segments.size(); ++segment_idx) {
      same = SameObject(cache.segments[segment_idx], segments[segment_idx]);
    }
    if (same) {
      return cache.plan;
    }
  }
  MP_ASSIGN_OR_RETURN(PersonPlan plan, PersonPlan::Build(segments, identity));
  auto shared = std::make_shared<const PersonPlan>(std::move(plan));
  std::lock_guard lock(cache.mutex);
  cache.segments.assign(segments.begin(), segments.end());
  cache.identity = identity;
  cache.with_identity = identity != nullptr;
  cache.plan = shared;
  return shared;
}

std::shared_ptr<const store::SubjectFold> SubjectFoldOf(const IdentityMap& map) {
  auto fold = std::make_shared<store::SubjectFold>();
  // FNV-1a over the table, so that equal maps name equal generations.
  uint64_t hash = 0xcbf29ce484222325ULL;
  const auto mix = [&hash](uint64_t word) {
    for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
      hash = (hash ^ ((word >> (8 * byte_idx)) & 0xFF)) * 0x100000001b3ULL;
    }
  };
  for (const auto& [id, person] : map.sorted()) {
    if (id == person) {
      continue;
    }
    fold->persons.emplace_back(id, person);
    mix(id.high);
    mix(id.low);
    mix(person.high);
    mix(person.low);
  }
  fold->generation = hash == 0 ? 1 : hash;
  return fold;
}

}  // namespace minpanel::query
