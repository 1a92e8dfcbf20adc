"""The output roots of the workflow (``results_dir``, ``figures_dir``): the base of every
experiment's paths class (:class:`~dispersion.pipeline.tammes.TammesPaths`, …)."""

from __future__ import annotations

import os

__all__ = ["Paths", "EXPERIMENTS"]

#: What ``rule all`` can build, in order: the values of the config's ``experiments`` key (all of
#: them when the key is absent).
EXPERIMENTS = ("tammes", "synthetic", "image", "text_classify", "text_lm", "audit", "paper")


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
        config's ``experiments`` list, or the list is absent. ``ValueError`` for an unknown name."""
        if experiment not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")
        chosen = self.config.get("experiments")
        return chosen is None or experiment in chosen

    def log(self, *parts: str) -> str:
        """A log file path."""
        return self.res("logs", *parts)

    def paper_inputs(self, *outputs: list[str]) -> list[str]:
        """Every table and figure the paper includes (tables .tex, figures .pdf) among
        ``outputs``, the output lists of the experiments (``TammesPaths(config).outputs()``, …)."""
        return [p for o in outputs for p in o if p.endswith((".tex", ".pdf"))]
