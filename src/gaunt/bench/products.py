"""What ``gaunt bench`` runs: the benchmark shapes, our products, and peers computing the same function.

Shapes (``mul`` channels, degrees ``0..L``, ordinary parity ``p = (-1)^l``, e3nn ``mul_ir`` layout):

* ``feature``: ``x1, x2 [B, mul x (0..L)] -> [B, mul x (0..L)]``, channel-wise (the Gaunt paths,
  mode ``uuu``): the product of two node features.
* ``edge``: ``x1 [B, mul x (0..L)]`` times edge harmonics ``1 x (0..L)`` ``-> [B, mul x (0..L)]``,
  channel-wise (mode ``uvu``). The Gaunt products take the harmonics as ``x2`` (computed once, not
  timed); ``SO2Product`` takes the edge vectors ``[B, 3]`` and its peers compute the harmonics from
  the vectors inside the timed call (so both sides start from the vectors).

A *runner* is one implementation in one dtype: ``runner.forward(inputs, weight) -> out`` with ``inputs``
a dict of ``[B, ...]`` tensors (``x1``, ``x2`` or ``vectors``) and ``weight`` its own weight layout.
Peers are built from the product's descriptor (``descriptor()`` + ``path_weights``), so every peer
computes the product's function exactly: e3nn's ``o3.TensorProduct`` (``e3nn_interop.to_e3nn``), our
``CGProduct`` on the same paths (CG couplings, the coupling ratios folded into the weights), and, only
where importable and on CUDA, cuEquivariance and OpenEquivariance (otherwise skipped, reason stated).
Descriptors are put in a canonical path order first (the weights permuted alike), so products with
the same function share one peer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..products import PRODUCTS as REGISTRY
from ..products.descriptor import ProductDescriptor
from ..products.e3nn_interop import e3nn_instructions, to_e3nn
from ..so3 import Irreps, spherical_harmonics
from . import gpu_peers

SHAPES = ("feature", "edge")
PEERS = ("e3nn", "CGProduct", "cuequivariance", "openequivariance")


# Our products are read from the registry when asked for (a product registered later is benchmarked too),
# under their bench names: every product of sphere functions (both shapes) and every edge product (edge
# shape); "cg" is not among them, it is the peer "CGProduct".
def by_bench_name() -> dict:
    """Bench name -> registry entry, for every registered product."""
    return {spec.bench_name or spec.name: spec for spec in REGISTRY.values()}


def benched_products() -> dict[str, tuple[str, ...]]:
    """Shape -> the bench names of our products timed in it."""
    sphere = tuple(n for n, s in by_bench_name().items() if s.accepts == "sphere" and not s.edge)
    return {"feature": sphere, "edge": sphere + tuple(n for n, s in by_bench_name().items() if s.edge)}


def variant_options(name: str) -> dict:
    """The fixed constructor options of a bench name (e.g. ``transform="fft"`` for "GauntProduct[fft]")."""
    spec = by_bench_name().get(name)
    return dict(spec.options) if spec is not None else {}


def product_name(product: torch.nn.Module) -> str:
    """The name a product is benchmarked under (its registry entry's bench name, else its class)."""
    return getattr(product, "bench_name", type(product).__name__)


def takes_vectors(product: torch.nn.Module) -> bool:
    """Whether the product's second input is edge vectors ``[B, 3]`` (the registry's edge products)."""
    return product.takes_edge_vectors


def io_width(product: torch.nn.Module) -> int:
    """Numbers per sample in the inputs (x1, and x2 or the edge vector) and the output."""
    second = 3 if takes_vectors(product) else product.irreps_in2.dim
    return product.irreps_in1.dim + second + product.irreps_out.dim


def sh_irreps(mul: int, L: int) -> str:
    """``"mul x 0e + mul x 1o + ... + mul x L((-1)^L)"``."""
    return "+".join(f"{mul}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(L + 1))


def build_product(
    name: str, shape: str, L: int, mul: int, shared_weights: bool = True, executor: str = "auto"
) -> torch.nn.Module:
    """One of our products (its bench name, :func:`by_bench_name`) for a shape: external weights (shared by
    default; ``shared_weights=False``: one weight vector per sample), float64 tables, on CPU, on ``executor``
    (passed to the class only when not "auto", its default).
    Edge products (edge shape only) get the edge harmonics of degree L."""
    spec = by_bench_name()[name]
    node = sh_irreps(mul, L)
    if spec.edge and shape != "edge":
        raise ValueError(f"{name} only has the edge shape")
    second = node if shape == "feature" else sh_irreps(1, L)
    options = {} if executor == "auto" else {"executor": executor}  # not every product takes an executor
    product = spec.build(node, second, node, internal_weights=False, shared_weights=shared_weights, **options)
    product.bench_name = name
    return product


def canonical(descriptor: ProductDescriptor) -> tuple[ProductDescriptor, torch.Tensor]:
    """``(d, perm)``: the descriptor with paths sorted by (i_in1, i_in2, i_out, coupling) and the index
    ``perm`` with ``w_canonical = w[..., perm]`` for flat per-path weights."""
    slices = descriptor.weight_slices()
    order = sorted(
        range(len(descriptor.paths)),
        key=lambda k: (lambda p: (p.i_in1, p.i_in2, p.i_out, p.coupling))(descriptor.paths[k]),
    )
    perm = [i for k in order if slices[k] is not None for i in range(slices[k].start, slices[k].stop)]
    paths = tuple(descriptor.paths[k] for k in order)
    return ProductDescriptor(descriptor.irreps_in1, descriptor.irreps_in2, descriptor.irreps_out, paths), torch.tensor(
        perm, dtype=torch.long
    )


def _pairs_size(d: ProductDescriptor) -> tuple[int, int]:
    """(sum over input pairs of mul1 mul2' d1 d2, sum over paths of mul_out d3): per-sample sizes of the
    outer products a dense implementation forms (mul2' = 1 for ``uu`` modes) and of its path outputs."""
    pairs = {}
    out = 0
    for p in d.paths:
        (m1, i1), (m2, i2), (m3, i3) = d.irreps(p)
        pairs[(p.i_in1, p.i_in2)] = m1 * (1 if p.mode.startswith("uu") else m2) * i1.dim * i2.dim
        out += m3 * i3.dim
    return sum(pairs.values()), out


@dataclass
class Runner:
    """One implementation in one dtype on one device.

    ``forward(inputs, weight) -> [B, out_dim]`` with ``inputs`` a dict of ``[B, ...]`` tensors;
    ``weights(w64[, product, perm])`` turns a product's float64 weights into this runner's weights (a
    peer maps them onto its paths, so that it computes that product's function); ``memory(batch, backward)``
    estimates the peak bytes of one call (inputs, outputs and intermediates).
    """

    name: str
    role: str  # "product" | "peer"
    forward: Callable[[dict, torch.Tensor], torch.Tensor]
    weights: Callable[[torch.Tensor], torch.Tensor]
    memory: Callable[[int, bool], int]
    build_s: float = 0.0


# ----------------------------------------------------------------------------- memory estimates
def _sphere_memory(product: torch.nn.Module, itemsize: int) -> Callable[[int, bool], int]:
    """Grid products: ``k`` grid-sized tensors per (sample, channel) live at the peak; in a forward
    pass only one block of samples at a time (``chunk_elements``; VectorGauntProduct has no blocks),
    in a backward pass all the saved ones. k calibrated on measured peaks (rounded up): forward 8
    (Gaunt[fft] 12, complex spectra), backward 6 (Gaunt[fft] 10, Vector 12)."""
    name = product_name(product)
    grid = product.frame.grid_points
    k_forward = 12 if name == "GauntProduct[fft]" else 8
    k_backward = {"GauntProduct[fft]": 10, "VectorGauntProduct": 12}.get(name, 6)
    io = product.irreps_in1.dim + product.irreps_in2.dim + product.irreps_out.dim
    chunk = product.frame.chunk_elements

    def memory(batch: int, backward: bool) -> int:
        rows = batch if (backward or not chunk) else min(batch, max(1, chunk // (product.mul * grid)))
        k = k_backward if backward else k_forward
        return itemsize * (k * rows * product.mul * grid + (2 if backward else 1) * batch * io)

    return memory


def _dense_memory(d: ProductDescriptor, itemsize: int, extra_per_sample: int = 0) -> Callable[[int, bool], int]:
    """Dense CG-style implementations (e3nn, CGProduct): the outer products ``x1 x2`` of the input pairs
    (``[mul, d1, d2]`` per sample): kept for the backward pass (factor 1.2 with the path outputs),
    about half alive at once in a forward pass (calibrated on measured peaks, rounded up)."""
    pairs, outs = _pairs_size(d)
    io = d.irreps_in1.dim + d.irreps_in2.dim + d.irreps_out.dim + extra_per_sample

    def memory(batch: int, backward: bool) -> int:
        return int(itemsize * batch * ((1.2 if backward else 0.6) * pairs + outs + 2 * io))

    return memory


def _so2_memory(product: torch.nn.Module, itemsize: int) -> Callable[[int, bool], int]:
    """Edge products: Wigner blocks sum (2l+1)^2 (a few copies), the rotated features and the per-sample
    terms (SO2Product: its sparse terms; the edge-aligned Gaunt product: its per-order samples)."""
    lmax = max(ir.l for _, ir in product.irreps_in1 + product.irreps_out)
    wig = sum((2 * l + 1) ** 2 for l in range(lmax + 1))
    io = product.irreps_in1.dim + product.irreps_out.dim
    if hasattr(product, "block_in"):
        terms = int(product.block_in.numel())
    else:
        terms = product.mul * product.program.synthesis.shape[0] * product.program.synthesis.shape[1]

    def memory(batch: int, backward: bool) -> int:
        return itemsize * batch * (6 * wig + (4 if backward else 2) * (2 * io + terms))

    return memory


# ----------------------------------------------------------------------------- runners
def product_runner(product: torch.nn.Module, dtype: torch.dtype, device) -> Runner:
    """Our product in ``dtype`` (a copy moved with ``.to(device, dtype)``, as a user would)."""
    name = product_name(product)
    module = copy.deepcopy(product).to(device=device, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if takes_vectors(module):
        forward = lambda ins, w: module(ins["x1"], ins["vectors"], w)  # noqa: E731
        memory = _so2_memory(module, itemsize)
    else:
        forward = lambda ins, w: module(ins["x1"], ins["x2"], w)  # noqa: E731
        memory = _sphere_memory(module, itemsize)
    return Runner(name, "product", forward, lambda w64, *_: w64.to(device=device, dtype=dtype), memory)


def _peer_second_input(product: torch.nn.Module, use_e3nn: bool) -> Callable[[dict], torch.Tensor]:
    """The peers' x2: given harmonics, or (SO2) the harmonics of the edge vectors, computed in-call."""
    if not takes_vectors(product):
        return lambda ins: ins["x2"]
    if use_e3nn:
        from e3nn import o3

        irreps = product.irreps_edge.to_e3nn()
        return lambda ins: o3.spherical_harmonics(irreps, ins["vectors"], normalize=True, normalization="component")
    lmax = product.lmax_edge
    return lambda ins: spherical_harmonics(lmax, ins["vectors"], normalization="component")


def build_e3nn(d: ProductDescriptor, shared_weights: bool = True) -> tuple[torch.nn.Module, torch.Tensor]:
    """e3nn's TensorProduct for ``d`` built in float64 (``to_e3nn``); other dtypes are ``deepcopy().to(dtype)``
    of it, which equals building in that dtype (e3nn casts its float64 wigner_3j tables; checked in tests).
    ``shared_weights=False``: e3nn takes one weight vector per sample (``[B, weight_numel]``)."""
    return to_e3nn(d, shared_weights=shared_weights, dtype=torch.float64)


def peer_runner(
    peer: str,
    product: torch.nn.Module,
    d: ProductDescriptor,
    perm: torch.Tensor,
    dtype: torch.dtype,
    device,
    built: object = None,
) -> Runner:
    """A peer computing ``product``'s function, ``d, perm = canonical(product.descriptor())``; ``built``
    is a prebuilt float64 e3nn ``(tp, scale)``. Raises ``RuntimeError`` with the reason where the peer
    cannot run here (not installed, needs CUDA). ``runner.weights(w64)`` takes the weights of any
    product whose canonical descriptor is ``d``, via that product's ``path_weights``."""
    device = torch.device(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    edge = 3 if takes_vectors(product) else 0
    memory = _dense_memory(d, itemsize, edge)
    if peer == "e3nn":
        tp, scale = built if built is not None else build_e3nn(d)
        module = copy.deepcopy(tp).to(device=device, dtype=dtype)
        second = _peer_second_input(product, use_e3nn=True)
        forward = lambda ins, w: module(ins["x1"], second(ins), w)  # noqa: E731
    elif peer == "CGProduct":
        from ..products import CGProduct

        instructions, scale = e3nn_instructions(d)
        module = CGProduct(
            d.irreps_in1,
            d.irreps_in2,
            d.irreps_out,
            instructions,
            irrep_normalization="none",
            path_normalization="none",
            internal_weights=False,
            shared_weights=True,
        )
        module = module.to(device=device, dtype=dtype)
        second = _peer_second_input(product, use_e3nn=False)
        forward = lambda ins, w: module(ins["x1"], second(ins), w)  # noqa: E731
    elif peer in ("cuequivariance", "openequivariance"):
        module, scale, call = gpu_peers.build(peer, d, dtype, device)  # raises RuntimeError with the reason
        second = _peer_second_input(product, use_e3nn=False)
        forward = lambda ins, w: call(module, ins["x1"], second(ins), w)  # noqa: E731
    else:
        raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")

    def weights(w64: torch.Tensor, source: torch.nn.Module = product, order: torch.Tensor = perm) -> torch.Tensor:
        """Peer weights computing ``source(x1, x2, w64)`` (``order``: ``canonical(source.descriptor())[1]``)."""
        return (scale.to(w64.dtype) * source.path_weights(w64)[..., order]).to(device=device, dtype=dtype)

    return Runner(peer, "peer", forward, weights, memory)


# ----------------------------------------------------------------------------- inputs
def make_inputs(
    product: torch.nn.Module, shape: str, batch: int, dtype: torch.dtype, device, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random inputs in ``dtype``: ``{"x1", "x2"}`` (feature: Gaussian) or, in the edge shape, ``{"x1", "x2",
    "vectors"}`` with x2 the edge harmonics of the random directions (component normalisation, as the edge
    products' ``edge_harmonics``: a product of the same function that takes the vectors agrees), made on CPU."""
    x1 = torch.randn(batch, product.irreps_in1.dim, generator=generator, dtype=dtype)
    if shape == "edge" or takes_vectors(product):
        vectors = torch.randn(batch, 3, generator=generator, dtype=torch.float64)
        lmax = product.lmax_edge if takes_vectors(product) else Irreps(product.irreps_in2).lmax
        x2 = spherical_harmonics(lmax, vectors, normalization="component")
        ins = {"x1": x1, "x2": x2, "vectors": vectors}
    else:
        ins = {"x1": x1, "x2": torch.randn(batch, product.irreps_in2.dim, generator=generator, dtype=dtype)}
    return {k: v.to(device=device, dtype=dtype) for k, v in ins.items()}


__all__ = [
    "SHAPES",
    "benched_products",
    "by_bench_name",
    "variant_options",
    "PEERS",
    "takes_vectors",
    "io_width",
    "sh_irreps",
    "build_product",
    "canonical",
    "Runner",
    "product_runner",
    "peer_runner",
    "build_e3nn",
    "make_inputs",
]
