// Internal to the audit module: the small pieces of the log's byte format
// (docs/formats/audit.md) that the reader and the key index share.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace minpanel::audit::internal {

inline constexpr size_t kFrameHashBytes = 32;  // audit.h's kHashBytes (not included here)

inline uint32_t ReadU32(std::string_view bytes, size_t offset) {
  uint32_t value = 0;
  for (size_t byte_idx = 0; byte_idx < 4; ++byte_idx) {
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + byte_idx]))
             << (8 * byte_idx);
  }
  return value;
}

inline uint64_t ReadU64(std::string_view bytes, size_t offset) {
  uint64_t value = 0;
  for (size_t byte_idx = 0; byte_idx < 8; ++byte_idx) {
    value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[offset + byte_idx]))
             << (8 * byte_idx);
  }
  return value;
}

inline void AppendU32(uint32_t value, std::string* out) {
  for (size_t byte_idx = 0; byte_idx < 4; ++byte_idx) {
    out->push_back(static_cast<char>((value >> (8 * byte_idx)) & 0xff));
  }
}

inline void AppendU64(uint64_t value, std::string* out) {
  for (size_t byte_idx = 0; byte_idx < 8; ++byte_idx) {
    out->push_back(static_cast<char>((value >> (8 * byte_idx)) & 0xff));
  }
}

// In a written-ahead log (version 3 or 4), whether a record frame whose
// hash does not match is an append cut short in zeroed space (a torn tail)
// rather than a broken record: the bytes after it (`after`, up to 4; none
// where the file ends) are zero, and it holds a zero byte where a written
// frame has none — in its payload (JSON, which never holds one) or as its
// last byte (the hash, where an append cut inside it leaves zeros).
inline bool TornInZeros(std::string_view frame, std::string_view after) {
  if (after.find_first_not_of('\0') != std::string_view::npos || frame.size() <= 4) {
    return false;
  }
  const size_t hash_start = frame.size() - kFrameHashBytes;
  const std::string_view payload = frame.substr(4, hash_start > 4 ? hash_start - 4 : 0);
  return payload.find('\0') != std::string_view::npos || frame.back() == '\0';
}

// The seq a payload starts with ({"seq":N,... as EncodeEntry writes it);
// nullopt when it does not start so.
inline std::optional<uint64_t> LeadingSeq(std::string_view payload) {
  constexpr std::string_view kPrefix = "{\"seq\":";
  if (!payload.starts_with(kPrefix)) {
    return std::nullopt;
  }
  uint64_t seq = 0;
  const char* begin = payload.data() + kPrefix.size();
  const char* end = payload.data() + payload.size();
  const auto parsed = std::from_chars(begin, end, seq);
  if (parsed.ec != std::errc() || parsed.ptr == begin || parsed.ptr == end || *parsed.ptr != ',') {
    return std::nullopt;
  }
  return seq;
}

}  // namespace minpanel::audit::internal
