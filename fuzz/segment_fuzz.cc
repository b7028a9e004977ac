// Fuzzes the store's segment files (docs/formats/segment.md), which must take
// any bytes a crash or a bad disk leaves without crashing. The first input
// byte picks what the rest is:
//   mode 0: a whole segment file image for OpenSegment, every per-block
//           read, Verify and DumpSegmentFile;
//   mode 1: events, parsed from the bytes by the harness, encoded with
//           options taken from the bytes (granules of 1 to 8 rows, or
//           none), then read back;
//   mode 2: one column chunk (or footer) for its decoder, behind the
//           checksum, with parameters from the next bytes.
// Invariants: reading fails only with Corruption; a file that verifies
// dumps without error, and its events re-encode into a file that reads back
// the same events; the events of mode 1 come back exactly (sorted, with
// properties in key order).
//
// The seeds in fuzz/corpus/segment_fuzz are segment files the writer made
// (mode 0; image_granules with property and map chunks in granules) and
// event streams (mode 1; events_granules cut into granules of 3 rows).
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <tuple>

#include "fuzz_check.h"
#include "image_file_system.h"
#include "store/segment.h"
#include "store/segment_merge.h"
#include "store/store.h"

namespace minpanel::fuzz {
namespace {

constexpr uint8_t kModeCount = 3;
const std::string kImagePath = "/fuzz/000001.seg";

void CheckCorruption(const Status& status, const char* what) {
  if (!status.ok() && status.code() != StatusCode::kCorruption) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
  }
  Check(status.ok() || status.code() == StatusCode::kCorruption, what);
}

// Like Check, but prints the status that broke the invariant.
void CheckOk(const Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
  }
  Check(status.ok(), what);
}

bool SameValue(const Value& a, const Value& b) {
  if (a.type() == Value::Type::kDouble && b.type() == Value::Type::kDouble) {
    return std::bit_cast<uint64_t>(a.as_double()) == std::bit_cast<uint64_t>(b.as_double());
  }
  return a == b;
}

bool SameEvents(const std::vector<Event>& a, const std::vector<Event>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t row = 0; row < a.size(); ++row) {
    if (std::tie(a[row].name, a[row].time_ms, a[row].subject, a[row].insert_id,
                 a[row].key_version) != std::tie(b[row].name, b[row].time_ms, b[row].subject,
                                                 b[row].insert_id, b[row].key_version) ||
        a[row].properties.size() != b[row].properties.size()) {
      return false;
    }
    for (size_t property_idx = 0; property_idx < a[row].properties.size(); ++property_idx) {
      const Property& left = a[row].properties[property_idx];
      const Property& right = b[row].properties[property_idx];
      if (left.key != right.key || !SameValue(left.value, right.value)) {
        return false;
      }
    }
  }
  return true;
}

// Reads every column of every block; returns the first failure (OK when all
// of it decoded).
Status ReadEverything(const store::SegmentReader& reader, std::vector<Event>* all_events) {
  Status first_failure;
  auto note = [&first_failure](const Status& status) {
    if (first_failure.ok() && !status.ok()) {
      first_failure = status;
    }
  };
  std::vector<int64_t> times;
  store::SubjectRuns runs;
  std::vector<Id128> ids;
  std::vector<uint32_t> numbers;
  store::PropertyColumn column;
  std::vector<Event> events;
  std::string map_scratch;
  std::vector<store::SegmentReader::MapEntryView> map_entries;
  for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
    const std::vector<Status> statuses = {
        reader.ReadTimes(block_idx, &times), reader.ReadSubjects(block_idx, &runs),
        reader.ReadInsertIds(block_idx, &ids), reader.ReadKeyVersions(block_idx, &numbers),
        reader.ReadNameCodes(block_idx, &numbers)};
    for (const Status& status : statuses) {
      CheckCorruption(status, "column reads fail only with Corruption");
      note(status);
    }
    for (const store::PropertyKeyInfo& key : reader.property_keys()) {
      const Status status = reader.ReadProperty(block_idx, key.key, &column);
      CheckCorruption(status, "property reads fail only with Corruption");
      if (status.ok()) {
        Check(column.size() == reader.block(block_idx).row_count, "a value per row");
      }
      note(status);
    }
    const Status map_status = reader.ReadMapEntries(block_idx, &map_scratch, &map_entries);
    CheckCorruption(map_status, "map entry reads fail only with Corruption");
    note(map_status);
    const Status status = reader.ReadEvents(block_idx, &events);
    CheckCorruption(status, "event reads fail only with Corruption");
    if (status.ok()) {
      Check(events.size() == reader.block(block_idx).row_count, "an event per row");
      all_events->insert(all_events->end(), events.begin(), events.end());
    }
    note(status);
  }
  return first_failure;
}

void CheckImage(std::string_view image) {
  auto reader = store::SegmentReader::Open(std::string(image), kImagePath);
  if (!reader.ok()) {
    CheckCorruption(reader.status(), "open fails only with Corruption");
    return;
  }
  std::vector<Event> events;
  const bool clean = ReadEverything(**reader, &events).ok();
  const Status verified = (*reader)->Verify();
  CheckCorruption(verified, "verify fails only with Corruption");
  Check(verified.ok() == clean, "Verify agrees with the reads");
  ImageFileSystem file_system(kImagePath, image);
  std::ostringstream out;
  const Status dumped = store::DumpSegmentFile(file_system, kImagePath, out);
  Check(dumped.ok() == clean, "DumpSegmentFile agrees with the reads");
  if (!clean) {
    return;
  }
  // A file that reads cleanly re-encodes to the same events.
  store::SegmentWriteOptions options;
  options.project_id = (*reader)->summary().project_id;
  options.block_rows_max = (*reader)->summary().block_rows_max;
  auto again = store::EncodeSegment(events, options);
  CheckOk(again.status(), "decoded events encode");
  auto reread = store::SegmentReader::Open(std::move(again).value(), "again");
  CheckOk(reread.status(), "a re-encoded segment opens");
  std::vector<Event> events_again;
  CheckOk(ReadEverything(**reread, &events_again), "a re-encoded segment reads");
  Check(SameEvents(events, events_again), "re-encoding keeps every event");
  // The streaming merge (compaction, purge) of the file alone gives the same
  // events, and of a view without its first row, the same less that row.
  std::shared_ptr<const store::SegmentReader> shared = std::move(*reader);
  const std::shared_ptr<const store::SegmentReader> inputs[] = {shared};
  auto merged = store::MergeSegmentsToImage(inputs, options);
  CheckOk(merged.status(), "a clean segment merges");
  auto merged_reader = store::SegmentReader::Open(std::move(merged).value(), "merged");
  CheckOk(merged_reader.status(), "a merged segment opens");
  std::vector<Event> events_merged;
  CheckOk(ReadEverything(**merged_reader, &events_merged), "a merged segment reads");
  Check(SameEvents(events, events_merged), "merging keeps every event");
  if (shared->block_count() > 0 && shared->block(0).row_count > 0) {
    std::vector<std::vector<uint32_t>> hidden(shared->block_count());
    hidden[0] = {0};
    const std::shared_ptr<const store::SegmentReader> views[] = {
        store::SegmentReader::WithHiddenRows(shared, hidden)};
    auto purged = store::MergeSegmentsToImage(views, options);
    CheckOk(purged.status(), "a view of a clean segment merges");
    std::vector<Event> events_purged;
    if (!purged->empty()) {
      auto purged_reader = store::SegmentReader::Open(std::move(purged).value(), "purged");
      CheckOk(purged_reader.status(), "a purged segment opens");
      CheckOk(ReadEverything(**purged_reader, &events_purged), "a purged segment reads");
    }
    Check(events_purged.size() + 1 == events.size(), "the purge leaves out the hidden row");
  }
}

// Pulls bytes from the input; zeros once it runs out.
class InputBytes {
 public:
  explicit InputBytes(std::string_view bytes) : bytes_(bytes) {}
  bool empty() const { return position_ >= bytes_.size(); }
  uint8_t Byte() { return empty() ? 0 : static_cast<uint8_t>(bytes_[position_++]); }
  uint64_t Wide(size_t bytes) {
    uint64_t value = 0;
    for (size_t byte_idx = 0; byte_idx < bytes; ++byte_idx) {
      value |= uint64_t{Byte()} << (8 * byte_idx);
    }
    return value;
  }
  std::string Text() {
    const size_t length = Byte() % 12;
    std::string text;
    for (size_t byte_idx = 0; byte_idx < length; ++byte_idx) {
      text.push_back(static_cast<char>(Byte()));
    }
    return text;
  }
  std::string_view Rest() { return empty() ? std::string_view() : bytes_.substr(position_); }

 private:
  std::string_view bytes_;
  size_t position_ = 0;
};

Value MakeValue(InputBytes* input) {
  switch (input->Byte() % 6) {
    case 0:
      return Value::Null();
    case 1:
      return Value::Bool(input->Byte() % 2 == 1);
    case 2:
      return Value::Int(static_cast<int64_t>(input->Wide(input->Byte() % 9)));
    case 3:
      return Value::Double(std::bit_cast<double>(input->Wide(8)));
    case 4: {
      StringList items;
      const size_t count = input->Byte() % 4;
      for (size_t item_idx = 0; item_idx < count; ++item_idx) {
        items.push_back(input->Text());
      }
      return Value::List(std::move(items));
    }
    default:
      return Value::String(input->Text());
  }
}

std::vector<Event> MakeEvents(InputBytes* input) {
  std::vector<Event> events;
  while (!input->empty() && events.size() < 2000) {
    Event event;
    event.name = std::string(1, static_cast<char>('a' + input->Byte() % 5));
    event.subject = Id128{0, input->Byte() % 8u};
    event.time_ms = static_cast<int64_t>(input->Wide(input->Byte() % 9));
    event.insert_id = Id128{input->Byte(), input->Byte()};
    event.key_version = input->Byte() % 3;
    event.policy_version = input->Byte() % 4 == 3 ? kPolicyVersionUnknown : input->Byte() % 3;
    const size_t properties = input->Byte() % 6;
    for (size_t property_idx = 0; property_idx < properties; ++property_idx) {
      std::string key = "k" + std::to_string(input->Byte() % 10);
      if (FindProperty(event.properties, key) == nullptr) {
        event.properties.push_back(Property{std::move(key), MakeValue(input)});
      }
    }
    events.push_back(std::move(event));
  }
  return events;
}

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

void CheckRoundTrip(std::string_view bytes) {
  InputBytes input(bytes);
  store::SegmentWriteOptions options;
  options.block_rows_max = 1 + input.Byte() % 64;
  options.own_column_fraction_min = (input.Byte() % 5) / 4.0;
  options.own_columns_max = input.Byte() % 12;
  const uint8_t codec = input.Byte() % 4;
  if (codec < 3) {
    options.codec = static_cast<store::SegmentCodec>(codec);
  }
  // Granules of a few rows (0: every chunk whole), so that blocks of up to
  // 64 rows cut their property and map chunks into several.
  options.granule_rows = static_cast<uint32_t>(input.Byte() % 9);
  // Every chunk in granules, or only those that compress 2x, 7x or 20x.
  constexpr double kGranuleRatioMins[] = {0, 2, 7, 20};
  options.granule_ratio_min = kGranuleRatioMins[input.Byte() % 4];
  const std::vector<Event> events = MakeEvents(&input);
  auto image = store::EncodeSegment(events, options);
  if (events.empty()) {
    Check(!image.ok(), "an empty segment is refused");
    return;
  }
  CheckOk(image.status(), "events with unique keys encode");
  auto reader = store::SegmentReader::Open(std::move(image).value(), "round trip");
  CheckOk(reader.status(), "a written segment opens");
  std::vector<Event> decoded;
  CheckOk(ReadEverything(**reader, &decoded), "a written segment reads");
  Check(SameEvents(decoded, Canonical(events)), "events come back exactly");
}

void CheckChunk(std::string_view bytes) {
  InputBytes input(bytes);
  const uint8_t decoder = input.Byte() % 8;
  const size_t rows = 1 + input.Byte() % 64;
  const size_t dictionary_size = 1 + input.Byte() % 40;
  const uint8_t tag_mask = static_cast<uint8_t>(input.Byte() & 0xfe);
  const std::string_view raw = input.Rest();
  std::vector<int64_t> times;
  std::vector<Id128> ids;
  std::vector<uint32_t> numbers;
  std::vector<std::string_view> entries;
  std::vector<std::string> dictionary_strings;
  for (size_t entry_idx = 0; entry_idx < dictionary_size; ++entry_idx) {
    dictionary_strings.push_back("entry" + std::to_string(1000 + entry_idx));
  }
  const std::vector<std::string_view> dictionary(dictionary_strings.begin(),
                                                 dictionary_strings.end());
  store::PropertyColumn column;
  std::vector<store::PropertyTag> tags;
  std::vector<int64_t> ints;
  std::vector<double> doubles;
  std::vector<std::string_view> strings;
  std::vector<uint32_t> codes;
  std::vector<uint32_t> offsets;
  std::vector<std::string_view> items;
  std::vector<uint32_t> item_codes;
  const store::PropertyColumnOutput output = {&tags,  &ints,    &doubles, &strings,
                                              &codes, &offsets, &items,   &item_codes};
  const std::vector<uint8_t> masks(dictionary_size, tag_mask | 0xfe);
  Status status;
  switch (decoder) {
    case 0:
      status = store::DecodeTimes(raw, rows, -5, 1'000'000, store::TimeEncoding::kZigZagDeltas,
                                  &times);
      // Packed offsets of 20 bits, and of a width the input picks (0 to 32).
      CheckCorruption(store::DecodeTimes(raw, rows, -5, 1'000'000,
                                         store::TimeEncoding::kPackedOffsets, &times),
                      "packed times fail only with Corruption");
      CheckCorruption(store::DecodeTimes(
                          raw, rows, 7,
                          7 + static_cast<int64_t>((uint64_t{1} << (dictionary_size % 33)) - 1),
                          store::TimeEncoding::kPackedOffsets, &times),
                      "packed times fail only with Corruption");
      break;
    case 1: {
      store::FooterBlock block;
      block.row_count = static_cast<uint32_t>(rows);
      block.subject_run_count = 2;
      block.subject_last = Id128{0, 9};
      status = store::DecodeSubjects(raw, block, &ids, &numbers);
      break;
    }
    case 2: {
      status = store::DecodeKeyVersions(raw, rows, &numbers);
      std::vector<uint64_t> counts;
      CheckCorruption(
          store::CountNameCodes(raw, rows, dictionary_size,
                                std::string((dictionary_size + 7) / 8, '\x55'), &counts),
          "name counts fail only with Corruption");
      break;
    }
    case 3:
      status = store::DecodeDictionary(raw, dictionary_size, &entries);
      break;
    case 4:
    case 5: {
      store::PropertyColumnFormat format;
      format.encoding =
          decoder == 4 ? store::StringEncoding::kPlain : store::StringEncoding::kDictionary;
      format.tag_mask = tag_mask;
      format.dictionary = dictionary;
      format.present_count = static_cast<uint32_t>(input.Byte() % (rows + 1));
      status = store::DecodePropertyColumn(raw, rows, format, output);
      if (status.ok()) {
        Check(tags.size() == rows, "a tag per row");
      }
      // The same chunk for every third row: whatever the bytes, only
      // Corruption; where the whole chunk decodes, the same tags.
      std::vector<uint32_t> selected;
      for (uint32_t row_idx = 1; row_idx < rows; row_idx += 3) {
        selected.push_back(row_idx);
      }
      std::vector<store::PropertyTag> part_tags;
      std::vector<int64_t> part_ints;
      std::vector<double> part_doubles;
      std::vector<std::string_view> part_strings;
      std::vector<uint32_t> part_codes;
      std::vector<uint32_t> part_offsets;
      std::vector<std::string_view> part_items;
      std::vector<uint32_t> part_item_codes;
      const store::PropertyColumnOutput part_output = {
          &part_tags,  &part_ints,    &part_doubles, &part_strings,
          &part_codes, &part_offsets, &part_items,   &part_item_codes};
      const Status part_status =
          store::DecodePropertyColumnRows(raw, rows, format, selected, part_output);
      CheckCorruption(part_status, "selected-row decoder fails only with Corruption");
      if (status.ok()) {
        Check(part_status.ok(), "selected rows of a good chunk decode");
        for (size_t slot = 0; slot < selected.size(); ++slot) {
          Check(part_tags[slot] == tags[selected[slot]], "selected rows keep their tags");
          if (part_tags[slot] == store::PropertyTag::kString) {
            Check(part_strings[slot] == strings[selected[slot]], "selected strings agree");
          }
        }
      }
      break;
    }
    case 6: {
      status = store::DecodeMapKey(raw, rows, static_cast<uint32_t>(raw.size() / 2), masks,
                                   static_cast<uint32_t>(dictionary_size / 2), output);
      std::vector<uint32_t> selected;
      for (uint32_t row_idx = 0; row_idx < rows; row_idx += 2) {
        selected.push_back(row_idx);
      }
      std::vector<store::PropertyColumnOutput> outputs;
      std::vector<std::vector<store::PropertyTag>> all_tags(masks.size());
      std::vector<std::vector<int64_t>> all_ints(masks.size());
      std::vector<std::vector<double>> all_doubles(masks.size());
      std::vector<std::vector<std::string_view>> all_strings(masks.size());
      std::vector<std::vector<uint32_t>> all_codes(masks.size());
      std::vector<std::vector<uint32_t>> all_offsets(masks.size());
      std::vector<std::vector<std::string_view>> all_items(masks.size());
      std::vector<std::vector<uint32_t>> all_item_codes(masks.size());
      for (size_t key_idx = 0; key_idx < masks.size(); ++key_idx) {
        outputs.push_back({&all_tags[key_idx], &all_ints[key_idx], &all_doubles[key_idx],
                           &all_strings[key_idx], &all_codes[key_idx], &all_offsets[key_idx],
                           &all_items[key_idx], &all_item_codes[key_idx]});
      }
      const Status rows_status = store::DecodeMapRows(
          raw, rows, static_cast<uint32_t>(raw.size() / 2), masks, selected, outputs);
      CheckCorruption(rows_status, "map row decoder fails only with Corruption");
      if (status.ok()) {
        Check(rows_status.ok(), "selected rows of a good map chunk decode");
        const std::vector<store::PropertyTag>& key_tags = all_tags[dictionary_size / 2];
        for (size_t slot = 0; slot < selected.size(); ++slot) {
          Check(key_tags[slot] == tags[selected[slot]], "selected map rows keep their tags");
        }
      }
      break;
    }
    default:
      status = store::DecodeSegmentFooter(raw, raw.size()).status();
      break;
  }
  CheckCorruption(status, "chunk decoders fail only with Corruption");
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel::fuzz;
  if (size == 0) {
    return 0;
  }
  const uint8_t mode = data[0] % kModeCount;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (mode == 0) {
    CheckImage(input);
  } else if (mode == 1) {
    CheckRoundTrip(input);
  } else {
    CheckChunk(input);
  }
  return 0;
}
