// The recycled output blocks of the kernels (output_memory.h): how many bytes are kept, and freeing them.

#include <torch/library.h>

#include <cstdint>

#include "output_memory.h"

namespace {

int64_t kept_output_bytes() { return static_cast<int64_t>(gaunt_memory::RecyclingAllocator::instance().kept_bytes()); }

void release_kept_outputs() { gaunt_memory::RecyclingAllocator::instance().release(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def("kept_output_bytes() -> int", &kept_output_bytes);
  m.def("release_kept_outputs() -> ()", &release_kept_outputs);
}
