#include "privacy/privacy.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

namespace minpanel::privacy {
namespace {

class KeyFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("minpanel-keys-" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::filesystem::path folder_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
};

ProjectKey FixedKey(uint8_t fill) {
  ProjectKey key;
  key.version = 1;
  key.bytes.fill(fill);
  return key;
}

RawEvent SampleEvent() {
  RawEvent raw;
  raw.name = "Signed Up";
  raw.time_ms = 1'700'000'000'000;
  raw.distinct_id = "user-0042";
  raw.client_ip = "203.0.113.7";
  raw.user_agent = "Mozilla/5.0";
  raw.properties = {{"plan", Value::String("pro")},
                    {"$email", Value::String("someone@example.test")},
                    {"$name", Value::String("Test Person")},
                    {"seats", Value::Int(3)}};
  return raw;
}

TEST_F(KeyFolder, KeyIsCreatedOnceWithPrivateModeAndReloaded) {
  ProjectKey first;
  {
    auto store = KeyStore::Open(folder_.string(), file_system_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto key = (*store)->GetOrCreate(7);
    ASSERT_TRUE(key.ok());
    first = *key;
  }
  struct stat info {};
  ASSERT_EQ(::stat((folder_ / "project-7.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600U);
  ASSERT_EQ(::stat(folder_.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700U);

  auto reopened = KeyStore::Open(folder_.string(), file_system_);
  ASSERT_TRUE(reopened.ok());
  auto again = (*reopened)->GetOrCreate(7);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->bytes, first.bytes);
  EXPECT_EQ(again->version, 1U);
  auto other = (*reopened)->GetOrCreate(8);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->bytes, first.bytes);
}

TEST_F(KeyFolder, DamagedKeyFileIsCorruption) {
  std::filesystem::create_directories(folder_);
  std::ofstream(folder_ / "project-3.key") << "not a key";
  auto store = KeyStore::Open(folder_.string(), file_system_);
  ASSERT_TRUE(store.ok());
  auto key = (*store)->GetOrCreate(3);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kCorruption);
}

TEST(PolicyTest, PseudonymIsStableAndDependsOnTheKey) {
  const Policy policy(FixedKey(1));
  const Policy other(FixedKey(2));
  EXPECT_EQ(policy.Pseudonym("user-0042"), policy.Pseudonym("user-0042"));
  EXPECT_NE(policy.Pseudonym("user-0042"), policy.Pseudonym("user-0043"));
  EXPECT_NE(policy.Pseudonym("user-0042"), other.Pseudonym("user-0042"));
}

TEST(PolicyTest, ExportedPseudonymIsTakenAsIs) {
  const Policy policy(FixedKey(1));
  const Id128 subject = policy.Pseudonym("user-0042");
  EXPECT_EQ(policy.Pseudonym(FormatPseudonym(subject)), subject);
  // A malformed marker is just a distinct id like any other.
  EXPECT_NE(policy.Pseudonym("psn_xyz"), Id128{});
}

TEST(PolicyTest, EventKeepsNoRawIdentifierAndDropsPersonProperties) {
  const Policy policy(FixedKey(1));
  PolicyCounters counters;
  const Event event = policy.Apply(SampleEvent(), &counters);
  EXPECT_EQ(event.name, "Signed Up");
  EXPECT_EQ(event.time_ms, 1'700'000'000'000);
  EXPECT_EQ(event.subject, policy.Pseudonym("user-0042"));
  ASSERT_EQ(event.properties.size(), 2U);
  EXPECT_EQ(event.properties[0].key, "plan");
  EXPECT_EQ(event.properties[1].key, "seats");
  EXPECT_EQ(counters.properties_dropped, 2U);
  EXPECT_EQ(counters.context_fields_discarded, 2U);  // IP and user agent
}

TEST(PolicyTest, InsertIdFromClientHexOrHashOrContent) {
  const Policy policy(FixedKey(1));
  PolicyCounters counters;
  RawEvent hex = SampleEvent();
  hex.insert_id = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(policy.Apply(std::move(hex), &counters).insert_id.ToHex(),
            "0123456789abcdef0123456789abcdef");

  RawEvent named = SampleEvent();
  named.insert_id = "cd16pr1nfsj5dggc";
  RawEvent named_again = SampleEvent();
  named_again.insert_id = "cd16pr1nfsj5dggc";
  named_again.time_ms += 1;  // the client's id wins over content
  EXPECT_EQ(policy.Apply(std::move(named), &counters).insert_id,
            policy.Apply(std::move(named_again), &counters).insert_id);

  RawEvent content = SampleEvent();
  RawEvent same_content = SampleEvent();
  RawEvent later = SampleEvent();
  later.time_ms += 1;
  const Id128 content_id = policy.Apply(std::move(content), &counters).insert_id;
  EXPECT_EQ(content_id, policy.Apply(std::move(same_content), &counters).insert_id);
  EXPECT_NE(content_id, policy.Apply(std::move(later), &counters).insert_id);
}

// A time the server gave (the client sent none) is no part of a retry's
// identity — a retry arrives later — so equal events timed on arrival, as
// two awaited Mixpanel track calls in one millisecond are, get random
// insert ids and are both stored; a client's id still decides.
TEST(PolicyTest, EventsTimedOnArrivalGetRandomInsertIds) {
  const Policy policy(FixedKey(1));
  PolicyCounters counters;
  RawEvent first = SampleEvent();
  first.arrival_time = true;
  RawEvent second = SampleEvent();
  second.arrival_time = true;
  const Id128 first_id = policy.Apply(std::move(first), &counters).insert_id;
  const Id128 second_id = policy.Apply(std::move(second), &counters).insert_id;
  EXPECT_NE(first_id, second_id);
  RawEvent content = SampleEvent();
  const Id128 content_id = policy.Apply(std::move(content), &counters).insert_id;
  EXPECT_NE(first_id, content_id);
  EXPECT_NE(second_id, content_id);

  RawEvent named = SampleEvent();
  named.arrival_time = true;
  named.insert_id = "cd16pr1nfsj5dggc";
  RawEvent named_again = SampleEvent();
  named_again.arrival_time = true;
  named_again.insert_id = "cd16pr1nfsj5dggc";
  EXPECT_EQ(policy.Apply(std::move(named), &counters).insert_id,
            policy.Apply(std::move(named_again), &counters).insert_id);
}

TEST(PolicyTest, GroupSubjectsAreSeparateFromUserSubjects) {
  const Policy policy(FixedKey(1));
  PolicyCounters counters;
  RawProfileUpdate group;
  group.group_key = "company";
  group.distinct_id = "user-0042";
  group.properties = {{"name", Value::String("Acme")}};
  const ProfileUpdate update = policy.Apply(std::move(group), &counters);
  EXPECT_NE(update.subject, policy.Pseudonym("user-0042"));
  EXPECT_EQ(update.group_key, "company");
  ASSERT_EQ(update.properties.size(), 1U);  // a company's name is not a person's
}

}  // namespace
}  // namespace minpanel::privacy

namespace minpanel::privacy {
namespace {

// The full policy with real tools: uap-core's regexes and the geolocation
// database that scripts/setup-geoip.sh installs.
class FullPolicyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tools = std::make_shared<PolicyTools>();
    auto user_agents = UserAgentParser::Load("/usr/share/uap-core/regexes.yaml");
    ASSERT_TRUE(user_agents.ok()) << user_agents.status().ToString();
    tools->user_agents = std::move(user_agents).value();
    const std::string repo = MINPANEL_SOURCE_DIR;
    auto geo = GeoDatabase::Open(DefaultGeoDatabasePaths(repo));
    ASSERT_TRUE(geo.ok()) << geo.status().ToString() << " (run scripts/setup-geoip.sh)";
    tools->geo = std::move(geo).value();
    tools_ = tools;
  }

  Policy Make(const std::string& toml = "") {
    auto spec = ParsePolicy(toml);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return Policy(FixedKey(1), std::make_shared<const PolicySpec>(*spec), tools_);
  }

  static RawEvent BrowserEvent() {
    RawEvent raw;
    raw.name = "Viewed invoice";
    raw.time_ms = 1'700'000'000'000;
    raw.distinct_id = "user-8812";
    raw.client_ip = "8.8.8.8";
    raw.user_agent =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36";
    raw.page_url = "https://app.example.test/org/4411/invoices?token=sk-proj-abcdefghijklmnopqrstuv"
                   "wx&utm_source=mail#top";
    raw.referrer = "https://mail.example.test/inbox?u=someone@example.test";
    raw.library = "web";
    raw.properties = {{"$email", Value::String("someone@example.test")},
                      {"company_id", Value::String("acme-17")},
                      {"$anon_distinct_id", Value::String("device-77")},
                      {"note", Value::String("call me at +44 20 7946 0958")},
                      {"tags", Value::List({"ok", "reach me: someone@example.test"})},
                      {"plan", Value::String("pro")},
                      {"name", Value::String("Pricing page")}};
    return raw;
  }

  static std::string Text(const Event& event, std::string_view key) {
    const Value* value = FindProperty(event.properties, key);
    return value != nullptr && value->type() == Value::Type::kString ? value->as_string() : "";
  }

  static std::shared_ptr<const PolicyTools> tools_;
};

std::shared_ptr<const PolicyTools> FullPolicyTest::tools_;

TEST_F(FullPolicyTest, DefaultPolicyGeneralisesContextAndRedacts) {
  const Policy policy = Make();
  PolicyCounters counters;
  const Event event = policy.Apply(BrowserEvent(), &counters);
  EXPECT_EQ(Text(event, "mp_country_code"), "US");
  EXPECT_EQ(Text(event, "$browser"), "Chrome");
  EXPECT_EQ(Text(event, "$browser_version"), "120");
  EXPECT_EQ(Text(event, "$os"), "Windows");
  EXPECT_EQ(Text(event, "$device_type"), "desktop");
  EXPECT_EQ(Text(event, "$current_url"),
            "https://app.example.test/org/:id/invoices?utm_source=mail");
  EXPECT_EQ(Text(event, "$referring_domain"), "mail.example.test");
  EXPECT_EQ(Text(event, "mp_lib"), "web");
  EXPECT_EQ(FindProperty(event.properties, "$email"), nullptr);
  EXPECT_EQ(Text(event, "note"), "call me at [phone]");
  EXPECT_EQ(FindProperty(event.properties, "tags")->as_list()[1], "reach me: [email]");
  EXPECT_EQ(Text(event, "plan"), "pro");
  EXPECT_EQ(Text(event, "name"), "Pricing page") << "a page's name is not a person's";
  EXPECT_EQ(Text(event, "$anon_distinct_id"), FormatPseudonym(policy.Pseudonym("device-77")))
      << "ids of people keep matching their subjects";
  EXPECT_TRUE(Text(event, "company_id").starts_with("psn_"));
  EXPECT_EQ(counters.properties_dropped, 1U);
  EXPECT_EQ(counters.properties_pseudonymised, 2U);
  EXPECT_EQ(counters.detections.by_kind[static_cast<size_t>(PiiKind::kPhone)], 1U);
  EXPECT_EQ(counters.context_fields_discarded, 4U);
}

// The live events view's marks (docs/formats/dashboard-api.md): told from
// the stored event alone, each value the policy changed, and nothing else.
TEST_F(FullPolicyTest, MarkStoredTellsEachChangeFromTheStoredEvent) {
  const Policy policy = Make();
  PolicyCounters counters;
  const Event event = policy.Apply(BrowserEvent(), &counters);
  std::map<std::string, std::string> changes;
  for (const Property& property : event.properties) {
    if (auto mark = policy.MarkStored(property.key, property.value)) {
      changes[property.key] = mark->change;
      EXPECT_FALSE(mark->why.empty()) << property.key;
    }
  }
  const std::map<std::string, std::string> expected = {{"mp_country_code", "derived"},
                                                       {"$region", "derived"},
                                                       {"$city", "derived"},
                                                       {"$browser", "derived"},
                                                       {"$browser_version", "derived"},
                                                       {"$os", "derived"},
                                                       {"$device_type", "derived"},
                                                       {"$current_url", "generalised"},
                                                       {"$referring_domain", "derived"},
                                                       {"company_id", "pseudonymised"},
                                                       {"$anon_distinct_id", "pseudonymised"},
                                                       {"note", "redacted"},
                                                       {"tags", "redacted"}};
  for (const auto& [key, change] : expected) {
    if (FindProperty(event.properties, key) != nullptr) {
      EXPECT_EQ(changes[key], change) << key;
    }
  }
  EXPECT_EQ(changes.count("plan"), 0U) << "kept as sent";
  EXPECT_EQ(changes.count("name"), 0U);
  EXPECT_EQ(changes.count("mp_lib"), 0U);
  EXPECT_EQ(policy.MarkStored("note", Value::String("call me at [phone]"))->why,
            "detectors: phone");
  EXPECT_EQ(Policy::RedactionMarks("[email] and [card]"), "email, card");
  EXPECT_EQ(Policy::RedactionMarks("[nothing]"), "");
  // A kept URL is no generalisation.
  EXPECT_FALSE(Make("page_url = \"keep\"\n").MarkStored("$current_url", Value::String("x")));
}

TEST_F(FullPolicyTest, NoRawValueSurvivesAnywhereInTheEvent) {
  const Policy policy = Make();
  PolicyCounters counters;
  const Event event = policy.Apply(BrowserEvent(), &counters);
  std::string everything = event.name;
  for (const Property& property : event.properties) {
    everything += property.key + "=";
    if (property.value.type() == Value::Type::kString) {
      everything += property.value.as_string();
    } else if (property.value.type() == Value::Type::kList) {
      for (const std::string& item : property.value.as_list()) {
        everything += item + ",";
      }
    }
    everything += ";";
  }
  for (const char* planted : {"someone@example.test", "8.8.8.8", "user-8812", "device-77",
                              "acme-17", "7946", "sk-proj", "4411", "Mozilla"}) {
    EXPECT_EQ(everything.find(planted), std::string::npos) << planted << " in " << everything;
  }
}

TEST_F(FullPolicyTest, RulesKeepDropAndPseudonymiseByNameAndGlob) {
  const Policy policy = Make(R"(
ip = "drop"
user_agent = "keep"
ip_precision = "country"
[[rule]]
match = "$email"
action = "keep"
[[rule]]
match = "debug.*"
action = "drop"
[[rule]]
match = "plan"
action = "pseudonymise"
)");
  RawEvent raw = BrowserEvent();
  raw.properties.push_back({"debug.trace", Value::String("x")});
  PolicyCounters counters;
  const Event event = policy.Apply(std::move(raw), &counters);
  EXPECT_EQ(Text(event, "$email"), "someone@example.test") << "an explicit keep is kept as sent";
  EXPECT_EQ(FindProperty(event.properties, "debug.trace"), nullptr);
  EXPECT_TRUE(Text(event, "plan").starts_with("psn_"));
  EXPECT_EQ(FindProperty(event.properties, "mp_country_code"), nullptr);
  EXPECT_TRUE(Text(event, "$user_agent").starts_with("Mozilla/5.0"));
}

TEST_F(FullPolicyTest, DetectorsAlsoCoverKeysAndEventNames) {
  const Policy policy = Make();
  RawEvent raw = BrowserEvent();
  raw.name = "Emailed someone@example.test";
  raw.properties = {{"clicked by someone@example.test", Value::Bool(true)}};
  PolicyCounters counters;
  const Event event = policy.Apply(std::move(raw), &counters);
  EXPECT_EQ(event.name, "Emailed [email]");
  ASSERT_FALSE(event.properties.empty());
  EXPECT_EQ(event.properties[0].key, "clicked by [email]");
}

TEST_F(FullPolicyTest, GroupIdsOnEventsJoinTheirGroupProfiles) {
  const Policy policy = Make();
  PolicyCounters counters;
  RawEvent raw = BrowserEvent();
  raw.properties = {{"company", Value::String("acme-17")},
                    {"$groups.company", Value::String("acme-17")}};
  const Event event = policy.Apply(std::move(raw), &counters);
  RawProfileUpdate group;
  group.group_key = "company";
  group.distinct_id = "acme-17";
  const ProfileUpdate profile = policy.Apply(std::move(group), &counters);
  EXPECT_EQ(Text(event, "company"), FormatPseudonym(profile.subject));
  EXPECT_EQ(Text(event, "$groups.company"), FormatPseudonym(profile.subject));
}

TEST_F(FullPolicyTest, KeysRedactedAlikeDoNotCollide) {
  const Policy policy = Make();
  PolicyCounters counters;
  RawEvent raw = BrowserEvent();
  raw.properties = {{"a@example.test", Value::Int(1)}, {"b@example.test", Value::Int(2)}};
  const Event event = policy.Apply(std::move(raw), &counters);
  size_t redacted_keys = 0;
  for (const Property& property : event.properties) {
    redacted_keys += property.key == "[email]" ? 1 : 0;
  }
  EXPECT_EQ(redacted_keys, 1U);
}

TEST_F(FullPolicyTest, TimesCoarsenedAndNumbersBucketed) {
  const Policy policy = Make("time_precision = \"hour\"\n[[rule]]\nmatch = \"amount\"\naction = \"generalise\"\n");
  RawEvent raw = BrowserEvent();
  raw.time_ms = 1'700'003'723'456;  // 2023-11-14 23:15:23.456 UTC
  raw.properties = {{"amount", Value::Int(1234)}};
  RawEvent same = raw;
  PolicyCounters counters;
  const Event event = policy.Apply(std::move(raw), &counters);
  EXPECT_EQ(event.time_ms, 1'700'002'800'000);
  EXPECT_EQ(FindProperty(event.properties, "amount")->as_int(), 1000);
  same.time_ms += 1000;  // a different event in the same hour keeps its own insert id
  EXPECT_NE(policy.Apply(std::move(same), &counters).insert_id, event.insert_id);
}

TEST_F(FullPolicyTest, ProfilesKeepOnlyWhatThePolicyKeeps) {
  const Policy policy = Make();
  PolicyCounters counters;
  RawProfileUpdate user;
  user.distinct_id = "user-8812";
  user.properties = {{"name", Value::String("Test Person")},
                     {"email", Value::String("someone@example.test")},
                     {"plan", Value::String("pro")}};
  const ProfileUpdate user_update = policy.Apply(std::move(user), &counters);
  ASSERT_EQ(user_update.properties.size(), 1U);
  EXPECT_EQ(user_update.properties[0].key, "plan");

  RawProfileUpdate group;
  group.group_key = "company";
  group.distinct_id = "acme-17";
  group.properties = {{"name", Value::String("Acme")}};
  const ProfileUpdate group_update = policy.Apply(std::move(group), &counters);
  ASSERT_EQ(group_update.properties.size(), 1U) << "a company's name is kept";
}

TEST_F(FullPolicyTest, EveryCopyOfThePageUrlAndReferrerIsGeneralisedAsTheOriginal) {
  const Policy policy = Make();
  const std::string page = "https://shop.example.test/order/88123/pay?coupon=QX7TOKEN&utm_medium=cpc";
  const std::string referrer = "https://mail.example.test/read?msg=QX7REF";
  RawEvent raw = BrowserEvent();
  raw.properties = {{"$initial_current_url", Value::String(page)},
                    {"$session_entry_url", Value::String(page)},
                    {"$pathname", Value::String("/order/88123/pay")},
                    {"$initial_referrer", Value::String(referrer)},
                    {"$session_entry_referrer", Value::String(referrer)},
                    {"$set.$initial_referrer", Value::String(referrer)},
                    {"$set_once.$initial_current_url", Value::String(page)},
                    {"$initial_referrer_direct", Value::String("$direct")}};
  PolicyCounters counters;
  const Event event = policy.Apply(std::move(raw), &counters);
  const std::string generalised = "https://shop.example.test/order/:id/pay?utm_medium=cpc";
  EXPECT_EQ(Text(event, "$initial_current_url"), generalised);
  EXPECT_EQ(Text(event, "$session_entry_url"), generalised);
  EXPECT_EQ(Text(event, "$set_once.$initial_current_url"), generalised);
  EXPECT_EQ(Text(event, "$pathname"), "/order/:id/pay");
  EXPECT_EQ(Text(event, "$initial_referrer"), "mail.example.test") << "a referrer keeps its host";
  EXPECT_EQ(Text(event, "$session_entry_referrer"), "mail.example.test");
  EXPECT_EQ(Text(event, "$set.$initial_referrer"), "mail.example.test");

  RawProfileUpdate person;
  person.distinct_id = "user-8812";
  person.properties = {{"$initial_current_url", Value::String(page)},
                       {"$initial_referrer", Value::String(referrer)}};
  const ProfileUpdate update = policy.Apply(std::move(person), &counters);
  ASSERT_EQ(update.properties.size(), 2U);
  EXPECT_EQ(update.properties[0].value.as_string(), generalised) << "on a person too";
  EXPECT_EQ(update.properties[1].value.as_string(), "mail.example.test");
}

TEST_F(FullPolicyTest, UrlCopiesFollowThePolicysPageUrlAndReferrerActions) {
  const std::string page = "https://shop.example.test/pay?coupon=QX7TOKEN";
  RawEvent raw = BrowserEvent();
  raw.properties = {{"$initial_current_url", Value::String(page)},
                    {"$initial_referrer", Value::String(page)}};
  PolicyCounters counters;
  const Event kept = Make("page_url = \"keep\"\nreferrer = \"drop\"\n").Apply(
      RawEvent(raw), &counters);
  EXPECT_EQ(Text(kept, "$initial_current_url"), page) << "page_url = keep keeps its copies";
  EXPECT_EQ(FindProperty(kept.properties, "$initial_referrer"), nullptr);
  const Event ruled = Make("[[rule]]\nmatch = \"$initial_*\"\naction = \"keep\"\n").Apply(
      RawEvent(raw), &counters);
  EXPECT_EQ(Text(ruled, "$initial_referrer"), page) << "an explicit rule comes first";
}

TEST_F(FullPolicyTest, AnyUrlWithAQueryLosesItUnderTheDetectors) {
  const Policy policy = Make();
  RawEvent raw = BrowserEvent();
  raw.properties = {
      {"landing", Value::String("HTTPS://shop.example.test/welcome?invite=QX7INVITE&utm_source=x")},
      {"links", Value::List({"https://a.example.test/x#access_token=QX7FRAG", "plain words"})},
      {"broken", Value::String("https://exa mple.test/?QX7BROKEN")},
      {"docs", Value::String("https://docs.example.test/guide/setup")}};
  PolicyCounters counters;
  const Event event = policy.Apply(std::move(raw), &counters);
  EXPECT_EQ(Text(event, "landing"), "https://shop.example.test/welcome?utm_source=x");
  EXPECT_EQ(FindProperty(event.properties, "links")->as_list()[0], "https://a.example.test/x");
  EXPECT_EQ(FindProperty(event.properties, "links")->as_list()[1], "plain words");
  EXPECT_EQ(Text(event, "broken"), kUrlRedacted);
  EXPECT_EQ(Text(event, "docs"), "https://docs.example.test/guide/setup")
      << "a URL without a query is left to the detectors alone";
}

}  // namespace
}  // namespace minpanel::privacy
