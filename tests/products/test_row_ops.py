"""The layout helpers of the sphere-function products: injective row gathers and transposes whose
adjoints are gathers and transposes (first and second derivatives, forward mode, bad tables)."""
import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD

from gaunt.products._row_ops import RowGather, Transpose, gather_rows, gather_tables, transpose


def _tables():
    # 5 output rows from 4 source rows: row 2 is padding (zero), source row 3 is never read
    return gather_tables(np.array([1, 0, 0, 2, 3]), np.array([True, True, False, True, False]), 4)


def test_row_gather_matches_indexing_with_zero_rows():
    src = torch.randn(4, 6, dtype=torch.float64)
    expected = torch.stack([src[1], src[0], torch.zeros(6, dtype=torch.float64), src[2], torch.zeros(6, dtype=torch.float64)])
    torch.testing.assert_close(gather_rows(src, _tables()), expected, rtol=0, atol=0)


def test_row_gather_adjoint_is_the_scatter():
    """<P x, y> = <x, P^T y> with P^T computed by the backward gather (row 3 of x gets nothing)."""
    src = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(5, 6, dtype=torch.float64)
    (grad_src,) = torch.autograd.grad(gather_rows(src, _tables()), src, grad_out)
    expected = torch.zeros(4, 6, dtype=torch.float64)
    expected[1], expected[0], expected[2] = grad_out[0], grad_out[1], grad_out[3]
    torch.testing.assert_close(grad_src, expected, rtol=0, atol=0)


def test_gradcheck_and_gradgradcheck():
    src = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    tables = _tables()
    assert torch.autograd.gradcheck(lambda s: RowGather.apply(s, *tables), (src,))
    assert torch.autograd.gradgradcheck(lambda s: RowGather.apply(s, *tables), (src,))
    assert torch.autograd.gradcheck(Transpose.apply, (src,))
    assert torch.autograd.gradgradcheck(Transpose.apply, (src,))


def test_forward_mode_matches_the_function():
    src, tangent = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(RowGather.apply(fwAD.make_dual(src, tangent), *_tables())).tangent
        out_t = fwAD.unpack_dual(Transpose.apply(fwAD.make_dual(src, tangent))).tangent
    torch.testing.assert_close(out, gather_rows(tangent, _tables()), rtol=0, atol=0)
    torch.testing.assert_close(out_t, tangent.T, rtol=0, atol=0)


def test_transpose_is_contiguous():
    x = torch.randn(70, 80)
    out = transpose(x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, x.T, rtol=0, atol=0)


def test_a_source_row_read_twice_is_refused():
    """The adjoint gather would drop one of the two gradient contributions: refused, not silently wrong."""
    with pytest.raises(ValueError, match="read twice"):
        gather_tables(np.array([0, 1, 0]), np.array([True, True, True]), 2)
