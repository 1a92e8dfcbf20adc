import math

import pytest
import torch

import dispersion
from dispersion import metrics, sphere
from dispersion.optim import optimize
from dispersion.regularizers import kernel_from_cosine, mhe_energy
from dispersion.regularizers.sliced import sliced_energy_from_angles
from conftest import DEVICES, random_sphere, simplex

ALL_CONFIGS = [
    {"name": "mhe", "kernel": "gaussian", "distance": "chordal", "gamma": 1.0},
    {"name": "mhe", "kernel": "gaussian", "distance": "geodesic", "gamma": 2.0},
    {"name": "mhe", "kernel": "laplace", "distance": "chordal"},
    {"name": "mhe", "kernel": "laplace", "distance": "geodesic"},
    {"name": "mhe", "kernel": "riesz", "distance": "chordal", "s": 1.0},
    {"name": "mhe", "kernel": "riesz", "distance": "geodesic", "s": 0.0},
    {"name": "mhe", "kernel": "riesz", "distance": "chordal", "s": -1.0},
    {"name": "mma"},
    {"name": "koleo"},
    {"name": "mmcs"},
    {"name": "lloyd", "n_samples": 64},
    {"name": "sliced", "n_slices": 3},
    {"name": "sliced", "n_slices": 3, "axis_aligned": True},
    {"name": "ssw", "n_projections": 5},
    {"name": "uniformity", "t": 2.0},
]


def test_every_method_builds_from_a_config_dict():
    names = {c["name"] for c in ALL_CONFIGS}
    assert names == set(dispersion.METHODS)
    for cfg in ALL_CONFIGS:
        reg = dispersion.build(dict(cfg))
        assert isinstance(reg, dispersion.Regularizer) and reg.name == cfg["name"]
        # and rebuilds from its own hparams
        again = dispersion.build(reg.name, **reg.hparams())
        assert again.hparams() == reg.hparams()


# Hand-picked cosines and the kernels of arXiv:2502.08231 evaluated directly.
@pytest.mark.parametrize("c", [-0.9, -0.3, 0.0, 0.5, 0.95])
def test_kernel_values(c):
    ct = torch.tensor(c, dtype=torch.float64)
    dR, dS = math.sqrt(2 - 2 * c), math.acos(c)
    g = 0.7
    cases = {
        ("gaussian", "chordal", 1.0): math.exp(-g * dR**2),
        ("gaussian", "geodesic", 1.0): math.exp(-g * dS**2),
        ("laplace", "chordal", 1.0): math.exp(-g * dR),
        ("laplace", "geodesic", 1.0): math.exp(-g * dS),
        ("riesz", "chordal", 1.0): 1 / dR,
        ("riesz", "geodesic", 2.0): dS**-2,
        ("riesz", "chordal", 0.0): -math.log(dR),
        ("riesz", "geodesic", -1.5): -(dS**1.5),
    }
    for (k, dist, s), expected in cases.items():
        got = kernel_from_cosine(ct, k, dist, gamma=g, s=s).item()
        assert got == pytest.approx(expected, rel=1e-12), (k, dist, s)


def test_mhe_is_the_mean_over_pairs():
    X = random_sphere(9, 4, seed=1)
    G = X @ X.T
    vals = [1 / math.sqrt(2 - 2 * G[i, j].item()) for i in range(9) for j in range(i + 1, 9)]
    assert mhe_energy(X, "riesz", "chordal", s=1.0).item() == pytest.approx(sum(vals) / len(vals), rel=1e-12)


def test_thomson_energy_of_the_octahedron():
    # 6 points of the octahedron: 12 pairs at chord sqrt(2), 3 at chord 2 (the known Thomson
    # energy 1/sqrt(2)*12 + 3/2 = 9.98528), here averaged over the 15 pairs.
    X = torch.cat([torch.eye(3), -torch.eye(3)]).double()
    total = 12 / math.sqrt(2) + 3 / 2
    assert total == pytest.approx(9.985281374, abs=1e-8)
    assert mhe_energy(X, "riesz", "chordal", s=1.0).item() == pytest.approx(total / 15, rel=1e-12)


def test_mma_koleo_mmcs_on_the_simplex():
    n = 5
    X = simplex(n)
    a = math.acos(-1 / (n - 1))
    assert dispersion.build("mma")(X).item() == pytest.approx(-a, abs=1e-9)
    assert dispersion.build("koleo")(X).item() == pytest.approx(-math.log(math.sqrt(2 + 2 / (n - 1))), abs=1e-9)
    assert dispersion.build("mmcs")(X).item() == pytest.approx(1 - 1 / (n - 1), abs=1e-9)


def _circle(angles):
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin()], dim=1)


def test_mmcs_prefers_a_collapse_to_the_regular_decagon_on_the_circle():
    # MMCS averages each point's largest cosine, so a coincident point costs at most 2: on S^1
    # with 10 points the decagon (1 + cos 36 deg = 1.809 each) loses to 8 coincident points plus
    # two at 120 deg ((8 * 2 + 2 * 0.5) / 10 = 1.7) -- closed forms; the optimiser finds the collapse.
    decagon = _circle([2 * math.pi * k / 10 for k in range(10)])
    collapsed = _circle([0.0] * 8 + [2 * math.pi / 3, 4 * math.pi / 3])
    mmcs = dispersion.build("mmcs")
    assert mmcs(decagon).item() == pytest.approx(1 + math.cos(math.pi / 5), abs=1e-12)
    assert mmcs(collapsed).item() == pytest.approx(1.7, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    X = optimize(sphere.uniform(10, 2, generator=g, dtype=torch.float64), mmcs, steps=3000, lr=5e-3).X
    assert mmcs(X).item() < 1.71 and metrics.min_angle(X).item() < 1e-3
    # on S^2 the spread wins: MMCS ends near the Tammes optimum for 10 points (66.15 deg)
    Y = optimize(sphere.uniform(10, 3, generator=g, dtype=torch.float64), mmcs, steps=3000, lr=5e-3).X
    assert math.degrees(metrics.min_angle(Y).item()) > 60


def test_lloyd_energy_of_a_single_cap():
    # All M samples in the hemisphere of x0 and a far point: the energy is the mean squared
    # angle of each sample to its nearest point, computed here directly.
    g = torch.Generator().manual_seed(0)
    X = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    U = sphere.uniform(200, 3, generator=g, dtype=torch.float64)
    expected = torch.minimum(torch.arccos(U[:, 2]), torch.arccos(-U[:, 2])).square().mean()
    assert dispersion.regularizers.lloyd_energy(X, U).item() == pytest.approx(expected.item(), abs=1e-6)


def test_sliced_zero_for_equally_spaced_points_on_the_circle():
    n, d = 12, 5
    g = torch.Generator().manual_seed(0)
    frame = sphere.great_circles(1, d, generator=g, dtype=torch.float64)[0]
    phi = 0.3 + 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    X = torch.cos(phi)[:, None] * frame[:, 0] + torch.sin(phi)[:, None] * frame[:, 1]
    theta = dispersion.regularizers.sliced.circle_angles(X, frame[None])
    assert sliced_energy_from_angles(theta).item() == pytest.approx(0.0, abs=1e-20)
    # bunching the points up gives a positive loss
    theta2 = dispersion.regularizers.sliced.circle_angles(X[:, :] * 1.0, frame[None]) * 0.5
    assert sliced_energy_from_angles(theta2).item() > 0.1


def test_sliced_matches_a_naive_loop():
    X = random_sphere(30, 6, seed=2)
    frames = sphere.great_circles(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theta = dispersion.regularizers.sliced.circle_angles(X, frames)
    naive = 0.0
    n = 30
    for l in range(4):
        th = torch.atan2(X @ frames[l, :, 1], X @ frames[l, :, 0])
        rank = torch.argsort(torch.argsort(th)).double()
        phi = -math.pi + (2 * (rank + 1) - 1) * math.pi / n
        naive += 0.5 * ((th - (th.mean() + phi)) ** 2).sum().item()
    assert sliced_energy_from_angles(theta).item() == pytest.approx(naive / 4, rel=1e-12)


def test_mmd_identity_for_the_gaussian_kernel():
    # arXiv:2502.08231: for a rotation-invariant kernel, the pairwise energy is the squared MMD to
    # the uniform measure up to constants. On S² with k = exp(−γ‖x−y‖²) = exp(−2γ(1−t)):
    # E_u k(x, u) = (1 − e^{−4γ})/(4γ) for every x (Archimedes), so
    # MMD²(P_X, U) = ((N−1)/N) R(X) + k(1)/N − (1 − e^{−4γ})/(4γ).
    gamma, n = 1.0, 30
    const = (1 - math.exp(-4 * gamma)) / (4 * gamma)
    g = torch.Generator().manual_seed(5)
    U = sphere.uniform(200000, 3, generator=g, dtype=torch.float64)
    for X in (random_sphere(n, 3, seed=11), sphere.power_spherical(n, 3, 5.0, generator=g, dtype=torch.float64)):
        R = mhe_energy(X, "gaussian", "chordal", gamma=gamma).item()
        kxx = torch.exp(-gamma * (2 - 2 * (X @ X.T))).mean().item()
        kxu = torch.exp(-gamma * (2 - 2 * (X @ U[:20000].T))).mean().item()
        Ua, Ub = U[:100000], U[100000:]
        kuu = torch.exp(-gamma * (2 - 2 * (Ua * Ub).sum(1))).mean().item()
        mmd2_mc = kxx - 2 * kxu + kuu
        assert kuu == pytest.approx(const, abs=3e-3)
        assert mmd2_mc == pytest.approx((n - 1) / n * R + 1 / n - const, abs=5e-3)


@pytest.mark.parametrize("cfg", ALL_CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_gradcheck(cfg):
    X = random_sphere(7, 4, seed=3).requires_grad_()

    def f(X):
        # a fresh generator per call, so the random draws are identical across evaluations
        return dispersion.build(dict(cfg), generator=torch.Generator().manual_seed(0)).energy(X)

    assert torch.autograd.gradcheck(f, (X,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("cfg", ALL_CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_finite_gradients_for_coincident_and_antipodal_points(cfg):
    X = random_sphere(6, 3, seed=4)
    X[1] = X[0]
    X[2] = -X[0]
    X = X.float().requires_grad_()
    loss = dispersion.build(dict(cfg), generator=torch.Generator().manual_seed(0))(X)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(X.grad).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", ALL_CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_dtype_and_device(cfg, dtype, device):
    X = random_sphere(20, 5, seed=5, dtype=dtype).to(device)
    v = dispersion.build(dict(cfg), generator=torch.Generator(device=device).manual_seed(0))(X)
    assert v.dim() == 0 and v.dtype == dtype and v.device.type == device


def test_half_precision_is_computed_in_float32():
    # half-precision inputs are computed in float32, the value returned in the input dtype
    # (tests/test_autocast.py checks every method); other dtypes are still rejected
    X = random_sphere(5, 3)
    v = dispersion.build("mma")(X.half())
    assert v.dtype == torch.float16
    assert v.item() == pytest.approx(dispersion.build("mma")(X).item(), rel=2e-3)
    with pytest.raises(TypeError, match="float32 or float64"):
        dispersion.build("mma")(X.to(torch.int64))


def test_bad_input_and_names():
    reg = dispersion.build("mhe")
    with pytest.raises(ValueError, match="shape"):
        reg(torch.ones(3, 3, 3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        reg(torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="unit sphere"):
        reg(2 * simplex(4))
    X = simplex(4).clone()
    X[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        reg(X)
    with pytest.raises(ValueError, match="unknown method 'mhee'.*did you mean 'mhe'"):
        dispersion.build("mhee")
    with pytest.raises(TypeError, match="unknown parameter.*'gama'.*did you mean 'gamma'"):
        dispersion.build("mhe", gama=1.0)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        dispersion.build("mhe", gamma=0.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        dispersion.build("mhe", kernel="cauchy")
    with pytest.raises(ValueError, match="n_slices must be >= 1"):
        dispersion.build("sliced", n_slices=0)
    with pytest.raises(TypeError, match="n_samples must be an int"):
        dispersion.build("lloyd", n_samples=2.5)


@pytest.mark.parametrize("n,method,params", [
    (4, "mma", {}), (6, "mma", {}),
    (4, "mhe", {"kernel": "riesz", "s": 1.0}), (6, "mhe", {"kernel": "riesz", "s": 1.0}),
])
def test_short_optimisation_reaches_the_known_optimum(n, method, params):
    g = torch.Generator().manual_seed(42)
    X0 = sphere.uniform(n, 3, generator=g, dtype=torch.float64)
    res = optimize(X0, dispersion.build(method, **params), steps=3000, lr=5e-3)
    best = math.degrees(sphere.known_optimum(n, 3)[0])
    assert math.degrees(metrics.min_angle(res.X).item()) == pytest.approx(best, abs=0.5)
