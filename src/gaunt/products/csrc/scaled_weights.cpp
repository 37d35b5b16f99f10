// A sphere program with the factorised weights of a product read as per-position scales, on either kernel.
//
// A product with factorised weights (gaunt.products.sphere_frame) is  out = s_o * P(s_a * a, s_b * b)  with a
// scale per position k of each operand, and each operand read through an optional copy index:
//
//   s[n, k] = w[n * ld + index[k]]      (ld = 0: weights shared by the batch, w [numel]; else w [n, numel])
//   a[n, k] = a_given[n, copy_a[k]]     (copy: a one-channel x2 read by every channel; none: a_given[n, k])
//
// scaled_weights(a, b, wa, ia, wb, ib, wo, io, ca, cb, co, width, r, write, keep_v, values, meta, direct) runs the
// program
// (values, meta: the transform kernel's packing, sphere_program.cpp, or the direct kernel's, direct.h) on
// v = P(s_a a, s_b b) and returns
//
//   out  [n, width]             out[n, co[k]] += s_o[n, k] v[n, k]   (if write; else [0, width]; no co: out = s_o v)
//   grad [numel] or [n, numel]  grad[.., io[k]] += r[n, co[k]] v[n, k], summed over n where wo is shared
//                                                                    (if r [n, width] is given; else [0])
//   v    [n, dim_out]                                                (if keep_v; else [0, dim_out])
//
// With the program, or one of its derivative programs, and the operands assigned as in
// gaunt.products.scaled_weights, these are the gradients of the product's multilinear form: no elementwise pass
// over the batch for the weights, no weighted copy of an input. scaled_weights_grads runs the three pairs of a
// first-order backward in one call, their weight sums added into one gradient.
//
// Samples run in blocks that fit in L2: the operands of a block are scaled into a buffer, the kernel runs on
// the block, the read-out scales and sums; on the direct kernel's channel columns, where the tables allow it, the
// scales are vectors of the rows instead (scaled_columns.h). The sums over samples run over fixed chunks of
// kChunk samples, each with its own partial sum, added in chunk order: the result does not depend on the number
// of threads.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "output_memory.h"
#include "scaled_weights.h"

namespace {

using gaunt_memory::empty_output;
using gaunt_scaled::BlockProgram;
using gaunt_scaled::Operand;
using gaunt_scaled::ReadOut;
using gaunt_scaled::Scale;

// an index [dim] (int64, CPU) of entries in [0, size)
void check_index(const at::Tensor& index, int64_t dim, int64_t size, const char* name, const char* what) {
  TORCH_CHECK(index.device().is_cpu() && index.scalar_type() == at::kLong && index.dim() == 1 &&
                  index.size(0) == dim,
              "gaunt scaled_weights: the index of ", name, " must be int64 [", dim, "] on the CPU");
  const at::Tensor flat = index.contiguous();  // a raw loop: no tensor ops in the per-call checks
  const int64_t* entry = flat.data_ptr<int64_t>();
  const auto [lo, hi] = std::minmax_element(entry, entry + dim);
  TORCH_CHECK(dim == 0 || (*lo >= 0 && *hi < size), "gaunt scaled_weights: the index of ", name,
              " reads outside its ", size, " ", what);
}

void check_scale(const at::Tensor& w, const at::Tensor& index, int64_t n, int64_t dim, const char* name) {
  TORCH_CHECK(w.device().is_cpu(), "gaunt scaled_weights: ", name, " on the CPU only");
  TORCH_CHECK(w.dim() == 1 || (w.dim() == 2 && w.size(0) == n), "gaunt scaled_weights: ", name,
              " must be [numel] or [n, numel]");
  check_index(index, dim, w.size(-1), name, "weights");
}

// an operand [n, width] read at the program's dim positions through copy (none: width == dim)
void check_operand(const at::Tensor& x, const std::optional<at::Tensor>& copy, int64_t n, int64_t dim,
                   const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.size(0) == n, "gaunt scaled_weights: ", name,
              " must be a CPU tensor [n, width]");
  if (copy)
    check_index(*copy, dim, x.size(1), name, "positions");
  else
    TORCH_CHECK(x.size(1) == dim, "gaunt scaled_weights: ", name, " must be [n, ", dim, "] for the program");
}

// one operand of the kernel as read from a contiguous tensor: x [n, width] through copy, scaled by w[.., index]
// (x undefined: an output that is only written, of this width)
template <typename T>
Operand<T> operand(const at::Tensor& x, int64_t width, const at::Tensor& copy, const at::Tensor& w,
                   const at::Tensor& index) {
  return {x.defined() ? x.data_ptr<T>() : nullptr, width, copy.numel() ? copy.data_ptr<int64_t>() : nullptr,
          Scale<T>{w.data_ptr<T>(), w.dim() == 1 ? 0 : w.size(1), index.size(0), index.data_ptr<int64_t>()}};
}

// the read-out into out (if write) and grad (if r is defined), of the output operand o (its x: r)
template <typename T>
ReadOut<T> read_out(const Operand<T>& o, bool write, at::Tensor& out, const at::Tensor& r, at::Tensor& grad,
                    bool accumulate) {
  return {write ? out.data_ptr<T>() : nullptr, o.width, o.copy, o.s, r.defined() ? r.data_ptr<T>() : nullptr,
          r.defined() ? grad.data_ptr<T>() : nullptr, grad.size(-1), accumulate};
}

// a gradient of the shape of w: zeroed where w is shared (the chunks add to it), else rows written by the kernel
at::Tensor weight_gradient(const at::Tensor& w, bool wanted) {
  at::Tensor grad = empty_output(wanted ? w.sizes() : at::IntArrayRef{0}, w.options());
  if (wanted && w.dim() == 1) grad.zero_();
  return grad;
}

at::Tensor none_or(const std::optional<at::Tensor>& t) {
  return t ? t->contiguous() : at::empty({0}, at::TensorOptions().dtype(at::kLong));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scaled_weights(const at::Tensor& a, const at::Tensor& b, const at::Tensor& wa,
                                                  const at::Tensor& ia, const at::Tensor& wb, const at::Tensor& ib,
                                                  const at::Tensor& wo, const at::Tensor& io,
                                                  const std::optional<at::Tensor>& ca,
                                                  const std::optional<at::Tensor>& cb,
                                                  const std::optional<at::Tensor>& co, int64_t width,
                                                  const std::optional<at::Tensor>& r, bool write, bool keep_v,
                                                  const at::Tensor& values, const at::Tensor& meta, bool direct) {
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt scaled_weights: meta int64");
  const int64_t* dims = meta.data_ptr<int64_t>() + 1;  // both packings: mul, dim1, dim2, dim_out, ...
  const int64_t n = a.size(0), dim = dims[2];
  check_operand(a, ca, n, dims[0], "a");
  check_operand(b, cb, n, dims[1], "b");
  TORCH_CHECK(co || width == dim, "gaunt scaled_weights: the output has the program's ", dim, " positions");
  if (co) check_index(*co, dim, width, "the output", "positions");
  check_scale(wa, ia, n, dims[0], "wa");
  check_scale(wb, ib, n, dims[1], "wb");
  check_scale(wo, io, n, dim, "wo");
  for (const at::Tensor* t : {&b, &wa, &wb, &wo, &values})
    TORCH_CHECK(t->scalar_type() == a.scalar_type(), "gaunt scaled_weights: one dtype for every float tensor");
  TORCH_CHECK(!r || (r->device().is_cpu() && r->dim() == 2 && r->size(0) == n && r->size(1) == width &&
                     r->scalar_type() == a.scalar_type()),
              "gaunt scaled_weights: r must be a CPU tensor [n, width] of the operands' dtype");
  const at::Tensor x[3] = {a.contiguous(), b.contiguous(), r ? r->contiguous() : at::Tensor()};
  const at::Tensor w[3] = {wa.contiguous(), wb.contiguous(), wo.contiguous()};
  const at::Tensor index[3] = {ia.contiguous(), ib.contiguous(), io.contiguous()};
  const at::Tensor copy[3] = {none_or(ca), none_or(cb), none_or(co)};
  const at::Tensor table = values.contiguous();
  at::Tensor out = empty_output({write ? n : 0, width}, a.options());  // rows written by the kernel
  at::Tensor grad = weight_gradient(w[2], r.has_value());
  TORCH_CHECK(!(keep_v && co), "gaunt scaled_weights: v is kept in the program's layout only");
  at::Tensor v = empty_output({keep_v ? n : 0, dim}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gaunt_scaled_weights", [&] {
    using T = scalar_t;
    auto operand_of = [&](int i, int64_t of_width) { return operand<T>(x[i], of_width, copy[i], w[i], index[i]); };
    gaunt_scaled::Pass<T> pass{BlockProgram<T>(table.data_ptr<T>(), meta.data_ptr<int64_t>(), direct),
                               {operand_of(0, x[0].size(1)), operand_of(1, x[1].size(1))},
                               read_out(operand_of(2, width), write, out, x[2], grad, false)};
    pass.read.kept = keep_v ? v.data_ptr<T>() : nullptr;
    gaunt_scaled::run_passes<T>({pass}, n);
  });
  return {out, grad, v};
}

// The first-order gradients of the product out = s3 P(s1 x1, s2 x2) for the cotangent g, with one weight w read by
// the scales of x1 and x2 and by that of the output too (w3 none) or its own w3 (an output sign folded as cat(w, -w)):
// pass p runs programs[p] on the arguments roles[3p], roles[3p + 1] (of x1, x2, g) and reads out argument
// roles[3p + 2]: its gradient (p < 2, where wanted) and the weight sum against it. The sums of the passes that read
// w add into one gradient of w (run together: on the channel columns, every pass per group of samples), those
// reading w3 into its own. Where v = P(s1 x1, s2 x2) was kept by the forward (the program on the transform kernel:
// its rerun costs three transforms), the pass reading out g is the sum of g v. Returns (dx1, dx2, dw, dw3);
// [0, ..] / [0] where not wanted (dw3: where w3 is none).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> scaled_weights_grads(
    const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& g, const at::Tensor& w,
    const std::optional<at::Tensor>& w3, const at::Tensor& i1, const at::Tensor& i2, const at::Tensor& i3,
    const std::optional<at::Tensor>& c2, const std::optional<at::Tensor>& kept_v, bool want_x1, bool want_x2,
    bool want_w, at::IntArrayRef roles, at::TensorList values, at::TensorList metas, at::IntArrayRef direct) {
  TORCH_CHECK(roles.size() == 9 && values.size() == 3 && metas.size() == 3 && direct.size() == 3,
              "gaunt scaled_weights_grads: three passes");
  const int64_t n = x1.size(0);
  const at::Tensor x[3] = {x1.contiguous(), x2.contiguous(), g.contiguous()};
  const at::Tensor index[3] = {i1.contiguous(), i2.contiguous(), i3.contiguous()};
  const at::Tensor copy[3] = {none_or(std::nullopt), none_or(c2), none_or(std::nullopt)};
  const at::Tensor weights[2] = {w.contiguous(), w3 ? w3->contiguous() : w.contiguous()};  // of x1, x2; of g
  const at::Tensor v = kept_v ? kept_v->contiguous() : at::Tensor();
  TORCH_CHECK(!kept_v || (v.dim() == 2 && v.sizes() == g.sizes() && v.scalar_type() == g.scalar_type()),
              "gaunt scaled_weights_grads: v must be [n, dim_out] as g");
  const bool want[2] = {want_x1, want_x2};
  const at::Tensor tables[3] = {values[0].contiguous(), values[1].contiguous(), values[2].contiguous()};
  for (int p = 0; p < 3; ++p) {  // every pass's operands against its program
    TORCH_CHECK(metas[p].scalar_type() == at::kLong && metas[p].is_contiguous() &&
                    values[p].scalar_type() == x1.scalar_type(),
                "gaunt scaled_weights_grads: meta int64, values of the operands' dtype");
    const int64_t* dims = metas[p].data_ptr<int64_t>() + 1;
    for (int s = 0; s < 3; ++s) {
      const int64_t i = roles[3 * p + s];
      TORCH_CHECK(i >= 0 && i < 3, "gaunt scaled_weights_grads: roles are 0, 1, 2");
      TORCH_CHECK(x[i].scalar_type() == x1.scalar_type(), "gaunt scaled_weights_grads: one dtype");
      check_operand(x[i], i == 1 ? c2 : std::nullopt, n, dims[s], "an argument");
      check_scale(weights[i == 2], index[i], n, dims[s], i == 2 && w3 ? "w3" : "w");
    }
  }
  for (const at::Tensor& t : weights)
    TORCH_CHECK(t.scalar_type() == x1.scalar_type(), "gaunt scaled_weights_grads: one dtype");
  // gradient j (0: of w; 1: of w3) is where the passes reading out argument o sum: 1 for g where w3 is given
  at::Tensor grad[2] = {weight_gradient(weights[0], want_w), weight_gradient(weights[1], want_w && w3)};
  auto gradient_of = [&](int64_t o) { return o == 2 && w3 ? 1 : 0; };
  at::Tensor grads[2];
  for (int i = 0; i < 2; ++i) grads[i] = empty_output({want[i] ? n : 0, x[i].size(1)}, x1.options());
  AT_DISPATCH_FLOATING_TYPES(x1.scalar_type(), "gaunt_scaled_weights_grads", [&] {
    using T = scalar_t;
    std::vector<gaunt_scaled::Pass<T>> passes[2];  // by the gradient they sum into
    auto operand_of = [&](int64_t i) { return operand<T>(x[i], x[i].size(1), copy[i], weights[i == 2], index[i]); };
    for (int p = 0; p < 3; ++p) {
      const int64_t a = roles[3 * p], b = roles[3 * p + 1], o = roles[3 * p + 2];
      const bool write = o < 2 && want[o];
      if ((!write && !want_w) || (o == 2 && kept_v)) continue;  // pass 2 of a kept v: a sum of g v below
      at::Tensor& out = o < 2 ? grads[o] : grads[0];
      const int j = gradient_of(o);
      const bool summed = want_w && !passes[j].empty();  // an earlier pass has written the rows of grad[j]
      passes[j].push_back({BlockProgram<T>(tables[p].data_ptr<T>(), metas[p].data_ptr<int64_t>(), direct[p] != 0),
                           {operand_of(a), operand_of(b)},
                           read_out(operand_of(o), write, out, want_w ? x[o] : at::Tensor(), grad[j], summed)});
    }
    for (const auto& together : passes) gaunt_scaled::run_passes<T>(together, n);
    if (kept_v && want_w) {  // grad[.., i3[k]] += g v
      const int j = gradient_of(2);
      const at::Tensor& target = weights[j == 1];
      gaunt_scaled::reduce_weight<T>(x[2].data_ptr<T>(), v.data_ptr<T>(), index[2].data_ptr<int64_t>(), x[2].size(1), n,
                                     target.size(-1), target.dim() == 2, !passes[j].empty(), grad[j].data_ptr<T>());
    }
  });
  return {grads[0], grads[1], grad[0], grad[1]};
}

// whether the program (direct kernel only) runs on the channel columns with per-row scales (scaled_columns.h)
// for these indices and copies, in double (else float) precision
bool scaled_weights_columns(const at::Tensor& meta, const at::Tensor& ia, const at::Tensor& ib, const at::Tensor& io,
                            const std::optional<at::Tensor>& ca, const std::optional<at::Tensor>& cb,
                            const std::optional<at::Tensor>& co, bool is_double) {
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.is_contiguous(), "gaunt scaled_weights: meta int64");
  const int64_t* dims = meta.data_ptr<int64_t>() + 1;
  const at::Tensor index[3] = {ia.contiguous(), ib.contiguous(), io.contiguous()};
  const at::Tensor copy[3] = {none_or(ca), none_or(cb), none_or(co)};
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK(index[i].scalar_type() == at::kLong && index[i].numel() == dims[i] &&
                    (!copy[i].numel() || copy[i].numel() == dims[i]),
                "gaunt scaled_weights: an index [dim] of each operand");
  }
  auto applies = [&](auto zero) {
    using T = decltype(zero);
    const gaunt_direct::Direct direct(meta.data_ptr<int64_t>(), gaunt_direct::lanes<T>());
    Operand<T> in[2], o;
    for (int i = 0; i < 3; ++i) {
      Operand<T>& x = i < 2 ? in[i] : o;
      x.copy = copy[i].numel() ? copy[i].data_ptr<int64_t>() : nullptr;
      x.s.index = index[i].data_ptr<int64_t>();
    }
    return gaunt_scaled::columns_of<T>(direct, in, ReadOut<T>{nullptr, 0, o.copy, o.s}).has_value();
  };
  return is_double ? applies(double(0)) : applies(float(0));
}

// how many syntheses run_passes takes from an earlier pass instead of rerunning them (shared_passes.h), for passes
// of the transform kernel (values, metas: transform packings only, as the Python wrapper passes them) reading the
// arguments roles[2p], roles[2p + 1], in double (else float)
int64_t scaled_weights_shared(at::IntArrayRef roles, at::TensorList values, at::TensorList metas, bool is_double) {
  TORCH_CHECK(roles.size() == 2 * metas.size() && values.size() == metas.size(),
              "gaunt scaled_weights_shared: two roles and one table per pass");
  auto count = [&](auto zero) {
    using T = decltype(zero);
    static const T arguments[16] = {};  // a distinct address per argument number: the operands' identity, never read
    std::vector<gaunt_scaled::Pass<T>> passes;
    std::vector<at::Tensor> tables;
    for (size_t p = 0; p < metas.size(); ++p) {
      TORCH_CHECK(metas[p].scalar_type() == at::kLong && metas[p].is_contiguous() &&
                      values[p].scalar_type() == (sizeof(T) == 8 ? at::kDouble : at::kFloat),
                  "gaunt scaled_weights_shared: meta int64, values of the dtype");
      tables.push_back(values[p].contiguous());
      gaunt_scaled::Pass<T> pass{BlockProgram<T>(tables.back().data_ptr<T>(), metas[p].data_ptr<int64_t>(), false),
                                 {},
                                 {}};
      for (int i = 0; i < 2; ++i) {
        TORCH_CHECK(roles[2 * p + i] >= 0 && roles[2 * p + i] < 16, "gaunt scaled_weights_shared: roles < 16");
        pass.in[i].x = arguments + roles[2 * p + i];
      }
      passes.push_back(pass);
    }
    if (!gaunt_scaled::SharedPlan<T>::applies(passes)) return int64_t(0);
    const gaunt_scaled::SharedPlan<T> plan(passes);
    int64_t shared = 0;
    for (const auto& pass : plan.taken)
      for (const auto& [q, j] : pass) shared += q >= 0;
    return shared;
  };
  return is_double ? count(double(0)) : count(float(0));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gaunt_fused, m) {
  m.def(
      "scaled_weights(Tensor a, Tensor b, Tensor wa, Tensor ia, Tensor wb, Tensor ib, Tensor wo, Tensor io, "
      "Tensor? ca, Tensor? cb, Tensor? co, int width, Tensor? r, bool write, bool keep_v, Tensor values, "
      "Tensor meta, bool direct) -> (Tensor, Tensor, Tensor)");
  m.def(
      "scaled_weights_grads(Tensor x1, Tensor x2, Tensor g, Tensor w, Tensor? w3, Tensor i1, Tensor i2, Tensor i3, "
      "Tensor? c2, Tensor? v, "
      "bool want_x1, bool want_x2, bool want_w, int[] roles, Tensor[] values, Tensor[] metas, int[] direct) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "scaled_weights_columns(Tensor meta, Tensor ia, Tensor ib, Tensor io, Tensor? ca, Tensor? cb, Tensor? co, "
      "bool is_double) -> bool");
  m.def("scaled_weights_shared(int[] roles, Tensor[] values, Tensor[] metas, bool is_double) -> int");
}

TORCH_LIBRARY_IMPL(gaunt_fused, CPU, m) {
  m.impl("scaled_weights", &scaled_weights);
  m.impl("scaled_weights_grads", &scaled_weights_grads);
  m.impl("scaled_weights_columns", &scaled_weights_columns);
  m.impl("scaled_weights_shared", &scaled_weights_shared);
}
