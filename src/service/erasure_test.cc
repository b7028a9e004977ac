// Erasure, access requests and the GDPR task registry on a real Service
// (store, policy, audit log) in one process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "audit/subjects_rewrite.h"
#include "incident/incident.h"
#include "service/backup.h"
#include "service/gdpr_tasks.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

class ErasureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("minpanel-erasure-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    config_.data_folder = (root_ / "data").string();
    config_.key_folder = (root_ / "keys").string();
    auto service = Service::Open(config_, file_system_, clock_);
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    service_ = std::move(service).value();
    auto created = service_->projects().Create("demo", "UTC");
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    project_ = created->project;
  }
  void TearDown() override {
    service_.reset();
    std::filesystem::remove_all(root_);
  }

  void Store(const std::vector<std::string>& records) {
    std::vector<std::string_view> views(records.begin(), records.end());
    auto outcome = service_->ImportEvents(project_, views);
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    ASSERT_TRUE(outcome->errors.empty());
  }
  static std::string Record(const std::string& name, const std::string& distinct_id, int seq,
                            const std::string& extra = "") {
    return "{\"event\":\"" + name + "\",\"properties\":{\"distinct_id\":\"" + distinct_id +
           "\",\"time\":" + std::to_string(1795685200 + seq) + extra + "}}";
  }
  std::string Held(const std::vector<std::string>& ids, bool linked = true) {
    SubjectSelection selection;
    selection.distinct_ids = ids;
    selection.linked = linked;
    auto document = service_->AccessRequest(LocalAccess(project_), selection);
    EXPECT_TRUE(document.ok()) << document.status().ToString();
    return document.ok() ? *document : "";
  }
  // A Mixpanel /engage $set of `plan` for `distinct_id` at `seq` (as Record).
  void Engage(const std::string& distinct_id, int seq, const std::string& plan) {
    const std::string json = "[{\"$token\":\"" + project_.token + "\",\"$distinct_id\":\"" +
                             distinct_id + "\",\"$time\":" + std::to_string(1795685200 + seq) +
                             ",\"$set\":{\"plan\":\"" + plan + "\"}}]";
    IngestRequest request;
    request.route = ingest::MixpanelRoute::kEngage;
    request.payload = json;
    auto outcome = service_->IngestMixpanel(request);
    ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
    ASSERT_EQ(outcome->stored, 1U);
  }
  // The policy_version of the profile update in `held` that sets `plan`.
  static std::string PolicyVersionOfPlan(const std::string& held, const std::string& plan) {
    const size_t at = held.find("\"properties\":{\"plan\":\"" + plan + "\"}");
    const size_t start = held.rfind("{\"subject\":", at);
    if (at == std::string::npos || start == std::string::npos) {
      return "(no update)";
    }
    const std::string update = held.substr(start, at - start);
    const size_t field = update.find("\"policy_version\":");
    if (field == std::string::npos) {
      return "(no field)";
    }
    const size_t value = field + std::string("\"policy_version\":").size();
    return update.substr(value, update.find(',', value) - value);
  }
  static size_t Count(const std::string& text, const std::string& needle) {
    size_t count = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
      ++count;
    }
    return count;
  }

  // Without decoys (as `minpanel export --no-watermark`): its subject file
  // lists exactly the stored subjects.
  void ExportAll() {
    ExportOptions options;
    options.from_date = "2026-11-01";
    options.to_date = "2026-11-30";
    Access local = LocalAccess(project_);
    local.route = std::string(kRouteCliNoWatermark);
    auto summary = service_->Export(local, options, [](std::string_view) { return true; });
    ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  }
  std::string AuditFolder() const { return config_.data_folder + "/audit"; }
  std::vector<std::string> SubjectFiles() {
    auto names = file_system_->ListDirectory(AuditFolder() + "/subjects");
    EXPECT_TRUE(names.ok()) << names.status().ToString();
    return names.ok() ? *names : std::vector<std::string>{};
  }
  std::string PseudonymOf(const std::string& distinct_id) {
    auto subject = service_->Pseudonym(project_, distinct_id);
    EXPECT_TRUE(subject.ok()) << subject.status().ToString();
    return subject.ok() ? FormatPseudonym(*subject) : "";
  }
  Result<incident::BlastRadius> Blast(bool verify_chain) {
    incident::BlastOptions options;
    options.audit_folder = AuditFolder();
    options.key = "local";
    options.verify_chain = verify_chain;
    return incident::ComputeBlastRadius(options, *file_system_);
  }
  static bool Warned(const incident::BlastRadius& blast, const std::string& words) {
    return std::any_of(blast.warnings.begin(), blast.warnings.end(),
                       [&](const incident::Warning& warning) {
                         return warning.message.find(words) != std::string::npos;
                       });
  }

  std::filesystem::path root_;
  Config config_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(1'795'685'260'000);
  std::unique_ptr<Service> service_;
  Project project_;
};

TEST(ParseSubjectSelectionTest, NamesTheFieldOrLimitAtFault) {
  EXPECT_EQ(ParseSubjectSelection("[]", 10, "kLimit").status().code(),
            StatusCode::kInvalidArgument);
  auto empty = ParseSubjectSelection(R"({"distinct_ids":[]})", 10, "kLimit");
  EXPECT_NE(empty.status().message().find("distinct_ids"), std::string::npos);
  auto number = ParseSubjectSelection(R"({"distinct_ids":[1]})", 10, "kLimit");
  EXPECT_EQ(number.status().code(), StatusCode::kInvalidArgument);
  auto many = ParseSubjectSelection(R"({"distinct_ids":["a","b","c"]})", 2, "kLimit");
  EXPECT_EQ(many.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(many.status().message().find("kLimit"), std::string::npos);
  auto purge = ParseSubjectSelection(R"({"distinct_ids":["a"],"purge":"later"})", 2, "kLimit");
  EXPECT_NE(purge.status().message().find("purge"), std::string::npos);
  auto linked = ParseSubjectSelection(R"({"distinct_ids":["a"],"linked":"no"})", 2, "kLimit");
  EXPECT_NE(linked.status().message().find("linked"), std::string::npos);
  auto good = ParseSubjectSelection(R"({"distinct_ids":["a","b"],"linked":false,"purge":"now"})", 2,
                                    "kLimit");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->distinct_ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(good->linked);
  EXPECT_TRUE(good->purge_now);
}

TEST_F(ErasureTest, SubjectInStoreCountsEventsByNameWithTheirTimesAndNothingOnceErased) {
  Store({Record("Viewed", "user-1", 1), Record("Viewed", "user-1", 7),
         Record("Signed up", "user-1", 4), Record("Viewed", "user-2", 5)});
  auto subject = service_->Pseudonym(project_, "user-1");
  ASSERT_TRUE(subject.ok()) << subject.status().ToString();
  auto stored = service_->SubjectInStore(project_, {*subject});
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->events, 3U);
  EXPECT_EQ(stored->first_event_ms, (1795685200LL + 1) * 1000);
  EXPECT_EQ(stored->last_event_ms, (1795685200LL + 7) * 1000);
  EXPECT_EQ(stored->events_by_name,
            (std::map<std::string, uint64_t>{{"Signed up", 1}, {"Viewed", 2}}));

  SubjectSelection selection;
  selection.distinct_ids = {"user-1"};
  ASSERT_TRUE(service_->Erase(LocalAccess(project_), selection).ok());
  auto erased = service_->SubjectInStore(project_, {*subject});
  ASSERT_TRUE(erased.ok());
  EXPECT_EQ(erased->events, 0U);
  EXPECT_TRUE(erased->events_by_name.empty());
  EXPECT_EQ(erased->first_event_ms, 0);
}

// Each event of an access request names the policy version that shaped it,
// recorded when it was stored: an /import of history after a policy change
// has client times from before the change, so the versions' start times
// alone would name the wrong version for it.
TEST_F(ErasureTest, AccessRequestGivesEachEventThePolicyVersionThatShapedIt) {
  Store({Record("Before", "user-1", 10), Record("Before", "user-1", 11)});
  auto update = service_->PutPolicy(project_, "ip = \"drop\"\n");
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  ASSERT_EQ(update->version, 1U);
  // Client times earlier than the first events', stored after the change.
  Store({Record("After", "user-1", 1), Record("After", "user-1", 2), Record("After", "user-1", 3)});
  const std::string held = Held({"user-1"});
  EXPECT_EQ(Count(held, "\"event\":\"Before\""), 2U) << held;
  EXPECT_EQ(Count(held, "\"event\":\"After\""), 3U) << held;
  EXPECT_EQ(Count(held, "\"policy_version\":0}"), 2U) << held;
  EXPECT_EQ(Count(held, "\"policy_version\":1}"), 3U) << held;
  // Each line of the events array is one event; its version follows it.
  for (size_t at = held.find("\"event\":\""); at != std::string::npos;
       at = held.find("\"event\":\"", at + 1)) {
    const size_t end = held.find('\n', at);
    const std::string line = held.substr(at, end == std::string::npos ? std::string::npos : end - at);
    const bool after = line.starts_with("\"event\":\"After\"");
    EXPECT_NE(line.find(after ? "\"policy_version\":1}" : "\"policy_version\":0}"), std::string::npos)
        << line;
  }
}

// Each profile update names the policy version in force when it was
// minimised (docs/privacy.md, "Access request"): one sent before a policy
// change the old, one after it — with an earlier $time — the new; through
// a restart, the purge's rewrite of the profile file and a restore that
// re-applies a later erasure.
TEST_F(ErasureTest, AccessRequestGivesEachProfileUpdateThePolicyVersionThatShapedIt) {
  Engage("user-1", 10, "before");
  Engage("user-2", 11, "other");
  auto update = service_->PutPolicy(project_, "ip = \"drop\"\n");
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  ASSERT_EQ(update->version, 1U);
  Engage("user-1", 1, "after");  // an earlier client time, stored after the change
  Engage("user-3", 12, "third");
  const auto expect_versions = [&](std::string_view stage) {
    const std::string held = Held({"user-1"});
    EXPECT_EQ(Count(held, "\"policy_version\":"), 2U) << stage << ": " << held;
    EXPECT_EQ(PolicyVersionOfPlan(held, "before"), "0") << stage << ": " << held;
    EXPECT_EQ(PolicyVersionOfPlan(held, "after"), "1") << stage << ": " << held;
  };
  expect_versions("stored");
  EXPECT_EQ(PolicyVersionOfPlan(Held({"user-3"}), "third"), "1");
  const std::string backup = (root_ / "backup").string();
  const std::string keys_backup = (root_ / "backup-keys").string();
  ASSERT_TRUE(BackupDataFolder(config_, backup, *clock_).ok());
  ASSERT_TRUE(BackupKeys(config_, keys_backup).ok());

  service_.reset();  // a restart: the updates move into the profile file
  auto reopened = Service::Open(config_, file_system_, clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  service_ = std::move(reopened).value();
  expect_versions("after a restart");
  SubjectSelection selection;
  selection.distinct_ids = {"user-2"};
  selection.purge_now = true;  // the profile file rewritten without user-2's update
  auto erased = service_->Erase(LocalAccess(project_), selection);
  ASSERT_TRUE(erased.ok()) << erased.status().ToString();
  ASSERT_TRUE(erased->purged);
  expect_versions("after the purge's rewrite");
  EXPECT_EQ(PolicyVersionOfPlan(Held({"user-2"}), "other"), "(no update)");
  EXPECT_EQ(PolicyVersionOfPlan(Held({"user-3"}), "third"), "1");

  Config restored = config_;
  restored.data_folder = (root_ / "restored" / "data").string();
  restored.key_folder = (root_ / "restored" / "keys").string();
  RestoreOptions options;
  options.from = backup;
  options.keys_from = keys_backup;
  options.erasures_from = config_.data_folder;
  options.erasures_keys_from = config_.key_folder;
  service_.reset();
  auto summary = RestoreDataFolder(restored, options, clock_);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->erasures_reapplied, 1U);
  config_ = restored;
  auto opened = Service::Open(config_, file_system_, clock_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  service_ = std::move(opened).value();
  expect_versions("restored");
  EXPECT_EQ(PolicyVersionOfPlan(Held({"user-2"}), "other"), "(no update)");
  EXPECT_EQ(PolicyVersionOfPlan(Held({"user-3"}), "third"), "1");
}

TEST_F(ErasureTest, ErasesThePersonAndTheIdsMergedIntoItKeepingOthers) {
  Store({Record("Viewed", "anon-1", 1), Record("Viewed", "anon-1", 2),
         Record("$identify", "user-1", 3, ",\"$anon_distinct_id\":\"anon-1\""),
         Record("Viewed", "user-1", 4), Record("Viewed", "user-2", 5)});
  const std::string before = Held({"user-1"});
  EXPECT_EQ(Count(before, "\"event\":"), 4U) << before;
  EXPECT_EQ(before.find("user-1"), std::string::npos) << "no raw id in the document";

  SubjectSelection selection;
  selection.distinct_ids = {"user-1"};
  selection.purge_now = true;
  auto erased = service_->Erase(LocalAccess(project_), selection);
  ASSERT_TRUE(erased.ok()) << erased.status().ToString();
  EXPECT_EQ(erased->subjects, 2U);
  EXPECT_EQ(erased->linked_subjects, 1U);
  EXPECT_TRUE(erased->purged);
  EXPECT_EQ(erased->reference.size(), 64U);

  EXPECT_EQ(Count(Held({"user-1"}), "\"event\":"), 0U);
  EXPECT_EQ(Count(Held({"anon-1"}, false), "\"event\":"), 0U);
  EXPECT_EQ(Count(Held({"user-2"}), "\"event\":"), 1U);

  // The audit record: a count and the keyed reference, no pseudonym.
  audit::Filter filter;
  filter.act = "erase";
  auto records = service_->ReadAudit(LocalAccess(project_), filter);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ASSERT_EQ(records->size(), 1U);
  EXPECT_EQ((*records)[0].subjects, 2U);
  EXPECT_EQ((*records)[0].params_sha256, erased->reference);
  const std::string encoded = audit::EncodeEntry((*records)[0]);
  auto subject = service_->Pseudonym(project_, "user-1");
  ASSERT_TRUE(subject.ok());
  EXPECT_EQ(encoded.find(subject->ToHex()), std::string::npos);
}

TEST(ParsePropertyPurgeTest, NamesTheFieldOrLimitAtFault) {
  const auto refused = [](std::string_view body, StatusCode code, std::string_view named) {
    auto request = ParsePropertyPurge(body);
    ASSERT_FALSE(request.ok()) << body;
    EXPECT_EQ(request.status().code(), code) << body;
    EXPECT_NE(request.status().message().find(named), std::string::npos)
        << request.status().message();
  };
  refused("[]", StatusCode::kInvalidArgument, "body");
  refused("{}", StatusCode::kInvalidArgument, "key");
  refused(R"({"key":""})", StatusCode::kInvalidArgument, "key");
  refused(R"({"key":7})", StatusCode::kInvalidArgument, "key");
  refused("{\"key\":\"" + std::string(256, 'k') + "\"}", StatusCode::kInvalidArgument,
          "kDeletionPropertyKeyBytesMax");
  refused(R"({"key":"a","event":""})", StatusCode::kInvalidArgument, "event");
  refused("{\"key\":\"a\",\"event\":\"" + std::string(256, 'e') + "\"}",
          StatusCode::kInvalidArgument, "kDeletionEventNameBytesMax");
  refused(R"({"key":"a","purge":"soon"})", StatusCode::kInvalidArgument, "purge");
  refused(R"({"key":"a","keys":["b"]})", StatusCode::kInvalidArgument, "keys");
  refused("{\"key\":\"a\",\"pad\":\"" + std::string(kPropertyPurgeBodyBytesMax, 'x') + "\"}",
          StatusCode::kResourceExhausted, "kPropertyPurgeBodyBytesMax");
  auto request = ParsePropertyPurge(R"({"key":"note","event":"Searched","purge":"now"})");
  ASSERT_TRUE(request.ok()) << request.status().ToString();
  EXPECT_EQ(request->key, "note");
  EXPECT_EQ(request->event_name, "Searched");
  EXPECT_TRUE(request->purge_now);
}

TEST_F(ErasureTest, PurgingAPropertyHidesItsValuesKeepsTheEventsAndAuditsTheKeyOnly) {
  Store({Record("Viewed", "user-1", 1, ",\"note\":\"mrk-note-41\",\"plan\":\"pro\""),
         Record("Searched", "user-2", 2, ",\"note\":\"mrk-note-42\""),
         Record("Viewed", "user-2", 3, ",\"plan\":\"team\"")});
  ASSERT_NE(Held({"user-1", "user-2"}).find("mrk-note-41"), std::string::npos);
  PropertyPurgeRequest request;
  request.key = "note";
  request.purge_now = true;
  auto purged = service_->PurgeProperty(LocalAccess(project_), request);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_TRUE(purged->purged);
  EXPECT_EQ(PropertyPurgeOutcomeJson(*purged), "{\"key\":\"note\",\"event\":null,\"purged\":true}\n");
  const std::string held = Held({"user-1", "user-2"});
  EXPECT_EQ(Count(held, "\"event\":"), 3U) << held;
  EXPECT_EQ(held.find("mrk-note"), std::string::npos) << held;
  EXPECT_EQ(Count(held, "\"plan\":"), 2U) << held;

  audit::Filter filter;
  filter.act = "property.purge";
  auto records = service_->ReadAudit(LocalAccess(project_), filter);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ASSERT_EQ(records->size(), 1U);
  EXPECT_EQ((*records)[0].properties, std::vector<std::string>{"note"});
  EXPECT_EQ((*records)[0].target, "purge:now");
  EXPECT_EQ(audit::EncodeEntry((*records)[0]).find("mrk-note"), std::string::npos);

  // The data map says the key was purged, by whom, in which audit record,
  // and no longer that it is stored.
  auto map = service_->DataMapOf(LocalAccess(project_));
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  ASSERT_EQ(map->purges.size(), 1U);
  EXPECT_EQ(map->purges[0].name, "note");
  EXPECT_EQ(map->purges[0].library, "");
  EXPECT_EQ(map->purges[0].why, (*records)[0].key);
  EXPECT_EQ(map->purges[0].audit_seq, (*records)[0].seq);
  EXPECT_EQ(map->purges[0].action, "purge:now");
  DataMap whole;
  whole.projects.push_back(*map);
  const std::string json = DataMapJson(whole);
  EXPECT_NE(json.find(R"("key":"note","category":)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("stored_as":"not stored: every value was purged from history at )"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("purged":{"at_ms":)"), std::string::npos) << json;
  const size_t plan = json.find(R"("key":"plan")");
  ASSERT_NE(plan, std::string::npos) << json;
  EXPECT_EQ(json.compare(json.find(R"("purged":)", plan), 13, R"("purged":null)"), 0)
      << "plan is not purged: " << json;
}

TEST_F(ErasureTest, NotLinkedErasesOnlyTheIdsNamed) {
  Store({Record("Viewed", "anon-2", 1),
         Record("$identify", "user-3", 2, ",\"$anon_distinct_id\":\"anon-2\"")});
  SubjectSelection selection;
  selection.distinct_ids = {"user-3"};
  selection.linked = false;
  auto erased = service_->Erase(LocalAccess(project_), selection);
  ASSERT_TRUE(erased.ok()) << erased.status().ToString();
  EXPECT_EQ(erased->subjects, 1U);
  EXPECT_EQ(Count(Held({"anon-2"}, false), "\"event\":"), 1U);
}

// A kill -9 during a deletion's purge leaves its task STARTED; the next open
// purges and finishes it, and fails a retrieval (whose ids were never kept).
TEST_F(ErasureTest, OpenFinishesTasksACrashLeftUnfinished) {
  std::string deletion_id;
  std::string retrieval_id;
  {
    auto tasks = GdprTasks::Open(config_.data_folder, file_system_, clock_);
    ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
    GdprTask task;
    task.id = deletion_id = (*tasks)->NewId();
    task.project_id = project_.id;
    task.created_ms = clock_->NowMs();
    task.status = "STARTED";
    task.compliance_type = "GDPR";
    ASSERT_TRUE((*tasks)->Put(task).ok());
    task.id = retrieval_id = (*tasks)->NewId();
    task.kind = GdprKind::kRetrieval;
    task.status = "PENDING";
    ASSERT_TRUE((*tasks)->Put(task).ok());
  }
  service_.reset();
  auto service = Service::Open(config_, file_system_, clock_);
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  service_ = std::move(service).value();
  auto deletion = service_->GdprStatus(LocalAccess(project_), GdprKind::kDeletion, deletion_id, "");
  ASSERT_TRUE(deletion.ok()) << deletion.status().ToString();
  EXPECT_NE(deletion->find("\"status\":\"SUCCESS\""), std::string::npos) << *deletion;
  auto retrieval =
      service_->GdprStatus(LocalAccess(project_), GdprKind::kRetrieval, retrieval_id, "");
  ASSERT_TRUE(retrieval.ok()) << retrieval.status().ToString();
  EXPECT_NE(retrieval->find("\"status\":\"FAILURE\""), std::string::npos) << *retrieval;
  // Another project's view of the task: not found.
  Project other = project_;
  other.id = project_.id + 1;
  EXPECT_EQ(service_->GdprStatus(LocalAccess(other), GdprKind::kDeletion, deletion_id, "")
                .status()
                .code(),
            StatusCode::kNotFound);
}

TEST(GdprTasksTest, TasksSurviveReopenAndResultsAreRemovedByProject) {
  const std::string folder =
      (std::filesystem::temp_directory_path() / ("minpanel-gdpr-" + std::to_string(::getpid())))
          .string();
  std::filesystem::remove_all(folder);
  auto file_system = NewPosixFileSystem();
  auto clock = std::make_shared<FakeClock>(1'795'685'260'000);
  {
    auto tasks = GdprTasks::Open(folder, file_system, clock);
    ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
    GdprTask task;
    task.id = (*tasks)->NewId();
    task.kind = GdprKind::kRetrieval;
    task.project_id = 7;
    task.created_ms = clock->NowMs();
    task.status = "SUCCESS";
    task.compliance_type = "GDPR";
    task.has_result_file = true;
    ASSERT_TRUE((*tasks)->WriteResult(task.id, "{}").ok());
    ASSERT_TRUE((*tasks)->Put(task).ok());
    GdprTask started = task;
    started.id = (*tasks)->NewId();
    started.kind = GdprKind::kDeletion;
    started.status = "STARTED";
    started.has_result_file = false;
    ASSERT_TRUE((*tasks)->Put(started).ok());
  }
  auto tasks = GdprTasks::Open(folder, file_system, clock);
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  ASSERT_EQ((*tasks)->Unfinished().size(), 1U);
  EXPECT_EQ((*tasks)->Unfinished()[0].kind, GdprKind::kDeletion);
  auto removed = (*tasks)->RemoveResults(8);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 0U) << "another project's result stays";
  removed = (*tasks)->RemoveResults(7);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1U);
  std::filesystem::remove_all(folder);
}

}  // namespace
}  // namespace minpanel::service

namespace minpanel::service {
namespace {

// Issue 6: an erased subject's lines in earlier exports' subject files
// become unlinkable (docs/formats/audit.md, "Rewritten subject files").
TEST_F(ErasureTest, ErasureRewritesEarlierSubjectFilesThatTheBlastRadiusStillAccepts) {
  Store({Record("Viewed", "user-1", 1), Record("Viewed", "user-2", 2),
         Record("Viewed", "user-3", 3)});
  ExportAll();
  const std::vector<std::string> files = SubjectFiles();
  ASSERT_EQ(files.size(), 1U);
  const std::string path = AuditFolder() + "/subjects/" + files[0];
  const std::string erased = PseudonymOf("user-1");
  const std::string kept = PseudonymOf("user-2");
  auto before = file_system_->ReadFile(path);
  ASSERT_TRUE(before.ok());
  ASSERT_NE(before->find(erased), std::string::npos);

  SubjectSelection selection;
  selection.distinct_ids = {"user-1"};
  auto outcome = service_->Erase(LocalAccess(project_), selection);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();

  // The file no longer holds the pseudonym; the others and the count stay.
  auto after = file_system_->ReadFile(path);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->find(erased), std::string::npos) << *after;
  EXPECT_NE(after->find(kept), std::string::npos);
  EXPECT_NE(after->find("\nerased 0\n"), std::string::npos) << *after;
  auto parsed = audit::ParseSubjectsFile(*after);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->subjects.size(), 3U);

  // A record in the chain states the rewrite, after the erase record.
  audit::Filter filter;
  filter.act = std::string(audit::kSubjectsRewriteAct);
  auto records = service_->ReadAudit(LocalAccess(project_), filter);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ASSERT_EQ(records->size(), 1U);
  EXPECT_EQ((*records)[0].subjects_file, "subjects/" + files[0]);
  EXPECT_EQ((*records)[0].subjects_sha256, audit::Sha256Hex(*after));
  EXPECT_EQ((*records)[0].subjects, 1U);
  EXPECT_EQ((*records)[0].params_sha256, outcome->reference);
  EXPECT_EQ(audit::EncodeEntry((*records)[0]).find(erased), std::string::npos);

  auto verified = audit::VerifyFolder(AuditFolder(), *file_system_, nullptr);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_TRUE(verified->ok) << verified->problem;

  // The blast radius accepts the rewritten file (through the key index and
  // over the whole chain) and counts the line as erased.
  for (const bool verify_chain : {false, true}) {
    auto blast = Blast(verify_chain);
    ASSERT_TRUE(blast.ok()) << blast.status().ToString();
    ASSERT_EQ(blast->exports.size(), 1U);
    ASSERT_EQ(blast->subjects.size(), 2U);
    for (const incident::SubjectExposure& subject : blast->subjects) {
      EXPECT_NE(subject.subject, erased);
    }
    EXPECT_TRUE(Warned(*blast, "1 of its subjects were erased since"));
    EXPECT_FALSE(Warned(*blast, "not yet rewritten"));
  }

  // Any other edit is still refused.
  std::string edited = *after;
  edited.replace(edited.find(kept), kept.size(), PseudonymOf("someone-else"));
  ASSERT_TRUE(file_system_->WriteFileAtomically(path, edited, 0600).ok());
  for (const bool verify_chain : {false, true}) {
    auto blast = Blast(verify_chain);
    EXPECT_EQ(blast.status().code(), StatusCode::kCorruption);
    EXPECT_NE(blast.status().message().find("edited or replaced"), std::string::npos)
        << blast.status().ToString();
  }
}

// The rewrite is recorded before the file is replaced: a crash in between
// (the file's old text, as an atomic rename leaves it) is explained, and the
// same erasure again finishes it.
TEST_F(ErasureTest, ARewriteRecordedButNotAppliedIsReportedAndFinishedByErasingAgain) {
  Store({Record("Viewed", "user-1", 1), Record("Viewed", "user-2", 2)});
  ExportAll();
  const std::vector<std::string> files = SubjectFiles();
  ASSERT_EQ(files.size(), 1U);
  const std::string path = AuditFolder() + "/subjects/" + files[0];
  auto before = file_system_->ReadFile(path);
  ASSERT_TRUE(before.ok());
  SubjectSelection selection;
  selection.distinct_ids = {"user-1"};
  ASSERT_TRUE(service_->Erase(LocalAccess(project_), selection).ok());
  // As if killed between the record and the rename.
  ASSERT_TRUE(file_system_->WriteFileAtomically(path, *before, 0600).ok());
  auto blast = Blast(false);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  EXPECT_TRUE(Warned(*blast, "not yet rewritten"));
  EXPECT_EQ(blast->subjects.size(), 2U);  // what the file says left, not hidden

  ASSERT_TRUE(service_->Erase(LocalAccess(project_), selection).ok());
  auto after = file_system_->ReadFile(path);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->find(PseudonymOf("user-1")), std::string::npos);
  auto finished = Blast(true);
  ASSERT_TRUE(finished.ok()) << finished.status().ToString();
  EXPECT_FALSE(Warned(*finished, "not yet rewritten"));
  EXPECT_EQ(finished->subjects.size(), 1U);
}

// Issue 6: a query answer that lists subjects (a breakdown by a subject's
// identity) keeps them as an export does — a subject file with each
// subject's keys, named by the `query` record — so that the blast radius
// counts them and an erasure rewrites them.
TEST_F(ErasureTest, AnAnswerListingSubjectsKeepsThemAsAnExportDoesAndErasureRewritesThem) {
  Store({Record("Bought", "user-1", 1, ",\"user_id\":\"user-1\",\"plan\":\"pro\""),
         Record("Bought", "user-2", 2, ",\"user_id\":\"user-2\",\"plan\":\"free\""),
         Record("Bought", "user-3", 3, ",\"user_id\":\"user-3\"")});
  const std::string range =
      "{\"kind\":\"segmentation\",\"from\":\"2026-11-01\",\"to\":\"2026-11-30\","
      "\"events\":[\"Bought\"],";
  ASSERT_TRUE(service_->Query(project_, range + "\"breakdown\":\"plan\"}").ok());
  EXPECT_TRUE(SubjectFiles().empty()) << "an aggregate answer lists no one";
  auto answer = service_->Query(project_, range + "\"breakdown\":[\"user_id\",\"plan\"]}");
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  ASSERT_NE(answer->find(PseudonymOf("user-1")), std::string::npos) << *answer;
  const std::vector<std::string> files = SubjectFiles();
  ASSERT_EQ(files.size(), 1U);
  const std::string path = AuditFolder() + "/subjects/" + files[0];
  auto text = file_system_->ReadFile(path);
  ASSERT_TRUE(text.ok());
  auto parsed = audit::ParseSubjectsFile(*text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->keys, (std::vector<std::string>{"plan", "time"}));
  std::map<std::string, std::vector<std::string>> keys_of;
  for (const audit::SubjectsFile::Subject& subject : parsed->subjects) {
    for (const uint32_t key : parsed->key_sets[subject.key_set]) {
      keys_of[subject.pseudonym].push_back(parsed->keys[key]);
    }
  }
  EXPECT_EQ(keys_of.size(), 3U);
  EXPECT_EQ(keys_of[PseudonymOf("user-1")], (std::vector<std::string>{"plan", "time"}));
  EXPECT_EQ(keys_of[PseudonymOf("user-3")], (std::vector<std::string>{"time"}))
      << "user-3's events had no plan: its cell showed none";

  audit::Filter filter;
  filter.act = "query";
  auto records = service_->ReadAudit(LocalAccess(project_), filter);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  std::vector<audit::AuditEntry> listing;
  for (const audit::AuditEntry& record : *records) {
    if (!record.subjects_file.empty()) {
      listing.push_back(record);
    }
  }
  ASSERT_EQ(listing.size(), 1U);
  EXPECT_EQ(listing[0].act, "query");
  EXPECT_EQ(listing[0].subjects_file, "subjects/" + files[0]);
  EXPECT_EQ(listing[0].subjects_sha256, audit::Sha256Hex(*text));
  EXPECT_EQ(listing[0].subjects, 3U);
  EXPECT_EQ(listing[0].properties, (std::vector<std::string>{"plan", "time", "user_id"}));

  for (const bool verify_chain : {false, true}) {
    auto blast = Blast(verify_chain);
    ASSERT_TRUE(blast.ok()) << blast.status().ToString();
    EXPECT_TRUE(blast->exports.empty());
    ASSERT_EQ(blast->subjects.size(), 3U);
    for (const incident::SubjectExposure& subject : blast->subjects) {
      EXPECT_EQ(subject.queries, (std::vector<uint64_t>{listing[0].seq})) << subject.subject;
      EXPECT_TRUE(subject.exports.empty());
      const std::vector<std::string> expected =
          subject.subject == PseudonymOf("user-3")
              ? std::vector<std::string>{"distinct_id", "time"}
              : std::vector<std::string>{"distinct_id", "plan", "time"};
      EXPECT_EQ(subject.properties, expected) << subject.subject;
    }
    EXPECT_FALSE(Warned(*blast, "which the log does not list"));
  }

  SubjectSelection selection;
  selection.distinct_ids = {"user-1"};
  ASSERT_TRUE(service_->Erase(LocalAccess(project_), selection).ok());
  auto after = file_system_->ReadFile(path);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->find(PseudonymOf("user-1")), std::string::npos) << *after;
  EXPECT_NE(after->find("\nerased "), std::string::npos) << *after;
  auto blast = Blast(false);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  EXPECT_EQ(blast->subjects.size(), 2U);
  EXPECT_TRUE(Warned(*blast, "query record " + std::to_string(listing[0].seq) +
                                 ": 1 of its subjects were erased since"));
}

// An id a policy keeps in clear is listed by the answer as it is stored, and
// recorded in the subject file as the pseudonym the project's key gives it:
// the audit folder never holds it.
TEST_F(ErasureTest, AnIdAPolicyKeepsInClearIsRecordedAsItsPseudonym) {
  ASSERT_TRUE(
      service_->PutPolicy(project_, "[[rule]]\nmatch = \"user_id\"\naction = \"keep\"\n").ok());
  Store({Record("Bought", "user-7", 1, ",\"user_id\":\"user-7\"")});
  auto answer =
      service_->Query(project_,
                      "{\"kind\":\"segmentation\",\"from\":\"2026-11-01\",\"to\":\"2026-11-30\","
                      "\"events\":[\"Bought\"],\"breakdown\":\"user_id\"}");
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  ASSERT_NE(answer->find("\"user-7\""), std::string::npos) << *answer;
  const std::vector<std::string> files = SubjectFiles();
  ASSERT_EQ(files.size(), 1U);
  auto text = file_system_->ReadFile(AuditFolder() + "/subjects/" + files[0]);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find("user-7"), std::string::npos) << *text;
  EXPECT_NE(text->find(PseudonymOf("user-7") + " "), std::string::npos) << *text;
}

// The data map learns what an erasure left no stored event carrying: after
// its physical stage, a key only the erased subject's events held is no
// longer stored (a deletion, not retention); a key another subject's event
// holds stays stored. Before the purge, the partly hidden segment's index
// still lists the key, so the map keeps calling it stored.
TEST_F(ErasureTest, AfterThePurgeTheDataMapSaysWhichKeysOnlyTheErasedSubjectCarried) {
  Store({Record("Viewed", "user-1", 1, ",\"gen_only_erased\":\"a\",\"plan\":\"pro\""),
         Record("Viewed", "user-2", 2, ",\"plan\":\"team\"")});
  service_.reset();  // flushed into a segment
  auto reopened = Service::Open(config_, file_system_, clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  service_ = std::move(reopened).value();
  const auto gone_ms_of = [&](const std::string& key) -> int64_t {
    auto map = service_->DataMapOf(LocalAccess(project_));
    EXPECT_TRUE(map.ok()) << map.status().ToString();
    for (const SeenItem& item : map.ok() ? map->items : std::vector<SeenItem>{}) {
      if (item.kind == "event" && item.name == key) {
        return item.gone_ms;
      }
    }
    return -1;
  };
  clock_->Advance(kDataMapGoneMarginMs + 1'000);
  SubjectSelection selection;
  selection.distinct_ids = {"user-1"};
  ASSERT_TRUE(service_->Erase(LocalAccess(project_), selection).ok());
  EXPECT_EQ(gone_ms_of("gen_only_erased"), 0) << "hidden, not yet purged from the segment";

  selection.purge_now = true;
  selection.distinct_ids = {"user-1"};
  ASSERT_TRUE(service_->Erase(LocalAccess(project_), selection).ok());
  EXPECT_EQ(gone_ms_of("gen_only_erased"), clock_->NowMs());
  EXPECT_EQ(gone_ms_of("plan"), 0);
  auto map = service_->DataMapOf(LocalAccess(project_));
  ASSERT_TRUE(map.ok());
  DataMap whole;
  whole.projects.push_back(*map);
  const std::string json = DataMapJson(whole);
  EXPECT_NE(json.find(R"("key":"gen_only_erased")"), std::string::npos) << "still listed";
  EXPECT_NE(json.find(R"("stored_as":"not stored: the events that carried it were removed (an )"
                      R"(erasure, a purge or an event's retention rule); gone at )"),
            std::string::npos)
      << json;
}

}  // namespace
}  // namespace minpanel::service
