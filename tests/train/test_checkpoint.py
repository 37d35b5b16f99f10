"""gaunt.train.checkpoint: atomic writes survive a crash at any point; RNG states round-trip."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from gaunt.train import checkpoint as ckpt
from gaunt.train.checkpoint import CheckpointManager, atomic_save, rng_state, set_rng_state


def _load(path):
    return torch.load(path, weights_only=True)


def test_atomic_save_roundtrip_and_replaces(tmp_path) -> None:
    path = tmp_path / "sub" / "state.pt"
    atomic_save({"a": torch.arange(3)}, path)
    atomic_save({"a": torch.arange(5)}, path)  # test the tester: a normal second write does replace
    torch.testing.assert_close(_load(path)["a"], torch.arange(5))
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]  # no temporary left behind


def test_crash_between_write_and_rename_keeps_old_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def crash(src, dst):
        raise OSError("simulated power loss before the rename")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert _load(path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_crash_during_write_keeps_old_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)
    real_save = torch.save

    def torn_save(obj, handle):
        handle.write(b"PK\x03\x04 half a zip file")  # what a killed writer leaves behind
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2}, path)
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert _load(path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_rng_state_roundtrip_through_weights_only_file(tmp_path) -> None:
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    atomic_save({"rng": rng_state()}, tmp_path / "rng.pt")
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(_load(tmp_path / "rng.pt")["rng"])
    second = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert first == second
    third = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert third != second  # test the tester: the generators do move on


def test_manager_best_and_last(tmp_path) -> None:
    manager = CheckpointManager(tmp_path / "ck")
    assert manager.load() is None
    manager.save({"epoch": 1}, is_best=True)
    manager.save({"epoch": 2}, is_best=False)
    assert manager.load("last")["epoch"] == 2 and manager.load("best")["epoch"] == 1
    with pytest.raises(ValueError, match="'last' or 'best'"):
        manager.load("first")
    torch.save({"something": 1}, manager.last_path)
    with pytest.raises(ValueError, match="not a gaunt training checkpoint"):
        manager.load()
    assert not any(name.endswith(".tmp") for name in os.listdir(manager.directory))


def test_load_for_resume_falls_back_to_best(tmp_path) -> None:
    manager = CheckpointManager(tmp_path / "ck")
    assert manager.load_for_resume() == (None, None)  # a fresh run
    state = {"epoch": 3}
    manager.save(state, is_best=True)
    assert manager.load_for_resume() == ({"format": ckpt.CHECKPOINT_FORMAT, **state}, None)
    manager.last_path.unlink()  # a crash between the best.pt and the last.pt write
    loaded, note = manager.load_for_resume()
    assert (
        loaded["epoch"] == 3 and note == f"no {manager.last_path}; resuming from {manager.best_path} (epoch 3) instead"
    )
    manager.last_path.write_bytes(b"")
    loaded, note = manager.load_for_resume()
    assert loaded["epoch"] == 3 and note.startswith(f"checkpoint {manager.last_path} is empty (0 bytes)")
    manager.best_path.unlink()
    with pytest.raises(ValueError, match=r"last\.pt is empty \(0 bytes\); and there is no .*best\.pt to fall back to"):
        manager.load_for_resume()
