// Recovery on open: what a torn, corrupt or foreign log file does.
#include <chrono>
#include <sstream>
#include <thread>

#include "store/dump_print.h"
#include "store/store_test_util.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 3;
constexpr int64_t kTimeMs = kTestNowMs - 1000;

class WalRecoveryTest : public StoreTest {
 protected:
  // These tests cut and damage the log as a crash would leave it; a flush on
  // Close would put its events into segments first.
  void SetUp() override {
    StoreTest::SetUp();
    options_.flush_on_close = false;
  }
  // Appends batches of one event each with insert ids `first`..`last`.
  void AppendIds(uint64_t first, uint64_t last) {
    for (uint64_t id = first; id <= last; ++id) {
      const auto result = engine_->Append(MakeBatch(kProject, {MakeEvent("e", kTimeMs, 1, id)}));
      ASSERT_TRUE(result.ok()) << result.status().ToString();
    }
  }
  std::vector<uint64_t> StoredIds() {
    std::vector<uint64_t> ids;
    for (const Event& event : ScanAll(kProject)) {
      ids.push_back(event.insert_id.low);
    }
    return ids;
  }
  void CloseEngine() {
    ASSERT_TRUE(engine_->Close().ok());
    engine_.reset();
  }
};

TEST_F(WalRecoveryTest, TornTailIsTruncated) {
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 2);
  const uint64_t good_bytes = engine_->GetStats().log_bytes;
  AppendIds(3, 3);
  CloseEngine();
  const std::string full = ReadBytes(LogPath(1));
  ASSERT_GT(full.size(), good_bytes);
  for (uint64_t cut = good_bytes; cut < full.size(); ++cut) {
    WriteBytes(LogPath(1), full.substr(0, cut));
    notes_.clear();
    ASSERT_TRUE(Open().ok()) << cut;
    EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1, 2})) << cut;
    EXPECT_EQ(std::filesystem::file_size(LogPath(1)), good_bytes) << cut;
    EXPECT_EQ(engine_->GetStats().recovery_bytes_truncated, cut - good_bytes);
    EXPECT_EQ(notes_.size(), cut > good_bytes ? 1u : 0u) << cut;
    CloseEngine();
  }
  // After a cut the log takes new appends as usual.
  ASSERT_TRUE(Open().ok());
  AppendIds(3, 3);
  EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1, 2, 3}));
}

// After a flush the log holds only the file the flush rolled to; a torn tail
// there is cut like any other, and recovery replays exactly the records
// after the flush on top of the segments.
TEST_F(WalRecoveryTest, TornTailAfterAFlushRollIsCutAndOnlyTheTailIsReplayed) {
  options_.memtable_rows_max = 3;
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 3);  // the third append starts a flush, which rolls to file 2
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (engine_->GetStats().log_files_trimmed < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no trim";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_FALSE(std::filesystem::exists(LogPath(1)));
  AppendIds(4, 4);
  const uint64_t good_bytes = std::filesystem::file_size(LogPath(2));
  AppendIds(5, 5);  // two rows in the memtable: under the threshold
  CloseEngine();
  const std::string full = ReadBytes(LogPath(2));
  WriteBytes(LogPath(2), full.substr(0, full.size() - 3));
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(engine_->GetStats().memtable_rows, 1u);
  EXPECT_EQ(std::filesystem::file_size(LogPath(2)), good_bytes);
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_NE(notes_[0].find(LogPath(2)), std::string::npos) << notes_[0];
}

TEST_F(WalRecoveryTest, CorruptChecksumInTailIsTruncated) {
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 1);
  const uint64_t good_bytes = engine_->GetStats().log_bytes;
  AppendIds(2, 2);
  CloseEngine();
  std::string bytes = ReadBytes(LogPath(1));
  bytes[bytes.size() - 3] ^= 0x20;  // inside the last record's payload
  WriteBytes(LogPath(1), bytes);
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1}));
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_NE(notes_[0].find("checksum"), std::string::npos) << notes_[0];
  EXPECT_NE(notes_[0].find("offset " + std::to_string(good_bytes)), std::string::npos);
}

TEST_F(WalRecoveryTest, ZeroFilledTailIsTruncated) {
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 1);
  CloseEngine();
  const std::string bytes = ReadBytes(LogPath(1));
  WriteBytes(LogPath(1), bytes + std::string(4096, '\0'));
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1}));
  EXPECT_EQ(std::filesystem::file_size(LogPath(1)), bytes.size());
}

TEST_F(WalRecoveryTest, CorruptRecordInOlderFileIsAnError) {
  options_.log_file_bytes_max = 256;
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 10);
  CloseEngine();
  ASSERT_TRUE(std::filesystem::exists(LogPath(2)));
  std::string bytes = ReadBytes(LogPath(1));
  bytes[kWalFileHeaderBytes + kWalRecordHeaderBytes + 12] ^= 0x01;
  WriteBytes(LogPath(1), bytes);
  const Status status = Open();
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find("000001.log at offset " + std::to_string(kWalFileHeaderBytes)),
            std::string::npos)
      << status.ToString();
  EXPECT_EQ(ReadBytes(LogPath(1)), bytes) << "an older file is never cut";
}

TEST_F(WalRecoveryTest, TornTailInOlderFileIsAnError) {
  options_.log_file_bytes_max = 256;
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 10);
  CloseEngine();
  const std::string bytes = ReadBytes(LogPath(1));
  WriteBytes(LogPath(1), bytes.substr(0, bytes.size() - 1));
  EXPECT_EQ(Open().code(), StatusCode::kCorruption);
}

TEST_F(WalRecoveryTest, EmptyAndHeaderOnlyFiles) {
  // A fresh folder, then reopening a header-only log.
  ASSERT_TRUE(Open().ok());
  CloseEngine();
  EXPECT_EQ(std::filesystem::file_size(LogPath(1)), kWalFileHeaderBytes);
  ASSERT_TRUE(Open().ok());
  EXPECT_TRUE(StoredIds().empty());
  AppendIds(1, 1);
  CloseEngine();

  // An empty newest file (a crash right after creating it) is recreated.
  WriteBytes(LogPath(2), "");
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(notes_.size(), 1u);
  EXPECT_EQ(std::filesystem::file_size(LogPath(2)), kWalFileHeaderBytes);
  AppendIds(2, 2);
  CloseEngine();

  // A short-header file and a header-only file before the newest hold nothing.
  WriteBytes(LogPath(3), EncodeWalFileHeader(3).substr(0, 10));
  WriteBytes(LogPath(4), EncodeWalFileHeader(4));
  WriteBytes(LogPath(5), "");
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1, 2}));
  AppendIds(3, 3);
  EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1, 2, 3}));
}

TEST_F(WalRecoveryTest, WrongMagicIsCorruption) {
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 1);
  CloseEngine();
  std::string bytes = ReadBytes(LogPath(1));
  bytes[0] = 'X';
  WriteBytes(LogPath(1), bytes);
  const Status status = Open();
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find("magic"), std::string::npos) << status.ToString();
}

TEST_F(WalRecoveryTest, FileNumberMismatchIsCorruption) {
  ASSERT_TRUE(Open().ok());
  CloseEngine();
  std::filesystem::rename(LogPath(1), LogPath(2));
  EXPECT_EQ(Open().code(), StatusCode::kCorruption);
}

TEST_F(WalRecoveryTest, OtherFilesInTheFolderAreIgnored) {
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 1);
  CloseEngine();
  WriteBytes(folder_ + "/wal/notes.txt", "hello");
  WriteBytes(folder_ + "/wal/12.log", "short names are not ours");
  ASSERT_TRUE(Open().ok());
  EXPECT_EQ(StoredIds(), (std::vector<uint64_t>{1}));
}

// Every dump prints a value on one line, and a double so that it reads back
// exactly and never looks like an int.
TEST(DumpPrintTest, ValuesPrintOnOneLineAndDoublesExactly) {
  std::ostringstream out;
  PrintValue(Value::String("a\n\"b\\"), out);
  out << ' ';
  PrintValue(Value::Double(0.1), out);
  out << ' ';
  PrintValue(Value::Double(2.0), out);
  out << ' ';
  PrintValue(Value::List({"x", "\t"}), out);
  EXPECT_EQ(out.str(), "\"a\\x0a\\\"b\\\\\" 0.10000000000000001 2.0 [\"x\", \"\\x09\"]");
}

// A batch record framed as the log writes it.
std::string FrameBatch(std::string_view payload) {
  std::string record(kWalRecordHeaderBytes, '\0');
  record += payload;
  const uint32_t length = static_cast<uint32_t>(payload.size());
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    record[4 + byte_idx] = static_cast<char>(length >> (8 * byte_idx));
  }
  record[8] = static_cast<char>(WalRecordType::kBatch);
  const uint32_t crc = Crc32(0, std::string_view(record).substr(4));
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    record[byte_idx] = static_cast<char>(crc >> (8 * byte_idx));
  }
  return record;
}

// A log file of format 1 (a binary from before events recorded their policy
// version) replays with the version unknown, is never appended to (the
// writer starts a new file of the newest format), and both files replay
// again after a restart, each event with what its file holds.
TEST_F(WalRecoveryTest, AVersionOneLogReadsWithThePolicyVersionUnknownAndIsNotAppendedTo) {
  std::filesystem::create_directories(folder_ + "/wal");
  std::string payload;
  EncodePayloadHeader(WalPayloadHeader{kTestNowMs, kProject, 2, 0}, &payload);
  for (uint64_t id = 1; id <= 2; ++id) {
    Event event = MakeEvent("e", kTimeMs, 1, id);
    event.policy_version = 9;  // not in a version 1 record
    EncodeEvent(event, &payload, 1);
  }
  const std::string old_file = EncodeWalFileHeader(1, 1) + FrameBatch(payload);
  WriteBytes(LogPath(1), old_file);
  std::ostringstream dump;
  ASSERT_TRUE(DumpLogFile(*options_.file_system, LogPath(1), dump).ok()) << dump.str();
  EXPECT_NE(dump.str().find("minpanel log format 1, file 1"), std::string::npos) << dump.str();
  EXPECT_NE(dump.str().find("policy_version=unknown"), std::string::npos) << dump.str();

  ASSERT_TRUE(Open().ok());
  Event newer = MakeEvent("e", kTimeMs, 1, 3);
  newer.policy_version = 4;
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {newer})).ok());
  EXPECT_EQ(ReadBytes(LogPath(1)), old_file);
  ASSERT_TRUE(std::filesystem::exists(LogPath(2)));
  auto header = DecodeWalFileHeader(ReadBytes(LogPath(2)).substr(0, kWalFileHeaderBytes));
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->format_version, kWalFormatVersion);
  for (int pass = 0; pass < 2; ++pass) {
    const std::vector<Event> events = ScanAll(kProject);
    ASSERT_EQ(events.size(), 3u) << pass;
    for (const Event& event : events) {
      EXPECT_EQ(event.policy_version, event.insert_id.low == 3 ? 4u : kPolicyVersionUnknown)
          << event.insert_id.low << " pass " << pass;
    }
    CloseEngine();
    ASSERT_TRUE(Open().ok());
  }
}

TEST_F(WalRecoveryTest, DumpLogFilePrintsEveryRecord) {
  ASSERT_TRUE(Open().ok());
  AppendIds(1, 2);
  CloseEngine();
  std::ostringstream out;
  ASSERT_TRUE(DumpLogFile(*options_.file_system, LogPath(1), out).ok());
  const std::string text = out.str();
  EXPECT_NE(text.find("minpanel log format 3, file 1"), std::string::npos) << text;
  EXPECT_NE(text.find("key_version=1 policy_version=unknown"), std::string::npos) << text;
  EXPECT_NE(text.find("record at offset 24"), std::string::npos) << text;
  EXPECT_NE(text.find("plan: \"pro\""), std::string::npos) << text;

  std::string bytes = ReadBytes(LogPath(1));
  WriteBytes(LogPath(1), bytes.substr(0, bytes.size() - 1));
  std::ostringstream torn;
  EXPECT_EQ(DumpLogFile(*options_.file_system, LogPath(1), torn).code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace minpanel::store
