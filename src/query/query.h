// The query module: reads what the store holds and shapes it for clients.
// Today: the raw export in Mixpanel's JSON-lines shape. Segmentation,
// funnels and retention come later behind the same module.
//
// Functions are thread-safe as far as the Engine they are given is.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "store/store.h"

namespace minpanel::query {

// Export output is handed to the sink in chunks of about this many bytes.
inline constexpr size_t kExportChunkBytes = 64 * 1024;
inline constexpr size_t kExportEventNamesMax = 100;

struct ExportRequest {
  uint32_t project_id = 0;
  int64_t from_ms = 0;  // inclusive
  int64_t to_ms = 0;    // exclusive
  std::vector<std::string> event_names;  // empty: every event
  std::optional<Id128> subject;
  uint64_t limit = 0;  // 0: no limit
};

struct ExportSummary {
  uint64_t rows = 0;
  uint64_t bytes = 0;
};

// Streams the matching events as JSON lines, Mixpanel's export shape:
//   {"event":NAME,"properties":{"time":SECONDS,"distinct_id":"psn_…",
//    "$insert_id":"…", …properties}}
// The sink returns false to stop (e.g. the client went away).
Result<ExportSummary> ExportJsonLines(store::Engine& engine, const ExportRequest& request,
                                      const std::function<bool(std::string_view)>& sink);

// Appends one event as a JSON line (with the trailing newline) to `out`.
void AppendEventJsonLine(const Event& event, std::string* out);

// Appends `text` as a JSON string literal, escaping as RFC 8259 requires.
void AppendJsonString(std::string_view text, std::string* out);

}  // namespace minpanel::query
