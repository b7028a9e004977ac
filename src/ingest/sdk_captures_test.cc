// Decodes every Mixpanel request captured from the real SDKs (see
// testdata/README.md) and compares with the capture tool's own decoding.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <sstream>

#include "ingest/ingest.h"
#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using simdjson::dom::element;

struct Capture {
  int64_t seq = 0;
  std::string path;
  std::string query;  // re-encoded as the SDK sent it
  std::string body;
  std::string expected_json;  // the capture tool's decoding
};

std::string Unbase64(std::string_view text) {
  std::string bytes(text.size(), '\0');
  size_t length = 0;
  EXPECT_EQ(sodium_base642bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(),
                              text.data(), text.size(), nullptr, &length, nullptr,
                              sodium_base64_VARIANT_ORIGINAL),
            0);
  bytes.resize(length);
  return bytes;
}

std::vector<Capture> LoadCaptures() {
  std::ifstream file(std::string(MINPANEL_INGEST_TESTDATA_DIR) + "/mixpanel-captures.jsonl");
  EXPECT_TRUE(file.is_open());
  std::vector<Capture> captures;
  simdjson::dom::parser parser;
  std::string line;
  while (std::getline(file, line)) {
    element record = parser.parse(line);
    Capture capture;
    capture.seq = record["seq"].get_int64().value();
    capture.path = std::string(record["path"].get_string().value());
    const simdjson::dom::object query = record["query"].get_object().value();
    for (const auto [key, value] : query) {
      capture.query += (capture.query.empty() ? "" : "&") + std::string(key) + "=" +
                       testing::UrlEncode(value.get_string().value());
    }
    capture.body = Unbase64(record["rawBodyBase64"].get_string().value());
    capture.expected_json = simdjson::minify(record["decoded"]["json"]);
    captures.push_back(std::move(capture));
  }
  return captures;
}

MixpanelRoute RouteOf(std::string_view path) {
  if (path.starts_with("/engage")) {
    return MixpanelRoute::kEngage;
  }
  if (path.starts_with("/groups")) {
    return MixpanelRoute::kGroups;
  }
  return path.starts_with("/import") ? MixpanelRoute::kImport : MixpanelRoute::kTrack;
}

size_t RecordCount(const element& json) {
  return json.is_array() ? json.get_array().value().size() : 1;
}

void CheckEvents(const Capture& capture, const element& expected, const MixpanelEvents& events) {
  ASSERT_TRUE(events.errors.empty()) << events.errors[0].field << ": " << events.errors[0].message;
  ASSERT_EQ(events.events.size(), RecordCount(expected));
  for (size_t event_idx = 0; event_idx < events.events.size(); ++event_idx) {
    const element record = expected.is_array() ? expected.at(event_idx).value() : expected;
    const RawEvent& event = events.events[event_idx];
    EXPECT_EQ(event.name, record["event"].get_string().value()) << capture.seq;
    EXPECT_EQ(event.distinct_id, record["properties"]["distinct_id"].get_string().value());
    EXPECT_EQ(events.tokens[event_idx], record["properties"]["token"].get_string().value());
    EXPECT_EQ(FindProperty(event.properties, "token"), nullptr);
    std::string_view insert_id;
    if (record["properties"]["$insert_id"].get(insert_id) == simdjson::SUCCESS) {
      EXPECT_EQ(event.insert_id, std::optional<std::string>(insert_id));
    }
    std::string_view note;
    if (record["properties"]["note"].get(note) == simdjson::SUCCESS) {
      // The mixpanel-node batch whose base64 carries raw '+' signs.
      EXPECT_EQ(FindProperty(event.properties, "note")->as_string(), note);
    }
  }
}

void CheckProfiles(const element& expected, const MixpanelProfiles& profiles) {
  ASSERT_TRUE(profiles.errors.empty())
      << profiles.errors[0].field << ": " << profiles.errors[0].message;
  EXPECT_EQ(profiles.records_total, RecordCount(expected));
  EXPECT_GE(profiles.updates.size(), profiles.records_total);
  for (const std::string& token : profiles.tokens) {
    EXPECT_TRUE(token.starts_with("test-token-mixpanel")) << token;
  }
}

TEST(SdkCapturesTest, EveryMixpanelCaptureDecodes) {
  const std::vector<Capture> captures = LoadCaptures();
  ASSERT_EQ(captures.size(), 40u);
  simdjson::dom::parser expected_parser;
  for (const Capture& capture : captures) {
    SCOPED_TRACE("seq " + std::to_string(capture.seq) + " " + capture.path);
    const auto payload = ExtractMixpanelPayload(capture.query, capture.body);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    const element expected = expected_parser.parse(capture.expected_json).value();
    DecodeOptions options;
    options.route = RouteOf(capture.path);
    options.now_ms = testing::kNowMs;
    if (options.route == MixpanelRoute::kTrack || options.route == MixpanelRoute::kImport) {
      const auto events = DecodeMixpanelEvents(*payload, options);
      ASSERT_TRUE(events.ok()) << events.status().ToString();
      CheckEvents(capture, expected, *events);
    } else {
      const auto profiles = DecodeMixpanelProfiles(*payload, options);
      ASSERT_TRUE(profiles.ok()) << profiles.status().ToString();
      CheckProfiles(expected, *profiles);
    }
  }
}

TEST(SdkCapturesTest, BrowserEventCarriesContextFields) {
  for (const Capture& capture : LoadCaptures()) {
    if (capture.seq != 46) {
      continue;
    }
    const auto payload = ExtractMixpanelPayload(capture.query, capture.body);
    ASSERT_TRUE(payload.ok());
    const auto events = DecodeMixpanelEvents(*payload, {MixpanelRoute::kTrack, testing::kNowMs});
    ASSERT_TRUE(events.ok());
    ASSERT_EQ(events->events.size(), 1u);
    const RawEvent& event = events->events[0];
    EXPECT_EQ(event.name, "Immediate Event");
    EXPECT_EQ(event.time_ms, 1795685506368);
    EXPECT_EQ(event.library, "web");
    EXPECT_EQ(event.page_url.rfind("http://127.0.0.1:38165/mixpanel.html?", 0), 0u);
    EXPECT_EQ(event.insert_id, std::optional<std::string>("t8sel8v0rgu3sxfo"));
    EXPECT_EQ(FindProperty(event.properties, "$browser")->as_string(), "Chrome");
    EXPECT_EQ(FindProperty(event.properties, "$browser_version")->as_int(), 156);
    return;
  }
  FAIL() << "capture 46 missing";
}

}  // namespace
}  // namespace minpanel::ingest
