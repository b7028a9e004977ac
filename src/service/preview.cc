// Service::PreviewPolicy: what a project's policy would store for sample
// events, and which rule or detector changed what. Nothing is stored; the
// raw input only ever travels back to the caller who sent it.
#include <set>

#include "service/service.h"

namespace minpanel::service {
namespace {

using privacy::Action;

struct Change {
  std::string field;
  std::string change;
  std::string by;
};

std::string DetectorKinds(const privacy::Detectors& detectors, const Value& value) {
  std::vector<privacy::Detection> found;
  std::vector<std::string_view> texts;
  if (value.type() == Value::Type::kString) {
    texts.push_back(value.as_string());
  } else if (value.type() == Value::Type::kList) {
    texts.assign(value.as_list().begin(), value.as_list().end());
  }
  std::set<std::string_view> kinds;
  for (const std::string_view text : texts) {
    found.clear();
    detectors.Scan(text, &found);
    for (const privacy::Detection& detection : found) {
      kinds.insert(privacy::PiiKindName(detection.kind));
    }
  }
  std::string list;
  for (const std::string_view kind : kinds) {
    list += list.empty() ? "detector: " : ", ";
    list += kind;
  }
  return list;
}

std::string PastTense(Action action) {
  switch (action) {
    case Action::kKeep:
      return "kept";
    case Action::kDrop:
      return "dropped";
    case Action::kPseudonymise:
      return "pseudonymised";
    case Action::kRedact:
      return "redacted";
    case Action::kGeneralise:
      return "generalised";
  }
  return "changed";
}

std::string ContextChange(Action action, std::string_view generalised) {
  switch (action) {
    case Action::kKeep:
      return "kept as sent (policy says keep)";
    case Action::kGeneralise:
      return std::string(generalised) + "; the raw value is discarded";
    default:
      return "discarded";
  }
}

void AddContextChanges(const RawEvent& raw, const privacy::PolicySpec& spec,
                       std::vector<Change>* changes) {
  if (!raw.client_ip.empty()) {
    changes->push_back({"ip", ContextChange(spec.ip, "generalised to a location"), "policy: ip"});
  }
  if (!raw.user_agent.empty()) {
    changes->push_back({"user_agent",
                        ContextChange(spec.user_agent, "generalised to browser, OS, device type"),
                        "policy: user_agent"});
  }
  if (!raw.page_url.empty()) {
    changes->push_back({"page_url",
                        ContextChange(spec.page_url, "generalised to scheme, host and path"),
                        "policy: page_url"});
  }
  if (!raw.referrer.empty()) {
    changes->push_back(
        {"referrer", ContextChange(spec.referrer, "generalised to its host"), "policy: referrer"});
  }
}

std::vector<Change> DescribeChanges(const RawEvent& raw, const Event& stored,
                                    const privacy::Policy& policy) {
  std::vector<Change> changes;
  changes.push_back({"distinct_id", "pseudonymised", "always (keyed with the project key)"});
  if (raw.name != stored.name) {
    changes.push_back({"event", "redacted",
                       DetectorKinds(policy.tools().detectors, Value::String(raw.name))});
  }
  AddContextChanges(raw, policy.spec(), &changes);
  for (const Property& property : raw.properties) {
    std::string reason;
    const Action action = policy.ActionFor(property.key, false, &reason);
    const Value* kept = FindProperty(stored.properties, property.key);
    const std::string field = "properties." + property.key;
    if (kept == nullptr) {
      changes.push_back({field, action == Action::kDrop ? "dropped" : "key redacted",
                         action == Action::kDrop ? reason : "detectors"});
    } else if (!(*kept == property.value)) {
      const std::string by = action == Action::kRedact || action == Action::kGeneralise
                                 ? DetectorKinds(policy.tools().detectors, property.value)
                                 : "";
      changes.push_back({field, PastTense(action),
                         by.empty() ? reason : reason + "; " + by});
    }
  }
  for (const Property& property : stored.properties) {
    if (FindProperty(raw.properties, property.key) == nullptr) {
      changes.push_back({"properties." + property.key, "added", "derived from the context"});
    }
  }
  return changes;
}

void AppendChanges(const std::vector<Change>& changes, std::string* out) {
  out->append("[");
  for (size_t change_idx = 0; change_idx < changes.size(); ++change_idx) {
    const Change& change = changes[change_idx];
    out->append(change_idx == 0 ? "{\"field\":" : ",{\"field\":");
    query::AppendJsonString(change.field, out);
    out->append(",\"change\":");
    query::AppendJsonString(change.change, out);
    out->append(",\"by\":");
    query::AppendJsonString(change.by, out);
    out->append("}");
  }
  out->append("]");
}

}  // namespace

Result<std::string> Service::PreviewPolicy(const Project& project, std::string_view payload) {
  MP_ASSIGN_OR_RETURN(ingest::MixpanelEvents decoded,
                      DecodeEvents(ingest::MixpanelRoute::kImport, payload));
  MP_ASSIGN_OR_RETURN(const privacy::Policy policy, PolicyFor(project));
  std::string out = "{\"project\":";
  query::AppendJsonString(project.name, &out);
  out += ",\"policy_version\":" + std::to_string(policies_->Get(project.name).version);
  out += ",\"events\":[";
  privacy::PolicyCounters counters;
  for (size_t event_idx = 0; event_idx < decoded.events.size(); ++event_idx) {
    const RawEvent raw = decoded.events[event_idx];
    const Event stored = policy.Apply(RawEvent(raw), &counters);
    std::string line;
    query::AppendEventJsonLine(stored, &line);
    line.pop_back();  // the newline
    out += event_idx == 0 ? "{\"index\":" : ",{\"index\":";
    out += std::to_string(decoded.event_index[event_idx]) + ",\"stored\":" + line;
    out += ",\"changes\":";
    AppendChanges(DescribeChanges(raw, stored, policy), &out);
    out += "}";
  }
  out += "],\"refused\":[";
  for (size_t error_idx = 0; error_idx < decoded.errors.size(); ++error_idx) {
    const ingest::RecordError& error = decoded.errors[error_idx];
    out += error_idx == 0 ? "{\"index\":" : ",{\"index\":";
    out += std::to_string(error.index) + ",\"field\":";
    query::AppendJsonString(error.field, &out);
    out += ",\"message\":";
    query::AppendJsonString(error.message, &out);
    out += "}";
  }
  out += "]}\n";
  return out;
}

}  // namespace minpanel::service
