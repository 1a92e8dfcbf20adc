"""A language model with a spherical vocabulary (issue 6; after the NMT experiment of
arXiv:2502.08231: the many-classes regime of dispersion on text, in miniature).

The paper's NMT regime in miniature: a small causal Transformer LM
(:class:`dispersion.models.text.CausalTransformerLM`) whose tied embedding table E (V × d) is
a geoopt ``ManifoldParameter`` on ``SphereExact``; loss = CE + λ · R(E), λ = 10, R evaluated
once per batch on the table: ``none``; MHE RBF (γ = 0.01) on ``reg_rows`` rows sampled per batch
(paper: 1 000–2 048); Lloyd with M = 100 samples over all rows; Sliced with one great circle
over all rows; plus the ``euclidean`` baseline (an ordinary unnormalised tied table, no
regularizer). Riemannian Adam (lr 5·10⁻³) trains E, Adam the rest; both follow a linear
warm-up then cosine decay to 10 %. Reported: held-out perplexity and next-token accuracy,
``min_angle`` / ``circular_variance`` / nearest-neighbour angles of E (of its row directions
for the Euclidean table), training time and tokens per second; the corpus' add-one unigram
perplexity is stored with the tokenised corpus (:func:`dispersion.data.text_inputs.build_corpus`) and printed beside.

The step loop, the loss CE + λ·R(E) and the evaluation are those of :mod:`dispersion.training`
(:func:`~dispersion.training.train_lm`, :func:`~dispersion.training.regularized_loss`,
:func:`~dispersion.training.evaluate_lm`); the embedding table's optimiser is
``optim.make_optimizer("riemannian_adam")``. Writes ``metrics.jsonl``, ``summary.json`` (:class:`dispersion.runio.RunRecorder`) and the
trained table ``embedding.pt``.
"""

from __future__ import annotations

from pathlib import Path

from .._config import deep_merge, require_keys

__all__ = ["run", "BASELINES", "TRAIN_DEFAULTS", "MODEL_DEFAULTS"]

#: Methods that are not dispersion variants.
BASELINES = {"none": "Spherical, no regularizer", "euclidean": "Euclidean (unnormalised)"}
#: What a spec's ``model`` and ``train`` hold where the config leaves them out.
MODEL_DEFAULTS = {"dim": 128, "n_layers": 4, "n_heads": 4, "ff_dim": None, "max_len": 128, "dropout": 0.1,
                  "logit_scale": 10.0}
TRAIN_DEFAULTS = {"steps": 3000, "batch_size": 32, "seq_len": 128, "lr": 1e-3, "embedding_lr": 5e-3,
                  "warmup": 100, "min_lr_ratio": 0.1, "lambda": 10.0, "lambda_per": "token", "reg_rows": 1024,
                  "amp": True, "log_every": 50, "eval_every": 0, "eval_tokens": None, "eval_batch_size": 32,
                  "hist_bins": 90}
_REQUIRED = ("method", "embedding", "regularizer", "params", "model", "train", "seed", "corpus")


def run(spec: dict, out_dir: str | Path, *, progress: bool = True, save_embedding: bool = True) -> dict:
    """Train and evaluate one (method, seed) language model; write its run files.

    Parameters
    ----------
    spec : dict
        ``method``, ``label``, ``embedding`` (``sphere``/``euclidean``), ``regularizer`` (None or
        a name of :data:`dispersion.METHODS`), ``params``, ``model``
        (:class:`~dispersion.models.text.CausalTransformerLM` arguments, :data:`MODEL_DEFAULTS`),
        ``train`` (:data:`TRAIN_DEFAULTS`: steps, batch_size, seq_len, lr, embedding_lr, warmup,
        min_lr_ratio, lambda, lambda_per, reg_rows, amp, log_every, eval_every, eval_tokens,
        eval_batch_size, hist_bins; see :func:`dispersion.training.regularized_loss` for
        ``lambda`` and ``lambda_per``), ``seed`` (int: the initialisation and the batch positions
        (one stream), and, through a seed drawn from that stream, the regularizer's random draws
        and the MHE row samples (another)), ``corpus`` (the file written by
        :func:`dispersion.data.text_inputs.build_corpus`) and optional ``device``. The workflow
        builds it with :func:`dispersion.pipeline.text.lm_spec` (+ seed and corpus).
    out_dir : path

    save_embedding : also write ``embedding.pt`` (default); off where only the metrics are kept
        (a V = 30 522, d = 128 table is 15.6 MB per run).

    Writes ``metrics.jsonl``, ``summary.json`` and, with ``save_embedding``, ``embedding.pt``
    (the trained table ``E`` as stored, float32 on the CPU, with the word vocabulary ``itos``
    when there is one) into ``out_dir``, as one set. Returns the summary dict; ``final`` holds
    ``test_perplexity``, ``test_accuracy``, ``test_loss`` (nats/token), ``unigram_perplexity``, the geometry of E
    (:func:`dispersion.training.embedding_geometry`), and of its rows seen and never seen in
    the training text on their own (``n_unseen_rows``; ``min_angle``, ``circular_variance``,
    ``mean_nn_angle`` with suffix ``_seen`` / ``_unseen``; the evaluation rows of
    ``metrics.jsonl`` also carry ``min_angle_unseen`` and ``circular_variance_unseen``), ``train_time_s`` (the update steps only,
    CUDA synchronised), ``tokens_per_s``, ``logit_scale`` and sizes. Raises ``ValueError`` for a
    bad spec or a diverged loss.
    """
    import torch

    from ..models.text import CausalTransformerLM
    from ..regularizers import build
    from ..runio import RunRecorder, atomic_save, output_set, resolve_device, seed_everything
    from ..training import embedding_geometry, evaluate_lm, regularizer_weight, tied_table_optimizers, train_lm

    require_keys(spec, _REQUIRED)
    seed, corpus_path = spec["seed"], spec["corpus"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"spec key 'seed' must be an int, got {type(seed).__name__}")
    if spec["embedding"] == "euclidean" and spec["regularizer"] is not None:
        raise ValueError("the euclidean baseline takes no regularizer (its rows are not on the sphere)")
    tr = deep_merge(TRAIN_DEFAULTS, spec["train"])
    mc = deep_merge(MODEL_DEFAULTS, spec["model"])
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
    train_counts = torch.bincount(corpus["train_ids"], minlength=V)
    counts = train_counts.double() + 1  # add-one unigram of the train text
    # rows whose token never occurs in the training text: they only ever get the softmax's push
    # away from the contexts, the same push for all of them (the paper's collapsing rare rows)
    unseen = (train_counts == 0).to(device)
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
    opts, scheds = tied_table_optimizers(model, spec["embedding"], tr, steps)
    amp = bool(tr["amp"]) and device.type == "cuda"
    n_params = sum(p.numel() for p in model.parameters())
    rec = RunRecorder(out_dir, spec, seed, device)
    print(f"text lm: method={spec['method']} ({spec['label']}) seed={seed} on {device}; V={V}, d={mc['dim']}, "
          f"{mc['n_layers']} layers, {steps} steps x {B} x {T} tokens; corpus {corpus['n_train_tokens']} train "
          f"tokens, unigram perplexity {corpus['unigram_perplexity']:.1f}", flush=True)

    def evaluate(step: int) -> dict:
        ev = evaluate_lm(model, test_ids, T, int(tr["eval_batch_size"]), tr.get("eval_tokens"), device, amp,
                         unigram_logp)
        table = model.embedding_table()
        geo = embedding_geometry(table, int(tr["hist_bins"]))
        out = {"test_perplexity": ev["perplexity"], "test_accuracy": ev["accuracy"],
               "min_angle": geo["min_angle"], "circular_variance": geo["circular_variance"]}
        if 2 <= int(unseen.sum()) < V:
            geo_u = embedding_geometry(table[unseen], int(tr["hist_bins"]))
            out.update(min_angle_unseen=geo_u["min_angle"], circular_variance_unseen=geo_u["circular_variance"])
        return out

    if int(tr.get("eval_every") or 0):  # the initial table too, where the min angle curves start
        rec.log(step=0, **evaluate(0))
    timing = train_lm(model, train_ids, steps=steps, batch_size=B, seq_len=T, optimizers=opts,
                      schedulers=scheds, regularizer=reg, lam=lam, lambda_per=lambda_per, reg_rows=reg_rows,
                      generator=cpu_gen, reg_generator=gen, device=device, amp=amp, log_every=int(tr["log_every"]),
                      log=lambda row: rec.log(**row), evaluate=evaluate, eval_every=int(tr.get("eval_every") or 0),
                      progress=progress, desc=f"lm {spec['method']} s{seed}")
    train_time = timing["train_time_s"]
    ev = evaluate_lm(model, test_ids, T, int(tr["eval_batch_size"]), tr.get("eval_tokens"), device, amp, unigram_logp)
    table = model.embedding_table()
    geo = embedding_geometry(table, int(tr["hist_bins"]))
    n_unseen = int(unseen.sum())
    geo_u = embedding_geometry(table[unseen], int(tr["hist_bins"])) if 2 <= n_unseen < V else None
    geo_s = embedding_geometry(table[~unseen], int(tr["hist_bins"])) if 2 <= V - n_unseen < V else None
    by_frequency = {"n_unseen_rows": n_unseen}
    for name, g in (("unseen", geo_u), ("seen", geo_s)):
        if g is not None:
            by_frequency.update({f"{k}_{name}": g[k] for k in ("min_angle", "circular_variance", "mean_nn_angle")})
    rec.log(step=steps, test_perplexity=ev["perplexity"], test_accuracy=ev["accuracy"], min_angle=geo["min_angle"],
            circular_variance=geo["circular_variance"],
            **{k: by_frequency[k] for k in ("min_angle_unseen", "circular_variance_unseen") if k in by_frequency})
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
        **by_frequency,
        "max_row_norm_error": norm_err,
        "lambda": lam,
        "lambda_per": lambda_per,
        "lambda_effective": weight if reg is not None else 0.0,
        "train_time_s": train_time,
        "tokens_per_s": timing["tokens_per_s"],
        "train_tokens_seen": steps * B * T,
        "logit_scale": model.scale.item() if model.scale is not None else None,
        "vocab_size": V,
        "tokenizer": corpus["tokenizer"],
        "n_train_tokens": corpus["n_train_tokens"],
        "n_params": n_params,
    }
    # the trained table beside the run files (what the audit experiment reads), as one set
    with output_set():
        if save_embedding:
            table = {"E": model.E.detach().float().cpu(), "itos": corpus.get("itos"), "embedding": spec["embedding"],
                     "method": spec["method"], "seed": seed}
            atomic_save(Path(out_dir) / "embedding.pt", lambda tmp: torch.save(table, tmp))
        summary = rec.finish(final=final)
    print(f"-> test perplexity {ev['perplexity']:.1f} (unigram {ev['unigram_perplexity']:.1f} on the same tokens), next-token "
          f"accuracy {ev['accuracy']:.4f}, E: min angle {geo['min_angle']:.4f} rad, circular variance "
          f"{geo['circular_variance']:.3f}; {train_time:.1f} s, {final['tokens_per_s']:.0f} tokens/s -> {out_dir}",
          flush=True)
    return summary
