"""dispersion — learning dispersed embeddings on the hypersphere.

The reference implementation of Tokarchuk, Bakker & Niculae, *Keep your distance: learning
dispersed embeddings on S_m* (TMLR 2025): every dispersion regularizer of the paper, exact
metrics, sampling and optimisation on the sphere.

>>> import torch, dispersion
>>> reg = dispersion.build("sliced", n_slices=4)
>>> X = dispersion.sphere.uniform(100, 16, generator=torch.Generator().manual_seed(0))
>>> loss = reg(X)

The math (``regularizers``, ``metrics``, ``sphere``, ``optim``) imports only torch, geoopt and
POT; data, models, training and reports live in their own modules; the experiments
(``experiments/<name>.py``, one ``run(spec, out_dir)`` each) use them; ``pipeline`` turns the
workflow's config into the experiments' specs and paths; ``cli`` is the command line.

The names below are loaded on first use (PEP 562), so that ``python -m dispersion --help``
starts without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public names and the module that defines each (imported on first access).
_LAZY = {
    # subpackages and modules, importable as attributes (``dispersion.optim.RiemannianAdam``)
    **{name: None for name in ("metrics", "sphere", "optim", "prototypes", "regularizers", "training",
                               "data", "models", "report", "experiments", "pipeline", "distributed")},
    **{name: "regularizers" for name in (
        "METHODS", "MHE", "MMA", "MMCS", "SSW", "KoLeo", "Lloyd", "Regularizer", "Sliced", "Uniformity",
        "build", "method_parameters", "gradient_scale",
    )},
    "audit": "embedding_audit", "AuditReport": "embedding_audit", "disperse": "posthoc",
}

__all__ = [
    "METHODS", "build", "method_parameters", "gradient_scale", "Regularizer",
    "MHE", "MMA", "KoLeo", "MMCS", "Lloyd", "Sliced", "SSW", "Uniformity",
    "metrics", "sphere", "optim", "prototypes", "regularizers", "training", "data", "models", "report",
    "experiments", "pipeline", "distributed", "audit", "AuditReport", "disperse", "__version__",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from . import (
        data, distributed, experiments, metrics, models, optim, pipeline, prototypes, regularizers, report, sphere,
        training,
    )
    from .regularizers import (
        METHODS,
        MHE,
        MMA,
        MMCS,
        SSW,
        KoLeo,
        Lloyd,
        Regularizer,
        Sliced,
        Uniformity,
        build,
        gradient_scale,
        method_parameters,
    )
    from .embedding_audit import AuditReport, audit
    from .posthoc import disperse


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = _LAZY[name]
    value = importlib.import_module(f".{name}" if home is None else f".{home}", __name__)
    if home is not None:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
