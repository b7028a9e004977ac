// Service's saved reports and dashboards (reports.h): per project, scope
// query:aggregate; a change is audited; a name or state holding what the
// PII detectors find is refused, so no personal data reaches the file.
#include "service/service.h"

namespace minpanel::service {
namespace {

std::string_view SavedAct(SavedKind kind, bool deleted, bool created) {
  if (kind == SavedKind::kReport) {
    return deleted ? "report.delete" : created ? "report.create" : "report.update";
  }
  return deleted ? "dashboard.delete" : created ? "dashboard.create" : "dashboard.update";
}

}  // namespace

Result<std::vector<SavedItem>> Service::ListSaved(const Access& access, SavedKind kind) const {
  return reports_->List(access.project.id, kind);
}

Result<SavedItem> Service::GetSaved(const Access& access, SavedKind kind, uint64_t id) const {
  return reports_->Get(access.project.id, kind, id);
}

Result<SavedItem> Service::PutSaved(const Access& access, SavedKind kind, uint64_t id,
                                    std::string_view json) {
  MP_ASSIGN_OR_RETURN(SavedItem item, ParseSavedItem(kind, json));
  std::vector<privacy::Detection> found;
  for (const auto& [field, text] :
       {std::pair<std::string_view, std::string_view>{"name", item.name},
        std::pair<std::string_view, std::string_view>{"state", item.state_json}}) {
    tools_->detectors.Scan(text, &found);
    if (!found.empty()) {
      return Status::InvalidArgument(
          std::string(field) + ": holds what looks like " +
          std::string(privacy::PiiKindName(found.front().kind)) +
          " data; a saved report may not hold personal data (the policy would have redacted it "
          "from the events anyway)");
    }
  }
  MP_ASSIGN_OR_RETURN(SavedItem saved, reports_->Put(access.project.id, id, std::move(item)));
  audit::AuditEntry entry;
  entry.act = SavedAct(kind, false, id == 0);
  entry.target = std::to_string(saved.id);
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return saved;
}

Status Service::DeleteSaved(const Access& access, SavedKind kind, uint64_t id) {
  MP_RETURN_IF_ERROR(reports_->Delete(access.project.id, kind, id));
  audit::AuditEntry entry;
  entry.act = SavedAct(kind, true, false);
  entry.target = std::to_string(id);
  return Audit(access, std::move(entry));
}

}  // namespace minpanel::service
