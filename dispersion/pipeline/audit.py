"""The audit experiment in the workflow (issue 13): the tables it audits, the post-hoc
dispersion study, the spec of each run (what :func:`dispersion.experiments.audit.run` takes) and
paths."""

from __future__ import annotations

import os

from .._config import deep_merge
from ..experiments.audit import check_run_spec
from .config import build_checked
from .paths import Paths
from .text import TextPaths, lm_runs

__all__ = ["AUDIT_TABLE_SETTINGS", "AUDIT_DEFAULTS", "AUDIT_POSTHOC_DEFAULTS", "scale_name", "audit_tables",
           "audit_source", "audit_embed_spec", "audit_spec", "audit_posthoc_runs", "audit_posthoc_spec",
           "AuditPaths", "run_specs", "check"]

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


class AuditPaths(Paths):
    """Output paths of the audit experiment: runs ``{results_dir}/audit/runs/{table}/`` and
    ``{results_dir}/audit/posthoc/runs/{method}/{fidelity}/seed{seed}/``; tables
    ``{results_dir}/tables/audit_{table}.{md,tex}`` and ``audit_posthoc.{md,tex}``; figures
    ``{figures_dir}/audit_{table}_{nn_angles,pca,tsne}.{pdf,png}`` and
    ``audit_posthoc_tradeoff.{pdf,png}``; encoded MiniLM tables under ``audit.cache_dir``."""

    FIGURES = ("nn_angles", "pca", "tsne")

    def embedding(self, table: str = "{table}") -> str:
        return os.path.join(_audit_section(self.config)["cache_dir"], f"{table}.pt")

    def run_dir(self, table: str = "{table}") -> str:
        return self.res("audit", "runs", table)

    def figure_prefix(self, table: str = "{table}") -> str:
        return self.fig(f"audit_{table}_")

    def figures(self, table: str = "{table}") -> list[str]:
        return [f"{self.figure_prefix(table)}{f}.{e}" for f in self.FIGURES for e in ("pdf", "png")]

    def audit_table(self, table: str = "{table}") -> dict:
        """``{"md": ..., "tex": ...}`` of the table of the audit of ``table``."""
        return self.table(f"audit_{table}")

    def run_input(self, table: str) -> list[str]:
        """The file the audit of ``table`` reads ([] for GloVe, read from its package)."""
        _, path, _ = audit_source(self.config, table)
        return [path] if path else []

    def posthoc_run_dir(self, **w) -> str:
        p = self.res("audit", "posthoc", "runs", "{method}", "{fidelity}", "seed{seed}")
        return p.format(**w) if w else p

    def posthoc_summaries(self, wildcards=None) -> list[str]:
        return [os.path.join(self.posthoc_run_dir(**r), "summary.json") for r in audit_posthoc_runs(self.config)]

    def posthoc_input(self) -> list[str]:
        """The file the post-hoc runs read ([] without a post-hoc study or for GloVe)."""
        return self.run_input(_audit_posthoc(self.config)["table"]) if audit_posthoc_runs(self.config) else []

    def posthoc_outputs(self) -> dict:
        return {"csv": self.res("audit", "posthoc_runs.csv"), **self.table("audit_posthoc"),
                "figure": [self.fig(f"audit_posthoc_tradeoff.{e}") for e in ("pdf", "png")]}

    def outputs(self) -> list[str]:
        """Every target of ``rule all`` (empty without an ``audit`` section)."""
        out: list[str] = []
        for t in audit_tables(self.config):
            out += [*self.audit_table(t).values(), *self.figures(t)]
        if audit_posthoc_runs(self.config):
            o = self.posthoc_outputs()
            out += [o["csv"], o["md"], o["tex"], *o["figure"]]
        return out


def check(config: dict) -> None:
    """Raise ``ValueError`` naming the key for what the schema cannot check in ``audit``: every
    table of ``audit.run`` is defined and names a known dataset, every ``audit.lm_tables`` method
    is run by the text LM, the post-hoc table exists, every post-hoc variant exists and builds
    with its overrides, an override names a variant the study runs, and every run's spec passes
    the checks of :func:`dispersion.experiments.audit.run` — before any job starts (part of
    :func:`dispersion.pipeline.checks.check_config`)."""
    a = config.get("audit")
    if not a:
        return
    from ..data.text import DATASETS

    for name, e in (a.get("tables") or {}).items():
        if e.get("type") == "minilm" and e.get("dataset") not in DATASETS:
            raise ValueError(f"config key audit.tables.{name}.dataset: unknown dataset {e.get('dataset')!r} "
                             f"(known: {list(DATASETS)})")
    lm_cfg = (config.get("text") or {}).get("lm") or {}
    lm_methods = lm_cfg.get("methods", [])
    for m in a.get("lm_tables", []):
        if m not in lm_methods:
            raise ValueError(f"config key audit.lm_tables: {m!r} is not run by the text LM (text.lm.methods: {lm_methods})")
    if a.get("lm_tables") and not lm_cfg.get("save_embedding", True):
        raise ValueError("config key audit.lm_tables: the LM runs keep no trained table (text.lm.save_embedding is "
                         "false); set it true or empty audit.lm_tables")
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
            build_checked(spec["method"], spec["params"], where)
        except (TypeError, ValueError) as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("config key") else f"config key {where}: {msg}") from None


def run_specs(config: dict) -> dict[str, dict]:
    """Every audit and post-hoc run as its ``summary.json`` path → the spec the run records."""
    out: dict[str, dict] = {}
    if not config.get("audit"):
        return out
    ap = AuditPaths(config)
    for table in audit_tables(config):
        out[os.path.normpath(os.path.join(ap.run_dir(table), "summary.json"))] = audit_spec(config, table)
    for r in audit_posthoc_runs(config):
        out[os.path.normpath(os.path.join(ap.posthoc_run_dir(**r), "summary.json"))] = audit_posthoc_spec(config, **r)
    return out
