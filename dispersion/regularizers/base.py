"""The common base class of the dispersion regularizers."""

from __future__ import annotations

import torch

from .. import distributed as _distributed
from .._checks import NORM_ATOL, check_points
from .._transforms import in_working_precision
from .scale import estimate_gradient_scale

__all__ = ["Regularizer"]


class Regularizer(torch.nn.Module):
    """A dispersion regularizer R(X): a ``torch.nn.Module`` mapping points to a scalar.

    ``forward(X)`` takes ``X`` of shape (N, d), float32, float64, bfloat16 or float16, rows of
    unit norm (within ``atol``), on any device, and returns a 0-dim tensor of the same dtype and
    device. Lower is more dispersed. Subclasses implement :meth:`energy`; :meth:`forward`
    validates the input first (wrong shape, N < 2, NaN/inf, rows off the sphere, a dtype other
    than these four each raise ``ValueError``/``TypeError`` naming ``X``).

    Every regularizer takes ``normalize`` (bool, default False). With ``normalize=True``,
    ``forward(X)`` returns ``energy(X) / c`` with c = :meth:`gradient_scale` (N, d) for the
    shape (N, d) of ``X``: the mean over rows of the Riemannian gradient norm at i.i.d. uniform
    points, estimated once per (N, d) with a fixed seed and cached
    (:mod:`dispersion.regularizers.scale`), so that one weight λ means the same for every
    method. With the default ``False`` the value is ``energy(X)``, untouched, and ``hparams()``
    does not mention ``normalize``.

    Every regularizer also takes ``distributed`` (bool, default False), ``process_group`` (a
    ``torch.distributed.ProcessGroup`` or None) and ``grad_reduction`` (``"mean"``, default, or
    ``"sum"``) for points split by rows over several processes. With ``distributed=True`` (the
    default process group) or a ``process_group``, ``forward(X)`` takes this rank's rows
    (n_r ≥ 1, d) — every rank of the group calls it with its own shard — and returns, on every
    rank, R of the concatenation of all ranks' rows in rank order (``normalize`` divides by the
    scale of the global N). The gradient each rank back-propagates into its rows is
    W · ∂R/∂(its rows) with ``grad_reduction="mean"``, so that after DDP's averaging of the
    gradients over the W ranks every parameter's gradient is the single-process gradient of R on
    the concatenated rows; exactly ∂R/∂(its rows) with ``"sum"`` (gradients summed, or rows owned
    by one rank). Random directions are drawn from a seed that rank 0 sends each call, so they
    agree on every rank. Without an initialised process group the call raises ``RuntimeError``;
    a shard that differs in d or dtype raises ``ValueError`` on every rank. Each method's
    docstring gives the bytes it communicates; :mod:`dispersion.distributed` the design.

    Mixed precision: half-precision inputs are computed in float32 and the result is returned in
    the input dtype (bfloat16/float16 rows are accepted within that dtype's rounding of the unit
    norm, 2⁻⁷ and 2⁻¹⁰; the gradient flows back to them in their dtype). :meth:`forward` runs
    with ``torch.autocast`` disabled on X's device, so that under autocast (CPU bfloat16/float16,
    CUDA float16/bfloat16) a float32 input gives the float32 value and gradient, as DINOv3's
    distributed KoLeo loss does (the rule: :mod:`dispersion._transforms`).

    Transforms: ``torch.func.grad``, ``grad_and_value``, ``jacrev`` and ``vmap`` (over a batch of
    point sets (B, N, d), e.g. ``vmap(grad(reg))``) apply to every method; the fused paths
    (blocked ``mhe``/``uniformity``, ``sliced``) and the blocked nearest-neighbour search are
    custom ``autograd.Function`` classes with ``setup_context`` and a vmap rule that runs them
    once per member of the batch. The random methods (``lloyd``, ``sliced``, ``ssw``) draw from
    their ``generator``: the same generator state gives the same gradient under
    ``torch.func.grad`` as under autograd; under ``vmap`` they need ``randomness="same"`` (one
    draw for the whole batch, that of an unbatched call) or ``"different"``. Under ``vmap`` and
    ``torch.compile`` the data-dependent input checks (NaN/inf, row norms) are skipped
    (:func:`dispersion._checks.check_points`).

    ``torch.compile`` works for every method (same value and gradient as eager). Without graph
    breaks (``fullgraph=True``; checked at N = 64, d = 8 by ``tests/test_functorch.py``): ``mhe``
    (dense, and blocked with its block loop unrolled into the graph), ``mma``, ``koleo``,
    ``mmcs`` and ``uniformity`` on the dense path (``block_size=None`` with N ≤
    ``pairwise.DENSE_MAX_N`` = 128, or ``"dense"``), and ``lloyd`` and ``sliced`` drawing from
    the global RNG (``generator=None``). Graph breaks: a
    ``torch.Generator`` argument (each draw of ``lloyd``, ``sliced`` or ``ssw`` with a
    generator), ``ssw``'s POT call (run eagerly), the blocked nearest-neighbour search of
    ``mma``/``koleo``/``mmcs``, the blocked ``uniformity`` (a ``.item()`` per block), an ``mhe``
    whose γ or s must be checked for representability on the data (γ > 21 in float32), and
    ``normalize=True`` (the cached scale estimate).

    Class attributes: ``name`` (the registry name) and ``pairwise`` (True for the O(N²)
    methods that the experiments feed a random row minibatch).
    """

    name: str = ""
    pairwise: bool = False
    #: Tolerance on the row norms accepted by forward().
    atol: float = NORM_ATOL
    #: Divide the value by :meth:`gradient_scale` (set from the constructor's ``normalize``).
    normalize: bool = False
    #: Compute on all ranks' rows (set by the constructor's ``distributed``/``process_group``).
    distributed: bool = False
    #: The process group of a distributed regularizer; None: the default group.
    process_group = None
    #: How the caller reduces gradients across ranks: "mean" (DDP) or "sum".
    grad_reduction: str = "mean"

    def forward(self, X: torch.Tensor) -> torch.Tensor:  # noqa: D102 - documented on the class
        # in X's working dtype with autocast off; the value in X's dtype (see the class docstring)
        return in_working_precision(self._forward, X)

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            return _distributed.regularizer_forward(self, X)
        check_points(X, "X", atol=self.atol)
        if not self.normalize:
            return self.energy(X)
        return self.energy(X) / self.gradient_scale(X.shape[0], X.shape[1])

    def gradient_scale(self, n: int, d: int, *, n_draws: int | None = None, seed: int | None = None) -> float:
        """c(R, n, d): the mean over rows of ‖(I − x xᵀ)∇_x energy‖ at n i.i.d. uniform points of
        S^{d−1}, in float64, averaged over fixed-seed draws (and over this method's random
        directions or samples); cached. The divisor of ``normalize=True``; see
        :mod:`dispersion.regularizers.scale` for the draws, the seed and the cost."""
        kw = {} if seed is None else {"seed": seed}
        return estimate_gradient_scale(type(self), self.hparams(), n, d, n_draws=n_draws, **kw)

    def _set_distributed(self, distributed: bool, process_group, grad_reduction: str) -> None:
        # the constructors' distributed arguments (validated; the group is looked up per call)
        self.distributed, self.process_group, self.grad_reduction = _distributed.check_distributed(
            distributed, process_group, grad_reduction)

    def _distributed_energy(self, X: torch.Tensor, shards: _distributed.Shards) -> torch.Tensor:
        """The value on all ranks' rows from this rank's rows ``X`` (n_r, d); by default
        :meth:`energy` on the rows gathered from every rank (:meth:`~dispersion.distributed.Shards.gather`,
        whose backward keeps this rank's slice). Methods that need less than the rows override it."""
        return self.energy(shards.gather(X))

    def _normalize_hparams(self) -> dict:
        # recorded only when on, so that the specs of existing runs are unchanged
        return {"normalize": True} if self.normalize else {}

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        """The regularizer's value on validated points ``X`` (N, d); a 0-dim tensor."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        extra = {"distributed": True, "grad_reduction": self.grad_reduction} if self.distributed else {}
        return ", ".join(f"{k}={v!r}" for k, v in {**self.hparams(), **extra}.items())

    def hparams(self) -> dict:
        """The keyword parameters that rebuild this regularizer with :func:`dispersion.build`."""
        return {}
