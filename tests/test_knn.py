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


# ----------------------------------------------------------------------------------------
# the sweep of dispersion._sweep.knn_exact against the float64 brute force, bit for bit
# ----------------------------------------------------------------------------------------

def chordal_brute_force(X, k):
    """Every pair re-measured with the library's chordal formula in float64, sorted by (angle, index)."""
    from dispersion._sweep import _measure

    n = X.shape[0]
    I, J = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    D = _measure(X, I.reshape(-1), J.reshape(-1)).view(n, n)
    D.fill_diagonal_(math.inf)
    order = D.argsort(dim=1, stable=True)[:, :k]  # stable: equal angles keep the smaller index first
    return order, D.gather(1, order)


def near_duplicate_clusters(n, d, seed, dtype=torch.float32, size=40, scale=1e-4):
    """A third of the rows in clusters of ``size`` points within ``scale`` rad of their first
    row (float cosines tie there), an exact duplicate of row 5 at the end, the rest uniform."""
    g = torch.Generator().manual_seed(seed)
    X = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64, generator=g), dim=1)
    for c0 in range(0, n // 3, size):
        for i in range(c0 + 1, min(n, c0 + size)):
            v = torch.randn(d, dtype=torch.float64, generator=g)
            v = torch.nn.functional.normalize(v - (v @ X[c0]) * X[c0], dim=0)
            t = scale * torch.rand((), dtype=torch.float64, generator=g).item()
            X[i] = math.cos(t) * X[c0] + math.sin(t) * v
    X[n - 1] = X[5]
    return torch.nn.functional.normalize(X.to(dtype), dim=1)


@pytest.fixture(params=["sweep", "full rows"])
def knn_path(request, monkeypatch):
    """Both searches of knn_exact: the symmetric sweep (forced at any N) and full rows."""
    from dispersion import _sweep

    monkeypatch.setattr(_sweep, "_KNN_SWEEP_MIN_N", 2 if request.param == "sweep" else 10**9)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["uniform", "near-duplicate clusters"])
def test_knn_equals_the_float64_brute_force_exactly(knn_path, kind, dtype):
    X = (random_sphere(333, 8, seed=5, dtype=dtype) if kind == "uniform"
         else near_duplicate_clusters(333, 8, seed=5, dtype=dtype))
    for k in (2, 5, 17):
        ref_idx, ref_ang = chordal_brute_force(X, k)
        for block_size in (1, 64, 100, 4096):
            idx, ang = metrics.knn(X, k, block_size=block_size)
            assert torch.equal(idx, ref_idx), (k, block_size)
            assert torch.equal(ang, ref_ang.to(dtype)), (k, block_size)


def test_knn_exact_in_large_clusters_and_duplicate_groups(knn_path):
    # clusters larger than the k + 4 cosines the sweep keeps per row (rows searched again over
    # their full row), groups of exact duplicates (ties at angle 0 go to the smaller index)
    X = near_duplicate_clusters(600, 16, seed=1, size=60, scale=1e-5)
    X[400:420] = X[400]
    for k in (1, 10, 30):
        ref_idx, ref_ang = chordal_brute_force(X, k)
        idx, ang = metrics.knn(X, k, block_size=128)
        assert torch.equal(idx, ref_idx) and torch.equal(ang, ref_ang.float())
    idx, ang = metrics.knn(X, 3)
    assert idx[400].tolist() == [401, 402, 403] and idx[419].tolist() == [400, 401, 402]
    assert (ang[400:420] == 0).all()


def test_knn_exact_low_level_search_matches_metrics():
    from dispersion._sweep import knn_exact, nearest_neighbors_exact

    X = near_duplicate_clusters(200, 5, seed=3)
    ang, idx = knn_exact(X, 4, 64)
    assert ang.dtype == torch.float64 and idx.dtype == torch.long and ang.shape == idx.shape == (200, 4)
    a1, i1 = nearest_neighbors_exact(X, 64)
    assert torch.equal(ang[:, 0], a1) and torch.equal(idx[:, 0], i1)


def test_progress_bars_appear_only_when_asked(capsys):
    X = random_sphere(300, 6, seed=2, dtype=torch.float32)
    calls = {
        "knn": lambda p: metrics.knn(X, 4, progress=p),
        "min_angle": lambda p: metrics.min_angle(X, progress=p),
        "nearest neighbours": lambda p: metrics.nearest_neighbor_angles(X, progress=p),
        "mean_angle": lambda p: metrics.mean_angle(X, progress=p),
        "median_angle": lambda p: metrics.median_angle(X, progress=p),
    }
    for name, call in calls.items():
        call(False)
        captured = capsys.readouterr()
        assert captured.err == "" and captured.out == "", name
        call(True)
        err = capsys.readouterr().err
        assert name in err and "pair" in err, (name, err)
    metrics.knn_recall(X, X, 3, progress=True)
    assert "knn" in capsys.readouterr().err
