"""Tables and figures of the text experiments (issue 6): tidy CSVs from ``summary.json`` files,
Markdown + LaTeX (booktabs) tables of mean ± std over seeds, and two figures (PDF + PNG).

* ``text_classify.{md,tex}`` — test accuracy (%) per method (rows) and dataset × D (columns),
  with a "Majority class" row; ``text_classify_prototypes.{md,tex}`` — the prototypes'
  minimum angle (degrees) per method and dataset × D.
* ``text_lm.{md,tex}`` — the paper's Table 3 in miniature: per method, held-out perplexity,
  next-token accuracy (%), ``min_angle`` (radians) and ``circular_variance`` of the embedding
  table, training time (s) and tokens per second; a last row gives the corpus' add-one unigram
  perplexity.
* ``text_classify_accuracy.{pdf,png}`` — test accuracy per method, one panel per dataset,
  one colour per D, every seed drawn; ``text_lm_geometry.{pdf,png}`` — (a) the distribution of
  the embedding table's nearest-neighbour angles per method, (b) held-out perplexity against
  ``min_angle`` per run, (c) ``min_angle`` against training steps per run.

Reads run files only (never live objects).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from .common import figure_style, load_summaries, mean_std, save_figure, scale_title, tidy_runs, write_table

__all__ = ["aggregate", "classify_table", "lm_table", "classify_figure", "lm_figure", "report"]


def aggregate(summaries: Sequence[str | Path], csv_path: str | Path | None = None) -> pd.DataFrame:
    """One row per run (see :func:`dispersion.report.common.tidy_runs`), optionally written as CSV."""
    from ..runio import atomic_write_text

    df = tidy_runs(load_summaries(summaries))
    if csv_path is not None:
        atomic_write_text(csv_path, df.to_csv(index=False))
    return df


def _order(df: pd.DataFrame, key: str, preferred: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(df[key].tolist()))
    return [m for m in preferred if m in present] + [m for m in present if m not in preferred]


def _config_order(summaries: Sequence[dict], key: str) -> list[str]:
    return list(dict.fromkeys(s["config"][key] for s in summaries))


def classify_table(df: pd.DataFrame, md: str | Path, tex: str | Path, value: str = "test_accuracy",
                   scale: float = 100.0, digits: int = 1, caption: str | None = None, label: str = "tab:text-classify",
                   majority: bool = True) -> pd.DataFrame:
    """Table of ``value`` (× ``scale``) per method (rows) and dataset × D (columns), mean ± std."""
    cols = [(ds, d) for ds in dict.fromkeys(df["dataset"]) for d in sorted(set(df[df["dataset"] == ds]["dim"]))]
    methods = list(dict.fromkeys(df["method"]))
    rows = []
    for m in methods:
        sub = df[df["method"] == m]
        row = {"Method": sub["label"].iloc[0]}
        for ds, d in cols:
            v = sub[(sub["dataset"] == ds) & (sub["dim"] == d)][value]
            row[f"{ds} D={d}"] = mean_std(v * scale, digits) if v.notna().any() else "—"
        rows.append(row)
    if majority:
        row = {"Method": "Majority class"}
        for ds, d in cols:
            v = df[(df["dataset"] == ds) & (df["dim"] == d)]["majority_accuracy"]
            row[f"{ds} D={d}"] = f"{v.iloc[0] * scale:.{digits}f}" if len(v) else "—"
        rows.append(row)
    out = pd.DataFrame(rows)
    n_seeds = df.groupby(["dataset", "dim", "method"]).size().max()
    caption = caption or (f"Text classification on frozen sentence features: test accuracy (%), mean ± std over "
                          f"{n_seeds} seed(s); prototypes placed by each method, Softmax CE the baseline.")
    write_table(out, md, tex, caption, label, runs=df)
    return out


def lm_table(df: pd.DataFrame, md: str | Path, tex: str | Path, caption: str | None = None,
             label: str = "tab:text-lm") -> pd.DataFrame:
    """The LM table: one row per method, mean ± std over seeds, and the unigram row.

    Columns: held-out perplexity, next-token accuracy (%), the table's min angle (rad) and
    circular variance, and — for runs that record them (``n_unseen_rows`` > 1) — the same two of
    the rows never seen in the training text on their own, then train time and tokens/s. The
    caption states the vocabulary, d, steps, λ, seeds, and the scale and device
    (:func:`~dispersion.report.common.provenance`)."""
    split = "min_angle_unseen" in df and df["min_angle_unseen"].notna().any()
    rows = []
    for m in dict.fromkeys(df["method"]):
        sub = df[df["method"] == m]
        row = {
            "Method": sub["label"].iloc[0],
            "Perplexity": mean_std(sub["test_perplexity"], 1),
            "Next-token acc. (%)": mean_std(sub["test_accuracy"] * 100, 2),
            "min angle (rad)": mean_std(sub["min_angle"], 4),
            "circ. variance": mean_std(sub["circular_variance"], 3),
        }
        if split:
            row["min angle, unseen rows (rad)"] = mean_std(sub["min_angle_unseen"], 4)
            row["circ. variance, unseen rows"] = mean_std(sub["circular_variance_unseen"], 3)
        row.update({"Train time (s)": mean_std(sub["train_time_s"], 0), "Tokens/s": mean_std(sub["tokens_per_s"], 0)})
        rows.append(row)
    uni = df["unigram_perplexity"].iloc[0]
    rows.append({"Method": "Unigram (add-one)", "Perplexity": f"{uni:.1f}", **{k: "—" for k in rows[0] if k not in
                                                                              ("Method", "Perplexity")}})
    out = pd.DataFrame(rows)
    first = df.iloc[0]
    n_seeds = df.groupby("method").size().max()
    dim = first.get("model.dim")
    # runs written before train.lambda_per existed added λ·R per batch
    per = "target token" if first.get("train.lambda_per") == "token" else "batch"
    unseen = (f" {int(first['n_unseen_rows'])} of the rows never occur in the training text (\"unseen rows\")."
              if split else "")
    caption = caption or (
        f"Next-token prediction with a tied embedding table of V = {int(first['vocab_size'])} rows "
        f"({first['tokenizer']} tokens), d = {int(dim) if dim == dim else '?'}, "
        f"{int(first['model.n_layers'])} layer(s), {int(first['train.steps'])} steps of "
        f"{int(first['train.batch_size'])} × {int(first['train.seq_len'])} tokens, λ = {first['train.lambda']:g} per {per}; "
        f"held-out perplexity and accuracy, the table's min angle and circular variance; mean ± std over "
        f"{n_seeds} seed(s).{unseen}")
    write_table(out, md, tex, caption, label, runs=df)
    return out


def classify_figure(df: pd.DataFrame, stem: str | Path) -> list[str]:
    """Accuracy per method (x), one panel per dataset, colour = D, every seed a point."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    figure_style()
    datasets = list(dict.fromkeys(df["dataset"]))
    order = list(dict.fromkeys(df["label"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(4.5, 0.55 * len(order)) * len(datasets), 3.6),
                             squeeze=False, sharey=False)
    for ax, ds in zip(axes[0], datasets):
        sub = df[df["dataset"] == ds].assign(accuracy=lambda x: 100 * x["test_accuracy"], D=lambda x: x["dim"].astype(str))
        sns.stripplot(data=sub, x="label", y="accuracy", hue="D", order=order, dodge=True, ax=ax, size=5, alpha=0.8)
        maj = 100 * sub["majority_accuracy"].iloc[0]
        ax.axhline(maj, color="0.4", ls="--", lw=1, label="majority class")
        ax.set_title(ds)
        ax.set_xlabel("")
        ax.set_ylabel("test accuracy (%)")
        ax.tick_params(axis="x", rotation=60)
        for t in ax.get_xticklabels():
            t.set_ha("right")
        ax.legend(title="D", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    n_seeds = df.groupby(["dataset", "dim", "method"]).size().max()
    fig.suptitle(f"Sentence classification on frozen MiniLM features{scale_title(stem)}: every seed a point "
                 f"({n_seeds} seeds)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)


def lm_figure(summaries: Sequence[dict], stem: str | Path) -> list[str]:
    """(a) nearest-neighbour angle distribution of E per method (first seed of each); (b)
    perplexity vs min angle, every run; (c) min angle of E against training steps, every run
    (the evaluation rows of each run's ``metrics.jsonl``; dashed: the rows never seen in
    training, where recorded). Log-scaled angle axes when the angles span over two decades."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    from .common import load_metrics

    figure_style()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.9))
    seen = set()
    palette = dict(zip(_config_order(summaries, "method"), sns.color_palette("tab10")))
    for s in summaries:
        m = s["config"]["method"]
        f = s["final"]
        if m in seen or not f.get("nn_angle_hist"):
            continue
        seen.add(m)
        h = np.asarray(f["nn_angle_hist"], dtype=float)
        edges = np.linspace(0, f.get("nn_angle_hist_max", np.pi / 2), len(h) + 1)
        ax1.stairs(h / max(h.sum(), 1), edges, label=s["config"].get("label", m), color=palette[m], lw=1.5)
    ax1.set_xlabel("nearest-neighbour angle of an embedding row (rad)")
    ax1.set_ylabel("fraction of rows")
    ax1.set_title("(a) spread of the embedding table")
    ax1.legend(fontsize=8)
    for m in palette:
        runs = [s for s in summaries if s["config"]["method"] == m]
        ax2.scatter([r["final"]["min_angle"] for r in runs], [r["final"]["test_perplexity"] for r in runs],
                    color=palette[m], label=runs[0]["config"].get("label", m), s=30)
    angles = [s["final"]["min_angle"] for s in summaries if s["final"].get("min_angle")]
    if angles and max(angles) / max(min(angles), 1e-12) > 100:  # collapsed tables: spread over decades
        ax2.set_xscale("log")
    ax2.legend(fontsize=8)
    ax2.set_xlabel("min angle of the embedding table (rad)")
    ax2.set_ylabel("held-out perplexity")
    ax2.set_title("(b) task quality vs dispersion")
    curve_angles: list[float] = []
    labelled = set()
    for s in summaries:
        m = s["config"]["method"]
        ev = load_metrics(s["run_dir"]) if s.get("run_dir") else pd.DataFrame()
        if "min_angle" not in ev:
            continue
        ev = ev[ev["min_angle"].notna()]
        label = None if m in labelled else s["config"].get("label", m)
        labelled.add(m)
        ax3.plot(ev["step"], ev["min_angle"], color=palette[m], lw=1.3, marker="o", ms=3, label=label)
        curve_angles += ev["min_angle"].tolist()
        if "min_angle_unseen" in ev and ev["min_angle_unseen"].notna().any():
            ax3.plot(ev["step"], ev["min_angle_unseen"], color=palette[m], lw=1.0, ls="--")
            curve_angles += ev["min_angle_unseen"].dropna().tolist()
    positive = [a for a in curve_angles if a > 0]
    if positive and max(positive) / min(positive) > 100:
        ax3.set_yscale("log")
    ax3.set_xlabel("training step")
    ax3.set_ylabel("min angle of E (rad)")
    ax3.set_title("(c) min angle during training (dashed: unseen rows)")
    if labelled:
        ax3.legend(fontsize=8)
    first = summaries[0]["config"] if summaries else {}
    tr, mc = first.get("train", {}), first.get("model", {})
    if tr and mc:
        fig.suptitle(f"Tied embedding table on the sphere{scale_title(stem)}: d = {mc.get('dim')}, "
                     f"{mc.get('n_layers')} layer(s), {tr.get('steps')} steps of {tr.get('batch_size')} × "
                     f"{tr.get('seq_len')} tokens", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


def report(classify_summaries: Sequence[str | Path], lm_summaries: Sequence[str | Path], *, results_dir: str | Path,
           tables_dir: str | Path, figures_dir: str | Path) -> list[str]:
    """Write every text CSV, table and figure for the runs given; returns the paths written.

    Classification: ``<results_dir>/text_classify_runs.csv``, ``<tables_dir>/text_classify.{md,tex}``,
    ``<tables_dir>/text_classify_prototypes.{md,tex}``, ``<figures_dir>/text_classify_accuracy.{pdf,png}``.
    LM: ``<results_dir>/text_lm_runs.csv``, ``<tables_dir>/text_lm.{md,tex}``,
    ``<figures_dir>/text_lm_geometry.{pdf,png}``. Either list may be empty (its outputs are
    skipped).
    """
    results_dir, tables_dir, figures_dir = Path(results_dir), Path(tables_dir), Path(figures_dir)
    paths: list[str] = []
    if classify_summaries:
        df = aggregate(classify_summaries, results_dir / "text_classify_runs.csv")
        paths.append(str(results_dir / "text_classify_runs.csv"))
        classify_table(df, tables_dir / "text_classify.md", tables_dir / "text_classify.tex")
        protos = df[df["head"] == "prototype"]
        if len(protos):
            classify_table(protos, tables_dir / "text_classify_prototypes.md", tables_dir / "text_classify_prototypes.tex",
                           value="min_angle_deg", scale=1.0, digits=1, majority=False, label="tab:text-prototypes",
                           caption="Minimum angle between the class prototypes (degrees), mean ± std over seeds.")
        else:
            write_table(pd.DataFrame({"Method": ["(no prototype runs)"]}), tables_dir / "text_classify_prototypes.md",
                        tables_dir / "text_classify_prototypes.tex", "Minimum angle between the class prototypes.",
                        "tab:text-prototypes")
        paths += [str(tables_dir / f"text_classify{s}.{e}") for s in ("", "_prototypes") for e in ("md", "tex")]
        paths += classify_figure(df, figures_dir / "text_classify_accuracy")
    if lm_summaries:
        df = aggregate(lm_summaries, results_dir / "text_lm_runs.csv")
        paths.append(str(results_dir / "text_lm_runs.csv"))
        lm_table(df, tables_dir / "text_lm.md", tables_dir / "text_lm.tex")
        paths += [str(tables_dir / f"text_lm.{e}") for e in ("md", "tex")]
        paths += lm_figure(load_summaries(lm_summaries), figures_dir / "text_lm_geometry")
    return paths
