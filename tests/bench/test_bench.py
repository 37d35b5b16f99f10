"""Tests of ``gaunt bench``: the agreement gate (tested with deliberately wrong implementations), the
JSON document, the exponent fit, the budget and memory paths, the automatic choice. No assertion on
measured times (the machine is shared); every sweep here is tiny (L <= 2, a few channels, batch 8)."""

from __future__ import annotations

import copy
import json
import logging
import math

import pytest
import torch

from gaunt.bench import main, parse_L
from gaunt.bench import points_products as sweep_module
from gaunt.bench.auto import CANDIDATES, choose_product, clear_cache
from gaunt.bench.engine import Sweep
from gaunt.bench.gpu_peers import availability
from gaunt.bench.points_products import ProductConfig, ProductPoints
from gaunt.bench.products import build_e3nn, build_product, canonical, make_inputs, peer_runner
from gaunt.bench.report import evaluate_targets, markdown_report, tables
from gaunt.bench.timing import PeakMemory, fit_exponent, predict_time

RECORD_KEYS = {
    "shape",
    "L",
    "channels",
    "batch",
    "dtype",
    "direction",
    "device",
    "function",
    "implementation",
    "role",
    "status",
}
STATUSES = {"ok", "skipped", "disagrees", "error"}


def tiny(**overrides) -> ProductConfig:
    values = dict(
        shapes=("feature",),
        Ls=(1, 2),
        channels=(2,),
        batches=(8,),
        dtypes=("float32",),
        directions=("fwd",),
        peers=("e3nn", "CGProduct"),
        min_time_s=0.0,
        min_repeats=1,
        max_repeats=2,
    )
    values.update(overrides)
    return ProductConfig(**values)


def run(config: ProductConfig) -> dict:
    return Sweep(ProductPoints(config), log=lambda line: None).run()


def find(results: dict, **match) -> list[dict]:
    return [r for r in results["records"] if all(r[k] == v for k, v in match.items())]


# ----------------------------------------------------------------------------- the agreement gate
def _perturbed(factory, target: str, factor: float):
    """Wrap a runner factory so that implementation ``target`` returns ``factor *`` its output."""

    def wrapped(*args, **kwargs):
        runner = factory(*args, **kwargs)
        name = runner.name
        if name == target:
            forward = runner.forward
            runner.forward = lambda ins, w: factor * forward(ins, w)
        return runner

    return wrapped


def test_wrong_peer_gets_no_ratio(monkeypatch):
    monkeypatch.setattr(sweep_module, "peer_runner", _perturbed(sweep_module.peer_runner, "CGProduct", 1.001))
    results = run(tiny(Ls=(1,), products=("GridGauntProduct",)))
    wrong = find(results, implementation="CGProduct")
    assert wrong and all(r["status"] == "disagrees" for r in wrong)
    for r in wrong:
        assert r.get("time_s") is None and r.get("speedup_vs_e3nn") is None
        assert r["error_float64"] == pytest.approx(1e-3, rel=1e-6) and r["error_float64"] > r["tolerance_float64"]
        assert "differs from e3nn" in r["reason"]
    right = find(results, implementation="GridGauntProduct")
    assert right and all(r["status"] == "ok" and r["speedup_vs_e3nn"] > 0 for r in right)


def test_wrong_product_gets_no_ratio(monkeypatch):
    monkeypatch.setattr(sweep_module, "product_runner", _perturbed(sweep_module.product_runner, "GauntProduct", -1.0))
    results = run(tiny(Ls=(1,), products=("GauntProduct", "GridGauntProduct"), peers=("e3nn",)))
    (wrong,) = find(results, implementation="GauntProduct")
    assert wrong["status"] == "disagrees" and wrong.get("speedup_vs_e3nn") is None and wrong.get("time_s") is None
    assert wrong["error_float64"] == pytest.approx(2.0, rel=1e-9)
    assert "DISAGREES" in " ".join(" ".join(row) for _, _, rows, _ in tables(results) for row in rows)


def test_a_small_float32_error_is_tolerated_and_a_large_one_is_not(monkeypatch):
    # 1e-6 relative is a float32-size error: accepted in float32 but not in the float64 check
    monkeypatch.setattr(
        sweep_module, "product_runner", _perturbed(sweep_module.product_runner, "GridGauntProduct", 1 + 1e-6)
    )
    (r,) = find(run(tiny(Ls=(1,), products=("GridGauntProduct",), peers=("e3nn",))), implementation="GridGauntProduct")
    assert r["status"] == "disagrees" and r["error_float64"] > 1e-9 and r["error_dtype"] < 1e-4


def test_e3nn_converted_equals_e3nn_built_in_float32():
    product = build_product("GridGauntProduct", "feature", 3, 2)
    d, perm = canonical(product.descriptor())
    built = build_e3nn(d)
    from gaunt.products.e3nn_interop import to_e3nn

    tp32, scale = to_e3nn(d, dtype=torch.float32)
    converted = copy.deepcopy(built[0]).to(torch.float32)
    g = torch.Generator().manual_seed(0)
    ins = make_inputs(product, "feature", 5, torch.float32, "cpu", g)
    w = (
        scale * product.path_weights(torch.randn(product.weight_numel, generator=g, dtype=torch.float64))[perm]
    ).float()
    torch.testing.assert_close(converted(ins["x1"], ins["x2"], w), tp32(ins["x1"], ins["x2"], w), atol=0, rtol=0)


def test_peers_compute_the_products_function_in_float64():
    for shape, name in (("feature", "VectorGauntProduct"), ("edge", "GauntProduct"), ("edge", "SO2Product")):
        product = build_product(name, shape, 2, 3)
        d, perm = canonical(product.descriptor())
        g = torch.Generator().manual_seed(1)
        ins = make_inputs(product, shape, 6, torch.float64, "cpu", g)
        w = torch.randn(product.weight_numel, generator=g, dtype=torch.float64)
        second = ins["vectors"] if name == "SO2Product" else ins["x2"]
        expected = product(ins["x1"], second, w)
        for peer in ("e3nn", "CGProduct"):
            runner = peer_runner(peer, product, d, perm, torch.float64, "cpu")
            torch.testing.assert_close(runner.forward(ins, runner.weights(w)), expected, atol=1e-12, rtol=1e-10)


def test_fft_variant_is_timed_under_its_own_name():
    """ "GauntProduct[fft]" is GauntProduct(transform="fft"), a separate implementation of the same function:
    one peer set for both, each checked against e3nn and given its own ratio."""
    product = build_product("GauntProduct[fft]", "feature", 2, 2)
    assert product.transform == "fft" and build_product("GauntProduct", "feature", 2, 2).transform == "dft"
    results = run(tiny(Ls=(2,), products=("GauntProduct", "GauntProduct[fft]"), peers=("e3nn",)))
    for name in ("GauntProduct", "GauntProduct[fft]"):
        (r,) = find(results, implementation=name)
        assert r["status"] == "ok" and r["function"] == "gaunt" and r["reference"] == "e3nn", r
        assert r["error_float64"] <= 1e-9 and r["speedup_vs_e3nn"] > 0
    assert len(find(results, implementation="e3nn")) == 1


# ----------------------------------------------------------------------------- the JSON document
def test_json_schema_of_a_tiny_run(tmp_path):
    out = tmp_path / "bench"
    argv = [
        "--shapes",
        "feature",
        "edge",
        "--L",
        "1,2",
        "--channels",
        "2",
        "--batch",
        "8",
        "--dtype",
        "float32",
        "--direction",
        "fwd+bwd",
        "--min-time",
        "0",
        "--min-repeats",
        "2",
        "--out",
        str(out),
        "--no-plots",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "gaunt-bench/1" and results["command"].startswith("gaunt bench")
    for key in ("torch", "torch_threads", "cpu_model", "device", "load_average_1_5_15", "e3nn"):
        assert key in results["machine"]
    assert results["config"]["Ls"] == [1, 2] and results["memory_method"]
    records = results["records"]
    # 2 shapes x 2 L; feature: the registry's sphere products + 4 peers, edge: those and the edge products
    # (the Gaunt function and SO2's CG function) + 2 x 4 peers
    from gaunt.bench.products import benched_products

    BENCHED = benched_products()

    assert len(BENCHED["feature"]) == 4 and len(BENCHED["edge"]) == 6
    assert len(records) == 2 * ((4 + 4) + (6 + 2 * 4))
    for r in records:
        assert RECORD_KEYS <= r.keys() and r["status"] in STATUSES
        if r["status"] == "ok" and r["role"] == "product":
            assert r["time_s"] > 0 and r["repeats"] >= 2 and len(r["times_s"]) == r["repeats"]
            assert r["reference"] == "e3nn" and r["error_float64"] <= 1e-9 and r["error_dtype"] <= 1e-4
            assert r["speedup_vs_e3nn"] == pytest.approx(
                find(
                    results,
                    shape=r["shape"],
                    L=r["L"],
                    direction=r["direction"],
                    function=r["function"],
                    implementation="e3nn",
                )[0]["time_s"]
                / r["time_s"]
            )
            assert r["memory_estimate_bytes"] > 0 and r["chunks"] == 1
        if r["status"] != "ok":
            assert r.get("speedup_vs_e3nn") is None and r["reason"]
    cuda_peers = [r for r in records if r["implementation"] in ("cuequivariance", "openequivariance")]
    assert cuda_peers and all(r["status"] == "skipped" and r["reason"] for r in cuda_peers)
    assert {r["function"] for r in records if r["shape"] == "edge"} == {"gaunt", "so2"}
    assert "| L |" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def small_results() -> dict:
    return run(tiny(Ls=(1, 2), products=("GridGauntProduct",), peers=("e3nn", "CGProduct"), untimed=("CGProduct",)))


def test_plots_are_written(tmp_path, small_results):
    pytest.importorskip("matplotlib")
    from gaunt.bench.plots import plot_results

    paths = plot_results(small_results, str(tmp_path))
    assert len(paths) == 1 and paths[0].endswith("time_vs_L_feature_float32_fwd.png")  # one (shape, dtype, direction)
    with open(paths[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- fits and budgets
def test_exponent_fit_on_synthetic_data():
    Ls = list(range(1, 17))
    fit = fit_exponent(Ls, [2.5e-3 * L**3 for L in Ls])
    assert fit["exponent"] == pytest.approx(3.0, abs=1e-12) and fit["prefactor"] == pytest.approx(2.5e-3, rel=1e-10)
    assert fit["L"] == [4, 16] and fit["points"] == 13 and fit["rms_log_residual"] < 1e-12
    # points outside L = 4..16 are ignored: a different law below 4 does not move the slope
    fit = fit_exponent(Ls, [1.0 if L < 4 else L**6 for L in Ls])
    assert fit["exponent"] == pytest.approx(6.0, abs=1e-12)
    assert fit_exponent([4], [1.0]) is None and fit_exponent([1, 2, 3], [1, 2, 3]) is None
    assert predict_time({2: 1.0, 4: 8.0}, 8) == pytest.approx(64.0)  # fitted k = 3
    assert predict_time({2: 1.0}, 4, default_exponent=5.0) == pytest.approx(32.0)
    assert predict_time({}, 4) is None


def test_point_budget_skips_the_larger_L():
    results = run(tiny(Ls=(1, 2, 3), point_budget_s=1e-9, peers=("e3nn",)))
    for name in ("GridGauntProduct", "e3nn"):
        first, second, third = (find(results, implementation=name, L=L)[0] for L in (1, 2, 3))
        assert first["status"] == "ok"
        assert (
            second["status"] == "skipped"
            and second["reason"].startswith("budget (")
            and "predicted" in second["reason"]
        )
        assert third["status"] == "skipped" and third["reason"].startswith("budget")


def test_total_budget_and_memory_budget():
    results = run(tiny(Ls=(1,), total_budget_s=0.0, peers=()))
    assert all(r["status"] == "skipped" and "total time budget" in r["reason"] for r in results["records"])
    results = run(tiny(Ls=(1,), memory_budget_bytes=64, peers=()))
    assert all(r["status"] == "skipped" and r["reason"].startswith("memory") for r in results["records"])
    # a budget above the inputs but below the estimate: the batch is split into chunks, still timed
    from gaunt.bench.products import product_runner

    estimate = product_runner(build_product("GridGauntProduct", "feature", 2, 2), torch.float32, "cpu").memory(8, True)
    inputs = 4 * 8 * 3 * 18 * 2  # x1, x2, cotangent [8, 18] float32, and their gradients
    budget = max(inputs + 1, estimate // 3)
    assert budget < estimate
    results = run(
        tiny(Ls=(2,), memory_budget_bytes=budget, directions=("fwd+bwd",), peers=(), products=("GridGauntProduct",))
    )
    (grid,) = find(results, implementation="GridGauntProduct")
    assert grid["status"] == "ok" and grid["chunks"] == math.ceil(estimate / budget) > 1 and grid["time_s"] > 0


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory("cpu") as memory:
        x = torch.ones(16 << 20, dtype=torch.float32)  # 64 MiB, touched
        del x
    if memory.bytes is None:
        pytest.skip("/proc/self not available")
    assert memory.bytes >= 48 << 20


def test_cuda_peers_skip_with_a_reason_on_cpu():
    for peer in ("cuequivariance", "openequivariance"):
        reason = availability(peer, "cpu")
        assert reason and ("not installed" in reason or "needs a CUDA device" in reason)


def test_untimed_peer_is_checked_but_not_timed(small_results):
    for r in find(small_results, implementation="CGProduct"):
        assert r["status"] == "skipped" and r["reason"].startswith("not timed") and r.get("time_s") is None
        assert r["reference"] == "e3nn" and r["error_float64"] <= 1e-9


def test_merge_replaces_skipped_points_and_refits(small_results):
    from gaunt.bench.results import merge_results

    first = copy.deepcopy(small_results)
    for r in first["records"]:
        if r["L"] == 2:
            r.update(status="skipped", reason="budget (test)", time_s=None)
    merged = merge_results([first, small_results])
    assert len(merged["records"]) == len(small_results["records"]) and len(merged["runs"]) == 2
    (grid,) = [r for r in merged["records"] if r["implementation"] == "GridGauntProduct" and r["L"] == 2]
    assert grid["status"] == "ok" and grid["time_s"] > 0


def test_targets_are_reported_as_not_measured_without_data(small_results):
    results = small_results
    assert evaluate_targets(results) == []  # the headline configuration was not run
    targets = evaluate_targets(results, channels=2, batch=8, direction="fwd")
    assert {t["met"] for t in targets if "L=6" in t["target"] or "L=10" in t["target"]} == {None}
    assert "Fitted cost exponents" in markdown_report(results)


def test_parse_L():
    assert parse_L("1-4,8,16") == (1, 2, 3, 4, 8, 16) and parse_L("6") == (6,)


# ----------------------------------------------------------------------------- automatic choice
def test_auto_choice_returns_a_valid_exact_product(caplog):
    clear_cache()
    irreps = "4x0e+4x1o+4x2e"
    with caplog.at_level(logging.INFO, logger="gaunt.bench.auto"):
        choice = choose_product(irreps, irreps, irreps, "cpu", torch.float32, batch=16)
    assert choice.name in CANDIDATES and choice.reason.startswith(choice.name)
    assert set(choice.times_s) == set(CANDIDATES) and all(t > 0 and math.isfinite(t) for t in choice.times_s.values())
    assert any(choice.name in rec.getMessage() for rec in caplog.records)
    product = choice.build(internal_weights=False)
    assert type(product).__name__ == choice.name.split("[")[0]
    x = torch.randn(3, product.irreps_in1.dim, dtype=torch.float64)
    assert product(x, x, torch.ones(product.weight_numel, dtype=torch.float64)).shape == (3, product.irreps_out.dim)
    assert choose_product(irreps, irreps, irreps, "cpu", torch.float32, batch=16) is choice  # cached


def test_auto_choice_builds_variants_with_their_options():
    clear_cache()
    irreps = "2x0e+2x1o"
    choice = choose_product(irreps, irreps, irreps, batch=8, candidates=("GauntProduct[fft]",))
    assert choice.name == "GauntProduct[fft]" and choice.options == {"transform": "fft"}
    assert choice.build().transform == "fft" and choice.build(transform="dft").transform == "dft"


def test_auto_choice_names_inapplicable_candidates_and_refuses_bad_irreps():
    clear_cache()
    irreps = "2x0e+2x1o"
    choice = choose_product(irreps, irreps, irreps, batch=8, candidates=("GridGauntProduct", "NoSuchProduct"))
    assert choice.name == "GridGauntProduct" and "NoSuchProduct" in choice.reason
    with pytest.raises(ValueError, match="no candidate"):
        choose_product("2x0e+3x1o", irreps, irreps, batch=8)
