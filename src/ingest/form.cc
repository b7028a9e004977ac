// application/x-www-form-urlencoded parsing for queries and form bodies.
#include <cstdint>

#include "ingest/ingest.h"
#include "ingest/text_util.h"

namespace minpanel::ingest {
namespace internal {
namespace {

int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

bool IsAsciiWhitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Splits "name=value" at the first '='; a pair without '=' has an empty value.
void SplitPair(std::string_view pair, std::string_view* name, std::string_view* value) {
  const size_t equals = pair.find('=');
  if (equals == std::string_view::npos) {
    *name = pair;
    *value = {};
    return;
  }
  *name = pair.substr(0, equals);
  *value = pair.substr(equals + 1);
}

// Whether the encoded component decodes to `name` without allocating in the
// common case (names are plain ASCII and rarely escaped).
Result<bool> ComponentEquals(std::string_view component, std::string_view name,
                             std::string* scratch) {
  if (component.find_first_of("%+") == std::string_view::npos) {
    return component == name;
  }
  MP_RETURN_IF_ERROR(PercentDecode(component, scratch));
  return *scratch == name;
}

}  // namespace

std::string_view TrimAsciiWhitespace(std::string_view text) {
  while (!text.empty() && IsAsciiWhitespace(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && IsAsciiWhitespace(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

std::string_view Utf8Prefix(std::string_view text, size_t bytes_max) {
  if (text.size() <= bytes_max) {
    return text;
  }
  size_t end = bytes_max;
  // Step back over continuation bytes (10xxxxxx) to the start of the
  // sequence that straddles the cut, and cut before it.
  while (end > 0 && (static_cast<uint8_t>(text[end]) & 0xC0) == 0x80) {
    --end;
  }
  return text.substr(0, end);
}

Status PercentDecode(std::string_view component, std::string* out) {
  out->clear();
  out->reserve(component.size());
  // Plain runs are copied whole: a base64 `data` value is tens of kilobytes
  // with few or no escapes.
  size_t run_start = 0;
  for (size_t byte_idx = 0; byte_idx < component.size(); ++byte_idx) {
    const char c = component[byte_idx];
    if (c != '+' && c != '%') {
      continue;
    }
    out->append(component.data() + run_start, byte_idx - run_start);
    if (c == '+') {
      out->push_back(' ');
      run_start = byte_idx + 1;
      continue;
    }
    const int high = byte_idx + 1 < component.size() ? HexDigitValue(component[byte_idx + 1]) : -1;
    const int low = byte_idx + 2 < component.size() ? HexDigitValue(component[byte_idx + 2]) : -1;
    if (high < 0 || low < 0) {
      return Status::InvalidArgument("form: malformed percent escape at byte " +
                                     std::to_string(byte_idx));
    }
    out->push_back(static_cast<char>(high * 16 + low));
    byte_idx += 2;
    run_start = byte_idx + 1;
  }
  out->append(component.data() + run_start, component.size() - run_start);
  return Status::Ok();
}

Result<std::optional<std::string>> FindFormField(std::string_view text, std::string_view name) {
  std::string scratch;
  size_t fields_seen = 0;
  while (!text.empty()) {
    const size_t amp = text.find('&');
    const std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    if (++fields_seen > kFormFieldsMax) {
      return Status::ResourceExhausted("form: more than " + std::to_string(kFormFieldsMax) +
                                       " fields (kFormFieldsMax)");
    }
    std::string_view pair_name;
    std::string_view pair_value;
    SplitPair(pair, &pair_name, &pair_value);
    MP_ASSIGN_OR_RETURN(const bool matches, ComponentEquals(pair_name, name, &scratch));
    if (matches) {
      std::string value;
      MP_RETURN_IF_ERROR(PercentDecode(pair_value, &value));
      return std::optional<std::string>(std::move(value));
    }
  }
  return std::optional<std::string>();
}

}  // namespace internal

Result<std::vector<std::pair<std::string, std::string>>> ParseForm(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!text.empty()) {
    const size_t amp = text.find('&');
    const std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    if (pairs.size() == kFormFieldsMax) {
      return Status::ResourceExhausted("form: more than " + std::to_string(kFormFieldsMax) +
                                       " fields (kFormFieldsMax)");
    }
    std::string_view name;
    std::string_view value;
    internal::SplitPair(pair, &name, &value);
    auto& decoded = pairs.emplace_back();
    MP_RETURN_IF_ERROR(internal::PercentDecode(name, &decoded.first));
    MP_RETURN_IF_ERROR(internal::PercentDecode(value, &decoded.second));
  }
  return pairs;
}

std::optional<std::string_view> FindFormValue(
    const std::vector<std::pair<std::string, std::string>>& pairs, std::string_view name) {
  for (const auto& [pair_name, pair_value] : pairs) {
    if (pair_name == name) {
      return std::string_view(pair_value);
    }
  }
  return std::nullopt;
}

}  // namespace minpanel::ingest
