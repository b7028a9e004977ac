// The scan's shortcuts for blocks whose times all fall in one bucket (no
// time column read, rows folded by weight, blocks counted by name code) and
// the thread splits must answer exactly as the row-by-row path. The same
// generated events are stored twice: one segment per UTC day, as the store
// writes them (every block lies in one day: the shortcuts apply to every
// daily query), and one segment for all days (blocks span days: the rows
// are read one by one). Each query must give the same answer over both, on
// 1 and 2 threads.
#include <gtest/gtest.h>

#include <random>

#include "core/time_units.h"
#include "query/query.h"
#include "query/query_internal.h"
#include "query/query_test_util.h"

namespace minpanel::query {
namespace {

constexpr int64_t kStartMs = 1'790'812'800'000;  // 2026-10-01T00:00Z
constexpr int kDays = 4;

std::vector<Event> MakeEvents() {
  std::mt19937_64 random(42);
  static const char* const kNames[] = {"view", "click", "buy", "signup"};
  static const char* const kCountries[] = {"US", "DE", "FR", "JP", "BR"};
  std::vector<Event> events;
  for (int event_idx = 0; event_idx < 3000; ++event_idx) {
    Event event;
    event.name = kNames[random() % 4];
    event.subject = testing::SubjectFromName("u" + std::to_string(random() % 120));
    event.time_ms = kStartMs + static_cast<int64_t>(random() % (kDays * kDayMs));
    event.insert_id = Id128{random(), random()};
    event.key_version = 1;
    if (random() % 10 != 0) {
      event.properties.push_back({"country", Value::String(kCountries[random() % 5])});
    }
    if (random() % 3 == 0) {
      event.properties.push_back({"n", Value::Int(static_cast<int64_t>(random() % 7))});
    }
    events.push_back(std::move(event));
  }
  return events;
}

QueryContext Context(std::vector<std::shared_ptr<const store::SegmentReader>> segments,
                     uint32_t threads) {
  QueryContext context;
  context.segments = std::move(segments);
  context.time_zone = "UTC";
  context.threads = threads;
  return context;
}

std::string Answer(const std::string& json, const QueryContext& context) {
  const Result<QuerySpec> spec = ParseQuery(json);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  if (!spec.ok()) {
    return "";
  }
  Result<QueryResult> result = RunQuery(*spec, context);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (!result.ok()) {
    return "";
  }
  result->stats = QueryStats{};
  return QueryResultToJson(*result);
}

TEST(QueryScanTest, BlocksInOneBucketAnswerAsRowByRow) {
  const std::vector<Event> events = MakeEvents();
  std::vector<std::shared_ptr<const store::SegmentReader>> by_day;
  for (int day = 0; day < kDays; ++day) {
    std::vector<Event> part;
    for (const Event& event : events) {
      if ((event.time_ms - kStartMs) / kDayMs == day) {
        part.push_back(event);
      }
    }
    auto segment = testing::MakeSegment(part, 64);
    ASSERT_TRUE(segment.ok()) << segment.status().ToString();
    by_day.push_back(*segment);
  }
  auto whole = testing::MakeSegment(events, 64);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();

  const std::string range =
      R"("from": "2026-10-01T00:00:00Z", "to": "2026-10-05T00:00:00Z")";
  // The range cuts the last day in two: its blocks are not in the range
  // whole, so they take the row-by-row path even when stored by day.
  const std::string short_range =
      R"("from": "2026-10-01T00:00:00Z", "to": "2026-10-04T12:00:00Z")";
  const std::vector<std::string> queries = {
      R"({"kind": "segmentation", )" + range + R"(, "unit": "day", "events": [{"event": "view"}]})",
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "day", "events": [{"event": "view"}, {"event": "buy"}, {"event": "none"}]})",
      R"({"kind": "segmentation", )" + short_range +
          R"(, "unit": "day", "events": [{"event": "click"}]})",
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "hour", "events": [{"event": "click"}]})",
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "day", "measure": "unique", "events": [{"any_event": true}],
           "breakdown": ["country"]})",
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "day", "measure": "per_subject_average", "events": [{"event": "buy"}]})",
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "day", "events": [{"event": "view", "filters": [
           {"property": "country", "op": "in", "values": ["US", "DE"]}]}], "breakdown": ["n"]})",
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "week", "measure": {"type": "sum", "property": "n"},
           "events": [{"any_event": true}]})",
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "day", "measure": "unique", "events": [{"event": "signup"}]})",
  };
  for (const std::string& query : queries) {
    SCOPED_TRACE(query);
    const std::string expected = Answer(query, Context({*whole}, 1));
    ASSERT_FALSE(expected.empty());
    for (const uint32_t threads : {1u, 2u}) {
      SCOPED_TRACE(threads);
      EXPECT_EQ(Answer(query, Context(by_day, threads)), expected);
      EXPECT_EQ(Answer(query, Context({*whole}, threads)), expected);
    }
  }
}

// The merge by subject over many segments of small blocks (a subject's rows
// continue across blocks; windows of the subject space widen and narrow as
// the merger adapts them; some subjects share their high 64 bits, so one
// window bucket holds many) answers as one segment does.
TEST(QueryScanTest, TheMergeOverManySegmentsAnswersAsOneSegment) {
  std::mt19937_64 random(7);
  static const char* const kNames[] = {"view", "click", "buy", "signup"};
  static const char* const kCountries[] = {"US", "DE", "FR", "JP", "BR"};
  constexpr size_t kSegments = 48;
  std::vector<Event> events;
  std::vector<std::vector<Event>> parts(kSegments);
  for (int event_idx = 0; event_idx < 40'000; ++event_idx) {
    Event event;
    event.name = kNames[random() % 4];
    const uint64_t user = random() % 12'000;
    // One subject in 40 shares its high half with every other such subject.
    event.subject = user % 40 == 0 ? Id128{7, user}
                                   : testing::SubjectFromName("u" + std::to_string(user));
    event.time_ms = kStartMs + static_cast<int64_t>(random() % (kDays * kDayMs));
    event.insert_id = Id128{random(), random()};
    event.key_version = 1;
    event.properties.push_back({"country", Value::String(kCountries[user % 5])});
    events.push_back(event);
    parts[random() % kSegments].push_back(std::move(event));
  }
  std::vector<std::shared_ptr<const store::SegmentReader>> segments;
  for (const std::vector<Event>& part : parts) {
    auto segment = testing::MakeSegment(part, 16);
    ASSERT_TRUE(segment.ok()) << segment.status().ToString();
    segments.push_back(*segment);
  }
  auto whole = testing::MakeSegment(events, 16'384);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  const std::string range = R"("from": "2026-10-01", "to": "2026-10-05")";
  const std::vector<std::string> queries = {
      R"({"kind": "segmentation", )" + range +
          R"(, "unit": "day", "measure": "unique", "events": [{"any_event": true}],
           "breakdown": ["country"]})",
      R"({"kind": "funnel", )" + range +
          R"(, "steps": [{"event": "view"}, {"event": "click"}, {"event": "buy"}]})",
      R"({"kind": "retention", )" + range +
          R"(, "unit": "day", "periods": 3, "birth": {"event": "signup"},
           "return": {"event": "view"}})",
  };
  for (const std::string& query : queries) {
    SCOPED_TRACE(query);
    const std::string expected = Answer(query, Context({*whole}, 1));
    ASSERT_FALSE(expected.empty());
    for (const uint32_t threads : {1u, 2u}) {
      SCOPED_TRACE(threads);
      EXPECT_EQ(Answer(query, Context(segments, threads)), expected);
    }
  }
}


// A block folded run by run (a unique count over every event, no filter)
// finds where each subject's value changes eight rows at a time: values that
// change at every offset of a run, runs longer than eight rows, rows without
// the value or with a number, runs cut by the end of a block (blocks of 9,
// 37 and 16,384 rows) and the last rows of a block, read one by one. Each
// answer must equal the row-by-row path's, which a filter every row passes
// forces.
TEST(QueryScanTest, RunsFoldedByValueAnswerAsRowByRow) {
  static const char* const kCountries[] = {"US", "DE", "FR"};
  std::vector<Event> events;
  for (int subject_idx = 0; subject_idx < 60; ++subject_idx) {
    const int rows = 1 + subject_idx % 27 + (subject_idx % 4 == 0 ? 40 : 0);
    const int change_at = subject_idx % 19;
    for (int row_idx = 0; row_idx < rows; ++row_idx) {
      Event event;
      event.name = row_idx % 3 == 0 ? "view" : "click";
      event.subject = testing::SubjectFromName("u" + std::to_string(subject_idx));
      event.time_ms = kStartMs + 3'600'000 + subject_idx * 1'000 + row_idx;
      event.insert_id = Id128{static_cast<uint64_t>(subject_idx), static_cast<uint64_t>(row_idx)};
      event.key_version = 1;
      event.properties.push_back({"seq", Value::Int(row_idx)});
      // One value before `change_at`, another after; some subjects switch
      // back and forth, some rows lack the value or hold a number.
      size_t country = (row_idx < change_at ? 0 : 1) + static_cast<size_t>(subject_idx % 2);
      if (subject_idx % 5 == 0) {
        country = static_cast<size_t>((row_idx / (1 + subject_idx % 3)) % 3);
      }
      if (subject_idx % 7 == 3 && row_idx % 11 == 5) {
        // no country
      } else if (subject_idx % 9 == 4 && row_idx % 6 == 2) {
        event.properties.push_back({"country", Value::Int(7)});
      } else {
        event.properties.push_back({"country", Value::String(kCountries[country % 3])});
      }
      events.push_back(std::move(event));
    }
  }
  const std::string range = R"("from": "2026-10-01", "to": "2026-10-03")";
  const std::string folded_by_run = R"({"kind": "segmentation", )" + range +
                                    R"(, "unit": "day", "measure": "%s", "events": [
                                       {"any_event": true}], "breakdown": ["country"]})";
  const std::string row_by_row =
      R"({"kind": "segmentation", )" + range +
      R"(, "unit": "day", "measure": "%s", "events": [{"any_event": true, "filters": [
         {"property": "seq", "op": "ge", "value": 0}]}], "breakdown": ["country"]})";
  const auto with_measure = [](std::string query, const std::string& measure) {
    return query.replace(query.find("%s"), 2, measure);
  };
  for (const uint32_t block_rows : {9u, 37u, 16'384u}) {
    SCOPED_TRACE(block_rows);
    auto segment = testing::MakeSegment(events, block_rows);
    ASSERT_TRUE(segment.ok()) << segment.status().ToString();
    for (const std::string measure : {"unique", "per_subject_average"}) {
      SCOPED_TRACE(measure);
      const std::string expected =
          Answer(with_measure(row_by_row, measure), Context({*segment}, 1));
      ASSERT_FALSE(expected.empty());
      for (const uint32_t threads : {1u, 2u}) {
        SCOPED_TRACE(threads);
        EXPECT_EQ(Answer(with_measure(folded_by_run, measure), Context({*segment}, threads)),
                  expected);
      }
    }
  }
}

// A row's bucket: by arithmetic for buckets of one width (days in UTC), by
// search across a zone's transition (Berlin's autumn day of 25 hours); the
// same edges either way: -1 before the first bucket, count() from the end
// of the last, each bucket from its start inclusive to the next exclusive.
TEST(TimeBucketsTest, IndexHasTheSameEdgesWithAndWithoutUniformWidth) {
  for (const char* zone_name : {"UTC", "Europe/Berlin"}) {
    SCOPED_TRACE(zone_name);
    const auto zone = internal::LocateZone(zone_name);
    ASSERT_TRUE(zone.ok()) << zone.status().ToString();
    // 2026-10-20 to 2026-10-30: Berlin leaves summer time on 2026-10-25.
    const int64_t from_ms = 1'792'454'400'000;
    const auto buckets = internal::TimeBuckets::Make(*zone, TimeUnit::kDay, from_ms,
                                                     from_ms + 10 * kDayMs, 0, 1'000);
    ASSERT_TRUE(buckets.ok()) << buckets.status().ToString();
    const size_t count = buckets->count();
    ASSERT_GE(count, 10u);
    EXPECT_EQ(buckets->Index(buckets->start(0) - 1), -1);
    EXPECT_EQ(buckets->Index(INT64_MIN), -1);
    for (size_t bucket_idx = 0; bucket_idx < count; ++bucket_idx) {
      SCOPED_TRACE(bucket_idx);
      const auto expected = static_cast<int64_t>(bucket_idx);
      EXPECT_EQ(buckets->Index(buckets->start(bucket_idx)), expected);
      EXPECT_EQ(buckets->Index(buckets->end(bucket_idx) - 1), expected);
      EXPECT_EQ(buckets->Index((buckets->start(bucket_idx) + buckets->end(bucket_idx)) / 2),
                expected);
    }
    EXPECT_EQ(buckets->Index(buckets->end(count - 1)), static_cast<int64_t>(count));
    EXPECT_EQ(buckets->Index(INT64_MAX), static_cast<int64_t>(count));
  }
}

}  // namespace
}  // namespace minpanel::query
