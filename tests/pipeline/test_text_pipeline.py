"""The text experiments in the workflow (dispersion.pipeline.text): the config check."""

import pytest

from dispersion.pipeline.text import check


def _config():
    return {
        "results_dir": "r", "figures_dir": "f", "device": "cpu",
        "methods": {"sliced": {"method": "sliced", "label": "Sliced", "params": {"n_slices": 1}},
                    "lloyd": {"method": "lloyd", "label": "Lloyd", "params": {"n_samples": 100}},
                    "mhe_rbf_chordal": {"method": "mhe", "label": "MHE RBF (d_R)",
                                        "params": {"kernel": "gaussian", "distance": "chordal", "gamma": 1.0}}},
        "text": {
            "seeds": [1],
            "encoder": {"max_length": 64, "batch_size": 32},
            "classify": {"run": ["rotten_tomatoes"], "datasets": {"rotten_tomatoes": {"max_train": 60, "max_test": 30}},
                         "dims": [4], "methods": ["softmax", "sliced"],
                         "train": {"epochs": 3, "batch_size": 16, "eval_every": 1},
                         "prototypes": {"steps": 150, "lr": 0.05}},
            "lm": {"corpora": ["debates"], "tokenizer": "word", "vocab": {"max_size": 300, "min_count": 1},
                   "methods": ["none", "mhe_rbf_chordal", "euclidean", "lloyd"],
                   "overrides": {"mhe_rbf_chordal": {"gamma": 0.01}, "lloyd": {"n_samples": 100}},
                   "model": {"dim": 16, "n_layers": 1, "n_heads": 2, "max_len": 16, "dropout": 0.0},
                   "train": {"steps": 6, "batch_size": 4, "seq_len": 16, "warmup": 1, "log_every": 3,
                             "eval_tokens": 300, "reg_rows": 64}},
        },
    }


def test_config_check_names_the_key():
    cfg = _config()
    cfg["text"]["lm"]["methods"].append("nope")
    with pytest.raises(ValueError, match="text.lm.methods"):
        check(cfg)
