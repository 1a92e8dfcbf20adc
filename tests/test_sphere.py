import math

import pytest
import torch

from dispersion import sphere


def test_uniform_unit_rows_and_reproducible():
    a = sphere.uniform(100, 7, generator=torch.Generator().manual_seed(1))
    b = sphere.uniform(100, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(100), atol=1e-6)


def test_uniform_mean_is_near_zero():
    X = sphere.uniform(20000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    # E[x] = 0, each coordinate has variance 1/d: the mean's norm is ~ 1/sqrt(N)
    assert X.mean(0).norm().item() < 5 / math.sqrt(20000)
    # Archimedes: on S², a coordinate is uniform on [−1, 1], so E[x_1²] = 1/3
    assert (X[:, 0] ** 2).mean().item() == pytest.approx(1 / 3, abs=0.01)


@pytest.mark.parametrize("d,kappa", [(3, 10.0), (64, 100.0)])
def test_power_spherical_mean_cosine(d, kappa):
    mu = torch.zeros(d, dtype=torch.float64)
    mu[1] = 1
    X = sphere.power_spherical(20000, d, kappa, mean_direction=mu, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(X.norm(dim=1), torch.ones(20000, dtype=torch.float64), atol=1e-6)
    # E<x, mu> = kappa / (d - 1 + kappa) (mean of 2B - 1, B ~ Beta((d-1)/2 + kappa, (d-1)/2))
    assert (X @ mu).mean().item() == pytest.approx(kappa / (d - 1 + kappa), abs=0.01)


def test_power_spherical_reproducible_and_leaves_global_rng():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = sphere.power_spherical(10, 5, 100.0, generator=torch.Generator().manual_seed(7))
    after = torch.rand(1)
    b = sphere.power_spherical(10, 5, 100.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(before, after)


def test_great_circles_are_orthonormal():
    F = sphere.great_circles(50, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert F.shape == (50, 9, 2)
    gram = F.transpose(1, 2) @ F
    assert torch.allclose(gram, torch.eye(2, dtype=torch.float64).expand(50, 2, 2), atol=1e-12)


def test_known_optimum():
    assert math.degrees(sphere.known_optimum(24, 3)[0]) == pytest.approx(43.6907671)
    assert math.degrees(sphere.known_optimum(4, 3)[0]) == pytest.approx(109.4712206)
    assert math.degrees(sphere.known_optimum(11, 10)[0]) == pytest.approx(math.degrees(math.acos(-0.1)))
    assert math.degrees(sphere.known_optimum(16, 8)[0]) == pytest.approx(90.0)
    assert sphere.known_optimum(25, 3) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="kappa"):
        sphere.power_spherical(3, 3, 0.0)
    with pytest.raises(ValueError, match="d must be"):
        sphere.uniform(3, 1)
    with pytest.raises(TypeError, match="dtype"):
        sphere.uniform(3, 3, dtype=torch.float16)
