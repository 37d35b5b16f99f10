"""mace-torch's side of the pair: time a training step (or a calculator call) of mace's ``ScaleShiftMACE``, 1 thread.

    .venv-mace/bin/python benchmarks/potential/pair/step_mace.py step|calc [--dtype float64]
        [--steps 10] [--warmup 2] [--model ScaleShiftMACE]

The model is built the way ``mace_run_train`` builds it: mace's own argument parser reads the flags of
``run_mace.sh`` (so every other hyper-parameter is mace's default), ``check_args`` derives the hidden irreps
and ``configure_model`` builds the model, with mean / std / avg_num_neighbors of the batch given (the same
numbers as gaunt's side, common.py). Same batch, same loss, same step as step_gaunt.py: forward with forces
(``training=True``: create_graph), loss = 1 * mean(((E - E_ref) / N)^2) + 100 * mean((F - F_ref)^2), backward to
the parameters (no optimiser step). calc: ``mace.calculators.MACECalculator(models=model)`` on the first
configuration (the model object, not a saved file); it computes the stress as well, even for a molecule, so
``--no-calc-stress`` times the same path (mace's graph of the atoms, then the model) with compute_stress=False,
which is what gaunt's calculator computes. Prints one JSON line (see common.py).
"""

from __future__ import annotations

import logging
import tempfile

import numpy as np
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


def build_model(model_name: str, dtype: str, e0s: dict[int, float], stats: dict, seed: int, work_dir: str):
    from mace import tools
    from mace.tools.model_script_utils import configure_model

    flags = ["--name", "pair", "--work_dir", work_dir, "--train_file", "unused.xyz", "--seed", str(seed)]
    flags += ["--device", "cpu", "--default_dtype", dtype, "--E0s", repr(e0s)]
    flags += ["--model", model_name, "--interaction_first", "RealAgnosticInteractionBlock"]
    flags += ["--r_max", str(R_MAX), "--num_cutoff_basis", "5", "--batch_size", "5"]
    flags += ["--loss", "weighted", "--energy_weight", str(ENERGY_WEIGHT), "--forces_weight", str(FORCES_WEIGHT)]
    for name, value in SIZE.items():
        flags += [f"--{name}", str(value)]
    args, _ = tools.check_args(tools.build_default_arg_parser().parse_args(flags))
    # what run_train sets before configure_model for an energy + forces model
    args.compute_energy, args.compute_forces = True, True
    args.compute_dipole = args.compute_polarizability = False
    args.mean, args.std, args.avg_num_neighbors = stats["shift"], stats["scale"], stats["avg_num_neighbors"]
    zs = sorted(e0s)
    atomic_energies = np.array([[e0s[z] for z in zs]])  # [heads, elements], as run_train's dict_to_array
    tools.set_seeds(seed)
    model, _ = configure_model(args, None, atomic_energies, None, ["Default"], tools.AtomicNumberTable(zs), None)
    return model, args


def main() -> None:
    def extra(parser) -> None:
        parser.add_argument("--model", default="ScaleShiftMACE", help="or MACE (shift 0)")
        parser.add_argument(
            "--no-calc-stress",
            dest="calc_stress",
            action="store_false",
            help="calc: call the model with compute_stress=False instead of through MACECalculator",
        )

    args = parse_args(__doc__, extra)
    logging.disable(logging.WARNING)  # configure_model logs its settings; keep stdout to the one JSON line
    torch.set_num_threads(1)
    import mace
    from mace import data, tools
    from mace.tools import torch_geometric

    tools.set_default_dtype(args.dtype)
    dtype = getattr(torch, args.dtype)
    frames, e0s = read_batch(args.data, args.batch), read_e0s(args.data)
    stats = batch_statistics(frames, e0s)
    with tempfile.TemporaryDirectory() as work_dir:
        model, margs = build_model(args.model, args.dtype, e0s, stats, args.seed, work_dir)
    model = model.to(dtype)
    result = {
        "code": "mace",
        "model": f"{type(model).__name__} (mace-torch {mace.__version__})",
        "mode": args.mode,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "hidden_irreps": str(margs.hidden_irreps),
    }
    if args.mode == "calc":
        from mace.calculators import MACECalculator

        atoms = frames[0].copy()
        calc = MACECalculator(models=model, device="cpu", default_dtype=args.dtype)
        edges = batch_statistics([atoms], e0s)["edges"]  # ase's neighbour list, the one mace's calculator uses
        result.update(atoms=len(atoms), edges=edges)
        if args.calc_stress:  # MACECalculator as shipped: it always asks the model for the stress too
            atoms.calc = calc
            result["calculator"] = "MACECalculator(models=model)"
            result["times_s"] = calculator_calls(atoms, args.warmup, args.steps)
        else:  # what the calculator does, less the stress: mace's graph of the atoms, model(compute_stress=False)
            z_table = tools.AtomicNumberTable(sorted(e0s))

            def call() -> None:
                atoms.positions[0, 0] += 1e-4
                graph = data.AtomicData.from_config(data.config_from_atoms(atoms), z_table=z_table, cutoff=R_MAX)
                batch = torch_geometric.batch.Batch.from_data_list([graph])
                out = model(batch.to_dict(), compute_stress=False, training=False)
                out["forces"].detach().numpy()

            result["calculator"] = "model(compute_stress=False) on mace's graph of the atoms"
            result["times_s"] = time_calls(call, args.warmup, args.steps)
        emit(result)
        return

    model.train()
    z_table = tools.AtomicNumberTable(sorted(e0s))
    keys = data.KeySpecification(info_keys={"energy": "REF_energy"}, arrays_keys={"forces": "REF_forces"})
    dataset = [
        data.AtomicData.from_config(data.config_from_atoms(a, key_specification=keys), z_table=z_table, cutoff=R_MAX)
        for a in frames
    ]
    loader = torch_geometric.dataloader.DataLoader(dataset, batch_size=len(dataset), shuffle=False, drop_last=False)
    batch = next(iter(loader))
    energies, sizes, forces = (torch.as_tensor(x, dtype=dtype) for x in labels(frames))
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        out = model(batch.to_dict(), training=True, compute_force=True)
        loss = ENERGY_WEIGHT * ((out["energy"] - energies) / sizes).square().mean()
        loss = loss + FORCES_WEIGHT * (out["forces"] - forces).square().mean()
        loss.backward()
        for p in params:
            p.grad = None

    result.update(atoms=int(batch.num_nodes), edges=int(batch.edge_index.shape[1]))
    result["avg_num_neighbors"] = float(model.interactions[0].avg_num_neighbors)
    result["times_s"] = time_calls(step, args.warmup, args.steps)
    emit(result)


if __name__ == "__main__":
    main()
