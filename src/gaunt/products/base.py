"""The interface shared by every tensor product: construction, input checks, weights, broadcasting.

Every product is ``Product(irreps_in1, irreps_in2, irreps_out, **options)`` and is called as
``product(x1, x2, weight=None)`` with ``x1: [..., irreps_in1.dim]``, ``x2: [..., irreps_in2.dim]``
(leading dimensions broadcast) and returns ``[..., irreps_out.dim]`` in e3nn's ``mul_ir`` layout.

Weights follow e3nn: ``internal_weights=True`` keeps a learnable ``[weight_numel]`` parameter;
otherwise the caller passes ``weight`` of shape ``[weight_numel]`` (``shared_weights=True``) or
``[..., weight_numel]`` (one set per sample, broadcasting with the inputs).

Subclasses set ``weight_numel`` and implement ``_forward(x1, x2, weight)`` on checked inputs, and
``descriptor()`` (what is computed: paths and coefficients) apart from how it is executed.
Products whose second input is edge vectors (``SO2Product``, ``EdgeAlignedGauntProduct``) set
``takes_edge_vectors = True`` and give ``edge_harmonics(edge_vectors)``: the second input of their
descriptor (see ``registry``).
"""

from __future__ import annotations

import torch

from ..so3.irreps import Irreps


class TensorProduct(torch.nn.Module):
    """Base class of all products (see module docstring for the calling convention)."""

    weight_numel: int
    #: False: ``forward(x1, x2, weight)`` with x2 of ``irreps_in2``; True: x2 is edge vectors ``[..., 3]``
    takes_edge_vectors: bool = False

    def __init__(
        self,
        irreps_in1,
        irreps_in2,
        irreps_out,
        weight_numel: int,
        internal_weights: bool | None = None,
        shared_weights: bool | None = None,
        check_finite: bool = False,
    ) -> None:
        super().__init__()
        self.irreps_in1 = Irreps(irreps_in1)
        self.irreps_in2 = Irreps(irreps_in2)
        self.irreps_out = Irreps(irreps_out)
        if shared_weights is False and internal_weights is None:
            internal_weights = False
        if shared_weights is None:
            shared_weights = True
        if internal_weights is None:
            internal_weights = shared_weights and weight_numel > 0
        if internal_weights and not shared_weights:
            raise ValueError("internal_weights=True requires shared_weights=True")
        self.weight_numel = int(weight_numel)
        self.internal_weights = bool(internal_weights)
        self.shared_weights = bool(shared_weights)
        self.check_finite = check_finite
        if self.internal_weights:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))
        else:
            self.register_buffer("weight", torch.empty(0), persistent=False)

    def init_weight(self, weight_init: str) -> None:
        """Initialise internal weights: "ones" (the plain product of factorised weights) or "randn"
        (Gaussian, already the default of the parameter); raises on other names."""
        if weight_init not in ("ones", "randn"):
            raise ValueError(f"{type(self).__name__}: weight_init must be 'ones' or 'randn', got {weight_init!r}")
        if self.internal_weights and weight_init == "ones":
            with torch.no_grad():
                self.weight.fill_(1.0)

    def weight_or_internal(self, weight: torch.Tensor | None) -> torch.Tensor:
        """``weight``, or the internal weights when it is None (raises if there are none)."""
        if weight is not None:
            return weight
        if not self.internal_weights:
            raise ValueError(f"{type(self).__name__}: weights are external; pass weight")
        return self.weight

    # ------------------------------------------------------------------ checks
    def _check_inputs(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor | None:
        name = type(self).__name__
        for label, x, irreps in (("x1", x1, self.irreps_in1), ("x2", x2, self.irreps_in2)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() == 0 or x.shape[-1] != irreps.dim:
                raise ValueError(
                    f"{name}: {label} has shape {tuple(x.shape)} but its irreps {irreps} "
                    f"need a last dimension of {irreps.dim}"
                )
            if not x.is_floating_point():
                raise TypeError(f"{name}: {label} must be floating point, got {x.dtype}")
        if x1.dtype != x2.dtype:
            raise TypeError(f"{name}: dtype mismatch, x1 is {x1.dtype} and x2 is {x2.dtype}")
        if x1.device != x2.device:
            raise ValueError(f"{name}: device mismatch, x1 is on {x1.device} and x2 on {x2.device}")
        try:
            batch = torch.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
        except RuntimeError as error:
            raise ValueError(
                f"{name}: batch shapes {tuple(x1.shape[:-1])} and {tuple(x2.shape[:-1])} do not broadcast"
            ) from error

        if weight is None:
            if not self.internal_weights and self.weight_numel > 0:
                raise ValueError(f"{name}: this product has external weights; pass weight of size {self.weight_numel}")
            weight = self.weight if self.internal_weights else None
        elif self.internal_weights:
            raise ValueError(f"{name}: weights are internal; do not pass weight (or build with internal_weights=False)")
        if weight is not None:
            if weight.shape[-1:] != (self.weight_numel,):
                raise ValueError(f"{name}: weight has shape {tuple(weight.shape)}, expected [..., {self.weight_numel}]")
            if self.shared_weights and weight.dim() != 1:
                raise ValueError(
                    f"{name}: shared weights must have shape [{self.weight_numel}], got {tuple(weight.shape)}"
                )
            if not self.shared_weights:
                try:
                    torch.broadcast_shapes(weight.shape[:-1], batch)
                except RuntimeError as error:
                    raise ValueError(
                        f"{name}: per-sample weight batch {tuple(weight.shape[:-1])} "
                        f"does not broadcast with {tuple(batch)}"
                    ) from error
            if weight.device != x1.device:
                raise ValueError(f"{name}: weight is on {weight.device} but inputs are on {x1.device}")
            weight = weight.to(x1.dtype)

        if self.check_finite and not torch.compiler.is_compiling():
            for label, x in (("x1", x1), ("x2", x2), ("weight", weight)):
                if x is not None and x.numel() and not bool(torch.isfinite(x).all()):
                    raise ValueError(f"{name}: {label} contains NaN or inf")
        return weight

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        weight = self._check_inputs(x1, x2, weight)
        return self._forward(x1, x2, weight)

    def _forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------ description
    def descriptor(self):
        """What the product computes: a ``descriptor.ProductDescriptor`` (paths, coefficients, couplings)."""
        raise NotImplementedError(f"{type(self).__name__} does not provide a descriptor")

    def path_weights(self, weight: torch.Tensor | None = None) -> torch.Tensor | None:
        """Map this product's weights (the internal ones when ``weight`` is None) to the descriptor's
        flat per-path weights ``[..., descriptor().weight_numel]``, so that
        ``self(x1, x2, w) == dense_product(self.descriptor(), x1, x2, self.path_weights(w))``.

        Default: the weights already are per-path (identity). Products with another
        parametrisation override this.
        """
        if weight is None:
            return self.weight if self.internal_weights else None
        return weight

    def extra_repr(self) -> str:
        return f"{self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out}, weight_numel={self.weight_numel}"


__all__ = ["TensorProduct"]
