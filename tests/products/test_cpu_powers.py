"""The power programs' derivative family (``power_family``) and its fused CPU kernel (``cpu_powers``): the family's
algebra against autograd of ``TorchPowers``, the fused op against the reference on every member (grid and torus
programs, L = 1..3, correlation 1..3, general and strided gathers), gradcheck and gradgradcheck through the op,
``torch.compile``, threads, the fallbacks and the input checks."""

from __future__ import annotations

import pytest
import torch

from gaunt.products import cpu_build, power_family
from gaunt.products.power_family import family_vjp, powers_reference
from gaunt.products.powers import TorchPowers, power_program
from gaunt.products.sphere_irreps import parse_spherical_irreps
from gaunt.so3 import Irreps


def sphere(mul: int, lmax: int, sign: int = 1):
    irreps = Irreps([(mul, (l, sign * (-1) ** l)) for l in range(lmax + 1)])
    return parse_spherical_irreps(irreps, "irreps", "test")


def program(mul: int, L: int, L_out: int, powers, kind: str = "grid", sign: int = 1):
    return power_program(sphere(mul, L, sign), sphere(mul, L_out, sign ** powers[0]), powers, kind)


def inputs(prog, n: int, tangents: int, cotangent: bool, seed: int = 0, dtype=torch.float64):
    """``x``, ``tangents`` tangents like x, and a cotangent ``[n, K, dim_out]`` (or None)."""
    gen = torch.Generator().manual_seed(seed)
    dim_in, shape_g = int(prog.synthesis.index.max()) + 1, (n, len(prog.powers), len(prog.projection.read))
    x, *ts = (torch.randn(n, dim_in, generator=gen, dtype=dtype) for _ in range(1 + tangents))
    return x, ts, torch.randn(shape_g, generator=gen, dtype=dtype) if cotangent else None


#: (tangents, with a cotangent): forward, JVP, VJP and the second and third derivatives that autograd reaches
MEMBERS = [(0, False), (1, False), (2, False), (0, True), (1, True), (2, True)]


def autograd_member(runner: TorchPowers, x, ts, g):
    """``powers(x, ts, g)`` by autograd of the torch executor: JVPs in the directions ``ts`` (forward mode), then
    the VJP with ``g``; differentiable in x, ts and g."""

    def derivative(f, t):
        return lambda y: torch.func.jvp(f, (y,), (t,))[1]

    f = runner
    for t in ts:
        f = derivative(f, t)
    if g is None:
        return f(x)
    x = x if x.requires_grad else x.detach().requires_grad_()
    return torch.autograd.grad(f(x), x, g, create_graph=True)[0]


# ----------------------------------------------------------------------------- the family (no kernel involved)
@pytest.mark.parametrize("kind", ["grid", "torus"])
@pytest.mark.parametrize("tangents, cotangent", MEMBERS)
def test_reference_members_are_the_derivatives_of_torch_powers(kind, tangents, cotangent):
    prog = program(2, 2, 1, (1, 2, 3), kind)
    x, ts, g = inputs(prog, 3, tangents, cotangent)
    exact = autograd_member(TorchPowers(prog), x, ts, g)
    assert exact.abs().max() > 1e-3
    torch.testing.assert_close(powers_reference(prog, x, ts, g), exact, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tangents, cotangent", MEMBERS[:5])
def test_family_vjp_is_autograd_of_torch_powers(tangents, cotangent):
    """The gradients of every member by the family's rule (members again) equal autograd's."""
    prog = program(2, 2, 2, (1, 2, 3), "grid")
    x, ts, g = inputs(prog, 3, tangents, cotangent)
    leaves = [x, *ts] + ([g] if cotangent else [])
    for leaf in leaves:
        leaf.requires_grad_()
    out = autograd_member(TorchPowers(prog), x, ts, g)
    cotangent_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    expected = torch.autograd.grad(out, leaves, cotangent_out)
    member = lambda x, ts, g: powers_reference(prog, x, ts, g)
    detached = [leaf.detach() for leaf in leaves]
    g_in = detached[-1] if cotangent else None
    grad_x, grad_ts, grad_g = family_vjp(member, detached[0], detached[1 : 1 + tangents], g_in, cotangent_out)
    got = [grad_x, *grad_ts] + ([grad_g] if cotangent else [])
    for a, b in zip(got, expected):
        assert b.abs().max() > 1e-3
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_a_wrong_coefficient_is_detected(monkeypatch):
    """The comparison above is not vacuous: k^d instead of k!/(k-d)! (equal for d <= 1) fails at d = 2."""
    prog = program(2, 2, 1, (1, 2, 3))
    x, ts, g = inputs(prog, 3, 1, True)
    exact = autograd_member(TorchPowers(prog), x, ts, g)
    monkeypatch.setattr(power_family, "coefficient", lambda k, d: k**d if k >= d else 0)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(powers_reference(prog, x, ts, g), exact, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- the fused kernel
fused = pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")


def fused_runner(prog):
    from gaunt.products.cpu_powers import FusedPowers

    return FusedPowers(prog)


def assert_members_match(prog, runner, n: int, members=MEMBERS + [(3, True)], seed: int = 0):
    """The fused op equals the reference on ``members``, in float64 (1e-12 relative) and float32 (1e-5)."""
    from gaunt.products.cpu_powers import cpu_powers

    for tangents, cotangent in members:
        x, ts, g = inputs(prog, n, tangents, cotangent, seed)
        exact = powers_reference(prog, x, ts, g)
        scale = float(exact.abs().max()) if exact.numel() else 1.0
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            cast = [t.to(dtype) for t in ts]
            out = cpu_powers(x.to(dtype), cast, None if g is None else g.to(dtype), runner.program_id)
            assert out.dtype == dtype and out.shape == exact.shape
            torch.testing.assert_close(out.double(), exact, rtol=0, atol=tol * scale)


@fused
@pytest.mark.parametrize("kind", ["grid", "torus"])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("nu", [1, 2, 3])
def test_fused_equals_the_reference_and_torch_powers(kind, L, nu):
    prog = program(3, L, min(L, 2), tuple(range(1, nu + 1)), kind)
    runner = fused_runner(prog)
    assert_members_match(prog, runner, 5)
    x, _, _ = inputs(prog, 5, 0, False, seed=1)
    torch.testing.assert_close(runner(x), TorchPowers(prog)(x), rtol=0, atol=1e-12 * float(runner(x).abs().max()))
    empty = runner(x[:0])
    assert empty.shape == (0, len(prog.powers), len(prog.projection.read))


@fused
@pytest.mark.parametrize("mul, powers, sign", [(16, (1, 2, 3), 1), (32, (1, 3), -1), (16, (2, 4), 1)])
def test_fused_on_strided_tiles_and_sparse_powers(mul, powers, sign):
    """mul 16 and 32: whole tiles of one sample (strided gathers); powers with gaps, terms with k < d."""
    prog = program(mul, 2, 2, powers, "grid", sign)
    assert_members_match(prog, fused_runner(prog), 3, MEMBERS + [(3, False), (4, True)])


@fused
def test_gradcheck_and_gradgradcheck_through_the_op():
    from gaunt.products.cpu_powers import cpu_powers

    prog = program(2, 1, 1, (1, 2, 3))
    runner = fused_runner(prog)
    x, (t,), g = inputs(prog, 3, 1, True)
    x, t, g = (a.requires_grad_() for a in (x, t, g))
    assert torch.autograd.gradcheck(runner, (x,))
    assert torch.autograd.gradgradcheck(runner, (x,))
    member = lambda x, t, g: cpu_powers(x, [t], g, runner.program_id)  # a third derivative: its grads are 4th
    assert torch.autograd.gradcheck(member, (x, t, g))
    assert torch.autograd.gradgradcheck(member, (x, t, g))


@fused
def test_compile_fullgraph_equals_eager():
    prog = program(2, 2, 1, (1, 2, 3))
    runner = fused_runner(prog)
    x, _, _ = inputs(prog, 4, 0, False)

    def energy_and_forces(x):
        x = x.detach().requires_grad_()
        energy = runner(x).square().sum()
        return energy, torch.autograd.grad(energy, x)[0]

    compiled = torch.compile(lambda x: runner(x).square().sum(), fullgraph=True)
    torch.testing.assert_close(compiled(x), runner(x).square().sum(), rtol=1e-12, atol=1e-12)
    xc = x.clone().requires_grad_()
    compiled(xc).backward()
    torch.testing.assert_close(xc.grad, energy_and_forces(x)[1], rtol=1e-12, atol=1e-12)


@fused
def test_threads_give_the_same_result():
    prog = program(16, 2, 1, (1, 2, 3))
    runner = fused_runner(prog)
    x, (t,), g = inputs(prog, 33, 1, True)
    threads = torch.get_num_threads()
    from gaunt.products.cpu_powers import cpu_powers

    try:
        torch.set_num_threads(1)
        one = [runner(x), cpu_powers(x, [t], g, runner.program_id)]
        torch.set_num_threads(2)
        two = [runner(x), cpu_powers(x, [t], g, runner.program_id)]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # threads split whole samples: same arithmetic


@fused
def test_other_dtypes_and_forward_mode_run_on_the_torch_executor():
    import torch.autograd.forward_ad as fwAD

    prog = program(2, 1, 1, (1, 2))
    runner = fused_runner(prog)
    x, (t,), _ = inputs(prog, 3, 1, False)
    torch.testing.assert_close(runner(x.bfloat16()).double(), runner(x), rtol=0.05, atol=0.05)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(runner(fwAD.make_dual(x, t))).tangent
    torch.testing.assert_close(tangent, powers_reference(prog, x, [t]), rtol=1e-12, atol=1e-12)


@fused
def test_bad_inputs_raise():
    from gaunt.products.cpu_powers import cpu_powers, pack

    prog = program(2, 1, 1, (1, 2))
    runner = fused_runner(prog)
    x, (t,), g = inputs(prog, 3, 1, True)
    with pytest.raises(RuntimeError, match="g must be"):
        cpu_powers(x, [], g[:, :1], runner.program_id)
    with pytest.raises(RuntimeError, match="every tangent must be like x"):
        cpu_powers(x, [t[:2]], None, runner.program_id)
    with pytest.raises(RuntimeError, match="columns"):
        cpu_powers(x[:, :-1], [], None, runner.program_id)
    with pytest.raises(ValueError, match="increasing"):
        pack(program(2, 1, 1, (2, 1)))
