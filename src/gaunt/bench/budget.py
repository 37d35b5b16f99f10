"""The budgets of a sweep: its configuration (device, budgets, timing) and the time budget's state.

Every budget reason a record carries starts with the generator's ``BudgetPolicy.word`` ("budget" for
the products, "over budget" for the layers: the reports group the skips on it). A *series* is one
implementation of one function over L, with everything else fixed; its timed points predict its next
ones (``timing.predict_time``: the exponent fitted on the last points, or the policy's while there is
one point).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .timing import predict_time

GiB = 1 << 30


@dataclass
class RunConfig:
    """Device, budgets (seconds, bytes) and timing: what every sweep shares."""

    device: str = "cpu"
    point_budget_s: float = 60.0
    build_budget_s: float = 120.0
    total_budget_s: float | None = None
    memory_budget_bytes: int = 8 * GiB
    min_time_s: float = 1.0
    min_repeats: int = 3
    max_repeats: int = 25
    seed: int = 0
    fit_range: tuple[int, int] = (4, 16)
    untimed: tuple[str, ...] = ()  # implementations used for the agreement check only, never timed


@dataclass(frozen=True)
class BudgetPolicy:
    """How a generator's series are cut: every budget reason starts with ``word`` (the reports group
    skips on it); ``calls`` predicted calls must fit in the point budget; ``exponent`` (``peer_exponent``
    for role "peer") is the cost exponent in L assumed while a series has a single measured point."""

    word: str = "budget"
    calls: int = 2
    exponent: float = 3.0
    peer_exponent: float = 4.0


class Budget:
    """The time budgets of one run: total, per series (from its timed points), per construction."""

    def __init__(self, cfg: RunConfig, policy: BudgetPolicy) -> None:
        self.cfg, self.policy = cfg, policy
        self.start = time.perf_counter()
        self._history: dict[tuple, dict[int, float]] = {}
        self._stopped: dict[tuple, str] = {}
        self._builds: dict[tuple, dict[int, float]] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def reason(self, series: tuple, L: int, role: str) -> str | None:
        """Why ``series`` is not timed at ``L`` (None: it may be): the total budget is spent, the series
        stopped at a smaller L, or ``policy.calls`` calls predicted from its history exceed the point budget."""
        cfg, policy = self.cfg, self.policy
        if cfg.total_budget_s is not None and self.elapsed() > cfg.total_budget_s:
            return f"{policy.word} (total time budget of {cfg.total_budget_s:.0f} s spent)"
        if series in self._stopped:
            return self._stopped[series]
        history = self._history.get(series, {})
        exponent = policy.peer_exponent if role == "peer" else policy.exponent
        predicted = predict_time(history, L, default_exponent=exponent)
        if predicted is None or policy.calls * predicted <= cfg.point_budget_s:
            return None
        calls = "one call" if policy.calls == 1 else f"{policy.calls} calls"
        why = (
            f"predicted {predicted:.3g} s per call from L <= {max(history)}: {calls} > point budget "
            f"{cfg.point_budget_s:.0f} s"
        )
        return self.stop(series, L, why)

    def stop(self, series: tuple, L: int, why: str) -> str:
        """Stop ``series`` from ``L`` on (its larger L get the same reason); returns the reason at ``L``."""
        self._stopped[series] = f"{self.policy.word} (series stopped at L={L}: {why})"
        return f"{self.policy.word} ({why})"

    def timed(self, series: tuple, L: int, seconds: float) -> None:
        self._history.setdefault(series, {})[L] = seconds

    def build_reason(self, key: tuple, L: int, what: str) -> str | None:
        """Why ``what`` (e.g. "e3nn") is not constructed at ``L``: its time predicted from the smaller L of
        ``key`` exceeds the build budget (None: it may be)."""
        predicted = predict_time(self._builds.get(key, {}), L, default_exponent=3.0)
        if predicted is None or predicted <= self.cfg.build_budget_s:
            return None
        return (
            f"{self.policy.word} ({what} construction predicted {predicted:.0f} s > build budget "
            f"{self.cfg.build_budget_s:.0f} s)"
        )

    def built(self, key: tuple, L: int, seconds: float) -> None:
        self._builds.setdefault(key, {})[L] = seconds


__all__ = ["RunConfig", "BudgetPolicy", "Budget", "GiB"]
