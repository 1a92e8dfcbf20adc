"""Issue 12 part 2: no silent NaN, inf or zero from valid-looking kernel parameters.

Where the energy of a kernel is representable in the dtype it is computed (the dense Gaussian
path included); where it is not — every pair's kernel value underflows, or the value or its
slope overflows — a ``ValueError`` names the parameter and the usable range for the points.
"""

import math

import pytest
import torch

import dispersion
from dispersion import sphere
from dispersion.regularizers import kernels
from dispersion.regularizers.pairwise import mhe_energy

LOG_TINY32 = math.log(torch.finfo(torch.float32).tiny)  # -87.336...: exp below it is not a normal float32


def _value_and_grad(reg, X):
    X = X.clone().requires_grad_(True)
    v = reg(X)
    v.backward()
    return v.detach(), X.grad


def _points(n=50, d=8, seed=0, dtype=torch.float32):
    return sphere.uniform(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
@pytest.mark.parametrize("block_size", ["dense", 16])
def test_underflow_of_every_pair_raises_naming_gamma(kernel, block_size):
    # before: energy 0.0 and a gradient of exact zeros, without a word
    X = _points()
    with pytest.raises(ValueError, match=r"gamma=1e\+06.*underflows.*Usable range for these points in torch.float32: gamma <"):
        _value_and_grad(dispersion.build("mhe", kernel=kernel, gamma=1e6, block_size=block_size), X)


def test_usable_gamma_bound_is_the_underflow_threshold_of_the_nearest_pair():
    X = _points()
    X64 = X.double()
    D2 = (X64[:, None, :] - X64[None, :, :]).square().sum(-1)  # squared chordal distances, brute force
    D2.fill_diagonal_(float("inf"))
    expected = -LOG_TINY32 / D2.min().item()  # exp(-gamma d^2) = tiny at the nearest pair
    with pytest.raises(ValueError) as e:
        mhe_energy(X, "gaussian", "chordal", 1e6)
    bound = float(str(e.value).split("gamma < ")[1].split(";")[0])
    assert bound == pytest.approx(expected, rel=1e-3)
    # just inside the range: a positive energy and a non-zero, finite gradient
    v, g = _value_and_grad(dispersion.build("mhe", gamma=0.98 * expected), X)
    assert v.item() > 0 and torch.isfinite(g).all() and g.abs().max() > 0


@pytest.mark.parametrize("block_size", ["dense", 4])
def test_large_gamma_on_a_tight_cluster_has_finite_value_and_gradient(block_size):
    # before: the dense path gave NaN gradients (inf·0 on the Gram diagonal) and both paths an
    # infinite energy (cosines of duplicates rounded above 1 gave exp(+2γ·ε) = inf)
    g = torch.Generator().manual_seed(1)
    x0 = _points(1, 8)
    X = torch.nn.functional.normalize(x0 + 1e-5 * torch.randn(10, 8, generator=g), dim=1)
    X = torch.cat([X, X[:2]])  # and two exact duplicates
    v, grad = _value_and_grad(dispersion.build("mhe", gamma=1e9, block_size=block_size), X)
    assert torch.isfinite(v) and 0 < v.item() <= 1
    assert torch.isfinite(grad).all()


def test_dense_gaussian_path_agrees_with_blocked_at_large_gamma():
    X = torch.nn.functional.normalize(_points(1, 6).double() + 1e-4 * _points(20, 6, seed=3).double(), dim=1)
    vd, gd = _value_and_grad(dispersion.build("mhe", gamma=1e6, block_size="dense"), X)
    vb, gb = _value_and_grad(dispersion.build("mhe", gamma=1e6, block_size=7), X)
    assert torch.isfinite(gd).all()
    torch.testing.assert_close(vd, vb, rtol=1e-9, atol=0)
    torch.testing.assert_close(gd, gb, rtol=1e-7, atol=1e-12 * gd.abs().max().item())


@pytest.mark.parametrize("block_size", ["dense", None])
def test_riesz_overflow_raises_naming_s_and_float64_computes_it(block_size):
    # before: inf energy and non-finite gradient rows in float32
    X = _points(500, 3)
    with pytest.raises(ValueError, match=r"s=20.*torch.float32.*overflows.*Usable range for these points in torch.float32: s <"):
        _value_and_grad(dispersion.build("mhe", kernel="riesz", s=20.0, block_size=block_size), X)
    X64 = torch.nn.functional.normalize(X.double(), dim=1)
    v, g = _value_and_grad(dispersion.build("mhe", kernel="riesz", s=20.0, block_size=block_size), X64)
    D = (X64[:, None, :] - X64[None, :, :]).norm(dim=-1)  # chordal distances from the differences
    iu = torch.triu_indices(500, 500, 1)
    expected = D[iu[0], iu[1]].pow(-20).mean()  # brute force, float64
    torch.testing.assert_close(v, expected, rtol=1e-9, atol=0)
    assert v.item() > torch.finfo(torch.float32).max and torch.isfinite(g).all()


def test_riesz_usable_s_bound_works_and_gradient_overflow_is_told_apart():
    X = _points(500, 3)
    with pytest.raises(ValueError) as e:
        _value_and_grad(dispersion.build("mhe", kernel="riesz", s=20.0), X)
    bound = float(str(e.value).split("s < ")[1].split(";")[0])
    assert 5 < bound < 20
    v, g = _value_and_grad(dispersion.build("mhe", kernel="riesz", s=bound - 0.05), X)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    # a value that fits while its gradient would not: without a gradient it is computed
    s = bound + 0.3
    with torch.no_grad():
        assert torch.isfinite(dispersion.build("mhe", kernel="riesz", s=s)(X))
    with pytest.raises(ValueError, match="gradient overflows"):
        _value_and_grad(dispersion.build("mhe", kernel="riesz", s=s), X)


def test_the_check_costs_nothing_for_parameters_that_cannot_fail(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the pairs were scanned although no input can fail")

    monkeypatch.setattr(kernels, "_extreme_cosines", boom)
    X = _points(300, 16)
    for params in ({"gamma": 1.0}, {"kernel": "laplace", "distance": "geodesic", "gamma": 10.0},
                   {"kernel": "riesz", "s": 1.0}, {"kernel": "riesz", "s": 0.0}, {"kernel": "riesz", "s": -1.0}):
        for bs in ("dense", 64):
            v, g = _value_and_grad(dispersion.build("mhe", block_size=bs, **params), X)
            assert torch.isfinite(v) and torch.isfinite(g).all()


# --- parameters so small that the gradient underflows (issue "Dispersion inside real training
# runs", part 5): gamma = 1e-300 in float32 gave a gradient of exact zeros, without a word


@pytest.mark.parametrize("block_size", ["dense", 16])
@pytest.mark.parametrize("kernel,distance,param,value", [
    ("gaussian", "chordal", "gamma", 1e-300), ("gaussian", "geodesic", "gamma", 1e-300),
    ("laplace", "chordal", "gamma", 1e-300), ("laplace", "geodesic", "gamma", 1e-40),
    ("riesz", "chordal", "s", 1e-300), ("riesz", "geodesic", "s", -1e-300),
])
def test_a_parameter_whose_gradient_underflows_raises_naming_it(kernel, distance, param, value, block_size):
    X = _points()
    reg = dispersion.build("mhe", kernel=kernel, distance=distance, block_size=block_size, **{param: value})
    name = "gamma" if param == "gamma" else r"\|s\|"
    with pytest.raises(ValueError, match=rf"{param}={value:g}.*torch.float32 the gradient underflows.*"
                                         rf"Usable range for these points in torch.float32: {name} > "):
        _value_and_grad(reg, X)
    with torch.no_grad():  # the value itself is fine (the kernel is 1 to rounding): no gradient, no error
        assert torch.isfinite(reg(X))
    v, g = _value_and_grad(reg, X.double())  # float64 has room for it
    assert torch.isfinite(g).all() and g.abs().max() > 0


def test_usable_small_gamma_bound_gives_a_normal_gradient():
    X = _points()
    with pytest.raises(ValueError) as e:
        _value_and_grad(dispersion.build("mhe", gamma=1e-300), X)
    bound = float(str(e.value).split("gamma > ")[1].split(";")[0])
    # the rule: each pair's term of the gradient, |k'(c)| / P = 2 gamma k / P with P = N(N - 1)/2
    # pairs and k ~ 1, must be a normal float32 number
    P = 50 * 49 / 2
    assert bound == pytest.approx(torch.finfo(torch.float32).tiny * P / 2, rel=1e-2)
    v, g = _value_and_grad(dispersion.build("mhe", gamma=1.02 * bound), X)
    assert g.abs().max() > 0 and torch.isfinite(g).all()
