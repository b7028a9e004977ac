// The dashboard's reads that no other route gives (docs/formats/dashboard-api.md):
// the projects a key reaches, the known event names and property keys, the
// newest events as stored with the policy's marks, and the audit chain's
// verification.
#include <algorithm>
#include <map>
#include <queue>
#include <set>

#include "core/time_units.h"
#include "service/service.h"
#include "store/segment.h"

namespace minpanel::service {
namespace {

// How far back the live view looks, widening until it has enough events:
// an hour, a day, a week, 30 days, a year, then everything.
constexpr int64_t kLiveWindowsMs[] = {kHourMs, kDayMs, 7 * kDayMs, 30 * kDayMs, 366 * kDayMs};

bool Allowed(const std::vector<std::string>& list, std::string_view item) {
  return list.empty() || std::find(list.begin(), list.end(), item) != list.end();
}

// Newest first: (time, insert id) descending.
bool Newer(const Event& a, const Event& b) {
  return a.time_ms != b.time_ms ? a.time_ms > b.time_ms : b.insert_id < a.insert_id;
}

void AppendMark(std::string_view field, const privacy::StoredMark& mark, bool* first,
                std::string* out) {
  out->append(*first ? "" : ",");
  *first = false;
  query::AppendJsonString(field, out);
  out->append(":{\"change\":");
  query::AppendJsonString(mark.change, out);
  out->append(",\"why\":");
  query::AppendJsonString(mark.why, out);
  out->append("}");
}

// One stored event with its marks; only the properties `principal` may read.
void AppendLiveEvent(const Event& event, const privacy::Policy& policy, const Principal& principal,
                     std::string* out) {
  out->append("{\"event\":");
  query::AppendJsonString(event.name, out);
  out->append(",\"time_ms\":" + std::to_string(event.time_ms) + ",\"distinct_id\":");
  query::AppendJsonString(FormatPseudonym(event.subject), out);
  out->append(",\"properties\":{");
  bool first = true;
  for (const Property& property : event.properties) {
    if (!Allowed(principal.properties, property.key)) {
      continue;
    }
    out->append(first ? "" : ",");
    first = false;
    query::AppendJsonString(property.key, out);
    out->append(":");
    query::AppendJsonValue(property.value, out);
  }
  out->append("},\"marks\":{");
  first = true;
  AppendMark("distinct_id", {"pseudonymised", "always (keyed with the project's key)"}, &first,
             out);
  if (const std::string kinds = privacy::Policy::RedactionMarks(event.name); !kinds.empty()) {
    AppendMark("event", {"redacted", "detectors: " + kinds}, &first, out);
  }
  for (const Property& property : event.properties) {
    if (!Allowed(principal.properties, property.key)) {
      continue;
    }
    if (auto mark = policy.MarkStored(property.key, property.value)) {
      AppendMark("properties." + property.key, *mark, &first, out);
    }
  }
  out->append("}}");
}

}  // namespace

std::vector<Project> Service::ProjectsFor(const Access& access) const {
  std::vector<Project> projects;
  for (Project& project : projects_->List()) {
    if (access.principal.project_id == 0 || project.id == access.principal.project_id) {
      projects.push_back(std::move(project));
    }
  }
  return projects;
}

Result<std::string> Service::EventNames(const Access& access) {
  MP_ASSIGN_OR_RETURN(const store::Engine::SegmentSnapshot snapshot,
                      engine_->Snapshot(access.project.id));
  std::map<std::string, uint64_t> events;
  std::map<std::string, uint64_t> properties;
  for (const auto& segment : snapshot) {
    for (const store::EventNameInfo& name : segment->event_names()) {
      if (Allowed(access.principal.events, name.name)) {
        events[name.name] += name.row_count;
      }
    }
    for (const store::PropertyKeyInfo& key : segment->property_keys()) {
      // A key no row holds (a purged key's entry in a segment view) is not listed.
      if (key.row_count > 0 && Allowed(access.principal.properties, key.key)) {
        properties[key.key] += key.row_count;
      }
    }
  }
  std::string json = "{\"events\":[";
  size_t listed = 0;
  for (const auto& [name, count] : events) {
    if (listed++ == kNamesListedMax) {
      break;
    }
    json += listed == 1 ? "{\"name\":" : ",{\"name\":";
    query::AppendJsonString(name, &json);
    json += ",\"count\":" + std::to_string(count) + "}";
  }
  json += "],\"properties\":[";
  listed = 0;
  for (const auto& [key, count] : properties) {
    if (listed++ == kNamesListedMax) {
      break;
    }
    json += listed == 1 ? "{\"key\":" : ",{\"key\":";
    query::AppendJsonString(key, &json);
    json += ",\"count\":" + std::to_string(count) + "}";
  }
  json += "]}";
  audit::AuditEntry entry = ReadEntry(access, "names");
  entry.rows = events.size() + properties.size();
  entry.bytes = json.size();
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return json;
}

Result<std::string> Service::LiveEvents(const Access& access, size_t limit) {
  if (limit == 0 || limit > kLiveEventsMax) {
    return Status::InvalidArgument("limit: 1 to " + std::to_string(kLiveEventsMax) +
                                   " (kLiveEventsMax)");
  }
  MP_ASSIGN_OR_RETURN(const privacy::Policy policy, PolicyFor(access.project));
  store::ScanRequest request;
  request.project_id = access.project.id;
  request.event_names = access.principal.events;
  // A heap of the newest `limit` events, its oldest on top.
  std::priority_queue<Event, std::vector<Event>, decltype(&Newer)> newest(&Newer);
  const int64_t now_ms = clock_->NowMs();
  for (size_t window_idx = 0; window_idx <= std::size(kLiveWindowsMs); ++window_idx) {
    const bool last = window_idx == std::size(kLiveWindowsMs);
    request.from_ms = last ? INT64_MIN : now_ms - kLiveWindowsMs[window_idx];
    newest = decltype(newest)(&Newer);
    MP_RETURN_IF_ERROR(engine_->Scan(request, [&](const Event& event) {
      if (newest.size() < limit || Newer(event, newest.top())) {
        newest.push(event);
        if (newest.size() > limit) {
          newest.pop();
        }
      }
      return true;
    }));
    if (newest.size() >= limit) {
      break;
    }
  }
  std::vector<Event> events;
  while (!newest.empty()) {
    events.push_back(newest.top());
    newest.pop();
  }
  std::reverse(events.begin(), events.end());
  std::string json = "{\"project\":";
  query::AppendJsonString(access.project.name, &json);
  audit::AuditEntry entry = ReadEntry(access, "events.live");
  json += ",\"policy_version\":" + std::to_string(*entry.policy_version) + ",\"events\":[";
  std::set<std::string> names;
  audit::SubjectKeySets subjects;
  for (size_t event_idx = 0; event_idx < events.size(); ++event_idx) {
    const Event& event = events[event_idx];
    json += event_idx == 0 ? "" : ",";
    AppendLiveEvent(event, policy, access.principal, &json);
    names.insert(event.name);
    subjects.AddSubject(FormatPseudonym(event.subject));
    for (const Property& property : event.properties) {
      if (Allowed(access.principal.properties, property.key)) {
        subjects.AddKey(property.key, property.value.type() != Value::Type::kNull);
      }
    }
    subjects.EndRow();
  }
  json += "]}";
  entry.events.assign(names.begin(), names.end());
  entry.properties = subjects.Keys();
  entry.rows = events.size();
  entry.subjects = subjects.subjects();
  entry.bytes = json.size();
  if (subjects.subjects() > 0) {
    // As an export's: the pseudonyms shown and each one's keys, for the
    // blast radius of a leak.
    MP_RETURN_IF_ERROR(audit_->WriteSubjects(subjects.Finish(), &entry));
  }
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return json;
}

Result<std::string> Service::AuditStatus(const Access& access) {
  MP_ASSIGN_OR_RETURN(const audit::VerifyReport report,
                      audit::VerifyFolder(audit_->folder(), *file_system_));
  std::string json = "{\"ok\":";
  json += report.ok ? "true" : "false";
  json += ",\"records\":" + std::to_string(report.records) +
          ",\"anchors\":" + std::to_string(report.anchors) +
          ",\"torn_tail_bytes\":" + std::to_string(report.torn_tail_bytes) + ",\"problem\":";
  query::AppendJsonString(report.problem, &json);
  json += ",\"head\":";
  query::AppendJsonString(report.head_hash_hex, &json);
  json += ",\"checked_ms\":" + std::to_string(clock_->NowMs()) + "}";
  audit::AuditEntry entry;
  entry.act = "audit.verify";
  entry.outcome = report.ok ? "ok" : report.problem;
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return json;
}

}  // namespace minpanel::service
