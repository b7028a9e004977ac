// The streaming merge of segments: compaction and the physical stage of
// erasure. Internal to the store module.
//
// Inputs are segment readers (usually WithHiddenRows views), each already
// sorted by (subject, time, insert id). The merge walks them block by block
// with a k-way merge, holding one block of each input decoded into columns
// (PropertyColumn, dictionary codes where the input has a dictionary) and one
// output block being built, and never turns a row into an Event: the
// output's event-name and property dictionaries are built from the inputs'
// dictionaries (restricted to the values the kept rows use) and the inputs'
// codes are remapped. Memory is bounded by the blocks (a few MB per input)
// and the output's dictionaries, not by the row count. The output is written
// block by block to a sink (a file, or a string for tests).
//
// The output means exactly what EncodeSegment of the same rows would make:
// the same rows in the same order (ties between inputs keep the inputs'
// order), the same columns chosen, the same dictionary-or-plain choice but
// for one documented case (docs/formats/segment.md is unchanged; see
// src/store/README.md, "Compaction").
//
// Thread-compatible: one merge per thread; the readers are only read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/core.h"
#include "store/segment.h"

namespace minpanel::store {

// Strings of plain or map-stored input columns that a merge collects to
// decide whether the output column gets a dictionary (a dictionary-encoded
// input gives its dictionary instead). Past this many bytes in one merge the
// remaining such columns are written plain, so that a column of unique
// values cannot make the merge hold every value.
inline constexpr uint64_t kMergeDistinctBytesMax = 64ULL << 20;

// A merge with a fold (SegmentWriteOptions::fold) reads the rows that move
// to another person as events, this many at a time (some 100 MB of events of
// 20 properties), and sorts each batch into a segment in memory. Past
// kMergeFoldMovedRowsMax such rows in one merge it does not fold (the
// output keeps its inputs' subjects): folding is a cache, and this bounds
// the memory of those segments (some 30 bytes a row) and the time.
inline constexpr size_t kMergeFoldBatchRowsMax = 32768;
inline constexpr uint64_t kMergeFoldMovedRowsMax = 1ULL << 20;

struct MergeResult {
  uint64_t row_count = 0;  // 0: every input row was hidden, nothing written
  uint64_t file_bytes = 0;
  int64_t time_min_ms = 0;  // of the output rows, when row_count > 0
  bool folded = false;      // the options' fold was applied (not past kMergeFoldMovedRowsMax)
};

// Appends bytes of the output file, in order.
using MergeSink = std::function<Status(std::string_view bytes)>;

// Merges the rows of `inputs` (each a segment of `options.project_id`) into
// one segment, sent to `sink` from the header to the trailer. When no input
// row is visible, nothing is sent and row_count is 0. `options.codec`,
// `zstd_level`, `block_rows_max`, `block_bytes_target`,
// `own_column_fraction_min` and `own_columns_max` apply as in EncodeSegment.
// Errors of the inputs' reads are returned as they are (Corruption, IoError).
Result<MergeResult> MergeSegments(std::span<const std::shared_ptr<const SegmentReader>> inputs,
                                  const SegmentWriteOptions& options, const MergeSink& sink);

// MergeSegments into a string (tests; small merges).
Result<std::string> MergeSegmentsToImage(
    std::span<const std::shared_ptr<const SegmentReader>> inputs,
    const SegmentWriteOptions& options);

// MergeSegments into `path` crash-safely, as WriteSegmentImage: to `path`.tmp
// (appended block by block), fsync, rename, fsync of the folder. With no
// visible row nothing is created.
Result<MergeResult> MergeSegmentsToFile(
    FileSystem& file_system, const std::string& path,
    std::span<const std::shared_ptr<const SegmentReader>> inputs,
    const SegmentWriteOptions& options);

}  // namespace minpanel::store
