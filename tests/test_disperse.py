"""dispersion.disperse (dispersion.posthoc): the fidelity terms (values, gradients, minibatch rows) and the loop."""
import math

import pytest
import torch

from dispersion import metrics
from dispersion.posthoc import anchor_fidelity, disperse, knn_fidelity, knn_label_accuracy, knn_margin_fidelity
from conftest import random_sphere


def _setup(n=30, d=5, k=4, seed=0):
    X = random_sphere(n, d, seed=seed)
    nb, ang = metrics.knn(X, k)
    return X, nb, torch.cos(ang)


def test_knn_fidelity_value_and_its_closed_form_gradient():
    X, nb, target = _setup()
    Y = random_sphere(30, 5, seed=1).requires_grad_()
    rows = torch.tensor([0, 3, 7, 8, 21])
    F = knn_fidelity(Y, nb, target, rows)
    # value by a loop
    ref = sum((torch.dot(Y[i], Y[j]) - target[i, a]) ** 2 for i in rows.tolist() for a, j in enumerate(nb[i].tolist()))
    assert F.item() == pytest.approx(ref.item() / (5 * 4), abs=1e-14)
    # gradient: dF/dy_i = 2/(|B| k) [sum_{j in N(i)} r_ij y_j (i in B) + sum_{m in B: i in N(m)} r_mi y_m]
    (g,) = torch.autograd.grad(F, Y)
    Yd = Y.detach()
    expected = torch.zeros_like(Yd)
    for m in rows.tolist():
        for a, j in enumerate(nb[m].tolist()):
            r = torch.dot(Yd[m], Yd[j]) - target[m, a]
            expected[m] += r * Yd[j]
            expected[j] += r * Yd[m]
    expected *= 2 / (5 * 4)
    assert torch.allclose(g, expected, atol=1e-14)
    # rows outside the batch and not neighbours of it get no gradient
    touched = set(rows.tolist()) | set(nb[rows].flatten().tolist())
    untouched = [i for i in range(30) if i not in touched]
    assert untouched and g[untouched].abs().max().item() == 0.0


def test_fidelity_terms_pass_gradcheck_and_vanish_at_the_start():
    X, nb, target = _setup(n=12, d=4, k=3)
    rows = torch.tensor([1, 2, 5, 9])
    Y = random_sphere(12, 4, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda Y: knn_fidelity(Y, nb, target, rows), (Y,))
    assert torch.autograd.gradcheck(lambda Y: anchor_fidelity(Y, X, rows), (Y,))
    assert torch.autograd.gradcheck(lambda Y: knn_margin_fidelity(Y, nb, None, 0.05), (Y,), atol=1e-6)
    assert knn_fidelity(X, nb, target).item() == pytest.approx(0.0, abs=1e-28)
    assert anchor_fidelity(X, X).item() == 0.0
    # anchor: ||y − x||² = 2(1 − <y, x>) on the sphere
    Yd = Y.detach()
    assert anchor_fidelity(Yd, X).item() == pytest.approx((2 * (1 - (Yd * X).sum(1))).mean().item(), abs=1e-14)


def test_margin_fidelity_is_zero_when_neighbours_lead_by_the_margin():
    X, nb, _ = _setup(n=40, d=6, k=3)
    # the original table: each row's farthest neighbour is nearer than every non-neighbour
    G = X @ X.T
    far = torch.stack([G[i, nb[i]].min() for i in range(40)])
    mask = torch.eye(40, dtype=torch.bool)
    mask[torch.arange(40)[:, None], nb] = True
    lead = far - G.masked_fill(mask, -math.inf).max(dim=1).values
    expected = torch.relu(0.05 - lead).mean()
    assert knn_margin_fidelity(X, nb, None, 0.05).item() == pytest.approx(expected.item(), abs=1e-14)
    assert knn_margin_fidelity(X, nb, None, 0.0).item() == 0.0


def test_disperse_spreads_and_the_knn_fidelity_keeps_neighbourhoods():
    # a clumped table: a spread that ignores neighbourhoods loses them, the fidelity term keeps them
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(300, 8, generator=g, dtype=torch.float64) * 0.3 + 1.0, dim=1)
    free = disperse(X, "uniformity", steps=150, lr=0.02, fidelity="none", k=5)
    held = disperse(X, "uniformity", steps=150, lr=0.02, fidelity="knn", weight=20.0, k=5)
    h0, hf, hh = free.history[0], free.history[-1], held.history[-1]
    assert h0["recall@5"] == 1.0 and hf["mean_nn_angle_deg"] > h0["mean_nn_angle_deg"] + 5
    assert hh["recall@5"] > hf["recall@5"] + 0.1
    assert hh["circular_variance"] > h0["circular_variance"]
    assert torch.allclose(torch.linalg.vector_norm(held.X, dim=1), torch.ones(300, dtype=torch.float64), atol=1e-12)


def test_minibatch_mode_and_labels():
    X = random_sphere(200, 6, seed=5)
    labels = [i % 3 for i in range(200)]
    for fid in ("knn", "knn_margin", "anchor"):
        r = disperse(X, "mhe", params={"kernel": "riesz", "s": 1.0}, steps=20, lr=0.01, fidelity=fid, batch_size=64,
                     labels=labels, k=5, log_every=10)
        assert [h["step"] for h in r.history] == [0, 10, 20]
        assert 0 <= r.history[-1]["knn_accuracy"] <= 1 and r.settings["batch_size"] == 64


def test_knn_label_accuracy_on_separated_clusters():
    X = torch.nn.functional.normalize(torch.cat([torch.randn(20, 3) * 0.05 + torch.tensor([1.0, 0, 0]),
                                                 torch.randn(20, 3) * 0.05 - torch.tensor([1.0, 0, 0])]), dim=1)
    codes = torch.tensor([0] * 20 + [1] * 20)
    assert knn_label_accuracy(X, codes, 5) == 1.0


def test_bad_arguments():
    X = random_sphere(20, 4)
    with pytest.raises(ValueError, match="fidelity must be one of"):
        disperse(X, "mma", steps=1, lr=0.1, fidelity="cosine")
    with pytest.raises(ValueError, match="weight"):
        disperse(X, "mma", steps=1, lr=0.1, weight=-1.0)
    with pytest.raises(ValueError, match="k must be at most"):
        disperse(X, "mma", steps=1, lr=0.1, k=20)
    with pytest.raises(ValueError, match="unknown method"):
        disperse(X, "mmx", steps=1, lr=0.1)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        disperse(X, "mma", steps=1, lr=0.1, labels=[0, 1, 0])
    with pytest.raises(ValueError, match="batch_size"):
        disperse(X, "mma", steps=1, lr=0.1, batch_size=1)


def test_command_line_writes_the_spread_table_in_the_input_format(tmp_path):
    import json

    import numpy as np
    import pandas as pd
    from safetensors.torch import load_file, save_file

    from dispersion.cli import main
    from dispersion.data.tables import load_table

    g = torch.Generator().manual_seed(0)
    X = (torch.randn(40, 6, generator=g) * 0.2 + 1.0).float()
    words = [f"w{i}" for i in range(40)]
    (tmp_path / "t.vec").write_text("40 6\n" + "\n".join(w + " " + " ".join(f"{v:.6f}" for v in r)
                                                        for w, r in zip(words, X.tolist())) + "\n")
    save_file({"emb": X, "other": torch.ones(3)}, str(tmp_path / "t.safetensors"))
    df = pd.DataFrame(X.numpy(), columns=[f"x{j}" for j in range(6)])
    df.insert(0, "text", words)
    df.to_csv(tmp_path / "t.csv", index=False)
    for name in ("t.vec", "t.safetensors", "t.csv"):
        out = tmp_path / f"out_{name}"
        assert main(["disperse", str(tmp_path / name), "--out", str(out), "--method", "uniformity", "--steps", "30",
                     "--lr", "0.05", "--k", "5", "--keep-norms", "--history", str(tmp_path / "h.json"),
                     "--no-progress"]) == 0
        a, b = load_table(tmp_path / name), load_table(out)
        assert b.X.shape == (40, 6) and b.names == a.names
        assert np.allclose(np.linalg.norm(b.X, axis=1), np.linalg.norm(a.X, axis=1), rtol=1e-4)
        assert not np.allclose(b.X, a.X, atol=1e-3)  # it moved
    assert (tmp_path / "out_t.vec").read_text().startswith("40 6\n")
    assert torch.equal(load_file(str(tmp_path / "out_t.safetensors"))["other"], torch.ones(3))
    h = json.loads((tmp_path / "h.json").read_text())
    assert h["settings"]["method"] == "uniformity" and h["history"][-1]["step"] == 30
    with pytest.raises(SystemExit):
        main(["disperse", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o.npy"), "--method", "mma"])


def test_command_line_leaves_no_history_without_its_table(tmp_path, monkeypatch):
    import numpy as np

    from dispersion.cli import main
    from dispersion.data import tables

    np.save(tmp_path / "t.npy", random_sphere(30, 4, seed=1).numpy())

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tables, "save_table", broken)
    with pytest.raises(SystemExit) as err:  # the command line reports an OSError with exit status 1
        main(["disperse", str(tmp_path / "t.npy"), "--out", str(tmp_path / "o.npy"), "--method", "mma", "--steps", "2",
              "--k", "3", "--history", str(tmp_path / "h.json"), "--no-progress"])
    assert err.value.code == 1
    assert not (tmp_path / "h.json").exists() and not (tmp_path / "o.npy").exists()
