// Property references of profile and group properties in queries
// (docs/queries.md, "Profile and group properties").
#include "query/query.h"

namespace minpanel::query {
namespace {

constexpr char kReferenceMark = '\0';
constexpr char kProfileMark = 'p';
constexpr char kGroupMark = 'g';

bool FilterUsesProfiles(const Filter& filter) {
  if (filter.kind == Filter::Kind::kCondition) {
    return ParsePropertyReference(filter.property).source != PropertySource::kEvent;
  }
  // Depth is bounded by kFilterDepthMax (checked by ParseQuery).
  for (const Filter& child : filter.children) {
    if (FilterUsesProfiles(child)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string PropertyReference(PropertySource source, std::string_view group_key,
                              std::string_view name) {
  if (source == PropertySource::kEvent) {
    return std::string(name);
  }
  std::string reference(1, kReferenceMark);
  if (source == PropertySource::kProfile) {
    reference.push_back(kProfileMark);
  } else {
    reference.push_back(kGroupMark);
    reference.append(group_key);
    reference.push_back(kReferenceMark);
  }
  reference.append(name);
  return reference;
}

PropertyRef ParsePropertyReference(std::string_view reference) {
  PropertyRef ref;
  ref.name = reference;
  if (reference.size() < 2 || reference[0] != kReferenceMark) {
    return ref;
  }
  if (reference[1] == kProfileMark) {
    ref.source = PropertySource::kProfile;
    ref.name = reference.substr(2);
    return ref;
  }
  const size_t end = reference.find(kReferenceMark, 2);
  if (reference[1] != kGroupMark || end == std::string_view::npos) {
    return ref;
  }
  ref.source = PropertySource::kGroup;
  ref.group_key = reference.substr(2, end - 2);
  ref.name = reference.substr(end + 1);
  return ref;
}

bool UsesProfiles(const QuerySpec& spec) {
  for (const std::string& property : spec.breakdown.properties) {
    if (ParsePropertyReference(property).source != PropertySource::kEvent) {
      return true;
    }
  }
  const auto selector_uses = [](const EventSelector& selector) {
    return FilterUsesProfiles(selector.filter);
  };
  for (const std::vector<EventSelector>* selectors : {&spec.events, &spec.steps}) {
    for (const EventSelector& selector : *selectors) {
      if (selector_uses(selector)) {
        return true;
      }
    }
  }
  for (const FunnelExclusion& exclusion : spec.exclusions) {
    if (selector_uses(exclusion.selector)) {
      return true;
    }
  }
  return selector_uses(spec.birth) || selector_uses(spec.return_event);
}

}  // namespace minpanel::query
