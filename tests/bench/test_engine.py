"""Tests of the one sweep engine (``gaunt.bench.engine``): first with a toy point generator (what is timed,
budgets, memory chunks, errors), then through both real generators (products and layers) alike. Tiny
sizes; no assertion on measured times."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import pytest
import torch

from gaunt.bench import points_layers, points_products
from gaunt.bench.budget import Budget, BudgetPolicy, RunConfig
from gaunt.bench.engine import Entry, Estimate, Point, Sweep

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- a toy generator
@dataclass
class ToyWorkload:
    log: list
    name: str
    guess: Estimate = field(default_factory=Estimate)
    fail: bool = False
    rows: int = 10
    unit: str = "row"

    def estimate(self) -> Estimate:
        self.log.append(("estimate", self.name))
        return self.guess

    def prepare(self, chunks: int):
        self.log.append(("prepare", self.name, chunks))
        return self._call, None

    def _call(self) -> None:
        if self.fail:
            raise RuntimeError("out of memory (toy)")
        torch.ones(4).sum()


@dataclass
class ToyPoints:
    """Points L = 1, 2, 3, one group each; ``entries(L, log)`` makes each point's entries."""

    cfg: RunConfig
    entries: object
    policy: BudgetPolicy = field(default_factory=BudgetPolicy)
    schema: str = "toy/1"
    log: list = field(default_factory=list)

    def groups(self):
        return [(L,) for L in (1, 2, 3)]

    def points(self, group, budget):
        (L,) = group
        fields = dict(shape="toy", L=L, channels=1, batch=10, dtype="float32", direction="fwd")
        yield Point(fields, ("toy",), self.entries(L, self.log))

    def ratios(self, records):
        for r in records:
            r["ratios_seen"] = len(records)

    def line(self, r):
        return f"{r['implementation']} L={r['L']} {r['status']}"


def ok(name: str, log: list, **work) -> Entry:
    return Entry(name, "f", "product", {"status": "ok", "reference": "ref"}, lambda: ToyWorkload(log, name, **work))


def toy_run(entries, policy: BudgetPolicy | None = None, **config) -> tuple[dict, list, list]:
    cfg = RunConfig(**dict(dict(min_time_s=0.0, min_repeats=1, max_repeats=2, fit_range=(1, 3)), **config))
    points = ToyPoints(cfg, entries, **({"policy": policy} if policy else {}))
    lines, checkpoints = [], []
    results = Sweep(points, log=lines.append, checkpoint=checkpoints.append).run()
    assert len(checkpoints) == 3 and lines == [points.line(r) for r in results["records"]]
    return results, points.log, lines


def by(results: dict, name: str) -> list[dict]:
    return sorted((r for r in results["records"] if r["implementation"] == name), key=lambda r: r["L"])


def test_only_what_agrees_and_is_not_untimed_is_timed():
    def never():
        raise AssertionError("a workload that must not be made")

    def entries(L, log):
        bad = Entry("bad", "f", "product", {"status": "disagrees", "reason": "differs"}, never)
        absent = Entry("absent", "f", "peer", {"status": "skipped", "reason": "not installed"})
        return [ok("good", log), ok("quiet", log), bad, absent]

    results, log, _ = toy_run(entries, untimed=("quiet",))
    assert results["schema"] == "toy/1" and len(results["records"]) == 12
    for r in by(results, "good"):
        assert r["status"] == "ok" and r["time_s"] > 0 and r["chunks"] == 1 and r["ratios_seen"] == 4
    assert all(r["status"] == "skipped" and r["reason"].startswith("not timed") for r in by(results, "quiet"))
    assert all(r["status"] == "disagrees" and r.get("time_s") is None for r in by(results, "bad"))
    assert all(r["reason"] == "not installed" for r in by(results, "absent"))
    assert {entry[1] for entry in log} == {"good"}  # nothing else was estimated or prepared
    assert [f["implementation"] for f in results["fits"]] == ["good"]


def test_memory_estimate_splits_into_chunks_or_skips():
    budget = 1000

    def entries(L, log):
        return [
            ok("chunked", log, guess=Estimate(peak_bytes=3500)),
            ok("floor", log, guess=Estimate(peak_bytes=10, floor_bytes=budget + 1)),
            ok("huge", log, guess=Estimate(peak_bytes=11 * budget)),
        ]

    results, log, _ = toy_run(entries, memory_budget_bytes=budget)
    assert all(r["status"] == "ok" and r["chunks"] == 4 for r in by(results, "chunked"))
    assert ("prepare", "chunked", 4) in log
    assert all(r["reason"].startswith("memory (inputs and outputs") for r in by(results, "floor"))
    assert all(r["reason"] == "memory (one row alone exceeds the memory budget)" for r in by(results, "huge"))
    assert not any(entry[0] == "prepare" and entry[1] != "chunked" for entry in log)


@pytest.mark.parametrize("word", ["budget", "over budget"])
def test_point_budget_stops_a_series(word):
    results, log, _ = toy_run(lambda L, log: [ok("a", log)], BudgetPolicy(word=word), point_budget_s=1e-12)
    first, second, third = by(results, "a")
    assert first["status"] == "ok"
    assert second["reason"].startswith(f"{word} (predicted") and "point budget" in second["reason"]
    assert third["reason"].startswith(f"{word} (series stopped at L=2")
    assert log.count(("estimate", "a")) == 1  # the skipped points never made their workload


def test_warmup_prediction_stops_a_series_and_an_error_too():
    def entries(L, log):
        slow = Estimate(time_s=1e3, basis="a 1/16 call", fields={"predicted_time_s": 1e3})
        return [ok("slow", log, guess=slow), ok("broken", log, fail=True)]

    results, log, _ = toy_run(entries, point_budget_s=10.0)
    slow = by(results, "slow")
    assert slow[0]["reason"].startswith("budget (one call predicted 1000 s from a 1/16 call > 2 x point budget")
    assert slow[0]["predicted_time_s"] == 1e3 and slow[0]["time_s"] is None
    assert all(r["reason"].startswith("budget (series stopped at L=1") for r in slow[1:])
    broken = by(results, "broken")
    assert broken[0]["status"] == "error" and "out of memory" in broken[0]["reason"]
    assert all(r["status"] == "skipped" and "series stopped at L=1" in r["reason"] for r in broken[1:])


def test_total_budget_and_entries_not_built_for_budget():
    def entries(L, log):
        peer = Entry("peer", "f", "peer", {"status": "skipped", "reason": "not built"}, over_budget=True)
        return [ok("a", log), peer]

    results, _, _ = toy_run(entries, total_budget_s=0.0)
    assert all("total time budget" in r["reason"] for r in results["records"])
    results, _, _ = toy_run(entries)  # within budget: the generator's reason stays
    assert all(r["reason"] == "not built" for r in by(results, "peer"))


def test_build_budget_predicts_from_smaller_L():
    budget = Budget(RunConfig(build_budget_s=10.0), BudgetPolicy(word="over budget"))
    assert budget.build_reason(("e3nn",), 2, "e3nn") is None
    budget.built(("e3nn",), 1, 1.0)
    assert budget.build_reason(("e3nn",), 2, "e3nn") is None  # 8 s predicted (L^3)
    reason = budget.build_reason(("e3nn",), 3, "e3nn")
    assert reason.startswith("over budget (e3nn construction predicted 27 s > build budget 10 s")


# ----------------------------------------------------------------------------- both real generators
QUICK = dict(min_time_s=0.0, min_repeats=1, max_repeats=1)


def products(**overrides):
    values = dict(shapes=("feature",), Ls=(1, 2), channels=(2,), batches=(8,), dtypes=("float32",))
    values.update(directions=("fwd+bwd",), products=("GridGauntProduct",), peers=("e3nn",), **QUICK)
    return points_products.ProductPoints(points_products.ProductConfig(**dict(values, **overrides)))


def layers(**overrides):
    values = dict(layers=("many-body",), Ls=(1, 2), many_body_channels=2, atoms=8, check_atoms=5, **QUICK)
    values.update(many_body_products=("grid", "cg (gaunt paths)"))
    return points_layers.LayerPoints(points_layers.LayerConfig(**dict(values, **overrides)))


GENERATORS = {
    # name: (make points, the implementation to test, its workload class, the input key a chunk splits)
    "products": (products, "GridGauntProduct", points_products.ProductWorkload, "x1"),
    "layers": (layers, "grid", points_layers.LayerWorkload, "A"),
}


def run(points) -> dict:
    return Sweep(points, log=lambda line: None).run()


@pytest.mark.parametrize("kind", GENERATORS)
def test_budget_skip_through_the_engine(kind):
    make, name, _, _ = GENERATORS[kind]
    points = make(Ls=(1, 2, 3), point_budget_s=1e-9)
    word = points.policy.word
    records = by(run(points), name)
    assert [r["L"] for r in records] == [1, 2, 3]
    assert all(r["status"] == "skipped" and r["reason"].startswith(word + " (") for r in records[1:])
    assert "series stopped" in records[2]["reason"] and records[2].get("time_s") is None


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_disagreeing_implementation_is_not_timed(kind, monkeypatch):
    make, name, workload, _ = GENERATORS[kind]
    product_outputs, layer_outputs = points_products._outputs, points_layers.LayerPoints._outputs

    def wrong_product(sets, name, reference, *rest):  # GridGauntProduct's output x 1.001
        mine, ref = product_outputs(sets, name, reference, *rest)
        return (1.001 * mine if name == "GridGauntProduct" else mine), ref

    def wrong_layer(self, sets, runner, reference, dtype):  # grid's output x 1.001
        mine, ref = layer_outputs(self, sets, runner, reference, dtype)
        return (1.001 * mine if runner.name == "grid" else mine), ref

    monkeypatch.setattr(points_products, "_outputs", wrong_product)
    monkeypatch.setattr(points_layers.LayerPoints, "_outputs", wrong_layer)
    made, estimate = [], workload.estimate
    monkeypatch.setattr(workload, "estimate", lambda self: made.append(self.runner.name) or estimate(self))
    results = run(make(Ls=(1,)))
    (r,) = by(results, name)
    assert r["status"] == "disagrees" and r.get("time_s") is None
    assert r["error_float64"] == pytest.approx(1e-3, rel=1e-6)
    assert "differs from" in r["reason"]
    others = [other["implementation"] for other in results["records"] if other.get("time_s")]
    assert others and made == others  # the others were timed; the wrong one never got a workload


@pytest.mark.parametrize("kind", GENERATORS)
def test_chunks_through_the_engine(kind, monkeypatch):
    make, name, workload, key = GENERATORS[kind]
    budget = 10 << 20
    estimate = workload.estimate

    def larger(self):
        guess = estimate(self)
        guess.peak_bytes, guess.floor_bytes = int(2.5 * budget), 0
        return guess

    calls = []
    call = workload._call
    monkeypatch.setattr(workload, "estimate", larger)
    monkeypatch.setattr(workload, "_call", lambda self, parts, *rest: calls.append(parts) or call(self, parts, *rest))
    results = run(make(Ls=(1,), memory_budget_bytes=budget))
    (r,) = by(results, name)
    assert r["status"] == "ok" and r["chunks"] == 3 and r["time_s"] > 0
    timed = [parts for parts in calls if len(parts) == 3]
    assert timed and all(sum(piece[key].shape[0] for piece, _ in parts) == 8 for parts in timed)


# ----------------------------------------------------------------------------- committed results
BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
COMMITTED = sorted(BENCHMARKS.glob("*/results.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_results_load_in_the_reports(path):
    from gaunt.bench.layer_report import evaluate_layer_targets, layer_tables, markdown_summary
    from gaunt.bench.report import evaluate_targets, markdown_report, tables
    from gaunt.bench.results import compute_fits, load

    results = load(str(path))
    assert results["records"] and results["schema"] in ("gaunt-bench/1", "gaunt-bench-layers/1")
    fits = compute_fits(results["records"], tuple(results["config"]["fit_range"]))
    assert len(fits) == len(results["fits"])
    if results["schema"] == "gaunt-bench/1":
        assert tables(results) and "| L |" in markdown_report(results)
        evaluate_targets(results)
    else:
        assert layer_tables(results) and "**Fitted cost exponents**" in markdown_summary(results)
        assert evaluate_layer_targets(results)


def test_committed_headline_runs_merge_as_committed():
    from gaunt.bench.results import load, merge_results

    parts = [load(str(BENCHMARKS / name / "results.json")) for name in ("cpu-headline-e3nn-L6-8", "cpu-headline")]
    merged, committed = merge_results(parts), load(str(BENCHMARKS / "cpu-headline-merged" / "results.json"))
    assert len(merged["records"]) == len(committed["records"]) and len(merged["runs"]) == 2
    key = lambda r: (r["L"], r["implementation"], r["status"], r.get("time_s"))  # noqa: E731
    assert sorted(map(key, merged["records"]), key=str) == sorted(map(key, committed["records"]), key=str)
