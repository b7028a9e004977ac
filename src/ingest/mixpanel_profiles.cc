// Mixpanel /engage and /groups payloads → RawProfileUpdate. Rules:
// docs/formats/mixpanel.md.
#include <algorithm>
#include <array>
#include <vector>

#include "ingest/ingest.h"
#include "ingest/json_values.h"

namespace minpanel::ingest {
namespace {

using internal::IsNullOrAbsent;
using internal::Problem;
using internal::RecordProblem;
using simdjson::dom::element;
using simdjson::dom::element_type;

// `$` keys that modify an update rather than name an operation; they are
// accepted and ignored. mixpanel-browser adds $device_id and $user_id.
constexpr std::array<std::string_view, 7> kIgnoredModifiers = {
    "$ignore_time", "$ignore_alias", "$latitude",
    "$longitude",   "$device_id",    "$user_id",
    "$had_persisted_distinct_id",
};

// What one /engage or /groups item carries besides its operations.
struct ProfileItem {
  std::optional<element> token;
  std::optional<element> distinct_id;
  std::optional<element> group_key;
  std::optional<element> group_id;
  std::optional<element> ip;
  std::optional<element> time;
  std::vector<std::pair<ProfileOperation, element>> operations;
};

std::string_view StringOrEmpty(const std::optional<element>& value) {
  if (!value.has_value() || value->type() != element_type::STRING) {
    return {};
  }
  return value->get_string().value_unsafe();
}

// Sorts an item's keys into their slots; an unknown `$` key is refused so
// that a misspelt operation is never silently dropped.
Problem ClassifyItem(simdjson::dom::object object, ProfileItem* item) {
  for (const auto [key, value] : object) {
    if (key == "$token") {
      item->token = value;
    } else if (key == "$distinct_id") {
      item->distinct_id = value;
    } else if (key == "$group_key") {
      item->group_key = value;
    } else if (key == "$group_id") {
      item->group_id = value;
    } else if (key == "$ip") {
      item->ip = value;
    } else if (key == "$time") {
      item->time = value;
    } else if (const auto operation = ParseProfileOperation(key)) {
      item->operations.emplace_back(*operation, value);
    } else if (!key.empty() && key.front() == '$' &&
               std::find(kIgnoredModifiers.begin(), kIgnoredModifiers.end(), key) ==
                   kIgnoredModifiers.end()) {
      return RecordProblem{std::string(key), "unknown operation"};
    }
  }
  if (item->operations.empty()) {
    return RecordProblem{"operation", "no operation ($set, $set_once, $add, $union, $append, "
                                 "$remove, $unset or $delete)"};
  }
  return std::nullopt;
}

Problem ReadSubject(const ProfileItem& item, MixpanelRoute route, RawProfileUpdate* base) {
  if (route == MixpanelRoute::kEngage) {
    if (IsNullOrAbsent(item.distinct_id)) {
      return RecordProblem{"$distinct_id", "required"};
    }
    return internal::ReadDistinctId(*item.distinct_id, "$distinct_id", true, &base->distinct_id);
  }
  if (IsNullOrAbsent(item.group_key)) {
    return RecordProblem{"$group_key", "required"};
  }
  const std::string_view group_key = StringOrEmpty(item.group_key);
  if (group_key.empty() || group_key.size() > kPropertyKeyBytesMax) {
    return RecordProblem{"$group_key", "must be a string of 1 to " +
                                           std::to_string(kPropertyKeyBytesMax) +
                                           " bytes (kPropertyKeyBytesMax)"};
  }
  base->group_key.assign(group_key);
  if (IsNullOrAbsent(item.group_id)) {
    return RecordProblem{"$group_id", "required"};
  }
  // Group ids such as "0" are legitimate, so the user-id blocklist does not
  // apply.
  return internal::ReadDistinctId(*item.group_id, "$group_id", false, &base->distinct_id);
}

Problem ReadUnset(element value, Properties* properties) {
  if (value.type() != element_type::ARRAY) {
    return RecordProblem{"$unset", "must be an array of property names"};
  }
  const simdjson::dom::array names = value.get_array().value_unsafe();
  if (names.size() > kPropertiesPerEventMax) {
    return RecordProblem{"$unset", "more than " + std::to_string(kPropertiesPerEventMax) +
                                       " names (kPropertiesPerEventMax)"};
  }
  for (const element name : names) {
    if (name.type() != element_type::STRING) {
      return RecordProblem{"$unset", "must be an array of property names"};
    }
    const std::string_view text = name.get_string().value_unsafe();
    if (text.empty() || text.size() > kPropertyKeyBytesMax) {
      return RecordProblem{"$unset", "a name must be 1 to " +
                                         std::to_string(kPropertyKeyBytesMax) +
                                         " bytes (kPropertyKeyBytesMax)"};
    }
    properties->push_back(Property{std::string(text), Value::Null()});
  }
  return std::nullopt;
}

Problem ReadOperation(ProfileOperation operation, element value, Properties* properties) {
  const std::string field(ProfileOperationName(operation));
  if (operation == ProfileOperation::kDelete) {
    return std::nullopt;  // any value; the operation takes no properties
  }
  if (operation == ProfileOperation::kUnset) {
    return ReadUnset(value, properties);
  }
  if (value.type() != element_type::OBJECT) {
    return RecordProblem{field, "must be a JSON object"};
  }
  const simdjson::dom::object object = value.get_object().value_unsafe();
  properties->reserve(object.size());
  internal::PropertyWriter writer(properties);
  for (const auto [key, member] : object) {
    if (Problem problem = writer.Append(key, member)) {
      // The writer names event fields; here the operation is the container.
      const std::string_view inner = problem->field;
      problem->field = field + std::string(inner.starts_with("properties")
                                               ? inner.substr(std::string_view("properties").size())
                                               : std::string_view());
      return problem;
    }
  }
  writer.Finish();
  if (operation == ProfileOperation::kAdd) {
    for (const Property& property : *properties) {
      if (property.value.type() != Value::Type::kInt &&
          property.value.type() != Value::Type::kDouble) {
        return RecordProblem{field + "." + property.key, "must be a number"};
      }
    }
  }
  return std::nullopt;
}

// Decodes one item into one update per operation, appended only when the
// whole item is valid.
Problem DecodeItem(element record, const DecodeOptions& options,
                   std::vector<RawProfileUpdate>* updates, std::string* token) {
  if (record.type() != element_type::OBJECT) {
    return RecordProblem{"record", "each record must be a JSON object"};
  }
  ProfileItem item;
  if (Problem problem = ClassifyItem(record.get_object().value_unsafe(), &item)) {
    return problem;
  }
  RawProfileUpdate base;
  if (Problem problem = ReadSubject(item, options.route, &base)) {
    return problem;
  }
  base.time_ms = options.now_ms;
  if (!IsNullOrAbsent(item.time)) {
    if (Problem problem = internal::ReadTimeMs(*item.time, "$time", options.now_ms,
                                               &base.time_ms)) {
      return problem;
    }
  }
  base.client_ip.assign(StringOrEmpty(item.ip));
  token->assign(StringOrEmpty(item.token));
  updates->reserve(item.operations.size());
  for (const auto& [operation, value] : item.operations) {
    RawProfileUpdate& update = updates->emplace_back();
    update.distinct_id = base.distinct_id;
    update.group_key = base.group_key;
    update.time_ms = base.time_ms;
    update.client_ip = base.client_ip;
    update.operation = operation;
    if (Problem problem = ReadOperation(operation, value, &update.properties)) {
      return problem;
    }
  }
  return std::nullopt;
}

void DecodeRecord(element record, size_t record_idx, const DecodeOptions& options,
                  MixpanelProfiles* result) {
  std::vector<RawProfileUpdate> updates;
  std::string token;
  if (Problem problem = DecodeItem(record, options, &updates, &token)) {
    result->errors.push_back(
        RecordError{record_idx, std::string(), std::move(problem->field),
                    std::move(problem->message)});
    return;
  }
  for (RawProfileUpdate& update : updates) {
    result->updates.push_back(std::move(update));
    result->tokens.push_back(token);
  }
}

}  // namespace

Result<MixpanelProfiles> DecodeMixpanelProfiles(std::string_view json,
                                                const DecodeOptions& options) {
  if (options.route != MixpanelRoute::kEngage && options.route != MixpanelRoute::kGroups) {
    return Status::InvalidArgument("route: profile updates come only to /engage and /groups");
  }
  MP_ASSIGN_OR_RETURN(const element root, internal::ParseJson(json));
  MixpanelProfiles result;
  if (root.type() == element_type::OBJECT) {
    result.records_total = 1;
    DecodeRecord(root, 0, options, &result);
    return result;
  }
  if (root.type() != element_type::ARRAY) {
    return Status::InvalidArgument("data: must be a JSON object or array");
  }
  const simdjson::dom::array records = root.get_array().value_unsafe();
  const size_t record_count = records.size();
  const bool is_engage = options.route == MixpanelRoute::kEngage;
  if (record_count > kProfileUpdatesMax) {
    return Status::ResourceExhausted(
        "batch: " + std::to_string(record_count) + " profile updates, over the limit of " +
        std::to_string(kProfileUpdatesMax) +
        (is_engage ? " per /engage request" : " per /groups request"));
  }
  result.records_total = record_count;
  result.updates.reserve(record_count);
  result.tokens.reserve(record_count);
  size_t record_idx = 0;
  for (const element record : records) {
    DecodeRecord(record, record_idx++, options, &result);
  }
  return result;
}

}  // namespace minpanel::ingest
