"""Build any regularizer from a name and keyword parameters (for configuration files)."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping

import torch

from .base import Regularizer
from .lloyd import Lloyd
from .pairwise import MHE, MMA, MMCS, KoLeo
from .sliced import Sliced
from .ssw import SSW
from .uniformity import Uniformity

__all__ = ["REGISTRY", "METHODS", "SLICE_PARAMS", "build", "method_parameters"]

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
