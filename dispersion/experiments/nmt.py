"""Machine translation with a tied embedding table on the sphere (the NMT experiment of
arXiv:2502.08231; its Table 3: BLEU, COMET, min angle and circular variance of the table).

One run trains :class:`dispersion.models.nmt.TransformerNMT` — an encoder–decoder Transformer
whose one joint source–target subword table E (V × d) embeds the encoder input and the decoder
input and scores the output — on a tokenised parallel corpus
(:func:`dispersion.data.multi30k.prepare_corpus`: Multi30k task 1, Elliott et al. 2016), with the
loss CE + λ·R(E) per target token (:func:`dispersion.training.regularized_loss`; the paper's
λ = 10), R evaluated once per batch on the table: ``none`` (the sphere, no regularizer), MHE RBF
(the paper's γ_a = 0.01) on ``reg_rows`` rows sampled per batch, Lloyd (M = 100) or Sliced (one
great circle) on all rows; plus the ``euclidean`` baseline (an ordinary unnormalised tied table,
no regularizer). Riemannian Adam (lr 5·10⁻³) trains E on the sphere, Adam the rest; both follow a
linear warm-up and a cosine decay (:func:`dispersion.training.warmup_cosine`).

The step loop is :func:`dispersion.training.train_steps` (the language model's,
:mod:`dispersion.experiments.text_lm`) with the sentence-pair batches of
:class:`~dispersion.training.Seq2SeqBatches` (length-bucketed, a new order every epoch, drawn from
the run's seed). Training pairs longer than the model's ``max_len`` are left out (counted in the
summary); evaluation sources are cut to fit.

Reported (``summary.json`` ``final``; every ``eval_every`` steps and at the end also in
``metrics.jsonl``): the teacher-forced validation loss (nats per target token), perplexity and
next-token accuracy; **greedy** translations of the test set (at most ``max_len_a``·|source| +
``max_len_b`` tokens each), detokenised by the vocabulary's decoder and scored with sacreBLEU's
BLEU and chrF (:func:`dispersion.training.translation_scores`, with the signature strings); the
geometry of E — exact ``min_angle`` (:func:`dispersion.metrics.min_angle`), the authors' clamped
``min_angle_clamped`` (:func:`dispersion.metrics.clamped_min_angle`: their metric cannot go below
1.414·10⁻³ rad), ``circular_variance`` and the mean nearest-neighbour angle — of all V rows, of
the **rare** rows (tokens that occur 1 to ``rare_below`` − 1 times in the tokenised training
source and target text; suffix ``_rare``) and of the **never-seen** rows (0 times; suffix
``_unseen``; the special tokens belong to neither group); training time and target tokens per
second. Writes ``metrics.jsonl`` and ``summary.json`` (:class:`dispersion.runio.RunRecorder`).
"""

from __future__ import annotations

from pathlib import Path

from .._config import Bool, Choice, Dict, Int, Number, Str, check_spec, deep_merge

__all__ = ["run", "resolve", "BASELINES", "MODEL_DEFAULTS", "TRAIN_DEFAULTS", "DECODE_DEFAULTS", "REQUIRED", "OPTIONAL"]

#: Methods that are not dispersion variants.
BASELINES = {"none": "Spherical, no regularizer", "euclidean": "Euclidean (unnormalised)"}
#: What a spec's ``model``, ``train`` and ``decode`` hold where the config leaves them out.
MODEL_DEFAULTS = {"dim": 128, "n_encoder_layers": 3, "n_decoder_layers": 3, "n_heads": 4, "ff_dim": None,
                  "max_len": 128, "dropout": 0.1, "logit_scale": 10.0}
TRAIN_DEFAULTS = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "embedding_lr": 5e-3, "warmup": 400,
                  "min_lr_ratio": 0.1, "lambda": 10.0, "lambda_per": "token", "reg_rows": 2048, "amp": True,
                  "log_every": 50, "eval_every": 0, "eval_batch_size": 128, "rare_below": 5, "hist_bins": 90}
DECODE_DEFAULTS = {"max_len_a": 1.5, "max_len_b": 10, "batch_size": 100}
#: The keys of a run spec and what each must be (``dispersion._config.check_spec``).
REQUIRED = {"method": Str, "label": Str, "embedding": Choice("sphere", "euclidean"), "params": Dict, "model": Dict,
            "train": Dict, "decode": Dict, "seed": Int(0), "corpus": Str}
OPTIONAL = {"regularizer": Str, "device": Str}
_MODEL_FIELDS = {"dim": Int(2), "n_encoder_layers": Int(1), "n_decoder_layers": Int(1), "n_heads": Int(1),
                 "ff_dim": Int(1), "max_len": Int(4), "dropout": Number(), "logit_scale": Number(positive=True)}
_TRAIN_FIELDS = {"epochs": Int(1), "batch_size": Int(1), "lr": Number(positive=True),
                 "embedding_lr": Number(positive=True), "warmup": Int(0), "min_lr_ratio": Number(),
                 "lambda": Number(), "lambda_per": Choice("token", "batch"), "reg_rows": Int(2), "amp": Bool,
                 "log_every": Int(1), "eval_every": Int(0), "eval_batch_size": Int(1), "rare_below": Int(1),
                 "hist_bins": Int(1)}
_DECODE_FIELDS = {"max_len_a": Number(), "max_len_b": Int(0), "batch_size": Int(1)}


def _section(spec: dict, key: str, defaults: dict, fields: dict) -> dict:
    merged = deep_merge(defaults, spec[key])
    return check_spec(merged, {}, fields, name=f"spec key {key!r}")


def resolve(spec: dict) -> tuple[dict, dict, dict, dict]:
    """Check a run spec and resolve its sections: ``(spec, model, train, decode)``, the sections
    merged over :data:`MODEL_DEFAULTS`, :data:`TRAIN_DEFAULTS` and :data:`DECODE_DEFAULTS`.

    What :func:`run` checks before any work (and the workflow's config check for every run):
    the keys and types of :data:`REQUIRED` / :data:`OPTIONAL` and of each section (an unknown
    key is an error, with the closest known one), ``dim`` divisible by ``n_heads``, λ ≥ 0 with a
    known ``lambda_per``, no regularizer on the Euclidean table. Raises ``ValueError`` naming the
    key (``TypeError`` when ``spec`` is not a dict).
    """
    from ..training import regularizer_weight

    spec = check_spec(spec, REQUIRED, OPTIONAL)
    mc = _section(spec, "model", MODEL_DEFAULTS, _MODEL_FIELDS)
    tr = _section(spec, "train", TRAIN_DEFAULTS, _TRAIN_FIELDS)
    dc = _section(spec, "decode", DECODE_DEFAULTS, _DECODE_FIELDS)
    if spec["embedding"] == "euclidean" and spec.get("regularizer") is not None:
        raise ValueError("the euclidean baseline takes no regularizer (its rows are not on the sphere)")
    if mc["dim"] % mc["n_heads"]:
        raise ValueError(f"spec key 'model': dim ({mc['dim']}) must be divisible by n_heads ({mc['n_heads']})")
    try:
        regularizer_weight(float(tr["lambda"]), 1, tr["lambda_per"])
    except ValueError as e:
        raise ValueError(f"spec key 'train': {e}") from None
    return spec, mc, tr, dc


def _groups(counts, n_special: int, rare_below: int):
    """Boolean (V,) masks of the rare and never-seen rows (module docstring)."""
    import torch

    text = torch.arange(counts.numel()) >= n_special
    return text & (counts >= 1) & (counts < rare_below), text & (counts == 0)


def run(spec: dict, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Train and evaluate one (method, seed) translation model; write its run files.

    Parameters
    ----------
    spec : dict
        :data:`REQUIRED` and :data:`OPTIONAL`: ``method``, ``label``, ``embedding``
        (``sphere``/``euclidean``), ``regularizer`` (None or a name of
        :data:`dispersion.METHODS`), ``params``, ``model`` (:class:`TransformerNMT
        <dispersion.models.nmt.TransformerNMT>` arguments, :data:`MODEL_DEFAULTS`), ``train``
        (:data:`TRAIN_DEFAULTS`: epochs, batch_size (sentence pairs), lr, embedding_lr, warmup
        (steps), min_lr_ratio, lambda, lambda_per (:func:`dispersion.training.regularized_loss`),
        reg_rows (rows a pairwise regularizer sees per batch; None: all), amp (bf16 autocast on
        CUDA), log_every, eval_every (steps; 0: only at the end), eval_batch_size, rare_below,
        hist_bins), ``decode`` (:data:`DECODE_DEFAULTS`: max_len_a, max_len_b, batch_size of the
        greedy decoding), ``seed`` (int ≥ 0: the initialisation and the batch order (one
        stream) and, through a seed drawn from it, the regularizer's draws and the MHE row
        samples (another)), ``corpus`` (the file of :func:`dispersion.data.multi30k.prepare_corpus`)
        and optional ``device``. The workflow builds it with
        :func:`dispersion.pipeline.nmt.nmt_spec` (+ seed and corpus).
    out_dir : path
    progress : show progress bars.

    Returns the summary dict (``final``: module docstring). Raises ``ValueError`` naming the key
    for a bad spec (:func:`resolve`, before any work), ``FileNotFoundError`` for a missing corpus
    and ``ValueError`` for a diverged loss.
    """
    import time

    import torch
    from tokenizers import Tokenizer

    from ..models.nmt import TransformerNMT
    from ..regularizers import build
    from ..runio import RunRecorder, resolve_device, seed_everything
    from ..training import (
        Seq2SeqBatches,
        embedding_geometry,
        evaluate_seq2seq,
        seq2seq_loss,
        train_steps,
        translate,
        tied_table_optimizers,
        translation_scores,
    )

    spec, mc, tr, dc = resolve(spec)
    seed, regularizer = spec["seed"], spec.get("regularizer")
    if not Path(spec["corpus"]).is_file():
        raise FileNotFoundError(f"spec key 'corpus': {spec['corpus']} does not exist (write it with nmt-corpus)")
    corpus = torch.load(spec["corpus"], map_location="cpu", weights_only=False)
    device = resolve_device(spec.get("device") or "auto")
    gen = seed_everything(seed, device)
    cpu_gen = torch.Generator().manual_seed(seed)
    V, pad, bos, eos = (int(corpus[k]) for k in ("vocab_size", "pad_id", "bos_id", "eos_id"))
    L = int(mc["max_len"])
    keep = [i for i, (s, t) in enumerate(zip(corpus["train_src"], corpus["train_tgt"]))
            if len(s) + 1 <= L and len(t) + 1 <= L]
    n_dropped = len(corpus["train_src"]) - len(keep)
    if not keep:
        raise ValueError(f"spec key 'model': every training pair is longer than max_len = {L} tokens")
    B, epochs = int(tr["batch_size"]), int(tr["epochs"])
    train_batches = Seq2SeqBatches([corpus["train_src"][i] for i in keep], [corpus["train_tgt"][i] for i in keep], B,
                                   pad_id=pad, bos_id=bos, eos_id=eos, shuffle=True, generator=cpu_gen, device=device)
    val_batches = Seq2SeqBatches([s[:L - 1] for s in corpus["val_src"]], [t[:L - 1] for t in corpus["val_tgt"]],
                                 int(tr["eval_batch_size"]), pad_id=pad, bos_id=bos, eos_id=eos, device=device)
    steps = epochs * len(train_batches)
    model = TransformerNMT(V, int(mc["dim"]), int(mc["n_encoder_layers"]), int(mc["n_decoder_layers"]),
                           int(mc["n_heads"]), mc.get("ff_dim"), L, float(mc["dropout"]), spec["embedding"],
                           float(mc["logit_scale"]), pad_id=pad, generator=cpu_gen).to(device)
    # the regularizer's draws get a stream of their own, seeded from the initialisation stream
    # (as in the language model: sharing the stream made Lloyd's samples the table's own rows)
    gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=cpu_gen)))
    reg = None if regularizer is None else build(regularizer, generator=gen, **spec["params"])
    lam, lambda_per = float(tr["lambda"]), tr["lambda_per"]
    pairwise = reg is not None and getattr(reg, "pairwise", False)
    reg_rows = int(tr["reg_rows"]) if pairwise and tr.get("reg_rows") else None  # None: every row
    opts, scheds = tied_table_optimizers(model, spec["embedding"], tr, steps)
    amp = bool(tr["amp"]) and device.type == "cuda"
    rare, unseen = _groups(corpus["counts"], int(corpus["n_special"]), int(tr["rare_below"]))
    rare, unseen = rare.to(device), unseen.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    rec = RunRecorder(out_dir, spec, seed, device)
    print(f"nmt: method={spec['method']} ({spec['label']}) seed={seed} on {device}; {corpus['tokenizer_name']}, "
          f"{int(rare.sum())} rare and {int(unseen.sum())} never-seen rows; d={mc['dim']}, "
          f"{mc['n_encoder_layers']}+{mc['n_decoder_layers']} layers, {n_params / 1e6:.2f} M parameters; {epochs} "
          f"epochs x {len(train_batches)} batches of {B} pairs = {steps} steps ({n_dropped} training pairs over "
          f"max_len {L} left out); then greedy decoding of {len(corpus['test_src'])} test sentences", flush=True)

    def geometry(full: bool = False) -> dict:
        table = model.embedding_table()
        bins = int(tr["hist_bins"])
        out = {}
        for suffix, mask in (("", None), ("_rare", rare), ("_unseen", unseen)):
            rows = table if mask is None else table[mask]
            if rows.shape[0] < 2:
                continue
            g = embedding_geometry(rows, bins)
            keys = ("min_angle", "min_angle_clamped", "circular_variance", "mean_nn_angle")
            if full:
                keys += ("median_nn_angle",) + (("nn_angle_hist", "nn_angle_hist_max") if mask is None else ())
            out.update({f"{k}{suffix}": g[k] for k in keys})
        return out

    def evaluate(step: int) -> dict:
        ev = evaluate_seq2seq(model, val_batches, pad_id=pad, amp=amp)
        return {"val_loss": ev["loss"], "val_perplexity": ev["perplexity"], "val_accuracy": ev["accuracy"],
                **geometry()}

    eval_every = int(tr.get("eval_every") or 0)
    if eval_every:  # the initial table too, where the min angle curves start
        rec.log(step=0, **evaluate(0))
    state = {"it": iter(train_batches)}

    def batch_loss():
        try:
            batch = next(state["it"])
        except StopIteration:  # the next epoch, in a new order
            state["it"] = iter(train_batches)
            batch = next(state["it"])
        return seq2seq_loss(model, batch, pad_id=pad, amp=amp)

    announced = []

    def log(row: dict) -> None:
        rec.log(**row)
        if not announced and row.get("train_time_s") and row["step"] < steps:  # how long, once timed
            announced.append(row["step"])
            rest = row["train_time_s"] / row["step"] * (steps - row["step"])
            print(f"  {row['step']} steps in {row['train_time_s']:.0f} s: about {rest / 60:.0f} min of training to go",
                  flush=True)

    timing = train_steps(model, batch_loss, steps=steps, optimizers=opts, schedulers=scheds, regularizer=reg,
                         lam=lam, lambda_per=lambda_per, reg_rows=reg_rows, reg_generator=gen, device=device,
                         log_every=int(tr["log_every"]), log=log, evaluate=evaluate, eval_every=eval_every,
                         progress=progress, desc=f"nmt {spec['method']} s{seed}")
    ev = evaluate_seq2seq(model, val_batches, pad_id=pad, amp=amp)
    geo = geometry(full=True)
    t0 = time.perf_counter()
    hyp_ids = translate(model, corpus["test_src"], bos_id=bos, eos_id=eos, batch_size=int(dc["batch_size"]),
                        max_len_a=float(dc["max_len_a"]), max_len_b=int(dc["max_len_b"]), device=device, amp=amp,
                        progress=progress)
    tok = Tokenizer.from_str(corpus["tokenizer"])
    hyps = tok.decode_batch(hyp_ids, skip_special_tokens=True)
    decode_time = time.perf_counter() - t0
    refs = corpus["test_tgt_text"]
    scores = translation_scores(hyps, refs)
    rec.log(step=steps, val_loss=ev["loss"], val_perplexity=ev["perplexity"], val_accuracy=ev["accuracy"],
            bleu=scores["bleu"], chrf=scores["chrf"],
            **{k: v for k, v in geo.items() if not k.startswith(("nn_angle_hist", "median"))})
    norm_err = (model.E.detach().norm(dim=1) - 1).abs().max().item() if model.embedding == "sphere" else None
    final = {
        **scores,
        "val_loss": ev["loss"],
        "val_perplexity": ev["perplexity"],
        "val_accuracy": ev["accuracy"],
        "val_tokens": ev["tokens"],
        "test_sentences": len(hyps),
        "decoding": "greedy",
        "mean_hypothesis_tokens": sum(map(len, hyp_ids)) / max(1, len(hyp_ids)),
        **geo,
        "n_rows": V,
        "n_rows_special": int(corpus["n_special"]),
        "n_rows_rare": int(rare.sum()),
        "n_rows_unseen": int(unseen.sum()),
        "rare_below": int(tr["rare_below"]),
        "max_row_norm_error": norm_err,
        "lambda": lam,
        "lambda_per": lambda_per,
        "target_tokens_per_batch": timing["tokens"] / max(1, steps),
        "train_time_s": timing["train_time_s"],
        "tokens_per_s": timing["tokens_per_s"],
        "step_time_s": timing["train_time_s"] / max(1, steps),
        "decode_time_s": decode_time,
        "steps": steps,
        "epochs": epochs,
        "logit_scale": model.scale.item() if model.scale is not None else None,
        "vocab_size": V,
        "tokenizer": corpus["tokenizer_name"],
        "n_train_pairs": len(keep),
        "n_train_pairs_dropped": n_dropped,
        "n_params": n_params,
        "corpus_source": corpus["source"],
        "corpus_md5_as_reference": corpus.get("md5_as_reference"),
    }
    examples = [{"source": corpus["test_src_text"][i], "reference": refs[i], "hypothesis": hyps[i]}
                for i in range(min(5, len(hyps)))]
    summary = rec.finish(final=final, examples=examples)
    print(f"-> BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} ({scores['bleu_signature']}), validation loss "
          f"{ev['loss']:.3f}; E: min angle {geo['min_angle']:.4f} rad (clamped as the authors: "
          f"{geo['min_angle_clamped']:.4f}), circular variance {geo['circular_variance']:.3f}; training "
          f"{timing['train_time_s']:.0f} s ({final['step_time_s']:.2f} s/step), decoding {decode_time:.0f} s "
          f"-> {out_dir}",
          flush=True)
    return summary
