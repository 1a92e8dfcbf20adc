"""Config helpers for the Snakemake workflow (kept out of the rule files).

The Snakefile validates the config against its JSON schema (types, unknown keys); this module
adds the checks a schema cannot express — every method variant an experiment names exists,
every variant's parameters build a regularizer — so a bad config fails before any job starts,
with the key's path in the message.
"""

from __future__ import annotations

import json
import os

from .regularizers import build

__all__ = ["base_config", "check_config", "used_variants", "method_spec", "tammes_spec", "tammes_runs", "spec_json", "Paths",
           "shipped_configs", "run_specs", "spec_differences", "committed_run_mismatches",
           "scale_name", "audit_tables", "audit_source", "audit_embed_spec", "audit_spec", "audit_posthoc_runs",
           "audit_posthoc_spec", "AuditPaths", "check_audit_config"]

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


def _no_auto(params: dict) -> dict:
    """``"auto"`` slice counts are resolved per run (round(B²/N)); check them as 1."""
    return {k: (1 if v == "auto" and k in ("n_slices", "n_projections") else v) for k, v in params.items()}


def base_config(basedir: str) -> dict:
    """The paper-scale ``config/config.yaml`` under the workflow's ``basedir``: the config that
    ``--configfile`` layers (quick, test) are merged over, whose overrides they inherit."""
    import yaml

    with open(os.path.join(basedir, "config", "config.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


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


def _build(method: str, params: dict, where: str) -> None:
    try:
        build(method, **_no_auto(params))
    except (TypeError, ValueError) as e:
        raise ValueError(f"config key {where}: {e}") from None


def check_config(config: dict, base: dict | None = None) -> None:
    """Raise ``ValueError`` naming the key for what the schema cannot check, before any job.

    * every variant under ``methods:`` builds its regularizer;
    * every variant an experiment names exists, and builds with that experiment's
      ``overrides`` — sub-studies included (the slice counts of ``synthetic.slices`` too);
    * an override (or a per-variant λ, ``text.lm.lambdas``) names a variant that its experiment
      runs (one for a variant the experiment does not run would be silently ignored) — except one inherited
      unchanged from ``base``, the config the others are layered over (``config/config.yaml``:
      a smaller config such as ``--configfile config/quick.yaml`` cannot delete the overrides it
      inherits for variants it does not run);
    * the spec of every Tammes and synthetic job passes the checks of its ``run`` (keys, types
      and ranges), so a job cannot fail on its spec after others have run.
    """
    for name, v in config["methods"].items():
        _build(v["method"], v.get("params", {}), f"methods.{name}")
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
    for exp in ("tammes", "synthetic", "image"):
        if exp not in config or "methods" not in config[exp]:
            continue
        for variant in config[exp]["methods"]:
            try:
                method_spec(config, exp, variant)
            except KeyError as e:
                raise ValueError(e.args[0]) from None
        used = used_variants(config, exp)
        overrides = config[exp].get("overrides", {})
        for key in overrides:
            if key not in config["methods"]:
                raise ValueError(f"config key {exp}.overrides.{key}: {key!r} is not a variant defined under methods:")
        for variant in used:
            spec = method_spec(config, exp, variant)
            where = f"{exp}.overrides.{variant}" if variant in overrides else f"methods.{variant} (in {exp})"
            _build(spec["method"], spec["params"], where)
    for where, per_variant in (("tammes", "overrides"), ("synthetic", "overrides"), ("image", "overrides"),
                               ("text.classify", "overrides"), ("text.lm", "overrides"), ("text.lm", "lambdas")):
        overrides = _section(config, where).get(per_variant) or {}
        used = used_variants(config, where)
        for key, value in overrides.items():
            if key not in config["methods"] or key in used:
                continue
            inherited = base is not None and (_section(base, where).get(per_variant) or {}).get(key) == value \
                and key in used_variants(base, where)
            if not inherited:
                raise ValueError(f"config key {where}.{per_variant}.{key}: {where} does not run variant {key!r} "
                                 f"(it runs {used}), so the {per_variant[:-1]} would be ignored; remove it")
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
    _check_job_specs(config)


def _section(config: dict, where: str) -> dict:
    """The config section at a dotted path (``"text.lm"``), or {}."""
    out = config
    for part in where.split("."):
        out = (out or {}).get(part) if isinstance(out, dict) else None
    return out if isinstance(out, dict) else {}


def _check_job_specs(config: dict) -> None:
    """Every Tammes and synthetic job's spec through its run's own checks (no computation)."""
    from ._config import check_spec
    from .experiments import synthetic, tammes

    seen = set()
    if config.get("tammes"):
        for r in tammes_runs(config):
            spec = tammes_spec(config, r["case"], r["method"], r["optimizer"], r["seed"])
            try:
                check_spec(spec, tammes.REQUIRED, tammes.OPTIONAL)
            except (TypeError, ValueError) as e:
                raise ValueError(f"config key tammes (case {r['case']}, {r['method']}): {e}") from None
    for (study, cell, variant, _), spec in synthetic_specs(config).items():
        where = f"synthetic.{study} (cell {cell}, {variant})"
        try:
            check_spec(spec, synthetic.REQUIRED, synthetic.OPTIONAL)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config key {where}: {e}") from None
        if spec["method"] == "reference":
            continue
        key = (spec["method"], spec_json(spec["params"]))
        if key not in seen:  # the slice counts of the slices study, with the overrides applied
            seen.add(key)
            _build(spec["method"], spec["params"], where)


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


# --- Synthetic studies (arXiv:2502.08231 and the reviewers' questions) ---
SYNTHETIC_STUDIES = ("main", "regimes", "slices", "fullbatch", "optimizers")


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
                    key = "n_slices" if base["method"] == "sliced" else "n_projections"
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
            for v in o["methods"]:
                for seed in o.get("seeds", s["seeds"]):
                    add("optimizers", opt, v, seed, n=o["n"], d=o["d"], init=o["init"], steps=o["steps"],
                        log_every=o["steps"], optimizer=opt)
    return out


def regime_cells(regimes: dict) -> list[tuple[int, int]]:
    """The (N, d) cells of the regime grid that are run: every pair of ``regimes.n`` ×
    ``regimes.d`` whose N·d is at most ``regimes.max_nd`` (all of them when it is absent or
    null), in grid order."""
    cap = regimes.get("max_nd")
    return [(n, d) for n in regimes["n"] for d in regimes["d"] if cap is None or n * d <= cap]


def synthetic_studies(config: dict) -> list[str]:
    """The synthetic studies present in the config, in a fixed order."""
    return [k for k in SYNTHETIC_STUDIES if k in config.get("synthetic", {})]


#: Outputs of each synthetic study's report: (table stems, figure stems).
SYNTHETIC_OUTPUTS = {
    "main": (["synthetic_final", "synthetic_speed"], ["synthetic_curves"]),
    "regimes": (["synthetic_regimes"], ["synthetic_regimes"]),
    "slices": (["synthetic_slices"], ["synthetic_slices"]),
    "fullbatch": (["synthetic_fullbatch"], []),
    "optimizers": (["synthetic_optimizers"], []),
}


class Paths:
    """Output paths of the workflow under the configured roots (``results_dir``, ``figures_dir``)."""

    def __init__(self, config: dict):
        self.config = config

    def res(self, *parts: str) -> str:
        """A path under the results root."""
        return os.path.join(self.config["results_dir"], *parts)

    def fig(self, *parts: str) -> str:
        """A path under the figures root."""
        return os.path.join(self.config["figures_dir"], *parts)

    def table(self, name: str) -> dict:
        """``{"md": ..., "tex": ...}`` of a generated table."""
        return {"md": self.res("tables", f"{name}.md"), "tex": self.res("tables", f"{name}.tex")}

    def log(self, *parts: str) -> str:
        """A log file path."""
        return self.res("logs", *parts)

    # --- Tammes (arXiv:2502.08231) ---
    def tammes_run_dir(self) -> str:
        return self.res("tammes", "runs", "{case}", "{method}", "{optimizer}", "seed{seed}")

    def tammes_summaries(self, wildcards=None) -> list[str]:
        return [os.path.join(self.tammes_run_dir(), "summary.json").format(**r) for r in tammes_runs(self.config)]

    def tammes_outputs(self) -> list[str]:
        out = list(self.table("tammes").values())
        if self.config["tammes"].get("figure_case"):
            out += [self.fig(f"tammes_{n}.{e}") for n in ("boxplot", "riemannian_vs_euclidean") for e in ("pdf", "png")]
        return out

    # --- Synthetic studies (arXiv:2502.08231) ---
    def synthetic_run_dir(self) -> str:
        return self.res("synthetic", "{study}", "runs", "{cell}", "{method}", "seed{seed}")

    def synthetic_summaries(self, wildcards) -> list[str]:
        """summary.json paths of every run of the study named by ``wildcards.study``."""
        return [
            os.path.join(self.synthetic_run_dir(), "summary.json").format(study=st, cell=c, method=m, seed=sd)
            for (st, c, m, sd) in synthetic_specs(self.config)
            if st == wildcards.study
        ]

    def synthetic_report_outputs(self, study: str) -> list[str]:
        tables, figures = SYNTHETIC_OUTPUTS[study]
        out = [self.res("tables", f"{t}.{e}") for t in tables for e in ("md", "tex")]
        return out + [self.fig(f"{f}.{e}") for f in figures for e in ("pdf", "png")]

    def synthetic_outputs(self) -> list[str]:
        return [p for st in synthetic_studies(self.config) for p in self.synthetic_report_outputs(st)]

    # --- the paper ---
    def paper_inputs(self, *other_outputs: list[str]) -> list[str]:
        """Every table and figure the workflow writes for the paper (tables .tex, figures .pdf):
        those of Tammes and the synthetic studies, and those among ``other_outputs`` (the
        output lists of other experiments, e.g. ``ImagePaths.outputs()``)."""
        outs = self.tammes_outputs() + self.synthetic_outputs() + [p for o in other_outputs for p in o]
        return [p for p in outs if p.endswith((".tex", ".pdf"))]


# --- Do the committed runs agree with the configs that claim to produce them? ---
#: Spec keys left out of the comparison: the requested device (``auto``, ``cpu``, ``cuda``) picks
#: hardware, not the experiment; the hardware a run used is in the summary's ``device`` and
#: ``device_name``.
UNCOMPARED_SPEC_KEYS = ("device",)


def shipped_configs(basedir: str) -> dict[str, dict]:
    """Every shipped config, merged as Snakemake merges ``--configfile`` layers: ``config.yaml``
    itself and every other ``config/*.yaml`` layered over it. Name (``"quick.yaml"``) → config."""
    import glob

    import yaml

    from ._config import deep_merge

    base = base_config(basedir)
    out = {"config.yaml": base}
    for path in sorted(glob.glob(os.path.join(basedir, "config", "*.yaml"))):
        name = os.path.basename(path)
        if name != "config.yaml":
            with open(path, encoding="utf-8") as f:
                out[name] = deep_merge(base, yaml.safe_load(f) or {})
    return out


def run_specs(config: dict) -> dict[str, dict]:
    """Every run of ``config``, as the path of its ``summary.json`` (normalised, relative to the
    workflow's directory) → the spec the run records as the summary's ``config``: what the rule
    passes to the run (``tammes_spec``, ``synthetic_specs``, the image ``run_spec``, the text
    ``classify_spec`` / ``lm_spec``, ``audit_spec`` / ``audit_posthoc_spec``) plus what the run
    adds (the seed; the LM's corpus path)."""
    out: dict[str, dict] = {}
    paths = Paths(config)

    def put(run_dir: str, spec: dict) -> None:
        out[os.path.normpath(os.path.join(run_dir, "summary.json"))] = spec

    if config.get("tammes"):
        for r in tammes_runs(config):
            put(paths.tammes_run_dir().format(**r),
                tammes_spec(config, r["case"], r["method"], r["optimizer"], r["seed"]))
    for (study, cell, variant, seed), spec in synthetic_specs(config).items():
        put(paths.synthetic_run_dir().format(study=study, cell=cell, method=variant, seed=seed), spec)
    if config.get("image"):
        from .experiments.image import ImagePaths, image_runs, run_spec

        ip = ImagePaths(config)
        for r in image_runs(config):
            put(ip.run_dir(**r), {**run_spec(config, r["dataset"], r["dim"], r["method"]), "seed": r["seed"]})
    if config.get("text"):
        from .experiments.text import TextPaths, classify_runs, classify_spec, lm_runs, lm_spec

        tp = TextPaths(config)
        if config["text"].get("classify"):
            for r in classify_runs(config):
                put(tp.classify_run_dir(**r),
                    {**classify_spec(config, r["dataset"], r["dim"], r["method"]), "seed": r["seed"]})
        if config["text"].get("lm"):
            for r in lm_runs(config):
                put(tp.lm_run_dir(**r), {**lm_spec(config, r["method"]), "seed": r["seed"], "corpus": tp.corpus()})
    if config.get("audit"):
        ap = AuditPaths(config)
        for table in audit_tables(config):
            put(ap.run_dir(table), audit_spec(config, table))
        for r in audit_posthoc_runs(config):
            put(ap.posthoc_run_dir(**r), audit_posthoc_spec(config, **r))
    return out


def spec_differences(recorded, expected, path: str = "") -> list[str]:
    """The differences between a recorded spec and the one the config gives now, one line per
    key (dotted path: ``params.gamma: summary 1.0, config 0.5``); [] when they agree. Compared
    as JSON values (so 1 and 1.0 agree), top-level keys of :data:`UNCOMPARED_SPEC_KEYS` left out."""
    expected = json.loads(json.dumps(expected))
    if isinstance(recorded, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(recorded) | set(expected), key=str):
            if not path and key in UNCOMPARED_SPEC_KEYS:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in expected:
                out.append(f"{where}: summary {recorded[key]!r}, not in the config's spec")
            elif key not in recorded:
                out.append(f"{where}: not in the summary, config {expected[key]!r}")
            else:
                out += spec_differences(recorded[key], expected[key], where)
        return out
    return [] if recorded == expected else [f"{path or 'spec'}: summary {recorded!r}, config {expected!r}"]


def committed_run_mismatches(summaries, configs: dict[str, dict], basedir: str = ".") -> list[str]:
    """One message per run whose ``summary.json`` disagrees with the configs that claim it.

    ``summaries``: paths of ``summary.json`` files relative to ``basedir`` (the committed ones:
    ``git ls-files``); ``configs``: name → merged config (:func:`shipped_configs`). A summary
    under a config's ``results_dir``, in a ``runs/`` directory of the workflow, must be a run of
    that config (else: "no config produces it") and hold that run's spec (else: the differing
    keys, :func:`spec_differences`). Summaries elsewhere (hand-made checks) are not runs of the
    workflow and are skipped. On a fresh clone Snakemake has no run metadata, so a parameter
    changed in a config without rerunning would otherwise go unnoticed."""
    expected: dict[str, tuple[str, dict]] = {}
    roots: dict[str, str] = {}
    for name, config in configs.items():
        roots.setdefault(os.path.normpath(config["results_dir"]), name)
        for path, spec in run_specs(config).items():
            expected.setdefault(path, (name, spec))
    out = []
    for rel in sorted(os.path.normpath(p) for p in summaries):
        parts = rel.split(os.sep)
        root = next((r for r in roots if rel.startswith(r + os.sep)), None)
        if root is None or "runs" not in parts[len(root.split(os.sep)):]:
            continue
        if rel not in expected:
            out.append(f"{rel}: no config produces this run (configs with results_dir {root!r}: {roots[root]})")
            continue
        name, spec = expected[rel]
        with open(os.path.join(basedir, rel), encoding="utf-8") as f:
            recorded = json.load(f).get("config")
        if recorded is None:
            out.append(f"{rel}: summary.json holds no 'config'")
            continue
        diff = spec_differences(recorded, spec)
        if diff:
            out.append(f"{rel} (config/{name}): " + "; ".join(diff))
    return out


# --- The audit experiment (issue 13; dispersion.experiments.audit) ---
#: Keys of an ``audit.tables`` entry that tune its audit rather than name its data.
AUDIT_TABLE_SETTINGS = ("reference_draws", "tsne_points", "pairwise", "pair_samples")
#: Defaults of the ``audit`` section (config/README.md).
AUDIT_DEFAULTS = {"seed": 0, "reference_draws": 5, "tsne_points": 2000, "pairwise": "auto", "pair_samples": 1_000_000,
                  "k": 10, "cache_dir": "data/audit", "encoder": {"name": "minilm", "max_length": 128, "batch_size": 64}}
AUDIT_POSTHOC_DEFAULTS = {"max_rows": None, "overrides": {}, "fidelity": "knn_margin", "weight": 0.1, "margin": 0.05,
                          "k": 10, "steps": 400, "lr": 0.05, "batch_size": None, "optimizer": "riemannian_adam",
                          "log_every": None, "seeds": [0]}


def scale_name(config: dict) -> str:
    """The scale a config's outputs belong to, for table captions: ``paper`` (``results_dir:
    results``), ``quick`` / ``cpu`` (under ``quick/`` / ``cpu/``), else ``results_dir <path>``."""
    root = os.path.normpath(config["results_dir"])
    if root == "results":
        return "paper"
    first = root.split(os.sep)[0]
    return first if first in ("quick", "cpu") else f"results_dir {config['results_dir']}"


def _audit_section(config: dict) -> dict:
    from ._config import deep_merge

    return deep_merge(AUDIT_DEFAULTS, config.get("audit") or {})


def audit_tables(config: dict) -> list[str]:
    """The tables the audit experiment audits, in order: ``audit.run`` (names under
    ``audit.tables``), then ``lm_<method>`` for every ``audit.lm_tables`` method of the text LM."""
    a = config.get("audit") or {}
    return list(a.get("run", [])) + [f"lm_{m}" for m in a.get("lm_tables", [])]


def audit_source(config: dict, table: str) -> tuple[dict, str | None, dict]:
    """(source, path, entry) of an audited table: the ``source`` of its spec, the file its run
    reads (the encoded MiniLM table under ``audit.cache_dir``, an LM run's ``embedding.pt``;
    None for GloVe) and its ``audit.tables`` entry ({} for an LM table). Raises ``ValueError``
    naming the config key for an unknown table."""
    a = _audit_section(config)
    if table.startswith("lm_") and table[3:] in a.get("lm_tables", []):
        from .experiments.text import TextPaths, lm_runs

        method = table[3:]
        seed = next((r["seed"] for r in lm_runs(config) if r["method"] == method), None)
        if seed is None:
            raise ValueError(f"config key audit.lm_tables: {method!r} is not a method of text.lm.methods")
        path = os.path.join(TextPaths(config).lm_run_dir(method=method, seed=seed), "embedding.pt")
        return {"type": "lm", "method": method, "seed": int(seed)}, path, {}
    tables = a.get("tables") or {}
    if table not in tables:
        raise ValueError(f"config key audit.run: {table!r} is not a table under audit.tables (defined: {sorted(tables)})")
    e = tables[table]
    kind = e.get("type")
    if kind == "minilm":
        src = {"type": "minilm", "dataset": e.get("dataset"), "split": e.get("split", "train"),
               "max_rows": e.get("max_rows"), "subset_seed": e.get("subset_seed", 0), "encoder": a["encoder"]}
        if e.get("path"):
            src["path"] = e["path"]
        return src, os.path.join(a["cache_dir"], f"{table}.pt"), e
    if kind == "glove":
        src = {"type": "glove", "max_rows": e.get("max_rows")}
        if e.get("path"):
            src["path"] = e["path"]
        return src, None, e
    raise ValueError(f"config key audit.tables.{table}.type: must be 'minilm' or 'glove', got {kind!r}")


def audit_embed_spec(config: dict, table: str) -> dict:
    """The spec of ``audit-embed`` for a MiniLM table: its source and the config's device."""
    src, _, _ = audit_source(config, table)
    if src["type"] != "minilm":
        raise ValueError(f"table {table!r} is a {src['type']} table; only MiniLM tables are encoded")
    return {**src, "device": config.get("device", "auto")}


def audit_spec(config: dict, table: str) -> dict:
    """The resolved spec of the audit run of ``table`` (what ``audit-run`` takes)."""
    a = _audit_section(config)
    src, path, e = audit_source(config, table)
    label = e.get("label") or (f"the text LM's embedding table ({src['method']})" if src["type"] == "lm" else table)
    spec = {"kind": "audit", "table": table, "label": label, "source": src, "path": path, "seed": a["seed"], "k": a["k"]}
    for key in AUDIT_TABLE_SETTINGS:
        spec[key] = e.get(key, a[key])
    return spec


def _audit_posthoc(config: dict) -> dict:
    from ._config import deep_merge

    return deep_merge(AUDIT_POSTHOC_DEFAULTS, (config.get("audit") or {}).get("posthoc") or {})


def audit_posthoc_runs(config: dict) -> list[dict]:
    """Every post-hoc run, as wildcard dicts {method, fidelity, seed}: each of
    ``audit.posthoc.methods`` alone (``fidelity: none``) and with ``audit.posthoc.fidelity``."""
    if not (config.get("audit") or {}).get("posthoc"):
        return []
    p = _audit_posthoc(config)
    return [{"method": m, "fidelity": f, "seed": s} for m in p["methods"] for f in ("none", p["fidelity"])
            for s in p["seeds"]]


def audit_posthoc_spec(config: dict, method: str, fidelity: str, seed: int | str) -> dict:
    """The resolved spec of one post-hoc run (what ``audit-run`` takes): the table of
    ``audit.posthoc.table``, the method variant with ``audit.posthoc.overrides``, and the fidelity
    term (weight 0 for ``none``)."""
    p = _audit_posthoc(config)
    table = p["table"]
    src, path, e = audit_source(config, table)
    if method not in config.get("methods", {}):
        raise ValueError(f"config key audit.posthoc.methods: {method!r} is not a variant defined under methods:")
    if fidelity not in ("none", p["fidelity"]):
        raise ValueError(f"fidelity must be 'none' or audit.posthoc.fidelity {p['fidelity']!r}, got {fidelity!r}")
    v = config["methods"][method]
    with_fid = fidelity != "none"
    return {
        "kind": "posthoc", "table": table, "label": e.get("label") or table, "source": src, "path": path,
        "max_rows": p["max_rows"], "variant": method, "method": v["method"], "method_label": v["label"],
        "params": {**v.get("params", {}), **(p["overrides"].get(method) or {})}, "fidelity": fidelity,
        "weight": float(p["weight"]) if with_fid else 0.0, "margin": p["margin"] if fidelity == "knn_margin" else None,
        "k": p["k"], "steps": p["steps"], "lr": p["lr"], "batch_size": p["batch_size"], "optimizer": p["optimizer"],
        "log_every": p["log_every"], "seed": int(seed),
    }


class AuditPaths:
    """Output paths of the audit experiment: runs ``{results_dir}/audit/runs/{table}/`` and
    ``{results_dir}/audit/posthoc/runs/{method}/{fidelity}/seed{seed}/``; tables
    ``{results_dir}/tables/audit_{table}.{md,tex}`` and ``audit_posthoc.{md,tex}``; figures
    ``{figures_dir}/audit_{table}_{nn_angles,pca,tsne}.{pdf,png}`` and
    ``audit_posthoc_tradeoff.{pdf,png}``; encoded MiniLM tables under ``audit.cache_dir``."""

    FIGURES = ("nn_angles", "pca", "tsne")

    def __init__(self, config: dict):
        self.config = config
        self.paths = Paths(config)

    def embedding(self, table: str = "{table}") -> str:
        return os.path.join(_audit_section(self.config)["cache_dir"], f"{table}.pt")

    def run_dir(self, table: str = "{table}") -> str:
        return self.paths.res("audit", "runs", table)

    def figure_prefix(self, table: str = "{table}") -> str:
        return self.paths.fig(f"audit_{table}_")

    def figures(self, table: str = "{table}") -> list[str]:
        return [f"{self.figure_prefix(table)}{f}.{e}" for f in self.FIGURES for e in ("pdf", "png")]

    def table(self, table: str = "{table}") -> dict:
        return self.paths.table(f"audit_{table}")

    def run_input(self, table: str) -> list[str]:
        """The file the audit of ``table`` reads ([] for GloVe, read from its package)."""
        _, path, _ = audit_source(self.config, table)
        return [path] if path else []

    def posthoc_run_dir(self, **w) -> str:
        p = self.paths.res("audit", "posthoc", "runs", "{method}", "{fidelity}", "seed{seed}")
        return p.format(**w) if w else p

    def posthoc_summaries(self, wildcards=None) -> list[str]:
        return [os.path.join(self.posthoc_run_dir(**r), "summary.json") for r in audit_posthoc_runs(self.config)]

    def posthoc_input(self) -> list[str]:
        """The file the post-hoc runs read ([] without a post-hoc study or for GloVe)."""
        return self.run_input(_audit_posthoc(self.config)["table"]) if audit_posthoc_runs(self.config) else []

    def posthoc_outputs(self) -> dict:
        return {"csv": self.paths.res("audit", "posthoc_runs.csv"), **self.paths.table("audit_posthoc"),
                "figure": [self.paths.fig(f"audit_posthoc_tradeoff.{e}") for e in ("pdf", "png")]}

    def outputs(self) -> list[str]:
        """Every target of ``rule all`` (empty without an ``audit`` section)."""
        out: list[str] = []
        for t in audit_tables(self.config):
            out += [*self.table(t).values(), *self.figures(t)]
        if audit_posthoc_runs(self.config):
            o = self.posthoc_outputs()
            out += [o["csv"], o["md"], o["tex"], *o["figure"]]
        return out


def check_audit_config(config: dict) -> None:
    """Raise ``ValueError`` naming the key for what the schema cannot check in ``audit``: every
    table of ``audit.run`` is defined and names a known dataset, every ``audit.lm_tables`` method
    is run by the text LM, the post-hoc table exists, every post-hoc variant exists and builds
    with its overrides, an override names a variant the study runs, and every run's spec passes
    the checks of :func:`dispersion.experiments.audit.run` — before any job starts."""
    a = config.get("audit")
    if not a:
        return
    from .data.text import DATASETS
    from .experiments.audit import check_run_spec

    for name, e in (a.get("tables") or {}).items():
        if e.get("type") == "minilm" and e.get("dataset") not in DATASETS:
            raise ValueError(f"config key audit.tables.{name}.dataset: unknown dataset {e.get('dataset')!r} "
                             f"(known: {list(DATASETS)})")
    lm_methods = ((config.get("text") or {}).get("lm") or {}).get("methods", [])
    for m in a.get("lm_tables", []):
        if m not in lm_methods:
            raise ValueError(f"config key audit.lm_tables: {m!r} is not run by the text LM (text.lm.methods: {lm_methods})")
    names = audit_tables(config)
    if len(set(names)) != len(names):
        raise ValueError(f"config key audit.run: duplicate table names in {names}")
    for t in names:
        try:
            check_run_spec(audit_spec(config, t))
        except (TypeError, ValueError) as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("config key") else f"config key audit.tables.{t}: {msg}") from None
    if not a.get("posthoc"):
        return
    p = _audit_posthoc(config)
    if p["table"] not in (a.get("tables") or {}) and p["table"] not in names:
        raise ValueError(f"config key audit.posthoc.table: {p['table']!r} is not a table under audit.tables "
                         f"or audit.lm_tables")
    if p["fidelity"] == "none":
        raise ValueError("config key audit.posthoc.fidelity: name a fidelity term (every method also runs without one)")
    for key in p["overrides"]:
        if key not in p["methods"]:
            raise ValueError(f"config key audit.posthoc.overrides.{key}: audit.posthoc does not run variant {key!r} "
                             f"(it runs {p['methods']}), so the override would be ignored; remove it")
    for r in audit_posthoc_runs(config):
        where = f"audit.posthoc ({r['method']}, fidelity {r['fidelity']})"
        try:
            spec = audit_posthoc_spec(config, r["method"], r["fidelity"], r["seed"])
            check_run_spec(spec)
            _build(spec["method"], spec["params"], where)
        except (TypeError, ValueError) as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("config key") else f"config key {where}: {msg}") from None
