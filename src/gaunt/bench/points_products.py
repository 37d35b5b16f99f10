"""The points of ``gaunt bench``: every product against peers computing the same function.

For every (shape, channels, L) a *group* is built: our products (``products.build_product``) and, per
function they compute (their canonical descriptor, ``products.canonical``), the peers (e3nn, CGProduct
on the same paths, the CUDA peers). e3nn is built once per group in float64, within the build budget
and only while one of its series at this L can still be timed; the other peers per dtype. For every
dtype, every implementation is checked against the function's reference (e3nn where it was built,
else CGProduct) on ``check_batch`` samples, with the weights of the product it stands for. Then every
(batch, direction) is a point with one record per implementation, timed by ``engine.Sweep``.

A call: forward ("fwd") under ``torch.no_grad``, or forward+backward ("fwd+bwd") with the gradients of
every input and the weights (``torch.autograd.grad``, a fixed random cotangent); warm-up on up to 1024
samples; peak memory from the runner's model (``products.Runner.memory``), chunks split the batch.
``speedup_vs_e3nn = t_e3nn / t`` at the same point and function (``cpu_speedup_vs_e3nn`` from process
CPU times, which other processes on a shared machine disturb less).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .budget import Budget, BudgetPolicy, RunConfig
from .engine import DIRECTIONS, DTYPES, Entry, Estimate, Point, agreement, speedup, timed
from .gpu_peers import availability
from .products import (
    PEERS,
    Runner,
    benched_products,
    build_e3nn,
    build_product,
    canonical,
    io_width,
    make_inputs,
    peer_runner,
    product_name,
    product_runner,
    takes_vectors,
)

SCHEMA = "gaunt-bench/1"
POLICY = BudgetPolicy(word="budget", calls=2, exponent=3.0, peer_exponent=4.0)
EVERY_E3NN_OVER = "budget (every e3nn series is over its budget at this L)"


@dataclass
class ProductConfig(RunConfig):
    """What ``gaunt bench`` sweeps (``products=None``: every product of a shape), and its budgets."""

    shapes: tuple[str, ...] = ("feature", "edge")
    Ls: tuple[int, ...] = tuple(range(1, 17))
    channels: tuple[int, ...] = (1, 16, 64, 128)
    batches: tuple[int, ...] = (1000, 10000, 100000)
    dtypes: tuple[str, ...] = ("float32", "float64")
    directions: tuple[str, ...] = DIRECTIONS
    products: tuple[str, ...] | None = None
    peers: tuple[str, ...] = PEERS
    check_batch: int = 16


@dataclass
class _Function:
    """Products computing one function (one canonical descriptor) and the peers built for it."""

    label: str
    descriptor: object
    width: int  # numbers per sample in the inputs and the output (``products.io_width``)
    products: list = field(default_factory=list)  # (module, perm, build_s)
    peers: dict = field(default_factory=dict)  # name -> (built float64 object | None, reason | None, build_s)


class ProductPoints:
    """The point generator of ``gaunt bench``: ``engine.Sweep(ProductPoints(config)).run()``."""

    schema = SCHEMA
    policy = POLICY

    def __init__(self, config: ProductConfig) -> None:
        self.cfg = config
        self.device = torch.device(config.device)

    def groups(self) -> list[tuple[str, int, int]]:
        cfg = self.cfg
        return [(shape, mul, L) for shape in cfg.shapes for mul in cfg.channels for L in cfg.Ls]

    def points(self, group: tuple[str, int, int], budget: Budget) -> Iterator[Point]:
        shape, mul, L = group
        functions = self._build(shape, mul, L, budget)
        for dtype, fn in itertools.product(self.cfg.dtypes, functions):
            runners, checks = self._runners_and_checks(fn, shape, L, dtype)
            for batch in self.cfg.batches:
                inputs = functools.cache(functools.partial(self._inputs, fn, shape, batch, DTYPES[dtype]))
                for direction in self.cfg.directions:
                    fields = dict(shape=shape, L=L, channels=mul, batch=batch, dtype=dtype, direction=direction)
                    fields["device"] = str(self.device)
                    entries = [self._entry(fn, shape, n, r, checks[n], inputs, fields) for n, r in runners.items()]
                    yield Point(fields, (shape, mul, batch, dtype, direction), entries)

    @staticmethod
    def _entry(fn: _Function, shape: str, name: str, runner, check: dict, inputs, fields: dict) -> Entry:
        """The entry of ``runner`` (or of the reason it is missing) at the point of ``fields``."""
        if isinstance(runner, str):
            role = "product" if name in benched_products()[shape] else "peer"
            return Entry(name, fn.label, role, check, over_budget=runner == EVERY_E3NN_OVER)
        backward, dtype = fields["direction"] == "fwd+bwd", DTYPES[fields["dtype"]]
        work = functools.partial(ProductWorkload, runner, inputs, fields["batch"], dtype, backward, fn.width)
        return Entry(name, fn.label, runner.role, check, work, runner.build_s)

    @staticmethod
    def ratios(records: list[dict]) -> None:
        e3nn = timed(records).get("e3nn")
        for r in records:
            ok = e3nn is not None and r.get("time_s") and r["status"] == "ok"
            r["speedup_vs_e3nn"], r["cpu_speedup_vs_e3nn"] = speedup(e3nn, r) if ok else (None, None)

    @staticmethod
    def line(r: dict) -> str:
        name = f"{r['implementation']} [{r['function']}]"
        where = f"{r['shape']:>7} L={r['L']:<2} mul={r['channels']:<3} B={r['batch']:<6} {r['dtype']}"
        head = f"{where} {r['direction']:<7} {name:<28}"
        if not r.get("time_s"):
            return f"{head} {r['status']}: {r.get('reason', '')}"
        faster = r.get("speedup_vs_e3nn") and r["implementation"] != "e3nn"
        speed = f"  x{r['speedup_vs_e3nn']:.1f} vs e3nn" if faster else ""
        chunks = f" ({r['chunks']} chunks)" if r.get("chunks", 1) > 1 else ""
        return f"{head} {r['time_s'] * 1e3:10.2f} ms{speed}{chunks}"

    # ------------------------------------------------------------------ building
    def _build(self, shape: str, mul: int, L: int, budget: Budget) -> list[_Function]:
        names = [p for p in benched_products()[shape] if self.cfg.products is None or p in self.cfg.products]
        functions: dict[object, _Function] = {}
        for name in names:
            start = time.perf_counter()
            product = build_product(name, shape, L, mul)
            d, perm = canonical(product.descriptor())
            if d not in functions:
                label = "so2" if takes_vectors(product) else "gaunt"
                taken = any(f.label == label for f in functions.values())
                functions[d] = _Function(f"{label}{len(functions)}" if taken else label, d, io_width(product))
            functions[d].products.append((product, perm, time.perf_counter() - start))
        for fn in functions.values():
            for peer in self.cfg.peers:
                fn.peers[peer] = self._build_peer(peer, fn, shape, mul, L, budget)
        return list(functions.values())

    def _build_peer(self, peer: str, fn: _Function, shape: str, mul: int, L: int, budget: Budget) -> tuple:
        """``(built, reason, build_s)``: e3nn is built once in float64 within the build budget and only
        while some e3nn series at this L can still be timed; the others are built per dtype later."""
        if peer in ("cuequivariance", "openequivariance"):
            return None, availability(peer, self.device), 0.0
        if peer != "e3nn":
            return None, None, 0.0
        cfg = self.cfg
        points = [(b, dt, di) for b in cfg.batches for dt in cfg.dtypes for di in cfg.directions]
        if all(budget.reason((shape, mul, *p, fn.label, "e3nn"), L, "peer") is not None for p in points):
            return None, EVERY_E3NN_OVER, 0.0
        reason = budget.build_reason((shape, mul, fn.label), L, "e3nn")
        if reason is not None:
            return None, reason, 0.0
        start = time.perf_counter()
        built = build_e3nn(fn.descriptor)
        seconds = time.perf_counter() - start
        budget.built((shape, mul, fn.label), L, seconds)
        return built, None, seconds

    def _runners(self, fn: _Function, dtype: torch.dtype) -> tuple[dict, dict]:
        """``({name: runner in dtype, or the reason it is missing}, {name: float64 runner})``."""
        first, first_perm, _ = fn.products[0]
        runners: dict[str, Runner | str] = {}
        runners64: dict[str, Runner] = {}
        for product, _, build_s in fn.products:
            name = product_name(product)
            runners[name] = product_runner(product, dtype, self.device)
            runners[name].build_s = build_s
            runners64[name] = product_runner(product, torch.float64, self.device)
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
        return runners, runners64

    def _runners_and_checks(self, fn: _Function, shape: str, L: int, dtype_name: str) -> tuple[dict, dict]:
        """The runners in the benchmark dtype (or the reason each is missing) and each one's agreement."""
        dtype = DTYPES[dtype_name]
        runners, runners64 = self._runners(fn, dtype)
        checks = {name: {"status": "skipped", "reason": r} for name, r in runners.items() if isinstance(r, str)}
        reference = next((name for name in ("e3nn", "CGProduct") if name in runners64), None)
        first, first_perm, _ = fn.products[0]
        g = torch.Generator().manual_seed(self.cfg.seed + 1000 * L)
        ins64 = make_inputs(first, shape, self.cfg.check_batch, torch.float64, self.device, g)
        sets = {torch.float64: (runners64, ins64), dtype: (runners, {k: v.to(dtype) for k, v in ins64.items()})}
        sources = {product_name(p): (p, perm) for p, perm, _ in fn.products}
        for name in runners64:
            source, perm = sources.get(name, (first, first_perm))
            w64 = torch.randn(source.weight_numel, generator=g, dtype=torch.float64)
            if reference is None or name == reference:
                checks[name] = {"status": "ok", "reference": "self" if name == reference else None}
                continue
            compare = functools.partial(_outputs, sets, name, reference, w64, source, perm)
            checks[name] = agreement(compare, reference, dtype_name)
        return runners, checks

    def _inputs(self, fn: _Function, shape: str, batch: int, dtype: torch.dtype) -> dict:
        """The full-batch inputs of one (function, batch, dtype), the cotangent and each product's weights."""
        first = fn.products[0][0]
        g = torch.Generator().manual_seed(self.cfg.seed + batch)
        ins = make_inputs(first, shape, batch, dtype, self.device, g)
        ins["cotangent"] = torch.randn(batch, first.irreps_out.dim, generator=g, dtype=dtype).to(self.device)
        ins["w64"] = {
            product_name(p): torch.randn(p.weight_numel, generator=g, dtype=torch.float64) for p, _, _ in fn.products
        }
        ins["sources"] = {product_name(p): (p, perm) for p, perm, _ in fn.products}
        return ins


def _outputs(sets: dict, name: str, reference: str, w64, source, perm, dtype: torch.dtype) -> tuple:
    """``name``'s and the reference's outputs in ``dtype``, both with ``source``'s weights ``w64``."""
    runners, ins = sets[dtype]
    mine, ref = runners[name], runners[reference]
    return mine.forward(ins, mine.weights(w64, source, perm)), ref.forward(ins, ref.weights(w64, source, perm))


@dataclass
class ProductWorkload:
    """One runner's call on a full batch (``engine.Workload``); ``inputs()`` makes the inputs it shares
    with the other runners of its point on first use."""

    runner: Runner
    inputs: Callable[[], dict]
    batch: int
    dtype: torch.dtype
    backward: bool
    width: int  # numbers per sample in x1, x2 or vectors, and the output
    unit: str = "sample"

    @property
    def rows(self) -> int:
        return self.batch

    def estimate(self) -> Estimate:
        peak = self.runner.memory(self.batch, self.backward)
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        floor = itemsize * self.batch * self.width * (2 if self.backward else 1)
        return Estimate(peak_bytes=peak, floor_bytes=floor, fields={"memory_estimate_bytes": peak})

    def prepare(self, chunks: int) -> tuple[Callable[[], None], Callable[[], None]]:
        ins, backward = self.inputs(), self.backward
        source, perm = ins["sources"].get(self.runner.name) or next(iter(ins["sources"].values()))
        weight = self.runner.weights(ins["w64"][product_name(source)], source, perm).detach().requires_grad_(backward)
        data = {k: v for k, v in ins.items() if isinstance(v, torch.Tensor) and k != "cotangent"}
        bounds = [(i * self.batch // chunks, (i + 1) * self.batch // chunks) for i in range(chunks)]
        pieces = []
        for a, b in bounds:
            rows = {k: v[a:b].detach().requires_grad_(backward) for k, v in data.items()}
            pieces.append((rows, ins["cotangent"][a:b]))
        warm = [({k: v[:1024] for k, v in pieces[0][0].items()}, pieces[0][1][:1024])]
        return functools.partial(self._call, pieces, weight), functools.partial(self._call, warm, weight)

    def _call(self, pieces: list, weight: torch.Tensor) -> None:
        with torch.set_grad_enabled(self.backward):
            for ins, cotangent in pieces:
                out = self.runner.forward(ins, weight)
                if self.backward:
                    # the edge shape holds both x2 (harmonics) and the vectors; each product uses one of them
                    torch.autograd.grad(out, [*ins.values(), weight], cotangent, allow_unused=True)


__all__ = ["ProductConfig", "ProductPoints", "ProductWorkload", "SCHEMA", "POLICY"]
