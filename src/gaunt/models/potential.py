"""``GauntPotential``: a MACE-style interatomic potential whose tensor products are a switch.

    E = sum_i E_i,    E_i = E0[Z_i] + shift + scale * sum_t readout_t(h_i^(t))

    h^(0)   = W_embed onehot(Z)                                   (mul x 0e)
    h^(t)   = InteractionBlock_t(h^(t-1); Y(r_ij), R(|r_ij|))    (``models.blocks``)
    R(r)    = c Bessel_n(r) u(r / r_max)                           (n = 1..num_bessel, polynomial envelope u)

c = sqrt(r_max^3 / 3) gives the radial features unit second moment for neighbours spread uniformly in
the cutoff sphere (the Bessel functions are orthonormal with weight r^2 on [0, r_max]); the radial
MLP keeps that scale, so the per-edge weights start O(1). This matters most for the Gaunt products,
whose per-edge weight is a product of three MLP outputs (without c: ~0.15^3 instead of ~1).

The last block keeps only scalars and is read out by a small MLP, earlier ones linearly (MACE).
Forces ``F = -dE/dr`` and stress ``sigma = (1/V) dE/d(eps)`` (eps: a symmetric strain applied to
positions and cell, ASE's sign) come from autograd, so they are conservative whatever the product:
the energy is one smooth function of the positions. ``E0`` are the isolated-atom energies (or a least-
squares fit); ``shift`` and ``scale`` are set from the training data (mean interaction energy per atom,
RMS force), as MACE does, so that the network learns an O(1) quantity.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..data.graph import AtomicGraph
from ..nn import BesselBasis, PolynomialCutoff
from .blocks import InteractionBlock, LinearReadout, ScalarMLPReadout, sphere_irreps

PRODUCTS = ("cg", "gaunt", "grid", "auto")


@dataclass
class PotentialConfig:
    """Hyper-parameters (names as in mace-torch where one exists).

    ``atomic_numbers``: the elements the model knows (sorted on construction). ``max_ell``: degree of the
    edge harmonics and of the atomic basis A. ``hidden_lmax``: degree of the node features between blocks
    (MACE's ``max_L``). ``product``: "cg" (Clebsch-Gordan, MACE-like paths) | "gaunt" (Gaunt product in the
    2D Fourier basis) | "grid" (the same Gaunt product by quadrature; fastest on CPU) | "auto".
    ``convolution_product`` overrides the convolution's product (e.g. "so2" or "gaunt_z").
    """

    atomic_numbers: list[int]
    r_max: float = 5.0
    num_bessel: int = 8
    polynomial_p: int = 6
    num_channels: int = 32
    max_ell: int = 3
    hidden_lmax: int = 1
    correlation: int = 3
    num_interactions: int = 2
    product: str = "grid"
    convolution_product: str | None = None
    radial_hidden: list[int] = field(default_factory=lambda: [64, 64])
    avg_num_neighbors: float = 1.0
    atomic_energies: dict[int, float] = field(default_factory=dict)
    scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        zs = [int(z) for z in self.atomic_numbers]
        if not zs or len(set(zs)) != len(zs) or min(zs) < 1 or max(zs) > 118:
            raise ValueError(f"PotentialConfig: atomic_numbers must be distinct elements 1..118, got {self.atomic_numbers}")
        self.atomic_numbers = sorted(zs)
        self.atomic_energies = {int(z): float(e) for z, e in self.atomic_energies.items()}
        unknown = sorted(set(self.atomic_energies) - set(zs))
        if unknown:
            raise ValueError(f"PotentialConfig: atomic_energies given for elements {unknown} not in atomic_numbers {zs}")
        missing = sorted(set(zs) - set(self.atomic_energies))
        if self.atomic_energies and missing:
            raise ValueError(f"PotentialConfig: atomic_energies lacks elements {missing} (give all or none)")
        if self.product not in PRODUCTS:
            raise ValueError(f"PotentialConfig: product must be one of {PRODUCTS}, got {self.product!r}")
        if not 0 < self.r_max < float("inf") or not self.avg_num_neighbors > 0 or not self.scale > 0:
            raise ValueError(f"PotentialConfig: r_max (got {self.r_max}), avg_num_neighbors and scale must be finite and > 0")
        for name in ("num_bessel", "num_channels", "correlation", "num_interactions"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PotentialConfig: {name} must be >= 1, got {getattr(self, name)}")
        self.radial_hidden = [int(w) for w in self.radial_hidden]


class GauntPotential(torch.nn.Module):
    """Energy, forces and stress of a batch of structures (module docstring).

    ``forward(graph, compute_forces=True, compute_stress=False, create_graph=None) -> dict`` with
    "energy" ``[B]``, "node_energy" ``[N]``, "forces" ``[N, 3]`` and "stress" ``[B, 3, 3]`` (eV, eV/A,
    eV/A^3) when asked. ``create_graph`` (default: ``self.training``) keeps the graph of the forces, as
    force training needs. The graph must have the model's dtype and device (``graph.to(...)``).
    """

    def __init__(self, config: PotentialConfig) -> None:
        super().__init__()
        self.config = config
        zs, mul = config.atomic_numbers, config.num_channels
        z_to_index = torch.full((119,), -1, dtype=torch.long)
        z_to_index[torch.tensor(zs)] = torch.arange(len(zs))
        self.register_buffer("z_to_index", z_to_index, persistent=False)
        self.register_buffer("atomic_energies",
                             torch.tensor([config.atomic_energies.get(z, 0.0) for z in zs], dtype=torch.float64))  # fmt: skip
        self.embedding = torch.nn.Linear(len(zs), mul, bias=False)
        torch.nn.init.normal_(self.embedding.weight)  # h0 = W[:, z] ~ N(0, 1), e3nn's normalisation
        self.bessel = BesselBasis(config.r_max, config.num_bessel)
        self.cutoff = PolynomialCutoff(config.r_max, config.polynomial_p)
        self.radial_scale = (config.r_max**3 / 3) ** 0.5  # unit second moment (module docstring)
        blocks, readouts = [], []
        irreps = sphere_irreps(mul, 0)
        for t in range(config.num_interactions):
            last = t == config.num_interactions - 1
            irreps_out = sphere_irreps(mul, 0 if last else config.hidden_lmax)
            blocks.append(InteractionBlock(
                irreps, irreps_out, mul=mul, max_ell=config.max_ell, num_radial=config.num_bessel,
                radial_hidden=tuple(config.radial_hidden), correlation=config.correlation, num_elements=len(zs),
                product=config.product, convolution_product=config.convolution_product,
                avg_num_neighbors=config.avg_num_neighbors, skip=t > 0))  # fmt: skip
            readouts.append(ScalarMLPReadout(mul) if last else LinearReadout(irreps_out))
            irreps = irreps_out
        self.blocks, self.readouts = torch.nn.ModuleList(blocks), torch.nn.ModuleList(readouts)

    @property
    def products(self) -> list[tuple[str, str]]:
        """Per block, the (convolution, many-body) products actually built."""
        return [block.products for block in self.blocks]

    def _check(self, graph: AtomicGraph) -> torch.Tensor:
        """Validate the graph; return the element index of every atom ``[N]``."""
        if not isinstance(graph, AtomicGraph):
            raise TypeError(f"GauntPotential: expected an AtomicGraph, got {type(graph).__name__}")
        if graph.num_nodes == 0:
            raise ValueError("GauntPotential: empty graph (no atoms)")
        dtype = self.embedding.weight.dtype
        if graph.positions.dtype != dtype or graph.positions.device != self.embedding.weight.device:
            raise TypeError(f"GauntPotential: graph is {graph.positions.dtype} on {graph.positions.device} but the model "
                            f"is {dtype} on {self.embedding.weight.device}: use graph.to(device, dtype)")  # fmt: skip
        if not bool(torch.isfinite(graph.positions).all()):
            raise ValueError("GauntPotential: positions contain NaN or inf")
        z = graph.atomic_numbers
        index = self.z_to_index[z.clamp(0, 118)]
        bad = (index < 0) | (z < 0) | (z > 118)
        if bool(bad.any()):
            unknown = sorted({int(v) for v in z[bad]})
            raise ValueError(f"GauntPotential: unknown atomic numbers {unknown}; "
                             f"the model knows {self.config.atomic_numbers}")  # fmt: skip
        return index

    def forward(self, graph: AtomicGraph, compute_forces: bool = True, compute_stress: bool = False,
                create_graph: bool | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        index = self._check(graph)
        create_graph = self.training if create_graph is None else create_graph
        positions, cell = graph.positions, graph.cell
        inputs: list[torch.Tensor] = []
        if compute_forces or compute_stress:
            if not positions.requires_grad:
                positions = positions.detach().requires_grad_(True)
            inputs.append(positions)
        if compute_stress:
            if not bool(graph.pbc.all()):
                raise ValueError("GauntPotential: stress needs structures periodic in x, y and z (pbc all True)")
            volume = torch.linalg.det(cell).abs()
            if bool((volume == 0).any()):
                raise ValueError("GauntPotential: stress needs a cell with non-zero volume in every structure")
            strain = torch.zeros_like(cell, requires_grad=True)  # [B, 3, 3]
            sym = 0.5 * (strain + strain.transpose(-1, -2))
            positions = positions + torch.einsum("ni,nij->nj", positions, sym[graph.batch])  # r -> r (1 + eps)
            cell = cell + cell @ sym
            inputs.append(strain)

        node_energy = self._node_energy(graph, index, positions, cell)
        energy = torch.zeros(graph.num_graphs, dtype=node_energy.dtype, device=node_energy.device)
        energy = energy.index_add(0, graph.batch, node_energy)
        out = {"energy": energy, "node_energy": node_energy}
        if inputs:
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
            if compute_forces:
                out["forces"] = -grads[0]
            if compute_stress:
                out["stress"] = grads[-1] / volume[:, None, None]
        return out

    def _node_energy(self, graph: AtomicGraph, index: torch.Tensor, positions: torch.Tensor,
                     cell: torch.Tensor) -> torch.Tensor:  # fmt: skip
        onehot = torch.nn.functional.one_hot(index, len(self.config.atomic_numbers)).to(positions.dtype)
        vectors = graph.edge_vectors(positions, cell)
        lengths = torch.linalg.vector_norm(vectors, dim=-1)
        radial = self.bessel(lengths) * (self.cutoff(lengths) * self.radial_scale)[:, None]
        h = self.embedding(onehot)
        interaction = positions.new_zeros(graph.num_nodes)
        for block, readout in zip(self.blocks, self.readouts):
            h = block(h, onehot, graph.edge_index, vectors, radial)
            interaction = interaction + readout(h)
        e0 = self.atomic_energies.to(positions.dtype)[index]
        return e0 + self.config.shift + self.config.scale * interaction

    def extra_repr(self) -> str:
        c = self.config
        return (f"elements={c.atomic_numbers}, r_max={c.r_max}, channels={c.num_channels}, max_ell={c.max_ell}, "
                f"hidden_lmax={c.hidden_lmax}, correlation={c.correlation}, interactions={c.num_interactions}, "
                f"products={self.products}")  # fmt: skip


def config_dict(config: PotentialConfig) -> dict:
    """Plain-container form of the config (for checkpoints: loads with ``torch.load(weights_only=True)``)."""
    return asdict(config)


__all__ = ["GauntPotential", "PotentialConfig", "PRODUCTS", "config_dict"]
