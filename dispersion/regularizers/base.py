"""The common base class of the dispersion regularizers."""

from __future__ import annotations

import torch

from .._checks import NORM_ATOL, check_points
from .scale import estimate_gradient_scale

__all__ = ["Regularizer"]


class Regularizer(torch.nn.Module):
    """A dispersion regularizer R(X): a ``torch.nn.Module`` mapping points to a scalar.

    ``forward(X)`` takes ``X`` of shape (N, d), float32 or float64, rows of unit norm (within
    ``atol``), on any device, and returns a 0-dim tensor of the same dtype and device. Lower is
    more dispersed. Subclasses implement :meth:`energy`; :meth:`forward` validates the input
    first (wrong shape, N < 2, NaN/inf, rows off the sphere, half precision each raise
    ``ValueError``/``TypeError`` naming ``X``).

    Every regularizer takes ``normalize`` (bool, default False). With ``normalize=True``,
    ``forward(X)`` returns ``energy(X) / c`` with c = :meth:`gradient_scale` (N, d) for the
    shape (N, d) of ``X``: the mean over rows of the Riemannian gradient norm at i.i.d. uniform
    points, estimated once per (N, d) with a fixed seed and cached
    (:mod:`dispersion.regularizers.scale`), so that one weight λ means the same for every
    method. With the default ``False`` the value is ``energy(X)``, untouched, and ``hparams()``
    does not mention ``normalize``.

    Class attributes: ``name`` (the registry name) and ``pairwise`` (True for the O(N²)
    methods that the experiments feed a random row minibatch).
    """

    name: str = ""
    pairwise: bool = False
    #: Tolerance on the row norms accepted by forward().
    atol: float = NORM_ATOL
    #: Divide the value by :meth:`gradient_scale` (set from the constructor's ``normalize``).
    normalize: bool = False

    def forward(self, X: torch.Tensor) -> torch.Tensor:  # noqa: D102 - documented on the class
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

    def _normalize_hparams(self) -> dict:
        # recorded only when on, so that the specs of existing runs are unchanged
        return {"normalize": True} if self.normalize else {}

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        """The regularizer's value on validated points ``X`` (N, d); a 0-dim tensor."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())

    def hparams(self) -> dict:
        """The keyword parameters that rebuild this regularizer with :func:`dispersion.build`."""
        return {}
