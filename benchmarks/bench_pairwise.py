#!/usr/bin/env python
"""Side-by-side benchmark of the dispersion library against dense references and KeOps.

Measures, for the pairwise regularizers (``mhe`` Gaussian d_R and Riesz d_S, ``mma``,
``koleo``, ``mmcs``), ``sliced`` with 13 slices (great circles and axis-aligned), and the
metrics (``min_angle``, ``mean_angle``, ``circular_variance``), the time of one call —
**forward + backward** for the regularizers, the value for the metrics — and its peak memory,
for every implementation in the same run:

* ``ours``    — the library as a user calls it (``dispersion.build(...)``, default
  ``block_size=None``: blocked full batch above N = 128; ``dispersion.metrics``);
* ``dense``   — the formula written on the full N×N Gram matrix (``pairwise.mhe_energy`` etc.,
  the library's own dense reference; for the metrics, the Gram matrix with its diagonal
  masked);
* ``authors`` — the implementation pattern of the authors' ledoh-torch: the Gram matrix, then a
  gather of its upper triangle with ``triu_indices`` (kernel energies), ``arccos`` of the whole
  matrix then ``fill_diagonal_`` and ``min`` (MMA, min_angle), ``cdist`` (KoLeo); written here
  from that pattern with the library's correct kernels;
* ``keops``   — pykeops LazyTensors (optional; skipped with a message when it is not installed
  or does not compile): the Gaussian energy as a kernel sum, the nearest-neighbour methods and
  min_angle through ``argKmin``;
* ``reference`` / ``loop`` (sliced only) — the autograd composition of
  ``circle_angles`` + ``sliced_energy_from_angles`` (the library's unfused reference), and 13
  separate single-slice calls.

Every case runs in its own subprocess (so peak memory is that case's alone and an
out-of-memory kill loses one row), after one warm-up call, repeated until about a second has
passed (at most ``--repeats`` times); the best time is reported (the machine may be shared).
Workers run with ``OMP_WAIT_POLICY=PASSIVE`` unless told otherwise: on a CPU shared with other
jobs, OpenMP threads that spin at barriers steal the core their descheduled peer needs, and
small operations became 5× slower here; the setting applies to every implementation alike.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the
call; on the CPU the growth of the process's peak resident set (``ru_maxrss``) over its
resident set before the call. Cases are skipped, with the reason written in the table, when
their estimated memory does not fit the device, when a time extrapolated (∝ N² for pairwise,
∝ N log N for sliced) from the same implementation at the previous N exceeds
``--max-case-seconds``, and for the pairwise methods at N = 10⁶ on the CPU.

Usage::

    python benchmarks/bench_pairwise.py --quick            # a few minutes on a 2-core CPU
    python benchmarks/bench_pairwise.py                    # the full grid, CPU and CUDA
    python benchmarks/bench_pairwise.py --device cuda --n 1e5 1e6 --d 128

Writes ``<out>/bench_<device>.csv`` (one row per case) and ``<out>/bench_<device>.md``
(one row per method × N × d, implementations side by side with their time relative to
``ours``); ``--out`` defaults to ``benchmarks/results`` (``benchmarks/results/quick`` with
``--quick``, git-ignored, so that a quick run never overwrites the full table). A run into
``benchmarks/results`` also replaces its table in ``benchmarks/README.md`` (between the
``<!-- bench_<device>:start/end -->`` markers); ``--update`` merges the cases run now into
the existing CSV instead of starting a new one.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ------------------------------------------------------------------------------------------
# what is measured
# ------------------------------------------------------------------------------------------

#: method -> (kind, implementations). kind: "loss" (forward+backward), "metric" (value).
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mhe_gaussian": ("loss", ("ours", "dense", "authors", "keops")),
    "mhe_riesz_geodesic": ("loss", ("ours", "dense", "authors")),
    "mma": ("loss", ("ours", "dense", "authors", "keops")),
    "koleo": ("loss", ("ours", "dense", "authors", "keops")),
    "mmcs": ("loss", ("ours", "dense", "authors", "keops")),
    "sliced": ("loss", ("ours", "reference", "loop")),
    "sliced_axis": ("loss", ("ours", "reference", "loop")),
    "min_angle": ("metric", ("ours", "dense", "authors", "keops")),
    "mean_angle": ("metric", ("ours", "dense")),
    "circular_variance": ("metric", ("ours",)),
}
PAIRWISE = {"mhe_gaussian", "mhe_riesz_geodesic", "mma", "koleo", "mmcs", "min_angle", "mean_angle"}
SLICES = 13

FULL_N = [1_000, 10_000, 100_000, 1_000_000]
FULL_D = [64, 128, 512]
QUICK_N = [1_000, 10_000]
QUICK_D = [64]
QUICK_METHODS = ["mhe_gaussian", "mma", "sliced", "min_angle"]
QUICK_SLICED_N = [1_000_000]  # the sliced target, also in --quick (d = 128)


# ------------------------------------------------------------------------------------------
# the implementations (run inside the worker subprocess)
# ------------------------------------------------------------------------------------------


def _authors_mhe(X, kernel, distance, gamma=1.0, s=1.0):
    from dispersion.regularizers.pairwise import kernel_from_cosine

    n = X.shape[0]
    G = X @ X.T
    iu = torch.triu_indices(n, n, offset=1, device=X.device)
    return kernel_from_cosine(G[iu[0], iu[1]], kernel, distance, gamma, s).mean()


def _authors_mma(X, eps=1e-7):
    A = torch.arccos((X @ X.T).clamp(-1 + eps, 1 - eps))
    A = A.fill_diagonal_(math.inf)
    return -A.min(dim=1)[0].mean()


def _authors_koleo(X):
    L = torch.log(torch.cdist(X, X, p=2.0))
    L = L.fill_diagonal_(math.inf)
    return -L.min(dim=1)[0].mean()


def _authors_mmcs(X):
    S = X @ X.T + 1
    S = S - 2.0 * torch.diag(torch.diag(S))
    return S.max(dim=1)[0].mean()


def _authors_min_angle(X):
    n = X.shape[0]
    A = torch.acos((X @ X.T - torch.eye(n, device=X.device, dtype=X.dtype)).clamp(-1 + 1e-6, 1 - 1e-6))
    return A.min()


def _dense_min_angle(X):
    G = X @ X.T
    G.fill_diagonal_(-math.inf)
    return torch.arccos(G.max(dim=1).values.clamp(-1, 1)).min()


def _dense_mean_angle(X):
    n = X.shape[0]
    G = X @ X.T
    iu = torch.triu_indices(n, n, offset=1, device=X.device)
    return torch.arccos(G[iu[0], iu[1]].double().clamp(-1, 1)).mean()


def _keops_lazy(X):
    from pykeops.torch import LazyTensor

    return LazyTensor(X[:, None, :]), LazyTensor(X[None, :, :])


def _keops_mhe_gaussian(X, gamma=1.0):
    xi, xj = _keops_lazy(X)
    n = X.shape[0]
    K = (((xi | xj) - 1.0) * (2.0 * gamma)).exp()  # exp(−γ ‖x_i − x_j‖²) on the sphere
    total = K.sum(dim=1).sum()  # all ordered pairs, the diagonal (k = 1) included
    return (total - n) / (n * (n - 1))


def _keops_neighbor(X):
    """Index of each row's nearest other row, through KeOps' argKmin (no gradient)."""
    xi, xj = _keops_lazy(X.detach())
    D = ((xi - xj) ** 2).sum(-1)
    idx = D.argKmin(2, dim=1)  # (N, 2): self and the nearest other (or a duplicate first)
    rows = torch.arange(X.shape[0], device=X.device)
    return torch.where(idx[:, 0] == rows, idx[:, 1], idx[:, 0]).long()


def _keops_nn_loss(name):
    from dispersion.regularizers.pairwise import chordal_from_cosine, geodesic_from_cosine

    def f(X):
        c = (X * X[_keops_neighbor(X)]).sum(dim=1)
        if name == "mma":
            return -geodesic_from_cosine(c).mean()
        if name == "koleo":
            return -torch.log(chordal_from_cosine(c)).mean()
        return (c + 1).mean()

    return f


def _keops_min_angle(X):
    j = _keops_neighbor(X)
    chord = torch.linalg.vector_norm(X - X[j], dim=1).clamp(max=2.0)
    return (2 * torch.asin(chord / 2)).min()


def _sliced_fns(impl, axis_aligned):
    import dispersion
    from dispersion.regularizers.sliced import sliced_energy_from_angles

    gen = torch.Generator(device=DEVICE).manual_seed(0)
    if impl == "ours":
        reg = dispersion.build("sliced", n_slices=SLICES, axis_aligned=axis_aligned, generator=gen)
        return reg.energy
    if impl == "reference":
        reg = dispersion.build("sliced", n_slices=SLICES, axis_aligned=axis_aligned, generator=gen)
        return lambda X: sliced_energy_from_angles(reg.angles(X))
    one = dispersion.build("sliced", n_slices=1, axis_aligned=axis_aligned, generator=gen)
    return lambda X: sum(one.energy(X) for _ in range(SLICES)) / SLICES


def make_fn(method: str, impl: str):
    """The callable measured for (method, impl): X -> 0-dim tensor."""
    import dispersion
    from dispersion import metrics
    from dispersion.regularizers import pairwise

    if method in ("sliced", "sliced_axis"):
        return _sliced_fns(impl, method == "sliced_axis")
    if method == "mhe_gaussian":
        return {
            "ours": dispersion.build("mhe", kernel="gaussian", distance="chordal").energy,
            "dense": lambda X: pairwise.mhe_energy(X, "gaussian", "chordal"),
            "authors": lambda X: _authors_mhe(X, "gaussian", "chordal"),
            "keops": _keops_mhe_gaussian,
        }[impl]
    if method == "mhe_riesz_geodesic":
        return {
            "ours": dispersion.build("mhe", kernel="riesz", distance="geodesic").energy,
            "dense": lambda X: pairwise.mhe_energy(X, "riesz", "geodesic"),
            "authors": lambda X: _authors_mhe(X, "riesz", "geodesic"),
        }[impl]
    if method in ("mma", "koleo", "mmcs"):
        return {
            "ours": dispersion.build(method).energy,
            "dense": {"mma": pairwise.mma_loss, "koleo": pairwise.koleo_loss, "mmcs": pairwise.mmcs_loss}[method],
            "authors": {"mma": _authors_mma, "koleo": _authors_koleo, "mmcs": _authors_mmcs}[method],
            "keops": _keops_nn_loss(method),
        }[impl]
    if method == "min_angle":
        return {"ours": metrics.min_angle, "dense": _dense_min_angle, "authors": _authors_min_angle,
                "keops": _keops_min_angle}[impl]
    if method == "mean_angle":
        return {"ours": metrics.mean_angle, "dense": _dense_mean_angle}[impl]
    if method == "circular_variance":
        return metrics.circular_variance
    raise ValueError(f"unknown method {method!r}")


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(spec: dict) -> dict:
    """Run one case and return its measurements (called in a subprocess)."""
    global DEVICE
    DEVICE = spec["device"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    method, impl, n, d = spec["method"], spec["impl"], spec["n"], spec["d"]
    dtype = getattr(torch, spec["dtype"])
    kind = METHODS[method][0]
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    X = torch.randn(n, d, generator=gen, device=DEVICE, dtype=dtype)
    X.div_(torch.linalg.vector_norm(X, dim=1, keepdim=True))  # in place: no setup peak
    out = {"status": "ok", "note": ""}
    try:
        fn = make_fn(method, impl)
    except ImportError as e:
        return {"status": "skipped", "note": f"{impl} not available ({e})"}
    if impl == "ours" and method in PAIRWISE and method not in ("min_angle", "mean_angle", "circular_variance"):
        from dispersion.regularizers import blocked, pairwise

        if n > pairwise.DENSE_MAX_N:
            temps = blocked._TEMPS_ENERGY if method.startswith("mhe") else blocked._TEMPS_NEIGHBORS
            out["note"] = f"blocked, {blocked.resolve_block_size('auto', X, temps)} rows/block"
        else:
            out["note"] = "dense path (N <= DENSE_MAX_N)"

    if kind == "loss":
        X.requires_grad_(True)

        def step():
            v = fn(X)
            (g,) = torch.autograd.grad(v, X)
            return v, g
    else:

        def step():
            with torch.no_grad():
                return fn(X), None

    times = []
    try:
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss()
        if not spec.get("no_warmup"):
            v, g = step()
            _sync()
            del g
        budget = spec.get("target_seconds", 1.0)
        while len(times) < spec.get("repeats", 5):
            _sync()
            t0 = time.perf_counter()
            v, g = step()
            _sync()
            times.append(time.perf_counter() - t0)
            del g
            if sum(times) >= budget:
                break
        if DEVICE == "cuda":
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    except Exception as e:  # a KeOps compile error, an allocation failure, ...
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        status = "oom" if "out of memory" in str(e).lower() or isinstance(e, MemoryError) else "failed"
        return {"status": status, "note": msg}
    times.sort()
    out.update(
        time_s=times[0],
        time_median_s=times[len(times) // 2],
        repeats=len(times),
        peak_mem_mb=max(peak, 0) / 2**20,
        value=float(v.detach().double().item()),
    )
    return out


# ------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------

CSV_FIELDS = [
    "device", "device_name", "method", "impl", "n", "d", "dtype", "status", "time_s", "time_median_s",
    "repeats", "peak_mem_mb", "value", "note",
]


def _available_bytes(device: str) -> int:
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(0.9 * free)
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return int(0.7 * info.get("MemAvailable", info["MemFree"]))


def _estimated_bytes(method: str, impl: str, n: int, d: int, itemsize: int) -> int:
    """Rough peak of one case: N×N temporaries of the dense implementations, else O(N d)."""
    base = 4 * n * d * itemsize
    if method in ("sliced", "sliced_axis"):
        return base + 8 * SLICES * n * itemsize
    if impl in ("dense", "authors") and method in PAIRWISE:
        per = 6 * n * n * itemsize
        if impl == "authors" and method.startswith("mhe") or (impl == "dense" and method == "mean_angle"):
            per += 8 * n * n  # the int64 triu_indices
        return base + per
    return base + 2**30  # blocked and KeOps: O(N · block) / O(N d)


def _scaling(method: str, n0: int, n1: int) -> float:
    if method in PAIRWISE:
        return (n1 / n0) ** 2
    return (n1 * math.log(n1)) / (n0 * math.log(n0))


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


def run_grid(args) -> None:
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [dv for dv in devices if dv == "cpu" or torch.cuda.is_available()]
    if args.device in ("cuda",) and not torch.cuda.is_available():
        print("CUDA is not available: nothing to run on cuda", file=sys.stderr)
        return
    out_dir = Path(args.out or (HERE / "results" / ("quick" if args.quick else "")))
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = args.methods or (QUICK_METHODS if args.quick else list(METHODS))
    ns = [int(float(x)) for x in args.n] if args.n else (QUICK_N if args.quick else FULL_N)
    ds = [int(x) for x in args.d] if args.d else (QUICK_D if args.quick else FULL_D)
    impls_wanted = set(args.impls) if args.impls else None
    itemsize = 4 if args.dtype == "float32" else 8

    for device in devices:
        cases = []
        for method in methods:
            m_ns, m_ds = ns, ds
            if args.quick and method in ("sliced", "sliced_axis"):
                m_ns, m_ds = sorted(set(ns) | set(QUICK_SLICED_N)), [128] if not args.d else ds
            for d in m_ds:
                for n in sorted(m_ns):
                    for impl in METHODS[method][1]:
                        if impl_wanted_ok(impls_wanted, impl):
                            cases.append((method, d, n, impl))
        print(f"[bench] {device}: {len(cases)} cases ({', '.join(methods)}; N in {ns}; d in {ds}); "
              f"each case at most {args.max_case_seconds:.0f} s extrapolated; writing to {out_dir}",
              flush=True)
        rows, last = [], {}
        started = time.time()
        load0 = os.getloadavg()[0]
        for k, (method, d, n, impl) in enumerate(cases, 1):
            row = {"device": device, "device_name": _device_name(device), "method": method, "impl": impl,
                   "n": n, "d": d, "dtype": args.dtype}
            skip = None
            if device == "cpu" and n >= 1_000_000 and method in PAIRWISE:
                skip = "O(N²) at N = 10⁶ is not run on the CPU"
            elif (method, impl, d) in failed_keys(rows):
                skip = "failed at a smaller N"
            elif _estimated_bytes(method, impl, n, d, itemsize) > _available_bytes(device):
                skip = f"does not fit ({_estimated_bytes(method, impl, n, d, itemsize) / 2**30:.0f} GiB est.)"
            elif (method, impl, d) in last:
                n0, t0 = last[(method, impl, d)]
                pred = t0 * _scaling(method, n0, n)
                if pred > args.max_case_seconds:
                    skip = f"predicted {pred:.0f} s > {args.max_case_seconds:.0f} s"
            if skip:
                row.update(status="skipped", note=skip)
            else:
                big = (method, impl, d) in last and last[(method, impl, d)][1] * _scaling(
                    method, last[(method, impl, d)][0], n) > 5
                spec = {"device": device, "method": method, "impl": impl, "n": n, "d": d, "dtype": args.dtype,
                        "repeats": args.repeats, "target_seconds": args.target_seconds,
                        "no_warmup": big, "threads": args.threads,
                        "omp_wait_policy": args.omp_wait_policy}
                row.update(_run_worker(spec, timeout=max(60.0, 4 * args.max_case_seconds + 60)))
                if row["status"] == "ok":
                    last[(method, impl, d)] = (n, row["time_s"])
            rows.append(row)
            t = f"{row['time_s']:.4g} s, {row['peak_mem_mb']:.0f} MB" if row["status"] == "ok" else row["status"]
            print(f"[bench] {k}/{len(cases)} {device} {method:<19} {impl:<9} N={n:<8} d={d:<4} {t}  "
                  f"{row.get('note', '')}",
                  flush=True)
        meta = {
            "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "device": _device_name(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_avg_start": round(load0, 2),
            "load_avg_end": round(os.getloadavg()[0], 2),
            "wall_s": round(time.time() - started, 1),
            "quick": bool(args.quick),
            "threads": args.threads or torch.get_num_threads(),
            "omp_wait_policy": args.omp_wait_policy,
            "git": _git_rev(),
        }
        stem = out_dir / f"bench_{device}"
        if args.update and stem.with_suffix(".csv").exists():
            rows, meta = _merge_previous(rows, meta, stem)
        write_outputs(rows, meta, stem)


def load_previous(stem: Path) -> tuple[list[dict], dict]:
    """The rows of ``stem``.csv (numbers parsed back) and the run record of ``stem``.json."""
    rows = []
    with open(stem.with_suffix(".csv"), newline="") as f:
        for r in csv.DictReader(f):
            r["n"], r["d"] = int(r["n"]), int(r["d"])
            for k in ("time_s", "time_median_s", "peak_mem_mb", "value"):
                r[k] = float(r[k]) if r.get(k) not in (None, "") else None
            rows.append(r)
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
    except (OSError, ValueError):
        meta = {}
    return rows, meta


def _merge_previous(rows: list[dict], meta: dict, stem: Path) -> tuple[list[dict], dict]:
    """Rows of the existing CSV, with the cases measured now replaced; meta records both runs."""
    new_keys = {(r["method"], r["impl"], r["n"], r["d"], r["dtype"]) for r in rows}
    old, prev = load_previous(stem)
    old = [r for r in old if (r["method"], r["impl"], r["n"], r["d"], r["dtype"]) not in new_keys]
    return old + rows, dict(meta, updated_from=prev)


def impl_wanted_ok(wanted, impl):
    return wanted is None or impl in wanted


def failed_keys(rows):
    return {(r["method"], r["impl"], r["d"]) for r in rows if r["status"] in ("failed", "oom", "timeout")}


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def _run_worker(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if spec.get("omp_wait_policy"):
        env["OMP_WAIT_POLICY"] = spec["omp_wait_policy"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"over {timeout:.0f} s"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1][:200]
    status = "oom" if p.returncode in (-9, 137) else "failed"
    return {"status": status, "note": f"exit {p.returncode}: {tail}"}


# ------------------------------------------------------------------------------------------
# outputs
# ------------------------------------------------------------------------------------------


def write_outputs(rows: list[dict], meta: dict, stem: Path) -> None:
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in CSV_FIELDS})
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    table = markdown_table(rows, meta)
    stem.with_suffix(".md").write_text(table)
    print(f"[bench] wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.md')}")
    if stem.parent.resolve() == (HERE / "results").resolve():
        _update_readme(stem.name, table)


def _update_readme(name: str, table: str) -> None:
    """Replace the text between ``<!-- {name}:start -->`` and ``<!-- {name}:end -->`` in
    benchmarks/README.md with the generated table (full runs into benchmarks/results only)."""
    readme = HERE / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}{end}{tail}")
    print(f"[bench] updated {readme}")


def _fmt_t(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def markdown_table(rows: list[dict], meta: dict) -> str:
    """One row per method × N × d; each implementation's time (and ours/its ratio)."""
    impl_order = ["ours", "dense", "authors", "keops", "reference", "loop"]
    present = [i for i in impl_order if any(r["impl"] == i for r in rows)]
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["n"], r["d"]), {})[r["impl"]] = r
    notes: list[str] = []

    def cell(r: dict | None, ours: dict | None) -> str:
        if r is None:
            return ""
        if r["status"] != "ok":
            note = f"{r['status']}: {r.get('note', '')}".strip(": ")
            if note not in notes:
                notes.append(note)
            return f"— [{notes.index(note) + 1}]"
        s = _fmt_t(r["time_s"])
        if r["impl"] != "ours" and ours is not None and ours.get("status") == "ok":
            s += f" ({r['time_s'] / ours['time_s']:.2g}×)"
        return s

    head = ["method", "N", "d"] + [f"{i} time" for i in present] + ["ours peak MB", "max other peak MB",
                                                                   "value agrees"]
    m = {"device": "?", "torch": "?", "date": "?", "git": "?", "load_avg_start": "?", "load_avg_end": "?",
         "threads": "?", "omp_wait_policy": "", "quick": False, "wall_s": 0.0, **meta}
    lines = [
        f"Device: {m['device']}; torch {m['torch']}; {m['date']}; git HEAD {m['git']}; "
        f"load average {m['load_avg_start']} → {m['load_avg_end']}; {m['threads']} torch threads, "
        f"OMP_WAIT_POLICY={m['omp_wait_policy'] or 'unset'}; {'quick' if m['quick'] else 'full'} run, "
        f"{m['wall_s']:.0f} s.",
        *([f"That run re-measured some cases (`--update`); the other rows come from an earlier run: "
           f"{m['updated_from'].get('date', '?')}, "
           f"load average {m['updated_from'].get('load_avg_start', '?')} → "
           f"{m['updated_from'].get('load_avg_end', '?')}, {m['updated_from'].get('wall_s', 0):.0f} s."]
          if m.get("updated_from") else []),
        "",
        "Time of one call (forward + backward for the regularizers, value for the metrics), best of up to "
        "5 repeats; in brackets the time relative to ours (> 1: ours is faster). Peak memory above the input. "
        "'value agrees': every implementation's value within 1e-3 relative of ours (the sliced loop draws "
        "other circles and is left out).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|",
    ]
    order = list(METHODS)
    for (method, n, d), by in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][2], kv[0][1])):
        ours = by.get("ours")
        cells = [cell(by.get(i), ours) for i in present]
        ours_mem = f"{ours['peak_mem_mb']:.0f}" if ours and ours["status"] == "ok" else ""
        others = [r["peak_mem_mb"] for i, r in by.items() if i != "ours" and r["status"] == "ok"]
        other_mem = f"{max(others):.0f}" if others else ""
        # the loop draws other circles than one 13-slice call: its value is not comparable
        vals = [r["value"] for i, r in by.items() if r["status"] == "ok" and i != "loop"]
        agree = ""
        if ours and ours["status"] == "ok" and len(vals) > 1:
            rel = max(abs(v - ours["value"]) / max(abs(ours["value"]), 1e-30) for v in vals)
            agree = "yes" if rel < 1e-3 else f"rel. diff {rel:.1e}"
        lines.append("| " + " | ".join([method, f"{n:,}", str(d)] + cells + [ours_mem, other_mem, agree]) + " |")
    if notes:
        lines += [""] + [f"[{k}] {t}" for k, t in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N in {1e3, 1e4}, d = 64, four methods, sliced at N = 1e6")
    p.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    p.add_argument("--methods", nargs="+", choices=list(METHODS))
    p.add_argument("--impls", nargs="+", choices=["ours", "dense", "authors", "keops", "reference", "loop"])
    p.add_argument("--n", nargs="+", help="numbers of points (1e4 notation accepted)")
    p.add_argument("--d", nargs="+", help="dimensions")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--target-seconds", type=float, default=1.0, help="stop repeating after this much time")
    p.add_argument("--max-case-seconds", type=float, default=60.0,
                   help="skip a case whose time, extrapolated from the previous N, exceeds this")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--omp-wait-policy", default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                   help="OMP_WAIT_POLICY of the workers (default PASSIVE, or the environment's): on a "
                        "shared CPU, spinning OpenMP threads stall every parallel region; '' to leave unset")
    p.add_argument("--update", action="store_true",
                   help="merge into the existing CSV/Markdown of the output folder, replacing the cases run now")
    p.add_argument("--render-only", action="store_true",
                   help="only rewrite the Markdown (and README) tables from the CSV and JSON already there")
    p.add_argument("--out", help="output folder (default benchmarks/results[/quick])")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if args.render_only:
        out_dir = Path(args.out or (HERE / "results" / ("quick" if args.quick else "")))
        for stem in sorted(out_dir.glob("bench_*.csv")):
            rows, meta = load_previous(stem.with_suffix(""))
            write_outputs(rows, meta, stem.with_suffix(""))
        return
    run_grid(args)


#: The device of the running worker ("cpu" or "cuda"), set by :func:`worker`.
DEVICE = "cpu"

if __name__ == "__main__":
    main()
