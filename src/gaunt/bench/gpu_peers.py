"""Optional CUDA peers: cuEquivariance (``cuequivariance_torch``) and OpenEquivariance (``openequivariance``).

Both run only where their package imports and the device is CUDA; otherwise :func:`build` raises
``RuntimeError`` with the reason, which ``gaunt bench`` records as ``skipped: <reason>`` (never a
silent omission). Neither package is installed on the development machine, so these builders are
written against their documented APIs and are not exercised by the test suite; whatever they compute
is still checked against e3nn before any time is reported (a mistake here shows as "disagrees").

* cuEquivariance: a ``SegmentedTensorProduct`` with subscripts ``u,ui,uj,uk+ijk`` (``uuu``) or
  ``u,ui,j,uk+ijk`` (``uvu`` with mul2 = 1), one segment per irreps block (e3nn's ``mul_ir`` layout)
  and one path per descriptor path with coefficients ``coefficient * coupling`` -- the descriptor
  itself, no normalisation, weights = our per-path weights; run with ``cuequivariance_torch.TensorProduct``.
* OpenEquivariance: ``TPProblem`` with the descriptor's e3nn instructions and the coupling ratios
  folded into the weights (as ``e3nn_interop.to_e3nn``).
"""

from __future__ import annotations

import importlib

import torch

from ..products.descriptor import ProductDescriptor
from ..products.e3nn_interop import e3nn_instructions

_MODULES = {"cuequivariance": "cuequivariance_torch", "openequivariance": "openequivariance"}


def availability(peer: str, device) -> str | None:
    """None if ``peer`` can run on ``device``, else the reason it cannot."""
    module = _MODULES[peer]
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken CUDA extension
        return f"not installed ({module} failed to import: {type(exc).__name__}: {str(exc)[:120]})"
    if torch.device(device).type != "cuda":
        return f"{module} needs a CUDA device (benchmark device is {torch.device(device)})"
    return None


def build(peer: str, d: ProductDescriptor, dtype: torch.dtype, device):
    """``(module, scale, call)``: ``call(module, x1, x2, scale * w) == dense_product(d, x1, x2, w)`` for
    flat per-path weights ``w``; ``RuntimeError`` naming the reason where the peer is unavailable."""
    reason = availability(peer, device)
    if reason is not None:
        raise RuntimeError(reason)
    if peer == "cuequivariance":
        return _build_cuequivariance(d, dtype, device)
    return _build_openequivariance(d, dtype, device)


def _build_cuequivariance(d, dtype, device):  # pragma: no cover - needs CUDA + package
    import cuequivariance as cue
    import cuequivariance_torch as cuet

    modes = {p.mode for p in d.paths}
    mul2 = {mul for mul, _ in d.irreps_in2}
    if modes == {"uuu"}:
        stp = cue.SegmentedTensorProduct.from_subscripts("u,ui,uj,uk+ijk")
    elif modes == {"uvu"} and mul2 == {1}:
        stp = cue.SegmentedTensorProduct.from_subscripts("u,ui,j,uk+ijk")
    else:
        raise RuntimeError(f"cuequivariance builder handles uuu or uvu with mul2 = 1, got modes {sorted(modes)}")
    seg1 = [stp.add_segment(1, (mul, ir.dim)) for mul, ir in d.irreps_in1]
    seg2 = [stp.add_segment(2, (mul, ir.dim) if modes == {"uuu"} else (ir.dim,)) for mul, ir in d.irreps_in2]
    seg3 = [stp.add_segment(3, (mul, ir.dim)) for mul, ir in d.irreps_out]
    for path in d.paths:
        mul = d.irreps_in1[path.i_in1].mul
        w = stp.add_segment(0, (mul,))
        c = (path.coefficient * d.coupling_tensor(path, torch.float64)).numpy()
        stp.add_path(w, seg1[path.i_in1], seg2[path.i_in2], seg3[path.i_out], c=c)
    module = cuet.TensorProduct(stp, device=device, math_dtype=dtype)
    scale = torch.ones(d.weight_numel, dtype=torch.float64)  # coefficients and couplings are in the paths
    return module, scale, lambda m, x1, x2, w: m(w[None, :], x1, x2)


def _build_openequivariance(d, dtype, device):  # pragma: no cover - needs CUDA + package
    import openequivariance as oeq

    instructions, scale = e3nn_instructions(d)
    problem = oeq.TPProblem(
        str(d.irreps_in1),
        str(d.irreps_in2),
        str(d.irreps_out),
        instructions,
        shared_weights=True,
        internal_weights=False,
        irrep_dtype=dtype,
        weight_dtype=dtype,
    )
    module = oeq.TensorProduct(problem)
    return module, scale, lambda m, x1, x2, w: m(x1, x2, w)


__all__ = ["availability", "build"]
