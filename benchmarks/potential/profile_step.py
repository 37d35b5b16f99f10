"""Profile of one training step of the potential (RESULTS.md configuration, 3BPA, batch 5), by torch op.

    PYTHONPATH=src python benchmarks/potential/profile_step.py [float64|float32] [steps] [--rows N] [--torch-only]

Prints the median wall time of ``steps`` steps (forward, forces with create_graph, loss, backward; one
torch thread) and the ``torch.profiler`` table of the last few steps, sorted by self CPU time.
``--torch-only``: every "auto" executor resolves to "torch" (the reference), for before/after comparisons
of the fused kernels in one tree.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import ase.io
import torch

from gaunt.data.graph import collate
from gaunt.data.neighbors import atoms_to_graph
from gaunt.models import GauntPotential, PotentialConfig
from gaunt.products import executors

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "3bpa" / "train_300K.xyz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dtype", nargs="?", default="float64")
    parser.add_argument("steps", nargs="?", type=int, default=5)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--torch-only", action="store_true")
    args = parser.parse_args()
    if args.torch_only:
        executors.PREFERENCE["cpu"] = ("torch",)
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    config = PotentialConfig(atomic_numbers=[1, 6, 7, 8], avg_num_neighbors=16.0)
    model = GauntPotential(config).to(dtype).train()
    graph = collate([atoms_to_graph(a, config.r_max, dtype) for a in ase.io.read(DATA, index=":5")])
    chosen = sorted({m.executor for m in model.modules() if isinstance(getattr(m, "executor", None), str)})
    print(f"{graph.num_nodes} atoms, {graph.edge_index.shape[1]} edges, products {model.products}, executors {chosen}")
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        out = model(graph)
        loss = out["energy"].square().mean() + out["forces"].square().mean()
        torch.autograd.grad(loss, params)

    step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(f"{args.dtype}: median step {statistics.median(times) * 1e3:.1f} ms over {args.steps}")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
