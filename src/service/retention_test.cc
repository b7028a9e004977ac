// Retention through the Service with a fake clock (docs/privacy.md,
// "Retention"): a project's rules hide the events past their age from
// exports at once, move on as the clock does, keep other projects' events,
// log one drop per rule and step, and hold through a restart; profiles of
// subjects not seen for profile_expiry_days expire.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/fault_file_system.h"
#include "core/time_units.h"
#include "service/backup.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

constexpr int64_t kNowMs = 1'795'685'260'000;  // 2026-11-26
constexpr int64_t kAges[] = {1, 5, 10, 40};  // days, for each name

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("minpanel-retention-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    config_.data_folder = (root_ / "data").string();
    config_.key_folder = (root_ / "keys").string();
    ProjectSettings shop;
    shop.project = "shop";
    shop.retention_days = 30;
    shop.event_retention_days = {{"Page view", 7}};
    config_.project_settings = {shop};
    Open();
    for (const char* name : {"shop", "other"}) {
      auto created = service_->projects().Create(name, "UTC");
      ASSERT_TRUE(created.ok()) << created.status().ToString();
      projects_.push_back(created->project);
    }
    for (const Project& project : projects_) {
      std::vector<std::string> records;
      for (const int64_t age_days : kAges) {
        for (const char* name : {"Page view", "Signed up"}) {
          records.push_back(Record(name, kNowMs - age_days * kDayMs));
        }
      }
      Import(project, records);
    }
  }
  void TearDown() override {
    service_.reset();
    std::filesystem::remove_all(root_);
  }
  void Open() {
    service_.reset();
    auto service = Service::Open(config_, file_system_, clock_);
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    service_ = std::move(service).value();
  }
  static std::string Record(const std::string& name, int64_t time_ms) {
    return "{\"event\":\"" + name + "\",\"properties\":{\"distinct_id\":\"user-" +
           std::to_string(time_ms % 7) + "\",\"time\":" + std::to_string(time_ms) + "}}";
  }
  void Import(const Project& project, const std::vector<std::string>& records) {
    const std::vector<std::string_view> views(records.begin(), records.end());
    auto outcome = service_->ImportEvents(project, views);
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    ASSERT_TRUE(outcome->errors.empty());
  }
  // A Mixpanel /engage $set of `plan` for `distinct_id` at `time_ms`.
  void Engage(const Project& project, const std::string& distinct_id, int64_t time_ms,
              const std::string& plan) {
    const std::string json = "[{\"$token\":\"" + project.token + "\",\"$distinct_id\":\"" +
                             distinct_id + "\",\"$time\":" + std::to_string(time_ms) +
                             ",\"$set\":{\"plan\":\"" + plan + "\"}}]";
    IngestRequest request;
    request.route = ingest::MixpanelRoute::kEngage;
    request.payload = json;
    auto outcome = service_->IngestMixpanel(request);
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    ASSERT_EQ(outcome->stored, 1U);
  }
  // Whether the access request for `distinct_id` shows a profile with `plan`.
  bool HasProfile(const Project& project, const std::string& distinct_id,
                  const std::string& plan) {
    SubjectSelection selection;
    selection.distinct_ids = {distinct_id};
    auto document = service_->AccessRequest(LocalAccess(project), selection);
    EXPECT_TRUE(document.ok()) << document.status().ToString();
    return document.ok() && document->find("\"" + plan + "\"") != std::string::npos;
  }
  // The events of `name` a project's export holds: the command line's
  // export without decoys (--no-watermark), so that only stored rows count.
  size_t Count(const Project& project, const std::string& name) {
    ExportOptions options;
    options.from_date = "2026-01-01";
    options.to_date = "2026-12-31";
    Access local = LocalAccess(project);
    local.route = std::string(kRouteCliNoWatermark);
    std::string out;
    auto summary = service_->Export(local, options, [&](std::string_view chunk) {
      out.append(chunk);
      return true;
    });
    EXPECT_TRUE(summary.ok()) << summary.status().ToString();
    size_t count = 0;
    const std::string needle = "\"event\":\"" + name + "\"";
    for (size_t at = out.find(needle); at != std::string::npos; at = out.find(needle, at + 1)) {
      ++count;
    }
    return count;
  }

  std::filesystem::path root_;
  Config config_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(kNowMs);
  std::unique_ptr<Service> service_;
  std::vector<Project> projects_;
};

TEST_F(RetentionTest, RulesHideOldEventsAndMoveOnWithTheClock) {
  const Project& shop = projects_[0];
  const Project& other = projects_[1];
  ASSERT_EQ(Count(shop, "Page view"), 4U);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(Count(shop, "Page view"), 2U);  // 1 and 5 days old (7 days)
  EXPECT_EQ(Count(shop, "Signed up"), 3U);  // all but 40 days old (30 days)
  EXPECT_EQ(Count(other, "Page view"), 4U);
  EXPECT_EQ(Count(other, "Signed up"), 4U);
  EXPECT_EQ(service_->GetMetrics().retention_drops, 2U);
  // Within the same hour nothing new is logged.
  clock_->Advance(60'000);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(service_->GetMetrics().retention_drops, 2U);
  // Three days on, the 5-day-old page view is past its 7 days.
  clock_->Advance(3 * kDayMs);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(Count(shop, "Page view"), 1U);
  EXPECT_EQ(Count(shop, "Signed up"), 3U);
  EXPECT_EQ(service_->GetMetrics().retention_drops, 4U);
  // A late old event is kept until the next step of its rule.
  Import(shop, {Record("Signed up", kNowMs - 60 * kDayMs)});
  EXPECT_EQ(Count(shop, "Signed up"), 4U);
  clock_->Advance(kRetentionStepMs);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(Count(shop, "Signed up"), 3U);
  // After a restart the drops are still in force.
  Open();
  EXPECT_EQ(Count(shop, "Page view"), 1U);
  EXPECT_EQ(Count(shop, "Signed up"), 3U);
  EXPECT_EQ(Count(other, "Page view"), 4U);
}

TEST_F(RetentionTest, SettingsReplacedOnReloadApplyToTheNextRun) {
  const Project& other = projects_[1];
  ProjectSettings settings;
  settings.project = "other";
  settings.retention_days = 3;
  service_->SetProjectSettings({settings});
  EXPECT_EQ(service_->SettingsOf(other).retention_days, 3U);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(Count(other, "Page view"), 1U);
  EXPECT_EQ(Count(other, "Signed up"), 1U);
  EXPECT_EQ(Count(projects_[0], "Page view"), 4U);  // shop has no table any more
}

// The erasure purge deadline (erasure_purge_deadline_hours, default 24):
// an erasure's rows stay in the files until the oldest deletion in force
// is an hour short of it, then the store purges them in the background and
// retires the deletion — with no further traffic, and the age of the
// oldest unpurged deletion readable meanwhile.
TEST_F(RetentionTest, AnErasureIsPurgedByTheDeadline) {
  ASSERT_EQ(config_.erasure_purge_deadline_hours, 24U);
  const Project& shop = projects_[0];
  SubjectSelection selection;
  selection.distinct_ids = {"user-4"};  // 5 and 40 days old: 4 of 8 events
  auto erased = service_->Erase(LocalAccess(shop), selection);
  ASSERT_TRUE(erased.ok()) << erased.status().ToString();
  EXPECT_EQ(service_->GetStoreStats().deletions_active, 1U);
  clock_->Advance(23 * kHourMs - 60'000);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the store looks every second
  store::Stats stats = service_->GetStoreStats();
  EXPECT_EQ(stats.deletions_active, 1U);
  EXPECT_EQ(stats.deletion_oldest_age_ms, static_cast<uint64_t>(23 * kHourMs - 60'000));
  clock_->Advance(60'000);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (service_->GetStoreStats().deletions_active != 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "not purged by the deadline";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(service_->GetStoreStats().deletion_oldest_age_ms, 0U);
  EXPECT_EQ(Count(shop, "Signed up") + Count(shop, "Page view"), 4U);
}

// A reload's erasure_purge_deadline_hours (SetErasurePurgeDeadline, called
// on SIGHUP) applies to the deletions already in force: shortened to 0, an
// erasure waiting for the 24-hour deadline is purged at once, the clock
// standing still; set back, the next one waits again.
TEST_F(RetentionTest, AReloadedPurgeDeadlineAppliesToErasuresInForce) {
  const Project& shop = projects_[0];
  SubjectSelection selection;
  selection.distinct_ids = {"user-4"};
  ASSERT_TRUE(service_->Erase(LocalAccess(shop), selection).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the store looks every second
  EXPECT_EQ(service_->GetStoreStats().deletions_active, 1U);
  service_->SetErasurePurgeDeadline(0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (service_->GetStoreStats().deletions_active != 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "not purged after the reload";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  service_->SetErasurePurgeDeadline(24);
  selection.distinct_ids = {"user-5"};
  ASSERT_TRUE(service_->Erase(LocalAccess(shop), selection).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(service_->GetStoreStats().deletions_active, 1U);
}

// Profile expiry (profile_expiry_days): a profile goes once its subject
// has had no event and no profile update for that many days — an update
// counting when the server received it (the fake clock), not by its own
// $time, which the client sets; one seen by an event is kept; the expiry
// moves on with the clock and holds through a restart.
TEST_F(RetentionTest, ProfilesNotSeenForTheirDaysExpire) {
  const Project& shop = projects_[0];
  const int64_t start_ms = kNowMs;
  Engage(shop, "idle", start_ms, "idle-plan");
  Engage(shop, "busy", start_ms, "busy-plan");
  clock_->Advance(18 * kDayMs);
  Engage(shop, "fresh", clock_->NowMs(), "fresh-plan");
  // A queue replayed late: received now, its $time 100 days back.
  Engage(shop, "late", start_ms - 100 * kDayMs, "late-plan");
  clock_->Advance(2 * kDayMs);
  Import(shop, {"{\"event\":\"Signed up\",\"properties\":{\"distinct_id\":\"busy\",\"time\":" +
                std::to_string(clock_->NowMs() - 3 * kDayMs) + "}}"});
  ProjectSettings settings = service_->SettingsOf(shop);
  settings.profile_expiry_days = 10;
  service_->SetProjectSettings({settings});
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(service_->GetMetrics().profiles_expired, 1U);
  EXPECT_FALSE(HasProfile(shop, "idle", "idle-plan"));
  EXPECT_TRUE(HasProfile(shop, "busy", "busy-plan"));
  EXPECT_TRUE(HasProfile(shop, "fresh", "fresh-plan"));
  EXPECT_TRUE(HasProfile(shop, "late", "late-plan"));
  // The fixture's within 30 days of now (1, 5 and 10 days before the
  // start) and busy's.
  EXPECT_EQ(Count(shop, "Signed up"), 4U);
  // Within the same hour nothing new is looked for.
  clock_->Advance(60'000);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(service_->GetMetrics().profiles_expired, 1U);
  // Nine days on, busy (last event 12 days ago), fresh and late (received
  // 11 days ago) expire too.
  clock_->Advance(9 * kDayMs);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(service_->GetMetrics().profiles_expired, 4U);
  EXPECT_FALSE(HasProfile(shop, "busy", "busy-plan"));
  EXPECT_FALSE(HasProfile(shop, "fresh", "fresh-plan"));
  EXPECT_FALSE(HasProfile(shop, "late", "late-plan"));
  Open();
  for (const char* person : {"idle", "busy", "fresh", "late"}) {
    EXPECT_FALSE(HasProfile(shop, person, std::string(person) + "-plan")) << person;
  }
  // A new update starts a new profile.
  Engage(shop, "idle", clock_->NowMs(), "back-plan");
  EXPECT_TRUE(HasProfile(shop, "idle", "back-plan"));
}

// A profile expired after a backup was taken is not journalled as an
// erasure is (it is retention's, not a person's request): the restore
// applies the configuration's retention at once, so the first access
// request to the restored folder does not show it.
TEST_F(RetentionTest, ARestoreExpiresAtOnceTheProfilesExpiredSinceItsBackup) {
  const Project& shop = projects_[0];
  Engage(shop, "idle", kNowMs, "idle-plan");
  clock_->Advance(20 * kDayMs);
  Engage(shop, "recent", clock_->NowMs(), "recent-plan");
  const std::string backup = (root_ / "backup").string();
  const std::string keys_backup = (root_ / "backup-keys").string();
  auto taken = BackupDataFolder(config_, backup, *clock_);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_TRUE(BackupKeys(config_, keys_backup).ok());
  // After the backup, the live server expires idle's profile.
  for (ProjectSettings& settings : config_.project_settings) {
    settings.profile_expiry_days = 10;
  }
  service_->SetProjectSettings(config_.project_settings);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  ASSERT_FALSE(HasProfile(shop, "idle", "idle-plan"));

  Config restored = config_;
  restored.data_folder = (root_ / "restored" / "data").string();
  restored.key_folder = (root_ / "restored" / "keys").string();
  RestoreOptions options;
  options.from = backup;
  options.keys_from = keys_backup;
  auto summary = RestoreDataFolder(restored, options, clock_);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->erasures_reapplied, 0U);
  EXPECT_EQ(summary->profiles_expired, 1U);
  EXPECT_EQ(summary->retention_drops, 2U);  // shop's two rules
  EXPECT_TRUE(summary->retention_failure.empty()) << summary->retention_failure;
  service_.reset();
  config_ = restored;
  Open();
  EXPECT_FALSE(HasProfile(shop, "idle", "idle-plan"));
  EXPECT_TRUE(HasProfile(shop, "recent", "recent-plan"));
  // The restore's retention hid the events past their days at once too
  // (the backup was taken before any drop): of Signed up (30 days) the
  // fixture's 40 days before the start, of Page view (7 days) all.
  EXPECT_EQ(Count(shop, "Signed up"), 3U);
  EXPECT_EQ(Count(shop, "Page view"), 0U);
}

// audit_retention_days holds while the server runs: a record past its days
// is cut by the next retention pass (before: only when the log opened), at
// most once a day, behind a log.prune record.
TEST_F(RetentionTest, TheAuditLogIsPrunedWhileTheServiceRuns) {
  config_.audit_retention_days = 1;
  Open();
  const Project& shop = projects_[0];
  EXPECT_GT(Count(shop, "Signed up"), 0U);  // an audited export
  Access everyone = LocalAccess(shop);
  const auto records = [&](const std::string& act) {
    audit::Filter filter;
    filter.act = act;
    auto entries = service_->ReadAudit(everyone, filter);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    return entries.ok() ? entries->size() : size_t{0};
  };
  ASSERT_GE(records("export"), 1U);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_GE(records("export"), 1U);  // a day not yet past
  EXPECT_EQ(records("log.prune"), 0U);
  clock_->Advance(3 * kDayMs);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(records("export"), 0U);
  EXPECT_EQ(records("log.prune"), 1U);
  // Within the day the records read since are kept.
  clock_->Advance(60'000);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(records("log.prune"), 1U);
}

// audit_retention_days also holds when the log opens (OpenAuditLog), with no
// retention pass: a record more than the days old is cut, one younger is
// kept.
TEST_F(RetentionTest, TheAuditLogIsPrunedWhenItOpens) {
  config_.audit_retention_days = 1;
  Open();
  const Project& shop = projects_[0];
  EXPECT_GT(Count(shop, "Signed up"), 0U);  // an audited export
  const auto exports = [&] {
    audit::Filter filter;
    filter.act = "export";
    auto entries = service_->ReadAudit(LocalAccess(shop), filter);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    return entries.ok() ? entries->size() : size_t{0};
  };
  const size_t exported = exports();
  ASSERT_GE(exported, 1U);
  clock_->Advance(kDayMs - kHourMs);
  Open();
  EXPECT_EQ(exports(), exported);  // under a day old: kept
  clock_->Advance(2 * kHourMs);
  Open();
  EXPECT_EQ(exports(), 0U);  // over a day old: cut as the log opened
}

TEST(ErasurePurgeDelayTest, StartsAMarginBeforeTheDeadline) {
  EXPECT_EQ(ErasurePurgeDelayMs(24), 23 * 3'600'000LL);
  EXPECT_EQ(ErasurePurgeDelayMs(1), 0);
  EXPECT_EQ(ErasurePurgeDelayMs(0), 0);
  EXPECT_EQ(ErasurePurgeDelayMs(kErasurePurgeDeadlineHoursMax),
            (kErasurePurgeDeadlineHoursMax - 1) * 3'600'000LL);
}

TEST(RetentionBoundTest, BoundsRoundDownToTheStep) {
  EXPECT_EQ(RetentionBoundMs(kNowMs, 1) % kRetentionStepMs, 0);
  EXPECT_LE(RetentionBoundMs(kNowMs, 1), kNowMs - kDayMs);
  EXPECT_GT(RetentionBoundMs(kNowMs, 1), kNowMs - kDayMs - kRetentionStepMs);
  EXPECT_EQ(RetentionBoundMs(0, 1), -kDayMs);
  EXPECT_EQ(RetentionBoundMs(1, 1), -kDayMs);
}

// The data map learns what retention left no stored event carrying
// (docs/privacy.md, "The data map"): a key only the events past the
// project's 30 days carried is listed as no longer stored once the drop hides
// the last segment holding it; a key one kept segment still holds stays
// stored; and the gone key is removed from the catalogue once gone for
// longer than DataMapGoneKeptDays.
TEST_F(RetentionTest, TheDataMapSaysWhichKeysRetentionLeftNoEventCarrying) {
  const Project& shop = projects_[0];
  const auto record = [](int64_t age_days, const std::string& key) {
    return "{\"event\":\"Signed up\",\"properties\":{\"distinct_id\":\"gen-dm-" +
           std::to_string(age_days) + "\",\"time\":" +
           std::to_string(kNowMs - age_days * kDayMs) + ",\"" + key + "\":\"v\"}}";
  };
  Import(shop, {record(40, "only_old"), record(40, "old_and_new"), record(5, "old_and_new"),
                record(1, "only_new")});
  Open();  // the close flushed every day into its own segment
  const auto stored_as = [&](const std::string& key) -> std::string {
    auto map = service_->DataMapOf(LocalAccess(shop));
    EXPECT_TRUE(map.ok()) << map.status().ToString();
    for (const SeenItem& item : map.ok() ? map->items : std::vector<SeenItem>{}) {
      if (item.kind == "event" && item.name == key) {
        DataMap whole;
        whole.projects.push_back(*map);
        const std::string json = DataMapJson(whole);
        const size_t at = json.find("\"key\":\"" + key + "\"");
        const size_t from = json.find("\"stored_as\":", at);
        return json.substr(from, json.find(",\"purged\":", from) - from);
      }
    }
    return "(not listed)";
  };
  // The built-in policy redacts what the detectors find in a kept key.
  const std::string stored =
      R"x("stored_as":"as sent, with what the detectors find replaced by its kind ([email], ...)",)x"
      R"x("gone_ms":null)x";
  EXPECT_EQ(stored_as("only_old"), stored);

  clock_->Advance(kDataMapGoneMarginMs + 1'000);  // a key seen just now may be on its way in
  ASSERT_TRUE(service_->ApplyRetention().ok());
  const int64_t gone_ms = clock_->NowMs();
  EXPECT_EQ(stored_as("only_old"),
            "\"stored_as\":\"not stored: every event carrying it was past the project's "
            "retention (30 days); gone at " + std::to_string(gone_ms) +
                " ms, listed here until " + std::to_string(gone_ms + 30 * kDayMs) +
                " ms\",\"gone_ms\":" + std::to_string(gone_ms));
  EXPECT_EQ(stored_as("old_and_new"), stored)
      << "the 5-day-old segment still holds it";
  EXPECT_EQ(stored_as("only_new"), stored);
  EXPECT_EQ(Count(shop, "Signed up"), 5U);  // 1, 5 and 10 days old, and those above of 5 and 1

  // Kept across a restart; seen again, it is stored again.
  Open();
  EXPECT_NE(stored_as("only_old").find("not stored"), std::string::npos);
  Import(shop, {record(2, "only_old")});
  EXPECT_EQ(stored_as("only_old"), stored);

  // Gone again (an hour on, the bound moves past nothing new: the 2-day-old
  // event is kept), then the whole project's events pass 30 days: every key
  // is gone, and only_old, gone for longer than 30 days, is forgotten.
  Import(shop, {record(45, "only_old_again")});
  clock_->Advance(3'600'000);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_NE(stored_as("only_old_again").find("past the project's retention"), std::string::npos);
  EXPECT_EQ(stored_as("only_old"), stored);
  clock_->Advance(31 * kDayMs);
  ASSERT_TRUE(service_->ApplyRetention().ok());
  EXPECT_EQ(stored_as("only_old_again"), "(not listed)");
  EXPECT_NE(stored_as("only_old").find("past the project's retention"), std::string::npos);
  EXPECT_NE(stored_as("only_new").find("past the project's retention"), std::string::npos);
  EXPECT_EQ(Count(shop, "Signed up"), 0U);
}

}  // namespace
}  // namespace minpanel::service
