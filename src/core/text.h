// Small pure text helpers that more than one module needs. Header only and
// free of the rest of core, so any file may include it; no state, so safe
// from any thread.
#pragma once

#include <string>
#include <string_view>

namespace minpanel {

// `text` without the spaces and horizontal tabs at either end: the optional
// whitespace HTTP allows around header values and list elements, and the
// padding pasted around a URL. Every other byte stays, CR, LF and
// non-ASCII spaces included, so a caller that refuses control characters
// still sees them. The result views `text`'s bytes.
inline std::string_view TrimSpacesAndTabs(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// Appends `text` as a JSON string: quoted, `"` and `\` escaped, every byte
// below 0x20 as \u00XX (lowercase hex), every other byte as it is (valid
// UTF-8 stays valid). The audit log hashes what this writes, so its output
// must never change; query::AppendJsonString (export.cc) is the faster one,
// with \n-style escapes, for answers.
inline void AppendJsonString(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (byte < 0x20) {
      out->append("\\u00");
      out->push_back(kHex[byte >> 4]);
      out->push_back(kHex[byte & 0xf]);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

}  // namespace minpanel
