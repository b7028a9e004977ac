#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <tuple>

#include "query/query.h"
#include "query/query_test_util.h"

namespace minpanel::query {
namespace {

TEST(ExportFormatTest, EventLineHasMixpanelShapeWithPseudonymAndSeconds) {
  Event event;
  event.name = "Signed \"Up\"";
  event.time_ms = 1'700'000'000'999;
  event.subject = Id128{1, 2};
  event.insert_id = Id128{3, 4};
  event.properties = {{"plan", Value::String("pro")},
                      {"seats", Value::Int(3)},
                      {"ratio", Value::Double(0.5)},
                      {"trial", Value::Bool(true)},
                      {"tags", Value::List({"a", "b"})},
                      {"gone", Value::Null()}};
  std::string line;
  AppendEventJsonLine(event, &line);
  EXPECT_EQ(line,
            "{\"event\":\"Signed \\\"Up\\\"\",\"properties\":{\"time\":1700000000,"
            "\"distinct_id\":\"psn_00000000000000010000000000000002\","
            "\"$insert_id\":\"00000000000000030000000000000004\",\"plan\":\"pro\",\"seats\":3,"
            "\"ratio\":0.5,\"trial\":true,\"tags\":[\"a\",\"b\"],\"gone\":null}}\n");
}

// Exports re-import: every finite double must read back bit for bit.
TEST(ExportFormatTest, DoublesReadBackExactly) {
  for (const double value : {0.1, -2.5e-300, 1.0 / 3.0, 123456789.0, 1e20, -0.0, 9.5e15}) {
    std::string out;
    AppendJsonNumber(value, &out);
    EXPECT_EQ(std::bit_cast<uint64_t>(std::strtod(out.c_str(), nullptr)),
              std::bit_cast<uint64_t>(value))
        << out;
  }
  std::string out;
  AppendJsonNumber(0.1, &out);
  EXPECT_EQ(out, "0.1");
  out.clear();
  AppendJsonNumber(std::nan(""), &out);
  EXPECT_EQ(out, "null");
}

TEST(ExportFormatTest, ControlCharactersAreEscaped) {
  std::string out;
  AppendJsonString(std::string("a\n\t\x01z", 5), &out);
  EXPECT_EQ(out, "\"a\\n\\t\\u0001z\"");
}

TEST(ExportFormatTest, TimeBeforeEpochRoundsDown) {
  Event event;
  event.time_ms = -1500;
  std::string line;
  AppendEventJsonLine(event, &line);
  EXPECT_NE(line.find("\"time\":-2,"), std::string::npos);
}

// An engine over fixed in-memory segments: Snapshot hands them out, Scan is
// the store's documented order (segment by segment, rows in segment order).
class SegmentsEngine final : public store::Engine {
 public:
  // With `fold`, the segments are folded (docs/identity.md, "Folded
  // segments"); Scan still gives each event under its stored subject.
  explicit SegmentsEngine(std::vector<std::vector<Event>> segments, uint32_t block_rows = 2,
                          const store::SubjectFold* fold = nullptr) {
    for (std::vector<Event>& events : segments) {
      std::sort(events.begin(), events.end(), [](const Event& left, const Event& right) {
        return std::tie(left.subject, left.time_ms, left.insert_id) <
               std::tie(right.subject, right.time_ms, right.insert_id);
      });
      if (fold != nullptr) {
        store::SegmentWriteOptions options;
        options.project_id = 1;
        options.block_rows_max = block_rows;
        options.fold = fold;
        auto image = store::EncodeSegment(events, options);
        EXPECT_TRUE(image.ok()) << image.status().ToString();
        auto reader = store::SegmentReader::Open(std::move(image).value(), "folded.seg");
        EXPECT_TRUE(reader.ok()) << reader.status().ToString();
        readers_.push_back(std::move(reader).value());
      } else {
        auto reader = testing::MakeSegment(events, block_rows);
        EXPECT_TRUE(reader.ok()) << reader.status().ToString();
        readers_.push_back(*reader);
      }
      events_.push_back(std::move(events));
    }
  }
  Result<store::AppendResult> Append(store::AppendBatch) override {
    return Status::Unavailable("read-only");
  }
  void AppendAsync(store::AppendBatch, store::AppendCallback done) override {
    done(Status::Unavailable("read-only"));
  }
  Status Scan(const store::ScanRequest& request,
              const std::function<bool(const Event&)>& visit) override {
    for (const std::vector<Event>& segment : events_) {
      for (const Event& event : segment) {
        if (event.time_ms >= request.from_ms && event.time_ms < request.to_ms &&
            (!request.subject || event.subject == *request.subject) && !visit(event)) {
          return Status::Ok();
        }
      }
    }
    return Status::Ok();
  }
  Status ScanProfiles(uint32_t, const std::function<bool(const ProfileUpdate&)>&) override {
    return Status::Ok();
  }
  Result<SegmentSnapshot> Snapshot(uint32_t) override {
    ++snapshots;
    return readers_;
  }
  store::Stats GetStats() const override { return {}; }
  Status Close() override { return Status::Ok(); }

  const std::vector<std::vector<Event>>& events() const { return events_; }
  int snapshots = 0;

 private:
  std::vector<std::vector<Event>> events_;
  SegmentSnapshot readers_;
};

std::vector<Event> Events(std::string_view lines) {
  auto events = testing::ParseEventLines(lines);
  EXPECT_TRUE(events.ok()) << events.status().ToString();
  uint64_t insert_id = 1;
  for (Event& event : *events) {
    event.insert_id = Id128{0, insert_id++};
  }
  return *events;
}

// The subjects' users spread over two segments of two-row blocks: u1's
// events cross a block boundary and both segments.
SegmentsEngine MakeEngine() {
  return SegmentsEngine({Events(R"(
{"event":"A","subject":"u1","time":"2024-03-01T01:00:00Z","properties":{"plan":"pro","n":3}}
{"event":"B","subject":"u1","time":"2024-03-01T02:00:00Z","properties":{"tags":["x","y"],"f":0.5}}
{"event":"A","subject":"u1","time":"2024-03-01T03:00:00Z","properties":{"plan":"free","ok":true}}
{"event":"A","subject":"u2","time":"2024-03-01T01:00:00Z"}
{"event":"A","subject":"u3","time":"2024-03-01T04:00:00Z"}
{"event":"B","subject":"u4","time":"2024-03-01T05:00:00Z"}
{"event":"A","subject":"u5","time":"2024-03-01T05:00:00Z"}
{"event":"A","subject":"u6","time":"2024-03-01T05:00:00Z"}
)"),
                         Events(R"(
{"event":"B","subject":"u1","time":"2024-03-02T01:00:00Z"}
{"event":"A","subject":"u3","time":"2024-03-03T01:00:00Z"}
{"event":"A","subject":"u6","time":"2024-03-02T07:00:00Z","properties":{"plan":null}}
)")});
}

constexpr int64_t kFromMs = 1709251200000;         // 2024-03-01T00:00Z
constexpr int64_t kToMs = kFromMs + 2 * 86400000;  // 2024-03-03T00:00Z

std::vector<std::string> ExportLines(store::Engine& engine, const ExportRequest& request,
                                     ExportSummary* summary = nullptr) {
  std::string text;
  auto exported = ExportJsonLines(engine, request, [&](std::string_view chunk) {
    text.append(chunk);
    return true;
  });
  EXPECT_TRUE(exported.ok()) << exported.status().ToString();
  if (summary != nullptr && exported.ok()) {
    *summary = *exported;
  }
  std::vector<std::string> lines;
  for (size_t start = 0; start < text.size();) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start + 1));
    start = end + 1;
  }
  return lines;
}

// What the export of `subjects` must give: every event of theirs in the
// range with a wanted name, segment by segment, each in (subject, time)
// order; properties in key order.
std::vector<std::string> Expected(const SegmentsEngine& engine, const std::set<Id128>& subjects,
                                  const std::vector<std::string>& names = {}) {
  std::vector<std::string> lines;
  for (const std::vector<Event>& segment : engine.events()) {
    for (const Event& event : segment) {
      if (subjects.count(event.subject) > 0 && event.time_ms >= kFromMs && event.time_ms < kToMs &&
          (names.empty() || std::find(names.begin(), names.end(), event.name) != names.end())) {
        Event sorted = event;
        std::sort(sorted.properties.begin(), sorted.properties.end(),
                  [](const Property& left, const Property& right) { return left.key < right.key; });
        std::string line;
        AppendEventJsonLine(sorted, &line);
        lines.push_back(line);
      }
    }
  }
  return lines;
}

TEST(ExportSubjectsTest, ExportsEveryEventOfTheListedSubjectsInSegmentOrder) {
  SegmentsEngine engine = MakeEngine();
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  const Id128 u1 = testing::SubjectFromName("u1");
  const Id128 u3 = testing::SubjectFromName("u3");
  const Id128 u6 = testing::SubjectFromName("u6");
  // Unsorted, repeated, and one subject the store has never seen.
  request.subjects = {u6, u1, testing::SubjectFromName("nobody"), u3, u1};
  ExportSummary summary;
  const std::vector<std::string> lines = ExportLines(engine, request, &summary);
  EXPECT_EQ(lines, Expected(engine, {u1, u3, u6}));
  // u1: 3 + 1, u3: 1 (its second event is after `to`), u6: 1 + 1.
  EXPECT_EQ(lines.size(), 7u);
  EXPECT_EQ(summary.rows, 7u);
  EXPECT_EQ(engine.snapshots, 1);
}

TEST(ExportSubjectsTest, EventNamesAndLimitApply) {
  SegmentsEngine engine = MakeEngine();
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  const Id128 u1 = testing::SubjectFromName("u1");
  const Id128 u4 = testing::SubjectFromName("u4");
  request.subjects = {u1, u4};
  request.event_names = {"B"};
  EXPECT_EQ(ExportLines(engine, request), Expected(engine, {u1, u4}, {"B"}));
  EXPECT_EQ(ExportLines(engine, request).size(), 3u);
  request.limit = 2;
  EXPECT_EQ(ExportLines(engine, request).size(), 2u);
  request.event_names = {"Nothing"};
  EXPECT_TRUE(ExportLines(engine, request).empty());
}

// Many blocks: decoded in batches on several threads, the lines still in
// block order; a limit cuts inside a block.
TEST(ExportSubjectsTest, ManyBlocksKeepTheirOrderAndTheLimit) {
  std::vector<Event> events;
  for (uint64_t event_idx = 0; event_idx < 400; ++event_idx) {
    Event event;
    event.name = event_idx % 3 == 0 ? "A" : "B";
    event.subject = testing::SubjectFromName("s" + std::to_string(event_idx % 40));
    event.time_ms = kFromMs + static_cast<int64_t>(event_idx) * 60000;
    event.insert_id = Id128{0, event_idx + 1};
    event.properties = {{"n", Value::Int(static_cast<int64_t>(event_idx))}};
    events.push_back(std::move(event));
  }
  SegmentsEngine engine({events});
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  std::set<Id128> subjects;
  request.subjects.emplace();
  for (const int subject : {3, 17, 18, 29, 39}) {
    subjects.insert(testing::SubjectFromName("s" + std::to_string(subject)));
    request.subjects->push_back(testing::SubjectFromName("s" + std::to_string(subject)));
  }
  const std::vector<std::string> expected = Expected(engine, subjects);
  ASSERT_EQ(expected.size(), 50u);
  EXPECT_EQ(ExportLines(engine, request), expected);
  request.limit = 7;
  ExportSummary summary;
  EXPECT_EQ(ExportLines(engine, request, &summary),
            std::vector<std::string>(expected.begin(), expected.begin() + 7));
  EXPECT_EQ(summary.rows, 7u);
}

// Large blocks of which a few rows are exported (the properties of those
// rows alone are decoded): every type, plain and dictionary strings, and
// rare keys that live in the map column come out exactly as
// AppendEventJsonLine writes the events.
TEST(ExportSubjectsTest, FewRowsOfLargeBlocksComeOutExactly) {
  std::vector<Event> events;
  for (uint64_t event_idx = 0; event_idx < 3000; ++event_idx) {
    Event event;
    event.name = event_idx % 7 == 0 ? "A" : "B";
    event.subject = testing::SubjectFromName("s" + std::to_string(event_idx % 97));
    event.time_ms = kFromMs + static_cast<int64_t>(event_idx) * 50000;
    event.insert_id = Id128{event_idx * 7919, event_idx + 1};
    event.properties = {{"plan", Value::String(event_idx % 2 == 0 ? "pro" : "free")},
                        {"unique", Value::String("id-" + std::to_string(event_idx * 31))}};
    switch (event_idx % 5) {
      case 0:
        event.properties.push_back({"v", Value::Int(-static_cast<int64_t>(event_idx))});
        break;
      case 1:
        event.properties.push_back({"v", Value::Double(0.25 * static_cast<double>(event_idx))});
        break;
      case 2:
        event.properties.push_back({"v", Value::List({"x", std::to_string(event_idx % 3)})});
        break;
      case 3:
        event.properties.push_back({"v", Value::Bool(event_idx % 2 == 0)});
        break;
      default:
        event.properties.push_back({"v", Value::Null()});
        break;
    }
    if (event_idx % 400 == 5) {  // under 1 % of rows: the map column
      event.properties.push_back({"rare", Value::String("r\"" + std::to_string(event_idx))});
      event.properties.push_back({"rare_list", Value::List({"a", "b"})});
      event.properties.push_back({"rare_number", Value::Double(-1.5)});
    }
    events.push_back(std::move(event));
  }
  SegmentsEngine engine({events}, 1000);
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  std::set<Id128> subjects;
  request.subjects.emplace();
  for (const int subject : {5, 40, 96}) {
    subjects.insert(testing::SubjectFromName("s" + std::to_string(subject)));
    request.subjects->push_back(testing::SubjectFromName("s" + std::to_string(subject)));
  }
  const std::vector<std::string> expected = Expected(engine, subjects);
  ASSERT_GT(expected.size(), 60u);
  size_t rare = 0;
  for (const std::string& line : expected) {
    rare += line.find("rare_list") != std::string::npos ? 1 : 0;
  }
  EXPECT_GT(rare, 0u);
  EXPECT_EQ(ExportLines(engine, request), expected);
  request.event_names = {"A"};
  EXPECT_EQ(ExportLines(engine, request), Expected(engine, subjects, {"A"}));
}

TEST(ExportSubjectsTest, EmptyListExportsNothing) {
  SegmentsEngine engine = MakeEngine();
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  request.subjects.emplace();
  EXPECT_TRUE(ExportLines(engine, request).empty());
}

TEST(ExportSubjectsTest, BadListsAreInvalidArguments) {
  SegmentsEngine engine = MakeEngine();
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  request.subject = testing::SubjectFromName("u1");
  request.subjects = {testing::SubjectFromName("u2")};
  const auto sink = [](std::string_view) { return true; };
  auto both = ExportJsonLines(engine, request, sink);
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(both.status().message().find("distinct_ids"), std::string::npos);
  request.subject.reset();
  request.subjects = std::vector<Id128>(kExportDistinctIdsMax + 1, Id128{1, 1});
  auto over = ExportJsonLines(engine, request, sink);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("kExportDistinctIdsMax"), std::string::npos);
}

// Identity merges in the export (docs/identity.md, "The export"): anonymous
// a is identified as u ($identify with $anon_distinct_id); v is alone.
SegmentsEngine MakeMergedEngine(const store::SubjectFold* fold = nullptr) {
  const std::string anon = FormatPseudonym(testing::SubjectFromName("a"));
  return SegmentsEngine(
      {Events(
      R"json({"event":"Viewed","subject":"a","time":"2024-03-01T01:00:00Z","properties":{"$distinct_id_before_identity":"psn_00000000000000000000000000000009","plan":"pro"}}
{"event":"$identify","subject":"u","time":"2024-03-01T02:00:00Z","properties":{"$anon_distinct_id":")json" +
      anon + R"json("}}
{"event":"Bought","subject":"u","time":"2024-03-01T03:00:00Z"}
{"event":"Viewed","subject":"v","time":"2024-03-01T04:00:00Z"}
)json")},
      2, fold);
}

// The pseudonym after "distinct_id":" in an export line.
std::string DistinctIdOf(const std::string& line) {
  const std::string key = "\"distinct_id\":\"";
  const size_t at = line.find(key);
  return at == std::string::npos ? "" : line.substr(at + key.size(), kPseudonymPrefix.size() + 32);
}

size_t Occurrences(const std::string& text, std::string_view part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
    ++count;
  }
  return count;
}

// a's row names the person u as distinct_id and a as
// $distinct_id_before_identity (the stored property of that name is
// replaced, not repeated); u's and v's rows are as stored. An export of a
// list of subjects writes the same lines; resolve_persons = false writes
// the subjects as stored.
TEST(ExportPersonsTest, MergedRowsNameThePersonAndTheStoredSubject) {
  SegmentsEngine engine = MakeMergedEngine();
  const std::string a = FormatPseudonym(testing::SubjectFromName("a"));
  const std::string u = FormatPseudonym(testing::SubjectFromName("u"));
  const std::string v = FormatPseudonym(testing::SubjectFromName("v"));
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  ExportSummary summary;
  const std::vector<std::string> lines = ExportLines(engine, request, &summary);
  ASSERT_EQ(lines.size(), 4u);
  std::map<std::string, std::string> by_subject_event;
  for (const std::string& line : lines) {
    const bool before = line.find("\"$distinct_id_before_identity\"") != std::string::npos;
    const std::string stored =
        before ? line.substr(line.find("\"$distinct_id_before_identity\":\"") + 32, a.size())
               : DistinctIdOf(line);
    by_subject_event[stored + (line.find("\"Viewed\"") != std::string::npos ? " Viewed" : "")] =
        line;
  }
  const std::string& anonymous = by_subject_event[a + " Viewed"];
  EXPECT_NE(anonymous.find("\"distinct_id\":\"" + u + "\",\"$distinct_id_before_identity\":\"" + a +
                           "\",\"$insert_id\""),
            std::string::npos)
      << anonymous;
  EXPECT_EQ(Occurrences(anonymous, "$distinct_id_before_identity"), 1u) << anonymous;
  EXPECT_NE(anonymous.find("\"plan\":\"pro\""), std::string::npos);
  EXPECT_EQ(DistinctIdOf(by_subject_event[v + " Viewed"]), v);
  EXPECT_EQ(Occurrences(by_subject_event[v + " Viewed"], "before_identity"), 0u);
  for (const std::string& line : lines) {
    if (line.find(a) == std::string::npos) {
      EXPECT_EQ(Occurrences(line, "before_identity"), 0u) << line;
    }
  }
  ASSERT_TRUE(summary.identity.has_value());
  EXPECT_EQ(summary.identity->links, 1u);
  EXPECT_EQ(summary.identity->merges, 1u);
  EXPECT_EQ(summary.identity->persons, 1u);
  EXPECT_EQ(summary.identity->person_ids_max, 2u);

  // The list of subjects: the same lines for a and v.
  request.subjects = {testing::SubjectFromName("v"), testing::SubjectFromName("a")};
  std::vector<std::string> listed = ExportLines(engine, request);
  std::vector<std::string> expected = {anonymous, by_subject_event[v + " Viewed"]};
  std::sort(listed.begin(), listed.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(listed, expected);

  // Not resolved: the subjects and the stored property as they are.
  request.subjects.reset();
  request.resolve_persons = false;
  ExportSummary plain_summary;
  for (const std::string& line : ExportLines(engine, request, &plain_summary)) {
    if (line.find("\"plan\"") != std::string::npos) {
      EXPECT_EQ(DistinctIdOf(line), a);
      EXPECT_NE(line.find("\"$distinct_id_before_identity\":\"psn_0000000000000000000000000000000"
                          "9\""),
                std::string::npos)
          << line;
    }
  }
  EXPECT_FALSE(plain_summary.identity.has_value());
}

// A folded segment (a's rows kept under u) exports the same lines for a list
// of subjects: each row under its stored subject, named by its person.
TEST(ExportPersonsTest, FoldedSegmentsExportTheSameLines) {
  SegmentsEngine plain = MakeMergedEngine();
  auto snapshot = plain.Snapshot(1);
  ASSERT_TRUE(snapshot.ok());
  auto map = ResolveIdentities(*snapshot);
  ASSERT_TRUE(map.ok());
  const std::shared_ptr<const store::SubjectFold> fold = SubjectFoldOf(**map);
  ASSERT_EQ(fold->persons.size(), 1u);
  SegmentsEngine folded = MakeMergedEngine(fold.get());
  auto folded_snapshot = folded.Snapshot(1);
  ASSERT_TRUE(folded_snapshot.ok());
  EXPECT_GT((*folded_snapshot)[0]->summary().stored_subject_runs, 0u);
  for (const std::vector<std::string>& names : std::vector<std::vector<std::string>>{
           {"a"}, {"u"}, {"v"}, {"a", "u"}, {"a", "u", "v"}}) {
    ExportRequest request;
    request.from_ms = kFromMs;
    request.to_ms = kToMs;
    request.subjects.emplace();
    for (const std::string& name : names) {
      request.subjects->push_back(testing::SubjectFromName(name));
    }
    std::vector<std::string> expected = ExportLines(plain, request);
    std::vector<std::string> got = ExportLines(folded, request);
    std::sort(expected.begin(), expected.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, expected) << names.size();
    EXPECT_FALSE(got.empty());
  }
}

// Watermark decoys are persons of their own: each decoy row's distinct_id
// is its decoy subject and none names an id before identity (a decoy row
// modelled on a's does not copy it); the real rows are those of the export
// without a watermark.
TEST(ExportPersonsTest, DecoysAreConsistentPersonsOfTheirOwn) {
  SegmentsEngine engine = MakeMergedEngine();
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  const std::vector<std::string> plain = ExportLines(engine, request);
  ExportWatermark watermark;
  watermark.key[0] = 7;
  watermark.nonce = Id128{1, 2};
  request.watermark = watermark;
  ExportSummary summary;
  const std::vector<std::string> lines = ExportLines(engine, request, &summary);
  ASSERT_GE(summary.decoy_rows, 3u);
  std::vector<std::string> real;
  uint64_t decoy_rows = 0;
  for (const std::string& line : lines) {
    const std::string distinct_id = DistinctIdOf(line);
    const auto id = Id128::FromHex(std::string_view(distinct_id).substr(kPseudonymPrefix.size()));
    ASSERT_TRUE(id.has_value()) << line;
    if (IsDecoySubject(watermark.key, *id)) {
      ++decoy_rows;
      EXPECT_EQ(Occurrences(line, "before_identity"), 0u) << line;
    } else {
      real.push_back(line);
    }
  }
  EXPECT_EQ(decoy_rows, summary.decoy_rows);
  EXPECT_EQ(real, plain);
}

// A limit (a key's export quota is one) counts real rows: a watermarked
// export cut at 300 gives the same 300 real rows as the export without
// decoys, with the decoys that sort among them on top; a decoy never takes
// a real row's place, and the summary's rows are the real ones.
TEST(ExportWatermarkTest, ALimitCountsRealRowsAndDecoysComeOnTop) {
  std::vector<Event> events;
  for (uint64_t event_idx = 0; event_idx < 400; ++event_idx) {
    Event event;
    event.name = "A";
    event.subject = testing::SubjectFromName("s" + std::to_string(event_idx % 200));
    event.time_ms = kFromMs + static_cast<int64_t>(event_idx) * 60000;
    event.insert_id = Id128{0, event_idx + 1};
    events.push_back(std::move(event));
  }
  SegmentsEngine engine({events}, 64);
  ExportRequest request;
  request.from_ms = kFromMs;
  request.to_ms = kToMs;
  request.limit = 300;
  const std::vector<std::string> plain = ExportLines(engine, request);
  ASSERT_EQ(plain.size(), 300u);
  ExportWatermark watermark;
  watermark.key[0] = 9;
  watermark.nonce = Id128{3, 4};
  request.watermark = watermark;
  ExportSummary summary;
  const std::vector<std::string> lines = ExportLines(engine, request, &summary);
  std::vector<std::string> real;
  uint64_t decoy_rows = 0;
  for (const std::string& line : lines) {
    const std::string distinct_id = DistinctIdOf(line);
    const auto id = Id128::FromHex(std::string_view(distinct_id).substr(kPseudonymPrefix.size()));
    ASSERT_TRUE(id.has_value()) << line;
    if (IsDecoySubject(watermark.key, *id)) {
      ++decoy_rows;
    } else {
      real.push_back(line);
    }
  }
  // Decoys stand among the rows before the cut (with this nonce), so a cut
  // that counted lines would have left real rows out.
  ASSERT_GE(decoy_rows, 1u);
  EXPECT_EQ(real, plain);
  EXPECT_EQ(lines.size(), 300u + decoy_rows);
  EXPECT_EQ(summary.rows, 300u);
  EXPECT_EQ(summary.decoy_rows, decoy_rows);
}

}  // namespace
}  // namespace minpanel::query
