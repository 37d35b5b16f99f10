"""Training on real 3BPA configurations (DFT energies and forces, E0s from the isolated-atom file, the test set
from a second file): a few steps in the default suite, a longer run (``-m slow``) that must learn. Both
train with the ZBL repulsion and check its wall on the trained model. Skipped without the data."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest

from gaunt.data import make_loader
from gaunt.models import GauntPotential, load_model
from gaunt.models.pair import wall_failures
from gaunt.train import LossWeights, TrainConfig, evaluate, train
from gaunt.train.data_setup import build_model_config, prepare_data
from gaunt.train.trainer import default_dtype, seed_everything

DATA = Path(__file__).parents[2] / ".." / "shared" / "data" / "3bpa"
pytestmark = pytest.mark.skipif(not (DATA / "train_300K.xyz").exists(), reason=f"3BPA data not found at {DATA}")


def _config(tmp_path: Path, n_train: int, epochs: int) -> TrainConfig:
    """``n_train`` configurations (4 of them for validation) and 8 test configurations of train_300K."""
    structures = ase.io.read(DATA / "train_300K.xyz", f":{n_train + 8}")
    ase.io.write(tmp_path / "train.xyz", structures[:n_train], format="extxyz")
    ase.io.write(tmp_path / "test.xyz", structures[n_train:], format="extxyz")
    return TrainConfig(
        train_file=str(tmp_path / "train.xyz"),
        test_files=[str(tmp_path / "test.xyz")],
        E0s=str(DATA / "iso_atoms.xyz"),
        work_dir=str(tmp_path / "run"),
        name="bpa",
        valid_count=4,
        r_max=5.0,
        num_channels=8,
        max_L=1,
        max_ell=2,
        correlation=2,
        num_interactions=2,
        batch_size=4,
        max_num_epochs=epochs,
        lr=0.01,
        ema_decay=0.9,
        progress=False,
        plot=False,
        seed=1,
        pair_repulsion=True,
    )


def untrained_test_metrics(config: TrainConfig) -> dict:
    """Errors on the test set of the model training starts from (same seed, same statistics)."""
    data = prepare_data(config)
    with default_dtype(config.dtype):
        seed_everything(config.seed)
        model = GauntPotential(build_model_config(config, data)).to(config.dtype)
    weights = LossWeights(config.energy_weight, config.forces_weight)
    return evaluate(model, make_loader(data.tests["test"], 8), weights)


def shortest_distance(path: Path) -> float:
    return min(float(np.min(a.get_all_distances()[np.triu_indices(len(a), 1)])) for a in ase.io.read(path, ":"))


def test_3bpa_few_steps(tmp_path) -> None:
    """Two epochs of two steps on 8 configurations: the pipeline on real data, and already a step down."""
    config = _config(tmp_path, n_train=12, epochs=2)
    results = train(config)
    before, after = untrained_test_metrics(config), results["metrics"]["test"]
    assert after["num_configs"] == 8 and config.model_path.exists()
    assert after["f_rmse"] < before["f_rmse"] and after["e_rmse"] < before["e_rmse"], (before, after)
    trained = load_model(config.model_path)
    assert trained.config.pair_repulsion and trained.config.pair_repulsion_distances["1-1"] > 1.4
    assert wall_failures(trained, shortest_distance(DATA / "train_300K.xyz")) == []


@pytest.mark.slow
def test_3bpa_learns(tmp_path) -> None:
    """15 epochs on 36 configurations: force errors fall well below the untrained model's (measured: 962 ->
    208 meV/A on the test set) and energy errors below it too."""
    config = _config(tmp_path, n_train=40, epochs=15)
    results = train(config)
    before, after = untrained_test_metrics(config), results["metrics"]["test"]
    history = results["history"]
    assert history[-1]["train_loss"] < 0.2 * history[0]["train_loss"]
    assert after["f_rmse"] < 0.35 * before["f_rmse"], (before, after)
    assert after["e_rmse"] < 0.5 * before["e_rmse"], (before, after)
