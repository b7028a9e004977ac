// Access control and the audit hooks of the Service (issue 6;
// docs/security.md): who the credentials are, what they may do, and a
// durable audit record of every read, export and admin act.
#include <simdjson.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <unordered_set>

#include "service/service.h"

#include "core/time_units.h"
#include "privacy/keys.h"
#include "privacy/policy_file.h"
#include "service/audit_params.h"

namespace minpanel::service {
namespace {

// Whether a property name a query uses selects or breaks down by a
// subject's identity: the distinct id, or a key the policy pseudonymises as
// a person's id (privacy::ReservedKey::kSubjectId: user_id, $user_id,
// $device_id, userId, anonymousId, …). A query naming one needs
// query:subjects, so that an aggregate key cannot test whether a given
// person is present.
bool NamesSubject(std::string_view name) {
  return name == query::kDistinctIdProperty || name == "$distinct_id" ||
         privacy::ClassifyKey(name) == privacy::ReservedKey::kSubjectId;
}

// Depth of the query JSON walked for the names it uses (the query parser's
// own limit is lower; this only bounds the walk's stack).
constexpr size_t kQueryWalkDepthMax = 64;

bool Contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

Status MissingScope(Scope scope) {
  return Status::PermissionDenied("scope: this request needs the scope '" +
                                  std::string(ScopeName(scope)) + "', which this key lacks");
}

// The event names and property keys a query names, and whether it selects
// any event.
struct QueryNames {
  std::set<std::string> events;
  std::set<std::string> properties;
  bool any_event = false;
};

void AddStrings(simdjson::dom::element element, std::set<std::string>* out) {
  std::string_view text;
  if (element.get(text) == simdjson::SUCCESS) {
    out->emplace(text);
    return;
  }
  simdjson::dom::array array;
  if (element.get(array) == simdjson::SUCCESS) {
    for (simdjson::dom::element item : array) {
      if (item.get(text) == simdjson::SUCCESS) {
        out->emplace(text);
      }
    }
  }
}

// Walks the query without recursion: every event selector given by name
// ("event", "events", "steps", "birth", "return") and every "property",
// "breakdown" and breakdown "properties" anywhere in it (docs/queries.md).
Result<QueryNames> NamesOfQuery(std::string_view query_json) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(query_json.data(), query_json.size()).get(root)) {
    return Status::InvalidArgument("query: not valid JSON");
  }
  QueryNames names;
  std::vector<std::pair<simdjson::dom::element, size_t>> stack = {{root, 0}};
  while (!stack.empty()) {
    const auto [element, depth] = stack.back();
    stack.pop_back();
    if (depth > kQueryWalkDepthMax) {
      return Status::InvalidArgument("query: nested deeper than " +
                                     std::to_string(kQueryWalkDepthMax));
    }
    simdjson::dom::object object;
    simdjson::dom::array array;
    if (element.get(object) == simdjson::SUCCESS) {
      for (const auto field : object) {
        if (field.key == "event" || field.key == "events" || field.key == "steps" ||
            field.key == "birth" || field.key == "return") {
          // A selector is a name or an object; AddStrings takes the names.
          AddStrings(field.value, &names.events);
        } else if (field.key == "property" || field.key == "breakdown" ||
                   field.key == "properties") {
          AddStrings(field.value, &names.properties);
        } else if (field.key == "any_event") {
          bool any = false;
          names.any_event = names.any_event || (field.value.get(any) == simdjson::SUCCESS && any);
        }
        stack.emplace_back(field.value, depth + 1);
      }
    } else if (element.get(array) == simdjson::SUCCESS) {
      for (simdjson::dom::element item : array) {
        stack.emplace_back(item, depth + 1);
      }
    }
  }
  return names;
}

// Whether a key limited to events or properties may run this query.
Status CheckLimits(const Principal& principal, const QueryNames& names) {
  if (!principal.events.empty()) {
    if (names.any_event) {
      return Status::PermissionDenied(
          "events: this key is limited to named events; any_event is not allowed");
    }
    for (const std::string& event : names.events) {
      if (!Contains(principal.events, event)) {
        return Status::PermissionDenied("events: this key may not read the event '" + event + "'");
      }
    }
  }
  if (!principal.properties.empty()) {
    for (const std::string& property : names.properties) {
      if (!Contains(principal.properties, property)) {
        return Status::PermissionDenied("properties: this key may not read the property '" +
                                        property + "'");
      }
    }
  }
  return Status::Ok();
}

// The names a query gives, as its record lists them: a name a detector
// flags (an event named after an email address) as "<masked:KIND>", never
// as itself (audit_params.h).
std::set<std::string> AuditNames(const std::set<std::string>& names,
                                 const privacy::Detectors& detectors) {
  std::set<std::string> masked;
  for (const std::string& name : names) {
    masked.insert(AuditName(name, detectors));
  }
  return masked;
}

std::vector<std::string> Capped(const std::set<std::string>& items) {
  std::vector<std::string> list;
  for (const std::string& item : items) {
    if (list.size() >= audit::kRecordListItemsMax) {
      break;
    }
    list.push_back(item);
  }
  return list;
}

// What an export's lines carry, seen as they stream out: event names,
// property keys, the subject pseudonyms and, per subject, the keys that had
// a value in its rows (the subject file's key sets, audit::SubjectKeySets).
class ExportWatcher {
 public:
  void Watch(std::string_view chunk) {
    size_t start = 0;
    while (start < chunk.size()) {
      const size_t end = chunk.find('\n', start);
      if (end == std::string_view::npos) {
        partial_.append(chunk.substr(start));
        return;
      }
      if (!partial_.empty()) {
        partial_.append(chunk.substr(start, end - start));
        Line(partial_);
        partial_.clear();
      } else {
        Line(chunk.substr(start, end - start));
      }
      start = end + 1;
    }
  }

  std::set<std::string> events;
  audit::SubjectKeySets subjects;  // the record's property keys are subjects.Keys()

 private:
  void Line(std::string_view line) {
    ReadLine(line);
    subjects.EndRow();
  }

  void ReadLine(std::string_view line) {
    padded_.assign(line.data(), line.size());
    padded_.resize(line.size() + simdjson::SIMDJSON_PADDING);
    simdjson::ondemand::document document;
    if (parser_.iterate(padded_.data(), line.size(), padded_.size()).get(document)) {
      return;
    }
    simdjson::ondemand::object object;
    if (document.get_object().get(object)) {
      return;
    }
    for (auto field : object) {
      std::string_view key;
      if (field.unescaped_key().get(key)) {
        return;
      }
      if (key == "event") {
        std::string_view name;
        if (!field.value().get_string().get(name) && events.size() < audit::kRecordListItemsMax) {
          events.emplace(name);
        }
      } else if (key == "properties") {
        simdjson::ondemand::object properties_object;
        if (field.value().get_object().get(properties_object)) {
          return;
        }
        for (auto property : properties_object) {
          std::string_view property_key;
          if (property.unescaped_key().get(property_key)) {
            return;
          }
          // A merged row names its person and its stored subject: both left.
          if (property_key == "distinct_id" ||
              property_key == query::kDistinctIdBeforeIdentityKey) {
            std::string_view subject;
            if (!property.value().get_string().get(subject)) {
              subjects.AddSubject(subject);
            }
          } else {
            // A null is no value: the key left, nothing of the subject with it.
            bool is_null = false;
            if (property.value().is_null().get(is_null)) {
              return;
            }
            subjects.AddKey(property_key, !is_null);
          }
        }
      }
    }
  }

  simdjson::ondemand::parser parser_;
  std::string padded_;
  std::string partial_;
};

// Whether a breakdown's property (as QuerySpec holds it) is a subject's
// identity, whose values are subjects: an event's or a profile's.
bool IsSubjectProperty(std::string_view reference) {
  const query::PropertyRef property = query::ParsePropertyReference(reference);
  return property.source != query::PropertySource::kGroup && NamesSubject(property.name);
}

// "psn_" and 32 lowercase hex digits: a pseudonym as the store gives it.
bool IsPseudonym(std::string_view text) {
  constexpr size_t kHexDigits = 32;
  return text.size() == kPseudonymPrefix.size() + kHexDigits &&
         text.starts_with(kPseudonymPrefix) &&
         std::all_of(text.begin() + kPseudonymPrefix.size(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// What a subject's cells show besides the subject: each cell is a time
// bucket (a segmentation's), a step's time to convert or a cohort's period.
constexpr std::string_view kAnswerTimeKey = "time";

}  // namespace

Status Service::ListAnswerSubjects(const Project& project, const query::QuerySpec& spec,
                                   const query::QueryResult& result,
                                   audit::SubjectKeySets* listed) {
  const std::vector<std::string>& properties = spec.breakdown.properties;
  std::vector<bool> is_subject(properties.size());
  bool any_subject = false;
  for (size_t property_idx = 0; property_idx < properties.size(); ++property_idx) {
    is_subject[property_idx] = IsSubjectProperty(properties[property_idx]);
    any_subject = any_subject || is_subject[property_idx];
  }
  if (!any_subject) {
    return Status::Ok();
  }
  std::optional<privacy::Policy> policy;  // for an id a policy keeps in clear
  std::string text;
  const auto add_group = [&](const query::GroupKey& group) -> Status {
    if (group.other || group.values.size() != properties.size()) {
      return Status::Ok();
    }
    for (size_t property_idx = 0; property_idx < properties.size(); ++property_idx) {
      const Value& value = group.values[property_idx];
      if (!is_subject[property_idx]) {
        listed->AddKey(query::ParsePropertyReference(properties[property_idx]).name,
                       !value.is_null());
        continue;
      }
      if (value.is_null()) {
        continue;
      }
      text.clear();
      if (value.type() == Value::Type::kString) {
        text = value.as_string();
      } else {
        query::AppendJsonValue(value, &text);
      }
      if (IsPseudonym(text)) {
        listed->AddSubject(text);
        continue;
      }
      if (!policy.has_value()) {
        MP_ASSIGN_OR_RETURN(privacy::Policy project_policy, PolicyFor(project));
        policy.emplace(std::move(project_policy));
      }
      listed->AddSubject(FormatPseudonym(policy->Pseudonym(text)));
    }
    listed->AddKey(kAnswerTimeKey, true);
    listed->EndRow();
    return Status::Ok();
  };
  for (const query::SegmentationSeries& series : result.series) {
    MP_RETURN_IF_ERROR(add_group(series.group));
  }
  for (const query::FunnelGroup& group : result.funnel) {
    if (group.group.has_value()) {
      MP_RETURN_IF_ERROR(add_group(*group.group));
    }
  }
  for (const query::RetentionGroup& group : result.retention) {
    if (group.group.has_value()) {
      MP_RETURN_IF_ERROR(add_group(*group.group));
    }
  }
  if (result.previous != nullptr) {
    MP_RETURN_IF_ERROR(ListAnswerSubjects(project, spec, *result.previous, listed));
  }
  return Status::Ok();
}

Access LocalAccess(const Project& project) {
  Access access;
  access.project = project;
  access.principal.key_id = "local";
  access.principal.scopes = kAllScopes;
  access.route = "cli";
  return access;
}

Result<AccessKeySpec> ParseAccessKeySpec(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(json.data(), json.size()).get(root)) {
    return Status::InvalidArgument("body: expected a JSON object");
  }
  AccessKeySpec spec;
  for (const auto field : root) {
    const std::string_view key = field.key;
    if (key == "name") {
      std::string_view name;
      if (field.value.get(name)) {
        return Status::InvalidArgument("name: expected a string");
      }
      spec.name = name;
    } else if (key == "scopes" || key == "events" || key == "properties") {
      simdjson::dom::array array;
      if (field.value.get(array)) {
        return Status::InvalidArgument(std::string(key) + ": expected an array of strings");
      }
      if (array.size() > kAccessKeyListItemsMax) {
        return Status::ResourceExhausted(std::string(key) + ": over the limit of " +
                                         std::to_string(kAccessKeyListItemsMax) +
                                         " items (kAccessKeyListItemsMax)");
      }
      for (simdjson::dom::element item : array) {
        std::string_view text;
        if (item.get(text)) {
          return Status::InvalidArgument(std::string(key) + ": expected an array of strings");
        }
        if (key == "scopes") {
          const std::optional<Scope> scope = ParseScope(text);
          if (!scope.has_value()) {
            return Status::InvalidArgument("scopes: unknown scope '" + std::string(text) + "' (" +
                                           ScopeList(kAllScopes) + ")");
          }
          spec.scopes |= static_cast<uint32_t>(*scope);
        } else {
          (key == "events" ? spec.events : spec.properties).emplace_back(text);
        }
      }
    } else if (key == "project_id") {
      uint64_t project_id = 0;
      if (field.value.get(project_id) || project_id > UINT32_MAX) {
        return Status::InvalidArgument(
            "project_id: expected a project's number (0: every project)");
      }
      spec.project_id = static_cast<uint32_t>(project_id);
    } else if (key == "expires_ms") {
      if (field.value.get(spec.expires_ms)) {
        return Status::InvalidArgument("expires_ms: expected milliseconds since the epoch");
      }
    } else if (key == "rate" || key == "export_rows_per_day" ||
               key == "export_subjects_per_day") {
      uint64_t* value = key == "rate"                  ? &spec.limits.requests_per_second
                        : key == "export_rows_per_day" ? &spec.limits.export_rows_per_day
                                                       : &spec.limits.export_subjects_per_day;
      if (field.value.get(*value)) {
        return Status::InvalidArgument(std::string(key) +
                                       ": expected a non-negative integer (0: the default)");
      }
    } else if (key == "min_group_size") {
      uint64_t min_group_size = 0;
      if (field.value.get(min_group_size) || min_group_size > query::kMinGroupSizeMax) {
        return Status::InvalidArgument("min_group_size: expected 0 .. " +
                                       std::to_string(query::kMinGroupSizeMax) +
                                       " (kMinGroupSizeMax)");
      }
      spec.min_group_size = static_cast<uint32_t>(min_group_size);
    } else {
      return Status::InvalidArgument("body: unknown field '" + std::string(key) + "'");
    }
  }
  return spec;
}

std::string AccessKeyJson(const AccessKey& key, std::string_view secret) {
  std::string json = "{\"id\":\"" + key.id + "\",\"name\":";
  query::AppendJsonString(key.name, &json);
  json += ",\"scopes\":[";
  const std::string scopes = ScopeList(key.scopes);
  size_t start = 0;
  while (start < scopes.size()) {
    size_t end = scopes.find(',', start);
    end = end == std::string::npos ? scopes.size() : end;
    json += start == 0 ? "\"" : ",\"";
    json += scopes.substr(start, end - start) + "\"";
    start = end + 1;
  }
  json += "],\"project_id\":" + std::to_string(key.project_id) + ",\"events\":[";
  for (size_t event_idx = 0; event_idx < key.events.size(); ++event_idx) {
    json += event_idx == 0 ? "" : ",";
    query::AppendJsonString(key.events[event_idx], &json);
  }
  json += "],\"properties\":[";
  for (size_t property_idx = 0; property_idx < key.properties.size(); ++property_idx) {
    json += property_idx == 0 ? "" : ",";
    query::AppendJsonString(key.properties[property_idx], &json);
  }
  json += "],\"expires_ms\":" + std::to_string(key.expires_ms) +
          ",\"created_ms\":" + std::to_string(key.created_ms) +
          ",\"revoked_ms\":" + std::to_string(key.revoked_ms) +
          ",\"rate\":" + std::to_string(key.limits.requests_per_second) +
          ",\"export_rows_per_day\":" + std::to_string(key.limits.export_rows_per_day) +
          ",\"export_subjects_per_day\":" + std::to_string(key.limits.export_subjects_per_day) +
          ",\"suspended_ms\":" + std::to_string(key.suspended_ms) + ",\"suspended_rule\":";
  query::AppendJsonString(key.suspended_rule, &json);
  json += ",\"created_by\":";
  query::AppendJsonString(key.created_by, &json);
  json += ",\"min_group_size\":" + std::to_string(key.min_group_size);
  if (!secret.empty()) {
    json += ",\"secret\":";
    query::AppendJsonString(secret, &json);
  }
  return json + "}";
}

Result<std::unique_ptr<AccessKeyStore>> OpenAccessKeys(const Config& config,
                                                       std::shared_ptr<FileSystem> file_system,
                                                       std::shared_ptr<Clock> clock) {
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(config.data_folder, 0700));
  return AccessKeyStore::Open(config.data_folder, std::move(file_system), std::move(clock));
}

Result<audit::SigningKey> AuditSigningKey(const Config& config, bool create) {
  auto file_system = NewPosixFileSystem();
  if (create) {
    MP_RETURN_IF_ERROR(file_system->CreateDirectories(KeyFolder(config), 0700));
  }
  return audit::LoadSigningKey(*file_system,
                               KeyFolder(config) + "/" + std::string(audit::kSigningKeyFile),
                               create);
}

Result<std::shared_ptr<audit::AddressKeys>> OpenAuditAddressKeys(
    const Config& config, std::shared_ptr<FileSystem> file_system, std::shared_ptr<Clock> clock) {
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(KeyFolder(config), 0700));
  MP_ASSIGN_OR_RETURN(
      std::unique_ptr<audit::AddressKeys> keys,
      audit::AddressKeys::Open(KeyFolder(config) + "/" + std::string(audit::kAddressKeyFolder),
                               std::move(file_system), std::move(clock),
                               config.audit_address_retention_days));
  return std::shared_ptr<audit::AddressKeys>(std::move(keys));
}

Result<std::unique_ptr<audit::AuditLog>> OpenAuditLog(
    const Config& config, std::shared_ptr<FileSystem> file_system, std::shared_ptr<Clock> clock,
    std::shared_ptr<audit::AddressKeys> address_keys) {
  MP_ASSIGN_OR_RETURN(const audit::SigningKey key, AuditSigningKey(config, true));
  audit::Options options;
  options.signing_key = std::make_shared<const audit::SigningKey>(key);
  options.checkpoint_sink = config.audit_checkpoint_sink;
  options.address_keys = std::move(address_keys);
  options.opening_wait_us = config.audit_sync_hold_us;
  options.deferred_start_ms = config.audit_query_start_ms;
  const int64_t now_ms = clock->NowMs();
  MP_ASSIGN_OR_RETURN(auto log, audit::AuditLog::Open(config.data_folder + "/audit",
                                                      std::move(file_system), std::move(clock),
                                                      options));
  if (config.audit_retention_days > 0) {
    MP_RETURN_IF_ERROR(
        log->PruneBefore(now_ms - int64_t{config.audit_retention_days} * kDayMs).status());
  }
  return log;
}

Result<std::optional<audit::PublicKey>> StartAuditKeyEpoch(const Config& config) {
  std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  const std::string folder = config.data_folder + "/audit";
  std::string anchors;
  if (file_system->Exists(folder + "/anchors")) {
    MP_ASSIGN_OR_RETURN(anchors, file_system->ReadFile(folder + "/anchors"));
  }
  MP_ASSIGN_OR_RETURN(const std::optional<audit::PublicKey> previous,
                      audit::CurrentAnchorsKey(anchors));
  MP_ASSIGN_OR_RETURN(const audit::SigningKey key, AuditSigningKey(config, true));
  audit::Options options;
  options.signing_key = std::make_shared<const audit::SigningKey>(key);
  options.checkpoint_sink = config.audit_checkpoint_sink;
  options.new_key_epoch = true;
  MP_ASSIGN_OR_RETURN(auto log, audit::AuditLog::Open(folder, std::move(file_system),
                                                      NewSystemClock(), options));
  MP_RETURN_IF_ERROR(log->Close());
  if (!previous.has_value() || *previous == key.public_key) {
    return std::optional<audit::PublicKey>();
  }
  return previous;
}

Result<Principal> Service::Identify(const Credentials& credentials) const {
  std::string_view secret = credentials.api_key;
  if (credentials.has_basic) {
    secret =
        credentials.basic_password.empty() ? credentials.basic_user : credentials.basic_password;
  }
  if (secret.empty()) {
    return Status::Unauthenticated(
        "authentication: send a key or the project secret as Basic auth (as user, empty "
        "password) or as api_key");
  }
  Principal principal;
  if (IsAccessKeySecret(secret)) {
    const std::optional<AccessKey> key = access_keys_->FindBySecret(secret);
    if (!key.has_value()) {
      return Status::Unauthenticated("authentication: the key is not valid");
    }
    if (key->revoked_ms != 0) {
      return Status::Unauthenticated("authentication: the key has been revoked");
    }
    if (key->expires_ms != 0 && key->expires_ms <= clock_->NowMs()) {
      return Status::Unauthenticated("authentication: the key has expired");
    }
    if (key->suspended_ms != 0) {
      return Status::PermissionDenied("key: " + key->id + " is suspended by the anomaly rule '" +
                                      key->suspended_rule +
                                      "'; an admin enables it again (POST /api/keys/" + key->id +
                                      "/enable or minpanel keys enable)");
    }
    principal.key_id = key->id;
    principal.scopes = key->scopes;
    principal.project_id = key->project_id;
    principal.events = key->events;
    principal.properties = key->properties;
    principal.min_group_size = key->min_group_size;
    principal.limits = EffectiveLimits(key->limits, key_limit_defaults_);
    return principal;
  }
  if (const std::optional<Project> project = projects_->FindBySecret(secret)) {
    principal.key_id = std::string(kProjectSecretKeyPrefix) + std::to_string(project->id);
    principal.scopes = kAllScopes;
    principal.project_id = project->id;
    return principal;
  }
  if (const std::optional<Project> project = projects_->FindByToken(secret)) {
    // The public token authenticates ingestion only.
    principal.key_id = "token:" + std::to_string(project->id);
    principal.scopes = static_cast<uint32_t>(Scope::kIngest);
    principal.project_id = project->id;
    return principal;
  }
  return Status::Unauthenticated("authentication: the secret is not valid");
}

Result<Access> Service::Authorize(const Credentials& credentials, Scope scope,
                                  std::string_view route, bool needs_project) const {
  Access access;
  MP_ASSIGN_OR_RETURN(access.principal, Identify(credentials));
  MP_RETURN_IF_ERROR(
      key_limiter_->Admit(access.principal.key_id, access.principal.limits.requests_per_second));
  access.route = route;
  access.client_address = credentials.client_address;
  if ((access.principal.scopes & static_cast<uint32_t>(scope)) == 0) {
    return MissingScope(scope);
  }
  uint32_t project_id = access.principal.project_id;
  if (!credentials.project_id.empty()) {
    uint32_t asked = 0;
    const char* end = credentials.project_id.data() + credentials.project_id.size();
    if (std::from_chars(credentials.project_id.data(), end, asked).ptr != end || asked == 0) {
      return Status::InvalidArgument("project_id: must be a project's number");
    }
    if (project_id != 0 && asked != project_id) {
      return Status::PermissionDenied("project_id: the key does not belong to project " +
                                      credentials.project_id);
    }
    project_id = asked;
  }
  if (!needs_project) {
    if (project_id != 0) {
      if (auto project = projects_->FindById(project_id)) {
        access.project = *project;
      }
    }
    return access;
  }
  if (project_id == 0) {
    return Status::InvalidArgument("project_id: required with a server-wide key");
  }
  const std::optional<Project> project = projects_->FindById(project_id);
  if (!project.has_value()) {
    return Status::NotFound("project_id: no project " + std::to_string(project_id));
  }
  access.project = *project;
  return access;
}

namespace {

// Who did it, where, on which project: the parts of a record the access says.
audit::AuditEntry Stamped(const Access& access, audit::AuditEntry entry) {
  entry.key = access.principal.key_id;
  entry.route = access.route;
  entry.client_address = access.client_address;
  if (access.project.id != 0 && entry.projects.empty()) {
    entry.projects.push_back(access.project.id);
  }
  return entry;
}

}  // namespace

audit::AuditEntry Service::ReadEntry(const Access& access, std::string act) const {
  audit::AuditEntry entry;
  entry.act = std::move(act);
  entry.policy_version = policies_->VersionOf(access.project.name);
  return entry;
}

Status Service::Audit(const Access& access, audit::AuditEntry entry) {
  return audit_->Append(Stamped(access, std::move(entry))).status();
}

Result<uint64_t> Service::AuditRecord(const Access& access, audit::AuditEntry entry) {
  return audit_->Append(Stamped(access, std::move(entry)));
}

namespace {

// The k of a query (docs/queries.md, "Small groups"): the larger of the
// project's and the key's. A key that may see subjects anyway
// (query:subjects or export) is held to a k only when the key sets one.
uint32_t MinGroupSize(const Access& access) {
  const uint32_t sees_subjects =
      static_cast<uint32_t>(Scope::kQuerySubjects) | static_cast<uint32_t>(Scope::kExport);
  const uint32_t key_k = access.principal.min_group_size;
  if ((access.principal.scopes & sees_subjects) != 0 && key_k == 0) {
    return 0;
  }
  return std::max(access.project.min_group_size, key_k);
}

}  // namespace

Result<std::string> Service::Query(const Project& project, std::string_view query_json,
                                   const LocalQueryOptions& options) {
  Access local = LocalAccess(project);
  if (options.raw_cells) {
    local.route = std::string(kRouteCliRawCells);
  } else {
    // The command line holds every scope, which alone would hold it to no
    // k (MinGroupSize); the project's k is set as its own so that it holds.
    local.principal.min_group_size = project.min_group_size;
  }
  return Query(local, query_json);
}

Result<std::string> Service::Query(const Access& access, std::string_view query_json) {
  MP_ASSIGN_OR_RETURN(const QueryNames names, NamesOfQuery(query_json));
  if ((access.principal.scopes & static_cast<uint32_t>(Scope::kQuerySubjects)) == 0) {
    for (const std::string& property : names.properties) {
      if (NamesSubject(property)) {
        return Status::PermissionDenied("scope: a query on '" + property +
                                        "' needs the scope 'query:subjects', which this key lacks");
      }
    }
  }
  MP_RETURN_IF_ERROR(CheckLimits(access.principal, names));
  // The query's opening record, `query.start` (who, what, the parameters),
  // is held back (AuditLog::OpenRead): a query answered within
  // audit::Options::deferred_start_ms is recorded once, its `query` record
  // carrying the parameters and what left; a longer one has its
  // `query.start` written while it runs (so that a query the process dies
  // in is on the log) and `query` after. Either way the record of what
  // left is durable before the answer leaves, and a query the log cannot
  // record is not answered (docs/formats/audit.md, "Durability"). Both
  // are one request's: its address is sealed once, for both.
  audit::AuditEntry start = Stamped(access, ReadEntry(access, "query.start"));
  MP_RETURN_IF_ERROR(audit_->SealAddress(&start));
  start.params_sha256 = audit::Sha256Hex(query_json);
  start.events = Capped(AuditNames(names.events, tools_->detectors));
  start.properties = Capped(AuditNames(names.properties, tools_->detectors));
  audit::AuditEntry end = start;
  start.params = QueryAuditParams(query_json, tools_->detectors);
  MP_ASSIGN_OR_RETURN(audit::AuditLog::Opening opening, audit_->OpenRead(std::move(start)));
  audit::SubjectKeySets listed;
  auto answer = RunQuery(access.project, query_json, MinGroupSize(access), &listed);
  end.act = "query";
  if (!answer.ok()) {
    end.outcome = answer.status().message();
  } else {
    end.bytes = answer->size();
  }
  if (answer.ok() && listed.subjects() > 0) {
    // An answer that lists subjects is recorded as an export is: its
    // subject file (each subject with the keys its cells showed) is
    // written before the record naming it. The record's keys are the
    // query's and the file's ("time").
    std::vector<std::string> keys = listed.Keys();
    for (const std::string& named : end.properties) {
      if (keys.size() >= audit::kRecordListItemsMax) {
        break;
      }
      if (std::find(keys.begin(), keys.end(), named) == keys.end()) {
        keys.push_back(named);
      }
    }
    std::sort(keys.begin(), keys.end());
    end.properties = std::move(keys);
    MP_RETURN_IF_ERROR(audit_->WriteSubjects(listed.Finish(), &end));
  }
  MP_RETURN_IF_ERROR(opening.Close(std::move(end)).status());
  return answer;
}

namespace {

// Whether an export by `access` carries decoys (docs/security.md,
// "Watermarked exports"): an access key's always, the project secret's and
// the command line's unless asked without (watermark=false, --no-watermark:
// their routes say so in the audit records). None for an export of named
// subjects, whose decoys would stand out as ids nobody asked for and would
// put rows no one made in a person's own data.
bool Watermarked(const Access& access, const ExportOptions& options) {
  if (options.distinct_id.has_value() || options.distinct_ids_json.has_value()) {
    return false;
  }
  if (access.principal.key_id.starts_with(kAccessKeyPrefix)) {
    return true;
  }
  return access.route != kRouteCliNoWatermark && access.route != kRouteApiExportNoWatermark;
}

// The watermark of an export: the project's watermark key and a random
// nonce for this export; none when it carries no decoys.
Result<std::optional<query::ExportWatermark>> WatermarkFor(privacy::KeyStore& keys,
                                                           const Access& access,
                                                           const ExportOptions& options) {
  if (!Watermarked(access, options)) {
    return std::optional<query::ExportWatermark>();
  }
  MP_ASSIGN_OR_RETURN(const privacy::ProjectKey key, keys.GetOrCreate(access.project.id));
  query::ExportWatermark watermark;
  watermark.key = query::DeriveWatermarkKey(key.bytes);
  std::array<uint8_t, 16> nonce{};
  randombytes_buf(nonce.data(), nonce.size());
  watermark.nonce = Id128::FromBytes(nonce);
  return std::optional<query::ExportWatermark>(watermark);
}

}  // namespace

Result<query::ExportSummary> Service::Export(const Project& project, const ExportOptions& options,
                                             const std::function<bool(std::string_view)>& sink) {
  return Export(LocalAccess(project), options, sink);
}

Result<query::ExportSummary> Service::Export(const Access& access, const ExportOptions& options,
                                             const std::function<bool(std::string_view)>& sink) {
  ExportOptions limited = options;
  // An access key's decoys trace a copy to its holder: they cannot be asked
  // away, only the project's owner (its secret, the command line) may.
  if (access.route == kRouteApiExportNoWatermark &&
      !access.principal.key_id.starts_with(kProjectSecretKeyPrefix)) {
    return Status::PermissionDenied(
        "watermark: only the project secret may export without decoys; an access key's "
        "exports always carry them");
  }
  if (!access.principal.properties.empty()) {
    return Status::PermissionDenied(
        "properties: this key is limited to named properties, and an export returns whole "
        "events");
  }
  if (!access.principal.events.empty()) {
    if (options.event_names_json.empty()) {
      std::string json = "[";
      for (const std::string& event : access.principal.events) {
        json += json.size() == 1 ? "" : ",";
        query::AppendJsonString(event, &json);
      }
      limited.event_names_json = json + "]";
    } else {
      MP_ASSIGN_OR_RETURN(const QueryNames asked,
                          NamesOfQuery("{\"event\":" + options.event_names_json + "}"));
      MP_RETURN_IF_ERROR(CheckLimits(access.principal, asked));
    }
  }
  // The day's export quota: refused when used up, else the export is cut
  // at what is left of it, in real rows (decoys come on top of the limit).
  MP_ASSIGN_OR_RETURN(const uint64_t rows_left,
                      key_limiter_->ExportRowsLeft(access.principal.key_id,
                                                   access.principal.limits));
  if (rows_left != UINT64_MAX && (limited.limit == 0 || limited.limit > rows_left)) {
    limited.limit = rows_left;
  }
  // A large export needs a reason, checked before anything streams; so are
  // the anomaly rules that need not the export's size.
  MP_RETURN_IF_ERROR(CheckExportReason(access, limited));
  MP_RETURN_IF_ERROR(JudgeBeforeExport(access, limited));
  std::string parameters = limited.from_date + "\n" + limited.to_date + "\n" +
                           limited.event_names_json + "\n" + std::to_string(limited.limit) + "\n" +
                           limited.distinct_id.value_or("") + "\n" +
                           limited.distinct_ids_json.value_or("");
  audit::AuditEntry start = Stamped(access, ReadEntry(access, "export.start"));
  MP_RETURN_IF_ERROR(audit_->SealAddress(&start));  // once, for both records
  start.params_sha256 = audit::Sha256Hex(parameters);
  start.params = ExportAuditParams(limited, tools_->detectors);
  start.reason = limited.reason;
  MP_ASSIGN_OR_RETURN(limited.watermark, WatermarkFor(*keys_, access, limited));
  if (limited.watermark.has_value()) {
    start.watermark = limited.watermark->nonce.ToHex();
  }
  // Queued now, its fsync overlapping the export's first scan, and durable
  // before the first byte leaves.
  MP_ASSIGN_OR_RETURN(audit::AuditLog::Opening opening, audit_->EnqueueOpening(start));
  Status started = Status::Unavailable("audit log: export.start not yet durable");
  bool waited = false;
  ExportWatcher watcher;
  auto summary = RunExport(access.project, limited, [&](std::string_view chunk) {
    if (!waited) {
      waited = true;
      started = opening.WaitDurable();
    }
    if (!started.ok()) {
      return false;
    }
    watcher.Watch(chunk);
    return sink(chunk);
  });
  if (!waited) {
    started = opening.WaitDurable();
  }
  MP_RETURN_IF_ERROR(started);
  // Decoys are no one: not in the subjects the record names, nor counted.
  if (limited.watermark.has_value()) {
    watcher.subjects.EraseSubjectsIf([&](std::string_view pseudonym) {
      const auto id = Id128::FromHex(pseudonym.substr(kPseudonymPrefix.size()));
      return id.has_value() && query::IsDecoySubject(limited.watermark->key, *id);
    });
  }
  audit::AuditEntry end = Stamped(access, ReadEntry(access, "export"));
  end.client_address.clear();
  end.address = start.address;
  end.policy_version = start.policy_version;
  end.params_sha256 = start.params_sha256;
  if (limited.watermark.has_value() && summary.ok()) {
    end.watermark = start.watermark + ":" + std::to_string(summary->decoy_subjects);
  }
  end.events = Capped(watcher.events);
  end.properties = watcher.subjects.Keys();
  if (summary.ok()) {
    end.rows = summary->rows;
    end.bytes = summary->bytes;
    // The real rows and subjects, as the record counts them: the decoys (a
    // watermark's) count against no quota and in no anomaly rule, as the
    // export's cut at the quota does not count them either (query.h).
    key_limiter_->CountExport(access.principal.key_id, summary->rows,
                              watcher.subjects.subjects());
  } else {
    end.outcome = summary.status().message();
  }
  if (watcher.subjects.subjects() > 0) {
    MP_RETURN_IF_ERROR(audit_->WriteSubjects(watcher.subjects.Finish(), &end));
  }
  // What left, after the bytes did, durable before the response ends (its
  // last chunk goes out when this returns), so that no later failure of the
  // log can take it.
  MP_RETURN_IF_ERROR(audit_->Append(std::move(end)).status());
  if (summary.ok()) {
    ObserveExport(access, summary->rows, watcher.subjects.subjects());
  }
  return summary;
}

namespace {

// Whether `principal` may manage `key`: a server-wide principal any, a
// project's only its project's.
bool Manages(const Principal& principal, const AccessKey& key) {
  return principal.project_id == 0 || key.project_id == principal.project_id;
}

}  // namespace

Result<AccessKeyWithSecret> Service::CreateAccessKey(const Access& access, AccessKeySpec spec) {
  const Principal& principal = access.principal;
  if (principal.project_id != 0) {
    if (spec.project_id == 0) {
      spec.project_id = principal.project_id;
    }
    if (spec.project_id != principal.project_id) {
      return Status::PermissionDenied("project_id: this key may create keys for project " +
                                      std::to_string(principal.project_id) + " only");
    }
  }
  if (spec.project_id != 0 && !projects_->FindById(spec.project_id).has_value()) {
    return Status::NotFound("project_id: no project " + std::to_string(spec.project_id));
  }
  if ((spec.scopes & ~principal.scopes) != 0) {
    return Status::PermissionDenied("scopes: a key cannot grant scopes it lacks (" +
                                    ScopeList(spec.scopes & ~principal.scopes) + ")");
  }
  if (!principal.events.empty() || !principal.properties.empty()) {
    return Status::PermissionDenied("a key limited to events or properties cannot create keys");
  }
  spec.created_by = principal.key_id;
  MP_ASSIGN_OR_RETURN(AccessKeyWithSecret created, access_keys_->Create(spec));
  audit::AuditEntry entry;
  entry.act = "key.create";
  entry.target = created.key.id;
  if (created.key.project_id != 0) {
    entry.projects = {created.key.project_id};
  }
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return created;
}

Result<AccessKeyWithSecret> Service::RotateAccessKey(const Access& access, std::string_view id) {
  const std::optional<AccessKey> key = access_keys_->FindById(id);
  if (!key.has_value() || !Manages(access.principal, *key)) {
    return Status::NotFound("key " + std::string(id) + ": no such key");
  }
  MP_ASSIGN_OR_RETURN(AccessKeyWithSecret rotated, access_keys_->Rotate(id));
  audit::AuditEntry entry;
  entry.act = "key.rotate";
  entry.target = key->id;
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return rotated;
}

Result<AccessKey> Service::ChangeAccessKey(
    const Access& access, std::string_view id, const char* act,
    const std::function<Result<AccessKey>(std::string_view)>& change) {
  const std::optional<AccessKey> key = access_keys_->FindById(id);
  if (!key.has_value() || !Manages(access.principal, *key)) {
    return Status::NotFound("key " + std::string(id) + ": no such key");
  }
  MP_ASSIGN_OR_RETURN(AccessKey changed, change(id));
  audit::AuditEntry entry;
  entry.act = act;
  entry.target = key->id;
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return changed;
}

Result<AccessKey> Service::RevokeAccessKey(const Access& access, std::string_view id) {
  return ChangeAccessKey(access, id, "key.revoke",
                         [this](std::string_view key_id) { return access_keys_->Revoke(key_id); });
}

// An admin lifts an anomaly rule's suspension (anomaly_service.cc).
Result<AccessKey> Service::EnableAccessKey(const Access& access, std::string_view id) {
  return ChangeAccessKey(access, id, "key.enable",
                         [this](std::string_view key_id) { return access_keys_->Enable(key_id); });
}

Result<std::vector<AccessKey>> Service::ListAccessKeys(const Access& access) {
  std::vector<AccessKey> keys;
  for (AccessKey& key : access_keys_->List()) {
    if (Manages(access.principal, key)) {
      keys.push_back(std::move(key));
    }
  }
  audit::AuditEntry entry;
  entry.act = "key.list";
  entry.rows = keys.size();
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return keys;
}

Result<std::vector<audit::AuditEntry>> Service::ReadAudit(const Access& access,
                                                          audit::Filter filter) {
  if (access.principal.project_id != 0) {
    filter.project = access.principal.project_id;
  }
  MP_ASSIGN_OR_RETURN(std::vector<audit::AuditEntry> entries, audit_->Show(filter));
  // An export's watermark would let a reader of the log recognise its decoys.
  // Addresses are shown while their day's key lasts, "expired" after; one
  // that does not open (an edited record) is shown as it is stored.
  for (audit::AuditEntry& shown : entries) {
    shown.watermark.clear();
    (void)address_keys_->RevealIn(&shown);
  }
  audit::AuditEntry entry;
  entry.act = "audit.read";
  entry.rows = entries.size();
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return entries;
}

std::map<uint32_t, uint32_t> Service::KeyVersions() {
  std::map<uint32_t, uint32_t> versions;
  for (const Project& project : projects_->List()) {
    // A damaged key file is reported where the key is used; here it only
    // leaves the project out of the comparison.
    const auto all = keys_->AllVersions(project.id);
    if (all.ok() && !all->empty()) {
      versions[project.id] = all->front().version;
    }
  }
  return versions;
}

void Service::AuditProjectChanges(const std::vector<Project>& before) {
  Access local = LocalAccess(Project{});
  local.route = "reload";
  std::map<uint32_t, uint32_t> versions = KeyVersions();
  for (const Project& project : projects_->List()) {
    const auto old = std::find_if(before.begin(), before.end(), [&project](const Project& known) {
      return known.id == project.id;
    });
    std::vector<std::string_view> acts;
    if (old == before.end()) {
      acts.push_back("project.create");
    } else {
      if (old->secret_sha256_hex != project.secret_sha256_hex) {
        acts.push_back("project.rotate-secret");
      }
      if (old->domains != project.domains) {
        acts.push_back("project.set-domains");
      }
      if (old->min_group_size != project.min_group_size) {
        acts.push_back("project.set-min-group-size");
      }
    }
    // A key starts at version 1; one seen at a higher version than before
    // (or past 1 when it was not seen) was replaced.
    const auto version = versions.find(project.id);
    const auto known = key_versions_.find(project.id);
    if (version != versions.end() &&
        version->second > (known == key_versions_.end() ? 1 : known->second)) {
      acts.push_back("project.rotate-key");
    }
    for (const std::string_view act : acts) {
      audit::AuditEntry entry;
      entry.act = std::string(act);
      entry.target = std::to_string(project.id);
      entry.projects = {project.id};
      // Best effort: a failed log refuses every later read anyway.
      (void)Audit(local, std::move(entry));
    }
  }
  key_versions_ = std::move(versions);
}

void Service::AuditKeyChanges(const std::vector<AccessKey>& before) {
  Access local = LocalAccess(Project{});
  local.route = "reload";
  for (const AccessKey& key : access_keys_->List()) {
    const auto old = std::find_if(before.begin(), before.end(),
                                  [&key](const AccessKey& known) { return known.id == key.id; });
    audit::AuditEntry entry;
    entry.target = key.id;
    if (old == before.end()) {
      entry.act = "key.create";
    } else if (old->revoked_ms == 0 && key.revoked_ms != 0) {
      entry.act = "key.revoke";
    } else if (old->secret_sha256_hex != key.secret_sha256_hex) {
      entry.act = "key.rotate";
    } else if (old->suspended_ms != 0 && key.suspended_ms == 0) {
      entry.act = "key.enable";
    } else {
      continue;
    }
    if (key.project_id != 0) {
      entry.projects = {key.project_id};
    }
    // Best effort: a failed log refuses every later read anyway.
    (void)Audit(local, std::move(entry));
  }
}

}  // namespace minpanel::service
