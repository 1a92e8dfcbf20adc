"""Large-scale synthetic dispersion (Tokarchuk et al., arXiv:2502.08231) and the studies built on it.

One run = N points on S^{d−1} from an initialisation (``uniform`` or ``clumped`` = Power
Spherical with a random mean direction and concentration κ), optimised with one method for a
number of steps (or a wall-time budget), logging ``min_angle`` and ``circular_variance`` of all
N points every ``log_every`` steps (outside the timed update steps).

Compute matching (the paper's protocol): methods whose cost is quadratic in the rows they see
(``mhe``, ``mma``, ``koleo``, ``mmcs``) and ``lloyd`` see a random minibatch of ``batch_size``
rows per step (512 in the paper); ``sliced`` and ``ssw`` see all rows, with the number of
slices ``"auto"`` = round(batch_size² / N) (13 at N = 20 000).

The pseudo-method ``reference`` is i.i.d. uniform points (no optimisation): the reference
line of the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._config import Bool, Choice, Dict, Int, Number, Str, check_spec

if TYPE_CHECKING:
    import torch

# torch and the math modules are imported inside the functions, so that the workflow's config
# check (which reads REQUIRED and OPTIONAL) does not import torch.

__all__ = ["run", "resolve_params", "uses_minibatch", "initial_points"]

#: The keys of a run spec and what each must be (``dispersion._config.check_spec``).
REQUIRED = {"n": Int(2), "d": Int(2), "init": Choice("uniform", "clumped"), "method": Str, "params": Dict,
            "steps": Int(1), "lr": Number(positive=True), "optimizer": Str, "seed": Int(0)}
OPTIONAL = {"kappa": Number(positive=True), "batch_size": Int(2), "max_time_s": Number(positive=True),
            "log_every": Int(1), "device": Str, "full_batch": Bool, "n_slices": Int(1),
            "study": Str, "cell": Str, "variant": Str, "label": Str}


def uses_minibatch(method: str) -> bool:
    """True for the methods fed a random row minibatch at scale: the pairwise ones and Lloyd."""
    from ..regularizers import REGISTRY

    return method == "lloyd" or (method in REGISTRY and REGISTRY[method].pairwise)


def _minibatched(spec: dict) -> bool:
    return uses_minibatch(spec["method"]) and not spec.get("full_batch", False)


def resolve_params(method: str, params: dict, n: int, batch_size: int) -> dict:
    """Replace ``"auto"`` slice counts by round(batch_size² / n) (at least 1): the paper's
    compute matching of sliced methods on all N rows against pairwise methods on a minibatch."""
    from ..regularizers import SLICE_PARAMS

    out = dict(params)
    key = SLICE_PARAMS.get(method)
    if key and out.get(key) == "auto":
        out[key] = max(1, round(batch_size**2 / n))
    return out


def initial_points(spec: dict, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The (N, d) starting points of ``spec``: ``init`` = ``uniform`` or ``clumped`` (κ = ``kappa``)."""
    from ..sphere import power_spherical, uniform

    n, d = int(spec["n"]), int(spec["d"])
    if spec["init"] == "uniform":
        return uniform(n, d, generator=generator, device=device)
    if spec["init"] == "clumped":
        return power_spherical(n, d, float(spec.get("kappa") or 100.0), generator=generator, device=device)
    raise ValueError(f"spec['init'] must be 'uniform' or 'clumped', got {spec['init']!r}")


def run(spec: dict, out_dir: str | Path, progress: bool = True) -> dict:
    """Run one synthetic optimisation and write ``metrics.jsonl`` and ``summary.json``.

    ``spec`` keys: ``n``, ``d``, ``init`` (``uniform``/``clumped``), ``kappa``, ``method``
    (a name of ``dispersion.METHODS`` or ``reference``), ``params``, ``steps``, ``lr``,
    ``optimizer``, ``seed``; optional ``batch_size`` (default 512; applied to the methods of
    :func:`uses_minibatch` unless ``full_batch`` is true), ``max_time_s`` (stop after this much update time), ``log_every``,
    ``device``, and labels (``study``, ``cell``, ``variant``, ``label``) copied to the summary.
    The summary's ``final`` holds ``min_angle`` (radians), ``circular_variance``,
    ``update_time_s`` (update steps alone), ``steps_done`` and ``it_per_s``.

    Everything is checked before any work: the spec's keys and types (``ValueError`` naming
    the key: an unknown key, ``n: 2.9`` or ``batch_size: 0`` is an error, not ignored, rounded
    or replaced by the default), the device, the method and its parameters, and that
    ``out_dir`` is writable.
    """
    from .. import metrics
    from ..optim import optimize
    from ..regularizers import build
    from ..runio import RunRecorder, resolve_device, seed_everything

    spec = check_spec(spec, REQUIRED, OPTIONAL)
    device = resolve_device(spec.get("device") or "auto")
    seed = spec["seed"]
    n = spec["n"]
    batch_size = spec.get("batch_size") or 512
    if spec["method"] != "reference":  # a bad method or parameter fails here, before any work
        build(spec["method"], **resolve_params(spec["method"], spec["params"], n, batch_size))
    rec = RunRecorder(out_dir, spec, seed, device)
    gen = seed_everything(seed, device)
    X0 = initial_points(spec if spec["method"] != "reference" else {**spec, "init": "uniform"}, gen, device)

    def callback(step: int, X: torch.Tensor) -> dict:
        return {"min_angle": metrics.min_angle(X).item(), "circular_variance": metrics.circular_variance(X).item()}

    if spec["method"] == "reference":
        t, steps_done, history = 0.0, 0, [{"step": 0, "loss": None, **callback(0, X0)}]
        params = {}
    else:
        params = resolve_params(spec["method"], spec["params"], n, batch_size)
        reg = build(spec["method"], generator=gen, **params)
        steps = int(spec["steps"])
        res = optimize(
            X0, reg, steps=steps, lr=float(spec["lr"]), optimizer=spec["optimizer"],
            batch_size=batch_size if _minibatched(spec) else None,
            generator=gen, callback=callback,
            log_every=int(spec.get("log_every") or max(1, steps // 10)),
            progress=progress, max_time_s=spec.get("max_time_s"),
            desc=f"{spec.get('cell', '')} {spec.get('variant', spec['method'])}",
        )
        t, steps_done, history = res.update_time_s, res.steps, res.history
    for row in history:
        rec.log(**row)
    final = {
        "min_angle": history[-1]["min_angle"],
        "circular_variance": history[-1]["circular_variance"],
        "update_time_s": t,
        "steps_done": steps_done,
        "it_per_s": steps_done / t if t > 0 else None,
        "resolved_params": params,
        "batch_size_used": min(batch_size, n) if _minibatched(spec) else n,
    }
    return rec.finish(final=final)
