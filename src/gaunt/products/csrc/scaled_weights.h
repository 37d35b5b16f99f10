// The machinery of csrc/scaled_weights.cpp: the passes of a program over the samples, on blocks of scaled samples
// (scaled_blocks.h), on the direct kernel's channel columns (scaled_columns.h), or, several passes of the transform
// kernel together, sharing their operands and syntheses (shared_passes.h). See scaled_weights.cpp for the formulas.

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
#include "scaled_blocks.h"
#include "scaled_columns.h"
#include "shared_passes.h"

namespace gaunt_scaled {

using namespace gaunt_program;

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
  const int64_t dim = read.so.dim, per_sample = in[0].s.dim + in[1].s.dim + dim;
  const int64_t block = block_samples<T>(per_sample, run.program.align, end - begin);
  std::vector<T> buffer(block * per_sample), positional(read.r ? dim : 0, T(0));
  T *x[2] = {buffer.data(), buffer.data() + block * in[0].s.dim}, *v = x[1] + block * in[1].s.dim;
  ScaleRow<T> rows_in[2] = {ScaleRow<T>(in[0].s, in[0].copy), ScaleRow<T>(in[1].s, in[1].copy)},
      row_out(read.so, read.copy);
  for (int64_t s0 = begin; s0 < end; s0 += block) {
    const int64_t s1 = std::min(end, s0 + block);
    for (int i = 0; i < 2; ++i) scale_rows(in[i], rows_in[i], s0, s1, x[i]);
    T* y = result_rows(read, s0, s1, v);
    run(x[0], x[1], s1 - s0, y);
    read_rows(read, row_out, y, s0, s1, positional.data());
  }
  if (read.r && !read.so.ld) add_by_index(positional.data(), read.so.index, dim, read.grad);
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
  const std::vector<Run> runs = runs_of(index, dim);
  for_chunks(n, !per_sample, numel, grad, [&](int64_t c0, int64_t c1, auto grad_of) {
    std::vector<T> positional(dim);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t s0 = c * kChunk, s1 = std::min(n, s0 + kChunk);
      std::fill(positional.begin(), positional.end(), T(0));
      reduce_rows(r, dim, static_cast<const int64_t*>(nullptr), v + s0 * dim, runs, false, dim, numel, per_sample,
                  accumulate, s0, s1, grad_of(c), positional.data());
      if (!per_sample) add_by_index(positional.data(), index, dim, grad_of(c));
    }
  });
}

// the passes over samples [0, n); those that sum against r add into one gradient (the same read.grad, numel and
// ld). Where every pass runs on the direct kernel's channel columns with per-row scales (scaled_columns.h), one
// loop over the samples runs every pass on each group of columns while the samples' rows are in cache; else one
// pass after the other, on blocks of scaled samples, except several on the transform kernel: one loop sharing
// their operands and syntheses (shared_passes.h)
template <typename T>
void run_passes(const std::vector<Pass<T>>& passes, int64_t n) {
  if (passes.empty()) return;
  if (SharedPlan<T>::applies(passes)) return run_shared_passes(passes, n);
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
