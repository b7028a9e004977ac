// LogReader: reads one write-ahead log file (docs/formats/wal.md) front to
// back, in bounded chunks, up to a byte limit (the snapshot's durable size).
// It trusts nothing it reads: a short file or a bad checksum is reported as
// an outcome with the offset where it starts, for the caller to truncate or
// fail on. Thread-compatible; one reader per thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/core.h"
#include "store/wal_format.h"

namespace minpanel::store {

// Bytes asked of the file per read; a record larger than this is read whole.
inline constexpr size_t kLogReadChunkBytes = 1u << 20;

class LogReader {
 public:
  enum class Outcome : uint8_t {
    kRecord,   // a whole, checksummed record
    kEnd,      // the file ends exactly at a record boundary
    kTorn,     // the file ends inside a record (or its header)
    kCorrupt,  // bad checksum, length or type
  };

  // `file` must outlive the reader; nothing past `limit_bytes` is read.
  LogReader(SequentialFile* file, uint64_t limit_bytes) : file_(file), limit_bytes_(limit_bytes) {}

  // Reads the file header. kTorn when the file is shorter than a header.
  // Status errors are I/O errors and header corruption.
  Result<Outcome> ReadFileHeader(WalFileHeader* header, bool* all_zero);
  // For a profile file (profile_file.h), whose records are framed as the
  // log's: reads its first `bytes` bytes undecoded into `header` (kTorn
  // when shorter), and from then on accepts kProfileGroupEnd records.
  Result<Outcome> ReadProfileFileHeader(size_t bytes, std::string* header);

  // Reads the next record. On kRecord `payload` points into the reader's
  // buffer and stays valid until the next call. On kTorn and kCorrupt
  // `reason` says why. Status errors are I/O errors only.
  Result<Outcome> ReadRecord(std::string_view* payload, std::string* reason);

  // The type of the last record read (kRecord).
  WalRecordType record_type() const { return record_type_; }
  // File offset where the last record read (or attempted) starts.
  uint64_t record_offset() const { return record_offset_; }
  // File offset just past the last whole record.
  uint64_t end_offset() const { return buffer_offset_ + position_; }

 private:
  // Makes `bytes` unread bytes available; false when the file (or limit) ends first.
  Result<bool> Fill(size_t bytes);

  SequentialFile* file_;
  uint64_t limit_bytes_;
  uint64_t bytes_read_ = 0;
  std::string buffer_;
  std::string chunk_;
  size_t position_ = 0;         // within buffer_
  uint64_t buffer_offset_ = 0;  // file offset of buffer_[0]
  uint64_t record_offset_ = 0;
  WalRecordType record_type_ = WalRecordType::kBatch;
  bool profile_file_ = false;
};

}  // namespace minpanel::store
