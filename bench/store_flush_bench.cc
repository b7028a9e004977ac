// Flush and open of the embedded store, and the memory of a process that
// opens a large store. Appends EVENTS events of 12 properties over 30 days
// in batches of 1,000 from one thread with each memtable threshold given,
// closes (flushing what is left), then opens the store again in a fresh
// process (this program with --open) and reports the open time and its
// resident memory (VmRSS, VmHWM from /proc/self/status) after open and
// after reading four columns of every block of every segment, as a query
// would. A threshold of 0 means no flush at all (open replays the log).
//
//   build-store/bench/store_flush_bench                      # README runs
//   build-store/bench/store_flush_bench --events 10000000 --memtable-rows 200000
//   build-store/bench/store_flush_bench --open FOLDER        # an existing store
//   build-store/bench/store_flush_bench --memtable-rows 200000 --profiles-per-batch 100
//                                                            # profile-heavy ingest
//
// With --profiles-per-batch N each batch of 1,000 events also carries N
// profile updates ($set of four properties of one of the batch's users),
// and the report gives the bytes on disk after Close per folder (wal/,
// segments/, profiles/), read from the folder, so that binaries from before
// and after a change of where profile updates live compare alike.
//
// The store lives in a scratch folder under $TMPDIR (removed afterwards
// unless --keep).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/time_units.h"
#include "store/segment.h"
#include "store/store.h"

extern char** environ;

namespace minpanel::store {
namespace {

constexpr int64_t kNowMs = 1'700'000'000'000;
constexpr uint32_t kProject = 3;
constexpr uint64_t kBatchEvents = 1000;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A field of /proc/self/status in MB (its unit is kB), or -1.
double StatusMb(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::strtod(line.c_str() + field.size() + 1, nullptr) / 1024;
    }
  }
  return -1;
}

std::vector<Event> Batch(uint64_t first) {
  std::vector<Event> events;
  events.reserve(kBatchEvents);
  for (uint64_t id = first; id < first + kBatchEvents; ++id) {
    const uint64_t user = (id * 2654435761u) % 50'000;
    Event event;
    event.name = "event " + std::to_string(id % 20);
    event.time_ms = kNowMs - static_cast<int64_t>(id % 30) * kDayMs;
    event.subject = Id128{0, user};
    event.insert_id = Id128{0x1D, id * 0x9E3779B97F4A7C15ull};
    event.key_version = 1;
    event.policy_version = 2;  // one policy in force during the run
    event.properties = {{"plan", Value::String(user % 3 ? "free" : "pro")},
                        {"country", Value::String("c" + std::to_string(user % 60))},
                        {"city", Value::String("city " + std::to_string(user % 800))},
                        {"browser", Value::String("b" + std::to_string(user % 7))},
                        {"os", Value::String("os" + std::to_string(user % 5))},
                        {"path", Value::String("/p/" + std::to_string(id % 300))},
                        {"session", Value::String("s" + std::to_string(id / 8))},
                        {"load_ms", Value::Int(static_cast<int64_t>(id % 977))},
                        {"duration", Value::Double(static_cast<double>(id % 101) / 7)},
                        {"logged_in", Value::Bool(user % 2 == 0)},
                        {"width", Value::Int(static_cast<int64_t>(1024 + user % 4 * 256))},
                        {"lang", Value::String("l" + std::to_string(user % 11))}};
    events.push_back(std::move(event));
  }
  return events;
}

std::vector<ProfileUpdate> Profiles(uint64_t first, uint64_t count) {
  std::vector<ProfileUpdate> updates;
  for (uint64_t update_idx = 0; update_idx < count; ++update_idx) {
    const uint64_t id = first + update_idx * (kBatchEvents / count);
    const uint64_t user = (id * 2654435761u) % 50'000;
    ProfileUpdate update;
    update.subject = Id128{0, user};
    update.time_ms = kNowMs - static_cast<int64_t>(id % 30) * kDayMs;
    update.key_version = 1;
    update.operation = ProfileOperation::kSet;
    update.properties = {{"plan", Value::String(user % 3 ? "free" : "pro")},
                         {"seats", Value::Int(static_cast<int64_t>(id % 50))},
                         {"company", Value::String("company " + std::to_string(user % 900))},
                         {"last_path", Value::String("/p/" + std::to_string(id % 300))}};
    updates.push_back(std::move(update));
  }
  return updates;
}

// Bytes of the regular files under `folder`.
uint64_t FolderBytes(const std::string& folder) {
  uint64_t bytes = 0;
  std::error_code error;
  if (!std::filesystem::exists(folder, error)) {
    return 0;
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(folder, error)) {
    if (entry.is_regular_file(error)) {
      bytes += entry.file_size(error);
    }
  }
  return bytes;
}

Options StoreOptions(const std::string& folder) {
  Options options;
  options.folder = folder;
  options.file_system = NewPosixFileSystem();
  options.clock = std::make_shared<FakeClock>(kNowMs);
  return options;
}

// Opens the store in `folder` in this process and reports time and memory.
int OpenAndReport(const std::string& folder) {
  const double rss_start_mb = StatusMb("VmRSS");
  const auto open_start = std::chrono::steady_clock::now();
  auto engine = OpenEmbeddedEngine(StoreOptions(folder));
  if (!engine.ok()) {
    std::fprintf(stderr, "open: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const double open_s = SecondsSince(open_start);
  const double rss_open_mb = StatusMb("VmRSS");
  const Stats stats = (*engine)->GetStats();
  auto snapshot = (*engine)->Snapshot(kProject);
  if (!snapshot.ok()) {
    std::fprintf(stderr, "snapshot: %s\n", snapshot.status().ToString().c_str());
    return 1;
  }
  const auto read_start = std::chrono::steady_clock::now();
  std::vector<int64_t> times;
  std::vector<uint32_t> names;
  SubjectRuns runs;
  PropertyColumn country;
  uint64_t rows = 0;
  for (const auto& reader : *snapshot) {
    for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
      Status status = reader->ReadTimes(block_idx, &times);
      if (status.ok()) {
        status = reader->ReadNameCodes(block_idx, &names);
      }
      if (status.ok()) {
        status = reader->ReadSubjects(block_idx, &runs);
      }
      if (status.ok()) {
        status = reader->ReadProperty(block_idx, "country", &country);
      }
      if (!status.ok()) {
        std::fprintf(stderr, "read: %s\n", status.ToString().c_str());
        return 1;
      }
      rows += times.size();
    }
  }
  const double read_s = SecondsSince(read_start);
  std::printf(
      "open %.3f s: %llu events (%llu in %llu segments of %.1f MB, %llu in the memtable), log "
      "%.1f MB, dedup entries %llu; VmRSS %.1f MB before open, %.1f MB after open, %.1f MB after "
      "reading 4 columns of %llu rows in %.2f s; VmHWM %.1f MB\n",
      open_s, static_cast<unsigned long long>(stats.events),
      static_cast<unsigned long long>(stats.events - stats.memtable_rows),
      static_cast<unsigned long long>(stats.segments), stats.segment_bytes / 1e6,
      static_cast<unsigned long long>(stats.memtable_rows), stats.log_bytes / 1e6,
      static_cast<unsigned long long>(stats.dedup_entries), rss_start_mb, rss_open_mb,
      StatusMb("VmRSS"), static_cast<unsigned long long>(rows), read_s, StatusMb("VmHWM"));
  return (*engine)->Close().ok() ? 0 : 1;
}

// Appends `events` events with the given threshold (0: no flush) and closes.
bool Build(const std::string& folder, uint64_t events, size_t memtable_rows,
           uint64_t profiles_per_batch) {
  std::filesystem::remove_all(folder);
  Options options = StoreOptions(folder);
  // No flush: thresholds no run reaches (and whose hard limit does not overflow).
  options.memtable_rows_max = memtable_rows == 0 ? size_t{1} << 40 : memtable_rows;
  options.memtable_bytes_max = memtable_rows == 0 ? uint64_t{1} << 50 : kMemtableBytesMaxDefault;
  options.flush_on_close = memtable_rows != 0;
  auto engine = OpenEmbeddedEngine(options);
  if (!engine.ok()) {
    std::fprintf(stderr, "open: %s\n", engine.status().ToString().c_str());
    return false;
  }
  const auto append_start = std::chrono::steady_clock::now();
  for (uint64_t first = 0; first < events; first += kBatchEvents) {
    while (true) {
      AppendBatch batch;
      batch.project_id = kProject;
      batch.events = Batch(first);
      batch.profile_updates = Profiles(first, profiles_per_batch);
      const auto result = (*engine)->Append(std::move(batch));
      if (result.ok()) {
        break;
      }
      if (result.status().code() != StatusCode::kResourceExhausted) {
        std::fprintf(stderr, "append: %s\n", result.status().ToString().c_str());
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the memtable is full
    }
  }
  const double append_s = SecondsSince(append_start);
  const auto close_start = std::chrono::steady_clock::now();
  if (!(*engine)->Close().ok()) {
    return false;
  }
  const double close_s = SecondsSince(close_start);
  const Stats stats = (*engine)->GetStats();
  const double flush_s = static_cast<double>(stats.flush_time_us_sum) / 1e6;
  std::printf(
      "memtable_rows_max %zu: appended %llu events in %.2f s (%.0f/s), %llu flushes of %llu rows "
      "in %.2f s (%.0f rows/s of flush thread), behind %llu, refused %llu; close %.2f s; %llu "
      "segments, %.3f bytes/event, log %llu bytes, %llu log files trimmed\n",
      memtable_rows, static_cast<unsigned long long>(events), append_s, events / append_s,
      static_cast<unsigned long long>(stats.flushes),
      static_cast<unsigned long long>(stats.flush_rows), flush_s,
      flush_s > 0 ? stats.flush_rows / flush_s : 0.0, static_cast<unsigned long long>(stats.flushes_behind),
      static_cast<unsigned long long>(stats.appends_refused_memtable_full), close_s,
      static_cast<unsigned long long>(stats.segments),
      static_cast<double>(stats.segment_bytes) / static_cast<double>(events),
      static_cast<unsigned long long>(stats.log_bytes),
      static_cast<unsigned long long>(stats.log_files_trimmed));
  if (profiles_per_batch > 0) {
    std::printf(
        "  %llu profile updates; on disk after close: wal/ %.1f MB, segments/ %.1f MB, profiles/ "
        "%.1f MB\n",
        static_cast<unsigned long long>(events / kBatchEvents * profiles_per_batch),
        FolderBytes(folder + "/wal") / 1e6, FolderBytes(folder + "/segments") / 1e6,
        FolderBytes(folder + "/profiles") / 1e6);
  }
  std::fflush(stdout);
  return true;
}

// Runs this program with --open in a child process, so that its memory
// counts only what open and the reads take.
bool OpenInChild(const std::string& folder) {
  std::string self = "/proc/self/exe";
  std::string flag = "--open";
  std::string path = folder;
  char* argv[] = {self.data(), flag.data(), path.data(), nullptr};
  pid_t child = 0;
  if (posix_spawn(&child, self.c_str(), nullptr, nullptr, argv, environ) != 0) {
    std::perror("posix_spawn");
    return false;
  }
  int status = 0;
  return waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int Main(int argc, char** argv) {
  uint64_t events = 1'000'000;
  uint64_t profiles_per_batch = 0;
  std::vector<size_t> thresholds;
  bool keep = false;
  std::string folder = (std::filesystem::temp_directory_path() /
                        ("store_flush_bench_" + std::to_string(::getpid())))
                           .string();
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    const std::string arg = argv[arg_idx];
    const bool has_value = arg_idx + 1 < argc;
    if (arg == "--open" && has_value) {
      return OpenAndReport(argv[arg_idx + 1]);
    } else if (arg == "--events" && has_value) {
      events = std::strtoull(argv[++arg_idx], nullptr, 10);
    } else if (arg == "--memtable-rows" && has_value) {
      thresholds.push_back(std::strtoull(argv[++arg_idx], nullptr, 10));
    } else if (arg == "--profiles-per-batch" && has_value) {
      profiles_per_batch = std::strtoull(argv[++arg_idx], nullptr, 10);
    } else if (arg == "--folder" && has_value) {
      folder = argv[++arg_idx];
    } else if (arg == "--keep") {
      keep = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--events N] [--memtable-rows R]... [--profiles-per-batch N] "
                   "[--folder F] [--keep] | --open F\n",
                   argv[0]);
      return 2;
    }
  }
  if (events == 0 || events % kBatchEvents != 0) {
    std::fprintf(stderr, "--events must be a positive multiple of %llu\n",
                 static_cast<unsigned long long>(kBatchEvents));
    return 2;
  }
  if (profiles_per_batch > kBatchEvents) {
    std::fprintf(stderr, "--profiles-per-batch must be at most %llu\n",
                 static_cast<unsigned long long>(kBatchEvents));
    return 2;
  }
  if (thresholds.empty()) {
    thresholds = {200'000, 20'000, 0};
  }
  int exit_code = 0;
  for (const size_t memtable_rows : thresholds) {
    if (!Build(folder, events, memtable_rows, profiles_per_batch) || !OpenInChild(folder)) {
      exit_code = 1;
      break;
    }
  }
  if (!keep) {
    std::filesystem::remove_all(folder);
  }
  return exit_code;
}

}  // namespace
}  // namespace minpanel::store

int main(int argc, char** argv) { return minpanel::store::Main(argc, argv); }
