"""The translation experiment in the workflow (arXiv:2502.08231, machine translation): the
tokenised corpus, the runs the config asks for (methods × seeds at the paper's λ, and a λ sweep of
one method), the spec of each (what :func:`dispersion.experiments.nmt.run` takes, with the seed
and the corpus), the output paths and the config checks.

Run names (the ``method`` wildcard): a method of ``nmt.methods`` (``euclidean``, ``none`` or a
variant of ``methods:``) runs at its λ — ``nmt.lambdas[<variant>]`` where given, else
``nmt.train.lambda``; a point of the sweep ``nmt.lambda_sweep`` that differs from its method's λ
is the run ``<method>_lambda<tag>`` (:func:`lambda_tag`: ``1``, ``100``, ``0p1``), at the sweep's
seeds. The sweep point at the method's own λ is the main grid's run, not a second one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .._config import deep_merge
from ..experiments import nmt
from .config import method_spec
from .paths import Paths

__all__ = ["NMT_BASELINES", "lambda_tag", "nmt_variants", "corpus_spec", "nmt_spec", "nmt_runs", "sweep_runs",
           "NmtPaths", "run_specs", "check"]

#: The pseudo-variants, as :func:`~dispersion.pipeline.config.method_spec` takes them.
NMT_BASELINES = {name: {"method": None, "label": label} for name, label in nmt.BASELINES.items()}
#: Defaults of ``nmt.data`` and ``nmt.vocab``.
DATA_DEFAULTS = {"path": None, "cache_dir": "data/multi30k", "download": True, "max_train": None, "max_val": None,
                 "max_test": None}
VOCAB_DEFAULTS = {"size": 16000, "min_frequency": 0}


def lambda_tag(lam: float) -> str:
    """A wildcard-safe short name of λ: ``1``, ``100``, ``2p5``, ``0p1`` (``.`` → ``p``)."""
    text = f"{float(lam):g}"
    if "e" in text:
        raise ValueError(f"lambda {lam!r} needs an exponent; use a value between 1e-4 and 1e6")
    return text.replace(".", "p")


def _main_lambda(n: dict, method: str) -> float:
    """The λ of ``method``'s main-grid runs."""
    lams = n.get("lambdas") or {}
    return float(lams[method]) if method in lams else float(deep_merge(nmt.TRAIN_DEFAULTS, n.get("train"))["lambda"])


def nmt_variants(config: dict) -> dict[str, tuple[str, float]]:
    """Every run name of ``nmt`` → (method, λ): the methods at their λ, then the sweep points that
    differ from their method's λ (module docstring), in config order."""
    n = config["nmt"]
    out = {m: (m, _main_lambda(n, m)) for m in n["methods"]}
    sw = n.get("lambda_sweep")
    if sw:
        m = sw["method"]
        for lam in sw["lambdas"]:
            if float(lam) != _main_lambda(n, m):
                out[f"{m}_lambda{lambda_tag(lam)}"] = (m, float(lam))
    return out


def corpus_spec(config: dict) -> dict:
    """The spec of the tokenised corpus (:func:`dispersion.data.multi30k.prepare_corpus`)."""
    n = config["nmt"]
    vocab = deep_merge(VOCAB_DEFAULTS, n.get("vocab"))
    return {"src": n.get("src", "en"), "tgt": n.get("tgt", "de"), "vocab_size": int(vocab["size"]),
            "min_frequency": int(vocab["min_frequency"]), "data": deep_merge(DATA_DEFAULTS, n.get("data"))}


def nmt_spec(config: dict, name: str) -> dict:
    """The resolved spec of one run (``nmt``; ``name`` a key of :func:`nmt_variants`): the method
    (``none``, ``euclidean`` or a variant of ``config["methods"]``, updated by
    ``nmt.overrides[variant]``) at its λ (the sweep's, or ``nmt.lambdas[variant]``, else
    ``nmt.train.lambda``; a per-variant λ carries the constant factor between the authors' energy
    and ours, e.g. e^γ for the Gaussian kernel). Raises ``ValueError`` naming the key for an
    unknown name."""
    n = config["nmt"]
    variants = nmt_variants(config)
    if name not in variants:
        raise ValueError(f"config key nmt: {name!r} is neither a method of nmt.methods nor a point of "
                         f"nmt.lambda_sweep (runs: {sorted(variants)})")
    method, lam = variants[name]
    m = method_spec(config, "nmt", method, NMT_BASELINES)
    train = deep_merge(nmt.TRAIN_DEFAULTS, n.get("train"))
    train["lambda"] = lam
    label = m["label"] if name == method else f"{m['label']}, λ = {lam:g}"
    return {
        "method": name,
        "label": label,
        "embedding": "euclidean" if method == "euclidean" else "sphere",
        "regularizer": m["method"],
        "params": m["params"],
        "model": deep_merge(nmt.MODEL_DEFAULTS, n.get("model")),
        "train": train,
        "decode": deep_merge(nmt.DECODE_DEFAULTS, n.get("decode")),
        "device": config.get("device", "auto"),
    }


def nmt_runs(config: dict) -> list[dict]:
    """Every (method, seed) of ``nmt`` as wildcard dicts: the methods × ``nmt.seeds``, then the
    extra sweep points × ``nmt.lambda_sweep.seeds`` (default: ``nmt.seeds``)."""
    n = config["nmt"]
    seeds = n["seeds"]
    runs = [{"method": m, "seed": s} for m in n["methods"] for s in seeds]
    sw = n.get("lambda_sweep")
    if sw:
        extra = [v for v in nmt_variants(config) if v not in n["methods"]]
        runs += [{"method": v, "seed": s} for v in extra for s in sw.get("seeds", seeds)]
    return runs


def sweep_runs(config: dict) -> list[dict]:
    """The runs of the λ sweep (its method at each λ, at the sweep's seeds; the main grid's run
    stands for the method's own λ), as wildcard dicts with ``lambda``; [] without a sweep."""
    n = config["nmt"]
    sw = n.get("lambda_sweep")
    if not sw:
        return []
    seeds = sw.get("seeds", n["seeds"])
    out = []
    for name, (m, lam) in nmt_variants(config).items():
        if m == sw["method"] and lam in [float(v) for v in sw["lambdas"]]:
            out += [{"method": name, "seed": s, "lambda": lam} for s in seeds]
    return out


class NmtPaths(Paths):
    """Output paths of the translation experiment under the workflow's roots.

    Runs ``{results_dir}/nmt/runs/{method}/seed{seed}/`` (``summary.json``, ``metrics.jsonl``);
    the tidy CSV ``{results_dir}/nmt/nmt_runs.csv``; tables ``{results_dir}/tables/nmt{,_lambda}.{md,tex}``;
    figures ``{figures_dir}/nmt_{min_angle,lambda}.{pdf,png}``. The tokenised corpus goes under
    ``nmt.cache_dir`` (git-ignored ``data/nmt`` at paper scale).
    """

    TABLES = ("nmt", "nmt_lambda")
    FIGURES = ("nmt_min_angle", "nmt_lambda")

    def __init__(self, config: dict):
        super().__init__(config)
        self.nmt_dir = str(Path(config["results_dir"]) / "nmt")
        self.cache = (config.get("nmt") or {}).get("cache_dir", "data/nmt")

    def corpus(self) -> str:
        return str(Path(self.cache) / "corpus.pt")

    def run_dir(self, **w) -> str:
        p = str(Path(self.nmt_dir) / "runs" / "{method}" / "seed{seed}")
        return p.format(**w) if w else p

    def run_outputs(self) -> dict[str, str]:
        """The declared outputs of one run (wildcard patterns): ``summary`` and ``metrics``."""
        d = self.run_dir()
        return {"summary": os.path.join(d, "summary.json"), "metrics": os.path.join(d, "metrics.jsonl")}

    def summaries(self, wildcards=None) -> list[str]:
        return [str(Path(self.run_dir(**r)) / "summary.json") for r in nmt_runs(self.config)]

    def report_outputs(self) -> dict:
        """``{"csv": path, "tables": [...], "figures": [...]}`` of the report."""
        return {
            "csv": str(Path(self.nmt_dir) / "nmt_runs.csv"),
            "tables": [str(Path(self.config["results_dir"]) / "tables" / f"{t}.{e}") for t in self.TABLES
                       for e in ("md", "tex")],
            "figures": [str(Path(self.config["figures_dir"]) / f"{f}.{e}") for f in self.FIGURES
                        for e in ("pdf", "png")],
        }

    def outputs(self) -> list[str]:
        """Every target of ``rule all`` (empty without an ``nmt`` section)."""
        if not self.config.get("nmt"):
            return []
        r = self.report_outputs()
        return [r["csv"], *r["tables"], *r["figures"]]


def run_specs(config: dict) -> dict[str, dict]:
    """Every translation run as its ``summary.json`` path → the spec the run records (the spec +
    the seed and the corpus file)."""
    if not config.get("nmt"):
        return {}
    paths = NmtPaths(config)
    return {os.path.normpath(os.path.join(paths.run_dir(**r), "summary.json")):
            {**nmt_spec(config, r["method"]), "seed": r["seed"], "corpus": paths.corpus()} for r in nmt_runs(config)}


def check(config: dict) -> None:
    """Raise ``ValueError`` naming the key if a method is unknown or its parameters (with the
    overrides) do not build a regularizer, an override or a per-variant λ names a variant that
    ``nmt`` does not define, the λ sweep is malformed, or a run's spec fails the run's own checks
    (part of :func:`dispersion.pipeline.checks.check_config`)."""
    from ..regularizers import build

    n = config.get("nmt")
    if not n:
        return
    for m in n.get("methods", []):
        try:
            v = method_spec(config, "nmt", m, NMT_BASELINES)
            if v["method"] is not None:
                build(v["method"], **v["params"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"config key nmt.methods: {m}: {e}") from None
    for key in n.get("overrides") or {}:
        if key not in config.get("methods", {}):
            raise ValueError(f"config key nmt.overrides.{key}: not a variant defined under methods:")
    for key, lam in (n.get("lambdas") or {}).items():
        if key not in config.get("methods", {}):
            raise ValueError(f"config key nmt.lambdas.{key}: not a variant defined under methods:")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"config key nmt.lambdas.{key}: must be a finite number >= 0, got {lam!r}")
    sw = n.get("lambda_sweep")
    if sw:
        if sw["method"] not in n.get("methods", []):
            raise ValueError(f"config key nmt.lambda_sweep.method: {sw['method']!r} is not one of nmt.methods "
                             f"{n.get('methods', [])} (the sweep's point at its own λ is that method's run)")
        if sw["method"] in NMT_BASELINES:
            raise ValueError(f"config key nmt.lambda_sweep.method: {sw['method']!r} has no regularizer to weigh")
        for lam in sw["lambdas"]:
            try:
                lambda_tag(lam)
            except ValueError as e:
                raise ValueError(f"config key nmt.lambda_sweep.lambdas: {e}") from None
    for r in nmt_runs(config):
        try:
            nmt.resolve({**nmt_spec(config, r["method"]), "seed": r["seed"], "corpus": "corpus.pt"})
        except ValueError as e:
            raise ValueError(f"config key nmt ({r['method']} seed {r['seed']}): {e}") from None
