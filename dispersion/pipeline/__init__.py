"""From the workflow's config to runs: everything that reads the Snakemake config.

The library core (``sphere``, ``metrics``, ``regularizers``, ``optim``, ``prototypes``,
``training``, ``data``, ``models``, ``report``) and the experiments (``experiments/<name>.py``,
each one ``run(spec, out_dir) -> summary``) never read the config; this package turns it into
run specs, output paths and checks, for the rule files (``workflow/rules/*.smk``) and the tests:

* :mod:`~dispersion.pipeline.config` — loading and layering configs, resolving a method
  variant (:func:`method_spec`), the deterministic JSON of a spec (:func:`spec_json`);
* :mod:`~dispersion.pipeline.checks` — what a JSON schema cannot check (:func:`check_config`);
* :mod:`~dispersion.pipeline.paths` — the output roots (:class:`Paths`);
* one module per experiment — :mod:`~dispersion.pipeline.tammes`,
  :mod:`~dispersion.pipeline.synthetic`, :mod:`~dispersion.pipeline.image`,
  :mod:`~dispersion.pipeline.text`, :mod:`~dispersion.pipeline.audit`: which runs the config asks for, the spec of each, where it
  writes (a ``*Paths`` class) and its ``run_specs``;
* :mod:`~dispersion.pipeline.paper` — the output roots the paper is drawn from and the
  ``paper`` rule's inputs (:func:`~dispersion.pipeline.paper.paper_inputs`);
* :mod:`~dispersion.pipeline.committed` — every run of a config with the spec it records
  (:func:`run_specs`), and the check that committed runs still agree with the configs
  (:func:`committed_run_mismatches`, used by ``tests/pipeline/test_committed_runs.py``).

Imports only the standard library and PyYAML at module level, so the rule files load fast.
"""

from .checks import check_config
from .committed import committed_run_mismatches, run_specs, spec_differences
from .config import base_config, method_spec, shipped_configs, spec_json, used_variants
from .paths import Paths

__all__ = [
    "Paths",
    "base_config",
    "check_config",
    "committed_run_mismatches",
    "method_spec",
    "run_specs",
    "shipped_configs",
    "spec_differences",
    "spec_json",
    "used_variants",
]
