"""Sampling on the unit sphere S^{d-1} ⊂ R^d: uniform points, the clumped Power Spherical
initialisation, and random great circles.

All samplers take an optional ``torch.Generator`` so that a seed reproduces the draw exactly;
they return rows of unit Euclidean norm in the requested ``dtype`` on the requested ``device``
(the generator must live on the same device).
"""

from __future__ import annotations

import math

import torch

from ._checks import SUPPORTED_DTYPES, check_generator, check_positive, check_positive_int

__all__ = ["uniform", "power_spherical", "great_circles", "known_optimum"]


def _check_args(n: int, d: int, dtype: torch.dtype, generator: torch.Generator | None) -> tuple[int, int]:
    """Validate the common arguments of the samplers; return ``n`` and ``d`` as Python ints
    (numpy integers are accepted, floats are not)."""
    n = check_positive_int(n, "n")
    d = check_positive_int(d, "d")
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    check_generator(generator)
    return n, d


def uniform(
    n: int,
    d: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` i.i.d. points from the uniform distribution on S^{d-1}, shape (n, d).

    Normalised standard Gaussian vectors (Muller 1959), which are exactly uniform by the
    rotation invariance of the isotropic Gaussian.
    """
    n, d = _check_args(n, d, dtype, generator)
    device = generator.device if (generator is not None and device is None) else device
    z = torch.randn(n, d, generator=generator, dtype=dtype, device=device)
    return torch.nn.functional.normalize(z, dim=1)


def power_spherical(
    n: int,
    d: int,
    kappa: float,
    *,
    mean_direction: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` points from the Power Spherical distribution PS(μ, κ) on S^{d-1}, shape (n, d).

    The "clumped" initialisation of the paper's large-scale synthetic experiment
    (arXiv:2502.08231) uses κ = 100 and a random mean direction μ (drawn uniformly with
    ``generator`` when ``mean_direction`` is None).
    Sampling is delegated to the distribution's authors' package ``power_spherical``
    (De Cao & Aziz, *The Power Spherical distribution*, 2020). That package draws from torch's
    global RNG, so the draw runs inside ``torch.random.fork_rng`` seeded from ``generator``:
    the same generator state gives the same points and the global RNG is left untouched.
    The mean cosine to the mean direction is E⟨x, μ⟩ = κ / (d − 1 + κ) (the mean of
    t = 2B − 1 with B ~ Beta((d−1)/2 + κ, (d−1)/2)); ``tests/test_sphere.py`` checks it.
    """
    from power_spherical import PowerSpherical

    n, d = _check_args(n, d, dtype, generator)
    kappa = check_positive(kappa, "kappa")
    device = torch.device(generator.device if (generator is not None and device is None) else (device or "cpu"))
    if mean_direction is None:
        mu = uniform(1, d, generator=generator, dtype=dtype, device=device)[0]
    else:
        mu = torch.as_tensor(mean_direction, dtype=dtype, device=device)
        if mu.shape != (d,):
            raise ValueError(f"mean_direction must have shape ({d},), got {tuple(mu.shape)}")
        if not torch.isfinite(mu).all():
            raise ValueError("mean_direction contains NaN or inf")
        norm = torch.linalg.vector_norm(mu).item()
        if abs(norm - 1) > 1e-4:
            raise ValueError(f"mean_direction must have unit norm (within 1e-4), got norm {norm:.6g}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        dist = PowerSpherical(mu, torch.tensor(kappa, dtype=dtype, device=device))
        x = dist.rsample((n,))
    return torch.nn.functional.normalize(x, dim=1)


def great_circles(
    n: int,
    d: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` random great circles of S^{d-1}, as orthonormal pairs, shape (n, d, 2).

    Column 0 is p, column 1 is q; the circle is {cos θ · p + sin θ · q}. Drawn as the Q factor
    of the QR decomposition of a d×2 standard Gaussian matrix with the signs fixed by
    diag(R) > 0, which makes the 2-frame Haar-distributed (Mezzadri 2007), as the sliced
    dispersion of arXiv:2502.08231 draws them.
    """
    n, d = _check_args(n, d, dtype, generator)
    device = generator.device if (generator is not None and device is None) else device
    g = torch.randn(n, d, 2, generator=generator, dtype=dtype, device=device)
    q, r = torch.linalg.qr(g)
    sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return q * sign[:, None, :]


#: Best known minimum angles (degrees) on S² from N. J. A. Sloane's tables of spherical codes
#: (proved optimal for these N: Fejes Tóth for 4, 6, 12; Schütte & van der Waerden for 13 is
#: Musin & Tarasov 2012; 14 Musin & Tarasov 2015; 24 Robinson 1961).
_S2_OPTIMA_DEG = {
    4: 109.4712206,
    6: 90.0,
    12: 63.4349488,
    13: 57.1367031,
    14: 55.6705700,
    24: 43.6907671,
}


def known_optimum(n: int, d: int) -> tuple[float, str] | None:
    """Best known minimum angle (radians) of ``n`` points on S^{d-1} and its name, or None.

    Covers the cases with a proven optimum used in the Tammes experiment of arXiv:2502.08231
    (best known spherical codes: N. J. A. Sloane's tables):
    N ∈ {4, 6, 12, 13, 14, 24} on S² (d = 3), the regular simplex N = d + 1 (angle
    arccos(−1/(N−1))), the cross-polytope N = 2d (90°), and N ≤ d + 1 in general (simplex of
    N points: arccos(−1/(N−1))), and N = 2 (antipodal, π).
    """
    if n < 2 or d < 2:
        return None
    if n <= d + 1:
        return math.acos(-1.0 / (n - 1)), ("simplex" if n == d + 1 else f"{n}-simplex")
    if n == 2 * d:
        return math.pi / 2, "cross-polytope"
    if d == 3 and n in _S2_OPTIMA_DEG:
        name = {12: "icosahedron", 24: "snub cube", 13: "Tammes N=13", 14: "Tammes N=14"}[n]
        return math.radians(_S2_OPTIMA_DEG[n]), name
    return None
