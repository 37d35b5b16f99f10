// The loops of the weighted direct kernels (csrc/direct_weighted.cpp): a coefficient per triple and channel
// C[t, u], and the sums over samples of the reduction dT/dC (the form T: direct_weighted.cpp).
//
// Channel tiles: a group of columns is S samples times P consecutive channel blocks (block v: channels v W ..
// v W + W - 1), U = S P <= kColumns columns; column i is sample i / P, block v0 + i % P, its coefficient a at
// row a U + i of a tile. One sample at a time (S = 1, P = 4, then the V % 4 blocks left) where there are
// V >= 3 blocks: its rows are read and written in order and few rows crowd the L1 cache (groups of 2 samples x
// 2 blocks took 1.8x the time at L = 1, 64 channels, float32); 4 or 2 samples for V = 1 or 2 (short rows), so
// that U = 4 columns keep 4 accumulators. The columns of a group past its valid samples hold stale values:
// never written out, zeroed in the tile of g before a reduction.
//
// Sums: rows of W values per triple (channels: W channels; samples: W samples of one channel, summed across
// lanes at the end), in blocks of kFlush groups (or tiles) added to a running total: shorter sums than one
// running sum over all samples.

#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "direct.h"

namespace gaunt_weighted {

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

// running sums: `block` (the sums of the last kFlush groups) added to `total` every kFlush groups
template <typename T>
struct Sums {
  std::vector<Vec<T>> block, total;
  int64_t since = 0;
  explicit Sums(size_t size) : block(size, Vec<T>{}), total(size, Vec<T>{}) {}
  void flush() {
    for (size_t j = 0; j < block.size(); ++j) total[j] += block[j], block[j] = Vec<T>{};
    since = 0;
  }
  void step() {
    if (++since == kFlush) flush();
  }
};

// ------------------------------------------------------------------------------------ the channel tiles
// a group: in[j][s], out[j][s]: sample s's rows of the input and output arrays j; m <= S samples valid
template <typename T>
struct Group {
  const T* in[3][kColumns];
  T* out[2][kColumns];
  int m;
};

// the blocks of the rows `rows` of the group's columns split into the tile X
template <typename T, int U, int P>
inline void split_group(const std::vector<Block>& blocks, const T* const* rows, int m, int64_t v0, Vec<T>* X) {
  constexpr int W = lanes<T>();
  T* tile = reinterpret_cast<T*>(X);
  for (int i = 0; i < P * m; ++i)
    for (const Block& b : blocks)
      shuffle_width<false>(b.D, rows[i / P] + b.start + (v0 + i % P) * W * b.D, W, tile + (b.first * U + i) * W,
                           U * W, kWidths);
}

// the tile Y interleaved into the rows `rows` of the group's columns
template <typename T, int U, int P>
inline void interleave_group(const std::vector<Block>& blocks, const Vec<T>* Y, int m, int64_t v0, T* const* rows) {
  constexpr int W = lanes<T>();
  const T* tile = reinterpret_cast<const T*>(Y);
  for (int i = 0; i < P * m; ++i)
    for (const Block& b : blocks)
      shuffle_width<true>(b.D, tile + (b.first * U + i) * W, U * W, rows[i / P] + b.start + (v0 + i % P) * W * b.D,
                          W, kWidths);
}

// the columns past the group's valid samples: zero in the tile X of k rows
template <typename T, int U, int P>
inline void zero_stale(Vec<T>* X, int64_t k, int m) {
  for (int64_t r = 0; P * m < U && r < k; ++r)
    for (int i = P * m; i < U; ++i) X[r * U + i] = Vec<T>{};
}

// samples [first, last) in groups: op.template run<U, P>(group, v0) on each; `in` and `out` are the arrays of
// `D.dims[0, 1, 2]` (x1, x2, g) and of dims_out values per sample (null: none)
template <typename T, typename Op>
void channels(const Direct& D, Op& op, const std::array<const T*, 3>& in, const std::array<T*, 2>& out,
              const std::array<int64_t, 2>& dims_out, int64_t first, int64_t last) {
  const int64_t V = D.mul / lanes<T>();
  const int S = V == 1 ? kColumns : V == 2 ? kColumns / 2 : 1;
  const int64_t ahead = std::max<int64_t>(kPrefetch, S);  // samples
  Group<T> group{};
  for (int64_t n0 = first; n0 < last; n0 += S) {
    group.m = static_cast<int>(std::min<int64_t>(S, last - n0));
    for (int s = 0; s < group.m; ++s) {
      const int64_t n = n0 + s, next = n + ahead;
      for (int j = 0; j < 3; ++j) {
        if (!in[j]) continue;
        if (next < last) prefetch_row<0>(in[j] + next * D.dims[j], D.dims[j]);  // streams the prefetchers miss
        group.in[j][s] = in[j] + n * D.dims[j];
      }
      for (int j = 0; j < 2; ++j) {
        if (!out[j]) continue;
        if (next < last) prefetch_row<1>(out[j] + next * dims_out[j], dims_out[j]);
        group.out[j][s] = out[j] + n * dims_out[j];
      }
    }
    if (S == 4) {
      op.template run<4, 1>(group, 0);
    } else if (S == 2) {
      op.template run<4, 2>(group, 0);
    } else {
      int64_t v0 = 0;
      for (; v0 + 4 <= V; v0 += 4) op.template run<4, 4>(group, v0);
      if (V - v0 == 3) op.template run<3, 3>(group, v0);
      if (V - v0 == 2) op.template run<2, 2>(group, v0);
      if (V - v0 == 1) op.template run<1, 1>(group, v0);
    }
  }
}

// ------------------------------------------------------------------------------------ the sample tiles
// tiles [first, last) of W samples: out = the list D on (x1, x2) with the coefficients C [nnz, mul]
template <typename T>
void couple_tiles(const Direct& D, const T* C, const T* x1, const T* x2, int64_t n, int64_t first, int64_t last,
                  T* out) {
  couple_sample_tiles(D, [&](int64_t u) { return PerColumn<T>{C + u, D.mul}; }, x1, x2, n, first, last, out);
}

// tiles [first, last) of W samples: the sums of the list D on (x1, x2, g), rows t mul + u of W samples of
// channel u
template <typename T>
std::vector<Vec<T>> reduce_tiles(const Direct& D, const T* x1, const T* x2, const T* g, int64_t n, int64_t first,
                                 int64_t last) {
  constexpr int W = lanes<T>();
  std::vector<Vec<T>> X1(D.mul * D.k[0] + 1), X2(D.mul * D.k[1] + 1), G(D.mul * D.k[2] + 1);
  Sums<T> sums(D.nnz * D.mul);
  for (int64_t tile = first; tile < last; ++tile) {
    const int64_t n0 = tile * W;
    const int valid = static_cast<int>(std::min<int64_t>(W, n - n0));  // the lanes past n load zeros
    load_tile(x1, D.dims[0], n0, valid, D.rows[0].data(), X1.data());
    load_tile(x2, D.dims[1], n0, valid, D.rows[1].data(), X2.data());
    load_tile(g, D.dims[2], n0, valid, D.rows[2].data(), G.data());
    for (int64_t u = 0; u < D.mul; u += D.U) {
      const Vec<T>* p[3] = {&X1[u * D.k[0]], &X2[u * D.k[1]], &G[u * D.k[2]]};
      if (D.U == kColumns) {
        reduce_columns<T, kColumns, kColumns>(D, p[0], p[1], p[2], sums.block.data() + u, D.mul);
      } else {
        reduce_columns<T, 1, 1>(D, p[0], p[1], p[2], sums.block.data() + u, D.mul);
      }
    }
    sums.step();
  }
  sums.flush();
  return sums.total;
}

}  // namespace gaunt_weighted
