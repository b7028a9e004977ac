// Lengths of time in milliseconds, the unit of every minpanel timestamp
// (event times, Clock::NowMs, retention bounds). A day is a UTC day of
// 86,400,000 ms: Unix time has no leap seconds. Constants only, so any
// file may include this header without pulling in the rest of core.
#pragma once

#include <cstdint>

namespace minpanel {

inline constexpr int64_t kSecondMs = 1'000;
inline constexpr int64_t kMinuteMs = 60 * kSecondMs;
inline constexpr int64_t kHourMs = 60 * kMinuteMs;
inline constexpr int64_t kDayMs = 24 * kHourMs;

}  // namespace minpanel
