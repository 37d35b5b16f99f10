"""The points of ``gaunt bench --layers``: each layer at each L, with every implementation of it.

One point per (layer, L) (``layers``: what is built and compared). Every implementation is checked on
small inputs (``check_nodes`` / ``check_edges`` / ``check_atoms``) against the reference of its
function: the convolution's is e3nn, built from the layer's own descriptor, for both functions; the
many-body's Gaunt function has ``"cg (gaunt paths)"``, and the all-paths CG chain is its own reference.
Then one record per implementation, timed by ``engine.Sweep``.

A call: forward + backward (gradients of the differentiable inputs -- node features, edge vectors and
radial features; the atomic basis A -- and of every parameter, with a fixed random cotangent). The
warm-up runs on ``warmup_fraction`` of the edges or atoms; its time and peak memory, scaled, predict
one full call (small calls carry more overhead per edge, so the time runs high); chunks split the
edges (outputs summed) or the atoms (outputs stacked). Ratios: ``speedup[b] = t_b / t`` for each
baseline b of the layer (``baselines``) timed at the same point; ``cpu_speedup[b]`` the same from
process CPU times.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .budget import Budget, BudgetPolicy, RunConfig
from .engine import DTYPES, Entry, Estimate, Point, agreement, speedup, timed
from .layers import (
    BASELINES,
    CONVOLUTION_IMPLEMENTATIONS,
    LAYERS,
    MANY_BODY_IMPLEMENTATIONS,
    LayerRunner,
    convolution_inputs,
    convolution_runners,
    many_body_inputs,
    many_body_runners,
    split_inputs,
)
from .timing import PeakMemory, synchronize

SCHEMA = "gaunt-bench-layers/1"
POLICY = BudgetPolicy(word="over budget", calls=1, exponent=4.0, peer_exponent=4.0)
TARGET = {"layer": "many-body", "L": 4, "speedup": 10.0}  # the project's target for the Gaunt many-body at nu = 3


def baselines(layer: str) -> tuple[str, ...]:
    """The implementations a layer's others are compared with (``layers.BASELINES``, then e3nn for the
    convolution)."""
    return BASELINES[layer] + (("e3nn",) if layer == "convolution" else ())


@dataclass
class LayerConfig(RunConfig):
    """What ``gaunt bench --layers`` runs, and its budgets."""

    point_budget_s: float = 120.0
    max_repeats: int = 10
    fit_range: tuple[int, int] = (2, 16)
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
    warmup_fraction: float = 1 / 16
    check_nodes: int = 16
    check_edges: int = 48
    check_atoms: int = 16


class LayerPoints:
    """The point generator of ``gaunt bench --layers``: ``engine.Sweep(LayerPoints(config)).run()``."""

    schema = SCHEMA
    policy = POLICY

    def __init__(self, config: LayerConfig) -> None:
        unknown = [x for x in config.layers if x not in LAYERS]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; expected some of {LAYERS}")
        if config.direction not in ("fwd", "fwd+bwd") or config.dtype not in DTYPES:
            raise ValueError(f"direction must be 'fwd' or 'fwd+bwd' and dtype one of {tuple(DTYPES)}")
        self.cfg = config
        self.device = torch.device(config.device)

    def groups(self) -> list[tuple[str, int]]:
        return [(layer, L) for layer in self.cfg.layers for L in self.cfg.Ls]

    def points(self, group: tuple[str, int], budget: Budget) -> Iterator[Point]:
        layer, L = group
        cfg = self.cfg
        mul, batch = self._sizes(layer)
        fields = dict(shape=layer, layer=layer, L=L, channels=mul, batch=batch, dtype=cfg.dtype)
        fields.update(direction=cfg.direction, device=str(self.device))
        fields.update(edges=cfg.edges) if layer == "convolution" else fields.update(correlation=cfg.correlation)
        runners, missing = self._build(layer, L, mul, budget)
        checks = self._checks(layer, L, runners)
        entries = []
        for name, function, why in missing:
            role = "peer" if name == "e3nn" else "layer"
            entries.append(Entry(name, function, role, {"status": "skipped", "reason": why}))
        inputs = functools.cache(functools.partial(self._inputs, layer, L, DTYPES[cfg.dtype], True))
        for r in runners:
            if r.role != "reference":  # the agreement check's only
                work = functools.partial(LayerWorkload, layer, r, inputs, cfg, self.device)
                entries.append(Entry(r.name, r.function, r.role, checks[(r.name, r.function)], work, r.build_s))
        yield Point(fields, (layer,), entries)

    @staticmethod
    def ratios(records: list[dict]) -> None:
        done = timed(records)
        for r in records:
            r["speedup"], r["cpu_speedup"] = {}, {}
            if r["implementation"] not in done:
                continue
            for base in baselines(r["layer"]):
                if base in done and base != r["implementation"]:
                    wall, cpu = speedup(done[base], r)
                    r["speedup"][base] = wall
                    if cpu is not None:
                        r["cpu_speedup"][base] = cpu

    @staticmethod
    def line(r: dict) -> str:
        name = f"{r['implementation']} [{r['function']}]"
        head = f"{r['layer']:>11} L={r['L']:<2} mul={r['channels']:<3} {name:<28}"
        if not r.get("time_s"):
            return f"{head} {r['status']}: {r.get('reason', '')}"
        ratios = "".join(f"  x{v:.2f} vs {k}" for k, v in r.get("speedup", {}).items())
        chunks = f" ({r['chunks']} chunks)" if r.get("chunks", 1) > 1 else ""
        return f"{head} {r['time_s'] * 1e3:10.1f} ms{ratios}{chunks}"

    # ------------------------------------------------------------------ building and agreement
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

    def _build(self, layer: str, L: int, mul: int, budget: Budget) -> tuple[list[LayerRunner], list[tuple]]:
        """Runners (float64) and ``(name, function, reason)`` of those that were not built."""
        cfg = self.cfg
        if layer == "many-body":
            return many_body_runners(L, mul, cfg.correlation, cfg.many_body_products, cfg.seed), []
        names = list(cfg.conv_products)
        reason = _e3nn_missing() or budget.build_reason(("e3nn",), L, "e3nn")
        missing = [("e3nn", "cg", reason)] if reason is not None and "e3nn" in names else []
        if reason is not None:
            names = [n for n in names if n != "e3nn"]
        runners = convolution_runners(L, mul, names, cfg.seed, e3nn_reference=reason is None)
        built = [r.build_s for r in runners if r.name == "e3nn"]
        if built:
            budget.built(("e3nn",), L, max(built))
        return runners, missing

    def _checks(self, layer: str, L: int, runners: list[LayerRunner]) -> dict[tuple[str, str], dict]:
        """``{(name, function): check fields}`` (status ok / disagrees, reference, errors)."""
        dtype = DTYPES[self.cfg.dtype]
        ins64 = self._inputs(layer, L, torch.float64, full=False)
        ins = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in ins64.items()}
        sets = {torch.float64: ins64, dtype: ins}
        checks = {}
        for function in dict.fromkeys(r.function for r in runners):
            members = [r for r in runners if r.function == function]
            reference = _reference(members)
            for r in members:
                if r is reference:
                    checks[(r.name, function)] = {"status": "ok", "reference": "self"}
                else:
                    compare = functools.partial(self._outputs, sets, r, reference)
                    checks[(r.name, function)] = agreement(compare, reference.name, self.cfg.dtype)
        return checks

    def _outputs(self, sets: dict, runner: LayerRunner, reference: LayerRunner, dtype: torch.dtype) -> tuple:
        return tuple(x.forward(x.module(dtype).to(self.device), sets[dtype]) for x in (runner, reference))


def _e3nn_missing() -> str | None:
    try:
        importlib.import_module("e3nn")
    except ImportError as exc:
        return f"not installed ({exc})"
    return None


def _reference(members: list[LayerRunner]) -> LayerRunner:
    """The agreement reference of one function: e3nn (convolution), "cg (gaunt paths)" (many-body Gaunt
    function), else the first implementation."""
    for name in ("e3nn", "cg (gaunt paths)"):
        for r in members:
            if r.name == name:
                return r
    return members[0]


class LayerWorkload:
    """One implementation's call on the full graph or atoms (``engine.Workload``)."""

    unit = "edge or atom"

    def __init__(self, layer: str, runner: LayerRunner, inputs: Callable[[], dict], cfg: LayerConfig, device) -> None:
        self.layer, self.runner, self.cfg, self.device = layer, runner, cfg, device
        self.backward = backward = cfg.direction == "fwd+bwd"
        self.module = runner.module(DTYPES[cfg.dtype]).to(device)
        self.params = [p for p in self.module.parameters() if p.requires_grad] if backward else []
        grad = runner.grad_keys
        self.ins = {k: (v.detach().requires_grad_(backward) if k in grad else v) for k, v in inputs().items()}
        features = self.ins["x" if layer == "convolution" else "A"]  # both layers: output irreps = input irreps
        g = torch.Generator().manual_seed(cfg.seed + 7)
        cotangent = torch.randn(features.shape, generator=g, dtype=torch.float64)
        self.cotangent = cotangent.to(device=device, dtype=features.dtype)
        self.rows = self.ins["vectors" if layer == "convolution" else "A"].shape[0]

    def estimate(self) -> Estimate:
        """A warm-up call on a fraction of the edges or atoms: its time and peak memory, scaled."""
        pieces = max(1, min(round(1 / self.cfg.warmup_fraction), self.rows))
        warm = split_inputs(self.layer, self.ins, self.cotangent, pieces)[:1]
        start = time.perf_counter()
        with PeakMemory(self.device) as memory:
            self._call(warm)
            synchronize(self.device)
        warm_s = time.perf_counter() - start
        peak = None if memory.bytes is None else memory.bytes * pieces
        fields = dict(warmup_s=warm_s, predicted_time_s=warm_s * pieces, predicted_peak_bytes=peak)
        return Estimate(peak_bytes=peak, time_s=warm_s * pieces, basis=f"a 1/{pieces} call", fields=fields)

    def prepare(self, chunks: int) -> tuple[Callable[[], None], None]:
        return functools.partial(self._call, split_inputs(self.layer, self.ins, self.cotangent, chunks)), None

    def _call(self, parts: list) -> None:
        with torch.set_grad_enabled(self.backward):
            for piece, cotangent in parts:
                out = self.runner.forward(self.module, piece)
                if self.backward:
                    torch.autograd.grad(out, [piece[k] for k in self.runner.grad_keys] + self.params, cotangent)


__all__ = ["LayerConfig", "LayerPoints", "LayerWorkload", "SCHEMA", "POLICY", "TARGET", "baselines"]
