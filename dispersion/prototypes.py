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

__all__ = ["PROTOTYPE_METHODS", "place_prototypes", "place_and_measure", "match_prototypes", "prototype_loss",
           "prototype_predict"]

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


def match_prototypes(prototypes: torch.Tensor, class_means: torch.Tensor, *, restarts: int = 128,
                     iterations: int = 50, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Assign classes to fixed prototypes so that similar classes get nearby prototypes.

    HPN (Mettes et al., 2019) gives class c the prototype c, an order blind to what the classes
    look like; at small D the network must then pull look-alike classes to far-apart points. Here
    the assignment follows a reference layout of the classes, ``class_means`` (e.g. the mean
    normalised feature per class of a softmax network with the same output dimension D): find a
    permutation π and a rotation R ∈ O(D) maximising Σ_c ⟨m̂_c, R p_π(c)⟩ (unit class means m̂_c),
    i.e. put the prototype configuration onto the class layout as well as any rotation allows,
    then read off which prototype lies where each class sits. Alternates the two exact partial
    solutions — the orthogonal Procrustes rotation for a fixed π (Schönemann, 1966;
    ``scipy.linalg.orthogonal_procrustes``) and the Hungarian assignment for a fixed R (Kuhn,
    1955; ``scipy.optimize.linear_sum_assignment``) — to a fixed point, and keeps the best of
    1 + 2·``restarts`` starts (seeded by ``seed``): HPN's order, the Hungarian assignment under
    a random rotation, and a rotation-free match of the two Gram matrices (FAQ quadratic
    assignment, Vogelstein et al., 2015; ``scipy.optimize.quadratic_assignment``). The joint
    problem is a quadratic assignment in disguise (NP-hard), so this is a heuristic: on rotated,
    permuted noisy copies of 10 random prototypes it recovers the permutation in 46 of 50 cases
    for D ∈ {2, 3, 4, 6, 8} (all in D ≤ 4 but one near-tie), the misses at D ≥ 6. The prototypes
    themselves are not changed, so their dispersion (min angle, circular variance) is that of
    the method that placed them.

    Parameters
    ----------
    prototypes : (C, D) tensor of unit rows.
    class_means : (C, D) tensor, any non-zero rows (normalised here); row c belongs to class c.
    restarts, iterations : positive ints.

    Returns ``(P_matched, info)``: ``P_matched = prototypes[perm]`` (class c gets row
    ``perm[c]``; same dtype and device as ``prototypes``) and ``info`` = ``{"permutation": perm
    (list of C ints), "alignment": mean_c cos(m̂_c, R p_π(c)) of the best fit, "alignment_identity":
    the same for HPN's order π = identity (best rotation)}``. Raises ``ValueError`` for shapes
    that differ, non-finite values or a zero class mean.
    """
    import numpy as np
    from scipy.linalg import orthogonal_procrustes
    from scipy.optimize import linear_sum_assignment, quadratic_assignment
    from scipy.stats import special_ortho_group

    restarts = check_positive_int(restarts, "restarts")
    iterations = check_positive_int(iterations, "iterations")
    P = check_points(prototypes, "prototypes")
    if not isinstance(class_means, torch.Tensor) or class_means.shape != P.shape:
        raise ValueError(f"class_means must be a tensor of the prototypes' shape {tuple(P.shape)}, got "
                         f"{getattr(class_means, 'shape', type(class_means).__name__)}")
    M = class_means.detach().double().cpu().numpy()
    if not np.isfinite(M).all():
        raise ValueError("class_means holds non-finite values")
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"class_means has zero rows (classes {np.flatnonzero(norms[:, 0] == 0).tolist()})")
    M = M / norms
    Pn = P.detach().double().cpu().numpy()
    C, D = Pn.shape

    def fit(perm):  # alternate Procrustes (assignment fixed) and Hungarian (rotation fixed)
        for _ in range(iterations):
            R = orthogonal_procrustes(Pn[perm], M)[0].T  # R p_perm(c) ≈ m_c
            new = linear_sum_assignment(-(M @ (Pn @ R.T).T))[1]  # class c -> prototype new[c]
            if (new == perm).all():
                break
            perm = new
        return float(np.mean(np.sum(M * (Pn[perm] @ R.T), axis=1))), perm

    # starts: HPN's order; the Hungarian assignment under random rotations (Haar); and the
    # rotation-free matching of the two Gram matrices, max_π Σ ⟨m̂_a, m̂_b⟩⟨p_π(a), p_π(b)⟩ (a
    # quadratic assignment problem, solved approximately by FAQ, Vogelstein et al. 2015:
    # ``scipy.optimize.quadratic_assignment``), which does not get stuck where a rotation start
    # is far from the answer (D > 3)
    rng = np.random.default_rng(seed)
    starts = [np.arange(C)]
    for _ in range(restarts):
        R = special_ortho_group.rvs(D, random_state=rng)
        starts.append(linear_sum_assignment(-(M @ (Pn @ R.T).T))[1])
        qap = quadratic_assignment(M @ M.T, Pn @ Pn.T, method="faq",
                                   options={"maximize": True, "P0": "randomized", "rng": rng})
        starts.append(np.asarray(qap.col_ind))
    best, perm = max((fit(p) for p in starts), key=lambda t: t[0])
    R_id = orthogonal_procrustes(Pn, M)[0].T
    identity = float(np.mean(np.sum(M * (Pn @ R_id.T), axis=1)))
    index = torch.as_tensor(perm, dtype=torch.long, device=P.device)
    return P[index], {"permutation": [int(i) for i in perm], "alignment": best, "alignment_identity": identity}


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
