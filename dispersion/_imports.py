"""Import third-party modules without their import-time deprecation noise.

geoopt and POT decorate functions with ``torch.jit.script`` at import time, and torch >= 2.10
warns about that (``FutureWarning: torch.jit.script is deprecated``) once per process. The
warning concerns their code, not a user's; :func:`quiet_import` silences exactly that message
during the import and leaves every other warning, and the global warning filters, untouched.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

__all__ = ["quiet_import"]

_JIT_SCRIPT_DEPRECATION = r"`torch.jit.script` is deprecated"


def quiet_import(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with torch's ``torch.jit.script`` deprecation warning
    ignored for the duration of the import. Raises what the import raises (``ImportError``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_SCRIPT_DEPRECATION, category=FutureWarning)
        return importlib.import_module(name)
