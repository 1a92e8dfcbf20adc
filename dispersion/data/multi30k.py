"""Multi30k, task 1: the parallel image descriptions of Elliott, Frank, Sima'an & Specia,
*Multi30K: Multilingual English-German Image Descriptions* (5th Workshop on Vision and Language,
ACL 2016; arXiv:1605.00459) — the translation data of the ``nmt`` experiment — and its joint
subword vocabulary.

**The files** (the official repository github.com/multi30k/dataset, ``data/task1/raw/``): one
sentence per line, UTF-8, untokenised ("raw"), gzip-compressed there as ``<split>.<lang>.gz``:

=========  ======================  ========
split      file stem               pairs
=========  ======================  ========
``train``  ``train``               29 000
``val``    ``val``                 1 014
``test``   ``test_2016_flickr``    1 000
=========  ======================  ========

Languages ``en``, ``de`` (and ``fr``, ``cs`` for some splits). A folder may hold the files plain
or gzipped, under the official stems or with ``test`` for ``test_2016_flickr`` (the layout of the
copies used in public Transformer tutorials, which end each file with one empty line; trailing
empty lines are dropped when reading).

**Where the files are found** (:func:`multi30k_folder`), first match wins: an explicit ``path`` >
the folder in the environment variable :data:`MULTI30K_ENV` (``DISPERSION_MULTI30K``) > the
default folders :data:`DEFAULT_FOLDERS` (relative to the working directory: the download cache
``data/multi30k`` and a shared copy ``../shared/data/multi30k``) > a download of the official
gzipped files from :data:`MULTI30K_URL` into ``cache_dir`` (:func:`download_multi30k`; needs the
internet). A folder that is given but lacks a file raises ``FileNotFoundError`` naming it.

**The vocabulary** (:func:`train_joint_bpe`): one byte-pair-encoding vocabulary (Sennrich, Haddow
& Birch, ACL 2016) trained on the source and target training text together with the Hugging Face
``tokenizers`` library, words split at whitespace with SentencePiece's ``▁`` word-boundary marker
(``Metaspace``), so that decoding restores the untokenised text exactly (detokenised output for
sacreBLEU). Special tokens :data:`SPECIALS`: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2 (BOS), ``</s>``
3 (EOS). :func:`prepare_corpus` writes the tokenised splits, the vocabulary and the training
occurrence count of every row once, for every run of the experiment.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = [
    "MULTI30K_URL",
    "MULTI30K_ENV",
    "DEFAULT_FOLDERS",
    "SPLIT_STEMS",
    "SPLIT_PAIRS",
    "LOCAL_MD5",
    "SPECIALS",
    "ParallelText",
    "read_sentences",
    "find_split_file",
    "download_multi30k",
    "multi30k_folder",
    "load_multi30k",
    "train_joint_bpe",
    "prepare_corpus",
]

#: Where the official raw files live (``<stem>.<lang>.gz``).
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
#: The environment variable naming a folder with the files.
MULTI30K_ENV = "DISPERSION_MULTI30K"
#: Folders searched after the environment variable, relative to the working directory (the
#: workflow runs in the repository's root): the download cache and a shared copy beside it.
DEFAULT_FOLDERS = ("data/multi30k", "../shared/data/multi30k")
#: The official file stem of each split, then the other stems a local copy may use.
SPLIT_STEMS = {"train": ("train",), "val": ("val",), "test": ("test_2016_flickr", "test")}
#: Sentence pairs of each official split.
SPLIT_PAIRS = {"train": 29_000, "val": 1_014, "test": 1_000}
#: md5 of the plain en/de files of the copy this project was run on (the tutorials' layout:
#: ``test`` for ``test_2016_flickr``, each file followed by one empty line except the test files).
LOCAL_MD5 = {
    "train.en": "98d7547210111c030f3c7b9fe7b85a31", "train.de": "82e23ab5d2a3eb128adfe66be5c26f71",
    "val.en": "8d1837002d6e1588139f86a500489dc9", "val.de": "9dd45a16c7d7ea6192be2cfc02f38bc8",
    "test.en": "2022a6c31e2418047a0511333d55ed42", "test.de": "604725bdbf60731d37ed92957ee60a18",
}
#: The special tokens of the joint vocabulary, in id order.
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")


@dataclass(frozen=True)
class ParallelText:
    """Aligned source and target sentences of one split.

    Attributes
    ----------
    src, tgt : list of str
        N sentences each; ``src[i]`` translates to ``tgt[i]``.
    src_lang, tgt_lang : str
    split : str
        ``train``, ``val`` or ``test``.
    source : str
        Where the files came from (``path:``, ``env:``, ``local:`` or ``download:`` + folder).
    md5 : dict
        ``"<split>.<lang>"`` → md5 of the file as read (of the decompressed bytes for a ``.gz``).
    """

    src: list[str]
    tgt: list[str]
    src_lang: str
    tgt_lang: str
    split: str
    source: str
    md5: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.src) != len(self.tgt):
            raise ValueError(f"{self.split}: {len(self.src)} source but {len(self.tgt)} target sentences")

    def __len__(self) -> int:
        return len(self.src)

    def head(self, n: int | None) -> "ParallelText":
        """The first ``n`` pairs (all of them for None)."""
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1 or None, got {n!r}")
        return ParallelText(self.src[:n], self.tgt[:n], self.src_lang, self.tgt_lang, self.split, self.source, self.md5)


def _check_split_lang(split: str, lang: str) -> None:
    if split not in SPLIT_STEMS:
        raise ValueError(f"split must be one of {list(SPLIT_STEMS)}, got {split!r}")
    if not isinstance(lang, str) or not lang.isalpha() or len(lang) != 2:
        raise ValueError(f"language must be a two-letter code such as 'en' or 'de', got {lang!r}")


def read_sentences(path: str | os.PathLike) -> tuple[list[str], str]:
    """The lines of a Multi30k file (plain or ``.gz``, UTF-8) and the md5 of its (decompressed)
    bytes. Line ends (``\\n``, ``\\r\\n``) are removed and trailing empty lines dropped; an empty
    line inside the file raises ``ValueError`` (the files are aligned line by line)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None
    lines = text.split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    empty = [i + 1 for i, ln in enumerate(lines) if not ln.strip()]
    if empty:
        raise ValueError(f"{path} line {empty[0]} is empty ({len(empty)} empty line(s) inside the file): not a "
                         "one-sentence-per-line Multi30k file")
    return lines, hashlib.md5(data).hexdigest()


def find_split_file(folder: str | os.PathLike, split: str, lang: str) -> Path | None:
    """The file of ``split`` in ``lang`` under ``folder`` (:data:`SPLIT_STEMS`, plain before
    ``.gz``), or None."""
    _check_split_lang(split, lang)
    folder = Path(folder)
    for stem in SPLIT_STEMS[split]:
        for name in (f"{stem}.{lang}", f"{stem}.{lang}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _has_all(folder: Path, splits: Sequence[str], langs: Sequence[str]) -> bool:
    return folder.is_dir() and all(find_split_file(folder, s, lg) is not None for s in splits for lg in langs)


def download_multi30k(cache_dir: str | os.PathLike, splits: Sequence[str] = ("train", "val", "test"),
                      langs: Sequence[str] = ("en", "de"), *, base_url: str = MULTI30K_URL,
                      timeout: float = 60.0) -> Path:
    """Download the official gzipped files ``<stem>.<lang>.gz`` of ``splits`` × ``langs`` from
    ``base_url`` into ``cache_dir`` (created; files already there are kept) and return it.

    Each file is written atomically (never a partial file). ``base_url`` may be any URL
    ``urllib`` opens (``https://``, ``http://``, ``file://``). Raises ``OSError`` naming the URL
    when a download fails, with what to do instead.
    """
    from ..runio import atomic_write

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    for split in splits:
        for lang in langs:
            _check_split_lang(split, lang)
            if find_split_file(cache_dir, split, lang) is not None:
                continue
            name = f"{SPLIT_STEMS[split][0]}.{lang}.gz"
            url = base + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r, atomic_write(cache_dir / name, "wb") as f:
                    while block := r.read(1 << 20):
                        f.write(block)
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", None) or e
                raise OSError(f"downloading {url} failed ({reason}); give a folder holding the Multi30k files as "
                              f"path=... (config key nmt.data.path) or in ${MULTI30K_ENV}") from None
    return cache_dir


def multi30k_folder(path: str | os.PathLike | None = None, *, splits: Sequence[str] = ("train", "val", "test"),
                    langs: Sequence[str] = ("en", "de"), cache_dir: str | os.PathLike = "data/multi30k",
                    download: bool = True, base_url: str = MULTI30K_URL) -> tuple[Path, str]:
    """The folder holding the files of ``splits`` × ``langs``, and where it came from.

    Order (module docstring): ``path`` > ``$DISPERSION_MULTI30K`` > :data:`DEFAULT_FOLDERS` >
    ``cache_dir`` > a download into ``cache_dir`` (``download=True``). Returns ``(folder,
    source)``, ``source`` one of ``path:<folder>``, ``env:<folder>``, ``local:<folder>``,
    ``download:<base_url> -> <folder>``. Raises ``FileNotFoundError`` when ``path`` (or the
    environment variable) names a folder without every file, or when nothing is found and
    ``download`` is False; ``OSError`` when the download fails.
    """
    need = f"{', '.join(splits)} in {', '.join(langs)}"
    for given, kind in ((path, "path"), (os.environ.get(MULTI30K_ENV) or None, "env")):
        if given is None:
            continue
        folder = Path(given)
        if not _has_all(folder, splits, langs):
            missing = [f"{SPLIT_STEMS[s][0]}.{lg}" for s in splits for lg in langs
                       if not folder.is_dir() or find_split_file(folder, s, lg) is None]
            what = "path=" if kind == "path" else f"${MULTI30K_ENV}="
            raise FileNotFoundError(f"{what}{str(folder)!r} lacks the Multi30k file(s) {missing} (plain or .gz; "
                                    f"needed: {need})")
        return folder, f"{kind}:{folder}"
    for cand in (*DEFAULT_FOLDERS, cache_dir):
        if _has_all(Path(cand), splits, langs):
            return Path(cand), f"local:{cand}"
    if not download:
        raise FileNotFoundError(f"Multi30k ({need}) not found in {[*DEFAULT_FOLDERS, str(cache_dir)]}: give its folder "
                                f"as path=... (config key nmt.data.path) or in ${MULTI30K_ENV}, or allow the download "
                                f"from {MULTI30K_URL}")
    folder = download_multi30k(cache_dir, splits, langs, base_url=base_url)
    return folder, f"download:{base_url} -> {folder}"


def load_multi30k(split: str, path: str | os.PathLike | None = None, *, src: str = "en", tgt: str = "de",
                  cache_dir: str | os.PathLike = "data/multi30k", download: bool = True,
                  base_url: str = MULTI30K_URL, check_size: bool = True) -> ParallelText:
    """One split of Multi30k task 1 as :class:`ParallelText` (``src`` → ``tgt``).

    The folder is found by :func:`multi30k_folder` (``path``, ``cache_dir``, ``download``,
    ``base_url`` as there). ``check_size`` compares the number of pairs with the official
    split's (:data:`SPLIT_PAIRS`: ``ValueError`` otherwise; turn it off only for files that are
    a subset on purpose, such as test fixtures). Raises ``ValueError`` when the two languages'
    files differ in length.
    """
    if src == tgt:
        raise ValueError(f"src and tgt must differ, got {src!r} twice")
    folder, source = multi30k_folder(path, splits=(split,), langs=(src, tgt), cache_dir=cache_dir,
                                     download=download, base_url=base_url)
    texts, md5 = {}, {}
    for lang in (src, tgt):
        f = find_split_file(folder, split, lang)
        texts[lang], md5[f"{split}.{lang}"] = read_sentences(f)
    if len(texts[src]) != len(texts[tgt]):
        raise ValueError(f"{folder}: the {split} files hold {len(texts[src])} {src} but {len(texts[tgt])} {tgt} "
                         "sentences; they must be aligned line by line")
    if check_size and len(texts[src]) != SPLIT_PAIRS[split]:
        raise ValueError(f"{folder}: the {split} split has {len(texts[src])} pairs, the official Multi30k split "
                         f"{SPLIT_PAIRS[split]} (check_size=False for a deliberate subset)")
    return ParallelText(texts[src], texts[tgt], src, tgt, split, source, md5)


def train_joint_bpe(texts: Sequence[str], vocab_size: int, *, min_frequency: int = 0):
    """A byte-pair-encoding ``tokenizers.Tokenizer`` trained on ``texts`` (the source and target
    training sentences together: one joint vocabulary).

    ``vocab_size`` counts every row, :data:`SPECIALS` (ids 0–3) included; the trainer stops
    earlier when no pair occurs ``min_frequency`` times. Words are split at whitespace and marked
    with ``▁`` (``Metaspace``, prepended to every word), so ``decode(encode(t))`` gives ``t``
    back for any text of whitespace-separated words whose characters occur in ``texts``
    (others become ``<unk>``). Deterministic for the same texts and settings. Raises
    ``ValueError`` for a ``vocab_size`` below 8 or no texts.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 8:
        raise ValueError(f"vocab_size must be an int >= 8, got {vocab_size!r}")
    if not texts:
        raise ValueError("texts is empty: nothing to train the vocabulary on")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=int(min_frequency),
                                  special_tokens=list(SPECIALS), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:  # pragma: no cover - the trainer adds the specials first
            raise RuntimeError(f"special token {s!r} got id {tok.token_to_id(s)}, expected {i}")
    return tok


def prepare_corpus(spec: dict, out_path: str | os.PathLike) -> dict:
    """Load Multi30k, train the joint vocabulary on the training text, tokenise every split and
    write it all once to ``out_path`` (``torch.save``, atomically).

    ``spec``: ``src``, ``tgt`` (language codes), ``vocab_size``, optional ``min_frequency`` (0)
    and ``data`` {``path``, ``cache_dir``, ``download``, ``max_train``, ``max_val``, ``max_test``:
    the first that many pairs of a split; None = all}. The file holds, per split ``s`` of
    train/val/test, ``{s}_src`` / ``{s}_tgt`` (lists of token-id lists, no special tokens) and
    ``{s}_src_text`` / ``{s}_tgt_text`` (the sentences); ``tokenizer`` (the tokenizer's JSON),
    ``vocab_size``, ``pad_id``/``unk_id``/``bos_id``/``eos_id``, ``counts`` (V,) int64 — how often
    each row's token occurs in the tokenised training source and target text (0 for the special
    tokens) —, ``n_pairs``, ``source``, ``md5``, ``spec`` and ``time_s``. Returns the record
    without the token lists, texts and counts.
    """
    import torch

    from ..runio import atomic_save

    t0 = time.perf_counter()
    data = spec.get("data") or {}
    src, tgt = spec.get("src", "en"), spec.get("tgt", "de")
    splits = {}
    for split in ("train", "val", "test"):
        cache = data.get("cache_dir") or "data/multi30k"
        full = load_multi30k(split, data.get("path"), src=src, tgt=tgt, cache_dir=cache,
                             download=bool(data.get("download", True)))
        limit = data.get(f"max_{split}")
        splits[split] = full.head(int(limit) if limit else None)
    train = splits["train"]
    tok = train_joint_bpe(train.src + train.tgt, int(spec["vocab_size"]),
                          min_frequency=int(spec.get("min_frequency", 0)))
    V = tok.get_vocab_size()
    record: dict = {}
    for split, d in splits.items():
        for side, texts in (("src", d.src), ("tgt", d.tgt)):
            record[f"{split}_{side}"] = [e.ids for e in tok.encode_batch(texts)]
            record[f"{split}_{side}_text"] = list(texts)
    counts = torch.zeros(V, dtype=torch.int64)
    for side in ("src", "tgt"):
        flat = torch.tensor([i for ids in record[f"train_{side}"] for i in ids], dtype=torch.int64)
        counts += torch.bincount(flat, minlength=V)
    n_special = len(SPECIALS)
    md5 = {k: v for d in splits.values() for k, v in d.md5.items()}
    counts[:n_special] = 0  # <unk> may occur in text; the specials are not text types
    info = {
        "vocab_size": V,
        "pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3,
        "n_special": n_special,
        "tokenizer_name": f"joint BPE {src}+{tgt}, V = {V} (tokenizers, Metaspace)",
        "n_pairs": {s: len(d) for s, d in splits.items()},
        "types_in_train": int((counts > 0).sum()),
        "source": train.source,
        "md5": md5,
        # whether the files read equal the copy this project's results come from (LOCAL_MD5);
        # another release says False (a downloaded file may differ, e.g. in its last line end)
        "md5_as_reference": all(LOCAL_MD5.get(k) == v for k, v in md5.items()),
        "src_lang": src, "tgt_lang": tgt,
        "spec": spec,
    }
    record.update(info, tokenizer=tok.to_str(), counts=counts, time_s=time.perf_counter() - t0)
    atomic_save(out_path, lambda tmp: torch.save(record, tmp))
    print(f"nmt corpus: Multi30k {src}->{tgt} ({train.source}), pairs {info['n_pairs']}; joint BPE V = {V}, "
          f"{info['types_in_train']} types occur in the training text; {record['time_s']:.1f} s -> {out_path}",
          flush=True)
    return {**info, "time_s": record["time_s"]}
