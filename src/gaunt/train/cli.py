"""Command-line front ends: ``add_train_arguments`` / ``run_train`` and ``add_evaluate_arguments`` /
``run_evaluate`` (flag names as in mace-torch's ``mace_run_train`` / ``mace_eval_configs`` where they exist).

``gaunt train`` / ``gaunt evaluate`` (``gaunt.cli``) and ``python -m gaunt.train [evaluate] ...`` call these.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..command import check_device
from .config import DTYPES, FINAL_MODELS, SCHEDULERS, TrainConfig, parse_e0s


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the training flags to ``parser`` (defaults are ``TrainConfig``'s)."""
    d = TrainConfig()
    g = parser.add_argument_group("run")
    g.add_argument("--name", default=d.name, help="run name: file stem of the model, log and checkpoints")
    g.add_argument("--work_dir", default=d.work_dir, help="directory for every output of the run")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="cpu | cuda | cuda:k")
    g.add_argument("--default_dtype", choices=tuple(DTYPES), default=d.default_dtype)
    g.add_argument(
        "--restart_latest",
        "--resume",
        dest="restart_latest",
        action="store_true",
        help="resume from <work_dir>/checkpoints/<name>/last.pt (best.pt if last.pt is unreadable)",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run of this --name in --work_dir (without it, training refuses)",
    )
    g.add_argument(
        "--allow_data_change",
        "--allow-data-change",
        dest="allow_data_change",
        action="store_true",
        help="--resume although a data file's contents changed since the checkpoint",
    )
    g.add_argument("--distributed", action="store_true", help="data-parallel over the processes of torchrun")
    g.add_argument("--find_unused_parameters", action="store_true", help="passed to DistributedDataParallel")
    g.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=d.progress, help="progress bar with the live loss"
    )
    g.add_argument("--plot", action=argparse.BooleanOptionalAction, default=d.plot, help="learning-curve PNG")
    g = parser.add_argument_group("data")
    g.add_argument("--train_file", required=True, help="training configurations (extended XYZ)")
    g.add_argument("--valid_file", default=None, help="validation configurations (default: split the training file)")
    g.add_argument("--valid_fraction", type=float, default=d.valid_fraction)
    g.add_argument("--valid_count", type=int, default=None, help="validation size (overrides --valid_fraction)")
    g.add_argument("--test_file", dest="test_files", action="append", default=[], help="test set (repeatable)")
    g.add_argument(
        "--E0s", default="average", help="isolated | average | file of isolated atoms | '{1: -13.6, 8: -2041.0}'"
    )
    g.add_argument("--energy_key", default=d.energy_key)
    g.add_argument("--forces_key", default=d.forces_key)
    g.add_argument("--stress_key", default=None)
    g = parser.add_argument_group("model")
    g.add_argument("--r_max", type=float, default=d.r_max, help="cutoff radius (Angstrom)")
    g.add_argument("--num_radial_basis", type=int, default=d.num_radial_basis)
    g.add_argument("--num_channels", type=int, default=d.num_channels)
    g.add_argument("--max_L", type=int, default=d.max_L, help="degree of the hidden node features")
    g.add_argument("--max_ell", type=int, default=d.max_ell, help="degree of the edge spherical harmonics")
    g.add_argument("--correlation", type=int, default=d.correlation, help="body order of the many-body product - 1")
    g.add_argument("--num_interactions", type=int, default=d.num_interactions)
    g.add_argument("--product", choices=("cg", "gaunt", "grid", "auto"), default=d.product)
    g.add_argument("--pair_repulsion", action="store_true", help="add the ZBL repulsion at short range (as MACE)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--batch_size", type=int, default=d.batch_size)
    g.add_argument("--valid_batch_size", type=int, default=d.valid_batch_size)
    g.add_argument("--max_num_epochs", type=int, default=d.max_num_epochs)
    g.add_argument("--max_time", type=float, default=None, help="minutes; stop after the epoch that exceeds it")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--weight_decay", type=float, default=d.weight_decay)
    g.add_argument("--amsgrad", action=argparse.BooleanOptionalAction, default=d.amsgrad)
    g.add_argument("--energy_weight", type=float, default=d.energy_weight)
    g.add_argument("--forces_weight", type=float, default=d.forces_weight)
    g.add_argument("--stress_weight", type=float, default=d.stress_weight)
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, default=d.ema, help="EMA of the weights")
    g.add_argument("--ema_decay", type=float, default=d.ema_decay)
    g.add_argument("--clip_grad", type=float, default=d.clip_grad, help="max gradient norm (0 = off)")
    g.add_argument("--scheduler", choices=SCHEDULERS, default=d.scheduler)
    g.add_argument("--lr_factor", type=float, default=d.lr_factor, help="plateau: LR multiplier")
    g.add_argument("--scheduler_patience", type=int, default=d.scheduler_patience, help="plateau: epochs")
    g.add_argument(
        "--final_model",
        choices=FINAL_MODELS,
        default=d.final_model,
        help="save the weights of the best-validation epoch or of the last one",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """``TrainConfig`` from parsed ``add_train_arguments`` flags."""
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["E0s"] = parse_e0s(values["E0s"]) if isinstance(values.get("E0s"), str) else values.get("E0s")
    return TrainConfig(**values)


def run_train(args: argparse.Namespace) -> int:
    """Train from parsed flags; returns the exit code."""
    from .trainer import train

    check_device(args.device)
    train(config_from_args(args))
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags of ``evaluate``: predictions (and errors, where labels exist) of a saved model."""
    parser.add_argument("--model", required=True, help="a model file written by training (<name>.model)")
    parser.add_argument("--configs", required=True, help="configurations to evaluate (extended XYZ)")
    parser.add_argument("--output", default=None, help="extended XYZ with pred_energy / pred_forces added")
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--default_dtype", choices=tuple(DTYPES), default="float64")
    parser.add_argument("--energy_key", default="energy")
    parser.add_argument("--forces_key", default="forces")
    parser.add_argument("--compute_stress", action="store_true", help="also predict the stress (periodic cells)")
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    """Predict with ``--model`` on ``--configs``; print RMSEs where labels exist; write ``--output``.

    Every check (device, output path, model file, configurations) runs before the first prediction."""
    from ..data import read_structures
    from ..models import load_model
    from ..outputs import check_output
    from .report import format_table

    check_device(args.device)
    if args.output:
        check_output(args.output, {"--configs": args.configs, "--model": args.model}, "--output")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    model = load_model(args.model, map_location=args.device).to(dtype=DTYPES[args.default_dtype])
    structures = read_structures(
        args.configs, energy_key=args.energy_key, forces_key=args.forces_key, require_forces=False, require_energy=False
    )
    metrics = _predict_all(model, structures, args)
    print(format_table({Path(args.configs).stem: metrics}))
    if args.output:
        _write_predictions(structures, args)
        print(f"predictions -> {args.output}")
    return 0


def _predict_all(model, structures: list, args: argparse.Namespace) -> dict:
    """Attach ``pred_energy`` / ``pred_forces`` (/ ``pred_stress``) to every structure; returns the metrics."""
    from ..data import AtomicDataset, make_loader
    from .metrics import MetricAccumulator, predict

    dtype = DTYPES[args.default_dtype]
    dataset = AtomicDataset(structures, model.config.r_max, model.config.atomic_numbers)
    accumulator, k = MetricAccumulator(), 0
    for graph in make_loader(dataset, args.batch_size):
        graph = graph.to(args.device, dtype)
        pred = predict(model, graph, compute_forces=True, compute_stress=args.compute_stress)
        accumulator.update(pred, graph)
        forces = pred["forces"].cpu().numpy().astype(np.float64)
        offsets = np.concatenate([[0], np.cumsum(graph.num_atoms.cpu().numpy())])
        for b in range(graph.num_graphs):
            atoms = structures[k + b]
            atoms.info["pred_energy"] = float(pred["energy"][b])
            atoms.arrays["pred_forces"] = forces[offsets[b] : offsets[b + 1]]
            if "stress" in pred:
                atoms.info["pred_stress"] = pred["stress"][b].cpu().numpy().astype(np.float64).reshape(9)
        k += graph.num_graphs
    return accumulator.compute()


def _write_predictions(structures: list, args: argparse.Namespace) -> None:
    """Extended XYZ with the labels back under the names they were read from, plus the predictions."""
    import ase.io

    from ..data.io import ENERGY_LABEL, FORCES_LABEL, SOURCE_LABEL, STRESS_LABEL

    for atoms in structures:
        if ENERGY_LABEL in atoms.info:
            atoms.info[args.energy_key] = atoms.info.pop(ENERGY_LABEL)
        if FORCES_LABEL in atoms.arrays:
            atoms.arrays[args.forces_key] = atoms.arrays.pop(FORCES_LABEL)
        atoms.info.pop(STRESS_LABEL, None)
        atoms.info.pop(SOURCE_LABEL, None)
    ase.io.write(args.output, structures, format="extxyz")


def main(argv: list[str] | None = None) -> int:
    """``python -m gaunt.train [train flags]`` or ``python -m gaunt.train evaluate [evaluate flags]``."""
    import sys

    from ..command import add_debug_flag, run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":
        parser = add_evaluate_arguments(add_debug_flag(argparse.ArgumentParser(prog="python -m gaunt.train evaluate")))
        return run_command("evaluate", run_evaluate, parser.parse_args(argv[1:]))
    if argv and argv[0] == "train":
        argv = argv[1:]
    parser = add_train_arguments(add_debug_flag(argparse.ArgumentParser(prog="python -m gaunt.train")))
    return run_command("train", run_train, parser.parse_args(argv))


__all__ = [
    "add_train_arguments",
    "run_train",
    "add_evaluate_arguments",
    "run_evaluate",
    "config_from_args",
    "check_device",
    "main",
]
