// Syntheses and projections whose phi stage is even/odd under the reflection p -> -p mod n_phi of the phi points
// (gaunt.products.cpu_executor.phi_reflection: the cosines and sines of m phi): the phi tables are stored on the
// h = n_phi / 2 + 1 points p <= -p mod n_phi only, as their even rows r (the first `even`) and odd ones, and
//
//   synthesis   E = even G[0:even],  O = odd G[even:R]  on the h points;  F[p] = E[p] + O[p],  F[-p] = E[p] - O[p]
//   projection  G[0:even] = even (H[p] + H[-p]),  G[even:R] = odd (H[p] - H[-p])  (H[p] alone where -p = p: the
//               odd tables vanish there)
//
// half the multiply-adds of the whole tables. The sums and differences are formed in registers, inside the
// matrix products: E and O of a block of points are accumulated side by side and written to F[p] and F[-p]
// directly; a projection's H[p] +- H[-p] is formed as it is read (no scratch of half-point sums).

#pragma once

#include <type_traits>

#include "theta_stages.h"
#include "tiles.h"

namespace gaunt_tiles {

// the phi tables of a reflected stage: even [h, even] and odd [h, R - even] (synthesis; a projection reads them as
// [even, h] and [R - even, h]), with the non-zero column ranges of their rows
template <typename T>
struct Reflected {
  const T *even_table, *odd_table;
  const int64_t *even_range, *odd_range;
  int even;
};

// -p mod n_phi
inline int reflect(int p, int n_phi) { return p == 0 ? 0 : n_phi - p; }

// F[p] = E[p] + O[p] and F[-p] = E[p] - O[p] for the N points p0 .. p0 + N - 1 (G [R, nt], F [n_phi, nt])
template <typename T, int N>
inline void reflected_points(const Reflected<T>& r, int p0, int R, const Vec<T>* G, int nt, int n_phi, Vec<T>* F) {
  const int even = r.even, odd = R - even;
  int lo_e, hi_e, lo_o, hi_o;
  row_range(r.even_range, p0, N, lo_e, hi_e);
  row_range(r.odd_range, p0, N, lo_o, hi_o);
  const T *Ae = r.even_table + p0 * even, *Ao = r.odd_table + p0 * odd;
  const Vec<T>* Go = G + even * nt;
  for (int t = 0; t < nt; ++t) {
    Vec<T> e[N], o[N];
    for (int i = 0; i < N; ++i) e[i] = Vec<T>{}, o[i] = Vec<T>{};
    for (int k = lo_e; k < hi_e; ++k) {
      const Vec<T> x = G[k * nt + t];
      for (int i = 0; i < N; ++i) e[i] += Ae[i * even + k] * x;
    }
    for (int k = lo_o; k < hi_o; ++k) {
      const Vec<T> x = Go[k * nt + t];
      for (int i = 0; i < N; ++i) o[i] += Ao[i * odd + k] * x;
    }
    for (int i = 0; i < N; ++i) {
      const int p = p0 + i, q = reflect(p, n_phi);
      F[p * nt + t] = e[i] + o[i];
      if (q != p) F[q * nt + t] = e[i] - o[i];
    }
  }
}

// synthesize with a reflected phi stage: G[r] = theta[r] X[r], then F from the even and odd sums of G
template <typename T>
void synthesize_reflected(const Separable<T>& s, const Reflected<T>& r, const Vec<T>* X, Vec<T>* G, Vec<T>* F) {
  constexpr int RB = std::max(1, row_block<T>() / 2);  // two accumulators (even, odd) per point
  const int nt = s.n_theta, h = s.n_phi / 2 + 1;
  theta_synthesis(s, X, G);
  for_row_blocks<RB>(h, [&](auto n, int p0) { reflected_points<T, decltype(n)::value>(r, p0, s.R, G, nt, s.n_phi, F); });
}

// out[i] = sum_p A[i, p] (H[p] + Sign H[-p]) for the N rows i of A [., h] (lda), over its columns [lo, hi); H[p]
// alone where -p = p
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

// the rows of a reflected projection's phi stage with table [rows, h] (its ranges): G = table (H[p] + Sign H[-p])
template <typename T, int Sign>
void reflected_stage(const T* table, const int64_t* range, int rows, int h, const Vec<T>* H, int nt, int n_phi,
                     Vec<T>* G) {
  for_row_blocks<row_block<T>()>(rows, [&](auto n, int i) {
    int lo, hi;
    row_range(range, i, decltype(n)::value, lo, hi);
    reflected_sums<T, decltype(n)::value, Sign>(table + i * h, h, lo, hi, H, nt, n_phi, G + i * nt);
  });
}

// project with a reflected phi stage: G[0:even] from H[p] + H[-p], G[even:R] from H[p] - H[-p], then
// Y[r] = theta[r] G[r]
template <typename T>
void project_reflected(const Separable<T>& s, const Reflected<T>& r, const Vec<T>* H, Vec<T>* G, Vec<T>* Y) {
  const int nt = s.n_theta, h = s.n_phi / 2 + 1;
  reflected_stage<T, 1>(r.even_table, r.even_range, r.even, h, H, nt, s.n_phi, G);
  reflected_stage<T, -1>(r.odd_table, r.odd_range, s.R - r.even, h, H, nt, s.n_phi, G + r.even * nt);
  theta_projection(s, G, Y);
}

}  // namespace gaunt_tiles
