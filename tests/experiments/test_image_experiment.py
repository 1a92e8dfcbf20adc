"""The image run (dispersion.experiments.image) end to end: real Fashion-MNIST and the
streamed ImageNet-200 folder path."""

import json
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
    # per-class accuracy and the confusion matrix agree with the accuracy
    f = json.load(open(summaries[1]))["final"]
    conf = np.array(f["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 100
    assert np.trace(conf) / 100 == pytest.approx(f["test_accuracy"])
    assert f["per_class_accuracy"] == pytest.approx((np.diag(conf) / conf.sum(1)).tolist())
    # the softmax run leaves its class layout; a matched run assigns the same MM prototypes by it
    means = torch.load(tmp_path / "runs" / "softmax" / "class_means.pt")
    assert means.shape == (10, 3) and (means.norm(dim=1) <= 1 + 1e-6).all()
    cfg["image"]["matched"] = ["mma"]
    spec = {**run_spec(cfg, "fashion_mnist", 3, "mma_matched"), "seed": 0}
    assert spec["assignment"] == "class_means" and spec["label"] == "MM (d_S), classes matched"
    out = tmp_path / "runs" / "mma_matched"
    fm = run(spec, out, class_means=tmp_path / "runs" / "softmax" / "class_means.pt", progress=False)["final"]
    Pm = torch.load(out / "prototypes.pt")
    perm = fm["assignment_permutation"]
    assert sorted(perm) == list(range(10)) and torch.equal(Pm, P[perm])
    assert fm["min_angle"] == pytest.approx(f["min_angle"])
    assert fm["assignment_alignment"] >= fm["assignment_alignment_index"] - 1e-9
    summaries.append(out / "summary.json")
    with pytest.raises(ValueError, match="class_means"):
        run(spec, tmp_path / "runs" / "no_layout", progress=False)
    paths = report.report(summaries, tmp_path / "runs.csv", str(tmp_path / "t_"), str(tmp_path / "f_"))
    assert all(os.path.exists(p) for p in paths)
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
