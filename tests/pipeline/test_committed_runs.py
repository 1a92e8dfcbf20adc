"""Issue 16 part 3: a committed run never silently disagrees with the config that claims to
produce it. On a fresh clone Snakemake has no run metadata, so a parameter changed in a config
without rerunning goes unnoticed by `snakemake -n`; this test rebuilds every committed run's spec
from the current configs and compares it with the one its summary.json recorded."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, shipped
from dispersion._config import deep_merge
from dispersion.pipeline import (
    committed_run_mismatches,
    run_specs,
    spec_differences,
)

CONFIGS = shipped()


def committed_summaries() -> list[str]:
    """The summary.json files in git's index (committed or staged); without git (an unpacked
    archive), every summary.json under the shipped configs' results roots."""
    if shutil.which("git") and (ROOT / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z", "--", "*summary.json"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        return [p for p in out.split("\0") if p]
    roots = {c["results_dir"] for c in CONFIGS.values()}
    return [str(p.relative_to(ROOT)) for r in roots for p in (ROOT / r).rglob("summary.json")]


def test_every_committed_run_holds_the_spec_its_config_gives_now():
    summaries = committed_summaries()
    missing = [p for p in summaries if not (ROOT / p).exists()]
    assert not missing, f"committed runs missing from the working tree: {missing}"
    bad = committed_run_mismatches(summaries, CONFIGS, basedir=str(ROOT))
    assert not bad, ("committed runs that disagree with the current configs (rerun them through the "
                     "workflow, or restore the config):\n" + "\n".join(bad))


def test_the_check_covers_the_committed_paper_runs():
    # the committed Tammes runs are runs of config.yaml, so the test above compares them
    expected = run_specs(CONFIGS["config.yaml"])
    tammes = [p for p in committed_summaries() if p.startswith("results/tammes/runs/")]
    assert len(tammes) > 100 and all(os.path.normpath(p) in expected for p in tammes)


def _write_run(root: Path, rel: str, spec: dict) -> None:
    path = root / rel
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": json.loads(json.dumps(spec)), "seed": 0, "device": "cpu"}))


@pytest.fixture
def small_config():
    cfg = deep_merge(CONFIGS["test.yaml"], {"results_dir": "res", "figures_dir": "fig"})
    return cfg, run_specs(cfg)


def test_a_changed_parameter_is_named_with_the_run(tmp_path, small_config):
    cfg, specs = small_config
    tammes = next(p for p in specs if "/tammes/runs/" in p and "/mhe_riesz_chordal/" in p)
    lm = next(p for p in specs if "/text/lm/runs/" in p)
    for rel in (tammes, lm):
        _write_run(tmp_path, rel, specs[rel])
    assert committed_run_mismatches([tammes, lm], {"test.yaml": cfg}, basedir=str(tmp_path)) == []

    changed = deep_merge(cfg, {"methods": {"mhe_riesz_chordal": {"params": {"s": 2.0}}},
                               "text": {"lm": {"train": {"lambda": 3.0}}}})
    bad = committed_run_mismatches([tammes, lm], {"test.yaml": changed}, basedir=str(tmp_path))
    assert len(bad) == 2
    assert bad[0].startswith(tammes + " (config/test.yaml): params.s: summary 1.0, config 2.0")
    assert bad[1].startswith(lm) and "train.lambda: summary 10.0, config 3.0" in bad[1]


def test_a_run_no_config_produces_is_named(tmp_path, small_config):
    cfg, specs = small_config
    rel = next(p for p in specs if "/tammes/runs/" in p)
    orphan = rel.replace("seed42", "seed7")
    _write_run(tmp_path, orphan, specs[rel])
    bad = committed_run_mismatches([orphan], {"test.yaml": cfg}, basedir=str(tmp_path))
    assert bad and bad[0].startswith(orphan) and "no config produces this run" in bad[0]


def test_summaries_outside_the_workflow_run_layout_are_not_runs(tmp_path, small_config):
    cfg, _ = small_config
    _write_run(tmp_path, "res/image/cpu_check/mma/summary.json", {"anything": 1})
    _write_run(tmp_path, "elsewhere/runs/x/summary.json", {"anything": 1})
    assert committed_run_mismatches(["res/image/cpu_check/mma/summary.json", "elsewhere/runs/x/summary.json"],
                                    {"test.yaml": cfg}, basedir=str(tmp_path)) == []


def test_spec_differences():
    assert spec_differences({"a": 1, "p": {"g": 1}, "device": "cpu"}, {"a": 1.0, "p": {"g": 1}, "device": "auto"}) == []
    assert spec_differences({"p": {"g": 1.0}, "x": 1}, {"p": {"g": 0.5}, "y": 2}) == [
        "p.g: summary 1.0, config 0.5",
        "x: summary 1, not in the config's spec",
        "y: not in the summary, config 2",
    ]
