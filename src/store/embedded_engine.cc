// The embedded engine: a write-ahead log with group commit, an in-memory
// de-duplication index rebuilt from the log on open, a per-project memtable
// of the events logged since the last flush, and immutable segment files
// listed by a manifest.
//
// Threads: callers of Append encode their batch, enqueue it and wait on their
// own condition variable (AppendAsync callers leave a callback instead); one
// writer thread owns the open log file, the dedup index and the write
// buffer, and moves each durable group's events into the memtable before
// acknowledging it. One flush thread has the writer roll the log to a new
// file and swap the whole memtable out (under `data_mutex_`) between two
// groups, so that the flushed records fill whole files; it then writes the
// segments and the manifest, and deletes the files the manifest covers.
// `mutex_` guards the queue, the list of log files with their durable sizes
// and the log stats; `data_mutex_` guards the memtable, the memtable being
// flushed, the live segments and the flush stats. Neither is held while the
// other is taken.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "core/time_units.h"
#include "store/dedup_index.h"
#include "store/deletion.h"
#include "store/erasure_journal.h"
#include "store/log_reader.h"
#include "store/manifest.h"
#include "store/mix.h"
#include "store/profile_file.h"
#include "store/segment.h"
#include "store/segment_merge.h"
#include "store/store.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kFolderMode = 0700;
constexpr uint32_t kLogFileMode = 0600;
constexpr size_t kLogFileNameDigits = 6;
// A group takes queued batches up to this many encoded bytes (at least one
// batch), bounding the writer's buffer however many callers wait.
constexpr size_t kGroupBytesMax = 32u << 20;
constexpr uint32_t kManifestFileMode = 0600;
constexpr size_t kSegmentNumberDigits = 6;
// A failed flush is retried after this pause (the log keeps every event meanwhile).
constexpr auto kFlushRetryPause = std::chrono::seconds(1);
// In-memory segments that stand in for the memtable hold at most this many rows.
constexpr size_t kInMemorySegmentRows = 1 << 20;
// Compaction merges the segments of one (project, day) once at least this
// many of them are smaller than kCompactionInputRowsMax, into one segment of
// at most kCompactionOutputRowsMax rows.
constexpr size_t kCompactionInputsMin = 4;
constexpr uint64_t kCompactionInputRowsMax = 1'000'000;
constexpr uint64_t kCompactionOutputRowsMax = 4'000'000;
// A purge pass rewrites segments holding hidden rows until it has read this
// many rows, then writes the manifest and lets the flush thread flush again.
constexpr uint64_t kPurgeRowsPerPass = 4'000'000;
// Row masks of one snapshot's segments are computed on up to this many
// threads (each taking at least kViewSegmentsPerThreadMin segments).
constexpr size_t kViewThreadsMax = 4;
constexpr size_t kViewSegmentsPerThreadMin = 16;
// While a deletion waits for purge_delay_ms the flush thread looks at it this often.
constexpr auto kPurgeCheckPause = std::chrono::seconds(1);
constexpr uint32_t kProfileFileMode = 0600;

// "YYYY-MM-DD" of the UTC day `day` days after 1970-01-01 (Hinnant's civil_from_days).
std::string UtcDayName(int64_t day) {
  day += 719468;
  const int64_t era = (day >= 0 ? day : day - 146096) / 146097;
  const int64_t day_of_era = day - era * 146097;
  const int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t month_index = (5 * day_of_year + 2) / 153;
  const int64_t day_of_month = day_of_year - (153 * month_index + 2) / 5 + 1;
  const int64_t month = month_index < 10 ? month_index + 3 : month_index - 9;
  const int64_t year = year_of_era + era * 400 + (month <= 2 ? 1 : 0);
  char text[80];
  std::snprintf(text, sizeof(text), "%04lld-%02lld-%02lld", static_cast<long long>(year),
                static_cast<long long>(month), static_cast<long long>(day_of_month));
  return text;
}

int64_t UtcDay(int64_t time_ms) {
  return time_ms >= 0 ? time_ms / kDayMs : -((-(time_ms + 1)) / kDayMs) - 1;
}

// What the allocator really gave a heap block: malloc_usable_size, which
// both glibc's malloc and jemalloc (linked into the binary) provide. A
// string short enough to live inside its object has no heap block.
uint64_t HeapBytes(const std::string& text) {
  const char* data = text.data();
  const char* object = reinterpret_cast<const char*>(&text);
  if (data >= object && data < object + sizeof(std::string)) {
    return 0;
  }
  return malloc_usable_size(const_cast<char*>(data));
}

template <typename T>
uint64_t HeapBytes(const std::vector<T>& values) {
  return values.capacity() == 0 ? 0 : malloc_usable_size(const_cast<T*>(values.data()));
}

// What a property array's heap blocks take, as allocated (not as sized):
// the array at its capacity, and each key, string, list and list item.
uint64_t PropertiesMemoryBytes(const Properties& properties) {
  uint64_t bytes = HeapBytes(properties);
  for (const Property& property : properties) {
    bytes += HeapBytes(property.key);
    if (property.value.type() == Value::Type::kString) {
      bytes += HeapBytes(property.value.as_string());
    } else if (property.value.type() == Value::Type::kList) {
      bytes += HeapBytes(property.value.as_list());
      for (const std::string& item : property.value.as_list()) {
        bytes += HeapBytes(item);
      }
    }
  }
  return bytes;
}

// What an event's heap blocks take, as allocated: its name and its
// properties. The Event object itself lives in the memtable's vector,
// counted at that vector's capacity (AddEventsLocked). Measured against the
// allocator in EmbeddedEngineTest.MemtableBytesAreWhatTheAllocatorGave.
uint64_t EventMemoryBytes(const Event& event) {
  return HeapBytes(event.name) + PropertiesMemoryBytes(event.properties);
}

// As EventMemoryBytes, for a profile update held in the memtable (its
// object counted at sizeof, not at the vector's capacity).
uint64_t ProfileUpdateMemoryBytes(const ProfileUpdate& update) {
  return sizeof(StoredProfileUpdate) + HeapBytes(update.group_key) +
         PropertiesMemoryBytes(update.properties);
}

// A profile file group's updates were all stored before its log end, so a
// deletion at or after that end applies to them (as to a segment's rows,
// deletion.h): RowHidden hides a row whose position is before the
// deletion's, so the group's rows stand one byte before its end.
LogPosition GroupRowPosition(const LogPosition& group_log_end) {
  return LogPosition{group_log_end.file_number,
                     group_log_end.offset > 0 ? group_log_end.offset - 1 : 0};
}

// Sets seen[i] for each of `candidates` (sorted) with a row of `segment`
// at or after `since_ms`; reads only the blocks whose zone maps allow one.
// In a folded segment a row counts for the person it is kept under and for
// its stored subject (ReadStoredSubjects), whose rows may lie in any block:
// a person's other ids keep a profile longer, never shorter.
Status MarkSubjectsSeenSince(const SegmentReader& segment, int64_t since_ms,
                             const std::vector<Id128>& candidates, std::vector<bool>* seen) {
  const bool folded = segment.summary().stored_subject_runs > 0;
  BlockFilter filter;
  filter.time_min_ms = since_ms;
  if (!folded) {
    filter.subject_min = candidates.front();
    filter.subject_max = candidates.back();
  }
  std::vector<int64_t> times;
  SubjectRuns runs;
  std::vector<StoredSubjectRun> stored_runs;
  const auto mark = [&](const Id128& subject, size_t row_begin, size_t row_end) {
    const auto found = std::lower_bound(candidates.begin(), candidates.end(), subject);
    if (found != candidates.end() && *found == subject &&
        std::any_of(times.begin() + static_cast<std::ptrdiff_t>(row_begin),
                    times.begin() + static_cast<std::ptrdiff_t>(row_end),
                    [since_ms](int64_t time_ms) { return time_ms >= since_ms; })) {
      (*seen)[static_cast<size_t>(found - candidates.begin())] = true;
    }
  };
  for (const size_t block_idx : segment.MatchingBlocks(filter)) {
    const SegmentBlockInfo& block = segment.block(block_idx);
    const auto first = std::lower_bound(candidates.begin(), candidates.end(), block.subject_first);
    if (!folded && (first == candidates.end() || block.subject_last < *first)) {
      continue;
    }
    MP_RETURN_IF_ERROR(segment.ReadSubjects(block_idx, &runs));
    MP_RETURN_IF_ERROR(segment.ReadTimes(block_idx, &times));
    stored_runs.clear();
    if (folded) {
      MP_RETURN_IF_ERROR(segment.ReadStoredSubjects(block_idx, &stored_runs));
    }
    const auto corrupt = [&] {
      return Status::Corruption(segment.name() + ": block " + std::to_string(block_idx) +
                                " has subject rows past its " + std::to_string(times.size()) +
                                " times");
    };
    size_t run_start = 0;
    for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
      const size_t run_end = run_start + runs.run_lengths[run_idx];
      if (run_end > times.size()) {
        return corrupt();
      }
      mark(runs.subjects[run_idx], run_start, run_end);
      run_start = run_end;
    }
    for (const StoredSubjectRun& run : stored_runs) {
      const size_t run_end = size_t{run.row_begin} + run.row_count;
      if (run_end > times.size()) {
        return corrupt();
      }
      mark(run.subject, run.row_begin, run_end);
    }
  }
  return Status::Ok();
}

bool MatchesRequest(const ScanRequest& request, const Event& event) {
  if (event.time_ms < request.from_ms || event.time_ms >= request.to_ms) {
    return false;
  }
  if (request.subject.has_value() && event.subject != *request.subject) {
    return false;
  }
  return request.event_names.empty() ||
         std::find(request.event_names.begin(), request.event_names.end(), event.name) !=
             request.event_names.end();
}

// Encodes events (of one project) into in-memory segments of at most
// kInMemorySegmentRows rows, for a snapshot of what is not yet in files.
Result<Engine::SegmentSnapshot> EncodeInMemory(std::span<const Event> events,
                                               uint32_t project_id, const std::string& label) {
  Engine::SegmentSnapshot readers;
  SegmentWriteOptions options;
  options.project_id = project_id;
  for (size_t begin = 0; begin < events.size(); begin += kInMemorySegmentRows) {
    const size_t count = std::min(kInMemorySegmentRows, events.size() - begin);
    MP_ASSIGN_OR_RETURN(std::string image, EncodeSegment(events.subspan(begin, count), options));
    MP_ASSIGN_OR_RETURN(
        std::unique_ptr<SegmentReader> reader,
        SegmentReader::Open(std::move(image), label + "-" + std::to_string(readers.size())));
    readers.push_back(std::move(reader));
  }
  return readers;
}

// The (project, insert id) pairs kept so far in the group being written; they
// join the DedupIndex only once the group is durable.
class GroupIdSet {
 public:
  void Reset(size_t expected_entries) {
    const size_t slots = std::bit_ceil(std::max<size_t>(16, expected_entries * 2));
    slots_.assign(slots, Slot{});
  }

  // True when the pair was absent (and is now present).
  bool Insert(uint32_t project_id, const Id128& id) {
    const size_t mask = slots_.size() - 1;
    size_t slot = static_cast<size_t>(Mix64(Mix64(id.high) ^ id.low ^ project_id)) & mask;
    while (slots_[slot].used) {
      const Slot& existing = slots_[slot];
      if (existing.id == id && existing.project_id == project_id) {
        return false;
      }
      slot = (slot + 1) & mask;
    }
    slots_[slot] = Slot{id, project_id, true};
    return true;
  }

 private:
  struct Slot {
    Id128 id;
    uint32_t project_id = 0;
    bool used = false;
  };
  std::vector<Slot> slots_;
};

void PutFixed32At(uint32_t value, char* bytes) {
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    bytes[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
  }
}

std::optional<uint64_t> ParseLogFileName(const std::string& name) {
  constexpr std::string_view kSuffix = ".log";
  if (name.size() < kLogFileNameDigits + kSuffix.size() || !name.ends_with(kSuffix)) {
    return std::nullopt;
  }
  const std::string_view digits(name.data(), name.size() - kSuffix.size());
  uint64_t number = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (error != std::errc() || end != digits.data() + digits.size() || number == 0) {
    return std::nullopt;
  }
  return number;
}

size_t SyncLatencyBucket(uint64_t latency_us) {
  for (size_t bucket_idx = 0; bucket_idx < kSyncLatencyBoundsUs.size(); ++bucket_idx) {
    if (latency_us <= kSyncLatencyBoundsUs[bucket_idx]) {
      return bucket_idx;
    }
  }
  return kSyncLatencyBoundsUs.size();
}

class EmbeddedEngine final : public Engine {
 public:
  explicit EmbeddedEngine(const Options& options)
      : options_(options),
        file_system_(options.file_system),
        wal_folder_(options.folder + "/wal"),
        segments_folder_(options.folder + "/segments"),
        profiles_folder_(options.folder + "/profiles"),
        manifest_path_(options.folder + "/MANIFEST"),
        dedup_(options.dedup_entries_max, options.dedup_window_ms),
        purge_delay_ms_(options.purge_delay_ms) {}

  ~EmbeddedEngine() override { (void)Close(); }

  Status Open();
  Result<AppendResult> Append(AppendBatch batch) override;
  void AppendAsync(AppendBatch batch, AppendCallback done) override;
  Status Scan(const ScanRequest& request,
              const std::function<bool(const Event&)>& visit) override;
  Status ScanProfiles(uint32_t project_id,
                      const std::function<bool(const ProfileUpdate&)>& visit) override;
  // As ScanProfiles, with each update's store time (`stored_at_ms` of the
  // log record it came in: when the store received it, by its clock).
  Status ScanProfilesWithArrival(
      uint32_t project_id,
      const std::function<bool(const ProfileUpdate&, int64_t stored_at_ms)>& visit);
  Result<SegmentSnapshot> Snapshot(uint32_t project_id) override;
  Result<uint64_t> ProjectDiskBytes(uint32_t project_id) override;
  Status EraseSubjects(uint32_t project_id, std::vector<Id128> subjects) override;
  Status DropBefore(uint32_t project_id, int64_t before_ms) override;
  Status DropEventsBefore(uint32_t project_id, std::string event_name,
                          int64_t before_ms) override;
  Status PurgeProperty(uint32_t project_id, std::string key, std::string event_name) override;
  Result<uint64_t> ExpireProfiles(uint32_t project_id, int64_t before_ms) override;
  Status PurgeDeleted() override;
  void SetPurgeDelay(int64_t purge_delay_ms) override;
  Stats GetStats() const override;
  Status Close() override;

 private:
  // A batch between its caller and the writer: encoded, with what the
  // writer needs to de-duplicate it; the events themselves are not kept.
  struct PendingAppend {
    uint32_t project_id = 0;
    // The events, for the memtable; ComposeRecord keeps only those stored.
    std::vector<Event> events;
    // EventMemoryBytes of each event, computed by the caller (outside the locks).
    std::vector<uint64_t> event_bytes;
    std::vector<Id128> insert_ids;     // of each event, in order
    size_t profile_updates = 0;
    // The profile updates themselves, for the memtable, and the store time
    // their record was written with (set by ComposeRecord).
    std::vector<ProfileUpdate> profile_update_objects;
    int64_t stored_at_ms = 0;
    std::string body;                 // encoded events, then profile updates
    std::vector<uint32_t> event_ends;  // end offset in `body` of each event
    uint32_t body_crc = 0;
    // Written by the writer thread under mutex_.
    Status status;
    AppendResult result;
    bool done = false;
    std::condition_variable done_cv;
    AppendCallback callback;  // set for AppendAsync; then the writer owns this
    // Set for EraseSubjects and DropBefore: the record is this deletion.
    std::optional<Deletion> deletion;
    uint64_t record_offset = 0;  // of the deletion's record, set by ComposeRecord
  };
  struct LogFileInfo {
    uint64_t number = 0;
    uint64_t durable_bytes = 0;
    // It holds profile updates not yet in a profile file (until a flush
    // appends them there), so it is not trimmed.
    bool has_profile_updates = false;
    // Bytes of each project's records in the file (a rewrite by a purge pads
    // and keeps the file's size, so these stay what the file holds).
    std::map<uint32_t, uint64_t> project_bytes;
  };
  // The events of one project logged since the last flush began.
  struct Memtable {
    std::vector<Event> events;
    // Profile updates logged since the last flush began, in store order;
    // the flush appends them to the project's profile file.
    std::vector<StoredProfileUpdate> profiles;
    uint64_t bytes = 0;
    uint64_t version = 0;  // from memtable_versions_, changed by every append
    SegmentSnapshot encoded;  // cache for Snapshot, valid when encoded_version == version
    uint64_t encoded_version = 0;
  };
  // The memtable of one project that the flush thread is writing out.
  struct FlushingMemtable {
    std::shared_ptr<const std::vector<Event>> events;  // never null
    std::shared_ptr<const std::vector<StoredProfileUpdate>> profiles;  // never null
    uint64_t bytes = 0;
    SegmentSnapshot encoded;  // cache for Snapshot, empty until first asked
  };
  // A project's profile file (profile_file.h), as the flush thread knows it.
  struct ProfileFileState {
    uint64_t bytes = 0;    // header and whole groups: what the file holds
    LogPosition log_end;   // of its last group: profile updates before it are in the file
  };
  struct LiveSegment {
    uint32_t project_id = 0;
    std::shared_ptr<const SegmentReader> reader;
    std::string path;  // as in the manifest
    LogPosition log_end;  // as in the manifest
    // What reads use: `reader`, or a view hiding the rows that the
    // deletions of generation `view_generation` hide.
    std::shared_ptr<const SegmentReader> view;
    uint64_t view_generation = UINT64_MAX;
  };

  std::string LogPath(uint64_t number) const;
  void Note(const std::string& note);
  // Recovery.
  Status ReplayFile(uint64_t number, bool is_last, uint64_t* durable_bytes);
  Status ApplyRecord(std::string_view payload, const LogPosition& position);
  Status ApplyDeletionRecord(std::string_view payload, const LogPosition& position);
  // Erasure.
  Status EnqueueDeletion(Deletion deletion);
  void ApplyPropertyPurgeLocked(const Deletion& deletion);
  // Publishes a new deletion state with `deletion` (unless one at the same
  // position is already in force) and wakes the purge.
  void RecordDeletionLocked(const Deletion& deletion);
  // Removes the rows `deletion` hides from the memtables and publishes a new
  // deletion state (unless one at the same position is already in force).
  void ApplyDeletionLocked(const Deletion& deletion);
  // The readers of a project's live segments as reads must see them (views
  // for segments with hidden rows), computing stale views outside the lock.
  Result<SegmentSnapshot> LiveReaders(uint32_t project_id);
  struct ReaderSet {
    struct Stale {
      size_t position = 0;  // in `readers`
      std::shared_ptr<const SegmentReader> reader;
      LogPosition log_end;
    };
    SegmentSnapshot readers;
    std::vector<Stale> stale;  // readers still to be replaced by views
    std::shared_ptr<const DeletionState> state;
  };
  // Under data_mutex_ (with the memtables, for one consistent snapshot),
  // then outside it.
  void CollectReadersLocked(uint32_t project_id, ReaderSet* set) const;
  Status ResolveViews(uint32_t project_id, ReaderSet* set);
  bool PurgeDueLocked() const;
  // Whether a deletion in force has its record at or after the manifest's
  // log position file, so that only a log roll and a flush can let the
  // purge retire it (and trim the log file holding the rows it hides).
  bool PurgeNeedsRollLocked() const;
  // One purge pass (flush thread): rewrites segments with hidden rows, up to
  // kPurgeRowsPerPass rows, then retires what no file needs. True when work is left.
  Result<bool> PurgeOnce();
  Result<bool> RewriteHidden(const DeletionState& state);
  Status RetireDeletions(const DeletionState& state);
  // Rewrites one log file (wholly in segments) without the rows `state`
  // hides and without the records of the deletions `dropping`, keeping
  // every record's offset (padding records fill the gaps).
  Status RewriteLogFile(const LogFileInfo& info, const DeletionState& state,
                        const std::vector<LogPosition>& dropping);
  Status LoadManifest();
  // Opens every project's profile file, cutting a group left incomplete.
  Status LoadProfileFiles();
  // Appends each project's flushing profile updates to its profile file
  // as a group ending at `position`, unless the file already holds it (a
  // flush retried after a failure). `*appended` gets each file's new size.
  Status AppendProfileGroups(
      const std::vector<std::pair<uint32_t, std::shared_ptr<const std::vector<StoredProfileUpdate>>>>&
          projects,
      const LogPosition& position, std::map<uint32_t, uint64_t>* appended);
  // Rewrites each profile file without the updates `state` hides.
  Status RewriteProfileFiles(const DeletionState& state);
  std::string ProfilePath(uint32_t project_id) const;
  Status RemoveOrphans(const std::set<std::string>& live_paths);
  // Memtable and flush.
  void AddToMemtable(std::vector<PendingAppend*> const& group);
  // Moves `events` into the project's memtable. `event_bytes`, when given,
  // holds EventMemoryBytes of each event with its properties already sorted
  // by key (Encode computes both in the caller's thread); otherwise both are
  // done here.
  void AddEventsLocked(uint32_t project_id, std::vector<Event>* events,
                       const std::vector<uint64_t>* event_bytes = nullptr);
  void AddProfilesLocked(uint32_t project_id, int64_t stored_at_ms,
                         std::vector<ProfileUpdate>* updates);
  bool MemtableOverThresholdLocked() const;
  // True (counting `batches` refused) at the memtable's hard limit.
  bool MemtableFull(size_t batches);
  void FlushLoop();
  // Has the writer thread (or, once it has stopped, this one) roll the log
  // and swap the memtable out; returns with data_mutex_ held again, false
  // when Close came first and nothing was rolled.
  bool SwapAtLogRoll(std::unique_lock<std::mutex>& lock, bool stopping);
  void RollLogAndSwapMemtables();
  void SwapMemtablesLocked();
  Status FlushImmutable();
  Status WritePartition(uint32_t project_id, int64_t day, std::span<const Event> events,
                        ManifestSegment* entry);
  // Names a new segment file of the partition in `entry` (creating the
  // project's folder if needed).
  Status NewPartitionEntry(uint32_t project_id, int64_t day, ManifestSegment* entry);
  // Merges `inputs` (views) into a new segment of the partition with
  // MergeSegmentsToFile and opens it; `*reader` stays null when no input row
  // is visible (then no file is written).
  // With `fold`, folds the rows into their persons (compaction); without,
  // rows stay where they are kept (the purge).
  Status MergePartition(uint32_t project_id, int64_t day,
                        std::span<const std::shared_ptr<const SegmentReader>> inputs,
                        const SubjectFold* fold, ManifestSegment* entry,
                        std::unique_ptr<SegmentReader>* reader);
  Status CreateLogFile(uint64_t number);
  Status OpenLastLogFile(uint64_t number, uint64_t durable_bytes, bool has_profile_updates);
  Status LoadRecentInsertIds();
  void TrimLog(const LogPosition& position);
  Status CompactOnce();
  // `fold`: with the service's subject fold, if it set one (compaction);
  // false keeps rows where they are (a rewrite into the newest format).
  Status MergeSegments(const std::vector<size_t>& inputs, ManifestSegment* output,
                       std::shared_ptr<const SegmentReader>* reader, bool fold = true);
  // Lists `output` (unless `reader` is null: nothing was left) instead of
  // the manifest entries `inputs` in a new manifest, then swaps the readers
  // and deletes the inputs' files (CompactOnce's last step).
  Status ReplaceSegments(const std::vector<size_t>& inputs, const ManifestSegment& output,
                         const std::shared_ptr<const SegmentReader>& reader);
  // Options::rewrite_older_segments, in Open before the threads start.
  Status RewriteOlderSegments();
  // Writer thread.
  void WriterLoop();
  void CommitGroup(const std::vector<PendingAppend*>& group);
  // Writes, syncs and publishes a group the memtable has room for.
  void CommitGroupNow(const std::vector<PendingAppend*>& group);
  Status PrepareLogForWrite();
  Status RepairLog();
  Status RollLogFile();
  // Starts a new log file unless the current one holds no record; a failure
  // only leaves the current file in use.
  void RollLogForFlush();
  // Encodes the batch and moves its events into `pending`.
  static Status Encode(AppendBatch& batch, PendingAppend* pending);
  Status Enqueue(PendingAppend* pending);
  void ComposeRecord(PendingAppend* pending, int64_t stored_at_ms);
  Status WriteAndSync();
  void PublishGroup(const std::vector<PendingAppend*>& group, uint64_t sync_latency_us);
  void FinishGroup(const std::vector<PendingAppend*>& group, const Status& status);

  const Options options_;
  const std::shared_ptr<FileSystem> file_system_;
  const std::string wal_folder_;
  const std::string segments_folder_;
  const std::string profiles_folder_;
  const std::string manifest_path_;

  // Owned by the writer thread once it runs (by Open before).
  DedupIndex dedup_;
  GroupIdSet group_ids_;
  std::vector<std::pair<uint32_t, Id128>> group_kept_ids_;
  std::vector<size_t> kept_event_indices_;
  std::string write_buffer_;
  std::unique_ptr<WritableFile> file_;
  uint64_t file_number_ = 0;
  uint64_t file_durable_bytes_ = 0;  // the file holds exactly this much unless needs_repair_
  bool needs_repair_ = false;

  mutable std::mutex mutex_;
  std::condition_variable writer_cv_;
  std::deque<PendingAppend*> queue_;
  bool closing_ = false;
  bool roll_requested_ = false;  // by the flush thread: roll and swap between groups
  std::vector<LogFileInfo> files_;
  Stats stats_;
  bool replay_found_profile_updates_ = false;  // Open only
  std::map<uint32_t, uint64_t> replay_project_bytes_;  // Open only: of the file replayed
  uint32_t replay_file_version_ = kWalFormatVersion;   // Open only: of the file replayed

  // The manifest on disk; written by Open, then only by the flush thread.
  Manifest manifest_;
  uint64_t next_segment_number_ = 1;  // flush thread; never reused, even after a failure
  std::map<uint32_t, ProfileFileState> profile_files_;  // Open, then the flush thread

  mutable std::mutex data_mutex_;
  std::condition_variable flush_cv_;
  std::map<uint32_t, Memtable> memtables_;
  uint64_t memtable_rows_ = 0;   // of memtables_
  uint64_t memtable_bytes_ = 0;  // of memtables_ (profile updates included)
  uint64_t memtable_profile_updates_ = 0;  // of memtables_; count towards memtable_rows_max
  // What readers read of each profile file: its whole groups as of the last
  // flush published (so never a group whose updates are still flushing).
  std::map<uint32_t, uint64_t> profile_visible_bytes_;
  uint64_t flushing_bytes_ = 0;  // of flushing_, as swapped out
  uint64_t memtable_versions_ = 0;
  LogPosition memtable_position_;  // every record before it is in a memtable or a segment
  std::map<uint32_t, FlushingMemtable> flushing_;
  LogPosition flushing_position_;
  std::vector<LiveSegment> segments_;
  bool flush_requested_ = false;
  std::shared_ptr<const DeletionState> deletions_ = MakeDeletionState({}, 0);
  uint64_t deletion_generation_ = 0;
  bool purge_dirty_ = false;              // a purge pass may find work
  int64_t purge_delay_ms_;                // Options::purge_delay_ms, or SetPurgeDelay's
  uint64_t purge_tickets_requested_ = 0;  // by PurgeDeleted
  uint64_t purge_tickets_done_ = 0;
  Status purge_status_;
  std::condition_variable purge_cv_;
  uint64_t rolls_ = 0;  // log rolls for a flush, for SwapAtLogRoll

  bool flush_stopping_ = false;
  bool behind_counted_ = false;
  Stats data_stats_;  // the segment and memtable fields only

  std::mutex close_mutex_;
  bool closed_ = false;
  std::thread writer_;
  std::thread flusher_;
};

std::string EmbeddedEngine::LogPath(uint64_t number) const {
  std::string digits = std::to_string(number);
  if (digits.size() < kLogFileNameDigits) {
    digits.insert(0, kLogFileNameDigits - digits.size(), '0');
  }
  return wal_folder_ + "/" + digits + ".log";
}

void EmbeddedEngine::Note(const std::string& note) {
  if (options_.on_recovery_note) {
    options_.on_recovery_note(note);
  }
}

Status EmbeddedEngine::Open() {
  MP_RETURN_IF_ERROR(file_system_->CreateDirectories(wal_folder_, kFolderMode));
  MP_RETURN_IF_ERROR(LoadManifest());
  MP_RETURN_IF_ERROR(LoadProfileFiles());
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                      file_system_->ListDirectory(wal_folder_));
  std::vector<uint64_t> numbers;
  for (const std::string& name : names) {
    if (const std::optional<uint64_t> number = ParseLogFileName(name)) {
      numbers.push_back(*number);
    }
  }
  std::sort(numbers.begin(), numbers.end());
  uint64_t last_durable_bytes = 0;
  for (size_t file_idx = 0; file_idx < numbers.size(); ++file_idx) {
    const bool is_last = file_idx + 1 == numbers.size();
    uint64_t durable_bytes = 0;
    replay_found_profile_updates_ = false;
    replay_project_bytes_.clear();
    MP_RETURN_IF_ERROR(ReplayFile(numbers[file_idx], is_last, &durable_bytes));
    if (durable_bytes > 0 && !is_last) {
      files_.push_back(LogFileInfo{numbers[file_idx], durable_bytes, replay_found_profile_updates_,
                                   replay_project_bytes_});
      stats_.log_bytes += durable_bytes;
    }
    last_durable_bytes = durable_bytes;
  }
  dedup_.Expire(options_.clock->NowMs());
  stats_.dedup_entries = dedup_.size();
  if (numbers.empty() || last_durable_bytes == 0) {
    MP_RETURN_IF_ERROR(CreateLogFile(numbers.empty() ? 1 : numbers.back()));
  } else {
    MP_RETURN_IF_ERROR(
        OpenLastLogFile(numbers.back(), last_durable_bytes, replay_found_profile_updates_));
    // A file of an older format is never appended to: records are written
    // in the newest encoding only, so a new file starts at the newest.
    if (replay_file_version_ < kWalFormatVersion) {
      MP_RETURN_IF_ERROR(RollLogFile());
    }
  }
  // Profile updates in log files the manifest has moved past are not in
  // a profile file yet: a folder of a binary that kept them only in the
  // log, or a crash before a flush's profile groups were durable. The first
  // flush, right away, moves them there, and the trim then deletes those files.
  bool profiles_to_move = false;
  {
    std::lock_guard lock(mutex_);
    for (const LogFileInfo& info : files_) {
      profiles_to_move |=
          info.has_profile_updates && info.number < manifest_.log_position.file_number;
    }
  }
  {
    std::lock_guard lock(data_mutex_);
    memtable_position_ = LogPosition{file_number_, file_durable_bytes_};
    flushing_position_ = manifest_.log_position;
    flush_requested_ = MemtableOverThresholdLocked() || profiles_to_move;
  }
  if (options_.rewrite_older_segments) {
    MP_RETURN_IF_ERROR(RewriteOlderSegments());
  }
  writer_ = std::thread([this] { WriterLoop(); });
  flusher_ = std::thread([this] { FlushLoop(); });
  return Status::Ok();
}

// Reads the manifest (none yet: no segments), opens every segment it lists
// and deletes segment files it does not list. A listed segment that is
// missing or damaged is Corruption naming it: its events are no longer in
// the log, so going on without it would lose them silently.
Status EmbeddedEngine::LoadManifest() {
  MP_RETURN_IF_ERROR(file_system_->CreateDirectories(segments_folder_, kFolderMode));
  MP_RETURN_IF_ERROR(file_system_->SyncDirectory(options_.folder));
  // A manifest write that died before its rename leaves only this.
  const std::string manifest_temporary = manifest_path_ + ".tmp";
  if (file_system_->Exists(manifest_temporary)) {
    MP_RETURN_IF_ERROR(file_system_->Remove(manifest_temporary));
    Note(manifest_temporary + ": removed (a manifest write that did not finish)");
  }
  std::set<std::string> live_paths;
  if (file_system_->Exists(manifest_path_)) {
    MP_ASSIGN_OR_RETURN(const std::string bytes, file_system_->ReadFile(manifest_path_));
    MP_ASSIGN_OR_RETURN(manifest_, DecodeManifest(bytes, manifest_path_));
  }
  for (const ManifestSegment& entry : manifest_.segments) {
    const std::string path = segments_folder_ + "/" + entry.path;
    Result<std::unique_ptr<SegmentReader>> reader = OpenSegment(*file_system_, path);
    if (!reader.ok()) {
      return Status::Corruption(manifest_path_ + " lists segment " + path +
                                ", which cannot be opened: " + reader.status().ToString());
    }
    if ((*reader)->summary().project_id != entry.project_id ||
        (*reader)->summary().row_count != entry.row_count) {
      return Status::Corruption(path + " does not hold what " + manifest_path_ +
                                " says (project or row count differ)");
    }
    live_paths.insert(entry.path);
    stats_.events += entry.row_count;
    data_stats_.segment_bytes += (*reader)->summary().file_bytes;
    segments_.push_back(LiveSegment{entry.project_id, std::move(reader).value(), entry.path,
                                    entry.log_end, nullptr, UINT64_MAX});
  }
  data_stats_.segments = segments_.size();
  {
    std::lock_guard lock(data_mutex_);
    deletions_ = MakeDeletionState(manifest_.deletions, ++deletion_generation_);
    purge_dirty_ = !manifest_.deletions.empty();
  }
  next_segment_number_ = manifest_.next_segment_number;
  MP_RETURN_IF_ERROR(RemoveOrphans(live_paths));
  return LoadRecentInsertIds();
}

// The log before the manifest's position may be trimmed, so the insert ids
// of segments flushed within the de-duplication window are remembered from
// the segments' insert id columns, as stored at their flush time (no
// earlier than the events' own store time: it errs on remembering longer).
// Ids the log still holds are inserted again on replay, which changes nothing.
//
// The index keeps the last dedup_entries_max ids inserted (it evicts the
// oldest first), so the walk starts at the block from which the rest of the
// segments hold that many rows: ids before it would be inserted only to be
// evicted, each costing several cache misses (at 100M events this walk was
// most of the 107 s a server took to open). Ids repeated across segments
// (an event re-sent after its id left the index) leave the index a little
// short of its bound rather than wrong.
Status EmbeddedEngine::LoadRecentInsertIds() {
  const int64_t window_start_ms = options_.clock->NowMs() - options_.dedup_window_ms;
  auto in_window = [&](size_t segment_idx) {
    return manifest_.segments[segment_idx].flushed_at_ms >= window_start_ms;
  };
  size_t start_segment = 0;
  size_t start_block = 0;
  uint64_t rows_after = 0;
  bool found = false;
  for (size_t segment_idx = segments_.size(); segment_idx-- > 0 && !found;) {
    const SegmentReader& reader = *segments_[segment_idx].reader;
    for (size_t block_idx = reader.block_count(); in_window(segment_idx) && block_idx-- > 0;) {
      rows_after += reader.block(block_idx).row_count;
      if (rows_after >= options_.dedup_entries_max) {
        start_segment = segment_idx;
        start_block = block_idx;
        found = true;
        break;
      }
    }
  }
  std::vector<Id128> insert_ids;
  for (size_t segment_idx = start_segment; segment_idx < segments_.size(); ++segment_idx) {
    const ManifestSegment& entry = manifest_.segments[segment_idx];
    if (!in_window(segment_idx)) {
      continue;
    }
    const SegmentReader& reader = *segments_[segment_idx].reader;
    const size_t first_block = segment_idx == start_segment ? start_block : 0;
    for (size_t block_idx = first_block; block_idx < reader.block_count(); ++block_idx) {
      MP_RETURN_IF_ERROR(reader.ReadInsertIds(block_idx, &insert_ids));
      for (const Id128& insert_id : insert_ids) {
        dedup_.Insert(entry.project_id, insert_id, entry.flushed_at_ms);
      }
    }
  }
  return Status::Ok();
}

// Segment files (and their .tmp) that the manifest does not list were
// written by a flush whose manifest never became durable; their events are
// still in the log after the manifest's position.
Status EmbeddedEngine::RemoveOrphans(const std::set<std::string>& live_paths) {
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> projects,
                      file_system_->ListDirectory(segments_folder_));
  for (const std::string& project : projects) {
    Result<std::vector<std::string>> names =
        file_system_->ListDirectory(segments_folder_ + "/" + project);
    if (!names.ok()) {
      continue;  // not a folder
    }
    for (const std::string& name : *names) {
      const std::string relative = project + "/" + name;
      if (live_paths.contains(relative)) {
        continue;
      }
      MP_RETURN_IF_ERROR(file_system_->Remove(segments_folder_ + "/" + relative));
      Note(segments_folder_ + "/" + relative +
           ": removed (not in the manifest: a flush that did not finish; its events are replayed "
           "from the log)");
    }
  }
  return Status::Ok();
}

Status EmbeddedEngine::ReplayFile(uint64_t number, bool is_last, uint64_t* durable_bytes) {
  const std::string path = LogPath(number);
  *durable_bytes = 0;
  MP_ASSIGN_OR_RETURN(const uint64_t size, file_system_->FileSize(path));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system_->OpenSequential(path));
  LogReader reader(file.get(), size);
  WalFileHeader header;
  bool all_zero = false;
  Result<LogReader::Outcome> outcome = reader.ReadFileHeader(&header, &all_zero);
  if (!outcome.ok() && !(is_last && all_zero)) {
    return Status(outcome.status().code(), path + ": " + outcome.status().message());
  }
  // A crash while a file was being created can leave it short or zeroed;
  // no record was ever acknowledged from such a file, so nothing is lost.
  if (!outcome.ok() || *outcome == LogReader::Outcome::kTorn) {
    Note(path + " has no complete file header (" + std::to_string(size) +
         " bytes); it holds no records" + (is_last ? " and is recreated" : " and is skipped"));
    return Status::Ok();
  }
  if (header.file_number != number) {
    return Status::Corruption(path + ": file header names log file " +
                              std::to_string(header.file_number));
  }
  replay_file_version_ = header.format_version;
  while (true) {
    std::string_view payload;
    std::string reason;
    MP_ASSIGN_OR_RETURN(LogReader::Outcome record, reader.ReadRecord(&payload, &reason));
    if (record == LogReader::Outcome::kEnd) {
      break;
    }
    if (record == LogReader::Outcome::kRecord && reader.record_type() == WalRecordType::kPadding) {
      continue;
    }
    if (record == LogReader::Outcome::kRecord) {
      const LogPosition position{number, reader.record_offset()};
      const Status applied = reader.record_type() == WalRecordType::kDeletion
                                 ? ApplyDeletionRecord(payload, position)
                                 : ApplyRecord(payload, position);
      if (applied.ok()) {
        if (reader.record_type() == WalRecordType::kBatch) {
          WalDecoder decoder(payload, replay_file_version_);
          WalPayloadHeader header;
          if (decoder.ReadPayloadHeader(&header).ok()) {
            replay_project_bytes_[header.project_id] += kWalRecordHeaderBytes + payload.size();
          }
        }
        continue;
      }
      record = LogReader::Outcome::kCorrupt;
      reason = applied.message();
    }
    const uint64_t offset = reader.record_offset();
    if (!is_last) {
      return Status::Corruption(path + " at offset " + std::to_string(offset) + ": " + reason +
                                " (not the newest log file, so acknowledged data would be lost)");
    }
    MP_RETURN_IF_ERROR(file_system_->Truncate(path, offset));
    stats_.recovery_bytes_truncated += size - offset;
    Note(path + ": cut " + std::to_string(size - offset) + " bytes of torn or corrupt tail at offset " +
         std::to_string(offset) + " (" + reason + ")");
    *durable_bytes = offset;
    return Status::Ok();
  }
  *durable_bytes = reader.end_offset();
  return Status::Ok();
}

Status EmbeddedEngine::ApplyRecord(std::string_view payload, const LogPosition& position) {
  const bool to_memtable = position >= manifest_.log_position;
  WalDecoder decoder(payload, replay_file_version_);
  WalPayloadHeader header;
  MP_RETURN_IF_ERROR(decoder.ReadPayloadHeader(&header));
  // Decode everything before applying anything: a record counts whole or not at all.
  std::vector<Id128> insert_ids;
  insert_ids.reserve(std::min<size_t>(header.event_count, payload.size()));
  std::vector<Event> events;
  Event event;
  for (uint32_t event_idx = 0; event_idx < header.event_count; ++event_idx) {
    MP_RETURN_IF_ERROR(decoder.ReadEvent(&event));
    insert_ids.push_back(event.insert_id);
    if (to_memtable) {
      events.push_back(event);
    }
  }
  // Profile updates before the log end of the project's profile file are
  // in it already; the later ones join the memtable until a flush appends them.
  const auto profile_file = profile_files_.find(header.project_id);
  const bool profiles_in_file =
      profile_file != profile_files_.end() && position < profile_file->second.log_end;
  std::vector<ProfileUpdate> updates(profiles_in_file ? 0 : header.profile_update_count);
  ProfileUpdate skipped;
  for (uint32_t update_idx = 0; update_idx < header.profile_update_count; ++update_idx) {
    MP_RETURN_IF_ERROR(decoder.ReadProfileUpdate(profiles_in_file ? &skipped : &updates[update_idx]));
  }
  if (!decoder.empty()) {
    return Status::Corruption("record has " + std::to_string(payload.size() - decoder.position()) +
                              " trailing bytes");
  }
  // Replaying expiry at each record's own time rebuilds the index the
  // writer had, including which ids the bound had already evicted.
  dedup_.Expire(header.stored_at_ms);
  for (const Id128& insert_id : insert_ids) {
    dedup_.Insert(header.project_id, insert_id, header.stored_at_ms);
  }
  // Events before the manifest's position are counted with their segments.
  if (to_memtable) {
    stats_.events += header.event_count;
  }
  stats_.profile_updates += updates.size();
  replay_found_profile_updates_ |= !updates.empty();
  std::lock_guard lock(data_mutex_);
  if (!events.empty()) {
    AddEventsLocked(header.project_id, &events);
  }
  if (!updates.empty()) {
    AddProfilesLocked(header.project_id, header.stored_at_ms, &updates);
  }
  return Status::Ok();
}

// A deletion replayed from the log hides what it hid before the crash: the
// rows before it in the memtable being rebuilt (those replayed so far) and
// in segments flushed before it. One the manifest already lists is ignored.
Status EmbeddedEngine::ApplyDeletionRecord(std::string_view payload, const LogPosition& position) {
  MP_ASSIGN_OR_RETURN(Deletion deletion, DecodeDeletionPayload(payload));
  deletion.position = position;
  std::lock_guard lock(data_mutex_);
  ApplyDeletionLocked(deletion);
  return Status::Ok();
}

Status EmbeddedEngine::CreateLogFile(uint64_t number) {
  const std::string path = LogPath(number);
  // A failed earlier attempt may have left a partial file under this name.
  if (file_system_->Exists(path)) {
    MP_RETURN_IF_ERROR(file_system_->Truncate(path, 0));
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                      file_system_->OpenAppendable(path, kLogFileMode));
  Status status = file->Append(EncodeWalFileHeader(number));
  if (status.ok()) {
    status = file->Sync();
  }
  if (status.ok()) {
    status = file_system_->SyncDirectory(wal_folder_);
  }
  if (!status.ok()) {
    (void)file->Close();
    (void)file_system_->Remove(path);
    return status;
  }
  if (file_) {
    (void)file_->Close();
  }
  file_ = std::move(file);
  file_number_ = number;
  file_durable_bytes_ = kWalFileHeaderBytes;
  std::lock_guard lock(mutex_);
  files_.push_back(LogFileInfo{number, kWalFileHeaderBytes, false, {}});
  stats_.log_bytes += kWalFileHeaderBytes;
  return Status::Ok();
}

Status EmbeddedEngine::OpenLastLogFile(uint64_t number, uint64_t durable_bytes,
                                       bool has_profile_updates) {
  MP_ASSIGN_OR_RETURN(file_, file_system_->OpenAppendable(LogPath(number), kLogFileMode));
  // Makes a truncation done by recovery durable before anything is appended
  // (or the file is rolled): a cut tail must not come back after a crash.
  MP_RETURN_IF_ERROR(file_->Sync());
  file_number_ = number;
  file_durable_bytes_ = durable_bytes;
  files_.push_back(LogFileInfo{number, durable_bytes, has_profile_updates, replay_project_bytes_});
  stats_.log_bytes += durable_bytes;
  return Status::Ok();
}

Status EmbeddedEngine::Encode(AppendBatch& batch, PendingAppend* pending) {
  pending->project_id = batch.project_id;
  pending->profile_updates = batch.profile_updates.size();
  pending->insert_ids.reserve(batch.events.size());
  pending->event_ends.reserve(batch.events.size());
  constexpr size_t kBodyBytesMax = kLogRecordBytesMax - kWalPayloadHeaderBytesMax;
  for (const Event& event : batch.events) {
    EncodeEvent(event, &pending->body);
    if (pending->body.size() > kBodyBytesMax) {
      return Status::ResourceExhausted("batch encodes to more than kLogRecordBytesMax (" +
                                       std::to_string(kLogRecordBytesMax) + " bytes)");
    }
    pending->event_ends.push_back(static_cast<uint32_t>(pending->body.size()));
    pending->insert_ids.push_back(event.insert_id);
  }
  for (const ProfileUpdate& update : batch.profile_updates) {
    EncodeProfileUpdate(update, &pending->body);
  }
  if (pending->body.size() > kBodyBytesMax) {
    return Status::ResourceExhausted("batch encodes to more than kLogRecordBytesMax (" +
                                     std::to_string(kLogRecordBytesMax) + " bytes)");
  }
  // The checksum is computed here, in parallel across callers; the writer
  // combines it with the record header's.
  pending->body_crc = Crc32(0, pending->body);
  pending->events = std::move(batch.events);
  pending->profile_update_objects = std::move(batch.profile_updates);
  // For the memtable, also here in the caller's thread: properties sorted by
  // key (as segments return them, so that a scan's rows do not depend on
  // whether a flush has run; the log keeps the client's order) and the
  // memory each event takes.
  pending->event_bytes.resize(pending->events.size());
  for (size_t event_idx = 0; event_idx < pending->events.size(); ++event_idx) {
    Event& event = pending->events[event_idx];
    std::sort(event.properties.begin(), event.properties.end(),
              [](const Property& left, const Property& right) { return left.key < right.key; });
    pending->event_bytes[event_idx] = EventMemoryBytes(event);
  }
  return Status::Ok();
}

Status EmbeddedEngine::Enqueue(PendingAppend* pending) {
  std::lock_guard lock(mutex_);
  if (closing_) {
    return Status::Unavailable("the store is closed");
  }
  queue_.push_back(pending);
  writer_cv_.notify_one();
  return Status::Ok();
}

Result<AppendResult> EmbeddedEngine::Append(AppendBatch batch) {
  PendingAppend pending;
  MP_RETURN_IF_ERROR(Encode(batch, &pending));
  MP_RETURN_IF_ERROR(Enqueue(&pending));
  std::unique_lock lock(mutex_);
  pending.done_cv.wait(lock, [&pending] { return pending.done; });
  if (!pending.status.ok()) {
    return pending.status;
  }
  return pending.result;
}

void EmbeddedEngine::AppendAsync(AppendBatch batch, AppendCallback done) {
  auto pending = std::make_unique<PendingAppend>();
  Status status = Encode(batch, pending.get());
  if (status.ok()) {
    pending->callback = std::move(done);
    status = Enqueue(pending.get());
    if (status.ok()) {
      pending.release();  // the writer thread owns it now
      return;
    }
    done = std::move(pending->callback);
  }
  done(status);
}

Status EmbeddedEngine::EnqueueDeletion(Deletion deletion) {
  {
    std::lock_guard lock(data_mutex_);
    if (deletions_->deletions.size() >= kManifestDeletionsMax) {
      return Status::ResourceExhausted(
          "kManifestDeletionsMax (" + std::to_string(kManifestDeletionsMax) +
          ") deletions wait for their purge; call PurgeDeleted, then retry");
    }
  }
  PendingAppend pending;
  pending.project_id = deletion.project_id;
  pending.deletion = std::move(deletion);
  MP_RETURN_IF_ERROR(Enqueue(&pending));
  std::unique_lock lock(mutex_);
  pending.done_cv.wait(lock, [&pending] { return pending.done; });
  return pending.status;
}

Status EmbeddedEngine::EraseSubjects(uint32_t project_id, std::vector<Id128> subjects) {
  if (subjects.empty()) {
    return Status::InvalidArgument("subjects: empty; name at least one subject to erase");
  }
  std::sort(subjects.begin(), subjects.end());
  subjects.erase(std::unique(subjects.begin(), subjects.end()), subjects.end());
  if (subjects.size() > kDeletionSubjectsMax) {
    return Status::ResourceExhausted("subjects: " + std::to_string(subjects.size()) +
                                     " distinct subjects exceed kDeletionSubjectsMax (" +
                                     std::to_string(kDeletionSubjectsMax) + ") in one call");
  }
  Deletion deletion;
  deletion.project_id = project_id;
  deletion.subjects = std::move(subjects);
  return EnqueueDeletion(std::move(deletion));
}

Status EmbeddedEngine::DropBefore(uint32_t project_id, int64_t before_ms) {
  Deletion deletion;
  deletion.project_id = project_id;
  deletion.drop_before_ms = before_ms;
  return EnqueueDeletion(std::move(deletion));
}

Status EmbeddedEngine::DropEventsBefore(uint32_t project_id, std::string event_name,
                                        int64_t before_ms) {
  if (event_name.empty() || event_name.size() > kDeletionEventNameBytesMax) {
    return Status::InvalidArgument("event_name: " + std::to_string(event_name.size()) +
                                   " bytes; must be 1 to kDeletionEventNameBytesMax (" +
                                   std::to_string(kDeletionEventNameBytesMax) + ")");
  }
  Deletion deletion;
  deletion.project_id = project_id;
  deletion.drop_before_ms = before_ms;
  deletion.event_name = std::move(event_name);
  return EnqueueDeletion(std::move(deletion));
}

Status EmbeddedEngine::PurgeProperty(uint32_t project_id, std::string key,
                                     std::string event_name) {
  if (key.empty() || key.size() > kDeletionPropertyKeyBytesMax) {
    return Status::InvalidArgument("key: " + std::to_string(key.size()) +
                                   " bytes; must be 1 to kDeletionPropertyKeyBytesMax (" +
                                   std::to_string(kDeletionPropertyKeyBytesMax) + ")");
  }
  if (event_name.size() > kDeletionEventNameBytesMax) {
    return Status::InvalidArgument("event_name: " + std::to_string(event_name.size()) +
                                   " bytes; must be at most kDeletionEventNameBytesMax (" +
                                   std::to_string(kDeletionEventNameBytesMax) + ")");
  }
  Deletion deletion;
  deletion.project_id = project_id;
  deletion.property_key = std::move(key);
  deletion.event_name = std::move(event_name);
  return EnqueueDeletion(std::move(deletion));
}

// A property purge removes the key from the memtable's events (all stored
// before it) and from the copy readers see of a memtable being flushed,
// whose segments views then mask.
void EmbeddedEngine::ApplyPropertyPurgeLocked(const Deletion& deletion) {
  if (const auto found = memtables_.find(deletion.project_id); found != memtables_.end()) {
    Memtable& memtable = found->second;
    bool changed = false;
    for (Event& event : memtable.events) {
      const uint64_t before = EventMemoryBytes(event);
      if (StripPurgedEventProperties(deletion, &event)) {
        const uint64_t after = EventMemoryBytes(event);
        memtable.bytes = memtable.bytes - before + after;
        memtable_bytes_ = memtable_bytes_ - before + after;
        changed = true;
      }
    }
    if (changed) {
      memtable.version = ++memtable_versions_;
    }
    // Profile updates lose the key too (a purge of one event name's key
    // leaves them); one left with no property goes, but a $delete.
    if (deletion.event_name.empty()) {
      const size_t profiles_before = memtable.profiles.size();
      std::erase_if(memtable.profiles, [&](StoredProfileUpdate& stored) {
        const uint64_t before = ProfileUpdateMemoryBytes(stored.update);
        if (!StripPurgedProfileProperties(deletion, &stored.update)) {
          return false;
        }
        const bool gone = EmptyProfileUpdate(stored.update);
        const uint64_t after = gone ? 0 : ProfileUpdateMemoryBytes(stored.update);
        memtable.bytes = memtable.bytes - before + after;
        memtable_bytes_ = memtable_bytes_ - before + after;
        return gone;
      });
      memtable_profile_updates_ -= profiles_before - memtable.profiles.size();
    }
  }
  if (const auto found = flushing_.find(deletion.project_id); found != flushing_.end()) {
    FlushingMemtable& flushing = found->second;
    if (deletion.event_name.empty() &&
        std::any_of(flushing.profiles->begin(), flushing.profiles->end(),
                    [&](const StoredProfileUpdate& stored) {
                      return std::any_of(stored.update.properties.begin(),
                                         stored.update.properties.end(),
                                         [&](const Property& property) {
                                           return property.key == deletion.property_key;
                                         });
                    })) {
      auto kept = std::make_shared<std::vector<StoredProfileUpdate>>();
      for (StoredProfileUpdate stored : *flushing.profiles) {
        StripPurgedProfileProperties(deletion, &stored.update);
        if (!EmptyProfileUpdate(stored.update)) {
          kept->push_back(std::move(stored));
        }
      }
      flushing.profiles = std::move(kept);
    }
    const auto holds = [&deletion](const Event& event) {
      return (deletion.event_name.empty() || deletion.event_name == event.name) &&
             std::any_of(event.properties.begin(), event.properties.end(),
                         [&](const Property& property) {
                           return property.key == deletion.property_key;
                         });
    };
    if (std::any_of(flushing.events->begin(), flushing.events->end(), holds)) {
      auto stripped = std::make_shared<std::vector<Event>>(*flushing.events);
      for (Event& event : *stripped) {
        StripPurgedEventProperties(deletion, &event);
      }
      flushing.events = std::move(stripped);
      flushing.encoded.clear();
    }
  }
}

// The subjects to expire are found from two reads: the profile updates
// (each subject's latest arrival: the store time of the record an update
// came in, not the update's own $time, which the client sets — a clock an
// hour ahead or a queue replayed weeks late would keep a profile too long
// or expire it early; a subject with a group's update never expires), then
// the events since the bound in a snapshot (only the blocks whose time and
// subject zone maps reach a candidate), which keep their subjects.
Result<uint64_t> EmbeddedEngine::ExpireProfiles(uint32_t project_id, int64_t before_ms) {
  std::unordered_map<Id128, int64_t, Id128Hash> last_update_ms;  // by subject
  MP_RETURN_IF_ERROR(ScanProfilesWithArrival(project_id, [&](const ProfileUpdate& update,
                                                             int64_t stored_at_ms) {
    const int64_t time_ms = update.group_key.empty() ? stored_at_ms : INT64_MAX;
    auto [entry, added] = last_update_ms.try_emplace(update.subject, time_ms);
    if (!added) {
      entry->second = std::max(entry->second, time_ms);
    }
    return true;
  }));
  std::vector<Id128> candidates;
  for (const auto& [subject, time_ms] : last_update_ms) {
    if (time_ms < before_ms) {
      candidates.push_back(subject);
    }
  }
  last_update_ms = {};
  std::sort(candidates.begin(), candidates.end());
  if (candidates.empty()) {
    return uint64_t{0};
  }
  std::vector<bool> had_event(candidates.size(), false);
  MP_ASSIGN_OR_RETURN(const SegmentSnapshot snapshot, Snapshot(project_id));
  for (const std::shared_ptr<const SegmentReader>& segment : snapshot) {
    MP_RETURN_IF_ERROR(MarkSubjectsSeenSince(*segment, before_ms, candidates, &had_event));
  }
  std::vector<Id128> expired;
  for (size_t candidate_idx = 0; candidate_idx < candidates.size(); ++candidate_idx) {
    if (!had_event[candidate_idx]) {
      expired.push_back(candidates[candidate_idx]);
    }
  }
  uint64_t expired_count = 0;
  for (size_t first = 0; first < expired.size(); first += kDeletionSubjectsMax) {
    const size_t last = std::min(expired.size(), first + kDeletionSubjectsMax);
    Deletion deletion;
    deletion.project_id = project_id;
    deletion.subjects.assign(expired.begin() + static_cast<std::ptrdiff_t>(first),
                             expired.begin() + static_cast<std::ptrdiff_t>(last));
    deletion.profiles_only = true;
    MP_RETURN_IF_ERROR(EnqueueDeletion(std::move(deletion)));
    expired_count += last - first;
    std::lock_guard lock(data_mutex_);
    data_stats_.profiles_expired += last - first;
  }
  return expired_count;
}

void EmbeddedEngine::ApplyDeletionLocked(const Deletion& deletion) {
  if (!deletion.property_key.empty()) {
    ApplyPropertyPurgeLocked(deletion);
    RecordDeletionLocked(deletion);
    return;
  }
  const auto hides = [&deletion](const Event& event) {
    if (deletion.profiles_only) {
      return false;
    }
    if (deletion.drop_before_ms.has_value()) {
      return event.time_ms < *deletion.drop_before_ms &&
             (deletion.event_name.empty() || event.name == deletion.event_name);
    }
    return std::binary_search(deletion.subjects.begin(), deletion.subjects.end(), event.subject);
  };
  // Every memtable row is from a record before the deletion's: remove the
  // hidden ones now, so that segments flushed later never hold them.
  if (const auto found = memtables_.find(deletion.project_id); found != memtables_.end()) {
    Memtable& memtable = found->second;
    const size_t before = memtable.events.size();
    std::erase_if(memtable.events, [&](const Event& event) {
      if (!hides(event)) {
        return false;
      }
      const uint64_t bytes = EventMemoryBytes(event);
      memtable.bytes -= bytes;
      memtable_bytes_ -= bytes;
      return true;
    });
    if (memtable.events.size() != before) {
      memtable_rows_ -= before - memtable.events.size();
      memtable.version = ++memtable_versions_;
    }
    // Profile updates go with an erasure of their subject and with an expiry
    // of their profile (time bounds drop events only).
    if (!deletion.subjects.empty()) {
      const size_t profiles_before = memtable.profiles.size();
      std::erase_if(memtable.profiles, [&](const StoredProfileUpdate& stored) {
        if (!std::binary_search(deletion.subjects.begin(), deletion.subjects.end(),
                                stored.update.subject)) {
          return false;
        }
        const uint64_t bytes = ProfileUpdateMemoryBytes(stored.update);
        memtable.bytes -= bytes;
        memtable_bytes_ -= bytes;
        return true;
      });
      memtable_profile_updates_ -= profiles_before - memtable.profiles.size();
    }
  }
  // The memtable being flushed becomes segments whose log end is before the
  // deletion, which views then mask; until they are published, readers see
  // a copy without the hidden rows.
  if (const auto found = flushing_.find(deletion.project_id); found != flushing_.end()) {
    FlushingMemtable& flushing = found->second;
    if (std::any_of(flushing.events->begin(), flushing.events->end(), hides)) {
      auto kept = std::make_shared<std::vector<Event>>();
      for (const Event& event : *flushing.events) {
        if (!hides(event)) {
          kept->push_back(event);
        }
      }
      flushing.events = std::move(kept);
      flushing.encoded.clear();
    }
    // The flush appends the profile updates it swapped out to the profile
    // file, where the deletion (at or after that group's end) hides them;
    // until then readers see a copy without them.
    const auto erased = [&deletion](const StoredProfileUpdate& stored) {
      return std::binary_search(deletion.subjects.begin(), deletion.subjects.end(),
                                stored.update.subject);
    };
    if (std::any_of(flushing.profiles->begin(), flushing.profiles->end(), erased)) {
      auto kept = std::make_shared<std::vector<StoredProfileUpdate>>();
      std::copy_if(flushing.profiles->begin(), flushing.profiles->end(), std::back_inserter(*kept),
                   [&](const StoredProfileUpdate& stored) { return !erased(stored); });
      flushing.profiles = std::move(kept);
    }
  }
  RecordDeletionLocked(deletion);
}

void EmbeddedEngine::RecordDeletionLocked(const Deletion& deletion) {
  // One the manifest already lists (it was written after the deletion, and
  // the log is replayed from before it) has filtered the memtable again
  // above, which replay needs, and is not listed twice.
  for (const Deletion& existing : deletions_->deletions) {
    if (existing.position == deletion.position && existing.project_id == deletion.project_id) {
      return;
    }
  }
  std::vector<Deletion> deletions = deletions_->deletions;
  deletions.push_back(deletion);
  deletions_ = MakeDeletionState(std::move(deletions), ++deletion_generation_);
  purge_dirty_ = true;
  flush_cv_.notify_one();
}

void EmbeddedEngine::WriterLoop() {
  std::vector<PendingAppend*> group;
  while (true) {
    bool roll = false;
    {
      std::unique_lock lock(mutex_);
      writer_cv_.wait(lock, [this] { return !queue_.empty() || closing_ || roll_requested_; });
      roll = roll_requested_;
      roll_requested_ = false;
      if (!roll && queue_.empty()) {
        return;
      }
      size_t group_bytes = 0;
      while (!roll && !queue_.empty() &&
             (group.empty() || group_bytes + queue_.front()->body.size() <= kGroupBytesMax)) {
        group_bytes += queue_.front()->body.size();
        group.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    if (roll) {
      RollLogAndSwapMemtables();
      continue;
    }
    CommitGroup(group);
    group.clear();
  }
}

void EmbeddedEngine::CommitGroup(const std::vector<PendingAppend*>& group) {
  std::vector<PendingAppend*> refused;
  std::vector<PendingAppend*> deletions;
  for (PendingAppend* pending : group) {
    (pending->deletion.has_value() ? deletions : refused).push_back(pending);
  }
  if (!refused.empty() && MemtableFull(refused.size())) {
    FinishGroup(refused, Status::ResourceExhausted(
                             "the memtable holds kMemtableHardLimitFactor times memtable_rows_max or "
                             "memtable_bytes_max because flushes fall behind or fail; retry later"));
    // A deletion only shrinks the memtable: it is never refused for memory.
    if (!deletions.empty()) {
      CommitGroupNow(deletions);
    }
    return;
  }
  CommitGroupNow(group);
}

void EmbeddedEngine::CommitGroupNow(const std::vector<PendingAppend*>& group) {
  const Status prepared = PrepareLogForWrite();
  if (!prepared.ok()) {
    FinishGroup(group, prepared);
    return;
  }
  const int64_t now_ms = options_.clock->NowMs();
  dedup_.Expire(now_ms);
  size_t group_events = 0;
  for (const PendingAppend* pending : group) {
    group_events += pending->insert_ids.size();
  }
  group_ids_.Reset(group_events);
  group_kept_ids_.clear();
  write_buffer_.clear();
  for (PendingAppend* pending : group) {
    ComposeRecord(pending, now_ms);
  }
  uint64_t sync_latency_us = 0;
  if (!write_buffer_.empty()) {
    const auto sync_start = std::chrono::steady_clock::now();
    const Status written = WriteAndSync();
    if (!written.ok()) {
      FinishGroup(group, written);
      return;
    }
    sync_latency_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                std::chrono::steady_clock::now() - sync_start)
                                                .count());
  }
  for (const auto& [project_id, insert_id] : group_kept_ids_) {
    dedup_.Insert(project_id, insert_id, now_ms);
  }
  // The memtable first, then the counts: a reader that sees a count
  // (Stats::profile_updates, which the query module's profile-table cache
  // keys on) must find what it counts in any scan it starts after.
  AddToMemtable(group);
  PublishGroup(group, sync_latency_us);
  FinishGroup(group, Status::Ok());
}

Status EmbeddedEngine::PrepareLogForWrite() {
  if (needs_repair_) {
    MP_RETURN_IF_ERROR(RepairLog());
  }
  if (file_durable_bytes_ >= options_.log_file_bytes_max) {
    MP_RETURN_IF_ERROR(RollLogFile());
  }
  return Status::Ok();
}

Status EmbeddedEngine::RepairLog() {
  // Cut whatever a failed write left past the last acknowledged byte, and make
  // the cut durable, before anything else is appended after it.
  Status status = file_system_->Truncate(LogPath(file_number_), file_durable_bytes_);
  if (status.ok()) {
    status = file_->Sync();
  }
  if (!status.ok()) {
    return Status::IoError("the log cannot be repaired after a failed write, so appends are "
                           "refused until it can: " + status.ToString());
  }
  needs_repair_ = false;
  return Status::Ok();
}

Status EmbeddedEngine::RollLogFile() { return CreateLogFile(file_number_ + 1); }

// Called between groups by the thread that owns the log file: the writer,
// or the flush thread once the writer has stopped. A file that holds only
// its header has nothing to flush, so it is kept. If the roll fails (a full
// disk), or the file cannot be repaired after a failed write (an older file
// must end at its last record), the flush covers part of the current file,
// which a later flush's trim then deletes.
void EmbeddedEngine::RollLogForFlush() {
  if (file_durable_bytes_ <= kWalFileHeaderBytes) {
    return;
  }
  if (needs_repair_ && !RepairLog().ok()) {
    return;
  }
  (void)RollLogFile();
}

// The memtable then holds exactly the records before the new file: only
// this thread adds to it, and it is between groups. So the flush's log
// position is the start of the new file, and every older file is wholly in
// the segments once the manifest is durable.
void EmbeddedEngine::RollLogAndSwapMemtables() {
  RollLogForFlush();
  std::lock_guard lock(data_mutex_);
  memtable_position_ = LogPosition{file_number_, file_durable_bytes_};
  if (flushing_.empty() && memtable_rows_ + memtable_profile_updates_ > 0) {
    SwapMemtablesLocked();
  } else if (flushing_.empty()) {
    // Nothing to flush, but every record before the roll is in a segment or
    // hidden: a flush of no rows then moves the manifest's log position here.
    flushing_position_ = memtable_position_;
  }
  ++rolls_;
  flush_cv_.notify_one();
}

void EmbeddedEngine::ComposeRecord(PendingAppend* pending, int64_t stored_at_ms) {
  if (pending->deletion.has_value()) {
    pending->deletion->stored_at_ms = stored_at_ms;
    const size_t record_start = write_buffer_.size();
    pending->record_offset = file_durable_bytes_ + record_start;
    write_buffer_.append(kWalRecordHeaderBytes, '\0');
    EncodeDeletionBody(*pending->deletion, &write_buffer_);
    char* header = write_buffer_.data() + record_start;
    const size_t payload_bytes = write_buffer_.size() - record_start - kWalRecordHeaderBytes;
    PutFixed32At(static_cast<uint32_t>(payload_bytes), header + 4);
    header[8] = static_cast<char>(WalRecordType::kDeletion);
    PutFixed32At(Crc32(0, std::string_view(header + 4, payload_bytes + 5)), header);
    return;
  }
  const uint32_t project_id = pending->project_id;
  pending->stored_at_ms = stored_at_ms;
  AppendResult& result = pending->result;
  std::vector<size_t>& kept = kept_event_indices_;
  kept.clear();
  for (size_t event_idx = 0; event_idx < pending->insert_ids.size(); ++event_idx) {
    const Id128& insert_id = pending->insert_ids[event_idx];
    if (dedup_.Contains(project_id, insert_id) || !group_ids_.Insert(project_id, insert_id)) {
      ++result.events_duplicate;
      continue;
    }
    kept.push_back(event_idx);
    group_kept_ids_.emplace_back(project_id, insert_id);
  }
  result.events_stored = kept.size();
  result.profile_updates_stored = pending->profile_updates;
  if (kept.size() != pending->events.size()) {
    for (size_t kept_idx = 0; kept_idx < kept.size(); ++kept_idx) {
      if (kept[kept_idx] != kept_idx) {
        pending->events[kept_idx] = std::move(pending->events[kept[kept_idx]]);
        pending->event_bytes[kept_idx] = pending->event_bytes[kept[kept_idx]];
      }
    }
    pending->events.resize(kept.size());
    pending->event_bytes.resize(kept.size());
  }
  if (kept.empty() && pending->profile_updates == 0) {
    return;
  }
  const size_t record_start = write_buffer_.size();
  write_buffer_.append(kWalRecordHeaderBytes, '\0');
  EncodePayloadHeader(WalPayloadHeader{stored_at_ms, project_id,
                                       static_cast<uint32_t>(kept.size()),
                                       static_cast<uint32_t>(pending->profile_updates)},
                      &write_buffer_);
  const size_t body_start = write_buffer_.size();
  const std::string_view body = pending->body;
  const bool all_kept = kept.size() == pending->insert_ids.size();
  if (all_kept) {
    write_buffer_.append(body);
  } else {
    for (const size_t event_idx : kept) {
      const size_t begin = event_idx == 0 ? 0 : pending->event_ends[event_idx - 1];
      write_buffer_.append(body.substr(begin, pending->event_ends[event_idx] - begin));
    }
    const size_t profiles_begin = pending->event_ends.empty() ? 0 : pending->event_ends.back();
    write_buffer_.append(body.substr(profiles_begin));
  }
  char* header = write_buffer_.data() + record_start;
  const size_t payload_bytes = write_buffer_.size() - record_start - kWalRecordHeaderBytes;
  PutFixed32At(static_cast<uint32_t>(payload_bytes), header + 4);
  header[8] = static_cast<char>(WalRecordType::kBatch);
  const std::string_view framed(header + 4, body_start - record_start - 4);
  const std::string_view written_body(write_buffer_.data() + body_start,
                                      write_buffer_.size() - body_start);
  const uint32_t body_crc = all_kept ? pending->body_crc : Crc32(0, written_body);
  PutFixed32At(Crc32Combine(Crc32(0, framed), body_crc, written_body.size()), header);
  result.log_bytes = write_buffer_.size() - record_start;
}

Status EmbeddedEngine::WriteAndSync() {
  Status status = file_->Append(write_buffer_);
  if (status.ok()) {
    status = file_->Sync();
  }
  if (!status.ok()) {
    // Nothing of the group is acknowledged; the bytes it may have left are
    // cut now, or before the next group if the cut fails too.
    needs_repair_ = true;
    (void)RepairLog();
    return status;
  }
  file_durable_bytes_ += write_buffer_.size();
  return Status::Ok();
}

void EmbeddedEngine::PublishGroup(const std::vector<PendingAppend*>& group,
                                  uint64_t sync_latency_us) {
  std::lock_guard lock(mutex_);
  for (const PendingAppend* pending : group) {
    stats_.events += pending->result.events_stored;
    stats_.events_duplicate += pending->result.events_duplicate;
    stats_.profile_updates += pending->result.profile_updates_stored;
  }
  stats_.dedup_entries = dedup_.size();
  if (write_buffer_.empty()) {
    return;
  }
  files_.back().durable_bytes = file_durable_bytes_;
  for (const PendingAppend* pending : group) {
    files_.back().has_profile_updates |= pending->result.profile_updates_stored > 0;
    if (pending->result.log_bytes > 0) {
      files_.back().project_bytes[pending->project_id] += pending->result.log_bytes;
    }
  }
  stats_.log_bytes += write_buffer_.size();
  ++stats_.fsyncs;
  ++stats_.sync_latency_counts[SyncLatencyBucket(sync_latency_us)];
  stats_.sync_latency_sum_us += sync_latency_us;
}

void EmbeddedEngine::FinishGroup(const std::vector<PendingAppend*>& group, const Status& status) {
  std::vector<std::unique_ptr<PendingAppend>> asynchronous;
  {
    std::lock_guard lock(mutex_);
    for (PendingAppend* pending : group) {
      pending->status = status;
      if (!status.ok()) {
        pending->result = AppendResult{};
      }
      if (pending->callback) {
        asynchronous.emplace_back(pending);
        continue;
      }
      pending->done = true;
      // Notified under the lock: once `done` is seen the caller's frame may be gone.
      pending->done_cv.notify_one();
    }
  }
  // Callbacks run outside the lock, so that they may start other work.
  for (const std::unique_ptr<PendingAppend>& pending : asynchronous) {
    if (pending->status.ok()) {
      pending->callback(pending->result);
    } else {
      pending->callback(pending->status);
    }
  }
}

Status EmbeddedEngine::Scan(const ScanRequest& request,
                            const std::function<bool(const Event&)>& visit) {
  if (request.from_ms >= request.to_ms) {
    return Status::Ok();
  }
  // The snapshot: segment readers (kept alive by their shared_ptr), the
  // memtable being flushed, and a copy of the matching memtable events. A
  // flush publishes its segments and drops its memtable under the same lock,
  // so each event is seen exactly once.
  // Segment readers hide erased rows (views), and the memtables lost them
  // when the deletion was applied.
  ReaderSet set;
  std::shared_ptr<const std::vector<Event>> flushing;
  std::vector<Event> recent;
  {
    std::lock_guard lock(data_mutex_);
    CollectReadersLocked(request.project_id, &set);
    if (const auto found = flushing_.find(request.project_id); found != flushing_.end()) {
      flushing = found->second.events;
    }
    if (const auto found = memtables_.find(request.project_id); found != memtables_.end()) {
      for (const Event& event : found->second.events) {
        if (MatchesRequest(request, event)) {
          recent.push_back(event);
        }
      }
    }
  }
  MP_RETURN_IF_ERROR(ResolveViews(request.project_id, &set));
  std::vector<Event> block_events;
  for (const std::shared_ptr<const SegmentReader>& reader : set.readers) {
    const SegmentSummary& summary = reader->summary();
    if (summary.time_max_ms < request.from_ms || summary.time_min_ms >= request.to_ms) {
      continue;
    }
    BlockFilter filter;
    filter.time_min_ms = request.from_ms;
    filter.time_max_ms = request.to_ms - 1;
    for (const std::string& name : request.event_names) {
      if (const std::optional<uint32_t> code = reader->FindEventName(name)) {
        filter.name_codes.push_back(*code);
      }
    }
    if (!request.event_names.empty() && filter.name_codes.empty()) {
      continue;
    }
    // A folded segment keeps a row under its person: the subject's rows may
    // lie outside the blocks of its range, in their stored subject runs.
    const bool folded = request.subject.has_value() && summary.stored_subject_runs > 0;
    if (!folded) {
      filter.subject_min = request.subject;
      filter.subject_max = request.subject;
    }
    std::vector<StoredSubjectRun> stored_runs;
    for (const size_t block_idx : reader->MatchingBlocks(filter)) {
      if (folded) {
        const SegmentBlockInfo& info = reader->block(block_idx);
        MP_RETURN_IF_ERROR(reader->ReadStoredSubjects(block_idx, &stored_runs));
        const bool in_range =
            !(*request.subject < info.subject_first) && !(info.subject_last < *request.subject);
        if (!in_range && std::none_of(stored_runs.begin(), stored_runs.end(), [&](const auto& run) {
              return run.subject == *request.subject;
            })) {
          continue;
        }
      }
      MP_RETURN_IF_ERROR(reader->ReadEvents(block_idx, &block_events));
      for (const Event& event : block_events) {
        if (MatchesRequest(request, event) && !visit(event)) {
          return Status::Ok();
        }
      }
    }
  }
  if (flushing) {
    for (const Event& event : *flushing) {
      if (MatchesRequest(request, event) && !visit(event)) {
        return Status::Ok();
      }
    }
  }
  for (const Event& event : recent) {
    if (!visit(event)) {
      return Status::Ok();
    }
  }
  return Status::Ok();
}

// A project's segment files, then the memtable being flushed and the
// memtable, each encoded into in-memory segments and cached until it changes.
Result<Engine::SegmentSnapshot> EmbeddedEngine::Snapshot(uint32_t project_id) {
  ReaderSet set;
  SegmentSnapshot memtable_snapshot;
  std::shared_ptr<const std::vector<Event>> flushing;
  std::vector<Event> recent;
  uint64_t recent_version = 0;
  {
    std::lock_guard lock(data_mutex_);
    CollectReadersLocked(project_id, &set);
    SegmentSnapshot& snapshot = memtable_snapshot;
    if (const auto found = flushing_.find(project_id); found != flushing_.end()) {
      if (found->second.encoded.empty()) {
        flushing = found->second.events;
      } else {
        snapshot.insert(snapshot.end(), found->second.encoded.begin(), found->second.encoded.end());
      }
    }
    if (const auto found = memtables_.find(project_id);
        found != memtables_.end() && !found->second.events.empty()) {
      const Memtable& memtable = found->second;
      if (memtable.encoded_version == memtable.version) {
        snapshot.insert(snapshot.end(), memtable.encoded.begin(), memtable.encoded.end());
      } else {
        recent = memtable.events;
        recent_version = memtable.version;
      }
    }
  }
  MP_RETURN_IF_ERROR(ResolveViews(project_id, &set));
  SegmentSnapshot snapshot = std::move(set.readers);
  snapshot.insert(snapshot.end(), memtable_snapshot.begin(), memtable_snapshot.end());
  if (flushing) {
    MP_ASSIGN_OR_RETURN(SegmentSnapshot encoded,
                        EncodeInMemory(*flushing, project_id, "flushing-memtable"));
    std::lock_guard lock(data_mutex_);
    if (const auto found = flushing_.find(project_id);
        found != flushing_.end() && found->second.events == flushing) {
      found->second.encoded = encoded;
    }
    snapshot.insert(snapshot.end(), encoded.begin(), encoded.end());
  }
  if (!recent.empty()) {
    MP_ASSIGN_OR_RETURN(SegmentSnapshot encoded, EncodeInMemory(recent, project_id, "memtable"));
    std::lock_guard lock(data_mutex_);
    if (const auto found = memtables_.find(project_id);
        found != memtables_.end() && found->second.version == recent_version) {
      found->second.encoded = encoded;
      found->second.encoded_version = recent_version;
    }
    snapshot.insert(snapshot.end(), encoded.begin(), encoded.end());
  }
  return snapshot;
}

// Views are computed once per (segment, deletion generation) and cached in
// the LiveSegment. A segment that no deletion touches is read as it is; one
// that some deletion may touch reads only the subject (and time) columns of
// the blocks whose ranges hold an erased subject (or an old time).
Result<uint64_t> EmbeddedEngine::ProjectDiskBytes(uint32_t project_id) {
  uint64_t bytes = 0;
  {
    std::lock_guard lock(mutex_);
    for (const LogFileInfo& info : files_) {
      if (const auto found = info.project_bytes.find(project_id);
          found != info.project_bytes.end()) {
        bytes += found->second;
      }
    }
  }
  std::lock_guard lock(data_mutex_);
  for (const LiveSegment& segment : segments_) {
    if (segment.project_id == project_id) {
      bytes += segment.reader->summary().file_bytes;
    }
  }
  return bytes;
}

void EmbeddedEngine::CollectReadersLocked(uint32_t project_id, ReaderSet* set) const {
  set->state = deletions_;
  for (const LiveSegment& segment : segments_) {
    if (segment.project_id != project_id) {
      continue;
    }
    if (segment.view_generation == set->state->generation) {
      set->readers.push_back(segment.view);
      continue;
    }
    set->stale.push_back(ReaderSet::Stale{set->readers.size(), segment.reader, segment.log_end});
    set->readers.push_back(segment.reader);
  }
}

Status EmbeddedEngine::ResolveViews(uint32_t project_id, ReaderSet* set) {
  if (set->stale.empty()) {
    return Status::Ok();
  }
  const ProjectDeletions* deletions = set->state->Find(project_id);
  if (deletions != nullptr) {
    // Segments are independent: their masks are computed on up to
    // kViewThreadsMax threads, which share the stale list by stride.
    const size_t threads = std::clamp<size_t>(
        std::min<size_t>(std::thread::hardware_concurrency(), kViewThreadsMax), 1,
        (set->stale.size() + kViewSegmentsPerThreadMin - 1) / kViewSegmentsPerThreadMin);
    std::vector<Status> statuses(threads);
    const auto compute = [&](size_t thread_idx) {
      for (size_t stale_idx = thread_idx; stale_idx < set->stale.size(); stale_idx += threads) {
        const ReaderSet::Stale& entry = set->stale[stale_idx];
        MaskCounts counts;
        Result<SegmentMask> mask = MaskOf(*entry.reader, *deletions, entry.log_end, &counts);
        if (!mask.ok()) {
          statuses[thread_idx] = mask.status();
          return;
        }
        if (!counts.empty()) {
          set->readers[entry.position] =
              SegmentReader::WithMask(entry.reader, std::move(mask).value());
        }
      }
    };
    std::vector<std::thread> helpers;
    for (size_t thread_idx = 1; thread_idx < threads; ++thread_idx) {
      helpers.emplace_back(compute, thread_idx);
    }
    compute(0);
    for (std::thread& helper : helpers) {
      helper.join();
    }
    for (const Status& status : statuses) {
      MP_RETURN_IF_ERROR(status);
    }
  }
  std::unordered_map<const SegmentReader*, size_t> positions;
  for (const ReaderSet::Stale& entry : set->stale) {
    positions.emplace(entry.reader.get(), entry.position);
  }
  std::lock_guard lock(data_mutex_);
  if (deletions_ != set->state) {
    return Status::Ok();
  }
  for (LiveSegment& segment : segments_) {
    if (const auto found = positions.find(segment.reader.get()); found != positions.end()) {
      segment.view = set->readers[found->second];
      segment.view_generation = set->state->generation;
    }
  }
  return Status::Ok();
}

Result<Engine::SegmentSnapshot> EmbeddedEngine::LiveReaders(uint32_t project_id) {
  ReaderSet set;
  {
    std::lock_guard lock(data_mutex_);
    CollectReadersLocked(project_id, &set);
  }
  MP_RETURN_IF_ERROR(ResolveViews(project_id, &set));
  return std::move(set.readers);
}

void EmbeddedEngine::AddToMemtable(const std::vector<PendingAppend*>& group) {
  std::lock_guard lock(data_mutex_);
  // In record order, so that a deletion hides the events of the batches
  // before it in the group and none of those after it.
  for (PendingAppend* pending : group) {
    if (pending->deletion.has_value()) {
      pending->deletion->position = LogPosition{file_number_, pending->record_offset};
      ApplyDeletionLocked(*pending->deletion);
      ++data_stats_.deletions_logged;
      continue;
    }
    if (!pending->events.empty()) {
      AddEventsLocked(pending->project_id, &pending->events, &pending->event_bytes);
    }
    if (!pending->profile_update_objects.empty()) {
      AddProfilesLocked(pending->project_id, pending->stored_at_ms,
                        &pending->profile_update_objects);
    }
  }
  memtable_position_ = LogPosition{file_number_, file_durable_bytes_};
  if (!MemtableOverThresholdLocked()) {
    return;
  }
  if (!flushing_.empty() && !behind_counted_) {
    ++data_stats_.flushes_behind;
    behind_counted_ = true;
  }
  if (!flush_requested_) {
    flush_requested_ = true;
    flush_cv_.notify_one();
  }
}

void EmbeddedEngine::AddEventsLocked(uint32_t project_id, std::vector<Event>* events,
                                     const std::vector<uint64_t>* event_bytes) {
  Memtable& memtable = memtables_[project_id];
  const size_t capacity_before = memtable.events.capacity();
  uint64_t bytes = 0;
  for (size_t event_idx = 0; event_idx < events->size(); ++event_idx) {
    Event& event = (*events)[event_idx];
    if (event_bytes == nullptr) {
      // Segments return properties sorted by key; so does the memtable, so
      // that a scan's rows do not depend on whether a flush has run.
      std::sort(event.properties.begin(), event.properties.end(),
                [](const Property& left, const Property& right) { return left.key < right.key; });
    }
    bytes += event_bytes != nullptr ? (*event_bytes)[event_idx] : EventMemoryBytes(event);
    memtable.events.push_back(std::move(event));
  }
  // The Event objects themselves, at the vector's capacity (it doubles).
  bytes += (memtable.events.capacity() - capacity_before) * sizeof(Event);
  memtable.bytes += bytes;
  memtable_bytes_ += bytes;
  memtable_rows_ += events->size();
  memtable.version = ++memtable_versions_;
  events->clear();
}

void EmbeddedEngine::AddProfilesLocked(uint32_t project_id, int64_t stored_at_ms,
                                       std::vector<ProfileUpdate>* updates) {
  Memtable& memtable = memtables_[project_id];
  uint64_t bytes = 0;
  for (ProfileUpdate& update : *updates) {
    bytes += ProfileUpdateMemoryBytes(update);
    memtable.profiles.push_back(StoredProfileUpdate{stored_at_ms, std::move(update)});
  }
  memtable.bytes += bytes;
  memtable_bytes_ += bytes;
  memtable_profile_updates_ += updates->size();
  updates->clear();
}

bool EmbeddedEngine::MemtableOverThresholdLocked() const {
  return memtable_rows_ + memtable_profile_updates_ >= options_.memtable_rows_max ||
         memtable_bytes_ >= options_.memtable_bytes_max;
}

// The byte bound counts the memtable being flushed too: together they are
// the events in memory, which memtable_bytes_max x kMemtableHardLimitFactor
// bounds.
bool EmbeddedEngine::MemtableFull(size_t batches) {
  std::lock_guard lock(data_mutex_);
  const bool full =
      memtable_rows_ + memtable_profile_updates_ >=
          kMemtableHardLimitFactor * options_.memtable_rows_max ||
      memtable_bytes_ + flushing_bytes_ >= kMemtableHardLimitFactor * options_.memtable_bytes_max;
  if (full) {
    data_stats_.appends_refused_memtable_full += batches;
  }
  return full;
}

// Flushes when asked (a threshold passed, Close, or PurgeDeleted), one flush
// at a time. A failed flush keeps its memtable (still visible to readers,
// still in the log) and is retried after kFlushRetryPause; Close makes one
// last attempt. After each flush (and when a deletion is due for its
// physical stage) a purge pass runs (see PurgeOnce).
void EmbeddedEngine::FlushLoop() {
  std::unique_lock lock(data_mutex_);
  while (true) {
    const auto wake = [this] {
      return flush_requested_ || flush_stopping_ ||
             purge_tickets_requested_ > purge_tickets_done_ || PurgeDueLocked();
    };
    // A deletion waiting for purge_delay_ms is looked at every
    // kPurgeCheckPause (the clock moves without a notification).
    while (!wake()) {
      if (purge_dirty_ && !deletions_->deletions.empty() && purge_delay_ms_ > 0) {
        flush_cv_.wait_for(lock, kPurgeCheckPause);
      } else {
        flush_cv_.wait(lock);
      }
    }
    const bool stopping = flush_stopping_;
    if (stopping && !options_.flush_on_close) {
      flush_requested_ = false;
      purge_cv_.notify_all();
      return;
    }
    const uint64_t ticket = purge_tickets_requested_;
    // PurgeDeleted, and a purge that has come due, roll the log even when
    // the memtable is empty, so that the file holding the erased records
    // can be trimmed: otherwise a quiet store would keep them in its log
    // file past the purge deadline, until enough traffic made a flush.
    const bool roll_for_purge =
        !stopping && (ticket > purge_tickets_done_ || (PurgeDueLocked() && PurgeNeedsRollLocked()));
    bool flush = !flushing_.empty() || memtable_rows_ + memtable_profile_updates_ > 0 ||
                 roll_for_purge;
    if (flushing_.empty() && flush && !SwapAtLogRoll(lock, stopping)) {
      continue;  // Close came first: the next round swaps (the writer has stopped)
    }
    if (!flush && !wake()) {
      continue;
    }
    if (!flush && stopping) {
      flush_requested_ = false;
      purge_cv_.notify_all();
      return;
    }
    lock.unlock();
    Status flushed = Status::Ok();
    if (flush) {
      const auto start = std::chrono::steady_clock::now();
      flushed = FlushImmutable();
      const uint64_t elapsed_us =
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::chrono::steady_clock::now() - start)
                                    .count());
      lock.lock();
      if (!flushed.ok()) {
        ++data_stats_.flush_failures;
        if (ticket > purge_tickets_done_) {
          purge_status_ = flushed;
          purge_tickets_done_ = ticket;
          purge_cv_.notify_all();
        }
        if (stopping) {
          purge_cv_.notify_all();
          return;  // the log still holds every event; the next open replays them
        }
        flush_cv_.wait_for(lock, kFlushRetryPause, [this] { return flush_stopping_; });
        continue;
      }
      ++data_stats_.flushes;
      data_stats_.flush_time_us_sum += elapsed_us;
      const LogPosition covered = manifest_.log_position;
      lock.unlock();
      TrimLog(covered);
      // A failed compaction leaves the smaller segments live (and at worst an
      // orphan output, removed at the next open); it is tried after the next flush.
      if (!stopping) {
        (void)CompactOnce();
      }
      lock.lock();
      purge_dirty_ = purge_dirty_ || !deletions_->deletions.empty();
      lock.unlock();
    }
    // The physical stage of erasure: when due, or asked for (then to the end).
    Status purged = Status::Ok();
    lock.lock();
    bool purge = !stopping && (ticket > purge_tickets_done_ || PurgeDueLocked());
    lock.unlock();
    while (purge) {
      Result<bool> more = PurgeOnce();
      purged = more.status();
      purge = more.ok() && *more && ticket > purge_tickets_done_;
    }
    lock.lock();
    if (ticket > purge_tickets_done_) {
      purge_status_ = purged;
      purge_tickets_done_ = ticket;
      purge_cv_.notify_all();
    }
    flush_requested_ = MemtableOverThresholdLocked() ||
                       (stopping && memtable_rows_ + memtable_profile_updates_ > 0);
    behind_counted_ = false;
    if (stopping && !flush_requested_) {
      purge_cv_.notify_all();
      return;
    }
  }
}

bool EmbeddedEngine::PurgeDueLocked() const {
  if (!purge_dirty_ || deletions_->deletions.empty()) {
    return false;
  }
  int64_t oldest_ms = INT64_MAX;
  for (const Deletion& deletion : deletions_->deletions) {
    oldest_ms = std::min(oldest_ms, deletion.stored_at_ms);
  }
  return options_.clock->NowMs() - oldest_ms >= purge_delay_ms_;
}

bool EmbeddedEngine::PurgeNeedsRollLocked() const {
  for (const Deletion& deletion : deletions_->deletions) {
    if (deletion.position.file_number >= manifest_.log_position.file_number) {
      return true;
    }
  }
  return false;
}

bool EmbeddedEngine::SwapAtLogRoll(std::unique_lock<std::mutex>& lock, bool stopping) {
  lock.unlock();
  if (stopping) {
    // Close has joined the writer, so the log file is this thread's now.
    RollLogAndSwapMemtables();
    lock.lock();
    return true;
  }
  const uint64_t rolls_before = rolls_;
  {
    std::lock_guard writer_lock(mutex_);
    roll_requested_ = true;
  }
  writer_cv_.notify_one();
  lock.lock();
  // The writer takes the request before its next group, or before it stops.
  flush_cv_.wait(lock, [&] { return rolls_ != rolls_before || flush_stopping_; });
  return rolls_ != rolls_before;
}

void EmbeddedEngine::SwapMemtablesLocked() {
  for (auto& [project_id, memtable] : memtables_) {
    if (memtable.events.empty() && memtable.profiles.empty()) {
      continue;
    }
    FlushingMemtable& flushing = flushing_[project_id];
    flushing.events = std::make_shared<const std::vector<Event>>(std::move(memtable.events));
    flushing.profiles =
        std::make_shared<const std::vector<StoredProfileUpdate>>(std::move(memtable.profiles));
    flushing.bytes = memtable.bytes;
    if (memtable.encoded_version == memtable.version) {
      flushing.encoded = std::move(memtable.encoded);
    }
  }
  memtables_.clear();
  memtable_rows_ = 0;
  memtable_profile_updates_ = 0;
  flushing_bytes_ += memtable_bytes_;
  memtable_bytes_ = 0;
  flushing_position_ = memtable_position_;
}

// Writes one segment per (project, UTC day) of the memtable being flushed,
// then a manifest listing them with the log position they cover; publishes
// both to readers only once the manifest is durable.
Status EmbeddedEngine::FlushImmutable() {
  std::vector<std::pair<uint32_t, std::shared_ptr<const std::vector<Event>>>> projects;
  std::vector<std::pair<uint32_t, std::shared_ptr<const std::vector<StoredProfileUpdate>>>>
      profiles;
  LogPosition position;
  std::vector<Deletion> deletions;
  {
    std::lock_guard lock(data_mutex_);
    for (const auto& [project_id, flushing] : flushing_) {
      projects.emplace_back(project_id, flushing.events);
      if (!flushing.profiles->empty()) {
        profiles.emplace_back(project_id, flushing.profiles);
      }
    }
    position = flushing_position_;
    // Every deletion logged before `position` is applied (the writer applies
    // a deletion before it rolls the log), so the manifest that lets the log
    // before `position` be trimmed lists it.
    deletions = deletions_->deletions;
  }
  // The profile updates first: once the manifest moves the log position on,
  // the trim may delete the log files that held them. A group appended
  // here by an attempt whose manifest then failed is not appended again.
  std::map<uint32_t, uint64_t> profile_bytes;
  MP_RETURN_IF_ERROR(AppendProfileGroups(profiles, position, &profile_bytes));
  Manifest manifest = manifest_;
  std::vector<ManifestSegment> written;
  const auto remove_written = [&] {
    for (const ManifestSegment& entry : written) {
      (void)file_system_->Remove(segments_folder_ + "/" + entry.path);
    }
  };
  uint64_t rows = 0;
  for (const auto& [project_id, events] : projects) {
    std::map<int64_t, std::vector<size_t>> days;
    for (size_t event_idx = 0; event_idx < events->size(); ++event_idx) {
      days[UtcDay((*events)[event_idx].time_ms)].push_back(event_idx);
    }
    for (const auto& [day, indices] : days) {
      ManifestSegment entry;
      Status status;
      if (days.size() == 1) {
        status = WritePartition(project_id, day, *events, &entry);
      } else {
        std::vector<Event> partition;
        partition.reserve(indices.size());
        for (const size_t event_idx : indices) {
          partition.push_back((*events)[event_idx]);
        }
        status = WritePartition(project_id, day, partition, &entry);
      }
      if (!status.ok()) {
        remove_written();
        return status;
      }
      rows += entry.row_count;
      entry.log_end = position;
      written.push_back(std::move(entry));
    }
  }
  // Open what was written before the manifest names it: a check of the
  // bytes on disk, and the readers that queries will use.
  std::vector<LiveSegment> opened;
  for (const ManifestSegment& entry : written) {
    Result<std::unique_ptr<SegmentReader>> reader =
        OpenSegment(*file_system_, segments_folder_ + "/" + entry.path);
    if (!reader.ok()) {
      remove_written();
      return reader.status();
    }
    opened.push_back(LiveSegment{entry.project_id, std::move(reader).value(), entry.path,
                                 entry.log_end, nullptr, UINT64_MAX});
  }
  manifest.segments.insert(manifest.segments.end(), written.begin(), written.end());
  manifest.log_position = position;
  manifest.deletions = std::move(deletions);
  manifest.next_segment_number = next_segment_number_;
  // On failure the files stay: a rename that happened before a failed folder
  // sync may have made this manifest the one on disk. Otherwise they are
  // orphans, removed at the next open.
  MP_RETURN_IF_ERROR(
      file_system_->WriteFileAtomically(manifest_path_, EncodeManifest(manifest), kManifestFileMode));
  manifest_ = std::move(manifest);
  {
    // The profile groups and the segments become visible as the flushing
    // memtable goes, in one step: no reader sees an update twice or not at all.
    std::lock_guard lock(data_mutex_);
    for (LiveSegment& segment : opened) {
      data_stats_.segment_bytes += segment.reader->summary().file_bytes;
      segments_.push_back(std::move(segment));
    }
    for (const auto& [project_id, bytes] : profile_bytes) {
      uint64_t& visible = profile_visible_bytes_[project_id];
      data_stats_.profile_bytes += bytes - visible;
      visible = bytes;
    }
    data_stats_.segments = segments_.size();
    data_stats_.flush_rows += rows;
    flushing_.clear();
    flushing_bytes_ = 0;
  }
  // Every profile update of a record before `position` is now in a profile
  // file: the log files wholly before it may be trimmed.
  std::lock_guard lock(mutex_);
  for (LogFileInfo& info : files_) {
    if (info.number < position.file_number) {
      info.has_profile_updates = false;
    }
  }
  return Status::Ok();
}

// Merges the small segments of one (project, UTC day) partition, if some
// partition has kCompactionInputsMin of them: writes the merged segment,
// then a manifest that lists it instead of its inputs, then swaps the
// readers under the lock and deletes the inputs. Queries that hold an
// input's reader keep reading it: the reader holds the file open, and an
// unlinked file stays readable while open. A crash before the manifest
// leaves the output as an orphan; after it, the inputs.
Status EmbeddedEngine::CompactOnce() {
  std::map<std::string, std::vector<size_t>> partitions;  // "project/day" -> manifest indexes
  for (size_t entry_idx = 0; entry_idx < manifest_.segments.size(); ++entry_idx) {
    const ManifestSegment& entry = manifest_.segments[entry_idx];
    const size_t slash = entry.path.find('/');
    if (slash == std::string::npos || entry.row_count >= kCompactionInputRowsMax) {
      continue;
    }
    partitions[entry.path.substr(0, slash + 11)].push_back(entry_idx);
  }
  for (const auto& [partition, candidates] : partitions) {
    if (candidates.size() < kCompactionInputsMin) {
      continue;
    }
    std::vector<size_t> inputs;
    uint64_t rows = 0;
    for (const size_t entry_idx : candidates) {
      if (rows + manifest_.segments[entry_idx].row_count > kCompactionOutputRowsMax) {
        break;
      }
      rows += manifest_.segments[entry_idx].row_count;
      inputs.push_back(entry_idx);
    }
    if (inputs.size() < 2) {
      continue;
    }
    ManifestSegment output;
    std::shared_ptr<const SegmentReader> reader;
    MP_RETURN_IF_ERROR(MergeSegments(inputs, &output, &reader));
    MP_RETURN_IF_ERROR(ReplaceSegments(inputs, output, reader));
    std::lock_guard lock(data_mutex_);
    ++data_stats_.compactions;
    return Status::Ok();  // one partition per round keeps the flush thread responsive
  }
  return Status::Ok();
}

Status EmbeddedEngine::ReplaceSegments(const std::vector<size_t>& inputs,
                                       const ManifestSegment& output,
                                       const std::shared_ptr<const SegmentReader>& reader) {
  Manifest manifest = manifest_;
  {
    std::lock_guard lock(data_mutex_);
    manifest.deletions = deletions_->deletions;
  }
  std::set<std::string> input_paths;
  for (const size_t entry_idx : inputs) {
    input_paths.insert(manifest_.segments[entry_idx].path);
  }
  std::erase_if(manifest.segments, [&](const ManifestSegment& entry) {
    return input_paths.contains(entry.path);
  });
  if (reader) {
    manifest.segments.push_back(output);
  }
  manifest.next_segment_number = next_segment_number_;
  // On failure the output stays (the rename may have landed); otherwise
  // it is an orphan, removed at the next open.
  MP_RETURN_IF_ERROR(file_system_->WriteFileAtomically(manifest_path_, EncodeManifest(manifest),
                                                       kManifestFileMode));
  manifest_ = std::move(manifest);
  {
    std::lock_guard lock(data_mutex_);
    std::erase_if(segments_, [&](const LiveSegment& segment) {
      if (!input_paths.contains(segment.path)) {
        return false;
      }
      data_stats_.segment_bytes -= segment.reader->summary().file_bytes;
      return true;
    });
    if (reader) {
      data_stats_.segment_bytes += reader->summary().file_bytes;
      segments_.push_back(LiveSegment{output.project_id, reader, output.path, output.log_end,
                                      nullptr, UINT64_MAX});
    }
    data_stats_.segments = segments_.size();
  }
  for (const std::string& path : input_paths) {
    (void)file_system_->Remove(segments_folder_ + "/" + path);
  }
  const std::string& first = *input_paths.begin();
  (void)file_system_->SyncDirectory(segments_folder_ + "/" + first.substr(0, first.find('/')));
  return Status::Ok();
}

// One segment at a time, each crash-safe as a compaction is: the new file,
// then the manifest that lists it instead of the old one, then the old
// file's removal (a crash before the manifest leaves an orphan, removed at
// the next open). Rows hidden by a deletion in force are left out, as by
// any merge; rows are not folded (they stay under their stored subjects).
// Each of the segments listed at the start is visited once, so that with
// rewrite_every_segment the outputs (appended to the manifest) are not.
Status EmbeddedEngine::RewriteOlderSegments() {
  uint64_t rewritten = 0;
  const size_t listed = manifest_.segments.size();
  for (size_t entry_idx = 0, visited = 0; visited < listed; ++visited) {
    const std::string path = manifest_.segments[entry_idx].path;
    uint32_t version = kSegmentFormatVersion;
    for (const LiveSegment& segment : segments_) {
      if (segment.path == path) {
        version = segment.reader->summary().format_version;
      }
    }
    if (version >= kSegmentFormatVersion && !options_.rewrite_every_segment) {
      ++entry_idx;
      continue;
    }
    ManifestSegment output;
    std::shared_ptr<const SegmentReader> reader;
    MP_RETURN_IF_ERROR(MergeSegments({entry_idx}, &output, &reader, /*fold=*/false));
    // The output goes to the end of the manifest: entry_idx now names the next one.
    MP_RETURN_IF_ERROR(ReplaceSegments({entry_idx}, output, reader));
    ++rewritten;
  }
  if (rewritten > 0) {
    Note("rewrote " + std::to_string(rewritten) +
         (options_.rewrite_every_segment ? " segments" : " segments of older formats") +
         " into format " + std::to_string(kSegmentFormatVersion));
  }
  return Status::Ok();
}

Status EmbeddedEngine::MergeSegments(const std::vector<size_t>& inputs, ManifestSegment* output,
                                     std::shared_ptr<const SegmentReader>* reader, bool fold) {
  // The inputs as reads see them: rows hidden by a deletion are left out,
  // so the merge is also the physical stage of erasure for its inputs (and
  // must be: the output's log end is the latest of the inputs', after
  // deletions that hid rows of earlier inputs).
  const uint32_t project_id = manifest_.segments[inputs.front()].project_id;
  MP_ASSIGN_OR_RETURN(const SegmentSnapshot live, LiveReaders(project_id));
  std::vector<std::shared_ptr<const SegmentReader>> readers;
  {
    std::lock_guard lock(data_mutex_);
    for (const size_t entry_idx : inputs) {
      const std::string& path = manifest_.segments[entry_idx].path;
      for (size_t segment_idx = 0; segment_idx < segments_.size(); ++segment_idx) {
        const LiveSegment& segment = segments_[segment_idx];
        if (segment.path != path) {
          continue;
        }
        // LiveReaders listed this project's segments in segments_ order.
        std::shared_ptr<const SegmentReader> chosen = segment.reader;
        for (const std::shared_ptr<const SegmentReader>& candidate : live) {
          if (candidate == segment.reader ||
              candidate->hidden_rows_base() == segment.reader.get()) {
            chosen = candidate;
          }
        }
        readers.push_back(chosen);
      }
    }
  }
  if (readers.size() != inputs.size()) {
    return Status::Corruption("compaction: a manifest segment has no open reader");
  }
  int64_t flushed_at_ms = INT64_MIN;
  LogPosition log_end;
  uint64_t hidden_rows = 0;  // left out: the merge is their physical removal
  for (size_t input_idx = 0; input_idx < readers.size(); ++input_idx) {
    const SegmentReader& input = *readers[input_idx];
    flushed_at_ms = std::max(flushed_at_ms, manifest_.segments[inputs[input_idx]].flushed_at_ms);
    hidden_rows += manifest_.segments[inputs[input_idx]].row_count - input.summary().row_count;
    log_end = std::max(log_end, manifest_.segments[inputs[input_idx]].log_end);
  }
  // Streaming, block by block (segment_merge.h): the merge holds a block of
  // each input and one output block, not the inputs' rows.
  const ManifestSegment& first = manifest_.segments[inputs.front()];
  std::unique_ptr<SegmentReader> opened;
  // Folded with the persons of the project's segment files, when the
  // service asks for it (docs/identity.md, "Folded segments").
  std::shared_ptr<const SubjectFold> subject_fold;
  if (fold && options_.subject_fold) {
    subject_fold = options_.subject_fold(project_id, live);
  }
  MP_RETURN_IF_ERROR(MergePartition(first.project_id,
                                    UtcDay(readers.front()->summary().time_min_ms), readers,
                                    subject_fold.get(), output, &opened));
  {
    std::lock_guard lock(data_mutex_);
    data_stats_.purge_rows_removed += hidden_rows;
  }
  if (opened == nullptr) {
    reader->reset();  // every input row was erased: the inputs go, nothing replaces them
    return Status::Ok();
  }
  output->log_end = log_end;
  // The inputs' flush time, not now: de-duplication after a restart errs on
  // remembering longer either way, and retention keys on the events' times.
  output->flushed_at_ms = flushed_at_ms;
  *reader = std::move(opened);
  return Status::Ok();
}

void EmbeddedEngine::SetPurgeDelay(int64_t purge_delay_ms) {
  std::lock_guard lock(data_mutex_);
  purge_delay_ms_ = purge_delay_ms;
  flush_cv_.notify_all();  // the flush thread looks at the new delay now
}

Status EmbeddedEngine::PurgeDeleted() {
  std::unique_lock lock(data_mutex_);
  if (flush_stopping_) {
    return Status::Unavailable("the store is closed");
  }
  const uint64_t ticket = ++purge_tickets_requested_;
  flush_cv_.notify_one();
  purge_cv_.wait(lock, [&] { return purge_tickets_done_ >= ticket || flush_stopping_; });
  if (purge_tickets_done_ < ticket) {
    return Status::Unavailable("the store closed before the purge finished");
  }
  return purge_status_;
}

Result<bool> EmbeddedEngine::PurgeOnce() {
  std::shared_ptr<const DeletionState> state;
  {
    std::lock_guard lock(data_mutex_);
    state = deletions_;
    purge_dirty_ = false;
  }
  if (state->deletions.empty()) {
    return false;
  }
  MP_ASSIGN_OR_RETURN(const bool more, RewriteHidden(*state));
  if (more) {
    std::lock_guard lock(data_mutex_);
    purge_dirty_ = true;
    return true;
  }
  MP_RETURN_IF_ERROR(RetireDeletions(*state));
  return false;
}

// Rewrites each live segment that holds rows `state` hides, without them
// (a segment left with no row is dropped), up to kPurgeRowsPerPass rows
// read; then one manifest lists the new files instead of the old, and only
// then are the readers swapped and the old files deleted. A crash before the
// manifest leaves the new files as orphans (removed on open; the deletions
// still hide the rows), after it the old files (removed on open too).
Result<bool> EmbeddedEngine::RewriteHidden(const DeletionState& state) {
  struct Rewrite {
    std::string old_path;
    uint32_t project_id = 0;
    std::optional<ManifestSegment> output;
    std::shared_ptr<const SegmentReader> reader;
    uint64_t rows_removed = 0;
    uint64_t values_removed = 0;
  };
  std::vector<LiveSegment> live;
  {
    std::lock_guard lock(data_mutex_);
    live = segments_;
  }
  std::vector<Rewrite> rewrites;
  uint64_t rows_read = 0;
  bool more = false;
  for (const ManifestSegment& entry : manifest_.segments) {
    const ProjectDeletions* deletions = state.Find(entry.project_id);
    if (deletions == nullptr) {
      continue;
    }
    const auto segment = std::find_if(live.begin(), live.end(), [&](const LiveSegment& candidate) {
      return candidate.path == entry.path;
    });
    if (segment == live.end()) {
      return Status::Corruption("purge: manifest segment " + entry.path + " has no open reader");
    }
    MaskCounts counts;
    MP_ASSIGN_OR_RETURN(SegmentMask mask,
                        MaskOf(*segment->reader, *deletions, entry.log_end, &counts));
    if (counts.empty()) {
      continue;
    }
    if (rows_read > 0 && rows_read + entry.row_count > kPurgeRowsPerPass) {
      more = true;
      break;
    }
    rows_read += entry.row_count;
    const std::shared_ptr<const SegmentReader> view =
        SegmentReader::WithMask(segment->reader, std::move(mask));
    Rewrite rewrite;
    rewrite.old_path = entry.path;
    rewrite.project_id = entry.project_id;
    rewrite.rows_removed = counts.rows;
    rewrite.values_removed = counts.values;
    // The same streaming merge as compaction, over one input.
    ManifestSegment output;
    std::unique_ptr<SegmentReader> opened;
    const std::shared_ptr<const SegmentReader> views[] = {view};
    MP_RETURN_IF_ERROR(MergePartition(entry.project_id, UtcDay(view->summary().time_min_ms), views,
                                      nullptr, &output, &opened));
    if (opened != nullptr) {
      output.log_end = entry.log_end;
      output.flushed_at_ms = entry.flushed_at_ms;
      rewrite.reader = std::move(opened);
      rewrite.output = std::move(output);
    }
    rewrites.push_back(std::move(rewrite));
  }
  if (rewrites.empty()) {
    return more;
  }
  Manifest manifest = manifest_;
  {
    std::lock_guard lock(data_mutex_);
    manifest.deletions = deletions_->deletions;
  }
  for (const Rewrite& rewrite : rewrites) {
    const auto found =
        std::find_if(manifest.segments.begin(), manifest.segments.end(),
                     [&](const ManifestSegment& entry) { return entry.path == rewrite.old_path; });
    if (rewrite.output.has_value()) {
      *found = *rewrite.output;
    } else {
      manifest.segments.erase(found);
    }
  }
  manifest.next_segment_number = next_segment_number_;
  MP_RETURN_IF_ERROR(file_system_->WriteFileAtomically(manifest_path_, EncodeManifest(manifest),
                                                       kManifestFileMode));
  manifest_ = std::move(manifest);
  uint64_t bytes_written = 0;
  {
    std::lock_guard lock(data_mutex_);
    for (const Rewrite& rewrite : rewrites) {
      const auto found =
          std::find_if(segments_.begin(), segments_.end(),
                       [&](const LiveSegment& x) { return x.path == rewrite.old_path; });
      data_stats_.segment_bytes -= found->reader->summary().file_bytes;
      data_stats_.purge_bytes_removed += found->reader->summary().file_bytes;
      data_stats_.purge_rows_removed += rewrite.rows_removed;
      data_stats_.purge_property_values_removed += rewrite.values_removed;
      if (!rewrite.output.has_value()) {
        ++data_stats_.purge_segments_dropped;
        segments_.erase(found);
        continue;
      }
      bytes_written += rewrite.reader->summary().file_bytes;
      data_stats_.segment_bytes += rewrite.reader->summary().file_bytes;
      *found = LiveSegment{rewrite.project_id,      rewrite.reader, rewrite.output->path,
                           rewrite.output->log_end, nullptr,        UINT64_MAX};
      ++data_stats_.purge_segments_rewritten;
    }
    data_stats_.segments = segments_.size();
    data_stats_.purge_bytes_written += bytes_written;
    ++data_stats_.purges;
  }
  std::set<std::string> folders;
  for (const Rewrite& rewrite : rewrites) {
    (void)file_system_->Remove(segments_folder_ + "/" + rewrite.old_path);
    folders.insert(rewrite.old_path.substr(0, rewrite.old_path.find('/')));
  }
  for (const std::string& folder : folders) {
    (void)file_system_->SyncDirectory(segments_folder_ + "/" + folder);
  }
  return more;
}

// Retires the deletions of `state` that no file needs any more: no segment
// holds a row they hide (RewriteHidden just found none), and their record
// lies in a log file before the manifest's log position file, so every row
// before them is in a segment (the memtable lost the rest when they were
// applied). The log files before that file that are left (those holding
// profile updates) are first rewritten without the rows `state` hides and
// without the retiring deletions' records; then the manifest drops them.
// A crash between the two leaves them in the manifest: still in force.
Status EmbeddedEngine::RetireDeletions(const DeletionState& state) {
  std::vector<LogPosition> retiring;
  for (const Deletion& deletion : state.deletions) {
    if (deletion.position.file_number < manifest_.log_position.file_number) {
      retiring.push_back(deletion.position);
    }
  }
  if (retiring.empty()) {
    return Status::Ok();
  }
  std::vector<LogFileInfo> files;
  {
    std::lock_guard lock(mutex_);
    files = files_;
  }
  for (const LogFileInfo& info : files) {
    if (info.number < manifest_.log_position.file_number) {
      MP_RETURN_IF_ERROR(RewriteLogFile(info, state, retiring));
    }
  }
  MP_RETURN_IF_ERROR(RewriteProfileFiles(state));
  const auto is_retired = [&retiring](const Deletion& deletion) {
    return std::find(retiring.begin(), retiring.end(), deletion.position) != retiring.end();
  };
  Manifest manifest = manifest_;
  {
    std::lock_guard lock(data_mutex_);
    manifest.deletions = deletions_->deletions;
  }
  std::erase_if(manifest.deletions, is_retired);
  // Erasures outlive their retirement in the erasure journal, so that a
  // restore of an older backup can re-apply them (docs/privacy.md, "Backup
  // and restore"): journaled before the manifest lets them go.
  std::vector<Deletion> retired;
  std::copy_if(state.deletions.begin(), state.deletions.end(), std::back_inserter(retired),
               is_retired);
  if (!options_.erasure_journal_folder.empty()) {
    MP_RETURN_IF_ERROR(
        AppendErasureJournal(*file_system_, options_.erasure_journal_folder, retired));
  }
  MP_RETURN_IF_ERROR(file_system_->WriteFileAtomically(manifest_path_, EncodeManifest(manifest),
                                                       kManifestFileMode));
  manifest_ = std::move(manifest);
  std::lock_guard lock(data_mutex_);
  std::vector<Deletion> deletions = deletions_->deletions;
  std::erase_if(deletions, is_retired);
  deletions_ = MakeDeletionState(std::move(deletions), ++deletion_generation_);
  ++data_stats_.purges;
  return Status::Ok();
}

Status EmbeddedEngine::RewriteLogFile(const LogFileInfo& info, const DeletionState& state,
                                      const std::vector<LogPosition>& dropping) {
  const std::string path = LogPath(info.number);
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system_->OpenSequential(path));
  LogReader reader(file.get(), info.durable_bytes);
  WalFileHeader file_header;
  bool all_zero = false;
  MP_ASSIGN_OR_RETURN(const LogReader::Outcome header_outcome,
                      reader.ReadFileHeader(&file_header, &all_zero));
  if (header_outcome != LogReader::Outcome::kRecord) {
    return Status::Corruption(path + ": file header is torn");
  }
  // The file keeps its format version: its records keep their encoding, so
  // each keeps its offset.
  const uint32_t version = file_header.format_version;
  std::string out = EncodeWalFileHeader(info.number, version);
  bool changed = false;
  bool profile_updates_left = false;
  const auto frame = [&out](WalRecordType type, std::string_view payload) {
    const size_t start = out.size();
    out.append(kWalRecordHeaderBytes, '\0');
    out.append(payload);
    PutFixed32At(static_cast<uint32_t>(payload.size()), out.data() + start + 4);
    out[start + 8] = static_cast<char>(type);
    PutFixed32At(Crc32(0, std::string_view(out.data() + start + 4, payload.size() + 5)),
                 out.data() + start);
  };
  Event event;
  ProfileUpdate update;
  while (true) {
    std::string_view payload;
    std::string reason;
    MP_ASSIGN_OR_RETURN(const LogReader::Outcome outcome, reader.ReadRecord(&payload, &reason));
    if (outcome == LogReader::Outcome::kEnd) {
      break;
    }
    if (outcome != LogReader::Outcome::kRecord) {
      return Status::Corruption(path + " at offset " + std::to_string(reader.record_offset()) +
                                ": " + reason);
    }
    const LogPosition position{info.number, reader.record_offset()};
    const uint64_t record_end = reader.end_offset();
    std::optional<std::string> replacement;  // unset: the record as it is
    if (reader.record_type() == WalRecordType::kDeletion) {
      if (std::find(dropping.begin(), dropping.end(), position) != dropping.end()) {
        replacement = std::string();
      }
    } else if (reader.record_type() == WalRecordType::kBatch) {
      WalDecoder decoder(payload, version);
      WalPayloadHeader header;
      MP_RETURN_IF_ERROR(decoder.ReadPayloadHeader(&header));
      const ProjectDeletions* deletions = state.Find(header.project_id);
      std::string body;
      WalPayloadHeader kept{header.stored_at_ms, header.project_id, 0, 0};
      bool stripped = false;  // a property purge removed a value
      for (uint32_t event_idx = 0; event_idx < header.event_count; ++event_idx) {
        MP_RETURN_IF_ERROR(decoder.ReadEvent(&event));
        if (deletions == nullptr) {
          EncodeEvent(event, &body, version);
          ++kept.event_count;
          continue;
        }
        if (!RowHidden(*deletions, event.subject, event.time_ms, position, event.name)) {
          stripped |=
              StripPurgedEventProperties(*deletions, position, event.name, &event.properties);
          EncodeEvent(event, &body, version);
          ++kept.event_count;
        }
      }
      for (uint32_t update_idx = 0; update_idx < header.profile_update_count; ++update_idx) {
        MP_RETURN_IF_ERROR(decoder.ReadProfileUpdate(&update));
        if (deletions == nullptr) {
          EncodeProfileUpdate(update, &body, version);
          ++kept.profile_update_count;
          continue;
        }
        const size_t properties_before = update.properties.size();
        if (KeepProfileUpdate(*deletions, position, &update)) {
          stripped |= update.properties.size() != properties_before;
          EncodeProfileUpdate(update, &body, version);
          ++kept.profile_update_count;
        }
      }
      profile_updates_left |= kept.profile_update_count > 0;
      if (stripped || kept.event_count != header.event_count ||
          kept.profile_update_count != header.profile_update_count) {
        replacement = std::string();
        if (kept.event_count > 0 || kept.profile_update_count > 0) {
          // A record shortened by less than a padding record takes up the
          // difference in its header's varints, written long
          // (docs/formats/wal.md, "Padding").
          const uint64_t old_bytes = record_end - position.offset;
          const uint64_t new_bytes = [&] {
            std::string plain;
            EncodePayloadHeader(kept, &plain);
            return kWalRecordHeaderBytes + plain.size() + body.size();
          }();
          const uint64_t gap = old_bytes > new_bytes ? old_bytes - new_bytes : 0;
          EncodePayloadHeader(kept, &*replacement,
                              gap > 0 && gap < kWalRecordHeaderBytes ? gap : 0);
          replacement->append(body);
        }
      }
    }
    if (!replacement.has_value()) {
      frame(reader.record_type(), payload);
      continue;
    }
    changed = true;
    if (!replacement->empty()) {
      frame(WalRecordType::kBatch, *replacement);
    }
    // What was removed is at least one event or profile update (more than
    // 16 bytes of subject alone), or a whole record, so a padding record fits.
    if (out.size() > record_end) {
      return Status::Corruption(path + " at offset " + std::to_string(position.offset) +
                                ": the record re-encoded is longer than it was");
    }
    const uint64_t gap = record_end - out.size();
    if (gap > 0 && gap < kWalRecordHeaderBytes) {
      return Status::Corruption(path + ": a rewritten record leaves a gap of " +
                                std::to_string(gap) + " bytes, too small for padding");
    }
    if (gap > 0) {
      frame(WalRecordType::kPadding, std::string(gap - kWalRecordHeaderBytes, '\0'));
    }
  }
  if (!changed) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(file_system_->WriteFileAtomically(path, out, kLogFileMode));
  if (!profile_updates_left) {
    // Wholly in segments and no profile update left: the next trim deletes it.
    std::lock_guard lock(mutex_);
    for (LogFileInfo& kept_info : files_) {
      if (kept_info.number == info.number) {
        kept_info.has_profile_updates = false;
      }
    }
  }
  return Status::Ok();
}

// Deletes the log files wholly before `position` (the durable manifest's)
// that hold no profile update. A failure only leaves a file for next time.
void EmbeddedEngine::TrimLog(const LogPosition& position) {
  std::vector<LogFileInfo> removable;
  {
    std::lock_guard lock(mutex_);
    for (const LogFileInfo& info : files_) {
      if (info.number < position.file_number && !info.has_profile_updates) {
        removable.push_back(info);
      }
    }
  }
  std::vector<uint64_t> removed;
  for (const LogFileInfo& info : removable) {
    if (!file_system_->Remove(LogPath(info.number)).ok()) {
      break;
    }
    removed.push_back(info.number);
  }
  if (removed.empty()) {
    return;
  }
  (void)file_system_->SyncDirectory(wal_folder_);
  {
    std::lock_guard lock(mutex_);
    std::erase_if(files_, [&](const LogFileInfo& info) {
      if (std::find(removed.begin(), removed.end(), info.number) == removed.end()) {
        return false;
      }
      stats_.log_bytes -= info.durable_bytes;
      return true;
    });
  }
  std::lock_guard lock(data_mutex_);
  data_stats_.log_files_trimmed += removed.size();
}

Status EmbeddedEngine::NewPartitionEntry(uint32_t project_id, int64_t day, ManifestSegment* entry) {
  const std::string project_folder = segments_folder_ + "/" + std::to_string(project_id);
  if (!file_system_->Exists(project_folder)) {
    MP_RETURN_IF_ERROR(file_system_->CreateDirectories(project_folder, kFolderMode));
    MP_RETURN_IF_ERROR(file_system_->SyncDirectory(segments_folder_));
  }
  std::string number = std::to_string(next_segment_number_++);
  if (number.size() < kSegmentNumberDigits) {
    number.insert(0, kSegmentNumberDigits - number.size(), '0');
  }
  entry->project_id = project_id;
  entry->path = std::to_string(project_id) + "/" + UtcDayName(day) + "-" + number + ".seg";
  entry->flushed_at_ms = options_.clock->NowMs();
  return Status::Ok();
}

Status EmbeddedEngine::WritePartition(uint32_t project_id, int64_t day,
                                      std::span<const Event> events, ManifestSegment* entry) {
  MP_RETURN_IF_ERROR(NewPartitionEntry(project_id, day, entry));
  entry->row_count = events.size();
  SegmentWriteOptions options;
  options.project_id = project_id;
  MP_ASSIGN_OR_RETURN(const std::string image, EncodeSegment(events, options));
  entry->file_bytes = image.size();
  return WriteSegmentImage(*file_system_, segments_folder_ + "/" + entry->path, image);
}

Status EmbeddedEngine::MergePartition(uint32_t project_id, int64_t day,
                                      std::span<const std::shared_ptr<const SegmentReader>> inputs,
                                      const SubjectFold* fold, ManifestSegment* entry,
                                      std::unique_ptr<SegmentReader>* reader) {
  reader->reset();
  MP_RETURN_IF_ERROR(NewPartitionEntry(project_id, day, entry));
  SegmentWriteOptions options;
  options.project_id = project_id;
  options.fold = fold;
  const std::string path = segments_folder_ + "/" + entry->path;
  MP_ASSIGN_OR_RETURN(const MergeResult merged,
                      MergeSegmentsToFile(*file_system_, path, inputs, options));
  if (merged.row_count == 0) {
    return Status::Ok();
  }
  entry->row_count = merged.row_count;
  entry->file_bytes = merged.file_bytes;
  MP_ASSIGN_OR_RETURN(*reader, OpenSegment(*file_system_, path));
  if ((*reader)->summary().row_count != merged.row_count) {
    return Status::Corruption(entry->path + ": the merge wrote " +
                              std::to_string((*reader)->summary().row_count) + " rows of " +
                              std::to_string(merged.row_count));
  }
  return Status::Ok();
}

// Store order: the profile file (older flushes first), then the updates
// being flushed, then the memtable's. The file is opened and its visible
// size read under data_mutex_, so a purge replacing it (rename) or a flush
// appending to it never shows a reader a group twice or cut.
Status EmbeddedEngine::ScanProfiles(uint32_t project_id,
                                    const std::function<bool(const ProfileUpdate&)>& visit) {
  return ScanProfilesWithArrival(
      project_id, [&visit](const ProfileUpdate& update, int64_t) { return visit(update); });
}

Status EmbeddedEngine::ScanProfilesWithArrival(
    uint32_t project_id,
    const std::function<bool(const ProfileUpdate&, int64_t stored_at_ms)>& visit) {
  std::shared_ptr<const DeletionState> state;
  std::unique_ptr<SequentialFile> file;
  uint64_t file_bytes = 0;
  std::shared_ptr<const std::vector<StoredProfileUpdate>> flushing;
  std::vector<StoredProfileUpdate> recent;
  const std::string path = ProfilePath(project_id);
  {
    std::lock_guard lock(data_mutex_);
    state = deletions_;
    if (const auto found = profile_visible_bytes_.find(project_id);
        found != profile_visible_bytes_.end() && found->second > 0) {
      file_bytes = found->second;
      MP_ASSIGN_OR_RETURN(file, file_system_->OpenSequential(path));
    }
    if (const auto found = flushing_.find(project_id); found != flushing_.end()) {
      flushing = found->second.profiles;
    }
    if (const auto found = memtables_.find(project_id); found != memtables_.end()) {
      recent = found->second.profiles;
    }
  }
  const ProjectDeletions* deletions = state->Find(project_id);
  bool stopped = false;
  if (file) {
    MP_ASSIGN_OR_RETURN(
        const ProfileFileScan scan,
        ScanProfileFile(file.get(), path, file_bytes, project_id,
                        [&](const StoredProfileUpdate& stored, const LogPosition& log_end) {
                          // Time bounds drop events only: a profile update is
                          // hidden by an erasure of its subject or an expiry
                          // of its profile at or after its group's end, and
                          // loses the keys a property purge at or after that
                          // end names.
                          if (deletions != nullptr && !deletions->property_purges.empty()) {
                            ProfileUpdate update = stored.update;
                            if (!KeepProfileUpdate(*deletions, GroupRowPosition(log_end),
                                                   &update)) {
                              return true;
                            }
                            stopped = !visit(update, stored.stored_at_ms);
                            return !stopped;
                          }
                          if (deletions != nullptr &&
                              ProfileHidden(*deletions, stored.update.subject,
                                            GroupRowPosition(log_end))) {
                            return true;
                          }
                          stopped = !visit(stored.update, stored.stored_at_ms);
                          return !stopped;
                        }));
    // The file may be shorter than `file_bytes`: a purge renamed its
    // rewrite into place after the snapshot (and before the size it
    // publishes); its groups are then those of the rewrite, all whole.
    if (!stopped && !scan.tail_reason.empty()) {
      return Status::Corruption(path + " after offset " + std::to_string(scan.valid_bytes) + ": " +
                                scan.tail_reason);
    }
  }
  // The updates being flushed and those of the memtable are from records
  // before any deletion in `state` only if the deletion removed them already.
  if (flushing) {
    for (const StoredProfileUpdate& stored : *flushing) {
      if (stopped || !visit(stored.update, stored.stored_at_ms)) {
        return Status::Ok();
      }
    }
  }
  for (const StoredProfileUpdate& stored : recent) {
    if (stopped || !visit(stored.update, stored.stored_at_ms)) {
      return Status::Ok();
    }
  }
  return Status::Ok();
}

std::string EmbeddedEngine::ProfilePath(uint32_t project_id) const {
  return profiles_folder_ + "/" + std::to_string(project_id) + ".prof";
}

// The profile files on open. A file's bytes after its last whole group were
// being appended when the store stopped (a crash or a full disk, before the
// group's sync returned): cut, as the log's torn tail is, with a note. Their
// updates are still in the log (the manifest had not moved past them), so
// the replay brings them back to the memtable. A rewrite's `.tmp` left by a
// crash is removed; the file it was to replace is whole.
Status EmbeddedEngine::LoadProfileFiles() {
  MP_RETURN_IF_ERROR(file_system_->CreateDirectories(profiles_folder_, kFolderMode));
  MP_RETURN_IF_ERROR(file_system_->SyncDirectory(options_.folder));
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                      file_system_->ListDirectory(profiles_folder_));
  for (const std::string& name : names) {
    const std::string path = profiles_folder_ + "/" + name;
    if (name.ends_with(".tmp")) {
      MP_RETURN_IF_ERROR(file_system_->Remove(path));
      Note(path + ": removed (a profile file rewrite that did not finish)");
      continue;
    }
    constexpr std::string_view kSuffix = ".prof";
    uint32_t project_id = 0;
    const std::string_view digits(name.data(), name.size() >= kSuffix.size() ? name.size() - kSuffix.size() : 0);
    const auto [end, error] =
        std::from_chars(digits.data(), digits.data() + digits.size(), project_id);
    if (!name.ends_with(kSuffix) || digits.empty() || error != std::errc() ||
        end != digits.data() + digits.size()) {
      continue;  // not ours
    }
    MP_ASSIGN_OR_RETURN(const uint64_t size, file_system_->FileSize(path));
    MP_ASSIGN_OR_RETURN(const ProfileFileScan scan,
                        ScanProfileFile(*file_system_, path, size, project_id, {}));
    if (scan.groups == 0) {
      // Created during a crash before its first group was durable.
      MP_RETURN_IF_ERROR(file_system_->Remove(path));
      Note(path + ": removed (no whole group: created by a flush that did not finish)");
      continue;
    }
    if (scan.valid_bytes < size) {
      MP_RETURN_IF_ERROR(file_system_->Truncate(path, scan.valid_bytes));
      MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> synced,
                          file_system_->OpenAppendable(path, kProfileFileMode));
      MP_RETURN_IF_ERROR(synced->Sync());
      MP_RETURN_IF_ERROR(synced->Close());
      Note(path + ": cut " + std::to_string(size - scan.valid_bytes) + " bytes after offset " +
           std::to_string(scan.valid_bytes) + " (" + scan.tail_reason + ")");
    }
    uint64_t bytes = scan.valid_bytes;
    if (scan.format_version < kProfileFileFormatVersion) {
      // An older binary's file: written anew at the newest version before a
      // flush appends a group to it (its updates' policy version unknown).
      MP_ASSIGN_OR_RETURN(bytes, RewriteProfileFileAtNewestVersion(*file_system_, path, bytes,
                                                                   project_id, kProfileFileMode));
      Note(path + ": rewritten at profile file format " +
           std::to_string(kProfileFileFormatVersion) + " (was " +
           std::to_string(scan.format_version) + ")");
    }
    profile_files_[project_id] = ProfileFileState{bytes, scan.log_end};
    stats_.profile_updates += scan.updates;
    std::lock_guard lock(data_mutex_);
    profile_visible_bytes_[project_id] = bytes;
    data_stats_.profile_bytes += bytes;
  }
  return Status::Ok();
}

Status EmbeddedEngine::AppendProfileGroups(
    const std::vector<std::pair<uint32_t, std::shared_ptr<const std::vector<StoredProfileUpdate>>>>&
        projects,
    const LogPosition& position, std::map<uint32_t, uint64_t>* appended) {
  for (const auto& [project_id, updates] : projects) {
    ProfileFileState& file = profile_files_[project_id];
    if (!(file.log_end < position)) {
      (*appended)[project_id] = file.bytes;  // appended by an attempt whose manifest failed
      continue;
    }
    const std::string path = ProfilePath(project_id);
    const bool is_new = file.bytes == 0;
    std::string bytes = is_new ? EncodeProfileFileHeader(project_id) : std::string();
    EncodeProfileGroup(project_id, *updates, position, &bytes);
    // What a failed append left after the last whole group goes first, so
    // that a group never follows bytes a reader would stop at.
    if (file_system_->Exists(path)) {
      MP_ASSIGN_OR_RETURN(const uint64_t size, file_system_->FileSize(path));
      if (size != file.bytes) {
        MP_RETURN_IF_ERROR(file_system_->Truncate(path, file.bytes));
      }
    }
    MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out,
                        file_system_->OpenAppendable(path, kProfileFileMode));
    Status status = out->Append(bytes);
    if (status.ok()) {
      status = out->Sync();
    }
    const Status closed = out->Close();
    if (status.ok()) {
      status = closed;
    }
    if (status.ok() && is_new) {
      status = file_system_->SyncDirectory(profiles_folder_);
    }
    if (!status.ok()) {
      (void)file_system_->Truncate(path, file.bytes);
      return status;
    }
    file.bytes += bytes.size();
    file.log_end = position;
    (*appended)[project_id] = file.bytes;
  }
  return Status::Ok();
}

// The physical stage of an erasure in the profile files: each file holding
// an update `state` hides is written anew (.tmp, fsync, rename, fsync of the
// folder) without it, as one group ending where the file's last group ended.
// Merging the groups is safe: every deletion in `state` has been applied
// here, and any later one is at or after every group's end (it is in the
// current log file), so it applies to all of them alike.
Status EmbeddedEngine::RewriteProfileFiles(const DeletionState& state) {
  for (auto& [project_id, file] : profile_files_) {
    const ProjectDeletions* deletions = state.Find(project_id);
    const bool purges_profiles =
        deletions != nullptr &&
        std::any_of(deletions->property_purges.begin(), deletions->property_purges.end(),
                    [](const PropertyPurge& purge) { return purge.event_name.empty(); });
    if (deletions == nullptr || file.bytes == 0 ||
        (deletions->subjects.empty() && deletions->profile_subjects.empty() &&
         !purges_profiles)) {
      continue;
    }
    {
      std::lock_guard lock(data_mutex_);
      if (profile_visible_bytes_[project_id] != file.bytes) {
        return Status::Unavailable(ProfilePath(project_id) + ": a flush is still publishing");
      }
    }
    std::vector<StoredProfileUpdate> kept;
    bool removed = false;
    MP_ASSIGN_OR_RETURN(
        const ProfileFileScan scan,
        ScanProfileFile(*file_system_, ProfilePath(project_id), file.bytes, project_id,
                        [&](const StoredProfileUpdate& stored, const LogPosition& log_end) {
                          StoredProfileUpdate copy = stored;
                          const size_t properties = copy.update.properties.size();
                          if (!KeepProfileUpdate(*deletions, GroupRowPosition(log_end),
                                                 &copy.update)) {
                            removed = true;  // erased, or left with no property
                          } else {
                            // A property purge stripped a key: written anew too.
                            removed |= copy.update.properties.size() != properties;
                            kept.push_back(std::move(copy));
                          }
                          return true;
                        }));
    if (!scan.tail_reason.empty()) {
      return Status::Corruption(ProfilePath(project_id) + " after offset " +
                                std::to_string(scan.valid_bytes) + ": " + scan.tail_reason);
    }
    if (!removed) {
      continue;
    }
    std::string image = EncodeProfileFileHeader(project_id);
    EncodeProfileGroup(project_id, kept, file.log_end, &image);
    MP_RETURN_IF_ERROR(
        file_system_->WriteFileAtomically(ProfilePath(project_id), image, kProfileFileMode));
    file.bytes = image.size();
    std::lock_guard lock(data_mutex_);
    uint64_t& visible = profile_visible_bytes_[project_id];
    data_stats_.profile_bytes = data_stats_.profile_bytes - visible + image.size();
    visible = image.size();
  }
  return Status::Ok();
}

Stats EmbeddedEngine::GetStats() const {
  Stats stats;
  {
    std::lock_guard lock(mutex_);
    stats = stats_;
  }
  std::lock_guard lock(data_mutex_);
  stats.segments = data_stats_.segments;
  stats.segment_bytes = data_stats_.segment_bytes;
  stats.memtable_rows = memtable_rows_;
  stats.memtable_bytes = memtable_bytes_;
  for (const auto& [project_id, flushing] : flushing_) {
    stats.memtable_rows += flushing.events->size();
    stats.memtable_bytes += flushing.bytes;
  }
  stats.flushes = data_stats_.flushes;
  stats.flush_failures = data_stats_.flush_failures;
  stats.flush_rows = data_stats_.flush_rows;
  stats.flush_time_us_sum = data_stats_.flush_time_us_sum;
  stats.flushes_behind = data_stats_.flushes_behind;
  stats.appends_refused_memtable_full = data_stats_.appends_refused_memtable_full;
  stats.compactions = data_stats_.compactions;
  stats.log_files_trimmed = data_stats_.log_files_trimmed;
  stats.profile_bytes = data_stats_.profile_bytes;
  stats.deletions_active = deletions_->deletions.size();
  if (!deletions_->deletions.empty()) {
    int64_t oldest_ms = INT64_MAX;
    for (const Deletion& deletion : deletions_->deletions) {
      oldest_ms = std::min(oldest_ms, deletion.stored_at_ms);
    }
    stats.deletion_oldest_age_ms =
        static_cast<uint64_t>(std::max<int64_t>(0, options_.clock->NowMs() - oldest_ms));
  }
  stats.deletions_logged = data_stats_.deletions_logged;
  stats.profiles_expired = data_stats_.profiles_expired;
  stats.purges = data_stats_.purges;
  stats.purge_rows_removed = data_stats_.purge_rows_removed;
  stats.purge_segments_rewritten = data_stats_.purge_segments_rewritten;
  stats.purge_bytes_written = data_stats_.purge_bytes_written;
  stats.purge_bytes_removed = data_stats_.purge_bytes_removed;
  stats.purge_segments_dropped = data_stats_.purge_segments_dropped;
  stats.property_purges_active = static_cast<uint64_t>(
      std::count_if(deletions_->deletions.begin(), deletions_->deletions.end(),
                    [](const Deletion& deletion) { return !deletion.property_key.empty(); }));
  stats.purge_property_values_removed = data_stats_.purge_property_values_removed;
  return stats;
}

Status EmbeddedEngine::Close() {
  std::lock_guard close_lock(close_mutex_);
  if (closed_) {
    return Status::Ok();
  }
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  writer_cv_.notify_one();
  if (writer_.joinable()) {
    writer_.join();
  }
  // The writer is gone, so the memtable is final: one last flush, unless
  // the options ask to leave the log as it is.
  {
    // Without flush_on_close the flusher stops at its next round, writing
    // nothing more, as a crash would; a flush already under way finishes
    // (a crash just after it). The buffers are left alone: clearing them
    // under a flush that had already swapped would write a manifest that
    // covers the log without the rows, and the trim would delete them.
    std::lock_guard lock(data_mutex_);
    flush_stopping_ = true;
  }
  flush_cv_.notify_one();
  purge_cv_.notify_all();
  if (flusher_.joinable()) {
    flusher_.join();
  }
  closed_ = true;
  if (!file_) {
    return Status::Ok();
  }
  Status status = file_->Close();
  file_.reset();
  return status;
}

// Each live segment keeps a file descriptor open (and a query's snapshot
// those of segments since replaced), so the soft limit is raised to the
// hard one. A failure leaves the limit as it was.
void RaiseOpenFileLimit() {
  struct rlimit limit {};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

Result<uint64_t> Engine::ProjectDiskBytes(uint32_t project_id) {
  MP_ASSIGN_OR_RETURN(const SegmentSnapshot snapshot, Snapshot(project_id));
  uint64_t bytes = 0;
  for (const auto& segment : snapshot) {
    bytes += segment->summary().file_bytes;
  }
  return bytes;
}

Result<std::unique_ptr<Engine>> OpenEmbeddedEngine(const Options& options) {
  if (options.folder.empty() || !options.file_system || !options.clock) {
    return Status::InvalidArgument("store options need a folder, a file system and a clock");
  }
  if (options.dedup_window_ms < 0) {
    return Status::InvalidArgument("store dedup_window_ms must not be negative");
  }
  if (options.memtable_rows_max == 0 || options.memtable_bytes_max == 0) {
    return Status::InvalidArgument("store memtable_rows_max and memtable_bytes_max must be positive");
  }
  if (options.log_file_bytes_max <= kWalFileHeaderBytes) {
    return Status::InvalidArgument("store log_file_bytes_max must exceed the log file header");
  }
  RaiseOpenFileLimit();
  auto engine = std::make_unique<EmbeddedEngine>(options);
  MP_RETURN_IF_ERROR(engine->Open());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace minpanel::store
