"""Spherical sliced Wasserstein to the uniform distribution (Bonet et al., ICLR 2023), via POT."""

from __future__ import annotations

import torch

from .._checks import check_generator, check_positive_int
from .._imports import quiet_import
from .._transforms import value_checks_possible
from ..sphere import great_circles
from .base import Regularizer
from .scale import check_normalize

__all__ = ["SSW"]


def _pot_ssw(Xn: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """POT's SSW_2 of the unit rows ``Xn`` (N, d) to the uniform measure over the great circles
    ``frames`` (L, d, 2). Under ``torch.compile`` POT's backend dispatch is not traceable, so the
    call runs eagerly (a graph break); ``torch.compiler.disable`` is applied only then, because
    it imports Dynamo (seconds) on first use."""
    if torch.compiler.is_compiling():
        return torch.compiler.disable(_pot_ssw_eager)(Xn, frames)
    return _pot_ssw_eager(Xn, frames)


def _pot_ssw_eager(Xn: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    ot = quiet_import("ot")
    if not value_checks_possible():
        # under vmap, POT's data-dependent check of the (just re-normalised) norms cannot run:
        # the two steps of its sliced_wasserstein_sphere_unif without it
        coords, _ = ot.sliced.projection_sphere_to_circle(Xn, n_projections=frames.shape[0], projections=frames)
        return ot.lp.semidiscrete_wasserstein2_unif_circle(coords.T).mean().sqrt()
    return ot.sliced_wasserstein_sphere_unif(Xn, n_projections=frames.shape[0], projections=frames)


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
    Under ``torch.func.vmap``, where that data-dependent check cannot run, the two steps of
    POT's function are called without it (``ot.sliced.projection_sphere_to_circle``, then
    ``ot.lp.semidiscrete_wasserstein2_unif_circle``; the same value); ``torch.compile`` runs the
    POT call eagerly (a graph break: POT's backend dispatch is not traceable).

    Parameters
    ----------
    n_projections : int >= 1
        L, the number of great circles per call.
    generator : torch.Generator, optional
    normalize : bool
        Divide the value by its gradient scale c(N, d) (:meth:`Regularizer.gradient_scale`), so
        that one λ is comparable across methods; default False (the raw value).
    distributed, process_group, grad_reduction
        Compute on the rows of all ranks (:class:`~dispersion.regularizers.base.Regularizer`;
        default False, None, "mean").
        Distributed, the rows are all_gathered and POT runs on all N of them with the same
        circles on every rank (drawn from rank 0's seed; ``generator`` is used on rank 0 only):
        (W − 1) · n_max · d · itemsize bytes received per rank and call, nothing in backward.

    Scale: a distance — the square root of a mean over circles of a mean over rows of squared
    residuals — so its gradient is that of SW² (O(N^(−3/2)) per row) divided by 2 SSW
    (O(N^(−1/2))): c ∝ 1/N, growing with d about as d^0.4 and falling with L about as L^(−0.3):
    N·c = 0.17, 0.26, 0.48 at d = 8, 32, 128 (L = 50); at N = 512, d = 32,
    c = 8.6·10⁻⁴, 5.1·10⁻⁴, 3.7·10⁻⁴ for L = 10, 50, 200.
    """

    name = "ssw"

    def __init__(self, n_projections: int = 50, generator: torch.Generator | None = None,
                 normalize: bool = False, distributed: bool = False, process_group=None,
                 grad_reduction: str = "mean"):
        super().__init__()
        self.n_projections = check_positive_int(n_projections, "n_projections")
        self.generator = check_generator(generator)
        self.normalize = check_normalize(normalize)
        self._set_distributed(distributed, process_group, grad_reduction)

    def energy(self, X: torch.Tensor) -> torch.Tensor:
        frames = great_circles(self.n_projections, X.shape[1], generator=self.generator, dtype=X.dtype, device=X.device)
        return _pot_ssw(torch.nn.functional.normalize(X, dim=1), frames)

    def hparams(self) -> dict:
        return {"n_projections": self.n_projections, **self._normalize_hparams()}
