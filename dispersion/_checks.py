"""Input validation shared by the regularizers and the metrics.

Every public function that takes points on the sphere calls :func:`check_points` so that bad
input fails loudly with the argument's name instead of returning a silent NaN.
"""

from __future__ import annotations

import math
import numbers

import torch

from ._transforms import half_source, rounding_atol, value_checks_possible

#: Floating dtypes the library computes in. Half precision is not computed in: ``arccos`` near ±1
#: and sums of N² kernel values lose too much precision in 8 or 11 significant bits. The
#: regularizers and the metrics accept it and compute it in float32 (:mod:`dispersion._transforms`),
#: so that this check sees the float32 copy.
SUPPORTED_DTYPES = (torch.float32, torch.float64)

#: Default tolerance on ``| ||x_i|| - 1 |`` for rows said to be on the unit sphere.
NORM_ATOL = 1e-3


def check_points(
    X: torch.Tensor,
    name: str = "X",
    *,
    min_rows: int = 2,
    unit: bool = True,
    atol: float = NORM_ATOL,
) -> torch.Tensor:
    """Validate a point set ``X`` of shape (N, d) and return it unchanged.

    Dtypes: float32 and float64. The regularizers and the metrics accept bfloat16/float16 too:
    half-precision inputs are computed in float32 and the result is returned in the input dtype
    (:mod:`dispersion._transforms`), and this check then sees the float32 copy; a unit row
    rounded to half precision has a norm only within that dtype's rounding of 1, so while such a
    copy is computed the norm tolerance is at least the dtype's machine epsilon (2⁻⁷ for
    bfloat16, 2⁻¹⁰ for float16; :func:`dispersion._transforms.rounding_atol`).

    The checks of the values (NaN/inf, rows on the sphere) need one host synchronisation; they
    are skipped inside ``torch.compile`` and under ``torch.func.vmap``, where it is not allowed
    (:func:`dispersion._transforms.value_checks_possible`), and run everywhere else
    (``torch.func.grad`` included). Type and shape are always checked.

    Raises
    ------
    TypeError
        ``X`` is not a tensor, or its dtype is not float32/float64.
    ValueError
        ``X`` is not 2-D, has fewer than ``min_rows`` rows or fewer than 2 columns, contains
        NaN/inf, or (``unit=True``) a row whose norm differs from 1 by more than ``atol``.
    """
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, d), got {type(X).__name__}")
    if X.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {X.dtype}; half precision is "
            f"accepted by the regularizers and metrics only, which compute it in float32 (here, "
            f"cast with {name}.float())"
        )
    if X.dim() != 2:
        raise ValueError(f"{name} must have shape (N, d), got shape {tuple(X.shape)}")
    n, d = X.shape
    if n < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows (points), got N={n}")
    if d < 2:
        raise ValueError(f"{name} must have at least 2 columns (a sphere S^(d-1) with d>=2), got d={d}")
    if not value_checks_possible():
        return X
    with torch.no_grad():
        # One pass and one host synchronisation in the common case: a NaN or inf entry makes
        # its row's norm NaN or inf; only then is the entry-wise test run (a finite row whose
        # norm overflows is not an error when ``unit=False``).
        err = (torch.linalg.vector_norm(X, dim=1) - 1).abs().max().item()
        if not math.isfinite(err) and not torch.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or inf")
        atol = max(atol, rounding_atol(half_source()))  # the float32 copy of a half input
        if unit:
            if not err <= atol:
                raise ValueError(
                    f"rows of {name} must lie on the unit sphere (|norm - 1| <= {atol}), "
                    f"largest deviation is {err:.3g}; normalise with "
                    f"torch.nn.functional.normalize({name}, dim=1)"
                )
    return X


def is_int(value) -> bool:
    """True for a Python or numpy integer (``np.int64(3)``), False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, _np_bool()))


def is_real(value) -> bool:
    """True for a Python or numpy int or float (``np.float32(2.0)``), False for bools and the rest."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, _np_bool()))


def _np_bool():
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency of torch's tensors we use
        return bool
    return np.bool_


def check_positive(value: float, name: str) -> float:
    """Return ``float(value)`` if it is a finite number > 0 (a Python or numpy int or float), else
    raise ``TypeError`` (not a number) or ``ValueError`` (out of range), naming ``name``."""
    if not is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")
    return value


def check_positive_int(value: int, name: str) -> int:
    """Return ``int(value)`` if it is an int >= 1 (Python or numpy), else raise
    ``TypeError``/``ValueError`` naming ``name``. Floats are rejected, even integral ones: no
    silent rounding."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_generator(generator, name: str = "generator") -> torch.Generator | None:
    """Return ``generator`` if it is ``None`` or a ``torch.Generator``, else raise ``TypeError``
    (a seed such as ``5`` is not a generator: pass ``torch.Generator().manual_seed(5)``)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None, got {type(generator).__name__}; "
            f"for a seed use torch.Generator().manual_seed(seed)"
        )
    return generator
