// Segment HTTP tracking API requests → RawEvent and RawProfileUpdate. Rules:
// docs/formats/segment-http.md.
#include "ingest/segment_events.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <memory>
#include <utility>

#include "ingest/json_values.h"
#include "ingest/posthog_events.h"
#include "ingest/text_util.h"

namespace minpanel::ingest {
namespace {

using internal::HasMember;
using internal::IsNullOrAbsent;
using internal::Problem;
using internal::RecordProblem;
using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::string_view kTimeRule = "must be an ISO-8601 time such as 2026-11-26T09:24:36.748Z";
// The group a Segment group call names has no type: its id is stored under
// this key (a group id the policy pseudonymises) and its traits go to the
// group profile of this group key, so that the two join.
constexpr std::string_view kGroupIdKey = "groupId";

// A message sits inside the envelope object and its batch array.
Result<element> ParsePayload(std::string_view json) {
  return internal::ParseWithThreadParser<3>(json, {"body", "message"});
}

// What the envelope of /v1/batch gives every message.
struct Envelope {
  std::optional<int64_t> sent_at_ms;
  std::optional<element> context;  // merged into each message's context
};

// The members of one message that matter; the rest (integrations,
// _metadata, receivedAt, channel, version, …) are ignored, as Segment's
// own storage does not keep them as properties either.
struct MessageMembers {
  std::optional<element> type;
  std::optional<element> event;
  std::optional<element> user_id;
  std::optional<element> anonymous_id;
  std::optional<element> message_id;
  std::optional<element> timestamp;
  std::optional<element> original_timestamp;
  std::optional<element> sent_at;
  std::optional<element> properties;
  std::optional<element> traits;
  std::optional<element> context;
  std::optional<element> name;
  std::optional<element> category;
  std::optional<element> group_id;
  std::optional<element> previous_id;
  std::optional<element> write_key;
};

MessageMembers ReadMembers(simdjson::dom::object object) {
  MessageMembers members;
  for (const auto [key, value] : object) {
    if (key == "type") {
      members.type = value;
    } else if (key == "event") {
      members.event = value;
    } else if (key == "userId") {
      members.user_id = value;
    } else if (key == "anonymousId") {
      members.anonymous_id = value;
    } else if (key == "messageId") {
      members.message_id = value;
    } else if (key == "timestamp") {
      members.timestamp = value;
    } else if (key == "originalTimestamp") {
      members.original_timestamp = value;
    } else if (key == "sentAt") {
      members.sent_at = value;
    } else if (key == "properties") {
      members.properties = value;
    } else if (key == "traits") {
      members.traits = value;
    } else if (key == "context") {
      members.context = value;
    } else if (key == "name") {
      members.name = value;
    } else if (key == "category") {
      members.category = value;
    } else if (key == "groupId") {
      members.group_id = value;
    } else if (key == "previousId") {
      members.previous_id = value;
    } else if (key == "writeKey") {
      members.write_key = value;
    }
  }
  return members;
}

// A PropertyWriter problem ("properties: …") inside another container.
RecordProblem Reparent(RecordProblem problem, std::string_view container) {
  constexpr std::string_view kProperties = "properties";
  const std::string_view inner = problem.field;
  problem.field = std::string(container) + std::string(inner.starts_with(kProperties)
                                                           ? inner.substr(kProperties.size())
                                                           : std::string_view());
  return problem;
}

// Adds a write key the request carries; all must be the same.
Problem AgreeWriteKey(const std::optional<element>& value, std::string* write_key) {
  if (IsNullOrAbsent(value)) {
    return std::nullopt;
  }
  std::string_view text;
  if (value->get_string().get(text) != simdjson::SUCCESS) {
    return RecordProblem{"writeKey", "must be a string (the project token)"};
  }
  if (text.empty()) {
    return std::nullopt;
  }
  if (write_key->empty()) {
    write_key->assign(text);
  } else if (*write_key != text) {
    return RecordProblem{"writeKey",
                         "a request must carry one write key (Basic auth and body agree)"};
  }
  return std::nullopt;
}

Problem ReadTimeMember(const std::optional<element>& value, std::string_view field,
                       std::optional<int64_t>* time_ms) {
  if (IsNullOrAbsent(value)) {
    return std::nullopt;
  }
  std::string_view text;
  int64_t parsed = 0;
  if (value->get_string().get(text) != simdjson::SUCCESS || !ParseIsoTimeMs(text, &parsed)) {
    return RecordProblem{std::string(field), std::string(kTimeRule)};
  }
  *time_ms = parsed;
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

// Segment's rule: the client's time is originalTimestamp, else timestamp;
// with a sentAt (the message's, else the batch's) the client clock's skew
// is removed: time = now - (sentAt - client time). No client time: now.
Problem ReadTime(const MessageMembers& members, const Envelope& envelope, int64_t now_ms,
                 RawEvent* event) {
  std::optional<int64_t> timestamp_ms;
  std::optional<int64_t> original_ms;
  std::optional<int64_t> sent_at_ms;
  if (Problem problem = ReadTimeMember(members.timestamp, "timestamp", &timestamp_ms)) {
    return problem;
  }
  if (Problem problem =
          ReadTimeMember(members.original_timestamp, "originalTimestamp", &original_ms)) {
    return problem;
  }
  if (Problem problem = ReadTimeMember(members.sent_at, "sentAt", &sent_at_ms)) {
    return problem;
  }
  if (!sent_at_ms.has_value()) {
    sent_at_ms = envelope.sent_at_ms;
  }
  const std::optional<int64_t> client_ms = original_ms.has_value() ? original_ms : timestamp_ms;
  if (!client_ms.has_value()) {
    event->time_ms = now_ms;
    event->arrival_time = true;
    return std::nullopt;
  }
  event->time_ms = sent_at_ms.has_value() ? now_ms - (*sent_at_ms - *client_ms) : *client_ms;
  return CheckTimeRange(event->time_ms, original_ms.has_value() ? "originalTimestamp" : "timestamp",
                        now_ms);
}

// An id that may be a string or a number; empty when absent or "".
Problem ReadId(const std::optional<element>& value, std::string_view field, std::string* out) {
  out->clear();
  if (IsNullOrAbsent(value)) {
    return std::nullopt;
  }
  if (Problem problem = internal::ReadDistinctId(*value, field, false, out)) {
    return problem;
  }
  if (internal::TrimAsciiWhitespace(*out).empty()) {
    out->clear();
  }
  return std::nullopt;
}

Problem ReadMessageId(const std::optional<element>& value, RawEvent* event) {
  if (IsNullOrAbsent(value)) {
    return std::nullopt;
  }
  std::string_view text;
  if (value->get_string().get(text) != simdjson::SUCCESS || text.empty() ||
      text.size() > kSegmentMessageIdBytesMax) {
    return RecordProblem{"messageId", "must be a string of 1 to " +
                                          std::to_string(kSegmentMessageIdBytesMax) +
                                          " bytes (kSegmentMessageIdBytesMax)"};
  }
  event->insert_id.emplace(text);
  return std::nullopt;
}

Problem RequireObject(const std::optional<element>& value, std::string_view field) {
  if (!IsNullOrAbsent(value) && value->type() != element_type::OBJECT) {
    return RecordProblem{std::string(field), "must be a JSON object"};
  }
  return std::nullopt;
}

Problem TakeString(element value, std::string_view field, std::string* out) {
  std::string_view text;
  if (value.get_string().get(text) != simdjson::SUCCESS) {
    return value.type() == element_type::NULL_VALUE
               ? std::nullopt
               : Problem(RecordProblem{std::string(field), "must be a string"});
  }
  out->assign(internal::Utf8Prefix(text, kStringValueBytesMax));
  return std::nullopt;
}

// Sorts the members of one context object (context.page, context.library,
// …) : into a typed RawEvent field, away (personal data the policy has no
// name for), or into the properties as context.<object>.<member>.
Problem ReadContextObject(std::string_view object_key, simdjson::dom::object object,
                          RawEvent* event, internal::PropertyWriter* writer) {
  for (const auto [key, value] : object) {
    if (object_key == "page") {
      if (key == "url") {
        if (Problem problem = TakeString(value, "context.page.url", &event->page_url)) {
          return problem;
        }
        continue;
      }
      if (key == "referrer") {
        if (Problem problem = TakeString(value, "context.page.referrer", &event->referrer)) {
          return problem;
        }
        continue;
      }
      if (key == "search") {
        continue;  // the query string, which the page URL's policy removes
      }
    } else if (object_key == "library" && key == "name") {
      if (Problem problem = TakeString(value, "context.library.name", &event->library)) {
        return problem;
      }
      continue;
    } else if (object_key == "location" && (key == "latitude" || key == "longitude")) {
      continue;  // a precise position: the policy's location comes from the IP
    } else if (object_key == "device") {
      if (key == "advertisingId" || key == "token") {
        continue;  // an advertising id and a push token: ids of a person
      }
      if (key == "id" && value.type() != element_type::NULL_VALUE) {
        // A device id is a person's id: stored as $device_id, which the
        // policy pseudonymises like the distinct id.
        if (Problem problem = writer->Append("$device_id", value)) {
          return Reparent(std::move(*problem), "context");
        }
        continue;
      }
    }
    std::string property = "context.";
    property.append(object_key).push_back('.');
    property.append(key);
    if (Problem problem = writer->Append(property, value)) {
      return Reparent(std::move(*problem), "context");
    }
  }
  return std::nullopt;
}

Problem ReadContextMember(std::string_view key, element value, RawEvent* event,
                          internal::PropertyWriter* writer) {
  if (key == "ip") {
    return TakeString(value, "context.ip", &event->client_ip);
  }
  if (key == "userAgent") {
    return TakeString(value, "context.userAgent", &event->user_agent);
  }
  if (key == "groupId") {
    if (value.type() == element_type::NULL_VALUE) {
      return std::nullopt;
    }
    std::string group_id;
    if (Problem problem = internal::ReadDistinctId(value, "context.groupId", false, &group_id)) {
      return problem;
    }
    event->properties.push_back(Property{std::string(kGroupIdKey), Value::String(group_id)});
    return std::nullopt;
  }
  if (value.type() == element_type::OBJECT &&
      (key == "page" || key == "library" || key == "location" || key == "device")) {
    return ReadContextObject(key, value.get_object().value_unsafe(), event, writer);
  }
  std::string property = "context.";
  property.append(key);
  if (Problem problem = writer->Append(property, value)) {
    return Reparent(std::move(*problem), "context");
  }
  return std::nullopt;
}

// The message's context merged with the batch's: a member of the message's
// own context wins over the batch's member of the same name.
Problem ReadContext(const std::optional<element>& own, const Envelope& envelope, RawEvent* event,
                    internal::PropertyWriter* writer) {
  if (Problem problem = RequireObject(own, "context")) {
    return problem;
  }
  std::optional<simdjson::dom::object> own_object;
  if (!IsNullOrAbsent(own)) {
    own_object = own->get_object().value_unsafe();
    for (const auto [key, value] : *own_object) {
      if (Problem problem = ReadContextMember(key, value, event, writer)) {
        return problem;
      }
    }
  }
  if (IsNullOrAbsent(envelope.context)) {
    return std::nullopt;
  }
  // A named object: value_unsafe() of a temporary result would dangle.
  const simdjson::dom::object shared = envelope.context->get_object().value_unsafe();
  for (const auto [key, value] : shared) {
    if (own_object.has_value() && HasMember(*own_object, key)) {
      continue;
    }
    if (Problem problem = ReadContextMember(key, value, event, writer)) {
      return problem;
    }
  }
  return std::nullopt;
}

// The caller's properties. On a page call, properties.url and .referrer
// are the page's URL and referrer (typed fields, which the policy
// generalises) unless the context already gave them, and then copies;
// properties.search, the query string, is left out like context.page.search.
Problem ReadProperties(const std::optional<element>& properties, SegmentCall call, RawEvent* event,
                       internal::PropertyWriter* writer) {
  if (Problem problem = RequireObject(properties, "properties")) {
    return problem;
  }
  if (IsNullOrAbsent(properties)) {
    return std::nullopt;
  }
  const simdjson::dom::object object = properties->get_object().value_unsafe();
  for (const auto [key, value] : object) {
    if (call == SegmentCall::kPage && value.type() == element_type::STRING) {
      if (key == "url" || key == "referrer") {
        std::string& field = key == "url" ? event->page_url : event->referrer;
        if (field.empty()) {
          field.assign(
              internal::Utf8Prefix(value.get_string().value_unsafe(), kStringValueBytesMax));
        }
        continue;
      }
      if (key == "search") {
        continue;
      }
    }
    if (Problem problem = writer->Append(key, value)) {
      return problem;
    }
  }
  return std::nullopt;
}

// identify's and group's traits: one $set on the person (group_key empty)
// or on the group.
Problem AppendTraits(const std::optional<element>& traits, const RawEvent& event,
                     std::string_view group_key, std::string_view subject,
                     std::vector<RawProfileUpdate>* updates) {
  if (Problem problem = RequireObject(traits, "traits")) {
    return problem;
  }
  if (IsNullOrAbsent(traits)) {
    return std::nullopt;
  }
  RawProfileUpdate update;
  update.distinct_id.assign(subject);
  update.group_key.assign(group_key);
  update.time_ms = event.time_ms;
  update.client_ip = event.client_ip;
  update.operation = ProfileOperation::kSet;
  const simdjson::dom::object object = traits->get_object().value_unsafe();
  update.properties.reserve(object.size());
  internal::PropertyWriter writer(&update.properties);
  for (const auto [key, value] : object) {
    if (Problem problem = writer.Append(key, value)) {
      return Reparent(std::move(*problem), "traits");
    }
  }
  writer.Finish();
  if (!update.properties.empty()) {
    updates->push_back(std::move(update));
  }
  return std::nullopt;
}

Problem ReadCall(const MessageMembers& members, std::optional<SegmentCall> route_call,
                 SegmentCall* call) {
  std::string_view type;
  const bool has_type = !IsNullOrAbsent(members.type);
  if (has_type && members.type->get_string().get(type) != simdjson::SUCCESS) {
    return RecordProblem{"type", "must be a string: track, identify, page, screen, group or alias"};
  }
  const std::optional<SegmentCall> parsed =
      has_type && type.size() > 1 ? ParseSegmentCall(type) : std::nullopt;
  if (route_call.has_value()) {
    if (has_type && parsed != route_call) {
      return RecordProblem{"type", "must be \"" + std::string(SegmentCallName(*route_call)) +
                                       "\" (or absent) on /v1/" +
                                       std::string(SegmentCallName(*route_call))};
    }
    *call = *route_call;
    return std::nullopt;
  }
  if (!parsed.has_value()) {
    return RecordProblem{"type", has_type ? "must be one of track, identify, page, screen, "
                                            "group, alias"
                                          : "required: track, identify, page, screen, group or "
                                            "alias"};
  }
  *call = *parsed;
  return std::nullopt;
}

Problem ReadEventName(const MessageMembers& members, SegmentCall call, RawEvent* event) {
  switch (call) {
    case SegmentCall::kIdentify:
      event->name = "$identify";
      return std::nullopt;
    case SegmentCall::kPage:
      event->name = "$pageview";
      return std::nullopt;
    case SegmentCall::kScreen:
      event->name = "$screen";
      return std::nullopt;
    case SegmentCall::kGroup:
      event->name = "$groupidentify";
      return std::nullopt;
    case SegmentCall::kAlias:
      event->name = "$create_alias";
      return std::nullopt;
    case SegmentCall::kTrack:
      break;
  }
  std::string_view text;
  if (IsNullOrAbsent(members.event)) {
    return RecordProblem{"event", "required on track"};
  }
  if (members.event->get_string().get(text) != simdjson::SUCCESS) {
    return RecordProblem{"event", "must be a string"};
  }
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

// userId names the person when there is one, else anonymousId; with both,
// anonymousId is kept as a property (a person id, pseudonymised like the
// subject), which records the link for identity merging.
Problem ReadSubject(const MessageMembers& members, SegmentCall call, RawEvent* event,
                    std::string* anonymous_id) {
  std::string user_id;
  if (Problem problem = ReadId(members.user_id, "userId", &user_id)) {
    return problem;
  }
  if (Problem problem = ReadId(members.anonymous_id, "anonymousId", anonymous_id)) {
    return problem;
  }
  if (call == SegmentCall::kAlias && user_id.empty()) {
    return RecordProblem{"userId", "required on alias"};
  }
  if (user_id.empty() && anonymous_id->empty()) {
    return RecordProblem{"userId", "required, or anonymousId (one of them names the person)"};
  }
  event->distinct_id = user_id.empty() ? *anonymous_id : std::move(user_id);
  if (event->distinct_id == *anonymous_id) {
    anonymous_id->clear();
  }
  return std::nullopt;
}

// The members only some calls have, as properties: page's and screen's
// name and category, group's groupId, alias's previousId.
Problem ReadCallMembers(const MessageMembers& members, SegmentCall call, RawEvent* event,
                        std::string* group_id) {
  if (call == SegmentCall::kPage || call == SegmentCall::kScreen) {
    using Member = std::pair<const std::optional<element>*, std::string_view>;
    for (const Member& member :
         {Member{&members.name, "name"}, Member{&members.category, "category"}}) {
      if (IsNullOrAbsent(*member.first)) {
        continue;
      }
      std::string text;
      if (Problem problem = TakeString(**member.first, member.second, &text)) {
        return problem;
      }
      event->properties.push_back(Property{std::string(member.second), Value::String(text)});
    }
  }
  if (call == SegmentCall::kGroup) {
    if (Problem problem = ReadId(members.group_id, "groupId", group_id)) {
      return problem;
    }
    if (group_id->empty()) {
      return RecordProblem{"groupId", "required on group"};
    }
    event->properties.push_back(Property{std::string(kGroupIdKey), Value::String(*group_id)});
  }
  if (call == SegmentCall::kAlias) {
    std::string previous_id;
    if (Problem problem = ReadId(members.previous_id, "previousId", &previous_id)) {
      return problem;
    }
    if (previous_id.empty()) {
      return RecordProblem{"previousId", "required on alias"};
    }
    event->properties.push_back(Property{"previousId", Value::String(previous_id)});
  }
  return std::nullopt;
}

Problem DecodeMessage(simdjson::dom::object object, const Envelope& envelope,
                      const SegmentDecodeOptions& options, SegmentBatch* batch) {
  const MessageMembers members = ReadMembers(object);
  SegmentCall call = SegmentCall::kTrack;
  if (Problem problem = ReadCall(members, options.call, &call)) {
    return problem;
  }
  if (Problem problem = AgreeWriteKey(members.write_key, &batch->write_key)) {
    return problem;
  }
  RawEvent& event = batch->events.emplace_back();
  if (Problem problem = ReadEventName(members, call, &event)) {
    return problem;
  }
  std::string anonymous_id;
  if (Problem problem = ReadSubject(members, call, &event, &anonymous_id)) {
    return problem;
  }
  if (Problem problem = ReadTime(members, envelope, options.now_ms, &event)) {
    return problem;
  }
  if (Problem problem = ReadMessageId(members.message_id, &event)) {
    return problem;
  }
  internal::PropertyWriter writer(&event.properties);
  if (Problem problem = ReadContext(members.context, envelope, &event, &writer)) {
    return problem;
  }
  if (Problem problem = ReadProperties(members.properties, call, &event, &writer)) {
    return problem;
  }
  // Written last, so that they win over a free property of the same name.
  std::string group_id;
  if (Problem problem = ReadCallMembers(members, call, &event, &group_id)) {
    return problem;
  }
  if (!anonymous_id.empty()) {
    event.properties.push_back(Property{"anonymousId", Value::String(anonymous_id)});
  }
  if (event.properties.size() > kPropertiesPerEventMax) {
    return RecordProblem{"properties", "more than " + std::to_string(kPropertiesPerEventMax) +
                                           " properties (kPropertiesPerEventMax)"};
  }
  writer.Finish();
  if (call == SegmentCall::kIdentify) {
    return AppendTraits(members.traits, event, "", event.distinct_id, &batch->profile_updates);
  }
  if (call == SegmentCall::kGroup) {
    return AppendTraits(members.traits, event, kGroupIdKey, group_id, &batch->profile_updates);
  }
  return std::nullopt;
}

Status RecordFailure(std::string_view prefix, RecordProblem problem) {
  return Status::InvalidArgument(std::string(prefix) + problem.field + ": " + problem.message);
}

// One message: its size, then its fields.
Status DecodeRecord(element record, std::string_view prefix, const Envelope& envelope,
                    const SegmentDecodeOptions& options, SegmentBatch* batch) {
  if (record.type() != element_type::OBJECT) {
    const std::string where =
        prefix.empty() ? "body" : std::string(prefix.substr(0, prefix.size() - 1));
    return Status::InvalidArgument(where + ": must be a JSON object (one message)");
  }
  const size_t message_bytes = simdjson::minify(record).size();
  if (message_bytes > kSegmentMessageBytesMax) {
    const std::string where =
        prefix.empty() ? "message" : std::string(prefix.substr(0, prefix.size() - 1));
    return Status::ResourceExhausted(
        where + ": " + std::to_string(message_bytes) + " bytes of JSON, over Segment's limit of " +
        std::to_string(kSegmentMessageBytesMax) + " per message (kSegmentMessageBytesMax)");
  }
  if (Problem problem =
          DecodeMessage(record.get_object().value_unsafe(), envelope, options, batch)) {
    return RecordFailure(prefix, std::move(*problem));
  }
  return Status::Ok();
}

// The members of /v1/batch's envelope; `records` becomes its batch.
Status ReadEnvelope(simdjson::dom::object object, Envelope* envelope, simdjson::dom::array* records,
                    SegmentBatch* batch) {
  bool has_batch = false;
  std::optional<element> write_key;
  for (const auto [key, value] : object) {
    if (key == "batch") {
      if (value.get_array().get(*records) != simdjson::SUCCESS) {
        return Status::InvalidArgument("batch: must be an array of messages");
      }
      has_batch = true;
    } else if (key == "writeKey") {
      write_key = value;
    } else if (key == "context") {
      if (value.type() != element_type::OBJECT && value.type() != element_type::NULL_VALUE) {
        return Status::InvalidArgument("context: must be a JSON object");
      }
      envelope->context = value;
    } else if (key == "sentAt") {
      std::optional<element> sent_at = value;
      if (Problem problem = ReadTimeMember(sent_at, "sentAt", &envelope->sent_at_ms)) {
        return RecordFailure("", std::move(*problem));
      }
    }
  }
  if (!has_batch) {
    return Status::InvalidArgument("batch: required, an array of messages");
  }
  if (Problem problem = AgreeWriteKey(write_key, &batch->write_key)) {
    return RecordFailure("", std::move(*problem));
  }
  return Status::Ok();
}

}  // namespace

std::optional<SegmentCall> ParseSegmentCall(std::string_view type) {
  static constexpr std::array<std::pair<std::string_view, SegmentCall>, 6> kCalls = {{
      {"track", SegmentCall::kTrack},
      {"identify", SegmentCall::kIdentify},
      {"page", SegmentCall::kPage},
      {"screen", SegmentCall::kScreen},
      {"group", SegmentCall::kGroup},
      {"alias", SegmentCall::kAlias},
  }};
  for (const auto& [name, call] : kCalls) {
    if (type == name || (type.size() == 1 && type.front() == name.front())) {
      return call;
    }
  }
  return std::nullopt;
}

std::string_view SegmentCallName(SegmentCall call) {
  switch (call) {
    case SegmentCall::kTrack:
      return "track";
    case SegmentCall::kIdentify:
      return "identify";
    case SegmentCall::kPage:
      return "page";
    case SegmentCall::kScreen:
      return "screen";
    case SegmentCall::kGroup:
      return "group";
    case SegmentCall::kAlias:
      return "alias";
  }
  return "track";
}

Result<SegmentBatch> DecodeSegment(std::string_view json, const SegmentDecodeOptions& options) {
  if (json.size() > kSegmentBatchBytesMax) {
    return Status::ResourceExhausted(
        "body: " + std::to_string(json.size()) + " bytes of JSON, over Segment's limit of " +
        std::to_string(kSegmentBatchBytesMax) + " per request (kSegmentBatchBytesMax)");
  }
  MP_ASSIGN_OR_RETURN(const element root, ParsePayload(json));
  SegmentBatch batch;
  batch.write_key.assign(options.basic_write_key);
  Envelope envelope;
  if (options.call.has_value()) {
    batch.records_total = 1;
    MP_RETURN_IF_ERROR(DecodeRecord(root, "", envelope, options, &batch));
    return batch;
  }
  if (root.type() != element_type::OBJECT) {
    return Status::InvalidArgument("body: must be a JSON object {\"batch\": [messages]}");
  }
  simdjson::dom::array records;
  MP_RETURN_IF_ERROR(ReadEnvelope(root.get_object().value_unsafe(), &envelope, &records, &batch));
  const size_t record_count = records.size();
  constexpr size_t kMessagesMax = kSegmentBatchBytesMax / kSegmentMessageBytesMin;
  if (record_count > kMessagesMax) {
    return Status::ResourceExhausted("batch: " + std::to_string(record_count) +
                                     " messages, more than " + std::to_string(kMessagesMax) +
                                     " valid ones fit in a request (kSegmentBatchBytesMax / "
                                     "kSegmentMessageBytesMin)");
  }
  batch.records_total = record_count;
  batch.events.reserve(record_count);
  size_t record_idx = 0;
  for (const element record : records) {
    const std::string prefix = "batch[" + std::to_string(record_idx) + "].";
    MP_RETURN_IF_ERROR(DecodeRecord(record, prefix, envelope, options, &batch));
    ++record_idx;
  }
  return batch;
}

bool IsSegmentBatchBody(std::string_view json) {
  if (json.find("\"writeKey\"") == std::string_view::npos || json.size() > kSegmentBatchBytesMax) {
    return false;
  }
  auto root = ParsePayload(json);
  if (!root.ok() || root->type() != element_type::OBJECT) {
    return false;
  }
  const simdjson::dom::object object = root->get_object().value_unsafe();
  return HasMember(object, "writeKey") && HasMember(object, "batch");
}

}  // namespace minpanel::ingest
