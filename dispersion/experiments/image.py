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
   on the test set), with the per-class accuracy and the confusion matrix (rows: true class).

Writes ``metrics.jsonl`` (one row per epoch), ``summary.json`` (resolved spec, seed, versions,
device, wall time; ``final`` = accuracies, prototype geometry, timings) and ``prototypes.pt``
into the run directory. The workflow builds each run's spec with
:func:`dispersion.pipeline.image.run_spec`.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["run", "DATASETS", "TRAIN_DEFAULTS"]

#: dataset name -> (classes, input channels, image side in pixels).
DATASETS = {
    "fashion_mnist": (10, 1, 28),
    "cifar100": (100, 3, 32),
    "imagenet200": (200, 3, 64),
}

#: What a spec's ``train`` holds where the config leaves it out.
TRAIN_DEFAULTS = {
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


def _build_loaders(spec: dict, device, seed: int):
    """(train_loader, test_loader, train_eval_loader, info) for the spec's dataset, on ``device``;
    ``train_eval_loader``: the training images in order, without augmentation (None for
    ImageNet-200 prototype runs, which do not use it)."""
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
        train_eval = None
        if spec["head"] == "softmax":  # only the softmax run reads its class layout (a second folder scan)
            plain = T.Compose([T.ToTensor(), norm])
            train_eval = DataLoader(images.imagenet200_datasets(d.get("path"), plain, plain)[0],
                                    batch_size=tr["eval_batch_size"], shuffle=False, **kw)
        return train, test, train_eval, {"n_train": len(train_ds), "n_test": len(test_ds), "n_classes": len(train_ds.classes),
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
    # the training images without augmentation (a loader that does not shuffle does not augment)
    train_eval = TensorLoader(train_split.images, train_split.labels, int(tr["eval_batch_size"]), shuffle=False,
                              transform=augment, device=device)
    return train, test, train_eval, {"n_train": len(train_split), "n_test": len(test_split),
                         "n_classes": train_split.n_classes, "data_source": train_split.source}


def run(spec: dict, out_dir: str | Path, *, class_means: str | Path | None = None, progress: bool = True) -> dict:
    """Run one (dataset, D, method, seed) image experiment and write its run files.

    Parameters
    ----------
    spec : dict
        As built by :func:`dispersion.pipeline.image.run_spec` (+ ``seed``): ``dataset``, ``dim``, ``method``, ``head``
        (``"prototype"``/``"softmax"``), ``regularizer`` (a name of ``dispersion.METHODS``,
        ``"uniform"`` or ``None``), ``params``, ``data``, ``model`` (``depth``, ``width``),
        ``train`` (see :data:`TRAIN_DEFAULTS`), ``prototypes`` (``steps``, ``lr``,
        ``optimizer``) and optional ``device``.
        ``assignment`` (optional): ``"index"`` (default; HPN: class c gets prototype c) or
        ``"class_means"``: classes are assigned to the placed prototypes by
        :func:`dispersion.prototypes.match_prototypes` against ``class_means``.
    out_dir : path
        The run directory; receives ``metrics.jsonl``, ``summary.json``, ``prototypes.pt`` (in
        class order) and, for the ``softmax`` head, ``class_means.pt``: the (C, D) mean unit
        output per class over the training images without augmentation
        (:func:`dispersion.training.class_means`), the layout a ``class_means`` assignment uses.
    class_means : path, optional
        The ``class_means.pt`` of a softmax run of the same dataset and D; required by
        ``assignment: class_means``.
    progress : bool
        Show tqdm progress bars.

    Returns the summary dict. Raises ``ValueError`` for a spec with missing keys or values the
    library rejects (or a ``class_means`` assignment without ``class_means`` of shape (C, D)),
    ``FileNotFoundError`` for a dataset or a ``class_means`` file that cannot be found.
    """
    import torch

    from ..models.resnet import resnet
    from ..prototypes import place_and_measure
    from ..runio import RunRecorder, atomic_save, resolve_device, seed_everything
    from ..training import PrototypeHead, SoftmaxHead, train_classifier

    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"spec is missing key(s) {missing}; required: {list(_REQUIRED)}")
    if "seed" not in spec:
        raise ValueError("spec is missing key 'seed'")
    seed = int(spec["seed"])
    if spec["dataset"] not in DATASETS:
        raise ValueError(f"spec['dataset'] must be one of {list(DATASETS)}, got {spec['dataset']!r}")
    if spec["head"] not in ("prototype", "softmax"):
        raise ValueError(f"spec['head'] must be 'prototype' or 'softmax', got {spec['head']!r}")
    n_classes, in_channels, _ = DATASETS[spec["dataset"]]
    dim, tr, pr = int(spec["dim"]), spec["train"], spec["prototypes"]
    if dim < 2:
        raise ValueError(f"spec['dim'] must be >= 2, got {dim}")
    assignment = spec.get("assignment", "index")
    if assignment not in ("index", "class_means"):
        raise ValueError(f"spec['assignment'] must be 'index' or 'class_means', got {assignment!r}")
    layout = None
    if assignment == "class_means":
        if spec["head"] != "prototype":
            raise ValueError("spec['assignment'] 'class_means' needs the prototype head")
        if class_means is None:
            raise ValueError("spec['assignment'] is 'class_means' but no class_means file was given")
        if not Path(class_means).is_file():
            raise FileNotFoundError(f"class_means file {str(class_means)!r} does not exist (the softmax run's class_means.pt)")
        layout = torch.load(class_means, map_location="cpu", weights_only=True)
        if tuple(layout.shape) != (n_classes, dim):
            raise ValueError(f"class_means {str(class_means)!r} has shape {tuple(layout.shape)}, expected ({n_classes}, {dim})")
    device = resolve_device(spec.get("device", "auto"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    t_start = time.perf_counter()
    rec = RunRecorder(out_dir, {**spec, "seed": seed}, seed, device)
    print(f"image run: {spec['dataset']} D={dim} method={spec['method']} seed={seed} on {device}; "
          f"ResNet-{spec['model'].get('depth', 32)}, {tr['epochs']} epochs", flush=True)

    # 0. data first, so that a missing dataset fails before any work
    train_loader, test_loader, train_eval_loader, info = _build_loaders(spec, device, seed)
    if info["n_classes"] != n_classes:
        raise ValueError(f"{spec['dataset']} has {info['n_classes']} classes, expected {n_classes}")

    # 1. prototypes
    final: dict = {}
    t0 = time.perf_counter()
    if spec["head"] == "prototype":
        P, geometry = place_and_measure(n_classes, dim, spec["regularizer"], spec["params"],
                                        steps=int(pr.get("steps", 10_000)), lr=float(pr.get("lr", 5e-3)),
                                        optimizer=pr.get("optimizer", "riemannian_adam"),
                                        dtype=getattr(torch, pr.get("dtype", "float64")), seed=seed, device=device,
                                        progress=progress)
        final.update(geometry)
        if layout is not None:
            from ..prototypes import match_prototypes

            P, matched = match_prototypes(P, layout, seed=seed)
            final.update(assignment_permutation=matched["permutation"], assignment_alignment=matched["alignment"],
                         assignment_alignment_index=matched["alignment_identity"])
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
    if spec["head"] == "softmax":  # the learnt class layout, for runs that match prototypes to it
        from ..training import class_means as mean_directions

        means = mean_directions(model, train_eval_loader, n_classes, device=device, amp=bool(tr.get("amp", False)),
                                channels_last=bool(tr.get("channels_last", False)))
        atomic_save(Path(out_dir) / "class_means.pt", lambda tmp: torch.save(means, tmp))
    confusion = history[-1]["eval_confusion"]
    per_class = [row[c] / max(sum(row), 1) for c, row in enumerate(confusion)]
    epoch_times = [h["epoch_time_s"] for h in history]
    final.update(
        test_accuracy=ev["accuracy"],
        test_loss=ev["loss"],
        train_accuracy=history[-1]["train_accuracy"],
        train_loss=history[-1]["train_loss"],
        epochs=len(history),
        train_time_s=sum(epoch_times),
        epoch_time_s=sum(epoch_times[1:]) / max(1, len(epoch_times) - 1) if len(epoch_times) > 1 else epoch_times[0],
        per_class_accuracy=per_class,
        confusion=confusion,
        n_params=n_params,
        total_time_s=time.perf_counter() - t_start,
        **info,
    )
    summary = rec.finish(final=final)
    print(f"-> test accuracy {ev['accuracy']:.4f}"
          + (f", prototype min angle {final['min_angle_deg']:.2f}°" if final["min_angle"] is not None else "")
          + f", {final['epoch_time_s']:.2f} s/epoch -> {out_dir}", flush=True)
    return summary
