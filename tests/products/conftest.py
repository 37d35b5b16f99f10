"""Shared test helpers for every tensor product (import them: ``from conftest import assert_equivariant``,
or use the fixtures of the same name).

* ``random_inputs(product, batch, dtype)`` -> ``(x1, x2, weight)`` matching the product's irreps and its
  weight mode (``weight`` is ``None`` for internal weights, ``[weight_numel]`` for shared external
  weights, ``[*batch, weight_numel]`` for per-sample weights).
* ``assert_equivariant(product, x1, x2, weight)`` checks ``f(D1 x1, D2 x2) == D_out f(x1, x2)`` for a
  random proper rotation, a random improper element ``-R`` and the pure inversion ``-I``; the error
  is measured relative to the output scale (float64: 1e-12, float32: 1e-5 by default). It refuses to
  pass vacuously: an all-zero output raises ``AssertionError``.
* ``assert_matches_descriptor(product, x1, x2, weight)`` checks the product against the plain-einsum
  oracle ``dense_product(product.descriptor(), x1, x2, path_weights)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from gaunt.so3 import irreps_wigner_d, random_rotation

DEFAULT_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def random_inputs(
    product: torch.nn.Module,
    batch: Sequence[int] = (4,),
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gaussian ``x1: [*batch, in1.dim]``, ``x2: [*batch, in2.dim]`` and a weight fitting the product."""
    g = torch.Generator().manual_seed(seed)
    batch = tuple(batch)
    x1 = torch.randn(*batch, product.irreps_in1.dim, generator=g, dtype=dtype).to(device)
    x2 = torch.randn(*batch, product.irreps_in2.dim, generator=g, dtype=dtype).to(device)
    n = product.weight_numel
    if product.internal_weights or n == 0:
        weight = None
    elif product.shared_weights:
        weight = torch.randn(n, generator=g, dtype=dtype).to(device)
    else:
        weight = torch.randn(*batch, n, generator=g, dtype=dtype).to(device)
    return x1, x2, weight


def o3_elements(seed: int = 0, dtype: torch.dtype = torch.float64) -> list[tuple[str, torch.Tensor]]:
    """A random rotation R, a random improper element -R' and the inversion -I (all [3, 3])."""
    g = torch.Generator().manual_seed(seed)
    r1 = random_rotation(generator=g, dtype=torch.float64)
    r2 = random_rotation(generator=g, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    return [("rotation", r1.to(dtype)), ("improper rotation", (-r2).to(dtype)), ("inversion", (-eye).to(dtype))]


def _apply(irreps, rotation: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x -> D(R) x on the last dimension (D built in float64, then cast to x's dtype)."""
    d = irreps_wigner_d(irreps, rotation.to(torch.float64)).to(dtype=x.dtype, device=x.device)
    return x @ d.transpose(-1, -2)


def assert_equivariant(
    product: torch.nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor,
    weight: torch.Tensor | None = None,
    rtol: float = 0.0,
    atol: float | None = None,
    seed: int = 0,
    irreps_in1=None,
    irreps_in2=None,
    irreps_out=None,
) -> float:
    """Assert ``product(D1 x1, D2 x2, w) == D_out product(x1, x2, w)`` for rotation, improper rotation
    and inversion; return the worst error relative to ``max|output|``.

    ``atol`` defaults to ``DEFAULT_TOL[dtype] * max|output|``. Irreps default to the product's
    ``irreps_in1/irreps_in2/irreps_out`` attributes (pass them for any other callable).
    """
    irreps_in1 = product.irreps_in1 if irreps_in1 is None else irreps_in1
    irreps_in2 = product.irreps_in2 if irreps_in2 is None else irreps_in2
    irreps_out = product.irreps_out if irreps_out is None else irreps_out
    out = product(x1, x2, weight)
    scale = float(out.detach().abs().max()) if out.numel() else 0.0
    if not scale > 0.0:
        raise AssertionError("equivariance check would pass vacuously: the output is empty or identically zero")
    if atol is None:
        atol = DEFAULT_TOL.get(x1.dtype, 1e-5) * scale
    worst = 0.0
    for name, rotation in o3_elements(seed):
        lhs = product(_apply(irreps_in1, rotation, x1), _apply(irreps_in2, rotation, x2), weight)
        rhs = _apply(irreps_out, rotation, out)
        worst = max(worst, float((lhs - rhs).detach().abs().max()) / scale)
        torch.testing.assert_close(
            lhs, rhs, rtol=rtol, atol=atol, msg=lambda m, name=name: f"not equivariant under {name}: {m}"
        )
    return worst


def assert_matches_descriptor(
    product: torch.nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor,
    weight: torch.Tensor | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-10,
) -> None:
    """``product(x1, x2, w) == dense_product(product.descriptor(), x1, x2, path_weights(w))``.

    ``path_weights`` is the product's map to per-path weights (``TensorProduct.path_weights``: the
    identity by default, the internal parameter when ``weight`` is None).
    """
    from gaunt.products.descriptor import dense_product

    out = product(x1, x2, weight)
    w = product.path_weights(weight)
    expected = dense_product(product.descriptor(), x1, x2, w)
    torch.testing.assert_close(out, expected, rtol=rtol, atol=atol)


@pytest.fixture(name="assert_equivariant")
def _assert_equivariant_fixture():
    return assert_equivariant


@pytest.fixture(name="random_inputs")
def _random_inputs_fixture():
    return random_inputs


@pytest.fixture(name="assert_matches_descriptor")
def _assert_matches_descriptor_fixture():
    return assert_matches_descriptor


def assert_blocked_matches_unblocked(tp, inputs, expected) -> None:
    """Blocked execution (``chunk_elements``: blocks of 2 samples, uneven last one) gives the values and the
    gradients of unblocked execution, and both equal ``expected``."""
    x1, x2, w = inputs
    tp.chunk_elements = 2 * tp.mul * tp._grid_points
    assert tp._chunk_rows() == 2
    torch.testing.assert_close(tp(x1, x2, w), expected, rtol=1e-10, atol=1e-10)
    x1.requires_grad_()
    tp(x1, x2, w).square().sum().backward()
    blocked_grad, x1.grad = x1.grad, None
    tp.chunk_elements = None
    torch.testing.assert_close(tp(x1, x2, w), expected, rtol=1e-10, atol=1e-10)
    tp(x1, x2, w).square().sum().backward()
    torch.testing.assert_close(blocked_grad, x1.grad, rtol=1e-10, atol=1e-10)
