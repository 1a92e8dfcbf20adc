"""The Snakemake workflow: end to end on the tiny test config (real runs, every rule), lint,
config validation, and dry runs of the paper-scale and SLURM set-ups."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=ROOT, check=True):
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wf")
    snakemake("--configfile", "config/test.yaml", "--cores", "2",
              "--config", f"results_dir={out}/results", f"figures_dir={out}/figures")
    return out


@pytest.mark.workflow
def test_tammes_outputs(workflow_run):
    res, fig = workflow_run / "results", workflow_run / "figures"
    runs = pd.read_csv(res / "tammes" / "runs.csv")
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())["tammes"]
    n_runs = len(cfg["cases"]) * len(cfg["methods"]) + len(cfg["euclidean_cases"]) * (len(cfg["methods"]) - 1)
    assert len(runs) == n_runs
    assert set(runs["optimizer"]) == {"riemannian_adam", "adam"}
    # every run recorded its device, versions and wall time; the optimised runs beat the init
    s = json.loads(next((res / "tammes" / "runs").rglob("summary.json")).read_text())
    assert {"config", "seed", "device", "versions", "wall_time_s", "final"} <= set(s)
    riem = runs[runs["optimizer"] == "riemannian_adam"]
    for case, sub in riem.groupby("case"):
        init = sub[sub["variant"] == "uniform"]["min_angle_deg"].item()
        assert (sub[sub["variant"] == "mma"]["min_angle_deg"] > init).all(), case
    table = (res / "tables" / "tammes.md").read_text()
    assert "best known" in table and "109.47" in table and "MM (d_S)" in table
    tex = (res / "tables" / "tammes.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    for stem in ("tammes_boxplot", "tammes_riemannian_vs_euclidean"):
        for ext in ("pdf", "png"):
            assert (fig / f"{stem}.{ext}").stat().st_size > 1000
    points = pd.read_csv(res / "tammes" / "nn_angles.csv")
    assert len(points) == sum(
        {c["name"]: c["n"] for c in cfg["cases"]}[r.case] for r in runs.itertuples()
    )


@pytest.mark.workflow
def test_synthetic_outputs(workflow_run):
    res, fig = workflow_run / "results", workflow_run / "figures"
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())["synthetic"]
    runs = pd.read_csv(res / "synthetic" / "main" / "runs.csv")
    assert len(runs) == 2 * (len(cfg["methods"]) + 1) * len(cfg["seeds"])
    # the compute matching of arXiv:2502.08231's synthetic experiment: L = round(B^2 / N) slices, pairwise on B rows
    n = cfg["main"]["n"]
    sliced = runs[runs["variant"] == "sliced_auto"]
    assert (sliced["resolved_params.n_slices"] == round(512**2 / n)).all()
    assert (runs[runs["variant"] == "mhe_rbf_chordal"]["batch_size_used"] == min(512, n)).all()
    curves = pd.read_csv(res / "synthetic" / "main" / "curves.csv")
    assert set(curves["step"]) == {0, 10, 20}
    for t in ("synthetic_final", "synthetic_speed", "synthetic_regimes", "synthetic_slices",
              "synthetic_fullbatch", "synthetic_optimizers"):
        assert (res / "tables" / f"{t}.md").read_text().count("|") > 10
        assert "\\toprule" in (res / "tables" / f"{t}.tex").read_text()
    for f in ("synthetic_curves", "synthetic_regimes", "synthetic_slices"):
        assert (fig / f"{f}.png").stat().st_size > 1000 and (fig / f"{f}.pdf").exists()
    fb = pd.read_csv(res / "synthetic" / "fullbatch" / "runs.csv")
    assert set(fb["batch_size_used"]) == {min(512, cfg["fullbatch"]["n"]), cfg["fullbatch"]["n"]}


@pytest.mark.workflow
def test_audit_outputs(workflow_run):
    res, fig = workflow_run / "results", workflow_run / "figures"
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())["audit"]
    for table in [*cfg["run"], *(f"lm_{m}" for m in cfg["lm_tables"])]:
        md = (res / "tables" / f"audit_{table}.md").read_text()
        assert "mean NN angle (°)" in md and "uniform, closed form" in md and "device: cpu" in md
        assert "\\toprule" in (res / "tables" / f"audit_{table}.tex").read_text()
        for f in ("nn_angles", "pca", "tsne"):
            assert (fig / f"audit_{table}_{f}.png").stat().st_size > 1000 and (fig / f"audit_{table}_{f}.pdf").exists()
    assert "10-NN label accuracy" in (res / "tables" / "audit_minilm_debates.md").read_text()
    runs = pd.read_csv(res / "audit" / "posthoc_runs.csv")
    assert len(runs) == 2 * len(cfg["posthoc"]["methods"]) and set(runs["fidelity"]) == {"none", "knn_margin"}
    assert (runs["recall"] <= 1).all() and (runs["n"] == cfg["posthoc"]["max_rows"]).all()
    assert "i.i.d. uniform (reference)" in (res / "tables" / "audit_posthoc.md").read_text()
    assert (fig / "audit_posthoc_tradeoff.png").stat().st_size > 1000


@pytest.mark.workflow
def test_image_outputs(workflow_run):
    res, fig = workflow_run / "results", workflow_run / "figures"
    runs = pd.read_csv(res / "image" / "fashion_mnist_runs.csv")
    assert len(runs) > 0 and runs["test_accuracy"].between(0, 1).all()
    # (the tiny test config trains for seconds, so accuracy is not asserted here; learning on
    # real images is tested in tests/test_training.py and measured by the quick run)
    for t in ("accuracy", "min_angle", "per_class"):
        assert (res / "tables" / f"image_fashion_mnist_{t}.md").exists()
    # the matched head ran after (and from) the softmax run of its D and seed
    matched = runs[runs["method"] == "mma_matched"]
    assert len(matched) == runs["dim"].nunique() and (matched["assignment"] == "class_means").all()
    assert (res / "image" / "runs" / "fashion_mnist" / "d2" / "softmax" / "seed0" / "class_means.pt").exists()
    for f in ("accuracy_vs_dim", "min_angle_vs_accuracy"):
        assert (fig / f"image_fashion_mnist_{f}.png").stat().st_size > 1000


@pytest.mark.workflow
def test_rerun_is_a_no_op(workflow_run):
    proc = snakemake("--configfile", "config/test.yaml", "--cores", "1", "-n",
                     "--config", f"results_dir={workflow_run}/results", f"figures_dir={workflow_run}/figures")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean():
    proc = snakemake("--lint", check=False)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_paper_scale_dry_run():
    proc = snakemake("-n", "--cores", "2", "--config", "results_dir=/tmp/dispersion-dry/results",
                     "figures_dir=/tmp/dispersion-dry/figures")
    assert "tammes_run" in proc.stdout


def test_slurm_profile_dry_run():
    proc = snakemake("-n", "--workflow-profile", "workflow/profiles/slurm", "--config",
                     "results_dir=/tmp/dispersion-dry/results", "figures_dir=/tmp/dispersion-dry/figures")
    assert "tammes_run" in proc.stdout


@pytest.mark.parametrize("override,message", [
    ("tammes={'steps': 10, 'stepz': 1}", "stepz"),
    ("tammes={'steps': 'many'}", "steps"),
    ("methods={'bad': {'method': 'mhee', 'label': 'x'}}", "mhee"),
    ("methods={'bad': {'method': 'mhe', 'label': 'x', 'params': {'gama': 1}}}", "gama"),
    ("tammes={'methods': ['nonexistent']}", "nonexistent"),
    ("device=gpu0", "device"),
    # a variant that only a sub-study runs (issue 12): its override is built at config-check time
    ("synthetic={'overrides': {'mhe_rbf_fullbatch': {'gamma': -1.0}}}", "synthetic.overrides.mhe_rbf_fullbatch"),
])
def test_bad_config_fails_before_any_job_naming_the_key(override, message):
    proc = snakemake("-n", "--cores", "1", "--config", override, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "tammes_run" not in proc.stdout


def test_snakefmt_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.workflow
def test_notebook_executes_against_the_outputs(workflow_run, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "results.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    monkeypatch.setenv("DISPERSION_RESULTS", str(workflow_run / "results"))
    monkeypatch.setenv("DISPERSION_FIGURES", str(workflow_run / "figures"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "best known" in text and "not produced yet" not in text


@pytest.mark.workflow
def test_paper_rule(workflow_run):
    from dispersion.report.paper import referenced_files

    status = (workflow_run / "results" / "paper" / "STATUS.txt").read_text()
    needed = referenced_files(ROOT / "paper" / "main.tex", workflow_run / "results", workflow_run / "figures")
    assert len(needed) >= 10 and all(p.exists() for p in needed)
    # pdflatex's utf8 input knows no Greek letters: every generated table must be plain ASCII
    for p in needed:
        if p.suffix == ".tex":
            bad = sorted({ch for ch in p.read_text(encoding="utf-8") if ord(ch) > 127})
            assert not bad, f"{p.name} has non-ASCII characters {bad}"
    import shutil

    # the prose's numbers, generated from this run's tables (a tiny config: missing methods give ---)
    numbers = (workflow_run / "results" / "paper" / "numbers.tex").read_text()
    assert "\\dsdef{tammes-steps}{" in numbers and "\\dsdef{verdict-riemannian}{" in numbers
    if shutil.which("latexmk"):
        assert status.startswith("BUILT") and (workflow_run / "results" / "paper" / "main.pdf").exists()
    else:
        assert status.startswith("SKIPPED: latexmk is not installed")


@pytest.mark.workflow
def test_interrupted_run_leaves_no_partial_output_and_resumes(tmp_path):
    import os
    import signal
    import time

    def target(root):
        return f"{root}/results/synthetic/main/runs/uniform/mhe_rbf_chordal/seed42/summary.json"

    longer = tmp_path / "longer.yaml"  # one run long enough to be interrupted
    longer.write_text("synthetic:\n  main: {n: 1000, d: 8, steps: 4000, log_every: 4000}\n")

    def args(root):  # targets go before --config, whose values would swallow them
        return [target(root), "--configfile", "config/test.yaml", str(longer), "--cores", "1", "--config",
                f"results_dir={root}/results", f"figures_dir={root}/figures"]

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*SNAKEMAKE, *args(cut)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    log = cut / "results/logs/synthetic/main/uniform_mhe_rbf_chordal_seed42.log"
    deadline = time.time() + 120
    while not log.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert log.exists(), "the job never started"
    time.sleep(3.0)  # the job is now inside its optimisation loop
    assert proc.poll() is None, "the job finished before it could be interrupted; make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = Path(target(cut)).parent
    assert not Path(target(cut)).exists()
    assert not (run_dir.exists() and list(run_dir.iterdir())), "an interrupted run left files behind"
    # resume: after a hard kill Snakemake's lock stays (--unlock, as its message says); the
    # rerun redoes the incomplete job, and the result equals an uninterrupted run
    snakemake("--unlock", *args(cut))
    snakemake("--rerun-incomplete", *args(cut))
    full = tmp_path / "full"
    snakemake(*args(full))
    a = json.loads(Path(target(cut)).read_text())["final"]
    b = json.loads(Path(target(full)).read_text())["final"]
    assert a["min_angle"] == b["min_angle"] and a["circular_variance"] == b["circular_variance"]


def test_latex_tables_are_plain_ascii():
    from dispersion.report.common import _LATEX_CHARS, _latex_escape

    assert _latex_escape("".join(_LATEX_CHARS)).isascii()
    assert _latex_escape("SSW (L = B²/N), κ = 100, λ = 10") == r"SSW (L = B$^2$/N), $\kappa$ = 100, $\lambda$ = 10"
    assert _latex_escape("a_b & 5% ± 1°") == r"a\_b \& 5\% $\pm$ 1$^\circ$"
