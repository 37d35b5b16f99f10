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
// Slots 0 and 1 group the edges by destination node (a counting sort, O(E + N)) and split the nodes between
// threads in shares of edges + nodes; a node accumulates [mul, P] in a cache-resident buffer over its edges
// and writes its row once (no atomics, no [E, mul, P] temporary, the same sums for any number of threads).
// Slots 2 and 3 split the edges. The grid index p is the vector dimension (GCC vector types, one SIMD
// register): k, q and y2^T live in buffers padded to whole vectors with zeros; the last, partial vector of a
// row of f or s is read with a masked load. Degrees are taken C <= kMaxChunk at a time (a compile-time C keeps
// the register blocks in registers; every slot is linear in the degree blocks, so larger L1 run in chunks).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "grid_vectors.h"
#include "output_memory.h"

namespace {

using namespace gaunt_grid;

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

  // k[l, :] = sum_m y[e, l m] y2^T[l m, :] for every l ([L1, nv], padded with zeros)
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
    for (int b = 0; b < PB; ++b) {
      Vec<T> g = wl[0] * kr[0][b];
      for (int l = 1; l < C; ++l) g += wl[l] * kr[l][b];
      acc[u * pb.nv + j + b] += load_row<T, Part>(src + u * pb.P + (j + b) * V, pb.tail) * g;
    }
  }
}

// out[n] = sum over the edges e with dst[e] = n of src[from[e]] * g[e]
template <typename T>
void node_sums(const Problem<T>& pb, const int64_t* dst, const int64_t* from, const T* src, T* out) {
  const int64_t N = pb.N, E = pb.E, row = pb.mul * pb.P;
  std::vector<int64_t> start(N + 1, 0), order(E);  // edges order[start[n] .. start[n + 1]) have dst = n
  for (int64_t e = 0; e < E; ++e) ++start[dst[e] + 1];
  for (int64_t n = 0; n < N; ++n) start[n + 1] += start[n];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t e = 0; e < E; ++e) order[next[dst[e]]++] = e;  // stable: a node's edges in their order
  // task t: the nodes [first(t), first(t + 1)), the least n with start[n] + n >= (E + N) t / tasks
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N));
  auto first = [&](int64_t t) {
    const int64_t target = (E + N) * t / tasks;
    int64_t lo = 0, hi = N;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (start[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<Vec<T>> k(pb.L1 * pb.nv), acc(pb.mul * pb.nv);
    const int64_t end = t1 == tasks ? N : first(t1);
    for (int64_t n = first(t0); n < end; ++n) {
      std::fill(acc.begin(), acc.end(), Vec<T>{});
      for (int64_t i = start[n]; i < start[n + 1]; ++i) {
        const int64_t e = order[i];
        if (i + 1 < start[end]) {
          const int64_t e1 = order[i + 1];
          prefetch(src + from[e1] * row, row * sizeof(T));
          prefetch(pb.w + e1 * pb.mul * pb.L1, pb.mul * pb.L1 * sizeof(T));
          prefetch(pb.y + e1 * pb.L1 * pb.L1, pb.L1 * pb.L1 * sizeof(T));
        }
        pb.edge_kernel(e, k.data());
        over_degrees(pb.L1, [&](int64_t l0, auto C) {
          over_grid<grid_block<C()>()>(pb.full, pb.tail, [&](int j, auto B, auto part) {
            node_block<T, decltype(C)::value, decltype(B)::value, decltype(part)::value>(
                pb, pb.w + e * pb.mul * pb.L1 + l0, k.data() + l0 * pb.nv, src + from[e] * row, j, acc.data());
          });
        });
      }
      for (int64_t u = 0; u < pb.mul; ++u) std::memcpy(out + n * row + u * pb.P, &acc[u * pb.nv], pb.P * sizeof(T));
    }
  });
}

// ---------------------------------------------------------------- slot 2: out[e, u, l] = sum_p h[u, p] k[l, p]
// for the channels u0 + b, b < UB, the degrees l < C (k, out at the chunk; fe, se: the rows of f and s).
// Tail: the rows end in a partial vector (a compile-time flag, so that no branch joins the accumulators).
template <typename T, int C, int UB, bool Tail>
inline void weight_block(const Problem<T>& pb, const T* fe, const T* se, const Vec<T>* k, int64_t u0, T* out) {
  constexpr int V = kLanes<T>;
  Vec<T> acc[UB * C];  // acc[b C + l]
#pragma GCC unroll 32
  for (int r = 0; r < UB * C; ++r) acc[r] = Vec<T>{};
  auto step = [&](int j, auto part) {
    Vec<T> kr[C];
#pragma GCC unroll 8
    for (int l = 0; l < C; ++l) kr[l] = k[l * pb.nv + j];
#pragma GCC unroll 16
    for (int b = 0; b < UB; ++b) {
      const int64_t at = (u0 + b) * pb.P + j * V;
      const Vec<T> h = load_row<T, part()>(fe + at, pb.tail) * load_row<T, part()>(se + at, pb.tail);
#pragma GCC unroll 8
      for (int l = 0; l < C; ++l) acc[b * C + l] += h * kr[l];
    }
  };
  for (int j = 0; j < pb.full; ++j) step(j, std::false_type{});
  if constexpr (Tail) step(pb.full, std::true_type{});
  if (C == pb.L1) {  // out[(u0 + b) L1 + l] with b C + l: contiguous
    hsums<T, UB * C>(acc, out + u0 * C);
  } else {
    T sums[UB * C];
    hsums<T, UB * C>(acc, sums);
    for (int b = 0; b < UB; ++b)
      for (int l = 0; l < C; ++l) out[(u0 + b) * pb.L1 + l] = sums[b * C + l];
  }
}

template <typename T, int C, bool Tail>
void weight_edge(const Problem<T>& pb, const T* fe, const T* se, const Vec<T>* k, T* out) {
  constexpr int UB = channel_block<C>();
  int64_t u = 0;
  for (; u + UB <= pb.mul; u += UB) weight_block<T, C, UB, Tail>(pb, fe, se, k, u, out);
  for (; u < pb.mul; ++u) weight_block<T, C, 1, Tail>(pb, fe, se, k, u, out);
}

// ---------------------------------------------------------------- slot 3: q[l, p] = sum_u w[e, u, l] h[u, p]
// for the vectors j + b, b < PB, and the degrees l < C (w, q at the chunk)
template <typename T, int C, int PB, bool Part>
inline void harmonic_block(const Problem<T>& pb, const T* fe, const T* se, const T* w, int j, Vec<T>* q) {
  constexpr int V = kLanes<T>;
  Vec<T> acc[C][PB];
  for (int l = 0; l < C; ++l)
    for (int b = 0; b < PB; ++b) acc[l][b] = Vec<T>{};
  for (int64_t u = 0; u < pb.mul; ++u) {
    T wl[C];
    for (int l = 0; l < C; ++l) wl[l] = w[u * pb.L1 + l];
    for (int b = 0; b < PB; ++b) {
      const int64_t at = u * pb.P + (j + b) * V;
      const Vec<T> h = load_row<T, Part>(fe + at, pb.tail) * load_row<T, Part>(se + at, pb.tail);
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
      const T *fe = pb.f + pb.senders[e] * row, *se = pb.s + pb.receivers[e] * row;
      if (e + 1 < end) {
        prefetch(pb.f + pb.senders[e + 1] * row, row * sizeof(T));
        if (pb.receivers[e + 1] != pb.receivers[e]) prefetch(pb.s + pb.receivers[e + 1] * row, row * sizeof(T));
      }
      T* o = out + e * width;
      if (slot == 2) {
        pb.edge_kernel(e, buffer.data());
        over_degrees(L1, [&](int64_t l0, auto C) {
          if (pb.tail)
            weight_edge<T, C(), true>(pb, fe, se, buffer.data() + l0 * pb.nv, o + l0);
          else
            weight_edge<T, C(), false>(pb, fe, se, buffer.data() + l0 * pb.nv, o + l0);
        });
        continue;
      }
      over_degrees(L1, [&](int64_t l0, auto C) {
        over_grid<grid_block<C()>()>(pb.full, pb.tail, [&](int j, auto B, auto part) {
          harmonic_block<T, decltype(C)::value, decltype(B)::value, decltype(part)::value>(
              pb, fe, se, pb.w + e * pb.mul * L1 + l0, j, buffer.data() + l0 * pb.nv);
        });
      });
      for (int64_t l = 0; l < L1; ++l)  // out[e, l m] = sum_p q[l, p] y2[p, l m]
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

// the argument `name`, contiguous, checked against `shape`; an undefined tensor where the slot does not read it
at::Tensor argument(const Opt& a, const char* name, bool needed, std::vector<int64_t> shape, at::ScalarType dtype) {
  if (!needed) return at::Tensor();
  TORCH_CHECK(a.has_value() && a->defined(), "gaunt grid_messages: ", name, " is required for this slot");
  TORCH_CHECK(a->device().is_cpu(), "gaunt grid_messages: ", name, " must be a CPU tensor");
  TORCH_CHECK(a->scalar_type() == dtype, "gaunt grid_messages: ", name, " is ", a->scalar_type(), ", y2 is ", dtype);
  TORCH_CHECK(a->sizes() == at::IntArrayRef(shape), "gaunt grid_messages: ", name, " has shape ", a->sizes(),
              ", expected ", at::IntArrayRef(shape));
  return a->contiguous();
}

at::Tensor index(const at::Tensor& t, const char* name, int64_t E, int64_t num_nodes) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == E && t.scalar_type() == at::kLong && t.device().is_cpu(),
              "gaunt grid_messages: ", name, " must be an int64 CPU tensor [E], E = ", E);
  at::Tensor c = t.contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  TORCH_CHECK(std::all_of(p, p + E, [&](int64_t i) { return i >= 0 && i < num_nodes; }), "gaunt grid_messages: ",
              name, " out of range [0, ", num_nodes, ")");
  return c;
}

at::Tensor grid_messages(int64_t slot, const Opt& f, const Opt& s, const Opt& w, const Opt& y, const at::Tensor& y2,
                         const at::Tensor& senders, const at::Tensor& receivers, int64_t num_nodes) {
  TORCH_CHECK(slot >= 0 && slot <= 3, "gaunt grid_messages: slot must be 0..3, got ", slot);
  TORCH_CHECK(num_nodes >= 0, "gaunt grid_messages: num_nodes must be >= 0, got ", num_nodes);
  const at::ScalarType dtype = y2.scalar_type();
  TORCH_CHECK(y2.dim() == 2 && y2.device().is_cpu() && (dtype == at::kFloat || dtype == at::kDouble),
              "gaunt grid_messages: y2 must be a float32 or float64 CPU tensor [P, (L+1)^2]");
  const int64_t P = y2.size(0), E = senders.numel();
  int64_t L1 = 0;
  while ((L1 + 1) * (L1 + 1) <= y2.size(1)) ++L1;
  TORCH_CHECK(L1 > 0 && L1 * L1 == y2.size(1), "gaunt grid_messages: y2 has ", y2.size(1), " columns, not (L+1)^2");
  const Opt& node = slot == 0 ? s : f;  // read by every slot that does not compute it: mul
  TORCH_CHECK(node.has_value() && node->dim() == 3, "gaunt grid_messages: ", slot == 0 ? "s" : "f",
              " is required for this slot, [num_nodes, mul, P]");
  const int64_t mul = node->size(1);
  const at::Tensor tf = argument(f, "f", slot != 0, {num_nodes, mul, P}, dtype);
  const at::Tensor ts = argument(s, "s", slot != 1, {num_nodes, mul, P}, dtype);
  const at::Tensor tw = argument(w, "w", slot != 2, {E, mul, L1}, dtype);
  const at::Tensor ty = argument(y, "y", slot != 3, {E, L1 * L1}, dtype);
  const at::Tensor snd = index(senders, "senders", E, num_nodes), rcv = index(receivers, "receivers", E, num_nodes);
  const std::vector<int64_t> shape = slot < 2 ? std::vector<int64_t>{num_nodes, mul, P}
                                   : slot == 2 ? std::vector<int64_t>{E, mul, L1}
                                               : std::vector<int64_t>{E, L1 * L1};
  at::Tensor out = gaunt_memory::empty_output(shape, y2.options()), table = y2.contiguous();
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
