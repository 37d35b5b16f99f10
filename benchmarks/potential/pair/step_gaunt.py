"""gaunt's side of the pair: time a training step (or a calculator call) of a ``GauntPotential``, 1 thread.

    PYTHONPATH=src .venv/bin/python benchmarks/potential/pair/step_gaunt.py step|calc [--dtype float64]
        [--steps 10] [--warmup 2] [--product grid]

step: forward with forces (create_graph), loss = 1 * mean(((E - E_ref) / N)^2) + 100 * mean((F - F_ref)^2),
backward to the parameters (no optimiser step), on the first 5 configurations of 3BPA's train_300K.xyz.
calc: energy + forces of the first configuration through ``GauntCalculator`` (the same model, new positions
at every call). Prints one JSON line (see common.py).
"""

from __future__ import annotations

import torch
from common import (
    ENERGY_WEIGHT,
    FORCES_WEIGHT,
    R_MAX,
    SIZE,
    batch_statistics,
    calculator_calls,
    emit,
    labels,
    parse_args,
    read_batch,
    read_e0s,
    time_calls,
)

from gaunt.calculator import GauntCalculator
from gaunt.data import atoms_to_graph, collate
from gaunt.models import GauntPotential, PotentialConfig


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument("--product", default="grid", help="grid | gaunt | cg"))
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    frames, e0s = read_batch(args.data, args.batch), read_e0s(args.data)
    stats = batch_statistics(frames, e0s)
    config = PotentialConfig(
        atomic_numbers=sorted(e0s),
        r_max=R_MAX,
        product=args.product,
        avg_num_neighbors=stats["avg_num_neighbors"],
        atomic_energies=e0s,
        scale=stats["scale"],
        shift=stats["shift"],
        **SIZE,
    )
    torch.manual_seed(args.seed)
    model = GauntPotential(config).to(dtype)
    result = {
        "code": "gaunt",
        "model": f"GauntPotential(product={args.product})",
        "mode": args.mode,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }
    if args.mode == "calc":
        atoms = frames[0].copy()
        atoms.calc = GauntCalculator(model=model)
        graph = atoms_to_graph(atoms, R_MAX, dtype)
        result.update(atoms=len(atoms), edges=graph.num_edges, calculator="GauntCalculator(model=...)")
        result["times_s"] = calculator_calls(atoms, args.warmup, args.steps)
        emit(result)
        return

    model.train()
    graph = collate([atoms_to_graph(a, R_MAX, dtype) for a in frames])
    energies, sizes, forces = (torch.as_tensor(x, dtype=dtype) for x in labels(frames))
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        out = model(graph)  # training mode: forces with create_graph
        loss = ENERGY_WEIGHT * ((out["energy"] - energies) / sizes).square().mean()
        loss = loss + FORCES_WEIGHT * (out["forces"] - forces).square().mean()
        loss.backward()
        for p in params:
            p.grad = None

    result.update(atoms=graph.num_nodes, edges=graph.num_edges, avg_num_neighbors=stats["avg_num_neighbors"])
    result["times_s"] = time_calls(step, args.warmup, args.steps)
    emit(result)


if __name__ == "__main__":
    main()
