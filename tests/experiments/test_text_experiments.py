"""The text experiments end to end on tiny real data: frozen features, the classification runs
(dispersion.experiments.text_classify), the tokenised corpus, the LM runs
(dispersion.experiments.text_lm) and the report."""

import json
import math

import pytest
import torch

from conftest import needs_minilm, needs_scattertext, text_config
from dispersion.data.text_inputs import build_corpus, compute_features
from dispersion.experiments import text_classify, text_lm
from dispersion.pipeline import text as P
from dispersion.pipeline.text import check as check_config


@needs_minilm
@needs_scattertext
def test_classify_and_lm_runs_and_report(encoder, tmp_path):
    from dispersion.report import text as R

    cfg = text_config()
    check_config(cfg)
    feats = tmp_path / "rt.pt"
    info = compute_features(P.features_spec(cfg, "rotten_tomatoes"), feats, progress=False, encoder=encoder)
    assert info["label_names"] == ["fresh", "rotten"]
    saved = torch.load(feats, weights_only=False)
    assert saved["train"].shape == (60, 384) and saved["test"].shape == (30, 384)
    cls = []
    for r in P.classify_runs(cfg):
        out = tmp_path / "cls" / r["method"]
        spec = {**P.classify_spec(cfg, r["dataset"], r["dim"], r["method"]), "seed": r["seed"]}
        s = text_classify.run(spec, out, features=feats, progress=False)
        assert 0 <= s["final"]["test_accuracy"] <= 1
        assert (out / "metrics.jsonl").is_file()
        cls.append(out / "summary.json")
    # two prototypes on S^3 placed by Sliced end up (nearly) antipodal
    assert json.loads(cls[1].read_text())["final"]["min_angle_deg"] > 150

    corpus = tmp_path / "corpus.pt"
    c = build_corpus(P.corpus_spec(cfg), corpus)
    assert c["vocab_size"] == 300 and c["unigram_perplexity"] > 1
    lms = []
    for r in P.lm_runs(cfg):
        out = tmp_path / "lm" / r["method"]
        spec = {**P.lm_spec(cfg, r["method"]), "seed": r["seed"], "corpus": str(corpus)}
        s = text_lm.run(spec, out, progress=False)["final"]
        assert math.isfinite(s["test_perplexity"]) and 0 <= s["circular_variance"] <= 1
        if r["method"] != "euclidean":
            assert s["max_row_norm_error"] < 1e-4
        if r["method"] == "lloyd":
            # uniform samples are ~0.9 rad from their nearest of 300 rows in d = 16; samples that
            # share the initialisation's random stream coincide with rows of E (error ~0)
            first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
            assert first["regularizer"] > 0.3
        lms.append(out / "summary.json")
    # 20 extra vocabulary rows that never occur in the text: the run reports their geometry alone
    big = {**torch.load(corpus, weights_only=False), "vocab_size": c["vocab_size"] + 20}
    big["itos"] = None
    torch.save(big, tmp_path / "corpus_big.pt")
    out = tmp_path / "lm" / "none_big"
    spec = {**P.lm_spec(cfg, "none"), "seed": 0, "corpus": str(tmp_path / "corpus_big.pt")}
    f = text_lm.run(spec, out, progress=False)["final"]
    unseen = torch.bincount(big["train_ids"], minlength=big["vocab_size"]) == 0
    assert f["n_unseen_rows"] == int(unseen.sum()) >= 20
    E = torch.load(out / "embedding.pt", weights_only=False)["E"].double()
    for rows, suffix in ((E[unseen], "unseen"), (E[~unseen], "seen")):  # brute force: every pair's angle
        cos = (rows @ rows.T).fill_diagonal_(-1).max(dim=1).values.clamp(-1, 1)
        assert f[f"min_angle_{suffix}"] == pytest.approx(torch.arccos(cos).min().item(), abs=1e-3)
        assert f[f"circular_variance_{suffix}"] == pytest.approx(1 - rows.mean(0).norm().item(), abs=1e-5)
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["min_angle_unseen"] == pytest.approx(f["min_angle_unseen"])
    # without the table: the same run, metrics only
    g = text_lm.run(spec, tmp_path / "lm" / "no_table", progress=False, save_embedding=False)["final"]
    assert sorted(p.name for p in (tmp_path / "lm" / "no_table").iterdir()) == ["metrics.jsonl", "summary.json"]
    assert g["test_perplexity"] == pytest.approx(f["test_perplexity"]) and g["min_angle"] == pytest.approx(f["min_angle"])
    lms.append(out / "summary.json")
    paths = R.report(cls, lms, results_dir=tmp_path / "res", tables_dir=tmp_path / "tables", figures_dir=tmp_path / "figs")
    for p in paths:
        assert (tmp_path / p).exists() or __import__("os").path.exists(p)
    md = (tmp_path / "tables" / "text_lm.md").read_text()
    assert "Unigram (add-one)" in md and "MHE RBF (d_R)" in md and "Euclidean" in md
    assert "min angle, unseen rows (rad)" in md and "Scale: output folder" in md
    assert "Majority class" in (tmp_path / "tables" / "text_classify.md").read_text()
    assert "\\toprule" in (tmp_path / "tables" / "text_classify.tex").read_text()
