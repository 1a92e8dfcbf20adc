"""Issue 12 part 3: the command line reports a user error in one line naming the option or
spec key and what was expected, with exit status 2 and no traceback; no silent coercion of a
spec; ``--help`` starts without importing torch."""

import json
import subprocess
import sys

import pytest

from dispersion.cli import main

TAMMES = {"n": 6, "d": 3, "method": "mma", "params": {}, "optimizer": "riemannian_adam", "steps": 3, "lr": 0.01,
          "seed": 0, "device": "cpu"}
SYNTHETIC = {"n": 50, "d": 4, "init": "uniform", "kappa": 10.0, "method": "mma", "params": {}, "steps": 2,
             "lr": 0.01, "optimizer": "riemannian_adam", "seed": 0, "device": "cpu"}


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.err


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a run starts optimising: every error below must come first."""
    from dispersion.experiments import synthetic, tammes

    monkeypatch.setattr(tammes, "optimize", lambda *a, **k: pytest.fail("the run computed before failing"))
    monkeypatch.setattr("dispersion.optim.optimize", lambda *a, **k: pytest.fail("the run computed before failing"))
    return synthetic


@pytest.mark.parametrize("command,base,change,expected", [
    # before: rounded / ignored / replaced by the default, exit 0
    ("tammes-run", TAMMES, {"steps": 2.7}, "spec key 'steps' must be an integer >= 1, got 2.7"),
    ("tammes-run", TAMMES, {"n": 2.9}, "spec key 'n' must be an integer >= 2, got 2.9"),
    ("tammes-run", TAMMES, {"stpes": 3}, "spec key 'stpes' is not known; did you mean 'steps'?"),
    ("tammes-run", TAMMES, {"log_every": 0}, "spec key 'log_every' must be an integer >= 1, got 0"),
    ("tammes-run", TAMMES, {"lr": -1}, "spec key 'lr' must be a finite number > 0, got -1"),
    ("synthetic-run", SYNTHETIC, {"batch_size": 0}, "spec key 'batch_size' must be an integer >= 2, got 0"),
    ("synthetic-run", SYNTHETIC, {"init": "clumpy"}, "spec key 'init' must be one of ['uniform', 'clumped'], got 'clumpy'"),
    ("synthetic-run", SYNTHETIC, {"max_time_s": -1}, "spec key 'max_time_s' must be a finite number > 0, got -1"),
    ("synthetic-run", SYNTHETIC, {"seed": True}, "spec key 'seed' must be an integer >= 0, got True"),
    # before: a traceback, exit 1
    ("tammes-run", TAMMES, {"method": "mhee"}, "unknown method 'mhee'"),
    ("tammes-run", TAMMES, {"params": {"gama": 1}}, "unknown parameter(s) ['gama'] for method 'mma'"),
    ("tammes-run", TAMMES, {"device": "gpu"}, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ("synthetic-run", SYNTHETIC, {"method": "mhe", "params": {"gamma": -1.0}}, "gamma must be > 0 and finite, got -1.0"),
])
def test_spec_errors_are_one_line_with_exit_status_2(tmp_path, capsys, no_compute, command, base, change, expected):
    code, err = run_cli([command, "--spec", json.dumps({**base, **change}), "--out", str(tmp_path / "run"),
                         "--no-progress"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"python -m dispersion {command}: error: ")
    assert expected in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_device_option_gets_our_message(tmp_path, capsys, no_compute):
    code, err = run_cli(["tammes-run", "--spec", json.dumps(TAMMES), "--out", str(tmp_path), "--device", "gpu"], capsys)
    assert code == 2 and "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'" in err and err.count("\n") == 1


@pytest.mark.parametrize("args,expected", [
    (["tammes-run", "--spec", "{not json", "--out", "x"], "argument --spec: not valid JSON"),
    (["tammes-run", "--spec", "[1]", "--out", "x"], "argument --spec: expected a JSON object"),
    (["tammes-run", "--out", "x"], "the following arguments are required: --spec"),
    (["tammes-rnu"], "invalid choice: 'tammes-rnu'"),
    (["text-lm", "--spec", "{", "--corpus", "c", "--out", "o", "--seed", "0"], "argument --spec: not valid JSON"),
])
def test_argument_errors_are_one_line(capsys, args, expected):
    code, err = run_cli(args, capsys)
    assert code == 2 and expected in err and err.count("\n") == 1


def test_no_traceback_from_a_real_process(tmp_path):
    spec = json.dumps({**TAMMES, "steps": 2.7})
    proc = subprocess.run([sys.executable, "-m", "dispersion", "tammes-run", "--spec", spec, "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == "python -m dispersion tammes-run: error: spec key 'steps' must be an integer >= 1, got 2.7\n"


def test_help_does_not_import_torch():
    # before: --help imported torch through the package __init__ and the synthetic commands (4-7 s
    # here). The audit and disperse commands (issue 13) are registered in dispersion.cli,
    # which imports only argparse.
    code = ("import sys; "
            "from dispersion.cli import build_parser; p = build_parser(); p.format_help(); "
            "[p._subparsers._group_actions[0].choices[c].format_help() for c in ('tammes-run', 'synthetic-run', "
            "'image-run', 'text-lm', 'audit', 'disperse')]; "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_every_run_command_takes_the_same_run_options_and_spec_parser(tmp_path):
    from dispersion.cli import build_parser

    p = build_parser()
    args = p.parse_args(["text-lm", "--spec", "{}", "--corpus", "c.pt", "--out", "o", "--seed", "3"])
    assert args.seed == 3 and args.spec == {} and args.func is not None
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("n: 6\nd: 3\n")
    for cmd in ("tammes-run", "synthetic-run", "text-features"):
        args = p.parse_args([cmd, "--spec", str(spec_file), "--out", "o", "--device", "cpu", "--threads", "1",
                             "--no-progress"])
        assert args.spec == {"n": 6, "d": 3} and args.device == "cpu" and args.threads == 1 and args.no_progress


def test_every_command_is_wired_to_a_function():
    """Each subcommand (and each sub-subcommand, e.g. of ``audit``) names the function it runs:
    a parser edit that drops ``set_defaults(func=...)`` would otherwise only fail when a user
    calls that command."""
    import argparse

    from dispersion.cli import build_parser

    def commands(parser, prefix=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                        yield from commands(sub, (*prefix, name))
                    else:
                        yield (*prefix, name), sub

    found = list(commands(build_parser()))
    assert len(found) >= 20  # tammes-run … audit-posthoc-report
    for name, sub in found:
        assert callable(sub.get_default("func")), f"command {' '.join(name)!r} has no function to run"


# --- the table files and output paths of audit and disperse (issue "Dispersion inside real
# training runs", part 5): a wrong file is one line naming it, with exit status 2


def _table_command(command, path, tmp_path):
    if command == "audit":
        return ["audit", str(path), "--out", str(tmp_path / "report"), "--reference-draws", "1", "--no-figures",
                "--no-progress"]
    return ["disperse", str(path), "--out", str(tmp_path / f"spread{path.suffix}"), "--method", "mma", "--steps", "2",
            "--k", "3", "--no-progress"]


BAD_TABLES = {
    # before: EOFError: No data left in file (a traceback, exit 1)
    "empty.npy": (b"", "empty.npy is empty (0 bytes); expected a .npy table"),
    # before: 'utf-8' codec can't decode byte 0xe9 in position 14: invalid continuation byte (no file named)
    "latin1.txt": (b"the 0.1 0.2 0.3\n\xe9t\xe9 0.4 0.5 0.6\n", "latin1.txt line 2: not UTF-8 text (byte 0xe9"),
}


@pytest.mark.parametrize("name", BAD_TABLES)
@pytest.mark.parametrize("command", ["audit", "disperse"])
def test_a_bad_table_file_is_one_line_naming_the_file(tmp_path, capsys, command, name):
    data, expected = BAD_TABLES[name]
    (tmp_path / name).write_bytes(data)
    code, err = run_cli(_table_command(command, tmp_path / name, tmp_path), capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"python -m dispersion {command}: error: ")
    assert expected in err
    assert not (tmp_path / "report").exists() and not list(tmp_path.glob("spread*"))


@pytest.mark.parametrize("command", ["audit", "disperse", "tammes-run"])
def test_an_out_path_blocked_by_a_file_names_the_option(tmp_path, capsys, monkeypatch, no_compute, command):
    # before (audit): "File exists: <path>", exit 1, after the whole audit was computed
    import numpy as np

    monkeypatch.setattr("dispersion.embedding_audit.audit", lambda *a, **k: pytest.fail("the audit computed first"))
    monkeypatch.setattr("dispersion.posthoc.disperse", lambda *a, **k: pytest.fail("disperse computed first"))
    np.save(tmp_path / "t.npy", np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32))
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = {"audit": blocker, "disperse": blocker / "t.npy", "tammes-run": blocker}[command]
    args = {"audit": ["audit", str(tmp_path / "t.npy")], "disperse": ["disperse", str(tmp_path / "t.npy"), "--method", "mma"],
            "tammes-run": ["tammes-run", "--spec", json.dumps(TAMMES)]}[command]
    code, err = run_cli([*args, "--out", str(out), "--no-progress"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"python -m dispersion {command}: error: ")
    assert f"--out {out}" in err and f"{blocker} is a file, not a folder" in err
    assert blocker.read_text() == "not a folder"


def test_a_pickled_pt_table_gets_our_line_only(tmp_path):
    # before: torch's 2-line UserWarning (pickle protocol 4) above our line, which quoted torch's
    # whole multi-paragraph message (with terminal escape codes)
    import pickle

    import numpy as np

    with open(tmp_path / "t.pt", "wb") as f:
        pickle.dump({"emb": np.ones((4, 3), dtype=np.float32)}, f, protocol=4)
    proc = subprocess.run([sys.executable, "-m", "dispersion", "audit", str(tmp_path / "t.pt"), "--out",
                           str(tmp_path / "r"), "--no-progress"], capture_output=True, text=True)
    err = proc.stderr
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert err.startswith("python -m dispersion audit: error: ") and f"{tmp_path / 't.pt'}: " in err
    assert "weights_only=True" in err and "\x1b" not in err and len(err) < 400
