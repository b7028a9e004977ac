// The import, export and debug commands, driven through the real `minpanel`
// binary (exit codes, stdout, stderr, the files beside the input), plus the
// record splitter in-process.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <zlib.h>

#include "cli/record_reader.h"
#include "service/service.h"
#include "store/store.h"

namespace minpanel::cli {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kFirstEventSeconds = 1'700'000'000;  // 2023-11-14 22:13:20 UTC

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadText(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

void WriteText(const fs::path& path, std::string_view text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) {
    lines.push_back(line);
  }
  return lines;
}

// One Mixpanel export-shaped line; `insert_id` empty: none.
std::string EventLine(std::string_view name, std::string_view distinct_id, int64_t time_s,
                      std::string_view insert_id = "") {
  std::string line = "{\"event\":\"" + std::string(name) +
                     "\",\"properties\":{\"time\":" + std::to_string(time_s) +
                     ",\"distinct_id\":\"" + std::string(distinct_id) + "\"";
  if (!insert_id.empty()) {
    line += ",\"$insert_id\":\"" + std::string(insert_id) + "\"";
  }
  return line + ",\"plan\":\"pro\"}}";
}

std::string NumberedEvents(size_t count) {
  std::string text;
  for (size_t event_idx = 0; event_idx < count; ++event_idx) {
    text += EventLine("Signed Up", "user-" + std::to_string(event_idx),
                      kFirstEventSeconds + static_cast<int64_t>(event_idx),
                      "id-" + std::to_string(event_idx)) +
            "\n";
  }
  return text;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("minpanel-cli-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    CreateProject("demo");
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Folders() const {
    return " --data " + (root_ / "data").string() + " --keys " + (root_ / "keys").string();
  }

  RunResult Run(const std::string& arguments, const fs::path& input = "/dev/null") const {
    const fs::path out = root_ / "run.out";
    const fs::path err = root_ / "run.err";
    const std::string command = std::string(MINPANEL_BINARY) + " " + arguments + " >" +
                                out.string() + " 2>" + err.string() + " <" + input.string();
    const int status = std::system(command.c_str());
    RunResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = ReadText(out);
    result.err = ReadText(err);
    return result;
  }

  void CreateProject(const std::string& name) {
    const RunResult created = Run("project create " + name + Folders() + " --json");
    ASSERT_EQ(created.exit_code, 0) << created.err;
  }

  RunResult Import(const fs::path& file, const std::string& extra = "",
                   const std::string& project = "demo") const {
    return Run("import " + file.string() + " --project " + project + Folders() + " " + extra);
  }

  // The project's events over every date, as export lines: the stored rows
  // only (--no-watermark: the command line's exports of a range carry
  // decoys otherwise, docs/security.md "Watermarked exports").
  std::vector<std::string> ExportAll(const std::string& project = "demo",
                                     const std::string& extra = "") const {
    const RunResult exported = Run("export --project " + project +
                                   " --from 2000-01-01 --to 2099-12-31 --no-watermark" +
                                   Folders() + " " + extra);
    EXPECT_EQ(exported.exit_code, 0) << exported.err;
    return Lines(exported.out);
  }

  fs::path root_;
};

TEST_F(CliTest, ImportsJsonLines) {
  const fs::path file = root_ / "events.jsonl";
  WriteText(file, NumberedEvents(5));
  const RunResult imported = Import(file);
  EXPECT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(imported.out, "imported 5, duplicates 0, rejected 0\n");
  EXPECT_FALSE(fs::exists(file.string() + ".import-state"));
  EXPECT_FALSE(fs::exists(file.string() + ".rejected.jsonl"));
  const std::vector<std::string> lines = ExportAll();
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_NE(lines[0].find("\"event\":\"Signed Up\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"distinct_id\":\"psn_"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find("user-0"), std::string::npos) << "stored a raw distinct id";
}

// With a memtable of 10 rows the store refuses a batch (Unavailable) while
// the previous one is being flushed: the import waits and retries instead
// of failing, and every event is stored once.
TEST_F(CliTest, ImportWaitsWhileTheStoreFlushes) {
  const fs::path config = root_ / "small-memtable.toml";
  WriteText(config, "store_memtable_rows_max = 10\n");
  const fs::path file = root_ / "events.jsonl";
  WriteText(file, NumberedEvents(600));
  const RunResult imported = Import(file, "--batch 50 --config " + config.string());
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(imported.out.rfind("imported 600, duplicates 0, rejected 0", 0), 0u) << imported.out;
  EXPECT_NE(imported.out.find("batches refused while flushes caught up"), std::string::npos)
      << "the store never refused a batch, so the wait was not exercised: " << imported.out;
  EXPECT_EQ(ExportAll("demo", "--config " + config.string()).size(), 600u);
}

TEST_F(CliTest, ImportsPrettyPrintedJsonArray) {
  const fs::path file = root_ / "events.json";
  // Brackets, commas and escaped quotes inside strings must not split records.
  WriteText(file,
            "\xEF\xBB\xBF [\n"
            "  {\"event\": \"a],[b\", \"properties\": {\"time\": 1700000000,\n"
            "    \"distinct_id\": \"u\\\"1\", \"note\": \"{,}\"}},\n"
            "  {\"event\": \"second\", \"properties\": {\"time\": 1700000001, "
            "\"distinct_id\": \"u2\", \"list\": [\"x\", \"y\"]}}\n"
            "]\n");
  const RunResult imported = Import(file);
  EXPECT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(imported.out, "imported 2, duplicates 0, rejected 0\n");
  const std::vector<std::string> lines = ExportAll();
  ASSERT_EQ(lines.size(), 2u);
  // The export's order follows the store (by subject once in segments), so
  // each record is looked for among both lines.
  const auto has_line = [&lines](std::string_view first, std::string_view second) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& line) {
      return line.find(first) != std::string::npos && line.find(second) != std::string::npos;
    });
  };
  EXPECT_TRUE(has_line("\"event\":\"a],[b\"", "\"note\":\"{,}\"")) << lines[0] << lines[1];
  EXPECT_TRUE(has_line("\"event\":\"second\"", "\"list\":[\"x\",\"y\"]")) << lines[0] << lines[1];
}

TEST_F(CliTest, ImportsGzipCompressedFile) {
  const fs::path file = root_ / "events.jsonl.gz";
  const std::string text = NumberedEvents(50);
  gzFile gz = gzopen(file.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, text.data(), static_cast<unsigned>(text.size())),
            static_cast<int>(text.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
  const RunResult imported = Import(file, "--batch 7");
  EXPECT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(imported.out, "imported 50, duplicates 0, rejected 0\n");
  EXPECT_EQ(ExportAll().size(), 50u);
}

TEST_F(CliTest, TruncatedGzipFailsAndKeepsProgress) {
  const fs::path file = root_ / "events.jsonl.gz";
  // Over one read chunk decompressed before the cut, so some batches land.
  const std::string text = NumberedEvents(30000);
  gzFile gz = gzopen(file.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  fs::resize_file(file, fs::file_size(file) / 2);
  const RunResult imported = Import(file);
  EXPECT_EQ(imported.exit_code, 1) << imported.out;
  EXPECT_NE(imported.err.find("IoError"), std::string::npos) << imported.err;
  EXPECT_NE(imported.err.find("rerun to resume"), std::string::npos) << imported.err;
  EXPECT_TRUE(fs::exists(file.string() + ".import-state"));
}

TEST_F(CliTest, ResumesFromTheSavedState) {
  const fs::path file = root_ / "events.jsonl";
  const std::string text = NumberedEvents(10);
  WriteText(file, text);
  // As an import interrupted after its first batch of four would leave it.
  size_t offset = 0;
  for (int line_idx = 0; line_idx < 4; ++line_idx) {
    offset = text.find('\n', offset) + 1;
  }
  WriteText(file.string() + ".import-state",
            "minpanel-import-state 1\nproject demo\ninput_bytes " + std::to_string(text.size()) +
                "\nformat lines\noffset " + std::to_string(offset) +
                "\nline 4\nrecord 4\narray_closed 0\nimported 4\nduplicates 0\n"
                "rejected 0\nrejected_file_bytes 0\n");
  const RunResult resumed = Import(file, "--batch 3");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos) << resumed.err;
  EXPECT_EQ(resumed.out, "imported 10, duplicates 0, rejected 0\n");
  EXPECT_FALSE(fs::exists(file.string() + ".import-state"));
  // Only the six lines after the saved offset were read.
  // The export is in the store's order (by subject and time once flushed
  // into segments), not the file's: look for each time among all lines.
  const std::vector<std::string> lines = ExportAll();
  ASSERT_EQ(lines.size(), 6u);
  const auto exported = [&lines](int64_t seconds) {
    const std::string needle = "\"time\":" + std::to_string(seconds) + ",";
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& line) {
      return line.find(needle) != std::string::npos;
    });
  };
  for (int64_t event_idx = 0; event_idx < 10; ++event_idx) {
    EXPECT_EQ(exported(kFirstEventSeconds + event_idx), event_idx >= 4) << event_idx;
  }
}

TEST_F(CliTest, RestartIgnoresTheSavedState) {
  const fs::path file = root_ / "events.jsonl";
  const std::string text = NumberedEvents(3);
  WriteText(file, text);
  WriteText(file.string() + ".import-state",
            "minpanel-import-state 1\nproject demo\ninput_bytes " + std::to_string(text.size()) +
                "\nformat lines\noffset " + std::to_string(text.size()) + "\nline 3\nrecord 3\n");
  const RunResult restarted = Import(file, "--restart");
  EXPECT_EQ(restarted.exit_code, 0) << restarted.err;
  EXPECT_EQ(restarted.out, "imported 3, duplicates 0, rejected 0\n");
}

TEST_F(CliTest, StateOfAnotherFileOrProjectIsRefused) {
  const fs::path file = root_ / "events.jsonl";
  WriteText(file, NumberedEvents(3));
  WriteText(file.string() + ".import-state",
            "minpanel-import-state 1\nproject demo\ninput_bytes 1\nformat lines\noffset 1\n");
  RunResult refused = Import(file);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("--restart"), std::string::npos) << refused.err;
  CreateProject("other");
  refused = Import(file, "", "other");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("project 'demo'"), std::string::npos) << refused.err;
  EXPECT_TRUE(ExportAll("other").empty());
}

TEST_F(CliTest, RejectedLinesAreListedAndTheRestStored) {
  const fs::path file = root_ / "events.jsonl";
  WriteText(file, EventLine("ok", "user-1", kFirstEventSeconds) + "\n" +  // line 1
                      "{\"event\": \"broken\", \n" +                      // line 2
                      "\n" +                                              // line 3: blank
                      "{\"properties\":{\"time\":1700000000,\"distinct_id\":"
                      "\"u\"}}\n" +  // 4
                      EventLine("blocked", "anon", kFirstEventSeconds) +
                      "\n" +  // 5
                      "{\"event\":\"no "
                      "time\",\"properties\":{\"distinct_id\":\"u\"}}\n" +  // 6
                      EventLine("ok too", "user-2",
                                kFirstEventSeconds));  // 7, no newline
  const RunResult imported = Import(file);
  EXPECT_EQ(imported.exit_code, 3) << imported.err;
  EXPECT_EQ(imported.out,
            "imported 2, duplicates 0, rejected 4 (see " + file.string() + ".rejected.jsonl)\n");
  const std::vector<std::string> rejected = Lines(ReadText(file.string() + ".rejected.jsonl"));
  ASSERT_EQ(rejected.size(), 4u);
  EXPECT_EQ(rejected[0].rfind("{\"line\":2,\"record\":2,", 0), 0u) << rejected[0];
  EXPECT_EQ(rejected[1].rfind("{\"line\":4,\"record\":3,", 0), 0u) << rejected[1];
  EXPECT_EQ(rejected[2].rfind("{\"line\":5,\"record\":4,", 0), 0u) << rejected[2];
  EXPECT_EQ(rejected[3].rfind("{\"line\":6,\"record\":5,", 0), 0u) << rejected[3];
  EXPECT_NE(rejected[3].find("time"), std::string::npos) << rejected[3];
  // The refusals name the rule; they never copy the record's properties.
  EXPECT_EQ(ReadText(file.string() + ".rejected.jsonl").find("\"pro\""), std::string::npos);
  EXPECT_EQ(ExportAll().size(), 2u);
}

TEST_F(CliTest, ResumeCutsRefusalsOfTheUnacknowledgedBatch) {
  const fs::path file = root_ / "events.jsonl";
  const std::string text = "not json\n" + NumberedEvents(2) + "also not json\n";
  WriteText(file, text);
  const std::string first_refusal =
      "{\"line\":1,\"record\":1,\"field\":\"record\",\"reason\":\"x\"}\n";
  // The batch after the first line was interrupted after writing a refusal.
  WriteText(file.string() + ".rejected.jsonl", first_refusal + "{\"line\":4,\"stale\":1}\n");
  WriteText(file.string() + ".import-state",
            "minpanel-import-state 1\nproject demo\ninput_bytes " + std::to_string(text.size()) +
                "\nformat lines\noffset 9\nline 1\nrecord 1\nrejected 1\nrejected_file_bytes " +
                std::to_string(first_refusal.size()) + "\n");
  const RunResult resumed = Import(file);
  EXPECT_EQ(resumed.exit_code, 3) << resumed.err;
  EXPECT_NE(resumed.out.find("imported 2, duplicates 0, rejected 2"), std::string::npos)
      << resumed.out;
  const std::vector<std::string> rejected = Lines(ReadText(file.string() + ".rejected.jsonl"));
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0] + "\n", first_refusal);
  EXPECT_EQ(rejected[1].rfind("{\"line\":4,\"record\":4,", 0), 0u) << rejected[1];
}

TEST_F(CliTest, ExportReimportsWithoutRepseudonymisingOrDuplicating) {
  const fs::path file = root_ / "events.jsonl";
  // Without $insert_id too: the export carries the derived one.
  WriteText(file, NumberedEvents(3) + EventLine("No Id", "user-9", kFirstEventSeconds + 9) + "\n");
  ASSERT_EQ(Import(file).exit_code, 0);
  const fs::path exported = root_ / "export.jsonl";
  const RunResult written =
      Run("export --project demo --from 2000-01-01 --to 2099-12-31 --no-watermark --out " +
          exported.string() + Folders());
  ASSERT_EQ(written.exit_code, 0) << written.err;
  EXPECT_NE(written.err.find("exported 4 rows"), std::string::npos) << written.err;
  const std::vector<std::string> original = Lines(ReadText(exported));
  ASSERT_EQ(original.size(), 4u);

  const RunResult again = Import(exported);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "imported 0, duplicates 4, rejected 0\n");
  EXPECT_EQ(ExportAll(), original);

  CreateProject("copy");
  const RunResult copied = Import(exported, "", "copy");
  EXPECT_EQ(copied.exit_code, 0) << copied.err;
  EXPECT_EQ(copied.out, "imported 4, duplicates 0, rejected 0\n");
  // Same pseudonyms and insert ids although "copy" has a key of its own.
  EXPECT_EQ(ExportAll("copy"), original);
}

TEST_F(CliTest, ExportFilters) {
  const fs::path file = root_ / "events.jsonl";
  WriteText(file, EventLine("View", "user-1", kFirstEventSeconds) + "\n" +
                      EventLine("Buy", "user-1", kFirstEventSeconds + 1) + "\n" +
                      EventLine("View", "user-2", kFirstEventSeconds + 2) + "\n" +
                      EventLine("Leave", "user-2", kFirstEventSeconds + 86400 * 3) + "\n");
  ASSERT_EQ(Import(file).exit_code, 0);
  EXPECT_EQ(ExportAll().size(), 4u);
  EXPECT_EQ(ExportAll("demo", "--event View").size(), 2u);
  EXPECT_EQ(ExportAll("demo", "--event View --event Buy").size(), 3u);
  EXPECT_EQ(ExportAll("demo", "--distinct-id user-2").size(), 2u);
  EXPECT_EQ(ExportAll("demo", "--distinct-id user-2 --event View").size(), 1u);
  EXPECT_EQ(ExportAll("demo", "--limit 3").size(), 3u);
  const RunResult day =
      Run("export --project demo --from 2023-11-14 --to 2023-11-14 --no-watermark" + Folders());
  EXPECT_EQ(day.exit_code, 0) << day.err;
  EXPECT_EQ(Lines(day.out).size(), 3u);
  const RunResult bad = Run("export --project demo --from 2023-11-40 --to 2023-11-14" + Folders());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("from_date"), std::string::npos) << bad.err;
}

TEST_F(CliTest, DebugDumpPrintsTheLogAndReportsCorruption) {
  // A log with records is one a crash left: a clean close flushes them into
  // segments and trims the log, so write it through the store directly.
  const fs::path folder = root_ / "store";
  store::Options options;
  options.folder = folder.string();
  options.file_system = NewPosixFileSystem();
  options.clock = NewSystemClock();
  options.flush_on_close = false;
  {
    auto engine = store::OpenEmbeddedEngine(options);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    store::AppendBatch batch;
    batch.project_id = 1;
    for (uint64_t i = 1; i <= 2; ++i) {
      Event event;
      event.name = "Signed Up";
      event.time_ms = kFirstEventSeconds * 1000 + static_cast<int64_t>(i);
      event.subject = Id128{0, i};
      event.insert_id = Id128{0x1D, i};
      event.key_version = 1;
      event.policy_version = 3;
      batch.events.push_back(std::move(event));
    }
    ProfileUpdate update;
    update.subject = Id128{0, 1};
    update.time_ms = kFirstEventSeconds * 1000;
    update.key_version = 1;
    update.policy_version = 5;
    update.properties = {{"plan", Value::String("pro")}};
    batch.profile_updates.push_back(std::move(update));
    ASSERT_TRUE((*engine)->Append(std::move(batch)).ok());
    ASSERT_TRUE((*engine)->Close().ok());
  }
  fs::path log;
  for (const auto& entry : fs::directory_iterator(folder / "wal")) {
    if (entry.path().extension() == ".log" &&
        (log.empty() || fs::file_size(entry.path()) > fs::file_size(log))) {
      log = entry.path();
    }
  }
  ASSERT_FALSE(log.empty());
  const RunResult dumped = Run("debug dump " + log.string());
  EXPECT_EQ(dumped.exit_code, 0) << dumped.err;
  EXPECT_NE(dumped.out.find("minpanel log format 3"), std::string::npos) << dumped.out;
  EXPECT_NE(dumped.out.find("key_version=1 policy_version=3"), std::string::npos) << dumped.out;
  EXPECT_NE(dumped.out.find("profile $set subject=00000000000000000000000000000001 group_key= "
                            "time_ms=" + std::to_string(kFirstEventSeconds * 1000) +
                            " key_version=1 policy_version=5 {plan: \"pro\"}"),
            std::string::npos)
      << dumped.out;
  EXPECT_NE(dumped.out.find("events=2"), std::string::npos) << dumped.out;
  EXPECT_NE(dumped.out.find("event Signed Up"), std::string::npos) << dumped.out;

  const fs::path torn = root_ / "torn.log";
  fs::copy_file(log, torn);
  fs::resize_file(torn, fs::file_size(torn) - 3);
  const RunResult corrupt = Run("debug dump " + torn.string());
  EXPECT_EQ(corrupt.exit_code, 1);
  EXPECT_NE(corrupt.err.find("Corruption"), std::string::npos) << corrupt.err;
  const RunResult missing = Run("debug dump " + (root_ / "missing.log").string());
  EXPECT_EQ(missing.exit_code, 1);
}

TEST_F(CliTest, LockedDataFolderSaysToStopTheServer) {
  const fs::path file = root_ / "events.jsonl";
  WriteText(file, NumberedEvents(2));
  service::Config config;
  config.data_folder = (root_ / "data").string();
  config.key_folder = (root_ / "keys").string();
  auto running = service::Service::Open(config, NewPosixFileSystem(), NewSystemClock());
  ASSERT_TRUE(running.ok()) << running.status().ToString();

  const RunResult imported = Import(file);
  EXPECT_EQ(imported.exit_code, 1);
  EXPECT_NE(imported.err.find("in use"), std::string::npos) << imported.err;
  EXPECT_NE(imported.err.find("Stop the server"), std::string::npos) << imported.err;
  EXPECT_NE(imported.err.find("/import"), std::string::npos) << imported.err;
  EXPECT_FALSE(fs::exists(file.string() + ".import-state"));
  const RunResult exported =
      Run("export --project demo --from 2000-01-01 --to 2099-12-31" + Folders());
  EXPECT_EQ(exported.exit_code, 1);
  EXPECT_NE(exported.err.find("/api/2.0/export"), std::string::npos) << exported.err;
}

TEST_F(CliTest, UnknownProjectAndBadBatchAreErrors) {
  const fs::path file = root_ / "events.jsonl";
  WriteText(file, NumberedEvents(1));
  const RunResult unknown = Import(file, "", "nope");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no project named 'nope'"), std::string::npos) << unknown.err;
  EXPECT_EQ(Import(file, "--batch 0").exit_code, 2);
  EXPECT_EQ(Import(file, "--batch 2001").exit_code, 2);
  EXPECT_EQ(Import(root_ / "missing.jsonl").exit_code, 1);
}

class RecordReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() /
            ("minpanel-reader-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override { fs::remove(path_); }

  // Every record's text, or the error that stopped the reading.
  std::vector<std::string> ReadAll(std::string_view text, const ReadPosition& start = {},
                                   Status* error = nullptr) {
    WriteText(path_, text);
    auto reader = RecordReader::Open(path_.string(), start);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    std::vector<std::string> texts;
    Record record;
    while (true) {
      auto found = (*reader)->Next(&record);
      if (!found.ok()) {
        if (error != nullptr) {
          *error = found.status();
        }
        break;
      }
      if (!*found) {
        break;
      }
      texts.push_back(record.too_long() ? "<too long>" : record.text);
      last_ = record;
    }
    return texts;
  }

  fs::path path_;
  Record last_;
};

TEST_F(RecordReaderTest, JsonLinesSkipBlankLinesAndKeepLineNumbers) {
  EXPECT_EQ(ReadAll("\n{\"a\":1}\r\n  \n{\"b\":2}"),
            (std::vector<std::string>{"{\"a\":1}\r", "{\"b\":2}"}));
  EXPECT_EQ(last_.line, 4u);
  EXPECT_EQ(last_.number, 2u);
  EXPECT_EQ(last_.after.format, FileFormat::kJsonLines);
}

TEST_F(RecordReaderTest, ArrayElementsSplitOutsideStringsOnly) {
  EXPECT_EQ(ReadAll("[{\"a\":\"],\\\"[\"} , [1,2],\n 3 ]  \n"),
            (std::vector<std::string>{"{\"a\":\"],\\\"[\"}", "[1,2]", "3"}));
  EXPECT_EQ(last_.line, 2u);
  EXPECT_TRUE(last_.after.array_closed);
  EXPECT_TRUE(ReadAll("[]").empty());
  EXPECT_TRUE(ReadAll("").empty());
}

TEST_F(RecordReaderTest, MalformedArraysAreErrors) {
  Status error;
  ReadAll("[{\"a\":1}, {\"b\":", {}, &error);
  EXPECT_EQ(error.code(), StatusCode::kInvalidArgument);
  error = Status::Ok();
  EXPECT_EQ(ReadAll("[{\"a\":1}] x", {}, &error).size(), 1u);
  EXPECT_EQ(error.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(error.message().find("after the array"), std::string::npos);
}

TEST_F(RecordReaderTest, ResumesAfterASavedPosition) {
  const std::string text = "[{\"a\":1},\n{\"b\":2},\n{\"c\":3}]";
  ReadPosition after_b;
  after_b.format = FileFormat::kJsonArray;
  after_b.offset = text.find("{\"c\"") - 1;
  after_b.line = 1;
  after_b.record = 2;
  EXPECT_EQ(ReadAll(text, after_b), (std::vector<std::string>{"{\"c\":3}"}));
  EXPECT_EQ(last_.number, 3u);
  EXPECT_EQ(last_.line, 3u);
}

TEST_F(RecordReaderTest, OverlongRecordIsSkippedNotKept) {
  const std::string huge(kRecordTextBytesMax + 10, 'x');
  EXPECT_EQ(ReadAll(huge + "\n{}\n"), (std::vector<std::string>{"<too long>", "{}"}));
  EXPECT_EQ(ReadAll("[\"" + huge + "\", {}]"), (std::vector<std::string>{"<too long>", "{}"}));
}

TEST_F(CliTest, PolicyCheckPrintsRulesOrNamesTheBadKey) {
  WriteText(root_ / "good.toml", "ip = \"drop\"\n[[rule]]\nmatch = \"debug.*\"\naction = \"drop\"\n");
  const RunResult good = Run("policy check " + (root_ / "good.toml").string());
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_NE(good.out.find("line 2: debug.* -> drop"), std::string::npos) << good.out;
  WriteText(root_ / "bad.toml", "ip = \"hide\"\n");
  const RunResult bad = Run("policy check " + (root_ / "bad.toml").string());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("'ip' must be one of"), std::string::npos) << bad.err;
}

TEST_F(CliTest, PolicyPreviewShowsChangesAndStoresNothing) {
  WriteText(root_ / "sample.jsonl",
            "{\"event\":\"e\",\"properties\":{\"distinct_id\":\"user-9\",\"time\":1700000000,"
            "\"note\":\"mail a@example.test\",\"$email\":\"a@example.test\"}}\n");
  const RunResult preview =
      Run("policy preview --project demo" + Folders(), root_ / "sample.jsonl");
  ASSERT_EQ(preview.exit_code, 0) << preview.err;
  EXPECT_NE(preview.out.find("\"note\":\"mail [email]\""), std::string::npos) << preview.out;
  EXPECT_NE(preview.out.find("\"by\":\"named for a person\""), std::string::npos);
  EXPECT_EQ(preview.out.find("user-9"), std::string::npos);
  EXPECT_TRUE(ExportAll().empty()) << "a preview stores nothing";
}

}  // namespace
}  // namespace minpanel::cli

namespace minpanel::cli {
namespace {

// The distinct_id of one export line.
std::string SubjectOf(const std::string& line) {
  const std::string marker = "\"distinct_id\":\"";
  const size_t start = line.find(marker);
  if (start == std::string::npos) {
    return "";
  }
  const size_t value_start = start + marker.size();
  return line.substr(value_start, line.find('"', value_start) - value_start);
}

TEST_F(CliTest, RotateKeyRefusesWithoutYesAndSaysWhatItWouldDo) {
  const fs::path file = root_ / "one.jsonl";
  WriteText(file, EventLine("Signed Up", "user-1", kFirstEventSeconds, "id-1") + "\n");
  ASSERT_EQ(Import(file).exit_code, 0);
  const std::string key_before = ReadText(root_ / "keys" / "project-1.key");

  const RunResult refused = Run("project rotate-key demo" + Folders());
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("anonymisation step"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("count each person twice"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--yes"), std::string::npos) << refused.err;
  EXPECT_EQ(ReadText(root_ / "keys" / "project-1.key"), key_before);
  EXPECT_FALSE(fs::exists(root_ / "keys" / "project-1.v1.key"));
}

TEST_F(CliTest, RotateKeyGivesTheSamePersonANewSubjectAndKeepsTheOldKey) {
  const fs::path before = root_ / "before.jsonl";
  WriteText(before, EventLine("Signed Up", "user-1", kFirstEventSeconds, "id-1") + "\n");
  ASSERT_EQ(Import(before).exit_code, 0);
  const std::string key_before = ReadText(root_ / "keys" / "project-1.key");

  const RunResult rotated = Run("project rotate-key demo --yes" + Folders());
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  EXPECT_NE(rotated.out.find("version 1 -> 2"), std::string::npos) << rotated.out;
  EXPECT_NE(rotated.out.find("project-1.v1.key"), std::string::npos) << rotated.out;
  EXPECT_EQ(ReadText(root_ / "keys" / "project-1.v1.key"), key_before);

  const fs::path after = root_ / "after.jsonl";
  WriteText(after, EventLine("Upgraded", "user-1", kFirstEventSeconds + 60, "id-2") + "\n");
  ASSERT_EQ(Import(after).exit_code, 0);
  const std::vector<std::string> lines = ExportAll();
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_FALSE(SubjectOf(lines[0]).empty());
  EXPECT_FALSE(SubjectOf(lines[1]).empty());
  EXPECT_NE(SubjectOf(lines[0]), SubjectOf(lines[1])) << lines[0] << "\n" << lines[1];
}

TEST_F(CliTest, RotateKeyDestroyOldDeletesEveryKeptKey) {
  const fs::path file = root_ / "one.jsonl";
  WriteText(file, EventLine("Signed Up", "user-1", kFirstEventSeconds, "id-1") + "\n");
  ASSERT_EQ(Import(file).exit_code, 0);
  ASSERT_EQ(Run("project rotate-key demo --yes" + Folders()).exit_code, 0);
  ASSERT_TRUE(fs::exists(root_ / "keys" / "project-1.v1.key"));

  const RunResult destroyed = Run("project rotate-key demo --destroy-old --yes" + Folders());
  ASSERT_EQ(destroyed.exit_code, 0) << destroyed.err;
  EXPECT_NE(destroyed.out.find("version 2 -> 3"), std::string::npos) << destroyed.out;
  EXPECT_NE(destroyed.out.find("destroyed"), std::string::npos) << destroyed.out;
  EXPECT_TRUE(fs::exists(root_ / "keys" / "project-1.key"));
  EXPECT_FALSE(fs::exists(root_ / "keys" / "project-1.v1.key"));
  EXPECT_FALSE(fs::exists(root_ / "keys" / "project-1.v2.key"));
}

TEST_F(CliTest, RotateKeyOfAnUnknownOrUnusedProjectFails) {
  const RunResult unknown = Run("project rotate-key nope --yes" + Folders());
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no project named 'nope'"), std::string::npos) << unknown.err;
  const RunResult unused = Run("project rotate-key demo --yes" + Folders());
  EXPECT_EQ(unused.exit_code, 1);
  EXPECT_NE(unused.err.find("nothing to replace"), std::string::npos) << unused.err;
}

}  // namespace
}  // namespace minpanel::cli
