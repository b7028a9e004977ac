#include "core/text.h"

#include <gtest/gtest.h>

#include <string>

namespace minpanel {
namespace {

TEST(TrimSpacesAndTabsTest, CutsSpacesAndTabsAtBothEnds) {
  EXPECT_EQ(TrimSpacesAndTabs("  a b\t"), "a b");
  EXPECT_EQ(TrimSpacesAndTabs("\t \tBasic x \t "), "Basic x");
  EXPECT_EQ(TrimSpacesAndTabs("plain"), "plain");
}

TEST(TrimSpacesAndTabsTest, KeepsInnerBlanks) {
  EXPECT_EQ(TrimSpacesAndTabs(" a \t b "), "a \t b");
}

TEST(TrimSpacesAndTabsTest, BlankOrEmptyTextBecomesEmpty) {
  EXPECT_EQ(TrimSpacesAndTabs(""), "");
  EXPECT_EQ(TrimSpacesAndTabs(" "), "");
  EXPECT_EQ(TrimSpacesAndTabs(" \t\t "), "");
}

// Control characters and other spaces are the caller's to refuse or keep.
TEST(TrimSpacesAndTabsTest, KeepsOtherWhitespace) {
  EXPECT_EQ(TrimSpacesAndTabs("\r\n a \n"), "\r\n a \n");
  EXPECT_EQ(TrimSpacesAndTabs(" \va\f "), "\va\f");
  EXPECT_EQ(TrimSpacesAndTabs(" \xc2\xa0" "a "), "\xc2\xa0" "a");  // U+00A0
  EXPECT_EQ(TrimSpacesAndTabs(std::string_view(" \0 ", 3)), std::string_view("\0", 1));
}

TEST(TrimSpacesAndTabsTest, ViewsTheSameBytes) {
  const std::string text = "  value  ";
  const std::string_view trimmed = TrimSpacesAndTabs(text);
  EXPECT_EQ(trimmed.data(), text.data() + 2);
  EXPECT_EQ(trimmed.size(), 5U);
}

}  // namespace
}  // namespace minpanel
