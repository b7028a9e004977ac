// The `generalise` action for page URLs and referrers: what is left of a URL
// once the parts that identify a person are gone.
//
// GeneraliseUrl keeps scheme, host, port and path; it replaces path segments
// that look like identifiers with typed placeholders, keeps only the query
// parameters whose name starts with an allowed prefix (`utm_` by default) and
// drops the fragment. ReferrerHost keeps the host alone.
//
// Both are pure functions of their input: thread-safe, no allocation beyond
// the returned string, no recursion, and a fixed cap (kUrlBytesMax) on how
// much of the input they look at.
//
// Neither reports an error as a Status: the only failure is "this is not a
// URL we can make safe", and the caller's answer is always the same — drop
// the value. So unparsable input returns an empty string, which callers must
// treat as "drop".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace minpanel::privacy {

// Inputs longer than this are cut to this many bytes before parsing. The query
// and fragment of a cut URL are dropped whatever the policy says (a cut
// parameter value cannot be trusted), and when the cut falls inside the path,
// the partial last segment becomes kTruncatedSegment, so a reader sees that
// the stored path is not the whole path.
inline constexpr size_t kUrlBytesMax = 8192;
// Longer hosts are not DNS names (RFC 1035 allows 253); such input is garbage.
inline constexpr size_t kHostBytesMax = 255;

inline constexpr std::string_view kIdSegment = ":id";
inline constexpr std::string_view kUuidSegment = ":uuid";
inline constexpr std::string_view kHexSegment = ":hex";
inline constexpr std::string_view kEmailSegment = ":email";
inline constexpr std::string_view kTokenSegment = ":token";
inline constexpr std::string_view kTruncatedSegment = ":truncated";
// What the detectors leave of a URL found in a free value that cannot be
// made safe (GeneraliseUrl returned "").
inline constexpr std::string_view kUrlRedacted = "[url]";

// Hex runs at least this long are hashes or ids, not words.
inline constexpr size_t kHexSegmentCharsMin = 16;
// Mixed letter-and-digit segments at least this long are treated as tokens
// when they do not read like a slug of words (see ClassifyPathSegment).
inline constexpr size_t kTokenSegmentCharsMin = 20;

struct UrlPolicy {
  // A query parameter is kept when its (percent-decoded) name starts with one
  // of these prefixes, compared ignoring ASCII case. Kept values still pass
  // through the detectors afterwards.
  std::vector<std::string> query_keep_prefixes = {"utm_"};
  // When true the fragment is kept verbatim (hash-routed apps); the detectors
  // still see it afterwards. Off by default because OAuth implicit flows put
  // access tokens there.
  bool keep_fragment = false;
};

// Returns the generalised URL, or "" when `url` cannot be made safe (the
// caller then drops the value). Accepted shapes:
//   - absolute: "scheme://[userinfo@]host[:port]/path?query#fragment";
//     scheme and host are lowercased, userinfo is dropped, a port equal to the
//     scheme's default is dropped, an IPv6 host keeps its brackets;
//   - protocol-relative "//host/path" and scheme-less "example.com/path",
//     "localhost:3000/x" (returned without a scheme);
//   - path-only "/org/123/keys" and relative "org/123/keys".
// Opaque URIs (mailto:, tel:, javascript:, data:) return "": they hold the
// personal data themselves. So do control characters, bad ports, bad hosts.
// Path segments are classified after percent-decoding; a segment that is not
// replaced keeps its original (encoded) spelling.
std::string GeneraliseUrl(std::string_view url, const UrlPolicy& policy);

// Returns the lowercased host of a referrer ("www.google.com"), "$direct" for
// Mixpanel's "$direct", and "" when there is no host to keep (unparsable,
// path-only, opaque).
std::string ReferrerHost(std::string_view referrer);

namespace internal {

// The placeholder for one decoded path segment, or "" when the segment is an
// ordinary word, slug or version and stays. Exposed for tests.
std::string_view ClassifyPathSegment(std::string_view decoded_segment);

// Percent-decodes `text`; invalid escapes are kept literally.
std::string PercentDecode(std::string_view text);

}  // namespace internal

}  // namespace minpanel::privacy
