"""Tables and figures of the translation experiment (arXiv:2502.08231 and its Table 3): a tidy
CSV from the ``summary.json`` files of :func:`dispersion.experiments.nmt.run`, two Markdown +
LaTeX (booktabs) tables of mean ± std over seeds and two figures (PDF + PNG).

* ``nmt.{md,tex}`` — per run name (method, or a λ-sweep point): test BLEU and chrF (sacreBLEU,
  greedy decoding), validation loss, the table's minimum angle (radians) of all rows, of the rare
  rows and of the never-seen rows, the authors' clamped minimum angle of all rows, and the
  circular variance of the three groups; the caption gives the data, vocabulary, model,
  schedule, λ, the sacreBLEU signature, seeds, scale and device.
* ``nmt_lambda.{md,tex}`` — the λ sweep: one row per λ of the regularizer run at several λ
  (BLEU, chrF, validation loss, min angle and circular variance per row group, seeds).
* ``nmt_min_angle.{pdf,png}`` — the minimum angle of E against training steps, every run, one
  panel per row group (all / rare / never-seen), from each run's ``metrics.jsonl``.
* ``nmt_lambda.{pdf,png}`` — BLEU against the table's minimum angle, one point per run: the
  sweep's runs coloured by λ, the other methods' runs beside them.

Reads run files only (never live objects).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from .common import (figure_style, load_metrics, load_summaries, mean_std, save_figure, scale_title, tidy_runs,
                     write_table)

__all__ = ["GROUPS", "aggregate", "results_table", "sweep_runs", "lambda_table", "min_angle_figure", "lambda_figure",
           "report"]

#: The row groups of the table: column suffix → name in tables and figures.
GROUPS = {"": "all rows", "_rare": "rare rows", "_unseen": "never-seen rows"}


def aggregate(summaries: Sequence[str | Path], csv_path: str | Path | None = None) -> pd.DataFrame:
    """One row per run (:func:`dispersion.report.common.tidy_runs`, with ``lambda`` = the run's
    ``train.lambda``), optionally written as CSV (atomically). Raises ``ValueError`` for a
    summary that is not a translation run (no ``final.bleu``)."""
    from ..runio import atomic_write_text

    loaded = load_summaries(summaries)
    for s in loaded:
        if "bleu" not in s.get("final", {}):
            raise ValueError(f"{s['run_dir']}/summary.json is not a translation run (no final.bleu)")
    df = tidy_runs(loaded)
    df["lambda"] = df["train.lambda"].astype(float)
    if csv_path is not None:
        atomic_write_text(csv_path, df.to_csv(index=False))
    return df


def _settings(df: pd.DataFrame) -> str:
    """The data, vocabulary, model and schedule of the runs, for captions."""
    f = df.iloc[0]
    n_test = int(f["test_sentences"])
    parts = [
        f"Multi30k en→de, greedy translations of the {n_test:,} test_2016_flickr sentences" if n_test == 1000 else
        f"Multi30k en→de, greedy translations of {n_test:,} test sentences",
        f"{f['tokenizer']}: {int(f['n_rows_rare']):,} rare rows (1 to {int(f['rare_below']) - 1} occurrences in the "
        f"training text), {int(f['n_rows_unseen']):,} never-seen rows",
        f"d = {int(f['model.dim'])}, {int(f['model.n_encoder_layers'])}+{int(f['model.n_decoder_layers'])} layers, "
        f"{int(f['epochs'])} epochs of {int(f['train.batch_size'])} pairs ({int(f['steps']):,} steps)",
        f"λ per {'target token' if f['train.lambda_per'] == 'token' else 'batch'}",
        f"sacreBLEU BLEU {f['bleu_signature']}, chrF {f['chrf_signature']}",
    ]
    return "; ".join(parts)


def _group_rows(df: pd.DataFrame, key: str) -> list[tuple[str, pd.DataFrame]]:
    return [(k, df[df[key] == k]) for k in dict.fromkeys(df[key])]


def _cells(sub: pd.DataFrame) -> dict:
    row = {"Seeds": str(len(sub)), "BLEU": mean_std(sub["bleu"], 2), "chrF": mean_std(sub["chrf"], 2),
           "Val. loss": mean_std(sub["val_loss"], 3)}
    for suffix, name in GROUPS.items():
        col = f"min_angle{suffix}"
        row[f"min angle, {name} (rad)"] = mean_std(sub[col], 4) if col in sub and sub[col].notna().any() else "—"
    row["authors' min angle, all rows (rad)"] = mean_std(sub["min_angle_clamped"], 4)
    for suffix, name in GROUPS.items():
        col = f"circular_variance{suffix}"
        row[f"circ. var., {name}"] = mean_std(sub[col], 3) if col in sub and sub[col].notna().any() else "—"
    return row


def results_table(df: pd.DataFrame, md: str | Path, tex: str | Path, caption: str | None = None,
                  label: str = "tab:nmt") -> pd.DataFrame:
    """One row per run name (config order), mean ± std over its seeds (:func:`_cells`)."""
    rows = [{"Method": sub["label"].iloc[0], **_cells(sub)} for _, sub in _group_rows(df, "method")]
    out = pd.DataFrame(rows)
    caption = caption or (
        f"Machine translation with one tied embedding table (encoder input, decoder input and output): "
        f"test BLEU and chrF, validation loss (nats per target token), the table's minimum angle and circular "
        f"variance per row group, and the minimum angle as the authors' code measures it (cosines clamped to "
        f"1 − 1e-6: never below 1.414e-3 rad); mean ± std over seeds. {_settings(df)}.")
    write_table(out, md, tex, caption, label, runs=df)
    return out


def sweep_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs of the λ sweep: those of the regularizer (with its parameters) that was run at
    more than one λ; empty when there is none. Ordered by λ."""
    if "regularizer" not in df:
        return df.iloc[0:0]
    reg = df[df["regularizer"].notna()]
    counts = reg.groupby("regularizer")["lambda"].nunique()
    swept = counts[counts > 1].index.tolist()
    if not swept:
        return df.iloc[0:0]
    return reg[reg["regularizer"] == swept[0]].sort_values(["lambda", "seed"], kind="stable")


def lambda_table(df: pd.DataFrame, md: str | Path, tex: str | Path, label: str = "tab:nmt-lambda") -> pd.DataFrame:
    """One row per λ of the sweep (:func:`sweep_runs`), mean ± std over the seeds each λ has."""
    sw = sweep_runs(df)
    if sw.empty:
        out = pd.DataFrame({"λ": ["(no λ sweep in these runs)"]})
        write_table(out, md, tex, "The λ sweep.", label, runs=df)
        return out
    rows = [{"λ": f"{lam:g}", **_cells(sub)} for lam, sub in _group_rows(sw, "lambda")]
    out = pd.DataFrame(rows)
    name = sw["label"].iloc[0].split(",")[0]
    caption = (f"The weight λ of the regularizer: {name} at λ = "
               f"{', '.join(f'{v:g}' for v in dict.fromkeys(sw['lambda']))} (per target token); columns as in the main "
               f"table, mean ± std over the seeds of each λ. {_settings(sw)}.")
    write_table(out, md, tex, caption, label, runs=sw)
    return out


def _devices(df: pd.DataFrame) -> str:
    col = "device_name" if "device_name" in df else "device"
    return ", ".join(sorted(df[col].dropna().astype(str).unique())) if col in df else "not recorded"


def _title(df: pd.DataFrame, what: str, stem) -> str:
    f = df.iloc[0]
    return (f"{what}{scale_title(stem)}; device: {_devices(df)}\n{f['tokenizer']}, d = {int(f['model.dim'])}, "
            f"{int(f['model.n_encoder_layers'])}+{int(f['model.n_decoder_layers'])} layers, {int(f['epochs'])} epochs "
            f"of {int(f['train.batch_size'])} pairs, greedy decoding")


def min_angle_figure(summaries: Sequence[dict], df: pd.DataFrame, stem: str | Path) -> list[str]:
    """The minimum angle of E against training steps (the evaluation rows of each run's
    ``metrics.jsonl``), one panel per row group, one colour per run name, every seed a line;
    log-scaled when the angles span over two decades, with the authors' floor arccos(1 − 1e-6)
    drawn then."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..metrics import AUTHORS_COSINE_CLAMP

    figure_style()
    names = list(dict.fromkeys(s["config"]["method"] for s in summaries))
    palette = dict(zip(names, sns.color_palette("tab10", max(10, len(names)))))
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(5.2 * len(GROUPS), 3.9), squeeze=False)
    curves = [(s, load_metrics(s["run_dir"])) for s in summaries]
    for ax, (suffix, group) in zip(axes[0], GROUPS.items()):
        col, labelled, values = f"min_angle{suffix}", set(), []
        for s, ev in curves:
            if col not in ev:
                continue
            ev = ev[ev[col].notna()]
            name = s["config"]["method"]
            label = None if name in labelled else s["config"].get("label", name)
            labelled.add(name)
            ax.plot(ev["step"], ev[col], color=palette[name], lw=1.2, marker="o", ms=2.5, label=label)
            values += ev[col].tolist()
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 100:
            ax.set_yscale("log")
            ax.axhline(math.acos(1 - AUTHORS_COSINE_CLAMP), color="0.4", ls=":", lw=1, label="authors' floor")
        ax.set_title(f"min angle, {group}")
        ax.set_xlabel("training step")
        ax.set_ylabel("min angle of E (rad)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(_title(df, "Minimum angle of the tied embedding table during training", stem), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


def lambda_figure(df: pd.DataFrame, stem: str | Path) -> list[str]:
    """BLEU against the table's minimum angle (all rows), one point per run: the λ-sweep runs
    coloured and annotated by λ, every other run in grey by method. Log-scaled angle axis when
    the angles span over two decades."""
    import matplotlib.pyplot as plt
    import numpy as np

    figure_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sw = sweep_runs(df)
    rest = df.drop(index=sw.index)
    markers = ["s", "^", "v", "D", "P", "X", "*"]
    for i, (_, sub) in enumerate(_group_rows(rest, "method")):
        ax.scatter(sub["min_angle"], sub["bleu"], color="0.55", marker=markers[i % len(markers)], s=28,
                   label=sub["label"].iloc[0])
    if not sw.empty:
        lams = sorted(dict.fromkeys(sw["lambda"]))
        cmap = plt.get_cmap("viridis")
        pos = {lam: cmap(k / max(1, len(lams) - 1)) for k, lam in enumerate(lams)}
        for lam in lams:
            sub = sw[sw["lambda"] == lam]
            ax.scatter(sub["min_angle"], sub["bleu"], color=pos[lam], s=46, edgecolor="k", lw=0.5,
                       label=f"{sub['label'].iloc[0].split(',')[0]}, λ = {lam:g}")
            ax.annotate(f"λ={lam:g}", (float(np.mean(sub["min_angle"])), float(np.mean(sub["bleu"]))),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
    angles = [a for a in df["min_angle"] if a > 0]
    if angles and max(angles) / min(angles) > 100:
        ax.set_xscale("log")
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("min angle of the embedding table (rad)")
    ax.set_ylabel("test BLEU")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(_title(df, "Task quality against dispersion (λ sweep)", stem), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def report(summaries: Sequence[str | Path], *, csv_path: str | Path, tables_dir: str | Path,
           figures_dir: str | Path) -> list[str]:
    """Write the CSV, ``nmt.{md,tex}``, ``nmt_lambda.{md,tex}``, ``nmt_min_angle.{pdf,png}`` and
    ``nmt_lambda.{pdf,png}`` for the runs given; returns the paths written. Raises
    ``ValueError`` for no summaries."""
    if not summaries:
        raise ValueError("no summary.json files given")
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    df = aggregate(summaries, csv_path)
    paths = [str(csv_path)]
    results_table(df, tables_dir / "nmt.md", tables_dir / "nmt.tex")
    lambda_table(df, tables_dir / "nmt_lambda.md", tables_dir / "nmt_lambda.tex")
    paths += [str(tables_dir / f"{t}.{e}") for t in ("nmt", "nmt_lambda") for e in ("md", "tex")]
    paths += min_angle_figure(load_summaries(summaries), df, figures_dir / "nmt_min_angle")
    paths += lambda_figure(df, figures_dir / "nmt_lambda")
    return paths
