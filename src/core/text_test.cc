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

// The audit log hashes these bytes: every escape is pinned here.
TEST(AppendJsonStringTest, EscapesQuotesBackslashesAndControlBytesOnly) {
  std::string out = "x";
  AppendJsonString("plain", &out);
  EXPECT_EQ(out, "x\"plain\"");
  out.clear();
  AppendJsonString("a\"b\\c", &out);
  EXPECT_EQ(out, R"("a\"b\\c")");
  out.clear();
  AppendJsonString(std::string_view("\n\t\x1f\0/", 5), &out);
  EXPECT_EQ(out, R"("\u000a\u0009\u001f\u0000/")");
  out.clear();
  AppendJsonString("caf\xc3\xa9 \x7f", &out);  // UTF-8 and DEL stay as they are
  EXPECT_EQ(out, "\"caf\xc3\xa9 \x7f\"");
  out.clear();
  AppendJsonString("", &out);
  EXPECT_EQ(out, "\"\"");
}

}  // namespace
}  // namespace minpanel
