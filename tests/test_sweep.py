"""The shared block sweep (dispersion._sweep): one block-size rule for the metrics and the
blocked regularizers, and the same results whatever the block."""

import pytest
import torch

import dispersion
from dispersion import _sweep, metrics
from dispersion.regularizers import blocked, pairwise

from conftest import random_sphere, value_and_grad


def test_one_block_size_rule():
    # the regularizers and the metrics size their blocks with the same function
    assert blocked.auto_block_size is _sweep.auto_block_size
    assert blocked.resolve_block_size is _sweep.resolve_block_size
    X = random_sphere(3000, 16, dtype=torch.float32)
    assert metrics._budget_rows(X) == _sweep.auto_block_size(3000, 16, torch.float32, budget_bytes=4 * 2**24,
                                                               temporaries=1)


def test_auto_block_size_follows_the_budget():
    # b rows cost itemsize * (temporaries * n + d) bytes
    assert _sweep.auto_block_size(1000, 64, torch.float32, budget_bytes=4 * (6 * 1000 + 64) * 100) == 96
    assert _sweep.auto_block_size(1000, 64, torch.float64, budget_bytes=8 * (6 * 1000 + 64) * 10) == 10
    assert _sweep.auto_block_size(1000, 64, torch.float32, budget_bytes=1) == 1  # at least one row
    assert _sweep.auto_block_size(50, 64, torch.float32, budget_bytes=2**30) == 50  # at most n
    # the CPU default: a fixed budget and a cap on the rows
    b = _sweep.auto_block_size(10_000, 64)
    assert 1 <= b <= _sweep.CPU_MAX_BLOCK_ROWS
    assert _sweep.auto_block_size(10**6, 64) < _sweep.auto_block_size(10**5, 64)
    with pytest.raises(ValueError, match="n must"):
        _sweep.auto_block_size(0, 3)
    with pytest.raises(ValueError, match="budget_bytes"):
        _sweep.auto_block_size(10, 3, budget_bytes=0)
    with pytest.raises(TypeError, match="dtype"):
        _sweep.auto_block_size(10, 3, dtype=torch.int64)


def test_auto_block_size_on_a_simulated_small_cuda_memory(monkeypatch):
    # 10 MB free on a (simulated) GPU: half of it for blocks of 6 temporaries of n float32s
    free = 10 * 10**6
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    n, d = 20_000, 128
    expected = int(_sweep.CUDA_FREE_FRACTION * free) // (4 * (6 * n + d))
    assert _sweep.auto_block_size(n, d, torch.float32, "cuda") == expected == 10
    # plenty of memory: capped by CUDA_BLOCK_BUDGET_BYTES, not by the free memory
    free = 10**12
    b = _sweep.auto_block_size(n, d, torch.float32, "cuda")
    assert b * 4 * (6 * n + d) <= _sweep.CUDA_BLOCK_BUDGET_BYTES


def test_auto_block_size_on_a_simulated_small_cpu_budget(monkeypatch):
    # A budget of 7 rows: the module's "auto" path runs in several blocks and still matches
    n, d = 60, 4
    monkeypatch.setattr(_sweep, "CPU_BLOCK_BUDGET_BYTES", 8 * (6 * n + d) * 7)
    X = random_sphere(n, d, seed=9)
    assert _sweep.resolve_block_size("auto", X) == 7
    X[55] = X[2]  # a duplicate pair, in different blocks of 7
    v0, g0 = value_and_grad(lambda Y: pairwise.mhe_energy(Y, "riesz", "chordal"), X)
    v, g = value_and_grad(dispersion.build("mhe", kernel="riesz", block_size="auto"), X)
    assert v.item() == pytest.approx(v0.item(), rel=1e-12)
    torch.testing.assert_close(g, g0, rtol=1e-10, atol=1e-12 * g0.abs().max().item())
    _, i = blocked.nearest_neighbors(X, "auto")
    assert i[2].item() == 55 and i[55].item() == 2
