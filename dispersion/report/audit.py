"""Tables and figures of the audit experiment (issue 13; :mod:`dispersion.experiments.audit`).

Reads the ``summary.json`` files of the audit runs (never live objects) and writes:

* :func:`audit_table` — one table per audited table: every statistic of
  :func:`dispersion.audit` (min angle, nearest-neighbour angle quantiles and mean, pairwise
  angles, mean cosine, circular variance, uniformity, PCA effective rank) for the table, its
  mean-centred version and i.i.d. uniform points of the same N and d (the draws' mean ± std and
  the closed form where one exists), then duplicates and, with labels, the class angles and
  k-NN label accuracy;
* :func:`posthoc_report` — the post-hoc dispersion study: a tidy CSV (one row per run), one
  table (recall@k of the original neighbours, k-NN label accuracy, achieved min and mean
  nearest-neighbour angle and circular variance per method, with and without the fidelity
  term) and the trade-off figure (recall@k and k-NN accuracy against the min angle and the
  circular variance).

Tables are Markdown + LaTeX booktabs, figures PDF + PNG (:mod:`dispersion.report.common`);
every caption names the scale (``paper``, ``quick``, …) and the device, so a reader can tell
which produced a number.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..runio import atomic_save, output_set
from .common import figure_style, load_summaries, save_figure, write_table

__all__ = ["statistics_rows", "audit_table", "posthoc_aggregate", "posthoc_table", "posthoc_figure", "posthoc_report"]


def _fmt(v, digits: int | None = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if digits is not None:
        return f"{v:.{digits}f}"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3g}"
    return f"{v:.4f}" if a < 1 else f"{v:.2f}"


def statistics_rows(final: dict) -> list[dict]:
    """The rows of one audit table from a run's ``final`` (:meth:`dispersion.AuditReport.to_dict`):
    statistic, table, mean-centred, uniform draws (mean ± std), uniform closed form."""
    from ..embedding_audit import STATS

    stats, centred = final["stats"], final.get("centred") or {}
    ref, cf, se = final["reference"], final.get("closed_form") or {}, final.get("standard_errors") or {}
    rows = []
    for key, label, is_angle in STATS:
        k = f"{key}_deg" if is_angle else key
        r = ref.get(k)
        draws = "—" if not r else (_fmt(r["mean"]) if len(r["values"]) < 2 else f"{_fmt(r['mean'])} ± {_fmt(r['std'])}")
        rows.append({
            "statistic": label + (" (°)" if is_angle else ""),
            "table": _fmt(stats.get(k)) + (f" ± {_fmt(se[k])} (s.e.)" if se.get(k) else ""),
            "mean-centred": _fmt(centred.get(k)) if k in centred else "—",
            "uniform, draws": draws,
            "uniform, closed form": _fmt(cf.get(k)) if cf.get(k) is not None else "—",
        })
    dup = final["duplicates"]
    blank = {"mean-centred": "—", "uniform, draws": "—", "uniform, closed form": "—"}
    rows.append({"statistic": "exact / near-duplicate rows", "table": f"{dup['exact_duplicate_rows']} / "
                 f"{dup['near_duplicate_rows']}", **blank, "uniform, draws": "0 / 0"})
    rows.append({"statistic": "min angle, duplicates merged (°)",
                 "table": _fmt(dup.get("min_angle_without_duplicates_deg")), **blank})
    lab = final.get("labels")
    if lab:
        rows.append({"statistic": "mean within-class angle (°)", "table": _fmt(lab["mean_within_angle_deg"]), **blank})
        rows.append({"statistic": "mean between-class angle (°)", "table": _fmt(lab["mean_between_angle_deg"]), **blank})
        rows.append({"statistic": f"{lab['k']}-NN label accuracy (majority class)",
                     "table": f"{lab['knn_accuracy']:.4f} ({lab['majority_rate']:.4f})", **blank})
    return rows


def audit_table(summary_path: str | Path, md: str | Path, tex: str | Path, *, scale: str) -> pd.DataFrame:
    """Write the Markdown + LaTeX table of one audit run (``summary.json``), its caption naming
    the table, N, d, the reference, ``scale`` and the device. Raises ``ValueError`` for a summary
    that is not an audit run."""
    (s,) = load_summaries([summary_path])
    spec = s.get("config") or {}
    if spec.get("kind") != "audit" or "stats" not in s.get("final", {}):
        raise ValueError(f"{summary_path} is not the summary of an audit run (config.kind != 'audit')")
    f = s["final"]
    st, norms = f["settings"], f["norms"]
    pairs = ("exact over all pairs" if st["exact_pairs"] else
             f"estimated from {st['pair_samples']:,} random pairs (± standard error)")
    caption = (f"Dispersion audit of {spec['label']} ({s.get('table', '')}): N = {f['n']:,}, d = {f['d']}, row norms "
               f"{norms['min']:.3g}–{norms['max']:.3g} (normalised onto the sphere). Each statistic of the table, of its "
               f"mean-centred version and of N i.i.d. uniform points on the sphere ({st['reference_draws']} draw(s), "
               f"mean ± std; closed forms where they exist); angles in degrees; pairwise statistics {pairs}. "
               f"Scale: {scale}; device: {s.get('device_name', s.get('device'))}; {s['wall_time_s']:.0f} s.")
    df = pd.DataFrame(statistics_rows(f))
    write_table(df, md, tex, caption, f"tab:audit-{spec['table'].replace('_', '-')}")
    return df


# --------------------------------------------------------------------------- post-hoc study


def posthoc_aggregate(summary_paths: Sequence[str | Path], runs_csv: str | Path | None = None) -> pd.DataFrame:
    """One row per post-hoc run (variant, label, fidelity, λ, the final and start metrics, the
    uniform reference, time), written to ``runs_csv`` (atomically) when given. Raises
    ``ValueError`` for a summary that is not a post-hoc run or runs of different tables."""
    rows = []
    for path, s in zip(summary_paths, load_summaries(summary_paths)):
        spec = s.get("config") or {}
        if spec.get("kind") != "posthoc":
            raise ValueError(f"{path} is not the summary of a post-hoc run (config.kind != 'posthoc')")
        k = int(spec.get("k") or 10)
        f, st, u = s["final"], s["start"], s["uniform"]
        rows.append({
            "table": spec["table"], "table_description": s.get("table"), "variant": spec["variant"],
            "method": spec["method"], "label": spec["method_label"], "fidelity": spec["fidelity"],
            "weight": spec["weight"] if spec["fidelity"] != "none" else 0.0, "k": k, "n": s["n"], "d": s["d"],
            "steps": spec["steps"], "lr": spec["lr"], "optimizer": spec.get("optimizer") or "riemannian_adam",
            "seed": spec["seed"], "recall": f[f"recall@{k}"], "knn_accuracy": f.get("knn_accuracy"),
            "min_angle_deg": f["min_angle_deg"], "mean_nn_angle_deg": f["mean_nn_angle_deg"],
            "circular_variance": f["circular_variance"], "start_min_angle_deg": st["min_angle_deg"],
            "start_mean_nn_angle_deg": st["mean_nn_angle_deg"], "start_circular_variance": st["circular_variance"],
            "start_knn_accuracy": st.get("knn_accuracy"), "majority_rate": s.get("majority_rate"),
            "uniform_min_angle_deg": u["min_angle_deg"], "uniform_mean_nn_angle_deg": u["mean_nn_angle_deg_closed_form"],
            "uniform_circular_variance": u["circular_variance"], "time_s": s.get("disperse_time_s"),
            "device_name": s.get("device_name", s.get("device")),
        })
    if not rows:
        raise ValueError("no post-hoc summaries given")
    df = pd.DataFrame(rows)
    if df["table"].nunique() > 1:
        raise ValueError(f"post-hoc runs of several tables {sorted(df['table'].unique())}; report one table at a time")
    if runs_csv is not None:
        atomic_save(runs_csv, lambda tmp: df.to_csv(tmp, index=False))
    return df


def _mean(series: pd.Series) -> float | None:
    v = pd.to_numeric(series, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def posthoc_table(df: pd.DataFrame, md: str | Path, tex: str | Path, *, scale: str) -> pd.DataFrame:
    """The post-hoc table: the start, one row per (method, fidelity) (mean over seeds), and
    i.i.d. uniform points of the same N and d."""
    first = df.iloc[0]
    k = int(first["k"])
    cols = ["Method", "fidelity (λ)", f"recall@{k}", f"{k}-NN accuracy", "min angle (°)", "mean NN angle (°)",
            "circ. variance", "time (s)"]
    rows = [dict(zip(cols, ["start (no dispersion)", "—", "1.000", _fmt(first["start_knn_accuracy"], 3),
                            _fmt(first["start_min_angle_deg"], 2), _fmt(first["start_mean_nn_angle_deg"], 2),
                            _fmt(first["start_circular_variance"], 4), "—"]))]
    for (variant, fid), sub in df.groupby(["variant", "fidelity"], sort=False):
        lam = "none" if fid == "none" else f"{fid} ({sub['weight'].iloc[0]:g})"
        rows.append(dict(zip(cols, [sub["label"].iloc[0], lam, _fmt(_mean(sub["recall"]), 3),
                                    _fmt(_mean(sub["knn_accuracy"]), 3), _fmt(_mean(sub["min_angle_deg"]), 2),
                                    _fmt(_mean(sub["mean_nn_angle_deg"]), 2), _fmt(_mean(sub["circular_variance"]), 4),
                                    _fmt(_mean(sub["time_s"]), 0)])))
    # the reference's provenance in its cells (which also keeps Markdown from reparsing "1.0000" as 1)
    rows.append(dict(zip(cols, ["i.i.d. uniform (reference)", "—", "—", "—",
                                f"{_fmt(first['uniform_min_angle_deg'], 2)} (one draw)",
                                f"{_fmt(first['uniform_mean_nn_angle_deg'], 2)} (closed form)",
                                f"{_fmt(first['uniform_circular_variance'], 4)} (one draw)", "—"])))
    out = pd.DataFrame(rows)
    fids = sorted(f for f in df["fidelity"].unique() if f != "none")
    devices = ", ".join(sorted(df["device_name"].dropna().astype(str).unique()))
    caption = (f"Post-hoc dispersion of {first['table_description']} (the first {int(first['n']):,} rows, "
               f"d = {int(first['d'])}): {int(first['steps'])} full-batch steps of {first['optimizer']} at lr "
               f"{first['lr']:g} per method, alone (fidelity none) and with the {', '.join(fids) or 'no'} fidelity term "
               f"that holds each row's {k} original nearest neighbours; recall@{k} of those neighbours, leave-one-out "
               f"{k}-NN label accuracy (majority class {_fmt(first['majority_rate'], 3)}), the achieved min and mean "
               f"nearest-neighbour angle and circular variance; uniform: one draw of N i.i.d. points (mean NN angle: "
               f"closed form); time: the disperse() loop; {df['seed'].nunique()} seed(s). Scale: {scale}; device: {devices}.")
    write_table(out, md, tex, caption, f"tab:audit-posthoc-{str(first['table']).replace('_', '-')}")
    return out


def posthoc_figure(df: pd.DataFrame, stem: str | Path) -> list[str]:
    """Trade-off scatter, 2 × 2 panels: recall@k (top) and k-NN label accuracy (bottom) against
    the achieved min angle (left) and circular variance (right); colour = method, filled =
    with the fidelity term, open = without; the start (star) and the uniform reference (dashed)."""
    figure_style()
    import matplotlib.pyplot as plt
    import seaborn as sns

    first = df.iloc[0]
    k = int(first["k"])
    has_acc = df["knn_accuracy"].notna().any()
    ys = [("recall", f"recall@{k} of the original neighbours", 1.0)]
    if has_acc:
        ys.append(("knn_accuracy", f"{k}-NN label accuracy", first["start_knn_accuracy"]))
    xs = [("min_angle_deg", "min angle (°)", "start_min_angle_deg", "uniform_min_angle_deg"),
          ("circular_variance", "circular variance", "start_circular_variance", "uniform_circular_variance")]
    fig, axes = plt.subplots(len(ys), 2, figsize=(9, 3.6 * len(ys)), squeeze=False)
    labels = list(dict.fromkeys(df["label"]))
    colours = dict(zip(labels, sns.color_palette("tab10", len(labels))))
    for i, (y, ylabel, y0) in enumerate(ys):
        for j, (x, xlabel, x0, xu) in enumerate(xs):
            ax = axes[i][j]
            for _, r in df.iterrows():
                with_fid = r["fidelity"] != "none"
                ax.scatter(r[x], r[y], s=45, marker="o", color=colours[r["label"]] if with_fid else "none",
                           edgecolors=colours[r["label"]], linewidths=1.4, zorder=3)
            ax.scatter([first[x0]], [y0], marker="*", s=140, color="k", zorder=4)
            ax.axvline(first[xu], color="k", ls="--", lw=1)
            if y == "knn_accuracy" and first["majority_rate"] == first["majority_rate"]:
                ax.axhline(first["majority_rate"], color="grey", ls=":", lw=1)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", color=c, label=lab) for lab, c in colours.items()]
    handles += [Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="k", label="no fidelity term"),
                Line2D([], [], marker="o", ls="", color="k", label="with fidelity term"),
                Line2D([], [], marker="*", ls="", color="k", markersize=10, label="start"),
                Line2D([], [], ls="--", color="k", label="i.i.d. uniform")]
    fig.legend(handles=handles, loc="upper center", ncol=min(5, len(handles)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1.0 + 0.06 * math.ceil(len(handles) / 5) / len(ys)))
    fig.suptitle(f"Post-hoc dispersion, N = {int(first['n']):,}, d = {int(first['d'])}", fontsize=10, y=1.0)
    fig.tight_layout()
    return save_figure(fig, stem)


def posthoc_report(summary_paths: Sequence[str | Path], *, runs_csv: str | Path, md: str | Path, tex: str | Path,
                   figure: str | Path, scale: str) -> list[str]:
    """CSV, table and figure of the post-hoc study, as one set (all or none). Returns the paths."""
    with output_set():
        df = posthoc_aggregate(summary_paths, runs_csv)
        posthoc_table(df, md, tex, scale=scale)
        paths = posthoc_figure(df, figure)
    return [str(runs_csv), str(md), str(tex), *paths]

