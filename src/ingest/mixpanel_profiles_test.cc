#include <gtest/gtest.h>

#include "ingest/ingest.h"
#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using testing::kNowMs;

Result<MixpanelProfiles> Decode(std::string_view json,
                                MixpanelRoute route = MixpanelRoute::kEngage) {
  DecodeOptions options;
  options.route = route;
  options.now_ms = kNowMs;
  return DecodeMixpanelProfiles(json, options);
}

RecordError DecodeError(std::string_view json, MixpanelRoute route = MixpanelRoute::kEngage) {
  const auto decoded = Decode(json, route);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  if (!decoded.ok()) {
    return RecordError();
  }
  EXPECT_TRUE(decoded->updates.empty());
  EXPECT_EQ(decoded->errors.size(), 1u);
  return decoded->errors.empty() ? RecordError() : decoded->errors.front();
}

TEST(MixpanelProfileDecodeTest, SetBecomesOneUpdate) {
  const auto decoded = Decode(
      R"({"$token":"tok","$distinct_id":"user-1","$ip":"203.0.113.9",)"
      R"("$set":{"$email":"a@example.com","plan":"pro","seats":3}})");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->records_total, 1u);
  ASSERT_EQ(decoded->updates.size(), 1u);
  const RawProfileUpdate& update = decoded->updates[0];
  EXPECT_EQ(update.distinct_id, "user-1");
  EXPECT_EQ(update.group_key, "");
  EXPECT_EQ(update.operation, ProfileOperation::kSet);
  EXPECT_EQ(update.time_ms, kNowMs);
  EXPECT_EQ(update.client_ip, "203.0.113.9");
  const Properties expected = {{"$email", Value::String("a@example.com")},
                               {"plan", Value::String("pro")},
                               {"seats", Value::Int(3)}};
  EXPECT_EQ(update.properties, expected);
  EXPECT_EQ(decoded->tokens, std::vector<std::string>{"tok"});
}

TEST(MixpanelProfileDecodeTest, EveryOperationIsDecoded) {
  const auto decoded = Decode(
      R"([{"$distinct_id":"u","$set_once":{"first":"x"}},)"
      R"({"$distinct_id":"u","$add":{"logins":2,"score":0.5}},)"
      R"({"$distinct_id":"u","$union":{"plans":["pro"]}},)"
      R"({"$distinct_id":"u","$append":{"$transactions":{"$amount":9.99}}},)"
      R"({"$distinct_id":"u","$remove":{"plans":"free"}},)"
      R"({"$distinct_id":"u","$unset":["obsolete","old"]},)"
      R"({"$distinct_id":"u","$delete":""}])");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_TRUE(decoded->errors.empty()) << decoded->errors[0].field << decoded->errors[0].message;
  ASSERT_EQ(decoded->updates.size(), 7u);
  const auto& updates = decoded->updates;
  EXPECT_EQ(updates[0].operation, ProfileOperation::kSetOnce);
  EXPECT_EQ(updates[1].operation, ProfileOperation::kAdd);
  EXPECT_EQ(updates[1].properties,
            (Properties{{"logins", Value::Int(2)}, {"score", Value::Double(0.5)}}));
  EXPECT_EQ(updates[2].operation, ProfileOperation::kUnion);
  EXPECT_EQ(updates[2].properties, (Properties{{"plans", Value::List({"pro"})}}));
  EXPECT_EQ(updates[3].operation, ProfileOperation::kAppend);
  EXPECT_EQ(updates[3].properties, (Properties{{"$transactions.$amount", Value::Double(9.99)}}));
  EXPECT_EQ(updates[4].operation, ProfileOperation::kRemove);
  EXPECT_EQ(updates[5].operation, ProfileOperation::kUnset);
  EXPECT_EQ(updates[5].properties,
            (Properties{{"obsolete", Value::Null()}, {"old", Value::Null()}}));
  EXPECT_EQ(updates[6].operation, ProfileOperation::kDelete);
  EXPECT_TRUE(updates[6].properties.empty());
}

TEST(MixpanelProfileDecodeTest, SeveralOperationsInOneItemBecomeOneUpdateEach) {
  const auto decoded =
      Decode(R"({"$token":"t","$distinct_id":"u","$set":{"a":1},"$ignore_time":true,)"
             R"("$device_id":"d","$user_id":"u","$add":{"n":1}})");
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->updates.size(), 2u);
  EXPECT_EQ(decoded->updates[0].operation, ProfileOperation::kSet);
  EXPECT_EQ(decoded->updates[1].operation, ProfileOperation::kAdd);
  EXPECT_EQ(decoded->tokens, (std::vector<std::string>{"t", "t"}));
}

TEST(MixpanelProfileDecodeTest, GroupUpdateUsesTheGroupIdAsSubject) {
  const auto decoded = Decode(
      R"({"$token":"t","$group_key":"company","$group_id":"acme","$set":{"name":"Acme"}})",
      MixpanelRoute::kGroups);
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->updates.size(), 1u);
  EXPECT_EQ(decoded->updates[0].group_key, "company");
  EXPECT_EQ(decoded->updates[0].distinct_id, "acme");
}

TEST(MixpanelProfileDecodeTest, NumericGroupIdIsText) {
  const auto decoded =
      Decode(R"({"$group_key":"org","$group_id":0,"$delete":""})", MixpanelRoute::kGroups);
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->updates.size(), 1u);
  EXPECT_EQ(decoded->updates[0].distinct_id, "0");
}

TEST(MixpanelProfileDecodeTest, TimeModifierIsRead) {
  const auto decoded = Decode(R"({"$distinct_id":"u","$time":1705320001000,"$set":{"a":1}})");
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->updates.size(), 1u);
  EXPECT_EQ(decoded->updates[0].time_ms, 1705320001000);
  EXPECT_EQ(DecodeError(R"({"$distinct_id":"u","$time":5,"$set":{}})").field, "$time");
}

TEST(MixpanelProfileDecodeTest, MissingSubjectIsARecordError) {
  EXPECT_EQ(DecodeError(R"({"$set":{"a":1}})").field, "$distinct_id");
  EXPECT_EQ(DecodeError(R"({"$distinct_id":"null","$set":{"a":1}})").field, "$distinct_id");
  EXPECT_EQ(DecodeError(R"({"$group_id":"g","$set":{}})", MixpanelRoute::kGroups).field,
            "$group_key");
  EXPECT_EQ(DecodeError(R"({"$group_key":"","$group_id":"g","$set":{}})", MixpanelRoute::kGroups)
                .field,
            "$group_key");
  EXPECT_EQ(DecodeError(R"({"$group_key":"k","$set":{}})", MixpanelRoute::kGroups).field,
            "$group_id");
}

TEST(MixpanelProfileDecodeTest, NoOperationIsARecordError) {
  const RecordError error = DecodeError(R"({"$token":"t","$distinct_id":"u"})");
  EXPECT_EQ(error.field, "operation");
}

TEST(MixpanelProfileDecodeTest, UnknownDollarKeyIsARecordError) {
  const RecordError error = DecodeError(R"({"$distinct_id":"u","$merge":{"a":1}})");
  EXPECT_EQ(error.field, "$merge");
  EXPECT_EQ(error.message, "unknown operation");
  // Keys without '$' are not operations and are ignored.
  const auto decoded = Decode(R"({"$distinct_id":"u","note":1,"$set":{"a":1}})");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->updates.size(), 1u);
}

TEST(MixpanelProfileDecodeTest, BadOperationValueIsARecordError) {
  EXPECT_EQ(DecodeError(R"({"$distinct_id":"u","$set":[1]})").field, "$set");
  EXPECT_EQ(DecodeError(R"({"$distinct_id":"u","$unset":"a"})").field, "$unset");
  EXPECT_EQ(DecodeError(R"({"$distinct_id":"u","$unset":[1]})").field, "$unset");
  EXPECT_EQ(DecodeError(R"({"$distinct_id":"u","$add":{"n":"x"}})").field, "$add.n");
  std::string items = "1";
  for (size_t item_idx = 0; item_idx < kListItemsMax; ++item_idx) {
    items += ",1";
  }
  const RecordError list =
      DecodeError(R"({"$distinct_id":"u","$union":{"l":[)" + items + "]}}");
  EXPECT_EQ(list.field, "$union.l");
}

TEST(MixpanelProfileDecodeTest, OneBadOperationRefusesTheWholeItem) {
  const auto decoded =
      Decode(R"([{"$distinct_id":"u","$set":{"a":1},"$unset":"bad"},{"$distinct_id":"v","$set":{}}])");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->records_total, 2u);
  ASSERT_EQ(decoded->updates.size(), 1u);
  EXPECT_EQ(decoded->updates[0].distinct_id, "v");
  ASSERT_EQ(decoded->errors.size(), 1u);
  EXPECT_EQ(decoded->errors[0].index, 0u);
}

TEST(MixpanelProfileDecodeTest, NonObjectItemIsARecordError) {
  EXPECT_EQ(DecodeError("[1]").field, "record");
}

TEST(MixpanelProfileDecodeTest, BatchOverTheLimitIsRefused) {
  std::string json = "[";
  for (size_t item_idx = 0; item_idx <= kProfileUpdatesMax; ++item_idx) {
    json += item_idx == 0 ? "{}" : ",{}";
  }
  json += "]";
  const auto decoded = Decode(json);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(decoded.status().message(),
            "batch: 2001 profile updates, over the limit of 2000 per /engage request");
}

TEST(MixpanelProfileDecodeTest, MalformedJsonAndWrongRouteAreInvalid) {
  EXPECT_EQ(Decode("{").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Decode("\"x\"").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Decode("{}", MixpanelRoute::kTrack).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace minpanel::ingest
