#include <gtest/gtest.h>

#include "ingest/ingest.h"

namespace minpanel::ingest {
namespace {

TEST(FormTest, PairsArePercentDecodedInOrder) {
  const auto pairs = ParseForm("b=2&a=hello%20world&c=x%2By+z");
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  ASSERT_EQ(pairs->size(), 3u);
  EXPECT_EQ((*pairs)[0], (std::pair<std::string, std::string>("b", "2")));
  EXPECT_EQ((*pairs)[1].second, "hello world");
  EXPECT_EQ((*pairs)[2].second, "x+y z");
}

TEST(FormTest, PlusIsDecodedAsSpace) {
  const auto pairs = ParseForm("data=a+b");
  ASSERT_TRUE(pairs.ok());
  EXPECT_EQ((*pairs)[0].second, "a b");
}

TEST(FormTest, PairWithoutEqualsHasEmptyValueAndEmptyPairsAreSkipped) {
  const auto pairs = ParseForm("&flag&&k=&=v&");
  ASSERT_TRUE(pairs.ok());
  ASSERT_EQ(pairs->size(), 3u);
  EXPECT_EQ((*pairs)[0], (std::pair<std::string, std::string>("flag", "")));
  EXPECT_EQ((*pairs)[1], (std::pair<std::string, std::string>("k", "")));
  EXPECT_EQ((*pairs)[2], (std::pair<std::string, std::string>("", "v")));
}

TEST(FormTest, ValueKeepsLaterEqualsSigns) {
  const auto pairs = ParseForm("data=abc==");
  ASSERT_TRUE(pairs.ok());
  EXPECT_EQ((*pairs)[0].second, "abc==");
}

TEST(FormTest, EmptyTextHasNoPairs) {
  const auto pairs = ParseForm("");
  ASSERT_TRUE(pairs.ok());
  EXPECT_TRUE(pairs->empty());
}

TEST(FormTest, MalformedPercentEscapeIsInvalid) {
  for (const char* text : {"a=%", "a=%4", "a=%zz", "%g1=b", "a=1&b=%4x"}) {
    const auto pairs = ParseForm(text);
    ASSERT_FALSE(pairs.ok()) << text;
    EXPECT_EQ(pairs.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(pairs.status().message().find("percent escape"), std::string::npos);
  }
}

TEST(FormTest, TooManyFieldsIsResourceExhausted) {
  std::string text;
  for (size_t field_idx = 0; field_idx <= kFormFieldsMax; ++field_idx) {
    text += "a=1&";
  }
  const auto pairs = ParseForm(text);
  ASSERT_FALSE(pairs.ok());
  EXPECT_EQ(pairs.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(pairs.status().message().find("kFormFieldsMax"), std::string::npos);
}

TEST(FormTest, FindFormValueReturnsTheFirstMatch) {
  const auto pairs = ParseForm("data=1&data=2&x=3");
  ASSERT_TRUE(pairs.ok());
  EXPECT_EQ(FindFormValue(*pairs, "data"), std::optional<std::string_view>("1"));
  EXPECT_EQ(FindFormValue(*pairs, "x"), std::optional<std::string_view>("3"));
  EXPECT_FALSE(FindFormValue(*pairs, "missing").has_value());
}

TEST(FormTest, EscapedNamesAreDecodedBeforeMatching) {
  const auto pairs = ParseForm("d%61ta=1");
  ASSERT_TRUE(pairs.ok());
  EXPECT_EQ(FindFormValue(*pairs, "data"), std::optional<std::string_view>("1"));
}

}  // namespace
}  // namespace minpanel::ingest
