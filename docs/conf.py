"""Sphinx configuration of the documentation site (``make docs``).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors).
Two local extensions (``docs/_ext``) write pages at build time, before Sphinx reads any source:
``api_pages`` one reference page per group of modules of the package (autodoc), and
``results_pages`` the results pages from the committed tables and figures. Nothing is executed
but imports of the package (no notebook, no workflow, no training).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))  # the package from this checkout, installed or not

import dispersion  # noqa: E402

project = "hypersphere-dispersion"
author = "dispersion contributors"
copyright = "2025, dispersion contributors (MIT licence)"
release = version = dispersion.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "api_pages",
    "results_pages",
    "resolve_aliases",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
templates_path: list[str] = []

# --- MyST (Markdown pages)
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3
# The repository's Markdown files (docs/data.md, CHANGELOG.md) link to files of the repository
# that are not pages of the site; MyST leaves such links as they are.
suppress_warnings = ["myst.xref_missing"]

# --- autodoc + napoleon (the docstrings are numpy style)
autodoc_member_order = "bysource"
# every documented public name of a module, in its __all__ or not: docstrings refer to them
autodoc_default_options = {"show-inheritance": True, "ignore-module-all": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = False
autosummary_generate = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# Types stay as written ("(N, d) tensor with unit rows"), not cross-references to invented classes.
napoleon_use_param = False
napoleon_use_rtype = False
napoleon_use_ivar = False

# Every cross-reference to the package must resolve (nitpicky); references to other libraries
# and to the standard library are left as code, since the site is built offline (no intersphinx).
nitpicky = True
_EXTERNAL = ("torch", "numpy", "np", "geoopt", "ot", "scipy", "sklearn", "pandas", "pd", "matplotlib", "seaborn",
             "transformers", "safetensors", "tqdm", "snakemake", "yaml", "jsonschema", "power_spherical", "nn",
             "pathlib", "os", "io", "typing", "collections", "argparse", "tempfile", "json", "contextlib", "types",
             "numbers", "dataclasses", "importlib", "warnings", "re", "datetime", "abc", "contextvars", "enum")
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_EXTERNAL)})(\..+)?"),
    (r"py:.*", r"(Tensor|Path|Module|Generator|Number|ModuleType|Callable|Iterable|Iterator|Sequence|Mapping|Any)"),
    (r"py:.*", r"(.*\.)?_[A-Za-z0-9_]+"),  # private names: not documented, rendered as code
]

# --- HTML (furo)
html_theme = "furo"
html_title = f"dispersion {release}"
html_static_path: list[str] = []
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
html_show_sourcelink = False


# napoleon reads the first line of an attribute's docstring (``#:`` comments on module data) as
# "type: description" whenever it holds a colon; here those lines are prose ("Optimiser names:
# Riemannian ...", REGISTRY's "name -> class, in the order of arXiv:2502.08231"), so they are kept
# as written and only the sections below them are parsed.
from sphinx.ext.napoleon.docstring import NumpyDocstring  # noqa: E402


def _prose_attribute_docstring(self: NumpyDocstring) -> list[str]:
    return type(self)(self._dedent(self._consume_to_end()), self._config).lines()


NumpyDocstring._parse_attribute_docstring = _prose_attribute_docstring


# A dataclass field with a default_factory shows as "= <factory>" in its class signature, which
# is not Python: Sphinx then splits the signature at every comma ("list[tuple[str"). Write the
# factory's call instead ("= list()").
import dataclasses  # noqa: E402
import inspect  # noqa: E402
import re  # noqa: E402


def _dataclass_factories(app, what, name, obj, options, signature, return_annotation):
    if not signature or "<factory>" not in signature or not dataclasses.is_dataclass(obj):
        return None
    for f in dataclasses.fields(obj):
        if f.default_factory is not dataclasses.MISSING:
            call = getattr(f.default_factory, "__name__", "factory")
            call = f"{call}()" if call.isidentifier() else "factory()"
            signature = re.sub(rf"((?:(?<=\()|(?<=, )){re.escape(f.name)}: .*?) ?= ?<factory>", rf"\g<1> = {call}",
                               signature, count=1)
    return signature, return_annotation


# Module data without a doc comment (the experiments' defaults dicts, listed by api_pages) would
# show the docstring of its type ("dict() -> new empty dictionary..."): show none.
def _no_type_docstring(app, what, name, obj, options, lines):
    if what in ("data", "attribute") and lines:
        type_doc = getattr(type(obj), "__doc__", None)
        if isinstance(type_doc, str) and "\n".join(lines).strip() == inspect.cleandoc(type_doc).strip():
            lines.clear()


# The docstrings write absolute values and set sizes as in mathematics, |s|, |B|, |A_i ∩ B_i|;
# reStructuredText would read them as substitution references (and the package uses none), so
# such bars are escaped outside ``literals``; lines of grid tables and line blocks are left alone.
_BARS = re.compile(r"(?<![\\|\w])\|(?=[^\s|])([^|\n]*?[^\s|\\])\|(?![|A-Za-z0-9_])")


def _math_bars(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("|", "+")):
            continue
        parts = line.split("``")
        parts[::2] = [_BARS.sub(r"\\|\1\\|", part) for part in parts[::2]]
        lines[i] = "``".join(parts)


def setup(app):
    app.connect("autodoc-process-signature", _dataclass_factories)
    app.connect("autodoc-process-docstring", _no_type_docstring, priority=100)
    app.connect("autodoc-process-docstring", _math_bars, priority=600)  # after napoleon (500)
