"""The sphere products on each executor ("torch" and "triton") on one device: agreement and fwd+bwd times.

``gaunt bench`` times a product with the executor that "auto" picks (Triton on CUDA); this sweep puts the
executors side by side on the same product, shape and inputs:

* agreement: the Triton output against the torch executor's in float64 (max |difference| / max |output|),
  and the benchmark dtype's output against float64 (its rounding error);
* time of one forward + backward (gradients of x1, x2 and the weights; ``gaunt.bench.timing.time_call``,
  median of repeats after a warm-up that includes Triton's compilation).

``run(...)`` returns one record per (product, shape, channels, L, executor); ``write(...)`` the JSON, a
markdown table and a plot (time against L, one line per executor and channels).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import torch

from gaunt.bench.products import sh_irreps
from gaunt.bench.timing import time_call
from gaunt.products import PRODUCTS

EXECUTOR_NAMES = ("torch", "triton")


def build(product: str, shape: str, L: int, mul: int, executor: str, device) -> torch.nn.Module:
    """The registered product for the bench shape (feature: mul channels twice; edge: harmonics as x2)."""
    node = sh_irreps(mul, L)
    second = node if shape == "feature" else sh_irreps(1, L)
    spec = PRODUCTS[product]
    return spec.build(node, second, node, internal_weights=False, shared_weights=True, executor=executor).to(device)


def inputs(module: torch.nn.Module, batch: int, dtype: torch.dtype, device, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dims = (module.irreps_in1.dim, module.irreps_in2.dim)
    xs = [torch.randn(batch, d, generator=g, dtype=torch.float64) for d in dims]
    w = torch.randn(module.weight_numel, generator=g, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (*xs, w)]


def fwd_bwd(module: torch.nn.Module, args: list[torch.Tensor]):
    """One forward + backward call: the gradients of every input."""
    args = [a.detach().requires_grad_() for a in args]
    out = module(*args)
    return torch.autograd.grad(out, args, torch.ones_like(out))


def agreement(product: str, shape: str, L: int, mul: int, dtype: torch.dtype, device) -> dict:
    """Relative differences: triton vs torch in float64, and each executor's ``dtype`` output vs float64."""
    outs = {}
    for ex in EXECUTOR_NAMES:
        module = build(product, shape, L, mul, ex, device).double()
        args = inputs(module, 64, torch.float64, device, seed=1)
        outs[ex] = module(*args).detach()
        outs[ex + "_low"] = module.to(dtype)(*[a.to(dtype) for a in args]).detach().double()
    scale = float(outs["torch"].abs().max())

    def rel(a: str, b: str) -> float:
        return float((outs[a] - outs[b]).abs().max()) / scale

    return {
        "triton_vs_torch_float64": rel("triton", "torch"),
        "torch_dtype_error": rel("torch_low", "torch"),
        "triton_dtype_error": rel("triton_low", "torch"),
    }


def run(
    device,
    Ls,
    channels,
    batch: int,
    dtype: torch.dtype,
    shape: str = "feature",
    products=("grid", "gaunt"),
    budget_s: float = 60.0,
    min_time: float = 0.2,
) -> list[dict]:
    """The sweep (module docstring); points past ``budget_s`` are recorded as skipped."""
    start, records = time.perf_counter(), []
    for product in products:
        for mul in channels:
            for L in Ls:
                base = {
                    "product": product,
                    "shape": shape,
                    "channels": mul,
                    "L": L,
                    "batch": batch,
                    "dtype": str(dtype)[6:],
                    "device": str(device),
                }
                if time.perf_counter() - start > budget_s:
                    records += [dict(base, executor=ex, status="skipped", reason="budget") for ex in EXECUTOR_NAMES]
                    continue
                records += _point(base, product, shape, L, mul, batch, dtype, device, min_time)
    return records


def _point(base, product, shape, L, mul, batch, dtype, device, min_time) -> list[dict]:
    try:
        check = agreement(product, shape, L, mul, dtype, device)
    except Exception as exc:  # noqa: BLE001 - a failure is a result (recorded), never the end of the run
        return [
            dict(base, executor=ex, status="error", reason=f"{type(exc).__name__}: {exc}"[:300])
            for ex in EXECUTOR_NAMES
        ]
    out = []
    for ex in EXECUTOR_NAMES:
        try:
            module = build(product, shape, L, mul, ex, device).to(dtype)
            args = inputs(module, batch, dtype, device)
            timing = time_call(
                functools.partial(fwd_bwd, module, args), device, min_time=min_time, max_time=10 * min_time
            )
            out.append(
                dict(
                    base,
                    executor=ex,
                    status="ok",
                    time_s=timing.median_s,
                    repeats=timing.repeats,
                    warmup_s=timing.warmup_s,
                    peak_memory_bytes=timing.peak_memory_bytes,
                    **check,
                )
            )
        except Exception as exc:  # noqa: BLE001 - recorded
            out.append(dict(base, executor=ex, status="error", reason=f"{type(exc).__name__}: {exc}"[:300]))
        finally:
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
    return out


def table(records: list[dict]) -> str:
    """Markdown: one row per (product, shape, channels, L) with both executors' times and the speedup."""
    rows = {}
    for r in records:
        rows.setdefault((r["product"], r["shape"], r["channels"], r["L"]), {})[r["executor"]] = r
    head = "| product | shape | channels | L | torch (ms) | triton (ms) | triton speedup | triton vs torch (float64) |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for (product, shape, mul, L), by in sorted(rows.items()):
        t = {ex: by.get(ex, {}).get("time_s") for ex in EXECUTOR_NAMES}
        cell = {ex: f"{t[ex] * 1e3:.3f}" if t[ex] else by.get(ex, {}).get("status", "-") for ex in EXECUTOR_NAMES}
        speed = f"{t['torch'] / t['triton']:.2f}x" if t["torch"] and t["triton"] else "-"
        diff = by.get("triton", {}).get("triton_vs_torch_float64")
        lines.append(
            f"| {product} | {shape} | {mul} | {L} | {cell['torch']} | {cell['triton']} | {speed} | "
            f"{'-' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


def write(records: list[dict], out: Path, stem: str = "executors") -> list[str]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` (when matplotlib imports) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(records, indent=1))
    (out / f"{stem}.md").write_text(table(records))
    paths = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = {}
    for r in records:
        if r.get("time_s"):
            series.setdefault((r["product"], r["shape"], r["channels"], r["executor"]), []).append(
                (r["L"], r["time_s"])
            )
    for (product, shape, mul, ex), points in sorted(series.items()):
        Ls, ts = zip(*sorted(points))
        ax.plot(Ls, [t * 1e3 for t in ts], "o-" if ex == "triton" else "s--", label=f"{product} {shape} {mul}ch {ex}")
    ax.set(xlabel="L", ylabel="fwd+bwd time (ms)", yscale="log", title=f"executors on {records[0]['device']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    plt.close(fig)
    return paths + [str(out / f"{stem}.png")]


__all__ = ["EXECUTOR_NAMES", "agreement", "build", "run", "table", "write"]
