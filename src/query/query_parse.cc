// ParseQuery: the JSON query format of docs/queries.md into a QuerySpec.
//
// Every error names the field as a path from the root ("steps[2].filters[0].op")
// so that the HTTP face can return it as is. Unknown fields are errors too: a
// misspelt option silently ignored would answer a different question.
#include <charconv>
#include <cstdio>
#include <initializer_list>
#include <string>

#include <simdjson.h>

#include "query/query.h"

namespace minpanel::query {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

Status Invalid(const std::string& path, std::string_view message) {
  return Status::InvalidArgument(path + ": " + std::string(message));
}

std::string OverLimit(size_t actual, size_t limit, std::string_view name) {
  return std::to_string(actual) + " is over the limit of " + std::to_string(limit) + " (" +
         std::string(name) + ")";
}

std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string Index(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

// Fails on a key outside `known`.
Status CheckKeys(const object& obj, const std::string& path,
                 std::initializer_list<std::string_view> known) {
  for (const auto field : obj) {
    bool found = false;
    for (const std::string_view key : known) {
      if (field.key == key) {
        found = true;
        break;
      }
    }
    if (!found) {
      return Invalid(Join(path, field.key), "unknown field");
    }
  }
  return Status::Ok();
}

Result<object> GetObject(const element& value, const std::string& path) {
  object obj;
  if (value.get(obj) != simdjson::SUCCESS) {
    return Invalid(path, "must be an object");
  }
  return obj;
}

Result<array> GetArray(const element& value, const std::string& path) {
  array arr;
  if (value.get(arr) != simdjson::SUCCESS) {
    return Invalid(path, "must be an array");
  }
  return arr;
}

Result<std::string_view> GetString(const element& value, const std::string& path,
                                   size_t bytes_max) {
  std::string_view text;
  if (value.get(text) != simdjson::SUCCESS) {
    return Invalid(path, "must be a string");
  }
  if (text.size() > bytes_max) {
    return Invalid(path, OverLimit(text.size(), bytes_max, "bytes"));
  }
  return text;
}

Result<std::string> GetName(const element& value, const std::string& path, size_t bytes_max) {
  MP_ASSIGN_OR_RETURN(std::string_view text, GetString(value, path, bytes_max));
  if (text.empty()) {
    return Invalid(path, "must not be empty");
  }
  return std::string(text);
}

// A property key or group key: a name without NUL bytes (they mark the
// encoded profile and group references, see PropertyReference).
Result<std::string> GetPropertyName(const element& value, const std::string& path) {
  MP_ASSIGN_OR_RETURN(std::string name, GetName(value, path, kPropertyNameBytesMax));
  if (name.find('\0') != std::string::npos) {
    return Invalid(path, "must not contain a NUL character");
  }
  return name;
}

// The property of `obj` (a filter condition or a breakdown item) with its
// "source" and "group_key", as Filter::property holds it.
Result<std::string> GetPropertyReference(const object& obj, const std::string& path) {
  element field;
  if (obj["property"].get(field) != simdjson::SUCCESS) {
    return Invalid(Join(path, "property"), "is required");
  }
  MP_ASSIGN_OR_RETURN(std::string name, GetPropertyName(field, Join(path, "property")));
  element group_key;
  const bool has_group_key = obj["group_key"].get(group_key) == simdjson::SUCCESS;
  std::string_view source = "event";
  if (obj["source"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(source, GetString(field, Join(path, "source"), 64));
  }
  if (source == "group") {
    if (!has_group_key) {
      return Invalid(Join(path, "group_key"), "is required with \"source\": \"group\"");
    }
    MP_ASSIGN_OR_RETURN(std::string key, GetPropertyName(group_key, Join(path, "group_key")));
    return PropertyReference(PropertySource::kGroup, key, name);
  }
  if (source != "event" && source != "profile") {
    return Invalid(Join(path, "source"),
                   "unknown source '" + std::string(source) + "' (event, profile or group)");
  }
  if (has_group_key) {
    return Invalid(Join(path, "group_key"), "only with \"source\": \"group\"");
  }
  return source == "profile" ? PropertyReference(PropertySource::kProfile, "", name) : name;
}

// A whole number: a JSON integer, or a double with no fraction.
Result<int64_t> GetInteger(const element& value, const std::string& path) {
  int64_t integer = 0;
  if (value.get(integer) == simdjson::SUCCESS) {
    return integer;
  }
  uint64_t unsigned_integer = 0;
  if (value.get(unsigned_integer) == simdjson::SUCCESS) {
    return Invalid(path, "is too large");
  }
  return Invalid(path, "must be an integer");
}

Result<Value> GetScalar(const element& value, const std::string& path) {
  switch (value.type()) {
    case element_type::NULL_VALUE:
      return Value::Null();
    case element_type::BOOL:
      return Value::Bool(value.get_bool().value());
    case element_type::INT64:
      return Value::Int(value.get_int64().value());
    case element_type::UINT64:
      return Value::Double(static_cast<double>(value.get_uint64().value()));
    case element_type::DOUBLE:
      return Value::Double(value.get_double().value());
    case element_type::STRING: {
      MP_ASSIGN_OR_RETURN(std::string_view text, GetString(value, path, kFilterValueBytesMax));
      return Value::String(std::string(text));
    }
    default:
      return Invalid(path, "must be a string, number, boolean or null");
  }
}

bool ParseOp(std::string_view text, FilterOp* op) {
  static constexpr std::pair<std::string_view, FilterOp> kOps[] = {
      {"eq", FilterOp::kEq},
      {"ne", FilterOp::kNe},
      {"in", FilterOp::kIn},
      {"not_in", FilterOp::kNotIn},
      {"contains", FilterOp::kContains},
      {"starts_with", FilterOp::kStartsWith},
      {"lt", FilterOp::kLt},
      {"le", FilterOp::kLe},
      {"gt", FilterOp::kGt},
      {"ge", FilterOp::kGe},
      {"is_set", FilterOp::kIsSet},
      {"is_not_set", FilterOp::kIsNotSet},
  };
  for (const auto& [name, value] : kOps) {
    if (name == text) {
      *op = value;
      return true;
    }
  }
  return false;
}

struct FilterBudget {
  size_t nodes = 0;
};

Result<Filter> ParseFilter(const element& value, const std::string& path, size_t depth,
                           FilterBudget* budget);

// A list of filters, all of which must hold (an "and" group).
Result<Filter> ParseFilterList(const element& value, const std::string& path, Filter::Kind kind,
                               size_t depth, FilterBudget* budget) {
  MP_ASSIGN_OR_RETURN(array items, GetArray(value, path));
  if (depth > kFilterDepthMax) {
    return Invalid(path, "groups nested " + OverLimit(depth, kFilterDepthMax, "kFilterDepthMax"));
  }
  Filter group;
  group.kind = kind;
  size_t item_idx = 0;
  for (const element item : items) {
    MP_ASSIGN_OR_RETURN(Filter child, ParseFilter(item, Index(path, item_idx), depth, budget));
    group.children.push_back(std::move(child));
    ++item_idx;
  }
  return group;
}

Status ParseConditionValues(const object& obj, const std::string& path, Filter* filter) {
  element value;
  const bool has_value = obj["value"].get(value) == simdjson::SUCCESS;
  element values;
  const bool has_values = obj["values"].get(values) == simdjson::SUCCESS;
  const FilterOp op = filter->op;
  if (op == FilterOp::kIsSet || op == FilterOp::kIsNotSet) {
    if (has_value || has_values) {
      return Invalid(Join(path, has_value ? "value" : "values"),
                     "is not allowed with " + std::string(FilterOpName(op)));
    }
    return Status::Ok();
  }
  if (op == FilterOp::kIn || op == FilterOp::kNotIn) {
    if (has_value) {
      return Invalid(Join(path, "value"), "use \"values\" (an array) with " +
                                              std::string(FilterOpName(op)));
    }
    if (!has_values) {
      return Invalid(Join(path, "values"), "is required with " + std::string(FilterOpName(op)));
    }
    MP_ASSIGN_OR_RETURN(array items, GetArray(values, Join(path, "values")));
    if (items.size() > kFilterValuesMax) {
      return Invalid(Join(path, "values"),
                     OverLimit(items.size(), kFilterValuesMax, "kFilterValuesMax"));
    }
    size_t item_idx = 0;
    for (const element item : items) {
      MP_ASSIGN_OR_RETURN(Value scalar, GetScalar(item, Index(Join(path, "values"), item_idx)));
      filter->values.push_back(std::move(scalar));
      ++item_idx;
    }
    return Status::Ok();
  }
  if (has_values) {
    return Invalid(Join(path, "values"), "use \"value\" with " + std::string(FilterOpName(op)));
  }
  if (!has_value) {
    return Invalid(Join(path, "value"), "is required with " + std::string(FilterOpName(op)));
  }
  const std::string value_path = Join(path, "value");
  MP_ASSIGN_OR_RETURN(Value scalar, GetScalar(value, value_path));
  const bool is_number =
      scalar.type() == Value::Type::kInt || scalar.type() == Value::Type::kDouble;
  switch (op) {
    case FilterOp::kContains:
    case FilterOp::kStartsWith:
      if (scalar.type() != Value::Type::kString) {
        return Invalid(value_path, "must be a string with " + std::string(FilterOpName(op)));
      }
      break;
    case FilterOp::kLt:
    case FilterOp::kLe:
    case FilterOp::kGt:
    case FilterOp::kGe:
      if (!is_number && scalar.type() != Value::Type::kString) {
        return Invalid(value_path,
                       "must be a number or a string with " + std::string(FilterOpName(op)));
      }
      break;
    default:
      break;
  }
  filter->values.push_back(std::move(scalar));
  return Status::Ok();
}

Result<Filter> ParseFilter(const element& value, const std::string& path, size_t depth,
                           FilterBudget* budget) {
  if (++budget->nodes > kFilterConditionsMax) {
    return Invalid(path, "conditions: " + OverLimit(budget->nodes, kFilterConditionsMax,
                                                    "kFilterConditionsMax"));
  }
  MP_ASSIGN_OR_RETURN(object obj, GetObject(value, path));
  element group;
  if (obj["and"].get(group) == simdjson::SUCCESS) {
    MP_RETURN_IF_ERROR(CheckKeys(obj, path, {"and"}));
    return ParseFilterList(group, Join(path, "and"), Filter::Kind::kAnd, depth + 1, budget);
  }
  if (obj["or"].get(group) == simdjson::SUCCESS) {
    MP_RETURN_IF_ERROR(CheckKeys(obj, path, {"or"}));
    return ParseFilterList(group, Join(path, "or"), Filter::Kind::kOr, depth + 1, budget);
  }
  MP_RETURN_IF_ERROR(
      CheckKeys(obj, path, {"property", "source", "group_key", "op", "value", "values"}));
  Filter filter;
  filter.kind = Filter::Kind::kCondition;
  element field;
  MP_ASSIGN_OR_RETURN(filter.property, GetPropertyReference(obj, path));
  if (obj["op"].get(field) != simdjson::SUCCESS) {
    return Invalid(Join(path, "op"), "is required");
  }
  MP_ASSIGN_OR_RETURN(std::string_view op_text, GetString(field, Join(path, "op"), 64));
  if (!ParseOp(op_text, &filter.op)) {
    return Invalid(Join(path, "op"), "unknown operator '" + std::string(op_text) + "'");
  }
  MP_RETURN_IF_ERROR(ParseConditionValues(obj, path, &filter));
  return filter;
}

// {"event": NAME, "filters": [...]}, {"any_event": true, "filters": [...]},
// or just NAME. Exclusions (`allow_any_event` false) must name an event.
Result<EventSelector> ParseSelector(const element& value, const std::string& path,
                                    std::initializer_list<std::string_view> extra_keys = {},
                                    bool allow_any_event = true) {
  EventSelector selector;
  if (value.type() == element_type::STRING) {
    MP_ASSIGN_OR_RETURN(selector.event, GetName(value, path, kEventNameBytesMax));
    return selector;
  }
  MP_ASSIGN_OR_RETURN(object obj, GetObject(value, path));
  for (const auto field : obj) {
    bool known = field.key == "event" || field.key == "any_event" || field.key == "filters";
    for (const std::string_view key : extra_keys) {
      known = known || field.key == key;
    }
    if (!known) {
      return Invalid(Join(path, field.key), "unknown field");
    }
  }
  element field;
  const bool has_event = obj["event"].get(field) == simdjson::SUCCESS;
  element any_event;
  const bool has_any_event = obj["any_event"].get(any_event) == simdjson::SUCCESS;
  if (has_event && has_any_event) {
    return Invalid(Join(path, "any_event"), "give either event or any_event, not both");
  }
  if (has_any_event) {
    bool flag = false;
    if (any_event.get(flag) != simdjson::SUCCESS || !flag) {
      return Invalid(Join(path, "any_event"),
                     "must be true (to select one event, give \"event\" instead)");
    }
    if (!allow_any_event) {
      return Invalid(Join(path, "any_event"),
                     "an exclusion must name an event (every event between two steps would "
                     "include the steps themselves)");
    }
    selector.any_event = true;
  } else if (!has_event) {
    return Invalid(Join(path, "event"), "is required (or \"any_event\": true)");
  } else {
    MP_ASSIGN_OR_RETURN(selector.event, GetName(field, Join(path, "event"), kEventNameBytesMax));
  }
  if (obj["filters"].get(field) == simdjson::SUCCESS) {
    FilterBudget budget;
    MP_ASSIGN_OR_RETURN(selector.filter, ParseFilterList(field, Join(path, "filters"),
                                                         Filter::Kind::kAnd, 1, &budget));
  }
  return selector;
}

Result<TimeSpec> ParseTime(const element& value, const std::string& path) {
  TimeSpec time;
  if (value.type() == element_type::STRING) {
    const std::string_view text = value.get_string().value();
    if (!ParseTimeText(text, &time)) {
      return Invalid(path, "must be YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS[.mmm]][Z], now, today, "
                           "-N[m|h|d|w] or milliseconds since the epoch, not '" +
                           std::string(text.substr(0, 64)) + "'");
    }
    return time;
  }
  MP_ASSIGN_OR_RETURN(time.utc_ms, GetInteger(value, path));
  return time;
}

Result<TimeUnit> ParseUnit(const element& value, const std::string& path, bool allow_all) {
  MP_ASSIGN_OR_RETURN(std::string_view text, GetString(value, path, 16));
  if (text == "day") {
    return TimeUnit::kDay;
  }
  if (text == "week") {
    return TimeUnit::kWeek;
  }
  if (allow_all && text == "hour") {
    return TimeUnit::kHour;
  }
  if (allow_all && text == "month") {
    return TimeUnit::kMonth;
  }
  return Invalid(path, "unknown unit '" + std::string(text) + "' (" +
                           (allow_all ? "hour, day, week or month" : "day or week") + ")");
}

Result<Measure> ParseMeasureName(std::string_view text, const std::string& path) {
  static constexpr Measure kMeasures[] = {
      Measure::kTotal, Measure::kUnique, Measure::kSum,    Measure::kAverage,
      Measure::kMin,   Measure::kMax,    Measure::kMedian, Measure::kP90,
      Measure::kPerSubjectAverage,
  };
  for (const Measure measure : kMeasures) {
    if (MeasureName(measure) == text) {
      return measure;
    }
  }
  return Invalid(path, "unknown measure '" + std::string(text) + "'");
}

Status ParseMeasure(const element& value, QuerySpec* spec) {
  if (value.type() == element_type::STRING) {
    MP_ASSIGN_OR_RETURN(spec->measure, ParseMeasureName(value.get_string().value(), "measure"));
  } else {
    MP_ASSIGN_OR_RETURN(object obj, GetObject(value, "measure"));
    MP_RETURN_IF_ERROR(CheckKeys(obj, "measure", {"type", "property", "group_key"}));
    element field;
    if (obj["type"].get(field) != simdjson::SUCCESS) {
      return Invalid("measure.type", "is required");
    }
    MP_ASSIGN_OR_RETURN(std::string_view text, GetString(field, "measure.type", 64));
    MP_ASSIGN_OR_RETURN(spec->measure, ParseMeasureName(text, "measure.type"));
    if (obj["property"].get(field) == simdjson::SUCCESS) {
      MP_ASSIGN_OR_RETURN(spec->measure_property, GetPropertyName(field, "measure.property"));
    }
    if (obj["group_key"].get(field) == simdjson::SUCCESS) {
      MP_ASSIGN_OR_RETURN(spec->measure_group_key, GetPropertyName(field, "measure.group_key"));
      if (spec->measure != Measure::kUnique) {
        return Invalid("measure.group_key", "only with \"type\": \"unique\" (distinct groups)");
      }
    }
  }
  const bool numeric = spec->measure != Measure::kTotal && spec->measure != Measure::kUnique &&
                       spec->measure != Measure::kPerSubjectAverage;
  if (numeric && spec->measure_property.empty()) {
    return Invalid("measure.property",
                   "is required with " + std::string(MeasureName(spec->measure)));
  }
  if (!numeric && !spec->measure_property.empty()) {
    return Invalid("measure.property",
                   "is not allowed with " + std::string(MeasureName(spec->measure)));
  }
  return Status::Ok();
}

// A breakdown property: its name, or {"property", "source", "group_key"}.
Result<std::string> ParseBreakdownProperty(const element& value, const std::string& path) {
  if (value.type() != element_type::OBJECT) {
    return GetPropertyName(value, path);
  }
  const object obj = value.get_object().value();
  MP_RETURN_IF_ERROR(CheckKeys(obj, path, {"property", "source", "group_key"}));
  return GetPropertyReference(obj, path);
}

Status ParseBreakdown(const element& value, Breakdown* breakdown) {
  element single;
  if (value.type() == element_type::OBJECT &&
      value.get_object().value()["property"].get(single) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(std::string name, ParseBreakdownProperty(value, "breakdown"));
    breakdown->properties.push_back(std::move(name));
    return Status::Ok();
  }
  element properties = value;
  if (value.type() == element_type::OBJECT) {
    const object obj = value.get_object().value();
    MP_RETURN_IF_ERROR(CheckKeys(obj, "breakdown", {"properties", "limit"}));
    if (obj["properties"].get(properties) != simdjson::SUCCESS) {
      return Invalid("breakdown.properties", "is required");
    }
    element limit;
    if (obj["limit"].get(limit) == simdjson::SUCCESS) {
      MP_ASSIGN_OR_RETURN(int64_t count, GetInteger(limit, "breakdown.limit"));
      if (count < 1 || static_cast<uint64_t>(count) > kBreakdownLimitMax) {
        return Invalid("breakdown.limit", "must be 1 .. " + std::to_string(kBreakdownLimitMax) +
                                              " (kBreakdownLimitMax)");
      }
      breakdown->limit = static_cast<size_t>(count);
    }
  }
  const std::string path = value.type() == element_type::OBJECT ? "breakdown.properties"
                                                                 : "breakdown";
  if (properties.type() != element_type::ARRAY) {
    MP_ASSIGN_OR_RETURN(std::string name, ParseBreakdownProperty(properties, path));
    breakdown->properties.push_back(std::move(name));
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(array items, GetArray(properties, path));
  if (items.size() > kBreakdownPropertiesMax) {
    return Invalid(path, OverLimit(items.size(), kBreakdownPropertiesMax,
                                   "kBreakdownPropertiesMax"));
  }
  size_t item_idx = 0;
  for (const element item : items) {
    MP_ASSIGN_OR_RETURN(std::string name, ParseBreakdownProperty(item, Index(path, item_idx)));
    breakdown->properties.push_back(std::move(name));
    ++item_idx;
  }
  return Status::Ok();
}

Result<int64_t> ParseWindow(const element& value) {
  MP_ASSIGN_OR_RETURN(object obj, GetObject(value, "window"));
  MP_RETURN_IF_ERROR(CheckKeys(obj, "window", {"value", "unit"}));
  element field;
  if (obj["value"].get(field) != simdjson::SUCCESS) {
    return Invalid("window.value", "is required");
  }
  MP_ASSIGN_OR_RETURN(int64_t count, GetInteger(field, "window.value"));
  if (obj["unit"].get(field) != simdjson::SUCCESS) {
    return Invalid("window.unit", "is required");
  }
  MP_ASSIGN_OR_RETURN(std::string_view unit, GetString(field, "window.unit", 16));
  int64_t unit_ms = 0;
  if (unit == "second") {
    unit_ms = 1000;
  } else if (unit == "minute") {
    unit_ms = 60 * 1000;
  } else if (unit == "hour") {
    unit_ms = 3600 * 1000;
  } else if (unit == "day") {
    unit_ms = 24 * 3600 * 1000;
  } else if (unit == "week") {
    unit_ms = 7LL * 24 * 3600 * 1000;
  } else {
    return Invalid("window.unit", "unknown unit '" + std::string(unit) +
                                      "' (second, minute, hour, day or week)");
  }
  if (count < 1 || count > kFunnelWindowMsMax / unit_ms) {
    return Invalid("window.value", "must be at least 1 and at most 366 days (kFunnelWindowMsMax)");
  }
  return count * unit_ms;
}

Status ParseSegmentation(const object& root, QuerySpec* spec) {
  MP_RETURN_IF_ERROR(CheckKeys(root, "", {"kind", "from", "to", "time_zone", "unit", "events",
                                          "filters", "measure", "breakdown", "compare"}));
  element field;
  if (root["events"].get(field) != simdjson::SUCCESS) {
    return Invalid("events", "is required");
  }
  MP_ASSIGN_OR_RETURN(array events, GetArray(field, "events"));
  if (events.size() == 0) {
    return Invalid("events", "must name at least one event");
  }
  if (events.size() > kSegmentationEventsMax) {
    return Invalid("events", OverLimit(events.size(), kSegmentationEventsMax,
                                       "kSegmentationEventsMax"));
  }
  size_t event_idx = 0;
  for (const element event : events) {
    MP_ASSIGN_OR_RETURN(EventSelector selector, ParseSelector(event, Index("events", event_idx)));
    spec->events.push_back(std::move(selector));
    ++event_idx;
  }
  if (root["filters"].get(field) == simdjson::SUCCESS) {
    FilterBudget budget;
    MP_ASSIGN_OR_RETURN(Filter common,
                        ParseFilterList(field, "filters", Filter::Kind::kAnd, 1, &budget));
    // The common filters join each event's own, as one more "and" member.
    for (EventSelector& selector : spec->events) {
      selector.filter.children.push_back(common);
    }
  }
  if (root["unit"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(spec->unit, ParseUnit(field, "unit", true));
  }
  if (root["measure"].get(field) == simdjson::SUCCESS) {
    MP_RETURN_IF_ERROR(ParseMeasure(field, spec));
  }
  if (root["compare"].get(field) == simdjson::SUCCESS) {
    std::string_view compare;
    if (field.get(compare) != simdjson::SUCCESS || compare != "previous_period") {
      return Invalid("compare", "expected \"previous_period\"");
    }
    spec->compare_previous = true;
  }
  return Status::Ok();
}

Status ParseFunnel(const object& root, QuerySpec* spec) {
  MP_RETURN_IF_ERROR(CheckKeys(root, "", {"kind", "from", "to", "time_zone", "steps", "window",
                                          "window_ms", "order", "exclusions", "breakdown"}));
  element field;
  if (root["steps"].get(field) != simdjson::SUCCESS) {
    return Invalid("steps", "is required");
  }
  MP_ASSIGN_OR_RETURN(array steps, GetArray(field, "steps"));
  if (steps.size() < kFunnelStepsMin || steps.size() > kFunnelStepsMax) {
    return Invalid("steps", "has " + std::to_string(steps.size()) + " steps; a funnel has " +
                                std::to_string(kFunnelStepsMin) + " .. " +
                                std::to_string(kFunnelStepsMax) + " (kFunnelStepsMax)");
  }
  size_t step_idx = 0;
  for (const element step : steps) {
    MP_ASSIGN_OR_RETURN(EventSelector selector, ParseSelector(step, Index("steps", step_idx)));
    spec->steps.push_back(std::move(selector));
    ++step_idx;
  }
  const bool has_window = root["window"].get(field) == simdjson::SUCCESS;
  if (has_window) {
    MP_ASSIGN_OR_RETURN(spec->window_ms, ParseWindow(field));
  }
  if (root["window_ms"].get(field) == simdjson::SUCCESS) {
    if (has_window) {
      return Invalid("window_ms", "give either window or window_ms");
    }
    MP_ASSIGN_OR_RETURN(spec->window_ms, GetInteger(field, "window_ms"));
    if (spec->window_ms < 1 || spec->window_ms > kFunnelWindowMsMax) {
      return Invalid("window_ms", "must be 1 .. " + std::to_string(kFunnelWindowMsMax) +
                                      " (kFunnelWindowMsMax)");
    }
  }
  if (root["order"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(std::string_view order, GetString(field, "order", 16));
    if (order == "loose") {
      spec->order = FunnelOrder::kLoose;
    } else if (order == "strict") {
      spec->order = FunnelOrder::kStrict;
    } else {
      return Invalid("order", "unknown order '" + std::string(order) + "' (loose or strict)");
    }
  }
  if (root["exclusions"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(array exclusions, GetArray(field, "exclusions"));
    if (exclusions.size() > kFunnelExclusionsMax) {
      return Invalid("exclusions", OverLimit(exclusions.size(), kFunnelExclusionsMax,
                                             "kFunnelExclusionsMax"));
    }
    size_t exclusion_idx = 0;
    for (const element item : exclusions) {
      const std::string path = Index("exclusions", exclusion_idx);
      FunnelExclusion exclusion;
      MP_ASSIGN_OR_RETURN(exclusion.selector, ParseSelector(item, path, {"between"}, false));
      exclusion.from_step = 0;
      exclusion.to_step = spec->steps.size() - 1;
      element between;
      if (item.type() == element_type::OBJECT &&
          item.get_object().value()["between"].get(between) == simdjson::SUCCESS) {
        const std::string between_path = Join(path, "between");
        MP_ASSIGN_OR_RETURN(array pair, GetArray(between, between_path));
        if (pair.size() != 2) {
          return Invalid(between_path, "must be [first step, second step], numbered from 1");
        }
        MP_ASSIGN_OR_RETURN(int64_t first, GetInteger(pair.at(0).value(), between_path + "[0]"));
        MP_ASSIGN_OR_RETURN(int64_t second, GetInteger(pair.at(1).value(), between_path + "[1]"));
        const auto steps_count = static_cast<int64_t>(spec->steps.size());
        if (first < 1 || second > steps_count || first >= second) {
          return Invalid(between_path, "must be two step numbers 1 .. " +
                                           std::to_string(steps_count) +
                                           ", the first smaller than the second");
        }
        exclusion.from_step = static_cast<size_t>(first - 1);
        exclusion.to_step = static_cast<size_t>(second - 1);
      }
      spec->exclusions.push_back(std::move(exclusion));
      ++exclusion_idx;
    }
  }
  return Status::Ok();
}

Status ParseRetention(const object& root, QuerySpec* spec) {
  MP_RETURN_IF_ERROR(CheckKeys(root, "", {"kind", "from", "to", "time_zone", "birth", "return",
                                          "unit", "periods", "mode", "breakdown"}));
  element field;
  if (root["birth"].get(field) != simdjson::SUCCESS) {
    return Invalid("birth", "is required");
  }
  MP_ASSIGN_OR_RETURN(spec->birth, ParseSelector(field, "birth"));
  if (root["return"].get(field) != simdjson::SUCCESS) {
    return Invalid("return", "is required");
  }
  MP_ASSIGN_OR_RETURN(spec->return_event, ParseSelector(field, "return"));
  if (root["unit"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(spec->unit, ParseUnit(field, "unit", false));
  }
  if (root["periods"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(int64_t periods, GetInteger(field, "periods"));
    if (periods < 1 || periods > kRetentionPeriodsMax) {
      return Invalid("periods", "must be 1 .. " + std::to_string(kRetentionPeriodsMax) +
                                    " (kRetentionPeriodsMax)");
    }
    spec->periods = static_cast<uint32_t>(periods);
  }
  if (root["mode"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(std::string_view mode, GetString(field, "mode", 16));
    if (mode == "on") {
      spec->mode = RetentionMode::kOn;
    } else if (mode == "on_or_after") {
      spec->mode = RetentionMode::kOnOrAfter;
    } else {
      return Invalid("mode", "unknown mode '" + std::string(mode) + "' (on or on_or_after)");
    }
  }
  return Status::Ok();
}

Status ParseCommon(const object& root, QuerySpec* spec) {
  element field;
  if (root["from"].get(field) != simdjson::SUCCESS) {
    return Invalid("from", "is required");
  }
  MP_ASSIGN_OR_RETURN(spec->from, ParseTime(field, "from"));
  if (root["to"].get(field) != simdjson::SUCCESS) {
    return Invalid("to", "is required");
  }
  MP_ASSIGN_OR_RETURN(spec->to, ParseTime(field, "to"));
  if (root["time_zone"].get(field) == simdjson::SUCCESS) {
    MP_ASSIGN_OR_RETURN(std::string_view zone, GetString(field, "time_zone", 64));
    if (zone.empty()) {
      return Invalid("time_zone", "must not be empty");
    }
    spec->time_zone = std::string(zone);
  }
  if (root["breakdown"].get(field) == simdjson::SUCCESS) {
    MP_RETURN_IF_ERROR(ParseBreakdown(field, &spec->breakdown));
  }
  return Status::Ok();
}

}  // namespace

namespace {

bool ParseRelativeTime(std::string_view text, TimeSpec* time) {
  if (text == "now" || text == "today") {
    time->relative = text == "now" ? TimeSpec::Relative::kNow : TimeSpec::Relative::kDays;
    time->relative_count = 0;
    return true;
  }
  if (text.size() < 3 || text.size() > 8 || text[0] != '-') {
    return false;
  }
  int64_t count = 0;
  const auto [end, error] = std::from_chars(text.data() + 1, text.data() + text.size() - 1, count);
  if (error != std::errc() || end != text.data() + text.size() - 1 || count < 0) {
    return false;
  }
  switch (text.back()) {
    case 'm':
      time->relative = TimeSpec::Relative::kMinutes;
      break;
    case 'h':
      time->relative = TimeSpec::Relative::kHours;
      break;
    case 'd':
      time->relative = TimeSpec::Relative::kDays;
      break;
    case 'w':
      time->relative = TimeSpec::Relative::kDays;
      count *= 7;
      break;
    default:
      return false;
  }
  time->relative_count = count;
  return true;
}

}  // namespace

bool ParseTimeText(std::string_view text, TimeSpec* time) {
  TimeSpec relative;
  if (ParseRelativeTime(text, &relative)) {
    *time = relative;
    return true;
  }
  // Fixed positions: YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z]
  auto digits = [&](size_t position, size_t count, uint32_t* out) {
    if (position + count > text.size()) {
      return false;
    }
    uint32_t value = 0;
    for (size_t digit_idx = 0; digit_idx < count; ++digit_idx) {
      const char c = text[position + digit_idx];
      if (c < '0' || c > '9') {
        return false;
      }
      value = value * 10 + static_cast<uint32_t>(c - '0');
    }
    *out = value;
    return true;
  };
  TimeSpec parsed;
  parsed.local = true;
  uint32_t year = 0;
  if (!digits(0, 4, &year) || text.size() < 10 || text[4] != '-' || text[7] != '-' ||
      !digits(5, 2, &parsed.month) || !digits(8, 2, &parsed.day)) {
    return false;
  }
  parsed.year = static_cast<int32_t>(year);
  size_t position = 10;
  if (position < text.size() && text[position] == 'T') {
    if (!digits(11, 2, &parsed.hour) || text.size() < 16 || text[13] != ':' ||
        !digits(14, 2, &parsed.minute)) {
      return false;
    }
    position = 16;
    if (position < text.size() && text[position] == ':') {
      if (!digits(17, 2, &parsed.second)) {
        return false;
      }
      position = 19;
      if (position < text.size() && text[position] == '.') {
        if (!digits(20, 3, &parsed.millisecond)) {
          return false;
        }
        position = 23;
      }
    }
    if (position < text.size() && text[position] == 'Z') {
      parsed.local = false;
      ++position;
    }
  }
  if (position != text.size() || parsed.month < 1 || parsed.month > 12 || parsed.day < 1 ||
      parsed.day > 31 || parsed.hour > 23 || parsed.minute > 59 || parsed.second > 59) {
    return false;
  }
  if (!parsed.local) {
    // UTC: resolve now, with the same calendar arithmetic as local times.
    TimeSpec wall_clock = parsed;
    wall_clock.local = true;
    const Result<int64_t> utc = ResolveTime(wall_clock, "UTC");
    if (!utc.ok()) {
      return false;
    }
    parsed.utc_ms = *utc;
  }
  *time = parsed;
  return true;
}

Result<QuerySpec> ParseQuery(std::string_view json) {
  if (json.size() > kQueryJsonBytesMax) {
    return Status::InvalidArgument("query: " + OverLimit(json.size(), kQueryJsonBytesMax,
                                                         "kQueryJsonBytesMax bytes"));
  }
  simdjson::dom::parser parser;
  if (parser.allocate(std::max<size_t>(json.size(), 64), kQueryJsonDepthMax) !=
      simdjson::SUCCESS) {
    return Status::ResourceExhausted("query: cannot allocate the JSON parser");
  }
  element root_element;
  const simdjson::padded_string padded(json);
  const auto error = parser.parse(padded).get(root_element);
  if (error == simdjson::DEPTH_ERROR) {
    return Status::InvalidArgument("query: JSON nested more than " +
                                   std::to_string(kQueryJsonDepthMax) +
                                   " levels deep (kQueryJsonDepthMax)");
  }
  if (error != simdjson::SUCCESS) {
    return Status::InvalidArgument(std::string("query: malformed JSON: ") +
                                   simdjson::error_message(error));
  }
  MP_ASSIGN_OR_RETURN(object root, GetObject(root_element, "query"));
  element field;
  if (root["kind"].get(field) != simdjson::SUCCESS) {
    return Invalid("kind", "is required (segmentation, funnel or retention)");
  }
  MP_ASSIGN_OR_RETURN(std::string_view kind, GetString(field, "kind", 32));
  QuerySpec spec;
  if (kind == "segmentation") {
    spec.kind = QueryKind::kSegmentation;
    MP_RETURN_IF_ERROR(ParseSegmentation(root, &spec));
  } else if (kind == "funnel") {
    spec.kind = QueryKind::kFunnel;
    MP_RETURN_IF_ERROR(ParseFunnel(root, &spec));
  } else if (kind == "retention") {
    spec.kind = QueryKind::kRetention;
    MP_RETURN_IF_ERROR(ParseRetention(root, &spec));
  } else {
    return Invalid("kind", "unknown kind '" + std::string(kind) +
                               "' (segmentation, funnel or retention)");
  }
  MP_RETURN_IF_ERROR(ParseCommon(root, &spec));
  return spec;
}

std::string_view QueryKindName(QueryKind kind) {
  switch (kind) {
    case QueryKind::kSegmentation:
      return "segmentation";
    case QueryKind::kFunnel:
      return "funnel";
    case QueryKind::kRetention:
      return "retention";
  }
  return "?";
}

std::string_view TimeUnitName(TimeUnit unit) {
  switch (unit) {
    case TimeUnit::kHour:
      return "hour";
    case TimeUnit::kDay:
      return "day";
    case TimeUnit::kWeek:
      return "week";
    case TimeUnit::kMonth:
      return "month";
  }
  return "?";
}

std::string_view MeasureName(Measure measure) {
  switch (measure) {
    case Measure::kTotal:
      return "total";
    case Measure::kUnique:
      return "unique";
    case Measure::kSum:
      return "sum";
    case Measure::kAverage:
      return "average";
    case Measure::kMin:
      return "min";
    case Measure::kMax:
      return "max";
    case Measure::kMedian:
      return "median";
    case Measure::kP90:
      return "p90";
    case Measure::kPerSubjectAverage:
      return "per_subject_average";
  }
  return "?";
}

std::string_view FilterOpName(FilterOp op) {
  switch (op) {
    case FilterOp::kEq:
      return "eq";
    case FilterOp::kNe:
      return "ne";
    case FilterOp::kIn:
      return "in";
    case FilterOp::kNotIn:
      return "not_in";
    case FilterOp::kContains:
      return "contains";
    case FilterOp::kStartsWith:
      return "starts_with";
    case FilterOp::kLt:
      return "lt";
    case FilterOp::kLe:
      return "le";
    case FilterOp::kGt:
      return "gt";
    case FilterOp::kGe:
      return "ge";
    case FilterOp::kIsSet:
      return "is_set";
    case FilterOp::kIsNotSet:
      return "is_not_set";
  }
  return "?";
}

}  // namespace minpanel::query
