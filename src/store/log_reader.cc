#include "store/log_reader.h"

#include <algorithm>

#include "store/store.h"

namespace minpanel::store {
namespace {

uint32_t LoadFixed32(const char* bytes) {
  uint32_t value = 0;
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[byte_idx])) << (8 * byte_idx);
  }
  return value;
}

}  // namespace

Result<bool> LogReader::Fill(size_t bytes) {
  if (buffer_.size() - position_ >= bytes) {
    return true;
  }
  // Compacting only when short of bytes keeps the copying to once per chunk.
  buffer_.erase(0, position_);
  buffer_offset_ += position_;
  position_ = 0;
  while (buffer_.size() < bytes && bytes_read_ < limit_bytes_) {
    const uint64_t wanted = std::max<uint64_t>(kLogReadChunkBytes, bytes - buffer_.size());
    const uint64_t allowed = std::min<uint64_t>(wanted, limit_bytes_ - bytes_read_);
    MP_RETURN_IF_ERROR(file_->Read(static_cast<size_t>(allowed), &chunk_));
    if (chunk_.empty()) {
      break;
    }
    buffer_ += chunk_;
    bytes_read_ += chunk_.size();
  }
  return buffer_.size() >= bytes;
}

Result<LogReader::Outcome> LogReader::ReadFileHeader(WalFileHeader* header, bool* all_zero) {
  record_offset_ = 0;
  MP_ASSIGN_OR_RETURN(const bool whole, Fill(kWalFileHeaderBytes));
  const std::string_view bytes =
      std::string_view(buffer_).substr(position_, std::min(buffer_.size(), kWalFileHeaderBytes));
  *all_zero = std::all_of(bytes.begin(), bytes.end(), [](char byte) { return byte == 0; });
  if (!whole) {
    return Outcome::kTorn;
  }
  MP_ASSIGN_OR_RETURN(*header, DecodeWalFileHeader(bytes));
  position_ += kWalFileHeaderBytes;
  return Outcome::kRecord;
}

Result<LogReader::Outcome> LogReader::ReadProfileFileHeader(size_t bytes, std::string* header) {
  record_offset_ = 0;
  profile_file_ = true;
  MP_ASSIGN_OR_RETURN(const bool whole, Fill(bytes));
  if (!whole) {
    return Outcome::kTorn;
  }
  header->assign(buffer_, position_, bytes);
  position_ += bytes;
  return Outcome::kRecord;
}

Result<LogReader::Outcome> LogReader::ReadRecord(std::string_view* payload, std::string* reason) {
  record_offset_ = end_offset();
  MP_ASSIGN_OR_RETURN(const bool have_header, Fill(kWalRecordHeaderBytes));
  if (!have_header) {
    if (buffer_.size() == position_) {
      return Outcome::kEnd;
    }
    *reason = "file ends inside a record header";
    return Outcome::kTorn;
  }
  const char* header = buffer_.data() + position_;
  const uint32_t expected_crc = LoadFixed32(header);
  const uint32_t length = LoadFixed32(header + 4);
  const uint8_t type = static_cast<uint8_t>(header[8]);
  if (type != static_cast<uint8_t>(WalRecordType::kBatch) &&
      type != static_cast<uint8_t>(WalRecordType::kDeletion) &&
      type != static_cast<uint8_t>(WalRecordType::kPadding) &&
      !(profile_file_ && type == static_cast<uint8_t>(WalRecordType::kProfileGroupEnd))) {
    *reason = "unknown record type " + std::to_string(type);
    return Outcome::kCorrupt;
  }
  // Checked before reading so that a corrupt length cannot make us allocate.
  if (length > kLogRecordBytesMax) {
    *reason = "record length " + std::to_string(length) + " exceeds kLogRecordBytesMax";
    return Outcome::kCorrupt;
  }
  MP_ASSIGN_OR_RETURN(const bool whole, Fill(kWalRecordHeaderBytes + length));
  if (!whole) {
    *reason = "file ends inside a record of " + std::to_string(length) + " bytes";
    return Outcome::kTorn;
  }
  const std::string_view checked(buffer_.data() + position_ + 4, 5 + length);
  if (Crc32(0, checked) != expected_crc) {
    *reason = "record checksum mismatch";
    return Outcome::kCorrupt;
  }
  *payload = checked.substr(5);
  record_type_ = static_cast<WalRecordType>(type);
  position_ += kWalRecordHeaderBytes + length;
  return Outcome::kRecord;
}

}  // namespace minpanel::store
