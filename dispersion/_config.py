"""Small config helpers shared by the experiments (standard library only, so the command line
stays quick to start)."""

from __future__ import annotations

import copy

__all__ = ["deep_merge", "require_keys"]


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
