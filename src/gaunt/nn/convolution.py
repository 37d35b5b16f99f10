"""Equivariant point convolution (NequIP / MACE "interaction" messages) with any tensor product.

For a graph with node features ``x [N, irreps_node.dim]``, edges ``(j -> i)`` given as
``edge_index = [senders j; receivers i]`` ``[2, E]``, edge vectors ``r_ij [E, 3]`` and invariant
radial features ``rho_ij [E, n_radial]`` (e.g. Bessel functions of ``|r_ij|`` times a cutoff):

    m_ij  = product( x_j, Y(r_ij); weights = RadialMLP(rho_ij) )        (per-edge weights)
    out_i = (1 / avg_num_neighbors) sum_{j -> i} m_ij                    (index_add over receivers)

``Y`` are the edge harmonics ``0e + 1o + ... + lmax_edge`` in "component" normalisation
(``|Y_l| ^2 = 2l + 1``). ``product=`` selects the product (all channel-wise: output channel u only
sees input channel u):

* ``"cg"``: Clebsch-Gordan ``uvu`` paths, one weight per (path, channel), e3nn normalisation;
  O(L^6) per channel and edge at L_node = L_edge = L_out = L.
* ``"so2"``: the same function (same paths, same weights) in the edge frame (eSCN), O(L^3).
* ``"gaunt"`` / ``"grid"``: Gaunt product of ``x_j`` with ``Y(r_ij)`` (Fourier / quadrature) with
  factorised per-edge weights ``w1 [mul, L1+1], w2 [mul, L2+1], w3 [mul, L3+1]``; O(L^3).
* ``"gaunt_z"``: the same function as ``"gaunt"``, by the Gaunt paper's fast path for convolutions
  (:class:`EdgeAlignedGauntProduct`); O(L^3) with a 1D instead of a 2D convolution.
* ``"vector"``: the parity-complete ``VectorGauntProduct`` (Gaunt + odd paths).
* ``"auto"``: "grid" for sphere-function irreps, else "cg" (logged, stored in ``.chosen``).

Gaunt products need ``irreps_node = mul x (l, s(-1)^l)`` (degrees increasing, one mul) and
``irreps_out`` of the same mul and sign s (the edge harmonics have s = +1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..products import PRODUCTS, choose_product, make_product, parse_spherical_irreps
from ..products.so2 import so2_instructions
from ..so3 import Irreps, spherical_harmonics
from .grid_convolution import GridConvolution
from .radial import RadialMLP

logger = logging.getLogger("gaunt.nn")

#: every registered product can convolve (features x edge harmonics, or x edge vectors); "auto": the registry's rule
CONVOLUTION_PRODUCTS = (*PRODUCTS, "auto")


# ============================================================================ the layer
class EquivariantConvolution(torch.nn.Module):
    """Point convolution ``out_i = (1/avg_num_neighbors) sum_{j -> i} product(x_j, Y(r_ij); MLP(rho_ij))``.

    Args:
        irreps_node: node feature irreps (input ``[..., N, irreps_node.dim]``).
        lmax_edge: degree of the edge harmonics ``Y = 0e + 1o + ... + lmax_edge`` (component normalised).
        irreps_out: output irreps ``[..., N, irreps_out.dim]`` (each block reachable, same mul as its input).
        radial: number of invariant radial features per edge (input ``[..., E, radial]``).
        product: "cg" | "so2" | "gaunt" | "grid" | "gaunt_z" | "vector" | "auto" (module docstring).
        hidden: hidden widths of the radial MLP (``nn.radial.RadialMLP``, SiLU) mapping radial features to
            the per-edge weights.
        radial_weights: "all" (default): the radial MLP gives every product weight per edge. "edge" (Gaunt
            family only: "gaunt", "gaunt_fft", "grid", "gaunt_z"): it gives only the edge-side factor
            ``w2 [mul, L_edge+1]``; ``w1``, ``w3`` are learned per channel and degree, shared by all edges
            (start at 1). Then a message is linear in the MLP output, as with CG, instead of cubic (the
            product of three MLP outputs), which keeps deep models well scaled at initialisation.
        radial_bias: biases in the radial MLP. Use False in a potential: then zero radial features (an edge
            at the cutoff, where the envelope vanishes) give zero weights, and the energy stays smooth as
            edges enter and leave the cutoff sphere (a bias would make each crossing a jump).
        avg_num_neighbors: divide the sum of messages by this number (None: plain sum).
        check_inputs: validate ``edge_index`` range and edge lengths (one device sync; skipped while compiling).
        **product_kw: passed to the product (e.g. ``method="direct"`` for "gaunt_z", ``check_finite``).

    Forward ``(node_features [..., N, dim], edge_index [2, E] (senders; receivers), edge_vectors
    [..., E, 3], edge_radial [..., E, radial]) -> [..., N, irreps_out.dim]``; leading batch dimensions
    (e.g. several configurations of one graph) broadcast. Weights: ``self.radial_mlp`` (the product
    itself has none); ``self.product.chosen`` is the product used.
    """

    def __init__(
        self,
        irreps_node,
        lmax_edge: int,
        irreps_out,
        radial: int,
        product: str = "cg",
        hidden: Sequence[int] = (64,),
        avg_num_neighbors: float | None = None,
        check_inputs: bool = True,
        radial_bias: bool = True,
        radial_weights: str = "all",
        **product_kw,
    ) -> None:
        super().__init__()
        self.irreps_node, self.irreps_out = Irreps(irreps_node), Irreps(irreps_out)
        if not isinstance(lmax_edge, int) or isinstance(lmax_edge, bool) or lmax_edge < 0:
            raise ValueError(f"EquivariantConvolution: lmax_edge must be a non-negative integer, got {lmax_edge!r}")
        if not isinstance(radial, int) or radial < 1:
            raise ValueError(f"EquivariantConvolution: radial (number of radial features) must be >= 1, got {radial!r}")
        if avg_num_neighbors is not None and not avg_num_neighbors > 0:
            raise ValueError(f"EquivariantConvolution: avg_num_neighbors must be > 0, got {avg_num_neighbors!r}")
        name = product.lower() if isinstance(product, str) else product
        if name != "auto" and name not in PRODUCTS:  # the registry as it is now (products registered later too)
            raise ValueError(
                f"EquivariantConvolution: unknown product {product!r}; expected one of {(*PRODUCTS, 'auto')}"
            )
        self.irreps_edge = Irreps.spherical_harmonics(lmax_edge)
        if name == "auto":
            name, reason = choose_product(self.irreps_node, self.irreps_edge, self.irreps_out)
            logger.info(
                "EquivariantConvolution(product='auto'): chose %r for %s x %s -> %s (%s)",
                name,
                self.irreps_node,
                self.irreps_edge,
                self.irreps_out,
                reason,
            )
        kw: dict = {**product_kw, "internal_weights": False, "shared_weights": False}
        if name == "cg":
            kw["instructions"] = so2_instructions(self.irreps_node, self.irreps_edge, self.irreps_out)  # as "so2"
            reached = {ins[2] for ins in kw["instructions"]}
            missing = [str(b) for k, b in enumerate(self.irreps_out) if k not in reached]
            if missing:
                raise ValueError(
                    f"EquivariantConvolution: output blocks {missing} cannot be reached from "
                    f"{self.irreps_node} x {self.irreps_edge} (selection rules or multiplicities)"
                )
        self.product = make_product(name, self.irreps_node, self.irreps_edge, self.irreps_out, **kw)
        self.chosen = name
        self.takes_vectors = self.product.takes_edge_vectors
        self.lmax_edge, self.radial = lmax_edge, radial
        self.avg_num_neighbors, self.check_inputs = avg_num_neighbors, check_inputs
        if radial_weights not in ("all", "edge"):
            raise ValueError(f"EquivariantConvolution: radial_weights must be 'all' or 'edge', got {radial_weights!r}")
        self.radial_weights = radial_weights
        self.grid_executor: GridConvolution | None = None
        if radial_weights == "edge":
            if PRODUCTS[name].weights != "factorised" or name == "vector":
                raise ValueError(
                    f"EquivariantConvolution: radial_weights='edge' needs a Gaunt product with factorised "
                    f"weights w1[u, l1], w2[u, l2], w3[u, l3], not {name!r}"
                )
            mul = self.irreps_node[0].mul
            n1, n3 = mul * (self.irreps_node.lmax + 1), mul * (self.irreps_out.lmax + 1)
            n2 = mul * (lmax_edge + 1)  # w2 [mul, lmax_edge + 1]
            assert self.product.weight_numel == n1 + n2 + n3, "factorised weight layout [w1 | w2 | w3] expected"
            self.shared_w1 = torch.nn.Parameter(torch.ones(n1))
            self.shared_w3 = torch.nn.Parameter(torch.ones(n3))
            self.radial_mlp = RadialMLP(radial, hidden, n2, bias=radial_bias)
            if (
                name == "grid"
                and self.irreps_node.dim
                and all(
                    parse_spherical_irreps(i, "irreps", "EquivariantConvolution").complete
                    for i in (self.irreps_node, self.irreps_out)
                )
            ):
                # same function, summed on the grid per node instead of per edge (nn.grid_convolution)
                self.grid_executor = GridConvolution(
                    self.irreps_node, lmax_edge, self.irreps_out, executor=product_kw.get("executor", "auto")
                )
        else:
            self.radial_mlp = RadialMLP(radial, hidden, self.product.weight_numel, bias=radial_bias)

    def _check(self, x: torch.Tensor, edge_index: torch.Tensor, vectors: torch.Tensor, radial: torch.Tensor) -> None:
        name = "EquivariantConvolution"
        for label, t in (
            ("node_features", x),
            ("edge_index", edge_index),
            ("edge_vectors", vectors),
            ("edge_radial", radial),
        ):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if x.dim() < 2 or x.shape[-1] != self.irreps_node.dim:
            raise ValueError(
                f"{name}: node_features has shape {tuple(x.shape)}; expected [..., N, {self.irreps_node.dim}] "
                f"for irreps_node = {self.irreps_node}"
            )
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(
                f"{name}: edge_index must have shape [2, E] (senders; receivers), got {tuple(edge_index.shape)}"
            )
        if edge_index.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name}: edge_index must be int64 or int32, got {edge_index.dtype}")
        E = edge_index.shape[1]
        if vectors.dim() < 2 or vectors.shape[-2:] != (E, 3):
            raise ValueError(f"{name}: edge_vectors has shape {tuple(vectors.shape)}; expected [..., E={E}, 3]")
        if radial.dim() < 2 or radial.shape[-2:] != (E, self.radial):
            raise ValueError(
                f"{name}: edge_radial has shape {tuple(radial.shape)}; expected [..., E={E}, {self.radial}]"
            )
        if not (x.is_floating_point() and vectors.dtype == x.dtype and radial.dtype == x.dtype):
            raise TypeError(
                f"{name}: dtype mismatch: node_features {x.dtype}, edge_vectors {vectors.dtype}, "
                f"edge_radial {radial.dtype} (all must be the same floating dtype)"
            )
        if len({x.device, edge_index.device, vectors.device, radial.device}) != 1:
            raise ValueError(
                f"{name}: device mismatch: node_features on {x.device}, edge_index on {edge_index.device}, "
                f"edge_vectors on {vectors.device}, edge_radial on {radial.device}"
            )
        if self.check_inputs and not torch.compiler.is_compiling() and E > 0:
            N = x.shape[-2]
            low, high = int(edge_index.min()), int(edge_index.max())
            if low < 0 or high >= N:
                raise IndexError(
                    f"{name}: edge_index out of range: entries span [{low}, {high}] but there are N = {N} nodes"
                )
            if bool((torch.linalg.vector_norm(vectors, dim=-1) == 0).any()):
                raise ValueError(f"{name}: zero-length edge vector (self-loop?): its direction is undefined")

    def edge_weights(self, edge_radial: torch.Tensor) -> torch.Tensor:
        """The product's per-edge weights ``[..., E, product.weight_numel]`` from the radial features."""
        w = self.radial_mlp(edge_radial)
        if self.radial_weights == "all":
            return w
        batch = w.shape[:-1]
        w1, w3 = self.shared_w1.to(w.dtype), self.shared_w3.to(w.dtype)
        return torch.cat([w1.expand(*batch, -1), w, w3.expand(*batch, -1)], dim=-1)

    def _grid_forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, vectors: torch.Tensor, radial: torch.Tensor
    ) -> torch.Tensor:
        """The "grid" + "edge" convolution summed on the grid (``nn.grid_convolution``); no batch dims."""
        mul = self.irreps_node[0].mul
        sh = spherical_harmonics(self.lmax_edge, vectors, normalization="component", check=False)
        w2 = self.radial_mlp(radial).unflatten(-1, (mul, self.lmax_edge + 1))
        w1 = self.shared_w1.to(x.dtype).unflatten(-1, (mul, -1))
        w3 = self.shared_w3.to(x.dtype).unflatten(-1, (mul, -1))
        return self.grid_executor(x, edge_index, sh, w1, w2, w3)

    def forward(
        self,
        node_features: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        edge_radial: torch.Tensor,
    ) -> torch.Tensor:
        self._check(node_features, edge_index, edge_vectors, edge_radial)
        sender, receiver = edge_index[0].long(), edge_index[1].long()
        if self.grid_executor is not None and node_features.dim() == edge_vectors.dim() == edge_radial.dim() == 2:
            out = self._grid_forward(node_features, edge_index.long(), edge_vectors, edge_radial)
            return out if self.avg_num_neighbors is None else out / self.avg_num_neighbors
        x_j = node_features.index_select(-2, sender)  # [..., E, dim]
        second = (
            edge_vectors
            if self.takes_vectors
            else spherical_harmonics(self.lmax_edge, edge_vectors, normalization="component", check=False)
        )
        messages = self.product(x_j, second, self.edge_weights(edge_radial))  # [..., E, out]
        batch = torch.broadcast_shapes(node_features.shape[:-2], messages.shape[:-2])
        out = messages.new_zeros(*batch, node_features.shape[-2], self.irreps_out.dim)
        out = out.index_add(-2, receiver, messages.expand(*batch, -1, -1))
        if self.avg_num_neighbors is not None:
            out = out / self.avg_num_neighbors
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.irreps_node} x Y(lmax={self.lmax_edge}) -> {self.irreps_out}, product={self.chosen!r}, "
            f"radial={self.radial}, avg_num_neighbors={self.avg_num_neighbors}"
        )


__all__ = ["EquivariantConvolution", "CONVOLUTION_PRODUCTS"]
