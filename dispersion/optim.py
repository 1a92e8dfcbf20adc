"""Optimise a dispersion regularizer over points on the sphere.

Two ways to stay on the sphere (PAPER.md §1):

* **Riemannian** (the paper's choice): the points are a ``geoopt.ManifoldParameter`` on
  ``geoopt.SphereExact`` (exact exponential-map retraction) and ``geoopt.optim.RiemannianAdam``
  or ``RiemannianSGD`` takes the steps (Bécigneul & Ganea, *Riemannian Adaptive Optimization
  Methods*, ICLR 2019).
* **Euclidean**: an ordinary parameter, ``torch.optim.Adam`` / ``SGD``, then every row is
  re-normalised after each step ("optimise-then-renormalise").

No optimiser is reimplemented here; this module only wires them to the regularizers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import geoopt
import torch

from ._checks import check_points, check_positive, check_positive_int

__all__ = ["OPTIMIZERS", "OptimResult", "make_optimizer", "sphere_parameter", "optimize"]

#: Optimiser names: Riemannian on geoopt's SphereExact, or Euclidean + row re-normalisation.
OPTIMIZERS = ("riemannian_adam", "riemannian_sgd", "adam", "sgd")


def sphere_parameter(X: torch.Tensor, riemannian: bool = True) -> torch.nn.Parameter:
    """A trainable copy of ``X`` (N, d): a ``geoopt.ManifoldParameter`` on ``SphereExact`` when
    ``riemannian``, else a plain ``torch.nn.Parameter``."""
    data = X.detach().clone()
    if riemannian:
        return geoopt.ManifoldParameter(data, manifold=geoopt.SphereExact())
    return torch.nn.Parameter(data)


def make_optimizer(name: str, params, lr: float, **kwargs) -> torch.optim.Optimizer:
    """The optimiser called ``name`` (one of :data:`OPTIMIZERS`) over ``params``.

    ``riemannian_*`` build geoopt's optimisers with ``stabilize=1`` by default: geoopt then
    re-projects the points (and the momenta onto the tangent spaces) after every step. This
    matters: RiemannianAdam divides the tangent momentum by an *elementwise* second-moment
    estimate, so its update is not exactly tangent, and ``SphereExact.expmap`` of a non-tangent
    vector leaves the sphere — by more than 1e-3 in a single step at lr = 5e-3 once the
    gradient is small (measured on N = 24, S², Gaussian MHE, step 588). The re-projection costs
    O(N d) per step. ``adam``/``sgd`` build torch's. Extra ``kwargs`` (``momentum``, ``weight_decay``, ``betas``…) are passed through.
    """
    lr = check_positive(lr, "lr")
    if name == "riemannian_adam":
        return geoopt.optim.RiemannianAdam(params, lr=lr, stabilize=kwargs.pop("stabilize", 1), **kwargs)
    if name == "riemannian_sgd":
        return geoopt.optim.RiemannianSGD(params, lr=lr, stabilize=kwargs.pop("stabilize", 1), **kwargs)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **kwargs)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **kwargs)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


@dataclass
class OptimResult:
    """What :func:`optimize` returns.

    Attributes
    ----------
    X : torch.Tensor
        The final points (N, d), unit rows, detached, on the input's device and dtype.
    history : list of dict
        One record per logged step: ``step``, ``loss`` and whatever the callback returned.
    update_time_s : float
        Wall time of the update steps alone (forward, backward, step, re-normalisation),
        excluding the callback; CUDA is synchronised before each reading.
    steps : int
    """

    X: torch.Tensor
    history: list[dict] = field(default_factory=list)
    update_time_s: float = 0.0
    steps: int = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def optimize(
    X0: torch.Tensor,
    regularizer: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
    lr: float,
    optimizer: str = "riemannian_adam",
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.Tensor], dict] | None = None,
    log_every: int | None = None,
    progress: bool = False,
    desc: str | None = None,
    max_time_s: float | None = None,
) -> OptimResult:
    """Minimise ``regularizer`` over points on the sphere, starting from ``X0``.

    Parameters
    ----------
    X0 : (N, d) tensor with unit rows; not modified.
    regularizer : callable mapping (B, d) unit rows to a scalar (any :mod:`dispersion` method).
    steps : number of optimiser steps (>= 1).
    lr : learning rate (> 0).
    optimizer : one of :data:`OPTIMIZERS`. ``adam``/``sgd`` re-normalise the rows after every step.
    batch_size : if given (< N), each step evaluates the regularizer on a fresh random subset of
        ``batch_size`` rows drawn without replacement with ``generator`` (as the paper does for
        the O(N²) methods at scale); ``None`` = full batch.
    callback : ``callback(step, X)`` → dict of metrics, called at step 0, every ``log_every``
        steps and after the last step, outside the timed region, with the detached points.
    log_every : logging period in steps (default: steps // 100, at least 1).
    progress : show a tqdm progress bar.
    max_time_s : stop early once the timed update steps have used this many seconds (for
        comparisons at equal wall time); ``OptimResult.steps`` says how many steps were taken.

    Returns
    -------
    OptimResult

    Raises
    ------
    ValueError
        Bad ``X0`` (see :func:`dispersion._checks.check_points`), non-positive ``steps``/``lr``,
        ``batch_size`` < 2, unknown ``optimizer``, or a non-finite loss during the run (with
        the step at which it appeared).
    """
    check_points(X0, "X0")
    steps = check_positive_int(steps, "steps")
    n = X0.shape[0]
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (pairs of points), got {batch_size}")
        if batch_size >= n:
            batch_size = None
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    riemannian = optimizer.startswith("riemannian")
    X = sphere_parameter(X0, riemannian)
    opt = make_optimizer(optimizer, [X], lr)
    log_every = log_every or max(1, steps // 100)
    device = X0.device

    result = OptimResult(X=X0)

    def record(step: int, loss: float | None) -> None:
        row = {"step": step, "loss": loss}
        if callback is not None:
            row.update(callback(step, X.detach()))
        result.history.append(row)

    record(0, None)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False, mininterval=1.0)
    elapsed = 0.0
    for step in range(1, steps + 1):
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if batch_size is None:
            loss = regularizer(X)
        else:
            idx = torch.randperm(n, generator=generator, device=generator.device if generator is not None else device)
            loss = regularizer(X[idx[:batch_size].to(device)])
        loss.backward()
        opt.step()
        if not riemannian:
            with torch.no_grad():
                X.copy_(torch.nn.functional.normalize(X, dim=1))
        _sync(device)
        elapsed += time.perf_counter() - t0
        out_of_time = max_time_s is not None and elapsed >= max_time_s
        if step % log_every == 0 or step == steps or out_of_time:
            value = loss.item()
            if value != value or abs(value) == float("inf"):
                raise ValueError(f"the regularizer returned a non-finite loss ({value}) at step {step}")
            record(step, value)
        if bar is not None:
            bar.update(1)
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    result.X = X.detach().clone()
    if riemannian:  # an exact unit norm for downstream checks, without changing the points
        result.X = torch.nn.functional.normalize(result.X, dim=1)
    result.update_time_s = elapsed
    result.steps = step
    return result
