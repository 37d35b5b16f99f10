"""``gaunt check``: equivariance and gradient checks of every registered product and layer.

Users run it to check an install (or, through :func:`check_module`, their own layer). For each
entry, on random float64 inputs:

* equivariance: the largest ``|f(D x) - D f(x)| / max |f(x)|`` over a random rotation, a random
  improper rotation and the inversion (inputs and outputs transformed with their irreps' D);
* gradcheck and gradgradcheck (double backward: force training needs it) on a small batch;
* for products, the largest difference from the plain-einsum oracle of the product's descriptor.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .so3 import Irreps, irreps_wigner_d, random_rotation


@dataclass
class CheckResult:
    name: str
    equivariance: float
    gradcheck: bool
    gradgradcheck: bool
    oracle: float | None  # max |module - reference| / max |output|, where a reference exists


def _elements(seed: int) -> list[torch.Tensor]:
    R = random_rotation(generator=torch.Generator().manual_seed(seed))
    return [R, -random_rotation(generator=torch.Generator().manual_seed(seed + 1)), -torch.eye(3, dtype=torch.float64)]


def check_module(
    name: str,
    fn: Callable[..., torch.Tensor],
    irreps_in: Sequence,
    irreps_out,
    batch: int = 3,
    seed: int = 0,
    reference: Callable[..., torch.Tensor] | None = None,
) -> CheckResult:
    """Check ``fn(*inputs) -> [batch, irreps_out.dim]`` with inputs ``[batch, irreps.dim]`` per irreps."""
    g = torch.Generator().manual_seed(seed)
    irreps_in = [Irreps(i) for i in irreps_in]
    irreps_out = Irreps(irreps_out)
    xs = [torch.randn(batch, i.dim, generator=g, dtype=torch.float64) for i in irreps_in]
    out = fn(*xs)
    scale = float(out.abs().max())
    if scale == 0.0:
        raise AssertionError(f"{name}: output is identically zero; the check would be vacuous")
    worst = 0.0
    for Q in _elements(seed):
        rotated = fn(*[x @ irreps_wigner_d(i, Q).T for x, i in zip(xs, irreps_in)])
        worst = max(worst, float((rotated - out @ irreps_wigner_d(irreps_out, Q).T).abs().max()) / scale)
    small = [x[:2].clone().requires_grad_(True) for x in xs]
    grad_ok = torch.autograd.gradcheck(fn, small, raise_exception=False)
    gradgrad_ok = torch.autograd.gradgradcheck(fn, small, raise_exception=False)
    oracle = None if reference is None else float((reference(*xs) - out).abs().max()) / scale
    return CheckResult(name, worst, grad_ok, gradgrad_ok, oracle)


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
            if not hasattr(product, "edge_harmonics"):
                desc, pw = product.descriptor(), product.path_weights(w)
                reference = lambda x1, x2: dense_product(desc, x1, x2, pw)  # noqa: E731
            return check_module(name, fn, [product.irreps_in1, product.irreps_in2], product.irreps_out,
                                reference=reference)  # fmt: skip

        entries.append((name, run))
    return entries


#: extra entries registered by other modules (layers): name -> zero-argument function returning a CheckResult
REGISTRY: dict[str, Callable[[], CheckResult]] = {}


def register_check(name: str, run: Callable[[], CheckResult]) -> None:
    """Add a check to ``gaunt check`` (``run`` builds the module and calls :func:`check_module`)."""
    REGISTRY[name] = run


def run_checks(lmax: int = 2, tolerance: float = 1e-12) -> tuple[list[CheckResult], bool]:
    """Run every check; returns the results and whether all passed."""
    results = [run() for _, run in _product_entries(lmax)] + [run() for run in REGISTRY.values()]
    ok = all(
        r.equivariance <= tolerance and r.gradcheck and r.gradgradcheck and (r.oracle is None or r.oracle <= 1e-10)
        for r in results
    )
    return results, ok


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="gaunt check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lmax", type=int, default=2, help="degree of the products' inputs (default 2)")
    args = parser.parse_args(argv)
    results, ok = run_checks(args.lmax)
    print(f"{'module':>22} {'equivariance':>13} {'gradcheck':>10} {'double bwd':>11} {'vs oracle':>10}")
    for r in results:
        oracle = "-" if r.oracle is None else f"{r.oracle:.1e}"
        print(f"{r.name:>22} {r.equivariance:>13.1e} {str(r.gradcheck):>10} {str(r.gradgradcheck):>11} {oracle:>10}")
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


__all__ = ["CheckResult", "check_module", "register_check", "run_checks", "main"]
