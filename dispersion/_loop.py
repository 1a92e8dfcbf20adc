"""What every training loop of the package shares: the progress bar and the device
synchronisation that makes wall-clock timings of CUDA work honest.

Used by :func:`dispersion.optim.optimize`, :func:`dispersion.training.train_classifier`,
:func:`dispersion.training.train_steps` (the loop of the language model and of the translation
runs), :func:`dispersion.disperse`, :func:`dispersion.audit` and the sentence encoder. tqdm is
imported only when a bar is shown.
"""

from __future__ import annotations

import torch

__all__ = ["progress_bar", "synchronize"]


class _NoBar:
    """Stands in for a tqdm bar when progress is off: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self):  # pragma: no cover - iterables are wrapped by progress_bar itself
        return iter(())


def progress_bar(total: int | None = None, *, desc: str | None = None, unit: str = "step", enabled: bool = True,
                 iterable=None, **kwargs):
    """A ``tqdm.auto`` bar over ``total`` units (or wrapping ``iterable``), or, with
    ``enabled=False``, a bar whose methods do nothing (``iterable`` is then returned as it is).

    Extra ``kwargs`` go to tqdm (``leave``, ``mininterval``…); ``dynamic_ncols`` is on.
    """
    if not enabled:
        return iterable if iterable is not None else _NoBar()
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, total=total, desc=desc, unit=unit, **kwargs)


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (a no-op off CUDA), before a ``time.perf_counter``
    reading: CUDA kernels run asynchronously, so a reading without it times the launch only."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
