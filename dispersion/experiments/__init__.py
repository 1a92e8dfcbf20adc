"""The experiments of the paper, one module each, each one function
``run(spec, out_dir, *, progress=True) -> summary`` that writes ``metrics.jsonl`` and
``summary.json`` into ``out_dir``:

* :mod:`~dispersion.experiments.tammes` — few points in low dimension (arXiv:2502.08231, §4.1);
* :mod:`~dispersion.experiments.synthetic` — large-scale dispersion and its studies (§4.2);
* :mod:`~dispersion.experiments.image` — image classification with prototypes (§4.3);
* :mod:`~dispersion.experiments.text_classify` — text classification with prototypes (§4.4);
* :mod:`~dispersion.experiments.text_lm` — a language model with a spherical vocabulary (§4.4).

A spec is a plain dict (JSON); the workflow builds them from its config in
:mod:`dispersion.pipeline`, the command line (:mod:`dispersion.cli`) passes them on.
"""
