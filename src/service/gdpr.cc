// Mixpanel's GDPR API shapes over erasure and access requests
// (docs/formats/mixpanel-gdpr.md). A deletion runs before the answer: the
// task is STARTED once the erasure is durable (invisible), SUCCESS once the
// purge has rewritten every file; a STARTED deletion found at open (a crash
// during its purge) is purged again and finished. A retrieval writes its
// result under <data>/gdpr/ and is SUCCESS; one a crash interrupted is a
// FAILURE (its ids were never written down, so it cannot be re-run).
#include <simdjson.h>

#include "query/query.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

std::string TaskCreated(const std::string& task_id) {
  return "{\"status\":\"ok\",\"results\":{\"task_id\":\"" + task_id + "\"}}\n";
}

// Mixpanel's compliance_type (default GDPR) and, for a CCPA retrieval,
// disclosure_type (only Data: minpanel holds no category or source report).
Result<std::string> ComplianceOf(std::string_view json, GdprKind kind) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(json.data(), json.size()).get(root)) {
    return Status::InvalidArgument("body: expected a JSON object with \"distinct_ids\"");
  }
  std::string_view compliance = "GDPR";
  simdjson::dom::element element;
  if (!root["compliance_type"].get(element) &&
      (element.get(compliance) || (compliance != "GDPR" && compliance != "CCPA"))) {
    return Status::InvalidArgument("compliance_type: expected \"GDPR\" or \"CCPA\"");
  }
  std::string_view disclosure = "Data";
  if (!root["disclosure_type"].get(element) && (element.get(disclosure) || disclosure != "Data")) {
    return Status::InvalidArgument(
        "disclosure_type: only \"Data\" is supported (minpanel returns the data itself)");
  }
  (void)kind;
  return std::string(compliance);
}

}  // namespace

Result<std::string> Service::GdprCreate(const Access& access, GdprKind kind,
                                        std::string_view body) {
  MP_ASSIGN_OR_RETURN(const std::string compliance, ComplianceOf(body, kind));
  MP_ASSIGN_OR_RETURN(SubjectSelection selection,
                      ParseSubjectSelection(body, kGdprDistinctIdsMax, "kGdprDistinctIdsMax"));
  GdprTask task;
  task.id = gdpr_tasks_->NewId();
  task.kind = kind;
  task.project_id = access.project.id;
  task.created_ms = clock_->NowMs();
  task.compliance_type = compliance;
  task.distinct_ids = selection.distinct_ids.size();
  if (kind == GdprKind::kDeletion) {
    selection.purge_now = false;
    MP_ASSIGN_OR_RETURN(const ErasureOutcome erased, Erase(access, selection));
    task.subjects = erased.subjects;
    task.status = "STARTED";
    task.result = "erased: invisible to every read; purging the files";
    MP_RETURN_IF_ERROR(gdpr_tasks_->Put(task));
    MP_RETURN_IF_ERROR(FinishDeletion(&task));
    return TaskCreated(task.id);
  }
  MP_ASSIGN_OR_RETURN(const std::string result, AccessRequest(access, selection));
  MP_RETURN_IF_ERROR(gdpr_tasks_->WriteResult(task.id, result));
  task.status = "SUCCESS";
  task.result = "retrieved: " + std::to_string(result.size()) + " bytes";
  task.has_result_file = true;
  MP_RETURN_IF_ERROR(gdpr_tasks_->Put(task));
  return TaskCreated(task.id);
}

Status Service::FinishDeletion(GdprTask* task) {
  const Status purged = engine_->PurgeDeleted();
  task->status = purged.ok() ? "SUCCESS" : "FAILURE";
  task->result = purged.ok() ? "erased and purged from every file"
                             : "erased (invisible); the purge failed and is retried in the "
                               "background: " +
                                   purged.message();
  return gdpr_tasks_->Put(*task);
}

Status Service::ResumeGdprTasks() {
  for (GdprTask task : gdpr_tasks_->Unfinished()) {
    if (task.kind == GdprKind::kDeletion && task.status == "STARTED") {
      MP_RETURN_IF_ERROR(FinishDeletion(&task));
      continue;
    }
    task.status = "FAILURE";
    task.result = "interrupted by a restart before it was done; submit it again";
    MP_RETURN_IF_ERROR(gdpr_tasks_->Put(task));
  }
  const auto expired = gdpr_tasks_->RemoveResults(std::nullopt);
  return expired.status();
}

Result<GdprTask> Service::GdprTaskOf(const Access& access, GdprKind kind,
                                     std::string_view task_id) const {
  const std::optional<GdprTask> task = gdpr_tasks_->Find(std::string(task_id));
  // Another project's task, or one of the other kind, is not found either.
  if (!task.has_value() || task->kind != kind || task->project_id != access.project.id) {
    return Status::NotFound("task_id: no " + std::string(GdprKindName(kind)) + " task " +
                            std::string(task_id) + " in this project");
  }
  return *task;
}

Result<std::string> Service::GdprStatus(const Access& access, GdprKind kind,
                                        std::string_view task_id, std::string_view result_url) {
  MP_ASSIGN_OR_RETURN(const GdprTask task, GdprTaskOf(access, kind, task_id));
  std::string out =
      "{\"status\":\"ok\",\"results\":{\"status\":\"" + task.status + "\",\"result\":";
  query::AppendJsonString(task.result, &out);
  if (task.has_result_file) {
    out += ",\"download_url\":";
    query::AppendJsonString(result_url, &out);
  }
  out += ",\"compliance_type\":\"" + task.compliance_type +
         "\",\"distinct_ids\":" + std::to_string(task.distinct_ids) +
         ",\"subjects\":" + std::to_string(task.subjects) + "}}\n";
  return out;
}

Result<std::string> Service::GdprCancel(const Access& access, GdprKind kind,
                                        std::string_view task_id) {
  MP_ASSIGN_OR_RETURN(GdprTask task, GdprTaskOf(access, kind, task_id));
  if (kind == GdprKind::kDeletion) {
    return Status::InvalidArgument("task_id: the deletion is " + task.status +
                                   "; a deletion can be cancelled only before it starts, and "
                                   "minpanel starts it before answering its creation");
  }
  // A retrieval is done before its task exists; cancelling it removes its
  // result, the one copy of the subjects' data outside the store.
  if (task.has_result_file) {
    MP_RETURN_IF_ERROR(gdpr_tasks_->RemoveResultOf(task.id));
  }
  task.has_result_file = false;
  task.status = "REVOKED";
  task.result = "cancelled: the result was removed";
  MP_RETURN_IF_ERROR(gdpr_tasks_->Put(task));
  audit::AuditEntry entry;
  entry.act = "access_request.remove";
  entry.target = "gdpr:" + task.id;
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return std::string("{\"status\":\"ok\"}\n");
}

Result<std::string> Service::GdprResult(const Access& access, std::string_view task_id) {
  MP_ASSIGN_OR_RETURN(const GdprTask task, GdprTaskOf(access, GdprKind::kRetrieval, task_id));
  MP_ASSIGN_OR_RETURN(std::string result, gdpr_tasks_->ReadResult(task.id));
  audit::AuditEntry entry = ReadEntry(access, "access_request.download");
  entry.target = "gdpr:" + task.id;
  entry.subjects = task.subjects;
  entry.bytes = result.size();
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return result;
}

}  // namespace minpanel::service
