"""Build the LaTeX document in ``paper/`` against a results and a figures root."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..runio import atomic_save, atomic_write_text

__all__ = ["referenced_files", "build"]


def referenced_files(tex_path: str | Path, results_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    r"""Every file ``tex_path`` needs from the workflow: its ``\input{\resultsdir/...}`` tables and
    its ``\includegraphics{...}`` figures (looked up under ``figures_dir``)."""
    text = Path(tex_path).read_text(encoding="utf-8")
    text = "\n".join(line.split("%")[0] for line in text.splitlines())
    files = [Path(results_dir) / m for m in re.findall(r"\\input\{\\resultsdir/([^}]+)\}", text)]
    files += [Path(figures_dir) / m for m in re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", text)]
    return files


def build(tex_path: str | Path, results_dir: str | Path, figures_dir: str | Path, status_path: str | Path) -> str:
    """Compile ``tex_path`` with latexmk (``\\resultsdir``/``\\figuresdir`` pointing at the given
    roots) into ``<status dir>/main.pdf`` when latexmk is installed; otherwise check that every
    referenced table and figure exists. Writes a one-paragraph status file either way and
    returns its text. Raises ``FileNotFoundError`` naming a missing table or figure."""
    missing = [str(p) for p in referenced_files(tex_path, results_dir, figures_dir) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"the paper needs these workflow outputs, which are missing: {missing}")
    status_path = Path(status_path)
    latexmk = shutil.which("latexmk")
    if latexmk is None:
        text = ("SKIPPED: latexmk is not installed, so the PDF was not built. Every table and figure "
                f"that {tex_path} includes exists. Install latexmk and a TeX distribution "
                "(Debian: latexmk texlive-latex-extra) and rerun this rule to build it.\n")
        atomic_write_text(status_path, text)
        return text
    res, figs = Path(results_dir).resolve(), Path(figures_dir).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "main.tex"
        shutil.copy(tex_path, src)
        cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-jobname=main",
               f"-pretex=\\def\\resultsdir{{{res}}}\\def\\figuresdir{{{figs}}}", "-usepretex", "main.tex"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"latexmk failed:\n{proc.stdout[-3000:]}")
        pdf = status_path.parent / "main.pdf"
        atomic_save(pdf, lambda t: shutil.copy(Path(tmp) / "main.pdf", t))
    text = f"BUILT: {pdf}\n"
    atomic_write_text(status_path, text)
    return text
