"""Reading labelled structures (extended XYZ and anything else ``ase.io.read`` understands).

Reference labels are copied into ``atoms.info["gaunt_energy"]`` (eV), ``atoms.arrays["gaunt_forces"]``
(``[N, 3]``, eV/A) and ``atoms.info["gaunt_stress"]`` (``[3, 3]``, eV/A^3, ASE sign convention), and
the calculator ASE attaches while reading is removed, so a label can never be mistaken for a model
prediction (``atoms.get_potential_energy()`` fails instead of silently returning the reference).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import ase
import ase.io
import numpy as np

ENERGY_LABEL = "gaunt_energy"
FORCES_LABEL = "gaunt_forces"
STRESS_LABEL = "gaunt_stress"
SOURCE_LABEL = "gaunt_source"
"""``atoms.info`` key of ``"<file> config <k>"``: where a structure came from, so that an error found after
shuffling and splitting (a bad geometry, an unknown element) still names the file and the index in it."""


def voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    """Stress as a symmetric ``[3, 3]`` matrix from ASE's Voigt order ``(xx, yy, zz, yz, xz, xy)``,
    a flat 9-vector or a ``[3, 3]`` matrix."""
    s = np.asarray(stress, dtype=np.float64)
    if s.shape == (3, 3):
        return s.copy()
    if s.shape == (9,):
        return s.reshape(3, 3).copy()
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"stress must have 6 (Voigt), 9 or 3x3 entries, got shape {s.shape}")


def _lookup(atoms: ase.Atoms, key: str, per_atom: bool) -> np.ndarray | float | None:
    """A label from ``info``/``arrays`` or, for ASE's own names (energy, forces, stress), from the
    single-point calculator the extended-XYZ reader stores them in."""
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    calc = atoms.calc
    results = getattr(calc, "results", None) if calc is not None else None
    if results and key in results:
        return results[key]
    return None


def _check_finite(value: np.ndarray, what: str, where: str) -> None:
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{where}: {what} contains NaN or inf")


def read_structures(
    path: str | os.PathLike,
    index: str | int | slice = ":",
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str | None = None,
    require_forces: bool = True,
    require_energy: bool = True,
) -> list[ase.Atoms]:
    """Read structures and attach their reference labels under the ``gaunt_*`` names.

    Args:
        path: a file ``ase.io.read`` can read (extended XYZ for the bundled benchmarks).
        index: which configurations (ASE syntax: ``":"`` all, ``"-10:"``, an int, a slice).
        energy_key: total-energy key (eV) in ``atoms.info`` or ASE's calculator results.
        forces_key: per-atom forces key (eV/A) in ``atoms.arrays`` or the calculator results.
        stress_key: stress key (eV/A^3; Voigt 6-vector, 9 entries or ``[3, 3]``) or ``None`` to skip
            stress. When given, every configuration must carry it.
        require_forces: raise if a configuration has no forces (otherwise they are simply not attached).
        require_energy: raise if a configuration has no energy (``False`` to read unlabelled structures).

    Returns:
        ``list[ase.Atoms]`` (a list even for an integer ``index``), calculators detached.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: empty or unreadable file (see :func:`read_atoms`), a required label missing, wrong
            label shape, or NaN/inf in positions or labels (the message names the file and the
            configuration's position among those read, which is its index in the file for ``index=":"``).

    Each structure's ``info[SOURCE_LABEL]`` is set to ``"<file> config <k>"``.
    """
    structures = read_atoms(path, index)
    for k, atoms in enumerate(structures):
        where = f"{path} config {k}"
        _attach_labels(atoms, where, energy_key, forces_key, stress_key, require_forces, require_energy)
        atoms.info[SOURCE_LABEL] = where
    return structures


def read_atoms(path: str | os.PathLike, index: str | int | slice = ":") -> list[ase.Atoms]:
    """``ase.io.read(path, index)`` as a list, with every failure a ``ValueError`` / ``FileNotFoundError``
    that names the file and what is wrong (ASE's own messages name neither the file nor the configuration).

    Raises:
        FileNotFoundError: no such file (or a directory).
        ValueError: empty file, unknown format, binary contents, a malformed or truncated configuration
            (named by its index in the file), an ``index`` past the end, or no structures.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (no structures)")
    try:
        read = ase.io.read(path, index=index)
    except (IndexError, StopIteration):
        count = _count_configurations(path)
        raise ValueError(
            f"{path}: index {index} is out of range: the file holds {count} configurations (0..{count - 1})"
        ) from None
    except Exception as err:  # ASE raises many types (XYZError, UnicodeDecodeError, UnknownFileTypeError ...)
        raise ValueError(f"{path}: {_describe_read_error(path, err)}") from None
    structures: list[ase.Atoms] = [read] if isinstance(read, ase.Atoms) else list(read)
    if len(structures) == 0:
        raise ValueError(f"{path} contains no structures (index={index!r})")
    return structures


def _count_configurations(path: Path) -> int:
    """How many configurations ASE reads from the start of ``path`` before the first unreadable one."""
    count = 0
    try:
        for _ in ase.io.iread(path, index=":"):
            count += 1
    except Exception:  # the first bad configuration ends the count: that is what the caller reports
        pass
    return count


def _describe_read_error(path: Path, err: Exception) -> str:
    """One sentence for ASE's failure to read ``path``."""
    from ase.io.formats import UnknownFileTypeError

    if isinstance(err, UnicodeDecodeError):
        return "binary contents, not a text file (extended XYZ expected)"
    if isinstance(err, UnknownFileTypeError):
        return (
            f"ASE cannot read this file format ({err}); give extended XYZ (.xyz / .extxyz) or another format ASE reads"
        )
    message = " ".join(str(err).split()) or type(err).__name__
    return f"configuration {_count_configurations(path)} (counting from 0) is malformed or truncated: {message}"


def _attach_labels(
    atoms: ase.Atoms,
    where: str,
    energy_key: str,
    forces_key: str,
    stress_key: str | None,
    require_forces: bool,
    require_energy: bool,
) -> ase.Atoms:
    if len(atoms) == 0:
        raise ValueError(f"{where}: structure has no atoms")
    _check_finite(atoms.positions, "positions", where)
    energy = _lookup(atoms, energy_key, per_atom=False)
    forces = _lookup(atoms, forces_key, per_atom=True)
    stress = _lookup(atoms, stress_key, per_atom=False) if stress_key is not None else None

    if energy is None and require_energy:
        raise ValueError(f"{where}: no energy under key {energy_key!r} (pass require_energy=False to allow)")
    if forces is None and require_forces:
        raise ValueError(f"{where}: no forces under key {forces_key!r} (pass require_forces=False to allow)")
    if stress_key is not None and stress is None:
        raise ValueError(f"{where}: no stress under key {stress_key!r} (pass stress_key=None to skip stress)")

    atoms.calc = None  # drop ASE's single-point results: labels live only under the gaunt_* names
    if energy is not None:
        energy = float(np.asarray(energy, dtype=np.float64).reshape(()))
        if not math.isfinite(energy):
            raise ValueError(f"{where}: energy is NaN or inf")
        atoms.info[ENERGY_LABEL] = energy
    if forces is not None:
        forces = np.array(forces, dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise ValueError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
        _check_finite(forces, "forces", where)
        atoms.arrays[FORCES_LABEL] = forces
    if stress is not None:
        try:
            matrix = voigt_to_matrix(stress)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        _check_finite(matrix, "stress", where)
        atoms.info[STRESS_LABEL] = matrix
    return atoms


def attach_labels(
    atoms: ase.Atoms,
    energy: float | None = None,
    forces: np.ndarray | None = None,
    stress: np.ndarray | None = None,
) -> ase.Atoms:
    """Store reference labels on ``atoms`` in place under the ``gaunt_*`` names (stress may be Voigt);
    used for structures built in memory (e.g. by a calculator) rather than read from a file."""
    if energy is not None:
        atoms.info[ENERGY_LABEL] = float(energy)
    if forces is not None:
        atoms.arrays[FORCES_LABEL] = np.array(forces, dtype=np.float64).reshape(len(atoms), 3)
    if stress is not None:
        atoms.info[STRESS_LABEL] = voigt_to_matrix(stress)
    return atoms
