"""Experiment families; each module exposes ``run(spec, out_dir) -> summary``."""
