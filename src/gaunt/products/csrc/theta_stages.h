// The theta stages of a separable transform (a synthesis G[r] = theta[r] X[r], a projection Y[r] = theta[r] G[r]
// per row r, one tile column each), and the whole synthesize / project with a plain phi stage (reflected.h: the
// phi stage on half the points). Two symmetries of the tables (gaunt.products.table_symmetries) cut the work:
//
// Twins: the theta tables of m and -m are equal; a pair's two matrix-vector products run as one pass.
//
// Mirrored rings: theta stages even/odd under the mirror t -> u = n_theta - 1 - t of the Gauss-Legendre rings (cos theta ->
// -cos theta; gaunt.products.table_symmetries.theta_reflection): P_l^m(-x) = (-1)^(l + m) P_l^m(x), so in row r
// the degrees l = first[r], first[r] + 2, ... (the even class) have even tables and the others odd ones, and
//
//   synthesis   E[t] = sum_{l even} theta[r, t, l] X[l],  O[t] = sum_{l odd} theta[r, t, l] X[l]  (t < u)
//               G[t] = E + O,  G[u] = E - O;  the middle ring t = u (odd n_theta): G = E (odd tables vanish there)
//   projection  Y[l] = sum_{t < u} theta[r, l, t] (G[t] +- G[u])  (+ for the even class, - for the odd),
//               plus theta[r, l, mid] G[mid] for the even class
//
// on the first (n_theta + 1) / 2 rings of the tables: half the multiply-adds. The sums and differences are formed
// in registers, as in reflected.h for the phi stage; twins (m and -m, one table) still share each table read.

#pragma once

#include "tiles.h"

namespace gaunt_tiles {

// a separable stage on the grid [n_phi, n_theta]: R rows of C coefficients each; theta and phi point at the
// tables (values), the ranges at their non-zero column ranges (meta)
template <typename T>
struct Separable {
  const T *theta, *phi;
  const int64_t *theta_range, *phi_range;
  int R, C, n_theta, n_phi;
  const int64_t* twin = nullptr;  // per row, the row with the same theta table (-1: none); nullptr: no pairs
  const int64_t* theta_first = nullptr;  // per row, the parity of its even degrees; nullptr: rings not mirrored
};

// out_a[i] = sum_k A[i, k] in_a[k] and out_b[i] = sum_k A[i, k] in_b[k] for RB rows i: two columns, one pass
// over the table (the theta tables of m and -m are equal)
template <typename T, int RB>
inline void twin_rows(const T* A, int lda, int lo, int hi, const Vec<T>* in_a, const Vec<T>* in_b, Vec<T>* out_a,
                      Vec<T>* out_b) {
  Vec<T> acc_a[RB], acc_b[RB];
  for (int r = 0; r < RB; ++r) acc_a[r] = Vec<T>{}, acc_b[r] = Vec<T>{};
  for (int k = lo; k < hi; ++k) {
    const Vec<T> xa = in_a[k], xb = in_b[k];
    for (int r = 0; r < RB; ++r) {
      const T a = A[r * lda + k];
      acc_a[r] += a * xa;
      acc_b[r] += a * xb;
    }
  }
  for (int r = 0; r < RB; ++r) out_a[r] = acc_a[r], out_b[r] = acc_b[r];
}

template <typename T, int N>
inline void twin_tail(int n, const T* A, int lda, int lo, int hi, const Vec<T>* in_a, const Vec<T>* in_b,
                      Vec<T>* out_a, Vec<T>* out_b) {
  if constexpr (N > 0) {
    if (n == N) return twin_rows<T, N>(A, lda, lo, hi, in_a, in_b, out_a, out_b);
    twin_tail<T, N - 1>(n, A, lda, lo, hi, in_a, in_b, out_a, out_b);
  }
}

// the matrix-vector products M in_a and M in_b (one tile column each) in one pass over M
template <typename T>
void matvec_twin(const Mat<T>& M, const Vec<T>* in_a, const Vec<T>* in_b, Vec<T>* out_a, Vec<T>* out_b) {
  constexpr int RB = std::max(1, std::min<int>(8, kAccumulatorBytes / (2 * static_cast<int>(sizeof(Vec<T>)))));
  int i = 0, lo, hi;
  for (; i + RB <= M.rows; i += RB) {
    row_range(M.range, i, RB, lo, hi);
    twin_rows<T, RB>(M.a + i * M.cols, M.cols, lo, hi, in_a, in_b, out_a + i, out_b + i);
  }
  if (i < M.rows) {
    row_range(M.range, i, M.rows - i, lo, hi);
    twin_tail<T, RB - 1>(M.rows - i, M.a + i * M.cols, M.cols, lo, hi, in_a, in_b, out_a + i, out_b + i);
  }
}


// the first k >= lo with k = parity mod 2
inline int first_of_parity(int lo, int parity) { return lo + ((lo - parity) & 1); }

// a[i] = sum_{k = from, from + 2, .. < hi} A[i, k] in_a[k] for N rows i (and b from in_b, Twin): one class of
// degrees
template <typename T, int N, bool Twin>
inline void class_rows(const T* A, int C, int from, int hi, const Vec<T>* in_a, const Vec<T>* in_b, Vec<T> (&a)[N],
                       Vec<T> (&b)[N]) {
  for (int i = 0; i < N; ++i) a[i] = b[i] = Vec<T>{};
  for (int k = from; k < hi; k += 2) {
    const Vec<T> xa = in_a[k];
    const Vec<T> xb = Twin ? in_b[k] : xa;
    for (int i = 0; i < N; ++i) {
      const T w = A[i * C + k];
      a[i] += w * xa;
      if constexpr (Twin) b[i] += w * xb;
    }
  }
}

// synthesis rows t0 .. t0 + N - 1 (t0 + N <= (nt + 1) / 2) of one row r, or of a twin pair (Twin: in_b, G_b):
// A = theta[r] [nt, C] (row-major), range = its per-ring non-zero ranges; G [nt] per input
template <typename T, int N, bool Twin>
inline void theta_mirror_rows(const T* A, int C, const int64_t* range, int first, int t0, int nt,
                              const Vec<T>* in_a, const Vec<T>* in_b, Vec<T>* G_a, Vec<T>* G_b) {
  int lo, hi;
  row_range(range, t0, N, lo, hi);
  const T* At = A + t0 * C;
  Vec<T> ea[N], eb[N], oa[N], ob[N];
  class_rows<T, N, Twin>(At, C, first_of_parity(lo, first), hi, in_a, in_b, ea, eb);
  class_rows<T, N, Twin>(At, C, first_of_parity(lo, 1 - first), hi, in_a, in_b, oa, ob);
  for (int i = 0; i < N; ++i) {
    const int t = t0 + i, u = nt - 1 - t;
    if (u == t) {
      G_a[t] = ea[i];
      if constexpr (Twin) G_b[t] = eb[i];
      continue;
    }
    G_a[t] = ea[i] + oa[i], G_a[u] = ea[i] - oa[i];
    if constexpr (Twin) G_b[t] = eb[i] + ob[i], G_b[u] = eb[i] - ob[i];
  }
}

// G[r] = theta[r] X[r] for one row (q < 0) or a twin pair r, q, on the mirrored rings
template <typename T>
void theta_mirror_synthesis(const Separable<T>& s, int r, int q, const Vec<T>* X, Vec<T>* G) {
  constexpr int RB = std::max(1, row_block<T>() / 4);  // e and o accumulators of both twins per ring
  const int nt = s.n_theta, C = s.C, half = (nt + 1) / 2, first = static_cast<int>(s.theta_first[r]);
  const T* A = s.theta + int64_t(r) * nt * C;
  const int64_t* range = s.theta_range + 2 * r * nt;
  for_row_blocks<RB>(half, [&](auto n, int t0) {
    constexpr int N = decltype(n)::value;
    if (q < 0)
      theta_mirror_rows<T, N, false>(A, C, range, first, t0, nt, X + r * C, nullptr, G + r * nt, nullptr);
    else
      theta_mirror_rows<T, N, true>(A, C, range, first, t0, nt, X + r * C, X + q * C, G + r * nt, G + q * nt);
  });
}

// Y[l] for the rows l = l0, l0 + 2, ... (N of them, all of one class: Sign +1 even, -1 odd) of one row r or a
// twin pair: A = theta[r] [C, nt], range its per-degree ring ranges; G [nt] per input
template <typename T, int N, bool Twin, int Sign>
inline void theta_mirror_sums(const T* A, const int64_t* range, int l0, int nt, const Vec<T>* G_a, const Vec<T>* G_b,
                              Vec<T>* Y_a, Vec<T>* Y_b) {
  int lo, hi;
  row_range(range, l0, N, lo, hi, 2);
  const int pairs = std::min(hi, nt / 2);  // rings t < u; a mirror-symmetric row's range is [lo, nt - lo)
  const T* Al = A + l0 * nt;
  Vec<T> ya[N], yb[N];
  for (int i = 0; i < N; ++i) ya[i] = yb[i] = Vec<T>{};
  for (int t = lo; t < pairs; ++t) {
    const int u = nt - 1 - t;
    const Vec<T> xa = Sign > 0 ? G_a[t] + G_a[u] : G_a[t] - G_a[u];
    const Vec<T> xb = Twin ? (Sign > 0 ? G_b[t] + G_b[u] : G_b[t] - G_b[u]) : xa;
    for (int i = 0; i < N; ++i) {
      const T a = Al[2 * i * nt + t];
      ya[i] += a * xa;
      if constexpr (Twin) yb[i] += a * xb;
    }
  }
  const int mid = nt / 2;
  if (Sign > 0 && nt % 2 == 1 && lo <= mid && mid < hi)
    for (int i = 0; i < N; ++i) {
      const T a = Al[2 * i * nt + mid];
      ya[i] += a * G_a[mid];
      if constexpr (Twin) yb[i] += a * G_b[mid];
    }
  for (int i = 0; i < N; ++i) {
    Y_a[l0 + 2 * i] = ya[i];
    if constexpr (Twin) Y_b[l0 + 2 * i] = yb[i];
  }
}

// the rows of one class (degrees from `from`, step 2) of Y[r] = theta[r] G[r] (and its twin's)
template <typename T, int Sign>
void theta_mirror_class(const Separable<T>& p, int r, int q, int from, const Vec<T>* G, Vec<T>* Y) {
  constexpr int RB = std::max(1, std::min(8, row_block<T>() / 2));
  const int nt = p.n_theta, C = p.C, count = from < C ? (C - from + 1) / 2 : 0;
  const T* A = p.theta + int64_t(r) * C * nt;
  const int64_t* range = p.theta_range + 2 * r * C;
  for_row_blocks<RB>(count, [&](auto n, int i) {
    constexpr int N = decltype(n)::value;
    const int l0 = from + 2 * i;
    if (q < 0)
      theta_mirror_sums<T, N, false, Sign>(A, range, l0, nt, G + r * nt, nullptr, Y + r * C, nullptr);
    else
      theta_mirror_sums<T, N, true, Sign>(A, range, l0, nt, G + r * nt, G + q * nt, Y + r * C, Y + q * C);
  });
}

// Y[r] = theta[r] G[r] for one row (q < 0) or a twin pair, on the mirrored rings
template <typename T>
void theta_mirror_projection(const Separable<T>& p, int r, int q, const Vec<T>* G, Vec<T>* Y) {
  const int first = static_cast<int>(p.theta_first[r]);
  theta_mirror_class<T, 1>(p, r, q, first, G, Y);
  theta_mirror_class<T, -1>(p, r, q, 1 - first, G, Y);
}

// the theta stage of a synthesis, G[r] = theta[r] X[r] (theta [R, n_theta, C]), twins in one pass
template <typename T>
void theta_synthesis(const Separable<T>& s, const Vec<T>* X, Vec<T>* G) {
  const int nt = s.n_theta;
  for (int r = 0; r < s.R; ++r) {
    const int q = s.twin ? static_cast<int>(s.twin[r]) : -1;
    if (q >= 0 && q < r) continue;  // done with its twin
    if (s.theta_first) {
      theta_mirror_synthesis(s, r, q, X, G);
      continue;
    }
    Mat<T> theta{s.theta + int64_t(r) * nt * s.C, s.theta_range + 2 * r * nt, nt, s.C};
    if (q < 0)
      matmul(theta, X + r * s.C, 1, G + r * nt, 1, 1);
    else
      matvec_twin(theta, X + r * s.C, X + q * s.C, G + r * nt, G + q * nt);
  }
}

// the theta stage of a projection, Y[r] = theta[r] G[r] (theta [R, C, n_theta]), twins in one pass
template <typename T>
void theta_projection(const Separable<T>& p, const Vec<T>* G, Vec<T>* Y) {
  const int nt = p.n_theta;
  for (int r = 0; r < p.R; ++r) {
    const int q = p.twin ? static_cast<int>(p.twin[r]) : -1;
    if (q >= 0 && q < r) continue;
    if (p.theta_first) {
      theta_mirror_projection(p, r, q, G, Y);
      continue;
    }
    Mat<T> theta{p.theta + int64_t(r) * p.C * nt, p.theta_range + 2 * r * p.C, p.C, nt};
    if (q < 0)
      matmul(theta, G + r * nt, 1, Y + r * p.C, 1, 1);
    else
      matvec_twin(theta, G + r * nt, G + q * nt, Y + r * p.C, Y + q * p.C);
  }
}

// synthesis: G[r] = theta[r] X[r] for theta [R, n_theta, C], then F = phi G for phi [n_phi, R]
// (X [R, C], G [R, n_theta], F [n_phi, n_theta]: tile rows)
template <typename T>
void synthesize(const Separable<T>& s, const Vec<T>* X, Vec<T>* G, Vec<T>* F) {
  const int nt = s.n_theta;
  theta_synthesis(s, X, G);
  matmul(Mat<T>{s.phi, s.phi_range, s.n_phi, s.R}, G, nt, F, nt, nt);
}

// projection: G = phi H for phi [R, n_phi], then Y[r] = theta[r] G[r] for theta [R, C, n_theta]
// (H [n_phi, n_theta], G [R, n_theta], Y [R, C]: tile rows)
template <typename T>
void project(const Separable<T>& p, const Vec<T>* H, Vec<T>* G, Vec<T>* Y) {
  const int nt = p.n_theta;
  matmul(Mat<T>{p.phi, p.phi_range, p.R, p.n_phi}, H, nt, G, nt, nt);
  theta_projection(p, G, Y);
}

}  // namespace gaunt_tiles
