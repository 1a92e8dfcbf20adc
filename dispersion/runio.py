"""Run records and atomic file output.

Every experiment run writes two files into its own directory:

* ``metrics.jsonl`` — one JSON object per logged step or epoch;
* ``summary.json`` — the resolved config, seed, package versions, device, wall time and the
  final metrics.

Both are written atomically (a temporary file in the same directory, then :func:`os.replace`),
so an interrupted run never leaves a half-written result that Snakemake would mistake for a
finished one. This module imports only the standard library and torch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "seed_everything",
    "resolve_device",
    "package_versions",
    "RunRecorder",
    "to_jsonable",
]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to ``path`` and move it onto ``path`` only on success.

    Use as ``with atomic_write(p) as f: f.write(...)``. If the block raises, the temporary
    file is removed and ``path`` is left untouched. Parent directories are created.
    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save(path: str | os.PathLike, save: Callable[[str], None]) -> None:
    """Call ``save(tmp_path)`` (e.g. ``fig.savefig``, ``torch.save``) and rename onto ``path``.

    The temporary name keeps the suffix of ``path`` so that writers that infer the format
    from the suffix (matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path) as f:
        f.write(text)


def to_jsonable(obj: Any) -> Any:
    """Convert tensors, numpy scalars, paths and non-finite floats into JSON-safe values.

    Non-finite floats become ``None`` (strict JSON has no NaN/inf).
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, (str, bytes)):
        with contextlib.suppress(Exception):
            obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def seed_everything(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Seed Python, torch (CPU and CUDA) and return a fresh ``torch.Generator`` on ``device``.

    The one seeding helper of the project: experiments call it once with the ``seed``
    wildcard and pass the returned generator to every random draw they make.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Map ``"auto"``/``None`` to CUDA when available (else CPU); validate anything else.

    Raises ``ValueError`` if ``"cuda"`` is requested and no CUDA device is visible.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but no CUDA device is available")
    return dev


_VERSIONED = ("torch", "geoopt", "pot", "numpy", "power-spherical", "transformers", "torchvision")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on (missing ones omitted)."""
    out = {"python": platform.python_version()}
    for name in ("dispersion", *_VERSIONED):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def device_description(device: torch.device) -> str:
    """Human-readable device name, e.g. ``"cuda: NVIDIA H100 80GB HBM3"`` or ``"cpu (2 threads)"``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


class RunRecorder:
    """Collect per-step metrics of one run and write ``metrics.jsonl`` + ``summary.json``.

    Nothing is written until :meth:`finish`, which writes both files atomically (metrics
    first, summary last, so the presence of ``summary.json`` marks a complete run).

    Parameters
    ----------
    out_dir : path
        The run directory (created).
    config : dict
        The resolved configuration of the run (stored verbatim in the summary).
    seed : int
    device : torch.device
    """

    def __init__(self, out_dir: str | os.PathLike, config: dict, seed: int, device: torch.device):
        self.out_dir = Path(out_dir)
        self.config = config
        self.seed = seed
        self.device = torch.device(device)
        self.rows: list[dict] = []
        self._t0 = time.perf_counter()

    def log(self, **row: Any) -> None:
        """Append one record (e.g. ``step=10, min_angle=0.3``)."""
        self.rows.append(to_jsonable(row))

    def finish(self, **summary: Any) -> dict:
        """Write both files; ``summary`` holds the final metrics. Returns the summary dict."""
        wall = time.perf_counter() - self._t0
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in self.rows)
        atomic_write_text(self.out_dir / "metrics.jsonl", text)
        record = {
            "config": self.config,
            "seed": self.seed,
            "device": str(self.device),
            "device_name": device_description(self.device),
            "versions": package_versions(),
            "wall_time_s": wall,
            **summary,
        }
        atomic_write_json(self.out_dir / "summary.json", record)
        return to_jsonable(record)
