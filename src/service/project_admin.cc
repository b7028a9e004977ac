// Per-project quotas on ingestion and project deletion (issue 6;
// docs/security.md, "Project quotas" and "Project deletion").
#include <algorithm>

#include "service/service.h"

namespace minpanel::service {

Status Service::AdmitIngest(const store::AppendBatch& batch) {
  const std::optional<Project> project = projects_->FindById(batch.project_id);
  if (!project.has_value()) {
    return Status::Ok();
  }
  const ProjectSettings settings = settings_.For(project->name);
  const uint32_t project_id = project->id;
  return project_quotas_->Admit(
      project_id, project->name, batch.events.size() + batch.profile_updates.size(),
      settings.ingest_events_per_second, settings.disk_bytes_max,
      [&]() -> Result<uint64_t> { return engine_->ProjectDiskBytes(project_id); });
}

Result<uint64_t> Service::HideProjectData(uint32_t project_id) {
  // Its profiles' subjects, whose updates a drop of events leaves.
  std::vector<Id128> subjects;
  MP_RETURN_IF_ERROR(engine_->ScanProfiles(project_id, [&](const ProfileUpdate& update) {
    subjects.push_back(update.subject);
    return true;
  }));
  std::sort(subjects.begin(), subjects.end());
  subjects.erase(std::unique(subjects.begin(), subjects.end()), subjects.end());
  for (size_t first = 0; first < subjects.size(); first += store::kDeletionSubjectsMax) {
    const size_t last = std::min(subjects.size(), first + store::kDeletionSubjectsMax);
    MP_RETURN_IF_ERROR(engine_->EraseSubjects(
        project_id, std::vector<Id128>(subjects.begin() + first, subjects.begin() + last)));
  }
  MP_RETURN_IF_ERROR(engine_->DropBefore(project_id, INT64_MAX));
  return subjects.size();
}

Result<ProjectDeletion> Service::DeleteProject(const Access& access, std::string_view confirm) {
  const Project project = access.project;
  if (confirm != project.name) {
    return Status::InvalidArgument("confirm: give the project's name ('" + project.name +
                                   "') to delete it with every event, profile and key");
  }
  // The start is durable before anything goes: a crash midway leaves a
  // record of what was being deleted, and until the project's tombstone is
  // written the deletion can simply be run again.
  audit::AuditEntry start;
  start.act = "project.delete.start";
  start.target = std::to_string(project.id);
  MP_RETURN_IF_ERROR(Audit(access, start));
  ProjectDeletion deletion;
  deletion.project = project;
  MP_ASSIGN_OR_RETURN(const std::vector<AccessKey> keys, access_keys_->RemoveProject(project.id));
  for (const AccessKey& key : keys) {
    (void)key_usage_->Forget(key.id);
  }
  (void)key_usage_->Forget(std::string(kProjectSecretKeyPrefix) + std::to_string(project.id));
  deletion.keys = keys.size();
  MP_ASSIGN_OR_RETURN(deletion.profile_subjects, HideProjectData(project.id));
  for (const SavedKind kind : {SavedKind::kDashboard, SavedKind::kReport}) {
    for (const SavedItem& item : reports_->List(project.id, kind)) {
      MP_RETURN_IF_ERROR(reports_->Delete(project.id, kind, item.id));
    }
  }
  // Its token and secret stop (the registry keeps a tombstone of its id);
  // then what arrived in between is hidden too, and all of it leaves the
  // files now, not at the purge deadline.
  MP_RETURN_IF_ERROR(projects_->MarkDeleted(project.id).status());
  MP_ASSIGN_OR_RETURN(const uint64_t late_subjects, HideProjectData(project.id));
  deletion.profile_subjects += late_subjects;
  MP_RETURN_IF_ERROR(engine_->PurgeDeleted());
  audit::AuditEntry end = start;
  end.act = "project.delete";
  end.rows = deletion.keys;
  end.subjects = deletion.profile_subjects;
  MP_RETURN_IF_ERROR(Audit(access, std::move(end)));
  return deletion;
}

std::string ProjectDeletionJson(const ProjectDeletion& deletion) {
  std::string json = "{\"deleted\":{\"id\":" + std::to_string(deletion.project.id) + ",\"name\":";
  query::AppendJsonString(deletion.project.name, &json);
  return json + "},\"keys_removed\":" + std::to_string(deletion.keys) +
         ",\"profile_subjects_erased\":" + std::to_string(deletion.profile_subjects) + "}";
}

}  // namespace minpanel::service
