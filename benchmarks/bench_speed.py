#!/usr/bin/env python
"""Speed against the hardware limit: the optimiser step and the O(N²) metrics and energies.

Everything is measured side by side in one process, one run, at one thread count (``--threads``,
default 1: "one core"), in float32, median of repeats after a warm-up:

* **optimizer** — one update step of a (N, d) parameter with a fixed gradient: ``torch.optim.Adam``
  (the Euclidean floor), the fused ``dispersion.optim.RiemannianAdam`` and geoopt's
  ``RiemannianAdam(stabilize=1)`` on ``SphereExact`` (the reference it reproduces), and the same
  for SGD with momentum 0.9.
* **limit** — at N = 20 000, d = 64 by default: the *limit* is the time of the same multiply–adds
  as bare matrix products in row blocks without the N×N matrix, the upper-triangle sweep
  Σ_s X[s:s+b] @ X[s:]ᵀ (N²d/2 multiply–adds; best block b of 128–1 024), beside one
  materialised X @ Xᵀ. Each method is reported as a multiple of that limit: ``min_angle`` and
  ``nearest_neighbor_angles`` (one sweep of multiply–adds), the Gaussian ``mhe`` value +
  gradient (three sweeps' worth: Gram, then two gradient products), ``sliced`` with 13 great
  circles forward + backward (for scale only; it is O(N log N)).
* **split** — one step of the largest regime cell (N = 100 000, d = 1 024 by default) divided into
  the regularizer's forward + backward (each of the synthetic study's methods at its batch size
  512 / L = round(512²/N)), the optimiser step, and the metrics (min angle + circular variance,
  computed every ``log_every`` = 250 steps of the study, so 1/250 of it per step).
* **e2e** — the paper-scale synthetic run of ``config/config.yaml`` (``synthetic/main``,
  ``sliced_auto``, clumped start, 5 000 steps, metrics every 250) through the experiment's own
  ``run``, timed end to end, with the fused optimiser and with geoopt's.

Usage::

    python benchmarks/bench_speed.py                       # all four parts (~15 min on one core)
    python benchmarks/bench_speed.py --parts optimizer limit
    python benchmarks/bench_speed.py --device cuda --threads 16

Writes ``benchmarks/results/speed_<device>.json`` (every timing, the machine, torch, the load
average before and after) and ``.md``, and pastes the Markdown into ``benchmarks/README.md``
between the ``<!-- speed_<device>:start/end -->`` markers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import geoopt  # noqa: E402

import dispersion  # noqa: E402
from dispersion import metrics  # noqa: E402
from dispersion.optim import RiemannianAdam, RiemannianSGD  # noqa: E402
from _readme import update_readme, write_atomic  # noqa: E402  (benchmarks/, the script's folder)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device: str, min_time: float = 1.0, max_repeats: int = 30, min_repeats: int = 3) -> dict:
    """Median and best wall time of ``fn()`` in seconds, after one warm-up call."""
    fn()
    _sync(device)
    times = []
    t_start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - t_start < min_time):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "best_s": min(times), "repeats": len(times)}


def _unit(n: int, d: int, device: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1).to(device)


#: Largest table (entries) on which geoopt's optimisers are timed: at N = 10⁶, d = 512 (2 GB in
#: float32) its chain of temporaries needs ~20 GB, more than the 24 GB machine can spare.
_GEOOPT_MAX_ENTRIES = 2 * 10**8


# --- optimizer ----------------------------------------------------------------------------

def bench_optimizer(device: str, grid: list[tuple[int, int]]) -> list[dict]:
    rows = []
    for n, d in grid:
        X0 = _unit(n, d, device)
        grad = 1e-2 * _unit(n, d, device, seed=1)
        makers = {
            "torch.optim.Adam": lambda P: torch.optim.Adam([P], lr=1e-3),
            "fused RiemannianAdam": lambda P: RiemannianAdam([P], lr=1e-3),
            "geoopt RiemannianAdam": lambda P: geoopt.optim.RiemannianAdam([P], lr=1e-3, stabilize=1),
            "torch.optim.SGD (momentum)": lambda P: torch.optim.SGD([P], lr=1e-3, momentum=0.9),
            "fused RiemannianSGD (momentum)": lambda P: RiemannianSGD([P], lr=1e-3, momentum=0.9),
            "geoopt RiemannianSGD (momentum)": lambda P: geoopt.optim.RiemannianSGD([P], lr=1e-3, momentum=0.9,
                                                                                   stabilize=1),
        }
        for name, make in makers.items():
            if name.startswith("geoopt") and n * d > _GEOOPT_MAX_ENTRIES:
                rows.append({"part": "optimizer", "n": n, "d": d, "impl": name,
                             "note": "not run: geoopt's temporaries need ~10 copies of the table"})
                continue
            P = (geoopt.ManifoldParameter(X0.clone(), manifold=geoopt.SphereExact()) if name.startswith("geoopt")
                 else torch.nn.Parameter(X0.clone()))
            P.grad = grad.clone()
            opt = make(P)

            def step():
                opt.step()  # noqa: F821 (bound above in the loop; pyflakes reads the del below as unbinding it)

            big = n * d >= 10**8
            r = timeit(step, device, min_time=0.5 if not big else 0.0, max_repeats=30 if not big else 3)
            rows.append({"part": "optimizer", "n": n, "d": d, "impl": name, **r})
            print(f"optimizer N={n} d={d} {name}: {r['median_s'] * 1e3:.2f} ms", flush=True)
            del P, opt
    return rows


# --- limit ----------------------------------------------------------------------------------

def _sweep(X: torch.Tensor, b: int) -> None:
    n = X.shape[0]
    for s in range(0, n, b):
        X[s:s + b] @ X[s:].T


def bench_limit(device: str, n: int, d: int, rounds: int = 7) -> list[dict]:
    """Interleaved: every round times the limit sweep and then each computation once, and each
    computation's multiple of the limit is the median over rounds of its time over the same
    round's limit — robust to a load that changes during the run."""
    X = _unit(n, d, device)
    rows = []
    sweeps = {}
    for b in (128, 256, 512, 1024):
        sweeps[b] = timeit(lambda: _sweep(X, b), device, min_time=1.0, max_repeats=5)
        rows.append({"part": "limit", "n": n, "d": d, "impl": f"sweep b={b}", **sweeps[b]})
    best_b = min(sweeps, key=lambda b: sweeps[b]["median_s"])
    XR = X.clone().requires_grad_(True)
    mhe = dispersion.build("mhe", kernel="gaussian", distance="chordal", gamma=1.0)
    sliced = dispersion.build("sliced", n_slices=13, generator=torch.Generator(device=device).manual_seed(0))
    cases = {
        "materialised X @ X.T": lambda: X @ X.T,
        "metrics.min_angle": lambda: metrics.min_angle(X),
        "metrics.nearest_neighbor_angles": lambda: metrics.nearest_neighbor_angles(X),
        "mhe gaussian value + gradient": lambda: torch.autograd.grad(mhe(XR), XR),
        "sliced (13 circles) value + gradient": lambda: torch.autograd.grad(sliced(XR), XR),
    }
    goals = {"metrics.min_angle": 2.0, "metrics.nearest_neighbor_angles": 2.0, "mhe gaussian value + gradient": 3.5}
    for fn in cases.values():  # warm-up
        fn()
    limit_t, times = [], {name: [] for name in cases}
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        _sweep(X, best_b)
        _sync(device)
        limit_t.append(time.perf_counter() - t0)
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    limit = statistics.median(limit_t)
    rows.append({"part": "limit", "n": n, "d": d, "impl": "limit", "block": best_b, "median_s": limit,
                 "best_s": min(limit_t), "repeats": rounds})
    for name, ts in times.items():
        x = statistics.median(t / lt for t, lt in zip(ts, limit_t))
        rows.append({"part": "limit", "n": n, "d": d, "impl": name, "median_s": statistics.median(ts),
                     "best_s": min(ts), "repeats": rounds, "x_limit": x, "goal_x_limit": goals.get(name)})
        print(f"limit N={n} d={d} {name}: {statistics.median(ts):.3f} s = {x:.2f}x limit", flush=True)
    return rows


# --- split of one step at the largest regime cell -------------------------------------------

def bench_split(device: str, n: int, d: int, optimizer_steps: int = 5) -> list[dict]:
    import yaml

    from dispersion.experiments.synthetic import resolve_params, uses_minibatch
    from dispersion.pipeline import method_spec

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    syn = cfg["synthetic"]
    batch = int(syn["batch_size"])
    X = _unit(n, d, device)
    rows = []
    P = torch.nn.Parameter(X.clone())
    P.grad = 1e-2 * _unit(n, d, device, seed=1)
    for name, make in (("fused RiemannianAdam", lambda: RiemannianAdam([P], lr=1e-3)),
                       ("geoopt RiemannianAdam", None)):
        if make is None:
            Q = geoopt.ManifoldParameter(X.clone(), manifold=geoopt.SphereExact())
            Q.grad = P.grad.clone()
            opt = geoopt.optim.RiemannianAdam([Q], lr=1e-3, stabilize=1)
        else:
            opt = make()
        r = timeit(opt.step, device, min_time=0.0, max_repeats=optimizer_steps)
        rows.append({"part": "split", "n": n, "d": d, "impl": f"optimizer: {name}", **r})
        print(f"split optimizer {name}: {r['median_s'] * 1e3:.1f} ms", flush=True)
    r = timeit(lambda: (metrics.min_angle(X), metrics.circular_variance(X)), device, min_time=0.0, max_repeats=1,
               min_repeats=1)
    log_every = int(syn["main"]["log_every"])
    rows.append({"part": "split", "n": n, "d": d, "impl": "metrics (min angle + circular variance)", **r,
                 "per_step_s": r["median_s"] / log_every, "log_every": log_every})
    print(f"split metrics: {r['median_s']:.1f} s per evaluation, {r['median_s'] / log_every * 1e3:.1f} ms per step",
          flush=True)
    g = torch.Generator(device=device).manual_seed(0)
    for variant in syn["methods"]:
        v = method_spec(cfg, "synthetic", variant)  # the variant with the study's overrides
        params = resolve_params(v["method"], v["params"], n, batch)
        reg = dispersion.build(v["method"], generator=g, **params)
        mb = uses_minibatch(v["method"])

        def fwd_bwd():
            P.grad = None
            rows_ = P[torch.randperm(n, device=device)[:batch]] if mb else P
            reg(rows_).backward()

        r = timeit(fwd_bwd, device, min_time=1.0, max_repeats=10)
        rows.append({"part": "split", "n": n, "d": d, "impl": f"regularizer: {variant}", **r,
                     "minibatch": batch if mb else None})
        print(f"split regularizer {variant}: {r['median_s'] * 1e3:.1f} ms", flush=True)
    return rows


# --- the paper-scale synthetic run end to end ------------------------------------------------

def bench_e2e(device: str, variant: str = "sliced_auto", init: str = "clumped") -> list[dict]:
    import yaml

    from dispersion.experiments import synthetic
    from dispersion.pipeline.synthetic import synthetic_specs

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["device"] = device
    specs = synthetic_specs(cfg)
    key = next(k for k in specs if k[0] == "main" and k[1] == init and k[2] == variant)
    rows = []
    for opt in ("riemannian_adam", "geoopt_riemannian_adam"):
        spec = {**specs[key], "optimizer": opt}
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary = synthetic.run(spec, Path(tmp) / "run", progress=False)
            wall = time.perf_counter() - t0
        fin = summary["final"]
        rows.append({"part": "e2e", "n": spec["n"], "d": spec["d"], "impl": f"synthetic/main {variant} {init}, {opt}",
                     "median_s": wall, "repeats": 1, "update_time_s": fin["update_time_s"],
                     "steps": fin["steps_done"], "min_angle": fin["min_angle"],
                     "circular_variance": fin["circular_variance"]})
        print(f"e2e {opt}: {wall:.1f} s wall, {fin['update_time_s']:.1f} s update, min angle {fin['min_angle']:.4f}",
              flush=True)
    return rows


# --- output ---------------------------------------------------------------------------------

def _ms(t: float) -> str:
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def markdown(rows: list[dict], meta: dict) -> str:
    out = [f"Measured on {meta['device_name']}, {meta['threads']} thread(s), float32, torch {meta['torch']}, "
           "median of repeats after a warm-up; the machine is shared, so compare within a row. Per part: "
           + "; ".join(f"{part} {m['date']}, load average {m['load_before']} before, {m.get('load_after', '?')} after"
                       for part, m in meta.get("meta_by_part", {}).items()) + ".", ""]
    opt = [r for r in rows if r["part"] == "optimizer"]
    if opt:
        out += ["**Optimiser step** (a fixed gradient; ratio to `torch.optim.Adam` / `SGD` in brackets; goal of "
                "the fused Adam at N = 20 000, d = 64: ≤ 1.5×)", "",
                "| N | d | torch Adam | fused RiemannianAdam | geoopt RiemannianAdam | torch SGD (mom.) "
                "| fused RiemannianSGD | geoopt RiemannianSGD |", "|---|---|---|---|---|---|---|---|"]
        for n, d in dict.fromkeys((r["n"], r["d"]) for r in opt):
            cell = {r["impl"]: r.get("median_s") for r in opt if (r["n"], r["d"]) == (n, d)}
            a, s = cell["torch.optim.Adam"], cell["torch.optim.SGD (momentum)"]

            def c(name, base, digits):
                t = cell.get(name)
                return "not run (memory)" if t is None else f"{_ms(t)} ({t / base:.{digits}f}×)"

            out.append(f"| {n:,} | {d} | {_ms(a)} | {c('fused RiemannianAdam', a, 2)} | "
                       f"{c('geoopt RiemannianAdam', a, 1)} | {_ms(s)} | {c('fused RiemannianSGD (momentum)', s, 2)} | "
                       f"{c('geoopt RiemannianSGD (momentum)', s, 1)} |")
        out.append("")
    lim = [r for r in rows if r["part"] == "limit"]
    if lim:
        limit = next(r for r in lim if r["impl"] == "limit")
        out += [f"**Against the limit** at N = {limit['n']:,}, d = {limit['d']}: the limit is the upper-triangle "
                f"sweep of bare matrix products, {_ms(limit['median_s'])} (best block {limit['block']} rows; "
                f"each round times the limit and every computation once, {limit['repeats']} rounds)", "",
                "| computation | time | × limit (median of per-round ratios) | goal |", "|---|---|---|---|"]
        for r in lim:
            if r["impl"].startswith("sweep") or r["impl"] == "limit":
                continue
            goal = f"≤ {r['goal_x_limit']}×" if r.get("goal_x_limit") else ""
            out.append(f"| {r['impl']} | {_ms(r['median_s'])} | {r['x_limit']:.2f}× | {goal} |")
        out.append("")
    sp = [r for r in rows if r["part"] == "split"]
    if sp:
        n, d = sp[0]["n"], sp[0]["d"]
        out += [f"**One step of the largest regime cell**, N = {n:,}, d = {d} (per step; the metrics run every "
                f"{next(r['log_every'] for r in sp if 'log_every' in r)} steps)", "",
                "| part | per step |", "|---|---|"]
        for r in sp:
            per = r.get("per_step_s", r["median_s"])
            extra = f" (one evaluation: {_ms(r['median_s'])})" if "per_step_s" in r else ""
            mb = f", minibatch {r['minibatch']}" if r.get("minibatch") else ""
            out.append(f"| {r['impl']}{mb} | {_ms(per)}{extra} |")
        out.append("")
    e2e = [r for r in rows if r["part"] == "e2e"]
    if e2e:
        out += ["**The paper-scale synthetic run end to end** (`config/config.yaml`, N = 20 000, d = 64, 5 000 "
                "steps, metrics every 250; goal ≤ 60 s on one core)", "",
                "| run | wall time | update steps | final min angle | final circular variance |",
                "|---|---|---|---|---|"]
        for r in e2e:
            out.append(f"| {r['impl']} | {r['median_s']:.1f} s | {r['update_time_s']:.1f} s "
                       f"| {r['min_angle']:.4f} rad | {r['circular_variance']:.4f} |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core)")
    p.add_argument("--parts", nargs="+", default=["optimizer", "limit", "split", "e2e"],
                   choices=["optimizer", "limit", "split", "e2e"])
    p.add_argument("--limit-n", type=int, default=20000)
    p.add_argument("--limit-d", type=int, default=64)
    p.add_argument("--split-n", type=int, default=100000)
    p.add_argument("--split-d", type=int, default=1024)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--no-readme", action="store_true", help="do not paste the table into benchmarks/README.md")
    p.add_argument("--update", action="store_true",
                   help="keep the rows of the parts not run now from the existing JSON (their own dates are "
                        "kept in its 'meta_by_part')")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": args.device,
        "device_name": (torch.cuda.get_device_name() if args.device == "cuda"
                        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"),
        "threads": args.threads, "torch": torch.__version__, "geoopt": geoopt.__version__,
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"speed_{args.device}"
    rows: list[dict] = []
    meta_by_part: dict[str, dict] = {}
    if args.update and stem.with_suffix(".json").exists():
        old = json.loads(stem.with_suffix(".json").read_text())
        rows = [r for r in old["rows"] if r["part"] not in args.parts]
        for part in dict.fromkeys(r["part"] for r in rows):
            meta_by_part[part] = old["meta"].get("meta_by_part", {}).get(part, old["meta"])
    grid = [(20000, 64), (1000, 64), (1000, 512), (100000, 64), (100000, 512), (1000000, 64), (1000000, 512)]
    runners = {
        "optimizer": lambda: bench_optimizer(args.device, grid),
        "limit": lambda: bench_limit(args.device, args.limit_n, args.limit_d),
        "split": lambda: bench_split(args.device, args.split_n, args.split_d),
        "e2e": lambda: bench_e2e(args.device),
    }
    for part in args.parts:  # each part is saved as soon as it is done
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        rows = [r for r in rows if r["part"] != part] + runners[part]()
        meta_by_part[part] = {"date": date, "load_before": load_before,
                              "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg())}
        meta["meta_by_part"] = meta_by_part
        write_atomic(stem.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=1))
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    table = markdown(rows, meta)
    write_atomic(stem.with_suffix(".md"), table + "\n")
    if not args.no_readme and args.out == HERE / "results":
        update_readme(f"speed_{args.device}", table)
    print(table)


if __name__ == "__main__":
    main()
