// Consent signals (docs/privacy.md, "Consent and signals"): a request that
// carried `Sec-GPC: 1` or `DNT: 1` is stored as its project's `consent`
// setting says — as any other (ignore), not at all (drop), or without
// anything that links it to a person (anonymous).
#include <algorithm>
#include <optional>

#include "service/service.h"

namespace minpanel::service {
namespace {

bool IsPseudonym(const std::string& text) { return text.starts_with(kPseudonymPrefix); }

// A value that names a person or a group by its keyed pseudonym (the
// policy's `pseudonymise`, the ids of identity merges, group ids).
bool HoldsPseudonym(const Value& value) {
  if (value.type() == Value::Type::kString) {
    return IsPseudonym(value.as_string());
  }
  if (value.type() == Value::Type::kList) {
    return std::any_of(value.as_list().begin(), value.as_list().end(), IsPseudonym);
  }
  return false;
}

// The event as counted but linked to no one: no subject (the zero id, the
// same for every such event) and no property holding a pseudonym.
void Anonymise(Event* event) {
  event->subject = Id128{};
  std::erase_if(event->properties,
                [](const Property& property) { return HoldsPseudonym(property.value); });
}

}  // namespace

Result<Service::Prepared> Service::ApplyConsent(Result<Prepared> prepared, bool consent_signal) {
  if (!consent_signal || !prepared.ok()) {
    return prepared;
  }
  store::AppendBatch& batch = prepared->batch;
  const std::optional<Project> project = projects_->FindById(batch.project_id);
  if (!project.has_value() || (batch.events.empty() && batch.profile_updates.empty())) {
    return prepared;
  }
  const ConsentMode mode = settings_.For(project->name).consent;
  if (mode == ConsentMode::kIgnore) {
    return prepared;
  }
  // A profile update describes a person: never kept under either setting.
  batch.profile_updates.clear();
  if (mode == ConsentMode::kDrop) {
    settings_.consent_dropped.fetch_add(batch.events.size());
    batch.events.clear();
    return prepared;
  }
  settings_.consent_anonymous.fetch_add(batch.events.size());
  for (Event& event : batch.events) {
    Anonymise(&event);
  }
  return prepared;
}

}  // namespace minpanel::service
