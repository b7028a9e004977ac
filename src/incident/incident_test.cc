// The incident module in-process: readers, column recognition, every
// matching rule, Unicode normalisation, categories exposed and not, the
// deadline and the escaping of the outputs.
#include "incident/incident.h"
#include "incident/table_internal.h"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

#include "privacy/detectors.h"

namespace minpanel::incident {
namespace {

const privacy::Detectors& SharedDetectors() {
  static const privacy::Detectors detectors;
  return detectors;
}

Table Parse(std::string_view text) {
  Result<Table> table = ParseTable(text);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return table.ok() ? std::move(*table) : Table();
}

Recognition Recognize(const Table& table, std::string_view file,
                      const std::vector<ColumnOverride>& overrides = {}) {
  Result<Recognition> recognition = RecognizeColumns(table, file, overrides, SharedDetectors());
  EXPECT_TRUE(recognition.ok()) << recognition.status().ToString();
  return recognition.ok() ? std::move(*recognition) : Recognition();
}

ColumnKind KindOf(const Recognition& recognition, std::string_view name) {
  for (const ColumnRecognition& column : recognition.columns) {
    if (column.name == name) {
      return column.kind;
    }
  }
  return ColumnKind::kUnknown;
}

// ---- Readers

TEST(TableTest, CsvQuotedFieldsAndLineNumbers) {
  const Table table = Parse(
      "id,note\n"
      "1,\"a, quoted \"\"field\"\"\"\n"
      "2,\"spans\ntwo lines\"\n"
      "3,plain\n");
  ASSERT_EQ(table.row_count(), 3u);
  EXPECT_EQ(table.Cell(0, 1), "a, quoted \"field\"");
  EXPECT_EQ(table.Cell(1, 1), "spans\ntwo lines");
  EXPECT_EQ(table.Line(0), 2u);
  EXPECT_EQ(table.Line(1), 3u);
  EXPECT_EQ(table.Line(2), 5u);
  EXPECT_EQ(table.format(), FileFormat::kCsv);
}

TEST(TableTest, CsvWrongFieldCountIsRejectedWithItsLine) {
  const Table table = Parse("a,b\n1,2\n1,2,3\n4,5\n");
  EXPECT_EQ(table.row_count(), 2u);
  ASSERT_EQ(table.rejected().size(), 1u);
  EXPECT_EQ(table.rejected()[0].line, 3u);
  EXPECT_NE(table.rejected()[0].reason.find("3 fields"), std::string::npos);
  EXPECT_EQ(table.rows_seen(), 3u);
}

TEST(TableTest, CsvMalformedQuoteRejectsOnlyThatRow) {
  const Table table = Parse("a,b\n1,x\"y\"z\n2,ok\n");
  EXPECT_EQ(table.row_count(), 1u);
  ASSERT_EQ(table.rejected().size(), 1u);
  EXPECT_EQ(table.rejected()[0].line, 2u);
  EXPECT_EQ(table.Cell(0, 0), "2");
}

TEST(TableTest, CsvNotUtf8IsRejectedAsMixedEncoding) {
  const Table table = Parse("name,city\nJos\xe9,Madrid\nAna,Lisbon\n");
  EXPECT_EQ(table.row_count(), 1u);
  ASSERT_EQ(table.rejected().size(), 1u);
  EXPECT_NE(table.rejected()[0].reason.find("not UTF-8"), std::string::npos);
}

TEST(TableTest, CsvSemicolonDelimiterAndBomAndDuplicateHeader) {
  const Table table = Parse("\xEF\xBB\xBFid;email;email\n1;a@x.test;b@x.test\n");
  ASSERT_EQ(table.columns().size(), 3u);
  EXPECT_EQ(table.columns()[0], "id");
  EXPECT_EQ(table.columns()[2], "email#2");
  EXPECT_EQ(table.Cell(0, 2), "b@x.test");
}

TEST(TableTest, CsvRecordOverRowLimitIsRejected) {
  std::string text = "a\n\"" + std::string(kRowBytesMax + 10, 'x') + "\"\nshort\n";
  const Table table = Parse(text);
  EXPECT_EQ(table.row_count(), 1u);
  ASSERT_GE(table.rejected().size(), 1u);
  EXPECT_NE(table.rejected()[0].reason.find("kRowBytesMax"), std::string::npos);
}

// The CSV reader splits lines without quotes itself and gives the rest to
// libcsv: both ways must read every file alike (fuzz/incident_stream_fuzz.cc
// checks the same on any bytes).
TEST(TableTest, CsvPlainLinesReadAsLibcsvReadsThem) {
  const std::string texts[] = {
      "a,b,c\n1,2,3\n",
      "a,b,c\r\n 1 ,\t2\t, 3\r\n\r\n   \n4,5,6",
      "a,b\n1,\"x,y\"\n\"multi\nline\",2\n3,4\n",
      "a,b\n1,2,3\n\n\n4\n5,6\n",
      "a;b\n1;2\n,;\n ; \n",
      "a\tb\n1\t2\n\t\n \t \n",
      "a,b\n1,x\"y\n3,4\n",
      "a,b\n1,\xff\n\xc3\xa9,2\n",
      "a,b\n1,2\r3,4\n5,6\n",
      "a,b\n\"open,1\n2,3\n",
      "\n\n a , b \n1,2",
      "a,b\n1,2\r",
  };
  for (const std::string& text : texts) {
    SCOPED_TRACE(text);
    const Result<Table> fast = ParseTable(text);
    const Result<Table> libcsv = ParseTableWith(text, false);
    ASSERT_EQ(fast.ok(), libcsv.ok());
    if (!fast.ok()) {
      EXPECT_EQ(fast.status().message(), libcsv.status().message());
      continue;
    }
    ASSERT_EQ(fast->columns(), libcsv->columns());
    ASSERT_EQ(fast->row_count(), libcsv->row_count());
    for (size_t row = 0; row < fast->row_count(); ++row) {
      EXPECT_EQ(fast->Line(row), libcsv->Line(row));
      for (size_t column = 0; column < fast->columns().size(); ++column) {
        EXPECT_EQ(fast->Cell(row, column), libcsv->Cell(row, column));
      }
    }
    ASSERT_EQ(fast->rejected().size(), libcsv->rejected().size());
    for (size_t rejected = 0; rejected < fast->rejected().size(); ++rejected) {
      EXPECT_EQ(fast->rejected()[rejected].line, libcsv->rejected()[rejected].line);
      EXPECT_EQ(fast->rejected()[rejected].reason, libcsv->rejected()[rejected].reason);
    }
  }
  // A plain line checked: "1, 2" splits into the trimmed cells.
  const Result<Table> table = ParseTable("a,b\n 1 , 2 \n");
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->Cell(0, 0), "1");
  EXPECT_EQ(table->Cell(0, 1), "2");
}

TEST(TableTest, JsonLinesAnyShapeFlattened) {
  const Table table = Parse(
      "{\"event\":\"x\",\"properties\":{\"$email\":\"a@x.test\",\"geo\":{\"city\":\"Lyon\"},"
      "\"tags\":[\"p\",\"q\"],\"n\":3,\"ok\":true,\"none\":null}}\n"
      "\n"
      "{\"event\": broken\n"
      "{\"event\":\"y\",\"extra\":1}\n");
  EXPECT_EQ(table.format(), FileFormat::kJsonLines);
  ASSERT_EQ(table.row_count(), 2u);
  const auto column = [&](std::string_view name) { return *table.FindColumn(name); };
  EXPECT_EQ(table.Cell(0, column("properties.$email")), "a@x.test");
  EXPECT_EQ(table.Cell(0, column("properties.geo.city")), "Lyon");
  EXPECT_EQ(table.Cell(0, column("properties.tags.1")), "q");
  EXPECT_EQ(table.Cell(0, column("properties.n")), "3");
  EXPECT_EQ(table.Cell(0, column("properties.ok")), "true");
  EXPECT_FALSE(table.FindColumn("properties.none").has_value());
  EXPECT_EQ(table.Cell(1, column("extra")), "1");
  EXPECT_EQ(table.Cell(1, column("properties.$email")), "");
  ASSERT_EQ(table.rejected().size(), 1u);
  EXPECT_EQ(table.rejected()[0].line, 3u);
  EXPECT_EQ(table.Line(1), 4u);
}

TEST(TableTest, JsonArrayAndObjectHoldingAnArray) {
  const Table array = Parse("[{\"id\":1},{\"id\":2}]");
  EXPECT_EQ(array.format(), FileFormat::kJsonArray);
  EXPECT_EQ(array.row_count(), 2u);
  const Table object = Parse("{\"meta\":{\"n\":2},\n \"users\":[{\"id\":1},\n{\"id\":2}]}");
  EXPECT_EQ(object.format(), FileFormat::kJsonObjectArray);
  ASSERT_EQ(object.row_count(), 2u);
  EXPECT_EQ(object.Cell(1, *object.FindColumn("id")), "2");
}

TEST(TableTest, JsonTooDeepIsRejected) {
  std::string deep;
  for (size_t level = 0; level <= kJsonDepthMax + 1; ++level) {
    deep += "{\"a\":";
  }
  deep += "1" + std::string(kJsonDepthMax + 2, '}');
  const Table table = Parse(deep + "\n{\"b\":2}\n");
  EXPECT_EQ(table.row_count(), 1u);
  ASSERT_EQ(table.rejected().size(), 1u);
  EXPECT_NE(table.rejected()[0].reason.find("kJsonDepthMax"), std::string::npos);
}

TEST(TableTest, EmptyFileAndBadJsonDocumentFail) {
  EXPECT_FALSE(ParseTable("  \n").ok());
  EXPECT_FALSE(ParseTable("[{\"a\":1},").ok());
}

// ---- Recognition

TEST(RecognitionTest, ByNameByContentAndBothWithConfidence) {
  const Table table = Parse(
      "user_id,contact,who,ip,agent,link,country,misc\n"
      "u1,ana@x.test,Ana Birch,10.1.2.3,Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101,"
      "https://a.example/x,PT,q\n"
      "u2,bob@x.test,Bruno Oak,192.168.0.1,Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15,"
      "https://b.example/,ES,r\n");
  const Recognition recognition = Recognize(table, "leaked");
  EXPECT_EQ(KindOf(recognition, "user_id"), ColumnKind::kUserId);
  EXPECT_EQ(KindOf(recognition, "contact"), ColumnKind::kEmail);
  EXPECT_EQ(KindOf(recognition, "who"), ColumnKind::kFullName);
  EXPECT_EQ(KindOf(recognition, "ip"), ColumnKind::kIpAddress);
  EXPECT_EQ(KindOf(recognition, "agent"), ColumnKind::kUserAgent);
  EXPECT_EQ(KindOf(recognition, "link"), ColumnKind::kUrl);
  EXPECT_EQ(KindOf(recognition, "country"), ColumnKind::kCountry);
  EXPECT_EQ(KindOf(recognition, "misc"), ColumnKind::kUnknown);
  EXPECT_EQ(recognition.columns[1].source, RecognitionSource::kContent);
  EXPECT_EQ(recognition.columns[3].source, RecognitionSource::kNameAndContent);
  EXPECT_GT(recognition.columns[3].confidence, recognition.columns[1].confidence);
  EXPECT_EQ(recognition.columns[0].source, RecognitionSource::kName);
}

TEST(RecognitionTest, NestedNamesSayWhichId) {
  const Table table = Parse(
      "{\"user\":{\"id\":\"a\"},\"org\":{\"id\":\"o\"},"
      "\"properties\":{\"distinct_id\":\"a\",\"$referrer\":\"https://r.example/\"}}");
  const Recognition recognition = Recognize(table, "leaked");
  EXPECT_EQ(KindOf(recognition, "user.id"), ColumnKind::kUserId);
  EXPECT_EQ(KindOf(recognition, "org.id"), ColumnKind::kOrgId);
  EXPECT_EQ(KindOf(recognition, "properties.distinct_id"), ColumnKind::kUserId);
  EXPECT_EQ(KindOf(recognition, "properties.$referrer"), ColumnKind::kReferrer);
}

TEST(RecognitionTest, MapOverridesAndUnknownColumnFails) {
  const Table table = Parse("a,b\nx,y\n");
  const Recognition recognition = Recognize(
      table, "leaked",
      {*ParseColumnOverride("leaked.a=user_id"), *ParseColumnOverride("accounts.b=email")});
  EXPECT_EQ(KindOf(recognition, "a"), ColumnKind::kUserId);
  EXPECT_EQ(recognition.columns[0].source, RecognitionSource::kMap);
  EXPECT_EQ(recognition.columns[0].confidence, 1.0);
  EXPECT_EQ(KindOf(recognition, "b"), ColumnKind::kUnknown);  // the override was for accounts
  const Result<Recognition> missing = RecognizeColumns(
      table, "leaked", {*ParseColumnOverride("leaked.zz=email")}, SharedDetectors());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no such column"), std::string::npos);
}

TEST(RecognitionTest, OverrideSyntaxErrors) {
  EXPECT_FALSE(ParseColumnOverride("email").ok());
  EXPECT_FALSE(ParseColumnOverride("vendor.col=email").ok());
  const Result<ColumnOverride> bad_kind = ParseColumnOverride("leaked.col=favourite_colour");
  ASSERT_FALSE(bad_kind.ok());
  EXPECT_NE(bad_kind.status().message().find("user_id"), std::string::npos);
  const Result<ColumnOverride> dotted = ParseColumnOverride("leaked.user.email=email");
  ASSERT_TRUE(dotted.ok());
  EXPECT_EQ(dotted->column, "user.email");
}

TEST(RecognitionTest, CardNumbersAndHashesAreFoundWhateverTheColumnName) {
  const Table table = Parse(
      "user_id,notes,blob\n"
      "u1,paid with 4111 1111 1111 1111 yesterday,$2b$12$abcdefghijklmnopqrstuvwxyz0123456789\n"
      "u2,nothing,plain\n"
      "u3,4111111111111112,5f4dcc3b5aa765d61d8327deb882cf99\n");
  const Recognition recognition = Recognize(table, "leaked");
  EXPECT_EQ(recognition.columns[1].card_values, 1u);  // the second number fails Luhn
  EXPECT_EQ(recognition.columns[2].credential_values, 2u);
  EXPECT_TRUE(recognition.HasCategory(Category::kPayment));
  EXPECT_TRUE(recognition.HasCategory(Category::kCredentials));
  EXPECT_EQ(KindOf(recognition, "blob"), ColumnKind::kPasswordHash);
}

// RecognizeColumns in its two parts (crossref scans the accounts and orgs
// beside the cross-reference): kinds first, with nothing counted, then the
// scan added — the same recognition as in one go.
TEST(RecognitionTest, KindsThenScanAddedEqualRecognizeColumns) {
  const Table table = Parse(
      "user_id,notes,blob\n"
      "u1,paid with 4111 1111 1111 1111 yesterday,$2b$12$abcdefghijklmnopqrstuvwxyz0123456789\n"
      "u2,nothing,plain\n"
      "u3,,5f4dcc3b5aa765d61d8327deb882cf99\n");
  const Recognition whole = Recognize(table, "accounts");
  Result<Recognition> kinds = RecognizeColumnKinds(table, "accounts", {}, SharedDetectors());
  ASSERT_TRUE(kinds.ok());
  EXPECT_FALSE(kinds->HasCategory(Category::kPayment));  // nothing counted yet
  EXPECT_TRUE(kinds->sensitive_cells.empty());
  Recognition scanned;
  ScanTable(table, SharedDetectors(), &scanned);
  AddScan(std::move(scanned), &*kinds);
  ASSERT_EQ(kinds->columns.size(), whole.columns.size());
  for (size_t column = 0; column < whole.columns.size(); ++column) {
    EXPECT_EQ(kinds->columns[column].kind, whole.columns[column].kind) << column;
    EXPECT_EQ(kinds->columns[column].values_non_empty, whole.columns[column].values_non_empty);
    EXPECT_EQ(kinds->columns[column].card_values, whole.columns[column].card_values);
    EXPECT_EQ(kinds->columns[column].iban_values, whole.columns[column].iban_values);
    EXPECT_EQ(kinds->columns[column].credential_values, whole.columns[column].credential_values);
  }
  EXPECT_EQ(kinds->columns[1].values_non_empty, 2u);
  EXPECT_EQ(kinds->columns[1].card_values, 1u);
  EXPECT_EQ(kinds->columns[2].credential_values, 2u);
  EXPECT_EQ(kinds->sensitive_cells, whole.sensitive_cells);
  EXPECT_FALSE(kinds->sensitive_cells.empty());
}

// A long table (the accounts file) is scanned in two halves on two threads:
// the counts and the cells are those of one scan over the whole of it,
// whichever half holds the finds, or neither.
TEST(RecognitionTest, ALongTableScannedInHalvesCountsAndMarksAsOneScan) {
  constexpr size_t kRows = 70'000;  // over the halves' threshold
  for (const size_t marked_row : {size_t{10}, kRows - 10, kRows}) {
    std::string text = "user_id,notes\n";
    for (size_t row = 0; row < kRows; ++row) {
      text += "u" + std::to_string(row) + ",";
      text += row == 10 && marked_row == 10 ? "card 4111 1111 1111 1111"
              : row == kRows - 10 && marked_row == kRows - 10
                  ? "$2b$12$abcdefghijklmnopqrstuvwxyz0123456789"
                  : "nothing to see here";
      text += "\n";
    }
    const Table table = Parse(text);
    ASSERT_EQ(table.row_count(), kRows);
    const Recognition recognition = Recognize(table, "accounts");
    Recognition one_scan;
    one_scan.columns.resize(table.columns().size());
    ScanSensitiveCells(table, SharedDetectors(), &one_scan, &one_scan.sensitive_cells);
    EXPECT_EQ(recognition.sensitive_cells, one_scan.sensitive_cells) << marked_row;
    for (size_t column = 0; column < table.columns().size(); ++column) {
      EXPECT_EQ(recognition.columns[column].values_non_empty, kRows);
      EXPECT_EQ(recognition.columns[column].card_values, one_scan.columns[column].card_values);
      EXPECT_EQ(recognition.columns[column].credential_values,
                one_scan.columns[column].credential_values);
    }
    EXPECT_EQ(recognition.columns[1].card_values, marked_row == 10 ? 1u : 0u);
    EXPECT_EQ(recognition.columns[1].credential_values, marked_row == kRows - 10 ? 1u : 0u);
    EXPECT_EQ(recognition.sensitive_cells.empty(), marked_row == kRows);
  }
}

// The every-cell scan (ScanSensitiveCells: the password-hash shapes, then
// the detectors' ScanKinds, which a one-pass prefilter fronts) marks and
// counts exactly what the full scan finds in each cell of 13 bytes and
// more: cards and IBANs as payment, JWTs, API keys, secrets and password
// hashes as credentials. Cells near every shape, plain and encoded, and
// random ones; src/privacy/detectors_test.cc checks the prefilter alone.
TEST(RecognitionTest, EveryCellScanMarksWhatTheFullScanFinds) {
  std::vector<std::string> values = {"4222222222222",
                                     "4222 2222 22222",
                                     "422-222-222-2222",
                                     "card 4111-1111-1111-1111 x",
                                     "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
                                     "NO9386011117947",
                                     "nl91abna0417164300",
                                     "eyJhbGciOi.eyJz.",
                                     "xoxa-1234567890",
                                     "AKIAABCDEFGHIJKL1234",
                                     "Bearer abcdefghijklmnop",
                                     "bearer+abcdefghijklmnop",
                                     "NDIyMjIyMjIyMjIyMg",
                                     "%34%32%32%32%32%32%32%32%32%32%32%32%32",
                                     "Xk9mQ2vL7pR4tZ8wN3bH6jY1cF5dG0sA",
                                     "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
                                     "pbkdf2_sha256$260000$salt$hashhashhash",
                                     "scrypt:32768:8:1$abcdefgh$0123456789abcdef",
                                     "5f4dcc3b5aa765d61d8327deb882cf99",
                                     "x$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkq",
                                     "2026-10-26T05:11:40.681Z",
                                     "faridjuniper59975@gmail.com",
                                     "u-bn24jy5-3199760",
                                     "https://news.example/item",
                                     "ｏｍａｒ.ａｌｄｅｒ３２２３５１７@ｅｘａｍｐｌｅ.ｎｅｔ",
                                     "Y2FyZCA0MTExMTExMTExMTExMTEx",
                                     "4111111111111111@example.com"};
  static constexpr std::string_view kPieces[] = {
      "0", "4",  "9",   " ",    "-",    ".",        "@",          "%",  "/",
      "+", "=",  "$",   ":",    "eyJ",  "earer ",   "b",          "x",  "Q",
      "€", "３", "%3D", "4111", "GB82", "sk_live_", "0123456789", "aZ9"};
  std::mt19937_64 random(20261129);
  for (int value_idx = 0; value_idx < 5000; ++value_idx) {
    std::string value;
    const size_t pieces = random() % 24;
    for (size_t piece = 0; piece < pieces; ++piece) {
      value += kPieces[random() % std::size(kPieces)];
    }
    values.push_back(value);
  }
  Table table;
  ASSERT_TRUE(table.ColumnIndex("a").ok());
  ASSERT_TRUE(table.ColumnIndex("b").ok());
  for (size_t row = 0; row * 2 < values.size(); ++row) {
    table.BeginRow(row + 2);
    table.AddCell(0, values[row * 2]);
    if (row * 2 + 1 < values.size()) {
      table.AddCell(1, values[row * 2 + 1]);
    }
    table.EndRow();
  }
  Recognition scanned;
  scanned.columns.resize(2);
  ScanSensitiveCells(table, SharedDetectors(), &scanned, &scanned.sensitive_cells);
  ASSERT_FALSE(scanned.sensitive_cells.empty());
  std::array<ColumnRecognition, 2> expected{};
  size_t marked = 0;
  for (size_t value_idx = 0; value_idx < values.size(); ++value_idx) {
    const std::string& value = values[value_idx];
    ColumnRecognition& counts = expected[value_idx % 2];
    counts.values_non_empty += value.empty() ? 0 : 1;
    uint8_t bits = 0;
    if (value.size() >= 13) {
      bits |= LooksLikePasswordHash(value) ? 2 : 0;
      std::vector<privacy::Detection> detections;
      SharedDetectors().Scan(value, &detections);
      for (const privacy::Detection& detection : detections) {
        switch (detection.kind) {
          case privacy::PiiKind::kCard:
            bits |= 1;
            ++counts.card_values;
            break;
          case privacy::PiiKind::kIban:
            bits |= 1;
            ++counts.iban_values;
            break;
          case privacy::PiiKind::kJwt:
          case privacy::PiiKind::kApiKey:
          case privacy::PiiKind::kSecret:
            bits |= 2;
            break;
          default:
            break;
        }
      }
    }
    counts.credential_values += (bits & 2) != 0 ? 1 : 0;
    marked += bits != 0 ? 1 : 0;
    EXPECT_EQ(scanned.sensitive_cells[value_idx], bits) << value;
  }
  for (size_t column = 0; column < 2; ++column) {
    EXPECT_EQ(scanned.columns[column].values_non_empty, expected[column].values_non_empty);
    EXPECT_EQ(scanned.columns[column].card_values, expected[column].card_values);
    EXPECT_EQ(scanned.columns[column].iban_values, expected[column].iban_values);
    EXPECT_EQ(scanned.columns[column].credential_values, expected[column].credential_values);
  }
  EXPECT_GE(marked, 20u);
}

// Every shape of stored password hash, whatever byte it starts with (the
// check compares a value with the prefixes only when its first byte starts
// one of them); the same after another byte is not a prefix match.
TEST(RecognitionTest, PasswordHashPrefixesAreFoundAtTheStartOnly) {
  for (const std::string_view prefix :
       {"$2a$", "$2b$", "$2y$", "$argon2i$", "$argon2id$", "$argon2d$", "$6$", "$5$", "$1$", "$y$",
        "pbkdf2_sha256$", "pbkdf2_sha1$", "sha1$", "bcrypt$", "scrypt:", "pbkdf2:"}) {
    const std::string hash = std::string(prefix) + "abcdefghijklmnop";
    EXPECT_TRUE(LooksLikePasswordHash(hash)) << hash;
    EXPECT_FALSE(LooksLikePasswordHash(hash.substr(0, hash.size() - 1))) << hash;
    EXPECT_FALSE(LooksLikePasswordHash("x" + hash)) << hash;
  }
}

TEST(RecognitionTest, LuhnAndHashShapes) {
  EXPECT_TRUE(LuhnValid("4111111111111111"));
  EXPECT_FALSE(LuhnValid("4111111111111112"));
  EXPECT_FALSE(LuhnValid("411111111111"));  // too short
  EXPECT_TRUE(LooksLikePasswordHash("5f4dcc3b5aa765d61d8327deb882cf99"));
  EXPECT_TRUE(LooksLikePasswordHash("$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$abc"));
  EXPECT_TRUE(LooksLikePasswordHash("pbkdf2_sha256$260000$salt$hashhashhash"));
  EXPECT_FALSE(LooksLikePasswordHash("12345678901234567890123456789012"));  // digits: an id
  EXPECT_FALSE(LooksLikePasswordHash("hello"));
}

// ---- Email normalisation

TEST(EmailTest, CaseAndNfkcFolding) {
  EXPECT_EQ(*NormalizeEmail("  Ana.Birch@Example.ORG "), "ana.birch@example.org");
  // Full-width letters (U+FF21…) fold to ASCII under NFKC.
  EXPECT_EQ(*NormalizeEmail("\xEF\xBC\xA1\xEF\xBD\x8E\xEF\xBD\x81@example.org"), "ana@example.org");
  // Composed and decomposed é compare equal; the German sharp s folds to ss.
  EXPECT_EQ(*NormalizeEmail("Jos\xC3\xA9@x.test"), *NormalizeEmail("Jose\xCC\x81@x.test"));
  EXPECT_EQ(*NormalizeEmail("STRA\xC3\x9F"
                            "E@x.test"),
            "strasse@x.test");
  EXPECT_FALSE(NormalizeEmail("no-at-sign").ok());
  EXPECT_FALSE(NormalizeEmail("a@b@c").ok());
  EXPECT_FALSE(NormalizeEmail("\xff@x.test").ok());
}

TEST(EmailTest, PlusAddressingAndGmailDots) {
  const CanonicalEmail plus = CanonicalizeEmail("ana+news@example.org");
  EXPECT_EQ(plus.address, "ana@example.org");
  EXPECT_TRUE(plus.plus_removed);
  EXPECT_FALSE(plus.gmail_dots_removed);
  // Dots matter outside Gmail.
  EXPECT_EQ(CanonicalizeEmail("a.na@example.org").address, "a.na@example.org");
  const CanonicalEmail gmail = CanonicalizeEmail("a.n.a+x@googlemail.com");
  EXPECT_EQ(gmail.address, "ana@gmail.com");
  EXPECT_TRUE(gmail.gmail_dots_removed);
  EXPECT_TRUE(gmail.plus_removed);
  // A leading '+' is a local part, not a tag.
  EXPECT_EQ(CanonicalizeEmail("+ana@example.org").address, "+ana@example.org");
}

// One CanonicalEmail reused from email to email (the index and the
// look-ups do so) gives each email's own address and flags, none left over
// from the one before.
TEST(EmailTest, CanonicalizeIntoAReusedBufferGivesEachEmailsOwn) {
  CanonicalEmail reused;
  for (const std::string_view email :
       {"a.n.a+x@googlemail.com", "ana@example.org", "b.o+tag@gmail.com", "nodomain",
        "+lead@example.org", "x.y@example.org", "c@gmail.com"}) {
    CanonicalizeEmailTo(email, &reused);
    const CanonicalEmail fresh = CanonicalizeEmail(email);
    EXPECT_EQ(reused.address, fresh.address) << email;
    EXPECT_EQ(reused.plus_removed, fresh.plus_removed) << email;
    EXPECT_EQ(reused.gmail_dots_removed, fresh.gmail_dots_removed) << email;
  }
  CanonicalizeEmailTo("b.o+tag@gmail.com", &reused);
  EXPECT_EQ(reused.address, "bo@gmail.com");
  EXPECT_TRUE(reused.plus_removed);
  EXPECT_TRUE(reused.gmail_dots_removed);
  CanonicalizeEmailTo("ana@example.org", &reused);
  EXPECT_EQ(reused.address, "ana@example.org");
  EXPECT_FALSE(reused.plus_removed);
  EXPECT_FALSE(reused.gmail_dots_removed);
}

// ---- Cross-reference

struct Fixture {
  Table leaked;
  Table accounts;
  Table orgs;
  Recognition leaked_columns;
  Recognition account_columns;
  Recognition org_columns;
  CrossrefInput Input(bool with_orgs = true) {
    return {&leaked,
            &leaked_columns,
            &accounts,
            &account_columns,
            with_orgs ? &orgs : nullptr,
            with_orgs ? &org_columns : nullptr};
  }
};

Fixture MakeFixture(std::string_view leaked, std::string_view accounts,
                    std::string_view orgs = "org_id,name,admin_email\no1,Org One,boss@one.test\n") {
  Fixture fixture{Parse(leaked), Parse(accounts), Parse(orgs), {}, {}, {}};
  fixture.leaked_columns = Recognize(fixture.leaked, "leaked");
  fixture.account_columns = Recognize(fixture.accounts, "accounts");
  fixture.org_columns = Recognize(fixture.orgs, "orgs");
  return fixture;
}

constexpr std::string_view kAccounts =
    "user_id,email,name,org_id,role,language,country\n"
    "u1,ana@example.org,Ana Birch,o1,admin,en,PT\n"
    "u2,bruno@example.org,Bruno Oak,o1,member,es,ES\n"
    "u3,carla@gmail.com,Carla Elm,o2,member,en,FR\n"
    "u4,diego+work@example.org,Diego Pine,o2,owner,en,DE\n"
    "u5,elena@example.org,Elena Reed,o3,member,en,GB\n";

const AccountImpact* Affected(const Fixture& fixture, const Impact& impact,
                              std::string_view user_id) {
  for (const AccountImpact& account : impact.accounts) {
    if (fixture.accounts.Cell(account.account_row, 0) == user_id) {
      return &account;
    }
  }
  return nullptr;
}

bool Has(uint32_t bits, auto value) { return ((bits >> static_cast<uint32_t>(value)) & 1) != 0; }

TEST(CrossrefTest, EveryMatchingRuleSaysHowItMatched) {
  Fixture fixture = MakeFixture(
      "user_id,email,city,org_id\n"
      "u1,,Lisbon,\n"                        // user id
      ",BRUNO@Example.org,Madrid,\n"         // email, case-folded
      ",c.a.r.l.a@googlemail.com,Lyon,\n"    // Gmail dots and googlemail
      ",diego+promo@example.org,Berlin,\n"   // plus-addressing on both sides
      "ghost,ghost@else.test,Leeds,o3\n"     // org only
      "nobody,nobody@else.test,Austin,o9\n"  // nothing
      ",,Porto,\n",                          // no key at all
      kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok()) << impact.status().ToString();
  EXPECT_EQ(impact->accounts.size(), 4u);
  EXPECT_TRUE(Has(Affected(fixture, *impact, "u1")->methods, MatchMethod::kUserId));
  EXPECT_TRUE(Has(Affected(fixture, *impact, "u2")->methods, MatchMethod::kEmail));
  EXPECT_TRUE(Has(Affected(fixture, *impact, "u3")->methods, MatchMethod::kEmailGmailDots));
  EXPECT_TRUE(Has(Affected(fixture, *impact, "u4")->methods, MatchMethod::kEmailPlusAddress));
  EXPECT_EQ(Affected(fixture, *impact, "u5"), nullptr);
  EXPECT_EQ(impact->leaked_rows_matched_account, 4u);
  EXPECT_EQ(impact->leaked_rows_matched_org_only, 1u);
  EXPECT_EQ(impact->leaked_rows_unmatched, 2u);
  EXPECT_EQ(impact->leaked_rows_seen, 7u);
  ASSERT_EQ(impact->unmatched.size(), 2u);
  EXPECT_EQ(impact->unmatched[0].line, 7u);
  EXPECT_EQ(impact->unmatched[1].reason, "it has no user id, email or org id");
  // Orgs: o1 (u1, u2), o2 (u3, u4), o3 (org-only row).
  ASSERT_EQ(impact->orgs.size(), 3u);
  EXPECT_EQ(impact->orgs[0].org_id, "o1");
  EXPECT_EQ(impact->orgs[0].name, "Org One");
  EXPECT_EQ(impact->orgs[0].affected_accounts.size(), 2u);
  EXPECT_EQ(impact->orgs[0].admin_account_rows, std::vector<size_t>{0});  // role admin
  EXPECT_EQ(impact->orgs[0].admin_emails, std::vector<std::string>{"boss@one.test"});
  EXPECT_EQ(impact->orgs[1].admin_account_rows, std::vector<size_t>{3});  // role owner
  EXPECT_EQ(impact->orgs[2].leaked_rows_org_only, 1u);
  EXPECT_EQ(impact->orgs[2].affected_accounts.size(), 0u);
}

TEST(CrossrefTest, ExactEmailBeatsCanonicalAndAmbiguityIsSaid) {
  Fixture fixture = MakeFixture("email\nann@example.org\nann+x@example.org\n",
                                "user_id,email\nu1,ann@example.org\nu2,ann+work@example.org\n");
  const Result<Impact> impact = Crossref(fixture.Input(false));
  ASSERT_TRUE(impact.ok());
  // Row 1: exact to u1. Row 2: canonical ann@example.org fits both.
  ASSERT_EQ(impact->accounts.size(), 2u);
  EXPECT_TRUE(Has(impact->accounts[0].methods, MatchMethod::kEmail));
  EXPECT_TRUE(impact->accounts[0].ambiguous);
  EXPECT_TRUE(impact->accounts[1].ambiguous);
  EXPECT_EQ(impact->leaked_rows_matched_account, 2u);
}

TEST(CrossrefTest, CategoriesExposedPerAccountAndNotInFile) {
  Fixture fixture = MakeFixture(
      "user_id,email,name,city,os,referrer,notes\n"
      "u1,ana@example.org,Ana Birch,Lisbon,iOS,https://r.example/,\n"
      "u2,,,,,,card 4111 1111 1111 1111\n",
      kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok());
  const AccountImpact* ana = Affected(fixture, *impact, "u1");
  ASSERT_NE(ana, nullptr);
  for (const Category category : {Category::kIdentity, Category::kContact, Category::kLocation,
                                  Category::kDevice, Category::kReferrer, Category::kInternalIds}) {
    EXPECT_TRUE(Has(impact->ExposureOf(*ana).categories, category)) << CategoryName(category);
  }
  EXPECT_FALSE(Has(impact->ExposureOf(*ana).categories, Category::kPayment));
  const AccountImpact* bruno = Affected(fixture, *impact, "u2");
  ASSERT_NE(bruno, nullptr);
  EXPECT_TRUE(Has(impact->ExposureOf(*bruno).categories, Category::kPayment));
  EXPECT_FALSE(Has(impact->ExposureOf(*bruno).categories, Category::kContact));
  // The file holds a card number, so payment is not claimed as absent;
  // credentials are absent. Content: the notes column is named content.
  EXPECT_TRUE(Has(impact->file_categories, Category::kPayment));
  EXPECT_FALSE(Has(impact->file_categories, Category::kCredentials));
  const std::string json = ImpactJson(fixture.Input(), *impact, ReportOptions{});
  EXPECT_NE(json.find("\"not_in_file\": [\"credentials\"]"), std::string::npos) << json;
}

// impact.json version 2: each account names its exposure (categories and
// leaked columns), listed once in `exposures` in order of first use;
// `ambiguous` only when true; no per-account `not_exposed` (= not_in_file).
TEST(CrossrefTest, ImpactJsonNamesEachAccountsExposureOnce) {
  Fixture fixture = MakeFixture(
      "user_id,email,name,city\n"
      "u1,ana@example.org,Ana Birch,Lisbon\n"
      "u2,bruno@example.org,Bruno Oak,Madrid\n"
      "u3,,,Paris\n",
      kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok());
  const std::string json = ImpactJson(fixture.Input(), *impact, ReportOptions{});
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.parse(json).get(root), simdjson::SUCCESS) << json;
  EXPECT_EQ(uint64_t(root["version"]), 2u);
  const simdjson::dom::array exposures = root["exposures"];
  ASSERT_EQ(exposures.size(), 2u) << json;
  const auto strings = [](simdjson::dom::array array) {
    std::vector<std::string> values;
    for (const simdjson::dom::element value : array) {
      values.emplace_back(std::string_view(value));
    }
    return values;
  };
  EXPECT_EQ(uint64_t(exposures.at(0)["exposure"]), 0u);
  EXPECT_EQ(strings(exposures.at(0)["exposed_columns"]),
            (std::vector<std::string>{"user_id", "email", "name", "city"}));
  EXPECT_EQ(strings(exposures.at(0)["exposed"]),
            (std::vector<std::string>{"identity", "contact", "location", "internal_ids"}));
  EXPECT_EQ(uint64_t(exposures.at(1)["exposure"]), 1u);
  EXPECT_EQ(strings(exposures.at(1)["exposed_columns"]),
            (std::vector<std::string>{"user_id", "city"}));
  EXPECT_EQ(strings(exposures.at(1)["exposed"]),
            (std::vector<std::string>{"location", "internal_ids"}));
  std::vector<std::pair<std::string, uint64_t>> accounts;
  for (const simdjson::dom::element account : simdjson::dom::array(root["accounts"])) {
    accounts.emplace_back(std::string_view(account["user_id"]), uint64_t(account["exposure"]));
    EXPECT_TRUE(account["ambiguous"].error() == simdjson::NO_SUCH_FIELD);
    EXPECT_TRUE(account["not_exposed"].error() == simdjson::NO_SUCH_FIELD);
  }
  EXPECT_EQ(accounts, (std::vector<std::pair<std::string, uint64_t>>{{"u1", 0}, {"u2", 0}, {"u3", 1}}));
  EXPECT_EQ(strings(root["not_in_file"]),
            (std::vector<std::string>{"credentials", "payment", "content"}));

  // An ambiguous match says so in its entry.
  Fixture ambiguous = MakeFixture("email\nann+x@example.org\n",
                                  "user_id,email\nu1,ann@example.org\nu2,ann+work@example.org\n");
  const Result<Impact> both = Crossref(ambiguous.Input(false));
  ASSERT_TRUE(both.ok());
  const std::string both_json = ImpactJson(ambiguous.Input(false), *both, ReportOptions{});
  ASSERT_EQ(parser.parse(both_json).get(root), simdjson::SUCCESS) << both_json;
  const simdjson::dom::array both_accounts = root["accounts"];
  ASSERT_EQ(both_accounts.size(), 2u);
  for (const simdjson::dom::element account : both_accounts) {
    EXPECT_TRUE(bool(account["ambiguous"]));
    EXPECT_EQ(uint64_t(account["exposure"]), 0u);
  }
}

TEST(CrossrefTest, NothingSensitiveInFileIsStated) {
  Fixture fixture = MakeFixture("user_id,city\nu1,Lisbon\n", kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok());
  const std::string summary = SummaryMarkdown(fixture.Input(), *impact, ReportOptions{});
  EXPECT_NE(summary.find("no passwords"), std::string::npos);
  EXPECT_NE(summary.find("no payment data"), std::string::npos);
  EXPECT_NE(summary.find("no content"), std::string::npos);
}

TEST(CrossrefTest, NoKeyColumnIsAClearError) {
  Fixture fixture = MakeFixture("city,os\nLisbon,iOS\n", kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_FALSE(impact.ok());
  EXPECT_NE(impact.status().message().find("--map leaked.COLUMN=user_id"), std::string::npos);
  Fixture no_accounts_key = MakeFixture("user_id\nu1\n", "city\nLisbon\n");
  EXPECT_FALSE(Crossref(no_accounts_key.Input(false)).ok());
}

TEST(CrossrefTest, DuplicateAccountsWarnWithLines) {
  Fixture fixture =
      MakeFixture("user_id\nu1\n", "user_id,email\nu1,a@x.test\nu1,b@x.test\nu2,a@x.test\n");
  const Result<Impact> impact = Crossref(fixture.Input(false));
  ASSERT_TRUE(impact.ok());
  ASSERT_EQ(impact->warnings.size(), 2u);
  EXPECT_EQ(impact->warnings[0].line, 3u);
  EXPECT_NE(impact->warnings[0].message.find("duplicate user id"), std::string::npos);
  EXPECT_EQ(impact->warnings[1].line, 4u);
}

// The accounts are indexed on two threads (user ids on one, emails on the
// other); their warnings still come in file order, a row's user id
// warning before its email's, and the first kWarningsListedMax listed are
// the file's first, wherever the two threads' warnings fall.
TEST(CrossrefTest, AccountWarningsComeInFileOrder) {
  Fixture few = MakeFixture("user_id\nu1\n",
                            "user_id,email\n"
                            "u1,a@x.test\n"
                            "u2,a@x.test\n"        // line 3: duplicate email
                            "u1,b@x.test\n"        // line 4: duplicate user id
                            "u3,not an email\n"    // line 5: the email cannot be used
                            "u1,b@x.test\n"        // line 6: both, user id first
                            "u4,c@x.test\n"
                            "u2,c@x.test\n");      // line 8: both
  const Result<Impact> impact = Crossref(few.Input(false));
  ASSERT_TRUE(impact.ok()) << impact.status().ToString();
  std::vector<std::pair<uint64_t, std::string>> said;
  for (const Warning& warning : impact->warnings) {
    said.emplace_back(warning.line, warning.message.substr(0, 18));
  }
  const std::vector<std::pair<uint64_t, std::string>> expected = {
      {3, "duplicate email (t"}, {4, "duplicate user id "}, {5, "the email cannot b"},
      {6, "duplicate user id "}, {6, "duplicate email (t"}, {8, "duplicate user id "},
      {8, "duplicate email (t"}};
  EXPECT_EQ(said, expected);

  // 1,200 warnings, user ids' and emails' in turn: the first 1,000 listed
  // are lines 3 to 1,002 in turn, the other 200 counted.
  std::string accounts = "user_id,email\nu0,e0@x.test\n";
  for (int row_idx = 0; row_idx < 1200; ++row_idx) {
    const std::string unique = std::to_string(row_idx + 1);
    accounts += row_idx % 2 == 0 ? "u0,e" + unique + "@x.test\n" : "u" + unique + ",e0@x.test\n";
  }
  Fixture many = MakeFixture("user_id\nu0\n", accounts);
  const Result<Impact> capped = Crossref(many.Input(false));
  ASSERT_TRUE(capped.ok()) << capped.status().ToString();
  ASSERT_EQ(capped->warnings.size(), kWarningsListedMax);
  EXPECT_EQ(capped->warnings_not_listed, 1200 - kWarningsListedMax);
  for (size_t warning_idx = 0; warning_idx < capped->warnings.size(); ++warning_idx) {
    const Warning& warning = capped->warnings[warning_idx];
    ASSERT_EQ(warning.line, warning_idx + 3);
    EXPECT_EQ(warning.message.starts_with("duplicate user id"), warning_idx % 2 == 0)
        << warning.line << ": " << warning.message;
  }
}

// Past 65,536 accounts the emails' index is made in blocks, the last ones'
// keys by the user id thread once its own table is done (here at once: the
// accounts have no user id). What the index says is the same: a duplicate
// and an unusable email in those blocks are warned in file order, and an
// exact and a canonical match reach the right rows across blocks.
TEST(CrossrefTest, EmailsIndexedInBlocksOnTwoThreadsMatchAsOneIndex) {
  constexpr size_t kBlockRows = 65'536;
  constexpr size_t kRows = 5 * kBlockRows + 100;
  constexpr size_t kDuplicateRow = kRows - 50;  // of row 1's email, in the last block
  constexpr size_t kUnusableRow = kRows - 40;
  constexpr size_t kPlusRow = 4 * kBlockRows + 7;  // p2's canonical form
  std::string accounts = "email,name\n";
  for (size_t row = 0; row < kRows; ++row) {
    accounts += row == kDuplicateRow  ? "P1@X.test"
                : row == kUnusableRow ? "not an email"
                : row == kPlusRow     ? "p2+news@x.test"
                                      : "p" + std::to_string(row) + "@x.test";
    accounts += ",Person " + std::to_string(row) + "\n";
  }
  const std::string leaked = "email\np" + std::to_string(kRows - 10) +
                             "@x.test\np1@x.test\np2+other@x.test\np" +
                             std::to_string(kBlockRows + 3) + "@x.test\np2+news@x.test\n";
  Fixture fixture = MakeFixture(leaked, accounts);
  ASSERT_EQ(fixture.accounts.row_count(), kRows);
  // Which blocks the helper takes depends on the threads' timing: run until
  // one run had it make some (nearly always the first), checking every run.
  size_t made_beside = 0;
  for (int attempt = 0; attempt < 5 && made_beside == 0; ++attempt) {
    auto stream = CrossrefStream::Start(fixture.Input(false));
    ASSERT_TRUE(stream.ok()) << stream.status().ToString();
    made_beside = (*stream)->email_blocks_made_beside();
    (*stream)->Add(fixture.leaked, fixture.leaked_columns.sensitive_cells);
    const Impact impact = (*stream)->Finish();
    ASSERT_EQ(impact.warnings.size(), 2u);
    EXPECT_EQ(impact.warnings[0].line, kDuplicateRow + 2);
    EXPECT_TRUE(impact.warnings[0].message.starts_with("duplicate email"))
        << impact.warnings[0].message;
    EXPECT_EQ(impact.warnings[1].line, kUnusableRow + 2);
    EXPECT_TRUE(impact.warnings[1].message.starts_with("the email cannot be used"))
        << impact.warnings[1].message;
    std::vector<std::pair<size_t, bool>> rows;  // account row, ambiguous
    for (const AccountImpact& account : impact.accounts) {
      rows.emplace_back(account.account_row, account.ambiguous);
      // The helper's block keeps the normalised email, not the canonical one.
      EXPECT_EQ(Has(account.methods, MatchMethod::kEmail), account.account_row != 2)
          << account.account_row;
    }
    std::sort(rows.begin(), rows.end());
    const std::vector<std::pair<size_t, bool>> expected = {
        {1, false}, {2, true}, {kBlockRows + 3, false}, {kPlusRow, true}, {kRows - 10, false}};
    EXPECT_EQ(rows, expected);
    EXPECT_EQ(impact.leaked_rows_matched_account, 5u);
  }
  EXPECT_GT(made_beside, 0u) << "the user id thread made no block in 5 runs";
}

TEST(CrossrefTest, CountsByCountryPreferTheLeakedFile) {
  Fixture fixture = MakeFixture("user_id,country\nu1,BR\nu2,\n", kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok());
  ASSERT_EQ(impact->accounts_by_country.size(), 2u);
  EXPECT_EQ(impact->accounts_by_country[0].first, "BR");  // u1: the leaked file's
  EXPECT_EQ(impact->accounts_by_country[1].first, "ES");  // u2: the accounts file's
}

// An organisation's name and admins from the accounts file (found on a
// second thread while Finish orders the affected accounts): the name of its
// first account row that gives one, every admin or owner row, and nothing
// for an organisation no leaked row touched.
TEST(CrossrefTest, AnOrgsNameAndAdminsComeFromItsAccountRows) {
  Fixture fixture = MakeFixture("user_id\nu1\nu5\n",
                                "user_id,email,org_id,org_name,role\n"
                                "u1,a1@x.test,o1,,member\n"
                                "u2,a2@x.test,o1,Acme,admin\n"
                                "u3,a3@x.test,o1,Acme Ltd,owner\n"
                                "u4,a4@x.test,o2,Beta,admin\n"
                                "u5,a5@x.test,,Gamma,admin\n");
  const Result<Impact> impact = Crossref(fixture.Input(/*with_orgs=*/false));
  ASSERT_TRUE(impact.ok()) << impact.status().ToString();
  ASSERT_EQ(impact->orgs.size(), 1u);
  EXPECT_EQ(impact->orgs[0].org_id, "o1");
  EXPECT_EQ(impact->orgs[0].name, "Acme");
  EXPECT_EQ(impact->orgs[0].admin_account_rows, (std::vector<size_t>{1, 2}));
  EXPECT_EQ(impact->orgs[0].affected_accounts.size(), 1u);
}

// An account with no organisation in the accounts file takes the leaked
// row's: each organisation's accounts in file order.
TEST(CrossrefTest, AnAccountsOrgFromTheLeakedFileKeepsFileOrder) {
  Fixture fixture = MakeFixture("user_id,org_id\nu1,o7\nu2,o7\nu3,\n",
                                "user_id,email,org_id\n"
                                "u1,a1@x.test,\n"
                                "u2,a2@x.test,o7\n"
                                "u3,a3@x.test,\n");
  const Result<Impact> impact = Crossref(fixture.Input(/*with_orgs=*/false));
  ASSERT_TRUE(impact.ok()) << impact.status().ToString();
  ASSERT_EQ(impact->accounts.size(), 3u);
  ASSERT_EQ(impact->orgs.size(), 1u);
  EXPECT_EQ(impact->orgs[0].org_id, "o7");
  EXPECT_EQ(impact->orgs[0].affected_accounts, (std::vector<size_t>{0, 1}));  // u1, u2
}

// An account several leaked rows matched, flat (AccountImpact): its first
// line in the entry and the others in Impact::more_leaked_lines, in file
// order; its exposure the union of its rows'; the first country and org id
// any of its rows gave, as indexes into Impact's tables (an org id no file
// knows too). Impact::exposures holds exactly the accounts' exposures,
// numbered in order of first use in accounts order (not the rows' along
// the way), and the tables only what the accounts took.
TEST(CrossrefTest, AccountsOfSeveralRowsKeepEveryLineInTheirTables) {
  const std::string leaked =
      "user_id,city,country,org_id,notes\n"
      "u3,Lyon,DE,o7,\n"                      // line 2
      "u2,,,,\n"                              // line 3
      "u1,Lisbon,PT,o1,\n"                    // line 4
      "u1,,ES,o9,card 4111 1111 1111 1111\n"  // line 5
      "u2,Madrid,ES,,\n"                      // line 6
      "u1,Porto,,,\n"                         // line 7
      "u4,,,,\n";                             // line 8
  Fixture fixture = MakeFixture(leaked,
                                "user_id,email,org_id,country\n"
                                "u1,ana@example.org,o1,PT\n"
                                "u2,bruno@example.org,,\n"
                                "u3,carla@example.org,,\n"
                                "u4,diego@example.org,,FR\n");
  const Result<Impact> in_memory = Crossref(fixture.Input(/*with_orgs=*/false));
  ASSERT_TRUE(in_memory.ok()) << in_memory.status().ToString();
  // Streamed in chunks too: the tables carry over from chunk to chunk.
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("minpanel-several-rows-" + std::to_string(::getpid()) + ".csv");
  std::ofstream(path, std::ios::binary) << leaked;
  std::vector<std::unique_ptr<StreamedCrossref>> streamed;
  for (const size_t chunk_rows : {size_t{1}, size_t{2}, size_t{4}}) {
    CrossrefInput input = fixture.Input(/*with_orgs=*/false);
    auto result = CrossrefLeakedFile(path.string(), &input, {}, SharedDetectors(), chunk_rows);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    streamed.push_back(std::move(*result));
  }
  std::filesystem::remove(path);
  std::vector<const Impact*> impacts = {&*in_memory};
  for (const std::unique_ptr<StreamedCrossref>& result : streamed) {
    impacts.push_back(&result->impact);
  }
  for (const Impact* impact_of_run : impacts) {
    const Impact& impact = *impact_of_run;
    ASSERT_EQ(impact.accounts.size(), 4u);
    const AccountImpact& u1 = impact.accounts[0];
    const AccountImpact& u2 = impact.accounts[1];
    const AccountImpact& u3 = impact.accounts[2];
    const AccountImpact& u4 = impact.accounts[3];
    EXPECT_EQ(u1.account_row, 0u);
    EXPECT_EQ(u4.account_row, 3u);
    const auto lines = [&](const AccountImpact& account) {
      std::vector<uint64_t> all;
      impact.ForEachLeakedLine(account, [&](uint64_t line) { all.push_back(line); });
      return all;
    };
    EXPECT_EQ(lines(u1), (std::vector<uint64_t>{4, 5, 7}));
    EXPECT_EQ(lines(u2), (std::vector<uint64_t>{3, 6}));
    EXPECT_EQ(lines(u3), (std::vector<uint64_t>{2}));
    EXPECT_EQ(lines(u4), (std::vector<uint64_t>{8}));
    EXPECT_EQ(impact.more_leaked_lines.size(), 3u);
    // Exposures: u1's, u2's, u3's, u4's, in that order, and no other
    // (u2's first row alone, the same as u4's, was numbered before u3's
    // as the rows came).
    ASSERT_EQ(impact.exposures.size(), 4u);
    EXPECT_EQ(u1.exposure, 0u);
    EXPECT_EQ(u2.exposure, 1u);
    EXPECT_EQ(u3.exposure, 2u);
    EXPECT_EQ(u4.exposure, 3u);
    EXPECT_EQ(impact.exposures[0].columns, (std::vector<uint16_t>{0, 1, 2, 3, 4}));
    EXPECT_TRUE(Has(impact.exposures[0].categories, Category::kPayment));
    EXPECT_EQ(impact.exposures[1].columns, (std::vector<uint16_t>{0, 1, 2}));
    EXPECT_FALSE(Has(impact.exposures[1].categories, Category::kPayment));
    EXPECT_EQ(impact.exposures[2].columns, (std::vector<uint16_t>{0, 1, 2, 3}));
    EXPECT_EQ(impact.exposures[3].columns, (std::vector<uint16_t>{0}));
    // The first country and org id given, numbered in accounts order; u2's
    // rows gave no org id, u4's nothing.
    EXPECT_EQ(impact.leaked_countries, (std::vector<std::string>{"PT", "ES", "DE"}));
    EXPECT_EQ(impact.LeakedCountry(u1), "PT");
    EXPECT_EQ(impact.LeakedCountry(u2), "ES");
    EXPECT_EQ(impact.LeakedCountry(u3), "DE");
    EXPECT_EQ(u4.leaked_country, kNoIndex);
    EXPECT_EQ(impact.leaked_org_ids, (std::vector<std::string>{"o1", "o7"}));
    EXPECT_EQ(impact.LeakedOrgId(u1), "o1");
    EXPECT_EQ(u2.leaked_org_id, kNoIndex);
    EXPECT_EQ(impact.LeakedOrgId(u3), "o7");  // an org id no file knows
    // u3 has no org of its own: the leaked file's; u2 and u4 none at all.
    ASSERT_EQ(impact.orgs.size(), 2u);
    EXPECT_EQ(impact.orgs[0].org_id, "o1");
    EXPECT_EQ(impact.orgs[0].affected_accounts, (std::vector<size_t>{0}));
    EXPECT_EQ(impact.orgs[1].org_id, "o7");
    EXPECT_EQ(impact.orgs[1].affected_accounts, (std::vector<size_t>{2}));
    // By country: the leaked file's, else (u4) the accounts file's.
    EXPECT_EQ(impact.accounts_by_country,
              (std::vector<std::pair<std::string, uint64_t>>{
                  {"DE", 1}, {"ES", 1}, {"FR", 1}, {"PT", 1}}));
    EXPECT_EQ(impact.accounts_by_category[static_cast<size_t>(Category::kPayment)], 1u);
    EXPECT_EQ(impact.accounts_by_category[static_cast<size_t>(Category::kLocation)], 3u);
    EXPECT_EQ(impact.accounts_by_category[static_cast<size_t>(Category::kInternalIds)], 4u);
  }
}

// ---- Timeline

TEST(TimelineTest, DeadlineIs72HoursAfterDetection) {
  const Result<Timeline> timeline =
      MakeTimeline("2026-03-01T14:30:00+01:00", "2026-03-02T09:00:00Z", "2026-03-04T13:29:59Z");
  ASSERT_TRUE(timeline.ok()) << timeline.status().ToString();
  EXPECT_EQ(FormatIsoTime(*timeline->detected_s), "2026-03-01T13:30:00Z");
  EXPECT_EQ(FormatIsoTime(*timeline->deadline_s), "2026-03-04T13:30:00Z");
  EXPECT_LE(*timeline->notified_s, *timeline->deadline_s);
  // Across a leap day and a year end.
  EXPECT_EQ(FormatIsoTime(*MakeTimeline("2028-02-27T23:00:00Z", {}, {})->deadline_s),
            "2028-03-01T23:00:00Z");
  EXPECT_EQ(FormatIsoTime(*MakeTimeline("2026-12-30T12:00:00-05:00", {}, {})->deadline_s),
            "2027-01-02T17:00:00Z");
}

TEST(TimelineTest, BadTimesAreRefusedNamingTheFlag) {
  const Result<Timeline> no_zone = MakeTimeline("2026-03-01T14:30:00", {}, {});
  ASSERT_FALSE(no_zone.ok());
  EXPECT_NE(no_zone.status().message().find("--detected"), std::string::npos);
  EXPECT_FALSE(MakeTimeline("2026-13-01T00:00Z", {}, {}).ok());
  EXPECT_FALSE(MakeTimeline("yesterday", {}, {}).ok());
  const Result<Timeline> backwards =
      MakeTimeline("2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z", {});
  ASSERT_FALSE(backwards.ok());
  EXPECT_NE(backwards.status().message().find("--contained"), std::string::npos);
}

// ---- Outputs

TEST(OutputTest, HtmlEscapesEverythingAndLoadsNothing) {
  EXPECT_EQ(HtmlEscape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
  Fixture fixture = MakeFixture(
      "user_id,<script>alert(1)</script>,org_id\nu1,x,o1\n",
      "user_id,email,org_id,org_name,role\nu1,ana@example.org,o1,<img src=x onerror=alert(1)>,"
      "admin\n",
      "org_id\no1\n");
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok());
  ReportOptions options;
  options.company = "Evil <b>Co</b>";
  const std::string html = SummaryHtml(fixture.Input(), *impact, options);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x onerror=alert(1)&gt;"), std::string::npos);
  // Self-contained: no URL, no external resource, and a CSP that forbids any.
  EXPECT_EQ(html.find("://"), std::string::npos);
  EXPECT_EQ(html.find(" src=\""), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
}

TEST(OutputTest, ReportOptionsRefuseLinksAndControlBytes) {
  ReportOptions options;
  options.company = "Example Ltd";
  options.domain = "example.com";
  options.contact = "dpo@example.com";
  EXPECT_TRUE(ValidateReportOptions(options).ok());
  options.contact = "https://example.com/contact";
  EXPECT_FALSE(ValidateReportOptions(options).ok());
  options.contact = "dpo@example.com";
  options.domain = "https://example.com";
  EXPECT_FALSE(ValidateReportOptions(options).ok());
  options.domain = "example.com";
  options.company = "Example\r\nBcc: x@y.test";
  EXPECT_FALSE(ValidateReportOptions(options).ok());
}

TEST(OutputTest, RegulatorReportHasArticle33Sections) {
  Fixture fixture = MakeFixture("user_id,email,city\nu1,ana@example.org,Lisbon\n", kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok());
  ReportOptions options;
  options.company = "Example Ltd";
  options.contact = "dpo@example.com";
  options.measures = {"Vendor access revoked"};
  options.timeline = *MakeTimeline("2026-03-01T10:00:00Z", {}, "2026-03-05T10:00:00Z");
  const std::string report = RegulatorReport(fixture.Input(), *impact, options);
  for (const std::string_view section :
       {"(a) Nature of the breach", "(b) Contact point", "(c) Likely consequences",
        "(d) Measures taken or proposed", "Approximate number of data subjects concerned: 1",
        "Approximate number of personal data records concerned: 1", "dpo@example\\.com",
        "Vendor access revoked", "2026-03-04T10:00:00Z", "reasons for the delay", "Phishing"}) {
    EXPECT_NE(report.find(section), std::string::npos) << section;
  }
}

TEST(OutputTest, WriteOutputsMakesPrivateFilesAndSafeNotices) {
  Fixture fixture = MakeFixture(
      "user_id,email,name,city,os,org_id\n"
      "u1,ana@example.org,Ana Birch,Lisbon,iOS,o1\n"
      "u2,bruno@example.org,Bruno Oak,Madrid,Android,o1\n",
      kAccounts);
  const Result<Impact> impact = Crossref(fixture.Input());
  ASSERT_TRUE(impact.ok());
  ReportOptions options;
  options.company = "Example Ltd";
  options.domain = "example.com";
  options.contact = "dpo@example.com";
  options.now_s = 1'790'000'000;
  const std::filesystem::path folder =
      std::filesystem::temp_directory_path() / ("minpanel-incident-" + std::to_string(::getpid()));
  std::filesystem::remove_all(folder);
  const Result<OutputFiles> files =
      WriteOutputs(folder.string(), fixture.Input(), *impact, options);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  EXPECT_EQ(files->user_notices, 2u);
  EXPECT_EQ(files->admin_notices, 2u);  // o1: u1 (role admin) and boss@one.test
  struct stat info {};
  ASSERT_EQ(::stat(folder.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
  for (const std::string& relative : files->written) {
    ASSERT_EQ(::stat((folder / relative).c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0600u) << relative;
  }
  std::ifstream english(folder / "notices/users/u00000001.eml");
  std::stringstream english_text;
  english_text << english.rdbuf();
  const std::string ana = english_text.str();
  EXPECT_NE(ana.find("To: <ana@example.org>"), std::string::npos);
  EXPECT_NE(ana.find("your city, region or country"), std::string::npos);
  EXPECT_NE(ana.find("your email address"), std::string::npos);
  EXPECT_NE(ana.find("type example.com yourself"), std::string::npos);
  EXPECT_NE(ana.find("multi-factor authentication"), std::string::npos);
  EXPECT_NE(ana.find("never ask you for your password"), std::string::npos);
  EXPECT_EQ(ana.find("http"), std::string::npos);
  EXPECT_EQ(ana.find("your phone number"), std::string::npos);
  std::ifstream spanish(folder / "notices/users/u00000002.eml");
  std::stringstream spanish_text;
  spanish_text << spanish.rdbuf();
  EXPECT_NE(spanish_text.str().find("Hola Bruno Oak:"), std::string::npos);
  EXPECT_NE(spanish_text.str().find("Subject: Example Ltd: un incidente"), std::string::npos);
  EXPECT_NE(spanish_text.str().find("autenticación multifactor"), std::string::npos);
  // The folder is never written over.
  EXPECT_FALSE(WriteOutputs(folder.string(), fixture.Input(), *impact, options).ok());
  std::filesystem::remove_all(folder);
}

// The leaked file streamed in chunks of any size (two readings, the sample
// and the scan chunk by chunk) gives the in-memory cross-reference's
// impact, byte for byte: every matching rule, rejected rows, a card number
// and a hash by content, a late JSON lines column, and a sample that
// thins out (more than 2 * kRecognitionSampleMax values in a column).
TEST(StreamTest, StreamedCrossrefEqualsTheInMemoryOneWhateverTheChunks) {
  std::string csv =
      "user_id,email,city,org_id,note\n"
      "u1,,Lisbon,,\n"
      ",BRUNO@Example.org,Madrid,,4111 1111 1111 1111\n"
      ",c.a.r.l.a@googlemail.com,Lyon,,\n"
      "bad,\"x\"y,,,\n"
      ",diego+promo@example.org,Berlin,,$2b$12$abcdefghijklmnopqrstuuMSZ3QXX0YhbXoJ0fj9ZIaxP2UTLW3m\n"
      "ghost,ghost@else.test,Leeds,o3,\n"
      "nobody,nobody@else.test,Austin,o9,\n"
      ",,Porto,,\n"
      "too,many,fields,here,x,y\n";
  for (int row_idx = 0; row_idx < 4500; ++row_idx) {
    csv += "x" + std::to_string(row_idx) + ",p" + std::to_string(row_idx) + "@else.test,Leeds,,\n";
  }
  const std::string jsonl =
      "{\"user\":{\"id\":\"u1\"},\"city\":\"Lisbon\"}\n"
      "not json\n"
      "{\"email\":\"ELENA@example.org\",\"device\":\"iPhone\"}\n"
      "{\"user\":{\"id\":\"u2\"},\"ip\":\"203.0.113.7\"}\n";
  const std::vector<std::tuple<std::string, std::string, int>> files = {
      {"leaked.csv", csv, 2}, {"leaked.jsonl", jsonl, 1}};
  for (const auto& [name, text, rejected] : files) {
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() /
        ("minpanel-stream-" + std::to_string(::getpid()) + "-" + name);
    std::ofstream(path, std::ios::binary) << text;
    Fixture fixture = MakeFixture(text, kAccounts);
    const Result<Impact> in_memory = Crossref(fixture.Input());
    ASSERT_TRUE(in_memory.ok()) << in_memory.status().ToString();
    ReportOptions options;
    options.company = "Example Ltd";
    options.now_s = 1'790'000'000;
    const std::string expected = ImpactJson(fixture.Input(), *in_memory, options);
    EXPECT_NE(expected.find("\"rows_rejected\":" + std::to_string(rejected)), std::string::npos)
        << name;
    for (const size_t chunk_rows : {size_t{1}, size_t{2}, size_t{7}, size_t{1000}, kStreamChunkRows}) {
      CrossrefInput input = fixture.Input();
      auto streamed = CrossrefLeakedFile(path.string(), &input, {}, SharedDetectors(), chunk_rows);
      ASSERT_TRUE(streamed.ok()) << streamed.status().ToString();
      EXPECT_EQ(input.leaked, &(*streamed)->leaked);
      EXPECT_EQ((*streamed)->leaked.row_count(), 0u);  // no rows held at the end
      EXPECT_EQ(ImpactJson(input, (*streamed)->impact, options), expected)
          << name << " in chunks of " << chunk_rows;
      EXPECT_EQ(SummaryMarkdown(input, (*streamed)->impact, options),
                SummaryMarkdown(fixture.Input(), *in_memory, options));
    }
    std::filesystem::remove(path);
  }
}

TEST(StreamTest, AStreamReadsInChunksWithTheFilesLinesAndRejections) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("minpanel-stream-lines-" + std::to_string(::getpid()) + ".csv");
  std::ofstream(path, std::ios::binary) << "id,note\n1,a\n2,\"spans\ntwo\"\nbad,\"x\"y\n3,c\n";
  auto stream = TableStream::Open(path.string());
  ASSERT_TRUE(stream.ok()) << stream.status().ToString();
  Table chunk;
  std::vector<uint64_t> lines;
  while ((*stream)->Next(&chunk, 1).value()) {
    ASSERT_EQ(chunk.row_count(), 1u);
    lines.push_back(chunk.Line(0));
  }
  EXPECT_EQ(lines, (std::vector<uint64_t>{2, 3, 6}));
  EXPECT_EQ(chunk.rows_kept(), 3u);
  ASSERT_EQ(chunk.rejected().size(), 1u);
  EXPECT_EQ(chunk.rejected()[0].line, 5u);
  EXPECT_EQ(chunk.rows_seen(), 4u);
  EXPECT_FALSE((*stream)->Next(&chunk, 1).value());  // and stays done
  std::filesystem::remove(path);
  EXPECT_EQ(TableStream::Open(path.string()).status().code(), StatusCode::kIoError);
}

}  // namespace
}  // namespace minpanel::incident
