// The key index of the audit log (docs/formats/audit.md, "Key index"):
// per key, the seq and byte offset of each of its records, in files of
// kIndexSegmentRecords records each, so that the blast radius of one key
// reads that key's records and not the whole log. Derived data: it is
// extended by a verified walk of the records it does not cover, made anew
// when missing or stale, and every record read through it is checked again
// (ReadIndexedRecord).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "audit/audit.h"
#include "audit/log_format.h"

namespace minpanel::audit {
namespace {

using Hash = std::array<uint8_t, kHashBytes>;
using internal::AppendU32;
using internal::AppendU64;
using internal::ReadU32;
using internal::ReadU64;

constexpr uint32_t kIndexFileMode = 0600;
constexpr uint32_t kIndexFolderMode = 0700;
constexpr size_t kIndexRefBytes = 16;  // seq, offset

std::string SegmentPath(const std::string& folder, uint64_t segment_number) {
  return folder + "/index/" + std::to_string(segment_number) + ".idx";
}

uint64_t SegmentOf(uint64_t seq) { return (seq - 1) / kIndexSegmentRecords; }

// The key of a payload as EncodeEntry writes it ({"seq":N,"time_ms":T,
// "key":"..."), without a JSON parse; DecodeEntry for anything else (an
// escaped key, another field order).
Result<std::string> KeyOfPayload(std::string_view payload, uint64_t seq) {
  constexpr std::string_view kKey = ",\"key\":\"";
  const size_t key_at = payload.find(kKey);
  const size_t time_at = payload.find(",\"time_ms\":");
  if (key_at != std::string_view::npos && time_at != std::string_view::npos && time_at < key_at &&
      internal::LeadingSeq(payload).has_value() &&
      payload.find_first_not_of("-0123456789", time_at + 11) == key_at) {
    const size_t start = key_at + kKey.size();
    const size_t end = payload.find_first_of("\"\\", start);
    if (end != std::string_view::npos && payload[end] == '"') {
      return std::string(payload.substr(start, end - start));
    }
  }
  auto entry = DecodeEntry(payload);
  if (!entry.ok()) {
    return Status::Corruption("audit record " + std::to_string(seq) + ": " +
                              entry.status().message());
  }
  return std::move(entry->key);
}

// The index being built or extended: one segment's keys in memory.
class SegmentBuilder {
 public:
  void Reset(uint64_t base_seq, uint64_t first_seq) {
    keys_.clear();
    segment_ = IndexSegment{};
    segment_.base_seq = base_seq;
    segment_.first_seq = first_seq;
    dirty_ = false;
  }
  void Load(IndexSegment segment) {
    keys_.clear();
    for (auto& [key, refs] : segment.keys) {
      keys_.emplace(std::move(key), std::move(refs));
    }
    segment.keys.clear();
    segment_ = std::move(segment);
    dirty_ = false;
  }
  void Add(const std::string& key, const LogRecord& record) {
    keys_[key].push_back({record.seq, record.offset});
    segment_.last_seq = record.seq;
    segment_.last_end_offset = record.end_offset;
    segment_.last_hash = record.hash;
    dirty_ = true;
  }
  bool dirty() const { return dirty_; }
  uint64_t first_seq() const { return segment_.first_seq; }
  std::string Encode() const {
    IndexSegment segment = segment_;
    segment.keys.assign(keys_.begin(), keys_.end());
    return EncodeIndexSegment(segment);
  }

 private:
  IndexSegment segment_;
  std::map<std::string, std::vector<KeyRecordRef>> keys_;
  bool dirty_ = false;
};

// Reads the index files in order and checks that they cover the log's
// records from its base without a gap and that each one's last record is
// still in the log with the hash it names. Returns the key's records and
// the last segment (to extend); a problem (empty when the index holds)
// means it is to be made anew.
struct LoadedIndex {
  std::vector<KeyRecordRef> records;
  std::optional<IndexSegment> last;
  std::string problem;
};

Result<LoadedIndex> LoadIndex(const std::string& folder, std::string_view key,
                              FileSystem& file_system, const RandomAccessFile& log,
                              const LogStart& start) {
  LoadedIndex loaded;
  const std::string index_folder = folder + "/index";
  if (!file_system.Exists(index_folder)) {
    loaded.problem = "no index yet";
    return loaded;
  }
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                      file_system.ListDirectory(index_folder));
  uint64_t expected_first = start.base_seq + 1;
  std::string hash_bytes;
  for (uint64_t segment_number = SegmentOf(start.base_seq + 1);; ++segment_number) {
    const std::string path = SegmentPath(folder, segment_number);
    if (!file_system.Exists(path)) {
      break;
    }
    MP_ASSIGN_OR_RETURN(const std::string bytes, file_system.ReadFile(path));
    // Only the last file is extended: of the others, only the key's records.
    const bool last = !file_system.Exists(SegmentPath(folder, segment_number + 1));
    auto segment = DecodeIndexSegment(bytes, last ? std::nullopt : std::optional(key));
    if (!segment.ok()) {
      loaded.problem = path + ": " + segment.status().message();
      return loaded;
    }
    if (loaded.last.has_value() &&
        loaded.last->last_seq != (SegmentOf(loaded.last->first_seq) + 1) * kIndexSegmentRecords) {
      loaded.problem = "an index file before " + path + " is not full";
      return loaded;
    }
    if (segment->base_seq != start.base_seq || segment->first_seq != expected_first ||
        SegmentOf(segment->first_seq) != segment_number ||
        SegmentOf(segment->last_seq) != segment_number) {
      loaded.problem = path + " does not follow the log's records (pruned or replaced since)";
      return loaded;
    }
    MP_RETURN_IF_ERROR(log.ReadAt(segment->last_end_offset - kHashBytes, kHashBytes, &hash_bytes));
    if (hash_bytes.size() != kHashBytes ||
        std::memcmp(hash_bytes.data(), segment->last_hash.data(), kHashBytes) != 0) {
      loaded.problem = path + ": record " + std::to_string(segment->last_seq) +
                       " is not where the index says, with the hash it says (the log changed)";
      return loaded;
    }
    for (const auto& [segment_key, refs] : segment->keys) {
      if (segment_key == key) {
        loaded.records.insert(loaded.records.end(), refs.begin(), refs.end());
      }
    }
    expected_first = segment->last_seq + 1;
    loaded.last = std::move(segment).value();
  }
  if (!loaded.last.has_value()) {
    loaded.problem = "no index file for the log's first records";
  }
  // Every file listed must be one of those read (a stray one is a stale index).
  size_t index_files = 0;
  for (const std::string& name : names) {
    index_files += name.ends_with(".idx") ? 1 : 0;
  }
  const uint64_t read_files = loaded.last.has_value() ? SegmentOf(loaded.last->first_seq) -
                                                            SegmentOf(start.base_seq + 1) + 1
                                                      : 0;
  if (loaded.problem.empty() && index_files != read_files) {
    loaded.problem = "index files beyond the log's records";
  }
  return loaded;
}

// The flock on <folder>/index/LOCK held while the index is brought up to
// date, released when destroyed. A folder where it cannot be made (read
// only) is walked without it: the index cannot be written there either.
class IndexLock {
 public:
  enum class Wait { kBlock, kTry };
  static Result<IndexLock> Take(const std::string& folder, FileSystem& file_system, Wait wait) {
    IndexLock lock;
    const std::string index_folder = folder + "/index";
    if (!file_system.Exists(index_folder) &&
        !file_system.CreateDirectories(index_folder, kIndexFolderMode).ok()) {
      return lock;
    }
    const std::string path = index_folder + "/LOCK";
    lock.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kIndexFileMode);
    if (lock.fd_ < 0) {
      return lock;
    }
    while (::flock(lock.fd_, LOCK_EX | (wait == Wait::kTry ? LOCK_NB : 0)) != 0) {
      if (errno == EINTR) {
        continue;
      }
      return Status::Unavailable("audit index " + index_folder +
                                 ": another thread or process is bringing it up to date");
    }
    return lock;
  }
  IndexLock() = default;
  IndexLock(IndexLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  IndexLock& operator=(IndexLock&&) = delete;
  ~IndexLock() {
    if (fd_ >= 0) {
      ::close(fd_);  // releases the flock
    }
  }

 private:
  int fd_ = -1;
};

Status RemoveIndex(const std::string& folder, FileSystem& file_system) {
  const std::string index_folder = folder + "/index";
  if (!file_system.Exists(index_folder)) {
    return file_system.CreateDirectories(index_folder, kIndexFolderMode);
  }
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                      file_system.ListDirectory(index_folder));
  for (const std::string& name : names) {
    if (name.ends_with(".idx")) {
      MP_RETURN_IF_ERROR(file_system.Remove(index_folder + "/" + name));
    }
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeIndexSegment(const IndexSegment& segment) {
  std::string out(kIndexMagic);
  AppendU32(kIndexVersion, &out);
  AppendU32(static_cast<uint32_t>(segment.keys.size()), &out);
  AppendU64(segment.base_seq, &out);
  AppendU64(segment.first_seq, &out);
  AppendU64(segment.last_seq, &out);
  AppendU64(segment.last_end_offset, &out);
  out.append(reinterpret_cast<const char*>(segment.last_hash.data()), kHashBytes);
  for (const auto& [key, refs] : segment.keys) {
    AppendU32(static_cast<uint32_t>(key.size()), &out);
    out.append(key);
    AppendU32(static_cast<uint32_t>(refs.size()), &out);
  }
  for (const auto& [key, refs] : segment.keys) {
    for (const KeyRecordRef& ref : refs) {
      AppendU64(ref.seq, &out);
      AppendU64(ref.offset, &out);
    }
  }
  return out;
}

Result<IndexSegment> DecodeIndexSegment(std::string_view bytes,
                                        std::optional<std::string_view> only_key) {
  if (bytes.size() < kIndexHeaderBytes || bytes.substr(0, kIndexMagic.size()) != kIndexMagic ||
      ReadU32(bytes, 8) != kIndexVersion) {
    return Status::Corruption("not an audit index file (" + std::string(kIndexMagic) +
                              ", version " + std::to_string(kIndexVersion) + ")");
  }
  IndexSegment segment;
  const uint64_t key_count = ReadU32(bytes, 12);
  segment.base_seq = ReadU64(bytes, 16);
  segment.first_seq = ReadU64(bytes, 24);
  segment.last_seq = ReadU64(bytes, 32);
  segment.last_end_offset = ReadU64(bytes, 40);
  std::memcpy(segment.last_hash.data(), bytes.data() + 48, kHashBytes);
  if (segment.first_seq == 0 || segment.first_seq > segment.last_seq ||
      segment.last_seq - segment.first_seq >= kIndexSegmentRecords ||
      segment.last_end_offset < kFileHeaderBytes + kRecordFrameBytes) {
    return Status::Corruption("audit index: the records it covers are out of range");
  }
  // Each key's record count is checked against the bytes left before any
  // of its records is read: a count can ask for no more than the file holds.
  const uint64_t covered = segment.last_seq - segment.first_seq + 1;
  size_t position = kIndexHeaderBytes;
  uint64_t total_refs = 0;
  std::vector<std::pair<std::string_view, uint64_t>> directory;
  directory.reserve(std::min<uint64_t>(key_count, covered));
  for (uint64_t key_idx = 0; key_idx < key_count; ++key_idx) {
    if (bytes.size() - position < 4) {
      return Status::Corruption("audit index: the key list is cut short");
    }
    const uint32_t key_bytes = ReadU32(bytes, position);
    if (key_bytes > kIndexKeyBytesMax || bytes.size() - position - 4 < key_bytes + 4ull) {
      return Status::Corruption("audit index: a key is over kIndexKeyBytesMax or cut short");
    }
    const std::string_view key = bytes.substr(position + 4, key_bytes);
    const uint32_t refs = ReadU32(bytes, position + 4 + key_bytes);
    position += 8 + key_bytes;
    if (refs == 0 || (!directory.empty() && directory.back().first >= key)) {
      return Status::Corruption("audit index: the keys are not sorted, or one has no record");
    }
    total_refs += refs;
    if (total_refs > covered) {
      return Status::Corruption("audit index: more records than the file covers");
    }
    directory.emplace_back(key, refs);
  }
  if (bytes.size() - position != total_refs * kIndexRefBytes) {
    return Status::Corruption("audit index: its size does not match its record counts");
  }
  for (const auto& [key, refs] : directory) {
    if (only_key.has_value() && key != *only_key) {
      position += refs * kIndexRefBytes;
      continue;
    }
    std::vector<KeyRecordRef> records(refs);
    for (KeyRecordRef& record : records) {
      record.seq = ReadU64(bytes, position);
      record.offset = ReadU64(bytes, position + 8);
      position += kIndexRefBytes;
      if (record.seq < segment.first_seq || record.seq > segment.last_seq ||
          record.offset >= segment.last_end_offset ||
          (&record != records.data() && (&record)[-1].seq >= record.seq)) {
        return Status::Corruption("audit index: a record of key '" + std::string(key) +
                                  "' is out of range or out of order");
      }
    }
    segment.keys.emplace_back(std::string(key), std::move(records));
  }
  return segment;
}

Result<std::string> ReadIndexedRecord(const RandomAccessFile& log, const LogStart& start,
                                      const KeyRecordRef& ref) {
  const std::string name = "audit record " + std::to_string(ref.seq) + " (at byte " +
                           std::to_string(ref.offset) + ", from the key index)";
  if (ref.offset < start.header_bytes || ref.seq <= start.base_seq ||
      (ref.offset == start.header_bytes) != (ref.seq == start.base_seq + 1)) {
    return Status::Corruption(name + ": not where a record can be");
  }
  Hash previous = start.base_hash;
  std::string bytes;
  if (ref.offset > start.header_bytes) {
    MP_RETURN_IF_ERROR(log.ReadAt(ref.offset - kHashBytes, kHashBytes, &bytes));
    if (bytes.size() != kHashBytes) {
      return Status::Corruption(name + ": past the log's end");
    }
    std::memcpy(previous.data(), bytes.data(), kHashBytes);
  }
  // The record, then its successor's length.
  MP_RETURN_IF_ERROR(log.ReadAt(ref.offset, 4, &bytes));
  const uint32_t length = bytes.size() == 4 ? ReadU32(bytes, 0) : 0;
  if (bytes.size() != 4 || length > kRecordBytesMax) {
    return Status::Corruption(name + ": no record frame there");
  }
  const size_t frame_bytes = size_t{length} + kRecordFrameBytes;
  MP_RETURN_IF_ERROR(log.ReadAt(ref.offset, frame_bytes + 4, &bytes));
  if (bytes.size() < frame_bytes) {
    return Status::Corruption(name + ": cut short");
  }
  std::string payload = bytes.substr(4, length);
  const Hash hash = ChainHash(previous, payload);
  if (std::memcmp(hash.data(), bytes.data() + 4 + length, kHashBytes) != 0 ||
      internal::LeadingSeq(payload).value_or(0) != ref.seq) {
    return Status::Corruption(name +
                              ": its hash or sequence number does not follow the hash "
                              "stored before it (edited, or the index is wrong)");
  }
  // A zero length after it, in a written-ahead log, is the zero tail: no successor.
  const bool followed = bytes.size() == frame_bytes + 4;
  const uint32_t next_length = followed ? ReadU32(bytes, frame_bytes) : 0;
  if (followed && (next_length > 0 || !start.written_ahead)) {
    std::string next;
    // The successor's payload and hash, then (written ahead) the 4 bytes after it.
    MP_RETURN_IF_ERROR(log.ReadAt(ref.offset + frame_bytes + 4,
                                  size_t{next_length} + kHashBytes + (start.written_ahead ? 4 : 0),
                                  &next));
    // A successor cut short is the log's torn tail, or an append in flight;
    // in zeroed space it is one cut short in zeros (TornInZeros).
    const auto torn_in_zeros = [&] {
      const std::string frame =
          bytes.substr(frame_bytes, 4) + next.substr(0, next_length + kHashBytes);
      return start.written_ahead &&
             internal::TornInZeros(frame, std::string_view(next).substr(next_length + kHashBytes));
    };
    if (next_length <= kRecordBytesMax && next.size() >= next_length + kHashBytes) {
      const Hash next_hash = ChainHash(hash, std::string_view(next).substr(0, next_length));
      if (std::memcmp(next_hash.data(), next.data() + next_length, kHashBytes) != 0 &&
          !torn_in_zeros()) {
        return Status::Corruption(name +
                                  ": the record after it does not chain to it (edited "
                                  "with its own hash recomputed)");
      }
    }
  }
  return payload;
}

namespace {

Result<KeyLookup> LookupKeyLocked(const std::string& folder, std::string_view key,
                                  FileSystem& file_system, const WalkOptions& options,
                                  const RecordVisitor& visit, bool rebuild);

}  // namespace

Result<KeyLookup> LookupKey(const std::string& folder, std::string_view key,
                            FileSystem& file_system, const WalkOptions& options,
                            const RecordVisitor& visit, bool rebuild) {
  if (!file_system.Exists(folder + "/log")) {
    return Status::NotFound("no audit log in " + folder);
  }
  MP_ASSIGN_OR_RETURN(const IndexLock lock,
                      IndexLock::Take(folder, file_system, IndexLock::Wait::kBlock));
  return LookupKeyLocked(folder, key, file_system, options, visit, rebuild);
}

Result<KeyLookup> TryUpdateIndex(const std::string& folder, FileSystem& file_system,
                                 const WalkOptions& options) {
  if (!file_system.Exists(folder + "/log")) {
    return Status::NotFound("no audit log in " + folder);
  }
  MP_ASSIGN_OR_RETURN(const IndexLock lock,
                      IndexLock::Take(folder, file_system, IndexLock::Wait::kTry));
  return LookupKeyLocked(folder, "", file_system, options, {}, false);
}

namespace {

Result<KeyLookup> LookupKeyLocked(const std::string& folder, std::string_view key,
                                  FileSystem& file_system, const WalkOptions& options,
                                  const RecordVisitor& visit, bool rebuild) {
  const std::string log_path = folder + "/log";
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> log,
                      file_system.OpenRandomAccess(log_path));
  std::string header;
  MP_RETURN_IF_ERROR(log->ReadAt(0, kFileHeaderBytesPruned, &header));
  KeyLookup lookup;
  auto start = ReadLogStart(header);
  if (!start.ok() && start.status().code() != StatusCode::kNotFound) {
    lookup.walk.problem = "the log does not start with the audit log header";
    return lookup;
  }
  const LogStart log_start = start.ok() ? *start : LogStart{};
  LoadedIndex loaded;
  if (rebuild) {
    loaded.problem = "asked to be made anew";
  } else {
    MP_ASSIGN_OR_RETURN(loaded, LoadIndex(folder, key, file_system, *log, log_start));
  }
  std::string anchors;
  if (file_system.Exists(folder + "/anchors")) {
    MP_ASSIGN_OR_RETURN(anchors, file_system.ReadFile(folder + "/anchors"));
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> walked_file,
                      file_system.OpenRandomAccess(log_path));
  LogReader reader(std::move(walked_file), /*decode_payloads=*/false);
  SegmentBuilder builder;
  if (loaded.problem.empty()) {
    reader.Resume(log_start, loaded.last->last_end_offset, loaded.last->last_seq,
                  loaded.last->last_hash);
    lookup.records = std::move(loaded.records);
    builder.Load(std::move(*loaded.last));
  } else {
    lookup.rebuilt = true;
    lookup.note = loaded.problem;
    builder.Reset(log_start.base_seq, log_start.base_seq + 1);
  }
  // New records go to the index files as their segments fill; a write that
  // fails leaves the index as it was (the records are still returned).
  Status written = lookup.rebuilt ? RemoveIndex(folder, file_system) : Status::Ok();
  const auto flush = [&]() {
    if (builder.dirty() && written.ok()) {
      written = file_system.WriteFileAtomically(SegmentPath(folder, SegmentOf(builder.first_seq())),
                                                builder.Encode(), kIndexFileMode);
    }
  };
  const std::string wanted(key);
  MP_ASSIGN_OR_RETURN(
      lookup.walk, VerifyLog(reader, anchors, options, [&](const LogRecord& record) -> Status {
        if (SegmentOf(record.seq) != SegmentOf(builder.first_seq())) {
          flush();
          builder.Reset(log_start.base_seq, record.seq);
        }
        MP_ASSIGN_OR_RETURN(const std::string record_key, KeyOfPayload(record.payload, record.seq));
        builder.Add(record_key, record);
        if (record_key == wanted) {
          lookup.records.push_back({record.seq, record.offset});
        }
        ++lookup.records_walked;
        if (visit) {
          MP_RETURN_IF_ERROR(visit(record));
        }
        return Status::Ok();
      }));
  if (!lookup.walk.ok) {
    lookup.records.clear();
    return lookup;
  }
  flush();
  if (!written.ok()) {
    lookup.note += (lookup.note.empty() ? "" : "; ") +
                   ("the index could not be written: " + written.message());
  }
  lookup.indexed_seq = reader.seq();
  return lookup;
}

}  // namespace

}  // namespace minpanel::audit
