"""Dispersion metrics of a point set on the sphere, exact and block-wise (the minimum angle d_min
and the spherical variance of Tokarchuk et al., arXiv:2502.08231).

Every function takes ``X`` of shape (N, d) with unit rows (float32 or float64, CPU or CUDA)
and never builds the N×N matrix: rows are processed in blocks of ``block_size`` (chosen
automatically: a block of cosines holds about 2^24 entries, 64 MiB in float32; the
nearest-neighbour search uses 256 rows on the CPU and at least that elsewhere), and only the
pairs i < j are formed. Only
the true diagonal i = j is excluded from the nearest-neighbour searches — never the diagonal
of an off-diagonal block — so duplicated points that fall in different blocks give angle 0.

Angles are in radians. The nearest-neighbour angles are exact for any configuration (see
:func:`nearest_neighbor_angles`): candidates are found by cosine within a proven rounding bound,
then re-measured in float64 from the chordal distance as 2·asin(‖x_i − x_j‖ / 2), which, unlike
arccos of a cosine near 1, does not lose the angle below ~1e-3 rad. Matrix products run at the input's dtype; no reduced-precision
(TF32) products are used unless the caller enabled them globally in torch.
Functions run under ``torch.no_grad()`` and return tensors on the input's device.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_points, is_int
from ._sweep import _measure, auto_block_size, cosine_error_bound, nearest_neighbors_exact, upper_blocks

__all__ = [
    "nearest_neighbor_angles",
    "min_angle",
    "circular_variance",
    "mean_angle",
    "median_angle",
    "summary",
    "knn",
    "knn_recall",
]

#: Cosines per block of the pairwise-angle sweeps (``mean_angle``, ``median_angle``) with
#: ``block_size=None``: 2^24 entries, 64 MiB in float32.
_BLOCK_ENTRIES = 2**24
#: Rows per block of the nearest-neighbour search on the CPU, and the least on other devices
#: (measured on the 2-core CPU at N = 20 000, d = 64: 256 rows fastest, as for the bare
#: products of the limit sweep; see ``benchmarks/README.md``).
_MIN_NN_BLOCK = 256


def _budget_rows(X: torch.Tensor) -> int:
    """Rows per block so that a (block, N) cosine block holds about :data:`_BLOCK_ENTRIES`
    entries (:func:`dispersion._sweep.auto_block_size` with that budget, one tensor per row)."""
    n, d = X.shape
    return auto_block_size(n, d, X.dtype, X.device, budget_bytes=_BLOCK_ENTRIES * X.element_size(), temporaries=1)


def _blocks(X: torch.Tensor, block_size: int | None):
    if block_size is None:
        block_size = _budget_rows(X)
    if not is_int(block_size) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    return upper_blocks(X.shape[0], int(block_size))


@torch.no_grad()
def nearest_neighbor_angles(X: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """Per-point nearest-neighbour angle min_{j≠i} d_S(x_i, x_j), shape (N,), radians, X's dtype.

    **Exact for any configuration**, clusters of near-duplicates included: the nearest
    neighbour is searched by cosine in row blocks, every pair whose float cosine is within a
    proven rounding bound of its row's best is kept as a candidate
    (:func:`dispersion._sweep.cosine_error_bound`: 1.1·(3d + 8)·u, u the unit roundoff of X's
    dtype), and each candidate's angle is re-measured in float64 as 2·asin(‖x̂_i − x̂_j‖/2) on the
    rows normalised in float64 — so the angle is that of the input rows' directions, exact to
    float64 rounding, even for rows whose norms are only within the accepted 1e-3 of 1.
    ``tests/test_metrics.py`` checks it against brute force on clusters of 2 to 500
    near-duplicates at 1e-6 rad, in float32 and float64, across block boundaries.

    O(N² d / 2) time (the pairs i < j only) plus two reductions per block; O(N · block_size)
    memory. ``block_size``: rows per block (rounded to a multiple of 64); default
    :data:`_MIN_NN_BLOCK` = 256 on the CPU and the larger of that and 2^24/N on other devices.
    Raises ``ValueError``/``TypeError`` for bad ``X`` (:func:`dispersion._checks.check_points`)
    or a ``block_size`` that is not a positive int.
    """
    check_points(X, "X")
    return _nearest(X, block_size)[0].to(X.dtype)


def _nearest(X: torch.Tensor, block_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(angles float64 (N,), indices (N,)) of the exact nearest neighbours of validated ``X``."""
    n = X.shape[0]
    if block_size is None:
        block_size = _MIN_NN_BLOCK if X.device.type == "cpu" else max(_budget_rows(X), _MIN_NN_BLOCK)
    if not is_int(block_size) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    return nearest_neighbors_exact(X, int(block_size))


@torch.no_grad()
def min_angle(X: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """The minimum pairwise angle d_min = min_{i≠j} d_S(x_i, x_j), 0-dim tensor, radians.

    Exact as :func:`nearest_neighbor_angles` (whose minimum it is)."""
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
    """Yield the angles of the pairs i < j, block by block (1-D tensors, float64).

    Rows [s, e) meet columns [s, N): the square [s, e)² gives its strict upper triangle (a
    small gather), the rectangle of columns [e, N) is all pairs i < j and is yielded whole
    (a view, no boolean gather).
    """
    n = X.shape[0]
    for s, e in _blocks(X, block_size):
        G = X[s:e] @ X[s:].T  # rows s..e, columns s..n
        b = e - s
        iu = torch.triu_indices(b, b, offset=1, device=X.device)
        yield G[iu[0], iu[1]].to(torch.float64).clamp_(-1.0, 1.0).arccos_()
        if b < G.shape[1]:
            yield G[:, b:].to(torch.float64).clamp_(-1.0, 1.0).arccos_().reshape(-1)


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
    if not is_int(bins) or int(bins) < 1:
        raise (TypeError if not is_int(bins) else ValueError)(
            f"bins must be an int >= 1 (histogram bins of [0, π] for the first pass), got {bins!r}")
    bins = int(bins)
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


# ----------------------------------------------------------------------------------------
# k nearest neighbours and neighbourhood recall (issue 13). Self-contained: these functions use
# only ``check_points`` and their own helpers below, not the single-neighbour search above.
# ----------------------------------------------------------------------------------------

#: Extra cosine candidates per row beyond k that :func:`knn` re-measures with the chordal
#: formula, so that float rounding of cosines cannot drop a true neighbour tied within ~3e-4 rad.
_KNN_EXTRA_CANDIDATES = 4


def _knn_check_k(k, n: int, name: str = "k") -> int:
    if not is_int(k):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    k = int(k)
    if not 1 <= k <= n - 1:
        raise ValueError(f"{name} must be in [1, N - 1] = [1, {n - 1}] for N = {n} points, got {k}")
    return k


def _knn_block_rows(X: torch.Tensor, block_size: int | None) -> int:
    if block_size is None:
        return _budget_rows(X)
    if not is_int(block_size) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    return int(block_size)


@torch.no_grad()
def knn(X: torch.Tensor, k: int, block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest neighbours of every row of ``X`` by geodesic angle: (indices, angles).

    ``X``: (N, d) with unit rows, float32/float64, any device; ``k``: int in [1, N − 1].
    Returns ``indices`` (N, k) int64 and ``angles`` (N, k) in X's dtype, radians, each row
    sorted by increasing angle (ties broken by the smaller index); row i never lists i itself,
    but does list an exact duplicate of x_i (angle 0), wherever it sits in the table.

    Exact for any configuration, in memory O(N · block_size): row blocks [s, e) meet all N
    columns, the true diagonal is masked, and the k + 4 largest cosines of each row are kept as
    candidates (:data:`_KNN_EXTRA_CANDIDATES`) — or, when the last of them is still within the
    rounding bound 2ε of the k-th (:func:`dispersion._sweep.cosine_error_bound`; clusters of
    near-duplicates), every column within 2ε of the k-th. Their angles are re-measured in float64
    with the chordal formula 2·asin(‖x̂_i − x̂_j‖ / 2) on the rows normalised in float64, which
    keeps full precision near 0 and π where arccos of a rounded cosine does not, and the k
    smallest are returned. ``block_size=None`` takes blocks of about
    2^24 cosines (64 MiB in float32). O(N² d) time.

    Raises ``TypeError``/``ValueError`` naming ``X`` (see ``check_points``), ``k`` or
    ``block_size``.
    """
    check_points(X, "X")
    n = X.shape[0]
    k = _knn_check_k(k, n)
    m = min(n - 1, k + _KNN_EXTRA_CANDIDATES)
    block = _knn_block_rows(X, block_size)
    indices = torch.empty((n, k), dtype=torch.long, device=X.device)
    angles = torch.empty((n, k), dtype=X.dtype, device=X.device)
    eps2 = 2.0 * cosine_error_bound(X.shape[1], X.dtype, X.device)
    Xn = torch.nn.functional.normalize(X, dim=1)
    for s in range(0, n, block):
        e = min(n, s + block)
        G = Xn[s:e] @ Xn.T  # (b, N) cosines
        rows = torch.arange(e - s, device=X.device)
        G[rows, rows + s] = -math.inf  # the true diagonal only
        vals, cand = G.topk(m, dim=1)  # (b, m)
        # A true k-th neighbour has a computed cosine >= (k-th largest) − 2ε; when the m-th kept
        # cosine still reaches that bound (near-duplicates), the row takes every such column.
        short = ((vals[:, -1] >= vals[:, k - 1] - eps2) & (m < n - 1)).nonzero().squeeze(1).tolist()
        # candidates in index order, so that the stable sort by angle breaks ties by index
        cand = cand.sort(dim=1).values
        b = e - s
        ang = _measure(X, (rows + s)[:, None].expand(b, m).reshape(-1), cand.reshape(-1)).view(b, m)
        order = ang.argsort(dim=1, stable=True)[:, :k]
        indices[s:e] = cand.gather(1, order)
        angles[s:e] = ang.gather(1, order).to(X.dtype)
        for i in short:  # rare: near-duplicates; every column within the bound of the k-th
            c = (G[i] >= vals[i, k - 1] - eps2).nonzero().squeeze(1)
            a = _measure(X, torch.full_like(c, s + i), c)
            o = a.argsort(stable=True)[:k]
            indices[s + i] = c[o]
            angles[s + i] = a[o].to(X.dtype)
        del G
    return indices, angles


@torch.no_grad()
def knn_recall(
    X: torch.Tensor,
    Y: torch.Tensor,
    k: int = 10,
    block_size: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Recall@k of the neighbourhoods of ``X`` in ``Y``: how many of each row's k nearest
    neighbours in X are still among its k nearest in Y.

    For row i with neighbour sets A_i = knn(X, k)[i] and B_i = knn(Y, k)[i],
    r_i = |A_i ∩ B_i| / k ∈ [0, 1]; with ``reduction="mean"`` (default) the mean over rows,
    a 0-dim float64 tensor, with ``"none"`` the (N,) float64 vector r. 1 when Y keeps every
    neighbourhood of X (e.g. Y = X, or Y a rotation of X), about k/(N − 1) for unrelated sets.
    This is the "trustworthiness"-style neighbourhood preservation used to judge embedding
    maps (Venna & Kaski, 2006) and approximate-nearest-neighbour search (recall@k).

    ``X`` (N, d) and ``Y`` (N, d') have unit rows and the same N (row i of Y is the image of
    row i of X; d' may differ from d); ``k`` in [1, N − 1]. Exact ties in Y's k-th distance
    are broken by the smaller index (as :func:`knn`). Memory O(N · block_size + N k).

    Raises ``ValueError`` for different row counts (naming ``X`` and ``Y``), a bad ``k``,
    ``block_size`` or ``reduction``, and the errors of :func:`knn` for each argument.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    check_points(X, "X")
    check_points(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of rows (row i of Y is the image of row i of X), "
            f"got X with {X.shape[0]} and Y with {Y.shape[0]}"
        )
    a, _ = knn(X, k, block_size)
    b, _ = knn(Y, k, block_size)
    b = b.to(a.device)
    # |A_i ∩ B_i| by sorted membership: O(N k log k), no (N, k, k) tensor
    b_sorted = b.sort(dim=1).values
    pos = torch.searchsorted(b_sorted, a).clamp_(max=k - 1)
    hits = (b_sorted.gather(1, pos) == a).sum(dim=1)
    r = hits.to(torch.float64) / k
    return r.mean() if reduction == "mean" else r
