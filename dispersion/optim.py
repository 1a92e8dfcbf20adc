"""Optimise a dispersion regularizer over points on the sphere.

Two ways to stay on the sphere (arXiv:2502.08231, §2 and §5.2):

* **Riemannian** (the paper's choice): Riemannian Adam or SGD with the exponential-map
  retraction (Bécigneul & Ganea, *Riemannian Adaptive Optimization Methods*, ICLR 2019).
  :class:`RiemannianAdam` and :class:`RiemannianSGD` here are fused implementations for rows on
  the unit sphere, with the iterates of ``geoopt.optim.RiemannianAdam`` / ``RiemannianSGD`` on
  ``geoopt.SphereExact`` with ``stabilize=1`` (tested against them) at a fraction of the cost
  (``benchmarks/README.md``). geoopt's own optimisers stay selectable as
  ``geoopt_riemannian_adam`` / ``geoopt_riemannian_sgd``, the reference.
* **Euclidean**: an ordinary parameter, ``torch.optim.Adam`` / ``SGD``, then every row is
  re-normalised after each step ("optimise-then-renormalise").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from ._checks import NORM_ATOL, check_generator, check_points, check_positive, check_positive_int
from ._imports import quiet_import
from ._loop import progress_bar, synchronize

geoopt = quiet_import("geoopt")

__all__ = [
    "OPTIMIZERS", "OptimResult", "RiemannianAdam", "RiemannianSGD", "make_optimizer", "sphere_parameter", "optimize",
]

#: Optimiser names: Riemannian (fused, or geoopt's as the reference), or Euclidean + row
#: re-normalisation.
OPTIMIZERS = ("riemannian_adam", "riemannian_sgd", "adam", "sgd", "geoopt_riemannian_adam", "geoopt_riemannian_sgd")


def sphere_parameter(X: torch.Tensor, riemannian: bool = True) -> torch.nn.Parameter:
    """A trainable copy of ``X`` (N, d): a ``geoopt.ManifoldParameter`` on ``SphereExact`` when
    ``riemannian`` (what geoopt's optimisers need; the fused ones take it too), else a plain
    ``torch.nn.Parameter``."""
    data = X.detach().clone()
    if riemannian:
        return geoopt.ManifoldParameter(data, manifold=geoopt.SphereExact())
    return torch.nn.Parameter(data)


def make_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict], lr: float,
                   **kwargs: Any) -> torch.optim.Optimizer:
    """The optimiser called ``name`` (one of :data:`OPTIMIZERS`) over ``params``.

    ``riemannian_adam`` / ``riemannian_sgd`` build the fused :class:`RiemannianAdam` /
    :class:`RiemannianSGD` (every parameter is rows on the sphere). ``geoopt_riemannian_*`` build
    geoopt's optimisers with ``stabilize=1`` by default — the same iterates: geoopt then
    re-projects the points (and the momenta onto the tangent spaces) after every step. This
    matters: RiemannianAdam divides the tangent momentum by an *elementwise* second-moment
    estimate, so its update is not exactly tangent, and ``SphereExact.expmap`` of a non-tangent
    vector leaves the sphere — by more than 1e-3 in a single step at lr = 5e-3 once the
    gradient is small (measured on N = 24, S², Gaussian MHE, step 588). The re-projection costs
    O(N d) per step. ``adam``/``sgd`` build torch's. Extra ``kwargs`` (``momentum``, ``weight_decay``, ``betas``…) are passed through.
    """
    lr = check_positive(lr, "lr")
    if name == "riemannian_adam":
        return RiemannianAdam(params, lr=lr, **kwargs)
    if name == "riemannian_sgd":
        return RiemannianSGD(params, lr=lr, **kwargs)
    if name == "geoopt_riemannian_adam":
        return geoopt.optim.RiemannianAdam(params, lr=lr, stabilize=kwargs.pop("stabilize", 1), **kwargs)
    if name == "geoopt_riemannian_sgd":
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
        Bad ``X0`` (see :func:`dispersion._checks.check_points`), non-positive ``steps``, ``lr``,
        ``log_every`` or ``max_time_s``, ``batch_size`` < 2, unknown ``optimizer``, or a
        non-finite loss during the run (with the step at which it appeared).
    TypeError
        A ``regularizer`` or ``callback`` that is not callable, a ``generator`` that is not a
        ``torch.Generator``, a float where an int is expected (``steps``, ``log_every``,
        ``batch_size``: never rounded).
    """
    check_points(X0, "X0")
    if not callable(regularizer):
        raise TypeError(f"regularizer must be a callable mapping (B, d) points to a scalar (e.g. "
                        f"dispersion.build('sliced')), got {type(regularizer).__name__}")
    steps = check_positive_int(steps, "steps")
    if log_every is not None:
        log_every = check_positive_int(log_every, "log_every")
    if max_time_s is not None:
        max_time_s = check_positive(max_time_s, "max_time_s")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    generator = check_generator(generator, "generator")
    n = X0.shape[0]
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (pairs of points), got {batch_size}")
        if batch_size >= n:
            batch_size = None
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    riemannian = "riemannian" in optimizer
    # the fused optimisers take a plain Parameter (no tensor-subclass dispatch in the regularizer)
    X = sphere_parameter(X0, optimizer.startswith("geoopt"))
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
    bar = progress_bar(steps, desc=desc, enabled=progress, leave=False, mininterval=1.0)
    elapsed = 0.0
    for step in range(1, steps + 1):
        synchronize(device)
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
        synchronize(device)
        elapsed += time.perf_counter() - t0
        out_of_time = max_time_s is not None and elapsed >= max_time_s
        if step % log_every == 0 or step == steps or out_of_time:
            value = loss.item()
            if value != value or abs(value) == float("inf"):
                raise ValueError(f"the regularizer returned a non-finite loss ({value}) at step {step}")
            record(step, value)
        bar.update(1)
        if out_of_time:
            break
    bar.close()
    result.X = X.detach().clone()
    if riemannian:  # an exact unit norm for downstream checks, without changing the points
        result.X = torch.nn.functional.normalize(result.X, dim=1)
    result.update_time_s = elapsed
    result.steps = step
    return result


# --------------------------------------------------------------------------------------------
# Fused Riemannian optimisers for rows on the unit sphere
# --------------------------------------------------------------------------------------------

#: Below this step length (radians) geoopt's ``SphereExact.expmap`` switches from the exponential
#: map to the projection retraction x + u ↦ (x + u)/‖x + u‖; the fused optimisers do the same.
_EXPMAP_EPS = {torch.float32: 1e-4, torch.float64: 1e-7}


def _row_dot(a: torch.Tensor, b: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """⟨a_r, b_r⟩ over the last dimension, keepdim: shape (..., 1). ``work`` (shape of ``a``) is
    scratch memory: reusing it avoids a fresh allocation — and its page faults — every step."""
    return torch.mul(a, b, out=work).sum(dim=-1, keepdim=True)


def _row_sqnorm(a: torch.Tensor) -> torch.Tensor:
    """‖a_r‖² over the last dimension, keepdim: shape (..., 1)."""
    return torch.linalg.vector_norm(a, dim=-1, keepdim=True).square_()


def _sphere_rows(params, who: str) -> list[dict]:
    """Validate the parameters (or parameter groups) handed to a fused sphere optimiser."""
    groups = list(params)
    if not groups:
        raise ValueError(f"{who} got an empty parameter list")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    for gi, group in enumerate(groups):
        ps = group["params"]
        ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
        for pi, p in enumerate(ps):
            name = f"params[{gi}][{pi}]" if len(groups) > 1 else f"params[{pi}]"
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"{who}: {name} must be a tensor, got {type(p).__name__}")
            manifold = getattr(p, "manifold", None)
            if manifold is not None and (
                not isinstance(manifold, geoopt.SphereExact) or getattr(manifold, "projector", None) is not None
            ):
                raise TypeError(
                    f"{who}: {name} is a geoopt ManifoldParameter on {manifold!r}; only rows on the whole unit "
                    "sphere (geoopt.SphereExact(), or a plain tensor) are supported — use geoopt.optim for "
                    "other manifolds"
                )
            if p.dtype not in (torch.float32, torch.float64):
                raise TypeError(f"{who}: {name} must be float32 or float64, got {p.dtype}")
            if p.dim() < 1 or p.shape[-1] < 2:
                raise ValueError(f"{who}: {name} must have rows of at least 2 entries (shape (..., d), d >= 2), "
                                 f"got shape {tuple(p.shape)}")
            with torch.no_grad():
                err = (torch.linalg.vector_norm(p, dim=-1) - 1).abs().max().item() if p.numel() else 0.0
            if not err <= NORM_ATOL:  # also catches NaN
                raise ValueError(
                    f"{who}: the rows of {name} must lie on the unit sphere (| ||row|| - 1 | <= {NORM_ATOL}), "
                    f"largest deviation is {err:.3g}; normalise them first with "
                    "torch.nn.functional.normalize(p, dim=-1)"
                )
        group["params"] = ps
    return groups


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a plain ``torch.Tensor`` sharing its storage (no subclass dispatch in the update)."""
    return t if type(t) in (torch.Tensor, torch.nn.Parameter) else t.as_subclass(torch.Tensor)


def _retract_rows(
    p: torch.Tensor, v: torch.Tensor, c: torch.Tensor, pp: torch.Tensor, pv: torch.Tensor, vv: torch.Tensor
) -> torch.Tensor:
    """Move every row of ``p`` in place to Exp_p(c·v), re-normalised; return (ny, a, b) with
    y = a·p + b·v the unnormalised new point and ny = ‖y‖ (…, 1), for transporting vectors.

    ``c`` (…, 1) is a per-row step factor (or one Python float for every row), ``pp`` = ‖p‖², ``pv`` = ⟨p, v⟩, ``vv`` = ‖v‖² (…, 1),
    all computed by the caller from the same tensors. With t = |c|·‖v‖ the step length in
    radians, Exp_p(c v) = cos(t)·p + (c·sin(t)/t)·v (Absil, Mahony & Sepulchre, *Optimization
    Algorithms on Matrix Manifolds*, 2008, ex. 5.4.1), and for t ≤ ε (1e-4 in float32, 1e-7 in
    float64, as geoopt) the projection retraction p + c v. The result y = a·p + b·v is divided by
    ‖y‖ = sqrt(a²‖p‖² + 2ab⟨p, v⟩ + b²‖v‖²), so that the point and its re-projection (geoopt's
    ``stabilize``) cost two passes over memory instead of five.
    """
    t = (c.abs() if torch.is_tensor(c) else abs(c)) * vv.sqrt()
    exact = t > _EXPMAP_EPS[p.dtype]
    t_safe = torch.where(exact, t, torch.ones_like(t))
    a = torch.where(exact, torch.cos(t), torch.ones_like(t))
    b = torch.where(exact, c * torch.sin(t) / t_safe, c * torch.ones_like(t))
    ny = (a * a * pp + 2 * a * b * pv + b * b * vv).sqrt_()
    p.mul_(a / ny).addcmul_(v, b / ny)
    return ny, a, b


class _SphereOptimizer(torch.optim.Optimizer):
    """Shared plumbing: one scratch tensor per parameter, kept outside ``state`` (it is not part of
    ``state_dict``) and reallocated if the parameter changes shape, dtype or device."""

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise ValueError(f"{type(self).__name__} does not support sparse gradients")
                p, g = _plain(param), _plain(param.grad)
                work = self._work(param, p)
                # the Riemannian gradient r = g − ⟨p, g⟩ p, in the scratch buffer
                r = torch.addcmul(g, p, _row_dot(p, g, work), value=-1.0, out=work)
                self._update(group, self.state[param], p, g, r)
        return loss

    def _update(self, group: dict, state: dict, p: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> None:
        """Move the rows of ``p`` (in place) given the Euclidean gradient ``g`` and the Riemannian
        gradient ``r`` (held in the scratch buffer, free to overwrite)."""
        raise NotImplementedError

    def _work(self, param: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        scratch = self.__dict__.setdefault("_scratch", {})
        w = scratch.get(param)
        if w is None or w.shape != p.shape or w.dtype != p.dtype or w.device != p.device:
            w = scratch[param] = torch.empty_like(p, memory_format=torch.contiguous_format)
        return w


class RiemannianAdam(_SphereOptimizer):
    r"""Riemannian Adam for parameters whose rows lie on the unit sphere S^{d−1}, fused.

    The same iterates as ``geoopt.optim.RiemannianAdam(params, stabilize=1)`` on
    ``geoopt.SphereExact`` (Bécigneul & Ganea, *Riemannian Adaptive Optimization Methods*, ICLR
    2019, Alg. 1 with the per-row second moment of a product of spheres), written as a handful of
    row-wise passes over memory. For every row x with Euclidean gradient g:

    * Riemannian gradient (tangent projection): r = g − ⟨x, g⟩ x;
    * first moment m ← β₁ m + (1 − β₁) r, second moment v ← β₂ v + (1 − β₂) ‖r‖² (one scalar per
      row: geoopt's ``component_inner`` on the sphere; stored here with shape (…, 1) instead of
      geoopt's broadcast (…, d));
    * step u = −lr · (m / (1 − β₁ᵗ)) / (sqrt(v / (1 − β₂ᵗ)) + ε), tangent and parallel to m;
    * exponential-map retraction x ← Exp_x(u) (projection retraction below a step of 1e-4 rad in
      float32, 1e-7 in float64), then re-normalisation x ← x/‖x‖;
    * the moment transported by projection onto the new tangent space, m ← m − ⟨x, m⟩ x.

    ``amsgrad=True`` keeps the running maximum of v as geoopt does. Weight decay is not offered:
    on the sphere geoopt adds λx to the gradient and then projects it away, so it has no effect.

    Parameters
    ----------
    params : iterable of tensors or parameter groups. Every tensor is treated as rows on the
        sphere along its **last** dimension, shape (..., d), d ≥ 2: ordinary ``torch.nn.Parameter``
        s or ``geoopt.ManifoldParameter`` s on ``geoopt.SphereExact()``. Other parameters of a model
        go to an ordinary optimiser beside this one.
    lr : learning rate (> 0). betas : (β₁, β₂) in [0, 1). eps : > 0 (1e-8, as geoopt and torch).

    dtype and device: float32 or float64 on any device; all state lives beside the parameter,
    and a step never synchronises with the host (no ``.item()``), so it can be captured and runs
    asynchronously on CUDA.

    Raises
    ------
    TypeError
        A parameter that is not a float32/float64 tensor, or a ``ManifoldParameter`` on a manifold
        other than the whole sphere ``SphereExact``.
    ValueError
        Non-positive ``lr``/``eps``, ``betas`` outside [0, 1), a parameter whose rows are not unit
        (| ‖row‖ − 1 | > 1e-3) when the optimiser is built, or a sparse gradient at a step.

    Notes
    -----
    ``state_dict``/``load_state_dict`` are ``torch.optim.Optimizer``'s: per parameter ``step`` (a
    Python int), ``exp_avg`` (shape of the parameter), ``exp_avg_sq`` (…, 1) and, with amsgrad,
    ``max_exp_avg_sq`` (…, 1). ``tests/test_optim.py`` checks the iterates and both moments against
    geoopt over 200 float64 steps (agreement to 1e-9).
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, amsgrad: bool = False) -> None:
        lr = check_positive(lr, "lr")
        eps = check_positive(eps, "eps")
        betas = tuple(betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        groups = _sphere_rows(params, "RiemannianAdam")
        super().__init__(groups, dict(lr=lr, betas=(float(betas[0]), float(betas[1])), eps=eps, amsgrad=bool(amsgrad)))

    def _update(self, group, state, p, g, r):  # noqa: D102 - the update of the class docstring
        b1, b2 = group["betas"]
        lr, eps, amsgrad = group["lr"], group["eps"], group["amsgrad"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = p.new_zeros(p.shape[:-1] + (1,))
            if amsgrad:
                state["max_exp_avg_sq"] = p.new_zeros(p.shape[:-1] + (1,))
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(r, 1.0 - b1)
        v.mul_(b2).add_(_row_sqnorm(r), alpha=1.0 - b2)
        if amsgrad:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
        c = (v / bc2).sqrt_().add_(eps).reciprocal_().mul_(-lr / bc1)  # u = c · m, per row
        pp, pm, mm = _row_sqnorm(p), _row_dot(p, m, r), _row_sqnorm(m)  # (r is free: scratch)
        ny, a, b = _retract_rows(p, m, c, pp, pm, mm)
        # transport: m ← m − ⟨p_new, m⟩ p_new with ⟨p_new, m⟩ = (a⟨p, m⟩ + b‖m‖²)/‖y‖
        m.addcmul_(p, (a * pm + b * mm) / ny, value=-1.0)


class RiemannianSGD(_SphereOptimizer):
    r"""Riemannian SGD (with momentum, dampening, Nesterov) for rows on the unit sphere, fused.

    The same iterates as ``geoopt.optim.RiemannianSGD(params, stabilize=1)`` on
    ``geoopt.SphereExact`` (Bonnabel, *Stochastic gradient descent on Riemannian manifolds*, IEEE
    TAC 2013; momentum transported by projection as in geoopt). For every row x with Euclidean
    gradient g: r = g − ⟨x, g⟩ x; with momentum μ > 0, b ← μ b + (1 − dampening) r (geoopt starts
    the buffer from the raw Euclidean gradient of the first step, and so does this class), the
    direction is b (or r + μ b with ``nesterov``); x ← Exp_x(−lr · direction) re-normalised, and
    b ← b − ⟨x, b⟩ x at the new point. Without momentum x ← Exp_x(−lr · r).

    Parameters, dtype/device behaviour and errors as :class:`RiemannianAdam`; ``momentum`` ≥ 0,
    ``dampening`` ≥ 0; ``nesterov`` needs momentum > 0 and zero dampening (``ValueError``).
    State per parameter: ``momentum_buffer`` (shape of the parameter) when momentum > 0.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False) -> None:
        lr = check_positive(lr, "lr")
        for name, val in (("momentum", momentum), ("dampening", dampening)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0.0 <= val < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening = 0")
        groups = _sphere_rows(params, "RiemannianSGD")
        super().__init__(groups, dict(lr=lr, momentum=float(momentum), dampening=float(dampening),
                                      nesterov=bool(nesterov)))

    def _update(self, group, state, p, g, r):  # noqa: D102 - the update of the class docstring
        lr, mu, damp, nesterov = group["lr"], group["momentum"], group["dampening"], group["nesterov"]
        if mu > 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.clone()  # geoopt: the raw gradient of step 1
            buf = state["momentum_buffer"]
            buf.mul_(mu).add_(r, alpha=1.0 - damp)
            direction = r.add_(buf, alpha=mu) if nesterov else buf
        else:
            buf, direction = None, r
        pp, dd = _row_sqnorm(p), _row_sqnorm(direction)
        pd = _row_dot(p, direction, torch.empty_like(p) if direction is r else r)
        ny, a, b = _retract_rows(p, direction, -lr, pp, pd, dd)
        if buf is direction:  # ⟨p_new, b⟩ = (a⟨p, b⟩ + b‖b‖²)/‖y‖ from the row scalars at hand
            buf.addcmul_(p, (a * pd + b * dd) / ny, value=-1.0)
        elif buf is not None:
            buf.addcmul_(p, _row_dot(p, buf, torch.empty_like(p) if r is direction else r), value=-1.0)
