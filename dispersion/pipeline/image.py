"""The image experiment in the workflow (arXiv:2502.08231, §4.3): its runs, the spec of each
(what :func:`dispersion.experiments.image.run` takes, with the seed) and paths."""

from __future__ import annotations

import os

from .._config import deep_merge
from ..experiments.image import DATASETS, TRAIN_DEFAULTS
from .config import method_spec
from .paths import Paths

__all__ = ["MATCHED_SUFFIX", "image_variants", "image_runs", "run_spec", "matched_base", "ImagePaths",
           "check_imagenet200", "run_specs"]

#: The ``method`` wildcard of a variant whose classes are matched to the softmax run's layout.
MATCHED_SUFFIX = "_matched"


def image_variants(config: dict) -> list[str]:
    """The ``method`` wildcard values of the image experiment: ``softmax`` (when
    ``image.softmax_baseline``), ``image.methods`` (``uniform`` and variants), then
    ``<variant>_matched`` for each variant of ``image.matched`` (its prototypes assigned to the
    classes by the softmax run's class layout, :func:`dispersion.prototypes.match_prototypes`)."""
    img = config["image"]
    return ((["softmax"] if img.get("softmax_baseline", True) else []) + list(img["methods"])
            + [f"{v}{MATCHED_SUFFIX}" for v in img.get("matched") or []])


def matched_base(method: str) -> str | None:
    """The variant a ``<variant>_matched`` method wildcard matches, else None."""
    return method[: -len(MATCHED_SUFFIX)] if method.endswith(MATCHED_SUFFIX) else None


def image_runs(config: dict, dataset: str | None = None) -> list[dict]:
    """Every (dataset, dim, method, seed) of the image experiment as wildcard dicts: the
    datasets of ``image.run`` (or only ``dataset``), their ``dims``, :func:`image_variants`,
    ``image.seeds``."""
    img = config["image"]
    names = [dataset] if dataset is not None else list(img.get("run", []))
    runs = []
    for name in names:
        if name not in img.get("datasets", {}):
            raise ValueError(f"config key image.datasets has no entry {name!r} (defined: {sorted(img.get('datasets', {}))})")
        for dim in img["datasets"][name]["dims"]:
            for method in image_variants(config):
                for seed in img["seeds"]:
                    runs.append({"dataset": name, "dim": int(dim), "method": method, "seed": int(seed)})
    return runs


def run_spec(config: dict, dataset: str, dim: int | str, method: str) -> dict:
    """The resolved spec of one image run from the workflow ``config`` (its ``image`` and
    ``methods`` sections) — only the keys this run uses, so Snakemake reruns it exactly when
    one of them changes.

    ``method`` is ``softmax``, ``uniform`` or a variant name of ``config["methods"]`` (resolved
    by :func:`dispersion.pipeline.config.method_spec`, which applies ``image.overrides``), or
    ``<variant>_matched`` for a variant of ``image.matched`` (``assignment: class_means``: the
    run needs the ``class_means.pt`` of the softmax run of the same dataset, D and seed).
    Dataset settings (``image.datasets.<dataset>``: ``path``, ``train_per_class``,
    ``test_per_class``, ``subset_seed``, ``augment``, and ``train``/``model``/``prototypes``
    overrides) are merged over the experiment-wide ``train``, ``model`` and ``prototypes``.

    Raises ``ValueError`` for an unknown dataset or method.
    """
    img = config["image"]
    if dataset not in DATASETS or dataset not in img.get("datasets", {}):
        raise ValueError(f"dataset must be one of the configured image datasets {sorted(img.get('datasets', {}))}, got {dataset!r}")
    ds = img["datasets"][dataset]
    base, assignment = matched_base(method), "index"
    if base is not None:
        if base not in (img.get("matched") or []):
            raise ValueError(f"method {method!r}: {base!r} is not in the config's image.matched {img.get('matched') or []}")
        if not img.get("softmax_baseline", True):
            raise ValueError("config key image.matched needs image.softmax_baseline (the class layout comes from the softmax runs)")
        assignment = "class_means"
    if method == "softmax":
        regularizer, params, label = None, {}, "Softmax CE"
    else:
        m = method_spec(config, "image", base or method)
        regularizer, params, label = m["method"], m["params"], m["label"]
        label += ", classes matched" if base else ""
    return {
        "dataset": dataset,
        "dim": int(dim),
        "method": method,
        "label": label,
        "head": "softmax" if method == "softmax" else "prototype",
        "assignment": assignment,
        "regularizer": regularizer,
        "params": params,
        "device": config.get("device", "auto"),
        "data": {
            "cache_dir": img.get("data_dir", "data"),
            "path": ds.get("path"),
            "train_per_class": ds.get("train_per_class"),
            "test_per_class": ds.get("test_per_class"),
            "subset_seed": ds.get("subset_seed", 0),
            "augment": ds.get("augment", {"padding": 0, "hflip": False}),
        },
        "model": deep_merge(img.get("model", {}), ds.get("model")),
        "train": deep_merge(deep_merge(TRAIN_DEFAULTS, img.get("train")), ds.get("train")),
        "prototypes": deep_merge(img.get("prototypes", {}), ds.get("prototypes")),
    }


class ImagePaths(Paths):
    """Output paths of the image experiment under the workflow's roots.

    Runs: ``{results_dir}/image/runs/{dataset}/d{dim}/{method}/seed{seed}/``; the tidy CSV
    ``{results_dir}/image/{dataset}_runs.csv``; tables ``{results_dir}/tables/image_{dataset}_*``
    (.md, .tex); figures ``{figures_dir}/image_{dataset}_*`` (.pdf, .png).
    """

    TABLES = ("accuracy", "min_angle", "per_class")
    FIGURES = ("accuracy_vs_dim", "min_angle_vs_accuracy")

    def run_dir(self, **wildcards) -> str:
        p = self.res("image", "runs", "{dataset}", "d{dim}", "{method}", "seed{seed}")
        return p.format(**wildcards) if wildcards else p

    def layout_run(self, **wildcards) -> str | None:
        """The run directory whose ``class_means.pt`` a ``<variant>_matched`` run reads (the
        softmax run of the same dataset, D and seed); None for other runs."""
        if matched_base(wildcards["method"]) is None:
            return None
        return self.run_dir(**{**wildcards, "method": "softmax"})

    def summaries(self, dataset: str) -> list[str]:
        return [os.path.join(self.run_dir(**r), "summary.json") for r in image_runs(self.config, dataset)]

    def runs_csv(self, dataset: str = "{dataset}") -> str:
        return self.res("image", f"{dataset}_runs.csv")

    def table_prefix(self, dataset: str = "{dataset}") -> str:
        return self.res("tables", f"image_{dataset}_")

    def figure_prefix(self, dataset: str = "{dataset}") -> str:
        return self.fig(f"image_{dataset}_")

    def report_outputs(self, dataset: str = "{dataset}") -> list[str]:
        out = [self.runs_csv(dataset)]
        out += [f"{self.table_prefix(dataset)}{n}.{e}" for n in self.TABLES for e in ("md", "tex")]
        out += [f"{self.figure_prefix(dataset)}{n}.{e}" for n in self.FIGURES for e in ("pdf", "png")]
        return out

    def outputs(self) -> list[str]:
        """Every target of ``rule all``: the report outputs of each dataset in ``image.run``."""
        if "image" not in self.config:
            return []
        return [p for d in self.config["image"].get("run", []) for p in self.report_outputs(d)]


def check_imagenet200(config: dict) -> str:
    """The configured ImageNet-200 folder; ``FileNotFoundError`` (where to put it, where it
    comes from) when it is not set or incomplete. Used by the optional workflow target."""
    from ..data.images import imagenet200_dirs

    path = config["image"].get("datasets", {}).get("imagenet200", {}).get("path")
    imagenet200_dirs(path)
    return path


def run_specs(config: dict) -> dict[str, dict]:
    """Every image run as its ``summary.json`` path → the spec the run records (+ the seed)."""
    if not config.get("image"):
        return {}
    ip = ImagePaths(config)
    return {os.path.normpath(os.path.join(ip.run_dir(**r), "summary.json")):
            {**run_spec(config, r["dataset"], r["dim"], r["method"]), "seed": r["seed"]} for r in image_runs(config)}
