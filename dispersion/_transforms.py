"""How the regularizers and the metrics meet torch's program transforms: mixed precision
(``torch.autocast`` and half-precision inputs), ``torch.func`` (``grad``, ``vmap``) and
``torch.compile``. One place for each rule, used by :meth:`dispersion.Regularizer.forward`, the
functions of :mod:`dispersion.metrics`, the nearest-neighbour search of
:mod:`dispersion._sweep` and the custom ``autograd.Function`` classes of the regularizers.

Mixed precision
    Half-precision inputs are computed in float32 and the result is returned in the input
    dtype; under ``torch.autocast`` (any device type, CPU bfloat16/float16 and CUDA alike) the
    computation runs with autocast disabled on the input's device, so that every matrix product
    runs in the working dtype (float32, or float64 for float64 input) — the rounding bound of the
    exact nearest-neighbour search (:func:`dispersion._sweep.cosine_error_bound`) assumes it, and
    ``arccos`` near ±1 or sums of N² kernel values lose too much in 8 or 11 significant bits.
    DINOv3's distributed KoLeo loss does the same (Siméoni et al., *DINOv3*, 2025,
    arXiv:2508.10104: ``torch.autocast(..., enabled=False)`` around a float32 computation).
    Gradients flow back to a half-precision input through the promotion (its backward casts the
    float32 gradient to the input dtype).

    :func:`in_working_precision` is the rule for one point set (the regularizers);
    :func:`full_precision` is the same rule as a decorator for functions of several tensors (the
    metrics, the search). A unit row rounded to half precision has a norm only within its unit
    roundoff of 1, so while a half input is being computed the tolerance of
    :func:`dispersion._checks.check_points` is at least that dtype's machine epsilon
    (:func:`rounding_atol`: 2⁻⁷ for bfloat16, 2⁻¹⁰ for float16).

Transforms
    The data-dependent input checks (NaN/inf, rows on the sphere) need a host synchronisation
    (``.item()``), which neither ``torch.func.vmap`` nor a ``torch.compile`` graph allows: they
    are skipped there (:func:`value_checks_possible`; shape and dtype are still checked) and run
    under ``torch.func.grad``. Custom ``autograd.Function`` classes whose forward is data-dependent
    (blocked sweeps, the nearest-neighbour search, numpy's sort) take :func:`loop_vmap` as their
    vmap rule: the forward runs on each member of the batch and the outputs are stacked.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import torch

__all__ = [
    "HALF_DTYPES",
    "WORKING_DTYPES",
    "working_dtype",
    "rounding_atol",
    "autocast_off",
    "in_working_precision",
    "full_precision",
    "value_checks_possible",
    "loop_vmap",
]

#: Half-precision dtypes accepted as input and computed in float32.
HALF_DTYPES = (torch.float16, torch.bfloat16)
#: The dtypes the library computes in.
WORKING_DTYPES = (torch.float32, torch.float64)

#: The half dtype of the input that :func:`full_precision` is computing, while it does (else None).
_HALF_SOURCE: contextvars.ContextVar[torch.dtype | None] = contextvars.ContextVar(
    "dispersion_half_source", default=None)


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype an input of ``dtype`` is computed in: float64 stays float64, everything else
    (float32, bfloat16, float16) is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def rounding_atol(dtype: torch.dtype | None) -> float:
    """The smallest norm tolerance a unit row stored in ``dtype`` can meet: its machine epsilon
    (twice the unit roundoff) for bfloat16 and float16, 0 for the working dtypes and ``None``."""
    return torch.finfo(dtype).eps if dtype in HALF_DTYPES else 0.0


def half_source() -> torch.dtype | None:
    """The half-precision dtype of the input now being computed by :func:`full_precision`, or None."""
    return _HALF_SOURCE.get()


def autocast_off(device_type: str):
    """A context manager that disables autocast on ``device_type`` ("cpu", "cuda", ...), a
    ``nullcontext`` for device types without autocast (e.g. "meta")."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _to_dtype(out, dtype: torch.dtype):
    """``out`` with every float32 tensor (also inside tuples, lists and dicts) cast to ``dtype``;
    other tensors (float64 accumulators, integer indices) and Python numbers unchanged."""
    if isinstance(out, torch.Tensor):
        return out.to(dtype) if out.dtype == torch.float32 else out
    if isinstance(out, tuple):
        return tuple(_to_dtype(o, dtype) for o in out)
    if isinstance(out, list):
        return [_to_dtype(o, dtype) for o in out]
    if isinstance(out, dict):
        return {k: _to_dtype(v, dtype) for k, v in out.items()}
    return out


@contextlib.contextmanager
def _computing_half(dtype: torch.dtype | None):
    """While a half-precision input (``dtype``) is computed in float32: record its dtype for the
    tolerance of :func:`dispersion._checks.check_points` (nested calls keep the outer one)."""
    if dtype is None or half_source() is not None:
        yield
        return
    token = _HALF_SOURCE.set(dtype)
    try:
        yield
    finally:
        _HALF_SOURCE.reset(token)


def in_working_precision(fn, X: torch.Tensor, *args, **kwargs):
    """``fn(X_w, *args, **kwargs)`` with X_w = X in its working dtype (:func:`working_dtype`) and
    autocast disabled on X's device; a half-precision X gets the float32 tensors of the result
    back in its own dtype (differentiably: the gradient flows back to X). For float32 and
    float64 X the result is ``fn``'s, computed with autocast off. Anything but a tensor is passed
    to ``fn`` as it is (for ``fn``'s own validation to reject)."""
    if not isinstance(X, torch.Tensor):
        return fn(X, *args, **kwargs)
    if X.dtype not in HALF_DTYPES:
        with autocast_off(X.device.type):
            return fn(X, *args, **kwargs)
    with autocast_off(X.device.type), _computing_half(X.dtype):
        out = fn(X.to(torch.float32), *args, **kwargs)
    return _to_dtype(out, X.dtype)


def full_precision(fn):
    """Decorator: call ``fn`` with every half-precision tensor argument promoted to float32 and
    autocast disabled on the device of every tensor argument; when the first tensor argument was
    half precision, float32 tensors of the result come back in its dtype (as
    :func:`in_working_precision`), and :func:`dispersion._checks.check_points` accepts the
    promoted rows within that dtype's rounding (:func:`rounding_atol`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        halves = [t.dtype for t in tensors if t.dtype in HALF_DTYPES]

        def up(a):
            return a.to(torch.float32) if isinstance(a, torch.Tensor) and a.dtype in HALF_DTYPES else a

        if halves:
            args = tuple(up(a) for a in args)
            kwargs = {k: up(v) for k, v in kwargs.items()}
        with contextlib.ExitStack() as stack:
            for device_type in dict.fromkeys(t.device.type for t in tensors):
                stack.enter_context(autocast_off(device_type))
            # the coarsest half dtype sets the tolerance
            stack.enter_context(_computing_half(max(halves, key=rounding_atol) if halves else None))
            out = fn(*args, **kwargs)
        first = tensors[0].dtype if tensors else None
        return _to_dtype(out, first) if first in HALF_DTYPES else out

    return wrapper


def value_checks_possible() -> bool:
    """False inside ``torch.compile`` and under ``torch.func.vmap`` (where ``.item()`` is not
    allowed), True otherwise (``torch.func.grad`` included): whether the data-dependent input
    checks of :func:`dispersion._checks.check_points` can run."""
    if torch.compiler.is_compiling():
        return False
    try:
        stack = torch._C._functorch.get_interpreter_stack()
        vmap = torch._C._functorch.TransformType.Vmap
    except AttributeError:  # pragma: no cover - a torch without these functorch internals
        return True
    return not stack or all(i.key() != vmap for i in stack)


def loop_vmap(forward, info, in_dims, *args):
    """A vmap rule for a custom ``autograd.Function`` (its ``vmap`` staticmethod): run
    ``forward(*args)`` once per member of the batch (the batched tensor arguments indexed along
    their ``in_dims``) and stack each output along a new dim 0.

    For Functions whose forward is data-dependent (Python loops over blocks, ``.item()``,
    ``nonzero``, numpy), which ``generate_vmap_rule`` cannot batch. ``forward`` returns a tensor
    or a tuple of tensors; returns ``(outputs, out_dims)`` as ``torch.func`` expects.
    """
    if all(d is None for d in in_dims):
        out = forward(*args)
        return out, ((None,) * len(out) if isinstance(out, tuple) else None)
    outs = []
    for b in range(info.batch_size):
        member = [a if d is None else a.select(d, b) for a, d in zip(args, in_dims)]
        outs.append(forward(*member))
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(o) for o in zip(*outs)), (0,) * len(outs[0])
    return torch.stack(outs), 0
