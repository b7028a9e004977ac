// Each segment encoding alone: header, trailer, footer, every column chunk,
// compression, and the Corruption each decoder reports on bad bytes.
#include "store/segment_format.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "store/wal_format.h"

namespace minpanel::store {
namespace {

void ExpectCorruption(const Status& status, std::string_view words) {
  EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
  EXPECT_NE(status.message().find(words), std::string::npos) << status.ToString();
}

TEST(SegmentHeaderTest, RoundTripsAndRefusesDamage) {
  const std::string header = EncodeSegmentHeader();
  ASSERT_EQ(header.size(), kSegmentHeaderBytes);
  EXPECT_EQ(header.substr(0, 8), std::string("MPSEG\r\n\x1a", 8));
  const auto version = DecodeSegmentHeader(header);
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_EQ(*version, kSegmentFormatVersion);

  std::string wrong_magic = header;
  wrong_magic[0] = 'X';
  ExpectCorruption(DecodeSegmentHeader(wrong_magic).status(), "wrong magic");
  std::string bad_checksum = header;
  bad_checksum[9] ^= 1;
  ExpectCorruption(DecodeSegmentHeader(bad_checksum).status(), "checksum");
  ExpectCorruption(DecodeSegmentHeader(header.substr(0, 15)).status(), "15 bytes");
}

TEST(SegmentHeaderTest, NewerVersionIsRefusedNamingBothVersions) {
  std::string header(kSegmentMagic.data(), kSegmentMagic.size());
  PutFixed32(kSegmentFormatVersion + 1, &header);
  PutFixed32(Crc32(0, header), &header);
  const Status status = DecodeSegmentHeader(header).status();
  ExpectCorruption(status, "version " + std::to_string(kSegmentFormatVersion + 1));
  ExpectCorruption(status, "newest known: " + std::to_string(kSegmentFormatVersion));
}

TEST(SegmentTrailerTest, RoundTripsAndRefusesDamage) {
  SegmentTrailer trailer;
  trailer.footer_bytes = 1234;
  trailer.footer_crc32 = 0xdeadbeef;
  const std::string bytes = EncodeSegmentTrailer(trailer);
  ASSERT_EQ(bytes.size(), kSegmentTrailerBytes);
  const auto decoded = DecodeSegmentTrailer(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->footer_bytes, 1234u);
  EXPECT_EQ(decoded->footer_crc32, 0xdeadbeefu);

  std::string no_magic = bytes;
  no_magic.back() = 0;
  ExpectCorruption(DecodeSegmentTrailer(no_magic).status(), "no magic");
  trailer.format_version = kSegmentFormatVersion + 1;
  ExpectCorruption(DecodeSegmentTrailer(EncodeSegmentTrailer(trailer)).status(), "not supported");
  trailer.format_version = kSegmentFormatVersion;
  trailer.footer_bytes = kSegmentFooterBytesMax + 1;
  ExpectCorruption(DecodeSegmentTrailer(EncodeSegmentTrailer(trailer)).status(),
                   "kSegmentFooterBytesMax");
}

TEST(SegmentTimesTest, DeltaEncodingRoundTripsExtremes) {
  const std::vector<int64_t> times = {5,         7,         7, 1'700'000'000'000, -3,
                                      INT64_MAX, INT64_MIN, 0, 1'700'000'000'001};
  const int64_t time_min = INT64_MIN;
  std::string raw;
  EncodeTimes(times, time_min, INT64_MAX, TimeEncoding::kZigZagDeltas, &raw);
  std::vector<int64_t> decoded;
  ASSERT_TRUE(
      DecodeTimes(raw, times.size(), time_min, INT64_MAX, TimeEncoding::kZigZagDeltas, &decoded)
          .ok());
  EXPECT_EQ(decoded, times);
}

TEST(SegmentTimesTest, CloseTimesTakeABytePerRow) {
  std::vector<int64_t> times;
  for (int64_t row = 0; row < 1000; ++row) {
    times.push_back(1'700'000'000'000 + row * 50);
  }
  std::string raw;
  EncodeTimes(times, times.front(), times.back(), TimeEncoding::kZigZagDeltas, &raw);
  EXPECT_EQ(raw.size(), 1000u);  // zigzag(50) = 100 fits one varint byte
}

TEST(SegmentTimesTest, ZoneMapMismatchAndTrailingBytesAreCorruption) {
  const std::vector<int64_t> times = {10, 20, 30};
  std::string raw;
  constexpr TimeEncoding kDeltas = TimeEncoding::kZigZagDeltas;
  EncodeTimes(times, 10, 30, kDeltas, &raw);
  std::vector<int64_t> decoded;
  ExpectCorruption(DecodeTimes(raw, 3, 10, 31, kDeltas, &decoded), "zone map");
  ExpectCorruption(DecodeTimes(raw + "x", 3, 10, 30, kDeltas, &decoded), "unread bytes");
  ExpectCorruption(DecodeTimes(raw, 4, 10, 30, kDeltas, &decoded), "cut short");
}


// DecodeTimes reads most varints 64 bytes at a time (DecodeVarintsBulk) and
// the last ones, and any over 8 bytes, one by one: every length from 1 to 10
// bytes, at every offset against the 64-byte windows, must decode the same.
TEST(SegmentTimesTest, BulkAndCheckedDecodingAgreeOnEveryLength) {
  std::mt19937_64 random(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> times;
    const size_t rows = 1 + random() % 3000;
    int64_t time = static_cast<int64_t>(random());
    for (size_t row = 0; row < rows; ++row) {
      // A delta of 0 to 63 bits, so its varint takes 1 to 10 bytes.
      const int bits = static_cast<int>(random() % 64);
      const uint64_t delta = bits == 0 ? 0 : random() >> (64 - bits);
      time = static_cast<int64_t>(static_cast<uint64_t>(time) +
                                  (random() % 2 == 0 ? delta : 0 - delta));
      times.push_back(time);
    }
    const auto [min, max] = std::minmax_element(times.begin(), times.end());
    std::string raw;
    constexpr TimeEncoding kDeltas = TimeEncoding::kZigZagDeltas;
    EncodeTimes(times, *min, *max, kDeltas, &raw);
    std::vector<int64_t> decoded;
    ASSERT_TRUE(DecodeTimes(raw, rows, *min, *max, kDeltas, &decoded).ok()) << "trial " << trial;
    ASSERT_EQ(decoded, times) << "trial " << trial;
    // Cut anywhere, or with one row too many expected: Corruption, not a crash.
    const size_t cut = random() % raw.size();
    EXPECT_EQ(DecodeTimes(raw.substr(0, cut), rows, *min, *max, kDeltas, &decoded).code(),
              StatusCode::kCorruption);
    EXPECT_EQ(DecodeTimes(raw, rows + 1, *min, *max, kDeltas, &decoded).code(),
              StatusCode::kCorruption);
  }
}

// Version 3 packs a block's times as offsets of bit_width(max - min) bits;
// wider spans, and every block of versions 1 and 2, keep zigzag deltas.
TEST(SegmentTimesTest, EncodingFollowsTheVersionAndTheSpan) {
  constexpr int64_t kDay = 1'700'006'400'000;
  EXPECT_EQ(TimeEncodingOf(2, kDay, kDay + 86'399'999), TimeEncoding::kZigZagDeltas);
  EXPECT_EQ(TimeEncodingOf(3, kDay, kDay + 86'399'999), TimeEncoding::kPackedOffsets);
  EXPECT_EQ(PackedTimeBits(kDay, kDay + 86'399'999), 27u);
  EXPECT_EQ(PackedTimeBits(kDay, kDay), 0u);
  EXPECT_EQ(TimeEncodingOf(3, kDay, kDay + (int64_t{1} << 32) - 1), TimeEncoding::kPackedOffsets);
  EXPECT_EQ(TimeEncodingOf(3, kDay, kDay + (int64_t{1} << 32)), TimeEncoding::kZigZagDeltas);
  EXPECT_EQ(TimeEncodingOf(3, INT64_MIN, INT64_MAX), TimeEncoding::kZigZagDeltas);
}

// Every width from 0 to 32 bits, row counts around the 8-byte loads' edge,
// offsets at 0 and at the span: decoded exactly; cut, extended, a stray bit
// past the last row, or a zone map that differs: Corruption, not a crash.
TEST(SegmentTimesTest, PackedOffsetsRoundTripAtEveryWidthAndAreChecked) {
  constexpr TimeEncoding kPacked = TimeEncoding::kPackedOffsets;
  std::mt19937_64 random(11);
  for (uint32_t bits = 0; bits <= kPackedTimeBitsMax; ++bits) {
    for (const size_t rows : {size_t{1}, size_t{2}, size_t{7}, size_t{9}, size_t{33},
                              size_t{16384}}) {
      if (rows == 1 && bits > 0) {
        continue;  // one row spans nothing
      }
      const int64_t time_min = 1'700'000'000'000 + static_cast<int64_t>(random() % 1000);
      const uint64_t span =
          bits == 0 ? 0 : (uint64_t{1} << (bits - 1)) + random() % (uint64_t{1} << (bits - 1));
      std::vector<int64_t> times(rows);
      for (int64_t& time : times) {
        time = time_min + static_cast<int64_t>(span == 0 ? 0 : random() % (span + 1));
      }
      const size_t min_row = random() % rows;
      times[min_row] = time_min;
      times[(min_row + 1 + random() % (rows - 1 + (rows == 1))) % rows] =
          time_min + static_cast<int64_t>(span);
      const auto [min, max] = std::minmax_element(times.begin(), times.end());
      ASSERT_EQ(PackedTimeBits(*min, *max), bits);
      std::string raw;
      EncodeTimes(times, *min, *max, kPacked, &raw);
      ASSERT_EQ(raw.size(), (rows * bits + 7) / 8) << bits << " bits, " << rows << " rows";
      std::vector<int64_t> decoded;
      const Status status = DecodeTimes(raw, rows, *min, *max, kPacked, &decoded);
      ASSERT_TRUE(status.ok()) << bits << " bits, " << rows << " rows: " << status.ToString();
      ASSERT_EQ(decoded, times) << bits << " bits, " << rows << " rows";
      if (bits == 0) {
        continue;
      }
      ExpectCorruption(DecodeTimes(raw.substr(0, raw.size() - 1), rows, *min, *max, kPacked,
                                   &decoded),
                       "bytes for");
      ExpectCorruption(DecodeTimes(raw + "x", rows, *min, *max, kPacked, &decoded), "bytes for");
      if ((rows * bits) % 8 != 0) {
        std::string stray = raw;
        stray.back() = static_cast<char>(stray.back() | 0x80);
        ExpectCorruption(DecodeTimes(stray, rows, *min, *max, kPacked, &decoded),
                         "past its last row");
      }
      if (bits < kPackedTimeBitsMax && rows > 2) {
        // A zone map one wider than the rows (same width): the maximum differs.
        const int64_t wider = *min + static_cast<int64_t>((uint64_t{1} << bits) - 1);
        if (wider != *max) {
          ExpectCorruption(DecodeTimes(raw, rows, *min, wider, kPacked, &decoded), "zone map");
        }
      }
    }
  }
}

// The times of some rows only: every width, the rows near the chunk's end
// (read byte by byte) included, equal the same rows of DecodeTimes; deltas
// (decoded whole) too. A time past the zone map's span, or a chunk of the
// wrong size, is Corruption.
TEST(SegmentTimesTest, TimesOfSelectedRowsEqualTheWholeDecode) {
  std::mt19937_64 random(12);
  for (uint32_t bits = 1; bits <= kPackedTimeBitsMax; ++bits) {
    for (const size_t rows : {size_t{2}, size_t{9}, size_t{33}, size_t{16384}}) {
      const int64_t time_min = 1'700'000'000'000;
      const uint64_t span = (uint64_t{1} << (bits - 1)) + random() % (uint64_t{1} << (bits - 1));
      std::vector<int64_t> times(rows);
      for (int64_t& time : times) {
        time = time_min + static_cast<int64_t>(random() % (span + 1));
      }
      times[0] = time_min;
      times[rows - 1] = time_min + static_cast<int64_t>(span);
      std::vector<uint32_t> selected;
      for (uint32_t row_idx = 0; row_idx < rows; ++row_idx) {
        if (row_idx + 3 >= rows || random() % 5 == 0) {
          selected.push_back(row_idx);
        }
      }
      for (const TimeEncoding encoding :
           {TimeEncoding::kPackedOffsets, TimeEncoding::kZigZagDeltas}) {
        std::string raw;
        EncodeTimes(times, time_min, times[rows - 1], encoding, &raw);
        std::vector<int64_t> picked;
        const Status status = DecodeTimesOfRows(raw, rows, time_min, times[rows - 1], encoding,
                                                selected, &picked);
        ASSERT_TRUE(status.ok()) << bits << " bits, " << rows << " rows: " << status.ToString();
        ASSERT_EQ(picked.size(), selected.size());
        for (size_t slot = 0; slot < selected.size(); ++slot) {
          ASSERT_EQ(picked[slot], times[selected[slot]]) << bits << " bits, row " << selected[slot];
        }
        ExpectCorruption(DecodeTimesOfRows(raw + "x", rows, time_min, times[rows - 1], encoding,
                                           selected, &picked),
                         "");
      }
      if (bits >= 2) {
        // The last row's time is the span: a zone map narrower by one (of
        // the same width) reads it past the span.
        std::string raw;
        EncodeTimes(times, time_min, times[rows - 1], TimeEncoding::kPackedOffsets, &raw);
        const int64_t narrower = times[rows - 1] - 1;
        if (PackedTimeBits(time_min, narrower) == bits) {
          std::vector<int64_t> picked;
          ExpectCorruption(DecodeTimesOfRows(raw, rows, time_min, narrower,
                                             TimeEncoding::kPackedOffsets, selected, &picked),
                           "past its zone map");
        }
      }
    }
  }
  // Every row at one time: no bits, each selected row at the minimum.
  std::vector<int64_t> picked;
  const std::vector<uint32_t> selected = {0, 2};
  ASSERT_TRUE(DecodeTimesOfRows("", 3, 5, 5, TimeEncoding::kPackedOffsets, selected, &picked).ok());
  EXPECT_EQ(picked, (std::vector<int64_t>{5, 5}));
}

TEST(SegmentSubjectsTest, RunsRoundTripAndAreChecked) {
  const std::vector<Id128> subjects = {{0, 1}, {0, 9}, {7, 0}};
  const std::vector<uint32_t> lengths = {3, 1, 2};
  std::string raw;
  EncodeSubjects(subjects, lengths, &raw);
  EXPECT_EQ(raw.size(), 1 + 3 * 16 + 3u);
  FooterBlock block;
  block.row_count = 6;
  block.subject_first = subjects.front();
  block.subject_last = subjects.back();
  block.subject_run_count = 3;
  std::vector<Id128> decoded_subjects;
  std::vector<uint32_t> decoded_lengths;
  ASSERT_TRUE(DecodeSubjects(raw, block, &decoded_subjects, &decoded_lengths).ok());
  EXPECT_EQ(decoded_subjects, subjects);
  EXPECT_EQ(decoded_lengths, lengths);

  block.row_count = 7;
  ExpectCorruption(DecodeSubjects(raw, block, &decoded_subjects, &decoded_lengths), "cover 6");
  block.row_count = 6;
  std::string unsorted;
  EncodeSubjects(std::vector<Id128>{{0, 9}, {0, 1}, {7, 0}}, lengths, &unsorted);
  ExpectCorruption(DecodeSubjects(unsorted, block, &decoded_subjects, &decoded_lengths),
                   "strictly increasing");
  std::string empty_run;
  EncodeSubjects(subjects, std::vector<uint32_t>{3, 0, 3}, &empty_run);
  ExpectCorruption(DecodeSubjects(empty_run, block, &decoded_subjects, &decoded_lengths), "empty");
}

// Run lengths under 128 are read as one byte each in one pass; a chunk with
// a longer run is read varint by varint. Both give the same runs and the
// same errors.
TEST(SegmentSubjectsTest, OneByteAndLongerRunLengthsDecodeAlike) {
  std::vector<Id128> subjects;
  for (uint64_t run_idx = 0; run_idx < 300; ++run_idx) {
    subjects.push_back(Id128{run_idx / 7, run_idx});
  }
  FooterBlock block;
  block.subject_first = subjects.front();
  block.subject_last = subjects.back();
  block.subject_run_count = static_cast<uint32_t>(subjects.size());
  for (const uint32_t long_run : {0u, 127u, 128u, 300u, 70'000u}) {
    SCOPED_TRACE(long_run);
    std::vector<uint32_t> lengths;
    uint64_t rows = 0;
    for (size_t run_idx = 0; run_idx < subjects.size(); ++run_idx) {
      lengths.push_back(run_idx == 150 && long_run != 0 ? long_run
                                                        : 1 + static_cast<uint32_t>(run_idx % 127));
      rows += lengths.back();
    }
    std::string raw;
    EncodeSubjects(subjects, lengths, &raw);
    block.row_count = static_cast<uint32_t>(rows);
    std::vector<Id128> decoded_subjects;
    std::vector<uint32_t> decoded_lengths;
    ASSERT_TRUE(DecodeSubjects(raw, block, &decoded_subjects, &decoded_lengths).ok());
    EXPECT_EQ(decoded_subjects, subjects);
    EXPECT_EQ(decoded_lengths, lengths);
    block.row_count = static_cast<uint32_t>(rows + 1);
    ExpectCorruption(DecodeSubjects(raw, block, &decoded_subjects, &decoded_lengths),
                     "cover " + std::to_string(rows) + " rows");
    block.row_count = static_cast<uint32_t>(rows);
    std::vector<uint32_t> with_empty = lengths;
    with_empty[200] = 0;
    std::string empty_run;
    EncodeSubjects(subjects, with_empty, &empty_run);
    ExpectCorruption(DecodeSubjects(empty_run, block, &decoded_subjects, &decoded_lengths),
                     "subject run 200 is empty");
    // The last length with its continuation bit set and nothing after it.
    std::string cut = raw;
    cut.back() = static_cast<char>(0x81);
    ExpectCorruption(DecodeSubjects(cut, block, &decoded_subjects, &decoded_lengths),
                     "subject run length");
  }
}

TEST(SegmentInsertIdsTest, RoundTripAndSizeCheck) {
  const std::vector<Id128> ids = {{1, 2}, {UINT64_MAX, 0}, {0, UINT64_MAX}};
  std::string raw;
  EncodeInsertIds(ids, &raw);
  std::vector<Id128> decoded;
  ASSERT_TRUE(DecodeInsertIds(raw, 3, &decoded).ok());
  EXPECT_EQ(decoded, ids);
  ExpectCorruption(DecodeInsertIds(raw, 2, &decoded), "48 bytes for 2 rows");
}

TEST(SegmentKeyVersionsTest, RunLengthEncodedAndChecked) {
  std::vector<uint32_t> versions(1000, 3);
  versions.insert(versions.end(), 5, UINT32_MAX);
  std::string raw;
  EncodeKeyVersions(versions, &raw);
  EXPECT_EQ(raw.size(), 1 + (1 + 2) + (5 + 1u));
  std::vector<uint32_t> decoded;
  ASSERT_TRUE(DecodeKeyVersions(raw, versions.size(), &decoded).ok());
  EXPECT_EQ(decoded, versions);
  ExpectCorruption(DecodeKeyVersions(raw, versions.size() + 1, &decoded), "cover");
  ExpectCorruption(DecodeKeyVersions(raw, 10, &decoded), "out of range");
}

TEST(SegmentNameCodesTest, WidthFollowsDictionarySize) {
  EXPECT_EQ(CodeWidth(1), 1u);
  EXPECT_EQ(CodeWidth(256), 1u);
  EXPECT_EQ(CodeWidth(257), 2u);
  EXPECT_EQ(CodeWidth(65536), 2u);
  EXPECT_EQ(CodeWidth(65537), 4u);
  for (const size_t dictionary_size : {3u, 300u, 70000u}) {
    const std::vector<uint32_t> codes = {0, 2, 2, 1};
    std::string raw;
    EncodeNameCodes(codes, dictionary_size, &raw);
    EXPECT_EQ(raw.size(), codes.size() * CodeWidth(dictionary_size));
    std::string bitmap((dictionary_size + 7) / 8, '\0');
    bitmap[0] = 0b111;
    std::vector<uint32_t> decoded;
    ASSERT_TRUE(DecodeNameCodes(raw, codes.size(), dictionary_size, bitmap, &decoded).ok());
    EXPECT_EQ(decoded, codes);
    std::vector<uint64_t> counts;
    ASSERT_TRUE(CountNameCodes(raw, codes.size(), dictionary_size, bitmap, &counts).ok());
    std::vector<uint64_t> expected_counts(dictionary_size, 0);
    expected_counts[0] = 1;
    expected_counts[1] = 1;
    expected_counts[2] = 2;
    EXPECT_EQ(counts, expected_counts);
    bitmap[0] = 0b101;
    ExpectCorruption(DecodeNameCodes(raw, codes.size(), dictionary_size, bitmap, &decoded),
                     "bitmap");
    ExpectCorruption(CountNameCodes(raw, codes.size(), dictionary_size, bitmap, &counts), "bitmap");
    ExpectCorruption(CountNameCodes(raw, codes.size() + 1, dictionary_size, bitmap, &counts),
                     "bytes for");
  }
  std::string raw;
  EncodeNameCodes(std::vector<uint32_t>{5}, 3, &raw);
  std::vector<uint32_t> decoded;
  ExpectCorruption(DecodeNameCodes(raw, 1, 3, std::string(1, '\0'), &decoded), "past");
  std::vector<uint64_t> counts;
  ExpectCorruption(CountNameCodes(raw, 1, 3, std::string(1, '\0'), &counts), "past");
}

TEST(SegmentDictionaryTest, SortedEntriesRoundTrip) {
  const std::vector<std::string_view> entries = {"", "DE", "FR", "d\xc3\xa9j\xc3\xa0"};
  std::string raw;
  EncodeDictionary(entries, &raw);
  std::vector<std::string_view> decoded;
  ASSERT_TRUE(DecodeDictionary(raw, entries.size(), &decoded).ok());
  EXPECT_EQ(decoded, entries);
  ExpectCorruption(DecodeDictionary(raw, 3, &decoded), "footer says 3");
  std::string unsorted;
  EncodeDictionary(std::vector<std::string_view>{"b", "a"}, &unsorted);
  ExpectCorruption(DecodeDictionary(unsorted, 2, &decoded), "not sorted");
}

struct DecodedColumn {
  std::vector<PropertyTag> tags;
  std::vector<int64_t> ints;
  std::vector<double> doubles;
  std::vector<std::string_view> strings;
  std::vector<uint32_t> string_codes;
  std::vector<uint32_t> list_offsets;
  std::vector<std::string_view> list_items;
  std::vector<uint32_t> list_item_codes;
  PropertyColumnOutput Output() {
    return {&tags,         &ints,         &doubles,    &strings,
            &string_codes, &list_offsets, &list_items, &list_item_codes};
  }
};

uint8_t MaskOf(const std::vector<Value>& values) {
  uint8_t mask = 0;
  for (const Value& value : values) {
    mask |= TagBit(TagOf(value));
  }
  return mask;
}

TEST(SegmentPropertyColumnTest, MixedTypesRoundTripPlain) {
  const double nan = std::bit_cast<double>(uint64_t{0x7ff8'0000'0000'1234});
  const std::vector<Value> values = {
      Value::String("a"), Value::Int(INT64_MIN), Value::Double(nan), Value::Null(),
      Value::Bool(true),  Value::Bool(false),    Value::String(""),  Value::List({"x", ""}),
      Value::List({}),    Value::Double(-0.0),   Value::Int(-1)};
  std::vector<const Value*> pointers;
  for (const Value& value : values) {
    pointers.push_back(&value);
  }
  pointers.insert(pointers.begin() + 3, nullptr);  // one absent row
  PropertyColumnInput input;
  input.values = pointers;
  input.encoding = StringEncoding::kPlain;
  std::string raw;
  EncodePropertyColumn(input, &raw);
  DecodedColumn column;
  PropertyColumnFormat format;
  format.encoding = StringEncoding::kPlain;
  format.tag_mask = MaskOf(values);
  format.present_count = static_cast<uint32_t>(values.size());
  ASSERT_TRUE(DecodePropertyColumn(raw, pointers.size(), format, column.Output()).ok());
  ASSERT_EQ(column.tags.size(), pointers.size());
  EXPECT_EQ(column.tags[0], PropertyTag::kString);
  EXPECT_EQ(column.strings[0], "a");
  EXPECT_EQ(column.ints[1], INT64_MIN);
  EXPECT_EQ(std::bit_cast<uint64_t>(column.doubles[2]), 0x7ff8'0000'0000'1234u);
  EXPECT_EQ(column.tags[3], PropertyTag::kAbsent);
  EXPECT_EQ(column.tags[4], PropertyTag::kNull);
  EXPECT_EQ(column.tags[5], PropertyTag::kTrue);
  EXPECT_EQ(column.tags[6], PropertyTag::kFalse);
  EXPECT_EQ(column.tags[7], PropertyTag::kString);
  EXPECT_EQ(column.strings[7], "");
  EXPECT_EQ(column.list_offsets[8], 0u);
  EXPECT_EQ(column.list_offsets[9], 2u);
  EXPECT_EQ(column.list_offsets[10], 2u);  // the empty list
  EXPECT_EQ(column.list_items, (std::vector<std::string_view>{"x", ""}));
  EXPECT_TRUE(std::signbit(column.doubles[10]));
  EXPECT_EQ(column.ints[11], -1);
  EXPECT_TRUE(column.string_codes.empty());

  format.present_count -= 1;
  ExpectCorruption(DecodePropertyColumn(raw, pointers.size(), format, column.Output()),
                   "present rows");
  format.present_count += 1;
  format.tag_mask &= static_cast<uint8_t>(~TagBit(PropertyTag::kDouble));
  ExpectCorruption(DecodePropertyColumn(raw, pointers.size(), format, column.Output()), "tag mask");
}

TEST(SegmentPropertyColumnTest, DictionaryCodesPointIntoTheDictionary) {
  const std::vector<std::string_view> dictionary = {"DE", "FR", "US"};
  const Value de = Value::String("DE");
  const Value us = Value::String("US");
  const Value list = Value::List({"FR", "DE"});
  const std::vector<const Value*> values = {&us, &de, nullptr, &list, &us};
  PropertyColumnInput input;
  input.values = values;
  input.encoding = StringEncoding::kDictionary;
  input.dictionary_size = dictionary.size();
  const std::vector<uint32_t> string_codes = {2, 0, 2};
  const std::vector<uint32_t> list_codes = {1, 0};
  input.string_codes = string_codes;
  input.list_codes = list_codes;
  std::string raw;
  EncodePropertyColumn(input, &raw);
  DecodedColumn column;
  PropertyColumnFormat format;
  format.encoding = StringEncoding::kDictionary;
  format.tag_mask = TagBit(PropertyTag::kString) | TagBit(PropertyTag::kList);
  format.dictionary = dictionary;
  format.present_count = 4;
  ASSERT_TRUE(DecodePropertyColumn(raw, values.size(), format, column.Output()).ok());
  EXPECT_EQ(column.string_codes, (std::vector<uint32_t>{2, 0, 0, 0, 2}));
  EXPECT_EQ(column.strings[4], "US");
  EXPECT_EQ(column.strings[4].data(), dictionary[2].data());
  EXPECT_EQ(column.list_item_codes, list_codes);
  EXPECT_EQ(column.list_items, (std::vector<std::string_view>{"FR", "DE"}));

  format.dictionary = std::span(dictionary).first(2);
  ExpectCorruption(DecodePropertyColumn(raw, values.size(), format, column.Output()),
                   "past the dictionary");
}

TEST(SegmentPropertyColumnTest, UniformTagsTakeTwoBytes) {
  const Value seven = Value::Int(7);
  const std::vector<const Value*> values(1000, &seven);
  PropertyColumnInput input;
  input.values = values;
  std::string raw;
  EncodePropertyColumn(input, &raw);
  EXPECT_EQ(raw.size(), 2 + 1000u);  // layout, one tag, a varint per row
  DecodedColumn column;
  PropertyColumnFormat format;
  format.tag_mask = TagBit(PropertyTag::kInt);
  format.present_count = 1000;
  ASSERT_TRUE(DecodePropertyColumn(raw, 1000, format, column.Output()).ok());
  EXPECT_EQ(column.ints, std::vector<int64_t>(1000, 7));
  EXPECT_TRUE(column.doubles.empty());
  EXPECT_TRUE(column.strings.empty());
}

// Longer than the 16 x 255 bytes CountEqualBytes counts between flushes of
// its one-byte counters, with tags mixed: the counts behind every section's
// size and every selected row's rank must be exact, and a tag outside the
// column's mask, or unknown, is still found.
TEST(SegmentPropertyColumnTest, TagsOfALongColumnAreCountedExactlyAndChecked) {
  constexpr size_t kRows = 10'007;
  std::vector<Value> values;
  values.reserve(kRows);  // no reallocation: `pointers` point into it
  std::vector<const Value*> pointers;
  std::mt19937 random(7);
  for (size_t row_idx = 0; row_idx < kRows; ++row_idx) {
    const uint32_t draw = random() % 10;
    if (draw < 4) {
      pointers.push_back(nullptr);
      continue;
    }
    values.push_back(draw < 8 ? Value::String("s" + std::to_string(row_idx))
                              : Value::Int(static_cast<int64_t>(row_idx) - 5000));
    pointers.push_back(&values.back());
  }
  PropertyColumnInput input;
  input.values = pointers;
  input.encoding = StringEncoding::kPlain;
  std::string raw;
  EncodePropertyColumn(input, &raw);
  ASSERT_EQ(raw[0], 1);  // a tag per row
  PropertyColumnFormat format;
  format.encoding = StringEncoding::kPlain;
  format.tag_mask = MaskOf(values);
  format.present_count = static_cast<uint32_t>(values.size());
  DecodedColumn column;
  ASSERT_TRUE(DecodePropertyColumn(raw, kRows, format, column.Output()).ok());
  // Every third row, and a run of consecutive ones across a flush.
  std::vector<uint32_t> selected;
  for (uint32_t row_idx = 0; row_idx < kRows; row_idx += 3) {
    selected.push_back(row_idx);
    if (row_idx == 4077) {
      for (uint32_t run = 4078; run < 4085; ++run) {
        selected.push_back(run);
      }
      row_idx = 4083;
    }
  }
  DecodedColumn rows;
  ASSERT_TRUE(DecodePropertyColumnRows(raw, kRows, format, selected, rows.Output()).ok());
  ASSERT_EQ(rows.tags.size(), selected.size());
  for (size_t slot = 0; slot < selected.size(); ++slot) {
    const uint32_t row_idx = selected[slot];
    ASSERT_EQ(rows.tags[slot], column.tags[row_idx]) << row_idx;
    if (column.tags[row_idx] == PropertyTag::kString) {
      EXPECT_EQ(rows.strings[slot], column.strings[row_idx]) << row_idx;
      EXPECT_EQ(rows.strings[slot], "s" + std::to_string(row_idx));
    } else if (column.tags[row_idx] == PropertyTag::kInt) {
      EXPECT_EQ(rows.ints[slot], column.ints[row_idx]) << row_idx;
      EXPECT_EQ(rows.ints[slot], static_cast<int64_t>(row_idx) - 5000);
    }
  }

  std::string damaged = raw;
  damaged[1 + 6000] = static_cast<char>(PropertyTag::kDouble);  // known, not in the mask
  ExpectCorruption(DecodePropertyColumn(damaged, kRows, format, column.Output()), "tag mask");
  ExpectCorruption(DecodePropertyColumnRows(damaged, kRows, format, selected, rows.Output()),
                   "tag mask");
  damaged[1 + 6000] = 9;
  ExpectCorruption(DecodePropertyColumn(damaged, kRows, format, column.Output()), "unknown");
  ExpectCorruption(DecodePropertyColumnRows(damaged, kRows, format, selected, rows.Output()),
                   "unknown");
}

TEST(SegmentMapColumnTest, EntriesRoundTripByKey) {
  const Value a = Value::String(std::string("x\0y", 3));
  const Value b = Value::Int(-5);
  const Value c = Value::List({"p", "q"});
  const Value d = Value::Null();
  // Row 0: keys 0, 2; row 1: none; row 2: keys 1, 2.
  const std::vector<MapEntryInput> entries = {{0, &a}, {2, &c}, {1, &b}, {2, &d}};
  const std::vector<uint32_t> ends = {2, 2, 4};
  std::string raw;
  EncodeMapColumn(entries, ends, &raw);
  const std::vector<uint8_t> masks = {TagBit(PropertyTag::kString), TagBit(PropertyTag::kInt),
                                      TagBit(PropertyTag::kList) | TagBit(PropertyTag::kNull)};
  DecodedColumn column;
  ASSERT_TRUE(DecodeMapKey(raw, 3, 4, masks, 2, column.Output()).ok());
  EXPECT_EQ(column.tags, (std::vector<PropertyTag>{PropertyTag::kList, PropertyTag::kAbsent,
                                                   PropertyTag::kNull}));
  EXPECT_EQ(column.list_offsets, (std::vector<uint32_t>{0, 2, 2, 2}));
  EXPECT_EQ(column.list_items, (std::vector<std::string_view>{"p", "q"}));
  ASSERT_TRUE(DecodeMapKey(raw, 3, 4, masks, 0, column.Output()).ok());
  EXPECT_EQ(column.strings[0], std::string_view("x\0y", 3));

  std::vector<std::pair<size_t, uint32_t>> seen;
  MapChunkReader reader(raw, 3, masks.size());
  ASSERT_TRUE(reader
                  .ForEach(4, masks,
                           [&](size_t row, uint32_t code, PropertyTag tag, std::string_view bytes) {
                             seen.emplace_back(row, code);
                             Value value;
                             ASSERT_TRUE(DecodeMapValue(tag, bytes, &value).ok());
                             EXPECT_EQ(value, *entries[seen.size() - 1].value);
                           })
                  .ok());
  EXPECT_EQ(seen.size(), 4u);
  ExpectCorruption(DecodeMapKey(raw, 3, 5, masks, 0, column.Output()), "descriptor says 5");
  ExpectCorruption(DecodeMapKey(raw, 2, 4, masks, 0, column.Output()), "unread bytes");
}

TEST(SegmentMapColumnTest, KeysOutOfOrderAreCorruption) {
  const Value one = Value::Int(1);
  const std::vector<MapEntryInput> entries = {{1, &one}, {0, &one}};
  const std::vector<uint32_t> ends = {2};
  std::string raw;
  EncodeMapColumn(entries, ends, &raw);
  const std::vector<uint8_t> masks = {TagBit(PropertyTag::kInt), TagBit(PropertyTag::kInt)};
  DecodedColumn column;
  ExpectCorruption(DecodeMapKey(raw, 1, 2, masks, 0, column.Output()), "out of order");
}

// Rows without entries are skipped a run of zero bytes at a time: runs of
// every length up to a few words, at the chunk's start and end, must land on
// exactly the rows that hold entries.
TEST(SegmentMapColumnTest, RunsOfRowsWithoutEntriesAreSkippedExactly) {
  const Value one = Value::Int(1);
  const Value text = Value::String(std::string("\0\0", 2));  // zero bytes inside a value
  const std::vector<uint32_t> entry_rows = {3, 4, 12, 13, 14, 31, 32, 100, 4099, 4107};
  constexpr size_t kRows = 4120;
  std::vector<MapEntryInput> entries;
  std::vector<uint32_t> ends;
  for (size_t row_idx = 0; row_idx < kRows; ++row_idx) {
    if (std::find(entry_rows.begin(), entry_rows.end(), row_idx) != entry_rows.end()) {
      entries.push_back({0, row_idx % 2 == 0 ? &text : &one});
    }
    ends.push_back(static_cast<uint32_t>(entries.size()));
  }
  std::string raw;
  EncodeMapColumn(entries, ends, &raw);
  const std::vector<uint8_t> masks = {
      static_cast<uint8_t>(TagBit(PropertyTag::kInt) | TagBit(PropertyTag::kString))};
  const auto entry_count = static_cast<uint32_t>(entries.size());
  DecodedColumn column;
  ASSERT_TRUE(DecodeMapKey(raw, kRows, entry_count, masks, 0, column.Output()).ok());
  for (size_t row_idx = 0; row_idx < kRows; ++row_idx) {
    const bool has = std::find(entry_rows.begin(), entry_rows.end(), row_idx) != entry_rows.end();
    ASSERT_EQ(column.tags[row_idx] != PropertyTag::kAbsent, has) << row_idx;
  }
  EXPECT_EQ(column.strings[4], std::string_view("\0\0", 2));
  EXPECT_EQ(column.ints[13], 1);
  const std::vector<uint32_t> selected = {0, 4, 13, 99, 100, 4107, 4119};
  DecodedColumn rows;
  const std::vector<PropertyColumnOutput> outputs = {rows.Output()};
  ASSERT_TRUE(DecodeMapRows(raw, kRows, entry_count, masks, selected, outputs).ok());
  EXPECT_EQ(rows.tags, (std::vector<PropertyTag>{PropertyTag::kAbsent, PropertyTag::kString,
                                                 PropertyTag::kInt, PropertyTag::kAbsent,
                                                 PropertyTag::kString, PropertyTag::kInt,
                                                 PropertyTag::kAbsent}));
  // A row fewer leaves the last row's zero byte unread; a row more runs out.
  ExpectCorruption(DecodeMapKey(raw, kRows - 1, entry_count, masks, 0, column.Output()),
                   "unread bytes");
  EXPECT_FALSE(DecodeMapKey(raw, kRows + 1, entry_count, masks, 0, column.Output()).ok());
}

std::string Decompressed(std::string_view stored, const ChunkRef& ref) {
  std::string scratch;
  std::string_view view;
  const Status status = DecompressChunk(stored, ref, &scratch, &view);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return std::string(view);
}

TEST(SegmentCompressionTest, EveryCodecRoundTrips) {
  std::string raw;
  for (int index = 0; index < 5000; ++index) {
    raw += "event-" + std::to_string(index % 37) + ";";
  }
  ChunkCompressor compressor(3);
  for (const SegmentCodec codec : {SegmentCodec::kNone, SegmentCodec::kLz4, SegmentCodec::kZstd}) {
    ChunkRef ref;
    std::string stored;
    compressor.Compress(raw, &codec, &ref, &stored);
    EXPECT_EQ(ref.codec, codec);
    EXPECT_EQ(ref.raw_bytes, raw.size());
    EXPECT_EQ(ref.stored_bytes, stored.size());
    EXPECT_EQ(Decompressed(stored, ref), raw) << SegmentCodecName(codec);
    if (codec != SegmentCodec::kNone) {
      EXPECT_LT(stored.size(), raw.size() / 4);
    }
  }
}

TEST(SegmentCompressionTest, MeasuredChoiceKeepsRandomBytesUncompressed) {
  std::mt19937_64 random(7);
  std::string noise;
  for (int index = 0; index < 4096; ++index) {
    noise.push_back(static_cast<char>(random()));
  }
  ChunkCompressor compressor(3);
  ChunkRef ref;
  std::string stored;
  compressor.Compress(noise, nullptr, &ref, &stored);
  EXPECT_EQ(ref.codec, SegmentCodec::kNone);
  EXPECT_EQ(stored, noise);

  // Runs of one byte: lz4 is within 1/16 of zstd here, so lz4 is kept.
  const std::string runs(100000, 'a');
  stored.clear();
  compressor.Compress(runs, nullptr, &ref, &stored);
  EXPECT_NE(ref.codec, SegmentCodec::kNone);
  EXPECT_EQ(Decompressed(stored, ref), runs);

  // Small text where zstd's entropy coding wins by far: zstd.
  std::string letters;
  for (int index = 0; index < 20000; ++index) {
    letters.push_back("ab"[random() % 2]);
  }
  stored.clear();
  compressor.Compress(letters, nullptr, &ref, &stored);
  EXPECT_EQ(ref.codec, SegmentCodec::kZstd);
  EXPECT_EQ(Decompressed(stored, ref), letters);
}

TEST(SegmentCompressionTest, DamageIsCorruptionNotACrash) {
  const std::string raw(1000, 'z');
  ChunkCompressor compressor(3);
  for (const SegmentCodec codec : {SegmentCodec::kLz4, SegmentCodec::kZstd}) {
    ChunkRef ref;
    std::string stored;
    compressor.Compress(raw, &codec, &ref, &stored);
    std::string scratch;
    std::string_view view;
    std::string flipped = stored;
    flipped[flipped.size() / 2] ^= 0x40;
    ExpectCorruption(DecompressChunk(flipped, ref, &scratch, &view), "checksum mismatch");
    // A garbled stream behind a matching checksum (a writer bug) is still caught.
    ChunkRef lying = ref;
    lying.crc32 = Crc32(0, flipped);
    for (size_t position = 0; position < flipped.size(); ++position) {
      std::string garbled = stored;
      garbled[position] ^= 0x5a;
      lying.crc32 = Crc32(0, garbled);
      const Status status = DecompressChunk(garbled, lying, &scratch, &view);
      if (status.ok()) {
        EXPECT_EQ(view.size(), raw.size());
      } else {
        EXPECT_EQ(status.code(), StatusCode::kCorruption);
      }
    }
    lying = ref;
    lying.raw_bytes += 1;
    ExpectCorruption(DecompressChunk(stored, lying, &scratch, &view), "decompress to");
  }
}

SegmentFooter SmallFooter() {
  SegmentFooter footer;
  footer.project_id = 9;
  footer.row_count = 3;
  footer.subject_count = 2;
  footer.time_min_ms = 100;
  footer.time_max_ms = 300;
  footer.subject_min = {0, 1};
  footer.subject_max = {0, 2};
  footer.block_rows_max = 2;
  footer.event_names = {{"a", 2}, {"b", 1}};
  FooterColumn column;
  column.key = "plan";
  column.row_count = 3;
  column.tag_mask = TagBit(PropertyTag::kString);
  column.encoding = StringEncoding::kDictionary;
  column.dictionary_size = 2;
  column.dictionary.raw_bytes = column.dictionary.stored_bytes = 10;
  footer.columns.push_back(column);
  footer.map_keys = {{"rare", 1, TagBit(PropertyTag::kInt)}};
  for (int block_idx = 0; block_idx < 2; ++block_idx) {
    FooterBlock block;
    block.row_count = block_idx == 0 ? 2 : 1;
    block.time_min_ms = block_idx == 0 ? 100 : 150;
    block.time_max_ms = block_idx == 0 ? 200 : 300;
    block.subject_first = block_idx == 0 ? Id128{0, 1} : Id128{0, 2};
    block.subject_last = block.subject_first;
    block.subject_run_count = 1;
    block.name_bitmap = std::string(1, block_idx == 0 ? '\x01' : '\x02');
    block.chunks.resize(kFixedColumnCount + 2);
    for (ChunkRef& ref : block.chunks) {
      ref.raw_bytes = ref.stored_bytes = 5;
    }
    footer.blocks.push_back(block);
  }
  return footer;
}

TEST(SegmentFooterTest, RoundTripsAndPlacesChunks) {
  const SegmentFooter footer = SmallFooter();
  std::string bytes;
  EncodeSegmentFooter(footer, &bytes);
  const uint64_t data_bytes = 10 + 2 * 7 * 5;
  const auto decoded = DecodeSegmentFooter(bytes, data_bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->project_id, 9u);
  EXPECT_EQ(decoded->columns[0].dictionary.offset, kSegmentHeaderBytes);
  EXPECT_EQ(decoded->blocks[0].chunks[0].offset, kSegmentHeaderBytes + 10);
  EXPECT_EQ(decoded->blocks[1].chunks[0].offset, kSegmentHeaderBytes + 10 + 35);
  EXPECT_EQ(decoded->blocks[1].first_row, 2u);
  EXPECT_EQ(decoded->map_keys[0].key, "rare");

  ExpectCorruption(DecodeSegmentFooter(bytes, data_bytes + 1).status(), "chunks cover");
  ExpectCorruption(DecodeSegmentFooter(bytes, data_bytes - 1).status(), "past the data region");
  ExpectCorruption(DecodeSegmentFooter(bytes + "x", data_bytes).status(), "unread bytes");
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_EQ(DecodeSegmentFooter(bytes.substr(0, cut), data_bytes).status().code(),
              StatusCode::kCorruption);
  }
}

TEST(SegmentFooterTest, InconsistentIndexesAreCorruption) {
  auto check = [](SegmentFooter footer, std::string_view words) {
    std::string bytes;
    EncodeSegmentFooter(footer, &bytes);
    ExpectCorruption(DecodeSegmentFooter(bytes, 10 + 2 * 7 * 5).status(), words);
  };
  SegmentFooter footer = SmallFooter();
  footer.event_names = {{"b", 2}, {"a", 1}};
  check(footer, "not sorted");
  footer = SmallFooter();
  footer.event_names[0].row_count = 1;
  check(footer, "add up");
  footer = SmallFooter();
  footer.map_keys[0].key = "plan";
  check(footer, "both a column and a map key");
  footer = SmallFooter();
  footer.blocks[1].time_max_ms = 250;
  check(footer, "time ranges");
  footer = SmallFooter();
  footer.blocks[1].row_count = 3;
  check(footer, "out of range");
  footer = SmallFooter();
  footer.blocks[0].name_bitmap = "\x04";
  check(footer, "past the dictionary");
  footer = SmallFooter();
  footer.columns[0].encoding = StringEncoding::kNone;
  check(footer, "does not match its tags");
  footer = SmallFooter();
  footer.blocks[0].subject_first = {0, 3};
  footer.blocks[0].subject_last = {0, 3};
  check(footer, "previous block");
}

}  // namespace
}  // namespace minpanel::store

namespace minpanel::store {
namespace {

// A granular chunk's granules hold exactly what EncodePropertyColumn writes
// for their rows alone (empty where no row has the key), and decode, whole
// or by selected rows, as the chunk stored whole does.
TEST(SegmentGranuleTest, SplitGranulesEqualTheirRowsEncodedAlone) {
  std::vector<Value> values;
  std::vector<const Value*> pointers;
  for (int row = 0; row < 200; ++row) {
    switch (row % 7) {
      case 0: values.push_back(Value::Int(row * 1000 - 7)); break;
      case 1: values.push_back(Value::String(std::string(static_cast<size_t>(row % 5), 'q'))); break;
      case 2: values.push_back(Value::List({"a", std::to_string(row)})); break;
      case 3: values.push_back(Value::Double(row / 3.0)); break;
      case 4: values.push_back(Value::Bool(row % 2 == 0)); break;
      default: values.push_back(Value::Null()); break;
    }
  }
  for (size_t row = 0; row < values.size(); ++row) {
    // Rows 100 .. 139 lack the key: granule 2 below is empty.
    pointers.push_back(row >= 100 && row < 140 ? nullptr : &values[row]);
  }
  PropertyColumnInput input;
  input.values = pointers;
  input.encoding = StringEncoding::kPlain;
  std::string raw;
  EncodePropertyColumn(input, &raw);
  const std::vector<uint32_t> ends = {50, 100, 140, 199, 200};
  std::vector<std::string> granules;
  std::vector<uint32_t> present;
  ASSERT_TRUE(SplitPropertyColumn(raw, pointers.size(), StringEncoding::kPlain, 0, ends, &granules,
                                  &present)
                  .ok());
  uint32_t begin = 0;
  uint32_t present_total = 0;
  for (size_t granule_idx = 0; granule_idx < ends.size(); ++granule_idx) {
    PropertyColumnInput part;
    part.values = std::span<const Value* const>(pointers).subspan(begin, ends[granule_idx] - begin);
    part.encoding = StringEncoding::kPlain;
    std::string alone;
    uint32_t part_present = 0;
    for (const Value* value : part.values) {
      part_present += value != nullptr ? 1 : 0;
    }
    if (part_present > 0) {
      EncodePropertyColumn(part, &alone);
    }
    EXPECT_EQ(granules[granule_idx], alone) << granule_idx;
    EXPECT_EQ(present[granule_idx], part_present) << granule_idx;
    present_total += part_present;
    begin = ends[granule_idx];
  }
  EXPECT_TRUE(granules[2].empty());

  ChunkCompressor compressor(1);
  FooterColumn column;
  column.encoding = StringEncoding::kPlain;
  ChunkRef ref;
  std::string stored;
  ASSERT_TRUE(CompressPropertyChunk(compressor, raw, pointers.size(), &column, 0, ends,
                                    /*granule_ratio_min=*/0, present_total, nullptr, &ref,
                                    &stored)
                  .ok());
  EXPECT_EQ(ref.codec, SegmentCodec::kGranules);
  EXPECT_EQ(ref.present_count, present_total);
  std::vector<GranuleRef> directory;
  ASSERT_TRUE(DecodeGranuleDirectory(stored, ref, pointers.size(), &directory).ok());
  ASSERT_EQ(directory.size(), ends.size());
  std::vector<std::string> decoded(directory.size());
  std::vector<ChunkGranule> all;
  for (size_t granule_idx = 0; granule_idx < directory.size(); ++granule_idx) {
    decoded[granule_idx].resize(directory[granule_idx].raw_bytes);
    ASSERT_TRUE(DecompressGranule(stored, directory[granule_idx], decoded[granule_idx].data()).ok());
    EXPECT_EQ(decoded[granule_idx], granules[granule_idx]);
    all.push_back(ChunkGranule{directory[granule_idx].row_begin, directory[granule_idx].row_count,
                               directory[granule_idx].present_count, decoded[granule_idx]});
  }
  PropertyColumnFormat format;
  format.encoding = StringEncoding::kPlain;
  format.tag_mask = MaskOf(values);
  format.present_count = present_total;
  DecodedColumn whole;
  DecodedColumn pieces;
  ASSERT_TRUE(DecodePropertyColumn(raw, pointers.size(), format, whole.Output()).ok());
  const Status status = DecodePropertyColumn(all, pointers.size(), format, pieces.Output());
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(pieces.tags, whole.tags);
  EXPECT_EQ(pieces.ints, whole.ints);
  EXPECT_EQ(pieces.strings, whole.strings);
  EXPECT_EQ(pieces.list_offsets, whole.list_offsets);
  EXPECT_EQ(pieces.list_items, whole.list_items);
  // Selected rows from granules 1 and 3 only (2 is empty, 0 and 4 not read).
  const std::vector<uint32_t> selected = {60, 99, 141, 198};
  const std::vector<ChunkGranule> some = {all[1], all[3]};
  DecodedColumn rows;
  ASSERT_TRUE(
      DecodePropertyColumnGranuleRows(some, pointers.size(), format, selected, rows.Output()).ok());
  DecodedColumn rows_whole;
  ASSERT_TRUE(
      DecodePropertyColumnRows(raw, pointers.size(), format, selected, rows_whole.Output()).ok());
  EXPECT_EQ(rows.tags, rows_whole.tags);
  EXPECT_EQ(rows.ints, rows_whole.ints);
  EXPECT_EQ(rows.strings, rows_whole.strings);
  EXPECT_EQ(rows.list_offsets, rows_whole.list_offsets);
  EXPECT_EQ(rows.list_items, rows_whole.list_items);
  // A selected row in no granule given is refused, not guessed.
  const std::vector<uint32_t> outside = {10};
  EXPECT_FALSE(
      DecodePropertyColumnGranuleRows(some, pointers.size(), format, outside, rows.Output()).ok());

  // Directories that do not add up to their chunk are Corruption.
  ChunkRef lying = ref;
  lying.present_count += 1;
  ExpectCorruption(DecodeGranuleDirectory(stored, lying, pointers.size(), &directory),
                   "does not add up");
  ExpectCorruption(DecodeGranuleDirectory(stored, ref, pointers.size() + 1, &directory),
                   "does not add up");
  for (size_t cut = 0; cut < 12; ++cut) {
    EXPECT_FALSE(DecodeGranuleDirectory(std::string_view(stored).substr(0, cut), ref,
                                        pointers.size(), &directory)
                     .ok());
  }
  for (size_t position = 0; position < 20; ++position) {
    std::string garbled = stored;
    garbled[position] ^= 0x5a;
    const Status garbled_status =
        DecodeGranuleDirectory(garbled, ref, pointers.size(), &directory);
    EXPECT_FALSE(garbled_status.ok()) << position;
  }
}

// A map chunk splits at row boundaries: each granule is its rows' entries.
TEST(SegmentGranuleTest, MapChunksSplitAtRows) {
  const Value one = Value::Int(1);
  const Value text = Value::String("t");
  const std::vector<MapEntryInput> entries = {{0, &one}, {2, &text}, {1, &one}, {0, &text}};
  const std::vector<uint32_t> entry_ends = {2, 2, 2, 3, 4, 4};
  std::string raw;
  EncodeMapColumn(entries, entry_ends, &raw);
  std::vector<std::string> granules;
  std::vector<uint32_t> counts;
  ASSERT_TRUE(SplitMapColumn(raw, 6, 3, std::vector<uint32_t>{1, 3, 6}, &granules, &counts).ok());
  EXPECT_EQ(counts, (std::vector<uint32_t>{2, 0, 2}));
  EXPECT_TRUE(granules[1].empty());
  std::string first;
  EncodeMapColumn(std::span(entries).subspan(0, 2), std::vector<uint32_t>{2}, &first);
  EXPECT_EQ(granules[0], first);
  EXPECT_EQ(granules[0] + std::string(2, '\0') + granules[2], raw);
}

}  // namespace
}  // namespace minpanel::store
