"""Every target of the fused-CPU issue (issue 14) in one command, with a roofline plot.

    PYTHONPATH=src python benchmarks/fused_cpu/targets.py --out benchmarks/fused_cpu/targets
    PYTHONPATH=src python benchmarks/fused_cpu/targets.py --quick --out /tmp/targets-quick   # tiny: a functional check

Writes ``targets.json`` (every record), ``targets.md`` (the targets table, the conditions, every point) and
``roofline.png`` into ``--out``. The default run is planned for < 15 min on one quiet core.

**What runs.** ``--product`` (GridGauntProduct) on the default executor "auto" (``cpu_fused`` here; the
records say which executor "auto" chose and which kernel, ``FusedProgram.kernel``, runs the forward program
and its two derivative programs), against e3nn computing the same function (``gaunt.bench.products``:
``peer_runner``, built from the product's descriptor) and, at the target points, the torch executor. float32,
one call = forward plus the gradients of x1, x2 and the weights (``torch.autograd.grad``, fixed random
cotangent), one torch thread unless stated. Shapes as in ``gaunt bench`` (``gaunt.bench.products``):

* feature: ``x1, x2, out = mul x 0e + ... + mul x L``, ``mul`` = 64, shared weights, batch 1e4;
* edge: ``x1, out = mul x (0..L)``, ``x2`` the edge harmonics ``1 x (0..L)`` of random directions (computed
  once, not timed; their gradient is), mode ``uvu``, ``mul`` = 16, **per-edge weights** (``[edges,
  weight_numel]``: e3nn gets its per-path weights per edge, ``TensorProduct(shared_weights=False)``), 1e5 edges.

**Targets** (issue 14): fused / e3nn >= 5x, 10x, 50x, 150x at L = 1, 2, 6, 10 (feature), >= 3x, 20x at
L = 1, 6 (edge); at L >= 6 the fused step at >= 40 % of sgemm (FLOPs as counted in ``BENCHMARKS.md``);
2 threads >= 1.7x faster than 1 thread at L = 6, batch 1e4 (wall time); peak memory of a step at L = 6,
batch 1e4 <= 2.5 GB / 4.

**Timing.** Per implementation and batch: one warm-up call at that batch (skipped where one call is
predicted above ``--warm-limit`` seconds: the calls at the smaller batch before it warmed it up), then up to
``--repeats`` calls while their wall time stays within ``--point-budget`` (at least one); reported: the
minimum of the process CPU time (``time.process_time``) and, separately, of the wall time. Ratios and
GFLOP/s use CPU time (with one thread, the time the call takes on an idle core; the wall ratio is kept too);
the thread target uses wall time. At a target point the batch goes up a ladder ``batch / 100, batch / 10,
batch`` for every implementation; an implementation stops climbing where one call, predicted linearly from
its largest measured batch, exceeds the point budget, or where its memory estimate (``Runner.memory``,
e3nn plus its per-edge weights and their gradients; the torch executor) exceeds ``--memory-limit-gb``
(default: half the physical memory, at most 16 GiB); past ``--total-budget`` seconds only "auto" still runs. A
target's ratio is taken at the largest batch where both ran, and only at ``batch`` or ``batch / 10`` (the
issue's "1e3 where e3nn is over budget"); the table says which. Before timing, each implementation's output
is compared with e3nn's on the ladder's first batch (relative error of max |e3nn| <= 1e-4, float32); one
that disagrees is not timed.

**FLOPs** (``BENCHMARKS.md``): a step is 6 separable transforms per channel and sample (2 syntheses and a
projection forward; the gradient's synthesis and 2 projections backward), each a theta stage ``(2L+1)(L+1)
n_theta`` and a phi stage ``(2L+1) n_theta n_phi`` multiply-adds, 2 FLOPs each, ``(n_theta, n_phi)`` the least
grid exact for degree 3L (``so3.grid_shape``; the product's own grid may have one azimuth more, for the phi
stage's half-turn symmetry: not counted); the same count in both shapes. The program's own count (forward and
both derivative programs, ``SphereProgram.flops_per_sample``: 9 transforms plus the pointwise terms) is
recorded as ``program_flops``. **Bytes** (the roofline's minimum traffic): x1, x2, the weights and the
cotangent read once, the output and the three gradients written once. **Roofs**: sgemm (``torch.mm`` 2048 x
2048 float32, 1 thread, CPU time; measured at the start and the end, the higher is the roof) and the memory
bandwidth of one core (``copy_`` and ``add(out=)`` of ``--bandwidth-elements`` floats, bytes read + written,
the higher).

**Memory** (the target at L = 6): a fresh subprocess per executor builds the product and the inputs, runs a
warm-up step on 16 samples, then one step at the full batch; reported is the rise of the peak resident set
during that step above the resident set just before it (glibc ``malloc_trim(0)`` first, the peak reset by
``/proc/self/clear_refs``: ``gaunt.bench.timing.PeakMemory``), with ``ru_maxrss`` before and after as a
cross-check (the step's rise by ``ru_maxrss`` is only meaningful where the step raised the process peak).
The inputs exist before the step and are not counted; the output and the gradients are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gaunt.bench.engine import relative_error
from gaunt.bench.products import (
    build_e3nn,
    build_product,
    canonical,
    make_inputs,
    peer_runner,
    product_runner,
)
from gaunt.bench.timing import PeakMemory, machine_info
from gaunt.products.cpu_executor import FusedProgram, derivative_id, kernel_of
from gaunt.products.program import derivative
from gaunt.so3 import grid_shape

FEATURE_TARGETS = {1: 5.0, 2: 10.0, 6: 50.0, 10: 150.0}  # L -> fused / e3nn, feature shape
EDGE_TARGETS = {1: 3.0, 6: 20.0}  # L -> fused / e3nn, edge shape
SGEMM_FRACTION, SGEMM_FROM_L = 0.40, 6
THREADS_SPEEDUP = 1.7
MEMORY_CAP_BYTES = 2.5e9 / 4
TOLERANCE = 1e-4  # float32, relative to max |e3nn|
IMPLEMENTATIONS = ("auto", "torch", "e3nn")


@dataclass
class Config:
    product: str = "GridGauntProduct"
    feature_L: tuple[int, ...] = tuple(range(1, 11))
    edge_L: tuple[int, ...] = (1, 2, 4, 6)
    mul: int = 64
    edge_mul: int = 16
    batch: int = 10000
    edge_batch: int = 100000
    repeats: int = 3
    point_budget: float = 90.0
    warm_limit: float = 10.0
    memory_limit_gb: float = 0.0  # 0: half the physical memory, at most 16 GiB (``memory_limit``)
    total_budget: float = 840.0  # seconds; past it, e3nn and the torch executor are skipped
    bandwidth_elements: int = 1 << 26
    threads_L: int = 6
    memory_L: int = 6
    torch_executor: bool = True
    e3nn: bool = True
    quick: bool = False
    seed: int = 0


QUICK = dict(
    feature_L=(1, 2, 6, 10),
    edge_L=(1, 6),
    batch=100,
    edge_batch=1000,
    repeats=2,
    point_budget=20.0,
    warm_limit=5.0,
    total_budget=300.0,
)
QUICK_BANDWIDTH = 1 << 22


# ----------------------------------------------------------------------------- timing and roofs
def timed(call, repeats: int, budget_s: float, warm: bool) -> dict:
    """Minimum CPU and wall seconds over up to ``repeats`` calls (while within ``budget_s``), after a warm-up."""
    if warm:
        call()
    cpu, wall = [], []
    while len(cpu) < repeats:
        c, w = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
        if sum(wall) + wall[-1] > budget_s:
            break
    return {"cpu_s": min(cpu), "wall_s": min(wall), "repeats": len(cpu), "warmup": warm}


def sgemm_gflops(repeats: int = 5) -> float:
    """``torch.mm`` 2048 x 2048 float32 on the current threads, GFLOP/s by CPU time."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / timed(lambda: a @ b, repeats, math.inf, True)["cpu_s"] / 1e9


def bandwidth_gbs(n: int, repeats: int = 5) -> dict:
    """Single-thread streaming bandwidth (GB/s by CPU time, bytes read + written): ``copy_`` and ``add(out=)``."""
    a, b, c = torch.full((n,), 1.0), torch.full((n,), 2.0), torch.zeros(n)
    copy = timed(lambda: b.copy_(a), repeats, math.inf, True)["cpu_s"]
    add = timed(lambda: torch.add(a, b, out=c), repeats, math.inf, True)["cpu_s"]
    out = {"copy_gbs": 2 * 4 * n / copy / 1e9, "add_gbs": 3 * 4 * n / add / 1e9, "elements": n}
    out["roof_gbs"] = max(out["copy_gbs"], out["add_gbs"])
    return out


def load() -> float:
    return os.getloadavg()[0]


def memory_limit(cfg: Config) -> float:
    """Bytes above which a peer's step is not run: ``--memory-limit-gb``, or half the physical memory (<= 16 GiB)."""
    if cfg.memory_limit_gb > 0:
        return cfg.memory_limit_gb * 2**30
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 16 * 2**30
    return min(16 * 2**30, physical / 2)


_START = time.perf_counter()  # reset by ``run``


# ----------------------------------------------------------------------------- the implementations
@dataclass
class Setup:
    """One (shape, L): our product on "auto", optionally the torch executor and e3nn, as ``Runner``s."""

    shape: str
    L: int
    mul: int
    product: torch.nn.Module
    runners: dict = field(default_factory=dict)
    build_s: dict = field(default_factory=dict)
    check: dict = field(default_factory=dict)  # name -> relative error against e3nn (float32)

    @property
    def per_sample(self) -> bool:
        return self.shape == "edge"

    @property
    def executor(self) -> str:
        return self.product.executor

    def kernels(self) -> str:
        """Kernels of the forward program and its derivative programs ("forward/dx1/dx2")."""
        fused = [m for m in self.product.modules() if isinstance(m, FusedProgram)]
        if not fused:
            return ""
        pid = fused[0].program_id
        return "/".join([kernel_of(pid), kernel_of(derivative_id(pid, 0)), kernel_of(derivative_id(pid, 1))])

    def flops(self, batch: int) -> int:
        """FLOPs of a step by the count of BENCHMARKS.md (module docstring)."""
        L = self.L
        n_theta, n_phi = grid_shape(3 * L)  # the least exact grid (the program's may have one azimuth more)
        return 2 * 6 * self.mul * batch * (2 * L + 1) * n_theta * ((L + 1) + n_phi)

    def program_flops(self, batch: int) -> int:
        program = self.product.program
        programs = (program, derivative(program, 0), derivative(program, 1))
        return 2 * batch * sum(p.flops_per_sample() for p in programs)

    def bytes(self, batch: int) -> int:
        """Minimum bytes of a step: inputs, weights and cotangent read once; output and gradients written once."""
        p = self.product
        weights = p.weight_numel * (batch if self.per_sample else 1)
        return 4 * (2 * batch * (p.irreps_in1.dim + p.irreps_in2.dim + p.irreps_out.dim) + 2 * weights)


def build_setup(cfg: Config, shape: str, L: int, peers: bool) -> Setup:
    mul = cfg.mul if shape == "feature" else cfg.edge_mul
    shared = shape == "feature"
    start = time.perf_counter()
    product = build_product(cfg.product, shape, L, mul, shared_weights=shared)
    setup = Setup(shape, L, mul, product)
    setup.runners["auto"] = product_runner(product, torch.float32, "cpu")
    setup.build_s["auto"] = time.perf_counter() - start
    if peers and cfg.torch_executor:
        start = time.perf_counter()
        reference = build_product(cfg.product, shape, L, mul, shared_weights=shared, executor="torch")
        setup.runners["torch"] = product_runner(reference, torch.float32, "cpu")
        setup.build_s["torch"] = time.perf_counter() - start
    if peers and cfg.e3nn:
        start = time.perf_counter()
        d, perm = canonical(product.descriptor())
        built = build_e3nn(d, shared_weights=shared)
        setup.runners["e3nn"] = peer_runner("e3nn", product, d, perm, torch.float32, "cpu", built)
        setup.runners["e3nn"].per_sample_weights = None if shared else built[0].weight_numel
        setup.build_s["e3nn"] = time.perf_counter() - start
    return setup


def memory_estimate(setup: Setup, name: str, batch: int) -> int | None:
    """Estimated peak bytes of one step (None: not estimated; the fused executor keeps no grids)."""
    if name == "auto":
        return None
    runner = setup.runners[name]
    estimate = runner.memory(batch, True)
    extra = getattr(runner, "per_sample_weights", None)
    return estimate + (2 * 4 * batch * extra if extra else 0)


def make_batch(setup: Setup, batch: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed + 1000 * setup.L + batch)
    ins = make_inputs(setup.product, setup.shape, batch, torch.float32, "cpu", g)
    ins.pop("vectors", None)  # the Gaunt products take the harmonics as x2
    cotangent = torch.randn(batch, setup.product.irreps_out.dim, generator=g)
    shape = (batch, setup.product.weight_numel) if setup.per_sample else (setup.product.weight_numel,)
    return {"inputs": ins, "cotangent": cotangent, "w64": torch.randn(*shape, generator=g, dtype=torch.float64)}


def step(runner, data: dict):
    """One forward + backward call of ``runner`` on ``data`` (gradients of every input and the weights)."""
    inputs = {k: v.detach().requires_grad_() for k, v in data["inputs"].items()}
    weight = runner.weights(data["w64"]).detach().requires_grad_()
    leaves, cotangent = [*inputs.values(), weight], data["cotangent"]

    def call():
        out = runner.forward(inputs, weight)
        torch.autograd.grad(out, leaves, cotangent)

    return call


def check(setup: Setup, data: dict) -> None:
    """Each implementation's float32 output against e3nn's on ``data`` (``setup.check``)."""
    if "e3nn" not in setup.runners:
        return
    with torch.no_grad():
        outs = {n: r.forward(data["inputs"], r.weights(data["w64"])) for n, r in setup.runners.items()}
    setup.check = {n: relative_error(out, outs["e3nn"]) for n, out in outs.items() if n != "e3nn"}


# ----------------------------------------------------------------------------- points
def record(setup: Setup, name: str, batch: int, **fields) -> dict:
    executor = {"auto": setup.executor, "torch": "torch", "e3nn": "e3nn"}[name]
    return {
        "shape": setup.shape,
        "L": setup.L,
        "mul": setup.mul,
        "batch": batch,
        "implementation": name,
        "executor": executor,
        "kernel": setup.kernels() if name == "auto" else "",
        "grid": list(setup.product.program.grid),
        "flops": setup.flops(batch),
        "program_flops": setup.program_flops(batch),
        "bytes": setup.bytes(batch),
        "intensity": setup.flops(batch) / setup.bytes(batch),
        "build_s": setup.build_s.get(name),
        "error_vs_e3nn": setup.check.get(name),
        "load": load(),
        **fields,
    }


def measure(setup: Setup, batches: list[int], cfg: Config) -> list[dict]:
    """Every implementation of ``setup`` up the ladder ``batches`` (module docstring: budget, memory, check)."""
    records, history, stopped = [], {n: None for n in setup.runners}, {}
    limit = memory_limit(cfg)
    for i, batch in enumerate(batches):
        data = make_batch(setup, batch, cfg.seed)
        if i == 0:
            check(setup, data)
        for name, runner in setup.runners.items():
            error = setup.check.get(name)
            if error is not None and error > TOLERANCE:
                stopped[name] = f"disagrees with e3nn: relative error {error:.1e} > {TOLERANCE:.0e}"
            if name in stopped:
                records.append(record(setup, name, batch, status="skipped", reason=stopped[name]))
                continue
            estimate = memory_estimate(setup, name, batch)
            predicted = None if history[name] is None else history[name][1] * batch / history[name][0]
            spent = time.perf_counter() - _START
            if name != "auto" and spent > cfg.total_budget:
                stopped[name] = f"total budget: {spent:.0f} s spent > {cfg.total_budget:g} s"
            elif estimate is not None and estimate > limit:
                stopped[name] = f"memory estimate {estimate / 1e9:.3g} GB > limit {limit / 1e9:.3g} GB"
            elif predicted is not None and predicted > cfg.point_budget:
                stopped[name] = f"budget: one call predicted {predicted:.3g} s > {cfg.point_budget:g} s"
            if name in stopped:
                records.append(record(setup, name, batch, status="skipped", reason=stopped[name]))
                print(f"  {setup.shape} L={setup.L} batch={batch} {name}: skipped, {stopped[name]}", flush=True)
                continue
            warm = predicted is None or predicted <= cfg.warm_limit
            result = timed(step(runner, data), cfg.repeats, cfg.point_budget, warm)
            history[name] = (batch, result["wall_s"])
            rec = record(setup, name, batch, status="ok", **result)
            rec["gflops"] = rec["flops"] / result["cpu_s"] / 1e9
            records.append(rec)
            print(
                f"  {setup.shape} L={setup.L} batch={batch} {name:5s} ({rec['executor']} {rec['kernel']}): "
                f"cpu {result['cpu_s'] * 1e3:9.1f} ms  wall {result['wall_s'] * 1e3:9.1f} ms  "
                f"x{result['repeats']}  {rec['gflops']:6.1f} GFLOP/s  load {rec['load']:.2f}",
                flush=True,
            )
        del data
    return records


def ladder(batch: int) -> list[int]:
    return sorted({max(1, batch // 100), max(1, batch // 10), batch})


def threads_check(setup: Setup, batch: int, cfg: Config) -> dict:
    """The "auto" step at ``batch`` on 1 and on 2 torch threads (wall and CPU time)."""
    data = make_batch(setup, batch, cfg.seed)
    out = {"shape": setup.shape, "L": setup.L, "batch": batch, "executor": setup.executor, "kernel": setup.kernels()}
    for n in (1, 2):
        torch.set_num_threads(n)
        out[f"threads_{n}"] = {**timed(step(setup.runners["auto"], data), cfg.repeats, cfg.point_budget, True)}
        out[f"threads_{n}"]["load"] = load()
    torch.set_num_threads(1)
    out["speedup_wall"] = out["threads_1"]["wall_s"] / out["threads_2"]["wall_s"]
    print(
        f"  threads L={setup.L} batch={batch}: wall {out['threads_1']['wall_s'] * 1e3:.1f} ms (1) -> "
        f"{out['threads_2']['wall_s'] * 1e3:.1f} ms (2), x{out['speedup_wall']:.2f}",
        flush=True,
    )
    return out


# ----------------------------------------------------------------------------- memory, in a subprocess
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_point(spec: dict) -> dict:
    """Peak memory of one step (module docstring); runs in a fresh process (``--memory-point``)."""
    torch.set_num_threads(1)
    cfg = Config(**{k: v for k, v in spec["config"].items() if k in Config.__dataclass_fields__})
    cfg.torch_executor, cfg.e3nn = False, False
    setup = build_setup(cfg, spec["shape"], spec["L"], peers=False)
    if spec["executor"] != "auto":
        product = build_product(cfg.product, spec["shape"], spec["L"], setup.mul, spec["shape"] == "feature", "torch")
        setup.runners["auto"] = product_runner(product, torch.float32, "cpu")
    step(setup.runners["auto"], make_batch(setup, 16, cfg.seed))()  # warm-up: kernels, derivative programs
    data = make_batch(setup, spec["batch"], cfg.seed)
    call = step(setup.runners["auto"], data)
    rss_before, ru_before = _rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with PeakMemory("cpu") as peak:
        call()
    ru_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    inputs = sum(t.numel() * t.element_size() for t in data["inputs"].values()) + data["cotangent"].nbytes
    return {
        "shape": spec["shape"],
        "L": spec["L"],
        "batch": spec["batch"],
        "executor": spec["executor"] if spec["executor"] != "auto" else setup.executor,
        "kernel": setup.kernels() if spec["executor"] == "auto" else "",
        "peak_rise_bytes": peak.bytes,
        "rss_before_bytes": rss_before,
        "ru_maxrss_before_bytes": ru_before,
        "ru_maxrss_after_bytes": ru_after,
        "ru_maxrss_rise_bytes": ru_after - rss_before if ru_after > ru_before else None,
        "input_bytes": inputs,
    }


def memory_subprocess(cfg: Config, shape: str, L: int, batch: int, executor: str) -> dict:
    spec = {"config": asdict(cfg), "shape": shape, "L": L, "batch": batch, "executor": executor}
    done = subprocess.run(
        [sys.executable, __file__, "--memory-point", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"shape": shape, "L": L, "batch": batch, "executor": executor, "error": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rise = result["peak_rise_bytes"]
    print(f"  memory L={L} batch={batch} {result['executor']}: peak rise {rise / 1e6:.0f} MB", flush=True)
    return result


# ----------------------------------------------------------------------------- targets and report
def _why_not(records: list[dict], shape: str, L: int, batch: int) -> str:
    """Why e3nn has no timing at (shape, L, batch)."""
    for r in records:
        if (r["shape"], r["L"], r["batch"], r["implementation"]) == (shape, L, batch, "e3nn"):
            return r.get("reason", r["status"])
    return "not run"


def _pair(records: list[dict], shape: str, L: int, batch: int) -> tuple[dict | None, dict | None]:
    """(auto, e3nn) at the largest of ``batch``, ``batch / 10`` where both were timed."""
    for b in (batch, max(1, batch // 10)):
        ok = {
            r["implementation"]: r
            for r in records
            if (r["shape"], r["L"], r["batch"], r["status"]) == (shape, L, b, "ok")
        }
        if "auto" in ok and "e3nn" in ok:
            return ok["auto"], ok["e3nn"]
    return None, None


def targets(result: dict, cfg: Config) -> list[dict]:
    records, rows = result["records"], []
    sgemm = result["conditions"]["sgemm_gflops"]
    for shape, table, batch in (("feature", FEATURE_TARGETS, cfg.batch), ("edge", EDGE_TARGETS, cfg.edge_batch)):
        mul = cfg.mul if shape == "feature" else cfg.edge_mul
        for L, goal in table.items():
            row = {"target": f"{shape}, {mul} ch, L = {L}: auto / e3nn >= {goal:g}x (batch {batch:g})", "goal": goal}
            ours, e3nn = _pair(records, shape, L, batch)
            if ours is None:
                reasons = [
                    f"{r['implementation']} at {r['batch']:g}: {r['reason']}"
                    for r in records
                    if (r["shape"], r["L"], r["status"]) == (shape, L, "skipped") and r["batch"] >= batch // 10
                ]
                row.update(measured=None, met=None, conditions="; ".join(reasons) or "not run (L not in the run)")
            else:
                ratio = e3nn["cpu_s"] / ours["cpu_s"]
                row.update(
                    measured=ratio,
                    met=ratio >= goal,
                    text=f"{ratio:.1f}x ({ours['cpu_s'] * 1e3:.4g} ms vs {e3nn['cpu_s'] * 1e3:.4g} ms CPU; "
                    f"wall ratio {e3nn['wall_s'] / ours['wall_s']:.1f}x)",
                    conditions=f"batch {ours['batch']:g}"
                    + (f" (e3nn at {batch:g}: {_why_not(records, shape, L, batch)})" if ours["batch"] != batch else "")
                    + f"; {ours['executor']} {ours['kernel']}; load {ours['load']:.2f} / e3nn {e3nn['load']:.2f}",
                )
            rows.append(row)
    for r in records:
        full = cfg.batch if r["shape"] == "feature" else cfg.edge_batch
        if r["implementation"] == "auto" and r["L"] >= SGEMM_FROM_L and r["batch"] == full and r["status"] == "ok":
            fraction = r["gflops"] / sgemm
            rows.append(
                {
                    "target": f"{r['shape']}, L = {r['L']}: auto at >= {SGEMM_FRACTION:.0%} of sgemm",
                    "goal": SGEMM_FRACTION,
                    "measured": fraction,
                    "met": fraction >= SGEMM_FRACTION,
                    "text": f"{fraction:.0%} ({r['gflops']:.1f} of {sgemm:.1f} GFLOP/s)",
                    "conditions": f"batch {r['batch']:g}, {r['mul']} ch; {r['executor']} {r['kernel']}; "
                    f"load {r['load']:.2f}",
                }
            )
    th = result.get("threads")
    if th:
        rows.append(
            {
                "target": f"2 threads >= {THREADS_SPEEDUP}x 1 thread (wall), L = {th['L']}",
                "goal": THREADS_SPEEDUP,
                "measured": th["speedup_wall"],
                "met": th["speedup_wall"] >= THREADS_SPEEDUP,
                "text": f"{th['speedup_wall']:.2f}x ({th['threads_1']['wall_s'] * 1e3:.4g} -> "
                f"{th['threads_2']['wall_s'] * 1e3:.4g} ms wall)",
                "conditions": f"batch {th['batch']:g}; {th['executor']} {th['kernel']}; "
                f"load {th['threads_1']['load']:.2f} / {th['threads_2']['load']:.2f}",
            }
        )
    for m in result.get("memory", []):
        if m.get("executor") == "torch":
            continue  # shown in the memory table, not a target
        rise = m.get("peak_rise_bytes")
        rows.append(
            {
                "target": f"peak memory of a step <= {MEMORY_CAP_BYTES / 1e6:.0f} MB, L = {m['L']}",
                "goal": MEMORY_CAP_BYTES,
                "measured": rise,
                "met": None if rise is None else rise <= MEMORY_CAP_BYTES,
                "text": f"{rise / 1e6:.0f} MB" if rise is not None else "not measured: " + _last_line(m),
                "conditions": f"batch {m['batch']:g}; {m['executor']} {m.get('kernel', '')}; fresh subprocess",
            }
        )
    return rows


def _last_line(m: dict) -> str:
    """The last line of a memory subprocess's error (or why nothing was measured), for a table cell."""
    lines = [x for x in m.get("error", "no /proc/self/status here").splitlines() if x.strip()]
    return (lines[-1] if lines else "no output")[:200].replace("|", "/")


def _ms(r: dict | None, key: str = "cpu_s") -> str:
    return "" if r is None or r.get("status") != "ok" else f"{r[key] * 1e3:.4g}"


def markdown(result: dict, cfg: Config) -> str:
    c, m = result["conditions"], result["machine"]
    lines = ["# Targets of the fused-CPU issue (14)", ""]
    if cfg.quick:
        lines += ["**`--quick`: tiny sizes, a functional check of the script, not results.**", ""]
    lines += [
        f"Command: `{result['command']}`  ",
        f"Commit {result['git']}; {m['cpu_model']}, {m['cpu_count']} cores; torch {m['torch']}, e3nn {m['e3nn']}; "
        f"{m['timestamp']}; run time {result['elapsed_s']:.0f} s.",
        "",
        "| condition | start | end |",
        "|---|---|---|",
        f"| load average (1 min) | {c['load_before']:.2f} | {c['load_after']:.2f} |",
        f"| sgemm 2048^2 float32, 1 thread (GFLOP/s, CPU time) | {c['sgemm_before']:.1f} | {c['sgemm_after']:.1f} |",
        f"| memory bandwidth, 1 thread (GB/s: copy / add) | {c['bandwidth']['copy_gbs']:.1f} / "
        f"{c['bandwidth']['add_gbs']:.1f} | |",
        "",
        f"Roofs: sgemm {c['sgemm_gflops']:.1f} GFLOP/s (the higher of start and end), memory "
        f"{c['bandwidth']['roof_gbs']:.1f} GB/s. Times: minimum over repeats after a warm-up, process CPU time "
        "(1 thread) unless wall is said; ratios by CPU time. Product: "
        f"{cfg.product}, float32, forward + gradients of x1, x2, weights.",
        "",
        "## Targets",
        "",
        "| target | measured | met | conditions |",
        "|---|---|---|---|",
    ]
    for t in result["targets"]:
        met = "not measured" if t["met"] is None else ("**met**" if t["met"] else "**not met**")
        lines.append(f"| {t['target']} | {t.get('text', '')} | {met} | {t['conditions']} |")
    lines += [
        "",
        "## Every point (ms per step, CPU time; wall in brackets)",
        "",
        "| shape | L | batch | auto | kernel | torch | e3nn | auto / e3nn | auto / torch | auto GFLOP/s "
        "(% sgemm) | FLOP/byte |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, dict] = {}
    for r in result["records"]:
        groups.setdefault((r["shape"], r["L"], r["batch"]), {})[r["implementation"]] = r
    for (shape, L, batch), g in sorted(groups.items(), key=lambda kv: (kv[0][0] != "feature", kv[0][1], kv[0][2])):
        a, t, e = g.get("auto"), g.get("torch"), g.get("e3nn")

        def cell(r):
            if r is None:
                return ""
            if r["status"] != "ok":
                return f"skipped: {r['reason']}"
            return f"{_ms(r)} ({_ms(r, 'wall_s')})"

        ok = a is not None and a["status"] == "ok"
        vs_e = f"{e['cpu_s'] / a['cpu_s']:.1f}x" if ok and e and e["status"] == "ok" else ""
        vs_t = f"{t['cpu_s'] / a['cpu_s']:.1f}x" if ok and t and t["status"] == "ok" else ""
        gf = f"{a['gflops']:.1f} ({a['gflops'] / c['sgemm_gflops']:.0%})" if ok else ""
        kernel = f"{a['executor']} {a['kernel']}" if a else ""
        lines.append(
            f"| {shape} | {L} | {batch:g} | {cell(a)} | {kernel} | {cell(t)} | {cell(e)} | {vs_e} | {vs_t} | {gf} | "
            f"{(a or t or e)['intensity']:.1f} |"
        )
    if result.get("memory"):
        lines += ["", "## Peak memory of one step (fresh subprocess)", ""]
        lines += ["| executor | L | batch | peak rise (MB) | by ru_maxrss (MB) | inputs, not counted (MB) |"]
        lines += ["|---|---|---|---|---|---|"]
        for mm in result["memory"]:
            rise, ru = mm.get("peak_rise_bytes"), mm.get("ru_maxrss_rise_bytes")
            lines.append(
                f"| {mm['executor']} | {mm['L']} | {mm['batch']:g} | "
                f"{'' if rise is None else f'{rise / 1e6:.0f}'} | {'' if ru is None else f'{ru / 1e6:.0f}'} | "
                f"{mm.get('input_bytes', 0) / 1e6:.0f} |"
            )
    checks = sorted(
        {
            (r["shape"], r["L"], r["implementation"], r["error_vs_e3nn"])
            for r in result["records"]
            if r.get("error_vs_e3nn") is not None
        }
    )
    if checks:
        worst = max(e for *_, e in checks)
        lines += [
            "",
            f"Agreement with e3nn before timing (float32, relative to max |e3nn|): worst {worst:.1e} "
            f"over {len(checks)} (shape, L, implementation).",
        ]
    lines += ["", "Roofline: `roofline.png`; every record: `targets.json`.", ""]
    return "\n".join(lines)


def roofline(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    c, cfg = result["conditions"], result["config"]
    full = {"feature": cfg["batch"], "edge": cfg["edge_batch"]}
    points = [
        r
        for r in result["records"]
        if r["status"] == "ok" and r["implementation"] in ("auto", "torch") and r["batch"] == full[r["shape"]]
    ]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    peak, bw = c["sgemm_gflops"], c["bandwidth"]["roof_gbs"]
    xs = [r["intensity"] for r in points] + [peak / bw]  # the ridge too
    lo, hi = min(xs) / 3, max(xs) * 3
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, bw * x) for x in grid], "k-", lw=1.5, label="roof")
    ax.axhline(peak, color="k", ls=":", lw=0.8)
    ax.text(hi / 1.1, peak * 1.06, f"sgemm {peak:.0f} GFLOP/s (1 thread)", fontsize=8, ha="right")
    style = {
        ("feature", "auto"): ("o", "C0", True),
        ("feature", "torch"): ("o", "C0", False),
        ("edge", "auto"): ("^", "C3", True),
        ("edge", "torch"): ("^", "C3", False),
    }
    seen = set()
    for r in points:
        marker, color, filled = style[(r["shape"], r["implementation"])]
        key = (r["shape"], r["implementation"])
        label = None
        if key not in seen:
            seen.add(key)
            name = r["executor"] if r["implementation"] == "auto" else "torch executor"
            label = f"{r['shape']} {r['mul']} ch, {name}"
        ax.plot(r["intensity"], r["gflops"], marker, color=color, mfc=color if filled else "none", ms=7, label=label)
        tag = f"{'F' if r['shape'] == 'feature' else 'E'}{r['L']}"
        ax.annotate(tag, (r["intensity"], r["gflops"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (FLOP / byte; FLOPs of BENCHMARKS.md, minimum bytes)")
    ax.set_ylabel("GFLOP/s (CPU time, 1 thread)")
    title = (
        f"{cfg['product']}, float32, forward + backward; F: feature batch {full['feature']:g}, E: edge {full['edge']:g}"
    )
    ax.set_title(title + (" [--quick]" if cfg["quick"] else ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ys = [r["gflops"] for r in points] + [bw * lo]
    ax.set_ylim(min(ys) / 2, peak * 1.6)
    fig.tight_layout()
    x0 = lo * 1.3  # the memory roof's label, along its line (the angle in display coordinates)
    (ax0, ay0), (ax1, ay1) = ax.transData.transform([(x0, bw * x0), (2 * x0, 2 * bw * x0)])
    angle = math.degrees(math.atan2(ay1 - ay0, ax1 - ax0))
    label = f"memory {bw:.1f} GB/s (1 thread)"
    ax.text(x0 * 1.15, bw * x0 / 1.15, label, fontsize=8, rotation=angle, rotation_mode="anchor", va="top")
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver
def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True).stdout
        return sha.strip() + (" (uncommitted changes)" if dirty.strip() else "")
    except OSError:
        return "unknown"


def run(cfg: Config, command: str) -> dict:
    global _START
    start = _START = time.perf_counter()
    torch.set_num_threads(1)
    conditions = {"load_before": load()}
    conditions["sgemm_before"] = sgemm_gflops()
    conditions["bandwidth"] = bandwidth_gbs(QUICK_BANDWIDTH if cfg.quick else cfg.bandwidth_elements)
    print(
        f"load {conditions['load_before']:.2f}; sgemm {conditions['sgemm_before']:.1f} GFLOP/s; bandwidth "
        f"copy {conditions['bandwidth']['copy_gbs']:.1f} / add {conditions['bandwidth']['add_gbs']:.1f} GB/s",
        flush=True,
    )
    records, threads, memory = [], None, []
    plan = [("feature", L, cfg.batch, L in FEATURE_TARGETS) for L in cfg.feature_L]
    plan += [("edge", L, cfg.edge_batch, L in EDGE_TARGETS) for L in cfg.edge_L]
    for shape, L, batch, target in plan:
        setup = build_setup(cfg, shape, L, peers=target)
        records += measure(setup, ladder(batch) if target else [batch], cfg)
        if shape == "feature" and L == cfg.threads_L:
            threads = threads_check(setup, batch, cfg)
        del setup
    if cfg.memory_L:
        for executor in ("auto",) + (("torch",) if cfg.torch_executor else ()):
            memory.append(memory_subprocess(cfg, "feature", cfg.memory_L, cfg.batch, executor))
    conditions["sgemm_after"] = sgemm_gflops()
    conditions["load_after"] = load()
    conditions["sgemm_gflops"] = max(conditions["sgemm_before"], conditions["sgemm_after"])
    result = {
        "command": command,
        "git": git_commit(),
        "config": asdict(cfg),
        "machine": machine_info("cpu"),
        "conditions": conditions,
        "records": records,
        "threads": threads,
        "memory": memory,
        "memory_method": "fresh subprocess; rise of the peak RSS during one step (malloc_trim, VmHWM reset via "
        "/proc/self/clear_refs, VmHWM after minus VmRSS before); ru_maxrss before/after as a cross-check",
    }
    result["elapsed_s"] = time.perf_counter() - start
    result["targets"] = targets(result, cfg)
    return result


def parse(argv: list[str] | None = None) -> tuple[Config, Path | None, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Config()
    parser.add_argument("--out", type=Path, default=None, help="folder for targets.json, targets.md, roofline.png")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a functional check, not results")
    parser.add_argument("--product", default=d.product)
    parser.add_argument("--feature-L", type=int, nargs="+", default=None, help=f"default {list(d.feature_L)}")
    parser.add_argument("--edge-L", type=int, nargs="+", default=None, help=f"default {list(d.edge_L)}")
    parser.add_argument("--batch", type=int, default=None, help=f"feature shape (default {d.batch})")
    parser.add_argument("--edge-batch", type=int, default=None, help=f"edges (default {d.edge_batch})")
    parser.add_argument("--repeats", type=int, default=None, help=f"timed calls per point (default {d.repeats})")
    parser.add_argument("--point-budget", type=float, default=None, help=f"seconds (default {d.point_budget:g})")
    parser.add_argument("--warm-limit", type=float, default=None, help=f"seconds (default {d.warm_limit:g})")
    parser.add_argument(
        "--memory-limit-gb", type=float, default=0.0, help="peers' estimated step memory (0: half the RAM, <= 16)"
    )
    parser.add_argument("--total-budget", type=float, default=None, help=f"seconds (default {d.total_budget:g})")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch executor")
    parser.add_argument("--no-e3nn", action="store_true", help="skip e3nn (no ratios)")
    parser.add_argument("--threads-L", type=int, default=d.threads_L, help="0: no thread check")
    parser.add_argument("--memory-L", type=int, default=d.memory_L, help="0: no memory check")
    parser.add_argument("--memory-point", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cfg = Config(**(QUICK if args.quick else {}), quick=args.quick, product=args.product)
    for name in ("feature_L", "edge_L", "batch", "edge_batch", "repeats", "point_budget", "warm_limit", "total_budget"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, tuple(value) if isinstance(value, list) else value)
    cfg.memory_limit_gb, cfg.threads_L, cfg.memory_L = args.memory_limit_gb, args.threads_L, args.memory_L
    cfg.torch_executor, cfg.e3nn = not args.no_torch, not args.no_e3nn
    return cfg, args.out, args


def main(argv: list[str] | None = None) -> None:
    cfg, out, args = parse(argv)
    if args.memory_point is not None:
        print(json.dumps(memory_point(json.loads(args.memory_point))))
        return
    result = run(cfg, "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    text = markdown(result, cfg)
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "targets.json").write_text(json.dumps(result, indent=1))
        (out / "targets.md").write_text(text)
        roofline(result, out / "roofline.png")
        print(f"wrote {out / 'targets.json'}, {out / 'targets.md'}, {out / 'roofline.png'}")


if __name__ == "__main__":
    main()
