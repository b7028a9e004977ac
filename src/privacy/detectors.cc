#include "privacy/detectors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

namespace minpanel::privacy {
namespace {

// Limits that bound the work per candidate, so the whole scan stays linear.
constexpr size_t kDigitsForNumbersMin = 7;    // Phones, cards and IBANs need this many.
constexpr size_t kTokenForKeysMin = 15;       // Shortest key, JWT or secret token.
constexpr size_t kEmailLocalBytesMax = 64;    // RFC 5321.
constexpr size_t kEmailDomainBytesMax = 253;  // RFC 1035.
constexpr size_t kPhoneGroupsMax = 8;         // Digit groups parsed per phone candidate.
constexpr size_t kPhoneDigitsMin = 7;
constexpr size_t kPhoneDigitsMax = 15;  // E.164.
constexpr size_t kCardDigitsMin = 13;
constexpr size_t kCardDigitsMax = 19;
constexpr size_t kCardGroupsMax = 6;
constexpr size_t kIbanBytesMin = 15;
constexpr size_t kIbanBytesMax = 34;
constexpr size_t kJwtHeaderBytesMin = 10;
constexpr size_t kJwtHeaderBytesMax = 512;  // Decoded to look for "alg"; headers are short.
constexpr size_t kBearerTokenBytesMin = 16;
constexpr size_t kBase64TokenBytesMin = 16;
// Longer base64 tokens are decoded only up to this many characters: the
// decoded text is scanned from a stack buffer, and a token this long that
// hides PII only past its prefix is still a high-entropy secret.
constexpr size_t kBase64TokenBytesMax = 2048;
constexpr double kBase64PrintableRatioMin = 0.9;
constexpr size_t kSecretBytesMin = 32;
// Measured on the recall and precision corpora of detectors_test.cc: random
// base62/base64 strings of 32+ characters score above 0.9 of the entropy a
// random base62 string of their length has on average; identifiers made of
// words stay near 0.85.
constexpr double kSecretEntropyRatioMin = 0.9;
// Random strings switch between upper, lower and digit almost every
// character; CamelCase words run several lowercase letters in a row.
constexpr double kSecretClassRunMeanMax = 2.2;

enum class Layer : uint8_t { kRaw, kPercentDecoded, kBase64Decoded };

// The classes of bytes the scanners test, one bit each in a table entry:
// the scanners test a class at every byte, and one load costs less than the
// chain of comparisons that defines the class (here, once, at compile time).
enum CharClassBit : uint16_t {
  kAlphaBit = 1 << 0,
  kAlnumBit = 1 << 1,
  kWordBit = 1 << 2,        // alphanumeric or '_'
  kHexBit = 1 << 3,
  kKeyBit = 1 << 4,         // word or '-'
  kBase64Bit = 1 << 5,      // alphanumeric or "+/_-"
  kEmailLocalBit = 1 << 6,  // alphanumeric or "._%+-'"
  kDomainBit = 1 << 7,      // alphanumeric or ".-"
  kIpv6Bit = 1 << 8,        // hex or ":."
  kBearerBit = 1 << 9,      // key or ".~+/="
  kSecretBit = 1 << 10,     // key or "+="
};

constexpr std::array<uint16_t, 256> MakeCharClasses() {
  std::array<uint16_t, 256> classes{};
  for (int byte = 0; byte < 256; ++byte) {
    const char c = static_cast<char>(byte);
    const bool digit = c >= '0' && c <= '9';
    const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    const bool alnum = alpha || digit;
    const bool word = alnum || c == '_';
    const bool hex = digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    const bool key = word || c == '-';
    const bool base64 = alnum || c == '+' || c == '/' || c == '_' || c == '-';
    const bool email_local =
        alnum || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c == '\'';
    const bool domain = alnum || c == '.' || c == '-';
    const bool ipv6 = hex || c == ':' || c == '.';
    const bool bearer = key || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
    const bool secret = key || c == '+' || c == '=';
    classes[static_cast<size_t>(byte)] = static_cast<uint16_t>(
        (alpha ? kAlphaBit : 0) | (alnum ? kAlnumBit : 0) | (word ? kWordBit : 0) |
        (hex ? kHexBit : 0) | (key ? kKeyBit : 0) | (base64 ? kBase64Bit : 0) |
        (email_local ? kEmailLocalBit : 0) | (domain ? kDomainBit : 0) | (ipv6 ? kIpv6Bit : 0) |
        (bearer ? kBearerBit : 0) | (secret ? kSecretBit : 0));
  }
  return classes;
}
constexpr std::array<uint16_t, 256> kCharClasses = MakeCharClasses();

bool InClass(char c, CharClassBit bit) {
  return (kCharClasses[static_cast<unsigned char>(c)] & bit) != 0;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlpha(char c) { return InClass(c, kAlphaBit); }
bool IsAlnum(char c) { return InClass(c, kAlnumBit); }
bool IsWord(char c) { return InClass(c, kWordBit); }
bool IsHex(char c) { return InClass(c, kHexBit); }
bool IsKeyChar(char c) { return InClass(c, kKeyBit); }
bool IsBase64Char(char c) { return InClass(c, kBase64Bit); }
char ToUpper(char c) { return IsLower(c) ? static_cast<char>(c - 'a' + 'A') : c; }
char ToLower(char c) { return IsUpper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

char At(std::string_view text, size_t pos) { return pos < text.size() ? text[pos] : '\0'; }
char Before(std::string_view text, size_t pos) { return pos > 0 ? text[pos - 1] : '\0'; }

void Add(std::vector<Detection>* out, PiiKind kind, size_t begin, size_t end) {
  out->push_back(Detection{kind, begin, end - begin});
}

// What one pass over the text learns, so scanners that cannot match skip.
struct Features {
  size_t digits = 0;
  size_t dots = 0;
  size_t colons = 0;
  size_t longest_token = 0;
  bool at_sign = false;
  bool percent = false;
};

// Byte classes for Measure, the one pass every value pays for.
constexpr uint8_t kClassDigit = 1;
constexpr uint8_t kClassToken = 2;   // Base64, '.' or '=': may belong to a key or token.
constexpr uint8_t kClassMarker = 4;  // '.', ':', '@' or '%'.

constexpr std::array<uint8_t, 256> MakeByteClasses() {
  std::array<uint8_t, 256> classes{};
  for (int byte = 0; byte < 256; ++byte) {
    char c = static_cast<char>(byte);
    bool digit = c >= '0' && c <= '9';
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool token =
        digit || alpha || c == '+' || c == '/' || c == '_' || c == '-' || c == '.' || c == '=';
    bool marker = c == '.' || c == ':' || c == '@' || c == '%';
    classes[static_cast<size_t>(byte)] = static_cast<uint8_t>(
        (digit ? kClassDigit : 0) | (token ? kClassToken : 0) | (marker ? kClassMarker : 0));
  }
  return classes;
}
constexpr std::array<uint8_t, 256> kByteClasses = MakeByteClasses();

Features Measure(std::string_view text) {
  Features features;
  size_t token = 0;
  for (char c : text) {
    uint8_t byte_class = kByteClasses[static_cast<unsigned char>(c)];
    features.digits += byte_class & kClassDigit;
    token = (byte_class & kClassToken) != 0 ? token + 1 : 0;
    features.longest_token = std::max(features.longest_token, token);
    if ((byte_class & kClassMarker) != 0) {
      features.dots += c == '.' ? 1 : 0;
      features.colons += c == ':' ? 1 : 0;
      features.at_sign = features.at_sign || c == '@';
      features.percent = features.percent || c == '%';
    }
  }
  return features;
}

// ---- Email ----

bool IsEmailLocalChar(char c) { return InClass(c, kEmailLocalBit); }
bool IsDomainChar(char c) { return InClass(c, kDomainBit); }

// Image assets such as "logo@2x.png" share the shape of an address.
bool IsAssetName(std::string_view domain, std::string_view tld) {
  static constexpr std::string_view kExtensions[] = {"png", "jpg",  "jpeg", "gif",
                                                     "svg", "webp", "avif", "ico"};
  for (std::string_view extension : kExtensions) {
    if (tld.size() == extension.size() &&
        std::equal(tld.begin(), tld.end(), extension.begin(),
                   [](char a, char b) { return ToLower(a) == b; })) {
      return true;
    }
  }
  return domain.size() >= 2 && IsDigit(domain[0]) && (domain[1] == 'x' || domain[1] == 'X');
}

bool IsEmailDomain(std::string_view domain) {
  size_t last_dot = domain.rfind('.');
  if (domain.empty() || domain.size() > kEmailDomainBytesMax ||
      last_dot == std::string_view::npos) {
    return false;
  }
  std::string_view tld = domain.substr(last_dot + 1);
  if (tld.size() < 2 || !std::all_of(tld.begin(), tld.end(), IsAlpha)) {
    return false;
  }
  size_t label_begin = 0;
  while (label_begin <= domain.size()) {
    size_t label_end = std::min(domain.find('.', label_begin), domain.size());
    std::string_view label = domain.substr(label_begin, label_end - label_begin);
    if (label.empty() || label.front() == '-' || label.back() == '-') {
      return false;
    }
    label_begin = label_end + 1;
  }
  return !IsAssetName(domain, tld);
}

// Each '@' extends left over the local part and right over the domain; both
// stop at the next '@', so every byte is visited at most twice.
void FindEmails(std::string_view text, std::vector<Detection>* out) {
  for (size_t at = text.find('@'); at != std::string_view::npos; at = text.find('@', at + 1)) {
    size_t begin = at;
    while (begin > 0 && IsEmailLocalChar(text[begin - 1]) && at - begin < kEmailLocalBytesMax) {
      --begin;
    }
    while (begin < at && (text[begin] == '.' || text[begin] == '\'')) {
      ++begin;
    }
    size_t end = at + 1;
    while (end < text.size() && IsDomainChar(text[end])) {
      ++end;
    }
    while (end > at + 1 && (text[end - 1] == '.' || text[end - 1] == '-')) {
      --end;
    }
    if (begin == at || !IsEmailDomain(text.substr(at + 1, end - at - 1))) {
      continue;
    }
    Add(out, PiiKind::kEmail, begin, end);
  }
}

// ---- Payment cards ----

int LeadingNumber(std::string_view digits, size_t count) {
  int value = 0;
  for (size_t idx = 0; idx < count && idx < digits.size(); ++idx) {
    value = value * 10 + (digits[idx] - '0');
  }
  return value;
}

bool HasCardPrefix(std::string_view digits) {
  size_t length = digits.size();
  int two = LeadingNumber(digits, 2);
  int four = LeadingNumber(digits, 4);
  if (digits[0] == '4') {
    return length == 13 || length == 16 || length == 19;
  }
  if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720)) {
    return length == 16;
  }
  if (two == 34 || two == 37) {
    return length == 15;
  }
  if (two == 36 || two == 38 || two == 39 || (four >= 3000 && four <= 3059)) {
    return length >= 14 && length <= 16;
  }
  if (four == 6011 || two == 65 || (four >= 6440 && four <= 6499) || two == 62 ||
      (four >= 3528 && four <= 3589)) {
    return length >= 16;
  }
  return two == 50 || (two >= 56 && two <= 69);  // Maestro, 13-19 digits.
}

bool PassesLuhn(std::string_view digits) {
  int sum = 0;
  bool double_it = false;
  for (size_t idx = digits.size(); idx-- > 0;) {
    int digit = digits[idx] - '0';
    if (double_it) {
      digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
    }
    sum += digit;
    double_it = !double_it;
  }
  return sum % 10 == 0;
}

bool IsCardNumber(std::string_view digits) {
  return digits.size() >= kCardDigitsMin && digits.size() <= kCardDigitsMax &&
         HasCardPrefix(digits) && PassesLuhn(digits);
}

// After a number: not glued to a word, and not the integer part of a decimal.
bool NumberEndsCleanly(std::string_view text, size_t end) {
  char next = At(text, end);
  return !IsWord(next) && !(next == '.' && IsDigit(At(text, end + 1)));
}

// Cards are runs of digits, unseparated or in groups of 3-6 joined by one
// space or one dash; a grouped run is tried at each group end, longest first.
void FindCards(std::string_view text, std::vector<Detection>* out) {
  size_t pos = 0;
  while (pos < text.size()) {
    char before = Before(text, pos);
    if (!IsDigit(text[pos]) || IsWord(before) || before == '.') {
      ++pos;
      continue;
    }
    // A fixed buffer: clean values full of long numbers must not allocate.
    std::array<char, kCardDigitsMax + 2> digit_buffer;
    size_t digit_total = 0;
    std::array<size_t, kCardGroupsMax> group_ends{};
    size_t groups = 0;
    char separator = '\0';
    size_t cursor = pos;
    while (groups < kCardGroupsMax) {
      size_t group_begin = cursor;
      while (cursor < text.size() && IsDigit(text[cursor]) && digit_total <= kCardDigitsMax) {
        digit_buffer[digit_total++] = text[cursor++];
      }
      group_ends[groups++] = cursor;
      char next = At(text, cursor);
      bool joins = (next == ' ' || next == '-') && (separator == '\0' || separator == next) &&
                   IsDigit(At(text, cursor + 1)) && cursor - group_begin >= 3 &&
                   cursor - group_begin <= 6;
      if (!joins || digit_total > kCardDigitsMax) {
        break;
      }
      separator = next;
      ++cursor;
    }
    bool found = false;
    size_t digit_count = digit_total;
    for (size_t group_idx = groups; group_idx-- > 0 && !found;) {
      size_t end = group_ends[group_idx];
      std::string_view prefix(digit_buffer.data(), digit_count);
      if (NumberEndsCleanly(text, end) && IsCardNumber(prefix)) {
        Add(out, PiiKind::kCard, pos, end);
        pos = end;
        found = true;
      }
      size_t group_begin = group_idx > 0 ? group_ends[group_idx - 1] + 1 : pos;
      digit_count -= std::min(digit_count, end - group_begin);
    }
    if (!found) {
      pos = std::max(pos + 1, group_ends[0]);
    }
  }
}

// ---- Phone numbers ----

struct PhoneGroup {
  size_t begin = 0;  // First digit.
  size_t end = 0;    // After the last digit, or after ')' when parenthesized.
  size_t digits = 0;
  bool parenthesized = false;
  char separator_before = '\0';
};

struct PhoneRun {
  std::array<PhoneGroup, kPhoneGroupsMax> groups{};
  size_t count = 0;
  bool plus = false;
};

// Reads digit groups joined by one separator (space, dash or dot), where a
// group may sit in parentheses.
PhoneRun ParsePhoneRun(std::string_view text, size_t pos) {
  PhoneRun run;
  run.plus = text[pos] == '+';
  pos += run.plus ? 1 : 0;
  char separator = '\0';
  while (run.count < kPhoneGroupsMax) {
    PhoneGroup group;
    group.separator_before = separator;
    group.parenthesized = At(text, pos) == '(';
    size_t cursor = pos + (group.parenthesized ? 1 : 0);
    group.begin = cursor;
    while (IsDigit(At(text, cursor)) && cursor - group.begin <= kPhoneDigitsMax) {
      ++cursor;
    }
    group.digits = cursor - group.begin;
    if (group.digits == 0 || (group.parenthesized && At(text, cursor) != ')')) {
      break;
    }
    cursor += group.parenthesized ? 1 : 0;
    group.end = cursor;
    run.groups[run.count++] = group;
    char next = At(text, cursor);
    if (group.parenthesized && (IsDigit(next) || next == '(')) {
      separator = ')';
      pos = cursor;
      continue;
    }
    bool joins = (next == ' ' || next == '-' || next == '.') &&
                 (IsDigit(At(text, cursor + 1)) || At(text, cursor + 1) == '(');
    if (!joins) {
      break;
    }
    separator = next;
    pos = cursor + 1;
  }
  return run;
}

size_t CountDigits(const PhoneGroup* groups, size_t count) {
  size_t digits = 0;
  for (size_t idx = 0; idx < count; ++idx) {
    digits += groups[idx].digits;
  }
  return digits;
}

bool AnyDot(const PhoneGroup* groups, size_t count) {
  for (size_t idx = 1; idx < count; ++idx) {
    if (groups[idx].separator_before == '.') {
      return true;
    }
  }
  return false;
}

// North American: [1] NXX NXX XXXX with one separator kind, or (NXX) NXX-XXXX.
bool IsNorthAmerican(std::string_view text, const PhoneGroup* groups, size_t count) {
  size_t first = 0;
  if (count == 4 && groups[0].digits == 1 && text[groups[0].begin] == '1') {
    first = 1;
  }
  if (count - first != 3 || groups[first].digits != 3 || groups[first + 1].digits != 3 ||
      groups[first + 2].digits != 4 || text[groups[first].begin] < '2') {
    return false;
  }
  if (groups[first].parenthesized) {
    return groups[first + 2].separator_before != '.';
  }
  return groups[first + 1].separator_before == groups[first + 2].separator_before;
}

// National numbers behind a trunk '0' (020 7946 0958, 030 1234567,
// 01 23 45 67 89), or with an area code in parentheses.
bool IsNationalWithTrunk(std::string_view text, const PhoneGroup* groups, size_t count) {
  size_t digits = CountDigits(groups, count);
  if (digits < 9 || digits > 12 || AnyDot(groups, count) || groups[0].digits < 2 ||
      groups[0].digits > 5) {
    return false;
  }
  if (groups[0].parenthesized) {
    return true;
  }
  if (text[groups[0].begin] != '0' || text[groups[0].begin + 1] == '0') {
    return false;
  }
  if (count == 2) {
    return groups[1].digits >= 5 && groups[1].digits <= 8;
  }
  for (size_t idx = 1; idx < count; ++idx) {
    if (groups[idx].digits < 2 || groups[idx].digits > 4 || groups[idx].parenthesized) {
      return false;
    }
  }
  return true;
}

// International: '+' or '00' then the country code.
bool IsInternational(std::string_view text, const PhoneGroup* groups, size_t count, bool plus) {
  size_t digits = CountDigits(groups, count);
  if (plus) {
    return digits >= 8 && digits <= kPhoneDigitsMax &&
           (count == 1 || groups[0].digits <= 4 || groups[0].parenthesized);
  }
  bool double_zero = groups[0].digits >= 3 && text[groups[0].begin] == '0' &&
                     text[groups[0].begin + 1] == '0' && text[groups[0].begin + 2] != '0';
  return double_zero && count >= 2 && groups[0].digits <= 6 && digits - 2 >= kPhoneDigitsMin &&
         digits - 2 <= kPhoneDigitsMax && !AnyDot(groups, count);
}

bool IsPhone(std::string_view text, const PhoneGroup* groups, size_t count, bool plus) {
  if (IsInternational(text, groups, count, plus)) {
    return true;
  }
  if (plus || count < 2) {
    return false;
  }
  return IsNorthAmerican(text, groups, count) || IsNationalWithTrunk(text, groups, count);
}

bool PhoneMayStart(std::string_view text, size_t pos) {
  char c = text[pos];
  char before = Before(text, pos);
  if (IsWord(before) || before == '.' || before == '-' || before == '+') {
    return false;
  }
  return IsDigit(c) ||
         ((c == '+' || c == '(') && (IsDigit(At(text, pos + 1)) || At(text, pos + 1) == '('));
}

// Tries every sub-run that starts at a group and ends at a later group,
// longest first; the group count is bounded, so the work per byte is too.
void FindPhones(std::string_view text, std::vector<Detection>* out) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (!PhoneMayStart(text, pos)) {
      ++pos;
      continue;
    }
    PhoneRun run = ParsePhoneRun(text, pos);
    size_t next = run.count > 0 ? run.groups[run.count - 1].end : pos + 1;
    bool found = false;
    for (size_t first = 0; first < run.count && !found; ++first) {
      for (size_t last = run.count; last > first && !found; --last) {
        const PhoneGroup* groups = run.groups.data() + first;
        size_t count = last - first;
        bool plus = run.plus && first == 0;
        size_t end = run.groups[last - 1].end;
        if (IsPhone(text, groups, count, plus) && !IsWord(At(text, end))) {
          size_t begin = first == 0 ? pos : groups[0].begin - (groups[0].parenthesized ? 1 : 0);
          Add(out, PiiKind::kPhone, begin, end);
          next = end;
          found = true;
        }
      }
    }
    pos = std::max(next, pos + 1);
  }
}

// ---- IBAN ----

struct IbanCountry {
  char code[3];
  uint8_t length;
};

constexpr IbanCountry kIbanCountries[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22},
    {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27},
    {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28},
    {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20},
    {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24},
    {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SC", 31},
    {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

size_t IbanLength(char first, char second) {
  for (const IbanCountry& country : kIbanCountries) {
    if (country.code[0] == ToUpper(first) && country.code[1] == ToUpper(second)) {
      return country.length;
    }
  }
  return 0;
}

// ISO 13616: move the first four characters to the end, letters become
// 10..35, and the number mod 97 must be 1; computed digit by digit.
bool PassesMod97(std::string_view iban) {
  uint32_t remainder = 0;
  for (size_t idx = 0; idx < iban.size(); ++idx) {
    char c = ToUpper(iban[(idx + 4) % iban.size()]);
    uint32_t value =
        IsDigit(c) ? static_cast<uint32_t>(c - '0') : static_cast<uint32_t>(c - 'A' + 10);
    remainder = (remainder * (value >= 10 ? 100 : 10) + value) % 97;
  }
  return remainder == 1;
}

// Reads `length` alphanumerics from `pos`, allowing one space after each
// group of four; returns the end, or npos when the text does not fit.
size_t ReadIban(std::string_view text, size_t pos, size_t length, char* compact) {
  size_t cursor = pos;
  size_t compact_size = 0;
  while (compact_size < length) {
    char c = At(text, cursor);
    if (c == ' ' && compact_size % 4 == 0 && IsAlnum(At(text, cursor + 1)) && cursor > pos) {
      ++cursor;
      continue;
    }
    if (!IsAlnum(c)) {
      return std::string_view::npos;
    }
    compact[compact_size++] = c;
    ++cursor;
  }
  return IsAlnum(At(text, cursor)) ? std::string_view::npos : cursor;
}

void FindIbans(std::string_view text, std::vector<Detection>* out) {
  for (size_t pos = 0; pos + kIbanBytesMin <= text.size(); ++pos) {
    if (!IsAlpha(text[pos]) || !IsAlpha(text[pos + 1]) || !IsDigit(text[pos + 2]) ||
        !IsDigit(text[pos + 3]) || IsAlnum(Before(text, pos))) {
      continue;
    }
    size_t length = IbanLength(text[pos], text[pos + 1]);
    if (length == 0 || length > kIbanBytesMax) {
      continue;
    }
    std::array<char, kIbanBytesMax> compact;
    size_t end = ReadIban(text, pos, length, compact.data());
    if (end != std::string_view::npos && PassesMod97(std::string_view(compact.data(), length))) {
      Add(out, PiiKind::kIban, pos, end);
      pos = end - 1;
    }
  }
}

// ---- IP addresses ----

// Reads a dotted quad at `pos`; returns its end or npos.
size_t ReadIpv4(std::string_view text, size_t pos) {
  size_t cursor = pos;
  for (int octet_idx = 0; octet_idx < 4; ++octet_idx) {
    if (octet_idx > 0) {
      if (At(text, cursor) != '.') {
        return std::string_view::npos;
      }
      ++cursor;
    }
    size_t octet_begin = cursor;
    int value = 0;
    while (IsDigit(At(text, cursor)) && cursor - octet_begin < 3) {
      value = value * 10 + (text[cursor++] - '0');
    }
    size_t octet_digits = cursor - octet_begin;
    if (octet_digits == 0 || value > 255 || IsDigit(At(text, cursor)) ||
        (octet_digits > 1 && text[octet_begin] == '0')) {
      return std::string_view::npos;
    }
  }
  return cursor;
}

// "Chrome/120.0.0.0" is a product version in a user agent, not an address.
bool FollowsProductToken(std::string_view text, size_t pos) {
  return Before(text, pos) == '/' && pos >= 2 && IsAlnum(text[pos - 2]);
}

void FindIpv4(std::string_view text, std::vector<Detection>* out) {
  for (size_t pos = 0; pos < text.size(); ++pos) {
    char before = Before(text, pos);
    if (!IsDigit(text[pos]) || IsWord(before) || before == '.' || FollowsProductToken(text, pos)) {
      continue;
    }
    size_t end = ReadIpv4(text, pos);
    if (end != std::string_view::npos && NumberEndsCleanly(text, end)) {
      Add(out, PiiKind::kIpAddress, pos, end);
      pos = end - 1;
    }
  }
}

bool IsIpv6Char(char c) { return InClass(c, kIpv6Bit); }

// Parses [begin, end) as a whole IPv6 address: eight hextets, or fewer with
// one "::", optionally ending in a dotted quad that stands for two.
bool IsIpv6(std::string_view text, size_t begin, size_t end) {
  std::string_view address = text.substr(begin, end - begin);
  size_t hextets = 0;
  size_t first_hextet_digits = 0;
  bool compressed = false;
  size_t pos = 0;
  if (address.substr(0, 2) == "::") {
    compressed = true;
    pos = 2;
  } else if (!address.empty() && address[0] == ':') {
    return false;
  }
  while (pos < address.size()) {
    size_t part_end = std::min(address.find(':', pos), address.size());
    std::string_view part = address.substr(pos, part_end - pos);
    if (part.find('.') != std::string_view::npos) {
      if (part_end != address.size() || ReadIpv4(part, 0) != part.size()) {
        return false;
      }
      hextets += 2;
      break;
    }
    if (part.empty() || part.size() > 4) {
      return false;
    }
    first_hextet_digits = hextets == 0 ? part.size() : first_hextet_digits;
    ++hextets;
    pos = part_end;
    if (address.substr(pos, 2) == "::") {
      if (compressed) {
        return false;
      }
      compressed = true;
      pos += 2;
    } else if (pos < address.size()) {
      ++pos;
      if (pos == address.size()) {
        return false;
      }
    }
  }
  // "::1" and "a::b" are too short to tell from ordinary text.
  bool long_enough = hextets >= 3 || (hextets == 2 && first_hextet_digits >= 3);
  return compressed ? (long_enough && hextets <= 7) : hextets == 8;
}

void FindIpv6(std::string_view text, std::vector<Detection>* out) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (!IsIpv6Char(text[pos])) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    size_t colons = 0;
    while (pos < text.size() && IsIpv6Char(text[pos])) {
      colons += text[pos] == ':' ? 1 : 0;
      ++pos;
    }
    size_t end = pos;
    if (end - begin >= 2 && text[end - 1] == ':' && text[end - 2] != ':') {
      --end;
      --colons;
    }
    while (end > begin && text[end - 1] == '.') {
      --end;
    }
    // IsIpv6 accepts nothing with fewer than two colons ("::" or seven
    // separators), and most runs (words with hex letters) have none.
    if (colons >= 2 && !IsWord(Before(text, begin)) && !IsWord(At(text, pos)) &&
        IsIpv6(text, begin, end)) {
      Add(out, PiiKind::kIpAddress, begin, end);
    }
  }
}

// ---- Base64 ----

int Base64Value(char c) {
  if (IsUpper(c)) {
    return c - 'A';
  }
  if (IsLower(c)) {
    return c - 'a' + 26;
  }
  if (IsDigit(c)) {
    return c - '0' + 52;
  }
  if (c == '+' || c == '-') {
    return 62;
  }
  return (c == '/' || c == '_') ? 63 : -1;
}

// Decodes standard or URL-safe base64 without padding into `decoded`;
// returns the decoded size, or 0 when `token` is not base64.
size_t DecodeBase64(std::string_view token, char* decoded) {
  if (token.size() % 4 == 1) {
    return 0;
  }
  uint32_t bits = 0;
  int bit_count = 0;
  size_t size = 0;
  for (char c : token) {
    int value = Base64Value(c);
    if (value < 0) {
      return 0;
    }
    bits = (bits << 6) | static_cast<uint32_t>(value);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      decoded[size++] = static_cast<char>((bits >> bit_count) & 0xFF);
    }
  }
  return size;
}

bool IsMostlyPrintable(std::string_view bytes) {
  size_t printable = 0;
  for (char c : bytes) {
    auto byte = static_cast<unsigned char>(c);
    printable +=
        ((byte >= 0x20 && byte < 0x7F) || byte == '\t' || byte == '\n' || byte == '\r') ? 1 : 0;
  }
  return static_cast<double>(printable) >=
         kBase64PrintableRatioMin * static_cast<double>(bytes.size());
}

bool IsHexOrSeparator(std::string_view token) {
  return std::all_of(token.begin(), token.end(),
                     [](char c) { return IsHex(c) || c == '-' || c == '_'; });
}

// ---- Keys, JWTs, secrets ----

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool HasDigit(std::string_view text) { return std::any_of(text.begin(), text.end(), IsDigit); }

bool IsApiKey(std::string_view token) {
  // Every prefix below starts with one of these; most tokens stop here.
  static constexpr std::string_view kFirstChars = "sprgxA";
  if (token.size() < kTokenForKeysMin || kFirstChars.find(token[0]) == std::string_view::npos) {
    return false;
  }
  struct Prefix {
    std::string_view prefix;
    size_t body_min;
  };
  static constexpr Prefix kPrefixes[] = {
      {"sk_live_", 16}, {"sk_test_", 16},    {"pk_live_", 16}, {"pk_test_", 16}, {"rk_live_", 16},
      {"rk_test_", 16}, {"ghp_", 30},        {"gho_", 30},     {"ghu_", 30},     {"ghs_", 30},
      {"ghr_", 30},     {"github_pat_", 22}, {"xoxa-", 10},    {"xoxb-", 10},    {"xoxp-", 10},
      {"xoxr-", 10},    {"xoxs-", 10},       {"AIza", 35},     {"sk-", 20},
  };
  for (const Prefix& prefix : kPrefixes) {
    if (StartsWith(token, prefix.prefix) &&
        token.size() - prefix.prefix.size() >= prefix.body_min &&
        HasDigit(token.substr(prefix.prefix.size()))) {
      return true;
    }
  }
  bool aws = (StartsWith(token, "AKIA") || StartsWith(token, "ASIA")) && token.size() == 20;
  return aws &&
         std::all_of(token.begin(), token.end(), [](char c) { return IsUpper(c) || IsDigit(c); });
}

void FindApiKeys(std::string_view text, std::vector<Detection>* out) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (!IsKeyChar(text[pos])) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    while (pos < text.size() && IsKeyChar(text[pos])) {
      ++pos;
    }
    if (IsApiKey(text.substr(begin, pos - begin))) {
      Add(out, PiiKind::kApiKey, begin, pos);
    }
  }
}

size_t ReadKeySegment(std::string_view text, size_t pos) {
  while (pos < text.size() && IsKeyChar(text[pos])) {
    ++pos;
  }
  return pos;
}

// Whether a JWT header segment decodes to JSON naming its "alg".
bool HeaderNamesAlgorithm(std::string_view header) {
  std::array<char, kJwtHeaderBytesMax * 3 / 4 + 3> decoded;
  header = header.substr(0, std::min(header.size(), kJwtHeaderBytesMax));
  header = header.substr(0, header.size() - (header.size() % 4 == 1 ? 1 : 0));
  std::string_view json(decoded.data(), DecodeBase64(header, decoded.data()));
  return json.find("\"alg\"") != std::string_view::npos;
}

// header.payload.signature, each base64url; the header is JSON, so it starts
// with "eyJ" ('{"'), and names its "alg" unless the payload is JSON too. The
// signature may be empty (alg "none").
void FindJwts(std::string_view text, std::vector<Detection>* out) {
  for (size_t pos = text.find("eyJ"); pos != std::string_view::npos;
       pos = text.find("eyJ", pos + 1)) {
    if (IsKeyChar(Before(text, pos))) {
      continue;
    }
    size_t header_end = ReadKeySegment(text, pos);
    if (header_end - pos < kJwtHeaderBytesMin || At(text, header_end) != '.') {
      continue;
    }
    size_t payload_end = ReadKeySegment(text, header_end + 1);
    if (payload_end - header_end - 1 < 4 || At(text, payload_end) != '.') {
      continue;
    }
    bool payload_is_json = StartsWith(text.substr(header_end + 1), "eyJ");
    if (!payload_is_json && !HeaderNamesAlgorithm(text.substr(pos, header_end - pos))) {
      continue;
    }
    size_t end = ReadKeySegment(text, payload_end + 1);
    Add(out, PiiKind::kJwt, pos, end);
    pos = end - 1;
  }
}

bool IsBearerTokenChar(char c) { return InClass(c, kBearerBit); }

void FindBearerTokens(std::string_view text, std::vector<Detection>* out) {
  static constexpr std::string_view kBearer = "bearer";
  for (size_t pos = 0; pos + kBearer.size() < text.size(); ++pos) {
    bool matches =
        !IsAlpha(Before(text, pos)) &&
        std::equal(kBearer.begin(), kBearer.end(), text.begin() + static_cast<ptrdiff_t>(pos),
                   [](char a, char b) { return a == ToLower(b); });
    if (!matches) {
      continue;
    }
    size_t begin = pos + kBearer.size();
    if (text[begin] != ' ' && text[begin] != '+') {  // '+' is a space in a form body.
      continue;
    }
    while (begin < text.size() && (text[begin] == ' ' || text[begin] == '+')) {
      ++begin;
    }
    size_t end = begin;
    while (end < text.size() && IsBearerTokenChar(text[end])) {
      ++end;
    }
    if (end - begin >= kBearerTokenBytesMin) {
      Add(out, PiiKind::kSecret, begin, end);
      pos = end - 1;
    }
  }
}

double ShannonEntropyBits(std::string_view token) {
  std::array<uint32_t, 256> counts{};
  for (char c : token) {
    ++counts[static_cast<unsigned char>(c)];
  }
  double entropy = 0;
  double size = static_cast<double>(token.size());
  for (uint32_t count : counts) {
    if (count > 0) {
      double p = count / size;
      entropy -= p * std::log2(p);
    }
  }
  return entropy;
}

int CharClass(char c) { return IsUpper(c) ? 0 : IsLower(c) ? 1 : IsDigit(c) ? 2 : 3; }

double MeanClassRun(std::string_view token) {
  size_t runs = 1;
  for (size_t idx = 1; idx < token.size(); ++idx) {
    runs += CharClass(token[idx]) != CharClass(token[idx - 1]) ? 1 : 0;
  }
  return static_cast<double>(token.size()) / static_cast<double>(runs);
}

// Ids such as "psn_<32 hex>" or "evt-<uuid>": a word prefix, then hex.
bool IsPrefixedHexId(std::string_view token) {
  size_t prefix_end = 0;
  while (prefix_end < token.size() && IsAlpha(token[prefix_end])) {
    ++prefix_end;
  }
  if (prefix_end == token.size() || (token[prefix_end] != '_' && token[prefix_end] != '-')) {
    return false;
  }
  return IsHexOrSeparator(token.substr(prefix_end + 1));
}

bool LooksLikeSecret(std::string_view token) {
  while (!token.empty() && token.back() == '=') {
    token.remove_suffix(1);
  }
  if (token.size() < kSecretBytesMin || IsHexOrSeparator(token) || IsPrefixedHexId(token)) {
    return false;
  }
  bool upper = std::any_of(token.begin(), token.end(), IsUpper);
  bool lower = std::any_of(token.begin(), token.end(), IsLower);
  if (!upper || !lower || !HasDigit(token)) {
    return false;
  }
  // The entropy a random base62 string of this length shows on average: the
  // log of how many distinct symbols it is expected to draw.
  double size = static_cast<double>(token.size());
  double distinct_expected = 62.0 * (1.0 - std::pow(61.0 / 62.0, size));
  return ShannonEntropyBits(token) >= kSecretEntropyRatioMin * std::log2(distinct_expected) &&
         MeanClassRun(token) <= kSecretClassRunMeanMax;
}

bool IsSecretChar(char c) { return InClass(c, kSecretBit); }

constexpr uint32_t KindBit(PiiKind kind) { return 1u << static_cast<uint32_t>(kind); }
constexpr uint32_t kEveryKind = (1u << kPiiKindCount) - 1;

// The kinds MayHoldSensitive rules out: those of the incident module's
// every-cell scan (cards, IBANs, credentials).
constexpr uint32_t kPrefilteredKinds = KindBit(PiiKind::kCard) | KindBit(PiiKind::kIban) |
                                       KindBit(PiiKind::kJwt) | KindBit(PiiKind::kApiKey) |
                                       KindBit(PiiKind::kSecret);

// The shortest text the plain scanners find a card, IBAN, JWT, API key or
// bearer token in: a card's 13 digits. Decoded base64 shorter than this
// holds none of them.
constexpr size_t kPrefilteredCandidateBytesMin =
    std::min({kCardDigitsMin, kIbanBytesMin, kTokenForKeysMin, kBearerTokenBytesMin});
// The base64 characters that decode to that many bytes (6 bits each): a
// shorter token decodes to too little to hold one. A secret's own token
// (kSecretBytesMin) is longer still.
constexpr size_t kPrefilteredBase64TokenBytesMin = (kPrefilteredCandidateBytesMin * 8 + 5) / 6;
static_assert(kPrefilteredBase64TokenBytesMin == 18);
static_assert(kSecretBytesMin >= kPrefilteredBase64TokenBytesMin);
static_assert(kBase64TokenBytesMin <= kPrefilteredBase64TokenBytesMin);

// MayHoldSensitive's tests at one place, shared by its two ways of finding
// the places: an IBAN's start (two letters, two digits, at the start of an
// alphanumeric run, checked), a run of base64 characters, a run of key
// characters IsApiKey accepts, and the three candidates that begin at a
// byte of their own ('e' 'y' 'J' ends one, 'b' or 'B' and '%' begin the
// others).
bool IbanMayStartAt(std::string_view text, size_t pos) {
  return IbanLength(text[pos], text[pos + 1]) != 0 && pos + kIbanBytesMin <= text.size();
}

// FindEncodedTokensAndSecrets on a run of base64 characters [begin, end):
// a run of 32 may hold a secret; a shorter one only what its decoded text
// holds, which it scans only when the text is printable (as it does here),
// and which needs 13 bytes, 18 characters of the run.
bool Base64RunMayHold(std::string_view text, size_t begin, size_t end) {
  const std::string_view token = text.substr(begin, end - begin);
  if (token.size() < kPrefilteredBase64TokenBytesMin) {
    return false;
  }
  if (token.size() >= kSecretBytesMin) {
    return true;
  }
  if (IsHexOrSeparator(token)) {
    return false;
  }
  std::array<char, kSecretBytesMin * 3 / 4> decoded;
  const std::string_view prefix = token.substr(0, token.size() - (token.size() % 4 == 1 ? 1 : 0));
  const size_t decoded_size = DecodeBase64(prefix, decoded.data());
  return decoded_size > 0 && IsMostlyPrintable(std::string_view(decoded.data(), decoded_size));
}

bool KeyRunIsApiKey(std::string_view text, size_t begin, size_t end) {
  return end - begin >= kTokenForKeysMin && IsApiKey(text.substr(begin, end - begin));
}

bool CandidateAt(std::string_view text, size_t pos) {
  const char c = text[pos];
  if (c == 'J') {
    return pos >= 2 && text[pos - 1] == 'y' && text[pos - 2] == 'e';
  }
  if (c == '%') {
    return IsHex(At(text, pos + 1)) && IsHex(At(text, pos + 2));
  }
  static constexpr std::string_view kEarer = "earer";  // after 'b' or 'B'
  return (c == 'b' || c == 'B') && pos + 6 < text.size() &&
         (text[pos + 6] == ' ' || text[pos + 6] == '+') &&
         std::equal(kEarer.begin(), kEarer.end(), text.begin() + static_cast<ptrdiff_t>(pos) + 1,
                    [](char a, char b) { return a == ToLower(b); });
}

// The byte classes MayHoldSensitive reads, one bit each.
constexpr uint8_t kPrefilterDigit = 1 << 0;
constexpr uint8_t kPrefilterLetter = 1 << 1;
constexpr uint8_t kPrefilterKey = 1 << 2;
constexpr uint8_t kPrefilterBase64 = 1 << 3;
constexpr uint8_t kPrefilterSeparator = 1 << 4;  // ' ' or '-', which may join a card's groups
constexpr uint8_t kPrefilterCandidate = 1 << 5;  // 'J', 'b', 'B', '%': CandidateAt

constexpr std::array<uint8_t, 256> MakePrefilterClasses() {
  std::array<uint8_t, 256> classes{};
  for (int byte = 0; byte < 256; ++byte) {
    const uint16_t bits = kCharClasses[static_cast<size_t>(byte)];
    const char c = static_cast<char>(byte);
    const bool digit = c >= '0' && c <= '9';
    classes[static_cast<size_t>(byte)] = static_cast<uint8_t>(
        (digit ? kPrefilterDigit : 0) | ((bits & kAlphaBit) != 0 ? kPrefilterLetter : 0) |
        ((bits & kKeyBit) != 0 ? kPrefilterKey : 0) |
        ((bits & kBase64Bit) != 0 ? kPrefilterBase64 : 0) |
        (c == ' ' || c == '-' ? kPrefilterSeparator : 0) |
        (c == 'J' || c == 'b' || c == 'B' || c == '%' ? kPrefilterCandidate : 0));
  }
  return classes;
}
constexpr std::array<uint8_t, 256> kPrefilterClasses = MakePrefilterClasses();

// MayHoldSensitive for any text, a byte at a time.
bool MayHoldSensitiveBytewise(std::string_view text) {
  size_t card_digits = 0;    // in the current chain of digits
  bool card_joins = false;   // a digit here continues the chain
  bool after_digit = false;  // the byte before was a digit
  size_t alnum_run = 0;      // bytes of the current alphanumeric run
  bool iban_shape = false;   // that run began letter, letter, digit, digit (so far)
  size_t key_run = 0;        // bytes of the current run of key characters
  size_t base64_run = 0;     // bytes of the current run of base64 characters
  for (size_t pos = 0; pos < text.size(); ++pos) {
    const uint8_t classes = kPrefilterClasses[static_cast<unsigned char>(text[pos])];
    if ((classes & kPrefilterBase64) != 0) {
      ++base64_run;
    } else {
      if (Base64RunMayHold(text, pos - base64_run, pos)) {
        return true;
      }
      base64_run = 0;
    }
    const bool digit = (classes & kPrefilterDigit) != 0;
    if (digit) {
      card_digits = card_joins ? card_digits + 1 : 1;
      if (card_digits >= kCardDigitsMin) {
        return true;
      }
    }
    card_joins = digit || ((classes & kPrefilterSeparator) != 0 && after_digit);
    after_digit = digit;
    if ((classes & (kPrefilterDigit | kPrefilterLetter)) != 0) {
      ++alnum_run;
      if (alnum_run <= 4) {
        iban_shape = (alnum_run == 1 || iban_shape) && (alnum_run <= 2 ? !digit : digit);
        if (alnum_run == 4 && iban_shape && IbanMayStartAt(text, pos - 3)) {
          return true;
        }
      }
    } else {
      alnum_run = 0;
    }
    if ((classes & kPrefilterKey) != 0) {
      ++key_run;
    } else {
      if (KeyRunIsApiKey(text, pos - key_run, pos)) {
        return true;
      }
      key_run = 0;
    }
    if ((classes & kPrefilterCandidate) != 0 && CandidateAt(text, pos)) {
      return true;
    }
  }
  return Base64RunMayHold(text, text.size() - base64_run, text.size()) ||
         KeyRunIsApiKey(text, text.size() - key_run, text.size());
}

// Bit p set where bytes p, p + 1, ..., p + length - 1 all have their bit
// set in `bytes` (a bit per byte); bytes past the text have none.
uint64_t RunsOfAtLeast(uint64_t bytes, size_t length) {
  uint64_t runs = bytes;
  size_t covered = 1;
  while (covered * 2 <= length) {
    runs &= runs >> covered;
    covered *= 2;
  }
  return covered < length ? runs & (runs >> (length - covered)) : runs;
}

// The bit `bit` of each of the 8 bytes of `packed` as 8 bits, byte 0's
// lowest: the multiplication adds each byte's bit at its own place in the
// top byte, with no two on the same place and so no carry.
uint64_t GatherBit(uint64_t packed, int bit) {
  return (((packed >> bit) & 0x0101010101010101ULL) * 0x0102040810204080ULL) >> 56;
}

// MayHoldSensitive for a text of at most 64 bytes: each class a bit per
// byte in a word, built 8 bytes at a time without a branch, and each test
// a few operations on words: most values are this short, and the byte at
// a time version's branches, taken one way or the other at random on mixed
// text, cost more than all of this.
constexpr size_t kPrefilterWordBytesMax = 64;

bool MayHoldSensitiveInWord(std::string_view text) {
  uint64_t digits = 0;
  uint64_t letters = 0;
  uint64_t keys = 0;
  uint64_t base64 = 0;
  uint64_t separators = 0;
  uint64_t candidates = 0;
  for (size_t block = 0; block < text.size(); block += 8) {
    const size_t block_bytes = std::min<size_t>(8, text.size() - block);
    uint64_t packed = 0;  // the classes of the block's bytes, one a byte
    for (size_t byte_idx = 0; byte_idx < block_bytes; ++byte_idx) {
      packed |= uint64_t{kPrefilterClasses[static_cast<unsigned char>(text[block + byte_idx])]}
                << (8 * byte_idx);
    }
    digits |= GatherBit(packed, 0) << block;
    letters |= GatherBit(packed, 1) << block;
    keys |= GatherBit(packed, 2) << block;
    base64 |= GatherBit(packed, 3) << block;
    separators |= GatherBit(packed, 4) << block;
    candidates |= GatherBit(packed, 5) << block;
  }
  for (uint64_t starts =
           base64 & ~(base64 << 1) & RunsOfAtLeast(base64, kPrefilteredBase64TokenBytesMin);
       starts != 0; starts &= starts - 1) {
    const auto begin = static_cast<size_t>(std::countr_zero(starts));
    if (Base64RunMayHold(text, begin,
                         begin + static_cast<size_t>(std::countr_one(base64 >> begin)))) {
      return true;
    }
  }
  // Chains of digits, a single separator between two of them joining
  // them: those of 13 bytes, then their digits counted.
  const uint64_t card_bytes = digits | (separators & (digits << 1) & (digits >> 1));
  for (uint64_t starts =
           card_bytes & ~(card_bytes << 1) & RunsOfAtLeast(card_bytes, kCardDigitsMin);
       starts != 0; starts &= starts - 1) {
    const int begin = std::countr_zero(starts);
    const int length = std::countr_one(card_bytes >> begin);
    const uint64_t chain = length == 64 ? ~uint64_t{0} : (uint64_t{1} << length) - 1;
    if (static_cast<size_t>(std::popcount((digits >> begin) & chain)) >= kCardDigitsMin) {
      return true;
    }
  }
  const uint64_t alnum = digits | letters;
  for (uint64_t starts =
           alnum & ~(alnum << 1) & letters & (letters >> 1) & (digits >> 2) & (digits >> 3);
       starts != 0; starts &= starts - 1) {
    if (IbanMayStartAt(text, static_cast<size_t>(std::countr_zero(starts)))) {
      return true;
    }
  }
  for (uint64_t starts = keys & ~(keys << 1) & RunsOfAtLeast(keys, kTokenForKeysMin); starts != 0;
       starts &= starts - 1) {
    const auto begin = static_cast<size_t>(std::countr_zero(starts));
    const auto end = begin + static_cast<size_t>(std::countr_one(keys >> begin));
    if (KeyRunIsApiKey(text, begin, end)) {
      return true;
    }
  }
  for (; candidates != 0; candidates &= candidates - 1) {
    if (CandidateAt(text, static_cast<size_t>(std::countr_zero(candidates)))) {
      return true;
    }
  }
  return false;
}

// False only when no scanner ScanAll runs can make a candidate of a
// kPrefilteredKinds kind in `text`, so that ScanKinds for those kinds can
// return at once. Each test is a condition without which one scanner
// finds nothing of those kinds (true when in doubt):
//   FindCards: 13 digits in a row, any two consecutive ones adjacent or
//     one space or dash apart;
//   FindIbans: two letters and two digits at the start of an alphanumeric
//     run, the letters a country's (IbanLength), 15 bytes from there;
//   FindJwts: "eyJ";
//   FindApiKeys: a run of key characters IsApiKey accepts;
//   FindBearerTokens: "bearer" (any case) then a space or '+';
//   FindEncodedTokensAndSecrets: a base64 run of 32 characters (a
//     secret), or of 18 (decoded, 13 bytes) not all hex that decodes to
//     printable text;
//   FindPercentEncoded: an escape (the decoded text may hold anything).
// Most values (timestamps, emails, names, URLs) meet none of these, and
// the scan skips Measure and every scanner.
bool MayHoldSensitive(std::string_view text) {
  return text.size() <= kPrefilterWordBytesMax ? MayHoldSensitiveInWord(text)
                                               : MayHoldSensitiveBytewise(text);
}

// The plain scanners that can find a candidate of one of `kinds` (a bit
// per PiiKind). Each scanner finds its own kind only: FindBearerTokens
// secrets.
void ScanPlainFor(std::string_view text, const Features& features, uint32_t kinds,
                  std::vector<Detection>* out) {
  const auto wanted = [kinds](PiiKind kind) { return (kinds & KindBit(kind)) != 0; };
  if (features.at_sign && wanted(PiiKind::kEmail)) {
    FindEmails(text, out);
  }
  if (features.digits >= kDigitsForNumbersMin) {
    if (wanted(PiiKind::kCard)) {
      FindCards(text, out);
    }
    if (wanted(PiiKind::kPhone)) {
      FindPhones(text, out);
    }
    if (wanted(PiiKind::kIban)) {
      FindIbans(text, out);
    }
  }
  if (wanted(PiiKind::kIpAddress)) {
    if (features.digits >= 4 && features.dots >= 3) {
      FindIpv4(text, out);
    }
    if (features.colons >= 2) {
      FindIpv6(text, out);
    }
  }
  if (features.longest_token >= kTokenForKeysMin) {
    if (wanted(PiiKind::kJwt)) {
      FindJwts(text, out);
    }
    if (wanted(PiiKind::kApiKey)) {
      FindApiKeys(text, out);
    }
    if (wanted(PiiKind::kSecret)) {
      FindBearerTokens(text, out);
    }
  }
}

// The scanning layers call each other in a fixed order (raw text, then
// percent-decoded, then base64-decoded), never recursively.
void ScanPlain(std::string_view text, const Features& features, std::vector<Detection>* out) {
  ScanPlainFor(text, features, kEveryKind, out);
}

// The first detection in decoded text, by plain scanners only: decoded text
// is never decoded again, so nesting depth is fixed.
std::optional<PiiKind> FirstPlainDetection(std::string_view decoded) {
  std::vector<Detection> found;
  ScanPlain(decoded, Measure(decoded), &found);
  if (found.empty()) {
    return std::nullopt;
  }
  return std::min_element(found.begin(), found.end(),
                          [](const Detection& a, const Detection& b) { return a.begin < b.begin; })
      ->kind;
}

// Base64-looking tokens: decoded text holding PII makes the whole token a
// detection; decoded text without PII is ordinary encoded text, not a secret.
// Other long tokens are checked for high entropy.
void FindEncodedTokensAndSecrets(std::string_view text, std::vector<Detection>* out) {
  std::array<char, kBase64TokenBytesMax * 3 / 4 + 3> decoded;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!IsBase64Char(text[pos])) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    while (pos < text.size() && IsBase64Char(text[pos])) {
      ++pos;
    }
    size_t end = pos;
    while (pos < text.size() && text[pos] == '=' && pos - end < 2) {
      ++pos;
    }
    std::string_view token = text.substr(begin, end - begin);
    if (token.size() < kBase64TokenBytesMin || IsHexOrSeparator(token)) {
      continue;
    }
    std::string_view prefix = token.substr(0, std::min(token.size(), kBase64TokenBytesMax));
    prefix = prefix.substr(0, prefix.size() - (prefix.size() % 4 == 1 ? 1 : 0));
    std::string_view decoded_text(decoded.data(), DecodeBase64(prefix, decoded.data()));
    bool is_text = !decoded_text.empty() && IsMostlyPrintable(decoded_text);
    if (is_text) {
      if (std::optional<PiiKind> kind = FirstPlainDetection(decoded_text)) {
        Add(out, *kind, begin, pos);
      }
      continue;
    }
    // Secrets split at '/', which paths are full of.
    size_t part_begin = begin;
    while (part_begin < pos) {
      size_t part_end = part_begin;
      while (part_end < pos && IsSecretChar(text[part_end])) {
        ++part_end;
      }
      if (LooksLikeSecret(text.substr(part_begin, part_end - part_begin))) {
        Add(out, PiiKind::kSecret, part_begin, part_end);
      }
      part_begin = part_end + 1;
    }
  }
}

int HexValue(char c) {
  if (IsDigit(c)) {
    return c - '0';
  }
  return ToLower(c) - 'a' + 10;
}

// Decodes %XX escapes, remembering where each decoded byte came from, and
// maps detections in the decoded text back to spans of `text`.
bool IsEscapeAt(std::string_view text, size_t pos) {
  return text[pos] == '%' && IsHex(At(text, pos + 1)) && IsHex(At(text, pos + 2));
}

bool HasEscape(std::string_view text) {
  for (size_t pos = text.find('%'); pos != std::string_view::npos; pos = text.find('%', pos + 1)) {
    if (IsEscapeAt(text, pos)) {
      return true;
    }
  }
  return false;
}

void FindPercentEncoded(std::string_view text, std::vector<Detection>* out) {
  // "50% off" has no escape: return before allocating anything.
  if (!HasEscape(text)) {
    return;
  }
  std::string decoded;
  std::vector<size_t> source;
  decoded.reserve(text.size());
  source.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    source.push_back(pos);
    if (IsEscapeAt(text, pos)) {
      decoded.push_back(static_cast<char>(HexValue(text[pos + 1]) * 16 + HexValue(text[pos + 2])));
      pos += 3;
    } else {
      decoded.push_back(text[pos++]);
    }
  }
  source.push_back(text.size());
  std::vector<Detection> found;
  Features features = Measure(decoded);
  ScanPlain(decoded, features, &found);
  if (features.longest_token >= kBase64TokenBytesMin) {
    FindEncodedTokensAndSecrets(decoded, &found);
  }
  for (const Detection& detection : found) {
    Add(out, detection.kind, source[detection.begin], source[detection.begin + detection.length]);
  }
}

// More specific kinds win a tie on the same span.
int Specificity(PiiKind kind) {
  switch (kind) {
    case PiiKind::kJwt:
      return 0;
    case PiiKind::kApiKey:
      return 1;
    case PiiKind::kIban:
      return 2;
    case PiiKind::kCard:
      return 3;
    case PiiKind::kEmail:
      return 4;
    case PiiKind::kIpAddress:
      return 5;
    case PiiKind::kPhone:
      return 6;
    case PiiKind::kSecret:
      return 7;
  }
  return 8;
}

void Resolve(std::vector<Detection>* candidates, std::vector<Detection>* out) {
  std::sort(candidates->begin(), candidates->end(), [](const Detection& a, const Detection& b) {
    if (a.begin != b.begin) {
      return a.begin < b.begin;
    }
    if (a.length != b.length) {
      return a.length > b.length;
    }
    return Specificity(a.kind) < Specificity(b.kind);
  });
  size_t covered_end = 0;
  for (const Detection& candidate : *candidates) {
    if (candidate.length > 0 && candidate.begin >= covered_end) {
      out->push_back(candidate);
      covered_end = candidate.begin + candidate.length;
    }
  }
}

// Candidates in `text` from every scanner that can find one of `kinds`:
// the plain scanners of those kinds, and the decoding layers whatever the
// kinds (decoded text may hold any kind).
void ScanAllFor(std::string_view text, uint32_t kinds, std::vector<Detection>* candidates) {
  Features features = Measure(text);
  ScanPlainFor(text, features, kinds, candidates);
  if (features.longest_token >= kBase64TokenBytesMin) {
    FindEncodedTokensAndSecrets(text, candidates);
  }
  if (features.percent) {
    FindPercentEncoded(text, candidates);
  }
}

void ScanAll(std::string_view text, std::vector<Detection>* candidates) {
  ScanAllFor(text, kEveryKind, candidates);
}

// Short texts found clean recently, per thread. Product analytics repeats
// itself: the same property keys, plan names, button labels and versions
// arrive in every event, and finding a short text here costs a fraction of
// scanning it. Only texts with no detection are remembered, so the cache
// never holds what the detectors look for; entries are compared in full, so
// a hash collision costs a scan, never a missed detection. Direct-mapped:
// a new text takes its slot's place.
class CleanTextCache {
 public:
  static constexpr size_t kEntries = 4096;
  static constexpr size_t kTextBytesMax = 47;

  struct Slot {
    uint8_t size = kEmpty;
    std::array<char, kTextBytesMax> text;

    bool Holds(std::string_view candidate) const {
      return size == candidate.size() && std::memcmp(text.data(), candidate.data(), size) == 0;
    }
    void Store(std::string_view clean) {
      size = static_cast<uint8_t>(clean.size());
      std::memcpy(text.data(), clean.data(), clean.size());
    }
  };

  // The slot for `text`, or nullptr when the text is too long to cache.
  static Slot* Find(std::string_view text) {
    if (text.size() > kTextBytesMax) {
      return nullptr;
    }
    thread_local std::unique_ptr<std::array<Slot, kEntries>> slots;
    if (slots == nullptr) {
      slots = std::make_unique<std::array<Slot, kEntries>>();
    }
    return &(*slots)[std::hash<std::string_view>{}(text) % kEntries];
  }

 private:
  static constexpr uint8_t kEmpty = 0xFF;
};

}  // namespace

std::string_view PiiKindName(PiiKind kind) {
  switch (kind) {
    case PiiKind::kEmail:
      return "email";
    case PiiKind::kPhone:
      return "phone";
    case PiiKind::kCard:
      return "card";
    case PiiKind::kIban:
      return "iban";
    case PiiKind::kIpAddress:
      return "ip";
    case PiiKind::kJwt:
      return "jwt";
    case PiiKind::kApiKey:
      return "api_key";
    case PiiKind::kSecret:
      return "secret";
  }
  return "unknown";
}

Detectors::Detectors() = default;

void Detectors::Scan(std::string_view text, std::vector<Detection>* out) const {
  std::vector<Detection> candidates;
  ScanAll(text, &candidates);
  Resolve(&candidates, out);
}

bool Detectors::MayHoldKinds(std::string_view text, uint32_t kinds) const {
  return (kinds & ~kPrefilteredKinds) != 0 || MayHoldSensitive(text);
}

void Detectors::ScanKinds(std::string_view text, uint32_t kinds,
                          std::vector<Detection>* out) const {
  if (!MayHoldKinds(text, kinds)) {
    return;  // most texts: one pass, no scanner run
  }
  std::vector<Detection> candidates;
  ScanAllFor(text, kinds, &candidates);
  const auto wanted = [kinds](const Detection& detection) {
    return (kinds & KindBit(detection.kind)) != 0;
  };
  if (std::none_of(candidates.begin(), candidates.end(), wanted)) {
    return;  // no candidate of a wanted kind, so Scan would report none
  }
  // Every scanner: another kind's candidate may take a wanted one's place
  // where they overlap.
  candidates.clear();
  ScanAll(text, &candidates);
  const size_t first = out->size();
  Resolve(&candidates, out);
  out->erase(std::remove_if(out->begin() + static_cast<std::ptrdiff_t>(first), out->end(),
                            [&wanted](const Detection& detection) { return !wanted(detection); }),
             out->end());
}

std::optional<std::string> Detectors::Redact(std::string_view text, DetectorCounts* counts) const {
  CleanTextCache::Slot* slot = CleanTextCache::Find(text);
  if (slot != nullptr && slot->Holds(text)) {
    return std::nullopt;
  }
  std::vector<Detection> candidates;
  ScanAll(text, &candidates);
  if (candidates.empty()) {
    if (slot != nullptr) {
      slot->Store(text);
    }
    return std::nullopt;
  }
  std::vector<Detection> detections;
  Resolve(&candidates, &detections);
  if (detections.empty()) {
    return std::nullopt;
  }
  std::string redacted;
  redacted.reserve(text.size());
  size_t copied = 0;
  for (const Detection& detection : detections) {
    redacted.append(text.substr(copied, detection.begin - copied));
    redacted.push_back('[');
    redacted.append(PiiKindName(detection.kind));
    redacted.push_back(']');
    copied = detection.begin + detection.length;
    if (counts != nullptr) {
      ++counts->by_kind[static_cast<size_t>(detection.kind)];
    }
  }
  redacted.append(text.substr(copied));
  return redacted;
}

}  // namespace minpanel::privacy
