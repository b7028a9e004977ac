#include "privacy/privacy.h"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <unordered_set>

#include "privacy/url.h"

namespace minpanel::privacy {
namespace {


// Hash domains keep the different uses of one key apart.
constexpr uint8_t kDomainSubject = 's';
constexpr uint8_t kDomainGroup = 'g';
constexpr uint8_t kDomainClientInsertId = 'i';
constexpr uint8_t kDomainContentInsertId = 'c';


// Property keys that hold a person's id: pseudonymised like the distinct id
// (same domain), so that they still match the subject they name.
constexpr std::array<std::string_view, 9> kSubjectIdKeys = {
    "$user_id", "user_id", "$device_id", "$anon_distinct_id", "alias",
    "$distinct_id_before_identity", "userId", "anonymousId", "previousId"};

// Property keys that hold an organisation's or group's id: pseudonymised
// with the project key so that breakdowns by them still work.
constexpr std::array<std::string_view, 10> kGroupIdKeys = {
    "company_id", "company", "org_id", "organization_id", "organisation_id",
    "account_id", "team_id", "workspace_id", "tenant_id", "groupId"};

bool IsSubjectIdKey(std::string_view key) {
  static const std::unordered_set<std::string_view> keys(kSubjectIdKeys.begin(),
                                                         kSubjectIdKeys.end());
  return keys.contains(key);
}

// An organisation's or group's id: one of the known names or PostHog's
// $groups.<key>. Asked for every property: a hash lookup, not a scan.
bool IsGroupIdKey(std::string_view key) {
  static const std::unordered_set<std::string_view> keys(kGroupIdKeys.begin(),
                                                         kGroupIdKeys.end());
  return keys.contains(key) || key.starts_with("$groups.");
}

// Where the policy writes what it derives from the context fields; Mixpanel's
// own spellings, so that existing reports read them.
constexpr std::string_view kCountryKey = "mp_country_code";
constexpr std::string_view kRegionKey = "$region";
constexpr std::string_view kCityKey = "$city";
constexpr std::string_view kBrowserKey = "$browser";
constexpr std::string_view kBrowserVersionKey = "$browser_version";
constexpr std::string_view kOsKey = "$os";
constexpr std::string_view kDeviceTypeKey = "$device_type";
constexpr std::string_view kUrlKey = "$current_url";
constexpr std::string_view kReferrerKey = "$referrer";
constexpr std::string_view kReferringDomainKey = "$referring_domain";
constexpr std::string_view kIpKey = "$ip";
constexpr std::string_view kUserAgentKey = "$user_agent";
constexpr std::string_view kLibraryKey = "mp_lib";

void SetIfAbsent(Properties* properties, std::string_view key, std::string value) {
  if (value.empty() || FindProperty(*properties, key) != nullptr) {
    return;
  }
  properties->push_back(Property{std::string(key), Value::String(std::move(value))});
}

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
               std::shared_ptr<const PolicyTools> tools)
    : key_(key), spec_(std::move(spec)), tools_(std::move(tools)) {}

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
  if (IsSubjectIdKey(key)) {
    return FormatPseudonym(Pseudonym(text));
  }
  constexpr std::string_view kGroupsPrefix = "$groups.";
  const std::string_view group_key =
      key.starts_with(kGroupsPrefix) ? key.substr(kGroupsPrefix.size()) : key;
  return FormatPseudonym(GroupSubject(group_key, text));
}

Value Policy::Redacted(const Value& value, PolicyCounters* counters) const {
  if (value.type() == Value::Type::kString) {
    auto redacted = tools_->detectors.Redact(value.as_string(), &counters->detections);
    if (!redacted.has_value()) {
      return value;
    }
    ++counters->values_redacted;
    return Value::String(std::move(*redacted));
  }
  if (value.type() != Value::Type::kList) {
    return value;
  }
  StringList items = value.as_list();
  bool changed = false;
  for (std::string& item : items) {
    if (auto redacted = tools_->detectors.Redact(item, &counters->detections)) {
      item = std::move(*redacted);
      changed = true;
    }
  }
  counters->values_redacted += changed ? 1 : 0;
  return changed ? Value::List(std::move(items)) : value;
}

// The value a property keeps under `action`, or nullopt to drop it.
std::optional<Value> Policy::ApplyAction(Action action, const Property& property,
                                         PolicyCounters* counters) const {
  const Value& value = property.value;
  switch (action) {
    case Action::kKeep:
      return value;
    case Action::kDrop:
      ++counters->properties_dropped;
      return std::nullopt;
    case Action::kRedact:
      return Redacted(value, counters);
    case Action::kGeneralise:
      if (value.type() == Value::Type::kString) {
        UrlPolicy url_policy;
        url_policy.query_keep_prefixes = spec_->query_keep_prefixes;
        return Redacted(Value::String(GeneraliseUrl(value.as_string(), url_policy)), counters);
      }
      if (value.type() == Value::Type::kInt) {
        return Value::Int(static_cast<int64_t>(BucketNumber(static_cast<double>(value.as_int()))));
      }
      if (value.type() == Value::Type::kDouble) {
        return Value::Double(BucketNumber(value.as_double()));
      }
      return Redacted(value, counters);
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
      return value;  // null, bool, double: nothing that identifies
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
  if (spec_->drop_person_properties && IsPersonProperty(key, user_profile)) {
    explain("named for a person");
    return Action::kDrop;
  }
  if (IsSubjectIdKey(key) || IsGroupIdKey(key)) {
    explain("an id of a person or organisation");
    return Action::kPseudonymise;
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
  kept.reserve(properties.size());
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
  const PolicySpec& spec = *spec_;
  if (!raw.client_ip.empty()) {
    if (spec.ip == Action::kKeep) {
      SetIfAbsent(properties, kIpKey, std::move(raw.client_ip));
    } else if (spec.ip == Action::kGeneralise && tools_->geo != nullptr) {
      if (auto location =
              tools_->geo->Lookup(raw.client_ip, ToGeoPrecision(spec.location_precision))) {
        SetIfAbsent(properties, kCountryKey, std::move(location->country_code));
        SetIfAbsent(properties, kRegionKey, std::move(location->region));
        SetIfAbsent(properties, kCityKey, std::move(location->city));
        ++counters->context_fields_generalised;
      }
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.user_agent.empty()) {
    if (spec.user_agent == Action::kKeep) {
      SetIfAbsent(properties, kUserAgentKey, std::move(raw.user_agent));
    } else if (spec.user_agent == Action::kGeneralise && tools_->user_agents != nullptr) {
      UserAgentInfo info = tools_->user_agents->Parse(raw.user_agent);
      SetIfAbsent(properties, kBrowserKey, std::move(info.browser_family));
      SetIfAbsent(properties, kBrowserVersionKey, std::move(info.browser_major));
      SetIfAbsent(properties, kOsKey, std::move(info.os_family));
      SetIfAbsent(properties, kDeviceTypeKey, std::move(info.device_type));
      ++counters->context_fields_generalised;
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.page_url.empty()) {
    if (spec.page_url == Action::kKeep) {
      SetIfAbsent(properties, kUrlKey, std::move(raw.page_url));
    } else if (spec.page_url == Action::kGeneralise) {
      UrlPolicy url_policy;
      url_policy.query_keep_prefixes = spec.query_keep_prefixes;
      Value url = Value::String(GeneraliseUrl(raw.page_url, url_policy));
      if (spec.detectors) {
        url = Redacted(url, counters);
      }
      SetIfAbsent(properties, kUrlKey, url.as_string());
      ++counters->context_fields_generalised;
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.referrer.empty()) {
    if (spec.referrer == Action::kKeep) {
      SetIfAbsent(properties, kReferrerKey, std::move(raw.referrer));
    } else if (spec.referrer == Action::kGeneralise) {
      SetIfAbsent(properties, kReferringDomainKey, ReferrerHost(raw.referrer));
      ++counters->context_fields_generalised;
    }
    ++counters->context_fields_discarded;
  }
  if (!raw.library.empty() && spec.library == Action::kKeep) {
    SetIfAbsent(properties, kLibraryKey, std::move(raw.library));
  }
}

Event Policy::Apply(RawEvent&& raw, PolicyCounters* counters) const {
  Event event;
  event.insert_id = InsertId(raw);  // from the exact time, so retries still match
  const int64_t precision_ms = spec_->time_precision_ms;
  event.time_ms = raw.time_ms - (((raw.time_ms % precision_ms) + precision_ms) % precision_ms);
  event.subject = Pseudonym(raw.distinct_id);
  event.key_version = key_.version;
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
  update.operation = raw.operation;
  update.properties = ApplyToProperties(std::move(raw.properties), user_profile, counters);
  counters->context_fields_discarded += raw.client_ip.empty() ? 0 : 1;
  return update;
}

}  // namespace minpanel::privacy
