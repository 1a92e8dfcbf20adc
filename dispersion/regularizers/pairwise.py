"""Pairwise dispersion regularizers: kernel energies (MHE), MMA, KoLeo and MMCS.

All four are functions of the cosine matrix G = X Xᵀ of the points X (N, d) with unit rows
(the pairwise methods of Tokarchuk et al., arXiv:2502.08231: MHE after Liu et al. 2018, MMA
after Wang et al. 2020, KoLeo after Sablayrolles et al. 2019, MMCS after Mettes et al. 2019).
Each is written once as a function of cosines, so that the dense path here and a blocked path
(which never holds the N×N matrix) share the same formula.

Numerics (applies to every function in this module; the kernels and distances are those of
:mod:`dispersion.regularizers.kernels`, re-exported here): cosines are clamped to
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


import torch

from .._checks import is_int
from .base import Regularizer
from .blocked import blocked_koleo_loss, blocked_mhe_energy, blocked_mma_loss, blocked_mmcs_loss
from .kernels import (
    DISTANCES,
    KERNELS,
    _check_kernel,
    check_representable,
    chordal_from_cosine,
    cosine_clamp_eps,
    geodesic_from_cosine,
    kernel_from_cosine,
)
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

    Being a mean of per-point maxima, it can prefer sacrificing points to spreading them all: a
    coincident point costs at most 2, so on S¹ with N = 10 the regular decagon (1 + cos 36° =
    1.809) scores worse than 8 coincident points plus two at 120° ((8·2 + 2·0.5)/10 = 1.7), and
    optimisation ends in such a collapse (min angle ≈ 0). On S² and above the spread wins for
    the class counts of the paper (N = 10 on S²: 1.405 at the Tammes optimum, 1.467 with two
    coincident points and the other 8 on the 9-point optimum).
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
        Bandwidth of the gaussian and laplace kernels (paper default 1). Usable where the
        energy and its gradient are representable in the points' dtype, checked at each call
        (:func:`check_representable`): not so large that every pair's value underflows, and
        not so small that the gradient does (γ above about tiny · N² / 4, 7.2e-36 for N = 50
        in float32) — a ``ValueError`` naming γ and the usable range, not a zero gradient.
    s : float
        Riesz exponent (paper default 1; 0 is the logarithmic energy; negative allowed; the same
        check bounds |s| from above and, for s ≠ 0, from below).
    block_size : None, "auto", "dense" or int >= 1
        Dense reference or blocked full-batch path (module docstring); the blocked path is
        :func:`dispersion.regularizers.blocked.blocked_mhe_energy`, once differentiable.
    normalize : bool
        Divide the value by its gradient scale c(N, d) (:meth:`Regularizer.gradient_scale`), so
        that one λ is comparable across methods; default False (the raw value).
    distributed, process_group, grad_reduction
        Compute on the rows of all ranks (:class:`~dispersion.regularizers.base.Regularizer`;
        default False, None, "mean").
        Distributed, the rows are all_gathered and every rank evaluates R on all N of them:
        (W − 1) · n_max · d · itemsize bytes received per rank and call (n_max the largest
        shard), nothing in backward.

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
        distributed: bool = False,
        process_group=None,
        grad_reduction: str = "mean",
    ):
        super().__init__()
        self.kernel, self.distance, self.gamma, self.s = _check_kernel(kernel, distance, gamma, s)
        self.block_size = _check_block_size(block_size)
        self.normalize = check_normalize(normalize)
        self._set_distributed(distributed, process_group, grad_reduction)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        if _dense(self.block_size, X.shape[0]):
            return mhe_energy(X, self.kernel, self.distance, self.gamma, self.s)
        return blocked_mhe_energy(X, self.kernel, self.distance, self.gamma, self.s, block_size=self.block_size)

    def hparams(self) -> dict:
        return {"kernel": self.kernel, "distance": self.distance, "gamma": self.gamma, "s": self.s,
                **super().hparams()}


class _NearestNeighborLoss(_BlockSizeMixin, Regularizer):
    """Common body of MMA, KoLeo and MMCS: a dense function and its blocked twin."""

    pairwise = True
    _dense_fn = None
    _blocked_fn = None

    def __init__(self, block_size: int | str | None = None, normalize: bool = False,
                 distributed: bool = False, process_group=None, grad_reduction: str = "mean"):
        super().__init__()
        self.block_size = _check_block_size(block_size)
        self.normalize = check_normalize(normalize)
        self._set_distributed(distributed, process_group, grad_reduction)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        if _dense(self.block_size, X.shape[0]):
            return type(self)._dense_fn(X)
        return type(self)._blocked_fn(X, block_size=self.block_size)


class MMA(_NearestNeighborLoss):
    """Maximise the minimum angle, see :func:`mma_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) selects the dense reference or the
    blocked nearest-neighbour search (module docstring); same value and gradient.
    ``normalize`` (bool) divides the value by its gradient scale (:class:`MHE`).
    ``distributed``/``process_group``/``grad_reduction``: all ranks' rows
    (:class:`~dispersion.regularizers.base.Regularizer`); the rows are all_gathered and every
    rank evaluates the loss on all N of them, each row's nearest neighbour searched among all
    ranks' rows (as DINOv3's distributed KoLeo searches the gathered batch): (W − 1) · n_max ·
    d · itemsize bytes received per rank and call (n_max the largest shard), nothing in
    backward. Likewise for :class:`KoLeo` and :class:`MMCS`.

    Scale: a mean over rows of one angle (whose Riemannian gradient has norm 1), so a row's
    gradient is 1/N times the sum of the unit vectors from its own nearest-neighbour pair and
    from the rows that have it as their nearest neighbour: c ≈ 1.63/N at uniform points,
    independent of d (N·c = 1.62–1.66 for N = 128–2 048, d = 8–128).
    """

    name = "mma"
    _dense_fn = staticmethod(mma_loss)
    _blocked_fn = staticmethod(blocked_mma_loss)


class KoLeo(_NearestNeighborLoss):
    """KoLeo entropy regularizer, see :func:`koleo_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) as for :class:`MMA`; ``normalize`` (bool)
    divides the value by its gradient scale (:class:`MHE`); ``distributed``/``process_group``/
    ``grad_reduction`` as for :class:`MMA` (rows all_gathered: (W − 1) · n_max · d · itemsize
    bytes received per rank and call, nothing in backward).

    Scale: a mean over rows of −log of the nearest-neighbour distance, whose slope is the
    inverse distance, so c ≈ (1/N) × E[1/d_NN] grows as the nearest neighbours get closer — with
    N, and more so in low d: N·c = 1.05–1.12 at d = 128, 1.3–1.6 at d = 32, 2.5–3.9 at d = 8
    for N = 128–2 048 (c ∝ N^(−0.85) at d = 8, N^(−0.97) at d = 128).
    """

    name = "koleo"
    _dense_fn = staticmethod(koleo_loss)
    _blocked_fn = staticmethod(blocked_koleo_loss)


class MMCS(_NearestNeighborLoss):
    """HPN's maximum cosine similarity loss, see :func:`mmcs_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) as for :class:`MMA`; ``normalize`` (bool)
    divides the value by its gradient scale (:class:`MHE`); ``distributed``/``process_group``/
    ``grad_reduction`` as for :class:`MMA` (rows all_gathered: (W − 1) · n_max · d · itemsize
    bytes received per rank and call, nothing in backward).

    Scale: a mean over rows of the nearest neighbour's cosine, whose Riemannian gradient has norm
    sin θ_NN, so c ≈ 1.6 E[sin θ_NN]/N: N·c = 1.57–1.61 at d = 128, 1.35–1.44 at d = 32 and
    0.66–0.96 at d = 8 for N = 128–2 048 (closer neighbours, smaller sines).
    """

    name = "mmcs"
    _dense_fn = staticmethod(mmcs_loss)
    _blocked_fn = staticmethod(blocked_mmcs_loss)
