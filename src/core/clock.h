// Clock: wall time in milliseconds since the Unix epoch (UTC), injected so
// that tests can use a fake clock. Implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace minpanel {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;
};

std::shared_ptr<Clock> NewSystemClock();

// A clock that says what it is told; for tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Set(int64_t now_ms) { now_ms_.store(now_ms); }
  void Advance(int64_t delta_ms) { now_ms_.fetch_add(delta_ms); }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace minpanel
