// The store module: where events live once the privacy policy has made them.
//
// An Engine accepts batches of events and profile updates and makes them
// durable before Append returns; it de-duplicates on (project, insert id)
// within a window; it scans what it holds. The embedded engine keeps a
// write-ahead log (docs/formats/wal.md) and, once a group is durable, a
// per-project in-memory buffer (the memtable) that a background thread
// flushes into immutable columnar segment files (docs/formats/segment.md)
// listed by a manifest (docs/formats/manifest.md).
//
// Engine methods are thread-safe. Append calls from many threads are
// group-committed: one write and one fdatasync serve every batch waiting.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/core.h"

namespace minpanel::store {

class SegmentReader;  // segment.h

inline constexpr uint64_t kLogFileBytesMax = 256ULL << 20;   // a log file rolls over past this
inline constexpr uint64_t kLogRecordBytesMax = 64ULL << 20;  // one batch record
// A flush starts once the memtable (all projects together) holds this many
// rows or bytes (in memory, as allocated: malloc_usable_size of every heap
// block of its events, and the Event objects at the vector's capacity).
// Encoding runs at ~260K events/s per core, so a 200K-row flush takes under a
// second and makes segments of ~5 MB (src/store/README.md, "Flush").
inline constexpr size_t kMemtableRowsMaxDefault = 200'000;
inline constexpr uint64_t kMemtableBytesMaxDefault = 256ULL << 20;
// Erasure (src/store/README.md, "Erasure"): at most this many subjects in one
// EraseSubjects call, so that its log record stays under 1.6 MB.
inline constexpr size_t kDeletionSubjectsMax = 100'000;
// DropEventsBefore names one event name of at most this many bytes (the
// ingest limit on event names, ingest::kEventNameBytesMax).
inline constexpr size_t kDeletionEventNameBytesMax = 255;
// PurgeProperty names one property key of at most this many bytes (the
// ingest limit on keys, ingest::kPropertyKeyBytesMax).
inline constexpr size_t kDeletionPropertyKeyBytesMax = 255;
// While a flush runs the memtable keeps growing; past this many times its
// thresholds (flushes falling behind, or failing) appends are refused with
// ResourceExhausted instead of growing memory without bound.
inline constexpr uint64_t kMemtableHardLimitFactor = 4;

// Which person each linked subject's rows are kept under in a folded segment
// (docs/formats/segment.md, "Folded persons"): the store knows nothing of
// identities; the caller hands it this table. `persons` holds (subject,
// person) pairs with person != subject, sorted by subject and unique.
struct SubjectFold {
  uint64_t generation = 0;  // names the map (not 0); recorded in the segment
  std::vector<std::pair<Id128, Id128>> persons;
  // The person of `subject`, or `subject` itself when it has none.
  const Id128& PersonOf(const Id128& subject) const {
    const auto found = std::lower_bound(
        persons.begin(), persons.end(), subject,
        [](const std::pair<Id128, Id128>& entry, const Id128& id) { return entry.first < id; });
    return found != persons.end() && found->first == subject ? found->second : subject;
  }
};

struct Options {
  std::string folder;  // the store's own folder (created if missing)
  std::shared_ptr<FileSystem> file_system;
  std::shared_ptr<Clock> clock;
  // De-duplication: an insert id seen within this window is dropped.
  int64_t dedup_window_ms = 7LL * 24 * 3600 * 1000;
  // Bound on remembered insert ids; the oldest are forgotten first.
  size_t dedup_entries_max = 20'000'000;
  uint64_t log_file_bytes_max = kLogFileBytesMax;
  // Flush thresholds (see kMemtableRowsMaxDefault); both at least 1.
  size_t memtable_rows_max = kMemtableRowsMaxDefault;
  uint64_t memtable_bytes_max = kMemtableBytesMaxDefault;
  // Close flushes the memtable into segments (so the next open replays
  // little). Tests of log recovery turn it off to leave the log as a crash would.
  bool flush_on_close = true;
  // Called during OpenEmbeddedEngine for each repair recovery made (a torn
  // tail cut, a headerless file replaced), with a sentence naming the file,
  // the offset and the bytes cut. May be empty.
  std::function<void(const std::string& note)> on_recovery_note;
  // The physical stage of erasure: the flush thread rewrites the segments
  // that hold rows hidden by a deletion once the oldest deletion in force
  // is this old (store clock; looked at every second), or at once on
  // PurgeDeleted. Then, as PurgeDeleted does, it rolls the log and flushes
  // (if a deletion's record is in the current log file), so that the log
  // files holding the hidden rows are trimmed and the deletions retired.
  // 0: in the background right after the deletion. The service sets it from
  // erasure_purge_deadline_hours (docs/privacy.md, "Erasure and access"),
  // and again on a reload (Engine::SetPurgeDelay).
  int64_t purge_delay_ms = 0;
  // Where a purge journals the erasures of subjects it retires, for
  // restores of older backups (erasure_journal.h; docs/privacy.md, "Backup
  // and restore"). Outside the data folder (the service puts it in the key
  // folder): it holds pseudonyms that a purge has removed from every data
  // file. Empty: no journal.
  std::string erasure_journal_folder;
  // Identity folding (docs/identity.md, "Folded segments"): set, compaction
  // writes its output with the fold this returns for the project, given the
  // project's live segment files (views without erased rows); nullptr
  // leaves rows where they are kept. Called on the flush thread, outside
  // the engine's locks; it must not call back into the engine.
  std::function<std::shared_ptr<const SubjectFold>(
      uint32_t project_id, const std::vector<std::shared_ptr<const SegmentReader>>& segments)>
      subject_fold;
  // Open rewrites every segment of an older format version into the newest
  // one, one at a time and crash-safely as compaction does (rows hidden by
  // deletions in force are left out; none are folded), before it returns
  // (`minpanel debug rewrite-segments`; src/store/README.md, "Rewriting
  // older segments").
  bool rewrite_older_segments = false;
  // With rewrite_older_segments: every segment, the newest format's too, so
  // that a store written before a change of the writer's rules (which
  // chunks are granules, the codecs) is brought to them (`minpanel debug
  // rewrite-segments --all`).
  bool rewrite_every_segment = false;
};

struct AppendBatch {
  uint32_t project_id = 0;
  std::vector<Event> events;
  std::vector<ProfileUpdate> profile_updates;
};

struct AppendResult {
  size_t events_stored = 0;
  size_t events_duplicate = 0;  // dropped by de-duplication
  size_t profile_updates_stored = 0;
  uint64_t log_bytes = 0;  // what the batch's record takes in the write-ahead log
};

struct ScanRequest {
  uint32_t project_id = 0;
  int64_t from_ms = INT64_MIN;  // inclusive
  int64_t to_ms = INT64_MAX;    // exclusive
  std::vector<std::string> event_names;  // empty: every name
  std::optional<Id128> subject;
};

// Upper bounds (microseconds) of the log fsync latency histogram buckets.
inline constexpr std::array<uint64_t, 10> kSyncLatencyBoundsUs = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 1000000};

struct Stats {
  uint64_t events = 0;           // stored, after de-duplication
  uint64_t events_duplicate = 0;  // since the engine was opened (not persisted)
  uint64_t profile_updates = 0;
  uint64_t log_bytes = 0;
  uint64_t dedup_entries = 0;
  uint64_t fsyncs = 0;
  // Non-cumulative counts per bucket of kSyncLatencyBoundsUs, last is +Inf.
  std::array<uint64_t, kSyncLatencyBoundsUs.size() + 1> sync_latency_counts{};
  uint64_t sync_latency_sum_us = 0;
  // Bytes of torn or corrupt log tail cut when the engine was opened.
  uint64_t recovery_bytes_truncated = 0;
  // Columnar segments and the memtable.
  uint64_t segments = 0;             // live segment files
  uint64_t segment_bytes = 0;
  uint64_t memtable_rows = 0;        // not yet in a segment file (flushing included)
  uint64_t memtable_bytes = 0;       // their memory as allocated (malloc_usable_size)
  uint64_t flushes = 0;              // since open, each one manifest written
  uint64_t flush_failures = 0;       // attempts that failed (retried after a pause)
  uint64_t flush_rows = 0;
  uint64_t flush_time_us_sum = 0;
  uint64_t flushes_behind = 0;       // thresholds passed while a flush still ran
  uint64_t appends_refused_memtable_full = 0;  // batches refused at the hard limit
  uint64_t compactions = 0;
  uint64_t log_files_trimmed = 0;  // since open: wholly in segments and profile files
  // Bytes of the profile files (profiles/<project>.prof): the profile
  // updates of every flushed log record (src/store/README.md, "Profiles").
  uint64_t profile_bytes = 0;
  // Erasure and time-based dropping.
  uint64_t deletions_active = 0;    // logged, not yet retired (rows may still be in files)
  // Store clock: how long ago the oldest deletion in force was logged (0
  // when none), what purge_delay_ms is measured against.
  uint64_t deletion_oldest_age_ms = 0;
  uint64_t deletions_logged = 0;    // since open
  uint64_t profiles_expired = 0;    // since open: subjects ExpireProfiles hid
  uint64_t purges = 0;              // since open: passes that rewrote or retired something
  uint64_t purge_rows_removed = 0;  // since open: rows a purge or compaction left out of segments
  uint64_t purge_segments_rewritten = 0;
  uint64_t purge_bytes_written = 0;
  // Since open: bytes of the segment files a purge replaced or dropped (so
  // what it reclaimed is this minus purge_bytes_written), and the files it
  // dropped whole (every row hidden: retention's old days).
  uint64_t purge_bytes_removed = 0;
  uint64_t purge_segments_dropped = 0;
  // Property purges (PurgeProperty): logged and not yet retired (values of
  // the key may still be in files), and since open the values a purge or
  // compaction left out of segments.
  uint64_t property_purges_active = 0;
  uint64_t purge_property_values_removed = 0;
};

using AppendCallback = std::function<void(Result<AppendResult>)>;

class Engine {
 public:
  virtual ~Engine() = default;

  // Makes the batch durable, all or nothing, then returns. Errors:
  // ResourceExhausted when the disk is full, IoError on a failed write or
  // sync, Unavailable after Close. On error nothing of the batch is stored.
  virtual Result<AppendResult> Append(AppendBatch batch) = 0;

  // Append without waiting: encodes the batch on the calling thread, then
  // returns; `done` runs once with the outcome Append would have returned,
  // on the store's writer thread (or on the calling thread when the batch
  // is refused before it is queued). `done` must be quick and must not wait
  // for another append. The batch is not kept once encoded.
  virtual void AppendAsync(AppendBatch batch, AppendCallback done) = 0;

  // Calls `visit` for each stored event matching `request`, exactly once,
  // over a snapshot taken at the call; stops early when `visit` returns false.
  // Order: segment by segment (in flush order), each in (subject, time,
  // insert id) order, then the events not yet flushed in append order. So
  // the order is stable for unchanged data but not append order.
  virtual Status Scan(const ScanRequest& request,
                      const std::function<bool(const Event&)>& visit) = 0;
  virtual Status ScanProfiles(uint32_t project_id,
                              const std::function<bool(const ProfileUpdate&)>& visit) = 0;

  // A consistent snapshot of a project's events as columnar segments, for
  // the query engine: every event stored before the call, each exactly once
  // (a subject's events may be spread over several segments). Readers stay
  // valid however long the caller keeps them.
  using SegmentSnapshot = std::vector<std::shared_ptr<const SegmentReader>>;
  virtual Result<SegmentSnapshot> Snapshot(uint32_t project_id) = 0;

  // Erases `subjects` (pseudonyms) of a project: once this returns, their
  // deletion record is in the log and fsynced, and no read — Scan,
  // ScanProfiles, Snapshot, so the query engine and export — shows an event
  // or profile update of theirs stored before the call, including after a
  // restart. Events and profile updates stored after it are kept. The rows
  // leave the segment and log files later (Options::purge_delay_ms, or
  // PurgeDeleted). Up to kDeletionSubjectsMax subjects in one record
  // (duplicates ignored). InvalidArgument when `subjects` is empty,
  // ResourceExhausted over the limit, and as Append for I/O errors (then
  // nothing is erased). Thread-safe; ordered with appends.
  virtual Status EraseSubjects(uint32_t project_id, std::vector<Id128> subjects) {
    (void)project_id;
    (void)subjects;
    return Status::Unavailable("this engine cannot erase subjects");
  }
  // Hides every event of a project with time_ms < `before_ms` stored before
  // the call, as EraseSubjects does (events stored later are kept, whatever
  // their time). Profile updates are not affected.
  virtual Status DropBefore(uint32_t project_id, int64_t before_ms) {
    (void)project_id;
    (void)before_ms;
    return Status::Unavailable("this engine cannot drop events");
  }
  // As DropBefore, for the events named `event_name` only (retention per
  // event name). InvalidArgument when the name is empty or longer than
  // kDeletionEventNameBytesMax.
  virtual Status DropEventsBefore(uint32_t project_id, std::string event_name,
                                  int64_t before_ms) {
    (void)project_id;
    (void)event_name;
    (void)before_ms;
    return Status::Unavailable("this engine cannot drop events");
  }
  // Hides every value of the property `key` stored before the call, as
  // EraseSubjects does for rows: once this returns its deletion record is
  // durable and no read — Scan, Snapshot (queries, export), ScanProfiles —
  // shows the key on an event (or profile update) stored before it, after a
  // restart too; the rows themselves and their other properties stay. With
  // `event_name` empty it applies to every event and to every profile
  // update (an update left with no property is hidden, but $delete);
  // otherwise to the events of that name only, and no profile update.
  // Values stored after the call are kept. The physical stage is the same
  // purge as erasure's: segments rewritten without the key, log files
  // rewritten without its values. InvalidArgument when `key` is empty or
  // over kDeletionPropertyKeyBytesMax, or `event_name` over
  // kDeletionEventNameBytesMax.
  virtual Status PurgeProperty(uint32_t project_id, std::string key, std::string event_name) {
    (void)project_id;
    (void)key;
    (void)event_name;
    return Status::Unavailable("this engine cannot purge properties");
  }
  // Profile expiry: hides the profile of every subject of the project that
  // has user profile updates (no group's) and was not seen since
  // `before_ms` — no profile update received (the store's clock at its
  // append, not the update's own time_ms) and no event with a time at or
  // after it. Logged as deletion records of the subjects' profile updates only
  // (their events are kept), each of up to kDeletionSubjectsMax subjects,
  // durable as EraseSubjects' are; profile updates stored later start a new
  // profile; the purge removes the hidden updates from the profile file.
  // Returns the subjects expired. A subject seen while the call runs (after
  // its scan of the events) may still expire. Errors as EraseSubjects.
  virtual Result<uint64_t> ExpireProfiles(uint32_t project_id, int64_t before_ms) {
    (void)project_id;
    (void)before_ms;
    return Status::Unavailable("this engine cannot expire profiles");
  }
  // The physical stage, now: flushes the memtable, rewrites every segment
  // holding hidden rows without them (crash-safely), lets the log files that
  // held them be trimmed, and retires the deletions that no file needs any
  // more. Returns once done; an error leaves the deletions in force.
  virtual Status PurgeDeleted() { return Status::Ok(); }
  // Replaces Options::purge_delay_ms from now on (a configuration reload):
  // a deletion in force that is already older than the new delay is purged
  // in the background at once. Thread-safe. Engines without a physical
  // stage ignore it.
  virtual void SetPurgeDelay(int64_t purge_delay_ms) { (void)purge_delay_ms; }

  // The bytes a project takes on disk: its segment files and its records
  // in the write-ahead log files not yet trimmed (every event still in the
  // memtable is there, and profile updates live only there). For the
  // per-project disk quota. This default counts the snapshot's segments.
  virtual Result<uint64_t> ProjectDiskBytes(uint32_t project_id);

  virtual Stats GetStats() const = 0;

  // Finishes pending appends and closes the files. Idempotent.
  virtual Status Close() = 0;
};

// Opens (creating if needed) the embedded engine in options.folder,
// replaying the log: a torn or corrupt tail is truncated, nothing before it
// is lost.
Result<std::unique_ptr<Engine>> OpenEmbeddedEngine(const Options& options);

// Writes one log file (e.g. <folder>/wal/000001.log) to `out` in readable
// form, a line per record and per event, for `minpanel debug dump`. Returns
// Corruption (after printing what came before) at a torn or corrupt record.
Status DumpLogFile(FileSystem& file_system, const std::string& path, std::ostream& out);

// Writes one segment file (docs/formats/segment.md) to `out` in readable
// form: header, footer indexes and zone maps, every chunk of every block with
// its decoded values, and every row. Returns Corruption (after printing what
// came before) at the first damaged part.
Status DumpSegmentFile(FileSystem& file_system, const std::string& path, std::ostream& out);

// Writes the manifest (docs/formats/manifest.md) readably: the log position
// and a line per live segment. Corruption when it does not decode.
Status DumpManifestFile(FileSystem& file_system, const std::string& path, std::ostream& out);

// DumpSegmentFile or DumpManifestFile when the file starts with the segment
// or manifest magic, else DumpLogFile.
Status DumpStoreFile(FileSystem& file_system, const std::string& path, std::ostream& out);

}  // namespace minpanel::store
