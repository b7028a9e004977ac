#include "store/dedup_index.h"
#include "store/mix.h"

#include <algorithm>
#include <bit>
#include <random>

namespace minpanel::store {
namespace {

constexpr size_t kRingCapacityMin = 1024;
// Linear probing stays short below this load; the table is sized from it.
constexpr size_t kTableLoadNumerator = 7;
constexpr size_t kTableLoadDenominator = 10;

uint32_t CeilSeconds(int64_t time_ms) {
  if (time_ms <= 0) {
    return 0;
  }
  const int64_t seconds = (time_ms + 999) / 1000;
  return static_cast<uint32_t>(std::min<int64_t>(seconds, UINT32_MAX));
}

}  // namespace

DedupIndex::DedupIndex(size_t entries_max, int64_t window_ms)
    : entries_max_(std::min<size_t>(entries_max, kEmptySlot - 1)), window_ms_(window_ms) {
  // A per-process seed keeps clients that choose insert ids from steering
  // them into one probe run.
  std::random_device device;
  seed_ = (static_cast<uint64_t>(device()) << 32) ^ device();
}

uint64_t DedupIndex::Hash(uint32_t project_id, uint64_t high, uint64_t low) const {
  return Mix64(Mix64(Mix64(high ^ seed_) ^ low) ^ project_id);
}

size_t DedupIndex::HomeSlot(const Entry& entry) const {
  return static_cast<size_t>(Hash(entry.project_id, entry.high, entry.low)) & (table_.size() - 1);
}

bool DedupIndex::Contains(uint32_t project_id, const Id128& insert_id) const {
  if (count_ == 0) {
    return false;
  }
  const size_t mask = table_.size() - 1;
  size_t slot = static_cast<size_t>(Hash(project_id, insert_id.high, insert_id.low)) & mask;
  while (table_[slot] != kEmptySlot) {
    const Entry& entry = ring_[table_[slot]];
    if (entry.high == insert_id.high && entry.low == insert_id.low &&
        entry.project_id == project_id) {
      return true;
    }
    slot = (slot + 1) & mask;
  }
  return false;
}

void DedupIndex::Insert(uint32_t project_id, const Id128& insert_id, int64_t stored_at_ms) {
  if (entries_max_ == 0 || Contains(project_id, insert_id)) {
    return;
  }
  if (count_ == ring_.size()) {
    if (ring_.size() < entries_max_) {
      Grow();
    } else {
      EvictOldest();
    }
  }
  const size_t ring_idx = (head_ + count_) % ring_.size();
  ring_[ring_idx] = Entry{insert_id.high, insert_id.low, project_id, CeilSeconds(stored_at_ms)};
  ++count_;
  PlaceInTable(static_cast<uint32_t>(ring_idx));
}

void DedupIndex::Expire(int64_t now_ms) {
  while (count_ > 0) {
    const int64_t stored_at_ms = static_cast<int64_t>(ring_[head_].stored_at_s) * 1000;
    if (now_ms - stored_at_ms < window_ms_) {
      return;
    }
    EvictOldest();
  }
}

size_t DedupIndex::MemoryBytes() const {
  return ring_.capacity() * sizeof(Entry) + table_.capacity() * sizeof(uint32_t);
}

void DedupIndex::Grow() {
  const size_t capacity = std::min(std::max(kRingCapacityMin, ring_.size() * 2), entries_max_);
  std::vector<Entry> ring;
  ring.reserve(capacity);
  for (size_t entry_idx = 0; entry_idx < count_; ++entry_idx) {
    ring.push_back(ring_[(head_ + entry_idx) % ring_.size()]);
  }
  ring.resize(capacity);
  ring_ = std::move(ring);
  head_ = 0;
  RebuildTable();
}

void DedupIndex::RebuildTable() {
  const size_t slots_min = ring_.size() * kTableLoadDenominator / kTableLoadNumerator + 1;
  table_.assign(std::bit_ceil(slots_min), kEmptySlot);
  for (size_t entry_idx = 0; entry_idx < count_; ++entry_idx) {
    PlaceInTable(static_cast<uint32_t>((head_ + entry_idx) % ring_.size()));
  }
}

void DedupIndex::PlaceInTable(uint32_t ring_idx) {
  const size_t mask = table_.size() - 1;
  size_t slot = HomeSlot(ring_[ring_idx]);
  while (table_[slot] != kEmptySlot) {
    slot = (slot + 1) & mask;
  }
  table_[slot] = ring_idx;
}

void DedupIndex::EvictOldest() {
  const size_t mask = table_.size() - 1;
  size_t slot = HomeSlot(ring_[head_]);
  while (table_[slot] != head_) {
    slot = (slot + 1) & mask;
  }
  // Backward-shift deletion keeps every probe run unbroken without tombstones.
  size_t hole = slot;
  size_t next = (hole + 1) & mask;
  while (table_[next] != kEmptySlot) {
    const size_t home = HomeSlot(ring_[table_[next]]);
    // Move `next` into the hole unless its home lies cyclically in (hole, next].
    const bool home_after_hole = ((next - home) & mask) < ((next - hole) & mask);
    if (!home_after_hole) {
      table_[hole] = table_[next];
      hole = next;
    }
    next = (next + 1) & mask;
  }
  table_[hole] = kEmptySlot;
  head_ = (head_ + 1) % ring_.size();
  --count_;
}

}  // namespace minpanel::store
