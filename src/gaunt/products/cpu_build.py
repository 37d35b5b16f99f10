"""Builds the fused CPU kernels (``csrc/*.cpp``) with torch's own extension tooling, once.

The C++ sources are compiled into one library at first use by ``torch.utils.cpp_extension.load`` (ninja
and the system C++ compiler, as a fresh machine has them after ``make test``) into a cache directory, and
loaded into the process, which registers the operators of ``torch.ops.gaunt_fused`` (``run``: sphere
programs, and those of the other sources). Later processes load the cached
library (torch rebuilds it when the source changes). Nothing is downloaded and no code is generated at
run time: the C++ is a fixed source file.

Environment:

* ``GAUNT_CPU_FLAGS``: compiler flags (default ``-O3 -march=native -ffp-contract=fast``; ``-fopenmp`` is
  always added, since ``at::parallel_for`` runs on OpenMP);
* ``GAUNT_EXTENSIONS_DIR``: the cache (default ``$XDG_CACHE_HOME/gaunt/extensions``, ``~/.cache/...``);
* ``GAUNT_DISABLE_CPU_FUSED=1``: do not build; the executor reports itself unavailable;
* ``GAUNT_CPU_OUTPUT_CACHE_MB``: the bytes of freed large outputs kept for reuse (default 1024; 0: none).
  The kernels' outputs of 8 MiB and more come from blocks that freed outputs left (``csrc/output_memory.h``:
  no page clearing and faulting on every step); :func:`kept_output_bytes` says how much is kept now and
  :func:`release_kept_outputs` frees it.

:func:`unavailable` is what the executor registry asks: ``None`` once the kernel is loaded, else why not
(the build is tried once per process).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).parent / "csrc"
#: every C++ source of the library; each registers its operators in the ``gaunt_fused`` namespace
SOURCES = sorted(SOURCE_DIR.glob("*.cpp"))
NAME = "gaunt_sphere_program"
DEFAULT_FLAGS = "-O3 -march=native -ffp-contract=fast"

#: the outcome of the one build attempt of this process: unset (not tried), None (loaded) or the reason
_status: dict[str, str | None] = {}


def compile_flags() -> list[str]:
    """The C++ flags of the build (``GAUNT_CPU_FLAGS`` or the default) plus ``-fopenmp``."""
    return os.environ.get("GAUNT_CPU_FLAGS", DEFAULT_FLAGS).split() + ["-fopenmp"]


def _cpu_tag() -> str:
    """The CPU model and its flags (``-march=native`` builds differ between CPUs), as read from Linux."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def build_directory() -> Path:
    """Where the library is built and cached: one folder per torch, Python, flags, CPU and source text (so an
    edited header, which torch's own check would miss, builds anew)."""
    base = os.environ.get("GAUNT_EXTENSIONS_DIR")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(cache) / "gaunt" / "extensions")
    digest = hashlib.sha256(" ".join(compile_flags()).encode() + _cpu_tag().encode())
    for source in sorted(SOURCE_DIR.glob("*.[ch]*")):  # headers too: torch tracks only the listed .cpp files
        digest.update(source.name.encode() + source.read_bytes())
    key = digest.hexdigest()[:12]
    tag = f"torch{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}-{key}"
    return Path(base) / tag


def _build() -> None:
    """Compile (or reuse the cached build) and load the library; raises where it cannot."""
    from torch.utils import cpp_extension

    if os.environ.get("GAUNT_DISABLE_CPU_FUSED", "") not in ("", "0"):
        raise RuntimeError("disabled by GAUNT_DISABLE_CPU_FUSED")
    if not SOURCES or not all(source.is_file() for source in SOURCES):
        raise FileNotFoundError(f"the kernel sources under {SOURCE_DIR} are not installed")
    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name=NAME,
        sources=[str(source) for source in SOURCES],
        extra_cflags=compile_flags(),
        extra_ldflags=["-fopenmp"],
        build_directory=str(directory),
        is_python_module=False,
        verbose=False,
    )


def _loaded() -> bool:
    try:
        return hasattr(torch.ops.gaunt_fused, "run")
    except (AttributeError, RuntimeError):
        return False


def unavailable() -> str | None:
    """``None`` when the fused kernel is loaded (building it on the first call), else the reason."""
    if "reason" not in _status:
        try:
            if not _loaded():
                _build()
            _status["reason"] = None
        except Exception as error:  # noqa: BLE001 -- any failure of the toolchain is a reason, not a crash
            message = str(error).strip().splitlines()
            _status["reason"] = (
                f"the C++ kernel did not build ({type(error).__name__}: {message[0] if message else ''})"
            )
    return _status["reason"]


def kept_output_bytes() -> int:
    """The bytes of freed kernel outputs kept for reuse now (loading the kernel library, building it on first use
    as any fused call does; 0 where it cannot build)."""
    return int(torch.ops.gaunt_fused.kept_output_bytes()) if unavailable() is None else 0


def release_kept_outputs() -> None:
    """Free the kept blocks of freed kernel outputs (as ``torch.cuda.empty_cache`` does for CUDA; loads the
    library as :func:`kept_output_bytes` does)."""
    if unavailable() is None:
        torch.ops.gaunt_fused.release_kept_outputs()


__all__ = [
    "NAME",
    "SOURCES",
    "build_directory",
    "compile_flags",
    "kept_output_bytes",
    "release_kept_outputs",
    "unavailable",
]
