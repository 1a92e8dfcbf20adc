"""Run records and atomic file output.

Every experiment run writes two files into its own directory:

* ``metrics.jsonl`` — one JSON object per logged step or epoch;
* ``summary.json`` — the resolved config, seed, package versions, device, wall time, the
  machine's load average at the start and the end of the run, and the final metrics.

Both are written atomically (a temporary file in the same directory, then :func:`os.replace`),
so an interrupted run never leaves a half-written result that Snakemake would mistake for a
finished one. Files are created with the permissions the process's umask gives (as ``open``
would), not the owner-only mode of :func:`tempfile.mkstemp`. A command that writes several
files writes them as a set (:func:`output_set`): all of them or none. A run checks that it can
write its directory (:func:`check_writable_dir`) or file (:func:`check_writable_file`) before
it computes. A folder on the way that is an existing file is reported as such
(``NotADirectoryError``: "x is a file, not a folder"), not as mkdir's bare "File exists".
This module imports only the standard library and torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import math
import numbers
import os
import platform
import random
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

__all__ = [
    "output_set",
    "check_writable_dir",
    "check_writable_file",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "seed_everything",
    "resolve_device",
    "package_versions",
    "RunRecorder",
    "to_jsonable",
]


#: The output set being collected (see :func:`output_set`): a list of (temporary, final) paths.
_PENDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("dispersion_output_set", default=None)


def _umask_mode() -> int:
    """0o666 minus the process umask: the mode ``open(path, "w")`` would give a new file."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (not Linux): read the umask by setting it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _write_error(e: OSError, path: Path) -> OSError:
    """The same ``OSError`` type and errno, naming the final ``path`` instead of a temporary."""
    return type(e)(e.errno, f"cannot write {path}: {e.strerror or e}") if e.errno else e


def _make_dirs(folder: Path) -> None:
    """``folder.mkdir(parents=True, exist_ok=True)``; where ``folder`` or a parent is an existing
    file, ``NotADirectoryError`` naming that file (mkdir's "File exists" names neither)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        for f in (folder, *folder.parents):
            if f.exists() and not f.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"{f} is a file, not a folder") from None
        raise


def _finish(tmp: str, path: Path) -> None:
    """Give ``tmp`` the umask's permissions and move it onto ``path`` — now, or when the
    enclosing :func:`output_set` commits."""
    os.chmod(tmp, _umask_mode())
    pending = _PENDING.get()
    if pending is None:
        os.replace(tmp, path)
    else:
        pending.append((tmp, path))


@contextlib.contextmanager
def output_set() -> Iterator[None]:
    """Write several files as one set: all of them, or none.

    Inside ``with output_set():`` the atomic writers of this module (:func:`atomic_write`,
    :func:`atomic_save`, :func:`atomic_write_text`, :func:`atomic_write_json`) write their
    temporary files but do not move them into place; on a clean exit every file is moved in
    (old versions are kept as hard links until all moves succeeded, and restored if one
    fails); if the block raises, the temporary files are removed and every old file is left
    untouched. Nested sets join the outermost one. Do not read a file of the set back inside
    the block: it is not in place yet.
    """
    if _PENDING.get() is not None:
        yield
        return
    pending: list[tuple[str, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    finally:
        _PENDING.reset(token)
    _commit(pending)


def _commit(pending: list[tuple[str, Path]]) -> None:
    """Move every (temporary, final) pair into place, all or none."""
    backups: dict[Path, str] = {}
    done: list[Path] = []
    try:
        for _, path in pending:  # keep the old versions until every new one is in place
            if path.exists() and path not in backups:
                fd, bak = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
                os.close(fd)
                os.unlink(bak)
                try:
                    os.link(path, bak)
                except OSError:  # no hard links here: a copy does the same job
                    shutil.copy2(path, bak)
                backups[path] = bak
        for tmp, path in pending:
            os.replace(tmp, path)
            done.append(path)
    except BaseException:
        for path in done:
            with contextlib.suppress(OSError):
                if path in backups:
                    os.replace(backups.pop(path), path)
                else:
                    os.unlink(path)
        for tmp, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    finally:
        for bak in backups.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(bak)


def _probe_dir(path: Path) -> None:
    """Create the folder ``path`` (and its parents) and a file in it, and remove that file."""
    _make_dirs(path)
    fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
    os.close(fd)
    os.unlink(probe)


def check_writable_dir(path: str | os.PathLike, name: str = "output directory") -> Path:
    """Create the directory ``path`` (and its parents) and check that a file can be created in
    it, so that a run fails before it computes rather than after. Returns the path.

    Raises ``PermissionError``/``NotADirectoryError``/``OSError`` with a message naming the
    directory (e.g. a read-only file system; ``path`` or a parent that is a regular file).
    """
    path = Path(path)
    try:
        _probe_dir(path)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write the {name} {path}: {e.strerror or e}") from None
    return path


def check_writable_file(path: str | os.PathLike, name: str = "output file") -> Path:
    """Check that the file ``path`` can be written, before a run computes it: its folder is
    created and a file can be made there (as :func:`check_writable_dir` does), and ``path`` is
    not a folder. Nothing is written to ``path``. Returns the path. Raises
    ``IsADirectoryError``/``NotADirectoryError``/``PermissionError``/``OSError`` naming it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot write the {name} {path}: it is a folder")
    try:
        _probe_dir(path.parent)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write the {name} {path}: {e.strerror or e}") from None
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to ``path`` and move it onto ``path`` only on success.

    Use as ``with atomic_write(p) as f: f.write(...)``. If the block raises, the temporary
    file is removed and ``path`` is left untouched. Parent directories are created. The file
    gets the umask's permissions. Inside :func:`output_set` the move waits for the set.
    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary). An ``OSError`` (e.g. a full disk) names
    ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    try:
        _make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(e, path) from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _finish(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and str(path) not in str(e):
            raise _write_error(e, path) from None
        raise


def atomic_save(path: str | os.PathLike, save: Callable[[str], None]) -> None:
    """Call ``save(tmp_path)`` (e.g. ``fig.savefig``, ``torch.save``) and rename onto ``path``.

    The temporary name keeps the suffix of ``path`` so that writers that infer the format
    from the suffix (matplotlib) still work. The file gets the umask's permissions; inside
    :func:`output_set` the rename waits for the set. An ``OSError`` names ``path``.
    """
    path = Path(path)
    try:
        _make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as e:
        raise _write_error(e, path) from None
    os.close(fd)
    try:
        save(tmp)
        _finish(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and str(path) not in str(e):
            raise _write_error(e, path) from None
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
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
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

    Raises ``ValueError`` naming ``device`` for a string torch does not know (``"gpu"``), for
    ``"cuda"`` when no CUDA device is visible, and for ``"cuda:N"`` beyond the visible devices;
    ``TypeError`` for anything but a string, a ``torch.device`` or None.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


_VERSIONED = ("torch", "geoopt", "pot", "numpy", "power-spherical", "transformers", "torchvision")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on (missing ones omitted).

    ``"dispersion"`` is this package's own version, ``dispersion.__version__`` (also the version of
    its distribution ``hypersphere-dispersion``), recorded under the import name as before the
    distribution was renamed.
    """
    from . import __version__

    out = {"python": platform.python_version(), "dispersion": __version__}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _load_average() -> float | None:
    """The machine's 1-minute load average (``os.getloadavg``), or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def device_description(device: torch.device) -> str:
    """Human-readable device name, e.g. ``"cuda: NVIDIA H100 80GB HBM3"`` or ``"cpu (2 threads)"``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


class RunRecorder:
    """Collect per-step metrics of one run and write ``metrics.jsonl`` + ``summary.json``.

    The constructor creates ``out_dir`` and checks that it is writable (so that a run fails
    before it computes); nothing is written until :meth:`finish`, which writes both files as
    one :func:`output_set` — both or neither, so the presence of ``summary.json`` marks a
    complete run.

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
        self.out_dir = check_writable_dir(out_dir, "run directory")
        self.config = config
        self.seed = seed
        self.device = torch.device(device)
        self.rows: list[dict] = []
        self._load_start = _load_average()
        self._t0 = time.perf_counter()

    def log(self, **row: Any) -> None:
        """Append one record (e.g. ``step=10, min_angle=0.3``)."""
        self.rows.append(to_jsonable(row))

    def finish(self, **summary: Any) -> dict:
        """Write both files; ``summary`` holds the final metrics. Returns the summary dict."""
        wall = time.perf_counter() - self._t0
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in self.rows)
        record = {
            "config": self.config,
            "seed": self.seed,
            "device": str(self.device),
            "device_name": device_description(self.device),
            "versions": package_versions(),
            "wall_time_s": wall,
            # 1-minute load average of the machine at the start and the end of the run: on a
            # shared machine, wall times are comparable only at similar loads
            "load_average": {"start": self._load_start, "end": _load_average()},
            **summary,
        }
        with output_set():  # both files or neither
            atomic_write_text(self.out_dir / "metrics.jsonl", text)
            atomic_write_json(self.out_dir / "summary.json", record)
        return to_jsonable(record)
