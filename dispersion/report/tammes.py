"""Tables and figures of the Tammes experiment (arXiv:2502.08231)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..runio import atomic_save, output_set
from .common import figure_style, load_summaries, mean_std, save_figure, tidy_runs, write_table

__all__ = ["aggregate", "table", "boxplot_figure", "optimizer_figure"]

OPTIMIZER_LABELS = {
    "riemannian_adam": "Riemannian Adam",
    "riemannian_sgd": "Riemannian SGD",
    "adam": "Adam + renormalise",
    "sgd": "SGD + renormalise",
}


def aggregate(summary_paths: Sequence[str | Path], runs_csv: str | Path, points_csv: str | Path) -> pd.DataFrame:
    """Merge Tammes ``summary.json`` files into ``runs_csv`` (one row per run) and
    ``points_csv`` (one row per point: its nearest-neighbour angle in degrees), written as one
    set (both or neither). A corrupted summary raises ``ValueError`` naming the file."""
    summaries = load_summaries(summary_paths)
    runs = tidy_runs(summaries)
    points = []
    for s in summaries:
        c = s["config"]
        for i, a in enumerate(s["final"]["nn_angles_deg"]):
            points.append({"case": c.get("case"), "variant": c.get("variant"), "label": c.get("label"),
                           "optimizer": c["optimizer"], "seed": s["seed"], "point": i, "nn_angle_deg": a})
    with output_set():  # both CSVs or neither
        atomic_save(runs_csv, lambda tmp: runs.to_csv(tmp, index=False))
        atomic_save(points_csv, lambda tmp: pd.DataFrame(points).to_csv(tmp, index=False))
    return runs


def _case_title(row) -> str:
    return f"N={int(row['n'])}, d={int(row['d'])}"


def table(runs_csv: str | Path, md_path: str | Path, tex_path: str | Path, optimizer: str = "riemannian_adam") -> pd.DataFrame:
    """Achieved minimum angle (degrees, mean ± std over seeds) per method and case, with the
    best known angle as the first row and the gap to it in parentheses."""
    df = pd.read_csv(runs_csv)
    df = df[df["optimizer"] == optimizer].copy()
    if df.empty:
        raise ValueError(f"no runs with optimizer={optimizer!r} in {runs_csv}")
    df["case_title"] = df.apply(_case_title, axis=1)
    cases = df.sort_values(["d", "n"]).drop_duplicates("case")[["case", "case_title", "best_known_angle_deg", "best_known_name"]]
    order = list(dict.fromkeys(df["label"]))
    rows = [{"method": "best known", **{r.case_title: f"{r.best_known_angle_deg:.2f} ({r.best_known_name})" for r in cases.itertuples()}}]
    for label in order:
        row = {"method": label}
        for r in cases.itertuples():
            sub = df[(df["label"] == label) & (df["case"] == r.case)]
            if sub.empty:
                row[r.case_title] = "—"
                continue
            gap = mean_std((sub["min_angle_deg"] - r.best_known_angle_deg).round(2) + 0.0)  # + 0.0: no "-0.00"
            row[r.case_title] = f"{mean_std(sub['min_angle_deg'])} ({gap if gap.startswith('-') else '+' + gap})"
        rows.append(row)
    out = pd.DataFrame(rows)
    opt = OPTIMIZER_LABELS.get(optimizer, optimizer)
    write_table(
        out, md_path, tex_path,
        caption=(f"Tammes problem: minimum pairwise angle (degrees) reached by each method ({opt}), "
                 "with the difference to the best known angle in parentheses; "
                 "mean ± std over seeds where there are several."),
        label=f"tab:tammes-{optimizer}",
        runs=df,
    )
    return out


def _points(points_csv, case: str) -> tuple[pd.DataFrame, list[str]]:
    pts = pd.read_csv(points_csv)
    pts = pts[pts["case"] == case]
    if pts.empty:
        raise ValueError(f"no points of case {case!r} in {points_csv}")
    order = list(dict.fromkeys(pts["label"]))
    return pts, order


def boxplot_figure(points_csv: str | Path, runs_csv: str | Path, case: str, stem: str | Path,
                   optimizer: str = "riemannian_adam") -> list[str]:
    """Per-point minimum angle (degrees) per method: box plot with the points, and a
    horizontal line at the best known angle of ``case``. Writes ``stem``.pdf and .png."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    figure_style()
    pts, order = _points(points_csv, case)
    pts = pts[pts["optimizer"] == optimizer]
    runs = pd.read_csv(runs_csv)
    info = runs[runs["case"] == case].iloc[0]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(order) + 2), 4))
    sns.boxplot(data=pts, x="label", y="nn_angle_deg", order=order, color="#d0e1f2", fliersize=0, ax=ax)
    sns.stripplot(data=pts, x="label", y="nn_angle_deg", order=order, color="#1f4e79", size=3, jitter=0.2, ax=ax)
    _finish(ax, info, f"Tammes, N={int(info['n'])} on $S^{{{int(info['d']) - 1}}}$, "
                      f"{OPTIMIZER_LABELS.get(optimizer, optimizer)}")
    return save_figure(fig, stem)


def optimizer_figure(points_csv: str | Path, runs_csv: str | Path, case: str, stem: str | Path) -> list[str]:
    """Riemannian against Euclidean optimisation: the per-point minimum angles of ``case`` per
    method, one box per optimiser, with the best known angle. Writes ``stem``.pdf and .png."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    figure_style()
    pts, order = _points(points_csv, case)
    pts = pts.assign(optimizer=pts["optimizer"].map(lambda o: OPTIMIZER_LABELS.get(o, o)))
    if pts["optimizer"].nunique() < 2:
        raise ValueError(f"case {case!r} has runs of a single optimizer; the comparison needs two")
    runs = pd.read_csv(runs_csv)
    info = runs[runs["case"] == case].iloc[0]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(order) + 2), 4))
    sns.boxplot(data=pts, x="label", y="nn_angle_deg", hue="optimizer", order=order, fliersize=2, ax=ax)
    _finish(ax, info, f"Riemannian vs Euclidean, N={int(info['n'])} on $S^{{{int(info['d']) - 1}}}$")
    return save_figure(fig, stem)


def _finish(ax, info, title: str) -> None:
    """The best known angle as a dashed line, the legend outside, labels and title."""
    best = info["best_known_angle_deg"]
    if pd.notna(best):
        ax.axhline(best, color="#c0392b", ls="--", lw=1.2, label=f"best known {best:.3f}° ({info['best_known_name']})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel("")
    ax.set_ylabel("per-point minimum angle (degrees)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_ha("right")
