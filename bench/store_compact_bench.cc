// Compaction's merge of segments, measured alone: the streaming merge
// (MergeSegmentsToFile, what compaction and the purge run now) against the
// row path it replaced (every input row decoded into an Event, then
// EncodeSegment and one write), in time and peak memory.
//
//   store_compact_bench --prepare DIR [--inputs 4] [--rows 200000]
//       writes DIR/input-N.seg: each of --rows realistic events
//       (store_realistic_events.h, its own seed, one user population, so the
//       inputs' subjects interleave as a day's flushes do)
//   store_compact_bench --merge DIR --mode stream|rows
//       merges every DIR/input-*.seg into DIR/output-<mode>.seg and prints
//       wall and CPU seconds, rows/s and the process's peak RSS (VmHWM)
//       before and after the merge. Run each mode in a fresh process, so
//       that one's peak is not the other's.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/core.h"
#include "store/segment.h"
#include "store/segment_merge.h"
#include "store_realistic_events.h"

namespace minpanel::store {
namespace {

constexpr size_t kUsers = 100'000;

uint64_t PeakRssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::stoull(line.substr(6));
    }
  }
  return 0;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

int Prepare(const std::string& folder, size_t inputs, size_t rows) {
  std::filesystem::create_directories(folder);
  std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  for (size_t input_idx = 0; input_idx < inputs; ++input_idx) {
    bench::RealisticEvents generator(kUsers, 1000 + input_idx);
    const std::vector<Event> events = generator.Make(rows);
    const std::string path = folder + "/input-" + std::to_string(input_idx) + ".seg";
    const Status status = WriteSegmentFile(*file_system, path, events, SegmentWriteOptions{});
    if (!status.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), status.ToString().c_str());
      return 1;
    }
  }
  std::printf("wrote %zu inputs of %zu rows to %s\n", inputs, rows, folder.c_str());
  return 0;
}

Status RowPath(FileSystem& file_system, const std::string& path,
               const std::vector<std::shared_ptr<const SegmentReader>>& inputs) {
  std::vector<Event> events;
  std::vector<Event> block_events;
  for (const auto& input : inputs) {
    for (size_t block_idx = 0; block_idx < input->block_count(); ++block_idx) {
      MP_RETURN_IF_ERROR(input->ReadEvents(block_idx, &block_events));
      events.insert(events.end(), block_events.begin(), block_events.end());
    }
  }
  return WriteSegmentFile(file_system, path, events, SegmentWriteOptions{});
}

int Merge(const std::string& folder, const std::string& mode) {
  std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  std::vector<std::shared_ptr<const SegmentReader>> inputs;
  uint64_t rows = 0;
  for (size_t input_idx = 0;; ++input_idx) {
    const std::string path = folder + "/input-" + std::to_string(input_idx) + ".seg";
    if (!std::filesystem::exists(path)) {
      break;
    }
    Result<std::unique_ptr<SegmentReader>> reader = OpenSegment(*file_system, path);
    if (!reader.ok()) {
      std::fprintf(stderr, "%s\n", reader.status().ToString().c_str());
      return 1;
    }
    rows += (*reader)->summary().row_count;
    inputs.push_back(std::move(*reader));
  }
  const uint64_t rss_before_kib = PeakRssKib();
  const std::string output = folder + "/output-" + mode + ".seg";
  const double cpu_before = CpuSeconds();
  const auto start = std::chrono::steady_clock::now();
  Status status;
  if (mode == "stream") {
    Result<MergeResult> merged =
        MergeSegmentsToFile(*file_system, output, inputs, SegmentWriteOptions{});
    status = merged.ok() ? Status::Ok() : merged.status();
  } else if (mode == "rows") {
    status = RowPath(*file_system, output, inputs);
  } else {
    std::fprintf(stderr, "--mode must be stream or rows\n");
    return 2;
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = CpuSeconds() - cpu_before;
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  const uint64_t output_bytes = std::filesystem::file_size(output);
  std::printf(
      "mode %s: %zu inputs, %llu rows -> %llu bytes; wall %.2f s, cpu %.2f s, %.0f rows/s, "
      "%.2f us/row cpu; peak RSS %llu MiB before the merge, %llu MiB after\n",
      mode.c_str(), inputs.size(), static_cast<unsigned long long>(rows),
      static_cast<unsigned long long>(output_bytes), wall, cpu, static_cast<double>(rows) / wall,
      cpu * 1e6 / static_cast<double>(rows), static_cast<unsigned long long>(rss_before_kib / 1024),
      static_cast<unsigned long long>(PeakRssKib() / 1024));
  return 0;
}

}  // namespace
}  // namespace minpanel::store

int main(int argc, char** argv) {
  std::string prepare;
  std::string merge;
  std::string mode = "stream";
  size_t inputs = 4;
  size_t rows = 200'000;
  for (int arg_idx = 1; arg_idx + 1 < argc; arg_idx += 2) {
    const std::string flag = argv[arg_idx];
    const std::string value = argv[arg_idx + 1];
    if (flag == "--prepare") {
      prepare = value;
    } else if (flag == "--merge") {
      merge = value;
    } else if (flag == "--mode") {
      mode = value;
    } else if (flag == "--inputs") {
      inputs = std::stoul(value);
    } else if (flag == "--rows") {
      rows = std::stoul(value);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (!prepare.empty()) {
    return minpanel::store::Prepare(prepare, inputs, rows);
  }
  if (!merge.empty()) {
    return minpanel::store::Merge(merge, mode);
  }
  std::fprintf(stderr,
               "usage: store_compact_bench --prepare DIR | --merge DIR --mode stream|rows\n");
  return 2;
}
