// The service module: the one place that wires the pipeline
//   ingest adapter → RawEvent → privacy::Policy → Event → store
// and the reads over it. The HTTP server and the command line are thin faces
// over a Service; neither wires modules itself.
//
// A Service is thread-safe. Ingest calls block until the events are durable
// (fsync), so callers run them off any event loop.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit.h"
#include "core/core.h"
#include "ingest/ingest.h"
#include "ingest/segment_events.h"
#include "privacy/policy_store.h"
#include "privacy/privacy.h"
#include "privacy/visitor_ids.h"
#include "query/query.h"
#include "service/access_keys.h"
#include "service/anomaly.h"
#include "service/config.h"
#include "service/datamap.h"
#include "service/gdpr_tasks.h"
#include "service/project_quotas.h"
#include "service/project_settings.h"
#include "service/projects.h"
#include "service/reports.h"

namespace minpanel::service {

// Caller-supplied credentials as a request carried them.
struct Credentials {
  bool has_basic = false;
  std::string basic_user;
  std::string basic_password;
  std::string api_key;     // legacy ?api_key=
  std::string project_id;  // ?project_id= (service accounts)
  // The client's address (the socket peer, or what a trusted proxy said);
  // Authorize puts it in the Access. Empty on the command line.
  std::string client_address;
};

// A project secret's key id is this and the project's id ("secret:1").
inline constexpr std::string_view kProjectSecretKeyPrefix = "secret:";

// Who is asking and what they may do (access_keys.h): a project token, a
// project secret, an access key, or the local command line.
struct Principal {
  std::string key_id;  // as the audit log names it: "mpk_…", "secret:1", "token:1", "local"
  uint32_t scopes = 0;
  uint32_t project_id = 0;  // 0: every project
  std::vector<std::string> events;      // empty: every event
  std::vector<std::string> properties;  // empty: every property
  uint32_t min_group_size = 0;          // the key's k (AccessKey::min_group_size)
  KeyLimits limits;                     // an access key's, its defaults filled in
};

// An authorised request (Service::Authorize): the project it acts on (id 0
// when the route acts on none) and who acts, for the audit log.
struct Access {
  Project project;
  Principal principal;
  std::string route;  // the route label, or "cli"
  // The client's address (the socket peer, or what a trusted proxy said);
  // empty on the command line. Never stored in clear: the audit records
  // keep it sealed under a day key (audit::AddressKeys), the anomaly rules
  // a keyed hash of it (anomaly.h).
  std::string client_address;
};

// The principal of the command line, which holds the data folder itself.
Access LocalAccess(const Project& project);

// How the command line asks a query (minpanel query).
struct LocalQueryOptions {
  // --no-k: every cell raw, not held to the project's minimum group size.
  bool raw_cells = false;
};
// The route of a command-line query asked with --no-k, in its audit records.
inline constexpr std::string_view kRouteCliRawCells = "cli --no-k";
// The route of a command-line export asked with --no-watermark (no decoys),
// in its audit records; LocalAccess with it as its route asks for one.
inline constexpr std::string_view kRouteCliNoWatermark = "cli --no-watermark";
// The route of an export asked over HTTP with watermark=false (no decoys;
// the project secret only), in its audit records; Access with it as its
// route asks for one.
inline constexpr std::string_view kRouteApiExportNoWatermark = "/api/2.0/export watermark=false";

using ingest::RecordError;

// What one ingest request did. A request-level failure is the Status of the
// Result instead.
struct IngestOutcome {
  size_t records_total = 0;
  size_t stored = 0;      // events and profile updates newly stored
  size_t duplicates = 0;  // events dropped as already stored
  std::vector<ingest::RecordError> errors;  // refused records (strict mode only)
};

struct IngestRequest {
  ingest::MixpanelRoute route = ingest::MixpanelRoute::kTrack;
  std::string_view payload;  // the JSON, as ExtractMixpanelPayload returned it
  Credentials credentials;   // needed on /import
  // Strict: store the valid records and report the rest. Otherwise a
  // request with any bad record stores nothing.
  bool strict = false;
  // Mixpanel's ip=1: events without an address of their own take the
  // client's (which the policy then turns into what it allows).
  bool use_client_ip = false;
  std::string client_ip;
  // Sec-GPC: 1 or DNT: 1 on the request: the project's `consent` setting
  // decides (docs/privacy.md, "Consent and signals").
  bool consent_signal = false;
};

// A PostHog capture request (/batch, /e, /i/v0/e, /capture;
// docs/formats/posthog.md).
struct PostHogIngestRequest {
  std::string_view payload;  // the JSON, as ingest::ExtractPostHogPayload returned it
  // Events without `$ip` (and without `$geoip_disable: true`) take it.
  std::string client_ip;
  // Capture V1: the token of `Authorization: Bearer` and the library of
  // `PostHog-Sdk-Info` (ingest::PostHogDecodeOptions). Empty otherwise.
  std::string token;
  std::string library;
  // Sec-GPC: 1 or DNT: 1 on the request: the project's `consent` setting
  // decides (docs/privacy.md, "Consent and signals").
  bool consent_signal = false;
};

// A Segment HTTP tracking API request (/v1/track, /v1/identify, /v1/page,
// /v1/screen, /v1/group, /v1/alias, /v1/batch, /v1/import;
// docs/formats/segment-http.md).
struct SegmentIngestRequest {
  std::string_view payload;  // the JSON body, after any gzip
  // The call a single-message route names; nullopt for /v1/batch and
  // /v1/import.
  std::optional<ingest::SegmentCall> call;
  // The user of `Authorization: Basic` (the write key); empty: none.
  std::string write_key;
  // Sec-GPC: 1 or DNT: 1 on the request: the project's `consent` setting
  // decides (docs/privacy.md, "Consent and signals").
  bool consent_signal = false;
};

// A Plausible events API request (POST /api/event;
// docs/formats/plausible.md).
struct PlausibleIngestRequest {
  std::string_view body;   // the JSON body, after any gzip
  std::string client_ip;   // the socket peer, or the client a trusted proxy named
  std::string user_agent;  // the User-Agent header
  // Sec-GPC: 1 or DNT: 1 on the request: the project's `consent` setting
  // decides (docs/privacy.md, "Consent and signals").
  bool consent_signal = false;
};

// Bounds on one trusted import batch (Service::ImportEvents), the same as
// one /import request's.
inline constexpr size_t kImportRecordsMax = ingest::kImportEventsMax;
inline constexpr size_t kImportRecordBytesMax = ingest::kEventBytesMax;

struct ExportOptions {
  std::string from_date;  // YYYY-MM-DD in the project's time zone, inclusive
  std::string to_date;    // YYYY-MM-DD, inclusive
  std::string event_names_json;  // Mixpanel's event=["a","b"]; empty: every event
  std::optional<std::string> distinct_id;  // raw id; pseudonymised here
  // distinct_ids=["a","b"]: a JSON array of raw ids (at most
  // query::kExportDistinctIdsMax), each pseudonymised here as distinct_id
  // is; not together with distinct_id. An empty array exports nothing.
  std::optional<std::string> distinct_ids_json;
  uint64_t limit = 0;
  // Set by Service::Export for an export of a time range by an access key,
  // the project secret (unless its route is kRouteApiExportNoWatermark) or
  // the command line (unless its route is kRouteCliNoWatermark): its decoys
  // (query/watermark.h). Ignored with distinct_id or distinct_ids.
  std::optional<query::ExportWatermark> watermark;
  // Why: needed when the export may return more rows than
  // Limits::export_reason_rows (docs/security.md, "Export reasons"); kept
  // in the export's audit record only.
  std::string reason;
};

// An export's reason: at most this many bytes of UTF-8 text, no control
// characters (export_reason.cc).
inline constexpr size_t kExportReasonBytesMax = 256;
// InvalidArgument naming `reason` when the text breaks one of those rules.
Status CheckExportReasonText(std::string_view reason);

// The dashboard API's limits (docs/formats/dashboard-api.md).
inline constexpr size_t kLiveEventsMax = 200;        // GET /api/events/live?limit=
inline constexpr size_t kLiveEventsDefault = 50;
inline constexpr size_t kNamesListedMax = 10000;     // names and keys, each, GET /api/names

// How often one rule of a project's policy matched a property.
struct RuleMatches {
  std::string project;
  int64_t line = 0;
  std::string pattern;
  std::string action;
  uint64_t matches = 0;
};

// The largest policy text PutPolicy takes (the policy file's own limit).
inline constexpr size_t kPolicyTextBytesMax = privacy::kPolicyBytesMax;

// The policy in force for a project, for the admin API.
struct PolicyInForce {
  uint32_t version = 0;  // 0: the built-in default
  std::string text;      // the TOML; "" for the default, which exists only in code
  bool is_default = true;
};

// One recorded version of a project's policy.
struct PolicyVersion {
  uint32_t version = 0;
  int64_t recorded_ms = 0;  // 0: recorded before the history kept times
  uint64_t bytes = 0;
};

// What putting a policy did (Service::PutPolicy).
struct PolicyUpdate {
  uint32_t version = 0;      // now in force
  bool new_version = false;  // false: the same text as the latest version
  // For the operator: the version's effect, and what this policy lets
  // through in clear that the default would not.
  std::vector<std::string> notes;
};

// Counters for /metrics; monotonic since start.
struct ServiceMetrics {
  uint64_t events_accepted = 0;
  uint64_t events_rejected = 0;
  uint64_t events_duplicate = 0;
  uint64_t profile_updates_accepted = 0;
  uint64_t properties_dropped = 0;
  uint64_t properties_pseudonymised = 0;
  uint64_t values_redacted = 0;
  uint64_t context_fields_discarded = 0;
  uint64_t context_fields_generalised = 0;
  // PII found by each detector, by its name ("email", "phone", …).
  std::vector<std::pair<std::string, uint64_t>> detections;
  std::vector<RuleMatches> rule_matches;
  uint64_t export_rows = 0;
  uint64_t queries = 0;  // answered
  // Identity links per project name (docs/identity.md, "Counters"): the
  // identity map the project's last query or export resolved.
  std::vector<std::pair<std::string, query::IdentityStats>> identity;
  // Retention (retention.cc): drops logged, and drops that failed.
  uint64_t retention_drops = 0;
  uint64_t retention_failures = 0;
  // Profile expiry (retention.cc): subjects whose profiles expired.
  uint64_t profiles_expired = 0;
  // Consent signals (Sec-GPC: 1, DNT: 1): events dropped, or stored
  // without a subject, by the project's `consent` setting.
  uint64_t consent_dropped = 0;
  uint64_t consent_anonymous = 0;
  // The data map's catalogue (datamap.h): keys that looked personal when
  // first seen, sightings past its limits, failed writes of its file.
  uint64_t datamap_personal_keys = 0;
  uint64_t datamap_uncatalogued_sightings = 0;
  uint64_t datamap_save_failures = 0;
  // Anomaly alerts per rule (kAnomalyRuleNames), keys suspended, and
  // failed writes of the keys' export history.
  std::vector<std::pair<std::string, uint64_t>> anomaly_alerts;
  uint64_t keys_suspended = 0;
  uint64_t key_usage_failures = 0;
};

// Erasure and access requests (erasure.cc; docs/privacy.md, "Erasure and
// access"). The ids of one request, raw as the client sent them (never
// stored or logged); each becomes its pseudonym under every key the project
// still holds.
inline constexpr size_t kErasureDistinctIdsMax = 100'000;  // one erasure request
inline constexpr size_t kAccessDistinctIdsMax = 100;       // one access request
inline constexpr size_t kGdprDistinctIdsMax = 2000;        // one GDPR API task, as Mixpanel's
inline constexpr size_t kSubjectIdBytesMax = 4096;         // one id, longer than any route stores
inline constexpr size_t kAccessRequestBytesMax = 256ULL << 20;  // one access request's answer
struct SubjectSelection {
  std::vector<std::string> distinct_ids;
  // Also every id merged into the same person (docs/identity.md).
  bool linked = true;
  // Erasure: the physical stage before the answer ("purge": "now"), not at
  // the store's purge deadline.
  bool purge_now = false;
};
// The JSON body {"distinct_ids": [...], "linked": bool, "purge": "now" |
// "deadline"}; InvalidArgument names the field, ResourceExhausted the limit.
Result<SubjectSelection> ParseSubjectSelection(std::string_view json, size_t ids_max,
                                               std::string_view ids_max_name);
struct ErasureOutcome {
  uint64_t distinct_ids = 0;
  uint64_t subjects = 0;         // pseudonyms erased (every key version, linked ids included)
  uint64_t linked_subjects = 0;  // of those, found through identity links
  bool purged = false;           // physically gone from every file already
  std::string reference;         // HMAC of the pseudonyms, as the audit log records it
  std::string receipt_key;       // that HMAC's key (hex), given only to the caller
};
std::string ErasureOutcomeJson(const ErasureOutcome& outcome);

// What the store holds of some subjects of a project (Service::SubjectInStore):
// counts and times only, never the events' values.
struct StoredSubject {
  uint64_t events = 0;
  int64_t first_event_ms = 0;  // event times; 0 when there are no events
  int64_t last_event_ms = 0;
  std::map<std::string, uint64_t> events_by_name;
  uint64_t profile_updates = 0;
};

// Who could read one person's data (docs/incident.md, "minpanel incident
// who-could-read"; who_could_read.cc): the credentials whose project,
// scopes and validity reach the person's events in a window, the exports
// and live-view reads whose audit subject files list the person, and what
// the store holds of it. The command line's flags, or the body of POST
// /api/incident/who-could-read: {"distinct_id": "..." (or a "psn_"
// pseudonym, taken as is), "from", "to" (ISO-8601 with a zone; absent: the
// whole log), "allow_broken": bool}. The id is never stored or logged.
inline constexpr size_t kWhoCouldReadBodyBytesMax = 16 << 10;  // one request's body
struct WhoCouldReadRequest {
  std::string distinct_id;
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;
  // Report on the records before a broken chain (with a warning) instead
  // of refusing.
  bool allow_broken = false;
};
// InvalidArgument names the field at fault; ResourceExhausted the limit
// (kWhoCouldReadBodyBytesMax, kSubjectIdBytesMax).
Result<WhoCouldReadRequest> ParseWhoCouldReadRequest(std::string_view json);
struct WhoCouldReadAnswer {
  std::string json;                   // docs/formats/incident.md, "who-could-read"
  std::vector<std::string> warnings;  // as in the JSON's `warnings`
  uint64_t keys = 0;                  // credentials listed
  bool no_pseudonym_key = false;      // the project never stored an event
};
// The answer without the store, from the files a running server keeps
// current (the projects, the key folder, the access keys, the audit log):
// for the command line while a server holds the data folder. The answer's
// `store` says it was not consulted, and why (`not_consulted`). Not
// audited: the caller records the run.
Result<WhoCouldReadAnswer> WhoCouldReadWithoutStore(const Config& config, const Project& project,
                                                    const WhoCouldReadRequest& request,
                                                    std::string_view not_consulted,
                                                    std::shared_ptr<FileSystem> file_system,
                                                    std::shared_ptr<Clock> clock);

// A purge of one property key from a project's history (docs/privacy.md,
// "Purging a property"): the body {"key": "...", "event": "..." (optional:
// that event name's events only), "purge": "now" | "deadline"}.
// InvalidArgument names the field and, for a length, its limit
// (store::kDeletionPropertyKeyBytesMax, store::kDeletionEventNameBytesMax).
inline constexpr size_t kPropertyPurgeBodyBytesMax = 4096;
struct PropertyPurgeRequest {
  std::string key;
  std::string event_name;  // empty: every event, and profiles
  bool purge_now = false;
};
Result<PropertyPurgeRequest> ParsePropertyPurge(std::string_view json);
struct PropertyPurgeOutcome {
  std::string key;
  std::string event_name;
  bool purged = false;  // physically gone from every file already
};
std::string PropertyPurgeOutcomeJson(const PropertyPurgeOutcome& outcome);

// What deleting a project removed (Service::DeleteProject).
struct ProjectDeletion {
  Project project;
  uint64_t keys = 0;              // access keys limited to it
  uint64_t profile_subjects = 0;  // subjects whose profile updates were erased
};
std::string ProjectDeletionJson(const ProjectDeletion& deletion);

class Service {
 public:
  // Opens the data folder (creating it), the key folder and the store.
  static Result<std::unique_ptr<Service>> Open(const Config& config,
                                               std::shared_ptr<FileSystem> file_system,
                                               std::shared_ptr<Clock> clock);
  ~Service();

  // Decodes, applies the policy, stores durably. Errors: InvalidArgument
  // (bad payload or record), ResourceExhausted (over a limit),
  // Unauthenticated (unknown token, missing or wrong secret), Unavailable
  // (storage failed: retry later; nothing was stored).
  Result<IngestOutcome> IngestMixpanel(const IngestRequest& request);

  // The same without waiting for fsync: decodes and applies the policy on
  // the calling thread, then returns; `done` runs once with the outcome,
  // on the store's writer thread (or on the calling thread when the request
  // fails before reaching the store). `done` must be quick. `request` need
  // not outlive the call.
  using IngestCallback = std::function<void(Result<IngestOutcome>)>;
  void IngestMixpanelAsync(const IngestRequest& request, IngestCallback done);

  // PostHog's capture routes: decodes (ingest/posthog_events.h), applies the
  // policy to the events and the person and group updates they carry, and
  // stores them as one batch: all of it or nothing. The project is the one
  // whose token the request carries. Errors and `done` as for
  // IngestMixpanelAsync.
  void IngestPostHogAsync(const PostHogIngestRequest& request, IngestCallback done);

  // Segment's routes: decodes (ingest/segment_events.h), applies the policy
  // to the events and the identify and group traits, and stores them as one
  // batch: all of it or nothing. The project is the one whose token is the
  // request's write key. Errors and `done` as for IngestMixpanelAsync.
  void IngestSegmentAsync(const SegmentIngestRequest& request, IngestCallback done);

  // Plausible's events API: decodes one event (ingest/plausible_events.h),
  // finds the project that lists its site domain, makes its subject the
  // visitor id (privacy/visitor_ids.h: a keyed hash of the day's salt, the
  // domain, the client address and the user agent, taken as the subject
  // without a second pseudonymisation) and applies the policy, which
  // generalises the address and user agent and discards them. Errors as for
  // IngestMixpanelAsync; NotFound names a domain no project lists.
  void IngestPlausibleAsync(const PlausibleIngestRequest& request, IngestCallback done);
  // Destroys the visitor salts past their 48 hours, and the audit records'
  // address keys past audit_address_retention_days; the server calls it
  // every minute.
  Status DestroyExpiredKeys();
  // Appends the incident runs that commands queued for the audit log while
  // this service held it (docs/formats/audit.md, "Queue"); the server calls
  // it every quarter second (a stat of the queue folder when none waits).
  Result<audit::AuditLog::Drained> DrainAuditQueue();

  // For the trusted command line (`minpanel import`), which holds the data
  // folder itself and so needs no secret: ingests `records` (each the JSON
  // text of one Mixpanel event object) into `project` with /import's strict
  // semantics. A record that is not one valid event, malformed JSON
  // included, is refused in `errors` with its index in `records`; the rest
  // are stored durably. Errors: ResourceExhausted over kImportRecordsMax
  // records, Unavailable (storage failed: nothing was stored).
  Result<IngestOutcome> ImportEvents(const Project& project,
                                     const std::vector<std::string_view>& records);

  // Answers, as LocalAccess(project), a segmentation, funnel or retention query (the JSON of
  // docs/queries.md) over a snapshot of the project's events, in the
  // project's time zone unless the query names one; returns the answer body.
  // Held to the project's minimum group size k (docs/queries.md, "Small
  // groups") unless `options.raw_cells`, which the audit records' route
  // says ("cli --no-k"). Errors: InvalidArgument naming the bad field or the
  // limit exceeded; Corruption or IoError from the store.
  Result<std::string> Query(const Project& project, std::string_view query_json,
                            const LocalQueryOptions& options = {});

  // What the project's policy would store for sample events (an /import
  // payload: one event, an array or JSON lines) and which rule or detector
  // changed each field, as one JSON object. Nothing is stored or logged.
  Result<std::string> PreviewPolicy(const Project& project, std::string_view payload);

  // The policy in force for the project.
  PolicyInForce GetPolicy(const Project& project) const;
  // Checks `text` as `minpanel policy check` does (CheckPolicyText) and puts
  // it in force for the project at once, recorded in the history as a file
  // change would be (privacy::PolicyStore::Put). InvalidArgument names the
  // key or line at fault; ResourceExhausted over kPolicyTextBytesMax.
  // A refused text changes nothing.
  Result<PolicyUpdate> PutPolicy(const Project& project, std::string_view text);
  // The project's recorded policy versions, oldest first.
  Result<std::vector<PolicyVersion>> PolicyHistory(const Project& project) const;
  // The text of one recorded version; NotFound when there is none.
  Result<std::string> PolicyVersionText(const Project& project, uint32_t version) const;

  // The project these credentials (secret as Basic user or password, or as
  // api_key; with project_id for service accounts) unlock.
  Result<Project> Authenticate(const Credentials& credentials) const;

  // Access control (access.cc; docs/security.md). Who the credentials are
  // (Unauthenticated: none, unknown, expired or revoked — nothing else
  // said), whether they hold `scope` (PermissionDenied naming the missing
  // scope) and, when `needs_project`, the project they act on: the key's
  // own, or for a server-wide key the request's project_id
  // (InvalidArgument when missing, NotFound when unknown); a project_id
  // that is not the key's is PermissionDenied.
  Result<Access> Authorize(const Credentials& credentials, Scope scope, std::string_view route,
                           bool needs_project = true) const;
  // Appends a record of `access` doing `entry.act` to the audit log, durable
  // before it returns (fills key, route and projects). Unavailable when the
  // log failed: the caller must not answer.
  Status Audit(const Access& access, audit::AuditEntry entry);
  // The same, returning the record's sequence number.
  Result<uint64_t> AuditRecord(const Access& access, audit::AuditEntry entry);
  // Audited reads: the query needs query:subjects when it selects by a
  // distinct id, and keys limited to events or properties are held to them.
  Result<std::string> Query(const Access& access, std::string_view query_json);
  // An export: `export.start` is durable before the first byte; `export`
  // records what left (event names, property keys, rows, subjects, with the
  // subject pseudonyms in a side file).
  Result<query::ExportSummary> Export(const Access& access, const ExportOptions& options,
                                      const std::function<bool(std::string_view)>& sink);
  // Access keys (admin scope): a key may create keys only within its own
  // project and scopes. Each act is audited.
  Result<AccessKeyWithSecret> CreateAccessKey(const Access& access, AccessKeySpec spec);
  Result<AccessKeyWithSecret> RotateAccessKey(const Access& access, std::string_view id);
  Result<AccessKey> RevokeAccessKey(const Access& access, std::string_view id);
  // Lifts an anomaly rule's suspension of a key; audited as key.enable.
  Result<AccessKey> EnableAccessKey(const Access& access, std::string_view id);
  // Receives every anomaly alert (anomaly.h), after it is counted, audited
  // and (when the rules say so) the key suspended; the server logs it and
  // posts it to the webhook. Called on the thread that ran the export; must
  // be quick. Set once, before serving.
  void SetAlertHandler(std::function<void(const AnomalyAlert&)> handler);
  // Receives each audit checkpoint line (audit::AuditLog::
  // SetCheckpointObserver: with the log's lock held; must only queue); the
  // server posts it to audit_checkpoint_webhook. Empty: none.
  void SetCheckpointHandler(std::function<void(std::string_view line)> handler);
  Result<std::vector<AccessKey>> ListAccessKeys(const Access& access);
  // The audit log (audit:read); a project's key sees its project's records.
  Result<std::vector<audit::AuditEntry>> ReadAudit(const Access& access, audit::Filter filter);
  // The anomaly alerts (audit:read) matching `filter`, newest first, each
  // with whether it suspended its key and the key's state now, read from
  // the audit log (anomaly.h); a project's key sees its project's alerts.
  // Audited as `audit.read`. InvalidArgument names a bad filter field.
  Result<std::vector<ListedAlert>> ReadAlerts(const Access& access, const AlertFilter& filter);
  AccessKeyStore& access_keys() { return *access_keys_; }

  // The dashboard API (live.cc, reports_service.cc; docs/formats/dashboard-api.md).
  // The projects a key reaches: its own, or every project for a server-wide key.
  std::vector<Project> ProjectsFor(const Access& access) const;
  // The project's event names and property keys with their row counts, from
  // the segments' indexes (at most kNamesListedMax each, sorted); audited.
  Result<std::string> EventNames(const Access& access);
  // The newest `limit` (1..kLiveEventsMax) events as stored, each value whose
  // stored form shows the policy's work marked with what it did and why
  // (privacy::Policy::MarkStored); audited as an export is, subjects included.
  Result<std::string> LiveEvents(const Access& access, size_t limit);
  // The audit chain's verification now (audit::VerifyBytes), as JSON; audited.
  Result<std::string> AuditStatus(const Access& access);
  // The data map of the access's project (datamap.h; docs/privacy.md, "The
  // data map"): sources and keys seen, the policy's action on each, retention,
  // readers and recipients. Audited as `datamap`.
  Result<DataMapProject> DataMapOf(const Access& access);
  // Saved reports and dashboards of the access's project (reports.h). A put
  // with id 0 creates; a name or state holding PII is InvalidArgument.
  Result<std::vector<SavedItem>> ListSaved(const Access& access, SavedKind kind) const;
  Result<SavedItem> GetSaved(const Access& access, SavedKind kind, uint64_t id) const;
  Result<SavedItem> PutSaved(const Access& access, SavedKind kind, uint64_t id,
                             std::string_view json);
  Status DeleteSaved(const Access& access, SavedKind kind, uint64_t id);

  // Streams the project's events as Mixpanel export JSON lines, audited as
  // LocalAccess(project).
  Result<query::ExportSummary> Export(const Project& project, const ExportOptions& options,
                                      const std::function<bool(std::string_view)>& sink);

  // Erases the selected subjects of the access's project: invisible to
  // every read once this returns (a durable deletion record), physically
  // gone at the store's purge deadline or, with purge_now, before it
  // returns. Audited with a count and a keyed reference only.
  Result<ErasureOutcome> Erase(const Access& access, const SubjectSelection& selection);
  // Hides every value of one property key stored in the access's project
  // (on that event name's events only, when named; else on every event and
  // profile update): invisible to every read once this returns (a durable
  // deletion record), physically gone at the store's purge deadline or,
  // with purge_now, before it returns. Stored GDPR retrieval results of the
  // project are removed (they may hold the values). Audited as
  // `property.purge` with the key and event name, never a value.
  Result<PropertyPurgeOutcome> PurgeProperty(const Access& access,
                                             const PropertyPurgeRequest& request);
  // Everything the project holds about the selected subjects (events and
  // profile updates as stored, the policy versions) as one JSON document;
  // audited as `access_request`.
  Result<std::string> AccessRequest(const Access& access, const SubjectSelection& selection);
  // How many events and profile updates of `subjects` (pseudonyms) project
  // holds, by event name, and the first and last event time, for `minpanel
  // incident who-could-read`, which records its own run in the audit log.
  Result<StoredSubject> SubjectInStore(const Project& project, const std::vector<Id128>& subjects);
  // Who could read one person's data in the access's project (admin
  // scope; WhoCouldReadRequest), the store read through its snapshot, so
  // a running server answers it. Audited as `incident.who_could_read`
  // (rows: the credentials listed; never the id), as the command line's
  // run is. InvalidArgument for a window that is empty; Corruption for a
  // broken chain or an edited subject file unless allow_broken.
  Result<WhoCouldReadAnswer> WhoCouldRead(const Access& access, const WhoCouldReadRequest& request);

  // Mixpanel's GDPR API shapes (gdpr.cc; docs/formats/mixpanel-gdpr.md),
  // each returning the JSON body Mixpanel answers with. Create takes
  // {"distinct_ids": [...] (at most kGdprDistinctIdsMax), "compliance_type"};
  // a deletion is erased and purged before it answers, a retrieval's result
  // is stored under <data>/gdpr/ for GdprResult (`result_url` names it in
  // the status answer). Tasks of another project are NotFound.
  Result<std::string> GdprCreate(const Access& access, GdprKind kind, std::string_view body);
  Result<std::string> GdprStatus(const Access& access, GdprKind kind, std::string_view task_id,
                                 std::string_view result_url);
  Result<std::string> GdprCancel(const Access& access, GdprKind kind, std::string_view task_id);
  Result<std::string> GdprResult(const Access& access, std::string_view task_id);

  // Deletes the access's project (admin scope; `confirm` must be its name):
  // its access keys, its token and secret (the registry keeps a tombstone,
  // so its id and name are never reused), its events and profile updates
  // (hidden at once, purged from the files before it returns) and its saved
  // reports and dashboards. Audited as `project.delete.start`, durable
  // before anything goes, and `project.delete`; its audit records stay.
  Result<ProjectDeletion> DeleteProject(const Access& access, std::string_view confirm);

  ProjectRegistry& projects() { return *projects_; }
  // The pseudonym the project's key gives `distinct_id`.
  Result<Id128> Pseudonym(const Project& project, std::string_view distinct_id);

  // The configuration's [projects.NAME] settings (retention, consent),
  // replaced as a whole (Open sets them; the server again on SIGHUP).
  void SetProjectSettings(std::vector<ProjectSettings> settings);
  // The configuration's erasure_purge_deadline_hours (Open sets it; the
  // server again on SIGHUP): the store's background purge starts an hour
  // before it (ErasurePurgeDelayMs), for deletions already in force too.
  void SetErasurePurgeDeadline(uint32_t deadline_hours);
  ProjectSettings SettingsOf(const Project& project) const;
  // The configuration's [anomaly] rules, replaced as a whole (Open sets
  // them; the server again on SIGHUP); exports already running keep the
  // rules they started with.
  void SetAnomalyRules(const AnomalyRules& rules);
  std::shared_ptr<const AnomalyRules> AnomalyRulesNow() const;
  // Logs a store drop for every retention rule whose bound has moved on,
  // and a profile expiry for every project with profile_expiry_days
  // (retention.cc; docs/privacy.md, "Retention"): the rows are hidden at
  // once, and the store's purge removes them from the files in the
  // background. The server calls it every minute. Returns the first
  // failure (the other rules are still applied; a failed one is retried).
  Status ApplyRetention();
  // The data map learns which keys the store no longer holds (datamap.h,
  // DataCatalogue::MarkGone): whenever the store has logged a deletion or
  // run a purge since the last look (or since open), and at the first
  // `on_read` call after open, it reads each project's segment indexes and
  // memtable (store::Engine::Snapshot; no row is read) and marks gone the
  // keys none holds — by retention for the projects in `retention_dropped`
  // (a project retention drop logged just now), else by a deletion. Every
  // call also forgets the keys gone for longer than DataMapGoneKeptDays.
  // ApplyRetention calls it after its drops (so a server's start, which
  // applies retention before its first request, looks only when a drop was
  // logged); DataMapOf with `on_read`.
  Status RefreshDataMapStorage(const std::set<uint32_t>& retention_dropped = {},
                               bool on_read = false);

  ServiceMetrics GetMetrics() const;
  store::Stats GetStoreStats() const;
  Clock& clock() { return *clock_; }

  // Reloads what can change without a restart: projects, their privacy
  // policies, their pseudonym keys (rotated by `minpanel project
  // rotate-key`), a replaced geolocation database. Returns what it refused and
  // kept the previous version of (a broken policy file), for the log.
  Result<std::vector<std::string>> Reload();
  // Re-opens the IP geolocation database if its files were replaced; the
  // server calls it every minute. OK when there is none or nothing changed.
  Status ReloadGeoDatabase();
  // Waits for in-flight appends and closes the store. Idempotent.
  Status Close();

 private:
  // One project's profile expiry, when its bound has moved on (retention.cc).
  Status ExpireProfiles(const Project& project, uint32_t days, int64_t now_ms);
  // Revoke and enable: the key `id` if the caller manages it, changed by
  // `change`, the act audited as `act`; NotFound otherwise.
  Result<AccessKey> ChangeAccessKey(
      const Access& access, std::string_view id, const char* act,
      const std::function<Result<AccessKey>(std::string_view)>& change);
  struct Counters;
  Service(std::shared_ptr<Clock> clock, int data_lock_fd,
          std::unique_ptr<ProjectRegistry> projects, std::unique_ptr<privacy::KeyStore> keys,
          std::unique_ptr<privacy::PolicyStore> policies,
          std::shared_ptr<const privacy::PolicyTools> tools,
          std::unique_ptr<store::Engine> engine);
  void CountPolicy(const Project& project, const privacy::Policy& policy,
                   const privacy::PolicyCounters& counters);
  // An ingest request made ready for the store: the outcome so far and the
  // batch still to append (empty when nothing is left to store).
  struct Prepared {
    IngestOutcome outcome;
    store::AppendBatch batch;
  };
  Result<Prepared> PrepareMixpanel(const IngestRequest& request);
  Result<Prepared> PreparePostHog(const PostHogIngestRequest& request);
  Result<Prepared> PreparePlausible(const PlausibleIngestRequest& request);
  Result<Prepared> PrepareSegment(const SegmentIngestRequest& request);
  // The project's `consent` setting applied to a request that carried a
  // consent signal (consent.cc): nothing stored, or no subject.
  Result<Prepared> ApplyConsent(Result<Prepared> prepared, bool consent_signal);
  // Appends a prepared request without waiting for fsync; `done` as for
  // IngestMixpanelAsync.
  void AppendAsync(Result<Prepared> prepared, IngestCallback done);
  // Decodes an events payload; /import also takes newline-delimited JSON.
  Result<ingest::MixpanelEvents> DecodeEvents(ingest::MixpanelRoute route,
                                              std::string_view payload) const;
  Result<Prepared> PrepareEvents(const IngestRequest& request, const Project* authenticated);
  Result<Prepared> PrepareProfiles(const IngestRequest& request);
  // Applies the project's policy to decoded events, into `batch`.
  // `source` names the route for the data map ("mixpanel /track", …).
  Status ApplyPolicy(const Project& project, std::vector<RawEvent> events,
                     const IngestRequest* request, store::AppendBatch* batch,
                     std::string_view source);
  // The same for decoded profile updates (Mixpanel /engage and /groups,
  // PostHog's $set, Segment's identify and group traits): the data map sees
  // them under `source`, then each passes the policy into `batch`.
  Status ApplyProfilePolicy(const Project& project, std::vector<RawProfileUpdate> updates,
                            store::AppendBatch* batch, std::string_view source);
  // Completes an outcome with what the store did.
  Result<IngestOutcome> Finish(IngestOutcome outcome,
                               const Result<store::AppendResult>& appended);
  Result<IngestOutcome> AppendAndFinish(Prepared prepared);
  Result<Project> ProjectForTokens(const std::vector<std::string>& tokens) const;
  Result<Principal> Identify(const Credentials& credentials) const;
  // `listed` (when set) receives the subjects the answer lists
  // (ListAnswerSubjects).
  Result<std::string> RunQuery(const Project& project, std::string_view query_json,
                               uint32_t min_group_size = 0,
                               audit::SubjectKeySets* listed = nullptr);
  // The subjects a query answer lists (access.cc): each value its breakdown
  // by a subject's identity (distinct_id, $user_id, … as NamesSubject
  // names them) shows, in every group but "other", with the answer's other
  // breakdown keys that had a value in that group, and "time" (the cells
  // are time buckets). A value in clear (a policy that keeps the id) is
  // recorded as the pseudonym the project's key gives it, never as it is.
  Status ListAnswerSubjects(const Project& project, const query::QuerySpec& spec,
                            const query::QueryResult& result, audit::SubjectKeySets* listed);
  Result<query::ExportSummary> RunExport(const Project& project, const ExportOptions& options,
                                         const std::function<bool(std::string_view)>& sink);
  // The store's request for an export's options: dates in the project's
  // zone, event names parsed, distinct ids pseudonymised.
  Result<query::ExportRequest> ExportRequestOf(const Project& project,
                                               const ExportOptions& options);
  // An upper bound of the rows an export returns, from the zone maps of the
  // project's segments (export_reason.cc).
  Result<uint64_t> EstimateExportRows(const Project& project, const ExportOptions& options);
  // InvalidArgument naming `reason` when it is malformed, holds personal
  // data, or is missing from an export over export_reason_rows_.
  Status CheckExportReason(const Access& access, const ExportOptions& options);
  // Records the key changes another process (`minpanel keys …`) made, as
  // seen on Reload.
  void AuditKeyChanges(const std::vector<AccessKey>& before);
  // Records the project changes another process (`minpanel project …`)
  // made, as seen on Reload: a new project, a new secret, its sites, its
  // minimum group size, a replaced pseudonym key (against key_versions_).
  void AuditProjectChanges(const std::vector<Project>& before);
  // The current pseudonym key version of every project that has a key.
  std::map<uint32_t, uint32_t> KeyVersions();
  // The project's ingest rate and disk quotas (project_quotas.h) for a
  // batch about to be stored: RateLimited or DiskQuotaExceeded.
  Status AdmitIngest(const store::AppendBatch& batch);
  // Erases every subject with a profile update in the project and drops
  // its events stored so far; returns how many subjects (project_admin.cc).
  Result<uint64_t> HideProjectData(uint32_t project_id);
  // After an access key's export: adds it to the key's history, evaluates
  // the anomaly rules and acts on their alerts (anomaly_service.cc).
  void ObserveExport(const Access& access, uint64_t rows, uint64_t subjects);
  // Before an access key's export, with `suspend` on: the rules that need
  // not its size (anomaly.h, EvaluateBeforeExport); PermissionDenied naming
  // the rule, the alert raised and the key suspended, when one fires.
  Status JudgeBeforeExport(const Access& access, const ExportOptions& options);
  ExportObservation ObservationOf(const Access& access, uint64_t rows, uint64_t subjects) const;
  // Counts, audits and hands on each alert, suspending its key when the
  // rules say so (alert.suspended set).
  void RaiseAlerts(const Access& access, const AnomalyRules& rules,
                   std::vector<AnomalyAlert>* alerts);
  Result<privacy::Policy> PolicyFor(const Project& project);
  // A record of a read of the access's project: `act`, and the version of
  // the project's policy in force now (0: the built-in default), which
  // every read's record names (docs/formats/audit.md).
  audit::AuditEntry ReadEntry(const Access& access, std::string act) const;
  Result<GdprTask> GdprTaskOf(const Access& access, GdprKind kind,
                              std::string_view task_id) const;
  // Purges and marks a STARTED deletion task SUCCESS (or FAILURE).
  Status FinishDeletion(GdprTask* task);
  // At open: finishes the deletions a crash left STARTED, fails the
  // retrievals it interrupted, removes expired retrieval results.
  Status ResumeGdprTasks();
  // The pseudonyms of a selection under every kept key, with the ids linked
  // to them when asked (erasure.cc), sorted.
  Result<std::vector<Id128>> SubjectsOf(const Project& project, const SubjectSelection& selection,
                                        uint64_t* linked_added);

  // Each project's profiles, for queries by profile and group properties.
  query::ProfileTableCache profile_tables_;
  std::shared_ptr<Clock> clock_;
  int data_lock_fd_;  // flock held while serving: one process per data folder
  std::unique_ptr<ProjectRegistry> projects_;
  std::unique_ptr<privacy::KeyStore> keys_;
  std::unique_ptr<privacy::PolicyStore> policies_;
  std::shared_ptr<const privacy::PolicyTools> tools_;
  std::unique_ptr<store::Engine> engine_;
  std::unique_ptr<Counters> counters_;
  std::unique_ptr<privacy::VisitorIds> visitor_ids_;
  std::unique_ptr<AccessKeyStore> access_keys_;
  std::unique_ptr<KeyLimiter> key_limiter_;  // access keys' rates and export quotas
  KeyLimits key_limit_defaults_;
  uint64_t export_reason_rows_ = 0;  // Limits::export_reason_rows
  // Anomaly rules (anomaly.h): the keys' export history (shared with the
  // limiter, whose day counts start from it), the key of the address
  // hashes, the alerts' receiver and counters.
  std::unique_ptr<ProjectQuotas> project_quotas_;
  mutable std::mutex anomaly_rules_mutex_;
  std::shared_ptr<const AnomalyRules> anomaly_rules_;  // guarded by anomaly_rules_mutex_
  std::shared_ptr<KeyUsage> key_usage_;
  std::array<uint8_t, 32> address_key_{};
  std::function<void(const AnomalyAlert&)> alert_handler_;
  // Each project's pseudonym key version as of Open or the last Reload, so
  // that Reload sees a key another process replaced.
  std::map<uint32_t, uint32_t> key_versions_;
  std::array<std::atomic<uint64_t>, std::size(kAnomalyRuleNames)> anomaly_alerts_{};
  std::atomic<uint64_t> keys_suspended_{0};
  std::atomic<uint64_t> key_usage_failures_{0};
  std::shared_ptr<audit::AddressKeys> address_keys_;  // the audit records' addresses
  std::unique_ptr<audit::AuditLog> audit_;
  std::unique_ptr<GdprTasks> gdpr_tasks_;
  std::unique_ptr<ReportStore> reports_;
  // The data map's catalogue (datamap.h), and the configuration it shows.
  std::unique_ptr<DataCatalogue> catalogue_;
  // RefreshDataMapStorage: one at a time; the store's deletions logged and
  // purges run at its last look (or at open), and whether it has looked.
  std::mutex datamap_storage_mutex_;
  std::pair<uint64_t, uint64_t> datamap_storage_seen_;
  bool datamap_storage_looked_ = false;
  uint32_t audit_retention_days_ = 0;
  std::string audit_checkpoint_sink_;
  std::shared_ptr<FileSystem> file_system_;
  ProjectSettingsTable settings_;
};

// The JSON body of POST /api/keys: {"name", "scopes": [...], "project_id",
// "events": [...], "properties": [...], "expires_ms"}; InvalidArgument names
// the field at fault.
Result<AccessKeySpec> ParseAccessKeySpec(std::string_view json);
// A key as the API and `minpanel keys list` show it; with its secret when
// just created or rotated (shown once).
std::string AccessKeyJson(const AccessKey& key, std::string_view secret = "");

// Opens only the access keys of a data folder, for `minpanel keys …`,
// which works while a server runs (or not).
// Opens <data>/audit with the signing key of the key folder (made when
// absent) and the configured sink, then prunes it to the configured
// retention (docs/formats/audit.md).
// `address_keys` (OpenAuditAddressKeys) seal each record's client address;
// without, addresses are not kept (the command line's records have none).
Result<std::unique_ptr<audit::AuditLog>> OpenAuditLog(
    const Config& config, std::shared_ptr<FileSystem> file_system, std::shared_ptr<Clock> clock,
    std::shared_ptr<audit::AddressKeys> address_keys = nullptr);
// The audit records' address keys of the key folder (`audit-address/`),
// the expired ones destroyed (Config::audit_address_retention_days).
Result<std::shared_ptr<audit::AddressKeys>> OpenAuditAddressKeys(
    const Config& config, std::shared_ptr<FileSystem> file_system, std::shared_ptr<Clock> clock);
// The audit signing key of the key folder; NotFound when there is none.
Result<audit::SigningKey> AuditSigningKey(const Config& config, bool create);
// What a restore without the old keys does before it opens the folder:
// opens <data>/audit with the key folder's signing key (made when absent)
// allowing a new key epoch (audit::Options::new_key_epoch), so that its
// checkpoints, signed by a key that is gone, are checked under the key
// their epoch names and the new key's epoch begins (docs/privacy.md,
// "Backup and restore"). Returns the earlier epoch's key when a new epoch
// began, nullopt when the log's key was this one already or it named none.
Result<std::optional<audit::PublicKey>> StartAuditKeyEpoch(const Config& config);

Result<std::unique_ptr<AccessKeyStore>> OpenAccessKeys(const Config& config,
                                                       std::shared_ptr<FileSystem> file_system,
                                                       std::shared_ptr<Clock> clock);

// Checks a privacy policy text (docs/privacy.md) and describes every rule,
// for `minpanel policy check`. InvalidArgument names the key and line.
Result<std::string> CheckPolicyText(std::string_view text);

// Opens only the project registry of a data folder, for the CLI's project
// commands, which work while the server is stopped (or running).
Result<std::unique_ptr<ProjectRegistry>> OpenProjects(const Config& config,
                                                      std::shared_ptr<FileSystem> file_system,
                                                      std::shared_ptr<Clock> clock);

struct ProjectKeyRotation {
  Project project;
  privacy::KeyRotation rotation;
};

// Replaces the pseudonym key of the project called `name`
// (privacy::KeyStore::Rotate, docs/formats/keys.md), for `minpanel project
// rotate-key`. Works while a server runs on the data folder: the server
// keeps its cached key until Reload (SIGHUP). NotFound for an unknown
// project or one without a key yet.
Result<ProjectKeyRotation> RotateProjectKey(const Config& config,
                                            std::shared_ptr<FileSystem> file_system,
                                            std::shared_ptr<Clock> clock, std::string_view name,
                                            bool destroy_old);

}  // namespace minpanel::service
