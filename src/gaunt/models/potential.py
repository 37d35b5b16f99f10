"""``GauntPotential``: a MACE-style interatomic potential whose tensor products are a switch.

    E = sum_i E_i,    E_i = E0[Z_i] + w_i shift[Z_i] + scale * sum_t (readout_t(h_i^(t)) - readout_t(h_free^(t)[Z_i]))
                            (+ V_ZBL,i with ``pair_repulsion``)

    h^(0)   = W_embed onehot(Z)                                   (mul x 0e)
    h^(t)   = InteractionBlock_t(h^(t-1); Y(r_ij), R(|r_ij|))    (``models.blocks``)
    R(r)    = c Bessel_n(r) u(r / r_max)                           (n = 1..num_radial_basis, polynomial envelope u)
    w_i     = tanh(2 sum_j u(r_ij / r_max))                        (0 for an atom without neighbours, ~1 when bonded)

c = sqrt(r_max^3 / 3) gives the radial features unit second moment for neighbours spread uniformly in
the cutoff sphere (the Bessel functions are orthonormal with weight r^2 on [0, r_max]); the radial
MLP keeps that scale, so the per-edge weights start O(1). This matters most for the Gaunt products,
whose per-edge weight is a product of three MLP outputs (without c: ~0.15^3 instead of ~1).

The last block keeps only scalars and is read out by a small MLP, earlier ones linearly (MACE).
Forces ``F = -dE/dr`` and stress ``sigma = (1/V) dE/d(eps)`` (eps: a symmetric strain applied to
positions and cell, ASE's sign) come from autograd, so they are conservative whatever the product:
the energy is one smooth function of the positions.

Reference energies. ``E0`` are the isolated-atom energies (or a least-squares fit); ``shift[Z]`` is the
per-element mean interaction energy of the training set, fitted by least squares over its compositions
(``gaunt.data.element_shifts``), and ``scale`` its RMS force, as MACE does, so that the network learns an
O(1), composition-free quantity: a model trained on several compositions starts with no per-composition
bias. An atom with no neighbour inside r_max has energy exactly E0: h_free (the features the blocks give
a neighbour-less atom; one such atom per element rides along in every forward pass) is subtracted from
the read-out, and the shift is switched on by the smooth
coordination w_i (1 - w_i < 7e-4 once sum_j u >= 2, i.e. in any condensed or molecular environment).
``isolated_atom_e0=False`` is the form of models saved before (E0 + shift + scale * readout).
"""

from __future__ import annotations

import torch

from ..data.graph import AtomicGraph
from ..nn import BesselBasis, PolynomialCutoff
from .blocks import InteractionBlock, LinearReadout, ScalarMLPReadout, sphere_irreps
from .config import PRODUCTS, PotentialConfig, config_dict, config_from_dict
from .pair import ZBLRepulsion

SHIFT_SHARPNESS = 2.0  # w = tanh(2 n): 1 - w < 7e-4 for a coordination n >= 2


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
        self.register_buffer(
            "atomic_energies", torch.tensor([config.atomic_energies.get(z, 0.0) for z in zs], dtype=torch.float64)
        )
        shifts = torch.tensor([config.shift[z] for z in zs], dtype=torch.float64)
        if config.isolated_atom_e0:  # learned, from the least-squares fit: the network's read-out has no constant
            self.shifts = torch.nn.Parameter(shifts)
        else:
            self.register_buffer("shifts", shifts, persistent=False)
        self.pair_repulsion = (
            ZBLRepulsion(zs, config.pair_repulsion_distances, config.polynomial_p) if config.pair_repulsion else None
        )
        self.embedding = torch.nn.Linear(len(zs), mul, bias=False)
        torch.nn.init.normal_(self.embedding.weight)  # h0 = W[:, z] ~ N(0, 1), e3nn's normalisation
        self.bessel = BesselBasis(config.r_max, config.num_radial_basis)
        self.cutoff = PolynomialCutoff(config.r_max, config.polynomial_p)
        self.radial_scale = (config.r_max**3 / 3) ** 0.5  # unit second moment (module docstring)
        blocks, readouts = [], []
        irreps = sphere_irreps(mul, 0)
        for t in range(config.num_interactions):
            last = t == config.num_interactions - 1
            irreps_out = sphere_irreps(mul, 0 if last else config.max_L)
            blocks.append(
                InteractionBlock(
                    irreps,
                    irreps_out,
                    mul=mul,
                    max_ell=config.max_ell,
                    num_radial=config.num_radial_basis,
                    radial_hidden=tuple(config.radial_hidden),
                    correlation=config.correlation,
                    num_elements=len(zs),
                    product=config.product,
                    convolution_product=config.convolution_product,
                    avg_num_neighbors=config.avg_num_neighbors,
                    skip=t > 0,
                )
            )
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
            raise TypeError(
                f"GauntPotential: graph is {graph.positions.dtype} on {graph.positions.device} but the model "
                f"is {dtype} on {self.embedding.weight.device}: use graph.to(device, dtype)"
            )
        if not bool(torch.isfinite(graph.positions).all()):
            raise ValueError("GauntPotential: positions contain NaN or inf")
        z = graph.atomic_numbers
        index = self.z_to_index[z.clamp(0, 118)]
        bad = (index < 0) | (z < 0) | (z > 118)
        if bool(bad.any()):
            unknown = sorted({int(v) for v in z[bad]})
            raise ValueError(
                f"GauntPotential: unknown atomic numbers {unknown}; the model knows {self.config.atomic_numbers}"
            )
        return index

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool | None = None,
    ) -> dict[str, torch.Tensor]:
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

    def _node_energy(
        self, graph: AtomicGraph, index: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """``E_i`` of the module docstring ``[N]``."""
        onehot = torch.nn.functional.one_hot(index, len(self.config.atomic_numbers)).to(positions.dtype)
        vectors = graph.edge_vectors(positions, cell)
        lengths = torch.linalg.vector_norm(vectors, dim=-1)
        envelope = self.cutoff(lengths)
        radial = self.bessel(lengths) * (envelope * self.radial_scale)[:, None]
        shift = self.shifts.to(positions.dtype)[index]
        if self.config.isolated_atom_e0:
            # one neighbour-less "free atom" per element rides along after the N atoms (no edges reach it):
            # its read-out is subtracted, in the same pass (a second pass would double the cost of small graphs)
            free = torch.eye(onehot.shape[1], dtype=onehot.dtype, device=onehot.device)
            features = torch.cat([onehot, free])
            both = self._interaction(self.embedding(features), features, graph.edge_index, vectors, radial)
            interaction = both[: graph.num_nodes] - both[graph.num_nodes :][index]
            coordination = positions.new_zeros(graph.num_nodes).index_add(0, graph.edge_index[1], envelope)
            shift = shift * torch.tanh(SHIFT_SHARPNESS * coordination)
        else:
            interaction = self._interaction(self.embedding(onehot), onehot, graph.edge_index, vectors, radial)
        energy = self.atomic_energies.to(positions.dtype)[index] + shift + self.config.scale * interaction
        if self.pair_repulsion is not None:
            energy = energy + self.pair_repulsion(index, graph.edge_index, lengths)
        return energy

    def _interaction(
        self,
        h: torch.Tensor,
        onehot: torch.Tensor,
        edge_index: torch.Tensor,
        vectors: torch.Tensor,
        radial: torch.Tensor,
    ) -> torch.Tensor:
        """``sum_t readout_t(h^(t))`` per atom ``[N]``."""
        interaction = h.new_zeros(h.shape[0])
        for block, readout in zip(self.blocks, self.readouts):
            h = block(h, onehot, edge_index, vectors, radial)
            interaction = interaction + readout(h)
        return interaction

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"elements={c.atomic_numbers}, r_max={c.r_max}, channels={c.num_channels}, max_ell={c.max_ell}, "
            f"max_L={c.max_L}, correlation={c.correlation}, interactions={c.num_interactions}, "
            f"pair_repulsion={c.pair_repulsion}, products={self.products}"
        )


__all__ = ["GauntPotential", "PotentialConfig", "PRODUCTS", "config_dict", "config_from_dict"]
