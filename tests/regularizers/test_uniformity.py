"""The uniformity loss (Wang & Isola, ICML 2020): naive reference, blocked path, gradients."""
import math

import pytest
import torch

import dispersion
from dispersion.regularizers.uniformity import blocked_uniformity_loss, uniformity_loss
from conftest import DEVICES, random_sphere, simplex


def naive(X, t=2.0):
    """Wang & Isola's own one-liner: torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()."""
    return torch.pdist(X, p=2).pow(2).mul(-t).exp().mean().log()


@pytest.mark.parametrize("t", [0.5, 2.0, 10.0])
@pytest.mark.parametrize("block", ["dense", 1, 7, 32, "auto"])
def test_value_matches_the_naive_reference(t, block):
    X = random_sphere(50, 6, seed=1)
    v = dispersion.build("uniformity", t=t, block_size=block)(X)
    assert v.item() == pytest.approx(naive(X, t).item(), abs=1e-12)


def test_closed_forms():
    # two antipodal points: −4t; the regular simplex: −2t(1 + 1/(n − 1))
    X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert uniformity_loss(X, 2.0).item() == pytest.approx(-8.0)
    n = 7
    for b in ("dense", 3):
        v = dispersion.build("uniformity", block_size=b)(simplex(n)).item()
        assert v == pytest.approx(-4.0 * (1 + 1 / (n - 1)), abs=1e-12)


@pytest.mark.parametrize("block", [1, 5, 64])
def test_blocked_gradient_equals_dense(block):
    X = random_sphere(40, 5, seed=2).requires_grad_()
    g_dense, = torch.autograd.grad(uniformity_loss(X), X)
    g_block, = torch.autograd.grad(blocked_uniformity_loss(X, block_size=block), X)
    assert torch.allclose(g_dense, g_block, atol=1e-13)


@pytest.mark.parametrize("block", [1, 4, 64])
def test_gradcheck_of_the_blocked_function(block):
    X = random_sphere(9, 4, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda X: blocked_uniformity_loss(X, 2.0, block), (X,), eps=1e-6, atol=1e-6)


def test_large_t_does_not_underflow_in_float32():
    # t = 50: exp(−t‖x − y‖²) underflows float32 for every pair 0.3 apart; the log-sum-exp does not
    X = random_sphere(60, 3, seed=4)
    ref = naive(X, 50.0)  # float64: still representable
    for b in ("dense", 8):
        v = dispersion.build("uniformity", t=50.0, block_size=b)(X.float())
        assert torch.isfinite(v) and v.item() == pytest.approx(ref.item(), rel=1e-4)


def test_coincident_points_have_finite_gradients():
    X = random_sphere(20, 3, seed=5, dtype=torch.float32)
    X[1] = X[0]
    for b in ("dense", 4):
        Y = X.clone().requires_grad_()
        loss = dispersion.build("uniformity", block_size=b)(Y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(Y.grad).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_dtype_and_device(device, dtype):
    X = random_sphere(30, 4, seed=6, dtype=dtype).to(device).requires_grad_()
    v = blocked_uniformity_loss(X, block_size=8)
    v.backward()
    assert v.dtype == dtype and v.device.type == device and X.grad.dtype == dtype
    assert v.item() == pytest.approx(naive(X.detach().double().cpu()).item(), rel=1e-5)


def test_no_gradient_path_and_no_double_backward():
    X = random_sphere(30, 4, seed=7)
    with torch.no_grad():
        v = blocked_uniformity_loss(X, block_size=8)
    assert v.item() == pytest.approx(naive(X).item(), abs=1e-12)
    Y = X.clone().requires_grad_()
    g, = torch.autograd.grad(blocked_uniformity_loss(Y, block_size=8), Y, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), Y)


def test_dispersing_lowers_the_loss_towards_the_population_value():
    from dispersion.optim import optimize

    g = torch.Generator().manual_seed(0)
    X0 = dispersion.sphere.uniform(64, 3, generator=g, dtype=torch.float64)
    reg = dispersion.build("uniformity")
    res = optimize(X0, reg, steps=300, lr=1e-2)
    assert reg(res.X).item() < reg(X0).item()
    # population value for uniform points on S^2: log E exp(−2t(1 − c)), c ~ U[−1, 1]
    t = 2.0
    population = math.log((1 - math.exp(-4 * t)) / (4 * t))
    assert reg(res.X).item() < population + 0.05


def test_bad_parameters():
    with pytest.raises(ValueError, match="t must be > 0"):
        dispersion.build("uniformity", t=0.0)
    with pytest.raises(ValueError, match="block_size"):
        dispersion.build("uniformity", block_size=0)
    with pytest.raises(ValueError, match="N >= 2"):
        blocked_uniformity_loss(torch.ones(1, 3))
    assert dispersion.build("uniformity").hparams() == {"t": 2.0}
    assert "uniformity" in dispersion.METHODS
