// ns per value through the PII detectors: realistic clean analytics values
// (the common case, which must stay cheap and allocation-free) and dirty
// values that hold one piece of personal data each.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "privacy/detectors.h"

// Counts heap allocations, to show that clean values allocate nothing.
std::atomic<uint64_t> allocations{0};

// Out of line so g++ does not pair an inlined free() with the new-expression
// of a caller and warn (-Wmismatched-new-delete) about the replacement.
[[gnu::noinline]] void Release(void* memory) noexcept { std::free(memory); }

void* operator new(size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* memory = std::malloc(size == 0 ? 1 : size)) {
    return memory;
  }
  throw std::bad_alloc();
}
void operator delete(void* memory) noexcept { Release(memory); }
void operator delete(void* memory, size_t) noexcept { Release(memory); }

namespace {

using minpanel::privacy::DetectorCounts;
using minpanel::privacy::Detectors;

const std::vector<std::string>& CleanValues() {
  static const std::vector<std::string> values = {
      "pro",
      "Checkout Completed",
      "/products/shoes/running",
      "/signup?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2024",
      "3f2a9c1b-7e6d-4a5f-8c0b-1e2d3a4f5c6b",
      "2.31.0",
      "2024-03-15T10:30:00.123Z",
      "1,299.00",
      "SKU-4821-BLK",
      "order_98765",
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/120.0.0.0 Safari/537.36",
      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      "psn_3f2a9c1b7e6d4a5f8c0b1e2d3a4f5c6b",
      "1710498600123",
      "en-US",
      "EUR",
      "new_checkout_flow",
      "1920x1080",
      "https://www.example.com/features/retention#pricing",
      "Button Clicked: Upgrade now",
      "Video Played 50%",
  };
  return values;
}

const std::vector<std::string>& DirtyValues() {
  static const std::vector<std::string> values = {
      "jane.doe+news@example.com",
      "/signup?email=a.b%40example.com&plan=pro",
      "call (415) 555-0132",
      "+44 20 7946 0958",
      "4111 1111 1111 1111",
      "GB82 WEST 1234 5698 7654 32",
      "client 192.168.1.20",
      "2001:db8::ff00:42:8329",
      "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
      "?token=sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
      "Y29udGFjdCBqYW5lLmRvZUBleGFtcGxlLmNvbQ==",
      "secret=Zx8Qm2Lp9Vt4Rk7Wn3Hs6Jd1Fb5Gc0Ya8Ue",
  };
  return values;
}

void Run(benchmark::State& state, const std::vector<std::string>& values) {
  const Detectors detectors;
  DetectorCounts counts;
  const uint64_t allocations_before = allocations.load();
  for (auto _ : state) {
    for (const std::string& value : values) {
      benchmark::DoNotOptimize(detectors.Redact(value, &counts));
    }
  }
  state.counters["allocations_per_value"] =
      benchmark::Counter(static_cast<double>(allocations.load() - allocations_before) /
                         static_cast<double>(state.iterations() * values.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * values.size()));
  // Seconds per value, printed with an SI prefix ("450n" is 450 ns).
  state.counters["time_per_value"] = benchmark::Counter(
      static_cast<double>(values.size()),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_RedactClean(benchmark::State& state) { Run(state, CleanValues()); }
void BM_RedactDirty(benchmark::State& state) { Run(state, DirtyValues()); }

void BM_RedactLongClean(benchmark::State& state) {
  std::string value;
  while (value.size() < 64 * 1024) {
    value += CleanValues()[value.size() % CleanValues().size()] + " ";
  }
  const Detectors detectors;
  for (auto _ : state) {
    benchmark::DoNotOptimize(detectors.Redact(value, nullptr));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * value.size()));
}

BENCHMARK(BM_RedactClean);
BENCHMARK(BM_RedactDirty);
BENCHMARK(BM_RedactLongClean);

}  // namespace

BENCHMARK_MAIN();
