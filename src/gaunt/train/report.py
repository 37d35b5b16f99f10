"""Run outputs: the JSON-lines epoch log, the learning-curve PNG and the final error table."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    """JSON has no NaN / inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_log(path: str | os.PathLike, history: Sequence[dict[str, Any]]) -> None:
    """(Re)write the whole log from ``history`` (atomically): after a resume the log matches the checkpoint
    exactly, whatever was appended after it before the crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        for record in history:
            handle.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
    os.replace(tmp, path)


def append_log(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one epoch record (one JSON object per line)."""
    with open(path, "a") as handle:
        handle.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines log."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def plot_learning_curve(history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Loss (train, valid) and validation RMSEs against epoch, log scale, saved as PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_rmse) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("valid_loss", "valid")):
        ax_loss.plot(epochs, [r.get(key) for r in history], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="weighted loss")
    ax_loss.legend()
    ax_energy = ax_rmse
    ax_energy.plot(epochs, [r.get("valid_e_rmse") for r in history], "C0.-", label="E RMSE (meV/atom)")
    ax_energy.set(xlabel="epoch", ylabel="E RMSE (meV/atom)", yscale="log", title="validation")
    if any(r.get("valid_f_rmse") is not None for r in history):
        ax_force = ax_energy.twinx()
        ax_force.plot(epochs, [r.get("valid_f_rmse") for r in history], "C1.-", label="F RMSE (meV/A)")
        ax_force.set(ylabel="F RMSE (meV/A)", yscale="log")
        ax_force.legend(loc="upper right")
    ax_energy.legend(loc="upper left")
    # plain-text tick labels: the default log formatter typesets every label with mathtext, which costs
    # seconds per figure on a busy CPU
    from matplotlib.ticker import LogFormatter, NullFormatter

    for ax in fig.axes:
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(NullFormatter())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Plain-text table: one row per set with E RMSE / MAE (meV/atom) and F RMSE / MAE (meV/A)."""

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    w = max([16] + [len(name) for name in metrics])
    header = f"{'set':<{w}} {'configs':>7} {'E RMSE':>10} {'E MAE':>10} {'F RMSE':>10} {'F MAE':>10}"
    units = f"{'':<{w}} {'':>7} {'meV/atom':>10} {'meV/atom':>10} {'meV/A':>10} {'meV/A':>10}"
    lines = [header, units, "-" * len(header)]
    for name, m in metrics.items():
        lines.append(
            f"{name:<{w}} {m.get('num_configs', 0):>7} {cell(m.get('e_rmse')):>10} {cell(m.get('e_mae')):>10} "
            f"{cell(m.get('f_rmse')):>10} {cell(m.get('f_mae')):>10}"
        )
    return "\n".join(lines)


__all__ = ["write_log", "append_log", "read_log", "plot_learning_curve", "format_table"]
