"""PNG plots of a ``gaunt bench`` results document: time per call vs L, log-log.

One figure per (shape, dtype, direction) at one (channels, batch), a line per implementation (and
function, where a shape has several), its fitted exponent k (t ~ L^k over the fit range) in the
legend. matplotlib is imported here only (lazily, Agg backend): the benchmark runs without it.
"""

from __future__ import annotations

import os
from collections import defaultdict

#: drawn dashed: the references the others are compared with (product bench peers, CG layers)
REFERENCES = ("e3nn", "CGProduct", "cuequivariance", "openequivariance", "cg", "cg (gaunt paths)")


def pick_headline(results: dict, channels: int | None = None, batch: int | None = None) -> tuple[int, int]:
    """(channels, batch) to plot: the given ones, else 64 / 10000 when swept, else the largest swept."""
    cfg = results["config"]
    chans, batches = list(cfg["channels"]), list(cfg["batches"])
    channels = channels if channels is not None else (64 if 64 in chans else max(chans))
    batch = batch if batch is not None else (10000 if 10000 in batches else max(batches))
    return channels, batch


def plot_results(results: dict, out_dir: str, channels: int | None = None, batch: int | None = None) -> list[str]:
    """Write ``time_vs_L_{shape}_{dtype}_{direction}.png`` files into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels, batch = pick_headline(results, channels, batch)
    fits = {
        (f["shape"], f["dtype"], f["direction"], f["function"], f["implementation"]): f
        for f in results.get("fits", [])
        if f["channels"] == channels and f["batch"] == batch
    }
    figures: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for r in results["records"]:
        if r["channels"] == channels and r["batch"] == batch and r.get("time_s"):
            figures[(r["shape"], r["dtype"], r["direction"])][(r["function"], r["implementation"])].append(
                (r["L"], r["time_s"])
            )
    machine = results.get("machine", {})
    paths = []
    os.makedirs(out_dir, exist_ok=True)
    for (shape, dtype, direction), lines in figures.items():
        several = len({f for f, _ in lines}) > 1
        fig, ax = plt.subplots(figsize=(7, 5))
        for (function, name), points in sorted(lines.items(), key=lambda kv: kv[0][1]):
            points.sort()
            fit = fits.get((shape, dtype, direction, function, name))
            label = f"{name} [{function}]" if several else name
            if fit:
                label += f"  (k = {fit['exponent']:.2f}, L={fit['L'][0]:g}..{fit['L'][1]:g})"
            style = "--" if name in REFERENCES else "-"
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("L (max degree)")
        ax.set_ylabel("time per call [s]")
        Ls = sorted({p[0] for pts in lines.values() for p in pts})
        if len(Ls) > 8:  # log axis: label a readable subset
            Ls = [L for L in Ls if L in (1, 2, 3, 4, 6, 8, 10, 12, 16) or L == Ls[-1]]
        ax.set_xticks(Ls)
        ax.set_xticklabels([str(L) for L in Ls])
        ax.minorticks_off()
        ax.set_title(
            f"{shape}: {channels} channels, batch {batch}, {dtype}, {direction}\n"
            f"{machine.get('cpu_model', '')} / {machine.get('device', '')}, "
            f"torch threads: {machine.get('torch_threads', '?')}",
            fontsize=9,
        )
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"time_vs_L_{shape}_{dtype}_{direction.replace('+', '_')}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


__all__ = ["plot_results", "pick_headline"]
