"""The conformance checks every registered product and every executor must pass (``test_conformance.py``).

Each check takes a registry entry (``gaunt.products.PRODUCTS``) and an executor name and builds its own
small products from :func:`examples`, so that a newly registered product is checked with nothing else
edited (``test_registry.py`` registers one and runs these). All in float64 with tight tolerances unless
the check is about float32. Tensors live on ``DEVICE`` (``GAUNT_TEST_DEVICE``, default "cpu"; the GPU script
``benchmarks/gpu/run.sh`` runs the suite with "cuda").
"""

from __future__ import annotations

import inspect
import os

import torch
from conftest import assert_equivariant, random_inputs

from gaunt.products import EXECUTORS, ProductSpec, dense_product

F64 = torch.float64
DEVICE = os.environ.get("GAUNT_TEST_DEVICE", "cpu")
if DEVICE == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 checks to 1e-5: no TF32 in any executor's matmuls
#: executors that run in an interpreter here (Triton's kernels on the CPU, ~20 ms a launch): their gradcheck and
#: gradgradcheck use ``fast_mode`` (the same checks on random projections of the Jacobians, far fewer evaluations;
#: ``test_triton.py`` compares their derivative programs with the torch executor's entry by entry)
INTERPRETED = ("triton",) if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") == "1" else ()

#: small irreps cases per kind of product: (irreps_in1, irreps_in2, irreps_out); edge products get the edge
#: harmonics as irreps_in2 and are called with edge vectors
SPHERE_CASES = (
    ("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e+2x3o"),
    ("2x0e+2x1o", "0e+1o+2e", "2x0e+2x1o+2x2e"),  # x2 with one channel, broadcast
    ("2x0o+2x1e", "2x0e+2x1o", "2x0o+2x1e+2x2o"),  # pseudo input
    ("2x1o+2x3o", "2x0e+2x2e", "2x1o+2x3o+2x5o"),  # missing degrees
)
VECTOR_CASES = (("2x0e+2x1o+2x2e", "2x0e+2x1o", "2x0e+2x1o+2x1e+2x2e"), ("1o", "1o", "1e"))
ANY_CASES = (("2x0e+2x1o+2x1e", "0e+1o+1e", "2x0e+2x1o+2x1e+2x2e"),)
EDGE_CASES = (("2x0e+2x1o+2x2e", "0e+1o+2e", "2x0e+2x1o+2x2e"), ("2x0e+2x1o", "0e+1o+2e+3o", "2x1o+2x2e"))


def examples(spec: ProductSpec) -> tuple[tuple[str, str, str], ...]:
    if spec.edge:
        return EDGE_CASES
    if spec.name == "vector":
        return VECTOR_CASES
    return SPHERE_CASES if spec.accepts == "sphere" else ANY_CASES


def executors_of(spec: ProductSpec) -> tuple[str, ...]:
    """The executors a product can be built with (its ``executor=`` option), or just its own one."""
    if "executor" in inspect.signature(spec.cls).parameters and "transform" not in spec.options:
        return tuple(EXECUTORS)
    return ("torch",)


def build(spec: ProductSpec, irreps, executor: str, weights: str = "per_sample", **kw) -> torch.nn.Module:
    if "executor" in inspect.signature(spec.cls).parameters:
        kw["executor"] = executor
    modes = {"per_sample": (False, False), "shared": (False, True), "internal": (True, True)}
    internal, shared = modes[weights]
    product = spec.build(*irreps, internal_weights=internal, shared_weights=shared, **kw).double().to(DEVICE)
    if internal:
        g = torch.Generator().manual_seed(3)  # on the CPU: the same weights on every device
        with torch.no_grad():
            product.weight.copy_(torch.randn(product.weight.shape, generator=g, dtype=product.weight.dtype))
    return product


def second_input_of_descriptor(product, x2: torch.Tensor) -> torch.Tensor:
    return product.edge_harmonics(x2) if product.takes_edge_vectors else x2


def inputs_of(product, batch, dtype, seed):
    """``random_inputs`` on ``DEVICE``."""
    return random_inputs(product, batch, dtype, seed=seed, device=DEVICE)


def check_matches_descriptor(spec, executor, weights="per_sample") -> None:
    """``product == dense_product(descriptor, x1, x2, path_weights)`` (the plain-einsum oracle), 1e-10."""
    for k, irreps in enumerate(examples(spec)):
        product = build(spec, irreps, executor, weights)
        x1, x2, w = inputs_of(product, (5,), F64, seed=k)
        expected = dense_product(
            product.descriptor(), x1, second_input_of_descriptor(product, x2), product.path_weights(w)
        )
        torch.testing.assert_close(product(x1, x2, w), expected, rtol=1e-10, atol=1e-10)


def check_equivariance(spec, executor) -> None:
    """Rotations, improper rotations and inversion in float64 to 1e-12 of the output scale (non-vacuous)."""
    for k, irreps in enumerate(examples(spec)):
        product = build(spec, irreps, executor)
        assert_equivariant(product, *inputs_of(product, (3,), F64, seed=10 + k))


def check_gradients(spec, executor) -> None:
    """gradcheck and gradgradcheck of every input and the weights (backward and double backward)."""
    product = build(spec, examples(spec)[-1], executor)
    inputs = [t.requires_grad_() for t in inputs_of(product, (2,), F64, seed=20)]
    fn = lambda a, b, w: product(a, b, w)  # noqa: E731
    fast = executor in INTERPRETED
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=fast)
    assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=fast)


def check_broadcasting_and_empty(spec, executor) -> None:
    """Leading batch dimensions broadcast like elementwise ops; an empty batch gives an empty output."""
    product = build(spec, examples(spec)[0], executor)
    x1, x2, w = inputs_of(product, (2, 3), F64, seed=30)
    out = product(x1, x2, w)
    assert out.shape == (2, 3, product.irreps_out.dim)
    flat = product(x1.reshape(6, -1), x2.reshape(6, -1), w.reshape(6, -1))
    torch.testing.assert_close(out, flat.reshape(2, 3, -1), rtol=1e-12, atol=1e-12)
    broadcast = product(x1[:, :1], x2[0], w)  # [2, 1] x [3] x [2, 3]
    expected = product(x1[:, :1].expand(2, 3, -1), x2[0].expand(2, 3, -1), w)
    torch.testing.assert_close(broadcast, expected, rtol=1e-12, atol=1e-12)
    assert product(x1[:0, 0], x2[:0, 0], w[:0, 0]).shape == (0, product.irreps_out.dim)


def check_blocked_equals_unblocked(spec, executor) -> None:
    """Blocks of 2 samples (uneven last one) give the values and gradients of one block."""
    product = build(spec, examples(spec)[0], executor)
    if not hasattr(product, "chunk_elements"):
        return  # runs without blocks
    x1, x2, w = inputs_of(product, (5,), F64, seed=40)
    x1.requires_grad_()
    results = []
    for chunk in (2 * product.mul * product.frame.grid_points, None):
        product.chunk_elements = chunk
        out = product(x1, x2, w)
        (grad,) = torch.autograd.grad(out.square().sum(), x1)
        results.append((out, grad))
    assert product.frame.block_rows() > 5 and product.chunk_elements is None
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)


def check_compile(spec, executor) -> None:
    """``torch.compile(fullgraph=True)`` (aot_eager) equals eager, forward and input gradient."""
    # every product shares the code of TensorProduct.forward: without a reset, dynamo's recompile limit (8 per
    # code object) is reached after eight products x executors in one session and fullgraph then fails
    torch._dynamo.reset()
    product = build(spec, examples(spec)[0], executor, weights="internal").float()
    x1, x2, _ = inputs_of(product, (4,), torch.float32, seed=50)
    compiled = torch.compile(product, fullgraph=True, backend="aot_eager")
    x1.requires_grad_()
    out = compiled(x1, x2)
    (grad,) = torch.autograd.grad(out.square().sum(), x1)
    eager = product(x1, x2)
    (eager_grad,) = torch.autograd.grad(eager.square().sum(), x1)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-5)


def check_float32(spec, executor) -> None:
    """float32 inputs give the float64 result to 1e-5 of its scale (tables are float64, cast per call)."""
    product = build(spec, examples(spec)[0], executor)
    x1, x2, w = inputs_of(product, (8,), F64, seed=60)
    exact = product(x1, x2, w)
    approx = product(x1.float(), x2.float(), w.float())
    assert approx.dtype == torch.float32
    torch.testing.assert_close(approx.double(), exact, rtol=0, atol=1e-5 * float(exact.abs().max()))


CHECKS = {
    "descriptor": check_matches_descriptor,
    "equivariance": check_equivariance,
    "gradients": check_gradients,
    "broadcasting": check_broadcasting_and_empty,
    "blocks": check_blocked_equals_unblocked,
    "compile": check_compile,
    "float32": check_float32,
}
