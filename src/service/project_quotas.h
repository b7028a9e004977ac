// Per-project ingest rate and disk quotas (issue 6; docs/security.md,
// "Project quotas"), set by the configuration's [projects.NAME]
// `ingest_events_per_second` and `disk_bytes_max` (docs/config.md).
//
// The rate is a token bucket of events (and profile updates) per second, as
// deep as one second of the rate; a batch is admitted while the bucket is
// not empty and may take it below zero (so a batch larger than the rate
// still goes through, once, and the next waits for the debt to refill).
// Over it: RateLimited (429 with Retry-After). The disk quota compares the
// project's bytes on disk — its segment files and its records in the
// write-ahead log (store::Engine::ProjectDiskBytes), measured at most every
// kDiskUsageRefreshMs and grown by each batch stored in between
// (CountStored) — with its maximum; over it new events are refused
// with DiskQuotaExceeded (507), and nothing stored is dropped. Both are
// checked before a batch reaches the store: a refused batch stores
// nothing, an admitted one is stored and acknowledged as before.
//
// Thread-safe (one mutex); memory: one bucket and one usage per project.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/core.h"
#include "service/access_keys_limits.h"

namespace minpanel::service {

inline constexpr uint64_t kProjectEventsPerSecondMax = 10'000'000;
inline constexpr int64_t kDiskUsageRefreshMs = 1000;

// A refusal for a full disk quota: ResourceExhausted whose message starts
// with "disk quota: ", which the HTTP face answers 507.
Status DiskQuotaExceeded(const std::string& message);
bool IsDiskQuotaExceeded(const Status& status);

class ProjectQuotas {
 public:
  explicit ProjectQuotas(std::shared_ptr<Clock> clock);

  // Admits `records` of project `project_id` (`name` for the messages)
  // under a rate of `events_per_second` (0: none) and `disk_bytes_max`
  // (0: none); `disk_bytes` measures the project's bytes when the cached
  // figure is older than kDiskUsageRefreshMs.
  Status Admit(uint32_t project_id, const std::string& name, uint64_t records,
               uint64_t events_per_second, uint64_t disk_bytes_max,
               const std::function<Result<uint64_t>()>& disk_bytes);
  // Adds `bytes` just stored (the batch's record in the write-ahead log) to
  // the project's cached usage, so that between two measurements the figure
  // grows with what was admitted instead of waiting for the next one. Cheap
  // when no project has a disk quota.
  void CountStored(uint32_t project_id, uint64_t bytes);

 private:
  struct Usage {
    uint64_t bytes = 0;
    int64_t measured_ms = 0;
    bool measured = false;
  };

  std::shared_ptr<Clock> clock_;
  std::mutex mutex_;
  std::unordered_map<uint32_t, TokenBucket> buckets_;
  std::unordered_map<uint32_t, Usage> usage_;
  std::atomic<bool> any_disk_quota_{false};  // a usage was measured
};

}  // namespace minpanel::service
