#include "service/gdpr_tasks.h"

#include <algorithm>

#include "query/query.h"
#include "service/registry_file.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kTasksFormat = "minpanel-gdpr-tasks";
constexpr int64_t kTasksVersion = 1;
constexpr uint32_t kFileMode = 0600;
constexpr uint32_t kFolderMode = 0700;
constexpr size_t kIdBytes = 16;  // an id is 32 hex characters

bool Finished(const GdprTask& task) { return task.status != "PENDING" && task.status != "STARTED"; }

Result<GdprTask> ParseTask(simdjson::dom::element element) {
  GdprTask task;
  std::string_view id, kind, status, result, compliance;
  int64_t project_id = 0;
  uint64_t distinct_ids = 0, subjects = 0;
  bool has_result = false;
  if (element["id"].get(id) || element["kind"].get(kind) || element["project_id"].get(project_id) ||
      element["created_ms"].get(task.created_ms) || element["status"].get(status) ||
      element["result"].get(result) || element["compliance_type"].get(compliance) ||
      element["distinct_ids"].get(distinct_ids) || element["subjects"].get(subjects) ||
      element["has_result_file"].get(has_result) || (kind != "deletion" && kind != "retrieval") ||
      id.size() != 2 * kIdBytes ||
      id.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return Status::Corruption("gdpr_tasks.json: a task is not well formed");
  }
  task.id = id;
  task.kind = kind == "deletion" ? GdprKind::kDeletion : GdprKind::kRetrieval;
  task.project_id = static_cast<uint32_t>(project_id);
  task.status = status;
  task.result = result;
  task.compliance_type = compliance;
  task.distinct_ids = distinct_ids;
  task.subjects = subjects;
  task.has_result_file = has_result;
  return task;
}

void AppendTaskJson(const GdprTask& task, std::string* out) {
  *out += "{\"id\":\"" + task.id + "\",\"kind\":\"" + std::string(GdprKindName(task.kind)) +
          "\",\"project_id\":" + std::to_string(task.project_id) +
          ",\"created_ms\":" + std::to_string(task.created_ms) + ",\"status\":";
  query::AppendJsonString(task.status, out);
  *out += ",\"result\":";
  query::AppendJsonString(task.result, out);
  *out += ",\"compliance_type\":";
  query::AppendJsonString(task.compliance_type, out);
  *out += ",\"distinct_ids\":" + std::to_string(task.distinct_ids) +
          ",\"subjects\":" + std::to_string(task.subjects) +
          ",\"has_result_file\":" + (task.has_result_file ? "true" : "false") + "}";
}

}  // namespace

std::string_view GdprKindName(GdprKind kind) {
  return kind == GdprKind::kDeletion ? "deletion" : "retrieval";
}

GdprTasks::GdprTasks(std::string data_folder, std::shared_ptr<FileSystem> file_system,
                     std::shared_ptr<Clock> clock)
    : data_folder_(std::move(data_folder)),
      file_system_(std::move(file_system)),
      clock_(std::move(clock)) {}

Result<std::unique_ptr<GdprTasks>> GdprTasks::Open(const std::string& data_folder,
                                                   std::shared_ptr<FileSystem> file_system,
                                                   std::shared_ptr<Clock> clock) {
  std::unique_ptr<GdprTasks> tasks(new GdprTasks(data_folder, file_system, std::move(clock)));
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(data_folder + "/gdpr", kFolderMode));
  MP_ASSIGN_OR_RETURN(
      tasks->tasks_,
      internal::ReadListFile<GdprTask>(*file_system, data_folder + "/gdpr_tasks.json", kTasksFormat,
                                       kTasksVersion, "tasks", "GDPR tasks", ParseTask));
  return tasks;
}

std::string GdprTasks::NewId() const { return internal::RandomHex(kIdBytes); }

Status GdprTasks::WriteLocked() {
  std::string out = "{\"format\":\"" + std::string(kTasksFormat) +
                    "\",\"version\":" + std::to_string(kTasksVersion) + ",\"tasks\":[";
  for (size_t task_idx = 0; task_idx < tasks_.size(); ++task_idx) {
    out += task_idx == 0 ? "\n" : ",\n";
    AppendTaskJson(tasks_[task_idx], &out);
  }
  out += "]}\n";
  return file_system_->WriteFileAtomically(data_folder_ + "/gdpr_tasks.json", out, kFileMode);
}

Status GdprTasks::Put(const GdprTask& task) {
  std::lock_guard lock(mutex_);
  const auto same = std::find_if(tasks_.begin(), tasks_.end(),
                                 [&](const GdprTask& other) { return other.id == task.id; });
  if (same != tasks_.end()) {
    *same = task;
  } else {
    if (tasks_.size() >= kGdprTasksMax) {
      const auto oldest = std::find_if(tasks_.begin(), tasks_.end(), Finished);
      if (oldest == tasks_.end()) {
        return Status::ResourceExhausted("GDPR tasks: " + std::to_string(kGdprTasksMax) +
                                         " unfinished tasks (kGdprTasksMax)");
      }
      if (oldest->has_result_file && file_system_->Exists(ResultPath(oldest->id))) {
        (void)file_system_->Remove(ResultPath(oldest->id));
      }
      tasks_.erase(oldest);
    }
    tasks_.push_back(task);
  }
  return WriteLocked();
}

std::optional<GdprTask> GdprTasks::Find(const std::string& id) const {
  std::lock_guard lock(mutex_);
  for (const GdprTask& task : tasks_) {
    if (task.id == id) {
      return task;
    }
  }
  return std::nullopt;
}

std::vector<GdprTask> GdprTasks::Unfinished() const {
  std::lock_guard lock(mutex_);
  std::vector<GdprTask> unfinished;
  for (const GdprTask& task : tasks_) {
    if (!Finished(task)) {
      unfinished.push_back(task);
    }
  }
  return unfinished;
}

std::string GdprTasks::ResultPath(const std::string& id) const {
  return data_folder_ + "/gdpr/" + id + ".json";
}

Status GdprTasks::WriteResult(const std::string& id, std::string_view json) {
  return file_system_->WriteFileAtomically(ResultPath(id), json, kFileMode);
}

Result<std::string> GdprTasks::ReadResult(const std::string& id) {
  if (!file_system_->Exists(ResultPath(id))) {
    return Status::NotFound("task " + id + ": no result (expired, or removed by a later erasure)");
  }
  return file_system_->ReadFile(ResultPath(id));
}

Status GdprTasks::RemoveResultOf(const std::string& id) {
  return file_system_->Exists(ResultPath(id)) ? file_system_->Remove(ResultPath(id)) : Status::Ok();
}

Result<size_t> GdprTasks::RemoveResults(std::optional<uint32_t> project_id) {
  std::lock_guard lock(mutex_);
  const int64_t expired_before = clock_->NowMs() - kGdprResultKeepMs;
  size_t removed = 0;
  bool changed = false;
  for (GdprTask& task : tasks_) {
    if (!task.has_result_file ||
        (task.project_id != project_id && task.created_ms >= expired_before)) {
      continue;
    }
    if (file_system_->Exists(ResultPath(task.id))) {
      MP_RETURN_IF_ERROR(file_system_->Remove(ResultPath(task.id)));
    }
    task.has_result_file = false;
    task.result = "result removed (expired, or a later erasure in the project)";
    changed = true;
    ++removed;
  }
  if (changed) {
    MP_RETURN_IF_ERROR(WriteLocked());
  }
  return removed;
}

}  // namespace minpanel::service
