"""Function transforms and compilation: ``torch.func.grad`` and ``torch.func.vmap`` of every
regularizer equal plain autograd (and a loop over the batch), and ``torch.compile`` gives the
eager value and gradient; the methods documented as graph-break free compile with
``fullgraph=True``.

The random methods (lloyd, sliced, ssw) draw from a generator: a fresh generator with the same
seed gives the same draws, so their transformed gradients must equal autograd's exactly.
"""

import pytest
import torch

import dispersion
from test_autocast import CONFIGS, _id, make, points

RANDOM = ("lloyd", "sliced", "ssw")
DETERMINISTIC = [c for c in CONFIGS if c["name"] not in RANDOM]
RANDOM_CONFIGS = [c for c in CONFIGS if c["name"] in RANDOM]

#: What compiles without a graph break at N = 64, d = 8, as stated in the docstring of
#: dispersion.Regularizer: the deterministic methods on their dense path (and mhe blocked), and
#: lloyd and sliced drawing from the global RNG (generator=None; a torch.Generator argument is a
#: graph break).
FULLGRAPH = [{"name": "mhe"}, {"name": "mhe", "kernel": "riesz", "distance": "geodesic"},
             {"name": "mhe", "block_size": 32}, {"name": "mma"}, {"name": "koleo"}, {"name": "mmcs"},
             {"name": "uniformity"}, {"name": "lloyd", "n_samples": 64}, {"name": "sliced", "n_slices": 3},
             {"name": "sliced", "n_slices": 3, "axis_aligned": True}]


def autograd_grad(reg, X):
    Y = X.detach().clone().requires_grad_()
    return torch.autograd.grad(reg(Y), Y)[0]


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_func_grad_equals_autograd(cfg):
    X = points()
    expected = autograd_grad(make(cfg), X)
    got = torch.func.grad(make(cfg))(X)  # same seed: the same circles, samples or projections
    _close(got, expected)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_func_grad_and_value_equals_autograd(cfg):
    X = points(seed=3)
    reg = make(cfg)
    g, v = torch.func.grad_and_value(make(cfg))(X)
    Y = X.clone().requires_grad_()
    v0 = reg(Y)
    (g0,) = torch.autograd.grad(v0, Y)
    assert v.item() == pytest.approx(v0.item(), rel=1e-6)
    _close(g, g0)


def _batch(b=3, n=64, d=8):
    return torch.stack([points(n, d, seed=20 + i) for i in range(b)])


@pytest.mark.parametrize("cfg", DETERMINISTIC, ids=_id)
def test_vmap_of_grad_equals_a_loop(cfg):
    Xb = _batch()
    reg = make(cfg)
    got = torch.func.vmap(torch.func.grad(reg))(Xb)
    expected = torch.stack([autograd_grad(reg, X) for X in Xb])
    _close(got, expected)


@pytest.mark.parametrize("cfg", DETERMINISTIC, ids=_id)
def test_vmap_of_value_equals_a_loop(cfg):
    Xb = _batch()
    reg = make(cfg)
    got = torch.func.vmap(reg)(Xb)
    expected = torch.stack([reg(X) for X in Xb])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("cfg", RANDOM_CONFIGS, ids=_id)
def test_vmap_of_grad_of_a_random_method_with_shared_draws(cfg):
    # randomness="same": one draw of circles (samples, projections) for the whole batch, the
    # draw a fresh generator with the same seed makes for every single set
    Xb = _batch()
    got = torch.func.vmap(torch.func.grad(make(cfg)), randomness="same")(Xb)
    expected = torch.stack([autograd_grad(make(cfg), X) for X in Xb])
    _close(got, expected)


def test_data_checks_still_run_under_grad():
    X = points()
    X[0] *= 1.5
    with pytest.raises(ValueError, match="unit sphere"):
        torch.func.grad(dispersion.build("mhe"))(X)


def test_sliced_fused_gradient_under_jacrev():
    # the fused autograd.Function of sliced through another transform: reverse-mode Jacobian of
    # the (scalar) value equals the gradient
    X = points()
    jac = torch.func.jacrev(make({"name": "sliced", "n_slices": 2}))(X)
    _close(jac, autograd_grad(make({"name": "sliced", "n_slices": 2}), X))


def _compiled_value_and_grad(reg, X, **kw):
    f = torch.compile(reg, **kw)
    Y = X.clone().requires_grad_()
    v = f(Y)
    (g,) = torch.autograd.grad(v, Y)
    return v.detach(), g


def test_compile_fullgraph():
    """The documented graph-break-free methods compile with fullgraph=True and give the eager
    value and gradient (the random ones from the same global seed). One test; the backend is
    ``eager`` (Dynamo's graph capture, which is where a graph break shows, without the slow code
    generation on the CPU; the integration test below compiles with inductor)."""
    X = points()
    for cfg in FULLGRAPH:
        torch._dynamo.reset()  # one method per cache: no recompile limit across methods
        reg = dispersion.build(cfg["name"], **{k: v for k, v in cfg.items() if k != "name"})
        torch.manual_seed(5)
        g0 = autograd_grad(reg, X)
        torch.manual_seed(5)
        v0 = reg(X)
        compiled = torch.compile(reg, fullgraph=True, backend="eager")
        torch.manual_seed(5)
        Y = X.clone().requires_grad_()
        v = compiled(Y)
        (g,) = torch.autograd.grad(v, Y)
        assert v.item() == pytest.approx(v0.item(), rel=1e-6), cfg
        _close(g, g0)


@pytest.mark.integration
def test_compile_every_method():
    """Every method of METHODS (graph breaks allowed; the random ones with a generator) compiles
    through Dynamo and AOTAutograd (``aot_eager``: the traced forward and backward graphs, where
    a custom autograd.Function's ``setup_context`` matters) and gives the eager value and
    gradient, the blocked paths too; the fullgraph ones also compile with the default inductor
    backend and fullgraph=True (code generation on the CPU costs tens of seconds per method, so
    two of them: a kernel energy and the fused sliced Function)."""
    X = points()
    with torch._inductor.config.patch(fallback_random=True):  # inductor draws as eager does
        for cfg in (FULLGRAPH[0], FULLGRAPH[8]):  # a kernel energy and the fused sliced Function
            torch._dynamo.reset()
            reg = dispersion.build(cfg["name"], **{k: v for k, v in cfg.items() if k != "name"})
            torch.manual_seed(5)
            g0 = autograd_grad(reg, X)
            torch.manual_seed(5)
            v, g = _compiled_value_and_grad(reg, X, fullgraph=True)
            torch.manual_seed(5)
            assert v.item() == pytest.approx(reg(X).item(), rel=1e-5), cfg
            _close(g, g0)
    for cfg in [{"name": m} for m in dispersion.METHODS] + [c for c in CONFIGS if "block_size" in c]:
        torch._dynamo.reset()
        v0 = make(cfg)(X)
        g0 = autograd_grad(make(cfg), X)
        v, g = _compiled_value_and_grad(make(cfg), X, backend="aot_eager")
        assert v.item() == pytest.approx(v0.item(), rel=1e-5), cfg
        _close(g, g0)
