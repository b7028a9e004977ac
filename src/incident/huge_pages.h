// Transparent huge pages for the cross-reference's large arrays: the
// accounts' table, the index's hash tables and the affected accounts are
// hundreds of megabytes each at 10M accounts, reached at random rows. With
// 4 KiB pages nearly every such access also misses the TLB (under a
// hypervisor a two-level page walk), and each page is faulted in alone;
// with 2 MiB pages neither. The kernel's THP mode "madvise" (this
// machine's) backs a range with huge pages only where asked.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace minpanel::incident {

// Ranges under this are left as they are: a huge page for a small array
// would be mostly unused.
inline constexpr size_t kHugePageAdviceBytesMin = size_t{8} << 20;

// Asks for huge pages over the whole 2 MiB pages inside [data, data +
// bytes), best before they are first touched. Advice only: a kernel
// without THP, or with it off, ignores it, and so does this (no error).
inline void AdviseHugePages(const void* data, size_t bytes) {
  constexpr uintptr_t kHugePageBytes = uintptr_t{2} << 20;
  if (bytes < kHugePageAdviceBytesMin) {
    return;
  }
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePageBytes - 1);
  if (last > first) {
    (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
}

// reserve(count), then the advice over what it allocated.
template <typename T>
void ReserveHuge(std::vector<T>* values, size_t count) {
  values->reserve(count);
  AdviseHugePages(values->data(), values->capacity() * sizeof(T));
}
// count copies of `value`, on memory reserved as ReserveHuge does (so
// that the advice comes before the pages are first touched).
template <typename T>
void AssignHuge(std::vector<T>* values, size_t count, const T& value) {
  values->clear();
  ReserveHuge(values, count);
  values->assign(count, value);
}
inline void ReserveHuge(std::string* text, size_t bytes) {
  text->reserve(bytes);
  AdviseHugePages(text->data(), text->capacity());
}

}  // namespace minpanel::incident
