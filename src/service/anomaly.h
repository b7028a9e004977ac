// Export anomaly rules and each access key's export history (issue 6;
// docs/security.md, "Anomaly rules"; docs/formats/key-usage.md).
//
// KeyUsage keeps, per access key, its exports' rows, distinct subjects and
// count in UTC hour buckets over the last kUsageHistoryDays days, and the
// keyed hashes of the client addresses it exported from — in
// <data>/key_usage/<key id>.json, replaced atomically (fsynced) after each
// export, so the history and the day's export quotas survive a restart and
// a crash loses at most the export in flight. A key's file is read the
// first time the key exports after a start.
//
// EvaluateAnomalies is the rules themselves, a pure function of the rules,
// the key's history before an export and the export: a key whose exported
// rows or subjects in the window exceed its usual level by a factor, an
// export in an hour of the day (UTC) the key has never exported in, from an
// address it has not exported from, or the last of a burst of many small
// exports. The rules that compare with the key's history (volume, hours,
// address) are quiet until the key has `warmup_days` of history; the
// absolute ones (rows in the window over `window_rows_max`, a burst) are not.
//
// KeyUsage is thread-safe (one mutex; exports of one key are serialised
// around the file write).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "audit/audit.h"
#include "core/core.h"

namespace minpanel::service {

inline constexpr uint32_t kUsageHistoryDays = 28;
inline constexpr size_t kKnownAddressesMax = 64;  // per key; the least recently seen go first
inline constexpr size_t kUsageFileBytesMax = 1 << 20;
inline constexpr uint32_t kAnomalyWindowHoursMax = 7 * 24;
inline constexpr uint32_t kAnomalyBurstExportsMax = 10'000;
inline constexpr uint32_t kAnomalyBurstWindowSecondsMax = 24 * 3600;
inline constexpr size_t kAnomalyWebhookBytesMax = 2048;
inline constexpr size_t kWebhookCaFileBytesMax = 4096;

// The configuration's [anomaly] table (docs/config.md). A factor or count
// of 0 turns its rule off.
struct AnomalyRules {
  // Rows or subjects in the last `window_hours` over `volume_factor` times
  // the key's usual level for such a window, and at least `volume_rows_min`
  // rows (or subjects): the rule "volume".
  double volume_factor = 10;
  uint32_t window_hours = 24;
  uint64_t volume_rows_min = 1000;
  // Absolute: rows in the window over this, whatever the history
  // ("window_rows").
  uint64_t window_rows_max = 0;
  bool unusual_hours = true;  // "hours"
  bool new_address = true;    // "address"
  // Absolute: `burst_exports` exports of at most `burst_rows_max` rows each
  // within `burst_window_s` seconds ("burst").
  uint32_t burst_exports = 20;
  uint32_t burst_window_s = 600;
  uint64_t burst_rows_max = 1000;
  // The relative rules wait for this many days since the key's first
  // export.
  uint32_t warmup_days = 7;
  // Suspend the key (AccessKey::suspended_ms) when a rule fires.
  bool suspend = false;
  // POST each alert as JSON to this http:// or https:// URL; empty: none.
  std::string webhook;
  // For an https:// webhook: a PEM file of the CAs its certificate must
  // chain to; empty: the system's CAs.
  std::string webhook_ca_file;
};
// InvalidArgument naming the [anomaly] key out of range.
Status CheckAnomalyRules(const AnomalyRules& rules);

// An outbound webhook's two settings (the anomaly alerts', the audit
// checkpoints'): `url` empty (none) or an http:// or https:// URL of at
// most kAnomalyWebhookBytesMax bytes; `ca_file` empty (the system's CAs) or,
// for an https:// URL only, a path of at most kWebhookCaFileBytesMax bytes
// (whether it reads is the server's check, at start and on SIGHUP).
// InvalidArgument naming `url_key` or `ca_file_key` as the config spells it.
Status CheckWebhook(std::string_view url_key, std::string_view url, std::string_view ca_file_key,
                    std::string_view ca_file);

// The rules' names, as the alerts, the log and /metrics spell them.
inline constexpr std::string_view kAnomalyRuleNames[] = {"volume", "window_rows", "hours",
                                                         "address", "burst"};

struct UsageBucket {
  uint64_t exports = 0;
  uint64_t rows = 0;
  uint64_t subjects = 0;
};

struct KeyHistory {
  int64_t first_ms = 0;                      // the key's first recorded export; 0: none
  std::map<int64_t, UsageBucket> hours;      // hours since the epoch → what its exports took
  std::map<std::string, int64_t> addresses;  // keyed address hash (hex) → last hour seen
  std::deque<int64_t> small_exports_ms;  // recent small exports, for the burst rule (memory only)
};

struct ExportObservation {
  std::string key_id;
  uint32_t project_id = 0;
  int64_t time_ms = 0;
  uint64_t rows = 0;
  uint64_t subjects = 0;
  std::string address_hash;  // keyed hash of the client address; empty: unknown (the CLI)
};

struct AnomalyAlert {
  std::string key_id;
  uint32_t project_id = 0;
  std::string rule;    // one of kAnomalyRuleNames
  std::string detail;  // numbers only: never an address or a subject
  int64_t time_ms = 0;
  bool suspended = false;  // the key was suspended for it
};

// The alerts GET /api/alerts lists (Service::ReadAlerts; docs/formats/
// dashboard-api.md), read back from the audit log: each alert is an
// `anomaly` record (target: the key; reason: "<rule>: <detail>"), followed
// by a `key.suspend` record with the same target and reason when the rule
// suspended the key.
inline constexpr std::string_view kAnomalyAuditKey = "anomaly";  // the records' `key`
inline constexpr size_t kAlertsListedMax = 1000;
inline constexpr size_t kAlertsListedDefault = 100;

struct AlertFilter {
  std::string key_id;  // the alerted access key; "": any
  std::string rule;    // one of kAnomalyRuleNames; "": any
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;  // exclusive
  size_t limit = kAlertsListedDefault;
};
// InvalidArgument naming the field: a key that is not an access key id, an
// unknown rule, a limit outside 1..kAlertsListedMax, from_ms after to_ms.
Status CheckAlertFilter(const AlertFilter& filter);
// The audit log's filter that finds `filter`'s alerts and their suspensions
// (twice the limit: each alert may have its suspension record).
audit::Filter AuditFilterOfAlerts(const AlertFilter& filter);

struct ListedAlert {
  uint64_t seq = 0;  // the alert's `anomaly` audit record
  AnomalyAlert alert;
  // The key as it is now: active, suspended, revoked, expired or deleted
  // (filled by Service::ReadAlerts).
  std::string key_state;
};
// The alerts among `records` (oldest first, as the audit log shows them),
// each marked suspended when a later `key.suspend` record of the same key
// and reason follows it: the newest `limit`, newest first.
std::vector<ListedAlert> AlertsOfRecords(const std::vector<audit::AuditEntry>& records,
                                         size_t limit);

// The rules `observation` breaks, given the key's history before it.
std::vector<AnomalyAlert> EvaluateAnomalies(const AnomalyRules& rules, const KeyHistory& before,
                                            const ExportObservation& observation);

// An export about to start, judged by the rules that do not need its size
// (docs/security.md, "Anomaly rules"): an hour of the day the key has not
// exported in, an address it has not exported from (both past the
// warm-up), and the burst, which fires only if this export turns out small
// (at most burst_rows_max rows).
struct BeforeExport {
  std::vector<AnomalyAlert> alerts;         // "hours", "address"
  std::optional<AnomalyAlert> burst_alert;  // "burst", if the export is small
};
BeforeExport EvaluateBeforeExport(const AnomalyRules& rules, const KeyHistory& before,
                                  const ExportObservation& observation);

// The history after an export refused before it started: its hour of the
// day and its address become the key's own (the admin who enables the key
// again has looked at them), without counting an export; refused for a
// burst (`burst`), it is remembered as the burst's last small export, so
// that the next one does not complete the same burst again.
void VetExport(const AnomalyRules& rules, const ExportObservation& observation, bool burst,
               KeyHistory* history);

// The history with one more export (buckets and addresses past
// kUsageHistoryDays dropped, addresses capped at kKnownAddressesMax).
void AddExport(const AnomalyRules& rules, const ExportObservation& observation,
               KeyHistory* history);

// A history as its file's text, and back (Corruption naming the file).
std::string KeyHistoryJson(std::string_view key_id, const KeyHistory& history);
Result<KeyHistory> ParseKeyHistory(std::string_view text, std::string_view path);

class KeyUsage {
 public:
  // `folder` is <data>/key_usage (created when first written).
  KeyUsage(std::string folder, std::shared_ptr<FileSystem> file_system);

  // Records one export: evaluates the rules against the history before it,
  // adds it and writes the key's file before it returns. The alerts are
  // returned even when the write failed (the Status is then the failure).
  struct Observed {
    std::vector<AnomalyAlert> alerts;
    Status written;
  };
  Observed Observe(const AnomalyRules& rules, const ExportObservation& observation);
  // Judges an export about to start against the key's history
  // (EvaluateBeforeExport); changes nothing.
  Result<BeforeExport> Judge(const AnomalyRules& rules, const ExportObservation& observation);
  // Records an export refused before it started (VetExport) and writes the
  // key's file before it returns.
  Status Vet(const AnomalyRules& rules, const ExportObservation& observation, bool burst);
  // The rows and subjects the key's exports took in the UTC day of `now_ms`.
  Result<UsageBucket> DayTotals(const std::string& key_id, int64_t now_ms);
  // Removes a key's history (its key was deleted with its project).
  Status Forget(const std::string& key_id);

 private:
  Result<KeyHistory*> LoadLocked(const std::string& key_id);
  std::string PathOf(const std::string& key_id) const;

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::mutex mutex_;
  std::unordered_map<std::string, KeyHistory> histories_;
};

// The key of the client address hashes, <key folder>/anomaly-address.key
// (32 random bytes, made when absent): outside the data folder, so the
// history's hashes cannot be tested against guessed addresses from the
// data folder alone.
Result<std::array<uint8_t, 32>> LoadAddressKey(FileSystem& file_system,
                                               const std::string& key_folder);

// Whether a key id is safe as a file name ("mpk_" and 16 hex digits).
bool IsAccessKeyId(std::string_view id);

}  // namespace minpanel::service
