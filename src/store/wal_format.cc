#include "store/wal_format.h"

#include <isa-l/crc.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <utility>

#include "store/bytes.h"

namespace minpanel::store {
namespace {

// Smallest encodings, used to reject counts that the remaining bytes cannot hold
// before anything is reserved: a property is a one-byte key length and a tag.
constexpr size_t kPropertyBytesMin = 2;
constexpr size_t kListItemBytesMin = 1;

void PutString(std::string_view value, std::string* out) {
  PutVarint64(value.size(), out);
  out->append(value);
}

void PutValue(const Value& value, std::string* out) {
  switch (value.type()) {
    case Value::Type::kNull:
      out->push_back(static_cast<char>(WalValueTag::kNull));
      return;
    case Value::Type::kBool:
      out->push_back(static_cast<char>(WalValueTag::kBool));
      out->push_back(value.as_bool() ? 1 : 0);
      return;
    case Value::Type::kInt:
      out->push_back(static_cast<char>(WalValueTag::kInt));
      PutVarint64(ZigZagEncode(value.as_int()), out);
      return;
    case Value::Type::kDouble:
      out->push_back(static_cast<char>(WalValueTag::kDouble));
      PutFixed64(std::bit_cast<uint64_t>(value.as_double()), out);
      return;
    case Value::Type::kString:
      out->push_back(static_cast<char>(WalValueTag::kString));
      PutString(value.as_string(), out);
      return;
    case Value::Type::kList:
      out->push_back(static_cast<char>(WalValueTag::kStringList));
      PutVarint64(value.as_list().size(), out);
      for (const std::string& item : value.as_list()) {
        PutString(item, out);
      }
      return;
  }
}

void PutProperties(const Properties& properties, std::string* out) {
  PutVarint64(properties.size(), out);
  for (const Property& property : properties) {
    PutString(property.key, out);
    PutValue(property.value, out);
  }
}

Status Truncated(std::string_view field) {
  return Status::Corruption("log payload ends inside " + std::string(field));
}

}  // namespace

uint32_t Crc32(uint32_t crc, std::string_view bytes) {
  // ISA-L's folding with carry-less multiplies (PCLMULQDQ, chosen at run
  // time): the same CRC as zlib's crc32, 22 GB/s against zlib 1.2.13's
  // 1.4 GB/s on this machine, where it was up to 12 % of a query's CPU.
  return crc32_gzip_refl(crc, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
}

uint32_t Crc32Combine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
  return static_cast<uint32_t>(::crc32_combine64(crc_a, crc_b, static_cast<z_off64_t>(length_b)));
}

std::string EncodeWalFileHeader(uint64_t file_number, uint32_t version) {
  assert(version >= 1 && version <= kWalFormatVersion);
  std::string header(kWalMagic.data(), kWalMagic.size());
  PutFixed32(version, &header);
  PutFixed64(file_number, &header);
  PutFixed32(Crc32(0, header), &header);
  return header;
}

Result<WalFileHeader> DecodeWalFileHeader(std::string_view bytes) {
  if (bytes.size() != kWalFileHeaderBytes) {
    return Status::Corruption("log file header is " + std::to_string(bytes.size()) + " bytes");
  }
  if (std::memcmp(bytes.data(), kWalMagic.data(), kWalMagic.size()) != 0) {
    return Status::Corruption("not a minpanel log file (wrong magic)");
  }
  if (GetFixed32(bytes.data() + 20) != Crc32(0, bytes.substr(0, 20))) {
    return Status::Corruption("log file header checksum mismatch");
  }
  WalFileHeader header;
  header.format_version = GetFixed32(bytes.data() + 8);
  header.file_number = GetFixed64(bytes.data() + 12);
  // Every version up to the newest is read (version 1 has no policy version).
  if (header.format_version == 0 || header.format_version > kWalFormatVersion) {
    return Status::Corruption("log format version " + std::to_string(header.format_version) +
                              " is not supported by this binary (newest known: " +
                              std::to_string(kWalFormatVersion) + ")");
  }
  return header;
}

void EncodeEvent(const Event& event, std::string* out, uint32_t version) {
  PutString(event.name, out);
  PutVarint64(ZigZagEncode(event.time_ms), out);
  PutId(event.subject, out);
  PutId(event.insert_id, out);
  PutVarint64(event.key_version, out);
  if (version >= kWalPolicyVersionFormatVersion) {
    PutVarint64(event.policy_version, out);
  }
  PutProperties(event.properties, out);
}

void EncodeProfileUpdate(const ProfileUpdate& update, std::string* out, uint32_t version) {
  PutId(update.subject, out);
  PutString(update.group_key, out);
  PutVarint64(ZigZagEncode(update.time_ms), out);
  PutVarint64(update.key_version, out);
  if (version >= kWalProfilePolicyVersionFormatVersion) {
    PutVarint64(update.policy_version, out);
  }
  out->push_back(static_cast<char>(update.operation));
  PutProperties(update.properties, out);
}

namespace {

// `value` as a varint of exactly `bytes` bytes (at least its shortest form,
// at most kVarint64BytesMax): the groups past the value's are zero.
void PutLongVarint(uint64_t value, size_t bytes, std::string* out) {
  for (size_t byte_idx = 0; byte_idx < bytes; ++byte_idx) {
    uint8_t group = static_cast<uint8_t>(value & 0x7F);
    value >>= 7;
    if (byte_idx + 1 < bytes) {
      group |= 0x80;
    }
    out->push_back(static_cast<char>(group));
  }
}

size_t VarintLength(uint64_t value) {
  size_t bytes = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++bytes;
  }
  return bytes;
}

}  // namespace

void EncodePayloadHeader(const WalPayloadHeader& header, std::string* out, size_t extra_bytes) {
  PutFixed64(static_cast<uint64_t>(header.stored_at_ms), out);
  // A u32 takes at most 5 of a varint's 10 bytes, so three of them can
  // take 15 more: kPayloadHeaderExtraBytesMax.
  extra_bytes = std::min(extra_bytes, kPayloadHeaderExtraBytesMax);
  for (const uint64_t value : {uint64_t{header.project_id}, uint64_t{header.event_count},
                               uint64_t{header.profile_update_count}}) {
    const size_t length = VarintLength(value);
    const size_t extra = std::min(extra_bytes, kVarint64BytesMax - length);
    PutLongVarint(value, length + extra, out);
    extra_bytes -= extra;
  }
}

Status WalDecoder::ReadVarint64(std::string_view field, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (position_ == bytes_.size()) {
      return Truncated(field);
    }
    const uint8_t byte = static_cast<uint8_t>(bytes_[position_++]);
    if (shift == 63 && byte > 1) {
      return Status::Corruption("log varint overflows 64 bits in " + std::string(field));
    }
    result |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return Status::Ok();
    }
  }
  return Status::Corruption("log varint too long in " + std::string(field));
}

Status WalDecoder::ReadVarint32(std::string_view field, uint32_t* value) {
  uint64_t wide = 0;
  MP_RETURN_IF_ERROR(ReadVarint64(field, &wide));
  if (wide > UINT32_MAX) {
    return Status::Corruption("log value out of range in " + std::string(field));
  }
  *value = static_cast<uint32_t>(wide);
  return Status::Ok();
}

Status WalDecoder::ReadFixed64(std::string_view field, uint64_t* value) {
  if (remaining() < 8) {
    return Truncated(field);
  }
  *value = GetFixed64(bytes_.data() + position_);
  position_ += 8;
  return Status::Ok();
}

Status WalDecoder::ReadByte(std::string_view field, uint8_t* value) {
  if (remaining() < 1) {
    return Truncated(field);
  }
  *value = static_cast<uint8_t>(bytes_[position_++]);
  return Status::Ok();
}

Status WalDecoder::ReadId(std::string_view field, Id128* id) {
  MP_RETURN_IF_ERROR(ReadFixed64(field, &id->high));
  return ReadFixed64(field, &id->low);
}

Status WalDecoder::ReadString(std::string_view field, std::string* value) {
  uint64_t length = 0;
  MP_RETURN_IF_ERROR(ReadVarint64(field, &length));
  if (length > remaining()) {
    return Truncated(field);
  }
  value->assign(bytes_.data() + position_, static_cast<size_t>(length));
  position_ += static_cast<size_t>(length);
  return Status::Ok();
}

Status WalDecoder::ReadValue(Value* value) {
  uint8_t tag = 0;
  MP_RETURN_IF_ERROR(ReadByte("value tag", &tag));
  switch (static_cast<WalValueTag>(tag)) {
    case WalValueTag::kNull:
      *value = Value::Null();
      return Status::Ok();
    case WalValueTag::kBool: {
      uint8_t flag = 0;
      MP_RETURN_IF_ERROR(ReadByte("bool value", &flag));
      if (flag > 1) {
        return Status::Corruption("log bool value is " + std::to_string(flag));
      }
      *value = Value::Bool(flag == 1);
      return Status::Ok();
    }
    case WalValueTag::kInt: {
      uint64_t bits = 0;
      MP_RETURN_IF_ERROR(ReadVarint64("int value", &bits));
      *value = Value::Int(ZigZagDecode(bits));
      return Status::Ok();
    }
    case WalValueTag::kDouble: {
      uint64_t bits = 0;
      MP_RETURN_IF_ERROR(ReadFixed64("double value", &bits));
      *value = Value::Double(std::bit_cast<double>(bits));
      return Status::Ok();
    }
    case WalValueTag::kString: {
      std::string text;
      MP_RETURN_IF_ERROR(ReadString("string value", &text));
      *value = Value::String(std::move(text));
      return Status::Ok();
    }
    case WalValueTag::kStringList: {
      uint64_t count = 0;
      MP_RETURN_IF_ERROR(ReadVarint64("list length", &count));
      if (count > remaining() / kListItemBytesMin) {
        return Truncated("list value");
      }
      // Grown item by item so that a lying count cannot reserve memory.
      StringList items;
      for (uint64_t item_idx = 0; item_idx < count; ++item_idx) {
        MP_RETURN_IF_ERROR(ReadString("list item", &items.emplace_back()));
      }
      *value = Value::List(std::move(items));
      return Status::Ok();
    }
  }
  return Status::Corruption("log value tag " + std::to_string(tag) + " is unknown");
}

Status WalDecoder::ReadProperties(Properties* properties) {
  uint64_t count = 0;
  MP_RETURN_IF_ERROR(ReadVarint64("property count", &count));
  if (count > remaining() / kPropertyBytesMin) {
    return Truncated("properties");
  }
  // Existing elements are reused (their strings keep capacity); new ones are
  // added only as bytes are consumed, so a lying count cannot reserve memory.
  for (uint64_t property_idx = 0; property_idx < count; ++property_idx) {
    if (property_idx == properties->size()) {
      properties->emplace_back();
    }
    Property& property = (*properties)[static_cast<size_t>(property_idx)];
    MP_RETURN_IF_ERROR(ReadString("property key", &property.key));
    MP_RETURN_IF_ERROR(ReadValue(&property.value));
  }
  properties->resize(static_cast<size_t>(count));
  return Status::Ok();
}

Status WalDecoder::ReadPayloadHeader(WalPayloadHeader* header) {
  uint64_t stored_at = 0;
  MP_RETURN_IF_ERROR(ReadFixed64("stored_at_ms", &stored_at));
  header->stored_at_ms = static_cast<int64_t>(stored_at);
  MP_RETURN_IF_ERROR(ReadVarint32("project_id", &header->project_id));
  MP_RETURN_IF_ERROR(ReadVarint32("event count", &header->event_count));
  return ReadVarint32("profile update count", &header->profile_update_count);
}

Status WalDecoder::ReadEvent(Event* event) {
  MP_RETURN_IF_ERROR(ReadString("event name", &event->name));
  uint64_t time_bits = 0;
  MP_RETURN_IF_ERROR(ReadVarint64("event time", &time_bits));
  event->time_ms = ZigZagDecode(time_bits);
  MP_RETURN_IF_ERROR(ReadId("event subject", &event->subject));
  MP_RETURN_IF_ERROR(ReadId("event insert id", &event->insert_id));
  MP_RETURN_IF_ERROR(ReadVarint32("event key version", &event->key_version));
  if (version_ >= kWalPolicyVersionFormatVersion) {
    MP_RETURN_IF_ERROR(ReadVarint32("event policy version", &event->policy_version));
  } else {
    event->policy_version = kPolicyVersionUnknown;
  }
  return ReadProperties(&event->properties);
}

Status WalDecoder::ReadProfileUpdate(ProfileUpdate* update) {
  MP_RETURN_IF_ERROR(ReadId("profile subject", &update->subject));
  MP_RETURN_IF_ERROR(ReadString("profile group key", &update->group_key));
  uint64_t time_bits = 0;
  MP_RETURN_IF_ERROR(ReadVarint64("profile time", &time_bits));
  update->time_ms = ZigZagDecode(time_bits);
  MP_RETURN_IF_ERROR(ReadVarint32("profile key version", &update->key_version));
  if (version_ >= kWalProfilePolicyVersionFormatVersion) {
    MP_RETURN_IF_ERROR(ReadVarint32("profile policy version", &update->policy_version));
  } else {
    update->policy_version = kPolicyVersionUnknown;
  }
  uint8_t operation = 0;
  MP_RETURN_IF_ERROR(ReadByte("profile operation", &operation));
  if (operation < static_cast<uint8_t>(ProfileOperation::kSet) ||
      operation > static_cast<uint8_t>(ProfileOperation::kDelete)) {
    return Status::Corruption("log profile operation " + std::to_string(operation) +
                              " is unknown");
  }
  update->operation = static_cast<ProfileOperation>(operation);
  return ReadProperties(&update->properties);
}

}  // namespace minpanel::store
