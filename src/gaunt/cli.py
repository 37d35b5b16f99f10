"""Command line: ``gaunt demo`` (a tour of the math and the products), ``gaunt quickstart`` (the main
job: EMT data -> train -> evaluate -> MD), ``gaunt train`` / ``gaunt evaluate`` / ``gaunt md`` (the
potential, flags as in mace-torch), ``gaunt check`` (equivariance and gradient checks of every product
and layer), ``gaunt bench`` (against e3nn computing the same function).

A user error (a bad flag value, a missing or unreadable file, an earlier run in the way) ends ``train``,
``evaluate``, ``md`` and ``quickstart`` with one line ``gaunt <command>: error: <message>`` on stderr and exit
status 2, as argparse does for a bad flag; ``--debug`` shows the traceback instead. Ctrl-C exits with 130.
Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .command import add_debug_flag, run_command


def _math_demo() -> None:
    from . import so3

    torch.manual_seed(0)
    print("gaunt.so3 -- exact SO(3) mathematics in float64 (e3nn's basis and conventions)\n")
    x = torch.randn(1000, 3, dtype=torch.float64)
    R = so3.random_rotation(dtype=torch.float64)
    print(f"{'L':>3} {'max |Y(Rx) - D(R) Y(x)|':>26} {'max |D D^T - I|':>17}")
    for lmax in (2, 8, 16, 32):
        y, y_rot = so3.spherical_harmonics(lmax, x), so3.spherical_harmonics(lmax, x @ R.T)
        err, orth = 0.0, 0.0
        for l in range(lmax + 1):
            d = so3.wigner_d(l, R)
            block = slice(l * l, (l + 1) ** 2)
            err = max(err, float((y_rot[:, block] - y[:, block] @ d.T).abs().max()))
            orth = max(orth, float((d @ d.T - torch.eye(2 * l + 1, dtype=d.dtype)).abs().max()))
        print(f"{lmax:>3} {err:>26.2e} {orth:>17.2e}")

    print("\nGaunt coefficients = CG x (one number per path), zero when l1 + l2 + l3 is odd:")
    print(f"{'path':>14} {'|CG|':>6} {'|Gaunt|':>9}")
    for l1, l2, l3 in [(1, 1, 0), (1, 1, 1), (1, 1, 2), (2, 1, 2), (2, 2, 2), (3, 2, 4)]:
        cg, g = so3.clebsch_gordan(l1, l2, l3), so3.gaunt_coefficients(l1, l2, l3)
        print(f"{f'{l1} x {l2} -> {l3}':>14} {float(cg.norm()):>6.3f} {float(g.norm()):>9.4f}")
    print("  (1 x 1 -> 1 is the cross product: present in CG, absent from every Gaunt product)")

    print("\nSH -> 2D Fourier (sparse, O(L^3)) -> 2D convolution (FFT) -> SH equals the Gaunt contraction:")
    for l1, l2 in [(2, 3), (6, 6), (10, 8)]:
        a = torch.randn((l1 + 1) ** 2, dtype=torch.float64)
        b = torch.randn((l2 + 1) ** 2, dtype=torch.float64)
        start = time.perf_counter()
        f1, f2 = so3.sh_to_fourier(a, l1), so3.sh_to_fourier(b, l2)
        size = f1.shape[-1] + f2.shape[-1] - 1
        prod = torch.fft.ifft2(torch.fft.fft2(f1, (size, size)) * torch.fft.fft2(f2, (size, size)))
        out = so3.fourier_to_sh(prod, l1 + l2)
        elapsed = time.perf_counter() - start
        ref = torch.zeros_like(out)
        for i in range(l1 + 1):
            for j in range(l2 + 1):
                for k in range(abs(i - j), i + j + 1):
                    ref[k * k : (k + 1) ** 2] += torch.einsum(
                        "a,b,abc->c", a[i * i : (i + 1) ** 2], b[j * j : (j + 1) ** 2], so3.gaunt_coefficients(i, j, k)
                    )
        err = float((out - ref).abs().max() / ref.abs().max())
        print(f"  L1 = {l1:>2}, L2 = {l2:>2}: relative error {err:.1e}  ({elapsed * 1e3:.1f} ms)")


def _products_demo() -> None:
    try:
        from .products import demo_table
    except ImportError:
        return
    print()
    demo_table()


def _potential_command(args: argparse.Namespace) -> int:
    """Dispatch ``quickstart`` / ``train`` / ``evaluate`` / ``md`` (imports deferred: ``gaunt demo`` stays light)."""
    if args.command == "quickstart":
        from .quickstart import quickstart_main

        return quickstart_main(args)
    if args.command == "md":
        from .md import md_main

        return md_main(args)
    from .train.cli import run_evaluate, run_train

    return run_train(args) if args.command == "train" else run_evaluate(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaunt", description="Fast E(3)-equivariant tensor products.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="tour of the exact math and the products")
    from .md import add_md_arguments
    from .quickstart import add_quickstart_arguments
    from .train.cli import add_evaluate_arguments, add_train_arguments

    for name, add, text in (
        ("quickstart", add_quickstart_arguments, "main job: EMT data, train a model, evaluate, run MD"),
        ("train", add_train_arguments, "train a potential on energies and forces (extended XYZ)"),
        ("evaluate", add_evaluate_arguments, "evaluate a trained model on configurations"),
        ("md", add_md_arguments, "molecular dynamics with a trained model (ASE)"),
    ):
        add(add_debug_flag(sub.add_parser(name, help=text)))
    sub.add_parser("check", help="equivariance and gradient checks of every product and layer", add_help=False)
    sub.add_parser("bench", help="benchmark the products against e3nn computing the same function", add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("quickstart", "train", "evaluate", "md"):
        args = parser.parse_args(argv)
        return run_command(args.command, _potential_command, args)
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        _math_demo()
        _products_demo()
        return 0
    if args.command == "check":
        from .checks import main as check_main

        return check_main(rest)
    from .bench import main as bench_main

    return bench_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
