#include "privacy/url.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace minpanel::privacy {
namespace {

std::string Generalise(std::string_view url) { return GeneraliseUrl(url, UrlPolicy{}); }

TEST(GeneraliseUrlTest, KeepsSchemeHostAndOrdinaryPath) {
  EXPECT_EQ(Generalise("https://example.com/pricing"), "https://example.com/pricing");
  EXPECT_EQ(Generalise("https://example.com/blog/how-to-grow"), "https://example.com/blog/how-to-grow");
  EXPECT_EQ(Generalise("https://example.com/v2/docs"), "https://example.com/v2/docs");
  EXPECT_EQ(Generalise("https://example.com"), "https://example.com");
  EXPECT_EQ(Generalise("https://example.com/"), "https://example.com/");
}

TEST(GeneraliseUrlTest, NumericSegmentsBecomeId) {
  EXPECT_EQ(Generalise("https://app.example.com/org/123/keys"), "https://app.example.com/org/:id/keys");
  EXPECT_EQ(Generalise("/org/123/keys"), "/org/:id/keys");
  EXPECT_EQ(Generalise("/users/42/"), "/users/:id/");
}

TEST(GeneraliseUrlTest, UuidSegmentsBecomeUuid) {
  EXPECT_EQ(Generalise("/projects/550e8400-e29b-41d4-a716-446655440000/settings"),
            "/projects/:uuid/settings");
  EXPECT_EQ(Generalise("/projects/550E8400-E29B-41D4-A716-446655440000"), "/projects/:uuid");
}

TEST(GeneraliseUrlTest, LongHexSegmentsBecomeHex) {
  EXPECT_EQ(Generalise("/commit/3f786850e387550fdab836ed7e6dc881de23001b"), "/commit/:hex");
  EXPECT_EQ(Generalise("/item/507f1f77bcf86cd799439011"), "/item/:hex");
  // Short hex is a word ("cafe", "beef") or a short id nobody can act on.
  EXPECT_EQ(Generalise("/menu/cafe"), "/menu/cafe");
  EXPECT_EQ(Generalise("/c/7f3a9c2e1b"), "/c/7f3a9c2e1b");
}

TEST(GeneraliseUrlTest, EmailsInPathBecomeEmail) {
  EXPECT_EQ(Generalise("/users/jane.doe@example.com/profile"), "/users/:email/profile");
  EXPECT_EQ(Generalise("/users/jane.doe%40example.com/profile"), "/users/:email/profile");
  EXPECT_EQ(Generalise("/u/jane%2Edoe%40example%2Ecom"), "/u/:email");
}

TEST(GeneraliseUrlTest, LongMixedTokensBecomeToken) {
  EXPECT_EQ(Generalise("/reset/Xk3pQ9zLm2Vb7nR4tY8wA1"), "/reset/:token");
  EXPECT_EQ(Generalise("/invite/sk_live_51HxYzAbCdEf12345678"), "/invite/:token");
  EXPECT_EQ(Generalise("/s/a1b2c3d4-e5f6g7h8-i9j0k1"), "/s/:token");
}

TEST(GeneraliseUrlTest, SlugsWithNumbersStay) {
  EXPECT_EQ(Generalise("/blog/iphone15-pro-max-review-2024"), "/blog/iphone15-pro-max-review-2024");
  EXPECT_EQ(Generalise("/docs/sha256-checksum-verification"), "/docs/sha256-checksum-verification");
  EXPECT_EQ(Generalise("/blog/how-to-grow-your-startup-in-2024"),
            "/blog/how-to-grow-your-startup-in-2024");
  EXPECT_EQ(Generalise("/download/app-1.2.3.dmg"), "/download/app-1.2.3.dmg");
}

TEST(GeneraliseUrlTest, PlaceholderStemKeepsExtension) {
  EXPECT_EQ(Generalise("/files/550e8400-e29b-41d4-a716-446655440000.pdf"), "/files/:uuid.pdf");
  EXPECT_EQ(Generalise("/invoices/12345.json"), "/invoices/:id.json");
}

TEST(GeneraliseUrlTest, QueryKeepsOnlyAllowedPrefixes) {
  EXPECT_EQ(Generalise("https://example.com/p?utm_source=news&token=abc123&utm_medium=email"),
            "https://example.com/p?utm_source=news&utm_medium=email");
  EXPECT_EQ(Generalise("https://example.com/p?UTM_Campaign=spring"),
            "https://example.com/p?UTM_Campaign=spring");
  EXPECT_EQ(Generalise("https://example.com/p?utm%5Fsource=x"), "https://example.com/p?utm%5Fsource=x");
}

TEST(GeneraliseUrlTest, TokensAndEmailsInQueryAreDropped) {
  EXPECT_EQ(Generalise("https://example.com/reset?token=eyJhbGciOiJIUzI1NiJ9.e30.abc"),
            "https://example.com/reset");
  EXPECT_EQ(Generalise("https://example.com/login?email=jane@example.com&next=/home"),
            "https://example.com/login");
  EXPECT_EQ(Generalise("https://example.com/p?"), "https://example.com/p");
  EXPECT_EQ(Generalise("https://example.com/p?&&"), "https://example.com/p");
}

TEST(GeneraliseUrlTest, CustomPrefixesReplaceTheDefault) {
  UrlPolicy policy;
  policy.query_keep_prefixes = {"ref", "plan"};
  EXPECT_EQ(GeneraliseUrl("/signup?ref=hn&plan=pro&utm_source=x", policy), "/signup?ref=hn&plan=pro");
  policy.query_keep_prefixes = {};
  EXPECT_EQ(GeneraliseUrl("/signup?ref=hn", policy), "/signup");
  policy.query_keep_prefixes = {""};
  EXPECT_EQ(GeneraliseUrl("/signup?ref=hn", policy), "/signup") << "an empty prefix keeps nothing";
}

TEST(GeneraliseUrlTest, FragmentDroppedUnlessKept) {
  EXPECT_EQ(Generalise("https://example.com/cb#access_token=abc123"), "https://example.com/cb");
  UrlPolicy policy;
  policy.keep_fragment = true;
  EXPECT_EQ(GeneraliseUrl("https://example.com/app#/settings", policy),
            "https://example.com/app#/settings");
}

TEST(GeneraliseUrlTest, SchemeAndHostAreLowercased) {
  EXPECT_EQ(Generalise("HTTPS://WWW.Example.COM/Pricing"), "https://www.example.com/Pricing");
}

TEST(GeneraliseUrlTest, UserinfoIsDropped) {
  EXPECT_EQ(Generalise("https://jane:secret@example.com/x"), "https://example.com/x");
  EXPECT_EQ(Generalise("ftp://jane@files.example.com/pub"), "ftp://files.example.com/pub");
}

TEST(GeneraliseUrlTest, DefaultPortDroppedOtherPortsKept) {
  EXPECT_EQ(Generalise("https://example.com:443/x"), "https://example.com/x");
  EXPECT_EQ(Generalise("http://example.com:80/x"), "http://example.com/x");
  EXPECT_EQ(Generalise("https://example.com:8443/x"), "https://example.com:8443/x");
  EXPECT_EQ(Generalise("http://example.com:0080/x"), "http://example.com/x");
  EXPECT_EQ(Generalise("http://example.com:/x"), "http://example.com/x");
}

TEST(GeneraliseUrlTest, BadPortsAreUnparsable) {
  EXPECT_EQ(Generalise("http://example.com:99999/x"), "");
  EXPECT_EQ(Generalise("http://example.com:80a/x"), "");
}

TEST(GeneraliseUrlTest, Ipv6HostsKeepBrackets) {
  EXPECT_EQ(Generalise("http://[2001:DB8::1]:8080/a/123"), "http://[2001:db8::1]:8080/a/:id");
  EXPECT_EQ(Generalise("http://[::1]/"), "http://[::1]/");
  EXPECT_EQ(Generalise("http://[::1/"), "");
  EXPECT_EQ(Generalise("http://[zz::1]/"), "");
}

TEST(GeneraliseUrlTest, SchemelessAndProtocolRelative) {
  EXPECT_EQ(Generalise("example.com/x/123"), "example.com/x/:id");
  EXPECT_EQ(Generalise("localhost:3000/app"), "localhost:3000/app");
  EXPECT_EQ(Generalise("//cdn.example.com/a/123"), "//cdn.example.com/a/:id");
}

TEST(GeneraliseUrlTest, SchemelessUserinfoNeedsAHostAfterIt) {
  EXPECT_EQ(Generalise("jane@example.com/x"), "example.com/x");
  EXPECT_EQ(Generalise("jane@intranet/x"), ":email/x");
}

TEST(GeneraliseUrlTest, RelativePaths) {
  EXPECT_EQ(Generalise("org/123/keys"), "org/:id/keys");
  EXPECT_EQ(Generalise("pricing?plan=pro"), "pricing");
}

TEST(GeneraliseUrlTest, OpaqueSchemesAreDropped) {
  EXPECT_EQ(Generalise("mailto:jane@example.com"), "");
  EXPECT_EQ(Generalise("javascript:alert(1)"), "");
  EXPECT_EQ(Generalise("tel:+15551234567"), "");
}

TEST(GeneraliseUrlTest, GarbageIsUnparsable) {
  EXPECT_EQ(Generalise(""), "");
  EXPECT_EQ(Generalise("   "), "");
  EXPECT_EQ(Generalise("http://exa mple.com/"), "");
  EXPECT_EQ(Generalise("https://example.com/a\nb"), "");
  EXPECT_EQ(Generalise("https:///x"), "");
  EXPECT_EQ(Generalise(std::string("https://ex\0ample.com/", 21)), "");
}

TEST(GeneraliseUrlTest, UnicodePathsStay) {
  EXPECT_EQ(Generalise("https://example.com/café/menü"), "https://example.com/café/menü");
  EXPECT_EQ(Generalise("https://example.com/caf%C3%A9/12"), "https://example.com/caf%C3%A9/:id");
  EXPECT_EQ(Generalise("https://bücher.example/straße"), "https://bücher.example/straße");
}

TEST(GeneraliseUrlTest, PercentEncodedSegmentsDecodedBeforeClassifying) {
  EXPECT_EQ(Generalise("/orders/%31%32%33"), "/orders/:id");
  EXPECT_EQ(Generalise("/a/%zz"), "/a/%zz");
  EXPECT_EQ(Generalise("/a/%"), "/a/%");
}

TEST(GeneraliseUrlTest, OverlongUrlIsCutAndMarked) {
  std::string url = "https://example.com/a/";
  url.append(kUrlBytesMax, 'b');
  const std::string generalised = Generalise(url);
  EXPECT_EQ(generalised, "https://example.com/a/:truncated");
  std::string with_query = "https://example.com/a?utm_source=";
  with_query.append(kUrlBytesMax, 'x');
  EXPECT_EQ(Generalise(with_query), "https://example.com/a") << "a cut query is dropped";
}

// Spaces and tabs around the URL go; so does a blank that ends a kept query
// because the part after it was dropped, and only that blank: the rest of
// the answer stays whole, and a second pass changes nothing.
TEST(GeneraliseUrlTest, BlanksAtTheEndsAreTrimmed) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {" \thttps://Example.com/a \t", "https://example.com/a"},
      {"\t/pricing ", "/pricing"},
      {"  example.com/x/123  ", "example.com/x/:id"},
      {" //cdn.example.com/a ", "//cdn.example.com/a"},
      {" ?utm_source=x ", "?utm_source=x"},
      {"https://example.com/a?utm_source=x #top", "https://example.com/a?utm_source=x"},
      {"https://example.com/a?utm_source=x  &id=5", "https://example.com/a?utm_source=x"},
      {"https://example.com/a?utm_source=x \t&id=5", ""},  // a tab inside is a control character
      {"/a?utm_source=x &id=5", "/a?utm_source=x"},
      {"/a b?utm_source= &id=5", "/a b?utm_source="},
  };
  for (const auto& [url, expected] : cases) {
    EXPECT_EQ(Generalise(url), expected) << "'" << url << "'";
    EXPECT_EQ(Generalise(expected), expected) << "'" << expected << "'";
  }
  UrlPolicy keep_fragment;
  keep_fragment.keep_fragment = true;
  EXPECT_EQ(GeneraliseUrl(" /a#top \t", keep_fragment), "/a#top");
  EXPECT_EQ(GeneraliseUrl("/a#to p", keep_fragment), "/a#to p");
}

TEST(GeneraliseUrlTest, OutputNeverLongerThanCap) {
  std::string url = "/" + std::string(3 * kUrlBytesMax, '1');
  EXPECT_LE(Generalise(url).size(), kUrlBytesMax);
}

TEST(ReferrerHostTest, KeepsHostOnly) {
  EXPECT_EQ(ReferrerHost("https://www.google.com/search?q=jane+doe"), "www.google.com");
  EXPECT_EQ(ReferrerHost("HTTPS://News.YCombinator.com:443/item?id=1"), "news.ycombinator.com");
  EXPECT_EQ(ReferrerHost("http://jane:pw@example.com:8080/x"), "example.com");
  EXPECT_EQ(ReferrerHost("http://[2001:db8::1]/x"), "[2001:db8::1]");
  EXPECT_EQ(ReferrerHost("android-app://com.google.android.gm/"), "com.google.android.gm");
  EXPECT_EQ(ReferrerHost("example.com/page"), "example.com");
}

TEST(ReferrerHostTest, DirectStaysDirect) { EXPECT_EQ(ReferrerHost("$direct"), "$direct"); }

TEST(ReferrerHostTest, NoHostGivesEmpty) {
  EXPECT_EQ(ReferrerHost(""), "");
  EXPECT_EQ(ReferrerHost("/internal/page"), "");
  EXPECT_EQ(ReferrerHost("mailto:jane@example.com"), "");
  EXPECT_EQ(ReferrerHost("not a url"), "");
}

TEST(ClassifyPathSegmentTest, Placeholders) {
  EXPECT_EQ(internal::ClassifyPathSegment("123"), kIdSegment);
  EXPECT_EQ(internal::ClassifyPathSegment("@jane"), kEmailSegment);
  EXPECT_EQ(internal::ClassifyPathSegment("pricing"), "");
  EXPECT_EQ(internal::ClassifyPathSegment(""), "");
  EXPECT_EQ(internal::ClassifyPathSegment("abcdefabcdefabcdefabcdefabcdefab"), kHexSegment);
  EXPECT_EQ(internal::ClassifyPathSegment("getting-started-with-analytics"), "");
}

// testdata/url_corpus.tsv: the answers of the implementation before its fast
// paths, for about 2,000 URLs made of every kind of scheme, userinfo, host,
// port, path segment, query and fragment the functions tell apart (and the
// fuzz seeds and the inputs of the tests above). Each field is unescaped
// from "\\" and "\xNN".
std::string Unescape(std::string_view field) {
  std::string text;
  for (size_t char_idx = 0; char_idx < field.size(); ++char_idx) {
    if (field[char_idx] != '\\' || char_idx + 1 >= field.size()) {
      text.push_back(field[char_idx]);
    } else if (field[char_idx + 1] == 'x' && char_idx + 3 < field.size()) {
      const std::string hex(field.substr(char_idx + 2, 2));
      text.push_back(static_cast<char>(std::stoi(hex, nullptr, 16)));
      char_idx += 3;
    } else {
      text.push_back(field[++char_idx]);
    }
  }
  return text;
}

std::vector<std::string> SplitTabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    fields.push_back(Unescape(std::string_view(line).substr(start, tab - start)));
    if (tab == std::string::npos) {
      return fields;
    }
    start = tab + 1;
  }
}

TEST(UrlCorpusTest, AnswersAreThoseOfTheRecordedCorpus) {
  const std::filesystem::path path =
      std::filesystem::path(MINPANEL_SOURCE_DIR) / "src/privacy/testdata/url_corpus.tsv";
  std::ifstream file(path, std::ios::binary);
  ASSERT_TRUE(file) << path;
  UrlPolicy custom;
  custom.query_keep_prefixes = {"utm_", "ref"};
  custom.keep_fragment = true;
  size_t checked = 0;
  std::string line;
  while (std::getline(file, line)) {
    if (line.starts_with("#")) {
      continue;
    }
    const std::vector<std::string> fields = SplitTabs(line);
    ASSERT_EQ(fields.size(), 4u) << line;
    const std::string& url = fields[0];
    EXPECT_EQ(GeneraliseUrl(url, UrlPolicy{}), fields[1]) << url;
    EXPECT_EQ(GeneraliseUrl(url, custom), fields[2]) << url;
    EXPECT_EQ(ReferrerHost(url), fields[3]) << url;
    ++checked;
  }
  EXPECT_GT(checked, 2000u);
}

}  // namespace
}  // namespace minpanel::privacy
