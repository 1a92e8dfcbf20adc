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
