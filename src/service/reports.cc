#include "service/reports.h"

#include <simdjson.h>

#include <algorithm>

#include "query/query.h"
#include "service/registry_file.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kFileFormat = "minpanel-reports";
constexpr int64_t kFileFormatVersion = 1;
constexpr uint32_t kReportsFileMode = 0600;
constexpr std::string_view kViews[] = {"insights", "funnels", "retention"};

std::string_view KindName(SavedKind kind) {
  return kind == SavedKind::kReport ? "report" : "dashboard";
}

Status NoSuchItem(SavedKind kind, uint64_t id) {
  const std::string kind_name(KindName(kind));
  return Status::NotFound(kind_name + " " + std::to_string(id) + ": no such " + kind_name +
                          " in this project");
}

Status ParseName(simdjson::dom::element value, SavedItem* item) {
  std::string_view name;
  if (value.get(name) || name.empty()) {
    return Status::InvalidArgument("name: a non-empty string is required");
  }
  if (name.size() > kSavedNameBytesMax) {
    return Status::ResourceExhausted("name: " + std::to_string(name.size()) +
                                     " bytes, over the limit of " +
                                     std::to_string(kSavedNameBytesMax) + " (kSavedNameBytesMax)");
  }
  item->name = name;
  return Status::Ok();
}

Status ParseReportFields(std::string_view key, simdjson::dom::element value, SavedItem* item) {
  if (key == "view") {
    std::string_view view;
    if (value.get(view) ||
        std::find(std::begin(kViews), std::end(kViews), view) == std::end(kViews)) {
      return Status::InvalidArgument("view: one of \"insights\", \"funnels\", \"retention\"");
    }
    item->view = view;
    return Status::Ok();
  }
  if (!value.is_object()) {
    return Status::InvalidArgument("state: a JSON object (the view's state) is required");
  }
  item->state_json = simdjson::minify(value);
  if (item->state_json.size() > kReportStateBytesMax) {
    return Status::ResourceExhausted(
        "state: " + std::to_string(item->state_json.size()) + " bytes, over the limit of " +
        std::to_string(kReportStateBytesMax) + " (kReportStateBytesMax)");
  }
  return Status::Ok();
}

Status ParseReportIds(simdjson::dom::element value, SavedItem* item) {
  simdjson::dom::array ids;
  if (value.get(ids)) {
    return Status::InvalidArgument("reports: an array of report ids is required");
  }
  if (ids.size() > kDashboardReportsMax) {
    return Status::ResourceExhausted(
        "reports: " + std::to_string(ids.size()) + " reports, over the limit of " +
        std::to_string(kDashboardReportsMax) + " (kDashboardReportsMax)");
  }
  for (simdjson::dom::element id_value : ids) {
    uint64_t id = 0;
    if (id_value.get(id) || id == 0) {
      return Status::InvalidArgument(
          "reports: each entry must be a report id (a positive integer)");
    }
    item->reports.push_back(id);
  }
  return Status::Ok();
}

Result<SavedItem> ParseStoredItem(simdjson::dom::element element) {
  SavedItem item;
  std::string_view kind, name, view;
  uint64_t project_id = 0;
  if (element["id"].get(item.id) || element["kind"].get(kind) ||
      element["project_id"].get(project_id) || element["name"].get(name) ||
      element["created_ms"].get(item.created_ms) || element["updated_ms"].get(item.updated_ms) ||
      (kind != "report" && kind != "dashboard") || project_id > UINT32_MAX) {
    return Status::Corruption("reports.json: an entry lacks a field or has a wrong type");
  }
  item.kind = kind == "report" ? SavedKind::kReport : SavedKind::kDashboard;
  item.project_id = static_cast<uint32_t>(project_id);
  item.name = name;
  if (item.kind == SavedKind::kReport) {
    simdjson::dom::element state;
    if (element["view"].get(view) || element["state"].get(state)) {
      return Status::Corruption("reports.json: a report lacks its view or state");
    }
    item.view = view;
    item.state_json = simdjson::minify(state);
  } else {
    simdjson::dom::element reports;
    if (element["reports"].get(reports) || !ParseReportIds(reports, &item).ok()) {
      return Status::Corruption("reports.json: a dashboard's reports are not a list of ids");
    }
  }
  return item;
}

}  // namespace

Result<SavedItem> ParseSavedItem(SavedKind kind, std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(json).get(object)) {
    return Status::InvalidArgument("body: a JSON object is required");
  }
  SavedItem item;
  item.kind = kind;
  bool has_name = false;
  for (const auto field : object) {
    const std::string_view key = field.key;
    if (key == "name") {
      MP_RETURN_IF_ERROR(ParseName(field.value, &item));
      has_name = true;
    } else if (kind == SavedKind::kReport && (key == "view" || key == "state")) {
      MP_RETURN_IF_ERROR(ParseReportFields(key, field.value, &item));
    } else if (kind == SavedKind::kDashboard && key == "reports") {
      MP_RETURN_IF_ERROR(ParseReportIds(field.value, &item));
    } else if (key != "id" && key != "kind" && key != "project_id" && key != "created_ms" &&
               key != "updated_ms") {
      // What a GET answered may be sent back as it is; anything else is a mistake.
      return Status::InvalidArgument(std::string(key) + ": not a field of a " +
                                     std::string(KindName(kind)));
    }
  }
  if (!has_name) {
    return Status::InvalidArgument("name: a non-empty string is required");
  }
  if (kind == SavedKind::kReport && (item.view.empty() || item.state_json.empty())) {
    return Status::InvalidArgument(item.view.empty() ? "view: required" : "state: required");
  }
  return item;
}

std::string SavedItemJson(const SavedItem& item) {
  std::string json = "{\"id\":" + std::to_string(item.id) + ",\"kind\":\"" +
                     std::string(KindName(item.kind)) +
                     "\",\"project_id\":" + std::to_string(item.project_id) + ",\"name\":";
  query::AppendJsonString(item.name, &json);
  if (item.kind == SavedKind::kReport) {
    json += ",\"view\":";
    query::AppendJsonString(item.view, &json);
    json += ",\"state\":" + item.state_json;
  } else {
    json += ",\"reports\":[";
    for (size_t report_idx = 0; report_idx < item.reports.size(); ++report_idx) {
      json += (report_idx == 0 ? "" : ",") + std::to_string(item.reports[report_idx]);
    }
    json += "]";
  }
  json += ",\"created_ms\":" + std::to_string(item.created_ms) +
          ",\"updated_ms\":" + std::to_string(item.updated_ms) + "}";
  return json;
}

Result<std::unique_ptr<ReportStore>> ReportStore::Open(const std::string& data_folder,
                                                       std::shared_ptr<FileSystem> file_system,
                                                       std::shared_ptr<Clock> clock) {
  std::unique_ptr<ReportStore> store(
      new ReportStore(data_folder + "/reports.json", std::move(file_system), std::move(clock)));
  MP_ASSIGN_OR_RETURN(store->items_, internal::ReadListFile<SavedItem>(
                                         *store->file_system_, store->path_, kFileFormat,
                                         kFileFormatVersion, "items", "reports", ParseStoredItem));
  for (const SavedItem& item : store->items_) {
    store->next_id_ = std::max(store->next_id_, item.id + 1);
  }
  return store;
}

std::vector<SavedItem> ReportStore::List(uint32_t project_id, SavedKind kind) const {
  std::lock_guard lock(mutex_);
  std::vector<SavedItem> items;
  for (const SavedItem& item : items_) {
    if (item.project_id == project_id && item.kind == kind) {
      items.push_back(item);
    }
  }
  return items;
}

std::vector<SavedItem>::const_iterator ReportStore::Find(uint32_t project_id, SavedKind kind,
                                                         uint64_t id) const {
  return std::find_if(items_.begin(), items_.end(), [&](const SavedItem& item) {
    return item.id == id && item.project_id == project_id && item.kind == kind;
  });
}

Result<SavedItem> ReportStore::Get(uint32_t project_id, SavedKind kind, uint64_t id) const {
  std::lock_guard lock(mutex_);
  const auto found = Find(project_id, kind, id);
  if (found == items_.end()) {
    return NoSuchItem(kind, id);
  }
  return *found;
}

Result<SavedItem> ReportStore::Put(uint32_t project_id, uint64_t id, SavedItem item) {
  std::lock_guard lock(mutex_);
  for (const uint64_t report_id : item.reports) {
    if (Find(project_id, SavedKind::kReport, report_id) == items_.end()) {
      return Status::InvalidArgument("reports: " + std::to_string(report_id) +
                                     " is not a report of this project");
    }
  }
  std::vector<SavedItem> items = items_;
  item.project_id = project_id;
  item.updated_ms = clock_->NowMs();
  uint64_t next_id = next_id_;
  if (id == 0) {
    if (items.size() >= kSavedItemsMax) {
      return Status::ResourceExhausted("reports: the server holds " +
                                       std::to_string(kSavedItemsMax) +
                                       " reports and dashboards (kSavedItemsMax)");
    }
    item.id = next_id++;
    item.created_ms = item.updated_ms;
    items.push_back(item);
  } else {
    const auto found = Find(project_id, item.kind, id);
    if (found == items_.end()) {
      return NoSuchItem(item.kind, id);
    }
    item.id = id;
    item.created_ms = found->created_ms;
    items[static_cast<size_t>(found - items_.begin())] = item;
  }
  MP_RETURN_IF_ERROR(Write(items));
  items_ = std::move(items);
  next_id_ = next_id;
  return item;
}

Status ReportStore::Delete(uint32_t project_id, SavedKind kind, uint64_t id) {
  std::lock_guard lock(mutex_);
  const auto found = Find(project_id, kind, id);
  if (found == items_.end()) {
    return NoSuchItem(kind, id);
  }
  std::vector<SavedItem> items = items_;
  items.erase(items.begin() + (found - items_.begin()));
  if (kind == SavedKind::kReport) {
    for (SavedItem& item : items) {
      if (item.project_id == project_id && item.kind == SavedKind::kDashboard) {
        std::erase(item.reports, id);
      }
    }
  }
  MP_RETURN_IF_ERROR(Write(items));
  items_ = std::move(items);
  return Status::Ok();
}

Status ReportStore::Write(const std::vector<SavedItem>& items) const {
  std::string text = "{\"format\":\"minpanel-reports\",\"version\":1,\"items\":[\n";
  for (size_t item_idx = 0; item_idx < items.size(); ++item_idx) {
    text += SavedItemJson(items[item_idx]);
    text += item_idx + 1 < items.size() ? ",\n" : "\n";
  }
  text += "]}\n";
  return file_system_->WriteFileAtomically(path_, text, kReportsFileMode);
}

}  // namespace minpanel::service
