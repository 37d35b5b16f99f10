"""gaunt.train.cli: flags map onto TrainConfig; evaluate writes predictions equal to the model's."""

from __future__ import annotations

import argparse

import ase.io
import pytest
import torch
from conftest import tiny_config

from gaunt.data import AtomicDataset, collate, read_structures
from gaunt.models import load_model
from gaunt.train import add_evaluate_arguments, add_train_arguments, run_evaluate, train
from gaunt.train.cli import config_from_args


def _parse(argv: list[str]) -> argparse.Namespace:
    return add_train_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_train_flags_map_to_config() -> None:
    args = _parse(
        [
            "--train_file",
            "t.xyz",
            "--test_file",
            "a.xyz",
            "--test_file",
            "b.xyz",
            "--E0s",
            "{29: -3.5, 79: -1}",
            "--max_L",
            "2",
            "--max_ell",
            "2",
            "--product",
            "gaunt",
            "--no-ema",
            "--resume",
            "--max_time",
            "1.5",
            "--default_dtype",
            "float32",
            "--scheduler",
            "cosine",
            "--clip_grad",
            "0",
        ]
    )
    config = config_from_args(args)
    assert config.test_files == ["a.xyz", "b.xyz"]
    assert config.E0s == {29: -3.5, 79: -1.0}
    assert (config.max_L, config.max_ell, config.product) == (2, 2, "gaunt")
    assert config.ema is False and config.restart_latest is True and config.max_time == 1.5
    assert config.dtype == torch.float32 and config.scheduler == "cosine" and config.clip_grad == 0.0
    defaults = config_from_args(_parse(["--train_file", "t.xyz"]))
    assert defaults.ema is True and defaults.E0s == "average" and defaults.restart_latest is False
    with pytest.raises(ValueError, match="cannot parse"):
        config_from_args(_parse(["--train_file", "t.xyz", "--E0s", "{29: }"]))
    with pytest.raises(SystemExit):
        _parse(["--train_file", "t.xyz", "--product", "fft"])


def test_evaluate_writes_model_predictions(data_dir, tmp_path, capsys) -> None:
    config = tiny_config(data_dir, tmp_path, max_num_epochs=1)
    train(config)
    output = tmp_path / "pred.xyz"
    args = add_evaluate_arguments(argparse.ArgumentParser()).parse_args(
        [
            "--model",
            str(config.model_path),
            "--configs",
            str(data_dir / "test.xyz"),
            "--output",
            str(output),
            "--energy_key",
            "REF_energy",
            "--forces_key",
            "REF_forces",
            "--batch_size",
            "4",
        ]
    )
    assert run_evaluate(args) == 0
    printed = capsys.readouterr().out
    assert "E RMSE" in printed and "predictions ->" in printed
    written = ase.io.read(output, ":")
    reference = read_structures(data_dir / "test.xyz", energy_key="REF_energy", forces_key="REF_forces")
    assert len(written) == len(reference) == 6
    # predictions equal a direct model call; labels are kept under their original keys
    model = load_model(config.model_path)
    graph = collate(list(AtomicDataset(reference, model.config.r_max, model.config.atomic_numbers)))
    with torch.enable_grad():
        direct = model(graph)
    energies = torch.tensor([a.info["pred_energy"] for a in written], dtype=torch.float64)
    torch.testing.assert_close(energies, direct["energy"].detach())
    forces = torch.cat([torch.as_tensor(a.arrays["pred_forces"]) for a in written])
    torch.testing.assert_close(forces, direct["forces"].detach())
    assert written[0].info["REF_energy"] == pytest.approx(reference[0].info["gaunt_energy"])
