// Erasure and access requests (docs/privacy.md, "Erasure and access"): a
// person's distinct ids become their pseudonyms under every key the project
// still holds, widened to every id merged into the same person
// (docs/identity.md), then erased in the store (a deletion record: invisible
// at once, purged later or now) or read back as one JSON document. The audit
// log records a count and a keyed reference, never the pseudonyms. Also the
// purge of one property key from a project's history.
#include <simdjson.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <set>

#include "audit/subjects_rewrite.h"
#include "query/identity.h"
#include "service/backup.h"
#include "service/service.h"

namespace minpanel::service {
namespace {

using SubjectSet = std::set<Id128>;

// The `distinct_ids` array of an erasure or access request.
Result<std::vector<std::string>> ParseIdList(simdjson::dom::element ids, size_t limit,
                                             std::string_view limit_name) {
  simdjson::dom::array array;
  if (ids.get(array)) {
    return Status::InvalidArgument("distinct_ids: expected a JSON array of distinct ids");
  }
  if (array.size() == 0) {
    return Status::InvalidArgument("distinct_ids: name at least one distinct id");
  }
  if (array.size() > limit) {
    return Status::ResourceExhausted("distinct_ids: " + std::to_string(array.size()) +
                                     " ids, over the limit of " + std::to_string(limit) + " (" +
                                     std::string(limit_name) + ")");
  }
  std::vector<std::string> result;
  result.reserve(array.size());
  for (simdjson::dom::element element : array) {
    std::string_view id;
    if (element.get(id) || id.empty()) {
      return Status::InvalidArgument("distinct_ids: every item must be a non-empty string");
    }
    if (id.size() > kSubjectIdBytesMax) {
      return Status::InvalidArgument("distinct_ids: an id is longer than " +
                                     std::to_string(kSubjectIdBytesMax) +
                                     " bytes (kSubjectIdBytesMax)");
    }
    result.emplace_back(id);
  }
  return result;
}

// A keyed reference to a set of subjects: HMAC-SHA-256 of the sorted
// pseudonyms under a fresh random key that only the caller receives. The
// audit log keeps the reference; without the receipt key it links to no one,
// with it (and the ids) the caller can show what the request covered.
std::pair<std::string, std::string> KeyedReference(const SubjectSet& subjects) {
  std::array<uint8_t, crypto_auth_hmacsha256_KEYBYTES> key{};
  randombytes_buf(key.data(), key.size());
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, key.data(), key.size());
  for (const Id128& subject : subjects) {
    const std::string text = FormatPseudonym(subject);
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const uint8_t*>(text.data()),
                                  text.size());
  }
  std::array<uint8_t, crypto_auth_hmacsha256_BYTES> mac{};
  crypto_auth_hmacsha256_final(&state, mac.data());
  auto hex = [](const uint8_t* bytes, size_t size) {
    std::string out(size * 2 + 1, '\0');
    sodium_bin2hex(out.data(), out.size(), bytes, size);
    out.pop_back();
    return out;
  };
  return {hex(mac.data(), mac.size()), hex(key.data(), key.size())};
}

void AppendProfileUpdateJson(const ProfileUpdate& update, std::string* out) {
  *out += "{\"subject\":";
  query::AppendJsonString(FormatPseudonym(update.subject), out);
  *out += ",\"group_key\":";
  query::AppendJsonString(update.group_key, out);
  *out += ",\"time_ms\":" + std::to_string(update.time_ms);
  *out += ",\"key_version\":" + std::to_string(update.key_version);
  // Which policy shaped the update (null: stored before profile updates
  // recorded it; docs/privacy.md, "Access request").
  *out += ",\"policy_version\":" + (update.policy_version == kPolicyVersionUnknown
                                         ? std::string("null")
                                         : std::to_string(update.policy_version));
  *out += ",\"operation\":";
  query::AppendJsonString(ProfileOperationName(update.operation), out);
  *out += ",\"properties\":{";
  for (size_t property_idx = 0; property_idx < update.properties.size(); ++property_idx) {
    *out += property_idx == 0 ? "" : ",";
    query::AppendJsonString(update.properties[property_idx].key, out);
    *out += ":";
    query::AppendJsonValue(update.properties[property_idx].value, out);
  }
  *out += "}}";
}

Status OverAccessBytes() {
  return Status::ResourceExhausted("access request: the answer passes " +
                                   std::to_string(kAccessRequestBytesMax) +
                                   " bytes (kAccessRequestBytesMax); ask for fewer ids");
}

}  // namespace

// Earlier exports' subject files (docs/formats/audit.md, "Rewritten subject
// files"): each one listing an erased pseudonym is rewritten with `erased`
// in its place. Intent first: the `subjects.rewrite` record naming the file
// and its new SHA-256 is durable before the file is replaced, so a crash in
// between leaves a file with its earlier hash and a record saying the
// rewrite that was due (the blast radius reports it; erasing the same ids
// again finishes it). One erasure rewrites at a time: two at once could
// each rewrite the same file from its old text and undo the other's.
Result<uint64_t> EraseFromSubjectFiles(const std::string& audit_folder, FileSystem& file_system,
                                       const std::vector<Id128>& subjects,
                                       const std::string& reference,
                                       const std::function<Status(audit::AuditEntry)>& audit) {
  static std::mutex rewriting;
  const std::lock_guard lock(rewriting);
  std::set<std::string> pseudonyms;
  for (const Id128& subject : subjects) {
    pseudonyms.insert(FormatPseudonym(subject));
  }
  std::vector<std::string> skipped;
  MP_ASSIGN_OR_RETURN(const std::vector<audit::SubjectsRewrite> rewrites,
                      audit::PlanSubjectsRewrites(audit_folder, file_system, pseudonyms, &skipped));
  for (const audit::SubjectsRewrite& rewrite : rewrites) {
    audit::AuditEntry record;
    record.act = std::string(audit::kSubjectsRewriteAct);
    record.subjects = rewrite.erased;
    record.subjects_file = rewrite.file;
    record.subjects_sha256 = rewrite.sha256;
    record.params_sha256 = reference;
    MP_RETURN_IF_ERROR(audit(std::move(record)));
    MP_RETURN_IF_ERROR(audit::ApplySubjectsRewrite(audit_folder, file_system, rewrite));
  }
  return static_cast<uint64_t>(rewrites.size());
}

Result<SubjectSelection> ParseSubjectSelection(std::string_view json, size_t ids_max,
                                               std::string_view ids_max_name) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(json.data(), json.size()).get(root)) {
    return Status::InvalidArgument("body: expected a JSON object with \"distinct_ids\"");
  }
  SubjectSelection selection;
  simdjson::dom::element ids;
  if (root["distinct_ids"].get(ids)) {
    return Status::InvalidArgument("distinct_ids: required, a JSON array of distinct ids");
  }
  MP_ASSIGN_OR_RETURN(selection.distinct_ids, ParseIdList(ids, ids_max, ids_max_name));
  simdjson::dom::element linked;
  if (!root["linked"].get(linked) && linked.get(selection.linked)) {
    return Status::InvalidArgument("linked: expected true or false");
  }
  simdjson::dom::element purge;
  if (!root["purge"].get(purge)) {
    std::string_view when;
    if (purge.get(when) || (when != "now" && when != "deadline")) {
      return Status::InvalidArgument("purge: expected \"now\" or \"deadline\"");
    }
    selection.purge_now = when == "now";
  }
  return selection;
}

Result<std::vector<Id128>> Service::SubjectsOf(const Project& project,
                                               const SubjectSelection& selection,
                                               uint64_t* linked_added) {
  SubjectSet subjects;
  MP_ASSIGN_OR_RETURN(const std::vector<privacy::ProjectKey> keys, keys_->AllVersions(project.id));
  for (const privacy::ProjectKey& key : keys) {
    const privacy::Policy policy(key);
    for (const std::string& distinct_id : selection.distinct_ids) {
      subjects.insert(policy.Pseudonym(distinct_id));
    }
  }
  *linked_added = 0;
  if (selection.linked && !subjects.empty()) {
    MP_ASSIGN_OR_RETURN(const store::Engine::SegmentSnapshot snapshot,
                        engine_->Snapshot(project.id));
    MP_ASSIGN_OR_RETURN(const std::shared_ptr<const query::IdentityMap> identity,
                        query::ResolveIdentities(snapshot));
    SubjectSet persons;
    for (const Id128& subject : subjects) {
      if (const Id128* person = identity->Find(subject)) {
        persons.insert(*person);
      }
    }
    for (const auto& [id, person] : identity->sorted()) {
      if (persons.contains(person) && subjects.insert(id).second) {
        ++*linked_added;
      }
    }
  }
  return std::vector<Id128>(subjects.begin(), subjects.end());
}

Result<ErasureOutcome> Service::Erase(const Access& access, const SubjectSelection& selection) {
  const Project& project = access.project;
  ErasureOutcome outcome;
  outcome.distinct_ids = selection.distinct_ids.size();
  MP_ASSIGN_OR_RETURN(std::vector<Id128> subjects,
                      SubjectsOf(project, selection, &outcome.linked_subjects));
  outcome.subjects = subjects.size();
  const auto [reference, receipt_key] =
      KeyedReference(SubjectSet(subjects.begin(), subjects.end()));
  outcome.reference = reference;
  outcome.receipt_key = receipt_key;
  // One deletion record per kDeletionSubjectsMax pseudonyms; each is durable
  // (and in force) before the next is written.
  Status erased = Status::Ok();
  for (size_t first = 0; first < subjects.size() && erased.ok();
       first += store::kDeletionSubjectsMax) {
    const size_t last = std::min(subjects.size(), first + store::kDeletionSubjectsMax);
    erased = engine_->EraseSubjects(
        project.id, std::vector<Id128>(subjects.begin() + static_cast<ptrdiff_t>(first),
                                       subjects.begin() + static_cast<ptrdiff_t>(last)));
  }
  if (erased.ok()) {
    // A stored GDPR retrieval of this project may hold the erased data.
    erased = gdpr_tasks_->RemoveResults(project.id).status();
  }
  if (erased.ok() && selection.purge_now) {
    erased = engine_->PurgeDeleted();
    outcome.purged = erased.ok();
  }
  audit::AuditEntry entry;
  entry.act = "erase";
  entry.subjects = outcome.subjects;
  entry.params_sha256 = outcome.reference;
  entry.target = selection.purge_now ? "purge:now" : "purge:deadline";
  if (!erased.ok()) {
    entry.outcome = erased.message();
  }
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  if (!erased.ok()) {
    return erased;
  }
  MP_RETURN_IF_ERROR(
      EraseFromSubjectFiles(audit_->folder(), *file_system_, subjects, outcome.reference,
                            [&](audit::AuditEntry record) {
                              record.key = std::string(audit::kSubjectsRewriteKey);
                              record.route = std::string(audit::kSubjectsRewriteRoute);
                              record.projects = {project.id};
                              return audit_->Append(std::move(record)).status();
                            })
          .status());
  return outcome;
}

Result<StoredSubject> Service::SubjectInStore(const Project& project,
                                              const std::vector<Id128>& subjects) {
  StoredSubject stored;
  for (const Id128& subject : subjects) {
    store::ScanRequest scan;
    scan.project_id = project.id;
    scan.subject = subject;
    MP_RETURN_IF_ERROR(engine_->Scan(scan, [&stored](const Event& event) {
      if (stored.events == 0 || event.time_ms < stored.first_event_ms) {
        stored.first_event_ms = event.time_ms;
      }
      if (stored.events == 0 || event.time_ms > stored.last_event_ms) {
        stored.last_event_ms = event.time_ms;
      }
      ++stored.events;
      ++stored.events_by_name[event.name];
      return true;
    }));
  }
  const SubjectSet subject_set(subjects.begin(), subjects.end());
  MP_RETURN_IF_ERROR(engine_->ScanProfiles(project.id, [&](const ProfileUpdate& update) {
    stored.profile_updates += subject_set.contains(update.subject) ? 1 : 0;
    return true;
  }));
  return stored;
}

Result<std::string> Service::AccessRequest(const Access& access,
                                           const SubjectSelection& selection) {
  const Project& project = access.project;
  uint64_t linked_added = 0;
  MP_ASSIGN_OR_RETURN(const std::vector<Id128> subjects,
                      SubjectsOf(project, selection, &linked_added));
  const SubjectSet subject_set(subjects.begin(), subjects.end());
  std::string out = "{\"project\":";
  query::AppendJsonString(project.name, &out);
  // The ids asked for are not repeated: a GDPR retrieval's document is
  // kept on disk, where no raw id may go.
  out += ",\"generated_ms\":" + std::to_string(clock_->NowMs()) +
         ",\"distinct_ids\":" + std::to_string(selection.distinct_ids.size()) +
         ",\"linked_subjects\":" + std::to_string(linked_added) + ",\"subjects\":[";
  for (size_t subject_idx = 0; subject_idx < subjects.size(); ++subject_idx) {
    out += subject_idx == 0 ? "" : ",";
    query::AppendJsonString(FormatPseudonym(subjects[subject_idx]), &out);
  }
  MP_ASSIGN_OR_RETURN(const std::vector<PolicyVersion> history, PolicyHistory(project));
  out += "],\"policy\":{\"in_force\":" + std::to_string(GetPolicy(project).version) +
         ",\"versions\":[";
  for (size_t version_idx = 0; version_idx < history.size(); ++version_idx) {
    out += version_idx == 0 ? "" : ",";
    out += "{\"version\":" + std::to_string(history[version_idx].version) +
           ",\"recorded_ms\":" + std::to_string(history[version_idx].recorded_ms) + "}";
  }
  out += "]},\"events\":[";
  uint64_t rows = 0;
  bool too_large = false;
  for (const Id128& subject : subjects) {
    store::ScanRequest scan;
    scan.project_id = project.id;
    scan.subject = subject;
    MP_RETURN_IF_ERROR(engine_->Scan(scan, [&](const Event& event) {
      out += rows == 0 ? "" : ",\n";
      query::AppendEventJsonLine(event, &out);
      out.pop_back();  // its newline
      // Which policy shaped the event (null: stored before events recorded
      // it; docs/privacy.md, "Access request").
      const std::string policy_version = event.policy_version == kPolicyVersionUnknown
                                             ? std::string("null")
                                             : std::to_string(event.policy_version);
      out.insert(out.size() - 1, ",\"key_version\":" + std::to_string(event.key_version) +
                                     ",\"policy_version\":" + policy_version);
      ++rows;
      too_large = out.size() > kAccessRequestBytesMax;
      return !too_large;
    }));
    if (too_large) {
      return OverAccessBytes();
    }
  }
  out += "],\"profile_updates\":[";
  uint64_t updates = 0;
  MP_RETURN_IF_ERROR(engine_->ScanProfiles(project.id, [&](const ProfileUpdate& update) {
    if (!subject_set.contains(update.subject)) {
      return true;
    }
    out += updates == 0 ? "" : ",\n";
    AppendProfileUpdateJson(update, &out);
    ++updates;
    too_large = out.size() > kAccessRequestBytesMax;
    return !too_large;
  }));
  if (too_large) {
    return OverAccessBytes();
  }
  out += "]}\n";
  audit::AuditEntry entry = ReadEntry(access, "access_request");
  entry.subjects = subjects.size();
  entry.rows = rows + updates;
  entry.bytes = out.size();
  entry.params_sha256 = KeyedReference(subject_set).first;
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return out;
}

Result<PropertyPurgeRequest> ParsePropertyPurge(std::string_view json) {
  if (json.size() > kPropertyPurgeBodyBytesMax) {
    return Status::ResourceExhausted("body: " + std::to_string(json.size()) +
                                     " bytes, over kPropertyPurgeBodyBytesMax (" +
                                     std::to_string(kPropertyPurgeBodyBytesMax) + ")");
  }
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(json.data(), json.size()).get(root)) {
    return Status::InvalidArgument("body: expected a JSON object with \"key\"");
  }
  PropertyPurgeRequest request;
  std::string_view key;
  simdjson::dom::element key_element;
  if (root["key"].get(key_element) || key_element.get(key) || key.empty()) {
    return Status::InvalidArgument("key: required, the property key to purge (a non-empty string)");
  }
  if (key.size() > store::kDeletionPropertyKeyBytesMax) {
    return Status::InvalidArgument("key: " + std::to_string(key.size()) +
                                   " bytes, over kDeletionPropertyKeyBytesMax (" +
                                   std::to_string(store::kDeletionPropertyKeyBytesMax) + ")");
  }
  request.key = std::string(key);
  simdjson::dom::element event;
  if (!root["event"].get(event)) {
    std::string_view name;
    if (event.get(name) || name.empty()) {
      return Status::InvalidArgument("event: expected a non-empty event name");
    }
    if (name.size() > store::kDeletionEventNameBytesMax) {
      return Status::InvalidArgument("event: " + std::to_string(name.size()) +
                                     " bytes, over kDeletionEventNameBytesMax (" +
                                     std::to_string(store::kDeletionEventNameBytesMax) + ")");
    }
    request.event_name = std::string(name);
  }
  simdjson::dom::element purge;
  if (!root["purge"].get(purge)) {
    std::string_view when;
    if (purge.get(when) || (when != "now" && when != "deadline")) {
      return Status::InvalidArgument("purge: expected \"now\" or \"deadline\"");
    }
    request.purge_now = when == "now";
  }
  for (const auto field : root) {
    if (field.key != "key" && field.key != "event" && field.key != "purge") {
      return Status::InvalidArgument("body: unknown field \"" + std::string(field.key) +
                                     "\" (expected key, event, purge)");
    }
  }
  return request;
}

Result<PropertyPurgeOutcome> Service::PurgeProperty(const Access& access,
                                                    const PropertyPurgeRequest& request) {
  const Project& project = access.project;
  PropertyPurgeOutcome outcome;
  outcome.key = request.key;
  outcome.event_name = request.event_name;
  Status purged = engine_->PurgeProperty(project.id, request.key, request.event_name);
  if (purged.ok()) {
    // A stored GDPR retrieval of this project may hold the key's values.
    purged = gdpr_tasks_->RemoveResults(project.id).status();
  }
  if (purged.ok() && request.purge_now) {
    purged = engine_->PurgeDeleted();
    outcome.purged = purged.ok();
  }
  // The key's name is not personal data (the data map lists it); no value
  // is recorded.
  audit::AuditEntry entry;
  entry.act = "property.purge";
  entry.properties = {request.key};
  if (!request.event_name.empty()) {
    entry.events = {request.event_name};
  }
  entry.target = request.purge_now ? "purge:now" : "purge:deadline";
  if (!purged.ok()) {
    entry.outcome = purged.message();
  }
  const std::string action = entry.target;
  MP_ASSIGN_OR_RETURN(const uint64_t audit_seq, AuditRecord(access, std::move(entry)));
  if (!purged.ok()) {
    return purged;
  }
  // The data map says the key was purged, when and by whom (this record).
  catalogue_->RecordPurge(project.id, request.key, request.event_name, action,
                          access.principal.key_id, audit_seq);
  return outcome;
}

std::string PropertyPurgeOutcomeJson(const PropertyPurgeOutcome& outcome) {
  std::string out = "{\"key\":";
  query::AppendJsonString(outcome.key, &out);
  out += ",\"event\":";
  if (outcome.event_name.empty()) {
    out += "null";
  } else {
    query::AppendJsonString(outcome.event_name, &out);
  }
  out += std::string(",\"purged\":") + (outcome.purged ? "true" : "false") + "}\n";
  return out;
}

std::string ErasureOutcomeJson(const ErasureOutcome& outcome) {
  return "{\"distinct_ids\":" + std::to_string(outcome.distinct_ids) +
         ",\"subjects\":" + std::to_string(outcome.subjects) +
         ",\"linked_subjects\":" + std::to_string(outcome.linked_subjects) +
         ",\"purged\":" + (outcome.purged ? "true" : "false") + ",\"reference\":\"" +
         outcome.reference + "\",\"receipt_key\":\"" + outcome.receipt_key + "\"}\n";
}

}  // namespace minpanel::service
