"""The one sweep engine of ``gaunt bench`` (products) and ``gaunt bench --layers`` (layers).

A *point generator* (``points_products.ProductPoints``, ``points_layers.LayerPoints``) says what is
measured: groups of points, the implementations at each point, their agreement with the reference of
their function (checked with :func:`agreement` while the generator builds them), the workload that
times each one, and the ratios between them. The engine does the rest, the same way for both:

1. Agreement: an implementation's output against its function's reference on small inputs, in float64
   (relative error <= 1e-9 of max |reference|) and in the benchmark dtype (float32: <= 1e-4). One that
   misses either is recorded ``disagrees`` with its errors and is never timed: it never gets a ratio.
2. Budgets (``budget.Budget``; the reason is recorded as ``skipped: <word> (...)``, ``word`` from the
   generator's ``budget.BudgetPolicy``): the total time; the point budget per *series* (one implementation
   of one function over L, everything else fixed): a point is skipped when ``policy.calls`` calls at
   the time predicted from the smaller L of the series (fitted exponent) exceed it, or when one call
   predicted by the workload's own warm-up exceeds twice it; a series over budget stays over budget at
   larger L; a timed point stops after the budget (at least one call, and the record says so); the
   construction of a peer (e3nn), predicted from the smaller L alike, against the build budget.
3. Memory: the workload's estimate of one call's peak above the memory budget splits the call into
   sequential chunks (``chunks`` in the record: the same work, as gradient accumulation does); memory
   that chunks cannot reduce (inputs and outputs) above the budget, or more chunks than rows, skips it.
4. Timing (``timing.time_call``): a warm-up call, then the median of the timed calls.
5. Ratios (the generator's ``ratios``), then the point's records are logged and kept; the results
   document goes to ``checkpoint`` after every group.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch

from .budget import Budget, BudgetPolicy, GiB, RunConfig
from .results import compute_fits
from .timing import MEMORY_METHOD, machine_info, time_call

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DIRECTIONS = ("fwd", "fwd+bwd")
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}  # relative to max |reference|


@dataclass
class Estimate:
    """What a workload knows of one full call before it is timed."""

    peak_bytes: int | None = None  # peak memory (None: unknown, never chunked)
    floor_bytes: int = 0  # memory no chunking reduces (inputs and outputs)
    time_s: float | None = None  # predicted time (from a warm-up on part of the work)
    basis: str = ""  # what time_s was predicted from, in words
    fields: dict = field(default_factory=dict)  # recorded as they are


class Workload(Protocol):
    """One implementation's call at one point, as the engine times it."""

    rows: int  # what chunks split: samples, edges, atoms
    unit: str  # one row, in words

    def estimate(self) -> Estimate: ...

    def prepare(self, chunks: int) -> tuple[Callable[[], None], Callable[[], None] | None]:
        """``(call, warmup)``: one full call in ``chunks`` sequential pieces, and the call that warms up
        before timing (None: ``estimate`` already ran one)."""
        ...


@dataclass
class Entry:
    """One implementation at one point. ``check``: its agreement fields (``status`` ok / disagrees /
    skipped, ``reference``, errors, ``reason``); ``workload()`` makes what is timed (None: nothing to time,
    the reason is in ``check``); ``over_budget``: not built because its series were over budget, so the
    record gets its series' own budget reason."""

    name: str
    function: str
    role: str
    check: dict
    workload: Callable[[], Workload] | None = None
    build_s: float | None = None
    over_budget: bool = False


@dataclass
class Point:
    """One point: ``fields`` shared by its records, ``series`` its part of a series key (an entry's
    series is ``series + (function, name)``), one entry per implementation."""

    fields: dict
    series: tuple
    entries: list[Entry]


class Points(Protocol):
    """A point generator: what a sweep measures (``points_products``, ``points_layers``)."""

    cfg: RunConfig
    schema: str
    policy: BudgetPolicy

    def groups(self) -> Iterable[tuple]: ...

    def points(self, group: tuple, budget: Budget) -> Iterator[Point]: ...

    def ratios(self, records: list[dict]) -> None: ...

    def line(self, record: dict) -> str: ...


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |out - ref| / max |ref|`` (in float64); inf for a shape mismatch or non-finite values."""
    if out.shape != ref.shape:
        return math.inf
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    scale = float(ref.abs().max()) if ref.numel() else 1.0
    err = float((out - ref).abs().max()) if ref.numel() else 0.0
    if not math.isfinite(err):
        return math.inf
    return err / max(scale, 1e-300)


def agreement(compare: Callable[[torch.dtype], tuple[torch.Tensor, torch.Tensor]], reference: str, dtype: str) -> dict:
    """The check fields of one implementation: ``compare(torch_dtype) -> (its output, the reference's)`` on
    the same inputs, in float64 and in ``dtype``."""
    with torch.no_grad():
        e64 = relative_error(*compare(torch.float64))
        ed = relative_error(*compare(DTYPES[dtype]))
    tol64, tol = TOLERANCE["float64"], TOLERANCE[dtype]
    ok = e64 <= tol64 and ed <= tol
    check = {
        "status": "ok" if ok else "disagrees",
        "reference": reference,
        "error_float64": e64,
        "error_dtype": ed,
        "tolerance_float64": tol64,
        "tolerance_dtype": tol,
    }
    if not ok:
        check["reason"] = (
            f"differs from {reference}: relative error {e64:.1e} (float64, tol {tol64:.0e}), "
            f"{ed:.1e} ({dtype}, tol {tol:.0e})"
        )
    return check


def timed(records: list[dict]) -> dict[str, dict]:
    """The records of one point that were timed and agree, by implementation."""
    return {r["implementation"]: r for r in records if r.get("time_s") and r["status"] == "ok"}


def speedup(base: dict, record: dict) -> tuple[float, float | None]:
    """``(t_base / t, cpu_base / cpu)`` of two timed records: wall time, and process CPU time (less
    sensitive to other processes taking the cores; None where the call counted no CPU time)."""
    cpu = base["cpu_time_s"] / record["cpu_time_s"] if record["cpu_time_s"] > 0 else None
    return base["time_s"] / record["time_s"], cpu


class Sweep:
    """``Sweep(points, log, checkpoint).run() -> results document`` (schema ``points.schema``)."""

    def __init__(
        self, points: Points, log: Callable[[str], None] = print, checkpoint: Callable[[dict], None] | None = None
    ) -> None:
        self.points, self.cfg, self.log, self.checkpoint = points, points.cfg, log, checkpoint
        self.device = torch.device(self.cfg.device)
        self.records: list[dict] = []
        self.budget = Budget(self.cfg, points.policy)
        self._machine = machine_info(self.device)

    def run(self) -> dict:
        self.budget.start = time.perf_counter()
        for group in self.points.groups():
            for point in self.points.points(group, self.budget):
                self._run_point(point)
            if self.checkpoint is not None:
                self.checkpoint(self.results())
        return self.results()

    def results(self) -> dict:
        """The results document so far."""
        load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        return {
            "schema": self.points.schema,
            "config": asdict(self.cfg),
            "machine": self._machine,
            "machine_end": {"load_average_1_5_15": load},
            "elapsed_s": self.budget.elapsed(),
            "tolerances": TOLERANCE,
            "memory_method": MEMORY_METHOD["cuda" if self.device.type == "cuda" else "cpu"],
            "records": self.records,
            "fits": compute_fits(self.records, self.cfg.fit_range),
        }

    def _run_point(self, point: Point) -> None:
        records = [self._record(point, entry) for entry in point.entries]
        self.points.ratios(records)
        for record in records:
            self.records.append(record)
            self.log(self.points.line(record))

    def _record(self, point: Point, entry: Entry) -> dict:
        record = dict(point.fields, function=entry.function, implementation=entry.name, role=entry.role)
        if entry.build_s is not None:
            record["build_s"] = entry.build_s
        record.update(entry.check)
        series = point.series + (entry.function, entry.name)
        if entry.over_budget:
            record["reason"] = self.budget.reason(series, record["L"], entry.role) or record.get("reason")
        if record["status"] == "ok" and entry.workload is not None:
            self._time(record, entry, series)
        return record

    # ------------------------------------------------------------------ timing one record
    def _time(self, record: dict, entry: Entry, series: tuple) -> None:
        L, cfg = record["L"], self.cfg
        record.update(time_s=None, chunks=1)
        plan = self._plan(record, entry, series)
        if isinstance(plan, str):
            record.update(status="skipped", reason=plan)
            return
        call, warmup = plan[0].prepare(plan[1])
        limits = dict(min_time=cfg.min_time_s, min_repeats=cfg.min_repeats, max_repeats=cfg.max_repeats)
        try:
            t = time_call(call, self.device, warmup=warmup or (lambda: None), max_time=cfg.point_budget_s, **limits)
        except RuntimeError as exc:  # e.g. out of memory despite the estimate
            record.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:200]}")
            self.budget.stop(series, L, f"{type(exc).__name__} at L={L}")
            return
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        record.update(time_s=t.median_s, times_s=t.times_s, cpu_time_s=t.cpu_median_s, repeats=t.repeats)
        record.update(chunks=plan[1], peak_memory_bytes=t.peak_memory_bytes, load_average=load)
        if warmup is not None:
            record["warmup_s"] = t.warmup_s
        if t.stopped_early:
            record["note"] = f"{t.repeats} timed call(s): the point budget ran out before {cfg.min_repeats}"
        self.budget.timed(series, L, t.median_s)

    def _plan(self, record: dict, entry: Entry, series: tuple) -> tuple[Workload, int] | str:
        """``(workload, chunks)`` for a record that agrees, or why it is not timed: untimed, the time
        budgets, then (after the workload's estimate, whose fields go into the record) memory."""
        cfg, L = self.cfg, record["L"]
        if entry.name in cfg.untimed:
            return "not timed (untimed: used for the agreement check only)"
        reason = self.budget.reason(series, L, entry.role)
        if reason is not None:
            return reason
        work = entry.workload()
        estimate = work.estimate()
        record.update(estimate.fields)
        if estimate.time_s is not None and estimate.time_s > 2 * cfg.point_budget_s:
            why = (
                f"one call predicted {estimate.time_s:.0f} s from {estimate.basis} > 2 x point budget "
                f"{cfg.point_budget_s:.0f} s"
            )
            return self.budget.stop(series, L, why)
        if estimate.floor_bytes > cfg.memory_budget_bytes:
            return f"memory (inputs and outputs alone need {estimate.floor_bytes / GiB:.1f} GiB > budget)"
        peak = estimate.peak_bytes
        chunks = 1 if peak is None else max(1, math.ceil(peak / cfg.memory_budget_bytes))
        if chunks > work.rows:
            return f"memory (one {work.unit} alone exceeds the memory budget)"
        return work, chunks


__all__ = [
    "Estimate",
    "Workload",
    "Entry",
    "Point",
    "Points",
    "Sweep",
    "agreement",
    "relative_error",
    "timed",
    "speedup",
    "DTYPES",
    "DIRECTIONS",
    "TOLERANCE",
]
