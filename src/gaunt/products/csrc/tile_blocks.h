// Gathers and scatters of a tile's rows by whole irreps, with shuffles instead of strided gathers.
//
// A strided tile holds W consecutive channels of one sample. In the e3nn mul_ir layout, the D rows of an irrep of
// dimension D (rows with index start + u D, start = b, b + 1, .., b + D - 1: RowKind kStrided, stride D) read the
// W D consecutive values x[sample, b + c0 D .. b + (c0 + W) D) of channels c0 .. c0 + W - 1: one contiguous load
// split into the D rows by register shuffles (csrc/direct.h), where the per-row path is W-lane gathers, and the
// scatter the inverse (rows interleaved by shuffles, added to W D consecutive values) where the per-row path is a
// gather, an add and a scatter per row. A RowPlan, made once per index, finds those blocks; the other rows take
// the per-row path. Only where a tile row is one SIMD register (float, W = 16 on AVX-512): the shuffles work on
// registers.

#pragma once

#include <cstdint>
#include <map>
#include <type_traits>
#include <utility>
#include <vector>

#include "direct.h"
#include "tiles.h"

namespace gaunt_tiles {

// the rows of an index [rows, mul] (its row patterns after it) in blocks: block i is D = D[i] rows
// rows[first[i] + m] (m < D) with starts base[i] + m and stride D; single: every other row
constexpr int kMaxTileBlock = 21;  // the widest irrep split by shuffles (l = 10)
constexpr auto kTileWidths = std::make_integer_sequence<int, kMaxTileBlock>{};

struct RowPlan {
  std::vector<int64_t> base, D, first;
  std::vector<int32_t> rows, single;
};

inline RowPlan plan_rows(const int64_t* index, int64_t rows, int64_t mul) {
  const int64_t* pattern = index + rows * mul;
  std::map<std::pair<int64_t, int64_t>, int32_t> strided;  // (stride, start) -> row
  RowPlan plan;
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t kind = pattern[3 * row], start = pattern[3 * row + 1], stride = pattern[3 * row + 2];
    if (kind == kStrided && stride >= 1 && stride <= kMaxTileBlock && !strided.count({stride, start}))
      strided[{stride, start}] = static_cast<int32_t>(row);
    else
      plan.single.push_back(static_cast<int32_t>(row));
  }
  // sorted by (stride, start): the D rows of a block are D neighbours, starts b, b + 1, .., b + D - 1
  const std::vector<std::pair<std::pair<int64_t, int64_t>, int32_t>> sorted(strided.begin(), strided.end());
  for (size_t i = 0; i < sorted.size();) {
    const auto [D, b] = sorted[i].first;
    bool whole = i + D <= sorted.size();
    for (int64_t m = 1; whole && m < D; ++m) whole = sorted[i + m].first == std::make_pair(D, b + m);
    if (!whole) {
      plan.single.push_back(sorted[i++].second);
      continue;
    }
    plan.base.push_back(b), plan.D.push_back(D), plan.first.push_back(static_cast<int64_t>(plan.rows.size()));
    for (int64_t m = 0; m < D; ++m) plan.rows.push_back(sorted[i + m].second);
    i += D;
  }
  return plan;
}

// whether the blocks apply: a strided tile whose row is one register of the shuffles
template <typename T>
constexpr bool kBlockRows = std::is_same_v<T, float> && sizeof(Vec<T>) == sizeof(gaunt_direct::Vec<T>);

template <typename T, int D>
inline void split_block(const T* src, Vec<T>* X, const int32_t* rows) {
  using R = gaunt_direct::Vec<T>;
  R s[D];
  for (int q = 0; q < D; ++q) __builtin_memcpy(&s[q], src + q * W, sizeof(R));
#pragma GCC unroll 16
  for (int m = 0; m < D; ++m) {
    const R row = gaunt_direct::select<T, D, false>(s, m);
    __builtin_memcpy(X + rows[m], &row, sizeof(R));
  }
}

template <typename T, int D>
inline void join_block(const Vec<T>* Y, const int32_t* rows, T* dst) {
  using R = gaunt_direct::Vec<T>;
  R s[D];
  for (int q = 0; q < D; ++q) __builtin_memcpy(&s[q], Y + rows[q], sizeof(R));
#pragma GCC unroll 16
  for (int r = 0; r < D; ++r) {
    R row = gaunt_direct::select<T, D, true>(s, r), was;
    __builtin_memcpy(&was, dst + r * W, sizeof(R));
    row += was;
    __builtin_memcpy(dst + r * W, &row, sizeof(R));
  }
}

// f(Int<D>) for the block width D (1 <= D <= kMaxTileBlock)
template <typename F, int... D>
inline void with_block(int64_t width, F&& f, std::integer_sequence<int, D...>) {
  (void)((width == D + 1 && (f(std::integral_constant<int, D + 1>{}), true)) || ...);
}

// gather_rows by blocks where they apply (the plan of this index)
template <typename T>
void gather_planned(const RowPlan& plan, const int64_t* index, int64_t rows, int64_t mul, const Tile& tile, const T* x,
                    int64_t ld, Vec<T>* X) {
  if (!kBlockRows<T> || !tile.strided) return gather_rows(index, rows, mul, tile, x, ld, X);
  const T* row = x + tile.sample[0] * ld;
  for (size_t i = 0; i < plan.base.size(); ++i) {
    const T* src = row + plan.base[i] + tile.channel[0] * plan.D[i];
    const int32_t* to = plan.rows.data() + plan.first[i];
    with_block(plan.D[i], [&](auto d) { split_block<T, decltype(d)::value>(src, X, to); }, kTileWidths);
  }
  for (int32_t r : plan.single) gather_rows(index + r * mul, 1, mul, tile, x, ld, X + r, index + rows * mul + 3 * r);
}

// scatter_rows by blocks where they apply
template <typename T>
void scatter_planned(const RowPlan& plan, const int64_t* inverse, int64_t rows, int64_t mul, const Tile& tile,
                     const Vec<T>* Y, T* out, int64_t ld) {
  if (!kBlockRows<T> || !tile.strided) return scatter_rows(inverse, rows, mul, tile, Y, out, ld);
  T* row = out + tile.sample[0] * ld;
  for (size_t i = 0; i < plan.base.size(); ++i) {
    T* dst = row + plan.base[i] + tile.channel[0] * plan.D[i];
    const int32_t* from = plan.rows.data() + plan.first[i];
    with_block(plan.D[i], [&](auto d) { join_block<T, decltype(d)::value>(Y, from, dst); }, kTileWidths);
  }
  for (int32_t r : plan.single)
    scatter_rows(inverse + r * mul, 1, mul, tile, Y + r, out, ld, inverse + rows * mul + 3 * r);
}

}  // namespace gaunt_tiles
