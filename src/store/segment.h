// Immutable columnar segment files of the embedded store, byte layout in
// docs/formats/segment.md. A segment holds the events of one project, sorted
// by (subject, time, insert id) and cut into blocks of at most
// `block_rows_max` rows; each column of each block is a separately
// compressed and checksummed chunk, so a query reads only the columns and
// blocks it needs, and a funnel or retention pass sees each subject's events
// in time order, one subject after the other.
//
// Writing: EncodeSegment sorts and encodes events into a file image;
// WriteSegmentFile also makes it durable under its final name (temporary
// name, fsync, rename, fsync of the folder). Both are reentrant.
//
// Reading: OpenSegment validates the header, trailer and footer (any torn,
// short or garbled file is Corruption naming the file) and keeps the zone
// maps and indexes in memory, and the file open. Column chunks are read from
// the file (pread), checksummed and decoded only when asked for, one block
// at a time; a damaged chunk is Corruption naming the file, the column and
// the block, a failed read IoError naming them. A reader over an image in
// memory (SegmentReader::Open(std::string, ...)) reads the same way from
// the image. A SegmentReader is immutable once open and
// its const methods may be called from many threads at once. Output objects
// (vectors, SubjectRuns, PropertyColumn) belong to the caller, who should
// reuse them from block to block to keep allocation low.
//
// Decoded events carry their properties sorted by key (bytewise), whatever
// order they were written in; values and types are exact (doubles bit for
// bit; null, empty string and absent stay distinct).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "store/segment_format.h"
#include "store/store.h"

namespace minpanel::store {

// Rows per block. Measured in src/store/README.md ("Segments"): 16K rows
// store within 0.6 % of 64K rows (4K rows cost 2 % more), and one decoded
// column of a block stays under 350 KB (21 bytes a row for a string column).
inline constexpr uint32_t kSegmentBlockRowsDefault = 16384;
// A block is also closed once its events' raw bytes pass this, so that no
// column chunk of a block with very large events nears kSegmentChunkBytesMax.
inline constexpr uint64_t kSegmentBlockBytesTarget = 32ULL << 20;
// A key present in at least this fraction of a segment's rows gets its own
// column; the rest share the map column. Measured in src/store/README.md.
inline constexpr double kOwnColumnFractionDefault = 0.01;
inline constexpr uint32_t kSegmentFileMode = 0600;
// In SegmentReader::WithHiddenRows, the list {kAllRowsHidden} hides a whole block.
inline constexpr uint32_t kAllRowsHidden = UINT32_MAX;

struct SegmentWriteOptions {
  uint32_t project_id = 0;
  uint32_t block_rows_max = kSegmentBlockRowsDefault;  // 1 .. kSegmentBlockRowsMax
  uint64_t block_bytes_target = kSegmentBlockBytesTarget;
  double own_column_fraction_min = kOwnColumnFractionDefault;
  size_t own_columns_max = kSegmentPropertyColumnsMax;  // at most kSegmentPropertyColumnsMax
  // Unset: each chunk picks its codec by measurement (docs/formats/segment.md).
  std::optional<SegmentCodec> codec;
  int zstd_level = 1;  // measured: as small as level 3 on event columns, faster to write
  // Property and map chunks are cut into granules of about this many rows
  // (at subject run ends: ChooseGranuleEnds); 0 stores each whole.
  uint32_t granule_rows = kGranuleRowsDefault;
  // Above 0: only chunks that compress whole to at most 1/this of their raw
  // bytes are cut into granules, the others stored whole
  // (docs/formats/segment.md, "Granules"). 0 (the default) cuts every chunk
  // that holds a value; infinity none.
  double granule_ratio_min = kGranuleRatioMinDefault;
  // Set: rows are written under the person of their subject, their subject
  // kept as the stored subject (a folded segment); the table must outlive
  // the call. Unset: rows keep the subjects they have (EncodeSegment: the
  // events' subjects; the merge: what its inputs hold, folded or not).
  const SubjectFold* fold = nullptr;
};

// Which of a segment's `key_count` keys get their own column: those on at
// least own_column_fraction_min of its `rows`, the most frequent first (ties
// by key) up to own_columns_max; the rest go to the map column. Both lists
// come back sorted by key. EncodeSegment and the streaming merge
// (segment_merge.h) both choose with it, so that they write the same file.
// `row_count(id)` and `key(id)` describe key `id`.
template <typename RowCount, typename Key>
void ChooseOwnColumns(uint32_t key_count, uint64_t rows, const SegmentWriteOptions& options,
                      RowCount row_count, Key key, std::vector<uint32_t>* own,
                      std::vector<uint32_t>* map_keys) {
  const uint64_t rows_min =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(options.own_column_fraction_min *
                                                            static_cast<double>(rows))));
  for (uint32_t id = 0; id < key_count; ++id) {
    (row_count(id) >= rows_min ? own : map_keys)->push_back(id);
  }
  std::sort(own->begin(), own->end(), [&](uint32_t a, uint32_t b) {
    return row_count(a) != row_count(b) ? row_count(a) > row_count(b) : key(a) < key(b);
  });
  if (own->size() > options.own_columns_max) {
    map_keys->insert(map_keys->end(),
                     own->begin() + static_cast<ptrdiff_t>(options.own_columns_max), own->end());
    own->resize(options.own_columns_max);
  }
  const auto by_key = [&](uint32_t a, uint32_t b) { return key(a) < key(b); };
  std::sort(own->begin(), own->end(), by_key);
  std::sort(map_keys->begin(), map_keys->end(), by_key);
}

// Encodes `events` (1 .. kSegmentRowsMax of them, of one project, in any
// order) into a segment file image. InvalidArgument on bad options or an
// event with a repeated property key; ResourceExhausted when a chunk would
// exceed kSegmentChunkBytesMax. `events` is only read.
Result<std::string> EncodeSegment(std::span<const Event> events,
                                  const SegmentWriteOptions& options);

// Encodes `events` and writes them to `path` crash-safely: to `path`.tmp,
// fsync, rename over `path`, fsync of the folder. On failure `path` is
// untouched (a stale .tmp may remain and is replaced by the next attempt).
Status WriteSegmentFile(FileSystem& file_system, const std::string& path,
                        std::span<const Event> events, const SegmentWriteOptions& options);

// The same, for an image EncodeSegment made.
Status WriteSegmentImage(FileSystem& file_system, const std::string& path, std::string_view image);

struct SegmentSummary {
  uint32_t format_version = 0;
  uint32_t project_id = 0;
  uint64_t file_bytes = 0;
  uint64_t row_count = 0;
  uint64_t subject_count = 0;  // distinct subjects
  int64_t time_min_ms = 0;     // inclusive
  int64_t time_max_ms = 0;     // inclusive
  Id128 subject_min;
  Id128 subject_max;
  uint32_t block_rows_max = 0;
  // Folded segments (format version 2): the generation of the map the rows
  // were folded with (0: never), and how many stored subject runs the blocks
  // hold (0: every row is stored under the subject its subject column says).
  uint64_t fold_generation = 0;
  uint64_t stored_subject_runs = 0;
};

struct SegmentBlockInfo {
  uint64_t first_row = 0;  // of the segment
  uint32_t row_count = 0;
  int64_t time_min_ms = 0;  // inclusive
  int64_t time_max_ms = 0;  // inclusive
  Id128 subject_first;      // a subject may continue from the previous block
  Id128 subject_last;       // or into the next one
  uint32_t subject_run_count = 0;
};

struct EventNameInfo {
  std::string name;
  uint64_t row_count = 0;
};

enum class PropertyStorage : uint8_t { kColumn, kMap };

struct PropertyKeyInfo {
  std::string key;
  uint64_t row_count = 0;  // rows with the key present (null included)
  uint8_t tag_mask = 0;    // TagBit of each PropertyTag the key holds
  PropertyStorage storage = PropertyStorage::kMap;
  StringEncoding encoding = StringEncoding::kNone;  // kPlain for map keys with strings
  uint32_t dictionary_size = 0;                     // dictionary columns only
};

// Which blocks a query must read. Bounds are inclusive; unset matches all.
struct BlockFilter {
  int64_t time_min_ms = INT64_MIN;
  int64_t time_max_ms = INT64_MAX;
  std::vector<uint32_t> name_codes;  // any of these names; empty: any name
  std::optional<Id128> subject_min;
  std::optional<Id128> subject_max;
};

// The sorted strings of one dictionary-encoded column; code = index, so
// code order is bytewise string order (a prefix is a code range).
struct SegmentDictionary {
  std::string bytes;
  std::vector<std::string_view> entries;  // point into `bytes`
  std::optional<uint32_t> Find(std::string_view text) const;
};

// Subjects of a block as runs: rows [sum of earlier lengths, + length) belong
// to subjects[i]. Subjects are strictly increasing.
struct SubjectRuns {
  std::vector<Id128> subjects;
  std::vector<uint32_t> run_lengths;
};

// One property key over one block, whether the key has its own column or
// lives in the map column. `tags` has a tag per row; each other array is
// sized to the block's rows when some row of the block has that type, and is
// empty otherwise (list_offsets then has rows + 1 entries: the items of row r
// are list_items[list_offsets[r] .. list_offsets[r + 1])). String views stay
// valid while this object lives and is not read into again; moving it keeps
// them valid.
class PropertyColumn {
 public:
  PropertyColumn() = default;
  PropertyColumn(PropertyColumn&&) = default;
  PropertyColumn& operator=(PropertyColumn&&) = default;
  PropertyColumn(const PropertyColumn&) = delete;
  PropertyColumn& operator=(const PropertyColumn&) = delete;

  std::vector<PropertyTag> tags;
  std::vector<int64_t> ints;              // kInt rows
  std::vector<double> doubles;            // kDouble rows
  std::vector<std::string_view> strings;  // kString rows
  std::vector<uint32_t> string_codes;     // kString rows, dictionary columns only
  std::vector<uint32_t> list_offsets;
  std::vector<std::string_view> list_items;
  std::vector<uint32_t> list_item_codes;  // dictionary columns only

  // Set before a read: whether the kString rows of a dictionary column get a
  // view each in `strings` (true), or only their codes, `strings` left empty
  // (false: a caller that reads codes — a query's filters and breakdowns —
  // does not pay 16 bytes a row for views it never reads; StringAt and
  // ValueAt still give the text). Plain columns, map keys and reads of
  // selected rows always fill `strings`.
  bool dictionary_string_views = true;

  size_t size() const { return tags.size(); }
  // The dictionary the codes index, or nullptr (plain columns, map keys).
  const SegmentDictionary* dictionary() const { return dictionary_.get(); }
  // Row `row_idx`'s string. Precondition: tags[row_idx] == kString.
  std::string_view StringAt(size_t row_idx) const {
    return strings.empty() ? std::string_view(dictionary_->entries[string_codes[row_idx]])
                           : strings[row_idx];
  }
  // The value of row `row_idx`. Precondition: tags[row_idx] != kAbsent.
  Value ValueAt(size_t row_idx) const;

 private:
  friend class SegmentReader;
  PropertyColumnOutput Output();

  // The decoded chunk the string views point into; on the heap so that a
  // move keeps the views valid.
  std::unique_ptr<std::string> bytes_ = std::make_unique<std::string>();
  std::shared_ptr<const SegmentDictionary> dictionary_;
};

// What a view (SegmentReader::WithMask) hides of its base: rows (erasure,
// retention) and property values (property purges; src/store/deletion.h).
struct SegmentMask {
  // Per block, its hidden rows ascending ({kAllRowsHidden}: all of them);
  // a missing or empty list hides none.
  std::vector<std::vector<uint32_t>> rows;
  // A property key whose values are hidden: in every row, or in the listed
  // rows of each block (the base's row numbers, ascending; a missing or
  // empty list hides none).
  struct Key {
    std::string key;
    bool every_row = true;
    std::vector<std::vector<uint32_t>> rows;
  };
  std::vector<Key> keys;  // at most one entry per key
};

// Where a reader's stored bytes come from: an image in memory, or an open
// file (segment_reader.cc).
class SegmentSource;

class SegmentReader {
 public:
  // Validates `image` (a whole segment file), which the reader keeps; `name`
  // labels errors.
  static Result<std::unique_ptr<SegmentReader>> Open(std::string image, std::string name);
  // Validates the segment file behind `file` (its header, trailer and footer
  // are read once here) and keeps `file` open to read column chunks from.
  static Result<std::unique_ptr<SegmentReader>> Open(std::unique_ptr<RandomAccessFile> file,
                                                     std::string name);
  ~SegmentReader();

  const std::string& name() const { return name_; }
  const SegmentSummary& summary() const { return summary_; }

  // Zone maps and indexes, all in memory.
  size_t block_count() const { return blocks_.size(); }
  const SegmentBlockInfo& block(size_t block_idx) const { return blocks_[block_idx]; }
  bool BlockHoldsName(size_t block_idx, uint32_t name_code) const;
  // Sorted by name; a row's name code is the index here.
  const std::vector<EventNameInfo>& event_names() const { return event_names_; }
  std::optional<uint32_t> FindEventName(std::string_view name) const;
  // Every property key of the segment, sorted by key.
  const std::vector<PropertyKeyInfo>& property_keys() const { return property_keys_; }
  const PropertyKeyInfo* FindPropertyKey(std::string_view key) const;
  // Indexes of the blocks that may hold rows matching `filter`, ascending.
  std::vector<size_t> MatchingBlocks(const BlockFilter& filter) const;

  // Per-block column reads; each reads only that chunk (and, the first time,
  // the key's dictionary), checks its checksum and decodes it. A chunk cut
  // short (the file was truncated after open) or changed is Corruption; a
  // failed read is IoError.
  // Precondition: block_idx < block_count().
  Status ReadTimes(size_t block_idx, std::vector<int64_t>* times) const;
  // The times of the rows `selected` (strictly ascending, each < the block's
  // row count): entry i is row selected[i]'s. In a block of packed times
  // (format 3) only those rows are decoded — what a query that keeps a few
  // rows of a block by their names needs; each time read is checked against
  // the zone map, but not the zone map against the rows not read.
  Status ReadTimesOfRows(size_t block_idx, std::span<const uint32_t> selected,
                         std::vector<int64_t>* times) const;
  // The block's subject column: in a folded segment, the person each row is
  // kept under (the sort order); ReadStoredSubjects says which rows were
  // stored under another subject.
  Status ReadSubjects(size_t block_idx, SubjectRuns* runs) const;
  // The rows of the block whose stored subject differs from their subject
  // (empty unless the segment is folded), from the footer: no read.
  Status ReadStoredSubjects(size_t block_idx, std::vector<StoredSubjectRun>* runs) const;
  Status ReadInsertIds(size_t block_idx, std::vector<Id128>* insert_ids) const;
  Status ReadKeyVersions(size_t block_idx, std::vector<uint32_t>* key_versions) const;
  // The version of the project's policy that shaped each row; every row
  // kPolicyVersionUnknown in a file of format 1 to 3 (no read).
  Status ReadPolicyVersions(size_t block_idx, std::vector<uint32_t>* policy_versions) const;
  Status ReadNameCodes(size_t block_idx, std::vector<uint32_t>* name_codes) const;
  // The rows of each name code in a block (one entry per event_names()
  // entry), read and checked as ReadNameCodes does, without a code per row:
  // what a count by event name needs.
  Status CountNames(size_t block_idx, std::vector<uint64_t>* counts) const;
  // A key the segment does not hold reads as absent in every row.
  Status ReadProperty(size_t block_idx, std::string_view key, PropertyColumn* column) const;
  // The dictionary of a dictionary-encoded column (loaded once, then shared);
  // NotFound when `key` has none.
  Result<std::shared_ptr<const SegmentDictionary>> ReadDictionary(std::string_view key) const;

  // Every property of the rows `selected` of a block (strictly ascending,
  // each < the block's row count), one column per property_keys() entry:
  // row i of each column is block row selected[i] (absent where that row
  // lacks the key). Each chunk is read and checked once (the map chunk once
  // for all its keys), and only the selected rows' values are decoded: for
  // a few rows of a block, much less work than ReadProperty per key. The
  // string views of the map keys' columns point into one of those columns'
  // buffers: valid while the whole vector lives and is not read into again.
  Status ReadPropertiesOfRows(size_t block_idx, std::span<const uint32_t> selected,
                              std::vector<PropertyColumn>* columns) const;
  // The insert ids of the rows `selected` (as above): entry i is row
  // selected[i]'s.
  Status ReadInsertIdsOfRows(size_t block_idx, std::span<const uint32_t> selected,
                             std::vector<Id128>* insert_ids) const;

  // One entry of a block's map column: its row (a view's rows numbered
  // without the hidden ones), key code (the index among the property_keys()
  // stored in the map, which is footer().map_keys order), tag and undecoded
  // value bytes (DecodeMapValue reads them).
  struct MapEntryView {
    uint32_t row = 0;
    uint32_t key_code = 0;
    PropertyTag tag = PropertyTag::kAbsent;
    std::string_view value_bytes;
  };
  // Every map entry of a block, in row order and each row's in key order,
  // checked as ReadProperty checks the map chunk. The value bytes point into
  // `*scratch` (or the reader's image): valid while both are unchanged.
  // Compaction copies them without decoding (segment_merge.h).
  Status ReadMapEntries(size_t block_idx, std::string* scratch,
                        std::vector<MapEntryView>* entries) const;

  // Every row of a block as events (reusing the vector's elements), each
  // under its stored subject (a folded segment's rows too).
  Status ReadEvents(size_t block_idx, std::vector<Event>* events) const;
  // Reads and checks every chunk of the file; OK when all of it decodes.
  Status Verify() const;

  // A view of `base` without some rows (erasure and time-based dropping,
  // src/store/deletion.h): `hidden_rows[block]` lists a block's hidden rows,
  // ascending (a missing or empty list hides none, {kAllRowsHidden} all of
  // them without listing each). Every read of the view,
  // its blocks' row counts and its summary's row count leave those rows out,
  // so a caller needs no knowledge of them; zone maps, name bitmaps and key
  // statistics stay the base's (supersets). `base` must not be a view itself.
  // Defined in segment_view.cc.
  static std::shared_ptr<const SegmentReader> WithHiddenRows(
      std::shared_ptr<const SegmentReader> base, std::vector<std::vector<uint32_t>> hidden_rows);
  // `reader` (a file reader or a view) without some more rows: `more_hidden`
  // numbers rows as `reader` does (without a view's hidden rows). A view
  // over `reader`'s base, hiding both (and the property values `reader`
  // hides). Defined in segment_view.cc.
  static std::shared_ptr<const SegmentReader> WithMoreHiddenRows(
      std::shared_ptr<const SegmentReader> reader, std::vector<std::vector<uint32_t>> more_hidden);
  // A view of `base` without `mask.rows` (as WithHiddenRows) and without the
  // values of `mask.keys`: a key hidden in every row reads as absent
  // everywhere, and its property_keys() entry (kept, so that map key codes
  // keep their meaning) says 0 rows, no tags and no dictionary; a key hidden
  // in some rows reads as absent in those rows (its statistics stay the
  // base's, a superset). ReadEvents, ReadPropertiesOfRows and ReadMapEntries
  // leave the hidden values out too, so the merge (segment_merge.h) writes
  // none of them. Keys the base does not hold are ignored.
  static std::shared_ptr<const SegmentReader> WithMask(std::shared_ptr<const SegmentReader> base,
                                                       SegmentMask mask);
  // The reader a WithHiddenRows or WithMask view reads through, or nullptr.
  const SegmentReader* hidden_rows_base() const { return masked_base_.get(); }

  // For DumpSegmentFile: the directory of a granular chunk (chunk_idx of
  // the block's chunk list), read and checksummed; empty for another codec.
  Status ReadGranuleDirectory(size_t block_idx, size_t chunk_idx,
                              std::vector<GranuleRef>* granules) const;
  // For DumpSegmentFile: the footer as stored.
  const SegmentFooter& footer() const { return footer_; }

 private:
  SegmentReader(std::unique_ptr<const SegmentSource> source, std::string name,
                SegmentFooter footer, uint32_t version);
  static Result<std::unique_ptr<SegmentReader>> OpenSource(
      std::unique_ptr<const SegmentSource> source, std::string name);
  void BuildIndexes();
  Status Error(std::string_view column, size_t block_idx, const Status& status) const;
  // Reads, checksums and decompresses one chunk: `*raw` views `*scratch`
  // (or, for an uncompressed chunk of an in-memory image, the image).
  Status ReadChunk(const ChunkRef& ref, std::string* scratch, std::string_view* raw) const;
  // Reads a property or map chunk as its granules (one, for a chunk that is
  // not granular): every one, or (`selected`, ascending rows) only those
  // holding a selected row; their decoded bytes live in `*scratch`.
  Status ReadChunkGranules(const ChunkRef& ref, size_t rows,
                           const std::span<const uint32_t>* selected, std::string* scratch,
                           std::vector<ChunkGranule>* granules) const;
  Status ReadColumnChunk(size_t block_idx, size_t chunk_idx, std::string* scratch,
                         std::string_view* raw) const;
  Result<std::shared_ptr<const SegmentDictionary>> Dictionary(size_t column_idx) const;
  Status ReadOwnColumn(size_t block_idx, size_t column_idx, PropertyColumn* column) const;
  // A view's rows `selected` numbered as its base's.
  std::vector<uint32_t> BaseRows(size_t block_idx, std::span<const uint32_t> selected) const;
  // With `selected`, only those rows (DecodePropertyColumnRows).
  Status ReadOwnColumnRows(size_t block_idx, size_t column_idx,
                           const std::span<const uint32_t>* selected, PropertyColumn* column) const;
  Status ReadMapKey(size_t block_idx, uint32_t key_code, PropertyColumn* column) const;
  Status ReadMapEntries(size_t block_idx, std::vector<Event>* events) const;
  Status CheckRowOrder(size_t block_idx, const std::vector<int64_t>& times, const SubjectRuns& runs,
                       const std::vector<Id128>& insert_ids) const;

  // WithHiddenRows views (segment_view.cc): each public read goes to the base
  // and drops the hidden rows from what it returns.
  SegmentReader();  // defined beside the other constructor, where SegmentSource is complete
  Status MaskedReadTimes(size_t block_idx, std::vector<int64_t>* times) const;
  Status MaskedReadSubjects(size_t block_idx, SubjectRuns* runs) const;
  Status MaskedReadInsertIds(size_t block_idx, std::vector<Id128>* insert_ids) const;
  Status MaskedReadKeyVersions(size_t block_idx, std::vector<uint32_t>* key_versions) const;
  Status MaskedReadPolicyVersions(size_t block_idx, std::vector<uint32_t>* policy_versions) const;
  Status MaskedReadNameCodes(size_t block_idx, std::vector<uint32_t>* name_codes) const;
  Status MaskedReadProperty(size_t block_idx, std::string_view key, PropertyColumn* column) const;
  Status MaskedReadEvents(size_t block_idx, std::vector<Event>* events) const;
  Status MaskedReadStoredSubjects(size_t block_idx, std::vector<StoredSubjectRun>* runs) const;
  // The hidden keys' rows of a block (base numbering): nullptr for none,
  // else the list ({kAllRowsHidden}: every row).
  const std::vector<uint32_t>* HiddenKeyRows(size_t hidden_idx, size_t block_idx) const;
  // Index into hidden_keys_ of `key`, or SIZE_MAX.
  size_t HiddenKeyIndex(std::string_view key) const;
  void StripHiddenKeys(size_t block_idx, std::vector<Event>* events) const;
  void StripHiddenMapEntries(size_t block_idx, std::vector<MapEntryView>* entries) const;
  void StripHiddenKeysOfRows(size_t block_idx, std::span<const uint32_t> base_rows,
                             std::vector<PropertyColumn>* columns) const;
  std::shared_ptr<const SegmentReader> masked_base_;
  std::vector<std::vector<uint32_t>> hidden_rows_;
  std::vector<SegmentMask::Key> hidden_keys_;  // only keys the base holds
  std::vector<size_t> hidden_key_indexes_;     // each one's property_keys_ index

  std::unique_ptr<const SegmentSource> source_;
  std::string name_;
  SegmentFooter footer_;
  SegmentSummary summary_;
  std::vector<SegmentBlockInfo> blocks_;
  std::vector<EventNameInfo> event_names_;
  std::vector<PropertyKeyInfo> property_keys_;
  std::vector<uint8_t> map_tag_masks_;
  // Index into footer_.columns or footer_.map_keys, per property_keys_ entry.
  std::vector<uint32_t> key_positions_;

  mutable std::mutex dictionaries_mutex_;
  mutable std::vector<std::shared_ptr<const SegmentDictionary>> dictionaries_;
};

// Opens the segment file at `path` and validates it. NotFound when it does
// not exist, IoError when it cannot be read, Corruption (naming the file) when
// it is torn, short, garbled or of a newer format version.
//
// The reader keeps only the footer's indexes in memory and the file open
// (one descriptor per reader): column chunks are read with pread when asked
// for. The open descriptor keeps the file readable after it is deleted (as
// compaction does while a query may hold the reader). See src/store/README.md,
// "Memory".
Result<std::unique_ptr<SegmentReader>> OpenSegment(FileSystem& file_system,
                                                   const std::string& path);

}  // namespace minpanel::store
