#include "core/clock.h"

#include <chrono>

namespace minpanel {
namespace {

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

std::shared_ptr<Clock> NewSystemClock() { return std::make_shared<SystemClock>(); }

}  // namespace minpanel
