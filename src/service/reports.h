// Saved reports and dashboards of pinned reports, per project: what the
// dashboard's "Save" and "Pin" keep server-side, so any client of the API
// (docs/formats/dashboard-api.md) sees the same list. One file,
// <data>/reports.json (a versioned list, read with registry_file.h's
// reader), rewritten atomically and fsynced on every change. A report is a
// view name and that view's state (a JSON object, the same one its URL
// carries); a dashboard is a name and an ordered list of report ids.
//
// A ReportStore is thread-safe (one mutex; changes are rare and small).
// Internal to service: Service checks access, detectors and audit around it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"

namespace minpanel::service {

inline constexpr size_t kSavedItemsMax = 10000;        // reports and dashboards, all projects
inline constexpr size_t kSavedNameBytesMax = 200;      // a report's or dashboard's name
inline constexpr size_t kReportStateBytesMax = 16384;  // a report's state, as JSON
inline constexpr size_t kDashboardReportsMax = 50;     // reports pinned on one dashboard

enum class SavedKind : uint8_t { kReport, kDashboard };

struct SavedItem {
  uint64_t id = 0;  // unique in the file, never reused
  SavedKind kind = SavedKind::kReport;
  uint32_t project_id = 0;
  std::string name;
  std::string view;               // a report's: "insights", "funnels" or "retention"
  std::string state_json;         // a report's: a JSON object (minified)
  std::vector<uint64_t> reports;  // a dashboard's: pinned report ids, in order
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// The fields a client sends: {"name", "view", "state"} for a report,
// {"name", "reports": [ids]} for a dashboard. InvalidArgument names the
// field at fault, ResourceExhausted the limit.
Result<SavedItem> ParseSavedItem(SavedKind kind, std::string_view json);
// As the API shows it (docs/formats/dashboard-api.md).
std::string SavedItemJson(const SavedItem& item);

class ReportStore {
 public:
  static Result<std::unique_ptr<ReportStore>> Open(const std::string& data_folder,
                                                   std::shared_ptr<FileSystem> file_system,
                                                   std::shared_ptr<Clock> clock);

  // A project's items of one kind, oldest first.
  std::vector<SavedItem> List(uint32_t project_id, SavedKind kind) const;
  // NotFound when the project has no such item.
  Result<SavedItem> Get(uint32_t project_id, SavedKind kind, uint64_t id) const;
  // Stores `item` (from ParseSavedItem) as a new item of the project, or
  // replaces item `id` (id != 0; NotFound when the project has none). A
  // dashboard's reports must be the project's reports (InvalidArgument).
  // Durable before it returns; a failed write changes nothing.
  Result<SavedItem> Put(uint32_t project_id, uint64_t id, SavedItem item);
  // Deletes an item; a deleted report also leaves every dashboard.
  Status Delete(uint32_t project_id, SavedKind kind, uint64_t id);

 private:
  ReportStore(std::string path, std::shared_ptr<FileSystem> file_system,
              std::shared_ptr<Clock> clock)
      : path_(std::move(path)), file_system_(std::move(file_system)), clock_(std::move(clock)) {}
  Status Write(const std::vector<SavedItem>& items) const;
  std::vector<SavedItem>::const_iterator Find(uint32_t project_id, SavedKind kind,
                                              uint64_t id) const;

  std::string path_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  mutable std::mutex mutex_;
  std::vector<SavedItem> items_;
  uint64_t next_id_ = 1;
};

}  // namespace minpanel::service
