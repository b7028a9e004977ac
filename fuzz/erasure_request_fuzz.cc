// Fuzzes the body of an erasure or access request (service::
// ParseSubjectSelection, as POST /api/erase, POST /api/access-request and
// the GDPR API routes call it) and of a property purge (service::
// ParsePropertyPurge, POST /api/properties/purge) and of a who-could-read
// request (service::ParseWhoCouldReadRequest, POST
// /api/incident/who-could-read): any input is an error naming a field or a
// limit, or a request within the limits.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "service/service.h"

namespace {

void CheckPropertyPurge(std::string_view text) {
  using namespace minpanel;
  const auto request = service::ParsePropertyPurge(text);
  if (!request.ok()) {
    const StatusCode code = request.status().code();
    fuzz::Check(code == StatusCode::kInvalidArgument || code == StatusCode::kResourceExhausted,
                "a refusal is InvalidArgument or ResourceExhausted");
    fuzz::Check(!request.status().message().empty(), "a refusal says why");
    return;
  }
  fuzz::Check(!request->key.empty() && request->key.size() <= store::kDeletionPropertyKeyBytesMax,
              "the key within bounds");
  fuzz::Check(request->event_name.size() <= store::kDeletionEventNameBytesMax,
              "the event name within bounds");
  fuzz::Check(text.size() <= service::kPropertyPurgeBodyBytesMax, "the body within bounds");
}

void CheckWhoCouldRead(std::string_view text) {
  using namespace minpanel;
  const auto request = service::ParseWhoCouldReadRequest(text);
  if (!request.ok()) {
    const StatusCode code = request.status().code();
    fuzz::Check(code == StatusCode::kInvalidArgument || code == StatusCode::kResourceExhausted,
                "a refusal is InvalidArgument or ResourceExhausted");
    fuzz::Check(!request.status().message().empty(), "a refusal says why");
    return;
  }
  fuzz::Check(
      !request->distinct_id.empty() && request->distinct_id.size() <= service::kSubjectIdBytesMax,
      "the id within bounds");
  fuzz::Check(request->distinct_id.size() <= text.size(), "the id comes from the input");
  fuzz::Check(request->from_ms < request->to_ms, "a window that is not empty");
  fuzz::Check(text.size() <= service::kWhoCouldReadBodyBytesMax, "the body within bounds");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  constexpr size_t kIdsMax = 8;  // small, so that the limit is reached often
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckPropertyPurge(text);
  CheckWhoCouldRead(text);
  const auto selection = service::ParseSubjectSelection(text, kIdsMax, "kIdsMax");
  if (!selection.ok()) {
    const StatusCode code = selection.status().code();
    fuzz::Check(code == StatusCode::kInvalidArgument || code == StatusCode::kResourceExhausted,
                "a refusal is InvalidArgument or ResourceExhausted");
    fuzz::Check(!selection.status().message().empty(), "a refusal says why");
    return 0;
  }
  fuzz::Check(!selection->distinct_ids.empty(), "at least one id");
  fuzz::Check(selection->distinct_ids.size() <= kIdsMax, "at most the limit");
  for (const std::string& id : selection->distinct_ids) {
    fuzz::Check(!id.empty() && id.size() <= service::kSubjectIdBytesMax, "each id within bounds");
    fuzz::Check(id.size() <= size, "an id comes from the input");
  }
  return 0;
}
