"""The synthetic studies in the workflow (arXiv:2502.08231, §4.2, and the reviewers'
questions): their runs, the spec of each (what :func:`dispersion.experiments.synthetic.run`
takes) and paths."""

from __future__ import annotations

import os

from .config import build_checked, method_spec, spec_json
from .paths import Paths

__all__ = ["SYNTHETIC_STUDIES", "SYNTHETIC_OUTPUTS", "synthetic_specs", "regime_cells", "synthetic_studies",
           "optimizer_cells", "SyntheticPaths", "run_specs", "check_variants", "check"]

SYNTHETIC_STUDIES = ("main", "regimes", "slices", "fullbatch", "optimizers")

#: Outputs of each synthetic study's report: (table stems, figure stems).
SYNTHETIC_OUTPUTS = {
    "main": (["synthetic_final", "synthetic_speed"], ["synthetic_curves"]),
    "regimes": (["synthetic_regimes"], ["synthetic_regimes"]),
    "slices": (["synthetic_slices"], ["synthetic_slices"]),
    "fullbatch": (["synthetic_fullbatch"], []),
    "optimizers": (["synthetic_optimizers"], []),
}


def _synthetic_base(config: dict, variant: str) -> dict:
    s = config["synthetic"]
    m = method_spec(config, "synthetic", variant) if variant != "reference" else {
        "method": "reference", "label": "i.i.d. uniform (reference)", "params": {}}
    return {
        "variant": variant, "method": m["method"], "label": m["label"], "params": m["params"],
        "lr": s["lr"], "optimizer": s["optimizer"], "batch_size": s["batch_size"], "kappa": s["kappa"],
        "device": config["device"],
    }


def synthetic_specs(config: dict) -> dict[tuple[str, str, str, int], dict]:
    """Every synthetic run, keyed by (study, cell, method variant, seed) → resolved spec.

    Studies (each optional in the config):

    * ``main`` — cells ``uniform`` and ``clumped`` at (n, d), every method + the reference;
    * ``regimes`` — cells ``n{N}_d{d}`` over the grid, clumped start, every method (or the
      subset ``regimes.methods``) + reference;
    * ``slices`` — cells ``L{L}_steps`` (fixed steps) and ``L{L}_time`` (fixed update time) for
      one sliced variant with L slices;
    * ``fullbatch`` — the minibatch variant and its full-batch counterpart at equal update time;
    * ``optimizers`` — cells named after the optimiser, Riemannian vs Euclidean at scale.
    """
    from ..regularizers import SLICE_PARAMS

    if "synthetic" not in config:
        return {}
    s = config["synthetic"]
    out: dict = {}

    def add(study, cell, variant, seed, **extra):
        spec = {**_synthetic_base(config, variant), "study": study, "cell": cell, "seed": int(seed), **extra}
        out[(study, cell, variant, int(seed))] = spec

    if "main" in s:
        m = s["main"]
        for init in ("uniform", "clumped"):
            for v in ["reference", *s["methods"]]:
                for seed in s["seeds"]:
                    add("main", init, v, seed, n=m["n"], d=m["d"], init=init, steps=m["steps"],
                        log_every=m["log_every"])
    if "regimes" in s:
        r = s["regimes"]
        for n, d in regime_cells(r):
            for v in ["reference", *r.get("methods", s["methods"])]:
                for seed in r.get("seeds", s["seeds"]):
                    add("regimes", f"n{n}_d{d}", v, seed, n=n, d=d, init=r["init"], steps=r["steps"],
                        log_every=r["steps"])
    if "slices" in s:
        sl = s["slices"]
        for L in sl["n_slices"]:
            for mode in ("steps", "time"):
                v = sl["variant"]
                for seed in sl.get("seeds", s["seeds"]):
                    base = _synthetic_base(config, v)
                    key = SLICE_PARAMS[base["method"]]
                    add("slices", f"L{L}_{mode}", v, seed, n=sl["n"], d=sl["d"], init=sl["init"],
                        steps=sl["steps"] if mode == "steps" else 10**9,
                        max_time_s=sl["time_budget_s"] if mode == "time" else None,
                        log_every=sl["steps"] if mode == "steps" else 10**9,
                        params={**base["params"], key: L}, n_slices=L)
    if "fullbatch" in s:
        fb = s["fullbatch"]
        for v, full in ((fb["minibatch_variant"], False), (fb["fullbatch_variant"], True)):
            for seed in fb.get("seeds", s["seeds"]):
                add("fullbatch", "equal_time", v, seed, n=fb["n"], d=fb["d"], init=fb["init"], steps=10**9,
                    max_time_s=fb["time_budget_s"], log_every=10**9, full_batch=full)
    if "optimizers" in s:
        o = s["optimizers"]
        for opt in o["optimizers"]:
            for cell, lr in optimizer_cells(opt, o.get("lrs"), s["lr"]):
                for v in o["methods"]:
                    for seed in o.get("seeds", s["seeds"]):
                        add("optimizers", cell, v, seed, n=o["n"], d=o["d"], init=o["init"], steps=o["steps"],
                            log_every=o["steps"], optimizer=opt, lr=lr)
    return out


def optimizer_cells(optimizer: str, lrs: list[float] | None, lr: float) -> list[tuple[str, float]]:
    """The (cell, learning rate) pairs of one optimiser in the optimisers study: one cell named
    after the optimiser at ``synthetic.lr`` when ``optimizers.lrs`` is absent, else one cell
    ``{optimizer}_lr{lr:g}`` per learning rate of the sweep."""
    if lrs is None:
        return [(optimizer, lr)]
    return [(f"{optimizer}_lr{float(x):g}", float(x)) for x in lrs]


def regime_cells(regimes: dict) -> list[tuple[int, int]]:
    """The (N, d) cells of the regime grid that are run: every pair of ``regimes.n`` ×
    ``regimes.d`` whose N·d is at most ``regimes.max_nd`` (all of them when it is absent or
    null), in grid order."""
    cap = regimes.get("max_nd")
    return [(n, d) for n in regimes["n"] for d in regimes["d"] if cap is None or n * d <= cap]


def synthetic_studies(config: dict) -> list[str]:
    """The synthetic studies present in the config, in a fixed order."""
    return [k for k in SYNTHETIC_STUDIES if k in config.get("synthetic", {})]


class SyntheticPaths(Paths):
    """Runs ``{results_dir}/synthetic/{study}/runs/{cell}/{method}/seed{seed}/``; the tidy CSVs
    ``{results_dir}/synthetic/{study}/{runs,curves}.csv``; the tables and figures of each study
    (:data:`SYNTHETIC_OUTPUTS`)."""

    def run_dir(self) -> str:
        return self.res("synthetic", "{study}", "runs", "{cell}", "{method}", "seed{seed}")

    def summaries(self, wildcards) -> list[str]:
        """summary.json paths of every run of the study named by ``wildcards.study``."""
        return [
            os.path.join(self.run_dir(), "summary.json").format(study=st, cell=c, method=m, seed=sd)
            for (st, c, m, sd) in synthetic_specs(self.config)
            if st == wildcards.study
        ]

    def report_outputs(self, study: str) -> list[str]:
        tables, figures = SYNTHETIC_OUTPUTS[study]
        out = [self.res("tables", f"{t}.{e}") for t in tables for e in ("md", "tex")]
        return out + [self.fig(f"{f}.{e}") for f in figures for e in ("pdf", "png")]

    def outputs(self) -> list[str]:
        """Every target of ``rule all``: the reports of the studies in the config."""
        return [p for st in synthetic_studies(self.config) for p in self.report_outputs(st)]


def run_specs(config: dict) -> dict[str, dict]:
    """Every synthetic run as its ``summary.json`` path → the spec the run records."""
    run_dir = SyntheticPaths(config).run_dir()
    return {os.path.normpath(os.path.join(run_dir.format(study=st, cell=c, method=v, seed=sd), "summary.json")): spec
            for (st, c, v, sd), spec in synthetic_specs(config).items()}


def check_variants(config: dict) -> None:
    """The variants the sub-studies name exist, and the slices study's is a sliced method."""
    syn = config.get("synthetic", {})
    for path, variant in (("slices.variant", syn.get("slices", {}).get("variant")),
                          ("fullbatch.minibatch_variant", syn.get("fullbatch", {}).get("minibatch_variant")),
                          ("fullbatch.fullbatch_variant", syn.get("fullbatch", {}).get("fullbatch_variant")),
                          *(("optimizers.methods", v) for v in syn.get("optimizers", {}).get("methods", [])),
                          *(("regimes.methods", v) for v in syn.get("regimes", {}).get("methods", []))):
        if variant is not None and variant not in config["methods"]:
            raise ValueError(f"config key synthetic.{path}: {variant!r} is not a variant defined under methods:")
    if "slices" in syn and config["methods"][syn["slices"]["variant"]]["method"] not in ("sliced", "ssw"):
        raise ValueError("config key synthetic.slices.variant: must be a sliced or ssw variant")


def check(config: dict) -> None:
    """Every job's spec passes :func:`dispersion.experiments.synthetic.run`'s checks, and every
    distinct (method, params) builds — the slice counts of the slices study with the overrides
    applied. ``ValueError`` naming the study, cell and variant."""
    from .._config import check_spec
    from ..experiments import synthetic

    seen = set()
    for (study, cell, variant, _), spec in synthetic_specs(config).items():
        where = f"synthetic.{study} (cell {cell}, {variant})"
        try:
            check_spec(spec, synthetic.REQUIRED, synthetic.OPTIONAL)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config key {where}: {e}") from None
        if spec["method"] == "reference":
            continue
        key = (spec["method"], spec_json(spec["params"]))
        if key not in seen:
            seen.add(key)
            build_checked(spec["method"], spec["params"], where)
