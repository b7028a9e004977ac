// Retention per event name (Engine::DropEventsBefore; src/store/README.md,
// "Erasure"): only the named events older than the bound are hidden, from
// the memtable, the flushing memtable and segments alike, through a restart
// with and without a flush (log replay) and the purge, which drops a
// segment left without rows; later appends are kept; and the record's codec.
#include <set>

#include "core/time_units.h"
#include "store/deletion.h"
#include "store/manifest.h"
#include "store/segment.h"
#include "store/store_test_util.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 3;

class RetentionTest : public StoreTest {
 protected:
  // Event `id`: "view" when even, else "buy"; id % 4 days old.
  static Event EventNumber(uint64_t id) {
    return MakeEvent(id % 2 == 0 ? "view" : "buy",
                     kTestNowMs - static_cast<int64_t>(id % 4) * kDayMs + static_cast<int64_t>(id),
                     id % 7, id);
  }
  void AppendRange(uint64_t first, uint64_t count) {
    std::vector<Event> events;
    for (uint64_t id = first; id < first + count; ++id) {
      events.push_back(EventNumber(id));
    }
    const auto result = engine_->Append(MakeBatch(kProject, std::move(events)));
    ASSERT_TRUE(result.ok()) << result.status().ToString();
  }
  std::set<uint64_t> Ids() {
    std::set<uint64_t> ids;
    for (const Event& event : ScanAll(kProject)) {
      ids.insert(event.insert_id.low);
    }
    return ids;
  }
  // The same ids through Snapshot's segments (the query engine's path).
  uint64_t SnapshotRows() {
    auto snapshot = engine_->Snapshot(kProject);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status().ToString();
    uint64_t rows = 0;
    for (const auto& segment : *snapshot) {
      rows += segment->summary().row_count;
    }
    return rows;
  }
  static std::set<uint64_t> Expected(uint64_t count, int64_t bound_ms) {
    std::set<uint64_t> ids;
    for (uint64_t id = 0; id < count; ++id) {
      const Event event = EventNumber(id);
      if (event.name != "view" || event.time_ms >= bound_ms) {
        ids.insert(id);
      }
    }
    return ids;
  }
};

TEST_F(RetentionTest, DropEventsBeforeHidesOnlyTheNamedOlderEvents) {
  ASSERT_TRUE(Open().ok());
  AppendRange(0, 400);
  Reopen();               // the first 400 in segments
  AppendRange(400, 200);  // in the memtable
  const int64_t bound_ms = kTestNowMs - 2 * kDayMs + 1'000;
  ASSERT_TRUE(engine_->DropEventsBefore(kProject, "view", bound_ms).ok());
  std::set<uint64_t> expected = Expected(600, bound_ms);
  ASSERT_LT(expected.size(), 600u);
  EXPECT_EQ(Ids(), expected);
  EXPECT_EQ(SnapshotRows(), expected.size());
  // An old "view" appended after the drop is kept: a drop is a one-off act.
  ASSERT_TRUE(
      engine_->Append(MakeBatch(kProject, {MakeEvent("view", kTestNowMs - 9 * kDayMs, 1, 90'000)}))
          .ok());
  expected.insert(90'000);
  EXPECT_EQ(Ids(), expected);
  Reopen();
  EXPECT_EQ(Ids(), expected);
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  EXPECT_EQ(Ids(), expected);
  EXPECT_EQ(SnapshotRows(), expected.size());
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
}

TEST_F(RetentionTest, ADropReplayedFromTheLogHidesTheSameRows) {
  options_.flush_on_close = false;
  ASSERT_TRUE(Open().ok());
  AppendRange(0, 300);
  const int64_t bound_ms = kTestNowMs - kDayMs;
  ASSERT_TRUE(engine_->DropEventsBefore(kProject, "view", bound_ms).ok());
  AppendRange(300, 100);  // after the drop: every one kept
  std::set<uint64_t> expected = Expected(300, bound_ms);
  for (uint64_t id = 300; id < 400; ++id) {
    expected.insert(id);
  }
  EXPECT_EQ(Ids(), expected);
  Reopen();  // the log replays the drop between the appends
  EXPECT_EQ(Ids(), expected);
}

TEST_F(RetentionTest, ASegmentOfOnlyDroppedEventsIsRemovedByThePurge) {
  ASSERT_TRUE(Open().ok());
  std::vector<Event> old_views;
  for (uint64_t id = 0; id < 100; ++id) {
    old_views.push_back(
        MakeEvent("view", kTestNowMs - 30 * kDayMs + static_cast<int64_t>(id), id % 5, id));
  }
  ASSERT_TRUE(engine_->Append(MakeBatch(kProject, old_views)).ok());
  AppendRange(1'000, 10);  // other days
  Reopen();
  const uint64_t segments_before = engine_->GetStats().segments;
  ASSERT_TRUE(engine_->DropEventsBefore(kProject, "view", kTestNowMs - 20 * kDayMs).ok());
  ASSERT_TRUE(engine_->PurgeDeleted().ok());
  EXPECT_EQ(engine_->GetStats().segments, segments_before - 1);
  EXPECT_EQ(Ids().size(), 10u);
}

TEST_F(RetentionTest, BadNamesAreRefusedByName) {
  ASSERT_TRUE(Open().ok());
  const Status empty = engine_->DropEventsBefore(kProject, "", kTestNowMs);
  EXPECT_EQ(empty.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.message().find("event_name"), std::string::npos);
  const Status long_name =
      engine_->DropEventsBefore(kProject, std::string(kDeletionEventNameBytesMax + 1, 'x'), 0);
  EXPECT_EQ(long_name.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(long_name.message().find("kDeletionEventNameBytesMax"), std::string::npos);
}

TEST(NamedDropFormatTest, PayloadRoundTripsAndRejectsDamage) {
  Deletion drop;
  drop.project_id = 4;
  drop.stored_at_ms = kTestNowMs;
  drop.drop_before_ms = kTestNowMs - kDayMs;
  drop.event_name = "Page view";
  const std::string bytes = EncodeDeletionPayload(drop);
  auto decoded = DecodeDeletionPayload(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, drop);
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_EQ(DecodeDeletionPayload(bytes.substr(0, length)).status().code(),
              StatusCode::kCorruption);
  }
  Manifest manifest;
  drop.position = LogPosition{2, 40};
  manifest.deletions.push_back(drop);
  auto round = DecodeManifest(EncodeManifest(manifest), "MANIFEST");
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  ASSERT_EQ(round->deletions.size(), 1u);
  EXPECT_EQ(round->deletions[0], drop);
}

}  // namespace
}  // namespace minpanel::store
