"""The audit experiment in the workflow (dispersion.pipeline.audit): specs, paths and the
config checks naming the key."""

import os

import pytest

from conftest import ROOT, shipped
from dispersion._config import deep_merge
from dispersion.experiments import audit as exp
from dispersion.pipeline import check_config, run_specs
from dispersion.pipeline.audit import (
    AuditPaths,
    audit_posthoc_runs,
    audit_posthoc_spec,
    audit_spec,
    audit_tables,
    scale_name,
)
from dispersion.pipeline.audit import check as check_audit_config

CONFIGS = shipped()
BASE = CONFIGS["config.yaml"]


def test_paper_config_specs():
    cfg = BASE
    assert audit_tables(cfg) == ["minilm_rotten_tomatoes", "minilm_tweets", "minilm_debates", "glove_6b_50d"]
    glove = audit_spec(cfg, "glove_6b_50d")
    assert glove["source"] == {"type": "glove", "max_rows": 100000} and glove["path"] is None
    assert glove["reference_draws"] == 2 and audit_spec(cfg, "minilm_tweets")["reference_draws"] == 5
    rt = audit_spec(cfg, "minilm_rotten_tomatoes")
    assert rt["path"] == os.path.join("data", "audit", "minilm_rotten_tomatoes.pt")
    assert rt["source"]["encoder"] == {"name": "minilm", "max_length": 128, "batch_size": 64}
    runs = audit_posthoc_runs(cfg)
    methods = {"mhe_rbf_chordal", "sliced", "ssw", "uniformity", "koleo", "mma"}
    assert {r["method"] for r in runs} == methods and {r["fidelity"] for r in runs} == {"none", "knn_margin"}
    assert len(runs) == 12
    spec = audit_posthoc_spec(cfg, "mhe_rbf_chordal", "none", 0)
    assert spec["weight"] == 0.0 and spec["margin"] is None and spec["params"]["gamma"] == 0.5
    assert audit_posthoc_spec(cfg, "uniformity", "knn_margin", 0)["weight"] == 0.1
    for t in audit_tables(cfg):
        exp.check_run_spec(audit_spec(cfg, t))
    assert scale_name(cfg) == "paper" and scale_name(CONFIGS["quick.yaml"]) == "quick"


def test_quick_config_audits_the_lm_tables():
    cfg = CONFIGS["quick.yaml"]
    assert [t for t in audit_tables(cfg) if t.startswith("lm_")] == ["lm_none", "lm_sliced", "lm_mhe_rbf_chordal"]
    spec = audit_spec(cfg, "lm_sliced")
    assert spec["source"] == {"type": "lm", "method": "sliced", "seed": 42}
    assert spec["path"] == os.path.join("quick", "results", "text", "lm", "runs", "sliced", "seed42", "embedding.pt")
    assert audit_spec(cfg, "glove_6b_50d")["source"]["max_rows"] == 20000
    assert AuditPaths(cfg).posthoc_input() == [os.path.join("quick", "data", "audit", "minilm_rotten_tomatoes.pt")]


@pytest.mark.parametrize("name", ["config.yaml", "quick.yaml", "test.yaml"])
def test_shipped_audit_configs_pass(name):
    check_config(CONFIGS[name], base=BASE)
    check_audit_config(CONFIGS[name])


def test_run_specs_cover_the_audit_runs():
    specs = run_specs(BASE)
    assert specs[os.path.join("results", "audit", "runs", "glove_6b_50d", "summary.json")] == audit_spec(BASE, "glove_6b_50d")
    key = os.path.join("results", "audit", "posthoc", "runs", "ssw", "knn_margin", "seed0", "summary.json")
    assert specs[key] == audit_posthoc_spec(BASE, "ssw", "knn_margin", 0)


@pytest.mark.parametrize("over,message", [
    ({"audit": {"run": ["nope"]}}, "config key audit.run: 'nope' is not a table under audit.tables"),
    ({"audit": {"tables": {"minilm_tweets": {"dataset": "twitter"}}}},
     "config key audit.tables.minilm_tweets.dataset: unknown dataset 'twitter'"),
    ({"audit": {"tables": {"glove_6b_50d": {"type": "word2vec"}}}},
     "config key audit.tables.glove_6b_50d.type: must be 'minilm' or 'glove'"),
    ({"audit": {"lm_tables": ["mma"]}}, "config key audit.lm_tables: 'mma' is not run by the text LM"),
    ({"audit": {"lm_tables": ["none"]}, "text": {"lm": {"methods": ["none"], "save_embedding": False}}},
     "config key audit.lm_tables: the LM runs keep no trained table"),
    ({"audit": {"posthoc": {"methods": ["uniformity", "nonexistent"]}}},
     "config key audit.posthoc.methods: 'nonexistent' is not a variant"),
    ({"audit": {"posthoc": {"overrides": {"lloyd": {"n_samples": 10}}}}},
     "config key audit.posthoc.overrides.lloyd: audit.posthoc does not run variant 'lloyd'"),
    ({"audit": {"posthoc": {"overrides": {"uniformity": {"t": -1.0}}}}}, "config key audit.posthoc (uniformity"),
    ({"audit": {"posthoc": {"table": "elsewhere"}}}, "config key audit.posthoc.table: 'elsewhere' is not a table"),
    ({"audit": {"posthoc": {"steps": 2.5}}}, "spec key 'steps' must be an integer"),
])
def test_bad_audit_config_names_the_key(over, message):
    with pytest.raises(ValueError) as e:
        check_audit_config(deep_merge(BASE, over))
    assert message in str(e.value)


def test_schema_rejects_an_unknown_audit_key():
    from snakemake.utils import validate

    with pytest.raises(Exception, match="tabels|Additional properties"):
        validate(deep_merge(BASE, {"audit": {"tabels": {}}}), str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
