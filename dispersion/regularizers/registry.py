"""Build any regularizer from a name and keyword parameters (for configuration files)."""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Any, Mapping

import torch

from .base import Regularizer
from .lloyd import Lloyd
from .pairwise import MHE, MMA, MMCS, KoLeo
from .sliced import Sliced
from .ssw import SSW
from .scale import SCALE_SEED, scale_draws
from .uniformity import Uniformity

__all__ = ["REGISTRY", "METHODS", "SLICE_PARAMS", "build", "method_parameters", "gradient_scale"]

#: name -> class, in the order of arXiv:2502.08231 §3, then the uniformity loss.
REGISTRY: dict[str, type[Regularizer]] = {
    "mhe": MHE,
    "mma": MMA,
    "koleo": KoLeo,
    "mmcs": MMCS,
    "lloyd": Lloyd,
    "sliced": Sliced,
    "ssw": SSW,
    "uniformity": Uniformity,  # Wang & Isola (ICML 2020); not in the paper
}

#: The names :func:`build` accepts.
METHODS: tuple[str, ...] = tuple(REGISTRY)

#: The parameter that counts the random directions of each sliced method: great circles of
#: ``sliced``, projections of ``ssw``. Experiments that match compute across methods set it
#: per run (arXiv:2502.08231, §4.2: L = round(B²/N) for a pairwise minibatch of B rows).
SLICE_PARAMS: dict[str, str] = {"sliced": "n_slices", "ssw": "n_projections"}


def method_parameters(name: str) -> dict[str, Any]:
    """The keyword parameters of method ``name`` with their defaults (``generator`` excluded)."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {
        k: p.default
        for k, p in sig.parameters.items()
        if k not in ("self", "generator") and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def _lookup(name: str) -> type[Regularizer]:
    if not isinstance(name, str):
        raise TypeError(f"method name must be a str, got {type(name).__name__}")
    if name not in REGISTRY:
        hint = difflib.get_close_matches(name, METHODS, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown method {name!r}; expected one of {METHODS}{extra}")
    return REGISTRY[name]


def build(
    name: str | Mapping[str, Any],
    *,
    generator: torch.Generator | None = None,
    **params: Any,
) -> Regularizer:
    """Build the regularizer called ``name`` with keyword ``params``.

    ``name`` may also be a config-style mapping ``{"name": "mhe", "kernel": "riesz", ...}``
    (then ``params`` must be empty). ``generator`` seeds the random draws of ``lloyd``,
    ``sliced`` and ``ssw`` and is ignored by the deterministic methods.

    Raises ``ValueError`` for an unknown method name (with the closest valid name) and
    ``TypeError`` for an unknown parameter (listing the accepted ones); the method's own
    constructor raises ``ValueError`` for an out-of-range value.

    >>> build("mhe", kernel="riesz", s=1.0)
    MHE(kernel='riesz', distance='chordal', gamma=1.0, s=1.0)
    """
    if isinstance(name, Mapping):
        if params:
            raise TypeError("pass either a config mapping or keyword parameters, not both")
        params = dict(name)
        if "name" not in params:
            raise ValueError("a method config mapping needs a 'name' key")
        name = params.pop("name")
    cls = _lookup(name)
    accepted = method_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        hints = [difflib.get_close_matches(u, accepted, n=1) for u in unknown]
        hint = "".join(f"; did you mean {h[0]!r} for {u!r}?" for u, h in zip(unknown, hints) if h)
        raise TypeError(
            f"unknown parameter(s) {unknown} for method {name!r}; accepted: {sorted(accepted)}{hint}"
        )
    if "generator" in inspect.signature(cls.__init__).parameters:
        params["generator"] = generator
    return cls(**params)


def gradient_scale(
    method: str | Mapping[str, Any] | Regularizer,
    n: int,
    d: int,
    *,
    n_draws: int | None = None,
    seed: int = SCALE_SEED,
    return_std_error: bool = False,
    **params: Any,
) -> float | tuple[float, float]:
    """c(R, N, d): the mean over rows of the Riemannian gradient norm of R at N i.i.d. uniform
    points of S^{d−1} — the divisor that ``normalize=True`` applies to R's value.

    ``method``: a name with keyword ``params`` (as :func:`build`), a config mapping, or a built
    :class:`Regularizer` (its ``hparams()``; ``normalize`` and ``block_size`` do not matter).
    Estimated in float64 on the CPU from a fixed seed (``seed``, default
    :data:`~dispersion.regularizers.scale.SCALE_SEED`), over draws of the points and of the
    method's own random directions or samples until the standard error is ≤ 2 % (or exactly
    ``n_draws`` draws); cached. See :mod:`dispersion.regularizers.scale` for the formula and cost.
    With ``return_std_error=True`` returns ``(c, standard error of c)``.

    >>> gradient_scale("sliced", 512, 64) > 1000 * gradient_scale("mhe", 512, 64)
    True
    """
    if isinstance(method, Regularizer):
        if params:
            raise TypeError("pass either a built regularizer or keyword parameters, not both")
        cls, hp = type(method), method.hparams()
    else:
        reg = build(method, **params)  # validates the name and the parameters
        cls, hp = type(reg), reg.hparams()
    draws = scale_draws(cls, hp, n, d, n_draws=n_draws, seed=seed)
    k = len(draws)
    c = math.fsum(draws) / k
    if not return_std_error:
        return c
    se = math.sqrt(math.fsum((v - c) ** 2 for v in draws) / (k - 1) / k) if k > 1 else math.nan
    return c, se
