"""Dispersion regularizers and metrics over several processes (``torch.distributed``).

When a table or a feature batch is split by rows over the ranks of a process group — data
parallelism (DDP: every rank embeds its own minibatch) or a row-sharded table — a regularizer
or a metric evaluated on the local shard alone measures the dispersion of that shard, not of the
whole set: two rows that are close but live on different ranks are invisible to both. With
``distributed=True`` (the default process group) or ``process_group=<group>``, every regularizer
of :mod:`dispersion.regularizers` and the metrics ``min_angle``, ``nearest_neighbor_angles``,
``knn`` and ``circular_variance`` of :mod:`dispersion.metrics` compute on the concatenation of all
ranks' rows, in rank order (rank 0's rows first), exactly as one process would on that
concatenation (within float rounding). Every rank of the group must make the same call with its
own shard (the calls are collective); shards may differ in size (at least one row each, N ≥ 2 in
all) but must share d and the dtype — otherwise every rank raises the same ``ValueError``
(never a hang: the shapes are exchanged, and checked, before anything else).

Gradient convention (``grad_reduction``)
    Every rank returns the global value R(X_1 ⊕ … ⊕ X_W), the same on all ranks. What each
    rank back-propagates into its own rows X_r depends on how the caller reduces gradients
    across ranks afterwards:

    * ``"mean"`` (default): W · ∂R/∂X_r. DDP (and FSDP) *average* parameter gradients over the
      W ranks, so after ``loss.backward()`` every parameter's gradient is
      (1/W) Σ_r W ∂R/∂X_r · ∂X_r/∂θ = ∂R/∂θ, the single-process gradient of R on the
      concatenated rows. This is what ``torch.distributed.nn.functional.all_gather`` gives when
      every rank evaluates the global R on the gathered rows: its backward sums each rank's
      gradient over all ranks (a reduce-scatter), i.e. W · ∂R/∂X_r. DINOv3's
      ``KoLeoLossDistributed`` (Siméoni et al., 2025) uses that all_gather but returns the
      rank's *local* mean (over its own rows, neighbours searched in the gathered batch); its
      gradient after DDP's averaging is the same for equal shards, its value differs by rank.
    * ``"sum"``: exactly ∂R/∂X_r, the partial derivative of the global R in the local rows —
      for gradients summed over ranks (``all_reduce`` with ``SUM``), for rows owned by a single
      rank (a row-sharded, model-parallel table without DDP), or ``torch.autograd.grad`` on the
      local rows.

    Both conventions need **no communication in backward**: every rank evaluates R on the same
    gathered data, so it already holds the full gradient and keeps the slice of its own rows
    (:meth:`Shards.gather`). The regularizers add no collective to backward, so they compose
    with DDP's ``no_sync`` (gradient accumulation) and with ``torch.autograd.grad`` on one rank.

Random draws
    ``lloyd`` (samples), ``sliced`` (great circles or coordinate planes) and ``ssw``
    (projections) must draw the same directions on every rank. Each call, rank 0 draws a seed
    s = ``torch.randint(0, 2**62, (1,), generator=g)`` from the regularizer's ``generator`` g (or
    torch's default CPU generator when it is ``None``; :func:`draw_seed`), sends it with the
    shapes (no extra message), and every rank draws the call's directions from
    ``torch.Generator(device=X.device).manual_seed(s)``. The draws are therefore identical on
    all ranks without the user seeding anything, and seeding rank 0 (``torch.manual_seed`` or a
    generator) makes a run reproducible; the other ranks' generators are not used.

Communication per call (W ranks, N = Σ n_r rows, n_max the largest shard, d columns, b bytes per
entry of X's dtype; bytes *received* by each rank; nothing in backward)

    * every call (shapes, validity, seed): an all_gather of 5 int64 per rank, 40 W bytes;
    * ``mhe``, ``uniformity``, ``mma``, ``koleo``, ``mmcs``, ``ssw``: the rows, all_gathered,
      (W − 1) · n_max · d · b (≈ N d b for equal shards);
    * ``lloyd`` (M samples): each rank's best cosine for every sample, (W − 1) · M · b;
    * ``sliced`` (L circles): the projected angles, never the rows, (W − 1) · L · n_max · b;
    * ``min_angle``, ``nearest_neighbor_angles``, ``knn``: the rows, passed around a ring in
      W − 1 steps, (W − 1) · n_max · d · b (+ an 8-byte all_reduce for ``min_angle``);
    * ``circular_variance``: an all_reduce of d float64, about 8 d bytes.

    Computation: the gathered methods evaluate R on all N rows on every rank (the same O(N² d)
    as one process, not divided by W: the price of exactness without communication in
    backward); ``lloyd`` costs O(M n_r d) per rank and ``sliced`` O(L (n_r d + N log N)).
    The metrics divide their O(N² d) search by W: rank r compares its rows with each other
    rank's block in turn (a ring of ``batch_isend_irecv``; no rank ever holds more than its own
    rows and two blocks of n_max rows: the one compared and the one arriving).

Backends
    Nothing here is specific to a backend: the tensors exchanged live on X's device, so the same
    code runs on gloo (CPU tensors; what the tests use) and on NCCL (CUDA tensors, one device
    per rank; the ring uses ``batch_isend_irecv``, the call NCCL recommends for P2P).

Also see ``docs/examples/ddp_dispersion.py``: a runnable DDP example.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.distributed as dist

from ._checks import NORM_ATOL, check_points
from ._sweep import _measure, cosine_error_bound

__all__ = [
    "GRAD_REDUCTIONS",
    "check_distributed",
    "resolve_group",
    "draw_seed",
    "scale_grad",
    "Shards",
    "shards",
    "regularizer_forward",
    "ring_knn",
]

#: The accepted values of ``grad_reduction`` (see the module docstring).
GRAD_REDUCTIONS = ("mean", "sum")

#: The dtypes of the shapes message, by code.
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

#: Entries of the (rows × block) cosine chunk of the ring search when ``block_size`` is None
#: (2^22: 16 MiB in float32).
_RING_CHUNK_ENTRIES = 2**22


def check_distributed(distributed, process_group=None, grad_reduction: str = "mean"):
    """Validate the constructor arguments of a distributed regularizer; no communication.

    ``distributed``: bool (True: the default process group); ``process_group``: a
    ``torch.distributed.ProcessGroup`` or None (a group implies ``distributed``);
    ``grad_reduction``: one of :data:`GRAD_REDUCTIONS`. Returns
    ``(enabled: bool, process_group or None, grad_reduction)``. The group itself is looked up
    when the regularizer is called (:func:`resolve_group`), so a regularizer may be built before
    ``torch.distributed.init_process_group``.

    Raises ``TypeError`` for a non-bool ``distributed`` or a ``process_group`` that is not a
    process group, ``ValueError`` for an unknown ``grad_reduction``.
    """
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be a bool (True: the default process group), got "
                        f"{type(distributed).__name__}; pass a group as process_group=")
    if process_group is not None and not _non_member(process_group):
        pg_type = getattr(dist, "ProcessGroup", None)
        if pg_type is None or not isinstance(process_group, pg_type):
            raise TypeError(f"process_group must be a torch.distributed.ProcessGroup or None, got "
                            f"{type(process_group).__name__}")
    if grad_reduction not in GRAD_REDUCTIONS:
        raise ValueError(f"grad_reduction must be one of {GRAD_REDUCTIONS} (how gradients are reduced "
                         f"across ranks after backward: 'mean' for DDP), got {grad_reduction!r}")
    return bool(distributed or process_group is not None), process_group, grad_reduction


def resolve_group(process_group=None):
    """The process group of a distributed call: ``process_group``, or the default group if None.

    Raises ``RuntimeError`` when torch was built without ``torch.distributed`` or no process
    group has been initialised (``torch.distributed.init_process_group``, or a launch by
    ``torchrun``), and ``ValueError`` when this process is not a member of ``process_group``.
    """
    if not dist.is_available():
        raise RuntimeError("distributed=True needs torch.distributed, which this build of torch lacks "
                           "(torch.distributed.is_available() is False); pass distributed=False")
    if not dist.is_initialized():
        raise RuntimeError("distributed=True (or process_group=) needs an initialised process group: call "
                           "torch.distributed.init_process_group(...) first (torchrun sets up its environment), "
                           "or pass distributed=False to compute on the local rows only")
    group = process_group if process_group is not None else dist.group.WORLD
    if _non_member(group) or dist.get_rank(group) < 0:
        raise ValueError("this process is not a member of the process_group it was given; call the "
                         "regularizer or metric on the group's members only")
    return group


def _non_member(group) -> bool:
    # torch.distributed.new_group returns this sentinel (an int) on the processes it leaves out
    sentinel = getattr(getattr(dist, "GroupMember", None), "NON_GROUP_MEMBER", None)
    return sentinel is not None and isinstance(group, int) and group == sentinel


def draw_seed(generator: torch.Generator | None = None) -> int:
    """The seed that rank 0 draws for a call's random directions:
    ``int(torch.randint(0, 2**62, (1,), generator=generator))`` (on the generator's device; torch's
    default CPU generator when ``generator`` is None). Advances ``generator``."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


class _ScaleGrad(torch.autograd.Function):
    """Identity in forward; multiplies the incoming gradient by ``factor`` in backward."""

    @staticmethod
    def forward(ctx, t, factor):  # noqa: D102
        ctx.factor = factor
        return t.view_as(t)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g * ctx.factor, None


def scale_grad(t: torch.Tensor, factor: float) -> torch.Tensor:
    """``t`` unchanged, with its gradient multiplied by ``factor`` in backward (any shape, dtype,
    device); the ``grad_reduction="mean"`` factor W is applied with it."""
    if factor == 1 or not t.requires_grad:
        return t
    return _ScaleGrad.apply(t, float(factor))


class _Gather(torch.autograd.Function):
    """all_gather along ``dim`` (shards of different sizes padded); backward keeps the own slice."""

    @staticmethod
    def forward(ctx, t, sh, dim, sizes):  # noqa: D102
        ctx.dim, ctx.start, ctx.length = dim, sum(sizes[: sh.rank]), t.shape[dim]
        if sh.world_size == 1:
            return t.clone()
        n_max = max(sizes)
        tp = t.contiguous()
        if tp.shape[dim] < n_max:  # all_gather needs one shape on every rank
            pad = list(tp.shape)
            pad[dim] = n_max - tp.shape[dim]
            tp = torch.cat([tp, tp.new_zeros(pad)], dim=dim)
        parts = [torch.empty_like(tp) for _ in range(sh.world_size)]
        dist.all_gather(parts, tp, group=sh.group)
        return torch.cat([p.narrow(dim, 0, s) for p, s in zip(parts, sizes)], dim=dim)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        # every rank evaluated the same function of the same gathered tensor, so g is already the
        # full gradient: the rows of this rank are its slice (no communication)
        return g.narrow(ctx.dim, ctx.start, ctx.length), None, None, None


class Shards:
    """The row shards of one distributed call: who holds which rows of the concatenation.

    Built by :func:`shards` (one collective). Attributes: ``group`` (the process group),
    ``rank`` and ``world_size`` (within the group), ``sizes`` (rows per rank, a tuple),
    ``offsets`` (first global row of each rank), ``offset`` and ``n_local`` (this rank's),
    ``n`` (global N), ``d``, ``dtype`` and ``seed`` (rank 0's seed for the call's random
    directions; 0 when none was drawn).
    """

    def __init__(self, group, rank: int, world_size: int, sizes: tuple[int, ...], d: int,
                 dtype: torch.dtype, seed: int):
        self.group, self.rank, self.world_size = group, rank, world_size
        self.sizes, self.d, self.dtype, self.seed = tuple(sizes), d, dtype, seed
        self.offsets = tuple(sum(self.sizes[:r]) for r in range(world_size))
        self.offset, self.n_local, self.n = self.offsets[rank], self.sizes[rank], sum(self.sizes)

    def __repr__(self) -> str:
        return f"Shards(rank={self.rank}, world_size={self.world_size}, sizes={self.sizes}, d={self.d})"

    def gather(self, t: torch.Tensor, dim: int = 0, *, equal: bool = False) -> torch.Tensor:
        """All ranks' ``t`` concatenated along ``dim`` in rank order, differentiable.

        ``t``: any shape, dtype and device; with ``equal=False`` its size along ``dim`` is this
        rank's row count (``n_local``: rows, or the per-row columns of an (L, n_local) tensor) and
        the result has size N there; with ``equal=True`` every rank passes the same shape. The
        backward pass keeps this rank's slice of the incoming gradient and sends nothing — correct
        because every rank evaluates the same function of the gathered tensor (the module
        docstring). Bytes received: (W − 1) × the largest shard's ``t``.
        """
        sizes = (t.shape[dim],) * self.world_size if equal else self.sizes
        if not equal and t.shape[dim] != self.n_local:
            raise ValueError(f"gather along dim {dim} expects {self.n_local} entries (this rank's rows), "
                             f"got shape {tuple(t.shape)}")
        return _Gather.apply(t, self, dim, sizes)

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """``t`` reduced over the group (``op``: "sum", "min" or "max"), a new tensor; no gradient."""
        out = t.detach().clone()
        if self.world_size > 1:
            ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
            dist.all_reduce(out, op=ops[op], group=self.group)
        return out

    def ring(self, X: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(owner, block)`` for every rank's rows in turn, starting with this rank's own.

        ``X``: this rank's rows (n_local, d). Step s holds the rows of rank (rank − s) mod W,
        received from the previous rank while the caller works on the current block (double
        buffered ``batch_isend_irecv``); the block is valid until the next step only. Every rank
        must consume the whole iterator. Bytes received: (W − 1) · n_max · d · itemsize.
        """
        W, r = self.world_size, self.rank
        if W == 1:
            yield r, X
            return
        n_max = max(self.sizes)
        cur = X.new_zeros(n_max, X.shape[1])
        cur[: X.shape[0]] = X
        nxt = torch.empty_like(cur)
        to = dist.get_global_rank(self.group, (r + 1) % W)
        frm = dist.get_global_rank(self.group, (r - 1) % W)
        for step in range(W):
            owner = (r - step) % W
            reqs = []
            if step < W - 1:
                reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, cur, to, self.group),
                                               dist.P2POp(dist.irecv, nxt, frm, self.group)])
            yield owner, cur[: self.sizes[owner]]
            for q in reqs:
                q.wait()
            cur, nxt = nxt, cur


def shards(
    X,
    group,
    *,
    name: str = "X",
    atol: float = NORM_ATOL,
    min_rows: int = 2,
    seed: bool = False,
    generator: torch.Generator | None = None,
) -> Shards:
    """Validate this rank's ``X`` and exchange the shapes of all ranks' shards (one all_gather).

    ``X``: (n_r ≥ 1, d) unit rows (within ``atol``), float32/float64; ``group``: a resolved
    process group (:func:`resolve_group`). With ``seed=True`` rank 0 draws the call's seed from
    ``generator`` (:func:`draw_seed`) and sends it along. Every rank raises the same error when
    any rank's ``X`` is invalid (the rank at fault raises its own ``TypeError``/``ValueError``,
    the others a ``ValueError`` naming it), when d or the dtype differ between ranks, or when the
    shards hold fewer than ``min_rows`` rows in all — never a hang.
    """
    err = None
    try:
        check_points(X, name, min_rows=1, atol=atol)
    except (TypeError, ValueError) as e:
        err = e
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    if err is None:
        n, d = X.shape
        code = _DTYPES.index(X.dtype) if X.dtype in _DTYPES else len(_DTYPES)
    else:
        n = d = code = -1
    s = draw_seed(generator) if (seed and rank == 0) else 0
    meta = torch.tensor([int(err is not None), n, d, code, s], dtype=torch.int64, device=device)
    if world_size > 1:
        parts = [torch.empty_like(meta) for _ in range(world_size)]
        dist.all_gather(parts, meta, group=group)
        rows = torch.stack(parts).tolist()
    else:
        rows = [meta.tolist()]
    if err is not None:
        raise err
    bad = [r for r, m in enumerate(rows) if m[0]]
    if bad:
        raise ValueError(f"{name} is invalid on rank(s) {bad} of the process group (see the error raised there); "
                         f"every rank must pass valid points")
    ds, codes = [m[2] for m in rows], [m[3] for m in rows]
    if len(set(ds)) > 1:
        raise ValueError(f"{name} must have the same number of columns d on every rank, got d = {ds} on ranks "
                         f"0..{world_size - 1}")
    if len(set(codes)) > 1:
        raise ValueError(f"{name} must have the same dtype on every rank, got "
                         f"{[str(_DTYPES[c]) if c < len(_DTYPES) else '?' for c in codes]} on ranks 0..{world_size - 1}")
    sizes = tuple(m[1] for m in rows)
    if sum(sizes) < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows over all ranks, got {sum(sizes)} "
                         f"(rows per rank {list(sizes)})")
    return Shards(group, rank, world_size, sizes, d, X.dtype, rows[0][4])


@contextlib.contextmanager
def _call_generator(reg, sh: Shards, device: torch.device):
    """Within the block, ``reg.generator`` is the call's shared generator (seeded with rank 0's seed)."""
    if not hasattr(reg, "generator"):
        yield
        return
    own = reg.generator
    reg.generator = torch.Generator(device=device).manual_seed(sh.seed)
    try:
        yield
    finally:
        reg.generator = own


def regularizer_forward(reg, X: torch.Tensor) -> torch.Tensor:
    """The value of the distributed regularizer ``reg`` on this rank's rows ``X`` (n_r, d).

    Called by :meth:`dispersion.regularizers.Regularizer.forward` when the regularizer was built
    with ``distributed=True`` or a ``process_group``. Validates and exchanges the shapes
    (:func:`shards`; the seed too for the methods with a ``generator``), applies the
    ``grad_reduction`` convention (:func:`scale_grad`: W for ``"mean"``), evaluates the method's
    ``_distributed_energy(X, shards)`` (by default ``energy`` on the gathered rows) with the
    shared generator, and divides by ``gradient_scale(N, d)`` for ``normalize=True`` (the global
    N). Returns a 0-dim tensor of X's dtype and device, the global value on every rank.

    Raises what :func:`resolve_group` and :func:`shards` raise.
    """
    group = resolve_group(reg.process_group)
    random = hasattr(reg, "generator")
    sh = shards(X, group, atol=reg.atol, seed=random, generator=getattr(reg, "generator", None))
    X = scale_grad(X, sh.world_size if reg.grad_reduction == "mean" else 1)
    with _call_generator(reg, sh, X.device):
        value = reg._distributed_energy(X, sh)
    if reg.normalize:
        value = value / reg.gradient_scale(sh.n, sh.d)
    return value


# ----------------------------------------------------------------------------------------
# the exact nearest-neighbour search of the metrics, in a ring
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def ring_knn(X: torch.Tensor, k: int, sh: Shards, block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest neighbours of this rank's rows in the global table: (angles, indices).

    ``X``: this rank's validated rows (n_r, d); ``k`` in [1, N − 1] (checked by the caller).
    Returns ``angles`` (n_r, k) float64, radians, sorted increasingly, and ``indices`` (n_r, k)
    int64 global row indices (ties by the smaller index); a row never lists itself but does list
    an exact duplicate anywhere in the table. Exact as the single-process
    :func:`dispersion.metrics.knn`: against every block (:meth:`Shards.ring`), each row keeps the
    columns whose float cosine is within the rounding bound 2ε
    (:func:`dispersion._sweep.cosine_error_bound`) of its k-th largest there, re-measures them in
    float64 with the chordal formula (:func:`dispersion._sweep._measure`), and merges them with
    its running k best by (angle, index). ``block_size``: local rows per chunk (default: chunks
    of about 2^22 cosines). O(n_r N d) time per rank.
    """
    n, d = X.shape
    eps2 = 2.0 * cosine_error_bound(d, X.dtype, X.device)
    Xn = torch.nn.functional.normalize(X, dim=1)
    best_a = torch.full((n, k), math.inf, dtype=torch.float64, device=X.device)
    best_i = torch.full((n, k), sh.n, dtype=torch.long, device=X.device)
    for owner, B in sh.ring(X):
        nb, off, own = B.shape[0], sh.offsets[owner], owner == sh.rank
        kk = min(k, nb - int(own))
        if kk < 1:
            continue
        Bn = torch.nn.functional.normalize(B, dim=1)
        Z = torch.cat([X, B])  # rows of both sides, for the float64 re-measure
        chunk = int(block_size) if block_size is not None else max(1, _RING_CHUNK_ENTRIES // nb)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            G = Xn[a:b] @ Bn.T  # (b − a, nb) cosines
            if own:  # the true diagonal only
                r = torch.arange(b - a, device=X.device)
                G[r, r + a] = -math.inf
            thr = G.topk(kk, dim=1).values[:, -1:] - eps2
            I, J = (G >= thr).nonzero(as_tuple=True)  # row-major: I ascending
            del G
            ang = _measure(Z, I + a, J + n)
            counts = torch.bincount(I, minlength=b - a)
            m = int(counts.max().item())
            pos = torch.arange(I.numel(), device=X.device) - (counts.cumsum(0) - counts)[I]
            A = torch.full((b - a, m), math.inf, dtype=torch.float64, device=X.device)
            Jg = torch.full((b - a, m), sh.n, dtype=torch.long, device=X.device)
            A[I, pos] = ang
            Jg[I, pos] = J + off
            cand_a, cand_i = torch.cat([best_a[a:b], A], 1), torch.cat([best_i[a:b], Jg], 1)
            o = cand_i.argsort(dim=1, stable=True)  # by index, then stably by angle
            cand_a, cand_i = cand_a.gather(1, o), cand_i.gather(1, o)
            o = cand_a.argsort(dim=1, stable=True)[:, :k]
            best_a[a:b], best_i[a:b] = cand_a.gather(1, o), cand_i.gather(1, o)
    return best_a, best_i
