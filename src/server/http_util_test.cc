#include "server/http_util.h"

#include <sodium.h>

#include <gtest/gtest.h>

namespace minpanel::server {
namespace {

std::string Base64(std::string_view text) {
  std::string out(sodium_base64_ENCODED_LEN(text.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(text.data()),
                    text.size(), sodium_base64_VARIANT_ORIGINAL);
  out.pop_back();
  return out;
}

TEST(BasicAuthTest, SecretAsUserWithEmptyPassword) {
  const auto parsed = ParseBasicAuth("Basic " + Base64("s3cret:"));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first, "s3cret");
  EXPECT_EQ(parsed->second, "");
}

TEST(BasicAuthTest, ServiceAccountUserAndSecret) {
  const auto parsed = ParseBasicAuth("Basic " + Base64("svc.user:pa:ss"));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first, "svc.user");
  EXPECT_EQ(parsed->second, "pa:ss");
}

TEST(BasicAuthTest, OtherSchemesAndBadBase64AreIgnored) {
  EXPECT_FALSE(ParseBasicAuth("Bearer abc").has_value());
  EXPECT_FALSE(ParseBasicAuth("Basic !!!").has_value());
  EXPECT_FALSE(ParseBasicAuth("").has_value());
}

// Spaces and tabs around the header and around the credentials are
// optional whitespace (RFC 9110 §5.6.3); other blanks are not.
TEST(BasicAuthTest, SpacesAndTabsAroundAreIgnored) {
  const auto parsed = ParseBasicAuth(" \tBasic \t" + Base64("s3cret:") + "\t ");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first, "s3cret");
  EXPECT_FALSE(ParseBasicAuth("\nBasic " + Base64("s3cret:")).has_value());
}

TEST(TrustedProxiesTest, AddressesAndRanges) {
  auto proxies = TrustedProxies::Parse({"127.0.0.1", "10.0.0.0/8", "2001:db8::/32"});
  ASSERT_TRUE(proxies.ok());
  EXPECT_TRUE(proxies->Contains("127.0.0.1"));
  EXPECT_TRUE(proxies->Contains("10.200.3.4"));
  EXPECT_TRUE(proxies->Contains("::ffff:10.1.1.1"));
  EXPECT_TRUE(proxies->Contains("2001:db8:1::5"));
  EXPECT_FALSE(proxies->Contains("11.0.0.1"));
  EXPECT_FALSE(proxies->Contains("not an address"));
}

TEST(TrustedProxiesTest, BadEntryIsNamed) {
  auto proxies = TrustedProxies::Parse({"10.0.0.0/33"});
  ASSERT_FALSE(proxies.ok());
  EXPECT_NE(proxies.status().message().find("10.0.0.0/33"), std::string::npos);
  EXPECT_FALSE(TrustedProxies::Parse({"example.com"}).ok());
}

TEST(ClientAddressTest, ForwardingHeadersFromUntrustedPeersAreIgnored) {
  auto proxies = TrustedProxies::Parse({"127.0.0.1"});
  ASSERT_TRUE(proxies.ok());
  EXPECT_EQ(ClientAddress("198.51.100.9", "203.0.113.5", "", *proxies), "198.51.100.9");
}

TEST(ClientAddressTest, RightmostUntrustedHopIsTheClient) {
  auto proxies = TrustedProxies::Parse({"127.0.0.1", "10.0.0.0/8"});
  ASSERT_TRUE(proxies.ok());
  // The leftmost entry is whatever the client claimed; it is not believed.
  EXPECT_EQ(ClientAddress("127.0.0.1", "1.2.3.4, 203.0.113.5, 10.0.0.2", "", *proxies),
            "203.0.113.5");
  EXPECT_EQ(ClientAddress("127.0.0.1", "",
                          "for=192.0.2.60;proto=http, for=\"[2001:db8::17]:4711\"", *proxies),
            "2001:db8::17");
  EXPECT_EQ(ClientAddress("127.0.0.1", "garbage", "", *proxies), "127.0.0.1");
  // Blanks around list elements, pairs and addresses are optional whitespace.
  EXPECT_EQ(ClientAddress("127.0.0.1", "1.2.3.4,\t 203.0.113.5 \t,10.0.0.2", "", *proxies),
            "203.0.113.5");
  EXPECT_EQ(ClientAddress("127.0.0.1", "", "for=192.0.2.60,\t for=203.0.113.7 ;\tproto=https",
                          *proxies),
            "203.0.113.7");
}

TEST(JsonpCallbackTest, OnlyIdentifierPaths) {
  EXPECT_TRUE(IsValidJsonpCallback("mixpanel._jsc.abc"));
  EXPECT_TRUE(IsValidJsonpCallback("$cb_1"));
  EXPECT_FALSE(IsValidJsonpCallback("alert(1)"));
  EXPECT_FALSE(IsValidJsonpCallback("1abc"));
  EXPECT_FALSE(IsValidJsonpCallback(std::string(129, 'a')));
}

TEST(MediaTypeTest, ParametersSpacesAndCaseAreIgnored) {
  EXPECT_EQ(MediaTypeOf("text/plain"), "text/plain");
  EXPECT_EQ(MediaTypeOf(" Application/TOML ; charset=utf-8"), "application/toml");
  EXPECT_EQ(MediaTypeOf(""), "");
  EXPECT_EQ(MediaTypeOf(";charset=utf-8"), "");
}

}  // namespace
}  // namespace minpanel::server
