"""Tables and target checks from a ``gaunt bench`` results document (terminal via rich, or markdown).

One table per (shape, channels, batch, dtype, direction): a row per L, a column per implementation
(``name [function]`` when a shape has several functions), cells ``time (speedup vs e3nn)`` or the
reason a point has no time. Then the fitted cost exponents and the project's targets for the Gaunt
product (speedup vs e3nn >= 20 at L = 6 and >= 100 at L = 10, never slower at L >= 2, exponent <= 3.5).
"""

from __future__ import annotations

import sys
from collections import defaultdict

GAUNT_IMPLEMENTATIONS = ("GauntProduct", "GauntProduct[fft]", "GridGauntProduct")
TARGETS = {"speedup_L6": 20.0, "speedup_L10": 100.0, "min_speedup_L>=2": 1.0, "exponent": 3.5}


def _config(r: dict) -> tuple:
    return (r["shape"], r["channels"], r["batch"], r["dtype"], r["direction"])


SHORT = {
    "GauntProduct": "Gaunt",
    "GauntProduct[fft]": "Gaunt(fft)",
    "GridGauntProduct": "Grid",
    "VectorGauntProduct": "Vector",
    "SO2Product": "SO2",
    "CGProduct": "CG",
    "cuequivariance": "cuEq",
    "openequivariance": "OEq",
}


def _column(r: dict, several: bool) -> str:
    name = SHORT.get(r["implementation"], r["implementation"])
    return f"{name}[{r['function']}]" if several else name


def format_seconds(t: float) -> str:
    """``"12.3 ms"`` below one second, ``"4.56 s"`` above."""
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def cell(r: dict) -> str:
    """Short text for one record."""
    if r.get("time_s"):
        text = format_seconds(r["time_s"])
        if r.get("speedup_vs_e3nn") and r["implementation"] != "e3nn":
            text += f" (x{r['speedup_vs_e3nn']:.3g})"
        if r.get("chunks", 1) > 1:
            text += f" [{r['chunks']} chunks]"
        return text
    reason = (r.get("reason") or "").split(" (")[0].split(":")[0]
    if r["status"] == "disagrees":
        return f"DISAGREES ({r.get('error_float64', float('nan')):.0e})"
    return f"{r['status']}: {reason}" if reason else r["status"]


def tables(results: dict) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    """``[(title, header, rows, notes)]``, one per configuration, in the order of the records. A column
    whose every point was skipped for the same reason other than budget (a peer that is not installed
    or needs CUDA) becomes a note instead."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results["records"]:
        groups[_config(r)].append(r)
    out = []
    for (shape, mul, batch, dtype, direction), records in groups.items():
        several = len({r["function"] for r in records}) > 1
        by_column: dict[str, list[dict]] = defaultdict(list)
        for r in records:
            by_column[_column(r, several)].append(r)
        columns, notes = [], []
        for column, rs in by_column.items():
            reasons = {r.get("reason") for r in rs}
            if (
                all(r["status"] == "skipped" for r in rs)
                and len(reasons) == 1
                and not str(next(iter(reasons))).startswith("budget")
            ):
                notes.append(f"{column}: skipped, {next(iter(reasons))}")
            else:
                columns.append(column)
        by_L: dict[int, dict[str, str]] = defaultdict(dict)
        for r in records:
            by_L[r["L"]][_column(r, several)] = cell(r)
        rows = [[str(L)] + [by_L[L].get(c, "") for c in columns] for L in sorted(by_L)]
        title = f"{shape}: {mul} channels, batch {batch}, {dtype}, {direction} (time per call; x = speedup vs e3nn)"
        out.append((title, ["L"] + columns, rows, notes))
    return out


def fit_rows(results: dict) -> list[list[str]]:
    """Rows ``[configuration, implementation, exponent, L range, points]`` of the cost fits."""
    return [
        [
            f"{f['shape']} {f['channels']}ch B={f['batch']} {f['dtype']} {f['direction']}",
            f"{f['implementation']} [{f['function']}]",
            f"{f['exponent']:.2f}",
            f"{f['L'][0]:g}..{f['L'][1]:g}",
            str(f["points"]),
        ]
        for f in results.get("fits", [])
    ]


def evaluate_targets(
    results: dict, shape="feature", channels=64, batch=10000, dtype="float32", direction="fwd+bwd"
) -> list[dict]:
    """The targets for each Gaunt implementation at one configuration: value, threshold, met (None:
    not measured, e.g. e3nn skipped for budget)."""
    records = [r for r in results["records"] if _config(r) == (shape, channels, batch, dtype, direction)]
    fits = {
        f["implementation"]: f
        for f in results.get("fits", [])
        if (f["shape"], f["channels"], f["batch"], f["dtype"], f["direction"])
        == (shape, channels, batch, dtype, direction)
    }
    out = []
    for name in GAUNT_IMPLEMENTATIONS:
        mine = {r["L"]: r for r in records if r["implementation"] == name and r["function"] == "gaunt"}
        if not mine:
            continue
        speed = {L: r.get("speedup_vs_e3nn") for L, r in mine.items()}
        for L, key in ((6, "speedup_L6"), (10, "speedup_L10")):
            value = speed.get(L)
            out.append(
                {
                    "implementation": name,
                    "target": f"speedup vs e3nn at L={L} >= {TARGETS[key]:g}",
                    "value": value,
                    "met": None if value is None else value >= TARGETS[key],
                }
            )
        measured = {L: s for L, s in speed.items() if L >= 2 and s is not None}
        worst = min(measured.values()) if measured else None
        where = f" (measured L={min(measured)}..{max(measured)})" if measured else ""
        out.append(
            {
                "implementation": name,
                "target": f"never slower than e3nn at L >= 2{where}",
                "value": worst,
                "met": None if worst is None else worst >= 1.0,
            }
        )
        fit = fits.get(name)
        value = fit["exponent"] if fit else None
        span = f" (fitted over L={fit['L'][0]:g}..{fit['L'][1]:g})" if fit else ""
        out.append(
            {
                "implementation": name,
                "target": f"cost exponent <= 3.5 over L = 4..16{span}",
                "value": value,
                "met": None if value is None else value <= TARGETS["exponent"],
            }
        )
    return out


def print_tables(table_list: list[tuple[str, list[str], list[list[str]], list[str]]]) -> None:
    """Print ``[(title, header, rows, notes)]`` with rich (plain text if rich is not installed)."""
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:  # plain fallback
        for title, header, rows, notes in table_list:
            print(f"\n{title}")
            print(markdown_table(header, rows))
            print("\n".join(notes))
        return
    console = Console() if sys.stdout.isatty() else Console(width=200)  # logs and pipes: no wrapping at 80
    for title, header, rows, notes in table_list:
        # escape: "name [function]" labels would otherwise be read as rich markup tags and vanish
        table = Table(
            title=escape(title), title_justify="left", caption=escape("\n".join(notes)) or None, caption_justify="left"
        )
        for i, h in enumerate(header):
            table.add_column(escape(h), justify="right" if i == 0 else "left", overflow="fold")
        for row in rows:
            table.add_row(*[escape(c) for c in row])
        console.print(table)


FIT_HEADER = ["configuration", "implementation", "k", "L", "points"]
FIT_TITLE = "Fitted cost exponent t ~ L^k (least squares on log t vs log L)"


def print_report(results: dict) -> None:
    """Print the tables and the fitted exponents with rich (plain text if rich is not installed)."""
    print_tables(tables(results) + [(FIT_TITLE, FIT_HEADER, fit_rows(results), [])])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_tables(table_list: list[tuple[str, list[str], list[list[str]], list[str]]]) -> list[str]:
    """Markdown lines of ``[(title, header, rows, notes)]``: a bold title, the table, the notes as a list."""
    parts = []
    for title, header, rows, notes in table_list:
        parts += (
            [f"**{title}**", "", markdown_table(header, rows), ""] + [f"- {n}" for n in notes] + ([""] if notes else [])
        )
    return parts


def markdown_report(results: dict) -> str:
    """All tables, fits and (where the headline configuration was run) targets, as markdown."""
    parts = markdown_tables(tables(results))
    parts += [
        "**Fitted cost exponents** (t ~ L^k, least squares on log t vs log L)",
        "",
        markdown_table(FIT_HEADER, fit_rows(results)),
        "",
    ]
    targets = evaluate_targets(results)
    if targets:
        rows = [
            [
                t["implementation"],
                t["target"],
                "-" if t["value"] is None else f"{t['value']:.3g}",
                {True: "met", False: "NOT met", None: "not measured"}[t["met"]],
            ]
            for t in targets
        ]
        parts += [
            "**Targets** (feature, 64 channels, batch 10000, float32, fwd+bwd)",
            "",
            markdown_table(["implementation", "target", "value", "status"], rows),
            "",
        ]
    return "\n".join(parts)


__all__ = [
    "tables",
    "cell",
    "fit_rows",
    "evaluate_targets",
    "print_report",
    "print_tables",
    "markdown_report",
    "markdown_tables",
    "markdown_table",
    "format_seconds",
]
