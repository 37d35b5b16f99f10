"""Clebsch-Gordan and Gaunt coefficients against sympy's exact values and e3nn."""

from functools import cache

import numpy as np
import pytest
import torch
from e3nn import o3
from sympy.physics import wigner as sw

from gaunt.so3 import clebsch_gordan, gaunt_coefficients, random_rotation, wigner_3j_zero, wigner_d

LMAX = 6
TRIPLES = [(a, b, c) for a in range(LMAX + 1) for b in range(LMAX + 1) for c in range(abs(a - b), min(a + b, LMAX) + 1)]


def _u(l):
    """Test-local change of basis, written independently from the library: real = U complex.

    Our real harmonics carry no Condon-Shortley phase, so (with CS-phased complex Y^m)
    Y_real[+m] = ((-1)^m Y^m + Y^-m)/sqrt2 and Y_real[-m] = ((-1)^m Y^m - Y^-m)/(i sqrt2).
    """
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    u[l, l] = 1
    for m in range(1, l + 1):
        u[l + m, l + m], u[l + m, l - m] = (-1) ** m / np.sqrt(2), 1 / np.sqrt(2)
        u[l - m, l + m], u[l - m, l - m] = (-1) ** m / (1j * np.sqrt(2)), -1 / (1j * np.sqrt(2))
    return u


@cache
def _sympy_complex_cg(l1, l2, l3):
    c = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= l3:
                c[l1 + m1, l2 + m2, l3 + m1 + m2] = float(sw.clebsch_gordan(l1, l2, l3, m1, m2, m1 + m2))
    return c


def _sympy_real_cg(l1, l2, l3):
    c = np.einsum("ai,bj,ck,ijk->abc", _u(l1), _u(l2), _u(l3).conj(), _sympy_complex_cg(l1, l2, l3))
    c = (1j ** (l1 + l2 - l3) * c) / np.sqrt(2 * l3 + 1)
    assert np.abs(c.imag).max() < 1e-14
    return torch.tensor(c.real)


@pytest.mark.parametrize("l1,l2,l3", TRIPLES)
def test_cg_equals_sympy_and_e3nn(l1, l2, l3):
    ours = clebsch_gordan(l1, l2, l3)
    torch.testing.assert_close(ours, _sympy_real_cg(l1, l2, l3), atol=1e-12, rtol=0)
    torch.testing.assert_close(ours, o3.wigner_3j(l1, l2, l3, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("l1,l2,l3", [(a, b, c) for (a, b, c) in TRIPLES if (a + b + c) % 2 == 0])
def test_gaunt_equals_sympy(l1, l2, l3):
    # sympy's complex Gaunt integral int Y1 Y2 Y3 (CS phase), moved to our real basis with the test's U
    g = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m3 = -m1 - m2
            if abs(m3) <= l3:
                g[l1 + m1, l2 + m2, l3 + m3] = float(sw.gaunt(l1, l2, l3, m1, m2, m3))
    real = np.einsum("ai,bj,ck,ijk->abc", _u(l1), _u(l2), _u(l3), g)
    assert np.abs(real.imag).max() < 1e-14
    torch.testing.assert_close(gaunt_coefficients(l1, l2, l3), torch.tensor(real.real), atol=1e-12, rtol=0)


@pytest.mark.parametrize("l1,l2,l3", [(1, 1, 2), (2, 1, 1), (2, 2, 2), (1, 2, 3), (2, 2, 0)])
def test_gaunt_equals_sympy_real_gaunt(l1, l2, l3):
    # sympy's own real harmonics Z differ from ours by (-1)^|m| (they keep the CS phase)
    ours = gaunt_coefficients(l1, l2, l3)
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            for m3 in range(-l3, l3 + 1):
                ref = float(sw.real_gaunt(l1, l2, l3, m1, m2, m3)) * (-1) ** (abs(m1) + abs(m2) + abs(m3))
                assert abs(float(ours[l1 + m1, l2 + m2, l3 + m3]) - ref) < 1e-12


def test_wigner_3j_zero_closed_form():
    for l1, l2, l3 in TRIPLES:
        assert abs(wigner_3j_zero(l1, l2, l3) - float(sw.wigner_3j(l1, l2, l3, 0, 0, 0))) < 1e-14


@pytest.mark.parametrize("l1,l2,l3", [(1, 1, 1), (3, 2, 4), (8, 8, 8), (12, 7, 10), (20, 20, 20)])
def test_invariance_and_norm_large_l(l1, l2, l3):
    c = clebsch_gordan(l1, l2, l3)
    R = random_rotation(generator=torch.Generator().manual_seed(l1 + l2 + l3))
    d1, d2, d3 = (wigner_d(l, R) for l in (l1, l2, l3))
    torch.testing.assert_close(torch.einsum("ai,bj,ck,ijk->abc", d1, d2, d3, c), c, atol=1e-13, rtol=0)
    torch.testing.assert_close(c.norm(), torch.tensor(1.0, dtype=torch.float64), atol=1e-14, rtol=0)
    g = gaunt_coefficients(l1, l2, l3)
    assert ((l1 + l2 + l3) % 2 == 1) == bool(torch.all(g == 0))


def test_selection_rules_and_errors():
    assert torch.all(clebsch_gordan(1, 1, 3) == 0)
    assert clebsch_gordan(2, 3, 4, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="non-negative"):
        clebsch_gordan(-1, 1, 1)
    with pytest.raises(ValueError, match="non-negative"):
        gaunt_coefficients(1, 1, -2)


def test_broken_reference_is_detected():
    # test the tester: a sign flip in one entry must be caught by the comparison used above
    broken = clebsch_gordan(2, 2, 2).clone().flatten()
    broken[broken.abs().argmax()] *= -1  # the largest entry, so the flip cannot hit an exact zero
    broken = broken.reshape(5, 5, 5)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(broken, _sympy_real_cg(2, 2, 2), atol=1e-12, rtol=0)
