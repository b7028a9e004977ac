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

TEST(DataMapOutputTest, FormatNamesAreChecked) {
  EXPECT_EQ(*ParseDataMapFormat("md"), DataMapFormat::kMarkdown);
  EXPECT_EQ(*ParseDataMapFormat("html"), DataMapFormat::kHtml);
  const auto bad = ParseDataMapFormat("pdf");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("format"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::service
