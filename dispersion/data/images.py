"""Image datasets for the hyperspherical-prototype experiment (arXiv:2502.08231; Hyperspherical
Prototype Networks, Mettes et al. 2019).

Three datasets, each read from the first source that exists, in this order (docs/data.md):
an explicit path the user gives > a local copy found on the machine > the library's own
download (torchvision ``download=True``, which needs the internet).

* **Fashion-MNIST** (Xiao, Rasul & Vollgraf 2017; 60 000 train / 10 000 test, 10 classes,
  28×28 grey): the explicit ``path`` (a folder holding the four IDX files, gzipped or not, or a
  torchvision root with ``FashionMNIST/raw/``) > the Debian package ``dataset-fashion-mnist``
  (:data:`DEBIAN_FASHION_MNIST`) > torchvision's download. The files are unpacked into
  ``<cache_dir>/FashionMNIST/raw/`` (the layout torchvision's ``FashionMNIST`` reads) and their
  md5 sums checked against :data:`FASHION_MNIST_MD5` (the decompressed files' sums), then
  parsed by :func:`read_idx`.
* **CIFAR-100** (Krizhevsky 2009; 50 000 / 10 000, 100 classes, 32×32 RGB): ``cifar-100-python/``
  (the python pickle release) under ``path`` > under ``cache_dir`` > torchvision's download into
  ``cache_dir``. The pickles are read by :func:`read_cifar100` (torchvision's own class insists
  on the release's md5 sums, so it cannot read test fixtures).
* **ImageNet-200** (the 64×64, 200-class ImageNet subset prepared by the HPN authors, Mettes et
  al. 2019): only from a folder the user names, laid out as ``train/<class>/*.JPEG`` and
  ``val/<class>/*.JPEG`` (the HPN release calls the second folder ``test/``; both are accepted).
  There is no automatic download: :func:`imagenet200_dirs` raises ``FileNotFoundError`` saying
  where to put it and where it comes from.

In-memory datasets are returned as :class:`ImageSplit` (uint8 images, shape (N, C, H, W), and
int64 labels, on the CPU). Augmentation (:class:`BatchAugment`) works on whole batches already on
the training device, so that a GPU is not held back by per-image Python transforms.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..runio import atomic_write

__all__ = [
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_CLASSES",
    "DEBIAN_FASHION_MNIST",
    "NORMALIZATION",
    "IMAGENET200_URL",
    "ImageSplit",
    "prepare_fashion_mnist",
    "read_idx",
    "load_fashion_mnist",
    "read_cifar100",
    "load_cifar100",
    "imagenet200_dirs",
    "imagenet200_datasets",
    "load_image_dataset",
    "class_balanced_subset",
    "BatchAugment",
]

#: md5 sums of the *decompressed* Fashion-MNIST IDX files (as Zalando's release; docs/data.md).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

#: Where Debian's ``dataset-fashion-mnist`` package puts the gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

#: Per-channel (mean, std) of the training images scaled to [0, 1]. Fashion-MNIST: computed on
#: the 60 000 training images (checked in the tests); CIFAR-100: the values HPN uses
#: (``helper.load_cifar100``); ImageNet-200: the usual ImageNet statistics, as in HPN.
NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
    "imagenet200": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

#: Where the HPN authors publish their prepared ImageNet-200 (README of github.com/psmmettes/hpn).
IMAGENET200_URL = "http://isis-data.science.uva.nl/mettes/hpn/data/imagenet200/"


@dataclass(frozen=True)
class ImageSplit:
    """One split of an in-memory image dataset.

    Attributes
    ----------
    images : torch.Tensor
        uint8, shape (N, C, H, W), values 0..255, on the CPU.
    labels : torch.Tensor
        int64, shape (N,), values in ``0 .. len(classes) - 1``.
    classes : tuple of str
        Class names, index = label.
    source : str
        Where the data was read from (recorded in run summaries).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor of shape (N, C, H, W), got dtype "
                f"{self.images.dtype} and shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 of shape ({self.images.shape[0]},), got dtype "
                f"{self.labels.dtype} and shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor) -> "ImageSplit":
        """The rows ``index`` (int64 tensor) of this split, same classes and source."""
        return ImageSplit(self.images[index], self.labels[index], self.classes, self.source)


# --------------------------------------------------------------------------- Fashion-MNIST


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` or ``folder/FashionMNIST/raw`` (plain or ``.gz``)."""
    for d in (folder, folder / "FashionMNIST" / "raw"):
        found = {}
        for name in FASHION_MNIST_MD5:
            for cand in (d / name, d / f"{name}.gz"):
                if cand.is_file():
                    found[name] = cand
                    break
        if len(found) == len(FASHION_MNIST_MD5):
            return found
    return None


def _check_md5(path: Path, name: str) -> None:
    got = _md5(path)
    if got != FASHION_MNIST_MD5[name]:
        raise ValueError(
            f"{path} has md5 {got}, expected {FASHION_MNIST_MD5[name]} for the Fashion-MNIST "
            f"file {name}: the file is corrupt or not Fashion-MNIST (pass check_md5=False only "
            f"for test fixtures)"
        )


def _install_idx_files(files: dict[str, Path], raw: Path) -> None:
    """Copy (or gunzip) ``files`` into ``raw`` atomically; safe when jobs race on the cache."""
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        dst = raw / name
        if src.resolve() == dst.resolve():
            continue
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, atomic_write(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


def prepare_fashion_mnist(
    cache_dir: str | os.PathLike = "data",
    path: str | os.PathLike | None = None,
    *,
    check_md5: bool = True,
    download: bool = True,
    debian_dir: str | os.PathLike | None = DEBIAN_FASHION_MNIST,
) -> tuple[Path, str]:
    """Make ``<root>/FashionMNIST/raw/`` hold the four decompressed IDX files; return (root, source).

    Sources, first match wins: ``path`` (explicit; must exist) > an already filled cache >
    ``debian_dir`` (the Debian package) > torchvision's download into ``cache_dir``.

    Parameters
    ----------
    cache_dir : path
        Where the files are unpacked (``<cache_dir>/FashionMNIST/raw``); created.
    path : path, optional
        A folder with the IDX files (gzipped or not), or a torchvision root. If it already holds
        the decompressed files in torchvision's layout it is used in place.
    check_md5 : bool
        Compare every decompressed file with :data:`FASHION_MNIST_MD5`. Turn off only for
        test fixtures in the IDX format that are not the real data.
    download : bool
        Allow torchvision's download (needs the internet) when no local copy exists.
    debian_dir : path or None
        The Debian package's folder; ``None`` skips it.

    Returns
    -------
    root : Path
        The folder to give torchvision's ``FashionMNIST(root=...)``.
    source : str
        ``"path:<p>"``, ``"cache:<p>"``, ``"debian:<p>"`` or ``"download"``.

    Raises
    ------
    FileNotFoundError
        ``path`` is given but holds no Fashion-MNIST files, or no source exists and
        ``download=False``.
    ValueError
        A file's md5 differs from the expected one (``check_md5=True``).
    """
    cache_dir = Path(cache_dir)
    raw = cache_dir / "FashionMNIST" / "raw"
    if path is not None:
        path = Path(path)
        files = _find_idx_files(path)
        if files is None:
            raise FileNotFoundError(
                f"path={str(path)!r} holds no Fashion-MNIST IDX files: expected "
                f"{', '.join(FASHION_MNIST_MD5)} (optionally .gz) in it or in its FashionMNIST/raw/"
            )
        if all(p.suffix != ".gz" and p.parent.name == "raw" for p in files.values()):
            root = next(iter(files.values())).parent.parent.parent
        else:
            _install_idx_files(files, raw)
            root = cache_dir
        source = f"path:{path}"
    elif (files := _find_idx_files(raw)) is not None and all(p.suffix != ".gz" for p in files.values()):
        root, source = cache_dir, f"cache:{raw}"
    elif debian_dir is not None and (files := _find_idx_files(Path(debian_dir))) is not None:
        _install_idx_files(files, raw)
        root, source = cache_dir, f"debian:{debian_dir}"
    elif download:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(root=str(cache_dir), train=True, download=True)
        root, source = cache_dir, "download"
    else:
        raise FileNotFoundError(
            f"no Fashion-MNIST found: give its folder as path=..., install the Debian package "
            f"(apt-get install dataset-fashion-mnist, files in {DEBIAN_FASHION_MNIST}), or allow "
            f"download=True (torchvision, needs the internet)"
        )
    if check_md5:
        for name in FASHION_MNIST_MD5:
            _check_md5(root / "FashionMNIST" / "raw" / name, name)
    return root, source


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read one IDX file (LeCun's MNIST format, used by Fashion-MNIST) as a uint8 tensor.

    Format: a big-endian header — two zero bytes, the type code 0x08 (unsigned byte), the number
    of dimensions k, then k big-endian uint32 sizes — followed by the row-major data. Images
    (magic 2051) give shape (N, rows, cols), labels (magic 2049) shape (N,). The same layout
    torchvision's ``read_image_file``/``read_label_file`` read (this reader avoids importing
    torchvision, ~1.4 s, in every run). Raises ``ValueError`` for another layout or a size
    mismatch.
    """
    data = Path(path).read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    k = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(k)]
    offset, n = 4 + 4 * k, math.prod(dims)
    if len(data) != offset + n:
        raise ValueError(f"{path}: header says {dims} ({n} bytes) but {len(data) - offset} bytes follow")
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(dims)


def load_fashion_mnist(
    cache_dir: str | os.PathLike = "data",
    path: str | os.PathLike | None = None,
    *,
    check_md5: bool = True,
    download: bool = True,
    debian_dir: str | os.PathLike | None = DEBIAN_FASHION_MNIST,
) -> tuple[ImageSplit, ImageSplit]:
    """Fashion-MNIST as (train, test) :class:`ImageSplit`, images uint8 of shape (N, 1, 28, 28).

    Arguments and errors as in :func:`prepare_fashion_mnist`; the files are then read from
    ``<root>/FashionMNIST/raw/`` by :func:`read_idx` (``ValueError`` if images and labels differ
    in number or the images are not 28×28).
    """
    root, source = prepare_fashion_mnist(
        cache_dir, path, check_md5=check_md5, download=download, debian_dir=debian_dir
    )
    raw = Path(root) / "FashionMNIST" / "raw"
    out = []
    for prefix in ("train", "t10k"):
        images = read_idx(raw / f"{prefix}-images-idx3-ubyte")
        labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte")
        if images.dim() != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError(f"{raw}: {prefix} images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                             "are not (N, 28, 28) and (N,)")
        out.append(ImageSplit(images.unsqueeze(1).contiguous(), labels.to(torch.int64), FASHION_MNIST_CLASSES, source))
    return out[0], out[1]


# --------------------------------------------------------------------------- CIFAR-100


def _unpickle(file: Path) -> dict:
    with open(file, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    # The release was pickled by Python 2; keys may come back as bytes under other encodings.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def read_cifar100(folder: str | os.PathLike) -> tuple[ImageSplit, ImageSplit]:
    """Read the CIFAR-100 python release in ``folder`` (``train``, ``test``, ``meta`` pickles).

    Format (https://www.cs.toronto.edu/~kriz/cifar.html): each split pickle is a dict with
    ``data`` (uint8, shape (N, 3072), rows = 1024 red, 1024 green, 1024 blue values of a 32×32
    image in row-major order) and ``fine_labels`` (N ints in 0..99); ``meta`` holds
    ``fine_label_names``. Returns (train, test) with images of shape (N, 3, 32, 32).

    Raises ``FileNotFoundError`` if a file is missing and ``ValueError`` if a pickle does not
    have that layout.
    """
    import numpy as np

    folder = Path(folder)
    for name in ("train", "test", "meta"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found (the CIFAR-100 python release)")
    classes = tuple(_unpickle(folder / "meta")["fine_label_names"])
    out = []
    for name in ("train", "test"):
        entry = _unpickle(folder / name)
        if "data" not in entry or "fine_labels" not in entry:
            raise ValueError(f"{folder / name} lacks the 'data'/'fine_labels' keys of CIFAR-100")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(entry["fine_labels"]) != len(data):
            raise ValueError(
                f"{folder / name}: 'data' must have shape (N, 3072) with N fine_labels, got "
                f"{data.shape} and {len(entry['fine_labels'])} labels"
            )
        images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
        labels = torch.as_tensor(entry["fine_labels"], dtype=torch.int64)
        out.append(ImageSplit(images, labels, classes, f"cifar100:{folder}"))
    return out[0], out[1]


def load_cifar100(
    cache_dir: str | os.PathLike = "data",
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
) -> tuple[ImageSplit, ImageSplit]:
    """CIFAR-100 as (train, test) :class:`ImageSplit`, images uint8 of shape (N, 3, 32, 32).

    ``path`` (a folder that is, or contains, ``cifar-100-python``) > ``cache_dir`` >
    torchvision's download into ``cache_dir`` (``download=True``; needs the internet).
    Raises ``FileNotFoundError`` when nothing is found and the download is off or fails.
    """
    if path is not None:
        path = Path(path)
        for cand in (path, path / "cifar-100-python"):
            if (cand / "train").is_file():
                return read_cifar100(cand)
        raise FileNotFoundError(f"path={str(path)!r} holds no CIFAR-100 python release (train/test/meta)")
    folder = Path(cache_dir) / "cifar-100-python"
    if not (folder / "train").is_file():
        if not download:
            raise FileNotFoundError(
                f"CIFAR-100 not found in {folder}; allow download=True or give its folder as path=..."
            )
        from torchvision.datasets import CIFAR100

        CIFAR100(root=str(cache_dir), train=True, download=True)
    return read_cifar100(folder)


# --------------------------------------------------------------------------- ImageNet-200


def imagenet200_dirs(root: str | os.PathLike | None) -> tuple[Path, Path]:
    """The (train, evaluation) folders of the HPN ImageNet-200 under ``root``.

    Expects ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG`` (or ``root/test/...``,
    the name in the HPN release). Raises ``FileNotFoundError`` naming what is missing, where to
    put it and where it comes from.
    """
    how = (
        "ImageNet-200 (the HPN authors' 64x64 version) is not downloaded automatically: fetch it "
        f"from {IMAGENET200_URL} (see github.com/psmmettes/hpn), place it so that "
        "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG (or test/) exist, and set "
        "image.datasets.imagenet200.path in the config to <root>"
    )
    if root is None:
        raise FileNotFoundError(f"no ImageNet-200 folder configured. {how}")
    root = Path(root)
    train = root / "train"
    evals = [root / "val", root / "test"]
    if not train.is_dir():
        raise FileNotFoundError(f"{train} does not exist. {how}")
    for ev in evals:
        if ev.is_dir():
            return train, ev
    raise FileNotFoundError(f"neither {evals[0]} nor {evals[1]} exists. {how}")


def imagenet200_datasets(root, train_transform=None, eval_transform=None):
    """torchvision ``ImageFolder`` datasets (train, evaluation) of ImageNet-200 under ``root``.

    Class indices follow the sorted folder names, identical in both splits (checked:
    ``ValueError`` otherwise). Errors of :func:`imagenet200_dirs` propagate.
    """
    from torchvision.datasets import ImageFolder

    train_dir, eval_dir = imagenet200_dirs(root)
    train = ImageFolder(str(train_dir), transform=train_transform)
    evaluation = ImageFolder(str(eval_dir), transform=eval_transform)
    if train.classes != evaluation.classes:
        raise ValueError(
            f"ImageNet-200 class folders differ between {train_dir} ({len(train.classes)}) and "
            f"{eval_dir} ({len(evaluation.classes)})"
        )
    return train, evaluation


# --------------------------------------------------------------------------- helpers


def load_image_dataset(name: str, cache_dir="data", path=None, **kwargs) -> tuple[ImageSplit, ImageSplit]:
    """Dispatch to :func:`load_fashion_mnist` or :func:`load_cifar100` by ``name``.

    ImageNet-200 is streamed from disk (:func:`imagenet200_datasets`), not loaded here.
    Raises ``ValueError`` for another ``name``.
    """
    if name == "fashion_mnist":
        return load_fashion_mnist(cache_dir, path, **kwargs)
    if name == "cifar100":
        return load_cifar100(cache_dir, path, **kwargs)
    raise ValueError(f"name must be 'fashion_mnist' or 'cifar100' (in-memory datasets), got {name!r}")


def class_balanced_subset(labels: torch.Tensor, per_class: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class, drawn without replacement.

    The draw depends only on ``labels`` and ``seed`` (a private CPU generator), so every run
    of a sweep sees the same subset. Returns a sorted int64 tensor of ``C * per_class`` indices.
    Raises ``ValueError`` if ``per_class < 1`` or a class has fewer examples.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    chosen = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() < per_class:
            raise ValueError(f"class {c} has {idx.numel()} examples, fewer than per_class={per_class}")
        chosen.append(idx[torch.randperm(idx.numel(), generator=gen)[:per_class]])
    return torch.sort(torch.cat(chosen)).values


class BatchAugment:
    """uint8 image batch → normalised float batch, with optional random crop and flip.

    Applied to a whole batch on its own device (GPU-friendly; no per-image Python). The crop is
    torchvision's ``RandomCrop(size, padding)`` (zero padding by ``padding`` pixels, then a random
    ``H×W`` window) and the flip ``RandomHorizontalFlip(0.5)``, as in HPN's CIFAR pipeline; then
    ``(x / 255 - mean) / std`` per channel.

    Parameters
    ----------
    mean, std : sequence of float
        Per-channel statistics of images scaled to [0, 1] (one entry per channel).
    padding : int
        Crop padding in pixels; 0 disables the crop.
    hflip : bool
        Random horizontal flip with probability 1/2.
    generator : torch.Generator, optional
        CPU generator for the random offsets and flips (drawn on the CPU so a seed gives the
        same augmentation on every device).

    Call with ``x`` uint8 (B, C, H, W) and ``train`` (augment only when True); returns float32
    (B, C, H, W) on ``x.device``.
    """

    def __init__(self, mean, std, *, padding: int = 0, hflip: bool = False, generator=None):
        if len(mean) != len(std) or not all(s > 0 for s in std):
            raise ValueError(f"mean and std must have one entry per channel and std > 0, got {mean}, {std}")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an int >= 0, got {padding!r}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.padding = padding
        self.hflip = bool(hflip)
        self.generator = generator

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"x must be uint8 of shape (B, {self.mean.shape[1]}, H, W), got {x.dtype} {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        if train and self.padding > 0:
            p = self.padding
            xp = torch.nn.functional.pad(x, (p, p, p, p))
            off = torch.randint(0, 2 * p + 1, (2, b), generator=self.generator).to(x.device)
            rows = (off[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (off[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = xp[bi, ci, rows, cols]
        if train and self.hflip:
            flip = (torch.rand(b, generator=self.generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float().div_(255.0) - mean) / std
