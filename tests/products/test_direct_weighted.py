"""Shared weights folded into the direct kernel (``direct_weighted``, ``csrc/direct_weighted.cpp``): the four
slots of the op (and three at once) against autograd of the multilinear form written in torch, both tilings and
every channel-block grouping; the folded products against the unfolded path and the torch executor (values and
gradients, broadcast and empty batches), gradcheck and gradgradcheck with the weight, torch.compile, and when the
frame folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gaunt.bench.products import sh_irreps
from gaunt.products import GauntProduct, GridGauntProduct, VectorGauntProduct, cpu_build
from gaunt.products import direct_weighted as op
from gaunt.products.coupling import Coupling, coupling
from gaunt.products.direct_weighted import fold
from gaunt.products.executors import cpu_runner
from gaunt.products.torch_executor import TorchProgram

needs_kernel = pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
pytestmark = needs_kernel
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
PRODUCTS = [GridGauntProduct, GauntProduct, VectorGauntProduct]


def irreps_of(cls, mul: int, L: int, mul2: int | None = None) -> tuple[str, str, str]:
    """Feature-shape irreps up to degree L (the vector product: x2 up to 1, its output with the 1e block);
    ``mul2``: the channels of x2 (1: copied to every channel by the frame)."""
    mul2 = mul if mul2 is None else mul2
    if cls is VectorGauntProduct:
        return str(sh_irreps(mul, L)), str(sh_irreps(mul2, 1)), f"{mul}x0e+{mul}x1o+{mul}x1e+{mul}x2e"
    return str(sh_irreps(mul, L)), str(sh_irreps(mul2, L)), str(sh_irreps(mul, L))


def assert_close_to(out: torch.Tensor, exact: torch.Tensor, tol: float, name: str = "") -> None:
    """``out`` equals ``exact`` to ``tol`` of the scale of ``exact`` (not vacuous: the scale is not 0)."""
    assert exact.numel() == 0 or float(exact.abs().max()) > 0, f"{name}: the reference is zero"
    scale = float(exact.abs().max()) if exact.numel() else 1.0
    torch.testing.assert_close(out.double(), exact.double(), rtol=0, atol=tol * scale, msg=lambda m: f"{name}: {m}")


class OpNames(TorchDispatchMode):
    """Records the names of the ops dispatched inside it (which path a product took)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))

    def ran(self, name: str) -> bool:
        return any(name in n for n in self.names)


# ------------------------------------------------------------------------------------------------ the op
def form(c: Coupling, x1, x2, g, C) -> torch.Tensor:
    """T(x1, x2, g, C) = sum_{n, u, t} k_t C[t, u] x1[n, pos1[u, a_t]] x2[n, pos2[u, b_t]] g[n, pos_out[u, c_t]]."""
    pos1, pos2, pos_out = (torch.tensor(p) for p in c.positions)
    k = torch.tensor(c.coefficient, dtype=x1.dtype)
    a, b, cc = (torch.tensor(t) for t in (c.a, c.b, c.c))
    terms = x1[:, pos1[:, a].T] * x2[:, pos2[:, b].T] * g[:, pos_out[:, cc].T]  # [n, nnz, mul]
    return (terms.sum(0) * C * k[:, None]).sum()


def form_slots(c: Coupling, args: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients of :func:`form` with respect to its four arguments (torch autograd, the reference)."""
    leaves = [a.detach().double().requires_grad_() for a in args]
    return list(torch.autograd.grad(form(c, *leaves), leaves))


def random_args(c: Coupling, n: int, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dims = c.dims
    return [torch.randn(n, dims[k], generator=g, dtype=torch.float64).to(dtype) for k in range(3)] + [
        torch.randn(c.nnz, c.mul, generator=g, dtype=torch.float64).to(dtype)
    ]


# mul in lanes of float32 (16) and float64 (8): 3 (sample tiles), then 1, 2, 3, 4, 5 channel blocks of 16
@pytest.mark.parametrize("mul", [3, 16, 32, 48, 64, 80])
@pytest.mark.parametrize("cls,L", [(GridGauntProduct, 1), (GauntProduct, 2), (VectorGauntProduct, 2)])
def test_every_slot_equals_autograd_of_the_form(cls, L, mul):
    program = cls(*irreps_of(cls, mul, L), executor="torch").program
    c = coupling(program)
    folded_id = op.register_folded(c)
    for n in (37, 5, 1, 0):
        exact = form_slots(c, random_args(c, n, torch.float64, seed=n))
        for dtype, tol in TOL.items():
            args = random_args(c, n, dtype, seed=n)
            for slot in range(4):
                given = [None if i == slot else a for i, a in enumerate(args)]
                out = op.direct_weighted(slot, *given, folded_id)
                assert out.dtype == dtype and out.shape == exact[slot].shape, (slot, out.shape)
                if n or slot < 3:
                    assert_close_to(out, exact[slot], tol, f"{cls.__name__} L={L} mul={mul} n={n} slot {slot} {dtype}")
                else:
                    assert float(out.abs().max()) == 0  # an empty batch sums to zero
            together = op.direct_weighted_backward(*args, folded_id)  # slots 0, 1, 3 in one pass
            for out, slot in zip(together, (0, 1, 3)):
                assert out.dtype == dtype and out.shape == exact[slot].shape
                if n:
                    assert_close_to(out, exact[slot], tol, f"{cls.__name__} L={L} mul={mul} n={n} slot {slot} at once")


def test_the_reduction_sums_in_blocks_over_long_ranges_and_is_deterministic():
    """Enough samples for the blocks of kFlush groups (channel and sample tiles), two threads: the same bits
    twice, and the sums of autograd."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for mul, n in ((3, 40000), (16, 6000)):  # more samples than the grain of one thread (2^20 lane operations)
            c = coupling(GridGauntProduct(*irreps_of(GridGauntProduct, mul, 1), executor="torch").program)
            folded_id = op.register_folded(c)
            args = random_args(c, n, torch.float64, seed=mul)
            first = op.direct_weighted(3, *args[:3], None, folded_id)
            torch.testing.assert_close(op.direct_weighted(3, *args[:3], None, folded_id), first, rtol=0, atol=0)
            assert_close_to(first, form_slots(c, args)[3], 1e-12, f"mul={mul}")
    finally:
        torch.set_num_threads(threads)


def test_the_vjp_order_permutes_the_list():
    c = coupling(GauntProduct(*irreps_of(GauntProduct, 2, 2), executor="torch").program)
    for wrt, (a, b, cc) in enumerate([(c.c, c.b, c.a), (c.a, c.c, c.b)]):
        v, order = c.vjp(wrt), c.vjp_order(wrt)
        assert sorted(order.tolist()) == list(range(c.nnz))
        for got, want in ((v.a, a), (v.b, b), (v.c, cc), (v.coefficient, c.coefficient)):
            np.testing.assert_array_equal(got, want[order])
    with pytest.raises(ValueError, match="wrt"):
        c.vjp_order(2)


def test_opcheck_and_the_op_gradients():
    """torch.library.opcheck (schema, fake implementation, autograd registration) and gradcheck/gradgradcheck
    of two slots in every argument."""
    c = coupling(GridGauntProduct(*irreps_of(GridGauntProduct, 2, 1), executor="torch").program)
    folded_id = op.register_folded(c)
    x1, x2, g, C = (a.requires_grad_() for a in random_args(c, 3, torch.float64, seed=4))
    torch.library.opcheck(op.direct_weighted, (2, x1, x2, None, C, folded_id))
    torch.library.opcheck(op.direct_weighted, (3, x1, x2, g, None, folded_id))
    torch.library.opcheck(op.direct_weighted_backward, (x1, x2, g, C, folded_id))
    for slot, args in ((2, (x1, x2, C)), (0, (x2, g, C))):

        def f(a, b, d, slot=slot):
            given = {2: (a, b, None, d), 0: (None, a, b, d)}[slot]
            return op.direct_weighted(slot, *given, folded_id)

        assert torch.autograd.gradcheck(f, args)
        assert torch.autograd.gradgradcheck(f, args)
    assert torch.autograd.gradcheck(lambda *a: op.direct_weighted_backward(*a, folded_id), (x1, x2, g, C))


# ------------------------------------------------------------------------------------------------ the products
def products(cls, irreps, **kw) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The product on "cpu_fused" (folded where it can) and on "torch", float64, the same weights."""
    return cls(*irreps, executor="cpu_fused", **kw).double(), cls(*irreps, executor="torch", **kw).double()


def outputs_and_gradients(product, x1, x2, w, cotangent):
    leaves = [t.detach().requires_grad_() for t in (x1, x2, w)]
    with OpNames() as names:
        out = product(*leaves)
        grads = torch.autograd.grad(out, leaves, cotangent)
    return [out.detach(), *grads], names


def assert_folded_equals(product, reference, inputs, per_sample: bool, mode: str, ops: tuple[str, ...]) -> None:
    """For each dtype of ``TOL``: ``product`` folds its weights as ``mode`` and runs every op of ``ops`` (where the
    batch is not empty), and its output and gradients for ``inputs = (x1, x2, w, cotangent)`` (float64) equal the
    unfolded path and the torch executor ``reference``; then the product is float64 again."""
    x1, x2, w, cotangent = inputs
    exact, _ = outputs_and_gradients(reference, x1, x2, w, cotangent)
    where = f"{type(product).__name__} {tuple(cotangent.shape[:-1])}"
    for dtype, tol in TOL.items():
        cast = [t.to(dtype) for t in inputs]
        product.to(dtype)
        assert product.frame.folds(*cast[:3], per_sample=per_sample) == mode
        folded, names = outputs_and_gradients(product, *cast)
        assert all(names.ran(op) == bool(x1.numel() and x2.numel()) for op in ops)
        product.frame.fold_weights = False
        unfolded, names = outputs_and_gradients(product, *cast)
        product.frame.fold_weights = True
        assert not any(names.ran(op) for op in ops)
        for k, (a, b, e) in enumerate(zip(folded, unfolded, exact)):
            assert a.dtype == dtype and a.shape == e.shape
            if e.numel() and float(e.abs().max()) > 0:
                assert_close_to(a, e, tol, f"{where} {dtype} output/grad {k} vs torch")
                assert_close_to(a, b.double(), tol, f"{where} {dtype} output/grad {k} vs unfolded")
            else:  # an empty batch: no output, zero weight gradient
                assert x1.numel() == 0 and (a.numel() == 0 or float(a.abs().max()) == 0)
    product.double()


@pytest.mark.parametrize("mul2", [None, 1])  # x2 with every channel, or one channel copied by the frame
@pytest.mark.parametrize("mul", [3, 16])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("cls", PRODUCTS)
def test_folded_products_equal_the_unfolded_path_and_the_torch_executor(cls, L, mul, mul2):
    irreps = irreps_of(cls, mul, L, mul2)
    product, reference = products(cls, irreps, internal_weights=False, shared_weights=True)
    assert product.frame.folded is not None and "as coefficients of the direct kernel" in repr(product)
    g = torch.Generator().manual_seed(L + mul)
    dims = product.irreps_in1.dim, product.irreps_in2.dim, product.irreps_out.dim
    for batch1, batch2 in (((2, 1), (3,)), ((7,), (7,)), ((0,), (0,))):
        x1 = torch.randn(*batch1, dims[0], generator=g, dtype=torch.float64)
        x2 = torch.randn(*batch2, dims[1], generator=g, dtype=torch.float64)
        w = torch.randn(product.weight_numel, generator=g, dtype=torch.float64)
        batch = torch.broadcast_shapes(batch1, batch2)
        cotangent = torch.randn(*batch, dims[2], generator=g, dtype=torch.float64)
        # non-vacuous: the folded op, and its backward in one pass
        ops = ("gaunt.cpu_direct_weighted", "gaunt.cpu_direct_weighted_backward")
        assert_folded_equals(product, reference, (x1, x2, w, cotangent), False, "coefficients", ops)


@pytest.mark.parametrize("mul", [2, 8])  # sample tiles; channel tiles of 8 doubles (4 samples a group)
def test_gradcheck_and_gradgradcheck_with_the_weight(mul):
    irreps = (f"{mul}x0e+{mul}x1o", "0e+1o", f"{mul}x0e+{mul}x1o+{mul}x2e")  # x2 copied to every channel
    product, _ = products(GridGauntProduct, irreps, internal_weights=False, shared_weights=True)
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(3, product.irreps_in1.dim, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(3, product.irreps_in2.dim, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(product.weight_numel, generator=g, dtype=torch.float64, requires_grad=True)
    assert product.frame.folds(x1, x2, w, per_sample=False) == "coefficients"
    with OpNames() as names:
        assert torch.autograd.gradcheck(product, (x1, x2, w))
        assert torch.autograd.gradgradcheck(product, (x1, x2, w))
    assert names.ran("gaunt.cpu_direct_weighted") and not names.ran("gaunt.cpu_sphere_program")


def assert_compiles_with_no_graph_break(product: torch.nn.Module, op_name: str) -> None:
    """``torch.compile(product, fullgraph=True)`` traces one graph that calls ``op_name``; its values and
    gradients (x1 and the internal weight) equal eager mode's."""
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(5, product.irreps_in1.dim, generator=g, requires_grad=True)
    x2 = torch.randn(5, product.irreps_in2.dim, generator=g)
    out = torch.compile(product, fullgraph=True, backend=backend)(x1, x2)
    grads = torch.autograd.grad(out.square().sum(), (x1, product.weight))
    assert len(graphs) == 1 and op_name in graphs[0]
    eager = product(x1, x2)
    eager_grads = torch.autograd.grad(eager.square().sum(), (x1, product.weight))
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compile_traces_the_folded_op_with_no_graph_break():
    irreps = irreps_of(GridGauntProduct, 16, 2)
    product = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=True, weight_init="randn").float()
    assert_compiles_with_no_graph_break(product, "cpu_direct_weighted")


def test_the_frame_folds_only_shared_weights_as_coefficients():
    irreps = irreps_of(GridGauntProduct, 4, 1)
    shared = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=False, shared_weights=True)
    per_sample = GridGauntProduct(*irreps, executor="cpu_fused", internal_weights=False, shared_weights=False)
    x1, x2 = torch.randn(3, shared.irreps_in1.dim), torch.randn(3, shared.irreps_in2.dim)
    w = torch.randn(shared.weight_numel)
    assert shared.frame.folds(x1, x2, w, per_sample=False) == "coefficients"
    assert per_sample.frame.folds(x1, x2, w.expand(3, -1), per_sample=True) == "scales"  # scaled_weights
    assert not shared.frame.folds(x1.to(torch.bfloat16), x2.to(torch.bfloat16), w, per_sample=False)
    with OpNames() as names:
        per_sample(x1, x2, w.expand(3, -1))
    assert not names.ran("gaunt.cpu_direct_weighted")
    fused = cpu_runner(shared.frame.runner)
    assert fused.kernel == "direct"
    expected = shared(x1, x2, w)
    fused.use_kernel("transform")
    assert shared.frame.folds(x1, x2, w, per_sample=False) == "scales" and "as scales" in repr(shared)
    torch.testing.assert_close(shared(x1, x2, w), expected, rtol=1e-5, atol=1e-5)
    assert GridGauntProduct(*irreps, executor="torch").frame.folded is None


@pytest.mark.parametrize("uniform", [True, False])
def test_an_output_sign_folds_where_it_is_the_same_in_every_channel(uniform):
    product = GridGauntProduct(*irreps_of(GridGauntProduct, 3, 1), executor="torch").double()
    program, frame = product.program, product.frame
    index = [frame._w1_index.numpy(), frame._w2_index.numpy(), frame._w3_index.numpy()]
    c = coupling(program)
    sign = np.ones(program.dims[2])
    sign[c.positions[2][:, 1] if uniform else c.positions[2][0, 1]] = -1  # coefficient 1 of every/one channel
    folded = fold(program, index, sign)
    if not uniform:
        assert folded is None
        return
    g = torch.Generator().manual_seed(5)
    x1, x2 = (torch.randn(4, program.dims[k], generator=g, dtype=torch.float64) for k in (0, 1))
    w = torch.randn(product.weight_numel, generator=g, dtype=torch.float64)
    w1, w2, w3 = (w[torch.as_tensor(i)] for i in index)
    exact = TorchProgram(program).evaluate(x1 * w1, x2 * w2) * w3 * torch.as_tensor(sign)
    assert_close_to(folded(x1, x2, w), exact, 1e-12)
