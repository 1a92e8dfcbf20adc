"""Dispersion metrics of a point set on the sphere (PAPER.md §2), exact and block-wise.

Every function takes ``X`` of shape (N, d) with unit rows (float32 or float64, CPU or CUDA)
and never builds the N×N matrix: rows are processed in blocks of ``block_size`` (chosen
automatically so that a block of cosines holds about 2^24 entries, 64 MiB in float32). Only
the true diagonal i = j is excluded from the nearest-neighbour searches — never the diagonal
of an off-diagonal block — so duplicated points that fall in different blocks give angle 0.

Angles are in radians. They are computed to full precision even for tiny angles: the nearest
neighbour is found by the largest cosine, then its angle is recomputed from the chordal
distance as 2·asin(‖x_i − x_j‖ / 2), which, unlike arccos of a cosine near 1, does not lose the
angle below ~1e-3 rad in float32. Matrix products run at the input's dtype; no reduced-precision
(TF32) products are used unless the caller enabled them globally in torch.
Functions run under ``torch.no_grad()`` and return tensors on the input's device.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_points

__all__ = [
    "nearest_neighbor_angles",
    "min_angle",
    "circular_variance",
    "mean_angle",
    "median_angle",
    "summary",
    "auto_block_size",
]

_BLOCK_ENTRIES = 2**24
_CANDIDATES = 4


def auto_block_size(n: int, budget_entries: int = _BLOCK_ENTRIES) -> int:
    """Rows per block so that a (block, n) cosine block has at most ``budget_entries`` entries."""
    return max(1, min(n, budget_entries // max(n, 1)))


def _blocks(n: int, block_size: int | None):
    if block_size is None:
        block_size = auto_block_size(n)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    for start in range(0, n, block_size):
        yield start, min(n, start + block_size)


def _angle_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rowwise angle (radians) between unit rows, 2·asin(‖a − b‖/2), accurate near 0 and π."""
    chord = torch.linalg.vector_norm(a - b, dim=-1).clamp(max=2.0)
    return 2 * torch.asin(chord / 2)


@torch.no_grad()
def nearest_neighbor_angles(X: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """Per-point nearest-neighbour angle min_{j≠i} d_S(x_i, x_j), shape (N,), radians.

    Exact; O(N² d) time, O(block_size · N) memory. The ``_CANDIDATES`` = 4 largest cosines
    of each row are re-measured with the chordal formula, so that float32 rounding of cosines
    within ~3e-4 rad of each other cannot pick the wrong neighbour among them.
    """
    check_points(X, "X")
    n = X.shape[0]
    k = min(_CANDIDATES, n - 1)
    out = torch.empty(n, dtype=X.dtype, device=X.device)
    for s, e in _blocks(n, block_size):
        G = X[s:e] @ X.T
        rows = torch.arange(e - s, device=X.device)
        G[rows, rows + s] = -float("inf")  # the true diagonal only
        cand = G.topk(k, dim=1).indices  # (b, k)
        ang = _angle_between(X[s:e, None, :], X[cand])
        out[s:e] = ang.min(dim=1).values
    return out


@torch.no_grad()
def min_angle(X: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """The minimum pairwise angle d_min = min_{i≠j} d_S(x_i, x_j), 0-dim tensor, radians."""
    return nearest_neighbor_angles(X, block_size).min()


@torch.no_grad()
def circular_variance(X: torch.Tensor) -> torch.Tensor:
    """Circular (spherical) variance 1 − ‖(1/N) Σ_i x_i‖ ∈ [0, 1], a 0-dim tensor.

    1 for a balanced spread (e.g. any antipodally symmetric set), 0 when all points coincide.
    The mean is accumulated in float64 so that it stays exact for large N.
    """
    check_points(X, "X")
    return (1 - torch.linalg.vector_norm(X.to(torch.float64).mean(dim=0))).to(X.dtype)


def _upper_angle_blocks(X: torch.Tensor, block_size: int | None):
    """Yield the angles of the pairs i < j, block by block (1-D tensors, float64)."""
    n = X.shape[0]
    for s, e in _blocks(n, block_size):
        G = X[s:e] @ X[s:].T  # rows s..e, columns s..n
        col = torch.arange(s, n, device=X.device)[None, :]
        row = torch.arange(s, e, device=X.device)[:, None]
        c = G[col > row].to(torch.float64).clamp(-1.0, 1.0)
        yield torch.arccos(c)


@torch.no_grad()
def mean_angle(X: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """Mean pairwise angle over i < j, 0-dim tensor (float64), radians.

    Exact: the sum of arccos over all N(N−1)/2 pairs, accumulated block by block in float64.
    """
    check_points(X, "X")
    n = X.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for a in _upper_angle_blocks(X, block_size):
        total += a.sum()
    return total / (n * (n - 1) / 2)


@torch.no_grad()
def median_angle(X: torch.Tensor, block_size: int | None = None, bins: int = 2**16) -> torch.Tensor:
    """Median pairwise angle over i < j, 0-dim tensor (float64), radians.

    Exact without storing the N(N−1)/2 angles: a first pass counts the angles in ``bins``
    equal bins of [0, π]; a second pass collects only the angles of the bin(s) that hold the
    middle rank(s) and selects them exactly. For an even number of pairs the median is the mean
    of the two middle values (as ``numpy.median``). If the middle bin holds more than 2^26
    angles (a highly degenerate set), the value is the exact order statistic of those
    collected values as well — memory then grows with that bin's size.
    """
    check_points(X, "X")
    n = X.shape[0]
    m = n * (n - 1) // 2
    counts = torch.zeros(bins, dtype=torch.long, device=X.device)

    def bin_of(a: torch.Tensor) -> torch.Tensor:
        return (a * (bins / math.pi)).long().clamp_(0, bins - 1)

    for a in _upper_angle_blocks(X, block_size):
        counts += torch.bincount(bin_of(a), minlength=bins)
    ranks = [(m - 1) // 2, m // 2]  # 0-based middle ranks
    cum = counts.cumsum(0)
    values = []
    for r in ranks:
        b = int(torch.searchsorted(cum, torch.tensor(r, device=X.device), right=True).item())
        before = int(cum[b - 1].item()) if b > 0 else 0
        vals = torch.cat([a[bin_of(a) == b] for a in _upper_angle_blocks(X, block_size)])
        values.append(torch.kthvalue(vals.cpu(), r - before + 1).values.to(X.device))
    return (values[0] + values[1]) / 2


@torch.no_grad()
def summary(X: torch.Tensor, block_size: int | None = None, pairwise_stats: bool = False) -> dict[str, float]:
    """All metrics of ``X`` as Python floats: ``min_angle``, ``circular_variance``,
    ``mean_nn_angle`` (mean nearest-neighbour angle) and, with ``pairwise_stats=True`` (an
    extra O(N²) pass each), ``mean_angle`` and ``median_angle``. Radians."""
    nn = nearest_neighbor_angles(X, block_size)
    out = {
        "min_angle": nn.min().item(),
        "circular_variance": circular_variance(X).item(),
        "mean_nn_angle": nn.mean().item(),
    }
    if pairwise_stats:
        out["mean_angle"] = mean_angle(X, block_size).item()
        out["median_angle"] = median_angle(X, block_size).item()
    return out
