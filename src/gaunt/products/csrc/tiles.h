// Tiles of (sample, channel) columns: the pieces that the fused CPU kernels share.
//
// A kernel of this library works on W columns at a time, each a (sample, channel) pair (a tile). A tile row
// is one GCC vector of W values, so a stage "small matrix times a [K, W] block" keeps its accumulators in
// registers, and a tile's grid values (a few [n_phi, n_theta] fields of W columns) stay in cache. Here:
//
//   matmul         out[i, v] = sum_k M[i, k] in[k, v], rows blocked by RB and cut to their non-zero range
//   synthesize     G[r] = theta[r] X[r] (theta [R, n_theta, C]),  F = phi G (phi [n_phi, R])
//   project        C = phi H (phi [R, n_phi]),  Y[r] = theta[r] C[r] (theta [R, C, n_theta])
//                  (reflected.h: the same with a phi stage on half the points)
//   gather_rows    X[row, j] = x[sample_j, index[row, channel_j]]  (0 where the index is -1)
//   scatter_rows   out[sample_j, inverse[row, channel_j]] += Y[row, j]  (skipped where -1)
//   for_each_tile  the tiles of samples [begin, end), with a hook before the first tile of new samples
//
// Index arrays [rows, mul] carry a pattern (kind, start, stride) per row right after them: kind 0, every
// entry -1; kind 1, channel u maps to start + u stride (the e3nn mul_ir layout); kind 2, anything else. A
// tile of W consecutive channels of one sample takes the strided path (AVX-512 gathers and scatters).

#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace gaunt_tiles {

#ifndef GAUNT_TILE
#define GAUNT_TILE 16
#endif
constexpr int W = GAUNT_TILE;  // columns per tile

// a tile row: W values as one GCC vector (attributes on a dependent alias are ignored, hence the traits)
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(W * sizeof(float)), may_alias));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(W * sizeof(double)), may_alias));
};
template <typename T>
using Vec = typename VecOf<T>::type;
static_assert(sizeof(Vec<float>) == W * sizeof(float), "the tile vector type");

#if defined(__AVX512F__)
constexpr int kAccumulatorBytes = 28 * 64;  // 32 zmm registers, 4 kept for operands
#elif defined(__AVX__)
constexpr int kAccumulatorBytes = 12 * 32;
#else
constexpr int kAccumulatorBytes = 12 * 16;
#endif

// rows per register block: as many accumulators of one tile row as fit in the registers (1..8)
template <typename T>
constexpr int row_block() {
  return std::max(1, std::min<int>(8, kAccumulatorBytes / static_cast<int>(sizeof(Vec<T>))));
}

// a table [rows, cols] (row-major) with the non-zero column range [lo, hi) of every row
template <typename T>
struct Mat {
  const T* a;
  const int64_t* range;
  int rows, cols;
};

// out[i, v] = sum_{k in [lo, hi)} A[i, k] in[k, v] for RB rows i, v < V (in, out: [., V] with strides ldin, ldout)
template <typename T, int RB>
inline void block_rows(const T* A, int lda, int lo, int hi, const Vec<T>* in, int64_t ldin, Vec<T>* out,
                       int64_t ldout, int V) {
  for (int v = 0; v < V; ++v) {
    Vec<T> acc[RB];
    for (int r = 0; r < RB; ++r) acc[r] = Vec<T>{};
    for (int k = lo; k < hi; ++k) {
      const Vec<T> x = in[k * ldin + v];
      for (int r = 0; r < RB; ++r) acc[r] += A[r * lda + k] * x;
    }
    for (int r = 0; r < RB; ++r) out[r * ldout + v] = acc[r];
  }
}

// the union of the non-zero ranges of the n rows i, i + step, ..
inline void row_range(const int64_t* range, int i, int n, int& lo, int& hi, int step = 1) {
  lo = static_cast<int>(range[2 * i]);
  hi = static_cast<int>(range[2 * i + 1]);
  for (int r = i + step; r < i + n * step; r += step) {
    lo = std::min(lo, static_cast<int>(range[2 * r]));
    hi = std::max(hi, static_cast<int>(range[2 * r + 1]));
  }
  hi = std::max(lo, hi);
}

// f(std::integral_constant<int, N>{}, i) for the blocks of N = RB rows from row i of `rows`, the last rows_left < RB
// as one block of exactly that many (each block size a compile-time constant: its accumulators are registers)
template <int N, typename F>
inline void tail_block(int n, int i, F& f) {
  if constexpr (N > 0) {
    if (n == N) return f(std::integral_constant<int, N>{}, i);
    tail_block<N - 1>(n, i, f);
  }
}
template <int RB, typename F>
inline void for_row_blocks(int rows, F&& f) {
  int i = 0;
  for (; i + RB <= rows; i += RB) f(std::integral_constant<int, RB>{}, i);
  if (i < rows) tail_block<RB - 1>(rows - i, i, f);
}

// the last rows_left < RB rows, with a register block of exactly that many rows
template <typename T, int N>
inline void tail_rows(int n, const T* A, int lda, int lo, int hi, const Vec<T>* in, int64_t ldin, Vec<T>* out,
                      int64_t ldout, int V) {
  if constexpr (N > 0) {
    if (n == N) return block_rows<T, N>(A, lda, lo, hi, in, ldin, out, ldout, V);
    tail_rows<T, N - 1>(n, A, lda, lo, hi, in, ldin, out, ldout, V);
  }
}

// out[i, v] = sum_k M[i, k] in[k, v] for every row i of M
template <typename T>
void matmul(const Mat<T>& M, const Vec<T>* in, int64_t ldin, Vec<T>* out, int64_t ldout, int V) {
  constexpr int RB = row_block<T>();
  int i = 0, lo, hi;
  for (; i + RB <= M.rows; i += RB) {
    row_range(M.range, i, RB, lo, hi);
    block_rows<T, RB>(M.a + i * M.cols, M.cols, lo, hi, in, ldin, out + i * ldout, ldout, V);
  }
  if (i < M.rows) {
    row_range(M.range, i, M.rows - i, lo, hi);
    tail_rows<T, RB - 1>(M.rows - i, M.a + i * M.cols, M.cols, lo, hi, in, ldin, out + i * ldout, ldout, V);
  }
}

// ---------------------------------------------------------------- the columns of a tile and their gathers
// n valid columns, each a (sample, channel) pair; strided: W consecutive channels of one sample
struct Tile {
  int n;
  bool strided;
  int64_t sample[W], channel[W];
};

// dst[j] = src[j stride] and dst[j * stride] += y[j], j < W: AVX-512 gathers and scatters where there are
template <typename T>
inline void load_strided(const T* src, int64_t stride, T* dst) {
  for (int j = 0; j < W; ++j) dst[j] = src[j * stride];
}
template <typename T>
inline void add_strided(const T* y, int64_t stride, T* dst) {
  for (int j = 0; j < W; ++j) dst[j * stride] += y[j];
}
#if defined(__AVX512F__) && GAUNT_TILE == 16
inline __m512i lanes(int64_t stride) {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi32(static_cast<int>(stride)));
}
template <>
inline void load_strided<float>(const float* src, int64_t stride, float* dst) {
  _mm512_storeu_ps(dst, _mm512_i32gather_ps(lanes(stride), src, 4));
}
template <>
inline void add_strided<float>(const float* y, int64_t stride, float* dst) {
  const __m512i index = lanes(stride);
  _mm512_i32scatter_ps(dst, index, _mm512_add_ps(_mm512_i32gather_ps(index, dst, 4), _mm512_loadu_ps(y)), 4);
}
#endif

enum RowKind : int64_t { kNone = 0, kStrided = 1, kGeneral = 2 };

// X[row, j] = x[sample_j * ld + index[row, channel_j]] for rows < rows (0 where the index is -1)
template <typename T>
void gather_rows(const int64_t* index, int64_t rows, int64_t mul, const Tile& tile, const T* x, int64_t ld,
                 Vec<T>* X, const int64_t* patterns = nullptr) {  // patterns: the rows' own (default: after index)
  const int64_t* pattern = patterns ? patterns : index + rows * mul;
  for (int64_t row = 0; row < rows; ++row) {
    T* dst = reinterpret_cast<T*>(X + row);
    const int64_t kind = pattern[3 * row];
    if (kind == kNone) {
      X[row] = Vec<T>{};
    } else if (kind == kStrided && tile.strided) {
      const int64_t stride = pattern[3 * row + 2];
      load_strided(x + tile.sample[0] * ld + pattern[3 * row + 1] + tile.channel[0] * stride, stride, dst);
    } else {
      const int64_t* idx = index + row * mul;
      for (int j = 0; j < W; ++j) {
        const int64_t i = j < tile.n ? idx[tile.channel[j]] : -1;
        dst[j] = i >= 0 ? x[tile.sample[j] * ld + i] : T(0);
      }
    }
  }
}

// out[sample_j * ld + inverse[row, channel_j]] += Y[row, j] where the inverse is >= 0
template <typename T>
void scatter_rows(const int64_t* inverse, int64_t rows, int64_t mul, const Tile& tile, const Vec<T>* Y, T* out,
                  int64_t ld, const int64_t* patterns = nullptr) {
  const int64_t* pattern = patterns ? patterns : inverse + rows * mul;
  for (int64_t row = 0; row < rows; ++row) {
    const T* y = reinterpret_cast<const T*>(Y + row);
    const int64_t kind = pattern[3 * row];
    if (kind == kNone) continue;
    if (kind == kStrided && tile.strided) {
      const int64_t stride = pattern[3 * row + 2];
      add_strided(y, stride, out + tile.sample[0] * ld + pattern[3 * row + 1] + tile.channel[0] * stride);
    } else {
      const int64_t* inv = inverse + row * mul;
      for (int j = 0; j < tile.n; ++j) {
        const int64_t k = inv[tile.channel[j]];
        if (k >= 0) out[tile.sample[j] * ld + k] += y[j];
      }
    }
  }
}

// prefetch the rows of samples [first, last) of a [n, ld] array (RW: 0 read, 1 write)
template <typename T, int RW>
inline void prefetch_rows(const T* x, int64_t ld, int64_t first, int64_t last) {
  const char* begin = reinterpret_cast<const char*>(x + first * ld);
  const char* end = reinterpret_cast<const char*>(x + last * ld);
  for (const char* line = begin; line < end; line += 64) __builtin_prefetch(line, RW, 3);
}

// visit(tile) for the tiles of columns c = sample * mul + channel of samples [begin, end), calling
// new_samples(first, last) just before the first tile that reaches samples [first, last) (to zero their output
// rows while they are about to be in cache, and to prefetch what follows)
template <typename NewSamples, typename Visit>
void for_each_tile(int64_t mul, int64_t begin, int64_t end, NewSamples&& new_samples, Visit&& visit) {
  Tile tile;
  int64_t ready = begin;  // samples [begin, ready) were announced
  for (int64_t c = begin * mul; c < end * mul; c += W) {
    tile.n = static_cast<int>(std::min<int64_t>(W, end * mul - c));
    for (int j = 0; j < tile.n; ++j) tile.sample[j] = (c + j) / mul, tile.channel[j] = (c + j) % mul;
    tile.strided = tile.n == W && tile.sample[0] == tile.sample[W - 1];
    const int64_t last = tile.sample[tile.n - 1] + 1;
    if (last > ready) {
      new_samples(ready, last);
      ready = last;
    }
    visit(tile);
  }
}

}  // namespace gaunt_tiles
