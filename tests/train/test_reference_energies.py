"""Per-element reference energies: a model trained on several compositions has no per-composition bias.

Force-weighted training fixes the energy only up to one constant per element; without the least-squares
shifts (``gaunt.data.element_shifts`` before training, ``gaunt.train.reference.refit_shifts`` after it)
a short run leaves a constant error per composition (``gaunt quickstart``: -39 and +31 meV/atom)."""

from __future__ import annotations

from collections import defaultdict

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT
from conftest import OCTAHEDRON, tiny_config, write_clusters

from gaunt.calculator import GauntCalculator
from gaunt.train import data_setup, finish, train, trainer

COMPOSITIONS = ("Cu6", "Cu4Au2", "Cu2Au4")


def _labelled(atoms: ase.Atoms, isolated: bool = False) -> ase.Atoms:
    atoms.calc = EMT()
    atoms.info["REF_energy"] = atoms.get_potential_energy()
    atoms.arrays["REF_forces"] = atoms.get_forces()
    if isolated:
        atoms.info["config_type"] = "IsolatedAtom"
    atoms.calc = None
    return atoms


def composition_data(per_composition: int = 6, seed: int = 0) -> list[ase.Atoms]:
    """Distorted octahedra of three compositions (shuffled sites), EMT labels, and the two free atoms."""
    rng = np.random.default_rng(seed)
    out = []
    for formula in COMPOSITIONS:
        symbols = ase.Atoms(formula).get_chemical_symbols()
        for _ in range(per_composition):
            positions = OCTAHEDRON + rng.normal(scale=0.12, size=(6, 3))
            out.append(_labelled(ase.Atoms(list(rng.permutation(symbols)), positions=positions)))
    return out + [_labelled(ase.Atoms(s, positions=[[0.0, 0.0, 0.0]]), isolated=True) for s in ("Cu", "Au")]


def per_composition_errors(model_path, structures: list[ase.Atoms]) -> tuple[dict[str, float], float]:
    """Mean energy error per composition (meV/atom), and the spread (std over compositions) of the mean
    interaction energy per atom (meV/atom): the error a single shift for every element would leave."""
    calc = GauntCalculator(model_path)
    e0 = {a.get_chemical_formula(): a.info["REF_energy"] for a in structures if len(a) == 1}
    errors, interaction = defaultdict(list), defaultdict(list)
    for atoms in structures:
        if len(atoms) == 1:
            continue
        atoms = atoms.copy()
        atoms.calc = calc
        reference, n = atoms.info["REF_energy"], len(atoms)
        formula = atoms.get_chemical_formula()
        errors[formula].append(1000 * (atoms.get_potential_energy() - reference) / n)
        interaction[formula].append(1000 * (reference - sum(e0[s] for s in atoms.get_chemical_symbols())) / n)
    means = {k: float(np.mean(v)) for k, v in errors.items()}
    return means, float(np.std([np.mean(v) for v in interaction.values()]))


def _train(tmp_path, name: str):
    structures = composition_data()
    ase.io.write(tmp_path / "mixed.xyz", structures, format="extxyz")
    config = tiny_config(
        tmp_path, tmp_path / name, train_file=str(tmp_path / "mixed.xyz"), name=name, max_num_epochs=6, valid_count=3
    )
    train(config)
    return per_composition_errors(config.model_path, structures)


def test_no_per_composition_bias_after_short_training(tmp_path) -> None:
    bias, spread = _train(tmp_path, "fitted")
    assert spread > 50.0, spread  # the compositions do differ (not vacuous)
    assert max(abs(b) for b in bias.values()) < 0.1 * spread, (bias, spread)


def test_bias_check_detects_a_single_shift(tmp_path, monkeypatch) -> None:
    """Test the tester: one shift for every element and no refit (the model before the fix) fails the check."""

    def single_shift(config, data):
        model_config = build(config, data)
        mean = float(np.mean(list(model_config.shift.values())))
        model_config.shift = {z: mean for z in model_config.shift}
        return model_config

    build = data_setup.build_model_config
    monkeypatch.setattr(trainer, "build_model_config", single_shift)
    monkeypatch.setattr(finish, "refit_shifts", lambda *args, **kwargs: {})
    bias, spread = _train(tmp_path, "single")
    assert max(abs(b) for b in bias.values()) > 0.2 * spread, (bias, spread)


def test_an_element_without_e0_is_an_error_naming_it_and_its_file(data_dir, tmp_path) -> None:
    """Silver only in the validation file: the least-squares E0s cannot fit it (they gave it E0 = 0 with a
    rank warning, valid E RMSE ~ eV/atom), isolated atoms without it give nothing: both name Ag and the file."""
    valid = write_clusters(tmp_path / "valid_ag.xyz", 3, seed=4, isolated=False)
    valid.write_text(valid.read_text().replace("Au ", "Ag "))
    assert "\nAg " in valid.read_text()  # the file does hold silver (test the tester)
    for e0s, message in (
        ("average", "E0s='average' fits E0 on the training set, which has no Ag"),
        ("isolated", r"gives no energy for elements Z=\[47\]"),
    ):
        with pytest.raises(ValueError, match=message) as err:
            data_setup.prepare_data(tiny_config(data_dir, tmp_path, valid_file=str(valid), E0s=e0s))
        assert "Ag (Z=47)" in str(err.value) and f"appears in validation file {valid} configuration" in str(err.value)
