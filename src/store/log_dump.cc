// DumpLogFile: a readable rendering of one log file, for debugging.
#include <ostream>

#include "store/deletion.h"
#include "store/dump_print.h"
#include "store/log_reader.h"
#include "store/store.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

void PrintProperties(const Properties& properties, std::ostream& out) {
  out << '{';
  const char* separator = "";
  for (const Property& property : properties) {
    out << separator << property.key << ": ";
    PrintValue(property.value, out);
    separator = ", ";
  }
  out << '}';
}

Status PrintRecord(std::string_view payload, uint32_t version, std::ostream& out) {
  WalDecoder decoder(payload, version);
  WalPayloadHeader header;
  MP_RETURN_IF_ERROR(decoder.ReadPayloadHeader(&header));
  out << " stored_at_ms=" << header.stored_at_ms << " project=" << header.project_id
      << " events=" << header.event_count << " profile_updates=" << header.profile_update_count
      << "\n";
  Event event;
  for (uint32_t event_idx = 0; event_idx < header.event_count; ++event_idx) {
    MP_RETURN_IF_ERROR(decoder.ReadEvent(&event));
    out << "  event " << event.name << " time_ms=" << event.time_ms
        << " subject=" << event.subject.ToHex() << " insert_id=" << event.insert_id.ToHex()
        << " key_version=" << event.key_version << " policy_version=";
    PrintPolicyVersion(event.policy_version, out);
    out << " ";
    PrintProperties(event.properties, out);
    out << "\n";
  }
  ProfileUpdate update;
  for (uint32_t update_idx = 0; update_idx < header.profile_update_count; ++update_idx) {
    MP_RETURN_IF_ERROR(decoder.ReadProfileUpdate(&update));
    out << "  profile " << ProfileOperationName(update.operation)
        << " subject=" << update.subject.ToHex() << " group_key=" << update.group_key
        << " time_ms=" << update.time_ms << " key_version=" << update.key_version
        << " policy_version=";
    PrintPolicyVersion(update.policy_version, out);
    out << " ";
    PrintProperties(update.properties, out);
    out << "\n";
  }
  return Status::Ok();
}

Status PrintDeletion(std::string_view payload, std::ostream& out) {
  MP_ASSIGN_OR_RETURN(const Deletion deletion, DecodeDeletionPayload(payload));
  out << " deletion stored_at_ms=" << deletion.stored_at_ms << " project=" << deletion.project_id;
  if (!deletion.property_key.empty()) {
    out << " purge_property=" << deletion.property_key;
    if (!deletion.event_name.empty()) {
      out << " event_name=" << deletion.event_name;
    }
    out << "\n";
    return Status::Ok();
  }
  if (deletion.drop_before_ms.has_value()) {
    out << " drop_before_ms=" << *deletion.drop_before_ms;
    if (!deletion.event_name.empty()) {
      out << " event_name=" << deletion.event_name;
    }
    out << "\n";
    return Status::Ok();
  }
  out << " subjects=" << deletion.subjects.size() << "\n";
  const char* act = deletion.profiles_only ? "  expire profile subject=" : "  erase subject=";
  for (const Id128& subject : deletion.subjects) {
    out << act << subject.ToHex() << "\n";
  }
  return Status::Ok();
}

}  // namespace

Status DumpLogFile(FileSystem& file_system, const std::string& path, std::ostream& out) {
  MP_ASSIGN_OR_RETURN(const uint64_t size, file_system.FileSize(path));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system.OpenSequential(path));
  LogReader reader(file.get(), size);
  WalFileHeader header;
  bool all_zero = false;
  MP_ASSIGN_OR_RETURN(const LogReader::Outcome header_outcome,
                      reader.ReadFileHeader(&header, &all_zero));
  if (header_outcome != LogReader::Outcome::kRecord) {
    return Status::Corruption(path + ": file header is torn (" + std::to_string(size) + " bytes)");
  }
  out << path << ": minpanel log format " << header.format_version << ", file "
      << header.file_number << ", " << size << " bytes\n";
  while (true) {
    std::string_view payload;
    std::string reason;
    MP_ASSIGN_OR_RETURN(const LogReader::Outcome outcome, reader.ReadRecord(&payload, &reason));
    if (outcome == LogReader::Outcome::kEnd) {
      return Status::Ok();
    }
    if (outcome != LogReader::Outcome::kRecord) {
      out << "offset " << reader.record_offset() << ": " << reason << "\n";
      return Status::Corruption(path + " at offset " + std::to_string(reader.record_offset()) +
                                ": " + reason);
    }
    out << "record at offset " << reader.record_offset() << " (" << payload.size() << " bytes)";
    if (reader.record_type() == WalRecordType::kPadding) {
      out << " padding\n";
      continue;
    }
    if (reader.record_type() == WalRecordType::kDeletion) {
      MP_RETURN_IF_ERROR(PrintDeletion(payload, out));
      continue;
    }
    MP_RETURN_IF_ERROR(PrintRecord(payload, header.format_version, out));
  }
}

}  // namespace minpanel::store
