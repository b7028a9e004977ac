#include "privacy/detectors.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace minpanel::privacy {
namespace {

// Every fixture here is fake: example.com/example.test domains, 555 and
// Ofcom drama numbers, card-network test numbers, the ECBS example IBANs.

const Detectors& Shared() {
  static const Detectors detectors;
  return detectors;
}

std::vector<Detection> ScanText(std::string_view text) {
  std::vector<Detection> detections;
  Shared().Scan(text, &detections);
  return detections;
}

// The text after redaction, or the text itself when nothing was found.
std::string Redacted(std::string_view text) {
  std::optional<std::string> redacted = Shared().Redact(text, nullptr);
  return redacted ? *redacted : std::string(text);
}

// Expects exactly one detection, of `kind`, covering `secret` inside `text`.
void ExpectOne(std::string_view text, std::string_view secret, PiiKind kind) {
  std::vector<Detection> detections = ScanText(text);
  ASSERT_EQ(detections.size(), 1u) << text;
  EXPECT_EQ(PiiKindName(detections[0].kind), PiiKindName(kind)) << text;
  EXPECT_EQ(text.substr(detections[0].begin, detections[0].length), secret) << text;
}

void ExpectNone(std::string_view text) {
  std::vector<Detection> detections = ScanText(text);
  EXPECT_TRUE(detections.empty()) << text << " -> " << PiiKindName(detections[0].kind) << " at "
                                  << text.substr(detections[0].begin, detections[0].length);
}

TEST(PiiKindNameTest, NamesEveryKind) {
  EXPECT_EQ(PiiKindName(PiiKind::kEmail), "email");
  EXPECT_EQ(PiiKindName(PiiKind::kPhone), "phone");
  EXPECT_EQ(PiiKindName(PiiKind::kCard), "card");
  EXPECT_EQ(PiiKindName(PiiKind::kIban), "iban");
  EXPECT_EQ(PiiKindName(PiiKind::kIpAddress), "ip");
  EXPECT_EQ(PiiKindName(PiiKind::kJwt), "jwt");
  EXPECT_EQ(PiiKindName(PiiKind::kApiKey), "api_key");
  EXPECT_EQ(PiiKindName(PiiKind::kSecret), "secret");
}

TEST(EmailDetectorTest, FindsAddressesInTextUrlsAndMixedCase) {
  ExpectOne("jane.doe@example.com", "jane.doe@example.com", PiiKind::kEmail);
  ExpectOne("Contact: Jane.Doe+newsletter@Mail.Example.COM.",
            "Jane.Doe+newsletter@Mail.Example.COM", PiiKind::kEmail);
  ExpectOne("https://example.com/u?email=a.b@c.co&x=1", "a.b@c.co", PiiKind::kEmail);
  ExpectOne("mailto:o'brien@example.test", "o'brien@example.test", PiiKind::kEmail);
  ExpectOne("Grüße von «mueller_99@example.de» ✓", "mueller_99@example.de", PiiKind::kEmail);
  ExpectOne("東京 jane@example.test 🚀", "jane@example.test", PiiKind::kEmail);
}

TEST(EmailDetectorTest, FindsPercentEncodedAddressAndRedactsTheEncodedSpan) {
  ExpectOne("/signup?email=a.b%40c.co&plan=pro", "a.b%40c.co", PiiKind::kEmail);
  EXPECT_EQ(Redacted("/signup?email=a.b%40c.co&plan=pro"), "/signup?email=[email]&plan=pro");
  EXPECT_EQ(Redacted("?e=jane%2Btest%40example.com"), "?e=[email]");
}

TEST(EmailDetectorTest, IgnoresAssetsPackagesAndHandles) {
  ExpectNone("/assets/logo@2x.png");
  ExpectNone("hero@3x.webp");
  ExpectNone("npm i lodash@4.17.21");
  ExpectNone("user@localhost");
  ExpectNone("@channel please review");
  ExpectNone("a@b");
}

TEST(PhoneDetectorTest, FindsInternationalAndNationalForms) {
  ExpectOne("+44 20 7946 0958", "+44 20 7946 0958", PiiKind::kPhone);
  ExpectOne("call (415) 555-0132 today", "(415) 555-0132", PiiKind::kPhone);
  ExpectOne("415-555-0132", "415-555-0132", PiiKind::kPhone);
  ExpectOne("415.555.0132", "415.555.0132", PiiKind::kPhone);
  ExpectOne("0049 30 1234567", "0049 30 1234567", PiiKind::kPhone);
  ExpectOne("tel:+14155550132", "+14155550132", PiiKind::kPhone);
  ExpectOne("+1 (415) 555-0132", "+1 (415) 555-0132", PiiKind::kPhone);
  ExpectOne("Tel. 020 7946 0958", "020 7946 0958", PiiKind::kPhone);
  ExpectOne("01 23 45 67 89", "01 23 45 67 89", PiiKind::kPhone);
  ExpectOne("?phone=%2B442079460958", "%2B442079460958", PiiKind::kPhone);
}

TEST(PhoneDetectorTest, IgnoresNumbersThatAreNotPhones) {
  for (std::string_view text :
       {"1234567",     "1710498600",    "1710498600123", "2024-03-15", "15.03.2024",
        "03/15/2024",  "94103-1234",    "02134-1234",    "12:30:45",   "1,299.00",
        "10.0.19045",  "v1.2.3",        "+05:30",        "1920x1080",  "user-12345",
        "order_98765", "SKU-1234-5678", "2024 03 15",    "1234 5678",  "invoice 2024-0042",
        "UTC+02:00"}) {
    ExpectNone(text);
  }
}

TEST(CardDetectorTest, FindsLuhnValidCardsWithSpacesAndDashes) {
  ExpectOne("4111 1111 1111 1111", "4111 1111 1111 1111", PiiKind::kCard);
  ExpectOne("card=4111-1111-1111-1111;", "4111-1111-1111-1111", PiiKind::kCard);
  ExpectOne("4111111111111111", "4111111111111111", PiiKind::kCard);
  ExpectOne("mc 5555555555554444", "5555555555554444", PiiKind::kCard);
  ExpectOne("amex 3782 822463 10005", "3782 822463 10005", PiiKind::kCard);
  ExpectOne("6011111111111117", "6011111111111117", PiiKind::kCard);
  ExpectOne("paid with 4242 4242 4242 4242.", "4242 4242 4242 4242", PiiKind::kCard);
}

TEST(CardDetectorTest, IgnoresLuhnFailuresTimestampsAndDecimals) {
  ExpectNone("4111 1111 1111 1112");
  ExpectNone("1710498600123");
  ExpectNone("1700000000000000000");
  ExpectNone("0.4242424242424242");
  ExpectNone("4242424242424242.5");
  ExpectNone("order_4111111111111111");
  ExpectNone("4111 1111 1111 11111 1111");
}

TEST(IbanDetectorTest, FindsEcbsExamplesWithAndWithoutSpaces) {
  ExpectOne("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32", PiiKind::kIban);
  ExpectOne("iban=DE89370400440532013000", "DE89370400440532013000", PiiKind::kIban);
  ExpectOne("FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606",
            PiiKind::kIban);
  ExpectOne("nl91abna0417164300", "nl91abna0417164300", PiiKind::kIban);
  ExpectOne("BE68 5390 0754 7034", "BE68 5390 0754 7034", PiiKind::kIban);
}

TEST(IbanDetectorTest, IgnoresWrongCheckDigitsAndLengths) {
  ExpectNone("GB82 WEST 1234 5698 7654 33");
  ExpectNone("DE89370400440532013001");
  ExpectNone("DE8937040044053201300");
  ExpectNone("XX89370400440532013000");
}

TEST(IpDetectorTest, FindsIpv4AndEveryIpv6Form) {
  ExpectOne("client 192.168.1.20 connected", "192.168.1.20", PiiKind::kIpAddress);
  ExpectOne("ip=10.0.0.1", "10.0.0.1", PiiKind::kIpAddress);
  ExpectOne("2001:db8::1", "2001:db8::1", PiiKind::kIpAddress);
  ExpectOne("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            PiiKind::kIpAddress);
  ExpectOne("fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a", PiiKind::kIpAddress);
  ExpectOne("::ffff:192.0.2.128", "::ffff:192.0.2.128", PiiKind::kIpAddress);
  ExpectOne("[2001:db8::ff00:42:8329]:443", "2001:db8::ff00:42:8329", PiiKind::kIpAddress);
  ExpectOne("prefix 2001:db8:: only", "2001:db8::", PiiKind::kIpAddress);
  ExpectOne("http://10.20.30.40/admin", "10.20.30.40", PiiKind::kIpAddress);
}

TEST(IpDetectorTest, IgnoresVersionsTimesAndOutOfRangeOctets) {
  for (std::string_view text :
       {"1.2.3", "10.0.19045", "1.2.3.4.5", "999.1.1.1", "255.255.255.256", "Chrome/120.0.0.0",
        "12:30:45", "std::vector", "::", "a::b", "2024-03-15T10:30:00Z", "10:00-18:00",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36"}) {
    ExpectNone(text);
  }
}

constexpr std::string_view kJwt =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

TEST(JwtDetectorTest, FindsTokenInsideAuthorizationValue) {
  std::string header = "Authorization: Bearer " + std::string(kJwt);
  ExpectOne(header, kJwt, PiiKind::kJwt);
  EXPECT_EQ(Redacted(header), "Authorization: Bearer [jwt]");
  ExpectOne("?id_token=" + std::string(kJwt) + "&state=1", kJwt, PiiKind::kJwt);
}

TEST(JwtDetectorTest, AcceptsNonJsonPayloadWhenHeaderNamesAlg) {
  ExpectOne("eyJhbGciOiJIUzI1NiJ9.c29tZSBieXRlcw.c2lnbmF0dXJl",
            "eyJhbGciOiJIUzI1NiJ9.c29tZSBieXRlcw.c2lnbmF0dXJl", PiiKind::kJwt);
}

TEST(JwtDetectorTest, IgnoresDottedNamesStartingLikeJwts) {
  ExpectNone("eyJ.config.json");
  ExpectNone("eyJhbGciOi");
  // base64url('{"kind":"banner"}') then two ordinary words: no "alg", no JSON payload.
  ExpectNone("eyJraW5kIjoiYmFubmVyIn0.home.hero");
}

TEST(ApiKeyDetectorTest, FindsVendorPrefixes) {
  ExpectOne("?token=sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34", "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
            PiiKind::kApiKey);
  ExpectOne("sk-Ab12Cd34Ef56Gh78Ij90Kl12", "sk-Ab12Cd34Ef56Gh78Ij90Kl12", PiiKind::kApiKey);
  ExpectOne("key: sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            PiiKind::kApiKey);
  ExpectOne("pk_live_51Hxxxxxxxxxxxxx0000", "pk_live_51Hxxxxxxxxxxxxx0000", PiiKind::kApiKey);
  ExpectOne("AWS AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", PiiKind::kApiKey);
  ExpectOne("ghp_0123456789abcdefghijABCDEFGHIJ012345", "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            PiiKind::kApiKey);
  ExpectOne("github_pat_11ABCDEFG0123456789_abcdefghij",
            "github_pat_11ABCDEFG0123456789_abcdefghij", PiiKind::kApiKey);
  ExpectOne("xoxb-1234567890-0987654321-AbCdEfGhIj", "xoxb-1234567890-0987654321-AbCdEfGhIj",
            PiiKind::kApiKey);
  ExpectOne("AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            PiiKind::kApiKey);
}

TEST(ApiKeyDetectorTest, IgnoresWordsThatShareAPrefix) {
  ExpectNone("task-manager-2024");
  ExpectNone("sk-learn-pipeline-version");
  ExpectNone("AKIA");
  ExpectNone("ghp_short");
  ExpectNone("xoxb-");
  ExpectNone("skeleton_loader_component_v2");
}

TEST(SecretDetectorTest, FindsBearerTokensAndHighEntropyStrings) {
  ExpectOne("Authorization: Bearer 8f1KzQ2mX9pL4vR7tY3wE6", "8f1KzQ2mX9pL4vR7tY3wE6",
            PiiKind::kSecret);
  ExpectOne("secret=Zx8Qm2Lp9Vt4Rk7Wn3Hs6Jd1Fb5Gc0Ya8Ue", "Zx8Qm2Lp9Vt4Rk7Wn3Hs6Jd1Fb5Gc0Ya8Ue",
            PiiKind::kSecret);
}

TEST(SecretDetectorTest, IgnoresUuidsHashesOwnIdsAndNames) {
  for (std::string_view text :
       {"3f2a9c1b-7e6d-4a5f-8c0b-1e2d3a4f5c6b", "3F2A9C1B-7E6D-4A5F-8C0B-1E2D3A4F5C6B",
        "5d41402abc4b2a76b9719d911017c592", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "psn_3f2a9c1b7e6d4a5f8c0b1e2d3a4f5c6b", "ProductDetailPageViewedFromSearch2",
        "CheckoutSummaryContainerV2Experiment", "cpc_google_search_running_shoes_2024_q3"}) {
    ExpectNone(text);
  }
}

TEST(Base64DetectorTest, FindsPiiInsideEncodedTokens) {
  // base64("contact jane.doe@example.com")
  ExpectOne("d=Y29udGFjdCBqYW5lLmRvZUBleGFtcGxlLmNvbQ==",
            "Y29udGFjdCBqYW5lLmRvZUBleGFtcGxlLmNvbQ==", PiiKind::kEmail);
  // base64url("card 4111111111111111"), no padding.
  ExpectOne("Y2FyZCA0MTExMTExMTExMTExMTEx", "Y2FyZCA0MTExMTExMTExMTExMTEx", PiiKind::kCard);
  // base64("hello world from minpanel") is ordinary text.
  ExpectNone("aGVsbG8gd29ybGQgZnJvbSBtaW5wYW5lbA==");
}

TEST(RedactTest, ReplacesEachDetectionWithItsKind) {
  EXPECT_EQ(Redacted("mail jane@example.com or call +44 20 7946 0958"),
            "mail [email] or call [phone]");
  EXPECT_EQ(Redacted("4111 1111 1111 1111 from 10.0.0.1"), "[card] from [ip]");
  EXPECT_EQ(Redacted("iban GB82WEST12345698765432."), "iban [iban].");
  EXPECT_EQ(Redacted("a@example.com,b@example.com"), "[email],[email]");
}

TEST(RedactTest, CleanTextIsNullopt) {
  DetectorCounts counts;
  EXPECT_FALSE(Shared().Redact("Checkout Completed", &counts).has_value());
  EXPECT_FALSE(Shared().Redact("", &counts).has_value());
  for (uint64_t count : counts.by_kind) {
    EXPECT_EQ(count, 0u);
  }
}

TEST(RedactTest, CountsByKind) {
  DetectorCounts counts;
  ASSERT_TRUE(Shared().Redact("a@example.com b@example.com 10.0.0.1", &counts).has_value());
  ASSERT_TRUE(Shared().Redact("415-555-0132", &counts).has_value());
  EXPECT_EQ(counts.by_kind[static_cast<size_t>(PiiKind::kEmail)], 2u);
  EXPECT_EQ(counts.by_kind[static_cast<size_t>(PiiKind::kIpAddress)], 1u);
  EXPECT_EQ(counts.by_kind[static_cast<size_t>(PiiKind::kPhone)], 1u);
  EXPECT_EQ(counts.by_kind[static_cast<size_t>(PiiKind::kCard)], 0u);
}

TEST(ScanTest, DetectionsAreSortedAndDisjointOnOverlappingCandidates) {
  std::string text =
      "::ffff:10.1.2.3 x Bearer " + std::string(kJwt) + " 4111111111111111@example.com";
  std::vector<Detection> detections = ScanText(text);
  ASSERT_FALSE(detections.empty());
  for (size_t idx = 1; idx < detections.size(); ++idx) {
    EXPECT_GE(detections[idx].begin, detections[idx - 1].begin + detections[idx - 1].length);
  }
}

TEST(ScanTest, LongValuesScanInLinearTime) {
  // Adversarial repetitions of every scanner's trigger; a quadratic scanner
  // would take seconds here.
  std::string text;
  for (int repeat_idx = 0; repeat_idx < 20000; ++repeat_idx) {
    text += "a@1:2.3-4 (5 +6%4eyJ.AK";
  }
  std::vector<Detection> detections;
  Shared().Scan(text, &detections);
  SUCCEED();
}

std::vector<std::string> ReadCorpus(const std::string& name) {
  std::filesystem::path path = std::filesystem::path(MINPANEL_SOURCE_DIR) / "src/privacy/testdata" / name;
  std::ifstream file(path);
  std::vector<std::string> values;
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty() && line.rfind("# ", 0) != 0) {
      values.push_back(line);
    }
  }
  return values;
}

TEST(PrecisionTest, OrdinaryAnalyticsValuesPassUnchanged) {
  std::vector<std::string> values = ReadCorpus("precision_corpus.txt");
  ASSERT_GE(values.size(), 300u);
  size_t false_positives = 0;
  for (const std::string& value : values) {
    std::vector<Detection> detections = ScanText(value);
    if (!detections.empty()) {
      ++false_positives;
      ADD_FAILURE() << "false positive: " << value << " -> " << PiiKindName(detections[0].kind);
    }
    EXPECT_FALSE(Shared().Redact(value, nullptr).has_value()) << value;
  }
  std::printf("precision corpus: %zu values, %zu false positives (%.2f%%)\n", values.size(),
              false_positives, 100.0 * static_cast<double>(false_positives) / values.size());
}

// ---- Recall: generated positives of every kind ----

class Generator {
 public:
  std::string Digits(size_t count) {
    std::string digits;
    for (size_t idx = 0; idx < count; ++idx) {
      digits.push_back(static_cast<char>('0' + Pick(10)));
    }
    return digits;
  }
  std::string Alnum(size_t count) {
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string text;
    for (size_t idx = 0; idx < count; ++idx) {
      text.push_back(kAlphabet[Pick(kAlphabet.size())]);
    }
    return text;
  }
  std::string Lower(size_t count) {
    std::string text;
    for (size_t idx = 0; idx < count; ++idx) {
      text.push_back(static_cast<char>('a' + Pick(26)));
    }
    return text;
  }
  size_t Pick(size_t bound) { return std::uniform_int_distribution<size_t>(0, bound - 1)(random_); }

  std::string Email() {
    static constexpr std::string_view kDomains[] = {"example.com", "example.test",
                                                    "mail.example.org"};
    std::string local =
        Lower(3 + Pick(6)) + (Pick(2) ? "." + Lower(4) : "") + (Pick(3) == 0 ? "+tag" : "");
    return local + "@" + std::string(kDomains[Pick(3)]);
  }
  std::string Phone() {
    std::string exchange = "555";
    std::string line = "01" + Digits(2);
    std::string area = std::to_string(200 + Pick(700));
    switch (Pick(5)) {
      case 0:
        return "+1 " + area + " " + exchange + " " + line;
      case 1:
        return "(" + area + ") " + exchange + "-" + line;
      case 2:
        return area + "-" + exchange + "-" + line;
      case 3:
        return "+44 20 7946 0" + Digits(3);
      default:
        return "0049 30 " + Digits(7);
    }
  }
  std::string Card() {
    std::string digits =
        Pick(2) ? "4" + Digits(14) : "5" + std::to_string(1 + Pick(5)) + Digits(13);
    int sum = 0;
    for (size_t idx = 0; idx < digits.size(); ++idx) {
      int digit = digits[digits.size() - 1 - idx] - '0';
      if (idx % 2 == 0) {
        digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
      }
      sum += digit;
    }
    digits.push_back(static_cast<char>('0' + (10 - sum % 10) % 10));
    if (Pick(2) == 0) {
      return digits;
    }
    std::string grouped;
    char separator = Pick(2) ? ' ' : '-';
    for (size_t idx = 0; idx < digits.size(); ++idx) {
      if (idx > 0 && idx % 4 == 0) {
        grouped.push_back(separator);
      }
      grouped.push_back(digits[idx]);
    }
    return grouped;
  }
  std::string Iban() {
    std::string bban = Pick(2) ? Digits(18) : "WEST" + Digits(14);
    std::string country = Pick(2) ? "DE" : "GB";
    std::string rearranged = bban + country + "00";
    uint32_t remainder = 0;
    for (char c : rearranged) {
      uint32_t value =
          c >= 'A' ? static_cast<uint32_t>(c - 'A' + 10) : static_cast<uint32_t>(c - '0');
      remainder = (remainder * (value >= 10 ? 100 : 10) + value) % 97;
    }
    uint32_t check = 98 - remainder;
    std::string iban = country + (check < 10 ? "0" : "") + std::to_string(check) + bban;
    if (Pick(2) == 0) {
      return iban;
    }
    std::string spaced;
    for (size_t idx = 0; idx < iban.size(); ++idx) {
      if (idx > 0 && idx % 4 == 0) {
        spaced.push_back(' ');
      }
      spaced.push_back(iban[idx]);
    }
    return spaced;
  }
  std::string Ip() {
    if (Pick(2) == 0) {
      return std::to_string(1 + Pick(223)) + "." + std::to_string(Pick(256)) + "." +
             std::to_string(Pick(256)) + "." + std::to_string(1 + Pick(254));
    }
    static constexpr std::string_view kHex = "0123456789abcdef";
    std::string hextet;
    for (int idx = 0; idx < 3; ++idx) {
      hextet.push_back(kHex[Pick(16)]);
    }
    switch (Pick(3)) {
      case 0:
        return "2001:db8::" + hextet;
      case 1:
        return "2001:db8:" + hextet + ":1:0:0:" + hextet + ":1";
      default:
        return "::ffff:192.0.2." + std::to_string(Pick(256));
    }
  }
  std::string Key() {
    switch (Pick(5)) {
      case 0:
        return "sk-proj-" + Alnum(40) + "7";
      case 1:
        return "AKIA" + std::string("ABCDEFGHIJKLMNOP").substr(0, 12) + Digits(4);
      case 2:
        return "ghp_" + Alnum(35) + "1";
      case 3:
        return "xoxb-" + Digits(11) + "-" + Alnum(24);
      default:
        return "sk_live_" + Alnum(24) + "9";
    }
  }
  std::string Secret() { return Alnum(32 + Pick(33)); }

 private:
  std::mt19937_64 random_{20240315};
};

struct RecallCase {
  PiiKind kind;
  std::string (Generator::*make)();
};

// Redact remembers short clean texts per thread; the memory must never change
// an answer. Many more texts than cache slots (collisions, evictions), each
// asked twice, PII and clean interleaved: Redact agrees with Scan every time.
TEST(RedactTest, CleanTextCacheNeverChangesAnAnswer) {
  Generator generator;
  std::vector<std::string> texts;
  for (int text_idx = 0; text_idx < 20000; ++text_idx) {
    switch (text_idx % 4) {
      case 0:
        texts.push_back("plan_" + std::to_string(text_idx));
        break;
      case 1:
        texts.push_back(generator.Email());
        break;
      case 2:
        texts.push_back("v2." + std::to_string(text_idx % 97) + ".0");
        break;
      default:
        texts.push_back(generator.Phone());
        break;
    }
  }
  for (int pass = 0; pass < 2; ++pass) {
    for (const std::string& text : texts) {
      const bool found = !ScanText(text).empty();
      EXPECT_EQ(Shared().Redact(text, nullptr).has_value(), found) << text;
      EXPECT_EQ(Shared().Redact(text, nullptr).has_value(), found) << text;
    }
  }
}

TEST(RecallTest, GeneratedPositivesAreFoundInContext) {
  static constexpr std::string_view kContexts[][2] = {
      {"", ""}, {"value: ", "."}, {"?q=", "&lang=en"}, {"«", "» ✓"}, {"(", ")"}};
  const RecallCase cases[] = {
      {PiiKind::kEmail, &Generator::Email},   {PiiKind::kPhone, &Generator::Phone},
      {PiiKind::kCard, &Generator::Card},     {PiiKind::kIban, &Generator::Iban},
      {PiiKind::kIpAddress, &Generator::Ip},  {PiiKind::kApiKey, &Generator::Key},
      {PiiKind::kSecret, &Generator::Secret},
  };
  constexpr size_t kPerKind = 400;
  Generator generator;
  size_t total_found = 0;
  size_t total = 0;
  for (const RecallCase& recall_case : cases) {
    size_t found = 0;
    size_t misses_printed = 0;
    for (size_t sample_idx = 0; sample_idx < kPerKind; ++sample_idx) {
      std::string secret = (generator.*recall_case.make)();
      const auto& context = kContexts[sample_idx % std::size(kContexts)];
      std::string text = std::string(context[0]) + secret + std::string(context[1]);
      std::vector<Detection> detections = ScanText(text);
      bool hit = detections.size() == 1 && detections[0].kind == recall_case.kind &&
                 detections[0].begin == context[0].size() && detections[0].length == secret.size();
      found += hit ? 1 : 0;
      if (!hit && misses_printed < 3) {
        ++misses_printed;
        std::printf("  missed %s: %s\n", std::string(PiiKindName(recall_case.kind)).c_str(),
                    text.c_str());
      }
    }
    std::printf("recall %-8s %zu/%zu (%.1f%%)\n",
                std::string(PiiKindName(recall_case.kind)).c_str(), found, kPerKind,
                100.0 * static_cast<double>(found) / kPerKind);
    EXPECT_GE(found * 100, kPerKind * 95) << PiiKindName(recall_case.kind);
    total_found += found;
    total += kPerKind;
  }
  std::printf("recall overall %zu/%zu (%.1f%%)\n", total_found, total,
              100.0 * static_cast<double>(total_found) / static_cast<double>(total));
}

// ScanKinds answers what Scan answers, filtered to the kinds asked for:
// on the precision corpus, generated positives of every kind in context,
// and texts where candidates of several kinds overlap (the longer or
// earlier one wins in Scan, so a wanted kind may lose to another).
TEST(ScanKindsTest, EqualsScanFilteredToTheKinds) {
  std::vector<std::string> texts = ReadCorpus("precision_corpus.txt");
  Generator generator;
  for (int text_idx = 0; text_idx < 300; ++text_idx) {
    texts.push_back("x " + generator.Email() + " " + generator.Card());
    texts.push_back(generator.Phone() + " " + generator.Iban() + "?q=" + generator.Ip());
    texts.push_back("k=" + generator.Key() + " s=" + generator.Secret());
  }
  const std::string overlapping[] = {
      "4111111111111111@example.com",
      "::ffff:10.1.2.3 x Bearer " + std::string(kJwt) + " 4111111111111111@example.com",
      "4111111111111111 4111 1111 1111 1111 +44 4111 1111 1111 1111",
      "Y2FyZCA0MTExMTExMTExMTExMTEx and d=Y29udGFjdCBqYW5lLmRvZUBleGFtcGxlLmNvbQ==",
      "card%204111%201111%201111%201111%20mail%20jane%40example.com",
      "GB82WEST12345698765432@example.com 2026-10-26T05:11:40.681Z",
  };
  texts.insert(texts.end(), std::begin(overlapping), std::end(overlapping));
  constexpr uint32_t kCard = 1u << static_cast<uint32_t>(PiiKind::kCard);
  constexpr uint32_t kIban = 1u << static_cast<uint32_t>(PiiKind::kIban);
  constexpr uint32_t kSecrets = (1u << static_cast<uint32_t>(PiiKind::kJwt)) |
                                (1u << static_cast<uint32_t>(PiiKind::kApiKey)) |
                                (1u << static_cast<uint32_t>(PiiKind::kSecret));
  std::vector<uint32_t> kind_sets = {0, kCard | kIban | kSecrets, (1u << kPiiKindCount) - 1};
  for (size_t kind = 0; kind < kPiiKindCount; ++kind) {
    kind_sets.push_back(1u << kind);
  }
  size_t wanted_found = 0;
  for (const std::string& text : texts) {
    const std::vector<Detection> all = ScanText(text);
    for (const uint32_t kinds : kind_sets) {
      std::vector<Detection> expected;
      for (const Detection& detection : all) {
        if ((kinds >> static_cast<uint32_t>(detection.kind) & 1) != 0) {
          expected.push_back(detection);
        }
      }
      std::vector<Detection> got = {Detection{PiiKind::kEmail, 0, 0}};  // appended to
      Shared().ScanKinds(text, kinds, &got);
      ASSERT_FALSE(got.empty());
      got.erase(got.begin());
      EXPECT_EQ(got, expected) << text << " kinds " << kinds;
      wanted_found += kinds == (kCard | kIban | kSecrets) ? expected.size() : 0;
    }
  }
  // The kinds the incident scan asks for were found, and one lost its place.
  EXPECT_GE(wanted_found, 900u);
  std::vector<Detection> card_in_email;
  Shared().ScanKinds("4111111111111111@example.com", kCard, &card_in_email);
  EXPECT_TRUE(card_in_email.empty());
}

// ---- MayHoldKinds: the one-pass prefilter in front of ScanKinds

constexpr uint32_t kSensitiveKinds =
    (1u << static_cast<uint32_t>(PiiKind::kCard)) | (1u << static_cast<uint32_t>(PiiKind::kIban)) |
    (1u << static_cast<uint32_t>(PiiKind::kJwt)) | (1u << static_cast<uint32_t>(PiiKind::kApiKey)) |
    (1u << static_cast<uint32_t>(PiiKind::kSecret));

std::string EncodeBase64(std::string_view bytes, bool url_safe) {
  const std::string_view alphabet =
      url_safe ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
               : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string encoded;
  uint32_t bits = 0;
  int bit_count = 0;
  for (const char byte : bytes) {
    bits = (bits << 8) | static_cast<unsigned char>(byte);
    bit_count += 8;
    while (bit_count >= 6) {
      bit_count -= 6;
      encoded.push_back(alphabet[(bits >> bit_count) & 63]);
    }
  }
  if (bit_count > 0) {
    encoded.push_back(alphabet[(bits << (6 - bit_count)) & 63]);
  }
  return encoded;  // unpadded
}

// Every byte as %XX when `every_byte`, else only the bytes a URL would escape.
std::string PercentEncode(std::string_view text, bool every_byte) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string encoded;
  for (const char byte : text) {
    const auto value = static_cast<unsigned char>(byte);
    const bool plain = value < 0x80 && (std::isalnum(value) != 0 || byte == '-' || byte == '_');
    if (plain && !every_byte) {
      encoded.push_back(byte);
    } else {
      encoded += {'%', kHex[value >> 4], kHex[value & 15]};
    }
  }
  return encoded;
}

// The smallest text each of MayHoldKinds' tests lets through (each
// caught by that test alone, so that making it any stricter fails
// PrefilterNeverRulesOutWhatScanFinds), with the kind Scan finds in it.
struct Shortest {
  std::string text;
  PiiKind kind;
};

std::vector<Shortest> ShortestOfEachShape() {
  const std::string card13 = "4222222222222";  // a 13-digit Visa test number
  return {
      {card13, PiiKind::kCard},
      {"4222 2222 22222", PiiKind::kCard},
      {"422-222-222-2222", PiiKind::kCard},
      {"MT84 MALT 0110 0001 2345 MTLC AST0 01S", PiiKind::kIban},  // 12 digits in a row at most
      {"mt84 malt 0110 0001 2345 mtlc ast0 01s", PiiKind::kIban},
      {"eyJhbGciOi.eyJz.", PiiKind::kJwt},
      {"xoxa-1234567890", PiiKind::kApiKey},
      {"Bearer abcdefghijklmnop", PiiKind::kSecret},
      {"bEaReR+abcdefghijklmnop", PiiKind::kSecret},
      {EncodeBase64(card13, false), PiiKind::kCard},  // 18 characters
      {PercentEncode(card13, true), PiiKind::kCard},
      {"Xk9mQ2vL7pR4tZ8wN3bH6jY1cF5dG0sA", PiiKind::kSecret},  // 32 characters
  };
}

// Texts near and around every kind MayHoldKinds must let through: the
// shortest of each shape, generated cards, IBANs, JWTs, keys and secrets,
// plain, base64 (both alphabets, padded or not), percent-encoded (every
// byte, or as a URL would), each cut short by a byte at either end and
// glued to word characters, at every offset of a 64-byte word and across
// its end (MayHoldKinds reads short texts a word at a time, long ones a
// byte at a time); password hashes, emails, phones and addresses, whose
// base64 holds other kinds; long mixed tokens; UTF-8.
std::vector<std::string> TextsAroundTheSensitiveKinds() {
  Generator generator;
  std::vector<std::string> cores;
  for (const Shortest& shortest : ShortestOfEachShape()) {
    cores.push_back(shortest.text);
  }
  cores.push_back(std::string(kJwt));
  cores.push_back("eyJhbGciOiJIUzI1NiJ9.c29tZSBieXRlcw.c2lnbmF0dXJl");
  cores.push_back("$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW");
  cores.push_back("$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG");
  cores.push_back("pbkdf2_sha256$260000$salt$hashhashhash");
  cores.push_back("NO9386011117947");
  cores.push_back("GB82 WEST 1234 5698 7654 32");
  cores.push_back("AKIAABCDEFGHIJKL1234");
  for (int sample_idx = 0; sample_idx < 40; ++sample_idx) {
    cores.push_back(generator.Card());
    cores.push_back(generator.Iban());
    cores.push_back(generator.Key());
    cores.push_back(generator.Secret());
    cores.push_back(generator.Alnum(15 + generator.Pick(20)));
    cores.push_back(generator.Email());
    cores.push_back(generator.Phone());
    cores.push_back(generator.Ip());
    cores.push_back("Bearer " + generator.Alnum(16 + generator.Pick(8)));
    cores.push_back("card " + generator.Card() + " for " + generator.Email());
  }
  std::vector<std::string> texts;
  const size_t core_count = cores.size();
  for (size_t core_idx = 0; core_idx < core_count; ++core_idx) {
    const std::string core = cores[core_idx];
    for (const std::string& encoded :
         {core, EncodeBase64(core, false), EncodeBase64(core, true),
          EncodeBase64(core, false) + "==", PercentEncode(core, true), PercentEncode(core, false),
          PercentEncode(EncodeBase64(core, false) + "==", false)}) {
      texts.push_back(encoded);
      texts.push_back(encoded.substr(1));
      texts.push_back(encoded.substr(0, encoded.size() - 1));
      texts.push_back("x" + encoded + "y");
      texts.push_back("7" + encoded + "7");
    }
  }
  // Every offset of the word and across its end, in UTF-8 and ASCII filler.
  const std::string fillers[] = {"a", " ", "é", "-", "."};
  for (const Shortest& shortest : ShortestOfEachShape()) {
    for (size_t offset = 0; offset <= 70; ++offset) {
      std::string filler;
      while (filler.size() < offset) {
        filler += fillers[offset % std::size(fillers)];
      }
      filler.resize(offset);
      texts.push_back(filler + " " + shortest.text);
      texts.push_back(shortest.text + " " + filler);
    }
  }
  // Random text from the bytes the scanners look at.
  static constexpr std::string_view kBytes[] = {
      "0", "1", "4", "9", " ", "-", ".", "@", "%", "/",  "+",  "=",  "_",   ":",   "$",
      "e", "y", "J", "b", "B", "x", "Q", "€", "«", "ｏ", "３", "2F", "%3D", "eyJ", "earer "};
  for (int text_idx = 0; text_idx < 20000; ++text_idx) {
    std::string text;
    const size_t pieces = generator.Pick(60);
    for (size_t piece = 0; piece < pieces; ++piece) {
      text += generator.Pick(3) == 0 ? generator.Digits(1 + generator.Pick(6))
                                     : std::string(kBytes[generator.Pick(std::size(kBytes))]);
    }
    texts.push_back(text);
  }
  return texts;
}

TEST(MayHoldKindsTest, TheShortestOfEachShapeIsFound) {
  for (const Shortest& shortest : ShortestOfEachShape()) {
    const std::vector<Detection> detections = ScanText(shortest.text);
    ASSERT_EQ(detections.size(), 1u) << shortest.text;
    EXPECT_EQ(PiiKindName(detections[0].kind), PiiKindName(shortest.kind)) << shortest.text;
    EXPECT_TRUE(Shared().MayHoldKinds(shortest.text, kSensitiveKinds)) << shortest.text;
  }
}

// The prefilter against the full scan: whenever Scan finds a card, IBAN,
// JWT, API key or secret in a text, MayHoldKinds lets the text through,
// for those kinds together and for each alone; and ScanKinds (which asks
// MayHoldKinds first) answers what Scan answers, filtered.
TEST(MayHoldKindsTest, PrefilterNeverRulesOutWhatScanFinds) {
  const std::vector<std::string> texts = TextsAroundTheSensitiveKinds();
  size_t texts_with_wanted = 0;
  size_t texts_ruled_out = 0;
  for (const std::string& text : texts) {
    const std::vector<Detection> all = ScanText(text);
    uint32_t kinds_found = 0;
    for (const Detection& detection : all) {
      kinds_found |= 1u << static_cast<uint32_t>(detection.kind);
    }
    const bool may_hold = Shared().MayHoldKinds(text, kSensitiveKinds);
    if ((kinds_found & kSensitiveKinds) != 0) {
      ++texts_with_wanted;
      ASSERT_TRUE(may_hold) << "ruled out, yet Scan finds kinds " << kinds_found << ": " << text;
    }
    texts_ruled_out += may_hold ? 0 : 1;
    for (uint32_t kind = 0; kind < kPiiKindCount; ++kind) {
      if ((kSensitiveKinds >> kind & 1) != 0 && (kinds_found >> kind & 1) != 0) {
        ASSERT_TRUE(Shared().MayHoldKinds(text, 1u << kind)) << kind << ": " << text;
      }
    }
    std::vector<Detection> expected;
    for (const Detection& detection : all) {
      if ((kSensitiveKinds >> static_cast<uint32_t>(detection.kind) & 1) != 0) {
        expected.push_back(detection);
      }
    }
    std::vector<Detection> got;
    Shared().ScanKinds(text, kSensitiveKinds, &got);
    ASSERT_EQ(got, expected) << text;
  }
  // Enough of each: texts the scan flags, and texts the prefilter spares it.
  std::printf("%zu texts: %zu with a wanted kind, %zu ruled out\n", texts.size(), texts_with_wanted,
              texts_ruled_out);
  EXPECT_GE(texts_with_wanted, 3000u);
  EXPECT_GE(texts_ruled_out, 5000u);
}

// What an analytics export holds in its long cells, ruled out in one pass
// (the cost the incident module's every-cell scan saves), and another kind
// asked for: never ruled out.
TEST(MayHoldKindsTest, RulesOutTheCommonValuesOfAnAnalyticsExport) {
  for (const std::string_view text : {
           "2026-10-26T05:11:40.681Z",
           "faridjuniper59975@gmail.com",
           "nadia.cedar7149884+promo0@example.org",
           "josenunez3207679@gmail.com",
           "stranger2674121@elsewhere.example",
           "u-7urnme-59975",
           "u-bn24jy5-3199760",
           "https://news.example/item",
           "https://social.example/feed?utm_source=newsletter",
           "Invoice Viewed",
           "Elena Núñez Fernández",
           "ｏｍａｒ.ａｌｄｅｒ３２２３５１７@ｅｘａｍｐｌｅ.ｎｅｔ",
           "+44 20 7946 0958",
           "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0.0.0 Safari/537.36",
       }) {
    EXPECT_FALSE(Shared().MayHoldKinds(text, kSensitiveKinds)) << text;
    EXPECT_TRUE(Shared().MayHoldKinds(
        text, kSensitiveKinds | (1u << static_cast<uint32_t>(PiiKind::kEmail))))
        << text;
  }
}

}  // namespace
}  // namespace minpanel::privacy
