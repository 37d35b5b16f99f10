"""gaunt.data.io: reading labelled structures (3BPA and small written files), label placement, Voigt
stress conversion, and each bad file's error."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.stress import voigt_6_to_full_3x3_stress

from gaunt.data import ENERGY_LABEL, FORCES_LABEL, STRESS_LABEL, read_structures, voigt_to_matrix


def _write_labelled(path, n=3, stress=False, seed=0, overrides=None):
    """``n`` small structures with energy/forces (and stress) as extended-XYZ info/arrays keys."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=[6, 6, 6], pbc=stress)
        atoms.positions += rng.normal(scale=0.02, size=(3, 3))
        atoms.info["REF_energy"] = -10.0 - k
        atoms.arrays["REF_forces"] = rng.normal(size=(3, 3))
        if stress:
            atoms.info["REF_stress"] = rng.normal(size=6)
        for key, value in (overrides or {}).get(k, {}).items():
            (atoms.arrays if key == "REF_forces" else atoms.info)[key] = value
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return frames


def test_reads_3bpa_with_labels_moved_off_the_calculator(bpa_train):
    structures = bpa_train
    assert len(structures) == 500 and all(len(a) == 27 for a in structures)
    first = structures[0]
    assert first.calc is None  # ASE's single-point results are detached
    assert first.info[ENERGY_LABEL] == pytest.approx(-17660.461737861464, abs=1e-9)
    forces = first.arrays[FORCES_LABEL]
    assert forces.shape == (27, 3) and forces.dtype == np.float64
    assert np.abs(forces).max() > 0.1  # real labels, not zeros
    with pytest.raises(RuntimeError):
        first.get_potential_energy()  # a label can never pass as a prediction


def test_custom_keys_index_and_stress(tmp_path):
    path = tmp_path / "frames.xyz"
    frames = _write_labelled(path, n=4, stress=True)
    structures = read_structures(path, energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress")
    assert [a.info[ENERGY_LABEL] for a in structures] == [-10.0, -11.0, -12.0, -13.0]
    np.testing.assert_allclose(structures[2].arrays[FORCES_LABEL], frames[2].arrays["REF_forces"])
    expected_stress = voigt_6_to_full_3x3_stress(frames[1].info["REF_stress"])
    np.testing.assert_allclose(structures[1].info[STRESS_LABEL], expected_stress)
    one = read_structures(path, index=-1, energy_key="REF_energy", forces_key="REF_forces")
    assert isinstance(one, list) and len(one) == 1 and one[0].info[ENERGY_LABEL] == -13.0
    assert STRESS_LABEL not in one[0].info  # stress only when asked for


def test_stress_from_ase_calculator_results(tmp_path):
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=[2.5, 2.5, 2.5], pbc=True)
    voigt = np.array([0.1, 0.2, 0.3, 0.04, 0.05, 0.06])
    atoms.calc = SinglePointCalculator(atoms, energy=-3.0, forces=np.zeros((1, 3)), stress=voigt)
    path = tmp_path / "s.xyz"
    write(path, atoms, format="extxyz")
    (read,) = read_structures(path, stress_key="stress")
    np.testing.assert_allclose(read.info[STRESS_LABEL], voigt_6_to_full_3x3_stress(voigt))


def test_voigt_to_matrix_matches_ase_and_accepts_full_shapes():
    voigt = np.arange(1.0, 7.0)
    full = voigt_6_to_full_3x3_stress(voigt)
    np.testing.assert_array_equal(voigt_to_matrix(voigt), full)
    np.testing.assert_array_equal(voigt_to_matrix(full.reshape(9)), full)
    np.testing.assert_array_equal(voigt_to_matrix(full), full)
    with pytest.raises(ValueError, match="6 \\(Voigt\\), 9 or 3x3"):
        voigt_to_matrix(np.zeros(5))


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_structures(tmp_path / "absent.xyz")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_structures(empty)
    blank = tmp_path / "blank.xyz"
    blank.write_text("\n\n")
    with pytest.raises(ValueError, match="contains no structures"):
        read_structures(blank)


def test_missing_forces_and_energy(tmp_path, shared_data):
    iso = shared_data / "3bpa" / "iso_atoms.xyz"  # energies but no forces
    with pytest.raises(ValueError, match=r"iso_atoms.xyz config 0: no forces under key 'forces'"):
        read_structures(iso)
    structures = read_structures(iso, require_forces=False)
    assert all(FORCES_LABEL not in a.arrays and ENERGY_LABEL in a.info for a in structures)
    path = tmp_path / "f.xyz"
    _write_labelled(path)
    with pytest.raises(ValueError, match="config 0: no energy under key 'energy'"):
        read_structures(path, forces_key="REF_forces")
    unlabelled = read_structures(path, forces_key="REF_forces", require_energy=False)
    assert ENERGY_LABEL not in unlabelled[0].info
    with pytest.raises(ValueError, match="no stress under key 'virial'"):
        read_structures(path, energy_key="REF_energy", forces_key="REF_forces", stress_key="virial")


@pytest.mark.parametrize(
    "override,message",
    [
        ({"REF_energy": float("nan")}, "config 1: energy is NaN or inf"),
        ({"REF_forces": np.array([[0, 0, 0], [np.inf, 0, 0], [0, 0, 0]])}, "config 1: forces contains NaN or inf"),
        ({"REF_stress": np.array([0, 0, np.nan, 0, 0, 0])}, "config 1: stress contains NaN or inf"),
        ({"REF_stress": np.zeros(4)}, "config 1: stress must have 6"),
    ],
)
def test_non_finite_or_malformed_labels_name_file_and_config(tmp_path, override, message):
    path = tmp_path / "bad.xyz"
    _write_labelled(path, stress=True, overrides={1: override})
    with pytest.raises(ValueError, match=f"bad.xyz {message}"):
        read_structures(path, energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress")


def test_nan_positions_name_file_and_config(tmp_path):
    path = tmp_path / "nanpos.xyz"
    frames = _write_labelled(path)
    frames[2].positions[0, 1] = np.nan
    write(path, frames, format="extxyz")
    with pytest.raises(ValueError, match="nanpos.xyz config 2: positions contains NaN"):
        read_structures(path, energy_key="REF_energy", forces_key="REF_forces")
