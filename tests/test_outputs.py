"""Issue 12 part 4: outputs are written whole or not at all, with the umask's permissions;
a run fails before it computes when it cannot write; a full disk and corrupted inputs give a
clear error naming the file and leave nothing behind."""

import contextlib
import errno
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch

from dispersion import runio
from dispersion.cli import main
from dispersion.runio import RunRecorder, atomic_save, atomic_write_text, check_writable_dir, output_set

TAMMES_SPEC = {"n": 6, "d": 3, "method": "mma", "params": {}, "optimizer": "riemannian_adam", "steps": 3,
               "lr": 0.01, "seed": 0, "device": "cpu", "case": "s2_n6", "variant": "mma", "label": "MM"}


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def run_cli(args, capsys):
    """``python -m dispersion`` in-process: (exit status, stderr)."""
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_files_get_the_umask_permissions(tmp_path, mask, mode):
    # before: every atomically written file was -rw------- (tempfile.mkstemp's 0o600)
    with umask(mask):
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_save(tmp_path / "b.pt", lambda p: torch.save(torch.zeros(1), p))
        RunRecorder(tmp_path / "run", {"a": 1}, 0, torch.device("cpu")).finish(final={})
    for p in ("a.txt", "b.pt", "run/summary.json", "run/metrics.jsonl"):
        assert (tmp_path / p).stat().st_mode & 0o777 == mode, p


# --------------------------------------------------------------------------- output sets


def test_output_set_writes_all_or_none_and_keeps_the_old_files(tmp_path):
    (tmp_path / "t.md").write_text("old md")
    (tmp_path / "t.tex").write_text("old tex")
    with pytest.raises(RuntimeError):
        with output_set():
            atomic_write_text(tmp_path / "t.md", "new md")
            atomic_write_text(tmp_path / "new.txt", "new")
            raise RuntimeError("the second file failed")
    assert (tmp_path / "t.md").read_text() == "old md" and listing(tmp_path) == ["t.md", "t.tex"]
    with output_set():
        atomic_write_text(tmp_path / "t.md", "new md")
        atomic_write_text(tmp_path / "t.tex", "new tex")
        assert (tmp_path / "t.md").read_text() == "old md"  # nothing moves before the set ends
    assert (tmp_path / "t.md").read_text() == "new md" and (tmp_path / "t.tex").read_text() == "new tex"
    assert listing(tmp_path) == ["t.md", "t.tex"]


def test_output_set_rolls_back_when_a_move_fails(tmp_path, monkeypatch):
    (tmp_path / "a").write_text("old a")
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(runio.os, "replace", flaky_replace)
    with pytest.raises(OSError):
        with output_set():
            atomic_write_text(tmp_path / "a", "new a")
            atomic_write_text(tmp_path / "b", "new b")
    monkeypatch.undo()
    assert (tmp_path / "a").read_text() == "old a" and listing(tmp_path) == ["a"]


def test_table_md_and_tex_are_written_as_a_set(tmp_path):
    from dispersion.report.common import write_table

    (tmp_path / "blocker").write_text("a file where the .tex directory should be")
    with pytest.raises(OSError):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.md", tmp_path / "blocker" / "t.tex", "cap", "tab:x")
    assert listing(tmp_path) == ["blocker"]


def _tammes_csvs(tmp_path, optimizers=("riemannian_adam",)):
    runs, points = [], []
    for opt in optimizers:
        for label in ("MM", "Sliced"):
            runs.append({"case": "s2_n4", "n": 4, "d": 3, "label": label, "variant": label, "optimizer": opt,
                         "min_angle_deg": 100.0, "best_known_angle_deg": 109.47, "best_known_name": "simplex"})
            points += [{"case": "s2_n4", "variant": label, "label": label, "optimizer": opt, "seed": 0,
                        "point": i, "nn_angle_deg": 100.0 + i} for i in range(4)]
    pd.DataFrame(runs).to_csv(tmp_path / "runs.csv", index=False)
    pd.DataFrame(points).to_csv(tmp_path / "points.csv", index=False)


def test_tammes_figures_are_written_as_a_set(tmp_path, capsys):
    # before: the box plot's .pdf and .png were left behind when the second figure failed
    _tammes_csvs(tmp_path)  # one optimizer only: the Riemannian-vs-Euclidean figure fails
    out = tmp_path / "fig"
    code, err = run_cli(["tammes-figures", "--runs-csv", str(tmp_path / "runs.csv"), "--points-csv",
                         str(tmp_path / "points.csv"), "--case", "s2_n4", "--boxplot", str(out / "box"),
                         "--optimizers", str(out / "opt")], capsys)
    assert code == 2 and "single optimizer" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or listing(out) == []


# --------------------------------------------------------------------------- before computing


def test_a_run_that_cannot_write_fails_before_it_computes(tmp_path, capsys, monkeypatch):
    from dispersion.experiments import tammes

    monkeypatch.setattr(tammes, "optimize", lambda *a, **k: pytest.fail("the run computed before failing"))
    (tmp_path / "file").write_text("")
    code, err = run_cli(["tammes-run", "--spec", json.dumps(TAMMES_SPEC), "--out", str(tmp_path / "file" / "run"),
                         "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert (f"cannot write the run directory --out {tmp_path / 'file' / 'run'}: "
            f"{tmp_path / 'file'} is a file, not a folder") in err


# --------------------------------------------------------------------------- full disk


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "256k"):
    """A tmpfs of ``size`` mounted at ``path`` (root or CAP_SYS_ADMIN needed), else skip."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True) if shutil.which("mount") else None
    if proc is None or proc.returncode != 0:
        why = "no mount command" if proc is None else (proc.stderr.strip() or f"exit {proc.returncode}")
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): {why}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` until the file system says it is full; return the filler file."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 512)
    return filler


def test_full_disk_during_a_run_and_an_aggregate(tmp_path, capsys):
    with small_tmpfs(tmp_path / "disk") as disk:
        run_dir = disk / "runs" / "mma"
        filler = fill(disk)
        code, err = run_cli(["tammes-run", "--spec", json.dumps(TAMMES_SPEC), "--out", str(run_dir), "--no-progress"],
                            capsys)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
        assert f"cannot write {run_dir}" in err and "No space left on device" in err
        assert listing(run_dir) == []  # no partial metrics.jsonl, summary.json or temporary file
        filler.unlink()
        code, _ = run_cli(["tammes-run", "--spec", json.dumps(TAMMES_SPEC), "--out", str(run_dir), "--no-progress"],
                          capsys)
        assert code == 0 and listing(run_dir) == ["metrics.jsonl", "summary.json"]
        # the aggregate: its two CSVs are a set
        shutil.copytree(run_dir, tmp_path / "run")
        filler = fill(disk)
        args = ["tammes-aggregate", "--summaries", str(tmp_path / "run" / "summary.json"),
                "--runs-csv", str(disk / "agg" / "runs.csv"), "--points-csv", str(disk / "agg" / "points.csv")]
        code, err = run_cli(args, capsys)
        assert code == 1 and "No space left on device" in err and err.count("\n") == 1
        assert listing(disk / "agg") == []
        filler.unlink()
        code, _ = run_cli(args, capsys)
        assert code == 0 and listing(disk / "agg") == ["points.csv", "runs.csv"]
        assert len(pd.read_csv(disk / "agg" / "points.csv")) == 6


def test_read_only_output_fails_before_computing(tmp_path, capsys, monkeypatch):
    from dispersion.experiments import tammes

    monkeypatch.setattr(tammes, "optimize", lambda *a, **k: pytest.fail("the run computed before failing"))
    with small_tmpfs(tmp_path / "disk") as disk:
        (disk / "runs").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True)
        code, err = run_cli(["tammes-run", "--spec", json.dumps(TAMMES_SPEC), "--out", str(disk / "runs" / "x"),
                             "--no-progress"], capsys)
        assert code == 2 and f"cannot write the run directory --out {disk / 'runs' / 'x'}: Read-only file system" in err


def test_simulated_full_disk_leaves_no_partial_run(tmp_path, capsys, monkeypatch):
    """The same without a mount: the second file's fsync fails with ENOSPC."""
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(runio.os, "fsync", fsync)
    run_dir = tmp_path / "run"
    code, err = run_cli(["tammes-run", "--spec", json.dumps(TAMMES_SPEC), "--out", str(run_dir), "--no-progress"], capsys)
    assert code == 1 and f"cannot write {run_dir / 'summary.json'}: No space left on device (--out {run_dir})" in err
    assert listing(run_dir) == []


# --------------------------------------------------------------------------- corrupted inputs


def test_corrupted_summary_and_metrics_are_named(tmp_path, capsys):
    run = tmp_path / "run"
    RunRecorder(run, {"study": "main", "cell": "uniform", "variant": "mma", "label": "MM", "n": 10, "d": 3},
                0, torch.device("cpu")).finish(final={"min_angle": 0.1, "circular_variance": 0.9})
    good = (run / "summary.json").read_text()
    (run / "summary.json").write_text(good[: len(good) // 2])  # truncated
    args = ["synthetic-aggregate", "--summaries", str(run / "summary.json"), "--runs-csv", str(tmp_path / "r.csv"),
            "--curves-csv", str(tmp_path / "c.csv")]
    code, err = run_cli(args, capsys)
    assert code == 2 and f"{run / 'summary.json'} line" in err and "is not valid JSON" in err
    (run / "summary.json").write_text("[1, 2]")
    code, err = run_cli(args, capsys)
    assert code == 2 and f"{run / 'summary.json'} is not a run summary" in err
    (run / "summary.json").write_text(good)
    (run / "metrics.jsonl").write_text('{"step": 0, "loss": null}\n{"step": 1, "lo')
    code, err = run_cli(args, capsys)
    assert code == 2 and f"{run / 'metrics.jsonl'} line 2 is not valid JSON" in err
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "c.csv").exists()
    code, err = run_cli(["tammes-aggregate", "--summaries", str(tmp_path / "missing.json"), "--runs-csv",
                         str(tmp_path / "r.csv"), "--points-csv", str(tmp_path / "p.csv")], capsys)
    assert code == 2 and f"No such file or directory: --summaries {tmp_path / 'missing.json'}" in err


def test_check_writable_dir(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert listing(tmp_path) == ["a", "a/b"]
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match=r"cannot write the output directory .*f/x: .*f is a file, not a folder"):
        check_writable_dir(tmp_path / "f" / "x")
