"""Test helpers for the ``gaunt.nn`` layers, offered as fixtures (not imported by name, so that this
``conftest`` never shadows the one of ``tests/products``).

* ``check_equivariant(f, x, irreps_in, irreps_out, tol=None)`` asserts ``f(D_in x) == D_out f(x)`` for a
  random rotation, a random improper element ``-R`` and the inversion ``-I`` (``D`` from
  ``so3.irreps_wigner_d``), with the error measured relative to ``max|f(x)|`` (float64: 1e-12,
  float32: 1e-5 by default), and returns the worst relative error. An all-zero or empty output raises,
  so the check cannot pass vacuously.
* ``features(irreps, *batch, dtype=float64, seed=0)`` a seeded Gaussian ``[*batch, irreps.dim]`` tensor.
"""

from __future__ import annotations

import pytest
import torch

from gaunt.so3 import Irreps, irreps_wigner_d, random_rotation

DEFAULT_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _elements(seed: int) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    r1 = random_rotation(generator=g, dtype=torch.float64)
    r2 = random_rotation(generator=g, dtype=torch.float64)
    return [("rotation", r1), ("improper rotation", -r2), ("inversion", -torch.eye(3, dtype=torch.float64))]


def _act(irreps, rotation: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    d = irreps_wigner_d(Irreps(irreps), rotation).to(dtype=x.dtype, device=x.device)
    return x @ d.transpose(-1, -2)


def _check_equivariant(f, x: torch.Tensor, irreps_in, irreps_out, tol: float | None = None, seed: int = 0) -> float:
    out = f(x)
    scale = float(out.detach().abs().max()) if out.numel() else 0.0
    if not scale > 0.0:
        raise AssertionError("equivariance check would pass vacuously: the output is empty or identically zero")
    tol = DEFAULT_TOL.get(x.dtype, 1e-5) if tol is None else tol
    worst = 0.0
    for name, rotation in _elements(seed):
        lhs, rhs = f(_act(irreps_in, rotation, x)), _act(irreps_out, rotation, out)
        worst = max(worst, float((lhs - rhs).detach().abs().max()) / scale)
        torch.testing.assert_close(
            lhs, rhs, rtol=0.0, atol=tol * scale, msg=lambda m, name=name: f"not equivariant under {name}: {m}"
        )
    return worst


def _features(irreps, *batch: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*batch, Irreps(irreps).dim, generator=g, dtype=torch.float64).to(dtype)


@pytest.fixture
def check_equivariant():
    return _check_equivariant


@pytest.fixture
def features():
    return _features
