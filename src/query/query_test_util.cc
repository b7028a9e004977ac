#include "query/query_test_util.h"

#include <cmath>
#include <functional>

#include <simdjson.h>

namespace minpanel::query::testing {

using simdjson::dom::element;
using simdjson::dom::element_type;

Id128 SubjectFromName(std::string_view name) {
  // FNV-1a, twice with different offsets: readable names, spread ids.
  uint64_t high = 1469598103934665603ULL;
  uint64_t low = 1099511628211ULL * 7;
  for (const char c : name) {
    high = (high ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
    low = (low ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  }
  return Id128{high, low};
}

namespace {

Result<Value> ToValue(const element& value) {
  switch (value.type()) {
    case element_type::NULL_VALUE:
      return Value::Null();
    case element_type::BOOL:
      return Value::Bool(value.get_bool().value());
    case element_type::INT64:
      return Value::Int(value.get_int64().value());
    case element_type::DOUBLE:
      return Value::Double(value.get_double().value());
    case element_type::STRING:
      return Value::String(std::string(value.get_string().value()));
    case element_type::ARRAY: {
      StringList items;
      const simdjson::dom::array array = value.get_array().value();
      for (const element item : array) {
        if (item.type() != element_type::STRING) {
          return Status::InvalidArgument("list items must be strings");
        }
        items.emplace_back(item.get_string().value());
      }
      return Value::List(std::move(items));
    }
    default:
      return Status::InvalidArgument("unsupported property value");
  }
}

}  // namespace

Result<std::vector<Event>> ParseEventLines(std::string_view text) {
  std::vector<Event> events;
  simdjson::dom::parser parser;
  uint64_t line_number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_number;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const std::string where = "event line " + std::to_string(line_number) + ": ";
    element root;
    const simdjson::padded_string padded(line);
    if (parser.parse(padded).get(root) != simdjson::SUCCESS) {
      return Status::InvalidArgument(where + "malformed JSON");
    }
    Event event;
    std::string_view name;
    std::string_view subject;
    if (root["event"].get(name) != simdjson::SUCCESS ||
        root["subject"].get(subject) != simdjson::SUCCESS) {
      return Status::InvalidArgument(where + "needs event and subject");
    }
    event.name = std::string(name);
    event.subject = SubjectFromName(subject);
    element time;
    if (root["time"].get(time) != simdjson::SUCCESS) {
      return Status::InvalidArgument(where + "needs time");
    }
    if (time.type() == element_type::STRING) {
      TimeSpec spec;
      if (!ParseTimeText(time.get_string().value(), &spec) || spec.local) {
        return Status::InvalidArgument(where + "time must end in Z");
      }
      event.time_ms = spec.utc_ms;
    } else {
      event.time_ms = time.get_int64().value();
    }
    simdjson::dom::object properties;
    if (root["properties"].get(properties) == simdjson::SUCCESS) {
      for (const auto field : properties) {
        MP_ASSIGN_OR_RETURN(Value value, ToValue(field.value));
        event.properties.push_back({std::string(field.key), std::move(value)});
      }
    }
    // Distinct insert ids keep duplicates apart; the line number orders ties.
    event.insert_id = Id128{0, static_cast<uint64_t>(events.size() + 1)};
    events.push_back(std::move(event));
  }
  return events;
}

Result<std::shared_ptr<const store::SegmentReader>> MakeSegment(const std::vector<Event>& events,
                                                                 uint32_t block_rows_max) {
  store::SegmentWriteOptions options;
  options.project_id = 1;
  options.block_rows_max = block_rows_max;
  MP_ASSIGN_OR_RETURN(std::string image, store::EncodeSegment(events, options));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<store::SegmentReader> reader,
                      store::SegmentReader::Open(std::move(image), "test.seg"));
  return std::shared_ptr<const store::SegmentReader>(std::move(reader));
}

namespace {

std::string Minified(const element& value) { return simdjson::minify(value); }

// Recursion is bounded by the test files' nesting.
std::string Diff(const element& expected, const element& actual, const std::string& path) {
  const auto mismatch = [&] {
    return path + ": expected " + Minified(expected) + ", got " + Minified(actual);
  };
  const bool expected_number = expected.is_number();
  if (expected_number) {
    if (!actual.is_number()) {
      return mismatch();
    }
    const double left = expected.get_double().value();
    const double right = actual.get_double().value();
    if (std::fabs(left - right) > 1e-9 * std::max(1.0, std::fabs(left))) {
      return mismatch();
    }
    return "";
  }
  if (expected.type() != actual.type()) {
    return mismatch();
  }
  switch (expected.type()) {
    case element_type::OBJECT: {
      const simdjson::dom::object expected_object = expected.get_object().value();
      const simdjson::dom::object actual_object = actual.get_object().value();
      for (const auto field : expected_object) {
        element other;
        if (actual_object[field.key].get(other) != simdjson::SUCCESS) {
          return path + "." + std::string(field.key) + ": missing";
        }
        std::string diff = Diff(field.value, other, path + "." + std::string(field.key));
        if (!diff.empty()) {
          return diff;
        }
      }
      return "";
    }
    case element_type::ARRAY: {
      const auto left = expected.get_array().value();
      const auto right = actual.get_array().value();
      if (left.size() != right.size()) {
        return mismatch();
      }
      for (size_t item_idx = 0; item_idx < left.size(); ++item_idx) {
        std::string diff = Diff(left.at(item_idx).value(), right.at(item_idx).value(),
                                path + "[" + std::to_string(item_idx) + "]");
        if (!diff.empty()) {
          return diff;
        }
      }
      return "";
    }
    default:
      return Minified(expected) == Minified(actual) ? "" : mismatch();
  }
}

}  // namespace

std::string JsonSubsetDiff(std::string_view expected, std::string_view actual) {
  simdjson::dom::parser expected_parser;
  simdjson::dom::parser actual_parser;
  element expected_root;
  element actual_root;
  const simdjson::padded_string expected_padded(expected);
  const simdjson::padded_string actual_padded(actual);
  if (expected_parser.parse(expected_padded).get(expected_root) != simdjson::SUCCESS) {
    return "expected: malformed JSON";
  }
  if (actual_parser.parse(actual_padded).get(actual_root) != simdjson::SUCCESS) {
    return "actual: malformed JSON";
  }
  return Diff(expected_root, actual_root, "$");
}

}  // namespace minpanel::query::testing
