// The profile table (folding each operation, persons, the limit, the cache
// over a real engine) and queries by profile and group properties: worked
// examples, and random queries checked against the same queries over events
// that carry the profile and group values as their own properties, worked
// out row by row from a naive fold of the updates.
#include "query/profile_table.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "core/time_units.h"
#include "query/query.h"
#include "query/query_test_util.h"

namespace minpanel::query {
namespace {

using testing::SubjectFromName;

constexpr int64_t kBaseMs = 1709251200000;  // 2024-03-01T00:00:00Z

ProfileUpdate Update(std::string_view subject, ProfileOperation operation, Properties properties,
                     std::string group_key = "") {
  ProfileUpdate update;
  update.subject = SubjectFromName(subject);
  update.group_key = std::move(group_key);
  update.operation = operation;
  update.properties = std::move(properties);
  return update;
}

std::shared_ptr<const ProfileTable> Fold(const std::vector<ProfileUpdate>& updates) {
  ProfileTable::Builder builder;
  for (const ProfileUpdate& update : updates) {
    EXPECT_TRUE(builder.Add(update).ok());
  }
  return builder.Finish();
}

const Value* PersonValue(const ProfileTable& table, std::string_view subject,
                         std::string_view key) {
  const Profile* profile = table.FindPerson(SubjectFromName(subject));
  const ProfileProperty* property =
      profile == nullptr ? nullptr : FindProfileProperty(*profile, key);
  return property == nullptr ? nullptr : &property->value;
}

TEST(ProfileTableTest, SetSetOnceAddAndUnsetFoldInStoreOrder) {
  const auto table = Fold({
      Update("u", ProfileOperation::kSet, {{"plan", Value::String("free")}}),
      Update("u", ProfileOperation::kSetOnce,
             {{"plan", Value::String("pro")}, {"source", Value::String("ads")}}),
      Update("u", ProfileOperation::kSet, {{"plan", Value::String("team")}}),
      Update("u", ProfileOperation::kAdd, {{"logins", Value::Int(2)}}),
      Update("u", ProfileOperation::kAdd, {{"logins", Value::Int(3)}}),
      Update("u", ProfileOperation::kAdd, {{"spent", Value::Int(1)}}),
      Update("u", ProfileOperation::kAdd, {{"spent", Value::Double(0.5)}}),
      Update("u", ProfileOperation::kAdd, {{"plan", Value::Int(1)}}),  // not a number: ignored
      Update("u", ProfileOperation::kSet, {{"gone", Value::Bool(true)}}),
      Update("u", ProfileOperation::kUnset, {{"gone", Value::Null()}}),
  });
  EXPECT_EQ(*PersonValue(*table, "u", "plan"), Value::String("team"));
  EXPECT_EQ(*PersonValue(*table, "u", "source"), Value::String("ads"));
  EXPECT_EQ(*PersonValue(*table, "u", "logins"), Value::Int(5));
  EXPECT_EQ(*PersonValue(*table, "u", "spent"), Value::Double(1.5));
  EXPECT_EQ(PersonValue(*table, "u", "gone"), nullptr);
  EXPECT_EQ(table->person_profiles(), 1U);
  EXPECT_EQ(table->updates(), 10U);
}

TEST(ProfileTableTest, ListOperationsKeepStringLists) {
  const auto table = Fold({
      Update("u", ProfileOperation::kUnion, {{"tags", Value::List({"a", "b"})}}),
      Update("u", ProfileOperation::kUnion, {{"tags", Value::List({"b", "c"})}}),
      Update("u", ProfileOperation::kAppend, {{"tags", Value::String("a")}}),
      Update("u", ProfileOperation::kRemove, {{"tags", Value::String("b")}}),
      Update("u", ProfileOperation::kAppend, {{"seen", Value::String("x")}}),
      Update("u", ProfileOperation::kSet, {{"name", Value::String("plan")}}),
      Update("u", ProfileOperation::kAppend, {{"name", Value::String("y")}}),  // not a list
      Update("u", ProfileOperation::kAppend, {{"seen", Value::Int(3)}}),       // not a string
  });
  EXPECT_EQ(*PersonValue(*table, "u", "tags"), Value::List({"a", "c", "a"}));
  EXPECT_EQ(*PersonValue(*table, "u", "seen"), Value::List({"x"}));
  EXPECT_EQ(*PersonValue(*table, "u", "name"), Value::String("plan"));
}

TEST(ProfileTableTest, DeleteEmptiesOneProfileAndGroupsAreKeyedByGroupKey) {
  const auto table = Fold({
      Update("u", ProfileOperation::kSet, {{"plan", Value::String("pro")}}),
      Update("v", ProfileOperation::kSet, {{"plan", Value::String("free")}}),
      Update("u", ProfileOperation::kDelete, {}),
      Update("acme", ProfileOperation::kSet, {{"industry", Value::String("retail")}}, "company"),
      Update("acme", ProfileOperation::kSet, {{"industry", Value::String("bank")}}, "team_id"),
  });
  EXPECT_EQ(PersonValue(*table, "u", "plan"), nullptr);
  EXPECT_EQ(*PersonValue(*table, "v", "plan"), Value::String("free"));
  const Profile* company = table->FindGroup("company", SubjectFromName("acme"));
  ASSERT_NE(company, nullptr);
  EXPECT_EQ(FindProfileProperty(*company, "industry")->value, Value::String("retail"));
  EXPECT_EQ(
      FindProfileProperty(*table->FindGroup("team_id", SubjectFromName("acme")), "industry")->value,
      Value::String("bank"));
  EXPECT_EQ(table->FindGroup("org_id", SubjectFromName("acme")), nullptr);
  EXPECT_EQ(table->FindPerson(SubjectFromName("acme")), nullptr);
  EXPECT_EQ(table->group_profiles(), 2U);
}

TEST(ProfileTableTest, PastTheLimitIsResourceExhaustedNamingIt) {
  ProfileTable::Builder builder(4096);
  Status status = Status::Ok();
  for (int subject_idx = 0; subject_idx < 100 && status.ok(); ++subject_idx) {
    status = builder.Add(Update("u" + std::to_string(subject_idx), ProfileOperation::kSet,
                                {{"plan", Value::String("pro")}}));
  }
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(status.message().find("kProfileTableBytesMax"), std::string::npos) << status.message();
  // The count grows with the profiles: 100 bytes and more each.
  ProfileTable::Builder big;
  for (int subject_idx = 0; subject_idx < 1000; ++subject_idx) {
    ASSERT_TRUE(big.Add(Update("u" + std::to_string(subject_idx), ProfileOperation::kSet,
                               {{"plan", Value::String("pro")}, {"seats", Value::Int(3)}}))
                    .ok());
  }
  const auto table = big.Finish();
  EXPECT_GE(table->memory_bytes(), 1000U * (64 + 2 * sizeof(ProfileProperty)));
  EXPECT_LE(table->memory_bytes(), 1000U * 400);
}

// A person's ids each have a profile: per key, the value written last.
TEST(ProfileTableTest, APersonIsTheUnionOfItsIdsLatestWritePerKey) {
  const auto table = Fold({
      Update("anon", ProfileOperation::kSet,
             {{"plan", Value::String("free")}, {"source", Value::String("ads")}}),
      Update("user", ProfileOperation::kSet, {{"plan", Value::String("pro")}}),
      Update("anon", ProfileOperation::kSet, {{"seats", Value::Int(2)}}),
      Update("user", ProfileOperation::kSetOnce, {{"source", Value::String("mail")}}),
      Update("other", ProfileOperation::kSet, {{"plan", Value::String("team")}}),
  });
  std::vector<IdentityLink> links(1);
  links[0].member = SubjectFromName("anon");
  links[0].anchor = SubjectFromName("user");
  links[0].anchor_identified = true;
  auto identity = std::make_shared<const IdentityMap>(IdentityMap::Build(links));
  const auto persons = table->WithPersons(identity);
  for (const char* id : {"anon", "user"}) {
    EXPECT_EQ(*PersonValue(*persons, id, "plan"), Value::String("pro")) << id;
    EXPECT_EQ(*PersonValue(*persons, id, "source"), Value::String("mail")) << id;
    EXPECT_EQ(*PersonValue(*persons, id, "seats"), Value::Int(2)) << id;
  }
  EXPECT_EQ(*PersonValue(*persons, "other", "plan"), Value::String("team"));
  // The table itself is unchanged: each id its own profile.
  EXPECT_EQ(*PersonValue(*table, "anon", "plan"), Value::String("free"));
}

// The cache over a real embedded engine: the same table while nothing
// changes, a new one after an update or an erasure.
TEST(ProfileTableCacheTest, RebuildsOnlyWhenProfilesOrDeletionsChange) {
  const std::filesystem::path folder =
      std::filesystem::path(::testing::TempDir()) / ("profile_cache_" + std::to_string(::getpid()));
  std::filesystem::remove_all(folder);
  store::Options options;
  options.folder = folder.string();
  options.file_system = NewPosixFileSystem();
  options.clock = NewSystemClock();
  auto engine = store::OpenEmbeddedEngine(options);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  auto append = [&](ProfileUpdate update) {
    store::AppendBatch batch;
    batch.project_id = 1;
    batch.profile_updates.push_back(std::move(update));
    ASSERT_TRUE((*engine)->Append(std::move(batch)).ok());
  };
  append(Update("u", ProfileOperation::kSet, {{"plan", Value::String("pro")}}));
  ProfileTableCache cache;
  auto first = cache.Get(**engine, 1);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*PersonValue(**first, "u", "plan"), Value::String("pro"));
  auto again = cache.Get(**engine, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(first->get(), again->get());

  append(Update("u", ProfileOperation::kSet, {{"plan", Value::String("team")}}));
  auto updated = cache.Get(**engine, 1);
  ASSERT_TRUE(updated.ok());
  EXPECT_NE(first->get(), updated->get());
  EXPECT_EQ(*PersonValue(**updated, "u", "plan"), Value::String("team"));

  ASSERT_TRUE((*engine)->EraseSubjects(1, {SubjectFromName("u")}).ok());
  auto erased = cache.Get(**engine, 1);
  ASSERT_TRUE(erased.ok());
  EXPECT_EQ((*erased)->FindPerson(SubjectFromName("u")), nullptr);
  EXPECT_TRUE((*engine)->Close().ok());
  std::filesystem::remove_all(folder);
}

// Worked examples.

std::string Group(std::string_view id) { return FormatPseudonym(SubjectFromName(id)); }

std::vector<std::shared_ptr<const store::SegmentReader>> Segments(std::vector<Event> events) {
  std::sort(events.begin(), events.end(), [](const Event& left, const Event& right) {
    return std::tie(left.subject, left.time_ms, left.insert_id) <
           std::tie(right.subject, right.time_ms, right.insert_id);
  });
  auto segment = testing::MakeSegment(events, 2);
  EXPECT_TRUE(segment.ok()) << segment.status().ToString();
  return {*segment};
}

Event MakeEvent(std::string_view name, std::string_view subject, int64_t time_ms,
                Properties properties = {}) {
  static uint64_t insert_id = 0;
  Event event;
  event.name = std::string(name);
  event.subject = SubjectFromName(subject);
  event.time_ms = time_ms;
  event.insert_id = Id128{0, ++insert_id};
  event.properties = std::move(properties);
  return event;
}

std::string Answer(std::string_view query_json, const QueryContext& context) {
  auto spec = ParseQuery(query_json);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  if (!spec.ok()) {
    return "";
  }
  auto result = RunQuery(*spec, context);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ok() ? QueryResultToJson(*result) : "";
}

class ProfileQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // a (pro, acme) buys twice; b (free, acme) once; c (pro, no profile
    // group) once through PostHog's $groups; d has no profile and no group.
    context_.segments = Segments({
        MakeEvent("buy", "a", kBaseMs + kHourMs, {{"company", Value::String(Group("acme"))}}),
        MakeEvent("buy", "a", kBaseMs + kDayMs, {{"company", Value::String(Group("acme"))}}),
        MakeEvent("buy", "b", kBaseMs + 2 * kHourMs, {{"company", Value::String(Group("acme"))}}),
        MakeEvent("buy", "c", kBaseMs + 3 * kHourMs,
                  {{"$groups.company", Value::String(Group("globex"))}}),
        MakeEvent("buy", "d", kBaseMs + 4 * kHourMs),
        MakeEvent("signup", "a", kBaseMs),
        MakeEvent("signup", "b", kBaseMs),
        MakeEvent("signup", "d", kBaseMs),
    });
    context_.threads = 1;
    context_.profiles = Fold({
        Update("a", ProfileOperation::kSet, {{"plan", Value::String("pro")}}),
        Update("b", ProfileOperation::kSet, {{"plan", Value::String("free")}}),
        Update("c", ProfileOperation::kSet, {{"plan", Value::String("pro")}}),
        Update("acme", ProfileOperation::kSet, {{"industry", Value::String("retail")}}, "company"),
        Update("globex", ProfileOperation::kSet, {{"industry", Value::String("energy")}},
               "company"),
    });
  }
  QueryContext context_;
};

constexpr std::string_view kRange = R"("from":"2024-03-01","to":"2024-03-03")";

TEST_F(ProfileQueryTest, SegmentationFiltersAndBreaksDownByProfileProperty) {
  const std::string filtered = Answer(
      std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
          R"(,"events":[{"event":"buy","filters":[{"property":"plan","source":"profile","op":"eq","value":"pro"}]}]})",
      context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"values":[2,1],"total":3}]})", filtered), "");
  const std::string by_plan = Answer(
      std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
          R"(,"events":["buy"],"measure":"unique","breakdown":{"property":"plan","source":"profile"}})",
      context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"breakdown":["pro"],"total":2},
      {"breakdown":["free"],"total":1},{"breakdown":[null],"total":1}]})",
                                    by_plan),
            "");
}

TEST_F(ProfileQueryTest, GroupPropertiesFollowTheEventsGroupId) {
  const std::string by_industry = Answer(
      std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
          R"(,"events":["buy"],"breakdown":[{"property":"industry","source":"group","group_key":"company"}]})",
      context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"breakdown":["retail"],"total":3},
      {"breakdown":["energy"],"total":1},{"breakdown":[null],"total":1}]})",
                                    by_industry),
            "");
  const std::string unique_groups =
      Answer(std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
                 R"(,"events":["buy"],"measure":{"type":"unique","group_key":"company"}})",
             context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"values":[2,1],"total":2}]})", unique_groups),
            "");
}

// An event in several groups (Mixpanel's group key holding a list): each
// group counts in a unique-groups measure, and a group property is the
// list of the groups' values.
TEST_F(ProfileQueryTest, AListOfGroupIdsPutsTheEventInEachGroup) {
  context_.segments = Segments({
      MakeEvent("buy", "a", kBaseMs + kHourMs,
                {{"company", Value::List({Group("acme"), Group("globex"), "raw-id"})}}),
      MakeEvent("buy", "b", kBaseMs + 2 * kHourMs,
                {{"$groups.company", Value::List({Group("acme"), Group("acme")})}}),
      MakeEvent("buy", "c", kBaseMs + kDayMs, {{"company", Value::List({Group("globex")})}}),
  });
  const std::string unique_groups =
      Answer(std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
                 R"(,"events":["buy"],"measure":{"type":"unique","group_key":"company"}})",
             context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"values":[2,1],"total":2}]})", unique_groups),
            "");
  const std::string by_industry = Answer(
      std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
          R"(,"events":["buy"],"breakdown":[{"property":"industry","source":"group","group_key":"company"}]})",
      context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"breakdown":["energy"],"total":1},
      {"breakdown":["retail"],"total":1},{"breakdown":[["energy","retail"]],"total":1}]})",
                                    by_industry),
            "")
      << by_industry;
  const std::string retail = Answer(
      std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
          R"(,"events":[{"event":"buy","filters":[{"property":"industry","source":"group","group_key":"company","op":"eq","value":"retail"}]}]})",
      context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"values":[2,0],"total":2}]})", retail), "")
      << retail;
}

// Under k-suppression a unique-groups cell is withheld by the people behind
// it: on 2 March one person (a) bought, so the day is withheld though it
// counts a group; on 1 March four people did.
TEST_F(ProfileQueryTest, UniqueGroupsAreSuppressedByThePeopleBehindACell) {
  context_.min_group_size = 2;
  const std::string unique_groups =
      Answer(std::string(R"({"kind":"segmentation",)") + std::string(kRange) +
                 R"(,"events":["buy"],"measure":{"type":"unique","group_key":"company"}})",
             context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"series":[{"values":[2,null],"suppressed":[1]}]})",
                                    unique_groups),
            "")
      << unique_groups;
}

TEST_F(ProfileQueryTest, FunnelsAndRetentionUseProfilesToo) {
  const std::string funnel =
      Answer(std::string(R"({"kind":"funnel",)") + std::string(kRange) +
                 R"(,"steps":["signup","buy"],"breakdown":{"property":"plan","source":"profile"}})",
             context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"steps":[{"subjects":3},{"subjects":3}],"groups":[
      {"breakdown":["free"],"steps":[{"subjects":1},{"subjects":1}]},
      {"breakdown":["pro"],"steps":[{"subjects":1},{"subjects":1}]},
      {"breakdown":[null],"steps":[{"subjects":1},{"subjects":1}]}]})",
                                    funnel),
            "");
  const std::string retention = Answer(
      std::string(R"({"kind":"retention",)") + std::string(kRange) +
          R"(,"birth":{"event":"signup","filters":[{"property":"plan","source":"profile","op":"is_set"}]},"return":"buy","periods":1})",
      context_);
  EXPECT_EQ(testing::JsonSubsetDiff(R"({"size":2,"total":{"counts":[2,1]}})", retention), "");
}

TEST(ProfileQueryParseTest, BadSourcesAreRefusedNamingTheField) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {R"({"property":"plan","source":"person","op":"is_set"})",
       "events[0].filters[0].source: unknown source 'person' (event, profile or group)"},
      {R"({"property":"industry","source":"group","op":"is_set"})",
       "events[0].filters[0].group_key: is required with \"source\": \"group\""},
      {R"({"property":"plan","source":"profile","group_key":"company","op":"is_set"})",
       "events[0].filters[0].group_key: only with \"source\": \"group\""},
      {R"({"property":"a\u0000b","op":"is_set"})",
       "events[0].filters[0].property: must not contain a NUL character"},
  };
  for (const auto& [filter, message] : cases) {
    const std::string query =
        std::string(
            R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[)") +
        std::string(filter) + "]}]}";
    auto spec = ParseQuery(query);
    ASSERT_FALSE(spec.ok()) << filter;
    EXPECT_EQ(spec.status().message(), message);
  }
  auto measure = ParseQuery(
      R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":["E"],"measure":{"type":"total","group_key":"company"}})");
  ASSERT_FALSE(measure.ok());
  EXPECT_EQ(measure.status().message(),
            "measure.group_key: only with \"type\": \"unique\" (distinct groups)");
  auto breakdown = ParseQuery(
      R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":["E"],"breakdown":[{"property":"x","source":"group","group_key":""}]})");
  ASSERT_FALSE(breakdown.ok());
  EXPECT_EQ(breakdown.status().message(), "breakdown[0].group_key: must not be empty");
  // Without a profile table RunQuery refuses rather than answering wrongly.
  auto spec = ParseQuery(
      R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":["E"],"breakdown":{"property":"plan","source":"profile"}})");
  ASSERT_TRUE(spec.ok());
  EXPECT_TRUE(UsesProfiles(*spec));
  QueryContext context;
  auto result = RunQuery(*spec, context);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("profiles:"), std::string::npos);
}

// Random queries: the engine reading profiles against the engine reading
// the same values copied into each event (keys "ref_plan", "ref_industry")
// from a naive fold written here.

struct Naive {
  // subject -> key -> (value, sequence)
  std::map<Id128, std::map<std::string, std::pair<Value, uint64_t>>> persons;
  std::map<Id128, std::map<std::string, std::pair<Value, uint64_t>>> groups;
  uint64_t sequence = 0;
  void Apply(const ProfileUpdate& update) {
    auto& profile = update.group_key.empty() ? persons[update.subject] : groups[update.subject];
    const uint64_t at = sequence++;
    if (update.operation == ProfileOperation::kDelete) {
      profile.clear();
      return;
    }
    for (const Property& property : update.properties) {
      if (update.operation == ProfileOperation::kUnset) {
        profile.erase(property.key);
      } else if (update.operation == ProfileOperation::kSet || !profile.contains(property.key)) {
        profile[property.key] = {property.value, at};
      }
    }
  }
};

TEST(ProfileQueryDifferentialTest, ProfileAndGroupPropertiesMatchCopiedEventProperties) {
  std::mt19937_64 random(20261127);
  auto pick = [&](size_t count) { return static_cast<size_t>(random() % count); };
  const char* const plans[] = {"free", "pro", "team"};
  const char* const industries[] = {"retail", "energy"};
  for (int round = 0; round < 40; ++round) {
    const size_t subject_count = 4 + pick(12);
    std::vector<std::string> subjects;
    for (size_t subject_idx = 0; subject_idx < subject_count; ++subject_idx) {
      subjects.push_back("s" + std::to_string(round) + "_" + std::to_string(subject_idx));
    }
    // Profile updates: $set / $set_once / $unset / $delete on people, $set on groups.
    std::vector<ProfileUpdate> updates;
    for (size_t update_idx = pick(30); update_idx > 0; --update_idx) {
      const size_t kind = pick(10);
      if (kind < 2) {
        updates.push_back(Update("g" + std::to_string(pick(4)), ProfileOperation::kSet,
                                 {{"industry", Value::String(industries[pick(2)])}}, "company"));
        continue;
      }
      const ProfileOperation operation =
          kind < 6 ? ProfileOperation::kSet
                   : (kind < 8 ? ProfileOperation::kSetOnce
                               : (kind < 9 ? ProfileOperation::kUnset : ProfileOperation::kDelete));
      Properties properties;
      if (operation != ProfileOperation::kDelete) {
        properties.push_back(
            {"plan", operation == ProfileOperation::kUnset
                         ? Value::Null()
                         : (pick(4) == 0 ? Value::Int(static_cast<int64_t>(pick(3)))
                                         : Value::String(plans[pick(3)]))});
      }
      updates.push_back(Update(subjects[pick(subject_count)], operation, properties));
    }
    Naive naive;
    for (const ProfileUpdate& update : updates) {
      naive.Apply(update);
    }
    // Events, with random alias links between subjects.
    std::vector<std::vector<Event>> parts(1 + pick(3));
    const char* const names[] = {"A", "B", "C"};
    for (size_t event_idx = 10 + pick(60); event_idx > 0; --event_idx) {
      const std::string& subject = subjects[pick(subject_count)];
      Properties properties;
      const size_t group = pick(6);
      if (group < 4) {
        properties.push_back({pick(2) == 0 ? "company" : "$groups.company",
                              Value::String(Group("g" + std::to_string(group)))});
      }
      std::sort(properties.begin(), properties.end(),
                [](const Property& l, const Property& r) { return l.key < r.key; });
      parts[pick(parts.size())].push_back(
          MakeEvent(names[pick(3)], subject, kBaseMs + static_cast<int64_t>(pick(4 * 24)) * kHourMs,
                    std::move(properties)));
    }
    for (size_t link_idx = pick(3); link_idx > 0; --link_idx) {
      Event alias = MakeEvent(
          "$create_alias", subjects[pick(subject_count)],
          kBaseMs + static_cast<int64_t>(pick(24)) * kHourMs,
          {{"alias",
            Value::String(FormatPseudonym(SubjectFromName(subjects[pick(subject_count)])))}});
      parts[pick(parts.size())].push_back(std::move(alias));
    }
    QueryContext with_profiles;
    for (const std::vector<Event>& part : parts) {
      for (auto& segment : Segments(part)) {
        with_profiles.segments.push_back(segment);
      }
    }
    auto identity = ResolveIdentities(with_profiles.segments);
    ASSERT_TRUE(identity.ok());
    // The naive person profile: the union of the person's ids, latest write per key.
    auto person_value = [&](const Id128& subject, const std::string& key) -> std::optional<Value> {
      const Id128* person = (*identity)->Find(subject);
      std::optional<std::pair<Value, uint64_t>> best;
      for (const auto& [id, profile] : naive.persons) {
        const Id128* other = (*identity)->Find(id);
        const bool same = person == nullptr ? id == subject : other != nullptr && *other == *person;
        const auto it = profile.find(key);
        if (same && it != profile.end() && (!best || it->second.second > best->second)) {
          best = it->second;
        }
      }
      return best ? std::optional<Value>(best->first) : std::nullopt;
    };
    QueryContext copied;
    for (std::vector<Event> part : parts) {
      for (Event& event : part) {
        if (auto plan = person_value(event.subject, "plan")) {
          event.properties.push_back({"ref_plan", *plan});
        }
        const Value* group = FindProperty(event.properties, "company");
        group = group != nullptr ? group : FindProperty(event.properties, "$groups.company");
        if (group != nullptr) {
          const Id128 id = *Id128::FromHex(group->as_string().substr(4));
          const auto profile = naive.groups.find(id);
          if (profile != naive.groups.end() && profile->second.contains("industry")) {
            event.properties.push_back({"ref_industry", profile->second.at("industry").first});
          }
        }
        std::sort(event.properties.begin(), event.properties.end(),
                  [](const Property& l, const Property& r) { return l.key < r.key; });
      }
      for (auto& segment : Segments(part)) {
        copied.segments.push_back(segment);
      }
    }
    with_profiles.profiles = Fold(updates);
    // One random query in two spellings.
    const std::string plan_ref = R"({"property":"plan","source":"profile")";
    const std::string industry_ref =
        R"({"property":"industry","source":"group","group_key":"company")";
    const std::string ops[] = {R"("op":"eq","value":"pro"})", R"("op":"ne","value":"free"})",
                               R"("op":"is_set"})", R"("op":"in","values":["team",1]})"};
    const std::string op = ops[pick(4)];
    const bool by_group = pick(2) == 0;
    auto spelled = [&](bool profiles) {
      const std::string filter =
          (by_group ? (profiles ? industry_ref : R"({"property":"ref_industry")")
                    : (profiles ? plan_ref : R"({"property":"ref_plan")")) +
          "," + (by_group ? R"("op":"eq","value":"retail"})" : op);
      const std::string breakdown = by_group
                                        ? (profiles ? plan_ref + "}" : R"("ref_plan")")
                                        : (profiles ? industry_ref + "}" : R"("ref_industry")");
      std::vector<std::string> queries = {
          R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-05","events":["A",{"event":"B","filters":[)" +
              filter + R"(]}],"measure":")" + (pick(2) == 0 ? "total" : "unique") +
              R"(","breakdown":)" + breakdown + "}",
          R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-04","steps":[{"event":"A","filters":[)" +
              filter + R"(]},"B"],"breakdown":)" + breakdown + "}",
          R"({"kind":"retention","from":"2024-03-01","to":"2024-03-03","birth":{"any_event":true,"filters":[)" +
              filter + R"(]},"return":"C","periods":2,"breakdown":)" + breakdown + "}",
      };
      return queries;
    };
    // The same random choices for both spellings.
    const auto state = random;
    const std::vector<std::string> profile_queries = spelled(true);
    random = state;
    const std::vector<std::string> copied_queries = spelled(false);
    for (size_t query_idx = 0; query_idx < profile_queries.size(); ++query_idx) {
      for (const uint32_t threads : {1U, 2U, 3U}) {
        with_profiles.threads = threads;
        copied.threads = threads;
        const std::string expected = Answer(copied_queries[query_idx], copied);
        const std::string actual = Answer(profile_queries[query_idx], with_profiles);
        const size_t expected_stats = expected.find(",\"stats\"");
        const size_t actual_stats = actual.find(",\"stats\"");
        ASSERT_EQ(expected.substr(0, expected_stats), actual.substr(0, actual_stats))
            << "round " << round << " threads " << threads << "\n"
            << profile_queries[query_idx];
      }
    }
  }
}

// Unique groups against a count of distinct group ids per day.
TEST(ProfileQueryDifferentialTest, UniqueGroupsCountDistinctGroupIds) {
  std::mt19937_64 random(7);
  auto pick = [&](size_t count) { return static_cast<size_t>(random() % count); };
  for (int round = 0; round < 20; ++round) {
    std::vector<Event> events;
    std::map<int64_t, std::set<std::string>> by_day;
    std::set<std::string> all;
    for (size_t event_idx = 5 + pick(80); event_idx > 0; --event_idx) {
      const int64_t time_ms = kBaseMs + static_cast<int64_t>(pick(3 * 24)) * kHourMs;
      Properties properties;
      const size_t group = pick(12);
      const bool named_a = pick(2) == 0;
      if (group < 10) {
        const std::string id = Group("g" + std::to_string(group));
        properties.push_back({pick(2) == 0 ? "company" : "$groups.company", Value::String(id)});
        if (named_a) {
          by_day[(time_ms - kBaseMs) / kDayMs].insert(id);
          all.insert(id);
        }
      }
      events.push_back(MakeEvent(named_a ? "A" : "B", "u" + std::to_string(pick(9)), time_ms,
                                 std::move(properties)));
    }
    QueryContext context;
    context.segments = Segments(events);
    context.threads = 1 + static_cast<uint32_t>(pick(3));
    const std::string answer = Answer(
        R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-04","events":["A"],"measure":{"type":"unique","group_key":"company"}})",
        context);
    std::string expected = R"({"series":[{"values":[)";
    for (int64_t day = 0; day < 3; ++day) {
      expected += (day > 0 ? "," : "") + std::to_string(by_day[day].size());
    }
    expected += "],\"total\":" + std::to_string(all.size()) + "}]}";
    EXPECT_EQ(testing::JsonSubsetDiff(expected, answer), "") << "round " << round;
  }
}

}  // namespace
}  // namespace minpanel::query
