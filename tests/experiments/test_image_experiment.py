"""The image run (dispersion.experiments.image) end to end: real Fashion-MNIST and the
streamed ImageNet-200 folder path."""

import json
import math
import os

import numpy as np
import pytest
import torch

from conftest import needs_fmnist, workflow_config

pytestmark = pytest.mark.usefixtures("one_thread")


@needs_fmnist
def test_image_run_and_report_on_real_fashion_mnist(tmp_path, fmnist_cache):
    from dispersion import metrics
    from dispersion.experiments.image import run
    from dispersion.pipeline.image import run_spec
    from dispersion.report import image as report

    cfg = workflow_config()
    cfg["image"]["data_dir"] = str(fmnist_cache)
    summaries = []
    for method in ("softmax", "mma"):
        out = tmp_path / "runs" / method
        s = run({**run_spec(cfg, "fashion_mnist", 3, method), "seed": 0}, out, progress=False)
        f = s["final"]
        assert 0.0 <= f["test_accuracy"] <= 1.0 and f["n_train"] == 200 and f["n_test"] == 100
        rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
        assert [r["epoch"] for r in rows] == [1] and "eval_accuracy" in rows[-1]
        summaries.append(out / "summary.json")
    P = torch.load(tmp_path / "runs" / "mma" / "prototypes.pt")
    assert P.shape == (10, 3)
    assert json.load(open(summaries[1]))["final"]["min_angle"] == pytest.approx(metrics.min_angle(P).item(), abs=1e-6)
    assert not (tmp_path / "runs" / "softmax" / "prototypes.pt").exists()
    paths = report.report(summaries, tmp_path / "runs.csv", str(tmp_path / "t_"), str(tmp_path / "f_"))
    assert len(paths) == 9 and all(os.path.exists(p) for p in paths)
    assert "Softmax CE" in open(tmp_path / "t_accuracy.md").read()


def test_image_run_on_imagenet200_folder_fixture(tmp_path):
    """The streamed (ImageFolder + DataLoader) path of a run, on 200 one-image classes."""
    from PIL import Image

    from dispersion.experiments.image import run
    from dispersion.pipeline.image import run_spec

    root = tmp_path / "imagenet200"
    for split in ("train", "val"):
        for c in range(200):
            (root / split / f"n{c:08d}").mkdir(parents=True)
            Image.new("RGB", (64, 64), (c, 255 - c, (7 * c) % 256)).save(root / split / f"n{c:08d}" / "a.JPEG")
    cfg = workflow_config()
    cfg["image"]["datasets"]["imagenet200"] = {"dims": [4], "path": str(root), "augment": {"padding": 4, "hflip": True}}
    spec = run_spec(cfg, "imagenet200", 4, "uniform")
    spec["train"]["batch_size"] = 100
    s = run({**spec, "seed": 0}, tmp_path / "run", progress=False)
    assert s["final"]["n_train"] == 200 and s["final"]["n_classes"] == 200 and s["final"]["epochs"] == 1
    assert s["final"]["data_source"] == f"imagenet200:{root}"
    spec["data"]["path"] = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="imagenet200"):
        run({**spec, "seed": 0}, tmp_path / "run2", progress=False)
