// The layout of a packed sphere program (gaunt.products.cpu_executor.pack) and the stages of one tile:
// what the transform kernels (sphere_program.cpp, scaled_weights.cpp) share. See sphere_program.cpp for
// the program's formulas.

#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "reflected.h"
#include "tile_blocks.h"
#include "tiles.h"

namespace gaunt_program {

using namespace gaunt_tiles;


// ---------------------------------------------------------------- the program, read from (values, meta)
// sym: the phi table on all points (0), on the representative points of the reflection (1) or of the reflection
// and the half-turn (2), its rows r grouped in 2^sym classes at bounds (reflected.h, table_symmetries.phi_classes)
// twin: per row r, the row with the same theta table (m and -m; -1: none): the pair runs as one pass
// theta_first: per row r, the parity of the degrees with even tables under the mirror of the rings
// (table_symmetries.theta_reflection; theta_stages.h); -1: the rings are not mirrored
struct SynthesisRec {
  int64_t source, R, Lp, index, theta, theta_range, phi, phi_range, sym, bounds, twin, theta_first;
};
struct ProjectionRec {
  int64_t R3, L3p, inverse, phi, phi_range, theta, theta_range, sym, bounds, twin, theta_first;
};
struct TermRec {
  int64_t a, b, projection, coefficient;
};

struct Layout {
  int64_t mul, dims[3], n_theta, n_phi;
  std::vector<SynthesisRec> syntheses;
  std::vector<ProjectionRec> projections;
  std::vector<TermRec> terms;
  std::vector<RowPlan> gathers, scatters;  // per synthesis, per projection: its rows by irrep blocks
  const int64_t* meta;

  explicit Layout(const int64_t* m) : meta(m) {
    mul = m[0], dims[0] = m[1], dims[1] = m[2], dims[2] = m[3], n_theta = m[4], n_phi = m[5];
    const int64_t* rec = m + 9;
    for (int64_t s = 0; s < m[6]; ++s, rec += 12)
      syntheses.push_back({rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8], rec[9], rec[10],
                           rec[11]});
    for (int64_t p = 0; p < m[7]; ++p, rec += 11)
      projections.push_back({rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8], rec[9], rec[10]});
    for (int64_t t = 0; t < m[8]; ++t, rec += 4) terms.push_back({rec[0], rec[1], rec[2], rec[3]});
    for (const auto& s : syntheses) gathers.push_back(plan_rows(m + s.index, s.R * s.Lp, mul));
    for (const auto& p : projections) scatters.push_back(plan_rows(m + p.inverse, p.R3 * p.L3p, mul));
  }
  int64_t grid() const { return n_theta * n_phi; }
  // the phi points a stage's table is stored on (reflected.h): all, p <= -p, or p <= n_phi / 4
  int64_t phi_points(int64_t sym) const { return sym == 0 ? n_phi : sym == 1 ? n_phi / 2 + 1 : n_phi / 4 + 1; }
};

// per-thread scratch, in tile vectors
template <typename T>
struct Scratch {
  std::vector<Vec<T>> X, G, F, H, Y, orbits;  // orbits: a projection's class combinations (reflected.h)
  std::vector<const Vec<T>*> fields;      // per synthesis, where its field is for this tile (F, or given)
  Scratch(const Layout& P) : fields(P.syntheses.size()) {
    int64_t x = 0, g = 0, y = 0;
    for (const auto& s : P.syntheses) x = std::max(x, s.R * s.Lp), g = std::max(g, s.R * P.n_theta);
    for (const auto& p : P.projections) g = std::max(g, p.R3 * P.n_theta), y = std::max(y, p.R3 * p.L3p);
    X.resize(x), G.resize(g), Y.resize(y);
    F.resize(P.syntheses.size() * P.grid()), H.resize(P.grid());
  }
};

// X = the rows of synthesis k's source for the tile
template <typename T>
void gather(const Layout& P, size_t k, const Tile& tile, const T* x, Vec<T>* X) {
  const SynthesisRec& s = P.syntheses[k];
  gather_planned(P.gathers[k], P.meta + s.index, s.R * s.Lp, P.mul, tile, x, P.dims[s.source], X);
}

// out[sample_j, k] += Y[row, j] for k = inverse[row, channel_j] >= 0 (projection q)
template <typename T>
void scatter(const Layout& P, size_t q, const Tile& tile, const Vec<T>* Y, T* out) {
  const ProjectionRec& p = P.projections[q];
  scatter_planned(P.scatters[q], P.meta + p.inverse, p.R3 * p.L3p, P.mul, tile, Y, out, P.dims[2]);
}

template <typename T>
Separable<T> stage(const Layout& P, const T* values, int64_t R, int64_t C, int64_t theta, int64_t theta_range,
                   int64_t phi, int64_t phi_range, int64_t twin, int64_t theta_first) {
  return {values + theta,
          values + phi,
          P.meta + theta_range,
          P.meta + phi_range,
          static_cast<int>(R),
          static_cast<int>(C),
          static_cast<int>(P.n_theta),
          static_cast<int>(P.n_phi),
          P.meta + twin,
          theta_first < 0 ? nullptr : P.meta + theta_first};
}

template <typename T>
PhiStage<T> phi_stage(const Layout& P, const T* values, int64_t phi, int64_t phi_range, int64_t sym, int64_t bounds,
                      int64_t R) {
  return {values + phi, P.meta + phi_range, P.meta + bounds, static_cast<int>(sym), static_cast<int>(P.phi_points(sym)),
          static_cast<int>(R)};
}

template <typename T>
void synthesis(const Layout& P, const SynthesisRec& s, const T* values, Scratch<T>& S, Vec<T>* F) {
  const auto st = stage(P, values, s.R, s.Lp, s.theta, s.theta_range, s.phi, s.phi_range, s.twin, s.theta_first);
  if (!s.sym) return synthesize(st, S.X.data(), S.G.data(), F);
  theta_synthesis(st, S.X.data(), S.G.data());
  synthesize_phi(phi_stage(P, values, s.phi, s.phi_range, s.sym, s.bounds, s.R), S.G.data(), st.n_theta, st.n_phi, F);
}

// H = sum of the terms of projection q over the syntheses' fields F[k]; false if it has none
template <typename T>
bool pointwise(const Layout& P, int64_t q, const T* values, const Vec<T>* const* F, Scratch<T>& S) {
  bool any = false;
  const int64_t n = P.grid();
  for (const auto& t : P.terms) {
    if (t.projection != q) continue;
    const Vec<T>* a = F[t.a];
    const Vec<T>* b = F[t.b];
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

// S.Y = the projection of S.H (the rows of p, before the read-out)
template <typename T>
void project_rows(const Layout& P, const ProjectionRec& p, const T* values, Scratch<T>& S) {
  const auto st = stage(P, values, p.R3, p.L3p, p.theta, p.theta_range, p.phi, p.phi_range, p.twin, p.theta_first);
  if (!p.sym) return project(st, S.H.data(), S.G.data(), S.Y.data());
  project_phi(phi_stage(P, values, p.phi, p.phi_range, p.sym, p.bounds, p.R3), S.H.data(), st.n_theta, st.n_phi,
              S.G.data(), S.orbits);
  theta_projection(st, S.G.data(), S.Y.data());
}

template <typename T>
void projection(const Layout& P, size_t q, const T* values, Scratch<T>& S, const Tile& tile, T* out) {
  project_rows(P, P.projections[q], values, S);
  scatter(P, q, tile, S.Y.data(), out);
}

// the whole program on one tile: gathers, syntheses, pointwise terms, projections, read-out into out. given[k]
// (optional): synthesis k's field as another program computed it for this tile (same_synthesis), not rerun
template <typename T>
void run_tile(const Layout& P, const T* values, const T* x1, const T* x2, const Tile& tile, Scratch<T>& S, T* out,
              const Vec<T>* const* given = nullptr) {
  const int64_t n = P.grid();
  std::vector<const Vec<T>*>& F = S.fields;
  for (size_t k = 0; k < P.syntheses.size(); ++k) {
    const auto& s = P.syntheses[k];
    F[k] = given && given[k] ? given[k] : S.F.data() + k * n;
    if (F[k] != S.F.data() + k * n) continue;
    gather(P, k, tile, s.source == 0 ? x1 : x2, S.X.data());
    synthesis(P, s, values, S, S.F.data() + k * n);
  }
  for (size_t q = 0; q < P.projections.size(); ++q)
    if (pointwise(P, q, values, F.data(), S)) projection(P, q, values, S, tile, out);
}

// whether synthesis ka of program A and kb of program B compute the same field from the same operand layout:
// equal sizes, grid, gather index and tables (bit for bit), so one tile's field of A is B's too
template <typename T>
bool same_synthesis(const Layout& A, const T* va, size_t ka, const Layout& B, const T* vb, size_t kb) {
  const SynthesisRec &a = A.syntheses[ka], &b = B.syntheses[kb];
  if (A.mul != B.mul || A.n_theta != B.n_theta || A.n_phi != B.n_phi || A.dims[a.source] != B.dims[b.source] ||
      a.R != b.R || a.Lp != b.Lp || a.sym != b.sym || (a.theta_first < 0) != (b.theta_first < 0))
    return false;
  const int64_t rows = a.R * a.Lp, nt = A.n_theta, classes = int64_t(1) << a.sym;
  const int64_t points = A.phi_points(a.sym);
  auto same_ints = [&](int64_t at_a, int64_t at_b, int64_t count) {
    return std::equal(A.meta + at_a, A.meta + at_a + count, B.meta + at_b);
  };
  auto same_values = [&](int64_t at_a, int64_t at_b, int64_t count) {
    return std::equal(va + at_a, va + at_a + count, vb + at_b);
  };
  return same_ints(a.index, b.index, rows * (A.mul + 3)) && same_ints(a.twin, b.twin, a.R) &&
         (a.theta_first < 0 || same_ints(a.theta_first, b.theta_first, a.R)) &&
         same_values(a.theta, b.theta, a.R * nt * a.Lp) && same_ints(a.theta_range, b.theta_range, 2 * a.R * nt) &&
         same_ints(a.bounds, b.bounds, classes + 1) && same_values(a.phi, b.phi, points * a.R) &&
         same_ints(a.phi_range, b.phi_range, 2 * classes * points);
}

}  // namespace gaunt_program
