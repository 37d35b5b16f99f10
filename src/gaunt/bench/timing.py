"""Timing, memory and machine facts for ``gaunt bench``; the cost-exponent fit and time prediction.

Timing: one warm-up call, then timed calls (``time.perf_counter``, with ``torch.cuda.synchronize``
before reading the clock on CUDA) until at least ``min_time`` seconds and ``min_repeats`` calls have
been spent, or ``max_time`` seconds have passed (then fewer calls, at least one; the count is
recorded). The reported time is the median; the process CPU time (all threads) of each call is kept
too, because on a shared machine wall time also counts the time other processes held the cores.

Peak memory of one call:

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
  allocated before the call (exact, tensors only).
* CPU (Linux): the rise of the process's peak resident set during the call. Before it, free heap
  memory is handed back to the system (glibc ``malloc_trim(0)``, so that reusing it counts again)
  and the peak (``VmHWM`` of ``/proc/self/status``) is reset by writing ``5`` to
  ``/proc/self/clear_refs``; after it, the peak is compared with the resident set (``VmRSS``) at the
  start. Counts every page the call touches for the first time, tensors or not. ``None`` where /proc
  is not available. Measured on the first timed call only (which then pays the page faults; the
  median of the calls is insensitive to that one).

Cost exponent: least squares of ``log t`` on ``log L`` over the points with ``lmin <= L <= lmax``.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

MEMORY_METHOD = {
    "cuda": "torch.cuda.max_memory_allocated during the first timed call, minus the memory allocated before it",
    "cpu": "rise of the peak resident set during the first timed call (malloc_trim(0), then VmHWM reset via "
    "/proc/self/clear_refs; VmHWM after minus VmRSS before)",
}


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels (CUDA); no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    """glibc ``malloc_trim(0)``: return free heap pages to the system (no-op elsewhere)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


class PeakMemory:
    """``with PeakMemory(device) as m: fn()`` then ``m.bytes`` (None if it cannot be measured)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.bytes: int | None = None
        self._start: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current VmRSS
            rss = _status_kib("VmRSS")
            self._start = None if rss is None else rss * 1024
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc) -> None:
        if self._start is None:
            return
        if self.device.type == "cuda":
            self.bytes = int(torch.cuda.max_memory_allocated(self.device) - self._start)
        else:
            hwm = _status_kib("VmHWM")
            self.bytes = None if hwm is None else max(0, hwm * 1024 - self._start)


@dataclass
class Timing:
    """Result of :func:`time_call`: seconds per call (wall and process CPU) and peak memory."""

    times_s: list[float]
    cpu_times_s: list[float]
    peak_memory_bytes: int | None
    warmup_s: float
    stopped_early: bool = False  # max_time reached before min_repeats calls
    extra: dict = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def cpu_median_s(self) -> float:
        return statistics.median(self.cpu_times_s)

    @property
    def repeats(self) -> int:
        return len(self.times_s)


def time_call(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    warmup: Callable[[], object] | None = None,
    min_time: float = 1.0,
    min_repeats: int = 3,
    max_repeats: int = 25,
    max_time: float = math.inf,
) -> Timing:
    """Median-of-repeats timing of ``fn()`` after one call of ``warmup`` (default ``fn``)."""
    start = time.perf_counter()
    (warmup or fn)()
    synchronize(device)
    warmup_s = time.perf_counter() - start
    times, cpu_times, peaks = [], [], []
    spent = 0.0
    while len(times) < max_repeats:
        memory = PeakMemory(device) if not times else contextlib.nullcontext()
        with memory:
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            synchronize(device)
            t1, c1 = time.perf_counter(), time.process_time()
        times.append(t1 - t0)
        cpu_times.append(c1 - c0)
        if isinstance(memory, PeakMemory) and memory.bytes is not None:
            peaks.append(memory.bytes)
        spent += t1 - t0
        if spent >= min_time and len(times) >= min_repeats:
            break
        if spent >= max_time:
            break
    return Timing(times, cpu_times, max(peaks) if peaks else None, warmup_s, len(times) < min_repeats)


# ----------------------------------------------------------------------------- cost in L
def fit_exponent(Ls: Sequence[float], times: Sequence[float], lmin: float = 4, lmax: float = 16) -> dict | None:
    """Fit ``t = c L^k`` by least squares on ``log t = log c + k log L`` over ``lmin <= L <= lmax``.

    Returns ``{"exponent": k, "prefactor": c, "points": n, "L": [lo, hi], "rms_log_residual": r}``,
    or None with fewer than two distinct L in range.
    """
    pts = [(float(L), float(t)) for L, t in zip(Ls, times) if lmin <= L <= lmax and t is not None and t > 0]
    if len({L for L, _ in pts}) < 2:
        return None
    xs = [math.log(L) for L, _ in pts]
    ys = [math.log(t) for _, t in pts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    b = my - k * mx
    rms = math.sqrt(sum((y - b - k * x) ** 2 for x, y in zip(xs, ys)) / len(xs))
    return {
        "exponent": k,
        "prefactor": math.exp(b),
        "points": len(pts),
        "L": [min(L for L, _ in pts), max(L for L, _ in pts)],
        "rms_log_residual": rms,
    }


def predict_time(history: dict[int, float], L: int, default_exponent: float = 3.0) -> float | None:
    """Predict ``t(L)`` from measured ``{L': t}`` at smaller L': ``t(L_last) (L / L_last)^k``.

    ``k`` is fitted on the (up to three) last points (clamped to [1, 8]); with a single point
    ``default_exponent`` is used. None when nothing was measured below L.
    """
    below = sorted((l, t) for l, t in history.items() if l < L and t > 0)
    if not below:
        return None
    last_L, last_t = below[-1]
    fit = fit_exponent([l for l, _ in below[-3:]], [t for _, t in below[-3:]], lmin=0, lmax=math.inf)
    k = default_exponent if fit is None else min(8.0, max(1.0, fit["exponent"]))
    return last_t * (L / max(last_L, 1)) ** k


# ----------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device | str = "cpu") -> dict:
    """Versions, threads, CPU, memory, load and the device, for the JSON header."""
    device = torch.device(device)
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "memory_total_bytes": None,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import e3nn

        info["e3nn"] = e3nn.__version__
    except ImportError:
        info["e3nn"] = None
    try:
        info["memory_total_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


__all__ = [
    "Timing",
    "PeakMemory",
    "time_call",
    "synchronize",
    "fit_exponent",
    "predict_time",
    "machine_info",
    "cpu_model",
    "MEMORY_METHOD",
]
