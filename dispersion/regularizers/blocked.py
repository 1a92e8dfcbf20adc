"""Full-batch pairwise energies in row blocks, without an N×N tensor (issue 7).

The dense functions of :mod:`dispersion.regularizers.pairwise` build the whole N×N cosine
matrix G = X Xᵀ — at N = 100 000 that is 40 GB in float32 — so they only run on minibatches.
This module computes the same values **and gradients** block by block, in memory
O(N · block_size), and is the path the :class:`~dispersion.regularizers.pairwise.MHE`,
``MMA``, ``KoLeo`` and ``MMCS`` modules take for large N (their ``block_size`` argument).

Kernel energy (``mhe``; arXiv:2502.08231, Liu et al. 2018)
    R(X) = (1/P) Σ_{i<j} k(⟨x_i, x_j⟩),  P = N(N−1)/2, and its gradient
    ∂R/∂x_i = (1/P) Σ_{j≠i} k'(⟨x_i, x_j⟩) x_j,
    with k' = dk/dc the kernel's derivative in the cosine, written in closed form
    (:func:`kernel_value_and_slope`) with the same clamping as the dense reference
    (``pairwise.cosine_clamp_eps``: k' = 0 where the dense path's clamp is active, so the two
    paths agree on coincident and antipodal points too).
    Only the pairs i < j are visited: block I = [s, e) of rows meets the columns [s, N), the
    lower triangle of its leading square is masked, and each block's slope matrix W is used
    twice, ∇[I] += W X[s:]ᵀ-side and ∇[s:] += Wᵀ X[I]. One N²d/2 Gram product plus two N²d/2
    gradient products: 1.5 N²d multiply–adds in all, against 3 N²d for autograd through the
    dense Gram matrix (Gram, then two products in its backward), and half the kernel
    evaluations.

    :class:`BlockedKernelEnergy` is the custom ``torch.autograd.Function``. Because the output
    is a scalar, the whole gradient is one (N, d) tensor — O(N d), the size of X itself — so
    when a gradient will be needed the forward pass accumulates it alongside the value from
    the same blocks (each Gram block and kernel evaluation is shared by value and gradient,
    saving the recomputation of every block in backward), and backward only scales it by the
    incoming gradient. When no gradient is needed (``torch.no_grad()`` or ``X`` without
    ``requires_grad``) only the value is computed. The Function is once-differentiable:
    double backward raises ``RuntimeError``; use the dense path (``block_size="dense"``) for
    higher derivatives.

Nearest-neighbour losses (``mma``, ``koleo``, ``mmcs``: Wang et al. 2020, Sablayrolles et al. 2019, HPN)
    The nearest neighbour j*(i) = argmax_{j≠i} ⟨x_i, x_j⟩ of every row is found block by block
    without gradient (:func:`nearest_neighbors`; again over i < j only, each block reduced
    along its rows and its columns), then the loss is evaluated on the N cosines
    ⟨x_i, x_{j*(i)}⟩ recomputed with autograd (O(N d)): the gradient flows through the argmax
    pair only, as in the dense ``amax``. One difference, at exact ties only: when a point's
    nearest neighbour is duplicated (two bitwise-equal points), the dense ``amax`` splits that
    point's gradient evenly between the copies, the blocked path gives it to the first; both are
    valid subgradients and their sums over the copies agree (``tests/regularizers/test_blocked.py`` checks
    that). Differentiable to any order.

Block size
    ``block_size=None`` or ``"auto"`` picks the rows per block from N, d, the dtype and the
    free memory of the device (:func:`dispersion._sweep.auto_block_size`, the one block-size
    rule of the package, shared with :mod:`dispersion.metrics`; re-exported here). An ``int``
    overrides it. Results do not depend on the block size beyond float rounding.

Every function accepts float32 and float64 on any device (only torch ops that run on CUDA
are used) and returns tensors of the input's dtype and device. Points are not validated
here (the modules validate); ``X`` must be (N, d) with N ≥ 2 and unit rows.
"""

from __future__ import annotations

import math

import torch

from .._sweep import (
    _TEMPS_ENERGY,
    _TEMPS_NEIGHBORS,
    CPU_BLOCK_BUDGET_BYTES,
    CPU_MAX_BLOCK_ROWS,
    CUDA_BLOCK_BUDGET_BYTES,
    CUDA_FREE_FRACTION,
    auto_block_size,
    nearest_neighbors_exact,
    resolve_block_size,
    upper_blocks,
)
from .._transforms import loop_vmap
from .kernels import (
    _check_kernel,
    check_representable,
    chordal_from_cosine,
    cosine_clamp_eps,
    geodesic_from_cosine,
)

__all__ = [
    "CPU_BLOCK_BUDGET_BYTES",
    "CPU_MAX_BLOCK_ROWS",
    "CUDA_BLOCK_BUDGET_BYTES",
    "CUDA_FREE_FRACTION",
    "auto_block_size",
    "resolve_block_size",
    "kernel_value_and_slope",
    "BlockedKernelEnergy",
    "blocked_mhe_energy",
    "nearest_neighbors",
    "blocked_mma_loss",
    "blocked_koleo_loss",
    "blocked_mmcs_loss",
]

# ----------------------------------------------------------------------------------------
# kernels as functions of the cosine, with their slope dk/dc
# ----------------------------------------------------------------------------------------


#: log₂ e: exp(x) is evaluated as exp2(x · log₂ e) (see :func:`kernel_value_and_slope`).
_LOG2E = 1.0 / math.log(2.0)


def kernel_value_and_slope(
    C: torch.Tensor,
    kernel: str = "gaussian",
    distance: str = "chordal",
    gamma: float = 1.0,
    s: float = 1.0,
    *,
    slope: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Kernel values k(c) and slopes dk/dc on a block of cosines ``C`` (any shape).

    Returns ``(K, W, scale)`` with K = k(C) (exactly
    :func:`~dispersion.regularizers.pairwise.kernel_from_cosine`) and the slope
    dk/dc = ``scale`` · W (the constant factor is kept apart so that the Gaussian chordal
    kernel, whose slope is 2γ·k, needs no second tensor: there ``W is K``). ``W`` is ``None``
    with ``slope=False``. The slope is the derivative of the clamped formula, as autograd
    differentiates the dense reference: 0 wherever the cosine clamp [−1+ε, 1−ε]
    (``cosine_clamp_eps``) is active.

    Exponentials are evaluated as exp(x) = 2^(x·log₂e) (``exp2``): on the CPU build of torch used
    here ``exp`` of float32 ran 5× slower than ``exp2`` (8.2 ms against 1.6 ms for 3.8 M entries,
    one core), which made it 40 % of the Gaussian energy's time; the results agree to a few ulp.

    **Overwrites ``C``** (it is used as scratch space); pass a fresh block. Closed forms, with
    d the distance and c the clamped cosine: dd_R/dc = −1/d_R, dd_S/dc = −1/√(1−c²);
    gaussian dk/dd = −2γ d k, laplace −γ k, riesz −s k/d (s ≠ 0) and −1/d (s = 0).
    """
    kernel, distance, gamma, s = _check_kernel(kernel, distance, gamma, s)
    if kernel == "gaussian" and distance == "chordal":
        # k = exp(−γ(2 − 2c)) = exp(2γ(c − 1)); dk/dc = 2γ k. Cosines above 1 (rounding only)
        # count as 1, as in kernel_from_cosine, so that a duplicated point cannot overflow to inf.
        K = C.sub_(1).mul_(2 * gamma * _LOG2E).clamp_(max=0).exp2_()
        return K, (K if slope else None), 2 * gamma
    eps = cosine_clamp_eps(C.dtype)
    if distance == "chordal":
        active = C > 1 - eps if slope else None  # where the dense clamp cuts the gradient
        D = C.clamp_(max=1 - eps).mul_(-2).add_(2).sqrt_()  # d_R, in place of C
        inv_dd = None  # |dd/dc| = 1/d_R, applied below
    else:
        active = ((C < -1 + eps) | (C > 1 - eps)) if slope else None
        C.clamp_(-1 + eps, 1 - eps)
        D = torch.arccos(C)  # d_S
        # |dd/dc| = 1/sqrt(1 − c²), in place of C
        inv_dd = C.square_().neg_().add_(1).rsqrt_() if slope else None
    if kernel == "gaussian":
        K = D.square().mul_(-gamma * _LOG2E).exp2_()
        W = None
        if slope:  # dk/dc = 2γ d k |dd/dc|
            W = D.mul(K).mul_(inv_dd) if inv_dd is not None else K.clone()
            scale = 2 * gamma
    elif kernel == "laplace":
        K = D.mul(-gamma * _LOG2E).exp2_()
        W = None
        if slope:  # dk/dc = γ k |dd/dc|
            W = K.mul(inv_dd) if inv_dd is not None else K.div(D)
            scale = gamma
    else:  # riesz
        if s > 0:
            K = D.pow(-s)
        elif s == 0:
            K = torch.log(D).neg_()
        else:
            K = D.pow(-s).neg_()
        W = None
        if slope:  # dk/dc = (s k / d) |dd/dc|  (s ≠ 0),  (1 / d) |dd/dc|  (s = 0)
            if s != 0:
                W = K.div(D)
                scale = s
            else:
                W = D.reciprocal()
                scale = 1.0
            if inv_dd is not None:
                W.mul_(inv_dd)
            else:
                W.div_(D)
    if not slope:
        return K, None, 1.0
    W.masked_fill_(active, 0)
    return K, W, scale


# ----------------------------------------------------------------------------------------
# the kernel energy
# ----------------------------------------------------------------------------------------


def _strict_upper_mask(b: int, device: torch.device) -> torch.Tensor:
    """(b, b) bool, True strictly below-or-on the diagonal (the entries to drop)."""
    return torch.ones(b, b, dtype=torch.bool, device=device).tril_()


def _energy_and_grad(
    X: torch.Tensor, spec: tuple[str, str, float, float], block: int, with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Σ_{i<j} k(c_ij) (float64 accumulator, 0-dim) and Σ_{j≠i} k'(c_ij) x_j (N, d) or None."""
    n = X.shape[0]
    kernel, distance, gamma, s = spec
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    grad = torch.zeros_like(X) if with_grad else None
    drop_full = _strict_upper_mask(min(block, n), X.device)
    scale = 1.0
    # The Gaussian chordal kernel takes its exponent 2γ(c − 1)·log₂e straight from the product
    # (addmm's alpha and a broadcast shift: no extra pass over the block), then 2^min(0, ·).
    gauss = kernel == "gaussian" and distance == "chordal"
    shift = X.new_full((1, 1), -2.0 * gamma * _LOG2E) if gauss else None
    for s0, e0 in upper_blocks(n, block):
        b = e0 - s0
        Xi, Xj = X[s0:e0], X[s0:]
        if gauss:
            K = torch.addmm(shift, Xi, Xj.T, alpha=2.0 * gamma * _LOG2E).clamp_(max=0).exp2_()
            W, scale = (K if with_grad else None), 2.0 * gamma
        else:
            C = Xi @ Xj.T  # (b, n − s0), cosines of rows s0..e0 with columns s0..n
            K, W, scale = kernel_value_and_slope(C, kernel, distance, gamma, s, slope=with_grad)
            del C
        drop = drop_full[:b, :b]
        K[:, :b].masked_fill_(drop, 0)  # keep j > i only (the true diagonal and below)
        # row sums in X's dtype (cascade summation over ≤ N terms), the running total in float64:
        # summing the block in float64 directly costs a converted copy of it
        total += K.sum(dim=1).sum(dtype=torch.float64)
        if with_grad:
            if W is not K:
                W[:, :b].masked_fill_(drop, 0)
            grad[s0:e0].addmm_(W, Xj)  # row i gets Σ_j w_ij x_j
            grad[s0:].addmm_(W.T, Xi)  # column j gets Σ_i w_ij x_i
        del K, W
    if with_grad:
        grad.mul_(scale)
    return total, grad


class _BlockedKernelEnergyFunction(torch.autograd.Function):
    """The ``torch.autograd.Function`` behind :class:`BlockedKernelEnergy`: outputs the value and,
    as a second non-differentiable output, the gradient accumulated in the forward pass (an
    empty tensor without ``with_grad``), which ``setup_context`` saves for backward — the form
    ``torch.func`` needs. Its vmap rule runs the (data-dependent) block sweep once per member of
    the batch (:func:`dispersion._transforms.loop_vmap`)."""

    @staticmethod
    def forward(X, kernel, distance, gamma, s, block, with_grad):  # noqa: D102
        n = X.shape[0]
        pairs = n * (n - 1) / 2
        total, grad = _energy_and_grad(X, (kernel, distance, gamma, s), block, with_grad)
        if grad is not None:
            grad.div_(pairs)
        return (total / pairs).to(X.dtype), (grad if grad is not None else X.new_empty(0))

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(grad)
        ctx.with_grad = inputs[-1]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g, _g_grad):  # noqa: D102
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        if not ctx.with_grad:  # pragma: no cover - guarded by blocked_mhe_energy
            raise RuntimeError("BlockedKernelEnergy was called with with_grad=False; no gradient was kept")
        (grad,) = ctx.saved_tensors
        return (grad * g, None, None, None, None, None, None)

    @staticmethod
    def vmap(info, in_dims, *args):  # noqa: D102
        return loop_vmap(_BlockedKernelEnergyFunction.forward, info, in_dims, *args)


class BlockedKernelEnergy:
    """Custom autograd Function: R(X) = (1/P) Σ_{i<j} k(⟨x_i, x_j⟩) in row blocks.

    ``apply(X, kernel, distance, gamma, s, block, with_grad)``: ``X`` (N, d) float32/float64,
    any device; ``block`` rows per block (int ≥ 1); ``with_grad`` (bool) — whether to
    accumulate the gradient during the forward pass (see the module docstring; call through
    :func:`blocked_mhe_energy`, which sets it). Returns a 0-dim tensor in X's dtype; the value is
    accumulated in float64. Memory O(N · block) during the call and O(N d) saved for backward.
    The ``torch.autograd.Function`` itself is :attr:`function` (value and stored gradient as two
    outputs, with ``setup_context`` and a vmap rule, so that ``torch.func.grad``/``vmap`` apply).
    """

    function = _BlockedKernelEnergyFunction

    @staticmethod
    def apply(X, kernel, distance, gamma, s, block, with_grad):  # noqa: D102 - documented on the class
        return _BlockedKernelEnergyFunction.apply(X, kernel, distance, gamma, s, block, with_grad)[0]


def blocked_mhe_energy(
    X: torch.Tensor,
    kernel: str = "gaussian",
    distance: str = "chordal",
    gamma: float = 1.0,
    s: float = 1.0,
    block_size: int | str | None = None,
) -> torch.Tensor:
    """Pairwise kernel energy (1/P) Σ_{i<j} k(x_i, x_j), P = N(N−1)/2, in row blocks.

    Same value and gradient as :func:`~dispersion.regularizers.pairwise.mhe_energy` (within
    float rounding; the sum is accumulated in float64), kernels of arXiv:2502.08231, without the
    N×N matrix: O(N² d) time (1.5 N²d multiply–adds with the gradient, 0.5 N²d without), O(N ·
    block_size) memory. ``X``: (N, d), N ≥ 2, unit rows, float32/float64, any device; returns a
    0-dim tensor of X's dtype and device. ``block_size``: rows per block, ``None``/``"auto"``
    for :func:`auto_block_size`. Once differentiable.

    Raises ``ValueError`` for a bad kernel, distance, γ, s or ``block_size``, for ``X`` not
    of shape (N ≥ 2, d), and when the energy or its gradient is not representable in X's dtype
    (every pair underflows, or the value or slope overflows:
    :func:`~dispersion.regularizers.pairwise.check_representable`).
    """
    spec = _check_kernel(kernel, distance, gamma, s)
    _check_shape(X)
    block = resolve_block_size(block_size, X, _TEMPS_ENERGY)
    with_grad = torch.is_grad_enabled() and X.requires_grad
    check_representable(X, *spec, block=block, with_grad=with_grad)
    return BlockedKernelEnergy.apply(X, *spec, block, with_grad)


def _check_shape(X: torch.Tensor) -> None:
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor of shape (N, d), got {type(X).__name__}")
    if X.dim() != 2 or X.shape[0] < 2:
        raise ValueError(f"X must have shape (N, d) with N >= 2, got shape {tuple(X.shape)}")


# ----------------------------------------------------------------------------------------
# nearest neighbours and the losses built on them
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def nearest_neighbors(X: torch.Tensor, block_size: int | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine to the nearest other point and its index, for every row: (values (N,), indices (N,)).

    indices[i] = argmin_{j≠i} ∠(x_i, x_j), the smallest such j on exact ties, found **exactly**
    by the shared search :func:`dispersion._sweep.nearest_neighbors_exact` (candidates by cosine
    within a proven rounding bound, re-measured in float64; also in clusters of near-duplicates,
    where a plain argmax of float cosines can pick a farther point); values[i] = ⟨x_i, x_j⟩ in
    X's dtype. Only the true diagonal i = j is excluded — duplicate points in different blocks
    find each other. Visits the pairs i < j only, O(N² d / 2) time, O(N · block_size) memory, no
    gradient. ``X``: (N ≥ 2, d), float32/float64, any device.
    """
    _check_shape(X)
    block = resolve_block_size(block_size, X, _TEMPS_NEIGHBORS)
    _, arg = nearest_neighbors_exact(X, block)
    return (X * X[arg]).sum(dim=1), arg


class _NearestIndex(torch.autograd.Function):
    """j*(i) of :func:`nearest_neighbors` (N,) int64, no gradient: a Function only for its vmap
    rule, which runs the (data-dependent) search once per member of the batch
    (:func:`dispersion._transforms.loop_vmap`), so that ``torch.func.vmap`` applies."""

    @staticmethod
    def forward(X, block):  # noqa: D102
        return nearest_neighbors_exact(X, block)[1]

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        ctx.mark_non_differentiable(output)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return None, None

    @staticmethod
    def vmap(info, in_dims, X, block):  # noqa: D102
        return loop_vmap(_NearestIndex.forward, info, in_dims, X, block)


def _nearest_cosine_blocked(X: torch.Tensor, block_size: int | str | None) -> torch.Tensor:
    """⟨x_i, x_{j*(i)}⟩ for the nearest neighbour j*(i), shape (N,), differentiable in X."""
    _check_shape(X)
    arg = _NearestIndex.apply(X.detach(), resolve_block_size(block_size, X, _TEMPS_NEIGHBORS))
    return (X * X[arg]).sum(dim=1)


def blocked_mma_loss(X: torch.Tensor, block_size: int | str | None = None) -> torch.Tensor:
    """−(1/N) Σ_i min_{j≠i} d_S(x_i, x_j), radians (MMA, Wang et al. 2020), with a blocked search.

    Same value and gradient as :func:`~dispersion.regularizers.pairwise.mma_loss`; memory
    O(N · block_size). ``X`` (N ≥ 2, d); returns a 0-dim tensor of X's dtype and device.
    """
    return -geodesic_from_cosine(_nearest_cosine_blocked(X, block_size)).mean()


def blocked_koleo_loss(X: torch.Tensor, block_size: int | str | None = None) -> torch.Tensor:
    """−(1/N) Σ_i log min_{j≠i} d_R(x_i, x_j) (KoLeo, Sablayrolles et al. 2019), blocked search.

    Same value and gradient as :func:`~dispersion.regularizers.pairwise.koleo_loss`.
    """
    return -torch.log(chordal_from_cosine(_nearest_cosine_blocked(X, block_size))).mean()


def blocked_mmcs_loss(X: torch.Tensor, block_size: int | str | None = None) -> torch.Tensor:
    """(1/N) Σ_i max_{j≠i} (⟨x_i, x_j⟩ + 1) (MMCS, Mettes et al. 2019), with a blocked search.

    Same value and gradient as :func:`~dispersion.regularizers.pairwise.mmcs_loss`.
    """
    return (_nearest_cosine_blocked(X, block_size) + 1).mean()
