// Appends a stretch of generated records to an audit log folder through the
// real appender (audit::AuditLog, as the server does: Enqueue, group
// commit, WaitDurable), then keeps the log open until its standard input
// closes, so that a blast radius can run "right after" while the log is
// still held, as it would be by a running server (bench/incident_blast_bench.sh,
// mode `after-stretch`). The records are shaped like those of
// bench/incident_blast_generate.mjs: 98 % `query.start` + `query` pairs, by
// 200 keys in turn (mpk_0000000000000000 the first), no exports. No person
// exists here.
//
//   audit_append AUDIT_FOLDER RECORDS [--no-index]
//
// --no-index: the log does not keep the key index (Options::
// index_update_records = 0): the appender before it did. Prints the append
// time and, once the last update is made, how far the log's indexer got.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "audit/audit.h"

namespace {

constexpr uint64_t kKeys = 200;
constexpr uint64_t kBatchRecords = 512;  // enqueued before waiting: a busy server's group commit

std::string KeyName(uint64_t key_idx) {
  char name[32];
  std::snprintf(name, sizeof(name), "mpk_%016llx", static_cast<unsigned long long>(key_idx));
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace minpanel;
  if (argc < 3) {
    std::fprintf(stderr, "usage: audit_append AUDIT_FOLDER RECORDS [--no-index]\n");
    return 2;
  }
  const std::string folder = argv[1];
  const uint64_t records = std::strtoull(argv[2], nullptr, 10);
  const bool keep_index = !(argc > 3 && std::string(argv[3]) == "--no-index");
  audit::Options options;
  options.index_update_records = keep_index ? audit::kIndexUpdateRecords : 0;
  const auto open_start = std::chrono::steady_clock::now();
  auto opened = audit::AuditLog::Open(folder, NewPosixFileSystem(), NewSystemClock(), options);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  audit::AuditLog& log = **opened;
  const double open_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - open_start).count();
  const auto append_start = std::chrono::steady_clock::now();
  uint64_t last = 0;
  for (uint64_t record_idx = 0; record_idx < records; ++record_idx) {
    audit::AuditEntry entry;
    entry.key = KeyName((record_idx / 2) % kKeys);
    entry.act = record_idx % 2 == 0 ? "query.start" : "query";
    entry.route = "/api/query";
    entry.projects = {1};
    entry.params_sha256 = audit::Sha256Hex(std::to_string(record_idx / 2));
    entry.events = {"page_view"};
    entry.properties = {"$browser", "$city"};
    entry.rows = record_idx % 2 == 0 ? 0 : 24;
    entry.bytes = record_idx % 2 == 0 ? 0 : 1800;
    auto seq = log.Enqueue(std::move(entry));
    if (!seq.ok()) {
      std::fprintf(stderr, "enqueue: %s\n", seq.status().ToString().c_str());
      return 1;
    }
    last = *seq;
    if ((record_idx + 1) % kBatchRecords == 0 || record_idx + 1 == records) {
      const Status durable = log.WaitDurable(last);
      if (!durable.ok()) {
        std::fprintf(stderr, "append: %s\n", durable.ToString().c_str());
        return 1;
      }
    }
  }
  const double append_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - append_start).count();
  std::printf("opened in %.2f s; appended %llu records (to seq %llu) in %.2f s; index kept: %s\n",
              open_s, static_cast<unsigned long long>(records),
              static_cast<unsigned long long>(last), append_s, keep_index ? "yes" : "no");
  std::fflush(stdout);
  // Held open, as by a running server, until standard input closes.
  std::string ignored;
  while (std::getline(std::cin, ignored)) {
  }
  const audit::AuditLog::IndexState state = log.index_state();
  const Status closed = log.Close();
  std::printf("index covered seq %llu before the close (%llu updates, %llu rebuilds)%s%s\n",
              static_cast<unsigned long long>(state.indexed_seq),
              static_cast<unsigned long long>(state.updates),
              static_cast<unsigned long long>(state.rebuilds), state.problem.empty() ? "" : ": ",
              state.problem.c_str());
  return closed.ok() ? 0 : 1;
}
