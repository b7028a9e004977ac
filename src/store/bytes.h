// Byte encodings shared by the store's file formats (the write-ahead log,
// docs/formats/wal.md, and the segments, docs/formats/segment.md): fixed-width
// little-endian integers, LEB128 varints, zigzag for signed values, and
// 128-bit ids as two fixed 64-bit halves (high first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/event.h"

namespace minpanel::store {

inline constexpr size_t kVarint64BytesMax = 10;

inline void PutFixed32(uint32_t value, std::string* out) {
  char bytes[4];
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    bytes[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
  }
  out->append(bytes, sizeof(bytes));
}

inline void PutFixed64(uint64_t value, std::string* out) {
  char bytes[8];
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
    bytes[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
  }
  out->append(bytes, sizeof(bytes));
}

// Precondition: 4 (8) readable bytes at `bytes`.
inline uint32_t GetFixed32(const char* bytes) {
  uint32_t value = 0;
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[byte_idx])) << (8 * byte_idx);
  }
  return value;
}

inline uint64_t GetFixed64(const char* bytes) {
  uint64_t value = 0;
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
    value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[byte_idx])) << (8 * byte_idx);
  }
  return value;
}

inline void PutVarint64(uint64_t value, std::string* out) {
  char bytes[kVarint64BytesMax];
  size_t length = 0;
  while (value >= 0x80) {
    bytes[length++] = static_cast<char>(value | 0x80);
    value >>= 7;
  }
  bytes[length++] = static_cast<char>(value);
  out->append(bytes, length);
}

inline void PutId(const Id128& id, std::string* out) {
  PutFixed64(id.high, out);
  PutFixed64(id.low, out);
}

inline uint64_t ZigZagEncode(int64_t value) {
  return (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
}

inline int64_t ZigZagDecode(uint64_t value) {
  return static_cast<int64_t>(value >> 1) ^ -static_cast<int64_t>(value & 1);
}

}  // namespace minpanel::store
