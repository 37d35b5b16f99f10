"""The sweep behind ``gaunt bench --layers``: agreement first, then timing within time and memory budgets.

For each layer and degree L (``layers`` module: what is built and compared):

1. Agreement, on small inputs (``check_nodes`` / ``check_edges`` / ``check_atoms``): every
   implementation's output against the reference of its function (the convolution: e3nn, built from
   the layer's own descriptor, for both functions; the many-body: ``"cg (gaunt paths)"`` for the Gaunt
   function, the all-paths CG chain is its own reference), in float64 (relative error <= 1e-9 of
   max |reference|) and in the benchmark dtype (float32: <= 1e-4), the product bench's tolerances.
   One that misses either is recorded ``disagrees`` and is never timed nor given a ratio.
2. Budgets, per series (layer, implementation): the total time; the point budget (a point is
   ``skipped: over budget`` when one call, predicted from the smaller L of the series with the fitted
   exponent, exceeds it, or when 16x the warm-up call on 1/16 of the edges or atoms exceeds twice it
   (small calls carry more overhead per edge, so that prediction runs high); a series over budget
   stays over budget at larger L; a timed point stops after the budget, with at least one call);
   e3nn's construction time, predicted alike; memory: the peak of the warm-up call (measured, then
   scaled to the full size) above the memory budget splits the call into sequential chunks of edges
   or atoms (the same work, ``chunks`` in the record).
3. Timing (``timing.time_call``): the median of the timed calls of forward + backward (gradients of
   the differentiable inputs -- node features, edge vectors and radial features; the atomic basis A
   -- and of every parameter, with a fixed random cotangent). Ratios: ``speedup[b] = t_b / t`` for
   each baseline b (``layers.BASELINES``, and e3nn for the convolution) timed in the same run, and
   ``cpu_speedup[b]`` the same from process CPU times (less sensitive to other processes).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from .layers import (BASELINES, CONVOLUTION_IMPLEMENTATIONS, LAYERS, MANY_BODY_IMPLEMENTATIONS, LayerRunner,
                     convolution_inputs, convolution_runners, many_body_inputs, many_body_runners, split_inputs)  # fmt: skip
from .products import relative_error
from .sweep import DTYPES, TOLERANCE, GiB, compute_fits
from .timing import MEMORY_METHOD, PeakMemory, machine_info, predict_time, synchronize, time_call

SCHEMA = "gaunt-bench-layers/1"
TARGET = {"layer": "many-body", "L": 4, "speedup": 10.0}  # the target for the Gaunt many-body at nu = 3


@dataclass
class LayerSweepConfig:
    """What ``gaunt bench --layers`` runs, and its budgets (seconds, bytes)."""

    layers: tuple[str, ...] = LAYERS
    Ls: tuple[int, ...] = (2, 4, 6)
    conv_channels: int = 32
    nodes: int = 1000
    edges: int = 16000
    many_body_channels: int = 64
    atoms: int = 1000
    correlation: int = 3
    conv_products: tuple[str, ...] = CONVOLUTION_IMPLEMENTATIONS
    many_body_products: tuple[str, ...] = MANY_BODY_IMPLEMENTATIONS
    dtype: str = "float32"
    direction: str = "fwd+bwd"
    device: str = "cpu"
    point_budget_s: float = 120.0
    build_budget_s: float = 120.0
    total_budget_s: float | None = None
    memory_budget_bytes: int = 8 * GiB
    min_time_s: float = 1.0
    min_repeats: int = 3
    max_repeats: int = 10
    warmup_fraction: float = 1 / 16
    check_nodes: int = 16
    check_edges: int = 48
    check_atoms: int = 16
    seed: int = 0
    fit_range: tuple[int, int] = (2, 16)


class LayerSweep:
    """``LayerSweep(config, log).run() -> results dict`` (schema ``gaunt-bench-layers/1``)."""

    def __init__(self, config: LayerSweepConfig, log: Callable[[str], None] = print,
                 checkpoint: Callable[[dict], None] | None = None) -> None:  # fmt: skip
        unknown = [x for x in config.layers if x not in LAYERS]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; expected some of {LAYERS}")
        if config.direction not in ("fwd", "fwd+bwd") or config.dtype not in DTYPES:
            raise ValueError(f"direction must be 'fwd' or 'fwd+bwd' and dtype one of {tuple(DTYPES)}")
        self.cfg, self.log, self.checkpoint = config, log, checkpoint
        self.device = torch.device(config.device)
        self.records: list[dict] = []
        self._history: dict[tuple, dict[int, float]] = {}
        self._stopped: dict[tuple, str] = {}
        self._builds: dict[int, float] = {}
        self._start = time.perf_counter()
        self._machine = machine_info(self.device)

    # ------------------------------------------------------------------ driver
    def run(self) -> dict:
        self._start = time.perf_counter()
        for layer in self.cfg.layers:
            for L in self.cfg.Ls:
                self._run_point(layer, L)
                if self.checkpoint is not None:
                    self.checkpoint(self.results())
        return self.results()

    def results(self) -> dict:
        return {"schema": SCHEMA, "config": asdict(self.cfg), "machine": self._machine,
                "machine_end": {"load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
                "elapsed_s": time.perf_counter() - self._start, "tolerances": TOLERANCE,
                "memory_method": MEMORY_METHOD["cuda" if self.device.type == "cuda" else "cpu"],
                "records": self.records, "fits": compute_fits(self.records, self.cfg.fit_range)}  # fmt: skip

    def _elapsed(self) -> float:
        return time.perf_counter() - self._start

    def _sizes(self, layer: str) -> tuple[int, int]:
        """(channels, batch): batch = nodes (convolution) or atoms (many-body)."""
        cfg = self.cfg
        return (cfg.conv_channels, cfg.nodes) if layer == "convolution" else (cfg.many_body_channels, cfg.atoms)

    def _inputs(self, layer: str, L: int, dtype: torch.dtype, full: bool) -> dict:
        cfg = self.cfg
        mul, _ = self._sizes(layer)
        if layer == "convolution":
            nodes, edges = (cfg.nodes, cfg.edges) if full else (cfg.check_nodes, cfg.check_edges)
            ins = convolution_inputs(L, mul, nodes, edges, dtype, cfg.seed + L)
        else:
            ins = many_body_inputs(L, mul, cfg.atoms if full else cfg.check_atoms, dtype, cfg.seed + L)
        return {k: v.to(self.device) for k, v in ins.items()}

    def _run_point(self, layer: str, L: int) -> None:
        cfg = self.cfg
        mul, batch = self._sizes(layer)
        point = dict(shape=layer, layer=layer, L=L, channels=mul, batch=batch, dtype=cfg.dtype, direction=cfg.direction,
                     device=str(self.device))  # fmt: skip
        point.update(edges=cfg.edges) if layer == "convolution" else point.update(correlation=cfg.correlation)
        runners, missing = self._build(layer, L, mul)
        checks = self._agreement(layer, L, runners)
        records = []
        for name, function, reason in missing:
            role = "peer" if name == "e3nn" else "layer"
            records.append(dict(point, function=function, implementation=name, role=role, status="skipped", reason=reason))
        inputs: dict | None = None
        for runner in runners:
            if runner.role == "reference":
                continue
            record = dict(point, function=runner.function, implementation=runner.name, role=runner.role,
                          build_s=runner.build_s, **checks[(runner.name, runner.function)])  # fmt: skip
            if record["status"] == "ok":
                if inputs is None:
                    inputs = self._inputs(layer, L, DTYPES[cfg.dtype], full=True)
                self._time(record, runner, inputs)
            records.append(record)
        self._ratios(layer, records)
        for record in records:
            self.records.append(record)
            self.log(_one_line(record))

    # ------------------------------------------------------------------ building and agreement
    def _build(self, layer: str, L: int, mul: int) -> tuple[list[LayerRunner], list[tuple[str, str, str]]]:
        """Runners (float64) and ``(name, function, reason)`` of those that could not be built."""
        cfg, missing = self.cfg, []
        if layer == "many-body":
            return many_body_runners(L, mul, cfg.correlation, cfg.many_body_products, cfg.seed), missing
        names = list(cfg.conv_products)
        e3nn_ok = True
        try:
            __import__("e3nn")
        except ImportError as exc:
            e3nn_ok = False
            if "e3nn" in names:
                missing.append(("e3nn", "cg", f"not installed ({exc})"))
        predicted = predict_time(self._builds, L, default_exponent=3.0)
        if e3nn_ok and predicted is not None and predicted > cfg.build_budget_s:
            e3nn_ok = False
            if "e3nn" in names:
                missing.append(("e3nn", "cg", f"over budget (e3nn construction predicted {predicted:.0f} s > "
                                              f"build budget {cfg.build_budget_s:.0f} s)"))  # fmt: skip
        if not e3nn_ok:
            names = [n for n in names if n != "e3nn"]
        runners = convolution_runners(L, mul, names, cfg.seed, e3nn_reference=e3nn_ok)
        built = [r.build_s for r in runners if r.name == "e3nn"]
        if built:
            self._builds[L] = max(built)
        return runners, missing

    def _agreement(self, layer: str, L: int, runners: list[LayerRunner]) -> dict[tuple[str, str], dict]:
        """``{(name, function): check fields}`` (status ok / disagrees, reference, errors)."""
        dtype_name = self.cfg.dtype
        dtype = DTYPES[dtype_name]
        ins64 = self._inputs(layer, L, torch.float64, full=False)
        ins = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in ins64.items()}
        checks = {}
        for function in dict.fromkeys(r.function for r in runners):
            members = [r for r in runners if r.function == function]
            reference = _reference(layer, members)
            with torch.no_grad():
                ref64 = reference.forward(reference.module(torch.float64).to(self.device), ins64)
                ref = reference.forward(reference.module(dtype).to(self.device), ins)
                for r in members:
                    if r is reference:
                        checks[(r.name, function)] = {"status": "ok", "reference": "self"}
                        continue
                    e64 = relative_error(r.forward(r.module(torch.float64).to(self.device), ins64), ref64)
                    ed = relative_error(r.forward(r.module(dtype).to(self.device), ins), ref)
                    ok = e64 <= TOLERANCE["float64"] and ed <= TOLERANCE[dtype_name]
                    checks[(r.name, function)] = {"status": "ok" if ok else "disagrees", "reference": reference.name,
                                                  "error_float64": e64, "error_dtype": ed}  # fmt: skip
                    if not ok:
                        checks[(r.name, function)]["reason"] = (
                            f"differs from {reference.name}: relative error {e64:.1e} (float64, tol "
                            f"{TOLERANCE['float64']:.0e}), {ed:.1e} ({dtype_name}, tol {TOLERANCE[dtype_name]:.0e})")
        return checks

    # ------------------------------------------------------------------ timing one point
    def _time(self, record: dict, runner: LayerRunner, inputs: dict) -> None:
        cfg, L, layer = self.cfg, record["L"], record["layer"]
        key = (layer, runner.name, runner.function)
        record.update(time_s=None, chunks=1)
        skip = self._budget_reason(key, L)
        if skip is not None:
            record.update(status="skipped", reason=skip)
            return
        backward = cfg.direction == "fwd+bwd"
        module = runner.module(DTYPES[cfg.dtype]).to(self.device)
        params = [p for p in module.parameters() if p.requires_grad] if backward else []
        ins = {k: (v.detach().requires_grad_(backward) if k in runner.grad_keys else v) for k, v in inputs.items()}
        features = ins["x" if layer == "convolution" else "A"]  # both layers: output irreps = input irreps
        g = torch.Generator().manual_seed(cfg.seed + 7)
        cotangent = torch.randn(features.shape, generator=g, dtype=torch.float64).to(device=self.device, dtype=features.dtype)

        def call(parts) -> None:
            with torch.set_grad_enabled(backward):
                for piece, cot in parts:
                    out = runner.forward(module, piece)
                    if backward:
                        torch.autograd.grad(out, [piece[k] for k in runner.grad_keys] + params, cot)

        # warm-up on a fraction of the edges / atoms: its time and peak memory, scaled, predict one full call
        n = inputs["vectors" if layer == "convolution" else "A"].shape[0]
        pieces = max(1, min(round(1 / cfg.warmup_fraction), n))
        warm = split_inputs(layer, ins, cotangent, pieces)[:1]
        start = time.perf_counter()
        with PeakMemory(self.device) as memory:
            call(warm)
            synchronize(self.device)
        warm_s = time.perf_counter() - start
        predicted_s, predicted_peak = warm_s * pieces, None if memory.bytes is None else memory.bytes * pieces
        record.update(warmup_s=warm_s, predicted_time_s=predicted_s, predicted_peak_bytes=predicted_peak)
        if predicted_s > 2 * cfg.point_budget_s:
            why = f"one call predicted {predicted_s:.0f} s from a 1/{pieces} call > 2 x point budget {cfg.point_budget_s:.0f} s"
            self._stopped[key] = f"over budget (series stopped at L={L}: {why})"
            record.update(status="skipped", reason=f"over budget ({why})")
            return
        chunks = 1 if predicted_peak is None else max(1, math.ceil(predicted_peak / cfg.memory_budget_bytes))
        if chunks > n:
            record.update(status="skipped", reason="memory (one edge or atom alone exceeds the memory budget)")
            return
        parts = split_inputs(layer, ins, cotangent, chunks)
        try:
            t = time_call(lambda: call(parts), self.device, warmup=lambda: None, min_time=cfg.min_time_s,
                          min_repeats=cfg.min_repeats, max_repeats=cfg.max_repeats, max_time=cfg.point_budget_s)  # fmt: skip
        except RuntimeError as exc:  # out of memory despite the estimate
            record.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:200]}")
            self._stopped[key] = f"over budget (error at L={L})"
            return
        record.update(time_s=t.median_s, times_s=t.times_s, cpu_time_s=t.cpu_median_s, repeats=t.repeats, chunks=chunks,
                      peak_memory_bytes=t.peak_memory_bytes,
                      load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)  # fmt: skip
        if t.stopped_early:
            record["note"] = f"{t.repeats} timed call(s): the point budget ran out before {cfg.min_repeats}"
        self._history.setdefault(key, {})[L] = t.median_s

    def _budget_reason(self, key: tuple, L: int) -> str | None:
        cfg = self.cfg
        if cfg.total_budget_s is not None and self._elapsed() > cfg.total_budget_s:
            return f"over budget (total time budget of {cfg.total_budget_s:.0f} s spent)"
        if key in self._stopped:
            return self._stopped[key]
        history = self._history.get(key, {})
        predicted = predict_time(history, L, default_exponent=4.0)
        if predicted is not None and predicted > cfg.point_budget_s:
            why = f"predicted {predicted:.0f} s per call from L <= {max(history)} > point budget {cfg.point_budget_s:.0f} s"
            self._stopped[key] = f"over budget (series stopped at L={L}: {why})"
            return f"over budget ({why})"
        return None

    @staticmethod
    def _ratios(layer: str, records: list[dict]) -> None:
        timed = {r["implementation"]: r for r in records if r.get("time_s") and r["status"] == "ok"}
        for r in records:
            r["speedup"], r["cpu_speedup"] = {}, {}
            if r["implementation"] not in timed:
                continue
            for base in BASELINES[layer] + (("e3nn",) if layer == "convolution" else ()):
                if base in timed and base != r["implementation"]:
                    r["speedup"][base] = timed[base]["time_s"] / r["time_s"]
                    # from process CPU times: less sensitive to other processes taking the cores
                    if r["cpu_time_s"] > 0:
                        r["cpu_speedup"][base] = timed[base]["cpu_time_s"] / r["cpu_time_s"]


def _reference(layer: str, members: list[LayerRunner]) -> LayerRunner:
    """The agreement reference of one function: e3nn (convolution), "cg (gaunt paths)" (many-body Gaunt
    function), else the first implementation."""
    for name in ("e3nn", "cg (gaunt paths)"):
        for r in members:
            if r.name == name:
                return r
    return members[0]


def _one_line(r: dict) -> str:
    head = f"{r['layer']:>11} L={r['L']:<2} mul={r['channels']:<3} {r['implementation'] + ' [' + r['function'] + ']':<28}"
    if r.get("time_s"):
        ratios = "".join(f"  x{v:.2f} vs {k}" for k, v in r.get("speedup", {}).items())
        chunks = f" ({r['chunks']} chunks)" if r.get("chunks", 1) > 1 else ""
        return f"{head} {r['time_s'] * 1e3:10.1f} ms{ratios}{chunks}"
    return f"{head} {r['status']}: {r.get('reason', '')}"


__all__ = ["LayerSweepConfig", "LayerSweep", "SCHEMA", "TARGET"]
