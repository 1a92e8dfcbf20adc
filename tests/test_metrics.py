import math

import numpy as np
import pytest
import torch

from dispersion import metrics
from conftest import DEVICES, cross_polytope, random_sphere, simplex


def dense_nn_angles(X):
    G = (X @ X.T).clamp(-1, 1)
    G.fill_diagonal_(-2)
    return torch.arccos(G.max(dim=1).values)


@pytest.mark.parametrize("n", [3, 5, 10, 33])
def test_simplex_min_angle(n):
    X = simplex(n)
    expected = math.acos(-1 / (n - 1))
    assert metrics.min_angle(X).item() == pytest.approx(expected, abs=1e-9)
    assert torch.allclose(metrics.nearest_neighbor_angles(X), torch.full((n,), expected, dtype=X.dtype), atol=1e-9)
    # the simplex is centred: circular variance 1
    assert metrics.circular_variance(X).item() == pytest.approx(1.0, abs=1e-12)
    assert metrics.mean_angle(X).item() == pytest.approx(expected, abs=1e-9)
    assert metrics.median_angle(X).item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("d", [2, 3, 8])
def test_cross_polytope_min_angle(d):
    X = cross_polytope(d)
    assert math.degrees(metrics.min_angle(X).item()) == pytest.approx(90.0, abs=1e-9)
    # pairs: d antipodal (π) and 2d(d−1) orthogonal (π/2)
    m = d * (2 * d - 1)
    assert metrics.mean_angle(X).item() == pytest.approx((d * math.pi + (m - d) * math.pi / 2) / m, abs=1e-9)


@pytest.mark.parametrize("block_size", [1, 7, 16, 100, None])
def test_blocked_equals_dense(block_size):
    X = random_sphere(100, 5, seed=3)
    nn = metrics.nearest_neighbor_angles(X, block_size=block_size)
    assert torch.allclose(nn, dense_nn_angles(X), atol=1e-7)


def test_duplicates_in_different_blocks_give_zero():
    X = random_sphere(40, 6, seed=4)
    X[37] = X[2]  # same point, far apart in row order: different blocks of size 8
    nn = metrics.nearest_neighbor_angles(X, block_size=8)
    assert nn[2].item() == 0.0 and nn[37].item() == 0.0
    assert metrics.min_angle(X, block_size=8).item() == 0.0
    # and no other row is reported at zero: only the true diagonal was excluded
    assert (nn > 0).sum().item() == 38


def test_block_diagonal_is_not_excluded():
    # Row 6 is local row 1 of the block [5, 10); an implementation that masked local index
    # i == j (column 1) instead of the true diagonal (column 6) would hide its duplicate, row 1.
    X = random_sphere(10, 4, seed=5)
    X[6] = X[1]
    nn = metrics.nearest_neighbor_angles(X, block_size=5)
    assert nn[1].item() == 0.0 and nn[6].item() == 0.0


def test_small_angles_are_accurate_in_float32():
    # Two points 1e-4 rad apart: arccos of a float32 cosine cannot resolve this; the chordal
    # recomputation does.
    theta = 1e-4
    X = torch.tensor([[1.0, 0.0, 0.0], [math.cos(theta), math.sin(theta), 0.0], [0.0, 0.0, 1.0]])
    assert metrics.min_angle(X).item() == pytest.approx(theta, rel=1e-3)


def test_mean_and_median_against_numpy():
    X = random_sphere(57, 4, seed=6)
    G = (X @ X.T).clamp(-1, 1).numpy()
    iu = np.triu_indices(57, 1)
    a = np.arccos(G[iu])
    assert metrics.mean_angle(X, block_size=10).item() == pytest.approx(a.mean(), abs=1e-12)
    assert metrics.median_angle(X, block_size=10).item() == pytest.approx(np.median(a), abs=1e-12)
    # odd number of pairs
    Y = random_sphere(6, 3, seed=8)  # 15 pairs
    b = np.arccos(np.clip((Y @ Y.T).numpy()[np.triu_indices(6, 1)], -1, 1))
    assert metrics.median_angle(Y).item() == pytest.approx(np.median(b), abs=1e-12)


def test_circular_variance_of_a_clump_is_zero():
    X = torch.zeros(5, 3, dtype=torch.float64)
    X[:, 0] = 1
    assert metrics.circular_variance(X).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device(device, dtype):
    X = simplex(8, dtype=dtype).to(device)
    v = metrics.min_angle(X)
    assert v.dtype == dtype and v.device.type == device
    assert v.item() == pytest.approx(math.acos(-1 / 7), abs=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        metrics.min_angle(torch.ones(3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        metrics.min_angle(torch.ones(1, 3))
    with pytest.raises(ValueError, match="unit sphere"):
        metrics.min_angle(torch.ones(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        metrics.circular_variance(torch.full((4, 3), float("nan")))
    with pytest.raises(TypeError, match="float32 or float64"):
        metrics.min_angle(torch.ones(4, 3, dtype=torch.int64))
    # half precision is computed in float32 and returned in the input dtype (tests/test_autocast.py)
    assert metrics.min_angle(simplex(4).half()).dtype == torch.float16
    with pytest.raises(ValueError, match="block_size"):
        metrics.min_angle(simplex(4), block_size=0)


# --- exactness in the collapse regime (clusters of near-duplicates) ---------------------------

def _brute_nn(X):
    """Nearest-neighbour angles and indices by brute force: every pair, float64, chordal formula
    on the rows normalised in float64 (the definition the metrics promise to meet exactly)."""
    Y = torch.nn.functional.normalize(X.to(torch.float64), dim=1)
    n = Y.shape[0]
    ang = torch.empty(n, dtype=torch.float64)
    arg = torch.empty(n, dtype=torch.long)
    for s in range(0, n, 256):
        D = 2 * torch.asin(((Y[s:s + 256, None, :] - Y[None, :, :]).norm(dim=-1) / 2).clamp(max=1))
        D[torch.arange(D.shape[0]), torch.arange(s, s + D.shape[0])] = math.inf
        ang[s:s + 256], arg[s:s + 256] = D.min(dim=1)
    return ang, arg


def _with_cluster(n, d, k, radius, seed, dtype=torch.float64):
    """n uniform points (float64) of which rows 1..k are moved within ``radius`` rad of row 0."""
    g = torch.Generator().manual_seed(seed)
    X = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64, generator=g), dim=1)
    for i in range(1, k + 1):
        v = torch.randn(d, dtype=torch.float64, generator=g)
        v = torch.nn.functional.normalize(v - (v @ X[0]) * X[0], dim=0)
        t = radius * (0.05 + 0.95 * torch.rand((), dtype=torch.float64, generator=g).item())
        X[i] = math.cos(t) * X[0] + math.sin(t) * v
    perm = torch.randperm(n, generator=g)  # spread the cluster over the blocks
    X = X[perm]
    return torch.nn.functional.normalize(X.to(dtype), dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 4, 30, 499])  # clusters of 2, 5, 31 and 500 points
@pytest.mark.parametrize("block_size", [32, 96, None])
def test_nearest_neighbour_angles_exact_in_clusters(dtype, k, block_size):
    X = _with_cluster(1200, 16, k, 1e-6 if dtype == torch.float64 else 1e-4, seed=k, dtype=dtype)
    ref, _ = _brute_nn(X)
    got = metrics.nearest_neighbor_angles(X, block_size)
    assert got.dtype == dtype
    assert torch.allclose(got.to(torch.float64), ref, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    assert metrics.min_angle(X, block_size).item() == pytest.approx(ref.min().item(), rel=1e-6)


def test_min_angle_of_the_collapse_reproduction():
    # 4 000 points in d = 16 with 31 of them within 1e-4 rad of one, cast to float32: the
    # search used to keep 4 candidates by float32 cosine and returned up to +29 %.
    X = _with_cluster(4000, 16, 30, 1e-4, seed=8, dtype=torch.float32)
    ref, _ = _brute_nn(X)
    assert metrics.min_angle(X).item() == pytest.approx(ref.min().item(), rel=1e-6)
    got = metrics.nearest_neighbor_angles(X).to(torch.float64)
    assert ((got - ref).abs() / ref).max().item() < 1e-6


def test_min_angle_of_rows_not_exactly_unit():
    # float64 rows with norms within the accepted 1e-3 of 1: the angle is that of their directions
    X = _with_cluster(600, 8, 5, 1e-5, seed=2)
    scale = 1 + 9e-4 * (2 * torch.rand(600, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 1)
    ref, _ = _brute_nn(X)
    got = metrics.nearest_neighbor_angles(X * scale)
    assert torch.allclose(got, ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_nearest_neighbours_of_the_losses_are_exact_in_clusters(dtype):
    from dispersion.regularizers.blocked import nearest_neighbors

    X = _with_cluster(700, 12, 40, 1e-4, seed=5, dtype=dtype)
    ref_ang, ref_arg = _brute_nn(X)
    _, arg = nearest_neighbors(X, block_size=64)
    Y = torch.nn.functional.normalize(X.double(), dim=1)
    got_ang = 2 * torch.asin(((Y - Y[arg]).norm(dim=1) / 2).clamp(max=1))
    assert torch.equal(got_ang, ref_ang)  # the same (nearest) partner or one at the same angle
    assert (arg != torch.arange(700)).all()


def test_exact_duplicates_in_different_blocks_give_zero():
    X = random_sphere(300, 6, seed=4)
    X[250] = X[3]
    nn = metrics.nearest_neighbor_angles(X, block_size=32)
    assert nn[3].item() == 0.0 and nn[250].item() == 0.0
    assert (nn[[i for i in range(300) if i not in (3, 250)]] > 0).all()


def test_all_points_identical_stays_within_memory_and_gives_zero():
    X = torch.nn.functional.normalize(torch.ones(3000, 8), dim=1)
    assert metrics.min_angle(X, block_size=256).item() == 0.0


@pytest.mark.parametrize("bins,exc", [(0, ValueError), (2.5, TypeError), (None, TypeError), (-3, ValueError)])
def test_median_angle_rejects_bad_bins(bins, exc):
    with pytest.raises(exc, match="bins must be an int >= 1"):
        metrics.median_angle(random_sphere(10, 3), bins=bins)


def test_median_angle_takes_numpy_bins():
    X = random_sphere(30, 4, seed=1)
    assert metrics.median_angle(X, bins=np.int64(7)).item() == pytest.approx(metrics.median_angle(X).item(), abs=1e-12)
