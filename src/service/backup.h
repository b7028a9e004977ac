// Backup and restore of a data folder (docs/privacy.md, "Backup and
// restore"): an online, consistent copy of the data folder — the store
// (store::CopyStoreOnline: manifest, segments, the log up to a point),
// projects, policies and their history, the audit log, saved reports —
// taken while a server runs, and the keys (pseudonym keys, visitor salts,
// access keys) copied apart, on purpose: a data backup alone cannot be
// reversed with a dictionary of ids. Internal to the service module; the
// command line is its face (`minpanel backup`, `minpanel restore`).
//
// Thread-compatible; a backup takes no lock and a restore writes only a
// new, empty folder.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit.h"
#include "core/core.h"
#include "service/config.h"

namespace minpanel::service {

// The file at a backup's root that says what it is (written last: a
// folder without it is an unfinished backup, and restore refuses it).
inline constexpr std::string_view kBackupInfoFile = "BACKUP.json";
inline constexpr uint32_t kBackupFormatVersion = 1;
// Files of the data folder a backup leaves out: the lock, temporaries, and
// the access keys (in the keys backup instead).
inline constexpr std::string_view kAccessKeysFile = "access_keys.json";

struct BackupSummary {
  int64_t taken_ms = 0;
  uint64_t files = 0;  // besides the store's
  uint64_t bytes = 0;
  uint64_t segments = 0;
  uint64_t log_files = 0;
  uint64_t store_bytes = 0;
  // The store's point in the log: every record before it is in the backup.
  uint64_t end_log_file = 0;
  uint64_t end_log_offset = 0;
  // The data and key folders the backup was taken from (absolute), where a
  // restore looks for the erasures made since.
  std::string source_data_folder;
  std::string source_key_folder;
  // restore without the old keys: the audit signing key whose checkpoints
  // a new key epoch followed (hex; empty: none, StartAuditKeyEpoch).
  std::string audit_previous_key;
  uint64_t erasures_reapplied = 0;  // restore: erasure calls made again
  uint64_t subjects_reerased = 0;
  uint64_t property_purges_reapplied = 0;  // restore: property purges made again
  // restore: the backup's audit subject files that listed a subject erased
  // since, rewritten as the erasure rewrote the live ones.
  uint64_t subject_files_rewritten = 0;
  // restore: Mixpanel-GDPR retrieval results removed because their project
  // had an erasure or property purge since the backup (or they expired).
  uint64_t gdpr_results_removed = 0;
  // restore: the retention of the configuration given (its [projects.NAME]
  // tables) applied to the restored folder at once — drops logged and
  // profiles expired — and why it could not be, if it could not (the
  // server then applies it when it starts).
  uint64_t retention_drops = 0;
  uint64_t profiles_expired = 0;
  std::string retention_failure;
};

// Where a restore finds the erasures made after the backup.
struct RestoreOptions {
  std::string from;       // the data backup folder
  std::string keys_from;  // the keys backup folder; empty: none
  // A data folder (the live one) or a later backup of the same store;
  // empty: the folder the backup was taken from.
  std::string erasures_from;
  // The key folder (or keys backup's keys/) holding that store's erasure
  // journal; empty: the key folder the backup was taken with when
  // erasures_from is empty, else "<erasures_from>.keys".
  std::string erasures_keys_from;
  // Confirms that no erasure was made after the backup, when the folder
  // that would say so is gone.
  bool no_later_erasures = false;
};

// Copies config.data_folder into the new folder `to` (absent or empty; on
// the same file system the store's segments are hard links), while a
// server may be writing it. InvalidArgument when `to` is not empty or is
// inside the data folder; as store::CopyStoreOnline otherwise.
Result<BackupSummary> BackupDataFolder(const Config& config, const std::string& to,
                                       const Clock& clock);

// Copies the key folder (pseudonym keys, visitor salts) and the data
// folder's access keys into the new folder `to`.
Result<uint64_t> BackupKeys(const Config& config, const std::string& to);

// Restores the data backup `options.from` into config.data_folder, which
// must be absent or empty, and the keys backup (if any) into the key
// folder, which must then be absent or empty; re-applies every erasure of
// subjects recorded after the backup's point in the log by the store of
// `erasures_from` (store::ErasuresSince) and purges them, so that a restore
// never brings an erased person back, and rewrites the backup's audit
// subject files that list those subjects (EraseFromSubjectFiles, route
// "restore"); then opens the restored folder once,
// as a server start would, applies the retention of `config` at once
// (Service::ApplyRetention: the drops and profile expiries the source
// logged after the backup are not journalled, so they are made again from
// the rules as of `clock`'s now), and closes it. InvalidArgument names what
// is wrong (not a finished backup, a newer format, a folder not empty, the
// erasures' folder gone without no_later_erasures).
Result<BackupSummary> RestoreDataFolder(const Config& config, const RestoreOptions& options,
                                        std::shared_ptr<Clock> clock);

// The audit log's subject files that list one of `subjects` (pseudonyms of
// one project), rewritten with `erased` in their place (docs/formats/
// audit.md, "Rewritten subject files"): for each file, `audit` is given its
// `subjects.rewrite` record (act, file, new SHA-256, count, `reference` as
// params_sha256; the caller sets key, route and projects) and must make it
// durable before the file is replaced, so that a crash in between leaves a
// text the chain states. One call at a time in the process. Returns how
// many files were rewritten. Erasure (erasure.cc) and restore (backup.cc)
// call it.
Result<uint64_t> EraseFromSubjectFiles(const std::string& audit_folder, FileSystem& file_system,
                                       const std::vector<Id128>& subjects,
                                       const std::string& reference,
                                       const std::function<Status(audit::AuditEntry)>& audit);

}  // namespace minpanel::service
