// The direct CPU kernel of a sphere program: its sparse per-channel coupling list (gaunt.products.coupling),
//
//   out[n, pos_out[u, c]] = sum_{triples t with c_t = c} coefficient_t x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]],
//
// for every channel u and sample n. The data are brought into tiles whose rows are W values of one
// coefficient (W = one 64-byte SIMD register of the dtype: 16 floats, 8 doubles), so that every triple is
// one multiply and one fused multiply-add of W values,
//
//   Y[c] = sum_t coefficient_t (X1[a_t] * X2[b_t])      (the triples of one c in a row: one accumulator),
//
// in one of two ways:
//
// * channels (the e3nn mul_ir layout, mul a multiple of W): a tile is W channels of one sample. Each
//   input is a list of blocks: D coefficients read as x[n, start + u D + m] (m < D, an irrep of dimension
//   D), i.e. W D consecutive values, split into D rows by lane shuffles (a D = 1 block is one plain load);
//   the output blocks are interleaved back the same way. Every value is read and written once, in order.
// * samples (any layout): a tile is W samples of every channel: the tile's input rows [W, dim] are
//   transposed in cache into rows (channel u, coefficient a) of W samples (16 x 16 / 8 x 8 register
//   transposes with AVX-512, scalar loops otherwise), and the output rows transposed back. Positions of
//   an input that no channel reads go to a scratch row; outputs that no channel writes read a zero row.
//
// Threads split the samples (at::parallel_for): no two threads write one output row.
//
// The program arrives as two tensors built by cpu_direct.py: `values` (the coefficients, in the input
// dtype) and `meta` (int64): header [mul, dim1, dim2, dim_out, k1, k2, k3, nnz], then the tile row u k + a
// of every position of x1, x2 and out ([dim1], [dim2], [dim_out]; -1: none), then a, b, c ([nnz] each,
// sorted by c), then per x1, x2, out its blocks: a count (-1: not blocked) and (start, D, first) each.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

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

// rows[j] <- rows[.][j] transposed in registers: afterwards rows[k][i] holds what rows[i][k] held
template <typename T>
inline bool transpose_in_registers(Vec<T>* rows);
#if defined(__AVX512F__)
template <>
inline bool transpose_in_registers<float>(Vec<float>* r) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // t[2i + e], lane L: rows 2i, 2i + 1 at elements 4L + 2e, 4L + 2e + 1
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // u[4g + e], lane L: rows 4g .. 4g + 3 at element 4L + e
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int e = 0; e < 4; ++e) {  // 128-bit lanes: output row 4L + e gathers lane L of u[e], u[4+e], u[8+e], u[12+e]
    const __m512 v0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88), w0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xdd);
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xdd);
    r[e] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[4 + e] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    r[8 + e] = _mm512_shuffle_f32x4(v0, v1, 0xdd);
    r[12 + e] = _mm512_shuffle_f32x4(w0, w1, 0xdd);
  }
  return true;
}
template <>
inline bool transpose_in_registers<double>(Vec<double>* r) {
  __m512d t[8];
  for (int h = 0; h < 4; ++h) {  // t[2h + e], lane L: rows 2h, 2h + 1 at element 2L + e
    t[2 * h] = _mm512_unpacklo_pd(r[2 * h], r[2 * h + 1]);
    t[2 * h + 1] = _mm512_unpackhi_pd(r[2 * h], r[2 * h + 1]);
  }
  for (int e = 0; e < 2; ++e) {  // output row 2L + e gathers lane L of t[e], t[2+e], t[4+e], t[6+e]
    const __m512d v0 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x88), w0 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xdd);
    const __m512d v1 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x88);
    const __m512d w1 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xdd);
    r[e] = _mm512_shuffle_f64x2(v0, v1, 0x88);
    r[2 + e] = _mm512_shuffle_f64x2(w0, w1, 0x88);
    r[4 + e] = _mm512_shuffle_f64x2(v0, v1, 0xdd);
    r[6 + e] = _mm512_shuffle_f64x2(w0, w1, 0xdd);
  }
  return true;
}
#else
template <typename T>
inline bool transpose_in_registers(Vec<T>*) {
  return false;  // no register transpose here: the scalar loops run
}
#endif

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
      if (!transpose_in_registers<T>(r)) break;
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
      if (!transpose_in_registers<T>(r)) break;
      for (int j = 0; j < W; ++j) __builtin_memcpy(base + j * dim + p, &r[j], sizeof(Vec<T>));
    }
  }
  for (; p < dim; ++p) {
    const T* src = reinterpret_cast<const T*>(tile + rows[p]);
    for (int j = 0; j < n; ++j) base[j * dim + p] = src[j];
  }
}

// ------------------------------------------------------------------ blocks of channels (mul_ir layout)
template <typename T>
using Int = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
template <typename T>
struct IVecOf {
  typedef Int<T> type __attribute__((vector_size(64)));
};
template <typename T>
using IVec = typename IVecOf<T>::type;
constexpr int kMaxBlock = 15;  // the widest block: an irrep of dimension 15 (l = 7)
constexpr int kColumns = 4;    // columns of W lanes coupled side by side (independent accumulators)

// Row r (r < D) of a block's shuffle, lane i: value lane[r][i] of source vector vec[r][i] among D source
// vectors, taken from the pair of sources vec / 2 by the two-source shuffle index[r][i] = lane + W (vec % 2).
// Split (Interleave false): row m, lane j <- value j D + m of the W D consecutive ones; interleave: the inverse.
template <typename T, int D>
struct Shuffle {
  alignas(64) Int<T> index[D][lanes<T>()];
  alignas(64) Int<T> pair[D][lanes<T>()];
};
template <typename T, int D, bool Interleave>
constexpr Shuffle<T, D> make_shuffle() {
  constexpr int W = lanes<T>();
  Shuffle<T, D> s{};
  for (int r = 0; r < D; ++r)
    for (int i = 0; i < W; ++i) {
      const int f = Interleave ? r * W + i : i * D + r;  // the value's place among the W D consecutive ones
      const int vec = Interleave ? f % D : f / W, lane = Interleave ? f / D : f % W;
      s.index[r][i] = lane + W * (vec % 2);
      s.pair[r][i] = vec / 2;
    }
  return s;
}
template <typename T, int D, bool Interleave>
inline constexpr Shuffle<T, D> kShuffle = make_shuffle<T, D, Interleave>();

// row r of a shuffle of the N source vectors s (two-source shuffles, one per pair of sources)
template <typename T, int N>
inline Vec<T> select(const Vec<T>* s, const Int<T>* index_row, const Int<T>* pair_row) {
  IVec<T> index, pair;
  __builtin_memcpy(&index, index_row, sizeof(index));
  Vec<T> r = __builtin_shuffle(s[0], s[N > 1 ? 1 : 0], index);
  if constexpr (N > 2) __builtin_memcpy(&pair, pair_row, sizeof(pair));
#pragma GCC unroll 8
  for (int p = 1; 2 * p < N; ++p) {
    const Vec<T> t = __builtin_shuffle(s[2 * p], s[std::min(2 * p + 1, N - 1)], index);
    r = pair == p ? t : r;
  }
  return r;
}

// dst[m stride] (m < D) <- lanes j of src[j D + m]: W channels of a D-dimensional block
template <typename T, int D>
inline void load_block(const T* src, Vec<T>* dst, int64_t stride) {
  constexpr int W = lanes<T>();
  if constexpr (D == 1) {
    __builtin_memcpy(dst, src, sizeof(Vec<T>));
  } else {
    Vec<T> s[D];
    for (int q = 0; q < D; ++q) __builtin_memcpy(&s[q], src + q * W, sizeof(Vec<T>));
    constexpr const Shuffle<T, D>& t = kShuffle<T, D, false>;
#pragma GCC unroll 16
    for (int m = 0; m < D; ++m) dst[m * stride] = select<T, D>(s, t.index[m], t.pair[m]);
  }
}

// dst[j D + m] <- lane j of src[m stride]: the inverse of load_block
template <typename T, int D>
inline void store_block(const Vec<T>* src, int64_t stride, T* dst) {
  constexpr int W = lanes<T>();
  if constexpr (D == 1) {
    __builtin_memcpy(dst, src, sizeof(Vec<T>));
  } else {
    Vec<T> s[D];
    for (int m = 0; m < D; ++m) s[m] = src[m * stride];
    constexpr const Shuffle<T, D>& t = kShuffle<T, D, true>;
#pragma GCC unroll 16
    for (int q = 0; q < D; ++q) {
      const Vec<T> r = select<T, D>(s, t.index[q], t.pair[q]);
      __builtin_memcpy(dst + q * W, &r, sizeof(Vec<T>));
    }
  }
}

// load_block / store_block for a block width D known at run time (1 <= D <= kMaxBlock), inlined per width
#define GAUNT_BLOCK_CASES(CALL) \
  CALL(1) CALL(2) CALL(3) CALL(4) CALL(5) CALL(6) CALL(7) CALL(8) CALL(9) CALL(10) CALL(11) CALL(12) CALL(13) \
  CALL(14) CALL(15)
static_assert(kMaxBlock == 15, "GAUNT_BLOCK_CASES lists the widths 1 .. kMaxBlock");
template <typename T>
inline void load_any(int64_t D, const T* src, Vec<T>* dst, int64_t stride) {
  switch (D) {
#define GAUNT_LOAD(d) \
  case d:             \
    return load_block<T, d>(src, dst, stride);
    GAUNT_BLOCK_CASES(GAUNT_LOAD)
#undef GAUNT_LOAD
  }
}
template <typename T>
inline void store_any(int64_t D, const Vec<T>* src, int64_t stride, T* dst) {
  switch (D) {
#define GAUNT_STORE(d) \
  case d:              \
    return store_block<T, d>(src, stride, dst);
    GAUNT_BLOCK_CASES(GAUNT_STORE)
#undef GAUNT_STORE
  }
}

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

  explicit Direct(const int64_t* m) {
    mul = m[0], nnz = m[7];
    for (int i = 0; i < 3; ++i) dims[i] = m[1 + i], k[i] = m[4 + i];
    const int64_t* p = m + 8;
    U = mul % kColumns == 0 ? kColumns : 1;
    for (int i = 0; i < 3; ++i) {  // row u k + a -> ((u / U) k + a) U + u % U: U channels side by side
      const int32_t spare = static_cast<int32_t>(mul * k[i]);
      for (int64_t q = 0; q < dims[i]; ++q) {
        const int64_t u = p[q] / k[i], a = p[q] % k[i];
        rows[i].push_back(p[q] >= 0 ? static_cast<int32_t>(((u / U) * k[i] + a) * U + u % U) : spare);
      }
      p += dims[i];
    }
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
  }
  bool channels(int W) const { return blocked && mul % W == 0; }  // the channel tiles apply
  int64_t groups() const { return static_cast<int64_t>(target.size()); }
};

// U columns of W lanes side by side: Y[c U + i] = sum_{t: c_t = c} coefficient_t X1[a_t U + i] X2[b_t U + i],
// i < U, for every written c (U independent accumulators per triple)
template <typename T, int U>
void couple(const Direct& D, const T* coefficient, const Vec<T>* X1, const Vec<T>* X2, Vec<T>* Y) {
  const int32_t* a = D.a.data();
  const int32_t* b = D.b.data();
  const int64_t groups = D.groups();
  for (int64_t g = 0; g < groups; ++g) {
    int32_t t = D.group[g];
    Vec<T> acc[U];
    const Vec<T>* p1 = X1 + a[t] * U;
    const Vec<T>* p2 = X2 + b[t] * U;
    for (int i = 0; i < U; ++i) acc[i] = coefficient[t] * (p1[i] * p2[i]);
    for (++t; t < D.group[g + 1]; ++t) {
      p1 = X1 + a[t] * U, p2 = X2 + b[t] * U;
      for (int i = 0; i < U; ++i) acc[i] += coefficient[t] * (p1[i] * p2[i]);
    }
    for (int i = 0; i < U; ++i) Y[D.target[g] * U + i] = acc[i];
  }
}

// tiles [first, last) of W samples: rows (channel block, coefficient, channel) as in Direct::rows
template <typename T>
void run_tiles(const Direct& D, const T* coefficient, const T* x1, const T* x2, int64_t n, int64_t first,
               int64_t last, T* out) {
  constexpr int W = lanes<T>();
  std::vector<Vec<T>> X1(D.mul * D.k[0] + 1), X2(D.mul * D.k[1] + 1), Y(D.mul * D.k[2] + 1, Vec<T>{});
  for (int64_t tile = first; tile < last; ++tile) {
    const int64_t n0 = tile * W;
    const int valid = static_cast<int>(std::min<int64_t>(W, n - n0));
    load_tile(x1, D.dims[0], n0, valid, D.rows[0].data(), X1.data());
    load_tile(x2, D.dims[1], n0, valid, D.rows[1].data(), X2.data());
    for (int64_t u = 0; u < D.mul; u += D.U) {
      if (D.U == kColumns)
        couple<T, kColumns>(D, coefficient, &X1[u * D.k[0]], &X2[u * D.k[1]], &Y[u * D.k[2]]);
      else
        couple<T, 1>(D, coefficient, &X1[u * D.k[0]], &X2[u * D.k[1]], &Y[u * D.k[2]]);
    }
    store_tile(Y.data(), D.rows[2].data(), out, D.dims[2], n0, valid);
  }
}

// the columns [first, first + U) (column = sample, channels v W .. v W + W - 1) through the blocks
template <typename T, int U>
void run_columns(const Direct& D, const T* coefficient, const T* x1, const T* x2, int64_t first, Vec<T>* X1,
                 Vec<T>* X2, Vec<T>* Y, T* out) {
  constexpr int W = lanes<T>();
  const int64_t V = D.mul / W;
  const T* x[2] = {x1, x2};
  Vec<T>* tile[2] = {X1, X2};
  for (int i = 0; i < U; ++i) {
    const int64_t n = (first + i) / V, v = (first + i) % V;
    for (int s = 0; s < 2; ++s)
      for (const Block& b : D.blocks[s])
        load_any<T>(b.D, x[s] + n * D.dims[s] + b.start + v * W * b.D, tile[s] + b.first * U + i, U);
  }
  couple<T, U>(D, coefficient, X1, X2, Y);
  for (int i = 0; i < U; ++i) {
    const int64_t n = (first + i) / V, v = (first + i) % V;
    for (const Block& b : D.blocks[2]) store_any<T>(b.D, Y + b.first * U + i, U, out + n * D.dims[2] + b.start + v * W * b.D);
  }
}

// samples [first, last) in columns of W channels of one sample (the mul_ir blocks), U columns at a time
template <typename T>
void run_channels(const Direct& D, const T* coefficient, const T* x1, const T* x2, int64_t first, int64_t last,
                  T* out) {
  constexpr int W = lanes<T>();
  std::vector<Vec<T>> X1(D.k[0] * kColumns), X2(D.k[1] * kColumns), Y(D.k[2] * kColumns, Vec<T>{});
  int64_t column = first * (D.mul / W);
  const int64_t end = last * (D.mul / W);
  for (; column + kColumns <= end; column += kColumns)
    run_columns<T, kColumns>(D, coefficient, x1, x2, column, X1.data(), X2.data(), Y.data(), out);
  for (; column < end; ++column) run_columns<T, 1>(D, coefficient, x1, x2, column, X1.data(), X2.data(), Y.data(), out);
}

at::Tensor direct(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& values, const at::Tensor& meta) {
  TORCH_CHECK(x1.device().is_cpu() && x2.device().is_cpu(), "gaunt direct: CPU tensors only");
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2 && x1.size(0) == x2.size(0), "gaunt direct: inputs [n, dim]");
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type() && x1.scalar_type() == values.scalar_type(),
              "gaunt direct: inputs and coefficients must share one dtype");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt direct: meta must be int64");
  const Direct D(meta.data_ptr<int64_t>());
  TORCH_CHECK(x1.size(1) == D.dims[0] && x2.size(1) == D.dims[1], "gaunt direct: input sizes do not match");
  TORCH_CHECK(values.numel() == D.nnz, "gaunt direct: one coefficient per triple");
  const int64_t n = x1.size(0);
  at::Tensor a = x1.contiguous(), b = x2.contiguous(), v = values.contiguous();
  const int lanes_of_dtype = x1.scalar_type() == at::kDouble ? lanes<double>() : lanes<float>();
  // samples: every entry written by store_tile; channels: the outputs in no block stay zero
  const bool zero = D.channels(lanes_of_dtype) && D.mul * D.k[2] < D.dims[2];
  at::Tensor out = zero ? at::zeros({n, D.dims[2]}, x1.options()) : at::empty({n, D.dims[2]}, x1.options());
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
