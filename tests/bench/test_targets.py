"""benchmarks/fused_cpu/targets.py: the FLOP count it uses, and one tiny run end to end (files, records, targets)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

pytest.importorskip("e3nn")
pytest.importorskip("matplotlib")

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "fused_cpu" / "targets.py"


@pytest.fixture(scope="module")
def targets():
    spec = importlib.util.spec_from_file_location("fused_cpu_targets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_flops_are_the_count_of_benchmarks_md(targets):
    # BENCHMARKS.md: at L = 6 (grid 10 x 19) a step is 6 x (910 + 2470) multiply-adds per channel and sample
    setup = targets.build_setup(targets.Config(mul=2), "feature", 6, peers=False)
    assert tuple(setup.product.program.grid) == (10, 20)  # an even n_phi (sphere_programs.even_azimuths)
    assert setup.flops(1) == 2 * 2 * 6 * (910 + 2470)
    dims = 3 * 2 * 49  # x1, x2, out of 2 x (0..6)
    assert setup.bytes(3) == 4 * (2 * 3 * dims + 2 * setup.product.weight_numel)
    edge = targets.build_setup(targets.Config(edge_mul=2), "edge", 1, peers=False)
    assert edge.bytes(3) == 4 * (2 * 3 * (8 + 4 + 8) + 2 * 3 * edge.product.weight_numel)  # per-edge weights


@pytest.mark.slow  # ~15-25 s: sgemm, bandwidth, e3nn, two memory subprocesses
def test_tiny_run_writes_every_file(targets, tmp_path):
    argv = ["--quick", "--feature-L", "1", "--edge-L", "1", "--batch", "20", "--edge-batch", "20"]
    targets.main(argv + ["--threads-L", "1", "--memory-L", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "targets.json").read_text())
    assert (tmp_path / "roofline.png").stat().st_size > 0 and "| target |" in (tmp_path / "targets.md").read_text()
    ok = [r for r in result["records"] if r["status"] == "ok"]
    assert {r["implementation"] for r in ok} == {"auto", "torch", "e3nn"}
    assert {r["batch"] for r in ok} == {1, 2, 20}  # the ladder batch / 100, batch / 10, batch
    assert all(r["error_vs_e3nn"] <= targets.TOLERANCE for r in ok if r["implementation"] != "e3nn")
    auto = [r for r in ok if r["implementation"] == "auto"]
    if auto[0]["executor"] == "cpu_fused":
        assert all(r["kernel"].count("/") == 2 for r in auto)
    measured = {t["target"].split(":")[0]: t for t in result["targets"] if t["measured"] is not None}
    assert "feature, 64 ch, L = 1" in measured and "edge, 16 ch, L = 1" in measured
    assert result["threads"]["speedup_wall"] > 0
    (memory,) = [m for m in result["memory"] if m["executor"] != "torch"]
    assert memory["peak_rise_bytes"] is not None and memory["peak_rise_bytes"] >= 0
