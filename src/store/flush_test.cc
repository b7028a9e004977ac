// The memtable, the flush into segment files and the manifest: what a flush
// writes, what open recovers after a flush failed at any write or sync, and
// what readers see while flushes run.
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "core/time_units.h"
#include "store/manifest.h"
#include "store/segment.h"
#include "store/store_test_util.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 3;

class FlushTest : public StoreTest {
 protected:
  // `count` events with insert ids first..first+count-1, over two UTC days.
  void AppendEvents(uint64_t first, uint64_t count, size_t per_batch = 10) {
    for (uint64_t begin = first; begin < first + count; begin += per_batch) {
      std::vector<Event> events;
      for (uint64_t id = begin; id < std::min(first + count, begin + per_batch); ++id) {
        events.push_back(MakeEvent(id % 3 == 0 ? "a" : "b", kTestNowMs - (id % 2) * kDayMs,
                                   id % 7, id));
      }
      // With thresholds this small, appends can outrun the flush thread and
      // meet the memtable's hard limit: refused, nothing stored, so retried.
      while (true) {
        const auto result = engine_->Append(MakeBatch(kProject, events));
        if (result.ok()) {
          break;
        }
        ASSERT_EQ(result.status().code(), StatusCode::kResourceExhausted)
            << result.status().ToString();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }
  // Insert ids scanned, checking each appears once.
  std::set<uint64_t> ScannedIds() {
    std::set<uint64_t> ids;
    for (const Event& event : ScanAll(kProject)) {
      EXPECT_TRUE(ids.insert(event.insert_id.low).second) << "twice: " << event.insert_id.low;
    }
    return ids;
  }
  static std::set<uint64_t> Range(uint64_t first, uint64_t count) {
    std::set<uint64_t> ids;
    for (uint64_t id = first; id < first + count; ++id) {
      ids.insert(id);
    }
    return ids;
  }
  void WaitForTrims(uint64_t files) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (engine_->GetStats().log_files_trimmed < files) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no trim";
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  // Names of the files in wal/.
  std::vector<std::string> LogFiles(const std::string& folder) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(folder + "/wal")) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  void WaitForFlushes(uint64_t flushes) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (engine_->GetStats().flushes < flushes) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no flush";
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  // Every file under segments/, relative to it.
  std::vector<std::string> SegmentFiles() {
    std::vector<std::string> files;
    const std::filesystem::path root = folder_ + "/segments";
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
      if (entry.is_regular_file()) {
        files.push_back(std::filesystem::relative(entry.path(), root).string());
      }
    }
    std::sort(files.begin(), files.end());
    return files;
  }
  Manifest ReadManifest() {
    auto manifest = DecodeManifest(ReadBytes(folder_ + "/MANIFEST"), "MANIFEST");
    EXPECT_TRUE(manifest.ok()) << manifest.status().ToString();
    return manifest.ok() ? *manifest : Manifest{};
  }
  std::vector<std::string> ManifestFiles() {
    std::vector<std::string> files;
    for (const ManifestSegment& segment : ReadManifest().segments) {
      files.push_back(segment.path);
    }
    std::sort(files.begin(), files.end());
    return files;
  }
};

TEST_F(FlushTest, ThresholdFlushesOneSegmentPerDayAndReadsSeeEveryEventOnce) {
  options_.memtable_rows_max = 100;
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 100);
  WaitForFlushes(1);
  const Stats stats = engine_->GetStats();
  EXPECT_EQ(stats.segments, 2u);  // two UTC days
  EXPECT_EQ(stats.flush_rows, 100u);
  EXPECT_GT(stats.segment_bytes, 0u);
  EXPECT_EQ(SegmentFiles(), ManifestFiles());
  EXPECT_EQ(SegmentFiles().size(), 2u);
  // The flush rolled the log: it covers file 1 whole.
  EXPECT_EQ(ReadManifest().log_position.file_number, 2u);
  EXPECT_EQ(ReadManifest().log_position.offset, kWalFileHeaderBytes);
  std::ostringstream dump;
  const Status dumped = DumpStoreFile(*fault_file_system_, folder_ + "/MANIFEST", dump);
  ASSERT_TRUE(dumped.ok()) << dumped.ToString() << dump.str();
  EXPECT_NE(dump.str().find("2 segments"), std::string::npos) << dump.str();
  EXPECT_NE(dump.str().find(SegmentFiles()[0]), std::string::npos) << dump.str();
  AppendEvents(101, 30);
  EXPECT_EQ(engine_->GetStats().memtable_rows, 30u);
  EXPECT_EQ(ScannedIds(), Range(1, 130));

  auto snapshot = engine_->Snapshot(kProject);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status().ToString();
  std::set<uint64_t> snapshot_ids;
  uint64_t rows = 0;
  for (const auto& reader : *snapshot) {
    for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
      std::vector<Id128> ids;
      ASSERT_TRUE(reader->ReadInsertIds(block_idx, &ids).ok());
      for (const Id128& id : ids) {
        snapshot_ids.insert(id.low);
        ++rows;
      }
    }
  }
  EXPECT_EQ(rows, 130u);
  EXPECT_EQ(snapshot_ids, Range(1, 130));
  // The memtable's encoding is cached until the memtable changes.
  auto again = engine_->Snapshot(kProject);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->back().get(), snapshot->back().get());

  // Filters use the zone maps and still match exactly.
  ScanRequest request;
  request.project_id = kProject;
  request.event_names = {"a"};
  request.from_ms = kTestNowMs;
  size_t expected = 0;
  for (uint64_t id = 1; id <= 130; ++id) {
    expected += id % 3 == 0 && id % 2 == 0 ? 1 : 0;
  }
  EXPECT_EQ(ScanWith(request).size(), expected);
  request.event_names = {"missing"};
  EXPECT_TRUE(ScanWith(request).empty());
}

TEST_F(FlushTest, CloseFlushesAndOpenReplaysOnlyTheLogTail) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 40);
  options_.flush_on_close = false;  // for the engine opened next
  Reopen();
  EXPECT_EQ(engine_->GetStats().memtable_rows, 0u);
  EXPECT_EQ(engine_->GetStats().segments, 2u);
  AppendEvents(41, 20);
  // Closed as a crash would leave it: the log tail after the manifest's
  // position is replayed into the memtable.
  Reopen();
  EXPECT_EQ(engine_->GetStats().memtable_rows, 20u);
  EXPECT_EQ(ScannedIds(), Range(1, 60));
  EXPECT_EQ(engine_->GetStats().events, 60u);
}

// A flush starts a new log file first, so the records it flushes are whole
// files, deleted once the manifest is durable: the log shrinks to the
// records after the flush. A crash then replays exactly that tail.
TEST_F(FlushTest, AFlushRollsTheLogAndTrimsTheFilesItCovered) {
  options_.memtable_rows_max = 100;
  options_.flush_on_close = false;  // each Close below leaves the log as a crash would
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 100);
  WaitForTrims(1);
  EXPECT_EQ(LogFiles(folder_), std::vector<std::string>{"000002.log"});
  EXPECT_EQ(std::filesystem::file_size(LogPath(2)), kWalFileHeaderBytes);
  EXPECT_EQ(engine_->GetStats().log_bytes, kWalFileHeaderBytes);
  EXPECT_EQ(ReadManifest().log_position, (LogPosition{2, kWalFileHeaderBytes}));
  AppendEvents(101, 30);
  const uint64_t tail_bytes = std::filesystem::file_size(LogPath(2));
  EXPECT_GT(tail_bytes, kWalFileHeaderBytes);
  Reopen();
  EXPECT_EQ(engine_->GetStats().memtable_rows, 30u);
  EXPECT_EQ(engine_->GetStats().events, 130u);
  EXPECT_EQ(ScannedIds(), Range(1, 130));
  EXPECT_EQ(LogFiles(folder_), std::vector<std::string>{"000002.log"});
  // Both the flushed events and the replayed tail are still de-duplicated.
  const auto result = engine_->Append(
      MakeBatch(kProject, {MakeEvent("a", kTestNowMs, 1, 5), MakeEvent("a", kTestNowMs, 1, 120)}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->events_duplicate, 2u);
  EXPECT_EQ(ScannedIds(), Range(1, 130));
}

// The disk quota's measure (Engine::ProjectDiskBytes): a project's records
// in the log count before any flush (and across a restart, from the
// replay), another project's do not; once flushed and the log trimmed, its
// segment files do.
TEST_F(FlushTest, ProjectDiskBytesCountTheLogUntilTrimmedThenTheSegments) {
  options_.memtable_rows_max = 100;
  options_.flush_on_close = false;
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(*engine_->ProjectDiskBytes(kProject), 0u);
  uint64_t logged = 0;
  for (uint64_t id = 1; id <= 30; id += 10) {
    std::vector<Event> events;
    for (uint64_t event_id = id; event_id < id + 10; ++event_id) {
      events.push_back(MakeEvent("a", kTestNowMs, 1, event_id));
    }
    const auto result = engine_->Append(MakeBatch(kProject, events));
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    logged += result->log_bytes;
  }
  const auto other = engine_->Append(MakeBatch(kProject + 1, {MakeEvent("a", kTestNowMs, 1, 1)}));
  ASSERT_TRUE(other.ok());
  EXPECT_GT(logged, 30u * 16);  // each event's subject alone is 16 bytes
  EXPECT_EQ(*engine_->ProjectDiskBytes(kProject), logged);
  EXPECT_EQ(logged + other->log_bytes + kWalFileHeaderBytes, std::filesystem::file_size(LogPath(1)));
  Reopen();
  EXPECT_EQ(*engine_->ProjectDiskBytes(kProject), logged);
  EXPECT_EQ(*engine_->ProjectDiskBytes(kProject + 1), other->log_bytes);
  AppendEvents(100, 100);
  WaitForTrims(1);
  uint64_t segment_bytes = 0;
  for (const std::string& file : SegmentFiles()) {
    if (file.starts_with(std::to_string(kProject) + "/")) {
      segment_bytes += std::filesystem::file_size(folder_ + "/segments/" + file);
    }
  }
  EXPECT_GT(segment_bytes, 0u) << ::testing::PrintToString(SegmentFiles());
  // The log files left hold only this project's records appended since.
  uint64_t log_bytes = 0;
  for (const std::string& name : LogFiles(folder_)) {
    log_bytes += std::filesystem::file_size(folder_ + "/wal/" + name) - kWalFileHeaderBytes;
  }
  EXPECT_EQ(*engine_->ProjectDiskBytes(kProject), segment_bytes + log_bytes);
}

// The log has rolled for a flush whose segments never became durable (the
// disk filled just after the new log file's header): a crash there (the
// folder copied as it is) loses nothing, as both files are replayed; the
// running engine retries the flush once there is room and then deletes
// file 1.
TEST_F(FlushTest, ACrashBetweenTheLogRollAndTheManifestLosesNothing) {
  options_.memtable_rows_max = 100;
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 1, 1);
  const uint64_t record_bytes = engine_->GetStats().log_bytes - kWalFileHeaderBytes;
  AppendEvents(2, 98);
  // Room for the last event's record (same size) and the new file's header.
  fault_file_system_->FailWritesAfterBytes(record_bytes + kWalFileHeaderBytes);
  AppendEvents(100, 1, 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().flush_failures < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the flush did not fail";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(LogFiles(folder_), (std::vector<std::string>{"000001.log", "000002.log"}));
  EXPECT_EQ(std::filesystem::file_size(LogPath(2)), kWalFileHeaderBytes);
  EXPECT_FALSE(std::filesystem::exists(folder_ + "/MANIFEST"));

  const std::string crashed = folder_ + "_crashed";
  std::filesystem::remove_all(crashed);
  std::filesystem::copy(folder_, crashed, std::filesystem::copy_options::recursive);
  {
    Options crashed_options = options_;
    crashed_options.folder = crashed;
    crashed_options.file_system = NewPosixFileSystem();
    crashed_options.memtable_rows_max = 1000;
    crashed_options.flush_on_close = false;
    auto engine = OpenEmbeddedEngine(crashed_options);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    std::set<uint64_t> ids;
    ScanRequest request;
    request.project_id = kProject;
    ASSERT_TRUE((*engine)
                    ->Scan(request,
                           [&](const Event& event) {
                             EXPECT_TRUE(ids.insert(event.insert_id.low).second);
                             return true;
                           })
                    .ok());
    EXPECT_EQ(ids, Range(1, 100));
    EXPECT_EQ((*engine)->GetStats().memtable_rows, 100u);
    ASSERT_TRUE((*engine)->Close().ok());
  }
  std::filesystem::remove_all(crashed);

  fault_file_system_->Reset();
  WaitForTrims(1);
  EXPECT_EQ(LogFiles(folder_), std::vector<std::string>{"000002.log"});
  EXPECT_EQ(ReadManifest().log_position, (LogPosition{2, kWalFileHeaderBytes}));
  EXPECT_EQ(ScannedIds(), Range(1, 100));
  Reopen();
  EXPECT_EQ(ScannedIds(), Range(1, 100));
}

TEST_F(FlushTest, DedupHoldsAcrossAFlushAndARestart) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 20);
  Reopen();
  const auto result = engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTestNowMs, 1, 5)}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->events_duplicate, 1u);
  EXPECT_EQ(ScannedIds(), Range(1, 20));
}

// Open refills the de-duplication index from the segments' insert ids but
// reads only the blocks whose ids its bound keeps: the index is as full as
// the bound, and one batch re-sending every id finds exactly that many
// duplicates (the ids of the segments flushed last).
TEST_F(FlushTest, OpenRefillsTheDedupIndexUpToItsBoundFromTheLastSegments) {
  options_.memtable_rows_max = 40;
  options_.dedup_entries_max = 25;
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 200);
  Reopen();
  ASSERT_GE(ReadManifest().segments.size(), 4u);
  EXPECT_EQ(engine_->GetStats().dedup_entries, 25u);
  std::vector<Event> again;
  for (uint64_t id = 1; id <= 200; ++id) {
    again.push_back(MakeEvent("a", kTestNowMs, id % 7, id));
  }
  const auto result = engine_->Append(MakeBatch(kProject, again));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->events_duplicate, 25u);
  EXPECT_EQ(result->events_stored, 175u);
}

// Every byte count at which the disk fills during the flush of Close (every 7th), and a
// failing sync: after reopening every event is there once, no file outside
// the manifest remains, and a later flush succeeds.
TEST_F(FlushTest, AFailureAtAnyWriteOfAFlushLosesNothingAndLeavesNoOrphan) {
  std::vector<uint64_t> limits;
  for (uint64_t bytes = 0; bytes < 2000; bytes += 7) {
    limits.push_back(bytes);
  }
  limits.push_back(UINT64_MAX);  // the sync failure
  size_t failed_flushes = 0;
  size_t left_orphans = 0;
  for (const uint64_t limit : limits) {
    SCOPED_TRACE(limit);
    if (engine_) {
      ASSERT_TRUE(engine_->Close().ok());
      engine_.reset();
    }
    std::filesystem::remove_all(folder_);
    fault_file_system_->Reset();
    ASSERT_TRUE(Open().ok());
    AppendEvents(1, 40);
    if (limit == UINT64_MAX) {
      fault_file_system_->FailSyncs(true);
    } else {
      fault_file_system_->FailWritesAfterBytes(limit);
    }
    ASSERT_TRUE(engine_->Close().ok());  // the flush fails or not; the log is intact
    engine_.reset();
    fault_file_system_->Reset();
    if (!std::filesystem::exists(folder_ + "/MANIFEST")) {
      ++failed_flushes;
      left_orphans += SegmentFiles().empty() ? 0 : 1;
    }
    ASSERT_TRUE(Open().ok());
    EXPECT_EQ(ScannedIds(), Range(1, 40));
    if (std::filesystem::exists(folder_ + "/MANIFEST")) {
      EXPECT_EQ(SegmentFiles(), ManifestFiles());
    } else {
      EXPECT_TRUE(SegmentFiles().empty());
    }
    Reopen();
    EXPECT_EQ(engine_->GetStats().segments, 2u);
    EXPECT_EQ(ScannedIds(), Range(1, 40));
    EXPECT_EQ(SegmentFiles(), ManifestFiles());
  }
  // The limits cover failures in the first segment, the second, and the
  // manifest (segments written, manifest not: orphans to remove).
  EXPECT_GT(failed_flushes, 20u);
  EXPECT_GT(left_orphans, 3u);
}

TEST_F(FlushTest, OrphanSegmentsFromAFlushWithoutManifestAreRemoved) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 20);
  Reopen();
  const std::vector<std::string> live = SegmentFiles();
  ASSERT_EQ(live.size(), 2u);
  // A flush that died after writing its segment, before its manifest.
  const std::string orphan = folder_ + "/segments/3/2023-11-14-999999.seg";
  std::filesystem::copy_file(folder_ + "/segments/" + live[0], orphan);
  WriteBytes(orphan + ".tmp", "half a segm");
  WriteBytes(folder_ + "/MANIFEST.tmp", "torn manifest");
  notes_.clear();
  Reopen();
  EXPECT_EQ(SegmentFiles(), live);
  EXPECT_FALSE(std::filesystem::exists(folder_ + "/MANIFEST.tmp"));
  EXPECT_EQ(notes_.size(), 3u);
  EXPECT_EQ(ScannedIds(), Range(1, 20));
}

TEST_F(FlushTest, AMissingOrDamagedSegmentOrManifestIsCorruptionNamingIt) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(1, 20);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  const std::vector<std::string> live = SegmentFiles();
  const std::string segment = folder_ + "/segments/" + live[0];
  const std::string bytes = ReadBytes(segment);

  std::string flipped = bytes;
  flipped[flipped.size() - 30] ^= 1;
  WriteBytes(segment, flipped);
  Status status = Open();
  EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
  EXPECT_NE(status.message().find(live[0]), std::string::npos) << status.ToString();

  std::filesystem::remove(segment);
  status = Open();
  EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
  EXPECT_NE(status.message().find(live[0]), std::string::npos) << status.ToString();
  WriteBytes(segment, bytes);

  const std::string manifest = ReadBytes(folder_ + "/MANIFEST");
  for (size_t byte_idx = 0; byte_idx < manifest.size(); ++byte_idx) {
    std::string damaged = manifest;
    damaged[byte_idx] ^= 0x40;
    WriteBytes(folder_ + "/MANIFEST", damaged);
    status = Open();
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << byte_idx;
    EXPECT_NE(status.message().find("MANIFEST"), std::string::npos) << status.ToString();
  }
  WriteBytes(folder_ + "/MANIFEST", manifest.substr(0, manifest.size() - 1));
  EXPECT_EQ(Open().code(), StatusCode::kCorruption);
  WriteBytes(folder_ + "/MANIFEST", manifest);
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(ScannedIds(), Range(1, 20));
}

TEST_F(FlushTest, ScanAndSnapshotSeeEachEventOnceWhileFlushesRun) {
  options_.memtable_rows_max = 150;
  ASSERT_TRUE(Open().ok());
  std::atomic<uint64_t> acknowledged{0};
  std::atomic<bool> done{false};
  constexpr uint64_t kEvents = 3000;
  std::thread appender([&] {
    for (uint64_t first = 1; first <= kEvents; first += 10) {
      AppendEvents(first, 10);
      acknowledged = first + 9;
    }
    done = true;
  });
  uint64_t checks = 0;
  while (!done || checks < 3) {
    const uint64_t before = acknowledged;
    const std::set<uint64_t> ids = ScannedIds();
    EXPECT_GE(ids.size(), before);
    EXPECT_TRUE(ids.empty() || (*ids.begin() == 1 && *ids.rbegin() == ids.size()));
    auto snapshot = engine_->Snapshot(kProject);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status().ToString();
    std::set<uint64_t> snapshot_ids;
    uint64_t rows = 0;
    for (const auto& reader : *snapshot) {
      for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
        std::vector<Id128> block_ids;
        ASSERT_TRUE(reader->ReadInsertIds(block_idx, &block_ids).ok());
        for (const Id128& id : block_ids) {
          snapshot_ids.insert(id.low);
          ++rows;
        }
      }
    }
    EXPECT_EQ(rows, snapshot_ids.size());
    EXPECT_GE(rows, ids.size());
    ++checks;
  }
  appender.join();
  EXPECT_GT(engine_->GetStats().flushes, 5u);
  EXPECT_EQ(ScannedIds(), Range(1, kEvents));
  Reopen();
  EXPECT_EQ(ScannedIds(), Range(1, kEvents));
}

// Log files wholly before the manifest's position are deleted, except those
// holding profile updates; de-duplication still holds after a restart, from
// the insert ids of the segments.
TEST_F(FlushTest, TrimmedLogMovesProfileUpdatesToTheProfileFileAndDedupAcrossARestart) {
  options_.log_file_bytes_max = 4096;
  options_.memtable_rows_max = 50;
  ASSERT_TRUE(Open().ok());
  AppendBatch with_profile = MakeBatch(kProject, {MakeEvent("a", kTestNowMs, 1, 1000)});
  ProfileUpdate update;
  update.subject = Id128{1, 1};
  update.time_ms = kTestNowMs;
  update.operation = ProfileOperation::kSet;
  update.properties = {{"plan", Value::String("pro")}};
  with_profile.profile_updates.push_back(update);
  ASSERT_TRUE(engine_->Append(with_profile).ok());
  AppendEvents(1, 600);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().log_files_trimmed < 3) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no trim";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // The profile update moved to the project's profile file at the flush,
  // so the log file that held it was trimmed as the others were.
  EXPECT_FALSE(std::filesystem::exists(LogPath(1)));
  EXPECT_FALSE(std::filesystem::exists(LogPath(2)));
  EXPECT_TRUE(std::filesystem::exists(folder_ + "/profiles/" + std::to_string(kProject) + ".prof"));
  EXPECT_GT(engine_->GetStats().profile_bytes, 0u);
  std::set<uint64_t> expected = Range(1, 600);
  expected.insert(1000);
  EXPECT_EQ(ScannedIds(), expected);

  options_.flush_on_close = false;
  Reopen();  // this close still flushes; the next one leaves the log as a crash would
  Reopen();
  EXPECT_EQ(ScannedIds(), expected);
  EXPECT_EQ(engine_->GetStats().events, 601u);
  std::vector<ProfileUpdate> updates;
  ASSERT_TRUE(engine_
                  ->ScanProfiles(kProject,
                                 [&](const ProfileUpdate& scanned) {
                                   updates.push_back(scanned);
                                   return true;
                                 })
                  .ok());
  EXPECT_EQ(updates, std::vector<ProfileUpdate>{update});
  std::vector<Event> again;
  for (uint64_t id = 1; id <= 600; ++id) {
    again.push_back(MakeEvent("b", kTestNowMs, 1, id));
  }
  const auto result = engine_->Append(MakeBatch(kProject, std::move(again)));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->events_duplicate, 600u);
  EXPECT_EQ(ScannedIds(), expected);
}

// Small segments of one (project, day) are merged in the background; a
// snapshot taken before keeps reading the old ones; nothing is lost or
// doubled, before or after a restart.
TEST_F(FlushTest, CompactionMergesSmallSegmentsOfADayAndOldReadersStayValid) {
  options_.memtable_rows_max = 20;
  ASSERT_TRUE(Open().ok());
  std::vector<Event> day;
  for (uint64_t id = 1; id <= 20; ++id) {
    day.push_back(MakeEvent("a", kTestNowMs + static_cast<int64_t>(id), id % 5, id));
  }
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, day)).ok());
  WaitForFlushes(1);
  auto old_snapshot = engine_->Snapshot(kProject);
  ASSERT_TRUE(old_snapshot.ok());
  for (uint64_t batch = 1; batch < 8; ++batch) {
    for (Event& event : day) {
      event.insert_id.low += 20;
    }
    ASSERT_TRUE(engine_->Append(MakeBatch(kProject, day)).ok());
    WaitForFlushes(batch + 1);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().compactions < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no compaction";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_LT(engine_->GetStats().segments, 8u);
  EXPECT_EQ(ScannedIds(), Range(1, 160));
  EXPECT_EQ(SegmentFiles(), ManifestFiles());
  std::vector<Event> events;
  ASSERT_TRUE((*old_snapshot)[0]->ReadEvents(0, &events).ok());
  EXPECT_EQ(events.size(), 20u);
  Reopen();
  EXPECT_EQ(ScannedIds(), Range(1, 160));
  EXPECT_EQ(SegmentFiles(), ManifestFiles());
  const auto result = engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTestNowMs, 1, 7)}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->events_duplicate, 1u);
}

// Each event keeps the policy version it was stored with through the log,
// a flush, compaction, and the purges that rewrite segments: an erasure's,
// a property purge's and a retention drop's.
TEST_F(FlushTest, PolicyVersionsSurviveFlushCompactionAndEveryPurgeRewrite) {
  options_.memtable_rows_max = 20;
  ASSERT_TRUE(Open().ok());
  std::map<uint64_t, uint32_t> expected;  // insert id -> policy version
  for (uint64_t batch = 0; batch < 8; ++batch) {
    std::vector<Event> day;
    for (uint64_t row = 0; row < 20; ++row) {
      const uint64_t id = batch * 20 + row + 1;
      Event event = MakeEvent(id % 4 == 0 ? "old" : "a", kTestNowMs + static_cast<int64_t>(id),
                              id % 5, id);
      event.policy_version = id % 7 == 0 ? kPolicyVersionUnknown : static_cast<uint32_t>(batch / 3);
      expected[id] = event.policy_version;
      day.push_back(event);
    }
    ASSERT_TRUE(engine_->Append(MakeBatch(kProject, day)).ok());
    WaitForFlushes(batch + 1);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().compactions < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no compaction";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto check = [&](std::string_view stage) {
    const std::vector<Event> events = ScanAll(kProject);
    EXPECT_EQ(events.size(), expected.size()) << stage;
    for (const Event& event : events) {
      const auto found = expected.find(event.insert_id.low);
      ASSERT_NE(found, expected.end()) << stage << ": " << event.insert_id.low;
      EXPECT_EQ(event.policy_version, found->second) << stage << ": " << event.insert_id.low;
    }
  };
  check("compacted");
  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 2}}).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  std::erase_if(expected, [](const auto& entry) { return entry.first % 5 == 2; });
  check("erased and purged");
  ASSERT_TRUE(engine_->PurgeProperty(kProject, "seats", "").ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  check("property purged");
  ASSERT_TRUE(engine_->DropEventsBefore(kProject, "old", kTestNowMs + 100).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  std::erase_if(expected, [](const auto& entry) { return entry.first % 4 == 0 && entry.first < 100; });
  check("dropped and purged");
  Reopen();
  check("reopened");
}

// With a fold (Options::subject_fold), compaction writes the rows of 2 and 3
// under their person 1 while another thread appends; every event is read
// once under its own subject before and after a restart, and erasing 2
// finds its rows inside 1's (docs/identity.md, "Folded segments").
TEST_F(FlushTest, CompactionFoldsRowsIntoPersonsWhileAppendsRunAndErasureFindsThem) {
  options_.memtable_rows_max = 20;
  options_.subject_fold = [](uint32_t project_id,
                             const std::vector<std::shared_ptr<const SegmentReader>>& segments) {
    EXPECT_EQ(project_id, kProject);
    EXPECT_FALSE(segments.empty());
    auto fold = std::make_shared<SubjectFold>();
    fold->generation = 77;
    fold->persons = {{Id128{0, 2}, Id128{0, 1}}, {Id128{0, 3}, Id128{0, 1}}};
    return std::shared_ptr<const SubjectFold>(fold);
  };
  ASSERT_TRUE(Open().ok());
  // Ids 1..160 in batches of 20 of one day (subjects 0..4), and 1001..1300
  // from another thread meanwhile (subjects 0..6, over two days).
  std::thread other([this] { AppendEvents(1001, 300, 5); });
  std::vector<Event> day;
  for (uint64_t id = 1; id <= 20; ++id) {
    day.push_back(MakeEvent("a", kTestNowMs + static_cast<int64_t>(id), id % 5, id));
  }
  for (uint64_t batch = 0; batch < 8; ++batch) {
    if (batch > 0) {
      for (Event& event : day) {
        event.insert_id.low += 20;
      }
    }
    while (true) {
      const auto result = engine_->Append(MakeBatch(kProject, day));
      if (result.ok()) {
        break;
      }
      ASSERT_EQ(result.status().code(), StatusCode::kResourceExhausted);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  other.join();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (engine_->GetStats().compactions < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no compaction";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::set<uint64_t> expected = Range(1, 160);
  const std::set<uint64_t> others = Range(1001, 300);
  expected.insert(others.begin(), others.end());
  const auto folded_segments = [this] {
    size_t folded = 0;
    auto snapshot = engine_->Snapshot(kProject);
    EXPECT_TRUE(snapshot.ok());
    for (const auto& segment : *snapshot) {
      if (segment->summary().stored_subject_runs > 0) {
        EXPECT_EQ(segment->summary().fold_generation, 77u);
        ++folded;
      }
    }
    return folded;
  };
  // Each event under the subject it was appended with.
  const auto check_subjects = [this] {
    for (const Event& event : ScanAll(kProject)) {
      const uint64_t id = event.insert_id.low;
      EXPECT_EQ(event.subject, (Id128{0, id > 1000 ? id % 7 : id % 5})) << id;
    }
  };
  EXPECT_GT(folded_segments(), 0u);
  EXPECT_EQ(ScannedIds(), expected);
  check_subjects();
  Reopen();
  EXPECT_GT(folded_segments(), 0u);
  EXPECT_EQ(ScannedIds(), expected);
  check_subjects();

  // Erasing 2, kept under 1 in the folded segment, takes only 2's rows, at
  // once (a view) and after the purge rewrites the segment.
  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 2}}).ok());
  std::set<uint64_t> left;
  for (const uint64_t id : expected) {
    if ((id > 1000 ? id % 7 : id % 5) != 2) {
      left.insert(id);
    }
  }
  EXPECT_EQ(ScannedIds(), left);
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  EXPECT_EQ(ScannedIds(), left);
  check_subjects();
  Reopen();
  EXPECT_EQ(ScannedIds(), left);
  EXPECT_GT(folded_segments(), 0u);
}

}  // namespace
}  // namespace minpanel::store

namespace minpanel::store {
namespace {

// `minpanel debug rewrite-segments` (Options::rewrite_older_segments): a
// segment of an older format (the checked-in version 2 file, listed in the
// manifest beside the store's own) is rewritten into the newest format at
// open, every row kept; newer segments are left alone, and a second open
// has nothing to do.
TEST_F(FlushTest, RewriteOlderSegmentsRewritesOnlyThoseAndKeepsEveryRow) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 200);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  const std::string golden = std::string(MINPANEL_STORE_TESTDATA) + "/segment_v2.seg";
  const std::string old_path = "0/2023-11-15-900000.seg";
  std::filesystem::create_directories(folder_ + "/segments/0");
  std::filesystem::copy_file(golden, folder_ + "/segments/" + old_path);
  auto manifest_bytes = fault_file_system_->ReadFile(folder_ + "/MANIFEST");
  ASSERT_TRUE(manifest_bytes.ok());
  auto manifest = DecodeManifest(*manifest_bytes, "MANIFEST");
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  const std::vector<std::string> own_paths = [&] {
    std::vector<std::string> paths;
    for (const ManifestSegment& entry : manifest->segments) {
      paths.push_back(entry.path);
    }
    return paths;
  }();
  ManifestSegment old_entry;
  old_entry.project_id = 0;
  old_entry.path = old_path;
  old_entry.file_bytes = std::filesystem::file_size(golden);
  old_entry.row_count = 60;
  old_entry.log_end = manifest->log_position;
  manifest->segments.push_back(old_entry);
  ASSERT_TRUE(fault_file_system_
                  ->WriteFileAtomically(folder_ + "/MANIFEST", EncodeManifest(*manifest), 0600)
                  .ok());
  ASSERT_TRUE(Open().ok());
  const std::vector<Event> before = ScanAll(0);
  ASSERT_EQ(before.size(), 60u);
  const std::set<uint64_t> own_before = ScannedIds();
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();

  options_.rewrite_older_segments = true;
  ASSERT_TRUE(Open().ok());
  EXPECT_FALSE(std::filesystem::exists(folder_ + "/segments/" + old_path));
  const std::vector<Event> after = ScanAll(0);
  ASSERT_EQ(after.size(), before.size());
  for (size_t row = 0; row < after.size(); ++row) {
    EXPECT_EQ(after[row].insert_id, before[row].insert_id) << row;
    EXPECT_EQ(after[row].time_ms, before[row].time_ms) << row;
    EXPECT_EQ(after[row].properties, before[row].properties) << row;
  }
  EXPECT_EQ(ScannedIds(), own_before);
  bool noted = false;
  for (const std::string& note : notes_) {
    noted = noted || note.find("rewrote 1 segments") != std::string::npos;
  }
  EXPECT_TRUE(noted);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  // Every listed file is now of the newest format; the store's own were
  // already and kept their names.
  manifest_bytes = fault_file_system_->ReadFile(folder_ + "/MANIFEST");
  ASSERT_TRUE(manifest_bytes.ok());
  manifest = DecodeManifest(*manifest_bytes, "MANIFEST");
  ASSERT_TRUE(manifest.ok());
  for (const std::string& path : own_paths) {
    EXPECT_TRUE(std::filesystem::exists(folder_ + "/segments/" + path)) << path;
  }
  for (const ManifestSegment& entry : manifest->segments) {
    auto reader = OpenSegment(*fault_file_system_, folder_ + "/segments/" + entry.path);
    ASSERT_TRUE(reader.ok()) << entry.path;
    EXPECT_EQ((*reader)->summary().format_version, kSegmentFormatVersion) << entry.path;
  }
  notes_.clear();
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(ScanAll(0).size(), 60u);
  for (const std::string& note : notes_) {
    EXPECT_EQ(note.find("rewrote"), std::string::npos) << note;
  }
}

// `minpanel debug rewrite-segments --all` (Options::rewrite_every_segment):
// every segment, of the newest format too, is rewritten once (by the
// writer's current rules) under a new name, every row kept; the outputs are
// not rewritten again in the same open. Without it nothing of the newest
// format is touched.
TEST_F(FlushTest, RewriteEverySegmentRewritesEachOnceAndKeepsEveryRow) {
  ASSERT_TRUE(Open().ok());
  AppendEvents(0, 200);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  const auto listed_paths = [&] {
    std::set<std::string> paths;
    auto bytes = fault_file_system_->ReadFile(folder_ + "/MANIFEST");
    EXPECT_TRUE(bytes.ok());
    if (!bytes.ok()) {
      return paths;
    }
    auto manifest = DecodeManifest(*bytes, "MANIFEST");
    EXPECT_TRUE(manifest.ok());
    if (manifest.ok()) {
      for (const ManifestSegment& entry : manifest->segments) {
        paths.insert(entry.path);
      }
    }
    return paths;
  };
  const std::set<std::string> before_paths = listed_paths();
  ASSERT_FALSE(before_paths.empty());
  ASSERT_TRUE(Open().ok());
  const std::vector<Event> before = ScanAll(kProject);
  ASSERT_EQ(before.size(), 200u);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();

  options_.rewrite_older_segments = true;
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  EXPECT_EQ(listed_paths(), before_paths);

  options_.rewrite_every_segment = true;
  notes_.clear();
  ASSERT_TRUE(Open().ok());
  const std::vector<Event> after = ScanAll(kProject);
  ASSERT_EQ(after.size(), before.size());
  for (size_t row = 0; row < after.size(); ++row) {
    EXPECT_EQ(after[row].insert_id, before[row].insert_id) << row;
    EXPECT_EQ(after[row].time_ms, before[row].time_ms) << row;
    EXPECT_EQ(after[row].properties, before[row].properties) << row;
  }
  const std::string expected_note =
      "rewrote " + std::to_string(before_paths.size()) + " segments into format";
  bool noted = false;
  for (const std::string& note : notes_) {
    noted = noted || note.find(expected_note) != std::string::npos;
  }
  EXPECT_TRUE(noted) << expected_note;
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  const std::set<std::string> after_paths = listed_paths();
  EXPECT_EQ(after_paths.size(), before_paths.size());
  for (const std::string& path : before_paths) {
    EXPECT_EQ(after_paths.count(path), 0u) << path << " was not rewritten";
    EXPECT_FALSE(std::filesystem::exists(folder_ + "/segments/" + path)) << path;
  }
  for (const std::string& path : after_paths) {
    EXPECT_TRUE(std::filesystem::exists(folder_ + "/segments/" + path)) << path;
  }
}

}  // namespace
}  // namespace minpanel::store
