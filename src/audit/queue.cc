// The queue of records a command leaves for the log's holder
// (docs/formats/audit.md, "Queue"): an incident run made while a server
// holds the log is appended by the server instead of going unrecorded.
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "audit/audit.h"

namespace minpanel::audit {
namespace {

constexpr uint32_t kQueueFileMode = 0600;
constexpr uint32_t kQueueFolderMode = 0700;
constexpr std::string_view kQueuedSuffix = ".json";
constexpr std::string_view kRejectedSuffix = ".rejected";

std::string QueuePath(const std::string& folder) { return folder + "/" + std::string(kQueueFolder); }

// The key and project changes a command makes (src/cli), recorded through
// the queue while a server runs.
constexpr std::array<std::string_view, 9> kQueuedCommandActs = {
    "key.create",          "key.rotate",
    "key.revoke",          "key.enable",
    "project.create",      "project.rotate-secret",
    "project.set-domains", "project.set-min-group-size",
    "project.rotate-key"};

bool QueueableAct(std::string_view act) {
  return act.starts_with(kQueuedActPrefix) ||
         std::find(kQueuedCommandActs.begin(), kQueuedCommandActs.end(), act) !=
             kQueuedCommandActs.end();
}

// What may be queued: a command's incident run or key or project change,
// with nothing a server's record alone carries (subjects, a watermark, an
// address).
Status CheckQueueable(const AuditEntry& entry) {
  if (entry.key != "local" || !QueueableAct(entry.act) || !entry.subjects_file.empty() ||
      !entry.watermark.empty() || !entry.address.empty()) {
    return Status::InvalidArgument(
        "audit queue: only a command's own acts are queued (key 'local', act 'incident.…' or a "
        "key or project change, no subject file, watermark or address)");
  }
  return Status::Ok();
}

Result<AuditEntry> ReadQueued(FileSystem& file_system, const std::string& path) {
  MP_ASSIGN_OR_RETURN(const uint64_t size, file_system.FileSize(path));
  if (size > kRecordBytesMax) {
    return Status::Corruption("over kRecordBytesMax (" + std::to_string(kRecordBytesMax) +
                              " bytes)");
  }
  MP_ASSIGN_OR_RETURN(const std::string payload, file_system.ReadFile(path));
  MP_ASSIGN_OR_RETURN(AuditEntry entry, DecodeEntry(payload));
  if (Status queueable = CheckQueueable(entry); !queueable.ok()) {
    return Status::Corruption(queueable.message());
  }
  return entry;
}

}  // namespace

Result<std::string> QueueEntry(const std::string& folder, AuditEntry entry,
                               FileSystem& file_system, int64_t now_ms) {
  MP_RETURN_IF_ERROR(CheckQueueable(entry));
  const std::string queue = QueuePath(folder);
  MP_RETURN_IF_ERROR(file_system.CreateDirectories(queue, kQueueFolderMode));
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system.ListDirectory(queue));
  const auto waiting = std::count_if(names.begin(), names.end(), [](const std::string& name) {
    return name.ends_with(kQueuedSuffix);
  });
  if (static_cast<size_t>(waiting) >= kQueueFilesMax) {
    return Status::ResourceExhausted("audit queue: " + std::to_string(waiting) +
                                     " records wait already (kQueueFilesMax " +
                                     std::to_string(kQueueFilesMax) +
                                     "); is the server appending them?");
  }
  entry.seq = 0;
  entry.time_ms = now_ms;
  entry.client_address.clear();
  const std::string payload = EncodeEntry(entry);
  if (payload.size() > kRecordBytesMax) {
    return Status::ResourceExhausted("audit queue: the record is over kRecordBytesMax");
  }
  // Named by time (zero-padded, so that names sort as times do) and a
  // random part, so that two commands never pick one name.
  std::array<uint8_t, 8> nonce{};
  randombytes_buf(nonce.data(), nonce.size());
  std::array<char, 2 * 8 + 1> nonce_hex{};
  sodium_bin2hex(nonce_hex.data(), nonce_hex.size(), nonce.data(), nonce.size());
  char name[64];
  std::snprintf(name, sizeof(name), "%013lld-%s",
                static_cast<long long>(std::max<int64_t>(0, now_ms)), nonce_hex.data());
  const std::string file_name = std::string(name) + std::string(kQueuedSuffix);
  MP_RETURN_IF_ERROR(
      file_system.WriteFileAtomically(queue + "/" + file_name, payload, kQueueFileMode));
  return file_name;
}

Result<AuditLog::Drained> AuditLog::DrainQueue() {
  std::lock_guard drain(queue_mutex_);
  Drained drained;
  const std::string queue = QueuePath(folder_);
  if (!file_system_->Exists(queue)) {
    return drained;
  }
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system_->ListDirectory(queue));
  for (const std::string& name : names) {
    if (!name.ends_with(kQueuedSuffix)) {
      continue;  // a rejected file, or one being written (NAME.tmp)
    }
    const std::string path = queue + "/" + name;
    auto entry = ReadQueued(*file_system_, path);
    if (!entry.ok()) {
      MP_RETURN_IF_ERROR(file_system_->Rename(path, path + std::string(kRejectedSuffix)));
      ++drained.rejected;
      drained.problem = name + ": " + entry.status().message();
      continue;
    }
    // Durable before the file goes: a crash in between appends it twice
    // (the next drain), never loses it.
    MP_RETURN_IF_ERROR(Append(std::move(entry).value()).status());
    MP_RETURN_IF_ERROR(file_system_->Remove(path));
    ++drained.appended;
  }
  if (drained.appended + drained.rejected > 0) {
    MP_RETURN_IF_ERROR(file_system_->SyncDirectory(queue));
  }
  return drained;
}

}  // namespace minpanel::audit
