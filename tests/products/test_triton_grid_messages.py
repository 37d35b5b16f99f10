"""The Triton grid messages (``triton_grid_messages``): every slot equals ``grid_messages.reference`` on small random
graphs (unsorted and repeated edges, nodes without edges, no edges at all), in float64, float32 and bfloat16, with
several channel blocks per node, on non-contiguous inputs; first and second derivatives through the op. On the CPU
the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set by ``tests/conftest.py``): tiny sizes only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conformance import DEVICE, INTERPRETED

from gaunt.products import EXECUTORS
from gaunt.products.grid_messages import reference
from gaunt.products.grid_messages_runners import grid_messages_runner

REASON = EXECUTORS["triton"].unavailable()
needs_triton = pytest.mark.skipif(
    REASON is not None or DEVICE not in EXECUTORS["triton"].devices,
    reason=f"Triton executor: {REASON or 'not on ' + DEVICE}",
)
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2**-8}  # relative to the largest entry

#: edges (sender, receiver) in no order, (3, 1) twice, node 4 in none of them
SENDERS = [3, 0, 3, 1, 0, 3, 1, 2]
RECEIVERS = [1, 1, 0, 3, 1, 0, 0, 1]


def problem(N=5, E=8, mul=3, P=7, L1=3, dtype=torch.float64, seed=0, index_dtype=torch.int64):
    """``[f, s, w, y], y2, senders, receivers`` (the module's graph when ``E == 8``, random edges among the first
    ``N - 1`` nodes otherwise)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    args = [rand(N, mul, P), rand(N, mul, P), rand(E, mul, L1), rand(E, L1 * L1)]
    if E == len(SENDERS):
        senders, receivers = torch.tensor(SENDERS), torch.tensor(RECEIVERS)
    else:
        senders, receivers = torch.randint(0, N - 1, (2, E), generator=g)
    return args, rand(P, L1 * L1), senders.to(DEVICE, index_dtype), receivers.to(DEVICE, index_dtype)


def without(args, slot):
    return [None if i == slot else a for i, a in enumerate(args)]


def expected(slot, args, y2, senders, receivers, N=5):
    """The reference in float64 on the same (possibly rounded) inputs."""
    double = [None if a is None else a.double() for a in without(args, slot)]
    return reference(slot, *double, y2.double(), senders.long(), receivers.long(), N)


def assert_close_to_scale(actual, want, tol) -> None:
    scale = float(want.abs().max())
    assert scale > 0
    torch.testing.assert_close(actual.double(), want, rtol=0, atol=tol * scale)


def test_the_graph_has_what_the_tests_need():
    s, r = torch.tensor(SENDERS), torch.tensor(RECEIVERS)
    assert not bool((r[1:] >= r[:-1]).all()) and not bool((s[1:] >= s[:-1]).all())  # unsorted both ways
    assert len(set(zip(SENDERS, RECEIVERS))) < len(SENDERS)  # a repeated edge
    assert 4 not in SENDERS + RECEIVERS and 2 not in RECEIVERS  # no edge at all; no edge in


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("slot", [0, 1, 2, 3])
def test_slot_equals_reference(slot, dtype):
    from gaunt.products.triton_grid_messages import grid_messages

    index = torch.int64 if dtype == torch.float64 else torch.int32
    args, y2, senders, receivers = problem(dtype=dtype, index_dtype=index)
    out = grid_messages(slot, *without(args, slot), y2, senders, receivers, 5)
    assert out.dtype == dtype and out.device.type == DEVICE
    assert_close_to_scale(out, expected(slot, args, y2, senders, receivers), TOL[dtype])
    if slot in (0, 1):  # node 4 has no edge: zeros there
        assert not out[4].any()


@needs_triton
@pytest.mark.parametrize("slot", [0, 1, 2, 3])
def test_blocks_of_channels_and_points(slot):
    """A GPU's tiling: per node, blocks of 2 channels and 4 points (the last ones ragged: 3 channels, 7 points);
    per edge, chunks of 4 points."""
    from gaunt.products.triton_grid_messages import blocks, run

    if "triton" in INTERPRETED:  # the interpreter's tiles: every channel and point in one program
        assert blocks(slot, 3, 7) == (4, 8, 1)
    args, y2, senders, receivers = problem(seed=1)
    out = run(slot, *without(args, slot), y2, senders, receivers, 5, tile=(2, 4))
    assert_close_to_scale(out, expected(slot, args, y2, senders, receivers), TOL[torch.float64])


@needs_triton
def test_bfloat16_accumulates_in_float32():
    """bfloat16 in and out; the sums in float32: the error of rounding the output, not of the sums."""
    from gaunt.products.triton_grid_messages import grid_messages

    args, y2, senders, receivers = problem(dtype=torch.bfloat16, seed=2)
    for slot in range(4):
        out = grid_messages(slot, *without(args, slot), y2, senders, receivers, 5)
        assert out.dtype == torch.bfloat16
        assert_close_to_scale(out, expected(slot, args, y2, senders, receivers), TOL[torch.bfloat16])


@needs_triton
def test_random_graph_and_one_degree():
    """Random edges (any order, repeats), one degree (L = 0), one channel."""
    from gaunt.products.triton_grid_messages import grid_messages

    args, y2, senders, receivers = problem(N=4, E=6, mul=1, P=5, L1=1, seed=3)
    for slot in range(4):
        out = grid_messages(slot, *without(args, slot), y2, senders, receivers, 4)
        assert_close_to_scale(out, expected(slot, args, y2, senders, receivers, 4), TOL[torch.float64])


@needs_triton
def test_no_edges():
    from gaunt.products.triton_grid_messages import grid_messages

    args, y2, senders, receivers = problem(E=6, seed=4)
    args, senders, receivers = [args[0], args[1], args[2][:0], args[3][:0]], senders[:0], receivers[:0]
    shapes = [(5, 3, 7), (5, 3, 7), (0, 3, 3), (0, 9)]
    for slot in range(4):
        out = grid_messages(slot, *without(args, slot), y2, senders, receivers, 5)
        torch.testing.assert_close(out, torch.zeros(shapes[slot], dtype=torch.float64, device=DEVICE))


@needs_triton
def test_non_contiguous_inputs():
    from gaunt.products.triton_grid_messages import grid_messages

    args, y2, senders, receivers = problem(seed=5)
    strided = [a.transpose(0, -1).contiguous().transpose(0, -1) for a in args]  # same values, other strides
    y2_strided = y2.t().contiguous().t()
    every_other = torch.stack([senders, receivers], dim=1)  # senders and receivers as strided columns
    assert not any(t.is_contiguous() for t in (*strided, y2_strided, every_other[:, 0]))
    for slot in range(4):
        out = grid_messages(slot, *without(strided, slot), y2_strided, every_other[:, 0], every_other[:, 1], 5)
        assert_close_to_scale(out, expected(slot, args, y2, senders, receivers), TOL[torch.float64])


@needs_triton
def test_a_perturbed_input_is_detected():
    """Non-vacuity: changing one entry of an argument the slot reads moves the output off the reference."""
    from gaunt.products.triton_grid_messages import grid_messages

    args, y2, senders, receivers = problem(seed=6)
    for slot, (arg, index) in enumerate([(2, (0, 1, 2)), (3, (7, 5)), (0, (3, 2, 6)), (1, (0, 0, 0))]):
        perturbed = [a.clone() for a in args]
        perturbed[arg][index] += 0.5
        out = grid_messages(slot, *without(perturbed, slot), y2, senders, receivers, 5)
        with pytest.raises(AssertionError):
            assert_close_to_scale(out, expected(slot, args, y2, senders, receivers), 1e-3)


@needs_triton
def test_out_of_range_nodes_contribute_nothing():
    """An edge whose sender or receiver is not a node reads and writes nothing (masked; no host check)."""
    from gaunt.products.triton_grid_messages import grid_messages

    args, y2, senders, receivers = problem(seed=7)
    bad_s, bad_r = senders.clone(), receivers.clone()
    bad_s[2], bad_r[5] = 5, 7  # edges 2 and 5 point outside the 5 nodes
    kept = torch.tensor([e not in (2, 5) for e in range(8)], device=DEVICE)
    sub = [args[0], args[1], args[2][kept], args[3][kept]]
    for slot in (0, 1):
        out = grid_messages(slot, *without(args, slot), y2, bad_s, bad_r, 5)
        assert_close_to_scale(out, expected(slot, sub, y2, senders[kept], receivers[kept]), TOL[torch.float64])
    for slot in (2, 3):
        out = grid_messages(slot, *without(args, slot), y2, bad_s, bad_r, 5)
        assert not out[2].any() and not out[5].any()
        assert_close_to_scale(out[kept], expected(slot, sub, y2, senders[kept], receivers[kept]), TOL[torch.float64])


@needs_triton
def test_gradients_through_the_op():
    """Slot 1 (the messages) through the op's slot-swapping autograd: gradcheck and gradgradcheck in float64 with
    respect to f, w and y (interpreted: fast mode, random projections of the Jacobians)."""
    from gaunt.products.triton_grid_messages import grid_messages

    (f, _, w, y), y2, senders, receivers = problem(N=3, E=3, mul=2, P=2, L1=2, seed=8)
    inputs = [t.requires_grad_() for t in (f, w, y)]
    fn = lambda f, w, y: grid_messages(1, f, None, w, y, y2, senders, receivers, 3)
    fast = "triton" in INTERPRETED
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=fast)
    assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=fast)


@needs_triton
def test_derivatives_equal_reference_autograd():
    """First and second derivatives of slot 1 (forces, force training) through the op equal torch's autograd
    through the reference, entry by entry."""
    from gaunt.products.triton_grid_messages import grid_messages

    (f, _, w, y), y2, senders, receivers = problem(seed=10)
    c = torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(11), dtype=torch.float64).to(DEVICE)
    results = []
    for op in (reference, grid_messages):
        inputs = [t.detach().requires_grad_() for t in (f, w, y)]
        out = op(1, inputs[0], None, inputs[1], inputs[2], y2, senders, receivers, 5)
        first = torch.autograd.grad((out * c).sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), inputs)
        results.append([out, *first, *second])
    for actual, want in zip(results[1], results[0]):
        assert_close_to_scale(actual.detach(), want.detach(), TOL[torch.float64])


@needs_triton
def test_custom_op_registrations():
    """Schema, fake implementation, autograd registration and dispatch: ``torch.library.opcheck``."""
    import gaunt.products.triton_grid_messages  # noqa: F401 - registers the op

    (f, _, w, y), y2, senders, receivers = problem(N=3, E=4, mul=2, P=3, L1=2, seed=12)
    f, w, y = (t.requires_grad_() for t in (f, w, y))
    torch.library.opcheck(torch.ops.gaunt.triton_grid_messages.default, (1, f, None, w, y, y2, senders, receivers, 3))


@needs_triton
def test_runner_and_invalid_arguments():
    from gaunt.products.triton_grid_messages import grid_messages

    assert grid_messages_runner("triton") is grid_messages
    (f, s, w, y), y2, senders, receivers = problem(E=6, seed=9)
    call = lambda *a: grid_messages(*a, y2, senders, receivers, 5)
    with pytest.raises(ValueError, match="slot must be 0..3"):
        call(4, f, s, w, y)
    with pytest.raises(ValueError, match="slot 1 needs f"):
        call(1, None, None, w, y)
    with pytest.raises(ValueError, match="w has shape"):
        call(1, f, None, w[:, :, :2], y)
    with pytest.raises(ValueError, match="disagree on mul"):
        call(1, f, None, w[:, :2], y)
    with pytest.raises(ValueError, match="int32 or int64"):
        grid_messages(1, f, None, w, y, y2, senders.double(), receivers.double(), 5)


@pytest.mark.skipif(REASON is not None and "CUDA" not in REASON, reason=f"Triton executor: {REASON}")
def test_kernels_compile_for_sm90():
    """The compiled path (not the interpreter's): both kernels, every slot and dtype, through ptxas for sm_90 with
    the GPU's tiles, no GPU needed; no spills to the stack."""
    import json

    import gaunt

    script = Path(__file__).with_name("triton_grid_messages_aot.py")
    src = str(Path(gaunt.__file__).resolve().parents[1])  # this checkout's gaunt in the subprocess too
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, str(script), "90"], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["slot"], r["dtype"]) for r in records] == [
        (1, "fp32"),
        (1, "fp64"),
        (0, "bf16"),
        (2, "fp32"),
        (3, "fp32"),
    ]
    assert all(r["usage"] is None or "STACK:0 " in r["usage"] for r in records), records
