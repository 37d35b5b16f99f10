// Phi stages on the symmetric points of the uniform phi grid (gaunt.products.table_symmetries.phi_classes). The
// columns of a synthesis' phi table [n_phi, R] (the rows of a projection's [R, n_phi]) are cos(m phi) and
// sin(m phi): even or odd under the reflection p -> -p mod n_phi, and, where n_phi is even, even or odd under the
// half-turn p -> p + n_phi / 2 ((-1)^m). The table is stored on the representative points only, its columns
// grouped by class (`bounds`):
//
//   sym 1 (reflection): points p <= -p, classes E, O:  F[p] = E + O,  F[-p] = E - O   (h = n_phi / 2 + 1 points)
//   sym 2 (and half-turn): points p <= n_phi / 4, classes EE, EO, OE, OO (reflection, half-turn parity):
//       a = EE + EO, b = OE + OO, c = EE - EO, d = OE - OO
//       F[p] = a + b,  F[-p] = a - b,  F[p + n/2] = c + d,  F[-p + n/2] = c - d
//
// half (sym 1) or a quarter (sym 2) of the multiply-adds of the whole table. A synthesis forms the sums in
// registers and writes each distinct point once. A projection reads H[p] +- H[-p] as it goes (sym 1), or first
// forms the four class combinations of each orbit (sym 2: H[p] + H[-p] + H[p+n/2] + H[-p+n/2] for EE, and so on),
// then runs one matrix product per class; where an orbit has two points only (p = 0, p = n/4) each appears twice
// in those sums, and the packed table halves its entries there.

#pragma once

#include <vector>

#include "theta_stages.h"
#include "tiles.h"

namespace gaunt_tiles {

// a phi stage as packed: table [points, R] (synthesis) or [R, points] (projection), classes at bounds[0..2^sym];
// range: a synthesis' [classes, points, 2] column ranges within each class, a projection's [R, 2] row ranges
template <typename T>
struct PhiStage {
  const T* table;
  const int64_t *range, *bounds;
  int sym, points, R;
};

// -p mod n_phi
inline int reflect(int p, int n_phi) { return p == 0 ? 0 : n_phi - p; }

constexpr int kQuarterBlock = 4;  // points per register block with four classes (16 sums; 6 was no faster)

// acc[i] = sum_{k in [lo, hi)} A[i, k] rows[k, t] for N points i (one class, one ring)
template <typename T, int N>
inline void class_sums(const T* A, int lda, int lo, int hi, const Vec<T>* rows, int nt, int t, Vec<T> (&acc)[N]) {
  for (int i = 0; i < N; ++i) acc[i] = Vec<T>{};
  for (int k = lo; k < hi; ++k) {
    const Vec<T> x = rows[k * nt + t];
    for (int i = 0; i < N; ++i) acc[i] += A[i * lda + k] * x;
  }
}

// F at the orbits of the N representative points from p0 (G [R, nt], F [n_phi, nt]); Classes 2 (sym 1) or 4.
// Each class's sums are their own register array (an array indexed by a class loop was kept in memory).
template <typename T, int N, int Classes>
inline void symmetric_points(const PhiStage<T>& s, int p0, const Vec<T>* G, int nt, int n_phi, Vec<T>* F) {
  int lo[Classes], hi[Classes];
  const T* A[Classes];
  const Vec<T>* rows[Classes];
  for (int c = 0; c < Classes; ++c) {
    row_range(s.range + 2 * int64_t(c) * s.points, p0, N, lo[c], hi[c]);
    A[c] = s.table + int64_t(p0) * s.R + s.bounds[c];
    rows[c] = G + s.bounds[c] * nt;
  }
  const int half = n_phi / 2;
  for (int t = 0; t < nt; ++t) {
    Vec<T> e[N], o[N];
    class_sums<T, N>(A[0], s.R, lo[0], hi[0], rows[0], nt, t, e);
    class_sums<T, N>(A[1], s.R, lo[1], hi[1], rows[1], nt, t, o);
    if constexpr (Classes == 2) {
      for (int i = 0; i < N; ++i) {
        const int p = p0 + i, q = reflect(p, n_phi);
        F[p * nt + t] = e[i] + o[i];
        if (q != p) F[q * nt + t] = e[i] - o[i];
      }
    } else {  // e, o: classes EE, EO; oe, oo: OE, OO
      Vec<T> oe[N], oo[N];
      class_sums<T, N>(A[2], s.R, lo[2], hi[2], rows[2], nt, t, oe);
      class_sums<T, N>(A[3], s.R, lo[3], hi[3], rows[3], nt, t, oo);
      for (int i = 0; i < N; ++i) {
        const int p = p0 + i, q = reflect(p, n_phi), u = (p + half) % n_phi, v = reflect(u, n_phi);
        const Vec<T> a = e[i] + o[i], b = oe[i] + oo[i], c = e[i] - o[i], d = oe[i] - oo[i];
        F[p * nt + t] = a + b;
        if (q != p) F[q * nt + t] = a - b;
        if (u != q) F[u * nt + t] = c + d;  // u != p always
        if (v != p && v != u) F[v * nt + t] = c - d;
      }
    }
  }
}

// the synthesis' phi stage F = phi G on the symmetric points (sym 1 or 2)
template <typename T>
void synthesize_phi(const PhiStage<T>& s, const Vec<T>* G, int nt, int n_phi, Vec<T>* F) {
  constexpr int RB = std::max(1, row_block<T>() / 2);  // two class sums per point
  if (s.sym == 1)
    for_row_blocks<RB>(s.points, [&](auto n, int p0) { symmetric_points<T, decltype(n)::value, 2>(s, p0, G, nt, n_phi, F); });
  else
    for_row_blocks<kQuarterBlock>(
        s.points, [&](auto n, int p0) { symmetric_points<T, decltype(n)::value, 4>(s, p0, G, nt, n_phi, F); });
}

// out[i] = sum_p A[i, p] (H[p] + Sign H[-p]) for the N rows i of A [., points] (lda), over its columns [lo, hi);
// H[p] alone where -p = p
template <typename T, int N, int Sign>
inline void reflected_sums(const T* A, int lda, int lo, int hi, const Vec<T>* H, int nt, int n_phi, Vec<T>* out) {
  for (int t = 0; t < nt; ++t) {
    Vec<T> acc[N];
    for (int i = 0; i < N; ++i) acc[i] = Vec<T>{};
    for (int p = lo; p < hi; ++p) {
      const int q = reflect(p, n_phi);
      const Vec<T> a = H[p * nt + t];
      const Vec<T> x = q == p ? a : Sign > 0 ? a + H[q * nt + t] : a - H[q * nt + t];
      for (int i = 0; i < N; ++i) acc[i] += A[i * lda + p] * x;
    }
    for (int i = 0; i < N; ++i) out[i * nt + t] = acc[i];
  }
}

// the rows [r0, r1) of a reflected projection's phi stage: G = table (H[p] + Sign H[-p])
template <typename T, int Sign>
void reflected_stage(const PhiStage<T>& s, int r0, int r1, const Vec<T>* H, int nt, int n_phi, Vec<T>* G) {
  for_row_blocks<row_block<T>()>(r1 - r0, [&](auto n, int i) {
    int lo, hi;
    row_range(s.range, r0 + i, decltype(n)::value, lo, hi);
    reflected_sums<T, decltype(n)::value, Sign>(s.table + (r0 + i) * s.points, s.points, lo, hi, H, nt, n_phi,
                                                G + (r0 + i) * nt);
  });
}

// C[c, p, t]: the class combinations of H on the orbit of each representative p (sym 2), c = EE, EO, OE, OO
template <typename T>
void orbit_combinations(const Vec<T>* H, int points, int nt, int n_phi, Vec<T>* C) {
  const int half = n_phi / 2;
  const int64_t stride = int64_t(points) * nt;
  for (int p = 0; p < points; ++p) {
    const int q = reflect(p, n_phi), u = (p + half) % n_phi, v = reflect(u, n_phi);
    for (int t = 0; t < nt; ++t) {
      const Vec<T> s = H[p * nt + t] + H[q * nt + t], d = H[p * nt + t] - H[q * nt + t];
      const Vec<T> s2 = H[u * nt + t] + H[v * nt + t], d2 = H[u * nt + t] - H[v * nt + t];
      Vec<T>* at = C + p * nt + t;
      at[0] = s + s2, at[stride] = s - s2, at[2 * stride] = d + d2, at[3 * stride] = d - d2;
    }
  }
}

// the projection's phi stage G = phi H on the symmetric points (sym 1 or 2; C: scratch of 4 points nt vectors)
template <typename T>
void project_phi(const PhiStage<T>& s, const Vec<T>* H, int nt, int n_phi, Vec<T>* G, std::vector<Vec<T>>& C) {
  if (s.sym == 1) {
    reflected_stage<T, 1>(s, 0, static_cast<int>(s.bounds[1]), H, nt, n_phi, G);
    reflected_stage<T, -1>(s, static_cast<int>(s.bounds[1]), s.R, H, nt, n_phi, G);
    return;
  }
  C.resize(4 * int64_t(s.points) * nt);
  orbit_combinations<T>(H, s.points, nt, n_phi, C.data());
  for (int c = 0; c < 4; ++c) {
    const int r0 = static_cast<int>(s.bounds[c]), r1 = static_cast<int>(s.bounds[c + 1]);
    const Mat<T> rows{s.table + int64_t(r0) * s.points, s.range + 2 * r0, r1 - r0, s.points};
    matmul(rows, C.data() + int64_t(c) * s.points * nt, nt, G + int64_t(r0) * nt, nt, nt);
  }
}

}  // namespace gaunt_tiles
