// The masked parameters of a read's audit record (audit_params.h): one test
// per rule, the cap and the text that is not UTF-8.
#include "service/audit_params.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include "service/service.h"

namespace minpanel::service {
namespace {

const privacy::Detectors& TheDetectors() {
  static const privacy::Detectors detectors;
  return detectors;
}

std::string Query(std::string_view json) { return QueryAuditParams(json, TheDetectors()); }

bool IsJsonObject(const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  return parser.parse(text).get(root) == simdjson::SUCCESS && root.is_object();
}

TEST(AuditParamsTest, AnOrdinaryQueryIsKeptCompact) {
  const std::string params = Query(
      R"({"kind": "segmentation", "from": "-7d", "to": "now", "measure": "total",
          "events": ["Signed up", {"event": "Purchase", "filters":
            [{"property": "plan", "op": "in", "values": ["pro", "team"]},
             {"property": "price", "op": "ge", "value": 49.5}]}],
          "breakdown": ["country"], "window_ms": 86400000, "any": [true, null, 12]})");
  EXPECT_EQ(params, R"({"kind":"segmentation","from":"-7d","to":"now","measure":"total",)"
                    R"("events":["Signed up",{"event":"Purchase","filters":)"
                    R"([{"property":"plan","op":"in","values":["pro","team"]},)"
                    R"({"property":"price","op":"ge","value":49.5}]}],)"
                    R"("breakdown":["country"],"window_ms":86400000,"any":[true,null,12]})");
}

TEST(AuditParamsTest, FilterValuesOnASubjectsIdAreMasked) {
  EXPECT_EQ(Query(R"({"filters":[{"property":"distinct_id","op":"eq","value":"cust-8812"}]})"),
            R"({"filters":[{"property":"distinct_id","op":"eq","value":"<masked>"}]})");
  EXPECT_EQ(Query(R"({"filters":[{"values":["u3","u7"],"op":"in","property":"$user_id"}]})"),
            R"({"filters":[{"values":"<masked:2 values>","op":"in","property":"$user_id"}]})");
  // An organisation's id and a person's field on a profile.
  EXPECT_EQ(Query(R"({"f":[{"property":"company_id","source":"group","group_key":"company",)"
                  R"("op":"eq","value":"org-77"}]})"),
            R"({"f":[{"property":"company_id","source":"group","group_key":"company",)"
            R"("op":"eq","value":"<masked>"}]})");
  EXPECT_EQ(Query(R"({"f":[{"property":"name","source":"profile","op":"eq","value":"Quill"}]})"),
            R"({"f":[{"property":"name","source":"profile","op":"eq","value":"<masked>"}]})");
}

TEST(AuditParamsTest, StringsADetectorFlagsAreMaskedWithTheirKind) {
  EXPECT_EQ(Query(R"({"events":["Shared with jane@example.test"],)"
                  R"("filters":[{"property":"note","op":"contains","value":"+1 202 555 0143"},)"
                  R"({"property":"addr","op":"eq","value":"203.0.113.77"},)"
                  R"({"property":"pay","op":"eq","value":"4111 1111 1111 1111"}]})"),
            R"({"events":["<masked:email>"],)"
            R"("filters":[{"property":"note","op":"contains","value":"<masked:phone>"},)"
            R"({"property":"addr","op":"eq","value":"<masked:ip>"},)"
            R"({"property":"pay","op":"eq","value":"<masked:card>"}]})");
  // An object's key too.
  EXPECT_EQ(Query(R"({"jane@example.test":1})"), R"({"<masked:email>":1})");
}

TEST(AuditParamsTest, LongNumbersAreMaskedButNotTheQuerysOwnSizesAndTimes) {
  EXPECT_EQ(Query(R"({"f":[{"property":"amount","op":"eq","value":2025550143},)"
                  R"({"property":"n","op":"in","values":[123456,1234567,-9876543,1.5e9]}],)"
                  R"("from":1700000000000,"limit":1000000,"periods":1000000,"other":1000000})"),
            R"({"f":[{"property":"amount","op":"eq","value":"<masked:number>"},)"
            R"({"property":"n","op":"in","values":[123456,"<masked:number>","<masked:number>",)"
            R"("<masked:number>"]}],)"
            R"("from":1700000000000,"limit":1000000,"periods":1000000,"other":"<masked:number>"})");
}

TEST(AuditParamsTest, CredentialLikeKeysAndFiltersAreMasked) {
  EXPECT_EQ(Query(R"({"api_key":"abc","Password":{"x":1},"authToken":["a"],"group_key":"company",)"
                  R"("f":[{"property":"session_secret","op":"eq","value":"s3"}]})"),
            R"({"api_key":"<masked:credential>","Password":"<masked:credential>",)"
            R"("authToken":"<masked:credential>","group_key":"company",)"
            R"("f":[{"property":"session_secret","op":"eq","value":"<masked:credential>"}]})");
  EXPECT_TRUE(LooksLikeCredentialName("X-Api-Key"));
  EXPECT_TRUE(LooksLikeCredentialName("refresh_token"));
  EXPECT_TRUE(LooksLikeCredentialName("passwd"));
  EXPECT_TRUE(LooksLikeCredentialName("Authorization"));
  EXPECT_TRUE(LooksLikeCredentialName("cookie"));
  EXPECT_FALSE(LooksLikeCredentialName("plan"));
  EXPECT_FALSE(LooksLikeCredentialName("keyboard_layout"));
}

TEST(AuditParamsTest, WhatIsNotAQueryObjectIsStillAnObject) {
  EXPECT_EQ(Query("not json"), R"({"query":"<not JSON>"})");
  EXPECT_EQ(Query("[\"a@example.test\",2]"), R"({"query":["<masked:email>",2]})");
  EXPECT_EQ(Query("\"x\xff\""), R"({"query":"<not UTF-8>"})");
  EXPECT_EQ(Query(R"({"a":"line\nbreak \"quoted\""})"), R"({"a":"line\u000abreak \"quoted\""})");
}

TEST(AuditParamsTest, DeepNestingIsCut) {
  std::string deep;
  for (size_t level = 0; level < kAuditParamsDepthMax + 4; ++level) {
    deep += "{\"a\":";
  }
  deep += "1" + std::string(kAuditParamsDepthMax + 4, '}');
  const std::string params = Query(deep);
  EXPECT_TRUE(IsJsonObject(params)) << params;
  EXPECT_NE(params.find("\"<cut>\""), std::string::npos) << params;
}

TEST(AuditParamsTest, AParamsTextIsCappedAndStaysValidJson) {
  for (size_t items = 1; items < 2000; items += 37) {
    std::string query = R"({"kind":"segmentation","events":[)";
    for (size_t item_idx = 0; item_idx < items; ++item_idx) {
      query += (item_idx == 0 ? "" : ",") + std::string(R"({"event":"e)") +
               std::to_string(item_idx) + R"(","filters":[{"property":"p","value":"v"}]})";
    }
    query += "]}";
    const std::string params = Query(query);
    ASSERT_LE(params.size(), kAuditParamsBytesMax) << items;
    ASSERT_TRUE(IsJsonObject(params)) << items << ": " << params;
    EXPECT_EQ(params.find(kAuditParamsCut) != std::string::npos, query.size() > 4000) << items;
  }
  // One long string: dropped whole, the marker in its object.
  const std::string params = Query(R"({"kind":"x","long":")" + std::string(5000, 'a') + "\"}");
  EXPECT_EQ(params, R"({"kind":"x","<cut>":true})");
}

TEST(AuditParamsTest, AnExportKeepsItsDatesEventsAndLimitAndMasksItsIds) {
  ExportOptions options;
  options.from_date = "2026-11-01";
  options.to_date = "2026-11-30";
  options.event_names_json = R"(["Purchase","Mailed jane@example.test",3])";
  options.limit = 500;
  options.distinct_id = "cust-canary-8812";
  options.distinct_ids_json = R"(["a","b","c"])";
  options.reason = "quarterly review";
  EXPECT_EQ(ExportAuditParams(options, TheDetectors()),
            R"({"from_date":"2026-11-01","to_date":"2026-11-30",)"
            R"("event":["Purchase","<masked:email>","<not a name>"],"limit":500,)"
            R"("distinct_id":"<masked>","distinct_ids":"<masked:3 ids>"})");
  ExportOptions bare;
  bare.from_date = "x\xfe";
  bare.to_date = "jane@example.test";
  bare.event_names_json = "[\"a";
  EXPECT_EQ(ExportAuditParams(bare, TheDetectors()),
            R"({"from_date":"<not UTF-8>","to_date":"<masked:email>","event":"<not JSON>"})");
}

TEST(AuditParamsTest, NamesForARecordsListsAreMaskedWhenFlagged) {
  EXPECT_EQ(AuditName("Purchase", TheDetectors()), "Purchase");
  EXPECT_EQ(AuditName("notify:jane@example.test", TheDetectors()), "<masked:email>");
  EXPECT_EQ(AuditName("\xc3", TheDetectors()), "<not UTF-8>");
}

}  // namespace
}  // namespace minpanel::service
