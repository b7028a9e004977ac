// DedupIndex: the set of (project, insert id) pairs stored recently, bounded
// in entries and expiring by the time they were stored.
//
// Entries live in a FIFO ring in the order they were inserted (the log
// order), so the oldest is evicted first when the bound is reached and
// expiry pops from the front. An open-addressing table of 32-bit ring
// positions (linear probing, load at most 0.7) finds them. Per entry: 24
// bytes in the ring plus 4 / load bytes in the table, about 30 bytes at the
// bound (see README.md). Thread-compatible: the store's writer thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/core.h"

namespace minpanel::store {

class DedupIndex {
 public:
  // `entries_max` of zero remembers nothing.
  DedupIndex(size_t entries_max, int64_t window_ms);

  bool Contains(uint32_t project_id, const Id128& insert_id) const;
  // Remembers the pair as stored at `stored_at_ms`, evicting the oldest entry
  // when full. Inserting a pair already present does nothing.
  void Insert(uint32_t project_id, const Id128& insert_id, int64_t stored_at_ms);
  // Forgets entries stored `window_ms` or more before `now_ms` (to a second,
  // erring on remembering longer).
  void Expire(int64_t now_ms);

  size_t size() const { return count_; }
  // Heap bytes held by the ring and the table.
  size_t MemoryBytes() const;

 private:
  struct Entry {
    uint64_t high;
    uint64_t low;
    uint32_t project_id;
    uint32_t stored_at_s;  // ceiling of stored_at_ms / 1000
  };
  static constexpr uint32_t kEmptySlot = UINT32_MAX;

  uint64_t Hash(uint32_t project_id, uint64_t high, uint64_t low) const;
  size_t HomeSlot(const Entry& entry) const;
  void Grow();
  void RebuildTable();
  void PlaceInTable(uint32_t ring_idx);
  void EvictOldest();

  size_t entries_max_;
  int64_t window_ms_;
  uint64_t seed_;
  std::vector<Entry> ring_;  // capacity grows by doubling up to entries_max_
  size_t head_ = 0;          // oldest entry
  size_t count_ = 0;
  std::vector<uint32_t> table_;  // ring positions; size is a power of two
};

}  // namespace minpanel::store
