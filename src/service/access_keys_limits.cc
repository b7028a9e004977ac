#include "service/access_keys_limits.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/time_units.h"
#include "service/anomaly.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kRateLimitedPrefix = "rate limit: ";
constexpr std::string_view kRetryAfterOpen = " (retry after ";
constexpr std::string_view kRetryAfterClose = " s)";

uint64_t Pick(uint64_t own, uint64_t fallback) { return own != 0 ? own : fallback; }

// Seconds until the next UTC midnight, at least 1.
uint64_t SecondsToTomorrow(int64_t now_ms) {
  const int64_t next_day_ms = (now_ms / kDayMs + 1) * kDayMs;
  return static_cast<uint64_t>(std::max<int64_t>(1, (next_day_ms - now_ms + 999) / 1000));
}

}  // namespace

KeyLimits EffectiveLimits(const KeyLimits& key, const KeyLimits& defaults) {
  KeyLimits limits;
  limits.requests_per_second = Pick(key.requests_per_second, defaults.requests_per_second);
  limits.export_rows_per_day = Pick(key.export_rows_per_day, defaults.export_rows_per_day);
  limits.export_subjects_per_day =
      Pick(key.export_subjects_per_day, defaults.export_subjects_per_day);
  return limits;
}

Status CheckKeyLimits(const KeyLimits& limits) {
  if (limits.requests_per_second > kKeyRequestsPerSecondMax) {
    return Status::InvalidArgument("rate: at most " + std::to_string(kKeyRequestsPerSecondMax) +
                                   " requests per second (kKeyRequestsPerSecondMax; 0: none)");
  }
  if (limits.export_rows_per_day > kKeyExportRowsPerDayMax) {
    return Status::InvalidArgument("export_rows_per_day: at most " +
                                   std::to_string(kKeyExportRowsPerDayMax) +
                                   " (kKeyExportRowsPerDayMax; 0: none)");
  }
  if (limits.export_subjects_per_day > kKeyExportSubjectsPerDayMax) {
    return Status::InvalidArgument("export_subjects_per_day: at most " +
                                   std::to_string(kKeyExportSubjectsPerDayMax) +
                                   " (kKeyExportSubjectsPerDayMax; 0: none)");
  }
  return Status::Ok();
}

Status RateLimited(const std::string& message, uint64_t retry_after_s) {
  return Status::ResourceExhausted(std::string(kRateLimitedPrefix) + message +
                                   std::string(kRetryAfterOpen) + std::to_string(retry_after_s) +
                                   std::string(kRetryAfterClose));
}

std::optional<uint64_t> RetryAfterSeconds(const Status& status) {
  const std::string& message = status.message();
  if (status.code() != StatusCode::kResourceExhausted || !message.starts_with(kRateLimitedPrefix) ||
      !message.ends_with(kRetryAfterClose)) {
    return std::nullopt;
  }
  const size_t open = message.rfind(kRetryAfterOpen);
  if (open == std::string::npos) {
    return std::nullopt;
  }
  const char* first = message.data() + open + kRetryAfterOpen.size();
  const char* last = message.data() + message.size() - kRetryAfterClose.size();
  uint64_t seconds = 0;
  const auto parsed = std::from_chars(first, last, seconds);
  if (parsed.ec != std::errc() || parsed.ptr != last) {
    return std::nullopt;
  }
  return seconds;
}

void TokenBucket::Refill(double rate, int64_t now_ms) {
  if (!started) {
    started = true;
    tokens = rate;
  } else {
    const int64_t elapsed_ms = std::max<int64_t>(0, now_ms - updated_ms);
    tokens = std::min(rate, tokens + rate * static_cast<double>(elapsed_ms) / 1000);
  }
  updated_ms = now_ms;
}

uint64_t TokenBucket::WaitSeconds(double rate) const {
  return std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil((1 - tokens) / rate)));
}

KeyLimiter::KeyLimiter(std::shared_ptr<Clock> clock, std::shared_ptr<KeyUsage> usage)
    : clock_(std::move(clock)), usage_(std::move(usage)) {}

Status KeyLimiter::Admit(const std::string& key_id, uint64_t requests_per_second) {
  if (requests_per_second == 0) {
    return Status::Ok();
  }
  const int64_t now_ms = clock_->NowMs();
  const auto rate = static_cast<double>(requests_per_second);
  std::lock_guard lock(mutex_);
  TokenBucket& bucket = buckets_[key_id];
  bucket.Refill(rate, now_ms);
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return Status::Ok();
  }
  return RateLimited("key " + key_id + " is over its limit of " +
                         std::to_string(requests_per_second) + " requests per second (rate)",
                     bucket.WaitSeconds(rate));
}

Result<KeyLimiter::DayCount*> KeyLimiter::TodayLocked(const std::string& key_id, int64_t now_ms) {
  const int64_t today = now_ms / kDayMs;
  auto found = days_.find(key_id);
  if (found != days_.end() && found->second.day == today) {
    return &found->second;
  }
  DayCount count{today, 0, 0};
  if (usage_ != nullptr && IsAccessKeyId(key_id)) {
    MP_ASSIGN_OR_RETURN(const UsageBucket so_far, usage_->DayTotals(key_id, now_ms));
    count.rows = so_far.rows;
    count.subjects = so_far.subjects;
  }
  DayCount& slot = days_[key_id];
  slot = count;
  return &slot;
}

Result<uint64_t> KeyLimiter::ExportRowsLeft(const std::string& key_id, const KeyLimits& limits) {
  const int64_t now_ms = clock_->NowMs();
  std::lock_guard lock(mutex_);
  MP_ASSIGN_OR_RETURN(const DayCount* today, TodayLocked(key_id, now_ms));
  const DayCount& count = *today;
  if (limits.export_rows_per_day != 0 && count.rows >= limits.export_rows_per_day) {
    return RateLimited("key " + key_id + " has exported its " +
                           std::to_string(limits.export_rows_per_day) +
                           " rows of today (UTC) (export_rows_per_day)",
                       SecondsToTomorrow(now_ms));
  }
  if (limits.export_subjects_per_day != 0 && count.subjects >= limits.export_subjects_per_day) {
    return RateLimited("key " + key_id + " has exported its " +
                           std::to_string(limits.export_subjects_per_day) +
                           " subjects of today (UTC) (export_subjects_per_day)",
                       SecondsToTomorrow(now_ms));
  }
  return limits.export_rows_per_day == 0 ? UINT64_MAX : limits.export_rows_per_day - count.rows;
}

void KeyLimiter::CountExport(const std::string& key_id, uint64_t rows, uint64_t subjects) {
  const int64_t now_ms = clock_->NowMs();
  std::lock_guard lock(mutex_);
  auto today = TodayLocked(key_id, now_ms);
  if (today.ok()) {
    (*today)->rows += rows;
    (*today)->subjects += subjects;
  }
}

}  // namespace minpanel::service
