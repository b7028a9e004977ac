#include "core/event.h"

#include <array>

namespace minpanel {
namespace {

// Hex digit values by byte, -1 for anything else: insert ids and
// pseudonyms are parsed on every ingested event, so no branches per digit.
constexpr std::array<int8_t, 256> MakeHexTable() {
  std::array<int8_t, 256> table{};
  table.fill(-1);
  for (int digit = 0; digit < 10; ++digit) {
    table['0' + digit] = static_cast<int8_t>(digit);
  }
  for (int digit = 0; digit < 6; ++digit) {
    table['a' + digit] = static_cast<int8_t>(10 + digit);
    table['A' + digit] = static_cast<int8_t>(10 + digit);
  }
  return table;
}
constexpr std::array<int8_t, 256> kHexTable = MakeHexTable();

constexpr std::array<std::string_view, 8> kOperationNames = {
    "$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"};

}  // namespace

std::string Id128::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text(32, '0');
  for (int nibble_idx = 0; nibble_idx < 16; ++nibble_idx) {
    text[15 - nibble_idx] = kDigits[(high >> (4 * nibble_idx)) & 0xF];
    text[31 - nibble_idx] = kDigits[(low >> (4 * nibble_idx)) & 0xF];
  }
  return text;
}

std::optional<Id128> Id128::FromHex(std::string_view text) {
  if (text.size() != 32) {
    return std::nullopt;
  }
  Id128 id;
  int invalid = 0;
  for (size_t char_idx = 0; char_idx < 16; ++char_idx) {
    const int high_digit = kHexTable[static_cast<uint8_t>(text[char_idx])];
    const int low_digit = kHexTable[static_cast<uint8_t>(text[char_idx + 16])];
    invalid |= high_digit | low_digit;
    id.high = (id.high << 4) | static_cast<uint64_t>(high_digit & 0xF);
    id.low = (id.low << 4) | static_cast<uint64_t>(low_digit & 0xF);
  }
  if (invalid < 0) {
    return std::nullopt;
  }
  return id;
}

Id128 Id128::FromBytes(const std::array<uint8_t, 16>& bytes) {
  Id128 id;
  for (size_t byte_idx = 0; byte_idx < 8; ++byte_idx) {
    id.high = (id.high << 8) | bytes[byte_idx];
    id.low = (id.low << 8) | bytes[byte_idx + 8];
  }
  return id;
}

std::string FormatPseudonym(const Id128& subject) {
  std::string text(kPseudonymPrefix);
  text += subject.ToHex();
  return text;
}

const Value* FindProperty(const Properties& properties, std::string_view key) {
  for (const Property& property : properties) {
    if (property.key == key) {
      return &property.value;
    }
  }
  return nullptr;
}

std::string_view ProfileOperationName(ProfileOperation operation) {
  const auto index = static_cast<size_t>(operation) - 1;
  return index < kOperationNames.size() ? kOperationNames[index] : "$unknown";
}

std::optional<ProfileOperation> ParseProfileOperation(std::string_view name) {
  for (size_t op_idx = 0; op_idx < kOperationNames.size(); ++op_idx) {
    if (kOperationNames[op_idx] == name) {
      return static_cast<ProfileOperation>(op_idx + 1);
    }
  }
  return std::nullopt;
}

}  // namespace minpanel
