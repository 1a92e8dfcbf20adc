"""Issue 12 part 3: every argument is checked where it enters, in the library's words.

Library functions raise ``TypeError``/``ValueError`` naming the argument (not torch's error at
the first call); numpy integer and float scalars are accepted wherever a Python int or float
is, and give the same result; floats are never rounded into ints.
"""

import numpy as np
import pytest
import torch

import dispersion
from dispersion import sphere
from dispersion.runio import resolve_device, seed_everything


@pytest.mark.parametrize("sampler", [
    lambda g: sphere.uniform(3, 2, generator=g),
    lambda g: sphere.power_spherical(3, 2, 10.0, generator=g),
    lambda g: sphere.great_circles(3, 2, generator=g),
])
def test_samplers_reject_a_seed_passed_as_generator(sampler):
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int"):
        sampler(5)


@pytest.mark.parametrize("method", ["lloyd", "sliced", "ssw"])
def test_build_rejects_a_seed_passed_as_generator(method):
    # before: accepted by build, then torch's "randn() received an invalid combination" at the first call
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        dispersion.build(method, generator=5)


@pytest.mark.parametrize("mu", [[float("nan"), 1.0], [float("inf"), 0.0]])
def test_power_spherical_rejects_a_non_finite_mean_direction(mu):
    with pytest.raises(ValueError, match="mean_direction contains NaN or inf"):
        sphere.power_spherical(3, 2, 10.0, mean_direction=torch.tensor(mu))


def test_power_spherical_mean_direction_norm_message_names_the_norm():
    with pytest.raises(ValueError, match=r"mean_direction must have unit norm.*got norm 2"):
        sphere.power_spherical(3, 2, 10.0, mean_direction=torch.tensor([2.0, 0.0]))


def test_numpy_scalars_are_accepted_and_give_the_same_result():
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(sphere.uniform(np.int64(5), np.int32(3), generator=g()), sphere.uniform(5, 3, generator=g()))
    assert torch.equal(sphere.power_spherical(np.int64(4), 3, np.float32(10.0), generator=g()),
                       sphere.power_spherical(4, 3, 10.0, generator=g()))
    X = sphere.uniform(40, 5, generator=g())
    pairs = [
        (dict(name="sliced", n_slices=np.int64(3)), dict(name="sliced", n_slices=3)),
        (dict(name="lloyd", n_samples=np.int16(7)), dict(name="lloyd", n_samples=7)),
        (dict(name="ssw", n_projections=np.int64(4)), dict(name="ssw", n_projections=4)),
        (dict(name="mhe", gamma=np.float32(2.0)), dict(name="mhe", gamma=2.0)),
        (dict(name="mhe", kernel="riesz", s=np.float64(1.5)), dict(name="mhe", kernel="riesz", s=1.5)),
        (dict(name="mhe", block_size=np.int64(8)), dict(name="mhe", block_size=8)),
    ]
    for np_params, py_params in pairs:
        a = dispersion.build(np_params.pop("name"), generator=g(), **np_params)
        b = dispersion.build(py_params.pop("name"), generator=g(), **py_params)
        assert a.hparams() == b.hparams() and all(type(v) is not np.generic for v in a.hparams().values())
        assert torch.equal(a(X), b(X))
    assert torch.equal(torch.rand(3, generator=seed_everything(np.int64(7))), torch.rand(3, generator=seed_everything(7)))


@pytest.mark.parametrize("call,name", [
    (lambda: sphere.uniform(3.0, 2), "n"),
    (lambda: sphere.uniform(3, 2.5), "d"),
    (lambda: dispersion.build("sliced", n_slices=2.0), "n_slices"),
    (lambda: dispersion.build("lloyd", n_samples=True), "n_samples"),
    (lambda: dispersion.build("mhe", gamma="1"), "gamma"),
    (lambda: dispersion.build("mhe", kernel="riesz", s=None), "s"),
    (lambda: seed_everything(1.0), "seed"),
])
def test_wrong_types_are_named_not_coerced(call, name):
    with pytest.raises(TypeError, match=rf"^{name} must be"):
        call()


def test_resolve_device_says_what_it_expects():
    # before: torch's "Expected one of cpu, cuda, ipu, xpu, ... device type at start of device string"
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match=r"device must be .* got 'meta'"):
        resolve_device("meta")
    with pytest.raises(TypeError, match="device must be a str or torch.device, got int"):
        resolve_device(5)
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            resolve_device("cuda:0")
