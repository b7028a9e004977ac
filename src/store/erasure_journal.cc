#include "store/erasure_journal.h"

#include <algorithm>
#include <array>

#include "store/bytes.h"
#include "store/deletion.h"
#include "store/log_reader.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr std::array<char, 8> kJournalMagic = {'M', 'P', 'E', 'R', 'J', '\r', '\n', '\x1a'};
constexpr uint32_t kJournalVersion = 1;
constexpr size_t kJournalHeaderBytes = kJournalMagic.size() + 4;
constexpr size_t kRecordHeaderBytes = 8;

std::string JournalPath(const std::string& journal_folder) {
  return journal_folder + "/" + kErasureJournalName;
}

uint32_t Fixed32At(std::string_view bytes, size_t offset) {
  uint32_t value = 0;
  for (size_t byte_idx = 0; byte_idx < 4; ++byte_idx) {
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + byte_idx]))
             << (8 * byte_idx);
  }
  return value;
}

// The whole records of a journal's bytes, and where they end.
Status ParseJournal(std::string_view bytes, std::vector<Deletion>* out, size_t* end) {
  *end = 0;
  if (bytes.size() < kJournalHeaderBytes ||
      bytes.substr(0, kJournalMagic.size()) !=
          std::string_view(kJournalMagic.data(), kJournalMagic.size())) {
    return Status::Ok();
  }
  if (Fixed32At(bytes, kJournalMagic.size()) > kJournalVersion) {
    return Status::Corruption(std::string(kErasureJournalName) + ": a newer version");
  }
  size_t offset = kJournalHeaderBytes;
  *end = offset;
  while (bytes.size() - offset >= kRecordHeaderBytes) {
    const uint32_t length = Fixed32At(bytes, offset);
    const uint32_t crc = Fixed32At(bytes, offset + 4);
    if (bytes.size() - offset - kRecordHeaderBytes < length) {
      break;  // torn
    }
    const std::string_view payload = bytes.substr(offset + kRecordHeaderBytes, length);
    if (Crc32(0, payload) != crc) {
      break;
    }
    ByteReader reader(payload);
    Deletion deletion;
    if (!reader.ReadVarint64("journal log file", &deletion.position.file_number).ok() ||
        !reader.ReadVarint64("journal log offset", &deletion.position.offset).ok() ||
        !DecodeDeletionBody(&reader, &deletion).ok()) {
      break;
    }
    out->push_back(std::move(deletion));
    offset += kRecordHeaderBytes + length;
    *end = offset;
  }
  return Status::Ok();
}

// The deletion records of one log file.
Status ReadLogDeletions(FileSystem& file_system, const std::string& path, uint64_t number,
                        std::vector<Deletion>* out) {
  MP_ASSIGN_OR_RETURN(const uint64_t size, file_system.FileSize(path));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system.OpenSequential(path));
  LogReader reader(file.get(), size);
  WalFileHeader header;
  bool all_zero = false;
  MP_ASSIGN_OR_RETURN(const LogReader::Outcome opened, reader.ReadFileHeader(&header, &all_zero));
  if (opened != LogReader::Outcome::kRecord) {
    return Status::Ok();
  }
  std::string_view payload;
  std::string reason;
  while (true) {
    MP_ASSIGN_OR_RETURN(const LogReader::Outcome outcome, reader.ReadRecord(&payload, &reason));
    if (outcome != LogReader::Outcome::kRecord) {
      return Status::Ok();
    }
    if (reader.record_type() != WalRecordType::kDeletion) {
      continue;
    }
    MP_ASSIGN_OR_RETURN(Deletion deletion, DecodeDeletionPayload(payload));
    deletion.position = LogPosition{number, reader.record_offset()};
    out->push_back(std::move(deletion));
  }
}

}  // namespace

uint64_t LogFileNumber(const std::string& name) {
  constexpr std::string_view kSuffix = ".log";
  if (!name.ends_with(kSuffix) || name.size() == kSuffix.size()) {
    return 0;
  }
  const std::string digits = name.substr(0, name.size() - kSuffix.size());
  if (digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return 0;
  }
  return std::stoull(digits);
}

// A profile expiry is not an erasure: a restore must not erase the
// subjects' events (their profiles expire again at the next pass). A
// property purge is kept: a restore must not bring back its values.
bool Journalled(const Deletion& deletion) {
  return !deletion.property_key.empty() ||
         (!deletion.subjects.empty() && !deletion.profiles_only);
}

Status AppendErasureJournal(FileSystem& file_system, const std::string& journal_folder,
                            const std::vector<Deletion>& deletions) {
  std::string records;
  for (const Deletion& deletion : deletions) {
    if (!Journalled(deletion)) {
      continue;
    }
    std::string payload;
    PutVarint64(deletion.position.file_number, &payload);
    PutVarint64(deletion.position.offset, &payload);
    EncodeDeletionBody(deletion, &payload);
    PutFixed32(static_cast<uint32_t>(payload.size()), &records);
    PutFixed32(Crc32(0, payload), &records);
    records += payload;
  }
  if (records.empty()) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(file_system.CreateDirectories(journal_folder, 0700));
  const std::string path = JournalPath(journal_folder);
  bool existed = file_system.Exists(path);
  if (existed) {
    // Cut a torn tail first, so that readers see every later record.
    MP_ASSIGN_OR_RETURN(const std::string bytes, file_system.ReadFile(path));
    std::vector<Deletion> kept;
    size_t end = 0;
    MP_RETURN_IF_ERROR(ParseJournal(bytes, &kept, &end));
    if (end == 0 && bytes.size() >= kJournalHeaderBytes) {
      return Status::Corruption(path + ": not an erasure journal");
    }
    if (end != bytes.size()) {
      MP_RETURN_IF_ERROR(file_system.Truncate(path, end));
    }
    // Shorter than a header: created by an append that died; start anew.
    existed = end != 0;
  }
  if (!existed) {
    std::string header(kJournalMagic.data(), kJournalMagic.size());
    PutFixed32(kJournalVersion, &header);
    records.insert(0, header);
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, file_system.OpenAppendable(path, 0600));
  MP_RETURN_IF_ERROR(file->Append(records));
  MP_RETURN_IF_ERROR(file->Sync());
  MP_RETURN_IF_ERROR(file->Close());
  return existed ? Status::Ok() : file_system.SyncDirectory(journal_folder);
}

Result<std::vector<Deletion>> ReadErasures(FileSystem& file_system, const std::string& store_folder,
                                           const std::string& journal_folder) {
  std::vector<Deletion> all;
  const std::string journal = JournalPath(journal_folder);
  if (!journal_folder.empty() && file_system.Exists(journal)) {
    MP_ASSIGN_OR_RETURN(const std::string bytes, file_system.ReadFile(journal));
    size_t end = 0;
    MP_RETURN_IF_ERROR(ParseJournal(bytes, &all, &end));
  }
  const std::string manifest_path = store_folder + "/MANIFEST";
  if (file_system.Exists(manifest_path)) {
    MP_ASSIGN_OR_RETURN(const std::string bytes, file_system.ReadFile(manifest_path));
    MP_ASSIGN_OR_RETURN(const Manifest manifest, DecodeManifest(bytes, manifest_path));
    all.insert(all.end(), manifest.deletions.begin(), manifest.deletions.end());
  }
  if (file_system.Exists(store_folder + "/wal")) {
    MP_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                        file_system.ListDirectory(store_folder + "/wal"));
    for (const std::string& name : names) {
      const uint64_t number = LogFileNumber(name);
      if (number == 0) {
        continue;
      }
      const Status read =
          ReadLogDeletions(file_system, store_folder + "/wal/" + name, number, &all);
      if (!read.ok() && file_system.Exists(store_folder + "/wal/" + name)) {
        return read;  // a file trimmed meanwhile was wholly in the manifest's time
      }
    }
  }
  std::erase_if(all, [](const Deletion& deletion) { return !Journalled(deletion); });
  std::sort(all.begin(), all.end(),
            [](const Deletion& a, const Deletion& b) { return a.position < b.position; });
  all.erase(std::unique(all.begin(), all.end(),
                        [](const Deletion& a, const Deletion& b) {
                          return a.position == b.position && a.project_id == b.project_id;
                        }),
            all.end());
  return all;
}

}  // namespace minpanel::store
