#include "privacy/url.h"

#include <cstdint>
#include <optional>

#include "core/text.h"

namespace minpanel::privacy {
namespace {

constexpr std::string_view kDirectReferrer = "$direct";
constexpr size_t kPortDigitsMax = 5;
constexpr uint32_t kPortMax = 65535;
// A path part (between '-', '_', '.') this long that mixes letters and digits
// is a token, not a word ("a1b2c3d4e5f6"); slugs like "iphone15" stay.
constexpr size_t kTokenPartCharsMin = 12;
// Letter/digit alternations within parts; random tokens alternate often,
// slugs with a version or year ("how-to-v2-2024") rarely.
constexpr size_t kTokenTransitionsMin = 6;
// "file.json": an extension of at most this many alphanumerics is kept after
// a placeholder stem, so the kind of resource survives (":uuid.pdf").
constexpr size_t kExtensionCharsMax = 5;
constexpr size_t kUuidChars = 36;

bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlnum(char c) { return IsAsciiAlpha(c) || IsAsciiDigit(c); }
bool IsHexDigit(char c) {
  return IsAsciiDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
char ToLowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool IsControl(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte < 0x20 || byte == 0x7f;
}

bool StartsWithIgnoringCase(std::string_view text, std::string_view prefix) {
  if (prefix.size() > text.size()) {
    return false;
  }
  for (size_t char_idx = 0; char_idx < prefix.size(); char_idx++) {
    if (ToLowerAscii(text[char_idx]) != ToLowerAscii(prefix[char_idx])) {
      return false;
    }
  }
  return true;
}

void AppendLowerAscii(std::string_view text, std::string* out) {
  const size_t start = out->size();
  out->resize(start + text.size());
  char* lowered = out->data() + start;
  for (size_t char_idx = 0; char_idx < text.size(); char_idx++) {
    lowered[char_idx] = ToLowerAscii(text[char_idx]);
  }
}

bool EqualsIgnoringCase(std::string_view text, std::string_view lowercase) {
  return text.size() == lowercase.size() && StartsWithIgnoringCase(text, lowercase);
}

int HexValue(char c) {
  if (IsAsciiDigit(c)) {
    return c - '0';
  }
  const char lower = ToLowerAscii(c);
  if (lower >= 'a' && lower <= 'f') {
    return lower - 'a' + 10;
  }
  return -1;
}

bool IsAllDigits(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    if (!IsAsciiDigit(c)) {
      return false;
    }
  }
  return true;
}

bool IsAllHex(std::string_view text) {
  for (char c : text) {
    if (!IsHexDigit(c)) {
      return false;
    }
  }
  return !text.empty();
}

bool IsUuid(std::string_view text) {
  if (text.size() != kUuidChars) {
    return false;
  }
  for (size_t char_idx = 0; char_idx < text.size(); char_idx++) {
    const bool dash_position = char_idx == 8 || char_idx == 13 || char_idx == 18 || char_idx == 23;
    if (dash_position ? text[char_idx] != '-' : !IsHexDigit(text[char_idx])) {
      return false;
    }
  }
  return true;
}

bool IsTokenSeparator(char c) {
  return c == '-' || c == '_' || c == '.' || c == '~' || c == '+' || c == '=';
}

// A long segment of ASCII letters and digits (with base64/url-safe
// separators) counts as a token when some part mixes letters and digits at
// length, or letters and digits alternate often; otherwise it reads as a slug.
bool LooksLikeToken(std::string_view text) {
  if (text.size() < kTokenSegmentCharsMin) {
    return false;
  }
  bool has_letter = false;
  bool has_digit = false;
  bool long_mixed_part = false;
  size_t transitions = 0;
  size_t part_chars = 0;
  bool part_letter = false;
  bool part_digit = false;
  char previous = '-';
  for (char c : text) {
    if (IsTokenSeparator(c)) {
      part_chars = 0;
      part_letter = false;
      part_digit = false;
      previous = c;
      continue;
    }
    if (!IsAsciiAlnum(c)) {
      return false;
    }
    has_letter = has_letter || IsAsciiAlpha(c);
    has_digit = has_digit || IsAsciiDigit(c);
    part_letter = part_letter || IsAsciiAlpha(c);
    part_digit = part_digit || IsAsciiDigit(c);
    part_chars++;
    if (part_chars > 1 && IsAsciiDigit(c) != IsAsciiDigit(previous)) {
      transitions++;
    }
    long_mixed_part = long_mixed_part || (part_letter && part_digit && part_chars >= kTokenPartCharsMin);
    previous = c;
  }
  return has_letter && has_digit && (long_mixed_part || transitions >= kTokenTransitionsMin);
}

std::string_view ClassifyWhole(std::string_view text) {
  if (text.find('@') != std::string_view::npos) {
    return kEmailSegment;
  }
  if (IsAllDigits(text)) {
    return kIdSegment;
  }
  if (IsUuid(text)) {
    return kUuidSegment;
  }
  if (text.size() >= kHexSegmentCharsMin && IsAllHex(text)) {
    return kHexSegment;
  }
  if (LooksLikeToken(text)) {
    return kTokenSegment;
  }
  return {};
}

// The extension of "stem.ext" when ext is short and alphanumeric, else npos.
size_t ExtensionDot(std::string_view segment) {
  const size_t dot = segment.rfind('.');
  if (dot == std::string_view::npos || dot == 0) {
    return std::string_view::npos;
  }
  const std::string_view extension = segment.substr(dot + 1);
  if (extension.empty() || extension.size() > kExtensionCharsMax) {
    return std::string_view::npos;
  }
  for (char c : extension) {
    if (!IsAsciiAlnum(c)) {
      return std::string_view::npos;
    }
  }
  return dot;
}

// The parts of a URL, as views of the input: nothing is copied until the
// result is written (scheme and host are lowercased then).
struct SplitUrl {
  std::string_view scheme;  // empty when the input had none
  bool has_authority = false;
  std::string_view host;    // IPv6 keeps its brackets
  std::string_view port;    // digits without leading zeros; empty when absent or default
  std::string_view path;
  std::optional<std::string_view> query;
  std::optional<std::string_view> fragment;
};

// Length of "scheme" in "scheme:..." or 0 (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
size_t SchemeLength(std::string_view text) {
  if (text.empty() || !IsAsciiAlpha(text.front())) {
    return 0;
  }
  for (size_t char_idx = 1; char_idx < text.size(); char_idx++) {
    const char c = text[char_idx];
    if (c == ':') {
      return char_idx;
    }
    if (!IsAsciiAlnum(c) && c != '+' && c != '-' && c != '.') {
      return 0;
    }
  }
  return 0;
}

std::string_view DefaultPort(std::string_view scheme) {
  if (EqualsIgnoringCase(scheme, "http") || EqualsIgnoringCase(scheme, "ws")) {
    return "80";
  }
  if (EqualsIgnoringCase(scheme, "https") || EqualsIgnoringCase(scheme, "wss")) {
    return "443";
  }
  if (EqualsIgnoringCase(scheme, "ftp")) {
    return "21";
  }
  return {};
}

bool IsHostChar(char c) {
  return IsAsciiAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '%' ||
         static_cast<unsigned char>(c) >= 0x80;
}

bool IsIpv6Char(char c) { return IsHexDigit(c) || c == ':' || c == '.'; }

// Validates and normalises a port: its digits without leading zeros (the
// decimal spelling of its value); "" for an empty port. False for garbage.
bool NormalisePort(std::string_view digits, std::string_view* port) {
  if (digits.empty()) {
    *port = {};
    return true;
  }
  if (digits.size() > kPortDigitsMax || !IsAllDigits(digits)) {
    return false;
  }
  uint32_t value = 0;
  for (char c : digits) {
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > kPortMax) {
    return false;
  }
  const size_t first_significant = digits.find_first_not_of('0');
  *port = first_significant == std::string_view::npos ? digits.substr(digits.size() - 1)
                                                       : digits.substr(first_significant);
  return true;
}

bool ParseIpv6Host(std::string_view host_port, SplitUrl* url, std::string_view* port_text) {
  const size_t close = host_port.find(']');
  if (close == std::string_view::npos || close < 3 || close + 1 > kHostBytesMax) {
    return false;
  }
  const std::string_view address = host_port.substr(1, close - 1);
  for (char c : address) {
    if (!IsIpv6Char(c)) {
      return false;
    }
  }
  const std::string_view rest = host_port.substr(close + 1);
  if (!rest.empty() && rest.front() != ':') {
    return false;
  }
  *port_text = rest.empty() ? rest : rest.substr(1);
  url->host = host_port.substr(0, close + 1);
  return true;
}

bool ParseRegisteredHost(std::string_view host_port, SplitUrl* url, std::string_view* port_text) {
  const size_t colon = host_port.rfind(':');
  const std::string_view host = host_port.substr(0, colon);
  *port_text = colon == std::string_view::npos ? std::string_view() : host_port.substr(colon + 1);
  if (host.empty() || host.size() > kHostBytesMax || host.front() == '.') {
    return false;
  }
  for (char c : host) {
    if (!IsHostChar(c)) {
      return false;
    }
  }
  url->host = host;
  return true;
}

// Parses "[userinfo@]host[:port]" into url; the userinfo is dropped unseen.
bool ParseAuthority(std::string_view authority, SplitUrl* url) {
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  std::string_view port_text;
  const bool host_ok = !authority.empty() && authority.front() == '['
                           ? ParseIpv6Host(authority, url, &port_text)
                           : ParseRegisteredHost(authority, url, &port_text);
  if (!host_ok || !NormalisePort(port_text, &url->port)) {
    return false;
  }
  url->has_authority = true;
  if (!url->port.empty() && url->port == DefaultPort(url->scheme)) {
    url->port = {};
  }
  return true;
}

// Whether a scheme-less first component ("example.com", "localhost:3000")
// names a host rather than a relative path ("pricing", "docs/setup").
// The userinfo of "user@example.com/x" does not count ("jane@intranet" is a
// path segment holding an email, not a host).
bool LooksLikeBareHost(std::string_view component) {
  const size_t at = component.rfind('@');
  if (at != std::string_view::npos) {
    component.remove_prefix(at + 1);
  }
  const size_t colon = component.find(':');
  const std::string_view host = component.substr(0, colon);
  if (colon != std::string_view::npos && !IsAllDigits(component.substr(colon + 1))) {
    return false;
  }
  return host == "localhost" || host.find('.') != std::string_view::npos ||
         colon != std::string_view::npos;
}

// Splits off query and fragment, leaving the part before them in `text`.
void SplitTail(std::string_view* text, SplitUrl* url) {
  const size_t hash = text->find('#');
  if (hash != std::string_view::npos) {
    url->fragment = text->substr(hash + 1);
    *text = text->substr(0, hash);
  }
  const size_t question = text->find('?');
  if (question != std::string_view::npos) {
    url->query = text->substr(question + 1);
    *text = text->substr(0, question);
  }
}

std::optional<SplitUrl> Split(std::string_view text) {
  SplitUrl url;
  SplitTail(&text, &url);
  // "example.com:8080 ?q" would otherwise read as a path here and as a host
  // once its query is gone.
  text = TrimSpacesAndTabs(text);
  const size_t scheme_length = SchemeLength(text);
  const std::string_view after_scheme = text.substr(scheme_length == 0 ? 0 : scheme_length + 1);
  std::string_view rest = text;
  if (scheme_length > 0 && after_scheme.starts_with("//")) {
    url.scheme = text.substr(0, scheme_length);
    rest = after_scheme.substr(2);
  } else if (text.starts_with("//")) {
    rest = text.substr(2);
  } else if (text.starts_with("/")) {
    url.path = text;
    return url;
  } else {
    const std::string_view component = text.substr(0, text.find('/'));
    if (scheme_length > 0 && !IsAllDigits(component.substr(scheme_length + 1))) {
      // mailto:, tel:, javascript:, data:, ... ("host:8080" has a port, not a scheme).
      return std::nullopt;
    }
    if (!LooksLikeBareHost(component)) {
      url.path = text;
      return url;
    }
  }
  const size_t slash = rest.find('/');
  if (!ParseAuthority(rest.substr(0, slash), &url)) {
    return std::nullopt;
  }
  url.path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  return url;
}

// `text` percent-decoded: `text` itself when it has no '%' (most path
// segments and parameter names), else decoded into `storage`.
std::string_view Decoded(std::string_view text, std::string* storage) {
  if (text.find('%') == std::string_view::npos) {
    return text;
  }
  *storage = internal::PercentDecode(text);
  return *storage;
}

// Appends one path segment, replaced by its placeholder when it is one.
void AppendSegment(std::string_view segment, std::string* out) {
  std::string storage;
  const std::string_view decoded = Decoded(segment, &storage);
  // The stem is classified before the whole, so "<uuid>.pdf" keeps ".pdf";
  // an email is whole ("jane@example.com" must not become ":email.com").
  const size_t dot = ExtensionDot(decoded);
  if (dot != std::string_view::npos && decoded.find('@') == std::string_view::npos) {
    const std::string_view stem_placeholder = internal::ClassifyPathSegment(decoded.substr(0, dot));
    if (!stem_placeholder.empty()) {
      out->append(stem_placeholder);
      out->append(decoded.substr(dot));
      return;
    }
  }
  const std::string_view placeholder = internal::ClassifyPathSegment(decoded);
  out->append(placeholder.empty() ? segment : placeholder);
}

// Iterates '/'-separated segments without recursion; `cut` marks a path whose
// last segment was cut by kUrlBytesMax.
void AppendPath(std::string_view path, bool cut, std::string* out) {
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    const bool last = end == std::string_view::npos;
    if (last) {
      end = path.size();
    }
    if (last && cut) {
      out->append(kTruncatedSegment);
    } else {
      AppendSegment(path.substr(start, end - start), out);
    }
    if (last) {
      return;
    }
    out->push_back('/');
    start = end + 1;
  }
}

bool KeepParameter(std::string_view parameter, const UrlPolicy& policy) {
  std::string storage;
  const std::string_view name = Decoded(parameter.substr(0, parameter.find('=')), &storage);
  for (const std::string& prefix : policy.query_keep_prefixes) {
    if (!prefix.empty() && StartsWithIgnoringCase(name, prefix)) {
      return true;
    }
  }
  return false;
}

void AppendQuery(std::string_view query, const UrlPolicy& policy, std::string* out) {
  bool first = true;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) {
      end = query.size();
    }
    const std::string_view parameter = query.substr(start, end - start);
    if (!parameter.empty() && KeepParameter(parameter, policy)) {
      out->push_back(first ? '?' : '&');
      out->append(parameter);
      first = false;
    }
    start = end + 1;
  }
}

bool HasControlCharacter(std::string_view text) {
  for (char c : text) {
    if (IsControl(c)) {
      return true;
    }
  }
  return false;
}

}  // namespace

namespace internal {

std::string PercentDecode(std::string_view text) {
  std::string decoded;
  decoded.reserve(text.size());
  for (size_t char_idx = 0; char_idx < text.size(); char_idx++) {
    if (text[char_idx] == '%' && char_idx + 2 < text.size() &&
        HexValue(text[char_idx + 1]) >= 0 && HexValue(text[char_idx + 2]) >= 0) {
      decoded.push_back(
          static_cast<char>(HexValue(text[char_idx + 1]) * 16 + HexValue(text[char_idx + 2])));
      char_idx += 2;
      continue;
    }
    decoded.push_back(text[char_idx]);
  }
  return decoded;
}

std::string_view ClassifyPathSegment(std::string_view decoded_segment) {
  // Padding does not make an identifier less identifying ("123%20").
  const std::string_view trimmed = TrimSpacesAndTabs(decoded_segment);
  if (trimmed.empty()) {
    return {};
  }
  return ClassifyWhole(trimmed);
}

}  // namespace internal

std::string GeneraliseUrl(std::string_view url, const UrlPolicy& policy) {
  std::string_view text = TrimSpacesAndTabs(url);
  const bool cut = text.size() > kUrlBytesMax;
  if (cut) {
    text = text.substr(0, kUrlBytesMax);
  }
  if (text.empty() || HasControlCharacter(text)) {
    return {};
  }
  const std::optional<SplitUrl> split = Split(text);
  if (!split.has_value()) {
    return {};
  }
  std::string out;
  out.reserve(text.size());
  if (split->has_authority) {
    // A scheme-less URL keeps its shape: "//host/x" stays protocol-relative,
    // "example.com/x" stays bare.
    if (!split->scheme.empty()) {
      AppendLowerAscii(split->scheme, &out);
      out.append("://");
    } else if (text.starts_with("//")) {
      out.append("//");
    }
    AppendLowerAscii(split->host, &out);
    if (!split->port.empty()) {
      out.push_back(':');
      out.append(split->port);
    }
  }
  const bool cut_in_path = cut && !split->query.has_value() && !split->fragment.has_value();
  AppendPath(split->path, cut_in_path, &out);
  if (split->query.has_value() && !cut) {
    AppendQuery(*split->query, policy, &out);
  }
  if (split->fragment.has_value() && policy.keep_fragment && !cut) {
    out.push_back('#');
    out.append(*split->fragment);
  }
  // A kept query can end in a blank that stood before a part dropped
  // ("/a?utm_source=x #top", "?utm_source=x &id=5"), which a second pass
  // would trim; trimming here keeps the function idempotent. Only the end
  // can be blank: `out` starts with the scheme, "//", the host or the first
  // byte of the trimmed text (Split trims too), so the trimmed length is
  // the length without the trailing blanks.
  out.resize(TrimSpacesAndTabs(out).size());
  return out;
}

std::string ReferrerHost(std::string_view referrer) {
  const std::string_view text = TrimSpacesAndTabs(referrer);
  if (text == kDirectReferrer) {
    return std::string(kDirectReferrer);
  }
  const std::string_view head = text.substr(0, kUrlBytesMax);
  if (head.empty() || HasControlCharacter(head)) {
    return {};
  }
  const std::optional<SplitUrl> split = Split(head);
  if (!split.has_value() || !split->has_authority) {
    return {};
  }
  std::string host(split->host);
  for (char& c : host) {
    c = ToLowerAscii(c);
  }
  return host;
}

}  // namespace minpanel::privacy
