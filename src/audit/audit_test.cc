#include "audit/audit.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "audit/subjects_rewrite.h"
#include "core/fault_file_system.h"
#include "core/test_folder.h"
#include "core/time_units.h"

namespace minpanel::audit {
namespace {

// Every valid record of a log image, decoded, through the one reader.
std::vector<AuditEntry> Entries(std::string_view log_bytes) {
  std::vector<AuditEntry> entries;
  LogReader reader(log_bytes);
  if (!reader.Start().ok()) {
    return entries;
  }
  LogRecord record;
  while (reader.Next(&record).value()) {
    entries.push_back(DecodeEntry(record.payload).value());
  }
  return entries;
}

class AuditLogTest : public ::testing::Test {
 protected:
  void TearDown() override {
    RemoveTestFolderUnlessFailed(folder_);
    RemoveTestFolderUnlessFailed(folder_ + "-keys");
  }
  void SetUp() override {
    folder_ = TestFolder("audit_test");
    std::filesystem::remove_all(folder_);
  }

  std::unique_ptr<AuditLog> OpenLog(uint64_t anchor_interval = kAnchorInterval) {
    Options options;
    options.anchor_interval = anchor_interval;
    auto log = AuditLog::Open(folder_, file_system_, clock_, options);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }

  // Open refuses the option `field` past `max` (InvalidArgument naming
  // `limit`); then the log is opened with it at `value`.
  std::unique_ptr<AuditLog> OpenRefusingOver(uint32_t Options::*field, uint32_t max,
                                             std::string_view limit, uint32_t value) {
    Options options;
    options.*field = max + 1;
    auto refused = AuditLog::Open(folder_, file_system_, clock_, options);
    EXPECT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(refused.status().message().find(limit), std::string::npos);
    options.*field = value;
    auto opened = AuditLog::Open(folder_, file_system_, clock_, options);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    return opened.ok() ? std::move(opened).value() : nullptr;
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

  // Appends an export record whose subject file lists `subjects`; returns
  // the record (its seq set).
  AuditEntry AppendExport(AuditLog& log, const std::vector<std::string>& subjects) {
    SubjectKeySets sets;
    for (const std::string& subject : subjects) {
      sets.AddKey("plan", true);
      sets.AddSubject(subject);
      sets.EndRow();
    }
    AuditEntry entry;
    entry.key = "mpk_exporter";
    entry.act = "export";
    entry.properties = sets.Keys();
    clock_->Advance(1000);
    EXPECT_TRUE(log.WriteSubjects(sets.Finish(), &entry).ok());
    auto seq = log.Append(entry);
    EXPECT_TRUE(seq.ok()) << seq.status().ToString();
    entry.seq = seq.ok() ? *seq : 0;
    return entry;
  }
  // What an erasure does to the subject files (service/erasure.cc): the
  // subjects.rewrite record first, then the file replaced. Returns the
  // record's seq.
  uint64_t EraseFromSubjectFiles(AuditLog& log, const std::set<std::string>& erased) {
    std::vector<std::string> skipped;
    auto rewrites = PlanSubjectsRewrites(folder_, *file_system_, erased, &skipped);
    EXPECT_TRUE(rewrites.ok() && skipped.empty());
    uint64_t seq = 0;
    for (const SubjectsRewrite& rewrite : *rewrites) {
      AuditEntry record;
      record.key = std::string(kSubjectsRewriteKey);
      record.act = std::string(kSubjectsRewriteAct);
      record.route = std::string(kSubjectsRewriteRoute);
      record.subjects_file = rewrite.file;
      record.subjects_sha256 = rewrite.sha256;
      record.subjects = rewrite.erased;
      clock_->Advance(1000);
      seq = log.Append(record).value();
      EXPECT_TRUE(ApplySubjectsRewrite(folder_, *file_system_, rewrite).ok());
    }
    return seq;
  }
  FolderReport VerifyWithSubjects(const PublicKey* public_key = nullptr) {
    auto report = VerifyFolderAndSubjectFiles(folder_, *file_system_, public_key);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? std::move(report).value() : FolderReport{};
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

TEST_F(AuditLogTest, EnqueuedRecordsBecomeDurableInOrderAndAtClose) {
  auto log = OpenLog();
  AuditEntry start;
  start.act = "query.start";
  auto first = log->Enqueue(start);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  AuditEntry end;
  end.act = "query";
  auto second = log->Enqueue(end);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first + 1);
  EXPECT_TRUE(log->WaitDurable(*first).ok());
  // The second is never awaited: Close writes it.
  ASSERT_TRUE(log->Close().ok());
  const std::vector<AuditEntry> entries = Entries(Read("log"));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].act, "query.start");
  EXPECT_EQ(entries[1].act, "query");
  EXPECT_TRUE(Verify().ok);
  EXPECT_EQ(log->Enqueue(end).status().code(), StatusCode::kUnavailable);
}

TEST_F(AuditLogTest, RecordsNobodyWaitsForRideWithTheNextAwaitedSyncOrTheDelay) {
  auto log = OpenRefusingOver(&Options::unawaited_flush_ms, kUnawaitedFlushMsMax,
                              "kUnawaitedFlushMsMax", kUnawaitedFlushMsMax);
  ASSERT_NE(log, nullptr);
  const size_t empty_bytes = Read("log").size();
  AuditEntry start;
  start.act = "query.start";
  auto first = log->Enqueue(start);
  ASSERT_TRUE(first.ok());
  // Held while nobody waits for it (a stall of the whole test process for
  // kUnawaitedFlushMsMax would write it: rerun after such a pause).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(Read("log").size(), empty_bytes);
  AuditEntry end;
  end.act = "query";
  auto second = log->Enqueue(end);
  ASSERT_TRUE(second.ok());
  // A waiter for the second makes both durable at once.
  ASSERT_TRUE(log->WaitDurable(*second).ok());
  std::vector<AuditEntry> entries = Entries(Read("log"));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].act, "query.start");
  EXPECT_EQ(entries[1].act, "query");
  // A record nobody ever waits for is written once the delay has passed.
  auto third = log->Enqueue(end);
  ASSERT_TRUE(third.ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (Entries(Read("log")).size() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(Entries(Read("log")).size(), 3u);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_TRUE(Verify().ok);
}

// A long read: its opening record was synced while it ran (here awaited
// first), and its closing record, queued after, is durable before it
// answers when it waits through it, not within unawaited_flush_ms.
TEST_F(AuditLogTest, AnOpeningWaitedThroughItsClosingRecordMakesThatDurable) {
  Options options;
  options.unawaited_flush_ms = kUnawaitedFlushMsMax;  // nothing unawaited written in 1 s
  auto opened = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto log = std::move(opened).value();
  AuditEntry start;
  start.act = "query.start";
  auto opening = log->EnqueueOpening(start);
  ASSERT_TRUE(opening.ok());
  ASSERT_TRUE(log->WaitDurable(opening->seq()).ok());  // synced while the read runs
  ASSERT_EQ(Entries(Read("log")).size(), 1u);
  AuditEntry end;
  end.act = "query";
  auto closing = log->Enqueue(end);
  ASSERT_TRUE(closing.ok());
  const auto before = std::chrono::steady_clock::now();
  ASSERT_TRUE(opening->WaitDurable(*closing).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(500));
  const std::vector<AuditEntry> entries = Entries(Read("log"));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].act, "query");
  ASSERT_TRUE(log->Close().ok());
  EXPECT_TRUE(Verify().ok);
}

// OpenRead: a read that ends within deferred_start_ms is one record, its
// closing record with the opening's params; one that runs longer has its
// opening written while it runs, and its closing record after, without
// params; one that goes without Close, or is running when the log closes,
// has its opening written.
TEST_F(AuditLogTest, AHeldBackOpeningIsWrittenOnlyForAReadThatRunsLong) {
  auto log = OpenRefusingOver(&Options::deferred_start_ms, kDeferredStartMsMax,
                              "kDeferredStartMsMax", 200);
  ASSERT_NE(log, nullptr);
  AuditEntry start;
  start.act = "query.start";
  start.params = R"({"event":"Signed up"})";
  start.params_sha256 = Sha256Hex("q");
  AuditEntry end = start;
  end.params.clear();
  end.act = "query";
  end.bytes = 42;
  // A quick read: one record. (A stall of the test process for 200 ms
  // between these lines would write the opening: rerun after such a pause.)
  {
    auto quick = log->OpenRead(start);
    ASSERT_TRUE(quick.ok()) << quick.status().ToString();
    auto closed = quick->Close(end);
    ASSERT_TRUE(closed.ok()) << closed.status().ToString();
    const std::vector<AuditEntry> entries = Entries(Read("log"));
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].seq, *closed);
    EXPECT_EQ(entries[0].act, "query");
    EXPECT_EQ(entries[0].params, start.params);
    EXPECT_EQ(entries[0].bytes, 42u);
  }
  // A long read: its opening is written while it runs, unawaited.
  {
    auto slow = log->OpenRead(start);
    ASSERT_TRUE(slow.ok());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (Entries(Read("log")).size() < 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::vector<AuditEntry> entries = Entries(Read("log"));
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[1].act, "query.start");
    EXPECT_EQ(entries[1].params, start.params);
    ASSERT_TRUE(slow->Close(end).ok());
    entries = Entries(Read("log"));
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[2].act, "query");
    EXPECT_EQ(entries[2].params, "");
  }
  // A read that goes without Close (it failed first): its opening is written.
  {
    auto failed = log->OpenRead(start);
    ASSERT_TRUE(failed.ok());
  }
  // A read running when the log closes: its opening is written, its Close refused.
  auto running = log->OpenRead(start);
  ASSERT_TRUE(running.ok());
  ASSERT_TRUE(log->Close().ok());
  const std::vector<AuditEntry> entries = Entries(Read("log"));
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[3].act, "query.start");
  EXPECT_EQ(entries[4].act, "query.start");
  EXPECT_EQ(entries[4].params, start.params);
  EXPECT_EQ(running->Close(end).status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Verify().ok);
}

// With deferred_start_ms 0, OpenRead is EnqueueOpening: two records always.
TEST_F(AuditLogTest, OpenReadWithoutDeferringWritesTheOpeningAtOnce) {
  Options options;
  options.deferred_start_ms = 0;
  auto opened = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto log = std::move(opened).value();
  AuditEntry start;
  start.act = "query.start";
  start.params = "{}";
  auto opening = log->OpenRead(start);
  ASSERT_TRUE(opening.ok());
  EXPECT_GT(opening->seq(), 0u);
  AuditEntry end;
  end.act = "query";
  ASSERT_TRUE(opening->Close(end).ok());
  ASSERT_TRUE(log->Close().ok());
  const std::vector<AuditEntry> entries = Entries(Read("log"));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].act, "query.start");
  EXPECT_EQ(entries[1].act, "query");
  EXPECT_EQ(entries[1].params, "");
}

TEST_F(AuditLogTest, AWaitersSyncIsHeldForRunningReadsUntilTheLastWaits) {
  // At 1 s: far past any step here.
  auto log = OpenRefusingOver(&Options::opening_wait_us, kOpeningWaitUsMax, "kOpeningWaitUsMax",
                              kOpeningWaitUsMax);
  ASSERT_NE(log, nullptr);
  const size_t empty_bytes = Read("log").size();
  AuditEntry start;
  start.act = "query.start";
  // A read alone is not held.
  {
    auto alone = log->EnqueueOpening(start);
    ASSERT_TRUE(alone.ok());
    const auto before = std::chrono::steady_clock::now();
    ASSERT_TRUE(alone->WaitDurable().ok());
    EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(500));
  }
  const size_t one_bytes = Read("log").size();
  EXPECT_GT(one_bytes, empty_bytes);
  // Two running: the first to wait is held until the second waits too.
  auto first = log->EnqueueOpening(start);
  auto second = log->EnqueueOpening(start);
  ASSERT_TRUE(first.ok() && second.ok());
  std::atomic<bool> second_waits = false;
  std::thread waiter([&] {
    ASSERT_TRUE(first->WaitDurable().ok());
    EXPECT_TRUE(second_waits.load());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(Read("log").size(), one_bytes);
  second_waits = true;
  ASSERT_TRUE(second->WaitDurable().ok());
  waiter.join();
  EXPECT_EQ(Entries(Read("log")).size(), 3u);
  // A read that goes without waiting (it failed) no longer holds anyone.
  auto third = log->EnqueueOpening(start);
  std::optional<AuditLog::Opening> failed;
  {
    auto opening = log->EnqueueOpening(start);
    ASSERT_TRUE(third.ok() && opening.ok());
    failed.emplace(std::move(opening).value());
  }
  std::thread held([&] {
    const auto before = std::chrono::steady_clock::now();
    ASSERT_TRUE(third->WaitDurable().ok());
    EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(500));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  failed.reset();
  held.join();
  EXPECT_EQ(Entries(Read("log")).size(), 5u);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_TRUE(Verify().ok);
}

TEST_F(AuditLogTest, AFailedSyncRefusesWaitersAndLaterRecords) {
  auto faulty = std::make_shared<FaultFileSystem>(file_system_);
  auto opened = AuditLog::Open(folder_, faulty, clock_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto log = std::move(opened).value();
  faulty->FailSyncs(true);
  AuditEntry entry;
  entry.act = "query.start";
  auto seq = log->Enqueue(entry);
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(log->WaitDurable(*seq).code(), StatusCode::kUnavailable);
  faulty->Reset();
  EXPECT_EQ(log->Append(entry).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(log->Enqueue(entry).status().code(), StatusCode::kUnavailable);
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

// Space written ahead (docs/formats/audit.md, "Space written ahead"): a log
// open on disk has zeros past its last record, which every reader takes for
// the end; a closed one ends at its last record.
TEST_F(AuditLogTest, ALogWritesZerosAheadThatReadersTakeForTheEndAndCutsThemAtClose) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int record_idx = 0; record_idx < 5; ++record_idx) {
    AuditEntry entry;
    entry.key = "mpk_" + std::to_string(record_idx % 2);
    entry.act = "query";
    clock_->Advance(1000);
    ASSERT_TRUE(log->Append(entry).ok());
  }
  const std::string open_bytes = Read("log");
  EXPECT_EQ(ReadLogStart(open_bytes).value().version, kFileVersionWrittenAhead);
  const VerifyReport report = VerifyBytes(open_bytes, "");
  ASSERT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 5u);
  EXPECT_GE(open_bytes.size(), report.end_offset + (32 << 10));  // the first step: 64 KiB
  EXPECT_EQ(open_bytes.find_first_not_of('\0', report.end_offset), std::string::npos);
  const AuditLog::PreallocateState state = log->preallocate_state();
  EXPECT_TRUE(state.writing_ahead);
  EXPECT_GE(state.steps, 1u);
  EXPECT_EQ(state.failures, 0u);
  // `audit verify`, the key index and an indexed read of the last record
  // (whose successor is the zero tail), beside the open log.
  auto folder_report = VerifyFolder(folder_, *file_system_);
  ASSERT_TRUE(folder_report.ok());
  EXPECT_TRUE(folder_report->ok) << folder_report->problem;
  EXPECT_EQ(folder_report->records, 5u);
  EXPECT_EQ(folder_report->torn_tail_bytes, 0u);
  auto lookup = LookupKey(folder_, "mpk_0", *file_system_, WalkOptions{});
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  ASSERT_EQ(lookup->records.size(), 3u);
  auto file = file_system_->OpenRandomAccess(folder_ + "/log").value();
  auto last = ReadIndexedRecord(*file, ReadLogStart(open_bytes).value(), lookup->records.back());
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(DecodeEntry(*last).value().seq, 5u);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(Read("log"), open_bytes.substr(0, report.end_offset));
}

// What a kill -9 leaves in space written ahead, made by hand: the zero tail
// alone; a batch written but for its first length (written last); a record
// cut short in the zeros, in its payload or in its hash. Each verifies,
// and reopens with what is not zero kept aside and the cut in the chain. A
// checksum mismatch before the end stays an error.
TEST_F(AuditLogTest, WhatAKillLeavesInTheZerosReopensAndAMismatchBeforeTheEndIsAnError) {
  WriteRecords(4);
  const std::string four = Read("log");
  const std::string four_anchors = Read("anchors");
  WriteRecords(2);
  const std::string six = Read("log");
  ASSERT_EQ(six.substr(0, four.size()).substr(kFileHeaderBytes), four.substr(kFileHeaderBytes));
  const std::string zeros(8192, '\0');
  const size_t end = four.size();
  const size_t fifth_end = RecordOffsets(six)[5];
  struct Case {
    std::string name;
    std::string log;
    uint64_t kept_bytes;  // not zero past record 4: kept aside as torn-<end>
  };
  const std::vector<Case> cases = {
      {"zero tail", four + zeros, 0},
      {"a batch but its first length", four + std::string(4, '\0') + six.substr(end + 4) + zeros,
       six.find_last_not_of('\0') + 1 - end},
      {"a record cut in its payload", four + six.substr(end, 30) + zeros, 30},
      {"a record cut in its hash", four + six.substr(end, fifth_end - end - 8) + zeros,
       six.find_last_not_of('\0', fifth_end - 9) + 1 - end},
  };
  for (const Case& one : cases) {
    SCOPED_TRACE(one.name);
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_ + "/subjects");
    Write("log", one.log);
    Write("anchors", four_anchors);
    VerifyReport report = Verify();
    EXPECT_TRUE(report.ok) << report.problem;
    EXPECT_EQ(report.records, 4u);
    auto folder_report = VerifyFolder(folder_, *file_system_);
    ASSERT_TRUE(folder_report.ok());
    EXPECT_TRUE(folder_report->ok) << folder_report->problem;
    EXPECT_EQ(folder_report->torn_tail_bytes, one.kept_bytes);
    WriteRecords(1);
    report = Verify();
    EXPECT_TRUE(report.ok) << report.problem;
    const std::vector<AuditEntry> entries = Entries(Read("log"));
    ASSERT_EQ(entries.size(), one.kept_bytes > 0 ? 6u : 5u);
    EXPECT_EQ(std::filesystem::exists(folder_ + "/torn-" + std::to_string(end)),
              one.kept_bytes > 0);
    if (one.kept_bytes > 0) {
      EXPECT_EQ(entries[4].act, "log.torn_tail");
      EXPECT_EQ(entries[4].bytes, one.kept_bytes);
      EXPECT_EQ(Read("torn-" + std::to_string(end)), one.log.substr(end, one.kept_bytes));
    }
  }
  // An edited record before the zero tail, the last one or an earlier one,
  // is a broken record (not a torn tail), and the log does not open.
  for (const size_t record_idx : {size_t{1}, size_t{3}}) {
    SCOPED_TRACE(record_idx);
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
    std::string edited = four + zeros;
    edited[RecordOffsets(four)[record_idx] + 10] ^= 0x01;
    Write("log", edited);
    Write("anchors", "");
    const VerifyReport report = Verify();
    EXPECT_FALSE(report.ok);
    EXPECT_NE(report.problem.find("record " + std::to_string(record_idx + 1) + " "),
              std::string::npos)
        << report.problem;
    auto reopened = AuditLog::Open(folder_, file_system_, clock_);
    EXPECT_EQ(reopened.status().code(), StatusCode::kCorruption);
  }
  // More bytes that are not zero past the zero tail than a crash leaves
  // (a sparse file: one byte past kTornTailBytesMax) are refused, by
  // verify and by Open, naming the limit.
  std::filesystem::remove_all(folder_);
  std::filesystem::create_directories(folder_);
  Write("log", four + zeros);
  Write("anchors", four_anchors);
  {
    std::fstream log_file(folder_ + "/log", std::ios::in | std::ios::out | std::ios::binary);
    log_file.seekp(static_cast<std::streamoff>(end + kTornTailBytesMax));
    log_file.put('x');
  }
  auto hidden = VerifyFolder(folder_, *file_system_);
  ASSERT_TRUE(hidden.ok());
  EXPECT_FALSE(hidden->ok);
  EXPECT_NE(hidden->problem.find("kTornTailBytesMax"), std::string::npos) << hidden->problem;
  auto refused = AuditLog::Open(folder_, file_system_, clock_);
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find("kTornTailBytesMax"), std::string::npos);
}

// A real kill -9, at whatever point a child appending records has reached:
// the log reopens each time with every record the child was told was
// durable, and the chain verifies. Steps of zeros of one page, so that the
// kills also land around the writing ahead.
TEST_F(AuditLogTest, AWriterKilledAnywhereLeavesEveryAcknowledgedRecordAndAChainThatVerifies) {
  Options options;
  options.preallocate_bytes = 4096;
  uint64_t acknowledged_max = 0;
  for (const int kill_after : {1, 7, 23, 40, 61, 97}) {
    SCOPED_TRACE(kill_after);
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(pipe_fds[0]);
      auto log = AuditLog::Open(folder_, NewPosixFileSystem(), clock_, options);
      if (!log.ok()) {
        ::_exit(2);
      }
      for (uint64_t record_idx = 0;; ++record_idx) {
        AuditEntry entry;
        entry.key = "mpk_child";
        entry.act = "query";
        entry.events = std::vector<std::string>(record_idx % 5, "event");
        auto seq = (*log)->Append(entry);
        if (!seq.ok() || ::write(pipe_fds[1], &*seq, sizeof(*seq)) != sizeof(*seq)) {
          ::_exit(3);
        }
      }
    }
    ::close(pipe_fds[1]);
    uint64_t seq = 0;
    for (int read_idx = 0; read_idx < kill_after; ++read_idx) {
      ASSERT_EQ(::read(pipe_fds[0], &seq, sizeof(seq)), static_cast<ssize_t>(sizeof(seq)));
      acknowledged_max = std::max(acknowledged_max, seq);
    }
    ::kill(child, SIGKILL);
    while (::read(pipe_fds[0], &seq, sizeof(seq)) == static_cast<ssize_t>(sizeof(seq))) {
      acknowledged_max = std::max(acknowledged_max, seq);
    }
    ::close(pipe_fds[0]);
    int child_status = 0;
    ASSERT_EQ(::waitpid(child, &child_status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(child_status));
    auto reopened = AuditLog::Open(folder_, file_system_, clock_, options);
    ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
    ASSERT_TRUE((*reopened)->Close().ok());
    const VerifyReport report = Verify();
    ASSERT_TRUE(report.ok) << report.problem;
    EXPECT_GE(report.records, acknowledged_max);
  }
}

// A log written before version 3 (as preallocate_bytes 0 still writes it)
// reads and verifies as it is, a zero length in it stays a broken record,
// and a log that writes ahead opens it as version 3 with its records as
// they were.
TEST_F(AuditLogTest, AnOlderLogStillVerifiesAndIsWrittenAheadFromWhenItIsOpened) {
  Options plain;
  plain.preallocate_bytes = 0;
  {
    auto log = AuditLog::Open(folder_, file_system_, clock_, plain);
    ASSERT_TRUE(log.ok());
    for (int record_idx = 0; record_idx < 3; ++record_idx) {
      AuditEntry entry;
      entry.act = "query";
      ASSERT_TRUE((*log)->Append(entry).ok());
    }
    EXPECT_FALSE((*log)->preallocate_state().writing_ahead);
    const std::string open_bytes = Read("log");
    EXPECT_EQ(VerifyBytes(open_bytes, "").end_offset, open_bytes.size());  // no zeros
  }
  const std::string old = Read("log");
  EXPECT_EQ(ReadLogStart(old).value().version, kFileVersion);
  VerifyReport report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 3u);
  EXPECT_FALSE(VerifyBytes(old + std::string(64, '\0'), "").ok);
  WriteRecords(2);
  const std::string now = Read("log");
  EXPECT_EQ(ReadLogStart(now).value().version, kFileVersionWrittenAhead);
  EXPECT_EQ(now.substr(kFileHeaderBytes, old.size() - kFileHeaderBytes),
            old.substr(kFileHeaderBytes));
  report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 5u);
}

// A disk too full for the next step of zeros still takes the batch that
// asked for it (written first, in space the file had or grown as before
// version 3): no acknowledged record is lost, and the log grows with each
// batch from then on, saying why.
TEST_F(AuditLogTest, ADiskTooFullForZerosStillTakesEveryRecordAndTheLogGrowsFromThen) {
  auto faulty = std::make_shared<FaultFileSystem>(file_system_);
  Options options;
  options.preallocate_bytes = 64 << 10;
  auto opened = AuditLog::Open(folder_, faulty, clock_, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto log = std::move(opened).value();
  faulty->FailWritesAfterBytes(4096);  // the batch fits, its step of zeros does not
  AuditEntry entry;
  entry.act = "query";
  ASSERT_TRUE(log->Append(entry).ok());
  AuditLog::PreallocateState state = log->preallocate_state();
  EXPECT_FALSE(state.writing_ahead);
  EXPECT_EQ(state.failures, 1u);
  EXPECT_NE(state.problem.find("No space left"), std::string::npos) << state.problem;
  faulty->Reset();
  for (int record_idx = 0; record_idx < 3; ++record_idx) {
    ASSERT_TRUE(log->Append(entry).ok());
  }
  EXPECT_EQ(log->preallocate_state().steps, 0u);
  const std::string open_bytes = Read("log");
  VerifyReport report = VerifyBytes(open_bytes, "");
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 4u);
  ASSERT_TRUE(log->Close().ok());
  report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 4u);
}

TEST_F(AuditLogTest, OneProcessAtATime) {
  auto log = OpenLog();
  auto second = AuditLog::Open(folder_, file_system_, clock_);
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

TEST_F(AuditLogTest, SubjectsGoToASideFileNamedAndHashedInTheRecord) {
  auto log = OpenLog();
  SubjectKeySets sets;
  for (const char* subject : {"psn_b", "psn_a", "psn_b"}) {
    sets.AddKey("plan", true);
    sets.AddSubject(subject);
    sets.EndRow();
  }
  AuditEntry entry;
  entry.act = "export";
  ASSERT_TRUE(log->WriteSubjects(sets.Finish(), &entry).ok());
  EXPECT_EQ(entry.subjects, 2u);
  ASSERT_TRUE(log->Append(entry).ok());
  const std::string text =
      "minpanel-subjects 2\nkeys 1\n\"plan\"\nsets 1\n0\nsubjects 2\npsn_a 0\npsn_b 0\n";
  EXPECT_EQ(Read(entry.subjects_file), text);
  EXPECT_EQ(entry.subjects_sha256, Sha256Hex(text));
}

// Each subject gets exactly the keys its own rows had a value for: not a
// key only other subjects' rows had, nor one whose value was null; a merged
// row's two subjects both get its keys; rows with no subject add keys to
// the read's list but to no one.
TEST(SubjectKeySetsTest, EachSubjectHasTheKeysOfItsOwnRowsOnly) {
  SubjectKeySets sets;
  const auto row = [&](std::vector<std::pair<std::string, bool>> keys,
                       std::vector<std::string> subjects) {
    for (const auto& [key, has_value] : keys) {
      sets.AddKey(key, has_value);
    }
    for (const std::string& subject : subjects) {
      sets.AddSubject(subject);
    }
    sets.EndRow();
  };
  row({{"time", true}, {"plan", true}}, {"psn_c"});
  row({{"time", true}, {"$browser", true}, {"plan", false}}, {"psn_a"});
  row({{"time", true}, {"plan", true}}, {"psn_a"});
  row({{"time", true}, {"$city", true}}, {"psn_b", "psn_m"});
  row({{"time", true}, {"orphan", true}}, {});
  row({{"time", true}, {"plan", true}}, {"psn_decoy"});
  sets.EraseSubjectsIf([](std::string_view pseudonym) { return pseudonym == "psn_decoy"; });
  EXPECT_EQ(sets.subjects(), 4u);
  EXPECT_EQ(sets.Keys(), (std::vector<std::string>{"$browser", "$city", "orphan", "plan", "time"}));
  const SubjectsFile file = sets.Finish();
  ASSERT_EQ(file.subjects.size(), 4u);
  const auto keys_of = [&](size_t subject_idx) {
    std::vector<std::string> keys;
    for (const uint32_t key : file.key_sets[file.subjects[subject_idx].key_set]) {
      keys.push_back(file.keys[key]);
    }
    return keys;
  };
  EXPECT_EQ(file.subjects[0].pseudonym, "psn_a");
  EXPECT_EQ(keys_of(0), (std::vector<std::string>{"$browser", "plan", "time"}));
  EXPECT_EQ(file.subjects[1].pseudonym, "psn_b");
  EXPECT_EQ(keys_of(1), (std::vector<std::string>{"$city", "time"}));
  EXPECT_EQ(file.subjects[2].pseudonym, "psn_c");
  EXPECT_EQ(keys_of(2), (std::vector<std::string>{"plan", "time"}));
  EXPECT_EQ(file.subjects[3].pseudonym, "psn_m");
  EXPECT_EQ(file.subjects[3].key_set, file.subjects[1].key_set);
  // Only the sets someone has: the decoy's {plan, time} is psn_c's; the
  // row sets {time, $browser} and {time, orphan} are no one's.
  EXPECT_EQ(file.key_sets.size(), 3u);
  auto parsed = ParseSubjectsFile(EncodeSubjectsFile(file));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->version, 2u);
  EXPECT_EQ(EncodeSubjectsFile(*parsed), EncodeSubjectsFile(file));
}

TEST(SubjectKeySetsTest, KeysPastTheLimitAreNotTracked) {
  SubjectKeySets sets;
  for (size_t key_idx = 0; key_idx < kSubjectsFileKeysMax + 5; ++key_idx) {
    sets.AddKey("k" + std::to_string(key_idx), true);
  }
  sets.AddKey(std::string(kSubjectsFileKeyBytesMax + 1, 'x'), true);
  sets.AddSubject("psn_a");
  sets.EndRow();
  EXPECT_EQ(sets.Keys().size(), kSubjectsFileKeysMax);
  const SubjectsFile file = sets.Finish();
  EXPECT_EQ(file.key_sets.at(0).size(), kSubjectsFileKeysMax);
  EXPECT_TRUE(ParseSubjectsFile(EncodeSubjectsFile(file)).ok());
}

TEST(SubjectsFileTest, Version1IsReadAsPseudonymsWithoutKeySets) {
  auto parsed = ParseSubjectsFile("psn_a\npsn_b\n");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->version, 1u);
  ASSERT_EQ(parsed->subjects.size(), 2u);
  EXPECT_EQ(parsed->subjects[1].pseudonym, "psn_b");
  EXPECT_TRUE(parsed->key_sets.empty());
}

TEST(SubjectsFileTest, AnErasedSubjectKeepsItsKeySetAndBreaksNoOrder) {
  auto parsed = ParseSubjectsFile(
      "minpanel-subjects 2\nkeys 2\n\"a\\n\"\n\"b\"\nsets 2\n-\n0 1\nsubjects 3\n"
      "psn_b 1\nerased 0\npsn_c 0\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->keys[0], "a\n");
  EXPECT_TRUE(parsed->key_sets[0].empty());
  EXPECT_EQ(parsed->subjects[1].pseudonym, kErasedSubject);
  EXPECT_EQ(parsed->subjects[1].key_set, 0u);
}

TEST(SubjectsFileTest, MalformedFilesAreCorruptionNamingTheLine) {
  const std::string head = "minpanel-subjects 2\nkeys 2\n\"a\"\n\"b\"\nsets 1\n0 1\n";
  const std::pair<std::string, std::string> cases[] = {
      {"minpanel-subjects 2x\n", "line 1"},
      {"minpanel-subjects 2\nkeys 1001\n", "over the limit"},
      {"minpanel-subjects 2\nkeys 2\n\"b\"\n\"a\"\n", "not sorted"},
      {"minpanel-subjects 2\nkeys 1\nplan\n", "not a JSON string"},
      {"minpanel-subjects 2\nkeys 1\n\"a\"\nsets 1\n1\n", "names no key"},
      {"minpanel-subjects 2\nkeys 2\n\"a\"\n\"b\"\nsets 1\n1 0\n", "ascending"},
      {"minpanel-subjects 2\nkeys 1\n\"a\"\nsets 2\n0\n0\n", "twice"},
      {"minpanel-subjects 2\nkeys 1\n\"a\"\nsets 99999\n0\n", "over the limit"},
      {head + "subjects 1\npsn_a 1\n", "not one of the file's"},
      {head + "subjects 2\npsn_b 0\npsn_a 0\n", "not sorted"},
      {head + "subjects 1\npsn_a\n", "PSEUDONYM KEY_SET"},
      {head + "subjects 2\npsn_a 0\n", "ends inside its subjects"},
      {head + "subjects 1\npsn_a 0\npsn_b 0\n", "more lines"},
      {head + "subjects 1\npsn_a 0", "no newline"},
      {"minpanel-subjects 2\nkeys 1\n", "ends inside its keys"},
  };
  for (const auto& [text, expected] : cases) {
    auto parsed = ParseSubjectsFile(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), StatusCode::kCorruption) << text;
    EXPECT_NE(parsed.status().message().find(expected), std::string::npos)
        << text << ": " << parsed.status().message();
  }
}

// `minpanel audit verify` checks each subject file a record names against
// the newest SHA-256 the chain states for it (docs/formats/audit.md,
// "Verifying subject files"), and names the first bad one by its record:
// a flipped byte, a deleted file, a rewritten file put back to its text
// before the erasure (or before its last rewrite), a name outside
// subjects/.
TEST_F(AuditLogTest, VerifyChecksEverySubjectFileAgainstTheNewestHashTheChainStates) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  const AuditEntry first = AppendExport(*log, {"psn_a", "psn_b"});
  const AuditEntry second = AppendExport(*log, {"psn_b", "psn_c"});
  const AuditEntry third = AppendExport(*log, {"psn_d"});
  const std::string second_before = Read(second.subjects_file);
  const uint64_t rewrite_c = EraseFromSubjectFiles(*log, {"psn_c"});
  const std::string second_after_c = Read(second.subjects_file);
  const uint64_t rewrite_b = EraseFromSubjectFiles(*log, {"psn_b"});
  ASSERT_GT(rewrite_b, rewrite_c);
  ASSERT_TRUE(log->Close().ok());

  FolderReport report = VerifyWithSubjects();
  ASSERT_TRUE(report.log.ok) << report.log.problem;
  EXPECT_EQ(report.subject_files.bad, 0u) << report.subject_files.problem;
  EXPECT_EQ(report.subject_files.files, 3u);
  EXPECT_EQ(report.subject_files.rewritten, 2u);  // the first file once, the second twice
  EXPECT_EQ(report.subject_files.pruned, 0u);

  const auto expect_bad = [&](const std::string& what, uint64_t seq) {
    const FolderReport bad = VerifyWithSubjects();
    EXPECT_TRUE(bad.log.ok) << bad.log.problem;  // the chain itself is whole
    EXPECT_EQ(bad.subject_files.bad, 1u) << bad.subject_files.problem;
    EXPECT_EQ(bad.subject_files.problem_seq, seq) << bad.subject_files.problem;
    EXPECT_NE(bad.subject_files.problem.find(what), std::string::npos)
        << bad.subject_files.problem;
  };
  // A flipped byte.
  const std::string third_text = Read(third.subjects_file);
  std::string flipped = third_text;
  flipped[flipped.size() - 3] ^= 0x01;
  Write(third.subjects_file, flipped);
  expect_bad(third.subjects_file + " does not have the SHA-256 record " +
                 std::to_string(third.seq) + " states",
             third.seq);
  Write(third.subjects_file, third_text);
  // A deleted file, never rewritten and rewritten.
  std::filesystem::rename(folder_ + "/" + third.subjects_file, folder_ + "/aside");
  expect_bad(third.subjects_file + ", named by record " + std::to_string(third.seq) +
                 ", is missing",
             third.seq);
  std::filesystem::rename(folder_ + "/aside", folder_ + "/" + third.subjects_file);
  std::filesystem::rename(folder_ + "/" + first.subjects_file, folder_ + "/aside");
  expect_bad(first.subjects_file + ", named by record " + std::to_string(first.seq) +
                 ", is missing",
             first.seq);
  std::filesystem::rename(folder_ + "/aside", folder_ + "/" + first.subjects_file);
  // An older version put back: the text before any erasure, and the text
  // of the earlier rewrite.
  const std::string second_now = Read(second.subjects_file);
  Write(second.subjects_file, second_before);
  expect_bad(second.subjects_file + " holds the text its export record stated, not the one record " +
                 std::to_string(rewrite_b) + " (subjects.rewrite, the newest naming it) states",
             rewrite_b);
  Write(second.subjects_file, second_after_c);
  expect_bad(second.subjects_file + " holds the text record " + std::to_string(rewrite_c) +
                 " stated, not the one record " + std::to_string(rewrite_b),
             rewrite_b);
  // Another file's text in its place.
  Write(second.subjects_file, third_text);
  expect_bad(second.subjects_file + " holds none of the texts the chain states for it", rewrite_b);
  Write(second.subjects_file, second_now);
  EXPECT_EQ(VerifyWithSubjects().subject_files.bad, 0u);

  // Two bad files: the first by record is named, both are counted.
  Write(third.subjects_file, flipped);
  std::filesystem::remove(folder_ + "/" + first.subjects_file);
  report = VerifyWithSubjects();
  EXPECT_EQ(report.subject_files.bad, 2u);
  EXPECT_EQ(report.subject_files.problem_seq, first.seq) << report.subject_files.problem;
}

TEST_F(AuditLogTest, VerifyRefusesASubjectFileNameOutsideTheSubjectsFolder) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  AuditEntry entry;
  entry.act = "export";
  entry.subjects_file = "subjects/../anchors";
  entry.subjects_sha256 = std::string(64, '0');
  const uint64_t seq = log->Append(entry).value();
  ASSERT_TRUE(log->Close().ok());
  const FolderReport report = VerifyWithSubjects();
  EXPECT_EQ(report.subject_files.bad, 1u);
  EXPECT_EQ(report.subject_files.problem_seq, seq);
  EXPECT_NE(report.subject_files.problem.find("not a file under subjects/"), std::string::npos)
      << report.subject_files.problem;
}

// A command's incident run made while another process holds the log waits
// in the queue; the holder appends it (here: the next Open), in order, and
// removes the file only once the record is durable. A file that is not a
// command's incident record is set aside, never appended.
TEST_F(AuditLogTest, QueuedCommandActsAreAppendedByTheLogsHolder) {
  AuditEntry run;
  run.key = "local";
  run.route = "cli";
  run.act = "incident.blast_radius";
  run.target = "mpk_0123456789abcdef";
  run.subjects = 9;
  auto first = QueueEntry(folder_, run, *file_system_, 1000);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  run.act = "incident.who_could_read";
  run.target.clear();
  auto second = QueueEntry(folder_, run, *file_system_, 2000);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_LT(*first, *second);
  // A command's key change is queued too (while a server runs).
  AuditEntry change = run;
  change.act = "key.create";
  change.target = "mpk_fedcba9876543210";
  auto third = QueueEntry(folder_, change, *file_system_, 2200);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  AuditEntry forged = run;
  forged.act = "export";
  EXPECT_EQ(QueueEntry(folder_, forged, *file_system_, 3000).status().code(),
            StatusCode::kInvalidArgument);
  forged.act = "key.delete";
  EXPECT_EQ(QueueEntry(folder_, forged, *file_system_, 3000).status().code(),
            StatusCode::kInvalidArgument);
  forged.act = "incident.send";
  forged.key = "mpk_0123456789abcdef";
  EXPECT_EQ(QueueEntry(folder_, forged, *file_system_, 3000).status().code(),
            StatusCode::kInvalidArgument);
  // Written by hand past QueueEntry's checks: set aside at the drain.
  forged.key = "local";
  forged.act = "query";
  ASSERT_TRUE(file_system_
                  ->WriteFileAtomically(folder_ + "/queue/0000000002500-ffff.json",
                                        EncodeEntry(forged), 0600)
                  .ok());
  auto log = OpenLog();
  EXPECT_FALSE(file_system_->Exists(folder_ + "/queue/" + *first));
  EXPECT_FALSE(file_system_->Exists(folder_ + "/queue/" + *second));
  EXPECT_FALSE(file_system_->Exists(folder_ + "/queue/" + *third));
  EXPECT_TRUE(file_system_->Exists(folder_ + "/queue/0000000002500-ffff.json.rejected"));
  auto shown = log->Show(Filter{});
  ASSERT_TRUE(shown.ok());
  ASSERT_EQ(shown->size(), 3u);
  EXPECT_EQ((*shown)[0].act, "incident.blast_radius");
  EXPECT_EQ((*shown)[0].target, "mpk_0123456789abcdef");
  EXPECT_EQ((*shown)[0].subjects, 9u);
  EXPECT_EQ((*shown)[1].act, "incident.who_could_read");
  EXPECT_EQ((*shown)[2].act, "key.create");
  EXPECT_EQ((*shown)[2].target, "mpk_fedcba9876543210");
  // While the log is open, the holder drains when asked (the server: every
  // quarter second).
  run.act = "incident.crossref";
  ASSERT_TRUE(QueueEntry(folder_, run, *file_system_, 4000).ok());
  auto drained = log->DrainQueue();
  ASSERT_TRUE(drained.ok()) << drained.status().ToString();
  EXPECT_EQ(drained->appended, 1u);
  EXPECT_EQ(drained->rejected, 0u);
  auto again = log->DrainQueue();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->appended, 0u);
  ASSERT_TRUE(log->Close().ok());
  auto report = VerifyFolder(folder_, *file_system_);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->records, 4u);
}

TEST_F(AuditLogTest, TheQueueHoldsAtMostItsLimit) {
  AuditEntry run;
  run.key = "local";
  run.route = "cli";
  run.act = "incident.crossref";
  ASSERT_TRUE(file_system_->CreateDirectories(folder_ + "/queue", 0700).ok());
  for (size_t file_idx = 0; file_idx < kQueueFilesMax; ++file_idx) {
    std::ofstream(folder_ + "/queue/" + std::to_string(file_idx) + ".json") << "x";
  }
  auto refused = QueueEntry(folder_, run, *file_system_, 1);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("kQueueFilesMax"), std::string::npos);
}

class SignedAuditLogTest : public AuditLogTest {
 protected:
  std::unique_ptr<AuditLog> OpenSigned(std::shared_ptr<const SigningKey> key, uint64_t interval = 4,
                                       std::string sink = "") {
    Options options;
    options.anchor_interval = interval;
    options.signing_key = std::move(key);
    options.checkpoint_sink = std::move(sink);
    auto log = AuditLog::Open(folder_, file_system_, clock_, options);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }
  std::shared_ptr<const SigningKey> NewKey(const std::string& name) {
    auto key = LoadSigningKey(*file_system_, folder_ + "-" + name + ".key", true);
    EXPECT_TRUE(key.ok()) << key.status().ToString();
    return std::make_shared<const SigningKey>(*key);
  }
  void AppendAt(AuditLog& log, size_t count) {
    for (size_t record_idx = 0; record_idx < count; ++record_idx) {
      AuditEntry entry;
      entry.act = "query";
      clock_->Advance(1000);
      ASSERT_TRUE(log.Append(entry).ok());
    }
  }
  void TearDown() override {
    std::filesystem::remove(folder_ + "-a.key");
    std::filesystem::remove(folder_ + "-b.key");
    std::filesystem::remove(folder_ + "-c.key");
    AuditLogTest::TearDown();
  }
  // The anchors file without its key lines.
  std::string AnchorLines() {
    std::string anchors;
    std::istringstream lines(Read("anchors"));
    for (std::string line; std::getline(lines, line);) {
      if (!line.starts_with(kKeyLinePrefix)) {
        anchors += line + "\n";
      }
    }
    return anchors;
  }
};

TEST_F(SignedAuditLogTest, TheCheckpointObserverSeesEachAnchorLineOnceDurable) {
  const auto key = NewKey("a");
  auto log = OpenSigned(key, 4);
  ASSERT_NE(log, nullptr);
  std::string observed;
  log->SetCheckpointObserver([&](std::string_view line) {
    // Called once the line is in the anchors file, with the log's lock held.
    EXPECT_NE(Read("anchors").find(std::string(line) + "\n"), std::string::npos);
    observed += std::string(line) + "\n";
  });
  AppendAt(*log, 6);
  log->SetCheckpointObserver(nullptr);
  AppendAt(*log, 4);  // an anchor after 8, not observed
  ASSERT_TRUE(log->Close().ok());
  // The key line (a new log's first) is no checkpoint.
  EXPECT_TRUE(Read("anchors").starts_with("key " + PublicKeyHex(key->public_key) + " "));
  const std::string anchors = AnchorLines();
  EXPECT_TRUE(anchors.starts_with(observed)) << observed;
  EXPECT_EQ(std::count(observed.begin(), observed.end(), '\n'), 1);  // the one after 4
  EXPECT_GT(std::count(anchors.begin(), anchors.end(), '\n'), 1);
}

TEST_F(SignedAuditLogTest, CheckpointsAreSignedSentToTheSinkAndVerifyOnlyUnderTheirKey) {
  const auto key = NewKey("a");
  const std::string sink = folder_ + "-sink";
  std::filesystem::remove(sink);
  auto log = OpenSigned(key, 4, sink);
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 10);
  ASSERT_TRUE(log->Close().ok());
  const std::string anchors = Read("anchors");
  std::ifstream sink_in(sink);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(sink_in), {}), anchors);
  VerifyReport report = VerifyBytes(Read("log"), anchors, &key->public_key);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_GE(report.signed_checkpoints, 3u);  // after 4, 8 and at close (10)
  // The same key, loaded again, is the same key.
  auto again = LoadSigningKey(*file_system_, folder_ + "-a.key", false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key, key->public_key);
  // Another key signed none of them.
  const auto other = NewKey("b");
  report = VerifyBytes(Read("log"), anchors, &other->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("signed none of the checkpoints"), std::string::npos)
      << report.problem;
  // Nor do they verify under it when the key line is made to name it.
  std::string renamed = anchors;
  renamed.replace(renamed.find(PublicKeyHex(key->public_key)), kPublicKeyBytes * 2,
                  PublicKeyHex(other->public_key));
  report = VerifyBytes(Read("log"), renamed, &other->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("does not verify"), std::string::npos) << report.problem;
  std::filesystem::remove(sink);
}

TEST_F(SignedAuditLogTest, AForgedCheckpointIsDetected) {
  const auto key = NewKey("a");
  auto log = OpenSigned(key);
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 10);
  ASSERT_TRUE(log->Close().ok());
  // Someone rewrites record 3 and the whole chain after it, then re-anchors
  // without the key: the old signature no longer covers the new hash.
  std::string anchors = Read("anchors");
  const size_t first_hash = anchors.find(' ', anchors.find('\n')) + 1;  // line 1 names the key
  anchors[first_hash] = anchors[first_hash] == 'a' ? 'b' : 'a';
  VerifyReport report = VerifyBytes(Read("log"), anchors, &key->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("anchor 2"), std::string::npos) << report.problem;
  EXPECT_NE(report.problem.find("signature"), std::string::npos) << report.problem;
}

// Key epochs (docs/formats/audit.md): a restore without the old keys goes
// on under a new key, each checkpoint checked under its epoch's key.
TEST_F(SignedAuditLogTest, ANewKeyEpochOnlyWhenAskedAndEachCheckpointUnderItsEpochsKey) {
  const auto old_key = NewKey("a");
  auto log = OpenSigned(old_key, 4);
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 6);  // checkpoints of records 4 and 6 (at close)
  ASSERT_TRUE(log->Close().ok());
  log.reset();
  const std::string old_hex = PublicKeyHex(old_key->public_key);
  EXPECT_TRUE(Read("anchors").starts_with("key " + old_hex + " "));
  // Another key folder's key: refused, naming both keys.
  const auto new_key = NewKey("b");
  const std::string new_hex = PublicKeyHex(new_key->public_key);
  Options options;
  options.anchor_interval = 4;
  options.signing_key = new_key;
  auto refused = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find(old_hex), std::string::npos);
  EXPECT_NE(refused.status().message().find(new_hex), std::string::npos);
  // A restore without the old keys: a new epoch, in the anchors and the chain.
  options.new_key_epoch = true;
  auto restored = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  AppendAt(**restored, 5);  // records 8 to 12: checkpoints of 10 and 12
  ASSERT_TRUE((*restored)->Close().ok());
  restored->reset();
  const std::vector<AuditEntry> entries = Entries(Read("log"));
  ASSERT_EQ(entries.size(), 12u);
  EXPECT_EQ(entries[6].act, "log.key");
  EXPECT_EQ(entries[6].target, "key " + new_hex + " after " + old_hex);
  VerifyReport report = VerifyBytes(Read("log"), Read("anchors"), &new_key->public_key);
  ASSERT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.key_epochs, (std::vector<std::string>{old_hex, new_hex}));
  EXPECT_EQ(report.signed_checkpoints, 2u);
  EXPECT_EQ(report.other_key_checkpoints, 2u);
  EXPECT_EQ(report.trusted_seq, 12u);
  // The old key vouches for its epoch; a third key for nothing.
  report = VerifyBytes(Read("log"), Read("anchors"), &old_key->public_key);
  ASSERT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.trusted_seq, 6u);
  const auto third = NewKey("c");
  report = VerifyBytes(Read("log"), Read("anchors"), &third->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("signed none of the checkpoints"), std::string::npos)
      << report.problem;
  // The earlier epoch's key line made to name another key: its checkpoints
  // no longer verify, named by line.
  std::string anchors = Read("anchors");
  anchors.replace(anchors.find(old_hex), old_hex.size(), PublicKeyHex(third->public_key));
  report = VerifyBytes(Read("log"), anchors, &new_key->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("anchor 2 (record 4): its signature does not verify under the key "
                                "of its epoch"),
            std::string::npos)
      << report.problem;
  // The new key's log reopens as any other: no epoch, no record.
  options.new_key_epoch = false;
  auto reopened = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  ASSERT_TRUE((*reopened)->Close().ok());
  EXPECT_EQ(Entries(Read("log")).size(), 12u);
  const std::string anchors_after = Read("anchors");
  EXPECT_EQ(std::count(anchors_after.begin(), anchors_after.end(), 'k'), 2);  // two key lines
}

TEST_F(SignedAuditLogTest, ALogFromBeforeKeyLinesGetsOneAndItsCheckpointsStillVerify) {
  const auto key = NewKey("a");
  auto log = OpenSigned(key, 4);
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 6);
  ASSERT_TRUE(log->Close().ok());
  log.reset();
  const std::string older = AnchorLines();  // as written before key lines
  Write("anchors", older);
  EXPECT_TRUE(VerifyBytes(Read("log"), older, &key->public_key).ok);
  log = OpenSigned(key, 4);
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 1);
  ASSERT_TRUE(log->Close().ok());
  const std::string anchors = Read("anchors");
  EXPECT_TRUE(anchors.starts_with(older));
  EXPECT_NE(anchors.find("\nkey " + PublicKeyHex(key->public_key) + " "), std::string::npos);
  const VerifyReport report = VerifyBytes(Read("log"), anchors, &key->public_key);
  ASSERT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.signed_checkpoints, 3u);  // of 4, 6 and 7
  EXPECT_EQ(report.other_key_checkpoints, 0u);
  // Restored without its key, such a log names no key for its checkpoints.
  log.reset();
  const auto other = NewKey("b");
  Write("anchors", older);
  Options options;
  options.signing_key = other;
  options.new_key_epoch = true;
  auto refused = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("name no key"), std::string::npos)
      << refused.status().ToString();
}

TEST_F(SignedAuditLogTest, PruningCutsTheHeadBehindASignedCheckpointAndTamperingStillShows) {
  const auto key = NewKey("a");
  auto log = OpenSigned(key, 1000);
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 10);                             // times base+1 s … base+10 s
  const int64_t cutoff = clock_->NowMs() - 4500;  // records 1..5 are older
  auto pruned = log->PruneBefore(cutoff);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(*pruned, 5u);
  AppendAt(*log, 2);
  ASSERT_TRUE(log->Close().ok());
  const std::string bytes = Read("log");
  VerifyReport report = VerifyBytes(bytes, Read("anchors"), &key->public_key);
  ASSERT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.base_seq, 5u);
  EXPECT_EQ(report.records, 8u);  // 6..10, log.prune, and 2 more
  const std::vector<AuditEntry> entries = Entries(bytes);
  ASSERT_EQ(entries.size(), 8u);
  EXPECT_EQ(entries.front().seq, 6u);
  EXPECT_EQ(entries[5].act, "log.prune");
  // Without the key a pruned log is not accepted.
  EXPECT_FALSE(VerifyBytes(bytes, Read("anchors")).ok);
  // It reopens, and the chain continues.
  log.reset();
  log = OpenSigned(key, 1000);
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 1);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_TRUE(VerifyBytes(Read("log"), Read("anchors"), &key->public_key).ok);
  // Tamper after the prune: a flipped byte in record 7 is still named.
  std::string edited = Read("log");
  edited[kFileHeaderBytesPruned + 10] ^= 0x01;
  report = VerifyBytes(edited, Read("anchors"), &key->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("record 6 "), std::string::npos) << report.problem;
  // A head cut without a signed checkpoint of the base: the anchors lose it.
  std::string anchors;
  std::istringstream lines(Read("anchors"));
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("5 ")) {
      anchors += line + "\n";
    }
  }
  report = VerifyBytes(Read("log"), anchors, &key->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("no signed checkpoint"), std::string::npos) << report.problem;
}

// A file whose export record audit retention cut goes with it, and verify
// says so rather than calling it missing; the rewrite record that named it
// stays in the chain.
TEST_F(SignedAuditLogTest, VerifyAcceptsASubjectFileRetentionCutWithItsRecord) {
  const auto key = NewKey("a");
  auto log = OpenSigned(key, 1000);
  ASSERT_NE(log, nullptr);
  const AuditEntry old_export = AppendExport(*log, {"psn_a", "psn_b"});
  const int64_t cutoff = clock_->NowMs() + 500;
  const AuditEntry kept = AppendExport(*log, {"psn_b"});
  EraseFromSubjectFiles(*log, {"psn_b"});  // rewrites both files
  ASSERT_TRUE(log->PruneBefore(cutoff).ok());
  ASSERT_TRUE(log->Close().ok());
  EXPECT_FALSE(std::filesystem::exists(folder_ + "/" + old_export.subjects_file));
  const FolderReport report = VerifyWithSubjects(&key->public_key);
  ASSERT_TRUE(report.log.ok) << report.log.problem;
  EXPECT_EQ(report.subject_files.bad, 0u) << report.subject_files.problem;
  EXPECT_EQ(report.subject_files.files, 1u);
  EXPECT_EQ(report.subject_files.rewritten, 2u);
  EXPECT_EQ(report.subject_files.pruned, 1u);
  // The kept export's file is still checked.
  std::filesystem::remove(folder_ + "/" + kept.subjects_file);
  EXPECT_EQ(VerifyWithSubjects(&key->public_key).subject_files.problem_seq, kept.seq);
}

TEST_F(SignedAuditLogTest, PruningNeedsAKeyAndAForgedBaseIsCaught) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendAt(*log, 3);
  EXPECT_EQ(log->PruneBefore(clock_->NowMs()).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(log->Close().ok());
  // A log made to look pruned, with an anchor line carrying a made-up
  // signature: the signature fails under the key.
  const auto key = NewKey("a");
  const VerifyReport before = VerifyBytes(Read("log"), Read("anchors"));
  const std::string fake = PrunedHeader(1, before.head);
  const std::string anchors = "1 " + HexOf(before.head) + " 1 " + std::string(128, 'a') + "\n";
  const VerifyReport report = VerifyBytes(fake, anchors, &key->public_key);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("signature"), std::string::npos) << report.problem;
}

// Client addresses sealed under day keys (docs/formats/audit.md, "Client
// addresses"): readable while the day's key lasts, expired after, the chain
// untouched.
class AddressKeysTest : public AuditLogTest {
 protected:
  std::unique_ptr<AddressKeys> OpenKeys(uint32_t retention_days) {
    auto keys = AddressKeys::Open(folder_ + "-keys", file_system_, clock_, retention_days);
    EXPECT_TRUE(keys.ok()) << keys.status().ToString();
    return keys.ok() ? std::move(keys).value() : nullptr;
  }
};

TEST_F(AddressKeysTest, RecordsKeepTheAddressSealedAndItExpiresWithItsDayKey) {
  std::filesystem::remove_all(folder_ + "-keys");
  std::shared_ptr<AddressKeys> keys = OpenKeys(90);
  ASSERT_NE(keys, nullptr);
  Options options;
  options.address_keys = keys;
  const int64_t day = clock_->NowMs() / kDayMs;
  {
    auto log = AuditLog::Open(folder_, file_system_, clock_, options);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    AuditEntry entry;
    entry.key = "mpk_0123456789abcdef";
    entry.act = "query";
    entry.route = "/api/query";
    entry.client_address = "198.51.100.23";
    ASSERT_TRUE((*log)->Append(entry).ok());
    entry.client_address = "";  // the command line's: none
    ASSERT_TRUE((*log)->Append(entry).ok());
    ASSERT_TRUE((*log)->Close().ok());
  }
  // Never in clear on disk; sealed in the record, naming its day.
  const std::string bytes = Read("log");
  EXPECT_EQ(bytes.find("198.51.100"), std::string::npos);
  std::vector<AuditEntry> entries = Entries(bytes);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_TRUE(entries[0].address.starts_with(UtcDayName(day) + ":")) << entries[0].address;
  EXPECT_TRUE(entries[0].client_address.empty());
  EXPECT_TRUE(entries[1].address.empty());
  EXPECT_TRUE(std::filesystem::exists(keys->KeyPath(day)));
  // Readable while the key lasts: through the 90th day after its own.
  clock_->Advance(90 * kDayMs);
  ASSERT_EQ(keys->DestroyExpired().value(), 0u);
  AuditEntry shown = entries[0];
  ASSERT_TRUE(keys->RevealIn(&shown).ok());
  EXPECT_EQ(shown.address, "198.51.100.23");
  // A day later the key is destroyed: the address is gone for good, even
  // for a reader that opens the key folder anew, and the chain verifies.
  clock_->Advance(kDayMs);
  ASSERT_EQ(keys->DestroyExpired().value(), 1u);
  EXPECT_FALSE(std::filesystem::exists(keys->KeyPath(day)));
  shown = entries[0];
  ASSERT_TRUE(keys->RevealIn(&shown).ok());
  EXPECT_EQ(shown.address, kAddressExpired);
  std::unique_ptr<AddressKeys> reopened = OpenKeys(36'500);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Reveal(entries[0].address).value(), std::nullopt);
  const VerifyReport report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 2u);
}

TEST_F(AddressKeysTest, AnEditedSealIsCorruptionAndWithoutKeysNoAddressIsKept) {
  std::filesystem::remove_all(folder_ + "-keys");
  std::unique_ptr<AddressKeys> keys = OpenKeys(30);
  ASSERT_NE(keys, nullptr);
  const std::string sealed = keys->Seal("2001:db8::7", clock_->NowMs()).value();
  EXPECT_EQ(keys->Reveal(sealed).value(), std::optional<std::string>("2001:db8::7"));
  // Each seal has a nonce of its own (the process's prefix and a count):
  // the same address twice seals to two texts, and another process's keys
  // object (another prefix) to a third.
  const std::string again = keys->Seal("2001:db8::7", clock_->NowMs()).value();
  EXPECT_NE(again, sealed);
  EXPECT_EQ(keys->Reveal(again).value(), std::optional<std::string>("2001:db8::7"));
  std::unique_ptr<AddressKeys> other = OpenKeys(30);
  ASSERT_NE(other, nullptr);
  const std::string elsewhere = other->Seal("2001:db8::7", clock_->NowMs()).value();
  EXPECT_NE(elsewhere, sealed);
  EXPECT_NE(elsewhere, again);
  EXPECT_EQ(keys->Reveal(elsewhere).value(), std::optional<std::string>("2001:db8::7"));
  std::string edited = sealed;
  edited[edited.size() - 3] = edited[edited.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(keys->Reveal(edited).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(keys->Reveal("2026-02-30:AAAA").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(keys->Reveal("no day").status().code(), StatusCode::kCorruption);
  // Another day's key does not open it: the day is bound in.
  std::string other_day = sealed;
  other_day.replace(0, 10, UtcDayName(clock_->NowMs() / kDayMs - 1));
  ASSERT_TRUE(keys->Seal("192.0.2.1", clock_->NowMs() - kDayMs).ok());
  EXPECT_EQ(keys->Reveal(other_day).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(keys->Seal(std::string(kAddressBytesMax + 1, '1'), clock_->NowMs()).status().code(),
            StatusCode::kInvalidArgument);
  // Retention 0: nothing kept, and the keys made before go.
  std::unique_ptr<AddressKeys> none = OpenKeys(0);
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->Seal("192.0.2.1", clock_->NowMs()).value(), "");
  EXPECT_EQ(none->Reveal(sealed).value(), std::nullopt);
  EXPECT_TRUE(std::filesystem::is_empty(folder_ + "-keys"));
  // A log without address keys drops the address rather than keep it clear.
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    AuditEntry entry;
    entry.key = "mpk_0123456789abcdef";
    entry.act = "query";
    entry.client_address = "198.51.100.23";
    ASSERT_TRUE(log->Append(entry).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  EXPECT_EQ(Read("log").find("198.51.100"), std::string::npos);
  EXPECT_TRUE(Entries(Read("log"))[0].address.empty());
}

// An address key file as docs/formats/audit.md lays it out, made by hand.
std::string AddressKeyFile(int64_t day, char fill) {
  std::string bytes("MPADDRK\0", 8);
  for (const uint32_t field : {1U, static_cast<uint32_t>(day)}) {
    for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
      bytes.push_back(static_cast<char>((field >> (8 * byte_idx)) & 0xFF));
    }
  }
  bytes.append(kAddressKeyBytes, fill);
  return bytes;
}

TEST_F(AddressKeysTest, KeyFilesKeepTheirLayoutAndAHandMadeOneIsReadNotReplaced) {
  const std::string folder = folder_ + "-keys";
  std::filesystem::remove_all(folder);
  const int64_t day = clock_->NowMs() / kDayMs;
  const auto read = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto write = [](const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  };
  {
    // A key the code makes has the documented layout (its 32 bytes random).
    std::unique_ptr<AddressKeys> keys = OpenKeys(30);
    ASSERT_NE(keys, nullptr);
    ASSERT_TRUE(keys->Seal("192.0.2.1", clock_->NowMs() - kDayMs).ok());
    const std::string made = read(keys->KeyPath(day - 1));
    ASSERT_EQ(made.size(), 48u);
    EXPECT_EQ(made.substr(0, 16), AddressKeyFile(day - 1, 'x').substr(0, 16));
    EXPECT_EQ(keys->KeyPath(day - 1), folder + "/address-" + UtcDayName(day - 1) + ".key");
  }
  // A file written before (here by hand) is read and used, never replaced.
  write(folder + "/address-" + UtcDayName(day) + ".key", AddressKeyFile(day, 'k'));
  std::string sealed;
  {
    std::unique_ptr<AddressKeys> keys = OpenKeys(30);
    ASSERT_NE(keys, nullptr);
    sealed = keys->Seal("198.51.100.9", clock_->NowMs()).value();
    EXPECT_EQ(read(keys->KeyPath(day)), AddressKeyFile(day, 'k'));
  }
  // It opens under that key only.
  write(folder + "/address-" + UtcDayName(day) + ".key", AddressKeyFile(day, 'j'));
  EXPECT_EQ(OpenKeys(30)->Reveal(sealed).status().code(), StatusCode::kCorruption);
  write(folder + "/address-" + UtcDayName(day) + ".key", AddressKeyFile(day, 'k'));
  EXPECT_EQ(OpenKeys(30)->Reveal(sealed).value(), std::optional<std::string>("198.51.100.9"));
  // A damaged file, or one of another day, is Corruption naming it.
  const std::string path = folder + "/address-" + UtcDayName(day) + ".key";
  write(path, AddressKeyFile(day, 'k').substr(0, 40));
  EXPECT_EQ(OpenKeys(30)->Reveal(sealed).status().message(),
            "address key file " + path + ": wrong size or magic");
  write(path, AddressKeyFile(day + 1, 'k'));
  EXPECT_EQ(OpenKeys(30)->Seal("192.0.2.1", clock_->NowMs()).status().message(),
            "address key file " + path + ": holds the key of another day");
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
  entry.address = "2026-11-27:c2VhbGVk";
  auto decoded = DecodeEntry(EncodeEntry(entry));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(EncodeEntry(*decoded), EncodeEntry(entry));
  EXPECT_EQ(DecodeEntry("{\"seq\":1}").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeEntry("not json").status().code(), StatusCode::kCorruption);
}

// A read's record names the policy version in force (0: the built-in
// default); a record from before the field reads as having none.
TEST(AuditRecordTest, PolicyVersionIsOptionalAndChecked) {
  AuditEntry entry;
  entry.seq = 3;
  entry.key = "mpk_x";
  entry.act = "query";
  entry.route = "/api/query";
  EXPECT_EQ(EncodeEntry(entry).find("policy_version"), std::string::npos);
  const std::string older = EncodeEntry(entry);
  ASSERT_TRUE(DecodeEntry(older).ok());
  EXPECT_FALSE(DecodeEntry(older)->policy_version.has_value());

  entry.policy_version = 0;
  const std::string with_default = EncodeEntry(entry);
  EXPECT_NE(with_default.find(",\"policy_version\":0,\"outcome\""), std::string::npos)
      << with_default;
  ASSERT_TRUE(DecodeEntry(with_default).ok());
  EXPECT_EQ(DecodeEntry(with_default)->policy_version, std::optional<uint32_t>(0));
  entry.policy_version = 4'000'000'000U;
  EXPECT_EQ(DecodeEntry(EncodeEntry(entry))->policy_version,
            std::optional<uint32_t>(4'000'000'000U));

  const auto with_field = [&](std::string_view value) {
    std::string payload = older;
    payload.insert(payload.find(",\"outcome\""), ",\"policy_version\":" + std::string(value));
    return DecodeEntry(payload).status();
  };
  for (const std::string_view bad : {"-1", "4294967296", "\"2\"", "1.5", "null"}) {
    const Status status = with_field(bad);
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << bad;
    EXPECT_EQ(status.message(), "audit record: 'policy_version' is not a policy version") << bad;
  }
}

// `params` (docs/formats/audit.md, "Parameters"): optional, a string of
// at most kRecordParamsBytesMax bytes, checked when written and when read.
TEST(AuditRecordTest, ParamsAreOptionalAndChecked) {
  AuditEntry entry;
  entry.seq = 3;
  entry.act = "query.start";
  const std::string older = EncodeEntry(entry);
  EXPECT_EQ(older.find("params\""), std::string::npos) << older;
  ASSERT_TRUE(DecodeEntry(older).ok());
  EXPECT_EQ(DecodeEntry(older)->params, "");

  entry.params = R"({"kind":"funnel","filters":[{"property":"distinct_id","value":"<masked>"}]})";
  const std::string with_params = EncodeEntry(entry);
  EXPECT_NE(with_params.find(R"(,"params":"{\"kind\":\"funnel\",)"), std::string::npos)
      << with_params;
  ASSERT_TRUE(DecodeEntry(with_params).ok());
  EXPECT_EQ(DecodeEntry(with_params)->params, entry.params);
  EXPECT_EQ(EncodeEntry(*DecodeEntry(with_params)), with_params);

  const auto with_field = [&](std::string_view value) {
    std::string payload = older;
    payload.insert(payload.find(",\"outcome\""), ",\"params\":" + std::string(value));
    return DecodeEntry(payload).status();
  };
  const std::string too_long = "\"" + std::string(kRecordParamsBytesMax + 1, 'a') + "\"";
  for (const std::string_view bad : {std::string_view("{}"), std::string_view("1"),
                                     std::string_view(too_long)}) {
    EXPECT_EQ(with_field(bad).code(), StatusCode::kCorruption) << bad.substr(0, 20);
  }
}

TEST_F(AuditLogTest, ARecordWithParamsChainsAndOneOverTheLimitIsRefused) {
  WriteRecords(3);  // records from before params
  {
    auto log = OpenLog();
    AuditEntry entry;
    entry.key = "mpk_1";
    entry.act = "query.start";
    entry.params = R"({"kind":"segmentation"})";
    ASSERT_TRUE(log->Append(entry).ok());
    entry.params = std::string(kRecordParamsBytesMax + 1, 'a');
    const auto refused = log->Append(entry);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE(log->Close().ok());
  }
  const VerifyReport report = Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 4u);
  auto log = OpenLog();
  Filter filter;
  filter.act = "query.start";
  auto shown = log->Show(filter);
  ASSERT_TRUE(shown.ok());
  ASSERT_EQ(shown->size(), 1u);
  EXPECT_EQ(shown->front().params, R"({"kind":"segmentation"})");
}

TEST(AuditRecordTest, FilterMatchesTargetAndReasonPrefix) {
  AuditEntry entry;
  entry.key = "anomaly";
  entry.act = "anomaly";
  entry.target = "mpk_0123456789abcdef";
  entry.reason = "burst: 4 exports in 120 s";
  Filter filter;
  EXPECT_TRUE(Matches(filter, entry));
  filter.target = "mpk_0123456789abcdef";
  filter.reason_prefix = "burst: ";
  EXPECT_TRUE(Matches(filter, entry));
  filter.reason_prefix = "volume: ";
  EXPECT_FALSE(Matches(filter, entry));
  filter.reason_prefix = "";
  filter.target = "mpk_0123456789abcde";  // a prefix of the target is not the target
  EXPECT_FALSE(Matches(filter, entry));
}

TEST(AuditRecordTest, AForeignFileIsNotALog) {
  const VerifyReport report = VerifyBytes("this is not an audit log at all", "");
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.problem.find("header"), std::string::npos);
}

}  // namespace
}  // namespace minpanel::audit

namespace minpanel::audit {
namespace {

// A crash (or a full disk) in the middle of an anchor line leaves part of
// it: the next open ends it with a newline; the log must still open and
// verify afterwards.
TEST_F(AuditLogTest, ATornAnchorLineLeavesALogThatOpensAndVerifies) {
  WriteRecords(5);
  const std::string anchors = Read("anchors");
  ASSERT_FALSE(anchors.empty());
  Write("anchors", anchors + anchors.substr(0, 20));  // "5 <part of the hash>"
  WriteRecords(3);
  EXPECT_TRUE(Verify().ok) << Verify().problem;
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
}

}  // namespace

// Issue 6: an erasure's rewrite of a subject file (audit/subjects_rewrite.h).
TEST(SubjectsRewriteTest, Version2KeepsKeySetsAndCountVersion1StaysVersion1) {
  const std::string v2 =
      "minpanel-subjects 2\nkeys 2\n\"a\"\n\"b\"\nsets 2\n-\n0 1\nsubjects 3\n"
      "psn_a 1\npsn_b 0\npsn_c 1\n";
  auto rewrite = RewriteSubjectsText(v2, {"psn_b", "psn_c", "psn_zz"});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status().ToString();
  ASSERT_TRUE(rewrite->has_value());
  EXPECT_EQ((*rewrite)->erased, 2u);
  EXPECT_EQ((*rewrite)->text,
            "minpanel-subjects 2\nkeys 2\n\"a\"\n\"b\"\nsets 2\n-\n0 1\nsubjects 3\n"
            "psn_a 1\nerased 0\nerased 1\n");
  EXPECT_EQ((*rewrite)->sha256, Sha256Hex((*rewrite)->text));
  EXPECT_TRUE(ParseSubjectsFile((*rewrite)->text).ok());
  // Erasing again finds nothing more to do.
  auto again = RewriteSubjectsText((*rewrite)->text, {"psn_b", "psn_c"});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());

  auto v1 = RewriteSubjectsText("psn_a\npsn_b\n", {"psn_a"});
  ASSERT_TRUE(v1.ok());
  ASSERT_TRUE(v1->has_value());
  EXPECT_EQ((*v1)->text, "erased\npsn_b\n");
  auto parsed = ParseSubjectsFile((*v1)->text);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->version, 1u);
  // No subject of the file: no rewrite; a broken file: its error.
  EXPECT_FALSE(RewriteSubjectsText(v2, {"psn_x"})->has_value());
  EXPECT_FALSE(RewriteSubjectsText("minpanel-subjects 2\nkeys 9\n", {"psn_a"}).ok());
}

TEST(SubjectsRewriteTest, PlansOnlyTheFilesListingAnErasedSubjectAndAppliesAtomically) {
  const std::filesystem::path folder =
      std::filesystem::temp_directory_path() / ("minpanel-rewrite-" + std::to_string(::getpid()));
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder / "subjects");
  auto file_system = NewPosixFileSystem();
  ASSERT_TRUE(file_system->WriteFileAtomically((folder / "subjects/1-1.txt").string(),
                                               "psn_a\npsn_b\n", 0600).ok());
  ASSERT_TRUE(file_system->WriteFileAtomically((folder / "subjects/1-2.txt").string(),
                                               "psn_c\n", 0600).ok());
  ASSERT_TRUE(file_system->WriteFileAtomically((folder / "subjects/1-3.txt").string(),
                                               "minpanel-subjects 2\nkeys x\n", 0600).ok());
  // A write in flight (WriteFileAtomically's temporary file) is not a subject file.
  ASSERT_TRUE(file_system->WriteFileAtomically((folder / "subjects/1-4.txt.tmp").string(),
                                               "psn_b\n", 0600).ok());
  std::vector<std::string> skipped;
  auto plan = PlanSubjectsRewrites(folder.string(), *file_system, {"psn_b"}, &skipped);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 1u);
  EXPECT_EQ((*plan)[0].file, "subjects/1-1.txt");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("subjects/1-3.txt"), std::string::npos);
  ASSERT_TRUE(ApplySubjectsRewrite(folder.string(), *file_system, (*plan)[0]).ok());
  EXPECT_EQ(*file_system->ReadFile((folder / "subjects/1-1.txt").string()), "psn_a\nerased\n");
  std::filesystem::remove_all(folder);
}

}  // namespace minpanel::audit
