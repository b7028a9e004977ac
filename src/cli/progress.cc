#include "cli/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace minpanel::cli {

ProgressReporter::ProgressReporter()
    : terminal_(::isatty(STDERR_FILENO) == 1), start_(SteadyClock::now()), last_report_(start_) {}

bool ProgressReporter::Due() const {
  const int64_t interval_ms = terminal_ ? kTerminalRedrawMs : kLogLineIntervalMs;
  return SteadyClock::now() - last_report_ >= std::chrono::milliseconds(interval_ms);
}

void ProgressReporter::Report(std::string_view text) {
  last_report_ = SteadyClock::now();
  reported_ = true;
  if (terminal_) {
    // \x1b[K clears what a longer previous line left behind.
    std::fprintf(stderr, "\r%.*s\x1b[K", static_cast<int>(text.size()), text.data());
  } else {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(text.size()), text.data());
  }
  std::fflush(stderr);
}

void ProgressReporter::Finish() {
  if (terminal_ && reported_) {
    std::fputc('\n', stderr);
    std::fflush(stderr);
  }
  reported_ = false;
}

double ProgressReporter::ElapsedSeconds() const {
  return std::chrono::duration<double>(SteadyClock::now() - start_).count();
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) {
    return "?";
  }
  const auto total_s = static_cast<uint64_t>(std::llround(seconds));
  char text[32];
  if (total_s < 60) {
    std::snprintf(text, sizeof(text), "%llus", static_cast<unsigned long long>(total_s));
  } else if (total_s < 3600) {
    std::snprintf(text, sizeof(text), "%llum%02llus", static_cast<unsigned long long>(total_s / 60),
                  static_cast<unsigned long long>(total_s % 60));
  } else {
    std::snprintf(text, sizeof(text), "%lluh%02llum",
                  static_cast<unsigned long long>(total_s / 3600),
                  static_cast<unsigned long long>(total_s % 3600 / 60));
  }
  return text;
}

std::string FormatBytes(uint64_t bytes) {
  constexpr double kKilo = 1000.0;
  const char* const units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  size_t unit_idx = 0;
  while (value >= kKilo && unit_idx + 1 < std::size(units)) {
    value /= kKilo;
    ++unit_idx;
  }
  char text[32];
  if (unit_idx == 0) {
    std::snprintf(text, sizeof(text), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(text, sizeof(text), "%.1f %s", value, units[unit_idx]);
  }
  return text;
}

}  // namespace minpanel::cli
