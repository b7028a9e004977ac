// The write-ahead log's byte layout (docs/formats/wal.md) and the codec that
// turns batches into record payloads and back. Internal to the store module.
//
// Encoding functions append to a caller-owned std::string; decoding functions
// read from a WalDecoder over bytes that are never trusted: every length and
// count is checked against what remains, and a malformed payload is a
// Corruption status, never a crash. All functions are thread-compatible.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/core.h"

namespace minpanel::store {

// "MPWAL\r\n\x1a": the line endings catch text-mode mangling, 0x1a stops `type`.
inline constexpr std::array<char, 8> kWalMagic = {'M', 'P', 'W', 'A', 'L', '\r', '\n', '\x1a'};
// Version 2 adds each event's policy version, version 3 each profile
// update's (docs/formats/wal.md); older files are still read, the versions
// they lack unknown.
inline constexpr uint32_t kWalFormatVersion = 3;
inline constexpr uint32_t kWalPolicyVersionFormatVersion = 2;  // the first with events' versions
inline constexpr uint32_t kWalProfilePolicyVersionFormatVersion = 3;  // ... with profile updates'
// magic (8) | format version (u32) | file number (u64) | crc32 of the first 20 bytes (u32)
inline constexpr size_t kWalFileHeaderBytes = 24;
// crc32 (u32) | payload length (u32) | record type (u8)
inline constexpr size_t kWalRecordHeaderBytes = 9;
// stored_at_ms (fixed64) and three varint32 at most five bytes each.
inline constexpr size_t kWalPayloadHeaderBytesMax = 8 + 3 * 5;

enum class WalRecordType : uint8_t {
  // Zero is never written, so zero-filled tails (after a crash) read as corrupt.
  kBatch = 1,
  // Erasure of subjects or a time bound (src/store/deletion.h).
  kDeletion = 2,
  // Zeros that keep the offsets of the records after it when a purge
  // rewrites a log file without erased data.
  kPadding = 3,
  // Only in profile files (docs/formats/profiles.md): the end of a group,
  // with the log position it covers. A log file holding one is corrupt.
  kProfileGroupEnd = 4,
};

// Property value tags on disk; deliberately not tied to Value::Type's numbering.
enum class WalValueTag : uint8_t {
  kNull = 0,
  kBool = 1,
  kInt = 2,
  kDouble = 3,
  kString = 4,
  kStringList = 5,
};

struct WalFileHeader {
  uint32_t format_version = kWalFormatVersion;
  uint64_t file_number = 0;
};

// `version`: the newest, except when a purge rewrites a file of an older
// version (its records keep their encoding and their offsets).
std::string EncodeWalFileHeader(uint64_t file_number, uint32_t version = kWalFormatVersion);
// Checks magic, version and checksum; `bytes` holds exactly kWalFileHeaderBytes.
Result<WalFileHeader> DecodeWalFileHeader(std::string_view bytes);

// zlib's CRC-32 (ISO-HDLC polynomial, computed by ISA-L), chainable:
// Crc32(Crc32(0, a), b) == Crc32(0, a + b).
uint32_t Crc32(uint32_t crc, std::string_view bytes);
// The CRC of a + b from the CRCs of a and b and the length of b.
uint32_t Crc32Combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b);

// Appends one event / profile update (without framing) to `out`, as a file
// of `version` holds it (version 1 has no policy version; versions 1 and 2
// none for a profile update).
void EncodeEvent(const Event& event, std::string* out, uint32_t version = kWalFormatVersion);
void EncodeProfileUpdate(const ProfileUpdate& update, std::string* out,
                         uint32_t version = kWalFormatVersion);

struct WalPayloadHeader {
  int64_t stored_at_ms = 0;
  uint32_t project_id = 0;
  uint32_t event_count = 0;
  uint32_t profile_update_count = 0;
};
// `extra_bytes` (at most kPayloadHeaderExtraBytesMax) makes the header that
// many bytes longer than needed by writing its varints long (groups of zero
// bits after the value's last one, which every decoder reads as the same
// value): how a purge's rewrite of a record keeps its length when it shrank
// by less than a padding record (docs/formats/wal.md, "Padding").
inline constexpr size_t kPayloadHeaderExtraBytesMax = 15;
void EncodePayloadHeader(const WalPayloadHeader& header, std::string* out,
                         size_t extra_bytes = 0);

// Reads a payload front to back. Every Read* returns Corruption naming the
// field when the bytes run out or hold an invalid value.
class WalDecoder {
 public:
  // `version`: the format version of the file the payload is from.
  explicit WalDecoder(std::string_view bytes, uint32_t version = kWalFormatVersion)
      : bytes_(bytes), version_(version) {}

  Status ReadPayloadHeader(WalPayloadHeader* header);
  // Overwrites `event` (reusing its capacity, so a scan allocates little).
  Status ReadEvent(Event* event);
  Status ReadProfileUpdate(ProfileUpdate* update);
  bool empty() const { return position_ == bytes_.size(); }
  size_t position() const { return position_; }

 private:
  Status ReadVarint64(std::string_view field, uint64_t* value);
  Status ReadVarint32(std::string_view field, uint32_t* value);
  Status ReadFixed64(std::string_view field, uint64_t* value);
  Status ReadByte(std::string_view field, uint8_t* value);
  Status ReadId(std::string_view field, Id128* id);
  Status ReadString(std::string_view field, std::string* value);
  Status ReadValue(Value* value);
  Status ReadProperties(Properties* properties);
  size_t remaining() const { return bytes_.size() - position_; }

  std::string_view bytes_;
  uint32_t version_;
  size_t position_ = 0;
};

}  // namespace minpanel::store
