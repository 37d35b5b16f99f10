"""The symmetries of the tables that the fused CPU kernels exploit (``gaunt.products.table_symmetries``): they are
found on the products' own tables, not found on tables without them, and the kernels that use them equal the
torch executor on random tables that have them (so the products' tables are not the only ones tried)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gaunt.bench.products import sh_irreps
from gaunt.products import GridGauntProduct, VectorGauntProduct, cpu_build, sphere_programs
from gaunt.products.cpu_executor import HEADER, PROJECTION, SYNTHESIS, FusedProgram, pack
from gaunt.products.executors import cpu_runner
from gaunt.products.program import derivative
from gaunt.products.table_symmetries import phi_classes, theta_reflection, theta_twins
from gaunt.products.torch_executor import TorchProgram

#: the products on the Gauss-Legendre grid (GauntProduct's torus program has uniform rings: no mirror)
PRODUCTS = [
    (GridGauntProduct, ("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e+2x3o")),
    (VectorGauntProduct, ("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x1e+2x2e")),
]


def mirror_firsts(meta: np.ndarray, program) -> list[int]:
    """The packed ``theta_first`` offsets of a program's stages (-1: rings not mirrored)."""
    n_s, n_p = len(program.syntheses), len(program.projections)
    syntheses = [int(meta[HEADER + k * SYNTHESIS + SYNTHESIS - 1]) for k in range(n_s)]
    start = HEADER + n_s * SYNTHESIS
    return syntheses + [int(meta[start + q * PROJECTION + PROJECTION - 1]) for q in range(n_p)]


@pytest.mark.parametrize("cls,irreps", PRODUCTS, ids=[c.__name__ for c, _ in PRODUCTS])
def test_the_products_rings_are_mirrored(cls, irreps):
    """Every stage of the products' programs and derivative programs has mirrored rings; for the harmonics
    themselves (GridGauntProduct), row r (m = r - L) has even tables for the degrees with l + m even:
    ``first[r] = m mod 2`` (the vector product's derivative fields have other parities)."""
    program = cls(*irreps, executor="torch").program
    for p in (program, derivative(program, 0), derivative(program, 1)):
        stages = [(s.theta, 1) for s in p.syntheses] + [(q.theta, 2) for q in p.projections]
        for theta, axis in stages:
            first = theta_reflection(theta, axis)
            assert first is not None
            if cls is GridGauntProduct:
                L = (len(theta) - 1) // 2
                np.testing.assert_array_equal(first, (np.arange(len(theta)) - L) % 2)
        assert min(mirror_firsts(pack(p)[0], p)) >= 0


def test_tables_without_the_mirror_are_not_taken_for_mirrored():
    """Random tables, and a product's table with one ring changed, are not mirrored."""
    program = GridGauntProduct("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", executor="torch").program
    theta = program.syntheses[0].theta.copy()
    assert theta_reflection(theta, 1) is not None
    theta[2, 0, 2] += 1e-6  # row m = 0, first ring, l = 2
    assert theta_reflection(theta, 1) is None
    assert theta_reflection(np.random.default_rng(0).standard_normal((5, 4, 3)), 1) is None


def test_small_tables_are_judged_by_their_own_scale():
    """The tolerance is relative to each column: a row of 1e-13 noise in a product's table, or a whole random
    table at 1e-13, is not taken for symmetric (an absolute floor took them for both even and odd)."""
    rng = np.random.default_rng(4)
    program = GridGauntProduct("0e+1o+2e", "0e+1o+2e", "0e+1o+2e", executor="torch").program
    theta = program.projections[0].theta.copy()
    theta[0] = 1e-13 * rng.standard_normal(theta[0].shape)
    assert theta_reflection(theta, 2) is None
    phi = program.syntheses[0].phi
    assert phi_classes(phi) is not None and phi_classes(1e-13 * rng.standard_normal(phi.shape)) is None
    assert theta_reflection(1e-13 * program.projections[0].theta, 2) is not None  # scale alone changes nothing


def mirrored(table: np.ndarray, axis: int, first: np.ndarray, twin: np.ndarray) -> np.ndarray:
    """``table [R, ...]`` made even in t -> n - 1 - t (the rings, along ``axis``) for the degrees l = first[r]
    mod 2 and odd for the others, with the rows of each twin pair equal."""
    t_axis, l_axis = axis, 3 - axis
    flipped = np.flip(table, t_axis)
    degrees = np.arange(table.shape[l_axis])
    shape = [len(table), 1, 1]
    shape[l_axis] = len(degrees)
    sign = np.where(degrees[None, :] % 2 == first[:, None], 1.0, -1.0).reshape(shape)
    out = table + sign * flipped
    for r, q in enumerate(twin):
        if q > r:
            out[q] = out[r]
    return out


#: n_theta 2, 3 and 4; with degrees up to 2 in the inputs, row m = 0 reads both classes whatever their parity, so
#: the middle ring (n_theta 3) reaches the output
RINGS = [
    (("2x0e+2x1o",) * 3, 2),
    (("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", "3x0e+3x1o"), 3),
    (("3x0e+3x1o+3x2e",) * 3, 4),
    ((sh_irreps(2, 6),) * 3, 10),  # 7 degrees: full register blocks of one class's rows in the projection
]


@pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
@pytest.mark.parametrize("irreps,n_theta", RINGS)
def test_mirrored_theta_stages_equal_the_torch_executor_on_random_tables(irreps, n_theta):
    """Random theta tables with the mirror (each row's parity drawn at random, twins kept) on grids of even and
    odd n_theta (a middle ring where the odd tables vanish): the transform kernel, forward and both derivative
    programs, equals the torch executor, float64."""
    rng = np.random.default_rng(1)
    program = GridGauntProduct(*irreps, executor="torch").program

    def changed_stage(stage, axis):
        first = rng.integers(0, 2, len(stage.theta))
        twin = theta_twins(stage.theta)
        first = np.where((twin >= 0) & (twin < np.arange(len(twin))), first[np.maximum(twin, 0)], first)
        theta = mirrored(rng.standard_normal(stage.theta.shape), axis, first, twin)
        np.testing.assert_array_equal(theta_reflection(theta, axis), first)
        return dataclasses.replace(stage, theta=theta)

    changed = dataclasses.replace(
        program,
        syntheses=tuple(changed_stage(s, 1) for s in program.syntheses),
        projections=tuple(changed_stage(p, 2) for p in program.projections),
    )
    assert program.grid[0] == n_theta
    for p in (changed, derivative(changed, 0), derivative(changed, 1)):
        assert min(mirror_firsts(pack(p)[0], p)) >= 0  # the mirrored kernels run
        x1, x2 = (torch.randn(37, d, dtype=torch.float64) for d in p.dims[:2])
        exact = TorchProgram(p).evaluate(x1, x2)
        out = FusedProgram(p, "transform")(x1, x2)
        torch.testing.assert_close(out, exact, rtol=0, atol=1e-12 * max(1.0, float(exact.abs().max())))


def symmetrized(phi: np.ndarray, reflection: np.ndarray, half_turn: np.ndarray) -> np.ndarray:
    """``phi [n_phi, R]`` made even (+1) or odd (-1) in column r under ``p -> -p`` (``reflection[r]``) and ``p ->
    p + n_phi / 2`` (``half_turn[r]``)."""
    n = len(phi)
    turned = (np.arange(n) + n // 2) % n
    reflected = phi + reflection * phi[(-np.arange(n)) % n]
    return reflected + half_turn * reflected[turned]


@pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
@pytest.mark.parametrize(
    "irreps",
    [
        ("2x0e+2x1o",) * 3,  # n_phi 4
        ("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x2e"),  # 6
        ("3x0e+3x1o+3x2e",) * 3,  # 8
        (sh_irreps(2, 4),) * 3,  # 14: n_phi % 4 == 2 with orbits of four beyond p = 1, a full block of points
        (sh_irreps(2, 6),) * 3,  # 20: the two-point orbit at n_phi / 4 inside the second block
    ],
)
def test_four_class_phi_stages_equal_the_torch_executor_on_random_tables(irreps):
    """Random phi tables with both symmetries (each column's two parities drawn at random) on the products' even
    grids (n_phi 4, 6, 8: with and without the two-point orbit at n_phi / 4): the four-class phi stages, forward
    and both derivative programs, equal the torch executor, float64."""
    rng = np.random.default_rng(2)
    program = GridGauntProduct(*irreps, executor="torch").program
    assert program.grid[1] % 2 == 0

    def changed(phi):
        signs = rng.choice([-1.0, 1.0], size=(2, phi.shape[1]))
        table = symmetrized(rng.standard_normal(phi.shape), *signs)
        order, bounds = phi_classes(table)
        assert len(bounds) == 5  # four classes found
        found = np.repeat(np.arange(4), np.diff(bounds))[np.argsort(order)]  # each column's class
        drawn = 2 * (signs[0] < 0) + (signs[1] < 0)
        nonzero = np.abs(table).max(0) > 1e-12  # (on n_phi = 4 some classes vanish: a zero column is in any)
        np.testing.assert_array_equal(found[nonzero], drawn[nonzero])
        return table

    p0 = dataclasses.replace(
        program,
        syntheses=tuple(dataclasses.replace(s, phi=changed(s.phi)) for s in program.syntheses),
        projections=tuple(dataclasses.replace(p, phi=changed(p.phi.T).T) for p in program.projections),
    )
    for p in (p0, derivative(p0, 0), derivative(p0, 1)):
        x1, x2 = (torch.randn(37, d, dtype=torch.float64) for d in p.dims[:2])
        exact = TorchProgram(p).evaluate(x1, x2)
        scale = max(1.0, float(exact.abs().max()))
        fused = FusedProgram(p, "transform")
        torch.testing.assert_close(fused(x1, x2), exact, rtol=0, atol=1e-12 * scale)
        single = fused(x1.float(), x2.float()).double()  # float32 (mul 2: the general gathers)
        torch.testing.assert_close(single, exact, rtol=0, atol=1e-5 * scale)


@pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")
def test_an_odd_number_of_azimuths_runs_the_two_class_phi_stages(monkeypatch):
    """On a grid of odd n_phi (the least exact one, as before the products took an even one) the phi tables
    have the reflection only: two classes, and the product equals the torch executor, value and gradients."""
    monkeypatch.setattr(sphere_programs, "even_azimuths", lambda degree: degree + 1)
    irreps = "4x0e+4x1o+4x2e"
    fused = GridGauntProduct(irreps, irreps, irreps, executor="cpu_fused", weight_init="randn").double()
    runner = cpu_runner(fused.frame.runner)
    runner.use_kernel("transform")  # ("auto" takes the direct kernel at this size)
    assert fused.program.grid == (4, 7)
    assert len(phi_classes(fused.program.syntheses[0].phi)[1]) == 3
    reference = GridGauntProduct(irreps, irreps, irreps, executor="torch").double()
    reference.load_state_dict(fused.state_dict())
    assert reference.program.grid == (4, 7)
    g = torch.Generator().manual_seed(3)
    x1, x2 = (torch.randn(9, fused.irreps_in1.dim, generator=g, dtype=torch.float64, requires_grad=True) for _ in "ab")
    cotangent = torch.randn(9, fused.irreps_out.dim, generator=g, dtype=torch.float64)
    results = []
    for product in (fused, reference):
        out = product(x1, x2)
        results.append([out, *torch.autograd.grad(out, (x1, x2), cotangent)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))
    fused_ops = [m for m in fused.modules() if isinstance(m, FusedProgram)]
    assert fused_ops and all(m.kernel == "transform" for m in fused_ops)
