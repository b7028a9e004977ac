#include "store/segment_format.h"

#include <endian.h>
#include <lz4.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstring>
#include <memory>
#include <utility>

#include "store/wal_format.h"

namespace minpanel::store {
namespace {

// Compression must save at least 1/32 of a chunk to be worth a decode step;
// lz4 is kept over zstd while it is at most 1/16 larger, since it decodes
// faster. The rule and its measurements: docs/formats/segment.md.
constexpr uint64_t kCompressionSavingsMin = 8;
constexpr uint64_t kLz4SlackFraction = 16;

void PutCode(uint32_t code, size_t width, std::string* out) {
  for (size_t byte_idx = 0; byte_idx < width; ++byte_idx) {
    out->push_back(static_cast<char>(code >> (8 * byte_idx)));
  }
}

uint32_t GetCode(const char* bytes, size_t width) {
  uint32_t code = 0;
  for (size_t byte_idx = 0; byte_idx < width; ++byte_idx) {
    code |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[byte_idx])) << (8 * byte_idx);
  }
  return code;
}

// Bit k set when byte k of the 64 at `bytes` ends a varint (its continuation
// bit is clear): the high bits of each 8 bytes gathered by one multiply (the
// products of distinct bits never overlap, so nothing carries).
uint64_t VarintStops64(const uint8_t* bytes) {
  uint64_t stops = 0;
  for (int word_idx = 0; word_idx < 8; ++word_idx) {
    uint64_t word = 0;
    std::memcpy(&word, bytes + 8 * word_idx, 8);
    const uint64_t high_bits = ~le64toh(word) & 0x8080808080808080ULL;
    stops |= ((high_bits * 0x0002040810204081ULL) >> 56) << (8 * word_idx);
  }
  return stops;
}

// The value of the varint of `length` (1..8) bytes at `bytes`, 8 of which
// may be read: keep its bytes and squeeze out the continuation bits.
uint64_t LoadShortVarint(const uint8_t* bytes, size_t length) {
  uint64_t word = 0;
  std::memcpy(&word, bytes, 8);
  word = le64toh(word) & (~uint64_t{0} >> (64 - 8 * length));
  word = (word & 0x007F007F007F007FULL) | ((word & 0x7F007F007F007F00ULL) >> 1);
  word = (word & 0x00003FFF00003FFFULL) | ((word & 0x3FFF00003FFF0000ULL) >> 2);
  return (word & 0x000000000FFFFFFFULL) | ((word & 0x0FFFFFFF00000000ULL) >> 4);
}

// Decodes up to `count` varints from bytes[*position...], calling
// sink(index, value) for each, and returns how many; *position moves past
// them. Stops early, for the caller's checked loop to finish, near the end of
// the bytes or at a varint over 8 bytes. Why: decoding varints one after the
// other is a chain (where a value starts depends on the previous length);
// here the starts come from a mask of the stop bits of 64 bytes at a time,
// so the values decode independently and the CPU overlaps them.
template <typename Sink>
size_t DecodeVarintsBulk(std::string_view bytes, size_t count, size_t* position, Sink&& sink) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t decoded = 0;
  size_t start = *position;
  // Every value is read with an 8-byte load at its start, at most at the
  // window's last byte: keep 64 + 8 bytes ahead.
  for (size_t base = start; decoded < count && base + 72 <= bytes.size(); base += 64) {
    uint64_t stops = VarintStops64(data + base);
    while (stops != 0 && decoded < count) {
      const size_t end = base + static_cast<size_t>(std::countr_zero(stops));
      stops &= stops - 1;
      if (end - start >= 8) {
        *position = start;
        return decoded;
      }
      sink(decoded++, LoadShortVarint(data + start, end - start + 1));
      start = end + 1;
    }
  }
  *position = start;
  return decoded;
}

// The error ReadVarint64 gives where TryReadVarint64 failed.
Status VarintError(ByteReader* reader, std::string_view field) {
  uint64_t value = 0;
  const Status status = reader->ReadVarint64(field, &value);
  return status.ok() ? Status::Corruption(std::string(field) + " does not decode") : status;
}

Status CheckVersion(uint32_t version, std::string_view where) {
  // Every version up to the newest is read (version 1 has no fold section).
  if (version == 0 || version > kSegmentFormatVersion) {
    return Status::Corruption("segment format version " + std::to_string(version) + " (" +
                              std::string(where) + ") is not supported by this binary (newest " +
                              "known: " + std::to_string(kSegmentFormatVersion) + ")");
  }
  return Status::Ok();
}

void PutChunkRef(const ChunkRef& ref, bool with_present_count, std::string* out) {
  out->push_back(static_cast<char>(ref.codec));
  PutVarint64(ref.stored_bytes, out);
  PutVarint64(ref.raw_bytes, out);
  PutFixed32(ref.crc32, out);
  if (with_present_count) {
    PutVarint64(ref.present_count, out);
  }
}

// Reads a chunk descriptor; `present_max` bounds its present count (zero for
// chunks that have none).
// `granules_allowed`: a property or map chunk of a version 5 file.
Status ReadChunkRef(ByteReader* reader, uint64_t present_max, bool with_present_count,
                    ChunkRef* ref, bool granules_allowed = false) {
  uint8_t codec = 0;
  MP_RETURN_IF_ERROR(reader->ReadByte("chunk codec", &codec));
  const uint8_t codec_max =
      static_cast<uint8_t>(granules_allowed ? SegmentCodec::kGranules : SegmentCodec::kZstd);
  if (codec > codec_max) {
    return Status::Corruption("chunk codec " + std::to_string(codec) + " is unknown");
  }
  ref->codec = static_cast<SegmentCodec>(codec);
  MP_RETURN_IF_ERROR(reader->ReadVarint64("chunk stored bytes", &ref->stored_bytes));
  MP_RETURN_IF_ERROR(reader->ReadVarint64("chunk raw bytes", &ref->raw_bytes));
  MP_RETURN_IF_ERROR(reader->ReadFixed32("chunk checksum", &ref->crc32));
  if (ref->raw_bytes > kSegmentChunkBytesMax) {
    return Status::Corruption("chunk of " + std::to_string(ref->raw_bytes) +
                              " raw bytes is over kSegmentChunkBytesMax");
  }
  if (ref->codec == SegmentCodec::kNone && ref->stored_bytes != ref->raw_bytes) {
    return Status::Corruption("uncompressed chunk stores " + std::to_string(ref->stored_bytes) +
                              " bytes but holds " + std::to_string(ref->raw_bytes));
  }
  if (ref->codec != SegmentCodec::kNone && ref->codec != SegmentCodec::kGranules &&
      (ref->stored_bytes == 0 || ref->raw_bytes == 0)) {
    return Status::Corruption("compressed chunk is empty");
  }
  if (ref->codec == SegmentCodec::kGranules && ref->stored_bytes == 0) {
    return Status::Corruption("granular chunk has no directory");
  }
  ref->present_count = 0;
  if (with_present_count) {
    MP_RETURN_IF_ERROR(reader->ReadVarint32("chunk present count", &ref->present_count));
    if (ref->present_count > present_max) {
      return Status::Corruption("chunk present count " + std::to_string(ref->present_count) +
                                " is over " + std::to_string(present_max));
    }
  }
  return Status::Ok();
}

template <typename Item, typename KeyOf>
Status CheckSortedUnique(const std::vector<Item>& items, KeyOf key_of, std::string_view what) {
  for (size_t item_idx = 1; item_idx < items.size(); ++item_idx) {
    if (!(key_of(items[item_idx - 1]) < key_of(items[item_idx]))) {
      return Status::Corruption(std::string(what) + " are not sorted and unique at index " +
                                std::to_string(item_idx));
    }
  }
  return Status::Ok();
}

bool HasStrings(uint8_t tag_mask) {
  return (tag_mask & (TagBit(PropertyTag::kString) | TagBit(PropertyTag::kList))) != 0;
}

Status CheckTagMask(uint8_t tag_mask) {
  if (tag_mask == 0 || (tag_mask & TagBit(PropertyTag::kAbsent)) != 0) {
    return Status::Corruption("property tag mask " + std::to_string(tag_mask) + " is invalid");
  }
  return Status::Ok();
}

Status ReadFooterNames(ByteReader* reader, SegmentFooter* footer) {
  uint64_t count = 0;
  MP_RETURN_IF_ERROR(reader->ReadCount("event name count", 2, footer->row_count, &count));
  if (count == 0) {
    return Status::Corruption("segment has no event names");
  }
  uint64_t rows = 0;
  for (uint64_t name_idx = 0; name_idx < count; ++name_idx) {
    FooterEventName& name = footer->event_names.emplace_back();
    std::string_view text;
    MP_RETURN_IF_ERROR(reader->ReadString("event name", &text));
    name.name = text;
    MP_RETURN_IF_ERROR(reader->ReadVarint64("event name row count", &name.row_count));
    if (name.row_count == 0 || name.row_count > footer->row_count) {
      return Status::Corruption("event name row count " + std::to_string(name.row_count) +
                                " is out of range");
    }
    rows += name.row_count;
  }
  if (rows != footer->row_count) {
    return Status::Corruption("event name row counts add up to " + std::to_string(rows) +
                              ", not the segment's " + std::to_string(footer->row_count));
  }
  return CheckSortedUnique(
      footer->event_names,
      [](const FooterEventName& name) -> std::string_view { return name.name; }, "event names");
}

Status ReadFooterColumn(ByteReader* reader, uint64_t segment_rows, FooterColumn* column) {
  std::string_view key;
  MP_RETURN_IF_ERROR(reader->ReadString("property column key", &key));
  column->key = key;
  MP_RETURN_IF_ERROR(reader->ReadVarint64("property column row count", &column->row_count));
  if (column->row_count == 0 || column->row_count > segment_rows) {
    return Status::Corruption("property column " + column->key + " row count is out of range");
  }
  MP_RETURN_IF_ERROR(reader->ReadByte("property column tag mask", &column->tag_mask));
  MP_RETURN_IF_ERROR(CheckTagMask(column->tag_mask));
  uint8_t encoding = 0;
  MP_RETURN_IF_ERROR(reader->ReadByte("property column string encoding", &encoding));
  if (encoding > static_cast<uint8_t>(StringEncoding::kPlain)) {
    return Status::Corruption("property column string encoding " + std::to_string(encoding) +
                              " is unknown");
  }
  column->encoding = static_cast<StringEncoding>(encoding);
  if (HasStrings(column->tag_mask) != (column->encoding != StringEncoding::kNone)) {
    return Status::Corruption("property column " + column->key +
                              " string encoding does not match its tags");
  }
  if (column->encoding != StringEncoding::kDictionary) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(reader->ReadVarint32("dictionary size", &column->dictionary_size));
  if (column->dictionary_size == 0) {
    return Status::Corruption("property column " + column->key + " dictionary is empty");
  }
  return ReadChunkRef(reader, 0, false, &column->dictionary);
}

Status ReadFooterColumns(ByteReader* reader, SegmentFooter* footer) {
  uint64_t count = 0;
  MP_RETURN_IF_ERROR(
      reader->ReadCount("property column count", 4, kSegmentPropertyColumnsMax, &count));
  for (uint64_t column_idx = 0; column_idx < count; ++column_idx) {
    MP_RETURN_IF_ERROR(
        ReadFooterColumn(reader, footer->row_count, &footer->columns.emplace_back()));
  }
  return CheckSortedUnique(
      footer->columns, [](const FooterColumn& column) -> std::string_view { return column.key; },
      "property column keys");
}

Status ReadFooterMapKeys(ByteReader* reader, SegmentFooter* footer) {
  uint64_t count = 0;
  MP_RETURN_IF_ERROR(reader->ReadCount("map key count", 3, UINT32_MAX, &count));
  for (uint64_t key_idx = 0; key_idx < count; ++key_idx) {
    FooterMapKey& key = footer->map_keys.emplace_back();
    std::string_view text;
    MP_RETURN_IF_ERROR(reader->ReadString("map key", &text));
    key.key = text;
    MP_RETURN_IF_ERROR(reader->ReadVarint64("map key row count", &key.row_count));
    if (key.row_count == 0 || key.row_count > footer->row_count) {
      return Status::Corruption("map key " + key.key + " row count is out of range");
    }
    MP_RETURN_IF_ERROR(reader->ReadByte("map key tag mask", &key.tag_mask));
    MP_RETURN_IF_ERROR(CheckTagMask(key.tag_mask));
  }
  MP_RETURN_IF_ERROR(CheckSortedUnique(
      footer->map_keys, [](const FooterMapKey& key) -> std::string_view { return key.key; },
      "map keys"));
  // A key has either its own column or map entries, never both.
  for (const FooterColumn& column : footer->columns) {
    const auto found = std::lower_bound(
        footer->map_keys.begin(), footer->map_keys.end(), column.key,
        [](const FooterMapKey& key, const std::string& wanted) { return key.key < wanted; });
    if (found != footer->map_keys.end() && found->key == column.key) {
      return Status::Corruption("key " + column.key + " is both a column and a map key");
    }
  }
  return Status::Ok();
}

Status ReadFooterBlock(ByteReader* reader, const SegmentFooter& footer, uint32_t version,
                       FooterBlock* block) {
  MP_RETURN_IF_ERROR(reader->ReadVarint32("block row count", &block->row_count));
  if (block->row_count == 0 || block->row_count > footer.block_rows_max) {
    return Status::Corruption("block row count " + std::to_string(block->row_count) +
                              " is out of range");
  }
  MP_RETURN_IF_ERROR(reader->ReadZigZag("block minimum time", &block->time_min_ms));
  MP_RETURN_IF_ERROR(reader->ReadZigZag("block maximum time", &block->time_max_ms));
  if (block->time_min_ms > block->time_max_ms || block->time_min_ms < footer.time_min_ms ||
      block->time_max_ms > footer.time_max_ms) {
    return Status::Corruption("block time range is outside the segment's");
  }
  MP_RETURN_IF_ERROR(reader->ReadId("block first subject", &block->subject_first));
  MP_RETURN_IF_ERROR(reader->ReadId("block last subject", &block->subject_last));
  MP_RETURN_IF_ERROR(reader->ReadVarint32("block subject runs", &block->subject_run_count));
  const bool one_subject = block->subject_first == block->subject_last;
  if (block->subject_last < block->subject_first || block->subject_run_count == 0 ||
      block->subject_run_count > block->row_count ||
      (one_subject != (block->subject_run_count == 1))) {
    return Status::Corruption("block subject range is inconsistent");
  }
  std::string_view bitmap;
  const size_t bitmap_bytes = (footer.event_names.size() + 7) / 8;
  MP_RETURN_IF_ERROR(reader->ReadBytes("block name bitmap", bitmap_bytes, &bitmap));
  block->name_bitmap = bitmap;
  const size_t chunk_count = kFixedColumnCount + footer.columns.size() + 1;
  for (size_t chunk_idx = 0; chunk_idx < chunk_count; ++chunk_idx) {
    const bool has_present = chunk_idx >= kFixedColumnCount;
    const bool is_map = chunk_idx == chunk_count - 1;
    const uint64_t present_max =
        is_map ? uint64_t{block->row_count} * std::max<size_t>(footer.map_keys.size(), 1)
               : block->row_count;
    MP_RETURN_IF_ERROR(ReadChunkRef(reader, std::min<uint64_t>(present_max, UINT32_MAX),
                                    has_present, &block->chunks.emplace_back(),
                                    has_present && version >= kSegmentGranulesFormatVersion));
  }
  if (footer.has_policy_versions) {
    MP_RETURN_IF_ERROR(ReadChunkRef(reader, 0, false, &block->policy_versions));
  }
  return Status::Ok();
}

// Checks that the blocks cover the segment's rows, times and subjects.
Status CheckBlocks(const SegmentFooter& footer) {
  uint64_t rows = 0;
  uint64_t subject_runs = 0;
  int64_t time_min = INT64_MAX;
  int64_t time_max = INT64_MIN;
  for (size_t block_idx = 0; block_idx < footer.blocks.size(); ++block_idx) {
    const FooterBlock& block = footer.blocks[block_idx];
    if (block_idx > 0 && block.subject_first < footer.blocks[block_idx - 1].subject_last) {
      return Status::Corruption("block " + std::to_string(block_idx) +
                                " starts before the previous block's last subject");
    }
    rows += block.row_count;
    subject_runs += block.subject_run_count;
    time_min = std::min(time_min, block.time_min_ms);
    time_max = std::max(time_max, block.time_max_ms);
  }
  if (rows != footer.row_count) {
    return Status::Corruption("blocks hold " + std::to_string(rows) + " rows, the segment " +
                              std::to_string(footer.row_count));
  }
  if (time_min != footer.time_min_ms || time_max != footer.time_max_ms) {
    return Status::Corruption("block time ranges do not add up to the segment's");
  }
  if (footer.blocks.front().subject_first != footer.subject_min ||
      footer.blocks.back().subject_last != footer.subject_max) {
    return Status::Corruption("block subjects do not add up to the segment's range");
  }
  if (footer.subject_count > subject_runs) {
    return Status::Corruption("segment subject count is over its blocks' subject runs");
  }
  return Status::Ok();
}

// Checks the name bitmaps against the dictionary and fills in offsets.
Status PlaceChunks(uint64_t data_bytes, SegmentFooter* footer) {
  uint64_t offset = kSegmentHeaderBytes;
  const uint64_t end = kSegmentHeaderBytes + data_bytes;
  auto place = [&](ChunkRef* ref) {
    if (ref->stored_bytes > end - offset) {
      return Status::Corruption("chunks extend past the data region");
    }
    ref->offset = offset;
    offset += ref->stored_bytes;
    return Status::Ok();
  };
  for (FooterColumn& column : footer->columns) {
    if (column.encoding == StringEncoding::kDictionary) {
      MP_RETURN_IF_ERROR(place(&column.dictionary));
    }
  }
  uint64_t first_row = 0;
  const size_t name_count = footer->event_names.size();
  for (FooterBlock& block : footer->blocks) {
    block.first_row = first_row;
    first_row += block.row_count;
    const uint8_t last_byte = static_cast<uint8_t>(block.name_bitmap.back());
    if (name_count % 8 != 0 && (last_byte >> (name_count % 8)) != 0) {
      return Status::Corruption("block name bitmap names a code past the dictionary");
    }
    for (ChunkRef& ref : block.chunks) {
      MP_RETURN_IF_ERROR(place(&ref));
    }
    if (footer->has_policy_versions) {
      MP_RETURN_IF_ERROR(place(&block.policy_versions));
    }
  }
  if (offset != end) {
    return Status::Corruption("chunks cover " + std::to_string(offset - kSegmentHeaderBytes) +
                              " bytes of a data region of " + std::to_string(data_bytes));
  }
  return Status::Ok();
}

Status ReadFooterSummary(ByteReader* reader, SegmentFooter* footer) {
  MP_RETURN_IF_ERROR(reader->ReadVarint32("project id", &footer->project_id));
  MP_RETURN_IF_ERROR(reader->ReadVarint64("row count", &footer->row_count));
  if (footer->row_count == 0 || footer->row_count > kSegmentRowsMax) {
    return Status::Corruption("segment row count " + std::to_string(footer->row_count) +
                              " is out of range");
  }
  MP_RETURN_IF_ERROR(reader->ReadVarint64("subject count", &footer->subject_count));
  if (footer->subject_count == 0 || footer->subject_count > footer->row_count) {
    return Status::Corruption("segment subject count is out of range");
  }
  MP_RETURN_IF_ERROR(reader->ReadZigZag("minimum time", &footer->time_min_ms));
  MP_RETURN_IF_ERROR(reader->ReadZigZag("maximum time", &footer->time_max_ms));
  MP_RETURN_IF_ERROR(reader->ReadId("minimum subject", &footer->subject_min));
  MP_RETURN_IF_ERROR(reader->ReadId("maximum subject", &footer->subject_max));
  if (footer->time_max_ms < footer->time_min_ms || footer->subject_max < footer->subject_min) {
    return Status::Corruption("segment zone map is inverted");
  }
  MP_RETURN_IF_ERROR(reader->ReadVarint32("block rows", &footer->block_rows_max));
  if (footer->block_rows_max == 0 || footer->block_rows_max > kSegmentBlockRowsMax) {
    return Status::Corruption("segment block rows " + std::to_string(footer->block_rows_max) +
                              " is out of range");
  }
  return Status::Ok();
}

// The bytes of data[0, n) equal to `value`. Sixteen one-byte counters,
// emptied every 255 steps, so that the compiler turns the inner loop into a
// vector compare and subtract (with SSE2 alone: about 0.06 ns a byte here,
// against 0.8 for a histogram in memory).
size_t CountEqualBytes(const uint8_t* data, size_t n, uint8_t value) {
  constexpr size_t kLanes = 16;
  constexpr size_t kStepsMax = 255;  // a one-byte counter holds no more
  size_t total = 0;
  size_t byte_idx = 0;
  while (n - byte_idx >= kLanes) {
    const size_t steps = std::min((n - byte_idx) / kLanes, kStepsMax);
    uint8_t lanes[kLanes] = {};
    for (size_t step = 0; step < steps; ++step, byte_idx += kLanes) {
      for (size_t lane = 0; lane < kLanes; ++lane) {
        lanes[lane] += data[byte_idx + lane] == value ? 1 : 0;
      }
    }
    for (const uint8_t lane_count : lanes) {
      total += lane_count;
    }
  }
  for (; byte_idx < n; ++byte_idx) {
    total += data[byte_idx] == value ? 1 : 0;
  }
  return total;
}

// Counts a chunk's per-row tag bytes into `tag_counts`, refusing unknown
// tags (this runs for every row of every column a query reads). A column
// holds the few tags of its `tag_mask` (plus absent): each is counted by
// CountEqualBytes, and when they add up to every row no other byte is
// there. Otherwise four histograms count every byte value (runs of one tag
// would otherwise wait on one counter) and say which is wrong.
Status CountTagBytes(const uint8_t* data, size_t rows, uint8_t tag_mask,
                     size_t (&tag_counts)[kPropertyTagCount]) {
  const uint32_t tags_expected = uint32_t{tag_mask} | 1u;  // absent is always allowed
  size_t counted = 0;
  size_t fast_counts[kPropertyTagCount] = {};
  for (uint8_t tag = 0; tag < kPropertyTagCount; ++tag) {
    if ((tags_expected & (1u << tag)) != 0) {
      fast_counts[tag] = CountEqualBytes(data, rows, tag);
      counted += fast_counts[tag];
    }
  }
  if (counted == rows) {
    std::copy(std::begin(fast_counts), std::end(fast_counts), tag_counts);
    return Status::Ok();
  }
  uint32_t counts[4][256] = {};
  size_t row_idx = 0;
  for (; row_idx + 4 <= rows; row_idx += 4) {
    ++counts[0][data[row_idx]];
    ++counts[1][data[row_idx + 1]];
    ++counts[2][data[row_idx + 2]];
    ++counts[3][data[row_idx + 3]];
  }
  for (; row_idx < rows; ++row_idx) {
    ++counts[0][data[row_idx]];
  }
  for (size_t byte = 0; byte < 256; ++byte) {
    const size_t count =
        size_t{counts[0][byte]} + counts[1][byte] + counts[2][byte] + counts[3][byte];
    if (byte >= kPropertyTagCount && count > 0) {
      return Status::Corruption("property tag " + std::to_string(byte) + " is unknown");
    }
    if (byte < kPropertyTagCount) {
      tag_counts[byte] = count;
    }
  }
  return Status::Ok();
}

// Reads `count` strings in the column's encoding into `views` (and `codes`
// for a dictionary), each at the row `slot_of(item_idx)` names.
template <typename SlotOf>
Status ReadStrings(ByteReader* reader, size_t count, const PropertyColumnFormat& format,
                   SlotOf slot_of, std::vector<std::string_view>* views,
                   std::vector<uint32_t>* codes) {
  if (format.encoding == StringEncoding::kDictionary) {
    const size_t width = CodeWidth(format.dictionary.size());
    std::string_view bytes;
    if (count > reader->remaining() / width) {
      return Status::Corruption("string codes run past the chunk");
    }
    MP_RETURN_IF_ERROR(reader->ReadBytes("string codes", count * width, &bytes));
    // The codes first, at a width known to the compiler and checked once
    // (the loop has no branch), then the views: a dictionary column is read
    // for every row of a block, so this loop is a query's hot path.
    auto read_codes = [&]<size_t kWidth>() {
      uint32_t code_max = 0;
      if constexpr (kWidth == 1) {
        // One-byte codes (a dictionary of up to 256 strings: country,
        // platform, plan, ...) have their maximum taken over the bytes, 16
        // at a time, apart from the widening copy: a 32-bit maximum per row
        // has no SSE2 instruction and was most of this loop.
        const auto* code_bytes = reinterpret_cast<const uint8_t*>(bytes.data());
        uint8_t byte_max = 0;
        for (size_t item_idx = 0; item_idx < count; ++item_idx) {
          byte_max = std::max(byte_max, code_bytes[item_idx]);
        }
        for (size_t item_idx = 0; item_idx < count; ++item_idx) {
          (*codes)[slot_of(item_idx)] = code_bytes[item_idx];
        }
        return uint32_t{byte_max};
      }
      for (size_t item_idx = 0; item_idx < count; ++item_idx) {
        const uint32_t code = GetCode(bytes.data() + item_idx * kWidth, kWidth);
        code_max = std::max(code_max, code);
        (*codes)[slot_of(item_idx)] = code;
      }
      return code_max;
    };
    const uint32_t code_max = width == 1   ? read_codes.template operator()<1>()
                              : width == 2 ? read_codes.template operator()<2>()
                                           : read_codes.template operator()<4>();
    if (count > 0 && code_max >= format.dictionary.size()) {
      return Status::Corruption("string code " + std::to_string(code_max) +
                                " is past the dictionary");
    }
    if (views == nullptr) {  // the caller reads the codes only
      return Status::Ok();
    }
    for (size_t item_idx = 0; item_idx < count; ++item_idx) {
      const size_t slot = slot_of(item_idx);
      (*views)[slot] = format.dictionary[(*codes)[slot]];
    }
    return Status::Ok();
  }
  assert(views != nullptr);
  // Plain: the lengths first, then the bytes. Every length takes a byte, so
  // the count bounds the allocation.
  if (count > reader->remaining()) {
    return Status::Corruption("string lengths run past the chunk");
  }
  std::vector<uint32_t> lengths(count);
  uint64_t total = 0;
  for (uint32_t& length : lengths) {
    uint64_t wide = 0;
    if (!reader->TryReadVarint64(&wide)) {
      return VarintError(reader, "string length");
    }
    if (wide > UINT32_MAX) {
      return Status::Corruption("string length is over 32 bits");
    }
    length = static_cast<uint32_t>(wide);
    total += length;
    if (total > reader->remaining()) {
      return Status::Corruption("string bytes run past the chunk");
    }
  }
  std::string_view bytes;
  MP_RETURN_IF_ERROR(reader->ReadBytes("string bytes", static_cast<size_t>(total), &bytes));
  size_t position = 0;
  for (size_t item_idx = 0; item_idx < count; ++item_idx) {
    (*views)[slot_of(item_idx)] = bytes.substr(position, lengths[item_idx]);
    position += lengths[item_idx];
  }
  return Status::Ok();
}

// Sizes each output array for the tags the block holds (empty otherwise).
void SizeOutputs(size_t rows, const size_t (&tag_counts)[kPropertyTagCount], bool dictionary,
                 const PropertyColumnOutput& output) {
  const size_t string_count = tag_counts[static_cast<size_t>(PropertyTag::kString)];
  const bool lists = tag_counts[static_cast<size_t>(PropertyTag::kList)] > 0;
  output.ints->assign(tag_counts[static_cast<size_t>(PropertyTag::kInt)] > 0 ? rows : 0, 0);
  output.doubles->assign(tag_counts[static_cast<size_t>(PropertyTag::kDouble)] > 0 ? rows : 0, 0.0);
  if (string_count == rows) {
    // Every row gets a string: no slot keeps its default, so skip filling.
    if (output.strings != nullptr) {
      output.strings->resize(rows);
    }
    output.string_codes->resize(dictionary ? rows : 0);
  } else {
    if (output.strings != nullptr) {
      output.strings->assign(string_count > 0 ? rows : 0, std::string_view());
    }
    output.string_codes->assign(string_count > 0 && dictionary ? rows : 0, 0);
  }
  output.list_offsets->assign(lists ? rows + 1 : 0, 0);
  output.list_items->clear();
  output.list_item_codes->clear();
}

// The ints and doubles of one granule, whose tags are `tags` (output rows
// from `row_offset`).
Status ReadNumbers(ByteReader* reader, std::span<const PropertyTag> tags, size_t row_offset,
                   const PropertyColumnOutput& output) {
  for (size_t row_idx = 0; row_idx < tags.size(); ++row_idx) {
    if (tags[row_idx] == PropertyTag::kInt) {
      uint64_t bits = 0;
      if (!reader->TryReadVarint64(&bits)) {
        return VarintError(reader, "int value");
      }
      (*output.ints)[row_offset + row_idx] = ZigZagDecode(bits);
    }
  }
  for (size_t row_idx = 0; row_idx < tags.size(); ++row_idx) {
    if (tags[row_idx] == PropertyTag::kDouble) {
      uint64_t bits = 0;
      MP_RETURN_IF_ERROR(reader->ReadFixed64("double value", &bits));
      (*output.doubles)[row_offset + row_idx] = std::bit_cast<double>(bits);
    }
  }
  return Status::Ok();
}

// The list section of one granule (`list_count` lists, tags `tags`, output
// rows from `row_offset`), its items appended after the `*items_total`
// items of the granules before; sets the offsets of its rows. A column
// without lists (no offsets) has nothing to do.
Status ReadLists(ByteReader* reader, std::span<const PropertyTag> tags, size_t row_offset,
                 size_t list_count, const PropertyColumnFormat& format,
                 const PropertyColumnOutput& output, uint64_t* items_total) {
  std::vector<uint32_t>& offsets = *output.list_offsets;
  if (offsets.empty()) {
    return Status::Ok();
  }
  const uint64_t base = *items_total;
  uint64_t items = base;
  for (size_t row_idx = 0; row_idx < tags.size(); ++row_idx) {
    offsets[row_offset + row_idx] = static_cast<uint32_t>(items);
    if (list_count > 0 && tags[row_idx] == PropertyTag::kList) {
      uint64_t count = 0;
      MP_RETURN_IF_ERROR(reader->ReadVarint64("list item count", &count));
      items += count;
      // Every item takes at least one byte, so this bounds the allocation.
      if (items - base > reader->remaining()) {
        return Status::Corruption("list items run past the chunk");
      }
    }
  }
  *items_total = items;
  if (items == base) {
    return Status::Ok();
  }
  output.list_items->resize(static_cast<size_t>(items));
  if (format.encoding == StringEncoding::kDictionary) {
    output.list_item_codes->resize(static_cast<size_t>(items));
  }
  return ReadStrings(
      reader, static_cast<size_t>(items - base), format,
      [base](size_t item_idx) { return static_cast<size_t>(base) + item_idx; }, output.list_items,
      output.list_item_codes);
}

Status CheckTagCounts(const size_t (&tag_counts)[kPropertyTagCount], size_t rows,
                      const PropertyColumnFormat& format) {
  for (uint8_t tag = 1; tag < kPropertyTagCount; ++tag) {
    if (tag_counts[tag] > 0 && (format.tag_mask & (uint8_t{1} << tag)) == 0) {
      return Status::Corruption("property tag " +
                                std::string(PropertyTagName(static_cast<PropertyTag>(tag))) +
                                " is not in the column's tag mask");
    }
  }
  if (rows - tag_counts[0] != format.present_count) {
    return Status::Corruption("property chunk holds " + std::to_string(rows - tag_counts[0]) +
                              " present rows, its descriptor says " +
                              std::to_string(format.present_count));
  }
  return Status::Ok();
}

void PutMapValue(const Value& value, std::string* out) {
  switch (value.type()) {
    case Value::Type::kNull:
    case Value::Type::kBool:
      return;
    case Value::Type::kInt:
      PutVarint64(ZigZagEncode(value.as_int()), out);
      return;
    case Value::Type::kDouble:
      PutFixed64(std::bit_cast<uint64_t>(value.as_double()), out);
      return;
    case Value::Type::kString:
      PutVarint64(value.as_string().size(), out);
      out->append(value.as_string());
      return;
    case Value::Type::kList:
      PutVarint64(value.as_list().size(), out);
      for (const std::string& item : value.as_list()) {
        PutVarint64(item.size(), out);
        out->append(item);
      }
      return;
  }
}

// Reads one map value's bytes without decoding them.
Status SkipMapValue(ByteReader* reader, PropertyTag tag) {
  std::string_view ignored;
  uint64_t number = 0;
  switch (tag) {
    case PropertyTag::kNull:
    case PropertyTag::kFalse:
    case PropertyTag::kTrue:
      return Status::Ok();
    case PropertyTag::kInt:
      return reader->ReadVarint64("map int value", &number);
    case PropertyTag::kDouble:
      return reader->ReadFixed64("map double value", &number);
    case PropertyTag::kString:
      return reader->ReadString("map string value", &ignored);
    case PropertyTag::kList: {
      uint64_t count = 0;
      MP_RETURN_IF_ERROR(reader->ReadCount("map list length", 1, UINT32_MAX, &count));
      for (uint64_t item_idx = 0; item_idx < count; ++item_idx) {
        MP_RETURN_IF_ERROR(reader->ReadString("map list item", &ignored));
      }
      return Status::Ok();
    }
    case PropertyTag::kAbsent:
      break;
  }
  return Status::Corruption("map entry tag is absent");
}

}  // namespace

std::string_view SegmentCodecName(SegmentCodec codec) {
  switch (codec) {
    case SegmentCodec::kNone:
      return "none";
    case SegmentCodec::kLz4:
      return "lz4";
    case SegmentCodec::kZstd:
      return "zstd";
    case SegmentCodec::kGranules:
      return "granules";
  }
  return "unknown";
}

PropertyTag TagOf(const Value& value) {
  switch (value.type()) {
    case Value::Type::kNull:
      return PropertyTag::kNull;
    case Value::Type::kBool:
      return value.as_bool() ? PropertyTag::kTrue : PropertyTag::kFalse;
    case Value::Type::kInt:
      return PropertyTag::kInt;
    case Value::Type::kDouble:
      return PropertyTag::kDouble;
    case Value::Type::kString:
      return PropertyTag::kString;
    case Value::Type::kList:
      return PropertyTag::kList;
  }
  return PropertyTag::kNull;
}

std::string_view PropertyTagName(PropertyTag tag) {
  static constexpr std::array<std::string_view, kPropertyTagCount> kNames = {
      "absent", "null", "false", "true", "int", "double", "string", "list"};
  const auto index = static_cast<size_t>(tag);
  return index < kNames.size() ? kNames[index] : "unknown";
}

std::string_view FixedColumnName(FixedColumn column) {
  static constexpr std::array<std::string_view, kFixedColumnCount> kNames = {
      "time", "subject", "insert_id", "key_version", "name"};
  return kNames[static_cast<size_t>(column)];
}

size_t CodeWidth(size_t size) {
  if (size <= (1u << 8)) {
    return 1;
  }
  return size <= (1u << 16) ? 2 : 4;
}

Status ByteReader::ReadByte(std::string_view field, uint8_t* value) {
  if (remaining() < 1) {
    return Status::Corruption(std::string(field) + " is cut short");
  }
  *value = static_cast<uint8_t>(bytes_[position_++]);
  return Status::Ok();
}

Status ByteReader::ReadFixed32(std::string_view field, uint32_t* value) {
  if (remaining() < 4) {
    return Status::Corruption(std::string(field) + " is cut short");
  }
  *value = GetFixed32(bytes_.data() + position_);
  position_ += 4;
  return Status::Ok();
}

Status ByteReader::ReadFixed64(std::string_view field, uint64_t* value) {
  if (remaining() < 8) {
    return Status::Corruption(std::string(field) + " is cut short");
  }
  *value = GetFixed64(bytes_.data() + position_);
  position_ += 8;
  return Status::Ok();
}

Status ByteReader::ReadVarint64(std::string_view field, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (position_ == bytes_.size()) {
      return Status::Corruption(std::string(field) + " is cut short");
    }
    const uint8_t byte = static_cast<uint8_t>(bytes_[position_++]);
    if (shift == 63 && byte > 1) {
      return Status::Corruption(std::string(field) + " overflows 64 bits");
    }
    result |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return Status::Ok();
    }
  }
  return Status::Corruption(std::string(field) + " is a varint over 10 bytes");
}

Status ByteReader::ReadVarint32(std::string_view field, uint32_t* value) {
  uint64_t wide = 0;
  MP_RETURN_IF_ERROR(ReadVarint64(field, &wide));
  if (wide > UINT32_MAX) {
    return Status::Corruption(std::string(field) + " is over 32 bits");
  }
  *value = static_cast<uint32_t>(wide);
  return Status::Ok();
}

Status ByteReader::ReadZigZag(std::string_view field, int64_t* value) {
  uint64_t bits = 0;
  MP_RETURN_IF_ERROR(ReadVarint64(field, &bits));
  *value = ZigZagDecode(bits);
  return Status::Ok();
}

Status ByteReader::ReadId(std::string_view field, Id128* id) {
  MP_RETURN_IF_ERROR(ReadFixed64(field, &id->high));
  return ReadFixed64(field, &id->low);
}

Status ByteReader::ReadBytes(std::string_view field, size_t length, std::string_view* bytes) {
  if (length > remaining()) {
    return Status::Corruption(std::string(field) + " is cut short");
  }
  *bytes = bytes_.substr(position_, length);
  position_ += length;
  return Status::Ok();
}

Status ByteReader::ReadString(std::string_view field, std::string_view* text) {
  uint64_t length = 0;
  MP_RETURN_IF_ERROR(ReadVarint64(field, &length));
  if (length > remaining()) {
    return Status::Corruption(std::string(field) + " is cut short");
  }
  return ReadBytes(field, static_cast<size_t>(length), text);
}

Status ByteReader::ReadCount(std::string_view field, size_t item_bytes_min, uint64_t max,
                             uint64_t* count) {
  MP_RETURN_IF_ERROR(ReadVarint64(field, count));
  if (*count > max) {
    return Status::Corruption(std::string(field) + " " + std::to_string(*count) + " is over " +
                              std::to_string(max));
  }
  if (*count > remaining() / std::max<size_t>(item_bytes_min, 1)) {
    return Status::Corruption(std::string(field) + " " + std::to_string(*count) +
                              " is more than the remaining bytes can hold");
  }
  return Status::Ok();
}

Status ByteReader::ExpectEnd(std::string_view what) const {
  if (!empty()) {
    return Status::Corruption(std::string(what) + " has " + std::to_string(remaining()) +
                              " unread bytes at its end");
  }
  return Status::Ok();
}

std::string EncodeSegmentHeader() {
  std::string header(kSegmentMagic.data(), kSegmentMagic.size());
  PutFixed32(kSegmentFormatVersion, &header);
  PutFixed32(Crc32(0, header), &header);
  return header;
}

Result<uint32_t> DecodeSegmentHeader(std::string_view bytes) {
  if (bytes.size() != kSegmentHeaderBytes) {
    return Status::Corruption("segment header is " + std::to_string(bytes.size()) + " bytes");
  }
  if (std::memcmp(bytes.data(), kSegmentMagic.data(), kSegmentMagic.size()) != 0) {
    return Status::Corruption("not a minpanel segment file (wrong magic)");
  }
  if (GetFixed32(bytes.data() + 12) != Crc32(0, bytes.substr(0, 12))) {
    return Status::Corruption("segment header checksum mismatch");
  }
  const uint32_t version = GetFixed32(bytes.data() + 8);
  MP_RETURN_IF_ERROR(CheckVersion(version, "header"));
  return version;
}

std::string EncodeSegmentTrailer(const SegmentTrailer& trailer) {
  std::string bytes;
  PutFixed64(trailer.footer_bytes, &bytes);
  PutFixed32(trailer.footer_crc32, &bytes);
  PutFixed32(trailer.format_version, &bytes);
  bytes.append(kSegmentMagic.data(), kSegmentMagic.size());
  return bytes;
}

Result<SegmentTrailer> DecodeSegmentTrailer(std::string_view bytes) {
  if (bytes.size() != kSegmentTrailerBytes) {
    return Status::Corruption("segment trailer is " + std::to_string(bytes.size()) + " bytes");
  }
  if (std::memcmp(bytes.data() + 16, kSegmentMagic.data(), kSegmentMagic.size()) != 0) {
    return Status::Corruption("segment trailer has no magic (torn or not a segment)");
  }
  SegmentTrailer trailer;
  trailer.footer_bytes = GetFixed64(bytes.data());
  trailer.footer_crc32 = GetFixed32(bytes.data() + 8);
  trailer.format_version = GetFixed32(bytes.data() + 12);
  MP_RETURN_IF_ERROR(CheckVersion(trailer.format_version, "trailer"));
  if (trailer.footer_bytes > kSegmentFooterBytesMax) {
    return Status::Corruption("segment footer of " + std::to_string(trailer.footer_bytes) +
                              " bytes is over kSegmentFooterBytesMax");
  }
  return trailer;
}

void EncodeSegmentFooter(const SegmentFooter& footer, std::string* out) {
  PutVarint64(footer.project_id, out);
  PutVarint64(footer.row_count, out);
  PutVarint64(footer.subject_count, out);
  PutVarint64(ZigZagEncode(footer.time_min_ms), out);
  PutVarint64(ZigZagEncode(footer.time_max_ms), out);
  PutId(footer.subject_min, out);
  PutId(footer.subject_max, out);
  PutVarint64(footer.block_rows_max, out);
  PutVarint64(footer.event_names.size(), out);
  for (const FooterEventName& name : footer.event_names) {
    PutVarint64(name.name.size(), out);
    out->append(name.name);
    PutVarint64(name.row_count, out);
  }
  PutVarint64(footer.columns.size(), out);
  for (const FooterColumn& column : footer.columns) {
    PutVarint64(column.key.size(), out);
    out->append(column.key);
    PutVarint64(column.row_count, out);
    out->push_back(static_cast<char>(column.tag_mask));
    out->push_back(static_cast<char>(column.encoding));
    if (column.encoding == StringEncoding::kDictionary) {
      PutVarint64(column.dictionary_size, out);
      PutChunkRef(column.dictionary, false, out);
    }
  }
  PutVarint64(footer.map_keys.size(), out);
  for (const FooterMapKey& key : footer.map_keys) {
    PutVarint64(key.key.size(), out);
    out->append(key.key);
    PutVarint64(key.row_count, out);
    out->push_back(static_cast<char>(key.tag_mask));
  }
  PutVarint64(footer.blocks.size(), out);
  for (const FooterBlock& block : footer.blocks) {
    PutVarint64(block.row_count, out);
    PutVarint64(ZigZagEncode(block.time_min_ms), out);
    PutVarint64(ZigZagEncode(block.time_max_ms), out);
    PutId(block.subject_first, out);
    PutId(block.subject_last, out);
    PutVarint64(block.subject_run_count, out);
    out->append(block.name_bitmap);
    for (size_t chunk_idx = 0; chunk_idx < block.chunks.size(); ++chunk_idx) {
      PutChunkRef(block.chunks[chunk_idx], chunk_idx >= kFixedColumnCount, out);
    }
    PutChunkRef(block.policy_versions, false, out);  // version 4
  }
  // Version 2: the fold section.
  PutFixed64(footer.fold_generation, out);
  for (const FooterBlock& block : footer.blocks) {
    PutVarint64(block.stored_runs.size(), out);
    uint32_t next_row = 0;
    for (const StoredSubjectRun& run : block.stored_runs) {
      PutVarint64(run.row_begin - next_row, out);
      PutVarint64(run.row_count, out);
      PutId(run.subject, out);
      next_row = run.row_begin + run.row_count;
    }
  }
}

namespace {

// The fold section (version 2): the generation, then per block its stored
// subject runs as (rows skipped since the previous run, run length, subject).
Status ReadFoldSection(ByteReader* reader, SegmentFooter* footer) {
  MP_RETURN_IF_ERROR(reader->ReadFixed64("fold generation", &footer->fold_generation));
  for (size_t block_idx = 0; block_idx < footer->blocks.size(); ++block_idx) {
    FooterBlock& block = footer->blocks[block_idx];
    uint64_t run_count = 0;
    // A run takes at least 18 bytes: two varints and an id.
    MP_RETURN_IF_ERROR(
        reader->ReadCount("stored subject run count", 18, block.row_count, &run_count));
    uint64_t next_row = 0;
    for (uint64_t run_idx = 0; run_idx < run_count; ++run_idx) {
      uint64_t gap = 0;
      uint64_t length = 0;
      Id128 subject;
      MP_RETURN_IF_ERROR(reader->ReadVarint64("stored subject run gap", &gap));
      MP_RETURN_IF_ERROR(reader->ReadVarint64("stored subject run length", &length));
      MP_RETURN_IF_ERROR(reader->ReadId("stored subject", &subject));
      if (gap > block.row_count - next_row || length == 0 ||
          length > block.row_count - next_row - gap) {
        return Status::Corruption("block " + std::to_string(block_idx) +
                                  ": stored subject runs pass the block's rows");
      }
      const uint64_t row_begin = next_row + gap;
      block.stored_runs.push_back(StoredSubjectRun{static_cast<uint32_t>(row_begin),
                                                   static_cast<uint32_t>(length), subject});
      next_row = row_begin + length;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<SegmentFooter> DecodeSegmentFooter(std::string_view bytes, uint64_t data_bytes,
                                          uint32_t version) {
  ByteReader reader(bytes);
  SegmentFooter footer;
  footer.has_policy_versions = version >= kSegmentPolicyVersionFormatVersion;
  MP_RETURN_IF_ERROR(ReadFooterSummary(&reader, &footer));
  MP_RETURN_IF_ERROR(ReadFooterNames(&reader, &footer));
  MP_RETURN_IF_ERROR(ReadFooterColumns(&reader, &footer));
  MP_RETURN_IF_ERROR(ReadFooterMapKeys(&reader, &footer));
  uint64_t block_count = 0;
  // A block takes at least 40 bytes of footer (two ids, counts, chunk refs).
  MP_RETURN_IF_ERROR(reader.ReadCount("block count", 40, footer.row_count, &block_count));
  if (block_count == 0) {
    return Status::Corruption("segment has no blocks");
  }
  for (uint64_t block_idx = 0; block_idx < block_count; ++block_idx) {
    const Status status = ReadFooterBlock(&reader, footer, version, &footer.blocks.emplace_back());
    if (!status.ok()) {
      return Status::Corruption("block " + std::to_string(block_idx) + ": " + status.message());
    }
  }
  if (version >= kSegmentFoldFormatVersion) {
    MP_RETURN_IF_ERROR(ReadFoldSection(&reader, &footer));
  }
  MP_RETURN_IF_ERROR(reader.ExpectEnd("footer"));
  MP_RETURN_IF_ERROR(CheckBlocks(footer));
  MP_RETURN_IF_ERROR(PlaceChunks(data_bytes, &footer));
  return footer;
}

namespace {

Status CheckTimeSpan(int64_t seen_min, int64_t seen_max, int64_t time_min_ms, int64_t time_max_ms) {
  if (seen_min != time_min_ms || seen_max != time_max_ms) {
    return Status::Corruption("times span " + std::to_string(seen_min) + ".." +
                              std::to_string(seen_max) + ", the block's zone map " +
                              std::to_string(time_min_ms) + ".." + std::to_string(time_max_ms));
  }
  return Status::Ok();
}

void EncodeTimeDeltas(std::span<const int64_t> times, int64_t time_min_ms, std::string* raw) {
  int64_t previous = time_min_ms;
  for (const int64_t time_ms : times) {
    // Wrapping arithmetic: the delta of any two int64 fits in 64 bits mod 2^64.
    const uint64_t delta = static_cast<uint64_t>(time_ms) - static_cast<uint64_t>(previous);
    PutVarint64(ZigZagEncode(static_cast<int64_t>(delta)), raw);
    previous = time_ms;
  }
}

Status DecodeTimeDeltas(std::string_view raw, size_t rows, int64_t time_min_ms,
                        int64_t time_max_ms, std::vector<int64_t>* times) {
  times->resize(rows);
  uint64_t previous = static_cast<uint64_t>(time_min_ms);
  int64_t seen_min = INT64_MAX;
  int64_t seen_max = INT64_MIN;
  int64_t* out = times->data();
  size_t position = 0;
  const size_t bulk_rows = DecodeVarintsBulk(raw, rows, &position, [&](size_t row_idx, uint64_t bits) {
    previous += static_cast<uint64_t>(ZigZagDecode(bits));
    const int64_t time_ms = static_cast<int64_t>(previous);
    out[row_idx] = time_ms;
    seen_min = std::min(seen_min, time_ms);
    seen_max = std::max(seen_max, time_ms);
  });
  ByteReader reader(raw.substr(position));
  for (size_t row_idx = bulk_rows; row_idx < rows; ++row_idx) {
    uint64_t bits = 0;
    if (!reader.TryReadVarint64(&bits)) {
      return VarintError(&reader, "time delta");
    }
    previous += static_cast<uint64_t>(ZigZagDecode(bits));
    const int64_t time_ms = static_cast<int64_t>(previous);
    out[row_idx] = time_ms;
    seen_min = std::min(seen_min, time_ms);
    seen_max = std::max(seen_max, time_ms);
  }
  MP_RETURN_IF_ERROR(reader.ExpectEnd("time chunk"));
  return CheckTimeSpan(seen_min, seen_max, time_min_ms, time_max_ms);
}

// Row r's offset is bits [r * bits, (r + 1) * bits) of the chunk read as one
// little-endian number; bits <= 32, so one 8-byte load at its first byte
// holds it whatever its bit position.
void EncodePackedTimes(std::span<const int64_t> times, int64_t time_min_ms, uint32_t bits,
                       std::string* raw) {
  if (bits == 0) {
    return;
  }
  uint64_t pending = 0;
  uint32_t pending_bits = 0;
  for (const int64_t time_ms : times) {
    const uint64_t offset = static_cast<uint64_t>(time_ms) - static_cast<uint64_t>(time_min_ms);
    assert(static_cast<uint32_t>(std::bit_width(offset)) <= bits);
    pending |= offset << pending_bits;
    pending_bits += bits;
    while (pending_bits >= 8) {
      raw->push_back(static_cast<char>(pending & 0xff));
      pending >>= 8;
      pending_bits -= 8;
    }
  }
  if (pending_bits > 0) {
    raw->push_back(static_cast<char>(pending & 0xff));
  }
}

Status DecodePackedTimes(std::string_view raw, size_t rows, int64_t time_min_ms,
                         int64_t time_max_ms, std::vector<int64_t>* times) {
  const uint32_t bits = PackedTimeBits(time_min_ms, time_max_ms);
  const uint64_t total_bits = static_cast<uint64_t>(rows) * bits;
  if (raw.size() != (total_bits + 7) / 8) {
    return Status::Corruption("time chunk is " + std::to_string(raw.size()) + " bytes for " +
                              std::to_string(rows) + " rows of " + std::to_string(bits) +
                              " bits");
  }
  times->resize(rows);
  if (rows == 0) {
    return Status::Ok();
  }
  if (bits == 0) {  // every row at time_min_ms, which is then time_max_ms
    std::fill(times->begin(), times->end(), time_min_ms);
    return Status::Ok();
  }
  const auto* data = reinterpret_cast<const uint8_t*>(raw.data());
  const size_t size = raw.size();
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  const auto base = static_cast<uint64_t>(time_min_ms);
  int64_t* out = times->data();
  uint64_t seen_min = UINT64_MAX;
  uint64_t seen_max = 0;
  // Rows whose 8-byte load ends inside the chunk; the last few are loaded
  // byte by byte.
  size_t whole_rows = 0;
  if (size >= 8) {
    whole_rows = std::min<size_t>(rows, ((size - 8) * 8 + 7) / bits + 1);
  }
  for (size_t row_idx = 0; row_idx < whole_rows; ++row_idx) {
    const uint64_t bit = static_cast<uint64_t>(row_idx) * bits;
    uint64_t word = 0;
    std::memcpy(&word, data + bit / 8, 8);
    const uint64_t offset = (le64toh(word) >> (bit % 8)) & mask;
    out[row_idx] = static_cast<int64_t>(base + offset);
    seen_min = std::min(seen_min, offset);
    seen_max = std::max(seen_max, offset);
  }
  for (size_t row_idx = whole_rows; row_idx < rows; ++row_idx) {
    const uint64_t bit = static_cast<uint64_t>(row_idx) * bits;
    uint64_t word = 0;
    for (size_t byte = bit / 8; byte < size && byte < bit / 8 + 8; ++byte) {
      word |= uint64_t{data[byte]} << (8 * (byte - bit / 8));
    }
    const uint64_t offset = (word >> (bit % 8)) & mask;
    out[row_idx] = static_cast<int64_t>(base + offset);
    seen_min = std::min(seen_min, offset);
    seen_max = std::max(seen_max, offset);
  }
  if (total_bits % 8 != 0 && (data[size - 1] >> (total_bits % 8)) != 0) {
    return Status::Corruption("time chunk has bits set past its last row");
  }
  return CheckTimeSpan(static_cast<int64_t>(base + seen_min), static_cast<int64_t>(base + seen_max),
                       time_min_ms, time_max_ms);
}

}  // namespace

uint32_t PackedTimeBits(int64_t time_min_ms, int64_t time_max_ms) {
  const uint64_t span = static_cast<uint64_t>(time_max_ms) - static_cast<uint64_t>(time_min_ms);
  return static_cast<uint32_t>(std::bit_width(span));
}

TimeEncoding TimeEncodingOf(uint32_t version, int64_t time_min_ms, int64_t time_max_ms) {
  if (version < kSegmentPackedTimesFormatVersion || time_max_ms < time_min_ms ||
      PackedTimeBits(time_min_ms, time_max_ms) > kPackedTimeBitsMax) {
    return TimeEncoding::kZigZagDeltas;
  }
  return TimeEncoding::kPackedOffsets;
}

void EncodeTimes(std::span<const int64_t> times, int64_t time_min_ms, int64_t time_max_ms,
                 TimeEncoding encoding, std::string* raw) {
  if (encoding == TimeEncoding::kPackedOffsets) {
    EncodePackedTimes(times, time_min_ms, PackedTimeBits(time_min_ms, time_max_ms), raw);
  } else {
    EncodeTimeDeltas(times, time_min_ms, raw);
  }
}

Status DecodeTimes(std::string_view raw, size_t rows, int64_t time_min_ms, int64_t time_max_ms,
                   TimeEncoding encoding, std::vector<int64_t>* times) {
  if (encoding == TimeEncoding::kPackedOffsets) {
    return DecodePackedTimes(raw, rows, time_min_ms, time_max_ms, times);
  }
  return DecodeTimeDeltas(raw, rows, time_min_ms, time_max_ms, times);
}

Status DecodeTimesOfRows(std::string_view raw, size_t rows, int64_t time_min_ms,
                         int64_t time_max_ms, TimeEncoding encoding,
                         std::span<const uint32_t> selected, std::vector<int64_t>* times) {
  if (encoding != TimeEncoding::kPackedOffsets) {
    std::vector<int64_t> all;
    MP_RETURN_IF_ERROR(DecodeTimes(raw, rows, time_min_ms, time_max_ms, encoding, &all));
    times->resize(selected.size());
    for (size_t slot = 0; slot < selected.size(); ++slot) {
      (*times)[slot] = all[selected[slot]];
    }
    return Status::Ok();
  }
  const uint32_t bits = PackedTimeBits(time_min_ms, time_max_ms);
  const uint64_t total_bits = static_cast<uint64_t>(rows) * bits;
  if (raw.size() != (total_bits + 7) / 8) {
    return Status::Corruption("time chunk is " + std::to_string(raw.size()) + " bytes for " +
                              std::to_string(rows) + " rows of " + std::to_string(bits) +
                              " bits");
  }
  times->resize(selected.size());
  int64_t* out = times->data();
  if (bits == 0) {
    std::fill(times->begin(), times->end(), time_min_ms);
    return Status::Ok();
  }
  const auto* data = reinterpret_cast<const uint8_t*>(raw.data());
  const size_t size = raw.size();
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  const auto base = static_cast<uint64_t>(time_min_ms);
  const uint64_t span = static_cast<uint64_t>(time_max_ms) - base;
  uint64_t seen_max = 0;
  for (size_t slot = 0; slot < selected.size(); ++slot) {
    const uint64_t bit = static_cast<uint64_t>(selected[slot]) * bits;
    const size_t first_byte = static_cast<size_t>(bit / 8);
    uint64_t word = 0;
    if (first_byte + 8 <= size) {
      std::memcpy(&word, data + first_byte, 8);
      word = le64toh(word);
    } else {
      for (size_t byte = first_byte; byte < size; ++byte) {
        word |= uint64_t{data[byte]} << (8 * (byte - first_byte));
      }
    }
    const uint64_t offset = (word >> (bit % 8)) & mask;
    out[slot] = static_cast<int64_t>(base + offset);
    seen_max = std::max(seen_max, offset);
  }
  if (seen_max > span) {
    return Status::Corruption("a time lies " + std::to_string(seen_max) +
                              " ms after the block's minimum, past its zone map's span of " +
                              std::to_string(span) + " ms");
  }
  return Status::Ok();
}

void EncodeSubjects(std::span<const Id128> subjects, std::span<const uint32_t> run_lengths,
                    std::string* raw) {
  PutVarint64(subjects.size(), raw);
  for (const Id128& subject : subjects) {
    PutId(subject, raw);
  }
  for (const uint32_t length : run_lengths) {
    PutVarint64(length, raw);
  }
}

namespace {

// The decoded subject runs against the block's zone map.
Status CheckSubjectRuns(uint64_t rows, const FooterBlock& block,
                        const std::vector<Id128>& subjects) {
  if (rows != block.row_count) {
    return Status::Corruption("subject runs cover " + std::to_string(rows) + " rows of " +
                              std::to_string(block.row_count));
  }
  if (subjects.front() != block.subject_first || subjects.back() != block.subject_last) {
    return Status::Corruption("subjects differ from the block's zone map");
  }
  return Status::Ok();
}

}  // namespace

Status DecodeSubjects(std::string_view raw, const FooterBlock& block, std::vector<Id128>* subjects,
                      std::vector<uint32_t>* run_lengths) {
  ByteReader reader(raw);
  uint64_t count = 0;
  MP_RETURN_IF_ERROR(reader.ReadCount("subject run count", 17, block.row_count, &count));
  if (count != block.subject_run_count) {
    return Status::Corruption("subject chunk holds " + std::to_string(count) +
                              " runs, the block's zone map " +
                              std::to_string(block.subject_run_count));
  }
  subjects->resize(static_cast<size_t>(count));
  run_lengths->resize(static_cast<size_t>(count));
  // ReadCount checked that 17 bytes a run remain, so the ids are read with
  // one check for all of them; the order is checked as one flag, not a
  // branch per run (every query that needs subjects decodes this chunk of
  // every block it reads).
  std::string_view ids;
  MP_RETURN_IF_ERROR(reader.ReadBytes("subjects", static_cast<size_t>(count) * 16, &ids));
  Id128* out = subjects->data();
  bool increasing = true;
  for (size_t run_idx = 0; run_idx < count; ++run_idx) {
    out[run_idx] = Id128{GetFixed64(ids.data() + 16 * run_idx),
                         GetFixed64(ids.data() + 16 * run_idx + 8)};
    increasing &= run_idx == 0 || out[run_idx - 1] < out[run_idx];
  }
  if (!increasing) {
    for (size_t run_idx = 1; run_idx < count; ++run_idx) {
      if (!(out[run_idx - 1] < out[run_idx])) {
        return Status::Corruption("subjects are not strictly increasing at run " +
                                  std::to_string(run_idx));
      }
    }
  }
  uint64_t rows = 0;
  uint32_t* lengths = run_lengths->data();
  // The lengths end the chunk. When there are exactly as many bytes left as
  // runs and none has the continuation bit, each length is one byte (a
  // subject's run in a block is nearly always under 128 rows): read them in
  // one pass without a varint decode per run (docs/benchmarks.md, "The
  // unique count by country: branch-light folds and one-byte codes").
  if (reader.remaining() == count) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data() + reader.position());
    uint8_t any_bits = 0;
    uint8_t all_bits = UINT8_MAX;
    for (size_t run_idx = 0; run_idx < count; ++run_idx) {
      any_bits |= bytes[run_idx];
      all_bits = std::min(all_bits, bytes[run_idx]);
    }
    if ((any_bits & 0x80) == 0 && count > 0) {
      if (all_bits == 0) {
        const size_t empty_run =
            static_cast<size_t>(std::find(bytes, bytes + count, uint8_t{0}) - bytes);
        return Status::Corruption("subject run " + std::to_string(empty_run) + " is empty");
      }
      for (size_t run_idx = 0; run_idx < count; ++run_idx) {
        lengths[run_idx] = bytes[run_idx];
        rows += bytes[run_idx];
      }
      return CheckSubjectRuns(rows, block, *subjects);
    }
  }
  for (size_t run_idx = 0; run_idx < count; ++run_idx) {
    uint64_t length = 0;
    if (!reader.TryReadVarint64(&length)) {
      uint32_t checked = 0;  // fails where TryReadVarint64 did, naming the field
      MP_RETURN_IF_ERROR(reader.ReadVarint32("subject run length", &checked));
      return Status::Corruption("subject run length " + std::to_string(run_idx) + " is damaged");
    }
    if (length > UINT32_MAX) {
      return Status::Corruption("subject run length is over 32 bits");
    }
    if (length == 0) {
      return Status::Corruption("subject run " + std::to_string(run_idx) + " is empty");
    }
    lengths[run_idx] = static_cast<uint32_t>(length);
    rows += length;
  }
  MP_RETURN_IF_ERROR(reader.ExpectEnd("subject chunk"));
  return CheckSubjectRuns(rows, block, *subjects);
}

void EncodeInsertIds(std::span<const Id128> ids, std::string* raw) {
  for (const Id128& id : ids) {
    PutId(id, raw);
  }
}

Status DecodeInsertIds(std::string_view raw, size_t rows, std::vector<Id128>* ids) {
  if (raw.size() != rows * 16) {
    return Status::Corruption("insert id chunk is " + std::to_string(raw.size()) + " bytes for " +
                              std::to_string(rows) + " rows");
  }
  ids->resize(rows);
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    (*ids)[row_idx].high = GetFixed64(raw.data() + 16 * row_idx);
    (*ids)[row_idx].low = GetFixed64(raw.data() + 16 * row_idx + 8);
  }
  return Status::Ok();
}

void EncodeKeyVersions(std::span<const uint32_t> versions, std::string* raw) {
  std::string runs;
  size_t run_count = 0;
  for (size_t row_idx = 0; row_idx < versions.size();) {
    size_t run_end = row_idx + 1;
    while (run_end < versions.size() && versions[run_end] == versions[row_idx]) {
      ++run_end;
    }
    PutVarint64(versions[row_idx], &runs);
    PutVarint64(run_end - row_idx, &runs);
    ++run_count;
    row_idx = run_end;
  }
  PutVarint64(run_count, raw);
  raw->append(runs);
}

namespace {

// Runs of (version, length) covering `rows` rows; `what` names the column in
// errors ("key version", "policy version").
Status DecodeVersionRuns(std::string_view raw, size_t rows, const std::string& what,
                         std::vector<uint32_t>* versions) {
  ByteReader reader(raw);
  uint64_t run_count = 0;
  MP_RETURN_IF_ERROR(reader.ReadCount(what + " run count", 2, rows, &run_count));
  versions->clear();
  for (uint64_t run_idx = 0; run_idx < run_count; ++run_idx) {
    uint32_t version = 0;
    uint64_t length = 0;
    MP_RETURN_IF_ERROR(reader.ReadVarint32(what, &version));
    MP_RETURN_IF_ERROR(reader.ReadVarint64(what + " run length", &length));
    if (length == 0 || length > rows - versions->size()) {
      return Status::Corruption(what + " run length " + std::to_string(length) +
                                " is out of range");
    }
    versions->insert(versions->end(), static_cast<size_t>(length), version);
  }
  MP_RETURN_IF_ERROR(reader.ExpectEnd(what + " chunk"));
  if (versions->size() != rows) {
    return Status::Corruption(what + " runs cover " + std::to_string(versions->size()) +
                              " rows of " + std::to_string(rows));
  }
  return Status::Ok();
}

}  // namespace

Status DecodeKeyVersions(std::string_view raw, size_t rows, std::vector<uint32_t>* versions) {
  return DecodeVersionRuns(raw, rows, "key version", versions);
}

void EncodePolicyVersions(std::span<const uint32_t> versions, std::string* raw) {
  EncodeKeyVersions(versions, raw);
}

Status DecodePolicyVersions(std::string_view raw, size_t rows, std::vector<uint32_t>* versions) {
  return DecodeVersionRuns(raw, rows, "policy version", versions);
}

void EncodeNameCodes(std::span<const uint32_t> codes, size_t dictionary_size, std::string* raw) {
  const size_t width = CodeWidth(dictionary_size);
  for (const uint32_t code : codes) {
    PutCode(code, width, raw);
  }
}

Status DecodeNameCodes(std::string_view raw, size_t rows, size_t dictionary_size,
                       std::string_view name_bitmap, std::vector<uint32_t>* codes) {
  const size_t width = CodeWidth(dictionary_size);
  if (raw.size() != rows * width) {
    return Status::Corruption("name chunk is " + std::to_string(raw.size()) + " bytes for " +
                              std::to_string(rows) + " rows");
  }
  codes->resize(rows);
  uint32_t* out = codes->data();
  if (width == 1) {  // up to 256 names: the common case, one byte a row
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data());
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      out[row_idx] = bytes[row_idx];
    }
  } else {
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      out[row_idx] = GetCode(raw.data() + row_idx * width, width);
    }
  }
  // Checked after the loop so that the loop stays a plain copy. A byte per
  // code, set without reading it back, so that rows of one code do not wait
  // on each other (a bit set per row did, through memory).
  std::array<uint8_t, 256> present_bytes{};
  std::vector<uint8_t> present_wide;
  if (width > 1) {
    present_wide.assign(dictionary_size, 0);
  }
  const std::span<uint8_t> present =
      width == 1 ? std::span<uint8_t>(present_bytes) : std::span<uint8_t>(present_wide);
  uint8_t* present_data = present.data();
  if (width == 1) {
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      present_data[out[row_idx]] = 1;
    }
  } else {
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      if (out[row_idx] >= dictionary_size) {
        return Status::Corruption("name code " + std::to_string(out[row_idx]) +
                                  " is past the dictionary");
      }
      present_data[out[row_idx]] = 1;
    }
  }
  std::string seen(name_bitmap.size(), '\0');
  for (uint32_t code = 0; code < present.size(); ++code) {
    if (present_data[code] == 0) {
      continue;
    }
    if (code >= dictionary_size) {
      return Status::Corruption("name code " + std::to_string(code) + " is past the dictionary");
    }
    seen[code / 8] = static_cast<char>(seen[code / 8] | (1 << (code % 8)));
  }
  if (seen != name_bitmap) {
    return Status::Corruption("name codes differ from the block's name bitmap");
  }
  return Status::Ok();
}

Status CountNameCodes(std::string_view raw, size_t rows, size_t dictionary_size,
                      std::string_view name_bitmap, std::vector<uint64_t>* counts) {
  const size_t width = CodeWidth(dictionary_size);
  if (raw.size() != rows * width) {
    return Status::Corruption("name chunk is " + std::to_string(raw.size()) + " bytes for " +
                              std::to_string(rows) + " rows");
  }
  counts->assign(dictionary_size, 0);
  if (width == 1) {
    // Four histograms, so that runs of one code do not wait on one counter.
    uint32_t partial[4][256] = {};
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data());
    size_t row_idx = 0;
    for (; row_idx + 4 <= rows; row_idx += 4) {
      ++partial[0][bytes[row_idx]];
      ++partial[1][bytes[row_idx + 1]];
      ++partial[2][bytes[row_idx + 2]];
      ++partial[3][bytes[row_idx + 3]];
    }
    for (; row_idx < rows; ++row_idx) {
      ++partial[0][bytes[row_idx]];
    }
    for (size_t code = 0; code < 256; ++code) {
      const uint64_t count =
          uint64_t{partial[0][code]} + partial[1][code] + partial[2][code] + partial[3][code];
      if (count == 0) {
        continue;
      }
      if (code >= dictionary_size) {
        return Status::Corruption("name code " + std::to_string(code) + " is past the dictionary");
      }
      (*counts)[code] = count;
    }
  } else {
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      const uint32_t code = GetCode(raw.data() + row_idx * width, width);
      if (code >= dictionary_size) {
        return Status::Corruption("name code " + std::to_string(code) + " is past the dictionary");
      }
      ++(*counts)[code];
    }
  }
  std::string seen(name_bitmap.size(), '\0');
  for (size_t code = 0; code < dictionary_size; ++code) {
    if ((*counts)[code] > 0) {
      if (code / 8 >= seen.size()) {
        return Status::Corruption("name code " + std::to_string(code) + " is past the bitmap");
      }
      seen[code / 8] = static_cast<char>(seen[code / 8] | (1 << (code % 8)));
    }
  }
  if (seen != name_bitmap) {
    return Status::Corruption("name codes differ from the block's name bitmap");
  }
  return Status::Ok();
}

void EncodeDictionary(std::span<const std::string_view> entries, std::string* raw) {
  PutVarint64(entries.size(), raw);
  for (const std::string_view entry : entries) {
    PutVarint64(entry.size(), raw);
  }
  for (const std::string_view entry : entries) {
    raw->append(entry);
  }
}

Status DecodeDictionary(std::string_view raw, size_t size, std::vector<std::string_view>* entries) {
  ByteReader reader(raw);
  uint64_t count = 0;
  MP_RETURN_IF_ERROR(reader.ReadCount("dictionary size", 1, kSegmentRowsMax, &count));
  if (count != size) {
    return Status::Corruption("dictionary holds " + std::to_string(count) +
                              " entries, the footer says " + std::to_string(size));
  }
  std::vector<uint64_t> lengths(static_cast<size_t>(count));
  uint64_t total = 0;
  for (uint64_t& length : lengths) {
    MP_RETURN_IF_ERROR(reader.ReadVarint64("dictionary entry length", &length));
    total += length;
    if (total > reader.remaining()) {
      return Status::Corruption("dictionary entries run past the chunk");
    }
  }
  std::string_view bytes;
  MP_RETURN_IF_ERROR(reader.ReadBytes("dictionary bytes", static_cast<size_t>(total), &bytes));
  MP_RETURN_IF_ERROR(reader.ExpectEnd("dictionary"));
  entries->resize(static_cast<size_t>(count));
  size_t position = 0;
  for (size_t entry_idx = 0; entry_idx < count; ++entry_idx) {
    (*entries)[entry_idx] = bytes.substr(position, static_cast<size_t>(lengths[entry_idx]));
    position += static_cast<size_t>(lengths[entry_idx]);
    if (entry_idx > 0 && !((*entries)[entry_idx - 1] < (*entries)[entry_idx])) {
      return Status::Corruption("dictionary is not sorted and unique at entry " +
                                std::to_string(entry_idx));
    }
  }
  return Status::Ok();
}

void EncodePropertyColumn(const PropertyColumnInput& input, std::string* raw) {
  // The tags first, so that each later pass touches only the values of its
  // type (the values are scattered in memory; the tags are not).
  const size_t rows = input.values.size();
  std::vector<PropertyTag> tags(rows);
  bool uniform = true;
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    const Value* value = input.values[row_idx];
    tags[row_idx] = value == nullptr ? PropertyTag::kAbsent : TagOf(*value);
    uniform = uniform && tags[row_idx] == tags[0];
  }
  raw->push_back(uniform ? 0 : 1);
  raw->append(reinterpret_cast<const char*>(tags.data()), uniform ? 1 : rows);
  auto rows_tagged = [&](PropertyTag tag, auto&& visit) {
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      if (tags[row_idx] == tag) {
        visit(*input.values[row_idx]);
      }
    }
  };
  rows_tagged(PropertyTag::kInt,
              [&](const Value& value) { PutVarint64(ZigZagEncode(value.as_int()), raw); });
  rows_tagged(PropertyTag::kDouble, [&](const Value& value) {
    PutFixed64(std::bit_cast<uint64_t>(value.as_double()), raw);
  });
  const bool dictionary = input.encoding == StringEncoding::kDictionary;
  const size_t width = CodeWidth(input.dictionary_size);
  if (dictionary) {
    for (const uint32_t code : input.string_codes) {
      PutCode(code, width, raw);
    }
  } else {
    rows_tagged(PropertyTag::kString,
                [&](const Value& value) { PutVarint64(value.as_string().size(), raw); });
    rows_tagged(PropertyTag::kString, [&](const Value& value) { raw->append(value.as_string()); });
  }
  rows_tagged(PropertyTag::kList,
              [&](const Value& value) { PutVarint64(value.as_list().size(), raw); });
  if (dictionary) {
    for (const uint32_t code : input.list_codes) {
      PutCode(code, width, raw);
    }
    return;
  }
  rows_tagged(PropertyTag::kList, [&](const Value& value) {
    for (const std::string& item : value.as_list()) {
      PutVarint64(item.size(), raw);
    }
  });
  rows_tagged(PropertyTag::kList, [&](const Value& value) {
    for (const std::string& item : value.as_list()) {
      raw->append(item);
    }
  });
}

namespace {

// A chunk's tags as stored: one for every row (uniform), or a byte per row
// viewed in the chunk (checked to be known tags).
struct ChunkTags {
  const uint8_t* bytes = nullptr;  // per row; nullptr when uniform
  PropertyTag uniform = PropertyTag::kAbsent;
  PropertyTag at(size_t row_idx) const {
    return bytes == nullptr ? uniform : static_cast<PropertyTag>(bytes[row_idx]);
  }
};

// Reads the tag layout and tags of a chunk of `rows` rows, and counts them,
// without copying them.
Status ReadChunkTags(ByteReader* reader, size_t rows, uint8_t tag_mask, ChunkTags* tags,
                     size_t (&tag_counts)[kPropertyTagCount]) {
  uint8_t layout = 0;
  MP_RETURN_IF_ERROR(reader->ReadByte("tag layout", &layout));
  if (layout > 1) {
    return Status::Corruption("tag layout " + std::to_string(layout) + " is unknown");
  }
  std::string_view bytes;
  MP_RETURN_IF_ERROR(reader->ReadBytes("tags", layout == 0 ? 1 : rows, &bytes));
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (layout == 0) {
    if (data[0] >= kPropertyTagCount) {
      return Status::Corruption("property tag " + std::to_string(data[0]) + " is unknown");
    }
    *tags = ChunkTags{nullptr, static_cast<PropertyTag>(data[0])};
    tag_counts[data[0]] = rows;
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(CountTagBytes(data, rows, tag_mask, tag_counts));
  *tags = ChunkTags{data, PropertyTag::kAbsent};
  return Status::Ok();
}

// Calls visit(rank, slot) for each selected row (slot = its index in
// `selected`) whose tag is `tag`, with rank = the number of rows of that tag
// before it. `selected` is strictly ascending and within the chunk's rows.
template <typename Visit>
void ForEachSelectedOfTag(const ChunkTags& tags, PropertyTag tag,
                          std::span<const uint32_t> selected, Visit&& visit) {
  if (tags.bytes == nullptr) {
    if (tags.uniform == tag) {
      for (size_t slot = 0; slot < selected.size(); ++slot) {
        visit(static_cast<size_t>(selected[slot]), slot);
      }
    }
    return;
  }
  // The rows between two selected ones are counted at once (most rows of a
  // block are not selected).
  size_t rank = 0;
  size_t row_idx = 0;
  for (size_t slot = 0; slot < selected.size(); ++slot) {
    const size_t target = selected[slot];
    rank += CountEqualBytes(tags.bytes + row_idx, target - row_idx, static_cast<uint8_t>(tag));
    row_idx = target;
    if (tags.bytes[target] == static_cast<uint8_t>(tag)) {
      visit(rank, slot);
    }
  }
}

// Reads `count` varints (all of them: the next section starts after the
// last), keeping those whose index `wanted` asks for: keep(index, value).
template <typename Keep>
Status ReadVarintsKeeping(ByteReader* reader, size_t count, std::string_view field, Keep&& keep) {
  for (size_t item_idx = 0; item_idx < count; ++item_idx) {
    uint64_t value = 0;
    if (!reader->TryReadVarint64(&value)) {
      return VarintError(reader, field);
    }
    keep(item_idx, value);
  }
  return Status::Ok();
}

// Strings number [0, count) of a section in the column's encoding; `*views`
// (and `*codes` for a dictionary) get string number `wanted[i].first` at
// `wanted[i].second`, for `wanted` in ascending string order.
Status ReadSelectedStrings(ByteReader* reader, size_t count, const PropertyColumnFormat& format,
                           std::span<const std::pair<size_t, size_t>> wanted,
                           std::vector<std::string_view>* views, std::vector<uint32_t>* codes) {
  if (format.encoding == StringEncoding::kDictionary) {
    const size_t width = CodeWidth(format.dictionary.size());
    if (count > reader->remaining() / width) {
      return Status::Corruption("string codes run past the chunk");
    }
    std::string_view bytes;
    MP_RETURN_IF_ERROR(reader->ReadBytes("string codes", count * width, &bytes));
    for (const auto& [item_idx, slot] : wanted) {
      const uint32_t code = GetCode(bytes.data() + item_idx * width, width);
      if (code >= format.dictionary.size()) {
        return Status::Corruption("string code " + std::to_string(code) +
                                  " is past the dictionary");
      }
      if (codes != nullptr) {
        (*codes)[slot] = code;
      }
      (*views)[slot] = format.dictionary[code];
    }
    return Status::Ok();
  }
  if (count > reader->remaining()) {
    return Status::Corruption("string lengths run past the chunk");
  }
  // Offsets of the wanted strings within the bytes that follow the lengths.
  thread_local std::vector<std::pair<uint64_t, uint64_t>> spans;
  spans.clear();
  uint64_t total = 0;
  size_t wanted_idx = 0;
  bool past_end = false;
  MP_RETURN_IF_ERROR(
      ReadVarintsKeeping(reader, count, "string length", [&](size_t item_idx, uint64_t length) {
        // The bytes follow the lengths, so neither may pass what is left.
        past_end = past_end || length > reader->remaining() || total + length > reader->remaining();
        if (past_end) {
          return;
        }
        if (wanted_idx < wanted.size() && wanted[wanted_idx].first == item_idx) {
          spans.emplace_back(total, length);
          ++wanted_idx;
        }
        total += length;
      }));
  if (past_end || total > reader->remaining()) {
    return Status::Corruption("string bytes run past the chunk");
  }
  std::string_view bytes;
  MP_RETURN_IF_ERROR(reader->ReadBytes("string bytes", static_cast<size_t>(total), &bytes));
  for (size_t span_idx = 0; span_idx < spans.size(); ++span_idx) {
    (*views)[wanted[span_idx].second] =
        bytes.substr(static_cast<size_t>(spans[span_idx].first), spans[span_idx].second);
  }
  return Status::Ok();
}

// The list section of one granule, for its selected rows (`selected`, the
// granule's rows; output slots from `slot_begin`): counts of every list,
// then the items; the selected rows' items are appended to list_items in
// order, and the offsets of the granule's slots are set. A column without
// lists (no offsets) has nothing to do.
Status ReadSelectedLists(ByteReader* reader, const ChunkTags& tags, size_t list_count,
                         const PropertyColumnFormat& format, std::span<const uint32_t> selected,
                         size_t slot_begin, const PropertyColumnOutput& output) {
  // No offsets when no selected row of any granule holds a list; the
  // section is read all the same.
  std::vector<uint32_t>& offsets = *output.list_offsets;
  const size_t base = output.list_items->size();
  const size_t slot_end = slot_begin + selected.size();
  if (list_count == 0) {
    if (!offsets.empty()) {
      std::fill(offsets.begin() + static_cast<ptrdiff_t>(slot_begin),
                offsets.begin() + static_cast<ptrdiff_t>(slot_end), static_cast<uint32_t>(base));
    }
    return Status::Ok();
  }
  thread_local std::vector<uint64_t> firsts;  // first item of each list
  firsts.resize(list_count + 1);
  uint64_t items = 0;
  MP_RETURN_IF_ERROR(ReadVarintsKeeping(reader, list_count, "list item count",
                                        [&](size_t list_idx, uint64_t count) {
                                          firsts[list_idx] = items;
                                          items += count;
                                        }));
  firsts[list_count] = items;
  // Every item takes at least one byte, so this bounds what follows.
  if (items > reader->remaining()) {
    return Status::Corruption("list items run past the chunk");
  }
  thread_local std::vector<std::pair<size_t, size_t>> wanted;  // (item, item slot)
  wanted.clear();
  size_t filled = slot_begin;  // slots whose offset is set
  ForEachSelectedOfTag(tags, PropertyTag::kList, selected, [&](size_t rank, size_t slot) {
    for (; filled <= slot_begin + slot; ++filled) {
      offsets[filled] = static_cast<uint32_t>(base + wanted.size());
    }
    for (uint64_t item = firsts[rank]; item < firsts[rank + 1]; ++item) {
      wanted.emplace_back(static_cast<size_t>(item), base + wanted.size());
    }
  });
  for (; filled < slot_end && !offsets.empty(); ++filled) {
    offsets[filled] = static_cast<uint32_t>(base + wanted.size());
  }
  output.list_items->resize(base + wanted.size());
  const bool dictionary = format.encoding == StringEncoding::kDictionary;
  if (dictionary) {
    output.list_item_codes->resize(base + wanted.size());
  }
  return ReadSelectedStrings(reader, static_cast<size_t>(items), format, wanted, output.list_items,
                             dictionary ? output.list_item_codes : nullptr);
}

// Granules must tile the block's rows in order.
Status CheckGranuleRows(std::span<const ChunkGranule> granules, size_t rows) {
  size_t covered = 0;
  for (const ChunkGranule& granule : granules) {
    if (granule.row_begin != covered || granule.row_count == 0 ||
        granule.row_count > rows - covered) {
      return Status::Corruption("granules do not tile the block's " + std::to_string(rows) +
                                " rows");
    }
    covered += granule.row_count;
  }
  if (covered != rows) {
    return Status::Corruption("granules do not tile the block's " + std::to_string(rows) +
                              " rows");
  }
  return Status::Ok();
}

// One granule of a property chunk once its tags are read: where its values
// start, its tags and their counts (over all its rows), and, for a read of
// selected rows, its slots.
struct GranuleTags {
  const ChunkGranule* granule = nullptr;
  size_t values_at = 0;  // position in granule->raw after the tags
  ChunkTags tags;
  size_t tag_counts[kPropertyTagCount] = {};
  size_t slot_begin = 0;
  size_t slot_end = 0;
};

// Reads a granule's tags (an empty granule: every row absent) and checks
// them against the column and the granule's present count.
Status ReadGranuleTags(const ChunkGranule& granule, const PropertyColumnFormat& format,
                       GranuleTags* out) {
  out->granule = &granule;
  if (granule.raw.empty()) {
    out->tags = ChunkTags{nullptr, PropertyTag::kAbsent};
    out->tag_counts[0] = granule.row_count;
    out->values_at = 0;
  } else {
    ByteReader reader(granule.raw);
    MP_RETURN_IF_ERROR(
        ReadChunkTags(&reader, granule.row_count, format.tag_mask, &out->tags, out->tag_counts));
    out->values_at = reader.position();
  }
  PropertyColumnFormat granule_format = format;
  granule_format.present_count = granule.present_count;
  return CheckTagCounts(out->tag_counts, granule.row_count, granule_format);
}

// A reader of a granule's values (after its tags).
ByteReader ValuesReader(const GranuleTags& part) {
  ByteReader reader(part.granule->raw);
  std::string_view tags;
  (void)reader.ReadBytes("tags", part.values_at, &tags);  // read once already
  return reader;
}

}  // namespace

Status DecodePropertyColumn(std::span<const ChunkGranule> granules, size_t rows,
                            const PropertyColumnFormat& format,
                            const PropertyColumnOutput& output) {
  MP_RETURN_IF_ERROR(CheckGranuleRows(granules, rows));
  thread_local std::vector<GranuleTags> parts;
  parts.assign(granules.size(), GranuleTags{});
  std::vector<PropertyTag>& tags = *output.tags;
  tags.resize(rows);
  size_t tag_counts[kPropertyTagCount] = {};
  for (size_t granule_idx = 0; granule_idx < granules.size(); ++granule_idx) {
    GranuleTags& part = parts[granule_idx];
    MP_RETURN_IF_ERROR(ReadGranuleTags(granules[granule_idx], format, &part));
    PropertyTag* out = tags.data() + part.granule->row_begin;
    if (part.tags.bytes == nullptr) {
      std::fill(out, out + part.granule->row_count, part.tags.uniform);
    } else {
      std::memcpy(out, part.tags.bytes, part.granule->row_count);
    }
    for (size_t tag = 0; tag < kPropertyTagCount; ++tag) {
      tag_counts[tag] += part.tag_counts[tag];
    }
  }
  const bool dictionary = format.encoding == StringEncoding::kDictionary;
  SizeOutputs(rows, tag_counts, dictionary, output);
  uint64_t list_items = 0;
  thread_local std::vector<uint32_t> string_rows;  // the row of each string of a granule
  for (const GranuleTags& part : parts) {
    const ChunkGranule& granule = *part.granule;
    const std::span<const PropertyTag> granule_tags(tags.data() + granule.row_begin,
                                                    granule.row_count);
    if (granule.raw.empty()) {
      MP_RETURN_IF_ERROR(
          ReadLists(nullptr, granule_tags, granule.row_begin, 0, format, output, &list_items));
      continue;
    }
    ByteReader reader = ValuesReader(part);
    const auto count_of = [&](PropertyTag tag) { return part.tag_counts[static_cast<size_t>(tag)]; };
    if (count_of(PropertyTag::kInt) > 0 || count_of(PropertyTag::kDouble) > 0) {
      MP_RETURN_IF_ERROR(ReadNumbers(&reader, granule_tags, granule.row_begin, output));
    }
    const size_t string_count = count_of(PropertyTag::kString);
    if (string_count == granule.row_count) {
      MP_RETURN_IF_ERROR(ReadStrings(
          &reader, string_count, format,
          [row_begin = granule.row_begin](size_t item_idx) { return row_begin + item_idx; },
          output.strings, output.string_codes));
    } else if (string_count > 0) {
      string_rows.clear();
      for (size_t row_idx = 0; row_idx < granule.row_count; ++row_idx) {
        if (granule_tags[row_idx] == PropertyTag::kString) {
          string_rows.push_back(static_cast<uint32_t>(granule.row_begin + row_idx));
        }
      }
      MP_RETURN_IF_ERROR(ReadStrings(
          &reader, string_count, format, [&](size_t item_idx) { return string_rows[item_idx]; },
          output.strings, output.string_codes));
    }
    MP_RETURN_IF_ERROR(ReadLists(&reader, granule_tags, granule.row_begin,
                                 count_of(PropertyTag::kList), format, output, &list_items));
    MP_RETURN_IF_ERROR(reader.ExpectEnd("property chunk"));
  }
  if (!output.list_offsets->empty()) {
    (*output.list_offsets)[rows] = static_cast<uint32_t>(list_items);
  }
  return Status::Ok();
}

Status DecodePropertyColumn(std::string_view raw, size_t rows, const PropertyColumnFormat& format,
                            const PropertyColumnOutput& output) {
  const ChunkGranule whole{0, static_cast<uint32_t>(rows), format.present_count, raw};
  if (rows == 0) {
    output.tags->clear();
    size_t tag_counts[kPropertyTagCount] = {};
    SizeOutputs(0, tag_counts, false, output);
    return CheckTagCounts(tag_counts, 0, format);
  }
  return DecodePropertyColumn(std::span<const ChunkGranule>(&whole, 1), rows, format, output);
}

Status DecodePropertyColumnGranuleRows(std::span<const ChunkGranule> granules, size_t rows,
                                       const PropertyColumnFormat& format,
                                       std::span<const uint32_t> selected,
                                       const PropertyColumnOutput& output) {
  const size_t slots = selected.size();
  if (!selected.empty() && selected.back() >= rows) {
    return Status::InvalidArgument("selected row " + std::to_string(selected.back()) +
                                   " is past the block's " + std::to_string(rows) + " rows");
  }
  // The granules holding selected rows, their tags read; each selected row
  // numbered within its granule.
  thread_local std::vector<GranuleTags> parts;
  thread_local std::vector<uint32_t> local_rows;
  parts.clear();
  local_rows.resize(slots);
  output.tags->resize(slots);
  size_t slot_counts[kPropertyTagCount] = {};
  size_t slot = 0;
  size_t granule_end = 0;
  for (const ChunkGranule& granule : granules) {
    if (granule.row_begin < granule_end || granule.row_count > rows - granule.row_begin) {
      return Status::Corruption("granules overlap or pass the block's rows");
    }
    granule_end = granule.row_begin + granule.row_count;
    if (slot < slots && selected[slot] < granule.row_begin) {
      break;  // a selected row in no granule given
    }
    size_t slot_end = slot;
    while (slot_end < slots && selected[slot_end] < granule_end) {
      ++slot_end;
    }
    if (slot_end == slot) {
      continue;
    }
    GranuleTags& part = parts.emplace_back();
    MP_RETURN_IF_ERROR(ReadGranuleTags(granule, format, &part));
    part.slot_begin = slot;
    part.slot_end = slot_end;
    for (; slot < slot_end; ++slot) {
      local_rows[slot] = selected[slot] - granule.row_begin;
      const PropertyTag tag = part.tags.at(local_rows[slot]);
      (*output.tags)[slot] = tag;
      ++slot_counts[static_cast<size_t>(tag)];
    }
  }
  if (slot < slots) {
    return Status::InvalidArgument("selected row " + std::to_string(selected[slot]) +
                                   " is in none of the granules read");
  }
  const bool dictionary = format.encoding == StringEncoding::kDictionary;
  SizeOutputs(slots, slot_counts, dictionary, output);
  thread_local std::vector<std::pair<size_t, size_t>> wanted;  // (rank, slot)
  for (const GranuleTags& part : parts) {
    const std::span<const uint32_t> part_rows(local_rows.data() + part.slot_begin,
                                              part.slot_end - part.slot_begin);
    const size_t slot_begin = part.slot_begin;
    if (part.granule->raw.empty()) {
      MP_RETURN_IF_ERROR(
          ReadSelectedLists(nullptr, part.tags, 0, format, part_rows, slot_begin, output));
      continue;
    }
    ByteReader reader = ValuesReader(part);
    const auto count_of = [&](PropertyTag tag) { return part.tag_counts[static_cast<size_t>(tag)]; };
    // Ints: every varint is read (the doubles start after the last).
    const size_t int_count = count_of(PropertyTag::kInt);
    if (int_count > 0) {
      wanted.clear();
      ForEachSelectedOfTag(part.tags, PropertyTag::kInt, part_rows, [&](size_t rank, size_t at) {
        wanted.emplace_back(rank, slot_begin + at);
      });
      size_t wanted_idx = 0;
      MP_RETURN_IF_ERROR(
          ReadVarintsKeeping(&reader, int_count, "int value", [&](size_t rank, uint64_t bits) {
            if (wanted_idx < wanted.size() && wanted[wanted_idx].first == rank) {
              (*output.ints)[wanted[wanted_idx++].second] = ZigZagDecode(bits);
            }
          }));
    }
    const size_t double_count = count_of(PropertyTag::kDouble);
    if (double_count > 0) {
      std::string_view bytes;
      if (double_count > reader.remaining() / 8) {
        return Status::Corruption("double values run past the chunk");
      }
      MP_RETURN_IF_ERROR(reader.ReadBytes("double value", double_count * 8, &bytes));
      ForEachSelectedOfTag(part.tags, PropertyTag::kDouble, part_rows,
                           [&](size_t rank, size_t at) {
                             (*output.doubles)[slot_begin + at] =
                                 std::bit_cast<double>(GetFixed64(bytes.data() + rank * 8));
                           });
    }
    const size_t string_count = count_of(PropertyTag::kString);
    if (string_count > 0) {
      wanted.clear();
      ForEachSelectedOfTag(part.tags, PropertyTag::kString, part_rows,
                           [&](size_t rank, size_t at) { wanted.emplace_back(rank, slot_begin + at); });
      MP_RETURN_IF_ERROR(ReadSelectedStrings(&reader, string_count, format, wanted, output.strings,
                                             dictionary ? output.string_codes : nullptr));
    }
    MP_RETURN_IF_ERROR(ReadSelectedLists(&reader, part.tags, count_of(PropertyTag::kList), format,
                                         part_rows, slot_begin, output));
    MP_RETURN_IF_ERROR(reader.ExpectEnd("property chunk"));
  }
  if (!output.list_offsets->empty()) {
    (*output.list_offsets)[slots] = static_cast<uint32_t>(output.list_items->size());
  }
  return Status::Ok();
}

Status DecodePropertyColumnRows(std::string_view raw, size_t rows,
                                const PropertyColumnFormat& format,
                                std::span<const uint32_t> selected,
                                const PropertyColumnOutput& output) {
  if (rows == 0) {
    return DecodePropertyColumn(raw, rows, format, output);
  }
  const ChunkGranule whole{0, static_cast<uint32_t>(rows), format.present_count, raw};
  return DecodePropertyColumnGranuleRows(std::span<const ChunkGranule>(&whole, 1), rows, format,
                                         selected, output);
}

void EncodeMapColumn(std::span<const MapEntryInput> entries, std::span<const uint32_t> entry_ends,
                     std::string* raw) {
  size_t entry_idx = 0;
  for (const uint32_t end : entry_ends) {
    PutVarint64(end - entry_idx, raw);
    for (; entry_idx < end; ++entry_idx) {
      PutVarint64(entries[entry_idx].key_code, raw);
      raw->push_back(static_cast<char>(TagOf(*entries[entry_idx].value)));
      PutMapValue(*entries[entry_idx].value, raw);
    }
  }
}

Status MapChunkReader::ReadRowEntries(uint64_t* entries) {
  // Entries of a row have distinct keys and take at least two bytes each.
  return reader_.ReadCount("map entry count", 2, key_count_, entries);
}

Status MapChunkReader::ReadEntry(bool first, uint32_t previous_code, uint32_t* key_code,
                                 PropertyTag* tag, std::string_view* value_bytes) {
  MP_RETURN_IF_ERROR(reader_.ReadVarint32("map key code", key_code));
  if (*key_code >= key_count_ || (!first && *key_code <= previous_code)) {
    return Status::Corruption("map key code " + std::to_string(*key_code) +
                              " is out of order or past the key list");
  }
  uint8_t tag_byte = 0;
  MP_RETURN_IF_ERROR(reader_.ReadByte("map entry tag", &tag_byte));
  if (tag_byte == 0 || tag_byte >= kPropertyTagCount) {
    return Status::Corruption("map entry tag " + std::to_string(tag_byte) + " is invalid");
  }
  *tag = static_cast<PropertyTag>(tag_byte);
  const size_t start = reader_.position();
  MP_RETURN_IF_ERROR(SkipMapValue(&reader_, *tag));
  *value_bytes = reader_.bytes().substr(start, reader_.position() - start);
  return Status::Ok();
}

namespace {

struct MapEntry {
  size_t slot;  // the output row
  PropertyTag tag;
  std::string_view value_bytes;
};

// Fills `output` with `slots` rows, absent but for `entries` (ascending
// slots, values checked by MapChunkReader::ForEach).
Status FillMapColumn(size_t slots, std::span<const MapEntry> entries,
                     const PropertyColumnOutput& output) {
  size_t tag_counts[kPropertyTagCount] = {};
  tag_counts[0] = slots - entries.size();
  for (const MapEntry& entry : entries) {
    ++tag_counts[static_cast<size_t>(entry.tag)];
  }
  output.tags->assign(slots, PropertyTag::kAbsent);
  SizeOutputs(slots, tag_counts, false, output);
  std::vector<uint32_t>& offsets = *output.list_offsets;
  for (const MapEntry& entry : entries) {
    (*output.tags)[entry.slot] = entry.tag;
    ByteReader value(entry.value_bytes);
    if (entry.tag == PropertyTag::kInt) {
      MP_RETURN_IF_ERROR(value.ReadZigZag("map int value", &(*output.ints)[entry.slot]));
    } else if (entry.tag == PropertyTag::kDouble) {
      uint64_t bits = 0;
      MP_RETURN_IF_ERROR(value.ReadFixed64("map double value", &bits));
      (*output.doubles)[entry.slot] = std::bit_cast<double>(bits);
    } else if (entry.tag == PropertyTag::kString) {
      MP_RETURN_IF_ERROR(value.ReadString("map string value", &(*output.strings)[entry.slot]));
    } else if (entry.tag == PropertyTag::kList) {
      uint64_t count = 0;
      MP_RETURN_IF_ERROR(value.ReadCount("map list length", 1, UINT32_MAX, &count));
      for (uint64_t item_idx = 0; item_idx < count; ++item_idx) {
        MP_RETURN_IF_ERROR(value.ReadString("map list item", &output.list_items->emplace_back()));
      }
      offsets[entry.slot + 1] = static_cast<uint32_t>(output.list_items->size());
    }
  }
  // Rows without a list end where the previous row ended.
  for (size_t slot = 1; slot < offsets.size(); ++slot) {
    offsets[slot] = std::max(offsets[slot], offsets[slot - 1]);
  }
  return Status::Ok();
}

}  // namespace

Status DecodeMapKey(std::span<const ChunkGranule> granules, size_t rows,
                    std::span<const uint8_t> tag_masks, uint32_t key_code,
                    const PropertyColumnOutput& output) {
  MP_RETURN_IF_ERROR(CheckGranuleRows(granules, rows));
  std::vector<MapEntry> found;
  for (const ChunkGranule& granule : granules) {
    MapChunkReader reader(granule.raw, granule.row_count, tag_masks.size());
    MP_RETURN_IF_ERROR(reader.ForEach(
        granule.present_count, tag_masks,
        [&](size_t row_idx, uint32_t code, PropertyTag tag, std::string_view value_bytes) {
          if (code == key_code) {
            found.push_back(MapEntry{granule.row_begin + row_idx, tag, value_bytes});
          }
        }));
  }
  return FillMapColumn(rows, found, output);
}

Status DecodeMapKey(std::string_view raw, size_t rows, uint32_t entry_count,
                    std::span<const uint8_t> tag_masks, uint32_t key_code,
                    const PropertyColumnOutput& output) {
  if (rows == 0) {
    MapChunkReader reader(raw, rows, tag_masks.size());
    MP_RETURN_IF_ERROR(reader.ForEach(entry_count, tag_masks, [](auto&&...) {}));
    return FillMapColumn(0, {}, output);
  }
  const ChunkGranule whole{0, static_cast<uint32_t>(rows), entry_count, raw};
  return DecodeMapKey(std::span<const ChunkGranule>(&whole, 1), rows, tag_masks, key_code, output);
}

Status DecodeMapGranuleRows(std::span<const ChunkGranule> granules, size_t rows,
                            std::span<const uint8_t> tag_masks, std::span<const uint32_t> selected,
                            std::span<const PropertyColumnOutput> outputs) {
  if (!selected.empty() && selected.back() >= rows) {
    return Status::InvalidArgument("selected row " + std::to_string(selected.back()) +
                                   " is past the block's " + std::to_string(rows) + " rows");
  }
  // The entries of the selected rows, grouped by key afterwards.
  std::vector<std::pair<uint32_t, MapEntry>> found;
  size_t slot = 0;
  size_t granule_end = 0;
  for (const ChunkGranule& granule : granules) {
    if (granule.row_begin < granule_end || granule.row_count > rows - granule.row_begin) {
      return Status::Corruption("granules overlap or pass the block's rows");
    }
    granule_end = granule.row_begin + granule.row_count;
    if (slot < selected.size() && selected[slot] < granule.row_begin) {
      break;  // a selected row in no granule given
    }
    if (slot == selected.size() || selected[slot] >= granule_end) {
      continue;
    }
    MapChunkReader reader(granule.raw, granule.row_count, tag_masks.size());
    MP_RETURN_IF_ERROR(reader.ForEach(
        granule.present_count, tag_masks,
        [&](size_t local_row, uint32_t code, PropertyTag tag, std::string_view value_bytes) {
          const size_t row_idx = granule.row_begin + local_row;
          while (slot < selected.size() && selected[slot] < row_idx) {
            ++slot;
          }
          if (slot < selected.size() && selected[slot] == row_idx) {
            found.emplace_back(code, MapEntry{slot, tag, value_bytes});
          }
        }));
    while (slot < selected.size() && selected[slot] < granule_end) {
      ++slot;
    }
  }
  if (slot < selected.size()) {
    return Status::InvalidArgument("selected row " + std::to_string(selected[slot]) +
                                   " is in none of the granules read");
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& left, const auto& right) { return left.first < right.first; });
  std::vector<MapEntry> entries;
  size_t found_idx = 0;
  for (uint32_t key_code = 0; key_code < outputs.size(); ++key_code) {
    entries.clear();
    for (; found_idx < found.size() && found[found_idx].first == key_code; ++found_idx) {
      entries.push_back(found[found_idx].second);
    }
    MP_RETURN_IF_ERROR(FillMapColumn(selected.size(), entries, outputs[key_code]));
  }
  return Status::Ok();
}

Status DecodeMapRows(std::string_view raw, size_t rows, uint32_t entry_count,
                     std::span<const uint8_t> tag_masks, std::span<const uint32_t> selected,
                     std::span<const PropertyColumnOutput> outputs) {
  if (rows == 0) {
    return DecodeMapGranuleRows({}, rows, tag_masks, selected, outputs);
  }
  const ChunkGranule whole{0, static_cast<uint32_t>(rows), entry_count, raw};
  return DecodeMapGranuleRows(std::span<const ChunkGranule>(&whole, 1), rows, tag_masks, selected,
                              outputs);
}

Status DecodeMapValue(PropertyTag tag, std::string_view value_bytes, Value* value) {
  ByteReader reader(value_bytes);
  switch (tag) {
    case PropertyTag::kNull:
      *value = Value::Null();
      break;
    case PropertyTag::kFalse:
    case PropertyTag::kTrue:
      *value = Value::Bool(tag == PropertyTag::kTrue);
      break;
    case PropertyTag::kInt: {
      int64_t number = 0;
      MP_RETURN_IF_ERROR(reader.ReadZigZag("map int value", &number));
      *value = Value::Int(number);
      break;
    }
    case PropertyTag::kDouble: {
      uint64_t bits = 0;
      MP_RETURN_IF_ERROR(reader.ReadFixed64("map double value", &bits));
      *value = Value::Double(std::bit_cast<double>(bits));
      break;
    }
    case PropertyTag::kString: {
      std::string_view text;
      MP_RETURN_IF_ERROR(reader.ReadString("map string value", &text));
      *value = Value::String(std::string(text));
      break;
    }
    case PropertyTag::kList: {
      uint64_t count = 0;
      MP_RETURN_IF_ERROR(reader.ReadCount("map list length", 1, UINT32_MAX, &count));
      StringList items;
      items.reserve(static_cast<size_t>(count));
      for (uint64_t item_idx = 0; item_idx < count; ++item_idx) {
        std::string_view item;
        MP_RETURN_IF_ERROR(reader.ReadString("map list item", &item));
        items.emplace_back(item);
      }
      *value = Value::List(std::move(items));
      break;
    }
    case PropertyTag::kAbsent:
      return Status::Corruption("map entry tag is absent");
  }
  return reader.ExpectEnd("map value");
}

ChunkCompressor::ChunkCompressor(int zstd_level)
    : zstd_level_(zstd_level), zstd_context_(ZSTD_createCCtx()) {}

ChunkCompressor::~ChunkCompressor() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(zstd_context_)); }

SegmentCodec ChunkCompressor::Choose(std::string_view raw, const SegmentCodec* forced,
                                     std::string_view* stored) {
  SegmentCodec codec = forced != nullptr ? *forced : SegmentCodec::kNone;
  size_t lz4_bytes = SIZE_MAX;
  size_t zstd_bytes = SIZE_MAX;
  const bool try_lz4 = forced == nullptr || *forced == SegmentCodec::kLz4;
  const bool try_zstd = forced == nullptr || *forced == SegmentCodec::kZstd;
  if (raw.empty()) {
    codec = SegmentCodec::kNone;
  } else {
    if (try_lz4) {
      lz4_buffer_.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
      const int written =
          LZ4_compress_default(raw.data(), lz4_buffer_.data(), static_cast<int>(raw.size()),
                               static_cast<int>(lz4_buffer_.size()));
      assert(written > 0);
      lz4_bytes = static_cast<size_t>(written);
    }
    if (try_zstd) {
      zstd_buffer_.resize(ZSTD_compressBound(raw.size()));
      const size_t written =
          ZSTD_compressCCtx(static_cast<ZSTD_CCtx*>(zstd_context_), zstd_buffer_.data(),
                            zstd_buffer_.size(), raw.data(), raw.size(), zstd_level_);
      assert(!ZSTD_isError(written));
      zstd_bytes = written;
    }
  }
  if (forced == nullptr && !raw.empty()) {
    const size_t best = std::min(lz4_bytes, zstd_bytes);
    if (static_cast<uint64_t>(best) * kCompressionSavingsMin >
        static_cast<uint64_t>(raw.size()) * (kCompressionSavingsMin - 1)) {
      codec = SegmentCodec::kNone;
    } else if (static_cast<uint64_t>(lz4_bytes) * kLz4SlackFraction <=
               static_cast<uint64_t>(zstd_bytes) * (kLz4SlackFraction + 1)) {
      codec = SegmentCodec::kLz4;
    } else {
      codec = SegmentCodec::kZstd;
    }
  }
  *stored = raw;
  if (codec == SegmentCodec::kLz4) {
    *stored = std::string_view(lz4_buffer_.data(), lz4_bytes);
  } else if (codec == SegmentCodec::kZstd) {
    *stored = std::string_view(zstd_buffer_.data(), zstd_bytes);
  }
  return codec;
}

void ChunkCompressor::Compress(std::string_view raw, const SegmentCodec* forced, ChunkRef* ref,
                               std::string* out) {
  ref->raw_bytes = raw.size();
  std::string_view stored;
  ref->codec = Choose(raw, forced, &stored);
  ref->stored_bytes = stored.size();
  ref->crc32 = Crc32(0, stored);
  out->append(stored);
}

void ChunkCompressor::CompressGranules(std::span<const std::string> raws,
                                       std::span<const uint32_t> ends,
                                       std::span<const uint32_t> present_counts,
                                       const SegmentCodec* forced, ChunkRef* ref,
                                       std::string* out) {
  uint32_t present_total = 0;
  for (const uint32_t present : present_counts) {
    present_total += present;
  }
  ref->present_count = present_total;
  if (raws.size() == 1) {
    Compress(raws[0], forced, ref, out);
    return;
  }
  // The directory, then the granules' stored bytes (gathered meanwhile).
  std::string directory;
  granules_buffer_.clear();
  PutVarint64(raws.size(), &directory);
  uint64_t raw_total = 0;
  uint32_t row_begin = 0;
  for (size_t granule_idx = 0; granule_idx < raws.size(); ++granule_idx) {
    std::string_view stored;
    const SegmentCodec codec = Choose(raws[granule_idx], forced, &stored);
    PutVarint64(ends[granule_idx] - row_begin, &directory);
    PutVarint64(present_counts[granule_idx], &directory);
    directory.push_back(static_cast<char>(codec));
    PutVarint64(stored.size(), &directory);
    PutVarint64(raws[granule_idx].size(), &directory);
    granules_buffer_.append(stored);
    raw_total += raws[granule_idx].size();
    row_begin = ends[granule_idx];
  }
  ref->codec = SegmentCodec::kGranules;
  ref->raw_bytes = raw_total;
  ref->stored_bytes = directory.size() + granules_buffer_.size();
  ref->crc32 = Crc32(Crc32(0, directory), granules_buffer_);
  out->append(directory);
  out->append(granules_buffer_);
}

namespace {

// Decompresses `stored` (codec lz4 or zstd) into exactly `raw_bytes` at `out`.
Status Decompress(SegmentCodec codec, std::string_view stored, uint64_t raw_bytes, char* out) {
  if (codec == SegmentCodec::kLz4) {
    const int written = LZ4_decompress_safe(stored.data(), out, static_cast<int>(stored.size()),
                                            static_cast<int>(raw_bytes));
    if (written < 0 || static_cast<uint64_t>(written) != raw_bytes) {
      return Status::Corruption("lz4 data does not decompress to " + std::to_string(raw_bytes) +
                                " bytes");
    }
    return Status::Ok();
  }
  // One decompression context per thread: ZSTD_decompress would allocate
  // and initialise a fresh one (over 100 KB) for every chunk.
  thread_local const std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> context(ZSTD_createDCtx(),
                                                                                &ZSTD_freeDCtx);
  const size_t written =
      context != nullptr
          ? ZSTD_decompressDCtx(context.get(), out, static_cast<size_t>(raw_bytes), stored.data(),
                                stored.size())
          : ZSTD_decompress(out, static_cast<size_t>(raw_bytes), stored.data(), stored.size());
  if (ZSTD_isError(written) || written != raw_bytes) {
    return Status::Corruption("zstd data does not decompress to " + std::to_string(raw_bytes) +
                              " bytes");
  }
  return Status::Ok();
}

}  // namespace

Status DecompressChunk(std::string_view stored, const ChunkRef& ref, std::string* raw,
                       std::string_view* view) {
  if (stored.size() != ref.stored_bytes) {
    return Status::Corruption("chunk is cut short");
  }
  const uint32_t crc = Crc32(0, stored);
  if (crc != ref.crc32) {
    return Status::Corruption("checksum mismatch (stored " + std::to_string(ref.crc32) +
                              ", computed " + std::to_string(crc) + ")");
  }
  if (ref.codec == SegmentCodec::kNone) {
    *view = stored;
    return Status::Ok();
  }
  if (ref.codec == SegmentCodec::kGranules) {
    // Whole: every granule in row order, back to back (what a reader of every
    // row wants; DecodeGranuleDirectory tells where each one starts).
    std::vector<GranuleRef> granules;
    MP_RETURN_IF_ERROR(DecodeGranuleDirectory(stored, ref, SIZE_MAX, &granules));
    raw->resize(static_cast<size_t>(ref.raw_bytes));
    size_t at = 0;
    for (const GranuleRef& granule : granules) {
      MP_RETURN_IF_ERROR(DecompressGranule(stored, granule, raw->data() + at));
      at += static_cast<size_t>(granule.raw_bytes);
    }
    *view = *raw;
    return Status::Ok();
  }
  raw->resize(static_cast<size_t>(ref.raw_bytes));
  MP_RETURN_IF_ERROR(Decompress(ref.codec, stored, ref.raw_bytes, raw->data()));
  *view = *raw;
  return Status::Ok();
}

Status DecodeGranuleDirectory(std::string_view stored, const ChunkRef& ref, size_t rows,
                              std::vector<GranuleRef>* granules) {
  granules->clear();
  ByteReader reader(stored);
  uint64_t count = 0;
  // A granule's entry takes at least five bytes.
  MP_RETURN_IF_ERROR(reader.ReadCount("granule count", 5, kSegmentBlockRowsMax, &count));
  if (count == 0) {
    return Status::Corruption("granular chunk has no granules");
  }
  granules->resize(static_cast<size_t>(count));
  uint64_t row_total = 0;
  uint64_t present_total = 0;
  uint64_t raw_total = 0;
  uint64_t stored_total = 0;
  for (GranuleRef& granule : *granules) {
    uint8_t codec = 0;
    MP_RETURN_IF_ERROR(reader.ReadVarint32("granule row count", &granule.row_count));
    MP_RETURN_IF_ERROR(reader.ReadVarint32("granule present count", &granule.present_count));
    MP_RETURN_IF_ERROR(reader.ReadByte("granule codec", &codec));
    MP_RETURN_IF_ERROR(reader.ReadVarint64("granule stored bytes", &granule.stored_bytes));
    MP_RETURN_IF_ERROR(reader.ReadVarint64("granule raw bytes", &granule.raw_bytes));
    if (codec > static_cast<uint8_t>(SegmentCodec::kZstd)) {
      return Status::Corruption("granule codec " + std::to_string(codec) + " is unknown");
    }
    granule.codec = static_cast<SegmentCodec>(codec);
    if (granule.row_count == 0) {
      return Status::Corruption("granule of no rows");
    }
    if (granule.codec == SegmentCodec::kNone && granule.stored_bytes != granule.raw_bytes) {
      return Status::Corruption("uncompressed granule stores " +
                                std::to_string(granule.stored_bytes) + " bytes but holds " +
                                std::to_string(granule.raw_bytes));
    }
    if (granule.codec != SegmentCodec::kNone &&
        (granule.stored_bytes == 0 || granule.raw_bytes == 0)) {
      return Status::Corruption("compressed granule is empty");
    }
    granule.row_begin = static_cast<uint32_t>(row_total);
    granule.offset = stored_total;  // from the end of the directory, for now
    row_total += granule.row_count;
    present_total += granule.present_count;
    raw_total += granule.raw_bytes;
    stored_total += granule.stored_bytes;
    if (row_total > kSegmentBlockRowsMax || raw_total > kSegmentChunkBytesMax ||
        stored_total > stored.size()) {
      return Status::Corruption("granules pass their chunk");
    }
  }
  if ((rows != SIZE_MAX && row_total != rows) || present_total != ref.present_count ||
      raw_total != ref.raw_bytes || stored_total != reader.remaining()) {
    return Status::Corruption("granule directory does not add up to its chunk (rows " +
                              std::to_string(row_total) + ", present " +
                              std::to_string(present_total) + ", raw bytes " +
                              std::to_string(raw_total) + ", stored bytes " +
                              std::to_string(stored_total) + ")");
  }
  for (GranuleRef& granule : *granules) {
    granule.offset += reader.position();
  }
  return Status::Ok();
}

Status DecompressGranule(std::string_view stored, const GranuleRef& granule, char* out) {
  const std::string_view bytes =
      stored.substr(static_cast<size_t>(granule.offset), static_cast<size_t>(granule.stored_bytes));
  if (granule.codec == SegmentCodec::kNone) {
    if (!bytes.empty()) {
      std::memcpy(out, bytes.data(), bytes.size());
    }
    return Status::Ok();
  }
  return Decompress(granule.codec, bytes, granule.raw_bytes, out);
}

void ChooseGranuleEnds(std::span<const uint32_t> run_lengths, uint32_t granule_rows,
                       std::vector<uint32_t>* ends) {
  ends->clear();
  uint32_t rows = 0;
  uint32_t granule_begin = 0;
  for (const uint32_t length : run_lengths) {
    rows += length;
    if (granule_rows > 0 && rows - granule_begin >= granule_rows) {
      ends->push_back(rows);
      granule_begin = rows;
    }
  }
  if (ends->empty() || ends->back() != rows) {
    if (!ends->empty() && rows - granule_begin < granule_rows / 4) {
      ends->back() = rows;  // a short tail joins the granule before it
    } else {
      ends->push_back(rows);
    }
  }
}

namespace {

// Steps over `count` varints; the bytes they took.
Status SkipVarints(ByteReader* reader, size_t count, std::string_view field,
                   std::string_view* bytes, uint64_t* sum = nullptr) {
  const size_t start = reader->position();
  for (size_t item_idx = 0; item_idx < count; ++item_idx) {
    uint64_t value = 0;
    if (!reader->TryReadVarint64(&value)) {
      return VarintError(reader, field);
    }
    if (sum != nullptr) {
      *sum += value;
    }
  }
  *bytes = reader->bytes().substr(start, reader->position() - start);
  return Status::Ok();
}

// Strings (or list items) of a section in a column's encoding, cut per
// granule: `counts[g]` of them go to granule g (if it is kept).
Status SplitStrings(ByteReader* reader, StringEncoding encoding, size_t width,
                    std::span<const size_t> counts, std::span<const uint8_t> kept,
                    std::vector<std::string>* granules) {
  if (encoding == StringEncoding::kDictionary) {
    for (size_t granule_idx = 0; granule_idx < counts.size(); ++granule_idx) {
      std::string_view bytes;
      MP_RETURN_IF_ERROR(reader->ReadBytes("string codes", counts[granule_idx] * width, &bytes));
      if (kept[granule_idx] != 0) {
        (*granules)[granule_idx].append(bytes);
      }
    }
    return Status::Ok();
  }
  std::vector<uint64_t> byte_counts(counts.size(), 0);
  for (size_t granule_idx = 0; granule_idx < counts.size(); ++granule_idx) {
    std::string_view lengths;
    MP_RETURN_IF_ERROR(
        SkipVarints(reader, counts[granule_idx], "string length", &lengths, &byte_counts[granule_idx]));
    if (kept[granule_idx] != 0) {
      (*granules)[granule_idx].append(lengths);
    }
  }
  for (size_t granule_idx = 0; granule_idx < counts.size(); ++granule_idx) {
    std::string_view bytes;
    MP_RETURN_IF_ERROR(reader->ReadBytes("string bytes", byte_counts[granule_idx], &bytes));
    if (kept[granule_idx] != 0) {
      (*granules)[granule_idx].append(bytes);
    }
  }
  return Status::Ok();
}

}  // namespace

Status SplitPropertyColumn(std::string_view raw, size_t rows, StringEncoding encoding,
                           size_t dictionary_size, std::span<const uint32_t> ends,
                           std::vector<std::string>* granules,
                           std::vector<uint32_t>* present_counts) {
  const size_t granule_count = ends.size();
  granules->assign(granule_count, std::string());
  present_counts->assign(granule_count, 0);
  if (raw.empty()) {
    return Status::Ok();
  }
  ByteReader reader(raw);
  uint8_t layout = 0;
  MP_RETURN_IF_ERROR(reader.ReadByte("tag layout", &layout));
  std::string_view tags;
  MP_RETURN_IF_ERROR(reader.ReadBytes("tags", layout == 0 ? 1 : rows, &tags));
  const auto tag_at = [&](size_t row_idx) {
    return static_cast<uint8_t>(tags[layout == 0 ? 0 : row_idx]);
  };
  // Per granule: its tag counts, whether it holds the key, its tags.
  std::vector<std::array<size_t, kPropertyTagCount>> counts(granule_count);
  std::vector<uint8_t> kept(granule_count, 0);
  size_t row_begin = 0;
  for (size_t granule_idx = 0; granule_idx < granule_count; ++granule_idx) {
    const size_t row_end = ends[granule_idx];
    if (row_end <= row_begin || row_end > rows) {
      return Status::InvalidArgument("granule ends must increase up to the block's rows");
    }
    std::array<size_t, kPropertyTagCount>& granule_counts = counts[granule_idx];
    granule_counts.fill(0);
    bool uniform = true;
    for (size_t row_idx = row_begin; row_idx < row_end; ++row_idx) {
      const uint8_t tag = tag_at(row_idx);
      if (tag >= kPropertyTagCount) {
        return Status::Corruption("property tag " + std::to_string(tag) + " is unknown");
      }
      ++granule_counts[tag];
      uniform = uniform && tag == tag_at(row_begin);
    }
    const size_t granule_rows = row_end - row_begin;
    (*present_counts)[granule_idx] = static_cast<uint32_t>(granule_rows - granule_counts[0]);
    if (granule_counts[0] < granule_rows) {
      kept[granule_idx] = 1;
      std::string& out = (*granules)[granule_idx];
      out.push_back(uniform ? 0 : 1);
      if (uniform) {
        out.push_back(static_cast<char>(tag_at(row_begin)));
      } else if (layout == 0) {
        out.append(granule_rows, static_cast<char>(tag_at(0)));
      } else {
        out.append(tags.substr(row_begin, granule_rows));
      }
    }
    row_begin = row_end;
  }
  if (row_begin != rows) {
    return Status::InvalidArgument("granule ends must end at the block's rows");
  }
  const auto section_counts = [&](PropertyTag tag) {
    std::vector<size_t> out(granule_count);
    for (size_t granule_idx = 0; granule_idx < granule_count; ++granule_idx) {
      out[granule_idx] = counts[granule_idx][static_cast<size_t>(tag)];
    }
    return out;
  };
  const std::vector<size_t> int_counts = section_counts(PropertyTag::kInt);
  for (size_t granule_idx = 0; granule_idx < granule_count; ++granule_idx) {
    std::string_view bytes;
    MP_RETURN_IF_ERROR(SkipVarints(&reader, int_counts[granule_idx], "int value", &bytes));
    (*granules)[granule_idx].append(bytes);
  }
  const std::vector<size_t> double_counts = section_counts(PropertyTag::kDouble);
  for (size_t granule_idx = 0; granule_idx < granule_count; ++granule_idx) {
    std::string_view bytes;
    MP_RETURN_IF_ERROR(reader.ReadBytes("double value", double_counts[granule_idx] * 8, &bytes));
    (*granules)[granule_idx].append(bytes);
  }
  const size_t width = CodeWidth(dictionary_size);
  MP_RETURN_IF_ERROR(SplitStrings(&reader, encoding, width, section_counts(PropertyTag::kString),
                                  kept, granules));
  const std::vector<size_t> list_counts = section_counts(PropertyTag::kList);
  std::vector<size_t> item_counts(granule_count, 0);
  for (size_t granule_idx = 0; granule_idx < granule_count; ++granule_idx) {
    std::string_view bytes;
    uint64_t items = 0;
    MP_RETURN_IF_ERROR(
        SkipVarints(&reader, list_counts[granule_idx], "list item count", &bytes, &items));
    item_counts[granule_idx] = static_cast<size_t>(items);
    (*granules)[granule_idx].append(bytes);
  }
  MP_RETURN_IF_ERROR(SplitStrings(&reader, encoding, width, item_counts, kept, granules));
  return reader.ExpectEnd("property chunk");
}

Status SplitMapColumn(std::string_view raw, size_t rows, size_t key_count,
                      std::span<const uint32_t> ends, std::vector<std::string>* granules,
                      std::vector<uint32_t>* entry_counts) {
  granules->assign(ends.size(), std::string());
  entry_counts->assign(ends.size(), 0);
  if (raw.empty()) {
    return Status::Ok();
  }
  ByteReader reader(raw);
  size_t row_idx = 0;
  for (size_t granule_idx = 0; granule_idx < ends.size(); ++granule_idx) {
    if (ends[granule_idx] <= row_idx || ends[granule_idx] > rows) {
      return Status::InvalidArgument("granule ends must increase up to the block's rows");
    }
    const size_t start = reader.position();
    uint32_t entries = 0;
    for (; row_idx < ends[granule_idx]; ++row_idx) {
      uint64_t row_entries = 0;
      MP_RETURN_IF_ERROR(reader.ReadCount("map entry count", 2, key_count, &row_entries));
      for (uint64_t entry_idx = 0; entry_idx < row_entries; ++entry_idx) {
        uint32_t key_code = 0;
        uint8_t tag = 0;
        MP_RETURN_IF_ERROR(reader.ReadVarint32("map key code", &key_code));
        MP_RETURN_IF_ERROR(reader.ReadByte("map entry tag", &tag));
        if (tag == 0 || tag >= kPropertyTagCount) {
          return Status::Corruption("map entry tag " + std::to_string(tag) + " is invalid");
        }
        MP_RETURN_IF_ERROR(SkipMapValue(&reader, static_cast<PropertyTag>(tag)));
      }
      entries += static_cast<uint32_t>(row_entries);
    }
    (*entry_counts)[granule_idx] = entries;
    if (entries > 0) {
      (*granules)[granule_idx] = std::string(raw.substr(start, reader.position() - start));
    }
  }
  if (row_idx != rows) {
    return Status::InvalidArgument("granule ends must end at the block's rows");
  }
  return reader.ExpectEnd("map chunk");
}

Status CompressPropertyChunk(ChunkCompressor& compressor, std::string_view raw, size_t rows,
                             const FooterColumn* column, size_t map_key_count,
                             std::span<const uint32_t> ends, double granule_ratio_min,
                             uint32_t present_count, const SegmentCodec* forced, ChunkRef* ref,
                             std::string* out) {
  if (raw.size() > kSegmentChunkBytesMax) {
    return Status::ResourceExhausted("a segment column chunk of " + std::to_string(raw.size()) +
                                     " bytes is over kSegmentChunkBytesMax");
  }
  if (ends.size() <= 1 || raw.empty()) {
    compressor.Compress(raw, forced, ref, out);
    ref->present_count = present_count;
    return Status::Ok();
  }
  if (granule_ratio_min > 0) {
    // Whole, unless it compresses well enough for its granules to be cheap.
    const size_t whole_begin = out->size();
    compressor.Compress(raw, forced, ref, out);
    if (static_cast<double>(ref->stored_bytes) * granule_ratio_min >
        static_cast<double>(ref->raw_bytes)) {
      ref->present_count = present_count;
      return Status::Ok();
    }
    out->resize(whole_begin);
  }
  thread_local std::vector<std::string> granules;
  thread_local std::vector<uint32_t> present_counts;
  MP_RETURN_IF_ERROR(column != nullptr
                         ? SplitPropertyColumn(raw, rows, column->encoding,
                                               column->dictionary_size, ends, &granules,
                                               &present_counts)
                         : SplitMapColumn(raw, rows, map_key_count, ends, &granules,
                                          &present_counts));
  compressor.CompressGranules(granules, ends, present_counts, forced, ref, out);
  if (ref->present_count != present_count) {
    return Status::Corruption("granules hold " + std::to_string(ref->present_count) +
                              " values of a chunk of " + std::to_string(present_count));
  }
  return Status::Ok();
}

}  // namespace minpanel::store
