import pytest
import torch

import dispersion
from dispersion import sphere
from dispersion.optim import optimize
from dispersion.prototypes import place_prototypes, prototype_loss, prototype_predict
from conftest import random_sphere


@pytest.mark.parametrize("optimizer", ["riemannian_adam", "riemannian_sgd", "adam", "sgd",
                                       "geoopt_riemannian_adam", "geoopt_riemannian_sgd"])
def test_points_stay_on_the_sphere_and_spread(optimizer):
    X0 = sphere.power_spherical(30, 5, 50.0, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = optimize(X0, dispersion.build("mhe"), steps=200, lr=0.05, optimizer=optimizer)
    assert torch.allclose(res.X.norm(dim=1), torch.ones(30, dtype=torch.float64), atol=1e-10)
    assert res.history[-1]["loss"] < dispersion.build("mhe")(X0).item()
    assert res.update_time_s > 0 and res.steps == 200


def test_minibatch_only_moves_sampled_rows_and_is_reproducible():
    X0 = random_sphere(50, 4, seed=1)
    a = optimize(X0, dispersion.build("mma"), steps=1, lr=0.1, optimizer="riemannian_sgd", batch_size=10,
                 generator=torch.Generator().manual_seed(3))
    moved = (a.X - X0).norm(dim=1) > 1e-9
    assert 0 < moved.sum().item() <= 10
    b = optimize(X0, dispersion.build("mma"), steps=1, lr=0.1, optimizer="riemannian_sgd", batch_size=10,
                 generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.X, b.X)


def test_callback_and_logging():
    calls = []
    res = optimize(random_sphere(8, 3), dispersion.build("koleo"), steps=10, lr=0.01, log_every=5,
                   callback=lambda step, X: calls.append(step) or {"n": X.shape[0]})
    assert calls == [0, 5, 10]
    assert [r["step"] for r in res.history] == [0, 5, 10] and res.history[1]["n"] == 8


def test_bad_arguments():
    X = random_sphere(8, 3)
    reg = dispersion.build("mma")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optimize(X, reg, steps=1, lr=0.1, optimizer="adamw")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        optimize(X, reg, steps=0, lr=0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        optimize(X, reg, steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="unit sphere"):
        optimize(2 * X, reg, steps=1, lr=0.1)


def test_non_finite_loss_is_reported_with_its_step():
    with pytest.raises(ValueError, match="non-finite loss.*step 1"):
        optimize(random_sphere(8, 3), lambda X: X.sum() * float("nan"), steps=3, lr=0.1, log_every=1)


def test_prototypes_reach_the_simplex():
    import math

    from dispersion import metrics

    P = place_prototypes(4, 3, "mma", steps=2000, lr=5e-3, seed=0)
    assert math.degrees(metrics.min_angle(P).item()) == pytest.approx(109.4712, abs=0.5)
    U = place_prototypes(4, 3, "uniform", seed=0)
    assert torch.allclose(U.norm(dim=1), torch.ones(4))


def test_prototype_loss_and_prediction_on_hand_made_values():
    P = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -3.0]])
    y = torch.tensor([0, 1, 2])
    # cosines to the target prototypes: 1, 1/sqrt(2), 0
    expected = torch.tensor([0.0, (1 - 2**-0.5) ** 2, 1.0])
    assert torch.allclose(prototype_loss(z, P, y, reduction="none"), expected, atol=1e-6)
    assert prototype_loss(z, P, y).item() == pytest.approx(expected.mean().item(), abs=1e-6)
    # nearest prototypes: 0; tie between 0 and 1 broken to the first; (0, −1) equidistant from 0 and 2
    assert prototype_predict(torch.tensor([[2.0, 0.1], [-1.0, 0.2]]), P).tolist() == [0, 2]
    with pytest.raises(ValueError, match="y must hold class indices"):
        prototype_loss(z, P, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="z must have shape"):
        prototype_loss(torch.ones(3, 3), P, y)


def test_riemannian_adam_stays_on_the_sphere_in_float32():
    # Regression: geoopt's RiemannianAdam update is not exactly tangent (elementwise
    # preconditioning), and SphereExact.expmap then leaves the sphere (> 1e-3 at step 588 of
    # this run with geoopt's default stabilisation). make_optimizer re-projects every step.
    X0 = sphere.uniform(24, 3, generator=torch.Generator().manual_seed(42))
    worst = []
    optimize(X0, dispersion.build("mhe"), steps=700, lr=5e-3, log_every=1,
             callback=lambda step, X: worst.append((X.norm(dim=1) - 1).abs().max().item()) or {})
    assert max(worst) < 1e-5


# --- the fused Riemannian optimisers against geoopt, the reference ---------------------------

def _side_by_side(kind, n, d, lr, steps=200, seed=0, **kw):
    """Run the fused optimiser and geoopt's (stabilize=1) on the same float64 start, each on its
    own iterates, for ``steps`` steps of the Gaussian MHE energy; return both and their states."""
    import geoopt

    from dispersion.optim import RiemannianAdam, RiemannianSGD

    X0 = sphere.uniform(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    reg = dispersion.build("mhe")
    A = torch.nn.Parameter(X0.clone())
    B = geoopt.ManifoldParameter(X0.clone(), manifold=geoopt.SphereExact())
    if kind == "adam":
        oa, ob = RiemannianAdam([A], lr=lr, **kw), geoopt.optim.RiemannianAdam([B], lr=lr, stabilize=1, **kw)
    else:
        oa, ob = RiemannianSGD([A], lr=lr, **kw), geoopt.optim.RiemannianSGD([B], lr=lr, stabilize=1, **kw)
    for _ in range(steps):
        for P, o in ((A, oa), (B, ob)):
            o.zero_grad()
            reg(P).backward()
            o.step()
    return A, B, oa.state[A], ob.state[B]


@pytest.mark.parametrize("n,d,lr", [(24, 3, 0.05), (200, 16, 0.01), (50, 64, 0.1)])
def test_fused_adam_matches_geoopt(n, d, lr):
    A, B, sa, sb = _side_by_side("adam", n, d, lr)
    assert (A.detach() - B.detach()).abs().max().item() < 1e-9
    assert (sa["exp_avg"] - sb["exp_avg"]).abs().max().item() < 1e-9
    # geoopt keeps the per-row second moment broadcast over the row; the fused one keeps (N, 1)
    assert sa["exp_avg_sq"].shape == (n, 1)
    assert (sa["exp_avg_sq"].expand(n, d) - sb["exp_avg_sq"]).abs().max().item() < 1e-9
    assert sa["step"] == sb["step"] == 200


def test_fused_adam_amsgrad_matches_geoopt():
    A, B, sa, sb = _side_by_side("adam", 40, 8, 0.02, amsgrad=True)
    assert (A.detach() - B.detach()).abs().max().item() < 1e-9
    assert (sa["max_exp_avg_sq"].expand(40, 8) - sb["max_exp_avg_sq"]).abs().max().item() < 1e-9


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True},
                                {"momentum": 0.5, "dampening": 0.3}])
@pytest.mark.parametrize("n,d,lr", [(30, 3, 0.05), (100, 32, 0.2)])
def test_fused_sgd_matches_geoopt(kw, n, d, lr):
    A, B, sa, sb = _side_by_side("sgd", n, d, lr, **kw)
    assert (A.detach() - B.detach()).abs().max().item() < 1e-9
    if kw.get("momentum"):
        assert (sa["momentum_buffer"] - sb["momentum_buffer"]).abs().max().item() < 1e-9


def test_fused_adam_takes_geoopt_parameters_and_any_leading_shape():
    import geoopt

    from dispersion.optim import RiemannianAdam

    X0 = sphere.uniform(12, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    P = geoopt.ManifoldParameter(X0.clone(), manifold=geoopt.SphereExact())
    Q = torch.nn.Parameter(X0.clone().reshape(3, 4, 4))  # rows along the last dimension
    opt = RiemannianAdam([P, Q], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        (dispersion.build("mhe")(P) + dispersion.build("mhe")(Q.reshape(12, 4))).backward()
        opt.step()
    assert isinstance(P, geoopt.ManifoldParameter)
    assert torch.allclose(P.detach(), Q.detach().reshape(12, 4), atol=1e-13)
    assert torch.allclose(Q.detach().norm(dim=-1), torch.ones(3, 4, dtype=torch.float64), atol=1e-14)


def test_fused_adam_state_dict_round_trip_resumes_identically():
    import copy

    from dispersion.optim import RiemannianAdam

    X0 = sphere.uniform(30, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reg = dispersion.build("mhe")

    def steps(P, opt, k):
        for _ in range(k):
            opt.zero_grad()
            reg(P).backward()
            opt.step()

    A = torch.nn.Parameter(X0.clone())
    oa = RiemannianAdam([A], lr=0.03, amsgrad=True)
    steps(A, oa, 20)
    saved, saved_X = copy.deepcopy(oa.state_dict()), A.detach().clone()  # (state_dict holds references)
    steps(A, oa, 15)
    B = torch.nn.Parameter(saved_X)
    ob = RiemannianAdam([B], lr=0.03, amsgrad=True)
    ob.load_state_dict(saved)
    steps(B, ob, 15)
    assert torch.equal(A.detach(), B.detach())


def test_fused_optimisers_beside_torch_adam_in_a_training_loop():
    # the sphere rows go to the fused optimiser, the other weights to torch's Adam
    from dispersion.optim import RiemannianAdam

    g = torch.Generator().manual_seed(0)
    E = torch.nn.Parameter(sphere.uniform(10, 6, generator=g))
    head = torch.nn.Linear(6, 10)
    x = torch.randint(0, 10, (64,), generator=g)
    opts = [RiemannianAdam([E], lr=0.05), torch.optim.Adam(head.parameters(), lr=0.05)]
    first = None
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(head(E[x]), x)
        first = first if first is not None else loss.item()
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
    assert loss.item() < 0.1 * first
    assert torch.allclose(E.detach().norm(dim=1), torch.ones(10), atol=1e-6)


def test_fused_optimisers_reject_bad_parameters():
    import geoopt

    from dispersion.optim import RiemannianAdam, RiemannianSGD

    X = sphere.uniform(5, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"rows of params\[0\] must lie on the unit sphere"):
        RiemannianAdam([torch.nn.Parameter(2 * X)])
    with pytest.raises(TypeError, match="only rows on the whole unit sphere"):
        RiemannianAdam([geoopt.ManifoldParameter(X.clone(), manifold=geoopt.Euclidean())])
    with pytest.raises(TypeError, match="float32 or float64"):
        RiemannianAdam([torch.nn.Parameter(X.half())])
    with pytest.raises(ValueError, match="at least 2 entries"):
        RiemannianAdam([torch.nn.Parameter(torch.ones(4, 1))])
    with pytest.raises(ValueError, match="betas"):
        RiemannianAdam([torch.nn.Parameter(X.clone())], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr must be > 0"):
        RiemannianSGD([torch.nn.Parameter(X.clone())], lr=0.0)
    with pytest.raises(ValueError, match="nesterov"):
        RiemannianSGD([torch.nn.Parameter(X.clone())], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        RiemannianAdam([])


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"log_every": 0}, ValueError, "log_every must be >= 1"),
    ({"log_every": -2}, ValueError, "log_every must be >= 1"),
    ({"log_every": 2.5}, TypeError, "log_every must be an int"),
    ({"max_time_s": -1}, ValueError, "max_time_s must be > 0"),
    ({"generator": 5}, TypeError, "generator must be a torch.Generator"),
    ({"callback": 3}, TypeError, "callback must be callable"),
])
def test_optimize_rejects_bad_arguments_by_name(kwargs, exc, match):
    X = random_sphere(8, 3)
    with pytest.raises(exc, match=match):
        optimize(X, dispersion.build("mma"), steps=2, lr=0.1, **kwargs)


def test_optimize_rejects_a_missing_regularizer_and_takes_numpy_scalars():
    import numpy as np

    X = random_sphere(8, 3)
    with pytest.raises(TypeError, match="regularizer must be a callable"):
        optimize(X, None, steps=2, lr=0.1)
    res = optimize(X, dispersion.build("mma"), steps=np.int64(3), lr=np.float32(0.1), log_every=np.int64(1))
    assert res.steps == 3 and [r["step"] for r in res.history] == [0, 1, 2, 3]


def test_library_import_is_free_of_third_party_jit_warnings():
    """geoopt and POT call ``torch.jit.script`` at import; torch warns about it. The library
    imports them through ``_imports.quiet_import``, so a user running with warnings as errors
    can still import and use the optimisers and SSW."""
    import subprocess
    import sys

    code = ("import torch, dispersion; from dispersion import build; "
            "X = torch.nn.functional.normalize(torch.randn(20, 4), dim=1); "
            "build('ssw', n_projections=2)(X); dispersion.optim.optimize(X, build('mma'), steps=2, lr=0.01)")
    r = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
