"""The blocked full-batch pairwise path (dispersion.regularizers.blocked) against the dense one."""

import math

import pytest
import torch

import dispersion
from dispersion import metrics
from dispersion.regularizers import blocked, pairwise
from dispersion.regularizers.sliced import (
    _safe_atan2,
    sliced_energy_from_angles,
    sliced_energy_from_projections,
)
from conftest import DEVICES, random_sphere, value_and_grad

KERNEL_CASES = [
    ("gaussian", "chordal", 1.0, 1.0),
    ("gaussian", "geodesic", 0.7, 1.0),
    ("laplace", "chordal", 1.3, 1.0),
    ("laplace", "geodesic", 1.0, 1.0),
    ("riesz", "chordal", 1.0, 1.0),
    ("riesz", "chordal", 1.0, 0.0),
    ("riesz", "chordal", 1.0, -1.5),
    ("riesz", "geodesic", 1.0, 2.0),
    ("riesz", "geodesic", 1.0, 0.0),
    ("riesz", "geodesic", 1.0, -1.0),
]
KERNEL_IDS = [f"{k}-{d}-g{g}-s{s}" for k, d, g, s in KERNEL_CASES]
# block sizes: 1 row, ones that do not divide N = 37, exactly N, more than N
BLOCKS = [1, 5, 8, 16, 37, 100]
N_LOSSES = {
    "mma": (pairwise.mma_loss, blocked.blocked_mma_loss),
    "koleo": (pairwise.koleo_loss, blocked.blocked_koleo_loss),
    "mmcs": (pairwise.mmcs_loss, blocked.blocked_mmcs_loss),
}


def points_with_duplicates(n=37, d=5, seed=0):
    """Random points with a duplicate pair in different blocks (rows 3 and 30) and an
    antipodal pair (rows 10 and 20), float64."""
    X = random_sphere(n, d, seed=seed)
    X[30] = X[3]
    X[20] = -X[10]
    return X


@pytest.mark.parametrize("kernel,distance,gamma,s", KERNEL_CASES, ids=KERNEL_IDS)
def test_mhe_blocked_equals_dense(kernel, distance, gamma, s):
    X = points_with_duplicates()
    v0, g0 = value_and_grad(lambda Y: pairwise.mhe_energy(Y, kernel, distance, gamma, s), X)
    for b in BLOCKS:
        v, g = value_and_grad(lambda Y: blocked.blocked_mhe_energy(Y, kernel, distance, gamma, s, block_size=b), X)
        assert v.item() == pytest.approx(v0.item(), rel=1e-12, abs=1e-12), b
        torch.testing.assert_close(g, g0, rtol=1e-10, atol=1e-12 * g0.abs().max().item(), msg=f"block {b}")


@pytest.mark.parametrize("name", list(N_LOSSES))
def test_nearest_neighbour_losses_blocked_equal_dense(name):
    dense, blk = N_LOSSES[name]
    X = random_sphere(37, 5, seed=1)
    v0, g0 = value_and_grad(dense, X)
    for b in BLOCKS:
        v, g = value_and_grad(lambda Y: blk(Y, block_size=b), X)
        assert v.item() == pytest.approx(v0.item(), rel=1e-13), b
        torch.testing.assert_close(g, g0, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(N_LOSSES))
def test_nearest_neighbour_losses_with_duplicates_in_different_blocks(name):
    # Rows 3 and 30 coincide: each is the other's nearest neighbour (found across blocks), and a
    # third point whose nearest neighbour is that point sees an exact tie. The dense amax splits
    # such a point's gradient between the two copies, the blocked path gives it to one: the
    # values, every other row's gradient, and the sum over the two copies agree.
    dense, blk = N_LOSSES[name]
    X = points_with_duplicates()
    v0, g0 = value_and_grad(dense, X)
    others = [i for i in range(37) if i not in (3, 30)]
    for b in BLOCKS:
        v, g = value_and_grad(lambda Y: blk(Y, block_size=b), X)
        assert v.item() == pytest.approx(v0.item(), rel=1e-13), b
        torch.testing.assert_close(g[others], g0[others], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g[3] + g[30], g0[3] + g0[30], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("b", BLOCKS)
def test_nearest_neighbors_matches_dense_argmax(b):
    X = random_sphere(37, 4, seed=2)
    G = X @ X.T
    G.fill_diagonal_(-math.inf)
    v0, i0 = G.max(dim=1)
    v, i = blocked.nearest_neighbors(X, block_size=b)
    torch.testing.assert_close(v, v0, rtol=0, atol=1e-15)
    assert torch.equal(i, i0)
    # duplicates far apart in row order find each other, and only the true diagonal is excluded
    X[33] = X[1]
    v, i = blocked.nearest_neighbors(X, block_size=b)
    assert i[1].item() == 33 and i[33].item() == 1
    assert v[1].item() == pytest.approx(1.0, abs=1e-15)


def test_two_points():
    X = random_sphere(2, 3, seed=3)
    for b in (1, 2):
        v, i = blocked.nearest_neighbors(X, block_size=b)
        assert i.tolist() == [1, 0]
        v0, g0 = value_and_grad(lambda Y: pairwise.mhe_energy(Y, "riesz"), X)
        v1, g1 = value_and_grad(lambda Y: blocked.blocked_mhe_energy(Y, "riesz", block_size=b), X)
        assert v1.item() == pytest.approx(v0.item(), rel=1e-13)
        torch.testing.assert_close(g1, g0)


@pytest.mark.parametrize("kernel,distance,gamma,s", KERNEL_CASES, ids=KERNEL_IDS)
def test_gradcheck_of_the_custom_function(kernel, distance, gamma, s):
    X = random_sphere(9, 4, seed=4).requires_grad_()
    f = lambda Y: blocked.BlockedKernelEnergy.apply(Y, kernel, distance, gamma, s, 4, True)  # noqa: E731
    assert torch.autograd.gradcheck(f, (X,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(N_LOSSES))
def test_gradcheck_of_the_nearest_neighbour_losses(name):
    X = random_sphere(9, 4, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda Y: N_LOSSES[name][1](Y, block_size=4), (X,), eps=1e-6, atol=1e-6)


def test_float32_blocked_equals_dense():
    X = random_sphere(300, 16, seed=6, dtype=torch.float32)
    for kernel, distance in [("gaussian", "chordal"), ("riesz", "geodesic"), ("laplace", "chordal")]:
        v0, g0 = value_and_grad(lambda Y: pairwise.mhe_energy(Y, kernel, distance), X)
        v, g = value_and_grad(lambda Y: blocked.blocked_mhe_energy(Y, kernel, distance, block_size=64), X)
        assert v.dtype == torch.float32 and g.dtype == torch.float32
        assert v.item() == pytest.approx(v0.item(), rel=1e-5)
        torch.testing.assert_close(g, g0, rtol=1e-4, atol=1e-4 * g0.abs().max().item())


def test_value_without_gradient_and_no_double_backward():
    X = random_sphere(40, 5, seed=7)
    ref = pairwise.mhe_energy(X, "laplace", "geodesic")
    assert blocked.blocked_mhe_energy(X, "laplace", "geodesic", block_size=7).item() == pytest.approx(ref.item(), rel=1e-13)
    Y = X.clone().requires_grad_()
    with torch.no_grad():
        v = blocked.blocked_mhe_energy(Y, "laplace", "geodesic", block_size=7)
    assert not v.requires_grad and v.item() == pytest.approx(ref.item(), rel=1e-13)
    (g,) = torch.autograd.grad(blocked.blocked_mhe_energy(Y, block_size=7), Y, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_module_dispatch_between_dense_and_blocked():
    small = random_sphere(pairwise.DENSE_MAX_N, 4, seed=8).requires_grad_()
    large = random_sphere(pairwise.DENSE_MAX_N + 1, 4, seed=8).requires_grad_()
    assert "BlockedKernelEnergy" not in type(dispersion.build("mhe")(small).grad_fn).__name__
    assert "BlockedKernelEnergy" in type(dispersion.build("mhe")(large).grad_fn).__name__
    assert "BlockedKernelEnergy" in type(dispersion.build("mhe", block_size=8)(small).grad_fn).__name__
    assert "BlockedKernelEnergy" in type(dispersion.build("mhe", block_size="auto")(small).grad_fn).__name__
    assert "BlockedKernelEnergy" not in type(dispersion.build("mhe", block_size="dense")(large).grad_fn).__name__
    for name in ("mhe", "mma", "koleo", "mmcs"):
        for bs in (None, "auto", "dense", 8):
            reg = dispersion.build(name, block_size=bs)
            assert dispersion.build(name, **reg.hparams()).hparams() == reg.hparams()
            v0 = dispersion.build(name, block_size="dense")(large.detach())
            assert reg(large.detach()).item() == pytest.approx(v0.item(), rel=1e-12)
    assert "block_size" not in dispersion.build("mhe").hparams()  # configs without it unchanged


def test_bad_block_size():
    for bad in (0, -3, 2.5, "fast", True):
        with pytest.raises(ValueError, match="block_size"):
            dispersion.build("mhe", block_size=bad)
        with pytest.raises(ValueError, match="block_size"):
            dispersion.build("mma", block_size=bad)
    X = random_sphere(5, 3)
    with pytest.raises(ValueError, match="block_size"):
        blocked.blocked_mhe_energy(X, block_size=0)
    with pytest.raises(ValueError, match="block_size"):
        blocked.nearest_neighbors(X, block_size="dense")
    with pytest.raises(ValueError, match="shape"):
        blocked.blocked_mhe_energy(X[:1])
    with pytest.raises(ValueError, match="kernel"):
        blocked.blocked_mhe_energy(X, kernel="cauchy")


def test_fused_sliced_from_projections_handles_a_point_off_the_circle():
    # a point orthogonal to the circle (x = y = 0) gets θ = 0 and no gradient, as _safe_atan2
    P = torch.randn(2, 3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    P[:, 1, 4] = 0.0
    P.requires_grad_()
    v = sliced_energy_from_projections(P)
    (g,) = torch.autograd.grad(v, P)
    Q = P.detach().clone().requires_grad_()
    v0 = sliced_energy_from_angles(_safe_atan2(Q[1], Q[0]))
    (g0,) = torch.autograd.grad(v0, Q)
    assert v.item() == pytest.approx(v0.item(), rel=1e-13)
    torch.testing.assert_close(g, g0)
    assert torch.isfinite(g).all() and g[:, 1, 4].abs().max().item() == 0.0
    assert torch.autograd.gradcheck(sliced_energy_from_projections, (P.detach()[:, :, 6:14].clone().requires_grad_(),))
    with pytest.raises(ValueError, match="shape"):
        sliced_energy_from_projections(P.detach()[0])


# ---- metrics: the symmetric (i < j) nearest-neighbour search ----


@pytest.mark.parametrize("b", [1, 3, 7, 29, 64])
def test_symmetric_nearest_neighbor_angles(b):
    X = random_sphere(29, 5, seed=13)
    X[26] = X[0]
    G = (X @ X.T).clamp(-1, 1)
    G.fill_diagonal_(-2)
    dense = torch.arccos(G.max(dim=1).values)
    nn = metrics.nearest_neighbor_angles(X, block_size=b)
    torch.testing.assert_close(nn, dense, rtol=0, atol=1e-7)
    assert nn[0].item() == 0.0 and nn[26].item() == 0.0
    two = random_sphere(2, 3, seed=14)
    expect = math.acos(max(-1.0, min(1.0, (two[0] @ two[1]).item())))
    assert metrics.nearest_neighbor_angles(two, block_size=min(b, 2)).tolist() == pytest.approx([expect] * 2, abs=1e-12)


def test_sort_rows_orders_ties_by_index_like_a_stable_sort():
    # the CPU fast path of the sliced sort (numpy's unstable argsort + a re-sort of tie runs)
    # must give exactly torch's stable sort: a tie's gradient depends on that order
    from dispersion.regularizers.sliced import _sort_rows

    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        L, n = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(2, 300, (1,), generator=g))
        theta = torch.randint(0, int(torch.randint(1, 40, (1,), generator=g)), (L, n), generator=g).to(torch.float32)
        v, i = _sort_rows(theta)
        v0, i0 = torch.sort(theta, dim=1, stable=True)
        assert torch.equal(v, v0) and torch.equal(i, i0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device(device, dtype):
    X = random_sphere(50, 6, seed=10, dtype=dtype).to(device).requires_grad_()
    for fn in (lambda Y: blocked.blocked_mhe_energy(Y, "laplace", "geodesic", block_size=16),
               lambda Y: blocked.blocked_mma_loss(Y, block_size=16)):
        v = fn(X)
        v.backward()
        assert v.dtype == dtype and v.device.type == device and X.grad.dtype == dtype
        X.grad = None


# ---- sliced: the fused value-and-gradient path against the reference composition ----


@pytest.mark.parametrize("axis_aligned", [False, True])
def test_fused_sliced_equals_reference(axis_aligned):
    X = random_sphere(101, 7, seed=11)
    X[5] = X[80]
    reg_a = dispersion.build("sliced", n_slices=5, axis_aligned=axis_aligned, generator=torch.Generator().manual_seed(3))
    reg_b = dispersion.build("sliced", n_slices=5, axis_aligned=axis_aligned, generator=torch.Generator().manual_seed(3))
    v0, g0 = value_and_grad(lambda Y: sliced_energy_from_angles(reg_a.angles(Y)), X)
    v, g = value_and_grad(reg_b, X)
    assert v.item() == pytest.approx(v0.item(), rel=1e-13)
    torch.testing.assert_close(g, g0, rtol=1e-10, atol=1e-13)
