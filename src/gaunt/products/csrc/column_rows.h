// The channel columns' rows as csrc/scaled_columns.h reads them: the per-row form of an operand's blocks (one scale
// per channel and irrep), the scale groups (the W (L + 1) weights of W channels side by side), and rows split,
// scaled and joined in registers (compile-time widths for the small degrees).

#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "direct.h"

// a lambda inlined where it is called (its rows stay in registers)
#define GAUNT_INLINE __attribute__((always_inline))

namespace gaunt_scaled {

// ------------------------------------------------------------------ the per-row form of one operand's blocks
// a mul_ir block of an operand as the columns read it: D rows from tile row `first`; the values of channel u,
// row m at x[n, source + u D + m] (plain) or x[n, source + m] (broadcast); the scale of channel u at
// w[n ld + base + u stride]
struct RowBlock {
  int64_t source, D, first;
  bool broadcast;
  int64_t base, stride;
};

// the blocks of one operand in the per-row form, or nothing where its index or copy do not have it
inline std::optional<std::vector<RowBlock>> row_blocks(const std::vector<gaunt_direct::Block>& blocks, int64_t mul,
                                                      const int64_t* index, const int64_t* copy) {
  std::vector<RowBlock> out;
  for (const gaunt_direct::Block& b : blocks) {
    const int64_t start = b.start, D = b.D;
    const int64_t stride = mul > 1 ? index[start + D] - index[start] : 0;
    const int64_t source = copy ? copy[start] : start;
    bool broadcast = copy != nullptr && mul > 1, plain = true;
    for (int64_t u = 0; u < mul; ++u)
      for (int64_t m = 0; m < D; ++m) {
        const int64_t k = start + u * D + m, at = copy ? copy[k] : k;
        if (index[k] != index[start] + u * stride) return std::nullopt;
        broadcast = broadcast && at == source + m;
        plain = plain && at == source + u * D + m;
      }
    if (!broadcast && !plain) return std::nullopt;
    out.push_back({source, D, b.first, broadcast, index[start], stride});
  }
  return out;
}

// ------------------------------------------------------------------ the columns
using gaunt_direct::kColumns;
using gaunt_direct::kWidths;
using gaunt_direct::lanes;
using gaunt_direct::Vec;

// the W scales of channels v W .. v W + W - 1 of a block, for the weights row w_row = w + n ld (lane by lane)
template <typename T>
inline Vec<T> scales(const RowBlock& b, const T* w_row, int64_t v) {
  constexpr int W = lanes<T>();
  const T* p = w_row + b.base + v * W * b.stride;
  Vec<T> s;
  for (int i = 0; i < W; ++i) s[i] = p[i * b.stride];
  return s;
}

// blocks first .. first + D - 1 of an operand whose scales interleave: bases base, base + 1, .., base + D - 1, each
// of stride D (the factorised w[u, l], l < D: the W D weights of W channels lie side by side, split into the D
// scale vectors by one shuffle, and the weight sums interleaved back by one); D = 0: one block, read lane by lane
struct ScaleGroup {
  size_t first;
  int64_t D;
};

inline std::vector<ScaleGroup> scale_groups(const std::vector<RowBlock>& blocks) {
  std::vector<ScaleGroup> groups;
  for (size_t i = 0; i < blocks.size();) {
    const int64_t D = blocks[i].stride;
    bool whole = D >= 1 && D <= gaunt_direct::kMaxBlock && i + D <= blocks.size();
    for (int64_t j = 0; whole && j < D; ++j)
      whole = blocks[i + j].stride == D && blocks[i + j].base == blocks[i].base + j;
    groups.push_back({i, whole ? D : 0});
    i += whole ? D : 1;
  }
  return groups;
}

// ------------------------------------------------------------------ rows in registers
// f(d) with the width d as a compile-time constant (std::integral_constant) for the widths of the small degrees,
// else as an int: a block's rows then stay in registers, with no store and reload of a row just shuffled (a
// 64-byte load of a 64-byte store still in flight waits on this machine)
template <typename F>
[[gnu::always_inline]] inline void with_width(int64_t D, F&& f) {
  switch (D) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    default:
      return f(static_cast<int>(D));
  }
}

// f(j) for j < d, unrolled where d is a compile-time width (the rows' indices then constants: registers)
template <typename Width, typename F>
[[gnu::always_inline]] inline void for_each_row(Width d, F&& f) {
  if constexpr (std::is_integral_v<Width>) {
    for (int j = 0; j < d; ++j) f(j);
  } else {
    [&]<int... J>(std::integer_sequence<int, J...>) GAUNT_INLINE { (f(J), ...); }(std::make_integer_sequence<int, Width::value>{});
  }
}

// rows[m], m < d: lane u = src[u d + m] (the W d consecutive values at src split into d rows)
template <typename T, typename Width>
[[gnu::always_inline]] inline void split(Width d, const T* src, Vec<T>* rows) {
  constexpr int W = lanes<T>();
  if constexpr (std::is_integral_v<Width>) {
    gaunt_direct::shuffle_width<false>(d, src, W, reinterpret_cast<T*>(rows), W, kWidths);
  } else {
    constexpr int D = Width::value;
    Vec<T> s[D];
    for_each_row(d, [&](int q) GAUNT_INLINE { __builtin_memcpy(&s[q], src + q * W, sizeof(Vec<T>)); });
    for_each_row(d, [&](int r) GAUNT_INLINE { rows[r] = gaunt_direct::select<T, D, false>(s, r); });
  }
}

// the inverse, dst[u d + m] = rows[m] lane u (Add: added to dst)
template <bool Add, typename T, typename Width>
[[gnu::always_inline]] inline void join(Width d, const Vec<T>* rows, T* dst) {
  constexpr int W = lanes<T>();
  if constexpr (std::is_integral_v<Width>) {
    alignas(64) T side_by_side[gaunt_direct::kMaxBlock * W];
    gaunt_direct::shuffle_width<true>(d, reinterpret_cast<const T*>(rows), W, Add ? side_by_side : dst, W, kWidths);
    for (int q = 0; Add && q < d * W; ++q) dst[q] += side_by_side[q];
  } else {
    constexpr int D = Width::value;
    for_each_row(d, [&](int r) GAUNT_INLINE {
      Vec<T> row = gaunt_direct::select<T, D, true>(rows, r), was;
      if constexpr (Add) __builtin_memcpy(&was, dst + r * W, sizeof(Vec<T>)), row += was;
      __builtin_memcpy(dst + r * W, &row, sizeof(Vec<T>));
    });
  }
}

// the sum of the lanes of x, as a tree (log2 W shuffles and adds: lane k + lane k ^ H)
template <typename T, int H = lanes<T>() / 2>
inline T lane_sum(Vec<T> x) {
  static constexpr gaunt_direct::Table<T, 1> kSwap = gaunt_direct::table<T, 1>([](int, int k) { return k ^ H; });
  x += __builtin_shuffle(x, gaunt_direct::lane_row<T>(kSwap.v[0]));
  if constexpr (H > 1)
    return lane_sum<T, H / 2>(x);
  else
    return x[0];
}

}  // namespace gaunt_scaled
