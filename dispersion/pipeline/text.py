"""The text experiments in the workflow (arXiv:2502.08231, §4.4): the prepared inputs
(frozen features, tokenised corpus), the classification and language-model runs, the spec of
each (what :func:`dispersion.experiments.text_classify.run` and
:func:`dispersion.experiments.text_lm.run` take, with the seed and the corpus) and paths."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .._config import deep_merge
from ..data.text_inputs import ENCODER_DEFAULTS
from ..experiments import text_classify, text_lm
from .config import method_spec
from .paths import Paths

__all__ = ["CLASSIFY_BASELINES", "LM_BASELINES", "features_spec", "classify_spec", "classify_runs", "corpus_spec",
           "lm_spec", "lm_runs", "TextPaths", "run_specs", "check"]

#: The pseudo-variants of each task, as :func:`~dispersion.pipeline.config.method_spec` takes them.
CLASSIFY_BASELINES = {"softmax": {"method": None, "label": text_classify.BASELINES["softmax"]},
                      "uniform": {"method": "uniform", "label": text_classify.BASELINES["uniform"]}}
LM_BASELINES = {name: {"method": None, "label": label} for name, label in text_lm.BASELINES.items()}


def features_spec(config: dict, dataset: str) -> dict:
    """The spec of the frozen features of one classification dataset (``text.classify.datasets``)."""
    t = config["text"]
    ds = t["classify"]["datasets"]
    if dataset not in ds:
        raise ValueError(f"dataset must be one of the configured text datasets {sorted(ds)}, got {dataset!r}")
    d = ds[dataset] or {}
    return {
        "dataset": dataset,
        "path": d.get("path"),
        "max_train": d.get("max_train"),
        "max_test": d.get("max_test"),
        "subset_seed": d.get("subset_seed", 0),
        "encoder": deep_merge(ENCODER_DEFAULTS, t.get("encoder")),
        "device": config.get("device", "auto"),
    }


def classify_spec(config: dict, dataset: str, dim: int | str, method: str) -> dict:
    """The resolved spec of one classification run from ``config["text"]``.

    ``method`` is ``softmax``, ``uniform`` or a variant of ``config["methods"]`` (updated by
    ``text.classify.overrides[method]``). Raises ``ValueError`` for an unknown dataset or method.
    """
    c = config["text"]["classify"]
    if dataset not in c["datasets"]:
        raise ValueError(f"dataset must be one of {sorted(c['datasets'])}, got {dataset!r}")
    m = method_spec(config, "text.classify", method, CLASSIFY_BASELINES)
    regularizer, params, label = m["method"], m["params"], m["label"]
    d = c["datasets"][dataset] or {}
    return {
        "dataset": dataset,
        "dim": int(dim),
        "method": method,
        "label": label,
        "head": "softmax" if method == "softmax" else "prototype",
        "regularizer": regularizer,
        "params": params,
        "model": deep_merge(deep_merge(text_classify.MODEL_DEFAULTS, c.get("model")), d.get("model")),
        "train": deep_merge(deep_merge(text_classify.TRAIN_DEFAULTS, c.get("train")), d.get("train")),
        "prototypes": deep_merge(deep_merge(text_classify.PROTOTYPE_DEFAULTS, c.get("prototypes")), d.get("prototypes")),
        "device": config.get("device", "auto"),
    }


def classify_runs(config: dict) -> list[dict]:
    """Every (dataset, dim, method, seed) of the classification task, as wildcard dicts."""
    c = config["text"]["classify"]
    seeds = c.get("seeds", config["text"]["seeds"])
    return [{"dataset": ds, "dim": dim, "method": m, "seed": s}
            for ds in c.get("run", list(c["datasets"])) for dim in c["dims"] for m in c["methods"] for s in seeds]


def corpus_spec(config: dict) -> dict:
    """The spec of the tokenised LM corpus (``text.lm``: corpora, tokenizer, vocab)."""
    lm_cfg = config["text"]["lm"]
    enc = deep_merge(ENCODER_DEFAULTS, config["text"].get("encoder"))
    return {
        "corpora": list(lm_cfg.get("corpora", ["rotten_tomatoes_plot", "tweets", "debates"])),
        "tokenizer": lm_cfg.get("tokenizer", "wordpiece"),
        "vocab": deep_merge({"max_size": 30000, "min_count": 2}, lm_cfg.get("vocab")),
        "encoder": enc["name"],
        "paths": lm_cfg.get("paths", {}),
    }


def lm_spec(config: dict, method: str) -> dict:
    """The resolved spec of one LM run (``text.lm``). ``method``: ``none``, ``euclidean`` or a
    variant of ``config["methods"]`` (updated by ``text.lm.overrides[method]``); its λ is
    ``text.lm.lambdas[method]`` where given, else ``text.lm.train.lambda`` (a per-variant λ carries
    the constant factor between the authors' energy and ours, e.g. e^γ for the Gaussian kernel;
    docs/authors-parameters.md)."""
    lm_cfg = config["text"]["lm"]
    m = method_spec(config, "text.lm", method, LM_BASELINES)
    regularizer, params, label = m["method"], m["params"], m["label"]
    train = deep_merge(text_lm.TRAIN_DEFAULTS, lm_cfg.get("train"))
    if method in (lm_cfg.get("lambdas") or {}):
        train["lambda"] = lm_cfg["lambdas"][method]
    if method in lm_cfg.get("full_batch", []):
        train["reg_rows"] = None  # the blocked full-batch energy over every row
    return {
        "method": method,
        "label": label,
        "embedding": "euclidean" if method == "euclidean" else "sphere",
        "regularizer": regularizer,
        "params": params,
        "model": deep_merge(text_lm.MODEL_DEFAULTS, lm_cfg.get("model")),
        "train": train,
        "device": config.get("device", "auto"),
    }


def lm_runs(config: dict) -> list[dict]:
    """Every (method, seed) of the LM task, as wildcard dicts."""
    lm_cfg = config["text"]["lm"]
    return [{"method": m, "seed": s} for m in lm_cfg["methods"] for s in lm_cfg.get("seeds", config["text"]["seeds"])]


class TextPaths(Paths):
    """Output paths of the text experiments under the workflow's roots.

    Classification runs ``{results_dir}/text/classify/runs/{dataset}/d{dim}/{method}/seed{seed}/``,
    LM runs ``{results_dir}/text/lm/runs/{method}/seed{seed}/``; tidy CSVs
    ``{results_dir}/text/text_{classify,lm}_runs.csv``; tables ``{results_dir}/tables/text_*.{md,tex}``;
    figures ``{figures_dir}/text_*.{pdf,png}``. Caches (frozen features per dataset, the
    tokenised LM corpus) go under ``text.cache_dir`` (git-ignored ``data/text`` at paper scale).
    """

    CLASSIFY_TABLES = ("text_classify", "text_classify_prototypes")
    CLASSIFY_FIGURES = ("text_classify_accuracy",)
    LM_TABLES = ("text_lm",)
    LM_FIGURES = ("text_lm_geometry",)

    def __init__(self, config: dict):
        super().__init__(config)
        self.results = config["results_dir"]
        self.figures = config["figures_dir"]
        self.text_dir = str(Path(self.results) / "text")
        self.cache = config.get("text", {}).get("cache_dir", "data/text")

    def features(self, dataset: str = "{dataset}") -> str:
        return str(Path(self.cache) / "features" / f"{dataset}.pt")

    def corpus(self) -> str:
        return str(Path(self.cache) / "lm_corpus.pt")

    def classify_run_dir(self, **w) -> str:
        p = str(Path(self.text_dir) / "classify" / "runs" / "{dataset}" / "d{dim}" / "{method}" / "seed{seed}")
        return p.format(**w) if w else p

    def lm_run_dir(self, **w) -> str:
        p = str(Path(self.text_dir) / "lm" / "runs" / "{method}" / "seed{seed}")
        return p.format(**w) if w else p

    def lm_outputs(self) -> dict[str, str]:
        """The declared outputs of one LM run (wildcard patterns): ``summary``, ``metrics`` and,
        unless ``text.lm.save_embedding`` is false, ``embedding`` (the trained table)."""
        d = self.lm_run_dir()
        out = {"summary": os.path.join(d, "summary.json"), "metrics": os.path.join(d, "metrics.jsonl")}
        if self.config["text"]["lm"].get("save_embedding", True):
            out["embedding"] = os.path.join(d, "embedding.pt")
        return out

    def classify_summaries(self, wildcards=None) -> list[str]:
        return [str(Path(self.classify_run_dir(**r)) / "summary.json") for r in classify_runs(self.config)]

    def lm_summaries(self, wildcards=None) -> list[str]:
        return [str(Path(self.lm_run_dir(**r)) / "summary.json") for r in lm_runs(self.config)]

    def report_outputs(self, task: str) -> dict:
        """``{"csv": path, "tables": [...], "figures": [...]}`` of the report of ``task``
        (``"classify"`` or ``"lm"``)."""
        if task not in ("classify", "lm"):
            raise ValueError(f"task must be 'classify' or 'lm', got {task!r}")
        tables, figures = ((self.CLASSIFY_TABLES, self.CLASSIFY_FIGURES) if task == "classify"
                           else (self.LM_TABLES, self.LM_FIGURES))
        return {
            "csv": str(Path(self.text_dir) / f"text_{task}_runs.csv"),
            "tables": [str(Path(self.results) / "tables" / f"{t}.{e}") for t in tables for e in ("md", "tex")],
            "figures": [str(Path(self.figures) / f"{f}.{e}") for f in figures for e in ("pdf", "png")],
        }

    def outputs(self, tasks=("classify", "lm")) -> list[str]:
        """Every target of ``rule all`` for ``tasks`` (``"classify"``, ``"lm"``; empty without a
        ``text`` section)."""
        if "text" not in self.config:
            return []
        out: list[str] = []
        for task in tasks:
            r = self.report_outputs(task)
            out += [r["csv"], *r["tables"], *r["figures"]]
        return out


def run_specs(config: dict) -> dict[str, dict]:
    """Every text run as its ``summary.json`` path → the spec the run records (the spec + the
    seed; for the LM also the corpus file)."""
    out: dict[str, dict] = {}
    if not config.get("text"):
        return out
    tp = TextPaths(config)

    def put(run_dir: str, spec: dict) -> None:
        out[os.path.normpath(os.path.join(run_dir, "summary.json"))] = spec

    if config["text"].get("classify"):
        for r in classify_runs(config):
            put(tp.classify_run_dir(**r), {**classify_spec(config, r["dataset"], r["dim"], r["method"]), "seed": r["seed"]})
    if config["text"].get("lm"):
        for r in lm_runs(config):
            put(tp.lm_run_dir(**r), {**lm_spec(config, r["method"]), "seed": r["seed"], "corpus": tp.corpus()})
    return out


def check(config: dict) -> None:
    """Raise ``ValueError`` naming the key if a text method or dataset is unknown, or a variant's
    parameters (with the text overrides) do not build a regularizer (part of
    :func:`dispersion.pipeline.config.check_config`)."""
    from ..data.text import DATASETS
    from ..regularizers import build

    t = config.get("text")
    if not t:
        return
    for task, baselines in (("classify", CLASSIFY_BASELINES), ("lm", LM_BASELINES)):
        sec = t.get(task)
        if not sec:
            continue
        for m in sec.get("methods", []):
            try:
                v = method_spec(config, f"text.{task}", m, baselines)
                if v["method"] is not None and v["method"] != "uniform":
                    build(v["method"], **v["params"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"config key text.{task}.methods: {m}: {e}") from None
        for key in sec.get("overrides", {}):
            if key not in config.get("methods", {}):
                raise ValueError(f"config key text.{task}.overrides.{key}: not a variant defined under methods:")
    for key, lam in ((t.get("lm") or {}).get("lambdas") or {}).items():
        if key not in config.get("methods", {}):
            raise ValueError(f"config key text.lm.lambdas.{key}: not a variant defined under methods:")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"config key text.lm.lambdas.{key}: must be a finite number >= 0, got {lam!r}")
    cl = t.get("classify") or {}
    for ds in cl.get("datasets", {}):
        if ds not in DATASETS:
            raise ValueError(f"config key text.classify.datasets.{ds}: unknown dataset (known: {list(DATASETS)})")
    for ds in cl.get("run", []):
        if ds not in cl.get("datasets", {}):
            raise ValueError(f"config key text.classify.run: {ds!r} has no entry under text.classify.datasets")
    for ds in (t.get("lm") or {}).get("corpora", []):
        from ..data.text import LOCAL_DATASETS

        if ds not in LOCAL_DATASETS:
            raise ValueError(f"config key text.lm.corpora: {ds!r} is not a local corpus ({list(LOCAL_DATASETS)})")
