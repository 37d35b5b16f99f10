"""Median wall time of energy + forces of the untrained calculator on one 3BPA molecule (1 torch thread).

PYTHONPATH=<tree>/src python benchmarks/refactor/calculator.py [float64|float32] [repeats]
"""

import statistics
import sys
import time
from pathlib import Path

import ase.io
import torch

from gaunt.calculator import GauntCalculator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "3bpa" / "train_300K.xyz"


def main() -> None:
    dtype, repeats = (sys.argv[1] if len(sys.argv) > 1 else "float64"), int(sys.argv[2] if len(sys.argv) > 2 else 20)
    torch.set_num_threads(1)
    atoms = ase.io.read(DATA, index=0)
    atoms.calc = GauntCalculator.untrained(["H", "C", "N", "O"], dtype=dtype)
    times = []
    for i in range(repeats + 2):
        atoms.positions[0, 0] += 1e-4  # new positions: no cached result
        start = time.perf_counter()
        atoms.get_forces()
        if i >= 2:
            times.append(time.perf_counter() - start)
    print(f"{dtype}: {statistics.median(times) * 1e3:.1f} ms per energy + forces ({len(atoms)} atoms)")


if __name__ == "__main__":
    main()
