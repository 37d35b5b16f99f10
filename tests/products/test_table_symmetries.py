"""The symmetries of the tables that the fused CPU kernels exploit (``gaunt.products.table_symmetries``): they are
found on the products' own tables, not found on tables without them, and the kernels that use them equal the
torch executor on random tables that have them (so the products' tables are not the only ones tried)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gaunt.products import GridGauntProduct, VectorGauntProduct, cpu_build
from gaunt.products.cpu_executor import HEADER, PROJECTION, SYNTHESIS, FusedProgram, pack
from gaunt.products.program import derivative
from gaunt.products.table_symmetries import theta_reflection, theta_twins
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
