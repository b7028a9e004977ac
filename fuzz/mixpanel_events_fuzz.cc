// Fuzzes DecodeMixpanelEvents. The first byte picks /track or /import.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  if (size == 0) {
    return 0;
  }
  ingest::DecodeOptions options;
  options.route = (data[0] & 1) != 0 ? ingest::MixpanelRoute::kImport
                                     : ingest::MixpanelRoute::kTrack;
  options.now_ms = fuzz::kDecodeNowMs;
  const std::string_view json(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto decoded = ingest::DecodeMixpanelEvents(json, options);
  if (!decoded.ok()) {
    fuzz::Check(!decoded.status().message().empty(), "error without a message");
    return 0;
  }
  fuzz::Check(decoded->events.size() + decoded->errors.size() == decoded->records_total,
              "every record is an event or an error");
  fuzz::Check(decoded->event_index.size() == decoded->events.size(), "event_index size");
  fuzz::Check(decoded->tokens.size() == decoded->events.size(), "tokens size");
  for (const RawEvent& event : decoded->events) {
    fuzz::CheckDecodedEvent(event, fuzz::kDecodeNowMs);
    fuzz::Check(!ingest::IsBlockedDistinctId(event.distinct_id), "blocked distinct_id");
    fuzz::Check(!event.insert_id || event.insert_id->size() <= ingest::kInsertIdBytesMax,
                "insert_id length");
  }
  for (const ingest::RecordError& error : decoded->errors) {
    fuzz::Check(error.index < decoded->records_total, "error index");
    fuzz::Check(!error.field.empty() && !error.message.empty(), "error names its field");
  }
  return 0;
}
