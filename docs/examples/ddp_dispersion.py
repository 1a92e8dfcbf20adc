"""Disperse an embedding table with DistributedDataParallel and a distributed regularizer.

Every rank embeds its own share of the rows (as it would its own minibatch), the regularizer is
built with ``distributed=True`` so that it measures — and spreads — all ranks' rows together, and
DDP averages the gradients: each step is the single-process step on the whole table
(:mod:`dispersion.distributed`: every rank returns the global value and back-propagates
world_size × its rows' gradient, so DDP's mean is the true gradient).

Run with either of::

    torchrun --nproc_per_node 2 docs/examples/ddp_dispersion.py
    python docs/examples/ddp_dispersion.py          # rank 0 here, rank 1 spawned (gloo, 127.0.0.1)

Options: ``--method`` (any name of ``dispersion.METHODS``), ``--steps``, ``--rows``, ``--dim``,
``--backend`` (``gloo``; ``nccl`` on a GPU machine runs the same code, one GPU per rank).
"""

from __future__ import annotations

import argparse
import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import dispersion
from dispersion import metrics


def train(args: argparse.Namespace) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}") if args.backend == "nccl" else torch.device("cpu")
    torch.manual_seed(0)  # the same initial table on every rank (DDP also broadcasts rank 0's)
    table = torch.nn.Embedding(args.rows, args.dim).to(device)
    model = DDP(table, device_ids=[device.index] if device.type == "cuda" else None)
    reg = dispersion.build(args.method, distributed=True)  # random draws: rank 0's seed, sent each call
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    mine = torch.arange(rank, args.rows, world, device=device)  # this rank's rows: every world-th
    for step in range(args.steps + 1):
        X = torch.nn.functional.normalize(model(mine), dim=1)
        loss = reg(X)  # the global value, the same on every rank
        with torch.no_grad():
            d_min = metrics.min_angle(X.detach(), distributed=True)  # exact, over all ranks' rows
        if rank == 0:
            print(f"step {step}: {args.method} = {loss.item():.6f}, min_angle = {d_min.item():.4f} rad", flush=True)
        if step == args.steps:
            break
        opt.zero_grad()
        loss.backward()  # DDP averages: the single-process gradient on the whole table
        opt.step()
    # DDP keeps the replicas identical: check it
    w = table.weight.detach().clone()
    every = [torch.empty_like(w) for _ in range(world)]
    dist.all_gather(every, w)
    if rank == 0:
        print(f"ranks agree on the table: {all(torch.equal(w, v) for v in every)}", flush=True)


def _worker(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(args.backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        train(args)
    finally:
        dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="sliced", choices=dispersion.METHODS)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    p.add_argument("--nproc", type=int, default=2, help="ranks when not run by torchrun (this process is rank 0)")
    args = p.parse_args()
    if "RANK" in os.environ:  # launched by torchrun: the environment holds the rendezvous
        dist.init_process_group(args.backend, timeout=timedelta(seconds=120))
        try:
            train(args)
        finally:
            dist.destroy_process_group()
        return
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # this process is rank 0; ranks 1.. are spawned (fresh interpreters, gloo over 127.0.0.1)
    ctx = torch.multiprocessing.get_context("spawn")
    others = [ctx.Process(target=_worker, args=(r, args.nproc, port, args)) for r in range(1, args.nproc)]
    for proc in others:
        proc.start()
    try:
        _worker(0, args.nproc, port, args)
    finally:
        for proc in others:
            proc.join()
    failed = [r for r, proc in enumerate(others, 1) if proc.exitcode != 0]
    if failed:
        raise SystemExit(f"rank(s) {failed} failed")


if __name__ == "__main__":
    main()
