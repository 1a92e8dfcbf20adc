"""Image classification with hyperspherical prototypes (Tokarchuk et al., arXiv:2502.08231;
Hyperspherical Prototype Networks, Mettes et al. 2019).

One run = one (dataset, D, method, seed):

1. **Prototypes** (methods other than ``softmax``): C points on S^{D−1} placed by one
   dispersion method alone (:func:`dispersion.prototypes.place_prototypes`, full batch,
   Riemannian Adam); ``uniform`` keeps the random initial points (no dispersion); ``mmcs`` is
   HPN's own prototype loss. Their ``min_angle`` and ``circular_variance`` are recorded and the
   prototypes saved as ``prototypes.pt``.
2. **Training**: a CIFAR-style ResNet (:mod:`dispersion.models.resnet`) mapping an image to R^D,
   trained with the HPN loss Σ (1 − cos(f(x), p_y))² against the fixed prototypes, or, for the
   ``softmax`` baseline, the same network followed by a C-way linear layer with softmax
   cross-entropy (:mod:`dispersion.training`).
3. **Evaluation**: top-1 accuracy on the test split after the last epoch (no model selection
   on the test set).

Writes ``metrics.jsonl`` (one row per epoch), ``summary.json`` (resolved spec, seed, versions,
device, wall time; ``final`` = accuracies, prototype geometry, timings) and ``prototypes.pt``
into the run directory. :func:`run_spec` builds the spec of a run from the workflow config;
:func:`add_image_commands` adds ``image-run`` and ``image-report`` to the command line.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .._config import deep_merge

__all__ = [
    "DATASETS",
    "ImagePaths",
    "image_variants",
    "image_runs",
    "run_spec",
    "check_imagenet200",
    "run",
    "add_image_commands",
]

#: dataset name -> (classes, input channels, image side in pixels).
DATASETS = {
    "fashion_mnist": (10, 1, 28),
    "cifar100": (100, 3, 32),
    "imagenet200": (200, 3, 64),
}

_TRAIN_DEFAULTS = {
    "epochs": 250,
    "batch_size": 128,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "milestones": [100, 200],
    "gamma": 0.1,
    "amp": True,
    "channels_last": True,
    "eval_every": 10,
    "eval_batch_size": 1000,
    "prototype_reduction": "sum",
    "num_workers": 8,
}
_REQUIRED = ("dataset", "dim", "method", "head", "regularizer", "params", "data", "model", "train", "prototypes")




def image_variants(config: dict) -> list[str]:
    """The ``method`` wildcard values of the image experiment: ``softmax`` (when
    ``image.softmax_baseline``) followed by ``image.methods`` (``uniform`` and variants)."""
    img = config["image"]
    return (["softmax"] if img.get("softmax_baseline", True) else []) + list(img["methods"])


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
    by :func:`dispersion.workflow_helpers.method_spec`, which applies ``image.overrides``).
    Dataset settings (``image.datasets.<dataset>``: ``path``, ``train_per_class``,
    ``test_per_class``, ``subset_seed``, ``augment``, and ``train``/``model``/``prototypes``
    overrides) are merged over the experiment-wide ``train``, ``model`` and ``prototypes``.

    Raises ``ValueError`` for an unknown dataset and ``KeyError`` for an unknown method.
    """
    img = config["image"]
    if dataset not in DATASETS or dataset not in img.get("datasets", {}):
        raise ValueError(f"dataset must be one of the configured image datasets {sorted(img.get('datasets', {}))}, got {dataset!r}")
    ds = img["datasets"][dataset]
    if method == "softmax":
        regularizer, params, label = None, {}, "Softmax CE"
    else:
        from ..workflow_helpers import method_spec

        m = method_spec(config, "image", method)
        regularizer, params, label = m["method"], m["params"], m["label"]
    return {
        "dataset": dataset,
        "dim": int(dim),
        "method": method,
        "label": label,
        "head": "softmax" if method == "softmax" else "prototype",
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
        "train": deep_merge(deep_merge(_TRAIN_DEFAULTS, img.get("train")), ds.get("train")),
        "prototypes": deep_merge(img.get("prototypes", {}), ds.get("prototypes")),
    }


class ImagePaths:
    """Output paths of the image experiment under the workflow's roots.

    Runs: ``{results_dir}/image/runs/{dataset}/d{dim}/{method}/seed{seed}/``; the tidy CSV
    ``{results_dir}/image/{dataset}_runs.csv``; tables ``{results_dir}/tables/image_{dataset}_*``
    (.md, .tex); figures ``{figures_dir}/image_{dataset}_*`` (.pdf, .png).
    """

    TABLES = ("accuracy", "min_angle")
    FIGURES = ("accuracy_vs_dim", "min_angle_vs_accuracy")

    def __init__(self, config: dict):
        self.config = config
        self.results = config["results_dir"]
        self.figures = config["figures_dir"]

    def run_dir(self, **wildcards) -> str:
        p = os.path.join(self.results, "image", "runs", "{dataset}", "d{dim}", "{method}", "seed{seed}")
        return p.format(**wildcards) if wildcards else p

    def summaries(self, dataset: str) -> list[str]:
        return [os.path.join(self.run_dir(**r), "summary.json") for r in image_runs(self.config, dataset)]

    def runs_csv(self, dataset: str = "{dataset}") -> str:
        return os.path.join(self.results, "image", f"{dataset}_runs.csv")

    def table_prefix(self, dataset: str = "{dataset}") -> str:
        return os.path.join(self.results, "tables", f"image_{dataset}_")

    def figure_prefix(self, dataset: str = "{dataset}") -> str:
        return os.path.join(self.figures, f"image_{dataset}_")

    def table(self, dataset: str, name: str, ext: str) -> str:
        return f"{self.table_prefix(dataset)}{name}.{ext}"

    def figure(self, dataset: str, name: str, ext: str) -> str:
        return f"{self.figure_prefix(dataset)}{name}.{ext}"

    def report_outputs(self, dataset: str = "{dataset}") -> list[str]:
        out = [self.runs_csv(dataset)]
        out += [self.table(dataset, n, e) for n in self.TABLES for e in ("md", "tex")]
        out += [self.figure(dataset, n, e) for n in self.FIGURES for e in ("pdf", "png")]
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


def _build_loaders(spec: dict, device, seed: int):
    """(train_loader, test_loader, info) for the spec's dataset, on ``device``."""
    import torch

    from ..data import images
    from ..training import TensorLoader

    dset, d, tr = spec["dataset"], spec["data"], spec["train"]
    mean, std = images.NORMALIZATION[dset]
    aug = d.get("augment") or {}
    gen = torch.Generator().manual_seed(seed)
    if dset == "imagenet200":
        from torch.utils.data import DataLoader
        from torchvision import transforms as T

        norm = T.Normalize(mean, std)
        train_tf = [T.RandomCrop(64, aug.get("padding", 0))] if aug.get("padding", 0) else []
        train_tf += [T.RandomHorizontalFlip()] if aug.get("hflip") else []
        train_ds, test_ds = images.imagenet200_datasets(
            d.get("path"), T.Compose([*train_tf, T.ToTensor(), norm]), T.Compose([T.ToTensor(), norm])
        )
        kw = {"num_workers": int(tr["num_workers"]), "pin_memory": device.type == "cuda",
              "persistent_workers": int(tr["num_workers"]) > 0}
        train = DataLoader(train_ds, batch_size=tr["batch_size"], shuffle=True, generator=gen, drop_last=False, **kw)
        test = DataLoader(test_ds, batch_size=tr["eval_batch_size"], shuffle=False, **kw)
        return train, test, {"n_train": len(train_ds), "n_test": len(test_ds), "n_classes": len(train_ds.classes),
                             "data_source": f"imagenet200:{d.get('path')}"}
    load_kw = {"download": d.get("download", True)}
    if dset == "fashion_mnist":
        load_kw["check_md5"] = d.get("check_md5", True)
    train_split, test_split = images.load_image_dataset(dset, d.get("cache_dir", "data"), d.get("path"), **load_kw)
    if d.get("train_per_class"):
        train_split = train_split.subset(images.class_balanced_subset(
            train_split.labels, int(d["train_per_class"]), seed=int(d.get("subset_seed", 0))))
    if d.get("test_per_class"):
        test_split = test_split.subset(images.class_balanced_subset(
            test_split.labels, int(d["test_per_class"]), seed=int(d.get("subset_seed", 0))))
    augment = images.BatchAugment(mean, std, padding=int(aug.get("padding", 0)), hflip=bool(aug.get("hflip", False)),
                                  generator=gen)
    train = TensorLoader(train_split.images, train_split.labels, int(tr["batch_size"]), shuffle=True,
                         generator=gen, transform=augment, device=device)
    test = TensorLoader(test_split.images, test_split.labels, int(tr["eval_batch_size"]), shuffle=False,
                        transform=augment, device=device)
    return train, test, {"n_train": len(train_split), "n_test": len(test_split),
                         "n_classes": train_split.n_classes, "data_source": train_split.source}


def run(spec: dict, out_dir: str | Path, seed: int | None = None, *, progress: bool = True) -> dict:
    """Run one (dataset, D, method, seed) image experiment and write its run files.

    Parameters
    ----------
    spec : dict
        As built by :func:`run_spec`: ``dataset``, ``dim``, ``method``, ``head``
        (``"prototype"``/``"softmax"``), ``regularizer`` (a name of ``dispersion.METHODS``,
        ``"uniform"`` or ``None``), ``params``, ``data``, ``model`` (``depth``, ``width``),
        ``train`` (see :data:`_TRAIN_DEFAULTS`), ``prototypes`` (``steps``, ``lr``,
        ``optimizer``) and optional ``device``.
    out_dir : path
        The run directory; receives ``metrics.jsonl``, ``summary.json``, ``prototypes.pt``.
    seed : int, optional
        Seeds the prototype placement, the network initialisation, the batch order and the
        augmentation; defaults to ``spec["seed"]``.
    progress : bool
        Show tqdm progress bars.

    Returns the summary dict. Raises ``ValueError`` for a spec with missing keys or values the
    library rejects, ``FileNotFoundError`` for a dataset that cannot be found.
    """
    import torch

    from .. import metrics
    from ..models.resnet import resnet
    from ..prototypes import place_prototypes
    from ..runio import RunRecorder, atomic_save, resolve_device, seed_everything
    from ..training import PrototypeHead, SoftmaxHead, train_classifier

    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"spec is missing key(s) {missing}; required: {list(_REQUIRED)}")
    if seed is None:
        if "seed" not in spec:
            raise ValueError("seed must be given (argument or spec['seed'])")
        seed = int(spec["seed"])
    if spec["dataset"] not in DATASETS:
        raise ValueError(f"spec['dataset'] must be one of {list(DATASETS)}, got {spec['dataset']!r}")
    if spec["head"] not in ("prototype", "softmax"):
        raise ValueError(f"spec['head'] must be 'prototype' or 'softmax', got {spec['head']!r}")
    n_classes, in_channels, _ = DATASETS[spec["dataset"]]
    dim, tr, pr = int(spec["dim"]), spec["train"], spec["prototypes"]
    if dim < 2:
        raise ValueError(f"spec['dim'] must be >= 2, got {dim}")
    device = resolve_device(spec.get("device", "auto"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    t_start = time.perf_counter()
    rec = RunRecorder(out_dir, {**spec, "seed": seed}, seed, device)
    print(f"image run: {spec['dataset']} D={dim} method={spec['method']} seed={seed} on {device}; "
          f"ResNet-{spec['model'].get('depth', 32)}, {tr['epochs']} epochs", flush=True)

    # 0. data first, so that a missing dataset fails before any work
    train_loader, test_loader, info = _build_loaders(spec, device, seed)
    if info["n_classes"] != n_classes:
        raise ValueError(f"{spec['dataset']} has {info['n_classes']} classes, expected {n_classes}")

    # 1. prototypes
    final: dict = {}
    t0 = time.perf_counter()
    if spec["head"] == "prototype":
        P = place_prototypes(n_classes, dim, spec["regularizer"], spec["params"], steps=int(pr.get("steps", 10_000)),
                             lr=float(pr.get("lr", 5e-3)), seed=seed, device=device,
                             optimizer=pr.get("optimizer", "riemannian_adam"), progress=progress,
                             dtype=getattr(torch, pr.get("dtype", "float64")))
        P = torch.nn.functional.normalize(P.detach().double(), dim=1).float()
        final.update(
            min_angle=metrics.min_angle(P).item(),
            min_angle_deg=math.degrees(metrics.min_angle(P).item()),
            circular_variance=metrics.circular_variance(P).item(),
        )
        atomic_save(Path(out_dir) / "prototypes.pt", lambda tmp: torch.save(P.cpu(), tmp))
        head = PrototypeHead(P, reduction=tr.get("prototype_reduction", "sum"))
    else:
        final.update(min_angle=None, min_angle_deg=None, circular_variance=None)
        head = None
    final["prototype_time_s"] = time.perf_counter() - t0

    # 2. network
    seed_everything(seed, device)
    model = resnet(int(spec["model"].get("depth", 32)), dim, in_channels, int(spec["model"].get("width", 16)))
    if head is None:
        head = SoftmaxHead(dim, n_classes)
    n_params = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in head.parameters())
    history = train_classifier(
        model, head, train_loader, epochs=int(tr["epochs"]), lr=float(tr["lr"]), momentum=float(tr["momentum"]),
        weight_decay=float(tr["weight_decay"]), milestones=tr.get("milestones", []), gamma=float(tr.get("gamma", 0.1)),
        device=device, amp=bool(tr.get("amp", False)), channels_last=bool(tr.get("channels_last", False)),
        eval_loader=test_loader, eval_every=int(tr.get("eval_every", 1)), log=lambda r: rec.log(**r),
        progress=progress, desc=f"{spec['dataset']} D={dim} {spec['method']} s{seed}",
    )
    # 3. evaluation: the last epoch's model (train_classifier always evaluates the last epoch)
    ev = {"accuracy": history[-1]["eval_accuracy"], "loss": history[-1]["eval_loss"]}
    epoch_times = [h["epoch_time_s"] for h in history]
    final.update(
        test_accuracy=ev["accuracy"],
        test_loss=ev["loss"],
        train_accuracy=history[-1]["train_accuracy"],
        train_loss=history[-1]["train_loss"],
        epochs=len(history),
        train_time_s=sum(epoch_times),
        epoch_time_s=sum(epoch_times[1:]) / max(1, len(epoch_times) - 1) if len(epoch_times) > 1 else epoch_times[0],
        n_params=n_params,
        total_time_s=time.perf_counter() - t_start,
        **info,
    )
    summary = rec.finish(final=final)
    print(f"-> test accuracy {ev['accuracy']:.4f}"
          + (f", prototype min angle {final['min_angle_deg']:.2f}°" if final["min_angle"] is not None else "")
          + f", {final['epoch_time_s']:.2f} s/epoch -> {out_dir}", flush=True)
    return summary


# --------------------------------------------------------------------------- command line


def _load_spec(text: str) -> dict:
    """``--config``: a path to a YAML/JSON file, or an inline JSON object."""
    text = text.strip()
    if text.startswith("{"):
        value = json.loads(text)
    else:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"--config {text!r}: no such file (and not an inline JSON object)")
        import yaml

        with open(path, encoding="utf-8") as f:
            value = yaml.safe_load(f)
    if not isinstance(value, dict):
        raise ValueError("--config must hold a mapping (the resolved image run spec)")
    return value


def _cmd_image_run(args) -> None:
    spec = _load_spec(args.config)
    picks = (args.dataset, args.dim, args.method)
    if any(v is not None for v in picks):
        if any(v is None for v in picks):
            raise ValueError("--dataset, --dim and --method go together (to resolve a workflow config)")
        if args.base_config and Path(args.base_config).resolve() != Path(args.config).resolve():
            spec = deep_merge(_load_spec(args.base_config), spec)  # as Snakemake merges --configfile
        spec = run_spec(spec, args.dataset, args.dim, args.method)
    if args.epochs:
        spec["train"] = {**spec["train"], "epochs": args.epochs, "eval_every": args.epochs}
    if args.device:
        spec["device"] = args.device
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run(spec, args.out, args.seed, progress=not args.no_progress)


def _cmd_image_report(args) -> None:
    from ..report import image as report

    from ..runio import output_set

    with output_set():  # the CSV, every table and figure, or none
        paths = report.report(args.summaries, args.runs_csv, args.table_prefix, args.figure_prefix,
                              dataset=args.dataset)
    print("-> " + ", ".join(paths))


def add_image_commands(subparsers) -> None:
    """Add ``image-run`` and ``image-report`` to the ``python -m dispersion`` sub-parsers."""
    s = subparsers.add_parser(
        "image-run", help="one image-classification run (HPN, Mettes et al. 2019)",
        description="Place prototypes with one method (unless softmax), train a ResNet on the dataset and "
        "write metrics.jsonl, summary.json and prototypes.pt into --out.")
    s.add_argument("--config", required=True,
                   help="the resolved run spec (dispersion.experiments.image.run_spec): a YAML/JSON file or inline JSON")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--seed", type=int, required=True, help="seed of the prototypes, network, batches and augmentation")
    s.add_argument("--device", default=None, help="override the spec's device: auto | cpu | cuda | cuda:N")
    s.add_argument("--dataset", default=None, help="with --dim and --method: --config is a workflow config "
                   "(e.g. config/config.yaml) and the run spec is resolved from it")
    s.add_argument("--base-config", default="config/config.yaml",
                   help="with --dataset: the workflow config that --config is merged over (default %(default)s)")
    s.add_argument("--dim", type=int, default=None, help="output dimension D (with --dataset)")
    s.add_argument("--method", default=None, help="softmax, uniform or a method variant (with --dataset)")
    s.add_argument("--epochs", type=int, default=None, help="override the number of epochs (e.g. to time a few)")
    s.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's choice)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    s.set_defaults(func=_cmd_image_run)

    s = subparsers.add_parser(
        "image-report", help="tidy CSV, tables and figures of the image runs of one dataset",
        description="Merge image summary.json files into --runs-csv and write the accuracy and prototype "
        "min-angle tables (<table-prefix>{accuracy,min_angle}.{md,tex}) and the figures "
        "(<figure-prefix>{accuracy_vs_dim,min_angle_vs_accuracy}.{pdf,png}).")
    s.add_argument("--summaries", nargs="+", required=True, help="summary.json files of image runs")
    s.add_argument("--dataset", default=None, help="which dataset's runs to use (default: the only one present)")
    s.add_argument("--runs-csv", required=True, help="output: one row per run")
    s.add_argument("--table-prefix", required=True, help="e.g. results/tables/image_fashion_mnist_")
    s.add_argument("--figure-prefix", required=True, help="e.g. figures/image_fashion_mnist_")
    s.set_defaults(func=_cmd_image_report)
