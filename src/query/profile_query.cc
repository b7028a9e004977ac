// Property references of profile and group properties in queries
// (docs/queries.md, "Profile and group properties").
#include "query/query.h"

namespace minpanel::query {
namespace {

constexpr char kReferenceMark = '\0';
constexpr char kProfileMark = 'p';
constexpr char kGroupMark = 'g';
constexpr char kSubjectMark = 's';

bool FilterUsesProfiles(const Filter& filter) {
  if (filter.kind == Filter::Kind::kCondition) {
    const PropertySource source = ParsePropertyReference(filter.property).source;
    return source == PropertySource::kProfile || source == PropertySource::kGroup;
  }
  // Depth is bounded by kFilterDepthMax (checked by ParseQuery).
  for (const Filter& child : filter.children) {
    if (FilterUsesProfiles(child)) {
      return true;
    }
  }
  return false;
}

// "psn_" and 32 hex digits: the subject it names.
std::optional<Id128> PseudonymSubject(std::string_view text) {
  constexpr size_t kHexDigits = 32;
  if (text.size() != kPseudonymPrefix.size() + kHexDigits || !text.starts_with(kPseudonymPrefix)) {
    return std::nullopt;
  }
  return Id128::FromHex(text.substr(kPseudonymPrefix.size()));
}

// How a query's raw ids become the texts the store holds: `pseudonyms`
// gives the subjects a raw id may be, `subject_id_property` which property
// names hold a person's id as its pseudonym (QueryContext).
struct SubjectIdResolver {
  const std::function<std::vector<Id128>(std::string_view)>& pseudonyms;
  const std::function<bool(std::string_view)>& subject_id_property;

  bool IsSubjectId(std::string_view property) const {
    if (!subject_id_property) {
      return false;
    }
    const PropertyRef ref = ParsePropertyReference(property);
    return ref.source != PropertySource::kSubject && subject_id_property(ref.name);
  }
};

// A value as text: a string as it is, anything else as JSON.
void ValueText(const Value& value, std::string* text) {
  text->clear();
  if (value.type() == Value::Type::kString) {
    *text = value.as_string();
  } else {
    AppendJsonValue(value, text);
  }
}

// A subject filter's eq and in become in, its ne and not_in become not_in:
// one id given can match as several stored values (its pseudonym under each
// key version). False, `op` unchanged, for any other operator.
bool AsSetOperator(FilterOp* op) {
  switch (*op) {
    case FilterOp::kEq:
    case FilterOp::kIn:
      *op = FilterOp::kIn;
      return true;
    case FilterOp::kNe:
    case FilterOp::kNotIn:
      *op = FilterOp::kNotIn;
      return true;
    default:
      return false;
  }
}

Status ResolveDistinctIdFilter(const SubjectIdResolver& resolver, const std::string& path,
                               Filter* filter) {
  filter->property = PropertyReference(PropertySource::kSubject, "", kDistinctIdProperty);
  if (filter->op == FilterOp::kIsSet || filter->op == FilterOp::kIsNotSet) {
    return Status::Ok();  // every event has a subject
  }
  if (!AsSetOperator(&filter->op)) {
    return Status::InvalidArgument(
        path + ".filters: distinct_id takes eq, ne, in, not_in, is_set or is_not_set, not " +
        std::string(FilterOpName(filter->op)) + " (the stored ids are pseudonyms)");
  }
  std::vector<Value> subjects;
  std::string text;
  for (const Value& value : filter->values) {
    if (value.is_null()) {
      continue;  // every event has a subject
    }
    ValueText(value, &text);
    if (const std::optional<Id128> subject = PseudonymSubject(text)) {
      subjects.push_back(Value::String(FormatPseudonym(*subject)));
      continue;
    }
    if (!resolver.pseudonyms) {
      return Status::InvalidArgument(path +
                                     ".filters: distinct_id: only pseudonyms (psn_...) can be "
                                     "named here, no project key is at hand");
    }
    for (const Id128& subject : resolver.pseudonyms(text)) {
      subjects.push_back(Value::String(FormatPseudonym(subject)));
    }
  }
  filter->values = std::move(subjects);
  return Status::Ok();
}

// A subject id kept as a property (user_id, $device_id, ...): the policy
// stored a string or integer id as its pseudonym, so an eq / ne / in /
// not_in value matches as it is (an id a policy keeps in clear, a
// pseudonym) and as its pseudonym under every key version. Other
// operators test the stored text as for any property.
void ResolveSubjectIdFilter(const SubjectIdResolver& resolver, Filter* filter) {
  if (!AsSetOperator(&filter->op) || !resolver.pseudonyms) {
    return;
  }
  std::vector<Value> values;
  std::string text;
  for (const Value& value : filter->values) {
    values.push_back(value);
    if (value.type() != Value::Type::kString && value.type() != Value::Type::kInt) {
      continue;  // the policy keeps null, booleans and doubles as they are
    }
    ValueText(value, &text);
    if (PseudonymSubject(text).has_value()) {
      continue;
    }
    for (const Id128& subject : resolver.pseudonyms(text)) {
      values.push_back(Value::String(FormatPseudonym(subject)));
    }
  }
  filter->values = std::move(values);
}

Status ResolveFilter(const SubjectIdResolver& resolver, const std::string& path, Filter* filter) {
  if (filter->kind != Filter::Kind::kCondition) {
    // Depth is bounded by kFilterDepthMax (checked by ParseQuery).
    for (Filter& child : filter->children) {
      MP_RETURN_IF_ERROR(ResolveFilter(resolver, path, &child));
    }
    return Status::Ok();
  }
  if (filter->property == kDistinctIdProperty) {
    return ResolveDistinctIdFilter(resolver, path, filter);
  }
  if (resolver.IsSubjectId(filter->property)) {
    ResolveSubjectIdFilter(resolver, filter);
  }
  return Status::Ok();
}

bool FilterNamesSubjectId(const SubjectIdResolver& resolver, const Filter& filter) {
  if (filter.kind == Filter::Kind::kCondition) {
    return filter.property == kDistinctIdProperty || resolver.IsSubjectId(filter.property);
  }
  for (const Filter& child : filter.children) {
    if (FilterNamesSubjectId(resolver, child)) {
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
  } else if (source == PropertySource::kSubject) {
    reference.push_back(kSubjectMark);
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
  if (reference[1] == kSubjectMark) {
    ref.source = PropertySource::kSubject;
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
    const PropertySource source = ParsePropertyReference(property).source;
    if (source == PropertySource::kProfile || source == PropertySource::kGroup) {
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

bool NamesSubjectIds(const QuerySpec& spec,
                     const std::function<bool(std::string_view)>& subject_id_property) {
  const std::function<std::vector<Id128>(std::string_view)> no_pseudonyms;
  const SubjectIdResolver resolver{no_pseudonyms, subject_id_property};
  for (const std::string& property : spec.breakdown.properties) {
    if (property == kDistinctIdProperty) {
      return true;
    }
  }
  for (const std::vector<EventSelector>* selectors : {&spec.events, &spec.steps}) {
    for (const EventSelector& selector : *selectors) {
      if (FilterNamesSubjectId(resolver, selector.filter)) {
        return true;
      }
    }
  }
  for (const FunnelExclusion& exclusion : spec.exclusions) {
    if (FilterNamesSubjectId(resolver, exclusion.selector.filter)) {
      return true;
    }
  }
  return FilterNamesSubjectId(resolver, spec.birth.filter) ||
         FilterNamesSubjectId(resolver, spec.return_event.filter);
}

Status ResolveSubjectIds(const QueryContext& context, QuerySpec* spec) {
  const SubjectIdResolver resolver{context.pseudonyms, context.subject_id_property};
  for (std::string& property : spec->breakdown.properties) {
    if (property == kDistinctIdProperty) {
      property = PropertyReference(PropertySource::kSubject, "", kDistinctIdProperty);
    }
  }
  for (size_t idx = 0; idx < spec->events.size(); ++idx) {
    MP_RETURN_IF_ERROR(ResolveFilter(resolver, "events[" + std::to_string(idx) + "]",
                                     &spec->events[idx].filter));
  }
  for (size_t idx = 0; idx < spec->steps.size(); ++idx) {
    MP_RETURN_IF_ERROR(
        ResolveFilter(resolver, "steps[" + std::to_string(idx) + "]", &spec->steps[idx].filter));
  }
  for (size_t idx = 0; idx < spec->exclusions.size(); ++idx) {
    MP_RETURN_IF_ERROR(ResolveFilter(resolver, "exclusions[" + std::to_string(idx) + "]",
                                     &spec->exclusions[idx].selector.filter));
  }
  MP_RETURN_IF_ERROR(ResolveFilter(resolver, "birth", &spec->birth.filter));
  return ResolveFilter(resolver, "return", &spec->return_event.filter);
}

}  // namespace minpanel::query
