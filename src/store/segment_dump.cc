// DumpSegmentFile: a readable rendering of every part of a segment file, for
// `minpanel debug dump`; DumpStoreFile picks the log or segment dumper by
// the file's magic.
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "store/dump_print.h"
#include "store/manifest.h"
#include "store/profile_file.h"
#include "store/segment.h"
#include "store/store.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

void PrintTagMask(uint8_t tag_mask, std::ostream& out) {
  const char* separator = "";
  for (uint8_t tag = 1; tag < kPropertyTagCount; ++tag) {
    if ((tag_mask >> tag) & 1) {
      out << separator << PropertyTagName(static_cast<PropertyTag>(tag));
      separator = "|";
    }
  }
}

void PrintChunk(std::string_view label, const ChunkRef& ref, std::ostream& out) {
  out << "  chunk " << label << ": offset " << ref.offset << ", " << SegmentCodecName(ref.codec)
      << ", stored " << ref.stored_bytes << " bytes, raw " << ref.raw_bytes << " bytes, crc32 "
      << ref.crc32;
}

std::string_view EncodingName(StringEncoding encoding) {
  switch (encoding) {
    case StringEncoding::kNone:
      return "none";
    case StringEncoding::kDictionary:
      return "dictionary";
    case StringEncoding::kPlain:
      return "plain";
  }
  return "unknown";
}

void PrintIndexes(const SegmentReader& reader, std::ostream& out) {
  const SegmentSummary& summary = reader.summary();
  out << "segment: project " << summary.project_id << ", " << summary.row_count << " rows, "
      << summary.subject_count << " subjects, time " << summary.time_min_ms << " .. "
      << summary.time_max_ms << ", subjects " << summary.subject_min.ToHex() << " .. "
      << summary.subject_max.ToHex() << ", " << reader.block_count() << " blocks of at most "
      << summary.block_rows_max << " rows\n";
  if (summary.fold_generation != 0 || summary.stored_subject_runs != 0) {
    out << "folded: generation " << summary.fold_generation << ", "
        << summary.stored_subject_runs << " stored subject runs\n";
  }
  out << "event names (" << reader.event_names().size() << "):\n";
  for (size_t code = 0; code < reader.event_names().size(); ++code) {
    out << "  " << code << " ";
    PrintString(reader.event_names()[code].name, out);
    out << " rows " << reader.event_names()[code].row_count << "\n";
  }
  const SegmentFooter& footer = reader.footer();
  out << "property columns (" << footer.columns.size() << "):\n";
  for (size_t column_idx = 0; column_idx < footer.columns.size(); ++column_idx) {
    const FooterColumn& column = footer.columns[column_idx];
    out << "  " << column_idx << " ";
    PrintString(column.key, out);
    out << " rows " << column.row_count << ", tags ";
    PrintTagMask(column.tag_mask, out);
    out << ", strings " << EncodingName(column.encoding);
    if (column.encoding == StringEncoding::kDictionary) {
      out << " of " << column.dictionary_size << "\n";
      PrintChunk("dictionary", column.dictionary, out);
    }
    out << "\n";
  }
  out << "map keys (" << footer.map_keys.size() << "):\n";
  for (size_t key_idx = 0; key_idx < footer.map_keys.size(); ++key_idx) {
    out << "  " << key_idx << " ";
    PrintString(footer.map_keys[key_idx].key, out);
    out << " rows " << footer.map_keys[key_idx].row_count << ", tags ";
    PrintTagMask(footer.map_keys[key_idx].tag_mask, out);
    out << "\n";
  }
}

Status PrintDictionaries(const SegmentReader& reader, std::ostream& out) {
  for (const FooterColumn& column : reader.footer().columns) {
    if (column.encoding != StringEncoding::kDictionary) {
      continue;
    }
    MP_ASSIGN_OR_RETURN(const std::shared_ptr<const SegmentDictionary> dictionary,
                        reader.ReadDictionary(column.key));
    out << "dictionary of ";
    PrintString(column.key, out);
    out << ":";
    for (size_t code = 0; code < dictionary->entries.size(); ++code) {
      out << " " << code << "=";
      PrintString(dictionary->entries[code], out);
    }
    out << "\n";
  }
  return Status::Ok();
}

Status PrintFixedColumns(const SegmentReader& reader, size_t block_idx, std::ostream& out) {
  const std::vector<ChunkRef>& chunks = reader.footer().blocks[block_idx].chunks;
  std::vector<int64_t> times;
  PrintChunk("time", chunks[static_cast<size_t>(FixedColumn::kTime)], out);
  out << "\n   ";
  MP_RETURN_IF_ERROR(reader.ReadTimes(block_idx, &times));
  for (const int64_t time_ms : times) {
    out << " " << time_ms;
  }
  out << "\n";
  SubjectRuns runs;
  PrintChunk("subject", chunks[static_cast<size_t>(FixedColumn::kSubject)], out);
  out << "\n   ";
  MP_RETURN_IF_ERROR(reader.ReadSubjects(block_idx, &runs));
  for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
    out << " " << runs.subjects[run_idx].ToHex() << "x" << runs.run_lengths[run_idx];
  }
  out << "\n";
  std::vector<StoredSubjectRun> stored_runs;
  MP_RETURN_IF_ERROR(reader.ReadStoredSubjects(block_idx, &stored_runs));
  if (!stored_runs.empty()) {
    out << "  stored subjects (footer)\n   ";
    for (const StoredSubjectRun& run : stored_runs) {
      out << " rows " << run.row_begin << "+" << run.row_count << " " << run.subject.ToHex();
    }
    out << "\n";
  }
  std::vector<Id128> insert_ids;
  PrintChunk("insert_id", chunks[static_cast<size_t>(FixedColumn::kInsertId)], out);
  out << "\n   ";
  MP_RETURN_IF_ERROR(reader.ReadInsertIds(block_idx, &insert_ids));
  for (const Id128& id : insert_ids) {
    out << " " << id.ToHex();
  }
  out << "\n";
  std::vector<uint32_t> numbers;
  PrintChunk("key_version", chunks[static_cast<size_t>(FixedColumn::kKeyVersion)], out);
  out << "\n   ";
  MP_RETURN_IF_ERROR(reader.ReadKeyVersions(block_idx, &numbers));
  for (const uint32_t version : numbers) {
    out << " " << version;
  }
  out << "\n";
  PrintChunk("name", chunks[static_cast<size_t>(FixedColumn::kName)], out);
  out << "\n   ";
  MP_RETURN_IF_ERROR(reader.ReadNameCodes(block_idx, &numbers));
  for (const uint32_t code : numbers) {
    out << " " << code;
  }
  out << "\n";
  return Status::Ok();
}

// The directory of a granular chunk (docs/formats/segment.md, "Granules").
Status PrintGranules(const SegmentReader& reader, size_t block_idx, size_t chunk_idx,
                     std::ostream& out) {
  std::vector<GranuleRef> granules;
  MP_RETURN_IF_ERROR(reader.ReadGranuleDirectory(block_idx, chunk_idx, &granules));
  for (size_t granule_idx = 0; granule_idx < granules.size(); ++granule_idx) {
    const GranuleRef& granule = granules[granule_idx];
    out << "    granule " << granule_idx << ": rows " << granule.row_begin << " .. "
        << granule.row_begin + granule.row_count - 1 << ", " << granule.present_count
        << " present, " << SegmentCodecName(granule.codec) << ", stored " << granule.stored_bytes
        << " bytes, raw " << granule.raw_bytes << " bytes\n";
  }
  return Status::Ok();
}

Status PrintPropertyColumns(const SegmentReader& reader, size_t block_idx, std::ostream& out) {
  const SegmentFooter& footer = reader.footer();
  const std::vector<ChunkRef>& chunks = footer.blocks[block_idx].chunks;
  PropertyColumn column;
  auto print_rows = [&]() {
    for (size_t row_idx = 0; row_idx < column.size(); ++row_idx) {
      if (column.tags[row_idx] != PropertyTag::kAbsent) {
        out << "    row " << row_idx << ": ";
        PrintValue(column.ValueAt(row_idx), out);
        if (!column.string_codes.empty() && column.tags[row_idx] == PropertyTag::kString) {
          out << " (code " << column.string_codes[row_idx] << ")";
        }
        out << "\n";
      }
    }
  };
  for (size_t column_idx = 0; column_idx < footer.columns.size(); ++column_idx) {
    const ChunkRef& ref = chunks[kFixedColumnCount + column_idx];
    PrintChunk("property " + footer.columns[column_idx].key, ref, out);
    out << ", " << ref.present_count << " present\n";
    MP_RETURN_IF_ERROR(PrintGranules(reader, block_idx, kFixedColumnCount + column_idx, out));
    MP_RETURN_IF_ERROR(reader.ReadProperty(block_idx, footer.columns[column_idx].key, &column));
    print_rows();
  }
  PrintChunk("properties map", chunks.back(), out);
  out << ", " << chunks.back().present_count << " entries\n";
  MP_RETURN_IF_ERROR(PrintGranules(reader, block_idx, chunks.size() - 1, out));
  for (const FooterMapKey& key : footer.map_keys) {
    MP_RETURN_IF_ERROR(reader.ReadProperty(block_idx, key.key, &column));
    out << "   key ";
    PrintString(key.key, out);
    out << "\n";
    print_rows();
  }
  return Status::Ok();
}

// Version 4: the chunk after the map; older files have none (every row's
// policy version unknown).
Status PrintPolicyVersions(const SegmentReader& reader, size_t block_idx, std::ostream& out) {
  const SegmentFooter& footer = reader.footer();
  if (!footer.has_policy_versions) {
    out << "  no policy_version chunk (format " << reader.summary().format_version
        << "): policy versions unknown\n";
    return Status::Ok();
  }
  PrintChunk("policy_version", footer.blocks[block_idx].policy_versions, out);
  out << "\n   ";
  std::vector<uint32_t> versions;
  MP_RETURN_IF_ERROR(reader.ReadPolicyVersions(block_idx, &versions));
  for (const uint32_t version : versions) {
    out << " ";
    PrintPolicyVersion(version, out);
  }
  out << "\n";
  return Status::Ok();
}

Status PrintBlock(const SegmentReader& reader, size_t block_idx, std::ostream& out) {
  const SegmentBlockInfo& block = reader.block(block_idx);
  out << "block " << block_idx << ": rows " << block.first_row << " .. "
      << block.first_row + block.row_count - 1 << ", time " << block.time_min_ms << " .. "
      << block.time_max_ms << ", subjects " << block.subject_first.ToHex() << " .. "
      << block.subject_last.ToHex() << " in " << block.subject_run_count << " runs, names";
  for (uint32_t code = 0; code < reader.event_names().size(); ++code) {
    if (reader.BlockHoldsName(block_idx, code)) {
      out << " " << code;
    }
  }
  out << "\n";
  MP_RETURN_IF_ERROR(PrintFixedColumns(reader, block_idx, out));
  MP_RETURN_IF_ERROR(PrintPropertyColumns(reader, block_idx, out));
  MP_RETURN_IF_ERROR(PrintPolicyVersions(reader, block_idx, out));
  std::vector<Event> events;
  MP_RETURN_IF_ERROR(reader.ReadEvents(block_idx, &events));
  for (size_t row_idx = 0; row_idx < events.size(); ++row_idx) {
    const Event& event = events[row_idx];
    out << "  row " << block.first_row + row_idx << ": ";
    PrintString(event.name, out);
    out << " time_ms=" << event.time_ms << " subject=" << event.subject.ToHex()
        << " insert_id=" << event.insert_id.ToHex() << " key_version=" << event.key_version
        << " policy_version=";
    PrintPolicyVersion(event.policy_version, out);
    out << " {";
    const char* separator = "";
    for (const Property& property : event.properties) {
      out << separator;
      PrintString(property.key, out);
      out << ": ";
      PrintValue(property.value, out);
      separator = ", ";
    }
    out << "}\n";
  }
  return Status::Ok();
}

Status DumpReader(const SegmentReader& reader, std::ostream& out) {
  PrintIndexes(reader, out);
  MP_RETURN_IF_ERROR(PrintDictionaries(reader, out));
  for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
    MP_RETURN_IF_ERROR(PrintBlock(reader, block_idx, out));
  }
  return Status::Ok();
}

}  // namespace

Status DumpSegmentFile(FileSystem& file_system, const std::string& path, std::ostream& out) {
  MP_ASSIGN_OR_RETURN(std::string image, file_system.ReadFile(path));
  out << path << ": " << image.size() << " bytes\n";
  if (image.size() >= kSegmentHeaderBytes) {
    const auto version =
        DecodeSegmentHeader(std::string_view(image).substr(0, kSegmentHeaderBytes));
    if (version.ok()) {
      out << "header: minpanel segment format " << *version << "\n";
    }
  }
  if (image.size() >= kSegmentHeaderBytes + kSegmentTrailerBytes) {
    const auto trailer =
        DecodeSegmentTrailer(std::string_view(image).substr(image.size() - kSegmentTrailerBytes));
    if (trailer.ok()) {
      out << "trailer: footer of " << trailer->footer_bytes << " bytes at offset "
          << image.size() - kSegmentTrailerBytes - trailer->footer_bytes << ", crc32 "
          << trailer->footer_crc32 << ", format " << trailer->format_version << "\n";
    }
  }
  auto reader = SegmentReader::Open(std::move(image), path);
  Status status = reader.ok() ? DumpReader(**reader, out) : reader.status();
  if (!status.ok()) {
    out << "error: " << status.message() << "\n";
  }
  return status;
}

Status DumpManifestFile(FileSystem& file_system, const std::string& path, std::ostream& out) {
  MP_ASSIGN_OR_RETURN(const std::string bytes, file_system.ReadFile(path));
  MP_ASSIGN_OR_RETURN(const Manifest manifest, DecodeManifest(bytes, path));
  out << "manifest " << path << ": version " << kManifestFormatVersion << ", log position file "
      << manifest.log_position.file_number << " offset " << manifest.log_position.offset
      << ", next segment number " << manifest.next_segment_number << ", "
      << manifest.segments.size() << " segments, " << manifest.deletions.size() << " deletions\n";
  for (const ManifestSegment& segment : manifest.segments) {
    out << "  segment " << segment.path << " project " << segment.project_id << " rows "
        << segment.row_count << " bytes " << segment.file_bytes << " flushed_at_ms "
        << segment.flushed_at_ms << " log_end file " << segment.log_end.file_number << " offset "
        << segment.log_end.offset << "\n";
  }
  for (const Deletion& deletion : manifest.deletions) {
    out << "  deletion at log file " << deletion.position.file_number << " offset "
        << deletion.position.offset << " project " << deletion.project_id << " stored_at_ms "
        << deletion.stored_at_ms;
    if (!deletion.property_key.empty()) {
      out << " purge_property " << deletion.property_key;
      if (!deletion.event_name.empty()) {
        out << " event_name " << deletion.event_name;
      }
      out << "\n";
      continue;
    }
    if (deletion.drop_before_ms.has_value()) {
      out << " drop_before_ms " << *deletion.drop_before_ms;
      if (!deletion.event_name.empty()) {
        out << " event_name " << deletion.event_name;
      }
      out << "\n";
      continue;
    }
    out << " subjects " << deletion.subjects.size() << "\n";
    const char* act = deletion.profiles_only ? "    expire profile subject " : "    erase subject ";
    for (const Id128& subject : deletion.subjects) {
      out << act << subject.ToHex() << "\n";
    }
  }
  return Status::Ok();
}

Status DumpStoreFile(FileSystem& file_system, const std::string& path, std::ostream& out) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, file_system.OpenSequential(path));
  std::string start;
  MP_RETURN_IF_ERROR(file->Read(kSegmentMagic.size(), &start));
  if (start.size() == kSegmentMagic.size() &&
      std::memcmp(start.data(), kSegmentMagic.data(), kSegmentMagic.size()) == 0) {
    return DumpSegmentFile(file_system, path, out);
  }
  if (start.size() == kManifestMagic.size() &&
      std::memcmp(start.data(), kManifestMagic.data(), kManifestMagic.size()) == 0) {
    return DumpManifestFile(file_system, path, out);
  }
  if (start.size() == kProfileFileMagic.size() &&
      std::memcmp(start.data(), kProfileFileMagic.data(), kProfileFileMagic.size()) == 0) {
    return DumpProfileFile(file_system, path, out);
  }
  return DumpLogFile(file_system, path, out);
}

}  // namespace minpanel::store
