"""Building blocks of the MACE-style potential: interaction block and energy read-outs.

Irreps: every feature is a "sphere function" ``mul x (0e + 1o + 2e + ... + L)`` (parity (-1)^l, the
parity of the spherical harmonics), so the same block runs with CG or Gaunt products. One block:

    h_up  = Linear(h)                                             [N, irreps_node]
    A_i   = (1/avg_nbr) sum_j product(h_up_j, Y(r_ij); R(|r_ij|))  [N, mul x (0..max_ell)]   (convolution)
    A     = Linear(A)
    B     = ManyBody_nu(A; element)                                [N, irreps_out]           (A^1 .. A^nu)
    h_new = Linear(B) + Skip_element(h)                            (no skip in the first block)

MACE (Batatia et al. 2022, eqs. 8-11) is the model; what differs: the many-body product is our
``ManyBodyProduct`` (a CG chain or the Gaunt power on the grid, see ``gaunt.nn.many_body``) instead of
MACE's symmetric contraction, and the convolution weights of the Gaunt products are factorised per
degree (``gaunt.nn.convolution``).
"""

from __future__ import annotations

import torch

from ..nn import EquivariantConvolution, Linear, ManyBodyProduct
from ..so3 import Irreps


def sphere_irreps(mul: int, lmax: int) -> Irreps:
    """``mul x 0e + mul x 1o + ... + mul x (lmax, (-1)^lmax)``."""
    return Irreps("+".join(f"{mul}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1)))  # noqa: E741


class ElementLinear(torch.nn.Module):
    """Equivariant linear map with one weight matrix per chemical element: ``x [N, in.dim], onehot [N, Z]``.

    Weights per atom are ``onehot @ table`` (``[N, weight_numel]``), applied by ``Linear`` with
    per-sample weights; the ``1/sqrt(Z)`` keeps the initial scale of a shared linear map.
    """

    def __init__(self, irreps_in: Irreps, irreps_out: Irreps, num_elements: int) -> None:
        super().__init__()
        self.linear = Linear(irreps_in, irreps_out, shared_weights=False)
        self.table = torch.nn.Parameter(torch.randn(num_elements, self.linear.weight_numel))

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.linear(x, onehot @ self.table)


class InteractionBlock(torch.nn.Module):
    """One message-passing + many-body step (module docstring): ``h [N, irreps_node] -> [N, irreps_out]``.

    ``product`` names the tensor product of the many-body step ("cg" | "gaunt" | "grid" | "auto") and,
    unless ``convolution_product`` is given, of the convolution too. Cost per atom: the convolution
    O(n_nbr mul L^3) with Gaunt products (O(n_nbr mul L^6) with CG), the many-body step
    O(mul nu^2 L^3) with Gaunt products (O(mul nu^4 L^6) with CG), plus O(mul^2 L^2) linear maps.
    """

    def __init__(
        self,
        irreps_node: Irreps,
        irreps_out: Irreps,
        *,
        mul: int,
        max_ell: int,
        num_radial: int,
        radial_hidden: tuple[int, ...],
        correlation: int,
        num_elements: int,
        product: str,
        convolution_product: str | None,
        avg_num_neighbors: float,
        skip: bool,
    ) -> None:
        super().__init__()
        self.irreps_node, self.irreps_out = Irreps(irreps_node), Irreps(irreps_out)
        self.irreps_A = sphere_irreps(mul, max_ell)
        self.linear_up = Linear(self.irreps_node, self.irreps_node)
        self.conv = EquivariantConvolution(
            self.irreps_node,
            max_ell,
            self.irreps_A,
            radial=num_radial,
            product=convolution_product or product,
            hidden=radial_hidden,
            avg_num_neighbors=avg_num_neighbors,
            check_inputs=False,
            radial_bias=False,  # no bias: zero weights at the cutoff, so the energy is smooth there
            radial_weights="all" if (convolution_product or product) in ("cg", "so2") else "edge",
        )
        self.linear_A = Linear(self.irreps_A, self.irreps_A)
        self.many_body = ManyBodyProduct(
            self.irreps_A, self.irreps_out, correlation, product=product, num_elements=num_elements
        )
        self.linear_out = Linear(self.irreps_out, self.irreps_out)
        self.skip = ElementLinear(self.irreps_node, self.irreps_out, num_elements) if skip else None

    def forward(
        self,
        h: torch.Tensor,
        onehot: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        edge_radial: torch.Tensor,
    ) -> torch.Tensor:
        A = self.conv(self.linear_up(h), edge_index, edge_vectors, edge_radial)
        B = self.many_body(self.linear_A(A), onehot)
        out = self.linear_out(B)
        return out if self.skip is None else out + self.skip(h, onehot)

    @property
    def products(self) -> tuple[str, str]:
        """(convolution product, many-body product) actually built (resolves "auto")."""
        return self.conv.chosen, self.many_body.chosen


class ScalarMLPReadout(torch.nn.Module):
    """Non-linear read-out of the last block: ``[N, mul x 0e] -> [N]`` (Linear -> SiLU -> Linear)."""

    def __init__(self, mul: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(mul, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).squeeze(-1)


class LinearReadout(torch.nn.Module):
    """Linear read-out of the invariant part of ``h``: ``[N, irreps] -> [N]`` (0e channels only)."""

    def __init__(self, irreps: Irreps) -> None:
        super().__init__()
        self.linear = Linear(irreps, "1x0e")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(-1)


__all__ = ["InteractionBlock", "ElementLinear", "LinearReadout", "ScalarMLPReadout", "sphere_irreps"]
