"""One forward+backward step of a product, for before/after comparisons of the product code.

    PYTHONPATH=<tree>/src python benchmarks/refactor/step.py PRODUCT L MUL BATCH REPEATS

prints the median wall time of REPEATS steps (after one warm-up), one torch thread, float32. Under
``valgrind --tool=callgrind`` use REPEATS = 1: the instruction count is repeatable on a loaded machine.
"""

import statistics
import sys
import time

import torch

import gaunt.products as products


def build(name: str, L: int, mul: int):
    node = "+".join(f"{mul}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(L + 1))
    if name == "SO2Product":
        return products.SO2Product(node, node, L, internal_weights=False, shared_weights=True), True
    cls, options = (
        (products.GauntProduct, {"transform": "fft"}) if name == "GauntProduct[fft]" else (getattr(products, name), {})
    )
    return cls(node, node, node, internal_weights=False, shared_weights=True, **options), False


def main() -> None:
    name, L, mul, batch, repeats = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(1)
    product, edge = build(name, L, mul)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(batch, product.irreps_in1.dim, generator=g, requires_grad=True)
    x2 = torch.randn(batch, 3 if edge else product.irreps_in2.dim, generator=g, requires_grad=not edge)
    w = torch.randn(product.weight_numel, generator=g, requires_grad=True)
    inputs = [t for t in (x1, x2, w) if t.requires_grad]

    def step():
        out = product(x1, x2, w)
        torch.autograd.grad(out, inputs, torch.ones_like(out))

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(f"{name} L={L} mul={mul} batch={batch}: {statistics.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
