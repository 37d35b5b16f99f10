// A sphere program with the factorised weights of a product read as per-position scales, on either kernel.
//
// A product with factorised weights (gaunt.products.sphere_frame) is  out = s_o * P(s_a * a, s_b * b)  with a
// scale per position k of each operand:
//
//   s[n, k] = w[n * ld + index[k]]      (ld = 0: weights shared by the batch, w [numel]; else w [n, numel])
//
// scaled_weights(a, b, wa, ia, wb, ib, wo, io, r, write, keep_v, values, meta, direct) runs the program (values,
// meta: the transform kernel's packing, sphere_program.cpp, or the direct kernel's, direct.h) on v = P(s_a a,
// s_b b) and returns
//
//   out  [n, dim_out]           out[n, k] = s_o[n, k] v[n, k]                    (if write; else [0, dim_out])
//   grad [numel] or [n, numel]  grad[.., io[k]] += r[n, k] v[n, k], summed over n where wo is shared
//                                                                                (if r is given; else [0])
//   v    [n, dim_out]                                                            (if keep_v; else [0, dim_out])
//
// With the program, or one of its derivative programs, and the operands assigned as in
// gaunt.products.scaled_weights, these are the gradients of the product's multilinear form: no elementwise pass
// over the batch for the weights, no weighted copy of an input. Samples run in blocks that fit in L2: the
// operands of a block are scaled into a buffer, the kernel runs on the block, the read-out scales and sums.
// The sums over samples run over fixed chunks of kChunk samples, each with its own partial sum, added in chunk
// order: the result does not depend on the number of threads.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "direct.h"
#include "huge_pages.h"
#include "program_layout.h"

namespace {

using namespace gaunt_program;
using gaunt_memory::advise_huge_pages;

constexpr int64_t kChunk = 128;             // samples per partial sum of a shared weight gradient (fixed)
constexpr int64_t kBufferBytes = 256 << 10;  // the scaled operands of a block of samples: about L2-sized

// the scale of position k < dim of sample s: w[s ld + index[k]]
template <typename T>
struct Scale {
  const T* w;
  int64_t ld, dim;
  const int64_t* index;
};

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

template <typename T>
struct Operand {
  const T* x;
  Scale<T> s;
};

// what the read-out keeps of v: out = s_o v (out != nullptr), v itself (kept != nullptr),
// grad[.., io[k]] += r v (r != nullptr)
template <typename T>
struct ReadOut {
  T* out;
  T* kept;
  Scale<T> so;
  const T* r;
  T* grad;  // [n, numel], or the chunk's partial sum [numel] where the weights are shared (so.ld == 0)
  int64_t numel;
};

// grad[index[k]] += t[k], k < dim, the runs of one index summed in a register first (no chain through memory)
template <typename T>
void add_by_index(const T* t, const int64_t* index, int64_t dim, T* grad) {
  int64_t current = dim ? index[0] : 0;
  T sum = 0;
  for (int64_t k = 0; k < dim; ++k) {
    if (index[k] != current) grad[current] += sum, sum = 0, current = index[k];
    sum += t[k];
  }
  if (dim) grad[current] += sum;
}

// grad[.., index[k]] += r[s, k] v[s - s0, k] for samples [s0, s1): per sample into grad's row s (per_sample), or
// summed per position into `positional` [dim] first (shared: added to grad by index at the end of the chunk)
template <typename T>
void reduce_rows(const T* r, const T* v, const int64_t* index, int64_t dim, int64_t numel, bool per_sample,
                 int64_t s0, int64_t s1, T* grad, T* positional) {
  for (int64_t s = s0; s < s1; ++s, v += dim) {
    const T* rs = r + s * dim;
    if (per_sample) {  // the sample's row, every entry written (the tensor is not zeroed)
      for (int64_t k = 0; k < dim; ++k) positional[k] = rs[k] * v[k];
      std::fill(grad + s * numel, grad + (s + 1) * numel, T(0));
      add_by_index(positional, index, dim, grad + s * numel);
    } else {
      for (int64_t k = 0; k < dim; ++k) positional[k] += rs[k] * v[k];
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
    for (int i = 0; i < 2; ++i) {  // x[i][s - s0, k] = x_i[s, k] s_i[s, k]
      const int64_t d = in[i].s.dim;
      for (int64_t s = s0; s < s1; ++s) {
        const T *src = in[i].x + s * d, *scale = rows_in[i].of(s);
        T* dst = x[i] + (s - s0) * d;
        for (int64_t k = 0; k < d; ++k) dst[k] = src[k] * scale[k];
      }
    }
    // v accumulates in the rows it is kept in, else in out's rows (scaled in place below), else in the buffer
    T* y = read.kept ? read.kept + s0 * dim : read.out ? read.out + s0 * dim : v;
    std::fill(y, y + (s1 - s0) * dim, T(0));
    run(x[0], x[1], s1 - s0, y);
    if (read.r) reduce_rows(read.r, y, read.so.index, dim, read.numel, read.so.ld != 0, s0, s1, read.grad,
                            positional.data());
    for (int64_t s = s0; read.out && s < s1; ++s) {
      const T *scale = row_out.of(s), *ys = y + (s - s0) * dim;
      T* out = read.out + s * dim;
      for (int64_t k = 0; k < dim; ++k) out[k] = scale[k] * ys[k];
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

template <typename T>
void run_weighted(const BlockProgram<T>& program, const Operand<T> (&in)[2], const ReadOut<T>& read, int64_t n) {
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

void check_scale(const at::Tensor& w, const at::Tensor& index, int64_t n, int64_t dim, const char* name) {
  TORCH_CHECK(w.device().is_cpu() && index.device().is_cpu(), "gaunt scaled_weights: ", name, " on the CPU only");
  TORCH_CHECK(w.dim() == 1 || (w.dim() == 2 && w.size(0) == n), "gaunt scaled_weights: ", name,
              " must be [numel] or [n, numel]");
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 1 && index.size(0) == dim,
              "gaunt scaled_weights: the index of ", name, " must be int64 [dim]");
  const at::Tensor flat = index.contiguous();  // a raw loop: no tensor ops in the per-call checks
  const int64_t* entry = flat.data_ptr<int64_t>();
  const auto [lo, hi] = std::minmax_element(entry, entry + dim);
  TORCH_CHECK(dim == 0 || (*lo >= 0 && *hi < w.size(-1)), "gaunt scaled_weights: the index of ", name,
              " reads outside its ", w.size(-1), " weights");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scaled_weights(const at::Tensor& a, const at::Tensor& b,
                                                      const at::Tensor& wa, const at::Tensor& ia,
                                                      const at::Tensor& wb, const at::Tensor& ib,
                                                      const at::Tensor& wo, const at::Tensor& io,
                                                      const std::optional<at::Tensor>& r, bool write,
                                                      bool keep_v, const at::Tensor& values,
                                                      const at::Tensor& meta, bool direct) {
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "gaunt scaled_weights: CPU tensors only");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt scaled_weights: meta int64");
  const int64_t* dims = meta.data_ptr<int64_t>() + 1;  // both packings: mul, dim1, dim2, dim_out, ...
  const int64_t n = a.size(0), dim = dims[2];
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && b.size(0) == n && a.size(1) == dims[0] && b.size(1) == dims[1],
              "gaunt scaled_weights: operands must be [n, dim] of the program");
  check_scale(wa, ia, n, dims[0], "wa");
  check_scale(wb, ib, n, dims[1], "wb");
  check_scale(wo, io, n, dim, "wo");
  for (const at::Tensor* t : {&b, &wa, &wb, &wo, &values})
    TORCH_CHECK(t->scalar_type() == a.scalar_type(), "gaunt scaled_weights: one dtype for every float tensor");
  TORCH_CHECK(!r || r->device().is_cpu(), "gaunt scaled_weights: r on the CPU only");
  TORCH_CHECK(!r || (r->dim() == 2 && r->size(0) == n && r->size(1) == dim && r->scalar_type() == a.scalar_type()),
              "gaunt scaled_weights: r must be [n, dim_out] of the operands' dtype");
  std::vector<at::Tensor> keep = {a.contiguous(), b.contiguous(), wa.contiguous(), wb.contiguous(),
                                  wo.contiguous(), ia.contiguous(), ib.contiguous(), io.contiguous(),
                                  values.contiguous(), r ? r->contiguous() : at::Tensor()};
  at::Tensor out = at::empty({write ? n : 0, dim}, a.options());  // rows zeroed by the kernel
  at::Tensor v = at::empty({keep_v ? n : 0, dim}, a.options());
  advise_huge_pages(out);
  advise_huge_pages(v);
  const int64_t numel = wo.size(-1);
  // shared: zeroed here (the chunks add to it); per sample: every row written by the kernel
  at::Tensor grad = r ? at::empty(wo.sizes(), a.options()) : at::empty({0}, a.options());
  advise_huge_pages(grad);
  if (r && wo.dim() == 1) grad.zero_();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gaunt_scaled_weights", [&] {
    using T = scalar_t;
    auto scale = [&](int w, int i) {
      const at::Tensor& t = keep[w];
      return Scale<T>{t.data_ptr<T>(), t.dim() == 1 ? 0 : t.size(1), keep[i].size(0), keep[i].data_ptr<int64_t>()};
    };
    const Operand<T> in[2] = {{keep[0].data_ptr<T>(), scale(2, 5)}, {keep[1].data_ptr<T>(), scale(3, 6)}};
    const ReadOut<T> read{write ? out.data_ptr<T>() : nullptr, keep_v ? v.data_ptr<T>() : nullptr, scale(4, 7),
                          r ? keep[9].data_ptr<T>() : nullptr, r ? grad.data_ptr<T>() : nullptr, numel};
    run_weighted<T>(BlockProgram<T>(keep[8].data_ptr<T>(), meta.data_ptr<int64_t>(), direct), in, read, n);
  });
  return {out, grad, v};
}

// grad[.., io[k]] += sum over samples (shared: w [numel]) or per sample (w [n, numel]) of r[n, k] v[n, k]
at::Tensor weight_reduce(const at::Tensor& r, const at::Tensor& v, const at::Tensor& io, const at::Tensor& w) {
  TORCH_CHECK(r.dim() == 2 && r.sizes() == v.sizes() && r.scalar_type() == v.scalar_type() &&
                  r.scalar_type() == w.scalar_type(),
              "gaunt weight_reduce: r and v must be [n, dim] of one dtype");
  const int64_t n = r.size(0), dim = r.size(1), numel = w.size(-1);
  check_scale(w, io, n, dim, "w");
  const at::Tensor rc = r.contiguous(), vc = v.contiguous(), index = io.contiguous();
  const bool per_sample = w.dim() == 2;
  at::Tensor grad = at::empty(w.sizes(), r.options());  // per sample: every row written by reduce_rows
  advise_huge_pages(grad);
  if (!per_sample) grad.zero_();  // shared: the chunks add to it
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "gaunt_weight_reduce", [&] {
    using T = scalar_t;
    const T *rp = rc.data_ptr<T>(), *vp = vc.data_ptr<T>();
    const int64_t* ip = index.data_ptr<int64_t>();
    for_chunks(n, !per_sample, numel, grad.data_ptr<T>(), [&](int64_t c0, int64_t c1, auto grad_of) {
      std::vector<T> positional(dim);
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t s0 = c * kChunk, s1 = std::min(n, s0 + kChunk);
        std::fill(positional.begin(), positional.end(), T(0));
        reduce_rows(rp, vp + s0 * dim, ip, dim, numel, per_sample, s0, s1, grad_of(c), positional.data());
        if (!per_sample) add_by_index(positional.data(), ip, dim, grad_of(c));
      }
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def(
      "scaled_weights(Tensor a, Tensor b, Tensor wa, Tensor ia, Tensor wb, Tensor ib, Tensor wo, Tensor io, "
      "Tensor? r, bool write, bool keep_v, Tensor values, Tensor meta, bool direct) -> (Tensor, Tensor, Tensor)");
  m.def("weight_reduce(Tensor r, Tensor v, Tensor io, Tensor w) -> Tensor");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) {
  m.impl("scaled_weights", &scaled_weights);
  m.impl("weight_reduce", &weight_reduce);
}
