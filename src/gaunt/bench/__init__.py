"""``gaunt bench``: every product timed against e3nn computing the same function.

Usage (``gaunt bench --help`` lists every option)::

    gaunt bench --quick                    # total budget 110 s: L in {1,2,4,6}, 16 channels, batch 1000,
                                           # float32, fwd+bwd, both shapes, all products, e3nn + CGProduct
    gaunt bench --headline --out benchmarks  # the headline configuration: feature shape, 64 channels,
                                           # batch 10000, float32, fwd+bwd, L = 1..16
    gaunt bench                            # the full sweep: L 1..16, channels 1/16/64/128,
                                           # batch 1e3/1e4/1e5, float32/float64, fwd and fwd+bwd
    gaunt bench --layers                   # the layers: convolution (1000 nodes, 16k edges, 32 channels)
                                           # and many-body (1000 atoms, 64 channels, nu = 3) with every
                                           # product vs their CG versions (and e3nn), L = 2, 4, 6
    gaunt bench --layers --quick           # the same, small (L = 2, 4; total budget 110 s)

``--layers`` takes its own options (``gaunt bench --layers --help``; ``gaunt.bench.points_layers``).
Both run on one engine (``gaunt.bench.engine``) with a point generator each (``points_products``,
``points_layers``).

Options (a preset first, then any explicit option overrides it):

    --shapes feature edge      --L 1-16 | 1,2,4,6       --channels 16 64     --batch 1000 10000
    --dtype float32 float64    --direction fwd fwd+bwd   --products NAME...   --peers e3nn CGProduct ...
    --device cpu|cuda          --out DIR (results.json, summary.md, PNG plots; default bench-results)
    --point-budget S (60)      --build-budget S (120: e3nn construction)      --total-budget S (none)
    --memory-budget GIB (8)    --min-time S (1)          --min-repeats N (3)  --threads N
    --plot-channels N --plot-batch N (default 64 / 10000 when swept)          --no-plots
    --untimed NAME...  (check agreement against it, never time it)
    --report A.json B.json ... (no run: merge saved results -- a later run's timed point replaces an
                                earlier skipped one -- then write the summary, plots and merged JSON)

``--quick`` also sets point budget 10 s, e3nn build budget 20 s, 0.2 s timed per point and a total
budget of 110 s. On a shared machine prefer ``--threads 1``: with more threads than free cores every
parallel op waits for a descheduled thread and the times mean little.

Writes ``DIR/results.json`` (schema ``gaunt-bench/1``: config, machine, one record per point, fits),
``DIR/summary.md`` (tables, exponents, targets) and ``DIR/time_vs_L_*.png``; prints rich tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .budget import GiB
from .engine import DIRECTIONS, DTYPES
from .points_products import ProductConfig
from .products import PEERS, SHAPES, benched_products

QUICK = dict(
    Ls=(1, 2, 4, 6),
    channels=(16,),
    batches=(1000,),
    dtypes=("float32",),
    directions=("fwd+bwd",),
    point_budget_s=10.0,
    build_budget_s=20.0,
    min_time_s=0.2,
    total_budget_s=110.0,
)
HEADLINE = dict(
    shapes=("feature",),
    Ls=tuple(range(1, 17)),
    channels=(64,),
    batches=(10000,),
    dtypes=("float32",),
    directions=("fwd+bwd",),
)
LAYERS_QUICK = dict(
    Ls=(2, 4),
    conv_channels=16,
    nodes=200,
    edges=3200,
    many_body_channels=16,
    atoms=200,
    point_budget_s=10.0,
    build_budget_s=30.0,
    min_time_s=0.2,
    total_budget_s=110.0,
)


def parse_L(spec: str) -> tuple[int, ...]:
    """``"1-16"``, ``"1,2,4,6"`` or a mix (``"1-4,8,16"``) -> sorted degrees."""
    out: set[int] = set()
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.update(range(int(lo), int(hi) + 1))
        elif part.strip():
            out.add(int(part))
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"bad L specification {spec!r}")
    return tuple(sorted(out))


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Device, budgets, repeats, threads and seed: the options every ``gaunt bench`` mode shares."""
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--point-budget", type=float, help="seconds per point (predicted calls x min repeats)")
    p.add_argument("--build-budget", type=float, help="seconds for one e3nn construction (predicted)")
    p.add_argument("--total-budget", type=float, help="seconds for the whole run (then the rest is skipped)")
    p.add_argument("--memory-budget", type=float, help="GiB per call (default 8; above it a call runs in chunks)")
    p.add_argument("--min-time", type=float, help="timed seconds per point (default 1)")
    p.add_argument("--min-repeats", type=int, help="timed calls per point (default 3)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--seed", type=int)


def run_values(args: argparse.Namespace) -> dict:
    """The config values of the shared options (``add_run_arguments``) that were given."""
    memory = None if args.memory_budget is None else int(args.memory_budget * GiB)
    return dict(
        device=args.device,
        point_budget_s=args.point_budget,
        build_budget_s=args.build_budget,
        total_budget_s=args.total_budget,
        min_time_s=args.min_time,
        min_repeats=args.min_repeats,
        seed=args.seed,
        memory_budget_bytes=memory,
    )


def _values(preset: dict, explicit: dict) -> dict:
    """A preset, overridden by the options that were given (lists as tuples)."""
    values = dict(preset)
    values.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in explicit.items() if v is not None})
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gaunt bench", description="Time every product against e3nn computing the same function."
    )
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="short run (total budget 110 s); part of the main job")
    preset.add_argument("--headline", action="store_true", help="feature, 64 ch, batch 1e4, float32, fwd+bwd, L 1..16")
    preset.add_argument(
        "--layers", action="store_true", help="benchmark the layers instead (own options: gaunt bench --layers --help)"
    )
    p.add_argument("--shapes", nargs="+", choices=SHAPES)
    p.add_argument("--L", type=parse_L, help="degrees: '1-16' or '1,2,4,6'")
    p.add_argument("--channels", nargs="+", type=int)
    p.add_argument("--batch", nargs="+", type=lambda s: int(float(s)), help="batch sizes (1e4 accepted)")
    p.add_argument("--dtype", nargs="+", choices=tuple(DTYPES))
    p.add_argument("--direction", nargs="+", choices=DIRECTIONS)
    p.add_argument("--products", nargs="+", choices=sorted({n for v in benched_products().values() for n in v}))
    p.add_argument("--peers", nargs="+", choices=PEERS)
    p.add_argument("--out", default="bench-results", help="output directory")
    add_run_arguments(p)
    p.add_argument("--plot-channels", type=int)
    p.add_argument("--plot-batch", type=int)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--untimed", nargs="+", default=None, help="implementations used for the agreement check only")
    p.add_argument("--report", nargs="+", metavar="JSON", help="no run: merge these results files and report them")
    return p


def config_from_args(args: argparse.Namespace) -> ProductConfig:
    explicit = dict(
        shapes=args.shapes,
        Ls=args.L,
        channels=args.channels,
        batches=args.batch,
        dtypes=args.dtype,
        directions=args.direction,
        products=args.products,
        peers=args.peers,
        untimed=args.untimed,
        **run_values(args),
    )
    return ProductConfig(**_values(QUICK if args.quick else HEADLINE if args.headline else {}, explicit))


def build_layers_parser() -> argparse.ArgumentParser:
    from .layers import CONVOLUTION_IMPLEMENTATIONS, LAYERS, MANY_BODY_IMPLEMENTATIONS

    p = argparse.ArgumentParser(
        prog="gaunt bench --layers",
        description="Time the convolution and many-body layers "
        "with every product against their CG versions (and e3nn) computing the same function.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, L = 2, 4 (total budget 110 s)")
    p.add_argument("--layer", nargs="+", choices=LAYERS, dest="layers")
    p.add_argument("--L", type=parse_L, help="degrees: '2,4,6' or '1-6'")
    p.add_argument("--conv-channels", type=int)
    p.add_argument("--nodes", type=int)
    p.add_argument("--edges", type=int)
    p.add_argument("--many-body-channels", type=int)
    p.add_argument("--atoms", type=int)
    p.add_argument("--correlation", type=int)
    p.add_argument("--conv-products", nargs="+", choices=CONVOLUTION_IMPLEMENTATIONS)
    p.add_argument("--many-body-products", nargs="+", choices=MANY_BODY_IMPLEMENTATIONS)
    p.add_argument("--dtype", choices=tuple(DTYPES))
    p.add_argument("--direction", choices=DIRECTIONS)
    p.add_argument("--out", default="bench-layers", help="output directory")
    add_run_arguments(p)
    p.add_argument("--no-plots", action="store_true")
    return p


def layers_main(argv: list[str]) -> int:
    """``gaunt bench --layers [options]`` (``build_layers_parser``); writes results.json, summary.md, PNGs."""
    args = build_layers_parser().parse_args(argv)
    import torch

    from .layer_report import print_summary, write_outputs
    from .points_layers import LayerConfig, LayerPoints

    if args.threads:
        torch.set_num_threads(args.threads)
    explicit = dict(
        layers=args.layers,
        Ls=args.L,
        conv_channels=args.conv_channels,
        nodes=args.nodes,
        edges=args.edges,
        many_body_channels=args.many_body_channels,
        atoms=args.atoms,
        correlation=args.correlation,
        conv_products=args.conv_products,
        many_body_products=args.many_body_products,
        dtype=args.dtype,
        direction=args.direction,
        **run_values(args),
    )
    config = LayerConfig(**_values(LAYERS_QUICK if args.quick else {}, explicit))
    if not _device_ok(config.device, "gaunt bench --layers"):
        return 2
    command = "gaunt bench --layers " + " ".join(argv)
    print(
        f"{command}: layers {list(config.layers)}, L={list(config.Ls)}, {config.dtype} {config.direction}, "
        f"device={config.device}, {torch.get_num_threads()} thread(s)"
    )
    results = _sweep(LayerPoints(config), args.out, command)
    paths = write_outputs(results, args.out, plots=not args.no_plots)
    print_summary(results)
    print(f"written: {', '.join(paths)} ({results['elapsed_s']:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gaunt bench`` (options in the module docstring / ``--help``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--layers" in argv:
        return layers_main([a for a in argv if a != "--layers"])
    args = build_parser().parse_args(argv)
    import torch

    from .points_products import ProductPoints
    from .report import markdown_report, print_report
    from .results import load, merge_results, write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    if not _device_ok(config.device, "gaunt bench"):
        return 2
    os.makedirs(args.out, exist_ok=True)
    if args.report:
        results = merge_results([load(path) for path in args.report])
    else:
        print(
            f"gaunt bench: {len(config.shapes)} shape(s), L={list(config.Ls)}, channels={list(config.channels)}, "
            f"batch={list(config.batches)}, {list(config.dtypes)}, {list(config.directions)}, device={config.device}, "
            f"{torch.get_num_threads()} thread(s)"
        )
        results = _sweep(ProductPoints(config), args.out, "gaunt bench " + " ".join(argv))
    write_json(results, args.out)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(f"`{results['command']}` ({time.strftime('%Y-%m-%d')}, {results['elapsed_s']:.0f} s)\n\n")
        f.write(markdown_report(results))
    print_report(results)
    if not args.no_plots:
        try:
            from .plots import plot_results

            paths = plot_results(results, args.out, args.plot_channels, args.plot_batch)
            print(f"plots: {', '.join(paths)}")
        except ImportError as exc:
            print(f"plots skipped: matplotlib is not installed ({exc})")
    print(f"results: {os.path.join(args.out, 'results.json')} ({results['elapsed_s']:.0f} s)")
    return 0


def _device_ok(device: str, prog: str) -> bool:
    import torch

    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        print(f"{prog}: --device cuda requested but CUDA is not available", file=sys.stderr)
        return False
    return True


def _sweep(points, out: str, command: str) -> dict:
    """Run ``points`` through the engine, checkpointing ``out/results.json`` (``partial``) after every group."""
    from .engine import Sweep
    from .results import write_json

    os.makedirs(out, exist_ok=True)
    checkpoint = lambda partial: write_json(dict(partial, command=command, partial=True), out)  # noqa: E731
    results = Sweep(points, checkpoint=checkpoint).run()
    results["command"] = command
    return results


__all__ = [
    "main",
    "layers_main",
    "build_parser",
    "build_layers_parser",
    "config_from_args",
    "parse_L",
    "QUICK",
    "HEADLINE",
    "LAYERS_QUICK",
]
