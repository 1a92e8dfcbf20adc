"""The image report (dispersion.report.image): tables of mean ± std over seeds."""

import json
import math



def _fake_summary(path, method, label, dim, seed, acc, angle):
    path.mkdir(parents=True)
    head = "softmax" if method == "softmax" else "prototype"
    rec = {"config": {"dataset": "fashion_mnist", "dim": dim, "method": method, "label": label, "head": head,
                      "model": {"depth": 8, "width": 8}, "train": {"batch_size": 128, "lr": 0.1},
                      "data": {"augment": {"padding": 2, "hflip": True}}},
           "seed": seed, "device": "cpu", "device_name": "cpu (1 threads)", "wall_time_s": 1.0,
           "final": {"test_accuracy": acc, "min_angle_deg": angle, "min_angle": None if angle is None else math.radians(angle),
                     "n_train": 1500, "n_test": 500, "n_classes": 10, "epochs": 4,
                     # class c at acc + (c - 4.5) / 100: the classes average to acc
                     "per_class_accuracy": [acc + (c - 4.5) / 100 for c in range(10)]}}
    (path / "summary.json").write_text(json.dumps(rec))
    return path / "summary.json"


def test_report_tables_mean_std(tmp_path):
    from dispersion.report import image as report

    paths = []
    for seed, (a_s, a_m, ang) in enumerate(((0.80, 0.70, 60.0), (0.90, 0.74, 62.0))):
        for dim in (2, 3):
            paths.append(_fake_summary(tmp_path / f"s{seed}d{dim}", "softmax", "Softmax CE", dim, seed, a_s, None))
            paths.append(_fake_summary(tmp_path / f"m{seed}d{dim}", "mma", "MM", dim, seed, a_m, ang))
    report.report(paths, tmp_path / "runs.csv", str(tmp_path / "t_"), str(tmp_path / "f_"))
    md = open(tmp_path / "t_accuracy.md").read()
    # accuracies 80 and 90 -> mean 85.0, sample std 7.07; 70 and 74 -> 72.0 ± 2.8
    assert "85.0 ± 7.1" in md and "72.0 ± 2.8" in md
    ang = open(tmp_path / "t_min_angle.md").read()
    assert "61.00 ± 1.41" in ang and "Softmax" not in ang
    tex = open(tmp_path / "t_accuracy.tex").read()
    assert "\\toprule" in tex and "85.0 $\\pm$ 7.1" in tex
    assert "ResNet-8 (width 8), 4 epochs, batch 128, lr 0.1, padding 2, horizontal flips; 2 seed(s)" in md
    # per class at D = 3 (the smallest D >= 3): T-shirt/top (class 0) = mean over seeds of acc - 4.5 points
    per = open(tmp_path / "t_per_class.md").read()
    assert "D = 3" in per and "Scale: output folder" in per
    row = next(line for line in per.splitlines() if line.startswith("| T-shirt/top"))
    assert [float(c) for c in row.split("|")[2:4]] == [80.5, 67.5]  # softmax (80+90)/2 - 4.5, MM 72 - 4.5
    last = next(line for line in per.splitlines() if line.startswith("| all classes"))
    assert [float(c) for c in last.split("|")[2:4]] == [85.0, 72.0]
    for stem in ("f_accuracy_vs_dim", "f_min_angle_vs_accuracy"):
        for ext in (".pdf", ".png"):
            assert (tmp_path / (stem + ext)).stat().st_size > 1000
