import math
from pathlib import Path

import pytest
import torch

_INTEGRATION = ("experiments", "workflow")


def pytest_collection_modifyitems(config, items):
    """Mark the end-to-end tests (``tests/experiments/``: real runs on real data;
    ``tests/workflow/``: the Snakemake workflow) ``integration``; the library tests are the rest
    (``pytest -m "not integration"``)."""
    here = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(here)
        if rel.parts[0] in _INTEGRATION:
            item.add_marker(pytest.mark.integration)


def simplex(n: int, dtype=torch.float64) -> torch.Tensor:
    """The regular simplex of n points in R^n−1... embedded in R^n: centred basis vectors, normalised.
    Pairwise angle arccos(−1/(n−1))."""
    E = torch.eye(n, dtype=dtype)
    X = E - E.mean(dim=0, keepdim=True)
    return torch.nn.functional.normalize(X, dim=1)


def cross_polytope(d: int, dtype=torch.float64) -> torch.Tensor:
    """±e_i, 2d points with minimum angle 90°."""
    E = torch.eye(d, dtype=dtype)
    return torch.cat([E, -E])


def random_sphere(n: int, d: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def value_and_grad(fn, X):
    """(value, gradient) of the scalar ``fn`` at a copy of ``X``."""
    Y = X.clone().requires_grad_()
    v = fn(Y)
    v.backward()
    return v.detach(), Y.grad
