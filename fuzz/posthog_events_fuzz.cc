// Fuzzes the whole PostHog capture path: the first byte picks the
// Content-Encoding (gzip or none) and whether the request comes from a
// client address; the rest is query and body, split at the first newline →
// ExtractPostHogPayload → DecodePostHogEvents. With bit 2 of the first byte
// the rest goes straight to the LZString decoder (?compression=lz64); bit 3
// adds Capture V1's Bearer token and PostHog-Sdk-Info.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "ingest/posthog_events.h"
#include "ingest/posthog_lz64.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  if (size == 0) {
    return 0;
  }
  const uint8_t mode = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((mode & 4) != 0) {
    constexpr size_t kOutputMax = 1 << 16;
    const auto text = ingest::internal::DecompressLz64(input, kOutputMax);
    if (text.ok()) {
      fuzz::Check(text->size() <= kOutputMax, "lz64 output limit");
      fuzz::Check(simdjson::validate_utf8(text->data(), text->size()), "lz64 output is UTF-8");
    } else {
      fuzz::Check(!text.status().message().empty(), "error without a message");
    }
    return 0;
  }
  const size_t newline = input.find('\n');
  const std::string_view query = input.substr(0, newline);
  const std::string_view body =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  ingest::PostHogBodyLimits limits;
  limits.decompressed_bytes_max = 1 << 20;
  limits.ratio_max = 200;
  std::string storage;
  const auto payload = ingest::ExtractPostHogPayload(
      query, body,
      (mode & 1) != 0 ? ingest::ContentEncoding::kGzip : ingest::ContentEncoding::kIdentity, limits,
      &storage);
  if (!payload.ok()) {
    fuzz::Check(!payload.status().message().empty(), "error without a message");
    return 0;
  }
  ingest::PostHogDecodeOptions options;
  options.now_ms = fuzz::kDecodeNowMs;
  options.client_ip = (mode & 2) != 0 ? "198.51.100.7" : "";
  if ((mode & 8) != 0) {  // Capture V1's headers
    options.token = "phc_bearer";
    options.library = "posthog-node/5.70.0";
  }
  const auto batch = ingest::DecodePostHogEvents(*payload, options);
  if (!batch.ok()) {
    fuzz::Check(!batch.status().message().empty(), "error without a message");
    return 0;
  }
  fuzz::Check(batch->events.size() == batch->records_total, "all or nothing");
  fuzz::Check(batch->records_total <= ingest::kPostHogEventsMax, "events per request");
  for (const RawEvent& event : batch->events) {
    fuzz::CheckDecodedEvent(event, fuzz::kDecodeNowMs);
    fuzz::Check(
        !event.distinct_id.empty() && event.distinct_id.size() <= ingest::kDistinctIdBytesMax,
        "distinct_id");
    fuzz::Check(!event.insert_id || (!event.insert_id->empty() &&
                                     event.insert_id->size() <= ingest::kInsertIdBytesMax),
                "insert_id length");
  }
  for (const RawProfileUpdate& update : batch->profile_updates) {
    fuzz::Check(!update.distinct_id.empty(), "profile subject");
    fuzz::Check(!update.properties.empty(), "profile updates carry properties");
    fuzz::CheckProperties(update.properties);
  }
  return 0;
}
