"""Sliced dispersion on great circles (proposed by Tokarchuk et al., arXiv:2502.08231)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_generator, check_positive_int
from .._transforms import loop_vmap
from ..sphere import great_circles
from .base import Regularizer
from .scale import check_normalize

__all__ = ["circle_angles", "sliced_energy_from_angles", "sliced_energy_from_projections", "Sliced"]


def circle_angles(X: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Angles θ of the points ``X`` (N, d) projected on great circles ``frames`` (L, d, 2).

    θ_{l,i} = atan2(⟨x_i, q_l⟩, ⟨x_i, p_l⟩) ∈ (−π, π], radians, shape (L, N); all L circles in
    one batched matrix product. A point orthogonal to the whole circle (projection of norm
    < 1e-12) gets θ = 0 and no gradient, instead of the NaN of atan2'(0, 0).
    """
    proj = torch.einsum("nd,ldk->lkn", X, frames)  # (L, 2, N)
    return _safe_atan2(proj[:, 1], proj[:, 0])


def _safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    ok = (x * x + y * y) > 1e-24
    x_safe = torch.where(ok, x, torch.ones_like(x))
    y_safe = torch.where(ok, y, torch.zeros_like(y))
    return torch.where(ok, torch.atan2(y_safe, x_safe), torch.zeros_like(x))


def sliced_energy_from_angles(theta: torch.Tensor) -> torch.Tensor:
    """Mean over slices of ½ Σ_i (θ_i − θ*_i)², for angles ``theta`` of shape (L, N), radians.

    θ* is the best-dispersed configuration on the circle matched by sorted order: the
    zero-mean equally spaced grid φ_k = −π + (2k − 1)π/N (k = 1..N) rotated to the mean angle,
    θ*_i = mean(θ) + φ_{r(i)} with r(i) the rank of θ_i (sliced dispersion, arXiv:2502.08231; the
    authors' ``ledoh_torch/sliced_dispersion.py``). Cost O(L N log N) for the sort.
    """
    n = theta.shape[1]
    sorted_theta, _ = torch.sort(theta, dim=1, stable=True)  # ties in index order, as the fused path
    k = torch.arange(1, n + 1, dtype=theta.dtype, device=theta.device)
    phi = -math.pi + (2 * k - 1) * math.pi / n
    target = sorted_theta.mean(dim=1, keepdim=True) + phi
    return 0.5 * (sorted_theta - target).square().sum(dim=1).mean()


def _grid(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The zero-mean equally spaced grid φ_k = −π + (2k − 1)π/n, k = 1..n, shape (n,)."""
    k = torch.arange(1, n + 1, dtype=dtype, device=device)
    return -math.pi + (2 * k - 1) * math.pi / n


def _sort_rows(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of ``theta`` (L, N) sorted, and the permutation, equal angles in index order:
    ``torch.sort(theta, dim=1, stable=True)``.

    On the CPU through numpy's ``argsort`` (a vectorised quicksort, x86-simd-sort on AVX-512
    machines), which measured 6× faster than ``torch.sort`` on the CPU build of torch used here
    (5.9 ms against 35 ms for 26 × 20 000 float32 angles, one core). Its quicksort orders equal
    angles arbitrarily — and equal float32 angles are common in a clumped start — so the members
    of every run of equal angles, and only they, are re-sorted by (run, index), an integer key.
    A tie's gradient depends on that order; the reference composition sorts stably too, so the
    two agree bit for bit. Other devices, ``torch.compile`` and tensors wrapped by ``torch.func``
    transforms use ``torch.sort(stable=True)``.
    """
    if theta.device.type != "cpu" or theta.requires_grad or torch.compiler.is_compiling() \
            or torch._C._functorch.is_functorch_wrapped_tensor(theta):  # numpy needs a plain tensor
        return torch.sort(theta, dim=1, stable=True)
    idx = torch.from_numpy(np.argsort(theta.numpy(), axis=1))
    values = theta.gather(1, idx)
    eq = values[:, 1:] == values[:, :-1]  # equal to the predecessor
    if eq.any():
        n = theta.shape[1]
        no_pred = torch.ones_like(values, dtype=torch.bool)
        no_pred[:, 1:] = ~eq
        tie = ~no_pred
        tie[:, :-1] |= eq  # every member of a run of equal angles
        pos = tie.view(-1).nonzero().squeeze(1)  # flattened positions, ascending
        # the flattened position where each member's run starts, then (run start, index) as one
        # integer key: sorting the members by it orders every run by index, in place
        run_start = torch.where(no_pred.view(-1)[pos], pos, 0).cummax(dim=0).values
        flat = idx.view(-1)
        members = flat[pos]
        flat[pos] = members[torch.from_numpy(np.argsort((run_start * n + members).numpy()))]
    return values, idx


class _SlicedFromProjections(torch.autograd.Function):
    """Sliced loss of coordinates P (2, L, N) on L circles, value and gradient fused.

    Forward: θ = atan2(y, x) per circle (θ = 0 where x² + y² ≤ 1e-24, as :func:`_safe_atan2`),
    one batched sort, residuals r = θ_(k) − mean(θ) − φ_k, value ½ mean_l Σ_k r². When
    ``with_grad``, the gradient is formed in the same pass: ∂/∂θ_(k) = r_k − mean(r) (the mean
    term is zero up to rounding since Σ_k φ_k = 0), scattered back to the unsorted order, then
    through atan2 (∂θ/∂x = −y/ρ², ∂θ/∂y = x/ρ², 0 where ρ² ≤ 1e-24). Backward only scales the
    stored (2, L, N) gradient. Once differentiable.

    Written for ``torch.func`` (a ``forward`` without ``ctx`` and a ``setup_context``): the
    stored gradient is the second, non-differentiable output (empty without ``with_grad``), and
    the vmap rule runs the forward once per member of the batch
    (:func:`dispersion._transforms.loop_vmap`; the CPU sort goes through numpy).
    """

    @staticmethod
    def forward(P, with_grad):  # noqa: D102
        _, L, n = P.shape
        x, y = P[0], P[1]
        rho2 = x * x + y * y
        ok = rho2 > 1e-24
        theta = torch.atan2(y, x).masked_fill_(~ok, 0)  # (L, N)
        sorted_theta, idx = _sort_rows(theta)
        del theta
        r = sorted_theta.sub_(sorted_theta.mean(dim=1, keepdim=True)).sub_(_grid(n, P.dtype, P.device))
        value = 0.5 * r.square().sum(dim=1).mean()
        if not with_grad:
            return value, P.new_empty(0)
        r.sub_(r.mean(dim=1, keepdim=True)).div_(L)
        g_theta = torch.empty_like(r).scatter_(1, idx, r)  # (L, N), unsorted order
        del r, idx
        inv = torch.where(ok, rho2.reciprocal_(), torch.zeros_like(rho2)).mul_(g_theta)
        return value, torch.stack([(-y).mul_(inv), x * inv])

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        _, gP = output
        ctx.mark_non_differentiable(gP)
        ctx.save_for_backward(gP)
        ctx.with_grad = inputs[1]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g, _g_gP):  # noqa: D102
        if not ctx.needs_input_grad[0]:
            return None, None
        if not ctx.with_grad:  # pragma: no cover - guarded by sliced_energy_from_projections
            raise RuntimeError("the sliced loss was computed with with_grad=False; no gradient was kept")
        (gP,) = ctx.saved_tensors
        return gP * g, None

    @staticmethod
    def vmap(info, in_dims, P, with_grad):  # noqa: D102
        return loop_vmap(_SlicedFromProjections.forward, info, in_dims, P, with_grad)


def sliced_energy_from_projections(P: torch.Tensor) -> torch.Tensor:
    """Sliced loss from the coordinates of the points on L circles, fused value and gradient.

    ``P``: (2, L, N), P[0, l, i] = ⟨x_i, p_l⟩ and P[1, l, i] = ⟨x_i, q_l⟩ (float32/float64,
    any device). Equals ``sliced_energy_from_angles(_safe_atan2(P[1], P[0]))`` — the same
    formula (arXiv:2502.08231) — with the gradient computed in the forward pass from the sort's
    permutation (no autograd graph through atan2, the sort and the scatter of the sort's
    backward): faster forward+backward on the CPU at N = 10⁶, 13 slices (benchmarks/README.md).
    Once differentiable (double backward raises ``RuntimeError``); compose
    :func:`circle_angles` and :func:`sliced_energy_from_angles` for higher derivatives.
    Returns a 0-dim tensor of P's dtype and device.

    Raises ``ValueError`` when P is not of shape (2, L, N) with L ≥ 1 and N ≥ 1.
    """
    if P.dim() != 3 or P.shape[0] != 2 or P.shape[1] < 1 or P.shape[2] < 1:
        raise ValueError(f"P must have shape (2, L, N), got shape {tuple(P.shape)}")
    with_grad = torch.is_grad_enabled() and P.requires_grad
    return _SlicedFromProjections.apply(P, with_grad)[0]


class Sliced(Regularizer):
    """Sliced dispersion: the expected 1-D dispersion loss over random great circles.

    Each call draws ``n_slices`` great circles (orthonormal pairs from the QR of a d×2
    Gaussian, :func:`dispersion.sphere.great_circles`), projects every point to its angle on
    each circle, and returns :func:`sliced_energy_from_angles` averaged over the circles.
    All circles are handled in one matrix product F (2L, d) @ Xᵀ and one batched sort;
    cost O(L (N d + N log N)); value and gradient are fused
    (:func:`sliced_energy_from_projections`). Input (N, d), unit rows; output a 0-dim tensor.

    With ``axis_aligned=True`` each circle is the coordinate plane (e_a, e_b) of a random
    ordered pair a ≠ b, selected by indexing (``index_select``, no projection product): the
    variant of the paper's synthetic benchmark, where L = round(512² / N).

    Parameters
    ----------
    n_slices : int >= 1
        L, great circles per call (the paper: 1 for NMT and Tammes).
    axis_aligned : bool
    generator : torch.Generator, optional
        Source of the random circles; must be on the device of X.
    normalize : bool
        Divide the value by its gradient scale c(N, d) (:meth:`Regularizer.gradient_scale`), so
        that one λ is comparable across methods; default False (the raw value).
    distributed, process_group, grad_reduction
        Compute on the rows of all ranks (:class:`~dispersion.regularizers.base.Regularizer`;
        default False, None, "mean").
        Distributed, every rank draws the same circles (from rank 0's seed; ``generator`` is
        used on rank 0 only) and projects its own rows; only the L × n_r angles are
        all_gathered and sorted among all N on every rank (:func:`sliced_energy_from_angles`),
        never the rows: (W − 1) · L · n_max · itemsize bytes received per rank and call (n_max
        the largest shard), nothing in backward; O(L (n_r d + N log N)) time per rank.

    Scale: a **sum** over the N rows of each circle (½ Σ_i (θ_i − θ*_i)², averaged over the
    circles). At uniform points the residuals θ_i − θ*_i are those of sorted uniform angles
    against the grid, of size ≈ π/√N, and a residual moves its row by residual/ρ (ρ the norm of
    the row's projection on the circle, ≈ √(2/d)): c ≈ 1.8 √(d/N) for one circle (0.44 at
    N = 512, d = 32; 0.61 at N = 512, d = 64), falling with the number of circles about as
    L^(−0.3) (× 0.67, 0.43, 0.28 for L = 4, 16, 64; their pulls point in different
    directions). The axis-aligned variant has the same scale. At N = 512, d = 64 that is about
    10⁴ times the per-row pull of the Gaussian ``mhe`` — why a raw λ is not comparable.
    """

    name = "sliced"

    def __init__(self, n_slices: int = 1, axis_aligned: bool = False, generator: torch.Generator | None = None,
                 normalize: bool = False, distributed: bool = False, process_group=None,
                 grad_reduction: str = "mean"):
        super().__init__()
        self.n_slices = check_positive_int(n_slices, "n_slices")
        if not isinstance(axis_aligned, bool):
            raise TypeError(f"axis_aligned must be a bool, got {type(axis_aligned).__name__}")
        self.axis_aligned = axis_aligned
        self.generator = check_generator(generator)
        self.normalize = check_normalize(normalize)
        self._set_distributed(distributed, process_group, grad_reduction)

    def _axes(self, d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.randint(0, d, (self.n_slices,), generator=self.generator, device=device)
        b = (a + torch.randint(1, d, (self.n_slices,), generator=self.generator, device=device)) % d
        return a, b

    def projections(self, X: torch.Tensor) -> torch.Tensor:
        """Draw the circles and return the coordinates of X on them, shape (2, L, N).

        Great circles: one product F (2L, d) @ Xᵀ, whose (2L, N) result is already laid out
        for the per-circle sort. Axis-aligned: columns a_l and b_l of X, by ``index_select``.
        """
        n, d = X.shape
        if self.axis_aligned:
            a, b = self._axes(d, X.device)
            return X.index_select(1, torch.cat([a, b])).T.contiguous().view(2, self.n_slices, n)
        frames = great_circles(self.n_slices, d, generator=self.generator, dtype=X.dtype, device=X.device)
        F = frames.permute(2, 0, 1).reshape(2 * self.n_slices, d)  # rows p_1..p_L, q_1..q_L
        return (F @ X.T).view(2, self.n_slices, n)

    def angles(self, X: torch.Tensor) -> torch.Tensor:
        """Draw the circles and return the projected angles, shape (L, N), radians."""
        n, d = X.shape
        if self.axis_aligned:
            a, b = self._axes(d, X.device)
            return _safe_atan2(X[:, b].T, X[:, a].T)
        frames = great_circles(self.n_slices, d, generator=self.generator, dtype=X.dtype, device=X.device)
        return circle_angles(X, frames)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        return sliced_energy_from_projections(self.projections(X))

    def _distributed_energy(self, X: torch.Tensor, shards) -> torch.Tensor:
        # the same circles on every rank; only the (L, n_r) angles are gathered, ranked among all
        # N on every rank, and each rank keeps the gradient of its own angles (no rows travel)
        P = self.projections(X)
        return sliced_energy_from_angles(shards.gather(_safe_atan2(P[1], P[0]), dim=1))

    def hparams(self) -> dict:
        return {"n_slices": self.n_slices, "axis_aligned": self.axis_aligned, **self._normalize_hparams()}
