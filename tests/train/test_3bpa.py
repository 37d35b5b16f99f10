"""A short run on a few real 3BPA configurations (DFT energies and forces, E0s from the isolated-atom file):
the whole pipeline on real data, with the test set read from a second file. Slow; skipped without data."""
from __future__ import annotations

from pathlib import Path

import ase.io
import pytest

from gaunt.train import TrainConfig, train

DATA = Path(__file__).parents[2] / ".." / "shared" / "data" / "3bpa"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "train_300K.xyz").exists(), reason=f"3BPA data not found at {DATA}"),
]


def test_3bpa_short_run(tmp_path) -> None:
    structures = ase.io.read(DATA / "train_300K.xyz", ":24")
    ase.io.write(tmp_path / "train.xyz", structures[:16], format="extxyz")
    ase.io.write(tmp_path / "test.xyz", structures[16:], format="extxyz")
    config = TrainConfig(
        train_file=str(tmp_path / "train.xyz"), test_files=[str(tmp_path / "test.xyz")],
        E0s=str(DATA / "iso_atoms.xyz"),
        work_dir=str(tmp_path / "run"), name="bpa", valid_count=4, r_max=5.0, num_channels=8, max_L=1, max_ell=2,
        correlation=2, num_interactions=2, batch_size=4, max_num_epochs=4, lr=0.01, ema_decay=0.9, progress=False,
        plot=False, seed=1,
    )  # fmt: skip
    results = train(config)
    history = results["history"]
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    test = results["metrics"]["test"]
    assert test["num_configs"] == 8 and test["e_rmse"] > 0 and test["f_rmse"] > 0
    assert config.model_path.exists()
