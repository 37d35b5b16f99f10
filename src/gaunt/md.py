"""Molecular dynamics with any ASE calculator (ASE's integrators): ``run_md`` and its record.

NVE uses velocity Verlet; NVT uses ASE's Langevin thermostat. The record holds the total energy per
atom at every logged step, so the energy drift of NVE (a test of conservative forces and of the
time step) is one subtraction: ``drift = max_t |E(t) - E(0)| / N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import ase
import ase.io
import numpy as np
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet


@dataclass
class MDRecord:
    """Per logged step: time (fs), potential / kinetic / total energy per atom (eV), temperature (K)."""

    time_fs: list[float] = field(default_factory=list)
    potential: list[float] = field(default_factory=list)
    kinetic: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)

    @property
    def max_drift(self) -> float:
        """``max_t |E_tot(t) - E_tot(0)|`` per atom (eV/atom)."""
        return float(np.max(np.abs(np.array(self.total) - self.total[0]))) if self.total else math.nan

    @property
    def drift_rate(self) -> float:
        """Slope of a least-squares line through E_tot(t), eV/atom per ps."""
        if len(self.total) < 2:
            return math.nan
        return float(np.polyfit(np.array(self.time_fs) / 1000.0, self.total, 1)[0])


def run_md(
    atoms: ase.Atoms,
    steps: int,
    timestep_fs: float = 0.5,
    temperature_K: float = 300.0,
    ensemble: str = "nve",
    friction_per_fs: float = 0.01,
    seed: int = 0,
    log_every: int = 10,
    trajectory: str | None = None,
    progress=None,
) -> MDRecord:
    """Run ``steps`` MD steps of ``atoms`` (its calculator must be set); return the :class:`MDRecord`.

    Velocities start from a Maxwell-Boltzmann distribution at ``temperature_K`` (seeded), without
    centre-of-mass motion or rotation. ``ensemble``: "nve" (velocity Verlet) or "langevin" (NVT). Steps
    ``0, log_every, 2 log_every, ...`` and the last step are logged.
    ``trajectory``: an ASE ``.traj`` / ``.xyz`` file to append the logged frames to. ``progress``: a
    callable ``(step, record)`` called at every log.
    """
    _check_md_settings(atoms, steps, timestep_fs, temperature_K, ensemble, friction_per_fs, log_every)
    atoms.get_potential_energy()  # a bad geometry fails here, before any velocities are drawn (the result is cached)
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    else:
        # fixcm=False: ASE deprecates its centre-of-mass fixing in Langevin (not exact NVT sampling)
        dyn = Langevin(
            atoms,
            timestep=dt,
            temperature_K=temperature_K,
            friction=friction_per_fs / units.fs,
            fixcm=False,
            rng=np.random.default_rng(seed + 1),
        )
    record, n = MDRecord(), len(atoms)
    writer = None
    if trajectory is not None:
        from ase.io import Trajectory

        writer = Trajectory(trajectory, "w", atoms) if trajectory.endswith(".traj") else None

    def log() -> None:
        epot, ekin = atoms.get_potential_energy() / n, atoms.get_kinetic_energy() / n
        record.time_fs.append(dyn.nsteps * timestep_fs)
        record.potential.append(epot)
        record.kinetic.append(ekin)
        record.total.append(epot + ekin)
        record.temperature.append(atoms.get_temperature())
        if writer is not None:
            writer.write()
        elif trajectory is not None:
            ase.io.write(trajectory, atoms, append=dyn.nsteps > 0)
        if progress is not None:
            progress(dyn.nsteps, record)

    dyn.attach(log, interval=log_every)
    dyn.run(steps)
    if dyn.nsteps % log_every:  # log the last step too: the record (and the drift) spans every step run
        log()
    if writer is not None:
        writer.close()
    return record


def _check_md_settings(
    atoms: ase.Atoms,
    steps: int,
    timestep_fs: float,
    temperature_K: float,
    ensemble: str,
    friction_per_fs: float,
    log_every: int,
) -> None:
    """``ValueError`` naming the first bad setting (a negative temperature once ended in "positions contain NaN")."""
    if atoms.calc is None:
        raise ValueError("run_md: atoms has no calculator")
    if steps < 1 or not timestep_fs > 0 or log_every < 1:
        raise ValueError(
            f"run_md: need steps >= 1, timestep_fs > 0, log_every >= 1 (got {steps}, {timestep_fs}, {log_every})"
        )
    if not (math.isfinite(temperature_K) and temperature_K >= 0):
        raise ValueError(f"run_md: temperature must be a finite number of kelvin >= 0, got {temperature_K}")
    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"run_md: ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    if ensemble == "langevin" and not (math.isfinite(friction_per_fs) and friction_per_fs > 0):
        raise ValueError(f"run_md: the Langevin friction must be > 0 (1/fs), got {friction_per_fs}")


# ---------------------------------------------------------------------------- command line: gaunt md
def add_md_arguments(parser) -> None:
    """Flags of ``gaunt md``."""
    parser.add_argument("--model", required=True, help="model file written by `gaunt train`")
    parser.add_argument("--configs", required=True, help="structure file (any format ASE reads)")
    parser.add_argument("--index", type=int, default=0, help="which structure of --configs to start from")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (initial velocities; Langevin bath)")
    parser.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--trajectory", default=None, help="write logged frames here (.traj or .xyz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--default_dtype", choices=["float32", "float64"], default=None)


def md_main(args) -> int:
    """Run ``gaunt md`` with parsed ``args``; prints the log and the NVE drift. Every input is checked (device,
    trajectory path, model, the structure at ``--index``) before the first step."""
    from .calculator import GauntCalculator
    from .command import check_device
    from .data import read_atoms
    from .outputs import check_output

    check_device(args.device)
    if args.trajectory is not None:
        check_output(args.trajectory, {"--configs": args.configs, "--model": args.model}, "--trajectory")
    (atoms,) = read_atoms(args.configs, index=args.index)
    atoms.calc = GauntCalculator(args.model, device=args.device, default_dtype=args.default_dtype)
    print(f"{'t (fs)':>9} {'E_pot/N (eV)':>14} {'E_kin/N (eV)':>13} {'E_tot/N (eV)':>14} {'T (K)':>8}")

    def show(step: int, record: MDRecord) -> None:
        print(
            f"{record.time_fs[-1]:>9.1f} {record.potential[-1]:>14.6f} {record.kinetic[-1]:>13.6f} "
            f"{record.total[-1]:>14.6f} {record.temperature[-1]:>8.1f}",
            flush=True,
        )

    record = run_md(
        atoms,
        args.steps,
        timestep_fs=args.timestep,
        temperature_K=args.temperature,
        ensemble=args.ensemble,
        friction_per_fs=args.friction,
        seed=args.seed,
        log_every=args.log_every,
        trajectory=args.trajectory,
        progress=show,
    )
    if args.ensemble == "nve":
        print(
            f"NVE energy drift: max |E_tot(t) - E_tot(0)| = {record.max_drift:.2e} eV/atom over "
            f"{record.time_fs[-1]:.1f} fs ({args.steps} steps; slope {record.drift_rate:.2e} eV/atom/ps)"
        )
    return 0


__all__ = ["run_md", "MDRecord", "add_md_arguments", "md_main"]
