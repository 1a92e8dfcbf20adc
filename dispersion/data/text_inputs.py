"""The prepared inputs of the text experiments, computed once per dataset and cached.

* :func:`compute_features` — frozen sentence features of a classification dataset (the
  sentence encoder's mean-pooled, L2-normalised embeddings of its train and test texts), the
  input of :mod:`dispersion.experiments.text_classify`;
* :func:`encode_split` — the (not normalised) sentence embeddings of one split of a text
  corpus, with labels and texts: a table of the audit experiment
  (:mod:`dispersion.experiments.audit`);
* :func:`build_corpus` — the tokenised language-model corpus (train/test token streams, the
  vocabulary facts and the add-one unigram perplexity), the input of
  :mod:`dispersion.experiments.text_lm`.

Both write one ``.pt`` file atomically and return its record without the tensors. torch and
the loaders are imported when they run (the workflow's config check reads
:data:`ENCODER_DEFAULTS` without them).
"""

from __future__ import annotations

import time
from pathlib import Path

from .._config import Choice, Dict, Int, Str, deep_merge

__all__ = ["ENCODER_DEFAULTS", "ENCODER_NAMES", "TEXT_SPLIT_KEYS", "compute_features", "encode_split", "build_corpus"]

#: The sentence encoder's settings where a spec leaves them out.
ENCODER_DEFAULTS = {"name": "minilm", "max_length": 128, "batch_size": 64, "normalize": True}
#: The full names of the encoder aliases.
ENCODER_NAMES = {"minilm": "all-MiniLM-L6-v2"}
#: Keys of the spec of one encoded split (:func:`encode_split`): (required, optional) fields of
#: ``dispersion._config.check_spec``.
TEXT_SPLIT_KEYS = ({"type": Str, "dataset": Str, "split": Choice("train", "test", "all")},
                   {"max_rows": Int(2), "subset_seed": Int(0), "encoder": Dict, "path": Str})


def compute_features(spec: dict, out_path: str | Path, *, progress: bool = True, encoder=None) -> dict:
    """Encode the train and test texts of ``spec["dataset"]`` once; write them to ``out_path``.

    The file (``torch.save``, written atomically) holds ``train``/``test`` (N, H) float32
    features, ``train_labels``/``test_labels`` (N,) int64, ``label_names``, ``spec``, the
    source description and ``encode_time_s``. ``max_train``/``max_test`` take a stratified
    subset (:func:`stratified_subset`, seed ``subset_seed``) first.
    ``encoder`` (a :class:`~dispersion.models.text.SentenceEncoder`) reuses a loaded model;
    by default one is built from ``spec["encoder"]``. Returns the record without the tensors.
    """
    import torch

    from ..models.text import SentenceEncoder
    from ..runio import atomic_save, resolve_device
    from .text import load_text_dataset, stratified_subset

    enc = deep_merge(ENCODER_DEFAULTS, spec.get("encoder"))
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


def encode_split(spec: dict, out_path: str | Path, *, progress: bool = False) -> dict:
    """Encode one split of a text corpus with a sentence encoder and save it (``torch.save``,
    atomically) to ``out_path``: ``X`` (N, H) float32 (not normalised: the audit reports the
    norms), ``labels`` (N,) int64, ``label_names``, ``texts``, ``source`` and ``spec``.

    ``spec``: a ``"minilm"`` source (``dataset``, ``split``, optional ``max_rows`` — a
    class-stratified subset, seed ``subset_seed`` (:func:`dispersion.data.text.stratified_subset`),
    ``encoder`` {``name``, ``max_length``, ``batch_size``}, ``path`` of the corpus file) plus an
    optional ``device``. Returns the record without the tensors.
    """
    import torch

    from .._config import check_spec
    from ..models.text import SentenceEncoder
    from ..runio import atomic_save, resolve_device
    from .text import load_text_dataset, stratified_subset

    spec = dict(spec)
    device = resolve_device(spec.pop("device", None) or "auto")
    if spec.get("type") != "minilm":
        raise ValueError(f"spec key 'type': only 'minilm' tables are encoded, got {spec.get('type')!r}")
    src = check_spec(spec, *TEXT_SPLIT_KEYS, name="spec")
    enc = deep_merge(ENCODER_DEFAULTS, src.get("encoder"))
    ds = load_text_dataset(src["dataset"], src["split"], src.get("path"))
    if src.get("max_rows"):
        ds = ds.subset(stratified_subset(ds.labels, int(src["max_rows"]), seed=int(src.get("subset_seed") or 0)))
    print(f"audit embed: {len(ds)} texts of {src['dataset']} [{src['split']}] with {enc['name']} on {device} "
          f"(roughly {len(ds) / 30:.0f} s on one shared CPU thread: 10 000 tweets took 340 s)", flush=True)
    t0 = time.perf_counter()
    encoder = SentenceEncoder(enc["name"], max_length=int(enc["max_length"]))
    X = encoder.encode(ds.texts, batch_size=int(enc["batch_size"]), device=device, progress=progress)
    dt = time.perf_counter() - t0
    record = {"X": X, "labels": ds.labels, "label_names": list(ds.label_names), "texts": list(ds.texts),
              "source": ds.source, "encoder_path": encoder.name_or_path, "spec": src, "device": str(device),
              "encode_time_s": dt}
    atomic_save(out_path, lambda tmp: torch.save(record, tmp))
    print(f"-> {tuple(X.shape)} in {dt:.1f} s -> {out_path}", flush=True)
    return {k: v for k, v in record.items() if k not in ("X", "labels", "texts")}


def build_corpus(spec: dict, out_path: str | Path) -> dict:
    """Tokenise the LM corpus once; write ``train_ids``/``test_ids`` (int64 streams) and facts.

    Train text = the train parts of ``spec["corpora"]``' fixed splits, held-out text = their
    test parts (:func:`lm_corpus_texts`). The word vocabulary is built on
    the train text only. Also stores the add-one ``unigram_perplexity`` of the test stream
    (the baseline the LM must beat) and the number of distinct token types used. Written
    atomically (``torch.save``). Returns the record without the tensors.
    """
    import torch

    from ..runio import atomic_save
    from .text import WordVocab, lm_corpus_texts, tokenize_corpus, unigram_perplexity

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
