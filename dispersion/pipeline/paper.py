"""The paper in the workflow: the output roots ``paper/main.tex`` is drawn from and the files
the ``paper`` rule reads (:mod:`dispersion.report.paper` resolves each study of the document to
the first root that holds all of it). Nothing here runs an experiment: at paper scale the studies
not committed under ``results/`` come from the committed cpu scale (``cpu/``), which no rule of
the paper-scale workflow writes."""

from __future__ import annotations

import os

from .audit import scale_name

__all__ = ["paper_fallbacks", "paper_inputs"]


def paper_fallbacks(config: dict, basedir: str) -> list[tuple[str, str]]:
    """The roots ``(results_dir, figures_dir)`` that the paper falls back to for a study its own
    scale lacks: at paper scale (``results_dir: results``), the cpu scale's
    (``config/cpu.yaml`` under ``basedir``); at any other scale none, so a quick or test build
    reads only its own outputs."""
    if scale_name(config) != "paper":
        return []
    import yaml

    with open(os.path.join(basedir, "config", "cpu.yaml"), encoding="utf-8") as f:
        cpu = yaml.safe_load(f)
    return [(cpu["results_dir"], cpu["figures_dir"])]


def paper_inputs(config: dict, tex: str, fallbacks: list[tuple[str, str]], expected: list[str] = ()) -> list[str]:
    """The ``paper`` rule's inputs: every table, figure and CSV that ``tex`` draws from each
    study's root (:func:`dispersion.report.paper.referenced_files`; a study that no root holds yet
    is named under the config's roots, so the workflow makes it), plus ``expected`` (the outputs of
    a study whose tables the document finds by name, e.g. the audit's, which do not exist before
    their rules ran)."""
    from ..report.paper import referenced_files

    files = referenced_files(tex, config["results_dir"], config["figures_dir"], fallbacks)
    return sorted(dict.fromkeys([*(str(p) for p in files), *expected]))
