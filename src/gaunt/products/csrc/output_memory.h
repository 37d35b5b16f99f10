// The memory of the kernels' large outputs: recycled blocks backed by huge pages.
//
// A large tensor from torch's CPU allocator is a fresh mapping: the operating system clears every page on
// its first write (clear_page, at memory speed) and, with 4 KiB pages, takes a fault per page. The kernels
// write every entry of their outputs anyway, so both are pure overhead, and in a training loop the same
// sizes come back every step (out, the kept v and the input gradients of one product: ~125 MB each at
// L = 6, batch 1e4, 64 channels, float32: the clearing alone was ~10 % of a step).
//
// Outputs of at least kRecycleFrom bytes therefore come from this allocator: a block freed by its tensor is
// kept (up to a cap on the bytes kept) and handed to the next output that fits it, unchanged; a fresh block
// is 2 MiB-aligned and advised to be backed by transparent huge pages (madvise MADV_HUGEPAGE; Linux, THP in
// "madvise" or "always" mode; elsewhere nothing changes). Only blocks freed by tensors are reused, so no
// live tensor's memory is ever shared; the contents of a recycled block are stale, exactly as at::empty's
// are undefined.
//
// GAUNT_CPU_OUTPUT_CACHE_MB (read once): the bytes kept, default 1024; 0 keeps none (every large output is
// a fresh, advised block). In torch's deterministic mode with fill_uninitialized_memory, outputs come from
// torch's allocator (NaN-filled) instead. release() frees what is kept (gaunt.products.cpu_build.release_kept_outputs).

#pragma once

#include <ATen/Context.h>
#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Allocator.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__unix__)
#include <pthread.h>
#endif

namespace gaunt_memory {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kRecycleFrom = size_t(8) << 20;  // bytes: smaller outputs come from torch's allocator

class RecyclingAllocator final : public c10::Allocator {
 public:
  // the data pointer is its own context (a "simple" data pointer, as torch's copy-on-write clones want); the
  // deleter finds the block's size in `live_`
  c10::DataPtr allocate(size_t bytes) override {
    const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* block = take(size);
    if (!block) block = fresh(size);
    std::lock_guard<std::mutex> lock(mutex_);
    live_[block] = size;
    return {block, block, &give_back, c10::Device(c10::DeviceType::CPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
  // the bytes kept now
  size_t kept_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return kept_;
  }
  // free every kept block
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Kept& k : blocks_) std::free(k.block);
    blocks_.clear();
    kept_ = 0;
  }
  static RecyclingAllocator& instance() {
    static auto* allocator = new RecyclingAllocator();  // never destroyed: tensors may outlive static teardown
    return *allocator;
  }

 private:
  struct Kept {
    void* block;
    size_t size;
  };
  std::mutex mutex_;
  std::vector<Kept> blocks_;                  // freed blocks, oldest first
  std::unordered_map<void*, size_t> live_;  // blocks held by tensors, by their size
  size_t kept_ = 0, cap_ = size_t(1024) << 20;

  RecyclingAllocator() {
#if defined(__unix__)
    // a fork (a DataLoader's workers) while another thread holds the mutex would leave it locked in the child:
    // the forking thread takes it first and both sides release it
    pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] { instance().mutex_.unlock(); });
#endif
    const char* mb = std::getenv("GAUNT_CPU_OUTPUT_CACHE_MB");
    if (!mb || !*mb) return;
    char* end = nullptr;
    const long long value = std::strtoll(mb, &end, 10);
    if (*end != '\0' || value < 0) {
      TORCH_WARN("gaunt: GAUNT_CPU_OUTPUT_CACHE_MB=", mb, " is not a number of MB >= 0; keeping up to 1024 MB");
      return;
    }
    cap_ = size_t(value) << 20;
  }
  // the smallest kept block of at least size bytes and at most 1/8 more (else a small output would pin a big one)
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = blocks_.size();
    for (size_t i = 0; i < blocks_.size(); ++i)
      if (blocks_[i].size >= size && blocks_[i].size <= size + size / 8 &&
          (best == blocks_.size() || blocks_[i].size < blocks_[best].size))
        best = i;
    if (best == blocks_.size()) return nullptr;
    void* block = blocks_[best].block;
    kept_ -= blocks_[best].size;
    blocks_.erase(blocks_.begin() + best);
    return block;
  }
  // a new block (what is kept is freed first where memory runs out)
  void* fresh(size_t size) {
    void* block = nullptr;
    if (posix_memalign(&block, kHugePage, size) != 0) {
      release();
      if (posix_memalign(&block, kHugePage, size) != 0) throw std::bad_alloc();
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(block, size, MADV_HUGEPAGE);  // a hint: where it fails the block is backed by small pages
#endif
    return block;
  }
  // a tensor's block is freed: keep it (the oldest kept blocks freed beyond the cap), or free it (beyond the cap
  // alone, or smaller than the outputs that take blocks: a resize_ of a recycled tensor allocates here too)
  void keep(void* block) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = live_.find(block);
    const size_t size = found->second;
    live_.erase(found);
    if (size > cap_ || size < kRecycleFrom) return std::free(block);
    blocks_.push_back({block, size});
    kept_ += size;
    while (kept_ > cap_) {
      std::free(blocks_.front().block);
      kept_ -= blocks_.front().size;
      blocks_.erase(blocks_.begin());
    }
  }
  static void give_back(void* block) { instance().keep(block); }
};

// at::empty(sizes, options) for a contiguous CPU output that the kernel writes entirely (or zeroes itself):
// large ones from the recycling allocator
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t bytes = size_t(numel) * c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  // small outputs, and where uninitialized memory must read as NaN (torch's deterministic mode): torch's allocator
  const auto& context = at::globalContext();
  if (bytes < kRecycleFrom || (context.deterministicAlgorithms() && context.deterministicFillUninitializedMemory()))
    return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, &RecyclingAllocator::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), std::nullopt);
}

}  // namespace gaunt_memory
