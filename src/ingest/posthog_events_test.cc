#include "ingest/posthog_events.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>

#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using testing::kNowMs;

// 2026-11-26T09:31:44.429Z, the first event of the posthog-node capture.
constexpr int64_t kCaptureMs = 1795685504429;

Result<PostHogBatch> Decode(std::string_view json, std::string_view client_ip = "") {
  PostHogDecodeOptions options;
  options.now_ms = kNowMs;
  options.client_ip = client_ip;
  return DecodePostHogEvents(json, options);
}

PostHogBatch DecodeOk(std::string_view json, std::string_view client_ip = "") {
  auto decoded = Decode(json, client_ip);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  return decoded.ok() ? std::move(decoded).value() : PostHogBatch();
}

std::string DecodeError(std::string_view json) {
  const auto decoded = Decode(json);
  EXPECT_FALSE(decoded.ok());
  return decoded.ok() ? std::string() : decoded.status().message();
}

const Value* Find(const Properties& properties, std::string_view key) {
  return FindProperty(properties, key);
}

// The shape posthog-node 5.70.0 sends (docs: sdk-wire-protocols.md).
constexpr std::string_view kNodeBatch = R"({"api_key":"phc_key","batch":[
 {"event":"signed up","distinct_id":"user-1","uuid":"01a2172b-87cc-7087-9f2e-0451f42a1660",
  "timestamp":"2026-11-26T09:31:44.429Z",
  "properties":{"plan":"pro","seats":3,"tags":["a","b"],"$groups":{"company":"acme"},
   "$lib":"posthog-node","$lib_version":"5.70.0","$is_server":true,"$geoip_disable":true}},
 {"event":"$identify","distinct_id":"user-1","uuid":"01a2172b-87cc-7087-9f2e-0451f42a1661",
  "timestamp":"2026-11-26T09:31:44.430Z",
  "properties":{"$set":{"email":"someone@example.com","name":"Test User"},
   "$set_once":{"signup_run":"r1"},"$lib":"posthog-node","$geoip_disable":true}},
 {"event":"$groupidentify","distinct_id":"$company_acme","uuid":"01a2172b-87cc-7087-9f2e-0451f42a1662",
  "timestamp":"2026-11-26T09:31:44.430Z",
  "properties":{"$group_type":"company","$group_key":"acme","$group_set":{"name":"Acme"},
   "$lib":"posthog-node","$geoip_disable":true}}],
 "sent_at":"2026-11-26T09:31:44.431Z"})";

TEST(PostHogDecodeTest, NodeBatchBecomesEventsAndProfileUpdates) {
  const PostHogBatch batch = DecodeOk(kNodeBatch, "198.51.100.7");
  EXPECT_EQ(batch.token, "phc_key");
  EXPECT_EQ(batch.records_total, 3u);
  ASSERT_EQ(batch.events.size(), 3u);
  const RawEvent& signed_up = batch.events[0];
  EXPECT_EQ(signed_up.name, "signed up");
  EXPECT_EQ(signed_up.distinct_id, "user-1");
  EXPECT_EQ(signed_up.insert_id, "01a2172b-87cc-7087-9f2e-0451f42a1660");
  EXPECT_EQ(signed_up.library, "posthog-node");
  // $geoip_disable: the peer is the customer's server, not the person.
  EXPECT_EQ(signed_up.client_ip, "");
  ASSERT_NE(Find(signed_up.properties, "$groups.company"), nullptr);
  EXPECT_EQ(*Find(signed_up.properties, "$groups.company"), Value::String("acme"));
  EXPECT_EQ(*Find(signed_up.properties, "seats"), Value::Int(3));
  EXPECT_EQ(*Find(signed_up.properties, "tags"), Value::List({"a", "b"}));
  EXPECT_EQ(Find(signed_up.properties, "$lib"), nullptr);
  EXPECT_NE(Find(signed_up.properties, "$geoip_disable"), nullptr);

  const RawEvent& identify = batch.events[1];
  EXPECT_EQ(identify.name, "$identify");
  EXPECT_EQ(Find(identify.properties, "$set.email"), nullptr);
  EXPECT_EQ(Find(identify.properties, "$set"), nullptr);

  const RawEvent& group = batch.events[2];
  EXPECT_EQ(group.distinct_id, "$company_acme");
  EXPECT_EQ(Find(group.properties, "$group_key"), nullptr);
  EXPECT_EQ(*Find(group.properties, "$groups.company"), Value::String("acme"));
  EXPECT_EQ(*Find(group.properties, "$group_type"), Value::String("company"));
  EXPECT_EQ(Find(group.properties, "$group_set.name"), nullptr);

  ASSERT_EQ(batch.profile_updates.size(), 3u);
  const RawProfileUpdate& set = batch.profile_updates[0];
  EXPECT_EQ(set.operation, ProfileOperation::kSet);
  EXPECT_EQ(set.distinct_id, "user-1");
  EXPECT_EQ(set.group_key, "");
  EXPECT_EQ(set.time_ms, identify.time_ms);
  EXPECT_EQ(*Find(set.properties, "email"), Value::String("someone@example.com"));
  EXPECT_EQ(batch.profile_updates[1].operation, ProfileOperation::kSetOnce);
  EXPECT_EQ(*Find(batch.profile_updates[1].properties, "signup_run"), Value::String("r1"));
  const RawProfileUpdate& group_set = batch.profile_updates[2];
  EXPECT_EQ(group_set.operation, ProfileOperation::kSet);
  EXPECT_EQ(group_set.group_key, "company");
  EXPECT_EQ(group_set.distinct_id, "acme");
  EXPECT_EQ(*Find(group_set.properties, "name"), Value::String("Acme"));
}

TEST(PostHogDecodeTest, SentAtCorrectsTheClientClock) {
  // The client's clock runs 10 minutes fast: sent_at 2 s after the event.
  const PostHogBatch batch = DecodeOk(R"({"api_key":"k","sent_at":"2026-11-26T09:41:52Z",
      "batch":[{"event":"e","distinct_id":"u","timestamp":"2026-11-26T09:41:50Z"}]})");
  ASSERT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.events[0].time_ms, kNowMs - 2000);
}

TEST(PostHogDecodeTest, WithoutSentAtTheTimestampIsTakenAsIs) {
  const PostHogBatch batch = DecodeOk(
      R"([{"event":"e","distinct_id":"u","timestamp":"2026-11-26T09:31:44.429Z","api_key":"k"}])");
  ASSERT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.events[0].time_ms, kCaptureMs);
}

TEST(PostHogDecodeTest, IgnoreSentAtKeepsTheTimestamp) {
  const PostHogBatch batch = DecodeOk(R"({"sent_at":"2026-11-26T10:00:00Z","batch":[
      {"event":"e","distinct_id":"u","timestamp":"2024-01-15T12:00:00Z",
       "properties":{"$ignore_sent_at":true}}]})");
  ASSERT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.events[0].time_ms, 1705320000000);
}

TEST(PostHogDecodeTest, HistoricalMigrationIsReported) {
  const PostHogBatch batch = DecodeOk(R"({"api_key":"k","historical_migration":true,
      "sent_at":"2026-11-26T09:31:50Z",
      "batch":[{"event":"e","distinct_id":"u","timestamp":"2024-01-15T12:00:01.000Z"}]})");
  EXPECT_TRUE(batch.historical_migration);
  ASSERT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.events[0].time_ms, 1705320001000);
}

TEST(PostHogDecodeTest, OffsetAndNothingAtAll) {
  const PostHogBatch batch = DecodeOk(R"([{"event":"a","distinct_id":"u","offset":1500},
      {"event":"b","distinct_id":"u"}])");
  ASSERT_EQ(batch.events.size(), 2u);
  EXPECT_EQ(batch.events[0].time_ms, kNowMs - 1500);
  EXPECT_EQ(batch.events[1].time_ms, kNowMs);
  EXPECT_FALSE(batch.events[0].arrival_time);
  EXPECT_TRUE(batch.events[1].arrival_time);  // the policy gives it a random insert id
}

TEST(PostHogDecodeTest, SingleEventWithTokenAndDistinctIdInProperties) {
  const PostHogBatch batch = DecodeOk(
      R"({"event":"$pageview","properties":{"distinct_id":42,"token":"phc_t","$ip":"203.0.113.9"}})",
      "198.51.100.7");
  EXPECT_EQ(batch.token, "phc_t");
  EXPECT_EQ(batch.records_total, 1u);
  ASSERT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.events[0].distinct_id, "42");
  EXPECT_EQ(batch.events[0].client_ip, "203.0.113.9");
  EXPECT_TRUE(batch.events[0].properties.empty());
  EXPECT_FALSE(batch.events[0].insert_id.has_value());
}

TEST(PostHogDecodeTest, BrowserEventMapsContextAndTopLevelSet) {
  const PostHogBatch batch = DecodeOk(R"({"api_key":"phc_t","batch":[{"uuid":"01a21732-6bcb",
      "event":"$identify","timestamp":"2026-11-26T09:31:50.084Z","properties":{
      "distinct_id":"user-2","$current_url":"https://app.example/p?x=1","$referrer":"$direct",
      "$raw_user_agent":"Mozilla/5.0 Chrome","$lib":"web","$insert_id":"3tprylfjcrm2t45l",
      "$browser":"Chrome","token":"phc_t","$anon_distinct_id":"anon-1",
      "$set":{"plan":"pro"}},
      "$set":{"email":"a@example.com"},"$set_once":{"$initial_referrer":"$direct"}}],
      "sent_at":"2026-11-26T09:31:50.115Z"})",
                                      "198.51.100.7");
  ASSERT_EQ(batch.events.size(), 1u);
  const RawEvent& event = batch.events[0];
  EXPECT_EQ(event.page_url, "https://app.example/p?x=1");
  EXPECT_EQ(event.referrer, "$direct");
  EXPECT_EQ(event.user_agent, "Mozilla/5.0 Chrome");
  EXPECT_EQ(event.library, "web");
  EXPECT_EQ(event.client_ip, "198.51.100.7");   // a browser: the peer is the person
  EXPECT_EQ(event.insert_id, "01a21732-6bcb");  // uuid wins over $insert_id
  EXPECT_EQ(Find(event.properties, "$insert_id"), nullptr);
  EXPECT_EQ(*Find(event.properties, "$browser"), Value::String("Chrome"));
  EXPECT_EQ(*Find(event.properties, "$anon_distinct_id"), Value::String("anon-1"));
  EXPECT_EQ(event.time_ms, kNowMs - 31);
  ASSERT_EQ(batch.profile_updates.size(), 3u);
  // properties.$set first, then the event's own $set and $set_once.
  EXPECT_EQ(*Find(batch.profile_updates[0].properties, "plan"), Value::String("pro"));
  EXPECT_EQ(*Find(batch.profile_updates[1].properties, "email"), Value::String("a@example.com"));
  EXPECT_EQ(batch.profile_updates[2].operation, ProfileOperation::kSetOnce);
}

// posthog-node's Capture V1 (POSTHOG_CAPTURE_MODE=v1): token and library
// from the headers, created_at for sent_at, options and top-level session ids.
TEST(PostHogDecodeTest, CaptureV1Batch) {
  PostHogDecodeOptions options;
  options.now_ms = kNowMs;
  options.token = "phc_bearer";
  options.library = "posthog-node/5.70.0";
  const auto decoded = DecodePostHogEvents(R"({"created_at":"2026-11-26T09:31:52.000Z","batch":[
      {"event":"a","uuid":"01a21732-0000-7000-8000-000000000001","distinct_id":"u",
       "timestamp":"2026-11-26T09:31:51.000Z","session_id":"s-1","window_id":"w-1","options":{},
       "properties":{"plan":"pro","$set":{"plan":"pro"}}},
      {"event":"b","uuid":"01a21732-0000-7000-8000-000000000002","distinct_id":"u",
       "timestamp":"2024-01-15T12:00:00.000Z","options":{"disable_skew_correction":true},
       "properties":{}}]})",
                                           options);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->token, "phc_bearer");
  ASSERT_EQ(decoded->events.size(), 2u);
  const RawEvent& first = decoded->events[0];
  EXPECT_EQ(first.time_ms, kNowMs - 1000);  // created_at corrects the clock
  EXPECT_EQ(first.library, "posthog-node");
  EXPECT_EQ(*Find(first.properties, "$session_id"), Value::String("s-1"));
  EXPECT_EQ(*Find(first.properties, "$window_id"), Value::String("w-1"));
  EXPECT_EQ(decoded->events[1].time_ms, 1705320000000);  // disable_skew_correction
  ASSERT_EQ(decoded->profile_updates.size(), 1u);
  // A token in the body must be the bearer's.
  const auto other = DecodePostHogEvents(R"({"api_key":"phc_other","batch":[]})", options);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().message(), "api_key: a request must carry one project token");
}

TEST(PostHogDecodeTest, InsertIdIsTheFallbackWithoutUuid) {
  const PostHogBatch batch =
      DecodeOk(R"({"event":"e","distinct_id":"u","properties":{"$insert_id":"abc-123"}})");
  ASSERT_EQ(batch.events.size(), 1u);
  EXPECT_EQ(batch.events[0].insert_id, "abc-123");
}

TEST(PostHogDecodeTest, UnsetBecomesAnUnsetUpdate) {
  const PostHogBatch batch =
      DecodeOk(R"({"event":"$set","distinct_id":"u","properties":{"$unset":["old","older"]}})");
  ASSERT_EQ(batch.profile_updates.size(), 1u);
  EXPECT_EQ(batch.profile_updates[0].operation, ProfileOperation::kUnset);
  ASSERT_EQ(batch.profile_updates[0].properties.size(), 2u);
  EXPECT_TRUE(batch.profile_updates[0].properties[1].value.is_null());
}

TEST(PostHogDecodeTest, EmptyBatchIsNothing) {
  const PostHogBatch batch = DecodeOk(R"({"api_key":"k","batch":[]})");
  EXPECT_EQ(batch.records_total, 0u);
  EXPECT_TRUE(batch.events.empty());
  EXPECT_EQ(batch.token, "k");
}

TEST(PostHogDecodeTest, OneBadRecordRefusesTheRequestNamingIt) {
  EXPECT_EQ(DecodeError(R"({"batch":[{"event":"e","distinct_id":"u"},{"event":"e"}]})"),
            "batch[1].distinct_id: required (at the top of the event or in properties)");
  EXPECT_EQ(DecodeError(R"([{"distinct_id":"u"}])"), "[0].event: required");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","timestamp":1795685504})"),
            "timestamp: must be an ISO-8601 time such as 2026-11-26T09:24:18.507Z");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","timestamp":"2026-11-26T12:00:00Z"})"),
            "timestamp: more than 3600 s in the future (kEventTimeFutureMaxMs)");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","timestamp":"1970-01-02"})"),
            "timestamp: before 1971-01-01 (kEventTimeMinMs)");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","uuid":"not a uuid!"})"),
            "uuid: must be 1 to 36 characters of [A-Za-z0-9-] (kInsertIdBytesMax)");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":" "})"), "distinct_id: must not be empty");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","offset":1.5})"),
            "offset: must be an integer of ms, at most 31622400000 either way "
            "(kPostHogOffsetMsMax)");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","properties":{"$set":"x"}})"),
            "properties.$set: must be a JSON object");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","properties":{"$group_set":{}}})"),
            "properties.$group_set: only on $groupidentify");
  EXPECT_EQ(DecodeError(R"({"event":"$groupidentify","distinct_id":"u",
      "properties":{"$group_key":"acme"}})"),
            "properties.$group_type: required on $groupidentify: a string of 1 to 247 bytes");
  EXPECT_EQ(DecodeError(R"({"event":"e","distinct_id":"u","properties":"x"})"),
            "properties: must be a JSON object");
  EXPECT_EQ(DecodeError(R"([1])"), "[0].record: each event must be a JSON object");
}

// Every remaining record rule, each with its exact message.
TEST(PostHogDecodeTest, EveryRecordRuleNamesItsField) {
  const std::string long_name(kEventNameBytesMax + 1, 'n');
  const std::string long_type(kPropertyKeyBytesMax, 't');
  std::string many_names = "[";
  for (size_t name_idx = 0; name_idx <= kPropertiesPerEventMax; ++name_idx) {
    many_names += (name_idx == 0 ? "\"p" : ",\"p") + std::to_string(name_idx) + "\"";
  }
  many_names += "]";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"event":7,"distinct_id":"u"})", "event: must be a string"},
      {R"({"event":"","distinct_id":"u"})", "event: must not be empty"},
      {R"({"event":")" + long_name + R"(","distinct_id":"u"})",
       "event: 256 bytes, over the limit of 255 (kEventNameBytesMax)"},
      {R"({"event":"e","distinct_id":true})", "distinct_id: must be a string or a number"},
      {R"({"event":"e","properties":{"distinct_id":[1]}})",
       "properties.distinct_id: must be a string or a number"},
      {R"({"event":"e","distinct_id":"u","uuid":7})",
       "uuid: must be 1 to 36 characters of [A-Za-z0-9-] (kInsertIdBytesMax)"},
      {R"({"event":"e","distinct_id":"u","properties":{"$insert_id":"a b"}})",
       "properties.$insert_id: must be 1 to 36 characters of [A-Za-z0-9-] (kInsertIdBytesMax)"},
      {R"({"event":"e","distinct_id":"u","properties":{"token":1}})",
       "properties.token: must be a string (the project token)"},
      {R"({"event":"e","distinct_id":"u","offset":99999999999999})",
       "offset: must be an integer of ms, at most 31622400000 either way (kPostHogOffsetMsMax)"},
      {R"({"event":"e","distinct_id":"u","offset":-3600001})",
       "offset: more than 3600 s in the future (kEventTimeFutureMaxMs)"},
      {R"({"event":"e","distinct_id":"u","$unset":"x"})",
       "$unset: must be an array of property names"},
      {R"({"event":"e","distinct_id":"u","$unset":[""]})",
       "$unset: each name must be a string of 1 to 255 bytes (kPropertyKeyBytesMax)"},
      {R"({"event":"e","distinct_id":"u","$unset":)" + many_names + "}",
       "$unset: more than 255 names (kPropertiesPerEventMax)"},
      {R"({"event":"e","distinct_id":"u","$set_once":[1]})", "$set_once: must be a JSON object"},
      {R"({"event":"e","distinct_id":"u","$set":{"":1}})", "$set: empty property key"},
      {R"({"event":"$groupidentify","distinct_id":"u","properties":{"$group_type":"c"}})",
       "properties.$group_key: required on $groupidentify"},
      {R"({"event":"$groupidentify","distinct_id":"u","properties":{"$group_type":"c","$group_key":""}})",
       "properties.$group_key: must not be empty"},
      {R"({"event":"$groupidentify","distinct_id":"u","properties":{"$group_type":")" + long_type +
           R"(","$group_key":"k"}})",
       "properties.$group_type: required on $groupidentify: a string of 1 to 247 bytes"},
      {R"({"event":"$groupidentify","distinct_id":"u","properties":{"$group_type":"c","$group_key":"k","$group_set":1}})",
       "properties.$group_set: must be a JSON object"},
  };
  for (const auto& [json, message] : cases) {
    EXPECT_EQ(DecodeError(json), message) << json;
  }
}

TEST(PostHogDecodeTest, PayloadAndEncodingLimits) {
  const auto huge = Decode(std::string(kPostHogPayloadBytesMax + 1, ' '));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(huge.status().message(),
            "body: 16777217 bytes of JSON, over the limit of 16777216 "
            "(kPostHogPayloadBytesMax)");
  EXPECT_EQ(DecodeError("{\"event\":\"\xff\"}"), "body: malformed JSON: invalid UTF-8");
  EXPECT_EQ(DecodeError(R"({"batch":[],"sent_at":5})"),
            "sent_at: must be an ISO-8601 time such as 2026-11-26T09:24:18.507Z");
  EXPECT_EQ(DecodeError(R"({"batch":[],"created_at":"soon"})"),
            "created_at: must be an ISO-8601 time such as 2026-11-26T09:24:18.507Z");
  EXPECT_EQ(DecodeError(R"({"api_key":"a","token":"b","batch":[]})"),
            "token: a request must carry one project token");
}

TEST(PostHogDecodeTest, OneRequestOneToken) {
  EXPECT_EQ(DecodeError(R"({"api_key":"a","batch":[{"event":"e","distinct_id":"u",
      "properties":{"token":"b"}}]})"),
            "batch[0].properties.token: a request must carry one project token");
  EXPECT_EQ(DecodeError(R"([{"event":"e","distinct_id":"u","api_key":"a"},
      {"event":"e","distinct_id":"u","api_key":"b"}])"),
            "[1].api_key: a request must carry one project token");
  EXPECT_EQ(DecodeError(R"({"api_key":7,"batch":[]})"),
            "api_key: must be a string (the project token)");
}

TEST(PostHogDecodeTest, RequestLevelFailures) {
  EXPECT_EQ(DecodeError(R"({"batch":{}})"), "batch: must be an array of events");
  EXPECT_EQ(DecodeError(R"({"batch":[],"sent_at":"yesterday"})"),
            "sent_at: must be an ISO-8601 time such as 2026-11-26T09:24:18.507Z");
  EXPECT_EQ(DecodeError("\"text\""), "body: must be a JSON object or array of events");
  EXPECT_TRUE(DecodeError("{").starts_with("body: malformed JSON"));
}

TEST(PostHogDecodeTest, OverTheEventLimitIsResourceExhausted) {
  std::string json = R"({"batch":[)";
  for (size_t event_idx = 0; event_idx <= kPostHogEventsMax; ++event_idx) {
    json += event_idx == 0 ? "" : ",";
    json += R"({"event":"e","distinct_id":"u"})";
  }
  json += "]}";
  const auto decoded = Decode(json);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(decoded.status().message(),
            "batch: 1001 events, over the limit of 1000 per request (kPostHogEventsMax)");
}

TEST(PostHogDecodeTest, DeepNestingIsResourceExhausted) {
  std::string nested = "1";
  for (size_t level = 0; level < kJsonDepthMax; ++level) {
    nested = "{\"a\":" + nested + "}";
  }
  // The event object and its properties add two levels: one too many.
  const auto decoded =
      Decode(R"({"batch":[{"event":"e","distinct_id":"u","properties":{"p":)" + nested + "}}]}");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kResourceExhausted);
}

TEST(PostHogDecodeTest, PropertyLimitsNameTheRecord) {
  std::string properties;
  for (size_t property_idx = 0; property_idx <= kPropertiesPerEventMax; ++property_idx) {
    properties += (property_idx == 0 ? "\"p" : ",\"p") + std::to_string(property_idx) + "\":1";
  }
  EXPECT_EQ(DecodeError(R"({"batch":[{"event":"e","distinct_id":"u","properties":{)" + properties +
                        "}}]}"),
            "batch[0].properties: more than 255 properties (kPropertiesPerEventMax)");
}

TEST(PostHogTimeTest, ParsesWhatTheSdksWrite) {
  int64_t time_ms = 0;
  ASSERT_TRUE(ParseIsoTimeMs("2026-11-26T09:31:44.429Z", &time_ms));
  EXPECT_EQ(time_ms, kCaptureMs);
  ASSERT_TRUE(ParseIsoTimeMs("2026-11-26T10:31:44.429+01:00", &time_ms));
  EXPECT_EQ(time_ms, kCaptureMs);
  ASSERT_TRUE(ParseIsoTimeMs("2026-11-26T04:01:44.429123-0530", &time_ms));
  EXPECT_EQ(time_ms, kCaptureMs);
  ASSERT_TRUE(ParseIsoTimeMs("2026-11-26 09:31:44.429", &time_ms));
  EXPECT_EQ(time_ms, kCaptureMs);
  ASSERT_TRUE(ParseIsoTimeMs("2024-01-15", &time_ms));
  EXPECT_EQ(time_ms, 1705276800000);
  ASSERT_TRUE(ParseIsoTimeMs("2024-02-29T00:00Z", &time_ms));
  EXPECT_EQ(time_ms, 1709164800000);
  ASSERT_TRUE(ParseIsoTimeMs("2016-12-31T23:59:60Z", &time_ms));
  EXPECT_EQ(time_ms, 1483228799999);
  ASSERT_TRUE(ParseIsoTimeMs("1969-12-31T23:59:59.5Z", &time_ms));
  EXPECT_EQ(time_ms, -500);
  for (const std::string_view bad :
       {"", "2026", "2026-11-26T", "2026-13-01", "2025-02-29", "2026-11-26T24:00Z",
        "2026-11-26T09:31:44.Z", "2026-11-26T09:31:44Zjunk", "2026-11-26T09:31:44+1",
        "2026-11-26X09:31", "2026-11-26T09:31:44.1234567891Z", "+2026-11-26", "1795685504"}) {
    EXPECT_FALSE(ParseIsoTimeMs(bad, &time_ms)) << bad;
  }
}

Result<std::string> Extract(std::string_view query, std::string_view body,
                            ContentEncoding encoding = ContentEncoding::kIdentity) {
  PostHogBodyLimits limits;
  limits.decompressed_bytes_max = 1 << 20;
  limits.ratio_max = 100;
  std::string storage;
  MP_ASSIGN_OR_RETURN(const std::string_view payload,
                      ExtractPostHogPayload(query, body, encoding, limits, &storage));
  return std::string(payload);
}

constexpr std::string_view kSmall = R"({"api_key":"k","batch":[]})";

TEST(PostHogPayloadTest, EveryFormTheSdksSend) {
  const std::string gzip = testing::Gzip(kSmall);
  // posthog-node: Content-Encoding: gzip.
  EXPECT_EQ(Extract("", gzip, ContentEncoding::kGzip).value(), kSmall);
  // posthog-js: gzip as text/plain, no header, maybe no query either.
  EXPECT_EQ(Extract("", gzip).value(), kSmall);
  EXPECT_EQ(Extract("compression=gzip-js&ver=1.449.2", gzip).value(), kSmall);
  // Plain JSON, base64 form body, JSON form body, GET data=.
  EXPECT_EQ(Extract("", kSmall).value(), kSmall);
  EXPECT_EQ(
      Extract("compression=base64", "data=" + testing::UrlEncode(testing::Base64(kSmall))).value(),
      kSmall);
  EXPECT_EQ(Extract("", "data=" + testing::UrlEncode(kSmall)).value(), kSmall);
  EXPECT_EQ(Extract("data=" + testing::UrlEncode(testing::Base64(kSmall)), "").value(), kSmall);
  // Old posthog-js: LZString base64 (lz-string 1.5.0's output for
  // {"event":"e","distinct_id":"u"}), '+' left unescaped in the form.
  const std::string_view lz64 = "N4IgpgbmB2AuIC5wgDQgCYEsDOtPQGNYB9TdREAVxAF8g===";
  EXPECT_EQ(Extract("compression=lz64", "data=" + std::string(lz64)).value(),
            R"({"event":"e","distinct_id":"u"})");
  EXPECT_EQ(Extract("compression=lz64&data=" + testing::UrlEncode(lz64), "").value(),
            R"({"event":"e","distinct_id":"u"})");
}

TEST(PostHogPayloadTest, RefusalsNameTheField) {
  EXPECT_EQ(Extract("compression=lz64", "data=x").status().message(),
            "data: not valid lz64 (LZString base64)");
  EXPECT_EQ(Extract("compression=lz64", "").status().message(),
            "data: missing (compression=lz64 expects a data= field)");
  EXPECT_EQ(Extract("compression=brotli", kSmall).status().message(),
            "compression: unknown value (accepted: gzip-js, gzip, base64, lz64)");
  EXPECT_EQ(Extract("compression=gzip-js", kSmall).status().message(),
            "compression: gzip-js, but the body is not gzip");
  EXPECT_EQ(Extract("", "").status().code(), StatusCode::kInvalidArgument);
  // A bomb: 2 MiB of spaces inflate past the 1 MiB limit.
  const auto bomb = Extract("", testing::Gzip(std::string(2 << 20, ' ')));
  EXPECT_EQ(bomb.status().code(), StatusCode::kResourceExhausted);
}

// Every PostHog request captured from posthog-node 5.70.0 and posthog-js
// 1.449.2 (shared/reference/sdk-captures-sample.jsonl) decodes into as many
// events as it carried, with their uuids.
TEST(PostHogCapturesTest, EveryCapturedRequestDecodes) {
  std::ifstream file(std::string(MINPANEL_INGEST_TESTDATA_DIR) + "/posthog-captures.jsonl");
  ASSERT_TRUE(file.is_open());
  simdjson::dom::parser parser;
  std::string line;
  size_t captures = 0;
  while (std::getline(file, line)) {
    const simdjson::dom::element record = parser.parse(line);
    const std::string_view encoded = record["rawBodyBase64"].get_string().value();
    std::string body(encoded.size(), '\0');
    size_t body_bytes = 0;
    ASSERT_EQ(sodium_base642bin(reinterpret_cast<unsigned char*>(body.data()), body.size(),
                                encoded.data(), encoded.size(), nullptr, &body_bytes, nullptr,
                                sodium_base64_VARIANT_ORIGINAL),
              0);
    body.resize(body_bytes);
    const bool gzip_header = record["content_encoding"].get_string().value() == "gzip";
    const auto payload =
        Extract("", body, gzip_header ? ContentEncoding::kGzip : ContentEncoding::kIdentity);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    const PostHogBatch batch = DecodeOk(*payload);
    const int64_t seq = record["seq"].get_int64().value();
    ASSERT_EQ(batch.events.size(), record["events"].get_uint64().value()) << seq;
    EXPECT_EQ(batch.token, "phc_testprojectkey") << seq;
    size_t event_idx = 0;
    for (const simdjson::dom::element uuid : record["uuids"].get_array()) {
      EXPECT_EQ(batch.events[event_idx++].insert_id, uuid.get_string().value()) << seq;
    }
    ++captures;
  }
  EXPECT_EQ(captures, 11u);
}

}  // namespace
}  // namespace minpanel::ingest
