// k-suppression: the cells of an answer as a table of subject counts and the
// sums among them; cells under k are withheld, then more cells until no sum
// gives a withheld one away (docs/queries.md, "Small groups").
#include "query/suppress.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace minpanel::query::internal {
namespace {

constexpr size_t kNoCell = std::numeric_limits<size_t>::max();
// Each pass over the sums only adds withheld cells, so the loop ends; a
// table that still changes after this many passes is withheld whole rather
// than searched further.
constexpr size_t kSuppressPassesMax = 64;

// Cells (by index) with the distinct subjects behind each, and the sums
// among them.
class CellTable {
 public:
  size_t Add(uint64_t subjects) {
    subjects_.push_back(subjects);
    return subjects_.size() - 1;
  }

  // `total` is the sum of `parts`; kNoCell when the total is not in this
  // answer but another query gives it (the same query without a
  // breakdown). With `whole`, any withheld part withholds the total too;
  // with `parts_follow`, a withheld total withholds every part (else the
  // parts shown would add up to it).
  void AddSum(size_t total, std::vector<size_t> parts, bool whole = false,
              bool parts_follow = false) {
    if (parts.empty() || (total == kNoCell && parts.size() < 2)) {
      return;
    }
    sums_.push_back(Sum{total, std::move(parts), whole, parts_follow});
  }

  // Decides which cells are withheld; returns how many.
  uint64_t Run(uint64_t k) {
    suppressed_.assign(subjects_.size(), 0);
    for (size_t cell = 0; cell < subjects_.size(); ++cell) {
      suppressed_[cell] = subjects_[cell] < k ? 1 : 0;
    }
    bool changed = true;
    for (size_t pass = 0; changed; ++pass) {
      if (pass == kSuppressPassesMax) {
        std::fill(suppressed_.begin(), suppressed_.end(), 1);
        break;
      }
      changed = false;
      for (const Sum& sum : sums_) {
        changed = Complete(sum, k) || changed;
      }
    }
    return static_cast<uint64_t>(std::count(suppressed_.begin(), suppressed_.end(), 1));
  }

  bool suppressed(size_t cell) const { return suppressed_[cell] != 0; }

 private:
  struct Sum {
    size_t total;
    std::vector<size_t> parts;
    bool whole;
    bool parts_follow;
  };

  // Withholds the smallest shown parts of `sum` until its withheld parts
  // hold k subjects (or its total too when they cannot). True on a change.
  bool Complete(const Sum& sum, uint64_t k) {
    if (sum.total != kNoCell && suppressed_[sum.total] != 0) {
      bool changed = false;
      for (const size_t cell : sum.parts) {
        changed = changed || (sum.parts_follow && suppressed_[cell] == 0);
        suppressed_[cell] |= sum.parts_follow ? 1 : 0;
      }
      return changed;
    }
    uint64_t hidden = 0;
    std::vector<size_t> shown;
    for (const size_t cell : sum.parts) {
      if (suppressed_[cell] != 0) {
        hidden += subjects_[cell];
      } else {
        shown.push_back(cell);
      }
    }
    if (shown.size() == sum.parts.size()) {
      return false;
    }
    if (sum.whole) {
      suppressed_[sum.total] = 1;
      return true;
    }
    if (hidden >= k) {
      return false;
    }
    std::stable_sort(shown.begin(), shown.end(),
                     [&](size_t left, size_t right) { return subjects_[left] < subjects_[right]; });
    for (const size_t cell : shown) {
      if (hidden >= k) {
        break;
      }
      suppressed_[cell] = 1;
      hidden += subjects_[cell];
    }
    if (hidden < k && sum.total != kNoCell) {
      suppressed_[sum.total] = 1;
    }
    return true;
  }

  std::vector<uint64_t> subjects_;
  std::vector<uint8_t> suppressed_;
  std::vector<Sum> sums_;
};

// Segmentation: one cell per bucket and one for the whole range, per
// series. Events and sums add up over buckets and over the groups of one
// event; the other measures do not, so only their small cells are withheld.
void SuppressSegmentation(const QuerySpec& spec, uint64_t k, QueryResult* result) {
  const bool additive = spec.measure == Measure::kTotal || spec.measure == Measure::kSum;
  const bool breakdown = !spec.breakdown.properties.empty();
  const size_t buckets = result->buckets.size();
  CellTable table;
  std::vector<size_t> first_cell;
  for (const SegmentationSeries& series : result->series) {
    first_cell.push_back(kNoCell);
    for (size_t bucket_idx = 0; bucket_idx <= buckets; ++bucket_idx) {
      const uint64_t subjects =
          bucket_idx < series.subjects.size() ? series.subjects[bucket_idx] : 0;
      const size_t cell = table.Add(subjects);
      first_cell.back() = std::min(first_cell.back(), cell);
    }
  }
  if (additive) {
    for (size_t series_idx = 0; series_idx < result->series.size(); ++series_idx) {
      std::vector<size_t> parts;
      for (size_t bucket_idx = 0; bucket_idx < buckets; ++bucket_idx) {
        parts.push_back(first_cell[series_idx] + bucket_idx);
      }
      table.AddSum(first_cell[series_idx] + buckets, std::move(parts), /*whole=*/true);
    }
  }
  if (additive && breakdown) {
    for (size_t selector_idx = 0; selector_idx < spec.events.size(); ++selector_idx) {
      for (size_t bucket_idx = 0; bucket_idx <= buckets; ++bucket_idx) {
        std::vector<size_t> parts;
        for (size_t series_idx = 0; series_idx < result->series.size(); ++series_idx) {
          if (result->series[series_idx].selector_idx == selector_idx) {
            parts.push_back(first_cell[series_idx] + bucket_idx);
          }
        }
        table.AddSum(kNoCell, std::move(parts));
      }
    }
  }
  result->suppressed_cells = table.Run(k);
  for (size_t series_idx = 0; series_idx < result->series.size(); ++series_idx) {
    SegmentationSeries& series = result->series[series_idx];
    for (size_t bucket_idx = 0; bucket_idx < buckets; ++bucket_idx) {
      if (table.suppressed(first_cell[series_idx] + bucket_idx)) {
        series.values[bucket_idx] = std::nullopt;
        series.suppressed.push_back(static_cast<uint32_t>(bucket_idx));
      }
    }
    if (table.suppressed(first_cell[series_idx] + buckets)) {
      series.total = std::nullopt;
      series.total_suppressed = true;
    }
  }
}

// The time-to-convert buckets of a funnel: per group, per step, per bucket
// (empty for step 1). Each step's `subjects` is the sum of its buckets, and
// a withheld step withholds them all; each bucket of "everyone" is the sum
// of that bucket over the groups.
using FunnelBucketCells = std::vector<std::vector<std::vector<size_t>>>;

FunnelBucketCells AddTimeToConvertCells(const QueryResult& result,
                                        const std::vector<std::vector<size_t>>& step_cells,
                                        CellTable* table) {
  FunnelBucketCells cells;
  for (size_t group_idx = 0; group_idx < result.funnel.size(); ++group_idx) {
    cells.emplace_back();
    const std::vector<FunnelStepResult>& steps = result.funnel[group_idx].steps;
    for (size_t step_idx = 0; step_idx < steps.size(); ++step_idx) {
      cells.back().emplace_back();
      for (const std::optional<uint64_t>& count : steps[step_idx].time_to_convert) {
        cells.back().back().push_back(table->Add(count.value_or(0)));
      }
      table->AddSum(step_cells[group_idx][step_idx], cells.back().back(), /*whole=*/false,
                    /*parts_follow=*/true);
    }
  }
  for (size_t step_idx = 0; result.funnel.size() > 1 && step_idx < cells[0].size(); ++step_idx) {
    for (size_t bucket_idx = 0; bucket_idx < cells[0][step_idx].size(); ++bucket_idx) {
      std::vector<size_t> parts;
      for (size_t group_idx = 1; group_idx < cells.size(); ++group_idx) {
        parts.push_back(cells[group_idx][step_idx][bucket_idx]);
      }
      table->AddSum(cells[0][step_idx][bucket_idx], std::move(parts));
    }
  }
  return cells;
}

void ApplyTimeToConvert(const CellTable& table, const std::vector<size_t>& cells,
                        FunnelStepResult* step) {
  for (size_t bucket_idx = 0; bucket_idx < cells.size(); ++bucket_idx) {
    if (table.suppressed(cells[bucket_idx])) {
      step->time_to_convert[bucket_idx].reset();
      step->time_to_convert_suppressed.push_back(static_cast<uint32_t>(bucket_idx));
    }
  }
}

// Funnels: one cell per group and step; each step of "everyone" is the sum
// of that step over the groups (a subject counts in one group). A withheld
// step takes its conversions and times with it, and the next step's
// conversion (which would give it away). Then the time-to-convert buckets.
void SuppressFunnel(uint64_t k, QueryResult* result) {
  CellTable table;
  std::vector<std::vector<size_t>> cells;
  for (const FunnelGroup& group : result->funnel) {
    cells.emplace_back();
    for (const FunnelStepResult& step : group.steps) {
      cells.back().push_back(table.Add(step.subjects));
    }
  }
  if (result->funnel.size() > 1) {
    for (size_t step_idx = 0; step_idx < cells[0].size(); ++step_idx) {
      std::vector<size_t> parts;
      for (size_t group_idx = 1; group_idx < cells.size(); ++group_idx) {
        parts.push_back(cells[group_idx][step_idx]);
      }
      table.AddSum(cells[0][step_idx], std::move(parts));
    }
  }
  const FunnelBucketCells bucket_cells = AddTimeToConvertCells(*result, cells, &table);
  result->suppressed_cells = table.Run(k);
  for (size_t group_idx = 0; group_idx < result->funnel.size(); ++group_idx) {
    std::vector<FunnelStepResult>& steps = result->funnel[group_idx].steps;
    for (size_t step_idx = 0; step_idx < steps.size(); ++step_idx) {
      FunnelStepResult& step = steps[step_idx];
      step.suppressed = table.suppressed(cells[group_idx][step_idx]);
      const bool previous = step_idx > 0 && steps[step_idx - 1].suppressed;
      if (step.suppressed || previous) {
        step.step_conversion = NAN;  // written as null
      }
      if (step.suppressed || steps[0].suppressed) {
        step.overall_conversion = NAN;
      }
      if (step.suppressed) {
        step.median_ms.reset();
        step.p90_ms.reset();
      }
      ApplyTimeToConvert(table, bucket_cells[group_idx][step_idx], &step);
    }
  }
}

// Retention: per group, the group's size, each cohort's size, each count
// that has begun and each period's total. Sums: the size over the cohorts,
// each period's total over the cohorts, and every cell of "everyone" over
// the same cell of the groups.
struct RetentionCells {
  size_t size = kNoCell;
  std::vector<size_t> cohort_sizes;
  std::vector<std::vector<size_t>> counts;  // per cohort, per period; kNoCell: not begun
  std::vector<size_t> totals;               // per period
};

RetentionCells AddRetentionCells(const RetentionGroup& group, CellTable* table) {
  RetentionCells cells;
  cells.size = table->Add(group.size);
  for (const RetentionCohort& cohort : group.cohorts) {
    cells.cohort_sizes.push_back(table->Add(cohort.size));
    cells.counts.emplace_back();
    for (const std::optional<uint64_t>& count : cohort.counts) {
      cells.counts.back().push_back(count ? table->Add(*count) : kNoCell);
    }
  }
  for (const uint64_t total : group.total_counts) {
    cells.totals.push_back(table->Add(total));
  }
  table->AddSum(cells.size, cells.cohort_sizes);
  for (size_t period = 0; period < cells.totals.size(); ++period) {
    std::vector<size_t> parts;
    for (const std::vector<size_t>& cohort : cells.counts) {
      if (period < cohort.size() && cohort[period] != kNoCell) {
        parts.push_back(cohort[period]);
      }
    }
    table->AddSum(cells.totals[period], std::move(parts));
  }
  return cells;
}

// Adds "everyone's cell = the sum of the groups' cells" for every cell.
void AddRetentionGroupSums(const std::vector<RetentionCells>& groups, CellTable* table) {
  const auto across = [&](const auto& pick) {
    std::vector<size_t> parts;
    for (size_t group_idx = 1; group_idx < groups.size(); ++group_idx) {
      parts.push_back(pick(groups[group_idx]));
    }
    table->AddSum(pick(groups[0]), std::move(parts));
  };
  across([](const RetentionCells& cells) { return cells.size; });
  for (size_t cohort_idx = 0; cohort_idx < groups[0].cohort_sizes.size(); ++cohort_idx) {
    across([&](const RetentionCells& cells) { return cells.cohort_sizes[cohort_idx]; });
    for (size_t period = 0; period < groups[0].counts[cohort_idx].size(); ++period) {
      if (groups[0].counts[cohort_idx][period] != kNoCell) {
        across([&](const RetentionCells& cells) { return cells.counts[cohort_idx][period]; });
      }
    }
  }
  for (size_t period = 0; period < groups[0].totals.size(); ++period) {
    across([&](const RetentionCells& cells) { return cells.totals[period]; });
  }
}

void ApplyRetention(const CellTable& table, const RetentionCells& cells, RetentionGroup* group) {
  group->size_suppressed = table.suppressed(cells.size);
  std::vector<uint8_t> hidden_size_begun(cells.totals.size(), 0);
  for (size_t cohort_idx = 0; cohort_idx < group->cohorts.size(); ++cohort_idx) {
    RetentionCohort& cohort = group->cohorts[cohort_idx];
    cohort.size_suppressed = table.suppressed(cells.cohort_sizes[cohort_idx]);
    for (size_t period = 0; period < cohort.counts.size(); ++period) {
      const size_t cell = cells.counts[cohort_idx][period];
      if (cell == kNoCell) {
        continue;
      }
      hidden_size_begun[period] |= cohort.size_suppressed ? 1 : 0;
      if (table.suppressed(cell)) {
        cohort.counts[period].reset();
        cohort.suppressed.push_back(static_cast<uint32_t>(period));
      }
      // A rate beside a shown count would give the size away.
      if (table.suppressed(cell) || cohort.size_suppressed) {
        cohort.rates[period].reset();
      }
    }
  }
  for (size_t period = 0; period < cells.totals.size(); ++period) {
    if (table.suppressed(cells.totals[period])) {
      group->total_suppressed.push_back(static_cast<uint32_t>(period));
      group->total_rates[period].reset();
    }
    // The rate's denominator is the sum of the begun cohorts' sizes.
    if (hidden_size_begun[period] != 0) {
      group->total_rates[period].reset();
    }
  }
}

void SuppressRetention(uint64_t k, QueryResult* result) {
  CellTable table;
  std::vector<RetentionCells> cells;
  for (const RetentionGroup& group : result->retention) {
    cells.push_back(AddRetentionCells(group, &table));
  }
  if (cells.size() > 1) {
    AddRetentionGroupSums(cells, &table);
  }
  result->suppressed_cells = table.Run(k);
  for (size_t group_idx = 0; group_idx < result->retention.size(); ++group_idx) {
    ApplyRetention(table, cells[group_idx], &result->retention[group_idx]);
  }
}

}  // namespace

void SuppressSmallGroups(const QuerySpec& spec, uint32_t k, QueryResult* result) {
  result->min_group_size = k;
  switch (result->kind) {
    case QueryKind::kSegmentation:
      SuppressSegmentation(spec, k, result);
      return;
    case QueryKind::kFunnel:
      SuppressFunnel(k, result);
      return;
    case QueryKind::kRetention:
      SuppressRetention(k, result);
      return;
  }
}

}  // namespace minpanel::query::internal
