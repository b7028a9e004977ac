#include "privacy/policy_file.h"

#include <gtest/gtest.h>

namespace minpanel::privacy {
namespace {

TEST(PolicyFileTest, DefaultIsStrict) {
  const PolicySpec spec = DefaultPolicy();
  EXPECT_EQ(spec.ip, Action::kGeneralise);
  EXPECT_EQ(spec.user_agent, Action::kGeneralise);
  EXPECT_EQ(spec.page_url, Action::kGeneralise);
  EXPECT_EQ(spec.referrer, Action::kGeneralise);
  EXPECT_TRUE(spec.detectors);
  EXPECT_TRUE(spec.drop_person_properties);
  EXPECT_TRUE(spec.rules.empty());
}

TEST(PolicyFileTest, FullFileParses) {
  auto spec = ParsePolicy(R"(
ip = "generalise"
ip_precision = "country"
user_agent = "drop"
page_url = "keep"
referrer = "generalise"
library = "drop"
query_keep_prefixes = ["utm_", "ref"]
detectors = true

[[rule]]
match = "company_id"
action = "pseudonymise"

[[rule]]
match = "debug.*"
action = "drop"
)");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->location_precision, LocationPrecision::kCountry);
  EXPECT_EQ(spec->user_agent, Action::kDrop);
  EXPECT_EQ(spec->page_url, Action::kKeep);
  EXPECT_EQ(spec->library, Action::kDrop);
  ASSERT_EQ(spec->query_keep_prefixes.size(), 2U);
  ASSERT_EQ(spec->rules.size(), 2U);
  EXPECT_EQ(spec->rules[0].action, Action::kPseudonymise);
  EXPECT_EQ(spec->rules[1].line, 15);
  EXPECT_EQ(MatchRule(*spec, "debug.trace")->action, Action::kDrop);
  EXPECT_EQ(MatchRule(*spec, "company_id")->action, Action::kPseudonymise);
  EXPECT_EQ(MatchRule(*spec, "plan"), nullptr);
}

TEST(PolicyFileTest, ErrorsNameTheKey) {
  EXPECT_NE(ParsePolicy("ipp = \"drop\"").status().message().find("unknown key 'ipp'"),
            std::string::npos);
  EXPECT_NE(ParsePolicy("library = \"generalise\"").status().message().find("'library' must be"),
            std::string::npos);
  EXPECT_NE(ParsePolicy("ip_precision = \"street\"").status().message().find("ip_precision"),
            std::string::npos);
  EXPECT_NE(ParsePolicy("[[rule]]\nmatch = \"x\"\naction = \"hide\"").status().message().find(
                "'action' must be one of"),
            std::string::npos);
  EXPECT_NE(ParsePolicy("[[rule]]\naction = \"drop\"").status().message().find("rule 1"),
            std::string::npos);
  EXPECT_NE(ParsePolicy("[[rule]]\nmatch = \"x\"\naction = \"drop\"\nwhy = 1").status().message().find(
                "unknown key 'why'"),
            std::string::npos);
  EXPECT_NE(ParsePolicy("ip = ").status().message().find("line 1"), std::string::npos);
}

TEST(PolicyFileTest, OversizedFileIsRefused) {
  EXPECT_EQ(ParsePolicy(std::string(kPolicyBytesMax + 1, '#')).status().code(),
            StatusCode::kResourceExhausted);
}

TEST(GlobTest, StarsAndQuestionMarks) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("user.*", "user.email"));
  EXPECT_FALSE(GlobMatch("user.*", "users.email"));
  EXPECT_TRUE(GlobMatch("*_id", "company_id"));
  EXPECT_TRUE(GlobMatch("a*b*c", "axxbyyc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "axxbyy"));
  EXPECT_TRUE(GlobMatch("v?", "v2"));
  EXPECT_FALSE(GlobMatch("v?", "v10"));
  EXPECT_TRUE(GlobMatch("exact", "exact"));
}

TEST(PersonPropertyTest, ReservedNamesButNotNamesOfThings) {
  EXPECT_TRUE(IsPersonProperty("$email", false));
  EXPECT_TRUE(IsPersonProperty("traits.email", false));
  EXPECT_TRUE(IsPersonProperty("traits.address.street", false));
  EXPECT_TRUE(IsPersonProperty("$set.name", false));
  // A page, plan or group name is not a person's name on an event...
  EXPECT_FALSE(IsPersonProperty("name", false));
  EXPECT_FALSE(IsPersonProperty("plan_name", false));
  // ...but on a user's profile it is.
  EXPECT_TRUE(IsPersonProperty("name", true));
  EXPECT_TRUE(IsPersonProperty("email", true));
  // Segment's identify traits on a profile: birthday, username and the
  // address object, flattened.
  EXPECT_TRUE(IsPersonProperty("birthday", true));
  EXPECT_TRUE(IsPersonProperty("username", true));
  EXPECT_TRUE(IsPersonProperty("address.street", true));
  EXPECT_TRUE(IsPersonProperty("address.city", true));
  EXPECT_FALSE(IsPersonProperty("address.city", false));
  EXPECT_FALSE(IsPersonProperty("addresses", true));
}

TEST(PolicyFileTest, DescriptionListsRulesWithLines) {
  auto spec = ParsePolicy("[[rule]]\nmatch = \"company_id\"\naction = \"pseudonymise\"\n");
  ASSERT_TRUE(spec.ok());
  const std::string text = DescribePolicy(*spec);
  EXPECT_NE(text.find("line 1: company_id -> pseudonymise"), std::string::npos) << text;
  EXPECT_NE(text.find("ip: generalise (to city"), std::string::npos) << text;
}

}  // namespace
}  // namespace minpanel::privacy

namespace minpanel::privacy {
namespace {

TEST(BucketNumberTest, OrdersOfMagnitude) {
  EXPECT_EQ(BucketNumber(37), 20);
  EXPECT_EQ(BucketNumber(180), 100);
  EXPECT_EQ(BucketNumber(5), 5);
  EXPECT_EQ(BucketNumber(999), 500);
  EXPECT_DOUBLE_EQ(BucketNumber(0.37), 0.2);
  EXPECT_EQ(BucketNumber(-37), -50);
  EXPECT_EQ(BucketNumber(0), 0);
}

TEST(PolicyFileTest, TimePrecisionIsNamed) {
  auto spec = ParsePolicy("time_precision = \"hour\"");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->time_precision_ms, 3'600'000);
  EXPECT_NE(ParsePolicy("time_precision = \"week\"").status().message().find("time_precision"),
            std::string::npos);
}

}  // namespace
}  // namespace minpanel::privacy
