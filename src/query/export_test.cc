#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "query/query.h"

namespace minpanel::query {
namespace {

TEST(ExportFormatTest, EventLineHasMixpanelShapeWithPseudonymAndSeconds) {
  Event event;
  event.name = "Signed \"Up\"";
  event.time_ms = 1'700'000'000'999;
  event.subject = Id128{1, 2};
  event.insert_id = Id128{3, 4};
  event.properties = {{"plan", Value::String("pro")},
                      {"seats", Value::Int(3)},
                      {"ratio", Value::Double(0.5)},
                      {"trial", Value::Bool(true)},
                      {"tags", Value::List({"a", "b"})},
                      {"gone", Value::Null()}};
  std::string line;
  AppendEventJsonLine(event, &line);
  EXPECT_EQ(line,
            "{\"event\":\"Signed \\\"Up\\\"\",\"properties\":{\"time\":1700000000,"
            "\"distinct_id\":\"psn_00000000000000010000000000000002\","
            "\"$insert_id\":\"00000000000000030000000000000004\",\"plan\":\"pro\",\"seats\":3,"
            "\"ratio\":0.5,\"trial\":true,\"tags\":[\"a\",\"b\"],\"gone\":null}}\n");
}

// Exports re-import: every finite double must read back bit for bit.
TEST(ExportFormatTest, DoublesReadBackExactly) {
  for (const double value : {0.1, -2.5e-300, 1.0 / 3.0, 123456789.0, 1e20, -0.0, 9.5e15}) {
    std::string out;
    AppendJsonNumber(value, &out);
    EXPECT_EQ(std::bit_cast<uint64_t>(std::strtod(out.c_str(), nullptr)),
              std::bit_cast<uint64_t>(value))
        << out;
  }
  std::string out;
  AppendJsonNumber(0.1, &out);
  EXPECT_EQ(out, "0.1");
  out.clear();
  AppendJsonNumber(std::nan(""), &out);
  EXPECT_EQ(out, "null");
}

TEST(ExportFormatTest, ControlCharactersAreEscaped) {
  std::string out;
  AppendJsonString(std::string("a\n\t\x01z", 5), &out);
  EXPECT_EQ(out, "\"a\\n\\t\\u0001z\"");
}

TEST(ExportFormatTest, TimeBeforeEpochRoundsDown) {
  Event event;
  event.time_ms = -1500;
  std::string line;
  AppendEventJsonLine(event, &line);
  EXPECT_NE(line.find("\"time\":-2,"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::query
