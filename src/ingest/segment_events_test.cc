#include "ingest/segment_events.h"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <sodium.h>

#include <fstream>

#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using testing::kNowMs;

Result<SegmentBatch> Decode(std::string_view json, std::optional<SegmentCall> call = std::nullopt,
                            std::string_view basic_write_key = "") {
  SegmentDecodeOptions options;
  options.now_ms = kNowMs;
  options.call = call;
  options.basic_write_key = basic_write_key;
  return DecodeSegment(json, options);
}

SegmentBatch DecodeOk(std::string_view json, std::optional<SegmentCall> call = std::nullopt,
                      std::string_view basic_write_key = "") {
  auto decoded = Decode(json, call, basic_write_key);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  return decoded.ok() ? std::move(decoded).value() : SegmentBatch();
}

std::string DecodeError(std::string_view json, std::optional<SegmentCall> call = std::nullopt,
                        std::string_view basic_write_key = "") {
  const auto decoded = Decode(json, call, basic_write_key);
  EXPECT_FALSE(decoded.ok());
  return decoded.ok() ? std::string() : decoded.status().message();
}

StatusCode DecodeCode(std::string_view json, std::optional<SegmentCall> call = std::nullopt) {
  const auto decoded = Decode(json, call);
  return decoded.ok() ? StatusCode::kOk : decoded.status().code();
}

std::string Text(const Properties& properties, std::string_view key) {
  const Value* value = FindProperty(properties, key);
  return value != nullptr && value->type() == Value::Type::kString ? value->as_string()
                                                                   : "<absent>";
}

// A /v1/batch body with one message (its JSON members, without braces).
std::string Batch(std::string_view message, std::string_view envelope = "") {
  return "{\"batch\":[{" + std::string(message) + "}]" +
         (envelope.empty() ? "" : "," + std::string(envelope)) + "}";
}

std::string CapturedBody() {
  std::ifstream file(std::string(MINPANEL_INGEST_TESTDATA_DIR) + "/segment-captures.jsonl");
  EXPECT_TRUE(file.is_open());
  std::string line;
  std::getline(file, line);
  simdjson::dom::parser parser;
  const std::string_view base64 = parser.parse(line)["rawBodyBase64"].get_string().value();
  std::string bytes(base64.size(), '\0');
  size_t length = 0;
  EXPECT_EQ(
      sodium_base642bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), base64.data(),
                        base64.size(), nullptr, &length, nullptr, sodium_base64_VARIANT_ORIGINAL),
      0);
  bytes.resize(length);
  return bytes;
}

TEST(SegmentDecodeTest, AnalyticsNodeCaptureBecomesEventsAndProfileUpdates) {
  const SegmentBatch batch = DecodeOk(CapturedBody(), std::nullopt, "test-write-key");
  EXPECT_EQ(batch.write_key, "test-write-key");
  ASSERT_EQ(batch.records_total, 12u);
  ASSERT_EQ(batch.events.size(), 12u);
  const std::string user = batch.events[1].distinct_id;
  EXPECT_TRUE(user.starts_with("user-seg-node-")) << user;

  const RawEvent& identify = batch.events[0];
  EXPECT_EQ(identify.name, "$identify");
  EXPECT_EQ(identify.distinct_id, user) << "userId, not anonymousId, is the subject";
  EXPECT_TRUE(Text(identify.properties, "anonymousId").starts_with("anon-seg-node-"))
      << "the anonymousId → userId link is kept";
  EXPECT_EQ(identify.library, "@segment/analytics-node");
  EXPECT_EQ(Text(identify.properties, "context.library.version"), "3.1.0");
  ASSERT_TRUE(identify.insert_id.has_value());
  EXPECT_TRUE(identify.insert_id->starts_with("node-next-"));
  EXPECT_EQ(FindProperty(identify.properties, "email"), nullptr) << "traits go to the profile";
  EXPECT_EQ(FindProperty(identify.properties, "_metadata.nodeVersion"), nullptr);

  const RawEvent& track = batch.events[1];
  EXPECT_EQ(track.name, "Signed Up");
  EXPECT_EQ(Text(track.properties, "plan"), "pro");
  EXPECT_EQ(FindProperty(track.properties, "seats")->as_int(), 3);
  // sentAt clock-skew correction: the SDK sent 5 ms after the call, the
  // server received it at kNowMs.
  EXPECT_LE(track.time_ms, kNowMs);
  EXPECT_GE(track.time_ms, kNowMs - 100);

  const RawEvent& page = batch.events[2];
  EXPECT_EQ(page.name, "$pageview");
  EXPECT_EQ(page.page_url, "https://example.com/pricing") << "properties.url is the page URL";
  EXPECT_EQ(FindProperty(page.properties, "url"), nullptr);
  EXPECT_EQ(Text(page.properties, "name"), "Pricing");
  EXPECT_EQ(Text(page.properties, "category"), "Docs");

  EXPECT_EQ(batch.events[3].name, "$screen");
  EXPECT_EQ(Text(batch.events[3].properties, "name"), "Home");

  const RawEvent& group = batch.events[4];
  EXPECT_EQ(group.name, "$groupidentify");
  EXPECT_TRUE(Text(group.properties, "groupId").starts_with("acme-seg-node-"));

  const RawEvent& alias = batch.events[5];
  EXPECT_EQ(alias.name, "$create_alias");
  EXPECT_EQ(alias.distinct_id, user);
  EXPECT_TRUE(Text(alias.properties, "previousId").starts_with("anon-seg-node-"));

  ASSERT_EQ(batch.profile_updates.size(), 2u);
  const RawProfileUpdate& person = batch.profile_updates[0];
  EXPECT_EQ(person.distinct_id, user);
  EXPECT_EQ(person.group_key, "");
  EXPECT_EQ(person.operation, ProfileOperation::kSet);
  EXPECT_TRUE(Text(person.properties, "email").ends_with("@example.com"));
  EXPECT_EQ(Text(person.properties, "name"), "Test User");
  const RawProfileUpdate& company = batch.profile_updates[1];
  EXPECT_EQ(company.group_key, "groupId");
  EXPECT_EQ(company.distinct_id, Text(group.properties, "groupId"));
  EXPECT_EQ(Text(company.properties, "name"), "Acme");
}

TEST(SegmentDecodeTest, SingleMessageRoutesTakeTheCallFromThePath) {
  const SegmentBatch track =
      DecodeOk(R"({"event":"Clicked","userId":"u1","writeKey":"wk","properties":{"x":1}})",
               SegmentCall::kTrack);
  ASSERT_EQ(track.events.size(), 1u);
  EXPECT_EQ(track.events[0].name, "Clicked");
  EXPECT_EQ(track.write_key, "wk");
  EXPECT_EQ(track.events[0].time_ms, kNowMs) << "no timestamp: the receive time";
  EXPECT_TRUE(track.events[0].arrival_time);

  const SegmentBatch identify =
      DecodeOk(R"({"anonymousId":"a1","traits":{"plan":"pro"}})", SegmentCall::kIdentify);
  ASSERT_EQ(identify.events.size(), 1u);
  EXPECT_EQ(identify.events[0].distinct_id, "a1") << "anonymousId alone is the subject";
  EXPECT_EQ(FindProperty(identify.events[0].properties, "anonymousId"), nullptr);
  ASSERT_EQ(identify.profile_updates.size(), 1u);
  EXPECT_EQ(identify.profile_updates[0].distinct_id, "a1");

  EXPECT_EQ(DecodeOk(R"({"type":"page","userId":"u"})", SegmentCall::kPage).events[0].name,
            "$pageview");
  EXPECT_EQ(DecodeError(R"({"type":"identify","userId":"u"})", SegmentCall::kTrack),
            "type: must be \"track\" (or absent) on /v1/track");
}

TEST(SegmentDecodeTest, ParsesCallNamesAndAnalyticsJsLetters) {
  EXPECT_EQ(ParseSegmentCall("track"), SegmentCall::kTrack);
  EXPECT_EQ(ParseSegmentCall("t"), SegmentCall::kTrack);
  EXPECT_EQ(ParseSegmentCall("identify"), SegmentCall::kIdentify);
  EXPECT_EQ(ParseSegmentCall("p"), SegmentCall::kPage);
  EXPECT_EQ(ParseSegmentCall("s"), SegmentCall::kScreen);
  EXPECT_EQ(ParseSegmentCall("g"), SegmentCall::kGroup);
  EXPECT_EQ(ParseSegmentCall("a"), SegmentCall::kAlias);
  EXPECT_EQ(ParseSegmentCall("batch"), std::nullopt);
  EXPECT_EQ(ParseSegmentCall("x"), std::nullopt);
  EXPECT_EQ(ParseSegmentCall(""), std::nullopt);
  EXPECT_EQ(SegmentCallName(SegmentCall::kScreen), "screen");
}

TEST(SegmentDecodeTest, BatchContextIsMergedIntoEachMessage) {
  const SegmentBatch batch = DecodeOk(R"js({"batch":[
        {"type":"track","event":"a","userId":"u","context":{"ip":"203.0.113.9","app":{"name":"mine"}}},
        {"type":"track","event":"b","userId":"u"}],
       "context":{"ip":"198.51.100.1","userAgent":"Mozilla/5.0 (X11)","app":{"name":"shared"},
                  "page":{"url":"https://shop.example.test/cart?coupon=1","referrer":"https://ref.example.test/x",
                          "search":"?coupon=1","title":"Cart"},
                  "locale":"en-GB"}})js");
  ASSERT_EQ(batch.events.size(), 2u);
  const RawEvent& own = batch.events[0];
  EXPECT_EQ(own.client_ip, "203.0.113.9") << "the message's own context wins";
  EXPECT_EQ(Text(own.properties, "context.app.name"), "mine");
  EXPECT_EQ(own.user_agent, "Mozilla/5.0 (X11)") << "members it lacks come from the batch";
  EXPECT_EQ(Text(own.properties, "context.locale"), "en-GB");
  const RawEvent& shared = batch.events[1];
  EXPECT_EQ(shared.client_ip, "198.51.100.1");
  EXPECT_EQ(shared.page_url, "https://shop.example.test/cart?coupon=1");
  EXPECT_EQ(shared.referrer, "https://ref.example.test/x");
  EXPECT_EQ(Text(shared.properties, "context.app.name"), "shared");
  EXPECT_EQ(Text(shared.properties, "context.page.title"), "Cart");
  EXPECT_EQ(FindProperty(shared.properties, "context.page.search"), nullptr);
  EXPECT_EQ(FindProperty(shared.properties, "context.ip"), nullptr);
  EXPECT_EQ(FindProperty(shared.properties, "context.userAgent"), nullptr);
}

TEST(SegmentDecodeTest, ContextPersonalDataLeavesOrBecomesAPersonId) {
  const SegmentBatch batch = DecodeOk(Batch(
      R"("type":"track","event":"e","userId":"u","context":{
        "location":{"latitude":51.5,"longitude":-0.12,"city":"London"},
        "device":{"id":"dev-1","advertisingId":"ad-1","token":"push-1","model":"Pixel"},
        "groupId":"org-7","traits":{"email":"x@example.test"}})"));
  const Properties& properties = batch.events[0].properties;
  EXPECT_EQ(FindProperty(properties, "context.location.latitude"), nullptr);
  EXPECT_EQ(FindProperty(properties, "context.location.longitude"), nullptr);
  EXPECT_EQ(Text(properties, "context.location.city"), "London");
  EXPECT_EQ(Text(properties, "$device_id"), "dev-1");
  EXPECT_EQ(FindProperty(properties, "context.device.advertisingId"), nullptr);
  EXPECT_EQ(FindProperty(properties, "context.device.token"), nullptr);
  EXPECT_EQ(Text(properties, "context.device.model"), "Pixel");
  EXPECT_EQ(Text(properties, "groupId"), "org-7");
  // Left for the policy, whose person keys name it.
  EXPECT_EQ(Text(properties, "context.traits.email"), "x@example.test");
}

TEST(SegmentDecodeTest, TimeFollowsSegmentsClockSkewRule) {
  // 2026-11-26T09:31:40Z is kNowMs - 10 s.
  const auto time_of = [](std::string_view members, std::string_view envelope = "") {
    const SegmentBatch batch = DecodeOk(Batch(
        "\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\"," + std::string(members), envelope));
    return batch.events.empty() ? 0 : batch.events[0].time_ms;
  };
  EXPECT_EQ(time_of(R"("timestamp":"2026-11-26T09:31:40Z")"), kNowMs - 10'000)
      << "no sentAt: the timestamp as sent";
  // The client's clock is an hour fast: sentAt says 10:31:45, the event
  // happened 5 s before sending.
  EXPECT_EQ(time_of(R"("timestamp":"2026-11-26T10:31:40Z")", R"("sentAt":"2026-11-26T10:31:45Z")"),
            kNowMs - 5'000);
  EXPECT_EQ(time_of(R"("timestamp":"2026-11-26T10:31:40Z","sentAt":"2026-11-26T10:31:42Z")",
                    R"("sentAt":"2026-11-26T10:31:45Z")"),
            kNowMs - 2'000)
      << "the message's sentAt wins over the batch's";
  EXPECT_EQ(
      time_of(R"("timestamp":"2026-11-26T09:31:00Z","originalTimestamp":"2026-11-26T09:31:30Z")"),
      kNowMs - 20'000)
      << "originalTimestamp is the client's time when both are sent";
  EXPECT_EQ(time_of(R"("sentAt":"2026-11-26T09:31:45Z")"), kNowMs) << "no client time: now";
  EXPECT_EQ(time_of(R"("timestamp":"2025-01-15T12:00:00.250+01:00")"), 1736938800250)
      << "a historical import keeps its time";
}

TEST(SegmentDecodeTest, TimeRefusalsNameTheField) {
  const std::string track = R"("type":"track","event":"e","userId":"u",)";
  EXPECT_EQ(DecodeError(Batch(track + R"("timestamp":"yesterday")")),
            "batch[0].timestamp: must be an ISO-8601 time such as "
            "2026-11-26T09:24:36.748Z");
  EXPECT_EQ(DecodeError(Batch(track + R"("timestamp":1795685510)")),
            "batch[0].timestamp: must be an ISO-8601 time such as "
            "2026-11-26T09:24:36.748Z");
  EXPECT_EQ(DecodeError(Batch(track + R"("originalTimestamp":"x")")),
            "batch[0].originalTimestamp: must be an ISO-8601 time such as "
            "2026-11-26T09:24:36.748Z");
  EXPECT_EQ(DecodeError(Batch(track + R"("sentAt":"x")")),
            "batch[0].sentAt: must be an ISO-8601 time such as "
            "2026-11-26T09:24:36.748Z");
  EXPECT_EQ(DecodeError(Batch(track.substr(0, track.size() - 1), R"("sentAt":"x")")),
            "sentAt: must be an ISO-8601 time such as 2026-11-26T09:24:36.748Z");
  EXPECT_EQ(DecodeError(Batch(track + R"("timestamp":"2999-01-01T00:00:00Z")")),
            "batch[0].timestamp: more than 3600 s in the future "
            "(kEventTimeFutureMaxMs)");
  EXPECT_EQ(DecodeError(Batch(track + R"("originalTimestamp":"1970-01-02T00:00:00Z")")),
            "batch[0].originalTimestamp: before 1971-01-01 (kEventTimeMinMs)");
}

TEST(SegmentDecodeTest, MessageIdIsTheInsertId) {
  const std::string track = R"("type":"track","event":"e","userId":"u")";
  const SegmentBatch batch = DecodeOk(Batch(track + R"(,"messageId":"ajs-next-abc 1")"));
  ASSERT_TRUE(batch.events[0].insert_id.has_value());
  EXPECT_EQ(*batch.events[0].insert_id, "ajs-next-abc 1");
  EXPECT_FALSE(DecodeOk(Batch(track)).events[0].insert_id.has_value())
      << "none sent: the policy hashes the content";
  const std::string rule =
      "batch[0].messageId: must be a string of 1 to 255 "
      "bytes (kSegmentMessageIdBytesMax)";
  EXPECT_EQ(DecodeError(Batch(track + R"(,"messageId":7)")), rule);
  EXPECT_EQ(DecodeError(Batch(track + R"(,"messageId":"")")), rule);
  EXPECT_EQ(DecodeError(Batch(track + ",\"messageId\":\"" + std::string(256, 'm') + "\"")), rule);
  EXPECT_TRUE(Decode(Batch(track + ",\"messageId\":\"" + std::string(255, 'm') + "\"")).ok());
}

TEST(SegmentDecodeTest, SubjectRules) {
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e")")),
            "batch[0].userId: required, or anonymousId (one of them names the "
            "person)");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","userId":"","anonymousId":null)")),
            "batch[0].userId: required, or anonymousId (one of them names the "
            "person)");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","userId":true)")),
            "batch[0].userId: must be a string or a number");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","anonymousId":["a"])")),
            "batch[0].anonymousId: must be a string or a number");
  EXPECT_EQ(DecodeError(Batch("\"type\":\"track\",\"event\":\"e\",\"userId\":\"" +
                              std::string(256, 'u') + "\"")),
            "batch[0].userId: 256 bytes, over the limit of 255 "
            "(kDistinctIdBytesMax)");
  const SegmentBatch numeric = DecodeOk(Batch(R"("type":"track","event":"e","userId":42)"));
  EXPECT_EQ(numeric.events[0].distinct_id, "42");
  const SegmentBatch both =
      DecodeOk(Batch(R"("type":"track","event":"e","userId":"u","anonymousId":"a")"));
  EXPECT_EQ(both.events[0].distinct_id, "u");
  EXPECT_EQ(Text(both.events[0].properties, "anonymousId"), "a");
  const SegmentBatch same =
      DecodeOk(Batch(R"("type":"track","event":"e","userId":"u","anonymousId":"u")"));
  EXPECT_EQ(FindProperty(same.events[0].properties, "anonymousId"), nullptr);
}

TEST(SegmentDecodeTest, CallRules) {
  EXPECT_EQ(DecodeError(Batch(R"("event":"e","userId":"u")")),
            "batch[0].type: required: track, identify, page, screen, group or alias");
  EXPECT_EQ(DecodeError(Batch(R"("type":"t","event":"e","userId":"u")")),
            "batch[0].type: must be one of track, identify, page, screen, "
            "group, alias");
  EXPECT_EQ(DecodeError(Batch(R"("type":"purchase","userId":"u")")),
            "batch[0].type: must be one of track, identify, page, screen, "
            "group, alias");
  EXPECT_EQ(DecodeError(Batch(R"("type":3,"userId":"u")")),
            "batch[0].type: must be a string: track, identify, page, screen, "
            "group or alias");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","userId":"u")")),
            "batch[0].event: required on track");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":1,"userId":"u")")),
            "batch[0].event: must be a string");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"","userId":"u")")),
            "batch[0].event: must not be empty");
  EXPECT_EQ(DecodeError(Batch("\"type\":\"track\",\"userId\":\"u\",\"event\":\"" +
                              std::string(256, 'e') + "\"")),
            "batch[0].event: 256 bytes, over the limit of 255 (kEventNameBytesMax)");
  EXPECT_EQ(DecodeError(Batch(R"("type":"group","userId":"u")")),
            "batch[0].groupId: required on group");
  EXPECT_EQ(DecodeError(Batch(R"("type":"group","userId":"u","groupId":{})")),
            "batch[0].groupId: must be a string or a number");
  EXPECT_EQ(DecodeError(Batch(R"("type":"alias","anonymousId":"a","previousId":"p")")),
            "batch[0].userId: required on alias");
  EXPECT_EQ(DecodeError(Batch(R"("type":"alias","userId":"u")")),
            "batch[0].previousId: required on alias");
  EXPECT_EQ(DecodeError(Batch(R"("type":"page","userId":"u","name":5)")),
            "batch[0].name: must be a string");
  EXPECT_EQ(DecodeError(Batch(R"("type":"screen","userId":"u","category":[])")),
            "batch[0].category: must be a string");
}

TEST(SegmentDecodeTest, ObjectsMustBeObjects) {
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","userId":"u","properties":[1])")),
            "batch[0].properties: must be a JSON object");
  EXPECT_EQ(DecodeError(Batch(R"("type":"identify","userId":"u","traits":"x")")),
            "batch[0].traits: must be a JSON object");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","userId":"u","context":1)")),
            "batch[0].context: must be a JSON object");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","userId":"u","context":{"ip":1})")),
            "batch[0].context.ip: must be a string");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","userId":"u")", R"("context":[])")),
            "context: must be a JSON object");
  EXPECT_EQ(DecodeError(R"({"batch":{}})"), "batch: must be an array of messages");
  EXPECT_EQ(DecodeError(R"({"writeKey":"k"})"), "batch: required, an array of messages");
  EXPECT_EQ(DecodeError(R"([{"type":"track"}])"),
            "body: must be a JSON object {\"batch\": [messages]}");
  EXPECT_EQ(DecodeError(R"({"batch":[1]})"), "batch[0]: must be a JSON object (one message)");
  EXPECT_EQ(DecodeError(R"([1])", SegmentCall::kTrack),
            "body: must be a JSON object (one message)");
  EXPECT_EQ(DecodeError(R"({"batch":[)"),
            "body: malformed JSON: The JSON document has an improper structure: "
            "missing or superfluous commas, braces, missing keys, etc.");
}

TEST(SegmentDecodeTest, TypedContextFieldsMustBeStrings) {
  const std::string track = R"("type":"track","event":"e","userId":"u","context":)";
  EXPECT_EQ(DecodeError(Batch(track + R"({"userAgent":{}})")),
            "batch[0].context.userAgent: must be a string");
  EXPECT_EQ(DecodeError(Batch(track + R"({"page":{"url":3}})")),
            "batch[0].context.page.url: must be a string");
  EXPECT_EQ(DecodeError(Batch(track + R"({"page":{"referrer":[]}})")),
            "batch[0].context.page.referrer: must be a string");
  EXPECT_EQ(DecodeError(Batch(track + R"({"library":{"name":true}})")),
            "batch[0].context.library.name: must be a string");
  EXPECT_EQ(DecodeError(Batch(track + R"({"groupId":{}})")),
            "batch[0].context.groupId: must be a string or a number");
  // null is absent, as everywhere in Segment's messages.
  const SegmentBatch nulls =
      DecodeOk(Batch(track + R"({"ip":null,"userAgent":null,"page":{"url":null},"groupId":null})"));
  EXPECT_EQ(nulls.events[0].client_ip, "");
  EXPECT_EQ(FindProperty(nulls.events[0].properties, "groupId"), nullptr);
}

TEST(SegmentDecodeTest, PropertyLimitsNameTheirContainer) {
  std::string many = R"("type":"identify","userId":"u","traits":{)";
  for (size_t trait_idx = 0; trait_idx <= kPropertiesPerEventMax; ++trait_idx) {
    many += (trait_idx == 0 ? "\"t" : ",\"t") + std::to_string(trait_idx) + "\":1";
  }
  many += "}";
  EXPECT_EQ(DecodeError(Batch(many)),
            "batch[0].traits: more than 255 properties (kPropertiesPerEventMax)");
  EXPECT_EQ(DecodeError(Batch(R"("type":"track","event":"e","userId":"u","properties":{"":1})")),
            "batch[0].properties: empty property key");
  EXPECT_EQ(DecodeError(Batch("\"type\":\"track\",\"event\":\"e\",\"userId\":"
                              "\"u\",\"context\":{\"" +
                              std::string(250, 'k') + "\":1}")),
            "batch[0].context: a key of 258 bytes, over the limit of 255 "
            "(kPropertyKeyBytesMax)")
      << "context members are stored as context.<name>";
}

TEST(SegmentDecodeTest, WriteKeyFromBasicAuthOrBody) {
  const std::string track = R"("type":"track","event":"e","userId":"u")";
  EXPECT_EQ(DecodeOk(Batch(track), std::nullopt, "basic").write_key, "basic");
  EXPECT_EQ(DecodeOk(Batch(track, R"("writeKey":"body")")).write_key, "body");
  EXPECT_EQ(DecodeOk(Batch(track + R"(,"writeKey":"msg")")).write_key, "msg");
  EXPECT_EQ(DecodeOk(Batch(track, R"("writeKey":"same")"), std::nullopt, "same").write_key, "same");
  EXPECT_EQ(DecodeOk(Batch(track)).write_key, "") << "the service refuses a missing key";
  EXPECT_EQ(DecodeError(Batch(track, R"("writeKey":"body")"), std::nullopt, "basic"),
            "writeKey: a request must carry one write key (Basic auth and body "
            "agree)");
  EXPECT_EQ(DecodeError(Batch(track + R"(,"writeKey":"other")", R"("writeKey":"body")")),
            "batch[0].writeKey: a request must carry one write key (Basic auth "
            "and body agree)");
  EXPECT_EQ(DecodeError(Batch(track, R"("writeKey":5)")),
            "writeKey: must be a string (the project token)");
}

TEST(SegmentDecodeTest, SegmentsSizeLimitsAreExact) {
  // One message of exactly kSegmentMessageBytesMax bytes of JSON, then one
  // more.
  const std::string head = R"({"type":"track","event":"e","userId":"u","properties":{"p":")";
  const std::string tail = "\"}}";
  const std::string fits =
      head + std::string(kSegmentMessageBytesMax - head.size() - tail.size(), 'x') + tail;
  ASSERT_EQ(fits.size(), kSegmentMessageBytesMax);
  EXPECT_TRUE(Decode(fits, SegmentCall::kTrack).ok());
  const std::string over =
      head + std::string(kSegmentMessageBytesMax + 1 - head.size() - tail.size(), 'x') + tail;
  EXPECT_EQ(DecodeError(over, SegmentCall::kTrack),
            "message: 32769 bytes of JSON, over Segment's limit of 32768 per message "
            "(kSegmentMessageBytesMax)");
  EXPECT_EQ(DecodeCode(over, SegmentCall::kTrack), StatusCode::kResourceExhausted);
  EXPECT_EQ(DecodeError("{\"batch\":[" + over + "]}"),
            "batch[0]: 32769 bytes of JSON, over Segment's limit of 32768 per "
            "message "
            "(kSegmentMessageBytesMax)");
  // Whitespace outside strings does not count: the size is the minified JSON's.
  EXPECT_TRUE(Decode(fits.substr(0, 1) + "   " + fits.substr(1), SegmentCall::kTrack).ok());

  // A request of exactly kSegmentBatchBytesMax bytes, then one more.
  std::string batch = "{\"batch\":[";
  const std::string message = fits.substr(0, 20000) + "\"}}";  // a valid 20003-byte message
  while (batch.size() + message.size() + 2 < kSegmentBatchBytesMax) {
    batch += message + ",";
  }
  batch.pop_back();
  batch += "]}";
  batch.insert(batch.size() - 2, std::string(kSegmentBatchBytesMax - batch.size(), ' '));
  ASSERT_EQ(batch.size(), kSegmentBatchBytesMax);
  EXPECT_TRUE(Decode(batch).ok()) << Decode(batch).status().ToString();
  batch.insert(batch.size() - 2, " ");
  EXPECT_EQ(DecodeError(batch),
            "body: 512001 bytes of JSON, over Segment's limit of 512000 per "
            "request (kSegmentBatchBytesMax)");
  EXPECT_EQ(DecodeCode(batch), StatusCode::kResourceExhausted);
}

TEST(SegmentDecodeTest, TooManyTinyMessagesAreRefusedBeforeDecoding) {
  std::string batch = "{\"batch\":[";
  for (size_t message_idx = 0; message_idx <= kSegmentBatchBytesMax / kSegmentMessageBytesMin;
       ++message_idx) {
    batch += message_idx == 0 ? "1" : ",1";
  }
  batch += "]}";
  ASSERT_LE(batch.size(), kSegmentBatchBytesMax);
  EXPECT_EQ(DecodeError(batch),
            "batch: 32001 messages, more than 32000 valid ones fit in a request "
            "(kSegmentBatchBytesMax / kSegmentMessageBytesMin)");
}

TEST(SegmentDecodeTest, DeepJsonIsRefusedByTheDepthLimit) {
  std::string deep = R"({"type":"track","event":"e","userId":"u","properties":{"p":)";
  for (size_t level = 0; level < kJsonDepthMax + 2; ++level) {
    deep += "[";
  }
  for (size_t level = 0; level < kJsonDepthMax + 2; ++level) {
    deep += "]";
  }
  deep += "}}";
  EXPECT_EQ(DecodeError("{\"batch\":[" + deep + "]}"),
            "body: JSON nested more than 8 levels deep in one message "
            "(kJsonDepthMax)");
  EXPECT_EQ(DecodeError("{\"batch\":[{\"x\":\"\xff\"}]}"), "body: malformed JSON: invalid UTF-8");
}

TEST(SegmentDecodeTest, PageUrlAndReferrerPropertiesAreTheTypedFields) {
  const SegmentBatch from_properties = DecodeOk(Batch(
      R"("type":"page","userId":"u","properties":{"url":"https://a.example.test/p?t=1",
         "referrer":"https://r.example.test/","search":"?t=1","title":"P","path":"/p"})"));
  const RawEvent& page = from_properties.events[0];
  EXPECT_EQ(page.page_url, "https://a.example.test/p?t=1");
  EXPECT_EQ(page.referrer, "https://r.example.test/");
  EXPECT_EQ(FindProperty(page.properties, "search"), nullptr);
  EXPECT_EQ(Text(page.properties, "title"), "P");
  EXPECT_EQ(Text(page.properties, "path"), "/p");
  const SegmentBatch both = DecodeOk(Batch(
      R"("type":"page","userId":"u","context":{"page":{"url":"https://c.example.test/"}},
         "properties":{"url":"https://copy.example.test/?t=1"})"));
  EXPECT_EQ(both.events[0].page_url, "https://c.example.test/") << "the context's wins";
  EXPECT_EQ(FindProperty(both.events[0].properties, "url"), nullptr) << "the copy is not kept";
  // Only a page's properties are its URL; a track's "url" is the caller's.
  const SegmentBatch track = DecodeOk(Batch(
      R"("type":"track","event":"e","userId":"u","properties":{"url":"https://t.example.test/"})"));
  EXPECT_EQ(track.events[0].page_url, "");
  EXPECT_EQ(Text(track.events[0].properties, "url"), "https://t.example.test/");
}

TEST(SegmentDecodeTest, ReservedMembersWinOverFreeProperties) {
  const SegmentBatch batch = DecodeOk(Batch(
      R"("type":"group","userId":"u","groupId":"g1","properties":{"groupId":"spoof","x":1},
         "traits":{"name":"Acme","address":{"city":"Leeds"}})"));
  EXPECT_EQ(Text(batch.events[0].properties, "groupId"), "g1");
  ASSERT_EQ(batch.profile_updates.size(), 1u);
  EXPECT_EQ(batch.profile_updates[0].distinct_id, "g1");
  EXPECT_EQ(Text(batch.profile_updates[0].properties, "address.city"), "Leeds");
  // Traits outside identify and group are not Segment's, and are not stored.
  EXPECT_TRUE(DecodeOk(Batch(R"("type":"track","event":"e","userId":"u","traits":{"plan":"x"})"))
                  .profile_updates.empty());
  EXPECT_TRUE(
      DecodeOk(Batch(R"("type":"identify","userId":"u","traits":{})")).profile_updates.empty());
}

TEST(SegmentDecodeTest, EmptyBatchIsNothing) {
  const SegmentBatch batch = DecodeOk(R"({"batch":[],"writeKey":"k"})");
  EXPECT_EQ(batch.records_total, 0u);
  EXPECT_TRUE(batch.events.empty());
}

TEST(SegmentDecodeTest, RecognisesSegmentsEnvelopeOnTheSharedBatchPath) {
  EXPECT_TRUE(IsSegmentBatchBody(R"({"batch":[],"writeKey":"k","sentAt":"2026-11-26T09:31:45Z"})"));
  EXPECT_FALSE(
      IsSegmentBatchBody(R"({"api_key":"phc","batch":[{"event":"e","distinct_id":"d"}]})"));
  // "writeKey" inside a PostHog event's properties is not Segment's envelope.
  EXPECT_FALSE(IsSegmentBatchBody(
      R"({"api_key":"phc","batch":[{"event":"e","properties":{"writeKey":"x"}}]})"));
  EXPECT_FALSE(IsSegmentBatchBody(R"({"writeKey":"k"})"));
  EXPECT_FALSE(IsSegmentBatchBody(R"({"writeKey":"k","batch":[)"));
  EXPECT_FALSE(IsSegmentBatchBody(""));
}

}  // namespace
}  // namespace minpanel::ingest
