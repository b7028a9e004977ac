// Online copies of a store folder, for `minpanel backup` (issue 8,
// "Backup and restore"; docs/privacy.md). Apart from store.h so that the
// engine's many includers do not rebuild for it; part of the module's
// public surface all the same.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/core.h"

namespace minpanel::store {

// What CopyStoreOnline copied.
struct StoreCopy {
  uint64_t segments = 0;  // linked (or copied across file systems)
  uint64_t segment_bytes = 0;
  uint64_t log_files = 0;
  uint64_t log_bytes = 0;
  uint64_t profile_files = 0;  // copied, each up to its last whole group
  uint64_t profile_bytes = 0;
  // The copy holds every log record before this position (file number,
  // offset) and none after: the snapshot's point in the log.
  uint64_t end_log_file = 0;
  uint64_t end_log_offset = 0;
  uint32_t attempts = 0;  // 1 unless files changed under the copy
};
// Attempts of CopyStoreOnline before it gives up (each starts again when a
// compaction, purge or trim deleted a file it needed).
inline constexpr uint32_t kOnlineCopyAttemptsMax = 50;

// Copies the store in `store_folder` into the new folder `destination`
// (absent or empty; on the same file system segments are hard links) while
// an engine — here or in another process — may be appending, flushing,
// compacting and purging: the manifest, the segment files it lists (immutable
// once listed) and each log file from the manifest's log position on, cut at
// its last whole record. Opening the copy (OpenEmbeddedEngine) recovers the
// store as it was at that point of the log, as after a crash there: every
// event acknowledged before the call, and none half-written. InvalidArgument
// when `destination` is not empty; Unavailable after kOnlineCopyAttemptsMax
// attempts that files changed under; IoError otherwise. Uses the real file
// system (hard links).
Result<StoreCopy> CopyStoreOnline(const std::string& store_folder, const std::string& destination);

// One erasure of subjects (Engine::EraseSubjects) or purge of a property
// (Engine::PurgeProperty) as a store recorded it.
struct Erasure {
  uint32_t project_id = 0;
  uint64_t log_file = 0;  // its log position
  uint64_t log_offset = 0;
  int64_t stored_at_ms = 0;
  std::vector<Id128> subjects;  // pseudonyms, sorted; empty for a property purge
  std::string property_key;     // set for a property purge
  std::string event_name;       // a property purge's event name; empty: every event
};

// The erasures of subjects and the property purges the store in
// `store_folder` (a live one, or a later copy of the same store) recorded
// at or after the log position
// (log_file, log_offset) — a backup's StoreCopy end — in log order: those
// it retired (the erasure journal in `journal_folder`, its
// Options::erasure_journal_folder; empty: none), those in force (the
// manifest) and those logged since its last flush. Reads only; a server may
// be writing the store.
Result<std::vector<Erasure>> ErasuresSince(const std::string& store_folder,
                                           const std::string& journal_folder, uint64_t log_file,
                                           uint64_t log_offset);

}  // namespace minpanel::store
