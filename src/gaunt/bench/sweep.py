"""The sweep behind ``gaunt bench``: build, check agreement, time, within time and memory budgets.

For every (shape, channels, L) a *group* is built: our products, and per function they compute (the
canonical descriptor, see ``products.canonical``) the peers (e3nn, CGProduct on the same paths, the
CUDA peers). Then for every (batch, dtype, direction) every runner gets one record:

1. Agreement, once per group and dtype, on ``check_batch`` samples: each runner's output against the
   reference (e3nn when it was built, else CGProduct), in float64 (relative error <= 1e-9 of
   max |reference|) and in the benchmark dtype (float32: <= 1e-4). A runner that misses either is
   recorded as ``disagrees`` with its errors, and is not timed: no ratio is ever reported for it.
2. Budgets (the reason is recorded as ``skipped: ...``): the total time; the point budget (skip when
   two calls at the time predicted from the smaller L of the same series, with the fitted exponent,
   exceed it; once a series is skipped for budget, its larger L are too; a point that is timed stops
   after the budget even if fewer than ``min_repeats`` calls were made, and says so); e3nn's construction
   time, predicted the same way; memory: the estimated peak of one call (``products.Runner.memory``)
   above the memory budget splits the batch into sequential chunks (``chunks`` in the record: the
   same work, e.g. gradient accumulation), and inputs + outputs alone above it skip the point.
3. Timing (``timing.time_call``): one warm-up call on up to 1024 samples, then the median of timed
   calls; forward ("fwd") runs under ``torch.no_grad``, forward+backward ("fwd+bwd") takes the
   gradients of every input and the weights with ``torch.autograd.grad`` and a fixed random cotangent.
   ``speedup_vs_e3nn = t_e3nn / t`` for the same point and function (and ``cpu_speedup_vs_e3nn``
   from the process CPU times, which other processes on a shared machine disturb less).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from .products import (PEERS, PRODUCTS, Runner, build_e3nn, build_product, canonical, make_inputs, peer_runner,
                       product_name, product_runner, relative_error)  # fmt: skip
from .timing import MEMORY_METHOD, fit_exponent, machine_info, predict_time, time_call

GiB = 1 << 30
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DIRECTIONS = ("fwd", "fwd+bwd")
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}  # relative to max |reference|
SCHEMA = "gaunt-bench/1"


@dataclass
class SweepConfig:
    """Everything a sweep varies and its budgets (seconds, bytes). ``products=None``: all of the shape."""

    shapes: tuple[str, ...] = ("feature", "edge")
    Ls: tuple[int, ...] = tuple(range(1, 17))
    channels: tuple[int, ...] = (1, 16, 64, 128)
    batches: tuple[int, ...] = (1000, 10000, 100000)
    dtypes: tuple[str, ...] = ("float32", "float64")
    directions: tuple[str, ...] = DIRECTIONS
    products: tuple[str, ...] | None = None
    peers: tuple[str, ...] = PEERS
    device: str = "cpu"
    point_budget_s: float = 60.0
    build_budget_s: float = 120.0
    total_budget_s: float | None = None
    memory_budget_bytes: int = 8 * GiB
    min_time_s: float = 1.0
    min_repeats: int = 3
    max_repeats: int = 25
    check_batch: int = 16
    seed: int = 0
    fit_range: tuple[int, int] = (4, 16)
    untimed: tuple[str, ...] = ()  # implementations only used for the agreement check, never timed


@dataclass
class _Function:
    """Products computing one function (one canonical descriptor) and the float64 peers built for it."""

    label: str
    descriptor: object
    products: list = field(default_factory=list)  # (module, perm, build_s)
    peers: dict = field(default_factory=dict)  # name -> (built float64 object | None, reason | None, build_s)


class Sweep:
    """``Sweep(config, log).run() -> results dict`` (the JSON document; see ``SCHEMA``)."""

    def __init__(self, config: SweepConfig, log: Callable[[str], None] = print,
                 checkpoint: Callable[[dict], None] | None = None) -> None:  # fmt: skip
        self.cfg = config
        self.log = log
        self.checkpoint = checkpoint  # called with the results so far after every group
        self.device = torch.device(config.device)
        self.records: list[dict] = []
        self._history: dict[tuple, dict[int, float]] = {}
        self._stopped: dict[tuple, str] = {}
        self._builds: dict[tuple, dict[int, float]] = {}
        self._start = 0.0

    # ------------------------------------------------------------------ driver
    def run(self) -> dict:
        self._start = time.perf_counter()
        self._machine = machine_info(self.device)
        for shape in self.cfg.shapes:
            for mul in self.cfg.channels:
                for L in self.cfg.Ls:
                    self._run_group(shape, mul, L)
                    if self.checkpoint is not None:
                        self.checkpoint(self.results())
        return self.results()

    def results(self) -> dict:
        """The results document so far."""
        return {
            "schema": SCHEMA, "config": asdict(self.cfg), "machine": self._machine,
            "machine_end": {"load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
            "elapsed_s": time.perf_counter() - self._start, "tolerances": TOLERANCE,
            "memory_method": MEMORY_METHOD["cuda" if self.device.type == "cuda" else "cpu"],
            "records": self.records, "fits": self.fits(),
        }  # fmt: skip

    def _elapsed(self) -> float:
        return time.perf_counter() - self._start

    def _run_group(self, shape: str, mul: int, L: int) -> None:
        functions = self._build_group(shape, mul, L)
        for dtype_name in self.cfg.dtypes:
            dtype = DTYPES[dtype_name]
            for fn in functions:
                runners, checks = self._runners_and_checks(fn, shape, L, dtype_name)
                for batch in self.cfg.batches:
                    inputs = None
                    for direction in self.cfg.directions:
                        point = dict(shape=shape, L=L, channels=mul, batch=batch, dtype=dtype_name,
                                     direction=direction, device=str(self.device), function=fn.label)  # fmt: skip
                        records = []
                        for name, runner in runners.items():
                            record = dict(point, implementation=name, role=runner.role if isinstance(runner, Runner)
                                          else ("product" if name in PRODUCTS[shape] else "peer"), **checks[name])  # fmt: skip
                            if not isinstance(runner, Runner) and str(runner).startswith("budget (every e3nn"):
                                series = self._series(shape, mul, batch, dtype_name, direction, fn.label, name)
                                record["reason"] = self._budget_reason(series, L, "peer") or record["reason"]
                            if isinstance(runner, Runner):
                                record["build_s"] = runner.build_s
                                if record["status"] == "ok":
                                    if inputs is None:
                                        inputs = _Lazy(lambda: self._inputs(fn, shape, batch, dtype))
                                    self._time(record, runner, inputs, dtype, _io_width(fn.products[0][0]))
                            records.append(record)
                        self._ratios(records)
                        for record in records:
                            self.records.append(record)
                            self.log(_one_line(record))

    # ------------------------------------------------------------------ building
    def _build_group(self, shape: str, mul: int, L: int) -> list[_Function]:
        names = [p for p in PRODUCTS[shape] if self.cfg.products is None or p in self.cfg.products]
        functions: dict[object, _Function] = {}
        for name in names:
            start = time.perf_counter()
            product = build_product(name, shape, L, mul)
            d, perm = canonical(product.descriptor())
            label = "so2" if name == "SO2Product" else "gaunt"
            fn = functions.setdefault(d, _Function(label if all(f.label != label for f in functions.values())
                                                   else f"{label}{len(functions)}", d))  # fmt: skip
            fn.products.append((product, perm, time.perf_counter() - start))
        for fn in functions.values():
            product, perm, _ = fn.products[0]
            for peer in self.cfg.peers:
                fn.peers[peer] = self._build_peer(peer, fn, product, perm, shape, mul, L)
        return list(functions.values())

    def _build_peer(self, peer, fn, product, perm, shape, mul, L):
        """``(built, reason, build_s)``: e3nn is built once in float64 within the build budget and only
        while some e3nn series at this L can still be timed; others are built per dtype later."""
        if peer in ("cuequivariance", "openequivariance"):
            from .gpu_peers import availability

            return None, availability(peer, self.device), 0.0
        if peer != "e3nn":
            return None, None, 0.0
        key = (shape, mul, fn.label)
        series = [self._series(shape, mul, b, dt, di, fn.label, "e3nn")
                  for b in self.cfg.batches for dt in self.cfg.dtypes for di in self.cfg.directions]  # fmt: skip
        if all(self._budget_reason(s, L, "peer") is not None for s in series):
            return None, "budget (every e3nn series is over its budget at this L)", 0.0
        predicted = predict_time(self._builds.get(key, {}), L, default_exponent=3.0)
        if predicted is not None and predicted > self.cfg.build_budget_s:
            return None, f"budget (e3nn construction predicted {predicted:.0f} s > build budget {self.cfg.build_budget_s:.0f} s)", 0.0
        start = time.perf_counter()
        built = build_e3nn(fn.descriptor)
        seconds = time.perf_counter() - start
        self._builds.setdefault(key, {})[L] = seconds
        return built, None, seconds

    def _runners_and_checks(self, fn: _Function, shape: str, L: int, dtype_name: str):
        """Runners in the benchmark dtype (or the reason they are missing) and each one's agreement."""
        dtype = DTYPES[dtype_name]
        first, first_perm, _ = fn.products[0]
        runners: dict[str, Runner | str] = {}
        runners64: dict[str, Runner] = {}
        for product, _, build_s in fn.products:
            runners[product_name(product)] = product_runner(product, dtype, self.device)
            runners[product_name(product)].build_s = build_s
            runners64[product_name(product)] = product_runner(product, torch.float64, self.device)
        for peer, (built, reason, build_s) in fn.peers.items():
            if reason is not None:
                runners[peer] = reason
                continue
            try:
                start = time.perf_counter()
                runners[peer] = peer_runner(peer, first, fn.descriptor, first_perm, dtype, self.device, built)
                runners[peer].build_s = build_s + time.perf_counter() - start  # e3nn: float64 build + conversion
                runners64[peer] = peer_runner(peer, first, fn.descriptor, first_perm, torch.float64, self.device, built)
            except RuntimeError as exc:
                runners[peer] = str(exc)
        for runner in runners.values():
            if isinstance(runner, Runner):
                runner.function = fn.label
        checks = {name: ({"status": "skipped", "reason": r} if isinstance(r, str) else {}) for name, r in runners.items()}
        reference = "e3nn" if "e3nn" in runners64 else "CGProduct" if "CGProduct" in runners64 else None
        g = torch.Generator().manual_seed(self.cfg.seed + 1000 * L)
        ins64 = make_inputs(first, shape, self.cfg.check_batch, torch.float64, self.device, g)
        ins = {k: v.to(dtype) for k, v in ins64.items()}
        sources = {product_name(p): (p, perm) for p, perm, _ in fn.products}
        for name in runners64:
            source, perm = sources.get(name, (first, first_perm))
            w64 = torch.randn(source.weight_numel, generator=g, dtype=torch.float64)
            if reference is None or name == reference:
                checks[name] = {"status": "ok", "reference": "self" if name == reference else None}
                continue
            ref64, ref = runners64[reference], runners[reference]
            with torch.no_grad():
                e64 = relative_error(runners64[name].forward(ins64, runners64[name].weights(w64, source, perm)),
                                     ref64.forward(ins64, ref64.weights(w64, source, perm)))  # fmt: skip
                ed = relative_error(runners[name].forward(ins, runners[name].weights(w64, source, perm)),
                                    ref.forward(ins, ref.weights(w64, source, perm)))  # fmt: skip
            ok = e64 <= TOLERANCE["float64"] and ed <= TOLERANCE[dtype_name]
            checks[name] = {"status": "ok" if ok else "disagrees", "reference": reference, "error_float64": e64,
                            "error_dtype": ed, "tolerance_float64": TOLERANCE["float64"],
                            "tolerance_dtype": TOLERANCE[dtype_name]}  # fmt: skip
            if not ok:
                checks[name]["reason"] = (f"differs from {reference}: relative error {e64:.1e} (float64, tol "
                                          f"{TOLERANCE['float64']:.0e}), {ed:.1e} ({dtype_name}, tol {TOLERANCE[dtype_name]:.0e})")  # fmt: skip
        return runners, checks

    def _inputs(self, fn: _Function, shape: str, batch: int, dtype: torch.dtype) -> dict:
        first = fn.products[0][0]
        g = torch.Generator().manual_seed(self.cfg.seed + batch)
        ins = make_inputs(first, shape, batch, dtype, self.device, g)
        ins["cotangent"] = torch.randn(batch, first.irreps_out.dim, generator=g, dtype=dtype).to(self.device)
        ins["w64"] = {product_name(p): torch.randn(p.weight_numel, generator=g, dtype=torch.float64)
                      for p, _, _ in fn.products}  # fmt: skip
        ins["sources"] = {product_name(p): (p, perm) for p, perm, _ in fn.products}
        return ins

    # ------------------------------------------------------------------ timing one point
    def _series(self, shape, mul, batch, dtype, direction, function, name) -> tuple:
        return (shape, mul, batch, dtype, direction, function, name)

    def _time(self, record: dict, runner: Runner, lazy_inputs: "_Lazy", dtype: torch.dtype, width: int) -> None:
        """Time one point (``width``: numbers per sample in x1, x2 or vectors, and the output)."""
        cfg, L, batch = self.cfg, record["L"], record["batch"]
        backward = record["direction"] == "fwd+bwd"
        key = self._series(record["shape"], record["channels"], batch, record["dtype"], record["direction"],
                           record["function"], record["implementation"])  # fmt: skip
        record.update(time_s=None, chunks=1, memory_estimate_bytes=runner.memory(batch, backward))
        if record["implementation"] in cfg.untimed:
            record.update(status="skipped", reason="not timed (untimed: used for the agreement check only)")
            return
        skip = self._budget_reason(key, L, runner.role)
        if skip is not None:
            record.update(status="skipped", reason=skip)
            return
        itemsize = torch.empty((), dtype=dtype).element_size()
        io = itemsize * batch * width
        if io * (2 if backward else 1) > cfg.memory_budget_bytes:
            skip = f"memory (inputs, outputs and their gradients alone need {io * (2 if backward else 1) / GiB:.1f} GiB > budget)"
        chunks = max(1, math.ceil(record["memory_estimate_bytes"] / cfg.memory_budget_bytes))
        if skip is None and chunks > batch:
            skip = "memory (one sample alone exceeds the memory budget)"
        if skip is not None:
            record.update(status="skipped", reason=skip)
            return
        inputs = lazy_inputs()
        name = record["implementation"]
        source, perm = inputs["sources"].get(name) or next(iter(inputs["sources"].values()))
        w64 = inputs["w64"][product_name(source)]
        weight = runner.weights(w64, source, perm).detach().requires_grad_(backward)
        data = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor) and k != "cotangent"}
        bounds = [(i * batch // chunks, (i + 1) * batch // chunks) for i in range(chunks)]
        pieces = [({k: v[a:b].detach().requires_grad_(backward) for k, v in data.items()}, inputs["cotangent"][a:b])
                  for a, b in bounds]  # fmt: skip
        warm = [({k: v[: min(1024, v.shape[0])] for k, v in pieces[0][0].items()}, pieces[0][1][:1024])]

        def call(parts=pieces) -> None:
            with torch.set_grad_enabled(backward):
                for ins, cotangent in parts:
                    out = runner.forward(ins, weight)
                    if backward:
                        torch.autograd.grad(out, [*ins.values(), weight], cotangent)

        try:
            t = time_call(call, self.device, warmup=lambda: call(warm), min_time=cfg.min_time_s,
                          min_repeats=cfg.min_repeats, max_repeats=cfg.max_repeats, max_time=cfg.point_budget_s)  # fmt: skip
        except RuntimeError as exc:  # e.g. out of memory despite the estimate
            record.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:200]}")
            self._stopped[key] = f"budget (error at L={L})"
            return
        record.update(time_s=t.median_s, times_s=t.times_s, cpu_time_s=t.cpu_median_s, repeats=t.repeats,
                      warmup_s=t.warmup_s, chunks=chunks, peak_memory_bytes=t.peak_memory_bytes,
                      load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)  # fmt: skip
        if t.stopped_early:
            record["note"] = f"{t.repeats} timed call(s): the point budget ran out before {cfg.min_repeats}"
        self._history.setdefault(key, {})[L] = t.median_s

    def _budget_reason(self, key: tuple, L: int, role: str) -> str | None:
        cfg = self.cfg
        if cfg.total_budget_s is not None and self._elapsed() > cfg.total_budget_s:
            return f"budget (total time budget of {cfg.total_budget_s:.0f} s spent)"
        if key in self._stopped:
            return self._stopped[key]
        history = self._history.get(key, {})
        predicted = predict_time(history, L, default_exponent=4.0 if role == "peer" else 3.0)
        if predicted is not None and 2 * predicted > cfg.point_budget_s:
            why = (f"predicted {predicted:.1f} s per call (from L <= {max(history)}): two calls exceed the "
                   f"point budget of {cfg.point_budget_s:.0f} s")  # fmt: skip
            self._stopped[key] = f"budget (series stopped at L={L}: {why})"
            return f"budget ({why})"
        return None

    @staticmethod
    def _ratios(records: list[dict]) -> None:
        e3nn = next((r for r in records if r["implementation"] == "e3nn" and r.get("time_s")), None)
        for r in records:
            if r.get("time_s") and r["status"] == "ok" and e3nn is not None:
                r["speedup_vs_e3nn"] = e3nn["time_s"] / r["time_s"]
                # the same from process CPU time: less sensitive to other processes taking the cores
                r["cpu_speedup_vs_e3nn"] = e3nn["cpu_time_s"] / r["cpu_time_s"] if r["cpu_time_s"] > 0 else None
            else:
                r["speedup_vs_e3nn"] = r["cpu_speedup_vs_e3nn"] = None

    def fits(self) -> list[dict]:
        return compute_fits(self.records, self.cfg.fit_range)


def compute_fits(records: list[dict], fit_range: tuple[int, int] = (4, 16)) -> list[dict]:
    """Fitted cost exponent per series (shape, channels, batch, dtype, direction, function,
    implementation) over ``fit_range``, from the points that were timed."""
    fields = ("shape", "channels", "batch", "dtype", "direction", "function", "implementation")
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in records:
        if r.get("time_s"):
            series.setdefault(tuple(r[f] for f in fields), []).append((r["L"], r["time_s"]))
    out = []
    for key, points in series.items():
        fit = fit_exponent([p[0] for p in points], [p[1] for p in points], *fit_range)
        if fit is not None:
            out.append(dict(zip(fields, key), **fit))
    return out


def merge_results(documents: list[dict]) -> dict:
    """One document from several runs: records concatenated (a later run's record for the same point
    and implementation replaces an earlier *skipped* one), fits recomputed; ``runs`` keeps each run's
    command, machine and config."""
    fields = ("shape", "L", "channels", "batch", "dtype", "direction", "function", "implementation")
    merged: dict[tuple, dict] = {}
    for doc in documents:
        for r in doc["records"]:
            key = tuple(r[f] for f in fields)
            if key not in merged or merged[key]["status"] != "ok":
                merged[key] = dict(r, run=doc.get("command"))
    first = documents[0]
    fit_range = tuple(first["config"].get("fit_range", (4, 16)))
    records = list(merged.values())
    return dict(first, records=records, fits=compute_fits(records, fit_range), elapsed_s=sum(d.get("elapsed_s", 0.0) for d in documents), command=" + ".join(
        str(d.get("command")) for d in documents), runs=[{k: d.get(k) for k in ("command", "machine", "machine_end", "config",
                                                                              "elapsed_s")} for d in documents])  # fmt: skip


def _io_width(product: torch.nn.Module) -> int:
    """Numbers per sample in the inputs (x1, and x2 or the edge vector) and the output of a point."""
    second = 3 if type(product).__name__ == "SO2Product" else product.irreps_in2.dim
    return product.irreps_in1.dim + second + product.irreps_out.dim


class _Lazy:
    """A value computed on first call (the full-batch inputs: made only if some runner is timed)."""

    def __init__(self, make: Callable[[], dict]) -> None:
        self._make, self._value = make, None

    def __call__(self) -> dict:
        if self._value is None:
            self._value = self._make()
        return self._value


def _one_line(r: dict) -> str:
    head = f"{r['shape']:>7} L={r['L']:<2} mul={r['channels']:<3} B={r['batch']:<6} {r['dtype']} {r['direction']:<7} {r['implementation'] + ' [' + r['function'] + ']':<28}"
    if r.get("time_s"):
        speed = f"  x{r['speedup_vs_e3nn']:.1f} vs e3nn" if r.get("speedup_vs_e3nn") and r["implementation"] != "e3nn" else ""
        chunks = f" ({r['chunks']} chunks)" if r.get("chunks", 1) > 1 else ""
        return f"{head} {r['time_s'] * 1e3:10.2f} ms{speed}{chunks}"
    return f"{head} {r['status']}: {r.get('reason', '')}"


__all__ = ["SweepConfig", "Sweep", "compute_fits", "merge_results", "TOLERANCE", "DTYPES", "DIRECTIONS", "SCHEMA", "GiB"]
