// The audit log under 8 reads at a time on a busy machine, without the
// server around it (docs/benchmarks.md, "Holding a sync for running
// reads"): 8 threads, as 8 clients' queries, each queueing a `query.start`
// record (EnqueueOpening), spending WORK_US of CPU (the query), queueing the
// closing `query` record and waiting through it (the service's path), READS
// reads in all; then the same threads with no log, only the work. Each
// run on a fresh log in FOLDER (removed at the end), the settings in turn,
// ROUNDS times. Prints each run's reads per second, the process's CPU per
// read and the mean wait, and the medians. With WORK_US near a query's CPU
// and 8 threads on 2 cores the CPU is full, as in bench/audit.sh; the log's
// cost is then its own CPU and the CPU left idle while threads wait for a
// sync. No person exists here.
//
//   audit_reads FOLDER [ROUNDS] [READS] [WORK_US] [HOLD_US,...]
//   audit_reads var/audit-reads 3 20000 300 0,500
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "audit/audit.h"
#include "median.h"

namespace {

constexpr int kClients = 8;

struct RunResult {
  double reads_per_second = 0;
  double cpu_us_per_read = 0;
  double wait_us_per_read = 0;
};

double ProcessCpuUs() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// `work_us` of CPU on this thread, as a query's scan would spend.
void Work(int work_us) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(work_us);
  uint64_t sum = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (uint64_t step = 0; step < 64; ++step) {
      sum = sum * 31 + step;
    }
    asm volatile("" : : "r"(sum));  // kept: the loop is the work
  }
}

// `reads` reads through a fresh log in `folder` with `hold_us`
// (Options::opening_wait_us), or with no log when `hold_us` is negative.
RunResult Run(const std::string& folder, int64_t hold_us, int reads, int work_us) {
  using namespace minpanel;
  std::filesystem::remove_all(folder);
  std::unique_ptr<audit::AuditLog> log;
  if (hold_us >= 0) {
    audit::Options options;
    options.index_update_records = 0;
    options.opening_wait_us = static_cast<uint32_t>(hold_us);
    auto opened = audit::AuditLog::Open(folder, NewPosixFileSystem(), NewSystemClock(), options);
    if (!opened.ok()) {
      std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
      std::exit(1);
    }
    log = std::move(opened).value();
  }
  std::atomic<int> left{reads};
  std::atomic<uint64_t> wait_ns{0};
  const double cpu_before = ProcessCpuUs();
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int client_idx = 0; client_idx < kClients; ++client_idx) {
    clients.emplace_back([&, client_idx] {
      while (left.fetch_sub(1) > 0) {
        if (log == nullptr) {
          Work(work_us);
          continue;
        }
        audit::AuditEntry start;
        start.key = "mpk_000000000000000" + std::to_string(client_idx);
        start.act = "query.start";
        start.route = "/api/query";
        start.projects = {1};
        start.params_sha256 = audit::Sha256Hex(std::to_string(client_idx));
        start.events = {"page_view"};
        audit::AuditEntry end = start;
        auto opening = log->EnqueueOpening(std::move(start));
        if (!opening.ok()) {
          std::fprintf(stderr, "enqueue failed\n");
          std::exit(1);
        }
        Work(work_us);
        end.act = "query";
        end.rows = 8;
        end.bytes = 1800;
        auto closing = log->Enqueue(std::move(end));
        const auto waited = std::chrono::steady_clock::now();
        if (!closing.ok() || !opening->WaitDurable(*closing).ok()) {
          std::fprintf(stderr, "append failed\n");
          std::exit(1);
        }
        wait_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::steady_clock::now() - waited)
                                             .count());
      }
    });
  }
  for (std::thread& client : clients) {
    client.join();
  }
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  RunResult result;
  result.reads_per_second = reads / elapsed_s;
  result.cpu_us_per_read = (ProcessCpuUs() - cpu_before) / reads;
  result.wait_us_per_read = static_cast<double>(wait_ns.load()) / 1e3 / reads;
  if (log != nullptr) {
    (void)log->Close();
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  using minpanel::bench::Median;
  if (argc < 2) {
    std::fprintf(stderr, "usage: audit_reads FOLDER [ROUNDS] [READS] [WORK_US] [HOLD_US,...]\n");
    return 2;
  }
  const std::string folder = argv[1];
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const int reads = argc > 3 ? std::atoi(argv[3]) : 20000;
  const int work_us = argc > 4 ? std::atoi(argv[4]) : 300;
  std::vector<int64_t> settings = {-1};  // no log first in each round
  std::stringstream holds(argc > 5 ? argv[5] : "0,500");
  for (std::string hold; std::getline(holds, hold, ',');) {
    settings.push_back(std::atoll(hold.c_str()));
  }
  if (rounds <= 0 || reads <= 0 || work_us < 0 ||
      std::any_of(settings.begin() + 1, settings.end(), [](int64_t hold) {
        return hold < 0 || hold > minpanel::audit::kOpeningWaitUsMax;
      })) {
    std::fprintf(stderr, "ROUNDS and READS positive, WORK_US >= 0, each HOLD_US 0 to %u\n",
                 minpanel::audit::kOpeningWaitUsMax);
    return 2;
  }
  std::vector<std::vector<double>> per_second(settings.size());
  std::vector<std::vector<double>> cpu(settings.size());
  const auto name = [](int64_t hold) {
    return hold < 0 ? std::string("no log     ") : "hold " + std::to_string(hold) + " us";
  };
  for (int round = 0; round < rounds; ++round) {
    for (size_t setting = 0; setting < settings.size(); ++setting) {
      const RunResult result = Run(folder, settings[setting], reads, work_us);
      per_second[setting].push_back(result.reads_per_second);
      cpu[setting].push_back(result.cpu_us_per_read);
      std::printf("round %d %s: %.0f reads/s, CPU %.1f us a read, wait %.0f us a read\n",
                  round + 1, name(settings[setting]).c_str(), result.reads_per_second,
                  result.cpu_us_per_read, result.wait_us_per_read);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(folder);
  for (size_t setting = 0; setting < settings.size(); ++setting) {
    std::printf("median of %d rounds, %s: %.0f reads/s (%.2f of no log), CPU %.1f us a read\n",
                rounds, name(settings[setting]).c_str(), Median(per_second[setting]),
                Median(per_second[setting]) / Median(per_second[0]), Median(cpu[setting]));
  }
  return 0;
}
