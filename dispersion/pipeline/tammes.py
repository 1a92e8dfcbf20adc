"""The Tammes experiment in the workflow (arXiv:2502.08231, §4.1): its runs, their specs
(what :func:`dispersion.experiments.tammes.run` takes) and paths."""

from __future__ import annotations

import os

from .config import method_spec
from .paths import Paths

__all__ = ["tammes_runs", "tammes_spec", "TammesPaths", "run_specs", "check"]


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


class TammesPaths(Paths):
    """Runs ``{results_dir}/tammes/runs/{case}/{method}/{optimizer}/seed{seed}/``; the tidy CSVs
    ``{results_dir}/tammes/{runs,nn_angles}.csv``; the table ``{results_dir}/tables/tammes.*``;
    the figures ``{figures_dir}/tammes_{boxplot,riemannian_vs_euclidean}.*``."""

    def run_dir(self) -> str:
        return self.res("tammes", "runs", "{case}", "{method}", "{optimizer}", "seed{seed}")

    def summaries(self, wildcards=None) -> list[str]:
        return [os.path.join(self.run_dir(), "summary.json").format(**r) for r in tammes_runs(self.config)]

    def outputs(self) -> list[str]:
        """Every target of ``rule all`` (empty without a ``tammes`` section)."""
        if not self.config.get("tammes"):
            return []
        out = list(self.table("tammes").values())
        if self.config["tammes"].get("figure_case"):
            out += [self.fig(f"tammes_{n}.{e}") for n in ("boxplot", "riemannian_vs_euclidean") for e in ("pdf", "png")]
        return out


def run_specs(config: dict) -> dict[str, dict]:
    """Every Tammes run as its ``summary.json`` path → the spec the run records."""
    if not config.get("tammes"):
        return {}
    run_dir = TammesPaths(config).run_dir()
    return {os.path.normpath(os.path.join(run_dir.format(**r), "summary.json")):
            tammes_spec(config, r["case"], r["method"], r["optimizer"], r["seed"]) for r in tammes_runs(config)}


def check(config: dict) -> None:
    """The cases are unique and the figure's case is run with both optimisers; every job's spec
    passes :func:`dispersion.experiments.tammes.run`'s checks. ``ValueError`` naming the key."""
    from .._config import check_spec
    from ..experiments import tammes

    t = config.get("tammes")
    if not t:
        return
    names = [c["name"] for c in t["cases"]]
    if len(set(names)) != len(names):
        raise ValueError(f"config key tammes.cases: duplicate case names in {names}")
    for c in t.get("euclidean_cases", []):
        if c not in names:
            raise ValueError(f"config key tammes.euclidean_cases: unknown case {c!r} (cases: {names})")
    if t.get("figure_case") and t["figure_case"] not in t.get("euclidean_cases", []):
        raise ValueError("config key tammes.figure_case: must also be listed in tammes.euclidean_cases "
                         "(the Riemannian-vs-Euclidean figure shows it)")
    for r in tammes_runs(config):
        spec = tammes_spec(config, r["case"], r["method"], r["optimizer"], r["seed"])
        try:
            check_spec(spec, tammes.REQUIRED, tammes.OPTIONAL)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config key tammes (case {r['case']}, {r['method']}): {e}") from None
