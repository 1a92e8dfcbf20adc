"""The translation experiment in the workflow (dispersion.pipeline.nmt): the runs and specs the
shipped configs ask for, the paths, what `rule all` builds, and the config check."""

import copy

import pytest

from conftest import shipped
from dispersion.experiments import nmt as exp
from dispersion.pipeline import Paths, check_config, run_specs
from dispersion.pipeline.nmt import NmtPaths, check, corpus_spec, lambda_tag, nmt_runs, nmt_spec, sweep_runs

CONFIGS = shipped()
GRID = ["euclidean", "none", "mhe_rbf_chordal", "lloyd", "sliced"]


@pytest.mark.parametrize("name", ["config.yaml", "cpu.yaml"])
def test_the_grid_is_five_methods_by_three_seeds_plus_the_lambda_sweep(name):
    cfg = CONFIGS[name]
    runs = nmt_runs(cfg)
    assert [r for r in runs if r["method"] in GRID] == [{"method": m, "seed": s} for m in GRID for s in (42, 52, 62)]
    assert [r for r in runs if r["method"] not in GRID] == [{"method": "sliced_lambda1", "seed": 42},
                                                            {"method": "sliced_lambda100", "seed": 42}]
    assert len(runs) == 17
    # the sweep: lambda = 1, 10 (the grid's Sliced run), 100 at seed 42, two decades
    assert [(r["method"], r["lambda"]) for r in sweep_runs(cfg)] == [
        ("sliced", 10.0), ("sliced_lambda1", 1.0), ("sliced_lambda100", 100.0)]


def test_specs_carry_the_papers_nmt_settings():
    cfg = CONFIGS["cpu.yaml"]
    mhe, sliced, lloyd = (nmt_spec(cfg, m) for m in ("mhe_rbf_chordal", "sliced", "lloyd"))
    # the paper's gamma_a = 0.01 is gamma = 0.005 here, its lambda = 10 on the authors' energy 10 e^0.01
    assert mhe["params"] == {"kernel": "gaussian", "distance": "chordal", "gamma": 0.005}
    assert mhe["train"]["lambda"] == 10.1005 and mhe["train"]["reg_rows"] == 2048
    assert sliced["params"] == {"n_slices": 1} and sliced["train"]["lambda"] == 10.0
    assert lloyd["params"] == {"n_samples": 100}
    assert nmt_spec(cfg, "sliced_lambda100")["train"]["lambda"] == 100.0
    assert nmt_spec(cfg, "sliced_lambda100")["label"] == "Sliced, λ = 100"
    assert nmt_spec(cfg, "euclidean")["embedding"] == "euclidean" and nmt_spec(cfg, "euclidean")["regularizer"] is None
    assert nmt_spec(cfg, "none")["embedding"] == "sphere" and nmt_spec(cfg, "none")["regularizer"] is None
    for s in (mhe, sliced):
        assert s["train"]["lambda_per"] == "token" and s["train"]["embedding_lr"] == 0.005
        assert s["model"]["dim"] == 128 and s["decode"] == exp.DECODE_DEFAULTS
    assert corpus_spec(cfg)["vocab_size"] == 16000 and corpus_spec(cfg)["data"]["path"] is None
    # cpu scale: 2 + 2 layers, 8 epochs of 64 pairs; paper scale: 6 + 6 layers
    assert sliced["model"]["n_encoder_layers"] == 2 and sliced["train"]["epochs"] == 8
    assert nmt_spec(CONFIGS["config.yaml"], "sliced")["model"]["n_encoder_layers"] == 6
    with pytest.raises(ValueError, match="nmt.lambda_sweep"):
        nmt_spec(cfg, "sliced_lambda3")


def test_every_shipped_spec_passes_the_runs_own_checks():
    for name, cfg in CONFIGS.items():
        for r in nmt_runs(cfg):
            exp.resolve({**nmt_spec(cfg, r["method"]), "seed": r["seed"], "corpus": "c.pt"})


def test_paths_and_run_specs():
    cfg = CONFIGS["cpu.yaml"]
    p = NmtPaths(cfg)
    assert p.run_dir(method="sliced", seed=42) == "cpu/results/nmt/runs/sliced/seed42"
    assert p.corpus() == "data/nmt/corpus.pt"
    specs = run_specs(cfg)  # through pipeline.committed: the committed-runs check sees them
    key = "cpu/results/nmt/runs/sliced_lambda1/seed42/summary.json"
    assert key in specs and specs[key]["seed"] == 42 and specs[key]["corpus"] == "data/nmt/corpus.pt"
    assert len([k for k in specs if "/nmt/runs/" in k]) == 17
    out = p.outputs()
    assert "cpu/results/tables/nmt.md" in out and "cpu/figures/nmt_lambda.png" in out


def test_rule_all_runs_nmt_only_where_a_config_names_it():
    # paper scale: not in `rule all` (no paper-scale NMT runs are committed); cpu, quick, test: yes
    assert not Paths(CONFIGS["config.yaml"]).selected("nmt")
    assert Paths(CONFIGS["config.yaml"]).selected("text_lm")
    for name in ("cpu.yaml", "quick.yaml", "test.yaml"):
        assert Paths(CONFIGS[name]).selected("nmt"), name


def test_lambda_tags_are_wildcard_safe():
    assert [lambda_tag(v) for v in (1, 10.0, 100, 0.1, 2.5)] == ["1", "10", "100", "0p1", "2p5"]
    with pytest.raises(ValueError, match="exponent"):
        lambda_tag(1e-7)


@pytest.mark.parametrize("change,message", [
    (lambda n: n["methods"].append("nope"), "nmt.methods: nope"),
    (lambda n: n.update(lambda_sweep={"method": "lloyd", "lambdas": [1, 10]}), "nmt.lambda_sweep.method"),
    (lambda n: n.update(lambda_sweep={"method": "none", "lambdas": [1, 10]}), "no regularizer"),
    (lambda n: n["overrides"].update(slicde={}), "nmt.overrides.slicde"),
    (lambda n: n["train"].update(epohcs=3), "did you mean 'epochs'"),
    (lambda n: n["model"].update(dim=130), "divisible"),
    (lambda n: n["lambdas"].update(sliced=-1), "nmt.lambdas.sliced"),
])
def test_config_check_names_the_key(change, message):
    cfg = copy.deepcopy(CONFIGS["cpu.yaml"])
    if "lloyd" in message or message == "nmt.lambda_sweep.method":
        cfg["nmt"]["methods"] = ["none", "sliced"]
    change(cfg["nmt"])
    with pytest.raises(ValueError, match=message):
        check(cfg)


def test_the_whole_config_check_covers_nmt():
    cfg, base = copy.deepcopy(CONFIGS["test.yaml"]), CONFIGS["config.yaml"]
    check_config(cfg, base=base)  # test.yaml inherits the overrides of variants it does not run
    cfg["nmt"]["overrides"] = {"lloyd": {"n_samples": 7}}  # changed, for a variant nmt does not run here
    with pytest.raises(ValueError, match="nmt.overrides.lloyd: nmt does not run variant 'lloyd'"):
        check_config(cfg, base=base)
