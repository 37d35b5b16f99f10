// Transparent huge pages for the large outputs of the kernels.
//
// A large tensor is a fresh mapping from the allocator, and writing it faults in every 4 KiB page: on a
// virtual machine each fault costs microseconds, a large share of a memory-bound kernel's time. Where the
// kernel is about to write a large output it asks the kernel (madvise MADV_HUGEPAGE) to back the
// output's whole 2 MiB pages with huge pages (Linux, transparent huge pages in "madvise" or "always" mode;
// elsewhere, or where the call fails, nothing changes). It changes how the memory is backed, never its
// contents; torch does the same for every allocation with THP_MEM_ALLOC_ENABLE=1.

#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace gaunt_memory {

constexpr int64_t kHugePage = int64_t(2) << 20;
constexpr int64_t kAdviseFrom = int64_t(8) << 20;  // bytes: smaller outputs are left as they are

// MADV_HUGEPAGE on the 2 MiB pages that lie wholly inside t's storage (t freshly allocated, not yet written)
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = t.numel() * int64_t(t.element_size());
  if (bytes < kAdviseFrom || !t.is_contiguous()) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(t.data_ptr());
  const std::uintptr_t first = (begin + kHugePage - 1) & ~std::uintptr_t(kHugePage - 1);
  const std::uintptr_t last = (begin + bytes) & ~std::uintptr_t(kHugePage - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace gaunt_memory
