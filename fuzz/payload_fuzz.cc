// Fuzzes the whole Mixpanel request path: query and body (split at the first
// newline) → ExtractMixpanelPayload → DecodeMixpanelEvents.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string_view query = input.substr(0, newline);
  const std::string_view body =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  const auto payload = ingest::ExtractMixpanelPayload(query, body);
  if (!payload.ok()) {
    fuzz::Check(payload.status().message().rfind("data", 0) == 0 ||
                    payload.status().message().rfind("form", 0) == 0,
                "errors name data or form");
    return 0;
  }
  const auto events = ingest::DecodeMixpanelEvents(
      *payload, ingest::DecodeOptions{ingest::MixpanelRoute::kTrack, 1795685510000});
  if (events.ok()) {
    for (const RawEvent& event : events->events) {
      fuzz::CheckProperties(event.properties);
    }
  }
  return 0;
}
