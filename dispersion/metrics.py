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

Mixed precision: every function runs with ``torch.autocast`` disabled on the input's device
(under autocast a float32 input gives exactly the float32 result: the rounding bound of the
nearest-neighbour search holds), and half-precision inputs are computed in float32 and the
result is returned in the input dtype (the results documented as float64 or int64 stay so);
rows stored in bfloat16/float16 are accepted within that dtype's rounding of the unit norm
(:mod:`dispersion._transforms`, :func:`dispersion._checks.check_points`).
"""

from __future__ import annotations

import math

import torch

from . import distributed as _distributed
from ._checks import check_points, is_int
from ._transforms import full_precision
from ._sweep import (_block_pairs, _progress_bar, auto_block_size, knn_exact, nearest_neighbors_exact,
                     upper_blocks)

__all__ = [
    "nearest_neighbor_angles",
    "min_angle",
    "circular_variance",
    "AUTHORS_COSINE_CLAMP",
    "clamped_angle",
    "clamped_min_angle",
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


@full_precision
@torch.no_grad()
def nearest_neighbor_angles(X: torch.Tensor, block_size: int | None = None, *, distributed: bool = False,
                            process_group=None, progress: bool = False) -> torch.Tensor:
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
    or a ``block_size`` that is not a positive int. ``progress=True`` shows a tqdm bar over the
    N(N − 1)/2 pairs on stderr (its rate and remaining time are measured as the sweep goes; at
    N = 10⁵, d = 128 the sweep takes about 20 s on one core).

    Distributed (``distributed=True``: the default process group, or ``process_group=<group>``;
    a collective call): ``X`` is this rank's shard (n_r ≥ 1, d) of a table split by rows in rank
    order, and the result (n_r,) holds its rows' nearest-neighbour angles in the *global* table,
    equal to the single-process result on the concatenated rows (the same float64 re-measure).
    No rank gathers the table: each compares its rows with every rank's block in turn, passed
    around a ring (:func:`dispersion.distributed.ring_knn`; ``block_size`` is then the local
    rows per chunk): (W − 1) · n_max · d · itemsize bytes received per rank, O(n_r N d) time.
    ``RuntimeError`` without an initialised process group (:mod:`dispersion.distributed`).
    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype.
    """
    group = _group(distributed, process_group)
    if group is not None:
        sh = _distributed.shards(X, group)
        return _distributed.ring_knn(X, 1, sh, _ring_block(block_size))[0][:, 0].to(X.dtype)
    check_points(X, "X")
    return _nearest(X, block_size, progress, "nearest neighbours")[0].to(X.dtype)


def _group(distributed, process_group):
    """The resolved process group of a distributed metric call, or None for a local one."""
    enabled, group, _ = _distributed.check_distributed(distributed, process_group)
    return _distributed.resolve_group(group) if enabled else None


def _ring_block(block_size):
    if block_size is not None and (not is_int(block_size) or block_size < 1):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    return block_size


def _nn_block_rows(X: torch.Tensor, block_size: int | None) -> int:
    """Rows per block of the nearest-neighbour searches: ``block_size``, or by default
    :data:`_MIN_NN_BLOCK` on the CPU and the larger of that and 2^24/N on other devices."""
    if block_size is None:
        block_size = _MIN_NN_BLOCK if X.device.type == "cpu" else max(_budget_rows(X), _MIN_NN_BLOCK)
    if not is_int(block_size) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    return int(block_size)


def _nearest(X: torch.Tensor, block_size: int | None, progress: bool = False,
             desc: str = "nearest neighbours") -> tuple[torch.Tensor, torch.Tensor]:
    """(angles float64 (N,), indices (N,)) of the exact nearest neighbours of validated ``X``."""
    return nearest_neighbors_exact(X, _nn_block_rows(X, block_size), progress=progress, desc=desc)


@full_precision
@torch.no_grad()
def min_angle(X: torch.Tensor, block_size: int | None = None, *, distributed: bool = False,
              process_group=None, progress: bool = False) -> torch.Tensor:
    """The minimum pairwise angle d_min = min_{i≠j} d_S(x_i, x_j), 0-dim tensor, radians.

    Exact as :func:`nearest_neighbor_angles` (whose minimum it is; ``progress=True``: its tqdm
    bar over the pairs). Distributed
    (``distributed=True`` or ``process_group=``, a collective call; ``X`` this rank's shard):
    the global d_min of the concatenated shards, the same on every rank — the minimum of the
    distributed :func:`nearest_neighbor_angles` over all ranks (a pair split across ranks
    counts), one 8-byte all_reduce more.

    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype.
    """
    group = _group(distributed, process_group)
    if group is not None:
        sh = _distributed.shards(X, group)
        local = _distributed.ring_knn(X, 1, sh, _ring_block(block_size))[0].min()
        return sh.all_reduce(local, "min").to(X.dtype)
    check_points(X, "X")
    return _nearest(X, block_size, progress, "min_angle")[0].min().to(X.dtype)


@full_precision
@torch.no_grad()
def circular_variance(X: torch.Tensor, *, distributed: bool = False, process_group=None) -> torch.Tensor:
    """Circular (spherical) variance 1 − ‖(1/N) Σ_i x_i‖ ∈ [0, 1], a 0-dim tensor.

    1 for a balanced spread (e.g. any antipodally symmetric set), 0 when all points coincide.
    The mean is accumulated in float64 so that it stays exact for large N. Distributed
    (``distributed=True`` or ``process_group=``, a collective call; ``X`` this rank's shard):
    the variance of the concatenated shards, the same on every rank, from an all_reduce of the
    d float64 row sums (8 d bytes) and the global N.
    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype.
    """
    group = _group(distributed, process_group)
    if group is not None:
        sh = _distributed.shards(X, group)
        total = sh.all_reduce(X.to(torch.float64).sum(dim=0))
        return (1 - torch.linalg.vector_norm(total / sh.n)).to(X.dtype)
    check_points(X, "X")
    return (1 - torch.linalg.vector_norm(X.to(torch.float64).mean(dim=0))).to(X.dtype)


#: The cosine clamp ε of the authors' minimum-angle metric: ledoh-torch (the authors' code for
#: arXiv:2502.08231, github.com/ltl-uva/ledoh-torch, ``ledoh_torch/utils.py``,
#: ``get_acos_distance_matrix`` / ``minimum_acos_distance``) takes arccos of the cosines clamped
#: to [−1 + ε, 1 − ε], ε = 1e-6, so its minimum angle never falls below arccos(1 − ε) ≈ √(2ε) =
#: 1.414·10⁻³ rad.
AUTHORS_COSINE_CLAMP = 1e-6


def clamped_angle(theta: torch.Tensor | float, eps: float = AUTHORS_COSINE_CLAMP) -> torch.Tensor:
    """arccos(clamp(cos θ, −1 + ε, 1 − ε)) of angles ``theta`` (radians, any shape): what an
    angle becomes when it is measured as the authors' code measures it
    (:data:`AUTHORS_COSINE_CLAMP`). Angles in [arccos(1 − ε), arccos(−1 + ε)] are unchanged;
    smaller ones become arccos(1 − ε) (1.414·10⁻³ rad at ε = 1e-6). Computed in float64. Raises
    ``ValueError`` unless 0 < ε < 1."""
    if not 0 < eps < 1:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    t = torch.as_tensor(theta, dtype=torch.float64)
    return t.cos().clamp(-1 + eps, 1 - eps).arccos()


@torch.no_grad()
def clamped_min_angle(X: torch.Tensor, eps: float = AUTHORS_COSINE_CLAMP,
                      block_size: int | None = None) -> torch.Tensor:
    """The minimum angle as the authors report it: min_{i≠j} arccos(clamp(⟨x_i, x_j⟩, −1 + ε,
    1 − ε)), a 0-dim float64 tensor, radians — :func:`clamped_angle` of the exact
    :func:`min_angle` (arccos∘clamp is monotone, so the clamped minimum is the clamp of the
    minimum). Their code forms the cosines in the input's precision (float32: a rounding error
    of ~1e-7 in a cosine near 1 − ε moves the angle by ~7·10⁻⁵ rad); this one starts from the
    exact angle. It cannot tell a collapsed table (angle 0) from one at 1.4·10⁻³ rad: report it
    beside :func:`min_angle`, never instead. Errors as :func:`min_angle` and :func:`clamped_angle`.
    """
    return clamped_angle(min_angle(X, block_size).to(torch.float64), eps)


def _upper_angle_blocks(X: torch.Tensor, block_size: int | None, bar=None):
    """Yield the angles of the pairs i < j, block by block (1-D tensors, float64).

    Rows [s, e) meet columns [s, N): the square [s, e)² gives its strict upper triangle (a
    small gather), the rectangle of columns [e, N) is all pairs i < j and is yielded whole
    (a view, no boolean gather). ``bar``: a progress bar advanced by each block's pairs.
    """
    for s, e in _blocks(X, block_size):
        if bar is not None:
            bar.update(_block_pairs(X.shape[0], s, e))
        G = X[s:e] @ X[s:].T  # rows s..e, columns s..n
        b = e - s
        iu = torch.triu_indices(b, b, offset=1, device=X.device)
        yield G[iu[0], iu[1]].to(torch.float64).clamp_(-1.0, 1.0).arccos_()
        if b < G.shape[1]:
            yield G[:, b:].to(torch.float64).clamp_(-1.0, 1.0).arccos_().reshape(-1)


@full_precision
@torch.no_grad()
def mean_angle(X: torch.Tensor, block_size: int | None = None, *, progress: bool = False) -> torch.Tensor:
    """Mean pairwise angle over i < j, 0-dim tensor (float64), radians.

    Exact: the sum of arccos over all N(N−1)/2 pairs, accumulated block by block in float64.
    ``progress=True``: a tqdm bar over the pairs on stderr.
    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype, except a float64 result such as this one, which stays float64.
    """
    check_points(X, "X")
    n = X.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    bar = _progress_bar(n * (n - 1) // 2, progress, "mean_angle")
    for a in _upper_angle_blocks(X, block_size, bar):
        total += a.sum()
    bar.close()
    return total / (n * (n - 1) / 2)


@full_precision
@torch.no_grad()
def median_angle(X: torch.Tensor, block_size: int | None = None, bins: int = 2**16, *,
                 progress: bool = False) -> torch.Tensor:
    """Median pairwise angle over i < j, 0-dim tensor (float64), radians.

    Exact without storing the N(N−1)/2 angles: a first pass counts the angles in ``bins``
    equal bins of [0, π]; a second pass collects only the angles of the bin(s) that hold the
    middle rank(s) and selects them exactly. For an even number of pairs the median is the mean
    of the two middle values (as ``numpy.median``). If the middle bin holds more than 2^26
    angles (a highly degenerate set), the value is the exact order statistic of those
    collected values as well — memory then grows with that bin's size. ``progress=True``: a
    tqdm bar over the pairs of the three passes on stderr.
    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype, except a float64 result such as this one, which stays float64.
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

    bar = _progress_bar(3 * m, progress, "median_angle")
    for a in _upper_angle_blocks(X, block_size, bar):
        counts += torch.bincount(bin_of(a), minlength=bins)
    ranks = [(m - 1) // 2, m // 2]  # 0-based middle ranks
    cum = counts.cumsum(0)
    values = []
    for r in ranks:
        b = int(torch.searchsorted(cum, torch.tensor(r, device=X.device), right=True).item())
        before = int(cum[b - 1].item()) if b > 0 else 0
        vals = torch.cat([a[bin_of(a) == b] for a in _upper_angle_blocks(X, block_size, bar)])
        values.append(torch.kthvalue(vals.cpu(), r - before + 1).values.to(X.device))
    bar.close()
    return (values[0] + values[1]) / 2


@full_precision
@torch.no_grad()
def summary(X: torch.Tensor, block_size: int | None = None, pairwise_stats: bool = False, *,
            progress: bool = False) -> dict[str, float]:
    """All metrics of ``X`` as Python floats: ``min_angle``, ``circular_variance``,
    ``mean_nn_angle`` (mean nearest-neighbour angle) and, with ``pairwise_stats=True`` (an
    extra O(N²) pass each), ``mean_angle`` and ``median_angle``. Radians. ``progress=True``:
    a tqdm bar per O(N²) pass on stderr.

    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype (here as Python floats).
    """
    nn = nearest_neighbor_angles(X, block_size, progress=progress)
    out = {
        "min_angle": nn.min().item(),
        "circular_variance": circular_variance(X).item(),
        "mean_nn_angle": nn.mean().item(),
    }
    if pairwise_stats:
        out["mean_angle"] = mean_angle(X, block_size, progress=progress).item()
        out["median_angle"] = median_angle(X, block_size, progress=progress).item()
    return out


# ----------------------------------------------------------------------------------------
# k nearest neighbours and neighbourhood recall (issue 13): the search is
# :func:`dispersion._sweep.knn_exact` (k = 1: the nearest-neighbour sweep above)
# ----------------------------------------------------------------------------------------


def _knn_check_k(k, n: int, name: str = "k") -> int:
    if not is_int(k):
        raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    k = int(k)
    if not 1 <= k <= n - 1:
        raise ValueError(f"{name} must be in [1, N - 1] = [1, {n - 1}] for N = {n} points, got {k}")
    return k


@full_precision
@torch.no_grad()
def knn(X: torch.Tensor, k: int, block_size: int | None = None, *, distributed: bool = False,
        process_group=None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest neighbours of every row of ``X`` by geodesic angle: (indices, angles).

    ``X``: (N, d) with unit rows, float32/float64, any device; ``k``: int in [1, N − 1].
    Returns ``indices`` (N, k) int64 and ``angles`` (N, k) in X's dtype, radians, each row
    sorted by increasing angle (ties broken by the smaller index); row i never lists i itself,
    but does list an exact duplicate of x_i (angle 0), wherever it sits in the table.

    Exact for any configuration, in memory O(N · (block_size + k + d)): a true k-th neighbour
    of row i has a float cosine within the rounding bound 2ε of the k-th largest float cosine
    of row i (:func:`dispersion._sweep.cosine_error_bound`), so every column within 2ε of it is
    re-measured in float64 with the chordal formula 2·asin(‖x̂_i − x̂_j‖ / 2) on the rows
    normalised in float64 (full precision near 0 and π, where arccos of a rounded cosine loses
    it), and the k smallest (angle, index) are returned. On the CPU from 10 000 rows one
    upper-triangle sweep computes each pair's cosine once (N²d/2 multiply–adds, as
    :func:`min_angle`) and keeps each row's k + 4 largest cosines so far, scanning only the
    tiles of the block that can beat them; below that, and on other devices, every block of
    rows meets all N columns (:func:`dispersion._sweep.knn_exact`). A row of near-duplicates
    whose k + 4 kept cosines all lie in the band is searched again over its full row.
    ``k = 1`` runs the search of :func:`nearest_neighbor_angles`. ``block_size``: rows per block,
    default as :func:`nearest_neighbor_angles` (256 on the CPU). ``progress=True`` shows a tqdm
    bar over the pairs on stderr (measured rate and remaining time; about 30 s at N = 10⁵,
    d = 128, k = 10 on one core).

    Raises ``TypeError``/``ValueError`` naming ``X`` (see ``check_points``), ``k`` or
    ``block_size``.

    Distributed (``distributed=True`` or ``process_group=``, a collective call): ``X`` is this
    rank's shard (n_r ≥ 1, d), ``k`` in [1, N − 1] for the global N, and the result (n_r, k)
    gives its rows' neighbours in the global table with *global* row indices (rank order), equal
    to the single-process result on the concatenated rows; the blocks travel in a ring as for
    :func:`nearest_neighbor_angles` ((W − 1) · n_max · d · itemsize bytes received per rank).
    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype.
    """
    group = _group(distributed, process_group)
    if group is not None:
        sh = _distributed.shards(X, group)
        k = _knn_check_k(k, sh.n)
        angles, indices = _distributed.ring_knn(X, k, sh, _ring_block(block_size))
        return indices, angles.to(X.dtype)
    check_points(X, "X")
    k = _knn_check_k(k, X.shape[0])
    block = _nn_block_rows(X, block_size)
    if k == 1:
        angles, indices = nearest_neighbors_exact(X, block, progress=progress, desc="knn")
        return indices[:, None], angles[:, None].to(X.dtype)
    angles, indices = knn_exact(X, k, block, progress=progress)
    return indices, angles.to(X.dtype)


@full_precision
@torch.no_grad()
def knn_recall(
    X: torch.Tensor,
    Y: torch.Tensor,
    k: int = 10,
    block_size: int | None = None,
    reduction: str = "mean",
    *,
    progress: bool = False,
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

    ``progress=True``: the tqdm bars of the two :func:`knn` searches on stderr.

    Raises ``ValueError`` for different row counts (naming ``X`` and ``Y``), a bad ``k``,
    ``block_size`` or ``reduction``, and the errors of :func:`knn` for each argument.
    Mixed precision: autocast is disabled inside, so that a float32 input gives the float32
    result under ``torch.autocast``; half-precision inputs are computed in float32 and the result is
    returned in the input dtype, except a float64 result such as this one, which stays float64.
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
    a, _ = knn(X, k, block_size, progress=progress)
    b, _ = knn(Y, k, block_size, progress=progress)
    b = b.to(a.device)
    # |A_i ∩ B_i| by sorted membership: O(N k log k), no (N, k, k) tensor
    b_sorted = b.sort(dim=1).values
    pos = torch.searchsorted(b_sorted, a).clamp_(max=k - 1)
    hits = (b_sorted.gather(1, pos) == a).sum(dim=1)
    r = hits.to(torch.float64) / k
    return r.mean() if reduction == "mean" else r
