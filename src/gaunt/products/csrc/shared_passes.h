// The passes of a program over blocks of scaled samples, either kernel, as one loop sharing operands and syntheses.
//
// A first-order backward of out = s3 P(s1 x1, s2 x2) runs two derivative programs on the same samples,
//
//   dx1 = s1 P'_1(s3 g, s2 x2),   dx2 = s2 P'_2(s1 x1, s3 g)                 (gaunt.products.scaled_weights)
//
// and both synthesize s3 g on the same grid with the same tables. Run one after the other, each pass scales its
// two operands into a block buffer and synthesizes both per tile: four scaled copies and four syntheses. Here the
// passes run together on each block: every distinct operand is scaled once (three copies), and per tile a pass
// whose synthesis equals one that an earlier pass made of the same operand (same_synthesis: same grid, index and
// tables, bit for bit) takes that field instead of rerunning it (three syntheses). The results are the same
// numbers as the passes' own runs (the same field, the same arithmetic after it). A pass on the direct kernel
// runs on the whole block (it has no syntheses to share); a single pass is the plain case of the same loop.

#pragma once

#include <array>
#include <cstdint>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include "direct.h"

#include "program_layout.h"
#include "scaled_blocks.h"

namespace gaunt_scaled {

// the same scaled reading of the same tensor
template <typename T>
bool same_operand(const Operand<T>& a, const Operand<T>& b) {
  return a.x == b.x && a.width == b.width && a.copy == b.copy && a.s.w == b.s.w && a.s.ld == b.s.ld &&
         a.s.dim == b.s.dim && a.s.index == b.s.index;
}

// the state of one pass in one thread: the program's tables as its kernel reads them (the transform kernel's
// layout and scratch, or the direct kernel's coupling list)
template <typename T>
struct BlockRunner {
  const BlockProgram<T>& program;
  std::optional<gaunt_program::Layout> layout;
  std::optional<gaunt_program::Scratch<T>> scratch;
  std::optional<gaunt_direct::Direct> direct;

  explicit BlockRunner(const BlockProgram<T>& p) : program(p) {
    if (p.direct) {
      direct.emplace(p.meta, gaunt_direct::lanes<T>());
    } else {
      layout.emplace(p.meta);
      scratch.emplace(*layout);
    }
  }
  // y [samples, dim_out] = P(a, b) on the direct kernel (y zeroed before)
  void run_direct(const T* a, const T* b, int64_t samples, T* y) {
    constexpr int L = gaunt_direct::lanes<T>();
    if (direct->channels(L))
      gaunt_direct::run_channels<T>(*direct, program.values, a, b, 0, samples, y);
    else
      gaunt_direct::run_tiles<T>(*direct, program.values, a, b, samples, 0, (samples + L - 1) / L, y);
  }
};

// what the passes share: their distinct operands, which each pass reads, and per pass and synthesis (transform
// kernel) the earlier (pass, synthesis) whose field it is (-1: its own)
template <typename T>
struct SharedPlan {
  std::vector<Operand<T>> operands;
  std::vector<std::array<int, 2>> reads;
  std::vector<std::optional<gaunt_program::Layout>> layouts;  // per pass on the transform kernel
  std::vector<std::vector<std::pair<int, int>>> taken;
  int64_t mul = 0, align = 1;  // the transform passes' mul (their tiles); samples per block: a multiple of align

  explicit SharedPlan(const std::vector<Pass<T>>& passes) {
    for (const Pass<T>& pass : passes) {
      std::array<int, 2> read{};
      for (int i = 0; i < 2; ++i) read[i] = number_of(pass.in[i]);
      reads.push_back(read);
      layouts.emplace_back();
      if (!pass.program.direct) layouts.back().emplace(pass.program.meta), mul = pass.program.mul;
      align = std::lcm(align, pass.program.align);
    }
    for (size_t p = 0; p < passes.size(); ++p) {
      taken.emplace_back(layouts[p] ? layouts[p]->syntheses.size() : 0, std::make_pair(-1, -1));
      for (size_t k = 0; k < taken[p].size(); ++k) taken[p][k] = earlier(passes, p, k);
    }
  }
  int number_of(const Operand<T>& x) {
    for (size_t u = 0; u < operands.size(); ++u)
      if (same_operand(operands[u], x)) return static_cast<int>(u);
    operands.push_back(x);
    return static_cast<int>(operands.size()) - 1;
  }
  int operand_of(size_t p, size_t k) const { return reads[p][layouts[p]->syntheses[k].source]; }
  // an earlier pass's own synthesis of the same operand that equals synthesis k of pass p
  std::pair<int, int> earlier(const std::vector<Pass<T>>& passes, size_t p, size_t k) const {
    for (size_t q = 0; q < p; ++q)
      for (size_t j = 0; j < taken[q].size(); ++j)
        if (taken[q][j].first < 0 && operand_of(q, j) == operand_of(p, k) &&
            gaunt_program::same_synthesis(*layouts[q], passes[q].program.values, j, *layouts[p],
                                          passes[p].program.values, k))
          return {static_cast<int>(q), static_cast<int>(j)};
    return {-1, -1};
  }
  // whether the passes can run as one loop: the transform passes tile the samples alike (one mul)
  static bool applies(const std::vector<Pass<T>>& passes) {
    for (const Pass<T>& pass : passes)
      if (!pass.program.direct && pass.program.mul != passes.front().program.mul) return false;
    return true;
  }
};

// samples [begin, end) of every pass, block by block: the distinct operands scaled into the buffer once, the
// direct passes on the block, per tile the transform passes' programs with their shared syntheses taken from the
// earlier pass, then each pass's read-out, in pass order
template <typename T>
void run_shared_chunk(const SharedPlan<T>& plan, std::vector<BlockRunner<T>>& runners,
                      const std::vector<ReadOut<T>>& reads, int64_t begin, int64_t end) {
  const size_t count = runners.size();
  int64_t per_sample = 0;
  for (const Operand<T>& x : plan.operands) per_sample += x.s.dim;
  for (const ReadOut<T>& read : reads) per_sample += read.so.dim;
  const int64_t block = block_samples<T>(per_sample, plan.align, end - begin);
  std::vector<T> buffer(block * per_sample);
  std::vector<T*> x, v;  // per operand, per pass: their rows in the buffer
  T* at = buffer.data();
  for (const Operand<T>& o : plan.operands) x.push_back(at), at += block * o.s.dim;
  for (const ReadOut<T>& read : reads) v.push_back(at), at += block * read.so.dim;
  std::vector<ScaleRow<T>> rows_in, rows_out;
  for (const Operand<T>& o : plan.operands) rows_in.emplace_back(o.s, o.copy);
  for (const ReadOut<T>& read : reads) rows_out.emplace_back(read.so, read.copy);
  std::vector<std::vector<T>> positional;
  for (const ReadOut<T>& read : reads) positional.emplace_back(read.r ? read.so.dim : 0, T(0));
  std::vector<std::vector<const gaunt_tiles::Vec<T>*>> given(count);
  for (size_t p = 0; p < count; ++p) given[p].resize(plan.taken[p].size());
  std::vector<T*> y(count);
  const bool tiles = plan.mul > 0;
  for (int64_t s0 = begin; s0 < end; s0 += block) {
    const int64_t s1 = std::min(end, s0 + block);
    for (size_t u = 0; u < plan.operands.size(); ++u) scale_rows(plan.operands[u], rows_in[u], s0, s1, x[u]);
    for (size_t p = 0; p < count; ++p) {
      y[p] = result_rows(reads[p], s0, s1, v[p]);
      if (runners[p].direct) runners[p].run_direct(x[plan.reads[p][0]], x[plan.reads[p][1]], s1 - s0, y[p]);
    }
    if (tiles)
      gaunt_tiles::for_each_tile(plan.mul, 0, s1 - s0, [](int64_t, int64_t) {}, [&](const gaunt_tiles::Tile& tile) {
        for (size_t p = 0; p < count; ++p) {
          if (runners[p].direct) continue;
          for (size_t k = 0; k < given[p].size(); ++k) {
            const auto [q, j] = plan.taken[p][k];
            given[p][k] = q < 0 ? nullptr : runners[q].scratch->fields[j];
          }
          gaunt_program::run_tile(*plan.layouts[p], runners[p].program.values, x[plan.reads[p][0]],
                                  x[plan.reads[p][1]], tile, *runners[p].scratch, y[p], given[p].data());
        }
      });
    for (size_t p = 0; p < count; ++p) read_rows(reads[p], rows_out[p], y[p], s0, s1, positional[p].data());
  }
  for (size_t p = 0; p < count; ++p)
    if (reads[p].r && !reads[p].so.ld) add_by_index(positional[p].data(), reads[p].so.index, reads[p].so.dim,
                                                    reads[p].grad);
}

// the passes (SharedPlan::applies) over samples [0, n) on blocks of scaled samples as one loop; their weight sums
// add into one gradient (the same read.grad, numel and ld, as run_passes)
template <typename T>
void run_shared_passes(const std::vector<Pass<T>>& passes, int64_t n) {
  const SharedPlan<T> plan(passes);
  const ReadOut<T>* sums = nullptr;  // a pass that sums, if any
  for (const Pass<T>& pass : passes) sums = pass.read.r ? &pass.read : sums;
  const bool shared_sum = sums && sums->so.ld == 0;
  for_chunks(n, shared_sum, sums ? sums->numel : 0, sums ? sums->grad : static_cast<T*>(nullptr),
             [&](int64_t c0, int64_t c1, auto grad_of) {
               std::vector<BlockRunner<T>> runners;  // per pass, once per thread
               runners.reserve(passes.size());
               for (const Pass<T>& pass : passes) runners.emplace_back(pass.program);
               std::vector<ReadOut<T>> reads;
               for (const Pass<T>& pass : passes) reads.push_back(pass.read);
               for (int64_t c = c0; c < c1; ++c) {
                 for (ReadOut<T>& read : reads) read.grad = read.r ? grad_of(c) : read.grad;
                 run_shared_chunk(plan, runners, reads, c * kChunk, std::min(n, (c + 1) * kChunk));
               }
             });
}

}  // namespace gaunt_scaled
