"""Every run of a config with the spec it records, and the check that the committed runs
(``summary.json`` files in git) still agree with the configs that claim to produce them.

On a fresh clone Snakemake has no run metadata, so a parameter changed in a config without
rerunning would otherwise go unnoticed; ``tests/pipeline/test_committed_runs.py`` runs the check.
"""

from __future__ import annotations

import json
import os

from . import audit, image, nmt, synthetic, tammes, text

__all__ = ["UNCOMPARED_SPEC_KEYS", "run_specs", "spec_differences", "committed_run_mismatches"]

#: Spec keys left out of the comparison: the requested device (``auto``, ``cpu``, ``cuda``) picks
#: hardware, not the experiment; the hardware a run used is in the summary's ``device`` and
#: ``device_name``.
UNCOMPARED_SPEC_KEYS = ("device",)

#: The pipeline module of every experiment, in the order of their runs in :func:`run_specs`.
EXPERIMENTS = (tammes, synthetic, image, text, audit, nmt)


def run_specs(config: dict) -> dict[str, dict]:
    """Every run of ``config``, as the path of its ``summary.json`` (normalised, relative to the
    workflow's directory) → the spec the run records as the summary's ``config``: what the rule
    passes to the run (``tammes_spec``, ``synthetic_specs``, the image ``run_spec``, the text
    ``classify_spec`` / ``lm_spec``, ``audit_spec`` / ``audit_posthoc_spec``, ``nmt_spec``) plus what the rule adds (the
    seed; the LM's and the translation runs' corpus path).
    The union of each experiment module's ``run_specs``."""
    out: dict[str, dict] = {}
    for experiment in EXPERIMENTS:
        out.update(experiment.run_specs(config))
    return out


def spec_differences(recorded, expected, path: str = "") -> list[str]:
    """The differences between a recorded spec and the one the config gives now, one line per
    key (dotted path: ``params.gamma: summary 1.0, config 0.5``); [] when they agree. Compared
    as JSON values (so 1 and 1.0 agree), top-level keys of :data:`UNCOMPARED_SPEC_KEYS` left out."""
    expected = json.loads(json.dumps(expected))
    if isinstance(recorded, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(recorded) | set(expected), key=str):
            if not path and key in UNCOMPARED_SPEC_KEYS:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in expected:
                out.append(f"{where}: summary {recorded[key]!r}, not in the config's spec")
            elif key not in recorded:
                out.append(f"{where}: not in the summary, config {expected[key]!r}")
            else:
                out += spec_differences(recorded[key], expected[key], where)
        return out
    return [] if recorded == expected else [f"{path or 'spec'}: summary {recorded!r}, config {expected!r}"]


def committed_run_mismatches(summaries, configs: dict[str, dict], basedir: str = ".") -> list[str]:
    """One message per run whose ``summary.json`` disagrees with the configs that claim it.

    ``summaries``: paths of ``summary.json`` files relative to ``basedir`` (the committed ones:
    ``git ls-files``); ``configs``: name → merged config
    (:func:`dispersion.pipeline.config.shipped_configs`). A summary under a config's
    ``results_dir``, in a ``runs/`` directory of the workflow, must be a run of that config
    (else: "no config produces it") and hold that run's spec (else: the differing keys,
    :func:`spec_differences`). Summaries elsewhere (hand-made checks) are not runs of the
    workflow and are skipped."""
    expected: dict[str, tuple[str, dict]] = {}
    roots: dict[str, str] = {}
    for name, config in configs.items():
        roots.setdefault(os.path.normpath(config["results_dir"]), name)
        for path, spec in run_specs(config).items():
            expected.setdefault(path, (name, spec))
    out = []
    for rel in sorted(os.path.normpath(p) for p in summaries):
        parts = rel.split(os.sep)
        root = next((r for r in roots if rel.startswith(r + os.sep)), None)
        if root is None or "runs" not in parts[len(root.split(os.sep)):]:
            continue
        if rel not in expected:
            out.append(f"{rel}: no config produces this run (configs with results_dir {root!r}: {roots[root]})")
            continue
        name, spec = expected[rel]
        with open(os.path.join(basedir, rel), encoding="utf-8") as f:
            recorded = json.load(f).get("config")
        if recorded is None:
            out.append(f"{rel}: summary.json holds no 'config'")
            continue
        diff = spec_differences(recorded, spec)
        if diff:
            out.append(f"{rel} (config/{name}): " + "; ".join(diff))
    return out
