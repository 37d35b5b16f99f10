"""``TrainConfig``: every setting of a training run (names follow mace-torch's command line where one exists)."""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

SCHEDULERS = ("plateau", "cosine")
FINAL_MODELS = ("best", "last")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """A training run. Units: r_max in Angstrom, max_time in minutes, energies in eV.

    Data: ``train_file`` (extended XYZ); validation from ``valid_file`` or a seeded random split of the
    training file (``valid_count`` if given, else ``valid_fraction``); any number of ``test_files``
    (evaluated at the end only). Configurations with ``config_type == "IsolatedAtom"`` in the training file
    are taken out of the training set (they are E0 data, not training data).

    ``E0s``: "isolated" (the IsolatedAtom configurations of the training file), "average" (least-squares
    fit of E_total ~ sum_Z n_Z E0_Z on the training set), a path to a file of isolated atoms, or a dict
    ``{Z: E0}`` (or its string form ``"{1: -13.6, 8: -2041.0}"``).

    Model: ``r_max``, ``num_radial_basis``, ``num_channels``, ``max_L`` (degree of the hidden features),
    ``max_ell`` (degree of the edge harmonics), ``correlation``, ``num_interactions``, ``product``,
    ``pair_repulsion`` (add the ZBL screened nuclear repulsion at short range, ``gaunt.models.pair``).

    Optimisation: AdamW (``lr``, ``weight_decay``, ``amsgrad``), ``scheduler`` "plateau" (ReduceLROnPlateau
    on the validation loss, ``lr_factor``, ``scheduler_patience`` epochs) or "cosine" (cosine annealing to 0
    over ``max_num_epochs``), ``clip_grad`` (max gradient norm; None or 0 = off), EMA of the weights
    (``ema``, ``ema_decay`` per step; evaluation and the saved model use the EMA weights).

    Stopping: ``max_num_epochs``, and optionally ``max_time`` minutes of training (stop after the epoch that
    exceeds it, for equal-time comparisons). ``final_model``: save the weights of the epoch with the lowest
    validation loss ("best") or of the last epoch ("last").

    Output: ``progress`` (a tqdm bar with the live loss; one line per epoch and the final table are always
    printed by rank 0), ``plot`` (the learning-curve PNG).
    """

    train_file: str | None = None
    name: str = "gaunt"
    work_dir: str = "."
    valid_file: str | None = None
    valid_fraction: float = 0.1
    valid_count: int | None = None
    test_files: list[str] = field(default_factory=list)
    E0s: str | dict[int, float] = "average"
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str | None = None
    # model
    r_max: float = 5.0
    num_radial_basis: int = 8
    num_channels: int = 32
    max_L: int = 1
    max_ell: int = 3
    correlation: int = 3
    num_interactions: int = 2
    product: str = "grid"
    pair_repulsion: bool = False
    # optimisation
    batch_size: int = 10
    valid_batch_size: int = 10
    max_num_epochs: int = 100
    max_time: float | None = None
    lr: float = 0.01
    weight_decay: float = 5e-7
    amsgrad: bool = True
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    stress_weight: float = 0.0
    ema: bool = True
    ema_decay: float = 0.99
    clip_grad: float | None = 10.0
    scheduler: str = "plateau"
    lr_factor: float = 0.8
    scheduler_patience: int = 50
    final_model: str = "best"
    # run
    seed: int = 123
    device: str = "cpu"
    default_dtype: str = "float64"
    restart_latest: bool = False
    overwrite: bool = False  # replace an earlier run of this name (train/run_dir.py)
    allow_data_change: bool = False  # resume although the data files' contents changed (train/run_dir.py)
    distributed: bool = False
    find_unused_parameters: bool = False
    progress: bool = True
    plot: bool = True

    def __post_init__(self) -> None:
        self.test_files = [str(p) for p in self.test_files]
        if isinstance(self.E0s, str):
            self.E0s = parse_e0s(self.E0s)
        elif isinstance(self.E0s, dict):  # plain int/float (numpy scalars would not load with weights_only)
            self.E0s = {int(z): float(e) for z, e in self.E0s.items()}

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting (before any file is read)."""
        if not self.train_file:
            raise ValueError("TrainConfig: train_file is required")
        if not self.name or any(c in self.name for c in "/\\"):
            raise ValueError(f"TrainConfig: name must be a plain file-name stem, got {self.name!r}")
        _check(self.valid_count is None or self.valid_count >= 1, "valid_count must be >= 1")
        _check(0.0 < self.valid_fraction < 1.0, f"valid_fraction must lie in (0, 1), got {self.valid_fraction}")
        for key in (
            "num_radial_basis",
            "num_channels",
            "correlation",
            "num_interactions",
            "batch_size",
            "valid_batch_size",
            "max_num_epochs",
            "scheduler_patience",
        ):
            _check(int(getattr(self, key)) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("max_L", "max_ell"):
            _check(int(getattr(self, key)) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        _check(self.r_max > 0 and math.isfinite(self.r_max), f"r_max must be > 0, got {self.r_max}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(0.0 <= self.ema_decay <= 1.0, f"ema_decay must lie in [0, 1], got {self.ema_decay}")
        _check(0.0 < self.lr_factor < 1.0, f"lr_factor must lie in (0, 1), got {self.lr_factor}")
        _check(self.max_time is None or self.max_time > 0, f"max_time must be > 0 minutes, got {self.max_time}")
        _check(self.clip_grad is None or self.clip_grad >= 0, f"clip_grad must be >= 0, got {self.clip_grad}")
        _check(self.scheduler in SCHEDULERS, f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        _check(self.final_model in FINAL_MODELS, f"final_model must be one of {FINAL_MODELS}, got {self.final_model!r}")
        _check(
            self.default_dtype in DTYPES, f"default_dtype must be one of {tuple(DTYPES)}, got {self.default_dtype!r}"
        )
        _check(
            self.stress_weight == 0.0 or self.stress_key is not None,
            "stress_weight > 0 needs stress_key (the stress label's name in the files)",
        )
        if isinstance(self.E0s, str) and self.E0s not in ("isolated", "average") and not Path(self.E0s).is_file():
            raise ValueError(
                f"TrainConfig: E0s must be 'isolated', 'average', a dict or an existing file; no file {self.E0s!r}"
            )

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.default_dtype]

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_path / "checkpoints" / self.name

    @property
    def model_path(self) -> Path:
        return self.work_path / f"{self.name}.model"

    @property
    def log_path(self) -> Path:
        return self.work_path / f"{self.name}_train.jsonl"

    @property
    def curve_path(self) -> Path:
        return self.work_path / f"{self.name}_learning_curve.png"

    @property
    def results_path(self) -> Path:
        return self.work_path / f"{self.name}_results.json"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# settings that define the data, the model or the sequence of batches: a resumed run must keep them
_RESUME_FIXED = (
    "train_file",
    "valid_file",
    "valid_fraction",
    "valid_count",
    "E0s",
    "energy_key",
    "forces_key",
    "stress_key",
    "r_max",
    "num_radial_basis",
    "num_channels",
    "max_L",
    "max_ell",
    "correlation",
    "num_interactions",
    "product",
    "pair_repulsion",
    "batch_size",
    "seed",
    "default_dtype",
    "ema",
    "scheduler",
)


def check_resume_compatible(saved: dict[str, Any], config: TrainConfig) -> None:
    """Raise ``ValueError`` if ``config`` changes a setting the checkpointed run depends on (others, such as
    ``max_num_epochs`` or ``max_time``, may change between the interrupted and the resumed run)."""
    current, default = config.to_dict(), TrainConfig().to_dict()  # a setting added later: its default
    changed = [
        f"{k}: {saved.get(k, default[k])!r} -> {current[k]!r}"
        for k in _RESUME_FIXED
        if saved.get(k, default[k]) != current[k]
    ]
    if changed:
        raise ValueError(
            "cannot resume: the checkpoint was written with different settings (start a new run "
            "with another name or work_dir instead): " + "; ".join(changed)
        )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"TrainConfig: {message}")


def parse_e0s(value: str) -> str | dict[int, float]:
    """``"isolated"`` / ``"average"`` / a path stay strings; ``"{1: -13.6, ...}"`` becomes ``{1: -13.6, ...}``."""
    text = value.strip()
    if not text.startswith("{"):
        return text
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise ValueError(f"E0s: cannot parse {value!r} as a dict {{Z: energy}}: {err}") from None
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError(f"E0s: expected a non-empty dict {{Z: energy}}, got {value!r}")
    try:
        return {int(z): float(e) for z, e in parsed.items()}
    except (TypeError, ValueError):
        raise ValueError(f"E0s: keys must be atomic numbers and values energies in eV, got {value!r}") from None


__all__ = ["TrainConfig", "parse_e0s", "check_resume_compatible", "SCHEDULERS", "DTYPES", "FINAL_MODELS"]
