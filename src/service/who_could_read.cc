// Who could read one person's data (docs/incident.md, "minpanel incident
// who-could-read"): the credentials that reach the person's events, the
// exports and live-view reads whose audit subject files list the person
// (incident::ComputeWhoCouldRead walks the log), and what the store holds
// of the person (counts and times only). One answer for both faces: the
// server's POST /api/incident/who-could-read and the command line, which
// asks the store itself when no server holds the data folder and goes
// without it when one does.
#include <simdjson.h>

#include "incident/incident.h"
#include "privacy/keys.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

incident::KeyReach ReachOf(const AccessKey& key) {
  incident::KeyReach reach;
  reach.key = key.id;
  reach.name = key.name;
  reach.project_id = key.project_id;
  reach.can_export = (key.scopes & static_cast<uint32_t>(Scope::kExport)) != 0;
  reach.can_query_subjects = (key.scopes & static_cast<uint32_t>(Scope::kQuerySubjects)) != 0;
  reach.can_query_aggregate = (key.scopes & static_cast<uint32_t>(Scope::kQueryAggregate)) != 0;
  reach.events = key.events;
  reach.properties = key.properties;
  reach.valid_from_ms = key.created_ms;
  reach.valid_to_ms = key.revoked_ms;
  if (key.expires_ms != 0 && (reach.valid_to_ms == 0 || key.expires_ms < reach.valid_to_ms)) {
    reach.valid_to_ms = key.expires_ms;
  }
  return reach;
}

// The project secret (every scope since the project was made) and every
// access key, server-wide ones included: ComputeWhoCouldRead keeps those
// that reach the project in the window.
std::vector<incident::KeyReach> ReachesOf(const Project& project,
                                          const std::vector<AccessKey>& keys) {
  std::vector<incident::KeyReach> reaches;
  incident::KeyReach secret;
  secret.key = std::string(kProjectSecretKeyPrefix) + std::to_string(project.id);
  secret.name = "the project secret";
  secret.project_id = project.id;
  secret.can_export = secret.can_query_subjects = secret.can_query_aggregate = true;
  secret.valid_from_ms = project.created_ms;
  reaches.push_back(secret);
  for (const AccessKey& key : keys) {
    reaches.push_back(ReachOf(key));
  }
  return reaches;
}

// The pseudonyms the id has had in the project: one per version of its key
// (docs/formats/keys.md), as ingest computed them. A "psn_" id is one.
Result<std::vector<std::string>> PseudonymsOf(privacy::KeyStore& keys, uint32_t project_id,
                                              std::string_view distinct_id) {
  if (distinct_id.starts_with(kPseudonymPrefix)) {
    return std::vector<std::string>{std::string(distinct_id)};
  }
  std::vector<std::string> pseudonyms;
  MP_ASSIGN_OR_RETURN(const std::vector<privacy::ProjectKey> versions,
                      keys.AllVersions(project_id));
  for (const privacy::ProjectKey& version : versions) {
    pseudonyms.push_back(FormatPseudonym(privacy::Policy(version).Pseudonym(distinct_id)));
  }
  return pseudonyms;
}

std::vector<Id128> IdsOf(const std::vector<std::string>& pseudonyms) {
  std::vector<Id128> ids;
  for (const std::string& pseudonym : pseudonyms) {
    const std::string_view text = pseudonym;
    if (!text.starts_with(kPseudonymPrefix)) {
      continue;
    }
    if (auto id = Id128::FromHex(text.substr(kPseudonymPrefix.size()))) {
      ids.push_back(*id);
    }
  }
  return ids;
}

incident::SubjectInStore StoreOf(const StoredSubject& stored) {
  incident::SubjectInStore store;
  store.consulted = true;
  store.events = stored.events;
  store.first_event_ms = stored.first_event_ms;
  store.last_event_ms = stored.last_event_ms;
  store.events_by_name = stored.events_by_name;
  store.profile_updates = stored.profile_updates;
  return store;
}

// The audit part (keys and exports), then what the store holds.
Result<WhoCouldReadAnswer> Answer(const std::string& audit_folder, const Project& project,
                                  const std::vector<std::string>& pseudonyms,
                                  const std::vector<AccessKey>& keys,
                                  const WhoCouldReadRequest& request,
                                  incident::SubjectInStore store, FileSystem& file_system,
                                  int64_t now_ms) {
  if (request.from_ms >= request.to_ms) {
    return Status::InvalidArgument("from: must be before to");
  }
  MP_ASSIGN_OR_RETURN(incident::WhoCouldRead who,
                      incident::ComputeWhoCouldRead(
                          audit_folder, project.id, pseudonyms, ReachesOf(project, keys),
                          request.from_ms, request.to_ms, request.allow_broken, file_system));
  incident::AddStoreToWhoCouldRead(std::move(store), &who);
  WhoCouldReadAnswer answer;
  answer.json = incident::WhoCouldReadJson(who, now_ms / 1000);
  answer.keys = who.candidates.size();
  answer.no_pseudonym_key = pseudonyms.empty();
  for (const incident::Warning& warning : who.warnings) {
    answer.warnings.push_back(warning.message);
  }
  return answer;
}

Result<int64_t> TimeField(simdjson::dom::object root, const char* field, int64_t absent) {
  simdjson::dom::element element;
  if (root[field].get(element)) {
    return absent;
  }
  std::string_view text;
  if (element.get(text)) {
    return Status::InvalidArgument(std::string(field) +
                                   ": expected an ISO-8601 time with a zone, as a string");
  }
  MP_ASSIGN_OR_RETURN(const int64_t seconds, incident::ParseIsoTime(text, field));
  return seconds * 1000;
}

}  // namespace

Result<WhoCouldReadRequest> ParseWhoCouldReadRequest(std::string_view json) {
  if (json.size() > kWhoCouldReadBodyBytesMax) {
    return Status::ResourceExhausted("body: " + std::to_string(json.size()) +
                                     " bytes, over kWhoCouldReadBodyBytesMax (" +
                                     std::to_string(kWhoCouldReadBodyBytesMax) + ")");
  }
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(json.data(), json.size()).get(root)) {
    return Status::InvalidArgument("body: expected a JSON object with \"distinct_id\"");
  }
  for (const auto field : root) {
    if (field.key != "distinct_id" && field.key != "from" && field.key != "to" &&
        field.key != "allow_broken") {
      return Status::InvalidArgument("body: unknown field '" + std::string(field.key) +
                                     "' (distinct_id, from, to, allow_broken)");
    }
  }
  WhoCouldReadRequest request;
  std::string_view id;
  if (root["distinct_id"].get(id) || id.empty()) {
    return Status::InvalidArgument("distinct_id: required, a non-empty string");
  }
  if (id.size() > kSubjectIdBytesMax) {
    return Status::ResourceExhausted("distinct_id: longer than " +
                                     std::to_string(kSubjectIdBytesMax) +
                                     " bytes (kSubjectIdBytesMax)");
  }
  request.distinct_id = std::string(id);
  MP_ASSIGN_OR_RETURN(request.from_ms, TimeField(root, "from", 0));
  MP_ASSIGN_OR_RETURN(request.to_ms, TimeField(root, "to", INT64_MAX));
  simdjson::dom::element allow_broken;
  if (!root["allow_broken"].get(allow_broken) && allow_broken.get(request.allow_broken)) {
    return Status::InvalidArgument("allow_broken: expected true or false");
  }
  if (request.from_ms >= request.to_ms) {
    return Status::InvalidArgument("from: must be before to");
  }
  return request;
}

Result<WhoCouldReadAnswer> WhoCouldReadWithoutStore(const Config& config, const Project& project,
                                                    const WhoCouldReadRequest& request,
                                                    std::string_view not_consulted,
                                                    std::shared_ptr<FileSystem> file_system,
                                                    std::shared_ptr<Clock> clock) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<privacy::KeyStore> keys,
                      privacy::KeyStore::Open(KeyFolder(config), file_system));
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> pseudonyms,
                      PseudonymsOf(*keys, project.id, request.distinct_id));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<AccessKeyStore> access_keys,
                      OpenAccessKeys(config, file_system, clock));
  incident::SubjectInStore store;
  store.not_consulted = std::string(not_consulted);
  return Answer(config.data_folder + "/audit", project, pseudonyms, access_keys->List(), request,
                std::move(store), *file_system, clock->NowMs());
}

Result<WhoCouldReadAnswer> Service::WhoCouldRead(const Access& access,
                                                 const WhoCouldReadRequest& request) {
  const Project& project = access.project;
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> pseudonyms,
                      PseudonymsOf(*keys_, project.id, request.distinct_id));
  MP_ASSIGN_OR_RETURN(const StoredSubject stored, SubjectInStore(project, IdsOf(pseudonyms)));
  MP_ASSIGN_OR_RETURN(WhoCouldReadAnswer answer,
                      Answer(audit_->folder(), project, pseudonyms, access_keys_->List(), request,
                             StoreOf(stored), *file_system_, clock_->NowMs()));
  audit::AuditEntry entry;
  entry.act = "incident.who_could_read";
  entry.rows = answer.keys;
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return answer;
}

}  // namespace minpanel::service
