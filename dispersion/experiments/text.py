"""Text experiments (issue 6; after the NMT experiment of arXiv:2502.08231): the two regimes of
dispersion on text.

**Few classes — sentence classification with hyperspherical prototypes** (:func:`classify`).
Frozen sentence features (all-MiniLM-L6-v2, mean pooling, L2-normalised; computed once per
dataset by :func:`compute_features` into a ``.pt`` file) are mapped by a trained projection
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

**Many classes — next-token prediction over a vocabulary on the sphere** (:func:`lm`). The
paper's NMT regime in miniature: a small causal Transformer LM
(:class:`dispersion.models.text.CausalTransformerLM`) whose tied embedding table E (V × d) is
a geoopt ``ManifoldParameter`` on ``SphereExact``; loss = CE + λ · R(E), λ = 10, R evaluated
once per batch on the table: ``none``; MHE RBF (γ = 0.01) on ``reg_rows`` rows sampled per batch
(paper: 1 000–2 048); Lloyd with M = 100 samples over all rows; Sliced with one great circle
over all rows; plus the ``euclidean`` baseline (an ordinary unnormalised tied table, no
regularizer). Riemannian Adam (lr 5·10⁻³) trains E, Adam the rest; both follow a linear
warm-up then cosine decay to 10 %. Reported: held-out perplexity and next-token accuracy,
``min_angle`` / ``circular_variance`` / nearest-neighbour angles of E (of its row directions
for the Euclidean table), training time and tokens per second; the corpus' add-one unigram
perplexity is stored with the tokenised corpus (:func:`build_corpus`) and printed beside.

Every run writes ``metrics.jsonl`` and ``summary.json`` (:class:`dispersion.runio.RunRecorder`).
:func:`add_text_commands` adds ``text-features``, ``text-classify``, ``text-corpus``, ``text-lm``
and ``text-report`` to ``python -m dispersion``; the ``*_spec`` functions build each run's spec
from the workflow config (only the keys the run uses).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .._config import deep_merge

__all__ = [
    "CLASSIFY_BASELINES",
    "LM_BASELINES",
    "features_spec",
    "compute_features",
    "classify_spec",
    "classify_runs",
    "classify",
    "corpus_spec",
    "build_corpus",
    "lm_spec",
    "regularized_loss",
    "regularizer_weight",
    "LAMBDA_PER",
    "lm_runs",
    "lm",
    "check_text_config",
    "TextPaths",
    "add_text_commands",
]

#: Classification methods that are not dispersion variants.
CLASSIFY_BASELINES = {"softmax": "Softmax CE", "uniform": "Uniform (random)"}
#: LM methods that are not dispersion variants.
LM_BASELINES = {"none": "Spherical, no regularizer", "euclidean": "Euclidean (unnormalised)"}

_ENCODER_DEFAULTS = {"name": "minilm", "max_length": 128, "batch_size": 64, "normalize": True}
_CLASSIFY_TRAIN = {"epochs": 30, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4,
                   "milestones": [], "gamma": 0.1, "prototype_reduction": "mean", "eval_every": 5}
_CLASSIFY_MODEL = {"hidden": 0, "dropout": 0.1}
_PROTOTYPES = {"steps": 1000, "lr": 0.005, "optimizer": "riemannian_adam"}
_LM_MODEL = {"dim": 128, "n_layers": 4, "n_heads": 4, "ff_dim": None, "max_len": 128, "dropout": 0.1,
             "logit_scale": 10.0}
_LM_TRAIN = {"steps": 3000, "batch_size": 32, "seq_len": 128, "lr": 1e-3, "embedding_lr": 5e-3,
             "warmup": 100, "min_lr_ratio": 0.1, "lambda": 10.0, "lambda_per": "token", "reg_rows": 1024, "amp": True,
             "log_every": 50, "eval_every": 0, "eval_tokens": None, "eval_batch_size": 32, "hist_bins": 90}




def _variant(config: dict, section: dict, method: str, baselines: dict) -> tuple[str | None, dict, str]:
    """(regularizer name, params, label) of a method of a text task."""
    if method in baselines:
        return None, {}, baselines[method]
    if method not in config.get("methods", {}):
        raise ValueError(f"method {method!r} is neither a baseline {sorted(baselines)} nor a variant under "
                         f"config methods: {sorted(config.get('methods', {}))}")
    v = config["methods"][method]
    params = {**v.get("params", {}), **section.get("overrides", {}).get(method, {})}
    return v["method"], params, v.get("label", method)


# --------------------------------------------------------------------------- features


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
        "encoder": deep_merge(_ENCODER_DEFAULTS, t.get("encoder")),
        "device": config.get("device", "auto"),
    }


def compute_features(spec: dict, out_path: str | Path, *, progress: bool = True, encoder=None) -> dict:
    """Encode the train and test texts of ``spec["dataset"]`` once; write them to ``out_path``.

    The file (``torch.save``, written atomically) holds ``train``/``test`` (N, H) float32
    features, ``train_labels``/``test_labels`` (N,) int64, ``label_names``, ``spec``, the
    source description and ``encode_time_s``. ``max_train``/``max_test`` take a stratified
    subset (:func:`dispersion.data.text.stratified_subset`, seed ``subset_seed``) first.
    ``encoder`` (a :class:`~dispersion.models.text.SentenceEncoder`) reuses a loaded model;
    by default one is built from ``spec["encoder"]``. Returns the record without the tensors.
    """
    import torch

    from ..data.text import load_text_dataset, stratified_subset
    from ..models.text import SentenceEncoder
    from ..runio import atomic_save, resolve_device

    enc = deep_merge(_ENCODER_DEFAULTS, spec.get("encoder"))
    device = resolve_device(spec.get("device", "auto"))
    parts = {}
    for split in ("train", "test"):
        d = load_text_dataset(spec["dataset"], split, spec.get("path"))
        limit = spec.get(f"max_{split}")
        if limit:
            d = d.subset(stratified_subset(d.labels, int(limit), seed=int(spec.get("subset_seed", 0))))
        parts[split] = d
    n = len(parts["train"]) + len(parts["test"])
    print(f"text features: {spec['dataset']} ({len(parts['train'])} train + {len(parts['test'])} test texts) "
          f"with {enc['name']} on {device}", flush=True)
    t0 = time.perf_counter()
    if encoder is None:
        encoder = SentenceEncoder(enc["name"], max_length=int(enc["max_length"]))
    out = {}
    for split, d in parts.items():
        out[split] = encoder.encode(d.texts, batch_size=int(enc["batch_size"]), normalize=bool(enc["normalize"]),
                                    device=device, progress=progress)
        out[f"{split}_labels"] = d.labels
    dt = time.perf_counter() - t0
    record = {
        **out,
        "label_names": parts["train"].label_names,
        "spec": spec,
        "source": parts["train"].source + " | " + parts["test"].source,
        "encoder_path": encoder.name_or_path,
        "encode_time_s": dt,
        "texts_per_s": n / dt if dt > 0 else None,
        "device": str(device),
    }
    atomic_save(out_path, lambda tmp: torch.save(record, tmp))
    print(f"-> {out['train'].shape[1]}-d features, {dt:.1f} s ({n / dt:.0f} texts/s) -> {out_path}", flush=True)
    return {k: v for k, v in record.items() if not isinstance(v, torch.Tensor)}


# --------------------------------------------------------------------------- classification


def classify_spec(config: dict, dataset: str, dim: int | str, method: str) -> dict:
    """The resolved spec of one classification run from ``config["text"]``.

    ``method`` is ``softmax``, ``uniform`` or a variant of ``config["methods"]`` (updated by
    ``text.classify.overrides[method]``). Raises ``ValueError`` for an unknown dataset/method.
    """
    c = config["text"]["classify"]
    if dataset not in c["datasets"]:
        raise ValueError(f"dataset must be one of {sorted(c['datasets'])}, got {dataset!r}")
    regularizer, params, label = _variant(config, c, method, CLASSIFY_BASELINES)
    if method == "uniform":
        regularizer = "uniform"
    d = c["datasets"][dataset] or {}
    return {
        "dataset": dataset,
        "dim": int(dim),
        "method": method,
        "label": label,
        "head": "softmax" if method == "softmax" else "prototype",
        "regularizer": regularizer,
        "params": params,
        "model": deep_merge(deep_merge(_CLASSIFY_MODEL, c.get("model")), d.get("model")),
        "train": deep_merge(deep_merge(_CLASSIFY_TRAIN, c.get("train")), d.get("train")),
        "prototypes": deep_merge(deep_merge(_PROTOTYPES, c.get("prototypes")), d.get("prototypes")),
        "device": config.get("device", "auto"),
    }


def classify_runs(config: dict) -> list[dict]:
    """Every (dataset, dim, method, seed) of the classification task, as wildcard dicts."""
    c = config["text"]["classify"]
    seeds = c.get("seeds", config["text"]["seeds"])
    return [{"dataset": ds, "dim": dim, "method": m, "seed": s}
            for ds in c.get("run", list(c["datasets"])) for dim in c["dims"] for m in c["methods"] for s in seeds]


class _Projection:
    """Factory of the trained projection: features (B, H) → (B, D)."""

    @staticmethod
    def build(in_dim: int, dim: int, hidden: int = 0, dropout: float = 0.0):
        from torch import nn

        layers = [nn.Dropout(float(dropout))] if dropout else []
        if hidden:
            layers += [nn.Linear(in_dim, int(hidden)), nn.GELU(), nn.Linear(int(hidden), dim)]
        else:
            layers += [nn.Linear(in_dim, dim)]
        return nn.Sequential(*layers)


def classify(spec: dict, out_dir: str | Path, seed: int, features_path: str | Path, *,
             progress: bool = True) -> dict:
    """Run one (dataset, D, method, seed) classification on precomputed features.

    Parameters
    ----------
    spec : dict
        As built by :func:`classify_spec`.
    out_dir : path
        Receives ``metrics.jsonl``, ``summary.json`` and (prototype methods) ``prototypes.pt``.
    seed : int
        Seeds the prototypes, the projection's initialisation and the batch order.
    features_path : path
        The file written by :func:`compute_features` for ``spec["dataset"]``.

    Returns the summary dict; its ``final`` holds ``test_accuracy``, ``train_accuracy``,
    ``majority_accuracy`` (the most frequent training class, on the test set), the prototypes'
    ``min_angle`` (radians), ``min_angle_deg`` and ``circular_variance`` (None for softmax), and
    timings. Raises ``ValueError`` for a spec that does not match the features.
    """
    import torch

    from .. import metrics
    from ..prototypes import place_prototypes
    from ..runio import RunRecorder, atomic_save, resolve_device, seed_everything
    from ..training import PrototypeHead, SoftmaxHead, TensorLoader, train_classifier

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    for key in ("dataset", "dim", "method", "head", "regularizer", "params", "model", "train", "prototypes"):
        if key not in spec:
            raise ValueError(f"spec is missing key {key!r}")
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
    rec = RunRecorder(out_dir, {**spec, "seed": seed}, seed, device)
    print(f"text classify: {spec['dataset']} ({n_classes} classes) D={dim} method={spec['method']} seed={seed} "
          f"on {device}; {tr['epochs']} epochs", flush=True)

    final: dict = {}
    t0 = time.perf_counter()
    if spec["head"] == "prototype":
        P = place_prototypes(n_classes, dim, spec["regularizer"], spec["params"], steps=int(pr["steps"]),
                             lr=float(pr["lr"]), seed=seed, device=device, optimizer=pr.get("optimizer", "riemannian_adam"),
                             progress=progress).detach().float()
        final.update(min_angle=metrics.min_angle(P).item(), circular_variance=metrics.circular_variance(P).item())
        final["min_angle_deg"] = math.degrees(final["min_angle"])
        atomic_save(Path(out_dir) / "prototypes.pt", lambda tmp: torch.save(P.cpu(), tmp))
        head = PrototypeHead(P, reduction=tr.get("prototype_reduction", "mean"))
    else:
        final.update(min_angle=None, min_angle_deg=None, circular_variance=None)
        head = None
    final["prototype_time_s"] = time.perf_counter() - t0

    gen = seed_everything(seed, "cpu")
    xtr, ytr, xte, yte = feats["train"], feats["train_labels"], feats["test"], feats["test_labels"]
    model = _Projection.build(xtr.shape[1], dim, int(spec["model"].get("hidden", 0)),
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


# --------------------------------------------------------------------------- language model


def corpus_spec(config: dict) -> dict:
    """The spec of the tokenised LM corpus (``text.lm``: corpora, tokenizer, vocab)."""
    lm_cfg = config["text"]["lm"]
    enc = deep_merge(_ENCODER_DEFAULTS, config["text"].get("encoder"))
    return {
        "corpora": list(lm_cfg.get("corpora", ["rotten_tomatoes_plot", "tweets", "debates"])),
        "tokenizer": lm_cfg.get("tokenizer", "wordpiece"),
        "vocab": deep_merge({"max_size": 30000, "min_count": 2}, lm_cfg.get("vocab")),
        "encoder": enc["name"],
        "paths": lm_cfg.get("paths", {}),
    }


def build_corpus(spec: dict, out_path: str | Path) -> dict:
    """Tokenise the LM corpus once; write ``train_ids``/``test_ids`` (int64 streams) and facts.

    Train text = the train parts of ``spec["corpora"]``' fixed splits, held-out text = their
    test parts (:func:`dispersion.data.text.lm_corpus_texts`). The word vocabulary is built on
    the train text only. Also stores the add-one ``unigram_perplexity`` of the test stream
    (the baseline the LM must beat) and the number of distinct token types used. Written
    atomically (``torch.save``). Returns the record without the tensors.
    """
    import torch

    from ..data.text import WordVocab, lm_corpus_texts, tokenize_corpus, unigram_perplexity
    from ..runio import atomic_save

    t0 = time.perf_counter()
    train_texts = lm_corpus_texts(spec["corpora"], "train", spec.get("paths"))
    test_texts = lm_corpus_texts(spec["corpora"], "test", spec.get("paths"))
    vocab = None
    if spec["tokenizer"] == "word":
        vocab = WordVocab.build(train_texts, int(spec["vocab"]["max_size"]), int(spec["vocab"]["min_count"]))
    train_ids, info = tokenize_corpus(train_texts, spec["tokenizer"], vocab, spec.get("encoder", "minilm"))
    test_ids, _ = tokenize_corpus(test_texts, spec["tokenizer"], vocab, spec.get("encoder", "minilm"))
    V = info["vocab_size"]
    record = {
        "train_ids": train_ids,
        "test_ids": test_ids,
        **info,
        "itos": vocab.itos if vocab is not None else None,
        "n_train_docs": len(train_texts),
        "n_test_docs": len(test_texts),
        "n_train_tokens": int(train_ids.numel()),
        "n_test_tokens": int(test_ids.numel()),
        "types_in_train": int(torch.unique(train_ids).numel()),
        "unk_rate_test": float((test_ids == info["unk_id"]).double().mean()) if info.get("unk_id") is not None else None,
        "unigram_perplexity": unigram_perplexity(train_ids, test_ids, V),
        "spec": spec,
        "time_s": time.perf_counter() - t0,
    }
    atomic_save(out_path, lambda tmp: torch.save(record, tmp))
    print(f"text corpus: {len(train_texts)} train / {len(test_texts)} test documents, {record['n_train_tokens']} / "
          f"{record['n_test_tokens']} tokens, V = {V} ({spec['tokenizer']}); unigram perplexity "
          f"{record['unigram_perplexity']:.1f} -> {out_path}", flush=True)
    return {k: v for k, v in record.items() if not isinstance(v, torch.Tensor) and k != "itos"}


def lm_spec(config: dict, method: str) -> dict:
    """The resolved spec of one LM run (``text.lm``). ``method``: ``none``, ``euclidean`` or a
    variant of ``config["methods"]`` (updated by ``text.lm.overrides[method]``); its λ is
    ``text.lm.lambdas[method]`` where given, else ``text.lm.train.lambda`` (a per-variant λ carries
    the constant factor between the authors' energy and ours, e.g. e^γ for the Gaussian kernel;
    README, "The authors' parameters in ours")."""
    lm_cfg = config["text"]["lm"]
    regularizer, params, label = _variant(config, lm_cfg, method, LM_BASELINES)
    train = deep_merge(_LM_TRAIN, lm_cfg.get("train"))
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
        "model": deep_merge(_LM_MODEL, lm_cfg.get("model")),
        "train": train,
        "device": config.get("device", "auto"),
    }


def lm_runs(config: dict) -> list[dict]:
    """Every (method, seed) of the LM task, as wildcard dicts."""
    lm_cfg = config["text"]["lm"]
    return [{"method": m, "seed": s} for m in lm_cfg["methods"] for s in lm_cfg.get("seeds", config["text"]["seeds"])]


#: Conventions for the weight λ of the regularizer in the LM loss (see :func:`regularized_loss`).
LAMBDA_PER = ("token", "batch")


def regularized_loss(ce, r, lam: float, n_tokens: int, lambda_per: str = "token"):
    """The LM training loss: token-averaged cross-entropy plus the weighted regularizer.

    Parameters
    ----------
    ce : 0-d tensor
        Cross-entropy averaged over the ``n_tokens`` target tokens of the batch (nats/token).
    r : 0-d tensor
        The regularizer R(E) of the embedding table (or of its sampled rows).
    lam : float
        λ >= 0.
    n_tokens : int
        Target tokens in the batch (batch_size · seq_len), >= 1.
    lambda_per : ``"token"`` or ``"batch"``
        ``"token"`` (default): ``(Σ_tokens CE + λ·R) / n_tokens = ce + λ·R / n_tokens``, the
        reduction of NMT trainers such as fairseq, whose criterion sums the loss over the target
        tokens and whose trainer divides the gradient by their number; the paper's λ = 10 was set
        in such a trainer (the NMT experiment of arXiv:2502.08231). ``"batch"``: ``ce + λ·R``, λ
        per batch. The two differ by the factor n_tokens; with ``"batch"`` and λ = 10 the Sliced
        loss (:class:`~dispersion.regularizers.Sliced`), a *sum* over all V rows, outweighs the
        task (measured in the quick LM, V = 6 000: perplexity 1 221 against 198 without a
        regularizer).

    Returns a 0-d tensor. Raises ``ValueError`` for an unknown ``lambda_per``, a negative λ or
    ``n_tokens < 1``.
    """
    return ce + regularizer_weight(lam, n_tokens, lambda_per) * r


def regularizer_weight(lam: float, n_tokens: int, lambda_per: str = "token") -> float:
    """The factor of R(E) in :func:`regularized_loss`: ``lam / n_tokens`` (``"token"``) or
    ``lam`` (``"batch"``). Raises ``ValueError`` for an unknown ``lambda_per``, a negative λ or
    ``n_tokens < 1``."""
    if lambda_per not in LAMBDA_PER:
        raise ValueError(f"lambda_per must be one of {LAMBDA_PER}, got {lambda_per!r}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    return lam / n_tokens if lambda_per == "token" else lam


def _batch(stream, starts, T):
    import torch

    idx = starts[:, None] + torch.arange(T + 1, device=starts.device)[None, :]
    chunk = stream[idx]
    return chunk[:, :-1], chunk[:, 1:]


def evaluate_lm(model, stream, seq_len: int, batch_size: int = 32, max_tokens: int | None = None,
                device="cpu", amp: bool = False, unigram_logp=None) -> dict:
    """Held-out cross-entropy (nats/token), perplexity and next-token accuracy of ``model``.

    ``stream`` (M,) int64 is cut into windows of ``seq_len`` + 1 tokens; each window predicts
    its tokens 2..end from the preceding ones within the window. Without ``max_tokens`` the
    windows are consecutive and cover the whole stream; with it, ``ceil(max_tokens / seq_len)``
    windows are spread evenly over the stream (so a capped evaluation still samples every
    corpus of the concatenated stream). ``unigram_logp`` (V,) log-probabilities, if given, are
    scored on exactly the same target tokens (``unigram_perplexity`` in the result). Runs in
    eval mode without gradients.
    """
    import torch

    n = stream.numel() - 1
    if n < seq_len:
        raise ValueError(f"the evaluation stream ({n + 1} tokens) is shorter than seq_len + 1")
    if max_tokens and int(max_tokens) < n:
        k = max(1, math.ceil(int(max_tokens) / seq_len))
        starts = torch.linspace(0, n - seq_len, k).round().long().tolist()
        lens = [seq_len] * k
    else:
        starts = list(range(0, n, seq_len))
        lens = [min(seq_len, n - s) for s in starts]
    was = model.training
    model.eval()
    total, loss_sum, correct, uni_sum = 0, 0.0, 0, 0.0
    dev = torch.device(device)
    try:
        with torch.no_grad():
            for b in range(0, len(starts), batch_size):
                group, glens = starts[b:b + batch_size], lens[b:b + batch_size]
                for L in sorted(set(glens)):  # windows of equal length together (only the last differs)
                    ss = torch.tensor([s for s, ln in zip(group, glens) if ln == L], device=dev)
                    x, y = _batch(stream, ss, L)
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
                        h = model.hidden(x)
                    logits = model.logits(h)
                    loss_sum += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                                  reduction="sum").item()
                    correct += (logits.argmax(-1) == y).sum().item()
                    total += y.numel()
                    if unigram_logp is not None:
                        uni_sum -= unigram_logp[y].sum().item()
    finally:
        model.train(was)
    ce = loss_sum / total
    out = {"loss": ce, "perplexity": math.exp(ce), "accuracy": correct / total, "tokens": total}
    if unigram_logp is not None:
        out["unigram_perplexity"] = math.exp(uni_sum / total)
    return out


def embedding_geometry(E, bins: int = 90) -> dict:
    """``min_angle``, ``circular_variance``, ``mean_nn_angle`` (radians) of the unit rows ``E``
    (V, d) and the histogram of nearest-neighbour angles over [0, π/2] (``bins`` counts; angles
    beyond π/2 fall in the last bin)."""
    import torch

    from .. import metrics

    nn_ang = metrics.nearest_neighbor_angles(E)
    hist = torch.histc(nn_ang.clamp(max=math.pi / 2).float().cpu(), bins=bins, min=0.0, max=math.pi / 2)
    return {
        "min_angle": nn_ang.min().item(),
        "circular_variance": metrics.circular_variance(E).item(),
        "mean_nn_angle": nn_ang.mean().item(),
        "median_nn_angle": nn_ang.median().item(),
        "nn_angle_hist": [int(v) for v in hist.tolist()],
        "nn_angle_hist_max": math.pi / 2,
    }


def lm(spec: dict, out_dir: str | Path, seed: int, corpus_path: str | Path, *, progress: bool = True) -> dict:
    """Train and evaluate one (method, seed) language model; write its run files.

    Parameters
    ----------
    spec : dict
        As built by :func:`lm_spec`: ``method``, ``embedding`` (``sphere``/``euclidean``),
        ``regularizer`` (None or a name of :data:`dispersion.METHODS`), ``params``, ``model``
        (:class:`~dispersion.models.text.CausalTransformerLM` arguments) and ``train``
        (steps, batch_size, seq_len, lr, embedding_lr, warmup, min_lr_ratio, lambda, lambda_per,
        reg_rows, amp, log_every, eval_every, eval_tokens, eval_batch_size, hist_bins); see
        :func:`regularized_loss` for ``lambda`` and ``lambda_per``.
    out_dir : path
    seed : int
        Seeds the initialisation and the batch positions (one stream), and, through a seed drawn
        from that stream, the regularizer's random draws and the MHE row samples (another).
    corpus_path : path
        The file written by :func:`build_corpus`.

    Writes ``metrics.jsonl``, ``summary.json`` and ``embedding.pt`` (the trained table ``E`` as
    stored, float32 on the CPU, with the word vocabulary ``itos`` when there is one) into
    ``out_dir``, as one set. Returns the summary dict; ``final`` holds ``test_perplexity``, ``test_accuracy``,
    ``test_loss`` (nats/token), ``unigram_perplexity``, the geometry of E
    (:func:`embedding_geometry`), ``train_time_s`` (the update steps only, CUDA synchronised),
    ``tokens_per_s``, ``logit_scale`` and sizes. Raises ``ValueError`` for a bad spec or a
    diverged loss.
    """
    import torch

    from ..optim import make_optimizer
    from ..regularizers import build
    from ..runio import RunRecorder, resolve_device, seed_everything
    from ..models.text import CausalTransformerLM

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    for key in ("method", "embedding", "regularizer", "params", "model", "train"):
        if key not in spec:
            raise ValueError(f"spec is missing key {key!r}")
    if spec["embedding"] == "euclidean" and spec["regularizer"] is not None:
        raise ValueError("the euclidean baseline takes no regularizer (its rows are not on the sphere)")
    tr = deep_merge(_LM_TRAIN, spec["train"])
    mc = deep_merge(_LM_MODEL, spec["model"])
    T = int(tr["seq_len"])
    if T > int(mc["max_len"]):
        raise ValueError(f"train.seq_len ({T}) exceeds model.max_len ({mc['max_len']})")
    corpus = torch.load(corpus_path, map_location="cpu", weights_only=False)
    device = resolve_device(spec.get("device", "auto"))
    gen = seed_everything(seed, device)
    cpu_gen = torch.Generator().manual_seed(seed)
    V = int(corpus["vocab_size"])
    train_ids = corpus["train_ids"].to(device)
    test_ids = corpus["test_ids"].to(device)
    counts = torch.bincount(corpus["train_ids"], minlength=V).double() + 1  # add-one unigram of the train text
    unigram_logp = (counts.log() - counts.sum().log()).to(device)
    if train_ids.numel() <= T + 1:
        raise ValueError(f"the training stream ({train_ids.numel()} tokens) is shorter than seq_len + 1")
    model = CausalTransformerLM(V, int(mc["dim"]), int(mc["n_layers"]), int(mc["n_heads"]), mc.get("ff_dim"),
                                int(mc["max_len"]), float(mc["dropout"]), spec["embedding"],
                                float(mc["logit_scale"]), generator=cpu_gen).to(device)
    # The regularizer's draws get a stream of their own, seeded from the initialisation stream:
    # seeded with `seed` like cpu_gen, Lloyd's first V/M calls drew exactly the initial rows of E
    # as its "uniform" samples (quantisation error 0.005 instead of 1.2 over the first 50 steps).
    gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=cpu_gen)))
    reg = None if spec["regularizer"] is None else build(spec["regularizer"], generator=gen, **spec["params"])
    lam, lambda_per = float(tr["lambda"]), tr["lambda_per"]
    reg_rows = (int(tr["reg_rows"]) if reg is not None and getattr(reg, "pairwise", False) and tr.get("reg_rows")
                else None)
    steps, B = int(tr["steps"]), int(tr["batch_size"])
    try:
        weight = regularizer_weight(lam, B * T, lambda_per)  # checked once, before any training
    except ValueError as e:
        raise ValueError(f"train: {e}") from None
    if spec["embedding"] == "sphere":
        opt_e = make_optimizer("riemannian_adam", [model.E], lr=float(tr["embedding_lr"]))
    else:
        opt_e = torch.optim.Adam([model.E], lr=float(tr["embedding_lr"]))
    opt_d = torch.optim.Adam(model.dense_parameters(), lr=float(tr["lr"]))
    warm, floor = int(tr["warmup"]), float(tr["min_lr_ratio"])

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        frac = (step - warm) / max(1, steps - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lr_factor) for o in (opt_e, opt_d)]
    amp = bool(tr["amp"]) and device.type == "cuda"
    n_params = sum(p.numel() for p in model.parameters())
    rec = RunRecorder(out_dir, {**spec, "seed": seed, "corpus": str(corpus_path)}, seed, device)
    print(f"text lm: method={spec['method']} ({spec['label']}) seed={seed} on {device}; V={V}, d={mc['dim']}, "
          f"{mc['n_layers']} layers, {steps} steps x {B} x {T} tokens; corpus {corpus['n_train_tokens']} train "
          f"tokens, unigram perplexity {corpus['unigram_perplexity']:.1f}", flush=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"lm {spec['method']} s{seed}", unit="step", dynamic_ncols=True, mininterval=2.0)
    train_time, ce_acc, reg_acc, n_acc = 0.0, 0.0, 0.0, 0
    log_every = max(1, int(tr["log_every"]))
    eval_every = int(tr.get("eval_every") or 0)
    max_start = train_ids.numel() - T - 1
    model.train()
    try:
        for step in range(1, steps + 1):
            sync()
            t0 = time.perf_counter()
            starts = torch.randint(0, max_start + 1, (B,), generator=cpu_gen).to(device)
            x, y = _batch(train_ids, starts, T)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                h = model.hidden(x)
            logits = model.logits(h)
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            loss = ce
            r = None
            if reg is not None:
                E = model.E
                if reg_rows is not None and reg_rows < V:
                    idx = torch.randperm(V, generator=gen, device=device)[:reg_rows]
                    E = E[idx]
                r = reg(E)
                loss = ce + weight * r  # = regularized_loss(ce, r, lam, B * T, lambda_per)
            opt_e.zero_grad(set_to_none=True)
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_e.step()
            opt_d.step()
            for s in scheds:
                s.step()
            sync()
            train_time += time.perf_counter() - t0
            ce_acc += ce.item()
            reg_acc += r.item() if r is not None else 0.0
            n_acc += 1
            if not math.isfinite(ce_acc):
                raise ValueError(f"training diverged: non-finite loss at step {step}")
            if step % log_every == 0 or step == steps:
                row = {"step": step, "train_ce": ce_acc / n_acc, "train_perplexity": math.exp(ce_acc / n_acc),
                       "regularizer": reg_acc / n_acc if reg is not None else None,
                       "lr_embedding": opt_e.param_groups[0]["lr"], "train_time_s": train_time,
                       "tokens_per_s": step * B * T / train_time if train_time > 0 else None}
                if model.scale is not None:
                    row["logit_scale"] = model.scale.item()
                if eval_every and (step % eval_every == 0) and step != steps:
                    ev = evaluate_lm(model, test_ids, T, int(tr["eval_batch_size"]), tr.get("eval_tokens"), device, amp,
                                     unigram_logp)
                    row.update(test_perplexity=ev["perplexity"], test_accuracy=ev["accuracy"])
                    geo = embedding_geometry(model.embedding_table(), int(tr["hist_bins"]))
                    row.update(min_angle=geo["min_angle"], circular_variance=geo["circular_variance"])
                rec.log(**row)
                ce_acc, reg_acc, n_acc = 0.0, 0.0, 0
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    ev = evaluate_lm(model, test_ids, T, int(tr["eval_batch_size"]), tr.get("eval_tokens"), device, amp, unigram_logp)
    geo = embedding_geometry(model.embedding_table(), int(tr["hist_bins"]))
    rec.log(step=steps, test_perplexity=ev["perplexity"], test_accuracy=ev["accuracy"], min_angle=geo["min_angle"],
            circular_variance=geo["circular_variance"])
    if model.embedding == "sphere":
        norm_err = (model.E.detach().norm(dim=1) - 1).abs().max().item()
    else:
        norm_err = None
    final = {
        "test_perplexity": ev["perplexity"],
        "test_accuracy": ev["accuracy"],
        "test_loss": ev["loss"],
        "test_tokens": ev["tokens"],
        "unigram_perplexity": ev["unigram_perplexity"],
        "unigram_perplexity_full_test": corpus["unigram_perplexity"],
        **geo,
        "max_row_norm_error": norm_err,
        "lambda": lam,
        "lambda_per": lambda_per,
        "lambda_effective": weight if reg is not None else 0.0,
        "train_time_s": train_time,
        "tokens_per_s": steps * B * T / train_time,
        "train_tokens_seen": steps * B * T,
        "logit_scale": model.scale.item() if model.scale is not None else None,
        "vocab_size": V,
        "tokenizer": corpus["tokenizer"],
        "n_train_tokens": corpus["n_train_tokens"],
        "n_params": n_params,
    }
    # the trained table beside the run files (what the audit experiment reads), as one set
    from ..runio import atomic_save, output_set

    table = {"E": model.E.detach().float().cpu(), "itos": corpus.get("itos"), "embedding": spec["embedding"],
             "method": spec["method"], "seed": seed}
    with output_set():
        atomic_save(Path(out_dir) / "embedding.pt", lambda tmp: torch.save(table, tmp))
        summary = rec.finish(final=final)
    print(f"-> test perplexity {ev['perplexity']:.1f} (unigram {ev['unigram_perplexity']:.1f} on the same tokens), next-token "
          f"accuracy {ev['accuracy']:.4f}, E: min angle {geo['min_angle']:.4f} rad, circular variance "
          f"{geo['circular_variance']:.3f}; {train_time:.1f} s, {final['tokens_per_s']:.0f} tokens/s -> {out_dir}",
          flush=True)
    return summary


# --------------------------------------------------------------------------- workflow paths


class TextPaths:
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
        self.config = config
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

    def outputs(self) -> list[str]:
        """Every target of ``rule all`` (empty without a ``text`` section)."""
        if "text" not in self.config:
            return []
        out: list[str] = []
        for task in ("classify", "lm"):
            r = self.report_outputs(task)
            out += [r["csv"], *r["tables"], *r["figures"]]
        return out


# --------------------------------------------------------------------------- config checks


def check_text_config(config: dict) -> None:
    """Raise ``ValueError`` naming the key if a text method or dataset is unknown, or a variant's
    parameters (with the text overrides) do not build a regularizer."""
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
                reg, params, _ = _variant(config, sec, m, baselines)
                if reg is not None and reg != "uniform":
                    build(reg, **params)
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


# --------------------------------------------------------------------------- command line


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--spec is not valid JSON ({e}): {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise ValueError("--spec must be a JSON object")
    return value


def _with_device(spec: dict, device: str | None, threads: int | None = None) -> dict:
    if threads:
        import torch

        torch.set_num_threads(threads)
    return {**spec, "device": device} if device else spec


def _cmd_features(args) -> None:
    compute_features(_with_device(_json(args.spec), args.device, args.threads), args.out, progress=not args.no_progress)


def _cmd_classify(args) -> None:
    classify(_with_device(_json(args.spec), args.device, args.threads), args.out, args.seed, args.features,
             progress=not args.no_progress)


def _cmd_corpus(args) -> None:  # tokenisation only: no device
    build_corpus(_json(args.spec), args.out)


def _cmd_lm(args) -> None:
    lm(_with_device(_json(args.spec), args.device, args.threads), args.out, args.seed, args.corpus, progress=not args.no_progress)


def _cmd_report(args) -> None:
    from ..report import text as report

    from ..runio import output_set

    with output_set():  # the CSVs, every table and figure, or none
        paths = report.report(args.classify or [], args.lm or [], results_dir=args.results_dir,
                              tables_dir=args.tables_dir, figures_dir=args.figures_dir)
    print("-> " + ", ".join(paths))


def add_text_commands(subparsers) -> None:
    """Add ``text-features``, ``text-classify``, ``text-corpus``, ``text-lm`` and ``text-report``."""
    def common(s, device=True):
        s.add_argument("--spec", required=True, help="the resolved spec as a JSON object (see the *_spec functions)")
        if device:
            s.add_argument("--device", default=None, help="override the spec's device: auto | cpu | cuda | cuda:N")
            s.add_argument("--no-progress", action="store_true", help="hide the progress bars")
            s.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's choice)")

    s = subparsers.add_parser("text-features", help="encode a text dataset once (frozen sentence features)",
                              description="Encode the train and test texts of one dataset with the sentence encoder "
                              "and write the features (.pt) to --out.")
    common(s)
    s.add_argument("--out", required=True, help="features file to write (.pt)")
    s.set_defaults(func=_cmd_features)

    s = subparsers.add_parser("text-classify", help="one sentence-classification run (prototypes or softmax)",
                              description="Place prototypes (unless softmax), train the projection on frozen "
                              "features and write metrics.jsonl and summary.json into --out.")
    common(s)
    s.add_argument("--features", required=True, help="features file from text-features")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--seed", type=int, required=True)
    s.set_defaults(func=_cmd_classify)

    s = subparsers.add_parser("text-corpus", help="tokenise the language-model corpus once",
                              description="Tokenise the train/test parts of the local corpora and write the token "
                              "streams, vocabulary facts and the unigram perplexity (.pt) to --out.")
    common(s, device=False)
    s.add_argument("--out", required=True, help="corpus file to write (.pt)")
    s.set_defaults(func=_cmd_corpus)

    s = subparsers.add_parser("text-lm", help="one language-model run with a spherical embedding table",
                              description="Train the small causal Transformer LM with CE + lambda * R(E) and write "
                              "metrics.jsonl and summary.json into --out.")
    common(s)
    s.add_argument("--corpus", required=True, help="corpus file from text-corpus")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--seed", type=int, required=True)
    s.set_defaults(func=_cmd_lm)

    s = subparsers.add_parser("text-report", help="tidy CSVs, tables and figures of the text runs",
                              description="Merge text summary.json files into CSVs and write the classification and "
                              "language-model tables (Markdown + LaTeX) and figures (PDF + PNG).")
    s.add_argument("--classify", nargs="*", help="summary.json files of text-classify runs")
    s.add_argument("--lm", nargs="*", help="summary.json files of text-lm runs")
    s.add_argument("--results-dir", required=True, help="where text_classify_runs.csv / text_lm_runs.csv go")
    s.add_argument("--tables-dir", required=True, help="where text_*.md/.tex go")
    s.add_argument("--figures-dir", required=True, help="where text_*.pdf/.png go")
    s.set_defaults(func=_cmd_report)
