"""Prototype placement (dispersion.prototypes)."""

import math

import pytest
import torch


def test_prototype_placement_reaches_simplex():
    """C = D + 1 prototypes: the optimum is the regular simplex, min angle arccos(−1/D)."""
    from dispersion import metrics
    from dispersion.prototypes import place_prototypes

    P = place_prototypes(4, 3, "mma", {}, steps=1500, lr=0.01, seed=0, dtype=torch.float64)
    assert math.degrees(metrics.min_angle(P).item()) == pytest.approx(math.degrees(math.acos(-1 / 3)), abs=0.5)
    P = place_prototypes(4, 3, "uniform", {}, seed=0)
    assert torch.allclose(P.norm(dim=1), torch.ones(4), atol=1e-6)


def test_place_and_measure_gives_float32_unit_prototypes_and_their_geometry():
    from dispersion import metrics
    from dispersion.prototypes import place_and_measure, place_prototypes

    for dtype in (torch.float32, torch.float64):
        P, geo = place_and_measure(5, 3, "mma", {}, steps=50, lr=0.01, dtype=dtype, seed=1)
        assert P.dtype == torch.float32 and not P.requires_grad
        assert torch.allclose(P.norm(dim=1), torch.ones(5), atol=1e-6)
        assert geo["min_angle"] == metrics.min_angle(P).item()
        assert geo["min_angle_deg"] == pytest.approx(math.degrees(geo["min_angle"]))
        assert geo["circular_variance"] == metrics.circular_variance(P).item()
        ref = place_prototypes(5, 3, "mma", {}, steps=50, lr=0.01, dtype=dtype, seed=1)
        assert torch.allclose(P, ref.float(), atol=1e-6)


# --------------------------------------------------------------------------- class-to-prototype matching

def _rotation(d, seed):
    from scipy.stats import special_ortho_group

    return torch.as_tensor(special_ortho_group.rvs(d, random_state=seed))


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_match_prototypes_recovers_a_rotated_permuted_copy(dim):
    """Class means that are the prototypes, permuted, rotated and slightly perturbed: the matching
    recovers the permutation, and fits them (alignment ~1) where HPN's order cannot."""
    from dispersion.prototypes import match_prototypes, place_prototypes

    # random prototypes: a dispersed configuration (a regular 10-gon on S^1, say) has symmetries,
    # rotations that map it onto itself with another permutation, which no class layout can tell apart
    P = place_prototypes(10, dim, "uniform", seed=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(dim)
    perm0 = torch.randperm(10, generator=g)
    M = P[perm0] @ _rotation(dim, dim).T + 0.01 * torch.randn(10, dim, generator=g, dtype=torch.float64)
    matched, info = match_prototypes(P, 3.0 * M, seed=0)  # the scale of a class mean does not matter
    assert info["permutation"] == perm0.tolist()
    assert torch.equal(matched, P[perm0])
    assert info["alignment"] > 0.99 and info["alignment_identity"] < 0.9
    # the prototypes themselves are untouched: the same set of rows
    assert torch.equal(matched[torch.argsort(perm0)], P)


def test_match_prototypes_is_at_least_as_good_as_any_order_it_could_have_kept():
    from dispersion.prototypes import match_prototypes

    g = torch.Generator().manual_seed(0)
    P = torch.nn.functional.normalize(torch.randn(6, 3, generator=g), dim=1)
    M = torch.randn(6, 3, generator=g)
    _, info = match_prototypes(P, M, restarts=8)
    assert info["alignment"] >= info["alignment_identity"] - 1e-12
    assert sorted(info["permutation"]) == list(range(6))


def test_match_prototypes_rejects_bad_input():
    from dispersion.prototypes import match_prototypes

    P = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match="class_means"):
        match_prototypes(P, torch.randn(5, 3))
    with pytest.raises(ValueError, match="zero rows"):
        match_prototypes(P, torch.cat([torch.zeros(1, 3), torch.randn(3, 3)]))
    with pytest.raises(ValueError, match="non-finite"):
        match_prototypes(P, torch.full((4, 3), float("nan")))
    with pytest.raises(ValueError, match="restarts"):
        match_prototypes(P, torch.randn(4, 3), restarts=0)
