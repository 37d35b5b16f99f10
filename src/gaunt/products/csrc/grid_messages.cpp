// The four slots of the grid-messages form T(f, s, w, y) (gaunt.products.grid_messages), fused.
//
// Layout (row-major): f, s [N, mul, P]; w [E, mul, L1]; y [E, L1^2]; y2 [P, L1^2]; senders, receivers [E]
// (int64); L1 = L + 1. Per edge e = (j -> i), j = senders[e], i = receivers[e]:
//
//   k[l, p] = sum_m y[e, l m] y2[p, l m]           g[u, p] = sum_l w[e, u, l] k[l, p]
//   h[u, p] = f[j, u, p] s[i, u, p]
//
//   slot 1:  out[i, u, p] += f[j, u, p] g[u, p]                                   [N, mul, P]
//   slot 0:  out[j, u, p] += s[i, u, p] g[u, p]                                   [N, mul, P]
//   slot 2:  out[e, u, l]  = sum_p h[u, p] k[l, p]                                [E, mul, L1]
//   slot 3:  q[l, p] = sum_u w[e, u, l] h[u, p],   out[e, l m] = sum_p q[l, p] y2[p, l m]   [E, L1^2]
//
// Slots 0 and 1 sort the edges by destination node (a counting sort, O(E + N)) and split the nodes between
// threads, balanced by edges + nodes; a node accumulates [mul, P] in a cache-resident buffer over its edges
// and writes its row once (no atomics, no [E, mul, P] temporary). Slots 2 and 3 split the edges. The grid
// index p is the vector dimension (GCC vector types, one SIMD register): k, q and y2^T live in buffers padded
// to whole vectors with zeros; the last, partial vector of a row of f or s is read with a masked load.
// Degrees are taken C <= kMaxChunk at a time (a compile-time C keeps the register blocks in registers; every
// slot is linear in the degree blocks, so larger L1 run as several chunks).

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
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64, kRegisters = 32;
#elif defined(__AVX__)
constexpr int kVecBytes = 32, kRegisters = 16;
#else
constexpr int kVecBytes = 16, kRegisters = 16;
#endif
constexpr int kMaxChunk = 6;  // degrees per pass

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int kLanes = kVecBytes / static_cast<int>(sizeof(T));

template <typename T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// the first n lanes of p, the others 0 (n < kLanes: the end of a row)
template <typename T>
inline Vec<T> load_part(const T* p, int n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 8)
    return (Vec<T>)_mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  else
    return (Vec<T>)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
#else
  Vec<T> v{};
  for (int i = 0; i < n; ++i) v[i] = p[i];
  return v;
#endif
}

template <typename T, bool Part>
inline Vec<T> load_row(const T* p, int n) {
  if constexpr (Part) return load_part(p, n);
  return load(p);
}

// the start of the row at p, for the next edge (its rows come from anywhere in f and s; once the first lines
// miss, the hardware streams the rest of the row): the first kPrefetchBytes
constexpr int64_t kPrefetchBytes = 1024;
inline void prefetch(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t i = 0; i < std::min(bytes, kPrefetchBytes); i += 64) __builtin_prefetch(c + i, 0, 3);
}

// the sum of the lanes, as a tree
template <typename T>
inline T hsum(Vec<T> v) {
  T a[kLanes<T>];
  std::memcpy(a, &v, sizeof v);
  for (int half = kLanes<T> / 2; half > 0; half /= 2)
    for (int i = 0; i < half; ++i) a[i] += a[i + half];
  return a[0];
}

// lane j of fold<G>(a, b), a and b holding groups of G lanes, each group a partial sum of one accumulator:
// a's groups, then b's, folded to G / 2 lanes (lower half + upper half); this picks the lower half's lane
constexpr int fold_lane(int V, int G, int j) {
  const int group = j / (G / 2), n = V / G;
  return (group >= n) * V + (group % n) * G + j % (G / 2);
}
template <typename T, int G, int... J>
inline Vec<T> fold(Vec<T> a, Vec<T> b, std::integer_sequence<int, J...>) {
  constexpr int V = kLanes<T>;
  return __builtin_shufflevector(a, b, fold_lane(V, G, J)...) +
         __builtin_shufflevector(a, b, (fold_lane(V, G, J) + G / 2)...);
}
// the lane sums of v[0 .. n) (n a power of 2, <= kLanes) as one vector: n groups of kLanes / n lanes, in order
template <typename T, int N>
inline Vec<T> fold_tree(const Vec<T>* v) {
  if constexpr (N == 1)
    return v[0];
  else
    return fold<T, 2 * kLanes<T> / N>(fold_tree<T, N / 2>(v), fold_tree<T, N / 2>(v + N / 2),
                                      std::make_integer_sequence<int, kLanes<T>>{});
}

// out[r] = the sum of the lanes of acc[r], r < R
template <typename T, int R>
inline void hsums(const Vec<T>* acc, T* out) {
  constexpr int V = kLanes<T>;
  int r = 0;
#pragma GCC unroll 4
  for (; r + V <= R; r += V) {
    const Vec<T> sums = fold_tree<T, V>(acc + r);
    std::memcpy(out + r, &sums, sizeof sums);
  }
#pragma GCC unroll 16
  for (; r < R; ++r) out[r] = hsum<T>(acc[r]);
}

// register blocks: C degree rows of PB vectors plus PB accumulators fit the registers (slots 0, 1, 3); UB
// channels of C accumulators (slot 2). The loops over them carry `#pragma GCC unroll` so that the arrays of
// accumulators become registers.
template <int C>
constexpr int grid_block() {  // a power of 2 <= 4 (remainders run in halves)
  const int fit = (kRegisters - C - 2) / (C + 1);
  return fit >= 4 ? 4 : fit >= 2 ? 2 : 1;
}
template <int C>
constexpr int channel_block() {  // UB C accumulators: half the registers (more spill around the sums)
  return std::max(1, kRegisters / 2 / C);
}

// f(j, B, Part) over the vectors j of a row of P: blocks of B = PB vectors, the rest by halves (B compile-time),
// then the partial vector (Part = true)
template <int PB, typename F>
inline void over_grid(int full, int tail, F&& f) {
  static_assert(PB == 1 || PB == 2 || PB == 4, "grid blocks of 1, 2 or 4 vectors");
  using Whole = std::false_type;
  int j = 0;
  for (; j + PB <= full; j += PB) f(j, std::integral_constant<int, PB>{}, Whole{});
  if constexpr (PB >= 4)
    if (j + 2 <= full) f(j, std::integral_constant<int, 2>{}, Whole{}), j += 2;
  if constexpr (PB >= 2)
    if (j < full) f(j, std::integral_constant<int, 1>{}, Whole{}), ++j;
  if (tail) f(j, std::integral_constant<int, 1>{}, std::true_type{});
}

// f(std::integral_constant<int, C>) for the runtime chunk size c in 1..kMaxChunk
template <typename F>
inline void with_chunk(int c, F&& f) {
  switch (c) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    default: return f(std::integral_constant<int, kMaxChunk>{});
  }
}

// the problem, with contiguous inputs; a row of P grid values is nv vectors, the last with `tail` lanes
template <typename T>
struct Problem {
  const T *f, *s, *w, *y;
  const int64_t *senders, *receivers;
  int64_t N, E, mul, P, L1;
  int nv, full, tail;
  std::vector<Vec<T>> yt;  // y2^T [L1^2, nv], padded with zeros

  Problem(const T* y2, int64_t P_, int64_t L1_) : P(P_), L1(L1_) {
    full = static_cast<int>(P / kLanes<T>), tail = static_cast<int>(P % kLanes<T>), nv = full + (tail > 0);
    yt.assign(L1 * L1 * nv, Vec<T>{});
    for (int64_t p = 0; p < P; ++p)
      for (int64_t lm = 0; lm < L1 * L1; ++lm) yt[lm * nv + p / kLanes<T>][p % kLanes<T>] = y2[p * L1 * L1 + lm];
  }

  // k[l, :] = sum_m y[e, l m] y2^T[l m, :]  for every l  ([L1, nv], padded with zeros)
  void edge_kernel(int64_t e, Vec<T>* k) const {
    const T* ye = y + e * L1 * L1;
    for (int64_t l = 0; l < L1; ++l)
      for (int j = 0; j < nv; ++j) {
        Vec<T> acc = ye[l * l] * yt[l * l * nv + j];
        for (int64_t lm = l * l + 1; lm < (l + 1) * (l + 1); ++lm) acc += ye[lm] * yt[lm * nv + j];
        k[l * nv + j] = acc;
      }
  }
};

// the edges grouped by node (a stable counting sort): edges order[start[n] .. start[n + 1]) have node[e] = n
struct ByNode {
  std::vector<int64_t> start, order;
  ByNode(const int64_t* node, int64_t N, int64_t E) : start(N + 1, 0), order(E) {
    for (int64_t e = 0; e < E; ++e) ++start[node[e] + 1];
    for (int64_t n = 0; n < N; ++n) start[n + 1] += start[n];
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    for (int64_t e = 0; e < E; ++e) order[next[node[e]]++] = e;
  }
};

// ---------------------------------------------------------------- slots 0 and 1: sums into nodes
// acc[u, j + b] += src[u, j + b] * sum_{l < C} w[u, l] k[l, j + b]  for b < PB, u < mul (w, k at the chunk)
template <typename T, int C, int PB, bool Part>
inline void node_block(const Problem<T>& pb, const T* w, const Vec<T>* k, const T* src, int j, Vec<T>* acc) {
  constexpr int V = kLanes<T>;
  Vec<T> kr[C][PB];
  for (int l = 0; l < C; ++l)
    for (int b = 0; b < PB; ++b) kr[l][b] = k[l * pb.nv + j + b];
  for (int64_t u = 0; u < pb.mul; ++u) {
    T wl[C];
    for (int l = 0; l < C; ++l) wl[l] = w[u * pb.L1 + l];
    const T* row = src + u * pb.P + j * V;
    Vec<T>* a = acc + u * pb.nv + j;
    for (int b = 0; b < PB; ++b) {
      Vec<T> g = wl[0] * kr[0][b];
      for (int l = 1; l < C; ++l) g += wl[l] * kr[l][b];
      a[b] += load_row<T, Part>(row + b * V, pb.tail) * g;
    }
  }
}

// out[n] = sum over the edges e with dst[e] = n of src_tensor[from[e]] * g[e]
template <typename T>
void node_sums(const Problem<T>& pb, const int64_t* dst, const int64_t* from, const T* src, T* out) {
  const int64_t N = pb.N, E = pb.E, row = pb.mul * pb.P;
  const ByNode csr(dst, N, E);
  const std::vector<int64_t>&start = csr.start, &order = csr.order;
  // task t covers the nodes [first(t), first(t + 1)): equal shares of edges + nodes
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N));
  auto first = [&](int64_t t) {
    const int64_t target = (E + N) * t / tasks;
    int64_t lo = 0, hi = N;  // the least n with start[n] + n >= target
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (start[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<Vec<T>> k(pb.L1 * pb.nv), acc(pb.mul * pb.nv);
    for (int64_t n = first(t0), end = t1 == tasks ? N : first(t1); n < end; ++n) {
      T* o = out + n * row;
      if (start[n] == start[n + 1]) {
        std::fill(o, o + row, T(0));
        continue;
      }
      std::fill(acc.begin(), acc.end(), Vec<T>{});
      for (int64_t i = start[n]; i < start[n + 1]; ++i) {
        const int64_t e = order[i];
        if (i + 1 < start[end]) {  // the next edge's rows of src, w and y
          const int64_t next = order[i + 1];
          prefetch(src + from[next] * row, row * sizeof(T));
          prefetch(pb.w + next * pb.mul * pb.L1, pb.mul * pb.L1 * sizeof(T));
          prefetch(pb.y + next * pb.L1 * pb.L1, pb.L1 * pb.L1 * sizeof(T));
        }
        pb.edge_kernel(e, k.data());
        for (int64_t l0 = 0; l0 < pb.L1; l0 += kMaxChunk)
          with_chunk(static_cast<int>(std::min<int64_t>(kMaxChunk, pb.L1 - l0)), [&](auto C) {
            constexpr int c = decltype(C)::value;
            const T* we = pb.w + e * pb.mul * pb.L1 + l0;
            over_grid<grid_block<c>()>(pb.full, pb.tail, [&](int j, auto B, auto part) {
              node_block<T, c, decltype(B)::value, decltype(part)::value>(pb, we, k.data() + l0 * pb.nv,
                                                                         src + from[e] * row, j, acc.data());
            });
          });
      }
      for (int64_t u = 0; u < pb.mul; ++u) std::memcpy(o + u * pb.P, &acc[u * pb.nv], pb.P * sizeof(T));
    }
  });
}

// ---------------------------------------------------------------- slot 2: out[e, u, l] = sum_p h[u, p] k[l, p]
// acc[b C + l] += sum over the grid vector j of h[u0 + b, j] k[l, j]  (b < UB, l < C)
template <typename T, int C, int UB, bool Part>
inline void weight_step(const Problem<T>& pb, const T* fe, const T* se, const Vec<T>* k, int64_t u0, int j,
                        Vec<T>* acc) {
  constexpr int V = kLanes<T>;
  Vec<T> kr[C];
#pragma GCC unroll 8
  for (int l = 0; l < C; ++l) kr[l] = k[l * pb.nv + j];
#pragma GCC unroll 16
  for (int b = 0; b < UB; ++b) {
    const int64_t at = (u0 + b) * pb.P + j * V;
    const Vec<T> h = load_row<T, Part>(fe + at, pb.tail) * load_row<T, Part>(se + at, pb.tail);
#pragma GCC unroll 8
    for (int l = 0; l < C; ++l) acc[b * C + l] += h * kr[l];
  }
}

// out[u0 + b, l] = sum_p h[u0 + b, p] k[l, p] for b < UB, l < C (k, out at the degree chunk; fe, se: rows of f, s)
// (Tail: whether the rows end in a partial vector; a compile-time flag keeps acc in registers)
template <typename T, int C, int UB, bool Tail>
inline void weight_block(const Problem<T>& pb, const T* fe, const T* se, const Vec<T>* k, int64_t u0, T* out) {
  Vec<T> acc[UB * C];
#pragma GCC unroll 32
  for (int r = 0; r < UB * C; ++r) acc[r] = Vec<T>{};
  for (int j = 0; j < pb.full; ++j) weight_step<T, C, UB, false>(pb, fe, se, k, u0, j, acc);
  if constexpr (Tail) weight_step<T, C, UB, true>(pb, fe, se, k, u0, pb.full, acc);
  if (C == pb.L1) {  // out[(u0 + b) L1 + l] for r = b C + l: contiguous
    hsums<T, UB * C>(acc, out + u0 * C);
  } else {
    T sums[UB * C];
    hsums<T, UB * C>(acc, sums);
    for (int b = 0; b < UB; ++b)
      for (int l = 0; l < C; ++l) out[(u0 + b) * pb.L1 + l] = sums[b * C + l];
  }
}

template <typename T, int C>
void weight_edge(const Problem<T>& pb, const T* fe, const T* se, const Vec<T>* k, T* out) {
  constexpr int UB = channel_block<C>();
  auto run = [&](auto tail) {
    constexpr bool Tail = decltype(tail)::value;
    int64_t u = 0;
    for (; u + UB <= pb.mul; u += UB) weight_block<T, C, UB, Tail>(pb, fe, se, k, u, out);
    for (; u < pb.mul; ++u) weight_block<T, C, 1, Tail>(pb, fe, se, k, u, out);
  };
  if (pb.tail)
    run(std::true_type{});
  else
    run(std::false_type{});
}

// ---------------------------------------------------------------- slot 3: q[l, p] = sum_u w[e, u, l] h[u, p]
template <typename T, int C, int PB, bool Part>
inline void harmonic_block(const Problem<T>& pb, const T* fe, const T* se, const T* w, int j, Vec<T>* q) {
  constexpr int V = kLanes<T>;
  Vec<T> acc[C][PB];
  for (int l = 0; l < C; ++l)
    for (int b = 0; b < PB; ++b) acc[l][b] = Vec<T>{};
  for (int64_t u = 0; u < pb.mul; ++u) {
    T wl[C];
    for (int l = 0; l < C; ++l) wl[l] = w[u * pb.L1 + l];
    const int64_t at = u * pb.P + j * V;
    for (int b = 0; b < PB; ++b) {
      const Vec<T> h = load_row<T, Part>(fe + at + b * V, pb.tail) *
                       load_row<T, Part>(se + at + b * V, pb.tail);
      for (int l = 0; l < C; ++l) acc[l][b] += wl[l] * h;
    }
  }
  for (int l = 0; l < C; ++l)
    for (int b = 0; b < PB; ++b) q[l * pb.nv + j + b] = acc[l][b];
}

// slots 2 and 3, parallel over edges
template <typename T>
void edge_values(const Problem<T>& pb, int slot, T* out) {
  const int64_t row = pb.mul * pb.P, L1 = pb.L1, width = slot == 2 ? pb.mul * L1 : L1 * L1;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row));
  at::parallel_for(0, pb.E, grain, [&](int64_t begin, int64_t end) {
    std::vector<Vec<T>> buffer(L1 * pb.nv);  // k (slot 2) or q (slot 3)
    for (int64_t e = begin; e < end; ++e) {
      const T* fe = pb.f + pb.senders[e] * row;
      const T* se = pb.s + pb.receivers[e] * row;
      if (e + 1 < end) {  // the next edge's rows
        prefetch(pb.f + pb.senders[e + 1] * row, row * sizeof(T));
        if (pb.receivers[e + 1] != pb.receivers[e]) prefetch(pb.s + pb.receivers[e + 1] * row, row * sizeof(T));
      }
      T* o = out + e * width;
      if (slot == 2) pb.edge_kernel(e, buffer.data());
      for (int64_t l0 = 0; l0 < L1; l0 += kMaxChunk)
        with_chunk(static_cast<int>(std::min<int64_t>(kMaxChunk, L1 - l0)), [&](auto C) {
          constexpr int c = decltype(C)::value;
          if (slot == 2)
            weight_edge<T, c>(pb, fe, se, buffer.data() + l0 * pb.nv, o + l0);
          else
            over_grid<grid_block<c>()>(pb.full, pb.tail, [&](int j, auto B, auto part) {
              harmonic_block<T, c, decltype(B)::value, decltype(part)::value>(pb, fe, se, pb.w + e * pb.mul * L1 + l0,
                                                                              j, buffer.data() + l0 * pb.nv);
            });
        });
      if (slot == 3)  // out[e, l m] = sum_p q[l, p] y2[p, l m]
        for (int64_t l = 0; l < L1; ++l)
          for (int64_t lm = l * l; lm < (l + 1) * (l + 1); ++lm) {
            Vec<T> acc{};
            for (int j = 0; j < pb.nv; ++j) acc += buffer[l * pb.nv + j] * pb.yt[lm * pb.nv + j];
            o[lm] = hsum<T>(acc);
          }
    }
  });
}

// ---------------------------------------------------------------- the operator
using Opt = std::optional<at::Tensor>;

// the argument `name`, contiguous, checked against `shape` (-1: any), or an undefined tensor when not needed
at::Tensor argument(const Opt& a, const char* name, bool needed, std::vector<int64_t> shape, at::ScalarType dtype) {
  if (!needed) return at::Tensor();
  TORCH_CHECK(a.has_value() && a->defined(), "gaunt grid_messages: ", name, " is required for this slot");
  const at::Tensor& t = *a;
  TORCH_CHECK(t.device().is_cpu(), "gaunt grid_messages: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == dtype, "gaunt grid_messages: ", name, " is ", t.scalar_type(), ", y2 is ", dtype);
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || t.size(i) == shape[i];
  TORCH_CHECK(ok, "gaunt grid_messages: ", name, " has shape ", t.sizes(), ", expected ", at::IntArrayRef(shape),
              " (-1: any)");
  return t.contiguous();
}

at::Tensor grid_messages(int64_t slot, const Opt& f, const Opt& s, const Opt& w, const Opt& y, const at::Tensor& y2,
                         const at::Tensor& senders, const at::Tensor& receivers, int64_t num_nodes) {
  TORCH_CHECK(slot >= 0 && slot <= 3, "gaunt grid_messages: slot must be 0..3, got ", slot);
  TORCH_CHECK(num_nodes >= 0, "gaunt grid_messages: num_nodes must be >= 0, got ", num_nodes);
  TORCH_CHECK(y2.dim() == 2 && y2.device().is_cpu(), "gaunt grid_messages: y2 must be a CPU tensor [P, (L+1)^2]");
  const at::ScalarType dtype = y2.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "gaunt grid_messages: y2 must be float32 or float64");
  const int64_t P = y2.size(0);
  int64_t L1 = 0;
  while ((L1 + 1) * (L1 + 1) <= y2.size(1)) ++L1;
  TORCH_CHECK(L1 > 0 && L1 * L1 == y2.size(1), "gaunt grid_messages: y2 has ", y2.size(1), " columns, not (L+1)^2");
  const int64_t E = senders.numel();
  for (const auto* idx : {&senders, &receivers})
    TORCH_CHECK(idx->dim() == 1 && idx->size(0) == E && idx->scalar_type() == at::kLong && idx->device().is_cpu(),
                "gaunt grid_messages: ", idx == &senders ? "senders" : "receivers", " must be int64 [E], E = ", E);
  const Opt& first = slot == 0 ? s : f;  // a node tensor every slot needs
  TORCH_CHECK(first.has_value() && first->dim() == 3, "gaunt grid_messages: ", slot == 0 ? "s" : "f",
              " is required for this slot, [num_nodes, mul, P]");
  const int64_t mul = first->size(1);
  at::Tensor tf = argument(f, "f", slot != 0, {num_nodes, mul, P}, dtype);
  at::Tensor ts = argument(s, "s", slot != 1, {num_nodes, mul, P}, dtype);
  at::Tensor tw = argument(w, "w", slot != 2, {E, mul, L1}, dtype);
  at::Tensor ty = argument(y, "y", slot != 3, {E, L1 * L1}, dtype);
  at::Tensor snd = senders.contiguous(), rcv = receivers.contiguous();
  for (const auto* idx : {&snd, &rcv}) {
    const int64_t* p = idx->data_ptr<int64_t>();
    const bool ok = std::all_of(p, p + E, [&](int64_t i) { return i >= 0 && i < num_nodes; });
    TORCH_CHECK(ok, "gaunt grid_messages: ", idx == &snd ? "senders" : "receivers", " out of range [0, ", num_nodes, ")");
  }
  const at::TensorOptions options = y2.options();
  at::Tensor out = slot < 2 ? at::empty({num_nodes, mul, P}, options)
                            : at::empty(slot == 2 ? std::vector<int64_t>{E, mul, L1} : std::vector<int64_t>{E, L1 * L1},
                                        options);
  at::Tensor table = y2.contiguous();
  AT_DISPATCH_FLOATING_TYPES(dtype, "gaunt_grid_messages", [&] {
    using T = scalar_t;
    auto ptr = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : static_cast<const T*>(nullptr); };
    Problem<T> pb(table.data_ptr<T>(), P, L1);
    pb.f = ptr(tf), pb.s = ptr(ts), pb.w = ptr(tw), pb.y = ptr(ty);
    pb.senders = snd.data_ptr<int64_t>(), pb.receivers = rcv.data_ptr<int64_t>();
    pb.N = num_nodes, pb.E = E, pb.mul = mul;
    if (slot == 1)
      node_sums(pb, pb.receivers, pb.senders, pb.f, out.data_ptr<T>());
    else if (slot == 0)
      node_sums(pb, pb.senders, pb.receivers, pb.s, out.data_ptr<T>());
    else
      edge_values(pb, static_cast<int>(slot), out.data_ptr<T>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def(
      "grid_messages(int slot, Tensor? f, Tensor? s, Tensor? w, Tensor? y, Tensor y2, Tensor senders, "
      "Tensor receivers, int num_nodes) -> Tensor");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) { m.impl("grid_messages", &grid_messages); }
