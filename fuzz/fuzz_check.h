// Invariant checks shared by the fuzz targets: a violated invariant aborts,
// which libFuzzer reports as a crash with the input that caused it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "ingest/ingest.h"

namespace minpanel::fuzz {

inline void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

inline void CheckProperties(const Properties& properties) {
  Check(properties.size() <= ingest::kPropertiesPerEventMax, "properties count");
  std::set<std::string> keys;
  for (const Property& property : properties) {
    Check(!property.key.empty(), "empty key");
    Check(property.key.size() <= ingest::kPropertyKeyBytesMax, "key length");
    Check(keys.insert(property.key).second, "duplicate key");
    if (property.value.type() == Value::Type::kString) {
      Check(property.value.as_string().size() <= ingest::kStringValueBytesMax, "string length");
    }
    if (property.value.type() == Value::Type::kList) {
      Check(property.value.as_list().size() <= ingest::kListItemsMax, "list length");
      for (const std::string& item : property.value.as_list()) {
        Check(item.size() <= ingest::kStringValueBytesMax, "list item length");
      }
    }
  }
}

// The time the ingest targets decode at (2026-11-26T09:31:50Z), so that the
// bounds on event times are fixed.
inline constexpr int64_t kDecodeNowMs = 1795685510000;

// What every adapter that takes a timestamp guarantees of an event it
// decoded at `now_ms`: a name of 1 to kEventNameBytesMax bytes, a time from
// kEventTimeMinMs to kEventTimeFutureMaxMs past `now_ms`, and properties
// within their limits (CheckProperties).
inline void CheckDecodedEvent(const RawEvent& event, int64_t now_ms) {
  Check(!event.name.empty() && event.name.size() <= ingest::kEventNameBytesMax, "name");
  Check(event.time_ms >= kEventTimeMinMs, "time too early");
  Check(event.time_ms <= now_ms + kEventTimeFutureMaxMs, "time too late");
  CheckProperties(event.properties);
}

}  // namespace minpanel::fuzz
