// Internal to the query module: time buckets in a zone, compiled filters,
// breakdown groups and the per-segment scan that the three query kinds share.
//
// Everything here is single-threaded: one query owns its objects.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "query/identity.h"
#include "query/query.h"

namespace date {
class time_zone;
}

namespace minpanel::query::internal {

// A zone looked up once (nullptr never; InvalidArgument for unknown names).
Result<const date::time_zone*> LocateZone(std::string_view name);

// Consecutive calendar buckets of one unit in one zone: bucket i covers
// [starts[i], starts[i + 1]). The first bucket holds `from_ms`; buckets
// continue until one starts at or after `to_ms`, then `extra` more follow
// (retention periods past the last cohort).
class TimeBuckets {
 public:
  static Result<TimeBuckets> Make(const date::time_zone* zone, TimeUnit unit, int64_t from_ms,
                                  int64_t to_ms, size_t extra, size_t buckets_max);

  // Buckets inside the range (without the extra ones).
  size_t range_count() const { return range_count_; }
  // All buckets, the extra ones included.
  size_t count() const { return starts_.size() - 1; }
  int64_t start(size_t bucket_idx) const { return starts_[bucket_idx]; }
  int64_t end(size_t bucket_idx) const { return starts_[bucket_idx + 1]; }
  // The bucket holding `time_ms`: -1 before the first, count() at or after
  // the end of the last. Inline for uniform buckets: a segmentation calls
  // it for every row it adds.
  int64_t Index(int64_t time_ms) const {
    if (uniform_width_ms_ != 0 && time_ms >= starts_.front() && time_ms < starts_.back()) {
      return (time_ms - starts_.front()) / uniform_width_ms_;
    }
    return IndexBySearch(time_ms);
  }
  Bucket Label(size_t bucket_idx) const;

 private:
  int64_t IndexBySearch(int64_t time_ms) const;

  const date::time_zone* zone_ = nullptr;
  TimeUnit unit_ = TimeUnit::kDay;
  std::vector<int64_t> starts_;  // count() + 1 entries
  size_t range_count_ = 0;
  // Uniform buckets (hours, or days in a zone without a transition in the
  // range) skip the search.
  int64_t uniform_width_ms_ = 0;
};

// Breakdown values of one property, numbered as they are first met. A key is
// a type byte and the value's bytes, so the string "3" and the number 3 are
// different groups while int 3 and double 3.0 are one.
class ValueNumbering {
 public:
  static constexpr uint32_t kMissing = UINT32_MAX;
  // The id of `key`, or kMissing.
  uint32_t Find(std::string_view key) const;
  // Numbers a new key. Precondition: Find(key) == kMissing.
  uint32_t Add(std::string_view key, Value value);
  const Value& value(uint32_t id) const { return values_[id]; }
  size_t size() const { return values_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> ids_;
  std::vector<Value> values_;
};

// The numbering key of a breakdown value (see ValueNumbering).
std::string GroupValueKey(const Value& value);

// One row of a segment block that a query keeps.
struct MatchRow {
  int64_t time_ms = 0;
  uint32_t bits = 0;   // which selectors the event matches (bit = selector index)
  uint32_t group = 0;  // breakdown group, when computed for this row
  double value = NAN;  // the measure property, when numeric
  uint8_t tie = 0;     // orders events of the same millisecond (funnels)
  // A row of a folded segment stored under another subject than its value:
  // 1 + the PersonPlan index of that subject (PersonPlan::StoredIndex); 0
  // for the value's own rows (three bytes, in the padding: the row stays
  // 32 bytes). Set where rows are not folded (fold_rows).
  uint8_t stored_high = 0;
  uint16_t stored_low = 0;
  uint32_t Stored() const { return uint32_t{stored_high} << 16 | stored_low; }
  void SetStored(uint32_t index) {
    stored_high = static_cast<uint8_t>(index >> 16);
    stored_low = static_cast<uint16_t>(index);
  }
  // How many events this row stands for: more than 1 only when the plan
  // folds rows (ScanPlan::fold_rows).
  uint32_t weight = 1;
};

static_assert(sizeof(MatchRow) == 32, "MatchRow is copied per kept row: keep it small");

// What a scan needs: the selectors (at most 32), which of them decide the
// breakdown group, whether events matching none are kept too (strict
// funnels), the measure property and the time range of rows to keep.
struct ScanPlan {
  std::vector<const EventSelector*> selectors;
  uint32_t group_bits = 0;  // rows with one of these bits get a group
  bool keep_unmatched = false;
  // Whether rows must come with their subjects (run_subjects, run_ends);
  // segmentation without unique subjects does not need them.
  bool need_subjects = true;
  std::string measure_property;  // empty: none
  std::vector<std::string> breakdown;
  int64_t time_min_ms = INT64_MIN;  // inclusive
  int64_t time_max_ms = INT64_MAX;  // inclusive
  // Only the subjects in this range (inclusive) when set: how a query splits
  // its work between threads.
  std::optional<Id128> subject_min;
  std::optional<Id128> subject_max;
  std::vector<uint8_t> tie_by_bit;  // MatchRow::tie from the lowest bit; 255 for none
  // Segmentation, where a row's time only picks its bucket: a block whose
  // times all lie in the range and in one of these buckets is read without
  // its time column, and its rows carry the block's first time instead.
  const TimeBuckets* buckets = nullptr;
  // With `buckets`, no measure property and no funnel or retention pass:
  // the rows of such a block that agree on bits and group (and subject,
  // when subjects are needed) may come as one row with a weight.
  bool fold_rows = false;
  // Subjects that share a person with other ids (docs/identity.md); nullptr
  // or empty: every subject is a person of its own, and nothing below costs.
  const IdentityMap* identity = nullptr;
  // Which subject-column values are set aside (docs/identity.md, "Folded
  // segments"); nullptr: none. A segment it names has its rows tagged with
  // their stored subjects and is not folded by run (fold_rows).
  const PersonPlan* persons = nullptr;
  // The profiles that profile and group properties are read from (the
  // person view of QueryContext::profiles); nullptr when the query names none.
  const ProfileTable* profiles = nullptr;
  // A unique-groups measure: the group key whose group ids are counted; each
  // kept row's `value` is then its group's number in Groups::GroupNumber, or
  // -(1 + Groups::GroupListNumber) for an event in several groups (NaN
  // without a group).
  std::string unique_group_key;
};

// The group ids of row `row_idx` from the columns of a group key property
// and of "$groups.<key>" (either may be nullptr; the first that holds a
// string or a list names them): a "psn_" pseudonym, or each "psn_" item of
// a list (an event in several groups), sorted and unique; none for a value
// the policy kept raw.
void GroupIdsAt(const store::PropertyColumn* const* id_columns, size_t row_idx,
                std::vector<Id128>* ids);

// Fills `column` with the profile property (`runs`: the block's subjects) or
// the group property (`id_columns` as GroupIdAt) `ref` of each of `rows`
// rows; string views point into `profiles`.
void FillProfileColumn(const PropertyRef& ref, const ProfileTable& profiles,
                       const store::SubjectRuns& runs,
                       const store::PropertyColumn* const* id_columns, size_t rows,
                       store::PropertyColumn* column);

// Breakdown groups shared by every segment of one query.
class Groups {
 public:
  explicit Groups(size_t property_count) : numberings_(property_count) {}
  // The group of the combination of per-property value ids.
  uint32_t Combine(const uint32_t* value_ids);
  // The group of `key` (numbering its values as needed): how the groups of
  // one thread are found among another's.
  uint32_t Intern(const GroupKey& key);
  size_t size() const { return combinations_.size(); }
  GroupKey Key(uint32_t group) const;
  ValueNumbering& numbering(size_t property_idx) { return numberings_[property_idx]; }
  size_t property_count() const { return numberings_.size(); }
  // Group ids (unique-groups measures), numbered as they are first met.
  uint32_t GroupNumber(const Id128& group) {
    const auto [it, inserted] =
        group_numbers_.try_emplace(group, static_cast<uint32_t>(group_ids_.size()));
    if (inserted) {
      group_ids_.push_back(group);
    }
    return it->second;
  }
  const std::vector<Id128>& group_ids() const { return group_ids_; }
  // The number of a list of group numbers (an event in several groups),
  // numbered as first met; unique-groups rows hold -(number + 1).
  uint32_t GroupListNumber(std::vector<uint32_t> group_numbers) {
    const auto [it, inserted] =
        group_list_numbers_.try_emplace(group_numbers, static_cast<uint32_t>(group_lists_.size()));
    if (inserted) {
      group_lists_.push_back(std::move(group_numbers));
    }
    return it->second;
  }
  const std::vector<uint32_t>& GroupList(uint32_t number) const { return group_lists_[number]; }

 private:
  std::unordered_map<Id128, uint32_t, Id128Hash> group_numbers_;
  std::vector<Id128> group_ids_;
  struct ListHash {
    size_t operator()(const std::vector<uint32_t>& list) const {
      size_t hash = list.size();
      for (const uint32_t number : list) {
        hash = hash * 0x9e3779b97f4a7c15ULL + number;
      }
      return hash;
    }
  };
  std::unordered_map<std::vector<uint32_t>, uint32_t, ListHash> group_list_numbers_;
  std::vector<std::vector<uint32_t>> group_lists_;
  std::vector<ValueNumbering> numberings_;
  std::unordered_map<uint64_t, uint32_t> ids_;
  // With one property (or none), the group of each value id, or kMissing:
  // Combine is called per row, and an array beats the hash map.
  std::vector<uint32_t> single_ids_;
  std::vector<std::pair<uint32_t, uint32_t>> combinations_;
};

// Reads one segment block by block, keeping the rows a plan asks for, as
// runs of one subject. Dictionary columns are matched by code: a filter's
// strings are translated once per segment.
class SegmentScanner {
 public:
  SegmentScanner(const store::SegmentReader& segment, const ScanPlan& plan, Groups* groups,
                 QueryStats* stats);
  ~SegmentScanner();
  SegmentScanner(const SegmentScanner&) = delete;
  SegmentScanner& operator=(const SegmentScanner&) = delete;

  // Reads the next block that keeps a row. False at the end (or on error:
  // check status()).
  bool NextBlock();
  const Status& status() const { return status_; }
  // The kept rows of the current block and their subjects as runs.
  const std::vector<MatchRow>& rows() const { return rows_; }
  const std::vector<Id128>& run_subjects() const { return run_subjects_; }
  const std::vector<uint32_t>& run_ends() const { return run_ends_; }  // exclusive, into rows()

 private:
  struct State;
  class LentScratch;
  std::unique_ptr<State> state_;
  Status status_;
  std::vector<MatchRow> rows_;
  std::vector<Id128> run_subjects_;
  std::vector<uint32_t> run_ends_;
};

// Merges the scanners of all segments by subject: each call hands over all
// kept rows of the next subject (in increasing subject order), sorted by
// (time, tie) — whichever segments they came from.
//
// Subjects are keyed hashes, spread evenly over the 128-bit space, so the
// merge works a window of that space at a time instead of keeping a heap of
// cursors: it copies every cursor's runs whose subject lies in the window
// (each cursor is read in order, a block at a time), then orders the
// window's runs by subject with one counting pass over the high bits (a
// bucket holds about one subject) and a stable sort only of the buckets
// that hold several. A heap cost O(log k) unpredictable comparisons per
// (subject, segment) pair over k segments — 38 % of a unique count's CPU at
// 10M events and 63 segments (docs/benchmarks.md); this costs two copies
// and a few predictable steps per pair. The window adapts its width so that
// it holds about kWindowRunsTarget runs, and so a bounded amount of rows.
class SubjectMerger {
 public:
  // `persons` (may be nullptr): rows tagged with stored subjects
  // (MatchRow::stored) are ordered by them among equal (time, tie).
  explicit SubjectMerger(std::vector<std::unique_ptr<SegmentScanner>> scanners,
                         const PersonPlan* persons = nullptr);
  // False at the end or on error (check status()). With `portions`, the
  // rows come unsorted: each segment's in its order, one after the other,
  // and `portions` gets (segment index, end of its rows) for each; SortRows
  // then sorts them.
  bool Next(Id128* subject, std::vector<MatchRow>* rows,
            std::vector<std::pair<uint32_t, uint32_t>>* portions = nullptr);
  // Sorts one subject's rows by (time, tie), and by stored subject among
  // equal ones (each segment's rows keep their order).
  void SortRows(const Id128& subject, std::vector<MatchRow>* rows) const;
  // For a consumer that needs a subject's rows together but in no order (a
  // count of unique subjects per cell): calls visit(rows, count,
  // new_subject) for each run of one subject in one segment, in subject
  // order, straight from the window — without Next's copy into one vector
  // and its sort. `new_subject` is true for the first run of each subject.
  // Stops early when visit returns false. Check status() after.
  template <typename Visit>
  void ForEachRunUnsorted(Visit&& visit) {
    while (next_run_ < window_runs_.size() || FillWindow()) {
      const WindowRun* runs = window_runs_.data();
      const MatchRow* rows = window_rows_.data();
      const size_t run_count = window_runs_.size();
      for (size_t run_idx = next_run_; run_idx < run_count; ++run_idx) {
        // The runs were copied cursor after cursor and are visited in
        // subject order, so their rows are read in no order: fetched ahead
        // (without it, the first row of each run was half of this loop).
        if (run_idx + kPrefetchRuns < run_count) {
          __builtin_prefetch(rows + runs[run_idx + kPrefetchRuns].rows_begin);
        }
        const WindowRun& run = runs[run_idx];
        const bool new_subject = run_idx == 0 || !(runs[run_idx - 1].subject == run.subject);
        if (!visit(rows + run.rows_begin, run.row_count, new_subject)) {
          next_run_ = run_idx + 1;
          return;
        }
      }
      next_run_ = run_count;
    }
  }
  const Status& status() const { return status_; }

 private:
  struct Cursor {
    std::unique_ptr<SegmentScanner> scanner;
    size_t run_idx = 0;
    bool done = false;
  };
  // One run of one cursor in the window: rows [rows_begin, rows_begin +
  // row_count) of window_rows_.
  struct WindowRun {
    Id128 subject;
    uint64_t rows_begin = 0;
    uint32_t row_count = 0;
    uint32_t cursor = 0;  // its segment's index in the snapshot
  };
  static constexpr size_t kWindowRunsTarget = 16'384;
  static constexpr size_t kPrefetchRuns = 16;  // ForEachRunUnsorted's distance
  static constexpr uint32_t kWindowBitsInitial = 54;  // 1,024 windows over the space

  bool Advance(Cursor* cursor);
  // Collects the next window's runs into window_runs_ in subject order
  // (cursor order among equal subjects). False when every cursor is done.
  bool FillWindow();
  void OrderWindow(uint64_t window_start, uint32_t window_bits);

  std::vector<Cursor> cursors_;
  uint32_t window_bits_ = kWindowBitsInitial;  // the window spans 2^bits values of Id128::high
  std::vector<MatchRow> window_rows_;
  std::vector<WindowRun> collected_;    // cursor after cursor
  std::vector<WindowRun> window_runs_;  // by subject
  std::vector<uint32_t> bucket_starts_;
  size_t next_run_ = 0;  // into window_runs_
  const PersonPlan* persons_ = nullptr;
  Status status_;
};

// The rows of the subjects that share a person with other ids, set aside
// by PersonMerger, per person: one chunk per subject. Each chunk keeps the
// index of the part (thread) whose Groups numbered its rows.
struct PersonSpill {
  struct Chunk {
    Id128 subject;  // the rows' stored subject
    size_t part = 0;
    uint32_t segment = 0;  // the rows' segment (index in the snapshot)
    std::vector<MatchRow> rows;
  };
  std::unordered_map<Id128, std::vector<Chunk>, Id128Hash> persons;
};

// Subjects (or persons) one at a time with their rows sorted by (time, tie).
class SubjectSource {
 public:
  virtual ~SubjectSource() = default;
  virtual bool Next(Id128* subject, std::vector<MatchRow>* rows) = 0;
  virtual Status status() const = 0;
};

// A SubjectMerger that hands over the values that are whole persons, and
// sets the rows of the values the plan names aside in `spill`, each row
// with the person of its stored subject.
class PersonMerger : public SubjectSource {
 public:
  PersonMerger(std::vector<std::unique_ptr<SegmentScanner>> scanners, const PersonPlan* persons,
               PersonSpill* spill, size_t part)
      : merger_(std::move(scanners), persons),
        persons_(persons != nullptr && !persons->empty() ? persons : nullptr),
        spill_(spill),
        part_(part) {}
  bool Next(Id128* subject, std::vector<MatchRow>* rows) override {
    if (persons_ == nullptr) {
      return merger_.Next(subject, rows);
    }
    while (merger_.Next(subject, rows, &portions_)) {
      // Values come in increasing order: walk the sorted set-aside ones.
      const std::vector<Id128>& set_aside = persons_->set_aside();
      if (!started_) {
        started_ = true;
        next_ = static_cast<size_t>(
            std::lower_bound(set_aside.begin(), set_aside.end(), *subject) - set_aside.begin());
      }
      while (next_ < set_aside.size() && set_aside[next_] < *subject) {
        ++next_;
      }
      if (next_ == set_aside.size() || !(set_aside[next_] == *subject)) {
        merger_.SortRows(*subject, rows);
        return true;
      }
      SetAside(*subject, *rows);
    }
    return false;
  }
  Status status() const override { return merger_.status(); }
  // The merger itself when every value it hands over is a whole person (no
  // value is set aside), else nullptr.
  SubjectMerger* WholePersons() { return persons_ == nullptr ? &merger_ : nullptr; }

 private:
  // One chunk per (stored subject, segment) of the value's rows.
  void SetAside(const Id128& value, const std::vector<MatchRow>& rows);

  SubjectMerger merger_;
  const PersonPlan* persons_;
  PersonSpill* spill_;
  size_t part_;
  bool started_ = false;
  size_t next_ = 0;  // into persons_->set_aside()
  std::vector<std::pair<uint32_t, uint32_t>> portions_;
};

// The persons set aside in spills, in person order, each with the rows of
// all its subjects merged by (time, tie) — among equal ones, in subject
// order, then segment order. With `target`, a row's group (numbered by part_groups[chunk.part])
// is renumbered in `target`.
class SpillSource : public SubjectSource {
 public:
  SpillSource(std::vector<PersonSpill*> spills, std::vector<Groups*> part_groups, Groups* target);
  bool Next(Id128* subject, std::vector<MatchRow>* rows) override;
  Status status() const override { return Status::Ok(); }

 private:
  std::vector<std::pair<Id128, std::vector<PersonSpill::Chunk*>>> persons_;
  size_t next_ = 0;
  std::vector<Groups*> part_groups_;
  Groups* target_;
  std::vector<std::vector<uint32_t>> renumbered_;  // per part, per group
};

// Nearest-rank percentile (p in (0, 1]) of `values`, which it reorders.
template <typename T>
T Percentile(std::vector<T>* values, double p) {
  const size_t n = values->size();
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
  rank = rank == 0 ? 1 : rank;
  std::nth_element(values->begin(), values->begin() + static_cast<std::ptrdiff_t>(rank - 1),
                   values->end());
  return (*values)[rank - 1];
}

}  // namespace minpanel::query::internal
