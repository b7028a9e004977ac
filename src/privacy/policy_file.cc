#include "privacy/policy_file.h"

#include <algorithm>
#include <cmath>
#include <array>
#include <set>
#include <unordered_map>

#include <toml++/toml.h>

namespace minpanel::privacy {
namespace {

// Reserved spellings of personal data in the SDKs: Mixpanel people
// properties, Segment traits, PostHog person properties flattened from
// $set / $set_once. Always about a person, wherever they appear.
constexpr std::array<std::string_view, 22> kPersonKeys = {
    "$email",          "$name",           "$first_name",      "$last_name",
    "$phone",          "$avatar",         "traits.email",     "traits.name",
    "traits.firstName", "traits.lastName", "traits.first_name", "traits.last_name",
    "traits.phone",    "traits.address",  "traits.birthday",  "$set.email",
    "$set.name",       "$set.phone",      "$set_once.email",  "$set_once.name",
    "context.traits.email", "context.traits.name"};

// Bare names that mean a person only on a user's profile (Mixpanel's and
// PostHog's $set names, Segment's identify traits).
constexpr std::array<std::string_view, 11> kProfilePersonKeys = {
    "email", "name",   "first_name", "last_name", "firstName", "lastName",
    "phone", "avatar", "address",    "birthday",  "username"};
// Segment's address trait is an object: on a user's profile, flattened to
// address.street, address.city, …
constexpr std::string_view kProfilePersonPrefix = "address.";

// Property keys that hold a person's id: pseudonymised like the distinct id
// (same domain), so that they still match the subject they name.
constexpr std::array<std::string_view, 9> kSubjectIdKeys = {
    "$user_id", "user_id", "$device_id", "$anon_distinct_id", "alias",
    "$distinct_id_before_identity", "userId", "anonymousId", "previousId"};

// Property keys that hold an organisation's or group's id: pseudonymised
// with the project key so that breakdowns by them still work. PostHog's
// $groups.<key> too (a prefix).
constexpr std::array<std::string_view, 10> kGroupIdKeys = {
    "company_id", "company", "org_id", "organization_id", "organisation_id",
    "account_id", "team_id", "workspace_id", "tenant_id", "groupId"};
constexpr std::string_view kGroupIdPrefix = "$groups.";

// Copies of the page URL (or its path) and of the referrer that the SDKs
// keep beside the canonical $current_url / $referrer: as event properties
// (mixpanel-browser's super properties, posthog-js's session and initial
// values), as person properties ($set / $set_once), and Segment's page
// fields. The query string and fragment of each copy hold the same tokens
// and emails as the original, so the policy treats them as the context
// field they copy (page_url / referrer). Looked up with a "$set." or
// "$set_once." prefix removed.
constexpr std::array<std::string_view, 12> kPageUrlCopyKeys = {
    "$current_url",      "$initial_current_url",    "$session_entry_url", "$initial_url",
    "$prev_pageview_url", "$pathname",              "$initial_pathname",
    "$session_entry_pathname", "$prev_pageview_pathname", "url", "context.page.url",
    "context.page.path"};
constexpr std::array<std::string_view, 5> kReferrerCopyKeys = {
    "$referrer", "$initial_referrer", "$session_entry_referrer", "referrer",
    "context.page.referrer"};

// Prefixes under which everything is about a person (Segment's address
// trait is an object: traits.address.street, …).
constexpr std::array<std::string_view, 2> kPersonPrefixes = {"traits.address.",
                                                              "context.traits.address."};

Result<Action> ParseAction(std::string_view text, std::string_view key,
                           const std::set<Action>& allowed) {
  static constexpr std::array<std::pair<std::string_view, Action>, 5> kNames = {{
      {"keep", Action::kKeep},
      {"drop", Action::kDrop},
      {"pseudonymise", Action::kPseudonymise},
      {"redact", Action::kRedact},
      {"generalise", Action::kGeneralise},
  }};
  for (const auto& [name, action] : kNames) {
    if (name == text && allowed.contains(action)) {
      return action;
    }
  }
  std::string choices;
  for (const auto& [name, action] : kNames) {
    if (allowed.contains(action)) {
      choices += choices.empty() ? "" : ", ";
      choices += name;
    }
  }
  return Status::InvalidArgument("policy: '" + std::string(key) + "' must be one of " + choices +
                                 ", not '" + std::string(text) + "'");
}

Status ReadContextAction(const toml::table& table, const char* key,
                         const std::set<Action>& allowed, Action* out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) {
    return Status::Ok();
  }
  const auto text = node->value<std::string>();
  if (!text.has_value()) {
    return Status::InvalidArgument(std::string("policy: '") + key + "' must be a string");
  }
  MP_ASSIGN_OR_RETURN(*out, ParseAction(*text, key, allowed));
  return Status::Ok();
}

Status ReadPrecision(const toml::table& table, PolicySpec* spec) {
  const toml::node* node = table.get("ip_precision");
  if (node == nullptr) {
    return Status::Ok();
  }
  const auto text = node->value<std::string>();
  if (text == "country") {
    spec->location_precision = LocationPrecision::kCountry;
  } else if (text == "region") {
    spec->location_precision = LocationPrecision::kRegion;
  } else if (text == "city") {
    spec->location_precision = LocationPrecision::kCity;
  } else {
    return Status::InvalidArgument("policy: 'ip_precision' must be country, region or city");
  }
  return Status::Ok();
}

Status ReadTimePrecision(const toml::table& table, PolicySpec* spec) {
  const toml::node* node = table.get("time_precision");
  if (node == nullptr) {
    return Status::Ok();
  }
  static constexpr std::array<std::pair<std::string_view, int64_t>, 5> kPrecisions = {{
      {"millisecond", 1},
      {"second", 1000},
      {"minute", 60'000},
      {"hour", 3'600'000},
      {"day", 86'400'000},
  }};
  const auto text = node->value<std::string>();
  for (const auto& [name, precision_ms] : kPrecisions) {
    if (text == name) {
      spec->time_precision_ms = precision_ms;
      return Status::Ok();
    }
  }
  return Status::InvalidArgument(
      "policy: 'time_precision' must be millisecond, second, minute, hour or day");
}

Status ReadBool(const toml::table& table, const char* key, bool* out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) {
    return Status::Ok();
  }
  const auto value = node->value<bool>();
  if (!value.has_value()) {
    return Status::InvalidArgument(std::string("policy: '") + key + "' must be true or false");
  }
  *out = *value;
  return Status::Ok();
}

Status ReadPrefixes(const toml::table& table, PolicySpec* spec) {
  const toml::node* node = table.get("query_keep_prefixes");
  if (node == nullptr) {
    return Status::Ok();
  }
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    return Status::InvalidArgument("policy: 'query_keep_prefixes' must be an array of strings");
  }
  spec->query_keep_prefixes.clear();
  for (const toml::node& item : *array) {
    const auto text = item.value<std::string>();
    if (!text.has_value() || text->empty()) {
      return Status::InvalidArgument(
          "policy: 'query_keep_prefixes' must hold non-empty strings");
    }
    spec->query_keep_prefixes.push_back(*text);
  }
  return Status::Ok();
}

Status ReadRule(const toml::table& table, size_t rule_idx, PolicySpec* spec) {
  const std::string where = "policy: rule " + std::to_string(rule_idx + 1);
  for (const auto& [key, value] : table) {
    if (key.str() != "match" && key.str() != "action") {
      return Status::InvalidArgument(where + ": unknown key '" + std::string(key.str()) + "'");
    }
  }
  const auto pattern = table["match"].value<std::string>();
  const auto action_text = table["action"].value<std::string>();
  if (!pattern.has_value() || pattern->empty() || pattern->size() > kRulePatternBytesMax) {
    return Status::InvalidArgument(where + ": 'match' must be a property name or glob of 1 to " +
                                   std::to_string(kRulePatternBytesMax) + " bytes");
  }
  if (!action_text.has_value()) {
    return Status::InvalidArgument(where + ": 'action' is required");
  }
  PropertyRule rule;
  rule.pattern = *pattern;
  rule.line = table.source().begin.line;
  MP_ASSIGN_OR_RETURN(rule.action,
                      ParseAction(*action_text, "action",
                                  {Action::kKeep, Action::kDrop, Action::kPseudonymise,
                                   Action::kRedact, Action::kGeneralise}));
  spec->rules.push_back(std::move(rule));
  return Status::Ok();
}

Status ReadRules(const toml::table& root, PolicySpec* spec) {
  const toml::node* node = root.get("rule");
  if (node == nullptr) {
    return Status::Ok();
  }
  const toml::array* rules = node->as_array();
  if (rules == nullptr) {
    return Status::InvalidArgument("policy: 'rule' must be an array of tables ([[rule]])");
  }
  if (rules->size() > kPolicyRulesMax) {
    return Status::ResourceExhausted("policy: more than " + std::to_string(kPolicyRulesMax) +
                                     " rules (kPolicyRulesMax)");
  }
  for (size_t rule_idx = 0; rule_idx < rules->size(); ++rule_idx) {
    const toml::table* rule = rules->get(rule_idx)->as_table();
    if (rule == nullptr) {
      return Status::InvalidArgument("policy: rule " + std::to_string(rule_idx + 1) +
                                     " must be a table");
    }
    MP_RETURN_IF_ERROR(ReadRule(*rule, rule_idx, spec));
  }
  return Status::Ok();
}

Status ReadRoot(const toml::table& root, PolicySpec* spec) {
  static const std::set<std::string> kKeys = {
      "ip",        "ip_precision", "user_agent",          "page_url",
      "referrer",  "library",      "query_keep_prefixes", "detectors",
      "drop_person_properties", "time_precision", "rule"};
  for (const auto& [key, value] : root) {
    if (!kKeys.contains(std::string(key.str()))) {
      return Status::InvalidArgument("policy: unknown key '" + std::string(key.str()) + "'");
    }
  }
  const std::set<Action> generalisable = {Action::kKeep, Action::kDrop, Action::kGeneralise};
  MP_RETURN_IF_ERROR(ReadContextAction(root, "ip", generalisable, &spec->ip));
  MP_RETURN_IF_ERROR(ReadContextAction(root, "user_agent", generalisable, &spec->user_agent));
  MP_RETURN_IF_ERROR(ReadContextAction(root, "page_url", generalisable, &spec->page_url));
  MP_RETURN_IF_ERROR(ReadContextAction(root, "referrer", generalisable, &spec->referrer));
  MP_RETURN_IF_ERROR(
      ReadContextAction(root, "library", {Action::kKeep, Action::kDrop}, &spec->library));
  MP_RETURN_IF_ERROR(ReadPrecision(root, spec));
  MP_RETURN_IF_ERROR(ReadPrefixes(root, spec));
  MP_RETURN_IF_ERROR(ReadBool(root, "detectors", &spec->detectors));
  MP_RETURN_IF_ERROR(ReadBool(root, "drop_person_properties", &spec->drop_person_properties));
  MP_RETURN_IF_ERROR(ReadTimePrecision(root, spec));
  return ReadRules(root, spec);
}

}  // namespace

std::string_view ActionName(Action action) {
  switch (action) {
    case Action::kKeep:
      return "keep";
    case Action::kDrop:
      return "drop";
    case Action::kPseudonymise:
      return "pseudonymise";
    case Action::kRedact:
      return "redact";
    case Action::kGeneralise:
      return "generalise";
  }
  return "unknown";
}

std::string_view LocationPrecisionName(LocationPrecision precision) {
  switch (precision) {
    case LocationPrecision::kCountry:
      return "country";
    case LocationPrecision::kRegion:
      return "region";
    case LocationPrecision::kCity:
      return "city";
  }
  return "unknown";
}

PolicySpec DefaultPolicy() { return PolicySpec(); }

Result<PolicySpec> ParsePolicy(std::string_view toml_text) {
  if (toml_text.size() > kPolicyBytesMax) {
    return Status::ResourceExhausted("policy: over " + std::to_string(kPolicyBytesMax) +
                                     " bytes (kPolicyBytesMax)");
  }
  toml::table root;
  try {
    root = toml::parse(toml_text);
  } catch (const toml::parse_error& error) {
    return Status::InvalidArgument("policy: " + std::string(error.description()) + " at line " +
                                   std::to_string(error.source().begin.line));
  }
  PolicySpec spec;
  MP_RETURN_IF_ERROR(ReadRoot(root, &spec));
  return spec;
}

double BucketNumber(double value) {
  if (!std::isfinite(value) || value == 0) {
    return value;
  }
  const double magnitude = std::fabs(value);
  const double power = std::pow(10.0, std::floor(std::log10(magnitude)));
  const double mantissa = magnitude / power;
  const double step = mantissa >= 5 ? 5 : mantissa >= 2 ? 2 : 1;
  // Rounded down means towards minus infinity: -37 lies in [-50, -20).
  if (value > 0) {
    return step * power;
  }
  const double next = step == 1 ? 2 : step == 2 ? 5 : 10;
  return -next * power;
}

bool GlobMatch(std::string_view pattern, std::string_view text) {
  size_t pattern_idx = 0;
  size_t text_idx = 0;
  size_t star_idx = std::string_view::npos;
  size_t star_text_idx = 0;
  while (text_idx < text.size()) {
    if (pattern_idx < pattern.size() &&
        (pattern[pattern_idx] == '?' || pattern[pattern_idx] == text[text_idx])) {
      ++pattern_idx;
      ++text_idx;
    } else if (pattern_idx < pattern.size() && pattern[pattern_idx] == '*') {
      star_idx = pattern_idx++;
      star_text_idx = text_idx;
    } else if (star_idx != std::string_view::npos) {
      pattern_idx = star_idx + 1;
      text_idx = ++star_text_idx;
    } else {
      return false;
    }
  }
  while (pattern_idx < pattern.size() && pattern[pattern_idx] == '*') {
    ++pattern_idx;
  }
  return pattern_idx == pattern.size();
}

const PropertyRule* MatchRule(const PolicySpec& spec, std::string_view key) {
  for (const PropertyRule& rule : spec.rules) {
    if (GlobMatch(rule.pattern, key)) {
      return &rule;
    }
  }
  return nullptr;
}

ReservedKey ClassifyKey(std::string_view key) {
  static const std::unordered_map<std::string_view, ReservedKey> reserved = [] {
    std::unordered_map<std::string_view, ReservedKey> table;
    const auto add = [&table](const auto& keys, ReservedKey kind) {
      for (std::string_view key : keys) {
        table.emplace(key, kind);
      }
    };
    add(kPersonKeys, ReservedKey::kPerson);
    add(kProfilePersonKeys, ReservedKey::kProfilePerson);
    add(kSubjectIdKeys, ReservedKey::kSubjectId);
    add(kGroupIdKeys, ReservedKey::kGroupId);
    add(kPageUrlCopyKeys, ReservedKey::kPageUrlCopy);
    add(kReferrerCopyKeys, ReservedKey::kReferrerCopy);
    return table;
  }();
  if (const auto found = reserved.find(key); found != reserved.end()) {
    return found->second;
  }
  // A URL copy set on a person from an event ($set.$initial_referrer).
  for (std::string_view set_prefix : {std::string_view("$set."), std::string_view("$set_once.")}) {
    if (key.starts_with(set_prefix)) {
      const auto found = reserved.find(key.substr(set_prefix.size()));
      if (found != reserved.end() && (found->second == ReservedKey::kPageUrlCopy ||
                                      found->second == ReservedKey::kReferrerCopy)) {
        return found->second;
      }
    }
  }
  if (key.size() < kGroupIdPrefix.size()) {
    return ReservedKey::kNone;
  }
  if (key.front() == '$' && key.starts_with(kGroupIdPrefix)) {
    return ReservedKey::kGroupId;
  }
  // Every person prefix starts with "traits." or "context.".
  if ((key.front() == 't' || key.front() == 'c') &&
      std::any_of(kPersonPrefixes.begin(), kPersonPrefixes.end(),
                  [key](std::string_view prefix) { return key.starts_with(prefix); })) {
    return ReservedKey::kPerson;
  }
  if (key.front() == 'a' && key.starts_with(kProfilePersonPrefix)) {
    return ReservedKey::kProfilePerson;
  }
  return ReservedKey::kNone;
}

bool IsPersonProperty(std::string_view key, bool user_profile) {
  return IsPersonKey(ClassifyKey(key), user_profile);
}

std::string DescribePolicy(const PolicySpec& spec) {
  std::string text;
  text += "ip: " + std::string(ActionName(spec.ip));
  if (spec.ip == Action::kGeneralise) {
    text += " (to " + std::string(LocationPrecisionName(spec.location_precision)) +
            ", then the address is discarded)";
  }
  text += "\nuser_agent: " + std::string(ActionName(spec.user_agent));
  text += "\npage_url: " + std::string(ActionName(spec.page_url));
  text += "\nreferrer: " + std::string(ActionName(spec.referrer));
  text += "\nlibrary: " + std::string(ActionName(spec.library));
  text += "\nquery parameters kept in URLs: ";
  for (size_t prefix_idx = 0; prefix_idx < spec.query_keep_prefixes.size(); ++prefix_idx) {
    text += (prefix_idx == 0 ? "" : ", ") + spec.query_keep_prefixes[prefix_idx] + "*";
  }
  text += "\ndetectors: ";
  text += spec.detectors ? "redact what they find in kept strings" : "off";
  text += "\nproperties named for people: ";
  text += spec.drop_person_properties ? "dropped unless a rule names them" : "kept";
  text += "\nevent times: ";
  text += spec.time_precision_ms == 1 ? std::string("exact")
                                      : "rounded down to " +
                                            std::to_string(spec.time_precision_ms) + " ms";
  text += "\nrules (first match wins):\n";
  for (const PropertyRule& rule : spec.rules) {
    text += "  line " + std::to_string(rule.line) + ": " + rule.pattern + " -> " +
            std::string(ActionName(rule.action)) + "\n";
  }
  if (spec.rules.empty()) {
    text += "  (none)\n";
  }
  return text;
}

}  // namespace minpanel::privacy
