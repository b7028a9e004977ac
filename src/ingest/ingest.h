// The ingest module: decodes each wire protocol into RawEvent and
// RawProfileUpdate, and defines each protocol's exact limits. It never
// touches storage and never applies the privacy policy.
//
// Every function here is pure (no shared state visible to callers) and
// thread-safe; the JSON decoders reuse one parser per thread, so a decoded
// result never points into the input. Wire rules are specified in
// docs/formats/mixpanel.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/core.h"

namespace minpanel::ingest {

// Limits on untrusted input. Over a limit the answer is ResourceExhausted
// (whole request) or a record error (one event), naming the limit.
inline constexpr size_t kTrackEventsMax = 50;         // events per /track request
inline constexpr size_t kImportEventsMax = 2000;      // events per /import request
inline constexpr size_t kProfileUpdatesMax = 2000;    // items per /engage or /groups request
inline constexpr size_t kPropertiesPerEventMax = 255;
inline constexpr size_t kPropertyKeyBytesMax = 255;
inline constexpr size_t kEventNameBytesMax = 255;
inline constexpr size_t kDistinctIdBytesMax = 255;
inline constexpr size_t kInsertIdBytesMax = 36;
// Longer strings are truncated (at a UTF-8 boundary), as Mixpanel truncates.
inline constexpr size_t kStringValueBytesMax = 8192;
inline constexpr size_t kListItemsMax = 255;
inline constexpr size_t kJsonDepthMax = 8;            // nesting levels in one event
inline constexpr size_t kPropertyNestingMax = 3;      // nested objects flattened with '.'
inline constexpr size_t kEventBytesMax = 1 << 20;     // one encoded event
inline constexpr size_t kFormFieldsMax = 1000;        // name=value pairs in a form or query

// Content-Encoding of a request body.
enum class ContentEncoding : uint8_t { kIdentity, kGzip, kDeflate };

// Parses a Content-Encoding header value ("gzip", "x-gzip", "deflate",
// "identity" or empty); anything else is InvalidArgument.
Result<ContentEncoding> ParseContentEncoding(std::string_view header);

// Decompresses a request body. Also detects gzip by its magic bytes when
// `encoding` is kIdentity. Fails with ResourceExhausted when the output would
// exceed `output_bytes_max` or `ratio_max` times the input (a bomb), and with
// InvalidArgument on a corrupt stream.
// Whether DecompressBody would change `body` (a coding, or gzip magic).
// When it would not, callers can use the body as it is, without a copy.
bool NeedsDecompression(std::string_view body, ContentEncoding encoding);

Result<std::string> DecompressBody(std::string_view body, ContentEncoding encoding,
                                   size_t output_bytes_max, size_t ratio_max);

// Parses application/x-www-form-urlencoded text or a query string into
// (name, value) pairs in order, percent-decoded, '+' decoded as space.
// InvalidArgument on a malformed percent escape; ResourceExhausted over
// kFormFieldsMax pairs.
Result<std::vector<std::pair<std::string, std::string>>> ParseForm(std::string_view text);

// The value of `name` in parsed pairs, or nullopt.
std::optional<std::string_view> FindFormValue(
    const std::vector<std::pair<std::string, std::string>>& pairs, std::string_view name);

// Extracts Mixpanel's JSON payload from a request: the `data` field of the
// query or of a form body (whatever the Content-Type says), or the body
// itself when it is raw JSON. A `data` value is JSON when it parses as JSON,
// else base64 (standard or URL alphabet, padding optional, spaces mapped back
// to '+' because mixpanel-node does not URL-encode). InvalidArgument names
// `data` when neither decoding works.
Result<std::string> ExtractMixpanelPayload(std::string_view query, std::string_view body);
// The same without copying a raw JSON body: the result views `body`, or
// `storage` when the payload had to be decoded into it.
Result<std::string_view> ExtractMixpanelPayload(std::string_view query, std::string_view body,
                                                std::string* storage);

// Which Mixpanel route a payload came to.
enum class MixpanelRoute : uint8_t { kTrack, kImport, kEngage, kGroups };

// Why one record of a batch was refused, in Mixpanel's failed_records shape.
struct RecordError {
  size_t index = 0;        // position in the batch
  std::string insert_id;   // the record's $insert_id, if it had one
  std::string field;       // e.g. "properties.time"
  std::string message;     // names the rule or limit
};

struct MixpanelEvents {
  std::vector<RawEvent> events;      // the valid records, in batch order
  std::vector<size_t> event_index;   // batch position of each valid record
  std::vector<std::string> tokens;   // properties.token of each valid record ("" if none)
  std::vector<RecordError> errors;   // the refused records
  size_t records_total = 0;
};

struct MixpanelProfiles {
  std::vector<RawProfileUpdate> updates;  // one per operation, in batch order
  std::vector<std::string> tokens;        // $token of each update
  std::vector<RecordError> errors;
  size_t records_total = 0;
};

struct DecodeOptions {
  MixpanelRoute route = MixpanelRoute::kTrack;
  // Server receive time: the default event time on /track, and the
  // reference for "too far in the future".
  int64_t now_ms = 0;
};

// Decodes a /track or /import payload (one event object or an array).
// Whole-request failures (malformed JSON, invalid UTF-8, too deep, more events
// than the route allows) return an error Status; per-record problems
// (missing event or distinct_id, bad time, blocked distinct_id, bad
// $insert_id, too many properties) land in `errors`. On /import the time is
// required; on /track it defaults to now_ms. Time is seconds or
// milliseconds (values above 1e11 are milliseconds).
Result<MixpanelEvents> DecodeMixpanelEvents(std::string_view json, const DecodeOptions& options);

// Decodes an /engage or /groups payload (one object or an array).
Result<MixpanelProfiles> DecodeMixpanelProfiles(std::string_view json,
                                                const DecodeOptions& options);

// Whether Mixpanel refuses `distinct_id` as a placeholder ("anon", "null",
// "undefined", "0", "-1", ...; case-insensitive).
bool IsBlockedDistinctId(std::string_view distinct_id);

}  // namespace minpanel::ingest
