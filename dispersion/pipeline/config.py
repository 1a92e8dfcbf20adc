"""The workflow's config: loading and layering configs, resolving a method variant
(:func:`method_spec`), building one to check it (:func:`build_checked`), the deterministic JSON
of a spec (:func:`spec_json`). The checks of a whole config are in
:mod:`dispersion.pipeline.checks`."""

from __future__ import annotations

import json
import os
from typing import Mapping

from .._config import deep_merge

__all__ = ["BASELINES", "base_config", "shipped_configs", "method_spec", "used_variants", "build_checked",
           "section", "spec_json"]

#: Pseudo-variants that are not regularizers (the unoptimised initialisation).
BASELINES = {"uniform": {"method": "uniform", "label": "Uniform init", "params": {}}}


def base_config(basedir: str) -> dict:
    """The paper-scale ``config/config.yaml`` under the workflow's ``basedir``: the config that
    ``--configfile`` layers (quick, test) are merged over, whose overrides they inherit."""
    import yaml

    with open(os.path.join(basedir, "config", "config.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def shipped_configs(basedir: str) -> dict[str, dict]:
    """Every shipped config, merged as Snakemake merges ``--configfile`` layers: ``config.yaml``
    itself and every other ``config/*.yaml`` layered over it. Name (``"quick.yaml"``) → config."""
    import glob

    import yaml

    base = base_config(basedir)
    out = {"config.yaml": base}
    for path in sorted(glob.glob(os.path.join(basedir, "config", "*.yaml"))):
        name = os.path.basename(path)
        if name != "config.yaml":
            with open(path, encoding="utf-8") as f:
                out[name] = deep_merge(base, yaml.safe_load(f) or {})
    return out


def section(config: dict, where: str) -> dict:
    """The config section at a dotted path (``"text.lm"``), or {}."""
    out = config
    for part in where.split("."):
        out = (out or {}).get(part) if isinstance(out, dict) else None
    return out if isinstance(out, dict) else {}


def method_spec(config: dict, experiment: str, variant: str, baselines: Mapping[str, dict] | None = None) -> dict:
    """``{"method", "label", "params"}`` of ``variant`` in ``experiment`` (a section of the
    config, dotted for the text tasks: ``"text.lm"``), with that experiment's ``overrides``
    applied — the one place a method variant of ``methods:`` is resolved.

    ``baselines``: the experiment's pseudo-variants, name → ``{"method", "label", "params"}``
    (``method`` may be None: no regularizer); default :data:`BASELINES`. Raises ``ValueError``
    naming the config path for a variant that is neither.
    """
    baselines = BASELINES if baselines is None else baselines
    if variant in baselines:
        return {"params": {}, **baselines[variant]}
    methods = config.get("methods", {})
    if variant not in methods:
        extra = f" nor a baseline {sorted(baselines)}" if baselines is not BASELINES else ""
        raise ValueError(
            f"config key {experiment}.methods names {variant!r}, which is not defined under "
            f"methods:{extra} (defined: {sorted(methods)})"
        )
    base = methods[variant]
    params = {**base.get("params", {}), **section(config, experiment).get("overrides", {}).get(variant, {})}
    return {"method": base["method"], "label": base.get("label", variant), "params": params}


def used_variants(config: dict, experiment: str) -> list[str]:
    """The method variants (names under ``methods:``) that ``experiment`` runs, in config order:
    its ``methods`` and, for ``synthetic``, those of the sub-studies present in the config
    (``regimes.methods``, ``slices.variant``, ``fullbatch.*_variant``, ``optimizers.methods``).
    Baselines (``uniform``, ``softmax``, …) are left out."""
    if experiment.startswith("text"):  # "text" (both tasks), "text.classify" or "text.lm"
        t = config.get("text") or {}
        tasks = ("classify", "lm") if experiment == "text" else (experiment.split(".", 1)[1],)
        used = [m for task in tasks for m in (t.get(task) or {}).get("methods", [])]
        return [v for v in dict.fromkeys(used) if v in config.get("methods", {})]
    e = config.get(experiment) or {}
    used = list(e.get("methods", []))
    if experiment == "synthetic":
        used += e.get("regimes", {}).get("methods", [])
        used += [e[k][v] for k, v in (("slices", "variant"), ("fullbatch", "minibatch_variant"),
                                      ("fullbatch", "fullbatch_variant")) if k in e and v in e[k]]
        used += e.get("optimizers", {}).get("methods", [])
    return [v for v in dict.fromkeys(used) if v in config.get("methods", {})]


def no_auto(params: dict) -> dict:
    """``params`` with ``"auto"`` slice counts (resolved per run: round(B²/N)) replaced by 1,
    to check that the variant builds."""
    from ..regularizers import SLICE_PARAMS

    return {k: (1 if v == "auto" and k in SLICE_PARAMS.values() else v) for k, v in params.items()}


def build_checked(method: str, params: dict, where: str) -> None:
    """Build the regularizer (``"auto"`` slice counts as 1); ``ValueError`` naming ``where``."""
    from ..regularizers import build

    try:
        build(method, **no_auto(params))
    except (TypeError, ValueError) as e:
        raise ValueError(f"config key {where}: {e}") from None


def spec_json(spec: dict) -> str:
    """Compact, key-sorted JSON (deterministic, so Snakemake's params change detection is exact)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))
