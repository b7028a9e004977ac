// RunQuery: segmentation, funnels and retention over the scan of
// query_scan.cc. The semantics implemented here are specified in
// docs/queries.md; the differential test (query_differential_test.cc) checks
// them against a row-by-row reference.
#include <algorithm>
#include <functional>
#include <numeric>
#include <thread>
#include <unordered_set>

#include "core/time_units.h"
#include "query/query_internal.h"
#include "query/suppress.h"

namespace minpanel::query {
namespace {

using internal::Groups;
using internal::MatchRow;
using internal::PersonMerger;
using internal::PersonSpill;
using internal::ScanPlan;
using internal::SegmentScanner;
using internal::SpillSource;
using internal::SubjectMerger;
using internal::SubjectSource;
using internal::TimeBuckets;

std::vector<std::unique_ptr<SegmentScanner>> MakeScanners(const QueryContext& context,
                                                          const ScanPlan& plan, Groups* groups,
                                                          QueryStats* stats) {
  std::vector<std::unique_ptr<SegmentScanner>> scanners;
  for (const auto& segment : context.segments) {
    scanners.push_back(std::make_unique<SegmentScanner>(*segment, plan, groups, stats));
  }
  return scanners;
}

// Splits a plan's subjects into `threads` ranges of the 128-bit subject space
// (subjects are keyed pseudonyms, so equal ranges hold about equal shares).
std::vector<ScanPlan> SplitBySubject(const ScanPlan& plan, size_t threads) {
  std::vector<ScanPlan> plans(threads, plan);
  const uint64_t step = UINT64_MAX / threads + 1;
  for (size_t thread_idx = 0; thread_idx < threads; ++thread_idx) {
    if (thread_idx > 0) {
      plans[thread_idx].subject_min = Id128{step * thread_idx, 0};
    }
    if (thread_idx + 1 < threads) {
      plans[thread_idx].subject_max = Id128{step * (thread_idx + 1) - 1, UINT64_MAX};
    }
  }
  return plans;
}

// Runs work(0 .. threads - 1), one on this thread and the rest on their own;
// the first failure is the answer.
Status ForEachThread(size_t threads, const std::function<Status(size_t)>& work) {
  std::vector<Status> statuses(threads);
  std::vector<std::thread> workers;
  for (size_t thread_idx = 1; thread_idx < threads; ++thread_idx) {
    workers.emplace_back([&, thread_idx] { statuses[thread_idx] = work(thread_idx); });
  }
  statuses[0] = work(0);
  for (std::thread& worker : workers) {
    worker.join();
  }
  for (const Status& status : statuses) {
    MP_RETURN_IF_ERROR(status);
  }
  return Status::Ok();
}

// Splits the segments between `threads` contexts, each segment whole, the
// largest first to the one with the fewest rows so far.
std::vector<QueryContext> SplitBySegment(const QueryContext& context, size_t threads) {
  std::vector<QueryContext> parts(threads);
  std::vector<uint64_t> rows(threads, 0);
  std::vector<size_t> order(context.segments.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t left, size_t right) {
    return context.segments[left]->summary().row_count >
           context.segments[right]->summary().row_count;
  });
  for (QueryContext& part : parts) {
    part.time_zone = context.time_zone;
    part.now_ms = context.now_ms;
    part.threads = 1;
  }
  for (const size_t segment_idx : order) {
    const size_t part_idx =
        static_cast<size_t>(std::min_element(rows.begin(), rows.end()) - rows.begin());
    parts[part_idx].segments.push_back(context.segments[segment_idx]);
    rows[part_idx] += context.segments[segment_idx]->summary().row_count;
  }
  return parts;
}

// Parts that split by subject each see every segment: count the segments
// and their blocks once. Parts that split by segment see their own.
void AddStats(const QueryStats& part, bool by_segment, QueryStats* total) {
  total->segments = by_segment ? total->segments + part.segments : part.segments;
  total->blocks_total = by_segment ? total->blocks_total + part.blocks_total : part.blocks_total;
  total->blocks_read += part.blocks_read;
  total->rows_read += part.rows_read;
}

size_t ThreadCount(const QueryContext& context) {
  return std::clamp<size_t>(context.threads, 1, kQueryThreadsMax);
}

// How breakdown values order among groups of equal weight: booleans, then
// numbers (by value), strings (bytewise), lists; null last.
int TypeRank(const Value& value) {
  switch (value.type()) {
    case Value::Type::kBool:
      return 0;
    case Value::Type::kInt:
    case Value::Type::kDouble:
      return 1;
    case Value::Type::kString:
      return 2;
    case Value::Type::kList:
      return 3;
    case Value::Type::kNull:
      return 4;
  }
  return 4;
}

double AsNumber(const Value& value) {
  return value.type() == Value::Type::kInt ? static_cast<double>(value.as_int())
                                           : value.as_double();
}

bool ValueLess(const Value& left, const Value& right) {
  const int left_rank = TypeRank(left);
  const int right_rank = TypeRank(right);
  if (left_rank != right_rank) {
    return left_rank < right_rank;
  }
  switch (left_rank) {
    case 0:
      return left.as_bool() < right.as_bool();
    case 1:
      return AsNumber(left) < AsNumber(right);
    case 2:
      return left.as_string() < right.as_string();
    case 3:
      return left.as_list() < right.as_list();
    default:
      return false;
  }
}

// The order of breakdown groups: by `weight` descending, then by value.
std::vector<uint32_t> RankGroups(const Groups& groups, const std::vector<uint64_t>& weight) {
  std::vector<uint32_t> order;
  std::vector<GroupKey> keys(weight.size());
  for (uint32_t group = 0; group < weight.size(); ++group) {
    if (weight[group] > 0) {
      order.push_back(group);
      keys[group] = groups.Key(group);
    }
  }
  std::sort(order.begin(), order.end(), [&](uint32_t left, uint32_t right) {
    if (weight[left] != weight[right]) {
      return weight[left] > weight[right];
    }
    return std::lexicographical_compare(keys[left].values.begin(), keys[left].values.end(),
                                        keys[right].values.begin(), keys[right].values.end(),
                                        ValueLess);
  });
  return order;
}

// Segmentation.

struct Cells {
  size_t stride = 0;  // buckets + 1 (the last: the whole range)
  size_t series = 0;
  size_t slots = 0;  // groups (or output slots)
  std::vector<uint64_t> count;
  std::vector<uint64_t> numeric_count;
  std::vector<double> sum;
  std::vector<double> min;
  std::vector<double> max;
  std::vector<uint64_t> uniques;
  std::vector<uint64_t> stamp;
  // A unique-groups measure: the distinct groups per cell (`uniques` then
  // still counts the subjects behind it, which k-suppression needs).
  bool count_groups = false;
  std::vector<uint64_t> group_uniques;
  // Distinct subjects with a numeric value: those behind a property measure.
  std::vector<uint64_t> numeric_uniques;
  std::vector<uint64_t> numeric_stamp;
  std::vector<std::vector<double>> values;
  bool keep_values = false;

  // False (and no growth) past kQueryCellsMax.
  bool Grow(size_t slot_count) {
    if (slot_count <= slots) {
      return true;
    }
    if (slot_count * series * stride > kQueryCellsMax) {
      return false;
    }
    slots = slot_count;
    const size_t size = slots * series * stride;
    count.resize(size, 0);
    numeric_count.resize(size, 0);
    sum.resize(size, 0);
    min.resize(size, INFINITY);
    max.resize(size, -INFINITY);
    uniques.resize(size, 0);
    stamp.resize(size, 0);
    group_uniques.resize(size, 0);
    numeric_uniques.resize(size, 0);
    numeric_stamp.resize(size, 0);
    if (keep_values) {
      values.resize(size);
    }
    return true;
  }
  size_t Index(size_t slot, size_t series_idx, size_t bucket) const {
    return (slot * series + series_idx) * stride + bucket;
  }
  // `weight` events of one subject, with `value` (NaN for none, or when
  // weight > 1: folded rows carry no value).
  void Add(size_t cell, double value, uint64_t subject_ordinal, uint32_t weight) {
    count[cell] += weight;
    if (subject_ordinal != 0) {
      // Without a branch on whether the subject is new to the cell: its
      // day cells answer mostly yes and its total cell yes once, then no
      // for each further segment — a misprediction or two per subject.
      uniques[cell] += static_cast<uint64_t>(stamp[cell] != subject_ordinal);
      stamp[cell] = subject_ordinal;
    }
    if (!std::isnan(value)) {
      numeric_count[cell] += 1;
      sum[cell] += value;
      min[cell] = std::min(min[cell], value);
      max[cell] = std::max(max[cell], value);
      if (keep_values) {
        values[cell].push_back(value);
      }
      if (subject_ordinal != 0 && numeric_stamp[cell] != subject_ordinal) {
        numeric_stamp[cell] = subject_ordinal;
        numeric_uniques[cell] += 1;
      }
    }
  }
  void Merge(size_t target, size_t source) { MergeFrom(*this, target, source); }
  // Unique subjects add up: the cells merged hold disjoint subjects (other
  // groups, or another thread's share of the subject space).
  void MergeFrom(const Cells& other, size_t target, size_t source) {
    count[target] += other.count[source];
    numeric_count[target] += other.numeric_count[source];
    sum[target] += other.sum[source];
    min[target] = std::min(min[target], other.min[source]);
    max[target] = std::max(max[target], other.max[source]);
    uniques[target] += other.uniques[source];
    group_uniques[target] += other.group_uniques[source];
    numeric_uniques[target] += other.numeric_uniques[source];
    if (keep_values) {
      values[target].insert(values[target].end(), other.values[source].begin(),
                            other.values[source].end());
    }
  }
  std::optional<double> Measure(Measure measure, size_t cell) {
    const auto n = static_cast<double>(numeric_count[cell]);
    switch (measure) {
      case Measure::kTotal:
        return static_cast<double>(count[cell]);
      case Measure::kUnique:
        return static_cast<double>(count_groups ? group_uniques[cell] : uniques[cell]);
      case Measure::kSum:
        return sum[cell];
      case Measure::kAverage:
        return n == 0 ? std::nullopt : std::optional<double>(sum[cell] / n);
      case Measure::kMin:
        return n == 0 ? std::nullopt : std::optional<double>(min[cell]);
      case Measure::kMax:
        return n == 0 ? std::nullopt : std::optional<double>(max[cell]);
      case Measure::kMedian:
        return n == 0 ? std::nullopt
                      : std::optional<double>(internal::Percentile(&values[cell], 0.5));
      case Measure::kP90:
        return n == 0 ? std::nullopt
                      : std::optional<double>(internal::Percentile(&values[cell], 0.9));
      case Measure::kPerSubjectAverage:
        return uniques[cell] == 0 ? std::nullopt
                                  : std::optional<double>(static_cast<double>(count[cell]) /
                                                          static_cast<double>(uniques[cell]));
    }
    return std::nullopt;
  }
};

// Unique groups: counts the groups of `row` (ScanPlan::unique_group_key:
// its value numbers the event's group, or its list of groups when negative)
// in `cells` once per cell. False past kQueryCellsMax (cell, group) pairs.
bool CountGroups(const MatchRow& row, const Groups& groups, std::initializer_list<size_t> cells_of,
                 Cells* cells, std::unordered_set<uint64_t>* group_cells) {
  if (std::isnan(row.value)) {
    return true;
  }
  const auto count_group = [&](uint32_t group) {
    for (const size_t cell : cells_of) {
      if (group_cells->insert((uint64_t{cell} << 32) | group).second) {
        cells->group_uniques[cell] += 1;
      }
    }
  };
  if (row.value >= 0) {
    count_group(static_cast<uint32_t>(row.value));
  } else {
    for (const uint32_t group : groups.GroupList(static_cast<uint32_t>(-row.value - 1))) {
      count_group(group);
    }
  }
  return group_cells->size() <= kQueryCellsMax;
}

Status CellsExhausted() {
  return Status::ResourceExhausted("breakdown: the answer would hold more than " +
                                   std::to_string(kQueryCellsMax) +
                                   " cells (kQueryCellsMax); narrow the range, the unit or the "
                                   "breakdown");
}

// Whether the scan must hand rows over by subject: for unique counts, and
// for k-suppression, which needs the distinct subjects behind every cell.
bool NeedsSubjects(const QuerySpec& spec, const QueryContext& context) {
  return (spec.measure == Measure::kUnique && spec.measure_group_key.empty()) ||
         spec.measure == Measure::kPerSubjectAverage || context.min_group_size > 1;
}

// Adds rows to the cells. With `remap` (per series, per group: the output
// slot), cells are indexed by slot instead of group.
class SegmentationUpdater {
 public:
  // `groups`: set for a unique-groups measure (Cells::count_groups).
  SegmentationUpdater(const TimeBuckets& buckets, const std::vector<std::vector<uint32_t>>& remap,
                      size_t other_slot, Cells* cells, const Groups* groups = nullptr)
      : buckets_(buckets), remap_(remap), other_slot_(other_slot), cells_(cells), groups_(groups) {}
  bool over_budget() const { return over_budget_; }
  // Every subject (or person) of `source`, each with its own ordinal.
  Status AddSubjects(SubjectSource* source) {
    Id128 subject;
    std::vector<MatchRow> rows;
    while (!over_budget_ && source->Next(&subject, &rows)) {
      ++ordinal_;
      for (const MatchRow& row : rows) {
        Add(row, ordinal_);
      }
    }
    if (over_budget_) {
      return CellsExhausted();
    }
    return source->status();
  }
  // The same over a merger's runs, unsorted: a subject's cells are stamped
  // with its ordinal whatever the order of its rows.
  Status AddSubjects(SubjectMerger* merger) {
    merger->ForEachRunUnsorted([&](const MatchRow* rows, size_t count, bool new_subject) {
      ordinal_ += new_subject ? 1 : 0;
      for (size_t row_idx = 0; row_idx < count; ++row_idx) {
        Add(rows[row_idx], ordinal_);
      }
      return !over_budget_;
    });
    if (over_budget_) {
      return CellsExhausted();
    }
    return merger->status();
  }
  void Add(const MatchRow& row, uint64_t ordinal) {
    const int64_t bucket = buckets_.Index(row.time_ms);
    size_t slot = row.group;
    if (remap_.empty() && !cells_->Grow(static_cast<size_t>(row.group) + 1)) {
      over_budget_ = true;
      return;
    }
    const size_t total_bucket = buckets_.range_count();
    for (uint32_t bits = row.bits; bits != 0; bits &= bits - 1) {
      const auto series_idx = static_cast<size_t>(__builtin_ctz(bits));
      if (!remap_.empty()) {
        slot = row.group < remap_[series_idx].size() ? remap_[series_idx][row.group] : other_slot_;
      }
      cells_->Add(cells_->Index(slot, series_idx, static_cast<size_t>(bucket)), row.value, ordinal,
                  row.weight);
      cells_->Add(cells_->Index(slot, series_idx, total_bucket), row.value, ordinal, row.weight);
      if (groups_ != nullptr &&
          !CountGroups(row, *groups_,
                       {cells_->Index(slot, series_idx, static_cast<size_t>(bucket)),
                        cells_->Index(slot, series_idx, total_bucket)},
                       cells_, &group_cells_)) {
        over_budget_ = true;
      }
    }
  }

 private:
  const TimeBuckets& buckets_;
  const std::vector<std::vector<uint32_t>>& remap_;
  size_t other_slot_;
  Cells* cells_;
  const Groups* groups_;
  std::unordered_set<uint64_t> group_cells_;  // unique groups: (cell, group number)
  bool over_budget_ = false;
  uint64_t ordinal_ = 0;
};

// One pass over the segments. With `remap` (per series, per group: the output
// slot), cells are indexed by slot instead of group. Subjects that share a
// person with other ids go to `spill` when given (the caller counts them),
// else they are counted here once all others are.
Status SegmentationPass(const QuerySpec& spec, const QueryContext& context, const ScanPlan& plan,
                        const TimeBuckets& buckets, const std::vector<std::vector<uint32_t>>& remap,
                        size_t other_slot, Groups* groups, Cells* cells, QueryStats* stats,
                        PersonSpill* spill = nullptr, size_t part = 0) {
  const size_t series_count = spec.events.size();
  const size_t total_bucket = buckets.range_count();
  bool over_budget = false;
  std::unordered_set<uint64_t> group_cells;  // unique groups: (cell, group number)
  auto update = [&](const MatchRow& row, uint64_t ordinal) {
    const int64_t bucket = buckets.Index(row.time_ms);
    size_t slot = row.group;
    if (remap.empty() && !cells->Grow(static_cast<size_t>(row.group) + 1)) {
      over_budget = true;
      return;
    }
    for (uint32_t bits = row.bits; bits != 0; bits &= bits - 1) {
      const auto series_idx = static_cast<size_t>(__builtin_ctz(bits));
      if (!remap.empty()) {
        slot = row.group < remap[series_idx].size() ? remap[series_idx][row.group] : other_slot;
      }
      cells->Add(cells->Index(slot, series_idx, static_cast<size_t>(bucket)), row.value, ordinal,
                 row.weight);
      cells->Add(cells->Index(slot, series_idx, total_bucket), row.value, ordinal, row.weight);
      if (!plan.unique_group_key.empty() &&
          !CountGroups(row, *groups,
                       {cells->Index(slot, series_idx, static_cast<size_t>(bucket)),
                        cells->Index(slot, series_idx, total_bucket)},
                       cells, &group_cells)) {
        over_budget = true;
      }
    }
  };
  (void)series_count;
  auto scanners = MakeScanners(context, plan, groups, stats);
  if (!NeedsSubjects(spec, context)) {
    for (auto& scanner : scanners) {
      while (!over_budget && scanner->NextBlock()) {
        for (const MatchRow& row : scanner->rows()) {
          update(row, 0);
        }
      }
      MP_RETURN_IF_ERROR(scanner->status());
    }
    return over_budget ? CellsExhausted() : Status::Ok();
  }
  (void)total_bucket;
  PersonSpill local;
  PersonMerger merger(std::move(scanners), plan.persons, spill != nullptr ? spill : &local, part);
  SegmentationUpdater updater(buckets, remap, other_slot, cells,
                              plan.unique_group_key.empty() ? nullptr : groups);
  // Without a measure property the cells only add integers and stamp
  // subjects, which no order of a subject's rows changes: the merger's runs
  // go in unsorted (sums of doubles, and unique groups, take them in order).
  if (merger.WholePersons() != nullptr && plan.unique_group_key.empty() &&
      plan.measure_property.empty()) {
    MP_RETURN_IF_ERROR(updater.AddSubjects(merger.WholePersons()));
  } else {
    MP_RETURN_IF_ERROR(updater.AddSubjects(&merger));
  }
  if (spill == nullptr && !local.persons.empty()) {
    SpillSource persons({&local}, {groups}, nullptr);
    MP_RETURN_IF_ERROR(updater.AddSubjects(&persons));
  }
  return Status::Ok();
}

// The first pass, split by subject over the context's threads; the parts'
// groups are found by key in `groups`.
Status ParallelSegmentationPass(const QuerySpec& spec, const QueryContext& context,
                                const ScanPlan& plan, const TimeBuckets& buckets, Groups* groups,
                                Cells* cells, QueryStats* stats) {
  // Without unique subjects no row needs another segment's rows: each
  // thread takes whole segments (every block is read once). Unique subjects
  // need a subject's rows together, so the subject space is split instead
  // (a block that straddles the split is read by both).
  const bool by_segment = !NeedsSubjects(spec, context);
  const size_t threads =
      by_segment ? std::min(ThreadCount(context), context.segments.size()) : ThreadCount(context);
  // Unique groups are numbered per part: one part counts them all.
  if (threads <= 1 || !spec.measure_group_key.empty()) {
    return SegmentationPass(spec, context, plan, buckets, {}, 0, groups, cells, stats);
  }
  const std::vector<ScanPlan> plans =
      by_segment ? std::vector<ScanPlan>(threads, plan) : SplitBySubject(plan, threads);
  std::vector<QueryContext> part_contexts;
  if (by_segment) {
    part_contexts = SplitBySegment(context, threads);
  }
  std::vector<Groups> part_groups(threads, Groups(spec.breakdown.properties.size()));
  part_groups.reserve(threads + 1);  // the persons' part below: pointers stay valid
  std::vector<Cells> part_cells(threads, *cells);
  std::vector<QueryStats> part_stats(threads);
  std::vector<PersonSpill> spills(threads);
  MP_RETURN_IF_ERROR(ForEachThread(threads, [&](size_t thread_idx) {
    return SegmentationPass(spec, by_segment ? part_contexts[thread_idx] : context,
                            plans[thread_idx], buckets, {}, 0, &part_groups[thread_idx],
                            &part_cells[thread_idx], &part_stats[thread_idx], &spills[thread_idx],
                            thread_idx);
  }));
  // The persons with several ids, whose subjects the threads set aside:
  // counted here as one more part.
  std::vector<PersonSpill*> spill_list;
  std::vector<Groups*> group_list;
  for (size_t thread_idx = 0; thread_idx < threads; ++thread_idx) {
    spill_list.push_back(&spills[thread_idx]);
    group_list.push_back(&part_groups[thread_idx]);
  }
  if (std::any_of(spills.begin(), spills.end(),
                  [](const PersonSpill& spill) { return !spill.persons.empty(); })) {
    part_groups.emplace_back(spec.breakdown.properties.size());
    part_cells.push_back(*cells);
    part_stats.emplace_back();
    SpillSource persons(spill_list, group_list, &part_groups.back());
    const std::vector<std::vector<uint32_t>> no_remap;
    SegmentationUpdater updater(buckets, no_remap, 0, &part_cells.back());
    MP_RETURN_IF_ERROR(updater.AddSubjects(&persons));
  }
  const bool breakdown = !spec.breakdown.properties.empty();
  for (size_t thread_idx = 0; thread_idx < part_cells.size(); ++thread_idx) {
    const Cells& part = part_cells[thread_idx];
    for (uint32_t group = 0; group < part.slots; ++group) {
      if (breakdown && group >= part_groups[thread_idx].size()) {
        break;
      }
      const uint32_t target =
          breakdown ? groups->Intern(part_groups[thread_idx].Key(group)) : group;
      if (!cells->Grow(static_cast<size_t>(target) + 1)) {
        return CellsExhausted();
      }
      for (size_t series_idx = 0; series_idx < spec.events.size(); ++series_idx) {
        for (size_t bucket_idx = 0; bucket_idx < cells->stride; ++bucket_idx) {
          cells->MergeFrom(part, cells->Index(target, series_idx, bucket_idx),
                           part.Index(group, series_idx, bucket_idx));
        }
      }
    }
    AddStats(part_stats[thread_idx], by_segment, stats);
  }
  return Status::Ok();
}

Status RunSegmentation(const QuerySpec& spec, const QueryContext& context,
                       const date::time_zone* zone, QueryResult* result) {
  MP_ASSIGN_OR_RETURN(TimeBuckets buckets,
                      TimeBuckets::Make(zone, spec.unit, result->from_ms, result->to_ms, 0,
                                        kSegmentationBucketsMax));
  ScanPlan plan;
  for (const EventSelector& selector : spec.events) {
    plan.selectors.push_back(&selector);
  }
  plan.group_bits = UINT32_MAX;
  plan.need_subjects = NeedsSubjects(spec, context);
  plan.identity = plan.need_subjects ? context.identity.get() : nullptr;
  plan.persons = plan.need_subjects ? context.persons.get() : nullptr;
  plan.measure_property = spec.measure_property;
  plan.unique_group_key = spec.measure_group_key;
  plan.profiles = context.profiles.get();
  plan.breakdown = spec.breakdown.properties;
  plan.time_min_ms = result->from_ms;
  plan.time_max_ms = result->to_ms - 1;
  plan.tie_by_bit.assign(32, 0);
  plan.buckets = &buckets;
  plan.fold_rows = spec.measure_property.empty() && spec.measure_group_key.empty();
  const size_t series_count = spec.events.size();
  const size_t stride = buckets.range_count() + 1;
  const bool keep_values = spec.measure == Measure::kMedian || spec.measure == Measure::kP90;
  Groups groups(spec.breakdown.properties.size());

  Cells cells;
  cells.stride = stride;
  cells.series = series_count;
  cells.keep_values = keep_values;
  cells.count_groups = !spec.measure_group_key.empty();
  cells.Grow(1);
  MP_RETURN_IF_ERROR(
      ParallelSegmentationPass(spec, context, plan, buckets, &groups, &cells, &result->stats));
  const size_t group_count = spec.breakdown.properties.empty() ? 1 : groups.size();
  if (!cells.Grow(std::max<size_t>(group_count, 1))) {
    return CellsExhausted();
  }
  const size_t limit = spec.breakdown.limit;

  // Per series: the top groups by events, then "other".
  std::vector<std::vector<uint32_t>> ranked(series_count);
  bool any_other = false;
  for (size_t series_idx = 0; series_idx < series_count; ++series_idx) {
    if (spec.breakdown.properties.empty()) {
      ranked[series_idx] = {0};
      continue;
    }
    std::vector<uint64_t> weight(group_count);
    for (uint32_t group = 0; group < group_count; ++group) {
      weight[group] = cells.count[cells.Index(group, series_idx, stride - 1)];
    }
    ranked[series_idx] = RankGroups(groups, weight);
    any_other = any_other || ranked[series_idx].size() > limit;
  }
  Cells* final_cells = &cells;
  Cells remapped;
  const size_t other_slot = limit;
  if (any_other && NeedsSubjects(spec, context)) {
    // Unique subjects do not add up across groups: count "other" in a second pass.
    std::vector<std::vector<uint32_t>> remap(series_count,
                                             std::vector<uint32_t>(group_count, other_slot));
    for (size_t series_idx = 0; series_idx < series_count; ++series_idx) {
      for (size_t rank = 0; rank < ranked[series_idx].size() && rank < limit; ++rank) {
        remap[series_idx][ranked[series_idx][rank]] = static_cast<uint32_t>(rank);
      }
    }
    remapped.stride = stride;
    remapped.series = series_count;
    remapped.keep_values = keep_values;
    if (!remapped.Grow(limit + 1)) {
      return CellsExhausted();
    }
    MP_RETURN_IF_ERROR(SegmentationPass(spec, context, plan, buckets, remap, other_slot, &groups,
                                        &remapped, &result->stats));
    final_cells = &remapped;
  }

  for (size_t bucket_idx = 0; bucket_idx < buckets.range_count(); ++bucket_idx) {
    result->buckets.push_back(buckets.Label(bucket_idx));
  }
  for (size_t series_idx = 0; series_idx < series_count; ++series_idx) {
    const std::vector<uint32_t>& order = ranked[series_idx];
    const size_t shown = std::min(order.size(), limit);
    auto emit = [&](size_t slot, GroupKey key) {
      SegmentationSeries series;
      series.event = spec.events[series_idx].event;
      series.any_event = spec.events[series_idx].any_event;
      series.selector_idx = series_idx;
      series.group = std::move(key);
      for (size_t bucket_idx = 0; bucket_idx < buckets.range_count(); ++bucket_idx) {
        series.values.push_back(
            final_cells->Measure(spec.measure, final_cells->Index(slot, series_idx, bucket_idx)));
      }
      series.total =
          final_cells->Measure(spec.measure, final_cells->Index(slot, series_idx, stride - 1));
      if (context.min_group_size > 1) {
        const std::vector<uint64_t>& subjects = spec.measure_property.empty()
                                                    ? final_cells->uniques
                                                    : final_cells->numeric_uniques;
        for (size_t bucket_idx = 0; bucket_idx < stride; ++bucket_idx) {
          series.subjects.push_back(subjects[final_cells->Index(slot, series_idx, bucket_idx)]);
        }
      }
      result->series.push_back(std::move(series));
    };
    if (spec.breakdown.properties.empty()) {
      emit(0, GroupKey{});
      continue;
    }
    for (size_t rank = 0; rank < shown; ++rank) {
      emit(final_cells == &cells ? order[rank] : rank, groups.Key(order[rank]));
    }
    if (order.size() > limit) {
      size_t other = other_slot;
      if (final_cells == &cells) {
        // Mergeable measures: fold the rest into a fresh slot.
        other = cells.slots;
        if (!cells.Grow(other + 1)) {
          return CellsExhausted();
        }
        for (size_t rank = limit; rank < order.size(); ++rank) {
          for (size_t bucket_idx = 0; bucket_idx < stride; ++bucket_idx) {
            cells.Merge(cells.Index(other, series_idx, bucket_idx),
                        cells.Index(order[rank], series_idx, bucket_idx));
          }
        }
      }
      GroupKey key;
      key.other = true;
      emit(other, std::move(key));
    }
  }
  return Status::Ok();
}

// Funnels.

struct FunnelTally {
  std::vector<uint64_t> reached;              // per step
  std::vector<std::vector<int64_t>> gaps_ms;  // per step (from the previous)
  explicit FunnelTally(size_t steps) : reached(steps, 0), gaps_ms(steps) {}
  void Merge(const FunnelTally& other) {
    for (size_t step_idx = 0; step_idx < reached.size(); ++step_idx) {
      reached[step_idx] += other.reached[step_idx];
      gaps_ms[step_idx].insert(gaps_ms[step_idx].end(), other.gaps_ms[step_idx].begin(),
                               other.gaps_ms[step_idx].end());
    }
  }
};

// The funnel of one subject: the attempt counted (docs/queries.md, "Which
// attempt counts"), as the positions of its steps in `rows`.
class FunnelMatcher {
 public:
  FunnelMatcher(const QuerySpec& spec, int64_t from_ms, int64_t to_ms)
      : spec_(spec), from_ms_(from_ms), to_ms_(to_ms), steps_(spec.steps.size()) {}

  // Returns the number of steps reached (0: no qualifying attempt) and the
  // positions of the counted attempt in `best`.
  size_t Match(const std::vector<MatchRow>& rows, std::vector<uint32_t>* best) {
    const auto n = static_cast<uint32_t>(rows.size());
    const bool strict = spec_.order == FunnelOrder::kStrict;
    if (!strict) {
      // next_[step * (n + 1) + pos]: the first row at or after pos with the step's bit.
      next_.resize(steps_ * (static_cast<size_t>(n) + 1));
      for (size_t step_idx = 1; step_idx < steps_; ++step_idx) {
        uint32_t* next = next_.data() + step_idx * (n + 1);
        next[n] = n;
        const uint32_t bit = uint32_t{1} << step_idx;
        for (uint32_t pos = n; pos-- > 0;) {
          next[pos] = (rows[pos].bits & bit) != 0 ? pos : next[pos + 1];
        }
      }
    }
    size_t best_level = 0;
    for (uint32_t entry = 0; entry < n; ++entry) {
      const MatchRow& first = rows[entry];
      if ((first.bits & 1) == 0 || first.time_ms < from_ms_ || first.time_ms >= to_ms_) {
        continue;
      }
      path_.assign(1, entry);
      uint32_t pos = entry;
      for (size_t step_idx = 1; step_idx < steps_; ++step_idx) {
        uint32_t candidate = n;
        if (strict) {
          candidate =
              pos + 1 < n && (rows[pos + 1].bits & (uint32_t{1} << step_idx)) != 0 ? pos + 1 : n;
        } else {
          candidate = next_[step_idx * (n + 1) + pos + 1];
        }
        if (candidate == n || rows[candidate].time_ms - first.time_ms > spec_.window_ms) {
          break;
        }
        pos = candidate;
        path_.push_back(pos);
      }
      if (path_.size() <= best_level || Excluded(rows)) {
        continue;
      }
      best_level = path_.size();
      *best = path_;
      if (best_level == steps_) {
        break;
      }
    }
    return best_level;
  }

 private:
  // Whether an exclusion event falls strictly between (in time) the events
  // of its two steps in the attempt in path_.
  bool Excluded(const std::vector<MatchRow>& rows) const {
    for (size_t exclusion_idx = 0; exclusion_idx < spec_.exclusions.size(); ++exclusion_idx) {
      const FunnelExclusion& exclusion = spec_.exclusions[exclusion_idx];
      if (path_.size() <= exclusion.to_step) {
        continue;
      }
      const uint32_t bit = uint32_t{1} << (steps_ + exclusion_idx);
      const MatchRow& from = rows[path_[exclusion.from_step]];
      const MatchRow& to = rows[path_[exclusion.to_step]];
      for (uint32_t pos = path_[exclusion.from_step]; pos < rows.size(); ++pos) {
        const MatchRow& row = rows[pos];
        if (row.time_ms >= to.time_ms) {
          break;
        }
        if ((row.bits & bit) != 0 && row.time_ms > from.time_ms) {
          return true;
        }
      }
    }
    return false;
  }

  const QuerySpec& spec_;
  int64_t from_ms_;
  int64_t to_ms_;
  size_t steps_;
  std::vector<uint32_t> next_;
  std::vector<uint32_t> path_;
};

// How many of kFunnelTimeToConvertBucketsMs a funnel with this window shows:
// those that begin within it (a step exactly `window` after step 1 counts).
size_t TimeToConvertBuckets(int64_t window_ms) {
  size_t buckets = 0;
  while (buckets < kFunnelTimeToConvertBucketsMs.size() &&
         kFunnelTimeToConvertBucketsMs[buckets] <= window_ms) {
    ++buckets;
  }
  return buckets;
}

// The histogram of `gaps` over the first `buckets` buckets; the last one
// takes everything from its lower bound on.
std::vector<std::optional<uint64_t>> TimeToConvertHistogram(const std::vector<int64_t>& gaps,
                                                            size_t buckets) {
  std::vector<std::optional<uint64_t>> counts(buckets, uint64_t{0});
  const auto bounds_end = kFunnelTimeToConvertBucketsMs.begin() + buckets;
  for (const int64_t gap_ms : gaps) {
    const auto above = std::upper_bound(kFunnelTimeToConvertBucketsMs.begin(), bounds_end, gap_ms);
    const size_t bucket_idx =
        above == kFunnelTimeToConvertBucketsMs.begin()
            ? 0
            : static_cast<size_t>(above - kFunnelTimeToConvertBucketsMs.begin()) - 1;
    *counts[bucket_idx] += 1;
  }
  return counts;
}

FunnelGroup FunnelGroupResult(const QuerySpec& spec, FunnelTally* tally) {
  FunnelGroup group;
  const size_t buckets = TimeToConvertBuckets(spec.window_ms);
  for (size_t step_idx = 0; step_idx < spec.steps.size(); ++step_idx) {
    FunnelStepResult step;
    step.event = spec.steps[step_idx].event;
    step.any_event = spec.steps[step_idx].any_event;
    step.subjects = tally->reached[step_idx];
    const uint64_t first = tally->reached[0];
    const uint64_t previous = step_idx == 0 ? first : tally->reached[step_idx - 1];
    step.step_conversion =
        previous == 0 ? 0 : static_cast<double>(step.subjects) / static_cast<double>(previous);
    step.overall_conversion =
        first == 0 ? 0 : static_cast<double>(step.subjects) / static_cast<double>(first);
    std::vector<int64_t>& gaps = tally->gaps_ms[step_idx];
    if (step_idx > 0) {
      step.time_to_convert = TimeToConvertHistogram(gaps, buckets);
    }
    if (step_idx > 0 && !gaps.empty()) {
      step.median_ms = internal::Percentile(&gaps, 0.5);
      step.p90_ms = internal::Percentile(&gaps, 0.9);
    }
    group.steps.push_back(std::move(step));
  }
  return group;
}

// One thread's share of a funnel (or of a retention query): its groups
// and tallies, merged by group key afterwards.
template <typename Tally>
struct Part {
  Groups groups;
  Tally everyone;
  std::vector<Tally> by_group;
  QueryStats stats;
};

// Adds a part's tallies to the totals, finding its groups by key.
template <typename Tally, typename MakeTally>
void MergePart(const Part<Tally>& part, Groups* groups, Tally* everyone,
               std::vector<Tally>* by_group, const MakeTally& make_tally, QueryStats* stats) {
  everyone->Merge(part.everyone);
  for (uint32_t group = 0; group < part.by_group.size(); ++group) {
    const uint32_t target = groups->Intern(part.groups.Key(group));
    while (by_group->size() <= target) {
      by_group->push_back(make_tally());
    }
    (*by_group)[target].Merge(part.by_group[group]);
  }
  AddStats(part.stats, false, stats);
}

// The funnels of every subject (or person) of `merger`.
Status FunnelTallies(const QuerySpec& spec, SubjectSource& merger, int64_t from_ms, int64_t to_ms,
                     Part<FunnelTally>* part) {
  const size_t steps = spec.steps.size();
  FunnelMatcher matcher(spec, from_ms, to_ms);
  FunnelTally& everyone = part->everyone;
  std::vector<FunnelTally>& by_group = part->by_group;
  Id128 subject;
  std::vector<MatchRow> rows;
  std::vector<uint32_t> path;
  while (merger.Next(&subject, &rows)) {
    const size_t level = matcher.Match(rows, &path);
    if (level == 0) {
      continue;
    }
    FunnelTally* tallies[2] = {&everyone, nullptr};
    if (!spec.breakdown.properties.empty()) {
      const uint32_t group = rows[path[0]].group;
      if ((static_cast<size_t>(group) + 1) * steps > kQueryCellsMax) {
        return CellsExhausted();
      }
      while (by_group.size() <= group) {
        by_group.emplace_back(steps);
      }
      tallies[1] = &by_group[group];
    }
    for (FunnelTally* tally : tallies) {
      if (tally == nullptr) {
        continue;
      }
      for (size_t step_idx = 0; step_idx < level; ++step_idx) {
        tally->reached[step_idx] += 1;
        if (step_idx > 0) {
          tally->gaps_ms[step_idx].push_back(rows[path[step_idx]].time_ms -
                                             rows[path[step_idx - 1]].time_ms);
        }
      }
    }
  }
  return merger.status();
}

Status FunnelScan(const QuerySpec& spec, const QueryContext& context, const ScanPlan& plan,
                  int64_t from_ms, int64_t to_ms, Part<FunnelTally>* part, PersonSpill* spill,
                  size_t part_idx) {
  PersonMerger merger(MakeScanners(context, plan, &part->groups, &part->stats), plan.persons,
                      spill, part_idx);
  return FunnelTallies(spec, merger, from_ms, to_ms, part);
}

// The persons the parts set aside (their subjects' rows in `spills`),
// tallied as one more part.
template <typename Tally, typename Tallies>
Status AddPersonsPart(std::vector<PersonSpill>& spills, std::vector<Part<Tally>>& parts,
                      Part<Tally> persons_part, const Tallies& tallies) {
  if (std::all_of(spills.begin(), spills.end(),
                  [](const PersonSpill& spill) { return spill.persons.empty(); })) {
    return Status::Ok();
  }
  std::vector<PersonSpill*> spill_list;
  std::vector<Groups*> group_list;
  for (size_t part_idx = 0; part_idx < spills.size(); ++part_idx) {
    spill_list.push_back(&spills[part_idx]);
    group_list.push_back(&parts[part_idx].groups);
  }
  SpillSource persons(spill_list, group_list, &persons_part.groups);
  MP_RETURN_IF_ERROR(tallies(persons, &persons_part));
  parts.push_back(std::move(persons_part));
  return Status::Ok();
}

Status RunFunnel(const QuerySpec& spec, const QueryContext& context, QueryResult* result) {
  const size_t steps = spec.steps.size();
  ScanPlan plan;
  for (const EventSelector& selector : spec.steps) {
    plan.selectors.push_back(&selector);
  }
  for (const FunnelExclusion& exclusion : spec.exclusions) {
    plan.selectors.push_back(&exclusion.selector);
  }
  plan.group_bits = 1;
  plan.keep_unmatched = spec.order == FunnelOrder::kStrict;
  plan.profiles = context.profiles.get();
  plan.breakdown = spec.breakdown.properties;
  plan.time_min_ms = result->from_ms;
  plan.time_max_ms = result->to_ms - 1 + spec.window_ms;
  plan.tie_by_bit.assign(32, 254);
  plan.identity = context.identity.get();
  plan.persons = context.persons.get();
  for (size_t bit_idx = 0; bit_idx < plan.selectors.size(); ++bit_idx) {
    plan.tie_by_bit[bit_idx] = static_cast<uint8_t>(bit_idx);
  }
  const size_t threads = ThreadCount(context);
  const std::vector<ScanPlan> plans = SplitBySubject(plan, threads);
  const size_t properties = spec.breakdown.properties.size();
  std::vector<Part<FunnelTally>> parts;
  for (size_t thread_idx = 0; thread_idx < threads; ++thread_idx) {
    parts.push_back(Part<FunnelTally>{Groups(properties), FunnelTally(steps), {}, {}});
  }
  std::vector<PersonSpill> spills(threads);
  MP_RETURN_IF_ERROR(ForEachThread(threads, [&](size_t thread_idx) {
    return FunnelScan(spec, context, plans[thread_idx], result->from_ms, result->to_ms,
                      &parts[thread_idx], &spills[thread_idx], thread_idx);
  }));
  MP_RETURN_IF_ERROR(AddPersonsPart(
      spills, parts, Part<FunnelTally>{Groups(properties), FunnelTally(steps), {}, {}},
      [&](SubjectSource& persons, Part<FunnelTally>* part) {
        return FunnelTallies(spec, persons, result->from_ms, result->to_ms, part);
      }));
  Groups groups(properties);
  FunnelTally everyone(steps);
  std::vector<FunnelTally> by_group;
  for (const Part<FunnelTally>& part : parts) {
    MergePart(
        part, &groups, &everyone, &by_group, [&] { return FunnelTally(steps); }, &result->stats);
  }
  result->time_to_convert_buckets_ms.assign(
      kFunnelTimeToConvertBucketsMs.begin(),
      kFunnelTimeToConvertBucketsMs.begin() + TimeToConvertBuckets(spec.window_ms));
  result->funnel.push_back(FunnelGroupResult(spec, &everyone));
  if (spec.breakdown.properties.empty()) {
    return Status::Ok();
  }
  std::vector<uint64_t> weight;
  for (const FunnelTally& tally : by_group) {
    weight.push_back(tally.reached[0]);
  }
  const std::vector<uint32_t> order = RankGroups(groups, weight);
  const size_t limit = spec.breakdown.limit;
  for (size_t rank = 0; rank < order.size() && rank < limit; ++rank) {
    FunnelGroup group = FunnelGroupResult(spec, &by_group[order[rank]]);
    group.group = groups.Key(order[rank]);
    result->funnel.push_back(std::move(group));
  }
  if (order.size() > limit) {
    FunnelTally other(steps);
    for (size_t rank = limit; rank < order.size(); ++rank) {
      other.Merge(by_group[order[rank]]);
    }
    FunnelGroup group = FunnelGroupResult(spec, &other);
    group.group = GroupKey{{}, true};
    result->funnel.push_back(std::move(group));
  }
  return Status::Ok();
}

// Retention.

struct RetentionTally {
  std::vector<uint64_t> sizes;   // per cohort
  std::vector<uint64_t> counts;  // per cohort, per period
  RetentionTally(size_t cohorts, size_t periods)
      : sizes(cohorts, 0), counts(cohorts * (periods + 1), 0) {}
  void Merge(const RetentionTally& other) {
    for (size_t idx = 0; idx < sizes.size(); ++idx) {
      sizes[idx] += other.sizes[idx];
    }
    for (size_t idx = 0; idx < counts.size(); ++idx) {
      counts[idx] += other.counts[idx];
    }
  }
};

RetentionGroup RetentionGroupResult(const QuerySpec& spec, const TimeBuckets& buckets,
                                    int64_t now_ms, const RetentionTally& tally) {
  RetentionGroup group;
  const size_t periods = spec.periods;
  group.total_counts.assign(periods + 1, 0);
  std::vector<uint64_t> total_sizes(periods + 1, 0);
  for (size_t cohort_idx = 0; cohort_idx < buckets.range_count(); ++cohort_idx) {
    RetentionCohort cohort;
    cohort.start = buckets.Label(cohort_idx);
    cohort.size = tally.sizes[cohort_idx];
    group.size += cohort.size;
    for (size_t period = 0; period <= periods; ++period) {
      const size_t bucket_idx = cohort_idx + period;
      if (buckets.start(bucket_idx) >= now_ms) {
        cohort.counts.push_back(std::nullopt);
        cohort.rates.push_back(std::nullopt);
        if (!cohort.incomplete_from) {
          cohort.incomplete_from = static_cast<uint32_t>(period);
        }
        continue;
      }
      if (buckets.end(bucket_idx) > now_ms && !cohort.incomplete_from) {
        cohort.incomplete_from = static_cast<uint32_t>(period);
      }
      const uint64_t count = tally.counts[cohort_idx * (periods + 1) + period];
      cohort.counts.push_back(count);
      cohort.rates.push_back(cohort.size == 0
                                 ? std::nullopt
                                 : std::optional<double>(static_cast<double>(count) /
                                                         static_cast<double>(cohort.size)));
      group.total_counts[period] += count;
      total_sizes[period] += cohort.size;
    }
    group.cohorts.push_back(std::move(cohort));
  }
  for (size_t period = 0; period <= periods; ++period) {
    group.total_rates.push_back(
        total_sizes[period] == 0
            ? std::nullopt
            : std::optional<double>(static_cast<double>(group.total_counts[period]) /
                                    static_cast<double>(total_sizes[period])));
  }
  return group;
}

// The retention of every subject (or person) of `merger`.
Status RetentionTallies(const QuerySpec& spec, SubjectSource& merger, const TimeBuckets& buckets,
                        int64_t from_ms, int64_t to_ms, Part<RetentionTally>* part) {
  const size_t periods = spec.periods;
  const size_t cohorts = buckets.range_count();
  RetentionTally& everyone = part->everyone;
  std::vector<RetentionTally>& by_group = part->by_group;
  std::vector<uint8_t> returned(periods + 1);
  Id128 subject;
  std::vector<MatchRow> rows;
  while (merger.Next(&subject, &rows)) {
    size_t birth = rows.size();
    for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
      const MatchRow& row = rows[row_idx];
      if ((row.bits & 1) != 0 && row.time_ms >= from_ms && row.time_ms < to_ms) {
        birth = row_idx;
        break;
      }
    }
    if (birth == rows.size()) {
      continue;
    }
    const int64_t birth_ms = rows[birth].time_ms;
    const int64_t cohort = buckets.Index(birth_ms);
    std::fill(returned.begin(), returned.end(), 0);
    int64_t last_period = -1;
    for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
      const MatchRow& row = rows[row_idx];
      if ((row.bits & 2) == 0 || row_idx == birth || row.time_ms < birth_ms) {
        continue;
      }
      const int64_t period = buckets.Index(row.time_ms) - cohort;
      if (period <= static_cast<int64_t>(periods)) {
        returned[static_cast<size_t>(period)] = 1;
      }
      last_period = std::max(last_period, period);
    }
    RetentionTally* tallies[2] = {&everyone, nullptr};
    if (!spec.breakdown.properties.empty()) {
      const uint32_t group = rows[birth].group;
      if ((static_cast<size_t>(group) + 1) * cohorts * (periods + 1) > kQueryCellsMax) {
        return CellsExhausted();
      }
      while (by_group.size() <= group) {
        by_group.emplace_back(cohorts, periods);
      }
      tallies[1] = &by_group[group];
    }
    for (RetentionTally* tally : tallies) {
      if (tally == nullptr) {
        continue;
      }
      const auto cohort_idx = static_cast<size_t>(cohort);
      tally->sizes[cohort_idx] += 1;
      uint64_t* counts = tally->counts.data() + cohort_idx * (periods + 1);
      for (size_t period = 0; period <= periods; ++period) {
        const bool counted = spec.mode == RetentionMode::kOn
                                 ? returned[period] != 0
                                 : last_period >= static_cast<int64_t>(period);
        counts[period] += counted ? 1 : 0;
      }
    }
  }
  return merger.status();
}

Status RetentionScan(const QuerySpec& spec, const QueryContext& context, const ScanPlan& plan,
                     const TimeBuckets& buckets, int64_t from_ms, int64_t to_ms,
                     Part<RetentionTally>* part, PersonSpill* spill, size_t part_idx) {
  PersonMerger merger(MakeScanners(context, plan, &part->groups, &part->stats), plan.persons,
                      spill, part_idx);
  return RetentionTallies(spec, merger, buckets, from_ms, to_ms, part);
}

Status RunRetention(const QuerySpec& spec, const QueryContext& context, const date::time_zone* zone,
                    QueryResult* result) {
  const size_t periods = spec.periods;
  MP_ASSIGN_OR_RETURN(TimeBuckets buckets,
                      TimeBuckets::Make(zone, spec.unit, result->from_ms, result->to_ms,
                                        periods + 1, kSegmentationBucketsMax));
  const size_t cohorts = buckets.range_count();
  ScanPlan plan;
  plan.selectors = {&spec.birth, &spec.return_event};
  plan.group_bits = 1;
  plan.profiles = context.profiles.get();
  plan.breakdown = spec.breakdown.properties;
  plan.time_min_ms = result->from_ms;
  plan.time_max_ms =
      spec.mode == RetentionMode::kOn ? buckets.end(buckets.count() - 1) - 1 : INT64_MAX;
  plan.tie_by_bit.assign(32, 0);
  plan.identity = context.identity.get();
  plan.persons = context.persons.get();
  const size_t threads = ThreadCount(context);
  const std::vector<ScanPlan> plans = SplitBySubject(plan, threads);
  const size_t properties = spec.breakdown.properties.size();
  std::vector<Part<RetentionTally>> parts;
  for (size_t thread_idx = 0; thread_idx < threads; ++thread_idx) {
    parts.push_back(
        Part<RetentionTally>{Groups(properties), RetentionTally(cohorts, periods), {}, {}});
  }
  std::vector<PersonSpill> spills(threads);
  MP_RETURN_IF_ERROR(ForEachThread(threads, [&](size_t thread_idx) {
    return RetentionScan(spec, context, plans[thread_idx], buckets, result->from_ms, result->to_ms,
                         &parts[thread_idx], &spills[thread_idx], thread_idx);
  }));
  MP_RETURN_IF_ERROR(AddPersonsPart(
      spills, parts,
      Part<RetentionTally>{Groups(properties), RetentionTally(cohorts, periods), {}, {}},
      [&](SubjectSource& persons, Part<RetentionTally>* part) {
        return RetentionTallies(spec, persons, buckets, result->from_ms, result->to_ms, part);
      }));
  Groups groups(properties);
  RetentionTally everyone(cohorts, periods);
  std::vector<RetentionTally> by_group;
  for (const Part<RetentionTally>& part : parts) {
    MergePart(
        part, &groups, &everyone, &by_group, [&] { return RetentionTally(cohorts, periods); },
        &result->stats);
  }
  const int64_t now_ms = context.now_ms == 0 ? INT64_MAX : context.now_ms;
  result->retention.push_back(RetentionGroupResult(spec, buckets, now_ms, everyone));
  if (spec.breakdown.properties.empty()) {
    return Status::Ok();
  }
  std::vector<uint64_t> weight;
  for (const RetentionTally& tally : by_group) {
    weight.push_back(std::accumulate(tally.sizes.begin(), tally.sizes.end(), uint64_t{0}));
  }
  const std::vector<uint32_t> order = RankGroups(groups, weight);
  const size_t limit = spec.breakdown.limit;
  for (size_t rank = 0; rank < order.size() && rank < limit; ++rank) {
    RetentionGroup group = RetentionGroupResult(spec, buckets, now_ms, by_group[order[rank]]);
    group.group = groups.Key(order[rank]);
    result->retention.push_back(std::move(group));
  }
  if (order.size() > limit) {
    RetentionTally other(cohorts, periods);
    for (size_t rank = limit; rank < order.size(); ++rank) {
      other.Merge(by_group[order[rank]]);
    }
    RetentionGroup group = RetentionGroupResult(spec, buckets, now_ms, other);
    group.group = GroupKey{{}, true};
    result->retention.push_back(std::move(group));
  }
  return Status::Ok();
}

}  // namespace

namespace {

Result<QueryResult> RunResolvedQuery(const QuerySpec& spec, const QueryContext& given_context);

// QuerySpec::compare_previous: the query, then the same over the range of
// the same length just before the range it resolved to.
Result<QueryResult> RunWithPrevious(const QuerySpec& spec, const QueryContext& context) {
  QuerySpec current = spec;
  current.compare_previous = false;
  MP_ASSIGN_OR_RETURN(QueryResult result, RunResolvedQuery(current, context));
  QuerySpec before = current;
  const int64_t length_ms = result.to_ms - result.from_ms;
  before.from = TimeSpec{};
  before.from.utc_ms = result.from_ms - length_ms;
  before.to = TimeSpec{};
  before.to.utc_ms = result.from_ms;
  MP_ASSIGN_OR_RETURN(QueryResult previous, RunResolvedQuery(before, context));
  result.previous = std::make_shared<const QueryResult>(std::move(previous));
  return result;
}

// RunQuery once the subject ids `spec` names are resolved (ResolveSubjectIds
// is not idempotent: a filter on user_id names user_id after it too).
Result<QueryResult> RunResolvedQuery(const QuerySpec& spec, const QueryContext& given_context) {
  if (spec.compare_previous) {
    return RunWithPrevious(spec, given_context);
  }
  QueryContext resolved;
  const QueryContext* context_ptr = &given_context;
  // Only queries that count subjects read the links.
  // Profile properties are read from the person's profile: they need the
  // links too.
  const bool uses_profiles = UsesProfiles(spec);
  if (uses_profiles && given_context.profiles == nullptr) {
    return Status::InvalidArgument(
        "profiles: the query names a profile or group property but no profile table was given");
  }
  const bool counts_subjects =
      spec.kind != QueryKind::kSegmentation || NeedsSubjects(spec, given_context) || uses_profiles;
  std::optional<IdentityStats> identity_stats;
  if (given_context.merge_identities && given_context.identity == nullptr && counts_subjects) {
    resolved = given_context;
    MP_ASSIGN_OR_RETURN(resolved.identity, ResolveIdentities(given_context.segments));
    identity_stats = resolved.identity->stats();
    if (resolved.identity->empty()) {
      resolved.identity.reset();
    }
    context_ptr = &resolved;
  }
  // Which values are set aside: needed once some id is linked or some
  // segment folded (a query counting stored ids splits folded persons).
  if (counts_subjects && context_ptr->persons == nullptr) {
    const bool merge = context_ptr->merge_identities;
    if (NeedsPersonPlan(context_ptr->segments, merge ? context_ptr->identity.get() : nullptr)) {
      if (context_ptr != &resolved) {
        resolved = given_context;
        context_ptr = &resolved;
      }
      MP_ASSIGN_OR_RETURN(resolved.persons,
                          ResolvePersonPlan(resolved.segments,
                                            merge ? resolved.identity : nullptr));
    }
  }
  if (uses_profiles) {
    if (context_ptr != &resolved) {
      resolved = given_context;
      context_ptr = &resolved;
    }
    resolved.profiles =
        resolved.profiles->WithPersons(resolved.merge_identities ? resolved.identity : nullptr);
  }
  const QueryContext& context = *context_ptr;
  if (context.min_group_size > kMinGroupSizeMax) {
    return Status::InvalidArgument("min_group_size: " + std::to_string(context.min_group_size) +
                                   " is over the limit of " + std::to_string(kMinGroupSizeMax) +
                                   " (kMinGroupSizeMax)");
  }
  QueryResult result;
  result.kind = spec.kind;
  result.identity = identity_stats;
  result.time_zone = spec.time_zone.empty() ? context.time_zone : spec.time_zone;
  if (result.time_zone.empty()) {
    result.time_zone = "UTC";
  }
  MP_ASSIGN_OR_RETURN(const date::time_zone* zone, internal::LocateZone(result.time_zone));
  Result<int64_t> from = ResolveTime(spec.from, result.time_zone, context.now_ms);
  if (!from.ok()) {
    return Status::InvalidArgument("from: " + from.status().message());
  }
  Result<int64_t> to = ResolveTime(spec.to, result.time_zone, context.now_ms);
  if (!to.ok()) {
    return Status::InvalidArgument("to: " + to.status().message());
  }
  result.from_ms = *from;
  result.to_ms = *to;
  if (result.to_ms <= result.from_ms) {
    return Status::InvalidArgument("to: must be after from");
  }
  if (result.to_ms - result.from_ms > kQueryRangeDaysMax * kDayMs) {
    return Status::InvalidArgument("to: the range is longer than " +
                                   std::to_string(kQueryRangeDaysMax) +
                                   " days (kQueryRangeDaysMax)");
  }
  result.unit = spec.unit;
  result.measure = spec.measure;
  result.mode = spec.mode;
  switch (spec.kind) {
    case QueryKind::kSegmentation:
      MP_RETURN_IF_ERROR(RunSegmentation(spec, context, zone, &result));
      break;
    case QueryKind::kFunnel:
      MP_RETURN_IF_ERROR(RunFunnel(spec, context, &result));
      break;
    case QueryKind::kRetention:
      MP_RETURN_IF_ERROR(RunRetention(spec, context, zone, &result));
      break;
  }
  if (context.min_group_size > 1) {
    internal::SuppressSmallGroups(spec, context.min_group_size, &result);
  }
  return result;
}

}  // namespace

Result<QueryResult> RunQuery(const QuerySpec& spec, const QueryContext& context) {
  if (!NamesSubjectIds(spec, context.subject_id_property)) {
    return RunResolvedQuery(spec, context);
  }
  QuerySpec resolved_spec = spec;
  MP_RETURN_IF_ERROR(ResolveSubjectIds(context, &resolved_spec));
  return RunResolvedQuery(resolved_spec, context);
}

}  // namespace minpanel::query
