// The vector machinery of csrc/grid_messages.cpp: one SIMD register of grid values as a GCC vector, loads of
// row ends, sums of lanes (many at once by folds), and the register blocks over grid vectors and degrees.

#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

namespace gaunt_grid {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64, kRegisters = 32;
#elif defined(__AVX__)
constexpr int kVecBytes = 32, kRegisters = 16;
#else
constexpr int kVecBytes = 16, kRegisters = 16;
#endif
constexpr int kMaxChunk = 6;             // degrees per pass
constexpr int64_t kPrefetchBytes = 1024;  // of the next edge's rows (the hardware streams the rest)

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
template <int N>
using Int = std::integral_constant<int, N>;

// the kLanes values at p, or (Part) the first n of them and zeros: the end of a row
template <typename T, bool Part>
inline Vec<T> load_row(const T* p, int n) {
  Vec<T> v{};
  if constexpr (!Part) {
    std::memcpy(&v, p, sizeof v);
  } else {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 8) return (Vec<T>)_mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
    if constexpr (sizeof(T) == 4) return (Vec<T>)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
#endif
    for (int i = 0; i < n; ++i) v[i] = p[i];
  }
  return v;
}

inline void prefetch(const void* p, int64_t bytes) {
  for (int64_t i = 0; i < std::min(bytes, kPrefetchBytes); i += 64) __builtin_prefetch(static_cast<const char*>(p) + i);
}

// the sum of the lanes of v
template <typename T>
inline T hsum(Vec<T> v) {
  T a[kLanes<T>];
  std::memcpy(a, &v, sizeof v);
  for (int half = kLanes<T> / 2; half > 0; half /= 2)
    for (int i = 0; i < half; ++i) a[i] += a[i + half];
  return a[0];
}

// Many sums of lanes at once: a and b hold groups of G lanes, each the partial sums of one accumulator;
// fold<G>(a, b) holds a's groups, then b's, each folded to G / 2 lanes (lower half + upper half).
constexpr int fold_lane(int V, int G, int j) {  // lane j of the lower halves
  const int group = j / (G / 2), n = V / G;
  return (group >= n) * V + (group % n) * G + j % (G / 2);
}
template <typename T, int G, int... J>
inline Vec<T> fold(Vec<T> a, Vec<T> b, std::integer_sequence<int, J...>) {
  constexpr int V = kLanes<T>;
  return __builtin_shufflevector(a, b, fold_lane(V, G, J)...) +
         __builtin_shufflevector(a, b, (fold_lane(V, G, J) + G / 2)...);
}
// the lane sums of v[0 .. N) (N a power of 2 <= kLanes) as one vector of N groups of kLanes / N lanes
template <typename T, int N>
inline Vec<T> fold_tree(const Vec<T>* v) {
  if constexpr (N == 1)
    return v[0];
  else
    return fold<T, 2 * kLanes<T> / N>(fold_tree<T, N / 2>(v), fold_tree<T, N / 2>(v + N / 2),
                                      std::make_integer_sequence<int, kLanes<T>>{});
}
// out[r] = the sum of the lanes of acc[r], r < R: kLanes sums in kLanes - 1 folds
template <typename T, int R>
inline void hsums(const Vec<T>* acc, T* out) {
  constexpr int V = kLanes<T>;
#pragma GCC unroll 4
  for (int r = 0; r + V <= R; r += V) {
    const Vec<T> sums = fold_tree<T, V>(acc + r);
    std::memcpy(out + r, &sums, sizeof sums);
  }
#pragma GCC unroll 16
  for (int r = R / V * V; r < R; ++r) out[r] = hsum<T>(acc[r]);
}

// Register blocks: C degree rows of PB vectors, C weights and PB accumulators (slots 0, 1, 3); UB channels of
// C accumulators, half the registers (slot 2: more spill around the sums). The loops over them are unrolled
// (`#pragma GCC unroll`, or short compile-time loops) so that the arrays become registers.
template <int C>
constexpr int grid_block() {  // a power of 2 <= 4: the remainders run in halves
  const int fit = (kRegisters - C - 2) / (C + 1);
  return fit >= 4 ? 4 : fit >= 2 ? 2 : 1;
}
template <int C>
constexpr int channel_block() {
  return std::max(1, kRegisters / 2 / C);
}

// f(j, Int<B>, Part) over the vectors j of a row: blocks of B = PB, 2, 1 whole vectors, then the partial one
template <int PB, typename F>
inline void over_grid(int full, int tail, F&& f) {
  int j = 0;
  for (; j + PB <= full; j += PB) f(j, Int<PB>{}, std::false_type{});
  if constexpr (PB >= 4)
    if (j + 2 <= full) f(j, Int<2>{}, std::false_type{}), j += 2;
  if constexpr (PB >= 2)
    if (j < full) f(j, Int<1>{}, std::false_type{}), ++j;
  if (tail) f(j, Int<1>{}, std::true_type{});
}

// f(l0, Int<C>) for the degree chunks [l0, l0 + C) of [0, L1)
template <typename F>
inline void over_degrees(int64_t L1, F&& f) {
  for (int64_t l0 = 0; l0 < L1; l0 += kMaxChunk) {
    switch (std::min<int64_t>(kMaxChunk, L1 - l0)) {
      case 1: f(l0, Int<1>{}); break;
      case 2: f(l0, Int<2>{}); break;
      case 3: f(l0, Int<3>{}); break;
      case 4: f(l0, Int<4>{}); break;
      case 5: f(l0, Int<5>{}); break;
      default: f(l0, Int<kMaxChunk>{});
    }
  }
}

}  // namespace gaunt_grid
