"""The results document of a sweep: the cost fits, merging several runs, writing ``results.json``.

A document (``engine.Sweep.results``) holds ``schema``, ``config``, ``machine``, ``records`` (one per
implementation and point) and ``fits``. Both schemas (``gaunt-bench/1`` for the products,
``gaunt-bench-layers/1`` for the layers) share the record fields that the fits and merges read:
shape, L, channels, batch, dtype, direction, function, implementation, status and time_s.
"""

from __future__ import annotations

import json
import os

from .timing import fit_exponent

SERIES_FIELDS = ("shape", "channels", "batch", "dtype", "direction", "function", "implementation")
POINT_FIELDS = ("shape", "L", "channels", "batch", "dtype", "direction", "function", "implementation")


def compute_fits(records: list[dict], fit_range: tuple[int, int] = (4, 16)) -> list[dict]:
    """Fitted cost exponent per series (``SERIES_FIELDS``) over ``fit_range``, from the timed points."""
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in records:
        if r.get("time_s"):
            series.setdefault(tuple(r[f] for f in SERIES_FIELDS), []).append((r["L"], r["time_s"]))
    out = []
    for key, points in series.items():
        fit = fit_exponent([p[0] for p in points], [p[1] for p in points], *fit_range)
        if fit is not None:
            out.append(dict(zip(SERIES_FIELDS, key), **fit))
    return out


def merge_results(documents: list[dict]) -> dict:
    """One document from several runs: records concatenated (a later run's record for the same point
    and implementation replaces an earlier one that was not timed), fits recomputed; ``runs`` keeps each
    run's command, machine and config."""
    merged: dict[tuple, dict] = {}
    for doc in documents:
        for r in doc["records"]:
            key = tuple(r[f] for f in POINT_FIELDS)
            if key not in merged or merged[key]["status"] != "ok":
                merged[key] = dict(r, run=doc.get("command"))
    first = documents[0]
    records = list(merged.values())
    runs = [{k: d.get(k) for k in ("command", "machine", "machine_end", "config", "elapsed_s")} for d in documents]
    return dict(
        first,
        records=records,
        fits=compute_fits(records, tuple(first["config"].get("fit_range", (4, 16)))),
        elapsed_s=sum(d.get("elapsed_s", 0.0) for d in documents),
        command=" + ".join(str(d.get("command")) for d in documents),
        runs=runs,
    )


def write_json(results: dict, out: str) -> str:
    """Write ``out/results.json`` atomically (also after every group, so a stopped run keeps its data)."""
    path = os.path.join(out, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(path + ".tmp", path)
    return path


def load(path: str) -> dict:
    """A results document from ``path`` (a ``results.json``)."""
    with open(path) as f:
        return json.load(f)


__all__ = ["compute_fits", "merge_results", "write_json", "load", "SERIES_FIELDS", "POINT_FIELDS"]
