"""Shared helpers of the reports: loading runs, tidy frames, tables, one figure style."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from ..runio import atomic_save, atomic_write_text, output_set

__all__ = [
    "load_summaries",
    "load_metrics",
    "tidy_runs",
    "mean_std",
    "write_table",
    "save_figure",
    "figure_style",
]


def _corrupt(path: Path, e: Exception, line: int | None = None) -> ValueError:
    where = f" line {line}" if line is not None else ""
    why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
    return ValueError(f"{path}{where} is not valid JSON ({why}); the file is corrupted or truncated: "
                      f"rerun the job that writes it (delete it first)")


def load_summaries(paths: Iterable[str | Path]) -> list[dict]:
    """Read ``summary.json`` files; each record gains ``run_dir``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when one
    is not valid JSON or not a JSON object with a ``config`` (a corrupted or foreign file).
    """
    out = []
    for p in paths:
        p = Path(p)
        try:
            with open(p, encoding="utf-8") as f:
                rec = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _corrupt(p, e, getattr(e, "lineno", None)) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("config"), dict):
            raise ValueError(f"{p} is not a run summary (a JSON object with a 'config'); the file is corrupted "
                             f"or not a summary.json of this workflow")
        rec["run_dir"] = str(p.parent)
        out.append(rec)
    return out


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The ``metrics.jsonl`` of one run as a DataFrame (one row per logged step).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and the
    line when a line is not a JSON object (a corrupted or truncated file).
    """
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise _corrupt(path, e, i) from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {i} is not a JSON object; the file is corrupted")
            rows.append(row)
    return pd.DataFrame(rows)


def _flatten(prefix: str, obj, out: dict) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, list):
        return  # per-point lists and the like do not belong in a one-row-per-run table
    else:
        out[prefix] = obj


def tidy_runs(summaries: Sequence[dict]) -> pd.DataFrame:
    """One row per run: the run's config keys (``params.*`` flattened), ``seed``, ``device``,
    ``device_name``, ``wall_time_s`` and every scalar of its ``final`` record. Lists are
    dropped."""
    rows = []
    for s in summaries:
        row: dict = {}
        _flatten("", s.get("config", {}), row)
        for key in ("seed", "device", "device_name", "wall_time_s", "run_dir"):
            row[key] = s.get(key)
        _flatten("", s.get("final", {}), row)
        rows.append(row)
    return pd.DataFrame(rows)


def mean_std(values: pd.Series, digits: int = 2) -> str:
    """"mean ± std" over seeds (sample std, ddof=1); a single value is printed alone."""
    v = values.dropna().astype(float)
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


#: LaTeX for the special and non-ASCII characters that labels and captions use, so that the
#: generated tables compile with pdflatex (whose utf8 input knows no Greek letters).
_LATEX_CHARS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
    "±": r"$\pm$", "°": r"$^\circ$", "−": "-", "–": "--", "—": "---", "·": r"$\cdot$", "×": r"$\times$",
    "²": r"$^2$", "³": r"$^3$", "≥": r"$\geq$", "≤": r"$\leq$", "≈": r"$\approx$", "→": r"$\to$",
    "<": r"$<$", ">": r"$>$",  # pdflatex's OT1 text font prints these as ¡ and ¿
    "∞": r"$\infty$", "√": r"$\surd$", "…": r"\ldots{}", "’": "'", "‘": "`", "“": "``", "”": "''",
    "α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$", "δ": r"$\delta$", "ε": r"$\varepsilon$",
    "θ": r"$\theta$", "κ": r"$\kappa$", "λ": r"$\lambda$", "μ": r"$\mu$", "π": r"$\pi$",
    "σ": r"$\sigma$", "φ": r"$\varphi$",
}


def _latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the characters of
    :data:`_LATEX_CHARS` replaced; other characters are kept."""
    return "".join(_LATEX_CHARS.get(ch, ch) for ch in str(text))


def scale_of(path: str | Path) -> str:
    """The scale an output path belongs to, for captions: ``paper`` under ``results/`` or
    ``figures/`` (relative paths, as the workflow writes them), ``quick`` / ``cpu`` under
    ``quick/`` / ``cpu/``, else ``"output folder <parent>"``."""
    p = Path(path)
    first = p.parts[0] if p.parts and not p.is_absolute() else ""
    if first in ("results", "figures"):
        return "paper"
    if first in ("quick", "cpu"):
        return first
    return f"output folder {p.parent}"


def scale_title(path: str | Path) -> str:
    """``" (cpu scale)"`` (paper / quick / cpu, from :func:`scale_of`) for a figure title written
    to ``path``; ``""`` outside the workflow's roots."""
    scale = scale_of(path)
    return f" ({scale} scale)" if scale in ("paper", "quick", "cpu") else ""


def provenance(path: str | Path, runs: pd.DataFrame) -> str:
    """``"Scale: <scale>; device: <device names>."``: what every table caption states, the scale
    from the output ``path`` (:func:`scale_of`) and the devices from the ``device_name`` (else
    ``device``) column of the ``runs`` that produced it."""
    col = "device_name" if "device_name" in runs else "device"
    devices = ", ".join(sorted(runs[col].dropna().astype(str).unique())) if col in runs else "not recorded"
    return f"Scale: {scale_of(path)}; device: {devices or 'not recorded'}."


def write_table(df: pd.DataFrame, md_path: str | Path, tex_path: str | Path, caption: str, label: str,
                runs: pd.DataFrame | None = None) -> None:
    """Write ``df`` as a Markdown table (``md_path``) and a LaTeX booktabs table (``tex_path``),
    both atomically. The LaTeX is a ``table`` environment with ``caption`` and ``label``, for
    ``\\input`` from ``paper/`` (needs ``booktabs`` and ``graphicx``); a table wider than the
    text is scaled down to the text width. With ``runs`` (the tidy runs behind the table), the
    caption ends with the scale and the devices (:func:`provenance`). The two files are one
    :func:`~dispersion.runio.output_set`: both or neither."""
    if runs is not None:
        caption = f"{caption} {provenance(md_path, runs)}"
    md = f"{caption}\n\n" + df.to_markdown(index=False) + "\n"
    cols = list(df.columns)
    lines = [
        "% Generated by the dispersion workflow; do not edit by hand.",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\caption{{{_latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        # shrink a table wider than the text to the text width (graphicx), never enlarge one
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
        "\\begin{tabular}{" + "l" * min(2, len(cols)) + "r" * max(0, len(cols) - 2) + "}",
        "\\toprule",
        " & ".join(_latex_escape(c) for c in cols) + " \\\\",
        "\\midrule",
    ]
    for _, r in df.iterrows():
        lines.append(" & ".join(_latex_escape(_fmt(v)) for v in r.tolist()) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}", "\\end{table}", ""]
    with output_set():
        atomic_write_text(md_path, md)
        atomic_write_text(tex_path, "\n".join(lines))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "—" if v != v else f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.2f}"
    return str(v)


def figure_style() -> None:
    """The one shared style of every figure (seaborn "whitegrid", paper context)."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save_figure(fig, stem: str | Path) -> list[str]:
    """Save ``fig`` as ``<stem>.pdf`` (paper) and ``<stem>.png`` (Markdown pages, 150 dpi), as one
    :func:`~dispersion.runio.output_set` (both or neither). Returns the two paths and closes
    the figure."""
    import matplotlib.pyplot as plt

    stem = Path(stem)
    paths = []
    try:
        with output_set():
            for ext, kw in ((".pdf", {}), (".png", {"dpi": 150})):
                path = stem.with_suffix(ext)
                atomic_save(path, lambda tmp, kw=kw: fig.savefig(tmp, bbox_inches="tight", **kw))
                paths.append(str(path))
    finally:
        plt.close(fig)
    return paths
