"""The image experiment in the workflow (dispersion.pipeline.image): run specs and the grid."""

import pytest

from conftest import workflow_config


def test_run_spec_and_grid():
    from dispersion.pipeline.image import image_runs, run_spec

    cfg = workflow_config()
    spec = run_spec(cfg, "fashion_mnist", "3", "mma")
    assert spec["dim"] == 3 and spec["head"] == "prototype" and spec["regularizer"] == "mma"
    assert spec["train"]["epochs"] == 1 and spec["model"] == {"depth": 8, "width": 4}
    assert run_spec(cfg, "fashion_mnist", 2, "softmax")["regularizer"] is None
    assert run_spec(cfg, "fashion_mnist", 2, "uniform")["regularizer"] == "uniform"
    paper = yaml_paper = workflow_config(None)
    s = run_spec(paper, "cifar100", 50, "mhe_riesz_chordal")
    assert s["train"]["milestones"] == [100, 200] and s["train"]["epochs"] == 250 and s["params"]["kernel"] == "riesz"
    assert run_spec(yaml_paper, "fashion_mnist", 2, "mma")["train"]["epochs"] == 40
    runs = image_runs(cfg)
    assert len(runs) == 2 * 5 * 1 and {r["method"] for r in runs} == {"softmax", "uniform", "mma", "uniformity",
                                                                       "mma_matched"}
    assert {run_spec(cfg, "fashion_mnist", 2, m)["assignment"] for m in ("softmax", "uniform", "mma")} == {"index"}
    # <variant>_matched: the variant's prototypes, assigned by the softmax run's class layout
    matched = {**cfg, "image": {**cfg["image"], "matched": ["mma"]}}
    assert [r["method"] for r in image_runs(matched)][-1] == "mma_matched"
    s = run_spec(matched, "fashion_mnist", 3, "mma_matched")
    assert s["assignment"] == "class_means" and s["regularizer"] == "mma" and s["method"] == "mma_matched"
    from dispersion.pipeline.image import ImagePaths

    ip = ImagePaths(matched)
    assert ip.layout_run(dataset="fashion_mnist", dim=3, method="mma_matched", seed=1) == ip.run_dir(
        dataset="fashion_mnist", dim=3, method="softmax", seed=1)
    assert ip.layout_run(dataset="fashion_mnist", dim=3, method="mma", seed=1) is None
    with pytest.raises(ValueError, match="image.matched"):
        run_spec({**cfg, "image": {**cfg["image"], "matched": []}}, "fashion_mnist", 3, "mma_matched")
    with pytest.raises(ValueError, match="dataset"):
        run_spec(cfg, "mnist", 2, "mma")
    with pytest.raises(ValueError, match="nosuch"):
        run_spec(cfg, "fashion_mnist", 2, "nosuch")
