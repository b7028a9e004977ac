#include "store/profile_file.h"

#include <cstring>
#include <ostream>

#include "store/bytes.h"
#include "store/dump_print.h"
#include "store/log_reader.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

// Frames `payload` as a record of `type` (docs/formats/wal.md, "Records").
void AppendRecord(WalRecordType type, std::string_view payload, std::string* out) {
  const size_t start = out->size();
  PutFixed32(0, out);
  PutFixed32(static_cast<uint32_t>(payload.size()), out);
  out->push_back(static_cast<char>(type));
  out->append(payload);
  const uint32_t crc = Crc32(0, std::string_view(out->data() + start + 4, payload.size() + 5));
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    (*out)[start + byte_idx] = static_cast<char>(crc >> (8 * byte_idx));
  }
}

void AppendBatch(uint32_t project_id, int64_t stored_at_ms, uint32_t count,
                 const std::string& body, std::string* out) {
  std::string payload;
  EncodePayloadHeader(WalPayloadHeader{stored_at_ms, project_id, 0, count}, &payload);
  payload.append(body);
  AppendRecord(WalRecordType::kBatch, payload, out);
}

constexpr size_t kGroupEndBytes = 16;  // log end: file number u64, offset u64

// The log format version whose encoding of a profile update a profile file
// of `version` holds (docs/formats/profiles.md, "Versioning"): a version 1
// file's is the log's of versions 1 and 2, without a policy version.
uint32_t LogVersionOf(uint32_t profile_file_version) {
  return profile_file_version >= kProfileFilePolicyVersionFormatVersion
             ? kWalProfilePolicyVersionFormatVersion
             : 1;
}

Status CheckHeader(const std::string& header, uint32_t project_id, const std::string& path) {
  if (std::memcmp(header.data(), kProfileFileMagic.data(), kProfileFileMagic.size()) != 0) {
    return Status::Corruption(path + ": not a minpanel profile file (bad magic)");
  }
  if (Crc32(0, std::string_view(header).substr(0, 20)) != GetFixed32(header.data() + 20)) {
    return Status::Corruption(path + ": profile file header checksum mismatch");
  }
  const uint32_t version = GetFixed32(header.data() + 8);
  if (version == 0 || version > kProfileFileFormatVersion) {
    return Status::Corruption(path + ": profile file format version " + std::to_string(version) +
                              " is newer than this binary reads (" +
                              std::to_string(kProfileFileFormatVersion) + ")");
  }
  if (GetFixed64(header.data() + 12) != project_id) {
    return Status::Corruption(path + ": profile file of project " +
                              std::to_string(GetFixed64(header.data() + 12)) + ", not " +
                              std::to_string(project_id));
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeProfileFileHeader(uint32_t project_id) {
  std::string header(kProfileFileMagic.data(), kProfileFileMagic.size());
  PutFixed32(kProfileFileFormatVersion, &header);
  PutFixed64(project_id, &header);
  PutFixed32(Crc32(0, header), &header);
  return header;
}

void EncodeProfileGroup(uint32_t project_id, std::span<const StoredProfileUpdate> updates,
                        const LogPosition& log_end, std::string* out) {
  std::string body;
  uint32_t count = 0;
  int64_t stored_at_ms = 0;
  for (const StoredProfileUpdate& stored : updates) {
    if (count > 0 && (stored.stored_at_ms != stored_at_ms || body.size() > kProfileRecordBodyBytesMax)) {
      AppendBatch(project_id, stored_at_ms, count, body, out);
      body.clear();
      count = 0;
    }
    stored_at_ms = stored.stored_at_ms;
    EncodeProfileUpdate(stored.update, &body, LogVersionOf(kProfileFileFormatVersion));
    ++count;
  }
  if (count > 0) {
    AppendBatch(project_id, stored_at_ms, count, body, out);
  }
  std::string end;
  PutFixed64(log_end.file_number, &end);
  PutFixed64(log_end.offset, &end);
  AppendRecord(WalRecordType::kProfileGroupEnd, end, out);
}

Result<ProfileFileScan> ScanProfileFile(FileSystem& file_system, const std::string& path,
                                        uint64_t limit_bytes, uint32_t project_id,
                                        const ProfileVisitor& visit) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system.OpenSequential(path));
  return ScanProfileFile(file.get(), path, limit_bytes, project_id, visit);
}

Result<ProfileFileScan> ScanProfileFile(SequentialFile* file, const std::string& path,
                                        uint64_t limit_bytes, uint32_t project_id,
                                        const ProfileVisitor& visit) {
  LogReader reader(file, limit_bytes);
  std::string header;
  MP_ASSIGN_OR_RETURN(const LogReader::Outcome opened,
                      reader.ReadProfileFileHeader(kProfileFileHeaderBytes, &header));
  ProfileFileScan scan;
  if (opened != LogReader::Outcome::kRecord) {
    scan.tail_reason = "the file header is cut short";
    return scan;
  }
  MP_RETURN_IF_ERROR(CheckHeader(header, project_id, path));
  scan.format_version = GetFixed32(header.data() + 8);
  const uint32_t log_version = LogVersionOf(scan.format_version);
  scan.valid_bytes = kProfileFileHeaderBytes;
  // A group's updates are handed out only once its end record is read: a
  // group cut short was never part of the store.
  std::vector<StoredProfileUpdate> group;
  bool stopped = false;
  while (!stopped) {
    std::string_view payload;
    std::string reason;
    MP_ASSIGN_OR_RETURN(const LogReader::Outcome outcome, reader.ReadRecord(&payload, &reason));
    if (outcome == LogReader::Outcome::kEnd) {
      if (!group.empty()) {
        scan.tail_reason = "a group without its end record";
      }
      break;
    }
    if (outcome != LogReader::Outcome::kRecord) {
      scan.tail_reason = reason + " at offset " + std::to_string(reader.record_offset());
      break;
    }
    if (reader.record_type() == WalRecordType::kProfileGroupEnd) {
      if (payload.size() != kGroupEndBytes) {
        scan.tail_reason = "a group end record of " + std::to_string(payload.size()) + " bytes";
        break;
      }
      const LogPosition log_end{GetFixed64(payload.data()), GetFixed64(payload.data() + 8)};
      for (const StoredProfileUpdate& stored : group) {
        if (visit && !visit(stored, log_end)) {
          stopped = true;
          break;
        }
      }
      scan.updates += group.size();
      ++scan.groups;
      scan.log_end = log_end;
      scan.valid_bytes = reader.end_offset();
      group.clear();
      continue;
    }
    if (reader.record_type() != WalRecordType::kBatch) {
      scan.tail_reason = "a record of type " +
                         std::to_string(static_cast<int>(reader.record_type())) +
                         " at offset " + std::to_string(reader.record_offset());
      break;
    }
    WalDecoder decoder(payload, log_version);
    WalPayloadHeader batch;
    Status decoded = decoder.ReadPayloadHeader(&batch);
    if (decoded.ok() && (batch.project_id != project_id || batch.event_count != 0)) {
      decoded = Status::Corruption("a batch of project " + std::to_string(batch.project_id) +
                                   " with " + std::to_string(batch.event_count) + " events");
    }
    for (uint32_t update_idx = 0; decoded.ok() && update_idx < batch.profile_update_count;
         ++update_idx) {
      StoredProfileUpdate& stored = group.emplace_back();
      stored.stored_at_ms = batch.stored_at_ms;
      decoded = decoder.ReadProfileUpdate(&stored.update);
    }
    if (decoded.ok() && !decoder.empty()) {
      decoded = Status::Corruption("trailing bytes in a batch record");
    }
    if (!decoded.ok()) {
      scan.tail_reason = decoded.message() + " at offset " + std::to_string(reader.record_offset());
      break;
    }
  }
  return scan;
}

Result<uint64_t> RewriteProfileFileAtNewestVersion(FileSystem& file_system,
                                                   const std::string& path, uint64_t valid_bytes,
                                                   uint32_t project_id, uint32_t mode) {
  const std::string temporary = path + ".tmp";
  if (file_system.Exists(temporary)) {
    MP_RETURN_IF_ERROR(file_system.Remove(temporary));
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out, file_system.OpenAppendable(temporary, mode));
  uint64_t written = 0;
  Status status = out->Append(EncodeProfileFileHeader(project_id));
  written += kProfileFileHeaderBytes;
  // A group's updates come one after another with its log end; groups end
  // at strictly increasing positions, so a new end starts a new group.
  std::vector<StoredProfileUpdate> group;
  LogPosition group_end;
  bool written_end = false;  // whether group_end's group has been written
  const auto write_group = [&]() {
    std::string bytes;
    EncodeProfileGroup(project_id, group, group_end, &bytes);
    written += bytes.size();
    status = out->Append(bytes);
    group.clear();
    written_end = true;
  };
  Result<ProfileFileScan> scan = ProfileFileScan{};
  if (status.ok()) {
    scan = ScanProfileFile(file_system, path, valid_bytes, project_id,
                           [&](const StoredProfileUpdate& stored, const LogPosition& log_end) {
                             if (!group.empty() && log_end != group_end) {
                               write_group();
                             }
                             if (log_end != group_end) {
                               group_end = log_end;
                               written_end = false;
                             }
                             group.push_back(stored);
                             return status.ok();
                           });
  }
  if (status.ok() && !scan.ok()) {
    status = scan.status();
  }
  if (status.ok() && (scan->valid_bytes != valid_bytes || !scan->tail_reason.empty())) {
    status = Status::Corruption(path + " changed under its rewrite at the newest format");
  }
  if (status.ok() && !group.empty()) {
    write_group();
  }
  if (status.ok() && (!written_end || group_end != scan->log_end)) {
    // A last group without updates (a purge kept none): its log end says
    // where the project's updates in the log begin.
    group_end = scan->log_end;
    write_group();
  }
  if (status.ok()) {
    status = out->Sync();
  }
  const Status closed = out->Close();
  if (status.ok()) {
    status = closed;
  }
  if (status.ok()) {
    status = file_system.Rename(temporary, path);
  }
  if (!status.ok()) {
    (void)file_system.Remove(temporary);
    return status;
  }
  const std::string::size_type slash = path.rfind('/');
  MP_RETURN_IF_ERROR(
      file_system.SyncDirectory(slash == std::string::npos ? "." : path.substr(0, slash)));
  return written;
}

Status DumpProfileFile(FileSystem& file_system, const std::string& path, std::ostream& out) {
  MP_ASSIGN_OR_RETURN(const uint64_t size, file_system.FileSize(path));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system.OpenSequential(path));
  std::string header;
  {
    LogReader reader(file.get(), size);
    MP_ASSIGN_OR_RETURN(const LogReader::Outcome opened,
                        reader.ReadProfileFileHeader(kProfileFileHeaderBytes, &header));
    if (opened != LogReader::Outcome::kRecord) {
      return Status::Corruption(path + ": profile file header is torn");
    }
  }
  const uint32_t project_id = static_cast<uint32_t>(GetFixed64(header.data() + 12));
  out << path << ": minpanel profile file format " << GetFixed32(header.data() + 8)
      << ", project " << project_id << ", " << size << " bytes\n";
  LogPosition last_end;
  MP_ASSIGN_OR_RETURN(
      const ProfileFileScan scan,
      ScanProfileFile(file_system, path, size, project_id,
                      [&](const StoredProfileUpdate& stored, const LogPosition& log_end) {
                        if (log_end != last_end) {
                          out << "group up to log file " << log_end.file_number << " offset "
                              << log_end.offset << "\n";
                          last_end = log_end;
                        }
                        const ProfileUpdate& update = stored.update;
                        out << "  profile " << ProfileOperationName(update.operation)
                            << " stored_at_ms=" << stored.stored_at_ms
                            << " subject=" << update.subject.ToHex()
                            << " group_key=" << update.group_key << " time_ms=" << update.time_ms
                            << " key_version=" << update.key_version << " policy_version=";
                        PrintPolicyVersion(update.policy_version, out);
                        out << " {";
                        const char* separator = "";
                        for (const Property& property : update.properties) {
                          out << separator << property.key << ": ";
                          PrintValue(property.value, out);
                          separator = ", ";
                        }
                        out << "}\n";
                        return true;
                      }));
  out << scan.groups << " groups, " << scan.updates << " profile updates, " << scan.valid_bytes
      << " bytes whole\n";
  if (!scan.tail_reason.empty()) {
    out << "after offset " << scan.valid_bytes << ": " << scan.tail_reason << "\n";
    return Status::Corruption(path + " after offset " + std::to_string(scan.valid_bytes) + ": " +
                              scan.tail_reason);
  }
  return Status::Ok();
}

}  // namespace minpanel::store
