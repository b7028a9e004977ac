// PostHog capture requests (posthog-node, posthog-js and the PostHog HTTP
// API's /batch, /e, /i/v0/e and /capture forms) → the canonical RawEvent and
// RawProfileUpdate, the same structures the Mixpanel decoders produce.
//
// Every function is pure and thread-safe; the decoder reuses one JSON parser
// per thread, and a decoded batch never points into its input. Wire rules:
// docs/formats/posthog.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "ingest/ingest.h"

namespace minpanel::ingest {

// Events in one capture request. posthog-node sends at most 100 and halves
// its batch on a 413, so the refusal (ResourceExhausted) is one it recovers
// from; posthog-js flushes every 3 s.
inline constexpr size_t kPostHogEventsMax = 1000;
// Decoded JSON of one capture request (after gzip and base64).
inline constexpr size_t kPostHogPayloadBytesMax = 16 << 20;
// |offset| (ms before the server's clock) a legacy event may carry: 1 year.
inline constexpr int64_t kPostHogOffsetMsMax = 366LL * 24 * 3600 * 1000;

// Bounds for inflating a gzip body (the server's configured limits).
struct PostHogBodyLimits {
  size_t decompressed_bytes_max = 0;
  size_t ratio_max = 0;
};

// Finds the JSON of a capture request. `query` is the raw query string,
// `body` the body as received, `encoding` its Content-Encoding. In order:
// a gzip body (by the header, by `?compression=gzip-js`, or by its magic
// bytes whatever the headers say) is inflated within `limits`; then the JSON
// is `data` in the query, the body itself when it starts like JSON, or
// `data` in the body read as a form, whatever the Content-Type
// (`?compression=base64`); a `data` value is JSON or base64(JSON). With
// `?compression=lz64` (LZString base64, sent by posthog-js releases before
// 2021) the `data` field of the query or form body is decompressed, within
// `limits.decompressed_bytes_max`. The result views `body` or `storage`.
Result<std::string_view> ExtractPostHogPayload(std::string_view query, std::string_view body,
                                               ContentEncoding encoding,
                                               const PostHogBodyLimits& limits,
                                               std::string* storage);

struct PostHogDecodeOptions {
  // Server receive time: the default event time, the reference of the
  // sent_at clock-skew correction and of "too far in the future".
  int64_t now_ms = 0;
  // The request's client address: events without `$ip` take it unless
  // they say `$geoip_disable: true` (posthog-node's default, where the
  // peer is a server, not the person). Empty: none.
  std::string_view client_ip;
  // Capture V1 (posthog-node's /i/v1/analytics/events): the project token
  // from `Authorization: Bearer`, which any token in the body must equal,
  // and the library from `PostHog-Sdk-Info` ("posthog-node/5.70.0" gives
  // "posthog-node") for events without `$lib`. Empty: none.
  std::string_view token;
  std::string_view library;
};

// One decoded capture request. All of it or nothing is stored.
struct PostHogBatch {
  std::vector<RawEvent> events;                   // in request order
  std::vector<RawProfileUpdate> profile_updates;  // $set, $set_once, $unset, $group_set
  // The request's one project token (`api_key` or `token` of the body or
  // an event, or properties.token); "" when none was sent.
  std::string token;
  bool historical_migration = false;
  size_t records_total = 0;
};

// Decodes one capture payload: an event object, an array of events, or
// `{api_key, batch: [...], sent_at, historical_migration}` — or Capture
// V1's `{created_at, batch, historical_migration}`, whose events carry
// `options` (disable_skew_correction) and top-level session_id/window_id. A request is
// all or nothing: any bad record fails the whole request with
// InvalidArgument naming it (`batch[3].timestamp: ...`); more than
// kPostHogEventsMax events or kPostHogPayloadBytesMax bytes, or JSON nested
// deeper than kJsonDepthMax levels in one record, is ResourceExhausted.
Result<PostHogBatch> DecodePostHogEvents(std::string_view json,
                                         const PostHogDecodeOptions& options);

// Parses an ISO-8601 / RFC 3339 time as PostHog SDKs write it
// ("2026-11-26T09:24:18.507Z"; offsets ±HH:MM, ±HHMM, ±HH; no zone means
// UTC; a date alone is its midnight UTC) into ms since the epoch, fractions
// below 1 ms truncated. False when `text` is not such a time.
bool ParseIsoTimeMs(std::string_view text, int64_t* time_ms);

}  // namespace minpanel::ingest
