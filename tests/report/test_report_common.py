"""Table captions name the scale and the device of the runs behind them."""

import pandas as pd

from dispersion.report.common import provenance, scale_of, scale_title, write_table


def test_scale_of_output_paths():
    assert scale_of("results/tables/tammes.md") == "paper"
    assert scale_of("figures/synthetic_curves.png") == "paper"
    assert scale_of("quick/results/tables/tammes.md") == "quick"
    assert scale_of("cpu/results/tables/image.md") == "cpu"
    assert scale_of("/tmp/wf/results/tables/tammes.md") == "output folder /tmp/wf/results/tables"
    assert scale_title("cpu/figures/image_fashion_mnist_accuracy_vs_dim") == " (cpu scale)"
    assert scale_title("figures/text_lm_geometry") == " (paper scale)"
    assert scale_title("/tmp/wf/figures/x") == ""


def test_provenance_lists_every_device_once():
    runs = pd.DataFrame({"device_name": ["cpu (1 threads)", "NVIDIA H200", "cpu (1 threads)", None]})
    assert provenance("results/tables/x.md", runs) == "Scale: paper; device: NVIDIA H200, cpu (1 threads)."
    assert provenance("quick/results/tables/x.md", pd.DataFrame({"device": ["cpu"]})) == "Scale: quick; device: cpu."
    assert provenance("quick/x.md", pd.DataFrame({"n": [1]})) == "Scale: quick; device: not recorded."


def test_write_table_appends_provenance(tmp_path):
    df = pd.DataFrame({"method": ["a"], "value": [1.5]})
    runs = pd.DataFrame({"device_name": ["cpu (1 threads)"]})
    write_table(df, tmp_path / "t.md", tmp_path / "t.tex", caption="A caption.", label="tab:t", runs=runs)
    first = (tmp_path / "t.md").read_text().splitlines()[0]
    assert first == f"A caption. Scale: output folder {tmp_path}; device: cpu (1 threads)."
    assert "device: cpu (1 threads)." in (tmp_path / "t.tex").read_text()
    write_table(df, tmp_path / "u.md", tmp_path / "u.tex", caption="A caption.", label="tab:u")
    assert (tmp_path / "u.md").read_text().splitlines()[0] == "A caption."
