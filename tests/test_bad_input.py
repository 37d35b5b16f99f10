"""Bad input, as a new user would give it, against the API and the command line: one table.

API cases assert the exception type and that its message names the problem. CLI cases run ``gaunt.cli.main``
in-process and assert exit status 2, exactly one line on stderr ``gaunt <command>: error: ...`` naming the
problem, and that no input file changed (SHA-256 of every file outside the case's run directory, before
and after). Every case fails before any training or prediction, so the table runs in seconds.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT

from gaunt.calculator import GauntCalculator
from gaunt.cli import main
from gaunt.data import AtomicGraph, atoms_to_graph, read_structures
from gaunt.md import run_md
from gaunt.models import PotentialConfig, load_model, save_model
from gaunt.train import CheckpointManager, TrainConfig, train

OCTAHEDRON = 1.8 * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
TINY = dict(
    name="tiny",
    valid_count=4,
    E0s="isolated",
    energy_key="REF_energy",
    forces_key="REF_forces",
    r_max=4.0,
    num_radial_basis=4,
    num_channels=4,
    max_L=1,
    max_ell=1,
    correlation=2,
    num_interactions=1,
    batch_size=4,
    valid_batch_size=8,
    max_num_epochs=1,
    lr=0.02,
    seed=7,
    progress=False,
    plot=False,
)


def clusters(n: int, seed: int, isolated: bool = True) -> list[ase.Atoms]:
    """``n`` distorted 6-atom Cu/Au octahedra with EMT labels under REF_* keys (+ one isolated atom each)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        symbols = ["Au" if rng.random() < 0.3 else "Cu" for _ in range(6)]
        out.append(ase.Atoms(symbols, positions=OCTAHEDRON + rng.normal(scale=0.12, size=(6, 3))))
    if isolated:
        for symbol in ("Cu", "Au"):
            out.append(ase.Atoms(symbol, positions=[[0.0, 0.0, 0.0]], info={"config_type": "IsolatedAtom"}))
    for atoms in out:
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
    return out


@dataclass
class Workspace:
    """Shared inputs (never written by a case) and one trained tiny run."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        return self.root / FILES[name]


FILES = dict(
    train="train.xyz",
    test="test.xyz",
    trunc="trunc.xyz",
    csv="data.csv",
    csv_xyz="csv_as.xyz",
    binary="binary.xyz",
    nolabel="nolabel.xyz",
    empty="empty.xyz",
    silver="silver.xyz",
    close="close.xyz",
    tiny_cell="tiny_cell.xyz",
    coincident="coincident.xyz",
    run="run0",
    model="run0/tiny.model",
    last="run0/checkpoints/tiny/last.pt",
    model_trunc="trunc.model",
    model_garbage="garbage.model",
    model_empty="empty.model",
    model_pickled="pickled.model",
    cu_model="cu.model",
    cu_start="cu_start.xyz",
    stress_model="stress_flags.json",
)


def build_workspace(root: Path) -> Workspace:
    """Write every input file of the table into ``root`` and train the tiny run ``root/run0`` (1 epoch)."""
    ws = Workspace(root)
    ase.io.write(ws.train, clusters(16, seed=0), format="extxyz")
    ase.io.write(ws.test, clusters(4, seed=1, isolated=False), format="extxyz")
    lines = ws.train.read_text().splitlines(keepends=True)
    ws.trunc.write_text("".join(lines[: 8 * 5 + 5]))  # 5 whole configurations, then half of the 6th
    ws.csv.write_text("energy,x,y,z\n-1.0,0,0,0\n")
    ws.csv_xyz.write_text("energy,x,y,z\n-1.0,0,0,0\n")
    ws.binary.write_bytes(bytes(range(256)) * 4)
    ase.io.write(ws.nolabel, ase.Atoms("Cu6", positions=OCTAHEDRON), format="extxyz")  # no labels at all
    ws.empty.write_text("")
    silver = clusters(2, seed=3, isolated=False)
    silver[1].symbols[0] = "Ag"
    ase.io.write(ws.silver, silver, format="extxyz")
    close = clusters(12, seed=4)
    close[7].positions[1] = close[7].positions[0] + [0.05, 0.0, 0.0]  # config 7 of the file: two atoms 0.05 A apart
    ase.io.write(ws.close, close, format="extxyz")
    ase.io.write(ws.tiny_cell, ase.Atoms("Cu", positions=[[0, 0, 0]], cell=[0.5, 0.5, 0.5], pbc=True), format="extxyz")
    ase.io.write(ws.coincident, ase.Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]]), format="extxyz")
    train(TrainConfig(train_file=str(ws.train), work_dir=str(ws.run), **TINY))
    data = ws.model.read_bytes()
    ws.model_trunc.write_bytes(data[: len(data) // 2])
    ws.model_garbage.write_bytes(b"garbage " * 64)
    ws.model_empty.write_bytes(b"")
    torch.save({"module": torch.nn.Linear(2, 2)}, ws.model_pickled)  # pickled classes: weights_only refuses
    cu = GauntCalculator.untrained(["Cu"], num_channels=4, max_ell=1, r_max=4.0, radial_hidden=[8])
    save_model(cu.model, ws.cu_model)
    ase.io.write(ws.cu_start, [ase.Atoms("Cu2", positions=[[0, 0, 0], [2.4, 0, 0]])] * 4, format="extxyz")
    return ws


def tiny_args(ws: Workspace, d: Path, *extra: str, train_file: Path | None = None) -> list[str]:
    """``gaunt train`` of the tiny run into ``d/run`` with ``extra`` flags (later flags win)."""
    argv = [
        "train",
        "--train_file",
        str(train_file or ws.train),
        "--work_dir",
        str(d / "run"),
        "--no-progress",
        "--no-plot",
    ]
    for key, value in TINY.items():
        if key not in ("progress", "plot"):
            argv += [f"--{key}", str(value)]
    return argv + list(extra)


def trained_copy(ws: Workspace, d: Path) -> Path:
    """A run of 1 epoch in ``d/run`` on ``d/train.xyz`` (a copy the case may change); returns the copy."""
    data = d / "train.xyz"
    shutil.copy(ws.train, data)
    train(TrainConfig(train_file=str(data), work_dir=str(d / "run"), **TINY))
    return data


def change_data_then_resume(ws: Workspace, d: Path) -> list[str]:
    data = trained_copy(ws, d)
    frames = ase.io.read(data, ":")
    frames[0].info["REF_energy"] += 0.01  # a relabelled configuration: same size, other contents
    ase.io.write(data, frames, format="extxyz")
    return tiny_args(ws, d, "--resume", "--max_num_epochs", "2", train_file=data)


def resume_with_both_checkpoints_bad(ws: Workspace, d: Path) -> list[str]:
    data = trained_copy(ws, d)
    checkpoints = d / "run" / "checkpoints" / "tiny"
    (checkpoints / "last.pt").write_bytes(b"\x00" * 100)
    (checkpoints / "best.pt").write_bytes((checkpoints / "best.pt").read_bytes()[:1000])
    return tiny_args(ws, d, "--resume", "--max_num_epochs", "2", train_file=data)


def evaluate_args(ws: Workspace, *extra: str, model: Path | None = None, configs: Path | None = None) -> list[str]:
    return [
        "evaluate",
        "--model",
        str(model or ws.model),
        "--configs",
        str(configs or ws.test),
        "--energy_key",
        "REF_energy",
        "--forces_key",
        "REF_forces",
        *extra,
    ]


def md_args(ws: Workspace, *extra: str, configs: Path | None = None, model: Path | None = None) -> list[str]:
    return [
        "md",
        "--model",
        str(model or ws.cu_model),
        "--configs",
        str(configs or ws.cu_start),
        "--steps",
        "2",
        *extra,
    ]


def hand_built_graph_with_zero_edge() -> None:
    model = GauntCalculator.untrained(["Cu"], num_channels=4, max_ell=1, r_max=4.0, radial_hidden=[8]).model
    graph = AtomicGraph(
        positions=torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64),
        atomic_numbers=torch.tensor([29, 29, 29]),
        edge_index=torch.tensor([[0, 1, 0, 2], [1, 0, 2, 0]]),
        cell_shifts=torch.zeros(4, 3, dtype=torch.float64),
        cell=torch.zeros(1, 3, 3, dtype=torch.float64),
        pbc=torch.zeros(1, 3, dtype=torch.bool),
        batch=torch.zeros(3, dtype=torch.long),
        num_atoms=torch.tensor([3]),
    )
    model(graph)


def degree_key() -> str:
    """PotentialConfig's name for the hidden degree (``hidden_lmax``, being renamed ``max_L``)."""
    names = {f.name for f in fields(PotentialConfig)}
    return "max_L" if "max_L" in names else "hidden_lmax"


def md_call(**kw) -> None:
    atoms = ase.Atoms("Cu2", positions=[[0, 0, 0], [2.4, 0, 0]])
    atoms.calc = GauntCalculator.untrained(["Cu"], num_channels=4, max_ell=1, r_max=4.0, radial_hidden=[8])
    run_md(atoms, **{"steps": 2, **kw})


def train_into(ws: Workspace, d: Path, **overrides) -> None:
    train(TrainConfig(**{"train_file": str(ws.train), "work_dir": str(d / "run"), **TINY, **overrides}))


@dataclass
class Case:
    """``call(ws, d)``: for the API, the call that must raise ``error`` matching ``match``; for the CLI
    (``error is None``), the argv of ``gaunt``, whose one stderr line must match ``match``."""

    id: str
    call: Callable[[Workspace, Path], object]
    match: str
    error: type[BaseException] | None = None


def api(id: str, error: type[BaseException], match: str, call: Callable[[Workspace, Path], object]) -> Case:
    return Case(id, call, match, error)


def cli(id: str, match: str, argv: Callable[[Workspace, Path], list[str]]) -> Case:
    return Case(id, argv, match)


CASES = [
    # ---- data files (API)
    api(
        "read: truncated extxyz",
        ValueError,
        r"trunc\.xyz: configuration 5 \(counting from 0\) is malformed or truncated",
        lambda ws, d: read_structures(ws.trunc, energy_key="REF_energy", forces_key="REF_forces"),
    ),
    api(
        "read: a CSV file",
        ValueError,
        r"data\.csv: ASE cannot read this file format",
        lambda ws, d: read_structures(ws.csv),
    ),
    api(
        "read: CSV named .xyz",
        ValueError,
        r"csv_as\.xyz: configuration 0 .*malformed",
        lambda ws, d: read_structures(ws.csv_xyz),
    ),
    api("read: binary file", ValueError, r"binary\.xyz: binary contents", lambda ws, d: read_structures(ws.binary)),
    api(
        "read: no energy label",
        ValueError,
        r"nolabel\.xyz config 0: no energy under key 'REF_energy'",
        lambda ws, d: read_structures(ws.nolabel, energy_key="REF_energy"),
    ),
    api(
        "read: missing file",
        FileNotFoundError,
        r"no such file: .*missing\.xyz",
        lambda ws, d: read_structures(d / "missing.xyz"),
    ),
    api("read: a directory", FileNotFoundError, r"it is a directory", lambda ws, d: read_structures(d)),
    api("read: empty file", ValueError, r"empty\.xyz is empty", lambda ws, d: read_structures(ws.empty)),
    api(
        "train(): close atoms named by file and index",
        ValueError,
        r"close\.xyz config 7\): atoms 0 and 1 .*0\.05 A apart",
        lambda ws, d: train_into(ws, d, train_file=str(ws.close)),
    ),
    # ---- model files and checkpoints (API)
    api(
        "load_model: truncated",
        ValueError,
        r"model file .*trunc\.model is truncated or damaged",
        lambda ws, d: load_model(ws.model_trunc),
    ),
    api(
        "load_model: garbage",
        ValueError,
        r"garbage\.model is not a PyTorch file",
        lambda ws, d: load_model(ws.model_garbage),
    ),
    api(
        "load_model: empty", ValueError, r"empty\.model is empty \(0 bytes\)", lambda ws, d: load_model(ws.model_empty)
    ),
    api(
        "load_model: pickled classes",
        ValueError,
        r"pickled\.model holds pickled Python objects",
        lambda ws, d: load_model(ws.model_pickled),
    ),
    api(
        "load_model: a checkpoint",
        ValueError,
        r"last\.pt is a gaunt training checkpoint, not a gaunt model file",
        lambda ws, d: load_model(ws.last),
    ),
    api(
        "load_model: missing",
        FileNotFoundError,
        r"model file not found: .*nothing\.model",
        lambda ws, d: load_model(d / "nothing.model"),
    ),
    api(
        "checkpoint: a model file",
        ValueError,
        r"last\.pt is a gaunt model file, not a gaunt training checkpoint",
        lambda ws, d: (shutil.copy(ws.model, d / "last.pt"), CheckpointManager(d).load()),
    ),
    api(
        "checkpoint: truncated",
        ValueError,
        r"checkpoint .*last\.pt is truncated or damaged",
        lambda ws, d: (Path(d / "last.pt").write_bytes(ws.last.read_bytes()[:5000]), CheckpointManager(d).load()),
    ),
    # ---- models and graphs (API)
    api(
        "untrained: unknown element",
        ValueError,
        r"unknown element symbols \['Xx'\]",
        lambda ws, d: GauntCalculator.untrained(["Cu", "Xx"]),
    ),
    api(
        "untrained: hidden degree -1",
        ValueError,
        r"degrees must be >= 0",
        lambda ws, d: GauntCalculator.untrained(["Cu"], **{degree_key(): -1}),
    ),
    api(
        "PotentialConfig: r_max inf",
        ValueError,
        r"r_max \(got inf\)",
        lambda ws, d: PotentialConfig([29], r_max=math.inf),
    ),
    api(
        "PotentialConfig: r_max nan",
        ValueError,
        r"r_max \(got nan\)",
        lambda ws, d: PotentialConfig([29], r_max=math.nan),
    ),
    api("PotentialConfig: r_max 0", ValueError, r"r_max \(got 0", lambda ws, d: PotentialConfig([29], r_max=0.0)),
    api(
        "PotentialConfig: max_L -1",
        ValueError,
        r"max_L \(a degree\) must be >= 0, got -1",
        lambda ws, d: PotentialConfig([29], max_L=-1),
    ),
    api("TrainConfig: max_L -1", ValueError, r"max_L must be >= 0, got -1", lambda ws, d: train_into(ws, d, max_L=-1)),
    api(
        "graph: 0.5 A periodic cell",
        ValueError,
        r"periodic cell is far smaller than the cutoff r_max = 5 A",
        lambda ws, d: atoms_to_graph(ase.Atoms("Cu", cell=[0.5, 0.5, 0.5], pbc=True), 5.0),
    ),
    api(
        "graph: 0.05 A periodic slab",
        ValueError,
        r"periodic cell is far smaller than the cutoff",
        lambda ws, d: atoms_to_graph(ase.Atoms("Cu", cell=[0.05, 0.05, 0], pbc=[True, True, False]), 5.0),
    ),
    api(
        "model: zero-length edge",
        ValueError,
        r"edge 0 \(sender atom 0 -> receiver atom 1.*has zero length",
        lambda ws, d: hand_built_graph_with_zero_edge(),
    ),
    api(
        "run_md: temperature -50",
        ValueError,
        r"temperature must be .* >= 0, got -50",
        lambda ws, d: md_call(temperature_K=-50),
    ),
    api(
        "run_md: temperature nan",
        ValueError,
        r"temperature must be .*got nan",
        lambda ws, d: md_call(temperature_K=math.nan),
    ),
    api(
        "run_md: Langevin friction 0",
        ValueError,
        r"Langevin friction must be > 0",
        lambda ws, d: md_call(ensemble="langevin", friction_per_fs=0.0),
    ),
    # ---- training runs (API)
    api(
        "train(): into an earlier run",
        ValueError,
        r"already holds a run named 'tiny' .*--resume.*--overwrite",
        lambda ws, d: train(TrainConfig(train_file=str(ws.train), work_dir=str(ws.run), **TINY)),
    ),
    api(
        "train(): resume and overwrite",
        ValueError,
        r"give one of them",
        lambda ws, d: train_into(ws, d, restart_latest=True, overwrite=True),
    ),
    api(
        "train(): an output is an input",
        ValueError,
        r"would write .*tiny_results\.json, which is its test file",
        lambda ws, d: train_into(ws, d, test_files=[str(d / "run" / "tiny_results.json")]),
    ),
    # ---- gaunt train (CLI)
    cli(
        "train: into an earlier run",
        r"already holds a run named 'tiny' \(1 epoch logged.*--resume.*--overwrite",
        lambda ws, d: tiny_args(ws, d, "--work_dir", str(ws.run)),
    ),
    cli("train: r_max inf", r"r_max must be > 0, got inf", lambda ws, d: tiny_args(ws, d, "--r_max", "inf")),
    cli("train: r_max nan", r"r_max must be > 0, got nan", lambda ws, d: tiny_args(ws, d, "--r_max", "nan")),
    cli("train: r_max -1", r"r_max must be > 0, got -1", lambda ws, d: tiny_args(ws, d, "--r_max", "-1")),
    cli("train: max_L -1", r"max_L must be >= 0, got -1", lambda ws, d: tiny_args(ws, d, "--max_L", "-1")),
    cli(
        "train: truncated extxyz",
        r"trunc\.xyz: configuration 5 .*truncated",
        lambda ws, d: tiny_args(ws, d, train_file=ws.trunc),
    ),
    cli(
        "train: a CSV file",
        r"data\.csv: ASE cannot read this file format",
        lambda ws, d: tiny_args(ws, d, train_file=ws.csv),
    ),
    cli("train: binary file", r"binary\.xyz: binary contents", lambda ws, d: tiny_args(ws, d, train_file=ws.binary)),
    cli(
        "train: missing file",
        r"no such file: .*absent\.xyz",
        lambda ws, d: tiny_args(ws, d, train_file=d / "absent.xyz"),
    ),
    cli(
        "train: no energy label",
        r"nolabel\.xyz config 0: no energy under key 'REF_energy'",
        lambda ws, d: tiny_args(ws, d, train_file=ws.nolabel),
    ),
    cli("train: --device gpu", r"--device 'gpu' is not a device", lambda ws, d: tiny_args(ws, d, "--device", "gpu")),
    cli("train: --device cuda:7", r"--device 'cuda:7'", lambda ws, d: tiny_args(ws, d, "--device", "cuda:7")),
    cli("train: --resume --overwrite", r"give one of them", lambda ws, d: tiny_args(ws, d, "--resume", "--overwrite")),
    cli(
        "train: --resume after the data changed",
        r"contents of the training file .*train\.xyz .*changed since the "
        r"checkpoint.*--allow_data_change",
        change_data_then_resume,
    ),
    cli(
        "train: --resume, last.pt and best.pt bad",
        r"cannot resume: checkpoint .*last\.pt is not a PyTorch file.*; and "
        r"checkpoint .*best\.pt is truncated",
        resume_with_both_checkpoints_bad,
    ),
    cli(
        "train: valid_fraction 1.5",
        r"valid_fraction must lie in \(0, 1\), got 1\.5",
        lambda ws, d: tiny_args(ws, d, "--valid_fraction", "1.5"),
    ),
    cli("train: E0s unparsable", r"E0s: cannot parse", lambda ws, d: tiny_args(ws, d, "--E0s", "{29: }")),
    cli(
        "train: name with a slash",
        r"name must be a plain file-name stem",
        lambda ws, d: tiny_args(ws, d, "--name", "a/b"),
    ),
    cli("train: batch_size 0", r"batch_size must be >= 1, got 0", lambda ws, d: tiny_args(ws, d, "--batch_size", "0")),
    cli(
        "train: unknown element in the test file",
        r"unknown elements \['Ag'\].*silver\.xyz config 1",
        lambda ws, d: tiny_args(ws, d, "--test_file", str(ws.silver)),
    ),
    # ---- gaunt evaluate (CLI)
    cli(
        "evaluate: --output is --configs",
        r"--output .*test\.xyz is the same file as --configs",
        lambda ws, d: evaluate_args(ws, "--output", str(ws.test)),
    ),
    cli(
        "evaluate: --output is --model",
        r"is the same file as --model",
        lambda ws, d: evaluate_args(ws, "--output", str(ws.root / "run0" / ".." / "run0" / "tiny.model")),
    ),
    cli(
        "evaluate: --output in a missing directory",
        r"the directory .*nowhere does not exist",
        lambda ws, d: evaluate_args(ws, "--output", str(d / "nowhere" / "pred.xyz")),
    ),
    cli(
        "evaluate: truncated model",
        r"model file .*trunc\.model is truncated",
        lambda ws, d: evaluate_args(ws, model=ws.model_trunc),
    ),
    cli(
        "evaluate: garbage model",
        r"garbage\.model is not a PyTorch file",
        lambda ws, d: evaluate_args(ws, model=ws.model_garbage),
    ),
    cli(
        "evaluate: a checkpoint as the model",
        r"is a gaunt training checkpoint, not a gaunt model file",
        lambda ws, d: evaluate_args(ws, model=ws.last),
    ),
    cli(
        "evaluate: missing configs",
        r"no such file: .*absent\.xyz",
        lambda ws, d: evaluate_args(ws, configs=d / "absent.xyz"),
    ),
    cli(
        "evaluate: an unknown element",
        r"unknown elements \['Ag'\].*silver\.xyz config 1",
        lambda ws, d: evaluate_args(ws, configs=ws.silver),
    ),
    cli("evaluate: batch_size 0", r"--batch_size must be >= 1", lambda ws, d: evaluate_args(ws, "--batch_size", "0")),
    # ---- gaunt md (CLI)
    cli(
        "md: --trajectory is --configs",
        r"--trajectory .*cu_start\.xyz is the same file as --configs",
        lambda ws, d: md_args(ws, "--trajectory", str(ws.cu_start)),
    ),
    cli(
        "md: --trajectory in a missing directory",
        r"the directory .*nowhere does not exist",
        lambda ws, d: md_args(ws, "--trajectory", str(d / "nowhere" / "md.xyz")),
    ),
    cli(
        "md: --temperature -50",
        r"temperature must be .* >= 0, got -50",
        lambda ws, d: md_args(ws, "--temperature", "-50"),
    ),
    cli(
        "md: --index 99",
        r"cu_start\.xyz: index 99 is out of range: the file holds 4 configurations",
        lambda ws, d: md_args(ws, "--index", "99"),
    ),
    cli("md: --steps 0", r"need steps >= 1", lambda ws, d: md_args(ws, "--steps", "0")),
    cli("md: --timestep 0", r"timestep_fs > 0", lambda ws, d: md_args(ws, "--timestep", "0")),
    cli(
        "md: missing model",
        r"model file not found: .*absent\.model",
        lambda ws, d: md_args(ws, model=d / "absent.model"),
    ),
    cli(
        "md: 0.5 A periodic cell",
        r"periodic cell is far smaller than the cutoff",
        lambda ws, d: md_args(ws, configs=ws.tiny_cell),
    ),
    cli(
        "md: two atoms at one position", r"atoms 0 and 1 .* 0 A apart", lambda ws, d: md_args(ws, configs=ws.coincident)
    ),
    cli(
        "md: Langevin friction -1",
        r"Langevin friction must be > 0",
        lambda ws, d: md_args(ws, "--ensemble", "langevin", "--friction", "-1"),
    ),
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_workspace(tmp_path_factory.mktemp("bad_input"))
    torch.set_num_threads(before)


def snapshot(*roots: Path, skip: Path) -> dict[str, str]:
    """SHA-256 of every file under ``roots`` except those under ``skip`` (the case's run directory)."""
    out = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if skip not in path.parents:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert sum(c.error is None for c in CASES) >= 20  # CLI cases


@pytest.mark.parametrize("case", [c for c in CASES if c.error is not None], ids=lambda c: c.id)
def test_api_bad_input(case: Case, ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(case.error, match=case.match):
        case.call(ws, tmp_path)


@pytest.mark.parametrize("case", [c for c in CASES if c.error is None], ids=lambda c: c.id)
def test_cli_bad_input(case: Case, ws: Workspace, tmp_path: Path, capsys) -> None:
    argv = case.call(ws, tmp_path)  # may prepare files in tmp_path (a trained run, changed data)
    capsys.readouterr()
    before = snapshot(ws.root, tmp_path, skip=tmp_path / "run")
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1, err
    assert lines[0].startswith(f"gaunt {argv[0]}: error: "), lines[0]
    assert_matches(case.match, lines[0])
    assert "E RMSE" not in out  # refused before any prediction or training
    assert snapshot(ws.root, tmp_path, skip=tmp_path / "run") == before  # no input changed


def assert_matches(pattern: str, text: str) -> None:
    assert re.search(pattern, text), f"{pattern!r} not in {text!r}"


def test_debug_shows_the_traceback(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="temperature must be"):
        main(md_args(ws, "--temperature", "-50", "--debug"))
