"""GauntProduct (2D Fourier / FFT): against an independent Gaunt einsum, the descriptor oracle and the
CG product, then equivariance, gradients, batching, errors, torch.compile and float32."""
from __future__ import annotations

import pytest
import torch
from conftest import assert_blocked_matches_unblocked, assert_equivariant, assert_matches_descriptor, random_inputs

from gaunt.products.cg import CGProduct
from gaunt.products.gaunt_fourier import TRANSFORMS, GauntProduct
from gaunt.so3 import Irreps, clebsch_gordan, gaunt_coefficients

F64 = torch.float64


def spherical(mul: int, degrees, sign: int = 1) -> str:
    """``mul x l`` blocks with parity sign (-1)^l, e.g. spherical(3, range(3)) = '3x0e+3x1o+3x2e'."""
    return "+".join(f"{mul}x{l}{'e' if sign * (-1) ** l == 1 else 'o'}" for l in degrees)


# (irreps_in1, irreps_in2, irreps_out): L up to 6, L1 != L2 != L3, mul 1 and 3, x2 broadcast (mul 1),
# pseudo inputs (sign -1), missing degrees, output degrees beyond L1 + L2
CASES = [
    (spherical(3, range(7)), spherical(3, range(7)), spherical(3, range(7))),
    (spherical(1, range(3)), spherical(1, range(6)), spherical(1, range(5))),
    (spherical(3, range(4)), spherical(1, range(7)), spherical(3, range(6))),
    (spherical(3, range(6)), spherical(1, range(2)), spherical(3, range(3))),
    (spherical(3, [1, 3], -1), spherical(3, [0, 2]), spherical(3, [1, 2, 5], -1)),
    (spherical(2, range(2), -1), spherical(1, range(3), -1), spherical(2, range(4))),
    (spherical(2, range(2)), spherical(2, range(2)), spherical(2, range(6))),  # L3 > L1 + L2: degrees 3..5 are zero
]


def gaunt_reference(irreps1, irreps2, irreps_out, x1, x2, weight) -> torch.Tensor:
    """z[u, l3] = w3[u, l3] sum_{l1 l2} w1[u, l1] w2[u, l2] G[l1, l2, l3] x1[u, l1] x2[u|0, l2], by einsum."""
    irreps1, irreps2, irreps_out = Irreps(irreps1), Irreps(irreps2), Irreps(irreps_out)
    mul = irreps1[0].mul
    sizes = [mul * (irreps.lmax + 1) for irreps in (irreps1, irreps2, irreps_out)]
    w1, w2, w3 = (w.unflatten(-1, (mul, -1)) for w in weight.split(sizes, dim=-1))
    batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1], weight.shape[:-1])
    blocks = []
    for (m3, ir3), s3 in zip(irreps_out, irreps_out.slices()):
        acc = x1.new_zeros(*batch, m3, ir3.dim)
        for (m1, ir1), s1 in zip(irreps1, irreps1.slices()):
            for (m2, ir2), s2 in zip(irreps2, irreps2.slices()):
                if (ir1.l + ir2.l + ir3.l) % 2 or not abs(ir1.l - ir2.l) <= ir3.l <= ir1.l + ir2.l:
                    continue
                a = x1[..., s1].unflatten(-1, (m1, ir1.dim)) * w1[..., ir1.l, None]
                b = x2[..., s2].unflatten(-1, (m2, ir2.dim)) * w2[..., ir2.l, None]
                acc = acc + torch.einsum("...ui,...uj,ijk->...uk", a, b, gaunt_coefficients(ir1.l, ir2.l, ir3.l))
        blocks.append((acc * w3[..., ir3.l, None]).flatten(-2))
    return torch.cat(blocks, dim=-1)


@pytest.fixture(params=TRANSFORMS)
def transform(request) -> str:
    """Both executions of the 2D Fourier method: the transforms as folded DFT matrices, or torch.fft."""
    return request.param


def make(irreps, weights="per_sample", **kwargs) -> GauntProduct:
    if weights == "internal":
        return GauntProduct(*irreps, **kwargs)
    return GauntProduct(*irreps, internal_weights=False, shared_weights=weights == "shared", **kwargs)


@pytest.mark.parametrize("irreps", CASES)
def test_matches_gaunt_einsum(irreps, transform):
    tp = make(irreps, transform=transform)
    x1, x2, w = random_inputs(tp, (5,), F64, seed=1)
    torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("irreps", CASES)
def test_matches_descriptor(irreps):
    tp = make(irreps, "shared")
    x1, x2, w = random_inputs(tp, (4,), F64, seed=2)
    assert_matches_descriptor(tp, x1, x2, w)
    d = tp.descriptor()
    assert tp.path_weights(w).shape == (d.weight_numel,)
    assert all(p.coupling == "gaunt" and p.coefficient == 1.0 for p in d.paths)
    assert all(p.mode == ("uuu" if tp.irreps_in2[0].mul == tp.irreps_in1[0].mul else "uvu") for p in d.paths)
    assert all((ir1.l + ir2.l + ir3.l) % 2 == 0 for (_, ir1), (_, ir2), (_, ir3) in map(d.irreps, d.paths))


@pytest.mark.parametrize("irreps", CASES)
def test_matches_cg_product(irreps):
    """CGProduct on the Gaunt paths with weights w1 w2 w3 * (Gaunt / CG ratio) / its own normalisation."""
    tp = make(irreps)
    x1, x2, w = random_inputs(tp, (3,), F64, seed=3)
    d = tp.descriptor()
    cg = CGProduct(*irreps, [(p.i_in1, p.i_in2, p.i_out, p.mode, True) for p in d.paths],
                   internal_weights=False, shared_weights=False)  # fmt: skip
    scale = []
    for p, q in zip(d.paths, cg.descriptor().paths):
        ls = [ir.l for _, ir in d.irreps(p)]
        ratio = float((gaunt_coefficients(*ls) * clebsch_gordan(*ls)).sum())  # C has unit norm: G = ratio C
        scale += [ratio / q.coefficient] * d.path_weight_numel(p)
    w_cg = tp.path_weights(w) * torch.tensor(scale, dtype=F64)
    torch.testing.assert_close(tp(x1, x2, w), cg(x1, x2, w_cg), rtol=1e-10, atol=1e-10)


def test_broken_reference_is_detected(transform):
    """The comparisons above are not vacuous: changing one output-degree weight must be caught."""
    irreps = CASES[2]
    tp = make(irreps, transform=transform)
    x1, x2, w = random_inputs(tp, (5,), F64, seed=1)
    broken = w.clone()
    broken[..., -1] += 0.5  # w3[mul-1, L3]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(tp(x1, x2, w), gaunt_reference(*irreps, x1, x2, broken), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("irreps", CASES)
def test_dft_and_fft_transforms_agree(irreps):
    """The folded DFT matrices and torch.fft compute the same function (to rounding)."""
    dft, fft = make(irreps), make(irreps, transform="fft")
    assert dft.transform == "dft" and fft.transform == "fft"
    x1, x2, w = random_inputs(dft, (6,), F64, seed=11)
    torch.testing.assert_close(dft(x1, x2, w), fft(x1, x2, w), rtol=1e-12, atol=1e-12)


def test_dft_keeps_half_the_rings_and_the_fold_matters():
    """transform="dft" computes n_u // 2 + 1 of the n_u torus rings; the others are folded in with the sign
    (-1)^k. Without the folded rings (projection on the kept rings only) the result is wrong."""
    irreps = CASES[1]
    tp = make(irreps)
    assert tp.n_theta == tp.n_u // 2 + 1 and "transform=dft" in repr(tp)
    x1, x2, w = random_inputs(tp, (5,), F64, seed=12)
    expected = gaunt_reference(*irreps, x1, x2, w)
    torch.testing.assert_close(tp(x1, x2, w), expected, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        tp._theta_out[..., 1:] *= 0.5  # each folded ring counted once instead of twice
    with pytest.raises(AssertionError):
        torch.testing.assert_close(tp(x1, x2, w), expected, rtol=1e-10, atol=1e-10)


def test_bad_transform():
    with pytest.raises(ValueError, match="transform must be one of"):
        GauntProduct("0e", "0e", "0e", transform="fftw")


def test_internal_weights_default_to_ones():
    irreps = CASES[3]
    tp = GauntProduct(*irreps)
    assert tp.internal_weights and tp.weight.shape == (3 * (5 + 1 + 2 + 3),)
    torch.testing.assert_close(tp.weight, torch.ones_like(tp.weight), rtol=0, atol=0)
    x1, x2, _ = random_inputs(tp, (4,), F64, seed=4)
    ones = torch.ones(tp.weight_numel, dtype=F64)
    torch.testing.assert_close(tp(x1, x2), gaunt_reference(*irreps, x1, x2, ones), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tp.path_weights(), torch.ones(tp.descriptor().weight_numel), rtol=0, atol=0)
    randn = GauntProduct(*irreps, weight_init="randn")
    assert not torch.equal(randn.weight, torch.ones_like(randn.weight))
    assert list(tp.state_dict()) == ["weight"]  # index tables and matrices are non-persistent buffers


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("irreps", [CASES[0], CASES[2], CASES[4], CASES[5]])
def test_equivariance(irreps, dtype, transform):
    tp = make(irreps, "internal", weight_init="randn", transform=transform)
    x1, x2, w = random_inputs(tp, (3,), dtype, seed=5)
    assert_equivariant(tp, x1, x2, w)


def test_equivariance_check_is_not_vacuous():
    """Declaring the output with the wrong parity sign must fail under inversion."""
    irreps = CASES[2]
    tp = make(irreps, "internal", weight_init="randn")
    x1, x2, w = random_inputs(tp, (3,), F64, seed=5)
    with pytest.raises(AssertionError, match="inversion|improper"):
        assert_equivariant(tp, x1, x2, w, irreps_out=spherical(3, range(6), -1))


def test_gradcheck_and_gradgradcheck(transform):
    tp = make(("2x0e+2x1o+2x2e", "0e+1o", "2x0e+2x1o+2x2e+2x3o"), transform=transform)
    x1, x2, w = random_inputs(tp, (1,), F64, seed=6)
    inputs = tuple(t.requires_grad_() for t in (x1, x2, w))
    assert torch.autograd.gradcheck(tp, inputs)
    assert torch.autograd.gradgradcheck(tp, inputs)


def test_batch_dims_broadcasting_and_empty(transform):
    irreps = CASES[2]
    tp = make(irreps, transform=transform)
    x1, x2, w = random_inputs(tp, (2, 3), F64, seed=7)
    out = tp(x1, x2, w)
    assert out.shape == (2, 3, tp.irreps_out.dim) and out.is_contiguous()
    flat = tp(x1.reshape(6, -1), x2.reshape(6, -1), w.reshape(6, -1))
    torch.testing.assert_close(out, flat.reshape(2, 3, -1), rtol=1e-12, atol=1e-12)
    # x1 [2, 1, d1], x2 [3, d2], weight [2, 3, n]: broadcast to [2, 3]
    out = tp(x1[:, :1], x2[0], w)
    expected = gaunt_reference(*irreps, x1[:, :1].expand(2, 3, -1), x2[0].expand(2, 3, -1), w)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    shared = make(irreps, "shared", transform=transform)
    torch.testing.assert_close(shared(x1, x2, w[0, 0]), tp(x1, x2, w[0, 0].expand(2, 3, -1)), rtol=1e-12, atol=1e-12)
    empty = tp(x1[:0, 0], x2[:0, 0], w[:0, 0])
    assert empty.shape == (0, tp.irreps_out.dim)



@pytest.mark.parametrize("weights", ["per_sample", "shared"])
def test_blocked_execution_matches_unblocked(weights, transform):
    """Large batches run in cache-sized blocks (chunk_elements); blocks of 2 samples, uneven last one."""
    tp = make(CASES[2], weights, transform=transform)
    x1, x2, w = random_inputs(tp, (7,), F64, seed=10)
    assert_blocked_matches_unblocked(tp, (x1, x2, w), gaunt_reference(*CASES[2], x1, x2, w))

@pytest.mark.parametrize(
    "irreps, match",
    [
        (("2x0e+2x1o", "2x0e+2x1o", "2x0o+2x1e"), "cannot be produced.*0e, never 0o"),
        (("2x0o+2x1e", "2x0e", "2x0o+2x1e+2x2o"), None),  # valid: pseudo x ordinary -> pseudo
        (("2x0e+3x1o", "0e", "2x0e"), "unequal multiplicities"),
        (("2x0e+2x1o+2x1o", "0e", "2x0e"), "repeats degree l=1"),
        (("2x1o+2x0e", "0e", "2x0e"), "not sorted"),
        (("2x0e+2x1e", "0e", "2x0e"), "mixes parities"),
        (("3x0e", "2x0e", "3x0e"), "mul2 must equal mul1 or be 1"),
        (("3x0e", "0e", "2x0e"), "has mul 2"),
        (("", "0e", "0e"), "empty"),
        (("0x0e", "0e", "0e"), "zero multiplicity"),
    ],
)
def test_bad_irreps(irreps, match):
    if match is None:
        GauntProduct(*irreps)
        return
    with pytest.raises(ValueError, match=match):
        GauntProduct(*irreps)


def test_bad_inputs():
    tp = make(("2x0e+2x1o", "0e+1o", "2x0e+2x1o"), "internal", check_finite=True)
    x1, x2, _ = random_inputs(tp, (3,), torch.float32)
    with pytest.raises(ValueError, match="last dimension"):
        tp(x1[:, :-1], x2)
    with pytest.raises(TypeError, match="dtype"):
        tp(x1.double(), x2)
    with pytest.raises(ValueError, match="NaN"):
        tp(x1, torch.full_like(x2, float("nan")))
    with pytest.raises(ValueError, match="weight_init"):
        GauntProduct("0e", "0e", "0e", weight_init="zeros")
    with pytest.raises(ValueError, match="external"):
        make(("0e", "0e", "0e"), "shared").path_weights()


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_fullgraph_matches_eager(backend, transform):
    """fullgraph: the FFTs, complex matmuls and index tables trace without graph breaks. Inductor
    (slow to compile, ~30 s) has no complex codegen and falls back to eager kernels for those ops."""
    tp = make(("2x0e+2x1o+2x2e", "0e+1o", "2x0e+2x1o+2x2e"), "internal", weight_init="randn",
              transform=transform)
    x1, x2, _ = random_inputs(tp, (4,), torch.float32, seed=8)
    compiled = torch.compile(tp, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x1, x2), tp(x1, x2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("irreps", [CASES[0], CASES[2]])
def test_float32_accuracy(irreps, transform):
    tp = make(irreps, transform=transform)
    x1, x2, w = random_inputs(tp, (8,), F64, seed=9)
    exact = tp(x1, x2, w)
    approx = tp(x1.float(), x2.float(), w.float())
    assert approx.dtype == torch.float32
    error = float((approx.double() - exact).abs().max() / exact.abs().max())
    assert error <= 1e-5, error
