"""The paper's dispersion regularizers, one module per family.

Tokarchuk et al., arXiv:2502.08231; each module cites the original source of its method.
"""

from .base import Regularizer
from .lloyd import Lloyd, lloyd_energy
from .pairwise import (
    MHE,
    MMA,
    MMCS,
    KoLeo,
    kernel_from_cosine,
    koleo_loss,
    mhe_energy,
    mma_loss,
    mmcs_loss,
)
from .registry import METHODS, REGISTRY, SLICE_PARAMS, build, gradient_scale, method_parameters
from .sliced import Sliced, sliced_energy_from_angles
from .ssw import SSW
from .uniformity import Uniformity, blocked_uniformity_loss, uniformity_loss

__all__ = [
    "Regularizer", "MHE", "MMA", "KoLeo", "MMCS", "Lloyd", "Sliced", "SSW", "Uniformity",
    "kernel_from_cosine", "mhe_energy", "mma_loss", "koleo_loss", "mmcs_loss", "lloyd_energy",
    "sliced_energy_from_angles", "uniformity_loss", "blocked_uniformity_loss", "METHODS", "REGISTRY", "SLICE_PARAMS", "build", "method_parameters",
    "gradient_scale",
]
