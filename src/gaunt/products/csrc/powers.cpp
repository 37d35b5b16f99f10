// The fused CPU kernel of the power programs and of all their derivatives (gaunt.products.power_family).
//
// A power program reads each (sample, channel) column of x [n, dim_in] as a field on the grid,
// f = Synth(x), and projects its powers: forward(x)[:, q] = Proj(f^k_q) for the powers k_q. Its derivatives
// form one family, with tangents t_i [n, dim_in] (T_i = Synth(t_i)), an optional cotangent g [n, K, dim_out]
// (G_q = Proj^T(g[:, q])) and c(k, d) = k! / (k - d)!:
//
//   no g:   out[:, q] = Proj( c(k_q, d) f^(k_q - d) prod_i T_i )          out [n, K, dim_out],  d = len(ts)
//   g:      out = Synth^T( sum_q c(k_q, d) f^(k_q - d) prod_i T_i G_q )   out [n, dim_in],      d = len(ts) + 1
//
// Per tile of W columns (tiles.h), with every field in cache: the synthesis of x and of each t_i (running
// product), the powers of f (one multiplication per power), then either one projection per power, scattered
// into out[:, q], or, with g, one synthesis of each g[:, q], the pointwise sum, and one adjoint synthesis
// (a projection onto the input's coefficients) scattered into out. Threads split the samples.
//
// The program arrives as two tensors built by cpu_powers.py: `values` (the four stages' tables, in the input
// dtype) and `meta` (int64, the Layout below: header, stage records, powers, indices, non-zero ranges).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "tile_blocks.h"
#include "theta_stages.h"
#include "tiles.h"

namespace {

using namespace gaunt_tiles;

// a separable stage: R rows of C coefficients; its tables (offsets into values) and ranges (offsets into meta)
struct StageRec {
  int64_t R, C, theta, theta_range, phi, phi_range;
};

struct Layout {
  int64_t mul, min_dim_in, dim_out, n_theta, n_phi, K;
  const int64_t *powers, *x_index, *out_index;  // x_index: Synth's gather; out_index: the read-out's inverse
  StageRec synthesis, adjoint_synthesis, projection, adjoint_projection;
  RowPlan x_plan, out_plan;  // the rows of x_index and out_index by irrep blocks (tile_blocks.h)
  const int64_t* meta;

  explicit Layout(const int64_t* m) : meta(m) {
    mul = m[0], min_dim_in = m[1], dim_out = m[2], n_theta = m[3], n_phi = m[4], K = m[5];
    powers = m + m[6], x_index = m + m[7], out_index = m + m[8];
    StageRec* stages[] = {&synthesis, &adjoint_synthesis, &projection, &adjoint_projection};
    for (int s = 0; s < 4; ++s) {
      const int64_t* r = m + 9 + 6 * s;
      *stages[s] = {r[0], r[1], r[2], r[3], r[4], r[5]};
    }
    x_plan = plan_rows(x_index, x_rows(), mul), out_plan = plan_rows(out_index, out_rows(), mul);
  }
  int64_t grid() const { return n_theta * n_phi; }
  int64_t x_rows() const { return synthesis.R * synthesis.C; }     // rows of x's gather: (r, l, u) / mul
  int64_t out_rows() const { return projection.R * projection.C; }  // rows of Y: (r3, l3, u) / mul

  template <typename T>
  Separable<T> stage(const StageRec& s, const T* values) const {
    return {values + s.theta,
            values + s.phi,
            meta + s.theta_range,
            meta + s.phi_range,
            static_cast<int>(s.R),
            static_cast<int>(s.C),
            static_cast<int>(n_theta),
            static_cast<int>(n_phi)};
  }
};

// one call: the inputs, the output and the per-power coefficients c(k_q, d) (0 where k_q < d)
template <typename T>
struct Call {
  const T* x;
  std::vector<const T*> ts;
  const T* g;  // nullptr: no cotangent
  T* out;
  int64_t dim_in, out_row;  // out_row: K dim_out without g, dim_in with it
  int d;
  std::vector<T> coefficient;
};

// per-thread scratch, in tile rows: coefficient blocks X, Y; the stages' middle G; fields on the grid
template <typename T>
struct Scratch {
  std::vector<Vec<T>> X, G, Y, F, Fk, Ti, prod, H, Gq;
  int have = 1;  // Fk holds f^have (have >= 2) for this tile

  explicit Scratch(const Layout& P) {
    const int64_t rows = std::max(P.x_rows(), P.out_rows()), n = P.grid();
    X.resize(rows), Y.resize(rows), G.resize(std::max(P.synthesis.R, P.projection.R) * P.n_theta);
    for (auto* field : {&F, &Fk, &Ti, &prod, &H, &Gq}) field->resize(n);
  }

  // f^e for non-decreasing e within a tile (nullptr for e = 0, the constant 1)
  const Vec<T>* power(int e) {
    if (e == 0) return nullptr;
    if (e == 1) return F.data();
    const int64_t n = static_cast<int64_t>(F.size());
    for (; have < e; ++have) {
      const Vec<T>* base = have == 1 ? F.data() : Fk.data();
      for (int64_t i = 0; i < n; ++i) Fk[i] = base[i] * F[i];
    }
    return Fk.data();
  }
};

// c a b with a or b possibly nullptr (the constant 1; not both): a field, in out unless it is one of them
template <typename T>
const Vec<T>* scaled_product(int64_t n, T c, const Vec<T>* a, const Vec<T>* b, Vec<T>* out) {
  if (b == nullptr) std::swap(a, b);
  if (a == nullptr) {
    if (c == T(1)) return b;
    for (int64_t i = 0; i < n; ++i) out[i] = c * b[i];
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = c * (a[i] * b[i]);
  }
  return out;
}

// h (= or +=) c a b, a possibly nullptr (the constant 1)
template <typename T>
void accumulate(int64_t n, T c, const Vec<T>* a, const Vec<T>* b, Vec<T>* h, bool first) {
  if (a == nullptr) {
    if (first)
      for (int64_t i = 0; i < n; ++i) h[i] = c * b[i];
    else
      for (int64_t i = 0; i < n; ++i) h[i] += c * b[i];
  } else if (first) {
    for (int64_t i = 0; i < n; ++i) h[i] = c * (a[i] * b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) h[i] += c * (a[i] * b[i]);
  }
}

template <typename T>
void run_tile(const Layout& P, const T* values, const Call<T>& call, const Tile& tile, Scratch<T>& S) {
  const int64_t n = P.grid(), K = P.K, mul = P.mul;
  const Separable<T> synthesis = P.stage(P.synthesis, values);
  gather_planned(P.x_plan, P.x_index, P.x_rows(), mul, tile, call.x, call.dim_in, S.X.data());
  synthesize(synthesis, S.X.data(), S.G.data(), S.F.data());
  S.have = 1;
  const Vec<T>* prod = nullptr;  // prod_i T_i (nullptr: the empty product)
  for (size_t i = 0; i < call.ts.size(); ++i) {
    gather_planned(P.x_plan, P.x_index, P.x_rows(), mul, tile, call.ts[i], call.dim_in, S.X.data());
    synthesize(synthesis, S.X.data(), S.G.data(), i == 0 ? S.prod.data() : S.Ti.data());
    if (i > 0)
      for (int64_t p = 0; p < n; ++p) S.prod[p] *= S.Ti[p];
    prod = S.prod.data();
  }
  if (call.g == nullptr) {  // one projection per power, into out[:, q]
    const Separable<T> projection = P.stage(P.projection, values);
    for (int64_t q = 0; q < K; ++q) {
      if (call.coefficient[q] == T(0)) continue;
      const int e = static_cast<int>(P.powers[q]) - call.d;
      const Vec<T>* h = scaled_product(n, call.coefficient[q], S.power(e), prod, S.H.data());
      project(projection, h, S.G.data(), S.Y.data());
      scatter_planned(P.out_plan, P.out_index, P.out_rows(), mul, tile, S.Y.data(), call.out + q * P.dim_out,
                      call.out_row);
    }
    return;
  }
  const Separable<T> cotangent = P.stage(P.adjoint_projection, values);  // G_q = Proj^T g[:, q]
  bool first = true;
  for (int64_t q = 0; q < K; ++q) {
    if (call.coefficient[q] == T(0)) continue;
    gather_planned(P.out_plan, P.out_index, P.out_rows(), mul, tile, call.g + q * P.dim_out, K * P.dim_out,
                   S.X.data());
    synthesize(cotangent, S.X.data(), S.G.data(), S.Gq.data());
    accumulate(n, call.coefficient[q], S.power(static_cast<int>(P.powers[q]) - call.d), S.Gq.data(), S.H.data(),
               first);
    first = false;
  }
  if (prod != nullptr)
    for (int64_t p = 0; p < n; ++p) S.H[p] *= prod[p];
  project(P.stage(P.adjoint_synthesis, values), S.H.data(), S.G.data(), S.Y.data());
  scatter_planned(P.x_plan, P.x_index, P.x_rows(), mul, tile, S.Y.data(), call.out, call.dim_in);
}

// samples [begin, end); the output is zero on entry (a power below d leaves its rows untouched)
template <typename T>
void run_samples(const Layout& P, const T* values, const Call<T>& call, int64_t begin, int64_t end) {
  constexpr int64_t kPrefetch = 2;
  Scratch<T> S(P);
  auto new_samples = [&](int64_t, int64_t last) {
    const int64_t ahead = std::min(end, last + kPrefetch);
    prefetch_rows<T, 0>(call.x, call.dim_in, last, ahead);
    for (const T* t : call.ts) prefetch_rows<T, 0>(t, call.dim_in, last, ahead);
    if (call.g != nullptr) prefetch_rows<T, 0>(call.g, P.K * P.dim_out, last, ahead);
    prefetch_rows<T, 1>(call.out, call.out_row, last, ahead);
  };
  for_each_tile(P.mul, begin, end, new_samples, [&](const Tile& tile) { run_tile(P, values, call, tile, S); });
}

at::Tensor powers(const at::Tensor& x, at::TensorList ts, const std::optional<at::Tensor>& g,
                  const at::Tensor& values, const at::Tensor& meta) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2, "gaunt cpu_powers: x must be a CPU tensor [n, dim_in]");
  TORCH_CHECK(x.scalar_type() == values.scalar_type(), "gaunt cpu_powers: x and the tables must share one dtype");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt cpu_powers: meta must be int64");
  const Layout P(meta.data_ptr<int64_t>());
  const int64_t n = x.size(0), dim_in = x.size(1);
  TORCH_CHECK(dim_in >= P.min_dim_in, "gaunt cpu_powers: x has ", dim_in, " columns, the program reads ",
              P.min_dim_in);
  std::vector<at::Tensor> keep{x.contiguous()};  // contiguous copies, alive for the call
  for (const auto& t : ts) {
    TORCH_CHECK(t.sizes() == x.sizes() && t.scalar_type() == x.scalar_type() && t.device().is_cpu(),
                "gaunt cpu_powers: every tangent must be like x");
    keep.push_back(t.contiguous());
  }
  const bool has_g = g.has_value();
  if (has_g) {
    TORCH_CHECK(g->dim() == 3 && g->size(0) == n && g->size(1) == P.K && g->size(2) == P.dim_out &&
                    g->scalar_type() == x.scalar_type() && g->device().is_cpu(),
                "gaunt cpu_powers: g must be [n, ", P.K, ", ", P.dim_out, "] like x");
    keep.push_back(g->contiguous());
  }
  const int d = static_cast<int>(ts.size()) + (has_g ? 1 : 0);
  const at::Tensor tables = values.contiguous();
  at::Tensor out = has_g ? at::zeros({n, dim_in}, x.options()) : at::zeros({n, P.K, P.dim_out}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gaunt_cpu_powers", [&] {
    Call<scalar_t> call;
    call.x = keep[0].data_ptr<scalar_t>();
    for (size_t i = 0; i < ts.size(); ++i) call.ts.push_back(keep[1 + i].data_ptr<scalar_t>());
    call.g = has_g ? keep.back().data_ptr<scalar_t>() : nullptr;
    call.out = out.data_ptr<scalar_t>();
    call.dim_in = dim_in, call.out_row = has_g ? dim_in : P.K * P.dim_out, call.d = d;
    bool active = false;
    for (int64_t q = 0; q < P.K; ++q) {  // c(k, d) = k (k - 1) ... (k - d + 1), 0 for k < d
      scalar_t c = P.powers[q] >= d ? scalar_t(1) : scalar_t(0);
      for (int j = 0; j < d && c != scalar_t(0); ++j) c *= static_cast<scalar_t>(P.powers[q] - j);
      call.coefficient.push_back(c);
      active = active || c != scalar_t(0);
    }
    if (!active) return;  // every term vanishes: the output stays zero
    const scalar_t* v = tables.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 4 * W / P.mul);  // at least a few tiles per task
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { run_samples(P, v, call, begin, end); });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def("powers(Tensor x, Tensor[] ts, Tensor? g, Tensor values, Tensor meta) -> Tensor");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) { m.impl("powers", &powers); }
