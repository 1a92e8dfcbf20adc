"""The library installs alone: its core (regularizers, metrics, sphere, optim, prototypes,
training, post-hoc dispersion) needs only the core dependencies of pyproject.toml, and never
imports a package of an extra (workflow, text, image, audit, docs, dev), at import time or when it
runs. ``python tests/test_core_install.py`` runs the same example in any environment (e.g. a fresh
venv with only the wheel installed)."""

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Top-level modules of the extras' packages (and of what they pull in). scipy is not here: geoopt
#: and POT import it at import time, and prototypes.match_prototypes uses it: a core dependency.
EXTRA_MODULES = (
    "snakemake", "pandas", "seaborn", "matplotlib", "transformers", "tokenizers", "huggingface_hub",
    "safetensors", "jsonschema", "yaml", "pyarrow", "sklearn", "tabulate", "torchvision", "sphinx", "myst_parser",
    "furo", "pytest", "hypothesis", "nbclient", "nbformat", "ipykernel", "snakefmt", "ruff",
)

#: The core dependencies, as the wheel must list them (names normalised).
CORE = {"torch", "numpy", "scipy", "geoopt", "pot", "power-spherical", "tqdm"}

#: Hides the extras' packages as if they were not installed: every finder of ``sys.meta_path`` is
#: wrapped so that it finds none of them (``import pandas`` raises ModuleNotFoundError, and
#: ``importlib.util.find_spec("pandas")``, with which torch probes optional packages, is None).
BLOCKER = f'''
import importlib.abc, sys
BLOCKED = {EXTRA_MODULES!r}
class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None
    def invalidate_caches(self):
        getattr(self.inner, "invalidate_caches", lambda: None)()
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
sys.meta_path[:] = [Blocker(f) for f in sys.meta_path]
'''

#: A first use of the core: every method of METHODS on small points, a gradient, a step of the
#: fused Riemannian Adam, optimize() with its progress bar, the metrics, the Power Spherical
#: start, post-hoc dispersion of a table.
CORE_EXAMPLE = '''
import torch
import dispersion, dispersion.regularizers, dispersion.metrics, dispersion.sphere, dispersion.optim
from dispersion.optim import RiemannianAdam, optimize

g = torch.Generator().manual_seed(0)
X = dispersion.sphere.uniform(64, 8, generator=g)
for name in dispersion.METHODS:
    reg = dispersion.build(name, generator=torch.Generator().manual_seed(1))
    Y = X.clone().requires_grad_()
    reg(Y).backward()
    assert torch.isfinite(Y.grad).all(), name
emb = torch.nn.Parameter(X.clone())
opt = RiemannianAdam([emb], lr=1e-2)
before = dispersion.metrics.min_angle(emb.detach())
loss = dispersion.build("mma")(emb)
loss.backward()
opt.step()
assert torch.allclose(emb.detach().norm(dim=1), torch.ones(64), atol=1e-5)
res = optimize(dispersion.sphere.power_spherical(32, 4, kappa=10.0, generator=g), dispersion.build("sliced"),
               steps=20, lr=1e-2, generator=g, progress=True)
out = dispersion.disperse(torch.randn(40, 6, generator=g), "uniformity", steps=5, lr=1e-2, progress=False)
print("min_angle", float(before), float(dispersion.metrics.min_angle(emb.detach())),
      "circular_variance", float(dispersion.metrics.circular_variance(res.X)), type(out).__name__)
'''

CHECK_NOTHING_LEAKED = '''
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("core ok; torch", torch.__version__)
'''


def test_the_core_runs_with_every_extra_blocked():
    code = BLOCKER + CORE_EXAMPLE + CHECK_NOTHING_LEAKED
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore::FutureWarning"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "core ok" in out.stdout


def test_the_blocker_blocks():
    code = BLOCKER + "import importlib.util\nassert importlib.util.find_spec('yaml') is None\nimport pandas\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "No module named 'pandas'" in out.stderr, out.stderr


def _requires_dist(metadata_text: str) -> tuple[set[str], dict[str, set[str]]]:
    """(unconditional requirement names, extra -> requirement names) of a METADATA file."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    msg = email.parser.Parser().parsestr(metadata_text)
    core, extras = set(), {}
    for spec in msg.get_all("Requires-Dist") or []:
        r = Requirement(spec)
        name = canonicalize_name(r.name)
        if r.marker is None:
            core.add(name)
        else:
            extra = str(r.marker).split("==")[-1].strip().strip("'\"")
            extras.setdefault(extra, set()).add(name)
    return core, extras


def test_the_wheel_requires_only_the_core(tmp_path):
    """Build the wheel (from a copy of the sources, so the checkout gets no build/ folder) and
    read its METADATA: the core dependencies unconditionally, everything else behind an extra."""
    import pytest  # here, so that the file also runs as a script where pytest is not installed

    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dispersion", src / "dispersion",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          str(src), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("hypersphere_dispersion-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    import dispersion

    assert wheel.name.startswith(f"hypersphere_dispersion-{dispersion.__version__}-")
    assert "dispersion/py.typed" in names and "dispersion/regularizers/sliced.py" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "workflow/", "results/"))]
    core, extras = _requires_dist(meta)
    assert core == CORE, f"unconditional requirements: {sorted(core)}"
    assert {"image", "text", "audit", "workflow", "docs", "dev", "all"} <= set(extras)
    assert "snakemake" in extras["workflow"] and "transformers" in extras["text"]
    assert "scikit-learn" in extras["audit"] and "sphinx" in extras["docs"] and "ruff" in extras["dev"]


if __name__ == "__main__":  # the same example in whatever environment runs this file
    exec(compile(BLOCKER + CORE_EXAMPLE + CHECK_NOTHING_LEAKED, "core_example", "exec"))
