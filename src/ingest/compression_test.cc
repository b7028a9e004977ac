#include <gtest/gtest.h>

#include "ingest/ingest.h"
#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using testing::Compress;
using testing::Gzip;

constexpr size_t kOutputMax = 1 << 20;
constexpr size_t kRatioMax = 100;

// Pseudo-random letters: compressible, but far below any bomb ratio.
std::string Text(size_t bytes) {
  std::string text;
  uint32_t state = 12345;
  for (size_t byte_idx = 0; byte_idx < bytes; ++byte_idx) {
    state = state * 1103515245 + 12345;
    text.push_back(static_cast<char>('a' + (state >> 16) % 26));
  }
  return text;
}

TEST(ContentEncodingTest, KnownCodingsParse) {
  EXPECT_EQ(ParseContentEncoding("").value(), ContentEncoding::kIdentity);
  EXPECT_EQ(ParseContentEncoding("identity").value(), ContentEncoding::kIdentity);
  EXPECT_EQ(ParseContentEncoding("gzip").value(), ContentEncoding::kGzip);
  EXPECT_EQ(ParseContentEncoding(" GZip ").value(), ContentEncoding::kGzip);
  EXPECT_EQ(ParseContentEncoding("x-gzip").value(), ContentEncoding::kGzip);
  EXPECT_EQ(ParseContentEncoding("Deflate").value(), ContentEncoding::kDeflate);
}

TEST(ContentEncodingTest, UnknownCodingIsInvalid) {
  for (const char* header : {"br", "zstd", "gzip, deflate", "gzipx"}) {
    const auto encoding = ParseContentEncoding(header);
    ASSERT_FALSE(encoding.ok()) << header;
    EXPECT_EQ(encoding.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(encoding.status().message().find("Content-Encoding"), std::string::npos);
  }
}

TEST(DecompressTest, IdentityBodyIsReturnedAsIs) {
  const auto body = DecompressBody("data=abc", ContentEncoding::kIdentity, kOutputMax, kRatioMax);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, "data=abc");
}

TEST(DecompressTest, GzipRoundTrips) {
  const std::string text = Text(200000);
  const auto body = DecompressBody(Gzip(text), ContentEncoding::kGzip, kOutputMax, kRatioMax);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(*body, text);
}

TEST(DecompressTest, GzipIsDetectedByMagicWithoutHeader) {
  const std::string text = R"({"batch":[]})";
  const auto body = DecompressBody(Gzip(text), ContentEncoding::kIdentity, kOutputMax, kRatioMax);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(*body, text);
}

TEST(DecompressTest, ZlibAndRawDeflateBothDecode) {
  const std::string text = Text(5000);
  for (const int window_bits : {MAX_WBITS, -MAX_WBITS}) {
    const auto body = DecompressBody(Compress(text, window_bits), ContentEncoding::kDeflate,
                                     kOutputMax, kRatioMax);
    ASSERT_TRUE(body.ok()) << window_bits << " " << body.status().ToString();
    EXPECT_EQ(*body, text);
  }
}

TEST(DecompressTest, ConcatenatedGzipMembersAreJoined) {
  const auto body =
      DecompressBody(Gzip("hello ") + Gzip("world"), ContentEncoding::kGzip, kOutputMax, kRatioMax);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(*body, "hello world");
}

TEST(DecompressTest, GzipBombIsRefused) {
  const std::string zeros(50 << 20, '\0');  // 50 MiB compresses to ~50 KiB
  const auto body = DecompressBody(Gzip(zeros), ContentEncoding::kGzip, 100 << 20, kRatioMax);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(body.status().message().find("ratio"), std::string::npos);
}

TEST(DecompressTest, OutputOverTheSizeLimitIsRefused) {
  const std::string text = Text(10000);
  const auto body = DecompressBody(Gzip(text), ContentEncoding::kGzip, 9999, 1000000);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(body.status().message().find("9999 bytes"), std::string::npos);
}

TEST(DecompressTest, OutputExactlyAtTheLimitIsAccepted) {
  const std::string text = Text(10000);
  const auto body = DecompressBody(Gzip(text), ContentEncoding::kGzip, 10000, 1000000);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(body->size(), 10000u);
}

TEST(DecompressTest, TruncatedGzipIsInvalid) {
  const std::string gzip = Gzip(Text(5000));
  for (const size_t keep : {size_t{0}, size_t{5}, gzip.size() / 2, gzip.size() - 1}) {
    const auto body = DecompressBody(std::string_view(gzip).substr(0, keep),
                                     ContentEncoding::kGzip, kOutputMax, kRatioMax);
    ASSERT_FALSE(body.ok()) << keep;
    EXPECT_EQ(body.status().code(), StatusCode::kInvalidArgument) << keep;
  }
}

TEST(DecompressTest, CorruptGzipIsInvalid) {
  std::string gzip = Gzip(Text(5000));
  gzip[gzip.size() - 6] ^= 0x55;  // inside the CRC32 trailer
  const auto body = DecompressBody(gzip, ContentEncoding::kGzip, kOutputMax, kRatioMax);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(body.status().message().find("corrupt"), std::string::npos);
}

TEST(DecompressTest, NotGzipUnderGzipHeaderIsInvalid) {
  const auto body = DecompressBody("data=abc", ContentEncoding::kGzip, kOutputMax, kRatioMax);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), StatusCode::kInvalidArgument);
}

TEST(DecompressTest, TrailingGarbageAfterGzipIsInvalid) {
  const auto body =
      DecompressBody(Gzip("hello") + "junk", ContentEncoding::kGzip, kOutputMax, kRatioMax);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(body.status().message().find("trailing"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::ingest
