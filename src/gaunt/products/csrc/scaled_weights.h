// The machinery of csrc/scaled_weights.cpp: a sphere program on rows of samples whose operands are scaled per
// position, the read-out of its result (scaled, or summed against r into the weight gradient), the chunks of
// samples over threads. See scaled_weights.cpp for the formulas and scaled_columns.h for the direct kernel's
// per-row form.

#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>

#include "direct.h"
#include "program_layout.h"
#include "scaled_columns.h"

namespace gaunt_scaled {

using namespace gaunt_program;

constexpr int64_t kChunk = 128;             // samples per partial sum of a shared weight gradient (fixed)
constexpr int64_t kBufferBytes = 256 << 10;  // the scaled operands of a block of samples: about L2-sized

// the scales of one sample, [dim]: computed once where they are shared (ld = 0), else once per sample (a scalar
// loop: the vectorised gathers of this machine were slower)
template <typename T>
struct ScaleRow {
  const Scale<T>& s;
  std::vector<T> row;
  int64_t sample = -1;
  explicit ScaleRow(const Scale<T>& scale) : s(scale), row(scale.dim) {}
  const T* of(int64_t n) {
    if (sample < 0 || (s.ld && sample != n)) {
      for (int64_t k = 0; k < s.dim; ++k) row[k] = s.w[n * s.ld + s.index[k]];
      sample = n;
    }
    return row.data();
  }
};

// grad[index[k]] += t[k], k < dim, the runs of one index summed in a register first (no chain through memory)
template <typename T>
inline void add_by_index(const T* t, const int64_t* index, int64_t dim, T* grad) {
  int64_t current = dim ? index[0] : 0;
  T sum = 0;
  for (int64_t k = 0; k < dim; ++k) {
    if (index[k] != current) grad[current] += sum, sum = 0, current = index[k];
    sum += t[k];
  }
  if (dim) grad[current] += sum;
}

// grad[.., index[k]] += r[s, copy[k]] v[s - s0, k] for samples [s0, s1) (r [n, width]; copy nullptr: r[s, k]):
// per sample into grad's row s (per_sample; zeroed first unless accumulate), or summed per position into `positional` [dim] first (shared: added
// to grad by index at the end of the chunk)
template <typename T>
inline void reduce_rows(const T* r, int64_t width, const int64_t* copy, const T* v, const int64_t* index, int64_t dim,
                 int64_t numel, bool per_sample, bool accumulate, int64_t s0, int64_t s1, T* grad, T* positional) {
  for (int64_t s = s0; s < s1; ++s, v += dim) {
    const T* rs = r + s * width;
    if (per_sample) std::fill(positional, positional + dim, T(0));
    if (copy)
      for (int64_t k = 0; k < dim; ++k) positional[k] += rs[copy[k]] * v[k];
    else
      for (int64_t k = 0; k < dim; ++k) positional[k] += rs[k] * v[k];
    if (per_sample) {  // the sample's row, every entry written unless accumulating (the tensor is not zeroed)
      if (!accumulate) std::fill(grad + s * numel, grad + (s + 1) * numel, T(0));
      add_by_index(positional, index, dim, grad + s * numel);
    }
  }
}

// the program on rows of samples, on the kernel that runs it: y [samples, dim_out] = P(a, b) (y zeroed before)
template <typename T>
struct BlockProgram {
  const T* values;
  const int64_t* meta;
  bool direct;
  int64_t mul, dims[3], align;  // align: samples per block, a multiple of it (whole tiles)

  BlockProgram(const T* v, const int64_t* m, bool is_direct) : values(v), meta(m), direct(is_direct) {
    mul = m[0], dims[0] = m[1], dims[1] = m[2], dims[2] = m[3];  // both packings begin so
    align = direct ? gaunt_direct::lanes<T>() : W / std::gcd<int64_t>(mul, W);
  }
};

// the state of one thread: the program's tables as its kernel reads them, and the transform kernel's scratch
template <typename T>
struct BlockRunner {
  const BlockProgram<T>& program;
  std::optional<Layout> layout;
  std::optional<Scratch<T>> scratch;
  std::optional<gaunt_direct::Direct> direct;

  explicit BlockRunner(const BlockProgram<T>& p) : program(p) {
    if (p.direct) {
      direct.emplace(p.meta, gaunt_direct::lanes<T>());
    } else {
      layout.emplace(p.meta);
      scratch.emplace(*layout);
    }
  }
  void operator()(const T* a, const T* b, int64_t samples, T* y) {
    if (direct) {
      constexpr int L = gaunt_direct::lanes<T>();
      if (direct->channels(L))
        gaunt_direct::run_channels<T>(*direct, program.values, a, b, 0, samples, y);
      else
        gaunt_direct::run_tiles<T>(*direct, program.values, a, b, samples, 0, (samples + L - 1) / L, y);
      return;
    }
    for_each_tile(program.mul, 0, samples, [](int64_t, int64_t) {},
                  [&](const Tile& tile) { run_tile(*layout, program.values, a, b, tile, *scratch, y); });
  }
};

// samples [begin, end) in blocks whose scaled operands fit the buffer: per block, the operands scaled into the
// buffer, the program over the block, then the read-out
template <typename T>
void run_chunk(BlockRunner<T>& run, const Operand<T> (&in)[2], const ReadOut<T>& read, int64_t begin, int64_t end) {
  const int64_t dim = read.so.dim, per_sample = in[0].s.dim + in[1].s.dim + dim, align = run.program.align;
  const int64_t fit = std::max<int64_t>(1, kBufferBytes / (per_sample * int64_t(sizeof(T))) / align) * align;
  const int64_t block = std::min(fit, end - begin);
  std::vector<T> buffer(block * per_sample), positional(read.r ? dim : 0, T(0));
  T *x[2] = {buffer.data(), buffer.data() + block * in[0].s.dim}, *v = x[1] + block * in[1].s.dim;
  ScaleRow<T> rows_in[2] = {ScaleRow<T>(in[0].s), ScaleRow<T>(in[1].s)}, row_out(read.so);
  for (int64_t s0 = begin; s0 < end; s0 += block) {
    const int64_t s1 = std::min(end, s0 + block);
    for (int i = 0; i < 2; ++i) {  // x[i][s - s0, k] = x_i[s, copy_i[k]] s_i[s, k]
      const int64_t d = in[i].s.dim;
      const int64_t* copy = in[i].copy;
      for (int64_t s = s0; s < s1; ++s) {
        const T *src = in[i].x + s * in[i].width, *scale = rows_in[i].of(s);
        T* dst = x[i] + (s - s0) * d;
        if (copy)
          for (int64_t k = 0; k < d; ++k) dst[k] = src[copy[k]] * scale[k];
        else
          for (int64_t k = 0; k < d; ++k) dst[k] = src[k] * scale[k];
      }
    }
    // v accumulates in the rows it is kept in, else in out's rows (scaled in place below), else in the buffer
    T* y = read.kept ? read.kept + s0 * dim : read.out && !read.copy ? read.out + s0 * dim : v;
    std::fill(y, y + (s1 - s0) * dim, T(0));
    run(x[0], x[1], s1 - s0, y);
    if (read.r) reduce_rows(read.r, read.width, read.copy, y, read.so.index, dim, read.numel, read.so.ld != 0,
                            read.accumulate, s0, s1, read.grad, positional.data());
    for (int64_t s = s0; read.out && s < s1; ++s) {  // out[s, copy[k]] += s_o v, or out[s, k] = s_o v
      const T *scale = row_out.of(s), *ys = y + (s - s0) * dim;
      T* out = read.out + s * read.width;
      if (read.copy) {
        std::fill(out, out + read.width, T(0));
        for (int64_t k = 0; k < dim; ++k) out[read.copy[k]] += scale[k] * ys[k];
      } else {
        for (int64_t k = 0; k < dim; ++k) out[k] = scale[k] * ys[k];
      }
    }
  }
  if (read.r && !read.so.ld) add_by_index(positional.data(), read.so.index, dim, read.grad);
}

// range(c0, c1, grad_of) over the chunks [c0, c1) of kChunk samples that one thread runs; grad_of(c): where chunk
// c sums: where the sum is shared, its own partial [numel], added to grad in chunk order afterwards (the result does
// not depend on the threads), else grad itself
template <typename T, typename Range>
void for_chunks(int64_t n, bool shared_sum, int64_t numel, T* grad, Range&& range) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<T> partial(shared_sum ? chunks * numel : 0, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    range(c0, c1, [&](int64_t c) { return shared_sum ? partial.data() + c * numel : grad; });
  });
  for (int64_t c = 0; shared_sum && c < chunks; ++c)
    for (int64_t i = 0; i < numel; ++i) grad[i] += partial[c * numel + i];
}

// the per-row form of the operands' blocks, where the program runs on the direct kernel's channel columns and
// every operand has it (scaled_columns.h); else nothing
template <typename T>
std::optional<std::array<std::vector<gaunt_scaled::RowBlock>, 3>> columns_of(const gaunt_direct::Direct& D,
                                                                               const Operand<T> (&in)[2],
                                                                               const ReadOut<T>& read) {
  if (!D.channels(gaunt_direct::lanes<T>()) || read.kept) return std::nullopt;
  std::array<std::vector<gaunt_scaled::RowBlock>, 3> blocks;
  const int64_t* index[3] = {in[0].s.index, in[1].s.index, read.so.index};
  const int64_t* copy[3] = {in[0].copy, in[1].copy, read.copy};
  for (int i = 0; i < 3; ++i) {
    auto rows = gaunt_scaled::row_blocks(D.blocks[i], D.mul, index[i], copy[i]);
    if (!rows) return std::nullopt;
    blocks[i] = std::move(*rows);
  }
  return blocks;
}

// the program over samples [0, n) on blocks of scaled samples (either kernel)
template <typename T>
void run_blocks(const BlockProgram<T>& program, const Operand<T> (&in)[2], const ReadOut<T>& read, int64_t n) {
  const bool shared_sum = read.r != nullptr && read.so.ld == 0;
  for_chunks(n, shared_sum, read.numel, read.grad, [&](int64_t c0, int64_t c1, auto grad_of) {
    BlockRunner<T> run(program);  // the tables as the kernel reads them, once per thread
    for (int64_t c = c0; c < c1; ++c) {
      ReadOut<T> mine = read;
      mine.grad = grad_of(c);
      run_chunk(run, in, mine, c * kChunk, std::min(n, (c + 1) * kChunk));
    }
  });
}

// grad[.., index[k]] += r[n, k] v[n, k] (r, v [n, dim]; per sample: into grad's rows, zeroed first unless
// accumulate; shared, ld = 0: summed over the samples in chunks, added in chunk order)
template <typename T>
void reduce_weight(const T* r, const T* v, const int64_t* index, int64_t dim, int64_t n, int64_t numel, bool per_sample,
                   bool accumulate, T* grad) {
  for_chunks(n, !per_sample, numel, grad, [&](int64_t c0, int64_t c1, auto grad_of) {
    std::vector<T> positional(dim);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t s0 = c * kChunk, s1 = std::min(n, s0 + kChunk);
      std::fill(positional.begin(), positional.end(), T(0));
      reduce_rows(r, dim, static_cast<const int64_t*>(nullptr), v + s0 * dim, index, dim, numel, per_sample,
                  accumulate, s0, s1, grad_of(c), positional.data());
      if (!per_sample) add_by_index(positional.data(), index, dim, grad_of(c));
    }
  });
}

// one run of a program over the samples: its operands and its read-out
template <typename T>
struct Pass {
  BlockProgram<T> program;
  Operand<T> in[2];
  ReadOut<T> read;
};

// the passes over samples [0, n); those that sum against r add into one gradient (the same read.grad, numel and
// ld). Where every pass runs on the direct kernel's channel columns with per-row scales (scaled_columns.h), one
// loop over the samples runs every pass on each group of columns while the samples' rows are in cache; else one
// pass after the other, on blocks of scaled samples
template <typename T>
void run_passes(const std::vector<Pass<T>>& passes, int64_t n) {
  if (passes.empty()) return;
  std::vector<gaunt_direct::Direct> directs;
  std::vector<std::array<std::vector<RowBlock>, 3>> blocks;
  directs.reserve(passes.size());
  for (const Pass<T>& pass : passes) {
    if (!pass.program.direct) break;
    directs.emplace_back(pass.program.meta, gaunt_direct::lanes<T>());
    auto rows = columns_of(directs.back(), pass.in, pass.read);
    if (!rows || directs.back().mul != directs.front().mul) break;
    blocks.push_back(std::move(*rows));
  }
  if (blocks.size() < passes.size()) {
    for (const Pass<T>& pass : passes) run_blocks(pass.program, pass.in, pass.read, n);
    return;
  }
  const ReadOut<T>* sums = nullptr;  // a pass that sums, if any
  for (const Pass<T>& pass : passes) sums = pass.read.r ? &pass.read : sums;
  const bool shared_sum = sums && sums->so.ld == 0;
  for_chunks(n, shared_sum, sums ? sums->numel : 0, sums ? sums->grad : static_cast<T*>(nullptr),
             [&](int64_t c0, int64_t c1, auto grad_of) {
               std::vector<ScaledColumns<T>> runs;  // the tables as the kernel reads them, once per thread
               runs.reserve(passes.size());
               for (size_t i = 0; i < passes.size(); ++i)
                 runs.emplace_back(directs[i], passes[i].program.values, blocks[i], passes[i].in, passes[i].read);
               for (int64_t c = c0; c < c1; ++c)
                 run_columns(runs, c * kChunk, std::min(n, (c + 1) * kChunk), grad_of(c));
             });
}

}  // namespace gaunt_scaled
