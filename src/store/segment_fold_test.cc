// Folded segments (docs/formats/segment.md, "Folded persons"): rows written
// under their person with the stored subject kept in the footer, read back
// under their stored subject; the merge folding, refolding and carrying
// folds; views; erasure of a stored subject inside a person's rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <tuple>

#include "store/deletion.h"
#include "store/segment.h"
#include "store/segment_merge.h"
#include "store/store_test_util.h"

namespace minpanel::store {
namespace {

// Generated events: `subjects` ids, a few rows each, times interleaved.
std::vector<Event> MakeEvents(uint64_t subjects, uint64_t rows_per_subject, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<Event> events;
  for (uint64_t subject = 1; subject <= subjects; ++subject) {
    for (uint64_t row = 0; row < rows_per_subject; ++row) {
      Event event = MakeEvent(row % 3 == 0 ? "signup" : "view",
                              kTestNowMs + static_cast<int64_t>(random() % 100'000), subject,
                              seed * 1'000'000 + subject * 1000 + row);
      event.properties.push_back({"row", Value::Int(static_cast<int64_t>(row))});
      events.push_back(std::move(event));
    }
  }
  std::shuffle(events.begin(), events.end(), random);
  return events;
}

// Every `step`-th subject k (and k + 1) joins the person of k - 1.
SubjectFold MakeFold(uint64_t subjects, uint64_t generation, uint64_t step) {
  SubjectFold fold;
  fold.generation = generation;
  for (uint64_t subject = step; subject + 1 <= subjects; subject += step) {
    fold.persons.emplace_back(Id128{0, subject}, Id128{0, subject - 1});
    fold.persons.emplace_back(Id128{0, subject + 1}, Id128{0, subject - 1});
  }
  std::sort(fold.persons.begin(), fold.persons.end());
  return fold;
}

using EventKey = std::tuple<Id128, int64_t, Id128, std::string>;

std::vector<EventKey> Keys(const std::vector<Event>& events) {
  std::vector<EventKey> keys;
  for (const Event& event : events) {
    keys.emplace_back(event.subject, event.time_ms, event.insert_id, event.name);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

// Reads every row of `reader`, checking that its rows are sorted by the
// person `fold` gives their stored subject (nullptr: by stored subject) and
// that the stored subject runs name exactly the rows whose subject differs.
std::vector<Event> ReadAll(const SegmentReader& reader, const SubjectFold* fold) {
  std::vector<Event> all;
  std::vector<Event> events;
  SubjectRuns runs;
  std::vector<StoredSubjectRun> stored_runs;
  Id128 previous;
  for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
    EXPECT_TRUE(reader.ReadEvents(block_idx, &events).ok());
    EXPECT_TRUE(reader.ReadSubjects(block_idx, &runs).ok());
    EXPECT_TRUE(reader.ReadStoredSubjects(block_idx, &stored_runs).ok());
    std::vector<Id128> kept_under;
    for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
      kept_under.insert(kept_under.end(), runs.run_lengths[run_idx], runs.subjects[run_idx]);
    }
    EXPECT_EQ(kept_under.size(), events.size());
    std::vector<bool> in_stored_run(events.size(), false);
    for (const StoredSubjectRun& run : stored_runs) {
      for (uint32_t row = run.row_begin; row < run.row_begin + run.row_count; ++row) {
        EXPECT_EQ(events[row].subject, run.subject);
        in_stored_run[row] = true;
      }
    }
    for (size_t row = 0; row < events.size(); ++row) {
      const Id128 person = fold != nullptr ? fold->PersonOf(events[row].subject)
                                           : events[row].subject;
      if (fold != nullptr) {
        EXPECT_EQ(kept_under[row], person);
      }
      EXPECT_EQ(in_stored_run[row], kept_under[row] != events[row].subject);
      EXPECT_FALSE(kept_under[row] < previous);
      previous = kept_under[row];
      all.push_back(events[row]);
    }
  }
  return all;
}

std::shared_ptr<const SegmentReader> OpenImage(Result<std::string> image) {
  EXPECT_TRUE(image.ok()) << image.status().message();
  auto reader = SegmentReader::Open(std::move(image).value(), "test");
  EXPECT_TRUE(reader.ok()) << reader.status().message();
  return std::move(reader).value();
}

SegmentWriteOptions Options(uint32_t block_rows_max) {
  SegmentWriteOptions options;
  options.project_id = 1;
  options.block_rows_max = block_rows_max;
  return options;
}

TEST(SegmentFoldTest, EncodeWritesRowsUnderTheirPersonAndReadsThemBackAsStored) {
  const std::vector<Event> events = MakeEvents(60, 7, 1);
  const SubjectFold fold = MakeFold(60, 42, 3);
  SegmentWriteOptions options = Options(50);
  options.fold = &fold;
  const auto reader = OpenImage(EncodeSegment(events, options));
  EXPECT_EQ(reader->summary().format_version, kSegmentFormatVersion);
  EXPECT_EQ(reader->summary().fold_generation, 42u);
  EXPECT_GT(reader->summary().stored_subject_runs, 0u);
  EXPECT_EQ(Keys(ReadAll(*reader, &fold)), Keys(events));
  ASSERT_TRUE(reader->Verify().ok());
  // The subject column counts persons: 60 ids, 38 of them (3 and 4, 6 and
  // 7, ..., 57 and 58) kept under another.
  EXPECT_EQ(reader->summary().subject_count, 22u);
}

TEST(SegmentFoldTest, UnfoldedSegmentsHaveNoStoredRuns) {
  const std::vector<Event> events = MakeEvents(20, 5, 2);
  const auto reader = OpenImage(EncodeSegment(events, Options(16)));
  EXPECT_EQ(reader->summary().fold_generation, 0u);
  EXPECT_EQ(reader->summary().stored_subject_runs, 0u);
  EXPECT_EQ(Keys(ReadAll(*reader, nullptr)), Keys(events));
}

TEST(SegmentFoldTest, MergeFoldsRefoldsAndCarriesFolds) {
  std::vector<std::shared_ptr<const SegmentReader>> inputs;
  std::vector<Event> all;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    std::vector<Event> events = MakeEvents(45, 4, seed);
    inputs.push_back(OpenImage(EncodeSegment(events, Options(32))));
    all.insert(all.end(), events.begin(), events.end());
  }
  // Unfolded inputs merged with a fold.
  const SubjectFold first = MakeFold(45, 7, 3);
  SegmentWriteOptions options = Options(40);
  options.fold = &first;
  auto merged = MergeSegmentsToImage(inputs, options);
  const auto folded = OpenImage(std::move(merged));
  EXPECT_EQ(folded->summary().fold_generation, 7u);
  EXPECT_EQ(Keys(ReadAll(*folded, &first)), Keys(all));

  // The same rows folded by EncodeSegment make the same rows in the same
  // order.
  SegmentWriteOptions encode_options = Options(40);
  encode_options.fold = &first;
  const auto encoded = OpenImage(EncodeSegment(all, encode_options));
  std::vector<Event> from_merge = ReadAll(*folded, &first);
  std::vector<Event> from_encode = ReadAll(*encoded, &first);
  ASSERT_EQ(from_merge.size(), from_encode.size());
  for (size_t row = 0; row < from_merge.size(); ++row) {
    EXPECT_EQ(from_merge[row].subject, from_encode[row].subject);
    EXPECT_EQ(from_merge[row].insert_id, from_encode[row].insert_id);
  }

  // Refolded with another map: some rows move back to their own subject,
  // others to new persons.
  const SubjectFold second = MakeFold(45, 8, 5);
  options.fold = &second;
  const std::vector<std::shared_ptr<const SegmentReader>> folded_inputs = {folded, inputs[0]};
  std::vector<Event> twice = all;
  const std::vector<Event> first_input = ReadAll(*inputs[0], nullptr);
  twice.insert(twice.end(), first_input.begin(), first_input.end());
  const auto refolded = OpenImage(MergeSegmentsToImage(folded_inputs, options));
  EXPECT_EQ(refolded->summary().fold_generation, 8u);
  EXPECT_EQ(Keys(ReadAll(*refolded, &second)), Keys(twice));

  // Without a fold the merge keeps each row where it is: a folded input's
  // rows stay folded, an unfolded input's stay under their subject.
  options.fold = nullptr;
  const std::vector<std::shared_ptr<const SegmentReader>> mixed = {folded, inputs[1]};
  const auto carried = OpenImage(MergeSegmentsToImage(mixed, options));
  EXPECT_EQ(carried->summary().fold_generation, 0u);
  std::vector<Event> expected = all;
  const std::vector<Event> second_input = ReadAll(*inputs[1], nullptr);
  expected.insert(expected.end(), second_input.begin(), second_input.end());
  EXPECT_EQ(Keys(ReadAll(*carried, nullptr)), Keys(expected));
  EXPECT_EQ(carried->summary().stored_subject_runs > 0, true);
  const std::vector<std::shared_ptr<const SegmentReader>> alone = {folded};
  const auto purged = OpenImage(MergeSegmentsToImage(alone, options));
  EXPECT_EQ(purged->summary().fold_generation, 7u);
  EXPECT_EQ(Keys(ReadAll(*purged, &first)), Keys(all));
}

TEST(SegmentFoldTest, ViewsRenumberStoredSubjectRuns) {
  const std::vector<Event> events = MakeEvents(30, 6, 3);
  const SubjectFold fold = MakeFold(30, 3, 3);
  SegmentWriteOptions options = Options(25);
  options.fold = &fold;
  const auto reader = OpenImage(EncodeSegment(events, options));
  std::mt19937_64 random(9);
  std::vector<std::vector<uint32_t>> hidden(reader->block_count());
  std::vector<std::vector<uint32_t>> more(reader->block_count());
  for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
    for (uint32_t row = 0; row < reader->block(block_idx).row_count; ++row) {
      if (random() % 4 == 0) {
        hidden[block_idx].push_back(row);
      } else if (random() % 4 == 0) {
        more[block_idx].push_back(row);
      }
    }
  }
  hidden[1] = {kAllRowsHidden};
  const auto view = SegmentReader::WithHiddenRows(reader, hidden);
  // `more` numbered the base's rows; renumber the visible ones for the view.
  std::vector<std::vector<uint32_t>> more_in_view(reader->block_count());
  std::vector<Event> expected;
  std::vector<Event> block_events;
  for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
    ASSERT_TRUE(reader->ReadEvents(block_idx, &block_events).ok());
    uint32_t view_row = 0;
    for (uint32_t row = 0; row < block_events.size(); ++row) {
      const bool hidden_row =
          block_idx == 1 || std::binary_search(hidden[block_idx].begin(),
                                               hidden[block_idx].end(), row);
      if (hidden_row) {
        continue;
      }
      if (std::binary_search(more[block_idx].begin(), more[block_idx].end(), row)) {
        more_in_view[block_idx].push_back(view_row);
      } else {
        expected.push_back(block_events[row]);
      }
      ++view_row;
    }
  }
  const auto narrower = SegmentReader::WithMoreHiddenRows(view, more_in_view);
  EXPECT_EQ(Keys(ReadAll(*narrower, &fold)), Keys(expected));
}

TEST(SegmentFoldTest, ErasureHidesTheRowsOfAStoredSubjectInsideAPerson) {
  const std::vector<Event> events = MakeEvents(30, 6, 4);
  const SubjectFold fold = MakeFold(30, 3, 3);  // 3 and 4 are kept under 2
  SegmentWriteOptions options = Options(10);
  options.fold = &fold;
  const auto reader = OpenImage(EncodeSegment(events, options));
  const auto erase = [&](std::vector<Id128> subjects) {
    auto state = MakeDeletionState({Deletion{1, LogPosition{9, 0}, 0, subjects, std::nullopt}}, 1);
    uint64_t hidden_count = 0;
    auto hidden = HiddenRows(*reader, *state->Find(1), LogPosition{5, 0}, &hidden_count);
    EXPECT_TRUE(hidden.ok());
    EXPECT_EQ(hidden_count, 6u * subjects.size());
    return ReadAll(*SegmentReader::WithHiddenRows(reader, std::move(hidden).value()), &fold);
  };
  // The anonymous id 3, kept under 2: only its own rows go.
  for (const Event& event : erase({Id128{0, 3}})) {
    EXPECT_NE(event.subject, (Id128{0, 3}));
  }
  // The person 2 itself: its own rows go, those of 3 and 4 stay.
  const std::vector<Event> left = erase({Id128{0, 2}});
  EXPECT_EQ(std::count_if(left.begin(), left.end(),
                          [](const Event& event) { return event.subject == Id128{0, 2}; }),
            0);
  EXPECT_EQ(std::count_if(left.begin(), left.end(),
                          [](const Event& event) { return event.subject == Id128{0, 3}; }),
            6);
  // Every id of the person.
  EXPECT_EQ(erase({Id128{0, 2}, Id128{0, 3}, Id128{0, 4}}).size(), events.size() - 18);
}

TEST(SegmentFoldTest, DamagedFoldSectionIsCorruption) {
  const std::vector<Event> events = MakeEvents(12, 3, 5);
  const SubjectFold fold = MakeFold(12, 3, 3);
  SegmentWriteOptions options = Options(64);
  options.fold = &fold;
  auto image = EncodeSegment(events, options);
  ASSERT_TRUE(image.ok());
  auto reader = SegmentReader::Open(*image, "test");
  ASSERT_TRUE(reader.ok());
  SegmentFooter footer = (*reader)->footer();
  ASSERT_FALSE(footer.blocks[0].stored_runs.empty());
  // A run past the block's rows.
  footer.blocks[0].stored_runs.back().row_count = footer.blocks[0].row_count + 1;
  std::string bytes;
  EncodeSegmentFooter(footer, &bytes);
  uint64_t data_bytes = 0;
  for (const FooterColumn& column : footer.columns) {
    data_bytes += column.encoding == StringEncoding::kDictionary ? column.dictionary.stored_bytes
                                                                 : 0;
  }
  for (const FooterBlock& block : footer.blocks) {
    for (const ChunkRef& ref : block.chunks) {
      data_bytes += ref.stored_bytes;
    }
    data_bytes += block.policy_versions.stored_bytes;
  }
  const auto decoded = DecodeSegmentFooter(bytes, data_bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("stored subject runs pass the block's rows"),
            std::string::npos);
  // The same footer read as version 1 has bytes it does not know.
  footer.blocks[0].stored_runs.clear();
  bytes.clear();
  EncodeSegmentFooter(footer, &bytes);
  EXPECT_TRUE(DecodeSegmentFooter(bytes, data_bytes).ok());
  EXPECT_FALSE(DecodeSegmentFooter(bytes, data_bytes, 1).ok());
}

}  // namespace
}  // namespace minpanel::store
