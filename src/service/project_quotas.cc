#include "service/project_quotas.h"

#include "service/access_keys_limits.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kDiskQuotaPrefix = "disk quota: ";

}  // namespace

Status DiskQuotaExceeded(const std::string& message) {
  return Status::ResourceExhausted(std::string(kDiskQuotaPrefix) + message);
}

bool IsDiskQuotaExceeded(const Status& status) {
  return status.code() == StatusCode::kResourceExhausted &&
         status.message().starts_with(kDiskQuotaPrefix);
}

ProjectQuotas::ProjectQuotas(std::shared_ptr<Clock> clock) : clock_(std::move(clock)) {}

Status ProjectQuotas::Admit(uint32_t project_id, const std::string& name, uint64_t records,
                            uint64_t events_per_second, uint64_t disk_bytes_max,
                            const std::function<Result<uint64_t>()>& disk_bytes) {
  if (events_per_second == 0 && disk_bytes_max == 0) {
    return Status::Ok();
  }
  const int64_t now_ms = clock_->NowMs();
  std::lock_guard lock(mutex_);
  if (disk_bytes_max != 0) {
    Usage& usage = usage_[project_id];
    if (!usage.measured || now_ms - usage.measured_ms >= kDiskUsageRefreshMs ||
        now_ms < usage.measured_ms) {
      MP_ASSIGN_OR_RETURN(usage.bytes, disk_bytes());
      usage.measured_ms = now_ms;
      usage.measured = true;
      any_disk_quota_.store(true, std::memory_order_relaxed);
    }
    if (usage.bytes >= disk_bytes_max) {
      return DiskQuotaExceeded(
          "project " + name + " holds " + std::to_string(usage.bytes) + " bytes, at its " +
          std::to_string(disk_bytes_max) + " (projects." + name +
          ".disk_bytes_max); new events are refused until retention or erasure frees space or "
          "the quota is raised. Nothing stored was dropped");
    }
  }
  if (events_per_second == 0) {
    return Status::Ok();
  }
  const auto rate = static_cast<double>(events_per_second);
  TokenBucket& bucket = buckets_[project_id];
  bucket.Refill(rate, now_ms);
  if (bucket.tokens > 0) {
    bucket.tokens -= static_cast<double>(records);
    return Status::Ok();
  }
  return RateLimited("project " + name + " is over its ingest rate of " +
                         std::to_string(events_per_second) + " events per second (projects." +
                         name + ".ingest_events_per_second); nothing of this request was stored",
                     bucket.WaitSeconds(rate));
}

void ProjectQuotas::CountStored(uint32_t project_id, uint64_t bytes) {
  if (bytes == 0 || !any_disk_quota_.load(std::memory_order_relaxed)) {
    return;
  }
  std::lock_guard lock(mutex_);
  if (const auto found = usage_.find(project_id); found != usage_.end()) {
    found->second.bytes += bytes;
  }
}

}  // namespace minpanel::service
