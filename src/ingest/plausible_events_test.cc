// The Plausible /api/event decoder: both spellings of every field, props as
// an object or a JSON string, revenue, hash mode, and every rule and limit
// with its exact message.
#include "ingest/plausible_events.h"

#include <gtest/gtest.h>

#include <string>

#include "ingest/test_util.h"

namespace minpanel::ingest {
namespace {

using testing::kNowMs;

Result<PlausibleEvent> Decode(std::string_view body) {
  PlausibleDecodeOptions options;
  options.now_ms = kNowMs;
  options.client_ip = "198.51.100.7";
  options.user_agent = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0";
  return DecodePlausibleEvent(body, options);
}

PlausibleEvent DecodeOk(std::string_view body) {
  auto decoded = Decode(body);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  return decoded.ok() ? std::move(decoded).value() : PlausibleEvent();
}

std::string DecodeError(std::string_view body, StatusCode code = StatusCode::kInvalidArgument) {
  const auto decoded = Decode(body);
  EXPECT_FALSE(decoded.ok()) << body;
  if (decoded.ok()) {
    return std::string();
  }
  EXPECT_EQ(decoded.status().code(), code) << decoded.status().ToString();
  return decoded.status().message();
}

const Value* Find(const PlausibleEvent& event, std::string_view key) {
  return FindProperty(event.event.properties, key);
}

// What plausible-tracker 0.3.9 sent in headless Chromium
// (sdk-captures-sample.jsonl, seq 58 and 60).
constexpr std::string_view kTrackerPageview =
    R"({"n":"pageview","u":"http://127.0.0.1:38165/plausible.html?base=http%3A%2F%2F127.0.0.1%3A8787&run=plausible-browser-1795685515153-wv521z","d":"example.test","r":null,"w":1280,"h":0})";
constexpr std::string_view kTrackerSignup =
    R"({"n":"Signup","u":"http://127.0.0.1:38165/plausible.html?base=http%3A%2F%2F127.0.0.1%3A8787&run=plausible-browser-1795685515153-wv521z","d":"example.test","r":null,"w":1280,"h":0,"p":"{\"run_id\":\"plausible-browser-1795685515153-wv521z\",\"plan\":\"pro\",\"seats\":3,\"trial\":true}"})";

TEST(PlausibleDecodeTest, TrackerPageview) {
  const PlausibleEvent decoded = DecodeOk(kTrackerPageview);
  EXPECT_EQ(decoded.domain, "example.test");
  const RawEvent& event = decoded.event;
  EXPECT_EQ(event.name, "pageview");
  EXPECT_EQ(event.time_ms, kNowMs);  // Plausible sends no time: the server's
  EXPECT_TRUE(event.arrival_time);
  EXPECT_EQ(event.page_url,
            "http://127.0.0.1:38165/plausible.html?base=http%3A%2F%2F127.0.0.1%3A8787&run="
            "plausible-browser-1795685515153-wv521z");
  EXPECT_EQ(event.referrer, "");
  EXPECT_EQ(event.client_ip, "198.51.100.7");
  EXPECT_EQ(event.user_agent, "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0");
  EXPECT_EQ(event.library, "plausible");
  EXPECT_TRUE(event.distinct_id.empty());  // the caller's visitor id
  EXPECT_FALSE(event.insert_id.has_value());
  ASSERT_EQ(event.properties.size(), 1u);
  EXPECT_EQ(event.properties[0].key, "$screen_size");
  EXPECT_EQ(event.properties[0].value, Value::String("Laptop"));
}

TEST(PlausibleDecodeTest, TrackerCustomEventWithPropsAsAJsonString) {
  const PlausibleEvent decoded = DecodeOk(kTrackerSignup);
  EXPECT_EQ(decoded.event.name, "Signup");
  EXPECT_EQ(*Find(decoded, "run_id"), Value::String("plausible-browser-1795685515153-wv521z"));
  EXPECT_EQ(*Find(decoded, "plan"), Value::String("pro"));
  EXPECT_EQ(*Find(decoded, "seats"), Value::Int(3));
  EXPECT_EQ(*Find(decoded, "trial"), Value::Bool(true));
  EXPECT_EQ(decoded.event.properties.size(), 5u);
}

TEST(PlausibleDecodeTest, LongNamesPropsAsObjectAndRevenue) {
  const PlausibleEvent decoded = DecodeOk(
      R"({"name":"Purchase","url":"https://shop.example/checkout/done","domain":"shop.example",
          "referrer":"https://search.example/?q=shoes","screen_width":390,"hashMode":false,
          "props":{"plan":"pro","price":19.5,"coupon":null},
          "revenue":{"currency":"eur","amount":"19.99"},"interactive":false})");
  EXPECT_EQ(decoded.domain, "shop.example");
  EXPECT_EQ(decoded.event.name, "Purchase");
  EXPECT_EQ(decoded.event.page_url, "https://shop.example/checkout/done");
  EXPECT_EQ(decoded.event.referrer, "https://search.example/?q=shoes");
  EXPECT_EQ(*Find(decoded, "plan"), Value::String("pro"));
  EXPECT_EQ(*Find(decoded, "price"), Value::Double(19.5));
  EXPECT_EQ(*Find(decoded, "coupon"), Value::Null());
  EXPECT_EQ(*Find(decoded, "$screen_size"), Value::String("Mobile"));
  EXPECT_EQ(*Find(decoded, "$revenue_amount"), Value::Double(19.99));
  EXPECT_EQ(*Find(decoded, "$revenue_currency"), Value::String("EUR"));
  EXPECT_EQ(*Find(decoded, "$interactive"), Value::Bool(false));
}

TEST(PlausibleDecodeTest, ShortRevenueAndMetaAndNumericAmount) {
  const PlausibleEvent decoded = DecodeOk(
      R"({"n":"Order","u":"https://a.example/","d":"a.example","m":{"tier":"gold"},
          "$":{"amount":42,"currency":"USD"}})");
  EXPECT_EQ(*Find(decoded, "tier"), Value::String("gold"));
  EXPECT_EQ(*Find(decoded, "$revenue_amount"), Value::Double(42));
  EXPECT_EQ(*Find(decoded, "$revenue_currency"), Value::String("USD"));
  EXPECT_EQ(Find(decoded, "$screen_size"), nullptr);
}

TEST(PlausibleDecodeTest, PropsAsJsonStringNullOrNoneAddNothing) {
  EXPECT_TRUE(DecodeOk(R"({"n":"x","u":"https://a.example/","d":"a.example","p":"null"})")
                  .event.properties.empty());
  EXPECT_TRUE(DecodeOk(R"({"n":"x","u":"https://a.example/","d":"a.example","p":null})")
                  .event.properties.empty());
  EXPECT_TRUE(DecodeOk(R"({"n":"x","u":"https://a.example/","d":"a.example","p":{}})")
                  .event.properties.empty());
}

TEST(PlausibleDecodeTest, DecoderPropertiesWinOverPropsOfTheSameName) {
  const PlausibleEvent decoded = DecodeOk(
      R"({"n":"x","u":"https://a.example/","d":"a.example","w":2000,"p":{"$screen_size":"forged"}})");
  EXPECT_EQ(*Find(decoded, "$screen_size"), Value::String("Desktop"));
  EXPECT_EQ(decoded.event.properties.size(), 1u);
}

TEST(PlausibleDecodeTest, ScreenSizeClasses) {
  EXPECT_EQ(PlausibleScreenSize(0), "Mobile");
  EXPECT_EQ(PlausibleScreenSize(575), "Mobile");
  EXPECT_EQ(PlausibleScreenSize(576), "Tablet");
  EXPECT_EQ(PlausibleScreenSize(991), "Tablet");
  EXPECT_EQ(PlausibleScreenSize(992), "Laptop");
  EXPECT_EQ(PlausibleScreenSize(1439), "Laptop");
  EXPECT_EQ(PlausibleScreenSize(1440), "Desktop");
  EXPECT_EQ(*Find(DecodeOk(R"({"n":"x","u":"https://a.example/","d":"a.example","w":1024.0})"),
                  "$screen_size"),
            Value::String("Laptop"));
}

TEST(PlausibleDecodeTest, HashModeMovesTheFragmentIntoThePath) {
  const auto url_of = [](std::string_view body) { return DecodeOk(body).event.page_url; };
  EXPECT_EQ(
      url_of(
          R"({"n":"pageview","u":"https://a.example/app?x=1#/settings/42?tab=2","d":"a.example","h":1})"),
      "https://a.example/app/settings/42?tab=2");
  EXPECT_EQ(url_of(R"({"n":"pageview","u":"https://a.example/#/","d":"a.example","h":true})"),
            "https://a.example/");
  EXPECT_EQ(url_of(R"({"n":"pageview","u":"https://a.example/no-fragment","d":"a.example","h":1})"),
            "https://a.example/no-fragment");
  // Without hash mode the URL is left for the policy, which drops fragments.
  EXPECT_EQ(
      url_of(R"({"n":"pageview","u":"https://a.example/app#/settings","d":"a.example","h":0})"),
      "https://a.example/app#/settings");
}

TEST(PlausibleDecodeTest, DomainIsNormalised) {
  EXPECT_EQ(*NormalisePlausibleDomain("Example.TEST"), "example.test");
  EXPECT_EQ(*NormalisePlausibleDomain("www.example.test"), "example.test");
  EXPECT_EQ(*NormalisePlausibleDomain(" example.test. "), "example.test");
  EXPECT_EQ(*NormalisePlausibleDomain("localhost:8080"), "localhost:8080");
  EXPECT_EQ(*NormalisePlausibleDomain("www"), "www");
  EXPECT_EQ(*NormalisePlausibleDomain("www.www.example.test"), "example.test");  // idempotent
  EXPECT_EQ(*NormalisePlausibleDomain("www.www"), "www");
  const std::string rule =
      "domain: must be a site's domain name such as example.com: letters, digits, '-' and '.', "
      "with an optional :port, at most 253 bytes (kPlausibleDomainBytesMax)";
  for (const std::string_view bad :
       {"", "exa mple.test", "example.test/blog", "-x.test", "a..b", ".a", "example.test..",
        "www..", ".", "host:", "host:123456", "host:8o", "ex\xc3\xa4mple.test"}) {
    auto normalised = NormalisePlausibleDomain(bad);
    ASSERT_FALSE(normalised.ok()) << bad;
    EXPECT_EQ(normalised.status().message(), rule) << bad;
  }
  EXPECT_FALSE(NormalisePlausibleDomain(std::string(254, 'a')).ok());
  EXPECT_TRUE(NormalisePlausibleDomain(std::string(253, 'a')).ok());
  EXPECT_EQ(NormalisePlausibleDomain("a.example,b.example").status().message(),
            "domain: one site per event; a comma-separated list of sites "
            "(data-domain=\"a.com,b.com\") is not supported");
}

TEST(PlausibleDecodeTest, BodyRules) {
  EXPECT_EQ(DecodeError(""), "body: empty (expected the event as a JSON object)");
  EXPECT_EQ(DecodeError("  \n"), "body: empty (expected the event as a JSON object)");
  EXPECT_EQ(DecodeError("[]"), "body: must be a JSON object (one event)");
  EXPECT_EQ(DecodeError(R"("pageview")"), "body: must be a JSON object (one event)");
  EXPECT_TRUE(DecodeError("{\"n\":").starts_with("body: malformed JSON: "));
  EXPECT_EQ(DecodeError("{\"n\":\"\xff\"}"), "body: malformed JSON: invalid UTF-8");
  // The event object and kJsonDepthMax - 1 arrays inside it: 8 levels.
  const std::string event = R"({"n":"x","u":"https://a.example/","d":"a.example","extra":)";
  const auto nested = [&](size_t arrays) {
    return event + std::string(arrays, '[') + "1" + std::string(arrays, ']') + "}";
  };
  EXPECT_TRUE(Decode(nested(kJsonDepthMax - 1)).ok());
  EXPECT_EQ(DecodeError(nested(kJsonDepthMax), StatusCode::kResourceExhausted),
            "body: JSON nested more than 8 levels deep (kJsonDepthMax)");
  const std::string big(kPlausibleBodyBytesMax + 1, ' ');
  EXPECT_EQ(DecodeError(big, StatusCode::kResourceExhausted),
            "body: 131073 bytes, over the limit of 131072 (kPlausibleBodyBytesMax)");
}

TEST(PlausibleDecodeTest, RequiredFields) {
  EXPECT_EQ(DecodeError(R"({"u":"https://a.example/","d":"a.example"})"),
            "name: required (as n or name)");
  EXPECT_EQ(DecodeError(R"({"n":null,"u":"https://a.example/","d":"a.example"})"),
            "name: required (as n or name)");
  EXPECT_EQ(DecodeError(R"({"n":"x","d":"a.example"})"), "url: required (as u or url)");
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/"})"),
            "domain: required (as d or domain)");
  EXPECT_EQ(DecodeError(R"({"n":7,"u":"https://a.example/","d":"a.example"})"),
            "n: must be a string");
  EXPECT_EQ(DecodeError(R"({"name":" ","u":"https://a.example/","d":"a.example"})"),
            "name: must not be empty");
  EXPECT_EQ(DecodeError(R"({"n":"x","url":["https://a.example/"],"d":"a.example"})"),
            "url: must be a string");
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"","d":"a.example"})"), "u: must not be empty");
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","domain":false})"),
            "domain: must be a string");
}

TEST(PlausibleDecodeTest, FieldSentTwiceIsRefused) {
  EXPECT_EQ(DecodeError(R"({"n":"a","name":"b","u":"https://a.example/","d":"a.example"})"),
            "name: sent twice (as n and name); send each field once");
  EXPECT_EQ(DecodeError(R"({"n":"a","n":"b","u":"https://a.example/","d":"a.example"})"),
            "n: sent twice (as n and n); send each field once");
  EXPECT_EQ(
      DecodeError(R"({"n":"a","u":"https://a.example/","d":"a.example","p":{"a":1},"m":{"b":2}})"),
      "p and m: send the custom props once");
}

TEST(PlausibleDecodeTest, UnknownMembersAreIgnored) {
  const PlausibleEvent decoded = DecodeOk(
      R"({"n":"x","u":"https://a.example/","d":"a.example","v":2,"sv":"x","nested":{"a":[1]}})");
  EXPECT_TRUE(decoded.event.properties.empty());
}

TEST(PlausibleDecodeTest, NameLimit) {
  const std::string at_limit(kPlausibleEventNameBytesMax, 'e');
  EXPECT_EQ(DecodeOk(R"({"n":")" + at_limit + R"(","u":"https://a.example/","d":"a.example"})")
                .event.name,
            at_limit);
  EXPECT_EQ(DecodeError(R"({"n":")" + at_limit + R"(e","u":"https://a.example/","d":"a.example"})"),
            "n: 121 bytes, over the limit of 120 (kPlausibleEventNameBytesMax)");
}

TEST(PlausibleDecodeTest, UrlRules) {
  const std::string long_url = "https://a.example/" + std::string(kPlausibleUrlBytesMax, 'p');
  EXPECT_EQ(DecodeError(R"({"n":"x","u":")" + long_url + R"(","d":"a.example"})"),
            "u: 8210 bytes, over the limit of 8192 (kPlausibleUrlBytesMax)");
  for (const std::string_view relative : {"/pricing", "a.example/pricing", "://a.example/",
                                          "https://", "1http://a.example/", "ht tp://a.example/"}) {
    EXPECT_EQ(DecodeError(R"({"n":"x","u":")" + std::string(relative) + R"(","d":"a.example"})"),
              "u: must be an absolute URL such as https://example.com/path")
        << relative;
  }
  EXPECT_EQ(DecodeOk(R"({"n":"x","u":"app://desktop/settings","d":"a.example"})").event.page_url,
            "app://desktop/settings");
}

TEST(PlausibleDecodeTest, ReferrerRules) {
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example","r":1})"),
            "r: must be a string or null");
  const std::string long_referrer(kPlausibleUrlBytesMax + 1, 'r');
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example","referrer":")" +
                        long_referrer + "\"}"),
            "referrer: 8193 bytes, over the limit of 8192 (kPlausibleUrlBytesMax)");
}

TEST(PlausibleDecodeTest, DomainRulesInTheBody) {
  EXPECT_EQ(DecodeOk(R"({"n":"x","u":"https://a.example/","d":"WWW.A.Example"})").domain,
            "a.example");
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example,b.example"})"),
            "domain: one site per event; a comma-separated list of sites "
            "(data-domain=\"a.com,b.com\") is not supported");
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"not a domain"})"),
            "domain: must be a site's domain name such as example.com: letters, digits, '-' and "
            "'.', with an optional :port, at most 253 bytes (kPlausibleDomainBytesMax)");
}

TEST(PlausibleDecodeTest, ScreenWidthRules) {
  const std::string rule =
      "w: must be a whole number of pixels from 0 to 100000 (kPlausibleScreenWidthMax)";
  for (const std::string_view bad : {"-1", "100001", "1.5", "\"1280\"", "true", "1e300"}) {
    EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example","w":)" +
                          std::string(bad) + "}"),
              rule)
        << bad;
  }
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example","screen_width":-5})"),
            "screen_width: must be a whole number of pixels from 0 to 100000 "
            "(kPlausibleScreenWidthMax)");
}

TEST(PlausibleDecodeTest, HashModeAndInteractiveRules) {
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example","h":2})"),
            "h: must be 0, 1, true or false");
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example","hashMode":"1"})"),
            "hashMode: must be 0, 1, true or false");
  EXPECT_EQ(DecodeError(R"({"n":"x","u":"https://a.example/","d":"a.example","i":0})"),
            "i: must be true or false");
}

TEST(PlausibleDecodeTest, PropsRules) {
  const std::string base = R"({"n":"x","u":"https://a.example/","d":"a.example",)";
  const std::string rule = "must be an object of custom props, or a JSON string of one";
  EXPECT_EQ(DecodeError(base + R"("p":[1]})"), "p: " + rule);
  EXPECT_EQ(DecodeError(base + R"("p":7})"), "p: " + rule);
  EXPECT_EQ(DecodeError(base + R"("props":""})"), "props: " + rule);
  EXPECT_EQ(DecodeError(base + R"("p":"[1,2]"})"), "p: " + rule);
  EXPECT_TRUE(DecodeError(base + R"("p":"{\"a\":"})").starts_with("p: malformed JSON: "));
  EXPECT_EQ(DecodeError(base + R"("p":{"tags":["a"]}})"),
            "p.tags: must be a string, number, boolean or null (Plausible props are scalars)");
  EXPECT_EQ(DecodeError(base + R"("meta":{"o":{"a":1}}})"),
            "meta.o: must be a string, number, boolean or null (Plausible props are scalars)");
  EXPECT_EQ(DecodeError(base + R"("p":"{\"o\":{\"a\":1}}"})"),
            "p.o: must be a string, number, boolean or null (Plausible props are scalars)");
  EXPECT_EQ(DecodeError(base + R"("p":{"":1}})"), "p: a prop name must not be empty");
  const std::string long_key(kPropertyKeyBytesMax + 1, 'k');
  EXPECT_EQ(DecodeError(base + R"("p":{")" + long_key + R"(":1}})"),
            "p: a prop name of 256 bytes, over the limit of 255 (kPropertyKeyBytesMax)");
  const std::string long_value(kPlausiblePropValueBytesMax + 1, 'v');
  EXPECT_EQ(DecodeError(base + R"("p":{"v":")" + long_value + R"("}})"),
            "p.v: 2001 bytes, over the limit of 2000 (kPlausiblePropValueBytesMax)");
  const std::string at_limit(kPlausiblePropValueBytesMax, 'v');
  EXPECT_EQ(*Find(DecodeOk(base + R"("p":{"v":")" + at_limit + R"("}})"), "v"),
            Value::String(at_limit));
  std::string many = base + R"("p":{)";
  for (size_t prop_idx = 0; prop_idx <= kPlausiblePropsMax; ++prop_idx) {
    many += (prop_idx == 0 ? "\"k" : ",\"k") + std::to_string(prop_idx) + "\":1";
  }
  EXPECT_EQ(DecodeError(many + "}}"), "p: 31 props, over the limit of 30 (kPlausiblePropsMax)");
}

TEST(PlausibleDecodeTest, RevenueRules) {
  const std::string base = R"({"n":"x","u":"https://a.example/","d":"a.example",)";
  EXPECT_EQ(DecodeError(base + R"("$":19.99})"),
            "$: must be an object {\"currency\": \"EUR\", \"amount\": 19.99}");
  const std::string currency_rule = ".currency: required: a three-letter ISO 4217 code such as EUR";
  EXPECT_EQ(DecodeError(base + R"("revenue":{"amount":1}})"), "revenue" + currency_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"amount":1,"currency":"EURO"}})"), "$" + currency_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"amount":1,"currency":"E1R"}})"), "$" + currency_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"amount":1,"currency":7}})"), "$" + currency_rule);
  const std::string amount_rule =
      ".amount: required: a number (or a string of one) of at most 1000000000000000 "
      "(kPlausibleRevenueAmountMax)";
  EXPECT_EQ(DecodeError(base + R"("$":{"currency":"EUR"}})"), "$" + amount_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"currency":"EUR","amount":"12,50"}})"), "$" + amount_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"currency":"EUR","amount":""}})"), "$" + amount_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"currency":"EUR","amount":true}})"), "$" + amount_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"currency":"EUR","amount":2e15}})"), "$" + amount_rule);
  EXPECT_EQ(DecodeError(base + R"("$":{"currency":"EUR","amount":"nan"}})"), "$" + amount_rule);
  EXPECT_EQ(*Find(DecodeOk(base + R"("$":{"currency":"EUR","amount":"-5"}})"), "$revenue_amount"),
            Value::Double(-5));  // a refund
}

}  // namespace
}  // namespace minpanel::ingest
