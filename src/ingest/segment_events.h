// Segment's HTTP tracking API (@segment/analytics-node, analytics.js and
// every Segment library that posts to /v1/track, /v1/identify, /v1/page,
// /v1/screen, /v1/group, /v1/alias, /v1/batch or /v1/import) → the
// canonical RawEvent and RawProfileUpdate, the structures the Mixpanel and
// PostHog decoders produce.
//
// Every function is pure and thread-safe; the decoder reuses one JSON parser
// per thread, and a decoded batch never points into its input. Wire rules:
// docs/formats/segment-http.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "ingest/ingest.h"

namespace minpanel::ingest {

// Segment's own limits (its HTTP API documentation, and @segment/analytics-node
// 3.1.0's context-batch.js, which keeps below them and drops rather than
// splits): one message at most 32 KB of JSON, one request at most 500 KB.
// Both are answered 400 (never retried), as Segment answers them.
inline constexpr size_t kSegmentMessageBytesMax = 32 * 1024;
inline constexpr size_t kSegmentBatchBytesMax = 500 * 1024;
// messageId, the de-duplication id: any string up to this many bytes
// (analytics-node's "node-next-<ms>-<uuid>" is 60).
inline constexpr size_t kSegmentMessageIdBytesMax = 255;
// A batch holds at most kSegmentBatchBytesMax / kSegmentMessageBytesMin
// messages: the smallest valid message, {"type":"alias","userId":"u",
// "previousId":"p"} minified, is more than this many bytes.
inline constexpr size_t kSegmentMessageBytesMin = 16;

// The six Segment calls. A call's event name: track's own `event`;
// identify "$identify", page "$pageview", screen "$screen", group
// "$groupidentify", alias "$create_alias" (the names the PostHog routes
// store, so that one query reads both).
enum class SegmentCall : uint8_t { kTrack, kIdentify, kPage, kScreen, kGroup, kAlias };

// "track" → kTrack, …; also analytics.js's one-letter paths ("t", "i", "p",
// "s", "g", "a"). nullopt for anything else.
std::optional<SegmentCall> ParseSegmentCall(std::string_view type);
std::string_view SegmentCallName(SegmentCall call);  // "track", …

struct SegmentDecodeOptions {
  // Server receive time: the default event time, the reference of the
  // sentAt clock-skew correction and of "too far in the future".
  int64_t now_ms = 0;
  // The call a single-message route names (/v1/track: kTrack); nullopt for
  // /v1/batch and /v1/import, whose body is {"batch": [...]}.
  std::optional<SegmentCall> call;
  // The user of `Authorization: Basic` (the write key); empty: none.
  std::string_view basic_write_key;
};

// One decoded request. All of it or nothing is stored.
struct SegmentBatch {
  std::vector<RawEvent> events;                   // one per message, in request order
  std::vector<RawProfileUpdate> profile_updates;  // identify and group traits
  // The write key (Basic auth user, the body's or a message's writeKey,
  // all equal); "" when none was sent.
  std::string write_key;
  size_t records_total = 0;
};

// Decodes a Segment request body (JSON, after any gzip). A request is all
// or nothing: a bad message fails it with InvalidArgument naming the field
// (`batch[3].userId: ...`); a message over kSegmentMessageBytesMax or a body
// over kSegmentBatchBytesMax is ResourceExhausted naming the limit.
Result<SegmentBatch> DecodeSegment(std::string_view json, const SegmentDecodeOptions& options);

// Whether a body sent to the unversioned /batch, which PostHog owns too, is
// Segment's: a JSON object with a top-level `writeKey` and a `batch` array
// (PostHog's envelope carries `api_key` and never `writeKey`). Cheap when
// the body does not contain "writeKey" at all.
bool IsSegmentBatchBody(std::string_view json);

}  // namespace minpanel::ingest
