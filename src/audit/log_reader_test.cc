// The streaming reader and the key index over real logs (AuditLog writing to
// a temporary folder).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "audit/audit.h"
#include "core/test_folder.h"

namespace minpanel::audit {
namespace {

class LogReaderTest : public ::testing::Test {
 protected:
  void TearDown() override { RemoveTestFolderUnlessFailed(folder_); }
  void SetUp() override {
    folder_ = TestFolder("audit_reader_test");
    std::filesystem::remove_all(folder_);
  }

  // `count` records by keys mpk_0..mpk_2 in turn (mpk_1's key escaped when
  // `escaped`), queued and written at Close (group-committed), by a log
  // that does not keep the key index (the tests of LookupKey's own walk).
  void WriteRecords(size_t count, bool escaped = false) {
    Options options;
    options.anchor_interval = 64;
    options.index_update_records = 0;
    auto log = AuditLog::Open(folder_, file_system_, clock_, options);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    AppendRecords(**log, count, escaped);
    ASSERT_TRUE((*log)->Close().ok());
  }
  // Record `first_idx + n` is by key mpk_((first_idx + n) % 3).
  void AppendRecords(AuditLog& log, size_t count, bool escaped = false, size_t first_idx = 0) {
    uint64_t last = 0;
    for (size_t record_idx = first_idx; record_idx < first_idx + count; ++record_idx) {
      AuditEntry entry;
      entry.key = "mpk_" + std::to_string(record_idx % 3);
      if (escaped && record_idx % 3 == 1) {
        entry.key = "mpk_\"1\"";
      }
      entry.act = "query";
      entry.route = "/api/query";
      entry.projects = {1};
      entry.rows = record_idx;
      clock_->Advance(10);
      auto seq = log.Enqueue(entry);
      ASSERT_TRUE(seq.ok()) << seq.status().ToString();
      last = *seq;
    }
    ASSERT_TRUE(log.WaitDurable(last).ok());
  }
  // Waits (at most 20 s) until the log's indexer covers record `seq`.
  AuditLog::IndexState WaitIndexed(AuditLog& log, uint64_t seq, uint64_t rebuilds = 0) {
    for (int attempt = 0; attempt < 2000; ++attempt) {
      const AuditLog::IndexState state = log.index_state();
      if (state.indexed_seq >= seq && state.rebuilds >= rebuilds) {
        return state;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return log.index_state();
  }

  std::string Read(const std::string& name) {
    std::ifstream in(folder_ + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void Write(const std::string& name, const std::string& bytes) {
    std::ofstream(folder_ + "/" + name, std::ios::binary | std::ios::trunc) << bytes;
  }

  // Every record's (seq, offset, end, hash) as a reader passes them.
  std::vector<LogRecord> Walk(LogReader& reader) {
    std::vector<LogRecord> records;
    EXPECT_TRUE(reader.Start().ok());
    LogRecord record;
    while (reader.Next(&record).value()) {
      record.payload = {};
      records.push_back(record);
    }
    return records;
  }

  Result<KeyLookup> Lookup(const std::string& key) {
    return LookupKey(folder_, key, *file_system_, WalkOptions{});
  }

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(1'700'000'000'000);
};

bool SameRecords(const std::vector<LogRecord>& left, const std::vector<LogRecord>& right) {
  if (left.size() != right.size()) {
    return false;
  }
  for (size_t record_idx = 0; record_idx < left.size(); ++record_idx) {
    if (left[record_idx].seq != right[record_idx].seq ||
        left[record_idx].offset != right[record_idx].offset ||
        left[record_idx].end_offset != right[record_idx].end_offset ||
        left[record_idx].hash != right[record_idx].hash) {
      return false;
    }
  }
  return true;
}

TEST_F(LogReaderTest, AFileReadInTinyPiecesGivesTheRecordsOfTheImage) {
  WriteRecords(200);
  const std::string bytes = Read("log");
  LogReader image(bytes);
  const std::vector<LogRecord> expected = Walk(image);
  ASSERT_EQ(expected.size(), 200u);
  EXPECT_EQ(image.end(), LogReader::End::kClean);
  for (const size_t chunk_bytes : {1, 7, 100, 4096}) {
    LogReader file(file_system_->OpenRandomAccess(folder_ + "/log").value(), true, chunk_bytes);
    EXPECT_TRUE(SameRecords(Walk(file), expected)) << chunk_bytes;
    EXPECT_EQ(file.end(), LogReader::End::kClean);
    EXPECT_EQ(file.end_offset(), bytes.size());
  }
}

TEST_F(LogReaderTest, ATornTailEndsTheWalkAndAnEditBreaksIt) {
  WriteRecords(10);
  const std::string bytes = Read("log");
  LogReader torn(std::string_view(bytes).substr(0, bytes.size() - 5));
  EXPECT_EQ(Walk(torn).size(), 9u);
  EXPECT_EQ(torn.end(), LogReader::End::kTornTail);
  EXPECT_EQ(torn.torn_tail_bytes(), bytes.size() - 5 - torn.end_offset());
  std::string edited = bytes;
  edited[bytes.size() - 60] ^= 0x01;  // inside the last record's payload
  LogReader broken(edited);
  EXPECT_EQ(Walk(broken).size(), 9u);
  EXPECT_EQ(broken.end(), LogReader::End::kBroken);
}

TEST_F(LogReaderTest, VerifyFolderStreamsAndNamesTheBrokenRecord) {
  WriteRecords(300);
  auto report = VerifyFolder(folder_, *file_system_);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->records, 300u);
  // The writer may wake while the 300 are still being queued, so they are
  // written in one to five batches; each batch of 64 or more records is
  // anchored when durable, and Close anchors the rest.
  EXPECT_GE(report->anchors, 1u);
  EXPECT_LE(report->anchors, 300u / 64 + 1);
  std::string bytes = Read("log");
  bytes[kFileHeaderBytes + 10] ^= 0x01;  // record 1's payload
  Write("log", bytes);
  report = VerifyFolder(folder_, *file_system_);
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->ok);
  EXPECT_NE(report->problem.find("record 1 "), std::string::npos) << report->problem;
}

TEST_F(LogReaderTest, ShowKeepsOnlyTheNewestMatches) {
  WriteRecords(50);
  Filter filter;
  filter.key = "mpk_2";
  filter.limit = 3;
  auto shown = ShowLog(folder_ + "/log", *file_system_, filter);
  ASSERT_TRUE(shown.ok()) << shown.status().ToString();
  ASSERT_EQ(shown->entries.size(), 3u);
  EXPECT_EQ(shown->entries[0].rows, 41u);
  EXPECT_EQ(shown->entries[2].rows, 47u);
  EXPECT_FALSE(shown->broken);
}

// The index is made on first use, covers every record (across index files:
// more than kIndexSegmentRecords records), is extended by only the new
// records, and is made anew when it no longer matches the log.
TEST_F(LogReaderTest, TheKeyIndexFindsEveryRecordOfAKeyAndFollowsTheLog) {
  const size_t records = kIndexSegmentRecords + 500;
  WriteRecords(records, /*escaped=*/true);
  auto first = Lookup("mpk_2");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(first->walk.ok) << first->walk.problem;
  EXPECT_TRUE(first->rebuilt);
  EXPECT_EQ(first->records_walked, records);
  ASSERT_EQ(first->records.size(), records / 3);
  EXPECT_TRUE(std::filesystem::exists(folder_ + "/index/1.idx"));
  auto log = file_system_->OpenRandomAccess(folder_ + "/log").value();
  const LogStart start = ReadLogStart(Read("log")).value();
  for (const KeyRecordRef& ref : first->records) {
    auto payload = ReadIndexedRecord(*log, start, ref);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    ASSERT_EQ(DecodeEntry(*payload)->key, "mpk_2");
    ASSERT_EQ(ref.seq % 3, 0u);
  }
  // An escaped key is found too (its records decoded in full).
  auto escaped = Lookup("mpk_\"1\"");
  ASSERT_TRUE(escaped.ok());
  EXPECT_FALSE(escaped->rebuilt);
  EXPECT_EQ(escaped->records_walked, 0u);
  EXPECT_EQ(escaped->records.size(), (records + 1) / 3);
  // New records: only they are walked.
  WriteRecords(30);
  auto extended = Lookup("mpk_2");
  ASSERT_TRUE(extended.ok());
  EXPECT_FALSE(extended->rebuilt) << extended->note;
  EXPECT_EQ(extended->records_walked, 30u);
  EXPECT_EQ(extended->records.size(), records / 3 + 10);
  // A stray or damaged index file: made anew.
  Write("index/1.idx", "not an index");
  auto remade = Lookup("mpk_2");
  ASSERT_TRUE(remade.ok());
  EXPECT_TRUE(remade->rebuilt);
  EXPECT_NE(remade->note.find("not an audit index"), std::string::npos) << remade->note;
  EXPECT_EQ(remade->records, extended->records);
}

TEST_F(LogReaderTest, ARecordEditedUnderTheIndexIsCaughtWhereItLies) {
  WriteRecords(20);
  auto lookup = Lookup("mpk_1");
  ASSERT_TRUE(lookup.ok());
  ASSERT_FALSE(lookup->records.empty());
  const KeyRecordRef ref = lookup->records[2];
  const LogStart start = ReadLogStart(Read("log")).value();
  std::string bytes = Read("log");
  // The payload edited: its own hash no longer follows.
  bytes[ref.offset + 20] ^= 0x01;
  Write("log", bytes);
  auto log = file_system_->OpenRandomAccess(folder_ + "/log").value();
  auto edited = ReadIndexedRecord(*log, start, ref);
  ASSERT_FALSE(edited.ok());
  EXPECT_EQ(edited.status().code(), StatusCode::kCorruption);
  // The payload edited and its hash recomputed: its successor's link breaks.
  uint32_t length = 0;
  std::memcpy(&length, bytes.data() + ref.offset, 4);  // little endian, as the log
  const std::array<uint8_t, kHashBytes> previous = [&] {
    std::array<uint8_t, kHashBytes> hash{};
    std::memcpy(hash.data(), bytes.data() + ref.offset - kHashBytes, kHashBytes);
    return hash;
  }();
  const auto rehashed = ChainHash(previous, std::string_view(bytes).substr(ref.offset + 4, length));
  std::memcpy(bytes.data() + ref.offset + 4 + length, rehashed.data(), kHashBytes);
  Write("log", bytes);
  log = file_system_->OpenRandomAccess(folder_ + "/log").value();
  edited = ReadIndexedRecord(*log, start, ref);
  ASSERT_FALSE(edited.ok());
  EXPECT_NE(edited.status().message().find("after it"), std::string::npos)
      << edited.status().ToString();
  // An index offset that points elsewhere is refused.
  EXPECT_FALSE(ReadIndexedRecord(*log, start, {ref.seq, ref.offset + 1}).ok());
  EXPECT_FALSE(ReadIndexedRecord(*log, start, {ref.seq + 1, ref.offset}).ok());
}

TEST_F(LogReaderTest, OpeningFromTheIndexContinuesTheChain) {
  WriteRecords(100);
  ASSERT_TRUE(Lookup("mpk_0").ok());
  WriteRecords(5);  // after the index: walked when opening
  Options options;
  options.open_from_index = true;
  auto log = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  AuditEntry entry;
  entry.key = "local";
  entry.act = "incident.blast_radius";
  auto seq = (*log)->Append(entry);
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 106u);
  ASSERT_TRUE((*log)->Close().ok());
  auto report = VerifyFolder(folder_, *file_system_);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->records, 106u);
}

TEST_F(LogReaderTest, TheLogKeepsTheIndexCurrentAsItAppends) {
  Options options;
  options.anchor_interval = 64;
  options.index_update_records = 100;
  auto opened = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  AuditLog& log = **opened;
  // In pieces, as a server's requests come: each piece durable before the next.
  for (size_t piece = 0; piece < 30; ++piece) {
    AppendRecords(log, 100, false, piece * 100);
  }
  const AuditLog::IndexState state = WaitIndexed(log, 2900);
  EXPECT_GE(state.indexed_seq, 2900u) << state.problem;
  EXPECT_GT(state.updates, 1u);
  EXPECT_TRUE(state.problem.empty()) << state.problem;
  // A reader while the log is open walks only what the indexer has not
  // reached: fewer than an interval's records, not the 3,000.
  auto lookup = Lookup("mpk_1");
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  ASSERT_TRUE(lookup->walk.ok) << lookup->walk.problem;
  EXPECT_FALSE(lookup->rebuilt) << lookup->note;
  EXPECT_LE(lookup->records_walked, 100u);
  ASSERT_EQ(lookup->records.size(), 1000u);
  for (size_t record_idx = 0; record_idx < lookup->records.size(); ++record_idx) {
    ASSERT_EQ(lookup->records[record_idx].seq, 3 * record_idx + 2);
  }
  // At Close the indexer covers the last records: nothing left to walk.
  AppendRecords(log, 7, false, 3000);
  ASSERT_TRUE(log.Close().ok());
  EXPECT_EQ(log.index_state().indexed_seq, 3007u) << log.index_state().problem;
  auto closed = Lookup("mpk_1");
  ASSERT_TRUE(closed.ok());
  EXPECT_FALSE(closed->rebuilt) << closed->note;
  EXPECT_EQ(closed->records_walked, 0u);
  EXPECT_EQ(closed->records.size(), 1002u);
}

TEST_F(LogReaderTest, TheLogCatchesTheIndexUpAtOpenAndRemakesADamagedOne) {
  WriteRecords(500);  // by a log that kept no index: none yet
  Options options;
  options.index_update_records = 100;
  auto opened = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  AuditLog& log = **opened;
  // At Open, in the background, the whole log.
  AuditLog::IndexState state = WaitIndexed(log, 500, 1);
  EXPECT_EQ(state.indexed_seq, 500u) << state.problem;
  EXPECT_EQ(state.rebuilds, 1u);
  // A damaged index file (a crash, a disk error, an edit): the index is a
  // cache, checked against the chain, so the next update makes it anew.
  Write("index/0.idx", "not an index");
  AppendRecords(log, 150, false, 500);
  state = WaitIndexed(log, 600, 2);
  EXPECT_EQ(state.rebuilds, 2u) << state.problem;
  auto lookup = Lookup("mpk_0");
  ASSERT_TRUE(lookup.ok());
  EXPECT_FALSE(lookup->rebuilt) << lookup->note;
  EXPECT_EQ(lookup->records.size(), 167u + 50u);
  ASSERT_TRUE(log.Close().ok());
}

TEST_F(LogReaderTest, AfterAPruneTheLogRemakesTheIndexFromTheNewBase) {
  auto key = LoadSigningKey(*file_system_, folder_ + "-signing.key", true);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  Options options;
  options.signing_key = std::make_shared<const SigningKey>(*key);
  options.index_update_records = 100;
  const int64_t start_ms = clock_->NowMs();
  auto opened = AuditLog::Open(folder_, file_system_, clock_, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  AuditLog& log = **opened;
  for (size_t piece = 0; piece < 3; ++piece) {
    AppendRecords(log, 100, false, piece * 100);
  }
  ASSERT_EQ(WaitIndexed(log, 300, 1).indexed_seq, 300u) << log.index_state().problem;
  // Records 1..150 are older than the cut.
  auto pruned = log.PruneBefore(start_ms + 10 * 150 + 5);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  ASSERT_EQ(*pruned, 150u);
  const AuditLog::IndexState state = WaitIndexed(log, 300, 2);
  EXPECT_EQ(state.rebuilds, 2u) << state.problem;
  WalkOptions walk;
  walk.public_key = &key->public_key;
  auto lookup = LookupKey(folder_, "mpk_1", *file_system_, walk);
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  ASSERT_TRUE(lookup->walk.ok) << lookup->walk.problem;
  EXPECT_FALSE(lookup->rebuilt) << lookup->note;
  ASSERT_EQ(lookup->records.size(), 50u);
  EXPECT_EQ(lookup->records.front().seq, 152u);
  ASSERT_TRUE(log.Close().ok());
}

TEST_F(LogReaderTest, AnIndexBeingUpdatedElsewhereIsWaitedForOrLeftToIt) {
  WriteRecords(50);
  ASSERT_TRUE(std::filesystem::create_directories(folder_ + "/index"));
  const int held = ::open((folder_ + "/index/LOCK").c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(held, 0);
  ASSERT_EQ(::flock(held, LOCK_EX), 0);
  // The appender's indexer does not wait: the holder is updating the index.
  auto skipped = TryUpdateIndex(folder_, *file_system_, WalkOptions{});
  EXPECT_EQ(skipped.status().code(), StatusCode::kUnavailable);
  // A reader waits for the holder, then goes on.
  std::thread release([held] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::close(held);
  });
  auto lookup = Lookup("mpk_2");
  release.join();
  ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
  EXPECT_EQ(lookup->records.size(), 16u);
  auto updated = TryUpdateIndex(folder_, *file_system_, WalkOptions{});
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ(updated->records_walked, 0u);
  EXPECT_EQ(updated->indexed_seq, 50u);
}

TEST(AuditIndexTest, DecodingNeverTrustsACount) {
  IndexSegment segment;
  segment.first_seq = 1;
  segment.last_seq = 3;
  segment.last_end_offset = 500;
  segment.keys = {{"mpk_a", {{1, 16}, {3, 200}}}, {"mpk_b", {{2, 100}}}};
  const std::string bytes = EncodeIndexSegment(segment);
  auto decoded = DecodeIndexSegment(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(EncodeIndexSegment(*decoded), bytes);
  auto only = DecodeIndexSegment(bytes, "mpk_b");
  ASSERT_TRUE(only.ok());
  ASSERT_EQ(only->keys.size(), 1u);
  EXPECT_EQ(only->keys[0].second[0].offset, 100u);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(DecodeIndexSegment(bytes.substr(0, cut)).ok()) << cut;
  }
  std::string huge = bytes;
  huge[kIndexHeaderBytes + 4 + 5] = '\xff';  // mpk_a's record count
  EXPECT_EQ(DecodeIndexSegment(huge).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace minpanel::audit
