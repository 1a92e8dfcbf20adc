# Helpers shared by the rule files: paths, method variants and the checks that run before
# any job starts. Functions only; no rules here.
import json
import sys

from dispersion.workflow_helpers import check_config, method_spec

check_config(config)

RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
TABLES = f"{RESULTS}/tables"
LOGS = f"{RESULTS}/logs"

# The interpreter that runs Snakemake runs the jobs too, so `.venv/bin/snakemake` works
# without activating the environment (with --sdm conda, the rules' conda env provides it).
PYTHON = "python" if "conda" in str(workflow.deployment_settings.deployment_method).lower() else sys.executable
DISPERSION = f"{PYTHON} -m dispersion"
