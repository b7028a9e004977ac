// Identity merging: the rules of docs/identity.md on links, and queries over
// real in-memory segments that count persons.
#include "query/identity.h"

#include <gtest/gtest.h>

#include "core/time_units.h"
#include "query/query.h"
#include "query/query_test_util.h"

namespace minpanel::query {
namespace {

using testing::SubjectFromName;

constexpr int64_t kBaseMs = 1710028800000;  // 2024-03-10T00:00Z

Id128 Id(std::string_view name) { return SubjectFromName(name); }
std::string Psn(std::string_view name) { return FormatPseudonym(Id(name)); }

IdentityLink Link(int64_t time_ms, std::string_view member, std::string_view anchor,
                  IdentityLinkKind kind, bool anchor_identified) {
  IdentityLink link;
  link.time_ms = time_ms;
  link.member = Id(member);
  link.anchor = Id(anchor);
  link.kind = kind;
  link.anchor_identified = anchor_identified;
  link.member_identified = kind == IdentityLinkKind::kMergeDangerously;
  return link;
}

IdentityLink Identify(int64_t time_ms, std::string_view anon, std::string_view user) {
  return Link(time_ms, anon, user, IdentityLinkKind::kIdentify, true);
}
IdentityLink Alias(int64_t time_ms, std::string_view alias, std::string_view distinct_id) {
  return Link(time_ms, alias, distinct_id, IdentityLinkKind::kAlias, false);
}

// The person of `name`: itself when it has no other id.
Id128 PersonOf(const IdentityMap& map, std::string_view name) {
  const Id128* person = map.Find(Id(name));
  return person == nullptr ? Id(name) : *person;
}

TEST(IdentityMapTest, NoLinksIsEmpty) {
  const IdentityMap map = IdentityMap::Build({});
  EXPECT_TRUE(map.empty());
  EXPECT_EQ(map.Find(Id("a")), nullptr);
}

TEST(IdentityMapTest, IdentifyMakesTheUserThePerson) {
  const IdentityMap map = IdentityMap::Build({Identify(1, "anon", "user")});
  EXPECT_EQ(PersonOf(map, "anon"), Id("user"));
  EXPECT_EQ(PersonOf(map, "user"), Id("user"));
  EXPECT_EQ(map.persons(), 1u);
  EXPECT_EQ(map.linked_ids(), 2u);
}

TEST(IdentityMapTest, ChainOfThreeIsOnePerson) {
  // anon -> device (alias), device -> user (identify): three ids, one person.
  const IdentityMap map =
      IdentityMap::Build({Alias(1, "anon", "device"), Identify(2, "device", "user")});
  EXPECT_EQ(PersonOf(map, "anon"), Id("user"));
  EXPECT_EQ(PersonOf(map, "device"), Id("user"));
  EXPECT_EQ(map.persons(), 1u);
}

// A device seen first with u1, then with u2: the second link is refused,
// but u2 is still a user id, so a later alias between u2 and the device (or
// anything of u1's person) is refused too — one person never holds two user
// ids (the privacy canary's planted events share one device id this way).
TEST(IdentityMapTest, UserIdOfARefusedLinkStaysIdentified) {
  const IdentityMap map =
      IdentityMap::Build({Link(1, "device", "u1", IdentityLinkKind::kIdentified, true),
                          Link(2, "device", "u2", IdentityLinkKind::kIdentified, true),
                          Alias(3, "u2", "device"), Alias(4, "other", "u2")});
  EXPECT_EQ(PersonOf(map, "device"), Id("u1"));
  EXPECT_EQ(PersonOf(map, "u2"), Id("u2"));
  EXPECT_EQ(PersonOf(map, "other"), Id("u2"));
  EXPECT_EQ(map.refused_identified(), 2u);
  EXPECT_EQ(map.persons(), 2u);
}

TEST(IdentityMapTest, TwoDevicesOfOneUser) {
  const IdentityMap map =
      IdentityMap::Build({Identify(1, "phone", "user"), Identify(5, "laptop", "user")});
  EXPECT_EQ(PersonOf(map, "phone"), Id("user"));
  EXPECT_EQ(PersonOf(map, "laptop"), Id("user"));
  EXPECT_EQ(map.persons(), 1u);
  EXPECT_EQ(map.refused_identified(), 0u);
}

TEST(IdentityMapTest, CycleIsOnePersonWithoutRefusal) {
  const IdentityMap map = IdentityMap::Build(
      {Alias(1, "a", "b"), Alias(2, "b", "c"), Alias(3, "c", "a"), Alias(4, "a", "b")});
  EXPECT_EQ(PersonOf(map, "a"), PersonOf(map, "c"));
  EXPECT_EQ(PersonOf(map, "b"), PersonOf(map, "c"));
  EXPECT_EQ(map.persons(), 1u);
  EXPECT_EQ(map.refused_identified(), 0u);
  // Without an identified id the person is named by its lowest id.
  EXPECT_EQ(PersonOf(map, "a"), std::min({Id("a"), Id("b"), Id("c")}));
}

TEST(IdentityMapTest, AnIdentifiedAnonIsNotMovedToAnotherUser) {
  // Mixpanel's original ID merge: a second $identify of the same anonymous id
  // to another user does not merge the users; the first one wins (by time,
  // whatever order the links are given in).
  const IdentityMap map =
      IdentityMap::Build({Identify(9, "anon", "user2"), Identify(3, "anon", "user1")});
  EXPECT_EQ(PersonOf(map, "anon"), Id("user1"));
  EXPECT_EQ(PersonOf(map, "user2"), Id("user2"));
  EXPECT_EQ(map.refused_identified(), 1u);
}

TEST(IdentityMapTest, TwoUsersAreNotMergedByAnAlias) {
  const IdentityMap map = IdentityMap::Build(
      {Identify(1, "a1", "user1"), Identify(2, "a2", "user2"), Alias(3, "a1", "a2")});
  EXPECT_EQ(PersonOf(map, "a1"), Id("user1"));
  EXPECT_EQ(PersonOf(map, "a2"), Id("user2"));
  EXPECT_EQ(map.refused_identified(), 1u);
}

TEST(IdentityMapTest, MergeDangerouslyJoinsTwoUsers) {
  const IdentityMap map =
      IdentityMap::Build({Identify(1, "a1", "user1"), Identify(2, "a2", "user2"),
                          Link(3, "user1", "user2", IdentityLinkKind::kMergeDangerously, true)});
  EXPECT_EQ(PersonOf(map, "a1"), PersonOf(map, "a2"));
  EXPECT_EQ(map.persons(), 1u);
}

TEST(IdentityMapTest, IdsPerPersonAreLimited) {
  // A public token cannot fold arbitrary ids into one person: past
  // kIdentityIdsPerPersonMax the links are ignored and the ids stay apart.
  std::vector<IdentityLink> links;
  const size_t devices = kIdentityIdsPerPersonMax + 100;
  for (size_t device = 0; device < devices; ++device) {
    links.push_back(Identify(static_cast<int64_t>(device), "d" + std::to_string(device), "user"));
  }
  const IdentityMap map = IdentityMap::Build(links);
  EXPECT_EQ(map.persons(), 1u);
  EXPECT_EQ(map.linked_ids(), kIdentityIdsPerPersonMax);
  EXPECT_EQ(map.refused_limit(), devices - (kIdentityIdsPerPersonMax - 1));
  // The earliest links win.
  EXPECT_EQ(PersonOf(map, "d0"), Id("user"));
  EXPECT_EQ(PersonOf(map, "d" + std::to_string(devices - 1)),
            Id("d" + std::to_string(devices - 1)));
}

// Query-level tests over segments.

Event MakeEvent(std::string_view name, std::string_view subject, int64_t time_ms,
                std::vector<Property> properties = {}) {
  static uint64_t next_insert = 1;
  Event event;
  event.name = std::string(name);
  event.subject = Id(subject);
  event.time_ms = time_ms;
  event.insert_id = Id128{7, next_insert++};
  event.properties = std::move(properties);
  return event;
}

Property Str(std::string key, std::string value) {
  return Property{std::move(key), Value::String(std::move(value))};
}

QueryContext ContextOf(const std::vector<std::vector<Event>>& segments, uint32_t threads = 2) {
  QueryContext context;
  context.time_zone = "UTC";
  context.threads = threads;
  for (const auto& events : segments) {
    auto reader = testing::MakeSegment(events, 4);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    context.segments.push_back(*reader);
  }
  return context;
}

const char kFunnel[] =
    R"({"kind":"funnel","from":"2024-03-10","to":"2024-03-12",
        "steps":[{"event":"Viewed"},{"event":"Signed Up"},{"event":"Purchased"}]})";
const char kUniques[] =
    R"({"kind":"segmentation","from":"2024-03-10","to":"2024-03-12","unit":"day",
        "measure":"unique","events":[{"any_event":true}]})";

QueryResult RunJson(const char* json, const QueryContext& context) {
  const Result<QuerySpec> spec = ParseQuery(json);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  Result<QueryResult> result = RunQuery(*spec, context);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return *result;
}

std::vector<uint64_t> Reached(const QueryResult& result) {
  std::vector<uint64_t> reached;
  for (const FunnelStepResult& step : result.funnel[0].steps) {
    reached.push_back(step.subjects);
  }
  return reached;
}

// Mixpanel / PostHog: anonymous events, $identify on the user with
// $anon_distinct_id, identified events; events in different segments.
std::vector<std::vector<Event>> SignUpStory(std::string_view anon, std::string_view user) {
  return {
      {MakeEvent("Viewed", anon, kBaseMs + kHourMs)},
      {MakeEvent("$identify", user, kBaseMs + 2 * kHourMs, {Str("$anon_distinct_id", Psn(anon))}),
       MakeEvent("Signed Up", user, kBaseMs + 2 * kHourMs + 1),
       MakeEvent("Purchased", user, kBaseMs + 3 * kHourMs)}};
}

TEST(IdentityQueryTest, FunnelAcrossSignUpCountsOnePerson) {
  for (const uint32_t threads : {1u, 2u, 3u}) {
    SCOPED_TRACE(threads);
    QueryContext context = ContextOf(SignUpStory("anon-1", "user-1"), threads);
    EXPECT_EQ(Reached(RunJson(kFunnel, context)), (std::vector<uint64_t>{1, 1, 1}));
    EXPECT_EQ(RunJson(kUniques, context).series[0].total, 1.0);
    context.merge_identities = false;
    EXPECT_EQ(Reached(RunJson(kFunnel, context)), (std::vector<uint64_t>{1, 0, 0}));
    EXPECT_EQ(RunJson(kUniques, context).series[0].total, 2.0);
  }
}

TEST(IdentityQueryTest, SimplifiedIdMergeDeviceAndUserIds) {
  // mixpanel-browser: distinct_id "$device:X" with $device_id X before
  // identify; after it distinct_id U with $device_id X and $user_id U.
  const std::vector<std::vector<Event>> segments = {
      {MakeEvent("Viewed", "$device:X", kBaseMs + kHourMs, {Str("$device_id", Psn("X"))})},
      {MakeEvent("Signed Up", "U", kBaseMs + 2 * kHourMs,
                 {Str("$device_id", Psn("X")), Str("$user_id", Psn("U"))}),
       MakeEvent("Purchased", "U", kBaseMs + 3 * kHourMs,
                 {Str("$device_id", Psn("X")), Str("$user_id", Psn("U"))})}};
  const QueryContext context = ContextOf(segments);
  EXPECT_EQ(Reached(RunJson(kFunnel, context)), (std::vector<uint64_t>{1, 1, 1}));
  EXPECT_EQ(RunJson(kUniques, context).series[0].total, 1.0);
}

TEST(IdentityQueryTest, SegmentAnonymousIdBesideUserId) {
  // @segment/analytics-node: the userId is the subject; anonymousId is kept
  // beside it, pseudonymised.
  const std::vector<std::vector<Event>> segments = {
      {MakeEvent("Viewed", "anon-s", kBaseMs + kHourMs)},
      {MakeEvent("$identify", "user-s", kBaseMs + 2 * kHourMs, {Str("anonymousId", Psn("anon-s"))}),
       MakeEvent("Signed Up", "user-s", kBaseMs + 2 * kHourMs + 5,
                 {Str("anonymousId", Psn("anon-s"))}),
       MakeEvent("Purchased", "user-s", kBaseMs + 3 * kHourMs)}};
  EXPECT_EQ(Reached(RunJson(kFunnel, ContextOf(segments))), (std::vector<uint64_t>{1, 1, 1}));
}

TEST(IdentityQueryTest, AliasChainOfThreeAndTwoDevices) {
  // Segment alias (previousId), PostHog alias (alias) and a second device.
  const std::vector<std::vector<Event>> segments = {
      {MakeEvent("Viewed", "a", kBaseMs + kHourMs), MakeEvent("Viewed", "phone", kBaseMs + kHourMs),
       MakeEvent("$create_alias", "b", kBaseMs + kHourMs + 10, {Str("previousId", Psn("a"))})},
      {MakeEvent("$create_alias", "c", kBaseMs + kHourMs + 20, {Str("alias", Psn("b"))}),
       MakeEvent("Signed Up", "c", kBaseMs + 2 * kHourMs),
       MakeEvent("$identify", "c", kBaseMs + 2 * kHourMs + 1,
                 {Str("$anon_distinct_id", Psn("phone"))}),
       MakeEvent("Purchased", "phone", kBaseMs + 3 * kHourMs)}};
  const QueryContext context = ContextOf(segments);
  EXPECT_EQ(Reached(RunJson(kFunnel, context)), (std::vector<uint64_t>{1, 1, 1}));
  EXPECT_EQ(RunJson(kUniques, context).series[0].total, 1.0);
}

TEST(IdentityQueryTest, ErasingTheLinkingEventSeparatesThePersons) {
  std::vector<std::vector<Event>> segments = SignUpStory("anon-e", "user-e");
  QueryContext context = ContextOf(segments);
  EXPECT_EQ(RunJson(kUniques, context).series[0].total, 1.0);
  // The store's erasure hides rows behind a view of the segment: hide the
  // $identify row (row 0 of the second segment's first block).
  context.segments[1] = store::SegmentReader::WithHiddenRows(
      context.segments[1], std::vector<std::vector<uint32_t>>{{0u}});
  EXPECT_EQ(RunJson(kUniques, context).series[0].total, 2.0);
  EXPECT_EQ(Reached(RunJson(kFunnel, context)), (std::vector<uint64_t>{1, 0, 0}));
}

TEST(IdentityQueryTest, RetentionAndBreakdownCountPersons) {
  // Born anonymous on day 1 (platform web), returns identified on day 2.
  const std::vector<std::vector<Event>> segments = {
      {MakeEvent("Viewed", "anon-r", kBaseMs + kHourMs, {Str("platform", "web")})},
      {MakeEvent("$identify", "user-r", kBaseMs + 2 * kHourMs,
                 {Str("$anon_distinct_id", Psn("anon-r"))}),
       MakeEvent("Viewed", "user-r", kBaseMs + 26 * kHourMs, {Str("platform", "ios")})}};
  for (const uint32_t threads : {1u, 2u}) {
    const QueryContext context = ContextOf(segments, threads);
    const QueryResult retention = RunJson(
        R"({"kind":"retention","from":"2024-03-10","to":"2024-03-11","unit":"day","periods":2,
            "birth":{"event":"Viewed"},"return":{"event":"Viewed"},
            "breakdown":{"properties":["platform"]}})",
        context);
    ASSERT_EQ(retention.retention.size(), 2u);
    EXPECT_EQ(retention.retention[0].size, 1u);
    EXPECT_EQ(retention.retention[0].cohorts[0].counts[1], std::optional<uint64_t>(1));
    EXPECT_EQ(retention.retention[1].group->values[0], Value::String("web"));
    const QueryResult uniques = RunJson(
        R"({"kind":"segmentation","from":"2024-03-10","to":"2024-03-12","unit":"day",
            "measure":"unique","events":[{"event":"Viewed"}],
            "breakdown":{"properties":["platform"]}})",
        context);
    ASSERT_EQ(uniques.series.size(), 2u);
    EXPECT_EQ(uniques.series[0].total, 1.0);
    EXPECT_EQ(uniques.series[1].total, 1.0);
  }
}

TEST(IdentityQueryTest, TheMapIsCachedPerSnapshot) {
  const QueryContext context = ContextOf(SignUpStory("anon-c", "user-c"));
  auto first = ResolveIdentities(context.segments);
  auto second = ResolveIdentities(context.segments);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->get(), second->get());
  EXPECT_EQ((*first)->persons(), 1u);
  std::vector<std::shared_ptr<const store::SegmentReader>> fewer = {context.segments[0]};
  auto third = ResolveIdentities(fewer);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE((*third)->empty());
}

}  // namespace
}  // namespace minpanel::query
