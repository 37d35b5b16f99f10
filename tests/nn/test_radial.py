"""gaunt.nn.radial: Bessel basis and polynomial cutoff against closed forms (values, r -> 0 limit,
orthonormality, smoothness at r_max), the radial MLP, invariance, gradients, batching, errors, compile."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from gaunt.nn import BesselBasis, PolynomialCutoff, RadialMLP
from gaunt.so3 import random_rotation

R_MAX = 5.0


def test_bessel_closed_form_and_limit_at_zero() -> None:
    basis = BesselBasis(R_MAX, num_basis=8)
    r = torch.linspace(0.01, 1.5 * R_MAX, 101, dtype=torch.float64)
    n = torch.arange(1, 9, dtype=torch.float64)
    expected = math.sqrt(2 / R_MAX) * torch.sin(n * math.pi * r[:, None] / R_MAX) / r[:, None]
    out = basis(r)
    assert out.shape == (101, 8) and out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)
    limit = math.sqrt(2 / R_MAX) * n * math.pi / R_MAX
    torch.testing.assert_close(basis(torch.zeros(1, dtype=torch.float64))[0], limit, rtol=1e-15, atol=0)
    torch.testing.assert_close(basis(torch.full((1,), 1e-9, dtype=torch.float64))[0], limit, rtol=1e-12, atol=0)


def test_bessel_orthonormal_with_weight_r_squared() -> None:
    """integral_0^r_max e_n(r) e_m(r) r^2 dr = delta_nm (Gauss-Legendre, 200 nodes: exact to rounding)."""
    nodes, weights = np.polynomial.legendre.leggauss(200)
    r = torch.as_tensor((nodes + 1) * R_MAX / 2)
    w = torch.as_tensor(weights * R_MAX / 2)
    e = BesselBasis(R_MAX, num_basis=6)(r)
    gram = torch.einsum("g,gn,gm->nm", w * r * r, e, e)
    torch.testing.assert_close(gram, torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-12)


def test_bessel_gradients_finite_near_zero_and_trainable() -> None:
    basis = BesselBasis(R_MAX, num_basis=4)
    r = torch.tensor([0.0, 1e-7, 0.3, 2.0, 4.9], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(basis(r).sum(), r)
    assert torch.isfinite(grad).all() and grad[0] == 0.0  # e_n is even in r: zero slope at 0
    assert torch.autograd.gradcheck(basis, (r.detach().clone().requires_grad_(),))
    assert torch.autograd.gradgradcheck(basis, (r.detach().clone().requires_grad_(),))
    trainable = BesselBasis(R_MAX, num_basis=4, trainable=True).double()
    assert [name for name, _ in trainable.named_parameters()] == ["frequencies"]
    trainable(r.detach()).pow(2).sum().backward()
    assert torch.isfinite(trainable.frequencies.grad).all() and trainable.frequencies.grad.abs().sum() > 0
    assert not list(basis.parameters())


def _cutoff_sympy(p: int):
    x = sp.symbols("x")
    u = (
        1
        - sp.Rational((p + 1) * (p + 2), 2) * x**p
        + p * (p + 2) * x ** (p + 1)
        - sp.Rational(p * (p + 1), 2) * x ** (p + 2)
    )
    return x, u


@pytest.mark.parametrize("p", [2, 6, 9])
def test_cutoff_closed_form_and_zero_beyond(p) -> None:
    x, u = _cutoff_sympy(p)
    f = sp.lambdify(x, u, "numpy")
    cutoff = PolynomialCutoff(R_MAX, p=p)
    r = torch.linspace(0.0, 2 * R_MAX, 201, dtype=torch.float64)
    expected = torch.where(r < R_MAX, torch.as_tensor(f((r / R_MAX).numpy())), torch.zeros_like(r))
    torch.testing.assert_close(cutoff(r), expected, rtol=0, atol=1e-13)
    assert cutoff(torch.zeros(1, dtype=torch.float64)).item() == 1.0
    assert (cutoff(r[r >= R_MAX]) == 0).all()


@pytest.mark.parametrize("p", [2, 6])
def test_cutoff_smooth_to_second_order_at_r_max(p) -> None:
    """u, u', u'' -> 0 from the left (as h^3, h^2, h) and are exactly 0 at and beyond r_max; u''' jumps."""
    cutoff = PolynomialCutoff(R_MAX, p=p)

    def derivatives(r0: float) -> list[float]:
        r = torch.tensor(r0, dtype=torch.float64, requires_grad=True)
        out, values = cutoff(r), []
        for _ in range(4):
            values.append(float(out.detach()))
            (out,) = torch.autograd.grad(out, r, create_graph=True) if out.requires_grad else (torch.zeros(()),)
        return values

    for h in (1e-2, 1e-3):
        u0, u1, u2, u3 = derivatives(R_MAX * (1 - h))
        q1 = p * (p + 1) * (p + 2) / 6  # u = -(x - 1)^3 q(x)
        assert abs(u0) <= 2 * q1 * h**3 and abs(u1) <= 6 * q1 * h**2 / R_MAX and abs(u2) <= 12 * q1 * h / R_MAX**2
        assert abs(u3 + 6 * q1 / R_MAX**3) <= 0.2 * 6 * q1 / R_MAX**3  # third derivative ~ -p(p+1)(p+2)/r_max^3
    for r0 in (R_MAX, R_MAX * 1.5):
        assert derivatives(r0) == [0.0, 0.0, 0.0, 0.0]
    _, u = _cutoff_sympy(p)
    assert float(sp.diff(u, sp.symbols("x"), 3).subs(sp.symbols("x"), 1)) == -p * (p + 1) * (p + 2)


def test_cutoff_gradcheck_and_gradgradcheck() -> None:
    cutoff = PolynomialCutoff(R_MAX, p=6)
    r = torch.tensor([0.0, 0.5, 2.5, 4.99, 6.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cutoff, (r,))
    assert torch.autograd.gradgradcheck(cutoff, (r,))


def test_radial_mlp_structure_gradients_and_errors() -> None:
    torch.manual_seed(0)
    mlp = RadialMLP(8, [16, 16], 5).double()
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 16), (16, 5)]
    assert sum(isinstance(m, torch.nn.SiLU) for m in mlp.modules()) == 2  # none after the last layer
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    manual = x
    for i, lin in enumerate(linears):
        manual = lin(manual) if i == len(linears) - 1 else torch.nn.functional.silu(lin(manual))
    torch.testing.assert_close(mlp(x), manual, rtol=1e-14, atol=1e-14)
    assert mlp(x[:0]).shape == (0, 3, 5)
    small = RadialMLP(3, [4], 2, activation=torch.tanh, bias=False).double()
    xs = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (xs,)) and torch.autograd.gradgradcheck(small, (xs,))
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 8\]"):
        mlp(torch.zeros(3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="positive integer"):
        RadialMLP(8, [0], 5)


def test_radial_pipeline_is_o3_invariant_and_batched() -> None:
    """Edge weights from |r_ij| do not change under rotations, improper rotations or inversion."""
    torch.manual_seed(1)
    basis, cutoff, mlp = BesselBasis(R_MAX, 8), PolynomialCutoff(R_MAX), RadialMLP(8, [16], 4).double()
    weights = lambda v: mlp(basis(v.norm(dim=-1)) * cutoff(v.norm(dim=-1))[..., None])  # noqa: E731
    v = 2.0 * torch.randn(2, 5, 3, dtype=torch.float64)
    out = weights(v)
    assert out.shape == (2, 5, 4) and out.abs().max() > 0
    g = torch.Generator().manual_seed(2)
    for rotation in (random_rotation(generator=g), -random_rotation(generator=g), -torch.eye(3, dtype=torch.float64)):
        torch.testing.assert_close(weights(v @ rotation.T), out, rtol=0, atol=1e-12 * float(out.detach().abs().max()))
    assert weights(v[:0]).shape == (0, 5, 4)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="r_max must be > 0"):
        BesselBasis(0.0)
    with pytest.raises(ValueError, match="num_basis must be a positive integer"):
        BesselBasis(1.0, num_basis=0)
    with pytest.raises(ValueError, match="p must be a positive integer"):
        PolynomialCutoff(1.0, p=0)
    with pytest.raises(TypeError, match="floating point"):
        BesselBasis(1.0)(torch.arange(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        PolynomialCutoff(1.0)([0.5])


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_matches_eager(backend) -> None:
    torch.manual_seed(0)
    model = torch.nn.ModuleDict(
        {"b": BesselBasis(R_MAX, 6), "c": PolynomialCutoff(R_MAX), "m": RadialMLP(6, [8], 3)}
    ).double()
    f = lambda r: model["m"](model["b"](r) * model["c"](r)[..., None])  # noqa: E731
    r = torch.tensor([0.0, 0.7, 3.0, 4.999, 7.0], dtype=torch.float64)
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(r), f(r), rtol=1e-12, atol=1e-12)
