"""Short-range pair repulsion: the Ziegler-Biersack-Littmark (ZBL) universal screened nuclear repulsion.

    V(r)  = 14.399645 Z_i Z_j / r * phi(r / a)                   eV (14.399645 eV A = e^2 / (4 pi eps0))
    a     = 0.46850 / (Z_i^0.23 + Z_j^0.23)                      A  (0.8854 a_Bohr / (Z_i^0.23 + Z_j^0.23))
    phi(x) = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x} + 0.28022 e^{-0.40290 x} + 0.02817 e^{-0.20162 x}

    E_i   = 1/2 sum_j V(r_ij) u(r_ij / r_c,ij),     r_c,ij = rcov(Z_i) + rcov(Z_j)

As in mace-torch's ``--pair_repulsion``: the switch u is the polynomial envelope of the radial basis
(p = 6; u(0) = 1, and u, u', u'' vanish at x = 1), so the energy is twice continuously differentiable
where a pair crosses r_c and the forces are continuous; r_c is the sum of the covalent radii (Cordero et
al. 2008, ``ase.data.covalent_radii``), so the repulsion acts where two atoms overlap more than in a
bond (C-C: r_c = 1.52 A, O-O: 1.32 A, H-H: 0.62 A) and a fitted potential keeps a repulsive wall below
the distances of its training data. Each directed edge carries half of its pair's energy.
"""
from __future__ import annotations

import ase.data
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
    (module docstring). No parameters; O(E)."""

    def __init__(self, atomic_numbers: list[int], p: int = 6) -> None:
        super().__init__()
        zs = torch.tensor(atomic_numbers, dtype=torch.long)
        self.p = int(p)
        self.register_buffer("numbers", zs, persistent=False)
        self.register_buffer("radii", torch.tensor(ase.data.covalent_radii[zs.numpy()]), persistent=False)

    def forward(self, index: torch.Tensor, edge_index: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        sender, receiver = index[edge_index[0]], index[edge_index[1]]
        cutoff = (self.radii[sender] + self.radii[receiver]).to(lengths.dtype)
        pair = zbl_energy(lengths, self.numbers[sender], self.numbers[receiver]) * switch(lengths / cutoff, self.p)
        return lengths.new_zeros(index.shape[0]).index_add(0, edge_index[1], 0.5 * pair)

    def extra_repr(self) -> str:
        return f"elements={self.numbers.tolist()}, p={self.p}"


__all__ = ["ZBLRepulsion", "zbl_energy", "switch"]
