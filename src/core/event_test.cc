#include "core/event.h"

#include <gtest/gtest.h>

namespace minpanel {
namespace {

TEST(Id128Test, HexRoundTrips) {
  const Id128 id{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(id.ToHex(), "0123456789abcdeffedcba9876543210");
  EXPECT_EQ(Id128::FromHex(id.ToHex()), id);
  EXPECT_EQ(Id128::FromHex("0123456789ABCDEFFEDCBA9876543210"), id);
}

TEST(Id128Test, FromHexRejectsWrongLengthAndDigits) {
  EXPECT_FALSE(Id128::FromHex("0123").has_value());
  EXPECT_FALSE(Id128::FromHex("0123456789abcdeffedcba987654321g").has_value());
}

TEST(ProfileOperationTest, NamesRoundTrip) {
  for (const char* name :
       {"$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"}) {
    const auto operation = ParseProfileOperation(name);
    ASSERT_TRUE(operation.has_value()) << name;
    EXPECT_EQ(ProfileOperationName(*operation), name);
  }
  EXPECT_FALSE(ParseProfileOperation("$merge").has_value());
}

TEST(ValueTest, TypesAreDistinct) {
  EXPECT_NE(Value::Int(1), Value::Double(1.0));
  EXPECT_EQ(Value::List({"a", "b"}).as_list().size(), 2U);
  EXPECT_TRUE(Value::Null().is_null());
}

}  // namespace
}  // namespace minpanel
