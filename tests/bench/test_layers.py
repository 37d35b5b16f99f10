"""Tests of ``gaunt bench --layers``: the implementations of one function agree (and e3nn's convolution is
ours), a wrong implementation is never timed, budgets and chunks, the report and files. Tiny sizes
(L <= 2, 2 channels, a dozen nodes or atoms); no assertion on measured times."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from gaunt.bench import layers_main
from gaunt.bench import points_layers as layer_sweep
from gaunt.bench.engine import Sweep
from gaunt.bench.layer_report import evaluate_layer_targets, layer_cell, layer_tables, markdown_summary
from gaunt.bench.layers import (
    CONVOLUTION_IMPLEMENTATIONS,
    E3nnConvolution,
    convolution_inputs,
    convolution_runners,
    many_body_inputs,
    many_body_runners,
    split_inputs,
)
from gaunt.bench.points_layers import LayerConfig, LayerPoints

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> LayerConfig:
    values = dict(
        Ls=(1, 2),
        conv_channels=2,
        nodes=8,
        edges=24,
        many_body_channels=2,
        atoms=8,
        min_time_s=0.0,
        min_repeats=1,
        max_repeats=1,
        check_nodes=6,
        check_edges=16,
        check_atoms=5,
    )
    values.update(overrides)
    return LayerConfig(**values)


def run(config: LayerConfig) -> dict:
    return Sweep(LayerPoints(config), log=lambda line: None).run()


def find(results: dict, **match) -> list[dict]:
    return [r for r in results["records"] if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
def tiny_results():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(tiny())
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- agreement and records
def test_every_implementation_agrees_and_is_timed(tiny_results):
    expected = {("convolution", n) for n in CONVOLUTION_IMPLEMENTATIONS}  # every registered product, and e3nn
    expected |= {("many-body", n) for n in ("cg", "cg (gaunt paths)", "grid", "gaunt")}
    for L in (1, 2):
        got = {(r["layer"], r["implementation"]) for r in find(tiny_results, L=L)}
        assert got == expected
    for r in tiny_results["records"]:
        assert r["status"] == "ok" and r["time_s"] > 0 and r["chunks"] == 1, r
        if r["reference"] != "self":
            assert r["error_float64"] <= 1e-9 and r["error_dtype"] <= 1e-4, r
    # references: e3nn for both convolution functions (CG, Gaunt), the CG chain with the Gaunt paths for the
    # many-body; the parity-complete product has no peer in the layer bench (its own reference)
    convolutions = [r for r in find(tiny_results, layer="convolution") if r["implementation"] != "e3nn"]
    assert {r["reference"] for r in convolutions if r["function"] != "vector"} == {"e3nn"}
    assert {r["reference"] for r in convolutions if r["function"] == "vector"} == {"self"}
    assert {r["reference"] for r in find(tiny_results, layer="many-body", function="gaunt")} == {
        "cg (gaunt paths)",
        "self",
    }
    (grid,) = find(tiny_results, layer="many-body", L=2, implementation="grid")
    assert set(grid["speedup"]) == {"cg", "cg (gaunt paths)"}
    (so2,) = find(tiny_results, layer="convolution", L=2, implementation="so2")
    assert set(so2["speedup"]) == {"cg", "e3nn"} and set(so2["cpu_speedup"]) <= {"cg", "e3nn"}
    assert so2["speedup"]["cg"] == pytest.approx(
        find(tiny_results, layer="convolution", L=2, implementation="cg")[0]["time_s"] / so2["time_s"]
    )


def test_e3nn_convolution_is_the_same_function_with_the_same_gradients():
    for runner in [r for r in convolution_runners(2, 2) if r.name in ("cg", "grid")]:
        layer = runner.master
        peer = E3nnConvolution(layer).double()
        ins = convolution_inputs(2, 2, 6, 20, torch.float64, seed=3)
        ins["vectors"].requires_grad_(True)
        out, ref = peer(**ins), layer(ins["x"], ins["edge_index"], ins["vectors"], ins["radial"])
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        g_peer, g_ref = (torch.autograd.grad(o.square().sum(), ins["vectors"])[0] for o in (out, ref))
        torch.testing.assert_close(g_peer, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer", ["convolution", "many-body"])
def test_chunks_do_the_same_work(layer):
    """Pieces of edges (outputs summed) or atoms (outputs stacked) give the full output and gradients."""
    if layer == "convolution":
        runner = next(r for r in convolution_runners(2, 2, names=("grid",), e3nn_reference=False))
        ins = convolution_inputs(2, 2, 7, 25, torch.float64, seed=1)
        key, cat = "x", lambda outs: sum(outs)
    else:
        runner = next(r for r in many_body_runners(2, 2, 3, names=("cg",)))
        ins = many_body_inputs(2, 2, 9, torch.float64, seed=1)
        key, cat = "A", lambda outs: torch.cat(outs)
    ins[key].requires_grad_(True)
    cot = torch.randn(ins[key].shape, dtype=torch.float64)
    full = runner.forward(runner.master, ins)
    (g_full,) = torch.autograd.grad(full, ins[key], cot)
    parts = split_inputs(layer, ins, cot, 4)
    assert len(parts) == 4
    outs = [runner.forward(runner.master, p) for p, _ in parts]
    torch.testing.assert_close(cat(outs), full)
    g_parts = sum(torch.autograd.grad(o, ins[key], c)[0] for o, (_, c) in zip(outs, parts))
    torch.testing.assert_close(g_parts, g_full)


# ----------------------------------------------------------------------------- the gate and the budgets
def _perturbed(factory, target: str, factor: float):
    def wrapped(*args, **kwargs):
        runners = factory(*args, **kwargs)
        for r in runners:
            if r.name == target:
                forward = r.forward
                r.forward = lambda module, ins, forward=forward: factor * forward(module, ins)
        return runners

    return wrapped


def test_wrong_implementation_gets_no_time_and_no_ratio(monkeypatch):
    monkeypatch.setattr(layer_sweep, "many_body_runners", _perturbed(layer_sweep.many_body_runners, "gaunt", 1.001))
    monkeypatch.setattr(layer_sweep, "convolution_runners", _perturbed(layer_sweep.convolution_runners, "so2", -1.0))
    results = run(tiny(Ls=(1,)))
    (mb,) = find(results, layer="many-body", implementation="gaunt")
    assert mb["status"] == "disagrees" and mb.get("time_s") is None and mb["speedup"] == {}
    assert mb["error_float64"] == pytest.approx(1e-3, rel=1e-6) and "differs from cg (gaunt paths)" in mb["reason"]
    (conv,) = find(results, layer="convolution", implementation="so2")
    assert conv["status"] == "disagrees" and conv["error_float64"] == pytest.approx(2.0, rel=1e-9)
    assert all("so2" not in r["speedup"] for r in results["records"])
    assert "DISAGREES" in layer_cell(conv)
    right = find(results, implementation="grid")
    assert right and all(r["status"] == "ok" and r["speedup"] for r in right)


def test_over_budget_is_reported_and_stops_the_series():
    results = run(tiny(layers=("many-body",), point_budget_s=1e-9, many_body_products=("grid", "cg (gaunt paths)")))
    records = results["records"]
    assert records and all(r["status"] == "skipped" and r["reason"].startswith("over budget") for r in records)
    assert all("series stopped" in r["reason"] for r in find(results, L=2))
    assert all(layer_cell(r) == "over budget" for r in records)
    assert evaluate_layer_targets(results) == []  # L = 4 not run


def test_memory_budget_splits_the_call_into_chunks(monkeypatch):
    class FakePeak:  # the warm-up "needs" 1000 bytes: predicted peak = 1000 x pieces
        def __init__(self, device):
            self.bytes = 1000

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(layer_sweep, "PeakMemory", FakePeak)
    results = run(tiny(Ls=(1,), layers=("many-body",), many_body_products=("grid",), memory_budget_bytes=3000))
    (r,) = results["records"]
    assert (
        r["predicted_peak_bytes"] == 8000 and r["chunks"] == 3 and r["status"] == "ok" and "[3 chunks]" in layer_cell(r)
    )
    results = run(tiny(Ls=(1,), layers=("many-body",), many_body_products=("grid",), memory_budget_bytes=100))
    (r,) = results["records"]
    assert r["status"] == "skipped" and r["reason"].startswith("memory")


def test_without_e3nn_the_first_implementation_is_the_reference(monkeypatch):
    monkeypatch.setitem(sys.modules, "e3nn", None)  # import e3nn -> ImportError
    results = run(tiny(Ls=(1,), layers=("convolution",), conv_products=("grid", "gaunt", "e3nn")))
    (e3nn,) = find(results, implementation="e3nn")
    assert e3nn["status"] == "skipped" and e3nn["reason"].startswith("not installed")
    (gaunt,) = find(results, implementation="gaunt")
    assert gaunt["status"] == "ok" and gaunt["reference"] == "grid"
    ((title, header, rows, notes),) = layer_tables(results)
    assert "e3nn" not in " ".join(header) and any("not installed" in n for n in notes)


# ----------------------------------------------------------------------------- report and files
def test_targets_met_and_not_met():
    def record(name, speedup):
        return dict(layer="many-body", L=4, function="gaunt", implementation=name, correlation=3, speedup=speedup)

    results = {
        "records": [
            record("grid", {"cg": 15.0, "cg (gaunt paths)": 9.0}),
            record("gaunt", {}),
            record("cg (gaunt paths)", {"cg": 1.6}),
        ]
    }
    targets = {(t["implementation"], t["baseline"]): t for t in evaluate_layer_targets(results)}
    assert set(targets) == {
        ("grid", "cg"),
        ("grid", "cg (gaunt paths)"),
        ("gaunt", "cg"),
        ("gaunt", "cg (gaunt paths)"),
    }
    assert targets[("grid", "cg")]["met"] is True and targets[("grid", "cg (gaunt paths)")]["met"] is False
    assert targets[("gaunt", "cg")]["met"] is None and "cg (all paths)" in targets[("gaunt", "cg")]["target"]


def test_cli_writes_json_summary_and_plots(tmp_path, capsys):
    out = tmp_path / "layers"
    code = layers_main(
        [
            "--L",
            "1,2",
            "--conv-channels",
            "2",
            "--nodes",
            "8",
            "--edges",
            "24",
            "--many-body-channels",
            "2",
            "--atoms",
            "8",
            "--min-time",
            "0",
            "--min-repeats",
            "1",
            "--conv-products",
            "cg",
            "grid",
            "--many-body-products",
            "cg",
            "grid",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "gaunt-bench-layers/1" and "partial" not in results
    assert results["command"].startswith("gaunt bench --layers --L 1,2")
    assert {r["implementation"] for r in results["records"]} == {"cg", "grid"}
    summary = (out / "summary.md").read_text()
    assert "gaunt bench --layers" in summary and "| L | cg [cg] | grid [gaunt] |" in summary and "Machine:" in summary
    assert (out / "time_vs_L_convolution_float32_fwd_bwd.png").stat().st_size > 0
    assert (out / "time_vs_L_many-body_float32_fwd_bwd.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "cg [cg]" in printed and "written:" in printed  # labels survive rich's markup
    assert markdown_summary(results).count("**convolution:") == 1


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="unknown layers"):
        LayerPoints(tiny(layers=("attention",)))
