// The blocks of scaled samples that the kernels of csrc/scaled_weights.cpp run on: an operand's rows of a block,
// scaled per position; where the program's result accumulates; its read-out (scaled, or summed against r into the
// weight gradient); the chunks of samples over threads; a pass (a program, its operands and its read-out).

#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "direct.h"
#include "scaled_columns.h"
#include "tiles.h"

namespace gaunt_scaled {

constexpr int64_t kChunk = 128;             // samples per partial sum of a shared weight gradient (fixed)
constexpr int64_t kBufferBytes = 256 << 10;  // the scaled operands of a block of samples: about L2-sized

// a run of positions [start, start + length) that read one weight, w[.. + index] (the frame's tables: the 2l + 1
// positions of one channel's irrep of degree l)
struct Run {
  int64_t start, length, index;
};

inline std::vector<Run> runs_of(const int64_t* index, int64_t dim) {
  std::vector<Run> runs;
  for (int64_t k = 0; k < dim; ++k)
    if (runs.empty() || index[k] != runs.back().index)
      runs.push_back({k, 1, index[k]});
    else
      ++runs.back().length;
  return runs;
}

// whether copy reads each run's positions from consecutive places (copy[start + j] = copy[start] + j: a one-channel
// x2's m values, read by every channel)
inline bool consecutive_in_runs(const int64_t* copy, const std::vector<Run>& runs) {
  if (!copy) return false;
  for (const Run& run : runs)
    for (int64_t j = 1; j < run.length; ++j)
      if (copy[run.start + j] != copy[run.start] + j) return false;
  return true;
}

// the scales of one sample, [dim]: computed once where they are shared (ld = 0), else once per sample, one weight
// read per run of positions (a gather per position, scalar or vectorised, was slower on this machine).
// by_runs: the operand read through a copy index consecutive in the runs, scaled run by run (no row)
template <typename T>
struct ScaleRow {
  const Scale<T>& s;
  std::vector<Run> runs;
  std::vector<T> row;
  bool by_runs;
  int64_t sample = -1;
  ScaleRow(const Scale<T>& scale, const int64_t* copy)
      : s(scale), runs(runs_of(scale.index, scale.dim)), row(scale.dim), by_runs(consecutive_in_runs(copy, runs)) {}
  const T* of(int64_t n) {
    if (sample < 0 || (s.ld && sample != n)) {
      const T* w = s.w + n * s.ld;
      for (const Run& run : runs) {
        const T value = w[run.index];
        T* at = row.data() + run.start;
        for (int64_t j = 0; j < run.length; ++j) at[j] = value;
      }
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

// grad[.., index[k]] += r[s, copy[k]] v[s - s0, k] for samples [s0, s1) (r [n, width]; copy nullptr: r[s, k];
// runs: those of index; consecutive: copy consecutive in the runs): per sample into grad's row s, a sum per run
// (zeroed first unless accumulate), or shared: summed per position into `positional` [dim] (added to grad by
// index at the end of the chunk)
template <typename T>
inline void reduce_rows(const T* r, int64_t width, const int64_t* copy, const T* v, const std::vector<Run>& runs,
                        bool consecutive, int64_t dim, int64_t numel, bool per_sample, bool accumulate, int64_t s0,
                        int64_t s1, T* grad, T* positional) {
  for (int64_t s = s0; s < s1; ++s, v += dim) {
    const T* rs = r + s * width;
    if (!per_sample) {
      if (copy)
        for (int64_t k = 0; k < dim; ++k) positional[k] += rs[copy[k]] * v[k];
      else
        for (int64_t k = 0; k < dim; ++k) positional[k] += rs[k] * v[k];
      continue;
    }
    T* row = grad + s * numel;  // every entry written unless accumulating (the tensor is not zeroed)
    if (!accumulate) std::fill(row, row + numel, T(0));
    for (const Run& run : runs) {
      T sum = 0;
      if (copy && consecutive)  // r read at copy[start] + j
        for (int64_t j = 0; j < run.length; ++j) sum += rs[copy[run.start] + j] * v[run.start + j];
      else if (copy)
        for (int64_t k = run.start; k < run.start + run.length; ++k) sum += rs[copy[k]] * v[k];
      else
        for (int64_t k = run.start; k < run.start + run.length; ++k) sum += rs[k] * v[k];
      row[run.index] += sum;
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
    align = direct ? gaunt_direct::lanes<T>() : gaunt_tiles::W / std::gcd<int64_t>(mul, gaunt_tiles::W);
  }
};

// one run of a program over the samples: its operands and its read-out
template <typename T>
struct Pass {
  BlockProgram<T> program;
  Operand<T> in[2];
  ReadOut<T> read;
};

// x[s - s0, k] = x[s, copy[k]] s[s, k] for samples [s0, s1): an operand's rows of a block, scaled
template <typename T>
void scale_rows(const Operand<T>& in, ScaleRow<T>& rows, int64_t s0, int64_t s1, T* x) {
  const int64_t d = in.s.dim;
  for (int64_t s = s0; s < s1; ++s) {
    const T* src = in.x + s * in.width;
    T* dst = x + (s - s0) * d;
    if (rows.by_runs) {  // x[k] = w[run] x_given[copy[start] + j]
      const T* w = in.s.w + s * in.s.ld;
      for (const Run& run : rows.runs) {
        const T value = w[run.index], *from = src + in.copy[run.start];
        T* to = dst + run.start;
        for (int64_t j = 0; j < run.length; ++j) to[j] = from[j] * value;
      }
      continue;
    }
    const T* scale = rows.of(s);
    if (in.copy)
      for (int64_t k = 0; k < d; ++k) dst[k] = src[in.copy[k]] * scale[k];
    else
      for (int64_t k = 0; k < d; ++k) dst[k] = src[k] * scale[k];
  }
}

// where the program's result v of samples [s0, s1) accumulates (zeroed here): in the rows it is kept in, else in
// out's rows (scaled in place by read_rows), else in the block buffer
template <typename T>
T* result_rows(const ReadOut<T>& read, int64_t s0, int64_t s1, T* buffer) {
  const int64_t dim = read.so.dim;
  T* y = read.kept ? read.kept + s0 * dim : read.out && !read.copy ? read.out + s0 * dim : buffer;
  std::fill(y, y + (s1 - s0) * dim, T(0));
  return y;
}

// the read-out of the result y of samples [s0, s1): the weight sums (a shared weight's into positional [dim]) and
// out[s, copy[k]] += s_o v (or out[s, k] = s_o v)
template <typename T>
void read_rows(const ReadOut<T>& read, ScaleRow<T>& row_out, const T* y, int64_t s0, int64_t s1, T* positional) {
  const int64_t dim = read.so.dim;
  if (read.r)
    reduce_rows(read.r, read.width, read.copy, y, row_out.runs, row_out.by_runs, dim, read.numel, read.so.ld != 0,
                read.accumulate, s0, s1, read.grad, positional);
  for (int64_t s = s0; read.out && s < s1; ++s) {
    const T* ys = y + (s - s0) * dim;
    T* out = read.out + s * read.width;
    if (row_out.by_runs) {  // out[copy[start] + j] += w[run] v[k]: the channels summed into the one
      std::fill(out, out + read.width, T(0));
      const T* w = read.so.w + s * read.so.ld;
      for (const Run& run : row_out.runs) {
        const T value = w[run.index], *from = ys + run.start;
        T* to = out + read.copy[run.start];
        for (int64_t j = 0; j < run.length; ++j) to[j] += value * from[j];
      }
      continue;
    }
    const T* scale = row_out.of(s);
    if (read.copy) {
      std::fill(out, out + read.width, T(0));
      for (int64_t k = 0; k < dim; ++k) out[read.copy[k]] += scale[k] * ys[k];
    } else {
      for (int64_t k = 0; k < dim; ++k) out[k] = scale[k] * ys[k];
    }
  }
}

// samples per block of a chunk: as many as fit the buffer (per_sample values each), a multiple of align
template <typename T>
int64_t block_samples(int64_t per_sample, int64_t align, int64_t samples) {
  const int64_t fit = std::max<int64_t>(1, kBufferBytes / (per_sample * int64_t(sizeof(T))) / align) * align;
  return std::min(fit, samples);
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

}  // namespace gaunt_scaled
