"""Short-range pair repulsion: the Ziegler-Biersack-Littmark (ZBL) universal screened nuclear repulsion.

    V(r)  = 14.399645 Z_i Z_j / r * phi(r / a)                   eV (14.399645 eV A = e^2 / (4 pi eps0))
    a     = 0.46850 / (Z_i^0.23 + Z_j^0.23)                      A  (0.8854 a_Bohr / (Z_i^0.23 + Z_j^0.23))
    phi(x) = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x} + 0.28022 e^{-0.40290 x} + 0.02817 e^{-0.20162 x}

    E_i   = 1/2 sum_j V(r_ij) u(r_ij / r_c,ij),     r_c,ij = max(rcov(Z_i) + rcov(Z_j), d_min(Z_i, Z_j))

As in mace-torch's ``--pair_repulsion``, the switch u is the polynomial envelope of the radial basis
(p = 6; u(0) = 1, and u, u', u'' vanish at x = 1), so the energy is twice continuously differentiable
where a pair crosses r_c and the forces are continuous, and r_c is at least the sum of the covalent radii
(Cordero et al. 2008, ``ase.data.covalent_radii``: C-C 1.52 A, O-O 1.32 A, H-H 0.62 A). Unlike
mace-torch, r_c extends to d_min, the shortest distance of that pair in the training data where
training recorded it (``PotentialConfig.pair_repulsion_distances``): pairs that never bond (H-H, O-O
in a molecule) would otherwise be left with no wall between their covalent radii sum and the closest
approach the network was fitted on (3BPA H-H: 0.62 A against 1.56 A), yet the repulsion is zero at every
training distance of such a pair. Each directed edge carries half of its pair's energy.
"""

from __future__ import annotations

import ase
import ase.data
import numpy as np
import torch

COULOMB = 14.399645  # eV A: e^2 / (4 pi eps0)
SCREENING_LENGTH = 0.46850  # A
SCREENING_EXPONENT = 0.23
PHI_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
PHI_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)


def zbl_energy(r: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Unswitched ZBL pair energy ``V(r)`` (eV) of pairs at distances ``r`` (A) with atomic numbers z1, z2."""
    z1, z2 = z1.to(r.dtype), z2.to(r.dtype)
    x = r * (z1.pow(SCREENING_EXPONENT) + z2.pow(SCREENING_EXPONENT)) / SCREENING_LENGTH
    phi = sum(c * torch.exp(-d * x) for c, d in zip(PHI_COEFFICIENTS, PHI_EXPONENTS))
    return COULOMB * z1 * z2 / r * phi


def switch(x: torch.Tensor, p: int = 6) -> torch.Tensor:
    """``u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for x < 1, else 0 (C^2 at 1)."""
    inside = x < 1.0
    xs = torch.where(inside, x, torch.zeros_like(x))  # no inf/NaN gradient from the discarded branch
    u = 1.0 - xs.pow(p) * ((p + 1) * (p + 2) / 2 - p * (p + 2) * xs + p * (p + 1) / 2 * xs * xs)
    return torch.where(inside, u, torch.zeros_like(u))


class ZBLRepulsion(torch.nn.Module):
    """Per-atom ZBL energy ``[N]`` from element indices ``[N]``, ``edge_index [2, E]`` and distances ``[E]``
    (module docstring). ``distances``: ``{"Z1-Z2": d_min}`` (A). No parameters; O(E)."""

    def __init__(self, atomic_numbers: list[int], distances: dict[str, float] | None = None, p: int = 6) -> None:
        super().__init__()
        zs = [int(z) for z in atomic_numbers]
        radii = torch.tensor(ase.data.covalent_radii[zs])
        cutoff = radii[:, None] + radii[None, :]  # [Z, Z], element indices
        for key, r in (distances or {}).items():
            a, b = (zs.index(int(z)) for z in key.split("-"))
            cutoff[a, b] = cutoff[b, a] = max(float(cutoff[a, b]), float(r))
        self.p = int(p)
        self.register_buffer("numbers", torch.tensor(zs, dtype=torch.long), persistent=False)
        self.register_buffer("cutoff", cutoff, persistent=False)

    def forward(self, index: torch.Tensor, edge_index: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        sender, receiver = index[edge_index[0]], index[edge_index[1]]
        x = lengths / self.cutoff[sender, receiver].to(lengths.dtype)
        pair = zbl_energy(lengths, self.numbers[sender], self.numbers[receiver]) * switch(x, self.p)
        return lengths.new_zeros(index.shape[0]).index_add(0, edge_index[1], 0.5 * pair)

    def extra_repr(self) -> str:
        return f"elements={self.numbers.tolist()}, p={self.p}"


def dimer_energies(model: torch.nn.Module, z1: int, z2: int, distances) -> list[float]:
    """Energy (eV) of the isolated dimer ``z1``-``z2`` of ``model`` (a ``GauntPotential``) at each distance (A),
    in one batch: the curve to look at for a repulsive wall below the training data."""
    from ..data import atoms_to_graph, collate

    dtype, device = model.embedding.weight.dtype, model.embedding.weight.device
    graphs = [
        atoms_to_graph(
            ase.Atoms(numbers=[z1, z2], positions=[[0.0, 0.0, 0.0], [float(r), 0.0, 0.0]]),
            model.config.r_max,
            dtype=dtype,
        )
        for r in distances
    ]
    energy = model(collate(graphs).to(device), compute_forces=False)["energy"]
    return energy.detach().cpu().double().tolist()


def wall_failures(model: torch.nn.Module, below: float, r_min: float = 0.2, points: int = 40) -> list[str]:
    """Element pairs of ``model`` whose dimer energy does not rise strictly as the distance falls from
    ``below`` (e.g. the shortest distance in the training data) to ``r_min`` (A), as "H-H at 0.83 A"
    (the first distance where it does not): empty when every pair has a repulsive wall there."""
    zs, bad, grid = model.config.atomic_numbers, [], np.linspace(r_min, below, points)
    for i, z1 in enumerate(zs):
        for z2 in zs[i:]:
            steps = np.diff(dimer_energies(model, z1, z2, grid))
            if not np.all(steps < 0):
                symbols = ase.data.chemical_symbols
                bad.append(f"{symbols[z1]}-{symbols[z2]} at {grid[np.argmax(steps >= 0)]:.2f} A")
    return bad


__all__ = ["ZBLRepulsion", "zbl_energy", "switch", "dimer_energies", "wall_failures"]
