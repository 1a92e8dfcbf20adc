"""Issue 13 part 4: the audit experiment — spec building from the configs, config checks, one
audit run and one post-hoc run on a small real table, outputs written as a set, the tables and
the trade-off figure, and clear errors for a bad spec."""

import json
from pathlib import Path

import numpy as np
import pytest

from dispersion.experiments import audit as exp


@pytest.fixture(scope="module")
def word_vectors(tmp_path_factory):
    """A GloVe-format text file of 120 real vectors: scikit-learn's handwritten digits (8 x 8
    images, 64-d), one "word" per image."""
    from sklearn.datasets import load_digits

    X = load_digits().data[:120].astype(np.float32) + 0.5  # no all-zero row
    path = tmp_path_factory.mktemp("vectors") / "digits.txt"
    path.write_text("".join(f"d{i} " + " ".join(f"{v:g}" for v in row) + "\n" for i, row in enumerate(X)))
    return path


def _audit_spec(path, **over):
    return {"kind": "audit", "table": "digits", "label": "digits", "source": {"type": "glove", "path": str(path),
            "max_rows": 100}, "path": None, "reference_draws": 2, "seed": 0, "k": 5, "tsne_points": 50,
            "pairwise": "auto", "pair_samples": 1000, **over}


def test_audit_run_writes_its_set_and_the_table(word_vectors, tmp_path):
    from dispersion.report.audit import audit_table

    spec = _audit_spec(word_vectors)
    s = exp.run(spec, tmp_path / "run", figures=tmp_path / "fig" / "audit_digits_")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["audit.md", "metrics.jsonl", "summary.json"]
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == sorted(
        f"audit_digits_{f}.{e}" for f in ("nn_angles", "pca", "tsne") for e in ("pdf", "png"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"] == json.loads(json.dumps(spec)) and summary == json.loads(json.dumps(s))
    f = summary["final"]
    assert f["n"] == 100 and f["d"] == 64 and len(f["reference"]["min_angle_deg"]["values"]) == 2
    assert 0 < f["stats"]["min_angle_deg"] < f["stats"]["mean_nn_angle_deg"] < f["closed_form"]["mean_nn_angle_deg"]
    df = audit_table(tmp_path / "run" / "summary.json", tmp_path / "t.md", tmp_path / "t.tex", scale="paper")
    md = (tmp_path / "t.md").read_text()
    assert "Scale: paper; device: cpu" in md and "N = 100, d = 64" in md and "mean NN angle (°)" in md
    assert "\\toprule" in (tmp_path / "t.tex").read_text() and (tmp_path / "t.tex").read_text().isascii()
    assert df.loc[df["statistic"] == "min angle (°)", "table"].item() == f"{f['stats']['min_angle_deg']:.2f}"


def test_a_failed_audit_run_writes_nothing(word_vectors, tmp_path, monkeypatch):
    from dispersion.embedding_audit import AuditReport

    def boom(self, *a, **k):
        raise RuntimeError("t-SNE failed")

    monkeypatch.setattr(AuditReport, "plot_tsne", boom)
    with pytest.raises(RuntimeError, match="t-SNE failed"):
        exp.run(_audit_spec(word_vectors), tmp_path / "run", figures=tmp_path / "fig" / "a_")
    assert list((tmp_path / "run").iterdir()) == []
    assert not (tmp_path / "fig").exists() or list((tmp_path / "fig").iterdir()) == []


def test_posthoc_runs_and_report(word_vectors, tmp_path):
    from dispersion.report.audit import posthoc_report

    base = {"kind": "posthoc", "table": "digits", "label": "digits", "source": {"type": "glove", "path": str(word_vectors)},
            "path": None, "max_rows": 80, "variant": "uniformity", "method": "uniformity", "method_label": "Uniformity",
            "params": {"t": 2.0}, "k": 5, "steps": 6, "lr": 0.05, "batch_size": None, "optimizer": "riemannian_adam",
            "log_every": 3, "seed": 0}
    paths = []
    for fid, w in (("none", 0.0), ("knn_margin", 1.0)):
        out = tmp_path / fid
        s = exp.run({**base, "fidelity": fid, "weight": w, "margin": 0.05 if w else None}, out)
        assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [0, 3, 6]
        assert s["n"] == 80 and s["final"]["recall@5"] <= 1 and s["final"]["step"] == 6
        assert s["uniform"]["mean_nn_angle_deg_closed_form"] > s["start"]["mean_nn_angle_deg"]
        paths.append(out / "summary.json")
    out = posthoc_report(paths, runs_csv=tmp_path / "r.csv", md=tmp_path / "p.md", tex=tmp_path / "p.tex",
                         figure=tmp_path / "tradeoff", scale="quick")
    assert all(Path(p).exists() for p in out) and (tmp_path / "tradeoff.png").stat().st_size > 1000
    md = (tmp_path / "p.md").read_text()
    assert "Scale: quick; device: cpu" in md and "knn_margin (1)" in md and "i.i.d. uniform (reference)" in md


@pytest.mark.parametrize("over,message", [
    ({"kind": "audits"}, "spec key 'kind' must be one of ['audit', 'posthoc']"),
    ({"refrence_draws": 3}, "spec key 'refrence_draws' is not known; did you mean 'reference_draws'?"),
    ({"reference_draws": 0}, "spec key 'reference_draws' must be an integer >= 1"),
    ({"source": {"type": "glove", "max_rows": 1}}, "spec.source key 'max_rows' must be an integer >= 2"),
    ({"source": {"type": "bert"}}, "'type' must be one of ['minilm', 'glove', 'lm']"),
    ({"source": {"type": "lm", "method": "none", "seed": 0}}, "spec key 'path': a lm table is read from a file"),
])
def test_bad_spec_names_the_key(word_vectors, tmp_path, over, message):
    with pytest.raises(ValueError) as e:
        exp.run(_audit_spec(word_vectors, **over), tmp_path / "run")
    assert message in str(e.value)
    assert not (tmp_path / "run").exists()


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    from dispersion.cli import main

    with pytest.raises(SystemExit) as e:
        main(["audit-run", "--spec", '{"kind": "posthoc"}', "--out", str(tmp_path / "run")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "audit-run: error: spec is missing" in err
    with pytest.raises(SystemExit) as e:
        main(["audit-run", "--spec", "{not json", "--out", str(tmp_path / "run")])
    assert e.value.code == 2 and "argument --spec: not valid JSON" in capsys.readouterr().err


def test_missing_table_file_is_named(tmp_path):
    spec = {**_audit_spec("x"), "source": {"type": "lm", "method": "none", "seed": 0}, "path": str(tmp_path / "e.pt")}
    with pytest.raises(FileNotFoundError, match=r"e\.pt does not exist \(run the text LM first\)"):
        exp.run(spec, tmp_path / "run")


def test_load_glove_folder_layout(tmp_path):
    import pandas as pd

    from dispersion.data.tables import load_glove

    X = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    np.save(tmp_path / "glove_6B_50d_emb.npy", X)
    pd.DataFrame({"index": ["the", ",", ".", "of"]}).to_parquet(tmp_path / "glove_6B_index.parquet")
    t = load_glove(tmp_path, max_rows=3)
    assert t.names == ["the", ",", "."] and np.array_equal(t.X, X[:3])
    with pytest.raises(ValueError, match="max_rows must be an int >= 2"):
        load_glove(tmp_path, max_rows=1)
    with pytest.raises(FileNotFoundError, match="glove_6B_index.parquet does not exist"):
        (tmp_path / "glove_6B_index.parquet").unlink()
        load_glove(tmp_path)
