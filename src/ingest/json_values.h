// JSON → core values for the Mixpanel decoders (internal to ingest): the
// per-thread parser, property conversion and flattening, and the shared
// rules for times and distinct ids. Every function is thread-safe; an
// element returned by ParseJson is valid until the next ParseJson call on
// the same thread.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/core.h"
#include "ingest/ingest.h"

namespace minpanel::ingest::internal {

// Parses a whole payload with this thread's reusable parser. The nesting
// limit is kJsonDepthMax per record (one more level when the root is a batch
// array). Errors: InvalidArgument for malformed JSON or UTF-8,
// ResourceExhausted for too deep a document.
Result<simdjson::dom::element> ParseJson(std::string_view json);

// What a decoder's JSON errors say: the field blamed ("body", "data", "p")
// and what one record is called in the depth error ("event", "message";
// empty: not named).
struct JsonErrorNames {
  std::string_view field;
  std::string_view record;
};

// Parses `json` with `parser`, (re)allocated as needed: simdjson fixes the
// depth limit at allocation, so `depth_max` is kJsonDepthMax plus the levels
// of envelope above one record (simdjson counts a scalar inside N containers
// as depth N + 1). A parser grown past 4 MiB is released before a smaller
// document, so one huge batch does not pin its memory. Errors as ParseJson.
Result<simdjson::dom::element> ParseWithParser(std::unique_ptr<simdjson::dom::parser>& parser,
                                               size_t depth_max, std::string_view json,
                                               const JsonErrorNames& names);

// ParseWithParser with this thread's parser for `kEnvelopeLevels` and
// `kSlot`: a document stays valid until its parser parses the next one, so a
// decoder that parses a second document while the first is in use (a JSON
// string inside a body) takes another slot.
template <size_t kEnvelopeLevels, size_t kSlot = 0>
Result<simdjson::dom::element> ParseWithThreadParser(std::string_view json,
                                                     const JsonErrorNames& names) {
  thread_local std::unique_ptr<simdjson::dom::parser> parser;
  return ParseWithParser(parser, kJsonDepthMax + kEnvelopeLevels, json, names);
}

// Why one record is refused: the field at fault and the rule it broke.
struct RecordProblem {
  std::string field;
  std::string message;
};
using Problem = std::optional<RecordProblem>;

// Appends JSON members to a Properties list the way Mixpanel stores them:
// scalars as typed values, arrays as lists of strings, objects flattened
// with '.' up to kPropertyNestingMax levels (deeper ones as minified JSON).
// Enforces the per-record limits on keys, property count, list length and
// total bytes.
class PropertyWriter {
 public:
  // `out` must outlive the writer.
  explicit PropertyWriter(Properties* out) : out_(out) {}

  Problem Append(std::string_view key, simdjson::dom::element value);
  // Resolves duplicate keys as JavaScript does: the first position keeps
  // the last value. Call once after the last Append.
  void Finish();

 private:
  Problem AppendLeaf(std::string_view key, simdjson::dom::element value);
  Problem AppendFlattened(std::string_view key, simdjson::dom::object object);
  Problem ConvertList(std::string_view key, simdjson::dom::array array, Value* out);
  std::string ItemText(simdjson::dom::element item);

  Properties* out_;
  size_t record_bytes_ = 0;
  std::string path_;
};

// A member that is missing or JSON null: the protocols treat both alike.
inline bool IsNullOrAbsent(const std::optional<simdjson::dom::element>& value) {
  return !value.has_value() || value->type() == simdjson::dom::element_type::NULL_VALUE;
}

// Whether the object has a member of that name, whatever its value.
inline bool HasMember(simdjson::dom::object object, std::string_view name) {
  for (const auto [key, value] : object) {
    if (key == name) {
      return true;
    }
  }
  return false;
}

// The decimal text of a JSON number (shortest round-trip form for doubles).
std::string NumberText(simdjson::dom::element number);

// Reads a Mixpanel time: seconds (possibly fractional), or milliseconds when
// above 1e11, bounded by kEventTimeMinMs and now_ms + kEventTimeFutureMaxMs.
Problem ReadTimeMs(simdjson::dom::element value, std::string_view field, int64_t now_ms,
                   int64_t* time_ms);

// Reads an id that may be a string or a number (converted to its text),
// refusing ids over kDistinctIdBytesMax; `check_blocklist` also refuses
// placeholder ids (IsBlockedDistinctId).
Problem ReadDistinctId(simdjson::dom::element value, std::string_view field,
                       bool check_blocklist, std::string* out);

}  // namespace minpanel::ingest::internal
