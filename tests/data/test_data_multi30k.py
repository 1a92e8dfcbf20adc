"""The Multi30k loader (dispersion.data.multi30k) on tiny files in the real format: plain files as
the tutorials' copies hold them (one sentence per line, one empty line at the end), the official
gzipped files, the download path served by a local HTTP server (never the network), the search
order, the joint BPE vocabulary and the tokenised corpus."""

import gzip
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

from dispersion.data import multi30k as M

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "multi30k"

EN = ["Two young, White males are outside near many bushes.", "A little girl climbing into a wooden playhouse.",
      "Several men in hard hats are operating a giant pulley system."]
DE = ["Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
      "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
      "Mehrere Männer mit Schutzhelmen bedienen ein Antriebsradsystem."]


def write_plain(folder: Path, stem: str, lang: str, lines, trailing_empty=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{stem}.{lang}"
    p.write_text("\n".join(lines) + "\n" + ("\n" if trailing_empty else ""), encoding="utf-8")
    return p


def write_gz(folder: Path, stem: str, lang: str, lines) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{stem}.{lang}.gz"
    with gzip.open(p, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return p


def tutorial_copy(folder: Path) -> Path:
    """train/val with a trailing empty line, test under the name ``test`` (the local copy's layout)."""
    for stem in ("train", "val", "test"):
        write_plain(folder, stem, "en", EN, trailing_empty=stem != "test")
        write_plain(folder, stem, "de", DE, trailing_empty=stem != "test")
    return folder


def official_gz(folder: Path) -> Path:
    for stem in ("train", "val", "test_2016_flickr"):
        write_gz(folder, stem, "en", EN)
        write_gz(folder, stem, "de", DE)
    return folder


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $DISPERSION_MULTI30K, and a working directory without default folders."""
    monkeypatch.delenv(M.MULTI30K_ENV, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_reads_the_tutorial_layout_and_drops_the_trailing_empty_line(tmp_path, no_env):
    folder = tutorial_copy(tmp_path / "m30k")
    for split in ("train", "val", "test"):
        d = M.load_multi30k(split, folder, check_size=False)
        assert d.src == EN and d.tgt == DE and d.split == split
        assert d.source == f"path:{folder}" and set(d.md5) == {f"{split}.en", f"{split}.de"}
    with pytest.raises(ValueError, match="official Multi30k split 29000"):
        M.load_multi30k("train", folder)  # 3 pairs are not the official 29 000


def test_reads_the_official_gzipped_files(tmp_path, no_env):
    folder = official_gz(tmp_path / "raw")
    d = M.load_multi30k("test", folder, check_size=False)
    assert d.src == EN and d.tgt == DE
    assert M.find_split_file(folder, "test", "de").name == "test_2016_flickr.de.gz"
    # the md5 is of the decompressed bytes
    plain = write_plain(tmp_path / "plain", "test_2016_flickr", "de", DE, trailing_empty=False)
    assert M.read_sentences(plain)[1] == d.md5["test.de"]


def test_misaligned_or_broken_files_are_errors(tmp_path, no_env):
    folder = tutorial_copy(tmp_path / "m30k")
    write_plain(folder, "val", "de", DE[:2])
    with pytest.raises(ValueError, match="aligned line by line"):
        M.load_multi30k("val", folder, check_size=False)
    write_plain(folder, "val", "de", [DE[0], "", DE[1], DE[2]])
    with pytest.raises(ValueError, match="line 2 is empty"):
        M.load_multi30k("val", folder, check_size=False)
    (folder / "val.en").write_bytes(b"\xff\xfe not utf-8\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        M.read_sentences(folder / "val.en")
    with pytest.raises(ValueError, match="split must be one of"):
        M.load_multi30k("dev", folder)


def test_a_given_folder_without_the_files_names_what_is_missing(tmp_path, no_env):
    folder = tmp_path / "partial"
    write_plain(folder, "train", "en", EN)
    with pytest.raises(FileNotFoundError, match=r"lacks the Multi30k file\(s\) \['train.de'\]"):
        M.load_multi30k("train", folder, check_size=False)


def test_search_order_env_then_default_folders_then_download(tmp_path, no_env, monkeypatch):
    env_dir = tutorial_copy(tmp_path / "env")
    monkeypatch.setenv(M.MULTI30K_ENV, str(env_dir))
    assert M.multi30k_folder(download=False)[1] == f"env:{env_dir}"
    monkeypatch.delenv(M.MULTI30K_ENV)
    with pytest.raises(FileNotFoundError, match="allow the download"):
        M.multi30k_folder(download=False)
    tutorial_copy(no_env / "data" / "multi30k")  # the default folder, relative to the working directory
    folder, source = M.multi30k_folder(download=False)
    assert source == "local:data/multi30k" and folder == Path("data/multi30k")


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server (127.0.0.1) serving a folder; yields (folder, base URL, requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            seen.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/data/task1/raw/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_download_fetches_the_official_gz_files(http_root, tmp_path, no_env):
    root, base, seen = http_root
    official_gz(root / "data" / "task1" / "raw")
    cache = tmp_path / "cache"
    d = M.load_multi30k("test", cache_dir=cache, base_url=base, check_size=False)
    assert d.src == EN and d.tgt == DE and d.source == f"download:{base} -> {cache}"
    assert sorted(p.name for p in cache.iterdir()) == ["test_2016_flickr.de.gz", "test_2016_flickr.en.gz"]
    assert sorted(seen) == ["/data/task1/raw/test_2016_flickr.de.gz", "/data/task1/raw/test_2016_flickr.en.gz"]
    # the next call finds the cache: no second download
    n = len(seen)
    assert M.load_multi30k("test", cache_dir=cache, base_url=base, check_size=False).source == f"local:{cache}"
    assert len(seen) == n


def test_a_failed_download_names_the_url_and_leaves_no_partial_file(http_root, tmp_path, no_env):
    _, base, _ = http_root  # nothing served: 404
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=r"downloading http://127\.0\.0\.1:\d+/data/task1/raw/val\.en\.gz failed"):
        M.load_multi30k("val", cache_dir=cache, base_url=base, check_size=False)
    assert not list(cache.iterdir())


def test_download_from_a_file_url(tmp_path, no_env):
    src = official_gz(tmp_path / "mirror")
    d = M.load_multi30k("train", cache_dir=tmp_path / "c", base_url=src.as_uri(), check_size=False)
    assert d.tgt == DE


def test_joint_bpe_round_trips_and_puts_the_specials_first():
    tok = M.train_joint_bpe(EN + DE, 120)
    assert [tok.token_to_id(s) for s in M.SPECIALS] == [0, 1, 2, 3]
    assert tok.get_vocab_size() <= 120
    for t in EN + DE:
        assert tok.decode(tok.encode(t).ids) == t
    with pytest.raises(ValueError, match="vocab_size"):
        M.train_joint_bpe(EN, 4)


def test_prepare_corpus_counts_the_training_occurrences(tmp_path, no_env):
    folder = tutorial_copy(tmp_path / "m30k")
    out = tmp_path / "corpus.pt"
    # check_size: the corpus reads whole official splits; a subset of 3 pairs says so
    with pytest.raises(ValueError, match="official Multi30k split"):
        M.prepare_corpus({"src": "en", "tgt": "de", "vocab_size": 120, "data": {"path": str(folder)}}, out)
    big = tmp_path / "big"
    for split, n in M.SPLIT_PAIRS.items():  # the official sizes, from the three sentences repeated
        for lang, lines in (("en", EN), ("de", DE)):
            write_plain(big, M.SPLIT_STEMS[split][0], lang, (lines * n)[:n])
    info = M.prepare_corpus({"src": "en", "tgt": "de", "vocab_size": 120, "data": {"path": str(big), "max_train": 3,
                                                                                    "max_test": 2}}, out)
    rec = torch.load(out, weights_only=False)
    assert info["n_pairs"] == {"train": 3, "val": 1014, "test": 2} and not info["md5_as_reference"]
    V = rec["vocab_size"]
    assert rec["counts"].shape == (V,) and rec["counts"][:4].sum() == 0
    flat = torch.tensor([i for side in ("train_src", "train_tgt") for ids in rec[side] for i in ids])
    assert torch.equal(rec["counts"][4:], torch.bincount(flat, minlength=V)[4:])
    assert rec["test_tgt_text"] == DE[:2]


@pytest.mark.skipif(not SHARED.is_dir(), reason="no local copy of Multi30k at ../shared/data/multi30k")
def test_the_local_copy_is_the_official_split_with_the_recorded_md5(no_env):
    for split in ("val", "test"):
        d = M.load_multi30k(split, SHARED)
        assert len(d) == M.SPLIT_PAIRS[split]
        assert all(M.LOCAL_MD5[k] == v for k, v in d.md5.items())
