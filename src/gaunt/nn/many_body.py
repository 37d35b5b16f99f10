"""MACE-style many-body features: symmetric powers of the atomic basis A up to correlation order nu.

Input ``A [..., irreps_in.dim]`` (``mul`` channels, e.g. ``16x0e+16x1o+16x2e+16x3o``), output
``B [..., irreps_out.dim]`` (same ``mul``), optionally with weights per chemical element
(``num_elements``; pass ``species`` as integer indices ``[...]`` or one-hot ``[..., num_elements]``).
Everything is channel-wise: channel u of B only depends on channel u of A.

``CGManyBody`` (``product="cg"``, the reference) is a chain of channel-wise Clebsch-Gordan products:

    T_1 = A,      T_k[u, c] = sum_{paths (a, b) -> c} theta_k,p[u] c_p C^{l_a l_b l_c} . (T_{k-1}[u, a] (x) A[u, b])
    B[u, j]  = sum_{k=1}^{nu} W_k[u, j] T_k[u, ir_j]        (ir_j = irrep of output block j)

with all parity-allowed ``uuu`` paths (``paths="all"``; ``paths="gaunt"`` keeps l_a + l_b + l_c even
and intermediate irreps of one sign: the Gaunt paths), e3nn's normalisation ``c_p`` (component,
element), learnable ``theta`` (one per path and channel; start at 1) and read-out weights ``W`` (one per
output block, channel and order). The intermediate ``T_k`` keeps every degree up to
``min(k L, L_out + (nu - k) L)`` (exact: higher degrees cannot reach the output; ``lmax_hidden`` truncates
further). What this computes exactly: every coupling tree ``((A A)_{l12} A)_{l123} ...`` of A^(x)k, but with
*factorised* weights (the product of the theta's along the chain times W), and without MACE's
symmetrisation (MACE's ``SymmetricContraction`` contracts A^(x)nu with a basis U of the symmetric
couplings and learns one free weight per basis element and order, with a Horner-like recursion).
Cost per channel: step k sums ~ k L^3 paths of cost ~ k^2 L^3 each, O(nu^4 L^6) at L_out = L.

``GauntManyBody`` (``product="grid"`` or ``"gaunt"``) reads channel u as a function on the sphere and
takes pointwise powers:

    f_u = sum_{l m} w1[u, l] A[u, l, m] Y[l m],       B[u, l3, m3] = sum_{k in K} w3[k, u, l3] <Y[l3 m3], f_u^k>

(factorised weights; K = the orders k <= nu whose parity s^k matches irreps_out's sign s_out). Exact
evaluation: on the Gauss-Legendre x uniform grid of degree ``k_max L + L_out`` ("grid"), or by 2D Fourier
series on a torus of ``(2 k_max L + 1) x (k_max L + L_out + 1)`` samples, where the powers are the
products of the Fourier series A^2 = A*A, A^3 = A^2*A, ... ("gaunt"; the Fourier transforms folded into real
matrices on half the torus rings, as ``GauntProduct(transform="dft")``: k_max L + 1 rings against the grid's
(k_max L + L_out) // 2 + 1). Both run the same four matmuls. Cost per channel ("grid", n_theta ~ (nu L + L_out)/2,
n_phi ~ nu L + L_out): synthesis (2L+1) n_theta n_phi ~ nu^2 L^3, nu - 1 pointwise products, projection
|K| (2 L_out + 1) n_theta n_phi ~ nu^3 L^2 L_out: O(nu^2 L^3 + nu^3 L^2 L_out) instead of O(nu^4 L^6).
It equals ``GauntManyBody.cg_reference()``: the CG chain with ``paths="gaunt"`` and the weights
``theta = ratio(l_a, l_b, l_c) w1[l_b] (w1[l_a] at k = 2) / c_p``, ``W_1 = w3_1 w1``, ``W_k = w3_k``,
where ``ratio`` = Gaunt / Clebsch-Gordan coefficient (``so3.gaunt_coefficients``).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..products import CGProduct, choose_product, parse_spherical_irreps, power_program
from ..products.executors import build_runner
from ..products.power_runners import RUNNERS
from ..so3 import Irreps, clebsch_gordan, gaunt_coefficients

logger = logging.getLogger("gaunt.nn")


# ============================================================================ shared pieces
class _ElementWeights(torch.nn.Module):
    """A weight table ``[num_elements or 1, numel]`` and the lookup ``species -> [..., numel]``."""

    def __init__(self, numel: int, num_elements: int | None, owner: str) -> None:
        super().__init__()
        if num_elements is not None and (not isinstance(num_elements, int) or num_elements < 1):
            raise ValueError(f"{owner}: num_elements must be a positive integer or None, got {num_elements!r}")
        self.num_elements, self.owner = num_elements, owner
        self.weight = torch.nn.Parameter(torch.zeros(num_elements or 1, numel))

    def lookup(self, batch: torch.Size, species: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """Shared ``[numel]`` or per-sample ``[*batch, numel]`` weights."""
        owner, n = self.owner, self.num_elements
        if n is None:
            if species is not None:
                raise ValueError(f"{owner}: species given but the weights are shared (build with num_elements)")
            return self.weight[0].to(dtype)
        if species is None:
            raise ValueError(f"{owner}: per-element weights (num_elements={n}) need species")
        if species.is_floating_point():  # one-hot (or any mixture) [..., num_elements]
            if species.shape != (*batch, n):
                raise ValueError(f"{owner}: one-hot species has shape {tuple(species.shape)}, expected {(*batch, n)}")
            return species.to(dtype) @ self.weight.to(dtype)
        if species.shape != batch:
            raise ValueError(
                f"{owner}: species has shape {tuple(species.shape)}, expected the batch shape {tuple(batch)}"
            )
        if not torch.compiler.is_compiling() and species.numel() and bool(((species < 0) | (species >= n)).any()):
            raise IndexError(f"{owner}: species out of range: values must lie in [0, {n - 1}]")
        return self.weight.to(dtype)[species]


def _check_features(owner: str, x: torch.Tensor, irreps: Irreps) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: A must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != irreps.dim:
        raise ValueError(f"{owner}: A has shape {tuple(x.shape)}; irreps_in = {irreps} needs [..., {irreps.dim}]")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: A must be floating point, got {x.dtype}")


def _common_mul(irreps: Irreps, label: str, owner: str) -> int:
    muls = {mul for mul, _ in irreps}
    if len(muls) != 1 or 0 in muls:
        raise ValueError(
            f"{owner}: {label} = {irreps} must have one non-zero multiplicity (channels), got {sorted(muls)}"
        )
    return muls.pop()


# ============================================================================ CG reference
class CGManyBody(torch.nn.Module):
    """Chain of channel-wise CG products (module docstring): ``A [..., in.dim] -> B [..., out.dim]``.

    Args: ``irreps_in`` (one mul), ``irreps_out`` (the same mul; every block reachable),
    ``correlation`` nu >= 1, ``num_elements`` (None: shared weights), ``paths`` "all" | "gaunt",
    ``lmax_hidden`` (cap on intermediate degrees; None: exact). ``self.weight.weight``:
    ``[num_elements or 1, numel]`` = the chain steps' ``theta`` (in step order, CGProduct layout),
    then the read-outs ``W_k [mul, n_k]`` for k = 1..k_last.
    """

    def __init__(
        self,
        irreps_in,
        irreps_out,
        correlation: int,
        num_elements: int | None = None,
        paths: str = "all",
        lmax_hidden: int | None = None,
    ) -> None:
        super().__init__()
        owner = "CGManyBody"
        self.irreps_in, self.irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        if not isinstance(correlation, int) or correlation < 1:
            raise ValueError(f"{owner}: correlation must be an integer >= 1, got {correlation!r}")
        if paths not in ("all", "gaunt"):
            raise ValueError(f"{owner}: paths must be 'all' or 'gaunt', got {paths!r}")
        mul = _common_mul(self.irreps_in, "irreps_in", owner)
        if _common_mul(self.irreps_out, "irreps_out", owner) != mul:
            raise ValueError(f"{owner}: irreps_out = {self.irreps_out} must have the multiplicity of irreps_in ({mul})")
        sign = parse_spherical_irreps(self.irreps_in, "irreps_in", owner).sign if paths == "gaunt" else 0
        self.mul, self.correlation, self.paths = mul, correlation, paths
        L, L_out = self.irreps_in.lmax, self.irreps_out.lmax
        in_irreps = [ir for _, ir in self.irreps_in]
        out_irreps = {ir for _, ir in self.irreps_out}
        for k_last in range(correlation, 0, -1):  # the highest order that still reaches an output irrep
            chain = [sorted(set(in_irreps))]
            for k in range(2, k_last + 1):
                lmax_k = min(k * L, L_out + (k_last - k) * L)
                if lmax_hidden is not None and k < k_last:
                    lmax_k = min(lmax_k, lmax_hidden)
                reach = {c for a in chain[-1] for b in in_irreps for c in a * b if c.l <= lmax_k}
                if sign:  # Gaunt paths: T_k is a sphere function of sign s^k
                    reach = {c for c in reach if c.p == sign**k * (-1) ** c.l}
                chain.append(sorted(reach & out_irreps if k == k_last else reach))
            if out_irreps & set(chain[-1]):
                break
        for k in range(len(chain) - 2, 0, -1):  # prune dead ends: keep what is read out or feeds T_{k+1}
            chain[k] = [
                c for c in chain[k] if c in out_irreps or any(set(c * b) & set(chain[k + 1]) for b in in_irreps)
            ]
        self.chain = [self.irreps_in] + [Irreps([(mul, ir) for ir in irs]) for irs in chain[1:]]
        self.steps = torch.nn.ModuleList(
            CGProduct(
                prev,
                self.irreps_in,
                nxt,
                instructions=[
                    (a, b, c, "uuu", True)
                    for a, (_, ira) in enumerate(prev)
                    for b, (_, irb) in enumerate(self.irreps_in)
                    for c, (_, irc) in enumerate(nxt)
                    if irc in ira * irb and (not sign or (ira.l + irb.l + irc.l) % 2 == 0)
                ],
                internal_weights=False,
                shared_weights=num_elements is None,
            )
            for prev, nxt in zip(self.chain, self.chain[1:])
        )
        # read-outs: output position -> position in T_k (or the zero slot T_k.dim) and weight u * n_k + j
        self._read_sizes, reached = [], set()
        for k, irreps_k in enumerate(self.chain):
            where = {ir: sl for (_, ir), sl in zip(irreps_k, irreps_k.slices())}
            blocks = [j for j, (_, ir) in enumerate(self.irreps_out) if ir in where]
            reached |= set(blocks)
            pos, widx = np.full(self.irreps_out.dim, irreps_k.dim), np.zeros(self.irreps_out.dim, dtype=np.int64)
            for n_j, j in enumerate(blocks):
                sl, d = self.irreps_out.slices()[j], self.irreps_out[j].ir.dim
                u = np.repeat(np.arange(mul), d)
                pos[sl] = where[self.irreps_out[j].ir].start + np.arange(mul * d)
                widx[sl] = u * len(blocks) + n_j
            self.register_buffer(f"_read{k}", torch.as_tensor(pos), persistent=False)
            self.register_buffer(f"_rweight{k}", torch.as_tensor(widx), persistent=False)
            self._read_sizes.append(mul * len(blocks))
        missing = [str(b) for j, b in enumerate(self.irreps_out) if j not in reached]
        if missing:
            raise ValueError(
                f"{owner}: output blocks {missing} are not reached by any power A^k, k <= {correlation}, "
                f"of {self.irreps_in} ({paths} paths)"
            )
        self._sizes = [s.weight_numel for s in self.steps] + self._read_sizes
        self.weights = _ElementWeights(sum(self._sizes), num_elements, owner)
        with torch.no_grad():
            w = self.weights.weight.split(self._sizes, dim=-1)
            for t in w[: len(self.steps)]:
                t.fill_(1.0)
            for t in w[len(self.steps) :]:
                t.normal_().mul_(len(self.chain) ** -0.5)

    def forward(self, A: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        """``A [..., irreps_in.dim]`` (, species ``[...]``) -> ``B [..., irreps_out.dim]``."""
        _check_features("CGManyBody", A, self.irreps_in)
        w = self.weights.lookup(A.shape[:-1], species, A.dtype).split(self._sizes, dim=-1)
        T, out = A, None
        for k in range(len(self.chain)):
            if k > 0:
                T = self.steps[k - 1](T, A, w[k - 1])
            if self._read_sizes[k]:
                read, rweight = getattr(self, f"_read{k}"), getattr(self, f"_rweight{k}")
                term = torch.nn.functional.pad(T, (0, 1))[..., read] * w[len(self.steps) + k][..., rweight]
                out = term if out is None else out + term
        return out.expand(*A.shape[:-1], -1)

    def extra_repr(self) -> str:
        chain = " -> ".join(str(c) for c in self.chain)
        head = f"{self.irreps_in} -> {self.irreps_out}, correlation={self.correlation}, paths={self.paths!r}"
        return f"{head}, chain: {chain}"


# ============================================================================ Gaunt powers
class GauntManyBody(torch.nn.Module):
    """Powers of the channels' sphere functions (module docstring): ``A [..., in.dim] -> B [..., out.dim]``.

    Args: ``irreps_in`` = ``mul x (l, s (-1)^l)`` (degrees increasing, one mul, one sign s),
    ``irreps_out`` likewise with the same mul (sign s_out), ``correlation`` nu, ``num_elements``,
    ``method`` "grid" | "fourier", ``executor`` "auto" | "torch" | "cpu_fused" | "triton" (``products.executors``; the
    choice: ``self.executor``). Weights ``self.weights.weight [num_elements or 1, numel]`` =
    ``w1 [mul, L+1]`` then ``w3 [|K|, mul, L_out+1]`` (w1 starts at 1, w3 Gaussian / sqrt|K|).
    """

    def __init__(
        self,
        irreps_in,
        irreps_out,
        correlation: int,
        num_elements: int | None = None,
        method: str = "grid",
        executor: str = "auto",
    ) -> None:
        super().__init__()
        owner = "GauntManyBody"
        if not isinstance(correlation, int) or correlation < 1:
            raise ValueError(f"{owner}: correlation must be an integer >= 1, got {correlation!r}")
        if method not in ("grid", "fourier"):
            raise ValueError(f"{owner}: method must be 'grid' or 'fourier', got {method!r}")
        lin = parse_spherical_irreps(irreps_in, "irreps_in", owner)
        lout = parse_spherical_irreps(irreps_out, "irreps_out", owner)
        if lout.mul != lin.mul:
            raise ValueError(f"{owner}: irreps_out = {lout.irreps} must have the multiplicity of irreps_in ({lin.mul})")
        self.powers = [k for k in range(1, correlation + 1) if lin.sign**k == lout.sign]
        if not self.powers:
            raise ValueError(
                f"{owner}: irreps_out = {lout.irreps} has sign {lout.sign:+d} but every power f^k, k <= "
                f"{correlation}, of irreps_in = {lin.irreps} has sign {lin.sign:+d}"
            )
        degrees, reached = set(lin.degrees), set()  # degrees of f^k, to check that every output degree is reached
        for k in range(1, max(self.powers) + 1):
            if k > 1:
                degrees = {c for a in degrees for b in lin.degrees for c in range(abs(a - b), a + b + 1, 2)}
            if k in self.powers:
                reached |= degrees
        missing = [l for l in lout.degrees if l not in reached]  # noqa: E741
        if missing:
            raise ValueError(
                f"{owner}: output degrees {missing} of {lout.irreps} are not reached by the powers {self.powers}"
            )
        self.irreps_in, self.irreps_out, self.layouts = lin.irreps, lout.irreps, (lin, lout)
        self.correlation, self.method, self.mul, self.num_elements = correlation, method, lin.mul, num_elements
        L, L3 = lin.lmax, lout.lmax
        self._sizes = [lin.mul * (L + 1), len(self.powers) * lin.mul * (L3 + 1)]
        self.weights = _ElementWeights(sum(self._sizes), num_elements, owner)
        with torch.no_grad():
            w1, w3 = self.weights.weight.split(self._sizes, dim=-1)
            w1.fill_(1.0)
            w3.normal_().mul_(len(self.powers) ** -0.5)
        # what to compute: the power program (products.powers); how: the executor's runner (torch, fused C++ or Triton)
        self.program = power_program(lin, lout, self.powers, kind="grid" if method == "grid" else "torus")
        self.runner = build_runner(self.program, executor, RUNNERS)
        self.executor = self.runner.executor
        self.n_theta, self.n_phi = self.program.grid
        # per-position weight indices: w1[u, l] on the input, w3[k, u, l3] on each power's output
        self.register_buffer("_w1_index", torch.as_tensor(lin.weight_index()), persistent=False)
        w3_index = np.arange(len(self.powers))[:, None] * lout.mul * (L3 + 1) + lout.weight_index()[None, :]
        self.register_buffer("_w3_index", torch.as_tensor(w3_index), persistent=False)  # [K, out.dim]

    def forward(self, A: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        """``A [..., irreps_in.dim]`` (, species ``[...]`` or one-hot ``[..., num_elements]``)
        -> ``[..., irreps_out.dim]``.

        ``B[u, l3, m3] = sum_k w3[k, u, l3] <Y[l3 m3], f_u^k>``, ``f_u = sum w1[u, l] A[u, l, m] Y[l m]``."""
        _check_features("GauntManyBody", A, self.irreps_in)
        batch = A.shape[:-1]
        n = math.prod(batch)
        w = self.weights.lookup(batch, species, A.dtype)
        w = w.reshape(n, w.shape[-1]) if w.dim() > 1 else w[None]  # [n or 1, numel]
        if n == 0:  # empty batch (zero-size matmuls are rejected by some backends)
            return A.new_zeros(*batch, self.irreps_out.dim) + 0 * (A.sum() + w.sum())
        x = A.reshape(n, A.shape[-1]) * w[:, self._w1_index]
        y = self.runner(x)  # [n, K, out.dim]: <Y[l3 m3], f^k> per power
        B = (y * w[:, self._sizes[0] + self._w3_index]).sum(1)
        return B.reshape(*batch, self.irreps_out.dim)

    # ---------------------------------------------------------------------- the CG reference
    def cg_reference(self) -> CGManyBody:
        """The CG chain with the Gaunt paths (``CGManyBody(paths="gaunt")``) and the weights that make it
        this same function (module docstring); a new module, weights copied (no gradient link)."""
        (lin, lout), mul = self.layouts, self.mul
        ref = CGManyBody(self.irreps_in, self.irreps_out, self.correlation, self.num_elements, paths="gaunt")
        ref = ref.to(dtype=self.weights.weight.dtype, device=self.weights.weight.device)
        if len(ref.chain) != max(self.powers):  # pragma: no cover - both follow the same reachability rules
            raise AssertionError("CG chain length does not match the highest Gaunt power")
        with torch.no_grad():
            w1, w3 = self.weights.weight.double().split(self._sizes, dim=-1)
            w1 = w1.reshape(-1, mul, lin.lmax + 1)
            w3 = w3.reshape(-1, len(self.powers), mul, lout.lmax + 1)
            pieces = []
            for k, step in enumerate(ref.steps, start=2):
                d = step.descriptor()
                for path in d.paths:
                    (_, ira), (_, irb), (_, irc) = d.irreps(path)
                    theta = _gaunt_ratio(ira.l, irb.l, irc.l) / path.coefficient * w1[:, :, irb.l]
                    pieces.append(theta * w1[:, :, ira.l] if k == 2 else theta)
            for k, size in enumerate(ref._read_sizes, start=1):
                blocks = [j for j, (_, ir) in enumerate(self.irreps_out) if ir in ref.chain[k - 1]]
                if not size:
                    continue
                ls = [self.irreps_out[j].ir.l for j in blocks]
                W = w3[:, self.powers.index(k)][..., ls]  # [E, mul, n_k]
                pieces.append((W * w1[:, :, ls] if k == 1 else W).flatten(1))
            ref.weights.weight.copy_(torch.cat(pieces, dim=-1).to(ref.weights.weight.dtype))
        return ref

    def extra_repr(self) -> str:
        grid = f"{'grid' if self.method == 'grid' else 'torus'} {self.n_theta} x {self.n_phi}, executor={self.executor}"
        return f"{self.irreps_in} -> {self.irreps_out}, powers={self.powers}, {grid}, num_elements={self.num_elements}"


def _gaunt_ratio(l1: int, l2: int, l3: int) -> float:
    """``G = ratio C``: the Gaunt tensor over the (unit-norm) Clebsch-Gordan tensor."""
    return float((gaunt_coefficients(l1, l2, l3) * clebsch_gordan(l1, l2, l3)).sum())


# ============================================================================ the switch
class ManyBodyProduct(torch.nn.Module):
    """``B = sum_{k <= nu} (weighted, coupled) A^k``: ``A [..., irreps_in.dim] -> B [..., irreps_out.dim]``.

    ``product``: "cg" (:class:`CGManyBody`, MACE-like semantics, all parity-allowed paths), "grid" or
    "gaunt" (:class:`GauntManyBody` on a quadrature grid / by 2D Fourier series), "auto" ("grid" when
    the irreps are sphere functions ``mul x (l, s(-1)^l)``, else "cg"; logged, kept in ``.chosen``).
    ``kw`` goes to the chosen class (``paths``, ``lmax_hidden`` for "cg"). Forward:
    ``(A, species=None)``; ``species`` (indices ``[...]`` or one-hot ``[..., num_elements]``) is needed
    iff ``num_elements`` is set.
    """

    def __init__(
        self, irreps_in, irreps_out, correlation: int, product: str = "cg", num_elements: int | None = None, **kw
    ) -> None:
        super().__init__()
        name = product.lower() if isinstance(product, str) else product
        if name not in ("cg", "gaunt", "grid", "auto"):
            raise ValueError(f"ManyBodyProduct: unknown product {product!r}; expected 'cg', 'gaunt', 'grid' or 'auto'")
        if name == "auto":  # the registry's rule, for the products the many-body layer has ("grid" or "cg")
            try:  # the powers of a sphere function are sphere functions: both irreps must be
                parse_spherical_irreps(irreps_in, "irreps_in", "ManyBodyProduct")
                parse_spherical_irreps(irreps_out, "irreps_out", "ManyBodyProduct")
                sphere = True
            except ValueError:
                sphere = False
            name, reason = choose_product(irreps_in, irreps_in, irreps_out, sphere=sphere)
            logger.info(
                "ManyBodyProduct(product='auto'): chose %r for %s -> %s (%s)",
                name,
                Irreps(irreps_in),
                Irreps(irreps_out),
                reason,
            )
        if name == "cg":
            self.body = CGManyBody(irreps_in, irreps_out, correlation, num_elements, **kw)
        else:
            self.body = GauntManyBody(
                irreps_in, irreps_out, correlation, num_elements, method="grid" if name == "grid" else "fourier", **kw
            )
        self.chosen = name
        self.irreps_in, self.irreps_out, self.correlation = self.body.irreps_in, self.body.irreps_out, correlation

    def forward(self, A: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(A, species)


__all__ = ["ManyBodyProduct", "CGManyBody", "GauntManyBody"]
