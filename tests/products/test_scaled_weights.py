"""Factorised weights folded as per-position scales around either kernel (``scaled_weights``,
``csrc/scaled_weights.cpp``): every slot of the op against autograd of the multilinear form written in torch
(shared and per-sample weights, several blocks and chunks, independent of the threads, indices out of range
refused); an output sign; the folded products against the unfolded path and the torch executor (values and
gradients, broadcast and empty batches, a one-channel x2), equivariance, gradcheck and gradgradcheck with the
weight, opcheck, torch.compile, the joint first-order gradients, the channel columns of the direct kernel (per-row
scales, a copied x2), and when the frame folds."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_equivariant, random_inputs
from test_direct_weighted import (
    OpNames,
    assert_close_to,
    assert_compiles_with_no_graph_break,
    assert_folded_equals,
    irreps_of,
)

from gaunt.products import GauntProduct, GridGauntProduct, VectorGauntProduct, cpu_build
from gaunt.products import scaled_weights as op
from gaunt.products.cpu_executor import derivative_id, program_tables
from gaunt.products.executors import cpu_runner
from gaunt.products.torch_executor import TorchProgram

needs_kernel = pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
pytestmark = needs_kernel
PRODUCTS = [GridGauntProduct, GauntProduct, VectorGauntProduct]


def on_transform(product: torch.nn.Module, kernel: str = "transform") -> torch.nn.Module:
    """``product`` with its program (and its derivative programs) on ``kernel`` (whatever "auto" chose)."""
    cpu_runner(product.frame.runner).use_kernel(kernel)
    return product


# ------------------------------------------------------------------------------------------------ the op
def form(program, args, index, copy2=None) -> torch.Tensor:
    """T(x1, x2, g, w1, w2, w3) of the module docstring, in torch ops on the torch executor (the program's x2 is
    ``x2[:, copy2]`` where a copy index is given)."""
    x1, x2, g, w1, w2, w3 = args
    s1, s2, s3 = (w[..., i] for w, i in zip((w1, w2, w3), index))
    x2 = x2 if copy2 is None else x2[:, copy2]
    return (g * s3 * TorchProgram(program).evaluate(s1 * x1, s2 * x2)).sum()


def random_args(program, numel: int, n: int, per_sample: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    batch = [torch.randn(n, d, generator=g, dtype=torch.float64) for d in program.dims]
    weights = [torch.randn(*((n,) if per_sample else ()), numel, generator=g, dtype=torch.float64) for _ in range(3)]
    index = [torch.randint(numel, (d,), generator=g) for d in program.dims]
    return batch + weights, index


def registered(product, kernel: str = "transform") -> tuple:
    fused = cpu_runner(on_transform(product, kernel).frame.runner)
    return fused.program, fused.program_id


@pytest.mark.parametrize("kernel", ["transform", "direct"])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("n", "mul", "L"), [(5, 3, 2), (300, 3, 2), (301, 16, 3)])  # chunks; blocks per chunk
def test_every_slot_equals_autograd_of_the_form(per_sample, n, mul, L, kernel):
    product = GridGauntProduct(*irreps_of(GridGauntProduct, mul, L), executor="cpu_fused").double()
    program, program_id = registered(product, kernel)
    args, index = random_args(program, 11, n, per_sample, seed=n)
    leaves = [a.clone().requires_grad_() for a in args]
    exact = torch.autograd.grad(form(program, leaves, index), leaves)
    for pair in range(3):
        for batch, weight in ((True, True), (True, False), (False, True)):
            got = op.scaled_weights(pair, batch, weight, *args, *index, program_id)
            if batch:
                assert_close_to(got[0], exact[pair], 1e-12, f"slot {pair}")
            else:
                assert got[0].shape == (0, program.dims[pair])
            if weight:
                assert_close_to(got[1], exact[pair + 3], 1e-12, f"slot {pair + 3}")
            else:
                assert got[1].shape == (0,)


def test_a_wrong_index_is_seen():
    """Not vacuous: the same check fails where the kernel reads the weights by another index."""
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 3, 1), executor="cpu_fused").double()
    program, program_id = registered(product)
    args, index = random_args(program, 7, 4, False, seed=1)
    exact = torch.autograd.grad(form(program, [a.requires_grad_() for a in args], index), args)
    wrong = [index[0], index[1], index[2].roll(1)]
    got = op.scaled_weights(2, True, True, *[a.detach() for a in args], *wrong, program_id)
    with pytest.raises(AssertionError):
        assert_close_to(got[0], exact[2], 1e-6)


def test_an_index_out_of_range_is_refused():
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 3, 1), executor="cpu_fused").double()
    program, program_id = registered(product)
    args, index = random_args(program, 7, 4, False, seed=1)
    for wrong in (index[2] + 7, index[2] - 7):
        with pytest.raises(RuntimeError, match="reads outside its 7 weights"):
            op.scaled_weights(2, True, True, *args, index[0], index[1], wrong, program_id)
    with pytest.raises(RuntimeError, match="reads outside its 7 weights"):
        op.scaled_weights_grads(*args[:4], index[0], index[1], index[2] + 7, program_id, True, True, True)
    with pytest.raises(RuntimeError, match="reads outside its 5 positions"):  # x2 has 5 positions, the copy more
        copy2 = torch.arange(program.dims[1]) % 6
        op.scaled_weights(0, True, True, args[0], args[1][:, :5], *args[2:], *index, program_id, copy2)


# mul 3 (blocks of scaled samples) on both kernels; mul 8 on the direct kernel (the channel columns, float64)
@pytest.mark.parametrize(("kernel", "mul"), [("transform", 3), ("direct", 3), ("direct", 8)])
@pytest.mark.parametrize("per_sample", [False, True])
def test_an_output_sign_is_folded_as_negated_weights(per_sample, kernel, mul):
    """``out = sign * s3 * P(s1 x1, s2 x2)``: equals the torch executor on the same program, every gradient, with
    the first-order backward in one call (the output's weight ``cat(w, -w)`` its own, summed apart) and with a
    graph of it (the slot ops)."""
    product = GridGauntProduct(*irreps_of(GridGauntProduct, mul, 2), executor="cpu_fused").double()
    fused = cpu_runner(on_transform(product, kernel).frame.runner)
    frame, program = product.frame, fused.program
    index = [frame._w1_index, frame._w2_index, frame._w3_index]
    sign = torch.where(torch.arange(program.dims[2]) % 3 == 1, -1.0, 1.0).double()
    scaled = op.ScaledWeights([i.numpy() for i in index], sign.numpy())
    g = torch.Generator().manual_seed(6)
    x1, x2 = (torch.randn(4, program.dims[k], generator=g, dtype=torch.float64).requires_grad_() for k in (0, 1))
    w = torch.randn(*((4,) if per_sample else ()), product.weight_numel, generator=g, dtype=torch.float64)
    w.requires_grad_()
    cotangent = torch.randn(4, program.dims[2], generator=g, dtype=torch.float64)
    w1, w2, w3 = (w[..., i] for i in index)
    exact = TorchProgram(program).evaluate(x1 * w1, x2 * w2) * w3 * sign
    expected = torch.autograd.grad(exact, (x1, x2, w), cotangent)
    for create_graph in (False, True):
        with OpNames() as names:
            got = scaled(fused, x1, x2, w)
            grads = torch.autograd.grad(got, (x1, x2, w), cotangent, create_graph=create_graph)
        assert names.ran("gaunt.cpu_scaled_weights_grads") != create_graph
        assert_close_to(got, exact, 1e-12)
        for a, b in zip(grads, expected):
            assert_close_to(a, b, 1e-12)
    with pytest.raises(ValueError, match="out_sign"):
        op.ScaledWeights([i.numpy() for i in index], 0 * sign.numpy())


def test_the_shared_sums_do_not_depend_on_the_threads():
    """Shared weight gradients are summed in fixed chunks of samples: bit-identical for 1 and 2 threads, on blocks
    of scaled samples (mul 4, transform kernel: a slot op, and the joint first-order gradients sharing the
    synthesis of g) and on the channel columns (mul 16, direct kernel, a copied x2, the joint gradients)."""
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 4, 2), executor="cpu_fused").float()
    program, program_id = registered(product)
    args, index = random_args(program, 9, 1000, False, seed=3)
    args = [a.float() for a in args]
    columns = GridGauntProduct("16x0e+16x1o+16x2e", "0e+1o+2e", "16x0e+16x1o+16x2e", executor="cpu_fused")
    _, columns_id = registered(columns, "direct")
    (x1, x2, g, w), frame_index, copy2 = frame_args(columns, 1000, False, seed=5)
    x1, x2, g, w = (t.float() for t in (x1, x2, g, w))
    assert op.runs_on_columns(columns_id, torch.float32, frame_index, copy2)
    calls = (
        lambda: op.scaled_weights(0, True, True, *args, *index, program_id),
        lambda: op.scaled_weights_grads(*args[:4], *index, program_id, True, True, True),
        lambda: op.scaled_weights_grads(x1, x2, g, w, *frame_index, columns_id, True, True, True, copy2),
    )
    threads = torch.get_num_threads()
    try:
        results = []
        for t in (1, 2):
            torch.set_num_threads(t)
            results.append([out for call in calls for out in call()])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_opcheck_and_the_op_gradients():
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 2, 1), executor="cpu_fused").double()
    program, program_id = registered(product)
    for per_sample in (False, True):
        args, index = random_args(program, 5, 3, per_sample, seed=2)
        args = [a.requires_grad_() for a in args]
        torch.library.opcheck(op.scaled_weights, (2, True, True, *args, *index, program_id))
        torch.library.opcheck(op.scaled_weights, (0, True, False, *args, *index, program_id))

        def f(*a):
            out = op.scaled_weights(1, True, True, *a, *index, program_id)
            return out[0], out[1]

        assert torch.autograd.gradcheck(f, args)
        assert torch.autograd.gradgradcheck(f, args)


# ------------------------------------------------------------------------------------------------ the products
# shared weights on the direct kernel fold as coefficients (test_direct_weighted), every other case as scales
SCALED = [("transform", False), ("transform", True), ("direct", True)]  # (kernel, per_sample)


@pytest.mark.parametrize(("kernel", "per_sample"), SCALED)
@pytest.mark.parametrize("mul2", [None, 1])  # x2 with every channel, or one channel copied by the frame
@pytest.mark.parametrize("mul", [3, 16])
@pytest.mark.parametrize("cls", PRODUCTS)
def test_folded_products_equal_the_unfolded_path_and_the_torch_executor(cls, mul, mul2, per_sample, kernel):
    irreps = irreps_of(cls, mul, 2, mul2)
    kw = dict(internal_weights=False, shared_weights=not per_sample)
    product = on_transform(cls(*irreps, executor="cpu_fused", **kw).double(), kernel)
    reference = cls(*irreps, executor="torch", **kw).double()
    assert "as scales" in repr(product)
    g = torch.Generator().manual_seed(mul)
    dims = product.irreps_in1.dim, product.irreps_in2.dim, product.irreps_out.dim
    for batch1, batch2 in (((2, 1), (3,)), ((7,), (7,)), ((0,), (0,))):
        batch = torch.broadcast_shapes(batch1, batch2)
        x1 = torch.randn(*batch1, dims[0], generator=g, dtype=torch.float64)
        x2 = torch.randn(*batch2, dims[1], generator=g, dtype=torch.float64)
        w = torch.randn(*(batch if per_sample else ()), product.weight_numel, generator=g, dtype=torch.float64)
        cotangent = torch.randn(*batch, dims[2], generator=g, dtype=torch.float64)
        ops = ("gaunt.cpu_scaled_weights",)
        assert_folded_equals(product, reference, (x1, x2, w, cotangent), per_sample, "scales", ops)


# (kernel, per_sample, mul): mul 8 on the direct kernel runs on the channel columns (float64: 8 lanes)
@pytest.mark.parametrize(("kernel", "per_sample", "mul"), [(k, p, 4) for k, p in SCALED] + [("direct", True, 8)])
def test_gradcheck_and_gradgradcheck_with_the_weight(per_sample, kernel, mul):
    irreps = (f"{mul}x0e+{mul}x1o+{mul}x2e", "0e+1o", f"{mul}x0e+{mul}x1o+{mul}x2e")  # x2 copied to every channel
    product = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=False).double()
    on_transform(product, kernel)
    frame = product.frame
    index = (frame._w1_index, frame._w2_index, frame._w3_index)
    columns = op.runs_on_columns(cpu_runner(frame.runner).program_id, torch.float64, index, frame._copy_index)
    assert columns == (mul == 8)
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(3, product.irreps_in1.dim, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(3, product.irreps_in2.dim, generator=g, dtype=torch.float64, requires_grad=True)
    shape = (3, product.weight_numel) if per_sample else (product.weight_numel,)
    w = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    assert product.frame.folds(x1, x2, w, per_sample=per_sample) == "scales"

    def f(a, b, c):
        return product.frame(a, b, c, per_sample)

    with OpNames() as names:
        assert torch.autograd.gradcheck(f, (x1, x2, w))
        assert torch.autograd.gradgradcheck(f, (x1, x2, w))
    assert names.ran("gaunt.cpu_scaled_weights") and not names.ran("gaunt.cpu_sphere_program")


def test_compile_traces_the_folded_op_with_no_graph_break():
    irreps = irreps_of(GridGauntProduct, 16, 2)
    product = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=True, weight_init="randn").float()
    assert_compiles_with_no_graph_break(on_transform(product), "cpu_scaled_weights")


def test_compile_with_aot_autograd_traces_the_edge_shape_forward_and_backward():
    """The edge shape (one-channel x2 read through the copy index, per-edge weights, channel columns) under
    ``torch.compile(fullgraph=True)`` with AOT autograd (the backward traced too, through the fake impls): values
    and the gradients of x1, x2 and the weights equal eager mode's."""
    irreps = ("16x0e+16x1o+16x2e", "0e+1o+2e", "16x0e+16x1o+16x2e")
    product = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=False, shared_weights=False)
    g = torch.Generator().manual_seed(4)
    x1 = torch.randn(7, product.irreps_in1.dim, generator=g, requires_grad=True)
    x2 = torch.randn(7, product.irreps_in2.dim, generator=g, requires_grad=True)
    w = torch.randn(7, product.weight_numel, generator=g, requires_grad=True)
    from torch._dynamo.backends.common import aot_autograd

    torch._dynamo.reset()
    graphs = {"forward": [], "backward": []}

    def keeper(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm.code)
            return gm.forward

        return compiler

    backend = aot_autograd(fw_compiler=keeper("forward"), bw_compiler=keeper("backward"))
    compiled = torch.compile(product, fullgraph=True, backend=backend)
    out = compiled(x1, x2, w)
    grads = torch.autograd.grad(out.square().sum(), (x1, x2, w))
    assert len(graphs["forward"]) == 1 and "cpu_scaled_weights_product" in graphs["forward"][0]
    assert len(graphs["backward"]) == 1 and "gaunt.cpu_scaled_weights" in graphs["backward"][0]
    eager = product(x1, x2, w)
    eager_grads = torch.autograd.grad(eager.square().sum(), (x1, x2, w))
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_frame_folds_shared_weights_on_the_direct_kernel_as_coefficients_else_as_scales():
    irreps = irreps_of(GridGauntProduct, 4, 1)
    shared = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=False, shared_weights=True)
    per_sample = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=False, shared_weights=False)
    x1, x2 = torch.randn(3, shared.irreps_in1.dim), torch.randn(3, shared.irreps_in2.dim)
    w = torch.randn(shared.weight_numel)
    assert cpu_runner(shared.frame.runner).kernel == "direct"
    assert shared.frame.folds(x1, x2, w, per_sample=False) == "coefficients"
    assert per_sample.frame.folds(x1, x2, w.expand(3, -1), per_sample=True) == "scales"  # on the direct kernel
    assert shared.frame.folds(x1.to(torch.bfloat16), x2.to(torch.bfloat16), w, per_sample=False) is None
    expected = shared(x1, x2, w)
    on_transform(shared)
    assert shared.frame.folds(x1, x2, w, per_sample=False) == "scales"
    with OpNames() as names:
        torch.testing.assert_close(shared(x1, x2, w), expected, rtol=1e-5, atol=1e-5)
    assert names.ran("gaunt.cpu_scaled_weights") and not names.ran("gaunt.cpu_sphere_program")
    assert GridGauntProduct(*irreps, executor="torch").frame.scaled is None


def frame_args(product, n: int, per_sample: bool, seed: int):
    """The arguments of a product's own form: x1, x2 with one channel, g, the weight (once: w1 = w2 = w3), the
    frame's indices and copy index."""
    frame, program = product.frame, cpu_runner(product.frame.runner).program
    g = torch.Generator().manual_seed(seed)
    dims = product.irreps_in1.dim, product.irreps_in2.dim, program.dims[2]
    x1, x2, cot = (torch.randn(n, d, generator=g, dtype=torch.float64) for d in dims)
    w = torch.randn(*((n,) if per_sample else ()), product.weight_numel, generator=g, dtype=torch.float64)
    return [x1, x2, cot, w], (frame._w1_index, frame._w2_index, frame._w3_index), frame._copy_index


# mul 16: a multiple of the lanes of both dtypes (the channel columns on the direct kernel); 3: blocks of samples
@pytest.mark.parametrize("kernel", ["direct", "transform"])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("mul", [3, 16])
def test_the_products_tables_with_a_copied_x2_every_slot_and_the_joint_gradients(mul, per_sample, kernel):
    """The frame's own indices and a one-channel x2 read through its copy index: each slot of the op and the
    joint first-order gradients (one call, one weight) equal autograd of the form, on the channel columns (direct
    kernel, mul 16) or blocks of scaled samples (every other case), over several chunks of samples."""
    irreps = ("+".join(f"{mul}x{l}{'eo'[l % 2]}" for l in range(3)), "0e+1o+2e", None)
    product = GridGauntProduct(irreps[0], irreps[1], irreps[0], executor="cpu_fused", internal_weights=False)
    program, program_id = registered(product.double(), kernel)
    (x1, x2, g, w), index, copy2 = frame_args(product, 300, per_sample, seed=mul)
    assert op.runs_on_columns(program_id, torch.float64, index, copy2) == (kernel == "direct" and mul == 16)
    leaves = [t.clone().requires_grad_() for t in (x1, x2, g, w)]
    exact = torch.autograd.grad(form(program, [*leaves, leaves[3], leaves[3]], index, copy2), leaves)
    w_sum = torch.zeros_like(w)
    for pair in range(3):
        got = op.scaled_weights(pair, True, True, x1, x2, g, w, w, w, *index, program_id, copy2)
        assert_close_to(got[0], exact[pair], 1e-12, f"slot {pair}")
        w_sum += got[1]
    assert_close_to(w_sum, exact[3], 1e-12, "slots 3 + 4 + 5")
    for wants in ((True, True, True), (True, False, False), (False, True, False), (False, False, True)):
        got = op.scaled_weights_grads(x1, x2, g, w, *index, program_id, *wants, copy2)
        for value, wanted, expected in zip(got, wants, (exact[0], exact[1], exact[3])):
            if wanted:
                assert_close_to(value, expected, 1e-12, f"joint gradients {wants}")
            else:
                assert value.shape[0] == 0


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("per_sample", [False, True])
def test_the_first_order_backward_is_one_call_and_a_graph_of_it_the_slot_ops(per_sample, keep):
    """Without a graph of the backward, one ``cpu_scaled_weights_grads`` call (with a kept v, its weight sum of
    the third pair is ``g v``); with one, the slot ops (pairs 0, 1 and 2 for the weight): the same gradients,
    those of the form."""
    product = on_transform(GridGauntProduct(*irreps_of(GridGauntProduct, 5, 2), executor="cpu_fused").double())
    program, program_id = registered(product)
    args, index = random_args(program, 13, 200, per_sample, seed=7)
    x1, x2, cotangent, w, _, _ = args
    x1, x2, w = (a.requires_grad_() for a in (x1, x2, w))
    torch.library.opcheck(op.scaled_weights_product, (x1, x2, w, w, w, *index, program_id, keep))
    plain = (x1.detach(), x2.detach(), cotangent, w.detach())  # not differentiable: used where no graph is made
    torch.library.opcheck(op.scaled_weights_grads, (*plain, *index, program_id, True, True, True))
    results = {}
    for create_graph in (False, True):
        with OpNames() as names:
            out, v = op.scaled_weights_product(x1, x2, w, w, w, *index, program_id, keep)
            results[create_graph] = torch.autograd.grad(out, (x1, x2, w), cotangent, create_graph=create_graph)
        assert names.ran("gaunt.cpu_scaled_weights_grads") != create_graph
        assert sum("cpu_scaled_weights.default" in n for n in names.names) == 3 * create_graph
    assert not v.requires_grad and v.shape == (out.shape if keep else (0, out.shape[1]))
    if keep:
        torch.testing.assert_close(v, TorchProgram(program).evaluate(x1 * w[..., index[0]], x2 * w[..., index[1]]))
    exact = torch.autograd.grad(form(program, [x1, x2, cotangent, w, w, w], index), (x1, x2, w))
    for a, b, e in zip(results[False], results[True], exact):
        assert_close_to(a, e, 1e-12)
        assert_close_to(b, e, 1e-12)


@pytest.mark.parametrize(("kernel", "per_sample", "mul"), [(k, p, 3) for k, p in SCALED] + [("direct", True, 8)])
@pytest.mark.parametrize("cls", PRODUCTS)
def test_folded_products_are_equivariant(cls, kernel, per_sample, mul):
    """Rotations, improper rotations and inversion, float64, 1e-12 of the output scale, on the scaled op (mul 8
    on the direct kernel: the channel columns)."""
    irreps = irreps_of(cls, mul, 2, 1)
    product = cls(*irreps, executor="cpu_fused", internal_weights=False, shared_weights=not per_sample).double()
    x1, x2, w = random_inputs(on_transform(product, kernel), (4,), torch.float64, seed=11)
    assert product.frame.folds(x1, x2, w, per_sample) == "scales"
    with OpNames() as names:
        assert_equivariant(product, x1, x2, w)
    assert names.ran("gaunt.cpu_scaled_weights_product")


# the syntheses of s3 g that P'_1 and P'_2 both make: one field; the vector product's g is two (its parities)
SHARED = {GridGauntProduct: 1, GauntProduct: 1, VectorGauntProduct: 2}


@pytest.mark.parametrize("cls", PRODUCTS)
def test_the_joint_backward_on_the_transform_kernel_synthesizes_g_once(cls):
    """The two derivative programs of the joint backward share the synthesis of the cotangent (one loop over the
    samples, ``csrc/shared_passes.h``); their gradients are the same numbers as the slot ops' own runs, bit for bit
    (the same field, the same arithmetic after it), and the same as the form's."""
    product = cls(*irreps_of(cls, 16, 2), executor="cpu_fused").float()
    program, program_id = registered(product, "transform")
    for dtype in (torch.float32, torch.float64):
        assert op.shared_syntheses(program_id, dtype) == SHARED[cls]
    args, index = random_args(program, 9, 70, per_sample=False, seed=3)
    x1, x2, g, w = (a.float() for a in args[:4])
    joint = op.scaled_weights_grads(x1, x2, g, w, *index, program_id, True, True, True)
    slots = [op.scaled_weights(pair, True, True, x1, x2, g, w, w, w, *index, program_id) for pair in range(3)]
    assert torch.equal(joint[0], slots[0][0]) and torch.equal(joint[1], slots[1][0])
    torch.testing.assert_close(joint[2], slots[0][1] + slots[1][1] + slots[2][1], rtol=1e-5, atol=1e-5)
    assert op.shared_syntheses(registered(product, "direct")[1], torch.float32) == 0


@pytest.mark.parametrize("cls", PRODUCTS)
def test_the_joint_backward_with_shared_syntheses_is_equivariant(cls):
    """The gradients of x1 and x2 from the joint backward (no graph: one call, the cotangent synthesized once) as
    functions of their two arguments, ``dx1(g, x2)`` and ``dx2(x1, g)``: rotations, improper rotations and
    inversion, float64, 1e-12 of the output scale."""
    product = on_transform(cls(*irreps_of(cls, 16, 2), executor="cpu_fused", internal_weights=False).double())
    assert op.shared_syntheses(cpu_runner(product.frame.runner).program_id, torch.float64) == SHARED[cls]
    x1, x2, w = random_inputs(product, (5,), torch.float64, seed=12)
    g = torch.randn(5, product.irreps_out.dim, generator=torch.Generator().manual_seed(13), dtype=torch.float64)

    def grad_x1(cotangent, b, weight):
        a = x1.clone().requires_grad_()  # dx1 does not depend on x1
        return torch.autograd.grad(product(a, b, weight), a, cotangent)[0]

    def grad_x2(a, cotangent, weight):
        b = x2.clone().requires_grad_()
        return torch.autograd.grad(product(a, b, weight), b, cotangent)[0]

    ins1, ins2, out = product.irreps_in1, product.irreps_in2, product.irreps_out
    with OpNames() as names:
        assert_equivariant(grad_x1, g, x2, w, irreps_in1=out, irreps_in2=ins2, irreps_out=ins1)
        assert_equivariant(grad_x2, x1, g, w, irreps_in1=ins1, irreps_in2=out, irreps_out=ins2)
    assert names.ran("gaunt.cpu_scaled_weights_grads")


def test_only_equal_syntheses_of_the_same_operand_are_shared():
    """The count of shared syntheses against its controls: a program run twice on the same operands shares both
    syntheses, on other operands none, and the forward program with a derivative program only the synthesis of
    the operand they both read with the same tables."""
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 16, 2), executor="cpu_fused")
    _, program_id = registered(product, "transform")
    forward = program_tables(program_id, torch.float32)
    d1 = program_tables(derivative_id(program_id, 0), torch.float32)  # P'_1(g, x2)

    def shared(roles, *tables):
        values, metas = [t[1] for t in tables], [t[2] for t in tables]
        return torch.ops.gaunt_fused.scaled_weights_shared(roles, values, metas, False)

    assert shared([0, 1, 0, 1], forward, forward) == 2
    assert shared([0, 1, 2, 3], forward, forward) == 0
    assert shared([0, 1, 0, 2], forward, forward) == 1
    assert shared([0, 1, 2, 1], forward, d1) == 1  # x2 in both
    scaled = (forward[0], 2 * forward[1], forward[2])  # the same layout, other tables
    assert shared([0, 1, 0, 1], forward, scaled) == 0
