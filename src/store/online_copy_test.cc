// CopyStoreOnline (store.h): copies taken while another thread appends
// (flushing, compacting and trimming the log as it goes) open as a store
// holding every event acknowledged before the copy began, each once, and
// nothing that was never acknowledged; a deletion in force is kept; a
// non-empty destination is refused; and the erasures a store recorded
// (ErasuresSince) are found whether retired into its journal, in force in
// its manifest or only in its log, and only those after a copy's point —
// property purges as erasures are, profile expiries not at all.
#include "store/online_copy.h"

#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "store/store_test_util.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 8;

class OnlineCopyTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    copy_folder_ = folder_ + ".copy";
    journal_folder_ = folder_ + ".journal";
    std::filesystem::remove_all(copy_folder_);
    std::filesystem::remove_all(journal_folder_);
    options_.erasure_journal_folder = journal_folder_;
  }
  void TearDown() override {
    StoreTest::TearDown();
    std::filesystem::remove_all(copy_folder_);
    std::filesystem::remove_all(journal_folder_);
  }
  std::set<uint64_t> IdsOf(Engine& engine) {
    std::set<uint64_t> ids;
    ScanRequest request;
    request.project_id = kProject;
    const Status status = engine.Scan(request, [&](const Event& event) {
      EXPECT_TRUE(ids.insert(event.insert_id.low).second) << "twice: " << event.insert_id.low;
      return true;
    });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return ids;
  }
  std::unique_ptr<Engine> OpenCopy() {
    Options options;
    options.folder = copy_folder_;
    options.file_system = NewPosixFileSystem();
    options.clock = clock_;
    auto engine = OpenEmbeddedEngine(options);
    EXPECT_TRUE(engine.ok()) << engine.status().ToString();
    return engine.ok() ? std::move(engine).value() : nullptr;
  }

  std::string copy_folder_;
  std::string journal_folder_;
};

TEST_F(OnlineCopyTest, ACopyDuringIngestionHoldsEveryAcknowledgedEventOnce) {
  options_.memtable_rows_max = 500;  // flush (and roll, trim, compact) often
  ASSERT_TRUE(Open().ok());
  std::mutex mutex;
  std::set<uint64_t> acknowledged;
  std::set<uint64_t> acknowledged_profiles;  // batch numbers
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t batch_idx = 0; !stop.load(); ++batch_idx) {
      std::vector<Event> events;
      for (uint64_t row = 0; row < 50; ++row) {
        const uint64_t id = batch_idx * 50 + row;
        events.push_back(MakeEvent("view", kTestNowMs + static_cast<int64_t>(id), id % 97, id));
      }
      AppendBatch batch = MakeBatch(kProject, events);
      // A profile update per batch too: they move to the profile file at
      // each flush, which the copy must take with the log it matches.
      ProfileUpdate update;
      update.subject = Id128{0, batch_idx};
      update.time_ms = kTestNowMs;
      update.properties = {{"batch", Value::Int(static_cast<int64_t>(batch_idx))}};
      batch.profile_updates.push_back(update);
      if (engine_->Append(std::move(batch)).ok()) {
        std::lock_guard lock(mutex);
        for (const Event& event : events) {
          acknowledged.insert(event.insert_id.low);
        }
        acknowledged_profiles.insert(batch_idx);
      }
    }
  });
  while (true) {
    std::lock_guard lock(mutex);
    if (acknowledged.size() >= 5'000) {
      break;
    }
  }
  std::set<uint64_t> before;
  std::set<uint64_t> profiles_before;
  {
    std::lock_guard lock(mutex);
    before = acknowledged;
    profiles_before = acknowledged_profiles;
  }
  auto copied = CopyStoreOnline(folder_, copy_folder_);
  stop.store(true);
  writer.join();
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_GT(copied->segments, 0u);
  EXPECT_GT(copied->log_files, 0u);
  EXPECT_GT(copied->profile_files, 0u);
  std::unique_ptr<Engine> copy = OpenCopy();
  ASSERT_NE(copy, nullptr);
  std::set<uint64_t> profiles;
  ASSERT_TRUE(copy->ScanProfiles(kProject, [&](const ProfileUpdate& update) {
                    EXPECT_TRUE(profiles.insert(update.subject.low).second)
                        << "twice: " << update.subject.low;
                    return true;
                  })
                  .ok());
  for (const uint64_t batch_idx : profiles_before) {
    ASSERT_TRUE(profiles.contains(batch_idx)) << "profile acknowledged before the copy: " << batch_idx;
  }
  for (const uint64_t batch_idx : profiles) {
    ASSERT_TRUE(acknowledged_profiles.contains(batch_idx)) << "never acknowledged: " << batch_idx;
  }
  const std::set<uint64_t> ids = IdsOf(*copy);
  for (const uint64_t id : before) {
    ASSERT_TRUE(ids.contains(id)) << "acknowledged before the copy, missing: " << id;
  }
  for (const uint64_t id : ids) {
    ASSERT_TRUE(acknowledged.contains(id)) << "never acknowledged: " << id;
  }
  EXPECT_TRUE(copy->Close().ok());
}

TEST_F(OnlineCopyTest, ADeletionInForceIsCopiedWithTheRows) {
  options_.flush_on_close = false;
  ASSERT_TRUE(Open().ok());
  std::vector<Event> events;
  for (uint64_t id = 0; id < 100; ++id) {
    events.push_back(MakeEvent("view", kTestNowMs + static_cast<int64_t>(id), id % 5, id));
  }
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, events)).ok());
  Reopen();  // not flushed: the rows and the deletion below are in the log
  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 3}}).ok());
  const std::set<uint64_t> expected = IdsOf(*engine_);
  ASSERT_EQ(expected.size(), 80u);
  auto copied = CopyStoreOnline(folder_, copy_folder_);
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  std::unique_ptr<Engine> copy = OpenCopy();
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(IdsOf(*copy), expected);
  EXPECT_TRUE(copy->Close().ok());
}

TEST_F(OnlineCopyTest, ErasuresAreFoundRetiredInForceAndSinceAPoint) {
  ASSERT_TRUE(Open().ok());
  std::vector<Event> events;
  for (uint64_t id = 0; id < 100; ++id) {
    events.push_back(MakeEvent("view", kTestNowMs + static_cast<int64_t>(id), id % 5, id));
  }
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, events)).ok());
  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 1}}).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());  // retired: only the journal has it now
  ASSERT_EQ(engine_->GetStats().deletions_active, 0u);
  ASSERT_TRUE(std::filesystem::exists(journal_folder_ + "/ERASURES"));
  auto copied = CopyStoreOnline(folder_, copy_folder_);  // the point of a backup
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  ASSERT_TRUE(engine_->DropBefore(kProject, kTestNowMs + 10).ok());                // not an erasure
  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 2}, Id128{0, 3}}).ok());  // in force
  auto all = ErasuresSince(folder_, journal_folder_, 0, 0);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].subjects, (std::vector<Id128>{Id128{0, 1}}));
  EXPECT_EQ((*all)[1].subjects, (std::vector<Id128>{Id128{0, 2}, Id128{0, 3}}));
  auto since =
      ErasuresSince(folder_, journal_folder_, copied->end_log_file, copied->end_log_offset);
  ASSERT_TRUE(since.ok()) << since.status().ToString();
  ASSERT_EQ(since->size(), 1u);
  EXPECT_EQ((*since)[0].project_id, kProject);
  EXPECT_EQ((*since)[0].subjects.size(), 2u);
  // After its purge the later one is in the journal, found the same.
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  auto purged =
      ErasuresSince(folder_, journal_folder_, copied->end_log_file, copied->end_log_offset);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  ASSERT_EQ(purged->size(), 1u);
  EXPECT_EQ((*purged)[0].subjects.size(), 2u);
}

TEST_F(OnlineCopyTest, PropertyPurgesAreFoundAsErasuresAreAndExpiriesAreNot) {
  ASSERT_TRUE(Open().ok());
  std::vector<Event> events;
  for (uint64_t id = 0; id < 100; ++id) {
    Event event = MakeEvent("view", kTestNowMs + static_cast<int64_t>(id), id % 5, id);
    event.properties.push_back({"note", Value::String("n" + std::to_string(id))});
    events.push_back(std::move(event));
  }
  AppendBatch batch = MakeBatch(kProject, events);
  ProfileUpdate update;  // a profile not seen since long before the events
  update.subject = Id128{0, 99};
  update.time_ms = kTestNowMs - 1000;
  update.key_version = 1;
  update.properties = {{"plan", Value::String("old")}};
  batch.profile_updates.push_back(update);
  clock_->Set(kTestNowMs - 1000);  // received then (what expiry counts)
  ASSERT_TRUE(engine_->Append(std::move(batch)).ok());
  clock_->Set(kTestNowMs);
  auto copied = CopyStoreOnline(folder_, copy_folder_);  // the point of a backup
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  ASSERT_TRUE(engine_->PurgeProperty(kProject, "note", "").ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());  // retired: only the journal has it now
  ASSERT_EQ(engine_->GetStats().deletions_active, 0u);
  ASSERT_TRUE(engine_->PurgeProperty(kProject, "seats", "view").ok());  // in force
  // Not journalled: retention expires the profiles again after a restore.
  auto expired = engine_->ExpireProfiles(kProject, kTestNowMs);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  ASSERT_EQ(*expired, 1u);
  auto since =
      ErasuresSince(folder_, journal_folder_, copied->end_log_file, copied->end_log_offset);
  ASSERT_TRUE(since.ok()) << since.status().ToString();
  ASSERT_EQ(since->size(), 2u);
  EXPECT_EQ((*since)[0].property_key, "note");
  EXPECT_EQ((*since)[0].event_name, "");
  EXPECT_TRUE((*since)[0].subjects.empty());
  EXPECT_EQ((*since)[1].property_key, "seats");
  EXPECT_EQ((*since)[1].event_name, "view");
  EXPECT_EQ((*since)[1].project_id, kProject);
  // A restore of the copy applies them again: the values do not come back.
  std::unique_ptr<Engine> copy = OpenCopy();
  ASSERT_NE(copy, nullptr);
  for (const Erasure& purge : *since) {
    ASSERT_TRUE(copy->PurgeProperty(purge.project_id, purge.property_key, purge.event_name).ok());
  }
  ScanRequest request;
  request.project_id = kProject;
  uint64_t rows = 0;
  ASSERT_TRUE(copy->Scan(request, [&](const Event& event) {
                    ++rows;
                    for (const Property& property : event.properties) {
                      EXPECT_NE(property.key, "note");
                      EXPECT_NE(property.key, "seats");
                    }
                    return true;
                  }).ok());
  EXPECT_EQ(rows, 100u);
  EXPECT_TRUE(copy->Close().ok());
}

TEST_F(OnlineCopyTest, AJournalLeftEmptyByACrashIsStartedAnew) {
  std::filesystem::create_directories(journal_folder_);
  WriteBytes(journal_folder_ + "/ERASURES", "");  // created, its header never written
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("view", kTestNowMs, 4, 1)})).ok());
  ASSERT_TRUE(engine_->EraseSubjects(kProject, {Id128{0, 4}}).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  auto erasures = ErasuresSince(folder_, journal_folder_, 0, 0);
  ASSERT_TRUE(erasures.ok()) << erasures.status().ToString();
  ASSERT_EQ(erasures->size(), 1u);
  EXPECT_EQ((*erasures)[0].subjects, (std::vector<Id128>{Id128{0, 4}}));
}

TEST_F(OnlineCopyTest, ANonEmptyDestinationIsRefused) {
  ASSERT_TRUE(Open().ok());
  std::filesystem::create_directories(copy_folder_);
  WriteBytes(copy_folder_ + "/something", "x");
  auto copied = CopyStoreOnline(folder_, copy_folder_);
  ASSERT_FALSE(copied.ok());
  EXPECT_EQ(copied.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(copied.status().message().find("destination"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::store
