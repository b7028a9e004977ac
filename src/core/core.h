// The core module: types every other module shares and nothing else.
// Status/Result (errors as values), the event model, the injected clock and
// file system. Depends on no other minpanel module.
#pragma once

#include "core/clock.h"
#include "core/event.h"
#include "core/file_system.h"
#include "core/status.h"

namespace minpanel {

// Times before this (1971-01-01, as Mixpanel's /import) are rejected.
inline constexpr int64_t kEventTimeMinMs = 31536000000;
// Events more than this far in the future (1 hour) are rejected.
inline constexpr int64_t kEventTimeFutureMaxMs = 3600 * 1000;

}  // namespace minpanel
