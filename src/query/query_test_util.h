// Helpers for the query tests: events from JSON lines, in-memory segments,
// and a JSON comparison where the expected document may leave fields out.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "query/query.h"
#include "store/segment.h"

namespace minpanel::query::testing {

// A stable subject id for a readable name ("u1").
Id128 SubjectFromName(std::string_view name);

// One event per line: {"event": NAME, "subject": NAME, "time": TIME,
// "properties": {...}} where TIME is milliseconds or "YYYY-MM-DDTHH:MM[:SS[.mmm]]Z".
// Blank lines and lines starting with '#' are skipped.
Result<std::vector<Event>> ParseEventLines(std::string_view text);

// Encodes each group of events as one segment (blocks of `block_rows_max`
// rows) and opens it in memory.
Result<std::shared_ptr<const store::SegmentReader>> MakeSegment(const std::vector<Event>& events,
                                                                 uint32_t block_rows_max);

// Empty when every field of `expected` is in `actual` with an equal value
// (numbers within 1e-9 relative; arrays of equal length, element by
// element); otherwise the path of the first difference and both values.
std::string JsonSubsetDiff(std::string_view expected, std::string_view actual);

}  // namespace minpanel::query::testing
