"""Tables and figures of the synthetic studies (arXiv:2502.08231, and the studies built on it).

Every function reads the tidy CSVs written by :func:`aggregate` and writes Markdown + LaTeX
tables (``<stem>.md``/``.tex``) and PDF + PNG figures (``<stem>.pdf``/``.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..runio import atomic_save, output_set
from .common import figure_style, load_metrics, load_summaries, mean_std, save_figure, tidy_runs, write_table

__all__ = ["aggregate", "REPORTS"]


def aggregate(summary_paths: Sequence[str | Path], runs_csv: str | Path, curves_csv: str | Path) -> pd.DataFrame:
    """One row per run (``runs_csv``) and one row per run and logged step (``curves_csv``)."""
    summaries = load_summaries(summary_paths)
    runs = tidy_runs(summaries)
    curves = []
    for s, (_, row) in zip(summaries, runs.iterrows()):
        m = load_metrics(s["run_dir"])
        for col in ("study", "cell", "variant", "label", "init", "n", "d", "optimizer", "seed"):
            m[col] = row.get(col)
        curves.append(m)
    curves_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    with output_set():  # both CSVs or neither
        atomic_save(runs_csv, lambda tmp: runs.to_csv(tmp, index=False))
        atomic_save(curves_csv, lambda tmp: curves_df.to_csv(tmp, index=False))
    return runs


def _order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["label"]))


def _reference(runs: pd.DataFrame) -> pd.DataFrame:
    ref = runs[runs["method"] == "reference"]
    return ref.groupby(["n", "d"])[["min_angle", "circular_variance"]].mean()


def main_report(runs_csv, curves_csv, tables: Sequence[str], figures: Sequence[str]) -> list[str]:
    """The synthetic experiment of arXiv:2502.08231: final metrics table, iterations-per-second
    table, and the 2×2 figure ({uniform, clumped} × {circular variance, min angle} against step,
    mean ± standard error over seeds, with the i.i.d. uniform reference as a dashed line)."""
    import matplotlib.pyplot as plt

    runs = pd.read_csv(runs_csv)
    curves = pd.read_csv(curves_csv)
    out = []
    n, d = int(runs["n"].iloc[0]), int(runs["d"].iloc[0])
    labels = _order(runs[runs["method"] != "reference"])
    rows = []
    for label in ["i.i.d. uniform (reference)", *labels]:
        row = {"method": label}
        for init in ("uniform", "clumped"):
            sub = runs[(runs["label"] == label) & (runs["cell"] == init)]
            row[f"{init}: min angle (rad)"] = mean_std(sub["min_angle"], 3)
            row[f"{init}: circ. var."] = mean_std(sub["circular_variance"], 3)
        rows.append(row)
    final = pd.DataFrame(rows)
    write_table(final, f"{tables[0]}.md", f"{tables[0]}.tex",
                caption=(f"Large-scale synthetic dispersion, N = {n}, d = {d}: final minimum angle (radians) and "
                         "circular variance, mean ± std over seeds, from a uniform and a clumped (Power Spherical, "
                         "κ = 100) start."), label="tab:synthetic-final", runs=runs)
    out += [f"{tables[0]}.md", f"{tables[0]}.tex"]
    opt = runs[runs["method"] != "reference"]
    speed = (opt.groupby(["label", "device_name"], sort=False)["it_per_s"]
             .apply(lambda v: mean_std(v, 1)).reset_index()
             .rename(columns={"label": "method", "device_name": "device", "it_per_s": "iterations / s"}))
    bs = opt.groupby("label", sort=False)["batch_size_used"].first().reset_index()
    speed = speed.merge(bs.rename(columns={"label": "method", "batch_size_used": "rows per step"}), on="method")
    write_table(speed, f"{tables[1]}.md", f"{tables[1]}.tex",
                caption=(f"Update steps per second (forward, backward, optimiser step; metrics excluded), N = {n}, "
                         f"d = {d}, mean ± std over runs, per device."), label="tab:synthetic-speed", runs=runs)
    out += [f"{tables[1]}.md", f"{tables[1]}.tex"]
    if figures:
        figure_style()
        ref = _reference(runs)
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
        palette = dict(zip(labels, plt.cm.tab20(np.linspace(0, 1, max(len(labels), 2)))))
        for i, init in enumerate(("uniform", "clumped")):
            for j, (metric, name) in enumerate((("circular_variance", "circular variance"), ("min_angle", "min angle (rad)"))):
                ax = axes[i, j]
                sub = curves[(curves["cell"] == init) & (curves["variant"] != "reference")]
                for label in labels:
                    c = sub[sub["label"] == label].groupby("step")[metric]
                    mean, se = c.mean(), c.sem().fillna(0)
                    ax.plot(mean.index, mean.values, label=label, color=palette[label], lw=1.3)
                    ax.fill_between(mean.index, (mean - se).values, (mean + se).values, color=palette[label], alpha=0.2)
                if (n, d) in ref.index:
                    ax.axhline(ref.loc[(n, d), metric], color="k", ls="--", lw=1, label="i.i.d. uniform")
                ax.set_title(f"{init} start: {name}")
                ax.set_ylabel(name)
                if i == 1:
                    ax.set_xlabel("step")
        h, l = axes[0, 0].get_legend_handles_labels()
        fig.legend(h, l, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle(f"Synthetic dispersion, N = {n}, d = {d} (mean ± s.e. over seeds)")
        fig.tight_layout()
        out += save_figure(fig, figures[0])
    return out


def regimes_report(runs_csv, curves_csv, tables: Sequence[str], figures: Sequence[str]) -> list[str]:
    """Which method wins where: per (N, d) cell, every method's final min angle relative to the
    i.i.d. uniform reference of the same (N, d) (> 1 = more dispersed than random), the winner,
    as a table and a heat map (colour: the winner's ratio; text: its name)."""
    import matplotlib.pyplot as plt

    runs = pd.read_csv(runs_csv)
    ref = _reference(runs)
    opt = runs[runs["method"] != "reference"].copy()
    opt["ratio"] = [r.min_angle / ref.loc[(r.n, r.d), "min_angle"] for r in opt.itertuples()]
    labels = _order(opt)
    agg = opt.groupby(["n", "d", "label"])["ratio"].mean().reset_index()
    rows = []
    for (n, d), sub in agg.groupby(["n", "d"]):
        row = {"N": int(n), "d": int(d)}
        for label in labels:
            v = sub[sub["label"] == label]["ratio"]
            row[label] = round(float(v.iloc[0]), 3) if len(v) else float("nan")
        best = sub.loc[sub["ratio"].idxmax()]
        row["winner"] = best["label"]
        rows.append(row)
    table = pd.DataFrame(rows)
    write_table(table, f"{tables[0]}.md", f"{tables[0]}.tex",
                caption=("Regimes: final minimum angle relative to i.i.d. uniform points of the same N and d "
                         "(> 1: more dispersed than random), mean over seeds, clumped start, matched compute."),
                label="tab:synthetic-regimes", runs=runs)
    out = [f"{tables[0]}.md", f"{tables[0]}.tex"]
    if figures:
        figure_style()
        ns, ds = sorted(table["N"].unique()), sorted(table["d"].unique())
        grid = np.full((len(ns), len(ds)), np.nan)
        fig, ax = plt.subplots(figsize=(2.2 * len(ds) + 2, 1.2 * len(ns) + 1.5))
        for r in table.itertuples():
            grid[ns.index(r.N), ds.index(r.d)] = table.loc[r.Index, r.winner]
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.grid(False)
        for r in table.itertuples():
            i, j = ns.index(r.N), ds.index(r.d)
            # dark text on the light end of the colour map, white on the dark end
            light = np.mean(im.cmap(im.norm(grid[i, j]))[:3]) > 0.5
            ax.text(j, i, f"{r.winner}\n{grid[i, j]:.2f}×", ha="center", va="center", fontsize=8,
                    color="black" if light else "white")
        ax.set_xticks(range(len(ds)), [str(d) for d in ds])
        ax.set_yticks(range(len(ns)), [str(n) for n in ns])
        ax.set_xlabel("dimension d")
        ax.set_ylabel("number of points N")
        fig.colorbar(im, ax=ax, label="winner's min angle / uniform reference")
        ax.set_title("Which method disperses best, per regime")
        out += save_figure(fig, figures[0])
    return out


def slices_report(runs_csv, curves_csv, tables: Sequence[str], figures: Sequence[str]) -> list[str]:
    """How many slices: final min angle and circular variance against L, at fixed steps and at
    fixed update time."""
    import matplotlib.pyplot as plt

    runs = pd.read_csv(runs_csv)
    runs["mode"] = runs["cell"].str.split("_").str[-1].map({"steps": "fixed steps", "time": "fixed time"})
    runs["L"] = runs["n_slices"].astype(int)
    rows = []
    for (mode, L), sub in runs.groupby(["mode", "L"]):
        rows.append({"budget": mode, "L": int(L), "steps": mean_std(sub["steps_done"], 0),
                     "min angle (rad)": mean_std(sub["min_angle"], 4),
                     "circ. var.": mean_std(sub["circular_variance"], 4)})
    table = pd.DataFrame(rows)
    n, d = int(runs["n"].iloc[0]), int(runs["d"].iloc[0])
    write_table(table, f"{tables[0]}.md", f"{tables[0]}.tex",
                caption=(f"How many slices? {runs['label'].iloc[0]} with L great circles per step, N = {n}, d = {d}: "
                         "at a fixed number of steps and at a fixed update time."), label="tab:synthetic-slices", runs=runs)
    out = [f"{tables[0]}.md", f"{tables[0]}.tex"]
    if figures:
        figure_style()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, metric, name in ((axes[0], "min_angle", "min angle (rad)"), (axes[1], "circular_variance", "circular variance")):
            for mode, sub in runs.groupby("mode"):
                g = sub.groupby("L")[metric]
                ax.errorbar(g.mean().index, g.mean().values, yerr=g.sem().fillna(0).values, marker="o", label=mode, capsize=2)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("slices per step L")
            ax.set_ylabel(name)
        axes[0].legend()
        fig.suptitle(f"{runs['label'].iloc[0]}: slices per step, N = {n}, d = {d}")
        fig.tight_layout()
        out += save_figure(fig, figures[0])
    return out


def fullbatch_report(runs_csv, curves_csv, tables: Sequence[str], figures: Sequence[str]) -> list[str]:
    """Full-batch against minibatch MHE at equal update time."""
    runs = pd.read_csv(runs_csv)
    rows = []
    for (label, bs), sub in runs.groupby(["label", "batch_size_used"], sort=False):
        rows.append({"method": label, "rows per step": int(bs), "steps in budget": mean_std(sub["steps_done"], 0),
                     "update time (s)": mean_std(sub["update_time_s"], 1),
                     "min angle (rad)": mean_std(sub["min_angle"], 4), "circ. var.": mean_std(sub["circular_variance"], 4)})
    table = pd.DataFrame(rows)
    n, d = int(runs["n"].iloc[0]), int(runs["d"].iloc[0])
    write_table(table, f"{tables[0]}.md", f"{tables[0]}.tex",
                caption=f"Full-batch against minibatch pairwise energy at equal update time, N = {n}, d = {d}.",
                label="tab:synthetic-fullbatch", runs=runs)
    return [f"{tables[0]}.md", f"{tables[0]}.tex"]


def optimizers_report(runs_csv, curves_csv, tables: Sequence[str], figures: Sequence[str]) -> list[str]:
    """Riemannian against Euclidean (Adam + re-normalisation) optimisation at scale: one row per
    (method, optimiser), the final min angle at each learning rate of the sweep (mean ± std over
    seeds), and the optimiser at its own best rate (highest mean min angle) with its circular
    variance there — so that the verdict compares tuned optimisers, not one shared step size."""
    from .tammes import OPTIMIZER_LABELS

    runs = pd.read_csv(runs_csv)
    lrs = sorted(dict.fromkeys(runs["lr"].astype(float)))
    rows = []
    for label in _order(runs):
        for opt in dict.fromkeys(runs["optimizer"]):
            sub = runs[(runs["label"] == label) & (runs["optimizer"] == opt)]
            if sub.empty:
                continue
            row = {"method": label, "optimizer": OPTIMIZER_LABELS.get(opt, opt)}
            by_lr = {lr: sub[np.isclose(sub["lr"].astype(float), lr)] for lr in lrs}
            for lr, at in by_lr.items():
                row[f"lr {lr:g}: min angle"] = mean_std(at["min_angle"], 4)
            best = max((lr for lr in lrs if not by_lr[lr].empty), key=lambda lr: by_lr[lr]["min_angle"].mean())
            row["best lr"] = f"{best:g}"
            row["min angle at best lr"] = mean_std(by_lr[best]["min_angle"], 4)
            row["circ. var. at best lr"] = mean_std(by_lr[best]["circular_variance"], 4)
            rows.append(row)
    table = pd.DataFrame(rows)
    n, d = int(runs["n"].iloc[0]), int(runs["d"].iloc[0])
    steps, seeds = int(runs["steps"].iloc[0]), runs["seed"].nunique()
    write_table(table, f"{tables[0]}.md", f"{tables[0]}.tex",
                caption=(f"Riemannian Adam against Adam with row re-normalisation at scale, N = {n}, d = {d}, "
                         f"clumped start, {steps} steps: final min angle (rad) at each learning rate, mean ± std "
                         f"over {seeds} seed(s); each optimiser at its own best learning rate on the right."),
                label="tab:synthetic-optimizers", runs=runs)
    return [f"{tables[0]}.md", f"{tables[0]}.tex"]


REPORTS = {
    "main": main_report,
    "regimes": regimes_report,
    "slices": slices_report,
    "fullbatch": fullbatch_report,
    "optimizers": optimizers_report,
}
