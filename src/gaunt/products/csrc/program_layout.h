// The layout of a packed sphere program (gaunt.products.cpu_executor.pack) and the stages of one tile:
// what the transform kernels (sphere_program.cpp, scaled_weights.cpp) share. See sphere_program.cpp for
// the program's formulas.

#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tile_blocks.h"
#include "tiles.h"

namespace gaunt_program {

using namespace gaunt_tiles;


// ---------------------------------------------------------------- the program, read from (values, meta)
// sym: the phi table is stored as its even (the first `even` rows r) and odd parts on the points p <= -p mod
// n_phi (cpu_executor.phi_reflection): phi then holds the even part, phi_odd the odd part
// twin: per row r, the row with the same theta table (m and -m; -1: none): the pair runs as one pass
struct SynthesisRec {
  int64_t source, R, Lp, index, theta, theta_range, phi, phi_range, sym, even, phi_odd, phi_odd_range, twin;
};
struct ProjectionRec {
  int64_t R3, L3p, inverse, phi, phi_range, theta, theta_range, sym, even, phi_odd, phi_odd_range, twin;
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
    for (int64_t s = 0; s < m[6]; ++s, rec += 13)
      syntheses.push_back({rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8], rec[9], rec[10],
                           rec[11], rec[12]});
    for (int64_t p = 0; p < m[7]; ++p, rec += 12)
      projections.push_back({rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8], rec[9], rec[10],
                             rec[11]});
    for (int64_t t = 0; t < m[8]; ++t, rec += 4) terms.push_back({rec[0], rec[1], rec[2], rec[3]});
    for (const auto& s : syntheses) gathers.push_back(plan_rows(m + s.index, s.R * s.Lp, mul));
    for (const auto& p : projections) scatters.push_back(plan_rows(m + p.inverse, p.R3 * p.L3p, mul));
  }
  int64_t grid() const { return n_theta * n_phi; }
};

// per-thread scratch, in tile vectors
template <typename T>
struct Scratch {
  std::vector<Vec<T>> X, G, F, H, Y, E;  // E: the half-point sums of a reflected phi stage
  Scratch(const Layout& P) {
    int64_t x = 0, g = 0, y = 0;
    for (const auto& s : P.syntheses) x = std::max(x, s.R * s.Lp), g = std::max(g, s.R * P.n_theta);
    for (const auto& p : P.projections) g = std::max(g, p.R3 * P.n_theta), y = std::max(y, p.R3 * p.L3p);
    X.resize(x), G.resize(g), Y.resize(y), E.resize(2 * (P.n_phi / 2 + 1) * P.n_theta);
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
                   int64_t phi, int64_t phi_range, int64_t twin) {
  return {values + theta,
          values + phi,
          P.meta + theta_range,
          P.meta + phi_range,
          static_cast<int>(R),
          static_cast<int>(C),
          static_cast<int>(P.n_theta),
          static_cast<int>(P.n_phi),
          P.meta + twin};
}

template <typename T>
Reflected<T> reflected(const Layout& P, const T* values, int64_t even, int64_t phi, int64_t phi_range, int64_t odd,
                       int64_t odd_range) {
  return {values + phi, values + odd, P.meta + phi_range, P.meta + odd_range, static_cast<int>(even)};
}

template <typename T>
void synthesis(const Layout& P, const SynthesisRec& s, const T* values, Scratch<T>& S, Vec<T>* F) {
  const auto st = stage(P, values, s.R, s.Lp, s.theta, s.theta_range, s.phi, s.phi_range, s.twin);
  if (!s.sym) return synthesize(st, S.X.data(), S.G.data(), F);
  synthesize_reflected(st, reflected(P, values, s.even, s.phi, s.phi_range, s.phi_odd, s.phi_odd_range),
                       S.X.data(), S.G.data(), S.E.data(), F);
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

// S.Y = the projection of S.H (the rows of p, before the read-out)
template <typename T>
void project_rows(const Layout& P, const ProjectionRec& p, const T* values, Scratch<T>& S) {
  const auto st = stage(P, values, p.R3, p.L3p, p.theta, p.theta_range, p.phi, p.phi_range, p.twin);
  if (!p.sym) return project(st, S.H.data(), S.G.data(), S.Y.data());
  project_reflected(st, reflected(P, values, p.even, p.phi, p.phi_range, p.phi_odd, p.phi_odd_range), S.H.data(),
                    S.E.data(), S.G.data(), S.Y.data());
}

template <typename T>
void projection(const Layout& P, size_t q, const T* values, Scratch<T>& S, const Tile& tile, T* out) {
  project_rows(P, P.projections[q], values, S);
  scatter(P, q, tile, S.Y.data(), out);
}

// the whole program on one tile: gathers, syntheses, pointwise terms, projections, read-out into out
template <typename T>
void run_tile(const Layout& P, const T* values, const T* x1, const T* x2, const Tile& tile, Scratch<T>& S, T* out) {
  const int64_t n = P.grid();
  for (size_t k = 0; k < P.syntheses.size(); ++k) {
    const auto& s = P.syntheses[k];
    gather(P, k, tile, s.source == 0 ? x1 : x2, S.X.data());
    synthesis(P, s, values, S, S.F.data() + k * n);
  }
  for (size_t q = 0; q < P.projections.size(); ++q)
    if (pointwise(P, q, values, S)) projection(P, q, values, S, tile, out);
}

}  // namespace gaunt_program
