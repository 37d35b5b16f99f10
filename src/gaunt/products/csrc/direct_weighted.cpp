// The direct CPU kernel with a coefficient per triple and channel: the multilinear form
//
//   T(x1, x2, g, C) = sum_n sum_u sum_t k_t C[t, u] x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]] g[n, pos_out[u, c_t]]
//
// (a sphere program's coupling list, gaunt.products.coupling, coefficients k [nnz], with the per-channel weights
// of a product folded into C [nnz, mul]) and its gradients, the "slots" of gaunt.products.direct_weighted:
//
// * direct_weighted(x1, x2, C, k, rows, meta) -> [n, dim_out]: out[n, pos_out[u, c]] = sum_{t: c_t = c}
//   k_t C[rows[t], u] x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]] for the list of `meta` and `k` (direct.h); with
//   the list of the program it is dT/dg, with one of its vector-Jacobian lists (the triples permuted,
//   Coupling.vjp; `rows`: the program's triple of each) dT/dx1 or dT/dx2.
// * direct_reduce(x1, x2, g, k, meta) -> [nnz, mul]: dT/dC[t, u] = k_t sum_n x1[n, pos1[u, a_t]] x2[n, pos2[u,
//   b_t]] g[n, pos_out[u, c_t]] for the program's list.
// * direct_backward(x1, x2, g, C, [k0, k1, k2], [rows0, rows1], [meta0, meta1, meta2]) -> (dT/dx1, dT/dx2,
//   dT/dC): the three at once (the lists of slots 0, 1 and of the program), each row of x1, x2, g read once
//   (the channel tiles; the sample tiles run the three above).
//
// The loops: direct_weighted.h. Threads split the samples; the sums over samples are per thread over contiguous
// ranges, added in the order of the ranges: deterministic for a given number of threads.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#include "direct_weighted.h"
#include "output_memory.h"

namespace {

using namespace gaunt_weighted;

// ------------------------------------------------------------------------------------ the channel tiles' ops
// the coupling of one list (slots 0-2): in[0], in[1] -> out[0]
template <typename T>
struct Couple {
  const Direct& D;
  const T* C;  // [nnz, mul] in the list's order
  std::vector<Vec<T>> X1, X2, Y;
  Couple(const Direct& list, const T* C)
      : D(list), C(C), X1(list.k[0] * kColumns), X2(list.k[1] * kColumns), Y(list.k[2] * kColumns, Vec<T>{}) {}
  template <int U, int P>
  void run(const Group<T>& group, int64_t v0) {
    split_group<T, U, P>(D.blocks[0], group.in[0], group.m, v0, X1.data());
    split_group<T, U, P>(D.blocks[1], group.in[1], group.m, v0, X2.data());
    couple<T, U>(D, PerLanes<T, P>{C + v0 * lanes<T>(), D.mul}, X1.data(), X2.data(), Y.data());
    interleave_group<T, U, P>(D.blocks[2], Y.data(), group.m, v0, group.out[0]);
  }
};

// the sums of the program's list (slot 3): in[0], in[1], in[2] -> rows t V + v of W channels
template <typename T>
struct Reduce {
  const Direct& D;
  std::vector<Vec<T>> X1, X2, G;
  Sums<T> sums;
  explicit Reduce(const Direct& list)
      : D(list),
        X1(list.k[0] * kColumns),
        X2(list.k[1] * kColumns),
        G(list.k[2] * kColumns),
        sums(list.nnz * (list.mul / lanes<T>())) {}
  template <int U, int P>
  void run(const Group<T>& group, int64_t v0) {
    split_group<T, U, P>(D.blocks[0], group.in[0], group.m, v0, X1.data());
    split_group<T, U, P>(D.blocks[1], group.in[1], group.m, v0, X2.data());
    split_group<T, U, P>(D.blocks[2], group.in[2], group.m, v0, G.data());
    zero_stale<T, U, P>(G.data(), D.k[2], group.m);
    reduce_columns<T, U, P>(D, X1.data(), X2.data(), G.data(), sums.block.data() + v0, D.mul / lanes<T>());
    sums.step();
  }
};

// slots 0, 1 and 3 at once: in[0], in[1], in[2] (x1, x2, g) -> out[0], out[1] (dT/dx1, dT/dx2) and the sums
template <typename T>
struct Backward : Reduce<T> {
  const Direct &D0, &D1;  // the lists of slots 0 and 1 (on g, x2 and on x1, g)
  const T *C0, *C1;
  std::vector<Vec<T>> Y1, Y2;
  Backward(const Direct& list, const Direct& list0, const Direct& list1, const T* C0, const T* C1)
      : Reduce<T>(list),
        D0(list0),
        D1(list1),
        C0(C0),
        C1(C1),
        Y1(list.k[0] * kColumns, Vec<T>{}),
        Y2(list.k[1] * kColumns, Vec<T>{}) {}
  template <int U, int P>
  void run(const Group<T>& group, int64_t v0) {
    Reduce<T>::template run<U, P>(group, v0);  // the tiles X1, X2, G split, and the sums
    const int64_t offset = v0 * lanes<T>();
    couple<T, U>(D0, PerLanes<T, P>{C0 + offset, D0.mul}, this->G.data(), this->X2.data(), Y1.data());
    couple<T, U>(D1, PerLanes<T, P>{C1 + offset, D1.mul}, this->X1.data(), this->G.data(), Y2.data());
    interleave_group<T, U, P>(this->D.blocks[0], Y1.data(), group.m, v0, group.out[0]);
    interleave_group<T, U, P>(this->D.blocks[1], Y2.data(), group.m, v0, group.out[1]);
  }
};

// ------------------------------------------------------------------------------------ helpers
inline int lanes_of(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? lanes<double>() : lanes<float>(); }

// samples per thread at least: about 2^20 one-lane operations
inline int64_t grain_of(const Direct& D) {
  const int64_t work = D.mul * (D.nnz + D.k[0] + D.k[1] + D.k[2]);
  return std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(1, work));
}

// the output [n, dim]: zeros where some of its positions lie in no block (the channel tiles leave them)
inline at::Tensor output(const at::Tensor& like, const Direct& D, int j, int64_t n, int64_t dim) {
  const bool zero = D.channels(lanes_of(like)) && D.mul * D.k[j] < dim;
  at::Tensor out = gaunt_memory::empty_output({n, dim}, like.options());
  return zero ? out.zero_() : out;
}

// C[t] = k_t coefficients[rows[t]] ([nnz, mul]): the coefficients in the order of a list
template <typename T>
std::vector<T> in_order(const at::Tensor& coefficients, const at::Tensor& values, const at::Tensor& rows) {
  const int64_t nnz = coefficients.size(0), mul = coefficients.size(1);
  TORCH_CHECK(rows.scalar_type() == at::kLong && rows.numel() == nnz && values.numel() == nnz,
              "gaunt direct_weighted: values and rows must be [nnz] (rows int64)");
  const at::Tensor given = coefficients.contiguous(), k = values.contiguous(), r = rows.contiguous();
  const T* source = given.data_ptr<T>();
  const T* kt = k.data_ptr<T>();
  const int64_t* row = r.data_ptr<int64_t>();
  std::vector<T> C(nnz * mul);
  for (int64_t t = 0; t < nnz; ++t) {
    TORCH_CHECK(row[t] >= 0 && row[t] < nnz, "gaunt direct_weighted: a row outside the coefficients");
    for (int64_t u = 0; u < mul; ++u) C[t * mul + u] = kt[t] * source[row[t] * mul + u];
  }
  return C;
}

// units [0, units) in contiguous ranges, at most one per thread: body(first, last) -> its sums; the sums added
// in the order of the ranges (row j: sums[j], summed across its lanes where `across`) times k_t, into out
template <typename T, typename F>
void ranged_sums(int64_t units, int64_t grain, const Direct& D, bool across, const at::Tensor& values,
                 at::Tensor& out, F body) {
  const int64_t ranges = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (units + grain - 1) / grain));
  std::vector<std::vector<Vec<T>>> partial(ranges);
  at::parallel_for(0, ranges, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) partial[r] = body(r * units / ranges, (r + 1) * units / ranges);
  });
  std::vector<Vec<T>>& sum = partial[0];
  for (int64_t r = 1; r < ranges; ++r)
    for (size_t j = 0; j < sum.size(); ++j) sum[j] += partial[r][j];
  T* po = out.data_ptr<T>();
  const at::Tensor k = values.contiguous();
  const T* kt = k.data_ptr<T>();
  if (!across) {  // channel tiles: row t V + v holds channels v W .. v W + W - 1 of triple t, i.e. out[t, v W ..]
    std::memcpy(po, sum.data(), sizeof(T) * D.nnz * D.mul);
  } else {  // sample tiles: row t mul + u holds W samples of channel u
    for (int64_t j = 0; j < D.nnz * D.mul; ++j) {
      T s = 0;
      for (int lane = 0; lane < lanes<T>(); ++lane) s += sum[j][lane];
      po[j] = s;
    }
  }
  for (int64_t j = 0; j < D.nnz * D.mul; ++j) po[j] *= kt[j / D.mul];
}

void check_inputs(const char* name, std::initializer_list<const at::Tensor*> tensors) {
  const at::Tensor& first = **tensors.begin();
  for (const at::Tensor* t : tensors) {
    TORCH_CHECK(t->device().is_cpu(), name, ": CPU tensors only");
    TORCH_CHECK(t->scalar_type() == first.scalar_type(), name, ": the tensors must share one dtype");
  }
}

Direct list_of(const at::Tensor& meta, const at::Tensor& like) {
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt direct_weighted: meta must be int64");
  return Direct(meta.data_ptr<int64_t>(), lanes_of(like));
}

// ------------------------------------------------------------------------------------ the ops
at::Tensor direct_weighted(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& coefficients,
                           const at::Tensor& values, const at::Tensor& rows, const at::Tensor& meta) {
  check_inputs("gaunt direct_weighted", {&x1, &x2, &coefficients, &values});
  const Direct D = list_of(meta, x1);
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && x1.size(0) == x2.size(0) && x1.size(1) == D.dims[0] &&
                  x2.size(1) == D.dims[1],
              "gaunt direct_weighted: inputs [n, dim1], [n, dim2] of the list");
  TORCH_CHECK(coefficients.dim() == 2 && coefficients.size(0) == D.nnz && coefficients.size(1) == D.mul,
              "gaunt direct_weighted: coefficients must be [nnz, mul]");
  const int64_t n = x1.size(0);
  const at::Tensor a = x1.contiguous(), b = x2.contiguous();
  at::Tensor out = output(x1, D, 2, n, D.dims[2]);
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_direct_weighted", [&] {
    constexpr int L = lanes<scalar_t>();
    const std::vector<scalar_t> C = in_order<scalar_t>(coefficients, values, rows);
    const scalar_t* p1 = a.data_ptr<scalar_t>();
    const scalar_t* p2 = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t grain = grain_of(D);
    if (D.channels(L)) {
      at::parallel_for(0, n, grain, [&](int64_t first, int64_t last) {
        Couple<scalar_t> op(D, C.data());
        channels<scalar_t>(D, op, {p1, p2, nullptr}, {po, nullptr}, {D.dims[2], 0}, first, last);
      });
    } else {
      at::parallel_for(0, (n + L - 1) / L, (grain + L - 1) / L, [&](int64_t first, int64_t last) {
        couple_tiles<scalar_t>(D, C.data(), p1, p2, n, first, last, po);
      });
    }
  });
  return out;
}

at::Tensor direct_reduce(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& g, const at::Tensor& values,
                         const at::Tensor& meta) {
  check_inputs("gaunt direct_reduce", {&x1, &x2, &g, &values});
  const Direct D = list_of(meta, x1);
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && g.dim() == 2 && x1.size(0) == x2.size(0) && x1.size(0) == g.size(0) &&
                  x1.size(1) == D.dims[0] && x2.size(1) == D.dims[1] && g.size(1) == D.dims[2],
              "gaunt direct_reduce: inputs [n, dim1], [n, dim2], [n, dim_out] of the list");
  TORCH_CHECK(values.numel() == D.nnz, "gaunt direct_reduce: one coefficient per triple");
  const int64_t n = x1.size(0);
  const at::Tensor a = x1.contiguous(), b = x2.contiguous(), c = g.contiguous();
  at::Tensor out = gaunt_memory::empty_output({D.nnz, D.mul}, x1.options());
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_direct_reduce", [&] {
    constexpr int L = lanes<scalar_t>();
    const scalar_t* p1 = a.data_ptr<scalar_t>();
    const scalar_t* p2 = b.data_ptr<scalar_t>();
    const scalar_t* pg = c.data_ptr<scalar_t>();
    if (D.channels(L)) {
      ranged_sums<scalar_t>(n, grain_of(D), D, false, values, out, [&](int64_t first, int64_t last) {
        Reduce<scalar_t> op(D);
        channels<scalar_t>(D, op, {p1, p2, pg}, {nullptr, nullptr}, {0, 0}, first, last);
        op.sums.flush();
        return op.sums.total;
      });
    } else {
      const int64_t grain = (grain_of(D) + L - 1) / L;
      ranged_sums<scalar_t>((n + L - 1) / L, grain, D, true, values, out, [&](int64_t first, int64_t last) {
        return reduce_tiles<scalar_t>(D, p1, p2, pg, n, first, last);
      });
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> direct_backward(const at::Tensor& x1, const at::Tensor& x2,
                                                               const at::Tensor& g, const at::Tensor& coefficients,
                                                               at::TensorList values, at::TensorList rows,
                                                               at::TensorList metas) {
  TORCH_CHECK(values.size() == 3 && rows.size() == 2 && metas.size() == 3,
              "gaunt direct_backward: the lists of slots 0, 1 and the program");
  const Direct D = list_of(metas[2], x1);
  if (!D.channels(lanes_of(x1))) {  // the sample tiles: the three slots one after the other
    return {direct_weighted(g, x2, coefficients, values[0], rows[0], metas[0]),
            direct_weighted(x1, g, coefficients, values[1], rows[1], metas[1]),
            direct_reduce(x1, x2, g, values[2], metas[2])};
  }
  check_inputs("gaunt direct_backward", {&x1, &x2, &g, &coefficients, &values[0], &values[1], &values[2]});
  const Direct D0 = list_of(metas[0], x1), D1 = list_of(metas[1], x1);
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && g.dim() == 2 && x1.size(0) == x2.size(0) && x1.size(0) == g.size(0) &&
                  x1.size(1) == D.dims[0] && x2.size(1) == D.dims[1] && g.size(1) == D.dims[2],
              "gaunt direct_backward: inputs [n, dim1], [n, dim2], [n, dim_out] of the list");
  TORCH_CHECK(coefficients.dim() == 2 && coefficients.size(0) == D.nnz && coefficients.size(1) == D.mul &&
                  D0.nnz == D.nnz && D1.nnz == D.nnz && D0.channels(lanes_of(x1)) && D1.channels(lanes_of(x1)),
              "gaunt direct_backward: coefficients [nnz, mul] and the lists of one program");
  const int64_t n = x1.size(0);
  const at::Tensor a = x1.contiguous(), b = x2.contiguous(), c = g.contiguous();
  at::Tensor d1 = output(x1, D, 0, n, D.dims[0]), d2 = output(x1, D, 1, n, D.dims[1]);
  at::Tensor dC = at::empty({D.nnz, D.mul}, x1.options());
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_direct_backward", [&] {
    const std::vector<scalar_t> C0 = in_order<scalar_t>(coefficients, values[0], rows[0]);
    const std::vector<scalar_t> C1 = in_order<scalar_t>(coefficients, values[1], rows[1]);
    const scalar_t* p[3] = {a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), c.data_ptr<scalar_t>()};
    scalar_t* out[2] = {d1.data_ptr<scalar_t>(), d2.data_ptr<scalar_t>()};
    ranged_sums<scalar_t>(n, grain_of(D), D, false, values[2], dC, [&](int64_t first, int64_t last) {
      Backward<scalar_t> op(D, D0, D1, C0.data(), C1.data());
      channels<scalar_t>(D, op, {p[0], p[1], p[2]}, {out[0], out[1]}, {D.dims[0], D.dims[1]}, first, last);
      op.sums.flush();
      return op.sums.total;
    });
  });
  return {d1, d2, dC};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def(
      "direct_weighted(Tensor x1, Tensor x2, Tensor coefficients, Tensor values, Tensor rows, Tensor meta) -> "
      "Tensor");
  m.def("direct_reduce(Tensor x1, Tensor x2, Tensor g, Tensor values, Tensor meta) -> Tensor");
  m.def(
      "direct_backward(Tensor x1, Tensor x2, Tensor g, Tensor coefficients, Tensor[] values, Tensor[] rows, "
      "Tensor[] metas) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) {
  m.impl("direct_weighted", &direct_weighted);
  m.impl("direct_reduce", &direct_reduce);
  m.impl("direct_backward", &direct_backward);
}
