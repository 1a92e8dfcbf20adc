"""The gradient scale of a regularizer at uniform points: one λ that means the same for every method.

Why. The regularizers of arXiv:2502.08231 §3 are normalised in different ways: the kernel
energies (``mhe``, ``uniformity``) average over the N(N−1)/2 pairs, the nearest-neighbour losses
(``mma``, ``koleo``, ``mmcs``) and ``lloyd`` average over rows or samples, ``sliced`` sums over the
rows of each circle, and ``ssw`` is a distance (a square root). Added to a task loss as λ·R(X), the
same λ therefore moves the rows by amounts that differ by orders of magnitude between methods (at
N = 512, d = 64 the per-row gradient of ``sliced`` is about 10⁴ times that of the Gaussian ``mhe``;
docs/guide/regularizers.md, "One λ for every method").

What. The *gradient scale* of a regularizer R at (N, d) is

    c(R, N, d) = E_X [ (1/N) Σ_i ‖(I − x_i x_iᵀ) ∇_{x_i} R(X)‖ ],   x_1..x_N i.i.d. Unif(S^{d−1}),

the expected mean over rows of the norm of the Riemannian gradient (the Euclidean gradient
projected on the tangent space of the sphere at each row), at i.i.d. uniform points — the state a
randomly initialised embedding table starts from. For the methods that draw random directions or
samples per call (``lloyd``, ``sliced``, ``ssw``) the expectation is also over that randomness.
Every regularizer accepts ``normalize=True``, which returns R(X) / c(R, N, d) with N and d the
shape of the X passed: at uniform points the normalised loss has mean per-row Riemannian gradient
norm 1 whatever the method, so λ is the (initial, per-row) size of the regularizer's pull in the
units of the task gradient, and one λ can be compared across methods.

How it is estimated (:func:`scale_draws`). In float64 on the CPU, whatever the dtype and device of
the points the regularizer is later called on (so a run on a GPU divides by the same constant as on
a CPU), from ``torch.Generator().manual_seed(SCALE_SEED)``: each draw takes N fresh uniform points
(:func:`dispersion.sphere.uniform`), then — for ``lloyd``, ``sliced`` and ``ssw``, from the same
generator — the method's own samples or circles, and one forward and one backward pass; c is the
mean over draws of the per-draw mean over rows. Draws are added until the standard error of that
mean is at most :data:`TARGET_REL_SE` (2 %) of it, with at least :data:`MIN_DRAWS` (4) and at most
:data:`MAX_DRAWS` (256) draws — deterministic, since the seed is fixed. Why not a fixed count: the
per-draw spread differs by a factor 100 between methods. Measured at N = 128–2 048, d = 16–64
(relative standard deviation of one draw): 0.4–2 % for the nearest-neighbour losses and ``lloyd``
(a mean of N nearly independent row terms), 2–8 % for ``ssw``, 5–16 % for the kernel energies
(``mhe``, ``uniformity``: at uniform points their row gradients are dominated by the common term
k'·Σ_j x_j, whose norm is a χ variable with d degrees of freedom, relative spread ≈ 1/√(2d) at
any N), 15–35 % for ``sliced`` with one circle (the residuals to the grid form a Brownian bridge
whose overall size does not average out over rows). So ``sliced`` with one circle uses 256 draws
(standard error ≈ 2 %), the kernel energies about 10–60, the nearest-neighbour losses 4.
Pass ``n_draws`` for a fixed count. The value depends on the method's parameters except
``block_size`` (which changes rounding only; the estimate takes the default path) and
``normalize``. Results are cached per (method, parameters, N, d, n_draws, seed) for the life of
the process.

Cost: draws × (one forward + backward pass of the method at (N, d) in float64 on the CPU), paid on
the first call with a new N and d, then a dictionary look-up. For the pairwise methods that is
O(N² d) per draw — 3–11 s a draw on one core of a shared CPU at N = 20 000, d = 64, so 1.5–4 min
for the ~22 draws of ``mhe`` there — so pass them a row minibatch at scale, as the paper does (a
few ms a draw at N = 512); for ``sliced`` O(L N (d + log N)) per draw (14–45 ms at N = 20 000,
d = 64). Measured: ``benchmarks/gradient_scales.py``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping

import torch

from .._checks import check_positive_int, is_int
from ..sphere import uniform

__all__ = [
    "SCALE_SEED",
    "TARGET_REL_SE",
    "MIN_DRAWS",
    "MAX_DRAWS",
    "check_normalize",
    "riemannian_grad_norms",
    "scale_draws",
    "estimate_gradient_scale",
]

#: Seed of the generator behind every estimate (points and random directions).
SCALE_SEED = 0
#: Draws stop once the standard error of the mean is at most this fraction of it...
TARGET_REL_SE = 0.02
#: ... with at least this many draws ...
MIN_DRAWS = 4
#: ... and at most this many.
MAX_DRAWS = 256
#: Parameters that do not enter the scale (rounding only, or the option itself).
_IGNORED = ("block_size", "normalize")

_CACHE: dict[tuple, tuple[float, ...]] = {}


def check_normalize(normalize: Any) -> bool:
    """Return ``normalize`` as a bool (Python or numpy bool), else raise ``TypeError`` naming it."""
    try:
        import numpy as np

        bools = (bool, np.bool_)
    except ImportError:  # pragma: no cover - numpy comes with torch here
        bools = (bool,)
    if not isinstance(normalize, bools):
        raise TypeError(
            f"normalize must be a bool (True divides the loss by its gradient scale at uniform "
            f"points, dispersion.regularizers.gradient_scale), got {normalize!r} of type "
            f"{type(normalize).__name__}"
        )
    return bool(normalize)


def _rel_se(values: list[float]) -> float:
    """Standard error of the mean of ``values``, relative to the mean."""
    k = len(values)
    mean = math.fsum(values) / k
    var = math.fsum((v - mean) ** 2 for v in values) / (k - 1)
    return math.sqrt(var / k) / mean


def riemannian_grad_norms(regularizer: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """‖(I − x_i x_iᵀ) ∇_{x_i} R(X)‖ for every row i of ``X`` (N, d, unit rows): shape (N,).

    ``regularizer``: any callable mapping (N, d) points to a scalar (a :class:`Regularizer`,
    normalised or not). One forward and one backward pass on a detached copy of ``X``.
    """
    Xd = X.detach()
    Xg = Xd.clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(regularizer(Xg), Xg)
    tangent = g - (g * Xd).sum(dim=1, keepdim=True) * Xd
    return tangent.norm(dim=1)


def _key_params(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in params.items() if k not in _IGNORED))


def scale_draws(
    cls: type,
    params: Mapping[str, Any],
    n: int,
    d: int,
    *,
    n_draws: int | None = None,
    seed: int = SCALE_SEED,
) -> tuple[float, ...]:
    """The per-draw mean Riemannian gradient norms whose mean is the gradient scale (cached).

    ``cls``: a :class:`~dispersion.regularizers.base.Regularizer` subclass, ``params`` its keyword
    parameters (``block_size`` and ``normalize`` are ignored). Returns a tuple of floats, one per
    draw: ``n_draws`` of them when given, else as many as the stopping rule of the module
    docstring needs; their spread gives the estimate's standard error.

    Raises ``ValueError``/``TypeError`` naming ``n``, ``d``, ``n_draws`` or ``seed``, and
    ``ValueError`` when the gradient at uniform points is zero or not finite.
    """
    n = check_positive_int(n, "n")
    d = check_positive_int(d, "d")
    if n < 2:
        raise ValueError(f"n must be >= 2 (a dispersion regularizer needs two points), got {n}")
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    if n_draws is not None:
        n_draws = check_positive_int(n_draws, "n_draws")
    if not is_int(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    key = (cls.name, _key_params(params), n, d, n_draws, int(seed))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    gen = torch.Generator().manual_seed(int(seed))
    kwargs = {k: v for k, v in params.items() if k not in _IGNORED}
    params_shown = dict(kwargs)
    if "generator" in inspect.signature(cls.__init__).parameters:
        kwargs["generator"] = gen
    reg = cls(**kwargs)
    with torch.inference_mode(False), torch.enable_grad():  # callable under no_grad/inference_mode
        out = _draw_until(reg, cls.name, params_shown, n, d, n_draws, gen)
    _CACHE[key] = out
    return out


def _draw_until(reg, name: str, params_shown: dict, n: int, d: int, n_draws: int | None,
                gen: torch.Generator) -> tuple[float, ...]:
    """The loop of :func:`scale_draws`: per-draw mean row norms until the stopping rule holds."""
    means: list[float] = []
    while True:
        X = uniform(n, d, generator=gen, dtype=torch.float64)
        m = riemannian_grad_norms(reg, X).mean().item()
        if not (math.isfinite(m) and m > 0):
            raise ValueError(
                f"the gradient of {name} with {params_shown} at uniform points (N={n}, d={d}) is "
                f"zero or not finite (mean row norm {m}); normalize=True cannot be used there"
            )
        means.append(m)
        k = len(means)
        if n_draws is not None:
            if k == n_draws:
                break
        elif k >= MAX_DRAWS or (k >= MIN_DRAWS and _rel_se(means) <= TARGET_REL_SE):
            break
    return tuple(means)


def estimate_gradient_scale(cls: type, params: Mapping[str, Any], n: int, d: int, *,
                            n_draws: int | None = None, seed: int = SCALE_SEED) -> float:
    """c(R, N, d): the mean of :func:`scale_draws` (module docstring); a positive finite float."""
    draws = scale_draws(cls, params, n, d, n_draws=n_draws, seed=seed)
    return math.fsum(draws) / len(draws)
