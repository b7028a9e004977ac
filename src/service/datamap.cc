// The data map (datamap.h): Service::DataMapOf gathers one project's from
// the configuration, the policy, the access keys and the catalogue; the
// renderers write it as JSON, Markdown and one self-contained HTML page.
#include "service/datamap.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "incident/incident.h"
#include "query/query.h"
#include "service/service.h"
#include "store/segment.h"

namespace minpanel::service {
namespace {

constexpr uint32_t kReadScopes =
    static_cast<uint32_t>(Scope::kQueryAggregate) | static_cast<uint32_t>(Scope::kQuerySubjects) |
    static_cast<uint32_t>(Scope::kExport) | static_cast<uint32_t>(Scope::kAdmin);

std::string_view ConsentName(ConsentMode mode) {
  switch (mode) {
    case ConsentMode::kDrop:
      return "drop";
    case ConsentMode::kAnonymous:
      return "anonymous";
    case ConsentMode::kIgnore:
      break;
  }
  return "ignore";
}

bool IsSourceItem(const SeenItem& item) { return item.kind == "source"; }

// What is stored of a context field under its action.
std::string ContextStoredAs(const SeenItem& item) {
  const std::string_view name = item.name;
  if (name == "distinct_id") {
    return "a keyed pseudonym (psn_...); the id itself is never stored";
  }
  if (item.action == "drop") {
    return "not stored";
  }
  if (name == "ip") {
    return item.action == "keep" ? "as sent ($ip)"
                                 : "country, region and city (mp_country_code, $region, $city); "
                                   "the address is discarded";
  }
  if (name == "user_agent") {
    return item.action == "keep" ? "as sent ($user_agent)"
                                 : "browser, version, OS and device type ($browser, "
                                   "$browser_version, $os, $device_type); the user agent is "
                                   "discarded";
  }
  if (name == "page_url") {
    return item.action == "keep" ? "as sent ($current_url)"
                                 : "scheme, host and path ($current_url); the query and "
                                   "fragment removed, ids masked";
  }
  if (name == "referrer") {
    return item.action == "keep" ? "as sent ($referrer)" : "the host only ($referring_domain)";
  }
  return "as sent (mp_lib)";  // library
}

std::string StoredAs(const SeenItem& item) {
  if (item.kind == "context") {
    return ContextStoredAs(item);
  }
  if (item.action == "drop") {
    return "not stored";
  }
  if (item.action == "pseudonymise") {
    return "a keyed pseudonym (psn_...) of each value";
  }
  if (item.action == "generalise") {
    return "generalised: a URL to its scheme, host and path, a number to its order of magnitude";
  }
  if (item.action == "redact") {
    return "as sent, with what the detectors find replaced by its kind ([email], ...)";
  }
  return "as sent";
}

// The latest purge of the project that took the item's values: one of
// its key on every event and profile, or, for an event property, on the
// events of one name. Null when none.
const SeenItem* LatestPurgeOf(const DataMapProject& project, const SeenItem& item) {
  if (item.kind != "event" && item.kind != "profile") {
    return nullptr;
  }
  const SeenItem* latest = nullptr;
  for (const SeenItem& purge : project.purges) {
    const bool applies = purge.name == item.name && (purge.library.empty() || item.kind == "event");
    if (applies && (latest == nullptr || purge.last_seen_ms > latest->last_seen_ms)) {
      latest = &purge;
    }
  }
  return latest;
}

std::string PurgeWhen(const SeenItem& purge) {
  return "at " + std::to_string(purge.last_seen_ms) + " ms by " +
         (purge.why.empty() ? std::string("?") : purge.why) + " (audit record " +
         std::to_string(purge.audit_seq) + ")";
}

// A key the store no longer holds: why, since when, and until when the
// record keeps it.
std::string GoneText(const DataMapProject& project, const SeenItem& item) {
  const uint32_t kept_days = DataMapGoneKeptDays(project.retention_days);
  const std::string since = "; gone at " + std::to_string(item.gone_ms) +
                            " ms, listed here until " +
                            std::to_string(item.gone_ms + int64_t{kept_days} * 86'400'000) + " ms";
  if (item.gone_why == kGoneByRetention) {
    return "not stored: every event carrying it was past the project's retention (" +
           std::to_string(project.retention_days) + " days)" + since;
  }
  return "not stored: the events that carried it were removed (an erasure, a purge or an event's "
         "retention rule)" + since;
}

// What is stored of the item, its purges considered: a key purged from
// every event (and profile) and not seen since is not stored any more, nor
// is one whose last events the store has dropped.
std::string StoredIn(const DataMapProject& project, const SeenItem& item) {
  const SeenItem* purge = LatestPurgeOf(project, item);
  if (purge == nullptr) {
    return item.gone_ms != 0 && item.action != "drop" ? GoneText(project, item) : StoredAs(item);
  }
  if (!purge->library.empty()) {
    return StoredAs(item) + "; its values on the events named " + purge->library +
           " were purged from history " + PurgeWhen(*purge);
  }
  if (item.last_seen_ms <= purge->last_seen_ms) {
    return "not stored: every value was purged from history " + PurgeWhen(*purge);
  }
  return "purged from history " + PurgeWhen(*purge) + "; values sent since: " + StoredAs(item);
}

void AppendPurged(const DataMapProject& project, const SeenItem& item, std::string* out);

bool HasScope(const DataMapReader& reader, std::string_view scope);

// Whether `reader` may read what the item becomes: a key limited to some
// properties reads only those (no context field, whose stored keys are
// others); the subject needs a scope that may see subjects.
bool Reads(const DataMapReader& reader, const SeenItem& item) {
  if (item.kind == "context") {
    if (!reader.properties.empty()) {
      return false;
    }
    return item.name != "distinct_id" || HasScope(reader, "query:subjects") ||
           HasScope(reader, "export") || HasScope(reader, "admin");
  }
  return reader.properties.empty() || std::find(reader.properties.begin(), reader.properties.end(),
                                                item.name) != reader.properties.end();
}

bool HasScope(const DataMapReader& reader, std::string_view scope) {
  size_t start = 0;
  while (start <= reader.scopes.size()) {
    size_t end = reader.scopes.find(',', start);
    end = end == std::string::npos ? reader.scopes.size() : end;
    if (std::string_view(reader.scopes).substr(start, end - start) == scope) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

struct Recipient {
  std::string what;
  std::string where;
  std::vector<std::string> who;
};

std::vector<Recipient> RecipientsOf(const DataMapProject& project) {
  const auto with_scope = [&](std::string_view scope) {
    std::vector<std::string> ids;
    for (const DataMapReader& reader : project.readers) {
      if (HasScope(reader, scope)) {
        ids.push_back(reader.id);
      }
    }
    return ids;
  };
  std::vector<Recipient> recipients = {
      {"events and profiles as stored, subjects as pseudonyms",
       "the export API (GET /api/2.0/export, minpanel export) and live events (GET "
       "/api/events/live)",
       with_scope("export")},
      {"aggregates: counts, funnels, retention (subjects only with query:subjects)",
       "POST /api/query, the dashboard", with_scope("query:aggregate")},
      {"one subject's events and profile as stored",
       "access requests (POST /api/access-request, Mixpanel's GDPR retrievals)",
       with_scope("admin")},
  };
  if (!project.audit_checkpoint_sink.empty()) {
    recipients.push_back(
        {"audit checkpoints: hashes and counts, no event data", project.audit_checkpoint_sink, {}});
  }
  recipients.push_back(
      {"events forwarded to a third party", "none: minpanel forwards nothing", {}});
  return recipients;
}

void AppendStringArray(const std::vector<std::string>& items, std::string* out) {
  out->push_back('[');
  for (size_t item_idx = 0; item_idx < items.size(); ++item_idx) {
    out->append(item_idx == 0 ? "" : ",");
    query::AppendJsonString(items[item_idx], out);
  }
  out->push_back(']');
}

void AppendField(std::string_view name, std::string_view value, std::string* out) {
  out->append(",\"").append(name).append("\":");
  query::AppendJsonString(value, out);
}

void AppendSeen(const SeenItem& item, std::string* out) {
  out->append(",\"first_seen_ms\":" + std::to_string(item.first_seen_ms) + ",\"last_seen_ms\":" +
              std::to_string(item.last_seen_ms) + ",\"volume\":" + std::to_string(item.volume));
}

void AppendPurged(const DataMapProject& project, const SeenItem& item, std::string* out) {
  const SeenItem* purge = LatestPurgeOf(project, item);
  if (purge == nullptr) {
    out->append(",\"purged\":null");
    return;
  }
  out->append(",\"purged\":{\"at_ms\":" + std::to_string(purge->last_seen_ms) + ",\"by\":");
  query::AppendJsonString(purge->why, out);
  out->append(",\"audit_seq\":" + std::to_string(purge->audit_seq) + ",\"event\":");
  if (purge->library.empty()) {
    out->append("null");
  } else {
    query::AppendJsonString(purge->library, out);
  }
  out->append(",\"purges\":" + std::to_string(purge->volume) + "}");
}

std::vector<std::string> ReaderIdsOf(const DataMapProject& project, const SeenItem& item) {
  std::vector<std::string> ids;
  for (const DataMapReader& reader : project.readers) {
    if (Reads(reader, item)) {
      ids.push_back(reader.id);
    }
  }
  return ids;
}

std::string ProfilesText(const DataMapProject& project) {
  return project.profile_expiry_days == 0
             ? "kept until erased"
             : "expire " + std::to_string(project.profile_expiry_days) + " days after last seen";
}

void AppendProjectJson(const DataMapProject& project, std::string* out) {
  out->append("{\"id\":" + std::to_string(project.id));
  AppendField("name", project.name, out);
  AppendField("time_zone", project.time_zone, out);
  out->append(",\"policy_version\":" + std::to_string(project.policy_version) + ",\"sources\":[");
  bool first = true;
  for (const SeenItem& item : project.items) {
    if (!IsSourceItem(item)) {
      continue;
    }
    out->append(first ? "{" : ",{");
    first = false;
    out->append("\"route\":");
    query::AppendJsonString(item.name, out);
    AppendField("sdk", item.library, out);
    AppendSeen(item, out);
    out->append("}");
  }
  out->append("],\"properties\":[");
  first = true;
  for (const SeenItem& item : project.items) {
    if (IsSourceItem(item)) {
      continue;
    }
    out->append(first ? "{" : ",{");
    first = false;
    out->append("\"kind\":");
    query::AppendJsonString(item.kind, out);
    AppendField("key", item.name, out);
    AppendField("category", CategoryOfItem(item), out);
    const std::vector<std::string> signals = PersonalSignals(item);
    out->append(std::string(",\"personal\":") + (signals.empty() ? "false" : "true"));
    out->append(",\"signals\":");
    AppendStringArray(signals, out);
    AppendField("action", item.action, out);
    AppendField("why", item.why, out);
    AppendField("stored_as", StoredIn(project, item), out);
    out->append(",\"gone_ms\":" + (item.gone_ms == 0 ? std::string("null")
                                                     : std::to_string(item.gone_ms)));
    AppendPurged(project, item, out);
    AppendSeen(item, out);
    out->append(",\"readable_by\":");
    AppendStringArray(ReaderIdsOf(project, item), out);
    out->append("}");
  }
  out->append("],\"uncatalogued_sightings\":" + std::to_string(project.keys_not_catalogued));
  out->append(",\"retention\":{\"events_days\":" + std::to_string(project.retention_days) +
              ",\"event_rules\":[");
  for (size_t rule_idx = 0; rule_idx < project.event_retention_days.size(); ++rule_idx) {
    const auto& [event, days] = project.event_retention_days[rule_idx];
    out->append(rule_idx == 0 ? "{\"event\":" : ",{\"event\":");
    query::AppendJsonString(event, out);
    out->append(",\"days\":" + std::to_string(days) + "}");
  }
  out->append("],\"profiles\":");
  query::AppendJsonString(ProfilesText(project), out);
  AppendField("consent", project.consent, out);
  out->append(",\"audit_days\":" + std::to_string(project.audit_retention_days) +
              "},\"readers\":[");
  for (size_t reader_idx = 0; reader_idx < project.readers.size(); ++reader_idx) {
    const DataMapReader& reader = project.readers[reader_idx];
    out->append(reader_idx == 0 ? "{\"id\":" : ",{\"id\":");
    query::AppendJsonString(reader.id, out);
    AppendField("name", reader.name, out);
    AppendField("scopes", reader.scopes, out);
    out->append(std::string(",\"all_projects\":") + (reader.all_projects ? "true" : "false") +
                ",\"events\":");
    AppendStringArray(reader.events, out);
    out->append(",\"properties\":");
    AppendStringArray(reader.properties, out);
    out->append(",\"expires_ms\":" + std::to_string(reader.expires_ms) + "}");
  }
  out->append("],\"recipients\":[");
  const std::vector<Recipient> recipients = RecipientsOf(project);
  for (size_t recipient_idx = 0; recipient_idx < recipients.size(); ++recipient_idx) {
    out->append(recipient_idx == 0 ? "{\"what\":" : ",{\"what\":");
    query::AppendJsonString(recipients[recipient_idx].what, out);
    AppendField("where", recipients[recipient_idx].where, out);
    out->append(",\"who\":");
    AppendStringArray(recipients[recipient_idx].who, out);
    out->append("}");
  }
  out->append("]}");
}

std::string Join(const std::vector<std::string>& items, std::string_view none) {
  if (items.empty()) {
    return std::string(none);
  }
  std::string joined;
  for (const std::string& item : items) {
    joined += (joined.empty() ? "" : ", ") + item;
  }
  return joined;
}

std::string Days(uint32_t days) { return days == 0 ? "forever" : std::to_string(days) + " days"; }

std::string RetentionText(const DataMapProject& project) {
  std::string text = "events " + Days(project.retention_days);
  for (const auto& [event, days] : project.event_retention_days) {
    text += "; " + event + ": " + Days(days);
  }
  return text + "; profiles " + ProfilesText(project) + "; audit log " +
         Days(project.audit_retention_days) +
         "; consent signals: " + project.consent;
}

// The rows every output shows, as plain text cells; the Markdown and HTML
// writers escape each cell their own way.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

std::string Ms(int64_t ms) { return std::to_string(ms); }

std::vector<Table> TablesOf(const DataMapProject& project) {
  Table sources{{"route", "SDK", "first seen (ms)", "last seen (ms)", "volume"}, {}};
  Table properties{{"kind", "key", "category", "personal", "action", "why", "stored as",
                    "first seen (ms)", "last seen (ms)", "volume", "readable by"},
                   {}};
  for (const SeenItem& item : project.items) {
    if (IsSourceItem(item)) {
      sources.rows.push_back({item.name, item.library.empty() ? "-" : item.library,
                              Ms(item.first_seen_ms), Ms(item.last_seen_ms),
                              std::to_string(item.volume)});
      continue;
    }
    properties.rows.push_back(
        {item.kind, item.name, std::string(CategoryOfItem(item)), Join(PersonalSignals(item), "no"),
         item.action, item.why, StoredIn(project, item), Ms(item.first_seen_ms),
         Ms(item.last_seen_ms),
         std::to_string(item.volume), Join(ReaderIdsOf(project, item), "nobody")});
  }
  Table readers{{"id", "name", "scopes", "projects", "events", "properties", "expires (ms)"}, {}};
  for (const DataMapReader& reader : project.readers) {
    readers.rows.push_back({reader.id, reader.name, reader.scopes,
                            reader.all_projects ? "all" : "this one", Join(reader.events, "all"),
                            Join(reader.properties, "all"),
                            reader.expires_ms == 0 ? "never" : Ms(reader.expires_ms)});
  }
  Table recipients{{"what", "where", "who"}, {}};
  for (const Recipient& recipient : RecipientsOf(project)) {
    recipients.rows.push_back({recipient.what, recipient.where, Join(recipient.who, "-")});
  }
  return {sources, properties, readers, recipients};
}

constexpr std::string_view kTableTitles[] = {"Ingestion sources", "Properties seen",
                                             "Who can read it", "Where it goes"};

// A Markdown table cell: HTML-escaped (Markdown passes entities through),
// and the characters Markdown gives meaning to as numeric entities.
std::string MarkdownCell(std::string_view text) {
  std::string cell;
  // Byte by byte, so that the '#' of an entity HtmlEscape wrote (&#39;) is
  // not escaped again.
  for (const char byte : text) {
    if (std::string_view("|\\`*_[]#").find(byte) != std::string_view::npos) {
      cell += "&#" + std::to_string(static_cast<int>(byte)) + ";";
    } else if (byte == '\n' || byte == '\r') {
      cell.push_back(' ');
    } else {
      cell += incident::HtmlEscape(std::string_view(&byte, 1));
    }
  }
  return cell;
}

std::string ProjectTitle(const DataMapProject& project) {
  return "Project " + project.name + " (id " + std::to_string(project.id) + ", time zone " +
         project.time_zone + ", policy version " + std::to_string(project.policy_version) + ")";
}

}  // namespace

std::string DataMapJson(const DataMap& map) {
  std::string out = "{\"format\":\"minpanel-datamap-report\",\"version\":1,\"generated_ms\":" +
                    std::to_string(map.generated_ms) + ",\"projects\":[";
  for (size_t project_idx = 0; project_idx < map.projects.size(); ++project_idx) {
    out += project_idx == 0 ? "" : ",";
    AppendProjectJson(map.projects[project_idx], &out);
  }
  return out + "]}\n";
}

std::string DataMapMarkdown(const DataMap& map) {
  std::string out = "# Data map (records of processing)\n\nGenerated at " +
                    std::to_string(map.generated_ms) +
                    " ms since the epoch by minpanel from its configuration and the traffic "
                    "it has seen.\n";
  for (const DataMapProject& project : map.projects) {
    out += "\n## " + MarkdownCell(ProjectTitle(project)) +
           "\n\nRetention: " + MarkdownCell(RetentionText(project)) + ".\n";
    if (project.keys_not_catalogued != 0) {
      out += "\nSightings of keys past the catalogue's limit (" +
             std::to_string(kDataMapKeysPerProjectMax) +
             " keys): " + std::to_string(project.keys_not_catalogued) + ".\n";
    }
    const std::vector<Table> tables = TablesOf(project);
    for (size_t table_idx = 0; table_idx < tables.size(); ++table_idx) {
      out += "\n### " + std::string(kTableTitles[table_idx]) + "\n\n|";
      for (const std::string& column : tables[table_idx].header) {
        out += " " + MarkdownCell(column) + " |";
      }
      out += "\n|";
      for (size_t column_idx = 0; column_idx < tables[table_idx].header.size(); ++column_idx) {
        out += " --- |";
      }
      out += "\n";
      for (const std::vector<std::string>& row : tables[table_idx].rows) {
        out += "|";
        for (const std::string& cell : row) {
          out += " " + MarkdownCell(cell) + " |";
        }
        out += "\n";
      }
    }
  }
  return out;
}

std::string DataMapHtml(const DataMap& map) {
  // Inline style only: no script, no external request of any kind.
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>Data map</title><style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
      "table{border-collapse:collapse;margin:0 0 1.5em}th,td{border:1px solid #ccc;"
      "padding:3px 6px;text-align:left;vertical-align:top}th{background:#f2f2f2}"
      "</style></head><body>\n<h1>Data map (records of processing)</h1>\n<p>Generated at " +
      std::to_string(map.generated_ms) +
      " ms since the epoch by minpanel from its configuration and the traffic it has "
      "seen.</p>\n";
  for (const DataMapProject& project : map.projects) {
    out += "<section><h2>" + incident::HtmlEscape(ProjectTitle(project)) +
           "</h2>\n<p>Retention: " + incident::HtmlEscape(RetentionText(project)) + ".</p>\n";
    const std::vector<Table> tables = TablesOf(project);
    for (size_t table_idx = 0; table_idx < tables.size(); ++table_idx) {
      out += "<h3>" + std::string(kTableTitles[table_idx]) + "</h3>\n<table><tr>";
      for (const std::string& column : tables[table_idx].header) {
        out += "<th>" + incident::HtmlEscape(column) + "</th>";
      }
      out += "</tr>\n";
      for (const std::vector<std::string>& row : tables[table_idx].rows) {
        out += "<tr>";
        for (const std::string& cell : row) {
          out += "<td>" + incident::HtmlEscape(cell) + "</td>";
        }
        out += "</tr>\n";
      }
      out += "</table>\n";
    }
    out += "</section>\n";
  }
  return out + "</body></html>\n";
}

Result<DataMapFormat> ParseDataMapFormat(std::string_view text) {
  if (text == "json") {
    return DataMapFormat::kJson;
  }
  if (text == "markdown" || text == "md") {
    return DataMapFormat::kMarkdown;
  }
  if (text == "html") {
    return DataMapFormat::kHtml;
  }
  return Status::InvalidArgument("format: expected json, markdown or html");
}

std::string RenderDataMap(const DataMap& map, DataMapFormat format) {
  switch (format) {
    case DataMapFormat::kMarkdown:
      return DataMapMarkdown(map);
    case DataMapFormat::kHtml:
      return DataMapHtml(map);
    case DataMapFormat::kJson:
      break;
  }
  return DataMapJson(map);
}

namespace {

// What the project's stored events still carry, from the segments' footers
// (a view's hidden rows leave its footer's counts as they were, so a
// segment partly hidden by a deletion not yet purged counts whole; one
// hidden whole, as retention's old days are, counts nothing) and the
// memtable's encoding, which the deletions have already been applied to.
StoredKeys StoredKeysOf(const store::Engine::SegmentSnapshot& snapshot) {
  StoredKeys stored;
  for (const auto& segment : snapshot) {
    if (segment->summary().row_count == 0) {
      continue;
    }
    stored.any_event = true;
    for (const store::PropertyKeyInfo& key : segment->property_keys()) {
      if (key.row_count > 0) {  // 0: a purged key's entry in a view
        stored.event_keys.insert(key.key);
      }
    }
  }
  return stored;
}

}  // namespace

Status Service::RefreshDataMapStorage(const std::set<uint32_t>& retention_dropped,
                                      bool on_read) {
  std::lock_guard lock(datamap_storage_mutex_);
  const std::vector<Project> projects = projects_->List();
  const int64_t now_ms = clock_->NowMs();
  for (const Project& project : projects) {
    const int64_t kept_ms =
        int64_t{DataMapGoneKeptDays(SettingsOf(project).retention_days)} * 86'400'000;
    const size_t forgotten = catalogue_->ForgetGone(project.id, now_ms - kept_ms);
    if (forgotten > 0) {
      spdlog::info("data map: keys of project '{}' gone for longer than {} days, removed from "
                   "the catalogue: {}", project.name, kept_ms / 86'400'000, forgotten);
    }
  }
  const store::Stats stats = engine_->GetStats();
  const std::pair<uint64_t, uint64_t> seen{stats.deletions_logged, stats.purges};
  if (datamap_storage_seen_ == seen && (datamap_storage_looked_ || !on_read)) {
    return Status::Ok();  // nothing can have left the store since the last look
  }
  Status first_error = Status::Ok();
  for (const Project& project : projects) {
    // Before the snapshot: a key catalogued after this may be on its way in.
    const int64_t seen_before_ms = clock_->NowMs() - kDataMapGoneMarginMs;
    const Result<store::Engine::SegmentSnapshot> snapshot = engine_->Snapshot(project.id);
    if (!snapshot.ok()) {
      if (first_error.ok()) {
        first_error = Status(snapshot.status().code(), "data map of project '" + project.name +
                                                           "': " + snapshot.status().message());
      }
      continue;
    }
    const bool by_retention = retention_dropped.contains(project.id);
    const size_t marked =
        catalogue_->MarkGone(project.id, StoredKeysOf(*snapshot), seen_before_ms,
                             by_retention ? kGoneByRetention : kGoneByDeletion);
    if (marked > 0) {
      spdlog::info("data map: keys of project '{}' no longer stored ({}): {}", project.name,
                   by_retention ? "retention" : "a deletion", marked);
    }
  }
  if (first_error.ok()) {
    datamap_storage_seen_ = seen;  // a failed look is tried again at the next call
    datamap_storage_looked_ = true;
  }
  return first_error;
}

Result<DataMapProject> Service::DataMapOf(const Access& access) {
  // A failed look leaves the marks as they were (keys called stored).
  (void)RefreshDataMapStorage({}, /*on_read=*/true);
  const Project& project = access.project;
  DataMapProject map;
  map.id = project.id;
  map.name = project.name;
  map.time_zone = project.time_zone;
  map.policy_version = GetPolicy(project).version;
  map.items = catalogue_->ItemsOf(project.id);
  map.purges = catalogue_->PurgesOf(project.id);
  map.keys_not_catalogued = catalogue_->KeysNotCatalogued(project.id);
  const ProjectSettings settings = SettingsOf(project);
  map.retention_days = settings.retention_days;
  map.event_retention_days = settings.event_retention_days;
  map.profile_expiry_days = settings.profile_expiry_days;
  map.consent = ConsentName(settings.consent);
  map.audit_retention_days = audit_retention_days_;
  map.audit_checkpoint_sink = audit_checkpoint_sink_;
  map.readers.push_back({"secret", "the project secret", ScopeList(kAllScopes), false, {}, {}, 0});
  const int64_t now_ms = clock_->NowMs();
  for (const AccessKey& key : access_keys_->List()) {
    const bool in_force = key.revoked_ms == 0 && (key.expires_ms == 0 || key.expires_ms > now_ms);
    const bool reaches = key.project_id == 0 || key.project_id == project.id;
    if (in_force && reaches && (key.scopes & kReadScopes) != 0) {
      map.readers.push_back({key.id, key.name, ScopeList(key.scopes), key.project_id == 0,
                             key.events, key.properties, key.expires_ms});
    }
  }
  audit::AuditEntry entry;
  entry.act = "datamap";
  entry.rows = map.items.size();
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return map;
}

}  // namespace minpanel::service
