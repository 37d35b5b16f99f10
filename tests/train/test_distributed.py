"""Two-process data-parallel training on CPU (torchrun, gloo) equals one process with the doubled batch.

Why equal: every structure has 6 atoms, so the mean of the two ranks' batch losses is the loss of their
union; DDP averages the gradients, i.e. takes the gradient of that mean. The ``DistributedSampler`` with 2
replicas gives rank r the positions r, r+2, ... of the same per-epoch permutation that one replica walks
in order, so the union of the ranks' k-th batches of 2 is the single process's k-th batch of 4 (12
training structures: no padding). Only summation order differs: agreement to ~1e-12, not bit-for-bit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_FLAGS, tiny_cli_flags, tiny_config

from gaunt.train import train
from gaunt.train.report import read_log

EPOCHS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_single_process(data_dir, tmp_path) -> None:
    config = tiny_config(data_dir, tmp_path / "ddp", max_num_epochs=EPOCHS, batch_size=2)
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "gaunt.train",
        "--distributed",
        "--no-progress",
        "--no-plot",
        "--train_file",
        config.train_file,
        "--work_dir",
        config.work_dir,
        *tiny_cli_flags(
            config, (*TINY_FLAGS, "valid_batch_size", "max_num_epochs", "lr", "ema_decay", "forces_weight", "seed")
        ),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    single = train(tiny_config(data_dir, tmp_path / "single", max_num_epochs=EPOCHS, batch_size=4))
    log = read_log(config.log_path)  # written by rank 0 only: one line per epoch
    assert [r["epoch"] for r in log] == list(range(1, EPOCHS + 1))
    for a, b in zip(log, single["history"]):
        for key in ("train_loss", "valid_loss", "valid_e_rmse", "valid_f_rmse"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-9), (a["epoch"], key)
    # test the tester: the run did change the loss (so agreement is not agreement of two untrained models)
    assert log[-1]["train_loss"] != pytest.approx(log[0]["train_loss"], rel=1e-6)
    assert "E RMSE" in proc.stdout and proc.stdout.count("E RMSE") == 1 + EPOCHS  # table + epoch lines, rank 0
    assert config.model_path.exists()
