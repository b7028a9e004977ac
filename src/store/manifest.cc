#include "store/manifest.h"

#include "store/deletion.h"
#include "store/segment_format.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

// magic (8) | version (u32)
constexpr size_t kManifestHeaderBytes = 12;
constexpr size_t kManifestCrcBytes = 4;
// project varint, path (length + 1 byte), bytes, rows, time: at least 6 bytes.
constexpr size_t kManifestSegmentBytesMin = 6;
// position (2), stored at (8), project (1), kind (1), count or time (1).
constexpr size_t kManifestDeletionBytesMin = 13;

}  // namespace

std::string EncodeManifest(const Manifest& manifest) {
  std::string out(kManifestMagic.begin(), kManifestMagic.end());
  PutFixed32(kManifestFormatVersion, &out);
  PutVarint64(manifest.log_position.file_number, &out);
  PutVarint64(manifest.log_position.offset, &out);
  PutVarint64(manifest.next_segment_number, &out);
  PutVarint64(manifest.segments.size(), &out);
  for (const ManifestSegment& segment : manifest.segments) {
    PutVarint64(segment.project_id, &out);
    PutVarint64(segment.path.size(), &out);
    out.append(segment.path);
    PutVarint64(segment.file_bytes, &out);
    PutVarint64(segment.row_count, &out);
    PutVarint64(ZigZagEncode(segment.flushed_at_ms), &out);
    PutVarint64(segment.log_end.file_number, &out);
    PutVarint64(segment.log_end.offset, &out);
  }
  PutVarint64(manifest.deletions.size(), &out);
  for (const Deletion& deletion : manifest.deletions) {
    PutVarint64(deletion.position.file_number, &out);
    PutVarint64(deletion.position.offset, &out);
    EncodeDeletionBody(deletion, &out);
  }
  PutFixed32(Crc32(0, out), &out);
  return out;
}

Result<Manifest> DecodeManifest(std::string_view bytes, const std::string& name) {
  const auto corrupt = [&name](const std::string& why) {
    return Status::Corruption(name + ": " + why);
  };
  if (bytes.size() < kManifestHeaderBytes + kManifestCrcBytes ||
      bytes.substr(0, kManifestMagic.size()) !=
          std::string_view(kManifestMagic.data(), kManifestMagic.size())) {
    return corrupt("not a manifest (bad magic or too short: " + std::to_string(bytes.size()) +
                   " bytes)");
  }
  ByteReader trailer(bytes.substr(bytes.size() - kManifestCrcBytes));
  uint32_t stored_crc = 0;
  MP_RETURN_IF_ERROR(trailer.ReadFixed32("crc", &stored_crc));
  const std::string_view covered = bytes.substr(0, bytes.size() - kManifestCrcBytes);
  ByteReader reader(covered.substr(kManifestMagic.size()));
  uint32_t version = 0;
  MP_RETURN_IF_ERROR(reader.ReadFixed32("version", &version));
  if (version == 0 || version > kManifestFormatVersion) {
    return corrupt("format version " + std::to_string(version) + " is newer than this binary (" +
                   std::to_string(kManifestFormatVersion) + ")");
  }
  if (Crc32(0, covered) != stored_crc) {
    return corrupt("checksum mismatch");
  }
  Manifest manifest;
  const Status status = [&]() -> Status {
    MP_RETURN_IF_ERROR(reader.ReadVarint64("log file number", &manifest.log_position.file_number));
    MP_RETURN_IF_ERROR(reader.ReadVarint64("log offset", &manifest.log_position.offset));
    MP_RETURN_IF_ERROR(reader.ReadVarint64("next segment number", &manifest.next_segment_number));
    uint64_t count = 0;
    MP_RETURN_IF_ERROR(
        reader.ReadCount("segment count", kManifestSegmentBytesMin, kManifestSegmentsMax, &count));
    manifest.segments.resize(count);
    for (ManifestSegment& segment : manifest.segments) {
      MP_RETURN_IF_ERROR(reader.ReadVarint32("project id", &segment.project_id));
      std::string_view path;
      MP_RETURN_IF_ERROR(reader.ReadString("segment path", &path));
      if (path.empty() || path.find("..") != std::string_view::npos || path.front() == '/') {
        return Status::Corruption("invalid segment path");
      }
      segment.path = std::string(path);
      MP_RETURN_IF_ERROR(reader.ReadVarint64("file bytes", &segment.file_bytes));
      MP_RETURN_IF_ERROR(reader.ReadVarint64("row count", &segment.row_count));
      MP_RETURN_IF_ERROR(reader.ReadZigZag("flushed at", &segment.flushed_at_ms));
      if (version == 1) {
        segment.log_end = manifest.log_position;
        continue;
      }
      MP_RETURN_IF_ERROR(reader.ReadVarint64("segment log end file", &segment.log_end.file_number));
      MP_RETURN_IF_ERROR(reader.ReadVarint64("segment log end offset", &segment.log_end.offset));
    }
    if (version >= 2) {
      uint64_t deletions = 0;
      MP_RETURN_IF_ERROR(reader.ReadCount("deletion count", kManifestDeletionBytesMin,
                                          kManifestDeletionsMax, &deletions));
      manifest.deletions.resize(deletions);
      for (Deletion& deletion : manifest.deletions) {
        MP_RETURN_IF_ERROR(
            reader.ReadVarint64("deletion log file", &deletion.position.file_number));
        MP_RETURN_IF_ERROR(reader.ReadVarint64("deletion log offset", &deletion.position.offset));
        MP_RETURN_IF_ERROR(DecodeDeletionBody(&reader, &deletion));
      }
    }
    return reader.ExpectEnd("manifest");
  }();
  if (!status.ok()) {
    return corrupt(status.message());
  }
  return manifest;
}

}  // namespace minpanel::store
