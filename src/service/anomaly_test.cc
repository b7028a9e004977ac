#include "service/anomaly.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/test_folder.h"
#include "core/time_units.h"
#include "service/access_keys_limits.h"
#include "service/watched_credentials.h"

namespace minpanel::service {
namespace {

// A Monday, 00:00 UTC.
constexpr int64_t kStartMs = 1'700'438'400'000;
constexpr std::string_view kKey = "mpk_0123456789abcdef";

class AnomalyTest : public ::testing::Test {
 protected:
  void TearDown() override { RemoveTestFolderUnlessFailed(folder_); }
  void SetUp() override {
    folder_ = TestFolder("anomaly");
    std::filesystem::remove_all(folder_);
    rules_.burst_exports = 0;
  }

  ExportObservation At(int64_t time_ms, uint64_t rows, std::string address = "a1") {
    ExportObservation observation;
    observation.key_id = std::string(kKey);
    observation.project_id = 1;
    observation.time_ms = time_ms;
    observation.rows = rows;
    observation.subjects = rows / 10;
    observation.address_hash = std::move(address);
    return observation;
  }

  // Eight days of one 100-row export a day at 09:00 and 15:00 UTC from "a1".
  KeyHistory UsualHistory() {
    KeyHistory history;
    for (int64_t day = 0; day < 8; ++day) {
      AddExport(rules_, At(kStartMs + day * kDayMs + 9 * kHourMs, 100), &history);
      AddExport(rules_, At(kStartMs + day * kDayMs + 15 * kHourMs, 100), &history);
    }
    return history;
  }

  std::vector<std::string> Rules(const std::vector<AnomalyAlert>& alerts) {
    std::vector<std::string> rules;
    for (const AnomalyAlert& alert : alerts) {
      rules.push_back(alert.rule);
    }
    return rules;
  }

  std::string folder_;
  AnomalyRules rules_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
};

TEST_F(AnomalyTest, UsualExportsRaiseNothing) {
  const KeyHistory history = UsualHistory();
  EXPECT_TRUE(
      EvaluateAnomalies(rules_, history, At(kStartMs + 8 * kDayMs + 9 * kHourMs, 120)).empty());
}

TEST_F(AnomalyTest, VolumeFiresOnceAsTheWindowCrossesTheFactor) {
  KeyHistory history = UsualHistory();
  // Usual: 1,500 rows over the 169 hours before the window, 213 a day; the
  // factor 10 puts the bound at 2,130 (the window holds 100 rows already).
  const int64_t now_ms = kStartMs + 8 * kDayMs + 9 * kHourMs;
  auto alerts = EvaluateAnomalies(rules_, history, At(now_ms, 1500));
  EXPECT_TRUE(alerts.empty());
  AddExport(rules_, At(now_ms, 1500), &history);
  alerts = EvaluateAnomalies(rules_, history, At(now_ms + 60'000, 1500));
  ASSERT_EQ(Rules(alerts), std::vector<std::string>{"volume"});
  EXPECT_NE(alerts[0].detail.find("3100 rows"), std::string::npos) << alerts[0].detail;
  EXPECT_NE(alerts[0].detail.find("usual 213 rows"), std::string::npos) << alerts[0].detail;
  AddExport(rules_, At(now_ms + 60'000, 1500), &history);
  EXPECT_TRUE(EvaluateAnomalies(rules_, history, At(now_ms + 120'000, 1500)).empty());
}

TEST_F(AnomalyTest, AnHourOfTheDayNeverUsedFires) {
  const KeyHistory history = UsualHistory();
  const auto alerts =
      EvaluateAnomalies(rules_, history, At(kStartMs + 8 * kDayMs + 3 * kHourMs, 10));
  ASSERT_EQ(Rules(alerts), std::vector<std::string>{"hours"});
  EXPECT_NE(alerts[0].detail.find("3:00 UTC"), std::string::npos);
}

TEST_F(AnomalyTest, ANewAddressFiresAndIsThenKnown) {
  KeyHistory history = UsualHistory();
  const int64_t now_ms = kStartMs + 8 * kDayMs + 15 * kHourMs;
  EXPECT_EQ(Rules(EvaluateAnomalies(rules_, history, At(now_ms, 10, "b2"))),
            std::vector<std::string>{"address"});
  AddExport(rules_, At(now_ms, 10, "b2"), &history);
  EXPECT_TRUE(EvaluateAnomalies(rules_, history, At(now_ms + 1000, 10, "b2")).empty());
  // The command line has no address: never "new".
  EXPECT_TRUE(EvaluateAnomalies(rules_, history, At(now_ms + 2000, 10, "")).empty());
}

TEST_F(AnomalyTest, RelativeRulesWaitForTheWarmUpAbsoluteOnesDoNot) {
  rules_.window_rows_max = 500;
  KeyHistory history;
  AddExport(rules_, At(kStartMs, 100), &history);
  // Day 3 of 7: a new address at a new hour and a huge volume raise only
  // the absolute rule.
  const auto alerts = EvaluateAnomalies(rules_, history, At(kStartMs + 3 * kDayMs, 9000, "b2"));
  EXPECT_EQ(Rules(alerts), std::vector<std::string>{"window_rows"});
  // Past the warm-up they all fire.
  const auto later =
      EvaluateAnomalies(rules_, history, At(kStartMs + 8 * kDayMs + 5 * kHourMs, 9000, "b2"));
  EXPECT_EQ(Rules(later), (std::vector<std::string>{"volume", "window_rows", "hours", "address"}));
}

TEST_F(AnomalyTest, TheNthSmallExportInTheBurstWindowFires) {
  rules_.burst_exports = 5;
  rules_.burst_window_s = 60;
  KeyHistory history;
  std::vector<std::string> fired;
  for (int export_idx = 0; export_idx < 7; ++export_idx) {
    const ExportObservation observation = At(kStartMs + export_idx * 5000, 3);
    for (const AnomalyAlert& alert : EvaluateAnomalies(rules_, history, observation)) {
      fired.push_back(alert.rule + "@" + std::to_string(export_idx));
    }
    AddExport(rules_, observation, &history);
  }
  EXPECT_EQ(fired, std::vector<std::string>{"burst@4"});
  // Spread out past the window, the same exports are no burst.
  KeyHistory slow;
  for (int export_idx = 0; export_idx < 7; ++export_idx) {
    const ExportObservation observation = At(kStartMs + export_idx * 20'000, 3);
    EXPECT_TRUE(EvaluateAnomalies(rules_, slow, observation).empty()) << export_idx;
    AddExport(rules_, observation, &slow);
  }
}

TEST_F(AnomalyTest, BeforeAnExportTheHourAddressAndBurstAreJudgedAndARefusalVetsThem) {
  rules_.burst_exports = 3;
  rules_.burst_window_s = 60;
  KeyHistory history = UsualHistory();
  const int64_t usual_ms = kStartMs + 8 * kDayMs + 9 * kHourMs;
  // A usual hour from the usual address: nothing; the size is not needed.
  BeforeExport judged = EvaluateBeforeExport(rules_, history, At(usual_ms, 0));
  EXPECT_TRUE(judged.alerts.empty());
  EXPECT_FALSE(judged.burst_alert.has_value());
  // Another hour, another address: both, before a row is known.
  const ExportObservation night = At(kStartMs + 8 * kDayMs + 3 * kHourMs, 0, "b2");
  judged = EvaluateBeforeExport(rules_, history, night);
  EXPECT_EQ(Rules(judged.alerts), (std::vector<std::string>{"hours", "address"}));
  // Refused, then vetted: the same export is not refused again, and no
  // export was counted.
  const auto total_rows = [](const KeyHistory& of) {
    uint64_t rows = 0;
    for (const auto& [hour, bucket] : of.hours) {
      rows += bucket.rows + bucket.exports;
    }
    return rows;
  };
  const uint64_t rows_before = total_rows(history);
  VetExport(rules_, night, false, &history);
  EXPECT_TRUE(EvaluateBeforeExport(rules_, history, night).alerts.empty());
  EXPECT_EQ(history.hours.at(night.time_ms / kHourMs).exports, 0u);
  EXPECT_EQ(total_rows(history), rows_before);
  // The third small export within the window would complete a burst: said
  // apart, since only a provably small export may be refused for it.
  KeyHistory bursty;
  for (int export_idx = 0; export_idx < 2; ++export_idx) {
    const ExportObservation small = At(kStartMs + export_idx * 5000, 3);
    EXPECT_FALSE(EvaluateBeforeExport(rules_, bursty, small).burst_alert.has_value());
    AddExport(rules_, small, &bursty);
  }
  judged = EvaluateBeforeExport(rules_, bursty, At(kStartMs + 10'000, 0));
  ASSERT_TRUE(judged.burst_alert.has_value());
  EXPECT_EQ(judged.burst_alert->rule, "burst");
  EXPECT_TRUE(judged.alerts.empty());  // a new key: the relative rules wait
  // Refused for it, the burst is crossed: the next small export is not its
  // third again.
  VetExport(rules_, At(kStartMs + 10'000, 0), true, &bursty);
  EXPECT_FALSE(
      EvaluateBeforeExport(rules_, bursty, At(kStartMs + 15'000, 0)).burst_alert.has_value());
}

TEST_F(AnomalyTest, HistoryOlderThanItsDaysIsDropped) {
  KeyHistory history = UsualHistory();
  AddExport(rules_, At(kStartMs + (kUsageHistoryDays + 5) * kDayMs, 1), &history);
  // Days 5 to 7 of the usual ones are within the 28 days, and the new one.
  EXPECT_EQ(history.hours.size(), 7u);
  EXPECT_GT(history.hours.begin()->first, (kStartMs + 5 * kDayMs) / kHourMs);
  EXPECT_EQ(history.first_ms, kStartMs + 9 * kHourMs);  // the key's age stays
}

TEST_F(AnomalyTest, AddressesAreCappedLeastRecentFirst) {
  KeyHistory history;
  for (size_t address_idx = 0; address_idx <= kKnownAddressesMax; ++address_idx) {
    AddExport(rules_,
              At(kStartMs + static_cast<int64_t>(address_idx) * kHourMs, 1,
                 "a" + std::to_string(address_idx)),
              &history);
  }
  EXPECT_EQ(history.addresses.size(), kKnownAddressesMax);
  EXPECT_FALSE(history.addresses.contains("a0"));
}

TEST_F(AnomalyTest, TheFileRoundTripsAndRefusesAnotherFormat) {
  const KeyHistory history = UsualHistory();
  const std::string text = KeyHistoryJson(kKey, history);
  auto parsed = ParseKeyHistory(text, "x.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->first_ms, history.first_ms);
  EXPECT_EQ(parsed->hours.size(), history.hours.size());
  EXPECT_EQ(parsed->addresses, history.addresses);
  EXPECT_EQ(ParseKeyHistory("{\"format\":\"other\"}", "x.json").status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(ParseKeyHistory("not json", "x.json").status().code(), StatusCode::kCorruption);
  // Times the rules could overflow on are refused.
  const std::string negative =
      "{\"format\":\"minpanel-key-usage\",\"version\":1,\"key\":\"k\",\"first_ms\":"
      "-9223372036854775808,\"hours\":[],\"addresses\":[]}";
  EXPECT_EQ(ParseKeyHistory(negative, "x.json").status().code(), StatusCode::kCorruption);
}

TEST_F(AnomalyTest, KeyUsagePersistsAndTheDayQuotaSurvivesARestart) {
  auto clock = std::make_shared<FakeClock>(kStartMs + 10 * kHourMs);
  KeyLimits limits;
  limits.export_rows_per_day = 100;
  {
    auto usage = std::make_shared<KeyUsage>(folder_, file_system_);
    KeyLimiter limiter(clock, usage);
    ASSERT_EQ(*limiter.ExportRowsLeft(std::string(kKey), limits), 100u);
    limiter.CountExport(std::string(kKey), 70, 7);
    EXPECT_TRUE(usage->Observe(rules_, At(clock->NowMs(), 70)).written.ok());
  }
  // A new process: the day's 70 rows come back from the file.
  auto usage = std::make_shared<KeyUsage>(folder_, file_system_);
  KeyLimiter limiter(clock, usage);
  EXPECT_EQ(*limiter.ExportRowsLeft(std::string(kKey), limits), 30u);
  // The next UTC day starts afresh.
  clock->Advance(kDayMs);
  EXPECT_EQ(*limiter.ExportRowsLeft(std::string(kKey), limits), 100u);
  EXPECT_TRUE(usage->Forget(std::string(kKey)).ok());
  EXPECT_FALSE(std::filesystem::exists(folder_ + "/" + std::string(kKey) + ".json"));
}

// A project secret has a history of its own, under a file name without a
// colon; nothing else that is not an access key id reaches a file name.
TEST_F(AnomalyTest, AProjectSecretHasAHistoryFileOfItsOwn) {
  EXPECT_TRUE(IsWatchedCredentialId("secret:1"));
  EXPECT_TRUE(IsWatchedCredentialId("secret:4294967295"));
  EXPECT_TRUE(IsWatchedCredentialId(kKey));
  for (const char* id : {"secret:", "secret:12345678901", "secret:1/../x", "secret:-1", "local",
                         "anomaly", "mpk_../../etc"}) {
    EXPECT_FALSE(IsWatchedCredentialId(id)) << id;
  }
  EXPECT_EQ(UsageFileNameOf("secret:7"), "secret-7");
  EXPECT_EQ(UsageFileNameOf(kKey), kKey);
  ExportObservation observation = At(kStartMs, 40);
  observation.key_id = "secret:7";
  {
    KeyUsage usage(folder_, file_system_);
    EXPECT_TRUE(usage.Observe(rules_, observation).written.ok());
    observation.key_id = "local";
    EXPECT_FALSE(usage.Observe(rules_, observation).written.ok());
  }
  const std::string path = folder_ + "/secret-7.json";
  ASSERT_TRUE(std::filesystem::exists(path));
  KeyUsage usage(folder_, file_system_);
  auto totals = usage.DayTotals("secret:7", kStartMs);
  ASSERT_TRUE(totals.ok()) << totals.status().ToString();
  EXPECT_EQ(totals->rows, 40u);
  EXPECT_TRUE(usage.Forget("secret:7").ok());
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(AnomalyTest, ConfigChecksNameTheKey) {
  AnomalyRules rules;
  rules.window_hours = 0;
  EXPECT_NE(CheckAnomalyRules(rules).message().find("anomaly.window_hours"), std::string::npos);
  rules = AnomalyRules{};
  rules.webhook = "ftp://example.test/hook";
  EXPECT_NE(CheckAnomalyRules(rules).message().find("anomaly.webhook"), std::string::npos);
  rules.webhook = "https://example.test/hook";
  EXPECT_TRUE(CheckAnomalyRules(rules).ok());
  rules.webhook_ca_file = "ca.pem";
  EXPECT_TRUE(CheckAnomalyRules(rules).ok());
  rules.webhook = "http://example.test/hook";
  EXPECT_NE(CheckAnomalyRules(rules).message().find("anomaly.webhook_ca_file"), std::string::npos);
  EXPECT_TRUE(CheckAnomalyRules(AnomalyRules{}).ok());
}

audit::AuditEntry AlertRecord(uint64_t seq, std::string_view act, std::string_view target,
                              std::string_view reason) {
  audit::AuditEntry record;
  record.seq = seq;
  record.time_ms = kStartMs + static_cast<int64_t>(seq);
  record.key = std::string(kAnomalyAuditKey);
  record.act = std::string(act);
  record.target = std::string(target);
  record.reason = std::string(reason);
  record.projects = {3};
  return record;
}

TEST(AlertListTest, AlertsAreReadFromTheirRecordsNewestFirstWithTheirSuspensions) {
  constexpr std::string_view kOther = "mpk_fedcba9876543210";
  const std::vector<audit::AuditEntry> records = {
      // A suspension whose alert fell outside what was read: ignored.
      AlertRecord(1, "key.suspend", kKey, "burst: 20 exports of at most 1000 rows in 600 s"),
      AlertRecord(2, "anomaly", kKey, "hours: an export at 03:00 UTC"),
      AlertRecord(3, "anomaly", kOther, "burst: 20 exports of at most 1000 rows in 600 s"),
      AlertRecord(4, "anomaly", kKey, "burst: 20 exports of at most 1000 rows in 600 s"),
      // Another key's record between an alert and its suspension.
      AlertRecord(5, "key.enable", kOther, ""),
      AlertRecord(6, "key.suspend", kKey, "burst: 20 exports of at most 1000 rows in 600 s"),
  };
  const std::vector<ListedAlert> alerts = AlertsOfRecords(records, 10);
  ASSERT_EQ(alerts.size(), 3u);
  EXPECT_EQ(alerts[0].seq, 4u);
  EXPECT_EQ(alerts[0].alert.rule, "burst");
  EXPECT_EQ(alerts[0].alert.detail, "20 exports of at most 1000 rows in 600 s");
  EXPECT_EQ(alerts[0].alert.project_id, 3u);
  EXPECT_EQ(alerts[0].alert.time_ms, kStartMs + 4);
  EXPECT_TRUE(alerts[0].alert.suspended);
  EXPECT_EQ(alerts[1].alert.key_id, kOther);
  EXPECT_FALSE(alerts[1].alert.suspended);
  EXPECT_EQ(alerts[2].alert.rule, "hours");
  EXPECT_FALSE(alerts[2].alert.suspended);
  // The limit keeps the newest.
  const std::vector<ListedAlert> newest = AlertsOfRecords(records, 1);
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(newest[0].seq, 4u);
}

TEST(AlertListTest, TheFilterNamesEachBadFieldAndBecomesAnAuditFilter) {
  AlertFilter filter;
  EXPECT_TRUE(CheckAlertFilter(filter).ok());
  filter.key_id = "secret:1";  // a project secret is watched too
  EXPECT_TRUE(CheckAlertFilter(filter).ok());
  for (const char* key : {"secret:one", "secret:", "local", "mpk_0123"}) {
    filter.key_id = key;
    EXPECT_NE(CheckAlertFilter(filter).message().find("key:"), std::string::npos) << key;
  }
  filter = AlertFilter{};
  filter.rule = "volumes";
  EXPECT_NE(CheckAlertFilter(filter).message().find("rule:"), std::string::npos);
  filter = AlertFilter{};
  filter.limit = kAlertsListedMax + 1;
  EXPECT_NE(CheckAlertFilter(filter).message().find("kAlertsListedMax"), std::string::npos);
  filter.limit = 0;
  EXPECT_NE(CheckAlertFilter(filter).message().find("limit:"), std::string::npos);
  filter = AlertFilter{};
  filter.from_ms = 2;
  filter.to_ms = 1;
  EXPECT_NE(CheckAlertFilter(filter).message().find("from_ms"), std::string::npos);

  filter = AlertFilter{};
  filter.key_id = std::string(kKey);
  filter.rule = "burst";
  filter.limit = 5;
  const audit::Filter audit_filter = AuditFilterOfAlerts(filter);
  EXPECT_EQ(audit_filter.key, kAnomalyAuditKey);
  EXPECT_EQ(audit_filter.target, kKey);
  EXPECT_EQ(audit_filter.limit, 10u);
  EXPECT_TRUE(audit::Matches(audit_filter, AlertRecord(1, "anomaly", kKey, "burst: 4 exports")));
  EXPECT_TRUE(
      audit::Matches(audit_filter, AlertRecord(2, "key.suspend", kKey, "burst: 4 exports")));
  EXPECT_FALSE(audit::Matches(audit_filter, AlertRecord(3, "anomaly", kKey, "hours: 03:00")));
}

}  // namespace
}  // namespace minpanel::service
