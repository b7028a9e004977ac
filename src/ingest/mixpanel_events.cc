// Mixpanel /track and /import payloads → RawEvent. Rules:
// docs/formats/mixpanel.md.
#include <algorithm>
#include <array>
#include <cctype>

#include "ingest/ingest.h"
#include "ingest/json_values.h"
#include "ingest/text_util.h"

namespace minpanel::ingest {
namespace {

using internal::IsNullOrAbsent;
using internal::Problem;
using internal::RecordProblem;
using simdjson::dom::element;
using simdjson::dom::element_type;

// Compared after trimming, case-insensitively; all entries are lowercase.
constexpr std::array<std::string_view, 18> kBlockedDistinctIds = {
    "00000000-0000-0000-0000-000000000000",
    "anon",
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "na",
    "undefined",
    "unknown",
    "<nil>",
    "0",
    "-1",
    "true",
    "false",
    "[]",
    "{}",
    "",
};
constexpr size_t kBlockedDistinctIdBytesMax = 36;

// Properties that Mixpanel treats as fields of the event, not free
// properties; each moves into its RawEvent field when it has the right type.
enum class SpecialKey : uint8_t {
  kNone,
  kToken,
  kDistinctId,
  kTime,
  kInsertId,
  kClientIp,
  kPageUrl,
  kReferrer,
  kLibrary,
};

// Dispatches on length first: this runs for every property of every event,
// and most keys then need no comparison at all.
SpecialKey ClassifyKey(std::string_view key) {
  switch (key.size()) {
    case 2:
      return key == "ip" ? SpecialKey::kClientIp : SpecialKey::kNone;
    case 3:
      return key == "$ip" ? SpecialKey::kClientIp : SpecialKey::kNone;
    case 4:
      return key == "time" ? SpecialKey::kTime : SpecialKey::kNone;
    case 5:
      return key == "token" ? SpecialKey::kToken : SpecialKey::kNone;
    case 6:
      return key == "mp_lib" ? SpecialKey::kLibrary : SpecialKey::kNone;
    case 9:
      return key == "$referrer" ? SpecialKey::kReferrer : SpecialKey::kNone;
    case 10:
      return key == "$insert_id" ? SpecialKey::kInsertId : SpecialKey::kNone;
    case 11:
      return key == "distinct_id" ? SpecialKey::kDistinctId : SpecialKey::kNone;
    case 12:
      return key == "$current_url" ? SpecialKey::kPageUrl : SpecialKey::kNone;
    default:
      return SpecialKey::kNone;
  }
}

// The special properties of one event, read after the loop so that their
// checks run in a fixed order whatever the client's key order.
struct EventFields {
  std::optional<element> distinct_id;
  std::optional<element> time;
  std::optional<element> insert_id;
};

// Moves a string context property into its field; other types stay
// ordinary properties. Returns whether the property was consumed.
bool TakeContextString(element value, std::string* field) {
  if (value.type() != element_type::STRING) {
    return false;
  }
  field->assign(value.get_string().value_unsafe());
  return true;
}

bool TakeSpecial(SpecialKey special, element value, RawEvent* event, std::string* token,
                 EventFields* fields) {
  switch (special) {
    case SpecialKey::kNone:
      return false;
    case SpecialKey::kToken:
      // The token authenticates the project; a non-string one is no token.
      token->assign(value.type() == element_type::STRING ? value.get_string().value_unsafe()
                                                         : std::string_view());
      return true;
    case SpecialKey::kDistinctId:
      fields->distinct_id = value;
      return true;
    case SpecialKey::kTime:
      fields->time = value;
      return true;
    case SpecialKey::kInsertId:
      fields->insert_id = value;
      return true;
    case SpecialKey::kClientIp:
      return TakeContextString(value, &event->client_ip);
    case SpecialKey::kPageUrl:
      return TakeContextString(value, &event->page_url);
    case SpecialKey::kReferrer:
      return TakeContextString(value, &event->referrer);
    case SpecialKey::kLibrary:
      return TakeContextString(value, &event->library);
  }
  return false;
}

bool IsInsertIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

Problem ReadInsertId(element value, RawEvent* event) {
  const std::string_view field = "properties.$insert_id";
  const std::string_view rule = "must be 1 to 36 characters of [A-Za-z0-9-] (kInsertIdBytesMax)";
  if (value.type() != element_type::STRING) {
    return RecordProblem{std::string(field), std::string(rule)};
  }
  const std::string_view text = value.get_string().value_unsafe();
  if (text.empty() || text.size() > kInsertIdBytesMax ||
      !std::all_of(text.begin(), text.end(), IsInsertIdChar)) {
    return RecordProblem{std::string(field), std::string(rule)};
  }
  event->insert_id.emplace(text);
  return std::nullopt;
}

Problem ReadEventName(std::optional<element> name, RawEvent* event) {
  if (IsNullOrAbsent(name)) {
    return RecordProblem{"event", "required"};
  }
  if (name->type() != element_type::STRING) {
    return RecordProblem{"event", "must be a string"};
  }
  const std::string_view text = name->get_string().value_unsafe();
  if (text.empty()) {
    return RecordProblem{"event", "must not be empty"};
  }
  if (text.size() > kEventNameBytesMax) {
    return RecordProblem{"event", std::to_string(text.size()) + " bytes, over the limit of " +
                                      std::to_string(kEventNameBytesMax) +
                                      " (kEventNameBytesMax)"};
  }
  event->name.assign(text);
  return std::nullopt;
}

Problem ReadProperties(simdjson::dom::object properties, RawEvent* event, std::string* token,
                       EventFields* fields) {
  event->properties.reserve(properties.size());
  internal::PropertyWriter writer(&event->properties);
  for (const auto [key, value] : properties) {
    if (TakeSpecial(ClassifyKey(key), value, event, token, fields)) {
      continue;
    }
    if (Problem problem = writer.Append(key, value)) {
      return problem;
    }
  }
  writer.Finish();
  return std::nullopt;
}

Problem ReadEventFields(const EventFields& fields, const DecodeOptions& options,
                        RawEvent* event) {
  if (IsNullOrAbsent(fields.distinct_id)) {
    return RecordProblem{"properties.distinct_id", "required"};
  }
  if (Problem problem = internal::ReadDistinctId(*fields.distinct_id, "properties.distinct_id",
                                                 true, &event->distinct_id)) {
    return problem;
  }
  if (IsNullOrAbsent(fields.time)) {
    if (options.route == MixpanelRoute::kImport) {
      return RecordProblem{"properties.time", "required on /import"};
    }
    event->time_ms = options.now_ms;
    event->arrival_time = true;
  } else if (Problem problem = internal::ReadTimeMs(*fields.time, "properties.time",
                                                    options.now_ms, &event->time_ms)) {
    return problem;
  }
  if (!IsNullOrAbsent(fields.insert_id)) {
    return ReadInsertId(*fields.insert_id, event);
  }
  return std::nullopt;
}

Problem DecodeEvent(element record, const DecodeOptions& options, RawEvent* event,
                    std::string* token) {
  if (record.type() != element_type::OBJECT) {
    return RecordProblem{"record", "each record must be a JSON object"};
  }
  std::optional<element> name;
  std::optional<element> properties;
  // A named object: iterating the temporary result would dangle.
  const simdjson::dom::object members = record.get_object().value_unsafe();
  for (const auto [key, value] : members) {
    if (key == "event") {
      name = value;
    } else if (key == "properties") {
      properties = value;
    }
  }
  if (Problem problem = ReadEventName(name, event)) {
    return problem;
  }
  EventFields fields;
  if (!IsNullOrAbsent(properties)) {
    if (properties->type() != element_type::OBJECT) {
      return RecordProblem{"properties", "must be a JSON object"};
    }
    if (Problem problem =
            ReadProperties(properties->get_object().value_unsafe(), event, token, &fields)) {
      return problem;
    }
  }
  return ReadEventFields(fields, options, event);
}

// The record's $insert_id echoed in its error, as Mixpanel's failed_records
// does; only a well-formed prefix is echoed.
std::string InsertIdForError(element record) {
  element insert_id;
  if (record["properties"]["$insert_id"].get(insert_id) != simdjson::SUCCESS ||
      insert_id.type() != element_type::STRING) {
    return std::string();
  }
  const std::string_view text = insert_id.get_string().value_unsafe();
  return std::string(internal::Utf8Prefix(text, kInsertIdBytesMax));
}

void DecodeRecord(element record, size_t record_idx, const DecodeOptions& options,
                  MixpanelEvents* result) {
  RawEvent& event = result->events.emplace_back();
  std::string token;
  if (Problem problem = DecodeEvent(record, options, &event, &token)) {
    result->events.pop_back();
    result->errors.push_back(RecordError{record_idx, InsertIdForError(record),
                                         std::move(problem->field),
                                         std::move(problem->message)});
    return;
  }
  result->event_index.push_back(record_idx);
  result->tokens.push_back(std::move(token));
}

}  // namespace

bool IsBlockedDistinctId(std::string_view distinct_id) {
  const std::string_view trimmed = internal::TrimAsciiWhitespace(distinct_id);
  if (trimmed.size() > kBlockedDistinctIdBytesMax) {
    return false;
  }
  std::array<char, kBlockedDistinctIdBytesMax> lower{};
  for (size_t char_idx = 0; char_idx < trimmed.size(); ++char_idx) {
    lower[char_idx] =
        static_cast<char>(std::tolower(static_cast<unsigned char>(trimmed[char_idx])));
  }
  const std::string_view folded(lower.data(), trimmed.size());
  return std::find(kBlockedDistinctIds.begin(), kBlockedDistinctIds.end(), folded) !=
         kBlockedDistinctIds.end();
}

Result<MixpanelEvents> DecodeMixpanelEvents(std::string_view json, const DecodeOptions& options) {
  if (options.route != MixpanelRoute::kTrack && options.route != MixpanelRoute::kImport) {
    return Status::InvalidArgument("route: events come only to /track and /import");
  }
  MP_ASSIGN_OR_RETURN(const element root, internal::ParseJson(json));
  MixpanelEvents result;
  if (root.type() == element_type::OBJECT) {
    result.records_total = 1;
    DecodeRecord(root, 0, options, &result);
    return result;
  }
  if (root.type() != element_type::ARRAY) {
    return Status::InvalidArgument("data: must be a JSON object or array");
  }
  const simdjson::dom::array records = root.get_array().value_unsafe();
  const bool is_track = options.route == MixpanelRoute::kTrack;
  const size_t records_max = is_track ? kTrackEventsMax : kImportEventsMax;
  const size_t record_count = records.size();
  if (record_count > records_max) {
    return Status::ResourceExhausted(
        "batch: " + std::to_string(record_count) + " events, over the limit of " +
        std::to_string(records_max) + (is_track ? " per /track request" : " per /import request"));
  }
  result.records_total = record_count;
  result.events.reserve(record_count);
  result.event_index.reserve(record_count);
  result.tokens.reserve(record_count);
  size_t record_idx = 0;
  for (const element record : records) {
    DecodeRecord(record, record_idx++, options, &result);
  }
  return result;
}

}  // namespace minpanel::ingest
