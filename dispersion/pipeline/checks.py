"""The checks of a whole config that its JSON schema cannot express.

The Snakefile validates the config against its schema (types, unknown keys);
:func:`check_config` adds the rest — every method variant an experiment names exists, every
variant's parameters build a regularizer, every job's spec passes its run's own checks — so a
bad config fails before any job starts, with the key's path in the message.
"""

from __future__ import annotations

from . import audit, nmt, synthetic, tammes, text
from .config import build_checked, method_spec, section, used_variants

__all__ = ["check_config"]


def check_config(config: dict, base: dict | None = None) -> None:
    """Raise ``ValueError`` naming the key for what the schema cannot check, before any job.

    * every variant under ``methods:`` builds its regularizer;
    * every variant an experiment names exists, and builds with that experiment's
      ``overrides`` — sub-studies included (the slice counts of ``synthetic.slices`` too);
    * an override (or a per-variant λ, ``text.lm.lambdas``) names a variant that its experiment
      runs (one for a variant the experiment does not run would be silently ignored) — except one inherited
      unchanged from ``base``, the config the others are layered over (``config/config.yaml``:
      a smaller config such as ``--configfile config/quick.yaml`` cannot delete the overrides it
      inherits for variants it does not run);
    * each experiment's own checks (:func:`dispersion.pipeline.tammes.check`,
      :func:`~dispersion.pipeline.synthetic.check`, :func:`~dispersion.pipeline.text.check`,
      :func:`~dispersion.pipeline.audit.check`, :func:`~dispersion.pipeline.nmt.check`):
      the spec of every Tammes, synthetic and audit job passes the checks of its ``run`` (keys,
      types and ranges), so a job cannot fail on its spec after others have run; the text
      datasets and corpora and the audited tables exist.
    """
    for name, v in config["methods"].items():
        build_checked(v["method"], v.get("params", {}), f"methods.{name}")
    synthetic.check_variants(config)
    img = config.get("image") or {}
    for variant in img.get("matched") or []:
        if variant not in config.get("methods", {}) and variant != "uniform":
            raise ValueError(f"config key image.matched names {variant!r}, which is neither 'uniform' nor a variant "
                             f"defined under methods: (defined: {sorted(config.get('methods', {}))})")
        if not img.get("softmax_baseline", True):
            raise ValueError("config key image.matched needs image.softmax_baseline: true (the class layout "
                             "the prototypes are matched to comes from the softmax runs)")
    for exp in ("tammes", "synthetic", "image"):
        if exp not in config or "methods" not in config[exp]:
            continue
        for variant in config[exp]["methods"]:
            method_spec(config, exp, variant)
        overrides = config[exp].get("overrides", {})
        for key in overrides:
            if key not in config["methods"]:
                raise ValueError(f"config key {exp}.overrides.{key}: {key!r} is not a variant defined under methods:")
        for variant in used_variants(config, exp):
            spec = method_spec(config, exp, variant)
            where = f"{exp}.overrides.{variant}" if variant in overrides else f"methods.{variant} (in {exp})"
            build_checked(spec["method"], spec["params"], where)
    for where, per_variant in (("tammes", "overrides"), ("synthetic", "overrides"), ("image", "overrides"),
                               ("text.classify", "overrides"), ("text.lm", "overrides"), ("text.lm", "lambdas"),
                               ("nmt", "overrides"), ("nmt", "lambdas")):
        overrides = section(config, where).get(per_variant) or {}
        used = used_variants(config, where)
        for key, value in overrides.items():
            if key not in config["methods"] or key in used:
                continue
            inherited = base is not None and (section(base, where).get(per_variant) or {}).get(key) == value \
                and key in used_variants(base, where)
            if not inherited:
                raise ValueError(f"config key {where}.{per_variant}.{key}: {where} does not run variant {key!r} "
                                 f"(it runs {used}), so the {per_variant[:-1]} would be ignored; remove it")
    tammes.check(config)
    synthetic.check(config)
    text.check(config)
    audit.check(config)
    nmt.check(config)
