// What writing space ahead does for the audit log's group commit, without
// the server around it (docs/benchmarks.md, "Space written ahead"): 8
// threads, as 8 clients' queries, each queueing a `query.start` record,
// waiting for it to be durable, then queueing its closing `query` record,
// for SECONDS; the same through a log that grows with each batch
// (Options::preallocate_bytes 0, as before format version 3) and one that
// writes zeros ahead (the default), in turn, ROUNDS times, each on a fresh
// log in FOLDER (removed at the end). Prints each run's awaited records per
// second and the median of each. No person exists here.
//
//   audit_group_commit FOLDER [ROUNDS] [SECONDS]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "audit/audit.h"
#include "median.h"

namespace {

constexpr int kClients = 8;

// Awaited records per second through a fresh log in `folder`.
double Run(const std::string& folder, uint64_t preallocate_bytes, double seconds) {
  using namespace minpanel;
  std::filesystem::remove_all(folder);
  audit::Options options;
  options.preallocate_bytes = preallocate_bytes;
  options.index_update_records = 0;
  auto opened = audit::AuditLog::Open(folder, NewPosixFileSystem(), NewSystemClock(), options);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    std::exit(1);
  }
  audit::AuditLog& log = **opened;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> awaited{0};
  std::vector<std::thread> clients;
  const auto started = std::chrono::steady_clock::now();
  for (int client_idx = 0; client_idx < kClients; ++client_idx) {
    clients.emplace_back([&, client_idx] {
      while (!stop) {
        audit::AuditEntry entry;
        entry.key = "mpk_000000000000000" + std::to_string(client_idx);
        entry.act = "query.start";
        entry.route = "/api/query";
        entry.projects = {1};
        entry.params_sha256 = audit::Sha256Hex(std::to_string(client_idx));
        entry.events = {"page_view"};
        auto seq = log.Enqueue(entry);
        if (!seq.ok() || !log.WaitDurable(*seq).ok()) {
          std::fprintf(stderr, "append failed\n");
          std::exit(1);
        }
        entry.act = "query";
        entry.rows = 8;
        entry.bytes = 1800;
        (void)log.Enqueue(std::move(entry));
        ++awaited;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (std::thread& client : clients) {
    client.join();
  }
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  (void)log.Close();
  return static_cast<double>(awaited.load()) / elapsed_s;
}

}  // namespace

int main(int argc, char** argv) {
  using minpanel::bench::Median;
  if (argc < 2) {
    std::fprintf(stderr, "usage: audit_group_commit FOLDER [ROUNDS] [SECONDS]\n");
    return 2;
  }
  const std::string folder = argv[1];
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 8;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 4.0;
  if (rounds <= 0 || seconds <= 0) {
    std::fprintf(stderr, "ROUNDS and SECONDS must be positive\n");
    return 2;
  }
  std::vector<double> grow;
  std::vector<double> ahead;
  for (int round = 0; round < rounds; ++round) {
    // Alternating which goes first, so that neither always follows the other.
    const bool ahead_first = round % 2 == 0;
    for (int turn = 0; turn < 2; ++turn) {
      const bool writes_ahead = (turn == 0) == ahead_first;
      const double per_second =
          Run(folder, writes_ahead ? minpanel::audit::kLogPreallocateBytes : 0, seconds);
      (writes_ahead ? ahead : grow).push_back(per_second);
      std::printf("round %d %s: %.0f awaited records/s\n", round + 1,
                  writes_ahead ? "zeros ahead" : "grows      ", per_second);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(folder);
  std::printf("median of %d rounds: grows %.0f /s, zeros ahead %.0f /s\n", rounds, Median(grow),
              Median(ahead));
  return 0;
}
