"""The text experiments in the workflow (dispersion.pipeline.text): the config check."""

import pytest

from conftest import text_config
from dispersion.pipeline.text import check


def test_config_check_names_the_key():
    cfg = text_config()
    cfg["text"]["lm"]["methods"].append("nope")
    with pytest.raises(ValueError, match="text.lm.methods"):
        check(cfg)
