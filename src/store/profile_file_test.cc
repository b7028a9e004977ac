// The profile files (src/store/README.md, "Profiles"; docs/formats/profiles.md):
// profile updates move out of the log at each flush, so the log is trimmed
// as for events; a folder whose log still holds them is migrated; a group
// cut short is cut on open and its updates come back from the log; a flush
// failing at any write loses nothing and stores nothing twice.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/manifest.h"
#include "store/profile_file.h"
#include "store/store_test_util.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 9;

ProfileUpdate Update(uint64_t subject, int64_t sequence) {
  ProfileUpdate update;
  update.subject = Id128{0, subject};
  update.time_ms = kTestNowMs + sequence;
  update.key_version = 1;
  update.operation = sequence % 3 == 0 ? ProfileOperation::kSetOnce : ProfileOperation::kSet;
  update.properties = {{"plan", Value::String("plan-" + std::to_string(sequence))},
                       {"seats", Value::Int(sequence)}};
  return update;
}

class ProfileFileTest : public StoreTest {
 protected:
  // Appends updates [first, first + count) of 50 subjects, `per_batch` a batch.
  void AppendUpdates(int64_t first, int64_t count, int64_t per_batch = 25) {
    for (int64_t begin = first; begin < first + count; begin += per_batch) {
      AppendBatch batch;
      batch.project_id = kProject;
      for (int64_t sequence = begin; sequence < std::min(first + count, begin + per_batch);
           ++sequence) {
        batch.profile_updates.push_back(Update(static_cast<uint64_t>(sequence % 50), sequence));
      }
      // At the memtable's hard limit the engine refuses a batch
      // (ResourceExhausted) until its flushes catch up, as the server answers
      // 429: on a loaded machine these tests' small memtables get there, so
      // the batch is offered again, as a client would, for up to a minute.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      auto result = engine_->Append(batch);
      while (!result.ok() && result.status().code() == StatusCode::kResourceExhausted &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        result = engine_->Append(batch);
      }
      ASSERT_TRUE(result.ok()) << result.status().ToString();
    }
  }
  static std::vector<ProfileUpdate> Expected(int64_t first, int64_t count) {
    std::vector<ProfileUpdate> updates;
    for (int64_t sequence = first; sequence < first + count; ++sequence) {
      updates.push_back(Update(static_cast<uint64_t>(sequence % 50), sequence));
    }
    return updates;
  }
  // The updates' sequence numbers (time_ms - kTestNowMs), for readable
  // failures; Same() compares the updates whole.
  static std::vector<int64_t> Sequences(const std::vector<ProfileUpdate>& updates) {
    std::vector<int64_t> sequences;
    for (const ProfileUpdate& update : updates) {
      sequences.push_back(update.time_ms - kTestNowMs);
    }
    return sequences;
  }
  void ExpectScanned(int64_t first, int64_t count) {
    const std::vector<ProfileUpdate> scanned = Scanned();
    const std::vector<ProfileUpdate> expected = Expected(first, count);
    EXPECT_EQ(scanned.size(), expected.size());
    EXPECT_EQ(Sequences(scanned), Sequences(expected));
    EXPECT_TRUE(scanned == expected);
  }
  std::vector<ProfileUpdate> Scanned() {
    std::vector<ProfileUpdate> updates;
    const Status status = engine_->ScanProfiles(kProject, [&](const ProfileUpdate& update) {
      updates.push_back(update);
      return true;
    });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return updates;
  }
  std::string ProfilePath() const {
    return folder_ + "/profiles/" + std::to_string(kProject) + ".prof";
  }
  size_t LogFiles() const {
    size_t count = 0;
    for (const auto& entry : std::filesystem::directory_iterator(folder_ + "/wal")) {
      count += entry.path().extension() == ".log" ? 1 : 0;
    }
    return count;
  }
};

// Profile updates alone fill the memtable and trigger flushes; each flush
// appends them to the profile file and the log files are trimmed. Every
// update comes back once, in store order, through flushes, a restart, and
// a crash (no flush on close) that leaves the newest in the log.
TEST_F(ProfileFileTest, ProfileUpdatesMoveOutOfTheLogAtEachFlush) {
  options_.memtable_rows_max = 300;
  ASSERT_TRUE(Open().ok());
  AppendUpdates(0, 3000);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  // Ten times the threshold: flushes start (how many depends on how far
  // they fall behind the appends), and each trims the log file it rolled from.
  while (engine_->GetStats().flushes < 1 || engine_->GetStats().log_files_trimmed < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "profile updates made no flush";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ExpectScanned(0, 3000);
  Stats stats = engine_->GetStats();
  EXPECT_GT(stats.log_files_trimmed, 0u);
  EXPECT_GT(stats.profile_bytes, 0u);
  EXPECT_EQ(stats.profile_updates, 3000u);
  Reopen();  // flushes the rest: the log is one empty file
  EXPECT_EQ(LogFiles(), 1u);
  EXPECT_EQ(engine_->GetStats().log_bytes, kWalFileHeaderBytes);
  ExpectScanned(0, 3000);
  EXPECT_EQ(engine_->GetStats().profile_updates, 3000u);
  options_.flush_on_close = false;
  AppendUpdates(3000, 100);  // only in the log
  Reopen();
  ExpectScanned(0, 3100);
  EXPECT_EQ(engine_->GetStats().profile_updates, 3100u);
  ASSERT_TRUE(engine_->PurgeDeleted().ok());  // a flush: now in the file too
  Reopen();
  ExpectScanned(0, 3100);
}

// A folder written before profile files (manifest version 2, profile
// updates in a log file before its log position) opens with every update,
// moves them into the profile file at once and then trims that log file.
TEST_F(ProfileFileTest, AnOlderFolderWithProfileUpdatesInTheLogIsMigrated) {
  std::filesystem::create_directories(folder_ + "/wal");
  std::string log = EncodeWalFileHeader(1);
  const std::vector<ProfileUpdate> updates = Expected(0, 40);
  for (size_t batch_idx = 0; batch_idx < 4; ++batch_idx) {
    std::string payload;
    EncodePayloadHeader(WalPayloadHeader{kTestNowMs, kProject, 0, 10}, &payload);
    for (size_t update_idx = batch_idx * 10; update_idx < batch_idx * 10 + 10; ++update_idx) {
      EncodeProfileUpdate(updates[update_idx], &payload);
    }
    std::string record(kWalRecordHeaderBytes, '\0');
    record += payload;
    const uint32_t length = static_cast<uint32_t>(payload.size());
    for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
      record[4 + byte_idx] = static_cast<char>(length >> (8 * byte_idx));
    }
    record[8] = static_cast<char>(WalRecordType::kBatch);
    const uint32_t crc = Crc32(0, std::string_view(record).substr(4));
    for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
      record[byte_idx] = static_cast<char>(crc >> (8 * byte_idx));
    }
    log += record;
  }
  WriteBytes(LogPath(1), log);
  WriteBytes(LogPath(2), EncodeWalFileHeader(2));
  Manifest manifest;
  manifest.log_position = LogPosition{2, kWalFileHeaderBytes};
  WriteBytes(folder_ + "/MANIFEST", EncodeManifest(manifest));

  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(Sequences(Scanned()), Sequences(updates));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::filesystem::exists(LogPath(1))) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the old log file was not trimmed";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(std::filesystem::exists(ProfilePath()));
  EXPECT_EQ(Sequences(Scanned()), Sequences(updates));
  options_.flush_on_close = false;
  Reopen();
  EXPECT_EQ(Sequences(Scanned()), Sequences(updates));
  EXPECT_EQ(engine_->GetStats().profile_updates, 40u);
}

// A group cut short (a crash during the flush's append) is cut on open,
// with a note, and its updates, still in the log, come back from there.
TEST_F(ProfileFileTest, AGroupCutShortIsCutOnOpenAndComesBackFromTheLog) {
  ASSERT_TRUE(Open().ok());
  AppendUpdates(0, 100);
  Reopen();  // one group in the file, the log trimmed
  const std::string whole = ReadBytes(ProfilePath());
  options_.flush_on_close = false;
  Reopen();  // an engine that leaves the log as a crash would
  AppendUpdates(100, 60);
  ASSERT_TRUE(engine_->Close().ok());
  engine_.reset();
  // What a flush appending the next group and crashing mid-write leaves:
  // every prefix of that group (here that of a group of the same updates).
  std::vector<StoredProfileUpdate> next;
  for (const ProfileUpdate& update : Expected(100, 60)) {
    next.push_back(StoredProfileUpdate{kTestNowMs, update});
  }
  std::string group;
  EncodeProfileGroup(kProject, next, LogPosition{99, 24}, &group);
  for (size_t cut = 1; cut < group.size(); cut += group.size() / 7) {
    SCOPED_TRACE(cut);
    WriteBytes(ProfilePath(), whole + group.substr(0, cut));
    notes_.clear();
    ASSERT_TRUE(Open().ok());
    ExpectScanned(0, 160);
    ASSERT_FALSE(notes_.empty());
    EXPECT_NE(notes_.back().find(".prof: cut"), std::string::npos) << notes_.back();
    EXPECT_EQ(ReadBytes(ProfilePath()), whole);
    ASSERT_TRUE(engine_->Close().ok());
    engine_.reset();
  }
  options_.flush_on_close = true;
  ASSERT_TRUE(Open().ok());
  ExpectScanned(0, 160);
}

// The disk filling at every few bytes of a flush (the profile group, the
// segments, the manifest) or a failing sync, then a reopen: every profile
// update once, in order, and the next flush completes.
// Stats::profile_updates is what a reader (the query module's profile-table
// cache) compares to know whether the updates changed since it last read
// them: it may count an update only once a scan started after it shows that
// update. Updates are appended one per batch from one thread, through
// several flushes, while another counts, then scans, as fast as it can; a
// scan showing fewer updates than were counted before it started would let
// the cache keep a table without them under the count that claims them.
TEST_F(ProfileFileTest, AnUpdateCountedInTheStatsIsInEveryScanStartedAfter) {
  options_.memtable_rows_max = 200;
  ASSERT_TRUE(Open().ok());
  constexpr int64_t kUpdates = 3000;
  std::atomic<bool> appending = true;
  std::thread appender([&] {
    AppendUpdates(0, kUpdates, 1);
    appending = false;
  });
  uint64_t scans = 0;
  uint64_t short_scans = 0;
  std::string first_short;
  while (appending) {
    const uint64_t counted = engine_->GetStats().profile_updates;
    const size_t scanned = Scanned().size();
    ++scans;
    if (scanned < counted) {
      if (short_scans++ == 0) {
        first_short = std::to_string(counted) + " counted, " + std::to_string(scanned) + " scanned";
      }
    }
  }
  appender.join();
  EXPECT_EQ(short_scans, 0u) << "of " << scans << " scans; the first: " << first_short;
  EXPECT_GT(engine_->GetStats().flushes, 1u);
  ExpectScanned(0, kUpdates);
}

TEST_F(ProfileFileTest, AFlushFailingAtAnyWriteLosesNoProfileUpdateAndStoresNoneTwice) {
  std::vector<uint64_t> limits;
  for (uint64_t bytes = 0; bytes < 3000; bytes += 37) {
    limits.push_back(bytes);
  }
  limits.push_back(UINT64_MAX);  // the sync failure
  for (const uint64_t limit : limits) {
    SCOPED_TRACE(limit);
    if (engine_) {
      ASSERT_TRUE(engine_->Close().ok());
      engine_.reset();
    }
    std::filesystem::remove_all(folder_);
    fault_file_system_->Reset();
    ASSERT_TRUE(Open().ok());
    AppendUpdates(0, 30);
    Reopen();  // a first group in the file
    AppendUpdates(30, 30);
    std::vector<Event> events = {MakeEvent("view", kTestNowMs, 1, 1)};
    ASSERT_TRUE(engine_->Append(MakeBatch(kProject, events)).ok());
    if (limit == UINT64_MAX) {
      fault_file_system_->FailSyncs(true);
    } else {
      fault_file_system_->FailWritesAfterBytes(limit);
    }
    (void)engine_->PurgeDeleted();  // a flush, failing or not
    ExpectScanned(0, 60);
    ASSERT_TRUE(engine_->Close().ok());
    engine_.reset();
    fault_file_system_->Reset();
    ASSERT_TRUE(Open().ok());
    ExpectScanned(0, 60);
    Reopen();
    ExpectScanned(0, 60);
    EXPECT_EQ(ScanAll(kProject).size(), 1u);
  }
}

// Each profile update keeps the policy version it was stored with (docs/formats/
// profiles.md, format 2): through the log's replay, a flush into the profile
// file, a restart, and every rewrite of the file — an erasure's, a property
// purge's and an expiry's purge.
TEST_F(ProfileFileTest, PolicyVersionsSurviveTheLogAFlushAndEveryRewrite) {
  options_.flush_on_close = false;  // first only in the log
  options_.purge_delay_ms = 3'600'000;  // only PurgeDeleted purges
  ASSERT_TRUE(Open().ok());
  std::map<int64_t, uint32_t> expected;  // time_ms -> policy version
  const auto append = [&](uint64_t subject, int64_t first, int64_t count) {
    AppendBatch batch;
    batch.project_id = kProject;
    for (int64_t sequence = first; sequence < first + count; ++sequence) {
      ProfileUpdate update = Update(subject, sequence);
      update.policy_version =
          sequence % 5 == 0 ? kPolicyVersionUnknown : static_cast<uint32_t>(sequence / 4);
      expected[update.time_ms] = update.policy_version;
      batch.profile_updates.push_back(update);
    }
    ASSERT_TRUE(engine_->Append(batch).ok());
  };
  append(6, 0, 4);  // subject 6 alone, a day before the rest: it expires below
  clock_->Advance(86'400'000);
  for (uint64_t subject = 1; subject <= 5; ++subject) {
    append(subject, static_cast<int64_t>(subject) * 10, 6);
  }
  const auto check = [&](std::string_view stage, std::vector<uint64_t> gone) {
    size_t count = 0;
    for (const ProfileUpdate& update : Scanned()) {
      ++count;
      const auto found = expected.find(update.time_ms);
      ASSERT_NE(found, expected.end()) << stage << ": " << update.time_ms;
      EXPECT_EQ(update.policy_version, found->second) << stage << ": " << update.time_ms;
      EXPECT_EQ(std::count(gone.begin(), gone.end(), update.subject.low), 0) << stage;
    }
    size_t kept = 0;
    for (const auto& [time_ms, version] : expected) {
      const int64_t sequence = time_ms - kTestNowMs;
      const uint64_t subject = sequence < 10 ? 6 : static_cast<uint64_t>(sequence / 10);
      kept += std::count(gone.begin(), gone.end(), subject) == 0 ? 1 : 0;
    }
    EXPECT_EQ(count, kept) << stage;
  };
  check("in the memtable", {});
  Reopen();
  check("replayed from the log", {});
  options_.flush_on_close = true;
  Reopen();  // flushed into the profile file
  Reopen();
  check("from the profile file", {});
  std::ostringstream dump;
  ASSERT_TRUE(DumpProfileFile(*fault_file_system_, ProfilePath(), dump).ok());
  EXPECT_NE(dump.str().find(" profile file format 2,"), std::string::npos) << dump.str();
  EXPECT_NE(dump.str().find("time_ms=" + std::to_string(kTestNowMs + 11) +
                            " key_version=1 policy_version=2 {"),
            std::string::npos)
      << dump.str();
  EXPECT_NE(dump.str().find("time_ms=" + std::to_string(kTestNowMs + 10) +
                            " key_version=1 policy_version=unknown {"),
            std::string::npos)
      << dump.str();

  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 2}}).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  check("after an erasure's rewrite", {2});
  ASSERT_TRUE(engine_->PurgeProperty(kProject, "seats", "").ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  check("after a property purge's rewrite", {2});
  for (const ProfileUpdate& update : Scanned()) {
    EXPECT_EQ(update.properties.size(), 1u);  // the key went, the version stayed
  }
  const auto expired = engine_->ExpireProfiles(kProject, kTestNowMs + 1);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 1u);
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  check("after an expiry's rewrite", {2, 6});
  Reopen();
  check("after a restart", {2, 6});
}

// A folder written by the binary of profile file format 1 and log format 2
// (testdata/profiles_v1: two groups of project 9 in profiles/9.prof, one
// update only in the log): its updates read with the policy version
// unknown; open rewrites the file at the newest format, keeping each group
// and its log end, before a flush appends to it; new updates keep theirs.
TEST_F(ProfileFileTest, AVersionOneFileReadsWithThePolicyVersionUnknownAndIsRewrittenAtTheNewest) {
  std::filesystem::copy(std::string(MINPANEL_STORE_TESTDATA) + "/profiles_v1", folder_,
                        std::filesystem::copy_options::recursive);
  EXPECT_EQ(ReadBytes(ProfilePath()).substr(8, 4), std::string("\x01\x00\x00\x00", 4));
  const std::string old_log = ReadBytes(LogPath(3));
  EXPECT_EQ(old_log.substr(8, 4), std::string("\x02\x00\x00\x00", 4));
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(ReadBytes(ProfilePath()).substr(8, 4), std::string("\x02\x00\x00\x00", 4));
  EXPECT_NE(std::find(notes_.begin(), notes_.end(),
                      ProfilePath() + ": rewritten at profile file format 2 (was 1)"),
            notes_.end());
  const auto expect_old = [&](std::string_view stage, size_t count) {
    const std::vector<ProfileUpdate> scanned = Scanned();
    ASSERT_EQ(scanned.size(), count) << stage;
    constexpr std::array<uint64_t, 7> kSubjects = {0, 1, 2, 3, 7, 1, 2};
    for (size_t update_idx = 0; update_idx < 7; ++update_idx) {
      const ProfileUpdate& update = scanned[update_idx];
      EXPECT_EQ(update.subject.low, kSubjects[update_idx]) << stage;
      EXPECT_EQ(update.time_ms, kTestNowMs + static_cast<int64_t>(update_idx)) << stage;
      EXPECT_EQ(update.policy_version, kPolicyVersionUnknown) << stage;
      EXPECT_EQ(update.key_version, 1u) << stage;
      if (update_idx == 4) {
        EXPECT_EQ(update.group_key, "company") << stage;
        EXPECT_EQ(update.properties, (Properties{{"name", Value::String("Example Co")}})) << stage;
      } else {
        EXPECT_EQ(update, Update(update.subject.low, static_cast<int64_t>(update_idx))) << stage;
      }
    }
  };
  expect_old("opened", 7);
  std::ostringstream dump;
  ASSERT_TRUE(DumpProfileFile(*fault_file_system_, ProfilePath(), dump).ok());
  EXPECT_NE(dump.str().find("group up to log file 2 offset 24\n"), std::string::npos) << dump.str();
  EXPECT_NE(dump.str().find("group up to log file 3 offset 24\n"), std::string::npos) << dump.str();
  EXPECT_NE(dump.str().find("2 groups, 6 profile updates"), std::string::npos) << dump.str();

  AppendBatch batch;
  batch.project_id = kProject;
  ProfileUpdate fresh = Update(3, 7);
  fresh.policy_version = 4;
  batch.profile_updates.push_back(fresh);
  ASSERT_TRUE(engine_->Append(batch).ok());
  EXPECT_EQ(ReadBytes(LogPath(3)), old_log);  // a format-2 log file is not appended to
  Reopen();  // flushed: appended to the rewritten file
  Reopen();
  expect_old("restarted", 8);
  EXPECT_EQ(Scanned().back(), fresh);
  EXPECT_TRUE(std::none_of(notes_.begin(), notes_.end(), [](const std::string& note) {
    return note.find("rewritten") != std::string::npos && note.find("(was 2)") != std::string::npos;
  }));

  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 0}}).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  Reopen();
  const std::vector<ProfileUpdate> after = Scanned();
  ASSERT_EQ(after.size(), 7u);
  for (const ProfileUpdate& update : after) {
    EXPECT_NE(update.subject.low, 0u);
    EXPECT_EQ(update.policy_version, update == fresh ? 4u : kPolicyVersionUnknown);
  }
}

}  // namespace
}  // namespace minpanel::store
