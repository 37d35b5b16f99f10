"""What a run may do to its directory and what a resumed run must find unchanged.

* A run directory is never overwritten by accident: a fresh run into ``work_dir`` whose ``name`` already
  has a model, a log, results or checkpoints refuses, naming the earlier run and the two ways on
  (``--resume``, ``--overwrite``). With ``--overwrite`` the earlier run's files are removed only once the new
  run's data has been read without error, so a typo in a data flag does not cost the old run.
* No output of the run is one of its inputs (a ``--name`` that makes ``<name>.model`` a data file).
* A checkpoint stores the SHA-256 of every data file (train, valid, test, E0s); ``--resume`` refuses when
  one of them changed, since the resumed epochs would silently train on other data, unless
  ``--allow_data_change``.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

from ..outputs import same_file
from .config import TrainConfig


def run_files(config: TrainConfig) -> list[Path]:
    """Every file a run named ``config.name`` writes in ``config.work_dir``."""
    return [
        config.model_path,
        config.log_path,
        config.results_path,
        config.curve_path,
        config.checkpoint_dir / "last.pt",
        config.checkpoint_dir / "best.pt",
    ]


def data_files(config: TrainConfig) -> dict[str, str]:
    """Data file -> its role ("training file", ...), for the inputs of ``config``."""
    files = {config.train_file: "training file"}
    if config.valid_file:
        files.setdefault(config.valid_file, "validation file")
    for path in config.test_files:
        files.setdefault(path, "test file")
    if isinstance(config.E0s, str) and config.E0s not in ("isolated", "average"):
        files.setdefault(config.E0s, "E0s file")
    return files


def guard_run_dir(config: TrainConfig) -> None:
    """Raise ``ValueError`` before anything is read or written if the run would destroy an earlier run or an
    input. Called on every rank; only rank 0 removes files (:func:`clear_earlier_run`)."""
    if config.restart_latest and config.overwrite:
        raise ValueError("--resume continues the earlier run and --overwrite replaces it: give one of them")
    for output in run_files(config):
        for path, role in data_files(config).items():
            if same_file(output, path):
                raise ValueError(
                    f"the run would write {output}, which is its {role}; choose another --name or --work_dir"
                )
    existing = [p for p in run_files(config) if p.exists()]
    if not existing or config.overwrite:
        return
    checkpoints = [p for p in existing if p.parent == config.checkpoint_dir]
    if config.restart_latest and checkpoints:
        return  # the checkpoint is what --resume continues from
    what = describe_run(config, existing)
    if config.restart_latest:
        raise ValueError(
            f"cannot resume: {what} but no checkpoint in {config.checkpoint_dir}; replace the run "
            "with --overwrite or choose another --name"
        )
    raise ValueError(
        f"{what}; continue it with --resume or replace it with --overwrite (or choose another --name or --work_dir)"
    )


def describe_run(config: TrainConfig, existing: list[Path]) -> str:
    """``"<work_dir> already holds the run 'name' (3 epochs logged, last written ...: files)"``."""
    epochs = ""
    if config.log_path.is_file():
        with open(config.log_path) as handle:
            count = sum(1 for line in handle if line.strip())
        epochs = f"{count} epoch{'s' if count != 1 else ''} logged, "
    newest = max(p.stat().st_mtime for p in existing)
    when = datetime.datetime.fromtimestamp(newest).strftime("%Y-%m-%d %H:%M")
    names = ", ".join(str(p.relative_to(config.work_path)) for p in existing)
    return f"{config.work_dir} already holds a run named {config.name!r} ({epochs}last written {when}: {names})"


def clear_earlier_run(config: TrainConfig) -> list[Path]:
    """Remove the earlier run's files (``--overwrite``, rank 0, once the new data has been read); returns them."""
    removed = [p for p in run_files(config) if p.exists()]
    for path in removed:
        path.unlink()
    return removed


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's contents (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(config: TrainConfig) -> dict[str, str]:
    """Data file path -> SHA-256 of its contents (stored in every checkpoint)."""
    return {path: file_sha256(path) for path in data_files(config)}


def check_data_unchanged(saved: dict[str, str] | None, current: dict[str, str], config: TrainConfig) -> str | None:
    """Compare the checkpoint's data hashes with the files now; raise ``ValueError`` naming the first changed
    file unless ``config.allow_data_change`` (then return the one-line note to print). Files not in both
    (a test file added on resume; a checkpoint from before hashes were stored) are not compared."""
    if not saved:
        return None
    roles = data_files(config)
    changed = [p for p in current if p in saved and saved[p] != current[p]]
    if not changed:
        return None
    listing = ", ".join(f"{roles[p]} {p} (sha256 {saved[p][:12]} -> {current[p][:12]})" for p in changed)
    if config.allow_data_change:
        return f"data changed since the checkpoint: {listing}; continuing as asked (--allow_data_change)"
    raise ValueError(
        f"cannot resume: the contents of the {listing} changed since the checkpoint was written; "
        "the resumed epochs would train on other data. Start a new run (--overwrite or another "
        "--name), or pass --allow_data_change to continue anyway"
    )


__all__ = [
    "guard_run_dir",
    "clear_earlier_run",
    "run_files",
    "data_files",
    "describe_run",
    "data_fingerprint",
    "check_data_unchanged",
    "file_sha256",
]
