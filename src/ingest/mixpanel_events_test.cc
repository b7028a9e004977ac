#include <gtest/gtest.h>

#include "ingest/ingest.h"
#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using testing::kNowMs;

Result<MixpanelEvents> Decode(std::string_view json, MixpanelRoute route = MixpanelRoute::kTrack) {
  DecodeOptions options;
  options.route = route;
  options.now_ms = kNowMs;
  return DecodeMixpanelEvents(json, options);
}

// Decodes one event that must be valid.
RawEvent DecodeOne(std::string_view json, MixpanelRoute route = MixpanelRoute::kTrack) {
  const auto decoded = Decode(json, route);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  if (!decoded.ok()) {
    return RawEvent();
  }
  EXPECT_TRUE(decoded->errors.empty())
      << decoded->errors.front().field << ": " << decoded->errors.front().message;
  EXPECT_EQ(decoded->events.size(), 1u);
  return decoded->events.empty() ? RawEvent() : decoded->events.front();
}

// Decodes one event that must be refused, and returns its error.
RecordError DecodeError(std::string_view json, MixpanelRoute route = MixpanelRoute::kTrack) {
  const auto decoded = Decode(json, route);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  if (!decoded.ok()) {
    return RecordError();
  }
  EXPECT_TRUE(decoded->events.empty());
  EXPECT_EQ(decoded->errors.size(), 1u);
  return decoded->errors.empty() ? RecordError() : decoded->errors.front();
}

std::string EventWith(std::string_view properties) {
  return R"({"event":"Signed Up","properties":{"distinct_id":"user-1")" +
         std::string(properties.empty() ? "" : ",") + std::string(properties) + "}}";
}

TEST(MixpanelDecodeTest, SingleObjectIsOneEvent) {
  const auto decoded = Decode(EventWith(R"("token":"tok")"));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->records_total, 1u);
  ASSERT_EQ(decoded->events.size(), 1u);
  EXPECT_EQ(decoded->events[0].name, "Signed Up");
  EXPECT_EQ(decoded->events[0].distinct_id, "user-1");
  EXPECT_EQ(decoded->event_index, std::vector<size_t>{0});
  EXPECT_EQ(decoded->tokens, std::vector<std::string>{"tok"});
}

TEST(MixpanelDecodeTest, FieldsMoveOutOfPropertiesAndTheRestKeepsClientOrder) {
  const RawEvent event = DecodeOne(EventWith(
      R"("z":1,"token":"t","time":1795685260,"$insert_id":"abc-1","ip":"203.0.113.9",)"
      R"("$current_url":"https://x.test/p?q=1","$referrer":"https://r.test/","mp_lib":"web",)"
      R"("$browser":"Chrome","a":2)"));
  EXPECT_EQ(event.time_ms, 1795685260000);
  EXPECT_EQ(event.insert_id, std::optional<std::string>("abc-1"));
  EXPECT_EQ(event.client_ip, "203.0.113.9");
  EXPECT_EQ(event.page_url, "https://x.test/p?q=1");
  EXPECT_EQ(event.referrer, "https://r.test/");
  EXPECT_EQ(event.library, "web");
  EXPECT_EQ(event.user_agent, "");
  const Properties expected = {{"z", Value::Int(1)},
                               {"$browser", Value::String("Chrome")},
                               {"a", Value::Int(2)}};
  EXPECT_EQ(event.properties, expected);
}

TEST(MixpanelDecodeTest, DollarIpIsTheClientIp) {
  const RawEvent event = DecodeOne(EventWith(R"("$ip":"198.51.100.1")"));
  EXPECT_EQ(event.client_ip, "198.51.100.1");
  EXPECT_TRUE(event.properties.empty());
}

TEST(MixpanelDecodeTest, NonStringContextValueStaysAProperty) {
  const RawEvent event = DecodeOne(EventWith(R"("$current_url":5)"));
  EXPECT_EQ(event.page_url, "");
  EXPECT_EQ(event.properties, (Properties{{"$current_url", Value::Int(5)}}));
}

TEST(MixpanelDecodeTest, ScalarTypesAreConverted) {
  const RawEvent event = DecodeOne(EventWith(
      R"("b":true,"i":-3,"d":1.5,"s":"x","n":null,"big":18446744073709551615,"e":1e3)"));
  const Properties expected = {{"b", Value::Bool(true)},
                               {"i", Value::Int(-3)},
                               {"d", Value::Double(1.5)},
                               {"s", Value::String("x")},
                               {"n", Value::Null()},
                               {"big", Value::Double(18446744073709551615.0)},
                               {"e", Value::Double(1000.0)}};
  EXPECT_EQ(event.properties, expected);
}

TEST(MixpanelDecodeTest, LongStringIsTruncatedOnAUtf8Boundary) {
  // 'é' is two bytes; an odd prefix puts the cut inside one.
  std::string value = "a";
  while (value.size() < kStringValueBytesMax + 10) {
    value += "é";
  }
  const RawEvent event = DecodeOne(EventWith(R"("s":")" + value + "\""));
  const std::string& kept = event.properties.at(0).value.as_string();
  EXPECT_EQ(kept.size(), kStringValueBytesMax - 1);
  EXPECT_EQ(kept, value.substr(0, kStringValueBytesMax - 1));
}

TEST(MixpanelDecodeTest, ListItemsBecomeText) {
  const RawEvent event =
      DecodeOne(EventWith(R"("tags":["a",1,2.5,true,null,{"k": [1, 2]},[ "x" ]])"));
  const StringList expected = {"a", "1", "2.5", "true", "null", R"({"k":[1,2]})", R"(["x"])"};
  EXPECT_EQ(event.properties.at(0).value, Value::List(expected));
}

TEST(MixpanelDecodeTest, ListOverLimitIsARecordError) {
  std::string list = "[";
  for (size_t item_idx = 0; item_idx <= kListItemsMax; ++item_idx) {
    list += item_idx == 0 ? "1" : ",1";
  }
  list += "]";
  const RecordError error = DecodeError(EventWith(R"("tags":)" + list));
  EXPECT_EQ(error.field, "properties.tags");
  EXPECT_NE(error.message.find("kListItemsMax"), std::string::npos);
}

TEST(MixpanelDecodeTest, NestedObjectsAreFlattenedWithDots) {
  const RawEvent event = DecodeOne(EventWith(R"("a":{"b":1,"c":{"d":"x","e":{"f":true}}},"g":2)"));
  const Properties expected = {{"a.b", Value::Int(1)},
                               {"a.c.d", Value::String("x")},
                               {"a.c.e.f", Value::Bool(true)},
                               {"g", Value::Int(2)}};
  EXPECT_EQ(event.properties, expected);
}

TEST(MixpanelDecodeTest, ObjectsDeeperThanTheNestingLimitBecomeJson) {
  const RawEvent event = DecodeOne(EventWith(R"("a":{"b":{"c":{"d":{"e":1}}}})"));
  EXPECT_EQ(event.properties, (Properties{{"a.b.c.d", Value::String(R"({"e":1})")}}));
}

TEST(MixpanelDecodeTest, EmptyNestedObjectAddsNothing) {
  const RawEvent event = DecodeOne(EventWith(R"("a":{},"b":1)"));
  EXPECT_EQ(event.properties, (Properties{{"b", Value::Int(1)}}));
}

TEST(MixpanelDecodeTest, DuplicateKeysKeepTheFirstPositionAndTheLastValue) {
  const RawEvent event = DecodeOne(EventWith(R"("a":1,"b":2,"a":3,"c.d":4,"c":{"d":5})"));
  const Properties expected = {{"a", Value::Int(3)}, {"b", Value::Int(2)}, {"c.d", Value::Int(5)}};
  EXPECT_EQ(event.properties, expected);
}

TEST(MixpanelDecodeTest, FractionalSecondsAreConverted) {
  const RawEvent event = DecodeOne(EventWith(R"("time":1795685260.831)"));
  EXPECT_EQ(event.time_ms, 1795685260831);
}

TEST(MixpanelDecodeTest, TimeInMillisecondsIsDetected) {
  EXPECT_EQ(DecodeOne(EventWith(R"("time":1795685504072)")).time_ms, 1795685504072);
  EXPECT_EQ(DecodeOne(EventWith(R"("time":1795685504072.5)")).time_ms, 1795685504073);
}

TEST(MixpanelDecodeTest, MissingTimeDefaultsToNowOnTrack) {
  EXPECT_EQ(DecodeOne(EventWith("")).time_ms, kNowMs);
  EXPECT_EQ(DecodeOne(EventWith(R"("time":null)")).time_ms, kNowMs);
  // Marked as the arrival time (the policy then gives a random insert id);
  // a time the client sent is not.
  EXPECT_TRUE(DecodeOne(EventWith("")).arrival_time);
  EXPECT_TRUE(DecodeOne(EventWith(R"("time":null)")).arrival_time);
  EXPECT_FALSE(DecodeOne(EventWith(R"("time":1795685504072)")).arrival_time);
}

TEST(MixpanelDecodeTest, MissingTimeIsARecordErrorOnImport) {
  const RecordError error = DecodeError(EventWith(""), MixpanelRoute::kImport);
  EXPECT_EQ(error.field, "properties.time");
  EXPECT_EQ(error.message, "required on /import");
}

TEST(MixpanelDecodeTest, ImportAcceptsOldEvents) {
  const RawEvent event = DecodeOne(EventWith(R"("time":1705320001000)"), MixpanelRoute::kImport);
  EXPECT_EQ(event.time_ms, 1705320001000);
}

TEST(MixpanelDecodeTest, TimeBefore1971IsARecordError) {
  for (const char* time : {"31535999", "0", "-5", "-9223372036854775808", "-1.5e300"}) {
    const RecordError error = DecodeError(EventWith(std::string(R"("time":)") + time));
    EXPECT_EQ(error.field, "properties.time") << time;
    EXPECT_NE(error.message.find("kEventTimeMinMs"), std::string::npos) << time;
  }
  EXPECT_EQ(DecodeOne(EventWith(R"("time":31536000)")).time_ms, kEventTimeMinMs);
}

TEST(MixpanelDecodeTest, TimeTooFarInTheFutureIsARecordError) {
  const int64_t latest_ms = kNowMs + kEventTimeFutureMaxMs;
  for (const std::string& time : {std::to_string(latest_ms + 1), std::string("1e300"),
                                 std::string("18446744073709551615"),
                                 std::to_string(latest_ms / 1000 + 1)}) {
    const RecordError error = DecodeError(EventWith(R"("time":)" + time));
    EXPECT_EQ(error.field, "properties.time") << time;
    EXPECT_NE(error.message.find("kEventTimeFutureMaxMs"), std::string::npos) << time;
  }
  EXPECT_EQ(DecodeOne(EventWith(R"("time":)" + std::to_string(latest_ms))).time_ms, latest_ms);
}

TEST(MixpanelDecodeTest, NonNumericTimeIsARecordError) {
  const RecordError error = DecodeError(EventWith(R"("time":"1795685260")"));
  EXPECT_EQ(error.field, "properties.time");
  EXPECT_NE(error.message.find("number"), std::string::npos);
}

TEST(MixpanelDecodeTest, NumericDistinctIdBecomesText) {
  EXPECT_EQ(DecodeOne(R"({"event":"e","properties":{"distinct_id":12345}})").distinct_id, "12345");
  EXPECT_EQ(DecodeOne(R"({"event":"e","properties":{"distinct_id":1.5}})").distinct_id, "1.5");
}

TEST(MixpanelDecodeTest, MissingDistinctIdIsARecordError) {
  for (const char* json : {R"({"event":"e","properties":{"a":1}})", R"({"event":"e"})",
                           R"({"event":"e","properties":{"distinct_id":null}})"}) {
    const RecordError error = DecodeError(json);
    EXPECT_EQ(error.field, "properties.distinct_id") << json;
    EXPECT_EQ(error.message, "required") << json;
  }
}

TEST(MixpanelDecodeTest, NonScalarDistinctIdIsARecordError) {
  const RecordError error = DecodeError(R"({"event":"e","properties":{"distinct_id":["u"]}})");
  EXPECT_EQ(error.field, "properties.distinct_id");
}

TEST(MixpanelDecodeTest, BlockedDistinctIdIsARecordError) {
  for (const char* id : {"anon", "NULL", " undefined ", "0", "-1", "", "00000000-0000-0000-0000-000000000000",
                         "[]", "N/A", "<nil>"}) {
    const RecordError error =
        DecodeError(R"({"event":"e","properties":{"distinct_id":")" + std::string(id) + "\"}}");
    EXPECT_EQ(error.field, "properties.distinct_id") << id;
    EXPECT_NE(error.message.find("blocklist"), std::string::npos) << id;
  }
  const RecordError numeric = DecodeError(R"({"event":"e","properties":{"distinct_id":0}})");
  EXPECT_EQ(numeric.field, "properties.distinct_id");
}

TEST(MixpanelDecodeTest, BlocklistIsCaseInsensitiveAndTrimmed) {
  EXPECT_TRUE(IsBlockedDistinctId("Anonymous"));
  EXPECT_TRUE(IsBlockedDistinctId("\tNone\n"));
  EXPECT_TRUE(IsBlockedDistinctId("  "));
  EXPECT_TRUE(IsBlockedDistinctId("FALSE"));
  EXPECT_FALSE(IsBlockedDistinctId("user-1"));
  EXPECT_FALSE(IsBlockedDistinctId("00000000-0000-0000-0000-000000000001"));
  EXPECT_FALSE(IsBlockedDistinctId("anonymously"));
  EXPECT_FALSE(IsBlockedDistinctId(std::string(300, 'a')));
}

TEST(MixpanelDecodeTest, DistinctIdOverLimitIsARecordError) {
  const RecordError error = DecodeError(R"({"event":"e","properties":{"distinct_id":")" +
                                        std::string(kDistinctIdBytesMax + 1, 'u') + "\"}}");
  EXPECT_EQ(error.field, "properties.distinct_id");
  EXPECT_NE(error.message.find("kDistinctIdBytesMax"), std::string::npos);
}

TEST(MixpanelDecodeTest, InsertIdOfThirtySixAllowedCharactersIsKept) {
  const std::string id = "0123456789abcdefABCDEF-0123456789xyz";
  ASSERT_EQ(id.size(), kInsertIdBytesMax);
  EXPECT_EQ(DecodeOne(EventWith(R"("$insert_id":")" + id + "\"")).insert_id,
            std::optional<std::string>(id));
}

TEST(MixpanelDecodeTest, BadInsertIdIsARecordErrorThatEchoesIt) {
  for (const std::string& id : {std::string(kInsertIdBytesMax + 1, 'a'), std::string("a_b"),
                               std::string("a b"), std::string("é"), std::string("")}) {
    const RecordError error = DecodeError(EventWith(R"("$insert_id":")" + id + "\""));
    EXPECT_EQ(error.field, "properties.$insert_id") << id;
    EXPECT_NE(error.message.find("kInsertIdBytesMax"), std::string::npos) << id;
    EXPECT_EQ(error.insert_id, id.substr(0, kInsertIdBytesMax)) << id;
  }
  EXPECT_EQ(DecodeError(EventWith(R"("$insert_id":7)")).field, "properties.$insert_id");
}

TEST(MixpanelDecodeTest, OtherRecordErrorsEchoTheInsertId) {
  const RecordError error =
      DecodeError(R"({"event":"","properties":{"distinct_id":"u","$insert_id":"ins-1"}})");
  EXPECT_EQ(error.field, "event");
  EXPECT_EQ(error.insert_id, "ins-1");
}

TEST(MixpanelDecodeTest, BadEventNameIsARecordError) {
  const std::string long_name(kEventNameBytesMax + 1, 'n');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"properties":{"distinct_id":"u"}})", "required"},
      {R"({"event":null,"properties":{"distinct_id":"u"}})", "required"},
      {R"({"event":5,"properties":{"distinct_id":"u"}})", "must be a string"},
      {R"({"event":"","properties":{"distinct_id":"u"}})", "must not be empty"},
      {R"({"event":")" + long_name + R"(","properties":{"distinct_id":"u"}})",
       "256 bytes, over the limit of 255 (kEventNameBytesMax)"},
  };
  for (const auto& [json, message] : cases) {
    const RecordError error = DecodeError(json);
    EXPECT_EQ(error.field, "event") << json;
    EXPECT_EQ(error.message, message) << json;
  }
}

TEST(MixpanelDecodeTest, NonObjectRecordOrPropertiesIsARecordError) {
  EXPECT_EQ(DecodeError(R"(["not an event"])").field, "record");
  EXPECT_EQ(DecodeError(R"({"event":"e","properties":[1]})").field, "properties");
}

TEST(MixpanelDecodeTest, TooManyPropertiesIsARecordError) {
  std::string properties;
  for (size_t property_idx = 0; property_idx < kPropertiesPerEventMax; ++property_idx) {
    properties += (property_idx == 0 ? "\"p" : ",\"p") + std::to_string(property_idx) + "\":1";
  }
  EXPECT_EQ(DecodeOne(EventWith(properties)).properties.size(), kPropertiesPerEventMax);
  const RecordError error = DecodeError(EventWith(properties + R"(,"one_more":1)"));
  EXPECT_EQ(error.field, "properties");
  EXPECT_NE(error.message.find("kPropertiesPerEventMax"), std::string::npos);
}

TEST(MixpanelDecodeTest, BadPropertyKeyIsARecordError) {
  const std::string long_key(kPropertyKeyBytesMax + 1, 'k');
  RecordError error = DecodeError(EventWith("\"" + long_key + "\":1"));
  EXPECT_EQ(error.field, "properties");
  EXPECT_NE(error.message.find("kPropertyKeyBytesMax"), std::string::npos);
  // A flattened key counts in full.
  error = DecodeError(EventWith(R"("a":{")" + std::string(kPropertyKeyBytesMax, 'k') + R"(":1})"));
  EXPECT_NE(error.message.find("kPropertyKeyBytesMax"), std::string::npos);
  error = DecodeError(EventWith(R"("":1)"));
  EXPECT_EQ(error.message, "empty property key");
}

TEST(MixpanelDecodeTest, EventOverTheByteLimitIsARecordError) {
  std::string properties;
  const std::string value(kStringValueBytesMax, 'v');
  for (size_t property_idx = 0; property_idx * kStringValueBytesMax <= kEventBytesMax;
       ++property_idx) {
    properties += (property_idx == 0 ? "\"p" : ",\"p") + std::to_string(property_idx) + "\":\"" +
                  value + "\"";
  }
  const RecordError error = DecodeError(EventWith(properties));
  EXPECT_EQ(error.field, "event");
  EXPECT_NE(error.message.find("kEventBytesMax"), std::string::npos);
}

TEST(MixpanelDecodeTest, RecordErrorsDoNotStopTheBatch) {
  const auto decoded = Decode(
      R"([{"event":"a","properties":{"distinct_id":"u1","token":"t1"}},)"
      R"({"event":"b","properties":{"distinct_id":"anon","$insert_id":"x-1"}},)"
      R"({"event":"c","properties":{"distinct_id":"u3"}}])");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->records_total, 3u);
  ASSERT_EQ(decoded->events.size(), 2u);
  EXPECT_EQ(decoded->events[0].name, "a");
  EXPECT_EQ(decoded->events[1].name, "c");
  EXPECT_EQ(decoded->event_index, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(decoded->tokens, (std::vector<std::string>{"t1", ""}));
  ASSERT_EQ(decoded->errors.size(), 1u);
  EXPECT_EQ(decoded->errors[0].index, 1u);
  EXPECT_EQ(decoded->errors[0].insert_id, "x-1");
}

TEST(MixpanelDecodeTest, EmptyBatchHasNoEvents) {
  const auto decoded = Decode("[]");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->records_total, 0u);
  EXPECT_TRUE(decoded->events.empty());
}

TEST(MixpanelDecodeTest, MalformedJsonIsInvalid) {
  for (const char* json : {"", "{", R"({"event":})", "[1,]", "{\"a\":1}}", "nul"}) {
    const auto decoded = Decode(json);
    ASSERT_FALSE(decoded.ok()) << json;
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument) << json;
    EXPECT_EQ(decoded.status().message().rfind("data: malformed JSON: ", 0), 0u) << json;
  }
}

TEST(MixpanelDecodeTest, InvalidUtf8IsInvalid) {
  const auto decoded = Decode(EventWith("\"s\":\"\xC3\x28\""));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(decoded.status().message(), "data: malformed JSON: invalid UTF-8");
}

TEST(MixpanelDecodeTest, ScalarRootIsInvalid) {
  const auto decoded = Decode("42");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().message(), "data: must be a JSON object or array");
}

std::string Nested(size_t levels) {
  return std::string(levels, '[') + "1" + std::string(levels, ']');
}

TEST(MixpanelDecodeTest, DepthOverTheLimitIsRefused) {
  // The event object and its properties are two levels.
  const size_t inner_max = kJsonDepthMax - 2;
  const std::string at_limit = EventWith(R"("x":)" + Nested(inner_max));
  const std::string over_limit = EventWith(R"("x":)" + Nested(inner_max + 1));
  EXPECT_TRUE(Decode(at_limit).ok());
  EXPECT_TRUE(Decode("[" + at_limit + "]").ok());
  for (const std::string& json : {over_limit, "[" + over_limit + "]"}) {
    const auto decoded = Decode(json);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(decoded.status().message().find("kJsonDepthMax"), std::string::npos);
  }
}

std::string Batch(size_t events) {
  std::string json = "[";
  for (size_t event_idx = 0; event_idx < events; ++event_idx) {
    json += (event_idx == 0 ? "" : ",") + EventWith(R"("time":1705320001)");
  }
  return json + "]";
}

TEST(MixpanelDecodeTest, BatchOverFiftyOnTrackIsRefused) {
  EXPECT_EQ(Decode(Batch(kTrackEventsMax))->events.size(), kTrackEventsMax);
  const auto decoded = Decode(Batch(kTrackEventsMax + 1));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(decoded.status().message(),
            "batch: 51 events, over the limit of 50 per /track request");
}

TEST(MixpanelDecodeTest, BatchOverTwoThousandOnImportIsRefused) {
  const auto at_limit = Decode(Batch(kImportEventsMax), MixpanelRoute::kImport);
  ASSERT_TRUE(at_limit.ok());
  EXPECT_EQ(at_limit->events.size(), kImportEventsMax);
  const auto decoded = Decode(Batch(kImportEventsMax + 1), MixpanelRoute::kImport);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(decoded.status().message(),
            "batch: 2001 events, over the limit of 2000 per /import request");
}

TEST(MixpanelDecodeTest, ProfileRouteIsRefused) {
  const auto decoded = Decode(EventWith(""), MixpanelRoute::kEngage);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
}

TEST(MixpanelDecodeTest, LargeDocumentThenSmallOneStillDecodes) {
  // Exercises the parser's release of oversized buffers between documents.
  std::string big = EventWith(R"("pad":")" + std::string(5 << 20, 'p') + "\"");
  EXPECT_TRUE(Decode(big).ok());
  EXPECT_EQ(DecodeOne(EventWith(R"("a":1)")).properties.size(), 1u);
}

}  // namespace
}  // namespace minpanel::ingest
