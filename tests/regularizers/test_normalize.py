"""``normalize=True``: every regularizer divided by its gradient scale at uniform points (issue 15).

c(R, N, d) = E[(1/N) Σ_i ‖(I − x_i x_iᵀ)∇_{x_i} R‖] at i.i.d. uniform points
(:mod:`dispersion.regularizers.scale`). Sizes are small (N = 96, d = 12) so that the whole file
runs in seconds on one CPU thread.
"""

import math

import numpy as np
import pytest
import torch

import dispersion
from dispersion.regularizers import REGISTRY, gradient_scale
from dispersion.regularizers.scale import TARGET_REL_SE, riemannian_grad_norms

N, D = 96, 12
#: One configuration per method, cheap at N = 96 (the stochastic ones with their paper defaults).
CONFIGS = {
    "mhe": {"kernel": "gaussian", "distance": "chordal", "gamma": 1.0},
    "mma": {},
    "koleo": {},
    "mmcs": {},
    "lloyd": {"n_samples": 64},
    "sliced": {"n_slices": 1},
    "ssw": {"n_projections": 20},
    "uniformity": {"t": 2.0},
}
#: More configurations for the exact checks (default off, constant factor).
MORE = [
    ("mhe", {"kernel": "riesz", "distance": "geodesic", "s": 1.0}),
    ("mhe", {"kernel": "laplace", "distance": "chordal", "gamma": 2.0}),
    ("mhe", {"block_size": 16}),
    ("sliced", {"n_slices": 3, "axis_aligned": True}),
]
ALL = list(CONFIGS.items()) + MORE


def test_every_method_has_a_config():
    assert set(CONFIGS) == set(dispersion.METHODS)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_normalized_mean_row_gradient_norm_is_one_at_fresh_uniform_points(method):
    """At fresh uniform points (seed 1, not the estimate's seed 0) the normalised loss has mean
    per-row Riemannian gradient norm 1 within 4 standard errors of the difference.

    Both the estimate c (seed 0) and the check (seed 1) are means over independent draws, each
    with a standard error ≤ 2 % of the mean (``TARGET_REL_SE``; the check uses the same number of
    draws as the estimate, at least 8); the difference of two independent means has relative
    standard error √(se_c² + se_m²), so |m − 1| ≤ 4 √(se_c² + se_m²) fails by chance with
    probability < 10⁻⁴ under a normal approximation; the tolerance is at most 4 √2 · 2 % ≈ 11 %
    (the methods whose per-draw spread is small — mma, koleo, mmcs, lloyd — get about 1 %).
    """
    params = CONFIGS[method]
    c, se_c = gradient_scale(method, N, D, return_std_error=True, **params)
    draws = max(8, len(dispersion.regularizers.scale.scale_draws(REGISTRY[method], params, N, D)))
    g = gen(1)
    reg = dispersion.build(method, normalize=True, generator=g, **params)
    means = []
    for _ in range(draws):
        X = dispersion.sphere.uniform(N, D, generator=g, dtype=torch.float64)
        means.append(riemannian_grad_norms(reg, X).mean().item())
    m = float(np.mean(means))
    se_m = float(np.std(means, ddof=1) / math.sqrt(draws)) / m
    tol = 4 * math.hypot(se_c / c, se_m)
    assert tol <= 4 * math.sqrt(2) * TARGET_REL_SE * 1.5  # the test is sharp, not vacuous
    assert abs(m - 1) <= tol, (method, m, tol)


@pytest.mark.parametrize("method,params", ALL)
def test_default_is_bit_identical_and_not_recorded(method, params):
    X = dispersion.sphere.uniform(N, D, generator=gen(3)).requires_grad_(True)
    plain = dispersion.build(method, generator=gen(4), **params)
    off = dispersion.build(method, generator=gen(4), normalize=False, **params)
    assert plain.normalize is False and off.normalize is False
    assert "normalize" not in plain.hparams() and off.hparams() == plain.hparams()
    a, b = plain(X), off(X)
    ga, = torch.autograd.grad(a, X)
    gb, = torch.autograd.grad(b, X)
    assert torch.equal(a, b) and torch.equal(ga, gb)
    # forward is exactly the energy, as before the option existed
    again = dispersion.build(method, generator=gen(4), **params)
    assert torch.equal(again.energy(X.detach()), a.detach())


@pytest.mark.parametrize("method,params", ALL)
def test_normalization_is_exactly_a_constant_factor(method, params):
    """Value and gradient of the normalised loss are those of the raw loss divided by c, in
    float64 with the same random directions (same generator seed)."""
    X = dispersion.sphere.uniform(N, D, generator=gen(5), dtype=torch.float64).requires_grad_(True)
    raw = dispersion.build(method, generator=gen(6), **params)
    nrm = dispersion.build(method, generator=gen(6), normalize=True, **params)
    c = nrm.gradient_scale(N, D)
    assert c == gradient_scale(method, N, D, **params) == gradient_scale(nrm, N, D)
    v_raw, v_nrm = raw(X), nrm(X)
    g_raw, = torch.autograd.grad(v_raw, X)
    g_nrm, = torch.autograd.grad(v_nrm, X)
    torch.testing.assert_close(v_nrm * c, v_raw, rtol=1e-13, atol=0)
    torch.testing.assert_close(g_nrm * c, g_raw, rtol=1e-12, atol=1e-300)
    assert nrm.hparams() == {**raw.hparams(), "normalize": True}
    assert dispersion.build(method, **nrm.hparams()).normalize is True  # round trip


@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("n,d", [(2, 2), (3, 5), (N, D)])
def test_scale_is_positive_and_finite(method, n, d):
    c = gradient_scale(method, n, d, **CONFIGS[method])
    assert isinstance(c, float) and math.isfinite(c) and c > 0


def test_scale_is_cached_deterministic_and_ignores_block_size_and_normalize():
    a = gradient_scale("mhe", 200, 8)
    assert gradient_scale("mhe", 200, 8, block_size=32, normalize=True) == a
    assert gradient_scale({"name": "mhe", "block_size": "dense"}, 200, 8) == a
    assert gradient_scale("mhe", 200, 8, gamma=2.0) != a
    assert gradient_scale("mhe", 200, 8, n_draws=3) == gradient_scale("mhe", 200, 8, n_draws=3)
    assert gradient_scale("mhe", 200, 8, n_draws=3, seed=1) != gradient_scale("mhe", 200, 8, n_draws=3)


def test_float32_input_keeps_its_dtype_and_uses_the_same_constant():
    X64 = dispersion.sphere.uniform(N, D, generator=gen(7), dtype=torch.float64)
    reg = dispersion.build("mma", normalize=True)
    v32, v64 = reg(X64.float()), reg(X64)
    assert v32.dtype == torch.float32 and v64.dtype == torch.float64
    assert math.isclose(v32.item(), v64.item(), rel_tol=1e-5)


def test_the_documented_orders_of_magnitude():
    """The class docstrings' scales: kernel energies ∝ N^(−3/2), nearest-neighbour losses ∝ 1/N,
    sliced ∝ N^(−1/2) (a sum over rows), ≈ 10⁴ between sliced and the Gaussian mhe at 512 × 64."""
    def slope(method, **p):
        return math.log(gradient_scale(method, 512, 16, **p) / gradient_scale(method, 128, 16, **p)) / math.log(4)

    assert abs(slope("mhe") + 1.5) < 0.15 and abs(slope("uniformity") + 1.5) < 0.15
    assert abs(slope("mma") + 1.0) < 0.1 and abs(slope("mmcs") + 1.0) < 0.2
    assert abs(slope("sliced") + 0.5) < 0.15
    ratio = gradient_scale("sliced", 512, 64) / gradient_scale("mhe", 512, 64)
    assert 3e3 < ratio < 3e4


@pytest.mark.parametrize("bad", ["yes", 1, 0, 1.0, None, "True"])
@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_bad_normalize_names_the_argument(method, bad):
    with pytest.raises(TypeError, match=r"normalize must be a bool"):
        dispersion.build(method, normalize=bad)
    with pytest.raises(TypeError, match=r"normalize must be a bool"):
        REGISTRY[method](normalize=bad)


def test_numpy_bool_is_accepted():
    assert dispersion.build("sliced", normalize=np.bool_(True)).hparams()["normalize"] is True


@pytest.mark.parametrize("kwargs,name", [
    ({"n": 1, "d": 4}, "n"), ({"n": 2.0, "d": 4}, "n"), ({"n": 8, "d": 1}, "d"),
    ({"n": 8, "d": 4, "n_draws": 0}, "n_draws"), ({"n": 8, "d": 4, "seed": 1.5}, "seed"),
])
def test_bad_gradient_scale_arguments_name_the_argument(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=rf"^{name} must"):
        gradient_scale("mma", **kwargs)


def test_unknown_method_and_mixed_arguments():
    with pytest.raises(ValueError, match="did you mean 'sliced'"):
        gradient_scale("slicd", 8, 4)
    with pytest.raises(TypeError, match="not both"):
        gradient_scale(dispersion.build("mma"), 8, 4, block_size=4)


def test_method_parameters_list_normalize_off():
    for name in dispersion.METHODS:
        assert dispersion.method_parameters(name)["normalize"] is False


def test_optimize_accepts_a_normalized_regularizer():
    from dispersion.optim import optimize

    X0 = dispersion.sphere.uniform(64, 8, generator=gen(8))
    res = optimize(X0, dispersion.build("mhe", normalize=True), steps=5, lr=1e-2)
    assert torch.isfinite(res.X).all()


def test_first_call_under_no_grad_and_inference_mode():
    """The estimate needs a gradient; it is taken even when the caller disabled autograd."""
    X = dispersion.sphere.uniform(50, 7, generator=gen(9))
    with torch.inference_mode():
        a = dispersion.build("koleo", normalize=True)(X)
    with torch.no_grad():
        b = dispersion.build("mmcs", normalize=True)(X)
    assert math.isfinite(a.item()) and math.isfinite(b.item())
