"""Pairwise dispersion regularizers: kernel energies (MHE), MMA, KoLeo and MMCS.

All four are functions of the cosine matrix G = X Xᵀ of the points X (N, d) with unit rows
(PAPER.md §3.1–3.4). Each is written once as a function of cosines, so that the dense path here
and a blocked path (which never holds the N×N matrix) share the same formula.

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
    """Pairwise kernel energy R_k(X) = mean over pairs i < j of k(x_i, x_j) (PAPER.md §3.1).

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
    """Maximum of minimum angles: R(X) = −(1/N) Σ_i min_{j≠i} d_S(x_i, x_j) (PAPER.md §3.2).

    Wang et al., *Orthogonal Over-parameterized Training* / MMA regularization (NeurIPS 2020).
    Radians. The gradient flows only through each point's nearest neighbour.
    """
    return -geodesic_from_cosine(_nearest_cosine(X)).mean()


def koleo_loss(X: torch.Tensor) -> torch.Tensor:
    """KoLeo: R(X) = −(1/N) Σ_i log min_{j≠i} d_R(x_i, x_j) (PAPER.md §3.3).

    The Kozachenko–Leonenko differential-entropy estimator used as a regularizer by
    Sablayrolles et al., *Spreading vectors for similarity search* (ICLR 2019).
    """
    return -torch.log(chordal_from_cosine(_nearest_cosine(X))).mean()


def mmcs_loss(X: torch.Tensor) -> torch.Tensor:
    """MMCS: R(X) = (1/N) Σ_i max_{j≠i} (⟨x_i, x_j⟩ + 1) (PAPER.md §3.4).

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
        # block_size is recorded only when set, so configs without it are unchanged
        return {} if self.block_size is None else {"block_size": self.block_size}


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
    ):
        super().__init__()
        self.kernel, self.distance, self.gamma, self.s = _check_kernel(kernel, distance, gamma, s)
        self.block_size = _check_block_size(block_size)

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

    def __init__(self, block_size: int | str | None = None):
        super().__init__()
        self.block_size = _check_block_size(block_size)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        if _dense(self.block_size, X.shape[0]):
            return type(self)._dense_fn(X)
        return type(self)._blocked_fn(X, block_size=self.block_size)


class MMA(_NearestNeighborLoss):
    """Maximise the minimum angle, see :func:`mma_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) selects the dense reference or the
    blocked nearest-neighbour search (module docstring); same value and gradient.
    """

    name = "mma"
    _dense_fn = staticmethod(mma_loss)
    _blocked_fn = staticmethod(blocked_mma_loss)


class KoLeo(_NearestNeighborLoss):
    """KoLeo entropy regularizer, see :func:`koleo_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) as for :class:`MMA`.
    """

    name = "koleo"
    _dense_fn = staticmethod(koleo_loss)
    _blocked_fn = staticmethod(blocked_koleo_loss)


class MMCS(_NearestNeighborLoss):
    """HPN's maximum cosine similarity loss, see :func:`mmcs_loss`.

    ``block_size`` (None, "auto", "dense" or int ≥ 1) as for :class:`MMA`.
    """

    name = "mmcs"
    _dense_fn = staticmethod(mmcs_loss)
    _blocked_fn = staticmethod(blocked_mmcs_loss)
