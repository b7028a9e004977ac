// Helpers for the ingest tests: encoders that build wire payloads.
#pragma once

#include <sodium.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace minpanel::ingest::testing {

// 2026-11-26T09:31:50Z, a few seconds after the SDK captures were taken.
inline constexpr int64_t kNowMs = 1795685510000;

inline std::string Base64(std::string_view bytes, int variant = sodium_base64_VARIANT_ORIGINAL) {
  std::string encoded(sodium_base64_ENCODED_LEN(bytes.size(), variant), '\0');
  sodium_bin2base64(encoded.data(), encoded.size(),
                    reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), variant);
  encoded.resize(encoded.size() - 1);  // the terminating NUL
  return encoded;
}

// window_bits: 16 + 15 for gzip, 15 for zlib, -15 for raw deflate.
inline std::string Compress(std::string_view bytes, int window_bits) {
  z_stream stream{};
  deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&stream, bytes.size()) + 32, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

inline std::string Gzip(std::string_view bytes) { return Compress(bytes, 16 + MAX_WBITS); }

// Percent-encodes everything outside the URL unreserved set.
inline std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
  }
  return out;
}

}  // namespace minpanel::ingest::testing
