"""gaunt.nn.EquivariantLayerNorm: the documented formula (loop reference), torch layer_norm on
scalars, output statistics, partition independence, equivariance, gradients, batching, errors,
torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gaunt.nn import EquivariantLayerNorm
from gaunt.so3 import Irreps

IRREPS = "3x0e+2x1o+1x0o+2x0e+1x2e+3x1o+1x3o"


def _reference(x: torch.Tensor, irreps, weight, bias, eps: float) -> torch.Tensor:
    """Plain loops over irrep types and channels, straight from the docstring formula."""
    irreps = Irreps(irreps)
    out = torch.empty_like(x)
    channel, blocks = 0, []  # (ir, slice of x, first channel index) per channel
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        for u in range(mul):
            blocks.append((ir, slice(sl.start + u * ir.dim, sl.start + (u + 1) * ir.dim), channel))
            channel += 1
    scalar_rank = 0
    for ir in dict.fromkeys(b[0] for b in blocks):
        mine = [b for b in blocks if b[0] == ir]
        values = torch.stack([x[..., sl] for _, sl, _ in mine], dim=-2)  # [..., M, 2l+1]
        if ir == (0, 1):
            mu = values.mean(dim=(-2, -1), keepdim=True)
            var = ((values - mu) ** 2).mean(dim=(-2, -1), keepdim=True)
            for _, sl, c in mine:
                out[..., sl] = (x[..., sl] - mu[..., 0, :]) / torch.sqrt(var[..., 0, :] + eps) * weight[c] + bias[
                    scalar_rank
                ]
                scalar_rank += 1
        else:
            s = (values**2).sum(dim=(-2, -1), keepdim=True) / (len(mine) * ir.dim)
            for _, sl, c in mine:
                out[..., sl] = x[..., sl] / torch.sqrt(s[..., 0, :] + eps) * weight[c]
    return out


def _random_affine(norm: EquivariantLayerNorm) -> EquivariantLayerNorm:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=g))
        norm.bias.copy_(torch.randn(norm.bias.shape, generator=g))
    return norm


def test_matches_loop_reference(features) -> None:
    norm = _random_affine(EquivariantLayerNorm(IRREPS, eps=1e-3).double())
    x = features(IRREPS, 4, 2)
    torch.testing.assert_close(norm(x), _reference(x, IRREPS, norm.weight, norm.bias, 1e-3), rtol=1e-12, atol=1e-12)


def test_scalars_are_torch_layer_norm(features) -> None:
    norm = _random_affine(EquivariantLayerNorm("7x0e").double())
    x = features("7x0e", 5)
    expected = F.layer_norm(x, (7,), norm.weight, norm.bias, eps=1e-5)
    torch.testing.assert_close(norm(x), expected, rtol=1e-13, atol=1e-13)


def test_output_statistics(features) -> None:
    norm = EquivariantLayerNorm(IRREPS, eps=1e-12).double()
    x = 3.0 * features(IRREPS, 6) + 1.0
    y = norm(x)
    scalars = torch.cat([y[:, 0:3], y[:, 10:12]], dim=-1)  # the 5 0e channels
    torch.testing.assert_close(scalars.mean(-1), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(scalars.var(-1, unbiased=False), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-10)
    vectors = torch.cat([y[:, 3:9], y[:, 17:26]], dim=-1)  # the 5 1o channels: RMS component 1
    torch.testing.assert_close(vectors.pow(2).mean(-1), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-10)


def test_partition_independence(features) -> None:
    """Blocks of one type are normalised together: '2x1o+3x1o' acts like '5x1o'."""
    split, merged = EquivariantLayerNorm("2x0e+2x1o+3x1o").double(), EquivariantLayerNorm("2x0e+5x1o").double()
    x = features("2x0e+5x1o", 3)
    torch.testing.assert_close(split(x), merged(x), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equivariance(dtype, features, check_equivariant) -> None:
    norm = _random_affine(EquivariantLayerNorm(IRREPS)).to(dtype)
    check_equivariant(norm, features(IRREPS, 5, dtype=dtype), IRREPS, IRREPS)


def test_mean_subtraction_on_vectors_would_break_equivariance(features, check_equivariant) -> None:
    """The check is not vacuous: subtracting the channel mean of 1o vectors and adding a bias is not equivariant."""
    norm = EquivariantLayerNorm("4x1o").double()
    broken = lambda x: norm(x - x.reshape(-1, 4, 3).mean(1).repeat(1, 4)) + 0.1  # noqa: E731
    with pytest.raises(AssertionError, match="not equivariant"):
        check_equivariant(broken, features("4x1o", 3), "4x1o", "4x1o")


def test_gradients_zero_input_batch_and_empty(features) -> None:
    norm = _random_affine(EquivariantLayerNorm("2x0e+2x1o+1x2e").double())
    x = features(norm.irreps_in, 2).requires_grad_()
    assert torch.autograd.gradcheck(norm, (x,))
    assert torch.autograd.gradgradcheck(norm, (x,))
    zero = torch.zeros(1, norm.irreps_in.dim, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(norm(zero).pow(2).sum() + norm(zero).sum(), zero)
    assert torch.isfinite(grad).all()
    xb = features(norm.irreps_in, 2, 3)
    torch.testing.assert_close(norm(xb), norm(xb.reshape(6, -1)).reshape(2, 3, -1), rtol=1e-14, atol=1e-14)
    assert norm(xb[:0]).shape == (0, 3, norm.irreps_in.dim)
    plain = EquivariantLayerNorm("2x0e+2x1o", affine=False)
    assert plain.weight is None and len(list(plain.parameters())) == 0


def test_bad_inputs_raise() -> None:
    norm = EquivariantLayerNorm("2x0e+1x1o")
    with pytest.raises(ValueError, match="last dimension of 5"):
        norm(torch.zeros(3, 6))
    with pytest.raises(TypeError, match="floating point"):
        norm(torch.zeros(3, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match="eps must be > 0"):
        EquivariantLayerNorm("1o", eps=0.0)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_matches_eager(backend, features) -> None:
    norm = _random_affine(EquivariantLayerNorm(IRREPS).double())
    x = features(IRREPS, 4)
    compiled = torch.compile(norm, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x), norm(x), rtol=1e-12, atol=1e-12)
