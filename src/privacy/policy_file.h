// PolicySpec: a project's privacy policy as written by its operator, in TOML
// (docs/privacy.md), parsed and checked. It says what happens to each
// context field (client IP, user agent, page URL, referrer, library) and,
// by ordered rules, to properties matched by exact name or glob. What no
// rule mentions gets the default stance: properties named for people are
// dropped, and every kept string is scanned by the PII detectors.
//
// A PolicySpec is an immutable value; share it freely across threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"

namespace minpanel::privacy {

inline constexpr size_t kPolicyBytesMax = 256 * 1024;
inline constexpr size_t kPolicyRulesMax = 1000;
inline constexpr size_t kRulePatternBytesMax = 255;

enum class Action : uint8_t { kKeep, kDrop, kPseudonymise, kRedact, kGeneralise };
std::string_view ActionName(Action action);

enum class LocationPrecision : uint8_t { kCountry, kRegion, kCity };
std::string_view LocationPrecisionName(LocationPrecision precision);

struct PropertyRule {
  std::string pattern;  // exact name, or a glob with '*' and '?'
  Action action = Action::kKeep;
  int64_t line = 0;  // where the rule stands in the file, for explanations
};

struct PolicySpec {
  // Context fields. ip: keep|drop|generalise (→ location, then discarded);
  // user_agent: keep|drop|generalise (→ browser, OS, device type);
  // page_url: keep|drop|generalise (→ scheme, host, path with ids masked);
  // referrer: keep|drop|generalise (→ host); library: keep|drop.
  Action ip = Action::kGeneralise;
  LocationPrecision location_precision = LocationPrecision::kCity;
  Action user_agent = Action::kGeneralise;
  Action page_url = Action::kGeneralise;
  Action referrer = Action::kGeneralise;
  Action library = Action::kKeep;
  // Query parameters a generalised URL keeps, by name prefix.
  std::vector<std::string> query_keep_prefixes = {"utm_"};
  // Redact what the detectors find in kept strings (off only when asked).
  bool detectors = true;
  // Drop properties named for people when no rule names them.
  bool drop_person_properties = true;
  // Event times are rounded down to this (1: exact milliseconds; 1000 a
  // second, 60000 a minute, 3600000 an hour, 86400000 a day).
  int64_t time_precision_ms = 1;
  std::vector<PropertyRule> rules;
};

// The strict default that applies when a project has no policy file.
PolicySpec DefaultPolicy();

// Parses and checks a policy file. Errors name the key (and line) at fault.
Result<PolicySpec> ParsePolicy(std::string_view toml_text);

// The first rule whose pattern matches `key`, or nullptr.
const PropertyRule* MatchRule(const PolicySpec& spec, std::string_view key);

// Whether `key` names a person under the SDKs' reserved spellings
// ($email, $name, traits.email, $set.email, …). `user_profile` adds the
// bare names (email, name, phone, …) that mean a person only on a user's
// profile — a page, plan or group `name` is not a person's name.
bool IsPersonProperty(std::string_view key, bool user_profile);

// What the SDKs' reserved spellings make of a property key.
enum class ReservedKey : uint8_t {
  kNone,
  kPerson,         // always a person ($email, traits.email, traits.address.*, …)
  kProfilePerson,  // a person only on a user's profile (email, name, …)
  kSubjectId,      // a person's id ($user_id, $anon_distinct_id, userId, …)
  kGroupId,        // an organisation's or group's id (company_id, $groups.*, …)
  kPageUrlCopy,    // an SDK's copy of a page URL or path ($initial_current_url, …)
  kReferrerCopy,   // an SDK's copy of a referrer ($initial_referrer, …)
};

// One hash lookup (and a prefix test for the few reserved prefixes): asked
// for every property of every event.
ReservedKey ClassifyKey(std::string_view key);

inline bool IsPersonKey(ReservedKey reserved, bool user_profile) {
  return reserved == ReservedKey::kPerson ||
         (user_profile && reserved == ReservedKey::kProfilePerson);
}

// A number generalised: rounded down to the nearest 1, 2 or 5 times a
// power of ten (37 → 20, 180 → 100, 0.37 → 0.2, -37 → -50), so a value
// shows its order of magnitude, not itself.
double BucketNumber(double value);

// Glob match with '*' (any run) and '?' (one byte). Iterative; at worst
// pattern × text steps, both bounded (kRulePatternBytesMax, key limits).
bool GlobMatch(std::string_view pattern, std::string_view text);

// Every rule and default in readable form, for `minpanel policy check`.
std::string DescribePolicy(const PolicySpec& spec);

}  // namespace minpanel::privacy
