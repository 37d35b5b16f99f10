"""The power programs' Triton kernel (``triton_powers``) against the family's reference (``power_family``): every
member (forward, JVP, VJP, second and third derivatives) on grid and torus programs, float64 / float32 / bfloat16,
the GPU's tiles, empty batches, gradcheck and gradgradcheck through the op's autograd, ``GauntManyBody`` on "triton"
against "torch", the input checks, the compiled path (ptxas for sm_90) and what happens without triton. On the CPU
the kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set by ``tests/conftest.py``): tiny sizes only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conformance import DEVICE

from gaunt.nn import GauntManyBody
from gaunt.products import EXECUTORS
from gaunt.products.executors import resolve_executor
from gaunt.products.power_family import powers_reference
from gaunt.products.power_runners import RUNNERS
from gaunt.products.powers import power_program
from gaunt.products.sphere_irreps import parse_spherical_irreps
from gaunt.so3 import Irreps

REASON = EXECUTORS["triton"].unavailable()
needs_triton = pytest.mark.skipif(
    REASON is not None or DEVICE not in EXECUTORS["triton"].devices,
    reason=f"Triton executor: {REASON or 'not on ' + DEVICE}",
)
#: (tangents, with a cotangent): forward, JVP, second JVP, VJP, the second and third derivatives, and a fourth
#: derivative of a cubic (zero: no term left)
MEMBERS = [(0, False), (1, False), (2, False), (0, True), (1, True), (2, True), (3, True)]


def irreps(mul: int, lmax: int, sign: int = 1) -> Irreps:
    return Irreps([(mul, (l, sign * (-1) ** l)) for l in range(lmax + 1)])


def program(mul: int, L: int, L_out: int, powers, kind: str = "grid", sign: int = 1):
    lin = parse_spherical_irreps(irreps(mul, L, sign), "irreps", "test")
    lout = parse_spherical_irreps(irreps(mul, L_out, sign ** powers[0]), "irreps", "test")
    return power_program(lin, lout, powers, kind)


def inputs(prog, n: int, tangents: int, cotangent: bool, seed: int = 0, dtype=torch.float64):
    """``x``, ``tangents`` tangents like x and a cotangent ``[n, K, dim_out]`` (or None), on ``DEVICE``."""
    gen = torch.Generator().manual_seed(seed)
    dim_in, shape_g = int(prog.synthesis.index.max()) + 1, (n, len(prog.powers), len(prog.projection.read))
    x, *ts = (torch.randn(n, dim_in, generator=gen, dtype=torch.float64).to(DEVICE, dtype) for _ in range(1 + tangents))
    g = torch.randn(shape_g, generator=gen, dtype=torch.float64).to(DEVICE, dtype) if cotangent else None
    return x, ts, g


def assert_close_to_scale(actual, expected, tol: float) -> None:
    """``actual == expected`` to ``tol`` times the largest entry of ``expected``, which must not be zero."""
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=0, atol=tol * scale)


def assert_members_match(prog, members=MEMBERS, n: int = 3, tile=None) -> None:
    """``run_powers`` equals ``powers_reference`` on ``members``: float64 to 1e-12 of the scale, float32 to 1e-5;
    members with no term left (every power below the order) are zero."""
    from gaunt.products.triton_powers import register_powers, run_powers

    program_id = register_powers(prog)
    for tangents, cotangent in members:
        x, ts, g = inputs(prog, n, tangents, cotangent)
        exact = powers_reference(prog, x, ts, g)
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            cast = [t.to(dtype) for t in ts]
            out = run_powers(program_id, x.to(dtype), cast, None if g is None else g.to(dtype), tile)
            assert out.dtype == dtype and out.shape == exact.shape, (tangents, cotangent)
            if tangents + cotangent > max(prog.powers):
                torch.testing.assert_close(out, torch.zeros_like(out), rtol=0, atol=0)
            else:
                assert_close_to_scale(out, exact, tol)


@needs_triton
@pytest.mark.parametrize("kind", ["grid", "torus"])
def test_every_member_equals_the_reference(kind):
    assert_members_match(program(2, 2, 1, (1, 2, 3), kind))


@needs_triton
def test_sparse_powers_odd_sign_and_empty_batches():
    """Powers with a gap (terms with k < d vanish), an odd input (sign -1), 3 channels; n = 0 for every member."""
    from gaunt.products.triton_powers import register_powers, run_powers

    prog = program(3, 1, 1, (1, 3), "grid", sign=-1)
    assert_members_match(prog, MEMBERS + [(1, False), (2, True)], n=4)
    program_id = register_powers(prog)
    for tangents, cotangent in MEMBERS:
        x, ts, g = inputs(prog, 0, tangents, cotangent)
        out = run_powers(program_id, x, ts, g)
        assert out.shape == ((0, 12) if cotangent else (0, 2, 12))
        torch.testing.assert_close(out, powers_reference(prog, x, ts, g))


@needs_triton
@pytest.mark.parametrize("kind", ["grid", "torus"])
def test_gpu_tiles_in_the_interpreter(kind):
    """The GPU's shape of a step (16 columns, one ring a step) and several instances with a ragged last one."""
    from gaunt.products.triton_powers import blocks, power_tables

    prog = program(3, 2, 2, (1, 2, 3), kind)
    assert blocks(power_tables(prog).sizes, 12, 0, 8, interpret=False) == (16, 1, 16)
    assert_members_match(prog, [(0, False), (1, True)], n=4, tile=(16, 1, 4))  # 12 columns: one ragged instance
    assert_members_match(prog, [(2, False), (0, True)], n=4, tile=(8, 2, 4))  # three instances (no tl.dot minimum here)


@needs_triton
def test_bfloat16_inputs_accumulate_in_float32():
    from gaunt.products.triton_powers import register_powers, run_powers

    prog = program(2, 1, 1, (1, 2, 3))
    x, (t,), g = inputs(prog, 3, 1, True, dtype=torch.bfloat16)
    out = run_powers(register_powers(prog), x, [t], g)
    assert out.dtype == torch.bfloat16
    assert_close_to_scale(out, powers_reference(prog, x.double(), [t.double()], g.double()), 2**-7)


@needs_triton
def test_gradcheck_and_gradgradcheck_through_the_op():
    """The op's autograd (``family_vjp`` on the same op), by finite differences: through ``TritonPowers`` and on a
    second-order member (whose gradients are third-order members)."""
    from gaunt.products.triton_powers import TritonPowers, triton_powers

    prog = program(1, 1, 1, (1, 2))
    runner = TritonPowers(prog).to(DEVICE)
    x, (t,), g = inputs(prog, 2, 1, True)
    x, t, g = (a.requires_grad_() for a in (x, t, g))
    assert torch.autograd.gradcheck(runner, (x,))
    assert torch.autograd.gradgradcheck(runner, (x,))
    assert torch.autograd.gradcheck(lambda x, t, g: triton_powers(x, [t], g, runner.program_id), (x, t, g))


@needs_triton
def test_a_wrong_kernel_is_detected(monkeypatch):
    """The comparisons are not vacuous: k^d instead of k! / (k - d)! (equal for d <= 1) fails at d = 2."""
    from gaunt.products import triton_powers

    monkeypatch.setattr(triton_powers, "coefficient", lambda k, d: k**d if k >= d else 0)
    with pytest.raises(AssertionError):
        assert_members_match(program(2, 1, 1, (1, 2, 3)), [(2, False)])


@needs_triton
@pytest.mark.parametrize("method", ["grid", "fourier"])
def test_gaunt_many_body_on_triton_equals_torch_with_gradients(method):
    """Output, gradients of A and of the weights, and the forces-like double backward."""
    torch_ = GauntManyBody(irreps(2, 1), irreps(2, 1), 3, num_elements=2, method=method, executor="torch")
    with torch.no_grad():
        torch_.weights.weight.copy_(
            torch.randn(torch_.weights.weight.shape, generator=torch.Generator().manual_seed(1))
        )
    triton_ = GauntManyBody(irreps(2, 1), irreps(2, 1), 3, num_elements=2, method=method, executor="triton")
    triton_.load_state_dict(torch_.state_dict())
    assert triton_.executor == "triton" and "executor=triton" in repr(triton_)
    assert resolve_executor("auto", "cuda", RUNNERS) == "triton"  # what "auto" runs on CUDA tensors
    A = torch.randn(3, torch_.irreps_in.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    species = torch.tensor([0, 1, 1], device=DEVICE)
    results = []
    for m in (torch_.double().to(DEVICE), triton_.double().to(DEVICE)):
        a = A.to(DEVICE).requires_grad_()
        out = m(a, species)
        (forces,) = torch.autograd.grad(out.square().sum(), a, create_graph=True)
        forces.square().sum().backward()
        results.append([t.detach() for t in (out, forces, a.grad, m.weights.weight.grad)])
    for got, expected in zip(results[1], results[0]):
        assert_close_to_scale(got, expected, 1e-10)


@needs_triton
def test_op_registrations_fallbacks_and_bad_inputs():
    """Schema, fake implementation, autograd registration and dispatch (``torch.library.opcheck``) with and without
    tangents and cotangent; forward mode and other dtypes on the torch executor; the input checks."""
    import torch.autograd.forward_ad as fwAD

    from gaunt.products.triton_powers import TritonPowers, run_powers

    prog = program(2, 1, 1, (1, 2))
    runner = TritonPowers(prog).to(DEVICE)
    x, (t,), g = inputs(prog, 3, 1, True)
    x, t, g = (a.requires_grad_() for a in (x, t, g))
    for args in ((x, [], None), (x, [t], g)):
        torch.library.opcheck(torch.ops.gaunt.triton_powers.default, (*args, runner.program_id))
    x, t, g = x.detach(), t.detach(), g.detach()
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(runner(fwAD.make_dual(x, t))).tangent
    assert_close_to_scale(tangent, powers_reference(prog, x, [t]), 1e-12)
    assert runner(x.to(torch.complex128)).dtype == torch.complex128
    with pytest.raises(ValueError, match="g must be"):
        run_powers(runner.program_id, x, [], g[:, :1])
    with pytest.raises(ValueError, match="every tangent must be like x"):
        run_powers(runner.program_id, x, [t[:2]], None)
    with pytest.raises(ValueError, match="x must be"):
        run_powers(runner.program_id, x[:, :-1], [], None)


@pytest.mark.skipif(REASON is not None and "CUDA" not in REASON, reason=f"Triton executor: {REASON}")
def test_kernel_compiles_for_sm90():
    """The compiled path (not the interpreter's): forward, VJP, second and third derivatives, every dtype, through
    ptxas for sm_90 with the GPU's tiles, no GPU needed; float32 and bfloat16 without spills."""
    import gaunt

    script = Path(__file__).with_name("triton_powers_aot.py")
    src = str(Path(gaunt.__file__).resolve().parents[1])  # this checkout's gaunt in the subprocess too
    path = os.pathsep.join(filter(None, [src, str(script.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, str(script), "90"], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["tangents"], r["cotangent"], r["dtype"]) for r in records] == [
        (0, False, "fp32"),
        (0, True, "fp64"),
        (1, True, "bf16"),
        (2, True, "fp32"),
    ]
    assert all(r["shared"] < 100 * 1024 for r in records)
    assert all(r["usage"] is None or "STACK:0 " in r["usage"] for r in records if r["dtype"] != "fp64"), records


def test_without_triton(monkeypatch):
    """Without triton: "auto" keeps torch for the power programs, ``executor="triton"`` raises with the reason."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    with pytest.raises(RuntimeError, match="'triton' was requested but cannot run here: triton is not installed"):
        GauntManyBody(irreps(2, 1), irreps(2, 1), 2, executor="triton")
    assert resolve_executor("auto", "cuda", RUNNERS) == "torch"
