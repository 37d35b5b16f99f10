"""Automatic choice between exact implementations of the same product, by a small measurement.

``choose_product(irreps_in1, irreps_in2, irreps_out, device, dtype)`` builds every candidate (by
default ``GauntProduct`` with both transforms and ``GridGauntProduct``: the same Gaunt function, 2D Fourier
torus by DFT matrices or FFTs vs Gauss-Legendre grid; names as in ``gaunt bench``, ``products.by_bench_name``),
checks that they agree in float64 (relative error <= 1e-9; they must, since both are exact), times a
forward+backward call of each on ``batch`` random samples (median of at least 3 calls after a
warm-up, ``timing.time_call``), and returns the fastest as a :class:`Choice` with a reason string
that is also logged (logger ``gaunt.bench.auto``, level INFO). Results are cached per
(irreps, device, dtype, batch, direction, candidates). Nothing is chosen silently: a candidate that
cannot be built is named in the reason, and if none can be built, or they disagree, it raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..products import PRODUCTS, GauntProduct
from ..so3 import Irreps
from .engine import relative_error
from .products import by_bench_name, variant_options
from .timing import time_call

logger = logging.getLogger("gaunt.bench.auto")
#: the registered executions of the Gaunt function (GauntProduct and its grid subclass), by bench name
CANDIDATES = tuple(s.bench_name for s in PRODUCTS.values() if issubclass(s.cls, GauntProduct))
_CACHE: dict[tuple, Choice] = {}


@dataclass(frozen=True)
class Choice:
    """The chosen implementation: ``name``, class ``cls`` and its constructor ``options``, ``reason``
    (why, with the measured times), ``times_s`` per candidate, and the cache ``key`` (irreps first)."""

    name: str
    cls: type
    reason: str
    times_s: dict
    key: tuple
    options: dict

    def build(self, **kwargs) -> torch.nn.Module:
        """A new instance of the chosen product on the same irreps (``kwargs`` go to its constructor)."""
        return self.cls(*self.key[:3], **{**self.options, **kwargs})


def choose_product(
    irreps_in1,
    irreps_in2,
    irreps_out,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    batch: int = 256,
    backward: bool = True,
    candidates: Sequence[str] = CANDIDATES,
    use_cache: bool = True,
) -> Choice:
    """The fastest exact candidate for these irreps on ``device`` in ``dtype`` (see the module docstring)."""

    device = torch.device(device)
    irreps = tuple(str(Irreps(i)) for i in (irreps_in1, irreps_in2, irreps_out))
    key = (*irreps, str(device), str(dtype), int(batch), bool(backward), tuple(candidates))
    if use_cache and key in _CACHE:
        choice = _CACHE[key]
        logger.info("choose_product (cached): %s", choice.reason)
        return choice
    built, failed = {}, {}
    for name in candidates:
        specs = by_bench_name()
        if name not in specs:
            failed[name] = f"not a registered product (bench names: {sorted(specs)})"
            continue
        try:
            built[name] = specs[name].build(*irreps, internal_weights=False, shared_weights=True)
        except (ValueError, AttributeError) as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    if not built:
        raise ValueError(f"choose_product: no candidate accepts {irreps}: {failed}")
    _check_agreement(built)
    g = torch.Generator().manual_seed(0)
    first = next(iter(built.values()))
    x1 = torch.randn(batch, first.irreps_in1.dim, generator=g, dtype=dtype).to(device).requires_grad_(backward)
    x2 = torch.randn(batch, first.irreps_in2.dim, generator=g, dtype=dtype).to(device).requires_grad_(backward)
    times = {}
    for name, product in built.items():
        module = product.to(device=device, dtype=dtype)
        w = torch.randn(module.weight_numel, generator=g, dtype=dtype).to(device).requires_grad_(backward)

        def call(module=module, w=w) -> None:
            with torch.set_grad_enabled(backward):
                out = module(x1, x2, w)
                if backward:
                    torch.autograd.grad(out, [x1, x2, w], torch.ones_like(out))

        times[name] = time_call(call, device, min_time=0.05, min_repeats=3, max_repeats=7).median_s
    best = min(times, key=times.get)
    direction = "forward+backward" if backward else "forward"
    others = ", ".join(f"{n} {t * 1e3:.3g} ms" for n, t in times.items() if n != best)
    reason = (
        f"{best}: fastest exact implementation for {irreps[0]} x {irreps[1]} -> {irreps[2]} on {device}, "
        f"{str(dtype).replace('torch.', '')}: {times[best] * 1e3:.3g} ms per {direction} call of {batch} samples"
        f"{' vs ' + others if others else ''} (median of >= 3 calls, measured now)"
    )
    if failed:
        reason += "; not applicable: " + "; ".join(f"{n} ({e})" for n, e in failed.items())
    choice = Choice(best, type(built[best]), reason, times, key, variant_options(best))
    if use_cache:
        _CACHE[key] = choice
    logger.info("choose_product: %s", reason)
    return choice


def _check_agreement(built: dict) -> None:
    """All candidates must compute the same function (float64, 8 samples, per-path weights mapped)."""
    if len(built) < 2:
        return
    g = torch.Generator().manual_seed(1)
    items = list(built.items())
    name0, p0 = items[0]
    x1 = torch.randn(8, p0.irreps_in1.dim, generator=g, dtype=torch.float64)
    x2 = torch.randn(8, p0.irreps_in2.dim, generator=g, dtype=torch.float64)
    w0 = torch.randn(p0.weight_numel, generator=g, dtype=torch.float64)
    ref = p0(x1, x2, w0)
    for name, p in items[1:]:
        if p.descriptor() != p0.descriptor() or p.weight_numel != p0.weight_numel:
            raise ValueError(f"choose_product: {name} and {name0} do not describe the same function")
        err = relative_error(p(x1, x2, w0), ref)
        if err > 1e-9:
            raise RuntimeError(
                f"choose_product: {name} differs from {name0} by {err:.1e} (relative); refusing to choose"
            )


def clear_cache() -> None:
    """Forget the cached choices."""
    _CACHE.clear()


__all__ = ["choose_product", "Choice", "CANDIDATES", "clear_cache"]
