"""metrics.knn and metrics.knn_recall: exact k nearest neighbours in blocks, neighbourhood recall."""
import math

import pytest
import torch

from dispersion import metrics
from conftest import DEVICES, cross_polytope, random_sphere, simplex


def dense_knn(X, k):
    """Reference: the full float64 angle matrix, sorted by (angle, index)."""
    X = X.double()
    A = torch.arccos((X @ X.T).clamp(-1, 1))
    A.fill_diagonal_(math.inf)
    order = A.argsort(dim=1, stable=True)[:, :k]
    return order, A.gather(1, order)


@pytest.mark.parametrize("block_size", [1, 7, 64, None])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_knn_matches_dense_reference(block_size, k):
    X = random_sphere(150, 6, seed=11)
    idx, ang = metrics.knn(X, k, block_size=block_size)
    ref_idx, ref_ang = dense_knn(X, k)
    assert idx.dtype == torch.long and idx.shape == (150, k) and ang.shape == (150, k)
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(ang, ref_ang, atol=1e-7)
    # sorted, and the first neighbour is the nearest-neighbour angle
    assert (ang.diff(dim=1) >= 0).all()
    assert torch.allclose(ang[:, 0], metrics.nearest_neighbor_angles(X), atol=1e-12)


def test_knn_float32_tiny_angles_are_accurate():
    # two points 1e-5 rad apart: arccos of the float32 cosine would give 0 or ~4e-4
    base = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    theta = 1e-5
    X = torch.stack([base, torch.tensor([math.cos(theta), math.sin(theta), 0.0], dtype=torch.float64),
                     torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)]).float()
    idx, ang = metrics.knn(X, 1)
    assert idx[:2, 0].tolist() == [1, 0]
    assert ang[0, 0].item() == pytest.approx(theta, rel=1e-2)


def test_knn_duplicates_in_other_blocks_and_diagonal_only():
    X = random_sphere(40, 5, seed=4)
    X[37] = X[2]
    idx, ang = metrics.knn(X, 2, block_size=8)
    assert idx[2, 0].item() == 37 and idx[37, 0].item() == 2
    assert ang[2, 0].item() == 0.0 and ang[37, 0].item() == 0.0
    assert not (idx == torch.arange(40)[:, None]).any()  # a row never lists itself


def test_knn_closed_forms():
    # simplex: every other vertex at arccos(−1/(n−1)); ties broken by index
    n = 6
    idx, ang = metrics.knn(simplex(n), n - 1)
    assert torch.allclose(ang, torch.full((n, n - 1), math.acos(-1 / (n - 1)), dtype=torch.float64), atol=1e-9)
    assert idx[0].tolist() == [1, 2, 3, 4, 5] and idx[3].tolist() == [0, 1, 2, 4, 5]
    # cross-polytope: 2d − 2 neighbours at 90°, the antipode last at 180°
    d = 4
    idx, ang = metrics.knn(cross_polytope(d), 2 * d - 1)
    assert torch.allclose(ang[:, :-1], torch.full((2 * d, 2 * d - 2), math.pi / 2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(ang[:, -1], torch.full((2 * d,), math.pi, dtype=torch.float64), atol=1e-12)
    assert idx[0, -1].item() == d


@pytest.mark.parametrize("device", DEVICES)
def test_knn_device_and_dtype(device):
    X = random_sphere(50, 4, seed=1, dtype=torch.float32).to(device)
    idx, ang = metrics.knn(X, 3)
    assert idx.device.type == device and ang.dtype == torch.float32


def test_knn_bad_input():
    X = random_sphere(5, 3)
    for k in (0, 5, -1):
        with pytest.raises(ValueError, match=r"k must be in \[1, N - 1\]"):
            metrics.knn(X, k)
    with pytest.raises(TypeError, match="k must be an int"):
        metrics.knn(X, 2.0)
    with pytest.raises(ValueError, match="block_size"):
        metrics.knn(X, 2, block_size=0)
    with pytest.raises(ValueError, match="unit sphere"):
        metrics.knn(X * 2, 2)
    bad = X.clone()
    bad[1, 1] = math.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        metrics.knn(bad, 2)


def test_knn_recall_identity_rotation_and_random():
    X = random_sphere(300, 8, seed=2)
    assert metrics.knn_recall(X, X, 10).item() == 1.0
    Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert metrics.knn_recall(X, X @ Q, 10).item() == pytest.approx(1.0)
    # unrelated sets: each neighbour survives with probability about k / (N − 1)
    Y = random_sphere(300, 8, seed=3)
    r = metrics.knn_recall(X, Y, 10).item()
    assert 0.0 < r < 0.1
    per_row = metrics.knn_recall(X, Y, 10, reduction="none")
    assert per_row.shape == (300,) and per_row.mean().item() == pytest.approx(r)


def test_knn_recall_counts_the_intersection():
    # brute-force set intersection on a small case, different dimensions for X and Y
    X = random_sphere(60, 5, seed=7)
    Y = torch.nn.functional.normalize(X[:, :3] + 0.3 * random_sphere(60, 3, seed=8), dim=1)
    k = 4
    a, _ = dense_knn(X, k)
    b, _ = dense_knn(Y, k)
    expected = sum(len(set(a[i].tolist()) & set(b[i].tolist())) / k for i in range(60)) / 60
    assert metrics.knn_recall(X, Y, k).item() == pytest.approx(expected, abs=1e-12)


def test_knn_recall_bad_input():
    X = random_sphere(10, 3)
    with pytest.raises(ValueError, match="same number of rows"):
        metrics.knn_recall(X, X[:9], 2)
    with pytest.raises(ValueError, match="reduction"):
        metrics.knn_recall(X, X, 2, reduction="sum")
    with pytest.raises(ValueError, match="Y"):
        metrics.knn_recall(X, X * 3, 2)


def test_knn_exact_in_a_cluster_of_near_duplicates():
    # 40 points within 1e-4 rad of one another in float32: float cosines tie, so a fixed number of
    # candidates by cosine picks the wrong neighbours; the bound-based candidate set does not.
    import math

    import torch

    from dispersion import metrics

    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(500, 16, dtype=torch.float64, generator=g), dim=1)
    for i in range(1, 41):
        v = torch.randn(16, dtype=torch.float64, generator=g)
        v = torch.nn.functional.normalize(v - (v @ X[0]) * X[0], dim=0)
        t = 1e-4 * (0.05 + 0.95 * torch.rand((), dtype=torch.float64, generator=g).item())
        X[i] = math.cos(t) * X[0] + math.sin(t) * v
    X = torch.nn.functional.normalize(X.float(), dim=1)
    Y = torch.nn.functional.normalize(X.double(), dim=1)
    D = 2 * torch.asin(((Y[:, None] - Y[None]).norm(dim=-1) / 2).clamp(max=1))
    D.fill_diagonal_(math.inf)
    ref = D.sort(dim=1, stable=True)
    idx, ang = metrics.knn(X, 5, block_size=64)
    assert torch.allclose(ang.double(), ref.values[:, :5], rtol=1e-6, atol=0)
    assert torch.equal(idx[:41], ref.indices[:41, :5])
