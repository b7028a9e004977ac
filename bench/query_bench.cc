// The query engine (src/query) on generated product events held as
// in-memory segments: the five query shapes of docs/benchmarks.md ("Queries")
// and a few more, timed with Google Benchmark, on 1 and 2 threads (wall
// time; the CPU column is the whole process's).
//
//   build-query-bench/bench/query_bench
//   MINPANEL_QUERY_BENCH_EVENTS=5000000 build-query-bench/bench/query_bench
//
// The events (2M by default; seeded, so every run sees the same): users drawn
// from a Zipf law (N / 40 of them), sessions of a few events over 30 days, a
// sign_up → project_created → checkout_started → purchase funnel where later
// steps are rarer, churn, and ~12 properties (plan, platform, country,
// browser, os, lang, session_id, utm_source, page, duration_ms, price,
// items). They are cut into one segment per 7 days plus one for the last 2
// days (the "memtable"), so a subject's timeline spans several segments, as
// in the store.
//
// Identity merging (docs/identity.md): MINPANEL_QUERY_BENCH_LINKED_PERCENT=10
// gives that share of users an anonymous id for their first session and a
// $identify linking it to their user id after it; MINPANEL_QUERY_BENCH_MERGE=0
// runs the queries with QueryContext::merge_identities off (ids, not persons);
// MINPANEL_QUERY_BENCH_FOLD=1 folds the first four segments (the ones
// compaction would have written) with the persons of all the links, as
// compaction does (docs/identity.md, "Folded segments"), and leaves the last
// ("memtable") one unfolded.
//
// k-suppression (docs/queries.md, "Small groups"): MINPANEL_QUERY_BENCH_K=5
// runs every query with QueryContext::min_group_size 5 — its cost is the
// time against a run without it (segmentation then counts the subjects
// behind every cell, as a unique count does).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/time_units.h"
#include "query/query.h"
#include "store/segment.h"

namespace minpanel::query {
namespace {

constexpr int64_t kStartMs = 1790812800000;  // 2026-10-01T00:00:00Z
constexpr int kDays = 30;

uint64_t Mix(uint64_t value) {  // splitmix64
  value += 0x9e3779b97f4a7c15ULL;
  value = (value ^ (value >> 30)) * 0xbf58476d1ce4e5b9ULL;
  value = (value ^ (value >> 27)) * 0x94d049bb133111ebULL;
  return value ^ (value >> 31);
}

const char* const kCountries[] = {"US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "ES", "IT",
                                  "NL", "SE", "PL", "AU", "MX", "KR", "CH", "AT", "BE", "DK"};
const char* const kPlatforms[] = {"web", "ios", "android"};
const char* const kPlans[] = {"free", "pro", "team", "enterprise"};
const char* const kBrowsers[] = {"Chrome", "Safari", "Firefox", "Edge", "Opera"};
const char* const kOses[] = {"Windows", "macOS", "iOS", "Android", "Linux"};
const char* const kLangs[] = {"en", "de", "fr", "es", "ja", "pt"};
const char* const kSources[] = {"google", "newsletter", "twitter", "direct", "partner"};
const char* const kOther[] = {"page_viewed",     "button_clicked", "search",        "feature_used",
                              "settings_opened", "invite_sent",    "file_uploaded", "comment_added",
                              "export_started",  "error_shown",    "help_opened",   "logout"};

std::vector<Event> Generate(size_t event_count, uint64_t linked_percent) {
  std::mt19937_64 random(42);
  const size_t users = std::max<size_t>(event_count / 40, 10);
  std::vector<Event> events;
  events.reserve(event_count + 64);
  std::uniform_real_distribution<double> unit(0, 1);
  size_t user_idx = 0;
  while (events.size() < event_count) {
    const uint64_t user = user_idx++ % users;
    const uint64_t seed = Mix(user);
    const Id128 user_subject{Mix(seed), Mix(seed + 1)};
    const Id128 anon_subject{Mix(seed + 11), Mix(seed + 12)};
    const bool linked = Mix(seed + 9) % 100 < linked_percent;
    // Zipf-like activity: a few heavy users, many light ones.
    const double rank = static_cast<double>(user + 1);
    const int sessions = 1 + static_cast<int>(40.0 / std::pow(rank, 0.35) * unit(random));
    const int64_t arrival = kStartMs + static_cast<int64_t>(unit(random) * kDays * kDayMs * 0.8);
    const int64_t lifetime = static_cast<int64_t>(-std::log(1 - unit(random)) * 9 * kDayMs);
    const int funnel_level = unit(random) < 0.65 ? 1 + static_cast<int>(unit(random) * 4.2) : 0;
    const std::string country = kCountries[Mix(seed + 2) % 20 * (Mix(seed + 3) % 2) % 20];
    const std::string platform = kPlatforms[Mix(seed + 4) % 3];
    const std::string plan = kPlans[Mix(seed + 5) % 4];
    int64_t time = arrival;
    int funnel_done = 0;
    for (int session = 0; session < sessions && events.size() < event_count; ++session) {
      if (time > arrival + lifetime || time >= kStartMs + kDays * kDayMs) {
        break;
      }
      const std::string session_id = std::to_string(Mix(seed + 100 + session) % 100000000);
      const Id128 subject = linked && session == 0 ? anon_subject : user_subject;
      const int length = 2 + static_cast<int>(unit(random) * 8);
      for (int event_idx = 0; event_idx < length; ++event_idx) {
        Event event;
        event.subject = subject;
        event.time_ms = time;
        event.insert_id = Id128{Mix(events.size()), events.size()};
        if (event_idx == 0) {
          event.name = "session_start";
        } else if (funnel_done < funnel_level && unit(random) < 0.3) {
          static const char* const kSteps[] = {"sign_up", "project_created", "checkout_started",
                                               "purchase"};
          event.name = kSteps[std::min(funnel_done, 3)];
          ++funnel_done;
        } else {
          event.name = kOther[static_cast<size_t>(unit(random) * unit(random) * 12)];
        }
        event.properties = {
            {"country", Value::String(country)},
            {"platform", Value::String(platform)},
            {"plan", Value::String(plan)},
            {"browser", Value::String(kBrowsers[Mix(seed + 6) % 5])},
            {"os", Value::String(kOses[Mix(seed + 7) % 5])},
            {"lang", Value::String(kLangs[Mix(seed + 8) % 6])},
            {"session_id", Value::String(session_id)},
            {"utm_source", Value::String(kSources[Mix(seed + session) % 5])},
            {"page", Value::String("/p/" + std::to_string(Mix(events.size()) % 5000))},
            {"duration_ms", Value::Int(static_cast<int64_t>(unit(random) * 5000))},
        };
        if (event.name == "purchase") {
          event.properties.push_back({"price", Value::Double(9.99 + 10 * (Mix(seed) % 10))});
          event.properties.push_back(
              {"items", Value::Int(1 + static_cast<int64_t>(Mix(seed) % 4))});
        }
        events.push_back(std::move(event));
        time += 2000 + static_cast<int64_t>(unit(random) * 120000);
      }
      if (linked && session == 0) {
        Event identify;
        identify.name = "$identify";
        identify.subject = user_subject;
        identify.time_ms = time;
        identify.insert_id = Id128{Mix(events.size()), events.size()};
        identify.properties = {{"$anon_distinct_id", Value::String(FormatPseudonym(anon_subject))}};
        events.push_back(std::move(identify));
      }
      time += 20 * 60 * 1000 + static_cast<int64_t>(-std::log(1 - unit(random)) * 1.5 * kDayMs);
    }
  }
  return events;
}

struct Data {
  QueryContext context;
  size_t events = 0;
  uint64_t segment_bytes = 0;
};

const Data& Shared() {
  static const Data data = [] {
    const char* env = std::getenv("MINPANEL_QUERY_BENCH_EVENTS");
    const size_t count = env != nullptr ? std::strtoull(env, nullptr, 10) : 2'000'000;
    const char* linked_env = std::getenv("MINPANEL_QUERY_BENCH_LINKED_PERCENT");
    const char* merge_env = std::getenv("MINPANEL_QUERY_BENCH_MERGE");
    std::vector<Event> events =
        Generate(count, linked_env != nullptr ? std::strtoull(linked_env, nullptr, 10) : 0);
    Data out;
    out.events = events.size();
    out.context.time_zone = "UTC";
    out.context.now_ms = kStartMs + 40 * kDayMs;
    out.context.merge_identities = merge_env == nullptr || std::string(merge_env) != "0";
    // One segment per 7 days, the last 2 days as the "memtable" segment.
    const int64_t cuts[] = {kStartMs + 7 * kDayMs, kStartMs + 14 * kDayMs, kStartMs + 21 * kDayMs,
                            kStartMs + 28 * kDayMs, INT64_MAX};
    const char* fold_env = std::getenv("MINPANEL_QUERY_BENCH_FOLD");
    const bool fold = fold_env != nullptr && std::string(fold_env) == "1";
    std::shared_ptr<const store::SubjectFold> subject_fold;
    for (int pass = 0; pass < (fold ? 2 : 1); ++pass) {
      if (pass == 1) {
        // The persons of every segment's links, then the segments again with them.
        Result<std::shared_ptr<const IdentityMap>> map = ResolveIdentities(out.context.segments);
        if (!map.ok()) {
          std::abort();
        }
        subject_fold = SubjectFoldOf(**map);
        out.context.segments.clear();
        out.segment_bytes = 0;
      }
      int64_t low = INT64_MIN;
      for (const int64_t high : cuts) {
        std::vector<Event> part;
        for (const Event& event : events) {
          if (event.time_ms >= low && event.time_ms < high) {
            part.push_back(event);
          }
        }
        low = high;
        if (part.empty()) {
          continue;
        }
        store::SegmentWriteOptions options;
        options.project_id = 1;
        if (subject_fold != nullptr && high != INT64_MAX) {
          options.fold = subject_fold.get();
        }
        auto image = store::EncodeSegment(part, options);
        if (!image.ok()) {
          std::abort();
        }
        out.segment_bytes += image->size();
        auto reader = store::SegmentReader::Open(std::move(*image), "bench.seg");
        if (!reader.ok()) {
          std::abort();
        }
        out.context.segments.push_back(
            std::shared_ptr<const store::SegmentReader>(std::move(*reader)));
      }
    }
    return out;
  }();
  return data;
}

void RunJson(benchmark::State& state, const std::string& json) {
  const Data& data = Shared();
  const Result<QuerySpec> spec = ParseQuery(json);
  if (!spec.ok()) {
    state.SkipWithError(spec.status().ToString().c_str());
    return;
  }
  QueryContext context = data.context;
  context.threads = static_cast<uint32_t>(state.range(0));
  if (const char* k = std::getenv("MINPANEL_QUERY_BENCH_K")) {
    context.min_group_size = static_cast<uint32_t>(std::strtoul(k, nullptr, 10));
  }
  QueryStats stats;
  for (auto _ : state) {
    Result<QueryResult> result = RunQuery(*spec, context);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      return;
    }
    stats = result->stats;
    benchmark::DoNotOptimize(result);
  }
  state.counters["events"] = static_cast<double>(data.events);
  state.counters["rows_read"] = static_cast<double>(stats.rows_read);
  state.counters["blocks_read"] = static_cast<double>(stats.blocks_read);
  state.counters["bytes_per_event"] =
      static_cast<double>(data.segment_bytes) / static_cast<double>(data.events);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * data.events));
}

constexpr const char* kRange = R"("from":"2026-10-01","to":"2026-10-31")";

void BM_DailyCountOfOneEvent(benchmark::State& state) {
  RunJson(state, std::string(R"({"kind":"segmentation",)") + kRange +
                     R"(,"unit":"day","events":["page_viewed"]})");
}
BENCHMARK(BM_DailyCountOfOneEvent)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_DailyUniqueUsersByCountry(benchmark::State& state) {
  RunJson(state, std::string(R"({"kind":"segmentation",)") + kRange +
                     R"(,"unit":"day","events":["session_start"],"measure":"unique",
                        "breakdown":{"properties":["country"],"limit":200}})");
}
BENCHMARK(BM_DailyUniqueUsersByCountry)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_FilteredSumByPlatform(benchmark::State& state) {
  RunJson(state, std::string(R"({"kind":"segmentation",)") + kRange +
                     R"(,"unit":"week","events":[{"event":"page_viewed","filters":[
                        {"property":"country","op":"in","values":["US","DE","FR"]},
                        {"property":"plan","op":"ne","value":"free"}]}],
                        "measure":{"type":"sum","property":"duration_ms"},"breakdown":"platform"})");
}
BENCHMARK(BM_FilteredSumByPlatform)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_Funnel4Steps7Days(benchmark::State& state) {
  RunJson(state, std::string(R"({"kind":"funnel",)") + kRange +
                     R"(,"steps":["sign_up","project_created","checkout_started","purchase"],
                        "window":{"value":7,"unit":"day"}})");
}
BENCHMARK(BM_Funnel4Steps7Days)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_Funnel4StepsByCountry(benchmark::State& state) {
  RunJson(state, std::string(R"({"kind":"funnel",)") + kRange +
                     R"(,"steps":["sign_up","project_created","checkout_started","purchase"],
                        "window":{"value":7,"unit":"day"},"breakdown":"country"})");
}
BENCHMARK(BM_Funnel4StepsByCountry)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_Retention7DaysBySignupDay(benchmark::State& state) {
  RunJson(state, std::string(R"({"kind":"retention",)") + kRange +
                     R"(,"birth":"sign_up","return":"session_start","unit":"day","periods":7})");
}
BENCHMARK(BM_Retention7DaysBySignupDay)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

// The floor under every query: decoding the name and time columns of every
// block (the store's work, no query logic).
void BM_DecodeNamesAndTimesOnly(benchmark::State& state) {
  const Data& data = Shared();
  std::vector<uint32_t> names;
  std::vector<int64_t> times;
  for (auto _ : state) {
    for (const auto& segment : data.context.segments) {
      for (size_t block_idx = 0; block_idx < segment->block_count(); ++block_idx) {
        if (!segment->ReadNameCodes(block_idx, &names).ok() ||
            !segment->ReadTimes(block_idx, &times).ok()) {
          state.SkipWithError("read failed");
          return;
        }
        benchmark::DoNotOptimize(names.data());
        benchmark::DoNotOptimize(times.data());
      }
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * data.events));
}
BENCHMARK(BM_DecodeNamesAndTimesOnly)->Unit(benchmark::kMillisecond);

void BM_ParseQuery(benchmark::State& state) {
  const std::string json = std::string(R"({"kind":"funnel",)") + kRange +
                           R"(,"steps":["sign_up",{"event":"project_created","filters":[
                              {"property":"plan","op":"in","values":["pro","team"]}]},
                              "checkout_started","purchase"],"window":{"value":7,"unit":"day"},
                              "exclusions":[{"event":"logout","between":[1,2]}],
                              "breakdown":"country"})";
  for (auto _ : state) {
    benchmark::DoNotOptimize(ParseQuery(json));
  }
}
BENCHMARK(BM_ParseQuery);

}  // namespace
}  // namespace minpanel::query

BENCHMARK_MAIN();
