"""Text classification with hyperspherical prototypes (issue 6; after the NMT experiment of
arXiv:2502.08231: the few-classes regime of dispersion on text).

Frozen sentence features (all-MiniLM-L6-v2, mean pooling, L2-normalised; computed once per
dataset by :func:`dispersion.data.text_inputs.compute_features` into a ``.pt`` file) are mapped by a trained projection
(a linear layer, optionally an MLP, with input dropout) to R^D. Methods:

* ``softmax`` — a C-way linear layer on the D outputs with softmax cross-entropy (baseline);
* ``uniform`` — C uniform random prototypes on S^{D−1} (no dispersion);
* any variant of ``config["methods"]`` (MHE kernels, MMA, KoLeo, MMCS = HPN's own loss, Lloyd,
  Sliced, SSW) — prototypes placed by that method alone
  (:func:`dispersion.prototypes.place_prototypes`), then the HPN loss Σ (1 − cos(f(x), p_y))²
  with the prototypes fixed (Mettes et al. 2019), prediction = nearest prototype.

Training and evaluation are :func:`dispersion.training.train_classifier` /
:func:`~dispersion.training.evaluate` (SGD with momentum, the image experiment's loop), on
in-memory features. One run = (dataset, D, method, seed); the score is the test accuracy after
the last epoch (no model selection on the test set).

Writes ``metrics.jsonl``, ``summary.json`` and ``prototypes.pt`` (:class:`dispersion.runio.RunRecorder`).
"""

from __future__ import annotations

import time
from pathlib import Path

from .._config import require_keys

__all__ = ["run", "BASELINES", "TRAIN_DEFAULTS", "MODEL_DEFAULTS", "PROTOTYPE_DEFAULTS"]

#: Methods that are not dispersion variants.
BASELINES = {"softmax": "Softmax CE", "uniform": "Uniform (random)"}
#: What a spec's ``train``, ``model`` and ``prototypes`` hold where the config leaves them out.
TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
                  "milestones": [], "gamma": 0.1, "prototype_reduction": "mean", "eval_every": 5}
MODEL_DEFAULTS = {"hidden": 0, "dropout": 0.1}
PROTOTYPE_DEFAULTS = {"steps": 1000, "lr": 0.005, "optimizer": "riemannian_adam"}
_REQUIRED = ("dataset", "dim", "method", "head", "regularizer", "params", "model", "train", "prototypes", "seed")


def run(spec: dict, out_dir: str | Path, *, features: str | Path, progress: bool = True) -> dict:
    """Run one (dataset, D, method, seed) classification on precomputed features.

    Parameters
    ----------
    spec : dict
        ``dataset``, ``dim``, ``method``, ``label``, ``head`` (``"prototype"``/``"softmax"``),
        ``regularizer`` (a name of ``dispersion.METHODS``, ``"uniform"`` or None), ``params``,
        ``model`` (``hidden``, ``dropout``), ``train`` (:data:`TRAIN_DEFAULTS`), ``prototypes``
        (:data:`PROTOTYPE_DEFAULTS`), ``seed`` (int: the prototypes, the projection's
        initialisation and the batch order) and optional ``device``. The workflow builds it
        with :func:`dispersion.pipeline.text.classify_spec` (+ the seed).
    out_dir : path
        Receives ``metrics.jsonl``, ``summary.json`` and (prototype methods) ``prototypes.pt``.
    features : path
        The file written by :func:`dispersion.data.text_inputs.compute_features` for
        ``spec["dataset"]`` (an input of the run, not part of its spec).

    Returns the summary dict; its ``final`` holds ``test_accuracy``, ``train_accuracy``,
    ``majority_accuracy`` (the most frequent training class, on the test set), the prototypes'
    ``min_angle`` (radians), ``min_angle_deg`` and ``circular_variance`` (None for softmax), and
    timings. Raises ``ValueError`` for a spec that does not match the features.
    """
    import torch

    from ..models.text import feature_projection
    from ..prototypes import place_and_measure
    from ..runio import RunRecorder, atomic_save, resolve_device, seed_everything
    from ..training import PrototypeHead, SoftmaxHead, TensorLoader, train_classifier

    require_keys(spec, _REQUIRED)
    seed = spec["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"spec key 'seed' must be an int, got {type(seed).__name__}")
    features_path = features
    if spec["head"] not in ("prototype", "softmax"):
        raise ValueError(f"spec['head'] must be 'prototype' or 'softmax', got {spec['head']!r}")
    feats = torch.load(features_path, map_location="cpu", weights_only=False)
    if feats["spec"]["dataset"] != spec["dataset"]:
        raise ValueError(f"features {features_path} are of {feats['spec']['dataset']!r}, spec wants {spec['dataset']!r}")
    dim, tr, pr = int(spec["dim"]), spec["train"], spec["prototypes"]
    if dim < 2:
        raise ValueError(f"spec['dim'] must be >= 2, got {dim}")
    n_classes = len(feats["label_names"])
    device = resolve_device(spec.get("device", "auto"))
    t_start = time.perf_counter()
    rec = RunRecorder(out_dir, spec, seed, device)
    print(f"text classify: {spec['dataset']} ({n_classes} classes) D={dim} method={spec['method']} seed={seed} "
          f"on {device}; {tr['epochs']} epochs", flush=True)

    final: dict = {}
    t0 = time.perf_counter()
    if spec["head"] == "prototype":
        P, geometry = place_and_measure(n_classes, dim, spec["regularizer"], spec["params"], steps=int(pr["steps"]),
                                        lr=float(pr["lr"]), optimizer=pr.get("optimizer", "riemannian_adam"), seed=seed,
                                        device=device, progress=progress)
        final.update(geometry)
        atomic_save(Path(out_dir) / "prototypes.pt", lambda tmp: torch.save(P.cpu(), tmp))
        head = PrototypeHead(P, reduction=tr.get("prototype_reduction", "mean"))
    else:
        final.update(min_angle=None, min_angle_deg=None, circular_variance=None)
        head = None
    final["prototype_time_s"] = time.perf_counter() - t0

    gen = seed_everything(seed, "cpu")
    xtr, ytr, xte, yte = feats["train"], feats["train_labels"], feats["test"], feats["test_labels"]
    model = feature_projection(xtr.shape[1], dim, int(spec["model"].get("hidden", 0)),
                               float(spec["model"].get("dropout", 0.0)))
    if head is None:
        head = SoftmaxHead(dim, n_classes)  # built after seeding, like the projection
    train_loader = TensorLoader(xtr, ytr, int(tr["batch_size"]), shuffle=True, generator=gen, device=device)
    test_loader = TensorLoader(xte, yte, 4096, device=device)
    history = train_classifier(
        model, head, train_loader, epochs=int(tr["epochs"]), lr=float(tr["lr"]), momentum=float(tr["momentum"]),
        weight_decay=float(tr["weight_decay"]), milestones=tr.get("milestones", []), gamma=float(tr.get("gamma", 0.1)),
        device=device, eval_loader=test_loader, eval_every=int(tr.get("eval_every", 1)), log=lambda r: rec.log(**r),
        progress=progress, desc=f"{spec['dataset']} D={dim} {spec['method']} s{seed}",
    )
    majority = int(torch.bincount(ytr, minlength=n_classes).argmax())
    final.update(
        test_accuracy=history[-1]["eval_accuracy"],
        test_loss=history[-1]["eval_loss"],
        train_accuracy=history[-1]["train_accuracy"],
        train_loss=history[-1]["train_loss"],
        majority_accuracy=(yte == majority).double().mean().item(),
        n_train=int(ytr.shape[0]),
        n_test=int(yte.shape[0]),
        n_classes=n_classes,
        feature_dim=int(xtr.shape[1]),
        epochs=len(history),
        train_time_s=sum(h["epoch_time_s"] for h in history),
        total_time_s=time.perf_counter() - t_start,
        features=str(features_path),
        feature_source=feats.get("source"),
    )
    summary = rec.finish(final=final)
    print(f"-> test accuracy {final['test_accuracy']:.4f} (majority class {final['majority_accuracy']:.4f})"
          + (f", prototype min angle {final['min_angle_deg']:.1f}°" if final["min_angle"] is not None else "")
          + f" -> {out_dir}", flush=True)
    return summary
