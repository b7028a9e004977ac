// What one fdatasync of a small append costs on this disk, by how the file
// gets its space (docs/benchmarks.md, "Audit log", "fdatasync when the
// file grows"): the audit log's records are a few hundred bytes each, and
// each group commit is one write and one fdatasync.
//
//   audit_fdatasync MODE PATH [SYNCS] [RECORD_BYTES]
//
// MODE: `grow` (each write extends the file, as the log is written today:
// the size change is metadata, so each fdatasync commits the journal),
// `fallocate` (the file's space allocated ahead with fallocate(2), its size
// set, then the writes overwrite it), `keep-size` (allocated ahead with
// FALLOC_FL_KEEP_SIZE: the blocks are there but each write still extends
// the file's size, which fdatasync must commit), `zeroed` (the space written with
// zeros and synced ahead, then overwritten). Prints the median, p90, p99
// and mean time of one write + fdatasync and the process's CPU time
// (user + sys) per sync. PATH is removed at the end. Standard library and
// Linux only.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr off_t kAheadBytes = 64 << 20;
constexpr size_t kZeroPieceBytes = 1 << 20;

double CpuMs() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
}

bool Prepare(const std::string& mode, int fd) {
  if (mode == "grow") {
    return true;
  }
  if (mode == "fallocate") {
    return fallocate(fd, 0, 0, kAheadBytes) == 0 && fsync(fd) == 0;
  }
  if (mode == "keep-size") {
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, kAheadBytes) == 0 && fsync(fd) == 0;
  }
  if (mode == "zeroed") {
    const std::string zeros(kZeroPieceBytes, '\0');
    for (off_t written = 0; written < kAheadBytes; written += kZeroPieceBytes) {
      if (write(fd, zeros.data(), zeros.size()) != static_cast<ssize_t>(zeros.size())) {
        return false;
      }
    }
    return fsync(fd) == 0;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(
        stderr,
        "usage: audit_fdatasync grow|fallocate|keep-size|zeroed PATH [SYNCS] [RECORD_BYTES]\n");
    return 2;
  }
  const std::string mode = argv[1];
  const char* path = argv[2];
  const int syncs = argc > 3 ? std::atoi(argv[3]) : 2000;
  const int record_bytes = argc > 4 ? std::atoi(argv[4]) : 600;
  if (syncs <= 0 || record_bytes <= 0 ||
      static_cast<int64_t>(syncs) * record_bytes > static_cast<int64_t>(kAheadBytes)) {
    std::fprintf(stderr, "SYNCS x RECORD_BYTES must be positive and at most %lld\n",
                 static_cast<long long>(kAheadBytes));
    return 2;
  }
  unlink(path);
  const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || !Prepare(mode, fd)) {
    std::perror(path);
    return 1;
  }
  const std::string record(static_cast<size_t>(record_bytes), 'x');
  std::vector<double> sync_ms;
  off_t offset = 0;
  const double cpu_before = CpuMs();
  for (int sync_idx = 0; sync_idx < syncs; ++sync_idx) {
    const auto started = std::chrono::steady_clock::now();
    if (pwrite(fd, record.data(), record.size(), offset) != static_cast<ssize_t>(record.size()) ||
        fdatasync(fd) != 0) {
      std::perror(path);
      return 1;
    }
    sync_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count());
    offset += record_bytes;
  }
  const double cpu_ms = CpuMs() - cpu_before;
  close(fd);
  unlink(path);
  double total_ms = 0;
  for (const double one : sync_ms) {
    total_ms += one;
  }
  std::sort(sync_ms.begin(), sync_ms.end());
  const size_t count = sync_ms.size();
  std::printf("%-9s %d syncs of %d bytes: median %.3f ms, p90 %.3f ms, p99 %.3f ms, mean %.3f ms, "
              "CPU %.3f ms per sync\n",
              mode.c_str(), syncs, record_bytes, sync_ms[count / 2], sync_ms[count * 9 / 10],
              sync_ms[count * 99 / 100], total_ms / static_cast<double>(count),
              cpu_ms / static_cast<double>(count));
  return 0;
}
