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
// (at::parallel_for), so no two threads write one output row. The tile machinery is shared (tiles.h).
//
// The program arrives as two tensors built by cpu_executor.py: `values` (float tables and coefficients,
// in the input dtype) and `meta` (int64: header, records, gather/scatter indices, non-zero ranges).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tiles.h"

namespace {

using namespace gaunt_tiles;

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

template <typename T>
void gather(const Layout& P, const SynthesisRec& s, const Tile& tile, const T* x, Vec<T>* X) {
  gather_rows(P.meta + s.index, s.R * s.Lp, P.mul, tile, x, P.dims[s.source], X);
}

// out[sample_j, k] += Y[row, j] for k = inverse[row, channel_j] >= 0
template <typename T>
void scatter(const Layout& P, const ProjectionRec& p, const Tile& tile, const Vec<T>* Y, T* out) {
  scatter_rows(P.meta + p.inverse, p.R3 * p.L3p, P.mul, tile, Y, out, P.dims[2]);
}

template <typename T>
Separable<T> stage(const Layout& P, const T* values, int64_t R, int64_t C, int64_t theta, int64_t theta_range,
                   int64_t phi, int64_t phi_range) {
  return {values + theta,
          values + phi,
          P.meta + theta_range,
          P.meta + phi_range,
          static_cast<int>(R),
          static_cast<int>(C),
          static_cast<int>(P.n_theta),
          static_cast<int>(P.n_phi)};
}

template <typename T>
void synthesis(const Layout& P, const SynthesisRec& s, const T* values, Scratch<T>& S, Vec<T>* F) {
  synthesize(stage(P, values, s.R, s.Lp, s.theta, s.theta_range, s.phi, s.phi_range), S.X.data(), S.G.data(), F);
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
  project(stage(P, values, p.R3, p.L3p, p.theta, p.theta_range, p.phi, p.phi_range), S.H.data(), S.G.data(),
          S.Y.data());
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

// samples [begin, end): output rows zeroed just before their first tile (in cache), the inputs and outputs
// of the next kPrefetch samples prefetched (the tiles of one sample run long enough to hide the latency)
template <typename T>
void run_samples(const Layout& P, const T* values, const T* x1, const T* x2, int64_t begin, int64_t end, T* out) {
  constexpr int64_t kPrefetch = 2;
  Scratch<T> S(P);
  auto new_samples = [&](int64_t first, int64_t last) {
    std::fill(out + first * P.dims[2], out + last * P.dims[2], T(0));
    const int64_t ahead = std::min(end, last + kPrefetch);
    prefetch_rows<T, 0>(x1, P.dims[0], last, ahead);
    prefetch_rows<T, 0>(x2, P.dims[1], last, ahead);
    prefetch_rows<T, 1>(out, P.dims[2], last, ahead);
  };
  for_each_tile(P.mul, begin, end, new_samples, [&](const Tile& tile) { run_tile(P, values, x1, x2, tile, S, out); });
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
