// Fuzzes Segment's HTTP tracking API decoder (docs/formats/segment-http.md):
// the first byte picks the route — bits 0-2 a single-message call (0-5:
// track, identify, page, screen, group, alias; 6-7: /v1/batch) — and bit 3
// a Basic auth write key; the rest is the JSON body → DecodeSegment, and
// IsSegmentBatchBody on the same bytes.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "ingest/segment_events.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  if (size == 0) {
    return 0;
  }
  const uint8_t mode = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  ingest::SegmentDecodeOptions options;
  options.now_ms = fuzz::kDecodeNowMs;
  if ((mode & 7) < 6) {
    options.call = static_cast<ingest::SegmentCall>(mode & 7);
  }
  options.basic_write_key = (mode & 8) != 0 ? "basic-write-key" : "";
  const bool segment_envelope = ingest::IsSegmentBatchBody(body);
  const auto batch = ingest::DecodeSegment(body, options);
  if (!batch.ok()) {
    const std::string message = batch.status().message();
    fuzz::Check(!message.empty(), "error without a message");
    // What the /batch sniffing calls Segment's envelope decodes as one.
    fuzz::Check(!segment_envelope || options.call.has_value() ||
                    (!message.starts_with("body: malformed JSON") &&
                     !message.starts_with("batch: required") &&
                     !message.starts_with("body: must be a JSON object")),
                "a Segment envelope by IsSegmentBatchBody is one");
    return 0;
  }
  fuzz::Check(batch->events.size() == batch->records_total, "all or nothing");
  fuzz::Check(body.size() <= ingest::kSegmentBatchBytesMax, "request limit");
  fuzz::Check(options.basic_write_key.empty() || batch->write_key == options.basic_write_key,
              "one write key");
  for (const RawEvent& event : batch->events) {
    fuzz::CheckDecodedEvent(event, fuzz::kDecodeNowMs);
    fuzz::Check(
        !event.distinct_id.empty() && event.distinct_id.size() <= ingest::kDistinctIdBytesMax,
        "distinct_id");
    fuzz::Check(!event.insert_id || (!event.insert_id->empty() &&
                                     event.insert_id->size() <= ingest::kSegmentMessageIdBytesMax),
                "messageId length");
    fuzz::Check(event.properties.size() <= ingest::kPropertiesPerEventMax, "properties per event");
  }
  for (const RawProfileUpdate& update : batch->profile_updates) {
    fuzz::Check(!update.distinct_id.empty(), "profile subject");
    fuzz::Check(!update.properties.empty(), "profile updates carry properties");
    fuzz::CheckProperties(update.properties);
  }
  return 0;
}
