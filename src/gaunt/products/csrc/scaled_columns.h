// Factorised weights as per-row scales of the direct kernel's channel columns (csrc/scaled_weights.cpp).
//
// The operands of scaled_weights are read by position: program position k of an operand is
//
//   x[n, copy[k]] s[n, k],   s[n, k] = w[n ld + index[k]]        (copy: none, x[n, k])
//
// For the products' own tables (gaunt.products.sphere_frame) these have a structure that the channel columns of
// the direct kernel (csrc/direct.h, the e3nn mul_ir layout) can use: in a block of channels u < mul of an irrep of
// dimension D, position k = start + u D + m,
//
//   index[k] = base + u stride          (w[u, l]: one scale per channel and block, whatever m)
//   copy[k]  = source + u D + m         (plain, the operand's own channels)  or
//   copy[k]  = source + m               (broadcast: a one-channel x2 read by every channel)
//
// so that a column of W channels of one sample is split into D rows as in direct.h and each row is multiplied by
// one vector of W scales; a broadcast block's rows are its D values times the scales. The read-out is the same
// per row: the result rows times the scales (interleaved back, or summed over the lanes into a broadcast
// operand's D values), and the weight gradient, sum over m of r v, one vector per block (its lanes added to w's
// positions base + u stride). Nothing of the operands is scaled in a buffer: per sample, the scales are W loads
// per block and the rest is vector arithmetic.

#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "column_rows.h"
#include "direct.h"

namespace gaunt_scaled {

// the scale of position k < dim of sample s: w[s ld + index[k]]
template <typename T>
struct Scale {
  const T* w;
  int64_t ld, dim;
  const int64_t* index;
};

// an operand: x [n, width], read at x[n, copy[k]] (copy nullptr: x[n, k]) and scaled by s
template <typename T>
struct Operand {
  const T* x;
  int64_t width;
  const int64_t* copy;
  Scale<T> s;
};

// what the read-out keeps of v: out = s_o v (out != nullptr; with copy: out[n, copy[k]] += s_o v),
// grad[.., io[k]] += r v (r != nullptr; r [n, width] read through copy as an operand) and v itself (kept !=
// nullptr, [n, dim_out]; on blocks of scaled samples only)
template <typename T>
struct ReadOut {
  T* out;
  int64_t width;  // of out and r
  const int64_t* copy;
  Scale<T> so;
  const T* r;
  T* grad;  // [n, numel], or the chunk's partial sum [numel] where the weights are shared (so.ld == 0)
  int64_t numel;
  bool accumulate;  // a per-sample grad's rows hold an earlier sum (else they are zeroed first)
  T* kept = nullptr;
};

// the program on the channel columns of samples (run_columns), the operands and the read-out as given
template <typename T>
struct ScaledColumns {
  static constexpr int W = lanes<T>();
  static constexpr int kRows = gaunt_direct::kMaxBlock;
  const gaunt_direct::Direct& D;
  const T* coefficient;  // per triple
  const std::array<std::vector<RowBlock>, 3>& blocks;
  const Operand<T> (&in)[2];
  ReadOut<T> read;  // its grad set per chunk (run_columns)
  std::vector<ScaleGroup> groups[3];
  std::vector<Vec<T>> X[2], Y;

  ScaledColumns(const gaunt_direct::Direct& d, const T* c, const std::array<std::vector<RowBlock>, 3>& b,
                const Operand<T> (&i)[2], const ReadOut<T>& r)
      : D(d), coefficient(c), blocks(b), in(i), read(r) {
    X[0].resize(D.k[0] * kColumns), X[1].resize(D.k[1] * kColumns), Y.assign(D.k[2] * kColumns, Vec<T>{});
    for (int s = 0; s < 3; ++s) groups[s] = scale_groups(blocks[s]);
  }

  struct Column {
    int64_t n, v;
  };

  template <int U>
  void run(const Column* columns) {
    for (int i = 0; i < U; ++i)
      for (int s = 0; s < 2; ++s) load_operand(s, columns[i], X[s].data() + i, U);
    gaunt_direct::couple<T, U>(D, gaunt_direct::PerTriple<T>{coefficient}, X[0].data(), X[1].data(), Y.data());
    for (int i = 0; i < U; ++i) {
      if (read.r) add_sums(columns[i], U, Y.data() + i);
      if (read.out) write_out(columns[i], U, Y.data() + i);
    }
  }

  // f(k, scale) for every block k of operand s (0, 1; 2: the output), with the W scales of channels v W.. read
  // from the weights row w_row
  template <typename F>
  [[gnu::always_inline]] void for_scales(int s, const T* w_row, int64_t v, F&& f) {
    for (const ScaleGroup& g : groups[s]) {
      const RowBlock& b = blocks[s][g.first];
      if (!g.D) {
        f(g.first, scales(b, w_row, v));
        continue;
      }
      with_width(g.D, [&](auto d) GAUNT_INLINE {
        Vec<T> S[kRows];
        split<T>(d, w_row + b.base + v * W * int(d), S);
        for_each_row(d, [&](int j) GAUNT_INLINE { f(g.first + j, S[j]); });
      });
    }
  }

  // the rows of operand s of column c, scaled, at tile[(first + m) U] of each block
  void load_operand(int s, const Column& c, Vec<T>* tile, int U) {
    const Operand<T>& op = in[s];
    const T* x_row = op.x + c.n * op.width;
    for_scales(s, op.s.w + c.n * op.s.ld, c.v, [&](size_t k, Vec<T> scale) GAUNT_INLINE {
      const RowBlock& b = blocks[s][k];
      Vec<T>* rows = tile + b.first * U;
      if (b.broadcast) {
        for (int64_t m = 0; m < b.D; ++m) rows[m * U] = x_row[b.source + m] * scale;
        return;
      }
      with_width(b.D, [&](auto d) GAUNT_INLINE {
        Vec<T> r[kRows];
        split<T>(d, x_row + b.source + c.v * W * int(d), r);
        for_each_row(d, [&](int m) GAUNT_INLINE { rows[m * U] = r[m] * scale; });
      });
    });
  }

  // out of column c from its result rows (rows_of[(first + m) U] of each block): s_o v, interleaved back, or summed
  // over the lanes into a broadcast block's D values
  void write_out(const Column& c, int U, const Vec<T>* rows_of) {
    T* out_row = read.out + c.n * read.width;
    for_scales(2, read.so.w + c.n * read.so.ld, c.v, [&](size_t k, Vec<T> scale) GAUNT_INLINE {
      const RowBlock& b = blocks[2][k];
      const Vec<T>* rows = rows_of + b.first * U;
      if (b.broadcast) {
        for (int64_t m = 0; m < b.D; ++m) out_row[b.source + m] += lane_sum<T>(rows[m * U] * scale);
        return;
      }
      with_width(b.D, [&](auto d) GAUNT_INLINE {
        Vec<T> r[kRows];
        for_each_row(d, [&](int m) GAUNT_INLINE { r[m] = rows[m * U] * scale; });
        join<false, T>(d, r, out_row + b.source + c.v * W * int(d));
      });
    });
  }

  // sum_m r v of block k of the output, for column c
  [[gnu::always_inline]] Vec<T> weight_sum(size_t k, const Column& c, int U, const Vec<T>* rows_of) {
    const RowBlock& b = blocks[2][k];
    const Vec<T>* rows = rows_of + b.first * U;
    const T* r_row = read.r + c.n * read.width;
    Vec<T> sum = Vec<T>{};
    if (b.broadcast) {
      for (int64_t m = 0; m < b.D; ++m) sum += r_row[b.source + m] * rows[m * U];
      return sum;
    }
    with_width(b.D, [&](auto d) GAUNT_INLINE {
      Vec<T> r[kRows];
      split<T>(d, r_row + b.source + c.v * W * int(d), r);
      for_each_row(d, [&](int m) GAUNT_INLINE { sum += r[m] * rows[m * U]; });
    });
    return sum;
  }

  // grad[base + u stride] += sum_m r v for every block of the output, channels v W.. of column c
  void add_sums(const Column& c, int U, const Vec<T>* rows_of) {
    T* grad = read.so.ld ? read.grad + c.n * read.numel : read.grad;
    for (const ScaleGroup& g : groups[2]) {
      const RowBlock& b = blocks[2][g.first];
      if (!g.D) {
        const Vec<T> sum = weight_sum(g.first, c, U, rows_of);
        T* p = grad + b.base + c.v * W * b.stride;
        for (int i = 0; i < W; ++i) p[i * b.stride] += sum[i];
        continue;
      }
      with_width(g.D, [&](auto d) GAUNT_INLINE {
        Vec<T> sums[kRows];
        for_each_row(d, [&](int j) GAUNT_INLINE { sums[j] = weight_sum(g.first + j, c, U, rows_of); });
        join<true, T>(d, sums, grad + b.base + c.v * W * int(d));
      });
    }
  }

  // zero what the columns of sample n add to, and an output's positions in no block (the kernel writes only the
  // blocks: a recycled output block holds stale values, csrc/output_memory.h)
  void start_sample(int64_t n) {
    if (read.out && (read.copy || D.mul * D.k[2] < D.dims[2]))
      std::fill(read.out + n * read.width, read.out + (n + 1) * read.width, T(0));
    if (read.grad && read.so.ld && !read.accumulate)
      std::fill(read.grad + n * read.numel, read.grad + (n + 1) * read.numel, T(0));
  }

  // the rows of sample n: streams the hardware prefetchers miss
  void prefetch(int64_t n) {
    for (const Operand<T>& op : in) {
      gaunt_direct::prefetch_row<0>(op.x + n * op.width, op.width);
      if (op.s.ld) gaunt_direct::prefetch_row<0>(op.s.w + n * op.s.ld, op.s.ld);
    }
    if (read.r) gaunt_direct::prefetch_row<0>(read.r + n * read.width, read.width);
    if (read.out) gaunt_direct::prefetch_row<1>(read.out + n * read.width, read.width);
    if (read.so.ld) gaunt_direct::prefetch_row<0>(read.so.w + n * read.so.ld, read.so.ld);
  }
};

// the passes `runs` (programs with their operands and read-outs, of one mul) on samples [s0, s1), grad where the
// passes that sum against r sum (per sample: the gradient itself; shared: the chunk's partial sum): per sample, the
// rows that the passes add to are zeroed, then its mul / W columns run kColumns at a time (the coupling's
// independent accumulators), every pass on each group of columns while their rows are in cache
template <typename T>
void run_columns(std::vector<ScaledColumns<T>>& runs, int64_t s0, int64_t s1, T* grad) {
  using Column = typename ScaledColumns<T>::Column;
  for (ScaledColumns<T>& run : runs)
    if (run.read.r) run.read.grad = grad;
  const int64_t chunks = runs.front().D.mul / lanes<T>();
  Column columns[kColumns];
  int filled = 0;
  for (int64_t n = s0; n < s1; ++n) {
    if (n + gaunt_direct::kPrefetch < s1) runs.front().prefetch(n + gaunt_direct::kPrefetch);
    for (ScaledColumns<T>& run : runs) run.start_sample(n);
    for (int64_t v = 0; v < chunks; ++v) {
      columns[filled++] = {n, v};
      if (filled < kColumns) continue;
      for (ScaledColumns<T>& run : runs) run.template run<kColumns>(columns);
      filled = 0;
    }
  }
  for (ScaledColumns<T>& run : runs)
    for (int i = 0; i < filled; ++i) run.template run<1>(columns + i);
}

}  // namespace gaunt_scaled
