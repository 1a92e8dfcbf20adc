"""The block sweep shared by :mod:`dispersion.metrics` and the blocked regularizers
(:mod:`dispersion.regularizers.blocked`, :mod:`dispersion.regularizers.uniformity`): how many
rows a block holds (:func:`auto_block_size`, :func:`resolve_block_size`), the upper-triangle
row blocks (:func:`upper_blocks`) and the exact nearest-neighbour search
(:func:`nearest_neighbors_exact`).

Block size
    ``block_size=None`` or ``"auto"`` picks the rows per block from N, d, the dtype and the
    free memory of the device (:func:`auto_block_size`): on CUDA a fraction of
    ``torch.cuda.mem_get_info`` (plus what torch's caching allocator holds unused), capped at
    :data:`CUDA_BLOCK_BUDGET_BYTES`; on the CPU the fixed budget :data:`CPU_BLOCK_BUDGET_BYTES`
    and at most :data:`CPU_MAX_BLOCK_ROWS` rows (the CPU's free memory says nothing about cache
    sizes, which is what sets the best block there); callers with a budget of their own (the
    metrics: 2^24 cosines per block) pass ``budget_bytes``. Results do not depend on the block
    size beyond float rounding. Measurements: ``benchmarks/README.md``.

One upper-triangle sweep over row blocks finds, for every row of X (N, d), the nearest other row
by angle — exactly, for any configuration, including clusters of near-duplicates where float
cosines tie. Memory is O(N · block); time is that of the N²d/2 multiply–adds of the Gram
blocks plus two reductions per block on random inputs (``benchmarks/README.md``).

How it stays exact
    Cosines of the rows normalised in X's dtype are computed block by block. A computed cosine
    differs from the true cosine of the two row directions by at most ε (:func:`cosine_error_bound`),
    so the true nearest neighbour j* of row i has a computed cosine ≥ ĉ_i − 2ε, where ĉ_i is the
    largest computed cosine of row i. Every pair with a computed cosine within 2ε of its row's
    running best is therefore a *candidate*, and each candidate's angle is re-measured in float64
    from the two input rows normalised in float64 with the chordal formula
    θ = 2·asin(‖x̂_i − x̂_j‖ / 2), which keeps full relative precision for tiny angles (unlike
    arccos of a cosine near 1). The nearest neighbour is the candidate with the smallest
    re-measured angle; ties go to the smaller index. On random inputs a row has about one
    candidate; a cluster of k near-duplicates gives k² candidate pairs, re-measured in chunks.

Which entries are scanned
    Rows [s, e) of a block meet columns [s, N) (pairs i < j only; the leading square's lower
    triangle and diagonal are masked). Each block is reduced along its rows (partners j > i) and
    its columns (partners i < j of every later point) with ``amax``; the running best of a row
    only grows, so a row or column whose block maximum is below its running best − 2ε holds no
    candidate, and only the others are scanned for entries ≥ best − 2ε.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "CPU_BLOCK_BUDGET_BYTES",
    "CPU_MAX_BLOCK_ROWS",
    "CUDA_BLOCK_BUDGET_BYTES",
    "CUDA_FREE_FRACTION",
    "auto_block_size",
    "resolve_block_size",
    "cosine_error_bound",
    "upper_blocks",
    "nearest_neighbors_exact",
]

#: Bytes of block temporaries on the CPU (96 MiB), and at most :data:`CPU_MAX_BLOCK_ROWS` rows.
#: On the CPU what sets the best block is the cache, not the free memory: with N = 1 000 to
#: 30 000 in float32, blocks of 64–256 rows measured fastest on a 2-core machine (larger
#: blocks fall out of cache and lose the i < j saving, smaller ones pay Python overhead and
#: re-read the columns more often); this budget gives 256 rows at N = 10 000, 128 at N = 30 000.
CPU_BLOCK_BUDGET_BYTES = 96 * 2**20
#: Largest automatic block on the CPU, rows.
CPU_MAX_BLOCK_ROWS = 256
#: Upper bound on the bytes of block temporaries on CUDA (2 GiB): beyond it, larger blocks no
#: longer amortise kernel launches measurably, and the peak memory of a full-batch energy at
#: N = 100 000 stays far below the 4 GB target of issue 7.
CUDA_BLOCK_BUDGET_BYTES = 2 * 2**30
#: Fraction of the free CUDA memory the block temporaries may take.
CUDA_FREE_FRACTION = 0.5
#: Block tensors of N entries each, per row of a block, that the kernel energy allocates at
#: its peak (cosines, distances, kernel values, slopes, masks; a bool mask counts as 1/4 or
#: 1/8); the nearest-neighbour search needs fewer.
_TEMPS_ENERGY = 6
_TEMPS_NEIGHBORS = 3


def _free_memory_bytes(device: torch.device) -> int:
    """Bytes the block temporaries may use on ``device`` (before the fraction is applied)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # memory torch's caching allocator holds but does not use is free for us as well
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    return CPU_BLOCK_BUDGET_BYTES


def auto_block_size(
    n: int,
    d: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    *,
    budget_bytes: int | None = None,
    temporaries: float = _TEMPS_ENERGY,
) -> int:
    """Rows per block for a blocked pairwise computation over ``n`` points in R^``d``.

    A block of b rows allocates about ``temporaries`` tensors of shape (b, n) plus a (b, d)
    slice, ``itemsize(dtype)`` bytes per entry; b is the largest count whose block fits the
    budget: ``budget_bytes`` if given, else on CUDA
    min(:data:`CUDA_FREE_FRACTION` × free memory, :data:`CUDA_BLOCK_BUDGET_BYTES`) with the
    free memory from ``torch.cuda.mem_get_info`` (plus torch's cached, unused memory), and on
    any other device :data:`CPU_BLOCK_BUDGET_BYTES` and at most :data:`CPU_MAX_BLOCK_ROWS` rows
    (the cap applies whenever the budget is not given). Rounded down to a multiple of 32 rows
    when b ≥ 64 (friendlier to matrix-product kernels); at least 1, at most ``n``.

    Raises ``ValueError`` for ``n`` < 1, ``d`` < 1, a non-positive ``budget_bytes`` or
    ``temporaries``, and ``TypeError`` for a non-floating ``dtype``.
    """
    for name, v in (("n", n), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if not (temporaries > 0):
        raise ValueError(f"temporaries must be > 0, got {temporaries!r}")
    device = torch.device(device)
    if budget_bytes is None:
        budget = _free_memory_bytes(device)
        if device.type == "cuda":
            budget = min(int(CUDA_FREE_FRACTION * budget), CUDA_BLOCK_BUDGET_BYTES)
        max_rows = n if device.type == "cuda" else CPU_MAX_BLOCK_ROWS
    else:
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
            raise ValueError(f"budget_bytes must be a positive int or None, got {budget_bytes!r}")
        budget = budget_bytes
        max_rows = n
    itemsize = torch.empty((), dtype=dtype).element_size()
    per_row = itemsize * (temporaries * n + d)
    b = min(int(budget // per_row), max_rows)
    if b >= 64:
        b -= b % 32
    return max(1, min(n, b))


def resolve_block_size(
    block_size: int | str | None,
    X: torch.Tensor,
    temporaries: float = _TEMPS_ENERGY,
) -> int:
    """Turn a ``block_size`` argument into rows per block for the points ``X`` (N, d).

    ``None`` or ``"auto"``: :func:`auto_block_size`; an int ≥ 1 is returned as given (values
    above N act as N). Raises ``ValueError`` (naming ``block_size``) for anything else.
    """
    n, d = X.shape
    if block_size is None or block_size == "auto":
        return auto_block_size(n, d, X.dtype, X.device, temporaries=temporaries)
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, 'auto' or None, got {block_size!r}")
    return int(block_size)


#: Entries per tile of the candidate scan: along a row (contiguous; 64 measured cheaper than 32
#: to reduce) and along a column; N is padded to a multiple of the row tile, blocks are multiples
#: of it.
_ROW_TILE = 64
_COL_TILE = 32
#: Pairs re-measured at once (bounds the float64 gather of candidate rows in degenerate sets).
_MEASURE_CHUNK_ENTRIES = 2**22


def upper_blocks(n: int, block: int):
    """Row blocks [s, e) of an upper-triangular sweep: rows s..e meet columns s..n."""
    for s in range(0, n, block):
        yield s, min(n, s + block)


def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Unit roundoff of the matrix products in ``dtype`` on ``device``: 2⁻²⁴ / 2⁻⁵³, or that of
    TF32 (2⁻¹¹) / bfloat16 (2⁻⁸) when the caller allowed reduced-precision float32 products on
    CUDA (``torch.set_float32_matmul_precision``)."""
    u = torch.finfo(dtype).eps / 2
    if device.type == "cuda" and dtype == torch.float32:
        precision = torch.get_float32_matmul_precision()
        if precision == "high" or torch.backends.cuda.matmul.allow_tf32:
            u = max(u, 2.0**-11)
        elif precision == "medium":
            u = max(u, 2.0**-8)
    return u


def cosine_error_bound(d: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> float:
    """ε such that |ĉ − cos ∠(x, y)| ≤ ε for the computed cosine ĉ = fl(x̃·ỹ) of two rows x̃, ỹ
    normalised in ``dtype``, for any x, y ∈ R^d \\ {0}.

    With u the unit roundoff: normalising a row in floating point leaves ‖x̃ − x/‖x‖‖ ≤ (d + 3)u,
    so the exact dot product of the normalised rows is within 2(d + 3)u(1 + (d + 3)u) of the
    true cosine; the computed dot product adds at most γ_d ‖x̃‖‖ỹ‖ with γ_d = du/(1 − du) for any
    summation order (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002,
    §3.1). Both terms are bounded by 1.1·(3d + 8)·u while du ≤ 0.01; returned as a Python float.
    In float32 at d = 64 this is 1.2e-5 (a candidate band of 2ε in cosine, i.e. about
    sqrt(4ε) ≈ 7e-3 rad around a nearest neighbour at angle 0, and far less at larger angles).
    """
    u = _unit_roundoff(dtype, torch.device(device))
    if d * u > 0.01:
        raise ValueError(f"d = {d} is too large for a rounding bound in {dtype} (d·u = {d * u:.3g} > 0.01)")
    return 1.1 * (3 * d + 8) * u


def _measure(X: torch.Tensor, I: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
    """Angles (float64, radians) between the directions of rows I and J of X (pairs, 1-D each)."""
    out = torch.empty(I.numel(), dtype=torch.float64, device=X.device)
    chunk = max(1, _MEASURE_CHUNK_ENTRIES // X.shape[1])
    for s in range(0, I.numel(), chunk):
        a = torch.nn.functional.normalize(X[I[s:s + chunk]].to(torch.float64), dim=1)
        b = torch.nn.functional.normalize(X[J[s:s + chunk]].to(torch.float64), dim=1)
        chord = torch.linalg.vector_norm(a.sub_(b), dim=1).clamp_(max=2.0)
        out[s:s + chunk] = chord.div_(2).asin_().mul_(2)
    return out


@torch.no_grad()
def nearest_neighbors_exact(X: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Angle to the nearest other row and its index, for every row of ``X``.

    ``X``: (N ≥ 2, d) float32/float64 with nonzero rows, any device (not validated here; the
    public callers validate). ``block``: rows per block (int ≥ 1). Returns
    (angles (N,) float64 radians, indices (N,) int64): angles[i] = min_{j≠i} ∠(x_i, x_j) between
    the row *directions* (the rows need not be exactly unit), indices[i] the smallest j attaining
    it. Exact in the sense of the module docstring; O(N · block) memory.
    """
    n, d = X.shape
    T, Tc = _ROW_TILE, _COL_TILE
    n_pad = -(-n // T) * T
    block = max(T, (int(block) // T) * T)
    Xn = X.new_zeros(n_pad, d)  # normalised rows, zero rows as padding to a multiple of T
    Xn[:n] = torch.nn.functional.normalize(X, dim=1)
    delta = 2.0 * cosine_error_bound(d, X.dtype, X.device)
    best = torch.full((n_pad,), -math.inf, dtype=X.dtype, device=X.device)
    nn_ang = torch.full((n,), math.inf, dtype=torch.float64, device=X.device)
    nn_arg = torch.full((n,), n, dtype=torch.long, device=X.device)
    drop_full = torch.ones(min(block, n_pad), min(block, n_pad), dtype=torch.bool, device=X.device).tril_()
    for s in range(0, n, block):
        e = min(n_pad, s + block)
        b, m = e - s, n_pad - s
        G = Xn[s:e] @ Xn[s:].T  # rows s..e, columns s..n_pad
        G[:, :b].masked_fill_(drop_full[:b, :b], -math.inf)  # keep j > i: the diagonal and below go
        if n_pad > n:  # the padding rows and columns take no part
            G[:, n - s:] = -math.inf
            G[max(0, n - s):, :] = -math.inf
        # maxima over tiles of T entries along the rows (RT) and along the columns (CT): one
        # pass over G each; their maxima are the block's row and column maxima
        RT = G.view(b, m // T, T).amax(dim=2)  # (b, m/T)
        CT = G.view(b // Tc, Tc, m).amax(dim=1)  # (b/Tc, m)
        torch.maximum(best[s:], CT.amax(dim=0), out=best[s:])  # best partner i < j, columns j >= s
        torch.maximum(best[s:e], RT.amax(dim=1), out=best[s:e])  # best partner j > i, rows of the block
        # (real cosines are >= -1 - ε: the floor keeps the masked -inf entries out of every scan)
        thr = (best[s:] - delta).clamp_(min=-1.5)
        # only the tiles whose maximum reaches the threshold can hold a candidate: scan those
        r, t = (RT >= thr[:b, None]).nonzero(as_tuple=True)
        k, off = (G.view(b, m // T, T)[r, t] >= thr[r, None]).nonzero(as_tuple=True)
        q, c = (CT >= thr[None, :]).nonzero(as_tuple=True)
        k2, off2 = (G.view(b // Tc, Tc, m)[q, :, c] >= thr[c, None]).nonzero(as_tuple=True)
        I = torch.cat([r[k], q[k2] * Tc + off2]) + s
        J = torch.cat([t[k] * T + off, c[k2]]) + s
        if I.numel() == 0:
            continue
        ang = _measure(X, I, J)
        # both ends of a pair: the angle is an upper bound on each end's nearest-neighbour angle
        A, B, ang2 = torch.cat([I, J]), torch.cat([J, I]), torch.cat([ang, ang])
        before = nn_ang[A]
        nn_ang.scatter_reduce_(0, A, ang2, "amin")
        after = nn_ang[A]
        nn_arg[A[after < before]] = n  # a strictly nearer neighbour: forget the old index
        hit = ang2 == after
        nn_arg.scatter_reduce_(0, A[hit], B[hit], "amin")
    return nn_ang, nn_arg
