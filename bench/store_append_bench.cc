// Append throughput of the embedded store: encoding alone, and the whole path
// (encode, group commit, write, fdatasync) with several appending threads.
// Events look like a typical web event after the privacy policy: about 15
// properties, about 470 bytes as JSON.
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "store/store.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr size_t kEventsPerBatch = 200;

Event TypicalEvent(uint64_t insert_id) {
  Event event;
  event.name = "$pageview";
  event.time_ms = 1'700'000'000'000 + static_cast<int64_t>(insert_id);
  event.subject = Id128{0x1234567890abcdefULL, insert_id % 5000};
  event.insert_id = Id128{0xfeedULL, insert_id};
  event.key_version = 1;
  event.properties = {
      {"$browser", Value::String("Chrome")},
      {"$browser_version", Value::Int(120)},
      {"$os", Value::String("Mac OS X")},
      {"$device", Value::String("Desktop")},
      {"$current_url", Value::String("https://example.com/pricing/enterprise")},
      {"$referring_domain", Value::String("www.google.com")},
      {"$screen_width", Value::Int(1920)},
      {"$screen_height", Value::Int(1080)},
      {"mp_country_code", Value::String("DE")},
      {"$region", Value::String("Berlin")},
      {"$city", Value::String("Berlin")},
      {"utm_source", Value::String("newsletter")},
      {"utm_campaign", Value::String("winter-launch-2024")},
      {"plan", Value::String("enterprise")},
      {"load_time", Value::Double(0.734)},
  };
  return event;
}

AppendBatch TypicalBatch(std::atomic<uint64_t>* next_id) {
  AppendBatch batch;
  batch.project_id = 1;
  const uint64_t first = next_id->fetch_add(kEventsPerBatch);
  for (size_t event_idx = 0; event_idx < kEventsPerBatch; ++event_idx) {
    batch.events.push_back(TypicalEvent(first + event_idx));
  }
  return batch;
}

void BM_EncodeEvent(benchmark::State& state) {
  const Event event = TypicalEvent(1);
  std::string buffer;
  for (auto _ : state) {
    buffer.clear();
    EncodeEvent(event, &buffer);
    benchmark::DoNotOptimize(Crc32(0, buffer));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_event"] = static_cast<double>(buffer.size());
}
BENCHMARK(BM_EncodeEvent);

// Each iteration: `threads` callers append 10 batches of kEventsPerBatch each.
void BM_AppendWithFsync(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr int kBatchesPerThread = 10;
  const std::string folder =
      (std::filesystem::temp_directory_path() / "minpanel_store_append_bench").string();
  std::filesystem::remove_all(folder);
  Options options;
  options.folder = folder;
  options.file_system = NewPosixFileSystem();
  options.clock = NewSystemClock();
  auto engine = OpenEmbeddedEngine(options);
  if (!engine.ok()) {
    state.SkipWithError(engine.status().ToString().c_str());
    return;
  }
  std::atomic<uint64_t> next_id{1};
  // Batches are built outside the timed region: only the store is measured.
  std::vector<std::vector<AppendBatch>> batches(static_cast<size_t>(threads));
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& thread_batches : batches) {
      thread_batches.clear();
      for (int batch_idx = 0; batch_idx < kBatchesPerThread; ++batch_idx) {
        thread_batches.push_back(TypicalBatch(&next_id));
      }
    }
    state.ResumeTiming();
    std::vector<std::thread> workers;
    for (auto& thread_batches : batches) {
      workers.emplace_back([&engine, &thread_batches] {
        for (AppendBatch& batch : thread_batches) {
          benchmark::DoNotOptimize((*engine)->Append(std::move(batch)).ok());
        }
      });
    }
    for (std::thread& worker : workers) {
      worker.join();
    }
  }
  const Stats stats = (*engine)->GetStats();
  state.SetItemsProcessed(static_cast<int64_t>(stats.events));
  state.counters["fsyncs"] = static_cast<double>(stats.fsyncs);
  state.counters["avg_fsync_us"] =
      stats.fsyncs == 0 ? 0.0 : static_cast<double>(stats.sync_latency_sum_us) / stats.fsyncs;
  (void)(*engine)->Close();
  std::filesystem::remove_all(folder);
}
BENCHMARK(BM_AppendWithFsync)->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace minpanel::store

BENCHMARK_MAIN();
