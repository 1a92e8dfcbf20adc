"""The common base class of the dispersion regularizers."""

from __future__ import annotations

import torch

from .._checks import NORM_ATOL, check_points

__all__ = ["Regularizer"]


class Regularizer(torch.nn.Module):
    """A dispersion regularizer R(X): a ``torch.nn.Module`` mapping points to a scalar.

    ``forward(X)`` takes ``X`` of shape (N, d), float32 or float64, rows of unit norm (within
    ``atol``), on any device, and returns a 0-dim tensor of the same dtype and device. Lower is
    more dispersed. Subclasses implement :meth:`energy`; :meth:`forward` validates the input
    first (wrong shape, N < 2, NaN/inf, rows off the sphere, half precision each raise
    ``ValueError``/``TypeError`` naming ``X``).

    Class attributes: ``name`` (the registry name) and ``pairwise`` (True for the O(N²)
    methods that the experiments feed a random row minibatch).
    """

    name: str = ""
    pairwise: bool = False
    #: Tolerance on the row norms accepted by forward().
    atol: float = NORM_ATOL

    def forward(self, X: torch.Tensor) -> torch.Tensor:  # noqa: D102 - documented on the class
        check_points(X, "X", atol=self.atol)
        return self.energy(X)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        """The regularizer's value on validated points ``X`` (N, d); a 0-dim tensor."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())

    def hparams(self) -> dict:
        """The keyword parameters that rebuild this regularizer with :func:`dispersion.build`."""
        return {}
