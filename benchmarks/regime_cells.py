"""How long would the regime cells that the committed run leaves out take on this machine?

The paper-scale config runs the regime grid (Tokarchuk et al., arXiv:2502.08231, the large-scale
synthetic experiment) only up to ``synthetic.regimes.max_nd`` = N·d. For every cell above it,
this script measures, per method variant, the update time of a few optimisation steps (exactly
the steps a run takes: same regularizer, optimiser, minibatch and compute matching, through
``dispersion.optim.optimize``) and the time of one evaluation of the run's metrics (exact min
angle + circular variance of all N points), and extrapolates to the run:
``steps x step time + 2 x metric time`` (a regime run logs at step 0 and at the end).

    OMP_NUM_THREADS=1 python benchmarks/regime_cells.py [--measure-steps 10] \
        [--out benchmarks/results/regime_cells_cpu.md]

It prints (and writes) a Markdown table with the machine, thread count and load average.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    from dispersion import metrics
    from dispersion.experiments.synthetic import _minibatched, initial_points, resolve_params
    from dispersion.optim import optimize
    from dispersion.regularizers import build
    from dispersion.runio import atomic_write_text, device_description, seed_everything
    from dispersion.pipeline import base_config
    from dispersion.pipeline.synthetic import synthetic_specs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure-steps", type=int, default=10, help="optimisation steps timed per variant")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "regime_cells_cpu.md"))
    args = p.parse_args(argv)
    if args.measure_steps < 1:
        p.error(f"--measure-steps must be at least 1, got {args.measure_steps}")

    config = base_config(str(ROOT))
    reg_cfg = config["synthetic"]["regimes"]
    cap = reg_cfg.get("max_nd")
    if cap is None:
        print("synthetic.regimes.max_nd is null: every cell is run, nothing to extrapolate")
        return 0
    full = {**config, "synthetic": {**config["synthetic"], "regimes": {**reg_cfg, "max_nd": None}}}
    specs = {k: v for k, v in synthetic_specs(full).items() if k[0] == "regimes" and v["n"] * v["d"] > cap}
    cells = sorted({(s["n"], s["d"]) for s in specs.values()})
    device = torch.device("cpu")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = _load()
    rows = []
    for n, d in cells:
        gen = seed_everything(42, device)
        X0 = initial_points({"n": n, "d": d, "init": reg_cfg["init"], "kappa": config["synthetic"]["kappa"]}, gen, device)
        t0 = time.perf_counter()
        metrics.min_angle(X0)
        metrics.circular_variance(X0)
        t_metric = time.perf_counter() - t0
        cell_total = 0.0
        for (_, cell, variant, _seed), spec in sorted(specs.items()):
            if (spec["n"], spec["d"]) != (n, d) or spec["method"] == "reference":
                continue
            batch = spec.get("batch_size") or 512
            params = resolve_params(spec["method"], spec["params"], n, batch)
            reg = build(spec["method"], generator=gen, **params)
            res = optimize(X0.clone(), reg, steps=args.measure_steps, lr=float(spec["lr"]),
                           optimizer=spec["optimizer"], batch_size=batch if _minibatched(spec) else None,
                           generator=gen, progress=False)
            per_step = res.update_time_s / res.steps
            run_s = spec["steps"] * per_step + 2 * t_metric
            cell_total += run_s
            rows.append((n, d, variant, per_step * 1e3, run_s / 60))
            print(f"N={n} d={d} {variant}: {per_step * 1e3:.1f} ms/step -> {run_s / 60:.1f} min per run", flush=True)
        rows.append((n, d, "**cell total** (+ reference)", float("nan"), (cell_total + t_metric) / 60))
        print(f"N={n} d={d}: metrics {t_metric:.1f} s; cell {(cell_total + t_metric) / 3600:.2f} h", flush=True)

    steps = reg_cfg["steps"]
    lines = [
        f"Regime cells above N·d = {cap} (not run in the committed results), extrapolated from "
        f"{args.measure_steps} timed steps per variant + one timed metric evaluation: run time = "
        f"{steps} × step + 2 × metrics.",
        "",
        f"Machine: {device_description(device)}, torch {torch.__version__}, measured {started}, "
        f"load average (1/5/15 min) {load_before} before and {_load()} after.",
        "",
        "| N | d | variant | ms / step | min / run |",
        "|---:|---:|:--|---:|---:|",
    ]
    for n, d, v, ms, mins in rows:
        ms_txt = "" if ms != ms else f"{ms:.1f}"
        lines.append(f"| {n} | {d} | {v} | {ms_txt} | {mins:.1f} |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
