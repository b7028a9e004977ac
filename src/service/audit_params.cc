// The masked parameters of a read's audit record (audit_params.h).
#include "service/audit_params.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <vector>

#include "core/text.h"
#include "privacy/policy_file.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

// The longest cut marker and its comma: what every item must leave room
// for, with one closing bracket per open container.
constexpr std::string_view kCutInArray = "\"<cut>\"";
constexpr std::string_view kCutInObject = "\"<cut>\":true";
constexpr size_t kCutReserveBytes = 1 + kCutInObject.size();

// Query fields whose numbers are the query's own sizes and times, not data.
constexpr std::array<std::string_view, 5> kAuditParamsNumberKeys = {"from", "to", "limit",
                                                                    "periods", "window_ms"};
// A structural field of the query whose name ends in "key".
constexpr std::string_view kGroupKeyField = "group_key";

std::string Quoted(std::string_view text) {
  std::string quoted;
  quoted.reserve(text.size() + 2);
  AppendJsonString(text, &quoted);
  return quoted;
}

// JSON text built item by item, never longer than `bytes_max`: an item that
// would not leave room to close every open container with a cut marker is
// dropped, the marker written, every container closed and later items
// ignored. Not thread-safe; one per call.
class CappedJson {
 public:
  explicit CappedJson(size_t bytes_max) : bytes_max_(bytes_max) {}

  bool cut() const { return cut_; }

  // The next item of the innermost container: `key` (already quoted; empty
  // in a list or at the top) and `value` (JSON text, or "{" or "[" that
  // opens a container the caller closes with Close). False once cut.
  bool Item(std::string_view key, std::string_view value) {
    if (cut_) {
      return false;
    }
    const bool comma = !frames_.empty() && !frames_.back().first;
    const bool opens = value == "{" || value == "[";
    const size_t open_after = frames_.size() + (opens ? 1 : 0);
    const size_t needed = (comma ? 1 : 0) + key.size() + (key.empty() ? 0 : 1) + value.size();
    if (text_.size() + needed + kCutReserveBytes + open_after > bytes_max_) {
      Cut();
      return false;
    }
    if (comma) {
      text_.push_back(',');
    }
    if (!frames_.empty()) {
      frames_.back().first = false;
    }
    if (!key.empty()) {
      text_.append(key);
      text_.push_back(':');
    }
    text_.append(value);
    if (opens) {
      frames_.push_back(Frame{value == "{", true});
    }
    return true;
  }

  void Close() {
    if (cut_ || frames_.empty()) {
      return;
    }
    text_.push_back(frames_.back().object ? '}' : ']');
    frames_.pop_back();
  }

  std::string Finish() && {
    while (!frames_.empty()) {
      Close();
    }
    return std::move(text_);
  }

 private:
  struct Frame {
    bool object = false;
    bool first = true;
  };

  void Cut() {
    cut_ = true;
    if (frames_.empty()) {
      return;
    }
    if (!frames_.back().first) {
      text_.push_back(',');
    }
    text_.append(frames_.back().object ? kCutInObject : kCutInArray);
    while (!frames_.empty()) {
      text_.push_back(frames_.back().object ? '}' : ']');
      frames_.pop_back();
    }
  }

  size_t bytes_max_;
  std::string text_;
  std::vector<Frame> frames_;
  bool cut_ = false;
};

// "<masked:KIND>" of the first thing a detector flags in `text`; nullopt
// when nothing is. Redact first: its per-thread memory of clean short texts
// makes the usual clean name cheap.
std::optional<std::string> DetectedMask(std::string_view text,
                                        const privacy::Detectors& detectors) {
  if (!detectors.Redact(text, nullptr).has_value()) {
    return std::nullopt;
  }
  std::vector<privacy::Detection> found;
  detectors.Scan(text, &found);
  if (found.empty()) {
    return std::string(kMaskedValue);
  }
  return "<masked:" + std::string(privacy::PiiKindName(found.front().kind)) + ">";
}

// A string value as it may stand in a record, unquoted.
std::string MaskedText(std::string_view text, const privacy::Detectors& detectors) {
  if (!simdjson::validate_utf8(text.data(), text.size())) {
    return std::string(kNotUtf8);
  }
  std::optional<std::string> mask = DetectedMask(text, detectors);
  return mask.has_value() ? std::move(*mask) : std::string(text);
}

// A filter's property that names a subject, an organisation or a person's
// field: its values could pick out someone.
bool NamesSomeone(std::string_view property) {
  if (property == query::kDistinctIdProperty || property == "$distinct_id") {
    return true;
  }
  const privacy::ReservedKey reserved = privacy::ClassifyKey(property);
  return reserved == privacy::ReservedKey::kSubjectId ||
         reserved == privacy::ReservedKey::kGroupId || reserved == privacy::ReservedKey::kPerson ||
         reserved == privacy::ReservedKey::kProfilePerson;
}

// How an object's "value" and "values" are shown.
enum class FilterMask : uint8_t { kNone, kSomeone, kCredential };

FilterMask FilterMaskOf(simdjson::dom::object object) {
  std::string_view property;
  if (object["property"].get(property) != simdjson::SUCCESS) {
    return FilterMask::kNone;
  }
  if (NamesSomeone(property)) {
    return FilterMask::kSomeone;
  }
  return LooksLikeCredentialName(property) ? FilterMask::kCredential : FilterMask::kNone;
}

// Digits of a number's integer part, sign aside.
size_t IntegerDigits(uint64_t magnitude) {
  size_t digits = 1;
  while (magnitude >= 10) {
    magnitude /= 10;
    ++digits;
  }
  return digits;
}

bool IsNumberKey(std::string_view key) {
  return std::find(kAuditParamsNumberKeys.begin(), kAuditParamsNumberKeys.end(), key) !=
         kAuditParamsNumberKeys.end();
}

// The JSON text of a scalar, masked. `key` is the field it stands under (a
// list item: the list's field).
std::string ScalarText(simdjson::dom::element element, std::string_view key,
                       const privacy::Detectors& detectors) {
  const bool masks_numbers = !IsNumberKey(key);
  switch (element.type()) {
    case simdjson::dom::element_type::STRING:
      return Quoted(MaskedText(element.get_string().value(), detectors));
    case simdjson::dom::element_type::INT64: {
      const int64_t value = element.get_int64().value();
      const uint64_t magnitude =
          value < 0 ? uint64_t{0} - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
      if (masks_numbers && IntegerDigits(magnitude) >= kAuditParamsDigitsMin) {
        return Quoted(kMaskedNumber);
      }
      return std::to_string(value);
    }
    case simdjson::dom::element_type::UINT64: {
      const uint64_t value = element.get_uint64().value();
      if (masks_numbers && IntegerDigits(value) >= kAuditParamsDigitsMin) {
        return Quoted(kMaskedNumber);
      }
      return std::to_string(value);
    }
    case simdjson::dom::element_type::DOUBLE: {
      const double value = element.get_double().value();
      if (masks_numbers && std::fabs(value) >= 1e6) {
        return Quoted(kMaskedNumber);
      }
      std::array<char, 32> digits{};
      const auto written = std::to_chars(digits.data(), digits.data() + digits.size(), value);
      return std::string(digits.data(), written.ptr);
    }
    case simdjson::dom::element_type::BOOL:
      return element.get_bool().value() ? "true" : "false";
    default:
      return "null";
  }
}

// What a field's value becomes before its type is looked at; nullopt: the
// value as it is, masked by type.
std::optional<std::string> FieldMask(std::string_view key, FilterMask filter,
                                     simdjson::dom::element value) {
  if (key != kGroupKeyField && LooksLikeCredentialName(key)) {
    return Quoted(kMaskedCredential);
  }
  if (filter == FilterMask::kNone || (key != "value" && key != "values")) {
    return std::nullopt;
  }
  if (filter == FilterMask::kCredential) {
    return Quoted(kMaskedCredential);
  }
  simdjson::dom::array list;
  if (key == "values" && value.get(list) == simdjson::SUCCESS) {
    return Quoted("<masked:" + std::to_string(list.size()) + " values>");
  }
  return Quoted(kMaskedValue);
}

// One open container of the walk.
struct WalkFrame {
  bool object = false;
  simdjson::dom::object::iterator field;
  simdjson::dom::object::iterator fields_end;
  simdjson::dom::array::iterator item;
  simdjson::dom::array::iterator items_end;
  std::string_view key;  // the field the container stands under
  FilterMask filter = FilterMask::kNone;
};

// Writes `value` (under `key`, quoted as `quoted_key`) as the next item;
// a container is pushed onto `stack` for the walk to go through.
void WriteValue(std::string_view quoted_key, std::string_view key, FilterMask filter,
                simdjson::dom::element value, const privacy::Detectors& detectors,
                std::vector<WalkFrame>* stack, CappedJson* out) {
  if (std::optional<std::string> masked = FieldMask(key, filter, value)) {
    out->Item(quoted_key, *masked);
    return;
  }
  simdjson::dom::object object;
  simdjson::dom::array array;
  const bool is_object = value.get(object) == simdjson::SUCCESS;
  const bool is_array = !is_object && value.get(array) == simdjson::SUCCESS;
  if (!is_object && !is_array) {
    out->Item(quoted_key, ScalarText(value, key, detectors));
    return;
  }
  if (stack->size() >= kAuditParamsDepthMax) {
    out->Item(quoted_key, Quoted(kAuditParamsCut));
    return;
  }
  if (!out->Item(quoted_key, is_object ? "{" : "[")) {
    return;
  }
  WalkFrame frame;
  frame.object = is_object;
  frame.key = key;
  if (is_object) {
    frame.field = object.begin();
    frame.fields_end = object.end();
    frame.filter = FilterMaskOf(object);
  } else {
    frame.item = array.begin();
    frame.items_end = array.end();
  }
  stack->push_back(frame);
}

// The masked text of a parsed JSON document, without recursion.
std::string MaskedDocument(simdjson::dom::element root, const privacy::Detectors& detectors) {
  CappedJson out(kAuditParamsBytesMax);
  std::vector<WalkFrame> stack;
  if (root.type() == simdjson::dom::element_type::OBJECT) {
    WriteValue("", "", FilterMask::kNone, root, detectors, &stack, &out);
  } else {
    // A list or a scalar at the top (not a query, but recorded as asked):
    // {"query":…}.
    out.Item("", "{");
    WriteValue(Quoted("query"), "query", FilterMask::kNone, root, detectors, &stack, &out);
  }
  while (!stack.empty() && !out.cut()) {
    WalkFrame& frame = stack.back();
    if (frame.object) {
      if (frame.field == frame.fields_end) {
        out.Close();
        stack.pop_back();
        continue;
      }
      const simdjson::dom::key_value_pair field = *frame.field;
      ++frame.field;
      const std::optional<std::string> key_mask = DetectedMask(field.key, detectors);
      const std::string quoted_key = Quoted(key_mask.has_value() ? *key_mask : field.key);
      const FilterMask filter = frame.filter;
      WriteValue(quoted_key, field.key, filter, field.value, detectors, &stack, &out);
    } else {
      if (frame.item == frame.items_end) {
        out.Close();
        stack.pop_back();
        continue;
      }
      const simdjson::dom::element item = *frame.item;
      ++frame.item;
      const std::string_view key = frame.key;
      WriteValue("", key, FilterMask::kNone, item, detectors, &stack, &out);
    }
  }
  return std::move(out).Finish();
}

std::string OneField(std::string_view key, std::string_view text) {
  return "{" + Quoted(key) + ":" + Quoted(text) + "}";
}

}  // namespace

bool LooksLikeCredentialName(std::string_view name) {
  std::string folded;
  folded.reserve(name.size());
  for (const char c : name) {
    if (c >= 'A' && c <= 'Z') {
      folded.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (c >= 'a' && c <= 'z') {
      folded.push_back(c);
    }
  }
  static constexpr std::array<std::string_view, 7> kWords = {
      "secret", "token", "password", "passwd", "auth", "credential", "cookie"};
  for (const std::string_view word : kWords) {
    if (folded.find(word) != std::string::npos) {
      return true;
    }
  }
  return folded.ends_with("key") || folded.ends_with("keys");
}

std::string AuditName(std::string_view name, const privacy::Detectors& detectors) {
  return MaskedText(name, detectors);
}

std::string QueryAuditParams(std::string_view query_json, const privacy::Detectors& detectors) {
  if (!simdjson::validate_utf8(query_json.data(), query_json.size())) {
    return OneField("query", kNotUtf8);
  }
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(query_json.data(), query_json.size()).get(root) != simdjson::SUCCESS) {
    return OneField("query", "<not JSON>");
  }
  return MaskedDocument(root, detectors);
}

std::string ExportAuditParams(const ExportOptions& options, const privacy::Detectors& detectors) {
  CappedJson out(kAuditParamsBytesMax);
  out.Item("", "{");
  out.Item(Quoted("from_date"), Quoted(MaskedText(options.from_date, detectors)));
  out.Item(Quoted("to_date"), Quoted(MaskedText(options.to_date, detectors)));
  if (!options.event_names_json.empty()) {
    const std::string_view names = options.event_names_json;
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    simdjson::dom::array list;
    std::string_view single;
    if (!simdjson::validate_utf8(names.data(), names.size())) {
      out.Item(Quoted("event"), Quoted(kNotUtf8));
    } else if (parser.parse(names.data(), names.size()).get(root) != simdjson::SUCCESS) {
      out.Item(Quoted("event"), Quoted("<not JSON>"));
    } else if (root.get(single) == simdjson::SUCCESS) {
      out.Item(Quoted("event"), Quoted(AuditName(single, detectors)));
    } else if (root.get(list) == simdjson::SUCCESS) {
      if (out.Item(Quoted("event"), "[")) {
        for (simdjson::dom::element item : list) {
          std::string_view name;
          const bool is_name = item.get(name) == simdjson::SUCCESS;
          if (!out.Item("", Quoted(is_name ? AuditName(name, detectors) : "<not a name>"))) {
            break;
          }
        }
        out.Close();
      }
    } else {
      out.Item(Quoted("event"), Quoted("<not a list>"));
    }
  }
  if (options.limit != 0) {
    out.Item(Quoted("limit"), std::to_string(options.limit));
  }
  if (options.distinct_id.has_value()) {
    out.Item(Quoted("distinct_id"), Quoted(kMaskedValue));
  }
  if (options.distinct_ids_json.has_value()) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    simdjson::dom::array list;
    const std::string_view ids = *options.distinct_ids_json;
    if (parser.parse(ids.data(), ids.size()).get(root) == simdjson::SUCCESS &&
        root.get(list) == simdjson::SUCCESS) {
      out.Item(Quoted("distinct_ids"), Quoted("<masked:" + std::to_string(list.size()) + " ids>"));
    } else {
      out.Item(Quoted("distinct_ids"), Quoted(kMaskedValue));
    }
  }
  return std::move(out).Finish();
}

}  // namespace minpanel::service
