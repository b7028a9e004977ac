#include "store/wal_format.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace minpanel::store {
namespace {

Event EventWithEveryValueType() {
  Event event;
  event.name = "Signed Up";
  event.time_ms = -5;  // zigzag must carry negative times too
  event.subject = Id128{0xFFFFFFFFFFFFFFFFULL, 1};
  event.insert_id = Id128{2, 0x8000000000000000ULL};
  event.key_version = 4'000'000'000u;
  event.properties = {
      {"null", Value::Null()},
      {"yes", Value::Bool(true)},
      {"no", Value::Bool(false)},
      {"min", Value::Int(std::numeric_limits<int64_t>::min())},
      {"max", Value::Int(std::numeric_limits<int64_t>::max())},
      {"zero", Value::Int(0)},
      {"pi", Value::Double(3.14159)},
      {"negative zero", Value::Double(-0.0)},
      {"infinity", Value::Double(std::numeric_limits<double>::infinity())},
      {"empty", Value::String("")},
      {"utf8", Value::String(std::string("caf\xc3\xa9 \0 nul", 11))},
      {"list", Value::List({"a", "", "ccc"})},
      {"empty list", Value::List({})},
  };
  return event;
}

TEST(WalFormatTest, EveryValueTypeRoundTrips) {
  const Event event = EventWithEveryValueType();
  std::string bytes;
  EncodeEvent(event, &bytes);
  WalDecoder decoder(bytes);
  Event decoded;
  ASSERT_TRUE(decoder.ReadEvent(&decoded).ok());
  EXPECT_TRUE(decoder.empty());
  EXPECT_EQ(decoded, event);
  EXPECT_TRUE(std::signbit(FindProperty(decoded.properties, "negative zero")->as_double()));
}

TEST(WalFormatTest, EveryProfileOperationRoundTrips) {
  for (uint8_t operation = 1; operation <= 8; ++operation) {
    ProfileUpdate update;
    update.subject = Id128{7, operation};
    update.group_key = operation % 2 == 0 ? "company" : "";
    update.time_ms = 1'700'000'000'000 + operation;
    update.key_version = 2;
    update.operation = static_cast<ProfileOperation>(operation);
    update.properties = {{"name", Value::String("x")}, {"gone", Value::Null()}};
    std::string bytes;
    EncodeProfileUpdate(update, &bytes);
    WalDecoder decoder(bytes);
    ProfileUpdate decoded;
    ASSERT_TRUE(decoder.ReadProfileUpdate(&decoded).ok());
    EXPECT_EQ(decoded, update);
  }
}

// Log format 3 adds a profile update's policy version after its key
// version; a payload of versions 1 and 2 has none and reads it as unknown.
TEST(WalFormatTest, AProfileUpdatesPolicyVersionIsInVersionThreeOnly) {
  ProfileUpdate update;
  update.subject = Id128{7, 1};
  update.time_ms = 1'700'000'000'000;
  update.key_version = 2;
  update.policy_version = 300;
  update.properties = {{"plan", Value::String("pro")}};
  for (const uint32_t version : {1u, 2u, 3u}) {
    std::string bytes;
    EncodeProfileUpdate(update, &bytes, version);
    WalDecoder decoder(bytes, version);
    ProfileUpdate decoded;
    ASSERT_TRUE(decoder.ReadProfileUpdate(&decoded).ok()) << version;
    EXPECT_TRUE(decoder.empty()) << version;
    ProfileUpdate expected = update;
    expected.policy_version = version >= 3 ? 300 : kPolicyVersionUnknown;
    EXPECT_EQ(decoded, expected) << version;
  }
  std::string two;
  std::string three;
  EncodeProfileUpdate(update, &two, 2);
  EncodeProfileUpdate(update, &three, 3);
  EXPECT_EQ(three.size(), two.size() + 2);  // 300 as a varint
}

TEST(WalFormatTest, DecodingReusesTheEventAndDropsOldProperties) {
  std::string bytes;
  EncodeEvent(EventWithEveryValueType(), &bytes);
  Event small = EventWithEveryValueType();
  small.properties.resize(1);
  EncodeEvent(small, &bytes);
  WalDecoder decoder(bytes);
  Event decoded;
  ASSERT_TRUE(decoder.ReadEvent(&decoded).ok());
  ASSERT_TRUE(decoder.ReadEvent(&decoded).ok());
  EXPECT_EQ(decoded, small);
}

TEST(WalFormatTest, EveryTruncationIsCorruptionNotACrash) {
  std::string bytes;
  EncodeEvent(EventWithEveryValueType(), &bytes);
  for (size_t length = 0; length < bytes.size(); ++length) {
    WalDecoder decoder(std::string_view(bytes).substr(0, length));
    Event decoded;
    EXPECT_EQ(decoder.ReadEvent(&decoded).code(), StatusCode::kCorruption) << length;
  }
}

TEST(WalFormatTest, HugeCountsAndUnknownTagsAreCorruption) {
  // name "", time 0, two ids, key version 0, then a property count of 2^62.
  std::string bytes(1 + 1, '\0');
  bytes.append(32, '\0');
  bytes.push_back('\0');
  bytes += std::string("\x80\x80\x80\x80\x80\x80\x80\x80\x40", 9);
  Event decoded;
  EXPECT_EQ(WalDecoder(bytes).ReadEvent(&decoded).code(), StatusCode::kCorruption);

  std::string unknown_tag(1 + 1, '\0');
  unknown_tag.append(32, '\0');
  unknown_tag += std::string("\x00\x01\x01k\x09", 5);
  EXPECT_EQ(WalDecoder(unknown_tag).ReadEvent(&decoded).code(), StatusCode::kCorruption);

  std::string bad_bool(1 + 1, '\0');
  bad_bool.append(32, '\0');
  bad_bool += std::string("\x00\x01\x01k\x01\x02", 6);
  EXPECT_EQ(WalDecoder(bad_bool).ReadEvent(&decoded).code(), StatusCode::kCorruption);
}

TEST(WalFormatTest, UnknownProfileOperationIsCorruption) {
  ProfileUpdate update;
  update.policy_version = 0;
  std::string bytes;
  EncodeProfileUpdate(update, &bytes);
  // subject, empty group key, time, key version, policy version, operation
  bytes[16 + 1 + 1 + 1 + 1] = 9;
  ProfileUpdate decoded;
  EXPECT_EQ(WalDecoder(bytes).ReadProfileUpdate(&decoded).code(), StatusCode::kCorruption);
}

TEST(WalFormatTest, FileHeaderRoundTripsAndRejectsWrongMagicAndNewerVersions) {
  const std::string header = EncodeWalFileHeader(42);
  ASSERT_EQ(header.size(), kWalFileHeaderBytes);
  const auto decoded = DecodeWalFileHeader(header);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->file_number, 42u);
  EXPECT_EQ(decoded->format_version, kWalFormatVersion);

  std::string wrong_magic = header;
  wrong_magic[0] = 'X';
  EXPECT_EQ(DecodeWalFileHeader(wrong_magic).status().code(), StatusCode::kCorruption);

  std::string newer = header.substr(0, 8);
  newer += std::string("\x04\x00\x00\x00", 4);
  newer += header.substr(12, 8);
  const uint32_t crc = Crc32(0, newer);
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    newer.push_back(static_cast<char>(crc >> (8 * byte_idx)));
  }
  const auto refused = DecodeWalFileHeader(newer);
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find("version 4"), std::string::npos);
}

TEST(WalFormatTest, CrcCombineMatchesCrcOfTheConcatenation) {
  const std::string first = "record header";
  const std::string second = "and a body of some length";
  EXPECT_EQ(Crc32Combine(Crc32(0, first), Crc32(0, second), second.size()),
            Crc32(0, first + second));
}

}  // namespace
}  // namespace minpanel::store
