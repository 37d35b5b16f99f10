"""Every registered product on every executor it can run on passes every conformance check."""

from __future__ import annotations

import pytest
import torch
from conformance import CHECKS, DEVICE, build, check_equivariance, check_matches_descriptor, examples, executors_of

from gaunt.products import EXECUTORS, PRODUCTS

CASES = [(name, executor) for name, spec in PRODUCTS.items() for executor in executors_of(spec)]


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("name,executor", CASES, ids=[f"{n}-{e}" for n, e in CASES])
def test_conformance(name, executor, check, float64_default):
    entry = EXECUTORS[executor]
    reason = entry.unavailable()
    if reason is not None or DEVICE not in entry.devices:
        pytest.skip(f"executor {executor!r}: {reason or f'runs on {entry.devices} tensors, not {DEVICE}'}")
    CHECKS[check](PRODUCTS[name], executor)


@pytest.mark.parametrize("weights", ["shared", "internal"])
@pytest.mark.parametrize("name", sorted(PRODUCTS))
def test_descriptor_oracle_in_every_weight_mode(name, weights):
    check_matches_descriptor(PRODUCTS[name], "torch", weights)


def test_equivariance_check_is_not_vacuous(monkeypatch):
    """A product that breaks equivariance (its output blocks' m order reversed) fails the check."""
    spec = PRODUCTS["grid"]
    product = build(spec, examples(spec)[0], "torch")
    forward = type(product)._forward
    monkeypatch.setattr(type(product), "_forward", lambda self, *a: forward(self, *a).flip(-1))
    with pytest.raises(AssertionError, match="not equivariant"):
        check_equivariance(spec, "torch")


def test_descriptor_check_is_not_vacuous(monkeypatch):
    """A product whose path weights are off by a factor on one path fails the oracle check."""
    spec = PRODUCTS["gaunt"]
    original = type(build(spec, examples(spec)[0], "torch")).path_weights
    monkeypatch.setattr(
        type(build(spec, examples(spec)[0], "torch")), "path_weights", lambda self, w=None: original(self, w) * 1.001
    )
    with pytest.raises(AssertionError):
        check_matches_descriptor(spec, "torch")


def test_explicit_executor_that_cannot_run_raises(monkeypatch):
    """A named executor that is unavailable raises; "auto" says what it chose."""
    from gaunt.products import EXECUTORS, GridGauntProduct, resolve_executor
    from gaunt.products.executors import Executor

    monkeypatch.setitem(
        EXECUTORS, "broken", Executor("broken", EXECUTORS["torch"].runner, lambda: "no compiler", "test")
    )
    with pytest.raises(RuntimeError, match="'broken' was requested but cannot run here: no compiler"):
        GridGauntProduct("0e+1o", "0e+1o", "0e+1o", executor="broken")
    with pytest.raises(ValueError, match="unknown executor 'nope'"):
        GridGauntProduct("0e+1o", "0e+1o", "0e+1o", executor="nope")
    chosen = resolve_executor("auto", "cpu")
    assert GridGauntProduct("0e+1o", "0e+1o", "0e+1o").executor.startswith(chosen)  # "<cpu choice> (cpu), ..."
    assert f"executor={chosen}" in repr(GridGauntProduct("0e+1o", "0e+1o", "0e+1o"))
    torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
