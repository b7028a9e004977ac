// The columnar segment file's byte layout (docs/formats/segment.md): header,
// trailer, footer, the encoding of every column chunk, and per-chunk
// compression. Internal to the store module; segment.h builds the writer and
// the reader on top of it.
//
// Encoders append to caller-owned strings. Decoders read bytes that are never
// trusted: every count and length is checked against what remains and against
// the limits below, and a malformed input is a Corruption status (with a short
// reason that the reader prefixes with the file, column and block), never a
// crash or an allocation the input did not pay for. All functions are
// thread-compatible.
#pragma once

#include <endian.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "store/bytes.h"

namespace minpanel::store {

// "MPSEG\r\n\x1a", as the log's magic: line endings catch text-mode mangling.
inline constexpr std::array<char, 8> kSegmentMagic = {'M', 'P', 'S', 'E', 'G', '\r', '\n', '\x1a'};
// Version 2 adds the fold section (docs/formats/segment.md, "Folded persons");
// version 3 packs a block's times as fixed-width offsets ("time"); version 4
// adds each block's policy_version chunk ("policy_version"); version 5 may
// store a property or map chunk in granules ("Granules").
inline constexpr uint32_t kSegmentFormatVersion = 5;
inline constexpr uint32_t kSegmentFoldFormatVersion = 2;  // the first with the fold section
inline constexpr uint32_t kSegmentPackedTimesFormatVersion = 3;  // the first with packed times
inline constexpr uint32_t kSegmentPolicyVersionFormatVersion = 4;  // the first with policy versions
inline constexpr uint32_t kSegmentGranulesFormatVersion = 5;       // the first with granules
// The widest time offset version 3 packs: a block whose times span 2^32 ms
// (49.7 days) or more keeps zigzag deltas. A segment holds one UTC day.
inline constexpr uint32_t kPackedTimeBitsMax = 32;
// magic (8) | format version (u32) | CRC-32 of the first 12 bytes (u32)
inline constexpr size_t kSegmentHeaderBytes = 16;
// footer bytes (u64) | footer CRC-32 (u32) | format version (u32) | magic (8)
inline constexpr size_t kSegmentTrailerBytes = 24;

// Limits a reader enforces on what a footer claims, so a garbled footer can
// neither allocate without bound nor make a block too big to decode.
inline constexpr uint32_t kSegmentBlockRowsMax = 65536;
inline constexpr uint64_t kSegmentRowsMax = 1ULL << 32;
inline constexpr uint64_t kSegmentChunkBytesMax = 256ULL << 20;  // one column of one block, raw
inline constexpr uint64_t kSegmentFooterBytesMax = 256ULL << 20;
inline constexpr size_t kSegmentPropertyColumnsMax = 256;

// kGranules (version 5, property and map chunks only): the chunk is cut into
// granules of rows, each compressed on its own with one of the other codecs
// behind a directory (docs/formats/segment.md, "Granules").
enum class SegmentCodec : uint8_t { kNone = 0, kLz4 = 1, kZstd = 2, kGranules = 3 };
// Packed times are stored uncompressed (unless a test forces a codec): they
// are read for their speed and row by row (docs/formats/segment.md, "time").
inline constexpr SegmentCodec kUncompressedCodec = SegmentCodec::kNone;
std::string_view SegmentCodecName(SegmentCodec codec);

// How a property column stores its strings and list items.
enum class StringEncoding : uint8_t {
  kNone = 0,        // the column holds no string or list in this segment
  kDictionary = 1,  // codes into the column's sorted per-segment dictionary
  kPlain = 2,       // lengths, then bytes
};

// What a property is in one row. Booleans live entirely in the tag. The
// numbering is part of the format and independent of Value::Type.
enum class PropertyTag : uint8_t {
  kAbsent = 0,
  kNull = 1,
  kFalse = 2,
  kTrue = 3,
  kInt = 4,
  kDouble = 5,
  kString = 6,
  kList = 7,
};
inline constexpr uint8_t kPropertyTagCount = 8;
inline constexpr uint8_t TagBit(PropertyTag tag) { return uint8_t{1} << static_cast<uint8_t>(tag); }
PropertyTag TagOf(const Value& value);
std::string_view PropertyTagName(PropertyTag tag);

// The columns every block has, in the order of its chunk list; the property
// columns follow them, then the map column.
enum class FixedColumn : uint8_t { kTime = 0, kSubject, kInsertId, kKeyVersion, kName };
inline constexpr size_t kFixedColumnCount = 5;
std::string_view FixedColumnName(FixedColumn column);

// Where one column of one block (or one dictionary) is stored. Chunks tile
// the data region in footer order, so offsets are implied, not stored.
struct ChunkRef {
  SegmentCodec codec = SegmentCodec::kNone;
  uint64_t stored_bytes = 0;
  uint64_t raw_bytes = 0;
  uint32_t crc32 = 0;  // of the stored bytes
  // Property columns: rows with the key present; map column: entries.
  // Zero for the fixed columns and dictionaries.
  uint32_t present_count = 0;
  uint64_t offset = 0;  // computed by DecodeSegmentFooter
};

struct FooterEventName {
  std::string name;
  uint64_t row_count = 0;
};

struct FooterColumn {
  std::string key;
  uint64_t row_count = 0;  // rows with the key present (null included)
  uint8_t tag_mask = 0;    // TagBit of every tag the column holds
  StringEncoding encoding = StringEncoding::kNone;
  uint32_t dictionary_size = 0;  // kDictionary only
  ChunkRef dictionary;           // kDictionary only
};

struct FooterMapKey {
  std::string key;
  uint64_t row_count = 0;
  uint8_t tag_mask = 0;
};

// Rows of a block stored under another subject than the block's subject
// column says: rows [row_begin, row_begin + row_count) of the block were sent
// under `subject` and are kept under its person (a folded segment,
// docs/formats/segment.md, "Folded persons").
struct StoredSubjectRun {
  uint32_t row_begin = 0;
  uint32_t row_count = 0;
  Id128 subject;
  friend bool operator==(const StoredSubjectRun&, const StoredSubjectRun&) = default;
};

struct FooterBlock {
  uint32_t row_count = 0;
  int64_t time_min_ms = 0;
  int64_t time_max_ms = 0;
  Id128 subject_first;
  Id128 subject_last;
  uint32_t subject_run_count = 0;
  std::string name_bitmap;  // bit `code` set when the block holds that event name
  // kFixedColumnCount fixed columns, one per property column, then the map.
  std::vector<ChunkRef> chunks;
  // Version 4: the rows' policy versions, stored after the map chunk (kept
  // out of `chunks` so that the map stays its last entry). Files of earlier
  // versions have none (SegmentFooter::has_policy_versions).
  ChunkRef policy_versions;
  // Version 2: the rows whose stored subject differs from their subject, in
  // row order, not overlapping. Empty in unfolded segments.
  std::vector<StoredSubjectRun> stored_runs;
  uint64_t first_row = 0;  // computed by DecodeSegmentFooter
};

struct SegmentFooter {
  uint32_t project_id = 0;
  uint64_t row_count = 0;
  uint64_t subject_count = 0;
  int64_t time_min_ms = 0;
  int64_t time_max_ms = 0;
  Id128 subject_min;
  Id128 subject_max;
  uint32_t block_rows_max = 0;
  std::vector<FooterEventName> event_names;  // sorted by name; code = index
  std::vector<FooterColumn> columns;         // sorted by key
  std::vector<FooterMapKey> map_keys;        // sorted by key; code = index
  std::vector<FooterBlock> blocks;
  // Version 2: the generation of the subject -> person map the rows were
  // folded with (0: never folded; docs/formats/segment.md, "Folded persons").
  uint64_t fold_generation = 0;
  // Version 4: every block has a policy_versions chunk. False when decoded
  // from an older file, whose rows' policy versions are unknown.
  bool has_policy_versions = true;
};

struct SegmentTrailer {
  uint64_t footer_bytes = 0;
  uint32_t footer_crc32 = 0;
  uint32_t format_version = kSegmentFormatVersion;
};

std::string EncodeSegmentHeader();
// Checks magic, checksum and version; `bytes` holds exactly kSegmentHeaderBytes.
Result<uint32_t> DecodeSegmentHeader(std::string_view bytes);
std::string EncodeSegmentTrailer(const SegmentTrailer& trailer);
// Checks magic and version; `bytes` holds exactly kSegmentTrailerBytes.
Result<SegmentTrailer> DecodeSegmentTrailer(std::string_view bytes);

void EncodeSegmentFooter(const SegmentFooter& footer, std::string* out);
// Decodes and validates the footer: counts within limits, names and keys
// sorted and unique, block rows and zone maps consistent with the segment's,
// and chunks that tile exactly `data_bytes` bytes starting at
// kSegmentHeaderBytes (their offsets are filled in).
// `version` is the file's (a version 1 footer has no fold section).
Result<SegmentFooter> DecodeSegmentFooter(std::string_view bytes, uint64_t data_bytes,
                                          uint32_t version = kSegmentFormatVersion);

// Code width in bytes for a dictionary of `size` entries: 1, 2 or 4.
size_t CodeWidth(size_t size);

// Granules (docs/formats/segment.md, "Granules"): a property or map chunk
// cut into row ranges that are compressed one by one, so that a read of a
// few rows (the export of some subjects) decompresses only the granules
// holding them.

// The writer's granule size: a granule closes at the first subject run end
// at or after this many rows. Measured in docs/benchmarks.md ("Granules").
inline constexpr uint32_t kGranuleRowsDefault = 1024;
// With granule_ratio_min R > 0 the writer cuts a chunk into granules only
// when, compressed whole, it takes at most 1/R of its raw bytes: the granules
// of a chunk that compresses little (country codes, prices, durations, URLs)
// each need codec tables of their own, so a scan reading all of them pays
// about what the export saves by reading one. The default, 0, cuts every
// chunk: measured end to end at 100M (docs/benchmarks.md, "Granules
// everywhere, or only where they compress well"), R = 7 took 23 ms off the
// unique count by country (248 -> 225 ms) and put 470 ms on the export of
// 1,000 users (758 -> 1,228 ms), so granules stay everywhere.
// SegmentWriteOptions::granule_ratio_min.
inline constexpr double kGranuleRatioMinDefault = 0;

// One entry of a granular chunk's directory; `offset` (into the chunk's
// stored bytes) and `row_begin` are computed by DecodeGranuleDirectory.
struct GranuleRef {
  uint32_t row_begin = 0;
  uint32_t row_count = 0;
  uint32_t present_count = 0;  // as ChunkRef's, for the granule's rows
  SegmentCodec codec = SegmentCodec::kNone;
  uint64_t stored_bytes = 0;
  uint64_t raw_bytes = 0;
  uint64_t offset = 0;
};

// The decoded bytes of rows [row_begin, row_begin + row_count) of a chunk,
// encoded as a chunk of that many rows (what the decoders below take). A
// chunk that is not granular is one granule of all the block's rows.
struct ChunkGranule {
  uint32_t row_begin = 0;
  uint32_t row_count = 0;
  uint32_t present_count = 0;
  std::string_view raw;
};

// The ends (exclusive rows) of a block's granules: each closes at the end
// of the first subject run that brings it to `granule_rows` rows or more
// (the last at the block's end), so that a subject's rows share a granule
// unless its run alone is that long. `run_lengths` sum to the block's rows.
// granule_rows 0: one granule.
void ChooseGranuleEnds(std::span<const uint32_t> run_lengths, uint32_t granule_rows,
                       std::vector<uint32_t>* ends);

// Cuts a property column chunk's raw bytes (as EncodePropertyColumn writes
// them for `rows` rows) into those of the row ranges ending at `ends`
// (ascending, the last = rows): each exactly what EncodePropertyColumn
// writes for those rows alone, or empty when none of them has the key.
// `present_counts` gets each range's rows with the key. Corruption on bytes
// that do not decode (the writer's own bytes: a bug).
Status SplitPropertyColumn(std::string_view raw, size_t rows, StringEncoding encoding,
                           size_t dictionary_size, std::span<const uint32_t> ends,
                           std::vector<std::string>* granules,
                           std::vector<uint32_t>* present_counts);
// The same for a map chunk (EncodeMapColumn's bytes); `entry_counts` gets
// each range's entries.
Status SplitMapColumn(std::string_view raw, size_t rows, size_t key_count,
                      std::span<const uint32_t> ends, std::vector<std::string>* granules,
                      std::vector<uint32_t>* entry_counts);

// Reads the directory of a granular chunk whose `stored` bytes (checksum
// already checked) belong to a block of `rows` rows: the granules' rows add
// up to `rows`, their present counts to ref.present_count, their raw bytes
// to ref.raw_bytes, and their stored bytes tile the rest of the chunk.
Status DecodeGranuleDirectory(std::string_view stored, const ChunkRef& ref, size_t rows,
                              std::vector<GranuleRef>* granules);
// Decompresses one granule of `stored` (its chunk's bytes) into `out`
// (granule.raw_bytes bytes).
Status DecompressGranule(std::string_view stored, const GranuleRef& granule, char* out);

// Byte helpers shared by the segment files.

// (PutFixed32/64, GetFixed32/64, PutVarint64, PutId, ZigZagEncode/Decode:
// store/bytes.h, shared with the write-ahead log.)

// A bounds-checked cursor over untrusted bytes. Each Read returns Corruption
// naming `field` when the bytes run out or the value is malformed.
class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}
  Status ReadByte(std::string_view field, uint8_t* value);
  Status ReadFixed32(std::string_view field, uint32_t* value);
  Status ReadFixed64(std::string_view field, uint64_t* value);
  Status ReadVarint64(std::string_view field, uint64_t* value);
  // ReadVarint64 for hot loops: false, with the position unchanged, exactly
  // where ReadVarint64 would fail (call it then for the error). Inline, and
  // builds no Status: per-row column decoders spend most of their time here.
  bool TryReadVarint64(uint64_t* value) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(bytes_.data()) + position_;
    const size_t left = bytes_.size() - position_;
    if (left >= 8) {
      // Without a branch per byte: varint lengths vary from row to row, and
      // a mispredicted branch costs more than this whole decode. Find the
      // first byte without the continuation bit, keep the bytes up to it,
      // and squeeze out the continuation bits (8 x 7 bits -> 56 bits).
      uint64_t word = 0;
      std::memcpy(&word, bytes, 8);
      word = le64toh(word);
      const uint64_t stops = ~word & 0x8080808080808080ULL;
      if (stops != 0) {
        const int bits = std::countr_zero(stops) + 1;  // 8, 16, ..., 64
        word &= ~uint64_t{0} >> (64 - bits);
        word = (word & 0x007F007F007F007FULL) | ((word & 0x7F007F007F007F00ULL) >> 1);
        word = (word & 0x00003FFF00003FFFULL) | ((word & 0x3FFF00003FFF0000ULL) >> 2);
        word = (word & 0x000000000FFFFFFFULL) | ((word & 0x0FFFFFFF00000000ULL) >> 4);
        *value = word;
        position_ += static_cast<size_t>(bits / 8);
        return true;
      }
    }
    uint64_t result = 0;
    const size_t limit = left < kVarint64BytesMax ? left : kVarint64BytesMax;
    for (size_t byte_idx = 0; byte_idx < limit; ++byte_idx) {
      const uint64_t byte = bytes[byte_idx];
      if (byte_idx == kVarint64BytesMax - 1 && byte > 1) {
        return false;  // overflows 64 bits
      }
      result |= (byte & 0x7F) << (7 * byte_idx);
      if (byte < 0x80) {
        *value = result;
        position_ += byte_idx + 1;
        return true;
      }
    }
    return false;  // cut short, or over 10 bytes
  }
  Status ReadVarint32(std::string_view field, uint32_t* value);
  Status ReadZigZag(std::string_view field, int64_t* value);
  Status ReadId(std::string_view field, Id128* id);
  Status ReadBytes(std::string_view field, size_t length, std::string_view* bytes);
  Status ReadString(std::string_view field, std::string_view* text);
  // Reads a count and checks that the remaining bytes could hold `count`
  // items of at least `item_bytes_min` bytes each, and that it is <= `max`.
  Status ReadCount(std::string_view field, size_t item_bytes_min, uint64_t max, uint64_t* count);
  // Steps over the zero bytes that come next, at most `max` of them, and
  // says how many: a run of varints 0 (a map chunk's rows without entries)
  // read eight bytes at a time.
  size_t SkipZeroBytes(size_t max) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(bytes_.data()) + position_;
    const size_t limit = std::min(max, bytes_.size() - position_);
    size_t skipped = 0;
    while (limit - skipped >= 8) {
      uint64_t word = 0;
      std::memcpy(&word, bytes + skipped, 8);
      if (word != 0) {
        skipped += static_cast<size_t>(std::countr_zero(le64toh(word)) / 8);
        position_ += skipped;
        return skipped;
      }
      skipped += 8;
    }
    while (skipped < limit && bytes[skipped] == 0) {
      ++skipped;
    }
    position_ += skipped;
    return skipped;
  }
  size_t position() const { return position_; }
  size_t remaining() const { return bytes_.size() - position_; }
  bool empty() const { return position_ == bytes_.size(); }
  std::string_view bytes() const { return bytes_; }
  // Corruption unless every byte was consumed.
  Status ExpectEnd(std::string_view what) const;

 private:
  std::string_view bytes_;
  size_t position_ = 0;
};

// Chunk encodings; `rows` is the row count of the block.

// Times, in one of two encodings, fixed by the file's version and the
// block's zone map (TimeEncodingOf), so that nothing in the chunk says which:
// - kZigZagDeltas: zigzag varint deltas, the first against `time_min_ms`
//   (every block of versions 1 and 2; a version 3 block spanning 2^32 ms or
//   more);
// - kPackedOffsets: `time - time_min_ms` of each row in PackedTimeBits bits,
//   row 0 in the lowest bits of byte 0 (any row readable alone:
//   DecodeTimesOfRows).
enum class TimeEncoding : uint8_t { kZigZagDeltas, kPackedOffsets };
TimeEncoding TimeEncodingOf(uint32_t version, int64_t time_min_ms, int64_t time_max_ms);
// The bits of one packed offset: bit_width(time_max_ms - time_min_ms), 0 when
// every row has the same time.
uint32_t PackedTimeBits(int64_t time_min_ms, int64_t time_max_ms);
void EncodeTimes(std::span<const int64_t> times, int64_t time_min_ms, int64_t time_max_ms,
                 TimeEncoding encoding, std::string* raw);
// Also checks that the block's minimum and maximum are exactly the zone map's.
Status DecodeTimes(std::string_view raw, size_t rows, int64_t time_min_ms, int64_t time_max_ms,
                   TimeEncoding encoding, std::vector<int64_t>* times);
// The times of the rows `selected` only (ascending, each < `rows`): entry i
// is row selected[i]'s. Packed offsets are read row by row, so this costs
// the selected rows, not the block; deltas depend on the row before, so
// they are decoded whole (DecodeTimes) and the selected rows picked. Checks
// the chunk's size and that every time read lies in the zone map; unlike
// DecodeTimes it cannot check that the zone map's minimum and maximum occur
// among rows it does not read.
Status DecodeTimesOfRows(std::string_view raw, size_t rows, int64_t time_min_ms,
                         int64_t time_max_ms, TimeEncoding encoding,
                         std::span<const uint32_t> selected, std::vector<int64_t>* times);

// Subjects: run count, the ids (strictly increasing), the run lengths.
void EncodeSubjects(std::span<const Id128> subjects, std::span<const uint32_t> run_lengths,
                    std::string* raw);
Status DecodeSubjects(std::string_view raw, const FooterBlock& block, std::vector<Id128>* subjects,
                      std::vector<uint32_t>* run_lengths);

void EncodeInsertIds(std::span<const Id128> ids, std::string* raw);
Status DecodeInsertIds(std::string_view raw, size_t rows, std::vector<Id128>* ids);

// Key versions: run count, then (version, run length) pairs.
void EncodeKeyVersions(std::span<const uint32_t> versions, std::string* raw);
Status DecodeKeyVersions(std::string_view raw, size_t rows, std::vector<uint32_t>* versions);

// Policy versions (version 4, a chunk after the block's map chunk): the same
// runs. A block is one run when one policy was in force over its rows.
void EncodePolicyVersions(std::span<const uint32_t> versions, std::string* raw);
Status DecodePolicyVersions(std::string_view raw, size_t rows, std::vector<uint32_t>* versions);

// Event names: fixed-width codes (CodeWidth of the dictionary size).
void EncodeNameCodes(std::span<const uint32_t> codes, size_t dictionary_size, std::string* raw);
// Also checks the codes against the block's name bitmap (exactly equal).
Status DecodeNameCodes(std::string_view raw, size_t rows, size_t dictionary_size,
                       std::string_view name_bitmap, std::vector<uint32_t>* codes);

// The rows of each name code in a name chunk (counts has dictionary_size
// entries), with the checks of DecodeNameCodes.
Status CountNameCodes(std::string_view raw, size_t rows, size_t dictionary_size,
                      std::string_view name_bitmap, std::vector<uint64_t>* counts);
// A sorted, unique list of strings: count, lengths, bytes.
void EncodeDictionary(std::span<const std::string_view> entries, std::string* raw);
// `entries` point into `raw`.
Status DecodeDictionary(std::string_view raw, size_t size, std::vector<std::string_view>* entries);

// One property column of one block as the encoder sees it: a value per row
// (nullptr when absent) and, for dictionary columns, a code per string and
// per list item, in row order.
struct PropertyColumnInput {
  std::span<const Value* const> values;
  StringEncoding encoding = StringEncoding::kNone;
  size_t dictionary_size = 0;
  std::span<const uint32_t> string_codes;  // kDictionary: every string, then
  std::span<const uint32_t> list_codes;    // every list item, in row order
};
void EncodePropertyColumn(const PropertyColumnInput& input, std::string* raw);

// A decoded property column; see PropertyColumn in segment.h for the meaning
// of each array. String views point into `raw` or `dictionary`.
struct PropertyColumnOutput {
  std::vector<PropertyTag>* tags;
  std::vector<int64_t>* ints;
  std::vector<double>* doubles;
  // nullptr: a dictionary column's strings as codes only (DecodePropertyColumn
  // of a dictionary column; never for plain strings).
  std::vector<std::string_view>* strings;
  std::vector<uint32_t>* string_codes;
  std::vector<uint32_t>* list_offsets;
  std::vector<std::string_view>* list_items;
  std::vector<uint32_t>* list_item_codes;
};
struct PropertyColumnFormat {
  StringEncoding encoding = StringEncoding::kNone;
  uint8_t tag_mask = 0;
  std::span<const std::string_view> dictionary;  // kDictionary only
  uint32_t present_count = 0;
};
Status DecodePropertyColumn(std::string_view raw, size_t rows, const PropertyColumnFormat& format,
                            const PropertyColumnOutput& output);
// DecodePropertyColumn for the rows `selected` only (strictly ascending, each
// < rows): row i of the output is row selected[i] of the block. The tags and
// the checks on them are the same; of the values only those of the selected
// rows are decoded (the rest are stepped over: varints read, fixed-width
// values and dictionary codes skipped).
Status DecodePropertyColumnRows(std::string_view raw, size_t rows,
                                const PropertyColumnFormat& format,
                                std::span<const uint32_t> selected,
                                const PropertyColumnOutput& output);
// The same two over a chunk's granules (in row order; format.present_count
// is not used: each granule's is checked). DecodePropertyColumn needs every
// granule of the block; DecodePropertyColumnGranuleRows only those holding a
// selected row (others are ignored), and checks only those.
Status DecodePropertyColumn(std::span<const ChunkGranule> granules, size_t rows,
                            const PropertyColumnFormat& format, const PropertyColumnOutput& output);
Status DecodePropertyColumnGranuleRows(std::span<const ChunkGranule> granules, size_t rows,
                                       const PropertyColumnFormat& format,
                                       std::span<const uint32_t> selected,
                                       const PropertyColumnOutput& output);

// The map column: per row an entry count, then per entry a key code
// (strictly increasing within a row), a tag and the value.
struct MapEntryInput {
  uint32_t key_code = 0;
  const Value* value = nullptr;
};
// `entry_ends[row]` is one past the row's last entry in `entries`.
void EncodeMapColumn(std::span<const MapEntryInput> entries, std::span<const uint32_t> entry_ends,
                     std::string* raw);

// Walks a map chunk; `visit(row, key_code, tag, value_bytes)` gets the
// undecoded value bytes of each entry (see DecodeMapValue).
class MapChunkReader {
 public:
  MapChunkReader(std::string_view raw, size_t rows, size_t key_count)
      : reader_(raw), rows_(rows), key_count_(key_count) {}
  // Reads every row; stops at the first malformed byte. Also checks the
  // total entry count against `entry_count` and each tag against the key's
  // tag mask (`tag_masks` has one per map key).
  template <typename Visit>
  Status ForEach(uint32_t entry_count, std::span<const uint8_t> tag_masks, Visit&& visit);

 private:
  Status ReadRowEntries(uint64_t* entries);
  // Reads one entry whose key code must exceed `previous_code` unless `first`.
  Status ReadEntry(bool first, uint32_t previous_code, uint32_t* key_code, PropertyTag* tag,
                   std::string_view* value_bytes);

  ByteReader reader_;
  size_t rows_;
  size_t key_count_;
};
// Decodes one key's entries of a map chunk into `output`, as
// DecodePropertyColumn does for a column (rows without the key are absent).
Status DecodeMapKey(std::string_view raw, size_t rows, uint32_t entry_count,
                    std::span<const uint8_t> tag_masks, uint32_t key_code,
                    const PropertyColumnOutput& output);
// Decodes every key's entries of the rows `selected` (strictly ascending,
// each < rows) of a map chunk: outputs[key code] gets one row per selected
// row, as DecodeMapKey would give for those rows alone. The whole chunk is
// walked and checked as DecodeMapKey does. `outputs` has one per map key.
Status DecodeMapRows(std::string_view raw, size_t rows, uint32_t entry_count,
                     std::span<const uint8_t> tag_masks, std::span<const uint32_t> selected,
                     std::span<const PropertyColumnOutput> outputs);
// The same two over a map chunk's granules (each granule's present count is
// its entries): DecodeMapKey needs every granule, DecodeMapGranuleRows those
// holding a selected row (others are ignored).
Status DecodeMapKey(std::span<const ChunkGranule> granules, size_t rows,
                    std::span<const uint8_t> tag_masks, uint32_t key_code,
                    const PropertyColumnOutput& output);
Status DecodeMapGranuleRows(std::span<const ChunkGranule> granules, size_t rows,
                            std::span<const uint8_t> tag_masks, std::span<const uint32_t> selected,
                            std::span<const PropertyColumnOutput> outputs);
// Turns the value bytes of a map entry (from MapChunkReader) into a Value.
Status DecodeMapValue(PropertyTag tag, std::string_view value_bytes, Value* value);

// Compression.

// Reusable compression state (a zstd context); one per thread.
class ChunkCompressor {
 public:
  explicit ChunkCompressor(int zstd_level);
  ~ChunkCompressor();
  ChunkCompressor(const ChunkCompressor&) = delete;
  ChunkCompressor& operator=(const ChunkCompressor&) = delete;

  // Compresses `raw` with every codec and keeps the one the rule in
  // docs/formats/segment.md picks (or `forced`, when given); appends the
  // stored bytes to `out` and fills codec, sizes and checksum of `ref`.
  void Compress(std::string_view raw, const SegmentCodec* forced, ChunkRef* ref, std::string* out);
  // Stores a chunk of several granules (`raws[i]`, rows up to ends[i], with
  // present_counts[i]) as one granular chunk: each granule compressed as
  // Compress would (or with `forced`), behind the directory. ref's
  // present_count is set too. With one granule, the same as Compress.
  void CompressGranules(std::span<const std::string> raws, std::span<const uint32_t> ends,
                        std::span<const uint32_t> present_counts, const SegmentCodec* forced,
                        ChunkRef* ref, std::string* out);

 private:
  // The codec the rule picks for `raw` (or `forced`); `*stored` views the
  // bytes to store (raw, or one of the buffers).
  SegmentCodec Choose(std::string_view raw, const SegmentCodec* forced, std::string_view* stored);
  std::string granules_buffer_;

  int zstd_level_;
  void* zstd_context_;  // ZSTD_CCtx, kept out of this header
  std::string lz4_buffer_;
  std::string zstd_buffer_;
};

// Stores one property chunk (`column` set) or map chunk (`column` null) of a
// block of `rows` rows whose granules end at `ends`: as one chunk when there
// is one granule, no row holds a value or, compressed whole, it takes more
// than 1/`granule_ratio_min` of its raw bytes (0: never), else cut
// (SplitPropertyColumn, SplitMapColumn) into a granular chunk. Sets every
// field of `ref`; `present_count` is what `raw` holds (checked against the
// split).
Status CompressPropertyChunk(ChunkCompressor& compressor, std::string_view raw, size_t rows,
                             const FooterColumn* column, size_t map_key_count,
                             std::span<const uint32_t> ends, double granule_ratio_min,
                             uint32_t present_count, const SegmentCodec* forced, ChunkRef* ref,
                             std::string* out);

// Checks the chunk's CRC-32 and decompresses it into `raw` (replacing its
// contents) when the codec is not kNone; otherwise `*view` is `stored`.
// On success `*view` holds exactly ref.raw_bytes bytes.
Status DecompressChunk(std::string_view stored, const ChunkRef& ref, std::string* raw,
                       std::string_view* view);

// Template definitions.

template <typename Visit>
Status MapChunkReader::ForEach(uint32_t entry_count, std::span<const uint8_t> tag_masks,
                               Visit&& visit) {
  if (reader_.bytes().empty()) {
    // An empty chunk is a block where no row has a map entry.
    if (entry_count != 0) {
      return Status::Corruption("empty map chunk, its descriptor says " +
                                std::to_string(entry_count) + " entries");
    }
    return Status::Ok();
  }
  uint64_t entries_seen = 0;
  for (size_t row_idx = 0; row_idx < rows_; ++row_idx) {
    // Most rows have no entry (a map key is in under 1 % of the rows): a
    // run of them is a run of zero bytes.
    row_idx += reader_.SkipZeroBytes(rows_ - row_idx);
    if (row_idx == rows_) {
      break;
    }
    uint64_t row_entries = 0;
    MP_RETURN_IF_ERROR(ReadRowEntries(&row_entries));
    uint32_t key_code = 0;
    for (uint64_t entry_idx = 0; entry_idx < row_entries; ++entry_idx) {
      PropertyTag tag = PropertyTag::kAbsent;
      std::string_view value_bytes;
      MP_RETURN_IF_ERROR(ReadEntry(entry_idx == 0, key_code, &key_code, &tag, &value_bytes));
      if ((tag_masks[key_code] & TagBit(tag)) == 0) {
        return Status::Corruption("map entry tag " + std::string(PropertyTagName(tag)) +
                                  " is not in its key's tag mask");
      }
      visit(row_idx, key_code, tag, value_bytes);
    }
    entries_seen += row_entries;
  }
  MP_RETURN_IF_ERROR(reader_.ExpectEnd("map chunk"));
  if (entries_seen != entry_count) {
    return Status::Corruption("map chunk holds " + std::to_string(entries_seen) +
                              " entries, its descriptor says " + std::to_string(entry_count));
  }
  return Status::Ok();
}

}  // namespace minpanel::store
