// k-suppression (suppress.cc, docs/queries.md "Small groups"): random event
// sets answered with and without a minimum group size, checked against the
// subjects behind each cell counted by brute force from the events: every
// shown cell has at least k subjects and equals the unsuppressed answer,
// every withheld one is null, and the withheld parts of every sum hold at
// least k subjects between them (or the sum is withheld too).
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "core/time_units.h"
#include "query/query.h"
#include "query/query_test_util.h"

namespace minpanel::query {
namespace {

constexpr int64_t kBaseMs = 1709251200000;  // 2024-03-01T00:00:00Z
constexpr size_t kDays = 4;
constexpr int kRounds = 150;

const char* const kNames[] = {"A", "B", "C"};
const char* const kValues[] = {"x", "y", "z", "w", "v"};

class Generator {
 public:
  explicit Generator(uint64_t seed) : random_(seed) {}
  size_t Pick(size_t count) { return std::uniform_int_distribution<size_t>(0, count - 1)(random_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(random_); }

  std::vector<Event> Events() {
    std::vector<Event> events;
    const size_t subjects = 1 + Pick(30);
    const size_t count = 1 + Pick(300);
    for (size_t event_idx = 0; event_idx < count; ++event_idx) {
      Event event;
      event.name = kNames[Pick(3)];
      event.subject = testing::SubjectFromName("s" + std::to_string(Pick(subjects)));
      event.time_ms = kBaseMs + static_cast<int64_t>(Pick(kDays * 24)) * 3600 * 1000;
      event.insert_id = Id128{0, event_idx + 1};
      // Skewed values: some groups are large, some hold one subject.
      event.properties.push_back({"p", Value::String(kValues[Pick(1 + Pick(5))])});
      if (Chance(0.7)) {
        event.properties.push_back({"n", Value::Int(static_cast<int64_t>(Pick(10)))});
      }
      events.push_back(std::move(event));
    }
    return events;
  }

 private:
  std::mt19937_64 random_;
};

QueryContext ContextOf(const std::vector<Event>& events, Generator* generator) {
  QueryContext context;
  context.time_zone = "UTC";
  context.threads = static_cast<uint32_t>(1 + generator->Pick(3));
  std::vector<std::vector<Event>> parts(1 + generator->Pick(3));
  for (const Event& event : events) {
    parts[generator->Pick(parts.size())].push_back(event);
  }
  for (const std::vector<Event>& part : parts) {
    if (part.empty()) {
      continue;
    }
    auto reader = testing::MakeSegment(part, static_cast<uint32_t>(1 + generator->Pick(50)));
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    context.segments.push_back(*reader);
  }
  return context;
}

QueryResult Run(const std::string& json, QueryContext context, uint32_t k) {
  context.min_group_size = k;
  auto spec = ParseQuery(json);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  auto result = RunQuery(*spec, context);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ok() ? *result : QueryResult{};
}

bool Contains(const std::vector<uint32_t>& list, size_t item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// The subjects behind one segmentation cell, by brute force: the events of
// the series' name, in the bucket (kDays: the whole range), whose "p" is
// the series' group (or none of `shown` for "other"), with a numeric "n"
// for a property measure.
size_t BruteSubjects(const std::vector<Event>& events, const SegmentationSeries& series,
                     const std::set<std::string>& shown, bool breakdown, bool property,
                     size_t bucket) {
  std::set<Id128> subjects;
  for (const Event& event : events) {
    const auto day = static_cast<size_t>((event.time_ms - kBaseMs) / kDayMs);
    if (event.name != series.event || (bucket < kDays && day != bucket)) {
      continue;
    }
    const std::string& value = FindProperty(event.properties, "p")->as_string();
    if (breakdown && (series.group.other ? shown.contains(value)
                                         : value != series.group.values[0].as_string())) {
      continue;
    }
    if (property && FindProperty(event.properties, "n") == nullptr) {
      continue;
    }
    subjects.insert(event.subject);
  }
  return subjects.size();
}

void CheckSegmentation(Generator* generator, const std::vector<Event>& events,
                       const QueryContext& context, uint32_t k) {
  static const char* const kMeasures[] = {
      R"("total")", R"("unique")", R"({"type":"sum","property":"n"})",
      R"({"type":"min","property":"n"})", R"({"type":"median","property":"n"})"};
  const size_t measure_idx = generator->Pick(5);
  const bool breakdown = generator->Chance(0.7);
  const bool two = generator->Chance(0.5);
  std::string json = R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-05",)"
                     R"("events":)" +
                     std::string(two ? R"(["A","B"])" : R"(["A"])") + R"(,"measure":)" +
                     kMeasures[measure_idx];
  if (breakdown) {
    json += R"(,"breakdown":{"properties":["p"],"limit":)" +
            std::to_string(1 + generator->Pick(4)) + "}";
  }
  json += "}";
  SCOPED_TRACE(json + " k=" + std::to_string(k));
  const QueryResult plain = Run(json, context, 0);
  const QueryResult hidden = Run(json, context, k);
  ASSERT_EQ(plain.series.size(), hidden.series.size());
  const bool property = measure_idx >= 2;
  const bool additive = measure_idx == 0 || measure_idx == 2;
  std::map<size_t, std::set<std::string>> shown;  // per selector: the groups shown
  for (const SegmentationSeries& series : hidden.series) {
    if (breakdown && !series.group.other) {
      shown[series.selector_idx].insert(series.group.values[0].as_string());
    }
  }
  // Per selector and bucket: the subjects of the withheld groups.
  std::map<std::pair<size_t, size_t>, std::pair<size_t, size_t>> withheld;  // sum, cells
  std::map<std::pair<size_t, size_t>, size_t> cells_of;  // per selector and bucket
  uint64_t suppressed_cells = 0;
  for (size_t series_idx = 0; series_idx < hidden.series.size(); ++series_idx) {
    const SegmentationSeries& series = hidden.series[series_idx];
    ASSERT_EQ(series.subjects.size(), kDays + 1);
    bool any_bucket_hidden = false;
    for (size_t bucket = 0; bucket <= kDays; ++bucket) {
      const size_t subjects =
          BruteSubjects(events, series, shown[series.selector_idx], breakdown, property, bucket);
      EXPECT_EQ(series.subjects[bucket], subjects)
          << "series " << series_idx << " bucket " << bucket;
      cells_of[{series.selector_idx, bucket}] += 1;
      const bool is_hidden =
          bucket < kDays ? Contains(series.suppressed, bucket) : series.total_suppressed;
      const std::optional<double> value = bucket < kDays ? series.values[bucket] : series.total;
      const std::optional<double> plain_value =
          bucket < kDays ? plain.series[series_idx].values[bucket] : plain.series[series_idx].total;
      if (is_hidden) {
        EXPECT_FALSE(value.has_value());
        ++suppressed_cells;
        auto& [sum, cells] = withheld[{series.selector_idx, bucket}];
        sum += subjects;
        cells += 1;
        any_bucket_hidden = any_bucket_hidden || bucket < kDays;
      } else {
        EXPECT_GE(subjects, k) << "series " << series_idx << " bucket " << bucket;
        EXPECT_EQ(value, plain_value) << "series " << series_idx << " bucket " << bucket;
      }
    }
    if (additive && any_bucket_hidden) {
      EXPECT_TRUE(series.total_suppressed) << "series " << series_idx;
    }
  }
  EXPECT_EQ(hidden.suppressed_cells, suppressed_cells);
  if (additive && breakdown) {
    // Unless every group is withheld (then the sum itself is under k).
    for (const auto& [where, sum_cells] : withheld) {
      EXPECT_TRUE(sum_cells.first >= k || sum_cells.second == cells_of[where])
          << "selector " << where.first << " bucket " << where.second;
    }
  }
}

// The time-to-convert buckets of each step: they add up to the step's
// subjects; a shown bucket holds k subjects and the unsuppressed count; a
// withheld step withholds every bucket; the withheld buckets of a shown step,
// and the withheld groups of a shown bucket of everyone, hold k subjects
// between them.
void CheckTimeToConvert(const QueryResult& plain, const QueryResult& hidden, uint32_t k) {
  for (size_t group_idx = 0; group_idx < hidden.funnel.size(); ++group_idx) {
    for (size_t step_idx = 0; step_idx < hidden.funnel[group_idx].steps.size(); ++step_idx) {
      SCOPED_TRACE("group " + std::to_string(group_idx) + " step " + std::to_string(step_idx));
      const FunnelStepResult& step = hidden.funnel[group_idx].steps[step_idx];
      const FunnelStepResult& truth = plain.funnel[group_idx].steps[step_idx];
      ASSERT_EQ(step.time_to_convert.size(), truth.time_to_convert.size());
      ASSERT_EQ(truth.time_to_convert.empty(), step_idx == 0);
      uint64_t sum = 0;
      uint64_t withheld = 0;
      for (size_t bucket_idx = 0; bucket_idx < truth.time_to_convert.size(); ++bucket_idx) {
        ASSERT_TRUE(truth.time_to_convert[bucket_idx].has_value());
        const uint64_t count = *truth.time_to_convert[bucket_idx];
        sum += count;
        if (Contains(step.time_to_convert_suppressed, bucket_idx)) {
          EXPECT_FALSE(step.time_to_convert[bucket_idx].has_value());
          withheld += count;
        } else {
          EXPECT_FALSE(step.suppressed);
          EXPECT_GE(count, k);
          EXPECT_EQ(step.time_to_convert[bucket_idx], count);
        }
      }
      if (step_idx > 0) {
        EXPECT_EQ(sum, truth.subjects);
      }
      if (!step.suppressed && !step.time_to_convert_suppressed.empty()) {
        EXPECT_GE(withheld, k);
      }
    }
  }
  for (size_t step_idx = 1; hidden.funnel.size() > 1 && step_idx < 3; ++step_idx) {
    const FunnelStepResult& everyone = hidden.funnel[0].steps[step_idx];
    for (size_t bucket_idx = 0; bucket_idx < everyone.time_to_convert.size(); ++bucket_idx) {
      if (Contains(everyone.time_to_convert_suppressed, bucket_idx)) {
        continue;
      }
      uint64_t withheld = 0;
      bool any = false;
      for (size_t group_idx = 1; group_idx < hidden.funnel.size(); ++group_idx) {
        if (Contains(hidden.funnel[group_idx].steps[step_idx].time_to_convert_suppressed,
                     bucket_idx)) {
          withheld += *plain.funnel[group_idx].steps[step_idx].time_to_convert[bucket_idx];
          any = true;
        }
      }
      EXPECT_TRUE(!any || withheld >= k) << "step " << step_idx << " bucket " << bucket_idx;
    }
  }
}

void CheckFunnel(Generator* generator, const QueryContext& context, uint32_t k) {
  const bool breakdown = generator->Chance(0.7);
  std::string json = R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-05",)"
                     R"("steps":["A","B","C"],"window":{"value":1,"unit":"day"})";
  if (breakdown) {
    json += R"(,"breakdown":{"properties":["p"],"limit":)" +
            std::to_string(1 + generator->Pick(4)) + "}";
  }
  json += "}";
  SCOPED_TRACE(json + " k=" + std::to_string(k));
  const QueryResult plain = Run(json, context, 0);
  const QueryResult hidden = Run(json, context, k);
  ASSERT_EQ(plain.funnel.size(), hidden.funnel.size());
  for (size_t step_idx = 0; step_idx < 3; ++step_idx) {
    uint64_t withheld = 0;
    bool any = false;
    for (size_t group_idx = 0; group_idx < hidden.funnel.size(); ++group_idx) {
      const FunnelStepResult& step = hidden.funnel[group_idx].steps[step_idx];
      const FunnelStepResult& truth = plain.funnel[group_idx].steps[step_idx];
      if (!step.suppressed) {
        EXPECT_GE(truth.subjects, k);
        EXPECT_EQ(step.subjects, truth.subjects);
        EXPECT_EQ(step.median_ms, truth.median_ms);
        const bool previous_hidden =
            step_idx > 0 && hidden.funnel[group_idx].steps[step_idx - 1].suppressed;
        EXPECT_EQ(std::isnan(step.step_conversion), previous_hidden);
      } else {
        EXPECT_TRUE(std::isnan(step.step_conversion));
        EXPECT_FALSE(step.median_ms.has_value());
        if (group_idx > 0) {
          withheld += truth.subjects;
          any = true;
        }
      }
    }
    if (any && !hidden.funnel[0].steps[step_idx].suppressed) {
      EXPECT_GE(withheld, k) << "step " << step_idx;
    }
  }
  CheckTimeToConvert(plain, hidden, k);
}

void CheckRetention(Generator* generator, const QueryContext& context, uint32_t k) {
  const bool breakdown = generator->Chance(0.7);
  std::string json = R"({"kind":"retention","from":"2024-03-01","to":"2024-03-03",)"
                     R"("birth":"A","return":"B","periods":2)";
  if (breakdown) {
    json += R"(,"breakdown":{"properties":["p"],"limit":)" +
            std::to_string(1 + generator->Pick(4)) + "}";
  }
  json += "}";
  SCOPED_TRACE(json + " k=" + std::to_string(k));
  const QueryResult plain = Run(json, context, 0);
  const QueryResult hidden = Run(json, context, k);
  ASSERT_EQ(plain.retention.size(), hidden.retention.size());
  for (size_t group_idx = 0; group_idx < hidden.retention.size(); ++group_idx) {
    const RetentionGroup& group = hidden.retention[group_idx];
    const RetentionGroup& truth = plain.retention[group_idx];
    EXPECT_TRUE(group.size_suppressed || truth.size >= k);
    uint64_t withheld_sizes = 0;
    bool any_size = false;
    for (size_t cohort_idx = 0; cohort_idx < group.cohorts.size(); ++cohort_idx) {
      const RetentionCohort& cohort = group.cohorts[cohort_idx];
      const RetentionCohort& cohort_truth = truth.cohorts[cohort_idx];
      if (cohort.size_suppressed) {
        withheld_sizes += cohort_truth.size;
        any_size = true;
      } else {
        EXPECT_GE(cohort_truth.size, k);
      }
      for (size_t period = 0; period < cohort.counts.size(); ++period) {
        if (Contains(cohort.suppressed, period)) {
          EXPECT_FALSE(cohort.counts[period].has_value());
          EXPECT_FALSE(cohort.rates[period].has_value());
        } else if (cohort_truth.counts[period].has_value()) {
          EXPECT_GE(*cohort_truth.counts[period], k);
          EXPECT_EQ(cohort.counts[period], cohort_truth.counts[period]);
          EXPECT_EQ(cohort.rates[period].has_value(), !cohort.size_suppressed);
        }
      }
    }
    if (any_size && !group.size_suppressed) {
      EXPECT_GE(withheld_sizes, k) << "group " << group_idx;
    }
    for (size_t period = 0; period < group.total_counts.size(); ++period) {
      if (!Contains(group.total_suppressed, period)) {
        EXPECT_GE(truth.total_counts[period], k);
      } else {
        EXPECT_FALSE(group.total_rates[period].has_value());
      }
    }
  }
  // Across groups: the withheld groups' sizes hold k subjects between them.
  if (hidden.retention.size() > 1 && !hidden.retention[0].size_suppressed) {
    uint64_t withheld = 0;
    bool any = false;
    for (size_t group_idx = 1; group_idx < hidden.retention.size(); ++group_idx) {
      if (hidden.retention[group_idx].size_suppressed) {
        withheld += plain.retention[group_idx].size;
        any = true;
      }
    }
    EXPECT_TRUE(!any || withheld >= k);
  }
}

TEST(SuppressTest, DifferentialAgainstBruteForce) {
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Generator generator(static_cast<uint64_t>(round) * 104729 + 3);
    const std::vector<Event> events = generator.Events();
    const QueryContext context = ContextOf(events, &generator);
    const auto k = static_cast<uint32_t>(2 + generator.Pick(6));
    CheckSegmentation(&generator, events, context, k);
    CheckFunnel(&generator, context, k);
    CheckRetention(&generator, context, k);
    if (::testing::Test::HasFailure()) {
      return;
    }
  }
}

// Four groups: x and y with 6 subjects, z with 5, w with 1, k = 3. w is
// withheld; "everyone" is shown, so w alone would be everyone minus the
// rest: the smallest shown group (z) is withheld with it, and the two
// withheld groups hold 6 subjects. The 50 other withheld cells are the time
// to convert to B (10 buckets per group): every subject took 1 minute, so
// each shown step would show one bucket equal to it beside nine empty ones,
// and the empty ones would follow by subtraction — the whole histogram is
// withheld (empty cells are withheld like small ones).
TEST(SuppressTest, ComplementaryGroupInFunnel) {
  std::vector<Event> events;
  const std::pair<const char*, int> kGroups[] = {{"x", 6}, {"y", 6}, {"z", 5}, {"w", 1}};
  uint64_t insert = 1;
  for (const auto& [value, count] : kGroups) {
    for (int subject_idx = 0; subject_idx < count; ++subject_idx) {
      for (const char* name : {"A", "B"}) {
        Event event;
        event.name = name;
        event.subject = testing::SubjectFromName(std::string(value) + std::to_string(subject_idx));
        event.time_ms = kBaseMs + (name[0] == 'A' ? 0 : 60000);
        event.insert_id = Id128{0, insert++};
        event.properties.push_back({"p", Value::String(value)});
        events.push_back(std::move(event));
      }
    }
  }
  QueryContext context;
  context.time_zone = "UTC";
  context.min_group_size = 3;
  auto reader = testing::MakeSegment(events, 16);
  ASSERT_TRUE(reader.ok());
  context.segments.push_back(*reader);
  auto spec = ParseQuery(
      R"({"kind":"funnel","from":"2024-03-01","to":"2024-03-02","steps":["A","B"],"breakdown":"p"})");
  ASSERT_TRUE(spec.ok());
  auto result = RunQuery(*spec, context);
  ASSERT_TRUE(result.ok());
  const std::string json = QueryResultToJson(*result);
  EXPECT_EQ(testing::JsonSubsetDiff(
                R"({"min_group_size":3,"suppressed_cells":54,
                    "steps":[{"subjects":18},{"subjects":18}],
                    "groups":[{"breakdown":["x"],"steps":[{"subjects":6},{"subjects":6}]},
                              {"breakdown":["y"],"steps":[{"subjects":6},{"subjects":6}]},
                              {"breakdown":["z"],"steps":[{"subjects":null,"suppressed":true,
                                "step_conversion":null,"overall_conversion":null},
                                {"subjects":null,"suppressed":true}]},
                              {"breakdown":["w"],"steps":[{"subjects":null,"suppressed":true},
                                {"subjects":null,"suppressed":true}]}]})",
                json),
            "")
      << json;
}

// A population smaller than k: nothing of it is shown.
TEST(SuppressTest, SmallPopulationIsWithheldWhole) {
  std::vector<Event> events;
  for (uint64_t subject_idx = 0; subject_idx < 3; ++subject_idx) {
    Event event;
    event.name = "A";
    event.subject = testing::SubjectFromName("s" + std::to_string(subject_idx));
    event.time_ms = kBaseMs + static_cast<int64_t>(subject_idx) * kDayMs;
    event.insert_id = Id128{0, subject_idx + 1};
    events.push_back(std::move(event));
  }
  QueryContext context;
  context.time_zone = "UTC";
  context.min_group_size = 5;
  auto reader = testing::MakeSegment(events, 16);
  ASSERT_TRUE(reader.ok());
  context.segments.push_back(*reader);
  auto spec =
      ParseQuery(R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-04","events":["A"]})");
  ASSERT_TRUE(spec.ok());
  auto result = RunQuery(*spec, context);
  ASSERT_TRUE(result.ok());
  const std::string json = QueryResultToJson(*result);
  EXPECT_NE(json.find(R"("values":[null,null,null],"total":null,"suppressed":[0,1,2],)"
                      R"("total_suppressed":true)"),
            std::string::npos)
      << json;
  EXPECT_EQ(result->suppressed_cells, 4u);
}

TEST(SuppressTest, MinGroupSizeOverTheLimitIsRefused) {
  QueryContext context;
  context.min_group_size = kMinGroupSizeMax + 1;
  auto spec =
      ParseQuery(R"({"kind":"segmentation","from":"2024-03-01","to":"2024-03-04","events":["A"]})");
  ASSERT_TRUE(spec.ok());
  auto result = RunQuery(*spec, context);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("kMinGroupSizeMax"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::query
