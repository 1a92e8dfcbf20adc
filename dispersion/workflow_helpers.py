"""Config helpers for the Snakemake workflow (kept out of the rule files).

The Snakefile validates the config against its JSON schema (types, unknown keys); this module
adds the checks a schema cannot express — every method variant an experiment names exists,
every variant's parameters build a regularizer — so a bad config fails before any job starts,
with the key's path in the message.
"""

from __future__ import annotations

import json

from .regularizers import build

__all__ = ["check_config", "method_spec", "tammes_spec", "tammes_runs", "spec_json"]

#: Pseudo-variants that are not regularizers (the unoptimised initialisation).
BASELINES = {"uniform": {"method": "uniform", "label": "Uniform init", "params": {}}}


def method_spec(config: dict, experiment: str, variant: str) -> dict:
    """``{"method", "label", "params"}`` of ``variant`` in ``experiment``, with that experiment's
    ``overrides`` applied. Raises ``KeyError`` naming the config path for an unknown variant."""
    if variant in BASELINES:
        return dict(BASELINES[variant])
    if variant not in config["methods"]:
        raise KeyError(
            f"config key {experiment}.methods names {variant!r}, which is not defined under "
            f"methods: (defined: {sorted(config['methods'])})"
        )
    base = config["methods"][variant]
    params = {**base.get("params", {}), **config[experiment].get("overrides", {}).get(variant, {})}
    return {"method": base["method"], "label": base["label"], "params": params}


def check_config(config: dict) -> None:
    """Raise ``ValueError`` naming the key for what the schema cannot check."""
    for name, v in config["methods"].items():
        try:
            build(v["method"], **v.get("params", {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"config key methods.{name}: {e}") from None
    for exp in ("tammes", "synthetic", "image", "text"):
        if exp not in config or "methods" not in config[exp]:
            continue
        for variant in config[exp]["methods"]:
            try:
                spec = method_spec(config, exp, variant)
            except KeyError as e:
                raise ValueError(e.args[0]) from None
            if spec["method"] != "uniform":
                try:
                    build(spec["method"], **spec["params"])
                except (TypeError, ValueError) as e:
                    raise ValueError(f"config key {exp}.overrides.{variant}: {e}") from None
        for key in config[exp].get("overrides", {}):
            if key not in config["methods"]:
                raise ValueError(f"config key {exp}.overrides.{key}: {key!r} is not a variant defined under methods:")
    t = config.get("tammes")
    if t:
        names = [c["name"] for c in t["cases"]]
        if len(set(names)) != len(names):
            raise ValueError(f"config key tammes.cases: duplicate case names in {names}")
        for key in ("euclidean_cases",):
            for c in t.get(key, []):
                if c not in names:
                    raise ValueError(f"config key tammes.{key}: unknown case {c!r} (cases: {names})")
        if t.get("figure_case") and t["figure_case"] not in t.get("euclidean_cases", []):
            raise ValueError("config key tammes.figure_case: must also be listed in tammes.euclidean_cases "
                             "(the Riemannian-vs-Euclidean figure shows it)")


def tammes_runs(config: dict) -> list[dict]:
    """Every (case, method, optimizer, seed) of the Tammes experiment, as wildcard dicts."""
    t = config["tammes"]
    runs = []
    for case in t["cases"]:
        optimizers = [t["optimizer"]]
        if case["name"] in t.get("euclidean_cases", []):
            optimizers.append("adam")
        for opt in optimizers:
            for m in t["methods"]:
                if opt == "adam" and m == "uniform":
                    continue  # the init does not depend on the optimiser
                for seed in t["seeds"]:
                    runs.append({"case": case["name"], "method": m, "optimizer": opt, "seed": seed})
    return runs


def tammes_spec(config: dict, case: str, method: str, optimizer: str, seed: int | str) -> dict:
    """The resolved spec of one Tammes run (what ``python -m dispersion tammes-run`` takes)."""
    t = config["tammes"]
    c = next(c for c in t["cases"] if c["name"] == case)
    m = method_spec(config, "tammes", method)
    return {
        "case": case, "n": c["n"], "d": c["d"],
        "variant": method, "method": m["method"], "label": m["label"], "params": m["params"],
        "optimizer": optimizer, "steps": t["steps"], "lr": t["lr"], "seed": int(seed),
        "device": config["device"],
    }


def spec_json(spec: dict) -> str:
    """Compact, key-sorted JSON (deterministic, so Snakemake's params change detection is exact)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))
