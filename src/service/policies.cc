// The policy of a project through the service: what is in force, putting a
// new text (the admin API's PUT), and the recorded history.
#include "privacy/policy_file.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

using privacy::Action;

// What a policy stores in clear that the default policy would not, one note
// each, so that whoever puts it in force reads what it asks for.
std::vector<std::string> ClearDataNotes(const privacy::PolicySpec& spec) {
  std::vector<std::string> notes;
  const std::pair<std::string_view, Action> fields[] = {{"ip", spec.ip},
                                                        {"user_agent", spec.user_agent},
                                                        {"page_url", spec.page_url},
                                                        {"referrer", spec.referrer}};
  for (const auto& [field, action] : fields) {
    if (action == Action::kKeep) {
      notes.push_back(std::string(field) + " = \"keep\": stored as sent, not generalised");
    }
  }
  if (!spec.detectors) {
    notes.push_back(
        "detectors = false: emails, phone numbers, cards and other personal data in kept "
        "strings are no longer redacted (only by rules with action \"redact\")");
  }
  if (!spec.drop_person_properties) {
    notes.push_back(
        "drop_person_properties = false: properties named for people ($email, $name, ...) are "
        "stored unless a rule drops them");
  }
  for (const privacy::PropertyRule& rule : spec.rules) {
    if (rule.action == Action::kKeep) {
      notes.push_back("rule at line " + std::to_string(rule.line) + " keeps '" + rule.pattern +
                      "' as sent, without the detectors");
    }
  }
  return notes;
}

}  // namespace

PolicyInForce Service::GetPolicy(const Project& project) const {
  privacy::VersionedPolicy policy = policies_->Get(project.name);
  return PolicyInForce{policy.version, std::move(policy.text), policy.version == 0};
}

Result<PolicyUpdate> Service::PutPolicy(const Project& project, std::string_view text) {
  // PolicyStore::Put checks the text with privacy::ParsePolicy, the check
  // CheckPolicyText (`minpanel policy check`) makes.
  MP_ASSIGN_OR_RETURN(const privacy::PolicyPut put, policies_->Put(project.name, text));
  PolicyUpdate update;
  update.version = put.policy.version;
  update.new_version = put.new_version;
  if (put.new_version) {
    update.notes.push_back("version " + std::to_string(put.policy.version) +
                           " is in force for project '" + project.name +
                           "' from now on; events stored before keep what the policy of their "
                           "time stored");
  } else {
    update.notes.push_back("the same text as version " + std::to_string(put.policy.version) +
                           ", which is in force: no new version");
  }
  std::vector<std::string> clear = ClearDataNotes(*put.policy.spec);
  update.notes.insert(update.notes.end(), clear.begin(), clear.end());
  return update;
}

Result<std::vector<PolicyVersion>> Service::PolicyHistory(const Project& project) const {
  MP_ASSIGN_OR_RETURN(const std::vector<privacy::PolicyVersionInfo> history,
                      policies_->History(project.name));
  std::vector<PolicyVersion> versions;
  versions.reserve(history.size());
  for (const privacy::PolicyVersionInfo& info : history) {
    versions.push_back(PolicyVersion{info.version, info.recorded_ms, info.bytes});
  }
  return versions;
}

Result<std::string> Service::PolicyVersionText(const Project& project, uint32_t version) const {
  return policies_->VersionText(project.name, version);
}

}  // namespace minpanel::service
