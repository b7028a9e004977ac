// Fuzzes ParseSavedItem (the body of POST/PUT /api/reports and
// /api/dashboards; docs/formats/dashboard-api.md): every accepted body is
// within the limits, and what the API shows of it (SavedItemJson) parses
// back to the same item.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "service/reports.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  using service::SavedKind;
  if (size == 0) {
    return 0;
  }
  // The first byte picks the kind, the rest is the body.
  const SavedKind kind = data[0] % 2 == 0 ? SavedKind::kReport : SavedKind::kDashboard;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto item = service::ParseSavedItem(kind, body);
  if (!item.ok()) {
    return 0;
  }
  fuzz::Check(!item->name.empty() && item->name.size() <= service::kSavedNameBytesMax, "name");
  fuzz::Check(item->state_json.size() <= service::kReportStateBytesMax, "state size");
  fuzz::Check(item->reports.size() <= service::kDashboardReportsMax, "reports count");
  if (kind == SavedKind::kReport) {
    fuzz::Check(item->view == "insights" || item->view == "funnels" || item->view == "retention",
                "view");
    fuzz::Check(!item->state_json.empty() && item->state_json.front() == '{', "state is an object");
  }
  const auto again = service::ParseSavedItem(kind, service::SavedItemJson(*item));
  fuzz::Check(again.ok(), "what the API shows parses back");
  fuzz::Check(again->name == item->name && again->view == item->view &&
                  again->state_json == item->state_json && again->reports == item->reports,
              "the same item");
  return 0;
}
