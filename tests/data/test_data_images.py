"""Image loaders (dispersion.data.images): real Fashion-MNIST (Debian package
``dataset-fashion-mnist``) when installed, and every loader on tiny files written in the real
format (IDX, CIFAR python pickles, ImageFolder JPEGs), as the other datasets cannot be
downloaded here; the class-balanced subsets and the batch augmentation."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from conftest import needs_fmnist
from dispersion.data import images
from dispersion.data.images import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_MD5,
    BatchAugment,
    class_balanced_subset,
    imagenet200_datasets,
    imagenet200_dirs,
    load_cifar100,
    load_fashion_mnist,
    read_cifar100,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def write_idx(folder, prefix, imgs: np.ndarray, labels: np.ndarray, gz=True):
    """Fashion-MNIST's IDX format: big-endian magic 2051 (images) / 2049 (labels), then sizes."""
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(imgs), 28, 28) + imgs.astype(np.uint8).tobytes())
    with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    tr = rng.integers(0, 256, (12, 28, 28)), np.arange(12) % 10
    te = rng.integers(0, 256, (5, 28, 28)), np.array([3, 1, 4, 1, 5])
    write_idx(src, "train", *tr)
    write_idx(src, "t10k", *te)
    return src, tr, te


def write_cifar100(folder, n_train=6, n_test=3):
    """The CIFAR-100 python release: dicts pickled with 'data' (N, 3072) and 'fine_labels'."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 100, n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"filenames": [f"{i}.png" for i in range(n)], "batch_label": name, "fine_labels": labels,
                         "coarse_labels": [0] * n, "data": data}, f, protocol=2)
        out[name] = (data, labels)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"] * 20}, f, protocol=2)
    return out


@needs_fmnist
def test_fashion_mnist_real_files(fmnist_cache):
    train, test = load_fashion_mnist(fmnist_cache, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    # the first labels of the release (9 = ankle boot)
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert train.source.startswith("cache:")
    # the normalisation constants are the training set's own statistics
    x = train.images.float() / 255
    (mean,), (std,) = images.NORMALIZATION["fashion_mnist"]
    assert x.mean().item() == pytest.approx(mean, abs=5e-4)
    assert x.std().item() == pytest.approx(std, abs=5e-4)


@needs_fmnist
def test_fashion_mnist_unpacked_from_debian(tmp_path):
    root, source = images.prepare_fashion_mnist(tmp_path, download=False)
    assert root == tmp_path and source == f"debian:{DEBIAN_FASHION_MNIST}"
    for name, md5 in FASHION_MNIST_MD5.items():  # the decompressed files' md5 sums of docs/data.md
        assert images._md5(tmp_path / "FashionMNIST" / "raw" / name) == md5


@needs_fmnist
def test_read_idx_agrees_with_torchvision(fmnist_cache):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = fmnist_cache / "FashionMNIST" / "raw"
    assert torch.equal(images.read_idx(raw / "t10k-images-idx3-ubyte"), read_image_file(str(raw / "t10k-images-idx3-ubyte")))
    assert torch.equal(images.read_idx(raw / "t10k-labels-idx1-ubyte"), read_label_file(str(raw / "t10k-labels-idx1-ubyte")))


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        images.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(struct.pack(">II", 2049, 5) + b"\x01\x02")
    with pytest.raises(ValueError, match="5 bytes"):
        images.read_idx(tmp_path / "short")


def test_fashion_mnist_idx_fixture_explicit_path(idx_folder, tmp_path):
    src, (tr_x, tr_y), (te_x, te_y) = idx_folder
    train, test = load_fashion_mnist(tmp_path / "cache", path=src, check_md5=False, download=False, debian_dir=None)
    assert train.images.shape == (12, 1, 28, 28) and test.images.shape == (5, 1, 28, 28)
    assert np.array_equal(train.images[:, 0].numpy(), tr_x) and train.labels.tolist() == tr_y.tolist()
    assert test.labels.tolist() == [3, 1, 4, 1, 5]
    assert train.source == f"path:{src}"
    assert (tmp_path / "cache" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_fashion_mnist_rejects_wrong_md5_and_missing(idx_folder, tmp_path):
    src, _, _ = idx_folder
    with pytest.raises(ValueError, match="md5"):
        load_fashion_mnist(tmp_path / "c1", path=src, download=False, debian_dir=None)
    with pytest.raises(FileNotFoundError, match="path="):
        load_fashion_mnist(tmp_path / "c2", path=tmp_path / "empty", download=False)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "c3", download=False, debian_dir=None)


def test_fashion_mnist_uncompressed_torchvision_root_used_in_place(tmp_path):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, "train", np.zeros((2, 28, 28)), np.array([1, 2]), gz=False)
    write_idx(raw, "t10k", np.full((1, 28, 28), 7), np.array([0]), gz=False)
    train, test = load_fashion_mnist(tmp_path / "cache", path=tmp_path / "root", check_md5=False, download=False)
    assert train.labels.tolist() == [1, 2] and int(test.images.max()) == 7
    assert not (tmp_path / "cache").exists()


def test_cifar100_pickle_fixture(tmp_path):
    written = write_cifar100(tmp_path / "cifar-100-python")
    train, test = load_cifar100(tmp_path / "cache", path=tmp_path, download=False)
    assert train.images.shape == (6, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    data, labels = written["train"]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32
    assert train.images[2, 0, 0, 5].item() == data[2, 5]
    assert train.images[2, 1, 3, 7].item() == data[2, 1024 + 3 * 32 + 7]
    assert train.images[2, 2, 31, 31].item() == data[2, 3071]
    assert train.labels.tolist() == labels and train.classes[99] == "c99"
    # the same files found in the cache folder
    train2, _ = load_cifar100(tmp_path, download=False)
    assert torch.equal(train2.images, train.images)


def test_cifar100_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar100(tmp_path, download=False)
    folder = tmp_path / "bad"
    write_cifar100(folder)
    with open(folder / "train", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "fine_labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="3072"):
        read_cifar100(folder)


def test_imagenet200_folder_fixture(tmp_path):
    from PIL import Image

    root = tmp_path / "imagenet200"
    colours = {"n01443537": (255, 0, 0), "n01629819": (0, 0, 255)}
    for split, n in (("train", 2), ("test", 1)):
        for cls, rgb in colours.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (64, 64), rgb).save(root / split / cls / f"{cls}_{i}.JPEG", quality=95)
    from torchvision import transforms as T

    train, val = imagenet200_datasets(root, T.ToTensor(), T.ToTensor())
    assert train.classes == sorted(colours) and len(train) == 4 and len(val) == 2
    x, y = val[1]
    assert x.shape == (3, 64, 64) and y == 1
    assert x[2].mean().item() > 0.9 and x[0].mean().item() < 0.1  # blue class
    assert imagenet200_dirs(root)[1].name == "test"


def test_imagenet200_missing_says_where(tmp_path):
    for root in (None, tmp_path / "nothing"):
        with pytest.raises(FileNotFoundError, match=r"isis-data\.science\.uva\.nl.*imagenet200\.path"):
            imagenet200_dirs(root)
    (tmp_path / "x" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="val"):
        imagenet200_dirs(tmp_path / "x")


def test_class_balanced_subset():
    labels = torch.arange(50) % 5
    idx = class_balanced_subset(labels, 3, seed=7)
    assert idx.numel() == 15 and torch.equal(torch.bincount(labels[idx]), torch.full((5,), 3))
    assert torch.equal(idx, class_balanced_subset(labels, 3, seed=7))
    assert torch.equal(idx, torch.sort(idx).values) and idx.unique().numel() == 15
    with pytest.raises(ValueError, match="per_class"):
        class_balanced_subset(labels, 11)
    with pytest.raises(ValueError, match="per_class"):
        class_balanced_subset(labels, 0)


def test_batch_augment_normalise_crop_flip():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    plain = BatchAugment((0.5,), (0.25,))
    assert torch.allclose(plain(x), (x.float() / 255 - 0.5) / 0.25)
    # flip only: every image is itself or its mirror, and with 64 images both occur
    xs = torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8)
    out = BatchAugment((0.0,), (1.0,), hflip=True, generator=torch.Generator().manual_seed(0))(xs) * 255
    same = (out.round() == xs.float()).flatten(1).all(1)
    mirrored = (out.round() == xs.flip(3).float()).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()
    # crop only: each output is a 4x4 window of the zero-padded image
    aug = BatchAugment((0.0,), (1.0,), padding=1, generator=torch.Generator().manual_seed(1))
    out = (aug(xs) * 255).round()
    padded = torch.nn.functional.pad(xs.float(), (1, 1, 1, 1))
    for b in range(8):
        windows = [padded[b, :, i:i + 4, j:j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(out[b], w) for w in windows)
    assert torch.equal(plain(x, train=False), BatchAugment((0.5,), (0.25,), padding=2, hflip=True)(x, train=False))
    with pytest.raises(ValueError, match="uint8"):
        plain(x.float())
