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
//
// Both tilings of direct.h. In the channel tiles a group of columns is S samples times P consecutive channel
// blocks (block v: channels v W .. v W + W - 1), U = S P <= kColumns columns. One sample at a time (S = 1,
// P = 4, then the V % 4 blocks left) where there are V >= 3 blocks: its rows are read and written in order
// and few rows crowd the L1 cache (groups of 2 samples x 2 blocks took 1.8x the time at L = 1, 64 channels,
// float32); 4 or 2 samples for V = 1 or 2 (short rows), so that U = 4 columns keep 4 accumulators. The
// reduction sums into rows of W values per triple (channels: W channels; samples: W samples of one channel,
// summed across lanes at the end), in blocks of kFlush groups added to a running total (shorter sums than one
// running sum over all samples). Threads take contiguous ranges of samples, each its own partial sums, added
// in the order of the ranges: the result is deterministic for a given number of threads.

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
#include <vector>

#include "direct.h"

namespace {

using namespace gaunt_direct;

constexpr int64_t kFlush = 64;  // column groups (channel tiles) or tiles (sample tiles) per block of the sums

// the channel tiles: the W coefficients of triple t for the lanes (channels) of column i, in block v0 + i % P
// (one load per triple and block, shared by the columns of that block)
template <typename T, int P>
struct PerLanes {
  const T* row;  // C + v0 W, rows of mul
  int64_t mul;
  Vec<T> operator()(int32_t t, int i) const {
    Vec<T> c;
    std::memcpy(&c, row + (i % P) * lanes<T>() + t * mul, sizeof(c));
    return c;
  }
};

// the sample tiles: the coefficient of triple t for the channel of column i
template <typename T>
struct PerColumn {
  const T* row;  // C + u, rows of mul
  int64_t mul;
  T operator()(int32_t t, int i) const { return row[t * mul + i]; }
};

// R[t stride + p] += sum_{i < U, i % P = p} X1[a_t U + i] X2[b_t U + i] G[c_t U + i] for p < P: the columns
// that share a row of sums (channel tiles: the samples of a group; sample tiles: P = U, a channel per column)
template <typename T, int U, int P>
inline void reduce_columns(const Direct& D, const Vec<T>* X1, const Vec<T>* X2, const Vec<T>* G, Vec<T>* R,
                           int64_t stride) {
  const int32_t* a = D.a.data();
  const int32_t* b = D.b.data();
  const int64_t groups = D.groups();
  for (int64_t g = 0; g < groups; ++g) {
    const Vec<T>* gc = G + D.target[g] * U;
    for (int32_t t = D.group[g]; t < D.group[g + 1]; ++t) {
      const Vec<T>* p1 = X1 + a[t] * U;
      const Vec<T>* p2 = X2 + b[t] * U;
      Vec<T> sum[P];
      for (int p = 0; p < P; ++p) sum[p] = (p1[p] * p2[p]) * gc[p];
      for (int i = P; i < U; ++i) sum[i % P] += (p1[i] * p2[i]) * gc[i];
      for (int p = 0; p < P; ++p) R[t * stride + p] += sum[p];
    }
  }
}

// the block sums into the running total, the block zeroed
template <typename T>
inline void flush(std::vector<Vec<T>>& block, std::vector<Vec<T>>& total) {
  for (size_t j = 0; j < block.size(); ++j) total[j] += block[j], block[j] = Vec<T>{};
}

// ------------------------------------------------------------------------------------ the channel tiles
// A group: rows[j][s] is sample s's row of array j (x1, x2, then g or none), m <= S samples valid; column i is
// sample i / P, block v0 + i % P, its coefficient a at row a U + i of a tile (the columns past P m hold stale
// values, never written out; the reduction zeroes them in G).
template <typename T>
struct Group {
  const T* rows[3][kColumns];
  int m;
};

// the blocks of array j of the group's columns split into the tile X
template <typename T, int U, int P>
inline void split_group(const Direct& D, const Group<T>& group, int j, int64_t v0, Vec<T>* X) {
  constexpr int W = lanes<T>();
  T* tile = reinterpret_cast<T*>(X);
  for (int i = 0; i < P * group.m; ++i)
    for (const Block& b : D.blocks[j])
      shuffle_width<false>(b.D, group.rows[j][i / P] + b.start + (v0 + i % P) * W * b.D, W,
                           tile + (b.first * U + i) * W, U * W, kWidths);
}

// the coupling (slots 0-2) of the group's columns, the output blocks interleaved into the rows out[s]
struct Couple {
  template <typename T, int U, int P>
  static void run(const Direct& D, const Group<T>& group, T* const* out, const T* C, Vec<T>*, int64_t v0,
                  Vec<T>* const* tiles) {
    constexpr int W = lanes<T>();
    split_group<T, U, P>(D, group, 0, v0, tiles[0]);
    split_group<T, U, P>(D, group, 1, v0, tiles[1]);
    couple<T, U>(D, PerLanes<T, P>{C + v0 * W, D.mul}, tiles[0], tiles[1], tiles[2]);
    const T* Y = reinterpret_cast<const T*>(tiles[2]);
    for (int i = 0; i < P * group.m; ++i)
      for (const Block& b : D.blocks[2])
        shuffle_width<true>(b.D, Y + (b.first * U + i) * W, U * W, out[i / P] + b.start + (v0 + i % P) * W * b.D, W,
                            kWidths);
  }
};

// the reduction (slot 3) of the group's columns into the sums R (rows t V + v, V = mul / W)
struct Reduce {
  template <typename T, int U, int P>
  static void run(const Direct& D, const Group<T>& group, T* const*, const T*, Vec<T>* R, int64_t v0,
                  Vec<T>* const* tiles) {
    for (int j = 0; j < 3; ++j) split_group<T, U, P>(D, group, j, v0, tiles[j]);
    for (int64_t r = 0; P * group.m < U && r < D.k[2]; ++r)  // the columns past m add nothing
      for (int i = P * group.m; i < U; ++i) tiles[2][r * U + i] = Vec<T>{};
    reduce_columns<T, U, P>(D, tiles[0], tiles[1], tiles[2], R + v0, D.mul / lanes<T>());
  }
};

// samples [first, last) of the arrays x (x1, x2, and g or none) in groups (module comment), Op::run on each;
// out: the output (Couple), C: the coefficients; R: the sums [nnz V] (Reduce), added in blocks of kFlush groups
template <typename T, typename Op>
void channels(const Direct& D, const std::array<const T*, 3>& x, T* out, const T* C, std::vector<Vec<T>>* R,
              int64_t first, int64_t last) {
  constexpr int W = lanes<T>();
  const int64_t V = D.mul / W;
  const int S = V == 1 ? kColumns : V == 2 ? kColumns / 2 : 1;
  const int64_t ahead = std::max<int64_t>(kPrefetch, S);  // samples
  std::vector<Vec<T>> X1(D.k[0] * kColumns), X2(D.k[1] * kColumns), X3(D.k[2] * kColumns, Vec<T>{});
  Vec<T>* tiles[3] = {X1.data(), X2.data(), X3.data()};
  std::vector<Vec<T>> block(R ? R->size() : 0, Vec<T>{});
  const int arrays = x[2] ? 3 : 2;
  Group<T> group{};
  T* outs[kColumns] = {};
  int64_t since = 0;
  for (int64_t n0 = first; n0 < last; n0 += S) {
    group.m = static_cast<int>(std::min<int64_t>(S, last - n0));
    for (int s = 0; s < group.m; ++s) {
      const int64_t n = n0 + s, next = n + ahead;
      if (next < last) {  // the rows of a sample ahead: streams the prefetchers miss
        for (int j = 0; j < arrays; ++j) prefetch_row<0>(x[j] + next * D.dims[j], D.dims[j]);
        if (out) prefetch_row<1>(out + next * D.dims[2], D.dims[2]);
      }
      for (int j = 0; j < arrays; ++j) group.rows[j][s] = x[j] + n * D.dims[j];
      if (out) outs[s] = out + n * D.dims[2];
    }
    Vec<T>* sums = block.data();
    if (S == 4) {
      Op::template run<T, 4, 1>(D, group, outs, C, sums, 0, tiles);
    } else if (S == 2) {
      Op::template run<T, 4, 2>(D, group, outs, C, sums, 0, tiles);
    } else {
      int64_t v0 = 0;
      for (; v0 + 4 <= V; v0 += 4) Op::template run<T, 4, 4>(D, group, outs, C, sums, v0, tiles);
      if (V - v0 == 3) Op::template run<T, 3, 3>(D, group, outs, C, sums, v0, tiles);
      if (V - v0 == 2) Op::template run<T, 2, 2>(D, group, outs, C, sums, v0, tiles);
      if (V - v0 == 1) Op::template run<T, 1, 1>(D, group, outs, C, sums, v0, tiles);
    }
    if (R && ++since == kFlush) flush<T>(block, *R), since = 0;
  }
  if (R) flush<T>(block, *R);
}

// ------------------------------------------------------------------------------------ the sample tiles
template <typename T>
void couple_tiles(const Direct& D, const T* C, const T* x1, const T* x2, int64_t n, int64_t first, int64_t last,
                  T* out) {
  constexpr int W = lanes<T>();
  std::vector<Vec<T>> X1(D.mul * D.k[0] + 1), X2(D.mul * D.k[1] + 1), Y(D.mul * D.k[2] + 1, Vec<T>{});
  for (int64_t tile = first; tile < last; ++tile) {
    const int64_t n0 = tile * W;
    const int valid = static_cast<int>(std::min<int64_t>(W, n - n0));
    load_tile(x1, D.dims[0], n0, valid, D.rows[0].data(), X1.data());
    load_tile(x2, D.dims[1], n0, valid, D.rows[1].data(), X2.data());
    for (int64_t u = 0; u < D.mul; u += D.U) {
      const PerColumn<T> coefficient{C + u, D.mul};
      if (D.U == kColumns) {
        couple<T, kColumns>(D, coefficient, &X1[u * D.k[0]], &X2[u * D.k[1]], &Y[u * D.k[2]]);
      } else {
        couple<T, 1>(D, coefficient, &X1[u * D.k[0]], &X2[u * D.k[1]], &Y[u * D.k[2]]);
      }
    }
    store_tile(Y.data(), D.rows[2].data(), out, D.dims[2], n0, valid);
  }
}

// tiles [first, last) of W samples: rows t mul + u of W samples of channel u
template <typename T>
std::vector<Vec<T>> reduce_tiles(const Direct& D, const T* x1, const T* x2, const T* g, int64_t n, int64_t first,
                                 int64_t last) {
  constexpr int W = lanes<T>();
  std::vector<Vec<T>> X1(D.mul * D.k[0] + 1), X2(D.mul * D.k[1] + 1), G(D.mul * D.k[2] + 1);
  std::vector<Vec<T>> block(D.nnz * D.mul, Vec<T>{}), total(D.nnz * D.mul, Vec<T>{});
  int64_t since = 0;
  for (int64_t tile = first; tile < last; ++tile) {
    const int64_t n0 = tile * W;
    const int valid = static_cast<int>(std::min<int64_t>(W, n - n0));  // the lanes past n load zeros
    load_tile(x1, D.dims[0], n0, valid, D.rows[0].data(), X1.data());
    load_tile(x2, D.dims[1], n0, valid, D.rows[1].data(), X2.data());
    load_tile(g, D.dims[2], n0, valid, D.rows[2].data(), G.data());
    for (int64_t u = 0; u < D.mul; u += D.U) {
      const Vec<T>* p[3] = {&X1[u * D.k[0]], &X2[u * D.k[1]], &G[u * D.k[2]]};
      if (D.U == kColumns) {
        reduce_columns<T, kColumns, kColumns>(D, p[0], p[1], p[2], block.data() + u, D.mul);
      } else {
        reduce_columns<T, 1, 1>(D, p[0], p[1], p[2], block.data() + u, D.mul);
      }
    }
    if (++since == kFlush) flush<T>(block, total), since = 0;
  }
  flush<T>(block, total);
  return total;
}

// ------------------------------------------------------------------------------------ the ops
at::Tensor direct_weighted(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& coefficients,
                           const at::Tensor& values, const at::Tensor& rows, const at::Tensor& meta) {
  TORCH_CHECK(x1.device().is_cpu() && x2.device().is_cpu() && coefficients.device().is_cpu(),
              "gaunt direct_weighted: CPU tensors only");
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && x1.size(0) == x2.size(0), "gaunt direct_weighted: inputs [n, dim]");
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type() && x1.scalar_type() == coefficients.scalar_type() &&
                  x1.scalar_type() == values.scalar_type(),
              "gaunt direct_weighted: inputs and coefficients must share one dtype");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous() && rows.scalar_type() == at::kLong &&
                  rows.is_contiguous(),
              "gaunt direct_weighted: meta and rows must be contiguous int64");
  const int W = x1.scalar_type() == at::kDouble ? lanes<double>() : lanes<float>();
  const Direct D(meta.data_ptr<int64_t>(), W);
  TORCH_CHECK(x1.size(1) == D.dims[0] && x2.size(1) == D.dims[1], "gaunt direct_weighted: input sizes do not match");
  TORCH_CHECK(coefficients.dim() == 2 && coefficients.size(0) == D.nnz && coefficients.size(1) == D.mul &&
                  rows.numel() == D.nnz && values.numel() == D.nnz,
              "gaunt direct_weighted: coefficients must be [nnz, mul], values and rows [nnz]");
  const int64_t n = x1.size(0);
  at::Tensor a = x1.contiguous(), b = x2.contiguous(), given = coefficients.contiguous(), k = values.contiguous();
  const bool zero = D.channels(W) && D.mul * D.k[2] < D.dims[2];  // outputs in no block stay zero
  at::Tensor out = zero ? at::zeros({n, D.dims[2]}, x1.options()) : at::empty({n, D.dims[2]}, x1.options());
  const int64_t work = D.mul * (D.nnz + D.k[0] + D.k[1] + D.k[2]);  // per sample, in one-lane operations
  const int64_t* row = rows.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_direct_weighted", [&] {
    constexpr int L = lanes<scalar_t>();
    std::vector<scalar_t> C(D.nnz * D.mul);  // C[t] = k_t coefficients[rows[t]]: in the order of this list
    const scalar_t* source = given.data_ptr<scalar_t>();
    const scalar_t* kt = k.data_ptr<scalar_t>();
    for (int64_t t = 0; t < D.nnz; ++t) {
      TORCH_CHECK(row[t] >= 0 && row[t] < D.nnz, "gaunt direct_weighted: a row outside the coefficients");
      for (int64_t u = 0; u < D.mul; ++u) C[t * D.mul + u] = kt[t] * source[row[t] * D.mul + u];
    }
    const scalar_t* p1 = a.data_ptr<scalar_t>();
    const scalar_t* p2 = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(1, work));  // samples
    if (D.channels(L)) {
      at::parallel_for(0, n, grain, [&](int64_t first, int64_t last) {
        channels<scalar_t, Couple>(D, {p1, p2, nullptr}, po, C.data(), nullptr, first, last);
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
  TORCH_CHECK(x1.device().is_cpu() && x2.device().is_cpu() && g.device().is_cpu(),
              "gaunt direct_reduce: CPU tensors only");
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && g.dim() == 2 && x1.size(0) == x2.size(0) && x1.size(0) == g.size(0),
              "gaunt direct_reduce: inputs [n, dim]");
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type() && x1.scalar_type() == g.scalar_type() &&
                  x1.scalar_type() == values.scalar_type(),
              "gaunt direct_reduce: inputs and coefficients must share one dtype");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt direct_reduce: meta must be int64");
  const int W = x1.scalar_type() == at::kDouble ? lanes<double>() : lanes<float>();
  const Direct D(meta.data_ptr<int64_t>(), W);
  TORCH_CHECK(x1.size(1) == D.dims[0] && x2.size(1) == D.dims[1] && g.size(1) == D.dims[2],
              "gaunt direct_reduce: input sizes do not match");
  TORCH_CHECK(values.numel() == D.nnz, "gaunt direct_reduce: one coefficient per triple");
  const int64_t n = x1.size(0);
  at::Tensor a = x1.contiguous(), b = x2.contiguous(), c = g.contiguous(), k = values.contiguous();
  at::Tensor out = at::empty({D.nnz, D.mul}, x1.options());
  const int64_t work = D.mul * (D.nnz + D.k[0] + D.k[1] + D.k[2]);
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_direct_reduce", [&] {
    constexpr int L = lanes<scalar_t>();
    const scalar_t* p1 = a.data_ptr<scalar_t>();
    const scalar_t* p2 = b.data_ptr<scalar_t>();
    const scalar_t* pg = c.data_ptr<scalar_t>();
    const bool tiled = !D.channels(L);  // the sample tiles
    const int64_t units = tiled ? (n + L - 1) / L : n;  // samples or tiles
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(1, work) / (tiled ? L : 1));
    const int64_t ranges = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (units + grain - 1) / grain));
    std::vector<std::vector<Vec<scalar_t>>> partial(ranges);
    at::parallel_for(0, ranges, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t first = r * units / ranges, last = (r + 1) * units / ranges;
        if (tiled) {
          partial[r] = reduce_tiles<scalar_t>(D, p1, p2, pg, n, first, last);
        } else {
          partial[r].assign(D.nnz * (D.mul / L), Vec<scalar_t>{});
          channels<scalar_t, Reduce>(D, {p1, p2, pg}, nullptr, nullptr, &partial[r], first, last);
        }
      }
    });
    std::vector<Vec<scalar_t>>& sum = partial[0];
    for (int64_t r = 1; r < ranges; ++r)
      for (size_t j = 0; j < sum.size(); ++j) sum[j] += partial[r][j];
    scalar_t* po = out.data_ptr<scalar_t>();
    const scalar_t* kt = k.data_ptr<scalar_t>();
    if (!tiled) {  // row t V + v: channels v W .. v W + W - 1 of triple t, i.e. out[t, v W ..]
      std::memcpy(po, sum.data(), sizeof(scalar_t) * D.nnz * D.mul);
    } else {  // row t mul + u: W samples of channel u, summed across lanes
      for (int64_t j = 0; j < D.nnz * D.mul; ++j) {
        scalar_t s = 0;
        for (int lane = 0; lane < L; ++lane) s += sum[j][lane];
        po[j] = s;
      }
    }
    for (int64_t j = 0; j < D.nnz * D.mul; ++j) po[j] *= kt[j / D.mul];
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def(
      "direct_weighted(Tensor x1, Tensor x2, Tensor coefficients, Tensor values, Tensor rows, Tensor meta) -> "
      "Tensor");
  m.def("direct_reduce(Tensor x1, Tensor x2, Tensor g, Tensor values, Tensor meta) -> Tensor");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) {
  m.impl("direct_weighted", &direct_weighted);
  m.impl("direct_reduce", &direct_reduce);
}
