"""Resolve a cross-reference to a re-exported name where the object itself is documented.

Every object of the package is documented once, in the module that defines it (the reference
pages of ``api_pages``). Docstrings also name objects by a public alias — ``dispersion.build``,
``dispersion.METHODS``, ``dispersion.regularizers.Sliced`` — or by a bare name imported into the
module they are written in (``MHE`` inside ``dispersion.regularizers.uniformity``). When the
Python domain does not find such a target, this handler imports it (the alias, or the bare name
in the module and class of the reference) and links to the documented name of the same object;
failing that, a bare name that exactly one documented object of the package has (``provenance``
written in a module that imports it only inside a function) links to that object. Anything else
stays unresolved, and the build (``-W``) fails on it.
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

_MISSING = object()
#: id(object) -> documented names, for the current build (rebuilt when sources are read).
_INDEX: dict[int, list[str]] = {}


def _import(path: str) -> Any:
    """The object at a dotted ``path`` (a module, or attributes of the longest importable
    module prefix), or ``_MISSING``."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except Exception:
            return _MISSING
        return obj
    return _MISSING


def _is_identifiable(obj: Any) -> bool:
    """Objects that identity names unambiguously (not small ints, strings, None, ...)."""
    return not isinstance(obj, (int, float, str, bytes, bool, type(None)))


def _documented(env) -> dict[int, list[str]]:
    """id(object) -> the documented names of the Python domain that are that object."""
    if not _INDEX:
        for name, entry in env.get_domain("py").objects.items():
            if getattr(entry, "aliased", False):
                continue
            obj = _import(name)
            if obj is not _MISSING:
                _INDEX.setdefault(id(obj), []).append(name)
    return _INDEX


def _candidates(node) -> list[str]:
    target = node["reftarget"].lstrip(".~")
    mod, cls = node.get("py:module"), node.get("py:class")
    out = [target]
    if mod:
        out.append(f"{mod}.{target}")
        if cls:
            out.append(f"{mod}.{cls}.{target}")
    return [c for c in out if c.startswith("dispersion")]


def _by_last_name(env, target: str) -> list[str]:
    """Documented names whose last component is ``target``'s (a bare name written in a context
    that does not import it, e.g. an autosummary line): only a unique match is used."""
    last = target.lstrip(".~").rsplit(".", 1)[-1]
    return [name for name, entry in env.get_domain("py").objects.items()
            if name.rsplit(".", 1)[-1] == last and not getattr(entry, "aliased", False)
            and name.startswith("dispersion")]


def resolve(app: Sphinx, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    for path in _candidates(node):
        obj = _import(path)
        if obj is _MISSING:
            continue
        last = path.rsplit(".", 1)[-1]
        names = _documented(env).get(id(obj), [])
        if not _is_identifiable(obj):
            names = [n for n in names if n.rsplit(".", 1)[-1] == last]
        if len(names) >= 1:
            names.sort(key=lambda n: (n.rsplit(".", 1)[-1] != last, len(n)))
            ref = domain.resolve_xref(env, node["refdoc"], app.builder, "obj", names[0], node, contnode)
            if isinstance(ref, nodes.Element):
                return ref
    unique = _by_last_name(env, node["reftarget"])
    if len(unique) == 1:
        ref = domain.resolve_xref(env, node["refdoc"], app.builder, "obj", unique[0], node, contnode)
        if isinstance(ref, nodes.Element):
            return ref
    return None


def _clear(app: Sphinx, env, docnames) -> None:
    _INDEX.clear()


def setup(app: Sphinx) -> dict:
    app.connect("env-before-read-docs", _clear)
    app.connect("missing-reference", resolve, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
