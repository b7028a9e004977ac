// Profile expiry (Engine::ExpireProfiles; src/store/README.md, "Profiles"):
// only the profiles of subjects with no profile update received and no
// event since the bound are hidden (an update counts when the store
// received it, by its clock — here a fake one — whatever its own $time), never their events nor a group's profile; the
// expiry survives a restart from the manifest and from the log; later
// updates start a new profile; the purge removes the hidden updates from
// the profile file and does not journal the expiry as an erasure; and the
// record's codec, and the byte of each deletion kind.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "core/time_units.h"
#include "store/bytes.h"
#include "store/deletion.h"
#include "store/erasure_journal.h"
#include "store/manifest.h"
#include "store/segment.h"
#include "store/store_test_util.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 5;
constexpr int64_t kBoundMs = kTestNowMs - 30 * kDayMs;

ProfileUpdate Update(uint64_t subject, int64_t time_ms, std::string plan,
                     std::string group_key = {}) {
  ProfileUpdate update;
  update.subject = Id128{0, subject};
  update.group_key = std::move(group_key);
  update.time_ms = time_ms;
  update.key_version = 1;
  update.properties = {{"plan", Value::String(std::move(plan))}};
  return update;
}

class ProfileExpiryTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    journal_folder_ = folder_ + ".journal";
    std::filesystem::remove_all(journal_folder_);
    options_.erasure_journal_folder = journal_folder_;
  }
  void TearDown() override {
    StoreTest::TearDown();
    std::filesystem::remove_all(journal_folder_);
  }
  void AppendUpdates(std::vector<ProfileUpdate> updates, std::vector<Event> events = {}) {
    AppendBatch batch = MakeBatch(kProject, std::move(events));
    batch.profile_updates = std::move(updates);
    const auto result = engine_->Append(std::move(batch));
    ASSERT_TRUE(result.ok()) << result.status().ToString();
  }
  // Subject 1: old update, old event only (expires). 2: old update, a
  // recent event (kept). 3: recent update. 4: an old group profile (kept).
  // 5: an old event, no profile. The first batch reaches the profile file
  // and segments, the second stays in the memtable. Each update is
  // received (the store's clock) at its own time.
  void AppendMix() {
    clock_->Set(kTestNowMs - 40 * kDayMs);
    AppendUpdates({Update(1, kTestNowMs - 40 * kDayMs, "expiring-plan"),
                   Update(2, kTestNowMs - 40 * kDayMs, "kept-plan"),
                   Update(4, kTestNowMs - 40 * kDayMs, "group", "company")},
                  {MakeEvent("view", kTestNowMs - 40 * kDayMs, 1, 1),
                   MakeEvent("view", kTestNowMs - 35 * kDayMs, 5, 2)});
    Reopen();
    clock_->Set(kTestNowMs - 5 * kDayMs);
    AppendUpdates({Update(3, kTestNowMs - 5 * kDayMs, "recent")},
                  {MakeEvent("view", kTestNowMs - 5 * kDayMs, 2, 3)});
    clock_->Set(kTestNowMs);
  }
  std::vector<std::string> Plans() {
    std::vector<std::string> plans;
    const Status status = engine_->ScanProfiles(kProject, [&](const ProfileUpdate& update) {
      plans.push_back(std::to_string(update.subject.low) + ":" +
                      update.properties.at(0).value.as_string());
      return true;
    });
    EXPECT_TRUE(status.ok()) << status.ToString();
    std::sort(plans.begin(), plans.end());
    return plans;
  }
  std::set<uint64_t> EventIds() {
    std::set<uint64_t> ids;
    for (const Event& event : ScanAll(kProject)) {
      ids.insert(event.insert_id.low);
    }
    return ids;
  }
  std::string journal_folder_;
};

const std::vector<std::string> kKeptPlans = {"2:kept-plan", "3:recent", "4:group"};

TEST_F(ProfileExpiryTest, OnlyProfilesNotSeenSinceTheBoundExpireAndEventsStay) {
  ASSERT_TRUE(Open().ok());
  AppendMix();
  ASSERT_EQ(Plans().size(), 4u);
  const uint64_t logged = engine_->GetStats().deletions_logged;
  auto expired = engine_->ExpireProfiles(kProject, kBoundMs);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 1u);
  EXPECT_EQ(Plans(), kKeptPlans);
  EXPECT_EQ(EventIds(), (std::set<uint64_t>{1, 2, 3}));
  EXPECT_EQ(engine_->GetStats().profiles_expired, 1u);
  EXPECT_EQ(engine_->GetStats().deletions_logged, logged + 1);
  // Nothing more to expire: no record logged.
  expired = engine_->ExpireProfiles(kProject, kBoundMs);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 0u);
  EXPECT_EQ(engine_->GetStats().deletions_logged, logged + 1);
  // A later bound takes subject 2 and 3 too (their last sight is 5 days old).
  Reopen();
  EXPECT_EQ(Plans(), kKeptPlans);
  expired = engine_->ExpireProfiles(kProject, kTestNowMs - kDayMs);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 2u);
  EXPECT_EQ(Plans(), (std::vector<std::string>{"4:group"}));
  EXPECT_EQ(EventIds(), (std::set<uint64_t>{1, 2, 3}));
}

// A client's clock does not decide: an update received 40 days ago whose
// $time says yesterday (a clock far ahead) expires, and one received today
// whose $time is 50 days old (a queue replayed late, an import) is kept,
// across a restart (the store time comes back from the profile file).
TEST_F(ProfileExpiryTest, AnUpdateCountsWhenItWasReceivedNotByItsOwnTime) {
  ASSERT_TRUE(Open().ok());
  clock_->Set(kTestNowMs - 40 * kDayMs);
  AppendUpdates({Update(1, kTestNowMs - kDayMs, "future-dated")});
  clock_->Set(kTestNowMs);
  AppendUpdates({Update(2, kTestNowMs - 50 * kDayMs, "back-dated")});
  Reopen();  // both in the profile file now
  auto expired = engine_->ExpireProfiles(kProject, kBoundMs);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 1u);
  EXPECT_EQ(Plans(), (std::vector<std::string>{"2:back-dated"}));
  // In the memtable alike.
  clock_->Set(kTestNowMs - 40 * kDayMs);
  AppendUpdates({Update(3, kTestNowMs, "future-dated")});
  clock_->Set(kTestNowMs);
  AppendUpdates({Update(4, kTestNowMs - 50 * kDayMs, "back-dated")});
  expired = engine_->ExpireProfiles(kProject, kBoundMs);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 1u);
  EXPECT_EQ(Plans(), (std::vector<std::string>{"2:back-dated", "4:back-dated"}));
}

TEST_F(ProfileExpiryTest, AnExpiryReplayedFromTheLogHidesTheSameProfiles) {
  options_.flush_on_close = false;
  ASSERT_TRUE(Open().ok());
  AppendMix();
  ASSERT_TRUE(engine_->ExpireProfiles(kProject, kBoundMs).ok());
  // An update after the expiry starts a new profile, old as its time is.
  AppendUpdates({Update(1, kTestNowMs - 50 * kDayMs, "new-plan")});
  const std::vector<std::string> expected = {"1:new-plan", "2:kept-plan", "3:recent", "4:group"};
  EXPECT_EQ(Plans(), expected);
  Reopen();  // the log replays the expiry between the appends
  EXPECT_EQ(Plans(), expected);
  EXPECT_EQ(EventIds(), (std::set<uint64_t>{1, 2, 3}));
}

TEST_F(ProfileExpiryTest, ThePurgeRemovesExpiredUpdatesFromTheProfileFile) {
  ASSERT_TRUE(Open().ok());
  AppendMix();
  Reopen();  // every update in the profile file
  const std::string path = folder_ + "/profiles/" + std::to_string(kProject) + ".prof";
  ASSERT_NE(ReadBytes(path).find("expiring-plan"), std::string::npos);
  ASSERT_TRUE(engine_->ExpireProfiles(kProject, kBoundMs).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  EXPECT_EQ(ReadBytes(path).find("expiring-plan"), std::string::npos);
  EXPECT_NE(ReadBytes(path).find("kept-plan"), std::string::npos);
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  EXPECT_EQ(Plans(), kKeptPlans);
  EXPECT_EQ(EventIds(), (std::set<uint64_t>{1, 2, 3}));
  // Not an erasure: a restore must not erase subject 1's events.
  auto erasures = ReadErasures(*options_.file_system, folder_, journal_folder_);
  ASSERT_TRUE(erasures.ok()) << erasures.status().ToString();
  EXPECT_TRUE(erasures->empty());
  Reopen();
  EXPECT_EQ(Plans(), kKeptPlans);
}

// In a folded segment (identity folding, Options::subject_fold) subject
// 2's rows are kept under its person 1: its recent events still keep its
// profile, and only subject 9, never seen since, expires.
TEST_F(ProfileExpiryTest, EventsKeptUnderAPersonInAFoldedSegmentStillCount) {
  options_.memtable_rows_max = 20;
  options_.subject_fold = [](uint32_t, const std::vector<std::shared_ptr<const SegmentReader>>&) {
    auto fold = std::make_shared<SubjectFold>();
    fold->generation = 5;
    fold->persons = {{Id128{0, 2}, Id128{0, 1}}};
    return std::shared_ptr<const SubjectFold>(fold);
  };
  ASSERT_TRUE(Open().ok());
  clock_->Set(kTestNowMs - 40 * kDayMs);
  AppendUpdates({Update(2, kTestNowMs - 40 * kDayMs, "linked-plan"),
                 Update(9, kTestNowMs - 40 * kDayMs, "unseen-plan")});
  clock_->Set(kTestNowMs);
  uint64_t subject_2_events = 0;
  for (uint64_t batch = 0; batch < 40; ++batch) {  // enough flushes for a compaction
    std::vector<Event> events;
    for (uint64_t row = 0; row < 20; ++row) {
      const uint64_t id = batch * 20 + row + 1;
      // Subject 2 in the first half only, so that the compactions fold all of it.
      const uint64_t subject = batch >= 20 && id % 4 == 2 ? 3 : id % 4;
      subject_2_events += subject == 2 ? 1 : 0;
      events.push_back(
          MakeEvent("a", kTestNowMs - 5 * kDayMs + static_cast<int64_t>(id), subject, id));
    }
    while (true) {  // refused while the flushes catch up (kMemtableHardLimitFactor)
      const auto result = engine_->Append(MakeBatch(kProject, events));
      if (result.ok()) {
        break;
      }
      ASSERT_EQ(result.status().code(), StatusCode::kResourceExhausted);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  // Until every event of subject 2 lies in a folded segment, under 1.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (true) {
    uint64_t folded_rows = 0;
    auto snapshot = engine_->Snapshot(kProject);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status().ToString();
    for (const auto& segment : *snapshot) {
      std::vector<StoredSubjectRun> runs;
      for (size_t block_idx = 0; block_idx < segment->block_count(); ++block_idx) {
        ASSERT_TRUE(segment->ReadStoredSubjects(block_idx, &runs).ok());
        for (const StoredSubjectRun& run : runs) {
          folded_rows += run.subject == Id128{0, 2} ? run.row_count : 0;
        }
      }
    }
    if (folded_rows == subject_2_events) {
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << folded_rows << " folded rows of 2";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto expired = engine_->ExpireProfiles(kProject, kBoundMs);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 1u);
  EXPECT_EQ(Plans(), (std::vector<std::string>{"2:linked-plan"}));
}

TEST(ProfileExpiryFormatTest, PayloadRoundTripsAndRejectsDamage) {
  Deletion expiry;
  expiry.project_id = 4;
  expiry.stored_at_ms = kTestNowMs;
  expiry.subjects = {Id128{0, 7}, Id128{1, 2}};
  expiry.profiles_only = true;
  const std::string bytes = EncodeDeletionPayload(expiry);
  auto decoded = DecodeDeletionPayload(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, expiry);
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_EQ(DecodeDeletionPayload(bytes.substr(0, length)).status().code(),
              StatusCode::kCorruption);
  }
  Manifest manifest;
  expiry.position = LogPosition{2, 40};
  manifest.deletions.push_back(expiry);
  auto round = DecodeManifest(EncodeManifest(manifest), "MANIFEST");
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  ASSERT_EQ(round->deletions.size(), 1u);
  EXPECT_EQ(round->deletions[0], expiry);
  // An expiry hides profile updates only; an erasure hides both.
  const auto state = MakeDeletionState(manifest.deletions, 1);
  const ProjectDeletions* deletions = state->Find(4);
  ASSERT_NE(deletions, nullptr);
  EXPECT_TRUE(ProfileHidden(*deletions, Id128{0, 7}, LogPosition{2, 39}));
  EXPECT_FALSE(ProfileHidden(*deletions, Id128{0, 7}, LogPosition{2, 41}));
  EXPECT_FALSE(RowHidden(*deletions, Id128{0, 7}, 0, LogPosition{2, 39}, "view"));
}

// Each deletion kind has its own byte (docs/formats/wal.md, "Deletion
// payload"): payloads written by hand decode as their kind, and an erasure
// is never read as an expiry nor a property purge as anything else.
std::string KindPayload(uint8_t kind, std::string_view body) {
  std::string payload;
  PutFixed64(static_cast<uint64_t>(kTestNowMs), &payload);
  PutVarint64(3, &payload);  // project
  payload.push_back(static_cast<char>(kind));
  payload.append(body);
  return payload;
}

TEST(DeletionKindTest, EveryKindDecodesFromItsOwnByte) {
  std::string subjects;
  PutVarint64(1, &subjects);
  PutId(Id128{0, 9}, &subjects);
  std::string strings;  // a key (or name) "k", then an event name "buy"
  PutVarint64(1, &strings);
  strings += "k";
  PutVarint64(3, &strings);
  strings += "buy";

  auto erasure = DecodeDeletionPayload(KindPayload(1, subjects));
  ASSERT_TRUE(erasure.ok()) << erasure.status().ToString();
  EXPECT_EQ(erasure->subjects, (std::vector<Id128>{Id128{0, 9}}));
  EXPECT_FALSE(erasure->profiles_only);
  EXPECT_TRUE(erasure->property_key.empty());

  auto purge = DecodeDeletionPayload(KindPayload(4, strings));
  ASSERT_TRUE(purge.ok()) << purge.status().ToString();
  EXPECT_EQ(purge->property_key, "k");
  EXPECT_EQ(purge->event_name, "buy");
  EXPECT_TRUE(purge->subjects.empty());
  EXPECT_FALSE(purge->profiles_only);

  auto expiry = DecodeDeletionPayload(KindPayload(5, subjects));
  ASSERT_TRUE(expiry.ok()) << expiry.status().ToString();
  EXPECT_EQ(expiry->subjects, (std::vector<Id128>{Id128{0, 9}}));
  EXPECT_TRUE(expiry->profiles_only);
  EXPECT_TRUE(expiry->property_key.empty());

  // And each encodes to the byte it decodes from.
  EXPECT_EQ(EncodeDeletionPayload(*erasure), KindPayload(1, subjects));
  EXPECT_EQ(EncodeDeletionPayload(*purge), KindPayload(4, strings));
  EXPECT_EQ(EncodeDeletionPayload(*expiry), KindPayload(5, subjects));

  for (const uint8_t unknown : {uint8_t{0}, uint8_t{6}, uint8_t{255}}) {
    auto decoded = DecodeDeletionPayload(KindPayload(unknown, subjects));
    ASSERT_FALSE(decoded.ok()) << int{unknown};
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(decoded.status().message().find("kind " + std::to_string(unknown)),
              std::string::npos)
        << decoded.status().message();
  }
}

}  // namespace
}  // namespace minpanel::store
