#include "server/path_prefix.h"

#include <gtest/gtest.h>

namespace minpanel::server {
namespace {

const std::vector<std::string> kPrefixes = {"/mp", "/ingest", "/ingest/v2"};

TEST(PathPrefixTest, StripsAPrefixBeforeARoute) {
  EXPECT_EQ(StripPathPrefix("/mp/track", kPrefixes), "/track");
  EXPECT_EQ(StripPathPrefix("/mp/track/", kPrefixes), "/track/");
  EXPECT_EQ(StripPathPrefix("/ingest/e/", kPrefixes), "/e/");
  EXPECT_EQ(StripPathPrefix("/mp/v1/batch", kPrefixes), "/v1/batch");
}

TEST(PathPrefixTest, KeepsTheQueryString) {
  EXPECT_EQ(StripPathPrefix("/mp/track?ip=1&data=e30%3D", kPrefixes), "/track?ip=1&data=e30%3D");
  // A prefix inside the query string is not a prefix of the path.
  EXPECT_EQ(StripPathPrefix("/track?next=/mp/track", kPrefixes), std::nullopt);
}

TEST(PathPrefixTest, ThePrefixAloneIsTheRoot) {
  EXPECT_EQ(StripPathPrefix("/mp", kPrefixes), "/");
  EXPECT_EQ(StripPathPrefix("/mp?x=1", kPrefixes), "/?x=1");
  EXPECT_EQ(StripPathPrefix("/mp/", kPrefixes), "/");
}

TEST(PathPrefixTest, OnlyWholeSegmentsMatch) {
  EXPECT_EQ(StripPathPrefix("/mpx/track", kPrefixes), std::nullopt);
  EXPECT_EQ(StripPathPrefix("/ingestion/e", kPrefixes), std::nullopt);
}

TEST(PathPrefixTest, TheLongestPrefixWins) {
  EXPECT_EQ(StripPathPrefix("/ingest/v2/batch", kPrefixes), "/batch");
  EXPECT_EQ(StripPathPrefix("/ingest/v3/batch", kPrefixes), "/v3/batch");
}

TEST(PathPrefixTest, StripsOnceAndLeavesUnprefixedPathsAlone) {
  EXPECT_EQ(StripPathPrefix("/mp/mp/track", kPrefixes), "/mp/track");
  EXPECT_EQ(StripPathPrefix("/track", kPrefixes), std::nullopt);
  EXPECT_EQ(StripPathPrefix("/", kPrefixes), std::nullopt);
  EXPECT_EQ(StripPathPrefix("/mp/track", {}), std::nullopt);
}

}  // namespace
}  // namespace minpanel::server
