import pytest
import torch

from gaunt.checks import check_module, run_checks


def test_all_registered_checks_pass():
    results, ok = run_checks(lmax=1)
    assert ok, results
    assert {"CGProduct", "GauntProduct", "GridGauntProduct", "SO2Product"} <= {r.name for r in results}


def test_detects_a_non_equivariant_module():
    # test the tester: reading the y component as if it were a scalar breaks equivariance
    fn = lambda x: torch.cat([x[:, 2:3], x[:, 1:4]], dim=-1)  # noqa: E731
    result = check_module("broken", fn, ["0e+1o"], "0e+1o")
    assert result.equivariance > 1e-3
    ok = lambda x: torch.cat([x[:, :1] * 2, x[:, 1:4]], dim=-1)  # noqa: E731
    assert check_module("fine", ok, ["0e+1o"], "0e+1o").equivariance < 1e-14


def test_detects_wrong_parity_and_vacuous_output():
    flip = lambda x: x  # noqa: E731  # declared 1o -> 1e: wrong under inversion
    assert check_module("parity", flip, ["1o"], "1e").equivariance > 1.0
    with pytest.raises(AssertionError, match="vacuous"):
        check_module("zero", lambda x: 0 * x, ["1o"], "1o")


def test_detects_wrong_gradient():
    class BadGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g  # should be 2 g

    result = check_module("badgrad", BadGrad.apply, ["2x0e"], "2x0e")
    assert result.equivariance < 1e-14 and not result.gradcheck
