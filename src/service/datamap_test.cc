// The data map's catalogue and outputs (datamap.h). The whole map through
// the real server and SDK traffic: tests/integration/datamap.test.mjs.
#include "service/datamap.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "core/fault_file_system.h"

namespace minpanel::service {
namespace {

privacy::ProjectKey FixedKey() {
  privacy::ProjectKey key;
  key.version = 1;
  key.bytes.fill(7);
  return key;
}

RawEvent Event(std::vector<Property> properties) {
  RawEvent raw;
  raw.name = "signup";
  raw.distinct_id = "generated-user-1";
  raw.client_ip = "192.0.2.1";
  raw.library = "mixpanel-node";
  raw.properties = std::move(properties);
  return raw;
}

class DataCatalogueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = (std::filesystem::temp_directory_path() /
               ("minpanel-datamap-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                  .string();
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::unique_ptr<DataCatalogue> Open() {
    auto catalogue = DataCatalogue::Open(folder_, file_system_, clock_);
    EXPECT_TRUE(catalogue.ok()) << catalogue.status().ToString();
    return std::move(catalogue).value();
  }

  const SeenItem* Find(const std::vector<SeenItem>& items, std::string_view kind,
                       std::string_view name) {
    for (const SeenItem& item : items) {
      if (item.kind == kind && item.name == name) {
        return &item;
      }
    }
    return nullptr;
  }

  std::string folder_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(1'700'000'000'000);
  privacy::Policy policy_{FixedKey()};
};

TEST_F(DataCatalogueTest, RecordsKeysSourcesAndContextWithThePolicysActionAndSurvivesReopen) {
  auto catalogue = Open();
  std::vector<RawEvent> events;
  events.push_back(
      Event({{"plan", Value::String("plan-value-q7")}, {"$email", Value::String("x")}}));
  events.push_back(
      Event({{"plan", Value::String("free")}, {"field_a", Value::String("someone@example.test")}}));
  catalogue->ObserveEvents(3, "shop", policy_, "mixpanel /track", events);
  clock_->Advance(60'000);
  catalogue->ObserveEvents(3, "shop", policy_, "mixpanel /track", {Event({})});
  EXPECT_EQ(catalogue->personal_keys.load(), 2U) << "$email by name, field_a by its value";

  std::vector<SeenItem> items = catalogue->ItemsOf(3);
  const SeenItem* plan = Find(items, "event", "plan");
  ASSERT_NE(plan, nullptr);
  EXPECT_EQ(plan->volume, 2U);
  EXPECT_EQ(plan->action, "redact");
  EXPECT_EQ(CategoryOfItem(*plan), "behavioural");
  EXPECT_TRUE(PersonalSignals(*plan).empty());
  const SeenItem* email = Find(items, "event", "$email");
  ASSERT_NE(email, nullptr);
  EXPECT_EQ(email->action, "drop");
  EXPECT_EQ(CategoryOfItem(*email), "contact");
  const SeenItem* contact = Find(items, "event", "field_a");
  ASSERT_NE(contact, nullptr);
  EXPECT_EQ(PersonalSignals(*contact), std::vector<std::string>{"value:email"});
  const SeenItem* source = Find(items, "source", "mixpanel /track");
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->library, "mixpanel-node");
  EXPECT_EQ(source->volume, 3U);
  EXPECT_EQ(source->last_seen_ms - source->first_seen_ms, 60'000);
  const SeenItem* ip = Find(items, "context", "ip");
  ASSERT_NE(ip, nullptr);
  EXPECT_EQ(ip->action, "generalise");
  EXPECT_EQ(CategoryOfItem(*ip), "location");
  EXPECT_TRUE(catalogue->ItemsOf(4).empty());

  ASSERT_TRUE(catalogue->Save().ok());
  const std::string file = *file_system_->ReadFile(folder_ + "/datamap.json");
  EXPECT_EQ(file.find("someone@example.test"), std::string::npos) << "keys only, never values";
  EXPECT_EQ(file.find("plan-value-q7"), std::string::npos);
  catalogue = Open();
  EXPECT_EQ(catalogue->ItemsOf(3).size(), items.size());
  EXPECT_EQ(Find(catalogue->ItemsOf(3), "event", "plan")->volume, 2U);
  // Seen again after a restart: not new, so no second warning.
  catalogue->ObserveEvents(3, "shop", policy_, "mixpanel /track", events);
  EXPECT_EQ(catalogue->personal_keys.load(), 0U);
  EXPECT_EQ(Find(catalogue->ItemsOf(3), "event", "plan")->volume, 4U);
}

TEST_F(DataCatalogueTest, AKeyHoldingPersonalDataIsKeptRedacted) {
  auto catalogue = Open();
  catalogue->ObserveEvents(1, "p", policy_, "segment",
                           {Event({{"clicked_by_someone@example.test", Value::Int(1)}})});
  const std::vector<SeenItem> items = catalogue->ItemsOf(1);
  const auto key = std::find_if(items.begin(), items.end(),
                                [](const SeenItem& item) { return item.kind == "event"; });
  ASSERT_NE(key, items.end());
  EXPECT_NE(key->name.find("[email]"), std::string::npos) << key->name;
  ASSERT_TRUE(catalogue->Save().ok());
  EXPECT_EQ(file_system_->ReadFile(folder_ + "/datamap.json")->find("example.test"),
            std::string::npos);
}

TEST_F(DataCatalogueTest, KeysPastTheLimitAreCountedNotCatalogued) {
  auto catalogue = Open();
  std::vector<Property> properties;
  for (size_t key_idx = 0; key_idx < kDataMapKeysPerProjectMax; ++key_idx) {
    properties.push_back({"k" + std::to_string(key_idx), Value::Int(1)});
  }
  // distinct_id, ip and library take three of the project's places.
  catalogue->ObserveEvents(1, "p", policy_, "segment", {Event(properties)});
  EXPECT_EQ(catalogue->KeysNotCatalogued(1), 3U);
  EXPECT_EQ(catalogue->keys_not_catalogued.load(), 3U);
  size_t keys = 0;
  for (const SeenItem& item : catalogue->ItemsOf(1)) {
    keys += item.kind != "source";
  }
  EXPECT_EQ(keys, kDataMapKeysPerProjectMax);
  ASSERT_TRUE(catalogue->Save().ok());
  catalogue = Open();
  EXPECT_EQ(catalogue->KeysNotCatalogued(1), 3U);
}

TEST_F(DataCatalogueTest, AFailedWriteKeepsTheCatalogueAndRetries) {
  auto catalogue = Open();
  catalogue->ObserveEvents(1, "p", policy_, "segment", {Event({{"plan", Value::Int(1)}})});
  file_system_->FailWritesAfterBytes(0);
  EXPECT_FALSE(catalogue->Save().ok());
  file_system_->Reset();
  ASSERT_TRUE(catalogue->Save().ok());
  EXPECT_NE(Find(Open()->ItemsOf(1), "event", "plan"), nullptr);
}

TEST_F(DataCatalogueTest, ADamagedFileIsCorruptionNamingIt) {
  ASSERT_TRUE(file_system_->WriteFileAtomically(folder_ + "/datamap.json", "{not json", 0600).ok());
  auto catalogue = DataCatalogue::Open(folder_, file_system_, clock_);
  ASSERT_FALSE(catalogue.ok());
  EXPECT_EQ(catalogue.status().code(), StatusCode::kCorruption);
  EXPECT_NE(catalogue.status().message().find("datamap.json"), std::string::npos);
}

TEST(DataMapOutputTest, EveryOutputEscapesWhatTheClientsNamed) {
  DataMap map;
  DataMapProject project;
  project.id = 1;
  project.name = "p";
  project.time_zone = "UTC";
  SeenItem item;
  item.kind = "event";
  item.name = "<script>alert(1)</script>|x";
  item.action = "keep";
  project.items.push_back(item);
  project.readers.push_back({"secret", "the project secret", "admin", false, {}, {}, 0});
  map.projects.push_back(project);
  const std::string html = DataMapHtml(map);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
  EXPECT_EQ(html.find("http"), std::string::npos) << "no external request";
  const std::string markdown = DataMapMarkdown(map);
  EXPECT_EQ(markdown.find("<script>"), std::string::npos);
  EXPECT_EQ(markdown.find("|x"), std::string::npos) << "a | would split the cell";
  const std::string json = DataMapJson(map);
  EXPECT_NE(json.find(R"("key":"<script>alert(1)</script>|x")"), std::string::npos);
  EXPECT_NE(json.find(R"("readable_by":["secret"])"), std::string::npos);
}

TEST_F(DataCatalogueTest, APurgeIsRememberedApartFromTheKeysAcrossAReopen) {
  auto catalogue = Open();
  catalogue->ObserveEvents(3, "shop", policy_, "mixpanel /track",
                           {Event({{"note", Value::String("n")}})});
  clock_->Advance(1'000);
  catalogue->RecordPurge(3, "note", "", "purge:now", "mpk_admin1", 17);
  clock_->Advance(1'000);
  catalogue->RecordPurge(3, "note", "", "purge:deadline", "local", 21);
  catalogue->RecordPurge(3, "query", "Searched", "purge:deadline", "local", 22);
  EXPECT_EQ(Find(catalogue->ItemsOf(3), "purge", "note"), nullptr) << "purges are not keys";
  ASSERT_TRUE(catalogue->Save().ok());
  catalogue = Open();
  const std::vector<SeenItem> purges = catalogue->PurgesOf(3);
  ASSERT_EQ(purges.size(), 2U);
  EXPECT_EQ(purges[0].name, "note");
  EXPECT_EQ(purges[0].library, "");
  EXPECT_EQ(purges[0].volume, 2U);
  EXPECT_EQ(purges[0].last_seen_ms - purges[0].first_seen_ms, 1'000);
  EXPECT_EQ(purges[0].why, "local");
  EXPECT_EQ(purges[0].audit_seq, 21U);
  EXPECT_EQ(purges[0].action, "purge:deadline");
  EXPECT_EQ(purges[1].name, "query");
  EXPECT_EQ(purges[1].library, "Searched");
  EXPECT_TRUE(catalogue->PurgesOf(4).empty());
  EXPECT_NE(Find(catalogue->ItemsOf(3), "event", "note"), nullptr);
  for (size_t purge_idx = 2; purge_idx < kDataMapPurgesPerProjectMax + 2; ++purge_idx) {
    catalogue->RecordPurge(3, "k" + std::to_string(purge_idx), "", "purge:now", "local", 1);
  }
  EXPECT_EQ(catalogue->PurgesOf(3).size(), kDataMapPurgesPerProjectMax);
  EXPECT_EQ(catalogue->KeysNotCatalogued(3), 2U);
}

// A key purged from every event and not seen since is "not stored"; seen
// again after the purge, its later values are; a purge of one event's
// values leaves the rest (and the profiles) stored.
TEST(DataMapOutputTest, APurgedKeyIsNotClaimedStored) {
  DataMapProject project;
  project.id = 1;
  project.name = "p";
  project.time_zone = "UTC";
  const auto item = [](std::string kind, std::string name, int64_t last_seen_ms) {
    SeenItem seen;
    seen.kind = std::move(kind);
    seen.name = std::move(name);
    seen.action = "keep";
    seen.first_seen_ms = 100;
    seen.last_seen_ms = last_seen_ms;
    return seen;
  };
  const auto purge = [](std::string key, std::string event, int64_t at_ms, uint64_t seq) {
    SeenItem seen;
    seen.kind = "purge";
    seen.name = std::move(key);
    seen.library = std::move(event);
    seen.first_seen_ms = at_ms;
    seen.last_seen_ms = at_ms;
    seen.volume = 1;
    seen.action = "purge:now";
    seen.why = "mpk_admin1";
    seen.audit_seq = seq;
    return seen;
  };
  project.items = {item("event", "gone", 500), item("event", "back", 900),
                   item("event", "query", 500), item("profile", "query", 500),
                   item("profile", "gone", 500)};
  project.purges = {purge("gone", "", 600, 7), purge("back", "", 600, 8),
                    purge("query", "Searched", 600, 9)};
  DataMap map;
  map.projects.push_back(project);
  const std::string json = DataMapJson(map);
  const auto stored_as = [&](std::string_view kind, std::string_view key) {
    const std::string head = std::string(R"("kind":")") + std::string(kind) + R"(","key":")" +
                             std::string(key) + "\"";
    const size_t at = json.find(head);
    EXPECT_NE(at, std::string::npos) << head;
    const size_t start = json.find(R"("stored_as":")", at) + 13;
    return json.substr(start, json.find('"', start) - start);
  };
  EXPECT_EQ(stored_as("event", "gone"),
            "not stored: every value was purged from history at 600 ms by mpk_admin1 (audit "
            "record 7)");
  EXPECT_EQ(stored_as("profile", "gone"), stored_as("event", "gone"));
  EXPECT_EQ(stored_as("event", "back"),
            "purged from history at 600 ms by mpk_admin1 (audit record 8); values sent since: "
            "as sent");
  EXPECT_EQ(stored_as("event", "query"),
            "as sent; its values on the events named Searched were purged from history at 600 "
            "ms by mpk_admin1 (audit record 9)");
  EXPECT_EQ(stored_as("profile", "query"), "as sent");
  EXPECT_NE(json.find(R"("purged":{"at_ms":600,"by":"mpk_admin1","audit_seq":9,"event":"Searched","purges":1})"),
            std::string::npos)
      << json;
  EXPECT_NE(DataMapMarkdown(map).find("not stored: every value was purged"), std::string::npos);
  EXPECT_NE(DataMapHtml(map).find("not stored: every value was purged"), std::string::npos);
}

TEST(DataMapOutputTest, FormatNamesAreChecked) {
  EXPECT_EQ(*ParseDataMapFormat("md"), DataMapFormat::kMarkdown);
  EXPECT_EQ(*ParseDataMapFormat("html"), DataMapFormat::kHtml);
  const auto bad = ParseDataMapFormat("pdf");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("format"), std::string::npos);
}

// The keys the store no longer holds (MarkGone, from the store's indexes:
// the service's part is RetentionTest.TheDataMapSaysWhichKeysRetentionLeft…).
TEST_F(DataCatalogueTest, AKeyNoStoredEventCarriesIsMarkedGoneKeptAndForgottenLater) {
  auto catalogue = Open();
  catalogue->ObserveEvents(3, "shop", policy_, "mixpanel /track",
                           {Event({{"plan", Value::String("free")}, {"old", Value::Int(1)}})});
  StoredKeys plan_only;
  plan_only.any_event = true;
  plan_only.event_keys = {"plan"};
  clock_->Advance(1'000);
  EXPECT_EQ(catalogue->MarkGone(3, plan_only, clock_->NowMs() - kDataMapGoneMarginMs,
                                kGoneByDeletion),
            0U)
      << "seen within the margin: its batch may not be in the store yet";
  clock_->Advance(kDataMapGoneMarginMs);
  const int64_t old_gone_ms = clock_->NowMs();
  EXPECT_EQ(catalogue->MarkGone(3, plan_only, clock_->NowMs() - kDataMapGoneMarginMs,
                                kGoneByRetention),
            1U);
  std::vector<SeenItem> items = catalogue->ItemsOf(3);
  EXPECT_EQ(Find(items, "event", "old")->gone_ms, old_gone_ms);
  EXPECT_EQ(Find(items, "event", "old")->gone_why, kGoneByRetention);
  EXPECT_EQ(Find(items, "event", "plan")->gone_ms, 0);
  EXPECT_EQ(Find(items, "context", "distinct_id")->gone_ms, 0) << "events are left";
  EXPECT_EQ(Find(items, "source", "mixpanel /track")->gone_ms, 0);
  EXPECT_TRUE(ItemStored(*Find(items, "source", "mixpanel /track"), StoredKeys{}))
      << "sources are not tracked";

  // No event left: every key and context field goes; `old` keeps its time.
  clock_->Advance(60'000);
  EXPECT_EQ(catalogue->MarkGone(3, StoredKeys{}, clock_->NowMs(), kGoneByDeletion), 4U)
      << "plan, distinct_id, ip, library";
  items = catalogue->ItemsOf(3);
  EXPECT_EQ(Find(items, "event", "old")->gone_ms, old_gone_ms);
  EXPECT_EQ(Find(items, "event", "plan")->gone_why, kGoneByDeletion);
  EXPECT_EQ(Find(items, "context", "ip")->gone_ms, clock_->NowMs());
  EXPECT_EQ(catalogue->keys_gone.load(), 5U);

  // Across a reopen; seen again, stored again.
  ASSERT_TRUE(catalogue->Save().ok());
  EXPECT_NE(file_system_->ReadFile(folder_ + "/datamap.json")->find("\"version\":2,"),
            std::string::npos);
  catalogue = Open();
  EXPECT_EQ(Find(catalogue->ItemsOf(3), "event", "old")->gone_ms, old_gone_ms);
  catalogue->ObserveEvents(3, "shop", policy_, "mixpanel /track",
                           {Event({{"plan", Value::String("pro")}})});
  items = catalogue->ItemsOf(3);
  EXPECT_EQ(Find(items, "event", "plan")->gone_ms, 0);
  EXPECT_EQ(Find(items, "context", "ip")->gone_ms, 0);
  // A key the store holds again (a restore) is stored again too.
  StoredKeys old_again;
  old_again.any_event = true;
  old_again.event_keys = {"old", "plan"};
  EXPECT_EQ(catalogue->MarkGone(3, old_again, clock_->NowMs(), kGoneByDeletion), 0U);
  EXPECT_EQ(Find(catalogue->ItemsOf(3), "event", "old")->gone_ms, 0);

  // Forgotten once gone before the bound: the place is free again.
  clock_->Advance(60'000);
  EXPECT_EQ(catalogue->MarkGone(3, plan_only, clock_->NowMs(), kGoneByRetention), 1U);
  const int64_t gone_ms = clock_->NowMs();
  EXPECT_EQ(catalogue->ForgetGone(3, gone_ms), 0U);
  EXPECT_EQ(catalogue->ForgetGone(4, gone_ms + 1), 0U) << "another project";
  EXPECT_EQ(catalogue->ForgetGone(3, gone_ms + 1), 1U);
  EXPECT_EQ(Find(catalogue->ItemsOf(3), "event", "old"), nullptr);
  EXPECT_NE(Find(catalogue->ItemsOf(3), "event", "plan"), nullptr);
  EXPECT_EQ(catalogue->keys_forgotten.load(), 1U);
  ASSERT_TRUE(catalogue->Save().ok());
  EXPECT_EQ(Find(Open()->ItemsOf(3), "event", "old"), nullptr);
}

TEST_F(DataCatalogueTest, AForgottenKeyFreesItsPlaceUnderTheLimit) {
  auto catalogue = Open();
  std::vector<Property> properties;
  // distinct_id, ip and library take three of the project's places.
  for (size_t key_idx = 0; key_idx + 3 < kDataMapKeysPerProjectMax; ++key_idx) {
    properties.push_back({"k" + std::to_string(key_idx), Value::Int(1)});
  }
  catalogue->ObserveEvents(1, "p", policy_, "segment", {Event(properties)});
  catalogue->ObserveEvents(1, "p", policy_, "segment", {Event({{"late", Value::Int(1)}})});
  EXPECT_EQ(catalogue->KeysNotCatalogued(1), 1U);
  clock_->Advance(kDataMapGoneMarginMs + 1);
  StoredKeys all_but_k0;
  all_but_k0.any_event = true;
  for (size_t key_idx = 1; key_idx + 3 < kDataMapKeysPerProjectMax; ++key_idx) {
    all_but_k0.event_keys.insert("k" + std::to_string(key_idx));
  }
  ASSERT_EQ(catalogue->MarkGone(1, all_but_k0, clock_->NowMs(), kGoneByDeletion), 1U);
  ASSERT_EQ(catalogue->ForgetGone(1, clock_->NowMs() + 1), 1U);
  catalogue->ObserveEvents(1, "p", policy_, "segment", {Event({{"late", Value::Int(1)}})});
  EXPECT_NE(Find(catalogue->ItemsOf(1), "event", "late"), nullptr);
  EXPECT_EQ(catalogue->KeysNotCatalogued(1), 1U);
}

TEST_F(DataCatalogueTest, AVersionOneFileIsReadAndAWrongGoneFieldIsCorruption) {
  const std::string item =
      R"({"project_id":1,"kind":"event","name":"plan","library":"","first_seen_ms":5,)"
      R"("last_seen_ms":6,"volume":2,"action":"keep","why":"","value_detections":0)";
  ASSERT_TRUE(file_system_
                  ->WriteFileAtomically(folder_ + "/datamap.json",
                                        R"({"format":"minpanel-datamap","version":1,"items":[)" +
                                            item + "}]}",
                                        0600)
                  .ok());
  const SeenItem* plan = nullptr;
  auto catalogue = Open();
  std::vector<SeenItem> items = catalogue->ItemsOf(1);
  plan = Find(items, "event", "plan");
  ASSERT_NE(plan, nullptr);
  EXPECT_EQ(plan->gone_ms, 0);
  ASSERT_TRUE(file_system_
                  ->WriteFileAtomically(folder_ + "/datamap.json",
                                        R"({"format":"minpanel-datamap","version":2,"items":[)" +
                                            item + R"(,"gone_ms":-1,"gone_why":"retention"}]})",
                                        0600)
                  .ok());
  auto damaged = DataCatalogue::Open(folder_, file_system_, clock_);
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), StatusCode::kCorruption);
  ASSERT_TRUE(file_system_
                  ->WriteFileAtomically(folder_ + "/datamap.json",
                                        R"({"format":"minpanel-datamap","version":3,"items":[]})",
                                        0600)
                  .ok());
  EXPECT_FALSE(DataCatalogue::Open(folder_, file_system_, clock_).ok()) << "a newer version";
}

TEST(DataMapOutputTest, AKeyNoLongerStoredSaysWhyAndUntilWhenItIsListed) {
  DataMap map;
  DataMapProject project;
  project.id = 1;
  project.name = "p";
  project.retention_days = 90;
  SeenItem item;
  item.kind = "event";
  item.name = "old";
  item.action = "redact";
  item.gone_ms = 1'000;
  item.gone_why = kGoneByRetention;
  project.items.push_back(item);
  item.name = "erased";
  item.gone_why = kGoneByDeletion;
  project.items.push_back(item);
  item.name = "dropped";
  item.action = "drop";
  project.items.push_back(item);
  map.projects.push_back(project);
  const std::string json = DataMapJson(map);
  EXPECT_NE(json.find(R"("key":"old","category":"behavioural","personal":false,"signals":[],)"
                      R"("action":"redact","why":"","stored_as":"not stored: every event carrying )"
                      R"(it was past the project's retention (90 days); gone at 1000 ms, listed )"
                      R"(here until 7776001000 ms","gone_ms":1000,)"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("stored_as":"not stored: the events that carried it were removed (an )"
                      R"(erasure, a purge or an event's retention rule); gone at 1000 ms)"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("key":"dropped",)"), std::string::npos);
  EXPECT_NE(json.find(R"("stored_as":"not stored","gone_ms":1000)"), std::string::npos)
      << "a dropped key was never stored: " << json;
  EXPECT_NE(DataMapMarkdown(map).find("past the project&#39;s retention (90 days)"),
            std::string::npos)
      << DataMapMarkdown(map);
  EXPECT_EQ(DataMapGoneKeptDays(0), kDataMapGoneKeptDaysMin);
  EXPECT_EQ(DataMapGoneKeptDays(7), kDataMapGoneKeptDaysMin);
  EXPECT_EQ(DataMapGoneKeptDays(400), 400U);
}

}  // namespace
}  // namespace minpanel::service
