// One 64-byte SIMD register of floats or doubles as a GCC vector, and the shuffles of the direct kernels
// (csrc/direct.h) and of the scaled columns and tile blocks: W x W transposes of sample tiles, and the split of
// an irrep block of W channels (W D consecutive values) into D rows and its inverse.

#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

namespace gaunt_direct {

// a tile row: W values of one dtype as a GCC vector of 64 bytes (one zmm register)
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(64), may_alias));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(64), may_alias));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int lanes() {
  return static_cast<int>(64 / sizeof(T));
}

template <typename T>
using Int = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
template <typename T>
struct IVecOf {
  typedef Int<T> type __attribute__((vector_size(64)));
};
template <typename T>
using IVec = typename IVecOf<T>::type;

// constant lane tables: v[r][k] = f(r, k) for R rows of W lanes (loaded as integer vectors by lane_row)
template <typename T, int R>
struct Table {
  alignas(64) Int<T> v[R][lanes<T>()];
};
template <typename T, int R, typename F>
constexpr Table<T, R> table(F f) {
  Table<T, R> t{};
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < lanes<T>(); ++k) t.v[r][k] = f(r, k);
  return t;
}
template <typename T>
inline IVec<T> lane_row(const Int<T>* row) {
  IVec<T> v;
  __builtin_memcpy(&v, row, sizeof(v));
  return v;
}

// One step of the W x W transpose: the off-diagonal H x H blocks swap. For rows i (bit H clear) and i + H:
// new r[i][k] = (k & H) ? r[i + H][k - H] : r[i][k], new r[i + H][k] = (k & H) ? r[i + H][k] : r[i][k + H]:
// two-source shuffles of (r[i], r[i + H]) with the lanes of rows 0 and 1 of kTranspose.
template <typename T, int H>
inline constexpr Table<T, 2> kTranspose = table<T, 2>([](int r, int k) {
  return (k & H) ? lanes<T>() + k - (r == 0 ? H : 0) : k + (r == 0 ? 0 : H);
});

// r[k][i] <- r[i][k] for the W rows r (log2 W steps of W shuffles each)
template <typename T, int H = lanes<T>() / 2>
inline void transpose(Vec<T>* r) {
  const IVec<T> low = lane_row<T>(kTranspose<T, H>.v[0]), high = lane_row<T>(kTranspose<T, H>.v[1]);
#pragma GCC unroll 16
  for (int i = 0; i < lanes<T>(); ++i) {
    if (i & H) continue;
    const Vec<T> a = r[i], b = r[i + H];
    r[i] = __builtin_shuffle(a, b, low);
    r[i + H] = __builtin_shuffle(a, b, high);
  }
  if constexpr (H > 1) transpose<T, H / 2>(r);
}

// tile[rows[p]][j] = x[n0 + j, p] for j < n (0 for j >= n), p < dim
template <typename T>
void load_tile(const T* x, int64_t dim, int64_t n0, int n, const int32_t* rows, Vec<T>* tile) {
  constexpr int W = lanes<T>();
  const T* base = x + n0 * dim;
  int64_t p = 0;
  if (n == W) {
    Vec<T> r[W];
    for (; p + W <= dim; p += W) {
      for (int j = 0; j < W; ++j) __builtin_memcpy(&r[j], base + j * dim + p, sizeof(Vec<T>));
      transpose<T>(r);
      for (int i = 0; i < W; ++i) tile[rows[p + i]] = r[i];
    }
  }
  for (; p < dim; ++p) {
    T* dst = reinterpret_cast<T*>(tile + rows[p]);
    for (int j = 0; j < W; ++j) dst[j] = j < n ? base[j * dim + p] : T(0);
  }
}

// out[n0 + j, p] = tile[rows[p]][j] for j < n, p < dim
template <typename T>
void store_tile(const Vec<T>* tile, const int32_t* rows, T* out, int64_t dim, int64_t n0, int n) {
  constexpr int W = lanes<T>();
  T* base = out + n0 * dim;
  int64_t p = 0;
  if (n == W) {
    Vec<T> r[W];
    for (; p + W <= dim; p += W) {
      for (int i = 0; i < W; ++i) r[i] = tile[rows[p + i]];
      transpose<T>(r);
      for (int j = 0; j < W; ++j) __builtin_memcpy(base + j * dim + p, &r[j], sizeof(Vec<T>));
    }
  }
  for (; p < dim; ++p) {
    const T* src = reinterpret_cast<const T*>(tile + rows[p]);
    for (int j = 0; j < n; ++j) base[j * dim + p] = src[j];
  }
}

// ------------------------------------------------------------------ blocks of channels (mul_ir layout)
constexpr int kMaxBlock = 15;  // the widest block: an irrep of dimension 15 (l = 7)

// Row r of the shuffle of a block (D source vectors -> D rows), lane k: value f(r, k) of the W D ones, i.e.
// lane f % W of source f / W, taken from the pair of sources f / 2W by the two-source index f % 2W. Split
// (Interleave false): row m, lane j <- value j D + m; interleave: row q, lane i <- row (qW + i) % D, lane
// (qW + i) / D of the split rows, i.e. value ((qW + i) % D) W + (qW + i) / D.
template <int W, int D, bool Interleave>
constexpr int value_of(int r, int k) {
  return Interleave ? ((r * W + k) % D) * W + (r * W + k) / D : k * D + r;
}
template <typename T, int D, bool Interleave>
inline constexpr Table<T, D> kIndex =
    table<T, D>([](int r, int k) { return value_of<lanes<T>(), D, Interleave>(r, k) % (2 * lanes<T>()); });
template <typename T, int D, bool Interleave>
inline constexpr Table<T, D> kPair =
    table<T, D>([](int r, int k) { return value_of<lanes<T>(), D, Interleave>(r, k) / (2 * lanes<T>()); });

// row r of a shuffle of the N source vectors s (two-source shuffles, one per pair of sources)
template <typename T, int N, bool Interleave>
[[gnu::always_inline]] inline Vec<T> select(const Vec<T>* s, int r) {
  if constexpr (N == 1) return s[0];
  const IVec<T> index = lane_row<T>(kIndex<T, N, Interleave>.v[r]);
  Vec<T> out = __builtin_shuffle(s[0], s[1], index);
  if constexpr (N > 2) {
    const IVec<T> pair = lane_row<T>(kPair<T, N, Interleave>.v[r]);
#pragma GCC unroll 8
    for (int p = 1; 2 * p < N; ++p)
      out = pair == p ? __builtin_shuffle(s[2 * p], s[std::min(2 * p + 1, N - 1)], index) : out;
  }
  return out;
}

// D rows of W values, row q at src + q src_stride, shuffled into D rows at dst + r dst_stride: split the W
// channels of a D-dimensional block (W D consecutive values) into one row per m, or the inverse (Interleave)
template <typename T, int D, bool Interleave>
inline void shuffle_block(const T* src, int64_t src_stride, T* dst, int64_t dst_stride) {
  Vec<T> s[D];
  for (int q = 0; q < D; ++q) __builtin_memcpy(&s[q], src + q * src_stride, sizeof(Vec<T>));
#pragma GCC unroll 16
  for (int r = 0; r < D; ++r) {
    const Vec<T> row = select<T, D, Interleave>(s, r);
    __builtin_memcpy(dst + r * dst_stride, &row, sizeof(Vec<T>));
  }
}

// shuffle_block for a width w known at run time (1 <= w <= kMaxBlock), out of line (a jump table over the widths)
template <bool Interleave, typename T, int... D>
[[gnu::noinline]] void shuffle_any_width(int64_t w, const T* src, int64_t src_stride, T* dst, int64_t dst_stride,
                                         std::integer_sequence<int, D...>) {
  (void)((w == D + 1 && (shuffle_block<T, D + 1, Interleave>(src, src_stride, dst, dst_stride), true)) || ...);
}

// shuffle_block for a width w known at run time: the widths of l <= 1 and of (L + 1) <= 3 weights per channel
// (the blocks of the small degrees, run most often per value) inlined, the others out of line
template <bool Interleave, typename T, int... D>
inline void shuffle_width(int64_t w, const T* src, int64_t src_stride, T* dst, int64_t dst_stride,
                          std::integer_sequence<int, D...> widths) {
  switch (w) {
    case 1:
      return shuffle_block<T, 1, Interleave>(src, src_stride, dst, dst_stride);
    case 2:
      return shuffle_block<T, 2, Interleave>(src, src_stride, dst, dst_stride);
    case 3:
      return shuffle_block<T, 3, Interleave>(src, src_stride, dst, dst_stride);
    default:
      return shuffle_any_width<Interleave>(w, src, src_stride, dst, dst_stride, widths);
  }
}
constexpr auto kWidths = std::make_integer_sequence<int, kMaxBlock>{};

}  // namespace gaunt_direct
