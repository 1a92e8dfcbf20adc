"""The paper (paper/main.tex): each study drawn from the scale that has it, the numbers of its
prose generated from the tables, and the PDF built from the committed outputs (paper scale
under results/ and figures/, the cpu scale under cpu/) without running anything."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dispersion.pipeline.paper import paper_fallbacks
from dispersion.report import paper

ROOT = Path(__file__).resolve().parents[2]
TEX = ROOT / "paper" / "main.tex"
SECTIONS = ["Setting", "Tammes problem", "Large-scale synthetic dispersion", "Which method wins where",
            "How many slices", "Full batch against minibatch", "Riemannian against Euclidean optimisation at scale",
            "Image classification with hyperspherical prototypes", "Sentence classification with prototypes",
            "A whole vocabulary on the sphere", "Translation", "Audit of real embedding tables",
            "Spreading a table after the fact", "claims against the runs"]


def _roots():
    fallbacks = paper_fallbacks({"results_dir": "results"}, str(ROOT))
    return ROOT / "results", ROOT / "figures", [(ROOT / r, ROOT / f) for r, f in fallbacks]


def test_paper_scale_falls_back_to_the_cpu_scale_only():
    assert paper_fallbacks({"results_dir": "results"}, str(ROOT)) == [("cpu/results", "cpu/figures")]
    assert paper_fallbacks({"results_dir": "quick/results"}, str(ROOT)) == []


def test_each_study_comes_from_the_first_root_that_has_all_of_it(tmp_path):
    tex = tmp_path / "main.tex"
    tex.write_text("\\restable{a}{t1}\\resfigure[width=1cm]{a}{f1}\\restable{b}{t2}\n"
                   "\\newcommand{\\x}[1]{\\restable{c}{#1}}% \\restable{d}{commented}\n\\resentries{nmt}\n")
    primary, cpu = tmp_path / "p", tmp_path / "c"
    for root, tables in ((primary, ["t1"]), (cpu, ["t1", "t2", "nmt_bleu"])):
        (root / "res" / "tables").mkdir(parents=True)
        (root / "fig").mkdir()
        for t in tables:
            (root / "res" / "tables" / f"{t}.tex").write_text("x")
    (cpu / "fig" / "f1.pdf").write_text("x")
    groups = paper.resolve(tex, primary / "res", primary / "fig", [(cpu / "res", cpu / "fig")])
    assert set(groups) == {"a", "b", "nmt"}  # "#1" and comments are not files
    # a: its figure is only at the fallback, so all of it comes from there; b too
    assert groups["a"].results == cpu / "res" and groups["b"].results == cpu / "res"
    assert groups["nmt"].found and groups["nmt"].entries == [("nmt_bleu", "")]
    (cpu / "res" / "tables" / "t2.tex").unlink()
    (cpu / "res" / "tables" / "nmt_bleu.tex").unlink()
    groups = paper.resolve(tex, primary / "res", primary / "fig", [(cpu / "res", cpu / "fig")])
    # no root has b: it is named under the primary root (what the workflow must make); nmt is optional
    assert not groups["b"].found and groups["b"].files() == [primary / "res" / "tables" / "t2.tex"]
    assert groups["nmt"].results is None and groups["nmt"].files() == []


def test_captions_get_math_comparison_signs():
    text = "\\caption{ratio (> 1: more, $<$ 2)}\n\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{"
    out = paper._caption_safe(text)
    assert out.splitlines()[0] == "\\caption{ratio ($>$ 1: more, $<$ 2)}"
    assert out.splitlines()[1] == text.splitlines()[1]


def test_numbers_cover_the_document_and_build_without_latexmk(tmp_path, monkeypatch):
    """Every \\ds{...} of the document is generated from the committed outputs (no latexmk
    needed): the values, the scales and the verdicts."""
    res, fig, fallbacks = _roots()
    groups = paper.resolve(TEX, res, fig, fallbacks)
    missing = [str(p) for g in groups.values() for p in g.files() if not p.exists()]
    assert not missing, f"committed outputs missing (a study being rerun?): {missing}"
    monkeypatch.setattr(paper.shutil, "which", lambda name: None)
    status = paper.build(TEX, res, fig, tmp_path / "STATUS.txt", fallbacks=fallbacks)
    assert status.startswith("SKIPPED: latexmk is not installed")
    numbers = (tmp_path / "numbers.tex").read_text()
    defined = set(re.findall(r"\\dsdef\{([^}]+)\}", numbers))
    text = paper._strip_comments(TEX.read_text())
    used = set(re.findall(r"\\ds\{([^}#]+)\}", text))
    for g in re.findall(r"\\provenance\{([^}]+)\}", text):
        used |= {f"{g}-scale", f"{g}-root", f"{g}-device"}
    if not groups["nmt"].found:
        used -= {"nmt-scale", "nmt-root", "nmt-device"}
    assert used <= defined, sorted(used - defined)
    values = dict(re.findall(r"\\dsdef\{([^}]+)\}\{(.*)\}$", numbers, re.M))
    assert values["image-scale"] == "cpu" and values["lm-scale"] == "cpu"
    assert values["tammes-scale"] == "paper" and values["textclassify-scale"] == "paper"
    for k in ("verdict-classify", "verdict-riemannian", "verdict-vocabulary", "tammes-verdict", "regimes-verdict",
              "fullbatch-verdict"):
        assert "---" not in values[k], (k, values[k])


@pytest.mark.skipif(shutil.which("latexmk") is None,
                    reason="latexmk is not installed (Debian: apt-get install latexmk texlive-latex-recommended; "
                    ".ci/run installs them), so the PDF cannot be built")
def test_paper_builds_from_the_committed_outputs(tmp_path):
    res, fig, fallbacks = _roots()
    status = paper.build(TEX, res, fig, tmp_path / "STATUS.txt", fallbacks=fallbacks)
    m = re.match(r"BUILT: .*main\.pdf \((\d+) pages\)", status)
    assert m and int(m.group(1)) >= 15, status
    assert f"image: {ROOT / 'cpu' / 'results'}" in status and f"tammes: {ROOT / 'results'};" in status
    pdf = tmp_path / "main.pdf"
    assert pdf.stat().st_size > 100_000
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed: the sections were not checked")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    text = re.sub(r"\s+", " ", text)
    for title in SECTIONS:
        assert title in text, f"section {title!r} is missing from the PDF"
    assert "Scale: cpu" in text and "Scale: paper" in text
    assert "??" not in text  # no undefined reference
    if "nmt: not found" in status:  # no translation table committed yet: the text says so
        assert "The translation grid" in text and "is pending" in text
