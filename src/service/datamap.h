// The data map (records of processing; docs/privacy.md, "The data map"):
// what each project takes in, from where, what the policy does to it, how
// long it is kept, who can read it and where it leaves.
//
// What the configuration cannot say — which property keys actually arrive,
// from which route and SDK, how often, since when — the ingest path records
// in a DataCatalogue: per project at most kDataMapKeysPerProjectMax keys and
// kDataMapSourcesPerProjectMax sources, each with first and last seen (the
// server's clock), a volume and the policy's action at the last sighting.
// Only key names are kept, after the PII detectors (a key that holds an
// email is kept as "[email]"), never a value. The catalogue lives in
// <data>/datamap.json (docs/formats/datamap.md), rewritten atomically and
// fsynced at most every kDataMapSaveIntervalMs while it changes and on
// close: a crash loses at most that interval's counts, never the file.
// A key past the limit is not catalogued and is counted instead
// (`keys_not_catalogued`, /metrics minpanel_datamap_keys_not_catalogued_total).
//
// A key that looks personal (a person's name, contact, location, a
// credential or payment detail, by its name or by the detectors on its
// values) logs one warning naming the key and the detector, and counts in
// /metrics (minpanel_datamap_personal_keys_total), the first time the
// catalogue sees it.
//
// It also remembers each property purge (Service::PurgeProperty): the key,
// the event name it was limited to, when and by whom (the audit record's
// key id and sequence number), so that the data map says the key's values
// were purged instead of claiming them stored.
//
// A DataCatalogue is thread-safe: ingest threads observe under one mutex
// (once per batch, not per event), the data map reads a copy.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/core.h"
#include "ingest/ingest.h"
#include "privacy/privacy.h"

namespace minpanel::service {

inline constexpr size_t kDataMapKeysPerProjectMax = 2'000;  // distinct (kind, key) per project
inline constexpr size_t kDataMapSourcesPerProjectMax = 64;  // distinct (route, SDK) per project
inline constexpr size_t kDataMapPurgesPerProjectMax = 1'000;  // distinct (key, event) purged
inline constexpr size_t kDataMapLibraryBytesMax = 64;       // an SDK name as kept
inline constexpr int64_t kDataMapSaveIntervalMs = 5'000;    // catalogue rewrites, at most

// One catalogued item: a property key (kind "event" or "profile"), a
// context field of the events (kind "context": distinct_id, ip, user_agent,
// page_url, referrer, library) or an ingestion source (kind "source": the
// route as `name`, the SDK as `library`). A property purge is kept as an
// item of kind "purge": `name` the key, `library` the event name it was
// limited to (empty: every event and profile), first and last seen the
// first and latest purge, `volume` the purges, `action` the latest's
// "purge:now" or "purge:deadline", `why` its audit key id and `audit_seq`
// its audit record's sequence number.
struct SeenItem {
  uint32_t project_id = 0;
  std::string kind;
  std::string name;
  std::string library;  // sources only
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
  uint64_t volume = 0;  // events or updates that carried it
  std::string action;   // the policy's, at the last sighting ("" for sources)
  std::string why;      // the policy's reason for it
  // Bits of privacy::PiiKind the detectors found in a sampled value (one
  // sampled value per key per batch).
  uint32_t value_detections = 0;
  uint64_t audit_seq = 0;  // purges only
};

// The source a Mixpanel route's records are catalogued under
// ("mixpanel /track", …).
std::string_view MixpanelSource(ingest::MixpanelRoute route);

// Data categories of the data map (docs/privacy.md, "The data map").
std::string_view CategoryOfItem(const SeenItem& item);
// Whether the item looks personal, and the detectors that say so
// ("name:email", "value:phone", …); empty when it does not.
std::vector<std::string> PersonalSignals(const SeenItem& item);

class DataCatalogue {
 public:
  static Result<std::unique_ptr<DataCatalogue>> Open(const std::string& data_folder,
                                                     std::shared_ptr<FileSystem> file_system,
                                                     std::shared_ptr<Clock> clock);

  // Records what a batch carried, before the policy consumes it. `source`
  // names the route ("mixpanel /track", "posthog capture", …). Saves the
  // file when due. Never fails the ingest: a failed save is retried later
  // and counted.
  void ObserveEvents(uint32_t project_id, std::string_view project_name,
                     const privacy::Policy& policy, std::string_view source,
                     const std::vector<RawEvent>& events);
  void ObserveProfiles(uint32_t project_id, std::string_view project_name,
                       const privacy::Policy& policy, std::string_view source,
                       const std::vector<RawProfileUpdate>& updates);

  // Records a property purge of `key` (on the events named `event_name`
  // only, when set) that the audit record `audit_seq` of `key_id` logged;
  // `action` is "purge:now" or "purge:deadline". Saved when due. Past
  // kDataMapPurgesPerProjectMax distinct (key, event) it is counted as a
  // sighting not catalogued instead.
  void RecordPurge(uint32_t project_id, std::string_view key, std::string_view event_name,
                   std::string_view action, std::string_view key_id, uint64_t audit_seq);

  // The project's items but purges, sorted by (kind, name, library).
  std::vector<SeenItem> ItemsOf(uint32_t project_id) const;
  // The project's purges (items of kind "purge"), sorted by (key, event).
  std::vector<SeenItem> PurgesOf(uint32_t project_id) const;
  uint64_t KeysNotCatalogued(uint32_t project_id) const;

  // Writes the file now when anything changed since the last write.
  Status Save();

  // For /metrics, since start.
  std::atomic<uint64_t> personal_keys{0};
  std::atomic<uint64_t> keys_not_catalogued{0};
  std::atomic<uint64_t> save_failures{0};

 private:
  using ItemKey = std::tuple<uint32_t, std::string, std::string, std::string>;
  struct Batch;
  DataCatalogue(std::string path, std::shared_ptr<FileSystem> file_system,
                std::shared_ptr<Clock> clock)
      : path_(std::move(path)), file_system_(std::move(file_system)), clock_(std::move(clock)) {}
  void Merge(uint32_t project_id, std::string_view project_name, Batch& batch);
  void SaveIfDue();
  std::string Serialise() const;  // under mutex_

  std::string path_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  mutable std::mutex mutex_;
  std::map<ItemKey, SeenItem> items_;
  std::map<uint32_t, size_t> keys_per_project_;
  std::map<uint32_t, size_t> sources_per_project_;
  std::map<uint32_t, size_t> purges_per_project_;
  std::map<uint32_t, uint64_t> not_catalogued_;
  bool dirty_ = false;
  int64_t saved_ms_ = 0;
  std::mutex save_mutex_;  // one writer of the file at a time
};

// The data map of one project, as the outputs show it.
struct DataMapReader {
  std::string id;  // "secret" (the project secret) or an access key's id
  std::string name;
  std::string scopes;                   // ScopeList
  bool all_projects = false;            // a server-wide key
  std::vector<std::string> events;      // empty: every event
  std::vector<std::string> properties;  // empty: every property
  int64_t expires_ms = 0;
};

struct DataMapProject {
  uint32_t id = 0;
  std::string name;
  std::string time_zone;
  uint32_t policy_version = 0;  // 0: the built-in default
  std::vector<SeenItem> items;
  std::vector<SeenItem> purges;  // DataCatalogue::PurgesOf
  uint64_t keys_not_catalogued = 0;
  uint32_t retention_days = 0;
  std::vector<std::pair<std::string, uint32_t>> event_retention_days;
  uint32_t profile_expiry_days = 0;  // 0: profiles kept until erased
  std::string consent;  // "ignore", "drop", "anonymous"
  uint32_t audit_retention_days = 0;
  std::vector<DataMapReader> readers;
  std::string audit_checkpoint_sink;  // "" when none
};

struct DataMap {
  int64_t generated_ms = 0;
  std::vector<DataMapProject> projects;
};

// The three outputs (docs/formats/datamap.md): JSON, Markdown and one
// self-contained HTML page (inline style, no script, no external request;
// every text escaped).
std::string DataMapJson(const DataMap& map);
std::string DataMapMarkdown(const DataMap& map);
std::string DataMapHtml(const DataMap& map);

enum class DataMapFormat : uint8_t { kJson, kMarkdown, kHtml };
// "json", "markdown" (or "md"), "html"; InvalidArgument names the field.
Result<DataMapFormat> ParseDataMapFormat(std::string_view text);
std::string RenderDataMap(const DataMap& map, DataMapFormat format);

}  // namespace minpanel::service
