"""gaunt.train.loss and .metrics against hand computation; metrics independent of the batching."""

from __future__ import annotations

import math

import pytest
import torch

from gaunt.data.graph import AtomicGraph, collate
from gaunt.train.loss import LossWeights, loss_terms, weighted_loss
from gaunt.train.metrics import MetricAccumulator


def _graph(num_atoms: list[int], energy: list[float], forces: torch.Tensor | None) -> AtomicGraph:
    n, b = sum(num_atoms), len(num_atoms)
    return AtomicGraph(
        positions=torch.zeros(n, 3, dtype=torch.float64),
        atomic_numbers=torch.ones(n, dtype=torch.long),
        edge_index=torch.zeros(2, 0, dtype=torch.long),
        cell_shifts=torch.zeros(0, 3, dtype=torch.float64),
        cell=torch.zeros(b, 3, 3, dtype=torch.float64),
        pbc=torch.zeros(b, 3, dtype=torch.bool),
        batch=torch.repeat_interleave(torch.arange(b), torch.tensor(num_atoms)),
        num_atoms=torch.tensor(num_atoms),
        energy=torch.tensor(energy, dtype=torch.float64),
        forces=forces,
    )


def test_loss_matches_hand_computation() -> None:
    # two structures: 2 atoms and 1 atom; energy errors 0.4 and -0.3 eV -> per atom 0.2 and -0.3
    graph = _graph([2, 1], [1.0, 2.0], torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, -1.0]], dtype=torch.float64))
    pred = {
        "energy": torch.tensor([1.4, 1.7], dtype=torch.float64),
        "forces": torch.tensor([[1.5, 0, 0], [0, 2.0, 0], [0, 0, 0.0]], dtype=torch.float64),
    }
    terms = loss_terms(pred, graph, LossWeights(energy=2.0, forces=10.0))
    e_mse = (0.2**2 + 0.3**2) / 2  # 0.065
    f_mse = (0.5**2 + 1.0**2) / 9  # errors 0.5 and 1.0 over 9 components
    torch.testing.assert_close(terms["energy"], torch.tensor(e_mse, dtype=torch.float64))
    torch.testing.assert_close(terms["forces"], torch.tensor(f_mse, dtype=torch.float64))
    loss = weighted_loss(pred, graph, LossWeights(energy=2.0, forces=10.0))
    torch.testing.assert_close(loss, torch.tensor(2.0 * e_mse + 10.0 * f_mse, dtype=torch.float64))
    # a zero weight drops the term entirely (and its label requirement)
    assert set(loss_terms(pred, graph, LossWeights(energy=1.0, forces=0.0))) == {"energy"}


def test_loss_errors() -> None:
    graph = _graph([1], [0.0], None)
    with pytest.raises(ValueError, match="no reference forces"):
        loss_terms({"energy": torch.zeros(1, dtype=torch.float64)}, graph, LossWeights(1.0, 1.0))
    with pytest.raises(ValueError, match="all weights are zero"):
        LossWeights(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="forces weight must be >= 0"):
        LossWeights(1.0, -1.0)
    with pytest.raises(ValueError, match="forces weight must be >= 0"):
        LossWeights(1.0, math.nan)


def _random_set(seed: int, sizes: list[int]) -> tuple[list[AtomicGraph], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    graphs, preds = [], []
    for n in sizes:
        forces = torch.randn(n, 3, generator=g, dtype=torch.float64)
        graphs.append(_graph([n], [float(torch.randn(1, generator=g))], forces))
        preds.append(
            {
                "energy": graphs[-1].energy + 0.1 * torch.randn(1, generator=g, dtype=torch.float64),
                "forces": forces + 0.05 * torch.randn(n, 3, generator=g, dtype=torch.float64),
            }
        )
    return graphs, preds


def test_metrics_match_hand_computation_and_ignore_batching() -> None:
    sizes = [1, 3, 2, 5, 4, 2, 6]
    graphs, preds = _random_set(0, sizes)
    # reference with plain Python over the whole set
    e_err = [float(p["energy"] - g.energy) / g.num_nodes for g, p in zip(graphs, preds)]
    f_err = torch.cat([(p["forces"] - g.forces).reshape(-1) for g, p in zip(graphs, preds)]).tolist()
    ref = {
        "e_rmse": 1000 * math.sqrt(sum(e * e for e in e_err) / len(e_err)),
        "e_mae": 1000 * sum(abs(e) for e in e_err) / len(e_err),
        "f_rmse": 1000 * math.sqrt(sum(f * f for f in f_err) / len(f_err)),
        "f_mae": 1000 * sum(abs(f) for f in f_err) / len(f_err),
    }
    weights = LossWeights(1.0, 10.0)
    ref_loss = (ref["e_rmse"] / 1000) ** 2 + 10.0 * (ref["f_rmse"] / 1000) ** 2
    results = []
    for split in ([7], [1] * 7, [3, 4], [2, 2, 3]):  # different batchings of the same set
        acc, k = MetricAccumulator(), 0
        for size in split:
            graph = collate(graphs[k : k + size])
            pred = {key: torch.cat([p[key] for p in preds[k : k + size]]) for key in ("energy", "forces")}
            acc.update(pred, graph)
            k += size
        acc.all_reduce()  # no process group: a no-op
        results.append(acc.compute(weights))
    for out in results:
        assert out["num_configs"] == 7
        for key, value in ref.items():
            assert out[key] == pytest.approx(value, rel=1e-12)
        assert out["loss"] == pytest.approx(ref_loss, rel=1e-12)
        assert out["s_rmse"] is None
    # test the tester: the errors are not trivially zero and energy and forces differ
    assert ref["e_rmse"] > 1.0 and ref["f_rmse"] > 1.0 and abs(ref["e_rmse"] - ref["f_rmse"]) > 1.0


def test_metrics_without_labels_are_none() -> None:
    graph = _graph([2], [0.0], None)
    acc = MetricAccumulator()
    acc.update({"energy": torch.ones(1, dtype=torch.float64), "forces": torch.zeros(2, 3, dtype=torch.float64)}, graph)
    out = acc.compute()
    assert out["e_rmse"] == pytest.approx(500.0) and out["f_rmse"] is None and "loss" not in out
