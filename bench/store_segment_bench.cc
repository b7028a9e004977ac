// Segment files of the embedded store: bytes per event on realistic product
// events, and encode / decode throughput. The events come from a seeded
// generator: users drawn from a Zipf distribution, sessions of a few minutes
// spread over 30 days, ~20 event names with a sign-up -> purchase funnel
// where later steps are rarer, and ~20 properties: per-user ones (plan,
// platform, country, browser, os, device, app version, language, screen
// size), per-session ones (session id, utm source, referrer), per-event ones
// (path, load time, duration, search term, product id, experiments),
// purchase-only ones (price, quantity, order id), and a long tail of 300
// custom keys on one event in ten.
//
//   build-seg/bench/store_segment_bench --benchmark_filter=Size
//
// Each size benchmark encodes once and reports bytes per event (and per
// column group) as counters.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "store/segment.h"
#include "store_realistic_events.h"

namespace minpanel::store {
namespace {

using bench::RealisticEvents;

constexpr size_t kUsers = 100'000;

const std::vector<Event>& Events(size_t count) {
  static std::map<size_t, std::vector<Event>> cache;
  auto found = cache.find(count);
  if (found == cache.end()) {
    RealisticEvents generator(kUsers, 42);
    found = cache.emplace(count, generator.Make(count)).first;
  }
  return found->second;
}

const std::string& Image(size_t count) {
  static std::map<size_t, std::string> cache;
  auto found = cache.find(count);
  if (found == cache.end()) {
    found = cache.emplace(count, *EncodeSegment(Events(count), SegmentWriteOptions{})).first;
  }
  return found->second;
}

void ReportSize(benchmark::State& state, const std::string& image, size_t events) {
  auto reader = SegmentReader::Open(image, "bench");
  if (!reader.ok()) {
    state.SkipWithError(reader.status().ToString().c_str());
    return;
  }
  const SegmentFooter& footer = (*reader)->footer();
  std::vector<double> fixed(kFixedColumnCount, 0);
  double columns = 0;
  double map = 0;
  double policy_versions = 0;
  double codec_chunks[3] = {0, 0, 0};
  for (const FooterBlock& block : footer.blocks) {
    policy_versions += static_cast<double>(block.policy_versions.stored_bytes);
    for (size_t chunk_idx = 0; chunk_idx < block.chunks.size(); ++chunk_idx) {
      if (block.chunks[chunk_idx].raw_bytes > 0) {
        ++codec_chunks[static_cast<size_t>(block.chunks[chunk_idx].codec)];
      }
      const double bytes = static_cast<double>(block.chunks[chunk_idx].stored_bytes);
      if (chunk_idx < kFixedColumnCount) {
        fixed[chunk_idx] += bytes;
      } else if (chunk_idx + 1 < block.chunks.size()) {
        columns += bytes;
      } else {
        map += bytes;
      }
    }
  }
  for (const FooterColumn& column : footer.columns) {
    columns += static_cast<double>(column.dictionary.stored_bytes);
  }
  const double per_event = 1.0 / static_cast<double>(events);
  state.counters["bytes_per_event"] = static_cast<double>(image.size()) * per_event;
  for (size_t column_idx = 0; column_idx < kFixedColumnCount; ++column_idx) {
    state.counters[std::string(FixedColumnName(static_cast<FixedColumn>(column_idx)))] =
        fixed[column_idx] * per_event;
  }
  state.counters["columns"] = columns * per_event;
  state.counters["map"] = map * per_event;
  state.counters["policy_version"] = policy_versions * per_event;
  state.counters["own_columns"] = static_cast<double>(footer.columns.size());
  state.counters["blocks"] = static_cast<double>(footer.blocks.size());
  state.counters["chunks_none"] = codec_chunks[0];
  state.counters["chunks_lz4"] = codec_chunks[1];
  state.counters["chunks_zstd"] = codec_chunks[2];
}

// Size by the column threshold: own_column_fraction_min = arg / 10000
// (arg -1: every key in the map).
void BM_SizeByColumnThreshold(benchmark::State& state) {
  const size_t count = 1'000'000;
  SegmentWriteOptions options;
  if (state.range(0) < 0) {
    options.own_columns_max = 0;
  } else {
    options.own_column_fraction_min = static_cast<double>(state.range(0)) / 10000;
  }
  std::string image;
  for (auto _ : state) {
    image = *EncodeSegment(Events(count), options);
  }
  ReportSize(state, image, count);
}
BENCHMARK(BM_SizeByColumnThreshold)
    ->Arg(-1)
    ->Arg(0)
    ->Arg(10)
    ->Arg(100)
    ->Arg(500)
    ->Arg(2000)
    ->Arg(10000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

void BM_SizeByBlockRows(benchmark::State& state) {
  const size_t count = 1'000'000;
  SegmentWriteOptions options;
  options.block_rows_max = static_cast<uint32_t>(state.range(0));
  std::string image;
  for (auto _ : state) {
    image = *EncodeSegment(Events(count), options);
  }
  ReportSize(state, image, count);
}
BENCHMARK(BM_SizeByBlockRows)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(65536)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// Seconds to decode every chunk of the segment into column arrays (the
// query engine's path), best of three.
double DecodeAllColumns(const std::string& image) {
  auto reader = SegmentReader::Open(image, "bench");
  std::vector<int64_t> times;
  SubjectRuns runs;
  std::vector<Id128> ids;
  std::vector<uint32_t> numbers;
  PropertyColumn column;
  double best = 1e9;
  for (int repetition = 0; repetition < 3; ++repetition) {
    const auto start = std::chrono::steady_clock::now();
    for (size_t block_idx = 0; block_idx < (*reader)->block_count(); ++block_idx) {
      (void)(*reader)->ReadTimes(block_idx, &times);
      (void)(*reader)->ReadSubjects(block_idx, &runs);
      (void)(*reader)->ReadInsertIds(block_idx, &ids);
      (void)(*reader)->ReadKeyVersions(block_idx, &numbers);
      (void)(*reader)->ReadNameCodes(block_idx, &numbers);
      for (const PropertyKeyInfo& key : (*reader)->property_keys()) {
        if (key.storage == PropertyStorage::kColumn) {
          (void)(*reader)->ReadProperty(block_idx, key.key, &column);
        }
      }
    }
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

// Size by codec: 0 none, 1 lz4, 2 zstd, 3 measured per chunk (the default);
// second arg: zstd level.
void BM_SizeByCodec(benchmark::State& state) {
  const size_t count = 1'000'000;
  SegmentWriteOptions options;
  if (state.range(0) < 3) {
    options.codec = static_cast<SegmentCodec>(state.range(0));
  }
  options.zstd_level = static_cast<int>(state.range(1));
  std::string image;
  for (auto _ : state) {
    image = *EncodeSegment(Events(count), options);
  }
  ReportSize(state, image, count);
  state.counters["decode_rows_per_s"] = static_cast<double>(count) / DecodeAllColumns(image);
}
BENCHMARK(BM_SizeByCodec)
    ->Args({0, 3})
    ->Args({1, 3})
    ->Args({2, 1})
    ->Args({2, 3})
    ->Args({3, 1})
    ->Args({3, 3})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// Bytes per event as a fresh flush (100K events) and as a compacted segment (1M).
void BM_SizeByEvents(benchmark::State& state) {
  const size_t count = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(Image(count).size());
  }
  ReportSize(state, Image(count), count);
}
BENCHMARK(BM_SizeByEvents)->Arg(100'000)->Arg(1'000'000)->Iterations(1);

void BM_Encode(benchmark::State& state) {
  const size_t count = static_cast<size_t>(state.range(0));
  const std::vector<Event>& events = Events(count);
  for (auto _ : state) {
    benchmark::DoNotOptimize(EncodeSegment(events, SegmentWriteOptions{}).ok());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(count));
}
BENCHMARK(BM_Encode)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Whole rows back to Event objects (an export).
void BM_DecodeEvents(benchmark::State& state) {
  const size_t count = 1'000'000;
  const std::string& image = Image(count);
  auto reader = SegmentReader::Open(image, "bench");
  std::vector<Event> events;
  for (auto _ : state) {
    for (size_t block_idx = 0; block_idx < (*reader)->block_count(); ++block_idx) {
      benchmark::DoNotOptimize((*reader)->ReadEvents(block_idx, &events).ok());
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(count));
}
BENCHMARK(BM_DecodeEvents)->Unit(benchmark::kMillisecond)->UseRealTime();

// The reader of the scan benchmarks. Arg 0: over the image in memory
// (SegmentReader::Open, as Snapshot's memtable segments). Arg 1: over a file
// (OpenSegment, as the engine's flushed segments), with a warm page cache;
// the file is unlinked once open, as compaction may do to a reader in use.
std::unique_ptr<SegmentReader> ScanReader(benchmark::State& state, size_t count) {
  const std::string& image = Image(count);
  if (state.range(0) == 0) {
    return std::move(SegmentReader::Open(image, "bench")).value();
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("store_segment_bench_" + std::to_string(::getpid()) + ".seg"))
                               .string();
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  const Status written = WriteSegmentImage(*file_system, path, image);
  if (!written.ok()) {
    state.SkipWithError(written.ToString().c_str());
    return nullptr;
  }
  auto reader = OpenSegment(*file_system, path);
  (void)file_system->Remove(path);
  if (!reader.ok()) {
    state.SkipWithError(reader.status().ToString().c_str());
    return nullptr;
  }
  return std::move(reader).value();
}

// What a segmentation query reads: times, name codes, subjects and one
// dictionary column per block, then counts rows of one name per country.
void BM_ScanColumns(benchmark::State& state) {
  const size_t count = 1'000'000;
  const std::unique_ptr<SegmentReader> reader = ScanReader(state, count);
  if (reader == nullptr) {
    return;
  }
  const uint32_t pageview = *reader->FindEventName("$pageview");
  std::vector<int64_t> times;
  std::vector<uint32_t> names;
  SubjectRuns runs;
  PropertyColumn country;
  std::vector<uint64_t> counts;
  for (auto _ : state) {
    for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
      (void)reader->ReadTimes(block_idx, &times);
      (void)reader->ReadNameCodes(block_idx, &names);
      (void)reader->ReadSubjects(block_idx, &runs);
      (void)reader->ReadProperty(block_idx, "country", &country);
      counts.assign(country.dictionary()->entries.size(), 0);
      for (size_t row = 0; row < names.size(); ++row) {
        if (names[row] == pageview && country.tags[row] == PropertyTag::kString) {
          ++counts[country.string_codes[row]];
        }
      }
      benchmark::DoNotOptimize(counts.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(count));
}
BENCHMARK(BM_ScanColumns)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// One property that lives in the map column (order_id, on purchases only).
void BM_ScanMapKey(benchmark::State& state) {
  const size_t count = 1'000'000;
  const std::unique_ptr<SegmentReader> reader = ScanReader(state, count);
  if (reader == nullptr) {
    return;
  }
  PropertyColumn column;
  for (auto _ : state) {
    for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
      benchmark::DoNotOptimize(reader->ReadProperty(block_idx, "order_id", &column).ok());
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(count));
  state.counters["storage_is_map"] =
      reader->FindPropertyKey("order_id")->storage == PropertyStorage::kMap ? 1 : 0;
}
BENCHMARK(BM_ScanMapKey)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace minpanel::store

BENCHMARK_MAIN();
