#include "store/dedup_index.h"

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <set>
#include <utility>

namespace minpanel::store {
namespace {

constexpr int64_t kNowMs = 1'700'000'000'000;
constexpr int64_t kWindowMs = 60'000;

TEST(DedupIndexTest, RemembersWithinTheWindowAndForgetsAfter) {
  DedupIndex index(100, kWindowMs);
  index.Insert(1, Id128{0, 7}, kNowMs);
  EXPECT_TRUE(index.Contains(1, Id128{0, 7}));
  EXPECT_FALSE(index.Contains(2, Id128{0, 7})) << "the project is part of the key";
  EXPECT_FALSE(index.Contains(1, Id128{7, 0}));

  index.Expire(kNowMs + kWindowMs - 1);
  EXPECT_TRUE(index.Contains(1, Id128{0, 7}));
  // Expiry has one-second granularity and errs on remembering longer.
  index.Expire(kNowMs + kWindowMs + 1000);
  EXPECT_FALSE(index.Contains(1, Id128{0, 7}));
  EXPECT_EQ(index.size(), 0u);
}

TEST(DedupIndexTest, EvictsTheOldestWhenFull) {
  DedupIndex index(3, kWindowMs);
  for (uint64_t id = 1; id <= 5; ++id) {
    index.Insert(1, Id128{0, id}, kNowMs);
  }
  EXPECT_EQ(index.size(), 3u);
  EXPECT_FALSE(index.Contains(1, Id128{0, 1}));
  EXPECT_FALSE(index.Contains(1, Id128{0, 2}));
  for (uint64_t id = 3; id <= 5; ++id) {
    EXPECT_TRUE(index.Contains(1, Id128{0, id}));
  }
}

TEST(DedupIndexTest, ZeroEntriesMaxRemembersNothing) {
  DedupIndex index(0, kWindowMs);
  index.Insert(1, Id128{0, 1}, kNowMs);
  EXPECT_FALSE(index.Contains(1, Id128{0, 1}));
}

// Exercises growth, rehashing and backward-shift deletion against a model.
TEST(DedupIndexTest, MatchesASimpleModelUnderChurn) {
  constexpr size_t kEntriesMax = 5000;
  DedupIndex index(kEntriesMax, kWindowMs);
  std::deque<std::pair<uint32_t, Id128>> model_order;
  std::set<std::pair<uint32_t, Id128>> model;
  std::mt19937_64 random(42);
  for (int step = 0; step < 60'000; ++step) {
    // A small id space makes repeats (already present) common.
    const uint32_t project = static_cast<uint32_t>(random() % 3);
    const Id128 id{random() % 4, random() % 8000};
    const bool present = model.count({project, id}) > 0;
    ASSERT_EQ(index.Contains(project, id), present) << step;
    if (present) {
      continue;
    }
    index.Insert(project, id, kNowMs);
    model.insert({project, id});
    model_order.emplace_back(project, id);
    if (model_order.size() > kEntriesMax) {
      model.erase(model_order.front());
      model_order.pop_front();
    }
    ASSERT_EQ(index.size(), model.size());
  }
  for (const auto& [project, id] : model_order) {
    EXPECT_TRUE(index.Contains(project, id));
  }
}

TEST(DedupIndexTest, MemoryPerEntryIsAboutThirtyBytes) {
  constexpr size_t kEntries = 1 << 20;
  DedupIndex index(kEntries, kWindowMs);
  for (uint64_t id = 0; id < kEntries; ++id) {
    index.Insert(1, Id128{id * 0x9E3779B97F4A7C15ULL, id}, kNowMs);
  }
  const double bytes_per_entry = static_cast<double>(index.MemoryBytes()) / kEntries;
  std::printf("dedup index: %.1f bytes per entry at %zu entries\n", bytes_per_entry, kEntries);
  EXPECT_LE(bytes_per_entry, 32.0);
}

}  // namespace
}  // namespace minpanel::store
