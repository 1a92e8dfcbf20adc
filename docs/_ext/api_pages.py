"""Write the API reference pages (``docs/reference/*.md``, git-ignored) at build time.

One page per group of modules; every module of the package (found on disk, so a new module
appears without editing the docs) gets a heading and an ``automodule`` with its members, each
object documented once, in the module that defines it: members a module only re-exports (its
``__all__`` names defined elsewhere) are left to their own module, and a package's
``__init__`` shows its docstring only. ``docs/api.md`` (written by hand) lists the public names
of ``dispersion.__all__`` and links here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: page -> (title, intro, the modules or packages on it, in order). A package stands for itself
#: and all its modules. Top-level modules named by no group go to "other".
GROUPS: dict[str, tuple[str, str, list[str]]] = {
    "core": ("Core: metrics, sphere, optimisers, prototypes, training",
             "The math and the training loops a model of your own uses; they import torch, numpy, scipy, "
             "geoopt, POT, power-spherical and tqdm only.",
             ["dispersion.metrics", "dispersion.sphere", "dispersion.optim", "dispersion.prototypes",
              "dispersion.training", "dispersion.distributed", "dispersion.runio"]),
    "regularizers": ("Regularizers", "The paper's dispersion regularizers, one module per family.",
                     ["dispersion.regularizers"]),
    "audit": ("Audit and post-hoc dispersion", "Measure an embedding table against uniform points; spread it "
              "while keeping its neighbourhoods.", ["dispersion.embedding_audit", "dispersion.posthoc"]),
    "data": ("Data", "Dataset loaders (``docs/data.md`` lists every source).", ["dispersion.data"]),
    "models": ("Models", "ResNets and text models.", ["dispersion.models"]),
    "experiments": ("Experiments", "One ``run(spec, out_dir)`` per experiment family.", ["dispersion.experiments"]),
    "pipeline": ("Pipeline", "Everything that reads the workflow's config: runs, specs, paths, checks.",
                 ["dispersion.pipeline"]),
    "report": ("Reports", "Run files to tidy CSVs, tables (Markdown + LaTeX) and figures (PDF + PNG).",
               ["dispersion.report"]),
    "cli": ("Command line", "``python -m dispersion <command>``, what the workflow's rules call.",
            ["dispersion.cli"]),
    "internals": ("Internals", "Private helpers that the public docstrings refer to: argument checks, the "
                  "block sweep of the exact metrics, quiet imports, progress bars, spec checking.",
                  ["dispersion._checks", "dispersion._sweep", "dispersion._transforms", "dispersion._imports",
                   "dispersion._loop", "dispersion._config"]),
    "other": ("Other modules", "Modules not yet placed in a group of ``docs/_ext/api_pages.py``.", []),
}

SKIP = {"dispersion.__main__"}  # importing it runs the command line


def package_modules(root: Path) -> list[str]:
    """Every module name of the package ``root`` (a folder with ``__init__.py``), sorted, packages
    before their modules."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        name = ".".join(parts)
        if name not in SKIP and "__pycache__" not in rel.parts:
            out.append(name)
    return sorted(set(out), key=lambda n: (n.split("."), n))


def assign(modules: list[str]) -> dict[str, list[str]]:
    """page -> modules, by GROUPS (a package takes its modules), the rest to ``other``."""
    pages: dict[str, list[str]] = {page: [] for page in GROUPS}
    for name in modules:
        if name == "dispersion":
            continue  # docs/api.md
        home = "other"
        for page, (_, _, members) in GROUPS.items():
            if any(name == m or name.startswith(m + ".") for m in members):
                home = page
                break
        pages[home].append(name)
    for page, (_, _, members) in GROUPS.items():  # the GROUPS order within a page
        order = {m: i for i, m in enumerate(members)}
        pages[page].sort(key=lambda n: (next((order[m] for m in order if n == m or n.startswith(m + ".")), 99),
                                        n.count("."), n))
    return pages


def _foreign_members(name: str) -> list[str]:
    """Names in a module's ``__all__`` whose object is defined in another module (re-exports)."""
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # autodoc will report it with the module's name
        logger.warning(f"api_pages: cannot import {name}: {e}")
        return []
    out = []
    for attr in getattr(mod, "__all__", []):
        obj = getattr(mod, attr, None)
        home = getattr(obj, "__module__", None)
        if home is not None and home != name and (callable(obj) or isinstance(obj, type)):
            out.append(attr)
    return out


def undocumented_data(name: str) -> list[str]:
    """Public module-level data of ``name`` (UPPER_CASE names, or names of its ``__all__``) that
    autodoc leaves out because no ``#:`` comment or docstring documents them: the defaults dicts
    of the experiments (``TRAIN_DEFAULTS``...), which docstrings refer to. Callables are left out
    (their value is no documentation)."""
    mod = importlib.import_module(name)
    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    assigned = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        assigned += [t.id for t in targets if isinstance(t, ast.Name)]
    documented = {attr for (cls, attr) in ModuleAnalyzer.for_module(name).find_attr_docs() if not cls}
    public = set(getattr(mod, "__all__", ()))
    return [n for n in dict.fromkeys(assigned)
            if not n.startswith("_") and (n.isupper() or n in public) and n not in documented
            and hasattr(mod, n) and not callable(getattr(mod, n))]


def module_block(name: str) -> str:
    """The Markdown of one module: heading, then its automodule (and its undocumented data)."""
    is_package = (Path(importlib.import_module(name).__file__).name == "__init__.py")
    options = ["   :no-members:"] if is_package else ["   :members:", "   :show-inheritance:"]
    extra = []
    if not is_package:
        foreign = _foreign_members(name)
        if foreign:
            options.append("   :exclude-members: " + ", ".join(foreign))
        extra = [line for n in undocumented_data(name) for line in ("", f".. autodata:: {name}.{n}")]
    return "\n".join([f"## `{name}`", "", "```{eval-rst}", f".. automodule:: {name}", *options, *extra, "```", ""])


def page_text(page: str, modules: list[str]) -> str:
    title, intro, members = GROUPS[page]
    lines = ["<!-- Generated by docs/_ext/api_pages.py at build time; do not edit. -->", "", f"# {title}", ""]
    if not (len(members) == 1 and modules and modules[0] == members[0] and "." in members[0]
            and (Path(importlib.import_module(members[0]).__file__).name == "__init__.py")):
        lines += [intro, ""]  # a one-package page opens with the package's own docstring instead
    if not modules:
        lines.append("None at present.")
    lines += [module_block(m) for m in modules]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def generate(app: Sphinx) -> None:
    root = Path(app.confdir).parent / "dispersion"
    out = Path(app.srcdir) / "reference"
    pages = assign(package_modules(root))
    for page, modules in pages.items():
        _write_if_changed(out / f"{page}.md", page_text(page, modules))
    for stale in out.glob("*.md"):
        if stale.stem not in pages:
            stale.unlink()


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
