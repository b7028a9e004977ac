// Plausible's /api/event body → RawEvent. Rules: docs/formats/plausible.md.
#include "ingest/plausible_events.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <memory>
#include <optional>
#include <utility>

#include "ingest/ingest.h"
#include "ingest/json_values.h"
#include "ingest/text_util.h"

namespace minpanel::ingest {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::string_view kLibrary = "plausible";
constexpr std::string_view kWww = "www.";

// Plausible's screen size classes (its Request.screen_size/1).
constexpr int64_t kMobileWidthMax = 575;
constexpr int64_t kTabletWidthMax = 991;
constexpr int64_t kLaptopWidthMax = 1439;

// One parser for the body and one for `p` when it is a JSON string, which
// is parsed while the body's document is still in use. The body is an
// object holding props or revenue objects: one level of envelope.
enum class ParserSlot : size_t { kBody = 0, kProps = 1 };

Result<element> Parse(ParserSlot slot, std::string_view json, std::string_view field) {
  if (slot == ParserSlot::kBody) {
    return internal::ParseWithThreadParser<1, 0>(json, {field, ""});
  }
  return internal::ParseWithThreadParser<1, 1>(json, {field, ""});
}

// One member of the body, and the spelling the client used for it.
struct Member {
  std::optional<element> value;
  std::string_view spelling;
};

struct Members {
  Member name;
  Member url;
  Member domain;
  Member referrer;
  Member screen_width;
  Member hash_mode;
  Member props;
  Member meta;
  Member revenue;
  Member interactive;
};

// The member a key names, short or long; nullptr for keys Plausible does not
// define (ignored, as Plausible ignores them).
Member* MemberFor(std::string_view key, Members* members) {
  struct Spelling {
    std::string_view short_name;
    std::string_view long_name;
    Member Members::*member;
  };
  static constexpr std::array<Spelling, 10> kSpellings = {{
      {"n", "name", &Members::name},
      {"u", "url", &Members::url},
      {"d", "domain", &Members::domain},
      {"r", "referrer", &Members::referrer},
      {"w", "screen_width", &Members::screen_width},
      {"h", "hashMode", &Members::hash_mode},
      {"p", "props", &Members::props},
      {"m", "meta", &Members::meta},
      {"$", "revenue", &Members::revenue},
      {"i", "interactive", &Members::interactive},
  }};
  for (const Spelling& spelling : kSpellings) {
    if (key == spelling.short_name || key == spelling.long_name) {
      return &(members->*spelling.member);
    }
  }
  return nullptr;
}

Status ReadMembers(simdjson::dom::object object, Members* members) {
  for (const auto [key, value] : object) {
    Member* member = MemberFor(key, members);
    if (member == nullptr) {
      continue;
    }
    if (member->value.has_value()) {
      return Status::InvalidArgument(std::string(key) + ": sent twice (as " +
                                     std::string(member->spelling) + " and " + std::string(key) +
                                     "); send each field once");
    }
    member->value = value;
    member->spelling = key;
  }
  return Status::Ok();
}

bool IsAbsent(const Member& member) {
  return !member.value.has_value() || member.value->type() == element_type::NULL_VALUE;
}

Status Invalid(const Member& member, std::string_view rule) {
  return Status::InvalidArgument(std::string(member.spelling) + ": " + std::string(rule));
}

std::string OverLimit(size_t actual, size_t limit, std::string_view name) {
  return std::to_string(actual) + " bytes, over the limit of " + std::to_string(limit) + " (" +
         std::string(name) + ")";
}

// A required, non-empty string of at most `bytes_max` bytes.
Result<std::string_view> RequiredString(const Member& member, std::string_view long_name,
                                        std::string_view short_name, size_t bytes_max,
                                        std::string_view limit_name) {
  if (IsAbsent(member)) {
    return Status::InvalidArgument(std::string(long_name) + ": required (as " +
                                   std::string(short_name) + " or " + std::string(long_name) + ")");
  }
  std::string_view text;
  if (member.value->get_string().get(text) != simdjson::SUCCESS) {
    return Invalid(member, "must be a string");
  }
  if (internal::TrimAsciiWhitespace(text).empty()) {
    return Invalid(member, "must not be empty");
  }
  if (text.size() > bytes_max) {
    return Invalid(member, OverLimit(text.size(), bytes_max, limit_name));
  }
  return text;
}

bool IsSchemeChar(char c, bool first) {
  const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return first ? letter : letter || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

// "scheme://host...": Plausible needs the page's host and path.
bool IsAbsoluteUrl(std::string_view url) {
  const size_t separator = url.find("://");
  if (separator == std::string_view::npos || separator == 0 || separator + 3 >= url.size()) {
    return false;
  }
  for (size_t char_idx = 0; char_idx < separator; ++char_idx) {
    if (!IsSchemeChar(url[char_idx], char_idx == 0)) {
      return false;
    }
  }
  return true;
}

// In hash mode (a single-page app routing on the fragment) the fragment is
// the page's path. The policy drops fragments, so it moves into the path:
// https://h/app?x=1#/settings?tab=2 → https://h/app/settings?tab=2.
std::string HashModeUrl(std::string_view url) {
  const size_t hash = url.find('#');
  if (hash == std::string_view::npos) {
    return std::string(url);
  }
  std::string_view before = url.substr(0, hash);
  before = before.substr(0, before.find('?'));
  std::string_view fragment = url.substr(hash + 1);
  while (!before.empty() && before.back() == '/' && !before.ends_with("://")) {
    before.remove_suffix(1);
  }
  while (!fragment.empty() && fragment.front() == '/') {
    fragment.remove_prefix(1);
  }
  std::string rewritten(before);
  rewritten.push_back('/');
  rewritten.append(fragment);
  return rewritten;
}

Status ReadReferrer(const Member& member, RawEvent* event) {
  if (IsAbsent(member)) {
    return Status::Ok();
  }
  std::string_view text;
  if (member.value->get_string().get(text) != simdjson::SUCCESS) {
    return Invalid(member, "must be a string or null");
  }
  if (text.size() > kPlausibleUrlBytesMax) {
    return Invalid(member, OverLimit(text.size(), kPlausibleUrlBytesMax, "kPlausibleUrlBytesMax"));
  }
  event->referrer.assign(text);
  return Status::Ok();
}

Status ReadScreenWidth(const Member& member, Properties* properties) {
  if (IsAbsent(member)) {
    return Status::Ok();
  }
  const std::string rule = "must be a whole number of pixels from 0 to " +
                           std::to_string(kPlausibleScreenWidthMax) + " (kPlausibleScreenWidthMax)";
  int64_t width = 0;
  const element value = *member.value;
  if (value.type() == element_type::INT64) {
    width = value.get_int64().value_unsafe();
  } else if (value.type() == element_type::DOUBLE) {
    const double raw = value.get_double().value_unsafe();
    if (raw != std::floor(raw) || raw < 0 || raw > static_cast<double>(kPlausibleScreenWidthMax)) {
      return Invalid(member, rule);
    }
    width = static_cast<int64_t>(raw);
  } else {
    return Invalid(member, rule);
  }
  if (width < 0 || width > kPlausibleScreenWidthMax) {
    return Invalid(member, rule);
  }
  properties->push_back(Property{std::string(kPlausibleScreenSizeKey),
                                 Value::String(std::string(PlausibleScreenSize(width)))});
  return Status::Ok();
}

// `h`: the tracker sends 1 or 0, the script tag true or false.
Result<bool> ReadHashMode(const Member& member) {
  if (IsAbsent(member)) {
    return false;
  }
  const element value = *member.value;
  if (value.type() == element_type::BOOL) {
    return value.get_bool().value_unsafe();
  }
  if (value.type() == element_type::INT64) {
    const int64_t flag = value.get_int64().value_unsafe();
    if (flag == 0 || flag == 1) {
      return flag == 1;
    }
  }
  return Invalid(member, "must be 0, 1, true or false");
}

Status ReadInteractive(const Member& member, Properties* properties) {
  if (IsAbsent(member)) {
    return Status::Ok();
  }
  bool interactive = true;
  if (member.value->get_bool().get(interactive) != simdjson::SUCCESS) {
    return Invalid(member, "must be true or false");
  }
  properties->push_back(Property{std::string(kPlausibleInteractiveKey), Value::Bool(interactive)});
  return Status::Ok();
}

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// `$`/`revenue`: {"currency": "EUR", "amount": 19.99 or "19.99"}.
Status ReadRevenue(const Member& member, Properties* properties) {
  if (IsAbsent(member)) {
    return Status::Ok();
  }
  const std::string field(member.spelling);
  simdjson::dom::object object;
  if (member.value->get_object().get(object) != simdjson::SUCCESS) {
    return Invalid(member, "must be an object {\"currency\": \"EUR\", \"amount\": 19.99}");
  }
  element currency_value;
  std::string_view currency;
  if (object["currency"].get(currency_value) != simdjson::SUCCESS ||
      currency_value.get_string().get(currency) != simdjson::SUCCESS || currency.size() != 3 ||
      !std::all_of(currency.begin(), currency.end(), IsAsciiLetter)) {
    return Status::InvalidArgument(field +
                                   ".currency: required: a three-letter ISO 4217 code such as EUR");
  }
  element amount_value;
  double amount = 0;
  const std::string amount_rule = ".amount: required: a number (or a string of one) of at most " +
                                  std::to_string(static_cast<int64_t>(kPlausibleRevenueAmountMax)) +
                                  " (kPlausibleRevenueAmountMax)";
  if (object["amount"].get(amount_value) != simdjson::SUCCESS) {
    return Status::InvalidArgument(field + amount_rule);
  }
  std::string_view amount_text;
  if (amount_value.get_double().get(amount) == simdjson::SUCCESS) {
    // A number (get_double also converts integers).
  } else if (amount_value.get_string().get(amount_text) == simdjson::SUCCESS) {
    const std::string_view trimmed = internal::TrimAsciiWhitespace(amount_text);
    const auto parsed = std::from_chars(trimmed.data(), trimmed.data() + trimmed.size(), amount);
    if (trimmed.empty() || parsed.ec != std::errc() ||
        parsed.ptr != trimmed.data() + trimmed.size()) {
      return Status::InvalidArgument(field + amount_rule);
    }
  } else {
    return Status::InvalidArgument(field + amount_rule);
  }
  if (!std::isfinite(amount) || std::fabs(amount) > kPlausibleRevenueAmountMax) {
    return Status::InvalidArgument(field + amount_rule);
  }
  std::string code(currency);
  std::transform(code.begin(), code.end(), code.begin(),
                 [](char c) { return static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c); });
  properties->push_back(Property{std::string(kPlausibleRevenueAmountKey), Value::Double(amount)});
  properties->push_back(
      Property{std::string(kPlausibleRevenueCurrencyKey), Value::String(std::move(code))});
  return Status::Ok();
}

// The custom props object: scalar values only, within Plausible's limits.
Status AppendProps(simdjson::dom::object object, std::string_view field,
                   internal::PropertyWriter* writer) {
  if (object.size() > kPlausiblePropsMax) {
    return Status::InvalidArgument(std::string(field) + ": " + std::to_string(object.size()) +
                                   " props, over the limit of " +
                                   std::to_string(kPlausiblePropsMax) + " (kPlausiblePropsMax)");
  }
  for (const auto [key, value] : object) {
    const std::string prop_field = std::string(field) + "." + std::string(key);
    if (key.empty()) {
      return Status::InvalidArgument(std::string(field) + ": a prop name must not be empty");
    }
    if (key.size() > kPropertyKeyBytesMax) {
      return Status::InvalidArgument(
          std::string(field) + ": a prop name of " +
          OverLimit(key.size(), kPropertyKeyBytesMax, "kPropertyKeyBytesMax"));
    }
    switch (value.type()) {
      case element_type::ARRAY:
      case element_type::OBJECT:
        return Status::InvalidArgument(
            prop_field +
            ": must be a string, number, boolean or null (Plausible props are "
            "scalars)");
      case element_type::STRING: {
        const size_t bytes = value.get_string().value_unsafe().size();
        if (bytes > kPlausiblePropValueBytesMax) {
          return Status::InvalidArgument(
              prop_field + ": " +
              OverLimit(bytes, kPlausiblePropValueBytesMax, "kPlausiblePropValueBytesMax"));
        }
        break;
      }
      default:
        break;
    }
    if (auto problem = writer->Append(key, value)) {
      return Status::InvalidArgument(prop_field + ": " + problem->message);
    }
  }
  return Status::Ok();
}

// `p`/`props` or `m`/`meta`: an object, or a JSON string of one (what
// plausible-tracker sends).
Status ReadProps(const Members& members, internal::PropertyWriter* writer) {
  if (!IsAbsent(members.props) && !IsAbsent(members.meta)) {
    return Status::InvalidArgument(std::string(members.props.spelling) + " and " +
                                   std::string(members.meta.spelling) +
                                   ": send the custom props once");
  }
  const Member& member = IsAbsent(members.props) ? members.meta : members.props;
  if (IsAbsent(member)) {
    return Status::Ok();
  }
  const std::string_view field = member.spelling;
  const std::string rule = "must be an object of custom props, or a JSON string of one";
  element value = *member.value;
  std::string_view text;
  if (value.get_string().get(text) == simdjson::SUCCESS) {
    if (internal::TrimAsciiWhitespace(text).empty()) {
      return Invalid(member, rule);
    }
    MP_ASSIGN_OR_RETURN(value, Parse(ParserSlot::kProps, text, field));
    if (value.type() == element_type::NULL_VALUE) {
      return Status::Ok();
    }
  }
  simdjson::dom::object object;
  if (value.get_object().get(object) != simdjson::SUCCESS) {
    return Invalid(member, rule);
  }
  return AppendProps(object, field, writer);
}

bool IsDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

}  // namespace

std::string_view PlausibleScreenSize(int64_t width) {
  if (width <= kMobileWidthMax) {
    return "Mobile";
  }
  if (width <= kTabletWidthMax) {
    return "Tablet";
  }
  if (width <= kLaptopWidthMax) {
    return "Laptop";
  }
  return "Desktop";
}

Result<std::string> NormalisePlausibleDomain(std::string_view domain) {
  const std::string rule =
      "must be a site's domain name such as example.com: letters, digits, "
      "'-' and '.', with an optional :port, at most " +
      std::to_string(kPlausibleDomainBytesMax) + " bytes (kPlausibleDomainBytesMax)";
  std::string_view trimmed = internal::TrimAsciiWhitespace(domain);
  if (trimmed.find(',') != std::string_view::npos) {
    return Status::InvalidArgument(
        "domain: one site per event; a comma-separated list of sites (data-domain=\"a.com,b.com\") "
        "is not supported");
  }
  if (trimmed.empty() || trimmed.size() > kPlausibleDomainBytesMax) {
    return Status::InvalidArgument("domain: " + rule);
  }
  std::string normalised(trimmed);
  std::transform(normalised.begin(), normalised.end(), normalised.begin(),
                 [](char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
  const size_t colon = normalised.find(':');
  std::string_view host = std::string_view(normalised).substr(0, colon);
  if (colon != std::string::npos) {
    const std::string_view port = std::string_view(normalised).substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return Status::InvalidArgument("domain: " + rule);
    }
  }
  if (host.ends_with('.')) {
    host.remove_suffix(1);
  }
  // Every leading "www.", so that normalising twice changes nothing.
  while (host.starts_with(kWww) && host.size() > kWww.size()) {
    host.remove_prefix(kWww.size());
  }
  if (host.empty() || host.front() == '.' || host.back() == '.' || host.front() == '-' ||
      host.find("..") != std::string_view::npos ||
      !std::all_of(host.begin(), host.end(), IsDomainChar)) {
    return Status::InvalidArgument("domain: " + rule);
  }
  std::string result(host);
  if (colon != std::string::npos) {
    result.append(normalised, colon);
  }
  return result;
}

Result<PlausibleEvent> DecodePlausibleEvent(std::string_view body,
                                            const PlausibleDecodeOptions& options) {
  if (body.size() > kPlausibleBodyBytesMax) {
    return Status::ResourceExhausted(
        "body: " + OverLimit(body.size(), kPlausibleBodyBytesMax, "kPlausibleBodyBytesMax"));
  }
  if (internal::TrimAsciiWhitespace(body).empty()) {
    return Status::InvalidArgument("body: empty (expected the event as a JSON object)");
  }
  MP_ASSIGN_OR_RETURN(const element root, Parse(ParserSlot::kBody, body, "body"));
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return Status::InvalidArgument("body: must be a JSON object (one event)");
  }
  Members members;
  MP_RETURN_IF_ERROR(ReadMembers(object, &members));

  PlausibleEvent decoded;
  RawEvent& event = decoded.event;
  MP_ASSIGN_OR_RETURN(const std::string_view name,
                      RequiredString(members.name, "name", "n", kPlausibleEventNameBytesMax,
                                     "kPlausibleEventNameBytesMax"));
  event.name.assign(name);
  MP_ASSIGN_OR_RETURN(
      const std::string_view url,
      RequiredString(members.url, "url", "u", kPlausibleUrlBytesMax, "kPlausibleUrlBytesMax"));
  if (!IsAbsoluteUrl(url)) {
    return Invalid(members.url, "must be an absolute URL such as https://example.com/path");
  }
  MP_ASSIGN_OR_RETURN(const std::string_view domain,
                      RequiredString(members.domain, "domain", "d", kPlausibleUrlBytesMax,
                                     "kPlausibleUrlBytesMax"));
  MP_ASSIGN_OR_RETURN(decoded.domain, NormalisePlausibleDomain(domain));
  MP_RETURN_IF_ERROR(ReadReferrer(members.referrer, &event));
  MP_ASSIGN_OR_RETURN(const bool hash_mode, ReadHashMode(members.hash_mode));
  event.page_url = hash_mode ? HashModeUrl(url) : std::string(url);

  internal::PropertyWriter writer(&event.properties);
  MP_RETURN_IF_ERROR(ReadProps(members, &writer));
  // The decoder's own properties come after the custom props, so that
  // Finish keeps them over a prop of the same name.
  MP_RETURN_IF_ERROR(ReadScreenWidth(members.screen_width, &event.properties));
  MP_RETURN_IF_ERROR(ReadRevenue(members.revenue, &event.properties));
  MP_RETURN_IF_ERROR(ReadInteractive(members.interactive, &event.properties));
  writer.Finish();

  event.time_ms = options.now_ms;
  event.arrival_time = true;
  event.client_ip.assign(options.client_ip);
  event.user_agent.assign(options.user_agent);
  event.library.assign(kLibrary);
  return decoded;
}

}  // namespace minpanel::ingest
