#include "service/registry_file.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace minpanel::service::internal {
namespace {

// FIPS 180-2's test vectors: the hash of a stored secret must never change,
// or every projects.json and access_keys.json written before would stop
// matching its secrets.
TEST(RegistryFileTest, Sha256HexIsTheDigestInLowercaseHex) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(RegistryFileTest, RandomHexIsLowercaseHexOfTheBytesAsked) {
  ASSERT_GE(sodium_init(), 0);
  EXPECT_EQ(RandomHex(0), "");
  std::set<std::string> seen;
  for (const size_t bytes : {1, 8, 16, 32}) {
    const std::string hex = RandomHex(bytes);
    EXPECT_EQ(hex.size(), 2 * bytes);
    EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos) << hex;
    seen.insert(RandomHex(32));
  }
  EXPECT_EQ(seen.size(), 4U) << "32 random bytes repeated";
}

}  // namespace
}  // namespace minpanel::service::internal
