"""Spherical sliced Wasserstein to the uniform distribution (Bonet et al., ICLR 2023), via POT."""

from __future__ import annotations

import torch

from .._checks import check_generator, check_positive_int
from .._imports import quiet_import
from ..sphere import great_circles
from .base import Regularizer
from .scale import check_normalize

__all__ = ["SSW"]


class SSW(Regularizer):
    """SSW_2(μ_X, Unif(S^{d-1})) over ``n_projections`` random great circles (arXiv:2502.08231 baseline).

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
    normalize : bool
        Divide the value by its gradient scale c(N, d) (:meth:`Regularizer.gradient_scale`), so
        that one λ is comparable across methods; default False (the raw value).

    Scale: a distance — the square root of a mean over circles of a mean over rows of squared
    residuals — so its gradient is that of SW² (O(N^(−3/2)) per row) divided by 2 SSW
    (O(N^(−1/2))): c ∝ 1/N, growing with d about as d^0.4 and falling with L about as L^(−0.3):
    N·c = 0.17, 0.26, 0.48 at d = 8, 32, 128 (L = 50); at N = 512, d = 32,
    c = 8.6·10⁻⁴, 5.1·10⁻⁴, 3.7·10⁻⁴ for L = 10, 50, 200.
    """

    name = "ssw"

    def __init__(self, n_projections: int = 50, generator: torch.Generator | None = None,
                 normalize: bool = False):
        super().__init__()
        self.n_projections = check_positive_int(n_projections, "n_projections")
        self.generator = check_generator(generator)
        self.normalize = check_normalize(normalize)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        ot = quiet_import("ot")

        frames = great_circles(self.n_projections, X.shape[1], generator=self.generator, dtype=X.dtype, device=X.device)
        Xn = torch.nn.functional.normalize(X, dim=1)
        return ot.sliced_wasserstein_sphere_unif(Xn, n_projections=self.n_projections, projections=frames)

    def hparams(self) -> dict:
        return {"n_projections": self.n_projections, **self._normalize_hparams()}
