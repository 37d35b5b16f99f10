"""Energy and force errors of predictions stored in extended-XYZ files (ase only).

Each file holds reference labels and predictions side by side, as ``mace_eval_configs`` writes them
when its input carries ``REF_energy``/``REF_forces``: ``info[REF_energy]`` and ``info[MACE_energy]``
(eV, total), ``arrays[REF_forces]`` and ``arrays[MACE_forces]`` ([N, 3], eV/A). The keys can be changed,
so the same script scores any code that writes its predictions under another prefix.

Reported per file:
  E RMSE (meV/atom) = 1000 * sqrt(mean over configs of ((E_pred - E_ref) / n_atoms)^2)
  F RMSE (meV/A)    = 1000 * sqrt(mean over all atoms and all 3 components of (F_pred - F_ref)^2)
(the definitions of mace's PerAtomRMSE table, so the numbers compare with its logs).

usage: python benchmarks/potential/rmse.py EVAL.xyz [EVAL2.xyz ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import ase.io
import numpy as np


def errors(path: str | Path, ref_prefix: str = "REF_", pred_prefix: str = "MACE_") -> dict:
    """RMSEs for one file.

    Returns ``{"file", "configs", "atoms", "e_rmse_mev_per_atom", "f_rmse_mev_per_a",
    "e_mae_mev_per_atom", "f_mae_mev_per_a"}``.
    Raises ``ValueError`` naming the file and config index when a key is missing or shapes disagree.
    """
    frames = ase.io.read(path, index=":")
    if not frames:
        raise ValueError(f"{path}: no configurations")
    de, df = [], []
    for i, atoms in enumerate(frames):
        try:
            e_ref, e_pred = atoms.info[ref_prefix + "energy"], atoms.info[pred_prefix + "energy"]
            f_ref, f_pred = atoms.arrays[ref_prefix + "forces"], atoms.arrays[pred_prefix + "forces"]
        except KeyError as err:
            raise ValueError(
                f"{path} config {i}: missing key {err} (have info {sorted(atoms.info)}, arrays {sorted(atoms.arrays)})"
            ) from None
        if np.shape(f_ref) != np.shape(f_pred) or np.shape(f_ref) != (len(atoms), 3):
            raise ValueError(f"{path} config {i}: force shapes {np.shape(f_ref)} vs {np.shape(f_pred)}")
        de.append((float(e_pred) - float(e_ref)) / len(atoms))
        df.append(np.asarray(f_pred, dtype=np.float64) - np.asarray(f_ref, dtype=np.float64))
    de_arr = np.asarray(de)
    df_arr = np.concatenate(df).ravel()
    return {
        "file": str(path),
        "configs": len(frames),
        "atoms": int(sum(len(a) for a in frames)),
        "e_rmse_mev_per_atom": 1000.0 * float(np.sqrt(np.mean(de_arr**2))),
        "f_rmse_mev_per_a": 1000.0 * float(np.sqrt(np.mean(df_arr**2))),
        "e_mae_mev_per_atom": 1000.0 * float(np.mean(np.abs(de_arr))),
        "f_mae_mev_per_a": 1000.0 * float(np.mean(np.abs(df_arr))),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="E/F RMSE of predictions in extended-XYZ files")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--ref-prefix", default="REF_", help="prefix of the reference keys (default REF_)")
    p.add_argument("--pred-prefix", default="MACE_", help="prefix of the predicted keys (default MACE_)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    rows = [errors(f, args.ref_prefix, args.pred_prefix) for f in args.files]
    print(f"{'file':40s} {'configs':>7s} {'E RMSE meV/atom':>16s} {'F RMSE meV/A':>13s}")
    for r in rows:
        print(
            f"{Path(r['file']).name:40s} {r['configs']:7d} {r['e_rmse_mev_per_atom']:16.2f} "
            f"{r['f_rmse_mev_per_a']:13.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
