#include "core/status.h"

#include <gtest/gtest.h>

namespace minpanel {
namespace {

Result<int> Half(int value) {
  if (value % 2 != 0) {
    return Status::InvalidArgument("value: must be even");
  }
  return value / 2;
}

Result<int> Quarter(int value) {
  MP_ASSIGN_OR_RETURN(int half, Half(value));
  return Half(half);
}

TEST(StatusTest, OkByDefault) {
  Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.ToString(), "OK");
}

TEST(StatusTest, ToStringNamesCodeAndMessage) {
  EXPECT_EQ(Status::ResourceExhausted("body: over 10 MiB").ToString(),
            "ResourceExhausted: body: over 10 MiB");
}

TEST(ResultTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  const Result<int> odd_half = Quarter(6);
  ASSERT_FALSE(odd_half.ok());
  EXPECT_EQ(odd_half.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(odd_half.status().message(), "value: must be even");
}

}  // namespace
}  // namespace minpanel
