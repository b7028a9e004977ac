// Config: every setting an operator may change, read from a TOML file
// (docs/config.md) and overridden by command-line flags, then checked once
// at start-up. Immutable once built; a reload builds a new one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "audit/audit.h"
#include "core/core.h"
#include "service/anomaly.h"

namespace minpanel::service {

inline constexpr uint64_t kExportReasonRowsDefault = 100'000;

// Limits an operator may tune; every request is checked against them.
struct Limits {
  uint64_t body_bytes_max = 16ULL << 20;           // a request body as received
  uint64_t decompressed_bytes_max = 16ULL << 20;   // a body after gzip/deflate
  uint64_t decompression_ratio_max = 200;          // output/input bytes, against bombs
  uint64_t header_bytes_max = 64ULL << 10;         // request line and headers (GET data=)
  uint64_t connections_max = 4096;
  uint64_t request_timeout_ms = 30'000;            // reading one request
  uint64_t idle_timeout_ms = 60'000;               // between keep-alive requests
  uint64_t export_rows_max = 0;                    // 0: exports are not capped
  // An export that may return more rows than this needs a `reason`
  // (docs/security.md, "Export reasons"); 0: never.
  uint64_t export_reason_rows = kExportReasonRowsDefault;
  // Each access key's limits when it sets none of its own (0: none;
  // docs/security.md, "Rate limits and export quotas").
  uint64_t key_requests_per_second = 0;
  uint64_t key_export_rows_per_day = 0;
  uint64_t key_export_subjects_per_day = 0;
};

// Path prefixes (Config::path_prefixes): how many, and how long each.
inline constexpr size_t kPathPrefixesMax = 16;
inline constexpr size_t kPathPrefixBytesMax = 64;

struct TlsConfig {
  std::string cert_file;  // PEM chain; empty: plain HTTP
  std::string key_file;   // PEM private key
};

// Retention (docs/privacy.md, "Retention"): days are whole days of 86,400 s
// before the store clock's now; 0 keeps events forever.
inline constexpr uint32_t kRetentionDaysMax = 36'500;
// Per-event-name rules per project ([projects.NAME] event_retention_days).
inline constexpr size_t kEventRetentionRulesMax = 1'000;
inline constexpr size_t kProjectSettingsMax = 10'000;

// What a project does with an event whose request carries `Sec-GPC: 1` or
// `DNT: 1` (docs/privacy.md, "Consent and signals").
enum class ConsentMode {
  kIgnore,     // store it as any other
  kDrop,       // answer as usual, store nothing
  kAnonymous,  // store it without a subject: counted, linkable to no one
};

// One [projects.NAME] table: settings of one project.
struct ProjectSettings {
  std::string project;          // the project's name
  uint32_t retention_days = 0;  // every event; 0: forever
  // Per event name (exact), at most retention_days when that is set.
  std::vector<std::pair<std::string, uint32_t>> event_retention_days;
  // Profiles of subjects not seen (no event, no profile update) for this
  // many days expire (docs/privacy.md, "Retention"); 0: never.
  uint32_t profile_expiry_days = 0;
  ConsentMode consent = ConsentMode::kIgnore;
  // Quotas (docs/security.md, "Project quotas"); 0: none. Events and
  // profile updates stored per second (429 over it), and the bytes of the
  // project's segment files past which new events are refused (507).
  uint64_t ingest_events_per_second = 0;
  uint64_t disk_bytes_max = 0;
};

// Erasure's physical stage (docs/privacy.md, "Erasure and access"): an
// erased subject's rows are gone from every file of the data folder within
// this many hours of the erasure (0: in the background at once; "purge":
// "now" does it before the answer). The store starts its purge when the
// oldest deletion in force is kErasurePurgeMarginHours short of the
// deadline: a purge of a 100M-event store took 79-243 s (docs/benchmarks.md).
inline constexpr uint32_t kErasurePurgeDeadlineHoursDefault = 24;
inline constexpr uint32_t kErasurePurgeDeadlineHoursMax = 720;  // 30 days: GDPR's one month
inline constexpr uint32_t kErasurePurgeMarginHours = 1;

// The store's purge delay (store::Options::purge_delay_ms) for a deadline.
int64_t ErasurePurgeDelayMs(uint32_t deadline_hours);

struct Config {
  std::string listen = "127.0.0.1:8080";
  // A second listener for the read and admin API (docs/security.md,
  // "Separate listeners"): when set, `listen` serves only ingestion and
  // /healthz, and this one everything else (and /healthz), with `tls_api`.
  // Empty: `listen` serves every route.
  std::string listen_api;
  std::string data_folder = "var/data";
  std::string key_folder;  // empty: "<data_folder>.keys", beside the data folder
  std::vector<std::string> trusted_proxies;  // addresses or CIDR ranges
  // Prefixes a first-party proxy puts before every route ("/mp", "/ingest"):
  // a request to /mp/track is served as /track. Each starts with '/', has
  // no trailing '/', and its first segment is not one of minpanel's own
  // routes (ValidateConfig). Unprefixed paths keep working.
  std::vector<std::string> path_prefixes;
  TlsConfig tls;
  TlsConfig tls_api;  // the API listener's own; empty: plain HTTP there
  Limits limits;
  int64_t dedup_window_ms = 7LL * 24 * 3600 * 1000;
  uint64_t dedup_entries_max = 20'000'000;
  // The store flushes its memtable into segment files past this many events
  // (store::kMemtableRowsMaxDefault).
  uint64_t store_memtable_rows_max = 200'000;
  // Set only by `minpanel debug rewrite-segments`: Open rewrites every
  // segment of an older format into the newest (store::Options).
  bool store_rewrite_older_segments = false;
  // With it, `minpanel debug rewrite-segments --all`: every segment
  // (store::Options::rewrite_every_segment).
  bool store_rewrite_every_segment = false;
  uint32_t erasure_purge_deadline_hours = kErasurePurgeDeadlineHoursDefault;
  uint32_t io_threads = 2;
  // Decoding and the policy run here; no thread waits for fsync (appends
  // are asynchronous), so about one per core is right.
  uint32_t worker_threads = 2;
  uint32_t export_threads = 8;  // exports block on the client's socket
  // The privacy policy's data: uap-core's user-agent regexes (Debian
  // package uap-core) and the IP geolocation database (MMDB files; empty:
  // look for the one scripts/setup-geoip.sh installs beside the binary's
  // source tree, and derive no location when there is none).
  std::string user_agent_regexes = "/usr/share/uap-core/regexes.yaml";
  std::vector<std::string> geoip_files;
  std::string log_level = "info";
  bool access_log = false;
  // The audit log (docs/formats/audit.md): records older than this many days
  // are pruned from its head, behind a signed checkpoint, when it is opened;
  // 0 keeps them all.
  uint32_t audit_retention_days = 0;
  // The client address of each audit record is kept readable this many
  // days (its day's key, in the key folder, is destroyed after;
  // docs/formats/audit.md, "Client addresses"); 0: no address is kept.
  uint32_t audit_address_retention_days = audit::kAddressRetentionDaysDefault;
  // How long a sync of the audit log that a read waits for is held for the
  // other reads running (audit::Options::opening_wait_us): longer, fewer
  // syncs under concurrent reads; 0: synced at once.
  uint32_t audit_sync_hold_us = audit::kOpeningWaitUsDefault;
  // How long a query runs before its `query.start` record is written
  // (audit::Options::deferred_start_ms): a query answered sooner is
  // recorded once; 0: every query recorded twice.
  uint32_t audit_query_start_ms = audit::kDeferredStartMsDefault;
  // A file (on another volume) every audit checkpoint is also appended to;
  // empty: none.
  std::string audit_checkpoint_sink;
  // An http:// or https:// URL every audit checkpoint is also POSTed to by
  // a running server (docs/security.md, "The audit log"); empty: none.
  std::string audit_checkpoint_webhook;
  // For an https:// one: a PEM file of the CAs its certificate must chain
  // to; empty: the system's CAs.
  std::string audit_checkpoint_webhook_ca_file;
  // The syslog facility ("user", "daemon", "auth", "authpriv", "local0" to
  // "local7") a running server sends every audit checkpoint to, through the
  // local syslog socket; "off": none.
  std::string audit_checkpoint_syslog = "off";
  // That socket (a unix datagram socket; another path in tests).
  std::string audit_checkpoint_syslog_socket = "/dev/log";
  // [anomaly]: the export anomaly rules (docs/security.md, "Anomaly rules").
  AnomalyRules anomaly;
  // [projects.NAME] tables, in name order; a project without one keeps
  // every event and ignores consent signals.
  std::vector<ProjectSettings> project_settings;
};

// The settings of the project named `name` (defaults when it has none).
ProjectSettings SettingsFor(const Config& config, std::string_view name);

// Reads a TOML file over the defaults; unknown keys are errors (a typo must
// not silently leave a default in place).
Result<Config> LoadConfigFile(const std::string& path);

// Checks every value; the message names the key and the allowed range.
Status ValidateConfig(const Config& config);

// The syslog facility code (syslog.h's LOG_USER, LOG_LOCAL4, …) that
// audit_checkpoint_syslog names; nullopt for "off" or another name.
std::optional<int> SyslogFacility(std::string_view name);
// The longest audit_checkpoint_syslog_socket: a unix socket address's path.
inline constexpr size_t kSyslogSocketPathBytesMax = 107;

// The key folder in effect (the configured one or the default).
std::string KeyFolder(const Config& config);
// Where the store journals the erasures it has purged, for restores of
// older backups: the key folder's `erasures/` (docs/privacy.md, "Backup and
// restore"), outside the data folder, whose every file an erasure cleans.
std::string ErasureJournalFolder(const Config& config);

}  // namespace minpanel::service
