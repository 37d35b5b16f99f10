"""Profile one product's forward+backward step (feature shape, 64 channels, float32, one thread).

    python benchmarks/profile_product.py GridGauntProduct 6 1000

Prints torch.profiler's table of self CPU time per op over 3 steps after 2 warm-up steps. The product
is built as ``gaunt bench`` builds it (``gaunt.bench.products.build_product``); the step is
``autograd.grad`` of the output with respect to both inputs and the shared weights.
"""

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from gaunt.bench.products import build_product, make_inputs

torch.set_num_threads(1)
name, L, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
product = build_product(name, "feature", L, 64).float()
inputs = make_inputs(product, "feature", batch, torch.float32, "cpu", torch.Generator().manual_seed(0))
x1, x2 = inputs["x1"].requires_grad_(), inputs["x2"].requires_grad_()
weight = torch.randn(product.weight_numel, requires_grad=True)


def step():
    out = product(x1, x2, weight)
    return torch.autograd.grad(out, (x1, x2, weight), torch.ones_like(out))


for _ in range(2):
    step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(3):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
