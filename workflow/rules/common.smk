# Shared set-up of the rule files: config checks, output paths, the command line. The helper
# functions live in dispersion/workflow_helpers.py, not here.
import sys

from dispersion.workflow_helpers import (
    Paths,
    base_config,
    check_config,
    spec_json,
    synthetic_specs,
    tammes_spec,
)

check_config(config, base=base_config(workflow.basedir))

paths = Paths(config)
SYNTHETIC_SPECS = synthetic_specs(config)

# The interpreter that runs Snakemake runs the jobs too, so `.venv/bin/snakemake` works
# without activating the environment (with --sdm conda, the rules' conda env provides it).
PYTHON = (
    "python"
    if "conda" in str(workflow.deployment_settings.deployment_method).lower()
    else sys.executable
)
DISPERSION = f"{PYTHON} -m dispersion"
