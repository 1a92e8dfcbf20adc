"""The documentation site's sources (docs/): the API reference names every public name, the user
guide every method, the results pages every committed table and figure. Static checks, no Sphinx
build (``make docs`` builds the site with warnings as errors)."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _ext(name):
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_every_public_name_is_in_the_api_reference():
    import dispersion

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = [n for n in dispersion.__all__ if not re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text)
               and f"dispersion.{n}" not in text]
    assert not missing, f"names of dispersion.__all__ not in docs/api.md: {missing}"


def test_the_api_reference_documents_every_module_once():
    """Every module of the package lands on exactly one generated reference page, and the pages
    are those docs/api.md's toctree lists."""
    api_pages = _ext("api_pages")
    modules = api_pages.package_modules(ROOT / "dispersion")
    assert "dispersion.regularizers.sliced" in modules and "dispersion.__main__" not in modules
    pages = api_pages.assign(modules)
    placed = [m for mods in pages.values() for m in mods]
    assert sorted(placed) == sorted(m for m in modules if m != "dispersion")
    toctree = (DOCS / "api.md").read_text(encoding="utf-8")
    assert all(f"reference/{page}" in toctree for page in pages)


def test_the_user_guide_gives_every_method():
    import dispersion

    text = (DOCS / "guide" / "regularizers.md").read_text(encoding="utf-8")
    rows = {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", text, re.M)}
    assert rows == set(dispersion.METHODS), rows ^ set(dispersion.METHODS)


def test_the_results_pages_list_every_committed_table_and_figure():
    """Each committed table is included from its file (never pasted), each figure shown, both with
    their scale (the page text is computed, nothing is written)."""
    results_pages = _ext("results_pages")
    for scale, (_, _, table_dir, figure_dir) in results_pages.SCALES.items():
        page = results_pages.scale_page(ROOT, DOCS / "results", scale)
        for t in results_pages.committed(ROOT, table_dir, ".md"):
            assert f"```{{include}} ../../{t}\n" in page, t
            assert f"`{t}` (scale: {scale})" in page, t
        for f in results_pages.committed(ROOT, figure_dir, ".png"):
            assert f"```{{image}} ../../{f}\n" in page, f
            assert f"`{f}` (scale: {scale};" in page, f
    assert results_pages.committed(ROOT, "results/tables", ".md"), "no committed paper-scale table found"
    assert results_pages.committed(ROOT, "cpu/results/tables", ".md"), "no committed cpu-scale table found"


def test_the_site_has_its_pages_and_the_changelog():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in ("getting-started", "guide/index", "api", "authors-parameters", "reproducing", "results/index",
                 "data", "design", "changelog"):
        assert (DOCS / f"{page}.md").is_file() or page == "results/index", page
        assert f"\n{page}\n" in index, f"{page} is not in the toctree of docs/index.md"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog") and "## [Unreleased]" in changelog
    import dispersion

    assert f"## [{dispersion.__version__}]" in changelog
    assert "../CHANGELOG.md" in (DOCS / "changelog.md").read_text(encoding="utf-8")
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8")
    assert all(p in ignored for p in ("/docs/_build/", "/docs/reference/", "/docs/results/"))


def test_getting_started_lists_every_extra_with_its_packages():
    """The extras table of docs/getting-started.md names each extra of pyproject.toml and every
    package it brings (another extra it includes stands for that extra's packages)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `\[(\w+)\]` \|.*$", text, re.M)}
    assert set(rows) == set(project["optional-dependencies"]), sorted(rows)
    for extra, specs in project["optional-dependencies"].items():
        for r in map(Requirement, specs):
            listed = r.extras if r.name == project["name"] else [r.name]
            missing = [n for n in listed if n not in rows[extra]]
            assert not missing, f"getting-started.md: [{extra}] does not list {missing}"
    core = [Requirement(s).name for s in project["dependencies"]]
    assert all(f"`{n}`" in text for n in core), core
