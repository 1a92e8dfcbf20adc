#!/usr/bin/env python
"""The gradient scale c(R, N, d) of every regularizer: the table of the README's "One λ for every method".

c is the mean over rows of the Riemannian gradient norm ‖(I − x xᵀ)∇_x R‖ at N i.i.d. uniform
points of S^{d−1} (:func:`dispersion.gradient_scale`; estimated in float64 on the CPU from the
library's fixed seed, with draws until the standard error is ≤ 2 % of c; the same numbers a run
with ``normalize=True`` divides by). Each method at its library defaults (``mhe``: Gaussian
chordal γ = 1; ``lloyd``: M = 512; ``sliced``: one great circle; ``ssw``: 50 circles;
``uniformity``: t = 2), plus the paper's MHE setting γ = ½ (γ_a = 1 in the authors' code).

    OMP_NUM_THREADS=1 python benchmarks/gradient_scales.py [--sizes 512x64 20000x64] [--out FILE]

Writes a Markdown table to stdout (and to ``--out`` when given) with c, its relative standard
error, the number of draws and the seconds the estimate took on this machine. At N = 20 000 the
pairwise methods take 1–4 s a draw on one core (float64, blocked), about 6 minutes in all.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import dispersion
from dispersion.regularizers import REGISTRY
from dispersion.regularizers.scale import scale_draws

CASES = [
    ("mhe", {}, "Gaussian d_R, γ = 1"),
    ("mhe", {"gamma": 0.5}, "Gaussian d_R, γ = ½ (paper)"),
    ("mhe", {"kernel": "riesz", "distance": "geodesic", "s": 1.0}, "Riesz d_S, s = 1"),
    ("mma", {}, ""),
    ("koleo", {}, ""),
    ("mmcs", {}, ""),
    ("lloyd", {}, "M = 512"),
    ("sliced", {}, "L = 1"),
    ("sliced", {"n_slices": 16}, "L = 16"),
    ("ssw", {}, "L = 50"),
    ("uniformity", {}, "t = 2"),
]


def fmt(x: float) -> str:
    m, e = f"{x:.2e}".split("e")
    e = int(e)
    return m if e == 0 else f"{m}·10^{e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["512x64", "20000x64"], help="NxD pairs")
    ap.add_argument("--out", help="also write the Markdown table here")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    print(f"# estimating c for {len(CASES)} settings at {sizes}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    head = "| method | setting | " + " | ".join(f"c at N = {n:,}, d = {d}".replace(",", " ", 1) if n >= 10_000
                                               else f"c at N = {n}, d = {d}" for n, d in sizes)
    head += " | " + " | ".join(f"draws / s at N = {n}" for n, d in sizes) + " |"
    rows = [head, "|" + "---|" * (2 + 2 * len(sizes))]
    for name, params, label in CASES:
        cells, costs = [], []
        for n, d in sizes:
            t0 = time.perf_counter()
            draws = scale_draws(REGISTRY[name], dispersion.build(name, **params).hparams(), n, d)
            dt = time.perf_counter() - t0
            c = sum(draws) / len(draws)
            se = (sum((v - c) ** 2 for v in draws) / max(1, len(draws) - 1) / len(draws)) ** 0.5 / c
            cells.append(f"{fmt(c)} (±{100 * se:.1f} %)" if len(draws) > 1 else fmt(c))
            costs.append(f"{len(draws)} / {dt:.1f}")
            print(f"# {name} {label or '-'} N={n} d={d}: c={c:.4g} se={se:.3f} draws={len(draws)} {dt:.1f}s", flush=True)
        rows.append(f"| `{name}` | {label or '—'} | " + " | ".join(cells) + " | " + " | ".join(costs) + " |")
    table = "\n".join(rows) + "\n"
    print(table, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table)


if __name__ == "__main__":
    main()
