"""A run killed by SIGKILL in the middle of an epoch (no cleanup, no exception handlers) resumes to the
same result as an uninterrupted run. The in-process variant (an exception from the step hook) is the
default test in test_trainer.py; this one pays for a subprocess, so it is marked slow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import tiny_config

from gaunt.train import CheckpointManager, train
from gaunt.train.report import read_log

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")]

EPOCHS = 3


def test_sigkill_mid_epoch_then_resume(data_dir, tmp_path) -> None:
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        torch.set_num_threads(1)
        from conftest import tiny_config
        from gaunt.train import train

        def hook(epoch, step):
            if (epoch, step) == (1, 1):  # epoch 1 is checkpointed, epoch 2 is half done
                os.kill(os.getpid(), signal.SIGKILL)

        train(tiny_config(Path({str(data_dir)!r}), Path({str(killed_dir)!r}), max_num_epochs={EPOCHS}), on_step=hook)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    config = tiny_config(data_dir, killed_dir, max_num_epochs=EPOCHS, restart_latest=True)
    assert CheckpointManager(config.checkpoint_dir).load()["epoch"] == 1
    resumed = train(config)
    reference = train(tiny_config(data_dir, reference_dir, max_num_epochs=EPOCHS))
    assert [r["epoch"] for r in read_log(config.log_path)] == list(range(1, EPOCHS + 1))
    for a, b in zip(reference["history"], resumed["history"]):
        for key in ("train_loss", "valid_loss", "valid_e_rmse", "valid_f_rmse"):
            assert a[key] == b[key]
    assert reference["metrics"] == resumed["metrics"]
