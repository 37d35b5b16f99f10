"""gaunt.train.train end to end on tiny data: outputs, exact resume after a failure mid-epoch or between
epochs, bad input caught before training, max_time, the cosine scheduler."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import pytest
import torch
from conftest import make_clusters, tiny_config, write_clusters

from gaunt.data import make_loader
from gaunt.models import load_model
from gaunt.train import CheckpointManager, LossWeights, evaluate, train
from gaunt.train.data_setup import prepare_data
from gaunt.train.report import read_log

EPOCHS = 3
_RESULT_KEYS = ("train_loss", "valid_loss", "valid_e_rmse", "valid_f_rmse", "lr")


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> tuple[dict, Path]:
    """An uninterrupted run of EPOCHS epochs."""
    work = tmp_path_factory.mktemp("reference")
    return train(tiny_config(data_dir, work, max_num_epochs=EPOCHS, plot=True)), work


def _assert_same_run(a: dict, b: dict) -> None:
    """Same epochs, same per-epoch numbers and same final metrics (float64 on CPU: bit-for-bit)."""
    assert len(a["history"]) == len(b["history"]) == EPOCHS
    for ra, rb in zip(a["history"], b["history"]):
        assert ra["epoch"] == rb["epoch"]
        for key in _RESULT_KEYS:
            assert ra[key] == rb[key], (ra["epoch"], key, ra[key], rb[key])
    assert a["best_epoch"] == b["best_epoch"]
    for name in a["metrics"]:
        for key, value in a["metrics"][name].items():
            assert b["metrics"][name][key] == value, (name, key)


def _assert_same_model(path_a: Path, path_b: Path) -> None:
    sa, sb = load_model(path_a).state_dict(), load_model(path_b).state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


def test_outputs_and_model_file(reference, data_dir) -> None:
    results, work = reference
    config = tiny_config(data_dir, work)
    assert results["epochs"] == EPOCHS and results["stopped_by"] == "max_num_epochs"
    log = read_log(config.log_path)
    assert [r["epoch"] for r in log] == list(range(1, EPOCHS + 1))
    assert all(r["valid_e_rmse"] > 0 and r["valid_f_rmse"] > 0 and r["time"] > 0 for r in log)
    assert config.curve_path.stat().st_size > 1000
    assert json.loads(config.results_path.read_text())["metrics"] == results["metrics"]
    assert CheckpointManager(config.checkpoint_dir).load()["epoch"] == EPOCHS
    # the saved model reproduces the reported metrics; the test set appears under its file stem
    assert set(results["metrics"]) == {"train", "valid"}
    model = load_model(config.model_path)
    data = prepare_data(config)
    weights = LossWeights(config.energy_weight, config.forces_weight)
    valid = evaluate(model, make_loader(data.valid, 3), weights)
    for key in ("e_rmse", "f_rmse", "loss"):
        assert valid[key] == pytest.approx(results["metrics"]["valid"][key], rel=1e-10)
    # training moved the weights: the train loss fell from epoch 1 (test the tester for the resume tests)
    assert log[-1]["train_loss"] < log[0]["train_loss"]


@pytest.mark.parametrize("fail_at", [(1, 1), (2, 0)], ids=["mid-epoch-2", "start-of-epoch-3"])
def test_resume_after_failure_mid_epoch(reference, data_dir, tmp_path, fail_at) -> None:
    class Crash(RuntimeError):
        pass

    def hook(epoch: int, step: int) -> None:
        if (epoch, step) == fail_at:
            raise Crash

    config = tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS)
    with pytest.raises(Crash):
        train(config, on_step=hook)
    assert CheckpointManager(config.checkpoint_dir).load()["epoch"] == fail_at[0]
    assert len(read_log(config.log_path)) == fail_at[0]
    resumed = train(tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS, restart_latest=True))
    _assert_same_run(reference[0], resumed)
    assert [r["epoch"] for r in read_log(config.log_path)] == list(range(1, EPOCHS + 1))
    _assert_same_model(tiny_config(data_dir, reference[1]).model_path, config.model_path)


def test_resume_after_completed_epochs(reference, data_dir, tmp_path) -> None:
    first = train(tiny_config(data_dir, tmp_path, max_num_epochs=1))
    assert first["epochs"] == 1
    resumed = train(tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS, restart_latest=True))
    _assert_same_run(reference[0], resumed)
    # resuming a finished run trains nothing more and reports the same
    again = train(tiny_config(data_dir, tmp_path, max_num_epochs=EPOCHS, restart_latest=True))
    _assert_same_run(reference[0], again)


def test_bad_input_is_caught_before_training(data_dir, tmp_path) -> None:
    work = tmp_path / "work"
    with pytest.raises(ValueError, match=r"no_forces.xyz config 0: no forces under key 'REF_forces'"):
        train(tiny_config(data_dir, work, train_file=str(data_dir / "no_forces.xyz")))
    with pytest.raises(ValueError, match="empty"):
        train(tiny_config(data_dir, work, train_file=str(data_dir / "empty.xyz")))
    with pytest.raises(ValueError, match="no energy for elements Z=\\[79\\]"):
        train(tiny_config(data_dir, work, E0s={29: -1.0}))
    with pytest.raises(FileNotFoundError):
        train(tiny_config(data_dir, work, test_files=[str(tmp_path / "missing.xyz")]))
    ag = write_clusters(tmp_path / "ag.xyz", 2, seed=3, isolated=False)
    ag.write_text(ag.read_text().replace("Au ", "Ag "))
    with pytest.raises(ValueError, match="unknown elements \\['Ag'\\]"):
        train(tiny_config(data_dir, work, test_files=[str(ag)]))
    with pytest.raises(ValueError, match="stress_weight > 0 needs stress_key"):
        train(tiny_config(data_dir, work, stress_weight=1.0))
    with pytest.raises(ValueError, match="E0s must be 'isolated', 'average', a dict or an existing file"):
        train(tiny_config(data_dir, work, E0s="isolatd"))
    assert not work.exists()  # nothing was written: every check ran before training
    # energy-only training accepts the file without forces (test the tester: the file itself is fine)
    no_forces = prepare_data(
        tiny_config(data_dir, work, train_file=str(data_dir / "no_forces.xyz"), forces_weight=0.0, E0s="average")
    )
    assert len(no_forces.train) + len(no_forces.valid) == 6


def test_max_time_cosine_and_no_ema(data_dir, tmp_path) -> None:
    results = train(tiny_config(data_dir, tmp_path, max_time=1e-9, max_num_epochs=50))
    assert results["epochs"] == 1 and results["stopped_by"] == "max_time"
    results = train(
        tiny_config(
            data_dir,
            tmp_path / "cos",
            scheduler="cosine",
            ema=False,
            final_model="last",
            max_num_epochs=2,
            test_files=[str(data_dir / "test.xyz")],
        )
    )
    lrs = [r["lr"] for r in results["history"]]
    assert lrs[0] == 0.02 and 0 < lrs[1] < lrs[0]
    assert set(results["metrics"]) == {"train", "valid", "test"}
    assert results["metrics"]["test"]["num_configs"] == 6


def test_resume_refuses_changed_settings(reference, data_dir) -> None:
    _, work = reference
    with pytest.raises(ValueError, match=r"cannot resume.*num_channels: 4 -> 8"):
        train(tiny_config(data_dir, work, num_channels=8, restart_latest=True))


def test_e0s_sources(data_dir, tmp_path) -> None:
    iso = [a for a in make_clusters(0, seed=0) if a.info.get("config_type") == "IsolatedAtom"]
    expected = {29: float(iso[0].info["REF_energy"]), 79: float(iso[1].info["REF_energy"])}
    iso_file = tmp_path / "iso.xyz"
    ase.io.write(iso_file, iso, format="extxyz")
    for e0s in ("isolated", str(iso_file), f"{{29: {expected[29]!r}, 79: {expected[79]!r}}}"):
        data = prepare_data(tiny_config(data_dir, tmp_path, E0s=e0s))
        assert data.atomic_energies == pytest.approx(expected, rel=1e-12), e0s
        assert len(data.train) == 12 and len(data.valid) == 4  # the IsolatedAtom entries are not training data
    fitted = prepare_data(tiny_config(data_dir, tmp_path, E0s="average")).atomic_energies
    assert set(fitted) == {29, 79} and fitted != pytest.approx(expected, rel=1e-3)  # a fit, not the lookup


def test_diverging_run_stops_with_a_clear_error(data_dir, tmp_path) -> None:
    with pytest.raises(FloatingPointError, match="training loss is (nan|inf) at epoch 1"):
        train(tiny_config(data_dir, tmp_path, lr=1e300, clip_grad=None, amsgrad=False))
