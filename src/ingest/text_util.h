// Small text helpers shared by the ingest decoders (internal to ingest).
// All functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/core.h"

namespace minpanel::ingest::internal {

// `text` without leading and trailing ASCII whitespace.
std::string_view TrimAsciiWhitespace(std::string_view text);

// The longest prefix of `text` of at most `bytes_max` bytes that does not end
// inside a UTF-8 sequence. `text` must be valid UTF-8 (the JSON parser
// guarantees it), so only continuation bytes need to be stepped over.
std::string_view Utf8Prefix(std::string_view text, size_t bytes_max);

// Percent-decodes one form component into `out` (cleared first), turning '+'
// into a space. InvalidArgument names the byte offset of a bad escape.
Status PercentDecode(std::string_view component, std::string* out);

// The percent-decoded value of the first `name` field in form text, or
// nullopt when the text has no such field. Decodes only the field it returns,
// so scanning a large form body for `data` costs one pass and one copy.
Result<std::optional<std::string>> FindFormField(std::string_view text, std::string_view name);

}  // namespace minpanel::ingest::internal
