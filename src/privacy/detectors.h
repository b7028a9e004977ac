// PII detectors: find personal data and credentials inside free-text string
// values (property values, keys, event names) with no configuration, so the
// policy can redact them wherever they sit.
//
// A `Detectors` is immutable after construction and every method is const and
// keeps its scratch space on the stack or in locals, so one instance is shared
// by all threads; construct it once per process.
//
// Kinds: email addresses; phone numbers (E.164 with `+` or `00`, and national
// forms with typical structure: `(415) 555-0132`, `415-555-0132`,
// `020 7946 0958`); payment card numbers (13-19 digits, optional single
// spaces or dashes, card-brand prefix and Luhn checked); IBANs (country length
// and mod-97 checked, with or without spaces); IPv4 (four octets <= 255) and
// IPv6 (every compressed form, an IPv4 tail, zone-less); JWTs; API keys by
// their vendor prefix (OpenAI, Stripe, AWS, GitHub, Slack, Google); bearer
// tokens and long high-entropy secrets. The text is also scanned after
// percent-decoding, and base64-looking tokens are decoded and scanned once
// (no deeper nesting): a token whose decoded bytes hold PII is a detection of
// that kind over the whole token. Street addresses are not detected: no
// structure separates them reliably from ordinary text.
//
// Cost: every scanner is a hand-written single pass; the work is linear in
// the length of the text (each byte is visited a bounded number of times),
// whatever the input. Values with no '@', fewer than 7 digits and no long
// token skip most scanners.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace minpanel::privacy {

enum class PiiKind : uint8_t { kEmail, kPhone, kCard, kIban, kIpAddress, kJwt, kApiKey, kSecret };
inline constexpr size_t kPiiKindCount = 8;

// "email", "phone", "card", "iban", "ip", "jwt", "api_key", "secret".
std::string_view PiiKindName(PiiKind kind);

// A span of the scanned text: bytes [begin, begin + length).
struct Detection {
  PiiKind kind;
  size_t begin;
  size_t length;

  friend bool operator==(const Detection&, const Detection&) = default;
};

// Detections counted by kind, for metrics; indexed by the enum's value.
struct DetectorCounts {
  std::array<uint64_t, kPiiKindCount> by_kind{};
};

class Detectors {
 public:
  Detectors();

  // Appends to `out` every detection in `text`, leftmost first and
  // non-overlapping; where candidates overlap the leftmost wins, then the
  // longest, then the more specific kind (JWT before API key before secret).
  // `text` may hold any bytes; nothing of it is kept after the call.
  void Scan(std::string_view text, std::vector<Detection>* out) const;

  // Appends the detections Scan would append whose kind is in `kinds` (a
  // bit per PiiKind: 1 << kind), in the same order, and no others. Cheaper
  // than Scan when `kinds` leaves some out and `text` holds no candidate of
  // a wanted kind (most texts): the other kinds' scanners run only when one
  // does, to resolve overlaps as Scan does (another kind's candidate can
  // take a wanted one's place, never make one). The decoding layers
  // (percent, base64) run whatever `kinds`: decoded text may hold any kind.
  // The text first goes through MayHoldKinds.
  void ScanKinds(std::string_view text, uint32_t kinds, std::vector<Detection>* out) const;

  // False only when ScanKinds(text, kinds) appends nothing, decided in one
  // pass over `text` with no scanner run: for `kinds` among cards, IBANs,
  // JWTs, API keys and secrets, the shapes without which none of their
  // scanners, nor the decoding layers, can make a candidate (13 digits in a
  // row, spaces or dashes between them; a country's two letters and two
  // digits starting a word; "eyJ"; a vendor's key; "bearer "; a base64 run
  // of 32 characters, or of 18 that decodes to printable text; a percent
  // escape). Always true when `kinds` holds another kind. True does not
  // mean a detection: most texts with one of those shapes hold none.
  bool MayHoldKinds(std::string_view text, uint32_t kinds) const;

  // `text` with each detection replaced by "[<kind name>]", or nullopt when
  // nothing was found (the common case; it does not allocate). Adds each
  // detection to `counts` when it is not null. Each thread remembers the
  // short texts it found clean (4,096 of up to 47 bytes), so the keys and
  // values that every event repeats are scanned once, not every time.
  std::optional<std::string> Redact(std::string_view text, DetectorCounts* counts) const;
};

}  // namespace minpanel::privacy
