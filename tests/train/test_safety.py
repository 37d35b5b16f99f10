"""Nothing lost: an earlier run is never overwritten by accident, a bad last.pt / best.pt does not cost the run,
SIGINT keeps the current step (in-process and in a real ``gaunt train`` subprocess), and ``--resume`` notices
changed data."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import TINY_FLAGS, tiny_cli_flags, tiny_config

from gaunt.models import load_model
from gaunt.train import CheckpointManager, train
from gaunt.train import checkpoint as checkpoint_module
from gaunt.train.interrupt import TrainingInterrupted
from gaunt.train.report import read_log

EPOCHS = 3
_KEYS = ("train_loss", "valid_loss", "valid_e_rmse", "valid_f_rmse", "lr")


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> tuple[dict, Path]:
    """An uninterrupted run of EPOCHS epochs."""
    work = tmp_path_factory.mktemp("reference")
    return train(tiny_config(data_dir, work, max_num_epochs=EPOCHS)), work


def _hashes(directory: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def _assert_same_run(a: dict, b: dict) -> None:
    """Bit-for-bit the same epochs and final metrics (float64 on CPU)."""
    assert [r["epoch"] for r in a["history"]] == [r["epoch"] for r in b["history"]] == list(range(1, EPOCHS + 1))
    for ra, rb in zip(a["history"], b["history"]):
        assert [ra[k] for k in _KEYS] == [rb[k] for k in _KEYS], ra["epoch"]
    assert a["metrics"] == b["metrics"]


def _assert_same_weights(path_a: Path, path_b: Path) -> None:
    sa, sb = load_model(path_a).state_dict(), load_model(path_b).state_dict()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


def test_second_run_refuses_then_overwrite_replaces(data_dir, tmp_path) -> None:
    train(tiny_config(data_dir, tmp_path, max_num_epochs=1))
    before = _hashes(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"already holds a run named 'tiny' \(1 epoch logged.*tiny\.model.*"
        r"--resume or replace it with --overwrite",
    ):
        train(tiny_config(data_dir, tmp_path, max_num_epochs=2))
    assert _hashes(tmp_path) == before  # nothing of the earlier run was touched
    # --overwrite with unreadable data fails before the earlier run is removed
    with pytest.raises(ValueError, match="empty"):
        train(tiny_config(data_dir, tmp_path, overwrite=True, train_file=str(data_dir / "empty.xyz")))
    assert _hashes(tmp_path) == before
    results = train(tiny_config(data_dir, tmp_path, max_num_epochs=2, overwrite=True))
    assert [r["epoch"] for r in read_log(tiny_config(data_dir, tmp_path).log_path)] == [1, 2]
    assert results["epochs"] == 2 and _hashes(tmp_path) != before


def test_resume_falls_back_from_a_truncated_last_pt(reference, data_dir, tmp_path, capsys) -> None:
    train(tiny_config(data_dir, tmp_path, max_num_epochs=2))
    manager = CheckpointManager(tiny_config(data_dir, tmp_path).checkpoint_dir)
    assert manager.load("best")["epoch"] == 2  # test the tester: best.pt holds the state the resume needs
    manager.last_path.write_bytes(manager.last_path.read_bytes()[:4096])
    capsys.readouterr()
    resumed = train(tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS, restart_latest=True))
    notes = [line for line in capsys.readouterr().out.splitlines() if "best.pt" in line and "last.pt" in line]
    assert len(notes) == 1 and "is truncated or damaged" in notes[0] and "resuming from" in notes[0], notes
    _assert_same_run(reference[0], resumed)


def test_finished_run_leaves_its_model_when_best_pt_is_truncated(data_dir, tmp_path, capsys) -> None:
    config = tiny_config(data_dir, tmp_path, max_num_epochs=2)
    train(config)
    manager = CheckpointManager(config.checkpoint_dir)
    last = manager.load("last")
    manager.best_path.write_bytes(manager.best_path.read_bytes()[:3000])
    config.model_path.unlink()
    capsys.readouterr()
    # resuming the finished run trains nothing and goes straight to the end of the run
    results = train(tiny_config(data_dir, tmp_path, max_num_epochs=2, restart_latest=True))
    out = capsys.readouterr().out
    assert "best.pt is truncated or damaged" in out and "saving the weights of the last epoch (2) instead" in out
    assert "best.pt unreadable" in results["final_weights"]
    saved = load_model(config.model_path).state_dict()  # the .model exists and holds last.pt's EMA weights
    ema = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert "shifts" in saved  # refitted by least squares at the end of every run (train.reference)
    for key, value in saved.items():
        if key != "shifts":
            torch.testing.assert_close(value, ema[key], rtol=0, atol=0)


def test_resume_refuses_changed_data_unless_allowed(data_dir, tmp_path, capsys) -> None:
    data = tmp_path / "train.xyz"
    shutil.copy(data_dir / "train.xyz", data)
    train(tiny_config(data_dir, tmp_path / "run", train_file=str(data), max_num_epochs=1))
    data.write_text(data.read_text().replace("REF_energy=", "REF_energy=1", 1))  # one energy relabelled
    resume = dict(train_file=str(data), max_num_epochs=2, restart_latest=True)
    with pytest.raises(ValueError, match=r"contents of the training file .*train\.xyz \(sha256 \w+ -> \w+\) changed"):
        train(tiny_config(data_dir, tmp_path / "run", **resume))
    capsys.readouterr()
    results = train(tiny_config(data_dir, tmp_path / "run", allow_data_change=True, **resume))
    assert "continuing as asked (--allow_data_change)" in capsys.readouterr().out
    assert results["epochs"] == 2


def test_sigint_mid_epoch_keeps_the_step_and_resumes_exactly(reference, data_dir, tmp_path) -> None:
    def hook(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 1):  # epoch 2, after its second step
            os.kill(os.getpid(), signal.SIGINT)

    config = tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS)
    with pytest.raises(TrainingInterrupted, match=r"stopped at epoch 2, step 2; checkpoint .*last\.pt written"):
        train(config, on_step=hook)
    state = CheckpointManager(config.checkpoint_dir).load()
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 5)  # 3 steps per epoch
    assert len(read_log(config.log_path)) == 1
    resumed = train(tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS, restart_latest=True))
    _assert_same_run(reference[0], resumed)
    _assert_same_weights(tiny_config(data_dir, reference[1]).model_path, config.model_path)


def test_sigint_while_writing_a_checkpoint_finishes_the_write(data_dir, tmp_path, monkeypatch) -> None:
    real_save, sent = checkpoint_module.atomic_save, []

    def save_interrupted(state, path):
        if not sent:  # once: a second Ctrl-C would mean "stop now"
            sent.append(path)
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the checkpoint is being written
        real_save(state, path)

    monkeypatch.setattr(checkpoint_module, "atomic_save", save_interrupted)
    config = tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS)
    with pytest.raises(TrainingInterrupted, match="stopped at the end of epoch 1"):
        train(config)
    monkeypatch.undo()
    state = CheckpointManager(config.checkpoint_dir).load()  # complete, loadable
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="needs POSIX signals")
def test_sigint_to_gaunt_train_subprocess(data_dir, tmp_path) -> None:
    """A real ``gaunt train`` process gets SIGINT mid-epoch: one line on stderr, exit 130, a resumable checkpoint."""
    work = tmp_path / "run"
    argv = [
        "train",
        "--train_file",
        str(data_dir / "train.xyz"),
        "--work_dir",
        str(work),
        *tiny_cli_flags(tiny_config(data_dir, work), (*TINY_FLAGS, "max_num_epochs")),
        "--no-progress",
        "--no-plot",
    ]
    script = textwrap.dedent(f"""
        import os, signal
        import torch
        torch.set_num_threads(1)
        import gaunt.train.trainer as trainer
        from gaunt.cli import main

        def hook(epoch, step):
            if (epoch, step) == (1, 0):
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would, from the terminal

        real_train = trainer.train
        trainer.train = lambda config, on_step=None: real_train(config, on_step=hook)  # run_train imports it late
        raise SystemExit(main({argv!r}))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 130, proc.stderr[-3000:]
    expected = (
        f"gaunt train: interrupted: stopped at epoch 2, step 1; checkpoint "
        f"{work / 'checkpoints' / 'tiny' / 'last.pt'} written; continue with --resume"
    )
    assert lines == [expected], lines
    state = CheckpointManager(work / "checkpoints" / "tiny").load()
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
