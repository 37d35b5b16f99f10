"""Tests of ``gaunt.nn.convolution``: the point convolution with every product, and the edge-aligned
Gaunt fast path ("gaunt_z") against the plain Gaunt / CG convolution."""

from __future__ import annotations

import logging

import pytest
import torch

from gaunt.nn.convolution import EquivariantConvolution
from gaunt.products import EdgeAlignedGauntProduct, GauntProduct
from gaunt.products.descriptor import Path, ProductDescriptor, dense_product
from gaunt.so3 import Irreps, clebsch_gordan, gaunt_coefficients, irreps_wigner_d, random_rotation, spherical_harmonics

torch.manual_seed(0)

NODE, LMAX, OUT, RADIAL = "3x0e+3x1o+3x2e", 2, "3x0e+3x1o+3x2e+3x3o", 4
PRODUCTS = ["cg", "so2", "gaunt", "grid", "gaunt_z", "vector"]


def sphere(mul: int, lmax: int) -> Irreps:
    return Irreps([(mul, (l, (-1) ** l)) for l in range(lmax + 1)])


def graph(irreps_node=NODE, n_nodes: int = 5, n_edges: int = 12, seed: int = 0, batch=()):
    """Random graph, float64; edges 0 and 1 lie exactly along +y and -y (the poles of the edge frame)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, n_nodes, Irreps(irreps_node).dim, generator=g, dtype=torch.float64)
    edge_index = torch.randint(0, n_nodes, (2, n_edges), generator=g)
    vectors = torch.randn(*batch, n_edges, 3, generator=g, dtype=torch.float64)
    vectors[..., 0, :] = torch.tensor([0.0, 1.3, 0.0], dtype=torch.float64)
    vectors[..., 1, :] = torch.tensor([0.0, -0.7, 0.0], dtype=torch.float64)
    radial = torch.randn(*batch, n_edges, RADIAL, generator=g, dtype=torch.float64)
    return x, edge_index, vectors, radial


def conv(product: str, irreps_node=NODE, lmax=LMAX, irreps_out=OUT, seed: int = 1, **kw) -> EquivariantConvolution:
    torch.manual_seed(seed)
    return EquivariantConvolution(irreps_node, lmax, irreps_out, RADIAL, product=product, hidden=(8,), **kw).double()


def gaunt_as_cg(descriptor: ProductDescriptor) -> ProductDescriptor:
    """The same paths with Clebsch-Gordan couplings: G = ratio C, the ratio moved into the coefficient."""
    paths = []
    for p in descriptor.paths:
        (_, a), (_, b), (_, c) = descriptor.irreps(p)
        ratio = float((gaunt_coefficients(a.l, b.l, c.l) * clebsch_gordan(a.l, b.l, c.l)).sum())
        paths.append(Path(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, p.coefficient * ratio, "cg"))
    return ProductDescriptor(descriptor.irreps_in1, descriptor.irreps_in2, descriptor.irreps_out, tuple(paths))


# ----------------------------------------------------------------------------- the fast path (must-show)
@pytest.mark.parametrize("method", ["dft", "direct", "quadrature"])
@pytest.mark.parametrize(
    "irreps_node, lmax, irreps_out",
    [
        (NODE, LMAX, OUT),
        ("2x0e+2x1o+2x2e+2x3o", 1, "2x0e+2x1o"),  # L_out < L_node
        ("2x0o+2x1e+2x2o", 3, "2x0o+2x1e+2x2o+2x3e"),  # pseudo sign
        ("2x0e+2x2e", 4, "2x1o+2x3o"),  # missing degrees
        (sphere(2, 6), 6, sphere(2, 6)),  # L = 6
    ],
)
def test_gaunt_z_equals_the_cg_convolution_with_gaunt_paths(method, irreps_node, lmax, irreps_out):
    fast = conv("gaunt_z", irreps_node, lmax, irreps_out, method=method)
    plain = conv("gaunt", irreps_node, lmax, irreps_out)
    plain.load_state_dict(fast.state_dict())  # the same radial MLP: the same per-edge weights
    x, edge_index, vectors, radial = graph(irreps_node)
    out = fast(x, edge_index, vectors, radial)
    assert torch.isfinite(out).all() and out.abs().max() > 1e-3
    torch.testing.assert_close(out, plain(x, edge_index, vectors, radial), rtol=1e-10, atol=1e-10)
    # independent oracle: the same paths as plain Clebsch-Gordan einsums, per edge, summed over receivers
    weights = fast.product.path_weights(fast.radial_mlp(radial))
    y = spherical_harmonics(lmax, vectors, normalization="component")
    messages = dense_product(gaunt_as_cg(fast.product.descriptor()), x[edge_index[0]], y, weights)
    expected = torch.zeros_like(out).index_add(0, edge_index[1], messages)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_gaunt_z_product_alone_matches_gaunt_product():
    p = EdgeAlignedGauntProduct(NODE, LMAX, OUT, internal_weights=False, shared_weights=True).double()
    ref = GauntProduct(NODE, Irreps.spherical_harmonics(LMAX), OUT, internal_weights=False, shared_weights=True)
    x, _, vectors, _ = graph(n_nodes=12)
    w = torch.randn(p.weight_numel, dtype=torch.float64)
    torch.testing.assert_close(p(x, vectors, w), ref(x, p.edge_harmonics(vectors), w), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(p.path_weights(w), ref.path_weights(w))
    assert p.descriptor() == ref.descriptor()


def test_cg_and_so2_agree_and_gaunt_and_grid_agree():
    x, edge_index, vectors, radial = graph()
    out = {}
    for name, partner in (("cg", "so2"), ("gaunt", "grid")):
        a, b = conv(name), conv(partner)
        b.load_state_dict(a.state_dict())
        out[name], out[partner] = a(x, edge_index, vectors, radial), b(x, edge_index, vectors, radial)
        torch.testing.assert_close(out[name], out[partner], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(out["cg"], out["gaunt"])  # different weight parametrisations (sanity)


def test_sum_over_receivers_and_avg_num_neighbors():
    m = conv("cg")
    x, edge_index, vectors, radial = graph()
    messages = m.product(x[edge_index[0]], spherical_harmonics(LMAX, vectors, "component"), m.radial_mlp(radial))
    expected = torch.zeros(x.shape[0], m.irreps_out.dim, dtype=x.dtype).index_add(0, edge_index[1], messages)
    torch.testing.assert_close(m(x, edge_index, vectors, radial), expected, rtol=1e-12, atol=1e-12)
    m.avg_num_neighbors = 2.5
    torch.testing.assert_close(m(x, edge_index, vectors, radial), expected / 2.5, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- symmetry and autograd
@pytest.mark.parametrize("product", PRODUCTS)
def test_equivariance_rotating_nodes_and_edges(product):
    m = conv(product)
    x, edge_index, vectors, radial = graph()
    with torch.no_grad():
        out = m(x, edge_index, vectors, radial)
    scale = out.abs().max()
    assert scale > 1e-3
    g = torch.Generator().manual_seed(3)
    for rotation in (random_rotation(generator=g), -random_rotation(generator=g), -torch.eye(3, dtype=torch.float64)):
        d_in, d_out = irreps_wigner_d(m.irreps_node, rotation), irreps_wigner_d(m.irreps_out, rotation)
        with torch.no_grad():
            rotated = m(x @ d_in.T, edge_index, vectors @ rotation.T, radial)
        torch.testing.assert_close(rotated, out @ d_out.T, rtol=0, atol=1e-12 * float(scale))


@pytest.mark.parametrize("product", PRODUCTS)
def test_gradcheck_and_gradgradcheck(product):
    m = conv(product, "1x0e+1x1o", 1, "1x0e+1x1o")
    x, edge_index, vectors, radial = graph("1x0e+1x1o", n_nodes=2, n_edges=3)
    x.requires_grad_(), vectors.requires_grad_(), radial.requires_grad_()
    f = lambda x, v, r: m(x, edge_index, v, r)  # noqa: E731
    fast = product == "gaunt"  # ~25 ms per call (FFTs): random-projection mode keeps this test short
    assert torch.autograd.gradcheck(f, (x, vectors, radial), fast_mode=fast)
    assert torch.autograd.gradgradcheck(f, (x, vectors, radial), fast_mode=fast)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("product", PRODUCTS)
def test_batch_dimensions(product):
    m = conv(product)
    x, edge_index, vectors, radial = graph(batch=(2,))
    out = m(x, edge_index, vectors, radial)
    for b in range(2):
        torch.testing.assert_close(out[b], m(x[b], edge_index, vectors[b], radial[b]), rtol=1e-12, atol=1e-12)
    shared_graph = m(x, edge_index, vectors[0], radial[0])  # several feature sets on one geometry
    torch.testing.assert_close(shared_graph[1], m(x[1], edge_index, vectors[0], radial[0]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("product", PRODUCTS)
def test_empty_graph_and_no_edges(product):
    m = conv(product)
    x, _, _, _ = graph()
    no_edges = (
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(0, 3, dtype=torch.float64),
        torch.zeros(0, RADIAL, dtype=torch.float64),
    )
    assert m(x[:0], *no_edges).shape == (0, m.irreps_out.dim)
    out = m(x, *no_edges)
    torch.testing.assert_close(out, torch.zeros(x.shape[0], m.irreps_out.dim, dtype=x.dtype))


# ----------------------------------------------------------------------------- errors and options
def test_bad_inputs_raise():
    m = conv("gaunt_z")
    x, edge_index, vectors, radial = graph()
    with pytest.raises(IndexError, match="edge_index out of range"):
        m(x, edge_index + 5, vectors, radial)
    with pytest.raises(IndexError, match="edge_index out of range"):
        m(x, edge_index - 5, vectors, radial)
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, E\]"):
        m(x, edge_index[:1], vectors, radial)
    with pytest.raises(TypeError, match="edge_index must be int64"):
        m(x, edge_index.double(), vectors, radial)
    with pytest.raises(ValueError, match="edge_vectors has shape"):
        m(x, edge_index, vectors[:, :2], radial)
    with pytest.raises(ValueError, match="edge_vectors has shape"):
        m(x, edge_index, vectors[:-1], radial)
    with pytest.raises(ValueError, match="edge_radial has shape"):
        m(x, edge_index, vectors, radial[:, :2])
    with pytest.raises(ValueError, match="node_features has shape"):
        m(x[:, :-1], edge_index, vectors, radial)
    with pytest.raises(TypeError, match="dtype mismatch"):
        m(x.float(), edge_index, vectors, radial)
    zero = vectors.clone()
    zero[3] = 0.0
    with pytest.raises(ValueError, match="zero-length edge"):
        m(x, edge_index, zero, radial)


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="cannot be reached"):
        EquivariantConvolution("3x0e", 0, "3x1o", RADIAL, product="cg")
    with pytest.raises(ValueError, match="make_product\\('gaunt_z'\\).*mixes parities"):
        EquivariantConvolution("3x0e+3x1e", 1, "3x0e", RADIAL, product="gaunt_z")
    with pytest.raises(ValueError, match="unknown product"):
        EquivariantConvolution(NODE, LMAX, OUT, RADIAL, product="fft")
    with pytest.raises(ValueError, match="method must be"):
        EquivariantConvolution(NODE, LMAX, OUT, RADIAL, product="gaunt_z", method="fast")
    with pytest.raises(ValueError, match="radial"):
        EquivariantConvolution(NODE, LMAX, OUT, 0)


def test_auto_logs_its_choice(caplog):
    with caplog.at_level(logging.INFO, logger="gaunt.nn"):
        assert EquivariantConvolution(NODE, LMAX, OUT, RADIAL, product="auto").chosen == "grid"
        assert EquivariantConvolution("3x0e+3x1e", 1, "3x1e", RADIAL, product="auto").chosen == "cg"
    assert "chose 'grid'" in caplog.text and "chose 'cg'" in caplog.text


def test_float32_equivariance():
    m = conv("gaunt_z").float()
    x, edge_index, vectors, radial = (t.float() if t.is_floating_point() else t for t in graph())
    out = m(x, edge_index, vectors, radial).detach()
    rotation = random_rotation(generator=torch.Generator().manual_seed(5))
    d_in, d_out = irreps_wigner_d(m.irreps_node, rotation).float(), irreps_wigner_d(m.irreps_out, rotation).float()
    rotated = m(x @ d_in.T, edge_index, vectors @ rotation.float().T, radial)
    torch.testing.assert_close(rotated, out @ d_out.T, rtol=0, atol=1e-5 * float(out.abs().max()))


@pytest.mark.slow  # ~20 s of compilation on 2 cores
@pytest.mark.parametrize("product", ["cg", "gaunt_z"])
def test_compile_matches_eager(product):
    m = conv(product, "2x0e+2x1o", 1, "2x0e+2x1o")
    args = graph("2x0e+2x1o")
    compiled = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(compiled(*args), m(*args), rtol=1e-12, atol=1e-12)


def test_checks_are_not_vacuous():
    """Rotating the edges but not the node features (or another radial MLP) must break the checks above."""
    fast, plain = conv("gaunt_z"), conv("gaunt", seed=7)
    x, edge_index, vectors, radial = graph()
    with pytest.raises(AssertionError):
        torch.testing.assert_close(fast(x, edge_index, vectors, radial), plain(x, edge_index, vectors, radial))
    rotation = random_rotation(generator=torch.Generator().manual_seed(4))
    d_out = irreps_wigner_d(fast.irreps_out, rotation)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(
            fast(x, edge_index, vectors @ rotation.T, radial), fast(x, edge_index, vectors, radial) @ d_out.T
        )


# ----------------------------------------------------------------------------- radial_weights="edge"
@pytest.mark.parametrize("product", ["gaunt", "grid", "gaunt_z"])
def test_edge_radial_weights_equal_all_weights_with_shared_factors(product):
    """radial_weights="edge": the MLP gives w2 only; w1, w3 are shared parameters. The result equals the
    "all" convolution fed the same per-edge weights [w1 | w2 | w3], and is equivariant."""
    m = conv(product, radial_weights="edge")
    with torch.no_grad():
        m.shared_w1.normal_(), m.shared_w3.normal_()
    x, edge_index, vectors, radial = graph()
    out = m(x, edge_index, vectors, radial)
    weights = m.edge_weights(radial)
    assert weights.shape == (radial.shape[0], m.product.weight_numel)
    second = vectors if m.takes_vectors else spherical_harmonics(LMAX, vectors, "component")
    expected = torch.zeros_like(out).index_add(0, edge_index[1], m.product(x[edge_index[0]], second, weights))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    rotation = -random_rotation(generator=torch.Generator().manual_seed(4))
    d_in, d_out = irreps_wigner_d(m.irreps_node, rotation), irreps_wigner_d(m.irreps_out, rotation)
    rotated = m(x @ d_in.T, edge_index, vectors @ rotation.T, radial)
    torch.testing.assert_close(rotated, out @ d_out.T, rtol=0, atol=1e-12 * float(out.abs().max()))
    out.square().sum().backward()
    assert m.shared_w1.grad.abs().max() > 0 and m.shared_w3.grad.abs().max() > 0


def test_edge_radial_weights_are_linear_in_the_mlp_output():
    """The point of "edge": scaling the radial MLP output by c scales the messages by c (not c^3)."""
    m = conv("grid", radial_weights="edge")
    x, edge_index, vectors, radial = graph()
    out = m(x, edge_index, vectors, radial)
    with torch.no_grad():
        last = [layer for layer in m.radial_mlp.layers if isinstance(layer, torch.nn.Linear)][-1]
        last.weight.mul_(3.0)
    torch.testing.assert_close(m(x, edge_index, vectors, radial), 3.0 * out, rtol=1e-12, atol=1e-12)


def test_edge_radial_weights_need_a_gaunt_product():
    with pytest.raises(ValueError, match="radial_weights='edge' needs a Gaunt"):
        conv("cg", radial_weights="edge")
    with pytest.raises(ValueError, match="radial_weights must be"):
        conv("grid", radial_weights="some")


@pytest.mark.parametrize("l_node, l_out", [(2, 3), (0, 3), (0, 1)])  # L1 = 0: the scalar-node shortcut
def test_grid_executor_equals_the_edge_by_edge_convolution(l_node, l_out):
    """ "grid" + "edge" sums on the grid per node (nn.grid_convolution); the same function edge by edge."""
    m = conv("grid", sphere(3, l_node), 3, sphere(3, l_out), radial_weights="edge", avg_num_neighbors=2.5)
    assert m.grid_executor is not None
    with torch.no_grad():
        m.shared_w1.normal_(), m.shared_w3.normal_()
    x, edge_index, vectors, radial = graph(sphere(3, l_node), n_nodes=6, n_edges=20)
    x.requires_grad_(), vectors.requires_grad_()
    fast = m(x, edge_index, vectors, radial)
    executor, m.grid_executor = m.grid_executor, None
    slow = m(x, edge_index, vectors, radial)
    m.grid_executor = executor
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * probe).sum(), (x, vectors))
    g_slow = torch.autograd.grad((slow * probe).sum(), (x, vectors))
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("l_node", [0, 1])
def test_grid_executor_gradcheck(l_node):
    m = conv("grid", sphere(1, l_node), 2, sphere(1, 2), radial_weights="edge")
    x, edge_index, vectors, radial = graph(sphere(1, l_node), n_nodes=3, n_edges=4)
    x.requires_grad_(), vectors.requires_grad_(), radial.requires_grad_()
    f = lambda x, v, r: m(x, edge_index, v, r)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, vectors, radial))
    assert torch.autograd.gradgradcheck(f, (x, vectors, radial))


@pytest.mark.parametrize(
    "executor, l_node",
    [("torch", 1), ("torch", 2), ("torch_programs", 2), ("cpu_fused", 1), ("cpu_fused", 2), ("triton", 1)],
)
def test_grid_executor_on_every_executor(executor, l_node):
    """The grid-summed convolution's per-edge sum (``products.grid_messages``) on each executor equals the
    "torch" one, with first and second derivatives (forces, force training); gradcheck and gradgradcheck
    pass (for Triton, in its interpreter, only at the op level: ``test_triton_grid_messages``, for time)."""
    from gaunt.products.executors import EXECUTORS

    if EXECUTORS[executor].unavailable() is not None:
        pytest.skip(f"{executor}: {EXECUTORS[executor].unavailable()}")
    m = conv("grid", sphere(2, l_node), 2, sphere(2, 2), radial_weights="edge", executor=executor)
    assert m.grid_executor.executor == executor
    ref = conv("grid", sphere(2, l_node), 2, sphere(2, 2), radial_weights="edge", executor="torch")
    ref.load_state_dict(m.state_dict())
    x, edge_index, vectors, radial = graph(sphere(2, l_node), n_nodes=5, n_edges=14)
    x.requires_grad_(), vectors.requires_grad_(), radial.requires_grad_()
    results = []
    for module in (m, ref):
        out = module(x, edge_index, vectors, radial)
        first = torch.autograd.grad((out * out).sum(), (x, vectors, radial), create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), (x, vectors, radial))
        results.append((out, *first, *second))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if executor == "triton":
        return
    x, edge_index, vectors, radial = graph(sphere(2, l_node), n_nodes=3, n_edges=5, seed=3)
    f = lambda x, v, r: m(x, edge_index, v, r)  # noqa: E731
    inputs = (x.requires_grad_(), vectors.requires_grad_(), radial.requires_grad_())
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_grid_executor_survives_deepcopy_and_pickle():
    """Training deep-copies models (EMA, best model); the grid messages' runners are custom ops, resolved anew."""
    import copy
    import pickle

    m = conv("grid", sphere(2, 1), 2, sphere(2, 2), radial_weights="edge")
    x, edge_index, vectors, radial = graph(sphere(2, 1), n_nodes=4, n_edges=9)
    expected = m(x, edge_index, vectors, radial)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone.grid_executor.executor == m.grid_executor.executor
        torch.testing.assert_close(clone(x, edge_index, vectors, radial), expected, rtol=0, atol=0)


@pytest.mark.parametrize("l_node", [0, 1])  # 0: the scalar-node path (identity grid)
def test_grid_executor_compiles_with_no_graph_break(l_node):
    """The grid-summed convolution on the default executor (the fused grid messages) under
    ``torch.compile(fullgraph=True)``: values and the forces-like gradient equal eager."""
    m = conv("grid", sphere(2, l_node), 2, sphere(2, 2), radial_weights="edge")
    x, edge_index, vectors, radial = graph(sphere(2, l_node), n_nodes=5, n_edges=12)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    for module in (compiled, m):
        v = vectors.clone().requires_grad_()
        out = module(x, edge_index, v, radial)
        (grad,) = torch.autograd.grad(out.square().sum(), v)
        if module is compiled:
            expected = (out.detach(), grad)
    torch.testing.assert_close(expected, (out.detach(), grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("l_node", [0, 1])
def test_grid_executor_with_no_nodes_and_constant_grid_table(l_node):
    """N = 0 (an empty graph) gives an empty output (was a reshape error); the grid table y2 must be a constant."""
    from gaunt.products import GridMessages

    m = conv("grid", sphere(2, l_node), 2, sphere(2, 2), radial_weights="edge")
    x = torch.zeros(0, sphere(2, l_node).dim, dtype=torch.float64)
    edge_index = torch.zeros(2, 0, dtype=torch.long)
    vectors, radial = torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, RADIAL, dtype=torch.float64)
    assert m(x, edge_index, vectors, radial).shape == (0, sphere(2, 2).dim)
    f = torch.randn(3, 2, 4, dtype=torch.float64)
    y2 = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    w, y, index = (
        torch.randn(2, 2, 2, dtype=torch.float64),
        torch.randn(2, 4, dtype=torch.float64),
        torch.tensor([0, 1]),
    )
    with pytest.raises(ValueError, match="constant table"):
        GridMessages()(1, f, None, w, y, y2, index, index, 3)


@pytest.mark.parametrize("executor", ["torch", "cpu_fused", "triton"])
@pytest.mark.parametrize("l_node", [0, 2])  # 0: the scalar-node path (identity grid)
def test_grid_executor_equivariance_on_every_executor(executor, l_node):
    """The grid-summed convolution on each executor of its grid messages: rotating node features and edge
    vectors by a rotation, an improper rotation and the inversion rotates the output (float64, 1e-12)."""
    from gaunt.products.executors import EXECUTORS

    if EXECUTORS[executor].unavailable() is not None:
        pytest.skip(f"{executor}: {EXECUTORS[executor].unavailable()}")
    m = conv("grid", sphere(2, l_node), 2, sphere(2, 2), radial_weights="edge", executor=executor)
    assert m.grid_executor.executor == executor
    with torch.no_grad():
        m.shared_w1.normal_(), m.shared_w3.normal_()
    x, edge_index, vectors, radial = graph(sphere(2, l_node), n_nodes=5, n_edges=12)
    with torch.no_grad():
        out = m(x, edge_index, vectors, radial)
    scale = float(out.abs().max())
    assert scale > 1e-3
    g = torch.Generator().manual_seed(3)
    for rotation in (random_rotation(generator=g), -random_rotation(generator=g), -torch.eye(3, dtype=torch.float64)):
        d_in, d_out = irreps_wigner_d(m.irreps_node, rotation), irreps_wigner_d(m.irreps_out, rotation)
        with torch.no_grad():
            rotated = m(x @ d_in.T, edge_index, vectors @ rotation.T, radial)
        torch.testing.assert_close(rotated, out @ d_out.T, rtol=0, atol=1e-12 * scale)
