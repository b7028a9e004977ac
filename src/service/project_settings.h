// ProjectSettingsTable: the per-project settings of the configuration's
// [projects.NAME] tables (retention, profile expiry, consent; docs/config.md), replaced as a
// whole when the server re-reads its configuration, and what retention has
// already logged. Internal to the service module.
//
// Thread-safe: ingest threads read the settings while the server's timer
// applies retention and SIGHUP replaces them.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "service/config.h"

namespace minpanel::service {

// Retention bounds move in steps of this: a rule's bound is its age in
// days before now, rounded down to the hour, so each rule logs at most one
// drop an hour (each is a deletion record until its purge retires it) and
// an event is kept at least its N days, and hidden within the hour after.
inline constexpr int64_t kRetentionStepMs = 3'600'000;

// The bound of a rule keeping `days` days at `now_ms`.
int64_t RetentionBoundMs(int64_t now_ms, uint32_t days);

class ProjectSettingsTable {
 public:
  void Set(std::vector<ProjectSettings> settings);
  // The project's settings; defaults (keep everything, ignore signals)
  // when the configuration has no table for it.
  ProjectSettings For(std::string_view project) const;
  std::vector<ProjectSettings> All() const;

  // Whether a drop of (project, event name; "" for every event) before
  // `bound_ms` is later than the last one logged since start; if so it is
  // recorded as logged (ForgetDrop undoes that when logging failed).
  bool ClaimDrop(uint32_t project_id, const std::string& event_name, int64_t bound_ms);
  void ForgetDrop(uint32_t project_id, const std::string& event_name);
  // The same for a project's profile expiry bound.
  bool ClaimExpiry(uint32_t project_id, int64_t bound_ms);
  void ForgetExpiry(uint32_t project_id);

  // For /metrics, since start.
  std::atomic<uint64_t> retention_drops{0};
  std::atomic<uint64_t> retention_failures{0};
  std::atomic<uint64_t> profiles_expired{0};  // subjects whose profiles expired
  std::atomic<uint64_t> consent_dropped{0};
  std::atomic<uint64_t> consent_anonymous{0};

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const std::vector<ProjectSettings>> settings_ =
      std::make_shared<const std::vector<ProjectSettings>>();
  std::map<std::pair<uint32_t, std::string>, int64_t> dropped_before_ms_;
  std::map<uint32_t, int64_t> expired_before_ms_;
};

}  // namespace minpanel::service
