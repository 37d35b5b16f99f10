// One generic fused CPU kernel for the sphere programs of gaunt.products.program.
//
// A program maps x1 [n, dim1], x2 [n, dim2] to out [n, dim_out] (module docstring of program.py):
//
//   synthesis s:   X[r, l, j]   = x_{source}[sample_j, index[(r Lp + l) mul + u_j]]   (0 where index < 0)
//                  G[r, t, j]   = sum_l theta_s[r, t, l] X[r, l, j]
//                  F_s[p, t, j] = sum_r phi_s[p, r] G[r, t, j]
//   terms:         H_q[p, t, j] = sum_{terms of q} c F_a[p, t, j] F_b[p, t, j]
//   projection q:  C[r, t, j]   = sum_p phi_q[r, p] H_q[p, t, j]
//                  Y[r, l, j]   = sum_t theta_q[r, l, t] C[r, t, j]
//   read-out:      out[sample_j, k] += Y[r, l, j]  for k = inverse_read_q[(r L3p + l) mul + u_j] >= 0
//
// Columns j are (sample, channel) pairs taken W at a time (a tile): every stage above is a small matrix
// times a [K, W] block, so a tile's grid values stay in cache and nothing of grid size is written to
// memory for the batch. The innermost dimension is the tile width W, a GCC vector type (one or a few SIMD
// registers), and the row loop is blocked so that RB accumulators stay in registers. Rows of a table skip
// the columns outside their non-zero range (e.g. Theta[l |m|] = 0 for l < |m|). Threads split the samples
// (at::parallel_for), so no two threads write one output row. The tile machinery is shared (tiles.h).
//
// The program arrives as two tensors built by cpu_executor.py: `values` (float tables and coefficients,
// in the input dtype) and `meta` (int64: header, records, gather/scatter indices, non-zero ranges).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "output_memory.h"
#include "program_layout.h"

namespace {

using namespace gaunt_program;

// samples [begin, end): output rows zeroed just before their first tile (in cache), the inputs and outputs
// of the next kPrefetch samples prefetched (the tiles of one sample run long enough to hide the latency)
template <typename T>
void run_samples(const Layout& P, const T* values, const T* x1, const T* x2, int64_t begin, int64_t end, T* out) {
  constexpr int64_t kPrefetch = 2;
  Scratch<T> S(P);
  auto new_samples = [&](int64_t first, int64_t last) {
    std::fill(out + first * P.dims[2], out + last * P.dims[2], T(0));
    const int64_t ahead = std::min(end, last + kPrefetch);
    prefetch_rows<T, 0>(x1, P.dims[0], last, ahead);
    prefetch_rows<T, 0>(x2, P.dims[1], last, ahead);
    prefetch_rows<T, 1>(out, P.dims[2], last, ahead);
  };
  for_each_tile(P.mul, begin, end, new_samples, [&](const Tile& tile) { run_tile(P, values, x1, x2, tile, S, out); });
}

template <typename T>
void run_program(const Layout& P, const T* values, const T* x1, const T* x2, int64_t n, T* out) {
  const int64_t grain = std::max<int64_t>(1, 4 * W / P.mul);  // at least a few tiles per task
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { run_samples(P, values, x1, x2, begin, end, out); });
}

at::Tensor run(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& values, const at::Tensor& meta) {
  TORCH_CHECK(x1.device().is_cpu() && x2.device().is_cpu(), "gaunt cpu_fused: CPU tensors only");
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && x1.size(0) == x2.size(0), "gaunt cpu_fused: inputs [n, dim]");
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type() && x1.scalar_type() == values.scalar_type(),
              "gaunt cpu_fused: inputs and tables must share one dtype");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt cpu_fused: meta must be int64");
  const Layout P(meta.data_ptr<int64_t>());
  TORCH_CHECK(x1.size(1) == P.dims[0] && x2.size(1) == P.dims[1], "gaunt cpu_fused: input sizes do not match");
  const int64_t n = x1.size(0);
  at::Tensor a = x1.contiguous(), b = x2.contiguous(), v = values.contiguous();
  at::Tensor out = gaunt_memory::empty_output({n, P.dims[2]}, x1.options());  // zeroed per row by the kernel
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_sphere_program", [&] {
    run_program<scalar_t>(P, v.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n,
                          out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(gaunt_fused, m) { m.def("run(Tensor x1, Tensor x2, Tensor values, Tensor meta) -> Tensor"); }

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) { m.impl("run", &run); }
