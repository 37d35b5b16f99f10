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
// (at::parallel_for), so no two threads write one output row.
//
// The program arrives as two tensors built by cpu_executor.py: `values` (float tables and coefficients,
// in the input dtype) and `meta` (int64: header, records, gather/scatter indices, non-zero ranges).

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

// the union of the non-zero ranges of rows [i, i + n)
inline void row_range(const int64_t* range, int i, int n, int& lo, int& hi) {
  lo = static_cast<int>(range[2 * i]);
  hi = static_cast<int>(range[2 * i + 1]);
  for (int r = i + 1; r < i + n; ++r) {
    lo = std::min(lo, static_cast<int>(range[2 * r]));
    hi = std::max(hi, static_cast<int>(range[2 * r + 1]));
  }
  hi = std::max(lo, hi);
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

// ---------------------------------------------------------------- the program, read from (values, meta)
struct SynthesisRec {
  int64_t source, R, Lp, index, theta, theta_range, phi, phi_range;
};
struct ProjectionRec {
  int64_t R3, L3p, inverse, phi, phi_range, theta, theta_range;
};
struct TermRec {
  int64_t a, b, projection, coefficient;
};

struct Layout {
  int64_t mul, dims[3], n_theta, n_phi;
  std::vector<SynthesisRec> syntheses;
  std::vector<ProjectionRec> projections;
  std::vector<TermRec> terms;
  const int64_t* meta;

  explicit Layout(const int64_t* m) : meta(m) {
    mul = m[0], dims[0] = m[1], dims[1] = m[2], dims[2] = m[3], n_theta = m[4], n_phi = m[5];
    const int64_t* rec = m + 9;
    for (int64_t s = 0; s < m[6]; ++s, rec += 8)
      syntheses.push_back({rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7]});
    for (int64_t p = 0; p < m[7]; ++p, rec += 7)
      projections.push_back({rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6]});
    for (int64_t t = 0; t < m[8]; ++t, rec += 4) terms.push_back({rec[0], rec[1], rec[2], rec[3]});
  }
  int64_t grid() const { return n_theta * n_phi; }
};

// the columns of one tile: n valid ones, each a (sample, channel) pair
struct Tile {
  int n;
  bool strided;  // W consecutive channels of one sample
  int64_t sample[W], channel[W];
};

// per-thread scratch, in tile vectors
template <typename T>
struct Scratch {
  std::vector<Vec<T>> X, G, F, H, Y;
  Scratch(const Layout& P) {
    int64_t x = 0, g = 0, y = 0;
    for (const auto& s : P.syntheses) x = std::max(x, s.R * s.Lp), g = std::max(g, s.R * P.n_theta);
    for (const auto& p : P.projections) g = std::max(g, p.R3 * P.n_theta), y = std::max(y, p.R3 * p.L3p);
    X.resize(x), G.resize(g), Y.resize(y);
    F.resize(P.syntheses.size() * P.grid()), H.resize(P.grid());
  }
};

// Each row of a gather (or read-out) index [rows, mul] comes with its pattern (kind, start, stride), stored after
// it: kind 0, no channel is read; kind 1, channel u reads start + u stride (the e3nn mul_ir layout); kind 2,
// anything else. A tile of W consecutive channels of one sample (mul a multiple of W) takes the strided path.
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

template <typename T>
void gather(const Layout& P, const SynthesisRec& s, const Tile& tile, const T* x, Vec<T>* X) {
  const int64_t rows = s.R * s.Lp, dim = P.dims[s.source];
  const int64_t* index = P.meta + s.index;
  const int64_t* pattern = index + rows * P.mul;
  for (int64_t row = 0; row < rows; ++row) {
    T* dst = reinterpret_cast<T*>(X + row);
    const int64_t kind = pattern[3 * row];
    if (kind == kNone) {
      X[row] = Vec<T>{};
    } else if (kind == kStrided && tile.strided) {
      const int64_t stride = pattern[3 * row + 2];
      const T* src = x + tile.sample[0] * dim + pattern[3 * row + 1] + tile.channel[0] * stride;
      load_strided(src, stride, dst);
    } else {
      const int64_t* idx = index + row * P.mul;
      for (int j = 0; j < W; ++j) {
        const int64_t i = j < tile.n ? idx[tile.channel[j]] : -1;
        dst[j] = i >= 0 ? x[tile.sample[j] * dim + i] : T(0);
      }
    }
  }
}

// out[sample_j, k] += Y[row, j] for k = inverse[row, channel_j] >= 0 (patterns as in gather)
template <typename T>
void scatter(const Layout& P, const ProjectionRec& p, const Tile& tile, const Vec<T>* Y, T* out) {
  const int64_t rows = p.R3 * p.L3p, dim = P.dims[2];
  const int64_t* inverse = P.meta + p.inverse;
  const int64_t* pattern = inverse + rows * P.mul;
  for (int64_t row = 0; row < rows; ++row) {
    const T* y = reinterpret_cast<const T*>(Y + row);
    const int64_t kind = pattern[3 * row];
    if (kind == kNone) continue;
    if (kind == kStrided && tile.strided) {
      const int64_t stride = pattern[3 * row + 2];
      T* dst = out + tile.sample[0] * dim + pattern[3 * row + 1] + tile.channel[0] * stride;
      add_strided(y, stride, dst);
    } else {
      const int64_t* inv = inverse + row * P.mul;
      for (int j = 0; j < tile.n; ++j) {
        const int64_t k = inv[tile.channel[j]];
        if (k >= 0) out[tile.sample[j] * dim + k] += y[j];
      }
    }
  }
}

template <typename T>
void synthesis(const Layout& P, const SynthesisRec& s, const T* values, Scratch<T>& S, Vec<T>* F) {
  const int nt = static_cast<int>(P.n_theta), R = static_cast<int>(s.R), Lp = static_cast<int>(s.Lp);
  for (int r = 0; r < R; ++r) {  // G[r] = theta[r] X[r]
    Mat<T> theta{values + s.theta + int64_t(r) * nt * Lp, P.meta + s.theta_range + 2 * r * nt, nt, Lp};
    matmul(theta, S.X.data() + r * Lp, 1, S.G.data() + r * nt, 1, 1);
  }
  Mat<T> phi{values + s.phi, P.meta + s.phi_range, static_cast<int>(P.n_phi), R};  // F = phi G
  matmul(phi, S.G.data(), nt, F, nt, nt);
}

// H = sum of the terms of projection q; false if it has none
template <typename T>
bool pointwise(const Layout& P, int64_t q, const T* values, Scratch<T>& S) {
  bool any = false;
  const int64_t n = P.grid();
  for (const auto& t : P.terms) {
    if (t.projection != q) continue;
    const Vec<T>* a = S.F.data() + t.a * n;
    const Vec<T>* b = S.F.data() + t.b * n;
    const T c = values[t.coefficient];
    Vec<T>* h = S.H.data();
    if (!any)
      for (int64_t i = 0; i < n; ++i) h[i] = c * (a[i] * b[i]);
    else
      for (int64_t i = 0; i < n; ++i) h[i] += c * (a[i] * b[i]);
    any = true;
  }
  return any;
}

template <typename T>
void projection(const Layout& P, const ProjectionRec& p, const T* values, Scratch<T>& S, const Tile& tile, T* out) {
  const int nt = static_cast<int>(P.n_theta), R3 = static_cast<int>(p.R3), L3p = static_cast<int>(p.L3p);
  Mat<T> phi{values + p.phi, P.meta + p.phi_range, R3, static_cast<int>(P.n_phi)};  // C = phi H
  matmul(phi, S.H.data(), nt, S.G.data(), nt, nt);
  for (int r = 0; r < R3; ++r) {  // Y[r] = theta[r] C[r]
    Mat<T> theta{values + p.theta + int64_t(r) * L3p * nt, P.meta + p.theta_range + 2 * r * L3p, L3p, nt};
    matmul(theta, S.G.data() + r * nt, 1, S.Y.data() + r * L3p, 1, 1);
  }
  scatter(P, p, tile, S.Y.data(), out);
}

template <typename T>
void run_tile(const Layout& P, const T* values, const T* x1, const T* x2, const Tile& tile, Scratch<T>& S, T* out) {
  const int64_t n = P.grid();
  for (size_t k = 0; k < P.syntheses.size(); ++k) {
    const auto& s = P.syntheses[k];
    gather(P, s, tile, s.source == 0 ? x1 : x2, S.X.data());
    synthesis(P, s, values, S, S.F.data() + k * n);
  }
  for (size_t q = 0; q < P.projections.size(); ++q)
    if (pointwise(P, q, values, S)) projection(P, P.projections[q], values, S, tile, out);
}

// prefetch the rows of samples [first, last) of a [n, dim] array (rw: 0 read, 1 write)
template <typename T, int RW>
inline void prefetch_rows(const T* x, int64_t dim, int64_t first, int64_t last) {
  const char* begin = reinterpret_cast<const char*>(x + first * dim);
  const char* end = reinterpret_cast<const char*>(x + last * dim);
  for (const char* line = begin; line < end; line += 64) __builtin_prefetch(line, RW, 3);
}

// samples [begin, end): output rows zeroed just before their first tile (in cache), the inputs and outputs
// of the next kPrefetch samples prefetched (the tiles of one sample run long enough to hide the latency)
template <typename T>
void run_samples(const Layout& P, const T* values, const T* x1, const T* x2, int64_t begin, int64_t end, T* out) {
  constexpr int64_t kPrefetch = 2;
  Scratch<T> S(P);
  Tile tile;
  int64_t ready = begin;  // output rows [begin, ready) are zeroed
  for (int64_t c = begin * P.mul; c < end * P.mul; c += W) {  // columns c = sample * mul + channel
    tile.n = static_cast<int>(std::min<int64_t>(W, end * P.mul - c));
    for (int j = 0; j < tile.n; ++j) tile.sample[j] = (c + j) / P.mul, tile.channel[j] = (c + j) % P.mul;
    tile.strided = tile.n == W && tile.sample[0] == tile.sample[W - 1];
    const int64_t last = tile.sample[tile.n - 1] + 1;
    if (last > ready) {
      std::fill(out + ready * P.dims[2], out + last * P.dims[2], T(0));
      const int64_t ahead = std::min(end, last + kPrefetch);
      prefetch_rows<T, 0>(x1, P.dims[0], last, ahead);
      prefetch_rows<T, 0>(x2, P.dims[1], last, ahead);
      prefetch_rows<T, 1>(out, P.dims[2], last, ahead);
      ready = last;
    }
    run_tile(P, values, x1, x2, tile, S, out);
  }
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
  at::Tensor out = at::empty({n, P.dims[2]}, x1.options());  // zeroed per row by the kernel
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_sphere_program", [&] {
    run_program<scalar_t>(P, v.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n,
                          out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(gaunt_fused, m) { m.def("run(Tensor x1, Tensor x2, Tensor values, Tensor meta) -> Tensor"); }

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) { m.impl("run", &run); }
