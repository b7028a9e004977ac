// Query semantics as data files (STYLE.md): src/query/testdata/<kind>/*.test.
//
// A file is a list of sections, each opened by a line naming it:
//   segment [block_rows=N]   events, one JSON object a line, into one segment
//                            ("subject": a name, stored as SubjectFromName)
//   context [time_zone=Z] [now=TIME]
//   query                    a JSON query (any number of lines)
//   expect                   the expected answer: every field given must match
//                            (numbers within 1e-9); fields left out are not checked
//   expect error CODE: TEXT  RunQuery or ParseQuery fails with CODE and a
//                            message containing TEXT
// A raw distinct id X a query names is pseudonymised as two key versions
// would: SubjectFromName(X) and SubjectFromName(X + "@v1") (the subject
// "X@v1" in a segment is X under the older key). The properties "user_id"
// and "$device_id" hold subject ids (QueryContext::subject_id_property).
// Lines starting with '#' are comments. Every expect checks the query before it
// against all segments given so far.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "query/query.h"
#include "query/query_test_util.h"

namespace minpanel::query {
namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

std::vector<std::filesystem::path> TestFiles() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(MINPANEL_QUERY_TESTDATA)) {
    if (entry.path().extension() == ".test") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string OptionValue(const std::string& line, const std::string& name) {
  const size_t position = line.find(name + "=");
  if (position == std::string::npos) {
    return "";
  }
  const size_t begin = position + name.size() + 1;
  const size_t end = line.find(' ', begin);
  return line.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

struct Runner {
  std::string file;
  QueryContext context;
  std::string section;
  std::string header;
  std::string body;
  std::string query;
  int checks = 0;

  Runner() {
    context.pseudonyms = [](std::string_view raw) {
      return std::vector<Id128>{testing::SubjectFromName(raw),
                                testing::SubjectFromName(std::string(raw) + "@v1")};
    };
    context.subject_id_property = [](std::string_view name) {
      return name == "user_id" || name == "$device_id";
    };
  }

  void Flush() {
    if (section == "segment") {
      auto events = testing::ParseEventLines(body);
      ASSERT_TRUE(events.ok()) << file << ": " << events.status().ToString();
      const std::string rows = OptionValue(header, "block_rows");
      auto segment = testing::MakeSegment(*events, rows.empty() ? 4 : std::stoul(rows));
      ASSERT_TRUE(segment.ok()) << file << ": " << segment.status().ToString();
      context.segments.push_back(*segment);
    } else if (section == "query") {
      query = body;
    } else if (section == "expect") {
      Check();
    }
    section.clear();
    body.clear();
  }

  void Check() {
    ++checks;
    SCOPED_TRACE(file + ", query:\n" + query);
    Result<QuerySpec> spec = ParseQuery(query);
    Result<QueryResult> result = spec.ok() ? RunQuery(*spec, context) : spec.status();
    const std::string error_prefix = "expect error ";
    if (header.rfind(error_prefix, 0) == 0) {
      const std::string want = header.substr(error_prefix.size());
      ASSERT_FALSE(result.ok()) << "expected an error: " << want;
      const std::string got = result.status().ToString();
      const size_t colon = want.find(": ");
      EXPECT_EQ(got.substr(0, got.find(": ")), want.substr(0, colon));
      EXPECT_NE(got.find(want.substr(colon + 2)), std::string::npos)
          << "got: " << got << "\nwant: " << want;
      return;
    }
    // One thread, and the subject space split three ways: the same answer.
    for (const uint32_t threads : {1u, 3u}) {
      context.threads = threads;
      result = RunQuery(*spec, context);
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      const std::string json = QueryResultToJson(*result);
      EXPECT_EQ(testing::JsonSubsetDiff(body, json), "")
          << threads << " threads, answer: " << json;
    }
  }
};

TEST(QueryDataTest, FilesExist) { EXPECT_GE(TestFiles().size(), 10u); }

class QueryDataFileTest : public ::testing::TestWithParam<std::filesystem::path> {};

TEST_P(QueryDataFileTest, AnswersMatch) {
  Runner runner;
  runner.file = GetParam().string();
  std::istringstream lines(ReadFile(GetParam()));
  std::string line;
  static const char* const kSections[] = {"segment", "context", "query", "expect"};
  while (std::getline(lines, line)) {
    if (!line.empty() && line[0] == '#') {
      continue;
    }
    std::string word = line.substr(0, line.find(' '));
    const bool opens = std::find(std::begin(kSections), std::end(kSections), word) !=
                       std::end(kSections);
    if (!opens) {
      runner.body += line;
      runner.body += '\n';
      continue;
    }
    runner.Flush();
    if (::testing::Test::HasFatalFailure()) {
      return;
    }
    runner.section = word;
    runner.header = line;
    if (word == "context") {
      const std::string zone = OptionValue(line, "time_zone");
      if (!zone.empty()) {
        runner.context.time_zone = zone;
      }
      const std::string now = OptionValue(line, "now");
      TimeSpec now_spec;
      if (!now.empty()) {
        ASSERT_TRUE(ParseTimeText(now, &now_spec) && !now_spec.local) << line;
        runner.context.now_ms = now_spec.utc_ms;
      }
    }
  }
  runner.Flush();
  EXPECT_GT(runner.checks, 0) << runner.file << " checks nothing";
}

INSTANTIATE_TEST_SUITE_P(Files, QueryDataFileTest, ::testing::ValuesIn(TestFiles()),
                         [](const ::testing::TestParamInfo<std::filesystem::path>& info) {
                           std::string name = info.param.parent_path().filename().string() + "_" +
                                              info.param.stem().string();
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) {
                               c = '_';
                             }
                           }
                           return name;
                         });

}  // namespace
}  // namespace minpanel::query
