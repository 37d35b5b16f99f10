"""Runners of the fused executors keep their programs in a per-process registry, addressed by id. A copy of a
product or layer (deepcopy for EMA, pickle, a model loaded in another process) must run its own program, not
whatever program has that id there: the copy registers its program anew."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gaunt.nn import GauntManyBody
from gaunt.products import PRODUCTS
from gaunt.products.executors import EXECUTORS

SRC = Path(__file__).resolve().parents[2] / "src"
FUSED = [name for name in ("cpu_fused", "triton") if EXECUTORS[name].unavailable() is None]


def modules(executor: str):
    irreps = "2x0e+2x1o+2x2e"
    product = PRODUCTS["grid"].build(irreps, irreps, irreps, executor=executor).double()
    many_body = GauntManyBody("2x0e+2x1o", "2x0e+2x1o", 3, executor=executor).double()
    return product, many_body


def outputs(product, many_body) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, product.irreps_in1.dim, generator=g, dtype=torch.float64)
    a = torch.randn(3, many_body.irreps_in.dim, generator=g, dtype=torch.float64)
    return [product(x, x), many_body(a)]


@pytest.mark.parametrize("executor", FUSED)
def test_deepcopy_and_pickle_run_the_same_program(executor):
    originals = modules(executor)
    if executor == "cpu_fused":  # the folded weights hold an id too
        assert "folded" in repr(originals[0])
    expected = outputs(*originals)
    for clone in (copy.deepcopy(originals), pickle.loads(pickle.dumps(originals))):
        for a, b in zip(outputs(*clone), expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("executor", FUSED)
def test_a_pickle_loaded_in_another_process_runs_its_own_program(executor, tmp_path):
    """In a fresh process other programs are registered first, so the pickled ids would name other programs."""
    originals = modules(executor)
    torch.save({"modules": originals, "expected": outputs(*originals)}, tmp_path / "modules.pt")
    script = f"""
import torch
from gaunt.products import PRODUCTS
from test_copies import modules, outputs
for irreps in ("3x0e+3x1o", "2x0e+2x1o+2x2e+2x3o", "2x0e+2x1o+2x2e"):  # other programs take the ids first
    PRODUCTS["grid"].build(irreps, irreps, irreps, executor={executor!r})
saved = torch.load({str(tmp_path / "modules.pt")!r}, weights_only=False)
for a, b in zip(outputs(*saved["modules"]), saved["expected"]):
    torch.testing.assert_close(a, b, rtol=0, atol=0)
"""
    env = {**os.environ, "PYTHONPATH": f"{SRC}:{Path(__file__).parent}"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
