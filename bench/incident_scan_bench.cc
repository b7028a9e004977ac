// The incident module's every-cell scan (ScanSensitiveCells: cards, IBANs,
// password hashes, secrets) alone, on one thread, over real files: each
// FILE read whole (ReadTable), then scanned ROUNDS times; prints per file
// the cells, those long enough to be scanned (13 bytes and more) and how
// many of them the detectors' one-pass prefilter (MayHoldKinds) lets
// through to the scanners (--examples N prints the first N), the
// median time of a scan, ns per cell, and the counts found, so that two
// builds can be compared on the crossref bench's data without the rest of
// the crossref around it (docs/benchmarks.md, "Incident cross-reference").
//
//   build/bench/incident_scan_bench [--rounds N] [--examples N] FILE...
//   build/bench/incident_scan_bench $TMPDIR/minpanel-incident-bench-1000000-1000000/leaked.csv
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "incident/incident.h"
#include "median.h"
#include "privacy/detectors.h"

namespace minpanel::incident {
namespace {

struct ScanCounts {
  uint64_t cells = 0;
  uint64_t long_cells = 0;
  uint64_t prefilter_passed = 0;  // long cells MayHoldKinds lets through to the scanners
  uint64_t cards = 0;
  uint64_t ibans = 0;
  uint64_t credentials = 0;
  uint64_t marked_cells = 0;
};

// The kinds ScanSensitiveCells asks the detectors for (recognize.cc).
constexpr uint32_t kSensitiveKinds = (1u << static_cast<uint32_t>(privacy::PiiKind::kCard)) |
                                     (1u << static_cast<uint32_t>(privacy::PiiKind::kIban)) |
                                     (1u << static_cast<uint32_t>(privacy::PiiKind::kJwt)) |
                                     (1u << static_cast<uint32_t>(privacy::PiiKind::kApiKey)) |
                                     (1u << static_cast<uint32_t>(privacy::PiiKind::kSecret));

int ScanFile(const std::string& path, int rounds, size_t examples,
             const privacy::Detectors& detectors) {
  Result<Table> table = ReadTable(path);
  if (!table.ok()) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), table.status().ToString().c_str());
    return 1;
  }
  ScanCounts counts;
  for (size_t row = 0; row < table->row_count(); ++row) {
    table->ForEachCell(row, [&](size_t, std::string_view value) {
      ++counts.cells;
      if (value.size() < 13) {
        return;
      }
      ++counts.long_cells;
      if (detectors.MayHoldKinds(value, kSensitiveKinds)) {
        if (counts.prefilter_passed++ < examples) {
          std::printf("  passes the prefilter: %.*s\n", static_cast<int>(value.size()),
                      value.data());
        }
      }
    });
  }
  std::vector<double> seconds;
  for (int round = 0; round < rounds; ++round) {
    Recognition recognition;
    recognition.columns.resize(table->columns().size());
    const auto start = std::chrono::steady_clock::now();
    ScanSensitiveCells(*table, detectors, &recognition, &recognition.sensitive_cells);
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    counts.cards = counts.ibans = counts.credentials = counts.marked_cells = 0;
    for (const ColumnRecognition& column : recognition.columns) {
      counts.cards += column.card_values;
      counts.ibans += column.iban_values;
      counts.credentials += column.credential_values;
    }
    for (const uint8_t bits : recognition.sensitive_cells) {
      counts.marked_cells += bits != 0 ? 1 : 0;
    }
  }
  const double median = bench::Median(seconds);
  std::printf(
      "%s: %llu cells, %llu of 13+ bytes (%llu through the prefilter); scan %.3f s median of %d "
      "(%.1f ns a cell, %.1f ns a "
      "long cell); %llu cards, %llu IBANs, %llu credentials, %llu cells marked\n",
      path.c_str(), static_cast<unsigned long long>(counts.cells),
      static_cast<unsigned long long>(counts.long_cells),
      static_cast<unsigned long long>(counts.prefilter_passed), median, rounds,
      median * 1e9 / static_cast<double>(std::max<uint64_t>(counts.cells, 1)),
      median * 1e9 / static_cast<double>(std::max<uint64_t>(counts.long_cells, 1)),
      static_cast<unsigned long long>(counts.cards), static_cast<unsigned long long>(counts.ibans),
      static_cast<unsigned long long>(counts.credentials),
      static_cast<unsigned long long>(counts.marked_cells));
  return 0;
}

}  // namespace
}  // namespace minpanel::incident

int main(int argc, char** argv) {
  int rounds = 5;
  size_t examples = 0;
  std::vector<std::string> files;
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    const std::string_view arg = argv[arg_idx];
    if (arg == "--rounds" && arg_idx + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++arg_idx]));
    } else if (arg == "--examples" && arg_idx + 1 < argc) {
      examples = static_cast<size_t>(std::max(0, std::atoi(argv[++arg_idx])));
    } else {
      files.emplace_back(arg);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s [--rounds N] [--examples N] FILE...\n", argv[0]);
    return 2;
  }
  const minpanel::privacy::Detectors detectors;
  int failures = 0;
  for (const std::string& file : files) {
    failures += minpanel::incident::ScanFile(file, rounds, examples, detectors);
  }
  return failures == 0 ? 0 : 1;
}
