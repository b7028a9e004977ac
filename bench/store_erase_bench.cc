// Erasure in the embedded store (src/store/README.md, "Erasure"): builds a
// store of EVENTS events (50,000 users over 30 days, 12 properties, flushed
// into segments), or opens an existing one, then erases SUBJECTS users in
// one EraseSubjects call and reports
//   - the time for the call to return (the deletion record logged and
//     fsynced, the memtable filtered),
//   - the time until a query snapshot no longer holds their rows (the first
//     Snapshot after the call computes the row masks of the segments it
//     touches), and that the snapshot's row count dropped by exactly their
//     rows,
//   - the physical stage (PurgeDeleted): time, segments rewritten, rows
//     removed, bytes written.
//
//   build-store/bench/store_erase_bench --build FOLDER --events 10000000
//   build-store/bench/store_erase_bench --open FOLDER --subjects 1
//   build-store/bench/store_erase_bench --open FOLDER --subjects 10000
//   --no-purge
//   --project N   the project to erase from (default 3, the built store's;
//                 a server's store folder, DATA/store, holds its projects
//                 by id: see DATA/projects.json)
//
// The users erased are drawn at random (fixed seed) from the subjects the
// store holds, so any store can be opened, a server's included.
//
// A purge rewrites the store in place: run --build again (or copy the folder
// first) to measure on the same data twice.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/time_units.h"
#include "store/segment.h"
#include "store/store.h"

namespace minpanel::store {
namespace {

constexpr int64_t kNowMs = 1'700'000'000'000;
constexpr uint32_t kBuiltProject = 3;
constexpr uint64_t kBatchEvents = 1000;
constexpr uint64_t kUsers = 50'000;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<Event> Batch(uint64_t first) {
  std::vector<Event> events;
  events.reserve(kBatchEvents);
  for (uint64_t id = first; id < first + kBatchEvents; ++id) {
    const uint64_t user = (id * 2654435761u) % kUsers;
    Event event;
    event.name = "event " + std::to_string(id % 20);
    event.time_ms = kNowMs - static_cast<int64_t>(id % 30) * kDayMs;
    event.subject = Id128{0, user};
    event.insert_id = Id128{0x1D, id * 0x9E3779B97F4A7C15ull};
    event.key_version = 1;
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
                        {"ref", Value::String("r" + std::to_string(id % 40))}};
    events.push_back(std::move(event));
  }
  return events;
}

Options StoreOptions(const std::string& folder) {
  Options options;
  options.folder = folder;
  options.file_system = NewPosixFileSystem();
  options.clock = std::make_shared<FakeClock>(kNowMs);
  // The physical stage runs only when asked, so that it is timed alone.
  options.purge_delay_ms = INT64_MAX / 2;
  return options;
}

int Fail(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
  return 1;
}

int Build(const std::string& folder, uint64_t events) {
  auto engine = OpenEmbeddedEngine(StoreOptions(folder));
  if (!engine.ok()) {
    return Fail(engine.status());
  }
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t first = 0; first < events; first += kBatchEvents) {
    AppendBatch batch;
    batch.project_id = kBuiltProject;
    batch.events = Batch(first);
    while (true) {
      auto result = (*engine)->Append(batch);
      if (result.ok()) {
        break;
      }
      if (result.status().code() != StatusCode::kResourceExhausted) {
        return Fail(result.status());
      }
    }
  }
  const Status closed = (*engine)->Close();
  if (!closed.ok()) {
    return Fail(closed);
  }
  std::printf("built %llu events in %.1f s\n", static_cast<unsigned long long>(events),
              SecondsSince(start));
  return 0;
}

// Rows of the snapshot, and those of `subjects` among them (subject runs of
// every block).
Status CountRows(Engine& engine, uint32_t project, const std::set<Id128>& subjects, uint64_t* rows,
                 uint64_t* subject_rows) {
  MP_ASSIGN_OR_RETURN(const Engine::SegmentSnapshot snapshot, engine.Snapshot(project));
  *rows = 0;
  *subject_rows = 0;
  SubjectRuns runs;
  for (const auto& reader : snapshot) {
    *rows += reader->summary().row_count;
    for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
      MP_RETURN_IF_ERROR(reader->ReadSubjects(block_idx, &runs));
      for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
        if (subjects.contains(runs.subjects[run_idx])) {
          *subject_rows += runs.run_lengths[run_idx];
        }
      }
    }
  }
  return Status::Ok();
}

// `count` distinct subjects drawn at random (seed 42) from those the
// project's segments hold.
Result<std::set<Id128>> ChooseSubjects(Engine& engine, uint32_t project, uint64_t count) {
  MP_ASSIGN_OR_RETURN(const Engine::SegmentSnapshot snapshot, engine.Snapshot(project));
  std::vector<Id128> all;
  SubjectRuns runs;
  for (const auto& reader : snapshot) {
    for (size_t block_idx = 0; block_idx < reader->block_count(); ++block_idx) {
      MP_RETURN_IF_ERROR(reader->ReadSubjects(block_idx, &runs));
      all.insert(all.end(), runs.subjects.begin(), runs.subjects.end());
    }
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  if (all.size() < count) {
    return Status::InvalidArgument("--subjects " + std::to_string(count) + ": the project holds " +
                                   std::to_string(all.size()) + " subjects");
  }
  std::mt19937_64 random(42);
  std::shuffle(all.begin(), all.end(), random);
  return std::set<Id128>(all.begin(), all.begin() + static_cast<ptrdiff_t>(count));
}

int Erase(const std::string& folder, uint32_t project, uint64_t subject_count, bool purge) {
  auto start = std::chrono::steady_clock::now();
  auto opened = OpenEmbeddedEngine(StoreOptions(folder));
  if (!opened.ok()) {
    return Fail(opened.status());
  }
  Engine& engine = **opened;
  std::printf("open: %.2f s, %llu segments, %.1f MB\n", SecondsSince(start),
              static_cast<unsigned long long>(engine.GetStats().segments),
              static_cast<double>(engine.GetStats().segment_bytes) / 1e6);
  auto sampled = ChooseSubjects(engine, project, subject_count);
  if (!sampled.ok()) {
    return Fail(sampled.status());
  }
  const std::set<Id128> chosen = std::move(sampled).value();
  uint64_t rows_before = 0;
  uint64_t subject_rows = 0;
  start = std::chrono::steady_clock::now();
  Status status = CountRows(engine, project, chosen, &rows_before, &subject_rows);
  if (!status.ok()) {
    return Fail(status);
  }
  std::printf(
      "before: %llu rows, %llu of the %llu subjects (snapshot + "
      "subject scan %.2f s)\n",
      static_cast<unsigned long long>(rows_before), static_cast<unsigned long long>(subject_rows),
      static_cast<unsigned long long>(subject_count), SecondsSince(start));
  start = std::chrono::steady_clock::now();
  status = engine.EraseSubjects(project, std::vector<Id128>(chosen.begin(), chosen.end()));
  const double returned_s = SecondsSince(start);
  if (!status.ok()) {
    return Fail(status);
  }
  auto snapshot = engine.Snapshot(project);
  const double invisible_s = SecondsSince(start);
  if (!snapshot.ok()) {
    return Fail(snapshot.status());
  }
  uint64_t rows_after = 0;
  for (const auto& reader : *snapshot) {
    rows_after += reader->summary().row_count;
  }
  std::printf(
      "erase %llu subjects: call returned in %.1f ms; first snapshot "
      "without them at "
      "%.1f ms; rows %llu -> %llu (%s)\n",
      static_cast<unsigned long long>(subject_count), returned_s * 1e3, invisible_s * 1e3,
      static_cast<unsigned long long>(rows_before), static_cast<unsigned long long>(rows_after),
      rows_before - rows_after == subject_rows ? "exactly their rows" : "MISMATCH");
  uint64_t check_rows = 0;
  uint64_t check_subject_rows = 0;
  status = CountRows(engine, project, chosen, &check_rows, &check_subject_rows);
  if (!status.ok() || check_subject_rows != 0) {
    std::printf("ERROR: erased rows still visible (%llu)\n",
                static_cast<unsigned long long>(check_subject_rows));
    return 1;
  }
  if (purge) {
    const Stats before = engine.GetStats();
    start = std::chrono::steady_clock::now();
    status = engine.PurgeDeleted();
    const double purge_s = SecondsSince(start);
    if (!status.ok()) {
      return Fail(status);
    }
    const Stats after = engine.GetStats();
    std::printf(
        "purge: %.2f s, %llu segments rewritten, %llu rows removed, %.1f MB "
        "written, "
        "%.1f -> %.1f MB of segments, deletions in force %llu\n",
        purge_s,
        static_cast<unsigned long long>(after.purge_segments_rewritten -
                                        before.purge_segments_rewritten),
        static_cast<unsigned long long>(after.purge_rows_removed - before.purge_rows_removed),
        static_cast<double>(after.purge_bytes_written - before.purge_bytes_written) / 1e6,
        static_cast<double>(before.segment_bytes) / 1e6,
        static_cast<double>(after.segment_bytes) / 1e6,
        static_cast<unsigned long long>(after.deletions_active));
    uint64_t purged_rows = 0;
    status = CountRows(engine, project, chosen, &purged_rows, &check_subject_rows);
    if (!status.ok() || check_subject_rows != 0 || purged_rows != rows_after) {
      std::printf("ERROR: after the purge %llu rows, %llu of the erased subjects\n",
                  static_cast<unsigned long long>(purged_rows),
                  static_cast<unsigned long long>(check_subject_rows));
      return 1;
    }
    std::printf("after the purge: %llu rows, none of the erased subjects\n",
                static_cast<unsigned long long>(purged_rows));
  }
  status = engine.Close();
  return status.ok() ? 0 : Fail(status);
}

int Main(int argc, char** argv) {
  std::string build_folder;
  std::string open_folder;
  uint64_t events = 10'000'000;
  uint64_t subjects = 1;
  uint32_t project = kBuiltProject;
  bool purge = true;
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    const std::string arg = argv[arg_idx];
    const bool has_value = arg_idx + 1 < argc;
    if (arg == "--build" && has_value) {
      build_folder = argv[++arg_idx];
    } else if (arg == "--open" && has_value) {
      open_folder = argv[++arg_idx];
    } else if (arg == "--events" && has_value) {
      events = std::strtoull(argv[++arg_idx], nullptr, 10);
    } else if (arg == "--subjects" && has_value) {
      subjects = std::strtoull(argv[++arg_idx], nullptr, 10);
    } else if (arg == "--project" && has_value) {
      project = static_cast<uint32_t>(std::strtoul(argv[++arg_idx], nullptr, 10));
    } else if (arg == "--no-purge") {
      purge = false;
    } else {
      std::fprintf(stderr,
                   "usage: store_erase_bench --build FOLDER [--events "
                   "N] | --open FOLDER "
                   "[--subjects N] [--project N] [--no-purge]\n");
      return 2;
    }
  }
  if (!build_folder.empty()) {
    return Build(build_folder, events);
  }
  if (!open_folder.empty()) {
    return Erase(open_folder, project, subjects, purge);
  }
  std::fprintf(stderr, "give --build or --open\n");
  return 2;
}

}  // namespace
}  // namespace minpanel::store

int main(int argc, char** argv) { return minpanel::store::Main(argc, argv); }
