"""Training paths the other tests leave out, each a seconds-long run on tiny EMT data: stress in the loss and
in training (periodic cells), ``valid_file``, float32, the ``cg`` and ``gaunt`` products, the ZBL option, and a
run killed by SIGKILL mid-epoch that resumes to the uninterrupted result (the long version is ``-m slow``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from conftest import tiny_config, write_clusters

from gaunt.data import make_loader
from gaunt.data.graph import AtomicGraph
from gaunt.models import GauntPotential, load_model
from gaunt.train import LossWeights, evaluate, train
from gaunt.train.data_setup import build_model_config, prepare_data
from gaunt.train.loss import loss_terms
from gaunt.train.report import read_log
from gaunt.train.trainer import default_dtype, seed_everything


def periodic_cells(n: int, seed: int) -> list[ase.Atoms]:
    """4-atom fcc Cu/Au cells, strained by up to 3 % and rattled, with EMT energy, forces and stress (Voigt,
    eV/A^3) under REF_* keys."""
    rng, out = np.random.default_rng(seed), []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
        atoms.numbers[rng.random(4) < 0.4] = 79
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + 0.03 * rng.uniform(-1, 1, (3, 3))), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.info["REF_energy"], atoms.info["REF_stress"] = atoms.get_potential_energy(), atoms.get_stress()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        out.append(atoms)
    return out


def free_atom_energies() -> dict[int, float]:
    energies = {}
    for z in (29, 79):
        atoms = ase.Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]])
        atoms.calc = EMT()
        energies[z] = atoms.get_potential_energy()
    return energies


def untrained_loss(config) -> float:
    """Validation loss of the model a run of ``config`` starts from (same seed, same statistics)."""
    data = prepare_data(config)
    with default_dtype(config.dtype):
        seed_everything(config.seed)
        model = GauntPotential(build_model_config(config, data)).to(config.dtype)
    weights = LossWeights(config.energy_weight, config.forces_weight, config.stress_weight)
    return evaluate(
        model, make_loader(data.valid, 8), weights, dtype=config.dtype, compute_stress=config.stress_weight > 0
    )["loss"]


def test_stress_term_of_the_loss_by_hand() -> None:
    """loss_terms["stress"] = mean over structures and the 9 components of the squared stress error."""
    stress = torch.tensor([[[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]]], dtype=torch.float64)
    graph = AtomicGraph(
        positions=torch.zeros(2, 3, dtype=torch.float64),
        atomic_numbers=torch.ones(2, dtype=torch.long),
        edge_index=torch.zeros(2, 0, dtype=torch.long),
        cell_shifts=torch.zeros(0, 3, dtype=torch.float64),
        cell=torch.eye(3, dtype=torch.float64)[None],
        pbc=torch.ones(1, 3, dtype=torch.bool),
        batch=torch.zeros(2, dtype=torch.long),
        num_atoms=torch.tensor([2]),
        energy=torch.zeros(1, dtype=torch.float64),
        stress=stress,
    )
    pred = {"energy": torch.zeros(1, dtype=torch.float64), "stress": stress + 0.3 * torch.eye(3, dtype=torch.float64)}
    terms = loss_terms(pred, graph, LossWeights(energy=1.0, forces=0.0, stress=5.0))
    assert float(terms["stress"]) == pytest.approx(3 * 0.3**2 / 9)
    with pytest.raises(ValueError, match="no stress"):
        loss_terms({"energy": pred["energy"]}, graph, LossWeights(energy=1.0, forces=0.0, stress=5.0))


def _stress_rmse(config, model) -> float:
    data = prepare_data(config)
    loader = make_loader(data.valid, 8)
    return evaluate(model, loader, LossWeights(1.0, 1.0, 1.0), compute_stress=True)["s_rmse"]


def test_training_with_stress(tmp_path) -> None:
    """A stress weight puts the stress term into the training and validation loss (the reported loss is
    w_E MSE_E + w_F MSE_F + w_S MSE_S) and fits the stress better than the same run without it."""
    ase.io.write(tmp_path / "bulk.xyz", periodic_cells(16, seed=0), format="extxyz")
    common = dict(
        train_file=str(tmp_path / "bulk.xyz"),
        stress_key="REF_stress",
        max_num_epochs=8,
        lr=0.01,
        E0s=free_atom_energies(),
    )
    with_stress = tiny_config(tmp_path, tmp_path / "with", stress_weight=1000.0, **common)
    results = train(with_stress)
    valid = results["metrics"]["valid"]
    assert valid["s_rmse"] is not None and valid["s_rmse"] > 0
    pooled = (
        with_stress.energy_weight * valid["e_rmse"] ** 2
        + with_stress.forces_weight * valid["f_rmse"] ** 2
        + with_stress.stress_weight * valid["s_rmse"] ** 2
    ) / 1e6
    assert valid["loss"] == pytest.approx(pooled, rel=1e-9)
    without = tiny_config(tmp_path, tmp_path / "without", stress_weight=0.0, **common)
    train(without)
    fitted, unfitted = (
        _stress_rmse(with_stress, load_model(with_stress.model_path)),
        _stress_rmse(without, load_model(without.model_path)),
    )
    assert fitted < 0.5 * unfitted, (fitted, unfitted)  # measured: 31 against 103 meV/A^3


def test_valid_file(data_dir, tmp_path) -> None:
    """valid_file: the validation set is that file (every configuration of it), the training file is not split."""
    valid = write_clusters(tmp_path / "valid.xyz", 5, seed=11, isolated=False)
    config = tiny_config(data_dir, tmp_path / "run", valid_file=str(valid), max_num_epochs=1)
    results = train(config)
    assert results["metrics"]["valid"]["num_configs"] == 5
    assert results["metrics"]["train"]["num_configs"] == 16  # all of train.xyz (its 2 free atoms are E0 data)


def test_float32_training(data_dir, tmp_path) -> None:
    config = tiny_config(data_dir, tmp_path, default_dtype="float32", max_num_epochs=3)
    results = train(config)
    assert results["metrics"]["valid"]["loss"] < 0.5 * untrained_loss(config)
    model = load_model(config.model_path)
    assert model.embedding.weight.dtype == torch.float32 and model.shifts.dtype == torch.float32
    assert np.isfinite(results["metrics"]["valid"]["f_rmse"])


@pytest.mark.parametrize("product", ["cg", "gaunt"])
def test_training_with_other_products(data_dir, tmp_path, product) -> None:
    config = tiny_config(data_dir, tmp_path, product=product, max_num_epochs=6)
    results = train(config)
    assert results["metrics"]["valid"]["loss"] < 0.5 * untrained_loss(config)
    assert load_model(config.model_path).products[0][1] == product


def test_training_with_pair_repulsion(data_dir, tmp_path) -> None:
    """``pair_repulsion``: the flag reaches the model with the training set's shortest distances."""
    config = tiny_config(data_dir, tmp_path, pair_repulsion=True, max_num_epochs=1)
    train(config)
    model = load_model(config.model_path)
    assert model.config.pair_repulsion and set(model.config.pair_repulsion_distances) == {"29-29", "29-79", "79-79"}
    assert min(model.config.pair_repulsion_distances.values()) > 1.5  # octahedra: 1.8 A +- 0.12 rattle


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_mid_epoch_then_resume_short(data_dir, tmp_path) -> None:
    """Killed (SIGKILL, no handler runs) in epoch 2 of 2, resumed: the same log and metrics as a run never
    killed (the 3-epoch version is tests/train/test_kill.py, -m slow)."""
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
            if (epoch, step) == (1, 1):
                os.kill(os.getpid(), signal.SIGKILL)

        train(tiny_config(Path({str(data_dir)!r}), Path({str(killed_dir)!r}), max_num_epochs=2), on_step=hook)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    config = tiny_config(data_dir, killed_dir, max_num_epochs=2, restart_latest=True)
    resumed = train(config)
    reference = train(tiny_config(data_dir, reference_dir, max_num_epochs=2))
    assert [r["epoch"] for r in read_log(config.log_path)] == [1, 2]
    for a, b in zip(reference["history"], resumed["history"]):
        assert (a["train_loss"], a["valid_loss"]) == (b["train_loss"], b["valid_loss"])
    assert reference["metrics"] == resumed["metrics"]
