"""Small config helpers shared by the experiments (standard library only, so the command line
stays quick to start)."""

from __future__ import annotations

import copy
import difflib
import math
import numbers
from typing import Any, Callable, Mapping

__all__ = ["deep_merge", "require_keys", "check_spec", "Int", "Number", "Choice", "Str", "Dict", "Bool"]


def deep_merge(base: dict, over: dict | None) -> dict:
    """A deep copy of ``base`` with ``over`` merged in key by key (nested dicts merged, other
    values replaced) — the way Snakemake layers config files."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def require_keys(spec: dict, required: tuple[str, ...], name: str = "spec") -> None:
    """Raise ``ValueError`` naming the keys of ``required`` missing from ``spec``."""
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"{name} is missing key(s) {missing}; required: {list(required)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v).__name__ != "bool_"


class Int:
    """Spec field: an integer (a Python or numpy int; floats such as 2.7 or 2.0 are rejected,
    not rounded) of at least ``min``."""

    def __init__(self, min: int | None = None):
        self.min = min

    def __call__(self, v: Any) -> str | None:
        if not _is_int(v):
            return f"an integer{'' if self.min is None else f' >= {self.min}'}, got {v!r}"
        if self.min is not None and v < self.min:
            return f"an integer >= {self.min}, got {v!r}"
        return None


class Number:
    """Spec field: a finite real number (int or float, not bool), > 0 when ``positive``."""

    def __init__(self, positive: bool = False):
        self.positive = positive

    def __call__(self, v: Any) -> str | None:
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (self.positive and not v > 0):
            return f"a finite number{' > 0' if self.positive else ''}, got {v!r}"
        return None


class Choice:
    """Spec field: one of ``values``."""

    def __init__(self, *values: Any):
        self.values = values

    def __call__(self, v: Any) -> str | None:
        if not isinstance(v, (str, int, float, bool)) or v not in self.values:
            return f"one of {list(self.values)}, got {v!r}"
        return None


def _of_type(t: type, what: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if isinstance(v, t) and not (t is int and isinstance(v, bool)) else f"{what}, got {v!r}"

    return check


#: Spec field: a string / a JSON object / true or false.
Str = _of_type(str, "a string")
#: Spec field: a JSON object.
Dict = _of_type(dict, "a JSON object")
#: Spec field: true or false.
Bool = _of_type(bool, "true or false")


def check_spec(
    spec: Any,
    required: Mapping[str, Callable[[Any], str | None]],
    optional: Mapping[str, Callable[[Any], str | None]] | None = None,
    name: str = "spec",
) -> dict:
    """Validate a run spec against its fields and return it.

    ``required`` and ``optional`` map each key to a check that returns ``None`` or what was
    expected (:class:`Int`, :class:`Number`, :class:`Choice`, :data:`Str`, :data:`Dict`,
    :data:`Bool`). Optional keys may also be ``None`` (= the default). Raises ``ValueError``
    naming the first wrong key — a missing required key, an unknown key (with the closest known
    one; a typo such as ``stpes`` is an error, not ignored), or a value of the wrong type or
    range (``steps: 2.7`` is an error, not rounded) — and ``TypeError`` when ``spec`` is not a
    mapping.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"{name} must be a JSON object (a dict), got {type(spec).__name__}")
    optional = optional or {}
    require_keys(spec, tuple(required), name)
    known = {**required, **optional}
    for key in spec:
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            raise ValueError(f"{name} key {key!r} is not known{f'; did you mean {hint[0]!r}?' if hint else ''} "
                             f"(known keys: {sorted(known)})")
    for key, check in known.items():
        if key not in spec or (key in optional and spec[key] is None):
            continue
        problem = check(spec[key])
        if problem:
            raise ValueError(f"{name} key {key!r} must be {problem}")
    return dict(spec)
