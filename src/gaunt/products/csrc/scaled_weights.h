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
// loop over blocks of scaled samples, the passes sharing their operands and syntheses (shared_passes.h)
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
    if (SharedPlan<T>::applies(passes)) return run_shared_passes(passes, n);
    for (const Pass<T>& pass : passes) run_shared_passes<T>({pass}, n);  // transform passes of different muls
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
