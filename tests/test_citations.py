"""Docstrings, comments, configs and docs cite the paper and the original papers, not spec files."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_cite_the_paper_not_the_spec_files():
    # the specification files the reproduction was written from are not shipped; docstrings,
    # comments, configs and docs cite the paper (arXiv:2502.08231) and docs/data.md instead
    names = ("PAPER" + ".md", "DATA" + ".md")
    files = [ROOT / "Snakefile", ROOT / "README.md", ROOT / "Makefile", ROOT / "requirements-data.txt"]
    for sub, pattern in (("dispersion", "*.py"), ("workflow", "*"), ("config", "*"), ("docs", "*"),
                         ("notebooks", "*.ipynb"), ("tests", "*.py")):
        files += [p for p in (ROOT / sub).rglob(pattern) if p.is_file()]
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files if p.suffix not in {".pyc", ".png", ".pdf"}
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if any(n in line for n in names)]
    assert not hits, hits
    assert (ROOT / "docs" / "data.md").is_file()
