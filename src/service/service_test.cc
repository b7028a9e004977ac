// The service wired to the real ingest decoders, policy and embedded store,
// in one process: what the HTTP face relies on.
#include "service/service.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <utility>

#include <gtest/gtest.h>

#include "core/fault_file_system.h"

namespace minpanel::service {
namespace {

constexpr int64_t kNowMs = 1'795'685'260'000;  // 2026-11-26

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("minpanel-service-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    config_.data_folder = (root_ / "data").string();
    config_.key_folder = (root_ / "keys").string();
    Open();
    auto created = service_->projects().Create("demo", "UTC");
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    project_ = created->project;
    secret_ = created->secret;
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

  Result<IngestOutcome> Track(const std::string& json) {
    IngestRequest request;
    request.route = ingest::MixpanelRoute::kTrack;
    request.payload = json;
    return service_->IngestMixpanel(request);
  }

  Result<IngestOutcome> Import(const std::string& json, bool strict) {
    IngestRequest request;
    request.route = ingest::MixpanelRoute::kImport;
    request.payload = json;
    request.credentials.has_basic = true;
    request.credentials.basic_user = secret_;
    request.strict = strict;
    return service_->IngestMixpanel(request);
  }

  std::string Event(const std::string& name, const std::string& distinct_id,
                    const std::string& extra = "") {
    return "{\"event\":\"" + name + "\",\"properties\":{\"token\":\"" + project_.token +
           "\",\"distinct_id\":\"" + distinct_id + "\",\"time\":1795685200" + extra + "}}";
  }

  // Without decoys (as `minpanel export --no-watermark`), so that what
  // leaves is exactly what was stored.
  std::string ExportAll(std::optional<std::string> distinct_id = std::nullopt) {
    ExportOptions options;
    options.from_date = "2026-11-01";
    options.to_date = "2026-11-30";
    options.distinct_id = std::move(distinct_id);
    std::string out;
    Access local = LocalAccess(project_);
    local.route = std::string(kRouteCliNoWatermark);
    auto summary = service_->Export(local, options, [&](std::string_view chunk) {
      out.append(chunk);
      return true;
    });
    EXPECT_TRUE(summary.ok()) << summary.status().ToString();
    return out;
  }

  static size_t Lines(const std::string& text) {
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  }

  std::filesystem::path root_;
  Config config_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(kNowMs);
  std::unique_ptr<Service> service_;
  Project project_;
  std::string secret_;
};

TEST_F(ServiceTest, TrackedEventIsExportedUnderItsPseudonym) {
  auto outcome = Track(Event("Signed Up", "user-1", ",\"plan\":\"pro\",\"ip\":\"203.0.113.9\""));
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->stored, 1U);
  const std::string exported = ExportAll();
  auto subject = service_->Pseudonym(project_, "user-1");
  ASSERT_TRUE(subject.ok());
  EXPECT_NE(exported.find("\"distinct_id\":\"" + FormatPseudonym(*subject) + "\""),
            std::string::npos);
  EXPECT_NE(exported.find("\"plan\":\"pro\""), std::string::npos);
  EXPECT_NE(exported.find("\"time\":1795685200"), std::string::npos);
  EXPECT_EQ(exported.find("user-1"), std::string::npos);
  EXPECT_EQ(exported.find("203.0.113.9"), std::string::npos);
}

TEST_F(ServiceTest, UnknownTokenIsUnauthenticatedAndStoresNothing) {
  auto outcome = Track("{\"event\":\"x\",\"properties\":{\"token\":\"nope\",\"distinct_id\":\"u\"}}");
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(ExportAll(), "");
}

TEST_F(ServiceTest, OneBadRecordRefusesTheWholeNonStrictRequest) {
  auto outcome = Track("[" + Event("ok", "user-1") + "," + Event("bad", "undefined") + "]");
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(outcome.status().message().find("record 1"), std::string::npos);
  EXPECT_EQ(ExportAll(), "");
}

TEST_F(ServiceTest, StrictImportStoresValidRowsAndReportsTheRest) {
  auto outcome = Import("[" + Event("ok", "user-1") + "," + Event("bad", "undefined") + "]", true);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->stored, 1U);
  ASSERT_EQ(outcome->errors.size(), 1U);
  EXPECT_EQ(outcome->errors[0].index, 1U);
  EXPECT_EQ(Lines(ExportAll()), 1U);
}

TEST_F(ServiceTest, ImportNeedsTheSecretNotTheToken) {
  IngestRequest request;
  request.route = ingest::MixpanelRoute::kImport;
  const std::string payload = "[" + Event("e", "user-1") + "]";
  request.payload = payload;
  EXPECT_EQ(service_->IngestMixpanel(request).status().code(), StatusCode::kUnauthenticated);
  request.credentials.api_key = project_.token;
  EXPECT_EQ(service_->IngestMixpanel(request).status().code(), StatusCode::kUnauthenticated);
  request.credentials.api_key = secret_;
  EXPECT_TRUE(service_->IngestMixpanel(request).ok());
  request.credentials.project_id = "99";
  EXPECT_EQ(service_->IngestMixpanel(request).status().code(), StatusCode::kPermissionDenied);
}

TEST_F(ServiceTest, ImportAcceptsNewlineDelimitedJson) {
  auto outcome = Import(Event("a", "user-1") + "\n" + Event("b", "user-2") + "\n", false);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->stored, 2U);
}

TEST_F(ServiceTest, DuplicateInsertIdsAreStoredOnceAcrossRestart) {
  const std::string event = Event("e", "user-1", ",\"$insert_id\":\"abc-123\"");
  ASSERT_TRUE(Track(event).ok());
  auto again = Track(event);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates, 1U);
  Open();
  auto after_restart = Track(event);
  ASSERT_TRUE(after_restart.ok());
  EXPECT_EQ(after_restart->duplicates, 1U);
  EXPECT_EQ(Lines(ExportAll()), 1U);
}

TEST_F(ServiceTest, ReimportedExportKeepsSubjectsAndDeduplicates) {
  ASSERT_TRUE(Track(Event("e", "user-1", ",\"n\":1")).ok());
  const std::string exported = ExportAll();
  auto outcome = Import(exported, false);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->duplicates, 1U);
  EXPECT_EQ(ExportAll(), exported);
}

TEST_F(ServiceTest, CommandLineExportOfARangeCarriesDecoysUnlessAskedWithout) {
  std::string batch = "[";
  for (int user_idx = 0; user_idx < 10; ++user_idx) {
    batch += (user_idx == 0 ? "" : ",") + Event("e", "user-" + std::to_string(user_idx));
  }
  ASSERT_TRUE(Track(batch + "]").ok());
  ExportOptions options;
  options.from_date = "2026-11-01";
  options.to_date = "2026-11-30";
  std::string marked;
  auto summary = service_->Export(project_, options, [&](std::string_view chunk) {
    marked.append(chunk);
    return true;
  });
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_GE(summary->decoy_subjects, query::kDecoySubjectsMin);
  EXPECT_GT(Lines(marked), 10U);
  EXPECT_EQ(Lines(ExportAll()), 10U);          // --no-watermark
  EXPECT_EQ(Lines(ExportAll("user-3")), 1U);  // named subjects: never
}

TEST_F(ServiceTest, ProjectSecretsExportCarriesDecoysUnlessAskedWithoutWhichNoKeyMayAsk) {
  std::string batch = "[";
  for (int user_idx = 0; user_idx < 10; ++user_idx) {
    batch += (user_idx == 0 ? "" : ",") + Event("e", "user-" + std::to_string(user_idx));
  }
  ASSERT_TRUE(Track(batch + "]").ok());
  ExportOptions options;
  options.from_date = "2026-11-01";
  options.to_date = "2026-11-30";
  const auto export_as = [&](std::string_view key_id, std::string_view route) {
    Access access = LocalAccess(project_);
    access.principal.key_id = key_id;
    access.route = route;
    std::string text;
    auto summary = service_->Export(access, options, [&text](std::string_view chunk) {
      text.append(chunk);
      return true;
    });
    return std::make_pair(summary, Lines(text));
  };
  const std::string secret = std::string(kProjectSecretKeyPrefix) + std::to_string(project_.id);
  const auto [marked, marked_lines] = export_as(secret, "/api/2.0/export");
  ASSERT_TRUE(marked.ok()) << marked.status().ToString();
  EXPECT_GE(marked->decoy_subjects, query::kDecoySubjectsMin);
  EXPECT_GT(marked_lines, 10U);
  const auto [plain, plain_lines] = export_as(secret, kRouteApiExportNoWatermark);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->decoy_subjects, 0U);
  EXPECT_EQ(plain_lines, 10U);
  const auto [by_key, by_key_lines] = export_as("mpk_0123456789abcdef", kRouteApiExportNoWatermark);
  ASSERT_FALSE(by_key.ok());
  EXPECT_EQ(by_key.status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(by_key.status().message().starts_with("watermark: ")) << by_key.status().message();
  EXPECT_EQ(by_key_lines, 0U);
}

// A key's daily export quota counts real rows, and so does the export's
// cut at it: a quota of two exports' worth gives two whole exports (every
// stored row in each, the decoys on top), then refuses. Counting the decoys
// in the quota leaves the second export short of real rows; cutting at
// lines does too, since its decoys stand among the rows before the cut.
TEST_F(ServiceTest, AKeysExportQuotaCountsAndCutsRealRowsNotDecoys) {
  constexpr int kUsers = 200;
  for (int batch_idx = 0; batch_idx < kUsers / 50; ++batch_idx) {
    std::string batch = "[";
    for (int user_idx = batch_idx * 50; user_idx < (batch_idx + 1) * 50; ++user_idx) {
      batch += (batch.size() == 1 ? "" : ",") + Event("e", "user-" + std::to_string(user_idx));
    }
    ASSERT_TRUE(Track(batch + "]").ok());
  }
  std::vector<std::string> stored;
  const std::string plain = ExportAll();
  for (size_t start = 0; start < plain.size();) {
    const size_t end = plain.find('\n', start);
    stored.push_back(plain.substr(start, end - start + 1));
    start = end + 1;
  }
  ASSERT_EQ(stored.size(), static_cast<size_t>(kUsers));
  ExportOptions options;
  options.from_date = "2026-11-01";
  options.to_date = "2026-11-30";
  Access access = LocalAccess(project_);
  access.principal.key_id = "mpk_0123456789abcdef";
  access.route = "/api/2.0/export";
  access.principal.limits.export_rows_per_day = 2 * kUsers;
  for (int export_idx = 0; export_idx < 2; ++export_idx) {
    std::string text;
    auto summary = service_->Export(access, options, [&text](std::string_view chunk) {
      text.append(chunk);
      return true;
    });
    ASSERT_TRUE(summary.ok()) << summary.status().ToString();
    EXPECT_EQ(summary->rows, static_cast<uint64_t>(kUsers)) << export_idx;
    EXPECT_GT(summary->decoy_rows, 0U);
    EXPECT_EQ(Lines(text), kUsers + summary->decoy_rows) << export_idx;
    for (const std::string& line : stored) {
      EXPECT_NE(text.find(line), std::string::npos) << export_idx << ": " << line;
    }
  }
  auto refused = service_->Export(access, options, [](std::string_view) { return true; });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("export_rows_per_day"), std::string::npos)
      << refused.status().message();
}

// The anomaly rules watch the project secret as they watch an access key
// (its own history in key_usage/secret-N.json: its usual hours, addresses
// and bursts), but an alert never suspends it, even with `suspend` on, and
// never refuses its export: it is the credential that enables suspended
// keys (docs/security.md, "Anomaly rules").
TEST_F(ServiceTest, TheProjectSecretIsWatchedByTheAnomalyRulesButNeverSuspended) {
  std::string batch = "[";
  for (int user_idx = 0; user_idx < 30; ++user_idx) {
    batch += (user_idx == 0 ? "" : ",") + Event("e", "user-" + std::to_string(user_idx));
  }
  ASSERT_TRUE(Track(batch + "]").ok());
  AnomalyRules rules;
  rules.warmup_days = 0;
  rules.burst_exports = 3;
  rules.suspend = true;
  service_->SetAnomalyRules(rules);
  std::vector<AnomalyAlert> handled;
  service_->SetAlertHandler([&handled](const AnomalyAlert& alert) { handled.push_back(alert); });
  const std::string secret = std::string(kProjectSecretKeyPrefix) + std::to_string(project_.id);
  const auto export_from = [&](std::string_view address) {
    Access access = LocalAccess(project_);
    access.principal.key_id = secret;
    access.route = kRouteApiExportNoWatermark;
    access.client_address = address;
    ExportOptions options;
    options.from_date = "2026-11-01";
    options.to_date = "2026-11-30";
    options.reason = "anomaly test";
    uint64_t rows = 0;
    auto summary = service_->Export(access, options, [](std::string_view) { return true; });
    EXPECT_TRUE(summary.ok()) << summary.status().ToString();
    if (summary.ok()) {
      rows = summary->rows;
    }
    return rows;
  };
  const auto rules_of = [&handled, &secret] {
    std::vector<std::string> names;
    for (const AnomalyAlert& alert : handled) {
      EXPECT_EQ(alert.key_id, secret);
      EXPECT_FALSE(alert.suspended) << alert.rule;
      names.push_back(alert.rule);
    }
    handled.clear();
    return names;
  };
  EXPECT_EQ(export_from("192.0.2.1"), 30U);  // the first: its history starts
  EXPECT_TRUE(rules_of().empty());
  EXPECT_EQ(export_from("192.0.2.2"), 30U);  // a new address
  EXPECT_EQ(rules_of(), std::vector<std::string>{"address"});
  clock_->Advance(3 * 3'600'000);  // a new hour of the day; the burst window is past
  EXPECT_EQ(export_from("192.0.2.1"), 30U);
  EXPECT_EQ(rules_of(), std::vector<std::string>{"hours"});
  EXPECT_EQ(export_from("192.0.2.1"), 30U);
  EXPECT_TRUE(rules_of().empty());
  EXPECT_EQ(export_from("192.0.2.1"), 30U);  // the third small export in 600 s
  EXPECT_EQ(rules_of(), std::vector<std::string>{"burst"});
  // Still served, and listed as the secret's, active, never suspended.
  EXPECT_EQ(export_from("192.0.2.1"), 30U);
  AlertFilter filter;
  filter.key_id = secret;
  auto listed = service_->ReadAlerts(LocalAccess(project_), filter);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 3U);
  for (const ListedAlert& alert : *listed) {
    EXPECT_EQ(alert.alert.key_id, secret);
    EXPECT_EQ(alert.key_state, "active");
    EXPECT_FALSE(alert.alert.suspended);
  }
  EXPECT_EQ(listed->front().alert.rule, "burst");
  const std::filesystem::path history =
      root_ / "data" / "key_usage" / ("secret-" + std::to_string(project_.id) + ".json");
  EXPECT_TRUE(std::filesystem::exists(history)) << history;
  // The command line's exports (the operator's own, with the data folder)
  // are not watched.
  EXPECT_EQ(Lines(ExportAll()), 30U);
  EXPECT_TRUE(rules_of().empty());
}

// The records that open a read say what it asked, masked (audit_params.h),
// and the names a query gives are listed masked too: an event asked for by
// a name holding an email address is not recorded as it (issue 6). Here
// every query's opening record is written (audit_query_start_ms 0).
TEST_F(ServiceTest, AReadsOpeningRecordSaysWhatItAskedWithoutPersonalData) {
  config_.audit_query_start_ms = 0;
  Open();
  ASSERT_TRUE(Track(Event("Noted", "user-1")).ok());
  const std::string query =
      R"({"kind":"segmentation","from":"-30d","to":"now",)"
      R"("events":["Noted","Mailed jane@example.test"],)"
      R"("filters":[{"property":"distinct_id","op":"eq","value":"user-1"}]})";
  ASSERT_TRUE(service_->Query(project_, query).ok());
  ExportAll("user-1");
  audit::Filter filter;
  filter.limit = 100;
  auto records = service_->ReadAudit(LocalAccess(project_), filter);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  std::map<std::string, audit::AuditEntry> by_act;
  for (const audit::AuditEntry& record : *records) {
    by_act[record.act] = record;
    const std::string text = audit::EncodeEntry(record);
    EXPECT_EQ(text.find("jane@example.test"), std::string::npos) << text;
    EXPECT_EQ(text.find("user-1"), std::string::npos) << text;
  }
  const audit::AuditEntry& started = by_act["query.start"];
  EXPECT_EQ(started.params,
            R"({"kind":"segmentation","from":"-30d","to":"now",)"
            R"("events":["Noted","<masked:email>"],)"
            R"("filters":[{"property":"distinct_id","op":"eq","value":"<masked>"}]})");
  EXPECT_EQ(started.events, (std::vector<std::string>{"<masked:email>", "Noted"}));
  EXPECT_EQ(started.properties, (std::vector<std::string>{"distinct_id"}));
  EXPECT_EQ(by_act["query"].params, "");
  EXPECT_EQ(by_act["query"].events, started.events);
  EXPECT_EQ(by_act["export.start"].params,
            R"({"from_date":"2026-11-01","to_date":"2026-11-30","distinct_id":"<masked>"})");
  EXPECT_EQ(by_act["export"].params, "");
}

// A query answered before audit_query_start_ms is one record: `query`,
// with what it asked (masked) and what left; no `query.start`.
TEST_F(ServiceTest, AQuickQueryIsOneRecordWithWhatItAskedAndWhatLeft) {
  config_.audit_query_start_ms = audit::kDeferredStartMsMax;
  Open();
  ASSERT_TRUE(Track(Event("Noted", "user-1")).ok());
  const std::string query =
      R"({"kind":"segmentation","from":"-30d","to":"now",)"
      R"("events":["Noted","Mailed jane@example.test"]})";
  auto answer = service_->Query(project_, query);
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  audit::Filter filter;
  filter.limit = 100;
  auto records = service_->ReadAudit(LocalAccess(project_), filter);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  std::vector<audit::AuditEntry> reads;
  for (const audit::AuditEntry& record : *records) {
    if (record.act.starts_with("query")) {
      reads.push_back(record);
    }
  }
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].act, "query");
  EXPECT_EQ(reads[0].params,
            R"({"kind":"segmentation","from":"-30d","to":"now",)"
            R"("events":["Noted","<masked:email>"]})");
  EXPECT_EQ(reads[0].params_sha256, audit::Sha256Hex(query));
  EXPECT_EQ(reads[0].events, (std::vector<std::string>{"<masked:email>", "Noted"}));
  EXPECT_EQ(reads[0].bytes, answer->size());
  EXPECT_EQ(reads[0].outcome, "ok");
}

TEST_F(ServiceTest, FullDiskIsUnavailableThenRecovers) {
  file_system_->FailWritesAfterBytes(0);
  auto failed = Track(Event("e", "user-1"));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);
  file_system_->Reset();
  auto stored = Track(Event("e", "user-1"));
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->stored, 1U);
  EXPECT_EQ(Lines(ExportAll()), 1U);
}

TEST_F(ServiceTest, ExportFiltersByDistinctIdAndDates) {
  ASSERT_TRUE(Track("[" + Event("a", "user-1") + "," + Event("b", "user-2") + "]").ok());
  EXPECT_EQ(Lines(ExportAll("user-2")), 1U);
  ExportOptions options;
  options.from_date = "2026-12-01";
  options.to_date = "2026-12-31";
  uint64_t rows = 99;
  auto summary = service_->Export(project_, options, [](std::string_view) { return true; });
  ASSERT_TRUE(summary.ok());
  rows = summary->rows;
  EXPECT_EQ(rows, 0U);
  options.from_date = "2026-13-01";
  EXPECT_EQ(service_->Export(project_, options, [](std::string_view) { return true; })
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ServiceTest, AsyncIngestReportsOnceDurableAndEarlyFailuresAtOnce) {
  std::promise<Result<IngestOutcome>> stored_promise;
  const std::string payload = Event("e", "user-1");
  IngestRequest request;
  request.payload = payload;
  service_->IngestMixpanelAsync(request, [&](Result<IngestOutcome> outcome) {
    stored_promise.set_value(std::move(outcome));
  });
  const Result<IngestOutcome> stored = stored_promise.get_future().get();
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->stored, 1U);
  EXPECT_EQ(Lines(ExportAll()), 1U);

  bool called = false;
  request.payload = "{not json";
  service_->IngestMixpanelAsync(request, [&](Result<IngestOutcome> outcome) {
    called = true;
    EXPECT_EQ(outcome.status().code(), StatusCode::kInvalidArgument);
  });
  EXPECT_TRUE(called) << "a request refused before the store is answered on the caller's thread";

  file_system_->FailWritesAfterBytes(0);
  std::promise<Result<IngestOutcome>> failed_promise;
  const std::string other = Event("e", "user-2");
  request.payload = other;
  service_->IngestMixpanelAsync(request, [&](Result<IngestOutcome> outcome) {
    failed_promise.set_value(std::move(outcome));
  });
  EXPECT_EQ(failed_promise.get_future().get().status().code(), StatusCode::kUnavailable);
  file_system_->Reset();
  EXPECT_EQ(Lines(ExportAll()), 1U);
}

// Every protocol that carries person updates (Mixpanel /engage, PostHog's
// $set, Segment's identify traits) has them seen by the data map under its
// source and passed through the project's policy before they are stored:
// the plan kept, the email-like value redacted, nothing in clear.
TEST_F(ServiceTest, ProfileUpdatesOfEachProtocolPassTheDataMapAndThePolicy) {
  const std::string token = project_.token;
  IngestRequest engage;
  engage.route = ingest::MixpanelRoute::kEngage;
  const std::string engage_json =
      "[{\"$token\":\"" + token + "\",\"$distinct_id\":\"mp-user\",\"$time\":1795685200000," +
      "\"$set\":{\"plan\":\"plan-mixpanel\",\"contact\":\"mp.user@example.com\"}}]";
  engage.payload = engage_json;
  auto mixpanel = service_->IngestMixpanel(engage);
  ASSERT_TRUE(mixpanel.ok()) << mixpanel.status().ToString();
  EXPECT_EQ(mixpanel->stored, 1U);

  const auto wait = [](auto ingest) {
    std::promise<Result<IngestOutcome>> promise;
    ingest([&](Result<IngestOutcome> outcome) { promise.set_value(std::move(outcome)); });
    return promise.get_future().get();
  };
  const std::string capture_json =
      "{\"api_key\":\"" + token + "\",\"batch\":[{\"event\":\"$identify\",\"distinct_id\":" +
      "\"ph-user\",\"timestamp\":\"2026-11-26T09:00:00Z\",\"$set\":{\"plan\":\"plan-posthog\"," +
      "\"contact\":\"ph.user@example.com\"}}]}";
  PostHogIngestRequest capture;
  capture.payload = capture_json;
  const auto posthog = wait([&](Service::IngestCallback done) {
    service_->IngestPostHogAsync(capture, std::move(done));
  });
  ASSERT_TRUE(posthog.ok()) << posthog.status().ToString();

  const std::string identify_json =
      "{\"userId\":\"sg-user\",\"timestamp\":\"2026-11-26T09:00:00Z\",\"traits\":{\"plan\":"
      "\"plan-segment\",\"contact\":\"sg.user@example.com\"}}";
  SegmentIngestRequest identify;
  identify.payload = identify_json;
  identify.call = ingest::SegmentCall::kIdentify;
  identify.write_key = token;
  const auto segment = wait([&](Service::IngestCallback done) {
    service_->IngestSegmentAsync(identify, std::move(done));
  });
  ASSERT_TRUE(segment.ok()) << segment.status().ToString();

  for (const auto& [id, plan] : {std::pair{"mp-user", "plan-mixpanel"},
                                 std::pair{"ph-user", "plan-posthog"},
                                 std::pair{"sg-user", "plan-segment"}}) {
    SubjectSelection selection;
    selection.distinct_ids = {id};
    auto document = service_->AccessRequest(LocalAccess(project_), selection);
    ASSERT_TRUE(document.ok()) << document.status().ToString();
    EXPECT_NE(document->find(std::string("\"") + plan + "\""), std::string::npos)
        << id << ": " << *document;
    EXPECT_EQ(document->find("@example.com"), std::string::npos) << id << ": " << *document;
  }

  auto map = service_->DataMapOf(LocalAccess(project_));
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  std::set<std::string> sources;
  uint64_t plan_updates = 0;
  for (const SeenItem& item : map->items) {
    if (item.kind == "source") {
      sources.insert(item.name);
    } else if (item.kind == "profile" && item.name == "plan") {
      plan_updates += item.volume;
    }
  }
  EXPECT_EQ(sources.count("posthog capture"), 1U);
  EXPECT_EQ(sources.count("segment"), 1U);
  EXPECT_EQ(sources.size(), 3U) << "and Mixpanel's /engage";
  EXPECT_EQ(plan_updates, 3U);
}

TEST_F(ServiceTest, RotatedKeyIsUsedAfterReloadAndGivesANewSubject) {
  ASSERT_TRUE(Track(Event("Before", "user-1")).ok());
  auto before = service_->Pseudonym(project_, "user-1");
  ASSERT_TRUE(before.ok());

  // As `minpanel project rotate-key` does it: from outside the Service.
  auto rotated = RotateProjectKey(config_, NewPosixFileSystem(), clock_, "demo", false);
  ASSERT_TRUE(rotated.ok()) << rotated.status().ToString();
  EXPECT_EQ(rotated->project.id, project_.id);
  EXPECT_EQ(rotated->rotation.old_version, 1U);
  EXPECT_EQ(rotated->rotation.new_version, 2U);
  EXPECT_EQ(*service_->Pseudonym(project_, "user-1"), *before)
      << "the cached key stays in force until Reload";

  ASSERT_TRUE(service_->Reload().ok());
  auto after = service_->Pseudonym(project_, "user-1");
  ASSERT_TRUE(after.ok());
  EXPECT_NE(*after, *before);
  ASSERT_TRUE(Track(Event("After", "user-1", ",\"$insert_id\":\"after-1\"")).ok());
  const std::string exported = ExportAll();
  EXPECT_NE(exported.find("\"distinct_id\":\"" + FormatPseudonym(*before) + "\""),
            std::string::npos);
  EXPECT_NE(exported.find("\"distinct_id\":\"" + FormatPseudonym(*after) + "\""),
            std::string::npos);
  EXPECT_EQ(Lines(ExportAll("user-1")), 1U) << "a raw id finds the events of the current key";
}

TEST_F(ServiceTest, RotatingTheKeyOfAnUnknownOrUnusedProjectIsNotFound) {
  auto unknown = RotateProjectKey(config_, NewPosixFileSystem(), clock_, "nope", false);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("no project named 'nope'"), std::string::npos);
  auto unused = RotateProjectKey(config_, NewPosixFileSystem(), clock_, "demo", false);
  ASSERT_FALSE(unused.ok());
  EXPECT_EQ(unused.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unused.status().message().find("no pseudonym key yet"), std::string::npos);
}

TEST_F(ServiceTest, SecondProcessOnTheSameDataFolderIsRefused) {
  auto second = Service::Open(config_, file_system_, clock_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace minpanel::service

namespace minpanel::service {
namespace {

class PreviewTest : public ServiceTest {};

TEST_F(PreviewTest, ShowsWhatWouldBeStoredAndWhyAndStoresNothing) {
  auto preview = service_->PreviewPolicy(
      project_, "{\"event\":\"Signed up\",\"properties\":{\"distinct_id\":\"user-1\","
                "\"time\":1795685200,\"$email\":\"a@example.test\","
                "\"note\":\"card 4111 1111 1111 1111\",\"plan\":\"pro\"}}");
  ASSERT_TRUE(preview.ok()) << preview.status().ToString();
  EXPECT_NE(preview->find("\"note\":\"card [card]\""), std::string::npos) << *preview;
  EXPECT_NE(preview->find("{\"field\":\"properties.$email\",\"change\":\"dropped\","
                          "\"by\":\"named for a person\"}"),
            std::string::npos)
      << *preview;
  EXPECT_NE(preview->find("\"by\":\"detectors; detector: card\""), std::string::npos);
  EXPECT_EQ(preview->find("user-1"), std::string::npos);
  EXPECT_EQ(Lines(ExportAll()), 0U) << "a preview stores nothing";
}

TEST_F(PreviewTest, ProjectPolicyFileIsAppliedAfterReload) {
  std::filesystem::create_directories(root_ / "data" / "policies");
  std::ofstream(root_ / "data" / "policies" / "demo.toml")
      << "[[rule]]\nmatch = \"note\"\naction = \"drop\"\n";
  auto notes = service_->Reload();
  ASSERT_TRUE(notes.ok()) << notes.status().ToString();
  EXPECT_TRUE(notes->empty());
  auto preview = service_->PreviewPolicy(
      project_, "{\"event\":\"e\",\"properties\":{\"distinct_id\":\"u\",\"time\":1795685200,"
                "\"note\":\"hello\"}}");
  ASSERT_TRUE(preview.ok());
  EXPECT_NE(preview->find("\"policy_version\":1"), std::string::npos) << *preview;
  EXPECT_NE(preview->find("\"by\":\"rule at line 1 (note)\""), std::string::npos) << *preview;
}

TEST_F(PreviewTest, RuleMatchesAreCountedByProjectAndLine) {
  std::filesystem::create_directories(root_ / "data" / "policies");
  std::ofstream(root_ / "data" / "policies" / "demo.toml")
      << "# comment\n[[rule]]\nmatch = \"debug.*\"\naction = \"drop\"\n";
  ASSERT_TRUE(service_->Reload().ok());
  ASSERT_TRUE(Track("[" + Event("a", "user-1", ",\"debug\":{\"x\":1,\"y\":2}") + "," +
                    Event("b", "user-1") + "]")
                  .ok());
  const ServiceMetrics metrics = service_->GetMetrics();
  ASSERT_EQ(metrics.rule_matches.size(), 1U);
  EXPECT_EQ(metrics.rule_matches[0].project, "demo");
  EXPECT_EQ(metrics.rule_matches[0].line, 2);
  EXPECT_EQ(metrics.rule_matches[0].pattern, "debug.*");
  EXPECT_EQ(metrics.rule_matches[0].action, "drop");
  EXPECT_EQ(metrics.rule_matches[0].matches, 2U);
}

class PolicyApiTest : public ServiceTest {};

TEST_F(PolicyApiTest, PutPolicyIsInForceAtOnceAndRecorded) {
  const PolicyInForce before = service_->GetPolicy(project_);
  EXPECT_EQ(before.version, 0U);
  EXPECT_TRUE(before.is_default);
  EXPECT_EQ(before.text, "");

  const std::string text = "[[rule]]\nmatch = \"note\"\naction = \"drop\"\n";
  auto update = service_->PutPolicy(project_, text);
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  EXPECT_EQ(update->version, 1U);
  EXPECT_TRUE(update->new_version);
  ASSERT_FALSE(update->notes.empty());
  EXPECT_NE(update->notes[0].find("version 1 is in force"), std::string::npos);

  ASSERT_TRUE(Track(Event("Noted", "user-1", ",\"note\":\"hello\",\"plan\":\"pro\"")).ok());
  const std::string exported = ExportAll();
  EXPECT_EQ(exported.find("\"note\""), std::string::npos) << exported;
  EXPECT_NE(exported.find("\"plan\":\"pro\""), std::string::npos) << exported;

  const PolicyInForce now = service_->GetPolicy(project_);
  EXPECT_EQ(now.version, 1U);
  EXPECT_FALSE(now.is_default);
  EXPECT_EQ(now.text, text);
  auto history = service_->PolicyHistory(project_);
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 1U);
  EXPECT_EQ((*history)[0].version, 1U);
  EXPECT_EQ((*history)[0].recorded_ms, kNowMs);
  EXPECT_EQ((*history)[0].bytes, text.size());
  EXPECT_EQ(*service_->PolicyVersionText(project_, 1), text);
  EXPECT_EQ(service_->PolicyVersionText(project_, 2).status().code(), StatusCode::kNotFound);
}

TEST_F(PolicyApiTest, SameTextTwiceIsOneVersion) {
  ASSERT_TRUE(service_->PutPolicy(project_, "ip = \"drop\"\n").ok());
  auto again = service_->PutPolicy(project_, "ip = \"drop\"\n");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->version, 1U);
  EXPECT_FALSE(again->new_version);
  EXPECT_NE(again->notes[0].find("no new version"), std::string::npos);
  EXPECT_EQ(service_->PolicyHistory(project_)->size(), 1U);
}

TEST_F(PolicyApiTest, RefusedPolicyNamesTheProblemAndKeepsTheOneInForce) {
  ASSERT_TRUE(service_->PutPolicy(project_, "ip = \"drop\"\n").ok());
  auto refused = service_->PutPolicy(project_, "ip = \"hide\"\n");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), CheckPolicyText("ip = \"hide\"\n").status().message())
      << "the same checks as minpanel policy check";
  EXPECT_EQ(service_->GetPolicy(project_).version, 1U);
  EXPECT_EQ(service_->GetPolicy(project_).text, "ip = \"drop\"\n");
}

TEST_F(PolicyApiTest, NotesNameWhatThePolicyKeepsInClear) {
  auto update = service_->PutPolicy(
      project_,
      "ip = \"keep\"\ndetectors = false\n[[rule]]\nmatch = \"support_email\"\naction = \"keep\"\n");
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  std::string all;
  for (const std::string& note : update->notes) {
    all += note + "\n";
  }
  EXPECT_NE(all.find("ip = \"keep\": stored as sent"), std::string::npos) << all;
  EXPECT_NE(all.find("detectors = false"), std::string::npos) << all;
  EXPECT_NE(all.find("rule at line 3 keeps 'support_email'"), std::string::npos) << all;
  EXPECT_EQ(all.find("user_agent"), std::string::npos) << all;
}

TEST_F(PolicyApiTest, ReloadAfterPutKeepsThePutVersion) {
  ASSERT_TRUE(service_->PutPolicy(project_, "ip = \"drop\"\n").ok());
  EXPECT_FALSE(service_->PutPolicy(project_, "ip = 3\n").ok());
  auto notes = service_->Reload();
  ASSERT_TRUE(notes.ok());
  EXPECT_TRUE(notes->empty());
  EXPECT_EQ(service_->GetPolicy(project_).version, 1U);
  Open();  // a restart reads the file the PUT wrote
  EXPECT_EQ(service_->GetPolicy(project_).version, 1U);
  EXPECT_EQ(service_->PolicyHistory(project_)->size(), 1U);
}

// Every read's audit record names the policy version in force when it ran
// (0: the built-in default); admin acts name none.
TEST_F(PolicyApiTest, ReadRecordsNameThePolicyVersionInForce) {
  config_.audit_query_start_ms = 0;  // both of a query's records
  Open();
  ASSERT_TRUE(Track(Event("Noted", "user-1", ",\"plan\":\"pro\"")).ok());
  const std::string query =
      "{\"kind\":\"segmentation\",\"from\":\"-30d\",\"to\":\"now\",\"events\":[\"Noted\"]}";
  ASSERT_TRUE(service_->Query(project_, query).ok());
  ExportAll();
  ASSERT_TRUE(service_->PutPolicy(project_, "ip = \"drop\"\n").ok());
  ASSERT_TRUE(service_->Query(project_, query).ok());
  ExportAll();
  ASSERT_TRUE(service_->LiveEvents(LocalAccess(project_), 5).ok());
  audit::Filter filter;
  filter.limit = 100;
  auto records = service_->ReadAudit(LocalAccess(project_), filter);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  std::vector<std::string> reads;
  for (const audit::AuditEntry& record : *records) {
    if (record.act == "audit.read" || record.act.starts_with("key.")) {
      EXPECT_FALSE(record.policy_version.has_value()) << record.act;
      continue;
    }
    ASSERT_TRUE(record.policy_version.has_value()) << record.act;
    reads.push_back(record.act + " " + std::to_string(*record.policy_version));
  }
  EXPECT_EQ(reads, (std::vector<std::string>{"query.start 0", "query 0", "export.start 0",
                                             "export 0", "query.start 1", "query 1",
                                             "export.start 1", "export 1", "events.live 1"}));
}

}  // namespace
}  // namespace minpanel::service
