// k-suppression of a query answer (docs/queries.md, "Small groups"): internal
// to the query module; RunQuery applies it when QueryContext::min_group_size
// is above 1. Pure: it only rewrites the result it is given.
#pragma once

#include <cstdint>

#include "query/query.h"

namespace minpanel::query::internal {

// Withholds every cell of `result` with fewer than `k` distinct subjects
// behind it — segmentation values (per bucket and the series total),
// funnel steps and their time-to-convert buckets, retention cohort sizes
// and counts, and the totals of each — together with whatever is computed
// from one (conversions, rates, times between steps). Then, for every sum a
// cell takes part in, enough further cells that the withheld parts of the
// sum hold at least k subjects between them, so that none is found by
// subtraction: the
// breakdown groups and "other" of one step, bucket or cohort cell (whose sum
// is the answer's "everyone" part, or the same query without a breakdown),
// the cohorts of a retention total, the time-to-convert buckets of a funnel
// step, and the buckets of a series total.
// Precondition: k > 1; segmentation series carry `subjects` (RunQuery fills
// them when min_group_size > 1).
void SuppressSmallGroups(const QuerySpec& spec, uint32_t k, QueryResult* result);

}  // namespace minpanel::query::internal
