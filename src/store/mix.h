// Mix64: the 64-bit finaliser of MurmurHash3, for hashing insert ids
// (already uniformly random bytes, or keyed hashes) into table slots. Pure.
#pragma once

#include <cstdint>

namespace minpanel::store {

inline uint64_t Mix64(uint64_t value) {
  value ^= value >> 33;
  value *= 0xff51afd7ed558ccdULL;
  value ^= value >> 33;
  value *= 0xc4ceb9fe1a85ec53ULL;
  value ^= value >> 33;
  return value;
}

}  // namespace minpanel::store
