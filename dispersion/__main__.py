"""``python -m dispersion``: the command line of :mod:`dispersion.cli`."""
from .cli import main
raise SystemExit(main())
