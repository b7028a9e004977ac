// CopyStoreOnline (store.h): a consistent copy of a store folder that a
// running engine, in this process or another, keeps writing. What makes it
// consistent without stopping the writer: segment files are immutable once
// a manifest lists them (a purge or compaction writes new files and deletes
// the old ones only after a new manifest), the manifest is replaced
// atomically, and the log is append-only with records checksummed — so a
// manifest, the segments it lists and every log file from its log position
// on, each cut at its last whole record, are a state the engine passed
// through, as after a crash. A file deleted under the copy (a compaction, a
// trim after the next flush) makes it start again.
#include "store/online_copy.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <thread>

#include "store/erasure_journal.h"
#include "store/log_reader.h"
#include "store/manifest.h"
#include "store/profile_file.h"
#include "store/store.h"

namespace minpanel::store {
namespace {

namespace fs = std::filesystem;

// Why one attempt could not finish: a file went away under it (retry), or
// a real error.
struct Attempt {
  bool retry = false;
  Status status;
};

// Copies `from` up to its last whole record, at most `size` bytes (its size
// when listed: a writer may be appending), to `to`; the end of that record
// in *copied.
Status CopyLogPrefix(FileSystem& file_system, const std::string& from, uint64_t size,
                     const std::string& to, uint64_t* copied) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system.OpenSequential(from));
  LogReader reader(file.get(), size);
  WalFileHeader header;
  bool all_zero = false;
  MP_ASSIGN_OR_RETURN(const LogReader::Outcome opened, reader.ReadFileHeader(&header, &all_zero));
  *copied = 0;
  if (opened == LogReader::Outcome::kRecord) {
    *copied = reader.end_offset();
    std::string_view payload;
    std::string reason;
    while (true) {
      MP_ASSIGN_OR_RETURN(const LogReader::Outcome outcome, reader.ReadRecord(&payload, &reason));
      if (outcome != LogReader::Outcome::kRecord) {
        break;  // the end, or a record being written: cut before it
      }
      *copied = reader.end_offset();
    }
  }
  if (*copied == 0) {
    return Status::Ok();  // created, its header not yet written: nothing to keep
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> source, file_system.OpenRandomAccess(from));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out, file_system.OpenAppendable(to, 0600));
  std::string chunk;
  for (uint64_t offset = 0; offset < *copied; offset += kLogReadChunkBytes) {
    const size_t length =
        static_cast<size_t>(std::min<uint64_t>(kLogReadChunkBytes, *copied - offset));
    MP_RETURN_IF_ERROR(source->ReadAt(offset, length, &chunk));
    MP_RETURN_IF_ERROR(out->Append(chunk));
  }
  MP_RETURN_IF_ERROR(out->Sync());
  return out->Close();
}

// Copies every profile file (profiles/<project>.prof) up to its last whole
// group: a flush may be appending one. Read after the manifest: a flush
// appends its groups before it writes its manifest, so each copy holds the
// profile updates of every record before the manifest's log position (and
// perhaps later ones, which the copied log also holds and the copy's open
// then skips). A file a purge replaced meanwhile is copied as it is now.
Attempt CopyProfileFiles(FileSystem& file_system, const std::string& store_folder,
                         const std::string& destination, StoreCopy* copy) {
  const std::string folder = store_folder + "/profiles";
  if (!file_system.Exists(folder)) {
    return {};  // a store of a binary from before profile files
  }
  auto names = file_system.ListDirectory(folder);
  if (!names.ok()) {
    return {false, names.status()};
  }
  for (const std::string& name : *names) {
    if (!name.ends_with(".prof")) {
      continue;
    }
    const std::string from = folder + "/" + name;
    const std::string to = destination + "/profiles/" + name;
    uint32_t project_id = 0;
    std::from_chars(name.data(), name.data() + name.size(), project_id);
    // One read of one file (a purge may rename another in its place), then
    // the copy is cut after its last whole group.
    auto bytes = file_system.ReadFile(from);
    if (!bytes.ok()) {
      return {!file_system.Exists(from), bytes.status()};
    }
    if (const Status written = file_system.WriteFileAtomically(to, *bytes, 0600); !written.ok()) {
      return {false, written};
    }
    auto scan = ScanProfileFile(file_system, to, bytes->size(), project_id, {});
    if (!scan.ok()) {
      return {false, scan.status()};
    }
    if (scan->valid_bytes < bytes->size()) {
      if (const Status cut = file_system.Truncate(to, scan->valid_bytes); !cut.ok()) {
        return {false, cut};
      }
    }
    ++copy->profile_files;
    copy->profile_bytes += scan->valid_bytes;
  }
  return {};
}

// Links (or, across file systems, copies) an immutable segment file.
Attempt LinkSegment(const std::string& from, const std::string& to) {
  std::error_code error;
  fs::create_directories(fs::path(to).parent_path(), error);
  fs::create_hard_link(from, to, error);
  if (!error) {
    return {};
  }
  if (!fs::exists(from)) {
    return {true, Status::Ok()};  // replaced by a purge or compaction since
  }
  fs::copy_file(from, to, error);
  if (error) {
    return {!fs::exists(from), Status::IoError("copy " + from + ": " + error.message())};
  }
  return {};
}

Attempt CopyOnce(FileSystem& file_system, const std::string& store_folder,
                 const std::string& destination, StoreCopy* copy) {
  *copy = StoreCopy{};
  const std::string manifest_path = store_folder + "/MANIFEST";
  std::string manifest_bytes;
  Manifest manifest;
  if (file_system.Exists(manifest_path)) {
    auto bytes = file_system.ReadFile(manifest_path);
    if (!bytes.ok()) {
      return {false, bytes.status()};
    }
    manifest_bytes = std::move(bytes).value();
    auto decoded = DecodeManifest(manifest_bytes, manifest_path);
    if (!decoded.ok()) {
      return {false, decoded.status()};
    }
    manifest = std::move(decoded).value();
  }
  for (const ManifestSegment& segment : manifest.segments) {
    const Attempt linked = LinkSegment(store_folder + "/segments/" + segment.path,
                                       destination + "/segments/" + segment.path);
    if (linked.retry || !linked.status.ok()) {
      return linked;
    }
    ++copy->segments;
    copy->segment_bytes += segment.file_bytes;
  }
  if (const Attempt profiles = CopyProfileFiles(file_system, store_folder, destination, copy);
      profiles.retry || !profiles.status.ok()) {
    return profiles;
  }
  auto names = file_system.ListDirectory(store_folder + "/wal");
  if (!names.ok()) {
    return {false, names.status()};
  }
  std::vector<uint64_t> numbers;
  for (const std::string& name : *names) {
    if (const uint64_t number = LogFileNumber(name); number != 0) {
      numbers.push_back(number);
    }
  }
  std::sort(numbers.begin(), numbers.end());
  // Every file from the manifest's log position on must be there, without
  // a gap: a later flush trims from the front.
  const uint64_t first_needed = manifest.log_position.file_number;
  uint64_t expected = first_needed;
  for (const uint64_t number : numbers) {
    if (number < first_needed) {
      continue;
    }
    if (first_needed != 0 && number != expected) {
      return {true, Status::Ok()};
    }
    expected = number + 1;
  }
  for (const uint64_t number : numbers) {
    std::string name = std::to_string(number);
    name.insert(0, name.size() < 6 ? 6 - name.size() : 0, '0');
    const std::string from = store_folder + "/wal/" + name + ".log";
    auto size = file_system.FileSize(from);
    uint64_t copied = 0;
    const Status status = size.ok() ? CopyLogPrefix(file_system, from, *size,
                                                    destination + "/wal/" + name + ".log", &copied)
                                    : size.status();
    if (!status.ok()) {
      if (!file_system.Exists(from)) {
        if (number < first_needed) {
          continue;  // trimmed: wholly in segments and profile files
        }
        return {true, Status::Ok()};
      }
      return {false, status};
    }
    if (copied == 0) {
      continue;
    }
    ++copy->log_files;
    copy->log_bytes += copied;
    copy->end_log_file = number;
    copy->end_log_offset = copied;
  }
  if (!manifest_bytes.empty()) {
    const Status written =
        file_system.WriteFileAtomically(destination + "/MANIFEST", manifest_bytes, 0600);
    if (!written.ok()) {
      return {false, written};
    }
  }
  return {};
}

}  // namespace

Result<StoreCopy> CopyStoreOnline(const std::string& store_folder, const std::string& destination) {
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  std::error_code error;
  if (fs::exists(destination, error) && !fs::is_empty(destination, error)) {
    return Status::InvalidArgument("destination: " + destination +
                                   " is not empty; a copy goes into a new folder");
  }
  for (uint32_t attempt = 1; attempt <= kOnlineCopyAttemptsMax; ++attempt) {
    fs::remove_all(destination, error);
    for (const char* folder : {"/wal", "/segments", "/profiles"}) {
      MP_RETURN_IF_ERROR(file_system->CreateDirectories(destination + folder, 0700));
    }
    StoreCopy copy;
    const Attempt result = CopyOnce(*file_system, store_folder, destination, &copy);
    if (!result.retry) {
      MP_RETURN_IF_ERROR(result.status);
      copy.attempts = attempt;
      for (const auto& entry : fs::directory_iterator(destination + "/segments")) {
        MP_RETURN_IF_ERROR(file_system->SyncDirectory(entry.path().string()));
      }
      MP_RETURN_IF_ERROR(file_system->SyncDirectory(destination + "/segments"));
      MP_RETURN_IF_ERROR(file_system->SyncDirectory(destination + "/wal"));
      MP_RETURN_IF_ERROR(file_system->SyncDirectory(destination + "/profiles"));
      MP_RETURN_IF_ERROR(file_system->SyncDirectory(destination));
      return copy;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 * attempt));
  }
  return Status::Unavailable("store copy: files changed under every one of " +
                             std::to_string(kOnlineCopyAttemptsMax) +
                             " attempts (kOnlineCopyAttemptsMax); retry when ingestion is lighter");
}

Result<std::vector<Erasure>> ErasuresSince(const std::string& store_folder,
                                           const std::string& journal_folder, uint64_t log_file,
                                           uint64_t log_offset) {
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  MP_ASSIGN_OR_RETURN(const std::vector<Deletion> deletions,
                      ReadErasures(*file_system, store_folder, journal_folder));
  const LogPosition since{log_file, log_offset};
  std::vector<Erasure> erasures;
  for (const Deletion& deletion : deletions) {
    if (deletion.position < since) {
      continue;
    }
    erasures.push_back({deletion.project_id, deletion.position.file_number,
                        deletion.position.offset, deletion.stored_at_ms, deletion.subjects,
                        deletion.property_key, deletion.event_name});
  }
  return erasures;
}

}  // namespace minpanel::store
