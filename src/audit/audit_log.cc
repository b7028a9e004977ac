#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "audit/audit.h"
#include "audit/log_format.h"
#include "audit/subjects_rewrite.h"

namespace minpanel::audit {
namespace {

constexpr uint32_t kFileMode = 0600;
constexpr uint32_t kFolderMode = 0700;
// Names tried for a new subject file before giving up (each taken name is
// a file an earlier run left under the same millisecond and number).
constexpr size_t kSubjectsNameAttemptsMax = 16;

#ifdef MINPANEL_BENCH_NO_AUDIT
// A benchmark build (CMake MINPANEL_BENCH_NO_AUDIT; docs/benchmarks.md,
// "Audit log"): Enqueue, WaitDurable and WriteSubjects do nothing, so that
// bench/audit.sh can compare the log's cost with none at all. Such a binary
// must never serve anyone: it opens a log only when its environment says
// it is a benchmark, and says what it is on stderr every time.
constexpr bool kBenchNoAudit = true;
#else
constexpr bool kBenchNoAudit = false;
#endif
constexpr std::string_view kBenchNoAuditEnvironment = "MINPANEL_BENCH_NO_AUDIT";

Status CheckBenchNoAudit(const std::string& folder) {
  if (!kBenchNoAudit) {
    return Status::Ok();
  }
  std::fprintf(stderr,
               "minpanel: WARNING: THIS BINARY KEEPS NO AUDIT LOG (built with "
               "MINPANEL_BENCH_NO_AUDIT, for benchmarks only): no read of %s is recorded\n",
               folder.c_str());
  const char* confirmed = std::getenv(std::string(kBenchNoAuditEnvironment).c_str());
  if (confirmed == nullptr || std::string_view(confirmed) != "1") {
    return Status::PermissionDenied(
        "audit log " + folder +
        ": this binary was built with MINPANEL_BENCH_NO_AUDIT and keeps no audit log; it runs "
        "only for a benchmark, with MINPANEL_BENCH_NO_AUDIT=1 in its environment");
  }
  return Status::Ok();
}

// Zeros written ahead are written in pieces of this size.
constexpr size_t kZeroPieceBytes = 64 << 10;

std::string FileHeader(bool written_ahead) {
  std::string header(kFileMagic);
  internal::AppendU32(written_ahead ? kFileVersionWrittenAhead : kFileVersion, &header);
  header.append(4, '\0');
  return header;
}

std::string Frame(std::string_view payload, const std::array<uint8_t, kHashBytes>& hash) {
  std::string frame;
  frame.reserve(payload.size() + kRecordFrameBytes);
  internal::AppendU32(static_cast<uint32_t>(payload.size()), &frame);
  frame.append(payload);
  frame.append(reinterpret_cast<const char*>(hash.data()), hash.size());
  return frame;
}

// Writes `header` then the bytes of `from` from `offset` to `end` (the
// last record's end: not the zeros written ahead) to `to` (made anew), synced.
Status CopyPruned(FileSystem& file_system, const std::string& from, const std::string& to,
                  std::string_view header, uint64_t offset, uint64_t end) {
  if (file_system.Exists(to)) {
    MP_RETURN_IF_ERROR(file_system.Remove(to));  // left by a prune a crash interrupted
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> source, file_system.OpenRandomAccess(from));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> target,
                      file_system.OpenAppendable(to, kFileMode));
  MP_RETURN_IF_ERROR(target->Append(header));
  std::string piece;
  while (offset < end) {
    MP_RETURN_IF_ERROR(source->ReadAt(
        offset, static_cast<size_t>(std::min<uint64_t>(kReadChunkBytes, end - offset)), &piece));
    if (piece.empty()) {
      return Status::Corruption("audit log " + from + ": ends before byte " + std::to_string(end));
    }
    MP_RETURN_IF_ERROR(target->Append(piece));
    offset += piece.size();
  }
  MP_RETURN_IF_ERROR(target->Sync());
  return target->Close();
}

}  // namespace

AuditLog::AuditLog(std::string folder, std::shared_ptr<FileSystem> file_system,
                   std::shared_ptr<Clock> clock, Options options, int lock_fd)
    : folder_(std::move(folder)),
      file_system_(std::move(file_system)),
      clock_(std::move(clock)),
      options_(options),
      lock_fd_(lock_fd) {}

AuditLog::~AuditLog() {
  (void)Close();
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
  }
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(std::string folder,
                                                 std::shared_ptr<FileSystem> file_system,
                                                 std::shared_ptr<Clock> clock, Options options) {
  MP_RETURN_IF_ERROR(CheckBenchNoAudit(folder));
  if (options.opening_wait_us > kOpeningWaitUsMax) {
    return Status::InvalidArgument("audit log: opening_wait_us " +
                                   std::to_string(options.opening_wait_us) +
                                   " is over kOpeningWaitUsMax (" +
                                   std::to_string(kOpeningWaitUsMax) + ")");
  }
  if (options.deferred_start_ms > kDeferredStartMsMax) {
    return Status::InvalidArgument("audit log: deferred_start_ms " +
                                   std::to_string(options.deferred_start_ms) +
                                   " is over kDeferredStartMsMax (" +
                                   std::to_string(kDeferredStartMsMax) + ")");
  }
  if (options.unawaited_flush_ms > kUnawaitedFlushMsMax) {
    return Status::InvalidArgument("audit log: unawaited_flush_ms " +
                                   std::to_string(options.unawaited_flush_ms) +
                                   " is over kUnawaitedFlushMsMax (" +
                                   std::to_string(kUnawaitedFlushMsMax) + ")");
  }
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(folder + "/subjects", kFolderMode));
  const std::string lock_path = folder + "/LOCK";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
  if (lock_fd < 0) {
    return Status::IoError("cannot open " + lock_path);
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return Status::Unavailable("audit log " + folder + ": another process holds it");
  }
  std::unique_ptr<AuditLog> log(
      new AuditLog(folder, file_system, std::move(clock), options, lock_fd));
  const std::string path = folder + "/log";
  std::string anchors_text;
  if (file_system->Exists(folder + "/anchors")) {
    MP_ASSIGN_OR_RETURN(anchors_text, file_system->ReadFile(folder + "/anchors"));
  }
  // Key epochs (docs/formats/audit.md): the checkpoints are checked under
  // the keys their epochs name, and this key must be the current epoch's
  // unless a restore without the old keys starts a new one.
  MP_ASSIGN_OR_RETURN(const std::optional<PublicKey> anchors_key, CurrentAnchorsKey(anchors_text));
  const PublicKey* own_key = options.signing_key ? &options.signing_key->public_key : nullptr;
  const bool other_epoch =
      own_key != nullptr && anchors_key.has_value() && *anchors_key != *own_key;
  if (other_epoch && !options.new_key_epoch) {
    return Status::Corruption(
        "audit log " + folder + ": its checkpoints are signed by the key " +
        PublicKeyHex(*anchors_key) + ", not by the key folder's audit signing key " +
        PublicKeyHex(*own_key) +
        ": start with the key folder of this data folder (a data folder restored without its "
        "keys starts a new key epoch: `minpanel restore`, docs/privacy.md)");
  }
  // The log is streamed (LogReader): memory stays one read piece whatever
  // its size.
  WalkOptions walk;
  walk.public_key = other_epoch ? &*anchors_key : own_key;
  VerifyReport report;
  uint64_t file_bytes = 0;
  std::unique_ptr<RandomAccessFile> existing;
  if (file_system->Exists(path) && options.open_from_index) {
    MP_ASSIGN_OR_RETURN(existing, file_system->OpenRandomAccess(path));
    MP_ASSIGN_OR_RETURN(file_bytes, existing->Size());
    MP_ASSIGN_OR_RETURN(const KeyLookup lookup, LookupKey(folder, "", *file_system, walk));
    report = lookup.walk;
  } else if (file_system->Exists(path)) {
    MP_ASSIGN_OR_RETURN(existing, file_system->OpenRandomAccess(path));
    MP_ASSIGN_OR_RETURN(file_bytes, existing->Size());
    MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file,
                        file_system->OpenRandomAccess(path));
    // Seqs from the payloads' leading field: `audit verify` decodes each one.
    LogReader reader(std::move(file), /*decode_payloads=*/false);
    MP_ASSIGN_OR_RETURN(report, VerifyLog(reader, anchors_text, walk));
  } else {
    report = VerifyBytes("", anchors_text, walk.public_key);
  }
  if (!report.ok) {
    const bool keyless_epoch = options.new_key_epoch && !anchors_key.has_value();
    return Status::Corruption(
        "audit log " + path + ": " + report.problem +
        (keyless_epoch ? "; its checkpoints name no key (written before key epochs): restore it "
                         "with its keys (--keys-from)"
                       : "; run `minpanel audit verify`"));
  }
  LogStart start;
  if (report.end_offset > 0) {
    std::string header;
    MP_RETURN_IF_ERROR(existing->ReadAt(0, kFileHeaderBytesPruned, &header));
    MP_ASSIGN_OR_RETURN(start, ReadLogStart(header));
  }
  uint64_t torn_bytes = 0;
  if (file_bytes > report.end_offset && report.end_offset > 0) {
    // An append a crash interrupted, never acknowledged: kept aside as
    // evidence, then cut off, and the cut recorded in the chain. It is
    // shorter than one record frame (LogReader stopped inside it), or in a
    // written-ahead log whatever is not zero past the last record (a batch
    // cut short, or written but for its first length); the zeros after it
    // are cut too, and written again as the log needs them.
    if (start.written_ahead) {
      MP_ASSIGN_OR_RETURN(torn_bytes, NonZeroBytesFrom(*existing, report.end_offset));
      if (torn_bytes > kTornTailBytesMax) {
        return Status::Corruption("audit log " + path + ": " + TornTailTooLong(report, torn_bytes) +
                                  "; run `minpanel audit verify`");
      }
    } else {
      torn_bytes = file_bytes - report.end_offset;
    }
    if (torn_bytes > 0) {
      std::string torn;
      MP_RETURN_IF_ERROR(existing->ReadAt(report.end_offset, torn_bytes, &torn));
      const std::string kept = folder + "/torn-" + std::to_string(report.end_offset);
      MP_RETURN_IF_ERROR(file_system->WriteFileAtomically(kept, torn, kFileMode));
    }
    MP_RETURN_IF_ERROR(file_system->Truncate(path, report.end_offset));
  }
  existing.reset();
  MP_ASSIGN_OR_RETURN(log->file_, file_system->OpenPositional(path, kFileMode));
  MP_ASSIGN_OR_RETURN(log->anchors_, file_system->OpenAppendable(folder + "/anchors", kFileMode));
  const bool write_ahead = options.preallocate_bytes > 0;
  if (report.end_offset == 0) {
    // New, or a header a crash cut short (VerifyLog refused anything else).
    if (file_bytes > 0) {
      MP_RETURN_IF_ERROR(file_system->Truncate(path, 0));
    }
    start.written_ahead = write_ahead;
    const std::string header = FileHeader(write_ahead);
    MP_RETURN_IF_ERROR(log->file_->WriteAt(0, header));
    MP_RETURN_IF_ERROR(log->file_->Sync());
    MP_RETURN_IF_ERROR(file_system->SyncDirectory(folder));
    report.end_offset = header.size();
  } else if (write_ahead && !start.written_ahead) {
    // An older log (version 1 or 2) from here on has zeros past its last
    // record: its version says so first (docs/formats/audit.md, "Space
    // written ahead"), durable before any zero is written.
    std::string version;
    internal::AppendU32(start.version + 2, &version);
    MP_RETURN_IF_ERROR(log->file_->WriteAt(kFileMagic.size(), version));
    MP_RETURN_IF_ERROR(log->file_->Sync());
    start.written_ahead = true;
  }
  log->end_offset_ = report.end_offset;
  log->ahead_end_ = report.end_offset;
  log->written_ahead_ = start.written_ahead;
  log->preallocate_state_.writing_ahead = write_ahead && start.written_ahead;
  if (!anchors_text.empty() && anchors_text.back() != '\n') {
    // A torn anchor line (a crash or a full disk in the middle of writing
    // it) was never an anchor: cut off, as a torn record is. Ending it with
    // a newline made it a malformed line that no open or verify passed.
    const size_t whole_lines = anchors_text.rfind('\n') + 1;  // npos + 1 == 0
    MP_RETURN_IF_ERROR(file_system->Truncate(folder + "/anchors", whole_lines));
  }
  if (!options.checkpoint_sink.empty()) {
    MP_ASSIGN_OR_RETURN(log->sink_,
                        file_system->OpenAppendable(options.checkpoint_sink, kFileMode));
  }
  if (own_key != nullptr && anchors_key != *own_key) {
    // The key that signs the checkpoints from here on: a new log's, an
    // older log's first (its earlier checkpoints verified under it above),
    // or a new epoch's.
    MP_RETURN_IF_ERROR(log->AppendAnchorsLine(KeyLine(*own_key, log->clock_->NowMs()) + "\n"));
  }
  const uint64_t last_seq = report.base_seq + report.records;
  log->base_seq_ = report.base_seq;
  log->head_ = report.head;
  log->durable_head_ = report.head;
  log->next_seq_ = last_seq + 1;
  log->durable_seq_ = last_seq;
  log->anchored_seq_ = last_seq;
  MP_ASSIGN_OR_RETURN(const auto subjects, file_system->ListDirectory(folder + "/subjects"));
  log->subjects_files_ = subjects.size();
  log->flusher_ = std::thread([raw = log.get()] { raw->FlushLoop(); });
  if (options.index_update_records > 0) {
    // The first update catches the index up with what was appended while no
    // log kept it (all of it the first time: a walk in the background). A
    // command that opened from the index has just brought it up to date.
    std::lock_guard lock(log->mutex_);
    log->index_asked_at_seq_ = last_seq;
    log->index_wanted_seq_ = options.open_from_index ? 0 : last_seq;
    log->indexer_ = std::thread([raw = log.get()] { raw->IndexLoop(); });
  }
  if (other_epoch) {
    // In the chain too, so that the change of key is a record the new
    // key's first checkpoint covers.
    AuditEntry epoch;
    epoch.key = "local";
    epoch.act = "log.key";
    epoch.route = "open";
    epoch.target = "key " + PublicKeyHex(*own_key) + " after " + PublicKeyHex(*anchors_key);
    MP_RETURN_IF_ERROR(log->Append(std::move(epoch)).status());
  }
  if (torn_bytes > 0) {
    AuditEntry cut;
    cut.key = "local";
    cut.act = "log.torn_tail";
    cut.route = "open";
    cut.bytes = torn_bytes;
    cut.target = "torn-" + std::to_string(report.end_offset);
    MP_RETURN_IF_ERROR(log->Append(std::move(cut)).status());
  }
  // Incident runs a command queued while another process held the log. A
  // drain that fails leaves them queued for the next one.
  (void)log->DrainQueue();
  return log;
}

Result<uint64_t> AuditLog::Append(AuditEntry entry) {
  MP_ASSIGN_OR_RETURN(const uint64_t seq, Enqueue(std::move(entry)));
  MP_RETURN_IF_ERROR(WaitDurable(seq));
  return seq;
}

Result<uint64_t> AuditLog::Enqueue(AuditEntry entry) {
  return EnqueueRecord(std::move(entry), /*opening=*/false);
}

Status AuditLog::SealAddress(AuditEntry* entry) {
  if constexpr (kBenchNoAudit) {
    return Status::Ok();  // no record is written, so nothing is sealed
  }
  // The key's day is the day of now, which the record's time_ms may pass
  // by the lock's wait; the sealed text names its own day.
  if (!entry->client_address.empty() && options_.address_keys != nullptr) {
    MP_ASSIGN_OR_RETURN(entry->address,
                        options_.address_keys->Seal(entry->client_address, clock_->NowMs()));
  }
  entry->client_address.clear();
  return Status::Ok();
}

Result<AuditLog::Opening> AuditLog::EnqueueOpening(AuditEntry entry) {
  MP_ASSIGN_OR_RETURN(const uint64_t seq, EnqueueRecord(std::move(entry), /*opening=*/true));
  return Opening(kBenchNoAudit ? nullptr : this, seq, 0);
}

namespace {

// Checked before a record is written, as DecodeEntry checks it after it is read.
Status CheckParams(const AuditEntry& entry) {
  if (entry.params.size() > kRecordParamsBytesMax) {
    return Status::InvalidArgument("audit record: params of " +
                                   std::to_string(entry.params.size()) +
                                   " bytes, over kRecordParamsBytesMax (" +
                                   std::to_string(kRecordParamsBytesMax) + ")");
  }
  return Status::Ok();
}

}  // namespace

Result<AuditLog::Opening> AuditLog::OpenRead(AuditEntry entry) {
  if constexpr (kBenchNoAudit) {
    return Opening(nullptr, 0, 0);
  }
  if (options_.deferred_start_ms == 0) {
    return EnqueueOpening(std::move(entry));
  }
  MP_RETURN_IF_ERROR(SealAddress(&entry));
  MP_RETURN_IF_ERROR(CheckParams(entry));
  std::unique_lock lock(mutex_);
  MP_RETURN_IF_ERROR(WritableLocked());
  const uint64_t held = next_held_++;
  held_openings_.emplace_hint(held_openings_.end(), held,
                              HeldOpening{std::move(entry), std::chrono::steady_clock::now()});
  ++openings_running_;
  const bool first = held_openings_.size() == 1;
  lock.unlock();
  if (first) {
    queued_.notify_one();  // the flusher times the oldest held opening
  }
  return Opening(this, 0, held);
}

void AuditLog::QueueHeldOpeningsLocked(bool all) {
  const auto now = std::chrono::steady_clock::now();
  const auto defer = std::chrono::milliseconds(options_.deferred_start_ms);
  while (!held_openings_.empty()) {
    auto oldest = held_openings_.begin();
    if (!all && now < oldest->second.since + defer) {
      return;
    }
    Status queued = failed_;
    if (queued.ok()) {
      queued = QueueLocked(&oldest->second.entry).status();
    }
    held_queued_.emplace(oldest->first, std::move(queued));
    held_openings_.erase(oldest);
  }
}

Result<uint64_t> AuditLog::CloseRead(uint64_t held, AuditEntry end) {
  Status opening;
  {
    std::lock_guard lock(mutex_);
    if (auto unwritten = held_openings_.find(held); unwritten != held_openings_.end()) {
      // Ended within deferred_start_ms: one record, with what it asked.
      end.params = std::move(unwritten->second.entry.params);
      held_openings_.erase(unwritten);
    } else if (auto queued = held_queued_.find(held); queued != held_queued_.end()) {
      opening = std::move(queued->second);
      held_queued_.erase(queued);
    }
  }
  Result<uint64_t> seq = opening.ok() ? EnqueueRecord(std::move(end), /*opening=*/false)
                                      : Result<uint64_t>(std::move(opening));
  if (!seq.ok()) {
    DropOpening(0);
    return seq;
  }
  MP_RETURN_IF_ERROR(WaitDurableRecord(*seq, /*closes_opening=*/true));
  return seq;
}

AuditLog::Opening::~Opening() {
  if (running_) {
    log_->DropOpening(held_);
  }
}

Result<uint64_t> AuditLog::Opening::Close(AuditEntry end) {
  if (log_ == nullptr) {
    return uint64_t{0};  // a benchmark build without the log
  }
  running_ = false;
  return log_->CloseRead(std::exchange(held_, 0), std::move(end));
}

Status AuditLog::Opening::WaitDurable(uint64_t through) {
  if (log_ == nullptr) {
    return Status::Ok();  // a benchmark build without the log
  }
  return log_->WaitDurableRecord(std::max(seq_, through),
                                 /*closes_opening=*/std::exchange(running_, false));
}

void AuditLog::DropOpening(uint64_t held) {
  std::unique_lock lock(mutex_);
  --openings_running_;
  bool wake = openings_running_ == 0 && holding_for_openings_;
  if (auto unwritten = held_openings_.find(held); unwritten != held_openings_.end()) {
    // A read that ended without its closing record: its opening is written.
    if (failed_.ok()) {
      const Result<bool> was_empty = QueueLocked(&unwritten->second.entry);
      wake = wake || (was_empty.ok() && *was_empty);
    }
    held_openings_.erase(unwritten);
  }
  held_queued_.erase(held);
  lock.unlock();
  if (wake) {
    queued_.notify_one();
  }
}

Result<uint64_t> AuditLog::EnqueueRecord(AuditEntry entry, bool opening) {
  if constexpr (kBenchNoAudit) {
    // Nothing is written or anchored: the log's own seqs stay as they were,
    // and WaitDurable returns at once.
    return next_seq_;
  }
  // Sealed before the lock: a day's first seal writes its key (one fsync).
  MP_RETURN_IF_ERROR(SealAddress(&entry));
  MP_RETURN_IF_ERROR(CheckParams(entry));
  std::unique_lock lock(mutex_);
  MP_RETURN_IF_ERROR(WritableLocked());
  MP_ASSIGN_OR_RETURN(const bool was_empty, QueueLocked(&entry));
  openings_running_ += opening ? 1 : 0;
  lock.unlock();
  // Only a queue that was empty can have the flusher asleep waiting for a
  // record; otherwise it is writing, or holding what is queued until
  // someone waits, and one more record changes neither. Notified after the
  // lock is released, so that the flusher does not wake to block on it.
  if (was_empty) {
    queued_.notify_one();
  }
  return entry.seq;
}

Status AuditLog::WritableLocked() const {
  if (!failed_.ok()) {
    return Status::Unavailable("audit log: failed earlier (" + failed_.message() +
                               "); no read is answered without its record");
  }
  if (closed_) {
    return Status::Unavailable("audit log: closed");
  }
  return Status::Ok();
}

Result<bool> AuditLog::QueueLocked(AuditEntry* entry) {
  entry->seq = next_seq_;
  entry->time_ms = clock_->NowMs();
  const std::string payload = EncodeEntry(*entry);
  if (payload.size() > kRecordBytesMax) {
    return Status::ResourceExhausted("audit record: " + std::to_string(payload.size()) +
                                     " bytes, over kRecordBytesMax (" +
                                     std::to_string(kRecordBytesMax) + ")");
  }
  ++next_seq_;
  head_ = ChainHash(head_, payload);
  const bool was_empty = pending_.empty();
  if (was_empty) {
    pending_since_ = std::chrono::steady_clock::now();
  }
  pending_ += Frame(payload, head_);
  return was_empty;
}

Status AuditLog::WaitDurable(uint64_t seq) { return WaitDurableRecord(seq, false); }

Status AuditLog::WaitDurableRecord(uint64_t seq, bool closes_opening) {
  if constexpr (kBenchNoAudit) {
    return Status::Ok();
  }
  std::unique_lock lock(mutex_);
  bool wake = false;
  if (closes_opening) {
    --openings_running_;
    // The last running read now waits: a sync held for them goes.
    wake = openings_running_ == 0 && holding_for_openings_;
  }
  if (seq > durable_seq_ && seq > awaited_seq_) {
    // Someone waits: the flusher syncs now, whatever it was holding —
    // unless it holds the sync for running reads, which only the last of
    // them to wait ends (or the hold's time).
    awaited_seq_ = seq;
    wake = wake || !holding_for_openings_;
  }
  if (wake) {
    // Notified with the lock released, so that the flusher does not wake
    // to block on it.
    lock.unlock();
    queued_.notify_one();
    lock.lock();
  }
  // Sleeps on the condition of the batch that makes `seq` durable — the one
  // being written when it holds seq, else the next, which takes everything
  // queued — so that the end of the batch before does not wake it.
  const uint64_t batch =
      writing_ && seq <= writing_last_seq_ ? batches_taken_ : batches_taken_ + 1;
  written_[batch % 2].wait(
      lock, [&] { return durable_seq_ >= seq || !failed_.ok() || flusher_exited_; });
  if (durable_seq_ >= seq) {
    return Status::Ok();
  }
  if (!failed_.ok()) {
    return Status::Unavailable("audit log: " + failed_.message());
  }
  return Status::Unavailable("audit log: closed before record " + std::to_string(seq) +
                             " was written");
}

void AuditLog::FlushLoop() {
  std::unique_lock lock(mutex_);
  const auto deferred = std::chrono::milliseconds(options_.deferred_start_ms);
  while (true) {
    // Sleeps until something is queued, or the oldest held opening is due.
    while (pending_.empty() && !stopping_) {
      if (held_openings_.empty()) {
        queued_.wait(lock);
      } else if (const auto due = held_openings_.begin()->second.since + deferred;
                 std::chrono::steady_clock::now() < due) {
        queued_.wait_until(lock, due);
      } else {
        QueueHeldOpeningsLocked(/*all=*/false);
      }
    }
    if (pending_.empty()) {
      // Stopping, and everything queued is written.
      flusher_exited_ = true;
      WakeAllWaiters();
      return;
    }
    if (!failed_.ok()) {
      // A failed write may have left part of a batch behind: nothing more
      // is written, and every waiter has been told.
      pending_.clear();
      continue;
    }
    if (!stopping_ && awaited_seq_ <= durable_seq_ && options_.unawaited_flush_ms > 0) {
      // Nobody waits for what is queued (a query's opening record while the
      // query runs, a closing record): held until someone does, so that one
      // sync carries both of a query's records and other queries' too, or
      // until unawaited_flush_ms have passed.
      const auto deadline =
          pending_since_ + std::chrono::milliseconds(options_.unawaited_flush_ms);
      queued_.wait_until(lock, deadline,
                         [&] { return stopping_ || awaited_seq_ > durable_seq_; });
      if (!failed_.ok()) {
        pending_.clear();  // a prune that failed meanwhile: nothing more is written
        continue;
      }
    }
    if (!stopping_ && awaited_seq_ > durable_seq_ && openings_running_ > 0 &&
        options_.opening_wait_us > 0) {
      // Someone waits, and other reads have queued their opening and still
      // run: each will wait for a sync of its own soon. Held until the last
      // of them waits, or opening_wait_us, so that they ride on this one.
      holding_for_openings_ = true;
      queued_.wait_until(
          lock,
          std::chrono::steady_clock::now() + std::chrono::microseconds(options_.opening_wait_us),
          [&] { return stopping_ || openings_running_ == 0; });
      holding_for_openings_ = false;
      if (!failed_.ok()) {
        pending_.clear();
        continue;
      }
    }
    QueueHeldOpeningsLocked(/*all=*/false);  // those due ride along
    std::string batch = std::move(pending_);
    pending_.clear();
    const uint64_t last = next_seq_ - 1;
    const std::array<uint8_t, kHashBytes> batch_head = head_;
    const uint64_t batch_number = ++batches_taken_;
    writing_last_seq_ = last;
    writing_ = true;
    lock.unlock();
    Status status = WriteBatch(batch);
    lock.lock();
    writing_ = false;
    if (!status.ok()) {
      failed_ = status;
    } else {
      durable_seq_ = last;
      durable_head_ = batch_head;
      RequestIndexLocked(/*now=*/false);
      if (durable_seq_ >= anchored_seq_ + options_.anchor_interval) {
        const Status anchored = WriteAnchorLocked();
        if (!anchored.ok()) {
          failed_ = anchored;
        }
      }
    }
    // The batch's waiters are woken with the lock released: woken under
    // it, each would at once block on it again (a second sleep and
    // wake-up). Those of the next batch sleep on.
    const bool failed = !failed_.ok();
    lock.unlock();
    if (failed) {
      WakeAllWaiters();
    } else {
      written_[batch_number % 2].notify_all();
    }
    lock.lock();
  }
}

void AuditLog::WakeAllWaiters() {
  for (std::condition_variable& batch_written : written_) {
    batch_written.notify_all();
  }
}

Status AuditLog::WriteBatch(std::string_view batch) {
  const uint64_t at = end_offset_;
  if (written_ahead_ && batch.size() > 4) {
    // The first length last: until it is written the batch's space reads as
    // the zero tail, so a reader sees the batch whole or not at all.
    MP_RETURN_IF_ERROR(file_->WriteAt(at + 4, batch.substr(4)));
    MP_RETURN_IF_ERROR(file_->WriteAt(at, batch.substr(0, 4)));
  } else {
    MP_RETURN_IF_ERROR(file_->WriteAt(at, batch));
  }
  const uint64_t end = at + batch.size();
  ahead_end_ = std::max(ahead_end_, end);
  if (preallocate_state_.writing_ahead && end + AheadStepBytes() / 2 > ahead_end_) {
    // After the batch, so that a disk too full for the zeros still takes
    // the batch (written in space the file had, or grown as before).
    const Status ahead = WriteAhead(end);
    if (!ahead.ok()) {
      // From here on the log grows with each batch, as before version 3;
      // the zeros written so far stay a zero tail.
      std::fprintf(stderr,
                   "minpanel: audit log %s: writing space ahead failed (%s); its appends grow "
                   "the file from here on\n",
                   folder_.c_str(), ahead.message().c_str());
      std::lock_guard lock(mutex_);
      preallocate_state_.writing_ahead = false;
      ++preallocate_state_.failures;
      preallocate_state_.problem = ahead.message();
    }
  }
  MP_RETURN_IF_ERROR(file_->Sync());
  end_offset_ = end;
  return Status::Ok();
}

uint64_t AuditLog::AheadStepBytes() const {
  // From one piece, doubling with each step up to preallocate_bytes: a
  // command that appends one record writes 64 KiB of zeros, not 1 MiB.
  const uint64_t doublings = std::min<uint64_t>(preallocate_state_.steps, 16);
  return std::min<uint64_t>(options_.preallocate_bytes, uint64_t{kZeroPieceBytes} << doublings);
}

Status AuditLog::WriteAhead(uint64_t from) {
  static const std::string kZeros(kZeroPieceBytes, '\0');
  constexpr uint64_t kPageBytes = 4096;
  const uint64_t target = (from + AheadStepBytes() + kPageBytes - 1) / kPageBytes * kPageBytes;
  while (ahead_end_ < target) {
    const size_t piece =
        static_cast<size_t>(std::min<uint64_t>(target - ahead_end_, kZeroPieceBytes));
    MP_RETURN_IF_ERROR(file_->WriteAt(ahead_end_, std::string_view(kZeros).substr(0, piece)));
    ahead_end_ += piece;
  }
  std::lock_guard lock(mutex_);
  ++preallocate_state_.steps;
  return Status::Ok();
}

AuditLog::PreallocateState AuditLog::preallocate_state() {
  std::lock_guard lock(mutex_);
  return preallocate_state_;
}

void AuditLog::RequestIndexLocked(bool now) {
  if (options_.index_update_records == 0) {
    return;
  }
  if (now || durable_seq_ >= index_asked_at_seq_ + options_.index_update_records) {
    index_asked_at_seq_ = durable_seq_;
    index_wanted_seq_ = durable_seq_;
    index_forced_ = index_forced_ || now;
    index_wanted_.notify_one();
  }
}

void AuditLog::IndexLoop() {
  // Anchor signatures are not checked here: the index is a cache, and a
  // reader given the public key checks every anchor's signature itself.
  WalkOptions walk;
  walk.pruned_needs_key = false;
  std::unique_lock lock(mutex_);
  while (true) {
    index_wanted_.wait(lock, [&] {
      return index_stopping_ || index_forced_ || index_wanted_seq_ > index_done_seq_;
    });
    if (!index_forced_ && index_wanted_seq_ <= index_done_seq_) {
      return;  // stopping, and every update asked for was made
    }
    index_forced_ = false;
    const uint64_t wanted = index_wanted_seq_;
    lock.unlock();
    Result<KeyLookup> update = Status::Ok();
    {
      std::lock_guard round(index_round_);
      update = TryUpdateIndex(folder_, *file_system_, walk);
    }
    lock.lock();
    index_done_seq_ = wanted;
    ++index_state_.updates;
    if (update.ok() && update->walk.ok &&
        update->note.find("could not be written") == std::string::npos) {
      index_state_.indexed_seq = update->indexed_seq;
      index_state_.rebuilds += update->rebuilt ? 1 : 0;
      index_state_.problem.clear();
      continue;
    }
    // Retried when asked again (the next interval, or Close); a lock held
    // by a command means that command is bringing the index up to date.
    index_state_.problem = !update.ok()       ? update.status().message()
                           : !update->walk.ok ? update->walk.problem
                                              : update->note;
  }
}

AuditLog::IndexState AuditLog::index_state() {
  std::lock_guard lock(mutex_);
  return index_state_;
}

Status AuditLog::WriteAnchorLocked() {
  // Only what is durable is anchored: head_ may cover records still queued.
  if (durable_seq_ == anchored_seq_) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(WriteAnchorLineLocked(durable_seq_, durable_head_));
  anchored_seq_ = durable_seq_;
  return Status::Ok();
}

Status AuditLog::WriteAnchorLineLocked(uint64_t seq, const std::array<uint8_t, kHashBytes>& hash) {
  std::string line =
      std::to_string(seq) + " " + HexOf(hash) + " " + std::to_string(clock_->NowMs());
  if (options_.signing_key != nullptr) {
    line += " " + SignAnchor(*options_.signing_key, line);
  }
  line += "\n";
  MP_RETURN_IF_ERROR(AppendAnchorsLine(line));
  if (checkpoint_observer_) {
    checkpoint_observer_(std::string_view(line).substr(0, line.size() - 1));
  }
  return Status::Ok();
}

Status AuditLog::AppendAnchorsLine(const std::string& line) {
  MP_RETURN_IF_ERROR(anchors_->Append(line));
  MP_RETURN_IF_ERROR(anchors_->Sync());
  if (sink_ != nullptr) {
    MP_RETURN_IF_ERROR(sink_->Append(line));
    MP_RETURN_IF_ERROR(sink_->Sync());
  }
  return Status::Ok();
}

void AuditLog::SetCheckpointObserver(std::function<void(std::string_view line)> observer) {
  std::lock_guard lock(mutex_);
  checkpoint_observer_ = std::move(observer);
}

Result<uint64_t> AuditLog::PruneBefore(int64_t before_ms) {
  if (options_.signing_key == nullptr) {
    return Status::InvalidArgument(
        "audit retention: pruning needs the audit signing key, so that a signed checkpoint "
        "vouches for the records cut");
  }
  // No index update reads the log while it is replaced.
  std::lock_guard round(index_round_);
  std::unique_lock lock(mutex_);
  // Nothing in flight: every queued record written, no batch being written.
  if (next_seq_ - 1 > awaited_seq_) {
    awaited_seq_ = next_seq_ - 1;  // the flusher holds nothing back
    queued_.notify_one();
  }
  while ((!pending_.empty() || writing_) && failed_.ok()) {
    // The batch that leaves nothing in flight: the next when records are
    // queued, else the one being written.
    const uint64_t batch = pending_.empty() ? batches_taken_ : batches_taken_ + 1;
    written_[batch % 2].wait(lock);
  }
  if (!failed_.ok() || closed_) {
    return Status::Unavailable("audit log: failed or closed");
  }
  const std::string path = folder_ + "/log";
  // The records to cut: the oldest ones, up to the last older than before_ms.
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, file_system_->OpenRandomAccess(path));
  LogReader reader(std::move(file), /*decode_payloads=*/false);
  MP_ASSIGN_OR_RETURN(const LogStart start, reader.Start());
  uint64_t cut = 0;
  uint64_t cut_offset = 0;
  std::array<uint8_t, kHashBytes> cut_hash{};
  std::vector<std::string> side_files;
  LogRecord record;
  while (true) {
    MP_ASSIGN_OR_RETURN(const bool more, reader.Next(&record));
    if (!more) {
      break;
    }
    MP_ASSIGN_OR_RETURN(const AuditEntry entry, DecodeEntry(record.payload));
    if (entry.time_ms >= before_ms) {
      break;
    }
    ++cut;
    cut_offset = record.end_offset;
    cut_hash = record.hash;
    // A rewrite's file is its export record's: removed with that record
    // (which an erasure racing the export may leave after the rewrite).
    if (!entry.subjects_file.empty() && entry.act != kSubjectsRewriteAct) {
      side_files.push_back(entry.subjects_file);
    }
  }
  if (cut == 0) {
    return uint64_t{0};
  }
  const uint64_t cut_seq = start.base_seq + cut;
  // The signed checkpoint first, so that the cut is never unvouched.
  MP_RETURN_IF_ERROR(WriteAnchorLineLocked(cut_seq, cut_hash));
  // The new log is copied piece by piece beside the old one, then renamed
  // over it: memory stays one piece.
  const std::string pruned_path = path + ".pruned";
  const std::string pruned_header = PrunedHeader(cut_seq, cut_hash, written_ahead_);
  Status replaced =
      CopyPruned(*file_system_, path, pruned_path, pruned_header, cut_offset, end_offset_);
  if (replaced.ok()) {
    replaced = file_->Close();
  }
  if (replaced.ok()) {
    replaced = file_system_->Rename(pruned_path, path);
  }
  if (replaced.ok()) {
    replaced = file_system_->SyncDirectory(folder_);
  }
  auto reopened = file_system_->OpenPositional(path, kFileMode);
  if (replaced.ok()) {
    replaced = reopened.status();
  }
  if (!replaced.ok()) {
    failed_ = replaced;  // the log's file is in an unknown state: refuse reads until a restart
    WakeAllWaiters();
    return replaced;
  }
  file_ = std::move(reopened).value();
  end_offset_ = pruned_header.size() + (end_offset_ - cut_offset);
  ahead_end_ = end_offset_;
  base_seq_ = cut_seq;
  // The index follows the old base: made anew in the background.
  RequestIndexLocked(/*now=*/true);
  for (const std::string& side_file : side_files) {
    (void)file_system_->Remove(folder_ + "/" + side_file);  // retention covers them too
  }
  lock.unlock();
  AuditEntry entry;
  entry.key = "local";
  entry.act = "log.prune";
  entry.route = "retention";
  entry.rows = cut;
  entry.target = "records " + std::to_string(start.base_seq + 1) + " to " + std::to_string(cut_seq);
  MP_RETURN_IF_ERROR(Append(std::move(entry)).status());
  return cut;
}

Status AuditLog::WriteSubjects(const SubjectsFile& subjects, AuditEntry* entry) {
  if constexpr (kBenchNoAudit) {
    entry->subjects = subjects.subjects.size();
    return Status::Ok();
  }
  const std::string text = EncodeSubjectsFile(subjects);
  // A fresh name: the number is this log's (one process appends, LOCK);
  // a file left by an earlier run under the same name (a clock set back)
  // is passed over, never appended to.
  std::string name;
  for (size_t attempt = 0; attempt < kSubjectsNameAttemptsMax; ++attempt) {
    uint64_t number = 0;
    {
      std::lock_guard lock(mutex_);
      number = ++subjects_files_;
    }
    name = "subjects/" + std::to_string(clock_->NowMs()) + "-" + std::to_string(number) + ".txt";
    if (!file_system_->Exists(folder_ + "/" + name)) {
      break;
    }
    name.clear();
  }
  if (name.empty()) {
    return Status::IoError("subjects: no free file name in " +
                           std::to_string(kSubjectsNameAttemptsMax) +
                           " attempts (kSubjectsNameAttemptsMax)");
  }
  // Written in place and fdatasync'ed, with no temporary file, rename or
  // folder fsync (docs/formats/audit.md, "Subject files"): the record that
  // names the file is queued only after this returns, so a durable record
  // finds its file whole — ext4 and XFS commit a new file's directory entry
  // with its fdatasync. A crash before the record leaves at most a file
  // that no record names (perhaps torn), which readers never open: they
  // read only the files records name, and check each against its SHA-256.
  MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                      file_system_->OpenAppendable(folder_ + "/" + name, kFileMode));
  Status written = file->Append(text);
  if (written.ok()) {
    written = file->Sync();
  }
  const Status closed = file->Close();
  MP_RETURN_IF_ERROR(written);
  MP_RETURN_IF_ERROR(closed);
  entry->subjects = subjects.subjects.size();
  entry->subjects_file = name;
  entry->subjects_sha256 = Sha256Hex(text);
  return Status::Ok();
}

Result<std::vector<AuditEntry>> AuditLog::Show(const Filter& filter) {
  // Records queued before this call (a query's closing record, not awaited
  // by its query) are read from the file: wait until they are in it.
  uint64_t queued = 0;
  {
    std::lock_guard lock(mutex_);
    queued = next_seq_ - 1;
  }
  MP_RETURN_IF_ERROR(WaitDurable(queued));
  MP_ASSIGN_OR_RETURN(Shown shown, ShowLog(folder_ + "/log", *file_system_, filter));
  return std::move(shown.entries);
}

Status AuditLog::Close() {
  {
    std::unique_lock lock(mutex_);
    if (closed_ && !flusher_.joinable()) {
      return Status::Ok();
    }
    // Records queued and not awaited (Enqueue) are written before the
    // close, and so are the opening records held back (OpenRead).
    closed_ = true;
    QueueHeldOpeningsLocked(/*all=*/true);
    stopping_ = true;
    queued_.notify_all();
  }
  if (flusher_.joinable()) {
    flusher_.join();
  }
  std::unique_lock lock(mutex_);
  flusher_exited_ = true;
  WakeAllWaiters();
  Status status = failed_;
  if (status.ok()) {
    status = WriteAnchorLocked();
  }
  if (indexer_.joinable()) {
    // A last update, so that the next command finds the index current.
    if (status.ok() && durable_seq_ > index_asked_at_seq_) {
      RequestIndexLocked(/*now=*/true);
    }
    index_stopping_ = true;
    index_wanted_.notify_one();
    lock.unlock();
    indexer_.join();
    lock.lock();
  }
  if (file_ == nullptr || anchors_ == nullptr) {
    return status;
  }
  if (status.ok() && ahead_end_ > end_offset_) {
    // A closed log ends at its last record: no zeros for a copy or a
    // backup to carry (the next Open writes them again).
    status = file_system_->Truncate(folder_ + "/log", end_offset_);
    ahead_end_ = end_offset_;
  }
  const Status file_closed = file_->Close();
  const Status anchors_closed = anchors_->Close();
  if (sink_ != nullptr) {
    (void)sink_->Close();  // synced after every line
    sink_.reset();
  }
  file_.reset();
  anchors_.reset();
  if (status.ok()) {
    status = file_closed.ok() ? anchors_closed : file_closed;
  }
  return status;
}

}  // namespace minpanel::audit
