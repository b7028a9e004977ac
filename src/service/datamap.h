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
// And it learns when a key is no longer stored (MarkGone): after a
// retention pass, an erasure or a purge, the service reads which event
// property keys the store's segment indexes and memtable still hold
// (StoredKeys) and the catalogue marks the others gone, with when and why;
// the item stays, as a record of what was collected, until it has been
// gone for longer than the project's retention or kDataMapGoneKeptDaysMin
// days, whichever is longer (ForgetGone). A key seen again is stored again.
//
// A DataCatalogue is thread-safe: ingest threads observe under one mutex
// (once per batch, not per event), the data map reads a copy.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
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
// A key no longer stored stays in the catalogue (a record of what was
// collected) until it has been gone this many days, or the project's
// retention_days when longer (docs/privacy.md, "The data map").
inline constexpr uint32_t kDataMapGoneKeptDaysMin = 30;
// A key seen this recently is never marked gone: its batch may have been
// catalogued (before the policy) and not yet appended to the store when the
// store's indexes were read.
inline constexpr int64_t kDataMapGoneMarginMs = 5'000;
// The days a gone key stays listed, for a project keeping events
// `retention_days` (0: forever).
inline uint32_t DataMapGoneKeptDays(uint32_t retention_days) {
  return retention_days > kDataMapGoneKeptDaysMin ? retention_days : kDataMapGoneKeptDaysMin;
}

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
  // Keys ("event", "context") the store no longer holds: when the
  // catalogue learnt it (0: stored, or not known to be gone) and why:
  // "retention" (a project retention drop removed the last), or "deletion"
  // (an erasure, a purge or a retention rule of one event name).
  int64_t gone_ms = 0;
  std::string gone_why;
};

inline constexpr std::string_view kGoneByRetention = "retention";
inline constexpr std::string_view kGoneByDeletion = "deletion";

// What a project's stored events still carry, read from the store's
// indexes without reading rows (Service::RefreshDataMapStorage): the
// property keys some visible row may hold, and whether any row is left.
// A segment partly hidden by a deletion not yet purged counts all its
// footer's keys: a key is only ever called gone when no file's index holds it.
struct StoredKeys {
  bool any_event = false;
  std::set<std::string, std::less<>> event_keys;
};

// Whether the store still holds what `item` stands for: an event
// property key by its name, a context field (the subject, and what the
// policy derives from the others) while any event is left. Profile keys
// and sources are not tracked (true).
bool ItemStored(const SeenItem& item, const StoredKeys& stored);

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

  // Marks gone the project's event keys and context fields that `stored`
  // does not hold and that were last seen before `seen_before_ms`, with
  // the catalogue's clock and `why` (kGoneByRetention or kGoneByDeletion);
  // clears the mark of those it holds. Returns how many it marked. Saved
  // when due.
  size_t MarkGone(uint32_t project_id, const StoredKeys& stored, int64_t seen_before_ms,
                  std::string_view why);
  // Removes the project's items marked gone before `gone_before_ms`
  // (kDataMapGoneKeptDaysMin), freeing their places under
  // kDataMapKeysPerProjectMax. Returns how many.
  size_t ForgetGone(uint32_t project_id, int64_t gone_before_ms);

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
  std::atomic<uint64_t> keys_gone{0};       // marked no longer stored
  std::atomic<uint64_t> keys_forgotten{0};  // removed after kDataMapGoneKeptDaysMin

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
