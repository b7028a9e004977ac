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

#include "store/dedup_index.h"
#include "store/log_reader.h"
#include "store/manifest.h"
#include "store/mix.h"
#include "store/segment.h"
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
constexpr int64_t kMsPerDay = 86'400'000;
// Compaction merges the segments of one (project, day) once at least this
// many of them are smaller than kCompactionInputRowsMax, into one segment of
// at most kCompactionOutputRowsMax rows.
constexpr size_t kCompactionInputsMin = 4;
constexpr uint64_t kCompactionInputRowsMax = 1'000'000;
constexpr uint64_t kCompactionOutputRowsMax = 4'000'000;

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
  return time_ms >= 0 ? time_ms / kMsPerDay : -((-(time_ms + 1)) / kMsPerDay) - 1;
}

// What an event costs in the memtable, roughly: the object and its heap strings.
uint64_t EventMemoryBytes(const Event& event) {
  uint64_t bytes = sizeof(Event) + event.name.size();
  for (const Property& property : event.properties) {
    bytes += sizeof(Property) + property.key.size();
    if (property.value.type() == Value::Type::kString) {
      bytes += property.value.as_string().size();
    } else if (property.value.type() == Value::Type::kList) {
      for (const std::string& item : property.value.as_list()) {
        bytes += sizeof(std::string) + item.size();
      }
    }
  }
  return bytes;
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
        manifest_path_(options.folder + "/MANIFEST"),
        dedup_(options.dedup_entries_max, options.dedup_window_ms) {}

  ~EmbeddedEngine() override { (void)Close(); }

  Status Open();
  Result<AppendResult> Append(AppendBatch batch) override;
  void AppendAsync(AppendBatch batch, AppendCallback done) override;
  Status Scan(const ScanRequest& request,
              const std::function<bool(const Event&)>& visit) override;
  Status ScanProfiles(uint32_t project_id,
                      const std::function<bool(const ProfileUpdate&)>& visit) override;
  Result<SegmentSnapshot> Snapshot(uint32_t project_id) override;
  Stats GetStats() const override;
  Status Close() override;

 private:
  // A batch between its caller and the writer: encoded, with what the
  // writer needs to de-duplicate it; the events themselves are not kept.
  struct PendingAppend {
    uint32_t project_id = 0;
    // The events, for the memtable; ComposeRecord keeps only those stored.
    std::vector<Event> events;
    std::vector<Id128> insert_ids;     // of each event, in order
    size_t profile_updates = 0;
    std::string body;                 // encoded events, then profile updates
    std::vector<uint32_t> event_ends;  // end offset in `body` of each event
    uint32_t body_crc = 0;
    // Written by the writer thread under mutex_.
    Status status;
    AppendResult result;
    bool done = false;
    std::condition_variable done_cv;
    AppendCallback callback;  // set for AppendAsync; then the writer owns this
  };
  struct LogFileInfo {
    uint64_t number = 0;
    uint64_t durable_bytes = 0;
    // Profile updates live only in the log, so a file holding one is never trimmed.
    bool has_profile_updates = false;
  };
  // The events of one project logged since the last flush began.
  struct Memtable {
    std::vector<Event> events;
    uint64_t bytes = 0;
    uint64_t version = 0;  // from memtable_versions_, changed by every append
    SegmentSnapshot encoded;  // cache for Snapshot, valid when encoded_version == version
    uint64_t encoded_version = 0;
  };
  // The memtable of one project that the flush thread is writing out.
  struct FlushingMemtable {
    std::shared_ptr<const std::vector<Event>> events;
    uint64_t bytes = 0;
    SegmentSnapshot encoded;  // cache for Snapshot, empty until first asked
  };
  struct LiveSegment {
    uint32_t project_id = 0;
    std::shared_ptr<const SegmentReader> reader;
    std::string path;  // as in the manifest
  };
  // Receives each record of a file: its header and a decoder positioned
  // after it. Returns false to stop.
  using RecordVisitor = std::function<Result<bool>(const WalPayloadHeader&, WalDecoder*)>;

  std::string LogPath(uint64_t number) const;
  void Note(const std::string& note);
  // Recovery.
  Status ReplayFile(uint64_t number, bool is_last, uint64_t* durable_bytes);
  Status ApplyRecord(std::string_view payload, bool to_memtable);
  Status LoadManifest();
  Status RemoveOrphans(const std::set<std::string>& live_paths);
  // Memtable and flush.
  void AddToMemtable(std::vector<PendingAppend*> const& group);
  void AddEventsLocked(uint32_t project_id, std::vector<Event>* events);
  bool MemtableOverThresholdLocked() const;
  // True (counting `batches` refused) at the memtable's hard limit.
  bool MemtableFull(size_t batches);
  void FlushLoop();
  // Has the writer thread (or, once it has stopped, this one) roll the log
  // and swap the memtable out; returns with data_mutex_ held again.
  void SwapAtLogRoll(std::unique_lock<std::mutex>& lock, bool stopping);
  void RollLogAndSwapMemtables();
  void SwapMemtablesLocked();
  Status FlushImmutable();
  Status WritePartition(uint32_t project_id, int64_t day, std::span<const Event> events,
                        ManifestSegment* entry);
  Status CreateLogFile(uint64_t number);
  Status OpenLastLogFile(uint64_t number, uint64_t durable_bytes, bool has_profile_updates);
  Status LoadRecentInsertIds();
  void TrimLog(const LogPosition& position);
  Status CompactOnce();
  Status MergeSegments(const std::vector<size_t>& inputs, ManifestSegment* output,
                       std::shared_ptr<const SegmentReader>* reader);
  // Writer thread.
  void WriterLoop();
  void CommitGroup(const std::vector<PendingAppend*>& group);
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
  // Readers.
  Status ForEachRecord(const LogFileInfo& info, uint32_t project_id, const RecordVisitor& visit);

  const Options options_;
  const std::shared_ptr<FileSystem> file_system_;
  const std::string wal_folder_;
  const std::string segments_folder_;
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

  // The manifest on disk; written by Open, then only by the flush thread.
  Manifest manifest_;
  uint64_t next_segment_number_ = 1;  // flush thread; never reused, even after a failure

  mutable std::mutex data_mutex_;
  std::condition_variable flush_cv_;
  std::map<uint32_t, Memtable> memtables_;
  uint64_t memtable_rows_ = 0;   // of memtables_
  uint64_t memtable_bytes_ = 0;  // of memtables_
  uint64_t memtable_versions_ = 0;
  LogPosition memtable_position_;  // every record before it is in a memtable or a segment
  std::map<uint32_t, FlushingMemtable> flushing_;
  LogPosition flushing_position_;
  std::vector<LiveSegment> segments_;
  bool flush_requested_ = false;
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
    MP_RETURN_IF_ERROR(ReplayFile(numbers[file_idx], is_last, &durable_bytes));
    if (durable_bytes > 0 && !is_last) {
      files_.push_back(LogFileInfo{numbers[file_idx], durable_bytes, replay_found_profile_updates_});
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
  }
  {
    std::lock_guard lock(data_mutex_);
    memtable_position_ = LogPosition{file_number_, file_durable_bytes_};
    flush_requested_ = MemtableOverThresholdLocked();
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
    segments_.push_back(LiveSegment{entry.project_id, std::move(reader).value(), entry.path});
  }
  data_stats_.segments = segments_.size();
  next_segment_number_ = manifest_.next_segment_number;
  MP_RETURN_IF_ERROR(RemoveOrphans(live_paths));
  return LoadRecentInsertIds();
}

// The log before the manifest's position may be trimmed, so the insert ids
// of segments flushed within the de-duplication window are remembered from
// the segments' insert id columns, as stored at their flush time (no
// earlier than the events' own store time: it errs on remembering longer).
// Ids the log still holds are inserted again on replay, which changes nothing.
Status EmbeddedEngine::LoadRecentInsertIds() {
  const int64_t window_start_ms = options_.clock->NowMs() - options_.dedup_window_ms;
  std::vector<Id128> insert_ids;
  for (size_t segment_idx = 0; segment_idx < segments_.size(); ++segment_idx) {
    const ManifestSegment& entry = manifest_.segments[segment_idx];
    if (entry.flushed_at_ms < window_start_ms) {
      continue;
    }
    const SegmentReader& reader = *segments_[segment_idx].reader;
    for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
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
  while (true) {
    std::string_view payload;
    std::string reason;
    MP_ASSIGN_OR_RETURN(LogReader::Outcome record, reader.ReadRecord(&payload, &reason));
    if (record == LogReader::Outcome::kEnd) {
      break;
    }
    if (record == LogReader::Outcome::kRecord) {
      const bool to_memtable =
          LogPosition{number, reader.record_offset()} >= manifest_.log_position;
      const Status applied = ApplyRecord(payload, to_memtable);
      if (applied.ok()) {
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

Status EmbeddedEngine::ApplyRecord(std::string_view payload, bool to_memtable) {
  WalDecoder decoder(payload);
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
  ProfileUpdate update;
  for (uint32_t update_idx = 0; update_idx < header.profile_update_count; ++update_idx) {
    MP_RETURN_IF_ERROR(decoder.ReadProfileUpdate(&update));
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
  stats_.profile_updates += header.profile_update_count;
  replay_found_profile_updates_ |= header.profile_update_count > 0;
  if (!events.empty()) {
    std::lock_guard lock(data_mutex_);
    AddEventsLocked(header.project_id, &events);
  }
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
  files_.push_back(LogFileInfo{number, kWalFileHeaderBytes});
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
  files_.push_back(LogFileInfo{number, durable_bytes, has_profile_updates});
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
  if (MemtableFull(group.size())) {
    FinishGroup(group, Status::ResourceExhausted(
                           "the memtable holds kMemtableHardLimitFactor times memtable_rows_max or "
                           "memtable_bytes_max because flushes fall behind or fail; retry later"));
    return;
  }
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
  PublishGroup(group, sync_latency_us);
  AddToMemtable(group);
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
  if (flushing_.empty() && memtable_rows_ > 0) {
    SwapMemtablesLocked();
  }
  flush_cv_.notify_one();
}

void EmbeddedEngine::ComposeRecord(PendingAppend* pending, int64_t stored_at_ms) {
  const uint32_t project_id = pending->project_id;
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
      }
    }
    pending->events.resize(kept.size());
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

Status EmbeddedEngine::ForEachRecord(const LogFileInfo& info, uint32_t project_id,
                                     const RecordVisitor& visit) {
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
  while (true) {
    std::string_view payload;
    std::string reason;
    MP_ASSIGN_OR_RETURN(const LogReader::Outcome outcome, reader.ReadRecord(&payload, &reason));
    if (outcome == LogReader::Outcome::kEnd) {
      return Status::Ok();
    }
    if (outcome != LogReader::Outcome::kRecord) {
      return Status::Corruption(path + " at offset " + std::to_string(reader.record_offset()) +
                                ": " + reason);
    }
    WalDecoder decoder(payload);
    WalPayloadHeader header;
    MP_RETURN_IF_ERROR(decoder.ReadPayloadHeader(&header));
    if (header.project_id != project_id) {
      continue;
    }
    MP_ASSIGN_OR_RETURN(const bool more, visit(header, &decoder));
    if (!more) {
      return Status::Ok();
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
  std::vector<std::shared_ptr<const SegmentReader>> readers;
  std::shared_ptr<const std::vector<Event>> flushing;
  std::vector<Event> recent;
  {
    std::lock_guard lock(data_mutex_);
    for (const LiveSegment& segment : segments_) {
      if (segment.project_id == request.project_id) {
        readers.push_back(segment.reader);
      }
    }
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
  std::vector<Event> block_events;
  for (const std::shared_ptr<const SegmentReader>& reader : readers) {
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
    filter.subject_min = request.subject;
    filter.subject_max = request.subject;
    for (const size_t block_idx : reader->MatchingBlocks(filter)) {
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
  SegmentSnapshot snapshot;
  std::shared_ptr<const std::vector<Event>> flushing;
  std::vector<Event> recent;
  uint64_t recent_version = 0;
  {
    std::lock_guard lock(data_mutex_);
    for (const LiveSegment& segment : segments_) {
      if (segment.project_id == project_id) {
        snapshot.push_back(segment.reader);
      }
    }
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

void EmbeddedEngine::AddToMemtable(const std::vector<PendingAppend*>& group) {
  std::lock_guard lock(data_mutex_);
  for (PendingAppend* pending : group) {
    if (!pending->events.empty()) {
      AddEventsLocked(pending->project_id, &pending->events);
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

void EmbeddedEngine::AddEventsLocked(uint32_t project_id, std::vector<Event>* events) {
  Memtable& memtable = memtables_[project_id];
  for (Event& event : *events) {
    // Segments return properties sorted by key; so does the memtable, so
    // that a scan's rows do not depend on whether a flush has run.
    std::sort(event.properties.begin(), event.properties.end(),
              [](const Property& left, const Property& right) { return left.key < right.key; });
    const uint64_t bytes = EventMemoryBytes(event);
    memtable.bytes += bytes;
    memtable_bytes_ += bytes;
    memtable.events.push_back(std::move(event));
  }
  memtable_rows_ += events->size();
  memtable.version = ++memtable_versions_;
  events->clear();
}

bool EmbeddedEngine::MemtableOverThresholdLocked() const {
  return memtable_rows_ >= options_.memtable_rows_max ||
         memtable_bytes_ >= options_.memtable_bytes_max;
}

bool EmbeddedEngine::MemtableFull(size_t batches) {
  std::lock_guard lock(data_mutex_);
  const bool full = memtable_rows_ >= kMemtableHardLimitFactor * options_.memtable_rows_max ||
                    memtable_bytes_ >= kMemtableHardLimitFactor * options_.memtable_bytes_max;
  if (full) {
    data_stats_.appends_refused_memtable_full += batches;
  }
  return full;
}

// Flushes when asked (a threshold passed, or Close), one flush at a time.
// A failed flush keeps its memtable (still visible to readers, still in the
// log) and is retried after kFlushRetryPause; Close makes one last attempt.
void EmbeddedEngine::FlushLoop() {
  std::unique_lock lock(data_mutex_);
  while (true) {
    flush_cv_.wait(lock, [this] { return flush_requested_ || flush_stopping_; });
    const bool stopping = flush_stopping_;
    if (flushing_.empty()) {
      if (memtable_rows_ == 0) {
        flush_requested_ = false;
        if (stopping) {
          return;
        }
        continue;
      }
      SwapAtLogRoll(lock, stopping);
      if (flushing_.empty()) {
        continue;  // Close came first: the next round swaps (the writer has stopped)
      }
    }
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    const Status flushed = FlushImmutable();
    const uint64_t elapsed_us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                              start)
            .count());
    lock.lock();
    if (!flushed.ok()) {
      ++data_stats_.flush_failures;
      if (stopping) {
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
    flush_requested_ = MemtableOverThresholdLocked() || (stopping && memtable_rows_ > 0);
    behind_counted_ = false;
  }
}

void EmbeddedEngine::SwapAtLogRoll(std::unique_lock<std::mutex>& lock, bool stopping) {
  lock.unlock();
  if (stopping) {
    // Close has joined the writer, so the log file is this thread's now.
    RollLogAndSwapMemtables();
    lock.lock();
    return;
  }
  {
    std::lock_guard writer_lock(mutex_);
    roll_requested_ = true;
  }
  writer_cv_.notify_one();
  lock.lock();
  // The writer takes the request before its next group, or before it stops.
  flush_cv_.wait(lock, [this] { return !flushing_.empty() || flush_stopping_; });
}

void EmbeddedEngine::SwapMemtablesLocked() {
  for (auto& [project_id, memtable] : memtables_) {
    if (memtable.events.empty()) {
      continue;
    }
    FlushingMemtable& flushing = flushing_[project_id];
    flushing.events = std::make_shared<const std::vector<Event>>(std::move(memtable.events));
    flushing.bytes = memtable.bytes;
    if (memtable.encoded_version == memtable.version) {
      flushing.encoded = std::move(memtable.encoded);
    }
  }
  memtables_.clear();
  memtable_rows_ = 0;
  memtable_bytes_ = 0;
  flushing_position_ = memtable_position_;
}

// Writes one segment per (project, UTC day) of the memtable being flushed,
// then a manifest listing them with the log position they cover; publishes
// both to readers only once the manifest is durable.
Status EmbeddedEngine::FlushImmutable() {
  std::vector<std::pair<uint32_t, std::shared_ptr<const std::vector<Event>>>> projects;
  LogPosition position;
  {
    std::lock_guard lock(data_mutex_);
    for (const auto& [project_id, flushing] : flushing_) {
      projects.emplace_back(project_id, flushing.events);
    }
    position = flushing_position_;
  }
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
    opened.push_back(LiveSegment{entry.project_id, std::move(reader).value(), entry.path});
  }
  manifest.segments.insert(manifest.segments.end(), written.begin(), written.end());
  manifest.log_position = position;
  manifest.next_segment_number = next_segment_number_;
  // On failure the files stay: a rename that happened before a failed folder
  // sync may have made this manifest the one on disk. Otherwise they are
  // orphans, removed at the next open.
  MP_RETURN_IF_ERROR(
      file_system_->WriteFileAtomically(manifest_path_, EncodeManifest(manifest), kManifestFileMode));
  manifest_ = std::move(manifest);
  std::lock_guard lock(data_mutex_);
  for (LiveSegment& segment : opened) {
    data_stats_.segment_bytes += segment.reader->summary().file_bytes;
    segments_.push_back(std::move(segment));
  }
  data_stats_.segments = segments_.size();
  data_stats_.flush_rows += rows;
  flushing_.clear();
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
    Manifest manifest = manifest_;
    std::set<std::string> input_paths;
    for (const size_t entry_idx : inputs) {
      input_paths.insert(manifest_.segments[entry_idx].path);
    }
    std::erase_if(manifest.segments, [&](const ManifestSegment& entry) {
      return input_paths.contains(entry.path);
    });
    manifest.segments.push_back(output);
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
      data_stats_.segment_bytes += reader->summary().file_bytes;
      segments_.push_back(LiveSegment{output.project_id, reader, output.path});
      data_stats_.segments = segments_.size();
      ++data_stats_.compactions;
    }
    for (const std::string& path : input_paths) {
      (void)file_system_->Remove(segments_folder_ + "/" + path);
    }
    (void)file_system_->SyncDirectory(segments_folder_ + "/" + partition.substr(0, partition.find('/')));
    return Status::Ok();  // one partition per round keeps the flush thread responsive
  }
  return Status::Ok();
}

Status EmbeddedEngine::MergeSegments(const std::vector<size_t>& inputs, ManifestSegment* output,
                                     std::shared_ptr<const SegmentReader>* reader) {
  std::vector<std::shared_ptr<const SegmentReader>> readers;
  {
    std::lock_guard lock(data_mutex_);
    for (const size_t entry_idx : inputs) {
      const std::string& path = manifest_.segments[entry_idx].path;
      for (const LiveSegment& segment : segments_) {
        if (segment.path == path) {
          readers.push_back(segment.reader);
        }
      }
    }
  }
  if (readers.size() != inputs.size()) {
    return Status::Corruption("compaction: a manifest segment has no open reader");
  }
  std::vector<Event> events;
  std::vector<Event> block_events;
  int64_t flushed_at_ms = INT64_MIN;
  for (size_t input_idx = 0; input_idx < readers.size(); ++input_idx) {
    const SegmentReader& input = *readers[input_idx];
    for (size_t block_idx = 0; block_idx < input.block_count(); ++block_idx) {
      MP_RETURN_IF_ERROR(input.ReadEvents(block_idx, &block_events));
      events.insert(events.end(), block_events.begin(), block_events.end());
    }
    flushed_at_ms = std::max(flushed_at_ms, manifest_.segments[inputs[input_idx]].flushed_at_ms);
  }
  const ManifestSegment& first = manifest_.segments[inputs.front()];
  MP_RETURN_IF_ERROR(WritePartition(first.project_id, UtcDay(events.front().time_ms), events, output));
  // The inputs' flush time, not now: de-duplication after a restart errs on
  // remembering longer either way, and retention keys on the events' times.
  output->flushed_at_ms = flushed_at_ms;
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SegmentReader> opened,
                      OpenSegment(*file_system_, segments_folder_ + "/" + output->path));
  if (opened->summary().row_count != events.size()) {
    return Status::Corruption(output->path + ": compaction wrote " +
                              std::to_string(opened->summary().row_count) + " rows of " +
                              std::to_string(events.size()));
  }
  *reader = std::move(opened);
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

Status EmbeddedEngine::WritePartition(uint32_t project_id, int64_t day,
                                      std::span<const Event> events, ManifestSegment* entry) {
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
  entry->row_count = events.size();
  entry->flushed_at_ms = options_.clock->NowMs();
  SegmentWriteOptions options;
  options.project_id = project_id;
  MP_ASSIGN_OR_RETURN(const std::string image, EncodeSegment(events, options));
  entry->file_bytes = image.size();
  return WriteSegmentImage(*file_system_, segments_folder_ + "/" + entry->path, image);
}

Status EmbeddedEngine::ScanProfiles(uint32_t project_id,
                                    const std::function<bool(const ProfileUpdate&)>& visit) {
  std::vector<LogFileInfo> files;
  {
    std::lock_guard lock(mutex_);
    files = files_;
  }
  bool stopped = false;
  Event event;
  ProfileUpdate update;
  const RecordVisitor on_record = [&](const WalPayloadHeader& header,
                                      WalDecoder* decoder) -> Result<bool> {
    // Events come first in a record and have no length prefix, so they are decoded to be skipped.
    for (uint32_t event_idx = 0; event_idx < header.event_count; ++event_idx) {
      MP_RETURN_IF_ERROR(decoder->ReadEvent(&event));
    }
    for (uint32_t update_idx = 0; update_idx < header.profile_update_count; ++update_idx) {
      MP_RETURN_IF_ERROR(decoder->ReadProfileUpdate(&update));
      if (!visit(update)) {
        stopped = true;
        return false;
      }
    }
    return true;
  };
  for (const LogFileInfo& info : files) {
    // A file without profile updates may be trimmed at any moment; it has
    // nothing to read here anyway.
    if (!info.has_profile_updates) {
      continue;
    }
    MP_RETURN_IF_ERROR(ForEachRecord(info, project_id, on_record));
    if (stopped) {
      break;
    }
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
    std::lock_guard lock(data_mutex_);
    flush_stopping_ = true;
    if (!options_.flush_on_close) {
      flushing_.clear();
      memtables_.clear();
      memtable_rows_ = 0;
      memtable_bytes_ = 0;
    }
  }
  flush_cv_.notify_one();
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

}  // namespace

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
  auto engine = std::make_unique<EmbeddedEngine>(options);
  MP_RETURN_IF_ERROR(engine->Open());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace minpanel::store
