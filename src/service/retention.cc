// Retention (docs/privacy.md, "Retention"): each project's rules become
// store drops (store::Engine::DropBefore, DropEventsBefore) and profile
// expiries (ExpireProfiles) logged at most once per kRetentionStepMs per rule; the store hides the rows at once and
// its purge drops whole segments or rewrites them in the background.
#include <spdlog/spdlog.h>

#include <optional>
#include <set>

#include "core/time_units.h"
#include "service/project_settings.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

// The audit log's retention bound moves in whole UTC days: a prune that cuts
// copies the rest of the log (audit::AuditLog::PruneBefore), so a running
// server cuts at most once a day; a look that finds nothing to cut reads one
// record.
constexpr int64_t kAuditPruneStepMs = kDayMs;

// Raises the bound `bounds` keeps for `key` to `bound_ms`: true when it had
// none or a lower one (the caller then acts on it), false when an equal or
// later bound was claimed before.
template <typename Map>
bool RaiseBound(Map* bounds, const typename Map::key_type& key, int64_t bound_ms) {
  auto [entry, added] = bounds->try_emplace(key, bound_ms);
  if (added) {
    return true;
  }
  if (entry->second >= bound_ms) {
    return false;
  }
  entry->second = bound_ms;
  return true;
}

}  // namespace

int64_t RetentionBoundMs(int64_t now_ms, uint32_t days) {
  const int64_t bound_ms = now_ms - static_cast<int64_t>(days) * kDayMs;
  // Round down (towards keeping more), also for times before 1970.
  const int64_t remainder = ((bound_ms % kRetentionStepMs) + kRetentionStepMs) % kRetentionStepMs;
  return bound_ms - remainder;
}

void ProjectSettingsTable::Set(std::vector<ProjectSettings> settings) {
  auto shared = std::make_shared<const std::vector<ProjectSettings>>(std::move(settings));
  std::lock_guard lock(mutex_);
  settings_ = std::move(shared);
}

ProjectSettings ProjectSettingsTable::For(std::string_view project) const {
  std::shared_ptr<const std::vector<ProjectSettings>> settings;
  {
    std::lock_guard lock(mutex_);
    settings = settings_;
  }
  for (const ProjectSettings& entry : *settings) {
    if (entry.project == project) {
      return entry;
    }
  }
  ProjectSettings defaults;
  defaults.project = std::string(project);
  return defaults;
}

std::vector<ProjectSettings> ProjectSettingsTable::All() const {
  std::lock_guard lock(mutex_);
  return *settings_;
}

bool ProjectSettingsTable::ClaimDrop(uint32_t project_id, const std::string& event_name,
                                     int64_t bound_ms) {
  std::lock_guard lock(mutex_);
  return RaiseBound(&dropped_before_ms_, {project_id, event_name}, bound_ms);
}

bool ProjectSettingsTable::ClaimExpiry(uint32_t project_id, int64_t bound_ms) {
  std::lock_guard lock(mutex_);
  return RaiseBound(&expired_before_ms_, project_id, bound_ms);
}

void ProjectSettingsTable::ForgetExpiry(uint32_t project_id) {
  std::lock_guard lock(mutex_);
  expired_before_ms_.erase(project_id);
}

void ProjectSettingsTable::ForgetDrop(uint32_t project_id, const std::string& event_name) {
  std::lock_guard lock(mutex_);
  dropped_before_ms_.erase({project_id, event_name});
}

void Service::SetProjectSettings(std::vector<ProjectSettings> settings) {
  settings_.Set(std::move(settings));
}

void Service::SetErasurePurgeDeadline(uint32_t deadline_hours) {
  engine_->SetPurgeDelay(ErasurePurgeDelayMs(deadline_hours));
}

ProjectSettings Service::SettingsOf(const Project& project) const {
  return settings_.For(project.name);
}

Status Service::ApplyRetention() {
  const int64_t now_ms = clock_->NowMs();
  Status first_error = Status::Ok();
  std::set<uint32_t> retention_dropped;  // projects whose whole-project rule dropped now
  for (const ProjectSettings& settings : settings_.All()) {
    const std::optional<Project> project = projects_->FindByName(settings.project);
    if (!project.has_value()) {
      continue;  // a table for a project not created yet
    }
    std::vector<std::pair<std::string, uint32_t>> rules = settings.event_retention_days;
    rules.emplace_back(std::string(), settings.retention_days);
    for (const auto& [event_name, days] : rules) {
      if (days == 0) {
        continue;
      }
      const int64_t bound_ms = RetentionBoundMs(now_ms, days);
      if (!settings_.ClaimDrop(project->id, event_name, bound_ms)) {
        continue;
      }
      const Status status = event_name.empty()
                                ? engine_->DropBefore(project->id, bound_ms)
                                : engine_->DropEventsBefore(project->id, event_name, bound_ms);
      if (status.ok()) {
        settings_.retention_drops.fetch_add(1);
        if (event_name.empty()) {
          retention_dropped.insert(project->id);
        }
        continue;
      }
      settings_.ForgetDrop(project->id, event_name);
      settings_.retention_failures.fetch_add(1);
      if (first_error.ok()) {
        first_error = Status(status.code(),
                             "retention of project '" + project->name + "': " + status.message());
      }
    }
    const Status expiry = ExpireProfiles(*project, settings.profile_expiry_days, now_ms);
    if (!expiry.ok() && first_error.ok()) {
      first_error = expiry;
    }
  }
  // The audit log's own retention (audit_retention_days), also while the
  // server runs, not only when the log opens: records older than the days,
  // rounded down to a UTC day, are cut behind a signed checkpoint.
  if (audit_retention_days_ > 0) {
    const int64_t bound_ms = now_ms - int64_t{audit_retention_days_} * kDayMs;
    const int64_t remainder = ((bound_ms % kAuditPruneStepMs) + kAuditPruneStepMs) % kAuditPruneStepMs;
    const Result<uint64_t> pruned = audit_->PruneBefore(bound_ms - remainder);
    if (!pruned.ok()) {
      settings_.retention_failures.fetch_add(1);
      if (first_error.ok()) {
        first_error = Status(pruned.status().code(),
                             "audit log retention: " + pruned.status().message());
      }
    }
  }
  // The data map learns which keys the drops (and any erasure or purge
  // since its last look) left no stored event carrying.
  // Not a retention failure: the map keeps calling the keys stored, and
  // the next pass looks again.
  if (const Status storage = RefreshDataMapStorage(retention_dropped); !storage.ok()) {
    spdlog::warn("data map: could not read what the store holds: {}", storage.ToString());
  }
  return first_error;
}

// Profile expiry: once per kRetentionStepMs, as a drop, the store hides the
// profiles of the subjects not seen since the bound (Engine::ExpireProfiles).
Status Service::ExpireProfiles(const Project& project, uint32_t days, int64_t now_ms) {
  if (days == 0) {
    return Status::Ok();
  }
  const int64_t bound_ms = RetentionBoundMs(now_ms, days);
  if (!settings_.ClaimExpiry(project.id, bound_ms)) {
    return Status::Ok();
  }
  const Result<uint64_t> expired = engine_->ExpireProfiles(project.id, bound_ms);
  if (expired.ok()) {
    settings_.profiles_expired.fetch_add(*expired);
    return Status::Ok();
  }
  settings_.ForgetExpiry(project.id);
  settings_.retention_failures.fetch_add(1);
  return Status(expired.status().code(), "profile expiry of project '" + project.name +
                                             "': " + expired.status().message());
}

}  // namespace minpanel::service
