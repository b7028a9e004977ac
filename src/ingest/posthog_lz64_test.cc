#include "ingest/posthog_lz64.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <fstream>

namespace minpanel::ingest::internal {
namespace {

constexpr size_t kOutputMax = 1 << 20;

// Every vector was made by lz-string 1.5.0's compressToBase64 (node):
// posthog-js payloads, a 3.5 KB batch with repeats and astral characters,
// 5,000 repeated bytes, random texts, 16-bit literals.
TEST(Lz64Test, DecodesWhatLzStringEncodes) {
  std::ifstream file(std::string(MINPANEL_INGEST_TESTDATA_DIR) + "/lz64-vectors.jsonl");
  ASSERT_TRUE(file.is_open());
  simdjson::dom::parser parser;
  std::string line;
  size_t vectors = 0;
  while (std::getline(file, line)) {
    const simdjson::dom::element record = parser.parse(line);
    const std::string_view text = record["text"].get_string().value();
    const std::string_view lz64 = record["lz64"].get_string().value();
    const auto decoded = DecompressLz64(lz64, kOutputMax);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString() << " for " << lz64;
    EXPECT_EQ(*decoded, text);
    ++vectors;
  }
  EXPECT_EQ(vectors, 35u);
}

TEST(Lz64Test, AFormDecodedPlusIsReadBack) {
  // The third vector (the 3.5 KB batch) holds '+' signs; a form decoder
  // turns them into spaces.
  std::ifstream file(std::string(MINPANEL_INGEST_TESTDATA_DIR) + "/lz64-vectors.jsonl");
  std::string line;
  for (int line_idx = 0; line_idx < 3; ++line_idx) {
    std::getline(file, line);
  }
  simdjson::dom::parser parser;
  const simdjson::dom::element record = parser.parse(line);
  std::string spaced(record["lz64"].get_string().value());
  ASSERT_NE(spaced.find('+'), std::string::npos);
  std::replace(spaced.begin(), spaced.end(), '+', ' ');
  EXPECT_EQ(DecompressLz64(spaced, kOutputMax).value(), record["text"].get_string().value());
}

TEST(Lz64Test, RefusesWhatIsNotAStream) {
  // lz-string answers null or "" for these (and "a" for "IZ", as here).
  EXPECT_EQ(DecompressLz64("IZ", kOutputMax).value(), "a");
  for (const std::string_view bad : {"", "A", "Zm9v", "N4IgpgbmB2AuIC5wgDQgCYEs", "////////"}) {
    const auto decoded = DecompressLz64(bad, kOutputMax);
    ASSERT_FALSE(decoded.ok()) << bad;
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Lz64Test, OutputAndInputLimits) {
  // 5,000 bytes of output against a 4,000-byte limit.
  std::ifstream file(std::string(MINPANEL_INGEST_TESTDATA_DIR) + "/lz64-vectors.jsonl");
  std::string line;
  for (int line_idx = 0; line_idx < 4; ++line_idx) {
    std::getline(file, line);
  }
  simdjson::dom::parser parser;
  const std::string_view lz64 = parser.parse(line)["lz64"].get_string().value();
  const auto limited = DecompressLz64(lz64, 4000);
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.status().code(), StatusCode::kResourceExhausted);
  const auto huge = DecompressLz64(std::string(kLz64InputBytesMax + 1, 'A'), kOutputMax);
  EXPECT_EQ(huge.status().code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace minpanel::ingest::internal
