// Erasure and time-based dropping (src/store/README.md, "Erasure"): every
// read path hides a deletion at once — memtable, flushing memtable, segments
// through Scan, Snapshot's column reads and ScanProfiles — before and after a
// flush, a compaction, a restart and the physical purge; a purge that fails at
// any write leaves the deletion in force and loses nothing else; events
// stored after a deletion are kept; and a random differential run against a
// row-by-row model.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "core/time_units.h"
#include "store/bytes.h"
#include "store/deletion.h"
#include "store/manifest.h"
#include "store/segment.h"
#include "store/store_test_util.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 5;
constexpr uint32_t kOtherProject = 6;

ProfileUpdate MakeProfile(uint64_t subject, int64_t time_ms) {
  ProfileUpdate update;
  update.subject = Id128{0, subject};
  update.time_ms = time_ms;
  update.key_version = 1;
  update.properties = {{"plan", Value::String("team")}};
  return update;
}

class ErasureTest : public StoreTest {
 protected:
  // Events with insert ids [first, first + count): subject id % subjects,
  // over three UTC days, in batches of 50.
  void AppendEvents(uint64_t first, uint64_t count, uint64_t subjects = 20,
                    uint32_t project_id = kProject) {
    for (uint64_t begin = first; begin < first + count; begin += 50) {
      std::vector<Event> events;
      for (uint64_t id = begin; id < std::min(first + count, begin + 50); ++id) {
        events.push_back(
            MakeEvent(id % 2 == 0 ? "view" : "buy",
                      kTestNowMs - static_cast<int64_t>(id % 3) * kDayMs + static_cast<int64_t>(id),
                      id % subjects, id));
      }
      while (true) {
        const auto result = engine_->Append(MakeBatch(project_id, events));
        if (result.ok()) {
          break;
        }
        ASSERT_EQ(result.status().code(), StatusCode::kResourceExhausted)
            << result.status().ToString();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }
  void AppendProfiles(std::vector<uint64_t> subjects, int64_t time_ms) {
    AppendBatch batch;
    batch.project_id = kProject;
    for (const uint64_t subject : subjects) {
      batch.profile_updates.push_back(MakeProfile(subject, time_ms));
    }
    ASSERT_TRUE(engine_->Append(std::move(batch)).ok());
  }
  void Erase(std::vector<uint64_t> subjects, uint32_t project_id = kProject) {
    std::vector<Id128> ids;
    for (const uint64_t subject : subjects) {
      ids.push_back(Id128{0, subject});
    }
    const Status status = engine_->EraseSubjects(project_id, ids);
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  void Purge() {
    const Status status = engine_->PurgeDeleted();
    ASSERT_TRUE(status.ok()) << status.ToString();
  }

  // Insert ids seen by Scan, each once.
  std::set<uint64_t> ScanIds(uint32_t project_id = kProject) {
    std::set<uint64_t> ids;
    for (const Event& event : ScanAll(project_id)) {
      EXPECT_TRUE(ids.insert(event.insert_id.low).second) << "twice: " << event.insert_id.low;
    }
    return ids;
  }
  // Insert ids seen through Snapshot's readers, checking that every column
  // read agrees with the blocks' row counts (as the query engine relies on).
  std::set<uint64_t> SnapshotIds(uint32_t project_id = kProject) {
    std::set<uint64_t> ids;
    auto snapshot = engine_->Snapshot(project_id);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status().ToString();
    if (!snapshot.ok()) {
      return ids;
    }
    std::vector<Event> events;
    std::vector<int64_t> times;
    std::vector<Id128> insert_ids;
    std::vector<uint32_t> names;
    SubjectRuns runs;
    PropertyColumn plan;
    for (const auto& reader : *snapshot) {
      uint64_t rows = 0;
      for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
        const size_t block_rows = reader->block(block_idx).row_count;
        rows += block_rows;
        EXPECT_TRUE(reader->ReadEvents(block_idx, &events).ok());
        EXPECT_TRUE(reader->ReadTimes(block_idx, &times).ok());
        EXPECT_TRUE(reader->ReadInsertIds(block_idx, &insert_ids).ok());
        EXPECT_TRUE(reader->ReadNameCodes(block_idx, &names).ok());
        EXPECT_TRUE(reader->ReadSubjects(block_idx, &runs).ok());
        EXPECT_TRUE(reader->ReadProperty(block_idx, "plan", &plan).ok());
        EXPECT_EQ(events.size(), block_rows);
        EXPECT_EQ(times.size(), block_rows);
        EXPECT_EQ(names.size(), block_rows);
        EXPECT_EQ(plan.size(), block_rows);
        uint64_t run_rows = 0;
        for (const uint32_t length : runs.run_lengths) {
          EXPECT_GT(length, 0u);
          run_rows += length;
        }
        EXPECT_EQ(run_rows, block_rows);
        size_t row_idx = 0;
        for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
          for (uint32_t in_run = 0; in_run < runs.run_lengths[run_idx]; ++in_run, ++row_idx) {
            EXPECT_EQ(events[row_idx].subject, runs.subjects[run_idx]);
            EXPECT_EQ(events[row_idx].time_ms, times[row_idx]);
            EXPECT_EQ(events[row_idx].insert_id, insert_ids[row_idx]);
          }
        }
        for (const Event& event : events) {
          EXPECT_TRUE(ids.insert(event.insert_id.low).second) << "twice: " << event.insert_id.low;
        }
      }
      EXPECT_EQ(rows, reader->summary().row_count);
    }
    return ids;
  }
  std::vector<uint64_t> ProfileSubjects() {
    std::vector<uint64_t> subjects;
    const Status status = engine_->ScanProfiles(kProject, [&](const ProfileUpdate& update) {
      subjects.push_back(update.subject.low);
      return true;
    });
    EXPECT_TRUE(status.ok()) << status.ToString();
    std::sort(subjects.begin(), subjects.end());
    return subjects;
  }
  // Ids in [first, first + count) whose subject (id % subjects) is not erased.
  static std::set<uint64_t> Expected(uint64_t first, uint64_t count, uint64_t subjects,
                                     const std::set<uint64_t>& erased) {
    std::set<uint64_t> ids;
    for (uint64_t id = first; id < first + count; ++id) {
      if (!erased.contains(id % subjects)) {
        ids.insert(id);
      }
    }
    return ids;
  }
  void ExpectEverywhere(const std::set<uint64_t>& expected) {
    EXPECT_EQ(ScanIds(), expected);
    EXPECT_EQ(SnapshotIds(), expected);
  }
  // Every file of the store dumped readably (segments decoded, log records,
  // manifest): what `minpanel debug dump` would show.
  std::string DumpFolder() {
    std::ostringstream out;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(folder_)) {
      if (entry.is_regular_file()) {
        (void)DumpStoreFile(*fault_file_system_, entry.path().string(), out);
      }
    }
    return out.str();
  }
  static std::string Hex(uint64_t subject) { return Id128{0, subject}.ToHex(); }
};

TEST_F(ErasureTest, EraseHidesMemtableRowsFromEveryReadAtOnce) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 400);
  AppendProfiles({3, 4, 7}, kTestNowMs);
  Erase({3, 7});
  const std::set<uint64_t> expected = Expected(0, 400, 20, {3, 7});
  ExpectEverywhere(expected);
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{4}));
  ScanRequest request;
  request.project_id = kProject;
  request.subject = Id128{0, 3};
  EXPECT_TRUE(ScanWith(request).empty());
  EXPECT_EQ(engine_->GetStats().deletions_active, 1u);
}

TEST_F(ErasureTest, EraseHidesSegmentRowsThroughViews) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 3000);
  Reopen();  // Close flushes: every row is in a segment now
  ASSERT_EQ(engine_->GetStats().memtable_rows, 0u);
  Erase({3, 7, 19});
  ExpectEverywhere(Expected(0, 3000, 20, {3, 7, 19}));
  // A block with every row hidden reads as empty.
  Erase({0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18});
  ExpectEverywhere({});
}

TEST_F(ErasureTest, EraseSurvivesFlushRestartAndLogReplay) {
  options_.flush_on_close = false;  // the erase is only in the log
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 1000);
  AppendProfiles({3, 5}, kTestNowMs);
  Erase({3, 11});
  Reopen();  // replays events and the deletion record
  const std::set<uint64_t> expected = Expected(0, 1000, 20, {3, 11});
  ExpectEverywhere(expected);
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{5}));
  options_.flush_on_close = true;
  Reopen();  // flushed after the deletion: segments never hold the rows
  Reopen();
  ExpectEverywhere(expected);
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{5}));
}

TEST_F(ErasureTest, EraseOfSegmentRowsSurvivesRestartBeforeThePurge) {
  options_.purge_delay_ms = 3'600'000;  // no purge in the background
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 2000);
  Reopen();
  Erase({2, 8});
  Reopen();  // the deletion now lives in the manifest (the flush trimmed its log
             // file)
  ExpectEverywhere(Expected(0, 2000, 20, {2, 8}));
  EXPECT_EQ(engine_->GetStats().deletions_active, 1u);
  options_.flush_on_close = false;
  Reopen();
  ExpectEverywhere(Expected(0, 2000, 20, {2, 8}));
}

TEST_F(ErasureTest, EventsAndProfilesStoredAfterTheEraseAreKept) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 500);
  AppendProfiles({3}, kTestNowMs);
  Erase({3});
  // The same subject comes back: new events (ids 100000..) and a profile.
  std::vector<Event> again;
  for (uint64_t id = 100'000; id < 100'010; ++id) {
    again.push_back(MakeEvent("view", kTestNowMs - kDayMs, 3, id));
  }
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, again)).ok());
  AppendProfiles({3}, kTestNowMs + 1);
  std::set<uint64_t> expected = Expected(0, 500, 20, {3});
  for (uint64_t id = 100'000; id < 100'010; ++id) {
    expected.insert(id);
  }
  ExpectEverywhere(expected);
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{3}));
  Reopen();  // flushed: the new rows and the old segment rows share nothing
  ExpectEverywhere(expected);
  options_.flush_on_close = false;
  AppendEvents(200'000, 40);  // in the log only, after the deletion
  for (uint64_t id = 200'000; id < 200'040; ++id) {
    expected.insert(id);
  }
  Reopen();
  ExpectEverywhere(expected);
  Purge();
  ExpectEverywhere(expected);
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{3}));
}

TEST_F(ErasureTest, EraseWhileTheRowsAreInTheFlushingMemtable) {
  options_.memtable_rows_max = 100;
  ASSERT_TRUE(Open().ok());
  // Many small flushes; the erase lands whatever stage each row is in.
  AppendEvents(0, 2000);
  Erase({1, 6});
  ExpectEverywhere(Expected(0, 2000, 20, {1, 6}));
  AppendEvents(2000, 2000);
  std::set<uint64_t> expected = Expected(0, 2000, 20, {1, 6});
  for (uint64_t id = 2000; id < 4000; ++id) {
    expected.insert(id);
  }
  ExpectEverywhere(expected);
  Reopen();
  ExpectEverywhere(expected);
  EXPECT_GT(engine_->GetStats().segments, 0u);
}

TEST_F(ErasureTest, CompactionDropsHiddenRowsAndKeepsLaterOnes) {
  options_.memtable_rows_max = 200;
  options_.purge_delay_ms = 3'600'000;  // only compaction removes rows here
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 800);
  Erase({4});
  // Later flushes make four or more small segments per day: compaction
  // merges segments from before the erase with ones from after it.
  AppendEvents(800, 3200);
  std::set<uint64_t> expected = Expected(0, 800, 20, {4});
  for (uint64_t id = 800; id < 4000; ++id) {
    expected.insert(id);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().compactions < 2) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no compaction";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ExpectEverywhere(expected);
  Reopen();
  ExpectEverywhere(expected);
}

TEST_F(ErasureTest, DropBeforeHidesOlderEventsAndKeepsLaterAppends) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 900);
  Reopen();
  AppendEvents(900, 300);  // memtable
  const int64_t bound_ms = kTestNowMs - kDayMs + 500;
  ASSERT_TRUE(engine_->DropBefore(kProject, bound_ms).ok());
  std::set<uint64_t> expected;
  for (uint64_t id = 0; id < 1200; ++id) {
    const int64_t time_ms =
        kTestNowMs - static_cast<int64_t>(id % 3) * kDayMs + static_cast<int64_t>(id);
    if (time_ms >= bound_ms) {
      expected.insert(id);
    }
  }
  ExpectEverywhere(expected);
  // An old event appended after the drop is kept (a drop is a one-off act).
  ASSERT_TRUE(
      engine_->Append(MakeBatch(kProject, {MakeEvent("view", kTestNowMs - 30 * kDayMs, 1, 77'777)}))
          .ok());
  expected.insert(77'777);
  ExpectEverywhere(expected);
  Reopen();
  ExpectEverywhere(expected);
  Purge();
  ExpectEverywhere(expected);
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  // Other projects are untouched.
  AppendEvents(0, 100, 20, kOtherProject);
  EXPECT_EQ(ScanIds(kOtherProject).size(), 100u);
}

TEST_F(ErasureTest, ThousandsOfSubjectsInOneCall) {
  ASSERT_TRUE(Open().ok());
  constexpr uint64_t kSubjects = 20'000;
  AppendEvents(0, 40'000, kSubjects);
  Reopen();
  AppendEvents(40'000, 10'000, kSubjects);  // memtable
  std::vector<uint64_t> erased;
  std::set<uint64_t> erased_set;
  std::mt19937_64 random(7);
  while (erased.size() < 5'000) {
    const uint64_t subject = random() % kSubjects;
    if (erased_set.insert(subject).second) {
      erased.push_back(subject);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  Erase(erased);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(5));
  const std::set<uint64_t> expected = Expected(0, 50'000, kSubjects, erased_set);
  ExpectEverywhere(expected);
  Purge();
  ExpectEverywhere(expected);
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  EXPECT_GT(engine_->GetStats().purge_rows_removed, 0u);
}

TEST_F(ErasureTest, PurgeRemovesEveryByteOfTheSubjectFromTheFolder) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 3000);
  Reopen();
  AppendEvents(3000, 400);  // some in the log and memtable too
  const std::string erased = Hex(13);
  ASSERT_NE(DumpFolder().find(erased), std::string::npos);
  Erase({13});
  Purge();
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  const std::string dump = DumpFolder();
  EXPECT_EQ(dump.find(erased), std::string::npos);
  EXPECT_NE(dump.find(Hex(12)),
            std::string::npos);  // the others are still there
  ExpectEverywhere(Expected(0, 3400, 20, {13}));
  Reopen();
  ExpectEverywhere(Expected(0, 3400, 20, {13}));
  EXPECT_EQ(DumpFolder().find(erased), std::string::npos);
}

// Profile updates move from the log to the project's profile file at a
// flush (src/store/README.md, "Profiles"); the purge rewrites that file
// without the erased subject's updates from before the erasure.
TEST_F(ErasureTest, PurgeRewritesTheProfileFileWithoutTheErasedUpdates) {
  options_.purge_delay_ms = 3'600'000;  // only PurgeDeleted purges
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 200);
  AppendProfiles({3, 4}, kTestNowMs);
  AppendProfiles({3}, kTestNowMs + 1);
  Reopen();  // flushed: the updates are in the profile file, their log files trimmed
  const auto update_of_3 = [](int64_t time_ms) {
    return "subject=" + Hex(3) + " group_key= time_ms=" + std::to_string(time_ms);
  };
  ASSERT_NE(DumpFolder().find(update_of_3(kTestNowMs + 1)), std::string::npos);
  Erase({3});
  AppendProfiles({3}, kTestNowMs + 2);  // after the erase: kept
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{3, 4}));
  Purge();
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{3, 4}));
  const std::string dump = DumpFolder();
  EXPECT_EQ(dump.find(update_of_3(kTestNowMs)), std::string::npos);
  EXPECT_EQ(dump.find(update_of_3(kTestNowMs + 1)), std::string::npos);
  EXPECT_NE(dump.find(update_of_3(kTestNowMs + 2)), std::string::npos);
  EXPECT_EQ(dump.find("erase subject"), std::string::npos);
  Reopen();
  EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{3, 4}));
  ExpectEverywhere(Expected(0, 200, 20, {3}));
  std::vector<int64_t> times;
  ASSERT_TRUE(engine_
                  ->ScanProfiles(kProject,
                                 [&](const ProfileUpdate& update) {
                                   if (update.subject.low == 3) {
                                     times.push_back(update.time_ms);
                                   }
                                   return true;
                                 })
                  .ok());
  EXPECT_EQ(times, (std::vector<int64_t>{kTestNowMs + 2}));
}

TEST_F(ErasureTest, APurgeCrashingWhileRewritingLogFilesKeepsTheDeletion) {
  options_.flush_on_close = false;
  options_.purge_delay_ms = 3'600'000;
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 300);
  AppendProfiles({3, 4}, kTestNowMs);
  Erase({3});
  bool succeeded = false;
  for (uint64_t budget = 0; !succeeded && budget < 4'000'000; budget = budget * 2 + 331) {
    fault_file_system_->FailWritesAfterBytes(budget);
    const Status purged = engine_->PurgeDeleted();
    fault_file_system_->Reset();
    succeeded = purged.ok() && engine_->GetStats().deletions_active == 0;
    Reopen();
    EXPECT_EQ(ProfileSubjects(), (std::vector<uint64_t>{4}));
    ExpectEverywhere(Expected(0, 300, 20, {3}));
  }
  EXPECT_TRUE(succeeded);
  EXPECT_EQ(DumpFolder().find(Hex(3)), std::string::npos);
}

TEST_F(ErasureTest, APurgeFailingAtAnyWriteLosesNothingAndHidesStill) {
  options_.flush_on_close = false;  // a crash: nothing more is written at Close
  options_.purge_delay_ms = 3'600'000;
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 3000);
  options_.flush_on_close = true;
  Reopen();
  options_.flush_on_close = false;
  Reopen();
  Erase({5, 9});
  const std::set<uint64_t> expected = Expected(0, 3000, 20, {5, 9});
  bool succeeded = false;
  for (uint64_t budget = 0; !succeeded && budget < 4'000'000; budget = budget * 2 + 997) {
    fault_file_system_->FailWritesAfterBytes(budget);
    const Status purged = engine_->PurgeDeleted();
    fault_file_system_->Reset();
    succeeded = purged.ok() && engine_->GetStats().deletions_active == 0;
    ExpectEverywhere(expected);
    Reopen();  // as after a crash at that write: orphans removed, the deletion
               // in force
    ExpectEverywhere(expected);
  }
  EXPECT_TRUE(succeeded);
  Purge();
  EXPECT_EQ(DumpFolder().find(Hex(5)), std::string::npos);
  ExpectEverywhere(expected);
}

TEST_F(ErasureTest, APurgeWithFailingSyncsKeepsTheDeletion) {
  options_.purge_delay_ms = 3'600'000;
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 2000);
  Reopen();
  Erase({6});
  fault_file_system_->FailSyncs(true);
  EXPECT_FALSE(engine_->PurgeDeleted().ok());
  fault_file_system_->Reset();
  ExpectEverywhere(Expected(0, 2000, 20, {6}));
  Purge();
  ExpectEverywhere(Expected(0, 2000, 20, {6}));
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
}

TEST_F(ErasureTest, TheBackgroundPurgeWaitsForTheDelay) {
  options_.purge_delay_ms = 3'600'000;
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 2000);
  Reopen();
  Erase({4});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(engine_->GetStats().purge_rows_removed, 0u);
  clock_->Advance(3'600'000);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().purge_rows_removed == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no background purge";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(engine_->GetStats().purge_rows_removed, 100u);  // 2,000 events of 20 subjects
  ExpectEverywhere(Expected(0, 2000, 20, {4}));
}

// The purge deadline (docs/privacy.md, "Erasure and access"): a store with
// no traffic after the erasure still purges by the deadline — the rows in
// its current log file and memtable, not only those in segments — and
// Stats says how old the oldest unpurged deletion is meanwhile.
TEST_F(ErasureTest, AQuietStorePurgesEveryByteByTheDeadline) {
  constexpr int64_t kDelayMs = 3'600'000;
  options_.purge_delay_ms = kDelayMs;
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 2000);
  Reopen();
  AppendEvents(2000, 400);  // in the log and memtable only
  const std::string erased = Hex(7);
  EXPECT_EQ(engine_->GetStats().deletion_oldest_age_ms, 0u);
  Erase({7});
  clock_->Advance(kDelayMs - 1000);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past kPurgeCheckPause
  Stats stats = engine_->GetStats();
  EXPECT_EQ(stats.deletions_active, 1u);
  EXPECT_EQ(stats.deletion_oldest_age_ms, static_cast<uint64_t>(kDelayMs - 1000));
  EXPECT_EQ(stats.purge_rows_removed, 0u);
  EXPECT_NE(DumpFolder().find(erased), std::string::npos);
  clock_->Advance(1000);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().deletions_active != 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "not purged by the deadline";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stats = engine_->GetStats();
  EXPECT_EQ(stats.deletion_oldest_age_ms, 0u);
  EXPECT_EQ(stats.purge_rows_removed, 100u);  // 2,000 segment events of 20 subjects
  const std::string dump = DumpFolder();
  EXPECT_EQ(dump.find(erased), std::string::npos);
  EXPECT_NE(dump.find(Hex(6)), std::string::npos);
  ExpectEverywhere(Expected(0, 2400, 20, {7}));
  Reopen();
  ExpectEverywhere(Expected(0, 2400, 20, {7}));
}

TEST_F(ErasureTest, BadRequestsAreRefusedByName) {
  ASSERT_TRUE(Open().ok());
  const Status empty = engine_->EraseSubjects(kProject, {});
  EXPECT_EQ(empty.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.message().find("subjects"), std::string::npos);
  std::vector<Id128> too_many(kDeletionSubjectsMax + 1);
  for (size_t subject_idx = 0; subject_idx < too_many.size(); ++subject_idx) {
    too_many[subject_idx] = Id128{1, subject_idx};
  }
  const Status over = engine_->EraseSubjects(kProject, too_many);
  EXPECT_EQ(over.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(over.message().find("kDeletionSubjectsMax"), std::string::npos);
  // Duplicates count once: exactly the limit is accepted.
  too_many.back() = too_many.front();
  EXPECT_TRUE(engine_->EraseSubjects(kProject, too_many).ok());
  ASSERT_TRUE(engine_->Close().ok());
  EXPECT_EQ(engine_->EraseSubjects(kProject, {Id128{0, 1}}).code(), StatusCode::kUnavailable);
}

TEST_F(ErasureTest, AnErasedInsertIdSentAgainIsADuplicateWithinTheWindow) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 100);
  Erase({3});
  // Event 3 (subject 3) re-sent, e.g. by an SDK retry: still a duplicate,
  // so an erase is not undone by a client's queue.
  const auto result = engine_->Append(MakeBatch(kProject, {MakeEvent("view", kTestNowMs, 3, 3)}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->events_duplicate, 1u);
  EXPECT_FALSE(ScanIds().contains(3));
}

TEST(DeletionFormatTest, PayloadRoundTripsAndRejectsDamage) {
  Deletion deletion;
  deletion.project_id = 9;
  deletion.stored_at_ms = kTestNowMs;
  deletion.subjects = {Id128{0, 1}, Id128{0, 5}, Id128{2, 0}};
  const std::string bytes = EncodeDeletionPayload(deletion);
  auto decoded = DecodeDeletionPayload(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, deletion);
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_EQ(DecodeDeletionPayload(bytes.substr(0, length)).status().code(),
              StatusCode::kCorruption);
  }
  Deletion unsorted = deletion;
  std::swap(unsorted.subjects[0], unsorted.subjects[1]);
  EXPECT_EQ(DecodeDeletionPayload(EncodeDeletionPayload(unsorted)).status().code(),
            StatusCode::kCorruption);
  Deletion drop;
  drop.project_id = 2;
  drop.drop_before_ms = -5;
  auto decoded_drop = DecodeDeletionPayload(EncodeDeletionPayload(drop));
  ASSERT_TRUE(decoded_drop.ok());
  EXPECT_EQ(*decoded_drop, drop);
}

TEST(DeletionFormatTest, ManifestKeepsDeletionsAndLogEnds) {
  Manifest manifest;
  manifest.log_position = LogPosition{4, 24};
  manifest.next_segment_number = 12;
  manifest.segments.push_back(
      ManifestSegment{3, "3/2026-11-26-000011.seg", 100, 10, 5, LogPosition{4, 24}});
  Deletion deletion;
  deletion.project_id = 3;
  deletion.position = LogPosition{3, 99};
  deletion.subjects = {Id128{0, 8}};
  manifest.deletions.push_back(deletion);
  auto decoded = DecodeManifest(EncodeManifest(manifest), "MANIFEST");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->segments[0].log_end, (LogPosition{4, 24}));
  ASSERT_EQ(decoded->deletions.size(), 1u);
  EXPECT_EQ(decoded->deletions[0], deletion);
}

TEST(DeletionFormatTest, AVersionOneManifestIsStillRead) {
  // Version 1: no log ends, no deletions; each segment's log end is the
  // manifest's log position.
  std::string bytes(kManifestMagic.begin(), kManifestMagic.end());
  PutFixed32(1, &bytes);
  PutVarint64(7, &bytes);   // log position file
  PutVarint64(24, &bytes);  // log position offset
  PutVarint64(3, &bytes);   // next segment number
  PutVarint64(1, &bytes);   // one segment
  PutVarint64(2, &bytes);   // project
  const std::string path = "2/2026-11-26-000002.seg";
  PutVarint64(path.size(), &bytes);
  bytes += path;
  PutVarint64(1234, &bytes);  // file bytes
  PutVarint64(10, &bytes);    // rows
  PutVarint64(ZigZagEncode(kTestNowMs), &bytes);
  PutFixed32(Crc32(0, bytes), &bytes);
  auto decoded = DecodeManifest(bytes, "MANIFEST");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->segments.size(), 1u);
  EXPECT_EQ(decoded->segments[0].log_end, (LogPosition{7, 24}));
  EXPECT_EQ(decoded->segments[0].path, path);
  EXPECT_TRUE(decoded->deletions.empty());
}

TEST(DeletionFormatTest, RowMasksSkipBlocksNoDeletionTouches) {
  // Subjects 0..99, 100 rows each, blocks of 1,000 rows: erasing subject 57
  // reads the subject column of one block only, and a time bound reads no
  // column where whole blocks are older.
  std::vector<Event> events;
  for (uint64_t subject = 0; subject < 100; ++subject) {
    for (uint64_t row = 0; row < 100; ++row) {
      events.push_back(
          MakeEvent("view", kTestNowMs + static_cast<int64_t>(row), subject, subject * 1000 + row));
    }
  }
  SegmentWriteOptions options;
  options.project_id = 1;
  options.block_rows_max = 1000;
  auto image = EncodeSegment(events, options);
  ASSERT_TRUE(image.ok());
  auto opened = SegmentReader::Open(std::move(image).value(), "test");
  ASSERT_TRUE(opened.ok());
  std::shared_ptr<const SegmentReader> reader = std::move(opened).value();
  auto state =
      MakeDeletionState({Deletion{1, LogPosition{9, 0}, 0, {Id128{0, 57}}, std::nullopt}}, 1);
  uint64_t hidden_count = 0;
  auto hidden = HiddenRows(*reader, *state->Find(1), LogPosition{5, 0}, &hidden_count);
  ASSERT_TRUE(hidden.ok());
  EXPECT_EQ(hidden_count, 100u);
  ASSERT_EQ(hidden->size(), reader->block_count());
  for (size_t block_idx = 0; block_idx < hidden->size(); ++block_idx) {
    EXPECT_EQ((*hidden)[block_idx].size(), block_idx == 5 ? 100u : 0u);
  }
  // A deletion older than the segment's rows hides none of them.
  auto none = HiddenRows(*reader, *state->Find(1), LogPosition{10, 0}, &hidden_count);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(hidden_count, 0u);
  auto view = SegmentReader::WithHiddenRows(reader, std::move(hidden).value());
  EXPECT_EQ(view->summary().row_count, 9900u);
  EXPECT_EQ(view->block(5).row_count, 900u);
  std::vector<Event> block_events;
  ASSERT_TRUE(view->ReadEvents(5, &block_events).ok());
  EXPECT_EQ(block_events.size(), 900u);
  for (const Event& event : block_events) {
    EXPECT_NE(event.subject, (Id128{0, 57}));
  }
}

TEST(DeletionFormatTest, ATimeBoundHidesWholeBlocksWithoutListingTheirRows) {
  // Subject s has its 100 rows at kTestNowMs + s * 1000 + row, so blocks of
  // 1,000 rows cover ten subjects and increasing times.
  std::vector<Event> events;
  for (uint64_t subject = 0; subject < 30; ++subject) {
    for (uint64_t row = 0; row < 100; ++row) {
      events.push_back(MakeEvent("view", kTestNowMs + static_cast<int64_t>(subject * 1000 + row),
                                 subject, subject * 1000 + row));
    }
  }
  SegmentWriteOptions options;
  options.project_id = 1;
  options.block_rows_max = 1000;
  auto image = EncodeSegment(events, options);
  ASSERT_TRUE(image.ok());
  auto opened = SegmentReader::Open(std::move(image).value(), "test");
  ASSERT_TRUE(opened.ok());
  std::shared_ptr<const SegmentReader> reader = std::move(opened).value();
  // Before subject 15's rows: block 0 whole, half of block 1.
  auto state = MakeDeletionState({Deletion{1, LogPosition{9, 0}, 0, {}, kTestNowMs + 15'000}}, 1);
  uint64_t hidden_count = 0;
  auto hidden = HiddenRows(*reader, *state->Find(1), LogPosition{5, 0}, &hidden_count);
  ASSERT_TRUE(hidden.ok());
  EXPECT_EQ(hidden_count, 1500u);
  EXPECT_EQ((*hidden)[0], (std::vector<uint32_t>{kAllRowsHidden}));
  EXPECT_EQ((*hidden)[1].size(), 500u);
  auto view = SegmentReader::WithHiddenRows(reader, std::move(hidden).value());
  EXPECT_EQ(view->summary().row_count, 1500u);
  EXPECT_EQ(view->block(0).row_count, 0u);
  EXPECT_EQ(view->block(1).row_count, 500u);
  std::vector<Event> block_events;
  SubjectRuns runs;
  PropertyColumn plan;
  std::vector<int64_t> times;
  ASSERT_TRUE(view->ReadEvents(0, &block_events).ok());
  ASSERT_TRUE(view->ReadSubjects(0, &runs).ok());
  ASSERT_TRUE(view->ReadProperty(0, "plan", &plan).ok());
  EXPECT_TRUE(block_events.empty());
  EXPECT_TRUE(runs.subjects.empty());
  EXPECT_EQ(plan.size(), 0u);
  ASSERT_TRUE(view->ReadTimes(1, &times).ok());
  ASSERT_EQ(times.size(), 500u);
  EXPECT_EQ(times.front(), kTestNowMs + 15'000);
}

// A random run of appends, erasures, drops, flushes, restarts and purges,
// checked after every step against a row-by-row model: an event is visible
// unless a deletion logged after it names its subject or a later time.
TEST_F(ErasureTest, DifferentialAgainstARowByRowModel) {
  options_.memtable_rows_max = 300;
  ASSERT_TRUE(Open().ok());
  struct ModelEvent {
    uint64_t id;
    uint64_t subject;
    int64_t time_ms;
    uint64_t sequence;
  };
  struct ModelDeletion {
    std::set<uint64_t> subjects;
    std::optional<int64_t> before_ms;
    uint64_t sequence;
  };
  std::vector<ModelEvent> model;
  std::vector<ModelDeletion> deletions;
  uint64_t sequence = 0;
  uint64_t next_id = 1;
  std::mt19937_64 random(2026);
  const auto visible = [&] {
    std::set<uint64_t> ids;
    for (const ModelEvent& event : model) {
      bool hidden = false;
      for (const ModelDeletion& deletion : deletions) {
        if (deletion.sequence > event.sequence &&
            (deletion.subjects.contains(event.subject) ||
             (deletion.before_ms && event.time_ms < *deletion.before_ms))) {
          hidden = true;
        }
      }
      if (!hidden) {
        ids.insert(event.id);
      }
    }
    return ids;
  };
  for (int step = 0; step < 60; ++step) {
    const uint64_t action = random() % 10;
    if (action < 5) {
      std::vector<Event> batch;
      const uint64_t count = 1 + random() % 200;
      for (uint64_t event_idx = 0; event_idx < count; ++event_idx) {
        const uint64_t subject = random() % 50;
        const int64_t time_ms = kTestNowMs - static_cast<int64_t>(random() % (5 * kDayMs));
        batch.push_back(MakeEvent("e", time_ms, subject, next_id));
        model.push_back(ModelEvent{next_id, subject, time_ms, sequence++});
        ++next_id;
      }
      ASSERT_TRUE(engine_->Append(MakeBatch(kProject, batch)).ok());
    } else if (action < 7) {
      ModelDeletion deletion;
      std::vector<Id128> ids;
      const uint64_t count = 1 + random() % 4;
      for (uint64_t subject_idx = 0; subject_idx < count; ++subject_idx) {
        const uint64_t subject = random() % 50;
        deletion.subjects.insert(subject);
        ids.push_back(Id128{0, subject});
      }
      deletion.sequence = sequence++;
      ASSERT_TRUE(engine_->EraseSubjects(kProject, ids).ok());
      deletions.push_back(deletion);
    } else if (action == 7) {
      ModelDeletion deletion;
      deletion.before_ms = kTestNowMs - static_cast<int64_t>(3 * kDayMs + random() % kDayMs);
      deletion.sequence = sequence++;
      ASSERT_TRUE(engine_->DropBefore(kProject, *deletion.before_ms).ok());
      deletions.push_back(deletion);
    } else if (action == 8) {
      options_.flush_on_close = random() % 2 == 0;
      Reopen();
    } else {
      Purge();
    }
    const std::set<uint64_t> expected = visible();
    const std::set<uint64_t> scanned = ScanIds();
    std::vector<uint64_t> extra;
    std::vector<uint64_t> missing;
    std::set_difference(scanned.begin(), scanned.end(), expected.begin(), expected.end(),
                        std::back_inserter(extra));
    std::set_difference(expected.begin(), expected.end(), scanned.begin(), scanned.end(),
                        std::back_inserter(missing));
    ASSERT_TRUE(extra.empty() && missing.empty())
        << "step " << step << " action " << action << ": " << extra.size() << " extra (first "
        << (extra.empty() ? 0 : extra.front()) << "), " << missing.size() << " missing (first "
        << (missing.empty() ? 0 : missing.front()) << ")";
    ASSERT_EQ(SnapshotIds(), expected) << "step " << step << " action " << action;
  }
}

}  // namespace
}  // namespace minpanel::store
