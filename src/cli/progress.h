// ProgressReporter: a progress line on stderr for long commands (import,
// export to a file). On a terminal it redraws one line in place a few times
// a second; otherwise (a log, a pipe) it prints a line every few seconds, so
// logs stay readable. Thread-compatible.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace minpanel::cli {

inline constexpr int64_t kTerminalRedrawMs = 200;
inline constexpr int64_t kLogLineIntervalMs = 5000;

class ProgressReporter {
 public:
  ProgressReporter();

  // Whether a report is due; the caller then builds the text and calls Report.
  bool Due() const;
  void Report(std::string_view text);
  // Ends the redrawn line, so that what follows starts on a fresh one.
  void Finish();
  double ElapsedSeconds() const;

 private:
  using SteadyClock = std::chrono::steady_clock;
  bool terminal_;
  SteadyClock::time_point start_;
  SteadyClock::time_point last_report_;
  bool reported_ = false;
};

// "42s", "3m05s", "2h07m".
std::string FormatDuration(double seconds);
// "512 B", "3.4 MB", "1.2 GB" (decimal units).
std::string FormatBytes(uint64_t bytes);

}  // namespace minpanel::cli
