r"""The numbers the paper's prose quotes, generated from the run CSVs and the tables it includes,
so that the text cannot contradict the tables beside it.

``paper/main.tex`` reads each value as ``\ds{<name>}``; :func:`numbers_tex` writes them as
``\dsdef{<name>}{<value>}`` lines (``numbers.tex``, beside the built PDF). Every group of the
paper (a study: ``tammes``, ``synthetic``, ``image``, …) is drawn from one results root (the
scale that has it, :mod:`dispersion.report.paper`); its numbers are computed from that root
only. Where a value cannot be computed from what a (small) scale produced — a method it did not
run — the value is ``---``, never an invented number. The verdicts of the claims table are
generated here too, from rules stated in the code (the per-group functions and ``_verdicts``), so
that they follow the runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import pandas as pd

from .common import _latex_escape

__all__ = ["group_numbers", "numbers_tex", "read_tex_table", "table_provenance"]

NA = "---"

#: Tolerance (degrees) within which a Tammes run counts as reaching the best known angle.
TAMMES_TOL_DEG = 0.5
#: Accuracy difference (percentage points) below which two heads count as equal.
ACC_TOL = 1.0


# --- formatting -------------------------------------------------------------------------------

def _int(n) -> str:
    """An integer with thin spaces between groups of three digits (``20\\,000``)."""
    n = int(round(float(n)))
    s = f"{abs(n):,}".replace(",", "\\,")
    return ("-" if n < 0 else "") + s


def _f(x, k: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return NA
    s = f"{x:+.{k}f}" if sign else f"{x:.{k}f}"
    return s.replace("-", "$-$") if s.startswith("-") else s


def _g(x) -> str:
    """A learning rate or a setting: ``0.005``, ``$10^{-4}$``, ``$3\\cdot10^{-5}$``."""
    x = float(x)
    s = f"{x:g}"
    if "e" not in s:
        return s
    m, e = s.split("e")
    e = int(e)
    return f"$10^{{{e}}}$" if m == "1" else f"${m}\\cdot10^{{{e}}}$"


def _and(items) -> str:
    items = [str(i) for i in items]
    if not items:
        return NA
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _range(values, k: int = 1, unit: str = "") -> str:
    """``a--b`` (or ``a`` when equal) of finite values, ``---`` for none."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return NA
    lo, hi = _f(min(v), k), _f(max(v), k)
    return f"{lo}{unit}" if lo == hi else f"{lo}--{hi}{unit}"


def _sranged(values, k: int = 1) -> str:
    """Signed range: ``$+$2.1 to $+$9.8``."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return NA
    lo, hi = _f(min(v), k, sign=True), _f(max(v), k, sign=True)
    return lo if lo == hi else f"{lo} to {hi}"


def _esc(text) -> str:
    return _latex_escape(str(text))


# --- reading the generated tables ----------------------------------------------------------------

def read_tex_table(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """(header cells, body rows) of a booktabs table written by
    :func:`dispersion.report.common.write_table`; cells are TeX, as printed."""
    text = Path(path).read_text(encoding="utf-8")
    body = text.split("\\toprule", 1)[1].split("\\bottomrule", 1)[0]
    head, rows = body.split("\\midrule", 1)

    def cells(line: str) -> list[str]:
        line = line.strip()
        if line.endswith("\\\\"):
            line = line[:-2]
        return [c.strip() for c in line.split(" & ")]

    header = cells(head.strip().splitlines()[-1])
    return header, [cells(r) for r in rows.strip().splitlines() if r.strip()]


def table_provenance(path: str | Path) -> tuple[str, str] | None:
    """(scale, device) stated at the end of a generated table's caption, or None."""
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r"Scale: ([^;{}]+); device: ([^;{}]*?)\.?(?:;[^{}]*)?\}\s*$", text, re.M)
    return (m.group(1).strip(), m.group(2).strip()) if m else None


def _val(cell: str) -> float:
    """The leading number of a cell (``0.875 $\\pm$ 0.022`` → 0.875); NaN for ``---``."""
    m = re.match(r"\s*\$?([-+]?\d+(?:\.\d+)?)", cell.replace("$-$", "-"))
    return float(m.group(1)) if m else float("nan")


def _rows(path) -> tuple[list[str], dict[str, list[str]]]:
    header, rows = read_tex_table(path)
    return header, {r[0]: r for r in rows}


# --- per group ---------------------------------------------------------------------------------

def _tammes(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "tammes" / "runs.csv")
    out: dict[str, str] = {}
    first = runs.iloc[0]
    out["steps"] = _int(first["steps"])
    out["lr"] = _g(first["lr"])
    out["seeds"] = str(runs["seed"].nunique())
    riem = runs[runs["optimizer"] == "riemannian_adam"] if (runs["optimizer"] == "riemannian_adam").any() else runs
    cases = riem[["case", "n", "d"]].drop_duplicates()
    out["cases"] = str(len(cases))
    opt = riem[riem["variant"] != "uniform"]
    out["methods"] = str(opt["variant"].nunique())
    out["runs"] = _int(len(runs))
    # how far short of the best known angle each method stays (degrees; mean over seeds)
    opt = opt.assign(short_deg=opt["best_known_angle_deg"] - opt["min_angle_deg"])
    short = opt.groupby(["case", "variant"])["short_deg"].mean()
    best_short = short.groupby(level=0).min()
    within = int((best_short <= TAMMES_TOL_DEG).sum())
    out["tol"] = _f(TAMMES_TOL_DEG, 1)
    out["within"] = str(within)
    # the largest N on S^2 (the paper's case: N = 24, the snub cube)
    s2 = cases[cases["d"] == 3]
    big = (s2 if len(s2) else cases).sort_values("n").iloc[-1]
    sub = opt[opt["case"] == big["case"]]
    mean = sub.groupby("label")["min_angle_deg"].mean()
    out["big-n"] = str(int(big["n"]))
    out["big-d"] = str(int(big["d"]))
    out["big-sphere"] = f"$S^{{{int(big['d']) - 1}}}$"
    out["big-ref"] = _f(float(sub["best_known_angle_deg"].iloc[0]), 2)
    out["big-ref-name"] = _esc(sub["best_known_name"].iloc[0])
    out["big-best"] = _f(mean.max(), 2)
    out["big-best-method"] = _esc(mean.idxmax())
    # Sliced and SSW, the two methods of arXiv:2502.08231 built for many points
    sw = opt[opt["method"].isin(["sliced", "ssw"])]
    sw_short = sw.groupby(["case", "variant"])["short_deg"].mean()
    out["sw-short"] = _range(sw_short, 1) if len(sw_short) else NA
    # Riemannian Adam against Adam + renormalisation, where both ran
    both = runs.groupby("case")["optimizer"].nunique()
    ecases = [c for c in both.index if both[c] > 1 and "adam" in set(runs[runs["case"] == c]["optimizer"])]
    if ecases:
        c = ecases[0]
        e = runs[(runs["case"] == c) & (runs["variant"] != "uniform")]
        piv = e.groupby(["label", "optimizer"])["min_angle_deg"].mean().unstack()
        piv = piv.dropna(subset=[col for col in ("adam", "riemannian_adam") if col in piv])
        row = runs[runs["case"] == c].iloc[0]
        out["eucl-case"] = f"$N = {int(row['n'])}$ on $S^{{{int(row['d']) - 1}}}$"
        out["eucl-adam"] = _range(piv["adam"], 1)
        out["eucl-riem"] = _range(piv["riemannian_adam"], 1)
        out["eucl-riem-wins"] = str(int((piv["riemannian_adam"] > piv["adam"]).sum()))
        out["eucl-methods"] = str(len(piv))
    else:
        for k in ("eucl-case", "eucl-adam", "eucl-riem", "eucl-riem-wins", "eucl-methods"):
            out[k] = NA
    # claim: the methods reach the known optima
    n_cases = len(cases)
    word = ("Confirmed" if within == n_cases else "Partly" if within else "Not confirmed")
    missed = [f"$N = {int(c.n)}$ on $S^{{{int(c.d) - 1}}}$" for c in cases.itertuples()
              if best_short.get(c.case, math.inf) > TAMMES_TOL_DEG]
    out["missed"] = _and(missed) if missed else "none"
    out["verdict"] = (f"\\textbf{{{word}}}: the best method is within {out['tol']}$^\\circ$ of the best known "
                      f"angle in {within} of {n_cases} cases{f' (not at {_and(missed)})' if missed else ''} "
                      f"($N = {out['big-n']}$ on {out['big-sphere']}: "
                      f"{out['big-best']}$^\\circ$, {out['big-best-method']}, against {out['big-ref']}$^\\circ$); "
                      f"Sliced and SSW fall {out['sw-short']}$^\\circ$ short")
    return out


def _synthetic(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "synthetic" / "main" / "runs.csv")
    out: dict[str, str] = {}
    r = runs.iloc[0]
    out["n"], out["d"] = _int(r["n"]), _int(r["d"])
    out["steps"], out["lr"] = _int(r["steps"]), _g(r["lr"])
    out["seeds"] = str(runs["seed"].nunique())
    out["runs"] = _int(len(runs))
    out["kappa"] = _g(runs["kappa"].dropna().iloc[0]) if "kappa" in runs and runs["kappa"].notna().any() else NA
    pair = runs[runs["method"].isin(["mhe", "mma", "koleo", "mmcs", "lloyd"])]
    out["batch"] = _int(pair["batch_size_used"].iloc[0]) if len(pair) else NA
    sl = runs[runs["variant"] == "sliced_auto"]
    col = "resolved_params.n_slices"
    out["slices"] = _int(sl[col].iloc[0]) if len(sl) and col in sl else NA
    header, rows = _rows(res / "tables" / "synthetic_final.tex")
    body = {k: v for k, v in rows.items() if "reference" not in k}
    ref = next((v for k, v in rows.items() if "reference" in k), None)
    for init in ("uniform", "clumped"):
        for stat, key in (("circ. var.", "cv"), ("min angle", "min")):
            j = next((i for i, h in enumerate(header) if h.startswith(init) and stat in h), None)
            if j is None or not body:
                out[f"{init}-best-{key}"] = out[f"{init}-best-{key}-method"] = out[f"{init}-ref-{key}"] = NA
                continue
            best = max(body, key=lambda k: _val(body[k][j]))
            out[f"{init}-best-{key}"] = body[best][j].split(" ")[0]
            out[f"{init}-best-{key}-method"] = best
            out[f"{init}-ref-{key}"] = ref[j].split(" ")[0] if ref else NA
    return out


def _regimes(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "synthetic" / "regimes" / "runs.csv")
    header, rows = read_tex_table(res / "tables" / "synthetic_regimes.tex")
    out: dict[str, str] = {}
    out["cells"] = str(len(rows))
    out["runs"] = _int(len(runs))
    out["steps"] = _int(runs["steps"].iloc[0])
    out["seeds"] = str(runs["seed"].nunique())
    ns = sorted({int(r[0]) for r in rows})
    ds = sorted({int(r[1]) for r in rows})
    out["ns"] = _and(_int(n) for n in ns)
    out["ds"] = _and(_int(d) for d in ds)
    wi = header.index("winner") if "winner" in header else len(header) - 1
    per_n = []
    for n in ns:
        winners = list(dict.fromkeys(r[wi] for r in rows if int(r[0]) == n))
        per_n.append(f"$N = {_int(n)}$: {', '.join(winners)}")
    out["winners-by-n"] = "; ".join(per_n)
    all_winners = list(dict.fromkeys(r[wi] for r in rows))
    out["distinct-winners"] = str(len(all_winners))
    top = [r for r in rows if int(r[1]) == ds[-1]]
    dev = [abs(_val(c) - 1) for r in top for c in r[2:wi] if math.isfinite(_val(c))]
    out["top-d"] = _int(ds[-1])
    out["top-d-spread"] = _f(100 * max(dev), 0) if dev else NA
    word = "Confirmed" if len(all_winners) > 1 else "Not confirmed"
    out["verdict"] = (f"\\textbf{{{word}}}: {len(all_winners)} different winner(s) over {len(rows)} cells "
                      f"({out['winners-by-n']}); at $d = {out['top-d']}$ every method is within "
                      f"{out['top-d-spread']}\\,\\% of random")
    return out


def _slices(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "synthetic" / "slices" / "runs.csv")
    out: dict[str, str] = {}
    steps = runs[runs["max_time_s"].isna()] if "max_time_s" in runs else runs
    timed = runs[runs["max_time_s"].notna()] if "max_time_s" in runs else runs.iloc[0:0]
    out["n"], out["d"] = _int(runs["n"].iloc[0]), _int(runs["d"].iloc[0])
    out["ls"] = _and(_int(x) for x in sorted(runs["n_slices"].unique()))
    out["steps"] = _int(steps["steps"].iloc[0]) if len(steps) else NA
    out["time"] = _g(timed["max_time_s"].iloc[0]) if len(timed) else NA
    for name, sub in (("steps", steps), ("time", timed)):
        if not len(sub):
            out[f"{name}-best-l"] = out[f"{name}-best-min"] = out[f"{name}-best-cv-l"] = NA
            continue
        m = sub.groupby("n_slices")[["min_angle", "circular_variance"]].mean()
        out[f"{name}-best-l"] = _int(m["min_angle"].idxmax())
        out[f"{name}-best-min"] = _f(m["min_angle"].max(), 4)
        out[f"{name}-best-cv-l"] = _int(m["circular_variance"].idxmax())
    return out


def _fullbatch(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "synthetic" / "fullbatch" / "runs.csv")
    out: dict[str, str] = {}
    full = runs[runs["full_batch"].astype(bool)]
    mini = runs[~runs["full_batch"].astype(bool)]
    out["n"], out["d"] = _int(runs["n"].iloc[0]), _int(runs["d"].iloc[0])
    out["time"] = _g(runs["max_time_s"].iloc[0])
    for name, sub in (("mini", mini), ("full", full)):
        if not len(sub):
            out.update({f"{name}-{k}": NA for k in ("rows", "steps", "cv", "min")})
            continue
        out[f"{name}-rows"] = _int(sub["batch_size_used"].mean())
        out[f"{name}-steps"] = _int(sub["steps_done"].mean())
        out[f"{name}-cv"] = _f(sub["circular_variance"].mean(), 4)
        out[f"{name}-min"] = _f(sub["min_angle"].mean(), 4)
    # Sliced's speed on every row, from the speed table of the main study
    header, rows = _rows(res / "tables" / "synthetic_speed.tex")
    sliced = next((k for k in rows if k.startswith("Sliced (")), None) or next(
        (k for k in rows if k.startswith("Sliced")), None)
    j = header.index("iterations / s") if "iterations / s" in header else 2
    rj = header.index("rows per step") if "rows per step" in header else len(header) - 1
    out["sliced-label"] = sliced or NA
    out["sliced-its"] = rows[sliced][j].split(" ")[0] if sliced else NA
    out["sliced-rows"] = _int(_val(rows[sliced][rj])) if sliced else NA
    ok = len(mini) and len(full) and mini["circular_variance"].mean() > full["circular_variance"].mean()
    word = "Confirmed" if ok else "Not confirmed"
    out["verdict"] = (f"\\textbf{{{word}}}: in {out['time']}\\,s the full-batch energy takes {out['full-steps']} "
                      f"steps (circular variance {out['full-cv']}), the {out['mini-rows']}-row minibatch "
                      f"{out['mini-steps']} ({out['mini-cv']}); {out['sliced-label']} sees all "
                      f"{out['sliced-rows']} rows at {out['sliced-its']} steps/s")
    return out


def _optimizers(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "synthetic" / "optimizers" / "runs.csv")
    out: dict[str, str] = {}
    r = runs.iloc[0]
    out["n"], out["d"], out["steps"] = _int(r["n"]), _int(r["d"]), _int(r["steps"])
    out["seeds"] = str(runs["seed"].nunique())
    out["runs"] = _int(len(runs))
    lrs = sorted(runs["lr"].astype(float).unique())
    out["lrs"] = _and(_g(x) for x in lrs)
    out["n-lrs"] = str(len(lrs))
    m = runs.groupby(["label", "optimizer", "lr"])["min_angle"].mean()
    best = m.groupby(level=[0, 1]).max().unstack()  # each optimiser at its own best rate
    out["methods"] = str(len(best))
    if {"riemannian_adam", "adam"} <= set(best.columns):
        b = best.dropna(subset=["riemannian_adam", "adam"])
        wins = int((b["riemannian_adam"] > b["adam"]).sum())
        out["riem-wins"] = str(wins)
        out["compared"] = str(len(b))
        out["riem-best"] = _range(b["riemannian_adam"], 3)
        out["adam-best"] = _range(b["adam"], 3)
        # ahead beyond the seeds' spread: the gap exceeds the larger std (ddof=1) of the two at
        # their best rates; within it, a tie (one seed: no spread, every gap counts)
        sd = runs.groupby(["label", "optimizer", "lr"])["min_angle"].std(ddof=1).fillna(0.0)
        at_best = {opt: sd[m.groupby(level=[0, 1]).idxmax().unstack()[opt].dropna()].droplevel([1, 2])
                   for opt in ("riemannian_adam", "adam")}
        spread = pd.concat(at_best, axis=1).max(axis=1).reindex(b.index)
        gap = b["riemannian_adam"] - b["adam"]
        out["riem-clear"] = str(int((gap > spread).sum()))
        out["adam-clear"] = str(int((-gap > spread).sum()))
        out["ties"] = str(int((gap.abs() <= spread).sum()))
    else:
        wins = None
        for k in ("riem-wins", "compared", "riem-best", "adam-best", "riem-clear", "adam-clear", "ties"):
            out[k] = NA
    return out


def _image(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "image" / "fashion_mnist_runs.csv")
    out: dict[str, str] = {}
    out["dims"] = _and(str(int(d)) for d in sorted(runs["dim"].unique()))
    out["seeds"] = str(runs["seed"].nunique())
    out["runs"] = _int(len(runs))
    out["epochs"] = _int(runs["train.epochs"].iloc[0])
    out["depth"] = _int(runs["model.depth"].iloc[0])
    out["width"] = _int(runs["model.width"].iloc[0])
    out["train"] = _int(runs["n_train"].iloc[0]) if "n_train" in runs else NA
    out["test"] = _int(runs["n_test"].iloc[0]) if "n_test" in runs else NA
    out["classes"] = _int(runs["n_classes"].iloc[0]) if "n_classes" in runs else NA
    labels = runs.drop_duplicates("method").set_index("method")["label"]
    matched = set(runs[runs.get("assignment", "index") != "index"]["label"]) if "assignment" in runs else set()
    softmax = _esc(labels.get("softmax", "Softmax CE"))
    uniform = _esc(labels.get("uniform", "Uniform init"))
    header, rows = _rows(res / "tables" / "image_fashion_mnist_accuracy.tex")
    disp = [k for k in rows if k not in (softmax, uniform) and k not in {_esc(x) for x in matched}]
    vs_u, vs_s, gains_u, gaps_s = [], [], {}, {}
    for j, h in enumerate(header[1:], start=1):
        m = re.search(r"D\s*=\s*(\d+)", h)
        if not m or not disp:
            continue
        dim = int(m.group(1))
        best = max(_val(rows[k][j]) for k in disp)
        if uniform in rows:
            gains_u[dim] = best - _val(rows[uniform][j])
            vs_u.append(f"{_f(gains_u[dim], 1, sign=True)} at $D = {dim}$")
        if softmax in rows:
            gaps_s[dim] = best - _val(rows[softmax][j])
            vs_s.append(f"{_f(gaps_s[dim], 1, sign=True)} at $D = {dim}$")
    out["vs-uniform"] = ", ".join(vs_u) or NA
    out["vs-softmax"] = ", ".join(vs_s) or NA
    out["gains-uniform"], out["gaps-softmax"] = gains_u, gaps_s  # for the verdicts (not written)
    return out


def _textclassify(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "text" / "text_classify_runs.csv")
    out: dict[str, str] = {}
    out["datasets"] = str(runs["dataset"].nunique())
    out["dataset-names"] = _and(f"\\texttt{{{_esc(x)}}}" for x in runs["dataset"].unique())
    out["dims"] = _and(str(int(d)) for d in sorted(runs["dim"].unique()))
    out["seeds"] = str(runs["seed"].nunique())
    out["runs"] = _int(len(runs))
    out["epochs"] = _int(runs["train.epochs"].iloc[0])
    labels = runs.drop_duplicates("method").set_index("method")["label"]
    softmax = _esc(labels.get("softmax", "Softmax CE"))
    uniform = _esc(labels.get("uniform", "Uniform (random)"))
    header, rows = _rows(res / "tables" / "text_classify.tex")
    disp = [k for k in rows if k not in (softmax, uniform)]
    by_dim_u: dict[int, list[float]] = {}
    by_dim_s: dict[int, list[float]] = {}
    for j, h in enumerate(header[1:], start=1):
        m = re.search(r"D=(\d+)", h)
        if not m or not disp:
            continue
        dim = int(m.group(1))
        best = max(_val(rows[k][j]) for k in disp)
        if uniform in rows:
            by_dim_u.setdefault(dim, []).append(best - _val(rows[uniform][j]))
        if softmax in rows:
            by_dim_s.setdefault(dim, []).append(best - _val(rows[softmax][j]))
    out["vs-uniform"] = "; ".join(f"{_sranged(v)} at $D = {d}$" for d, v in sorted(by_dim_u.items())) or NA
    out["vs-softmax"] = "; ".join(f"{_sranged(v)} at $D = {d}$" for d, v in sorted(by_dim_s.items())) or NA
    out["gains-uniform"] = {d: min(v) for d, v in by_dim_u.items()}
    out["gaps-softmax"] = {d: min(v) for d, v in by_dim_s.items()}
    return out


def _lm(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "text" / "text_lm_runs.csv")
    out: dict[str, str] = {}
    r = runs.iloc[0]
    out["v"] = _int(r["vocab_size"])
    out["dim"] = _int(r["model.dim"])
    out["layers"] = _int(r["model.n_layers"])
    out["steps"] = _int(r["train.steps"])
    out["batch"] = f"{_int(r['train.batch_size'])} $\\times$ {_int(r['train.seq_len'])}"
    out["seeds"] = str(runs["seed"].nunique())
    out["runs"] = _int(len(runs))
    lam = runs["train.lambda"].dropna() if "train.lambda" in runs else pd.Series(dtype=float)
    out["lambda"] = _g(lam.iloc[0]) if len(lam) else NA
    labels = runs.drop_duplicates("method").set_index("method")["label"]
    header, rows = _rows(res / "tables" / "text_lm.tex")
    col = {h: i for i, h in enumerate(header)}
    jp = col.get("Perplexity", 1)
    jm = next((i for h, i in col.items() if h.startswith("min angle") and "unseen" not in h), 3)
    jc = next((i for h, i in col.items() if h.startswith("circ. variance") and "unseen" not in h), 4)
    vals = {}
    for method in ("sliced", "none", "mhe_rbf_chordal", "lloyd", "euclidean"):
        lab = _esc(labels[method]) if method in labels else None
        row = rows.get(lab) if lab else None
        key = {"mhe_rbf_chordal": "mhe"}.get(method, method)
        for stat, j, k in (("min", jm, 3), ("cv", jc, 3), ("ppl", jp, 1)):
            v = _val(row[j]) if row else float("nan")
            vals[(key, stat)] = v
            out[f"{key}-{stat}"] = _f(v, 2 if stat == "min" else k) if math.isfinite(v) else NA
    others = [m for m in ("none", "mhe", "lloyd") if math.isfinite(vals[(m, "min")])]
    out["others-min"] = _range([vals[(m, "min")] for m in others], 2)
    out["others-cv"] = _range([vals[(m, "cv")] for m in others], 2)
    s_min, s_cv = vals[("sliced", "min")], vals[("sliced", "cv")]
    spreads = math.isfinite(s_min) and all(s_min > vals[(m, "min")] and s_cv > vals[(m, "cv")] for m in others)
    out["sliced-spreads"] = "1" if spreads else "0"
    return out


def _posthoc(res: Path) -> dict[str, str]:
    runs = pd.read_csv(res / "audit" / "posthoc_runs.csv")
    out: dict[str, str] = {}
    out["n"] = _int(runs["n"].iloc[0])
    out["d"] = _int(runs["d"].iloc[0])
    out["steps"] = _int(runs["steps"].iloc[0])
    out["methods"] = str(runs["label"].nunique())
    none = runs[runs["fidelity"] == "none"]
    held = runs[runs["fidelity"] != "none"]
    out["recall-none"] = _range(none["recall"], 3)
    out["recall-fidelity"] = _range(held["recall"], 3)
    out["fidelity"] = _esc(held["fidelity"].iloc[0]) if len(held) else NA
    out["k"] = _int(runs["k"].iloc[0])
    return out


def _audit(res: Path) -> dict[str, str]:
    """Per audited table: its mean nearest-neighbour angle against that of uniform points."""
    out: dict[str, str] = {}
    tables = sorted(p for p in (res / "tables").glob("audit_*.tex") if p.name != "audit_posthoc.tex")
    out["tables"] = str(len(tables))
    parts = []
    for t in tables:
        text = t.read_text(encoding="utf-8")
        m = re.search(r"\\caption\{Dispersion audit of (.+?) \(", text)
        name = m.group(1) if m else _esc(t.stem[len("audit_"):])
        header, rows = _rows(t)
        row = next((r for k, r in rows.items() if k.startswith("mean NN angle")), None)
        j = next((i for i, h in enumerate(header) if h == "table"), 1)
        if row is None:
            continue
        # uniform points: the closed form where the table has one, else the draws
        ref = next((row[i] for i, h in enumerate(header) if "closed form" in h and math.isfinite(_val(row[i]))),
                   next((row[i] for i, h in enumerate(header) if h.startswith("uniform")), NA))
        parts.append(f"{name}: {row[j]}$^\\circ$ against {ref.split(' ')[0]}$^\\circ$")
    out["mean-nn"] = "; ".join(parts) or NA
    return out


GROUPS: dict[str, Callable[[Path], dict]] = {
    "tammes": _tammes, "synthetic": _synthetic, "regimes": _regimes, "slices": _slices,
    "fullbatch": _fullbatch, "optimizers": _optimizers, "image": _image, "textclassify": _textclassify,
    "lm": _lm, "posthoc": _posthoc, "audit": _audit,
}


def group_numbers(group: str, results_root: str | Path) -> dict:
    """The numbers of one group computed from ``results_root`` ({} for a group without any)."""
    fn = GROUPS.get(group)
    return fn(Path(results_root)) if fn else {}


def _verdicts(num: dict[str, dict]) -> dict[str, str]:
    """The verdicts of the claims table that combine groups, from these rules:

    * classification: dispersion *helps* at a D where the best dispersion method beats random
      prototypes by more than ``ACC_TOL`` points (every dataset), and it *matches softmax* where
      it is at most ``ACC_TOL`` points below softmax (every dataset); *Confirmed* when it helps
      at every D of both experiments, *Partly* when at some, *Not confirmed* when at none;
    * Tammes (:func:`_tammes`): *Confirmed* when the best method is within ``TAMMES_TOL_DEG`` of
      the best known angle in every case, *Partly* when in some, *Not confirmed* when in none;
    * regimes (:func:`_regimes`): *Confirmed* when more than one method wins a cell;
    * minibatches (:func:`_fullbatch`): *Confirmed* when the minibatch energy reaches the larger
      circular variance in the same update time;
    * Riemannian against re-normalisation: *Confirmed* when Riemannian Adam reaches the larger
      min angle for every method compared (Tammes, and the synthetic study at each optimiser's
      best learning rate), *Refuted* when for none, else *Mixed*;
    * the vocabulary: *Confirmed* when Sliced has both the largest min angle and the largest
      circular variance of the spherical tables.
    """
    out = {"acc-tol": _g(ACC_TOL)}
    parts, n_helps, n_dims = [], 0, 0
    for g, name in (("textclassify", "text"), ("image", "image")):
        n = num.get(g)
        if not n:
            continue
        gu, gs = n.get("gains-uniform") or {}, n.get("gaps-softmax") or {}
        helps = [str(d) for d, v in sorted(gu.items()) if v > ACC_TOL]
        match = [str(d) for d, v in sorted(gs.items()) if v >= -ACC_TOL]
        n_helps, n_dims = n_helps + len(helps), n_dims + len(gu)
        at_h = "$D = " + ", ".join(helps) + "$" if helps else "no $D$"
        at_m = "$D = " + ", ".join(match) + "$" if match else "no $D$"
        h = f"beats random prototypes at {at_h}" if gu else "was not compared with random prototypes"
        m = f"is as good as softmax at {at_m}" if gs else "was not compared with softmax"
        parts.append(f"{name}: the best dispersion method {h} and {m}")
    word = ("Confirmed" if n_dims and n_helps == n_dims else "Partly" if n_helps else
            "Not confirmed" if n_dims else "Not tested")
    out["verdict-classify"] = f"\\textbf{{{word}}}: " + ("; ".join(parts) or NA)
    t, o = num.get("tammes", {}), num.get("optimizers", {})
    scores = []
    if t.get("eucl-riem-wins", NA) != NA:
        scores.append((int(t["eucl-riem-wins"]), int(t["eucl-methods"])))
    if o.get("riem-wins", NA) != NA:
        scores.append((int(o["riem-wins"]), int(o["compared"])))
    if scores and all(w == n for w, n in scores):
        word = "Confirmed"
    elif scores and all(w == 0 for w, _ in scores):
        word = "Refuted"
    else:
        word = "Mixed" if scores else "Not tested"
    out["verdict-riemannian"] = word
    lm = num.get("lm", {})
    if lm:
        word = "Confirmed" if lm.get("sliced-spreads") == "1" else "Not confirmed"
        out["verdict-vocabulary"] = word
    else:
        out["verdict-vocabulary"] = NA
    return out


def numbers_tex(groups: dict[str, str | Path], scales: dict[str, tuple[str, str]] | None = None,
                roots: dict[str, str] | None = None) -> str:
    r"""The ``numbers.tex`` of the paper: ``\dsdef{<group>-<name>}{<value>}`` for every number of
    every group (``groups``: group → its results root), the verdicts, and, from ``scales``
    (group → (scale, device)) and ``roots`` (group → its results root as TeX),
    ``\dsdef{<group>-scale}``, ``\dsdef{<group>-device}`` and ``\dsdef{<group>-root}``."""
    num = {g: group_numbers(g, root) for g, root in groups.items()}
    verdicts = _verdicts(num)
    lines = ["% Generated by `python -m dispersion paper` from the run CSVs and tables; do not edit by hand.",
             "% \\ds{<name>} in paper/main.tex prints a value."]
    for g in sorted(set(num) | set(scales or {})):
        lines.append(f"% --- {g}")
        if scales and g in scales:
            lines.append(f"\\dsdef{{{g}-scale}}{{{scales[g][0]}}}")
            lines.append(f"\\dsdef{{{g}-device}}{{{scales[g][1]}}}")
        if roots and g in roots:
            lines.append(f"\\dsdef{{{g}-root}}{{{roots[g]}}}")
        for k, v in num.get(g, {}).items():
            if isinstance(v, str):
                lines.append(f"\\dsdef{{{g}-{k}}}{{{v}}}")
    lines.append("% --- verdicts of the claims table")
    lines += [f"\\dsdef{{{k}}}{{{v}}}" for k, v in verdicts.items()]
    return "\n".join(lines) + "\n"
