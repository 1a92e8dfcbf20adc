"""Pairwise dispersion regularizers: kernel energies (MHE), MMA, KoLeo and MMCS.

All four are functions of the cosine matrix G = X Xᵀ of the points X (N, d) with unit rows
(the pairwise methods of Tokarchuk et al., arXiv:2502.08231: MHE after Liu et al. 2018, MMA
after Wang et al. 2020, KoLeo after Sablayrolles et al. 2019, MMCS after Mettes et al. 2019).
Each is written once as a function of cosines, so that the dense path here and a blocked path
(which never holds the N×N matrix) share the same formula.

Numerics (applies to every function in this module): cosines are clamped to
[−1 + ε, 1 − ε] before a distance is taken (ε = 1e-6 in float32, 1e-12 in float64), so that
``arccos`` and ``sqrt(2 − 2c)`` have finite gradients when two points coincide or are antipodal.
A consequence: two exactly coincident points exert no force on each other through the clamped
term (their other neighbours still move them); the value is finite but not exact for pairs
closer than about sqrt(2ε) rad.

Dense and blocked paths: the functions here are the dense reference (the formula on the full
Gram matrix). The modules :class:`MHE`, :class:`MMA`, :class:`KoLeo` and :class:`MMCS` take a
``block_size`` argument that selects between it and the blocked path of
:mod:`dispersion.regularizers.blocked` (same value and gradient, O(N · block) memory):

* ``None`` (default): dense for N ≤ :data:`DENSE_MAX_N`, where it is as fast or faster
  (few Python-level operations), blocked with an automatic block size above;
* ``"auto"``: always blocked, automatic block size (from N, d, dtype and free device memory);
* an int ≥ 1: always blocked, that many rows per block;
* ``"dense"``: always the dense reference.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive, is_int, is_real
from .base import Regularizer
from .scale import check_normalize

__all__ = [
    "KERNELS",
    "DISTANCES",
    "cosine_clamp_eps",
    "check_representable",
    "chordal_from_cosine",
    "geodesic_from_cosine",
    "kernel_from_cosine",
    "mhe_energy",
    "mma_loss",
    "koleo_loss",
    "mmcs_loss",
    "MHE",
    "MMA",
    "KoLeo",
    "MMCS",
    "DENSE_MAX_N",
]

#: Largest N for which ``block_size=None`` takes the dense path. Measured on the CPU
#: (forward + backward, d = 64): dense and blocked tie at N = 128, blocked is 1.2× (kernel
#: energies) to 2.3× (nearest-neighbour losses) faster at N = 512 and 3× at N = 1 000;
#: dense is up to 1.3× faster below (fewer Python-level operations).
DENSE_MAX_N = 128

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


def _gram(X: torch.Tensor) -> torch.Tensor:
    return X @ X.T


def mhe_energy(
    X: torch.Tensor,
    kernel: str = "gaussian",
    distance: str = "chordal",
    gamma: float = 1.0,
    s: float = 1.0,
) -> torch.Tensor:
    """Pairwise kernel energy R_k(X) = mean over pairs i < j of k(x_i, x_j) (Liu et al. 2018).

    ``X``: (N, d) unit rows (not validated here; the :class:`MHE` module validates). Returns a
    0-dim tensor, same dtype/device. Dense: builds the N×N cosine matrix, O(N² d) time and
    O(N²) memory; feed it a random row minibatch at scale, as the paper does.

    For a rotation-invariant kernel this equals, up to a positive factor and an additive
    constant, the squared MMD between the empirical measure of X and the uniform measure on
    the sphere (the paper's reinterpretation; ``tests/test_regularizers.py`` checks it).

    The sum is accumulated in float64. Raises ``ValueError`` naming γ or s and the usable range
    when the energy or its gradient is not representable in X's dtype (every pair underflows,
    or the value or slope overflows; :func:`check_representable`) — never a silent 0, inf or NaN.
    """
    n = X.shape[0]
    G = _gram(X)
    check_representable(X, kernel, distance, gamma, s, G=G)
    K = kernel_from_cosine(G, kernel, distance, gamma, s)
    return (torch.triu(K, diagonal=1).sum(dtype=torch.float64) / (n * (n - 1) / 2)).to(X.dtype)


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
    farthest ``c_far`` (``"underflow"``, ``"value"``, ``"gradient"``), or None."""
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
      exceeds the dtype's largest number.

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
    if _kernel_problem(kernel, distance, gamma, s, dtype, n, 1.0, -1.0, with_grad) is None and \
            _kernel_problem(kernel, distance, gamma, s, dtype, n, -1.0, -1.0, with_grad) is None:
        return
    c_near, c_far = _extreme_cosines(X.detach(), G, block)
    problem = _kernel_problem(kernel, distance, gamma, s, dtype, n, c_near, c_far, with_grad)
    if problem is None:
        return
    name, value = ("gamma", gamma) if kernel in ("gaussian", "laplace") else ("s", s)

    def fails(v: float) -> bool:
        g, e = (v, s) if name == "gamma" else (gamma, v)
        return _kernel_problem(kernel, distance, g, e, dtype, n, c_near, c_far, with_grad) is not None

    # bisection on t (larger t = worse): t = log gamma, or |s| with s's sign kept
    sign = 1.0 if value > 0 else -1.0

    def param(t: float) -> float:
        return math.exp(t) if name == "gamma" else sign * t

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
    }[problem]
    raise ValueError(
        f"mhe kernel={kernel!r}, distance={distance!r}, {name}={value:g}: in {dtype} {what}. "
        f"Usable range for these points in {dtype}: {name} {rel} {bound:.4g}"
        + ("" if dtype == torch.float64 else "; float64 allows a wider range")
    )


def _nearest_cosine(X: torch.Tensor) -> torch.Tensor:
    """max_{j≠i} ⟨x_i, x_j⟩ for every i, shape (N,); only the true diagonal is excluded."""
    G = _gram(X)
    eye = torch.eye(X.shape[0], dtype=torch.bool, device=X.device)
    return G.masked_fill(eye, -float("inf")).amax(dim=1)


def mma_loss(X: torch.Tensor) -> torch.Tensor:
    """Maximum of minimum angles: R(X) = −(1/N) Σ_i min_{j≠i} d_S(x_i, x_j).

    Wang, Xiang, Zou & Xu, *MMA Regularization: Decorrelating Weights of Neural Networks by
    Maximizing the Minimal Angles* (NeurIPS 2020, arXiv:2006.06527); "MM (d_S)" in
    arXiv:2502.08231. Radians. The gradient flows only through each point's nearest neighbour.
    """
    return -geodesic_from_cosine(_nearest_cosine(X)).mean()


def koleo_loss(X: torch.Tensor) -> torch.Tensor:
    """KoLeo: R(X) = −(1/N) Σ_i log min_{j≠i} d_R(x_i, x_j).

    The Kozachenko–Leonenko differential-entropy estimator used as a regularizer by
    Sablayrolles et al., *Spreading vectors for similarity search* (ICLR 2019).
    """
    return -torch.log(chordal_from_cosine(_nearest_cosine(X))).mean()


def mmcs_loss(X: torch.Tensor) -> torch.Tensor:
    """MMCS: R(X) = (1/N) Σ_i max_{j≠i} (⟨x_i, x_j⟩ + 1).

    The prototype loss of Hyperspherical Prototype Networks (Mettes, van der Pol, Snoek,
    NeurIPS 2019): minimise each prototype's largest cosine similarity to another one.
    """
    return (_nearest_cosine(X) + 1).mean()


def _check_block_size(block_size):
    if block_size is None or (isinstance(block_size, str) and block_size in ("auto", "dense")):
        return block_size
    if not is_int(block_size) or block_size < 1:
        raise ValueError(f"block_size must be None, 'auto', 'dense' or a positive int, got {block_size!r}")
    return int(block_size)


def _dense(block_size, n: int) -> bool:
    return block_size == "dense" or (block_size is None and n <= DENSE_MAX_N)


class _BlockSizeMixin:
    """``block_size`` handling shared by the four pairwise modules."""

    block_size = None

    def hparams(self) -> dict:
        # block_size (and normalize) are recorded only when set, so configs without them are unchanged
        return {**({} if self.block_size is None else {"block_size": self.block_size}),
                **self._normalize_hparams()}


class MHE(_BlockSizeMixin, Regularizer):
    """Pairwise kernel energy (minimum hyperspherical energy), see :func:`mhe_energy`.

    Parameters
    ----------
    kernel : {"gaussian", "laplace", "riesz"}
    distance : {"chordal", "geodesic"}
    gamma : float > 0
        Bandwidth of the gaussian and laplace kernels (paper default 1).
    s : float
        Riesz exponent (paper default 1; 0 is the logarithmic energy; negative allowed).
    block_size : None, "auto", "dense" or int >= 1
        Dense reference or blocked full-batch path (module docstring); the blocked path is
        :func:`dispersion.regularizers.blocked.blocked_mhe_energy`, once differentiable.
    normalize : bool
        Divide the value by its gradient scale c(N, d) (:meth:`Regularizer.gradient_scale`), so
        that one λ is comparable across methods; default False (the raw value).

    Scale: a mean over the N(N−1)/2 pairs, so row i's gradient (2/(N(N−1))) Σ_j k′(c_ij) x_j
    is a sum of N slopes weighted 2/N². At i.i.d. uniform points the cosines concentrate at 0
    and the sum is dominated by k′(0) Σ_j x_j, of norm ≈ √N, so the mean per-row Riemannian
    gradient norm is c ≈ 2|k′(0)| N^(−3/2), nearly independent of d (measured exponent −1.48 to
    −1.54 for N = 128–2 048, d = 8–128): 5.2·10⁻⁵ at N = 512, d = 32 for the default Gaussian
    chordal γ = 1, where k′(0) = 2γe^(−2γ) (so c rises to γ = ½ and falls fast beyond γ = 2).
    Doubling N divides c by 2.8; ``sliced`` at the same N and d has c ≈ 10⁴ times larger.

    Raises ``ValueError`` for a bad kernel, distance, γ, s or ``block_size``.
    """

    name = "mhe"
    pairwise = True

    def __init__(
        self,
        kernel: str = "gaussian",
        distance: str = "chordal",
        gamma: float = 1.0,
        s: float = 1.0,
        block_size: int | str | None = None,
        normalize: bool = False,
    ):
        super().__init__()
        self.kernel, self.distance, self.gamma, self.s = _check_kernel(kernel, distance, gamma, s)
        self.block_size = _check_block_size(block_size)
        self.normalize = check_normalize(normalize)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        if _dense(self.block_size, X.shape[0]):
            return mhe_energy(X, self.kernel, self.distance, self.gamma, self.s)
        from .blocked import blocked_mhe_energy

        return blocked_mhe_energy(X, self.kernel, self.distance, self.gamma, self.s, block_size=self.block_size)

    def hparams(self) -> dict:
        return {"kernel": self.kernel, "distance": self.distance, "gamma": self.gamma, "s": self.s,
                **super().hparams()}


class _NearestNeighborLoss(_BlockSizeMixin, Regularizer):
    """Common body of MMA, KoLeo and MMCS: a dense function and its blocked twin."""

    pairwise = True
    _dense_fn = None
    _blocked_name = ""

    def __init__(self, block_size: int | str | None = None, normalize: bool = False):
        super().__init__()
        self.block_size = _check_block_size(block_size)
        self.normalize = check_normalize(normalize)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        if _dense(self.block_size, X.shape[0]):
            return type(self)._dense_fn(X)
        from . import blocked

        return getattr(blocked, self._blocked_name)(X, block_size=self.block_size)


class MMA(_NearestNeighborLoss):
    """Maximise the minimum angle, see :func:`mma_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) selects the dense reference or the
    blocked nearest-neighbour search (module docstring); same value and gradient.
    ``normalize`` (bool) divides the value by its gradient scale (:class:`MHE`).

    Scale: a mean over rows of one angle (whose Riemannian gradient has norm 1), so a row's
    gradient is 1/N times the sum of the unit vectors from its own nearest-neighbour pair and
    from the rows that have it as their nearest neighbour: c ≈ 1.63/N at uniform points,
    independent of d (N·c = 1.62–1.66 for N = 128–2 048, d = 8–128).
    """

    name = "mma"
    _dense_fn = staticmethod(mma_loss)
    _blocked_name = "blocked_mma_loss"


class KoLeo(_NearestNeighborLoss):
    """KoLeo entropy regularizer, see :func:`koleo_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) as for :class:`MMA`; ``normalize`` (bool)
    divides the value by its gradient scale (:class:`MHE`).

    Scale: a mean over rows of −log of the nearest-neighbour distance, whose slope is the
    inverse distance, so c ≈ (1/N) × E[1/d_NN] grows as the nearest neighbours get closer — with
    N, and more so in low d: N·c = 1.05–1.12 at d = 128, 1.3–1.6 at d = 32, 2.5–3.9 at d = 8
    for N = 128–2 048 (c ∝ N^(−0.85) at d = 8, N^(−0.97) at d = 128).
    """

    name = "koleo"
    _dense_fn = staticmethod(koleo_loss)
    _blocked_name = "blocked_koleo_loss"


class MMCS(_NearestNeighborLoss):
    """HPN's maximum cosine similarity loss, see :func:`mmcs_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) as for :class:`MMA`; ``normalize`` (bool)
    divides the value by its gradient scale (:class:`MHE`).

    Scale: a mean over rows of the nearest neighbour's cosine, whose Riemannian gradient has norm
    sin θ_NN, so c ≈ 1.6 E[sin θ_NN]/N: N·c = 1.57–1.61 at d = 128, 1.35–1.44 at d = 32 and
    0.66–0.96 at d = 8 for N = 128–2 048 (closer neighbours, smaller sines).
    """

    name = "mmcs"
    _dense_fn = staticmethod(mmcs_loss)
    _blocked_name = "blocked_mmcs_loss"
