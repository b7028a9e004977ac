// PostHog capture requests → RawEvent and RawProfileUpdate. Rules:
// docs/formats/posthog.md.
#include "ingest/posthog_events.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

#include "ingest/json_values.h"
#include "ingest/posthog_lz64.h"
#include "ingest/text_util.h"

namespace minpanel::ingest {
namespace {

using internal::HasMember;
using internal::IsNullOrAbsent;
using internal::Problem;
using internal::RecordProblem;
using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::string_view kGroupsPrefix = "$groups.";
constexpr std::string_view kTimeRule = "must be an ISO-8601 time such as 2026-11-26T09:24:18.507Z";

// A record sits inside the envelope object and its batch array.
Result<element> ParsePayload(std::string_view json) {
  return internal::ParseWithThreadParser<3>(json, {"body", "event"});
}

bool IsTrue(const std::optional<element>& value) {
  return value.has_value() && value->type() == element_type::BOOL &&
         value->get_bool().value_unsafe();
}

// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t year, int64_t month, int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t year_of_era = year - era * 400;
  const int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

bool IsLeapYear(int64_t year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int64_t DaysInMonth(int64_t year, int64_t month) {
  constexpr std::array<int64_t, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[static_cast<size_t>(month - 1)];
}

// Reads `count` decimal digits at `*pos`, advancing it.
bool ReadDigits(std::string_view text, size_t* pos, size_t count, int64_t* value) {
  if (text.size() - *pos < count) {
    return false;
  }
  int64_t result = 0;
  for (size_t digit_idx = 0; digit_idx < count; ++digit_idx) {
    const char c = text[*pos + digit_idx];
    if (c < '0' || c > '9') {
      return false;
    }
    result = result * 10 + (c - '0');
  }
  *pos += count;
  *value = result;
  return true;
}

bool ReadSeparator(std::string_view text, size_t* pos, char separator) {
  if (*pos >= text.size() || text[*pos] != separator) {
    return false;
  }
  ++*pos;
  return true;
}

// The zone suffix at `pos` (to the end of the text) as minutes east of UTC.
bool ReadZone(std::string_view text, size_t pos, int64_t* offset_minutes) {
  *offset_minutes = 0;
  if (pos == text.size()) {
    return true;  // no zone: UTC, as PostHog reads it
  }
  if (text[pos] == 'Z' || text[pos] == 'z') {
    return pos + 1 == text.size();
  }
  if (text[pos] != '+' && text[pos] != '-') {
    return false;
  }
  const int64_t sign = text[pos] == '-' ? -1 : 1;
  ++pos;
  int64_t hours = 0;
  int64_t minutes = 0;
  if (!ReadDigits(text, &pos, 2, &hours)) {
    return false;
  }
  if (pos < text.size()) {
    ReadSeparator(text, &pos, ':');
    if (!ReadDigits(text, &pos, 2, &minutes)) {
      return false;
    }
  }
  if (pos != text.size() || hours > 23 || minutes > 59) {
    return false;
  }
  *offset_minutes = sign * (hours * 60 + minutes);
  return true;
}

// Reads "HH:MM[:SS[.fraction]]" into ms of the day; leaves `*pos` after it.
bool ReadClock(std::string_view text, size_t* pos, int64_t* day_ms) {
  int64_t hour = 0;
  int64_t minute = 0;
  int64_t second = 0;
  int64_t millis = 0;
  if (!ReadDigits(text, pos, 2, &hour) || !ReadSeparator(text, pos, ':') ||
      !ReadDigits(text, pos, 2, &minute)) {
    return false;
  }
  if (ReadSeparator(text, pos, ':')) {
    if (!ReadDigits(text, pos, 2, &second)) {
      return false;
    }
    if (*pos < text.size() && (text[*pos] == '.' || text[*pos] == ',')) {
      ++*pos;
      size_t digits = 0;
      while (*pos < text.size() && text[*pos] >= '0' && text[*pos] <= '9') {
        if (digits < 3) {
          millis = millis * 10 + (text[*pos] - '0');
        }
        ++digits;
        ++*pos;
      }
      if (digits == 0 || digits > 9) {
        return false;
      }
      for (size_t pad = digits; pad < 3; ++pad) {
        millis *= 10;
      }
    }
  }
  // A leap second (:60) is read as the last millisecond of its minute.
  if (hour > 23 || minute > 59 || second > 60) {
    return false;
  }
  *day_ms = ((hour * 60 + minute) * 60 + std::min<int64_t>(second, 59)) * 1000 +
            (second == 60 ? 999 : millis);
  return true;
}

// The envelope `{api_key, batch, sent_at, historical_migration}`.
struct Envelope {
  std::optional<int64_t> sent_at_ms;
};

// The members of one event object that matter.
struct EventMembers {
  std::optional<element> name;
  std::optional<element> distinct_id;
  std::optional<element> properties;
  std::optional<element> timestamp;
  std::optional<element> offset;
  std::optional<element> uuid;
  std::optional<element> set;
  std::optional<element> set_once;
  std::optional<element> unset;
  std::optional<element> api_key;
  std::optional<element> token;
  // Capture V1: {"disable_skew_correction": bool, ...} and the session's
  // ids, which V1 moves out of the properties.
  std::optional<element> options;
  std::optional<element> session_id;
  std::optional<element> window_id;
};

// The properties that are fields of the event rather than free
// properties, or that the decoder reads (and keeps) to decide something.
struct SpecialProperties {
  std::optional<element> distinct_id;
  std::optional<element> insert_id;
  std::optional<element> token;
  std::optional<element> set;
  std::optional<element> set_once;
  std::optional<element> unset;
  std::optional<element> group_set;
  std::optional<element> group_key;
  std::optional<element> group_type;
  std::optional<element> geoip_disable;
  std::optional<element> ignore_sent_at;
};

EventMembers ReadMembers(simdjson::dom::object object) {
  EventMembers members;
  for (const auto [key, value] : object) {
    if (key == "event") {
      members.name = value;
    } else if (key == "distinct_id") {
      members.distinct_id = value;
    } else if (key == "properties") {
      members.properties = value;
    } else if (key == "timestamp") {
      members.timestamp = value;
    } else if (key == "offset") {
      members.offset = value;
    } else if (key == "uuid") {
      members.uuid = value;
    } else if (key == "$set") {
      members.set = value;
    } else if (key == "$set_once") {
      members.set_once = value;
    } else if (key == "$unset") {
      members.unset = value;
    } else if (key == "api_key") {
      members.api_key = value;
    } else if (key == "token") {
      members.token = value;
    } else if (key == "options") {
      members.options = value;
    } else if (key == "session_id") {
      members.session_id = value;
    } else if (key == "window_id") {
      members.window_id = value;
    }
  }
  return members;
}

// Capture V1's `options.disable_skew_correction`, its $ignore_sent_at.
bool DisablesSkewCorrection(const std::optional<element>& options) {
  if (IsNullOrAbsent(options) || options->type() != element_type::OBJECT) {
    return false;
  }
  element value;
  return options->get_object().value_unsafe()["disable_skew_correction"].get(value) ==
             simdjson::SUCCESS &&
         value.type() == element_type::BOOL && value.get_bool().value_unsafe();
}

// Moves a string context property into its field; other types stay
// ordinary properties. Returns whether the property was consumed.
bool TakeContextString(element value, std::string* field) {
  if (value.type() != element_type::STRING) {
    return false;
  }
  field->assign(value.get_string().value_unsafe());
  return true;
}

// Sorts one property: into a RawEvent field, into `special`, or (false)
// into the free properties. `$group_type`, `$geoip_disable` and
// `$ignore_sent_at` are read and kept.
bool TakeSpecial(std::string_view key, element value, RawEvent* event, SpecialProperties* special) {
  if (key.empty() || (key.front() != '$' && key != "token" && key != "distinct_id")) {
    return false;
  }
  if (key == "token") {
    special->token = value;
  } else if (key == "distinct_id") {
    special->distinct_id = value;
  } else if (key == "$ip") {
    return TakeContextString(value, &event->client_ip);
  } else if (key == "$current_url") {
    return TakeContextString(value, &event->page_url);
  } else if (key == "$referrer") {
    return TakeContextString(value, &event->referrer);
  } else if (key == "$lib") {
    return TakeContextString(value, &event->library);
  } else if (key == "$raw_user_agent") {
    return TakeContextString(value, &event->user_agent);
  } else if (key == "$insert_id") {
    special->insert_id = value;
  } else if (key == "$set") {
    special->set = value;
  } else if (key == "$set_once") {
    special->set_once = value;
  } else if (key == "$unset") {
    special->unset = value;
  } else if (key == "$group_set") {
    special->group_set = value;
  } else if (key == "$group_key") {
    special->group_key = value;
  } else if (key == "$group_type") {
    special->group_type = value;
    return false;
  } else if (key == "$geoip_disable") {
    special->geoip_disable = value;
    return false;
  } else if (key == "$ignore_sent_at") {
    special->ignore_sent_at = value;
    return false;
  } else {
    return false;
  }
  return true;
}

// Adds a token the request carries; all must be the same.
Problem AgreeToken(const std::optional<element>& value, std::string_view field,
                   std::string* token) {
  if (IsNullOrAbsent(value)) {
    return std::nullopt;
  }
  if (value->type() != element_type::STRING) {
    return RecordProblem{std::string(field), "must be a string (the project token)"};
  }
  const std::string_view text = value->get_string().value_unsafe();
  if (text.empty()) {
    return std::nullopt;
  }
  if (token->empty()) {
    token->assign(text);
  } else if (*token != text) {
    return RecordProblem{std::string(field), "a request must carry one project token"};
  }
  return std::nullopt;
}

Problem ReadEventName(const std::optional<element>& name, RawEvent* event) {
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
                                      std::to_string(kEventNameBytesMax) + " (kEventNameBytesMax)"};
  }
  event->name.assign(text);
  return std::nullopt;
}

bool IsInsertIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

// `uuid`, else properties.$insert_id: the de-duplication id.
Problem ReadInsertId(const std::optional<element>& uuid, const std::optional<element>& insert_id,
                     RawEvent* event) {
  const bool has_uuid = !IsNullOrAbsent(uuid);
  if (!has_uuid && IsNullOrAbsent(insert_id)) {
    return std::nullopt;
  }
  const element value = has_uuid ? *uuid : *insert_id;
  const std::string field = has_uuid ? "uuid" : "properties.$insert_id";
  const std::string rule = "must be 1 to 36 characters of [A-Za-z0-9-] (kInsertIdBytesMax)";
  if (value.type() != element_type::STRING) {
    return RecordProblem{field, rule};
  }
  const std::string_view text = value.get_string().value_unsafe();
  if (text.empty() || text.size() > kInsertIdBytesMax ||
      !std::all_of(text.begin(), text.end(), IsInsertIdChar)) {
    return RecordProblem{field, rule};
  }
  event->insert_id.emplace(text);
  return std::nullopt;
}

Problem ReadSubject(const EventMembers& members, const SpecialProperties& special,
                    RawEvent* event) {
  const bool top_level = !IsNullOrAbsent(members.distinct_id);
  if (!top_level && IsNullOrAbsent(special.distinct_id)) {
    return RecordProblem{"distinct_id", "required (at the top of the event or in properties)"};
  }
  const std::string_view field = top_level ? "distinct_id" : "properties.distinct_id";
  // PostHog stores events of placeholder ids ("anonymous", …) and only
  // refuses to merge on them, so there is no blocklist here.
  if (Problem problem =
          internal::ReadDistinctId(top_level ? *members.distinct_id : *special.distinct_id, field,
                                   false, &event->distinct_id)) {
    return problem;
  }
  if (internal::TrimAsciiWhitespace(event->distinct_id).empty()) {
    return RecordProblem{std::string(field), "must not be empty"};
  }
  return std::nullopt;
}

Problem CheckTimeRange(int64_t time_ms, std::string_view field, int64_t now_ms) {
  if (time_ms < kEventTimeMinMs) {
    return RecordProblem{std::string(field), "before 1971-01-01 (kEventTimeMinMs)"};
  }
  if (time_ms > now_ms + kEventTimeFutureMaxMs) {
    return RecordProblem{std::string(field), "more than " +
                                                 std::to_string(kEventTimeFutureMaxMs / 1000) +
                                                 " s in the future (kEventTimeFutureMaxMs)"};
  }
  return std::nullopt;
}

// PostHog's rule: with the body's sent_at, the client clock's skew is
// removed: time = now - (sent_at - timestamp). Without it the timestamp is
// taken as is; a legacy `offset` is ms before now; nothing at all is now.
Problem ReadTime(const EventMembers& members, const SpecialProperties& special,
                 const Envelope& envelope, int64_t now_ms, RawEvent* event) {
  if (!IsNullOrAbsent(members.timestamp)) {
    int64_t timestamp_ms = 0;
    if (members.timestamp->type() != element_type::STRING ||
        !ParseIsoTimeMs(members.timestamp->get_string().value_unsafe(), &timestamp_ms)) {
      return RecordProblem{"timestamp", std::string(kTimeRule)};
    }
    const bool correct_skew = envelope.sent_at_ms.has_value() && !IsTrue(special.ignore_sent_at) &&
                              !DisablesSkewCorrection(members.options);
    event->time_ms = correct_skew ? now_ms - (*envelope.sent_at_ms - timestamp_ms) : timestamp_ms;
    return CheckTimeRange(event->time_ms, "timestamp", now_ms);
  }
  if (!IsNullOrAbsent(members.offset)) {
    int64_t offset_ms = 0;
    if (members.offset->get_int64().get(offset_ms) != simdjson::SUCCESS ||
        offset_ms > kPostHogOffsetMsMax || offset_ms < -kPostHogOffsetMsMax) {
      return RecordProblem{"offset", "must be an integer of ms, at most " +
                                         std::to_string(kPostHogOffsetMsMax) +
                                         " either way (kPostHogOffsetMsMax)"};
    }
    event->time_ms = now_ms - offset_ms;
    return CheckTimeRange(event->time_ms, "offset", now_ms);
  }
  event->time_ms = now_ms;
  event->arrival_time = true;
  return std::nullopt;
}

// The field of a PropertyWriter problem inside a profile operation:
// "properties.x" becomes "<container>.x".
RecordProblem Reparent(RecordProblem problem, std::string_view container) {
  const std::string_view inner = problem.field;
  constexpr std::string_view kProperties = "properties";
  problem.field = std::string(container) + std::string(inner.starts_with(kProperties)
                                                           ? inner.substr(kProperties.size())
                                                           : std::string_view());
  return problem;
}

// Appends one profile update of `operation` from `value` (an object, or for
// $unset an array of names) when it carries anything.
Problem AppendUpdate(ProfileOperation operation, const std::optional<element>& value,
                     std::string_view field, const RawProfileUpdate& base,
                     std::vector<RawProfileUpdate>* updates) {
  if (IsNullOrAbsent(value)) {
    return std::nullopt;
  }
  RawProfileUpdate update;
  update.distinct_id = base.distinct_id;
  update.group_key = base.group_key;
  update.time_ms = base.time_ms;
  update.client_ip = base.client_ip;
  update.operation = operation;
  if (operation == ProfileOperation::kUnset) {
    if (value->type() != element_type::ARRAY) {
      return RecordProblem{std::string(field), "must be an array of property names"};
    }
    const simdjson::dom::array names = value->get_array().value_unsafe();
    if (names.size() > kPropertiesPerEventMax) {
      return RecordProblem{std::string(field), "more than " +
                                                   std::to_string(kPropertiesPerEventMax) +
                                                   " names (kPropertiesPerEventMax)"};
    }
    for (const element name : names) {
      std::string_view text;
      if (name.get_string().get(text) != simdjson::SUCCESS || text.empty() ||
          text.size() > kPropertyKeyBytesMax) {
        return RecordProblem{std::string(field), "each name must be a string of 1 to " +
                                                     std::to_string(kPropertyKeyBytesMax) +
                                                     " bytes (kPropertyKeyBytesMax)"};
      }
      update.properties.push_back(Property{std::string(text), Value::Null()});
    }
  } else {
    if (value->type() != element_type::OBJECT) {
      return RecordProblem{std::string(field), "must be a JSON object"};
    }
    const simdjson::dom::object object = value->get_object().value_unsafe();
    update.properties.reserve(object.size());
    internal::PropertyWriter writer(&update.properties);
    for (const auto [key, member] : object) {
      if (Problem problem = writer.Append(key, member)) {
        return Reparent(std::move(*problem), field);
      }
    }
    writer.Finish();
  }
  if (!update.properties.empty()) {
    updates->push_back(std::move(update));
  }
  return std::nullopt;
}

// The person updates an event carries: properties.$set / $set_once /
// $unset, then the same at the top of the event (posthog-js's $identify),
// which are applied after and so win.
Problem AppendPersonUpdates(const EventMembers& members, const SpecialProperties& special,
                            const RawEvent& event, std::vector<RawProfileUpdate>* updates) {
  RawProfileUpdate base;
  base.distinct_id = event.distinct_id;
  base.time_ms = event.time_ms;
  base.client_ip = event.client_ip;
  const std::array<std::tuple<ProfileOperation, const std::optional<element>*, std::string_view>, 6>
      sources = {{
          {ProfileOperation::kSet, &special.set, "properties.$set"},
          {ProfileOperation::kSetOnce, &special.set_once, "properties.$set_once"},
          {ProfileOperation::kUnset, &special.unset, "properties.$unset"},
          {ProfileOperation::kSet, &members.set, "$set"},
          {ProfileOperation::kSetOnce, &members.set_once, "$set_once"},
          {ProfileOperation::kUnset, &members.unset, "$unset"},
      }};
  for (const auto& [operation, value, field] : sources) {
    if (Problem problem = AppendUpdate(operation, *value, field, base, updates)) {
      return problem;
    }
  }
  return std::nullopt;
}

// `$groupidentify`: {$group_type, $group_key, $group_set}. The group's
// properties become a $set on the group profile (group_key = the type,
// distinct_id = the key), as Mixpanel's /groups does; the raw key leaves the
// event and is added as `$groups.<type>`, which the policy pseudonymises
// as that group's id.
Problem ReadGroupIdentify(const SpecialProperties& special, RawEvent* event,
                          internal::PropertyWriter* writer,
                          std::vector<RawProfileUpdate>* updates) {
  std::string_view group_type;
  if (IsNullOrAbsent(special.group_type) ||
      special.group_type->get_string().get(group_type) != simdjson::SUCCESS || group_type.empty() ||
      group_type.size() > kPropertyKeyBytesMax - kGroupsPrefix.size()) {
    return RecordProblem{"properties.$group_type",
                         "required on $groupidentify: a string of 1 to " +
                             std::to_string(kPropertyKeyBytesMax - kGroupsPrefix.size()) +
                             " bytes"};
  }
  if (IsNullOrAbsent(special.group_key)) {
    return RecordProblem{"properties.$group_key", "required on $groupidentify"};
  }
  RawProfileUpdate base;
  base.group_key.assign(group_type);
  base.time_ms = event->time_ms;
  base.client_ip = event->client_ip;
  if (Problem problem = internal::ReadDistinctId(*special.group_key, "properties.$group_key", false,
                                                 &base.distinct_id)) {
    return problem;
  }
  if (base.distinct_id.empty()) {
    return RecordProblem{"properties.$group_key", "must not be empty"};
  }
  if (Problem problem = writer->Append(std::string(kGroupsPrefix) + std::string(group_type),
                                       *special.group_key)) {
    return problem;
  }
  return AppendUpdate(ProfileOperation::kSet, special.group_set, "properties.$group_set", base,
                      updates);
}

Problem DecodeEvent(element record, const Envelope& envelope, const PostHogDecodeOptions& options,
                    PostHogBatch* batch) {
  if (record.type() != element_type::OBJECT) {
    return RecordProblem{"record", "each event must be a JSON object"};
  }
  const EventMembers members = ReadMembers(record.get_object().value_unsafe());
  RawEvent& event = batch->events.emplace_back();
  if (Problem problem = ReadEventName(members.name, &event)) {
    return problem;
  }
  SpecialProperties special;
  internal::PropertyWriter writer(&event.properties);
  if (!IsNullOrAbsent(members.properties)) {
    if (members.properties->type() != element_type::OBJECT) {
      return RecordProblem{"properties", "must be a JSON object"};
    }
    const simdjson::dom::object properties = members.properties->get_object().value_unsafe();
    event.properties.reserve(properties.size());
    for (const auto [key, value] : properties) {
      if (TakeSpecial(key, value, &event, &special)) {
        continue;
      }
      if (Problem problem = writer.Append(key, value)) {
        return problem;
      }
    }
  }
  using TokenSource = std::pair<const std::optional<element>*, std::string_view>;
  for (const TokenSource& source :
       {TokenSource{&members.api_key, "api_key"}, TokenSource{&members.token, "token"},
        TokenSource{&special.token, "properties.token"}}) {
    if (Problem problem = AgreeToken(*source.first, source.second, &batch->token)) {
      return problem;
    }
  }
  if (Problem problem = ReadSubject(members, special, &event)) {
    return problem;
  }
  if (Problem problem = ReadTime(members, special, envelope, options.now_ms, &event)) {
    return problem;
  }
  if (Problem problem = ReadInsertId(members.uuid, special.insert_id, &event)) {
    return problem;
  }
  if (event.client_ip.empty() && !IsTrue(special.geoip_disable)) {
    event.client_ip.assign(options.client_ip);
  }
  if (event.library.empty()) {
    event.library.assign(options.library.substr(0, options.library.find('/')));
  }
  using TopLevelProperty = std::pair<const std::optional<element>*, std::string_view>;
  for (const TopLevelProperty& moved : {TopLevelProperty{&members.session_id, "$session_id"},
                                        TopLevelProperty{&members.window_id, "$window_id"}}) {
    if (IsNullOrAbsent(*moved.first)) {
      continue;
    }
    if (Problem problem = writer.Append(moved.second, **moved.first)) {
      return problem;
    }
  }
  if (event.name == "$groupidentify") {
    if (Problem problem = ReadGroupIdentify(special, &event, &writer, &batch->profile_updates)) {
      return problem;
    }
  } else if (!IsNullOrAbsent(special.group_set)) {
    return RecordProblem{"properties.$group_set", "only on $groupidentify"};
  }
  writer.Finish();
  return AppendPersonUpdates(members, special, event, &batch->profile_updates);
}

Status RecordFailure(std::string_view prefix, RecordProblem problem) {
  return Status::InvalidArgument(std::string(prefix) + problem.field + ": " + problem.message);
}

// Reads the envelope's own members; `records` becomes its batch.
Status ReadEnvelope(simdjson::dom::object object, Envelope* envelope, simdjson::dom::array* records,
                    PostHogBatch* batch) {
  std::optional<element> api_key;
  std::optional<element> token;
  for (const auto [key, value] : object) {
    if (key == "batch") {
      if (value.get_array().get(*records) != simdjson::SUCCESS) {
        return Status::InvalidArgument("batch: must be an array of events");
      }
    } else if (key == "api_key") {
      api_key = value;
    } else if (key == "token") {
      token = value;
    } else if ((key == "sent_at" || key == "created_at") &&
               value.type() != element_type::NULL_VALUE) {
      int64_t sent_at_ms = 0;
      std::string_view text;
      if (value.get_string().get(text) != simdjson::SUCCESS) {
        return Status::InvalidArgument(std::string(key) + ": " + std::string(kTimeRule));
      }
      if (text.empty()) {
        continue;
      }
      if (!ParseIsoTimeMs(text, &sent_at_ms)) {
        return Status::InvalidArgument(std::string(key) + ": " + std::string(kTimeRule));
      }
      // Capture V1 calls it created_at; sent_at wins when both are there.
      if (key == "sent_at" || !envelope->sent_at_ms.has_value()) {
        envelope->sent_at_ms = sent_at_ms;
      }
    } else if (key == "historical_migration") {
      batch->historical_migration = IsTrue(value);
    }
  }
  using TokenSource = std::pair<const std::optional<element>*, std::string_view>;
  for (const TokenSource& source :
       {TokenSource{&api_key, "api_key"}, TokenSource{&token, "token"}}) {
    if (Problem problem = AgreeToken(*source.first, source.second, &batch->token)) {
      return RecordFailure("", std::move(*problem));
    }
  }
  return Status::Ok();
}

// `?compression=lz64`: the `data` field of the query or of the form body
// holds LZString base64 of the JSON.
Result<std::string> ExtractLz64(std::string_view query, std::string_view body,
                                const PostHogBodyLimits& limits) {
  MP_ASSIGN_OR_RETURN(std::optional<std::string> data, internal::FindFormField(query, "data"));
  if (!data.has_value()) {
    MP_ASSIGN_OR_RETURN(data, internal::FindFormField(body, "data"));
  }
  if (!data.has_value()) {
    return Status::InvalidArgument("data: missing (compression=lz64 expects a data= field)");
  }
  MP_ASSIGN_OR_RETURN(std::string json,
                      internal::DecompressLz64(*data, limits.decompressed_bytes_max));
  const std::string_view trimmed = internal::TrimAsciiWhitespace(json);
  if (trimmed.empty() || (trimmed.front() != '{' && trimmed.front() != '[')) {
    return Status::InvalidArgument("data: lz64 does not decode to a JSON object or array");
  }
  return json;
}

}  // namespace

bool ParseIsoTimeMs(std::string_view text, int64_t* time_ms) {
  size_t pos = 0;
  int64_t year = 0;
  int64_t month = 0;
  int64_t day = 0;
  if (!ReadDigits(text, &pos, 4, &year) || !ReadSeparator(text, &pos, '-') ||
      !ReadDigits(text, &pos, 2, &month) || !ReadSeparator(text, &pos, '-') ||
      !ReadDigits(text, &pos, 2, &day)) {
    return false;
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month)) {
    return false;
  }
  int64_t day_ms = 0;
  int64_t offset_minutes = 0;
  if (pos < text.size()) {
    const char separator = text[pos];
    if (separator != 'T' && separator != 't' && separator != ' ') {
      return false;
    }
    ++pos;
    if (!ReadClock(text, &pos, &day_ms) || !ReadZone(text, pos, &offset_minutes)) {
      return false;
    }
  }
  *time_ms = DaysFromCivil(year, month, day) * 86'400'000 + day_ms - offset_minutes * 60'000;
  return true;
}

Result<std::string_view> ExtractPostHogPayload(std::string_view query, std::string_view body,
                                               ContentEncoding encoding,
                                               const PostHogBodyLimits& limits,
                                               std::string* storage) {
  MP_ASSIGN_OR_RETURN(const std::optional<std::string> compression,
                      internal::FindFormField(query, "compression"));
  bool gzip_js = false;
  if (compression.has_value()) {
    const std::string_view name = *compression;
    if (name == "gzip-js" || name == "gzip") {
      gzip_js = true;
    } else if (name == "lz64" || name == "lz-string") {
      MP_ASSIGN_OR_RETURN(*storage, ExtractLz64(query, body, limits));
      return std::string_view(*storage);
    } else if (name != "base64" && !name.empty()) {
      return Status::InvalidArgument(
          "compression: unknown value (accepted: gzip-js, gzip, base64, lz64)");
    }
  }
  std::string inflated;
  if (NeedsDecompression(body, encoding)) {
    MP_ASSIGN_OR_RETURN(
        inflated, DecompressBody(body, encoding, limits.decompressed_bytes_max, limits.ratio_max));
    body = inflated;
  } else if (gzip_js && !body.empty()) {
    return Status::InvalidArgument("compression: gzip-js, but the body is not gzip");
  }
  MP_ASSIGN_OR_RETURN(const std::string_view payload, ExtractMixpanelPayload(query, body, storage));
  if (!inflated.empty() && payload.data() == inflated.data()) {
    // The payload is the inflated body itself: keep it alive.
    *storage = std::move(inflated);
    return std::string_view(*storage);
  }
  return payload;
}

Result<PostHogBatch> DecodePostHogEvents(std::string_view json,
                                         const PostHogDecodeOptions& options) {
  if (json.size() > kPostHogPayloadBytesMax) {
    return Status::ResourceExhausted(
        "body: " + std::to_string(json.size()) + " bytes of JSON, over the limit of " +
        std::to_string(kPostHogPayloadBytesMax) + " (kPostHogPayloadBytesMax)");
  }
  MP_ASSIGN_OR_RETURN(const element root, ParsePayload(json));
  PostHogBatch batch;
  batch.token.assign(options.token);
  Envelope envelope;
  std::string prefix_word;
  simdjson::dom::array records;
  if (root.type() == element_type::OBJECT) {
    const simdjson::dom::object object = root.get_object().value_unsafe();
    if (!HasMember(object, "batch")) {
      batch.records_total = 1;
      if (Problem problem = DecodeEvent(root, envelope, options, &batch)) {
        return RecordFailure("", std::move(*problem));
      }
      return batch;
    }
    MP_RETURN_IF_ERROR(ReadEnvelope(object, &envelope, &records, &batch));
    prefix_word = "batch";
  } else if (root.type() == element_type::ARRAY) {
    records = root.get_array().value_unsafe();
  } else {
    return Status::InvalidArgument("body: must be a JSON object or array of events");
  }
  const size_t record_count = records.size();
  if (record_count > kPostHogEventsMax) {
    return Status::ResourceExhausted(
        "batch: " + std::to_string(record_count) + " events, over the limit of " +
        std::to_string(kPostHogEventsMax) + " per request (kPostHogEventsMax)");
  }
  batch.records_total = record_count;
  batch.events.reserve(record_count);
  size_t record_idx = 0;
  for (const element record : records) {
    if (Problem problem = DecodeEvent(record, envelope, options, &batch)) {
      return RecordFailure(prefix_word + "[" + std::to_string(record_idx) + "].",
                           std::move(*problem));
    }
    ++record_idx;
  }
  return batch;
}

}  // namespace minpanel::ingest
