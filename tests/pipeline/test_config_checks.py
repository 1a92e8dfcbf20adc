"""Issue 12 part 4: every variant's parameters, overrides and sub-studies included, are built
and every job's spec is checked when the config is checked — before any job starts."""

from pathlib import Path

import pytest
import yaml

from dispersion._config import deep_merge
from dispersion.pipeline import check_config

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def layered(name: str) -> dict:
    return deep_merge(BASE, yaml.safe_load((ROOT / "config" / name).read_text()))


@pytest.mark.parametrize("name", ["config.yaml", "quick.yaml", "test.yaml"])
def test_shipped_configs_pass(name):
    check_config(BASE if name == "config.yaml" else layered(name), base=BASE)


@pytest.mark.parametrize("over,message", [
    # before: passed the dry run and failed at job time (the variant runs only in a sub-study)
    ({"synthetic": {"overrides": {"mhe_rbf_fullbatch": {"gamma": -1.0}}}},
     "config key synthetic.overrides.mhe_rbf_fullbatch: gamma must be > 0 and finite, got -1.0"),
    ({"synthetic": {"overrides": {"sliced_auto": {"n_slices": 0}}}},
     "config key synthetic.overrides.sliced_auto: n_slices must be >= 1, got 0"),
    ({"methods": {"ssw_1": {"params": {"n_projections": 2.5}}}}, "config key methods.ssw_1: n_projections must be an int"),
    # before: silently ignored (tammes does not run that variant)
    ({"tammes": {"overrides": {"mhe_rbf_fullbatch": {"gamma": 2.0}}}},
     "config key tammes.overrides.mhe_rbf_fullbatch: tammes does not run variant 'mhe_rbf_fullbatch'"),
    ({"text": {"lm": {"overrides": {"mma": {}}}}}, "config key text.lm.overrides.mma: text.lm does not run variant 'mma'"),
    ({"synthetic": {"overrides": {"nonexistent": {}}}}, "synthetic.overrides.nonexistent: 'nonexistent' is not a variant"),
    # a per-variant λ of the LM (text.lm.lambdas) for a variant it does not run
    ({"text": {"lm": {"lambdas": {"mma": 3.0}}}},
     "config key text.lm.lambdas.mma: text.lm does not run variant 'mma'"),
])
def test_bad_variant_parameters_fail_at_config_check(over, message):
    with pytest.raises(ValueError) as e:
        check_config(deep_merge(BASE, over), base=BASE)
    assert message in str(e.value)


def test_inherited_overrides_of_variants_a_smaller_config_does_not_run_are_not_errors():
    # test.yaml does not run lloyd, but inherits tammes.overrides.lloyd from config.yaml and
    # cannot delete it; the same override written into the smaller config itself is an error
    cfg = layered("test.yaml")
    assert "lloyd" in cfg["tammes"]["overrides"] and "lloyd" not in cfg["tammes"]["methods"]
    check_config(cfg, base=BASE)
    changed = deep_merge(cfg, {"tammes": {"overrides": {"lloyd": {"n_samples": 7}}}})
    with pytest.raises(ValueError, match="tammes.overrides.lloyd: tammes does not run variant 'lloyd'"):
        check_config(changed, base=BASE)


def test_job_specs_are_checked():
    cfg = deep_merge(layered("test.yaml"), {"synthetic": {"batch_size": 1}})
    with pytest.raises(ValueError, match=r"config key synthetic.main .*spec key 'batch_size' must be an integer >= 2, got 1"):
        check_config(cfg, base=BASE)


@pytest.mark.parametrize("lambdas,message", [
    ({"nonexistent": 1.0}, "config key text.lm.lambdas.nonexistent: not a variant defined under methods:"),
    ({"mhe_rbf_chordal": -1.0}, "config key text.lm.lambdas.mhe_rbf_chordal: must be a finite number >= 0, got -1.0"),
    ({"mhe_rbf_chordal": "10"}, "config key text.lm.lambdas.mhe_rbf_chordal: must be a finite number >= 0, got '10'"),
])
def test_bad_per_variant_lm_lambdas_fail_at_config_check(lambdas, message):
    from dispersion.pipeline.text import check as check_text_config

    with pytest.raises(ValueError) as e:
        check_text_config(deep_merge(BASE, {"text": {"lm": {"lambdas": lambdas}}}))
    assert message in str(e.value)


def test_per_variant_lm_lambda_replaces_train_lambda_for_that_variant_only():
    from dispersion.pipeline.text import lm_spec

    cfg = deep_merge(BASE, {"text": {"lm": {"lambdas": {"sliced": 2.5}}}})
    assert lm_spec(cfg, "sliced")["train"]["lambda"] == 2.5
    assert lm_spec(cfg, "lloyd")["train"]["lambda"] == cfg["text"]["lm"]["train"]["lambda"]


def test_optimizer_study_sweeps_each_learning_rate_per_optimizer():
    from dispersion.pipeline.synthetic import synthetic_specs

    specs = {k: v for k, v in synthetic_specs(BASE).items() if k[0] == "optimizers"}
    o = BASE["synthetic"]["optimizers"]
    assert len(specs) == len(o["optimizers"]) * len(o["lrs"]) * len(o["methods"]) * len(o["seeds"])
    for (_, cell, _, _), spec in specs.items():
        assert cell == f"{spec['optimizer']}_lr{spec['lr']:g}"
    # without lrs: one cell per optimiser at synthetic.lr (the configs that do not sweep)
    cfg = deep_merge(BASE, {"synthetic": {"optimizers": {"lrs": None}}})
    cfg["synthetic"]["optimizers"].pop("lrs")
    cells = {(k[1], v["lr"]) for k, v in synthetic_specs(cfg).items() if k[0] == "optimizers"}
    assert cells == {(opt, BASE["synthetic"]["lr"]) for opt in o["optimizers"]}
