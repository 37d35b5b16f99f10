"""``GauntCalculator``: an ASE calculator (energy, forces, stress) backed by a ``GauntPotential``.

    from gaunt.calculator import GauntCalculator
    atoms.calc = GauntCalculator("run/model.model", device="cpu")
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Stress is computed only for structures periodic in all three directions (ASE's Voigt order
xx, yy, zz, yz, xz, xy; eV/A^3, positive under tension). The neighbour list is rebuilt at every call
(``gaunt.data.atoms_to_graph``), so the calculator is correct for any move of the atoms.
"""

from __future__ import annotations

import os

import ase
import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .data import atoms_to_graph
from .models import GauntPotential, PotentialConfig, load_model

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


TYPICAL_NEIGHBOR_DENSITY = 16.7 / (4 / 3 * np.pi * 5.0**3)  # atoms / A^3: 3BPA's 16.7 neighbours within 5 A


def typical_num_neighbors(r_max: float) -> float:
    """Neighbours within ``r_max`` at a typical molecular density (3BPA's 16.7 within 5 A, scaled by the
    cutoff sphere's volume): the ``avg_num_neighbors`` of an untrained model, which has no data to count."""
    return TYPICAL_NEIGHBOR_DENSITY * 4 / 3 * np.pi * float(r_max) ** 3


class GauntCalculator(Calculator):
    """ASE calculator for a saved ``GauntPotential`` (``model_path``) or a model object (``model=``).

    Args:
        model_path: file written by ``gaunt.models.save_model`` / ``gaunt train``.
        model: a ``GauntPotential`` (instead of a path).
        device: "cpu", "cuda", ... (the model is moved there).
        default_dtype: "float32" or "float64" to cast the model; None keeps the saved dtype.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        model: GauntPotential | None = None,
        device: str = "cpu",
        default_dtype: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if (model_path is None) == (model is None):
            raise ValueError("GauntCalculator: give exactly one of model_path or model=")
        model = load_model(model_path) if model is None else model
        if default_dtype is not None:
            if default_dtype not in _DTYPES:
                raise ValueError(
                    f"GauntCalculator: default_dtype must be one of {list(_DTYPES)}, got {default_dtype!r}"
                )
            model = model.to(_DTYPES[default_dtype])
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dtype = self.model.embedding.weight.dtype

    @classmethod
    def untrained(
        cls,
        species: list[str | int],
        dtype: str = "float64",
        product: str = "grid",
        seed: int = 0,
        device: str = "cpu",
        **config,
    ) -> GauntCalculator:
        """A randomly initialised default model for the given elements (smoke tests, install checks, MD).

        ``species`` are symbols or atomic numbers; ``config`` overrides ``PotentialConfig`` fields. Its
        energies are meaningless but exactly invariant and its forces exactly conservative. Unless given,
        ``avg_num_neighbors`` is :func:`typical_num_neighbors` of ``r_max`` (16.7 at 5 A, as in 3BPA), so
        energies and forces have the size of a trained model's (a few eV, ~1 eV/A on a molecule), not the
        1e4-1e5 of an unnormalised neighbour sum raised to the correlation order.
        """
        unknown = [s for s in species if isinstance(s, str) and s not in ase.data.atomic_numbers]
        if unknown:
            raise ValueError(
                f"GauntCalculator.untrained: unknown element symbols {unknown} (give symbols such as "
                "'Cu' or atomic numbers)"
            )
        # degrees checked here by name, whichever PotentialConfig spells (a negative one fails deep in the layers)
        negative = {k: v for k, v in config.items() if k in ("max_L", "max_ell") and int(v) < 0}
        if negative:
            raise ValueError(f"GauntCalculator.untrained: degrees must be >= 0, got {negative}")
        numbers = sorted({ase.data.atomic_numbers[s] if isinstance(s, str) else int(s) for s in species})
        config.setdefault("avg_num_neighbors", typical_num_neighbors(config.get("r_max", 5.0)))
        torch.manual_seed(seed)
        model = GauntPotential(PotentialConfig(atomic_numbers=numbers, product=product, **config))
        if dtype not in _DTYPES:
            raise ValueError(f"GauntCalculator.untrained: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        return cls(model=model.to(_DTYPES[dtype]), device=device)

    def calculate(
        self,
        atoms: ase.Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        periodic = bool(np.all(atoms.pbc)) and atoms.cell.volume > 0
        want_stress = "stress" in (properties or [])
        if want_stress and not periodic:
            raise ValueError(
                "GauntCalculator: stress needs a structure periodic in x, y and z with a non-zero cell volume"
            )
        graph = atoms_to_graph(atoms, self.model.config.r_max, dtype=self.dtype).to(self.device)
        out = self.model(graph, compute_forces=True, compute_stress=want_stress)
        energy = float(out["energy"].detach()[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["node_energy"].detach().cpu().double().numpy(),
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"].detach()[0].cpu().double().numpy())


__all__ = ["GauntCalculator", "typical_num_neighbors"]
