"""Several processes (torch.distributed): every regularizer and the exact metrics on points split
by rows over 2 and 3 real gloo processes on 127.0.0.1 equal the single-process results on the
concatenated rows — values, the parameter gradients of a DDP-wrapped embedding table, the
metrics with global indices, a closest pair planted across shards — and errors are raised on
every rank instead of hanging. All checks of one world size run inside one spawn."""

import os
import queue
import socket
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dispersion
from dispersion import metrics
from dispersion.distributed import draw_seed

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "ddp_dispersion.py"
#: Seconds a whole spawn may take before the test fails (a hang fails instead of blocking).
SPAWN_TIMEOUT = 180
#: Rows per rank: shards of different sizes.
REG_SIZES = {2: (5, 7), 3: (4, 6, 5)}
METRIC_SIZES = {2: (17, 23), 3: (13, 17, 10)}
#: The angle of the pair planted across the first and the last shard (radians).
PLANTED = 4e-4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, results) -> None:
    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=120))
        out = _checks(rank, world_size)
        dist.barrier()
        results.put((rank, "ok", out))
    except BaseException:  # noqa: BLE001 - reported to the parent with the traceback
        results.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _start(world_size: int):
    """Start :func:`_checks` on ``world_size`` gloo processes (spawned, one thread each)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_entry, args=(r, world_size, port, results)) for r in range(world_size)]
    for p in procs:
        p.start()
    return procs, results


def _collect(procs, results, deadline: float) -> tuple[str, object]:
    """("ok", results by rank) or ("error", what went wrong); the processes are gone after."""
    world_size, got = len(procs), {}
    try:
        while len(got) < world_size:
            try:
                rank, status, payload = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                return "error", f"{world_size} ranks did not finish within {SPAWN_TIMEOUT} s; finished: {sorted(got)}"
            got[rank] = (status, payload)
            if status == "error":
                break  # the others may be waiting for it in a collective
    finally:
        for p in procs:
            p.join(timeout=5 if len(got) == world_size else 0.5)
            if p.is_alive():
                p.kill()
                p.join()
    errors = {r: tb for r, (st, tb) in got.items() if st == "error"}
    if errors:
        return "error", "\n".join(f"rank {r}:\n{tb}" for r, tb in errors.items())
    return "ok", {r: payload for r, (_, payload) in got.items()}


@pytest.fixture(scope="module")
def runs():
    """The 2- and 3-rank checks and the DDP example, run side by side (8 processes in all), so
    that the module takes the time of the slowest rather than of the sum."""
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # inherited by the children
    example = None
    try:
        example = subprocess.Popen([sys.executable, str(EXAMPLE), "--steps", "3"], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        started = {w: _start(w) for w in (2, 3)}
        deadline = time.monotonic() + SPAWN_TIMEOUT
        out = {w: _collect(*started[w], deadline) for w in started}
        try:
            text, _ = example.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out["example"] = (example.returncode, text)
        except subprocess.TimeoutExpired:
            out["example"] = (None, f"the example did not finish within {SPAWN_TIMEOUT} s")
    finally:
        if example is not None and example.poll() is None:
            example.kill()
            example.wait()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out


# ----------------------------------------------------------------------------------------
# what every rank checks
# ----------------------------------------------------------------------------------------


def _sphere(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)


def _shard(X: torch.Tensor, sizes, rank: int) -> torch.Tensor:
    start = sum(sizes[:rank])
    return X[start:start + sizes[rank]]


class Table(torch.nn.Module):
    """A tiny embedding table: forward(rows) = its rows normalised to the sphere."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.weight[rows], dim=1)


def _methods(world_size: int):
    common = [
        ("mhe", {}), ("mhe", {"kernel": "riesz", "distance": "geodesic", "block_size": 4}),
        ("uniformity", {"block_size": 5}), ("mma", {}), ("koleo", {"block_size": 4}), ("mmcs", {}),
        ("lloyd", {"n_samples": 24}), ("sliced", {"n_slices": 3}),
        ("sliced", {"n_slices": 2, "axis_aligned": True}), ("mhe", {"normalize": True}),
    ]
    if world_size == 2:  # POT's import is slow: one world size suffices
        common += [("ssw", {"n_projections": 5}), ("lloyd", {"n_samples": 16, "normalize": True})]
    else:
        common += [("sliced", {"n_slices": 2, "normalize": True}), ("koleo", {})]
    return common


def _reference(name, params, seed, W0):
    """Single-process value and table gradient of ``name`` on the whole table, with the draws
    a distributed call makes from rank 0's generator seeded ``seed``."""
    reg = dispersion.build(name, generator=torch.Generator().manual_seed(draw_seed(torch.Generator().manual_seed(seed))),
                           **params)
    Wt = W0.clone().requires_grad_()
    value = reg(torch.nn.functional.normalize(Wt, dim=1))
    value.backward()
    return value.detach(), Wt.grad


def _check_regularizers(rank: int, world_size: int, out: dict) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    sizes = REG_SIZES[world_size]
    n, d = sum(sizes), 4
    W0 = torch.randn(n, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rows = torch.arange(sum(sizes[:rank]), sum(sizes[:rank + 1]))
    table = Table(W0)
    model = DDP(table)
    values = []
    for i, (name, params) in enumerate(_methods(world_size)):
        label = f"{name} {params}"
        model.zero_grad(set_to_none=True)
        reg = dispersion.build(name, distributed=True, generator=torch.Generator().manual_seed(100 + i), **params)
        value = reg(model(rows))
        value.backward()  # DDP averages the table's gradient over the ranks
        ref_value, ref_grad = _reference(name, params, 100 + i, W0)
        assert torch.allclose(value.detach(), ref_value, rtol=1e-10, atol=1e-13), (label, value, ref_value)
        assert torch.allclose(table.weight.grad, ref_grad, rtol=1e-8, atol=1e-12), \
            (label, (table.weight.grad - ref_grad).abs().max())
        values.append(value.detach())

    # grad_reduction="sum": each rank's own rows get exactly dR/d(its rows), no DDP
    X = _sphere(n, d, seed=5)
    for i, (name, params) in enumerate([("mhe", {"kernel": "laplace"}), ("sliced", {"n_slices": 4}),
                                        ("lloyd", {"n_samples": 20}), ("mma", {})]):
        Xl = _shard(X, sizes, rank).clone().requires_grad_()
        reg = dispersion.build(name, distributed=True, grad_reduction="sum",
                               generator=torch.Generator().manual_seed(200 + i), **params)
        value = reg(Xl)
        value.backward()
        ref = dispersion.build(name, generator=torch.Generator().manual_seed(
            draw_seed(torch.Generator().manual_seed(200 + i))), **params)
        Xr = X.clone().requires_grad_()
        ref(Xr).backward()
        assert torch.allclose(Xl.grad, _shard(Xr.grad, sizes, rank), rtol=1e-8, atol=1e-12), name
        values.append(value.detach())

    # no generator and a different global seed on every rank: rank 0's draws are used by all
    torch.manual_seed(1000 + rank)
    value = dispersion.build("sliced", n_slices=2, distributed=True)(_shard(X, sizes, rank))
    ref = dispersion.build("sliced", n_slices=2, generator=torch.Generator().manual_seed(
        draw_seed(torch.Generator().manual_seed(1000))))(X)
    assert torch.allclose(value, ref, rtol=1e-10), (value, ref)
    values.append(value)

    # the value is the same on every rank, bit for bit
    mine = torch.stack(values)
    every = [torch.empty_like(mine) for _ in range(world_size)]
    dist.all_gather(every, mine)
    assert all(torch.equal(v, mine) for v in every), "values differ between ranks"
    out["n_values"] = len(values)


def _check_metrics(rank: int, world_size: int, out: dict) -> None:
    sizes = METRIC_SIZES[world_size]
    n, d = sum(sizes), 5
    X64 = _sphere(n, d, seed=9)
    # the closest pair: row 2 (first shard) and the last row (last shard), PLANTED rad apart
    v = torch.nn.functional.normalize(X64[0] - (X64[0] @ X64[2]) * X64[2], dim=0)
    X64[-1] = torch.cos(torch.tensor(PLANTED, dtype=torch.float64)) * X64[2] + torch.sin(
        torch.tensor(PLANTED, dtype=torch.float64)) * v
    X = X64.float()
    Xl = _shard(X, sizes, rank)
    local = metrics.min_angle(Xl).item()
    glob = metrics.min_angle(Xl, distributed=True)
    ref = metrics.min_angle(X)
    assert glob.dtype == torch.float32 and torch.equal(glob, ref), (glob, ref)
    assert abs(glob.item() - PLANTED) < 1e-2 * PLANTED, glob
    assert local > 20 * PLANTED, local  # the shard alone does not see the pair
    out["min_angle"] = (local, glob.item())

    nn = metrics.nearest_neighbor_angles(Xl, distributed=True)
    assert torch.equal(nn, _shard(metrics.nearest_neighbor_angles(X), sizes, rank))
    cv = metrics.circular_variance(Xl, distributed=True)
    assert torch.allclose(cv, metrics.circular_variance(X), atol=1e-6), cv

    # knn with global indices, an exact duplicate across shards and a near-duplicate cluster
    Y = _sphere(n, d, seed=11)
    Y[sizes[0] + 1] = Y[1]  # rank 1's second row duplicates rank 0's second row
    Y[-2] = torch.nn.functional.normalize(Y[3] + 1e-7 * Y[4], dim=0)
    for dtype, block in ((torch.float32, 3), (torch.float64, None)):
        Yd = Y.to(dtype)
        idx, ang = metrics.knn(_shard(Yd, sizes, rank), 4, block_size=block, distributed=True)
        ref_idx, ref_ang = metrics.knn(Yd, 4)
        assert torch.equal(idx, _shard(ref_idx, sizes, rank)), (idx, _shard(ref_idx, sizes, rank))
        assert torch.equal(ang, _shard(ref_ang, sizes, rank))
    out["knn_ok"] = True


def _check_errors(rank: int, world_size: int, out: dict) -> None:
    X = _sphere(6, 3 + rank, seed=rank)  # d differs between ranks
    for call in (lambda: dispersion.build("mhe", distributed=True)(X),
                 lambda: metrics.min_angle(X, distributed=True)):
        try:
            call()
        except ValueError as e:
            assert "same number of columns" in str(e), e
        else:
            raise AssertionError("a shard of another d did not raise")
    Y = _sphere(6, 3, seed=rank)
    if rank == 1:
        Y[0, 0] = float("nan")
    try:
        dispersion.build("sliced", distributed=True)(Y)
    except ValueError as e:
        assert ("NaN" in str(e)) if rank == 1 else ("invalid on rank(s) [1]" in str(e)), e
    else:
        raise AssertionError("NaN on rank 1 did not raise")
    Z = _sphere(6, 3, seed=rank)
    try:
        metrics.knn(Z, 6 * world_size, distributed=True)  # k > N − 1 for the global N
    except ValueError as e:
        assert "k must be in [1, N - 1]" in str(e), e
    else:
        raise AssertionError("k = N did not raise")
    # a process group of ranks 0 and W − 1 only (every rank creates it; rank 1 of 3 stays out)
    members = [0, world_size - 1]
    group = dist.new_group(members)
    reg = dispersion.build("mhe", process_group=group)  # built on every rank, called on the members
    if rank not in members:
        try:
            reg(_sphere(4, 4, seed=0))
        except ValueError as e:
            assert "not a member" in str(e), e
        else:
            raise AssertionError("a non-member's call did not raise")
    else:
        X = _sphere(14, 4, seed=21)
        Xl = X[:6] if rank == 0 else X[6:]
        assert torch.equal(metrics.min_angle(Xl, process_group=group), metrics.min_angle(X))
        value = reg(Xl)
        assert torch.allclose(value, dispersion.build("mhe")(X), rtol=1e-12)
    out["errors_ok"] = True


def _checks(rank: int, world_size: int) -> dict:
    out: dict = {}
    _check_regularizers(rank, world_size, out)
    _check_metrics(rank, world_size, out)
    _check_errors(rank, world_size, out)
    return out


# ----------------------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [2, 3])
def test_distributed_equals_single_process_on_the_concatenated_rows(runs, world_size):
    status, res = runs[world_size]
    assert status == "ok", res
    assert sorted(res) == list(range(world_size))
    assert all(r["knn_ok"] and r["errors_ok"] for r in res.values())
    # the planted pair across shards: each shard alone sees a much larger minimum angle
    for local, glob in (r["min_angle"] for r in res.values()):
        assert local > 20 * PLANTED and abs(glob - PLANTED) < 1e-2 * PLANTED


def test_without_a_process_group_every_call_says_so():
    assert not dist.is_initialized()
    X = torch.nn.functional.normalize(torch.randn(8, 3, dtype=torch.float64), dim=1)
    calls = [lambda name=name: dispersion.build(name, distributed=True)(X) for name in dispersion.METHODS]
    calls += [lambda: metrics.min_angle(X, distributed=True), lambda: metrics.knn(X, 2, distributed=True),
              lambda: metrics.nearest_neighbor_angles(X, distributed=True),
              lambda: metrics.circular_variance(X, distributed=True)]
    for call in calls:
        with pytest.raises(RuntimeError, match="init_process_group"):
            call()


def test_bad_distributed_arguments():
    with pytest.raises(TypeError, match="distributed must be a bool"):
        dispersion.build("mhe", distributed="yes")
    with pytest.raises(TypeError, match="process_group must be"):
        dispersion.build("sliced", process_group=3)
    with pytest.raises(ValueError, match="grad_reduction must be one of"):
        dispersion.build("lloyd", distributed=True, grad_reduction="avg")
    with pytest.raises(TypeError, match="distributed must be a bool"):
        metrics.min_angle(torch.eye(3), distributed=1)
    # the arguments are runtime settings, not hyperparameters: the specs do not change
    assert dispersion.build("mhe", distributed=True).hparams() == dispersion.build("mhe").hparams()


def test_ddp_example_runs(runs):
    # python docs/examples/ddp_dispersion.py --steps 3: its __main__ is rank 0 and spawns rank 1 (gloo)
    returncode, text = runs["example"]
    assert returncode == 0, text
    lines = [line for line in text.splitlines() if line.startswith("step ")]
    assert len(lines) == 4 and all("min_angle" in line for line in lines), text
    assert "ranks agree on the table: True" in text, text
