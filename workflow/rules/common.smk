# Shared set-up of the rule files: config checks, output paths, the command line. Everything
# that reads the config lives in the package dispersion.pipeline (one module per experiment),
# not here.
import sys

from dispersion.pipeline import Paths, base_config, check_config, spec_json
from dispersion.pipeline.audit import (
    AuditPaths,
    audit_embed_spec,
    audit_posthoc_spec,
    audit_spec,
    scale_name,
)
from dispersion.pipeline.image import ImagePaths, check_imagenet200, run_spec
from dispersion.pipeline.nmt import NmtPaths, nmt_spec
from dispersion.pipeline.nmt import corpus_spec as nmt_corpus_spec
from dispersion.pipeline.synthetic import SyntheticPaths, synthetic_specs
from dispersion.pipeline.tammes import TammesPaths, tammes_spec
from dispersion.pipeline.text import (
    TextPaths,
    classify_spec,
    corpus_spec,
    features_spec,
    lm_spec,
)

check_config(config, base=base_config(workflow.basedir))

paths = Paths(config)
tammes_paths = TammesPaths(config)
synthetic_paths = SyntheticPaths(config)
image_paths = ImagePaths(config)
text_paths = TextPaths(config)
audit_paths = AuditPaths(config)
nmt_paths = NmtPaths(config)
SYNTHETIC_SPECS = synthetic_specs(config)

# The interpreter that runs Snakemake runs the jobs too, so `.venv/bin/snakemake` works
# without activating the environment (with --sdm conda, the rules' conda env provides it).
PYTHON = (
    "python"
    if "conda" in str(workflow.deployment_settings.deployment_method).lower()
    else sys.executable
)
DISPERSION = f"{PYTHON} -m dispersion"
