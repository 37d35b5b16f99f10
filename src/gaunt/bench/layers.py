"""What ``gaunt bench --layers`` runs: the convolution and many-body layers with every product, and
the CG / e3nn versions they are compared with.

Both layers take sphere-function features ``mul x (0e + 1o + ... + L)`` and return the same irreps.

* ``convolution``: :class:`gaunt.nn.EquivariantConvolution` on a random graph (``nodes`` nodes,
  ``edges`` directed edges between distinct random nodes, edge vectors from random positions,
  ``radial`` invariant edge features, radial MLP 8 -> 64 -> weights, edge harmonics to degree L). Two
  functions: ``"cg"`` (Clebsch-Gordan ``uvu`` paths, one weight per path and channel per edge), computed
  by ``product="cg"``, by ``"so2"`` (the same paths and weights in the edge frame) and by e3nn
  (:class:`E3nnConvolution`: ``o3.TensorProduct`` with the same ``uvu`` instructions and external
  per-edge weights, normalisations folded into the weights, the same radial MLP); and ``"gaunt"``
  (the same paths -- with sphere-function irreps the parity rule leaves exactly l1 + l2 + l3 even --
  but factorised weights ``w1 w2 w3`` per channel and degree), computed by ``"gaunt"`` (2D Fourier basis),
  ``"grid"`` (quadrature) and ``"gaunt_z"`` (edge-aligned 1D convolution). The CG version of the
  Gaunt convolution is the ``"cg"`` one: the same paths, more weights (a superset of functions).
* ``many-body``: :class:`gaunt.nn.ManyBodyProduct` at correlation nu with per-element weights
  (``num_elements`` elements, random species). Functions: ``"all paths"`` (``product="cg"``: the CG
  chain with every parity-allowed path, MACE-like) and ``"gaunt"``, computed by ``"grid"``, ``"gaunt"``
  (2D Fourier basis) and ``"cg (gaunt paths)"`` (``GauntManyBody.cg_reference()``: the CG chain
  restricted to the Gaunt paths with the weights that make it the same function). The CG reference is our own
  ``CGManyBody`` chain, not MACE's ``SymmetricContraction`` (which contracts A^(x)nu with a basis of
  the symmetric couplings and learns one weight per basis element: another function; no same-function
  external version exists).

A :class:`LayerRunner` owns a float64 master module; ``runner.module(dtype)`` is a cast copy. Inputs
are a dict of tensors (``make_inputs``); ``split_inputs`` cuts them into chunks (edges or atoms) whose
outputs sum to (convolution) or concatenate to (many-body) the full output: the same work in pieces,
as gradient accumulation does, used when one call would exceed the memory budget.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..nn import EquivariantConvolution, ManyBodyProduct
from ..products import PRODUCTS
from ..products.e3nn_interop import to_e3nn
from .products import sh_irreps

LAYERS = ("convolution", "many-body")
#: every registered product as the convolution's product (``nn.convolution``), and e3nn's convolution
CONVOLUTION_IMPLEMENTATIONS = (*PRODUCTS, "e3nn")
MANY_BODY_IMPLEMENTATIONS = ("cg", "cg (gaunt paths)", "grid", "gaunt")
#: the implementations the others are compared with, per layer (first: the headline ratio)
BASELINES = {"convolution": ("cg",), "many-body": ("cg", "cg (gaunt paths)")}
RADIAL, HIDDEN, AVG_NEIGHBORS, NUM_ELEMENTS = 8, (64,), 16.0, 3


@dataclass
class LayerRunner:
    """One implementation of one layer function. ``forward(module, inputs) -> out``; ``grad_keys``: the
    inputs that get a gradient in the fwd+bwd timing (with every parameter of the module)."""

    name: str
    function: str
    master: torch.nn.Module  # float64
    forward: Callable[[torch.nn.Module, dict], torch.Tensor]
    grad_keys: tuple[str, ...]
    role: str = "layer"  # "layer" | "peer" (e3nn) | "reference" (agreement only, never timed)
    build_s: float = 0.0
    _cast: dict = field(default_factory=dict)

    def module(self, dtype: torch.dtype) -> torch.nn.Module:
        if dtype not in self._cast:
            self._cast[dtype] = self.master if dtype == torch.float64 else copy.deepcopy(self.master).to(dtype)
        return self._cast[dtype]


# ----------------------------------------------------------------------------- convolution
class E3nnConvolution(torch.nn.Module):
    """``layer``'s convolution computed with e3nn: ``o3.TensorProduct`` built from ``layer.product``'s
    descriptor (``e3nn_interop.to_e3nn``, per-edge weights), e3nn's spherical harmonics, a copy of the
    layer's radial MLP; the per-path weights ``scale * product.path_weights(MLP(radial))``."""

    def __init__(self, layer: EquivariantConvolution) -> None:
        super().__init__()
        from e3nn import o3

        self.tp, scale = to_e3nn(layer.product.descriptor(), shared_weights=False, dtype=torch.float64)
        self.register_buffer("scale", scale)
        self.source = copy.deepcopy(layer.product)  # its path_weights maps the MLP output onto the paths
        self.radial_mlp = copy.deepcopy(layer.radial_mlp)
        self.irreps_edge = o3.Irreps.spherical_harmonics(layer.lmax_edge)
        self.avg_num_neighbors, self.out_dim = layer.avg_num_neighbors, layer.irreps_out.dim

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, vectors: torch.Tensor, radial: torch.Tensor
    ) -> torch.Tensor:
        from e3nn import o3

        weight = self.scale.to(x.dtype) * self.source.path_weights(self.radial_mlp(radial))
        y = o3.spherical_harmonics(self.irreps_edge, vectors, normalize=True, normalization="component")
        messages = self.tp(x[edge_index[0]], y, weight)
        out = messages.new_zeros(x.shape[0], self.out_dim).index_add(0, edge_index[1], messages)
        return out if self.avg_num_neighbors is None else out / self.avg_num_neighbors


def _conv_forward(module: torch.nn.Module, ins: dict) -> torch.Tensor:
    return module(ins["x"], ins["edge_index"], ins["vectors"], ins["radial"])


def convolution_runners(
    L: int, mul: int, names=CONVOLUTION_IMPLEMENTATIONS, seed: int = 0, e3nn_reference: bool = True
) -> list[LayerRunner]:
    """Float64 convolutions at degree L (node, edge and output degree L, ``mul`` channels) for ``names``;
    the products of one function share the radial MLP's weights. ``e3nn_reference``: also an e3nn
    version of the Gaunt function (role "reference": the agreement check of "gaunt"/"grid"/"gaunt_z").
    Raises ``ImportError`` if "e3nn" is asked for and not installed."""
    import time

    irreps = sh_irreps(mul, L)
    runners: list[LayerRunner] = []
    first: dict[str, EquivariantConvolution] = {}
    grad_keys = ("x", "vectors", "radial")
    for name in [n for n in names if n != "e3nn"]:
        start = time.perf_counter()
        torch.manual_seed(seed)
        layer = EquivariantConvolution(
            irreps, L, irreps, RADIAL, product=name, hidden=HIDDEN, avg_num_neighbors=AVG_NEIGHBORS
        ).double()
        function = PRODUCTS[name].function  # the registry says which products compute the same function
        if function in first:
            layer.load_state_dict(first[function].state_dict())
        first.setdefault(function, layer)
        runners.append(
            LayerRunner(name, function, layer, _conv_forward, grad_keys, build_s=time.perf_counter() - start)
        )
    wanted = [("cg", "peer")] if "e3nn" in names else []
    if e3nn_reference and "gaunt" in first:
        wanted.append(("gaunt", "reference"))
    for function, role in wanted:
        start = time.perf_counter()
        source = first.get(function)
        if source is None:  # e3nn alone: build the CG layer it mirrors
            torch.manual_seed(seed)
            source = EquivariantConvolution(
                irreps, L, irreps, RADIAL, product="cg", hidden=HIDDEN, avg_num_neighbors=AVG_NEIGHBORS
            ).double()
        peer = E3nnConvolution(source).double()
        runners.append(
            LayerRunner(
                "e3nn", function, peer, _conv_forward, grad_keys, role=role, build_s=time.perf_counter() - start
            )
        )
    return runners


def convolution_inputs(L: int, mul: int, nodes: int, edges: int, dtype: torch.dtype, seed: int) -> dict:
    """Node features ``x [nodes, mul (L+1)^2]`` (N(0,1)), ``edge_index [2, edges]`` (sender != receiver),
    ``vectors [edges, 3]`` = differences of positions uniform in a box of side ``nodes^(1/3)`` (density
    1), ``radial [edges, RADIAL]`` (N(0,1): the layer takes them as given)."""
    g = torch.Generator().manual_seed(seed)
    sender = torch.randint(0, nodes, (edges,), generator=g)
    receiver = (sender + torch.randint(1, max(nodes, 2), (edges,), generator=g)) % max(nodes, 2)
    positions = torch.rand(nodes, 3, generator=g, dtype=torch.float64) * nodes ** (1 / 3)
    vectors = positions[sender] - positions[receiver]
    return {
        "x": torch.randn(nodes, mul * (L + 1) ** 2, generator=g, dtype=torch.float64).to(dtype),
        "edge_index": torch.stack([sender, receiver]),
        "vectors": vectors.to(dtype),
        "radial": torch.randn(edges, RADIAL, generator=g, dtype=torch.float64).to(dtype),
    }


# ----------------------------------------------------------------------------- many-body
def _many_body_forward(module: torch.nn.Module, ins: dict) -> torch.Tensor:
    return module(ins["A"], ins["species"])


def many_body_runners(
    L: int, mul: int, correlation: int, names=MANY_BODY_IMPLEMENTATIONS, seed: int = 0
) -> list[LayerRunner]:
    """Float64 many-body layers at degree L (input and output ``mul x (0..L)``), ``NUM_ELEMENTS`` elements;
    "grid", "gaunt" and "cg (gaunt paths)" compute one function (random weights, copied)."""
    import time

    irreps = sh_irreps(mul, L)
    runners: list[LayerRunner] = []
    g = torch.Generator().manual_seed(seed)
    gaunt_family = [n for n in ("grid", "gaunt", "cg (gaunt paths)") if n in names]
    if gaunt_family:
        start = time.perf_counter()
        grid = ManyBodyProduct(irreps, irreps, correlation, product="grid", num_elements=NUM_ELEMENTS).double()
        with torch.no_grad():  # w1 starts at 1: perturb, so that the check sees weights per degree and element
            grid.body.weights.weight.add_(
                0.3 * torch.randn(grid.body.weights.weight.shape, generator=g, dtype=torch.float64)
            )
        built = {"grid": (grid, time.perf_counter() - start)}
        if "gaunt" in names:
            start = time.perf_counter()
            fourier = ManyBodyProduct(irreps, irreps, correlation, product="gaunt", num_elements=NUM_ELEMENTS).double()
            fourier.load_state_dict(grid.state_dict())
            built["gaunt"] = (fourier, time.perf_counter() - start)
        if "cg (gaunt paths)" in names:
            start = time.perf_counter()
            built["cg (gaunt paths)"] = (grid.body.cg_reference().double(), time.perf_counter() - start)
        for name in gaunt_family:
            module, seconds = built[name]
            runners.append(LayerRunner(name, "gaunt", module, _many_body_forward, ("A",), build_s=seconds))
    if "cg" in names:
        start = time.perf_counter()
        torch.manual_seed(seed)
        cg = ManyBodyProduct(irreps, irreps, correlation, product="cg", num_elements=NUM_ELEMENTS).double()
        runners.insert(
            0, LayerRunner("cg", "all paths", cg, _many_body_forward, ("A",), build_s=time.perf_counter() - start)
        )
    return runners


def many_body_inputs(L: int, mul: int, atoms: int, dtype: torch.dtype, seed: int) -> dict:
    """``A [atoms, mul (L+1)^2]`` (N(0,1)) and ``species [atoms]`` (uniform in 0..NUM_ELEMENTS-1)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "A": torch.randn(atoms, mul * (L + 1) ** 2, generator=g, dtype=torch.float64).to(dtype),
        "species": torch.randint(0, NUM_ELEMENTS, (atoms,), generator=g),
    }


# ----------------------------------------------------------------------------- chunks
def split_inputs(layer: str, ins: dict, cotangent: torch.Tensor, chunks: int) -> list[tuple[dict, torch.Tensor]]:
    """``chunks`` pieces ``(inputs, cotangent)`` doing together the work of one call: the convolution by
    edges (every piece sees all nodes; the outputs add up, so each piece gets the full cotangent), the
    many-body by atoms (rows; the cotangent is split alike)."""
    key = "vectors" if layer == "convolution" else "A"
    n = ins[key].shape[0]
    bounds = [(i * n // chunks, (i + 1) * n // chunks) for i in range(chunks)]
    if layer == "convolution":
        return [
            (
                {
                    "x": ins["x"],
                    "edge_index": ins["edge_index"][:, a:b],
                    "vectors": ins["vectors"][a:b],
                    "radial": ins["radial"][a:b],
                },
                cotangent,
            )
            for a, b in bounds
        ]
    return [({"A": ins["A"][a:b], "species": ins["species"][a:b]}, cotangent[a:b]) for a, b in bounds]


__all__ = [
    "LAYERS",
    "BASELINES",
    "CONVOLUTION_IMPLEMENTATIONS",
    "MANY_BODY_IMPLEMENTATIONS",
    "LayerRunner",
    "E3nnConvolution",
    "convolution_runners",
    "convolution_inputs",
    "many_body_runners",
    "many_body_inputs",
    "split_inputs",
]
