"""Tests for gaunt.so3.irreps: parsing, e3nn compatibility, immutability and layout helpers."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch
from e3nn import o3
from hypothesis import given, settings
from hypothesis import strategies as st

import gaunt.so3.irreps as irreps_module
from gaunt.so3.irreps import Irrep, Irreps, MulIr

E3NN_STRINGS = [
    "",
    "0e",
    "1x0e",
    "16x0e + 8x1o + 2x2e",
    "16x0e+8x1o+2x2e",
    "2o + 1e + 0e + 1e",
    "1e + 1e + 0e + 1e",
    "0x1e + 3x0e + 0x2o",
    "4x0e + 0x1o + 2x3e",
    "3x1o + 2x0o + 5x1o + 1x0e + 7x4e",
    "1x5o+1x0e+1x5o+1x5e",
]


# ----------------------------------------------------------------------------- Irrep
@pytest.mark.parametrize(
    "text, l, p",
    [
        ("0e", 0, 1),
        ("1o", 1, -1),
        ("2e", 2, 1),
        ("10o", 10, -1),
        (" 3e ", 3, 1),
        ("0y", 0, 1),
        ("1y", 1, -1),
        ("2y", 2, 1),
        ("3y", 3, -1),
    ],
)
def test_irrep_parse(text: str, l: int, p: int) -> None:  # noqa: E741
    ir = Irrep(text)
    assert (ir.l, ir.p) == (l, p)
    assert ir == Irrep(l, p) == Irrep((l, p)) == Irrep(ir) == o3.Irrep(text)
    assert ir.dim == 2 * l + 1 == o3.Irrep(text).dim
    assert Irrep(o3.Irrep(text)) == ir and hash(ir) == hash(o3.Irrep(text))
    assert repr(ir) == str(ir) == repr(o3.Irrep(text))


def test_irrep_methods() -> None:
    assert Irrep("0e").is_scalar() and not Irrep("0o").is_scalar() and not Irrep("1e").is_scalar()
    for a, b in [("1o", "1o"), ("2e", "1o"), ("0e", "3o"), ("3e", "2o")]:
        assert list(Irrep(a) * Irrep(b)) == list(o3.Irrep(a) * o3.Irrep(b))
    assert list(Irrep("1o") * "2e") == [Irrep("1o"), Irrep("2o"), Irrep("3o")]
    assert Irrep("2e") in Irrep("1o") * Irrep("1o")
    assert 3 * Irrep("1o") == Irrep("1o") * 3 == Irreps("3x1o")
    assert isinstance(3 * Irrep("1o"), Irreps)
    assert Irrep("1o") + Irrep("2e") == Irreps("1o + 2e")
    assert list(Irrep.iterator(3)) == list(o3.Irrep.iterator(3))
    assert [str(ir) for ir in Irrep.iterator(1)] == ["0e", "0o", "1o", "1e"]
    assert list(Irrep.iterator(0)) == [Irrep("0e"), Irrep("0o")]


@pytest.mark.parametrize(
    "args, token",
    [
        ((-1, 1), "-1"),
        ((1, 2), "2"),
        ((1, 0), "0"),
        (("1q",), "1q"),
        (("-1e",), "-1e"),
        (("",), "''"),
        (("e",), "e"),
        ((1.5, 1), "1.5"),
        (((1, 2, 3),), "(1, 2, 3)"),
    ],
)
def test_irrep_invalid(args: tuple, token: str) -> None:
    with pytest.raises(ValueError) as info:
        Irrep(*args)
    assert token in str(info.value)


def test_mul_ir() -> None:
    m = MulIr(16, "1o")
    assert m == MulIr(16, Irrep(1, -1)) == MulIr((16, (1, -1))) == MulIr("16x1o") == (16, (1, -1))
    assert (m.mul, m.ir, m.dim, repr(m), str(m)) == (16, Irrep("1o"), 48, "16x1o", "16x1o")
    assert isinstance(m.ir, Irrep)
    mul, (l, p) = m
    assert (mul, l, p) == (16, 1, -1)
    assert o3.Irreps("16x1o")[0] == m and hash(o3.Irreps("16x1o")[0]) == hash(m)
    with pytest.raises(ValueError, match="-2"):
        MulIr(-2, "1o")
    with pytest.raises(ValueError, match="1q"):
        MulIr(2, "1q")


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, expected",
    [
        ("16x0e + 8x1o + 2x2e", [(16, (0, 1)), (8, (1, -1)), (2, (2, 1))]),
        ("16x0e+8x1o+2x2e", [(16, (0, 1)), (8, (1, -1)), (2, (2, 1))]),
        ("  16 x 0e+ 8x1o +2x2e  ", [(16, (0, 1)), (8, (1, -1)), (2, (2, 1))]),
        ("\t16x0e\n+8x1o", [(16, (0, 1)), (8, (1, -1))]),
        ("0e", [(1, (0, 1))]),
        ("0e + 1o", [(1, (0, 1)), (1, (1, -1))]),
        ("0x1e", [(0, (1, 1))]),
        ("2x1y + 3y + 2y", [(2, (1, -1)), (1, (3, -1)), (1, (2, 1))]),
        ("100x12o", [(100, (12, -1))]),
        ("", []),
        ("   ", []),
    ],
)
def test_irreps_parse(text: str, expected: list) -> None:
    irreps = Irreps(text)
    assert list(irreps) == expected
    assert all(isinstance(m, MulIr) and isinstance(m.ir, Irrep) for m in irreps)
    assert irreps == o3.Irreps(text)


@pytest.mark.parametrize(
    "text, token",
    [
        ("16x0q", "16x0q"),
        ("16x0e + 8x1q", "8x1q"),
        ("x1e", "x1e"),
        ("-1x0e", "-1x0e"),
        ("1x-1e", "1x-1e"),
        ("abc", "abc"),
        ("1x1e++2x0e", "1x1e++2x0e"),
        ("1x0e+", "1x0e+"),
        ("2.5x0e", "2.5x0e"),
        ("1x1x1e", "1x1x1e"),
        ("3xe", "3xe"),
    ],
)
def test_irreps_invalid_string(text: str, token: str) -> None:
    with pytest.raises(ValueError) as info:
        Irreps(text)
    assert token in str(info.value)


@pytest.mark.parametrize("bad", [[(-1, "0e")], [(1, "2q")], [(1, (0, 2))], [3], [(1, 2, 3)], 5, [None]])
def test_irreps_invalid_items(bad: object) -> None:
    with pytest.raises(ValueError):
        Irreps(bad)


def test_irreps_constructors() -> None:
    ref = Irreps("2x0e + 1x1o")
    assert Irreps(ref) is ref
    assert Irreps([(2, (0, 1)), (1, (1, -1))]) == ref
    assert Irreps([(2, "0e"), (1, Irrep("1o"))]) == ref
    assert Irreps(["0e", "0e", "1o"]).simplify() == ref
    assert Irreps(["2x0e", Irrep("1o")]) == ref
    assert Irreps([o3.Irrep("0e"), o3.Irrep("0e"), o3.Irrep("1o")]).simplify() == ref
    assert Irreps(o3.Irreps("2x0e+1o")) == ref and Irreps.from_e3nn(o3.Irreps("2x0e+1o")) == ref
    assert Irreps(Irrep("1o")) == Irreps(o3.Irrep("1o")) == Irreps("1x1o")
    assert Irreps(MulIr(3, "2e")) == Irreps(o3.Irreps("3x2e")[0]) == Irreps("3x2e")
    assert Irreps() == Irreps("") == Irreps([]) == () and len(Irreps()) == 0


# ----------------------------------------------------------------------------- e3nn parity
def _check_against_e3nn(ours: Irreps, ref: o3.Irreps) -> None:
    assert ours == ref and ref == ours and not (ours != ref)
    assert hash(ours) == hash(ref)
    assert str(ours) == repr(ours) == repr(ref)
    assert ours.dim == ref.dim
    assert ours.num_irreps == ref.num_irreps
    assert ours.ls == ref.ls
    assert ours.slices() == ref.slices()
    if ref.num_irreps > 0:
        assert ours.lmax == ref.lmax
    else:
        with pytest.raises(ValueError):
            ours.lmax
    simple = ours.simplify()
    assert isinstance(simple, Irreps) and simple == ref.simplify()
    assert ours.remove_zero_multiplicities() == ref.remove_zero_multiplicities()
    ours_sort, ref_sort = ours.sort(), ref.sort()
    assert isinstance(ours_sort.irreps, Irreps)
    assert ours_sort.irreps == ref_sort.irreps
    assert ours_sort.p == ref_sort.p and ours_sort.inv == ref_sort.inv
    assert tuple(ours_sort) == tuple(ref_sort)
    for ir in Irrep.iterator(5):
        assert (ir in ours) == (o3.Irrep(ir) in ref)
        assert ours.count(ir) == ref.count(o3.Irrep(ir))
    to_e3nn = ours.to_e3nn()
    assert isinstance(to_e3nn, o3.Irreps) and to_e3nn == ref and Irreps.from_e3nn(to_e3nn) == ours
    assert o3.Irreps(ours) == ref


@pytest.mark.parametrize("text", E3NN_STRINGS)
def test_matches_e3nn(text: str) -> None:
    _check_against_e3nn(Irreps(text), o3.Irreps(text))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.sampled_from([1, -1])), max_size=8))
def test_matches_e3nn_random(terms: list) -> None:
    spec = [(mul, (l, p)) for mul, l, p in terms]
    ours, ref = Irreps(spec), o3.Irreps(spec)
    _check_against_e3nn(ours, ref)
    assert Irreps(str(ours)) == ours


def test_spherical_harmonics() -> None:
    for lmax in range(5):
        for p in (-1, 1):
            assert Irreps.spherical_harmonics(lmax, p) == o3.Irreps.spherical_harmonics(lmax, p)
    assert str(Irreps.spherical_harmonics(3)) == "1x0e+1x1o+1x2e+1x3o"
    assert str(Irreps.spherical_harmonics(2, p=1)) == "1x0e+1x1e+1x2e"
    with pytest.raises(ValueError):
        Irreps.spherical_harmonics(-1)
    with pytest.raises(ValueError):
        Irreps.spherical_harmonics(2, p=0)


# ----------------------------------------------------------------------------- container
def test_sequence_operations() -> None:
    a = Irreps("16x0e + 8x1o")
    b = Irreps("2x2e")
    assert a + b == Irreps("16x0e+8x1o+2x2e") and isinstance(a + b, Irreps)
    assert a + "2x2e" == a + b and "2x2e" + a == Irreps("2x2e+16x0e+8x1o")
    assert isinstance("2x2e" + a, Irreps)
    assert a * 2 == 2 * a == Irreps("16x0e+8x1o+16x0e+8x1o") and isinstance(a * 2, Irreps)
    assert a * 0 == Irreps()
    assert a[1:] == Irreps("8x1o") and isinstance(a[1:], Irreps)
    assert a[0] == MulIr(16, "0e") and isinstance(a[0], MulIr)
    assert a[-1].ir == Irrep("1o")
    assert "1o" in a and Irrep("0e") in a and (1, -1) in a and "2e" not in a
    assert MulIr(8, "1o") in a and MulIr(7, "1o") not in a
    assert Irreps("2x1o + 0e + 3x1o").count("1o") == 5
    assert [(mul, l, p) for mul, (l, p) in a] == [(16, 0, 1), (8, 1, -1)]
    assert len({Irreps("1x0e"), o3.Irreps("1x0e"), Irreps("0e")}) == 1
    with pytest.raises(TypeError):
        a * Irreps("1o")


def test_immutability() -> None:
    irreps, ir, mul_ir = Irreps("2x0e + 1o"), Irrep("1o"), MulIr(3, "1o")
    for obj, attr in [
        (irreps, "dim"),
        (irreps, "foo"),
        (ir, "l"),
        (ir, "p"),
        (ir, "foo"),
        (mul_ir, "mul"),
        (mul_ir, "ir"),
        (mul_ir, "foo"),
    ]:
        with pytest.raises(AttributeError):
            setattr(obj, attr, 1)
    for obj in (irreps, ir, mul_ir):
        with pytest.raises(TypeError):
            obj[0] = 1  # type: ignore[index]
        with pytest.raises(TypeError):
            del obj[0]  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        ir._replace(p=3)
    assert irreps == Irreps("2x0e + 1o")
    assert pickle.loads(pickle.dumps(irreps)) == irreps
    assert type(pickle.loads(pickle.dumps(irreps))) is Irreps
    assert pickle.loads(pickle.dumps(ir)) == ir and pickle.loads(pickle.dumps(mul_ir)) == mul_ir


def test_e3nn_only_imported_lazily() -> None:
    # A subprocess "import; check sys.modules" costs seconds of torch import; inspect the AST instead:
    # no import statement outside a function body may mention e3nn.
    tree = ast.parse(Path(irreps_module.__file__).read_text())
    top_level: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                top_level.append(child)
                stack.append(child)
    names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
    assert names and not any("e3nn" in name for name in names)
    assert any(isinstance(n, ast.ImportFrom) and n.module == "e3nn" for n in ast.walk(tree))


# ----------------------------------------------------------------------------- layouts
def _reference_mul_ir_to_ir_mul(irreps: Irreps, x: torch.Tensor) -> torch.Tensor:
    parts = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        block = x[..., sl].reshape(*x.shape[:-1], mul, ir.dim)
        parts.append(block.transpose(-1, -2).reshape(*x.shape[:-1], ir.dim * mul))
    return torch.cat(parts, dim=-1)


@pytest.mark.parametrize("text", ["16x0e + 8x1o + 2x2e", "3x1o + 0x2e + 2x1o", "1x3o", "5x0e"])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_layout_conversion(text: str, batch: tuple) -> None:
    irreps = Irreps(text)
    x = torch.randn(*batch, irreps.dim, dtype=torch.float64)
    y = irreps.mul_ir_to_ir_mul(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, _reference_mul_ir_to_ir_mul(irreps, x))
    torch.testing.assert_close(irreps.ir_mul_to_mul_ir(y), x, rtol=0, atol=0)
    torch.testing.assert_close(irreps.mul_ir_to_ir_mul(irreps.ir_mul_to_mul_ir(x)), x, rtol=0, atol=0)


def test_layout_explicit_values() -> None:
    irreps = Irreps("2x1o + 1x0e")
    x = torch.arange(7.0)  # mul_ir: [u0 m-1, u0 m0, u0 m1, u1 m-1, u1 m0, u1 m1, scalar]
    expected = torch.tensor([0.0, 3.0, 1.0, 4.0, 2.0, 5.0, 6.0])
    torch.testing.assert_close(irreps.mul_ir_to_ir_mul(x), expected)
    torch.testing.assert_close(irreps.ir_mul_to_mul_ir(expected), x)


def test_layout_edge_cases() -> None:
    empty = Irreps("")
    x = torch.randn(3, 0)
    assert empty.mul_ir_to_ir_mul(x).shape == (3, 0)
    irreps = Irreps("2x1o")
    x = torch.randn(0, 6)
    assert irreps.mul_ir_to_ir_mul(x).shape == (0, 6)
    x = torch.randn(5, 6, requires_grad=True)
    irreps.mul_ir_to_ir_mul(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(5, 6))


def test_layout_wrong_dim() -> None:
    irreps = Irreps("16x0e + 8x1o")  # dim 40
    for fn in (irreps.mul_ir_to_ir_mul, irreps.ir_mul_to_mul_ir):
        with pytest.raises(ValueError) as info:
            fn(torch.randn(3, 41))
        assert "40" in str(info.value) and "41" in str(info.value)
        with pytest.raises(ValueError):
            fn(torch.tensor(1.0))
