"""The Tammes experiment (Tokarchuk et al., arXiv:2502.08231; Tammes 1930): few points in low
dimension, optimised alone.

One run = one (case, method, optimizer, seed): N uniform random points on S^{d−1}, full-batch
optimisation of one dispersion method for ``steps`` steps, then the per-point nearest-neighbour
angles compared with the best known minimum angle of that (N, d) (``dispersion.sphere.known_optimum``).
Method ``uniform`` is the initialisation itself, unoptimised.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .. import metrics
from ..optim import optimize
from ..regularizers import build
from .._config import Dict, Int, Number, Str, check_spec
from ..runio import RunRecorder, resolve_device, seed_everything
from ..sphere import known_optimum, uniform

__all__ = ["run"]

#: The keys of a run spec and what each must be (``dispersion._config.check_spec``).
REQUIRED = {"n": Int(2), "d": Int(2), "method": Str, "params": Dict, "optimizer": Str, "steps": Int(1),
            "lr": Number(positive=True), "seed": Int(0)}
OPTIONAL = {"device": Str, "log_every": Int(1), "case": Str, "variant": Str, "label": Str}


def run(spec: dict, out_dir: str | Path, progress: bool = True) -> dict:
    """Run one Tammes optimisation described by ``spec`` and write its run files.

    ``spec`` keys: ``n``, ``d`` (points and ambient dimension), ``method`` (a name of
    ``dispersion.METHODS`` or ``"uniform"``), ``params`` (dict), ``optimizer`` (see
    ``dispersion.optim.OPTIMIZERS``), ``steps``, ``lr``, ``seed``, optional ``device``
    (``"auto"``), ``log_every``, and free-form labels (``case``, ``variant``) copied into the
    summary. Writes ``metrics.jsonl`` (loss, min angle, circular variance over the steps) and
    ``summary.json`` (final metrics, per-point nearest-neighbour angles in degrees, the best known
    angle and the gap, radians and degrees) into ``out_dir``. Returns the summary.

    Everything is checked before any work: the spec's keys and types (``ValueError`` naming
    the key: an unknown key, ``steps: 2.7`` or ``log_every: 0`` is an error, not ignored or
    rounded), the device, the method and its parameters, and that ``out_dir`` is writable.
    """
    spec = check_spec(spec, REQUIRED, OPTIONAL)
    device = resolve_device(spec.get("device") or "auto")
    if spec["method"] != "uniform":
        build(spec["method"], **spec["params"])  # a bad method or parameter fails here, before any work
    rec = RunRecorder(out_dir, spec, spec["seed"], device)
    seed = spec["seed"]
    gen = seed_everything(seed, device)
    X0 = uniform(spec["n"], spec["d"], generator=gen, device=device)

    def callback(step: int, X: torch.Tensor) -> dict:
        return {
            "min_angle": metrics.min_angle(X).item(),
            "circular_variance": metrics.circular_variance(X).item(),
        }

    if spec["method"] == "uniform":
        X, update_time, history = X0, 0.0, [{"step": 0, "loss": None, **callback(0, X0)}]
    else:
        reg = build(spec["method"], generator=gen, **spec["params"])
        res = optimize(
            X0,
            reg,
            steps=int(spec["steps"]),
            lr=float(spec["lr"]),
            optimizer=spec["optimizer"],
            generator=gen,
            callback=callback,
            log_every=int(spec.get("log_every") or max(1, int(spec["steps"]) // 50)),
            progress=progress,
            desc=f"tammes {spec.get('case', '')} {spec.get('variant', spec['method'])}",
        )
        X, update_time, history = res.X, res.update_time_s, res.history
    for row in history:
        rec.log(**row)
    nn = metrics.nearest_neighbor_angles(X)
    best = known_optimum(int(spec["n"]), int(spec["d"]))
    final = {
        "min_angle": nn.min().item(),
        "min_angle_deg": math.degrees(nn.min().item()),
        "circular_variance": metrics.circular_variance(X).item(),
        "mean_nn_angle": nn.mean().item(),
        "nn_angles_deg": [math.degrees(a) for a in nn.tolist()],
        "best_known_angle": best[0] if best else None,
        "best_known_angle_deg": math.degrees(best[0]) if best else None,
        "best_known_name": best[1] if best else None,
        "gap_deg": (math.degrees(best[0]) - math.degrees(nn.min().item())) if best else None,
        "update_time_s": update_time,
        "steps_per_s": (int(spec["steps"]) / update_time) if update_time > 0 else None,
    }
    return rec.finish(final=final, points=X.cpu().tolist())
