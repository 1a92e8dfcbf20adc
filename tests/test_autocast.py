"""Mixed precision: every regularizer and metric under ``torch.autocast`` gives the float32
result, and half-precision inputs are computed in float32 and returned in their own dtype.

The references are known independently of the code under test: the plain float32 result (the
same call outside autocast), autograd of it, and a float64 brute force for the
nearest-neighbour angles of near-duplicate clusters (where a bfloat16 Gram matrix used to put
the angles 3e-4 rad off).
"""

import math

import pytest
import torch

import dispersion
from dispersion import metrics
from dispersion._checks import check_points
from dispersion._sweep import nearest_neighbors_exact
from conftest import random_sphere

AMP_DTYPES = [torch.bfloat16, torch.float16]
HALF_DTYPES = [torch.bfloat16, torch.float16]

#: Every method of dispersion.METHODS, with the kernels and distances of mhe, on the dense and
#: on the blocked path (block_size=32 at N = 64: two row blocks).
CONFIGS = [
    {"name": "mhe", "kernel": "gaussian", "distance": "chordal", "gamma": 1.0},
    {"name": "mhe", "kernel": "gaussian", "distance": "geodesic", "gamma": 2.0},
    {"name": "mhe", "kernel": "laplace", "distance": "chordal"},
    {"name": "mhe", "kernel": "laplace", "distance": "geodesic"},
    {"name": "mhe", "kernel": "riesz", "distance": "chordal", "s": 1.0},
    {"name": "mhe", "kernel": "riesz", "distance": "geodesic", "s": 0.0},
    {"name": "mhe", "kernel": "riesz", "distance": "chordal", "s": -1.0},
    {"name": "mhe", "kernel": "gaussian", "distance": "chordal", "block_size": 32},
    {"name": "mhe", "kernel": "riesz", "distance": "geodesic", "s": 1.0, "block_size": 32},
    {"name": "mma"},
    {"name": "mma", "block_size": 32},
    {"name": "koleo"},
    {"name": "koleo", "block_size": 32},
    {"name": "mmcs"},
    {"name": "mmcs", "block_size": 32},
    {"name": "lloyd", "n_samples": 64},
    {"name": "sliced", "n_slices": 3},
    {"name": "sliced", "n_slices": 3, "axis_aligned": True},
    {"name": "ssw", "n_projections": 5},
    {"name": "uniformity", "t": 2.0},
    {"name": "uniformity", "t": 2.0, "block_size": 32},
]


def _id(cfg):
    return "-".join(str(v) for v in cfg.values())


def make(cfg, seed=11):
    """The regularizer of ``cfg``; the random methods draw from a fresh generator seeded ``seed``,
    so two calls of ``make`` give the same draws (the deterministic methods ignore it)."""
    params = {k: v for k, v in cfg.items() if k != "name"}
    return dispersion.build(cfg["name"], generator=torch.Generator().manual_seed(seed), **params)


def points(n=64, d=8, seed=0):
    return random_sphere(n, d, seed=seed).float()


def half_points(dtype, n=64, d=8, seed=0):
    """``n`` unit rows rounded to ``dtype``, taken among rows whose rounded norm is within 5e-4
    of 1, so that their float32 copy is accepted by a plain float32 call (tolerance 1e-3)."""
    Y = random_sphere(8 * n, d, seed=seed).float().to(dtype)
    ok = (torch.linalg.vector_norm(Y.float(), dim=1) - 1).abs() <= 5e-4
    assert ok.sum() >= n
    return Y[ok][:n]


def clusters(n_centres=5, per=40, d=16, spread=1e-3, seed=3):
    """Near-duplicate clusters: ``per`` points at about ``spread`` rad around each of
    ``n_centres`` random centres, float32 unit rows."""
    g = torch.Generator().manual_seed(seed)
    C = torch.nn.functional.normalize(torch.randn(n_centres, d, generator=g, dtype=torch.float64), dim=1)
    P = C.repeat_interleave(per, 0) + spread / math.sqrt(d) * torch.randn(n_centres * per, d, generator=g,
                                                                          dtype=torch.float64)
    return torch.nn.functional.normalize(P, dim=1).float()


def brute_force_nn_angles(X):
    """float64 nearest-neighbour angles of the directions of the rows of X: 2·asin(chord/2)."""
    Y = torch.nn.functional.normalize(X.double(), dim=1)
    D = torch.cdist(Y, Y)
    D.fill_diagonal_(math.inf)
    return 2 * torch.asin(D.min(dim=1).values.clamp(max=2.0) / 2)


def value_and_grad(reg, X, amp_dtype=None):
    """Value and gradient of ``reg`` at a copy of X, the forward under CPU autocast when
    ``amp_dtype`` is given (backward outside it, as in a training step)."""
    Y = X.detach().clone().requires_grad_()
    if amp_dtype is None:
        v = reg(Y)
    else:
        with torch.autocast("cpu", dtype=amp_dtype):
            v = reg(Y)
    v.backward()
    return v.detach(), Y.grad


# ----------------------------------------------------------------------------------------
# regularizers
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_regularizer_under_autocast_equals_float32(cfg, amp_dtype):
    X = points()
    v32, g32 = value_and_grad(make(cfg), X)
    v, g = value_and_grad(make(cfg), X, amp_dtype)
    assert v.dtype == torch.float32 and g.dtype == torch.float32
    torch.testing.assert_close(v, v32, rtol=1e-6, atol=0)
    torch.testing.assert_close(g, g32, rtol=1e-5, atol=1e-6 * g32.abs().max().item())


@pytest.mark.parametrize("half", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_regularizer_half_input_is_computed_in_float32(cfg, half):
    Xh = half_points(half)
    v32, g32 = value_and_grad(make(cfg), Xh.float())  # the float32 result on the same numbers
    v, g = value_and_grad(make(cfg), Xh)
    assert v.dtype == half and g.dtype == half  # returned in the input dtype, gradient flows back
    assert v.float().item() == v32.to(half).float().item()
    torch.testing.assert_close(g, g32.to(half), rtol=0, atol=0)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES, ids=str)
def test_normalized_regularizer_under_autocast(amp_dtype):
    # normalize=True divides by the float64 gradient scale: still the float32 result
    cfg = {"name": "mma", "normalize": True}
    X = points()
    v32, g32 = value_and_grad(make(cfg), X)
    v, g = value_and_grad(make(cfg), X, amp_dtype)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, v32, rtol=1e-6, atol=0)
    torch.testing.assert_close(g, g32, rtol=1e-5, atol=1e-6 * g32.abs().max().item())


def test_ssw_under_autocast_was_far_off():
    # the probe of the issue: POT's sliced Wasserstein under bfloat16 autocast was 166 % off
    X = points(256, 16, seed=5)
    ref = make({"name": "ssw", "n_projections": 50})(X).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = make({"name": "ssw", "n_projections": 50})(X)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("half", HALF_DTYPES, ids=str)
def test_half_input_tolerance_is_that_of_its_rounding(half):
    # a unit row rounded to half precision has a norm within its unit roundoff of 1, which in
    # bfloat16 exceeds the float32 tolerance 1e-3: accepted. A row far off the sphere is rejected.
    X = points(200, 3, seed=2).to(half)
    err = (torch.linalg.vector_norm(X.double(), dim=1) - 1).abs().max().item()
    assert err <= torch.finfo(half).eps / 2 * 1.01
    assert dispersion.build("mma")(X).dtype == half
    assert metrics.min_angle(X).dtype == half
    bad = X.clone()
    bad[3] *= 1.1
    with pytest.raises(ValueError, match="unit sphere"):
        dispersion.build("mma")(bad)
    with pytest.raises(ValueError, match="unit sphere"):
        metrics.min_angle(bad)
    if half == torch.bfloat16:  # the float32 copy outside a regularizer or metric: float32's tolerance
        assert err > 1e-3
        with pytest.raises(ValueError, match="unit sphere"):
            check_points(X.float())
    with pytest.raises(TypeError, match="float32 or float64"):
        check_points(X)  # the other callers (optimisers, prototypes) do not compute half precision


def test_integer_and_complex_inputs_are_still_rejected():
    with pytest.raises(TypeError, match="X must have dtype"):
        dispersion.build("mhe")(torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="X must have dtype"):
        dispersion.build("mhe")(torch.ones(4, 3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="X must have dtype"):
        metrics.nearest_neighbor_angles(torch.ones(4, 3, dtype=torch.int32))


def test_documented():
    phrase = "half-precision inputs are computed in float32 and the result is returned in the input dtype"
    docs = [dispersion.Regularizer.__doc__] + [getattr(metrics, f).__doc__ for f in METRICS]
    for doc in docs:
        assert phrase in " ".join(doc.split()).lower()


# ----------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------


def _metric_calls(Y):
    return {
        "min_angle": lambda X: metrics.min_angle(X),
        "nearest_neighbor_angles": lambda X: metrics.nearest_neighbor_angles(X),
        "circular_variance": lambda X: metrics.circular_variance(X),
        "mean_angle": lambda X: metrics.mean_angle(X),
        "median_angle": lambda X: metrics.median_angle(X),
        "knn": lambda X: metrics.knn(X, 5),
        "summary": lambda X: metrics.summary(X, pairwise_stats=True),
        "knn_recall": lambda X: metrics.knn_recall(X, Y, k=5, reduction="none"),
    }


METRICS = list(_metric_calls(None))


def _assert_same(got, ref, rtol=1e-6):
    if isinstance(ref, dict):
        assert got.keys() == ref.keys()
        for k in ref:
            assert got[k] == pytest.approx(ref[k], rel=rtol, abs=1e-12), k
    elif isinstance(ref, tuple):
        for a, b in zip(got, ref):
            _assert_same(a, b, rtol)
    else:
        assert got.dtype == ref.dtype
        torch.testing.assert_close(got, ref, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES, ids=str)
@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("data", ["random", "clusters"])
def test_metric_under_autocast_equals_float32(name, amp_dtype, data):
    X = points(150, 8, seed=4) if data == "random" else clusters()
    g = torch.Generator().manual_seed(9)
    Y = torch.nn.functional.normalize(X + 1e-3 * torch.randn(X.shape, generator=g), dim=1)
    fn = _metric_calls(Y)[name]
    ref = fn(X)
    with torch.autocast("cpu", dtype=amp_dtype):
        got = fn(X)
    _assert_same(got, ref)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES, ids=str)
def test_nearest_neighbor_angles_of_clusters_under_autocast_are_exact(amp_dtype):
    # the probe of the issue: 3.4e-4 rad off under bfloat16 autocast, 2.3e-10 outside it
    X = clusters()
    expected = brute_force_nn_angles(X)
    with torch.autocast("cpu", dtype=amp_dtype):
        nn = metrics.nearest_neighbor_angles(X)
        ang, arg = nearest_neighbors_exact(X, 64)  # the shared search itself
        m = metrics.min_angle(X)
    assert nn.dtype == torch.float32
    assert (nn.double() - expected).abs().max().item() < 1e-8
    assert (ang - expected).abs().max().item() < 1e-12
    assert m.item() == pytest.approx(expected.min().item(), rel=1e-6)
    # and the index is a true nearest neighbour
    Yd = torch.nn.functional.normalize(X.double(), dim=1)
    got = 2 * torch.asin((Yd - Yd[arg]).norm(dim=1) / 2)
    assert (got - expected).abs().max().item() < 1e-12


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES, ids=str)
def test_blocked_mma_of_clusters_under_autocast(amp_dtype):
    # the blocked nearest-neighbour loss uses the same exact search: each row's partner is its
    # float64 brute-force nearest neighbour (a bfloat16 Gram block would pick a farther one)
    X = clusters()
    Y = torch.nn.functional.normalize(X.double(), dim=1)
    D = torch.cdist(Y, Y)
    D.fill_diagonal_(math.inf)
    partner = D.argmin(dim=1)
    expected = -torch.arccos((X * X[partner]).sum(dim=1).clamp(-1 + 1e-6, 1 - 1e-6)).mean()
    with torch.autocast("cpu", dtype=amp_dtype):
        v = dispersion.build("mma", block_size=64)(X)
    assert v.dtype == torch.float32
    assert v.item() == pytest.approx(expected.item(), rel=1e-6)
    assert v.item() == dispersion.build("mma", block_size=64)(X).item()


@pytest.mark.parametrize("half", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("name", METRICS)
def test_metric_half_input_is_computed_in_float32(name, half):
    Xh = half_points(half, n=100, d=8, seed=6)
    Yh = half_points(half, n=100, d=8, seed=7)
    fn = _metric_calls(Yh)[name]
    ref = _metric_calls(Yh.float())[name](Xh.float())  # the float32 result on the same numbers

    def back(r):  # the input's dtype for the results documented "X's dtype"
        if isinstance(r, tuple):
            return tuple(back(t) for t in r)
        return r.to(half) if isinstance(r, torch.Tensor) and r.dtype == torch.float32 else r

    got = fn(Xh)
    _assert_same(got, back(ref), rtol=0)


@pytest.mark.parametrize("half", HALF_DTYPES, ids=str)
def test_half_nearest_neighbor_angles_against_brute_force(half):
    Xh = clusters().to(half)
    nn = metrics.nearest_neighbor_angles(Xh)
    assert nn.dtype == half
    expected = brute_force_nn_angles(Xh.float()).float().to(half)
    torch.testing.assert_close(nn, expected, rtol=torch.finfo(half).eps, atol=0)
