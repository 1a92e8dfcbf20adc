"""Spherical sliced Wasserstein to the uniform distribution (Bonet et al., ICLR 2023), via POT."""

from __future__ import annotations

import torch

from .._checks import check_generator, check_positive_int
from ..sphere import great_circles
from .base import Regularizer

__all__ = ["SSW"]


class SSW(Regularizer):
    """SSW_2(μ_X, Unif(S^{d-1})) over ``n_projections`` random great circles (PAPER.md §3.7).

    Delegates to the Python Optimal Transport library,
    ``ot.sliced_wasserstein_sphere_unif`` (Bonet, Berg, Courty, Septier, Drumetz, Pham,
    *Spherical Sliced-Wasserstein*, ICLR 2023), which returns the distance (the square root
    of the mean over circles of the squared circular Wasserstein-2 distance to the uniform
    measure) and supports autograd on torch tensors. The circles are drawn here with
    ``generator`` (same law as POT's: QR of a Gaussian d×2 matrix) and passed to POT as
    ``projections``, so a seed reproduces them. Rows are re-normalised before the call,
    because POT rejects rows whose squared norm is off by more than 1e-4.

    Parameters
    ----------
    n_projections : int >= 1
        L, the number of great circles per call.
    generator : torch.Generator, optional
    """

    name = "ssw"

    def __init__(self, n_projections: int = 50, generator: torch.Generator | None = None):
        super().__init__()
        self.n_projections = check_positive_int(n_projections, "n_projections")
        self.generator = check_generator(generator)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        import ot

        frames = great_circles(self.n_projections, X.shape[1], generator=self.generator, dtype=X.dtype, device=X.device)
        Xn = torch.nn.functional.normalize(X, dim=1)
        return ot.sliced_wasserstein_sphere_unif(Xn, n_projections=self.n_projections, projections=frames)

    def hparams(self) -> dict:
        return {"n_projections": self.n_projections}
