// Fuzzes the PII detectors on arbitrary bytes: detections stay in bounds,
// sorted and disjoint; ScanKinds agrees with Scan, and its prefilter
// MayHoldKinds lets through every text Scan finds its kinds in; Redact
// agrees with Scan, counts each detection once, and its output keeps no
// detected span.
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "privacy/detectors.h"
#include "fuzz_check.h"

namespace {

using minpanel::fuzz::Check;

// True when `needle` occurs in `text` at a place no detection overlaps, so
// the redacted output may legitimately still contain it.
bool OccursOutsideDetections(std::string_view text, std::string_view needle,
                             const std::vector<minpanel::privacy::Detection>& detections) {
  for (size_t pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + 1)) {
    bool overlaps = false;
    for (const auto& detection : detections) {
      overlaps = overlaps || (pos < detection.begin + detection.length &&
                              detection.begin < pos + needle.size());
    }
    if (!overlaps) {
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel::privacy;
  static const Detectors detectors;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::vector<Detection> detections;
  detectors.Scan(text, &detections);
  size_t covered_end = 0;
  for (const Detection& detection : detections) {
    Check(detection.length > 0, "detection is not empty");
    Check(detection.begin >= covered_end, "detections are sorted and disjoint");
    Check(detection.begin + detection.length <= size, "detection in bounds");
    covered_end = detection.begin + detection.length;
  }

  // ScanKinds is Scan filtered to the kinds asked for (the first byte
  // picks them).
  const uint32_t kinds = size == 0 ? 0 : data[0];
  std::vector<Detection> of_kinds;
  detectors.ScanKinds(text, kinds, &of_kinds);
  size_t filtered = 0;
  for (const Detection& detection : detections) {
    if ((kinds >> static_cast<uint32_t>(detection.kind) & 1) != 0) {
      Check(filtered < of_kinds.size() && of_kinds[filtered] == detection,
            "ScanKinds finds what Scan finds of its kinds");
      ++filtered;
    }
  }
  Check(filtered == of_kinds.size(), "ScanKinds finds nothing Scan does not");

  // MayHoldKinds, the prefilter ScanKinds asks first, never rules out a
  // text in which Scan finds one of the kinds asked for (the same kinds,
  // and each kind alone).
  if (filtered > 0) {
    Check(detectors.MayHoldKinds(text, kinds), "MayHoldKinds lets through what Scan finds");
  }
  for (const Detection& detection : detections) {
    Check(detectors.MayHoldKinds(text, 1u << static_cast<uint32_t>(detection.kind)),
          "MayHoldKinds lets through each kind Scan finds");
  }

  DetectorCounts counts;
  const std::optional<std::string> redacted = detectors.Redact(text, &counts);
  Check(redacted.has_value() == !detections.empty(), "Redact is nullopt exactly for clean text");
  const uint64_t counted =
      std::accumulate(counts.by_kind.begin(), counts.by_kind.end(), uint64_t{0});
  Check(counted == detections.size(), "each detection counted once");
  if (!redacted) {
    return 0;
  }
  for (const Detection& detection : detections) {
    const std::string_view span = text.substr(detection.begin, detection.length);
    // A span holding '[' could be rebuilt around a placeholder; skip those.
    if (span.find('[') != std::string_view::npos || span.find(']') != std::string_view::npos) {
      continue;
    }
    Check(redacted->find(span) == std::string::npos ||
              OccursOutsideDetections(text, span, detections),
          "redacted output keeps no detected span");
  }
  return 0;
}
