"""Issue 12 part 5: property tests (Hypothesis) on arbitrary point sets with duplicates,
near-duplicates and antipodes, in float32 and float64.

* the blocked and the dense paths of the metrics and regularizers agree;
* every method's value and gradient are finite on any unit-row input;
* every metric is invariant under a rotation and a permutation of the rows.

Bounded for ``make test`` (a few seconds each): small N and d, ``max_examples`` small,
``derandomize=True`` (the same examples on every run) and no example database.
"""

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dispersion
from dispersion import metrics

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = (torch.float32, torch.float64)


@st.composite
def point_sets(draw, max_n=24, max_d=5):
    """(X, dtype): N unit rows in R^d from arbitrary coordinates, with some rows replaced by exact
    duplicates, near-duplicates (10^-3 to 10^-9 apart) and antipodes of others."""
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(2, max_d))
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.booleans()):  # arbitrary coordinates (Hypothesis favours 0, ±1 and repeats: degenerate sets)
        A = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-1, 1, allow_nan=False, allow_subnormal=False)))
        A[np.linalg.norm(A, axis=1) < 1e-3, 0] = 1.0  # rows too short to have a direction
        X = torch.from_numpy(A)
    else:  # generic positions: Gaussian rows from a drawn seed
        X = torch.randn(n, d, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1))),
                        dtype=torch.float64)
    X = torch.nn.functional.normalize(X, dim=1)
    for i in draw(st.lists(st.integers(1, n - 1), max_size=n // 2)):  # row i becomes a copy of row j < i
        j = draw(st.integers(0, i - 1))
        kind = draw(st.sampled_from(["duplicate", "near", "antipode"]))
        if kind == "duplicate":
            X[i] = X[j]
        elif kind == "antipode":
            X[i] = -X[j]
        else:
            scale = 10.0 ** -draw(st.integers(3, 9))
            X[i] = torch.nn.functional.normalize(X[j] + scale * X[(j + 1) % n], dim=0)
    return torch.nn.functional.normalize(X.to(dtype), dim=1), dtype


def _eps(dtype) -> float:
    return torch.finfo(dtype).eps


def _brute_force_nn_angles(X: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour angles in float64 from the chord of the normalised rows, 2·asin(‖x−y‖/2)."""
    Y = torch.nn.functional.normalize(X.double(), dim=1)
    A = 2 * torch.asin(((Y[:, None, :] - Y[None, :, :]).norm(dim=-1) / 2).clamp(max=1))
    A.fill_diagonal_(math.inf)
    return A.min(dim=1).values


@SETTINGS
@given(point_sets())
def test_nearest_neighbour_metrics_blocked_equal_dense_and_brute_force(xs):
    X, dtype = xs
    n = X.shape[0]
    truth = _brute_force_nn_angles(X)
    atol, rtol = 8 * _eps(dtype), 1e-6
    for block in (1, 3, n):  # n: one dense block
        nn = metrics.nearest_neighbor_angles(X, block_size=block).double()
        torch.testing.assert_close(nn, truth, atol=atol, rtol=rtol)
        torch.testing.assert_close(metrics.min_angle(X, block_size=block).double(), truth.min(), atol=atol, rtol=rtol)


@SETTINGS
@given(point_sets(max_n=16))
def test_pairwise_angle_metrics_blocked_equal_dense(xs):
    X, dtype = xs
    n, d = X.shape
    tol = 2 * math.sqrt(2 * d * _eps(dtype))  # an angle from a cosine with rounding error d·eps
    dense_mean = metrics.mean_angle(X, block_size=n)
    dense_median = metrics.median_angle(X, block_size=n)
    for block in (1, 5):
        torch.testing.assert_close(metrics.mean_angle(X, block_size=block), dense_mean, atol=tol, rtol=0)
        torch.testing.assert_close(metrics.median_angle(X, block_size=block), dense_median, atol=tol, rtol=0)


MHE_KERNELS = [
    {"kernel": "gaussian", "distance": "chordal"}, {"kernel": "gaussian", "distance": "geodesic"},
    {"kernel": "laplace", "distance": "chordal"}, {"kernel": "laplace", "distance": "geodesic"},
    {"kernel": "riesz", "distance": "chordal"}, {"kernel": "riesz", "distance": "geodesic"},
    {"kernel": "riesz", "s": 0.0}, {"kernel": "riesz", "s": -1.0},
]


def _value_and_grad(reg, X):
    X = X.clone().requires_grad_(True)
    v = reg(X)
    v.backward()
    return v.detach().double(), X.grad.double()


def _cosine_error(X: torch.Tensor) -> float:
    """A bound on how much two computations of the same cosine <x_i, x_j> in X's dtype can differ
    (summation order of d products of unit-row coordinates, and the rows' own norm error)."""
    return 4 * (X.shape[1] + 2) * _eps(X.dtype)


def _mhe_tolerances(X: torch.Tensor, params: dict) -> tuple[float, torch.Tensor]:
    """Value and per-row gradient tolerances of dense vs blocked MHE, derived from the kernel's
    first and second derivatives in the cosine (autograd on kernel_from_cosine in X's dtype, so
    with its clamps): two Gram products differ by up to δc per cosine, and a cosine within δc of
    a clamp threshold may be clamped on one path and not the other (a jump of the slope)."""
    from dispersion.regularizers.pairwise import cosine_clamp_eps, kernel_from_cosine

    n = X.shape[0]
    dc, eps = _cosine_error(X), _eps(X.dtype)
    iu = torch.triu_indices(n, n, offset=1)
    c = (X @ X.T)[iu[0], iu[1]].detach().requires_grad_(True)
    k = kernel_from_cosine(c, **params)
    (k1,) = torch.autograd.grad(k.sum(), c, create_graph=True)
    (k2,) = torch.autograd.grad(k1.sum(), c, allow_unused=True)
    k2 = torch.zeros_like(c) if k2 is None else k2
    k, k1, k2 = k.detach().double(), k1.detach().double(), k2.detach().double()
    jump = torch.zeros_like(k1)
    ce = cosine_clamp_eps(X.dtype)
    if not (params.get("kernel", "gaussian") == "gaussian" and params.get("distance", "chordal") == "chordal"):
        thresholds = [1 - ce] + ([-1 + ce] if params.get("distance", "chordal") == "geodesic" else [])
        for thr in thresholds:
            near = (c.detach().double() - thr).abs() <= 2 * dc
            if near.any():
                ct = torch.tensor([thr - math.copysign(2 * dc, thr)], dtype=X.dtype, requires_grad=True)
                (slope,) = torch.autograd.grad(kernel_from_cosine(ct, **params).sum(), ct)
                jump = jump + near.double() * slope.abs().double().item()
    P = n * (n - 1) / 2
    value_tol = ((k1.abs() * dc).sum() + 8 * eps * k.abs().sum()).item() / P
    per_pair = k2.abs() * dc + 8 * eps * k1.abs() + jump
    grad_tol = torch.zeros(n, dtype=torch.float64)
    grad_tol.index_add_(0, iu[0], per_pair).index_add_(0, iu[1], per_pair)
    return value_tol, grad_tol[:, None] / P


@SETTINGS
@given(point_sets(max_n=20))
def test_mhe_blocked_equals_dense_within_the_rounding_of_the_cosines(xs):
    X, dtype = xs
    for params in MHE_KERNELS:
        vd, gd = _value_and_grad(dispersion.build("mhe", block_size="dense", **params), X)
        vb, gb = _value_and_grad(dispersion.build("mhe", block_size=3, **params), X)
        value_tol, grad_tol = _mhe_tolerances(X, params)
        assert abs(vd - vb).item() <= 2 * value_tol + 1e-300, (params, vd.item(), vb.item(), value_tol)
        bad = (gd - gb).abs() > 2 * grad_tol + 4 * _eps(dtype) * gd.abs().max()
        assert not bad.any(), (params, (gd - gb).abs().max().item(), grad_tol.max().item())


@SETTINGS
@given(point_sets(max_n=20))
def test_nearest_neighbour_losses_and_uniformity_blocked_equal_dense(xs):
    """Values (the nearest-neighbour losses may split a gradient between exact ties differently;
    their gradients are compared in tests/regularizers/test_blocked.py) and the uniformity gradient."""
    from dispersion.regularizers.pairwise import chordal_from_cosine, geodesic_from_cosine

    X, dtype = xs
    n = X.shape[0]
    dc, eps = _cosine_error(X), _eps(dtype)
    G = X @ X.T
    c = G.masked_fill(torch.eye(n, dtype=torch.bool), -math.inf).amax(dim=1).detach().requires_grad_(True)
    for name, f in (("mma", lambda c: -geodesic_from_cosine(c)), ("koleo", lambda c: -torch.log(chordal_from_cosine(c))),
                    ("mmcs", lambda c: c + 1)):
        (slope,) = torch.autograd.grad(f(c).sum(), c)
        tol = (slope.abs().double() * 2 * dc).mean().item() + 8 * eps * f(c).abs().double().mean().item()
        vd, _ = _value_and_grad(dispersion.build(name, block_size="dense"), X)
        vb, _ = _value_and_grad(dispersion.build(name, block_size=3), X)
        assert abs(vd - vb).item() <= tol, (name, vd.item(), vb.item(), tol)
    if "uniformity" in dispersion.METHODS:
        t = 2.0  # L = log mean exp(2t(c − 1)): ∂L/∂c_ij = 2t·w_ij with weights w summing to 1
        vd, gd = _value_and_grad(dispersion.build("uniformity", block_size="dense"), X)
        vb, gb = _value_and_grad(dispersion.build("uniformity", block_size=3), X)
        assert abs(vd - vb).item() <= 2 * t * dc + 8 * eps * max(1.0, vd.abs().item())
        torch.testing.assert_close(gb, gd, atol=2 * t * (4 * t * dc + 8 * eps), rtol=0)


@SETTINGS
@given(point_sets(max_n=20), st.integers(0, 2**31 - 1))
def test_every_method_is_finite_with_a_finite_gradient(xs, seed):
    X, dtype = xs
    for name in dispersion.METHODS:
        g = torch.Generator().manual_seed(seed)
        v, grad = _value_and_grad(dispersion.build(name, generator=g), X)
        assert torch.isfinite(v), (name, v)
        assert torch.isfinite(grad).all(), name


def _random_rotation(d: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@SETTINGS
@given(point_sets(), st.integers(0, 2**31 - 1))
def test_metrics_are_invariant_under_rotation_and_permutation(xs, seed):
    X, dtype = xs
    n, d = X.shape
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    R = _random_rotation(d, seed)
    Y = torch.nn.functional.normalize((X.double() @ R).to(dtype), dim=1)[perm]
    # rotating in the dtype moves each coordinate by ~eps, hence each angle by a few eps (absolute)
    atol = 16 * math.sqrt(d) * _eps(dtype)
    nn_x = metrics.nearest_neighbor_angles(X).double()
    torch.testing.assert_close(metrics.nearest_neighbor_angles(Y).double(), nn_x[perm], atol=atol, rtol=1e-6)
    torch.testing.assert_close(metrics.min_angle(Y).double(), nn_x.min(), atol=atol, rtol=1e-6)
    torch.testing.assert_close(metrics.circular_variance(Y).double(), metrics.circular_variance(X).double(),
                               atol=atol, rtol=0)
    cos_tol = 2 * math.sqrt(2 * d * _eps(dtype)) + atol  # angles measured through an arccos
    torch.testing.assert_close(metrics.mean_angle(Y), metrics.mean_angle(X), atol=cos_tol, rtol=0)
    torch.testing.assert_close(metrics.median_angle(Y), metrics.median_angle(X), atol=cos_tol, rtol=0)
    # the permutation alone changes nothing but the order of the rows
    torch.testing.assert_close(metrics.nearest_neighbor_angles(X[perm]), metrics.nearest_neighbor_angles(X)[perm],
                               atol=0, rtol=0)
