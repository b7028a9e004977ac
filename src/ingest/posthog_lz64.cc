// LZString decompression; the algorithm is lz-string's _decompress with a
// reset value of 32 (six bits a base64 character, read from the top).
#include "ingest/posthog_lz64.h"

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

namespace minpanel::ingest::internal {
namespace {

constexpr int kResetValue = 32;
constexpr uint32_t kNoPrefix = std::numeric_limits<uint32_t>::max();
// Code widths never pass 32 bits in a stream of kLz64InputBytesMax
// characters; a wider one is not LZString.
constexpr int kCodeBitsMax = 31;

constexpr std::array<int8_t, 256> MakeBase64Values() {
  std::array<int8_t, 256> values{};
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t value = 0; value < kAlphabet.size(); ++value) {
    values[static_cast<uint8_t>(kAlphabet[value])] = static_cast<int8_t>(value);
  }
  values[' '] = 62;  // a '+' a form decoder turned into a space
  return values;
}
constexpr std::array<int8_t, 256> kBase64Values = MakeBase64Values();

Status NotLz64() { return Status::InvalidArgument("data: not valid lz64 (LZString base64)"); }

// Reads the stream's bits as lz-string does: each character gives six
// bits, most significant first; reading past the end gives zeros (and
// `exhausted` tells the caller, which lz-string checks once per code).
class BitReader {
 public:
  explicit BitReader(std::string_view text) : text_(text) { Load(0); }

  uint32_t Read(int bits) {
    uint32_t result = 0;
    for (int bit_idx = 0; bit_idx < bits; ++bit_idx) {
      if ((value_ & position_) != 0) {
        result |= 1U << bit_idx;
      }
      position_ >>= 1;
      if (position_ == 0) {
        position_ = kResetValue;
        Load(index_++);
      }
    }
    return result;
  }

  // lz-string's `data.index > length`.
  bool exhausted() const { return index_ > text_.size(); }

 private:
  // Characters outside the alphabet (and '=') read as zero, as in lz-string.
  void Load(size_t char_idx) {
    value_ = char_idx < text_.size() ? kBase64Values[static_cast<uint8_t>(text_[char_idx])] : 0;
  }

  std::string_view text_;
  int value_ = 0;
  int position_ = kResetValue;
  size_t index_ = 1;
};

struct Entry {
  uint32_t prefix = kNoPrefix;  // the entry this one extends
  uint32_t length = 0;          // in UTF-16 units
  char16_t last = 0;
  char16_t first = 0;
};

class Decoder {
 public:
  explicit Decoder(size_t units_max) : units_max_(units_max) {
    entries_.resize(3);  // codes 0, 1 and 2 are commands, never entries
  }

  uint32_t AddLiteral(char16_t unit) {
    entries_.push_back(Entry{kNoPrefix, 1, unit, unit});
    return static_cast<uint32_t>(entries_.size() - 1);
  }
  uint32_t AddExtension(uint32_t prefix, char16_t last) {
    const Entry& base = entries_[prefix];
    entries_.push_back(Entry{prefix, base.length + 1, last, base.first});
    return static_cast<uint32_t>(entries_.size() - 1);
  }
  size_t size() const { return entries_.size(); }
  const Entry& entry(uint32_t code) const { return entries_[code]; }

  // Appends entry `code`'s units, walking its links backwards.
  Status Emit(uint32_t code) {
    const uint32_t length = entries_[code].length;
    if (units_.size() + length > units_max_) {
      return Status::ResourceExhausted("data: lz64 output over the limit of " +
                                       std::to_string(units_max_) + " units");
    }
    units_.resize(units_.size() + length);
    size_t write = units_.size();
    for (uint32_t link = code; link != kNoPrefix; link = entries_[link].prefix) {
      units_[--write] = entries_[link].last;
    }
    return Status::Ok();
  }
  std::u16string& units() { return units_; }

 private:
  size_t units_max_;
  std::vector<Entry> entries_;
  std::u16string units_;
};

void AppendUtf8(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    out->push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

Result<std::string> ToUtf8(const std::u16string& units, size_t output_bytes_max) {
  std::string out;
  out.reserve(units.size());
  for (size_t unit_idx = 0; unit_idx < units.size(); ++unit_idx) {
    uint32_t code_point = units[unit_idx];
    if (code_point >= 0xD800 && code_point <= 0xDBFF && unit_idx + 1 < units.size() &&
        units[unit_idx + 1] >= 0xDC00 && units[unit_idx + 1] <= 0xDFFF) {
      code_point = 0x10000 + ((code_point - 0xD800) << 10) + (units[++unit_idx] - 0xDC00);
    } else if (code_point >= 0xD800 && code_point <= 0xDFFF) {
      return Status::InvalidArgument("data: lz64 decodes to invalid UTF-16 (a lone surrogate)");
    }
    AppendUtf8(code_point, &out);
    if (out.size() > output_bytes_max) {
      return Status::ResourceExhausted("data: lz64 output over the limit of " +
                                       std::to_string(output_bytes_max) + " bytes");
    }
  }
  return out;
}

// One literal: 8 bits (code 0) or 16 bits (code 1).
char16_t ReadLiteral(BitReader* reader, uint32_t code) {
  return static_cast<char16_t>(reader->Read(code == 0 ? 8 : 16));
}

}  // namespace

Result<std::string> DecompressLz64(std::string_view text, size_t output_bytes_max) {
  if (text.size() > kLz64InputBytesMax) {
    return Status::ResourceExhausted("data: " + std::to_string(text.size()) +
                                     " bytes of lz64, over the limit of " +
                                     std::to_string(kLz64InputBytesMax) + " (kLz64InputBytesMax)");
  }
  if (text.empty()) {
    return NotLz64();
  }
  BitReader reader(text);
  Decoder decoder(output_bytes_max);
  const uint32_t first = reader.Read(2);
  if (first == 2) {
    return NotLz64();  // an empty stream: no JSON in it
  }
  uint32_t previous = decoder.AddLiteral(ReadLiteral(&reader, first));
  MP_RETURN_IF_ERROR(decoder.Emit(previous));
  int code_bits = 3;
  uint32_t enlarge_in = 4;
  while (true) {
    if (reader.exhausted()) {
      return NotLz64();  // no end-of-stream code
    }
    uint32_t code = reader.Read(code_bits);
    if (code == 2) {
      break;
    }
    if (code < 2) {
      code = decoder.AddLiteral(ReadLiteral(&reader, code));
      if (--enlarge_in == 0) {
        enlarge_in = 1U << code_bits;
        ++code_bits;
      }
    }
    uint32_t current = 0;
    if (code < decoder.size()) {
      current = code;
      decoder.AddExtension(previous, decoder.entry(current).first);
    } else if (code == decoder.size()) {
      // The entry being defined: the previous one and its own first unit.
      current = decoder.AddExtension(previous, decoder.entry(previous).first);
    } else {
      return NotLz64();
    }
    MP_RETURN_IF_ERROR(decoder.Emit(current));
    previous = current;
    if (--enlarge_in == 0) {
      enlarge_in = 1U << code_bits;
      ++code_bits;
    }
    if (code_bits > kCodeBitsMax) {
      return NotLz64();
    }
  }
  return ToUtf8(decoder.units(), output_bytes_max);
}

}  // namespace minpanel::ingest::internal
