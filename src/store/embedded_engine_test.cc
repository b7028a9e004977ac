#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "store/store_test_util.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 7;
constexpr int64_t kTimeMs = kTestNowMs - 1000;

class EmbeddedEngineTest : public StoreTest {};

TEST_F(EmbeddedEngineTest, EveryValueTypeAndProfileOperationSurvivesReopen) {
  ASSERT_TRUE(Open().ok());
  Event event = MakeEvent("Purchase", kTimeMs, 1, 1);
  event.properties = {{"null", Value::Null()},          {"bool", Value::Bool(true)},
                      {"int", Value::Int(-42)},         {"double", Value::Double(2.5)},
                      {"string", Value::String("eur")}, {"list", Value::List({"a", "b"})}};
  AppendBatch batch = MakeBatch(kProject, {event});
  for (uint8_t operation = 1; operation <= 8; ++operation) {
    ProfileUpdate update;
    update.subject = Id128{1, operation};
    update.group_key = operation == 8 ? "company" : "";
    update.time_ms = kTimeMs;
    update.operation = static_cast<ProfileOperation>(operation);
    update.properties = {{"plan", Value::String("pro")}};
    batch.profile_updates.push_back(update);
  }
  const std::vector<ProfileUpdate> updates = batch.profile_updates;
  const auto result = engine_->Append(batch);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->events_stored, 1u);
  EXPECT_EQ(result->profile_updates_stored, 8u);

  Reopen();
  // Scans return properties sorted by key.
  std::sort(event.properties.begin(), event.properties.end(),
            [](const Property& left, const Property& right) { return left.key < right.key; });
  EXPECT_EQ(ScanAll(kProject), std::vector<Event>{event});
  std::vector<ProfileUpdate> scanned;
  ASSERT_TRUE(engine_
                  ->ScanProfiles(kProject,
                                 [&](const ProfileUpdate& update) {
                                   scanned.push_back(update);
                                   return true;
                                 })
                  .ok());
  EXPECT_EQ(scanned, updates);
  EXPECT_EQ(engine_->GetStats().events, 1u);
  EXPECT_EQ(engine_->GetStats().profile_updates, 8u);
}

TEST_F(EmbeddedEngineTest, DuplicatesWithinBatchAndAcrossBatchesAreDropped) {
  ASSERT_TRUE(Open().ok());
  const auto first = engine_->Append(
      MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1), MakeEvent("b", kTimeMs, 1, 1),
                           MakeEvent("c", kTimeMs, 1, 2)}));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->events_stored, 2u);
  EXPECT_EQ(first->events_duplicate, 1u);

  const auto second = engine_->Append(
      MakeBatch(kProject, {MakeEvent("d", kTimeMs, 1, 2), MakeEvent("e", kTimeMs, 1, 3)}));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->events_stored, 1u);
  EXPECT_EQ(second->events_duplicate, 1u);

  // The same insert id in another project is a different event.
  const auto other = engine_->Append(MakeBatch(kProject + 1, {MakeEvent("f", kTimeMs, 1, 1)}));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->events_stored, 1u);

  std::vector<std::string> names;
  for (const Event& event : ScanAll(kProject)) {
    names.push_back(event.name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a", "c", "e"}));
  EXPECT_EQ(engine_->GetStats().events_duplicate, 2u);
  EXPECT_EQ(engine_->GetStats().events, 4u);
}

TEST_F(EmbeddedEngineTest, AllDuplicateBatchWritesNothing) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).ok());
  const uint64_t log_bytes = engine_->GetStats().log_bytes;
  const auto again = engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->events_duplicate, 1u);
  EXPECT_EQ(engine_->GetStats().log_bytes, log_bytes);
}

TEST_F(EmbeddedEngineTest, DedupSurvivesReopen) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).ok());
  Reopen();
  EXPECT_EQ(engine_->GetStats().dedup_entries, 1u);
  const auto again = engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->events_duplicate, 1u);
  EXPECT_EQ(ScanAll(kProject).size(), 1u);
}

TEST_F(EmbeddedEngineTest, DedupWindowExpires) {
  options_.dedup_window_ms = 60'000;
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).ok());
  clock_->Advance(59'000);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}))->events_duplicate,
            1u);
  clock_->Advance(2'000);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}))->events_stored,
            1u);
  // The second copy is remembered from its own store time, also after a reopen.
  Reopen();
  EXPECT_EQ(engine_->GetStats().dedup_entries, 1u);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}))->events_duplicate,
            1u);
  clock_->Advance(61'000);
  Reopen();
  EXPECT_EQ(engine_->GetStats().dedup_entries, 0u);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}))->events_stored,
            1u);
  EXPECT_EQ(ScanAll(kProject).size(), 3u);
}

TEST_F(EmbeddedEngineTest, DedupIndexIsBounded) {
  options_.dedup_entries_max = 3;
  ASSERT_TRUE(Open().ok());
  for (uint64_t id = 1; id <= 5; ++id) {
    ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, id)})).ok());
  }
  EXPECT_EQ(engine_->GetStats().dedup_entries, 3u);
  // Ids 1 and 2 were forgotten first, so they are stored again; 5 is still known.
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 5)}))->events_stored,
            0u);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}))->events_stored,
            1u);
  Reopen();
  EXPECT_EQ(engine_->GetStats().dedup_entries, 3u);
}

TEST_F(EmbeddedEngineTest, DiskFullFailsTheBatchAndStoresNothing) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("kept", kTimeMs, 1, 1)})).ok());
  const Stats before = engine_->GetStats();
  fault_file_system_->FailWritesAfterBytes(10);  // a partial record reaches the file
  const auto failed = engine_->Append(
      MakeBatch(kProject, {MakeEvent("lost", kTimeMs, 1, 2), MakeEvent("lost", kTimeMs, 1, 3)}));
  EXPECT_EQ(failed.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ScanAll(kProject).size(), 1u);
  EXPECT_EQ(engine_->GetStats().events, before.events);
  EXPECT_EQ(engine_->GetStats().dedup_entries, 1u) << "failed ids must not be remembered";
  EXPECT_EQ(std::filesystem::file_size(LogPath(1)), before.log_bytes) << "partial write is cut";
}

TEST_F(EmbeddedEngineTest, RecoversWhenSpaceReturns) {
  ASSERT_TRUE(Open().ok());
  fault_file_system_->FailWritesAfterBytes(0);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).status().code(),
            StatusCode::kResourceExhausted);
  fault_file_system_->Reset();
  const auto retried = engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}));
  ASSERT_TRUE(retried.ok()) << retried.status().ToString();
  EXPECT_EQ(retried->events_stored, 1u) << "the failed attempt left no dedup entry";
  Reopen();
  EXPECT_EQ(ScanAll(kProject).size(), 1u);
  EXPECT_TRUE(notes_.empty());
}

TEST_F(EmbeddedEngineTest, SyncFailureIsNotAcknowledged) {
  ASSERT_TRUE(Open().ok());
  fault_file_system_->FailSyncs(true);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).status().code(),
            StatusCode::kIoError);
  EXPECT_TRUE(ScanAll(kProject).empty());
  fault_file_system_->Reset();
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("b", kTimeMs, 1, 1)})).ok());
  Reopen();
  const std::vector<Event> events = ScanAll(kProject);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].name, "b");
}

TEST_F(EmbeddedEngineTest, FailedTruncateKeepsRefusingAppendsUntilItSucceeds) {
  ASSERT_TRUE(Open().ok());
  fault_file_system_->FailSyncs(true);
  fault_file_system_->FailTruncate(true);
  EXPECT_FALSE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).ok());
  fault_file_system_->FailSyncs(false);
  // The unsynced bytes are still in the file: nothing may be appended after them.
  const auto refused = engine_->Append(MakeBatch(kProject, {MakeEvent("b", kTimeMs, 1, 2)}));
  EXPECT_EQ(refused.status().code(), StatusCode::kIoError);
  fault_file_system_->FailTruncate(false);
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("c", kTimeMs, 1, 3)})).ok());
  Reopen();
  const std::vector<Event> events = ScanAll(kProject);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].name, "c");
  EXPECT_TRUE(notes_.empty());
}

TEST_F(EmbeddedEngineTest, ConcurrentAppendsAreGroupCommitted) {
  ASSERT_TRUE(Open().ok());
  constexpr int kThreads = 8;
  constexpr int kBatchesPerThread = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int batch_idx = 0; batch_idx < kBatchesPerThread; ++batch_idx) {
        const uint64_t id = static_cast<uint64_t>(thread_idx * kBatchesPerThread + batch_idx);
        // Every thread also repeats id 0, so exactly one copy may be stored.
        if (!engine_
                 ->Append(MakeBatch(
                     kProject, {MakeEvent("e", kTimeMs, 1, id + 1), MakeEvent("e", kTimeMs, 1, 0)}))
                 .ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  const Stats stats = engine_->GetStats();
  EXPECT_EQ(stats.events, static_cast<uint64_t>(kThreads * kBatchesPerThread + 1));
  EXPECT_LT(stats.fsyncs, static_cast<uint64_t>(kThreads * kBatchesPerThread));
  uint64_t histogram_total = 0;
  for (const uint64_t count : stats.sync_latency_counts) {
    histogram_total += count;
  }
  EXPECT_EQ(histogram_total, stats.fsyncs);
  Reopen();
  EXPECT_EQ(ScanAll(kProject).size(), static_cast<size_t>(kThreads * kBatchesPerThread + 1));
}

TEST_F(EmbeddedEngineTest, ScanFiltersByProjectTimeNameSubject) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(
      engine_
          ->Append(MakeBatch(kProject, {MakeEvent("view", 1000, 1, 1), MakeEvent("buy", 2000, 1, 2),
                                        MakeEvent("view", 3000, 2, 3)}))
          .ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject + 1, {MakeEvent("view", 2000, 1, 4)})).ok());

  ScanRequest request;
  request.project_id = kProject;
  EXPECT_EQ(ScanWith(request).size(), 3u);
  request.from_ms = 2000;
  request.to_ms = 3000;
  ASSERT_EQ(ScanWith(request).size(), 1u);
  EXPECT_EQ(ScanWith(request)[0].name, "buy");

  request = ScanRequest{};
  request.project_id = kProject;
  request.event_names = {"view"};
  EXPECT_EQ(ScanWith(request).size(), 2u);
  request.subject = Id128{0, 2};
  ASSERT_EQ(ScanWith(request).size(), 1u);
  EXPECT_EQ(ScanWith(request)[0].time_ms, 3000);

  request = ScanRequest{};
  request.project_id = kProject + 1;
  EXPECT_EQ(ScanWith(request).size(), 1u);
}

TEST_F(EmbeddedEngineTest, ScanStopsWhenVisitReturnsFalse) {
  ASSERT_TRUE(Open().ok());
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, id)})).ok());
  }
  int visited = 0;
  ScanRequest request;
  request.project_id = kProject;
  ASSERT_TRUE(engine_->Scan(request, [&](const Event&) { return ++visited < 2; }).ok());
  EXPECT_EQ(visited, 2);
}

TEST_F(EmbeddedEngineTest, ScanSeesASnapshotTakenAtTheCall) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).ok());
  ScanRequest request;
  request.project_id = kProject;
  int visited = 0;
  ASSERT_TRUE(
      engine_
          ->Scan(request,
                 [&](const Event&) {
                   ++visited;
                   EXPECT_TRUE(
                       engine_->Append(MakeBatch(kProject, {MakeEvent("b", kTimeMs, 1, 2)})).ok());
                   return true;
                 })
          .ok());
  EXPECT_EQ(visited, 1);
  EXPECT_EQ(ScanAll(kProject).size(), 2u);
}

TEST_F(EmbeddedEngineTest, LogRollsOverAtSizeLimit) {
  options_.log_file_bytes_max = 1024;
  ASSERT_TRUE(Open().ok());
  for (uint64_t id = 1; id <= 40; ++id) {
    ASSERT_TRUE(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, id)})).ok());
  }
  EXPECT_TRUE(std::filesystem::exists(LogPath(2)));
  EXPECT_TRUE(std::filesystem::exists(LogPath(3)));
  EXPECT_LT(std::filesystem::file_size(LogPath(1)), 1024u + 200u);
  Reopen();
  EXPECT_EQ(ScanAll(kProject).size(), 40u);
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}))->events_duplicate,
            1u);
  EXPECT_TRUE(notes_.empty());
}

TEST_F(EmbeddedEngineTest, OversizedBatchIsResourceExhausted) {
  ASSERT_TRUE(Open().ok());
  Event big = MakeEvent("big", kTimeMs, 1, 1);
  big.properties = {{"blob", Value::String(std::string(kLogRecordBytesMax, 'x'))}};
  const auto result = engine_->Append(MakeBatch(kProject, {big}));
  EXPECT_EQ(result.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(result.status().message().find("kLogRecordBytesMax"), std::string::npos);
}

TEST_F(EmbeddedEngineTest, AppendAfterCloseIsUnavailable) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Close().ok());
  ASSERT_TRUE(engine_->Close().ok()) << "Close is idempotent";
  EXPECT_EQ(engine_->Append(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)})).status().code(),
            StatusCode::kUnavailable);
}

TEST_F(EmbeddedEngineTest, InvalidOptionsAreRejected) {
  options_.file_system = nullptr;
  EXPECT_EQ(Open().code(), StatusCode::kInvalidArgument);
}

// A child process appends and reports each acknowledged batch through a
// pipe; the parent kills it mid-stream and checks that the log holds every
// acknowledged batch exactly once.
TEST_F(EmbeddedEngineTest, SigkillNeverLosesOrDuplicatesAcknowledgedBatches) {
  constexpr int kRounds = 3;
  uint64_t next_id = 1;
  std::set<uint64_t> acknowledged;
  for (int round = 0; round < kRounds; ++round) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(pipe_fds[0]);
      Options options = options_;
      options.file_system = NewPosixFileSystem();
      options.on_recovery_note = nullptr;
      auto engine = OpenEmbeddedEngine(options);
      if (!engine.ok()) {
        ::_exit(1);
      }
      for (uint64_t id = next_id;; ++id) {
        // Each batch resends the previous id too, so a lost dedup entry would show.
        if (!(*engine)
                 ->Append(MakeBatch(kProject, {MakeEvent("k", kTimeMs, 1, id),
                                               MakeEvent("k", kTimeMs, 1, id - 1)}))
                 .ok()) {
          ::_exit(2);
        }
        (void)!::write(pipe_fds[1], &id, sizeof(id));
      }
    }
    ::close(pipe_fds[1]);
    uint64_t id = 0;
    for (int read_idx = 0; read_idx < 200 + round * 50; ++read_idx) {
      ASSERT_EQ(::read(pipe_fds[0], &id, sizeof(id)), static_cast<ssize_t>(sizeof(id)));
      acknowledged.insert(id);
    }
    ::kill(child, SIGKILL);
    int child_status = 0;
    ::waitpid(child, &child_status, 0);
    while (::read(pipe_fds[0], &id, sizeof(id)) == static_cast<ssize_t>(sizeof(id))) {
      acknowledged.insert(id);
    }
    ::close(pipe_fds[0]);
    next_id = *acknowledged.rbegin() + 100;

    ASSERT_TRUE(Open().ok());
    std::multiset<uint64_t> stored;
    for (const Event& event : ScanAll(kProject)) {
      stored.insert(event.insert_id.low);
    }
    for (const uint64_t acked : acknowledged) {
      EXPECT_EQ(stored.count(acked), 1u) << acked;
    }
    EXPECT_EQ(std::set<uint64_t>(stored.begin(), stored.end()).size(), stored.size());
    ASSERT_TRUE(engine_->Close().ok());
    engine_.reset();
  }
}

// The memtable's byte count is what the allocator gave its events (heap
// blocks at their real sizes, the property arrays at their capacity, the
// Event objects at the memtable vector's capacity), not what their fields
// hold: compared here with glibc's own count of allocated bytes, so that
// memtable_bytes_max x kMemtableHardLimitFactor bounds what the memtable
// really takes.
TEST_F(EmbeddedEngineTest, MemtableBytesAreWhatTheAllocatorGave) {
  options_.memtable_rows_max = 1'000'000;
  options_.memtable_bytes_max = 4ULL << 30;
  ASSERT_TRUE(Open().ok());
  constexpr size_t kBatches = 40;
  constexpr size_t kEventsPerBatch = 500;
  // Generated values of the lengths ingest makes: short keys (inline),
  // longer keys and values (heap), a list, numbers; properties appended one
  // by one, as decoders do, so the arrays have spare capacity.
  auto make_batch = [](size_t batch_idx) {
    std::vector<Event> events;
    for (size_t event_idx = 0; event_idx < kEventsPerBatch; ++event_idx) {
      const uint64_t id = batch_idx * kEventsPerBatch + event_idx;
      Event event = MakeEvent("Page Viewed In The Generated App", kTimeMs, id % 97, id);
      event.properties.clear();
      for (size_t property_idx = 0; property_idx < 18; ++property_idx) {
        const std::string key = property_idx % 2 == 0
                                    ? "k" + std::to_string(property_idx)
                                    : "generated_property_key_" + std::to_string(property_idx);
        event.properties.push_back(
            {key, Value::String("generated value " + std::to_string(id * 31 + property_idx))});
      }
      event.properties.push_back({"count", Value::Int(static_cast<int64_t>(id))});
      event.properties.push_back({"tags", Value::List({"alpha-generated-tag", "b"})});
      events.push_back(std::move(event));
    }
    return events;
  };
  // Warm up the engine's own buffers (log write buffer, queue) first.
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, make_batch(kBatches))).ok());
  const uint64_t memtable_before = engine_->GetStats().memtable_bytes;
  const size_t allocated_before = mallinfo2().uordblks;
  for (size_t batch_idx = 0; batch_idx < kBatches; ++batch_idx) {
    ASSERT_TRUE(engine_->Append(MakeBatch(kProject, make_batch(batch_idx))).ok());
  }
  const double allocated = static_cast<double>(mallinfo2().uordblks - allocated_before);
  const double counted = static_cast<double>(engine_->GetStats().memtable_bytes - memtable_before);
  // The rest of the growth is the de-duplication index (about 1 MB here) and
  // glibc's 8-byte chunk headers, which malloc_usable_size leaves out.
  EXPECT_GT(counted, 0.85 * allocated) << "counted " << counted << ", allocated " << allocated;
  EXPECT_LT(counted, 1.05 * allocated) << "counted " << counted << ", allocated " << allocated;
  RecordProperty("memtable_bytes_per_event",
                 std::to_string(counted / (kBatches * kEventsPerBatch)));
  RecordProperty("allocated_bytes_per_event",
                 std::to_string(allocated / (kBatches * kEventsPerBatch)));
}

}  // namespace
}  // namespace minpanel::store

namespace minpanel::store {
namespace {

// Collects AppendAsync outcomes and lets the test wait for all of them.
class Outcomes {
 public:
  AppendCallback Callback() {
    return [this](Result<AppendResult> result) {
      std::lock_guard lock(mutex_);
      results_.push_back(std::move(result));
      cv_.notify_all();
    };
  }
  std::vector<Result<AppendResult>> Wait(size_t count) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return results_.size() >= count; });
    return results_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Result<AppendResult>> results_;
};

class EmbeddedEngineAsyncTest : public StoreTest {};

TEST_F(EmbeddedEngineAsyncTest, CallbackReportsWhatWasStoredAndDropped) {
  ASSERT_TRUE(Open().ok());
  Outcomes outcomes;
  for (uint64_t batch_idx = 0; batch_idx < 20; ++batch_idx) {
    // Every batch repeats insert id 1: only the first one stores it.
    engine_->AppendAsync(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1),
                                              MakeEvent("b", kTimeMs, 1, batch_idx + 2)}),
                         outcomes.Callback());
  }
  const auto results = outcomes.Wait(20);
  size_t stored = 0;
  size_t duplicates = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    stored += result->events_stored;
    duplicates += result->events_duplicate;
  }
  EXPECT_EQ(stored, 21U);
  EXPECT_EQ(duplicates, 19U);
  Reopen();
  EXPECT_EQ(ScanAll(kProject).size(), 21U);
}

TEST_F(EmbeddedEngineAsyncTest, DiskFullIsReportedToTheCallbackAndStoresNothing) {
  ASSERT_TRUE(Open().ok());
  fault_file_system_->FailWritesAfterBytes(0);
  Outcomes outcomes;
  engine_->AppendAsync(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}), outcomes.Callback());
  const auto results = outcomes.Wait(1);
  EXPECT_EQ(results[0].status().code(), StatusCode::kResourceExhausted);
  fault_file_system_->Reset();
  EXPECT_EQ(ScanAll(kProject).size(), 0U);
}

TEST_F(EmbeddedEngineAsyncTest, AfterCloseTheCallbackSaysUnavailable) {
  ASSERT_TRUE(Open().ok());
  ASSERT_TRUE(engine_->Close().ok());
  Outcomes outcomes;
  engine_->AppendAsync(MakeBatch(kProject, {MakeEvent("a", kTimeMs, 1, 1)}), outcomes.Callback());
  EXPECT_EQ(outcomes.Wait(1)[0].status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace minpanel::store
