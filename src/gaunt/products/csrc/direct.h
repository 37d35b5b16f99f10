// The direct CPU kernels' shared pieces (csrc/direct_program.cpp: one coefficient per triple;
// csrc/direct_weighted.cpp: a coefficient per triple and channel, and the reduction over samples;
// csrc/scaled_weights.cpp: the plain program on blocks of scaled samples, run_channels / run_tiles).
//
// A sphere program's sparse per-channel coupling list (gaunt.products.coupling),
//
//   out[n, pos_out[u, c]] = sum_{triples t with c_t = c} C(t, u) x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]],
//
// runs on rows of W values of one coefficient (W: one 64-byte SIMD register, 16 floats or 8 doubles), so
// that a triple is a multiply and a multiply-add of W values, Y[c] += C (X1[a_t] * X2[b_t]) (the triples of
// one c in a row), U = kColumns columns of W side by side (U independent accumulators). A column is, in one of
// two tilings:
//
// * channels (the e3nn mul_ir layout, mul a multiple of W): W channels of one sample. Each input is a list
//   of blocks, D coefficients at x[n, start + u D + m] (m < D: an irrep of dimension D), so W D consecutive
//   values, split into D rows by lane shuffles; the output blocks are interleaved back the same way.
// * samples (any layout): W samples of one channel. A tile's input rows [W, dim] are transposed in cache
//   (W x W register transposes: log2 W steps of two-source shuffles) into rows ((u / U) k + a) U + u % U
//   (coefficient a of channel u), and the output rows transposed back. Positions of an input that no
//   channel reads go to a spare row; outputs that no channel writes read a zero row.
//
// The list arrives as `meta` (int64, built by cpu_direct.pack_direct): header [mul, dim1, dim2, dim_out, k1,
// k2, k3, nnz], the tile row u k + a of every position of x1, x2 and out ([dim1], [dim2], [dim_out]; -1:
// none), a, b, c ([nnz] each, sorted by c), then per x1, x2, out its blocks: a count (-1: not blocked) and
// (start, D, first) each.

#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "lanes.h"

namespace gaunt_direct {


constexpr int kColumns = 4;  // columns of W lanes coupled side by side (independent accumulators)

// a block of one input or the output: D coefficients from `first` at positions start + u D + m
struct Block {
  int64_t start, D, first;
};

// the coupling list, read from meta: rows with -1 replaced by the scratch / zero row (the last one)
struct Direct {
  int64_t mul, dims[3], k[3], nnz;
  int64_t U;                           // channels side by side in the sample tiles (kColumns or 1)
  std::vector<int32_t> rows[3];        // tile row of every position of x1, x2, out (-1: the spare row)
  std::vector<int32_t> a, b;           // per triple
  std::vector<int32_t> group, target;  // triples [group[g], group[g + 1]) write coefficient target[g]
  std::vector<Block> blocks[3];        // of x1, x2, out (mul_ir layout)
  bool blocked;                        // every position lies in a block

  // the list of meta, for tiles of W lanes (the sample tiles' rows are only read where they are used)
  Direct(const int64_t* m, int W) {
    mul = m[0], nnz = m[7];
    for (int i = 0; i < 3; ++i) dims[i] = m[1 + i], k[i] = m[4 + i];
    const int64_t* row = m + 8;  // the rows, read last
    const int64_t* p = row + dims[0] + dims[1] + dims[2];
    for (int64_t t = 0; t < nnz; ++t) {
      a.push_back(static_cast<int32_t>(p[t]));
      b.push_back(static_cast<int32_t>(p[nnz + t]));
      const int32_t c = static_cast<int32_t>(p[2 * nnz + t]);
      if (t == 0 || c != target.back()) group.push_back(static_cast<int32_t>(t)), target.push_back(c);
    }
    group.push_back(static_cast<int32_t>(nnz));
    p += 3 * nnz;
    blocked = true;
    for (int i = 0; i < 3; ++i) {
      const int64_t count = *p++;
      blocked = blocked && count >= 0;
      for (int64_t g = 0; g < count; ++g, p += 3) {
        blocked = blocked && p[1] >= 1 && p[1] <= kMaxBlock;
        blocks[i].push_back({p[0], p[1], p[2]});
      }
    }
    U = mul % kColumns == 0 ? kColumns : 1;
    if (channels(W)) return;
    for (int i = 0; i < 3; ++i) {  // row u k + a -> ((u / U) k + a) U + u % U: U channels side by side
      const int32_t spare = static_cast<int32_t>(mul * k[i]);
      for (int64_t q = 0; q < dims[i]; ++q) {
        const int64_t u = row[q] / k[i], a = row[q] % k[i];
        rows[i].push_back(row[q] >= 0 ? static_cast<int32_t>(((u / U) * k[i] + a) * U + u % U) : spare);
      }
      row += dims[i];
    }
  }
  bool channels(int W) const { return blocked && mul % W == 0; }  // the channel tiles apply
  int64_t groups() const { return static_cast<int64_t>(target.size()); }
};

// U columns of W lanes side by side: Y[c U + i] = sum_{t: c_t = c} coefficient(t, i) X1[a_t U + i] X2[b_t U + i],
// i < U, for every written c (U independent accumulators per triple). coefficient(t, i) is a scalar (of the
// triple, or of the triple and the channel of column i) or a row of W values (one per lane)
template <typename T, int U, typename Coefficient>
inline void couple(const Direct& D, const Coefficient& coefficient, const Vec<T>* X1, const Vec<T>* X2, Vec<T>* Y) {
  const int32_t* a = D.a.data();
  const int32_t* b = D.b.data();
  const int64_t groups = D.groups();
  for (int64_t g = 0; g < groups; ++g) {
    int32_t t = D.group[g];
    Vec<T> acc[U];
    const Vec<T>* p1 = X1 + a[t] * U;
    const Vec<T>* p2 = X2 + b[t] * U;
    for (int i = 0; i < U; ++i) acc[i] = coefficient(t, i) * (p1[i] * p2[i]);
    for (++t; t < D.group[g + 1]; ++t) {
      p1 = X1 + a[t] * U, p2 = X2 + b[t] * U;
      for (int i = 0; i < U; ++i) acc[i] += coefficient(t, i) * (p1[i] * p2[i]);
    }
    for (int i = 0; i < U; ++i) Y[D.target[g] * U + i] = acc[i];
  }
}

// prefetch the cache lines of x[0 .. size) (RW: 0 read, 1 write)
constexpr int64_t kPrefetch = 2;  // samples ahead
template <int RW, typename T>
inline void prefetch_row(const T* x, int64_t size) {
  const char* begin = reinterpret_cast<const char*>(x);
  const char* end = reinterpret_cast<const char*>(x + size);
  for (const char* line = begin; line < end; line += 64) __builtin_prefetch(line, RW, 3);
}

// a column of the channel tiles: channels v W .. v W + W - 1 of one sample (its rows of x1, x2 and out)
template <typename T>
struct Column {
  const T* x[2];
  T* out;
  int64_t v;
};

// U columns through the blocks: split into X1, X2 (row a of column i at a U + i), coupled, interleaved out
template <typename T, int U, typename Coefficient>
inline void run_columns(const Direct& D, const Coefficient& coefficient, const Column<T>* columns, Vec<T>* X1,
                        Vec<T>* X2, Vec<T>* Y) {
  constexpr int W = lanes<T>();
  T* tile[2] = {reinterpret_cast<T*>(X1), reinterpret_cast<T*>(X2)};
  for (int i = 0; i < U; ++i)
    for (int s = 0; s < 2; ++s)
      for (const Block& b : D.blocks[s])
        shuffle_width<false>(b.D, columns[i].x[s] + b.start + columns[i].v * W * b.D, W,
                             tile[s] + (b.first * U + i) * W, U * W, kWidths);
  couple<T, U>(D, coefficient, X1, X2, Y);
  for (int i = 0; i < U; ++i)
    for (const Block& b : D.blocks[2])
      shuffle_width<true>(b.D, reinterpret_cast<const T*>(Y + b.first * U + i), U * W,
                          columns[i].out + b.start + columns[i].v * W * b.D, W, kWidths);
}

// ---------------------------------------------------------------- the unweighted program on rows of samples
// the coefficient of triple t, the same in every column
template <typename T>
struct PerTriple {
  const T* coefficient;
  T operator()(int32_t t, int) const { return coefficient[t]; }
};

// tiles [first, last) of W samples: rows (channel block, coefficient, channel) as in Direct::rows; the
// coefficients of channels u.. are coefficients_of(u) (a functor (t, column) -> coefficient)
template <typename T, typename CoefficientsOf>
void couple_sample_tiles(const Direct& D, CoefficientsOf coefficients_of, const T* x1, const T* x2, int64_t n,
                         int64_t first, int64_t last, T* out) {
  constexpr int W = lanes<T>();
  std::vector<Vec<T>> X1(D.mul * D.k[0] + 1), X2(D.mul * D.k[1] + 1), Y(D.mul * D.k[2] + 1, Vec<T>{});
  for (int64_t tile = first; tile < last; ++tile) {
    const int64_t n0 = tile * W;
    const int valid = static_cast<int>(std::min<int64_t>(W, n - n0));
    load_tile(x1, D.dims[0], n0, valid, D.rows[0].data(), X1.data());
    load_tile(x2, D.dims[1], n0, valid, D.rows[1].data(), X2.data());
    for (int64_t u = 0; u < D.mul; u += D.U) {
      const auto coefficient = coefficients_of(u);
      if (D.U == kColumns)
        couple<T, kColumns>(D, coefficient, &X1[u * D.k[0]], &X2[u * D.k[1]], &Y[u * D.k[2]]);
      else
        couple<T, 1>(D, coefficient, &X1[u * D.k[0]], &X2[u * D.k[1]], &Y[u * D.k[2]]);
    }
    store_tile(Y.data(), D.rows[2].data(), out, D.dims[2], n0, valid);
  }
}

// the sample tiles of the plain program: one coefficient per triple
template <typename T>
void run_tiles(const Direct& D, const T* coefficient, const T* x1, const T* x2, int64_t n, int64_t first,
               int64_t last, T* out) {
  couple_sample_tiles(D, [&](int64_t) { return PerTriple<T>{coefficient}; }, x1, x2, n, first, last, out);
}

// samples [first, last) in columns of W channels of one sample (the mul_ir blocks), kColumns at a time
template <typename T>
void run_channels(const Direct& D, const T* coefficient, const T* x1, const T* x2, int64_t first, int64_t last,
                  T* out) {
  constexpr int W = lanes<T>();
  std::vector<Vec<T>> X1(D.k[0] * kColumns), X2(D.k[1] * kColumns), Y(D.k[2] * kColumns, Vec<T>{});
  const PerTriple<T> per_triple{coefficient};
  Column<T> columns[kColumns];
  int filled = 0;
  for (int64_t n = first; n < last; ++n) {
    if (n + kPrefetch < last) {  // the rows of a sample kPrefetch ahead: three streams the prefetchers miss
      prefetch_row<0>(x1 + (n + kPrefetch) * D.dims[0], D.dims[0]);
      prefetch_row<0>(x2 + (n + kPrefetch) * D.dims[1], D.dims[1]);
      prefetch_row<1>(out + (n + kPrefetch) * D.dims[2], D.dims[2]);
    }
    for (int64_t v = 0; v < D.mul / W; ++v) {
      columns[filled++] = {{x1 + n * D.dims[0], x2 + n * D.dims[1]}, out + n * D.dims[2], v};
      if (filled == kColumns) {
        run_columns<T, kColumns>(D, per_triple, columns, X1.data(), X2.data(), Y.data());
        filled = 0;
      }
    }
  }
  for (int i = 0; i < filled; ++i) run_columns<T, 1>(D, per_triple, columns + i, X1.data(), X2.data(), Y.data());
}

}  // namespace gaunt_direct
