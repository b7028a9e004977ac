// The blast radius and who-could-read over a real audit log (audit::AuditLog
// writing to a temporary folder, a fake clock for the times).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "audit/audit.h"
#include "core/test_folder.h"
#include "incident/incident.h"

namespace minpanel::incident {
namespace {

constexpr int64_t kStartMs = 1'790'000'000'000;

class BlastTest : public ::testing::Test {
 protected:
  void TearDown() override { RemoveTestFolderUnlessFailed(folder_); }
  void SetUp() override {
    folder_ = TestFolder("blast_test");
    std::filesystem::remove_all(folder_);
    clock_->Set(kStartMs);
    audit::Options options;
    options.anchor_interval = 4;
    auto log = audit::AuditLog::Open(folder_, file_system_, clock_, options);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = std::move(log).value();
  }

  // An export by `key` at `at_ms` of `subjects` carrying `properties`:
  // each subject has a value for every one of them, unless `keys_of` names
  // the subject's own (a version-2 subject file); with `version1` the
  // subject file is a version-1 one (pseudonyms only), as older logs hold.
  void Export(const std::string& key, int64_t at_ms, const std::vector<std::string>& subjects,
              const std::vector<std::string>& properties, bool finish = true,
              const std::map<std::string, std::vector<std::string>>& keys_of = {},
              bool version1 = false) {
    clock_->Set(at_ms);
    audit::AuditEntry start;
    start.key = key;
    start.act = "export.start";
    start.route = "/api/2.0/export";
    start.projects = {1};
    start.params_sha256 = audit::Sha256Hex(key + std::to_string(at_ms));
    ASSERT_TRUE(log_->Append(start).ok());
    if (!finish) {
      return;
    }
    clock_->Set(at_ms + 10);
    audit::AuditEntry end = start;
    end.act = "export";
    end.properties = properties;
    end.rows = subjects.size() * 2;
    if (!subjects.empty() && version1) {
      std::vector<std::string> sorted = subjects;
      std::sort(sorted.begin(), sorted.end());
      std::string text;
      for (const std::string& subject : sorted) {
        text += subject + "\n";
      }
      std::filesystem::create_directories(folder_ + "/subjects");
      end.subjects_file = "subjects/v1-" + std::to_string(at_ms) + ".txt";
      Write(end.subjects_file, text);
      end.subjects_sha256 = audit::Sha256Hex(text);
      end.subjects = sorted.size();
    } else if (!subjects.empty()) {
      audit::SubjectKeySets sets;
      for (const std::string& subject : subjects) {
        const auto own = keys_of.find(subject);
        for (const std::string& property : properties) {
          const bool has_value =
              own == keys_of.end() ||
              std::find(own->second.begin(), own->second.end(), property) != own->second.end();
          sets.AddKey(property, has_value);
        }
        sets.AddSubject(subject);
        sets.EndRow();
      }
      ASSERT_TRUE(log_->WriteSubjects(sets.Finish(), &end).ok());
    }
    ASSERT_TRUE(log_->Append(end).ok());
  }

  // A read of the dashboard's live view by `key`: one `events.live` record
  // with a subject file, as the service writes it (service/live.cc).
  void LiveRead(const std::string& key, int64_t at_ms, const std::vector<std::string>& subjects,
                const std::vector<std::string>& properties) {
    clock_->Set(at_ms);
    audit::AuditEntry entry;
    entry.key = key;
    entry.act = "events.live";
    entry.route = "/api/events/live";
    entry.projects = {1};
    entry.properties = properties;
    entry.rows = subjects.size();
    entry.subjects = subjects.size();
    audit::SubjectKeySets sets;
    for (const std::string& subject : subjects) {
      for (const std::string& property : properties) {
        sets.AddKey(property, true);
      }
      sets.AddSubject(subject);
      sets.EndRow();
    }
    ASSERT_TRUE(log_->WriteSubjects(sets.Finish(), &entry).ok());
    ASSERT_TRUE(log_->Append(entry).ok());
  }

  void Query(const std::string& key, int64_t at_ms, const std::vector<std::string>& properties) {
    clock_->Set(at_ms);
    audit::AuditEntry entry;
    entry.key = key;
    entry.act = "query";
    entry.route = "/api/query";
    entry.projects = {1};
    entry.events = {"purchase"};
    entry.properties = properties;
    entry.bytes = 120;
    ASSERT_TRUE(log_->Append(entry).ok());
  }

  // A query by `key` whose answer listed `subjects` (a breakdown by
  // distinct_id): its closing record names a subject file, as the service
  // writes it (service/access.cc).
  void SubjectQuery(const std::string& key, int64_t at_ms,
                    const std::vector<std::string>& subjects) {
    clock_->Set(at_ms);
    audit::AuditEntry entry;
    entry.key = key;
    entry.act = "query";
    entry.route = "/api/query";
    entry.projects = {1};
    entry.events = {"purchase"};
    entry.properties = {"distinct_id", "time"};
    entry.bytes = 200;
    audit::SubjectKeySets sets;
    for (const std::string& subject : subjects) {
      sets.AddKey("time", true);
      sets.AddSubject(subject);
      sets.EndRow();
    }
    ASSERT_TRUE(log_->WriteSubjects(sets.Finish(), &entry).ok());
    ASSERT_TRUE(log_->Append(entry).ok());
  }

  void Close() { ASSERT_TRUE(log_->Close().ok()); }

  Result<BlastRadius> Blast(const std::string& key, int64_t from_ms, int64_t to_ms,
                            bool allow_broken = false) {
    BlastOptions options;
    options.audit_folder = folder_;
    options.key = key;
    options.from_ms = from_ms;
    options.to_ms = to_ms;
    options.allow_broken = allow_broken;
    options.verify_chain = verify_chain_;
    return ComputeBlastRadius(options, *file_system_);
  }

  std::string Read(const std::string& name) {
    std::ifstream in(folder_ + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void Write(const std::string& name, const std::string& bytes) {
    std::ofstream(folder_ + "/" + name, std::ios::binary | std::ios::trunc) << bytes;
  }

  // The standard story: key A exports twice in the window (different
  // subjects and properties), once before it; key B exports too; A queries.
  void Story() {
    Export("mpk_a", kStartMs + 1000, {"psn_1", "psn_2"}, {"$city", "plan"});
    Export("mpk_a", kStartMs + 5000, {"psn_2", "psn_3"}, {"$browser"});
    Export("mpk_a", kStartMs - 5000, {"psn_9"}, {"$os"});
    Export("mpk_b", kStartMs + 6000, {"psn_4"}, {"$email"});
    Query("mpk_a", kStartMs + 7000, {"plan"});
    Query("mpk_a", kStartMs + 8000, {"distinct_id"});
    Query("mpk_b", kStartMs + 8500, {});
  }

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(kStartMs);
  std::unique_ptr<audit::AuditLog> log_;
  bool verify_chain_ = false;  // the whole chain walked instead of the key index
};

std::vector<std::string> SubjectsOf(const BlastRadius& blast) {
  std::vector<std::string> subjects;
  for (const SubjectExposure& subject : blast.subjects) {
    subjects.push_back(subject.subject);
  }
  return subjects;
}

TEST_F(BlastTest, NamesExactlyTheSubjectsAndKeysTheKeyExportedInTheWindow) {
  Story();
  Close();
  auto blast = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  EXPECT_TRUE(blast->chain.ok);
  // The log kept the key index (at its close): nothing left to walk, and
  // the anchors were matched when the index was written. The whole chain
  // walked matches them again.
  EXPECT_EQ(blast->chain.records_walked, 0u);
  verify_chain_ = true;
  auto full = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_GT(full->chain.anchors_checked, 0u);
  EXPECT_EQ(SubjectsOf(*full), SubjectsOf(*blast));
  EXPECT_EQ(SubjectsOf(*blast), (std::vector<std::string>{"psn_1", "psn_2", "psn_3"}));
  EXPECT_EQ(blast->subjects[0].properties,
            (std::vector<std::string>{"$city", "distinct_id", "plan"}));
  EXPECT_EQ(blast->subjects[1].properties,
            (std::vector<std::string>{"$browser", "$city", "distinct_id", "plan"}));
  EXPECT_EQ(blast->subjects[2].properties, (std::vector<std::string>{"$browser", "distinct_id"}));
  const uint32_t location = 1u << static_cast<uint32_t>(Category::kLocation);
  const uint32_t device = 1u << static_cast<uint32_t>(Category::kDevice);
  EXPECT_EQ(blast->subjects[0].categories & (location | device), location);
  EXPECT_EQ(blast->subjects[2].categories & (location | device), device);
  EXPECT_EQ(blast->exports.size(), 2u);
  EXPECT_EQ(blast->exports[0].started_ms, kStartMs + 1000);
  ASSERT_EQ(blast->queries.size(), 2u);
  EXPECT_FALSE(blast->queries[0].names_subjects);
  EXPECT_TRUE(blast->queries[1].names_subjects);
  // 2 starts + 2 ends + 2 queries.
  EXPECT_EQ(blast->records_of_key, 6u);
  EXPECT_TRUE(blast->open_exports.empty());
}

// Subjects whose rows lacked some of the export's keys are not listed with
// them: the subject file says which keys each subject's own rows had.
TEST_F(BlastTest, EachSubjectIsListedWithTheKeysOfItsOwnRowsOnly) {
  Export("mpk_a", kStartMs + 1000, {"psn_1", "psn_2", "psn_3"}, {"$browser", "$city", "plan"}, true,
         {{"psn_1", {"plan"}}, {"psn_2", {"$city", "plan"}}, {"psn_3", {}}});
  Export("mpk_a", kStartMs + 2000, {"psn_1"}, {"$os"});
  Close();
  for (const bool full : {false, true}) {
    verify_chain_ = full;
    auto blast = Blast("mpk_a", kStartMs, kStartMs + 60'000);
    ASSERT_TRUE(blast.ok()) << blast.status().ToString();
    ASSERT_EQ(SubjectsOf(*blast), (std::vector<std::string>{"psn_1", "psn_2", "psn_3"}));
    EXPECT_EQ(blast->subjects[0].properties,
              (std::vector<std::string>{"$os", "distinct_id", "plan"}));
    EXPECT_EQ(blast->subjects[1].properties,
              (std::vector<std::string>{"$city", "distinct_id", "plan"}));
    EXPECT_EQ(blast->subjects[2].properties, (std::vector<std::string>{"distinct_id"}));
    for (const SubjectExposure& subject : blast->subjects) {
      EXPECT_TRUE(subject.fields_exact);
    }
    const uint32_t device = 1u << static_cast<uint32_t>(Category::kDevice);
    const uint32_t location = 1u << static_cast<uint32_t>(Category::kLocation);
    EXPECT_EQ(blast->subjects[1].categories & (device | location), location);
    EXPECT_EQ(blast->subjects[2].categories & (device | location), 0u);
    // No one's rows had $browser: it is not among what left.
    EXPECT_EQ(blast->properties, (std::vector<std::string>{"$city", "$os", "distinct_id", "plan"}));
    EXPECT_TRUE(blast->warnings.empty());
    EXPECT_NE(BlastRadiusJson(*blast, 0).find("\"fields_exact\":true"), std::string::npos);
  }
}

// A subject file from before per-subject fields (version 1) is still read:
// its subjects get every key of the export, marked not exact, with a warning.
TEST_F(BlastTest, AVersion1SubjectFileOverStatesAndSaysSo) {
  Export("mpk_a", kStartMs + 1000, {"psn_2", "psn_1"}, {"$city", "plan"}, true, {}, true);
  Export("mpk_a", kStartMs + 2000, {"psn_1"}, {"$os", "plan"}, true, {{"psn_1", {"$os"}}});
  Close();
  auto blast = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  ASSERT_EQ(SubjectsOf(*blast), (std::vector<std::string>{"psn_1", "psn_2"}));
  EXPECT_EQ(blast->subjects[0].properties,
            (std::vector<std::string>{"$city", "$os", "distinct_id", "plan"}));
  EXPECT_FALSE(blast->subjects[0].fields_exact);
  EXPECT_FALSE(blast->subjects[1].fields_exact);
  ASSERT_EQ(blast->warnings.size(), 1u);
  EXPECT_NE(blast->warnings[0].message.find("over-state"), std::string::npos);
  EXPECT_NE(BlastRadiusJson(*blast, 0).find("\"fields_exact\":false"), std::string::npos);
}

TEST_F(BlastTest, AnExportCountsByItsStartAndAnUnfinishedOneIsFlagged) {
  Export("mpk_a", kStartMs - 5, {"psn_1"}, {"plan"});  // starts before, ends inside
  Export("mpk_a", kStartMs + 100, {}, {}, /*finish=*/false);
  Close();
  auto blast = Blast("mpk_a", kStartMs, kStartMs + 1000);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  EXPECT_TRUE(blast->subjects.empty());
  ASSERT_EQ(blast->open_exports.size(), 1u);
  ASSERT_FALSE(blast->warnings.empty());
  EXPECT_NE(blast->warnings[0].message.find("no end record"), std::string::npos);
}

// A query answered within the log's deferred_start_ms is one `query`
// record carrying its params: it counts on its own, and does not close an
// earlier `query.start` of the same parameters, which stays open.
TEST_F(BlastTest, AQueryRecordedOnceCountsAloneAndClosesNoEarlierStart) {
  clock_->Set(kStartMs + 100);
  audit::AuditEntry start;
  start.key = "mpk_a";
  start.act = "query.start";
  start.route = "/api/query";
  start.projects = {1};
  start.events = {"purchase"};
  start.params_sha256 = audit::Sha256Hex("q");
  start.params = R"({"events":["purchase"]})";
  ASSERT_TRUE(log_->Append(start).ok());  // never answered: no closing record
  clock_->Set(kStartMs + 200);
  audit::AuditEntry whole = start;
  whole.act = "query";
  whole.bytes = 120;
  ASSERT_TRUE(log_->Append(whole).ok());
  Close();
  auto blast = Blast("mpk_a", kStartMs, kStartMs + 1000);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  ASSERT_EQ(blast->queries.size(), 2u);
  EXPECT_EQ(blast->queries[0].seq, 2u);
  EXPECT_EQ(blast->queries[0].started_ms, 0);
  EXPECT_EQ(blast->queries[0].outcome, "ok");
  EXPECT_EQ(blast->queries[1].seq, 1u);
  EXPECT_NE(blast->queries[1].outcome.find("no closing record"), std::string::npos);
  EXPECT_EQ(blast->records_of_key, 2u);
}

std::vector<uint64_t> SeqsOf(const std::vector<BlastRecord>& records) {
  std::vector<uint64_t> seqs;
  for (const BlastRecord& record : records) {
    seqs.push_back(record.seq);
  }
  return seqs;
}

TEST_F(BlastTest, TheKeyIndexAndTheWholeChainGiveTheSameReport) {
  Story();
  Close();
  auto indexed = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(indexed.ok()) << indexed.status().ToString();
  EXPECT_TRUE(indexed->chain.ok);
  EXPECT_FALSE(indexed->chain.full_walk);
  // The log brought its key index up to date as it closed: nothing to walk.
  EXPECT_FALSE(indexed->chain.index_rebuilt) << indexed->chain.index_note;
  EXPECT_EQ(indexed->chain.records_walked, 0u);
  EXPECT_GT(indexed->chain.indexed_records_checked, 0u);
  auto again = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->chain.index_rebuilt) << again->chain.index_note;
  EXPECT_EQ(again->chain.records_walked, 0u);
  verify_chain_ = true;
  auto full = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_TRUE(full->chain.full_walk);
  EXPECT_EQ(full->chain.records, again->chain.records);
  for (const BlastRadius* blast : {&*indexed, &*again}) {
    EXPECT_EQ(SubjectsOf(*blast), SubjectsOf(*full));
    EXPECT_EQ(SeqsOf(blast->exports), SeqsOf(full->exports));
    EXPECT_EQ(SeqsOf(blast->queries), SeqsOf(full->queries));
    EXPECT_EQ(blast->records_of_key, full->records_of_key);
    EXPECT_EQ(blast->properties, full->properties);
  }
  EXPECT_EQ(SubjectsOf(*full), (std::vector<std::string>{"psn_1", "psn_2", "psn_3"}));
}

// An edit to one of the key's records after the index was made: the record
// read through the index does not check, and the run falls back to the
// whole chain, which refuses it.
TEST_F(BlastTest, AnEditedRecordUnderTheKeyIndexIsCaught) {
  Story();
  Close();
  ASSERT_TRUE(Blast("mpk_a", kStartMs, kStartMs + 60'000).ok());
  auto lookup = audit::LookupKey(folder_, "mpk_a", *file_system_, audit::WalkOptions{});
  ASSERT_TRUE(lookup.ok());
  ASSERT_GE(lookup->records.size(), 2u);
  std::string bytes = Read("log");
  const size_t at = lookup->records[1].offset + 4 + 30;
  bytes[at] = bytes[at] == '1' ? '2' : '1';
  Write("log", bytes);
  auto refused = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find("record"), std::string::npos);
}

TEST_F(BlastTest, AnEditedRecordIsRefusedAndAllowBrokenReportsThePrefixLoudly) {
  Story();
  Close();
  std::string bytes = Read("log");
  bytes[bytes.size() - 40] ^= 0x01;  // inside the last record's payload
  Write("log", bytes);
  auto refused = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find("record"), std::string::npos);
  auto allowed = Blast("mpk_a", kStartMs, kStartMs + 60'000, /*allow_broken=*/true);
  ASSERT_TRUE(allowed.ok()) << allowed.status().ToString();
  EXPECT_FALSE(allowed->chain.ok);
  EXPECT_TRUE(
      std::any_of(allowed->warnings.begin(), allowed->warnings.end(), [](const Warning& warning) {
        return warning.message.find("ONLY THE") != std::string::npos;
      }));
}

TEST_F(BlastTest, ARewrittenChainUnderAnAnchorIsRefused) {
  Story();
  Close();
  std::string anchors = Read("anchors");
  const size_t space = anchors.find(' ');
  anchors[space + 1] = anchors[space + 1] == '0' ? '1' : '0';
  Write("anchors", anchors);
  // The whole chain walked matches every anchor (an indexed run matches only
  // those past what the index covers: docs/formats/audit.md).
  verify_chain_ = true;
  auto refused = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("anchor"), std::string::npos);
}

// A version-2 log (pruned behind an anchor: docs/formats/audit.md) made by
// hand from a version-1 one: the first four records cut.
TEST_F(BlastTest, APrunedLogIsReadFromItsAnchoredBase) {
  Story();
  Close();
  const std::string bytes = Read("log");
  size_t offset = audit::kFileHeaderBytes;
  for (int record = 0; record < 4; ++record) {
    uint32_t length = 0;
    std::memcpy(&length, bytes.data() + offset, 4);
    offset += 4 + length + audit::kHashBytes;
  }
  std::string pruned = bytes.substr(0, audit::kFileHeaderBytes);
  pruned[8] = 2;
  const uint64_t base_seq = 4;
  pruned.append(reinterpret_cast<const char*>(&base_seq), 8);
  pruned.append(bytes.substr(offset - audit::kHashBytes, audit::kHashBytes));
  pruned.append(bytes.substr(offset));
  Write("log", pruned);
  auto blast = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  EXPECT_EQ(blast->chain.base_seq, 4u);
  // The key's two exports in the window (records 1 to 4) went with the cut;
  // its queries after it remain.
  EXPECT_TRUE(blast->subjects.empty());
  EXPECT_EQ(blast->queries.size(), 2u);
  EXPECT_EQ(blast->records_of_key, 2u);
  // Without an anchor naming the base, the cut is refused.
  std::string anchors = Read("anchors");
  Write("anchors", anchors.substr(anchors.find('\n') + 1));
  auto refused = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("cut from the head"), std::string::npos);
}

TEST_F(BlastTest, AnEditedSubjectFileIsRefused) {
  Export("mpk_a", kStartMs + 1, {"psn_1", "psn_2"}, {"plan"});
  Close();
  const auto entries = std::filesystem::directory_iterator(folder_ + "/subjects");
  const std::string name = "subjects/" + entries->path().filename().string();
  Write(name, "psn_1\n");  // psn_2 hidden
  auto refused = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("SHA-256"), std::string::npos);
}

TEST_F(BlastTest, BadWindowAndMissingLogAreClearErrors) {
  Close();
  auto backwards = Blast("mpk_a", kStartMs, kStartMs);
  ASSERT_FALSE(backwards.ok());
  EXPECT_NE(backwards.status().message().find("--from"), std::string::npos);
  BlastOptions options;
  options.audit_folder = folder_ + "/nowhere";
  options.key = "mpk_a";
  auto missing = ComputeBlastRadius(options, *file_system_);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(BlastTest, TablesMatchTheOperatorsAccountsByUserId) {
  Story();
  Close();
  auto blast = Blast("mpk_a", kStartMs, kStartMs + 60'000);
  ASSERT_TRUE(blast.ok()) << blast.status().ToString();
  auto tables = MakeBlastTables(*blast, {{"psn_2", "u-2"}});
  ASSERT_TRUE(tables.ok()) << tables.status().ToString();
  EXPECT_EQ(tables->leaked.row_count(), 3u);
  auto accounts =
      ParseTable("user_id,email,language\nu-1,a@example.org,en\nu-2,b@example.org,es\n");
  ASSERT_TRUE(accounts.ok());
  Recognition account_columns;
  for (const std::string& name : accounts->columns()) {
    ColumnRecognition column;
    column.name = name;
    column.kind = name == "user_id"
                      ? ColumnKind::kUserId
                      : (name == "email" ? ColumnKind::kEmail : ColumnKind::kLanguage);
    account_columns.columns.push_back(column);
  }
  CrossrefInput input{
      &tables->leaked, &tables->leaked_columns, &*accounts, &account_columns, nullptr, nullptr};
  auto impact = Crossref(input);
  ASSERT_TRUE(impact.ok()) << impact.status().ToString();
  ASSERT_EQ(impact->accounts.size(), 1u);
  EXPECT_EQ(impact->accounts[0].account_row, 1u);
  EXPECT_EQ(impact->leaked_rows_unmatched, 2u);
  const uint32_t location = 1u << static_cast<uint32_t>(Category::kLocation);
  EXPECT_NE(impact->ExposureOf(impact->accounts[0]).categories & location, 0u);
  const std::string json = BlastRadiusJson(*blast, 1'790'000'000);
  EXPECT_NE(json.find("\"subject\":\"psn_3\""), std::string::npos);
  EXPECT_EQ(json.find("psn_4"), std::string::npos);
  EXPECT_EQ(json.find("psn_9"), std::string::npos);
}

// The live view shows stored events, subjects included: its reads count as
// exports, in the blast radius (both ways of reading the log) and in
// who-could-read; one outside the window does not.
TEST_F(BlastTest, LiveViewReadsCountAsExports) {
  Story();
  LiveRead("mpk_a", kStartMs + 9000, {"psn_5", "psn_2"}, {"$city", "$os"});
  LiveRead("mpk_a", kStartMs - 9000, {"psn_6"}, {"$os"});
  LiveRead("mpk_b", kStartMs + 9500, {"psn_7"}, {"$os"});
  Close();
  for (const bool full : {false, true}) {
    verify_chain_ = full;
    auto blast = Blast("mpk_a", kStartMs, kStartMs + 60'000);
    ASSERT_TRUE(blast.ok()) << blast.status().ToString();
    EXPECT_EQ(SubjectsOf(*blast), (std::vector<std::string>{"psn_1", "psn_2", "psn_3", "psn_5"}));
    EXPECT_EQ(blast->subjects[3].properties,
              (std::vector<std::string>{"$city", "$os", "distinct_id"}));
    EXPECT_EQ(blast->subjects[1].properties,
              (std::vector<std::string>{"$browser", "$city", "$os", "distinct_id", "plan"}));
    EXPECT_EQ(blast->subjects[1].exports.size(), 3u);
    ASSERT_EQ(blast->exports.size(), 3u);
    EXPECT_EQ(blast->exports[2].act, "events.live");
    EXPECT_TRUE(blast->other_acts.empty());
    // 2 exports (start and end) + 2 queries + 1 live read.
    EXPECT_EQ(blast->records_of_key, 7u);
  }
  KeyReach a{"mpk_a", "a", 1, true, false, true, {}, {}, 0, 0};
  KeyReach b{"mpk_b", "b", 1, true, false, true, {}, {}, 0, 0};
  auto who = ComputeWhoCouldRead(folder_, 1, {"psn_5"}, {a, b}, 0, INT64_MAX, false, *file_system_);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  ASSERT_EQ(who->candidates.size(), 2u);
  EXPECT_EQ(who->candidates[0].exported_in.size(), 1u);
  EXPECT_TRUE(who->candidates[1].exported_in.empty());
  auto psn6 =
      ComputeWhoCouldRead(folder_, 1, {"psn_6"}, {a}, kStartMs, INT64_MAX, false, *file_system_);
  ASSERT_TRUE(psn6.ok());
  EXPECT_TRUE(psn6->candidates[0].exported_in.empty());
}

TEST_F(BlastTest, WhoCouldReadWeighsProjectScopeAndValidityAndFindsTheExports) {
  Story();
  Close();
  KeyReach exporter{"mpk_a", "a", 1, true, false, true, {}, {}, 0, 0};
  KeyReach other_project{"mpk_c", "c", 2, true, true, true, {}, {}, 0, 0};
  KeyReach revoked_before{"mpk_d", "d", 1, true, true, true, {}, {}, 0, kStartMs - 100'000};
  KeyReach aggregate{"mpk_b", "b", 0, false, false, true, {}, {}, 0, 0};
  KeyReach ingest_only{"mpk_e", "e", 1, false, false, false, {}, {}, 0, 0};
  auto who = ComputeWhoCouldRead(folder_, 1, {"psn_2"},
                                 {exporter, other_project, revoked_before, aggregate, ingest_only},
                                 kStartMs - 1000, kStartMs + 60'000, false, *file_system_);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  ASSERT_EQ(who->candidates.size(), 2u);
  EXPECT_EQ(who->candidates[0].key.key, "mpk_a");
  EXPECT_EQ(who->candidates[0].reach, "raw events");
  EXPECT_EQ(who->candidates[0].exported_in.size(), 2u);
  EXPECT_EQ(who->candidates[1].key.key, "mpk_b");
  EXPECT_EQ(who->candidates[1].reach, "aggregates only");
  EXPECT_TRUE(who->candidates[1].exported_in.empty());
  auto psn4 =
      ComputeWhoCouldRead(folder_, 1, {"psn_4"}, {exporter}, 0, INT64_MAX, false, *file_system_);
  ASSERT_TRUE(psn4.ok());
  ASSERT_EQ(psn4->other_exports.size(), 1u);
  EXPECT_EQ(psn4->other_exports[0].first, "mpk_b");
}

// A query whose answer listed the subject is named under the key that ran
// it (`queried_in`), or under other_queries for a credential not given; one
// that listed others, or ran outside the window, is not.
TEST_F(BlastTest, WhoCouldReadListsTheQueriesWhoseAnswersListedTheSubject) {
  Story();
  SubjectQuery("mpk_a", kStartMs + 9000, {"psn_2", "psn_5"});
  SubjectQuery("mpk_a", kStartMs + 9100, {"psn_6"});
  SubjectQuery("mpk_a", kStartMs - 9000, {"psn_2"});
  SubjectQuery("local", kStartMs + 9200, {"psn_2"});
  Close();
  KeyReach analyst{"mpk_a", "a", 1, true, true, true, {}, {}, 0, 0};
  KeyReach aggregate{"mpk_b", "b", 1, false, false, true, {}, {}, 0, 0};
  auto who = ComputeWhoCouldRead(folder_, 1, {"psn_2"}, {analyst, aggregate}, kStartMs,
                                 INT64_MAX, false, *file_system_);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  ASSERT_EQ(who->candidates.size(), 2u);
  EXPECT_EQ(who->candidates[0].exported_in.size(), 2u);
  ASSERT_EQ(who->candidates[0].queried_in.size(), 1u);
  EXPECT_TRUE(who->candidates[1].queried_in.empty());
  ASSERT_EQ(who->other_queries.size(), 1u);
  EXPECT_EQ(who->other_queries[0].first, "local");
  EXPECT_TRUE(who->other_exports.empty());
  const std::string json = WhoCouldReadJson(*who, 0);
  EXPECT_NE(json.find("\"queried_in\":[" + std::to_string(who->candidates[0].queried_in[0]) +
                      "]"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"other_queries\":[{\"key\":\"local\",\"seq\":" +
                      std::to_string(who->other_queries[0].second) + "}]"),
            std::string::npos)
      << json;
  // A subject no answer listed: no queries.
  auto psn3 = ComputeWhoCouldRead(folder_, 1, {"psn_3"}, {analyst}, 0, INT64_MAX, false,
                                  *file_system_);
  ASSERT_TRUE(psn3.ok());
  EXPECT_TRUE(psn3->candidates[0].queried_in.empty());
  EXPECT_TRUE(psn3->other_queries.empty());
  EXPECT_EQ(psn3->candidates[0].exported_in.size(), 1u);
}

TEST_F(BlastTest, WhoCouldReadSaysWhatTheStoreHoldsAndWhatEachKeysLimitsReach) {
  Story();
  Close();
  KeyReach everything{"mpk_a", "a", 1, true, false, true, {}, {}, 0, 0};
  KeyReach pages_only{"mpk_f", "f", 1, true, false, true, {"page"}, {}, 0, 0};
  KeyReach elsewhere{"mpk_g", "g", 1, true, false, true, {"refund"}, {}, 0, 0};
  auto who = ComputeWhoCouldRead(folder_, 1, {"psn_2"}, {everything, pages_only, elsewhere}, 0,
                                 INT64_MAX, false, *file_system_);
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  ASSERT_EQ(who->candidates.size(), 3u);
  SubjectInStore store;
  store.consulted = true;
  store.events = 5;
  store.first_event_ms = 1'790'000'000'123;
  store.last_event_ms = 1'790'086'400'000;
  store.events_by_name = {{"page", 3}, {"signup", 2}};
  store.profile_updates = 1;
  const size_t warnings_before = who->warnings.size();
  AddStoreToWhoCouldRead(store, &*who);
  EXPECT_EQ(who->candidates[0].events_in_reach, 5u);
  EXPECT_EQ(who->candidates[1].events_in_reach, 3u);
  EXPECT_EQ(who->candidates[2].events_in_reach, 0u);
  EXPECT_EQ(who->warnings.size(), warnings_before);
  const std::string json = WhoCouldReadJson(*who, 1'790'100'000);
  EXPECT_NE(json.find("\"store\":{\"consulted\":true,\"events\":5,\"first_event\":"
                      "\"2026-09-21T14:13:20Z\",\"last_event\":\"2026-09-22T14:13:20Z\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"events_by_name\":{\"page\":3,\"signup\":2},\"profile_updates\":1}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"events_in_reach\":3"), std::string::npos);

  // Nothing held: said, as a warning.
  auto gone =
      ComputeWhoCouldRead(folder_, 1, {"psn_2"}, {everything}, 0, INT64_MAX, false, *file_system_);
  ASSERT_TRUE(gone.ok());
  SubjectInStore empty;
  empty.consulted = true;
  AddStoreToWhoCouldRead(empty, &*gone);
  ASSERT_FALSE(gone->warnings.empty());
  EXPECT_NE(gone->warnings.back().message.find("the store holds no event or profile update"),
            std::string::npos);
  EXPECT_NE(WhoCouldReadJson(*gone, 0).find("\"first_event\":\"\""), std::string::npos);

  // Not consulted (the server held the data folder): said, and no counts.
  auto blind =
      ComputeWhoCouldRead(folder_, 1, {"psn_2"}, {everything}, 0, INT64_MAX, false, *file_system_);
  ASSERT_TRUE(blind.ok());
  SubjectInStore not_consulted;
  not_consulted.not_consulted = "the server holds the data folder";
  AddStoreToWhoCouldRead(not_consulted, &*blind);
  const std::string blind_json = WhoCouldReadJson(*blind, 0);
  EXPECT_NE(blind_json.find("\"store\":{\"consulted\":false,\"not_consulted\":\"the server "
                            "holds the data folder\"}"),
            std::string::npos)
      << blind_json;
  EXPECT_EQ(blind_json.find("events_in_reach"), std::string::npos);
  EXPECT_NE(blind->warnings.back().message.find("the store was not consulted"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::incident
