"""The fused CPU kernel of the grid messages (``cpu_grid_messages``, ``csrc/grid_messages.cpp``): every slot
equals ``grid_messages.reference`` on graphs with unsorted and repeated edges, nodes without edges and no
edges at all, with grid sizes that exercise every register block and the partial last vector; non-contiguous
inputs; first and second derivatives through the op (the slot-swapping autograd); ``torch.compile``; threads;
and the errors of bad arguments."""

from __future__ import annotations

import pytest
import torch

from gaunt.products import cpu_build
from gaunt.products.grid_messages import reference
from gaunt.products.grid_messages_runners import grid_messages_runner

pytestmark = pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")

if cpu_build.unavailable() is None:
    from gaunt.products.cpu_grid_messages import grid_messages

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def make_case(N, E, mul, P, L1, dtype=torch.float64, seed=0, edges=None):
    """``(args, y2, senders, receivers, N)`` with ``args = [f, s, w, y]``: Gaussian values, random edges
    (in no order, repeats allowed) unless ``edges = (senders, receivers)`` is given."""
    g = torch.Generator().manual_seed(seed)
    if edges is None:
        edges = torch.randint(0, N, (2, E), generator=g)
    senders, receivers = (torch.as_tensor(e, dtype=torch.int64) for e in edges)
    E = senders.shape[0]
    f, s = (torch.randn(N, mul, P, generator=g, dtype=dtype) for _ in range(2))
    w = torch.randn(E, mul, L1, generator=g, dtype=dtype)
    y = torch.randn(E, L1 * L1, generator=g, dtype=dtype)
    y2 = torch.randn(P, L1 * L1, generator=g, dtype=dtype)
    return [f, s, w, y], y2, senders, receivers, N


def without(args, slot):
    return [None if i == slot else a for i, a in enumerate(args)]


def assert_matches_reference(slot, args, y2, senders, receivers, N, out=None):
    """The kernel (or ``out``) equals the float64 reference of the same inputs, relative to its largest entry."""
    given = without(args, slot)
    if out is None:
        out = grid_messages(slot, *given, y2, senders, receivers, N)
    wide = [None if a is None else a.double() for a in given]
    exact = reference(slot, *wide, y2.double(), senders, receivers, N)
    assert out.dtype == y2.dtype and out.shape == exact.shape
    tol = TOL[y2.dtype]
    scale = float(exact.abs().max()) if exact.numel() else 1.0
    torch.testing.assert_close(out.double(), exact, rtol=tol, atol=tol * scale, msg=lambda m: f"slot {slot}: {m}")


CASES = {
    # N, E, mul, P, L1 (8 float64 lanes): P = 13, 58 end in a partial vector, 48, 58 run blocks of 4, 2, 1 vectors
    "unsorted": (9, 40, 3, 13, 3),
    "blocks": (7, 30, 5, 58, 4),
    "even_grid": (6, 25, 4, 48, 2),
    "one_degree": (5, 12, 2, 7, 1),
    "many_degrees": (6, 20, 2, 9, 7),  # L + 1 = 7: two degree chunks
    "typical": (20, 150, 32, 32, 4),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_slot_equals_reference(case, dtype):
    args, y2, senders, receivers, N = make_case(*CASES[case], dtype=dtype)
    for slot in range(4):
        assert_matches_reference(slot, args, y2, senders, receivers, N)


def test_repeated_edges_and_nodes_without_edges():
    # nodes 5..9 have no edges; (0 -> 1) comes three times; edges neither sorted by sender nor by receiver
    senders = [3, 0, 4, 0, 2, 1, 0, 4, 3]
    receivers = [0, 1, 2, 1, 2, 3, 1, 0, 4]
    args, y2, senders, receivers, N = make_case(10, 0, 3, 11, 3, edges=(senders, receivers))
    for slot in range(4):
        assert_matches_reference(slot, args, y2, senders, receivers, N)
    node_sums = grid_messages(1, *without(args, 1), y2, senders, receivers, N)
    torch.testing.assert_close(node_sums[5:], torch.zeros_like(node_sums[5:]), rtol=0, atol=0)
    assert (node_sums[:5].abs().amax(dim=(1, 2)) > 0).all()  # every receiver gets a message


def test_no_edges():
    args, y2, senders, receivers, N = make_case(4, 0, 3, 10, 2, edges=([], []))
    for slot in range(4):
        out = grid_messages(slot, *without(args, slot), y2, senders, receivers, N)
        assert_matches_reference(slot, args, y2, senders, receivers, N, out=out)
        if slot < 2:
            torch.testing.assert_close(out, torch.zeros(4, 3, 10, dtype=torch.float64), rtol=0, atol=0)


def strided(t: torch.Tensor) -> torch.Tensor:
    """The values of ``t`` as a non-contiguous view (every other element of a buffer twice as long)."""
    return torch.stack([t, torch.zeros_like(t)], dim=-1)[..., 0]


def test_non_contiguous_inputs():
    (f, s, w, y), y2, senders, receivers, N = make_case(8, 30, 3, 17, 3, seed=1)
    inputs = [f.transpose(1, 2).contiguous().transpose(1, 2), strided(s), strided(w), strided(y)]
    y2, senders, receivers = strided(y2), strided(senders), strided(receivers)
    assert not any(t.is_contiguous() for t in (*inputs, y2, senders, receivers))
    for slot in range(4):
        assert_matches_reference(slot, inputs, y2, senders, receivers, N)


def small_problem(seed=2):
    args, y2, senders, receivers, N = make_case(4, 7, 2, 3, 2, seed=seed)
    return [a.requires_grad_() for a in args], y2, senders, receivers, N


@pytest.mark.parametrize("slot", [0, 1, 2, 3])
def test_gradcheck_and_gradgradcheck(slot):
    args, y2, senders, receivers, N = small_problem()
    inputs = tuple(a for i, a in enumerate(args) if i != slot)

    def fn(*given):
        full = list(given)
        full.insert(slot, None)
        return grid_messages(slot, *full, y2, senders, receivers, N)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_second_derivative_equals_reference():
    """A force-training-like double backward: d/dy of <d(sum s_1 * c)/dw, c'> through the op and the reference."""
    args, y2, senders, receivers, N = small_problem(seed=3)
    f, _, w, y = args
    c = torch.randn(N, 2, 3, dtype=torch.float64)

    def grads(run):
        out = run(1, f, None, w, y, y2, senders, receivers, N)
        (gw,) = torch.autograd.grad((out * c).sum(), w, create_graph=True)
        return torch.autograd.grad((gw * gw).sum(), (f, y))

    for mine, exact in zip(grads(grid_messages), grads(reference)):
        torch.testing.assert_close(mine, exact, rtol=1e-12, atol=1e-12 * float(exact.abs().max()))


def test_torch_compile_fullgraph_equals_eager():
    (f, _, w, y), y2, senders, receivers, N = make_case(6, 20, 3, 8, 2, seed=4)
    f.requires_grad_()

    def fn(f, w, y):
        return grid_messages(1, f, None, w, y, y2, senders, receivers, N).square().sum()

    # aot_eager: Dynamo's capture (the fake implementation, no graph break) and AOTAutograd's backward graph,
    # without Inductor's C++ code generation (the op is one opaque node either way)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    eager_value, compiled_value = fn(f, w, y), compiled(f, w, y)
    (eager_grad,) = torch.autograd.grad(eager_value, f)
    (compiled_grad,) = torch.autograd.grad(compiled_value, f)
    torch.testing.assert_close(compiled_value, eager_value, rtol=1e-12, atol=0)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-12, atol=1e-12)


def test_threads_give_the_same_result():
    args, y2, senders, receivers, N = make_case(40, 300, 8, 20, 3, seed=5)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append([grid_messages(k, *without(args, k), y2, senders, receivers, N) for k in range(4)])
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results):  # threads split whole nodes or edges: the same arithmetic
        torch.testing.assert_close(one, two, rtol=0, atol=0)


def test_the_runner_is_the_op():
    assert grid_messages_runner("cpu_fused") is grid_messages


def test_a_perturbed_table_is_detected():
    """Non-vacuity: the comparison with the reference fails when the kernel gets a slightly different y2."""
    args, y2, senders, receivers, N = make_case(*CASES["unsorted"])
    perturbed = y2.clone()
    perturbed[3, 5] += 1e-6
    for slot in range(4):
        out = grid_messages(slot, *without(args, slot), perturbed, senders, receivers, N)
        with pytest.raises(AssertionError):
            assert_matches_reference(slot, args, y2, senders, receivers, N, out=out)


def test_bad_arguments_raise():
    (f, s, w, y), y2, senders, receivers, N = make_case(5, 9, 3, 6, 2)
    with pytest.raises(ValueError, match="f has shape"):
        grid_messages(1, f[:, :, :5], None, w, y, y2, senders, receivers, N)
    op = torch.ops.gaunt_fused.grid_messages
    bad = {
        "w has shape": (1, f, None, w[:, :2], y, y2, senders, receivers, N),
        "y has shape": (2, f, s, None, y[:, :3], y2, senders, receivers, N),
        "s is torch.float32|s is Float": (0, None, s.float(), w, y, y2, senders, receivers, N),
        "w is required": (1, f, None, None, y, y2, senders, receivers, N),
        "receivers out of range": (1, f, None, w, y, y2, senders, torch.cat([receivers[:-1], torch.tensor([N])]), N),
        "senders out of range": (0, None, s, w, y, y2, torch.cat([senders[:-1], torch.tensor([-1])]), receivers, N),
        "senders must be an int64": (3, f, s, w, None, y2, senders.int(), receivers, N),
        "not \\(L\\+1\\)\\^2": (1, f, None, w, y, y2[:, :3], senders, receivers, N),
        "slot must be 0..3": (4, f, s, w, y, y2, senders, receivers, N),
    }
    for message, call in bad.items():
        with pytest.raises(RuntimeError, match=message):
            op(*call)


def test_unavailable_kernel_raises_with_the_reason(monkeypatch):
    args, y2, senders, receivers, N = make_case(3, 4, 2, 3, 2)
    monkeypatch.setattr(cpu_build, "unavailable", lambda: "no compiler here")
    with pytest.raises(RuntimeError, match="no compiler here"):
        grid_messages(1, *without(args, 1), y2, senders, receivers, N)
