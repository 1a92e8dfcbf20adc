"""The translation experiment end to end on a tiny slice of the real Multi30k (the local copy):
the tokenised corpus, runs of the spherical table with and without Sliced, the Euclidean
baseline and a λ-sweep point (dispersion.experiments.nmt), the report, and the command line."""

import json
import math
from pathlib import Path

import pytest
import torch

from dispersion.data.multi30k import prepare_corpus
from dispersion.experiments import nmt
from dispersion.pipeline import nmt as P

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"
pytestmark = [pytest.mark.skipif(not SHARED.is_dir(), reason="no local copy of Multi30k at ../shared/data/multi30k"),
              pytest.mark.usefixtures("one_thread")]


def tiny_config() -> dict:
    return {
        "results_dir": "r", "figures_dir": "f", "device": "cpu",
        "methods": {"sliced": {"method": "sliced", "label": "Sliced", "params": {"n_slices": 1}}},
        "nmt": {"seeds": [3], "data": {"path": str(SHARED), "max_train": 300, "max_val": 40, "max_test": 30},
                "vocab": {"size": 400}, "methods": ["euclidean", "none", "sliced"],
                "lambda_sweep": {"method": "sliced", "lambdas": [1.0, 10.0]},
                "model": {"dim": 16, "n_encoder_layers": 1, "n_decoder_layers": 1, "n_heads": 2, "ff_dim": 32,
                          "max_len": 64, "dropout": 0.0},
                "train": {"epochs": 2, "batch_size": 100, "warmup": 1, "log_every": 1, "eval_every": 2, "amp": False},
                "decode": {"max_len_a": 1.0, "max_len_b": 5, "batch_size": 16}},
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("nmt") / "corpus.pt"
    info = prepare_corpus(P.corpus_spec(tiny_config()), out)
    assert info["n_pairs"] == {"train": 300, "val": 40, "test": 30} and info["md5_as_reference"]
    return out


def test_runs_write_bleu_chrf_signature_and_the_geometry_of_every_row_group(corpus, tmp_path):
    from dispersion.report import nmt as R

    cfg = tiny_config()
    P.check(cfg)
    rec = torch.load(corpus, weights_only=False)
    summaries = []
    for r in P.nmt_runs(cfg):
        out = tmp_path / r["method"]
        s = nmt.run({**P.nmt_spec(cfg, r["method"]), "seed": r["seed"], "corpus": str(corpus)}, out, progress=False)
        f = s["final"]
        assert 0 <= f["bleu"] <= 100 and 0 <= f["chrf"] <= 100 and f["decoding"] == "greedy"
        assert f["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a") and "chrf_signature" in f
        assert math.isfinite(f["val_loss"]) and f["test_sentences"] == 30 and f["steps"] == 6
        # the row groups: rare = 1..4 occurrences in the training text, never seen = 0; specials in neither
        counts = rec["counts"]
        assert f["n_rows_rare"] == int(((counts[4:] >= 1) & (counts[4:] < 5)).sum())
        assert f["n_rows_unseen"] == int((counts[4:] == 0).sum())
        for suffix in ("", "_rare", "_unseen"):
            assert f[f"min_angle_clamped{suffix}"] >= f[f"min_angle{suffix}"] - 1e-12
            assert 0 <= f[f"circular_variance{suffix}"] <= 1
        if r["method"] != "euclidean":
            assert f["max_row_norm_error"] < 1e-4 and f["logit_scale"] > 0
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        evals = [row for row in rows if "min_angle" in row]
        assert [row["step"] for row in evals] == [0, 2, 4, 6]  # every eval_every steps, from the start
        assert all("min_angle_unseen" in row and "val_loss" in row for row in evals)
        assert evals[-1]["bleu"] == f["bleu"] and len(s["examples"]) == 5
        summaries.append(out / "summary.json")
    sliced = json.loads((tmp_path / "sliced" / "summary.json").read_text())
    assert sliced["config"]["train"]["lambda"] == 10.0 and sliced["config"]["regularizer"] == "sliced"
    lam1 = json.loads((tmp_path / "sliced_lambda1" / "summary.json").read_text())
    assert lam1["config"]["train"]["lambda"] == 1.0
    # a sweep point differs from the grid's run only by λ: the regularizer's pull moves the table
    assert lam1["final"]["min_angle"] != sliced["final"]["min_angle"]

    paths = R.report(summaries, csv_path=tmp_path / "res" / "nmt_runs.csv", tables_dir=tmp_path / "tables",
                     figures_dir=tmp_path / "figs")
    assert all(Path(p).exists() for p in paths) and len(paths) == 9
    md = (tmp_path / "tables" / "nmt.md").read_text()
    for text in ("Euclidean (unnormalised)", "Spherical, no regularizer", "Sliced, λ = 1", "BLEU", "chrF",
                 "min angle, never-seen rows (rad)", "authors' min angle", "sacreBLEU BLEU nrefs:1", "device: cpu"):
        assert text in md, text
    lam = (tmp_path / "tables" / "nmt_lambda.md").read_text()
    assert "Sliced at λ = 1, 10" in lam
    tex = (tmp_path / "tables" / "nmt.tex").read_text()
    assert "\\toprule" in tex and "\\textbar{}" in tex


def test_a_bad_spec_fails_before_any_work(corpus, tmp_path):
    cfg = tiny_config()
    spec = {**P.nmt_spec(cfg, "sliced"), "seed": 0, "corpus": str(corpus)}
    spec["train"] = {**spec["train"], "epoch": 3}
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        nmt.run(spec, tmp_path / "bad")
    spec = {**P.nmt_spec(cfg, "euclidean"), "regularizer": "sliced", "seed": 0, "corpus": str(corpus)}
    with pytest.raises(ValueError, match="euclidean baseline takes no regularizer"):
        nmt.run(spec, tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="nmt-corpus"):
        nmt.run({**P.nmt_spec(cfg, "none"), "seed": 0, "corpus": str(tmp_path / "missing.pt")}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_command_line_reports_a_missing_corpus_in_one_line(tmp_path, capsys):
    from dispersion.cli import main

    spec = json.dumps(P.nmt_spec(tiny_config(), "none"))
    with pytest.raises(SystemExit) as e:
        main(["nmt-run", "--spec", spec, "--corpus", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"),
              "--seed", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nmt-run: error: spec key 'corpus'" in err[0]
