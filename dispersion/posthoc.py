"""Post-hoc dispersion of a given embedding table that keeps each row's neighbourhood.

Public as ``dispersion.disperse``; the command line is ``python -m dispersion disperse``.

:func:`disperse` spreads a table X (N, d) on the sphere with any regularizer R of
:data:`dispersion.METHODS` while a fidelity term F holds each row near its original
neighbourhood, minimising over unit rows Y (Riemannian Adam by default, started at Y = X/‖X‖):

    L(Y) = R(Y_B) + λ · F(Y; B),

where B is the full table or, with ``batch_size``, a fresh random set of rows per step
(F then needs the row indices B, which it takes). The fidelity terms, with N_k(i) the k nearest
rows of row i in the *original* table (exact, :func:`dispersion.metrics.knn`) and
c⁰_ij = ⟨x_i, x_j⟩ its original cosines:

``"knn"`` — local stress on the k-NN graph (Chen & Buja, *Local multidimensional scaling*,
    JASA 2009, whose LMDS stress is exactly "keep the neighbours' proximities, let a repulsion
    spread the rest" — here the repulsion is R):

        F(Y; B) = 1/(|B| k) Σ_{i∈B} Σ_{j∈N_k(i)} (⟨y_i, y_j⟩ − c⁰_ij)²,

    ∂F/∂y_i = 2/(|B| k) [Σ_{j∈N_k(i)} r_ij y_j  (i ∈ B)  +  Σ_{m∈B: i∈N_k(m)} r_mi y_m],
    r_ij = ⟨y_i, y_j⟩ − c⁰_ij (the Euclidean gradient; the optimiser projects it onto the
    sphere's tangent space).
``"knn_margin"`` — rank fidelity: each row's farthest original neighbour must stay at least
    a cosine margin δ closer than its nearest non-neighbour in B (a large-margin nearest-neighbour
    hinge, Weinberger & Saul, JMLR 2009):

        F(Y; B) = 1/|B| Σ_{i∈B} max(0, δ + max_{m∈B∖N_k(i), m≠i} ⟨y_i, y_m⟩ − min_{j∈N_k(i)} ⟨y_i, y_j⟩),

    which says nothing about the neighbours' distances, only their rank: it lets the whole
    neighbourhood spread as long as it stays the neighbourhood (what recall@k measures).
``"anchor"`` — F(Y; B) = 1/|B| Σ_{i∈B} ‖y_i − x_i‖² = 2/|B| Σ_{i∈B} (1 − ⟨y_i, x_i⟩): each row
    stays near its own start (a proximal term).

``"none"`` — F = 0 (plain post-hoc dispersion, as ``dispersion.optim.optimize``).

The history records, every ``log_every`` steps, the loss terms, recall@k of the original k
nearest neighbours (:func:`dispersion.metrics.knn_recall`), the minimum, mean and median
nearest-neighbour angle (degrees), the circular variance and, with labels, the leave-one-out
k-NN label accuracy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from . import metrics
from ._loop import progress_bar
from .optim import OPTIMIZERS, make_optimizer, sphere_parameter
from .regularizers import build

__all__ = ["FIDELITIES", "knn_fidelity", "knn_margin_fidelity", "anchor_fidelity", "DisperseResult", "disperse"]

FIDELITIES = ("knn", "knn_margin", "anchor", "none")


def _rows(n: int, rows: torch.Tensor | None, device) -> torch.Tensor:
    return torch.arange(n, device=device) if rows is None else rows


def knn_fidelity(Y: torch.Tensor, neighbours: torch.Tensor, target: torch.Tensor,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
    """Local k-NN stress (module docstring): mean over i ∈ ``rows`` and j ∈ N_k(i) of
    (⟨y_i, y_j⟩ − target_ij)².

    ``Y`` (N, d) current rows; ``neighbours`` (N, k) int64, the original neighbour indices;
    ``target`` (N, k), their original cosines; ``rows`` (B,) int64 or None for all rows.
    Returns a 0-dim tensor of Y's dtype, differentiable in Y (also through the neighbours' rows).
    """
    i = _rows(Y.shape[0], rows, Y.device)
    nb = neighbours[i]
    c = (Y[i].unsqueeze(1) * Y[nb]).sum(dim=-1)
    return (c - target[i]).square().mean()


def knn_margin_fidelity(Y: torch.Tensor, neighbours: torch.Tensor, rows: torch.Tensor | None = None,
                        margin: float = 0.05) -> torch.Tensor:
    """Rank fidelity (module docstring): mean over i ∈ ``rows`` of
    max(0, margin + max_{m ∈ rows ∖ N_k(i), m ≠ i} ⟨y_i, y_m⟩ − min_{j∈N_k(i)} ⟨y_i, y_j⟩).

    The non-neighbours are searched among ``rows`` (all rows when None; O(|rows|²) cosines).
    """
    n = Y.shape[0]
    i = _rows(n, rows, Y.device)
    Yi = Y[i]
    nb = neighbours[i]
    far_nb = (Yi.unsqueeze(1) * Y[nb]).sum(dim=-1).min(dim=1).values
    G = Yi @ Yi.T
    # mask the row itself and its original neighbours among the batch
    pos = torch.full((n,), -1, dtype=torch.long, device=Y.device)
    pos[i] = torch.arange(i.numel(), device=Y.device)
    mask = torch.eye(i.numel(), dtype=torch.bool, device=Y.device)
    nb_pos = pos[nb]  # (B, k): where each neighbour sits in the batch, −1 if absent
    r, c = (nb_pos >= 0).nonzero(as_tuple=True)
    mask[r, nb_pos[r, c]] = True
    near_other = G.masked_fill(mask, -math.inf).max(dim=1).values
    return torch.relu(margin + near_other - far_nb).mean()


def anchor_fidelity(Y: torch.Tensor, X0: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Proximal term: mean over i ∈ ``rows`` of ‖y_i − x_i‖² (= 2(1 − ⟨y_i, x_i⟩) on the sphere)."""
    i = _rows(Y.shape[0], rows, Y.device)
    return (Y[i] - X0[i]).square().sum(dim=1).mean()


def knn_label_accuracy(P: torch.Tensor, codes: torch.Tensor, k: int = 10) -> float:
    """Leave-one-out k-NN label accuracy of unit rows ``P`` (N, d) with integer labels ``codes``
    (N,): majority vote among the k nearest rows by angle, ties to the label whose neighbours
    rank nearer (a rank bonus summing to ½ vote)."""
    n = P.shape[0]
    k = min(k, n - 1)
    idx, _ = metrics.knn(P, k)
    n_cls = int(codes.max()) + 1
    votes = torch.zeros(n, n_cls, dtype=torch.float64, device=P.device)
    bonus = (k - torch.arange(k, dtype=torch.float64, device=P.device)) / (k * (k + 1))
    votes.scatter_add_(1, codes.to(P.device)[idx], (1 + bonus).expand(n, k).contiguous())
    return float((votes.argmax(dim=1) == codes.to(P.device)).double().mean())


@dataclass
class DisperseResult:
    """``X`` (N, d) the dispersed unit rows (on the CPU); ``history``
    one dict per logged step; ``settings`` the resolved arguments; ``neighbours`` (N, k) the
    original k nearest neighbours the fidelity and recall use."""

    X: torch.Tensor
    history: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    neighbours: torch.Tensor | None = None
    wall_time_s: float = 0.0


def disperse(
    X: Any,
    method: str,
    *,
    steps: int,
    lr: float,
    fidelity: str = "knn",
    weight: float = 1.0,
    k: int = 10,
    margin: float = 0.05,
    params: dict | None = None,
    batch_size: int | None = None,
    optimizer: str = "riemannian_adam",
    labels: Any = None,
    log_every: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> DisperseResult:
    """Spread the table ``X`` with regularizer ``method`` while a fidelity term keeps its
    neighbourhoods (module docstring for the formulas).

    Parameters
    ----------
    X : array-like (N, d)
        Real table (rows are normalised; see :func:`dispersion.audit.as_points` for the errors).
    method : str
        A name of :data:`dispersion.METHODS`, built with ``params``.
    steps, lr : int >= 1, float > 0
        Optimiser steps and learning rate (``optimizer`` one of ``dispersion.optim.OPTIMIZERS``).
    fidelity : {"knn", "knn_margin", "anchor", "none"}
    weight : float >= 0
        λ, the weight of the fidelity term.
    k : int
        Neighbours of the fidelity term and of the recall@k in the history.
    margin : float
        δ of ``knn_margin`` (a cosine difference).
    batch_size : int, optional
        Rows per step (a fresh random subset; the fidelity term sees the same rows); None =
        full batch.
    labels : array-like (N,), optional
        Labels for the k-NN accuracy in the history.
    log_every : int, optional
        History period (default steps // 10).
    seed : int
        Seeds the row minibatches and the stochastic regularizers.

    Returns a :class:`DisperseResult`. Raises ``ValueError``/``TypeError`` naming the argument.
    """
    from .embedding_audit import _check_labels, as_points

    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity must be one of {FIDELITIES}, got {fidelity!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (weight >= 0 and math.isfinite(weight)):
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    for name, v in (("steps", steps), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    P, _ = as_points(X, "X")
    n = P.shape[0]
    if k > n - 1:
        raise ValueError(f"k must be at most N - 1 = {n - 1}, got {k}")
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2 or None, got {batch_size!r}")
        if batch_size >= n:
            batch_size = None
    codes = None
    if labels is not None:
        codes = torch.from_numpy(_check_labels(labels, n)[0])
    gen = torch.Generator().manual_seed(seed)
    reg = build(method, generator=torch.Generator().manual_seed(seed), **(params or {}))
    nb, ang = metrics.knn(P, k)
    target = torch.cos(ang.double()).to(P.dtype)
    riemannian = "riemannian" in optimizer
    Y = sphere_parameter(P, optimizer.startswith("geoopt"))
    opt = make_optimizer(optimizer, [Y], lr)
    log_every = log_every or max(1, steps // 10)

    def fid(Yc: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        if fidelity == "knn":
            return knn_fidelity(Yc, nb, target, rows)
        if fidelity == "knn_margin":
            return knn_margin_fidelity(Yc, nb, rows, margin)
        if fidelity == "anchor":
            return anchor_fidelity(Yc, P, rows)
        return Yc.new_zeros(())

    def record(step: int, r_val: float | None, f_val: float | None) -> dict:
        Yd = torch.nn.functional.normalize(Y.detach(), dim=1)
        nn = metrics.nearest_neighbor_angles(Yd).double()
        row = {"step": step, "regularizer": r_val, "fidelity": f_val,
               f"recall@{k}": float(metrics.knn_recall(P, Yd, k)),
               "min_angle_deg": math.degrees(float(nn.min())), "mean_nn_angle_deg": math.degrees(float(nn.mean())),
               "median_nn_angle_deg": math.degrees(float(nn.median())),
               "circular_variance": float(metrics.circular_variance(Yd))}
        if codes is not None:
            row["knn_accuracy"] = knn_label_accuracy(Yd, codes, k)
        return row

    res = DisperseResult(X=P, neighbours=nb, settings={
        "method": method, "params": dict(reg.hparams()), "steps": steps, "lr": lr, "fidelity": fidelity,
        "weight": weight, "k": k, "margin": margin if fidelity == "knn_margin" else None, "batch_size": batch_size,
        "optimizer": optimizer, "seed": seed, "n": n, "d": P.shape[1]})
    res.history.append(record(0, None, None))
    bar = progress_bar(steps, desc=f"disperse {method}", enabled=progress)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        rows = None
        if batch_size is not None:
            rows = torch.randperm(n, generator=gen)[:batch_size].to(P.device)
        r = reg(Y if rows is None else Y[rows])
        f = fid(Y, rows) if weight > 0 and fidelity != "none" else Y.new_zeros(())
        loss = r + weight * f
        if not torch.isfinite(loss):
            raise ValueError(f"non-finite loss at step {step} (regularizer {float(r)}, fidelity {float(f)})")
        loss.backward()
        opt.step()
        if not riemannian:
            with torch.no_grad():
                Y.copy_(torch.nn.functional.normalize(Y, dim=1))
        if step % log_every == 0 or step == steps:
            res.history.append(record(step, float(r.detach()), float(f.detach())))
        bar.update(1)
    bar.close()
    res.wall_time_s = time.perf_counter() - t0
    res.X = torch.nn.functional.normalize(Y.detach().clone(), dim=1)
    return res
