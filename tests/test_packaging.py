"""Static checks of the packaging: conda file, pins, layout."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(path):
    out = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[name.strip().lower()] = version.strip()
    return out


def test_environment_yml_agrees_with_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "dispersion"
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    env_pins = {l.split("==")[0].lower(): l.split("==")[1] for l in pip_section if "==" in l}
    req = {**_pins("requirements.txt"), **_pins("requirements-dev.txt")}
    assert env_pins == req
    # the workflow's conda env is the same file apart from the editable-install path
    wf = yaml.safe_load((ROOT / "workflow/envs/dispersion.yml").read_text())
    wf_pip = next(d["pip"] for d in wf["dependencies"] if isinstance(d, dict))
    assert [l for l in wf_pip if "==" in l] == [l for l in pip_section if "==" in l]


def test_pyproject_ranges_admit_the_pins():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins("requirements.txt")
    for spec in project["dependencies"]:
        r = Requirement(spec)
        assert r.name.lower() in pins, f"{r.name} is not pinned in requirements.txt"
        assert r.specifier.contains(pins[r.name.lower()]), f"{spec} does not admit the pin {pins[r.name.lower()]}"


def test_layout():
    for p in ["Snakefile", "workflow/rules", "workflow/schemas", "workflow/profiles/quick", "workflow/profiles/default",
              "workflow/profiles/slurm", "config/config.yaml", "config/quick.yaml", "config/README.md", "dispersion",
              "tests", "paper", "notebooks", "environment.yml", "pyproject.toml", "Makefile", "README.md", "LICENSE",
              "CITATION.cff", ".ci/run"]:
        assert (ROOT / p).exists(), p


def test_subpackages_are_attributes_of_the_package():
    import dispersion

    assert dispersion.optim.RiemannianAdam.__module__ == "dispersion.optim"
    assert dispersion.prototypes.place_prototypes is not None
    assert "sliced" in dispersion.regularizers.METHODS
    for name in ("metrics", "sphere", "optim", "prototypes", "regularizers", "training"):
        assert name in dir(dispersion)


def _pyproject():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_distribution_name_is_ours_and_the_import_name_is_dispersion():
    # "dispersion" on PyPI belongs to an unrelated project; ours is published under another name
    pp = _pyproject()
    assert pp["project"]["name"] == "hypersphere-dispersion"
    assert pp["tool"]["setuptools"]["packages"]["find"]["include"] == ["dispersion*"]
    assert (ROOT / "dispersion" / "__init__.py").is_file()
    assert pp["project"]["scripts"]["dispersion"] == "dispersion.cli:main"


def test_one_version_everywhere():
    from importlib import metadata

    import dispersion

    pp = _pyproject()
    assert "version" in pp["project"]["dynamic"] and "version" not in pp["project"]
    assert pp["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "dispersion.__version__"}
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == dispersion.__version__
    try:
        installed = metadata.version("hypersphere-dispersion")
    except metadata.PackageNotFoundError:  # a source checkout that was never installed
        return
    assert installed == dispersion.__version__
    assert "hypersphere-dispersion" in metadata.packages_distributions().get("dispersion", [])


def test_subpackages_are_attributes_in_a_fresh_interpreter():
    # attribute access on the bare package (PEP 562), without importing the subpackages first
    import subprocess
    import sys

    code = ("import dispersion as d\n"
            "for n in ('optim', 'prototypes', 'regularizers', 'metrics', 'sphere', 'training', 'data', 'models',\n"
            "          'report', 'experiments'):\n"
            "    assert getattr(d, n).__name__ == 'dispersion.' + n, n\n"
            "assert d.optim.RiemannianAdam and d.prototypes.place_prototypes and 'sliced' in d.regularizers.METHODS\n"
            "print(d.__version__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import dispersion

    assert out.stdout.strip() == dispersion.__version__

