import json
import os

import pytest
import torch

from dispersion.runio import RunRecorder, atomic_write, atomic_write_json, seed_everything


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1, "nan": float("nan"), "t": torch.tensor([1.5])})
    assert json.loads(target.read_text()) == {"x": 1, "nan": None, "t": [1.5]}


def test_run_recorder(tmp_path):
    rec = RunRecorder(tmp_path / "run", {"a": 1}, seed=3, device=torch.device("cpu"))
    rec.log(step=0, loss=1.0)
    rec.log(step=1, loss=0.5)
    assert not (tmp_path / "run" / "summary.json").exists()
    s = rec.finish(final={"min_angle": 0.1})
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [0, 1]
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["config"] == {"a": 1} and on_disk["seed"] == 3 and "torch" in on_disk["versions"]
    assert s["final"]["min_angle"] == 0.1
    # the machine's 1-minute load at both ends, as os.getloadavg reports it
    load = on_disk["load_average"]
    assert set(load) == {"start", "end"} and all(v is None or v >= 0 for v in load.values())
    assert load["end"] is not None or not hasattr(os, "getloadavg")


def test_seed_everything_is_reproducible():
    a = torch.rand(3, generator=seed_everything(5))
    b = torch.rand(3, generator=seed_everything(5))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything("5")
