// Small pure text helpers that more than one module needs. Header only and
// free of the rest of core, so any file may include it; no state, so safe
// from any thread.
#pragma once

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

}  // namespace minpanel
