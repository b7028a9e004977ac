// Segment files end to end: round trips of random events, the column-vs-map
// and dictionary-vs-plain choices, per-block reads, zone maps and block
// skipping, crash-safe writing, and every recovery path (torn, flipped,
// missing, newer version).
#include "store/segment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "core/fault_file_system.h"
#include "core/time_units.h"
#include "store/segment_merge.h"
#include "store/store.h"
#include "store/store_test_util.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

// Values compare bit for bit, so NaN equals the same NaN and -0.0 is not 0.0.
bool SameValue(const Value& a, const Value& b) {
  if (a.type() != b.type()) {
    return false;
  }
  if (a.type() == Value::Type::kDouble) {
    return std::bit_cast<uint64_t>(a.as_double()) == std::bit_cast<uint64_t>(b.as_double());
  }
  return a == b;
}

std::string Describe(const Event& event) {
  std::ostringstream out;
  out << event.name << " t=" << event.time_ms << " s=" << event.subject.ToHex()
      << " i=" << event.insert_id.ToHex() << " kv=" << event.key_version << " props=";
  for (const Property& property : event.properties) {
    out << property.key << ":" << static_cast<int>(property.value.type()) << " ";
  }
  return out.str();
}

void ExpectSameEvent(const Event& actual, const Event& expected, size_t row) {
  ASSERT_EQ(actual.name, expected.name) << row;
  ASSERT_EQ(actual.time_ms, expected.time_ms) << row;
  ASSERT_EQ(actual.subject, expected.subject) << row;
  ASSERT_EQ(actual.insert_id, expected.insert_id) << row;
  ASSERT_EQ(actual.key_version, expected.key_version) << row;
  ASSERT_EQ(actual.policy_version, expected.policy_version) << row;
  ASSERT_EQ(actual.properties.size(), expected.properties.size()) << row << "\n"
                                                                  << Describe(actual) << "\n"
                                                                  << Describe(expected);
  for (size_t property_idx = 0; property_idx < actual.properties.size(); ++property_idx) {
    ASSERT_EQ(actual.properties[property_idx].key, expected.properties[property_idx].key) << row;
    ASSERT_TRUE(
        SameValue(actual.properties[property_idx].value, expected.properties[property_idx].value))
        << row << " " << actual.properties[property_idx].key;
  }
}

// What the reader must return: rows sorted by (subject, time, insert id),
// ties in input order, each event's properties sorted by key.
std::vector<Event> Canonical(std::vector<Event> events) {
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return std::tie(a.subject, a.time_ms, a.insert_id) <
           std::tie(b.subject, b.time_ms, b.insert_id);
  });
  for (Event& event : events) {
    std::sort(event.properties.begin(), event.properties.end(),
              [](const Property& a, const Property& b) { return a.key < b.key; });
  }
  return events;
}

// A seeded generator of awkward events: many subjects, names and keys, each
// key with mixed types, nulls, empty strings, unicode, NUL bytes, lists,
// extreme ints, NaN with a payload, infinities, -0.0 and denormals.
class RandomEvents {
 public:
  explicit RandomEvents(uint64_t seed) : random_(seed) {
    for (int subject_idx = 0; subject_idx < 60; ++subject_idx) {
      subjects_.push_back(Id128{random_() % 4, random_()});
    }
  }

  std::vector<Event> Make(size_t count) {
    std::vector<Event> events;
    for (size_t event_idx = 0; event_idx < count; ++event_idx) {
      events.push_back(MakeOne());
    }
    return events;
  }

 private:
  Event MakeOne() {
    static const std::vector<std::string> kNames = {"$pageview",
                                                    "sign_up",
                                                    "purchase",
                                                    "",
                                                    "caf\xc3\xa9",
                                                    "\xe6\x97\xa5\xe6\x9c\xac",
                                                    std::string("a\0b", 3),
                                                    "checkout",
                                                    "x"};
    Event event;
    event.name = kNames[Below(kNames.size())];
    event.subject = subjects_[Below(Below(2) == 0 ? 5 : subjects_.size())];
    event.time_ms = RandomTime();
    event.insert_id = Id128{random_(), random_()};
    event.key_version = Below(10) == 0 ? static_cast<uint32_t>(random_()) : 1;
    // Mostly one version (one run), a policy change now and then, and the
    // unknown version of rows merged from older files.
    event.policy_version = Below(20) == 0   ? static_cast<uint32_t>(random_())
                           : Below(20) == 0 ? kPolicyVersionUnknown
                                            : 2;
    for (size_t key_idx = 0; key_idx < 30; ++key_idx) {
      // Key k is present in about (30 - k) / 31 of the rows; the last are rare.
      if (Below(31) < 30 - key_idx || (key_idx >= 27 && Below(200) == 0)) {
        event.properties.push_back(Property{"key" + std::to_string(key_idx), RandomValue()});
      }
    }
    if (Below(50) == 0) {
      event.properties.push_back(Property{"", Value::String("empty key")});
    }
    std::shuffle(event.properties.begin(), event.properties.end(), random_);
    return event;
  }

  int64_t RandomTime() {
    switch (Below(20)) {
      case 0:
        return INT64_MIN + static_cast<int64_t>(Below(3));
      case 1:
        return INT64_MAX - static_cast<int64_t>(Below(3));
      case 2:
        return -static_cast<int64_t>(Below(1'000'000));
      default:
        return 1'700'000'000'000 + static_cast<int64_t>(Below(1'000'000'000));
    }
  }

  std::string RandomString() {
    static const std::vector<std::string> kStrings = {"",
                                                      "pro",
                                                      "free",
                                                      "enterprise",
                                                      "DE",
                                                      "FR",
                                                      "\xf0\x9f\x98\x80 emoji",
                                                      std::string("nul\0inside", 10),
                                                      std::string(300, 'w'),
                                                      "\xff\xfe not utf-8"};
    if (Below(4) == 0) {
      return "unique-" + std::to_string(random_());
    }
    return kStrings[Below(kStrings.size())];
  }

  Value RandomValue() {
    switch (Below(12)) {
      case 0:
        return Value::Null();
      case 1:
        return Value::Bool(Below(2) == 0);
      case 2: {
        static const std::vector<int64_t> kInts = {0, -1, 1, INT64_MIN, INT64_MAX, 1920, -42};
        return Value::Int(Below(2) == 0 ? kInts[Below(kInts.size())]
                                        : static_cast<int64_t>(random_()));
      }
      case 3: {
        static const std::vector<double> kDoubles = {
            0.0,
            -0.0,
            std::numeric_limits<double>::infinity(),
            -std::numeric_limits<double>::infinity(),
            std::bit_cast<double>(uint64_t{0x7ff8'0000'dead'beef}),
            std::bit_cast<double>(uint64_t{0xfff0'0000'0000'0001}),
            std::numeric_limits<double>::denorm_min(),
            9.99};
        return Value::Double(Below(2) == 0 ? kDoubles[Below(kDoubles.size())]
                                           : std::bit_cast<double>(random_()));
      }
      case 4: {
        StringList items;
        const size_t count = Below(4);
        for (size_t item_idx = 0; item_idx < count; ++item_idx) {
          items.push_back(RandomString());
        }
        return Value::List(std::move(items));
      }
      default:
        return Value::String(RandomString());
    }
  }

  size_t Below(size_t bound) { return static_cast<size_t>(random_() % bound); }

  std::mt19937_64 random_;
  std::vector<Id128> subjects_;
};

std::unique_ptr<SegmentReader> OpenImage(std::string image) {
  auto reader = SegmentReader::Open(std::move(image), "test.seg");
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return reader.ok() ? std::move(reader).value() : nullptr;
}

std::string Encode(const std::vector<Event>& events, const SegmentWriteOptions& options) {
  auto image = EncodeSegment(events, options);
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  return image.ok() ? std::move(image).value() : std::string();
}

std::vector<Event> ReadAll(const SegmentReader& reader) {
  std::vector<Event> all;
  std::vector<Event> block_events;
  for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
    const Status status = reader.ReadEvents(block_idx, &block_events);
    EXPECT_TRUE(status.ok()) << status.ToString();
    all.insert(all.end(), block_events.begin(), block_events.end());
  }
  return all;
}

void ExpectRoundTrip(const std::vector<Event>& events, const SegmentWriteOptions& options) {
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, options));
  ASSERT_NE(reader, nullptr);
  const std::vector<Event> expected = Canonical(events);
  const std::vector<Event> actual = ReadAll(*reader);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t row = 0; row < actual.size(); ++row) {
    ExpectSameEvent(actual[row], expected[row], row);
  }
  EXPECT_TRUE(reader->Verify().ok());
}

SegmentWriteOptions SmallBlocks(uint32_t rows) {
  SegmentWriteOptions options;
  options.project_id = 7;
  options.block_rows_max = rows;
  options.own_column_fraction_min = 0.05;
  return options;
}

TEST(SegmentRoundTripTest, RandomEventsComeBackExactly) {
  for (const uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    RandomEvents generator(seed);
    ExpectRoundTrip(generator.Make(3000), SmallBlocks(256));
  }
}

SegmentWriteOptions SmallGranules(uint32_t block_rows, uint32_t granule_rows) {
  SegmentWriteOptions options = SmallBlocks(block_rows);
  options.granule_rows = granule_rows;
  return options;  // the default granule_ratio_min, 0: granules however the chunk compresses
}

// How many of a reader's property and map chunks are granular.
size_t GranularChunks(const SegmentReader& reader) {
  size_t granular = 0;
  for (const FooterBlock& block : reader.footer().blocks) {
    for (size_t chunk_idx = kFixedColumnCount; chunk_idx < block.chunks.size(); ++chunk_idx) {
      granular += block.chunks[chunk_idx].codec == SegmentCodec::kGranules ? 1 : 0;
    }
  }
  return granular;
}

// Granules (format 4): property and map chunks cut into row ranges at
// subject run ends, each compressed alone, read back exactly — with every
// codec forced inside them too — and not used when granule_rows is 0.
TEST(SegmentRoundTripTest, GranularChunksRoundTrip) {
  for (const uint64_t seed : {4u, 5u}) {
    SCOPED_TRACE(seed);
    RandomEvents generator(seed);
    const std::vector<Event> events = generator.Make(3000);
    const SegmentWriteOptions options = SmallGranules(512, 40);
    const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, options));
    ASSERT_NE(reader, nullptr);
    EXPECT_GT(GranularChunks(*reader), 20u);
    ExpectRoundTrip(events, options);
    const std::unique_ptr<SegmentReader> whole = OpenImage(Encode(events, SmallGranules(512, 0)));
    ASSERT_NE(whole, nullptr);
    EXPECT_EQ(GranularChunks(*whole), 0u);
    for (const SegmentCodec codec :
         {SegmentCodec::kNone, SegmentCodec::kLz4, SegmentCodec::kZstd}) {
      SCOPED_TRACE(SegmentCodecName(codec));
      SegmentWriteOptions forced = options;
      forced.codec = codec;
      ExpectRoundTrip(events, forced);
    }
  }
}

// One default block of 16,384 rows of product-like events: about 1,400
// subjects of a dozen rows, a "plan" and a "platform" per subject (chunks
// that compress very well), a "country" drawn per row, a high-cardinality
// "url" and a "price" (chunks that compress little) and rare keys in the
// map.
std::vector<Event> ProductBlockEvents() {
  static const char* const kCountries[] = {"US", "DE", "FR", "GB", "IN", "BR", "JP",
                                           "CA", "ES", "IT", "NL", "SE", "PL", "MX",
                                           "AU", "KR", "TR", "AR", "CH", "BE"};
  static const char* const kPlans[] = {"free", "pro", "team"};
  static const char* const kPlatforms[] = {"web", "ios", "android", "desktop"};
  std::mt19937_64 random(42);
  std::vector<Event> events;
  for (uint64_t row = 0; row < kSegmentBlockRowsDefault; ++row) {
    const uint64_t subject = row / 12;
    Event event = MakeEvent(row % 5 == 0 ? "purchase" : "page_viewed",
                            kTestNowMs + static_cast<int64_t>(random() % 1'000'000'000), subject,
                            row);
    event.properties = {
        {"plan", Value::String(kPlans[subject % 3])},
        {"platform", Value::String(kPlatforms[(subject / 3) % 4])},
        {"country", Value::String(kCountries[random() % 20])},
        {"url", Value::String("/p/" + std::to_string(random() % 100'000'000) + "/item-" +
                              std::to_string(random() % 1000))},
        {"price", Value::Double(static_cast<double>(random() % 1'000'000) / 100.0)},
        {"rare_" + std::to_string(random() % 2000), Value::String(std::to_string(random()))}};
    events.push_back(std::move(event));
  }
  return events;
}

// With granule_ratio_min 7 a chunk is in granules exactly when, compressed
// whole, it takes at most 1/7 of its raw bytes: here plan and platform, not
// country, url, price or the map. The default (0) cuts every chunk, infinity
// none, and every file reads back the same rows, and the same selected rows.
TEST(SegmentRoundTripTest, OnlyChunksThatCompressWellAreGranules) {
  constexpr double kRatioMin = 7;
  const std::vector<Event> events = ProductBlockEvents();
  SegmentWriteOptions options;
  options.project_id = 7;
  options.granule_ratio_min = kRatioMin;
  const std::unique_ptr<SegmentReader> chosen = OpenImage(Encode(events, options));
  ASSERT_NE(chosen, nullptr);
  ASSERT_EQ(chosen->block_count(), 1u);
  SegmentWriteOptions whole_options = options;
  whole_options.granule_rows = 0;
  const std::unique_ptr<SegmentReader> whole = OpenImage(Encode(events, whole_options));
  ASSERT_NE(whole, nullptr);
  const std::vector<ChunkRef>& chosen_chunks = chosen->footer().blocks[0].chunks;
  const std::vector<ChunkRef>& whole_chunks = whole->footer().blocks[0].chunks;
  ASSERT_EQ(chosen_chunks.size(), whole_chunks.size());
  std::set<std::string> granular_keys;
  for (size_t chunk_idx = kFixedColumnCount; chunk_idx < whole_chunks.size(); ++chunk_idx) {
    const ChunkRef& ref = whole_chunks[chunk_idx];
    const bool compresses_well = static_cast<double>(ref.stored_bytes) * kRatioMin <=
                                 static_cast<double>(ref.raw_bytes);
    const std::string key = chunk_idx + 1 == whole_chunks.size()
                                ? "(map)"
                                : chosen->footer().columns[chunk_idx - kFixedColumnCount].key;
    EXPECT_EQ(chosen_chunks[chunk_idx].codec == SegmentCodec::kGranules, compresses_well)
        << key << ": " << ref.stored_bytes << " of " << ref.raw_bytes << " bytes";
    if (chosen_chunks[chunk_idx].codec == SegmentCodec::kGranules) {
      granular_keys.insert(key);
    } else {
      // Stored whole, exactly as without granules.
      EXPECT_EQ(chosen_chunks[chunk_idx].stored_bytes, ref.stored_bytes) << key;
      EXPECT_EQ(chosen_chunks[chunk_idx].crc32, ref.crc32) << key;
    }
  }
  EXPECT_EQ(granular_keys, (std::set<std::string>{"plan", "platform"}));

  options.granule_ratio_min = kGranuleRatioMinDefault;
  const std::unique_ptr<SegmentReader> all = OpenImage(Encode(events, options));
  ASSERT_NE(all, nullptr);
  EXPECT_EQ(GranularChunks(*all), whole_chunks.size() - kFixedColumnCount);
  options.granule_ratio_min = std::numeric_limits<double>::infinity();
  const std::unique_ptr<SegmentReader> none = OpenImage(Encode(events, options));
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(GranularChunks(*none), 0u);
  EXPECT_EQ(none->footer().blocks[0].chunks.back().stored_bytes,
            whole_chunks.back().stored_bytes);

  const std::vector<Event> expected = Canonical(events);
  const std::vector<uint32_t> selected = {0, 1, 2, 700, 701, 5000, 16383};
  for (const SegmentReader* reader : {chosen.get(), all.get(), none.get(), whole.get()}) {
    const std::vector<Event> actual = ReadAll(*reader);
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t row = 0; row < actual.size(); ++row) {
      ExpectSameEvent(actual[row], expected[row], row);
    }
    EXPECT_TRUE(reader->Verify().ok());
    std::vector<PropertyColumn> columns;
    ASSERT_TRUE(reader->ReadPropertiesOfRows(0, selected, &columns).ok());
    ASSERT_EQ(columns.size(), reader->property_keys().size());
    for (size_t key_idx = 0; key_idx < columns.size(); ++key_idx) {
      const std::string& key = reader->property_keys()[key_idx].key;
      for (size_t slot = 0; slot < selected.size(); ++slot) {
        const Value* value = FindProperty(expected[selected[slot]].properties, key);
        ASSERT_EQ(columns[key_idx].tags[slot] != PropertyTag::kAbsent, value != nullptr) << key;
        if (value != nullptr) {
          EXPECT_TRUE(SameValue(columns[key_idx].ValueAt(slot), *value)) << key;
        }
      }
    }
  }
}

// Each granule ends where a subject's run ends (unless one run alone is
// longer), so the rows of one subject in a block share a granule.
TEST(SegmentFormatGranuleTest, GranulesEndAtSubjectRunEnds) {
  std::vector<uint32_t> ends;
  const std::vector<uint32_t> runs = {3, 5, 9, 1, 1, 30, 2, 2, 2};
  ChooseGranuleEnds(runs, 8, &ends);
  EXPECT_EQ(ends, (std::vector<uint32_t>{8, 17, 49, 55}));
  ChooseGranuleEnds(runs, 0, &ends);
  EXPECT_EQ(ends, (std::vector<uint32_t>{55}));
  // A tail under a quarter of the target joins the granule before it.
  ChooseGranuleEnds(std::vector<uint32_t>{10, 1}, 8, &ends);
  EXPECT_EQ(ends, (std::vector<uint32_t>{11}));
}

TEST(SegmentRoundTripTest, EveryCodecRoundTrips) {
  RandomEvents generator(11);
  const std::vector<Event> events = generator.Make(1000);
  for (const SegmentCodec codec : {SegmentCodec::kNone, SegmentCodec::kLz4, SegmentCodec::kZstd}) {
    SCOPED_TRACE(SegmentCodecName(codec));
    SegmentWriteOptions options = SmallBlocks(128);
    options.codec = codec;
    ExpectRoundTrip(events, options);
  }
}

TEST(SegmentRoundTripTest, AllColumnsOrAllMapRoundTrip) {
  RandomEvents generator(12);
  const std::vector<Event> events = generator.Make(1000);
  SegmentWriteOptions all_columns = SmallBlocks(100);
  all_columns.own_column_fraction_min = 0.0;
  ExpectRoundTrip(events, all_columns);
  SegmentWriteOptions all_map = SmallBlocks(100);
  all_map.own_columns_max = 0;
  ExpectRoundTrip(events, all_map);
}

TEST(SegmentRoundTripTest, OneEventAndOneRowBlocks) {
  RandomEvents generator(13);
  ExpectRoundTrip(generator.Make(1), SegmentWriteOptions{});
  ExpectRoundTrip(generator.Make(50), SmallBlocks(1));
}

TEST(SegmentRoundTripTest, NullEmptyStringAndAbsentStayDistinct) {
  std::vector<Event> events;
  for (int row = 0; row < 4; ++row) {
    Event event = MakeEvent("e", kTestNowMs + row, 1, static_cast<uint64_t>(row));
    event.properties.clear();
    if (row == 0) {
      event.properties.push_back({"k", Value::Null()});
    } else if (row == 1) {
      event.properties.push_back({"k", Value::String("")});
    } else if (row == 2) {
      event.properties.push_back({"k", Value::List({})});
    }
    events.push_back(event);
  }
  for (const size_t columns : {0u, 1u}) {
    SegmentWriteOptions options;
    options.own_columns_max = columns;
    const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, options));
    ASSERT_NE(reader, nullptr);
    PropertyColumn column;
    ASSERT_TRUE(reader->ReadProperty(0, "k", &column).ok());
    EXPECT_EQ(column.tags, (std::vector<PropertyTag>{PropertyTag::kNull, PropertyTag::kString,
                                                     PropertyTag::kList, PropertyTag::kAbsent}));
    EXPECT_EQ(column.strings[1], "");
    EXPECT_EQ(column.list_offsets[2], column.list_offsets[3]);
    ExpectRoundTrip(events, options);
  }
}

// Found by segment_fuzz: a column whose lists are all empty holds no string.
TEST(SegmentRoundTripTest, ColumnOfEmptyListsRoundTrips) {
  std::vector<Event> events = {MakeEvent("e", kTestNowMs, 1, 1), MakeEvent("e", kTestNowMs, 2, 2)};
  events[0].properties.push_back({"tags", Value::List({})});
  events[1].properties.push_back({"tags", Value::List({})});
  ExpectRoundTrip(events, SegmentWriteOptions{});
}

TEST(SegmentWriterTest, BadInputIsInvalidArgument) {
  EXPECT_EQ(EncodeSegment({}, SegmentWriteOptions{}).status().code(), StatusCode::kInvalidArgument);
  Event event = MakeEvent("e", kTestNowMs, 1, 1);
  event.properties.push_back({"plan", Value::Int(1)});
  const Status repeated = EncodeSegment(std::vector<Event>{event}, SegmentWriteOptions{}).status();
  EXPECT_EQ(repeated.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(repeated.message().find("plan"), std::string::npos);
  SegmentWriteOptions options;
  options.block_rows_max = kSegmentBlockRowsMax + 1;
  EXPECT_EQ(EncodeSegment(std::vector<Event>{MakeEvent("e", 1, 1, 1)}, options).status().code(),
            StatusCode::kInvalidArgument);
}

// Keys in at least own_column_fraction_min of the rows get a column; the rest
// share the map. Reads by key give the same values either way.
TEST(SegmentColumnChoiceTest, FrequentKeysGetColumnsRareKeysTheMap) {
  std::vector<Event> events;
  for (uint64_t row = 0; row < 1000; ++row) {
    Event event = MakeEvent("e", kTestNowMs + static_cast<int64_t>(row), row % 10, row);
    event.properties = {{"always", Value::String("x")}};
    if (row % 2 == 0) {
      event.properties.push_back({"half", Value::Int(static_cast<int64_t>(row))});
    }
    if (row % 200 == 0) {
      event.properties.push_back({"rare", Value::Int(static_cast<int64_t>(row))});
    }
    events.push_back(event);
  }
  SegmentWriteOptions options;
  options.own_column_fraction_min = 0.01;  // 10 rows of 1000
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, options));
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->property_keys().size(), 3u);
  EXPECT_EQ(reader->FindPropertyKey("always")->storage, PropertyStorage::kColumn);
  EXPECT_EQ(reader->FindPropertyKey("half")->storage, PropertyStorage::kColumn);
  EXPECT_EQ(reader->FindPropertyKey("half")->row_count, 500u);
  EXPECT_EQ(reader->FindPropertyKey("rare")->storage, PropertyStorage::kMap);
  EXPECT_EQ(reader->FindPropertyKey("rare")->row_count, 5u);
  EXPECT_EQ(reader->FindPropertyKey("rare")->tag_mask, TagBit(PropertyTag::kInt));
  EXPECT_EQ(reader->FindPropertyKey("missing"), nullptr);

  options.own_columns_max = 0;
  const std::unique_ptr<SegmentReader> map_only = OpenImage(Encode(events, options));
  ASSERT_NE(map_only, nullptr);
  EXPECT_EQ(map_only->FindPropertyKey("half")->storage, PropertyStorage::kMap);
  for (const std::string_view key : {"always", "half", "rare", "missing"}) {
    PropertyColumn from_column;
    PropertyColumn from_map;
    ASSERT_TRUE(reader->ReadProperty(0, key, &from_column).ok());
    ASSERT_TRUE(map_only->ReadProperty(0, key, &from_map).ok());
    EXPECT_EQ(from_column.tags, from_map.tags) << key;
    EXPECT_EQ(from_column.ints, from_map.ints) << key;
    EXPECT_EQ(from_column.strings, from_map.strings) << key;
  }
}

// Found by segment_fuzz: a block whose rows have no map entries stores an
// empty map chunk, and reading a map key there gives absent rows.
TEST(SegmentColumnChoiceTest, MapKeyInABlockWithoutMapEntriesIsAbsent) {
  std::vector<Event> events;
  for (uint64_t row = 0; row < 100; ++row) {
    Event event = MakeEvent("e", kTestNowMs, row, row);
    if (row == 99) {
      event.properties.push_back({"rare", Value::String("only here")});
    }
    events.push_back(event);
  }
  SegmentWriteOptions options = SmallBlocks(10);
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, options));
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->FindPropertyKey("rare")->storage, PropertyStorage::kMap);
  PropertyColumn column;
  ASSERT_TRUE(reader->ReadProperty(0, "rare", &column).ok());
  EXPECT_EQ(column.tags, std::vector<PropertyTag>(10, PropertyTag::kAbsent));
  ASSERT_TRUE(reader->ReadProperty(9, "rare", &column).ok());
  EXPECT_EQ(column.strings[9], "only here");
  ExpectRoundTrip(events, options);
}

TEST(SegmentColumnChoiceTest, OwnColumnsMaxKeepsTheMostFrequent) {
  std::vector<Event> events;
  for (uint64_t row = 0; row < 100; ++row) {
    Event event = MakeEvent("e", kTestNowMs, row, row);
    event.properties.clear();
    for (uint64_t key = 0; key < 5; ++key) {
      if (row < 100 - key * 10) {
        event.properties.push_back({"k" + std::to_string(key), Value::Int(1)});
      }
    }
    events.push_back(event);
  }
  SegmentWriteOptions options;
  options.own_columns_max = 2;
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, options));
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->FindPropertyKey("k0")->storage, PropertyStorage::kColumn);
  EXPECT_EQ(reader->FindPropertyKey("k1")->storage, PropertyStorage::kColumn);
  EXPECT_EQ(reader->FindPropertyKey("k2")->storage, PropertyStorage::kMap);
}

TEST(SegmentColumnChoiceTest, RepeatedStringsUseADictionaryUniqueOnesPlain) {
  std::vector<Event> events;
  for (uint64_t row = 0; row < 500; ++row) {
    Event event = MakeEvent("e", kTestNowMs, row % 7, row);
    event.properties = {{"country", Value::String(row % 3 == 0 ? "DE" : "FR")},
                        {"order_id", Value::String("order-" + std::to_string(row))},
                        {"tags", Value::List({"a", row % 2 == 0 ? "b" : "c"})}};
    events.push_back(event);
  }
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, SegmentWriteOptions{}));
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->FindPropertyKey("country")->encoding, StringEncoding::kDictionary);
  EXPECT_EQ(reader->FindPropertyKey("country")->dictionary_size, 2u);
  EXPECT_EQ(reader->FindPropertyKey("order_id")->encoding, StringEncoding::kPlain);
  EXPECT_EQ(reader->FindPropertyKey("tags")->encoding, StringEncoding::kDictionary);
  EXPECT_EQ(reader->FindPropertyKey("tags")->dictionary_size, 3u);

  auto dictionary = reader->ReadDictionary("country");
  ASSERT_TRUE(dictionary.ok());
  EXPECT_EQ((*dictionary)->entries, (std::vector<std::string_view>{"DE", "FR"}));
  EXPECT_EQ((*dictionary)->Find("FR"), 1u);
  EXPECT_EQ((*dictionary)->Find("US"), std::nullopt);
  EXPECT_EQ(reader->ReadDictionary("order_id").status().code(), StatusCode::kNotFound);

  // A filter resolved to a code once per segment compares codes per row.
  PropertyColumn country;
  ASSERT_TRUE(reader->ReadProperty(0, "country", &country).ok());
  ASSERT_NE(country.dictionary(), nullptr);
  const uint32_t de = *country.dictionary()->Find("DE");
  size_t matches = 0;
  for (size_t row = 0; row < country.size(); ++row) {
    matches += country.tags[row] == PropertyTag::kString && country.string_codes[row] == de;
  }
  EXPECT_EQ(matches, 167u);
}

TEST(SegmentReaderTest, ColumnsReadAloneAgreeWithEvents) {
  RandomEvents generator(21);
  const std::vector<Event> events = generator.Make(2000);
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, SmallBlocks(300)));
  ASSERT_NE(reader, nullptr);
  std::vector<Event> block_events;
  std::vector<int64_t> times;
  SubjectRuns runs;
  std::vector<uint32_t> name_codes;
  PropertyColumn column;
  PropertyColumn codes_only;
  codes_only.dictionary_string_views = false;
  size_t dictionary_columns_read_as_codes = 0;
  for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
    ASSERT_TRUE(reader->ReadEvents(block_idx, &block_events).ok());
    ASSERT_TRUE(reader->ReadTimes(block_idx, &times).ok());
    ASSERT_TRUE(reader->ReadSubjects(block_idx, &runs).ok());
    ASSERT_TRUE(reader->ReadNameCodes(block_idx, &name_codes).ok());
    ASSERT_EQ(times.size(), block_events.size());
    size_t row = 0;
    for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
      for (uint32_t step = 0; step < runs.run_lengths[run_idx]; ++step, ++row) {
        EXPECT_EQ(block_events[row].subject, runs.subjects[run_idx]);
        EXPECT_EQ(block_events[row].time_ms, times[row]);
        EXPECT_EQ(block_events[row].name, reader->event_names()[name_codes[row]].name);
      }
    }
    EXPECT_EQ(row, block_events.size());
    std::vector<uint64_t> name_counts;
    ASSERT_TRUE(reader->CountNames(block_idx, &name_counts).ok());
    std::vector<uint64_t> expected_counts(reader->event_names().size(), 0);
    for (const uint32_t code : name_codes) {
      ++expected_counts[code];
    }
    EXPECT_EQ(name_counts, expected_counts);
    for (const PropertyKeyInfo& key : reader->property_keys()) {
      ASSERT_TRUE(reader->ReadProperty(block_idx, key.key, &column).ok());
      // The same key read as codes only: no view per row of a dictionary
      // column, the same values through StringAt and ValueAt.
      ASSERT_TRUE(reader->ReadProperty(block_idx, key.key, &codes_only).ok());
      const bool dictionary = key.storage == PropertyStorage::kColumn &&
                              key.encoding == StringEncoding::kDictionary;
      if (dictionary && !codes_only.string_codes.empty()) {
        EXPECT_TRUE(codes_only.strings.empty()) << key.key;
        ++dictionary_columns_read_as_codes;
      }
      for (size_t row_idx = 0; row_idx < block_events.size(); ++row_idx) {
        const Value* value = FindProperty(block_events[row_idx].properties, key.key);
        ASSERT_EQ(value == nullptr, column.tags[row_idx] == PropertyTag::kAbsent);
        ASSERT_EQ(codes_only.tags[row_idx], column.tags[row_idx]) << key.key;
        if (value != nullptr) {
          EXPECT_TRUE(SameValue(*value, column.ValueAt(row_idx))) << key.key;
          EXPECT_TRUE(SameValue(*value, codes_only.ValueAt(row_idx))) << key.key;
        }
        if (value != nullptr && value->type() == Value::Type::kString) {
          EXPECT_EQ(codes_only.StringAt(row_idx), value->as_string()) << key.key;
          EXPECT_EQ(column.StringAt(row_idx), value->as_string()) << key.key;
        }
      }
    }
  }
  EXPECT_GT(dictionary_columns_read_as_codes, 0u);
}

// ReadPropertiesOfRows decodes only the selected rows: each selection must
// give exactly the values ReadEvents gives for those rows, for own columns
// (dictionary and plain, every type) and map keys alike; so must
// ReadInsertIdsOfRows and ReadTimesOfRows.
// With granules (granule_rows 24), only the granules holding a selected row
// are read, and the values must be the same.
TEST(SegmentReaderTest, PropertiesOfSelectedRowsAgreeWithEvents) {
  for (const auto& [seed, granule_rows] : {std::pair{23u, kGranuleRowsDefault}, std::pair{24u, kGranuleRowsDefault},
                                          std::pair{25u, 24u}, std::pair{26u, 24u}}) {
    SCOPED_TRACE(seed);
    RandomEvents generator(seed);
    const std::vector<Event> events = generator.Make(2000);
    const std::unique_ptr<SegmentReader> reader =
        OpenImage(Encode(events, SmallGranules(300, granule_rows)));
    EXPECT_EQ(GranularChunks(*reader) > 0, granule_rows < 300);
    ASSERT_NE(reader, nullptr);
    bool saw_map_key = false;
    for (const PropertyKeyInfo& key : reader->property_keys()) {
      saw_map_key = saw_map_key || key.storage == PropertyStorage::kMap;
    }
    EXPECT_TRUE(saw_map_key);
    std::mt19937_64 random(seed);
    std::vector<Event> block_events;
    std::vector<PropertyColumn> columns;
    for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
      ASSERT_TRUE(reader->ReadEvents(block_idx, &block_events).ok());
      const auto rows = static_cast<uint32_t>(block_events.size());
      std::vector<std::vector<uint32_t>> selections(5);
      for (uint32_t row_idx = 0; row_idx < rows; ++row_idx) {
        selections[1].push_back(row_idx);
        if (row_idx % 3 == 2) {
          selections[2].push_back(row_idx);
        }
        if (random() % 10 == 0) {
          selections[3].push_back(row_idx);
        }
      }
      selections[4].push_back(rows - 1);
      std::vector<Id128> insert_ids;
      std::vector<int64_t> times;
      for (const std::vector<uint32_t>& selected : selections) {
        ASSERT_TRUE(reader->ReadInsertIdsOfRows(block_idx, selected, &insert_ids).ok());
        ASSERT_EQ(insert_ids.size(), selected.size());
        ASSERT_TRUE(reader->ReadTimesOfRows(block_idx, selected, &times).ok());
        ASSERT_EQ(times.size(), selected.size());
        for (size_t slot = 0; slot < selected.size(); ++slot) {
          EXPECT_EQ(insert_ids[slot], block_events[selected[slot]].insert_id);
          EXPECT_EQ(times[slot], block_events[selected[slot]].time_ms);
        }
        const Status read = reader->ReadPropertiesOfRows(block_idx, selected, &columns);
        ASSERT_TRUE(read.ok()) << read.ToString();
        ASSERT_EQ(columns.size(), reader->property_keys().size());
        for (size_t key_idx = 0; key_idx < columns.size(); ++key_idx) {
          const std::string& key = reader->property_keys()[key_idx].key;
          ASSERT_EQ(columns[key_idx].size(), selected.size()) << key;
          for (size_t slot = 0; slot < selected.size(); ++slot) {
            const Value* value = FindProperty(block_events[selected[slot]].properties, key);
            ASSERT_EQ(value == nullptr, columns[key_idx].tags[slot] == PropertyTag::kAbsent)
                << key << " row " << selected[slot];
            if (value != nullptr) {
              EXPECT_TRUE(SameValue(*value, columns[key_idx].ValueAt(slot)))
                  << key << " row " << selected[slot];
            }
          }
        }
      }
    }
  }
}

// Through a view without some rows (erasure's WithHiddenRows), CountNames,
// ReadPropertiesOfRows and ReadTimesOfRows see the view's rows, as every
// other read does.
TEST(SegmentReaderTest, CountsAndSelectedRowsOfAViewLeaveHiddenRowsOut) {
  RandomEvents generator(25);
  const std::shared_ptr<const SegmentReader> base =
      OpenImage(Encode(generator.Make(1500), SmallBlocks(200)));
  ASSERT_NE(base, nullptr);
  std::vector<std::vector<uint32_t>> hidden(base->block_count());
  for (size_t block_idx = 0; block_idx < base->block_count(); ++block_idx) {
    for (uint32_t row_idx = static_cast<uint32_t>(block_idx % 3);
         row_idx < base->block(block_idx).row_count; row_idx += 3) {
      hidden[block_idx].push_back(row_idx);
    }
  }
  const std::shared_ptr<const SegmentReader> view = SegmentReader::WithHiddenRows(base, hidden);
  std::vector<Event> block_events;
  std::vector<uint32_t> name_codes;
  std::vector<uint64_t> name_counts;
  std::vector<PropertyColumn> columns;
  for (size_t block_idx = 0; block_idx < view->block_count(); ++block_idx) {
    ASSERT_TRUE(view->ReadEvents(block_idx, &block_events).ok());
    ASSERT_EQ(block_events.size(), view->block(block_idx).row_count);
    ASSERT_TRUE(view->ReadNameCodes(block_idx, &name_codes).ok());
    ASSERT_TRUE(view->CountNames(block_idx, &name_counts).ok());
    std::vector<uint64_t> expected_counts(view->event_names().size(), 0);
    for (const uint32_t code : name_codes) {
      ++expected_counts[code];
    }
    EXPECT_EQ(name_counts, expected_counts);
    std::vector<uint32_t> selected;
    for (uint32_t row_idx = 0; row_idx < block_events.size(); row_idx += 2) {
      selected.push_back(row_idx);
    }
    std::vector<Id128> insert_ids;
    ASSERT_TRUE(view->ReadInsertIdsOfRows(block_idx, selected, &insert_ids).ok());
    std::vector<int64_t> times;
    ASSERT_TRUE(view->ReadTimesOfRows(block_idx, selected, &times).ok());
    for (size_t slot = 0; slot < selected.size(); ++slot) {
      EXPECT_EQ(insert_ids[slot], block_events[selected[slot]].insert_id);
      EXPECT_EQ(times[slot], block_events[selected[slot]].time_ms);
    }
    ASSERT_TRUE(view->ReadPropertiesOfRows(block_idx, selected, &columns).ok());
    for (size_t key_idx = 0; key_idx < columns.size(); ++key_idx) {
      const std::string& key = view->property_keys()[key_idx].key;
      for (size_t slot = 0; slot < selected.size(); ++slot) {
        const Value* value = FindProperty(block_events[selected[slot]].properties, key);
        ASSERT_EQ(value == nullptr, columns[key_idx].tags[slot] == PropertyTag::kAbsent) << key;
        if (value != nullptr) {
          EXPECT_TRUE(SameValue(*value, columns[key_idx].ValueAt(slot))) << key;
        }
      }
    }
  }
}

TEST(SegmentReaderTest, IndexesDescribeTheSegment) {
  RandomEvents generator(22);
  const std::vector<Event> events = generator.Make(1500);
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, SmallBlocks(200)));
  ASSERT_NE(reader, nullptr);
  const SegmentSummary& summary = reader->summary();
  EXPECT_EQ(summary.project_id, 7u);
  EXPECT_EQ(summary.row_count, 1500u);
  EXPECT_EQ(summary.format_version, kSegmentFormatVersion);
  EXPECT_EQ(reader->block_count(), 8u);
  std::set<Id128> subjects;
  std::map<std::string, uint64_t> name_rows;
  std::map<std::string, uint64_t> key_rows;
  int64_t time_min = INT64_MAX;
  int64_t time_max = INT64_MIN;
  for (const Event& event : events) {
    subjects.insert(event.subject);
    ++name_rows[event.name];
    for (const Property& property : event.properties) {
      ++key_rows[property.key];
    }
    time_min = std::min(time_min, event.time_ms);
    time_max = std::max(time_max, event.time_ms);
  }
  EXPECT_EQ(summary.subject_count, subjects.size());
  EXPECT_EQ(summary.subject_min, *subjects.begin());
  EXPECT_EQ(summary.subject_max, *subjects.rbegin());
  EXPECT_EQ(summary.time_min_ms, time_min);
  EXPECT_EQ(summary.time_max_ms, time_max);
  ASSERT_EQ(reader->event_names().size(), name_rows.size());
  for (const auto& [name, rows] : name_rows) {
    const std::optional<uint32_t> code = reader->FindEventName(name);
    ASSERT_TRUE(code.has_value()) << name;
    EXPECT_EQ(reader->event_names()[*code].row_count, rows);
  }
  ASSERT_EQ(reader->property_keys().size(), key_rows.size());
  for (const auto& [key, rows] : key_rows) {
    ASSERT_NE(reader->FindPropertyKey(key), nullptr) << key;
    EXPECT_EQ(reader->FindPropertyKey(key)->row_count, rows) << key;
  }
}

// Subject s has events only on day s, so each block covers a few days and
// the zone maps let a query skip the others.
TEST(SegmentReaderTest, ZoneMapsSkipBlocksThatCannotMatch) {
  std::vector<Event> events;
  for (uint64_t subject = 0; subject < 20; ++subject) {
    for (uint64_t event_idx = 0; event_idx < 50; ++event_idx) {
      const int64_t time = kTestNowMs + static_cast<int64_t>(subject) * kDayMs +
                           static_cast<int64_t>(event_idx) * 1000;
      const bool rare = subject == 13 && event_idx == 7;
      events.push_back(
          MakeEvent(rare ? "refund" : "view", time, subject, subject * 100 + event_idx));
    }
  }
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, SmallBlocks(100)));
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->block_count(), 10u);

  BlockFilter days_4_to_5;
  days_4_to_5.time_min_ms = kTestNowMs + 4 * kDayMs;
  days_4_to_5.time_max_ms = kTestNowMs + 5 * kDayMs + 10;
  EXPECT_EQ(reader->MatchingBlocks(days_4_to_5), (std::vector<size_t>{2}));

  BlockFilter refunds;
  refunds.name_codes = {*reader->FindEventName("refund")};
  EXPECT_EQ(reader->MatchingBlocks(refunds), (std::vector<size_t>{6}));
  EXPECT_FALSE(reader->FindEventName("purchase").has_value());

  BlockFilter subject_range;
  subject_range.subject_min = Id128{0, 5};
  subject_range.subject_max = Id128{0, 8};
  EXPECT_EQ(reader->MatchingBlocks(subject_range), (std::vector<size_t>{2, 3, 4}));

  // Every row matching a filter lies in a block the filter keeps.
  std::vector<Event> block_events;
  for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
    ASSERT_TRUE(reader->ReadEvents(block_idx, &block_events).ok());
    const bool kept = block_idx == 2;
    for (const Event& event : block_events) {
      if (event.time_ms >= days_4_to_5.time_min_ms && event.time_ms <= days_4_to_5.time_max_ms) {
        EXPECT_TRUE(kept);
      }
    }
  }
}

TEST(SegmentReaderTest, ConcurrentReadsShareOneDictionary) {
  std::vector<Event> events;
  for (uint64_t row = 0; row < 5000; ++row) {
    Event event = MakeEvent("e", kTestNowMs, row % 50, row);
    event.properties = {{"plan", Value::String(row % 3 == 0 ? "pro" : "free")}};
    events.push_back(event);
  }
  const std::unique_ptr<SegmentReader> reader = OpenImage(Encode(events, SmallBlocks(500)));
  ASSERT_NE(reader, nullptr);
  std::vector<std::thread> threads;
  std::vector<const SegmentDictionary*> seen(4);
  for (size_t thread_idx = 0; thread_idx < 4; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      PropertyColumn column;
      for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
        EXPECT_TRUE(reader->ReadProperty(block_idx, "plan", &column).ok());
      }
      seen[thread_idx] = column.dictionary();
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_NE(seen[0], nullptr);
  EXPECT_EQ(seen[0], seen[1]);
  EXPECT_EQ(seen[0], seen[3]);
}

class SegmentFileTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    ASSERT_TRUE(fault_file_system_->CreateDirectories(folder_, 0700).ok());
    path_ = folder_ + "/000001.seg";
  }
  std::vector<Event> SmallEvents() {
    RandomEvents generator(31);
    return generator.Make(40);
  }
  // Three blocks; keys in fewer than 4 of the 40 rows go to the map column.
  Status WriteSmall() {
    SegmentWriteOptions options = SmallBlocks(16);
    options.own_column_fraction_min = 0.1;
    return WriteSegmentFile(*fault_file_system_, path_, SmallEvents(), options);
  }
  std::string path_;
};

TEST_F(SegmentFileTest, WriteThenOpenRoundTrips) {
  ASSERT_TRUE(WriteSmall().ok());
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
  auto reader = OpenSegment(*fault_file_system_, path_);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  const std::vector<Event> expected = Canonical(SmallEvents());
  const std::vector<Event> actual = ReadAll(**reader);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t row = 0; row < actual.size(); ++row) {
    ExpectSameEvent(actual[row], expected[row], row);
  }
  EXPECT_EQ((*reader)->summary().file_bytes, std::filesystem::file_size(path_));
}

TEST_F(SegmentFileTest, FailedWriteLeavesNoSegment) {
  fault_file_system_->FailSyncs(true);
  EXPECT_EQ(WriteSmall().code(), StatusCode::kIoError);
  EXPECT_FALSE(std::filesystem::exists(path_));
  fault_file_system_->Reset();
  fault_file_system_->FailWritesAfterBytes(100);
  EXPECT_EQ(WriteSmall().code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(std::filesystem::exists(path_));
  fault_file_system_->Reset();
  // A stale temporary file from a crash is replaced, not appended to.
  WriteBytes(path_ + ".tmp", "stale bytes from a crashed flush");
  ASSERT_TRUE(WriteSmall().ok());
  EXPECT_TRUE(OpenSegment(*fault_file_system_, path_).ok());
}

TEST_F(SegmentFileTest, MissingFileIsNotFound) {
  EXPECT_EQ(OpenSegment(*fault_file_system_, path_).status().code(), StatusCode::kNotFound);
}

// A torn flush: every prefix of the file is refused. The reader gets the
// bytes through the file system for a few cuts and straight from memory for
// all of them (the same code past FileSystem::ReadFile).
TEST_F(SegmentFileTest, EveryTruncationIsCorruption) {
  ASSERT_TRUE(WriteSmall().ok());
  const std::string full = ReadBytes(path_);
  for (size_t cut = 0; cut < full.size(); ++cut) {
    const auto reader = SegmentReader::Open(full.substr(0, cut), path_);
    ASSERT_FALSE(reader.ok()) << cut;
    EXPECT_EQ(reader.status().code(), StatusCode::kCorruption) << cut;
    EXPECT_NE(reader.status().message().find(path_), std::string::npos) << cut;
  }
  for (const size_t cut : {size_t{0}, kSegmentHeaderBytes, full.size() / 2, full.size() - 1}) {
    WriteBytes(path_, full.substr(0, cut));
    EXPECT_EQ(OpenSegment(*fault_file_system_, path_).status().code(), StatusCode::kCorruption)
        << cut;
  }
}

TEST_F(SegmentFileTest, EveryFlippedByteIsCaught) {
  ASSERT_TRUE(WriteSmall().ok());
  const std::string full = ReadBytes(path_);
  for (size_t position = 0; position < full.size(); ++position) {
    std::string damaged = full;
    damaged[position] = static_cast<char>(damaged[position] ^ 0x10);
    auto reader = SegmentReader::Open(damaged, path_);
    if (!reader.ok()) {
      EXPECT_EQ(reader.status().code(), StatusCode::kCorruption) << position;
      continue;
    }
    const Status verified = (*reader)->Verify();
    EXPECT_EQ(verified.code(), StatusCode::kCorruption) << position;
  }
}

// A flipped byte in each chunk is Corruption naming the file, the column and
// the block, and only that column of that block fails.
TEST_F(SegmentFileTest, FlippedChunkNamesFileColumnAndBlock) {
  ASSERT_TRUE(WriteSmall().ok());
  const std::string full = ReadBytes(path_);
  const std::unique_ptr<SegmentReader> clean = OpenImage(full);
  ASSERT_NE(clean, nullptr);
  const SegmentFooter& footer = clean->footer();
  ASSERT_FALSE(footer.map_keys.empty());
  ASSERT_EQ(footer.blocks.size(), 3u);
  for (size_t block_idx = 0; block_idx < footer.blocks.size(); ++block_idx) {
    const std::vector<ChunkRef>& chunks = footer.blocks[block_idx].chunks;
    for (size_t chunk_idx = 0; chunk_idx < chunks.size(); ++chunk_idx) {
      if (chunks[chunk_idx].stored_bytes == 0) {
        continue;  // an empty chunk (no row has the key) has no byte to flip
      }
      std::string damaged = full;
      damaged[chunks[chunk_idx].offset + chunks[chunk_idx].stored_bytes / 2] ^= 0x01;
      auto reader = SegmentReader::Open(damaged, path_);
      ASSERT_TRUE(reader.ok());
      std::string column_name;
      Status status;
      std::vector<int64_t> times;
      SubjectRuns runs;
      std::vector<Id128> ids;
      std::vector<uint32_t> numbers;
      PropertyColumn column;
      if (chunk_idx == static_cast<size_t>(FixedColumn::kTime)) {
        column_name = "column time";
        status = (*reader)->ReadTimes(block_idx, &times);
      } else if (chunk_idx == static_cast<size_t>(FixedColumn::kSubject)) {
        column_name = "column subject";
        status = (*reader)->ReadSubjects(block_idx, &runs);
      } else if (chunk_idx == static_cast<size_t>(FixedColumn::kInsertId)) {
        column_name = "column insert_id";
        status = (*reader)->ReadInsertIds(block_idx, &ids);
      } else if (chunk_idx == static_cast<size_t>(FixedColumn::kKeyVersion)) {
        column_name = "column key_version";
        status = (*reader)->ReadKeyVersions(block_idx, &numbers);
      } else if (chunk_idx == static_cast<size_t>(FixedColumn::kName)) {
        column_name = "column name";
        status = (*reader)->ReadNameCodes(block_idx, &numbers);
      } else if (chunk_idx + 1 < chunks.size()) {
        const std::string& key = footer.columns[chunk_idx - kFixedColumnCount].key;
        column_name = "column property \"" + key + "\"";
        status = (*reader)->ReadProperty(block_idx, key, &column);
      } else {
        column_name = "column properties map";
        status = (*reader)->ReadProperty(block_idx, footer.map_keys[0].key, &column);
      }
      SCOPED_TRACE(column_name + " block " + std::to_string(block_idx));
      EXPECT_EQ(status.code(), StatusCode::kCorruption);
      EXPECT_NE(status.message().find(path_), std::string::npos) << status.message();
      EXPECT_NE(status.message().find(column_name + ", block " + std::to_string(block_idx)),
                std::string::npos)
          << status.message();
      EXPECT_NE(status.message().find("checksum mismatch"), std::string::npos);
      std::vector<Event> events;
      EXPECT_EQ((*reader)->ReadEvents(block_idx, &events).code(), StatusCode::kCorruption);
      const size_t other_block = block_idx == 0 ? 1 : 0;
      EXPECT_TRUE((*reader)->ReadEvents(other_block, &events).ok());
    }
  }
  // Dictionaries are checked too, and named.
  for (const FooterColumn& column : footer.columns) {
    if (column.encoding != StringEncoding::kDictionary) {
      continue;
    }
    std::string damaged = full;
    damaged[column.dictionary.offset] ^= 0x01;
    auto reader = SegmentReader::Open(damaged, path_);
    ASSERT_TRUE(reader.ok());
    const Status status = (*reader)->ReadDictionary(column.key).status();
    EXPECT_EQ(status.code(), StatusCode::kCorruption);
    EXPECT_NE(status.message().find("dictionary of property \"" + column.key + "\""),
              std::string::npos)
        << status.message();
  }
}

// Flipped bytes in the file itself, read through OpenSegment (header,
// trailer and footer at open, chunks with pread later), are caught as in
// memory: Corruption naming the file, at open or by Verify.
TEST_F(SegmentFileTest, EveryFlippedByteOfAFileIsCaughtThroughPositionalReads) {
  ASSERT_TRUE(WriteSmall().ok());
  const std::string full = ReadBytes(path_);
  for (size_t position = 0; position < full.size(); position += 3) {
    std::string damaged = full;
    damaged[position] = static_cast<char>(damaged[position] ^ 0x10);
    WriteBytes(path_, damaged);
    auto reader = OpenSegment(*fault_file_system_, path_);
    const Status status = reader.ok() ? (*reader)->Verify() : reader.status();
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << position;
    EXPECT_NE(status.message().find(path_), std::string::npos) << status.ToString();
  }
}

// A file truncated after open (by hand, or a bad disk): every block past the
// cut is Corruption naming the file, the column and the block; blocks wholly
// before the cut still read.
TEST_F(SegmentFileTest, AFileTruncatedAfterOpenIsCorruptionOnRead) {
  ASSERT_TRUE(WriteSmall().ok());
  const std::string full = ReadBytes(path_);
  const std::unique_ptr<SegmentReader> clean = OpenImage(full);
  ASSERT_NE(clean, nullptr);
  const std::vector<FooterBlock>& blocks = clean->footer().blocks;
  ASSERT_EQ(blocks.size(), 3u);
  // Cut in the middle of the last block's time chunk.
  const ChunkRef& last_time = blocks[2].chunks[static_cast<size_t>(FixedColumn::kTime)];
  ASSERT_GT(last_time.stored_bytes, 1u);
  for (const uint64_t cut : {last_time.offset + last_time.stored_bytes / 2, last_time.offset,
                             uint64_t{0}}) {
    SCOPED_TRACE(cut);
    WriteBytes(path_, full);
    auto reader = OpenSegment(*fault_file_system_, path_);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    std::filesystem::resize_file(path_, cut);
    std::vector<int64_t> times;
    const Status status = (*reader)->ReadTimes(2, &times);
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
    EXPECT_NE(status.message().find(path_ + ": column time, block 2"), std::string::npos)
        << status.ToString();
    EXPECT_NE(status.message().find("cut short"), std::string::npos) << status.ToString();
    EXPECT_EQ((*reader)->Verify().code(), StatusCode::kCorruption);
    std::vector<Event> events;
    EXPECT_EQ((*reader)->ReadEvents(0, &events).ok(), cut >= last_time.offset) << cut;
  }
}

// A file rewritten in place after open (same size): the chunk checksums
// catch it.
TEST_F(SegmentFileTest, AFileChangedAfterOpenIsCorruptionOnRead) {
  ASSERT_TRUE(WriteSmall().ok());
  auto reader = OpenSegment(*fault_file_system_, path_);
  ASSERT_TRUE(reader.ok());
  const ChunkRef& subjects = (*reader)->footer().blocks[1].chunks[1];
  ASSERT_GT(subjects.stored_bytes, 0u);
  {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(subjects.offset));
    file.put('\x5a');
    file.put('\xa5');
  }
  SubjectRuns runs;
  const Status status = (*reader)->ReadSubjects(1, &runs);
  EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
  EXPECT_NE(status.message().find(path_ + ": column subject, block 1"), std::string::npos)
      << status.ToString();
  EXPECT_NE(status.message().find("checksum mismatch"), std::string::npos) << status.ToString();
  EXPECT_TRUE((*reader)->ReadSubjects(0, &runs).ok());
}

// A read that fails at any point is IoError naming the file: at open (the
// header, trailer and footer reads) and for a chunk, which then names the
// column and block too. The reader works again once reads do.
TEST_F(SegmentFileTest, AFailedReadIsIoErrorNamingTheFile) {
  ASSERT_TRUE(WriteSmall().ok());
  for (uint64_t reads = 0; reads < 3; ++reads) {
    fault_file_system_->FailReadsAfter(reads);
    const Status status = OpenSegment(*fault_file_system_, path_).status();
    EXPECT_EQ(status.code(), StatusCode::kIoError) << reads << " " << status.ToString();
    EXPECT_NE(status.message().find("segment " + path_), std::string::npos) << status.ToString();
    fault_file_system_->Reset();
  }
  auto reader = OpenSegment(*fault_file_system_, path_);
  ASSERT_TRUE(reader.ok());
  fault_file_system_->FailReadsAfter(0);
  std::vector<uint32_t> names;
  const Status status = (*reader)->ReadNameCodes(2, &names);
  EXPECT_EQ(status.code(), StatusCode::kIoError) << status.ToString();
  EXPECT_NE(status.message().find(path_ + ": column name, block 2"), std::string::npos)
      << status.ToString();
  EXPECT_EQ((*reader)->Verify().code(), StatusCode::kIoError);
  fault_file_system_->Reset();
  EXPECT_TRUE((*reader)->Verify().ok());
  EXPECT_GE(fault_file_system_->failed_reads(), 5u);
}

// Compaction deletes segment files that a query may still be reading.
TEST_F(SegmentFileTest, AReaderKeepsReadingItsFileAfterTheFileIsDeleted) {
  ASSERT_TRUE(WriteSmall().ok());
  auto reader = OpenSegment(*fault_file_system_, path_);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(fault_file_system_->Remove(path_).ok());
  EXPECT_TRUE((*reader)->Verify().ok());
  EXPECT_EQ(ReadAll(**reader).size(), 40u);
}

// A file-backed reader and one over the same image in memory give the same
// rows, also read from several threads at once.
TEST_F(SegmentFileTest, FileReaderMatchesImageReaderFromManyThreads) {
  std::vector<Event> events;
  for (uint64_t row = 0; row < 3000; ++row) {
    Event event = MakeEvent(row % 4 == 0 ? "a" : "b", kTestNowMs + static_cast<int64_t>(row),
                            row % 40, row);
    event.properties = {{"plan", Value::String(row % 3 == 0 ? "pro" : "free")},
                        {"n", Value::Int(static_cast<int64_t>(row))}};
    events.push_back(event);
  }
  SegmentWriteOptions options = SmallBlocks(250);
  ASSERT_TRUE(WriteSegmentFile(*fault_file_system_, path_, events, options).ok());
  const std::unique_ptr<SegmentReader> image_reader = OpenImage(ReadBytes(path_));
  ASSERT_NE(image_reader, nullptr);
  auto file_reader = OpenSegment(*fault_file_system_, path_);
  ASSERT_TRUE(file_reader.ok());
  const std::vector<Event> expected = ReadAll(*image_reader);
  ASSERT_EQ(expected.size(), events.size());
  std::vector<std::thread> threads;
  std::vector<size_t> mismatched_blocks(4, 0);
  for (size_t thread_idx = 0; thread_idx < mismatched_blocks.size(); ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      std::vector<Event> block_events;
      PropertyColumn plan;
      for (size_t round = 0; round < 3; ++round) {
        for (size_t block_idx = 0; block_idx < (*file_reader)->block_count(); ++block_idx) {
          const uint64_t first = (*file_reader)->block(block_idx).first_row;
          const bool same =
              (*file_reader)->ReadEvents(block_idx, &block_events).ok() &&
              (*file_reader)->ReadProperty(block_idx, "plan", &plan).ok() &&
              std::equal(block_events.begin(), block_events.end(),
                         expected.begin() + static_cast<ptrdiff_t>(first)) &&
              plan.size() == block_events.size();
          mismatched_blocks[thread_idx] += same ? 0 : 1;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(mismatched_blocks, std::vector<size_t>(4, 0));
}

TEST_F(SegmentFileTest, NewerVersionIsRefusedWithAMessage) {
  ASSERT_TRUE(WriteSmall().ok());
  std::string image = ReadBytes(path_);
  const uint32_t newer = kSegmentFormatVersion + 1;
  std::string header(kSegmentMagic.data(), kSegmentMagic.size());
  PutFixed32(newer, &header);
  PutFixed32(Crc32(0, header), &header);
  image.replace(0, kSegmentHeaderBytes, header);
  std::string version;
  PutFixed32(newer, &version);
  image.replace(image.size() - 12, 4, version);
  WriteBytes(path_, image);
  const Status status = OpenSegment(*fault_file_system_, path_).status();
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find("version " + std::to_string(newer)), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find("not supported by this binary"), std::string::npos);
}

TEST_F(SegmentFileTest, ForeignFileIsCorruption) {
  WriteBytes(path_, std::string(100, 'x'));
  const Status status = OpenSegment(*fault_file_system_, path_).status();
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find("wrong magic"), std::string::npos);
}

// A segment written by format version 1, kept so that every later binary
// proves it still reads it. Regenerate only when adding a new version's file.
TEST_F(SegmentFileTest, ReadsTheCheckedInVersionOneFile) {
  const std::string golden = std::string(MINPANEL_STORE_TESTDATA) + "/segment_v1.seg";
  std::vector<Event> events;
  for (uint64_t row = 0; row < 6; ++row) {
    Event event = MakeEvent(row % 2 == 0 ? "view" : "buy", 1'700'000'000'000 + row, row % 3, row);
    event.properties.push_back({"price", Value::Double(row * 1.5)});
    if (row == 4) {
      event.properties.push_back({"tags", Value::List({"a", ""})});
    }
    events.push_back(event);
  }
  if (std::getenv("MINPANEL_WRITE_SEGMENT_GOLDEN") != nullptr) {
    ASSERT_TRUE(WriteSegmentFile(*fault_file_system_, golden, events, SegmentWriteOptions{}).ok());
  }
  auto reader = OpenSegment(*fault_file_system_, golden);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->summary().format_version, 1u);
  const std::vector<Event> expected = Canonical(events);
  const std::vector<Event> actual = ReadAll(**reader);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t row = 0; row < actual.size(); ++row) {
    ExpectSameEvent(actual[row], expected[row], row);
  }
}

// Version 2 stored times as zigzag varint deltas, as version 1 did; version 3
// packs them as fixed-width offsets. The events span a day, with deltas of
// every varint length from 1 to 4 bytes and jumps back at each new subject.
TEST_F(SegmentFileTest, ReadsTheCheckedInVersionTwoFile) {
  const std::string golden = std::string(MINPANEL_STORE_TESTDATA) + "/segment_v2.seg";
  std::vector<Event> events;
  for (uint64_t row = 0; row < 60; ++row) {
    const int64_t time_ms = 1'700'006'400'000 + static_cast<int64_t>((row * row * row * 397) % 86'399'999);
    Event event = MakeEvent(row % 3 == 0 ? "view" : "buy", time_ms, row % 4, row);
    event.properties.push_back({"rank", Value::Int(static_cast<int64_t>(row % 5))});
    events.push_back(event);
  }
  if (std::getenv("MINPANEL_WRITE_SEGMENT_GOLDEN") != nullptr) {
    const Status written = WriteSegmentFile(*fault_file_system_, golden, events, SegmentWriteOptions{});
    ASSERT_TRUE(written.ok()) << written.ToString();
  }
  auto reader = OpenSegment(*fault_file_system_, golden);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->summary().format_version, 2u);
  const std::vector<Event> expected = Canonical(events);
  const std::vector<Event> actual = ReadAll(**reader);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t row = 0; row < actual.size(); ++row) {
    ExpectSameEvent(actual[row], expected[row], row);
  }
}

// Version 3 packed times but had no policy version column: its rows read
// with the policy version unknown (kPolicyVersionUnknown), whatever the
// events held when the file was written.
TEST_F(SegmentFileTest, ReadsTheCheckedInVersionThreeFile) {
  const std::string golden = std::string(MINPANEL_STORE_TESTDATA) + "/segment_v3.seg";
  std::vector<Event> events;
  for (uint64_t row = 0; row < 40; ++row) {
    const int64_t time_ms = 1'700'006'400'000 + static_cast<int64_t>((row * row * 7919) % 86'399'999);
    Event event = MakeEvent(row % 2 == 0 ? "view" : "buy", time_ms, row % 5, row);
    event.key_version = 1 + static_cast<uint32_t>(row / 20);
    event.properties.push_back({"tier", Value::String(row % 3 == 0 ? "gold" : "tin")});
    events.push_back(event);
  }
  if (std::getenv("MINPANEL_WRITE_SEGMENT_GOLDEN") != nullptr) {
    const Status written = WriteSegmentFile(*fault_file_system_, golden, events, SegmentWriteOptions{});
    ASSERT_TRUE(written.ok()) << written.ToString();
  }
  auto reader = OpenSegment(*fault_file_system_, golden);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->summary().format_version, 3u);
  const std::vector<Event> expected = Canonical(events);
  const std::vector<Event> actual = ReadAll(**reader);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t row = 0; row < actual.size(); ++row) {
    ExpectSameEvent(actual[row], expected[row], row);
  }
}

// Version 4: each block's policy_version chunk holds one run per policy in
// force over its rows, and every read (a view's too) returns it per row.
TEST(SegmentReaderTest, PolicyVersionsAreRunsPerBlockAndReadPerRow) {
  std::vector<Event> events;
  for (uint64_t row = 0; row < 1000; ++row) {
    Event event = MakeEvent("e", kTestNowMs + static_cast<int64_t>(row), 1, row);
    // A policy change at row 700: the block holding it has two runs.
    event.policy_version = row < 700 ? 3 : 4;
    events.push_back(event);
  }
  const std::shared_ptr<const SegmentReader> reader = OpenImage(Encode(events, SmallBlocks(400)));
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(reader->block_count(), 3u);
  const std::vector<size_t> runs = {1, 2, 1};
  std::vector<uint32_t> versions;
  for (size_t block_idx = 0; block_idx < 3; ++block_idx) {
    const ChunkRef& chunk = reader->footer().blocks[block_idx].policy_versions;
    // A run count, and a version and a length per run: a few bytes a block.
    EXPECT_LE(chunk.raw_bytes, 1 + runs[block_idx] * 3) << block_idx;
    ASSERT_TRUE(reader->ReadPolicyVersions(block_idx, &versions).ok());
    ASSERT_EQ(versions.size(), reader->block(block_idx).row_count);
    for (size_t row_idx = 0; row_idx < versions.size(); ++row_idx) {
      EXPECT_EQ(versions[row_idx], block_idx * 400 + row_idx < 700 ? 3u : 4u) << row_idx;
    }
  }
  // A view without rows 0..299 of block 1 (rows 400..699, version 3).
  std::vector<std::vector<uint32_t>> hidden(3);
  for (uint32_t row_idx = 0; row_idx < 300; ++row_idx) {
    hidden[1].push_back(row_idx);
  }
  const auto view = SegmentReader::WithHiddenRows(reader, hidden);
  ASSERT_TRUE(view->ReadPolicyVersions(1, &versions).ok());
  EXPECT_EQ(versions, std::vector<uint32_t>(100, 4));
  std::vector<Event> block_events;
  ASSERT_TRUE(view->ReadEvents(1, &block_events).ok());
  ASSERT_EQ(block_events.size(), 100u);
  EXPECT_EQ(block_events.front().policy_version, 4u);
}

// A merge (compaction, a purge's rewrite) of a version 3 file and a newer
// segment writes the newest version: the old file's rows with the policy
// version unknown, the newer rows with theirs.
TEST_F(SegmentFileTest, AMergeOfAVersionThreeFileKeepsItsRowsUnknownAndTheOthersVersions) {
  auto old_file = OpenSegment(*fault_file_system_,
                              std::string(MINPANEL_STORE_TESTDATA) + "/segment_v3.seg");
  ASSERT_TRUE(old_file.ok()) << old_file.status().ToString();
  std::vector<Event> events;
  for (uint64_t row = 0; row < 10; ++row) {
    Event event = MakeEvent("view", 1'700'006'400'000 + static_cast<int64_t>(row), row % 5, 1000 + row);
    event.policy_version = 6;
    events.push_back(event);
  }
  const std::vector<std::shared_ptr<const SegmentReader>> inputs = {
      std::shared_ptr<const SegmentReader>(std::move(*old_file)),
      OpenImage(Encode(events, SegmentWriteOptions{}))};
  Result<std::string> merged = MergeSegmentsToImage(inputs, SegmentWriteOptions{});
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  const std::unique_ptr<SegmentReader> reader = OpenImage(*merged);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->summary().format_version, kSegmentFormatVersion);
  size_t unknown = 0;
  size_t six = 0;
  for (const Event& event : ReadAll(*reader)) {
    const bool newer = event.insert_id.low >= 1000;
    EXPECT_EQ(event.policy_version, newer ? 6u : kPolicyVersionUnknown) << event.insert_id.low;
    (newer ? six : unknown) += 1;
  }
  EXPECT_EQ(unknown, 40u);
  EXPECT_EQ(six, 10u);
}

// Version 3 packed times and stored every chunk whole (version 5 may store
// property chunks in granules). Made by `minpanel import` of a version 3
// binary (0f7c9d0) from 40 generated events: event i is "view" (even i) or
// "buy", at 1700006400 + 997 i seconds, with plan "gold" (i % 3 == 0) or
// "tin" and seats i % 4; subjects and insert ids are keyed pseudonyms.
TEST_F(SegmentFileTest, ReadsTheCheckedInImportedVersionThreeFile) {
  const std::string golden = std::string(MINPANEL_STORE_TESTDATA) + "/segment_v3_imported.seg";
  auto reader = OpenSegment(*fault_file_system_, golden);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->summary().format_version, 3u);
  EXPECT_TRUE((*reader)->Verify().ok());
  std::multiset<std::tuple<std::string, int64_t, std::string, int64_t>> expected;
  for (int64_t row = 0; row < 40; ++row) {
    expected.emplace(row % 2 == 0 ? "view" : "buy", (1'700'006'400 + row * 997) * 1000,
                     row % 3 == 0 ? "gold" : "tin", row % 4);
  }
  std::multiset<std::tuple<std::string, int64_t, std::string, int64_t>> actual;
  for (const Event& event : ReadAll(**reader)) {
    ASSERT_EQ(event.properties.size(), 2u);
    actual.emplace(event.name, event.time_ms, event.properties[0].value.as_string(),
                   event.properties[1].value.as_int());
  }
  EXPECT_EQ(actual, expected);
  std::vector<PropertyColumn> columns;
  const std::vector<uint32_t> selected = {0, 17, 39};
  ASSERT_TRUE((*reader)->ReadPropertiesOfRows(0, selected, &columns).ok());
  EXPECT_EQ(columns.size(), 2u);
}

// Version 4 added each row's policy version and stored every chunk whole
// (version 5 may store property chunks in granules). Made by `minpanel
// import` of a version 4 binary (b93f1c7) from 40 generated events: event i
// is "view" (even i) or "buy" by distinct id "user-<i % 5>", at
// 1700006400 + 997 i seconds, with plan "gold" (i % 3 == 0) or "tin" and
// seats i % 4, under the project's default policy (version 0); subjects and
// insert ids are keyed pseudonyms. Its rows keep their policy version when a
// merge writes them in the newest version, in granules.
TEST_F(SegmentFileTest, ReadsTheCheckedInVersionFourFile) {
  const std::string golden = std::string(MINPANEL_STORE_TESTDATA) + "/segment_v4.seg";
  auto reader = OpenSegment(*fault_file_system_, golden);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->summary().format_version, 4u);
  EXPECT_EQ((*reader)->summary().subject_count, 5u);
  EXPECT_TRUE((*reader)->Verify().ok());
  EXPECT_EQ(GranularChunks(**reader), 0u);
  std::multiset<std::tuple<std::string, int64_t, std::string, int64_t>> expected;
  for (int64_t row = 0; row < 40; ++row) {
    expected.emplace(row % 2 == 0 ? "view" : "buy", (1'700'006'400 + row * 997) * 1000,
                     row % 3 == 0 ? "gold" : "tin", row % 4);
  }
  const std::vector<Event> events = ReadAll(**reader);
  std::multiset<std::tuple<std::string, int64_t, std::string, int64_t>> actual;
  for (const Event& event : events) {
    ASSERT_EQ(event.properties.size(), 2u);
    EXPECT_EQ(event.policy_version, 0u);
    EXPECT_EQ(event.key_version, 1u);
    actual.emplace(event.name, event.time_ms, event.properties[0].value.as_string(),
                   event.properties[1].value.as_int());
  }
  EXPECT_EQ(actual, expected);

  const std::shared_ptr<const SegmentReader> old_file(std::move(*reader));
  const std::vector<std::shared_ptr<const SegmentReader>> inputs = {old_file};
  SegmentWriteOptions options = SmallGranules(64, 4);
  options.project_id = old_file->summary().project_id;
  Result<std::string> merged = MergeSegmentsToImage(inputs, options);
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  const std::unique_ptr<SegmentReader> rewritten = OpenImage(*merged);
  ASSERT_NE(rewritten, nullptr);
  EXPECT_EQ(rewritten->summary().format_version, kSegmentFormatVersion);
  EXPECT_GT(GranularChunks(*rewritten), 0u);
  const std::vector<Event> rewritten_events = ReadAll(*rewritten);
  ASSERT_EQ(rewritten_events.size(), events.size());
  for (size_t row = 0; row < events.size(); ++row) {
    ExpectSameEvent(rewritten_events[row], events[row], row);
  }
}

TEST_F(SegmentFileTest, DumpPrintsEveryPartAndStopsAtDamage) {
  std::vector<Event> events = {MakeEvent("signup", kTestNowMs, 1, 1),
                               MakeEvent("pay", kTestNowMs + 5, 1, 2)};
  events[1].properties.push_back({"note", Value::String("quote \" and \x01")});
  ASSERT_TRUE(WriteSegmentFile(*fault_file_system_, path_, events, SegmentWriteOptions{}).ok());
  std::ostringstream out;
  ASSERT_TRUE(DumpStoreFile(*fault_file_system_, path_, out).ok());
  const std::string text = out.str();
  const std::string header = "header: minpanel segment format " + std::to_string(kSegmentFormatVersion);
  for (const std::string_view expected : std::initializer_list<std::string_view>{
           header, "trailer: footer of", "2 rows, 1 subjects",
           "event names (2)", "chunk time:", "chunk subject:", "chunk insert_id:",
           "chunk key_version:", "chunk name:", "chunk property plan", "chunk properties map",
           "chunk policy_version:", "policy_version=unknown",
           "\"quote \\\" and \\x01\"", "dictionary of \"plan\": 0=\"pro\"",
           "row 0: \"signup\" time_ms=1700000000000"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }

  std::string image = ReadBytes(path_);
  const std::unique_ptr<SegmentReader> clean = OpenImage(image);
  const ChunkRef& names = clean->footer().blocks[0].chunks[static_cast<size_t>(FixedColumn::kName)];
  image[names.offset] ^= 0x01;
  WriteBytes(path_, image);
  std::ostringstream damaged;
  const Status status = DumpSegmentFile(*fault_file_system_, path_, damaged);
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(damaged.str().find("chunk key_version:"), std::string::npos);
  EXPECT_NE(damaged.str().find("error: segment " + path_ + ": column name, block 0"),
            std::string::npos)
      << damaged.str();
}

TEST_F(SegmentFileTest, DumpStoreFileStillDumpsLogs) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(1, {MakeEvent("e", kTestNowMs, 1, 1)})).ok());
  std::ostringstream out;
  ASSERT_TRUE(DumpStoreFile(*fault_file_system_, LogPath(1), out).ok());
  EXPECT_NE(out.str().find("minpanel log format"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::store
