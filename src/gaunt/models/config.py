"""``PotentialConfig``: the hyper-parameters of a ``GauntPotential``, and its plain-dict form for model files.

Names follow mace-torch from the command line to the model: ``max_L`` (degree of the hidden features),
``max_ell``, ``num_radial_basis``, ``num_channels``, ``correlation``, ``r_max``, ``pair_repulsion``.
Files written before the rename (``hidden_lmax``, ``num_bessel``) load through :func:`config_from_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PRODUCTS = ("cg", "gaunt", "grid", "auto")

# names used by model files and checkpoints written before the vocabulary was aligned with mace-torch
_OLD_NAMES = {"hidden_lmax": "max_L", "num_bessel": "num_radial_basis"}


@dataclass
class PotentialConfig:
    """Hyper-parameters (names as in mace-torch where one exists).

    ``atomic_numbers``: the elements the model knows (sorted on construction). ``max_ell``: degree of the
    edge harmonics and of the atomic basis A. ``max_L``: degree of the node features between blocks.
    ``num_radial_basis``: Bessel functions of the distance. ``product``: "cg" (Clebsch-Gordan, MACE-like
    paths) | "gaunt" (Gaunt product in the 2D Fourier basis) | "grid" (the same Gaunt product by
    quadrature; fastest on CPU) | "auto". ``convolution_product`` overrides the convolution's product
    (e.g. "so2" or "gaunt_z").

    ``avg_num_neighbors`` normalises the neighbour sum; the default 1 suits no real structure (training
    sets it from the data, ``GauntCalculator.untrained`` from a typical density). ``atomic_energies``: E0
    per element (eV). ``shift``: the mean interaction energy per atom, one number or one per element
    (eV); with ``isolated_atom_e0`` it is the starting value of the learned ``GauntPotential.shifts``.
    ``scale``: the network's output scale (eV). ``isolated_atom_e0``: a neighbour-less atom has energy
    exactly E0 (``gaunt.models.potential`` docstring); False is the form of models saved before it.
    ``pair_repulsion``: add the ZBL screened nuclear repulsion at short range (``gaunt.models.pair``);
    ``pair_repulsion_distances``: ``{"Z1-Z2": shortest distance of that pair in the training data}`` (A),
    where training records it; the repulsion of a pair ends at the larger of it and the covalent radii sum.
    """

    atomic_numbers: list[int]
    r_max: float = 5.0
    num_radial_basis: int = 8
    polynomial_p: int = 6
    num_channels: int = 32
    max_ell: int = 3
    max_L: int = 1
    correlation: int = 3
    num_interactions: int = 2
    product: str = "grid"
    convolution_product: str | None = None
    radial_hidden: list[int] = field(default_factory=lambda: [64, 64])
    avg_num_neighbors: float = 1.0
    atomic_energies: dict[int, float] = field(default_factory=dict)
    scale: float = 1.0
    shift: float | dict[int, float] = 0.0
    isolated_atom_e0: bool = True
    pair_repulsion: bool = False
    pair_repulsion_distances: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        zs = [int(z) for z in self.atomic_numbers]
        if not zs or len(set(zs)) != len(zs) or min(zs) < 1 or max(zs) > 118:
            raise ValueError(
                f"PotentialConfig: atomic_numbers must be distinct elements 1..118, got {self.atomic_numbers}"
            )
        self.atomic_numbers = sorted(zs)
        self.atomic_energies = _per_element("atomic_energies", self.atomic_energies, zs, allow_empty=True)
        shift = self.shift
        self.shift = _per_element("shift", shift if isinstance(shift, dict) else {z: shift for z in zs}, zs)
        if self.product not in PRODUCTS:
            raise ValueError(f"PotentialConfig: product must be one of {PRODUCTS}, got {self.product!r}")
        if not 0 < self.r_max < float("inf") or not self.avg_num_neighbors > 0 or not self.scale > 0:
            raise ValueError(
                f"PotentialConfig: r_max (got {self.r_max}), avg_num_neighbors and scale must be finite and > 0"
            )
        for name in ("num_radial_basis", "num_channels", "correlation", "num_interactions"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PotentialConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_L", "max_ell"):  # degrees of harmonics (a negative one failed deep in the layers)
            if int(getattr(self, name)) < 0:
                raise ValueError(f"PotentialConfig: {name} (a degree) must be >= 0, got {getattr(self, name)}")
        self.radial_hidden = [int(w) for w in self.radial_hidden]
        self.isolated_atom_e0, self.pair_repulsion = bool(self.isolated_atom_e0), bool(self.pair_repulsion)
        self.pair_repulsion_distances = _pair_distances(self.pair_repulsion_distances, zs)


def _per_element(name: str, values: dict, zs: list[int], allow_empty: bool = False) -> dict[int, float]:
    """``{Z: float}`` covering exactly the elements ``zs`` (or empty, where allowed)."""
    values = {int(z): float(e) for z, e in values.items()}
    unknown = sorted(set(values) - set(zs))
    if unknown:
        raise ValueError(f"PotentialConfig: {name} given for elements {unknown} not in atomic_numbers {zs}")
    missing = sorted(set(zs) - set(values))
    if missing and (values or not allow_empty):
        raise ValueError(f"PotentialConfig: {name} lacks elements {missing} (give all or none)")
    return {z: values[z] for z in zs if z in values}


def _pair_distances(values: dict, zs: list[int]) -> dict[str, float]:
    """``{"Z1-Z2": r > 0}`` with Z1 <= Z2 both in ``zs``."""
    out = {}
    for key, r in values.items():
        try:
            a, b = sorted(int(z) for z in str(key).split("-"))
        except ValueError:
            raise ValueError(f"PotentialConfig: pair_repulsion_distances keys are 'Z1-Z2', got {key!r}") from None
        if a not in zs or b not in zs or not float(r) > 0:
            raise ValueError(
                f"PotentialConfig: pair_repulsion_distances[{key!r}] = {r}: need elements of {zs} and a distance > 0"
            )
        out[f"{a}-{b}"] = float(r)
    return dict(sorted(out.items()))


def config_dict(config: PotentialConfig) -> dict:
    """Plain-container form of the config (for checkpoints: loads with ``torch.load(weights_only=True)``)."""
    return asdict(config)


def config_from_dict(values: dict[str, Any]) -> PotentialConfig:
    """``PotentialConfig`` from :func:`config_dict`'s form, including files written before the renames
    (``hidden_lmax`` -> ``max_L``, ``num_bessel`` -> ``num_radial_basis``) and before ``isolated_atom_e0``
    (such a model keeps its energies: E0 + shift + scale * readout)."""
    values = dict(values)
    for old, new in _OLD_NAMES.items():
        if old in values:
            if new in values:
                raise ValueError(f"model config has both {old!r} and its new name {new!r}")
            values[new] = values.pop(old)
    values.setdefault("isolated_atom_e0", False)
    return PotentialConfig(**values)


__all__ = ["PotentialConfig", "PRODUCTS", "config_dict", "config_from_dict"]
