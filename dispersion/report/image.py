"""Tables and figures of the image-classification experiment (arXiv:2502.08231; HPN, Mettes et al. 2019).

Reads the ``summary.json`` files of :func:`dispersion.experiments.image.run` (never live
objects) and writes, for one dataset:

* ``runs_csv`` — one row per run (config keys flattened, seed, device, every scalar of ``final``);
* the accuracy table — top-1 test accuracy (%) per method (rows) and D (columns), mean ± std
  over seeds;
* the prototype table — the prototypes' minimum pairwise angle (degrees) per method and D;
* the per-class table — test accuracy (%) per class (rows) and method (columns) at the
  smallest D ≥ 3 of the runs, where fixed prototypes fall furthest behind softmax: which
  classes the prototype heads lose (and a ``<variant>_matched`` head wins back);
* the figure of accuracy against D per method (error bars: std over seeds);
* the figure of prototype minimum angle against accuracy, one panel per D.

Tables are Markdown + LaTeX booktabs, figures PDF + PNG (shared style of
:mod:`dispersion.report.common`). Captions name the data size, epochs, seeds and device so a
reader can tell which scale produced a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..data.images import FASHION_MNIST_CLASSES
from ..runio import atomic_save
from .common import figure_style, load_summaries, mean_std, save_figure, scale_title, tidy_runs, write_table

__all__ = ["DATASET_TITLES", "aggregate", "accuracy_table", "min_angle_table", "per_class_table",
           "accuracy_vs_dim_figure", "min_angle_vs_accuracy_figure", "report"]

DATASET_TITLES = {"fashion_mnist": "Fashion-MNIST", "cifar100": "CIFAR-100", "imagenet200": "ImageNet-200"}


def aggregate(summary_paths: Sequence[str | Path], runs_csv: str | Path | None = None) -> pd.DataFrame:
    """Merge image ``summary.json`` files into one tidy frame (one row per run), adding
    ``accuracy_pct`` = 100 · test accuracy; written to ``runs_csv`` (atomically) when given.
    Raises ``ValueError`` if a summary is not an image run."""
    summaries = load_summaries(summary_paths)
    for s in summaries:
        if "test_accuracy" not in s.get("final", {}) or "dataset" not in s.get("config", {}):
            raise ValueError(f"{s['run_dir']}/summary.json is not an image run (no final.test_accuracy)")
    df = tidy_runs(summaries)
    df["accuracy_pct"] = 100.0 * df["test_accuracy"].astype(float)
    if runs_csv is not None:
        atomic_save(runs_csv, lambda tmp: df.to_csv(tmp, index=False))
    return df


def _one_dataset(df: pd.DataFrame, dataset: str | None) -> tuple[pd.DataFrame, str]:
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    if df.empty or df["dataset"].nunique() != 1:
        raise ValueError(f"expected runs of exactly one dataset, got {sorted(df['dataset'].unique()) if len(df) else 'none'}")
    return df, df["dataset"].iloc[0]


def _scale_note(df: pd.DataFrame) -> str:
    """The settings behind a table: data size, network, epochs, augmentation, seeds (the scale
    and device follow from :func:`~dispersion.report.common.write_table`'s ``runs``)."""
    r = df.iloc[0]
    n_seeds = df.groupby(["dim", "method"])["seed"].nunique().max()
    aug = [f"padding {int(r['data.augment.padding'])}" if r.get("data.augment.padding") else "",
           "horizontal flips" if r.get("data.augment.hflip") == True else ""]  # noqa: E712 (numpy bool)
    aug = ", ".join(a for a in aug if a) or "no augmentation"
    schedule = (f", batch {int(r['train.batch_size'])}, lr {r['train.lr']:g}, {aug}"
                if pd.notna(r.get("train.batch_size")) and pd.notna(r.get("train.lr")) else "")
    return (f"{int(r['n_train'])} training / {int(r['n_test'])} test images, ResNet-{int(r['model.depth'])} "
            f"(width {int(r['model.width'])}), {int(r['epochs'])} epochs{schedule}; {n_seeds} seed(s)")


#: Rows and legends start with the baselines, then the methods in the order of the runs given.
BASELINE_ORDER = ("softmax", "uniform", "mmcs")


def method_order(df: pd.DataFrame) -> list[str]:
    """Method labels: the baselines of :data:`BASELINE_ORDER` first, then the others in order of
    first appearance (the workflow passes the runs in the config's order)."""
    first = list(dict.fromkeys(zip(df["method"], df["label"])))
    rank = {m: i for i, m in enumerate(BASELINE_ORDER)}
    first.sort(key=lambda ml: rank.get(ml[0], len(rank)))  # stable: the rest keep their order
    return list(dict.fromkeys(label for _, label in first))


_MARKERS = ("o", "X", "s", "P", "D", "^", "v", "<", ">", "p", "*", "h", "H", "d")


def _styles(df: pd.DataFrame) -> tuple[dict, dict]:
    """(palette, markers): one colour and one marker per method label, the same in every figure."""
    import seaborn as sns

    order = method_order(df)
    colours = sns.color_palette("tab10" if len(order) <= 10 else "tab20", n_colors=len(order))
    return dict(zip(order, colours)), {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(order)}


def _grid(df: pd.DataFrame, value: str, digits: int) -> pd.DataFrame:
    labels = method_order(df)
    dims = sorted(df["dim"].astype(int).unique())
    rows = []
    for label in labels:
        row = {"method": label}
        for d in dims:
            sub = df[(df["label"] == label) & (df["dim"].astype(int) == d)]
            row[f"D = {d}"] = mean_std(sub[value], digits) if not sub.empty else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_table(df: pd.DataFrame, md_path, tex_path, dataset: str | None = None) -> pd.DataFrame:
    """Top-1 test accuracy (%) per method and D, "mean ± std" over seeds (sample std)."""
    df, dataset = _one_dataset(df, dataset)
    out = _grid(df, "accuracy_pct", 1)
    title = DATASET_TITLES.get(dataset, dataset)
    write_table(out, md_path, tex_path,
                caption=(f"{title}: top-1 test accuracy (%) of hyperspherical prototype networks whose class "
                         f"prototypes were placed by each method, and of the softmax cross-entropy network with "
                         f"the same D-dimensional output; \"classes matched\": the same prototypes assigned to "
                         f"the classes by the softmax network's class layout; mean ± std over seeds. "
                         f"{_scale_note(df)}."),
                label=f"tab:image-{dataset.replace('_', '-')}-accuracy", runs=df)
    return out


def min_angle_table(df: pd.DataFrame, md_path, tex_path, dataset: str | None = None) -> pd.DataFrame:
    """Minimum pairwise angle (degrees) of the C prototypes per method and D, mean ± std."""
    df, dataset = _one_dataset(df, dataset)
    df = df[df["head"] == "prototype"]
    if df.empty:
        raise ValueError("no prototype runs (only softmax) to tabulate")
    out = _grid(df, "min_angle_deg", 2)
    title = DATASET_TITLES.get(dataset, dataset)
    c = int(df["n_classes"].iloc[0])
    write_table(out, md_path, tex_path,
                caption=(f"{title}: minimum pairwise angle (degrees) of the {c} class prototypes on "
                         f"S^(D-1) placed by each method (uniform: random, not optimised); "
                         f"mean ± std over seeds. {_scale_note(df)}."),
                label=f"tab:image-{dataset.replace('_', '-')}-min-angle", runs=df)
    return out


#: Class names of the datasets whose names the summaries do not carry.
DATASET_CLASSES = {"fashion_mnist": FASHION_MNIST_CLASSES}


def per_class_table(df: pd.DataFrame, summaries: Sequence[dict], md_path, tex_path,
                    dataset: str | None = None) -> pd.DataFrame:
    """Test accuracy (%) per class (rows) and method (columns) at the smallest D ≥ 3 of the runs
    (the smallest D when all are < 3), mean over seeds, from each run's ``per_class_accuracy``;
    a last row gives the overall accuracy. Runs without it (older summaries) are left out; with
    none, the table says so."""
    df, dataset = _one_dataset(df, dataset)
    title = DATASET_TITLES.get(dataset, dataset)
    dims = sorted(df["dim"].astype(int).unique())
    dim = next((d for d in dims if d >= 3), dims[0])
    per_class = {s["run_dir"]: s["final"]["per_class_accuracy"] for s in summaries
                 if s["final"].get("per_class_accuracy") is not None}
    sub = df[(df["dim"].astype(int) == dim) & df["run_dir"].isin(per_class)]
    if sub.empty:
        out = pd.DataFrame({"class": ["(no run of this D recorded per-class accuracy)"]})
    else:
        n = len(next(iter(per_class.values())))
        names = DATASET_CLASSES.get(dataset, [f"class {c}" for c in range(n)])
        out = pd.DataFrame({"class": list(names) + ["all classes"]})
        for label in method_order(sub):
            runs = sub[sub["label"] == label]
            acc = pd.DataFrame([per_class[r] for r in runs["run_dir"]]).mean(axis=0) * 100
            out[label] = [f"{a:.1f}" for a in acc] + [f"{runs['accuracy_pct'].mean():.1f}"]
    write_table(out, md_path, tex_path,
                caption=(f"{title}, D = {dim}: test accuracy (%) per class of each head, mean over seeds; where "
                         f"the prototype heads lose against softmax, and what matching the classes to the "
                         f"softmax network's class layout wins back. {_scale_note(df)}."),
                label=f"tab:image-{dataset.replace('_', '-')}-per-class", runs=sub if not sub.empty else df)
    return out


def accuracy_vs_dim_figure(df: pd.DataFrame, stem, dataset: str | None = None) -> list[str]:
    """Top-1 accuracy (%) against the output dimension D, one line per method (error bars:
    std over seeds). Writes ``stem``.pdf and .png."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    figure_style()
    df, dataset = _one_dataset(df, dataset)
    order = method_order(df)
    palette, markers = _styles(df)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=df.assign(dim=df["dim"].astype(int)), x="dim", y="accuracy_pct", hue="label", hue_order=order,
                 style="label", style_order=order, palette=palette, markers=markers, dashes=False, errorbar="sd",
                 err_style="bars", ax=ax)
    dims = sorted(df["dim"].astype(int).unique())
    if dims[-1] / dims[0] >= 8:
        ax.set_xscale("log")
    ax.set_xticks(dims)
    ax.set_xticklabels([str(d) for d in dims])
    ax.minorticks_off()
    ax.set_xlabel("output dimension D")
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.set_title(f"{DATASET_TITLES.get(dataset, dataset)} ({int(df['n_classes'].iloc[0])} classes){scale_title(stem)}\n"
                 f"{_scale_note(df)}", fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=None)
    return save_figure(fig, stem)


def min_angle_vs_accuracy_figure(df: pd.DataFrame, stem, dataset: str | None = None) -> list[str]:
    """Prototype minimum angle (degrees) against top-1 accuracy (%), one point per run, one
    panel per D (softmax runs have no prototypes and are left out). Writes ``stem``.pdf/.png."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    figure_style()
    df, dataset = _one_dataset(df, dataset)
    palette, markers = _styles(df)
    df = df[df["head"] == "prototype"].assign(dim=lambda d: d["dim"].astype(int))
    if df.empty:
        raise ValueError("no prototype runs (only softmax) to plot")
    order = method_order(df)
    dims = sorted(df["dim"].unique())
    fig, axes = plt.subplots(1, len(dims), figsize=(2.8 * len(dims) + 1.8, 3.4), squeeze=False)
    for ax, d in zip(axes[0], dims):
        sns.scatterplot(data=df[df["dim"] == d], x="min_angle_deg", y="accuracy_pct", hue="label", hue_order=order,
                        style="label", style_order=order, palette=palette, markers=markers, s=45, ax=ax,
                        legend=(d == dims[-1]))
        ax.set_title(f"D = {d}")
        ax.set_xlabel("prototype min angle (°)")
        ax.set_ylabel("top-1 accuracy (%)" if d == dims[0] else "")
    if axes[0][-1].get_legend() is not None:
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title=None)
    fig.suptitle(f"{DATASET_TITLES.get(dataset, dataset)}: prototype separation and accuracy{scale_title(stem)}\n"
                 f"{_scale_note(df)}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)


def report(summary_paths: Sequence[str | Path], runs_csv, table_prefix, figure_prefix,
           dataset: str | None = None) -> list[str]:
    """Everything of one dataset: ``runs_csv``; tables ``{table_prefix}accuracy.md/.tex``,
    ``{table_prefix}min_angle.md/.tex`` and ``{table_prefix}per_class.md/.tex``; figures
    ``{figure_prefix}accuracy_vs_dim.pdf/.png`` and ``{figure_prefix}min_angle_vs_accuracy.pdf/.png``.
    Returns the written paths."""
    df = aggregate(summary_paths, runs_csv)
    df, dataset = _one_dataset(df, dataset)
    tp, fp = str(table_prefix), str(figure_prefix)
    accuracy_table(df, tp + "accuracy.md", tp + "accuracy.tex")
    min_angle_table(df, tp + "min_angle.md", tp + "min_angle.tex")
    per_class_table(df, load_summaries(summary_paths), tp + "per_class.md", tp + "per_class.tex")
    paths = [str(runs_csv)] + [tp + f"{n}.{e}" for n in ("accuracy", "min_angle", "per_class") for e in ("md", "tex")]
    paths += accuracy_vs_dim_figure(df, fp + "accuracy_vs_dim")
    paths += min_angle_vs_accuracy_figure(df, fp + "min_angle_vs_accuracy")
    return paths
