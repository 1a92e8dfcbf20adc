#!/usr/bin/env python
"""Exact k nearest neighbours side by side: ``dispersion.metrics.knn`` / ``min_angle`` against
faiss, scikit-learn and the bare blocked-product limit, on one core.

Implementations (``--impls``), all on the same float32 unit rows X (N, d), one thread each:

* ``knn``       — ``dispersion.metrics.knn(X, k)`` (exact; the symmetric sweep on the CPU);
* ``min_angle`` — ``dispersion.metrics.min_angle(X)`` (the exact nearest-neighbour sweep);
* ``faiss``     — ``faiss.IndexFlatIP`` (exact flat inner-product search), ``add(X)`` then
  ``search(X, k + 1)`` (row i finds itself among the k + 1);
* ``sklearn``   — ``sklearn.neighbors.NearestNeighbors(n_neighbors=k + 1, algorithm="brute",
  metric="cosine")``, ``fit(X).kneighbors(X)``;
* ``limit``     — the bare blocked products of the upper-triangle sweep, Σ_s X[s:s+b] @ X[s:]ᵀ
  (N²d/2 multiply–adds, b = 256, no N×N matrix): what ``min_angle`` and ``knn`` compute;
* ``limit_full`` — the bare blocked products against all columns, Σ_s X[s:s+b] @ Xᵀ (N²d
  multiply–adds): what faiss and scikit-learn compute.

Every case runs in its own subprocess (so that its peak memory is its own: the growth of the
peak resident set during the call — VmHWM, reset just before it — over the resident set before
it; on CUDA ``torch.cuda.max_memory_allocated``), with ``OMP_NUM_THREADS`` = ``MKL_NUM_THREADS`` =
``OPENBLAS_NUM_THREADS`` = ``--threads``, ``torch.set_num_threads`` and
``faiss.omp_set_num_threads`` likewise. Rounds are interleaved (each round runs every
implementation once, after a warm-up call at N ≤ 2·10⁴), and each implementation's time is
reported as the median over rounds of its wall time and of its CPU time (``time.process_time``:
on a shared machine the CPU time of a one-thread run moves less with the load than the wall
time), and as the median over rounds of its ratio to the same round's ``limit``.

Exactness (``--exact-n``, default 10⁴; 0 skips it): a set of near-duplicate clusters (half of
the rows in clusters of 20 points within 10⁻⁴ rad of their first row, where float32 cosines tie,
the rest uniform) searched by every implementation; the reference is the exact float64 brute
force (float64 cosines in blocks, the k + 4 largest re-measured with the chordal formula
2·asin(‖x_i − x_j‖/2), sorted by angle then index). Reported: recall@k (the mean share of each
row's true k neighbours found) and the share of rows whose k indices are exactly the
reference's, in order.

Usage::

    python benchmarks/bench_knn.py                       # N ∈ {10⁴, 10⁵}, d = 128, k = 10, one core
    python benchmarks/bench_knn.py --n 2e4 --rounds 3    # a quick side-by-side run
    python benchmarks/bench_knn.py --n 1e6 --rounds 1    # the N = 10⁶ row: hours on one core
    python benchmarks/bench_knn.py --device cuda --n 1e6 --impls knn min_angle limit --threads 16

Writes ``<out>/knn_<device>.json`` (every round of every case, the machine, versions, load
average before and after) and ``.md``; a run into ``benchmarks/results`` also pastes the table
into ``benchmarks/README.md`` between the ``<!-- knn_<device>:start/end -->`` markers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _readme import update_readme  # benchmarks/, the script's folder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

IMPLS = ["knn", "min_angle", "faiss", "sklearn", "limit", "limit_full"]
CPU_ONLY = {"faiss", "sklearn"}


def _parse_n(s: str) -> int:
    return int(float(s))


# --------------------------------------------------------------------------------------------
# the worker: one implementation, one data set, one process
# --------------------------------------------------------------------------------------------

def _data(n: int, d: int, kind: str, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    X = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64, generator=g), dim=1)
    size, scale = 20, 1e-4
    for c0 in range(0, n // 2, size):
        rows = torch.arange(c0 + 1, min(n, c0 + size))
        V = torch.randn(rows.numel(), d, dtype=torch.float64, generator=g)
        V = torch.nn.functional.normalize(V - (V @ X[c0])[:, None] * X[c0], dim=1)
        t = scale * torch.rand(rows.numel(), 1, dtype=torch.float64, generator=g)
        X[rows] = torch.cos(t) * X[c0] + torch.sin(t) * V
    return torch.nn.functional.normalize(X.float(), dim=1)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident set (VmHWM; Linux ≥ 4.0: ``5`` into ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """VmHWM of /proc/self/status (the peak since the last reset), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _runner(impl: str, X, k: int, device: str):
    """A function of no argument that runs ``impl`` once and returns its (N, k) indices or None."""
    import numpy as np
    import torch

    from dispersion import metrics

    n = X.shape[0]
    if impl == "knn":
        return lambda: metrics.knn(X, k)[0]
    if impl == "min_angle":
        return lambda: (metrics.min_angle(X), None)[1]
    if impl in ("limit", "limit_full"):
        def sweep():
            for s in range(0, n, 256):
                X[s:s + 256] @ (X[s:] if impl == "limit" else X).T
            if device == "cuda":
                torch.cuda.synchronize()
        return sweep
    xn = np.ascontiguousarray(X.cpu().numpy())
    if impl == "faiss":
        import faiss

        def run():
            index = faiss.IndexFlatIP(xn.shape[1])
            index.add(xn)
            return index.search(xn, k + 1)[1]
        return run
    if impl == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        return lambda: NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="cosine",
                                        n_jobs=1).fit(xn).kneighbors(xn, return_distance=False)
    raise ValueError(impl)


def _drop_self(I, k: int):
    """(N, k) neighbours from (N, k + 1) results that include the query row (or do not)."""
    import numpy as np

    I = np.asarray(I)
    n = I.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        row = I[i][I[i] != i]
        out[i] = row[:k]
    return out


def worker(cfg: dict) -> dict:
    threads = cfg["threads"]
    import time

    import torch

    torch.set_num_threads(threads)
    if cfg["impl"] == "faiss":
        import faiss

        faiss.omp_set_num_threads(threads)
    device = cfg["device"]
    X = _data(cfg["n"], cfg["d"], cfg["kind"]).to(device)
    k = cfg["k"]
    run = _runner(cfg["impl"], X, k, device)
    out: dict = {"impl": cfg["impl"], "n": cfg["n"]}
    if cfg["kind"] == "clusters":
        import numpy as np

        res = run()
        if res is None:
            return out
        I = np.asarray(res.cpu() if hasattr(res, "cpu") else res)
        if I.shape[1] == k + 1:
            I = _drop_self(I, k)
        ref = np.load(cfg["reference"])
        out["recall"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(I.tolist(), ref.tolist())]))
        out["rows_exact"] = float(np.mean((I == ref).all(axis=1)))
        return out
    if cfg["warmup"]:
        run()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    reset = _reset_peak_rss()
    rss0 = _rss_bytes()
    w0, c0 = time.perf_counter(), time.process_time()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    out["wall_s"] = time.perf_counter() - w0
    out["cpu_s"] = time.process_time() - c0
    peak = _peak_rss_bytes()
    out["peak_mb"] = ((torch.cuda.max_memory_allocated() - base) if device == "cuda" else max(0, peak - rss0)) / 2**20
    out["peak_note"] = ("CUDA max_memory_allocated growth" if device == "cuda" else
                        f"peak RSS growth over the RSS before the call{'' if reset else ' (lifetime peak: no reset)'}")
    return out


def _spawn(cfg: dict, timeout: float | None = None) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(cfg["threads"])
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        return {"impl": cfg["impl"], "n": cfg["n"], "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# the exact float64 reference of the exactness set
# --------------------------------------------------------------------------------------------

def reference_knn(X, k: int, extra: int = 4, block: int = 512):
    """Exact float64 brute force: float64 cosines in row blocks, the k + extra largest of each row
    re-measured with the chordal formula, the k smallest (angle, index) kept."""
    import math

    import torch

    Xd = torch.nn.functional.normalize(X.double(), dim=1)
    n = Xd.shape[0]
    out = torch.empty((n, k), dtype=torch.long)
    for s in range(0, n, block):
        G = Xd[s:s + block] @ Xd.T
        r = torch.arange(G.shape[0])
        G[r, r + s] = -math.inf
        c = G.topk(k + extra, dim=1).indices.sort(dim=1).values
        ang = 2 * torch.asin((torch.linalg.vector_norm(Xd[c] - Xd[s:s + block, None], dim=2) / 2).clamp(max=1))
        o = ang.argsort(dim=1, stable=True)[:, :k]
        out[s:s + block] = c.gather(1, o)
    return out.numpy()


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------

def _t(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


LABELS = {"knn": "`metrics.knn` (k = {k})", "min_angle": "`metrics.min_angle`",
          "faiss": "faiss `IndexFlatIP` (k + 1)", "sklearn": "sklearn brute cosine (k + 1)",
          "limit": "limit: Σ X[s:s+b] @ X[s:]ᵀ (N²d/2)", "limit_full": "Σ X[s:s+b] @ Xᵀ (N²d)"}


def markdown(result: dict) -> str:
    meta = result["meta"]
    k = meta["k"]
    out = [f"Measured {meta['date']} on {meta['device_name']}, {meta['threads']} thread(s), d = {meta['d']}, "
           f"k = {k}, float32, torch {meta['torch']}, faiss {meta.get('faiss', '—')}, scikit-learn "
           f"{meta.get('sklearn', '—')}; load average {meta['load_before']} before, {meta['load_after']} after. "
           f"Median over {meta['rounds']} interleaved rounds (one call per implementation per round, each in its own "
           "process); ×limit is the median of the per-round ratios of CPU time to the same round's limit.", ""]
    for n in meta["n"]:
        rows = [r for r in result["speed"] if r["n"] == n]
        if not rows:
            continue
        out += [f"**N = {n:,}**", "", "| implementation | wall time | CPU time | × limit (CPU) | peak memory |",
                "|---|---|---|---|---|"]
        for impl in meta["impls"]:
            rs = [r for r in rows if r["impl"] == impl]
            if not rs or any("error" in r for r in rs):
                note = next((r.get("error") or r.get("skipped") for r in rs if "error" in r or "skipped" in r), "not run")
                out.append(f"| {LABELS[impl].format(k=k)} | {note} | | | |")
                continue
            wall = statistics.median(r["wall_s"] for r in rs)
            cpu = statistics.median(r["cpu_s"] for r in rs)
            x = result["ratios"].get(f"{impl}@{n}")
            peak = max(r["peak_mb"] for r in rs)
            out.append(f"| {LABELS[impl].format(k=k)} | {_t(wall)} | {_t(cpu)} | "
                       f"{'—' if x is None else f'{x:.2f}×'} | {peak:,.0f} MB |")
        r = result["ratios"]
        pairs = [("knn", "faiss"), ("knn", "min_angle"), ("min_angle", "limit"), ("knn", "sklearn")]
        said = [f"{a} / {b} = {r[f'{a}/{b}@{n}']:.2f}" for a, b in pairs if f"{a}/{b}@{n}" in r]
        if said:
            out += ["", "Side by side (median of per-round ratios of CPU time): " + ", ".join(said) + "."]
        out.append("")
    if result.get("exactness"):
        ex = result["exactness"]
        out += [f"**Exactness** on {ex['n']:,} rows with near-duplicate clusters (half of the rows in clusters of 20 "
                "within 10⁻⁴ rad), against the exact float64 brute force", "",
                "| implementation | recall@k | rows exactly right |", "|---|---|---|"]
        for r in ex["rows"]:
            if "recall" in r:
                out.append(f"| {LABELS[r['impl']].format(k=k)} | {r['recall']:.4f} | {r['rows_exact']:.4f} |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", nargs="+", type=_parse_n, default=[10**4, 10**5],
                   help="numbers of points (1e5 notation; 1e6 takes hours on one core)")
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=IMPLS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--exact-n", type=_parse_n, default=10**4, help="rows of the exactness set (0: skip)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--no-readme", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    impls = [i for i in args.impls if not (args.device == "cuda" and i in CPU_ONLY)]
    meta = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": args.device,
            "device_name": (torch.cuda.get_device_name() if args.device == "cuda"
                            else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"),
            "threads": args.threads, "d": args.d, "k": args.k, "rounds": args.rounds, "n": args.n, "impls": impls,
            "torch": torch.__version__, "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    for mod in ("faiss", "sklearn"):
        try:
            meta[mod] = __import__(mod).__version__
        except ImportError:
            meta[mod] = "not installed"
    base = {"d": args.d, "k": args.k, "threads": args.threads, "device": args.device}
    speed: list[dict] = []
    for n in args.n:
        for rnd in range(args.rounds):
            for impl in impls:
                cfg = {**base, "impl": impl, "n": n, "kind": "uniform", "warmup": n <= 20_000}
                r = _spawn(cfg)
                r["round"] = rnd
                speed.append(r)
                print(json.dumps(r), flush=True)
    ratios: dict[str, float] = {}
    for n in args.n:
        by_round: dict[int, dict[str, float]] = {}
        for r in speed:
            if r["n"] == n and "cpu_s" in r:
                by_round.setdefault(r["round"], {})[r["impl"]] = r["cpu_s"]
        for a in impls:
            for b in ["limit", *impls]:
                qs = [rr[a] / rr[b] for rr in by_round.values() if a in rr and b in rr and rr[b] > 0]
                if qs and a != b:
                    ratios[(f"{a}@{n}" if b == "limit" else f"{a}/{b}@{n}")] = statistics.median(qs)
                    if b == "limit":
                        ratios[f"{a}/limit@{n}"] = statistics.median(qs)
    exactness = None
    if args.exact_n:
        import numpy as np

        X = _data(args.exact_n, args.d, "clusters")
        with tempfile.TemporaryDirectory() as tmp:
            ref_path = Path(tmp) / "reference.npy"
            np.save(ref_path, reference_knn(X, args.k))
            rows = []
            for impl in impls:
                if impl in ("knn", "faiss", "sklearn"):
                    r = _spawn({**base, "impl": impl, "n": args.exact_n, "kind": "clusters", "warmup": False,
                                "reference": str(ref_path)})
                    rows.append(r)
                    print(json.dumps(r), flush=True)
        exactness = {"n": args.exact_n, "rows": rows}
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    result = {"meta": meta, "speed": speed, "ratios": ratios, "exactness": exactness}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"knn_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    table = markdown(result)
    stem.with_suffix(".md").write_text(table + "\n")
    if not args.no_readme and args.out.resolve() == (HERE / "results").resolve():
        update_readme(f"knn_{args.device}", table)
    print(table)


if __name__ == "__main__":
    main()
