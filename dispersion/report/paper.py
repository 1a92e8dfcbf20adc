"""Build the LaTeX document in ``paper/`` from the workflow's outputs, without running anything.

The document names its inputs by study ("group"): ``\\restable{<group>}{<table>}``,
``\\resfigure[<options>]{<group>}{<figure>}`` and, for a study whose tables are found by name
(:data:`GLOB_GROUPS`: the audit, translation), ``\\resentries{<group>}``. Each group is drawn from
the first output root (``results``/``figures``, then each fallback, e.g. the cpu scale's) that
holds all of its tables, figures and number inputs (:data:`NUMBER_INPUTS`); the numbers of the
prose are generated from that root (:mod:`dispersion.report.paper_numbers`) into ``numbers.tex``
beside the PDF, and the sections state the scale and device their tables' captions give."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


__all__ = ["GLOB_GROUPS", "NUMBER_INPUTS", "Group", "resolve", "referenced_files", "build"]

# This module imports only the standard library at module level (the workflow resolves the paper
# rule's inputs with it while building its DAG); building imports the report code.

#: What each group's numbers read under its results root (besides the tables the document
#: includes; :mod:`dispersion.report.paper_numbers`): the paper rule's inputs, so that it waits for
#: them.
NUMBER_INPUTS: dict[str, list[str]] = {
    "tammes": ["tammes/runs.csv", "tables/tammes.tex"],
    "synthetic": ["synthetic/main/runs.csv", "tables/synthetic_final.tex", "tables/synthetic_speed.tex"],
    "regimes": ["synthetic/regimes/runs.csv", "tables/synthetic_regimes.tex"],
    "slices": ["synthetic/slices/runs.csv"],
    "fullbatch": ["synthetic/fullbatch/runs.csv", "tables/synthetic_speed.tex"],
    "optimizers": ["synthetic/optimizers/runs.csv"],
    "image": ["image/fashion_mnist_runs.csv", "tables/image_fashion_mnist_accuracy.tex"],
    "textclassify": ["text/text_classify_runs.csv", "tables/text_classify.tex"],
    "lm": ["text/text_lm_runs.csv", "tables/text_lm.tex"],
    "posthoc": ["audit/posthoc_runs.csv"],
}

# \restable{<group>}{<table stem>} and \resfigure[<options>]{<group>}{<figure stem>} in the
# document; \resentries{<group>} for a group of GLOB_GROUPS.
_TABLE = re.compile(r"\\restable\{([^}]+)\}\{([^}]+)\}")
_FIGURE = re.compile(r"\\resfigure(?:\[[^\]]*\])?\{([^}]+)\}\{([^}]+)\}")
_ENTRIES = re.compile(r"\\resentries\{([^}]+)\}")

#: Groups whose tables are found by name pattern under ``<results>/tables`` (a scale audits its own
#: set of tables; the translation experiment may not have run): group → table pattern, tables left
#: out, the figure drawn beside each table (``{stem}``: the table's stem) and a figure pattern.
GLOB_GROUPS: dict[str, dict] = {
    "audit": {"tables": "audit_*.tex", "exclude": ("audit_posthoc.tex",), "figure": "{stem}_nn_angles.pdf",
              "figures": None},
    "nmt": {"tables": "nmt*.tex", "exclude": (), "figure": None, "figures": "nmt*.pdf"},
}


@dataclass
class Group:
    """One study of the document, drawn from one output root: the first root (the configured
    one, then the fallbacks) that holds every file it needs."""

    name: str
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # what its numbers read (NUMBER_INPUTS)
    optional: bool = False  # a GLOB_GROUPS group: left out when no root has it
    results: Path | None = None
    figures_root: Path | None = None
    found: bool = False
    entries: list[tuple[str, str]] = field(default_factory=list)  # GLOB_GROUPS: (table, figure or "")
    extra_figures: list[str] = field(default_factory=list)

    def files_at(self, results: Path, figures: Path) -> list[Path]:
        files = [results / "tables" / f"{t}.tex" for t in self.tables]
        files += [figures / f"{f}.pdf" for f in self.figures]
        files += [results / i for i in self.inputs]
        return list(dict.fromkeys(files))

    def files(self) -> list[Path]:
        """Every file this group reads at its chosen root ([] for an optional group not found)."""
        if self.results is None:
            return []
        if not self.optional:
            return self.files_at(self.results, self.figures_root)
        out = [self.results / "tables" / f"{t}.tex" for t, _ in self.entries]
        out += [self.figures_root / f"{f}.pdf" for _, f in self.entries if f]
        out += [self.figures_root / f"{f}.pdf" for f in self.extra_figures]
        return out


def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in text.splitlines())


def _glob(group: str, results: Path, figures: Path) -> tuple[list[tuple[str, str]], list[str]]:
    spec = GLOB_GROUPS[group]
    tables = sorted(p for p in (results / "tables").glob(spec["tables"]) if p.name not in spec["exclude"])
    entries = []
    for t in tables:
        fig = spec["figure"].format(stem=t.stem) if spec["figure"] else ""
        entries.append((t.stem, fig[:-4] if fig and (figures / fig).exists() else ""))
    extra = sorted(p.stem for p in figures.glob(spec["figures"])) if spec["figures"] and entries else []
    return entries, extra


def resolve(tex_path: str | Path, results_dir: str | Path, figures_dir: str | Path,
            fallbacks: Sequence[tuple[str | Path, str | Path]] = ()) -> dict[str, Group]:
    r"""The groups of ``tex_path`` (``\restable``/``\resfigure``/``\resentries``), each resolved to
    the first of the roots ``(results_dir, figures_dir)``, ``*fallbacks`` that holds all of its
    tables, figures and number inputs. A group no root holds completely stays at the first root,
    ``found`` False (its missing files are what the workflow still has to make); a GLOB_GROUPS group
    no root holds is left out (``results`` None)."""
    text = _strip_comments(Path(tex_path).read_text(encoding="utf-8"))
    groups: dict[str, Group] = {}
    for g, t in _TABLE.findall(text):  # (a macro's "#1" is the name it is called with, not a file)
        if not t.startswith("#"):
            groups.setdefault(g, Group(g)).tables.append(t)
    for g, f in _FIGURE.findall(text):
        if not f.startswith("#"):
            groups.setdefault(g, Group(g)).figures.append(f)
    for g in _ENTRIES.findall(text):
        if g not in GLOB_GROUPS:
            raise ValueError(f"{tex_path}: \\resentries{{{g}}} names no group of GLOB_GROUPS ({sorted(GLOB_GROUPS)})")
        groups.setdefault(g, Group(g)).optional = True
    roots = [(Path(results_dir), Path(figures_dir))] + [(Path(r), Path(f)) for r, f in fallbacks]
    for g in groups.values():
        g.tables, g.figures = list(dict.fromkeys(g.tables)), list(dict.fromkeys(g.figures))
        g.inputs = list(NUMBER_INPUTS.get(g.name, []))
        for res, fig in roots:
            if g.optional:
                entries, extra = _glob(g.name, res, fig)
                ok = bool(entries) and all(p.exists() for p in g.files_at(res, fig))
                if ok:
                    g.entries, g.extra_figures = entries, extra
            else:
                ok = all(p.exists() for p in g.files_at(res, fig))
            if ok:
                g.results, g.figures_root, g.found = res, fig, True
                break
        else:
            if not g.optional:
                g.results, g.figures_root = roots[0]
    return groups


def referenced_files(tex_path: str | Path, results_dir: str | Path, figures_dir: str | Path,
                     fallbacks: Sequence[tuple[str | Path, str | Path]] = ()) -> list[Path]:
    r"""Every file ``tex_path`` needs from the workflow: the tables (``\restable``), figures
    (``\resfigure``) and the CSVs its numbers are computed from, of each group at the root it is
    drawn from (:func:`resolve`), and the tables of a ``\resentries`` group where one root has
    them. Files of a group that no root holds completely are named under ``results_dir`` /
    ``figures_dir`` (they may not exist)."""
    return [p for g in resolve(tex_path, results_dir, figures_dir, fallbacks).values() for p in g.files()]


def _provenance(group: Group) -> tuple[str, str, str]:
    """(scale, device, root) of a resolved group, for the text: the scale and devices stated in its
    tables' captions (the scale of its root when none states them)."""
    from .common import _latex_escape, scale_of
    from .paper_numbers import table_provenance

    tables = [group.results / "tables" / f"{t}.tex" for t in group.tables]
    tables += [group.results / "tables" / f"{t}.tex" for t, _ in group.entries]
    found = [pv for pv in (table_provenance(t) for t in tables) if pv]
    scales = list(dict.fromkeys(s for s, _ in found)) or [scale_of(group.results / "x")]
    devices = list(dict.fromkeys(d.strip() for _, dev in found for d in dev.split(", ")))
    device = ", ".join(re.sub(r"\(1 threads\)", "(1 thread)", d) for d in devices) or "not recorded"
    return ", ".join(scales), device, _latex_escape(str(group.results))


def _caption_safe(text: str) -> str:
    """A generated table with ``<``/``>`` in its caption set in math (pdflatex's default OT1 text
    font has no such glyphs: it prints ¡ and ¿); tables written before
    :func:`~dispersion.report.common._latex_escape` knew them still hold bare ones."""
    def fix(m: re.Match) -> str:
        return re.sub(r"(?<![$\\])([<>])(?!\$)", r"$\1$", m.group(0))

    return re.sub(r"^\\caption\{.*$", fix, text, flags=re.M)


def _copy_tables(groups: dict[str, Group], into: Path) -> dict[str, Path]:
    """Copy every table the document inputs to ``into/<group>/tables`` (captions made safe,
    :func:`_caption_safe`); group → the root that TeX reads its tables from."""
    roots = {}
    for g in groups.values():
        if g.results is None:
            continue
        root = into / g.name
        (root / "tables").mkdir(parents=True, exist_ok=True)
        for stem in g.tables + [t for t, _ in g.entries]:
            src = g.results / "tables" / f"{stem}.tex"
            (root / "tables" / src.name).write_text(_caption_safe(src.read_text(encoding="utf-8")), encoding="utf-8")
        roots[g.name] = root
    return roots


def _sources_tex(groups: dict[str, Group], table_roots: dict[str, Path] | None = None) -> str:
    lines = ["% Written by dispersion.report.paper.build: the root each group is drawn from."]
    for g in groups.values():
        if g.results is None:
            continue
        res = (table_roots or {}).get(g.name, g.results).resolve()
        lines.append(f"\\dsroot{{{g.name}}}{{{res}}}{{{g.figures_root.resolve()}}}")
        if g.optional:
            body = "".join(f"\\csname {g.name}table\\endcsname{{{t}}}{{{f}}}" for t, f in g.entries)
            body += "".join(f"\\csname {g.name}figure\\endcsname{{{f}}}" for f in g.extra_figures)
            lines.append(f"\\expandafter\\def\\csname dsentries-{g.name}\\endcsname{{{body}}}")
    return "\n".join(lines) + "\n"


def build(tex_path: str | Path, results_dir: str | Path, figures_dir: str | Path, status_path: str | Path,
          fallbacks: Sequence[tuple[str | Path, str | Path]] = ()) -> str:
    """Build ``tex_path`` from the workflow's outputs without running anything: each group of the
    document is drawn from the first root that has it (``results_dir``/``figures_dir``, then
    ``fallbacks``, e.g. the cpu scale's roots), its numbers are written to ``<status dir>/numbers.tex``
    (:mod:`dispersion.report.paper_numbers`), and latexmk compiles ``<status dir>/main.pdf`` when it
    is installed. Writes a status file either way and returns its text. Raises
    ``FileNotFoundError`` naming the tables, figures or CSVs that no root has."""
    from ..runio import atomic_save, atomic_write_text
    from .paper_numbers import numbers_tex

    groups = resolve(tex_path, results_dir, figures_dir, fallbacks)
    missing = [str(p) for g in groups.values() if not g.optional and not g.found for p in g.files() if not p.exists()]
    if missing:
        roots = [str(results_dir)] + [str(r) for r, _ in fallbacks]
        raise FileNotFoundError(f"the paper needs these workflow outputs, which no output root ({roots}) has: "
                                f"{missing}")
    status_path = Path(status_path)
    prov = {name: _provenance(g) for name, g in groups.items() if g.results is not None}
    numbers = numbers_tex({name: g.results for name, g in groups.items() if g.results is not None},
                          scales={name: pv[:2] for name, pv in prov.items()},
                          roots={name: pv[2] for name, pv in prov.items()})
    numbers_path = status_path.parent / "numbers.tex"
    atomic_write_text(numbers_path, numbers)
    drawn = "; ".join(f"{name}: {g.results}" if g.results is not None else f"{name}: not found (left out)"
                      for name, g in groups.items())
    latexmk = shutil.which("latexmk")
    if latexmk is None:
        text = ("SKIPPED: latexmk is not installed, so the PDF was not built. Every table and figure "
                f"that {tex_path} includes exists; numbers written to {numbers_path}. Install latexmk and "
                "the TeX packages (Debian: latexmk texlive-latex-recommended) and rerun this rule to "
                f"build it.\nDrawn from: {drawn}\n")
        atomic_write_text(status_path, text)
        return text
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(tex_path, Path(tmp) / "main.tex")
        (Path(tmp) / "numbers.tex").write_text(numbers, encoding="utf-8")
        table_roots = _copy_tables(groups, Path(tmp) / "tables")
        (Path(tmp) / "sources.tex").write_text(_sources_tex(groups, table_roots), encoding="utf-8")
        cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-jobname=main", "main.tex"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        log = Path(tmp) / "main.log"
        log_text = log.read_text(encoding="latin-1") if log.exists() else ""
        if proc.returncode != 0:
            raise RuntimeError(f"latexmk failed:\n{proc.stdout[-3000:]}\n{log_text[-3000:]}")
        undefined = sorted(set(re.findall(r"(?:Reference|Citation) `([^']+)' on page \d+ undefined", log_text)))
        if undefined:
            raise RuntimeError(f"{tex_path}: undefined references after latexmk: {undefined}")
        pages = re.search(r"Output written on main\.pdf \((\d+) pages?", log_text)
        pdf = status_path.parent / "main.pdf"
        atomic_save(pdf, lambda t: shutil.copy(Path(tmp) / "main.pdf", t))
    text = f"BUILT: {pdf} ({pages.group(1) if pages else '?'} pages)\nDrawn from: {drawn}\n"
    atomic_write_text(status_path, text)
    return text
