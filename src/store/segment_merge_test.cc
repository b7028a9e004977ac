// The streaming merge against the row path it replaced: decode every visible
// row of the inputs into events and EncodeSegment them (what compaction and
// the purge did before). Random segments with many property keys, mixed
// types, hidden rows and whole hidden blocks, dictionaries past one- and
// two-byte codes, and inputs where a key is a dictionary column in one and
// plain or in the map in another.
#include "store/segment_merge.h"

#include <gtest/gtest.h>

#include <random>

#include "store/segment.h"

namespace minpanel::store {
namespace {

using Readers = std::vector<std::shared_ptr<const SegmentReader>>;

struct RandomShape {
  size_t subjects = 50;
  size_t names = 12;
  size_t keys = 300;
  size_t string_values = 40;
};

Value RandomValue(std::mt19937_64& random, const RandomShape& shape, size_t key_idx) {
  const uint64_t kind = random() % 16;
  auto text = [&] {
    // Some keys share values, some have many: both dictionary and plain.
    const uint64_t range = key_idx % 3 == 0 ? 100000 : shape.string_values;
    return "v" + std::to_string(key_idx % 5) + "-" + std::to_string(random() % range);
  };
  switch (kind) {
    case 0:
      return Value::Null();
    case 1:
      return Value::Bool(random() % 2 == 0);
    case 2:
    case 3:
      return Value::Int(static_cast<int64_t>(random() % 2000) - 1000);
    case 4:
      return Value::Double(static_cast<double>(random() % 1000) / 7.0);
    case 5:
      return Value::String("");
    case 6:
    case 7: {
      StringList items;
      const size_t count = random() % 4;
      for (size_t item_idx = 0; item_idx < count; ++item_idx) {
        items.push_back(text());
      }
      return Value::List(std::move(items));
    }
    default:
      return Value::String(text());
  }
}

std::vector<Event> RandomEvents(std::mt19937_64& random, const RandomShape& shape, size_t count) {
  std::vector<Event> events(count);
  for (Event& event : events) {
    event.name = "event-" + std::to_string(random() % shape.names);
    event.time_ms = 1'700'000'000'000 + static_cast<int64_t>(random() % 1000);
    event.subject = Id128{random() % shape.subjects, 0};
    // Few insert ids, so that equal (subject, time, insert id) rows occur.
    event.insert_id = Id128{random() % 4, random() % 2};
    event.key_version = static_cast<uint32_t>(random() % 2);
    event.policy_version = random() % 3 == 0 ? kPolicyVersionUnknown : static_cast<uint32_t>(random() % 3);
    const size_t property_count = random() % 12;
    for (size_t property_idx = 0; property_idx < property_count; ++property_idx) {
      // Frequent keys (own columns) and a long tail (the map).
      const size_t key_idx = random() % 4 == 0 ? random() % shape.keys : random() % 8;
      const std::string key = "key-" + std::to_string(key_idx);
      if (FindProperty(event.properties, key) != nullptr) {
        continue;
      }
      event.properties.push_back(Property{key, RandomValue(random, shape, key_idx)});
    }
  }
  return events;
}

std::shared_ptr<const SegmentReader> OpenImage(const std::string& image, const std::string& name) {
  Result<std::unique_ptr<SegmentReader>> reader = SegmentReader::Open(image, name);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return reader.ok() ? std::shared_ptr<const SegmentReader>(std::move(*reader)) : nullptr;
}

// Hides about `fraction` of the rows, and sometimes a whole block.
std::shared_ptr<const SegmentReader> RandomView(std::mt19937_64& random,
                                                std::shared_ptr<const SegmentReader> base,
                                                double fraction) {
  std::vector<std::vector<uint32_t>> hidden(base->block_count());
  for (size_t block_idx = 0; block_idx < base->block_count(); ++block_idx) {
    if (random() % 8 == 0) {
      hidden[block_idx] = {kAllRowsHidden};
      continue;
    }
    for (uint32_t row_idx = 0; row_idx < base->block(block_idx).row_count; ++row_idx) {
      if (static_cast<double>(random() % 1000) < fraction * 1000) {
        hidden[block_idx].push_back(row_idx);
      }
    }
  }
  return SegmentReader::WithHiddenRows(std::move(base), std::move(hidden));
}

// What compaction did before: every visible row as an event, encoded again.
std::string RowPathImage(const Readers& inputs, const SegmentWriteOptions& options) {
  std::vector<Event> events;
  std::vector<Event> block_events;
  for (const auto& input : inputs) {
    for (size_t block_idx = 0; block_idx < input->block_count(); ++block_idx) {
      EXPECT_TRUE(input->ReadEvents(block_idx, &block_events).ok());
      events.insert(events.end(), block_events.begin(), block_events.end());
    }
  }
  if (events.empty()) {
    return std::string();
  }
  Result<std::string> image = EncodeSegment(events, options);
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  return image.ok() ? *image : std::string();
}

std::vector<Event> AllEvents(const SegmentReader& reader) {
  std::vector<Event> events;
  std::vector<Event> block_events;
  for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
    EXPECT_TRUE(reader.ReadEvents(block_idx, &block_events).ok());
    events.insert(events.end(), block_events.begin(), block_events.end());
  }
  return events;
}

// The merge's segment against the row path's: the same rows in the same
// order, the same footer statistics and choices, and the same bytes.
void ExpectSameAsRowPath(const Readers& inputs, const SegmentWriteOptions& options) {
  const std::string expected = RowPathImage(inputs, options);
  Result<std::string> merged = MergeSegmentsToImage(inputs, options);
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  if (expected.empty()) {
    EXPECT_TRUE(merged->empty());
    return;
  }
  const auto want = OpenImage(expected, "row-path");
  const auto got = OpenImage(*merged, "merge");
  ASSERT_TRUE(want && got);
  ASSERT_TRUE(got->Verify().ok());
  EXPECT_EQ(AllEvents(*got), AllEvents(*want));
  EXPECT_EQ(got->summary().row_count, want->summary().row_count);
  EXPECT_EQ(got->summary().subject_count, want->summary().subject_count);
  EXPECT_EQ(got->summary().time_min_ms, want->summary().time_min_ms);
  EXPECT_EQ(got->summary().time_max_ms, want->summary().time_max_ms);
  ASSERT_EQ(got->event_names().size(), want->event_names().size());
  for (size_t code = 0; code < want->event_names().size(); ++code) {
    EXPECT_EQ(got->event_names()[code].name, want->event_names()[code].name);
    EXPECT_EQ(got->event_names()[code].row_count, want->event_names()[code].row_count);
  }
  ASSERT_EQ(got->property_keys().size(), want->property_keys().size());
  for (size_t key_idx = 0; key_idx < want->property_keys().size(); ++key_idx) {
    const PropertyKeyInfo& a = got->property_keys()[key_idx];
    const PropertyKeyInfo& b = want->property_keys()[key_idx];
    EXPECT_EQ(a.key, b.key);
    EXPECT_EQ(a.row_count, b.row_count) << a.key;
    EXPECT_EQ(a.tag_mask, b.tag_mask) << a.key;
    EXPECT_EQ(a.storage, b.storage) << a.key;
    EXPECT_EQ(a.encoding, b.encoding) << a.key;
    EXPECT_EQ(a.dictionary_size, b.dictionary_size) << a.key;
  }
  EXPECT_EQ(got->block_count(), want->block_count());
  EXPECT_TRUE(*merged == expected) << "the images differ in bytes";
}

TEST(SegmentMergeTest, RandomSegmentsMergeAsTheRowPathEncodes) {
  std::mt19937_64 random(20261127);
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    RandomShape shape;
    shape.keys = 1 + random() % 300;
    const size_t input_count = 1 + random() % 5;
    Readers inputs;
    for (size_t input_idx = 0; input_idx < input_count; ++input_idx) {
      SegmentWriteOptions input_options;
      input_options.project_id = 7;
      input_options.block_rows_max = static_cast<uint32_t>(1 + random() % 300);
      // Columns in one input may be map keys in another.
      input_options.own_column_fraction_min = static_cast<double>(random() % 40) / 100.0;
      const std::vector<Event> events = RandomEvents(random, shape, 1 + random() % 2000);
      Result<std::string> image = EncodeSegment(events, input_options);
      ASSERT_TRUE(image.ok()) << image.status().ToString();
      std::shared_ptr<const SegmentReader> reader = OpenImage(*image, "input");
      ASSERT_TRUE(reader);
      if (random() % 2 == 0) {
        reader = RandomView(random, reader, static_cast<double>(random() % 100) / 100.0);
      }
      inputs.push_back(reader);
    }
    SegmentWriteOptions options;
    options.project_id = 7;
    options.block_rows_max = static_cast<uint32_t>(1 + random() % 500);
    options.own_column_fraction_min = static_cast<double>(random() % 20) / 100.0;
    if (random() % 4 == 0) {
      options.own_columns_max = random() % 4;
    }
    ExpectSameAsRowPath(inputs, options);
  }
}

TEST(SegmentMergeTest, EveryRowHiddenWritesNothing) {
  std::mt19937_64 random(5);
  const std::vector<Event> events = RandomEvents(random, RandomShape{}, 500);
  SegmentWriteOptions options;
  options.block_rows_max = 64;
  Result<std::string> image = EncodeSegment(events, options);
  ASSERT_TRUE(image.ok());
  const auto base = OpenImage(*image, "input");
  std::vector<std::vector<uint32_t>> hidden(base->block_count(),
                                            std::vector<uint32_t>{kAllRowsHidden});
  const Readers inputs = {SegmentReader::WithHiddenRows(base, hidden)};
  Result<std::string> merged = MergeSegmentsToImage(inputs, options);
  ASSERT_TRUE(merged.ok());
  EXPECT_TRUE(merged->empty());
  Result<std::string> none = MergeSegmentsToImage(Readers{}, options);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// Hidden rows take their values with them: a value only a hidden row used is
// neither in the merged dictionary nor anywhere in the file (erasure).
TEST(SegmentMergeTest, HiddenRowsLeaveNoValueBehind) {
  std::vector<Event> events;
  for (uint64_t subject = 0; subject < 400; ++subject) {
    Event event;
    event.name = subject == 7 ? "only-the-erased" : "page";
    event.time_ms = 1000 + static_cast<int64_t>(subject);
    event.subject = Id128{subject, 0};
    event.insert_id = Id128{subject, 1};
    event.properties.push_back(Property{
        "city",
        Value::String(subject == 7 ? "erased-city-xyz" : "c" + std::to_string(subject % 3))});
    events.push_back(std::move(event));
  }
  SegmentWriteOptions options;
  options.block_rows_max = 100;
  Result<std::string> image = EncodeSegment(events, options);
  ASSERT_TRUE(image.ok());
  ASSERT_NE(image->find("erased-city-xyz"), std::string::npos);
  const auto base = OpenImage(*image, "input");
  std::vector<std::vector<uint32_t>> hidden(base->block_count());
  hidden[0] = {7};
  const Readers inputs = {SegmentReader::WithHiddenRows(base, hidden)};
  options.codec = SegmentCodec::kNone;
  Result<std::string> merged = MergeSegmentsToImage(inputs, options);
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(merged->find("erased-city-xyz"), std::string::npos);
  EXPECT_EQ(merged->find("only-the-erased"), std::string::npos);
  const auto reader = OpenImage(*merged, "merge");
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->summary().row_count, 399u);
  ExpectSameAsRowPath(inputs, options);
}

// Dictionaries past 256 and 65,536 entries (two- and four-byte codes), built
// from inputs whose dictionaries overlap.
TEST(SegmentMergeTest, LargeDictionariesMergeWithWiderCodes) {
  Readers inputs;
  for (uint64_t input_idx = 0; input_idx < 3; ++input_idx) {
    std::vector<Event> events;
    for (uint64_t row_idx = 0; row_idx < 50000; ++row_idx) {
      Event event;
      event.name = "e";
      event.time_ms = static_cast<int64_t>(row_idx);
      event.subject = Id128{row_idx % 1000, 0};
      event.insert_id = Id128{row_idx, input_idx};
      // Each value twice per input, so a dictionary pays: 25,000 values per
      // input, 70,000 in all.
      const uint64_t value = input_idx * 22500 + row_idx / 2;
      event.properties.push_back(Property{"id", Value::String("value-" + std::to_string(value))});
      event.properties.push_back(Property{"small", Value::String(std::to_string(row_idx % 300))});
      events.push_back(std::move(event));
    }
    Result<std::string> image = EncodeSegment(events, SegmentWriteOptions{});
    ASSERT_TRUE(image.ok());
    inputs.push_back(OpenImage(*image, "input"));
  }
  ExpectSameAsRowPath(inputs, SegmentWriteOptions{});
  Result<std::string> merged = MergeSegmentsToImage(inputs, SegmentWriteOptions{});
  ASSERT_TRUE(merged.ok());
  const auto reader = OpenImage(*merged, "merge");
  ASSERT_TRUE(reader);
  const PropertyKeyInfo* id = reader->FindPropertyKey("id");
  ASSERT_NE(id, nullptr);
  EXPECT_EQ(id->encoding, StringEncoding::kDictionary);
  EXPECT_GT(id->dictionary_size, 65536u);
}

TEST(SegmentMergeTest, BadOptionsAreInvalidArgument) {
  SegmentWriteOptions options;
  options.block_rows_max = 0;
  Result<std::string> merged = MergeSegmentsToImage(Readers{}, options);
  ASSERT_FALSE(merged.ok());
  EXPECT_EQ(merged.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace minpanel::store
