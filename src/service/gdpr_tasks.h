// The durable registry of tasks made through Mixpanel's GDPR API shapes
// (docs/formats/mixpanel-gdpr.md): <data>/gdpr_tasks.json, rewritten whole
// and atomically on every change, and <data>/gdpr/<task>.json, a
// retrieval's result until it expires or an erasure of the project removes
// it. A task holds counts and a keyed reference, never an id or pseudonym.
// Internal to service. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/core.h"

namespace minpanel::service {

// Tasks kept; past it the oldest finished task is forgotten first.
inline constexpr size_t kGdprTasksMax = 10'000;
// A retrieval's result is kept this long, then removed.
inline constexpr int64_t kGdprResultKeepMs = 7LL * 24 * 3600 * 1000;

enum class GdprKind : uint8_t { kDeletion, kRetrieval };

struct GdprTask {
  std::string id;  // 32 hex digits, random
  GdprKind kind = GdprKind::kDeletion;
  uint32_t project_id = 0;
  int64_t created_ms = 0;
  std::string status;           // PENDING, STARTED, SUCCESS, FAILURE, REVOKED
  std::string result;           // what happened, for the status answer
  std::string compliance_type;  // GDPR or CCPA
  uint64_t distinct_ids = 0;
  uint64_t subjects = 0;
  bool has_result_file = false;  // a retrieval's JSON under gdpr/
};

class GdprTasks {
 public:
  static Result<std::unique_ptr<GdprTasks>> Open(const std::string& data_folder,
                                                 std::shared_ptr<FileSystem> file_system,
                                                 std::shared_ptr<Clock> clock);
  // Adds or replaces the task with `task.id`, durable before it returns.
  Status Put(const GdprTask& task);
  std::optional<GdprTask> Find(const std::string& id) const;
  // Tasks left PENDING or STARTED by a crash (to run again: erasure is
  // idempotent, a retrieval is read again).
  std::vector<GdprTask> Unfinished() const;
  // A retrieval's result file: written atomically; read; removed.
  Status WriteResult(const std::string& id, std::string_view json);
  Result<std::string> ReadResult(const std::string& id);
  Status RemoveResultOf(const std::string& id);
  // Removes every stored retrieval result of `project_id` (an erasure may
  // have made any of them hold erased data) and those past
  // kGdprResultKeepMs; returns how many were removed.
  Result<size_t> RemoveResults(std::optional<uint32_t> project_id);
  std::string NewId() const;

 private:
  GdprTasks(std::string data_folder, std::shared_ptr<FileSystem> file_system,
            std::shared_ptr<Clock> clock);
  Status WriteLocked();
  std::string ResultPath(const std::string& id) const;

  std::string data_folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  mutable std::mutex mutex_;
  std::vector<GdprTask> tasks_;  // oldest first
};

std::string_view GdprKindName(GdprKind kind);  // "deletion", "retrieval"

}  // namespace minpanel::service
