// The privacy module: turns a RawEvent into a stored Event. Nothing but the
// policy reads a RawEvent, and nothing that identifies a person leaves it in
// clear unless a policy line asks for it.
//
// A Policy applies a project's PolicySpec (policy_file.h, docs/privacy.md):
//   - the distinct id always becomes a 128-bit keyed pseudonym (BLAKE2b keyed
//     with the project's key, kept in the key folder outside the data
//     folder); ids of people and organisations inside properties
//     ($anon_distinct_id, $user_id, company_id, $groups.*) are pseudonymised
//     with the same key, so breakdowns and identity merges still work;
//   - the client IP becomes a coarse location, the user agent a browser, OS
//     and device type, the page URL its scheme, host and path with ids
//     masked, the referrer its host — or whatever the policy says;
//   - properties named for people ($email, $name, traits.email, …) are
//     dropped unless a rule names them;
//   - every kept string, property key and event name goes through the PII
//     detectors, which redact what they find, unless a rule keeps the
//     property explicitly;
//   - the insert id is the client's id (keyed-hashed, or taken as is when it
//     is already 32 hex digits, as in a minpanel export), else a keyed hash of
//     (event name, time, distinct id, properties) when the client sent the
//     time, else (the time is the server's: RawEvent::arrival_time) random,
//     since equal events that arrive in the same millisecond are two events.
// A distinct id of the form "psn_<32 hex>" is already a pseudonym (a
// minpanel export) and is taken as is, so re-importing an export neither
// pseudonymises twice nor defeats de-duplication.
//
// Policy is immutable and thread-safe. Keys: keys.h.
// Key file format: docs/formats/keys.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "privacy/detectors.h"
#include "privacy/geo.h"
#include "privacy/keys.h"
#include "privacy/policy_file.h"
#include "privacy/url.h"
#include "privacy/user_agent.h"

namespace minpanel::privacy {

// What the policy did, for metrics and explanations. Added to, never reset.
struct PolicyCounters {
  uint64_t properties_dropped = 0;
  uint64_t properties_pseudonymised = 0;
  uint64_t values_redacted = 0;
  uint64_t context_fields_discarded = 0;  // raw IPs, user agents, URLs, referrers
  uint64_t context_fields_generalised = 0;
  DetectorCounts detections;
  // Matches per rule, indexed like PolicySpec::rules (sized on first match).
  std::vector<uint64_t> rule_hits;
};

// The shared, read-only machinery a policy uses; built once per process.
// `user_agents` and `geo` may be null: a user agent or IP to generalise is
// then discarded without a replacement.
struct PolicyTools {
  Detectors detectors;
  std::shared_ptr<const UserAgentParser> user_agents;
  std::shared_ptr<const GeoDatabase> geo;
};

// What the policy did to one stored value, told from its key and stored
// form alone (the raw value is never stored, so it cannot be compared):
// `change` is "pseudonymised", "generalised", "redacted" or "derived"
// (a key the policy adds from a discarded context field), and `why` names
// the rule, the policy setting or the detectors. For the live events view
// (docs/formats/dashboard-api.md says the method and its limits).
struct StoredMark {
  std::string change;
  std::string why;
};

class Policy {
 public:
  // With the strict default policy (version 0) and no user-agent or geo data.
  explicit Policy(ProjectKey key);
  // `policy_version` is the version of `spec` in the project's history (0:
  // the built-in default); every Event and ProfileUpdate the policy makes
  // records it.
  Policy(ProjectKey key, std::shared_ptr<const PolicySpec> spec,
         std::shared_ptr<const PolicyTools> tools, uint32_t policy_version = 0);

  // Consumes `raw`; the returned Event or ProfileUpdate holds no raw
  // identifier, and its policy_version is this policy's.
  Event Apply(RawEvent&& raw, PolicyCounters* counters) const;
  ProfileUpdate Apply(RawProfileUpdate&& raw, PolicyCounters* counters) const;

  // The subject a distinct id maps to: the same input always gives the
  // same pseudonym under the same key.
  Id128 Pseudonym(std::string_view distinct_id) const;

  // What the policy does to a property named `key`, and why (a rule and its
  // line, the person-name stance, an id, the detectors), for previews.
  Action ActionFor(std::string_view key, bool user_profile, std::string* reason,
                   PolicyCounters* counters = nullptr) const;
  // The mark of a stored property under this policy, or nullopt when its
  // stored form shows no change. A value is "redacted" when it holds a
  // detector's mark ("[email]", …), "pseudonymised" when it is a psn_
  // pseudonym of a key the policy pseudonymises.
  std::optional<StoredMark> MarkStored(std::string_view key, const Value& value) const;
  // The detector marks ("email, phone") a stored text holds; "" for none.
  static std::string RedactionMarks(std::string_view text);
  const PolicySpec& spec() const { return *spec_; }
  const PolicyTools& tools() const { return *tools_; }
  uint32_t policy_version() const { return policy_version_; }

 private:
  Id128 InsertId(const RawEvent& raw) const;
  Id128 KeyedHash(uint8_t domain, std::string_view data) const;
  // Properties after rules, the person-name stance, id pseudonyms and the
  // detectors. `user_profile` marks a user's profile update.
  Properties ApplyToProperties(Properties properties, bool user_profile,
                               PolicyCounters* counters) const;
  // Both take the value out of `property` / `value`: nothing is copied
  // unless it changes.
  std::optional<Value> ApplyAction(Action action, Property& property,
                                   PolicyCounters* counters) const;
  Value Redacted(Value value, PolicyCounters* counters) const;
  std::optional<std::string> RedactText(std::string_view text, PolicyCounters* counters) const;
  std::string PseudonymText(std::string_view key, std::string_view text) const;
  Id128 GroupSubject(std::string_view group_key, std::string_view group_id) const;
  void AddContext(RawEvent& raw, Properties* properties, PolicyCounters* counters) const;

  ProjectKey key_;
  std::shared_ptr<const PolicySpec> spec_;
  std::shared_ptr<const PolicyTools> tools_;
  UrlPolicy url_policy_;  // from spec_, built once rather than per URL
  uint32_t policy_version_ = 0;
};

}  // namespace minpanel::privacy
