"""dispersion — learning dispersed embeddings on the hypersphere.

The reference implementation of Tokarchuk, Bakker & Niculae, *Keep your distance: learning
dispersed embeddings on S_m* (TMLR 2025): every dispersion regularizer of the paper, exact
metrics, sampling and optimisation on the sphere.

>>> import torch, dispersion
>>> reg = dispersion.build("sliced", n_slices=4)
>>> X = dispersion.sphere.uniform(100, 16, generator=torch.Generator().manual_seed(0))
>>> loss = reg(X)

The math (``regularizers``, ``metrics``, ``sphere``, ``optim``) imports only torch, geoopt and
POT; data, models, experiments and reports live in their own subpackages.
"""

from . import metrics, sphere
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
    method_parameters,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS", "build", "method_parameters", "Regularizer",
    "MHE", "MMA", "KoLeo", "MMCS", "Lloyd", "Sliced", "SSW", "Uniformity",
    "metrics", "sphere", "__version__",
]
