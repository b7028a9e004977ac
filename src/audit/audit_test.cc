#include "audit/audit.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace minpanel::audit {
namespace {

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = ::testing::TempDir() + "/audit_test_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(folder_);
  }

  std::unique_ptr<AuditLog> OpenLog(uint64_t anchor_interval = kAnchorInterval) {
    Options options;
    options.anchor_interval = anchor_interval;
    auto log = AuditLog::Open(folder_, file_system_, clock_, options);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }

  void WriteRecords(size_t count, uint64_t anchor_interval = kAnchorInterval) {
    auto log = OpenLog(anchor_interval);
    ASSERT_NE(log, nullptr);
    for (size_t record_idx = 0; record_idx < count; ++record_idx) {
      AuditEntry entry;
      entry.key = "mpk_" + std::to_string(record_idx % 3);
      entry.act = record_idx % 2 == 0 ? "query" : "export";
      entry.route = "/api/query";
      entry.projects = {1};
      entry.events = {"sign_up", "purchase"};
      entry.rows = record_idx;
      clock_->Advance(1000);
      ASSERT_TRUE(log->Append(entry).ok());
    }
    ASSERT_TRUE(log->Close().ok());
  }

  std::string Read(const std::string& name) {
    std::ifstream in(folder_ + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void Write(const std::string& name, const std::string& bytes) {
    std::ofstream(folder_ + "/" + name, std::ios::binary | std::ios::trunc) << bytes;
  }
  VerifyReport Verify() { return VerifyBytes(Read("log"), Read("anchors")); }

  // Byte offsets of each record's start.
  std::vector<size_t> RecordOffsets(const std::string& bytes) {
    std::vector<size_t> offsets;
    size_t offset = kFileHeaderBytes;
    while (offset + 4 <= bytes.size()) {
      offsets.push_back(offset);
      const uint32_t length = static_cast<uint8_t>(bytes[offset]) |
                              static_cast<uint8_t>(bytes[offset + 1]) << 8 |
                              static_cast<uint8_t>(bytes[offset + 2]) << 16 |
                              static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + 3])) << 24;
      offset += 4 + length + kHashBytes;
    }
    return offsets;
  }

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(1'700'000'000'000);
};

TEST_F(AuditLogTest, AppendsAChainThatVerifiesAndReopens) {
  WriteRecords(10);
  VerifyReport report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 10u);
  EXPECT_EQ(report.anchors, 1u);  // the head, anchored on Close
  WriteRecords(5);
  report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 15u);
  auto log = OpenLog();
  Filter filter;
  filter.key = "mpk_1";
  auto shown = log->Show(filter);
  ASSERT_TRUE(shown.ok());
  ASSERT_EQ(shown->size(), 5u);
  EXPECT_EQ(shown->front().seq, 2u);
  EXPECT_EQ(shown->back().seq, 15u);  // the second run restarts its key cycle
}

TEST_F(AuditLogTest, ConcurrentAppendsAreGroupCommittedInOneChain) {
  auto log = OpenLog(50);
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < 8; ++thread_idx) {
    threads.emplace_back([&log] {
      for (int record_idx = 0; record_idx < 100; ++record_idx) {
        AuditEntry entry;
        entry.act = "query";
        ASSERT_TRUE(log->Append(entry).ok());
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  ASSERT_TRUE(log->Close().ok());
  const VerifyReport report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 800u);
  // An anchor follows a group commit that passes the interval; on a busy
  // machine one group can take all 800 appends, so only one is certain.
  EXPECT_GE(report.anchors, 1u);
}

TEST_F(AuditLogTest, AnEditedByteIsDetectedAtItsRecord) {
  WriteRecords(10);
  std::string bytes = Read("log");
  const auto offsets = RecordOffsets(bytes);
  bytes[offsets[4] + 30] ^= 0x01;  // inside record 5's payload
  Write("log", bytes);
  const VerifyReport report = Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.records, 4u);
  EXPECT_NE(report.problem.find("record 5 "), std::string::npos) << report.problem;
  EXPECT_FALSE(AuditLog::Open(folder_, file_system_, clock_).ok());
}

TEST_F(AuditLogTest, AnEditedHashIsDetected) {
  WriteRecords(10);
  std::string bytes = Read("log");
  const auto offsets = RecordOffsets(bytes);
  bytes[offsets[3] - 1] ^= 0x80;  // the last hash byte of record 3
  Write("log", bytes);
  const VerifyReport report = Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("record 3 "), std::string::npos) << report.problem;
}

TEST_F(AuditLogTest, ADroppedRecordIsDetected) {
  WriteRecords(10);
  std::string bytes = Read("log");
  const auto offsets = RecordOffsets(bytes);
  bytes.erase(offsets[6], offsets[7] - offsets[6]);  // record 7
  Write("log", bytes);
  const VerifyReport report = Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("record 7 "), std::string::npos) << report.problem;
}

TEST_F(AuditLogTest, ReorderedRecordsAreDetected) {
  WriteRecords(10);
  std::string bytes = Read("log");
  const auto offsets = RecordOffsets(bytes);
  const std::string second = bytes.substr(offsets[1], offsets[2] - offsets[1]);
  const std::string third = bytes.substr(offsets[2], offsets[3] - offsets[2]);
  bytes.replace(offsets[1], second.size() + third.size(), third + second);
  Write("log", bytes);
  const VerifyReport report = Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("record 2 "), std::string::npos) << report.problem;
}

TEST_F(AuditLogTest, TruncationBehindAnAnchorIsDetected) {
  WriteRecords(10, 4);
  std::string bytes = Read("log");
  const auto offsets = RecordOffsets(bytes);
  Write("log", bytes.substr(0, offsets[6]));  // records 1-6 left; anchors at 4, 8, 10
  const VerifyReport report = Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("log ends at record 6"), std::string::npos) << report.problem;
  EXPECT_FALSE(AuditLog::Open(folder_, file_system_, clock_).ok());
}

TEST_F(AuditLogTest, ARewrittenChainIsDetectedByItsAnchors) {
  WriteRecords(10, 4);
  const std::string anchors = Read("anchors");
  std::filesystem::remove(folder_ + "/log");
  std::filesystem::remove(folder_ + "/anchors");
  WriteRecords(10, 1000);  // a forged chain of the same length, different contents
  Write("anchors", anchors);
  const VerifyReport report = Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("differs from the anchored one"), std::string::npos)
      << report.problem;
}

TEST_F(AuditLogTest, ATornTailIsKeptAsideAndCutAndTheChainContinues) {
  WriteRecords(5);
  std::string bytes = Read("log");
  const auto offsets = RecordOffsets(bytes);
  Write("log", bytes + bytes.substr(offsets[1], 20));  // half a record, as a crash leaves it
  VerifyReport report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.torn_tail_bytes, 20u);
  WriteRecords(2);
  report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 5u + 1u + 2u);  // the cut is a record of its own
  EXPECT_EQ(Read("torn-" + std::to_string(bytes.size())).size(), 20u);
  auto log = OpenLog();
  Filter filter;
  filter.act = "log.torn_tail";
  auto shown = log->Show(filter);
  ASSERT_TRUE(shown.ok());
  ASSERT_EQ(shown->size(), 1u);
  EXPECT_EQ(shown->front().bytes, 20u);
}

TEST_F(AuditLogTest, OneProcessAtATime) {
  auto log = OpenLog();
  auto second = AuditLog::Open(folder_, file_system_, clock_);
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

TEST_F(AuditLogTest, SubjectsGoToASideFileNamedAndHashedInTheRecord) {
  auto log = OpenLog();
  AuditEntry entry;
  entry.act = "export";
  ASSERT_TRUE(log->WriteSubjects({"psn_b", "psn_a", "psn_b"}, &entry).ok());
  EXPECT_EQ(entry.subjects, 2u);
  ASSERT_TRUE(log->Append(entry).ok());
  EXPECT_EQ(Read(entry.subjects_file), "psn_a\npsn_b\n");
  EXPECT_EQ(entry.subjects_sha256, Sha256Hex("psn_a\npsn_b\n"));
}

TEST(AuditRecordTest, EncodesAndDecodes) {
  AuditEntry entry;
  entry.seq = 7;
  entry.time_ms = 123;
  entry.key = "mpk_x";
  entry.act = "export";
  entry.route = "/api/2.0/export";
  entry.projects = {1, 2};
  entry.events = {"a\"b", "c\n"};
  entry.properties = {"plan"};
  entry.rows = 10;
  entry.subjects = 3;
  auto decoded = DecodeEntry(EncodeEntry(entry));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(EncodeEntry(*decoded), EncodeEntry(entry));
  EXPECT_EQ(DecodeEntry("{\"seq\":1}").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeEntry("not json").status().code(), StatusCode::kCorruption);
}

TEST(AuditRecordTest, AForeignFileIsNotALog) {
  const VerifyReport report = VerifyBytes("this is not an audit log at all", "");
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("header"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::audit
