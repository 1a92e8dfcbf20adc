"""The output roots of the workflow (``results_dir``, ``figures_dir``): the base of every
experiment's paths class (:class:`~dispersion.pipeline.tammes.TammesPaths`, …)."""

from __future__ import annotations

import os

__all__ = ["Paths", "EXPERIMENTS", "DEFAULT_EXPERIMENTS"]

#: What ``rule all`` can build, in order: the values of the config's ``experiments`` key.
EXPERIMENTS = ("tammes", "synthetic", "image", "text_classify", "text_lm", "audit", "paper", "nmt")
#: What ``rule all`` builds when the config has no ``experiments`` key: all but ``nmt``, whose
#: paper-scale grid (days of GPU time) has not been run for the committed results — a config
#: names it to run it (``config/cpu.yaml`` does, at cpu scale), and its targets stay reachable
#: by name (``snakemake nmt_report``).
DEFAULT_EXPERIMENTS = tuple(e for e in EXPERIMENTS if e != "nmt")


class Paths:
    """Paths under the configured roots: ``config["results_dir"]`` and ``config["figures_dir"]``."""

    def __init__(self, config: dict):
        self.config = config

    def res(self, *parts: str) -> str:
        """A path under the results root."""
        return os.path.join(self.config["results_dir"], *parts)

    def fig(self, *parts: str) -> str:
        """A path under the figures root."""
        return os.path.join(self.config["figures_dir"], *parts)

    def table(self, name: str) -> dict:
        """``{"md": ..., "tex": ...}`` of a generated table."""
        return {"md": self.res("tables", f"{name}.md"), "tex": self.res("tables", f"{name}.tex")}

    def selected(self, experiment: str) -> bool:
        """Whether ``rule all`` builds ``experiment`` (one of :data:`EXPERIMENTS`): it is in the
        config's ``experiments`` list, or in :data:`DEFAULT_EXPERIMENTS` when the list is absent.
        ``ValueError`` for an unknown name."""
        if experiment not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")
        chosen = self.config.get("experiments")
        return experiment in (DEFAULT_EXPERIMENTS if chosen is None else chosen)

    def log(self, *parts: str) -> str:
        """A log file path."""
        return self.res("logs", *parts)
