"""Output files of every command (``train``, ``evaluate``, ``md``): checked before any work is done.

An output never aliases an input (``gaunt md --trajectory`` pointed at ``--configs`` once turned a 4-frame
input into 3 frames), and its directory must exist before the first prediction is computed, not after the
last one. Paths are compared after resolving symlinks and ``..``; two names of one existing file (a hard
link, a bind mount) are caught by ``os.path.samefile``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (existing or not)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], flag: str) -> None:
    """Raise ``ValueError`` if ``output`` (given as ``flag``) would overwrite one of ``inputs`` (flag -> path),
    is a directory, or lies in a directory that does not exist or cannot be written."""
    output = Path(output)
    for name, path in inputs.items():
        if path is not None and same_file(output, path):
            raise ValueError(
                f"{flag} {output} is the same file as {name} {path}: writing it would destroy the "
                "input; choose another output file"
            )
    if output.is_dir():
        raise ValueError(f"{flag} {output} is a directory; give a file name")
    parent = output.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {output}: the directory {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {output}: the directory {parent} is not writable")


__all__ = ["same_file", "check_output"]
