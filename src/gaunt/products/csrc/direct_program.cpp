// The direct CPU kernel of a sphere program: its sparse per-channel coupling list (gaunt.products.coupling),
//
//   out[n, pos_out[u, c]] = sum_{triples t with c_t = c} coefficient_t x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]],
//
// for every channel u and sample n. Samples are taken W at a time (a tile: W = one 64-byte SIMD register
// of the dtype, 16 floats or 8 doubles), and the tile's input rows [W, dim] are transposed in cache into
// [dim, W] blocks (16 x 16 / 8 x 8 register transposes with AVX-512, scalar loops otherwise) whose rows are
// stored in the order (channel u, coefficient a): row u k1 + a of the x1 block holds x1[n0 .. n0 + W,
// pos1[u, a]]. Then every triple is one multiply and one fused multiply-add of W samples,
//
//   Y[u k3 + c] = sum_t coefficient_t (X1[u k1 + a_t] * X2[u k2 + b_t]),
//
// per channel, the triples of one c in a row (one accumulator), and Y is transposed back into the output
// rows. Positions of an input that no channel reads go to a scratch row; outputs that no channel writes
// read a zero row. Threads split the tiles (at::parallel_for): no two threads write one output row.
//
// The program arrives as two tensors built by cpu_executor.py: `values` (the coefficients, in the input
// dtype) and `meta` (int64): header [mul, dim1, dim2, dim_out, k1, k2, k3, nnz], then the tile row of every
// position of x1, x2 and out ([dim1], [dim2], [dim_out]; -1: none), then a, b, c ([nnz] each, sorted by c).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
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

// the coupling list, read from meta: rows with -1 replaced by the scratch / zero row (the last one)
struct Direct {
  int64_t mul, dims[3], k[3], nnz;
  std::vector<int32_t> rows[3];        // tile row of every position of x1, x2, out
  std::vector<int32_t> a, b;           // per triple
  std::vector<int32_t> group, target;  // triples [group[g], group[g + 1]) write coefficient target[g]

  explicit Direct(const int64_t* m) {
    mul = m[0], nnz = m[7];
    for (int i = 0; i < 3; ++i) dims[i] = m[1 + i], k[i] = m[4 + i];
    const int64_t* p = m + 8;
    for (int i = 0; i < 3; ++i) {
      const int32_t spare = static_cast<int32_t>(mul * k[i]);
      for (int64_t q = 0; q < dims[i]; ++q) rows[i].push_back(p[q] >= 0 ? static_cast<int32_t>(p[q]) : spare);
      p += dims[i];
    }
    for (int64_t t = 0; t < nnz; ++t) {
      a.push_back(static_cast<int32_t>(p[t]));
      b.push_back(static_cast<int32_t>(p[nnz + t]));
      const int32_t c = static_cast<int32_t>(p[2 * nnz + t]);
      if (t == 0 || c != target.back()) group.push_back(static_cast<int32_t>(t)), target.push_back(c);
    }
    group.push_back(static_cast<int32_t>(nnz));
  }
};

// Y[u k3 + c] = sum_t coefficient_t X1[u k1 + a_t] X2[u k2 + b_t] for every channel u and written c
template <typename T>
void couple(const Direct& D, const T* coefficient, const Vec<T>* X1, const Vec<T>* X2, Vec<T>* Y) {
  const int32_t* a = D.a.data();
  const int32_t* b = D.b.data();
  const int64_t groups = static_cast<int64_t>(D.target.size());
  for (int64_t u = 0; u < D.mul; ++u, X1 += D.k[0], X2 += D.k[1], Y += D.k[2]) {
    for (int64_t g = 0; g < groups; ++g) {
      int32_t t = D.group[g];
      Vec<T> acc = coefficient[t] * (X1[a[t]] * X2[b[t]]);
      for (++t; t < D.group[g + 1]; ++t) acc += coefficient[t] * (X1[a[t]] * X2[b[t]]);
      Y[D.target[g]] = acc;
    }
  }
}

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
    couple(D, coefficient, X1.data(), X2.data(), Y.data());
    store_tile(Y.data(), D.rows[2].data(), out, D.dims[2], n0, valid);
  }
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
  at::Tensor out = at::empty({n, D.dims[2]}, x1.options());  // every entry written by store_tile
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_direct_program", [&] {
    constexpr int W = lanes<scalar_t>();
    const int64_t tiles = (n + W - 1) / W;
    const int64_t work = D.mul * (D.nnz + D.k[0] + D.k[1] + D.k[2]);  // per tile, in W-wide operations
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, work));
    const scalar_t* coefficient = v.data_ptr<scalar_t>();
    const scalar_t* p1 = a.data_ptr<scalar_t>();
    const scalar_t* p2 = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, tiles, grain, [&](int64_t first, int64_t last) {
      run_tiles<scalar_t>(D, coefficient, p1, p2, n, first, last, po);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def("direct(Tensor x1, Tensor x2, Tensor values, Tensor meta) -> Tensor");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) { m.impl("direct", &direct); }
