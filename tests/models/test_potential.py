"""GauntPotential: symmetry (rotation, inversion, translation, permutation), conservative forces
(finite differences, symmetric Hessian), gradcheck / double backward, bad input, save / load."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch
from potential_helpers import finite_difference_forces, hessian, molecule_graph, random_molecule, tiny_model
from torch.testing import assert_close

from gaunt.data.graph import collate
from gaunt.models import GauntPotential, PotentialConfig, load_model, model_from_state, model_state, save_model
from gaunt.nn import RadialMLP
from gaunt.so3 import random_rotation


def _predict(model, graph):
    out = model(graph)
    return out["energy"].detach(), out["forces"].detach()


def assert_symmetric(
    model, graph, Q: torch.Tensor, shift: torch.Tensor, perm: torch.Tensor, tol: float = 1e-10
) -> None:
    """E(Q x P + t) = E(x) and F(Q x P + t) = (P F(x)) Q^T for an orthogonal Q (rotation or improper)."""
    energy, forces = _predict(model, graph)
    moved = molecule_graph(graph.positions[perm] @ Q.T + shift, graph.atomic_numbers[perm], model.config.r_max)
    energy2, forces2 = _predict(model, moved)
    assert_close(energy2, energy, rtol=tol, atol=tol)
    assert_close(forces2, forces[perm] @ Q.T, rtol=tol, atol=tol * max(1.0, float(forces.abs().max())))


@pytest.mark.parametrize("improper", [False, True])
def test_energy_invariant_forces_equivariant(product: str, improper: bool) -> None:
    model, graph = tiny_model(product), random_molecule()
    g = torch.Generator().manual_seed(3)
    Q = random_rotation(dtype=torch.float64, generator=g) * (-1.0 if improper else 1.0)
    shift = torch.randn(3, dtype=torch.float64, generator=g) * 5
    perm = torch.randperm(graph.num_nodes, generator=g)
    assert_symmetric(model, graph, Q, shift, perm)


def test_inversion_alone(product: str) -> None:
    model, graph = tiny_model(product), random_molecule(seed=1)
    eye = torch.eye(3, dtype=torch.float64)
    assert_symmetric(model, graph, -eye, torch.zeros(3, dtype=torch.float64), torch.arange(graph.num_nodes))


def test_symmetry_checker_detects_a_broken_model() -> None:
    """Test the tester: a model with an energy term that depends on the absolute x coordinate must fail."""

    class Broken(GauntPotential):
        def _node_energy(self, graph, index, positions, cell):
            return super()._node_energy(graph, index, positions, cell) + 1e-3 * positions[:, 0]

    torch.manual_seed(0)
    broken = Broken(tiny_model("grid").config).double()
    graph = random_molecule()
    Q = random_rotation(dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError):
        assert_symmetric(broken, graph, Q, torch.zeros(3, dtype=torch.float64), torch.arange(graph.num_nodes))


def test_forces_equal_finite_differences(product: str) -> None:
    model, graph = tiny_model(product), random_molecule(n=5, seed=2)
    _, forces = _predict(model, graph)
    assert_close(forces, finite_difference_forces(model, graph), rtol=1e-6, atol=1e-7)


def test_hessian_is_symmetric(product: str) -> None:
    model, graph = tiny_model(product), random_molecule(n=5, seed=4)
    second = hessian(model, graph)
    assert float(second.abs().max()) > 1e-6  # not vacuously symmetric
    assert_close(second, second.T, rtol=1e-10, atol=1e-10)


def test_gradcheck_and_double_backward(product: str) -> None:
    model, graph = tiny_model(product, num_interactions=1), random_molecule(n=4, seed=5)

    def energy(positions):
        return model(replace(graph, positions=positions), compute_forces=False)["energy"]

    def forces(positions):
        return model(replace(graph, positions=positions), create_graph=True)["forces"]

    positions = graph.positions.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(energy, (positions,))
    assert torch.autograd.gradcheck(forces, (positions,))  # the derivative of the forces (the Hessian)


def test_weights_get_force_gradients(product: str) -> None:
    """Force training differentiates the forces w.r.t. the weights (double backward through every layer)."""
    model, graph = tiny_model(product).train(), random_molecule(seed=6)
    model(graph)["forces"].square().sum().backward()
    # every weight except the read-out MLP's last bias (a constant energy, no force) shapes the forces
    constant = {"readouts.1.net.2.bias"}
    dead = [
        n
        for n, p in model.named_parameters()
        if p.numel() and n not in constant and (p.grad is None or float(p.grad.abs().max()) == 0.0)
    ]
    assert not dead, f"parameters without force gradients: {dead}"


def test_batch_equals_separate_structures() -> None:
    model = tiny_model("grid")
    graphs = [random_molecule(n=n, seed=s) for n, s in ((5, 1), (7, 2), (3, 3))]
    batch = collate(graphs)
    out = model(batch)
    for k, g in enumerate(graphs):
        single = model(g)
        assert_close(out["energy"][k], single["energy"][0], rtol=1e-12, atol=1e-12)
    assert_close(out["forces"], torch.cat([model(g)["forces"] for g in graphs]), rtol=1e-12, atol=1e-12)


def isolated_atom_errors(model: GauntPotential) -> list[float]:
    """Per element of the model: |E(one atom alone) - E0| + |F| (eV), and the same for two atoms r_max apart."""
    errors, r_max = [], model.config.r_max
    for z in model.config.atomic_numbers:
        e0 = model.config.atomic_energies[z]
        out = model(molecule_graph(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([z]), r_max))
        errors.append(abs(float(out["energy"].detach()) - e0) + float(out["forces"].detach().abs().max()))
        pair = torch.tensor([[0.0, 0.0, 0.0], [r_max, 0.0, 0.0]], dtype=torch.float64)
        out = model(molecule_graph(pair, torch.tensor([z, z]), r_max + 1e-6), compute_forces=False)
        errors.append(abs(float(out["energy"].detach()) - 2 * e0))  # an edge at the cutoff changes nothing
    return errors


@pytest.mark.parametrize("pair_repulsion", [False, True])
def test_isolated_atoms_give_e0(product: str, pair_repulsion: bool) -> None:
    """A neighbour-less atom has energy exactly E0 (not E0 + shift + the read-out of the bare embedding),
    with a non-zero shift and scale (model docstring)."""
    model = tiny_model(product, pair_repulsion=pair_repulsion)
    assert model.config.shift[8] == 0.1 and model.config.scale == 0.7
    assert max(isolated_atom_errors(model)) < 1e-9
    bonded = model(random_molecule(), compute_forces=False)["node_energy"].detach()
    e0 = model.atomic_energies[model.z_to_index[random_molecule().atomic_numbers]]
    assert float((bonded - e0).abs().min()) > 1e-3  # bonded atoms do differ from E0 (not vacuous)


def test_isolated_atom_check_detects_an_extra_constant() -> None:
    """Test the tester: a model that adds 1234.5 eV per atom fails, and so does the form saved before
    ``isolated_atom_e0`` (E0 + shift + scale * read-out: off by the shift and the bare read-out)."""

    class Constant(GauntPotential):
        def _node_energy(self, graph, index, positions, cell):
            return super()._node_energy(graph, index, positions, cell) + 1234.5

    torch.manual_seed(0)
    assert max(isolated_atom_errors(Constant(tiny_model("grid").config).double())) > 1000
    assert max(isolated_atom_errors(tiny_model("grid", isolated_atom_e0=False))) > 0.05


@pytest.mark.parametrize("product", ["grid", "cg"])
def test_save_load_round_trip(tmp_path, product) -> None:
    model, graph = tiny_model(product), random_molecule()
    path = tmp_path / "m.model"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.config == model.config
    assert_close(loaded(graph)["energy"], model(graph)["energy"], rtol=0, atol=0)
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_model_saved_with_old_names_loads(tmp_path) -> None:
    """A file written before the renames (``hidden_lmax``, ``num_bessel``; one ``shift``, no
    ``isolated_atom_e0``) loads without a warning and keeps its energies (checked once against the code
    of that time: -7095.533396709142 eV on this molecule, to float32 rounding)."""
    model, graph = tiny_model("grid", isolated_atom_e0=False), random_molecule()
    state = model_state(model)
    config = state["config"]
    config["hidden_lmax"], config["num_bessel"] = config.pop("max_L"), config.pop("num_radial_basis")
    for key in ("isolated_atom_e0", "pair_repulsion", "pair_repulsion_distances"):
        del config[key]
    config["shift"] = 0.1
    torch.save(state, tmp_path / "old.model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(tmp_path / "old.model")
    assert (loaded.config.max_L, loaded.config.num_radial_basis, loaded.config.isolated_atom_e0) == (1, 4, False)
    assert_close(loaded(graph)["energy"], model(graph)["energy"], rtol=0, atol=0)
    # float32 model: the fused executor sums in another order than the torch ops of that time (2e-7 relative)
    assert float(loaded(graph)["energy"].detach()) == pytest.approx(-7095.533396709142, rel=1e-6)
    config["max_L"] = 1
    with pytest.raises(ValueError, match="both 'hidden_lmax' and its new name 'max_L'"):
        model_from_state(state)


def test_float32_model_matches_float64() -> None:
    model64, graph = tiny_model("grid"), random_molecule()
    model32 = tiny_model("grid").float()
    out32 = model32(graph.to(dtype=torch.float32))
    out64 = model64(graph)
    assert out32["energy"].dtype == torch.float32
    assert_close(out32["forces"].double(), out64["forces"], rtol=1e-4, atol=1e-4)


def test_bad_input_errors() -> None:
    model, graph = tiny_model("grid"), random_molecule()
    with pytest.raises(ValueError, match="unknown atomic numbers \\[79\\]"):
        model(replace(graph, atomic_numbers=graph.atomic_numbers.clone().index_fill_(0, torch.tensor([0]), 79)))
    with pytest.raises(ValueError, match="NaN"):
        model(replace(graph, positions=graph.positions.clone().index_fill_(0, torch.tensor([1]), float("nan"))))
    with pytest.raises(TypeError, match="float32"):
        model(graph.to(dtype=torch.float32))
    empty = molecule_graph(torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.long), 4.0)
    with pytest.raises(ValueError, match="empty graph"):
        model(empty)
    with pytest.raises(ValueError, match="periodic in x, y and z"):
        model(graph, compute_stress=True)
    periodic = replace(graph, pbc=torch.ones(1, 3, dtype=torch.bool))  # pbc but a zero cell
    with pytest.raises(ValueError, match="non-zero volume"):
        model(periodic, compute_stress=True)
    with pytest.raises(ValueError, match="product"):
        PotentialConfig(atomic_numbers=[1], product="e3nn")
    with pytest.raises(ValueError, match="lacks elements \\[6\\]"):
        PotentialConfig(atomic_numbers=[1, 6], atomic_energies={1: -13.6})


def _cutoff_jump(model) -> tuple[float, float]:
    """(|E(r_max - 1e-9) - E(r_max + 1e-9)|, |E(r_max - 0.5) - E(r_max + 1e-9)|) for atom 3 moving along x away
    from atom 0 (its distances to atoms 1 and 2 stay inside the cutoff). A smooth energy changes by
    |F| * 2e-9 across the cutoff; a jump is a bug."""
    r_max = model.config.r_max
    base = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.2, 0.3]], dtype=torch.float64)
    numbers = torch.tensor([6, 1, 8, 7])

    def energy(x: float) -> float:
        positions = torch.cat([base, torch.tensor([[x, 0.0, 0.0]], dtype=torch.float64)])
        return float(model(molecule_graph(positions, numbers, r_max), compute_forces=False)["energy"].detach())

    outside = energy(r_max + 1e-9)
    return abs(energy(r_max - 1e-9) - outside), abs(energy(r_max - 0.5) - outside)


def test_energy_is_continuous_as_an_edge_crosses_the_cutoff(product: str) -> None:
    """Radial weights vanish at r_max (no biases in the radial MLP), so edges enter and leave smoothly."""
    jump, interaction = _cutoff_jump(tiny_model(product))
    assert jump < 1e-8
    assert interaction > 1e-6  # atom 3 does interact with atom 0 inside the cutoff (not vacuous)


def test_cutoff_check_detects_radial_biases() -> None:
    """Test the tester: trained biases in the radial MLP make a jump at the cutoff (found by the NVE test)."""
    model = tiny_model("grid")
    torch.manual_seed(1)
    for block in model.blocks:
        mlp = block.conv.radial_mlp
        widths = [m.in_features for m in mlp.layers if isinstance(m, torch.nn.Linear)] + [mlp.out_features]
        block.conv.radial_mlp = RadialMLP(widths[0], widths[1:-1], widths[-1], bias=True).double()
        for layer in block.conv.radial_mlp.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.bias.data.normal_(0.0, 0.3)
    jump, _ = _cutoff_jump(model)
    assert jump > 1e-6


@pytest.mark.parametrize("product_name", ["grid", "gaunt"])
def test_default_executors_equal_the_torch_executor(product_name: str, monkeypatch) -> None:
    """The model with the default ("auto") executors, fused where the fused kernels build, gives the same
    energy, forces and force-loss gradients as the same model on the torch executor everywhere."""
    from gaunt.products import executors

    model, graph = tiny_model(product_name, max_L=2).train(), random_molecule(n=8, seed=7)
    monkeypatch.setitem(executors.PREFERENCE, "cpu", ("torch",))
    reference = tiny_model(product_name, max_L=2).train()
    monkeypatch.undo()
    reference.load_state_dict(model.state_dict())
    chosen = {m.executor for m in model.modules() if hasattr(m, "executor") and isinstance(m.executor, str)}
    assert {m.executor for m in reference.modules() if isinstance(getattr(m, "executor", None), str)} == {"torch"}
    if executors.EXECUTORS["cpu_fused"].unavailable() is None:
        assert "cpu_fused" in chosen
    results = []
    for m in (model, reference):
        out = m(graph)
        loss = out["energy"].square().sum() + out["forces"].square().sum()
        grads = torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad], allow_unused=True)
        results.append([out["energy"], out["forces"], *[g for g in grads if g is not None]])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_forces_and_hessian_on_the_channel_columns_of_the_scaled_weights() -> None:
    """With 8 channels (a multiple of the float64 lanes), the "gaunt" potential's products with per-edge weights
    run on the direct kernel's channel columns (scaled_weights.runs_on_columns): forces equal finite differences
    of the energy and the Hessian is symmetric on that path too."""
    from gaunt.products import cpu_build
    from gaunt.products.executors import cpu_runner
    from gaunt.products.scaled_weights import runs_on_columns

    if cpu_build.unavailable() is not None:
        pytest.skip(cpu_build.unavailable())
    model, graph = tiny_model("gaunt", num_channels=8, num_interactions=1), random_molecule(n=4, seed=3)
    frames = [m for m in model.modules() if getattr(m, "scaled", None) is not None]
    on_columns = [
        runs_on_columns(
            cpu_runner(f.runner).program_id,
            torch.float64,
            (f._w1_index, f._w2_index, f._w3_index),
            f._copy_index if f.copies else None,
        )
        for f in frames
    ]
    assert frames and any(on_columns), on_columns
    _, forces = _predict(model, graph)
    assert_close(forces, finite_difference_forces(model, graph), rtol=1e-6, atol=1e-7)
    second = hessian(model, graph)
    assert float(second.abs().max()) > 1e-6
    assert_close(second, second.T, rtol=1e-10, atol=1e-10)


def test_forces_hessian_and_gradients_with_the_products_on_the_transform_kernel(monkeypatch) -> None:
    """The "gaunt" potential with its products' programs moved onto the transform kernel (the grid: reflected phi
    stages, per-edge scales on blocks of samples; a backward with no graph, here the energy's parameter gradient,
    runs its two derivative programs as one loop that shares the cotangent's synthesis): forces equal finite
    differences of the energy, the Hessian is symmetric, and energy, forces and the parameter gradients of the
    energy and of a force loss equal the same model on the torch executor."""
    from gaunt.products import cpu_build, executors
    from gaunt.products.executors import cpu_runner

    if cpu_build.unavailable() is not None:
        pytest.skip(cpu_build.unavailable())
    model, graph = tiny_model("gaunt", num_interactions=1), random_molecule(n=4, seed=3)
    monkeypatch.setitem(executors.PREFERENCE, "cpu", ("torch",))
    reference = tiny_model("gaunt", num_interactions=1)
    monkeypatch.undo()
    reference.load_state_dict(model.state_dict())
    frames = [m for m in model.modules() if getattr(m, "scaled", None) is not None]
    assert frames
    for frame in frames:
        cpu_runner(frame.runner).use_kernel("transform")
        assert cpu_runner(frame.runner).kernel == "transform"
    _, forces = _predict(model, graph)
    assert_close(forces, finite_difference_forces(model, graph), rtol=1e-6, atol=1e-7)
    second = hessian(model, graph)
    assert float(second.abs().max()) > 1e-6
    assert_close(second, second.T, rtol=1e-10, atol=1e-10)
    params = [[p for p in m.parameters() if p.requires_grad] for m in (model, reference)]
    results = []
    for m, ps in zip((model, reference), params):
        out = m(graph)
        energy_grads = torch.autograd.grad(out["energy"].sum(), ps, retain_graph=True, allow_unused=True)
        loss = out["forces"].square().sum()
        force_grads = torch.autograd.grad(loss, ps, allow_unused=True)
        results.append([out["energy"], out["forces"], *[g for g in (*energy_grads, *force_grads) if g is not None]])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-10, atol=1e-10)
