#include "ingest/json_values.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "ingest/ingest.h"
#include "ingest/text_util.h"

namespace minpanel::ingest::internal {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

// A parser keeps the buffers of the largest document it has seen; past this
// size they are released before the next smaller document, so one huge batch
// does not pin its memory for the life of the thread.
constexpr size_t kParserRetainedBytesMax = 4 << 20;
constexpr size_t kParserInitialBytes = 64 << 10;
// Mixpanel's rule: a time above 1e11 is in milliseconds (1e11 s is in the
// year 5138; 1e11 ms is in 1973).
constexpr double kMillisecondsThreshold = 1e11;
constexpr int64_t kMillisecondsPerSecond = 1000;
// What a scalar costs towards kEventBytesMax beyond its key.
constexpr size_t kScalarBytes = 8;

std::string Limit(size_t actual, std::string_view unit, size_t limit, std::string_view name) {
  return std::to_string(actual) + " " + std::string(unit) + ", over the limit of " +
         std::to_string(limit) + " (" + std::string(name) + ")";
}

std::string TruncatedString(std::string_view text) {
  return std::string(Utf8Prefix(text, kStringValueBytesMax));
}

std::string MinifiedJson(element value) {
  std::string text = simdjson::minify(value);
  text.resize(Utf8Prefix(text, kStringValueBytesMax).size());
  return text;
}

template <typename Number>
std::string ToChars(Number number) {
  std::array<char, 32> buffer{};
  const auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), number);
  return error == std::errc() ? std::string(buffer.data(), end) : std::string();
}

Problem TimeOutOfRange(std::string_view field, bool too_early) {
  if (too_early) {
    return RecordProblem{std::string(field), "before 1971-01-01 (kEventTimeMinMs)"};
  }
  return RecordProblem{std::string(field), "more than " +
                                               std::to_string(kEventTimeFutureMaxMs / 1000) +
                                               " s in the future (kEventTimeFutureMaxMs)"};
}

}  // namespace

Result<element> ParseWithParser(std::unique_ptr<simdjson::dom::parser>& parser, size_t depth_max,
                                std::string_view json, const JsonErrorNames& names) {
  const bool oversized = parser != nullptr && parser->capacity() > kParserRetainedBytesMax &&
                         json.size() <= kParserRetainedBytesMax;
  if (parser == nullptr || oversized) {
    auto fresh = std::make_unique<simdjson::dom::parser>();
    if (fresh->allocate(std::max(json.size(), kParserInitialBytes), depth_max) !=
        simdjson::SUCCESS) {
      parser.reset();
      return Status::ResourceExhausted(std::string(names.field) +
                                       ": out of memory for the JSON parser");
    }
    parser = std::move(fresh);
  }
  element root;
  const simdjson::error_code error = parser->parse(json.data(), json.size()).get(root);
  const std::string field(names.field);
  switch (error) {
    case simdjson::SUCCESS:
      return root;
    case simdjson::DEPTH_ERROR:
      return Status::ResourceExhausted(
          field + ": JSON nested more than " + std::to_string(kJsonDepthMax) + " levels deep" +
          (names.record.empty() ? "" : " in one " + std::string(names.record)) +
          " (kJsonDepthMax)");
    case simdjson::UTF8_ERROR:
      return Status::InvalidArgument(field + ": malformed JSON: invalid UTF-8");
    case simdjson::CAPACITY:
    case simdjson::MEMALLOC:
      return Status::ResourceExhausted(field + ": JSON document too large to parse");
    default:
      return Status::InvalidArgument(field + ": malformed JSON: " +
                                     simdjson::error_message(error));
  }
}

Result<element> ParseJson(std::string_view json) {
  constexpr JsonErrorNames kNames{"data", "record"};
  const std::string_view trimmed = TrimAsciiWhitespace(json);
  // A batch array adds one level above its records.
  if (!trimmed.empty() && trimmed.front() == '[') {
    return ParseWithThreadParser<2>(json, kNames);
  }
  return ParseWithThreadParser<1>(json, kNames);
}

std::string NumberText(element number) {
  switch (number.type()) {
    case element_type::INT64:
      return ToChars(number.get_int64().value_unsafe());
    case element_type::UINT64:
      return ToChars(number.get_uint64().value_unsafe());
    case element_type::DOUBLE:
      return ToChars(number.get_double().value_unsafe());
    default:
      return std::string();
  }
}

Problem ReadTimeMs(element value, std::string_view field, int64_t now_ms, int64_t* time_ms) {
  const int64_t latest_ms = now_ms + kEventTimeFutureMaxMs;
  switch (value.type()) {
    case element_type::INT64: {
      const int64_t raw = value.get_int64().value_unsafe();
      // Checked before scaling so that seconds * 1000 cannot overflow.
      if (raw < kEventTimeMinMs / kMillisecondsPerSecond) {
        return TimeOutOfRange(field, true);
      }
      const bool in_ms = static_cast<double>(raw) > kMillisecondsThreshold;
      *time_ms = in_ms ? raw : raw * kMillisecondsPerSecond;
      break;
    }
    case element_type::UINT64:
      return TimeOutOfRange(field, false);  // above INT64_MAX
    case element_type::DOUBLE: {
      const double raw = value.get_double().value_unsafe();
      const double ms = raw > kMillisecondsThreshold ? raw : raw * kMillisecondsPerSecond;
      if (ms < static_cast<double>(kEventTimeMinMs)) {
        return TimeOutOfRange(field, true);
      }
      if (ms > static_cast<double>(latest_ms)) {
        return TimeOutOfRange(field, false);
      }
      *time_ms = std::llround(ms);
      break;
    }
    default:
      return RecordProblem{std::string(field), "must be a number (seconds or milliseconds)"};
  }
  if (*time_ms < kEventTimeMinMs) {
    return TimeOutOfRange(field, true);
  }
  if (*time_ms > latest_ms) {
    return TimeOutOfRange(field, false);
  }
  return std::nullopt;
}

Problem ReadDistinctId(element value, std::string_view field, bool check_blocklist,
                       std::string* out) {
  switch (value.type()) {
    case element_type::STRING:
      out->assign(value.get_string().value_unsafe());
      break;
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      *out = NumberText(value);
      break;
    default:
      return RecordProblem{std::string(field), "must be a string or a number"};
  }
  if (out->size() > kDistinctIdBytesMax) {
    return RecordProblem{std::string(field),
                         Limit(out->size(), "bytes", kDistinctIdBytesMax, "kDistinctIdBytesMax")};
  }
  if (check_blocklist && IsBlockedDistinctId(*out)) {
    return RecordProblem{std::string(field), "\"" + std::string(TrimAsciiWhitespace(*out)) +
                                                 "\" is a placeholder, not an id (blocklist)"};
  }
  return std::nullopt;
}

Problem PropertyWriter::Append(std::string_view key, element value) {
  if (value.type() == element_type::OBJECT) {
    return AppendFlattened(key, value.get_object().value_unsafe());
  }
  return AppendLeaf(key, value);
}

// Walks nested objects with an explicit, fixed-size stack: the nesting comes
// from the client, so no recursion.
Problem PropertyWriter::AppendFlattened(std::string_view key, simdjson::dom::object object) {
  struct Frame {
    simdjson::dom::object::iterator next;
    simdjson::dom::object::iterator end;
    size_t path_bytes;
  };
  std::array<Frame, kPropertyNestingMax> frames;
  size_t depth = 0;
  path_.assign(key);
  frames[depth++] = Frame{object.begin(), object.end(), path_.size()};
  while (depth > 0) {
    Frame& frame = frames[depth - 1];
    if (frame.next == frame.end) {
      --depth;
      continue;
    }
    const std::string_view member_key = frame.next.key();
    const element member = frame.next.value();
    ++frame.next;
    path_.resize(frame.path_bytes);
    path_.push_back('.');
    path_.append(member_key);
    if (member.type() == element_type::OBJECT && depth < kPropertyNestingMax) {
      const simdjson::dom::object child = member.get_object().value_unsafe();
      frames[depth++] = Frame{child.begin(), child.end(), path_.size()};
      continue;
    }
    if (Problem problem = AppendLeaf(path_, member)) {
      return problem;
    }
  }
  return std::nullopt;
}

Problem PropertyWriter::AppendLeaf(std::string_view key, element value) {
  if (key.empty()) {
    return RecordProblem{"properties", "empty property key"};
  }
  if (key.size() > kPropertyKeyBytesMax) {
    return RecordProblem{"properties", "a key of " + Limit(key.size(), "bytes",
                                                           kPropertyKeyBytesMax,
                                                           "kPropertyKeyBytesMax")};
  }
  if (out_->size() >= kPropertiesPerEventMax) {
    return RecordProblem{"properties", "more than " + std::to_string(kPropertiesPerEventMax) +
                                           " properties (kPropertiesPerEventMax)"};
  }
  // Built in place: a temporary Property would cost two extra moves per value.
  Property& property = out_->emplace_back();
  Value& converted = property.value;
  record_bytes_ += key.size() + kScalarBytes;
  switch (value.type()) {
    case element_type::ARRAY:
      if (Problem problem = ConvertList(key, value.get_array().value_unsafe(), &converted)) {
        return problem;  // the record is dropped, half-built property and all
      }
      break;
    case element_type::OBJECT:
      converted = Value::String(MinifiedJson(value));
      record_bytes_ += converted.as_string().size();
      break;
    case element_type::STRING: {
      const std::string_view text = value.get_string().value_unsafe();
      record_bytes_ += text.size();
      converted = Value::String(TruncatedString(text));
      break;
    }
    case element_type::INT64:
      converted = Value::Int(value.get_int64().value_unsafe());
      break;
    case element_type::UINT64:  // only values above INT64_MAX land here
      converted = Value::Double(static_cast<double>(value.get_uint64().value_unsafe()));
      break;
    case element_type::DOUBLE:
      converted = Value::Double(value.get_double().value_unsafe());
      break;
    case element_type::BOOL:
      converted = Value::Bool(value.get_bool().value_unsafe());
      break;
    case element_type::NULL_VALUE:
      break;
  }
  if (record_bytes_ > kEventBytesMax) {
    return RecordProblem{"event", "more than " + std::to_string(kEventBytesMax) +
                                      " bytes of keys and values (kEventBytesMax)"};
  }
  property.key.assign(key);
  return std::nullopt;
}

Problem PropertyWriter::ConvertList(std::string_view key, simdjson::dom::array array,
                                    Value* out) {
  const size_t item_count = array.size();
  if (item_count > kListItemsMax) {
    return RecordProblem{"properties." + std::string(key),
                         Limit(item_count, "items", kListItemsMax, "kListItemsMax")};
  }
  StringList items;
  items.reserve(item_count);
  for (const element item : array) {
    items.push_back(ItemText(item));
    record_bytes_ += items.back().size() + 1;
  }
  *out = Value::List(std::move(items));
  return std::nullopt;
}

std::string PropertyWriter::ItemText(element item) {
  switch (item.type()) {
    case element_type::STRING:
      return TruncatedString(item.get_string().value_unsafe());
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return NumberText(item);
    case element_type::BOOL:
      return item.get_bool().value_unsafe() ? "true" : "false";
    case element_type::NULL_VALUE:
      return "null";
    case element_type::ARRAY:
    case element_type::OBJECT:
      return MinifiedJson(item);
  }
  return std::string();
}

void PropertyWriter::Finish() {
  Properties& properties = *out_;
  if (properties.size() < 2) {
    return;
  }
  // Sorting (key, position) pairs finds duplicates in n log n; the scratch
  // vector is reused so the common no-duplicate case does not allocate.
  thread_local std::vector<std::pair<std::string_view, size_t>> order;
  order.clear();
  for (size_t property_idx = 0; property_idx < properties.size(); ++property_idx) {
    order.emplace_back(properties[property_idx].key, property_idx);
  }
  // Length first: most keys differ in length, so few comparisons reach
  // memcmp, and equal keys still end up adjacent.
  std::sort(order.begin(), order.end(), [](const auto& left, const auto& right) {
    if (left.first.size() != right.first.size()) {
      return left.first.size() < right.first.size();
    }
    const int order_by_text = left.first.compare(right.first);
    return order_by_text != 0 ? order_by_text < 0 : left.second < right.second;
  });
  bool has_duplicates = false;
  for (size_t group_start = 0; group_start < order.size();) {
    size_t group_end = group_start + 1;
    while (group_end < order.size() && order[group_end].first == order[group_start].first) {
      ++group_end;
    }
    if (group_end - group_start > 1) {
      has_duplicates = true;
      const size_t first = order[group_start].second;
      const size_t last = order[group_end - 1].second;
      properties[first].value = std::move(properties[last].value);
      for (size_t dup_idx = group_start + 1; dup_idx < group_end; ++dup_idx) {
        properties[order[dup_idx].second].key.clear();  // keys are never empty otherwise
      }
    }
    group_start = group_end;
  }
  order.clear();
  if (has_duplicates) {
    std::erase_if(properties, [](const Property& property) { return property.key.empty(); });
  }
}

}  // namespace minpanel::ingest::internal
