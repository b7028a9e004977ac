#include <gtest/gtest.h>

#include "query/query.h"
#include "query/query_test_util.h"

namespace minpanel::query {
namespace {

struct BadQuery {
  const char* json;
  const char* message;  // a part of the InvalidArgument message
};

// Every field a query may get wrong, and the message naming it.
const BadQuery kBadQueries[] = {
    {R"(not json)", "query: malformed JSON"},
    {R"([])", "query: must be an object"},
    {R"({})", "kind: is required"},
    {R"({"kind":"cohort"})", "kind: unknown kind 'cohort'"},
    {R"({"kind":7})", "kind: must be a string"},
    {R"({"kind":"segmentation","events":["E"],"to":"2024-03-02"})", "from: is required"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01"})", "to: is required"},
    {R"({"kind":"segmentation","events":["E"],"from":"yesterday","to":"2024-03-02"})",
     "from: must be YYYY-MM-DD"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-13-01","to":"2024-03-02"})",
     "from: must be YYYY-MM-DD"},
    {R"({"kind":"segmentation","events":["E"],"from":"-7y","to":"now"})",
     "from: must be YYYY-MM-DD"},
    {R"({"kind":"segmentation","events":["E"],"from":"-d","to":"now"})",
     "from: must be YYYY-MM-DD"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":1.5})",
     "to: must be an integer"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","time_zone":""})",
     "time_zone: must not be empty"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02"})", "events: is required"},
    {R"({"kind":"segmentation","events":[],"from":"2024-03-01","to":"2024-03-02"})",
     "events: must name at least one event"},
    {R"({"kind":"segmentation","events":["A","B","C","D","E","F","G","H","I","J","K"],"from":"2024-03-01","to":"2024-03-02"})",
     "events: 11 is over the limit of 10 (kSegmentationEventsMax)"},
    {R"({"kind":"segmentation","events":[""],"from":"2024-03-01","to":"2024-03-02"})",
     "events[0]: must not be empty"},
    {R"({"kind":"segmentation","events":[{"name":"E"}],"from":"2024-03-01","to":"2024-03-02"})",
     "events[0].name: unknown field"},
    {R"({"kind":"segmentation","events":[{"filters":[]}],"from":"2024-03-01","to":"2024-03-02"})",
     "events[0].event: is required"},
    {R"({"kind":"segmentation","events":[{"event":"E","any_event":true}],"from":"2024-03-01","to":"2024-03-02"})",
     "events[0].any_event: give either event or any_event, not both"},
    {R"({"kind":"segmentation","events":[{"any_event":false}],"from":"2024-03-01","to":"2024-03-02"})",
     "events[0].any_event: must be true"},
    {R"({"kind":"segmentation","events":[{"any_event":1}],"from":"2024-03-01","to":"2024-03-02"})",
     "events[0].any_event: must be true"},
    {R"({"kind":"funnel","steps":["A","B"],"exclusions":[{"any_event":true}],"from":"2024-03-01","to":"2024-03-02"})",
     "exclusions[0].any_event: an exclusion must name an event"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","unit":"year"})",
     "unit: unknown unit 'year'"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","measure":"mean"})",
     "measure: unknown measure 'mean'"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","measure":"sum"})",
     "measure.property: is required with sum"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","measure":{"type":"unique","property":"x"}})",
     "measure.property: is not allowed with unique"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","measure":{"property":"x"}})",
     "measure.type: is required"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","colour":1})",
     "colour: unknown field"},
    // Filters.
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"equals","value":1}]}]})",
     "events[0].filters[0].op: unknown operator 'equals'"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"op":"eq","value":1}]}]})",
     "events[0].filters[0].property: is required"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","value":1}]}]})",
     "events[0].filters[0].op: is required"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"eq"}]}]})",
     "events[0].filters[0].value: is required with eq"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"in","value":1}]}]})",
     "events[0].filters[0].value: use \"values\""},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"in"}]}]})",
     "events[0].filters[0].values: is required with in"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"eq","values":[1]}]}]})",
     "events[0].filters[0].values: use \"value\" with eq"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"is_set","value":1}]}]})",
     "events[0].filters[0].value: is not allowed with is_set"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"contains","value":1}]}]})",
     "events[0].filters[0].value: must be a string with contains"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"lt","value":true}]}]})",
     "events[0].filters[0].value: must be a number or a string with lt"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"eq","value":[1]}]}]})",
     "events[0].filters[0].value: must be a string, number, boolean or null"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"property":"p","op":"in","values":[1,{}]}]}]})",
     "events[0].filters[0].values[1]: must be a string, number, boolean or null"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"or":[{"property":"p","op":"eq","value":1,"x":2}]}]}]})",
     "events[0].filters[0].or[0].x: unknown field"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"or":{}}]}]})",
     "events[0].filters[0].or: must be an array"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[{"and":[{"or":[{"and":[{"or":[]}]}]}]}]}]})",
     "events[0].filters[0].and[0].or[0].and[0].or: groups nested 5 is over the limit of 4 (kFilterDepthMax)"},
    {R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","filters":{},"events":["E"]})",
     "filters: must be an array"},
    // Breakdown.
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","breakdown":["a","b","c"]})",
     "breakdown: 3 is over the limit of 2 (kBreakdownPropertiesMax)"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","breakdown":{"properties":["a"],"limit":0}})",
     "breakdown.limit: must be 1 .. 200 (kBreakdownLimitMax)"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","breakdown":{"limit":3}})",
     "breakdown.properties: is required"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","breakdown":[1]})",
     "breakdown[0]: must be a string"},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","compare":"last_year"})",
     "compare: expected \"previous_period\""},
    {R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","compare":true})",
     "compare: expected \"previous_period\""},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"compare":"previous_period"})",
     "compare: unknown field"},
    // Funnels.
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02"})", "steps: is required"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A"]})",
     "steps: has 1 steps; a funnel has 2 .. 16 (kFunnelStepsMax)"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B","C","D","E","F","G","H","I","J","K","L","M","N","O","P","Q"]})",
     "steps: has 17 steps"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A",{"event":"B","filters":[{"property":"p","op":"eq","value":1}]},{"event":"C","filters":[{"property":"p","op":"equals","value":1}]}]})",
     "steps[2].filters[0].op: unknown operator 'equals'"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"window":{"value":0,"unit":"day"}})",
     "window.value: must be at least 1"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"window":{"value":367,"unit":"day"}})",
     "(kFunnelWindowMsMax)"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"window":{"value":1,"unit":"fortnight"}})",
     "window.unit: unknown unit 'fortnight'"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"window":{"value":1}})",
     "window.unit: is required"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"window_ms":0})",
     "window_ms: must be 1 .. "},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"window_ms":5,"window":{"value":1,"unit":"day"}})",
     "window_ms: give either window or window_ms"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"order":"any"})",
     "order: unknown order 'any'"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"exclusions":[{"event":"X","between":[2,1]}]})",
     "exclusions[0].between: must be two step numbers 1 .. 2"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"exclusions":[{"event":"X","between":[1]}]})",
     "exclusions[0].between: must be [first step, second step]"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"exclusions":[{"event":"X","after":1}]})",
     "exclusions[0].after: unknown field"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"exclusions":["1","2","3","4","5","6","7","8","9"]})",
     "exclusions: 9 is over the limit of 8 (kFunnelExclusionsMax)"},
    {R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"unit":"day"})",
     "unit: unknown field"},
    // Retention.
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","return":"B"})",
     "birth: is required"},
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":"A"})",
     "return: is required"},
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":"A","return":"B","unit":"month"})",
     "unit: unknown unit 'month' (day or week)"},
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":"A","return":"B","periods":0})",
     "periods: must be 1 .. 120 (kRetentionPeriodsMax)"},
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":"A","return":"B","periods":121})",
     "periods: must be 1 .. 120 (kRetentionPeriodsMax)"},
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":"A","return":"B","mode":"after"})",
     "mode: unknown mode 'after'"},
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":{"event":"A","filters":[{"property":"p","op":"gte","value":1}]},"return":"B"})",
     "birth.filters[0].op: unknown operator 'gte'"},
    {R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":"A","return":"B","measure":"total"})",
     "measure: unknown field"},
};

TEST(QueryParseTest, EveryBadFieldIsNamed) {
  for (const BadQuery& bad : kBadQueries) {
    const Result<QuerySpec> spec = ParseQuery(bad.json);
    ASSERT_FALSE(spec.ok()) << bad.json;
    EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument) << bad.json;
    EXPECT_NE(spec.status().message().find(bad.message), std::string::npos)
        << bad.json << "\n got: " << spec.status().message() << "\nwant: " << bad.message;
  }
}

TEST(QueryParseTest, QueryOverTheByteLimitIsRefused) {
  std::string json = R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","x":")";
  json.append(kQueryJsonBytesMax, 'x');
  json.append("\"}");
  const Result<QuerySpec> spec = ParseQuery(json);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("kQueryJsonBytesMax"), std::string::npos);
}

TEST(QueryParseTest, TooManyFilterConditionsAreRefused) {
  std::string json = R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","events":[{"event":"E","filters":[)";
  for (size_t condition_idx = 0; condition_idx <= kFilterConditionsMax; ++condition_idx) {
    json += condition_idx == 0 ? "" : ",";
    json += R"({"property":"p","op":"eq","value":1})";
  }
  json += "]}]}";
  const Result<QuerySpec> spec = ParseQuery(json);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("kFilterConditionsMax"), std::string::npos)
      << spec.status().message();
}

TEST(QueryParseTest, FullSegmentationQuery) {
  const Result<QuerySpec> spec = ParseQuery(R"({
    "kind": "segmentation", "from": "2024-03-01", "to": "2024-03-08T12:30Z",
    "time_zone": "Europe/Berlin", "unit": "hour",
    "events": ["A", {"event": "B", "filters": [{"property": "p", "op": "in", "values": ["x", 2, true, null]}]}],
    "filters": [{"or": [{"property": "q", "op": "is_set"}]}],
    "measure": {"type": "p90", "property": "amount"},
    "breakdown": {"properties": ["country", "plan"], "limit": 3}})");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->kind, QueryKind::kSegmentation);
  EXPECT_TRUE(spec->from.local);
  EXPECT_FALSE(spec->to.local);
  EXPECT_EQ(spec->to.utc_ms, 1709901000000);
  EXPECT_EQ(spec->time_zone, "Europe/Berlin");
  EXPECT_EQ(spec->unit, TimeUnit::kHour);
  ASSERT_EQ(spec->events.size(), 2u);
  // Each event's filters, then the common ones as one more member.
  ASSERT_EQ(spec->events[0].filter.children.size(), 1u);
  ASSERT_EQ(spec->events[1].filter.children.size(), 2u);
  EXPECT_EQ(spec->events[1].filter.children[0].values.size(), 4u);
  EXPECT_EQ(spec->measure, Measure::kP90);
  EXPECT_EQ(spec->measure_property, "amount");
  EXPECT_EQ(spec->breakdown.properties, (std::vector<std::string>{"country", "plan"}));
  EXPECT_EQ(spec->breakdown.limit, 3u);
}

TEST(QueryParseTest, AnyEventSelectorWhereverASelectorIs) {
  const Result<QuerySpec> segmentation = ParseQuery(
      R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-02","measure":"unique",
          "events":[{"any_event":true,"filters":[{"property":"p","op":"is_set"}]},"E"]})");
  ASSERT_TRUE(segmentation.ok()) << segmentation.status().ToString();
  EXPECT_TRUE(segmentation->events[0].any_event);
  EXPECT_EQ(segmentation->events[0].event, "");
  EXPECT_EQ(segmentation->events[0].filter.children.size(), 1u);
  EXPECT_FALSE(segmentation->events[1].any_event);
  const Result<QuerySpec> funnel = ParseQuery(
      R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A",{"any_event":true}]})");
  ASSERT_TRUE(funnel.ok()) << funnel.status().ToString();
  EXPECT_TRUE(funnel->steps[1].any_event);
  const Result<QuerySpec> retention = ParseQuery(
      R"({"kind":"retention","from":"2024-03-01","to":"2024-03-02","birth":{"any_event":true},
          "return":{"any_event":true}})");
  ASSERT_TRUE(retention.ok()) << retention.status().ToString();
  EXPECT_TRUE(retention->birth.any_event);
  EXPECT_TRUE(retention->return_event.any_event);
}

TEST(QueryParseTest, FunnelDefaults) {
  const Result<QuerySpec> spec = ParseQuery(
      R"({"kind":"funnel","from":1709251200000,"to":1709337600000,"steps":["A","B","C"],
          "exclusions":["X",{"event":"Y","between":[2,3]}]})");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->window_ms, kFunnelWindowMsDefault);
  EXPECT_EQ(spec->order, FunnelOrder::kLoose);
  EXPECT_EQ(spec->from.utc_ms, 1709251200000);
  ASSERT_EQ(spec->exclusions.size(), 2u);
  EXPECT_EQ(spec->exclusions[0].from_step, 0u);
  EXPECT_EQ(spec->exclusions[0].to_step, 2u);
  EXPECT_EQ(spec->exclusions[1].from_step, 1u);
  EXPECT_EQ(spec->exclusions[1].to_step, 2u);
}

TEST(QueryParseTest, RunQueryRejectsBadRanges) {
  QueryContext context;
  auto run = [&](const char* json) {
    const Result<QuerySpec> spec = ParseQuery(json);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    return RunQuery(*spec, context).status();
  };
  Status status = run(R"({"kind":"segmentation","events":["E"],"from":"2024-03-02","to":"2024-03-01"})");
  EXPECT_EQ(status.message(), "to: must be after from");
  status = run(R"({"kind":"segmentation","events":["E"],"from":"2010-01-01","to":"2024-03-01"})");
  EXPECT_NE(status.message().find("kQueryRangeDaysMax"), std::string::npos) << status.message();
  status = run(R"({"kind":"segmentation","events":["E"],"from":"2024-03-01","to":"2024-03-02","time_zone":"Mars/Olympus"})");
  EXPECT_EQ(status.message(), "time_zone: unknown time zone 'Mars/Olympus'");
  status = run(R"({"kind":"segmentation","events":["E"],"from":"-7d","to":"now"})");
  EXPECT_EQ(status.message(), "from: a relative time needs the server's clock");
  context.now_ms = 1710064800000;
  status = run(R"({"kind":"segmentation","events":["E"],"from":"-9999w","to":"now"})");
  EXPECT_EQ(status.message(), "from: reaches back more than 3660 days (kQueryRangeDaysMax)");
  status = run(R"({"kind":"segmentation","events":["E"],"from":"2024-02-30","to":"2024-03-02"})");
  EXPECT_EQ(status.message(), "from: no such date");
  status = run(R"({"kind":"segmentation","events":["E"],"unit":"hour","from":"2023-01-01","to":"2024-03-02"})");
  EXPECT_NE(status.message().find("kSegmentationBucketsMax"), std::string::npos)
      << status.message();
}

}  // namespace
}  // namespace minpanel::query

namespace minpanel::query {
namespace {

TEST(QueryLimitsTest, TooManyCellsIsResourceExhausted) {
  // 500 breakdown values × 9,600 hour buckets = 4.8M cells > kQueryCellsMax.
  std::vector<Event> events;
  for (int64_t event_idx = 0; event_idx < 500; ++event_idx) {
    Event event;
    event.name = "E";
    event.subject = Id128{static_cast<uint64_t>(event_idx) << 40, 1};
    event.insert_id = Id128{0, static_cast<uint64_t>(event_idx) + 1};
    event.time_ms = 1709251200000 + event_idx * 3600 * 1000;
    event.properties.push_back({"v", Value::Int(event_idx)});
    events.push_back(std::move(event));
  }
  auto segment = testing::MakeSegment(events, 64);
  ASSERT_TRUE(segment.ok()) << segment.status().ToString();
  QueryContext context;
  context.segments.push_back(*segment);
  const Result<QuerySpec> spec = ParseQuery(
      R"({"kind":"segmentation","from":"2024-03-01","to":"2025-04-04","unit":"hour",
          "events":["E"],"breakdown":"v"})");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  for (const uint32_t threads : {1u, 2u}) {
    context.threads = threads;
    const Status status = RunQuery(*spec, context).status();
    EXPECT_EQ(status.code(), StatusCode::kResourceExhausted) << status.ToString();
    EXPECT_NE(status.message().find("kQueryCellsMax"), std::string::npos) << status.message();
  }
  // A day unit fits.
  const Result<QuerySpec> daily = ParseQuery(
      R"({"kind":"segmentation","from":"2024-03-01","to":"2025-04-04","unit":"day",
          "events":["E"],"breakdown":{"properties":["v"],"limit":3}})");
  ASSERT_TRUE(daily.ok());
  const Result<QueryResult> result = RunQuery(*daily, context);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->series.size(), 4u);
  EXPECT_TRUE(result->series[3].group.other);
  EXPECT_EQ(result->series[3].total, 497.0);
}

}  // namespace
}  // namespace minpanel::query
