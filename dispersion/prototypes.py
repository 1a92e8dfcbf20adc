"""Hyperspherical prototypes: placement by a dispersion method, the HPN loss and prediction.

Hyperspherical Prototype Networks (Mettes, van der Pol, Snoek, NeurIPS 2019), as the paper
uses them (Tokarchuk et al., arXiv:2502.08231, image classification): (1) place one prototype
per class on S^{D−1} by optimising a dispersion regularizer alone, full batch; (2) train a
network f with the prototypes fixed to minimise Σ_i (1 − cos(f(x_i), p_{y_i}))²; (3) predict the
class of the nearest prototype.
Shared by the image and the text experiments.
"""

from __future__ import annotations

import math

import torch

from . import metrics
from ._checks import check_points, check_positive_int
from .optim import optimize
from .regularizers import METHODS, build
from .runio import seed_everything
from .sphere import uniform

__all__ = ["PROTOTYPE_METHODS", "place_prototypes", "place_and_measure", "prototype_loss", "prototype_predict"]

#: ``uniform`` (random prototypes, no dispersion) plus every regularizer.
PROTOTYPE_METHODS = ("uniform", *METHODS)


def place_prototypes(
    n_classes: int,
    dim: int,
    method: str | None,
    params: dict | None = None,
    steps: int = 10_000,
    lr: float = 5e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    optimizer: str = "riemannian_adam",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> torch.Tensor:
    """Prototypes for ``n_classes`` classes on S^{dim−1}, shape (C, D), unit rows.

    Starts from ``n_classes`` uniform random points (seeded by ``seed``); ``method`` None or
    ``"uniform"`` returns them as they are (the no-dispersion baseline); otherwise optimises
    ``dispersion.build(method, **params)`` on all prototypes at once for ``steps`` steps of
    ``optimizer`` (default Riemannian Adam) at learning rate ``lr``. ``"mmcs"`` is HPN's own
    prototype loss.

    Raises ``ValueError`` for an unknown method, ``n_classes`` < 2 or ``dim`` < 2.
    """
    n_classes = check_positive_int(n_classes, "n_classes")
    dim = check_positive_int(dim, "dim")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    if method is not None and method not in PROTOTYPE_METHODS:
        raise ValueError(f"method must be one of {PROTOTYPE_METHODS} or None, got {method!r}")
    device = torch.device(device)
    gen = seed_everything(seed, device)
    P0 = uniform(n_classes, dim, generator=gen, dtype=dtype, device=device)
    if method in (None, "uniform"):
        return P0
    reg = build(method, generator=gen, **(params or {}))
    return optimize(P0, reg, steps=steps, lr=lr, optimizer=optimizer, progress=progress, desc=f"prototypes {method}").X


def place_and_measure(
    n_classes: int,
    dim: int,
    method: str | None,
    params: dict | None = None,
    *,
    steps: int = 10_000,
    lr: float = 5e-3,
    optimizer: str = "riemannian_adam",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Prototypes placed by :func:`place_prototypes`, as a classifier uses them, and their geometry.

    Returns ``(P, geometry)``: P (C, D) float32 with unit rows, detached — placed in ``dtype``
    and, when that is float64, re-normalised in float64 before the cast, so that the rows are
    unit to float32 rounding — and ``geometry`` = ``{"min_angle"`` (radians), ``"min_angle_deg"``,
    ``"circular_variance"}`` of P. Shared by the image and text classification experiments.
    Raises as :func:`place_prototypes`.
    """
    P = place_prototypes(n_classes, dim, method, params, steps=steps, lr=lr, seed=seed, device=device,
                         optimizer=optimizer, dtype=dtype, progress=progress).detach()
    P = torch.nn.functional.normalize(P.double(), dim=1).float() if P.dtype == torch.float64 else P.float()
    angle = metrics.min_angle(P).item()
    return P, {"min_angle": angle, "min_angle_deg": math.degrees(angle),
               "circular_variance": metrics.circular_variance(P).item()}


def _check_outputs(z: torch.Tensor, prototypes: torch.Tensor, values: bool = True) -> None:
    """Shapes always (free); the prototypes' values (a device sync) only when ``values``."""
    if values:
        check_points(prototypes, "prototypes")
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != prototypes.shape[1]:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must have shape (B, {prototypes.shape[1]}), got {shape}")


def prototype_loss(
    z: torch.Tensor, prototypes: torch.Tensor, y: torch.Tensor, reduction: str = "mean", check: bool = True
) -> torch.Tensor:
    """HPN loss (1 − cos(z_i, p_{y_i}))² per sample (Mettes et al. 2019, Eq. 4).

    ``z``: (B, D) network outputs (any norm; the cosine normalises them), ``prototypes``:
    (C, D) unit rows, ``y``: (B,) int64 class indices in [0, C). ``reduction``: ``"mean"``,
    ``"sum"`` or ``"none"`` (shape (B,)). Raises ``ValueError`` on shape or label errors.
    ``check=False`` skips the checks of values (unit prototypes, label range), which
    synchronise a GPU; shapes are always checked. Training loops validate the prototypes once
    and then pass ``check=False``.
    """
    _check_outputs(z, prototypes, values=check)
    if y.shape != (z.shape[0],):
        raise ValueError(f"y must have shape ({z.shape[0]},), got {tuple(y.shape)}")
    if check and y.numel() and (y.min() < 0 or y.max() >= prototypes.shape[0]):
        raise ValueError(f"y must hold class indices in [0, {prototypes.shape[0]}), got range [{int(y.min())}, {int(y.max())}]")
    cos = torch.nn.functional.cosine_similarity(z, prototypes.to(z.dtype)[y], dim=1)
    loss = (1 - cos).square()
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def prototype_predict(z: torch.Tensor, prototypes: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Class of the nearest prototype (largest cosine) for each row of ``z`` (B, D): (B,) int64.
    ``check=False`` skips the input validation (see :func:`prototype_loss`)."""
    _check_outputs(z, prototypes, values=check)
    zn = torch.nn.functional.normalize(z, dim=1)
    return (zn @ prototypes.to(z.dtype).T).argmax(dim=1)
