"""Tables, the project's target and the files (JSON, markdown, PNG) of a ``gaunt bench --layers`` document.

One table per layer: a row per L, a column per implementation (``name [function]``), cells ``time
(x a / x b)`` with the speedups over the layer's baselines (``layers.BASELINES``, then e3nn for the
convolution), or why the point has no time (``over budget``, ``DISAGREES``, ...). Printing and
markdown go through ``report.print_tables`` / ``report.markdown_tables``, the plots through
``plots.plot_results`` (one figure per layer), the JSON through ``results.write_json``.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

from .layers import BASELINES
from .points_layers import TARGET, baselines
from .report import FIT_HEADER, FIT_TITLE, fit_rows, format_seconds, markdown_table, markdown_tables, print_tables

Table = tuple[str, list[str], list[list[str]], list[str]]


def _label(layer: str, name: str) -> str:
    """A baseline's name in titles: the many-body "cg" is the all-paths chain."""
    return "cg (all paths)" if (layer, name) == ("many-body", "cg") else name


def layer_cell(r: dict) -> str:
    """``"1.23 s (x4.5 / x3.2)"``: speedups over the layer's baselines in order (``x1`` for a baseline itself,
    ``-`` where a baseline has no time)."""
    if r.get("time_s"):
        text = format_seconds(r["time_s"])
        speedup = dict(r.get("speedup", {}), **{r["implementation"]: 1.0})
        ratios = [f"x{speedup[b]:.3g}" if b in speedup else "-" for b in baselines(r["layer"])]
        if len(speedup) > 1:
            text += f" ({' / '.join(ratios)})"
        if r.get("chunks", 1) > 1:
            text += f" [{r['chunks']} chunks]"
        return text
    if r["status"] == "disagrees":
        return f"DISAGREES ({r.get('error_float64', float('nan')):.0e})"
    reason = (r.get("reason") or "").split(" (")[0].split(":")[0]
    return reason if r["status"] == "skipped" and reason else f"{r['status']}: {reason}"


def layer_tables(results: dict) -> list[Table]:
    """``[(title, header, rows, notes)]``, one per layer (``report`` format)."""
    by_layer: dict[str, list[dict]] = defaultdict(list)
    for r in results["records"]:
        by_layer[r["layer"]].append(r)
    out = []
    for layer, records in by_layer.items():
        columns, notes, several = [], [], len({r["function"] for r in records}) > 1
        label = lambda r: f"{r['implementation']} [{r['function']}]" if several else r["implementation"]  # noqa: E731
        by_column: dict[str, list[dict]] = defaultdict(list)
        for r in records:
            by_column[label(r)].append(r)
        for column, rs in by_column.items():
            reasons = {r.get("reason") for r in rs}
            if (
                all(r["status"] == "skipped" for r in rs)
                and len(reasons) == 1
                and not str(next(iter(reasons))).startswith("over budget")
            ):
                notes.append(f"{column}: skipped, {next(iter(reasons))}")
            else:
                columns.append(column)
        cells: dict[int, dict[str, str]] = defaultdict(dict)
        for r in records:
            cells[r["L"]][label(r)] = layer_cell(r)
        rows = [[str(L)] + [cells[L].get(c, "") for c in columns] for L in sorted(cells)]
        first = records[0]
        size = (
            f"{first['batch']} nodes, {first['edges']} edges"
            if layer == "convolution"
            else f"{first['batch']} atoms, correlation {first['correlation']}"
        )
        ratios = " / ".join(f"vs {_label(layer, b)}" for b in baselines(layer))
        title = (
            f"{layer}: {first['channels']} channels, {size}, {first['dtype']}, {first['direction']} "
            f"(time per call; x = speedup {ratios})"
        )
        out.append((title, ["L"] + columns, rows, notes))
    return out


def evaluate_layer_targets(results: dict) -> list[dict]:
    """The project's target (Gaunt many-body at nu = 3 >= 10x faster than its CG version at L = 4), for each
    Gaunt implementation against both CG versions: value, threshold, met (None: not measured)."""
    out = []
    layer, L, threshold = TARGET["layer"], TARGET["L"], TARGET["speedup"]
    for r in results["records"]:
        if r["layer"] != layer or r["L"] != L or r["function"] != "gaunt" or r["implementation"].startswith("cg"):
            continue
        for base in BASELINES[layer]:
            value = r.get("speedup", {}).get(base)
            out.append(
                {
                    "implementation": r["implementation"],
                    "baseline": base,
                    "L": L,
                    "correlation": r.get("correlation"),
                    "target": f">= {threshold:g}x faster than {_label(layer, base)} at L={L}",
                    "value": value,
                    "met": None if value is None else value >= threshold,
                }
            )
    return out


def _machine_line(results: dict) -> str:
    m, end = results.get("machine", {}), results.get("machine_end", {})
    load = lambda v: "?" if not v else f"{v[0]:.1f}"  # noqa: E731
    return (
        f"{m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cores, torch {m.get('torch', '?')} "
        f"({m.get('torch_threads', '?')} thread(s)), e3nn {m.get('e3nn')}, device {m.get('device', '?')}, "
        f"load average (1 min) {load(m.get('load_average_1_5_15'))} at start, "
        f"{load(end.get('load_average_1_5_15'))} at end"
    )


def _target_rows(results: dict) -> list[list[str]]:
    return [
        [
            t["implementation"],
            t["target"],
            "-" if t["value"] is None else f"{t['value']:.3g}",
            {True: "met", False: "NOT met", None: "not measured"}[t["met"]],
        ]
        for t in evaluate_layer_targets(results)
    ]


def markdown_summary(results: dict) -> str:
    """``summary.md``: command, date, machine, the tables, the fitted exponents, the target."""
    parts = [
        f"`{results.get('command', 'gaunt bench --layers')}` ({time.strftime('%Y-%m-%d')}, "
        f"{results['elapsed_s']:.0f} s)",
        "",
        f"Machine: {_machine_line(results)}",
        "",
    ]
    parts += markdown_tables(layer_tables(results))
    parts += [
        "**Fitted cost exponents** (t ~ L^k, least squares on log t vs log L)",
        "",
        markdown_table(FIT_HEADER, fit_rows(results)),
        "",
    ]
    rows = _target_rows(results)
    if rows:
        parts += [
            f"**Target** (many-body, correlation {results['config'].get('correlation')}, L = {TARGET['L']})",
            "",
            markdown_table(["implementation", "target", "value", "status"], rows),
            "",
        ]
    return "\n".join(parts)


def print_summary(results: dict) -> None:
    tables = layer_tables(results) + [(FIT_TITLE, FIT_HEADER, fit_rows(results), [])]
    rows = _target_rows(results)
    if rows:
        tables.append(
            (f"Target (many-body, L = {TARGET['L']})", ["implementation", "target", "value", "status"], rows, [])
        )
    print_tables(tables)


def write_outputs(results: dict, out: str, plots: bool = True) -> list[str]:
    """``out/results.json``, ``out/summary.md`` and (``plots``) one PNG per layer; returns the paths."""
    from .results import write_json

    os.makedirs(out, exist_ok=True)
    write_json(results, out)
    paths = [os.path.join(out, "results.json"), os.path.join(out, "summary.md")]
    with open(paths[1], "w") as f:
        f.write(markdown_summary(results))
    if plots:
        from .plots import plot_results

        for layer in dict.fromkeys(r["layer"] for r in results["records"]):
            records = [r for r in results["records"] if r["layer"] == layer]
            sub = dict(
                results,
                records=records,
                fits=[f for f in results.get("fits", []) if f["shape"] == layer],
                config={"channels": [records[0]["channels"]], "batches": [records[0]["batch"]]},
            )
            paths += plot_results(sub, out)
    return paths


__all__ = ["layer_cell", "layer_tables", "evaluate_layer_targets", "markdown_summary", "print_summary", "write_outputs"]
