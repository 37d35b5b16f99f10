// The direct CPU kernel of a sphere program: its sparse per-channel coupling list (gaunt.products.coupling),
//
//   out[n, pos_out[u, c]] = sum_{triples t with c_t = c} coefficient_t x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]]
//
// for every channel u and sample n, one coefficient per triple (the tilings and the layout of `meta`: direct.h).
// In the channel tiles every value is read and written once, in order; the rows of the samples ahead are
// prefetched. Threads split the samples (at::parallel_for): no two threads write one output row. The program
// arrives as two tensors built by cpu_direct.py: `values` (the coefficients, in the input dtype) and `meta`.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "direct.h"
#include "output_memory.h"

namespace {

using namespace gaunt_direct;

at::Tensor direct(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& values, const at::Tensor& meta) {
  TORCH_CHECK(x1.device().is_cpu() && x2.device().is_cpu(), "gaunt direct: CPU tensors only");
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && x1.size(0) == x2.size(0), "gaunt direct: inputs [n, dim]");
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type() && x1.scalar_type() == values.scalar_type(),
              "gaunt direct: inputs and coefficients must share one dtype");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt direct: meta must be int64");
  const int lanes_of_dtype = x1.scalar_type() == at::kDouble ? lanes<double>() : lanes<float>();
  const Direct D(meta.data_ptr<int64_t>(), lanes_of_dtype);
  TORCH_CHECK(x1.size(1) == D.dims[0] && x2.size(1) == D.dims[1], "gaunt direct: input sizes do not match");
  TORCH_CHECK(values.numel() == D.nnz, "gaunt direct: one coefficient per triple");
  const int64_t n = x1.size(0);
  at::Tensor a = x1.contiguous(), b = x2.contiguous(), v = values.contiguous();
  // samples: every entry written by store_tile; channels: the outputs in no block stay zero
  const bool zero = D.channels(lanes_of_dtype) && D.mul * D.k[2] < D.dims[2];
  at::Tensor out = gaunt_memory::empty_output({n, D.dims[2]}, x1.options());
  if (zero) out.zero_();
  const int64_t work = D.mul * (D.nnz + D.k[0] + D.k[1] + D.k[2]);  // per sample, in one-lane operations
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_direct_program", [&] {
    constexpr int W = lanes<scalar_t>();
    const scalar_t* coefficient = v.data_ptr<scalar_t>();
    const scalar_t* p1 = a.data_ptr<scalar_t>();
    const scalar_t* p2 = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(1, work));  // samples
    if (D.channels(W)) {
      at::parallel_for(0, n, grain, [&](int64_t first, int64_t last) {
        run_channels<scalar_t>(D, coefficient, p1, p2, first, last, po);
      });
    } else {
      at::parallel_for(0, (n + W - 1) / W, (grain + W - 1) / W, [&](int64_t first, int64_t last) {
        run_tiles<scalar_t>(D, coefficient, p1, p2, n, first, last, po);
      });
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def("direct(Tensor x1, Tensor x2, Tensor values, Tensor meta) -> Tensor");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) { m.impl("direct", &direct); }
