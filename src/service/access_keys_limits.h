// Per-key rate limits and export quotas (issue 6; docs/security.md).
//
// A key's requests per second are a token bucket (as many tokens as the
// rate, refilled continuously); its exported rows and distinct subjects are
// counted per UTC day. Over a limit a request is refused with RateLimited,
// which the HTTP face answers 429 with Retry-After. The day's counts start,
// for each key the first time it is seen in a day, from its export history
// (KeyUsage, anomaly.h), which is on disk: a restarted server keeps them.
//
// A KeyLimiter is thread-safe (one mutex); its memory is one bucket and one
// day count per key seen, bounded by the keys in force (kAccessKeysMax).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/core.h"

namespace minpanel::service {

// The largest values a key or the config may set (0 means no limit).
inline constexpr uint64_t kKeyRequestsPerSecondMax = 1'000'000;
inline constexpr uint64_t kKeyExportRowsPerDayMax = 1'000'000'000'000;
inline constexpr uint64_t kKeyExportSubjectsPerDayMax = 1'000'000'000'000;

// A key's limits; 0: none (or, on a key, the server's default).
struct KeyLimits {
  uint64_t requests_per_second = 0;
  uint64_t export_rows_per_day = 0;
  uint64_t export_subjects_per_day = 0;
};

// The limits in force: each of the key's own, else the server's default.
KeyLimits EffectiveLimits(const KeyLimits& key, const KeyLimits& defaults);
// InvalidArgument naming the field over its maximum.
Status CheckKeyLimits(const KeyLimits& limits);

// A refusal for going over a limit: ResourceExhausted whose message starts
// with "rate limit: " and ends with "(retry after N s)".
Status RateLimited(const std::string& message, uint64_t retry_after_s);
// The N of a RateLimited status; nullopt for any other status.
std::optional<uint64_t> RetryAfterSeconds(const Status& status);

// A token bucket as deep as its rate, refilled continuously (the key
// limiter's and the project quotas').
struct TokenBucket {
  double tokens = 0;
  int64_t updated_ms = 0;
  bool started = false;
  // Refills to `now_ms`; a new bucket starts full.
  void Refill(double rate, int64_t now_ms);
  // Whole seconds until the bucket holds one token again, at least 1.
  uint64_t WaitSeconds(double rate) const;
};

class KeyUsage;

class KeyLimiter {
 public:
  // `usage` (may be null: counts start at 0) gives each key's day so far.
  explicit KeyLimiter(std::shared_ptr<Clock> clock, std::shared_ptr<KeyUsage> usage = nullptr);

  // Takes a token from the key's bucket; RateLimited, naming the rate, when
  // none is left. A rate of 0 admits everything.
  Status Admit(const std::string& key_id, uint64_t requests_per_second);
  // Before an export: RateLimited when the day's rows or subjects are used
  // up; else how many rows the key may still export today (UINT64_MAX: no
  // row quota).
  Result<uint64_t> ExportRowsLeft(const std::string& key_id, const KeyLimits& limits);
  // After an export: what left. An export that crosses the subject quota
  // ends (its subjects are known only as they stream); the next is refused.
  void CountExport(const std::string& key_id, uint64_t rows, uint64_t subjects);

 private:
  struct DayCount {
    int64_t day = 0;  // days since the epoch, UTC
    uint64_t rows = 0;
    uint64_t subjects = 0;
  };
  Result<DayCount*> TodayLocked(const std::string& key_id, int64_t now_ms);

  std::shared_ptr<Clock> clock_;
  std::shared_ptr<KeyUsage> usage_;
  std::mutex mutex_;
  std::unordered_map<std::string, TokenBucket> buckets_;
  std::unordered_map<std::string, DayCount> days_;
};

}  // namespace minpanel::service
