#include <gtest/gtest.h>

#include "ingest/ingest.h"
#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using testing::Base64;
using testing::UrlEncode;

// Its base64 holds both '+' and '/' ("?>>" and "??" encode to them).
constexpr std::string_view kJson = R"({"event":"e","properties":{"note":">>>???~~~ é"}})";

TEST(MixpanelPayloadTest, QueryDataBase64IsDecoded) {
  const auto payload = ExtractMixpanelPayload("ip=0&verbose=0&data=" + UrlEncode(Base64(kJson)), "");
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_EQ(*payload, kJson);
}

TEST(MixpanelPayloadTest, FormBodyDataIsDecoded) {
  const auto payload = ExtractMixpanelPayload("ip=1", "data=" + UrlEncode(Base64(kJson)));
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_EQ(*payload, kJson);
}

TEST(MixpanelPayloadTest, UnencodedPlusInBase64IsRestored) {
  const std::string base64 = Base64(kJson);
  ASSERT_NE(base64.find('+'), std::string::npos);
  ASSERT_NE(base64.find('/'), std::string::npos);
  // mixpanel-node posts the base64 raw: its '+' reaches us as a space.
  const auto payload = ExtractMixpanelPayload("ip=0&verbose=0", "data=" + base64);
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_EQ(*payload, kJson);
}

TEST(MixpanelPayloadTest, UrlSafeBase64WithoutPaddingIsDecoded) {
  const std::string base64 = Base64(kJson, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  ASSERT_NE(base64.find_first_of("-_"), std::string::npos);
  const auto payload = ExtractMixpanelPayload("data=" + base64, "");
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_EQ(*payload, kJson);
}

TEST(MixpanelPayloadTest, StandardBase64WithoutPaddingIsDecoded) {
  ASSERT_EQ(Base64("[12]"), "WzEyXQ==");
  const auto payload = ExtractMixpanelPayload("data=WzEyXQ", "");
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_EQ(*payload, "[12]");
}

TEST(MixpanelPayloadTest, EveryPaddingLengthDecodesWithAndWithoutPadding) {
  for (const std::string json : {"[1]", "[12]", "[123]", "[1234]", "[12345]"}) {
    for (const int variant : {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                              sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING}) {
      const std::string base64 = Base64(json, variant);
      const auto payload = ExtractMixpanelPayload("data=" + UrlEncode(base64), "");
      ASSERT_TRUE(payload.ok()) << base64 << ": " << payload.status().ToString();
      EXPECT_EQ(*payload, json) << base64;
    }
  }
}

TEST(MixpanelPayloadTest, LineBreaksAreIgnoredAndMixedAlphabetsRefused) {
  EXPECT_EQ(*ExtractMixpanelPayload("", "data=WzEy%0D%0AXQ=="), "[12]");
  // '+' from the standard alphabet and '_' from the URL-safe one.
  const auto mixed = ExtractMixpanelPayload("data=W%2B_yXQ", "");
  EXPECT_FALSE(mixed.ok());
  EXPECT_FALSE(ExtractMixpanelPayload("data=WzE=yXQ", "").ok()) << "padding in the middle";
}

TEST(MixpanelPayloadTest, UrlEncodedJsonDataIsTakenAsJson) {
  const auto payload = ExtractMixpanelPayload("verbose=1", "data=" + UrlEncode(kJson));
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_EQ(*payload, kJson);
}

TEST(MixpanelPayloadTest, RawJsonBodyIsAccepted) {
  const auto payload = ExtractMixpanelPayload("", std::string(" \n") + std::string(kJson));
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_NE(payload->find(kJson), std::string::npos);
  const auto array = ExtractMixpanelPayload("strict=1", "[]");
  ASSERT_TRUE(array.ok());
  EXPECT_EQ(*array, "[]");
}

TEST(MixpanelPayloadTest, TextPlainBeaconBodyIsReadAsForm) {
  // sendBeacon: Content-Type text/plain, body data=...; the type is not ours to see.
  const auto payload = ExtractMixpanelPayload("", "data=" + UrlEncode(Base64("[]")));
  ASSERT_TRUE(payload.ok());
  EXPECT_EQ(*payload, "[]");
}

TEST(MixpanelPayloadTest, QueryDataWinsOverBody) {
  const auto payload = ExtractMixpanelPayload("data=" + UrlEncode("[1]"), "data=" + UrlEncode("[2]"));
  ASSERT_TRUE(payload.ok());
  EXPECT_EQ(*payload, "[1]");
}

TEST(MixpanelPayloadTest, MissingDataIsInvalid) {
  for (const auto& [query, body] : {std::pair<std::string, std::string>{"ip=1", ""},
                                    {"", "verbose=1"},
                                    {"", ""}}) {
    const auto payload = ExtractMixpanelPayload(query, body);
    ASSERT_FALSE(payload.ok());
    EXPECT_EQ(payload.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(payload.status().message().rfind("data: missing", 0), 0u);
  }
}

TEST(MixpanelPayloadTest, GarbageDataIsNotBase64OrJson) {
  for (const char* value : {"!!!!", "abc$", "QUJD", "a", "ab+-cd", "%00%01"}) {
    const auto payload = ExtractMixpanelPayload(std::string("data=") + value, "");
    ASSERT_FALSE(payload.ok()) << value;
    EXPECT_EQ(payload.status().code(), StatusCode::kInvalidArgument) << value;
    EXPECT_EQ(payload.status().message(), "data: not valid base64 or JSON") << value;
  }
}

TEST(MixpanelPayloadTest, MalformedEscapeInQueryIsInvalid) {
  const auto payload = ExtractMixpanelPayload("data=%zz", "");
  ASSERT_FALSE(payload.ok());
  EXPECT_EQ(payload.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace minpanel::ingest
