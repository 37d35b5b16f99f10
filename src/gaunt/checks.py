"""``gaunt check``: equivariance and gradient checks of every product and every ``gaunt.nn`` layer.

Users run it to check an install (or, through :func:`check_module`, their own layer). For each
entry, on random float64 inputs:

* equivariance: the largest ``|f(D x) - D f(x)| / max |f(x)|`` over a random rotation, a random
  improper rotation and the inversion (inputs and outputs transformed with their irreps' D; positions
  are ``1o``, whose D in ``gaunt.so3``'s Cartesian l = 1 basis is the 3x3 matrix itself);
* gradcheck and gradgradcheck (double backward: force training needs it) on a small batch;
* for products, the largest difference from the plain-einsum oracle of the product's descriptor.

The layers are checked on small inputs (2 channels, degrees 0..2): every layer of ``gaunt.nn``, the
convolution with every product on a random graph (inputs: node features and atomic positions, so
the check goes through the edge vectors, the Bessel basis, the cutoff and the radial MLP as a
potential does), the many-body product at correlation 3 with per-element weights, and the radial
features as invariants of an edge vector. Parameters are drawn at random (not left at their
initial values, where e.g. zero biases could hide a mistake).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .so3 import Irreps, irreps_wigner_d, random_rotation

ELEMENTS = ("rotation", "improper rotation", "inversion")


@dataclass
class CheckResult:
    name: str
    equivariance: float  # the worst of ``errors``
    gradcheck: bool
    gradgradcheck: bool
    oracle: float | None  # max |module - reference| / max |output|, where a reference exists
    errors: dict[str, float] = field(default_factory=dict)  # equivariance error per element of ELEMENTS

    def passed(self, tolerance: float = 1e-12) -> bool:
        return (
            self.equivariance <= tolerance
            and self.gradcheck
            and self.gradgradcheck
            and (self.oracle is None or self.oracle <= 1e-10)
        )


def _elements(seed: int) -> list[torch.Tensor]:
    R = random_rotation(generator=torch.Generator().manual_seed(seed))
    return [R, -random_rotation(generator=torch.Generator().manual_seed(seed + 1)), -torch.eye(3, dtype=torch.float64)]


def _act(irreps: Irreps, Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x [..., irreps.dim]`` transformed by the O(3) element ``Q``."""
    return x @ irreps_wigner_d(irreps, Q).T.to(x.dtype)


def check_module(
    name: str,
    fn: Callable[..., torch.Tensor],
    irreps_in: Sequence,
    irreps_out,
    batch: int = 3,
    seed: int = 0,
    reference: Callable[..., torch.Tensor] | None = None,
    *,
    inputs: Sequence[torch.Tensor] | None = None,
    fast_gradcheck: bool = False,
) -> CheckResult:
    """Check ``fn(*inputs) -> [..., irreps_out.dim]``, one input ``[..., irreps.dim]`` per entry of ``irreps_in``.

    Cartesian vectors (positions, edge vectors ``[..., 3]`` in x, y, z order) are ``"1o"``: the l = 1
    basis of ``gaunt.so3`` is Cartesian, its D is the 3x3 matrix itself. Without ``inputs``, random
    ``[batch, dim]`` float64 inputs are drawn and the gradient checks use their first 2 rows; with
    ``inputs`` (float64, e.g. node features ``[N, dim]`` and positions ``[N, 3]`` of one small graph,
    other arguments closed over in ``fn``) those are used throughout.
    ``fast_gradcheck``: torch's random-projection mode (for slow modules). Raises ``AssertionError``
    if the output is identically zero (the equivariance check would be vacuous).
    """
    irreps_in = [Irreps(s) for s in irreps_in]
    irreps_out = Irreps(irreps_out)
    if inputs is None:
        g = torch.Generator().manual_seed(seed)
        xs = [torch.randn(batch, s.dim, generator=g, dtype=torch.float64) for s in irreps_in]
        small = [x[:2] for x in xs]
    else:
        if len(inputs) != len(irreps_in):
            raise ValueError(f"{name}: {len(inputs)} inputs given for {len(irreps_in)} irreps_in entries")
        for x, s in zip(inputs, irreps_in):
            if x.dtype != torch.float64 or x.shape[-1] != s.dim:
                raise ValueError(
                    f"{name}: input of shape {tuple(x.shape)}, {x.dtype} does not match {s} (float64 needed)"
                )
        xs = small = [x.detach() for x in inputs]
    out = fn(*xs)
    scale = float(out.detach().abs().max()) if out.numel() else 0.0
    if scale == 0.0:
        raise AssertionError(f"{name}: output is identically zero; the check would be vacuous")
    errors = {}
    for label, Q in zip(ELEMENTS, _elements(seed)):
        rotated = fn(*[_act(s, Q, x) for x, s in zip(xs, irreps_in)])
        errors[label] = float((rotated - _act(irreps_out, Q, out)).detach().abs().max()) / scale
    small = [x.clone().requires_grad_(True) for x in small]
    grad_ok = torch.autograd.gradcheck(fn, small, raise_exception=False, fast_mode=fast_gradcheck)
    gradgrad_ok = torch.autograd.gradgradcheck(fn, small, raise_exception=False, fast_mode=fast_gradcheck)
    oracle = None if reference is None else float((reference(*xs) - out).abs().max()) / scale
    return CheckResult(name, max(errors.values()), grad_ok, gradgrad_ok, oracle, errors)


def _product_entries(lmax: int) -> list[tuple[str, Callable[[], CheckResult]]]:
    from .products.descriptor import dense_product
    from .products.expressivity import available_products, build_product

    entries = []
    for name in available_products():

        def run(name: str = name) -> CheckResult:
            product = build_product(name, lmax)
            w = torch.randn(product.weight_numel, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            fn = lambda x1, x2: product(x1, x2, w)  # noqa: E731
            reference = None
            if not product.takes_edge_vectors:
                desc, pw = product.descriptor(), product.path_weights(w)
                reference = lambda x1, x2: dense_product(desc, x1, x2, pw)  # noqa: E731
            return check_module(
                name, fn, [product.irreps_in1, product.irreps_in2], product.irreps_out, reference=reference
            )

        entries.append((name, run))
    return entries


# ----------------------------------------------------------------------------- layers
_NODE = "2x0e+2x1o+2x2e"  # 2 channels of a sphere function of degree <= 2 (what every product accepts)
_LMAX_EDGE, _R_MAX = 2, 4.0
#: a small graph: 4 atoms, 7 directed edges (senders; receivers), some atoms with several neighbours
_EDGES = ((0, 1, 1, 2, 3, 2, 0), (1, 0, 2, 3, 0, 0, 3))


def _randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` in float64, every parameter shifted by ``N(0, 0.5^2)`` noise from its initial value."""
    module = module.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _graph_inputs(irreps_node, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node features ``[4, dim]`` and positions ``[4, 3]`` (spread so that most edges are shorter than r_max = 4)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, Irreps(irreps_node).dim, generator=g, dtype=torch.float64)
    return x, 1.2 * torch.randn(4, 3, generator=g, dtype=torch.float64)


def _radial_features(num_basis: int = 4):
    """``|r| -> Bessel(|r|) * cutoff(|r|)`` ``[..., num_basis]`` (what a potential feeds the radial MLP)."""
    from .nn import BesselBasis, PolynomialCutoff

    bessel, cutoff = BesselBasis(_R_MAX, num_basis).double(), PolynomialCutoff(_R_MAX)
    return lambda r: bessel(r) * cutoff(r)[..., None]


def _convolution_check(product: str) -> CheckResult:
    """The convolution as a potential calls it: ``f(x, positions)``, edge vectors ``pos[j] - pos[i]``."""
    from .nn import EquivariantConvolution

    torch.manual_seed(0)  # the radial MLP's initial weights (redrawn below around them)
    conv = _randomized(
        EquivariantConvolution(
            _NODE, _LMAX_EDGE, _NODE, radial=4, product=product, hidden=(8,), avg_num_neighbors=1.75
        ),
        seed=1,
    )
    edge_index = torch.tensor(_EDGES)
    radial = _radial_features()

    def fn(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        vectors = positions[edge_index[0]] - positions[edge_index[1]]
        return conv(x, edge_index, vectors, radial(torch.linalg.vector_norm(vectors, dim=-1)))

    return check_module(
        f"EquivariantConvolution[{product}]",
        fn,
        [_NODE, "1o"],
        _NODE,
        inputs=_graph_inputs(_NODE, seed=2),
        fast_gradcheck=True,
    )


def _many_body_check(product: str, correlation: int = 3) -> CheckResult:
    from .nn import ManyBodyProduct

    torch.manual_seed(0)
    layer = _randomized(ManyBodyProduct(_NODE, _NODE, correlation, product=product, num_elements=2), seed=1)
    species = torch.tensor([0, 1, 1])  # per-element weights: both rows of the weight table are used
    A = torch.randn(3, Irreps(_NODE).dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return check_module(
        f"ManyBodyProduct[{product},nu={correlation}]",
        lambda a: layer(a, species),
        [_NODE],
        _NODE,
        inputs=[A],
        fast_gradcheck=True,
    )


def _layer_check(name: str, build: Callable[[], torch.nn.Module]) -> CheckResult:
    """A one-input layer ``[..., layer.irreps_in.dim] -> [..., layer.irreps_out.dim]``."""
    torch.manual_seed(0)
    layer = _randomized(build(), seed=1)
    return check_module(name, layer, [layer.irreps_in], layer.irreps_out, fast_gradcheck=True)


def _radial_check(name: str, mlp: bool) -> CheckResult:
    """Invariants of an edge vector: ``Bessel(|r|)`` (and ``RadialMLP(Bessel(|r|) cutoff(|r|))``)."""
    from .nn import BesselBasis, RadialMLP

    bessel, radial = BesselBasis(_R_MAX, 4).double(), _radial_features()
    torch.manual_seed(0)
    network = _randomized(RadialMLP(4, (8,), 5), seed=1)
    fn = (
        (lambda r: network(radial(torch.linalg.vector_norm(r, dim=-1))))
        if mlp
        else (lambda r: bessel(torch.linalg.vector_norm(r, dim=-1)))
    )
    return check_module(name, fn, ["1o"], "5x0e" if mlp else "4x0e", batch=4, fast_gradcheck=True)


def _layer_entries() -> list[tuple[str, Callable[[], CheckResult]]]:
    """Every ``gaunt.nn`` layer on small inputs (module docstring)."""
    from .nn import EquivariantLayerNorm, FeatureInteraction, Gate, Linear, NormActivation, S2Activation
    from .products import PRODUCTS

    silu, sigmoid = torch.nn.functional.silu, torch.sigmoid
    layers: dict[str, Callable[[], CheckResult]] = {
        # both parities of l = 1, an output type without input (0o: zero), a bias on the 0e outputs
        "Linear": lambda: _layer_check(
            "Linear", lambda: Linear("2x0e+2x1o+1x1e+1x2e", "3x0e+1x1o+1x1e+2x2e+1x0o", biases=True)
        ),
        # an odd (0o) gate flips the parity of what it gates: 1o -> 1e
        "Gate": lambda: _layer_check(
            "Gate", lambda: Gate("2x0e+1x0o", [silu, torch.tanh], "1x0e+1x0o", [sigmoid, torch.tanh], "1x1o+1x2e")
        ),
        "NormActivation": lambda: _layer_check("NormActivation", lambda: NormActivation("2x0e+2x1o+1x2e+1x1e", silu)),
        # resolution 64: the aliasing of silu is below 1e-14 at degree 2 (nn.s2_activation's table)
        "S2Activation": lambda: _layer_check("S2Activation", lambda: S2Activation(_NODE, silu, resolution=64)),
        "EquivariantLayerNorm": lambda: _layer_check(
            "EquivariantLayerNorm", lambda: EquivariantLayerNorm("3x0e+2x1o+2x2e+1x1e")
        ),
    }
    for product in ("gaunt", "cg"):
        name = f"FeatureInteraction[{product}]"
        layers[name] = lambda name=name, product=product: _layer_check(
            name, lambda: FeatureInteraction(_NODE, "2x0e+2x1o+2x2e+2x3o+2x4e", product=product)
        )
    for product in PRODUCTS:  # every registered product convolves ("auto" builds one of them)
        layers[f"EquivariantConvolution[{product}]"] = lambda product=product: _convolution_check(product)
    for product in ("cg", "grid", "gaunt"):
        layers[f"ManyBodyProduct[{product},nu=3]"] = lambda product=product: _many_body_check(product)
    layers["BesselBasis"] = lambda: _radial_check("BesselBasis", mlp=False)
    layers["RadialMLP"] = lambda: _radial_check("RadialMLP", mlp=True)
    return list(layers.items())


#: extra entries registered by other modules (layers): name -> zero-argument function returning a CheckResult
REGISTRY: dict[str, Callable[[], CheckResult]] = {}


def register_check(name: str, run: Callable[[], CheckResult]) -> None:
    """Add a check to ``gaunt check`` (``run`` builds the module and calls :func:`check_module`)."""
    REGISTRY[name] = run


def all_entries(lmax: int = 2) -> list[tuple[str, Callable[[], CheckResult]]]:
    """``(name, run)`` of every check: the products (inputs of degree ``lmax``), the layers, the registry."""
    return _product_entries(lmax) + _layer_entries() + list(REGISTRY.items())


def run_checks(
    lmax: int = 2, tolerance: float = 1e-12, only: Sequence[str] | None = None, threads: int | None = 1
) -> tuple[list[CheckResult], bool]:
    """Run every check (``only``: shell patterns of the names to run); returns the results and whether all passed.

    ``threads``: torch threads while the checks run (restored after; None: unchanged). The inputs are
    tiny, so parallel ops only add overhead, and on a busy machine a lot of it.
    """
    entries = [(n, run) for n, run in all_entries(lmax) if only is None or any(fnmatch.fnmatchcase(n, p) for p in only)]
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        results = [run() for _, run in entries]
    finally:
        torch.set_num_threads(previous)
    return results, all(r.passed(tolerance) for r in results)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="gaunt check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lmax", type=int, default=2, help="degree of the products' inputs (default 2)")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="PATTERN",
        help="run only the checks whose name matches a shell pattern, e.g. 'ManyBody*'",
    )
    args = parser.parse_args(argv)
    results, ok = run_checks(args.lmax, only=args.only)
    if not results:
        print(f"no check matches {args.only}; names: {', '.join(n for n, _ in all_entries(args.lmax))}")
        return 2
    width = max(len(r.name) for r in results)
    print(f"{'module':>{width}} {'equivariance':>13} {'gradcheck':>10} {'double bwd':>11} {'vs oracle':>10}")
    for r in results:
        oracle = "-" if r.oracle is None else f"{r.oracle:.1e}"
        flag = "" if r.passed() else "  FAILED"
        gradients = f"{str(r.gradcheck):>10} {str(r.gradgradcheck):>11}"
        print(f"{r.name:>{width}} {r.equivariance:>13.1e} {gradients} {oracle:>10}{flag}")
    print("(gradients: full Jacobians for the products, torch's fast random-projection mode for the layers)")
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


__all__ = ["CheckResult", "check_module", "register_check", "run_checks", "all_entries", "main"]
