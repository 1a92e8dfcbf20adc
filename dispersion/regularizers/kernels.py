"""Zonal kernels as functions of the cosine, the distances they use, and the check that a
kernel energy is representable in a dtype (arXiv:2502.08231, §3.1).

Shared by the dense reference (:mod:`dispersion.regularizers.pairwise`) and the blocked path
(:mod:`dispersion.regularizers.blocked`), so that both evaluate the same formula.

Numerics: cosines are clamped to [−1 + ε, 1 − ε] before a distance is taken (ε = 1e-6 in
float32, 1e-12 in float64, :func:`cosine_clamp_eps`), so that ``arccos`` and ``sqrt(2 − 2c)``
have finite gradients when two points coincide or are antipodal.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive, is_real

__all__ = [
    "KERNELS",
    "DISTANCES",
    "cosine_clamp_eps",
    "chordal_from_cosine",
    "geodesic_from_cosine",
    "kernel_from_cosine",
    "check_representable",
]

KERNELS = ("gaussian", "laplace", "riesz")
DISTANCES = ("chordal", "geodesic")


def cosine_clamp_eps(dtype: torch.dtype) -> float:
    """ε of the cosine clamp [−1 + ε, 1 − ε]: 1e-6 for float32, 1e-12 for float64."""
    return 1e-12 if dtype == torch.float64 else 1e-6


def chordal_from_cosine(c: torch.Tensor) -> torch.Tensor:
    """Chordal (Euclidean) distance d_R = ‖x − y‖ = sqrt(2 − 2c) from cosines ``c`` (any shape).

    ``c`` is clamped to at most 1 − ε first (see the module docstring); the result has the
    shape, dtype and device of ``c``.
    """
    eps = cosine_clamp_eps(c.dtype)
    return torch.sqrt(2 - 2 * c.clamp(max=1 - eps))


def geodesic_from_cosine(c: torch.Tensor) -> torch.Tensor:
    """Geodesic distance d_S = arccos(c) in radians, from cosines ``c`` clamped to [−1+ε, 1−ε]."""
    eps = cosine_clamp_eps(c.dtype)
    return torch.arccos(c.clamp(-1 + eps, 1 - eps))


def _check_kernel(kernel: str, distance: str, gamma: float, s: float) -> tuple[str, str, float, float]:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    gamma = check_positive(gamma, "gamma")
    if not is_real(s):
        raise TypeError(f"s must be a real number, got {type(s).__name__}")
    if not math.isfinite(s):
        raise ValueError(f"s must be a finite real number, got {s!r}")
    return kernel, distance, gamma, float(s)


def kernel_from_cosine(
    c: torch.Tensor,
    kernel: str = "gaussian",
    distance: str = "chordal",
    gamma: float = 1.0,
    s: float = 1.0,
) -> torch.Tensor:
    """Zonal kernel k(x, y) = f(⟨x, y⟩) evaluated elementwise on cosines ``c`` (any shape).

    With d = d_R = sqrt(2 − 2c) (``distance="chordal"``) or d = d_S = arccos c
    (``"geodesic"``), the kernels of arXiv:2502.08231 (pairwise kernel energy):

    * ``gaussian``: exp(−γ d²)   (for chordal d this is exp(−2γ(1 − c)), smooth in c; cosines
      above 1, which only rounding produces, count as 1 in the value — so the diagonal of a
      Gram matrix cannot overflow to inf at large γ — while the slope 2γk is kept)
    * ``laplace``:  exp(−γ d)
    * ``riesz``:    d^(−s) for s > 0, −log d for s = 0, −d^(−s) for s < 0
      (the Riesz s-energy; chordal s = 1 on S² is the Thomson/Coulomb energy).

    These are the true distances; the authors' code used 2 − c instead of 2 − 2c inside the
    chordal Laplace and Riesz kernels, which we do not copy.

    Raises ``ValueError`` for an unknown kernel or distance, γ ≤ 0, or a non-finite s.
    """
    kernel, distance, gamma, s = _check_kernel(kernel, distance, gamma, s)
    if kernel == "gaussian" and distance == "chordal":
        e = (2 * gamma) * (c - 1)
        return torch.exp(e - e.detach().clamp(min=0))  # value exp(min(e, 0)), slope 2γk
    d = chordal_from_cosine(c) if distance == "chordal" else geodesic_from_cosine(c)
    if kernel == "gaussian":
        return torch.exp(-gamma * d * d)
    if kernel == "laplace":
        return torch.exp(-gamma * d)
    if s > 0:
        return d.pow(-s)
    if s == 0:
        return -torch.log(d)
    return -d.pow(-s)


# ----------------------------------------------------------------------------------------
# can the energy and its gradient be represented in the dtype?
# ----------------------------------------------------------------------------------------


def _log_kernel_and_slope(kernel: str, distance: str, gamma: float, s: float, c: float, eps: float
                          ) -> tuple[float, float]:
    """(log |k(c)|, log |dk/dc|) at one cosine ``c``, with the clamps of :func:`kernel_from_cosine`,
    in double precision (−inf for an exact 0)."""
    if kernel == "gaussian" and distance == "chordal":
        e = 2 * gamma * (min(c, 1.0) - 1)
        return e, math.log(2 * gamma) + e
    if distance == "chordal":
        c = min(c, 1 - eps)
        d = math.sqrt(2 - 2 * c)
        log_dd = -math.log(d)  # |dd/dc| = 1/d
    else:
        c = min(max(c, -1 + eps), 1 - eps)
        d = math.acos(c)
        log_dd = -0.5 * math.log1p(-c * c)  # |dd/dc| = 1/sqrt(1 − c²)
    ld = math.log(d)
    if kernel == "gaussian":
        lk = -gamma * d * d
        return lk, math.log(2 * gamma) + ld + lk + log_dd
    if kernel == "laplace":
        lk = -gamma * d
        return lk, math.log(gamma) + lk + log_dd
    if s == 0:  # k = −log d, dk/dd = −1/d
        return (math.log(abs(ld)) if ld != 0 else -math.inf), -ld + log_dd
    return -s * ld, math.log(abs(s)) - (s + 1) * ld + log_dd


def _kernel_problem(kernel, distance, gamma, s, dtype, n, c_near, c_far, with_grad) -> str | None:
    """What cannot be represented in ``dtype`` when the nearest pair has cosine ``c_near`` and the
    farthest ``c_far`` (``"underflow"``, ``"value"``, ``"gradient"``, ``"gradient underflow"``),
    or None."""
    fi = torch.finfo(dtype)
    log_tiny, log_max = math.log(fi.tiny), math.log(fi.max)
    eps = cosine_clamp_eps(dtype)
    at = [_log_kernel_and_slope(kernel, distance, gamma, s, c, eps) for c in (c_near, c_far)]
    if kernel == "gaussian" and distance == "geodesic":
        # the slope 2γ d k / sin d may peak inside [d_near, d_far], near d = 1/sqrt(2γ)
        c_peak = math.cos(min(1 / math.sqrt(2 * gamma), math.pi))
        at.append(_log_kernel_and_slope(kernel, distance, gamma, s, min(max(c_peak, c_far), c_near), eps))
    if kernel in ("gaussian", "laplace") and at[0][0] < log_tiny:
        return "underflow"  # the nearest pair has the largest value, and it underflows
    if max(lk for lk, _ in at) >= log_max:
        return "value"
    if with_grad and max(ls for _, ls in at) + math.log(n) >= log_max:
        return "gradient"
    if with_grad and max(ls for _, ls in at) - math.log(n * (n - 1) / 2) < log_tiny:
        return "gradient underflow"  # even the steepest pair's term |k'(c)| / P of the gradient
    return None


@torch.no_grad()
def _extreme_cosines(X: torch.Tensor, G: torch.Tensor | None = None, block: int = 1024) -> tuple[float, float]:
    """(largest, smallest) cosine ⟨x_i, x_j⟩ over the pairs i ≠ j: from the Gram matrix ``G`` when
    given, else in row blocks of ``block`` rows (O(N · block) memory)."""
    n = X.shape[0]
    if G is not None:
        off = ~torch.eye(n, dtype=torch.bool, device=G.device)
        Goff = G[off]
        return Goff.max().item(), Goff.min().item()
    hi = torch.full((), -math.inf, dtype=X.dtype, device=X.device)
    lo = torch.full((), math.inf, dtype=X.dtype, device=X.device)
    for s0 in range(0, n, block):
        e0 = min(n, s0 + block)
        C = X[s0:e0] @ X.T
        rows = torch.arange(e0 - s0, device=X.device)
        C[rows, rows + s0] = -math.inf
        hi = torch.maximum(hi, C.max())
        C[rows, rows + s0] = math.inf
        lo = torch.minimum(lo, C.min())
    return hi.item(), lo.item()


def check_representable(
    X: torch.Tensor,
    kernel: str,
    distance: str,
    gamma: float,
    s: float,
    *,
    G: torch.Tensor | None = None,
    block: int = 1024,
    with_grad: bool | None = None,
) -> None:
    """Raise ``ValueError`` when the kernel energy of ``X`` or its gradient is not representable
    in X's dtype — instead of a silent 0, inf or NaN.

    Three cases, decided from the nearest and the farthest pair of ``X`` (``G``, the Gram
    matrix, when the caller has it; else a blocked pass):

    * **underflow** (``gaussian``, ``laplace``): even the nearest pair's kernel value
      exp(−γ d²) or exp(−γ d) is below the dtype's smallest normal number
      (``torch.finfo(dtype).tiny``: γ d² > 87.3 in float32, > 708 in float64), so every term,
      the energy and the gradient would be exactly 0;
    * **value** overflow (``riesz``): d^(−s) of the nearest pair (s > 0) or of the farthest
      (s < 0) exceeds ``torch.finfo(dtype).max``;
    * **gradient** overflow (when a gradient will be taken): the largest slope |dk/dc| times N
      exceeds the dtype's largest number;
    * **gradient underflow** (when a gradient will be taken): every pair's term of the gradient
      of the mean over the P = N(N − 1)/2 pairs, |dk/dc| / P, is below ``finfo(dtype).tiny``
      (float32 1.2e-38, float64 2.2e-308), so the gradient would be exactly 0 or subnormal (its
      precision lost) — the case of a vanishing parameter: for the Gaussian kernel the slope is
      2γ e^(−γ d²) ≈ 2γ once γ · 4 (γ times the largest squared chordal distance) is ≪ 1, so γ
      must exceed about tiny · P / 2 (7.2e-36 for N = 50 in float32); likewise γ of the Laplace
      kernel (slope γ e^(−γ d)/d) and |s| of the Riesz kernel (slope |s| d^(−s−2); s = 0 is the
      logarithmic energy, which has no such limit). The value itself stays representable
      (a kernel ≈ 1), so without a gradient nothing is raised.

    The message names the parameter and the usable range for these points in this dtype
    (found by bisection on the same test). The test costs nothing for parameters that cannot
    fail on any input in the dtype (γ ≤ 21 in float32 and ≤ 177 in float64 for the Gaussian
    chordal kernel; |s| below about 11 in float32 and 45 in float64 for Riesz), which are
    checked from the clamp bounds alone; otherwise one pass over the pairs.
    """
    kernel, distance, gamma, s = _check_kernel(kernel, distance, gamma, s)
    n = X.shape[0]
    dtype = X.dtype
    if with_grad is None:
        with_grad = torch.is_grad_enabled() and X.requires_grad
    # data-free gate: the worst the clamps allow (nearest pair at the clamp, farthest antipodal)
    # (and, for the gradient underflow, every pair at the clamp or antipodal: the slopes are smallest there)
    if all(_kernel_problem(kernel, distance, gamma, s, dtype, n, near, far, with_grad) is None
           for near, far in ((1.0, -1.0), (-1.0, -1.0), (1.0, 1.0))):
        return
    c_near, c_far = _extreme_cosines(X.detach(), G, block)
    problem = _kernel_problem(kernel, distance, gamma, s, dtype, n, c_near, c_far, with_grad)
    if problem is None:
        return
    name, value = ("gamma", gamma) if kernel in ("gaussian", "laplace") else ("s", s)

    def fails(v: float) -> bool:
        g, e = (v, s) if name == "gamma" else (gamma, v)
        return _kernel_problem(kernel, distance, g, e, dtype, n, c_near, c_far, with_grad) is not None

    # bisection on t: t = log gamma, or |s| with s's sign kept
    sign = 1.0 if value > 0 else -1.0

    def param(t: float) -> float:
        return math.exp(t) if name == "gamma" else sign * t

    if problem == "gradient underflow":
        # on log |parameter|, between it and one that works for these points (gamma = 1, s = ±1):
        # the usable side is towards that one (a vanishing parameter, or a large gamma)
        bad, good = math.log(abs(value)), 0.0
        if fails(sign * math.exp(good)):
            bad = good = None
        for _ in range(60 if good is not None else 0):
            mid = (bad + good) / 2
            bad, good = (mid, good) if fails(sign * math.exp(mid)) else (bad, mid)
        bound = None if good is None else sign * math.exp(good)
        rel = ">" if abs(value) < 1 else "<"
    else:  # larger t = worse
        lo, hi = (math.log(1e-300), math.log(value)) if name == "gamma" else (0.0, abs(value))
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if fails(param(mid)) else (mid, hi)
        bound = param(lo)
        rel = "<" if (name == "gamma" or value > 0) else ">"
    dist = "chordal" if distance == "chordal" else "geodesic"
    d_near = math.sqrt(max(0.0, 2 - 2 * c_near)) if distance == "chordal" else math.acos(min(max(c_near, -1), 1))
    what = {
        "underflow": (f"every pair's kernel value underflows to 0 (the nearest pair is at {dist} distance "
                      f"{d_near:.3g}), so the energy and its gradient would be exactly 0"),
        "value": "the energy overflows (a pair's kernel value exceeds the largest number)",
        "gradient": "the gradient overflows (a pair's kernel slope times N exceeds the largest number)",
        "gradient underflow": (f"the gradient underflows (every pair's term of it, |dk/dc| / P over the P = "
                               f"{n * (n - 1) // 2} pairs, is below {torch.finfo(dtype).tiny:.3g}, the smallest normal "
                               "number), so it would be 0 or lose its precision"),
    }[problem]
    if bound is None:
        usable = f"No {name} near 1 is usable for these points in {dtype} either"
    elif problem == "gradient underflow" and name == "s":
        usable = (f"Usable range for these points in {dtype}: |s| {rel} {abs(bound):.4g}"
                  + (" (or s = 0, the logarithmic energy)" if rel == ">" else ""))
    else:
        usable = f"Usable range for these points in {dtype}: {name} {rel} {bound:.4g}"
    raise ValueError(
        f"mhe kernel={kernel!r}, distance={distance!r}, {name}={value:g}: in {dtype} {what}. {usable}"
        + ("" if dtype == torch.float64 else "; float64 allows a wider range")
    )
