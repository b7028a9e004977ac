// The `reason` of a large export (issue 6; docs/security.md, "Export
// reasons"): an export that may return more rows than
// `[limits] export_reason_rows` needs one, checked before the export starts
// and kept in its `export.start` audit record only.
//
// An export streams, so how many rows it returns is known only at its end;
// refusing it mid-stream would leave the client a cut file. Its size is
// therefore bounded before it starts, from the zone maps of the project's
// snapshot: the rows of every block whose time range meets the export's
// range (and, for an export of named subjects, whose subject range holds
// one of them), at most the rows of the asked-for event names in each
// segment, at most the export's `limit`. The bound errs high (deleted rows
// and rows of other subjects sharing a block count), never low.
#include <simdjson.h>

#include <algorithm>

#include "service/service.h"

namespace minpanel::service {
namespace {

// Whether a block holding subjects [first, last] may hold one of `sorted`.
bool HoldsAnySubject(const std::vector<Id128>& sorted, const Id128& first, const Id128& last) {
  const auto found = std::lower_bound(sorted.begin(), sorted.end(), first);
  return found != sorted.end() && *found <= last;
}

uint64_t SegmentBound(const store::SegmentReader& segment, const query::ExportRequest& request,
                      const std::vector<Id128>& subjects) {
  const store::SegmentSummary& summary = segment.summary();
  if (summary.time_max_ms < request.from_ms || summary.time_min_ms >= request.to_ms) {
    return 0;
  }
  uint64_t rows = 0;
  for (size_t block_idx = 0; block_idx < segment.block_count(); ++block_idx) {
    const store::SegmentBlockInfo& block = segment.block(block_idx);
    if (block.time_max_ms < request.from_ms || block.time_min_ms >= request.to_ms) {
      continue;
    }
    if (!subjects.empty() && !HoldsAnySubject(subjects, block.subject_first, block.subject_last)) {
      continue;
    }
    rows += block.row_count;
  }
  if (!request.event_names.empty()) {
    uint64_t named_rows = 0;
    for (const std::string& name : request.event_names) {
      if (const auto code = segment.FindEventName(name)) {
        named_rows += segment.event_names()[*code].row_count;
      }
    }
    rows = std::min(rows, named_rows);
  }
  return rows;
}

}  // namespace

Result<uint64_t> Service::EstimateExportRows(const Project& project, const ExportOptions& options) {
  MP_ASSIGN_OR_RETURN(const query::ExportRequest request, ExportRequestOf(project, options));
  std::vector<Id128> subjects;
  if (request.subject.has_value()) {
    subjects.push_back(*request.subject);
  }
  if (request.subjects.has_value()) {
    if (request.subjects->empty()) {
      return 0;  // an empty list exports nothing
    }
    subjects = *request.subjects;
  }
  std::sort(subjects.begin(), subjects.end());
  MP_ASSIGN_OR_RETURN(const store::Engine::SegmentSnapshot snapshot, engine_->Snapshot(project.id));
  uint64_t rows = 0;
  for (const auto& segment : snapshot) {
    rows += SegmentBound(*segment, request, subjects);
  }
  return request.limit == 0 ? rows : std::min(rows, request.limit);
}

Status CheckExportReasonText(std::string_view reason) {
  if (reason.size() > kExportReasonBytesMax) {
    return Status::InvalidArgument("reason: at most " + std::to_string(kExportReasonBytesMax) +
                                   " bytes (kExportReasonBytesMax)");
  }
  if (!simdjson::validate_utf8(reason.data(), reason.size())) {
    return Status::InvalidArgument("reason: must be UTF-8 text");
  }
  for (const char byte : reason) {
    const auto code = static_cast<unsigned char>(byte);
    if (code < 0x20 || code == 0x7f) {
      return Status::InvalidArgument("reason: control characters are not allowed");
    }
  }
  return Status::Ok();
}

Status Service::CheckExportReason(const Access& access, const ExportOptions& options) {
  MP_RETURN_IF_ERROR(CheckExportReasonText(options.reason));
  if (!options.reason.empty()) {
    std::vector<privacy::Detection> found;
    tools_->detectors.Scan(options.reason, &found);
    if (!found.empty()) {
      return Status::InvalidArgument(
          "reason: holds what looks like " + std::string(privacy::PiiKindName(found.front().kind)) +
          " data; the audit log keeps no personal data, say why without it");
    }
    return Status::Ok();
  }
  // The command line is the operator's own, holding the data folder.
  if (export_reason_rows_ == 0 || access.principal.key_id == "local") {
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(const uint64_t rows, EstimateExportRows(access.project, options));
  if (rows <= export_reason_rows_) {
    return Status::Ok();
  }
  return Status::InvalidArgument(
      "reason: this export may return up to " + std::to_string(rows) + " rows, more than the " +
      std::to_string(export_reason_rows_) +
      " (limits.export_reason_rows) an export may return without one; give reason= (at most " +
      std::to_string(kExportReasonBytesMax) + " bytes, no personal data) or a smaller limit=");
}

}  // namespace minpanel::service
