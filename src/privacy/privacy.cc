#include "privacy/privacy.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <string>

#include "privacy/url.h"

namespace minpanel::privacy {
namespace {


// Hash domains keep the different uses of one key apart.
constexpr uint8_t kDomainSubject = 's';
constexpr uint8_t kDomainGroup = 'g';
constexpr uint8_t kDomainClientInsertId = 'i';
constexpr uint8_t kDomainContentInsertId = 'c';


// Where the policy writes what it derives from the context fields; Mixpanel's
// own spellings, so that existing reports read them.
enum ContextKey : uint8_t {
  kCountryKey,
  kRegionKey,
  kCityKey,
  kBrowserKey,
  kBrowserVersionKey,
  kOsKey,
  kDeviceTypeKey,
  kUrlKey,
  kReferrerKey,
  kReferringDomainKey,
  kIpKey,
  kUserAgentKey,
  kLibraryKey,
  kContextKeyCount,
};
constexpr std::array<std::string_view, kContextKeyCount> kContextKeyNames = {
    "mp_country_code", "$region", "$city", "$browser", "$browser_version",
    "$os", "$device_type", "$current_url", "$referrer", "$referring_domain",
    "$ip", "$user_agent", "mp_lib"};

// The context keys a client already sent itself, which the policy leaves
// alone: found in one pass over the properties, not one pass per key.
class ContextKeysPresent {
 public:
  explicit ContextKeysPresent(const Properties& properties) {
    for (const Property& property : properties) {
      const std::string_view key = property.key;
      if (key.size() < 3 || (key.front() != '$' && key.front() != 'm')) {
        continue;  // every context key starts with '$' or "mp_"
      }
      for (size_t key_idx = 0; key_idx < kContextKeyNames.size(); ++key_idx) {
        if (key == kContextKeyNames[key_idx]) {
          bits_ |= 1U << key_idx;
        }
      }
    }
  }

  // Appends the property unless the client sent it or `value` is empty.
  void SetIfAbsent(Properties* properties, ContextKey key, std::string value) {
    if (value.empty() || (bits_ & (1U << key)) != 0) {
      return;
    }
    bits_ |= 1U << key;
    properties->push_back(
        Property{std::string(kContextKeyNames[key]), Value::String(std::move(value))});
  }

 private:
  uint32_t bits_ = 0;
};

GeoPrecision ToGeoPrecision(LocationPrecision precision) {
  switch (precision) {
    case LocationPrecision::kCountry:
      return GeoPrecision::kCountry;
    case LocationPrecision::kRegion:
      return GeoPrecision::kRegion;
    case LocationPrecision::kCity:
      return GeoPrecision::kCity;
  }
  return GeoPrecision::kCountry;
}

std::shared_ptr<const PolicySpec> DefaultSpec() {
  static const auto spec = std::make_shared<const PolicySpec>(DefaultPolicy());
  return spec;
}

std::shared_ptr<const PolicyTools> DefaultTools() {
  static const auto tools = std::make_shared<const PolicyTools>();
  return tools;
}

// A canonical byte encoding of properties for the content insert id.
void AppendCanonical(const Properties& properties, std::string* out) {
  for (const Property& property : properties) {
    out->append(property.key);
    out->push_back('\0');
    const Value& value = property.value;
    out->push_back(static_cast<char>(value.type()));
    switch (value.type()) {
      case Value::Type::kNull:
        break;
      case Value::Type::kBool:
        out->push_back(value.as_bool() ? '1' : '0');
        break;
      case Value::Type::kInt:
        out->append(std::to_string(value.as_int()));
        break;
      case Value::Type::kDouble: {
        const auto bits = std::bit_cast<uint64_t>(value.as_double());
        out->append(reinterpret_cast<const char*>(&bits), sizeof(bits));
        break;
      }
      case Value::Type::kString:
        out->append(value.as_string());
        break;
      case Value::Type::kList:
        for (const std::string& item : value.as_list()) {
          out->append(item);
          out->push_back('\0');
        }
        break;
    }
    out->push_back('\0');
  }
}

}  // namespace

Policy::Policy(ProjectKey key) : Policy(key, DefaultSpec(), DefaultTools()) {}

Policy::Policy(ProjectKey key, std::shared_ptr<const PolicySpec> spec,
               std::shared_ptr<const PolicyTools> tools, uint32_t policy_version)
    : key_(key), spec_(std::move(spec)), tools_(std::move(tools)), policy_version_(policy_version) {
  url_policy_.query_keep_prefixes = spec_->query_keep_prefixes;
}

Id128 Policy::KeyedHash(uint8_t domain, std::string_view data) const {
  std::array<uint8_t, 16> digest{};
  crypto_generichash_state state;
  crypto_generichash_init(&state, key_.bytes.data(), key_.bytes.size(), digest.size());
  crypto_generichash_update(&state, &domain, 1);
  crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  crypto_generichash_final(&state, digest.data(), digest.size());
  return Id128::FromBytes(digest);
}

Id128 Policy::Pseudonym(std::string_view distinct_id) const {
  if (distinct_id.starts_with(kPseudonymPrefix)) {
    if (auto literal = Id128::FromHex(distinct_id.substr(kPseudonymPrefix.size()))) {
      return *literal;
    }
  }
  return KeyedHash(kDomainSubject, distinct_id);
}

Id128 Policy::InsertId(const RawEvent& raw) const {
  if (raw.insert_id.has_value()) {
    if (auto literal = Id128::FromHex(*raw.insert_id)) {
      return *literal;
    }
    return KeyedHash(kDomainClientInsertId, *raw.insert_id);
  }
  if (raw.arrival_time) {
    // A hash of content with the server's time would never match a retry
    // (it arrives later) and would take two equal events sent within one
    // millisecond for one (two awaited Mixpanel track calls often are).
    std::array<uint8_t, 16> random{};
    randombytes_buf(random.data(), random.size());
    return Id128::FromBytes(random);
  }
  std::string canonical;
  canonical.reserve(256);
  canonical.append(raw.name);
  canonical.push_back('\0');
  canonical.append(std::to_string(raw.time_ms));
  canonical.push_back('\0');
  canonical.append(raw.distinct_id);
  canonical.push_back('\0');
  AppendCanonical(raw.properties, &canonical);
  return KeyedHash(kDomainContentInsertId, canonical);
}

Id128 Policy::GroupSubject(std::string_view group_key, std::string_view group_id) const {
  std::string group_identity(group_key);
  group_identity.push_back('\0');
  group_identity.append(group_id);
  return KeyedHash(kDomainGroup, group_identity);
}

// A person's id becomes that person's subject; any other id becomes the
// subject of the group it names, the property's name being the group key
// (Mixpanel's group analytics: an event property `company` = "acme" is the
// group profile {$group_key: company, $group_id: acme}; PostHog's
// $groups.company likewise), so events and group profiles join.
std::string Policy::PseudonymText(std::string_view key, std::string_view text) const {
  if (text.starts_with(kPseudonymPrefix) &&
      Id128::FromHex(text.substr(kPseudonymPrefix.size())).has_value()) {
    return std::string(text);  // already a pseudonym (a re-imported export)
  }
  if (ClassifyKey(key) == ReservedKey::kSubjectId) {
    return FormatPseudonym(Pseudonym(text));
  }
  constexpr std::string_view kGroupsPrefix = "$groups.";
  const std::string_view group_key =
      key.starts_with(kGroupsPrefix) ? key.substr(kGroupsPrefix.size()) : key;
  return FormatPseudonym(GroupSubject(group_key, text));
}

namespace {

// An absolute http(s) URL with a query string or fragment, anywhere: the
// SDKs and applications copy page URLs into properties under names no list
// foresees, and the query is where tokens and emails live.
bool IsUrlWithQuery(std::string_view text) {
  const auto starts_with_ci = [text](std::string_view prefix) {
    return text.size() >= prefix.size() &&
           std::equal(prefix.begin(), prefix.end(), text.begin(),
                      [](char a, char b) { return a == (b | 0x20); });
  };
  return (starts_with_ci("http://") || starts_with_ci("https://")) &&
         text.find_first_of("?#") != std::string_view::npos;
}

}  // namespace

// What the detectors make of one string: a URL with a query is generalised
// as a page URL is ("[url]" when it cannot be made safe), then the
// detectors redact what they recognise.
std::optional<std::string> Policy::RedactText(std::string_view text,
                                              PolicyCounters* counters) const {
  std::optional<std::string> url;
  if (IsUrlWithQuery(text)) {
    url = GeneraliseUrl(text, url_policy_);
    if (url->empty()) {
      *url = kUrlRedacted;
    }
    text = *url;
  }
  if (auto redacted = tools_->detectors.Redact(text, &counters->detections)) {
    return redacted;
  }
  return url;
}

Value Policy::Redacted(Value value, PolicyCounters* counters) const {
  if (value.type() == Value::Type::kString) {
    auto redacted = RedactText(value.as_string(), counters);
    if (!redacted.has_value()) {
      return value;
    }
    ++counters->values_redacted;
    return Value::String(std::move(*redacted));
  }
  if (value.type() != Value::Type::kList) {
    return value;
  }
  StringList items;
  bool changed = false;
  for (const std::string& item : value.as_list()) {
    if (auto redacted = RedactText(item, counters)) {
      if (!changed) {
        items = value.as_list();  // copied only once something changes
        changed = true;
      }
      items[static_cast<size_t>(&item - value.as_list().data())] = std::move(*redacted);
    }
  }
  counters->values_redacted += changed ? 1 : 0;
  return changed ? Value::List(std::move(items)) : value;
}

// The value a property keeps under `action`, or nullopt to drop it.
std::optional<Value> Policy::ApplyAction(Action action, Property& property,
                                         PolicyCounters* counters) const {
  Value& value = property.value;
  switch (action) {
    case Action::kKeep:
      return std::move(value);
    case Action::kDrop:
      ++counters->properties_dropped;
      return std::nullopt;
    case Action::kRedact:
      return Redacted(std::move(value), counters);
    case Action::kGeneralise:
      if (value.type() == Value::Type::kString) {
        // A referrer keeps its host, anything else what GeneraliseUrl keeps;
        // what cannot be made safe ("") is dropped.
        std::string text = ClassifyKey(property.key) == ReservedKey::kReferrerCopy
                               ? ReferrerHost(value.as_string())
                               : GeneraliseUrl(value.as_string(), url_policy_);
        if (text.empty()) {
          ++counters->properties_dropped;
          return std::nullopt;
        }
        return Redacted(Value::String(std::move(text)), counters);
      }
      if (value.type() == Value::Type::kInt) {
        return Value::Int(static_cast<int64_t>(BucketNumber(static_cast<double>(value.as_int()))));
      }
      if (value.type() == Value::Type::kDouble) {
        return Value::Double(BucketNumber(value.as_double()));
      }
      return Redacted(std::move(value), counters);
    case Action::kPseudonymise:
      break;
  }
  ++counters->properties_pseudonymised;
  switch (value.type()) {
    case Value::Type::kString:
      return Value::String(PseudonymText(property.key, value.as_string()));
    case Value::Type::kInt:
      return Value::String(PseudonymText(property.key, std::to_string(value.as_int())));
    case Value::Type::kList: {
      StringList items;
      for (const std::string& item : value.as_list()) {
        items.push_back(PseudonymText(property.key, item));
      }
      return Value::List(std::move(items));
    }
    default:
      return std::move(value);  // null, bool, double: nothing that identifies
  }
}

Action Policy::ActionFor(std::string_view key, bool user_profile, std::string* reason,
                         PolicyCounters* counters) const {
  const auto explain = [reason](std::string text) {
    if (reason != nullptr) {
      *reason = std::move(text);
    }
  };
  if (const PropertyRule* rule = MatchRule(*spec_, key)) {
    explain("rule at line " + std::to_string(rule->line) + " (" + rule->pattern + ")");
    if (counters != nullptr) {
      counters->rule_hits.resize(spec_->rules.size());
      ++counters->rule_hits[static_cast<size_t>(rule - spec_->rules.data())];
    }
    return rule->action;
  }
  const ReservedKey reserved = ClassifyKey(key);
  if (spec_->drop_person_properties && IsPersonKey(reserved, user_profile)) {
    explain("named for a person");
    return Action::kDrop;
  }
  if (reserved == ReservedKey::kSubjectId || reserved == ReservedKey::kGroupId) {
    explain("an id of a person or organisation");
    return Action::kPseudonymise;
  }
  if (reserved == ReservedKey::kPageUrlCopy) {
    explain("a copy of the page URL (page_url)");
    return spec_->page_url;
  }
  if (reserved == ReservedKey::kReferrerCopy) {
    explain("a copy of the referrer (referrer)");
    return spec_->referrer;
  }
  if (!spec_->detectors) {
    explain("detectors are off");
    return Action::kKeep;
  }
  explain("detectors");
  return Action::kRedact;
}

Properties Policy::ApplyToProperties(Properties properties, bool user_profile,
                                     PolicyCounters* counters) const {
  Properties kept;
  kept.reserve(properties.size() + kContextKeyCount);  // AddContext appends
  for (Property& property : properties) {
    const Action action = ActionFor(property.key, user_profile, nullptr, counters);
    std::optional<Value> value = ApplyAction(action, property, counters);
    if (!value.has_value()) {
      continue;
    }
    // A key can carry personal data too ("clicked_by_a@b.test"). Two keys
    // redacted alike would collide; the later one is dropped.
    if (action != Action::kKeep && spec_->detectors) {
      if (auto key = tools_->detectors.Redact(property.key, &counters->detections)) {
        property.key = std::move(*key);
        if (FindProperty(kept, property.key) != nullptr) {
          ++counters->properties_dropped;
          continue;
        }
      }
    }
    kept.push_back(Property{std::move(property.key), std::move(*value)});
  }
  return kept;
}

void Policy::AddContext(RawEvent& raw, Properties* properties, PolicyCounters* counters) const {
  if (raw.client_ip.empty() && raw.user_agent.empty() && raw.page_url.empty() &&
      raw.referrer.empty() && raw.library.empty()) {
    return;  // nothing to add: skip the pass over the properties
  }
  const PolicySpec& spec = *spec_;
  ContextKeysPresent present(*properties);
  if (!raw.client_ip.empty()) {
    if (spec.ip == Action::kKeep) {
      present.SetIfAbsent(properties, kIpKey, std::move(raw.client_ip));
    } else if (spec.ip == Action::kGeneralise && tools_->geo != nullptr) {
      if (auto location =
              tools_->geo->Lookup(raw.client_ip, ToGeoPrecision(spec.location_precision))) {
        present.SetIfAbsent(properties, kCountryKey, std::move(location->country_code));
        present.SetIfAbsent(properties, kRegionKey, std::move(location->region));
        present.SetIfAbsent(properties, kCityKey, std::move(location->city));
        ++counters->context_fields_generalised;
      }
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.user_agent.empty()) {
    if (spec.user_agent == Action::kKeep) {
      present.SetIfAbsent(properties, kUserAgentKey, std::move(raw.user_agent));
    } else if (spec.user_agent == Action::kGeneralise && tools_->user_agents != nullptr) {
      UserAgentInfo info = tools_->user_agents->Parse(raw.user_agent);
      present.SetIfAbsent(properties, kBrowserKey, std::move(info.browser_family));
      present.SetIfAbsent(properties, kBrowserVersionKey, std::move(info.browser_major));
      present.SetIfAbsent(properties, kOsKey, std::move(info.os_family));
      present.SetIfAbsent(properties, kDeviceTypeKey, std::move(info.device_type));
      ++counters->context_fields_generalised;
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.page_url.empty()) {
    if (spec.page_url == Action::kKeep) {
      present.SetIfAbsent(properties, kUrlKey, std::move(raw.page_url));
    } else if (spec.page_url == Action::kGeneralise) {
      std::string url = GeneraliseUrl(raw.page_url, url_policy_);
      if (spec.detectors) {
        if (auto redacted = tools_->detectors.Redact(url, &counters->detections)) {
          url = std::move(*redacted);
          ++counters->values_redacted;
        }
      }
      present.SetIfAbsent(properties, kUrlKey, std::move(url));
      ++counters->context_fields_generalised;
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.referrer.empty()) {
    if (spec.referrer == Action::kKeep) {
      present.SetIfAbsent(properties, kReferrerKey, std::move(raw.referrer));
    } else if (spec.referrer == Action::kGeneralise) {
      present.SetIfAbsent(properties, kReferringDomainKey, ReferrerHost(raw.referrer));
      ++counters->context_fields_generalised;
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.library.empty() && spec.library == Action::kKeep) {
    present.SetIfAbsent(properties, kLibraryKey, std::move(raw.library));
  }
}

std::string Policy::RedactionMarks(std::string_view text) {
  std::string kinds;
  for (size_t kind_idx = 0; kind_idx < kPiiKindCount; ++kind_idx) {
    const std::string_view name = PiiKindName(static_cast<PiiKind>(kind_idx));
    const std::string mark = "[" + std::string(name) + "]";
    if (text.find(mark) != std::string_view::npos) {
      kinds += kinds.empty() ? "" : ", ";
      kinds += name;
    }
  }
  return kinds;
}

namespace {

// The policy setting that made a context key, and what it says of the raw
// field; nullopt for a key the policy does not derive.
std::optional<StoredMark> ContextMark(std::string_view key, const PolicySpec& spec) {
  const auto index = std::find(kContextKeyNames.begin(), kContextKeyNames.end(), key);
  if (index == kContextKeyNames.end()) {
    return std::nullopt;
  }
  switch (static_cast<ContextKey>(index - kContextKeyNames.begin())) {
    case kCountryKey:
    case kRegionKey:
    case kCityKey:
      return StoredMark{"derived", "policy: ip = generalise (a location from the IP address, "
                                   "which was discarded)"};
    case kBrowserKey:
    case kBrowserVersionKey:
    case kOsKey:
    case kDeviceTypeKey:
      return StoredMark{"derived", "policy: user_agent = generalise (from the user agent, which "
                                   "was discarded)"};
    case kReferringDomainKey:
      return StoredMark{"derived", "policy: referrer = generalise (the referrer's host; the "
                                   "referrer was discarded)"};
    case kUrlKey:
      if (spec.page_url == Action::kGeneralise) {
        return StoredMark{"generalised", "policy: page_url = generalise (scheme, host and path; "
                                         "the query and fragment removed)"};
      }
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

// The texts of a string or list value.
std::vector<std::string_view> TextsOf(const Value& value) {
  if (value.type() == Value::Type::kString) {
    return {value.as_string()};
  }
  if (value.type() == Value::Type::kList) {
    return {value.as_list().begin(), value.as_list().end()};
  }
  return {};
}

}  // namespace

std::optional<StoredMark> Policy::MarkStored(std::string_view key, const Value& value) const {
  std::string marks;
  for (const std::string_view text : TextsOf(value)) {
    const std::string found = RedactionMarks(text);
    marks += !marks.empty() && !found.empty() ? ", " : "";
    marks += found;
  }
  if (auto context = ContextMark(key, *spec_)) {
    return context;
  }
  std::string reason;
  const Action action = ActionFor(key, false, &reason);
  if (action == Action::kPseudonymise) {
    for (const std::string_view text : TextsOf(value)) {
      if (text.starts_with(kPseudonymPrefix)) {
        return StoredMark{"pseudonymised", reason};
      }
    }
  }
  if (action == Action::kGeneralise) {
    return StoredMark{"generalised", reason};
  }
  if (!marks.empty()) {
    return StoredMark{"redacted", "detectors: " + marks};
  }
  return std::nullopt;
}

Event Policy::Apply(RawEvent&& raw, PolicyCounters* counters) const {
  Event event;
  event.insert_id = InsertId(raw);  // from the exact time, so retries still match
  const int64_t precision_ms = spec_->time_precision_ms;
  event.time_ms = raw.time_ms - (((raw.time_ms % precision_ms) + precision_ms) % precision_ms);
  event.subject = Pseudonym(raw.distinct_id);
  event.key_version = key_.version;
  event.policy_version = policy_version_;
  event.name = std::move(raw.name);
  if (spec_->detectors) {
    if (auto name = tools_->detectors.Redact(event.name, &counters->detections)) {
      event.name = std::move(*name);
      ++counters->values_redacted;
    }
  }
  event.properties = ApplyToProperties(std::move(raw.properties), false, counters);
  AddContext(raw, &event.properties, counters);
  return event;
}

ProfileUpdate Policy::Apply(RawProfileUpdate&& raw, PolicyCounters* counters) const {
  ProfileUpdate update;
  const bool user_profile = raw.group_key.empty();
  update.subject =
      user_profile ? Pseudonym(raw.distinct_id) : GroupSubject(raw.group_key, raw.distinct_id);
  update.group_key = std::move(raw.group_key);
  update.time_ms = raw.time_ms;
  update.key_version = key_.version;
  update.policy_version = policy_version_;
  update.operation = raw.operation;
  update.properties = ApplyToProperties(std::move(raw.properties), user_profile, counters);
  counters->context_fields_discarded += raw.client_ip.empty() ? 0 : 1;
  return update;
}

}  // namespace minpanel::privacy
