"""Generic classifier training: a network producing (B, D) outputs and one of two heads.

* :class:`PrototypeHead` — Hyperspherical Prototype Networks (Mettes, van der Pol & Snoek,
  NeurIPS 2019, Eq. 4; the image experiment of arXiv:2502.08231): the outputs are compared with
  fixed class prototypes on S^{D−1} by cosine; loss Σ_i (1 − cos(f(x_i), p_{y_i}))², prediction =
  the nearest prototype (largest cosine). The loss and the prediction are
  :func:`dispersion.prototypes.prototype_loss` and :func:`dispersion.prototypes.prototype_predict`.
* :class:`SoftmaxHead` — the baseline: a C-way linear layer on the D outputs and softmax
  cross-entropy; prediction = argmax of the logits.

:func:`train_classifier` runs the epoch loop (SGD with momentum and weight decay, a
``MultiStepLR`` schedule, optional bf16 autocast and ``channels_last`` on CUDA) and
:func:`evaluate` measures top-1 accuracy. Both take any iterable of ``(x, y)`` batches: a
``torch.utils.data.DataLoader``, or a :class:`TensorLoader` over in-memory tensors (which keeps
the data on the training device and shuffles there — no worker processes, no host copies).
The image experiment and the text experiment (frozen-feature classification: ``model`` is a
small head on precomputed features) both use this module.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from .prototypes import prototype_loss, prototype_predict

__all__ = [
    "PrototypeHead",
    "SoftmaxHead",
    "TensorLoader",
    "as_loader",
    "evaluate",
    "train_classifier",
]


class PrototypeHead(nn.Module):
    """Fixed hyperspherical prototypes as a classification head.

    Parameters
    ----------
    prototypes : torch.Tensor
        (C, D) float tensor with unit rows (validated by the prototype functions: ``ValueError``
        otherwise). Stored as a buffer (moves with ``.to(device)``, saved in the state dict,
        never trained).
    reduction : {"sum", "mean"}
        How the per-sample losses of a batch are combined. ``"sum"`` is what HPN's training
        scripts do (``(1 - cos).pow(2).sum()``) and what their learning rate 0.01 is tuned for;
        ``"mean"`` divides the gradient by the batch size.

    ``forward(z)`` returns the cosine similarities (B, C) of the outputs ``z`` (B, D) with the
    prototypes (their argmax is the prediction); ``loss(z, y)`` and ``predict(z)`` are computed in float32 whatever the autocast
    dtype of ``z``.
    """

    def __init__(self, prototypes: torch.Tensor, reduction: str = "sum"):
        super().__init__()
        if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2:
            raise ValueError("prototypes must be a (C, D) tensor")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        from ._checks import check_points

        check_points(prototypes.detach().float(), "prototypes")  # validated once, here
        self.register_buffer("prototypes", prototypes.detach().float().clone())
        self.reduction = reduction

    @property
    def n_classes(self) -> int:
        return int(self.prototypes.shape[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(z.float(), dim=1) @ self.prototypes.T

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return prototype_loss(z.float(), self.prototypes, y, reduction=self.reduction, check=False)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return prototype_predict(z.float(), self.prototypes, check=False)


class SoftmaxHead(nn.Module):
    """A C-way linear layer on (B, D) outputs with softmax cross-entropy (mean over the batch).

    ``forward(z)`` returns the logits (B, C); ``loss(z, y)`` the cross-entropy; ``predict(z)``
    the argmax class. The linear layer is trained with the network.
    """

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        for name, v in (("dim", dim), ("n_classes", n_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.linear = nn.Linear(dim, n_classes)

    @property
    def n_classes(self) -> int:
        return self.linear.out_features

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.linear(z).float(), y)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).argmax(dim=1)


class TensorLoader:
    """Mini-batches ``(x, y)`` from in-memory tensors, kept on ``device``.

    Parameters
    ----------
    x : torch.Tensor
        Inputs, shape (N, ...), any dtype (uint8 images stay uint8 until ``transform``).
    y : torch.Tensor
        int64 labels, shape (N,).
    batch_size : int
    shuffle : bool
        A new permutation every epoch, drawn on the CPU from ``generator`` (the same order on
        every device for a given seed).
    generator : torch.Generator, optional
        CPU generator for the permutation.
    transform : callable, optional
        ``transform(x_batch, train)`` → model input, applied on ``device`` (e.g.
        :class:`dispersion.data.images.BatchAugment`); ``train`` is ``shuffle``.
    drop_last : bool
        Drop the last incomplete batch.
    device : torch.device or str, optional
        Where the tensors live (default: where ``x`` is).

    Raises ``ValueError`` if ``x`` and ``y`` differ in length or ``batch_size < 1``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        transform: Callable[[torch.Tensor, bool], torch.Tensor] | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("x and y must be torch tensors")
        if x.shape[0] != y.shape[0] or y.dim() != 1:
            raise ValueError(f"x (N, ...) and y (N,) must have the same N, got {tuple(x.shape)} and {tuple(y.shape)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        device = torch.device(device) if device is not None else x.device
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator, self.transform = generator, transform

    def __len__(self) -> int:
        n = self.y.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def n_samples(self) -> int:
        return int(self.y.shape[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.y.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min(n, (b + 1) * self.batch_size))
            idx = order[sl] if order is not None else sl
            xb, yb = self.x[idx], self.y[idx]
            if self.transform is not None:
                xb = self.transform(xb, self.shuffle)
            yield xb, yb


def as_loader(data, batch_size: int = 128, *, shuffle: bool = False, generator=None, transform=None):
    """A batch iterable from ``data``: a ``(x, y)`` tuple of tensors → :class:`TensorLoader`;
    any other iterable of batches (e.g. a ``DataLoader``) is returned as is."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorLoader(data[0], data[1], batch_size, shuffle=shuffle, generator=generator, transform=transform)
    if not hasattr(data, "__iter__"):
        raise TypeError(f"data must be an (x, y) tuple of tensors or an iterable of batches, got {type(data).__name__}")
    return data


def _prepare(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool):
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    head: nn.Module,
    loader: Iterable,
    *,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
) -> dict:
    """Top-1 accuracy and mean loss of ``head.predict(model(x))`` over ``loader``.

    Puts ``model`` and ``head`` in eval mode (batch-norm running statistics) and back into the
    mode they had. Returns ``{"accuracy": float in [0, 1], "loss": mean per-sample loss, "n":
    number of examples}``; ``loss`` is the head's loss with reduction "mean"-equivalent.
    """
    device = torch.device(device)
    was = (model.training, head.training)
    model.eval(), head.eval()
    correct, total, loss_sum = 0, 0, 0.0
    try:
        for x, y in as_loader(loader):
            x, y = _prepare(x, y, device, channels_last)
            with _autocast(device, amp):
                z = model(x)
            z = z.float()
            correct += (head.predict(z) == y).sum().item()
            loss_sum += _loss_sum(head, z, y)
            total += y.numel()
    finally:
        model.train(was[0]), head.train(was[1])
    if total == 0:
        raise ValueError("loader yielded no examples")
    return {"accuracy": correct / total, "loss": loss_sum / total, "n": total}


def _loss_sum(head: nn.Module, z: torch.Tensor, y: torch.Tensor) -> float:
    loss = head.loss(z, y).item()
    return loss if getattr(head, "reduction", "mean") == "sum" else loss * y.numel()


def train_classifier(
    model: nn.Module,
    head: nn.Module,
    train_loader: Iterable,
    *,
    epochs: int,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    milestones: Iterable[int] = (),
    gamma: float = 0.1,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    eval_loader: Iterable | None = None,
    eval_every: int = 1,
    log: Callable[[dict], None] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> list[dict]:
    """Train ``model`` (and a trainable ``head``) with SGD; return one record per epoch.

    Optimiser: ``torch.optim.SGD(lr, momentum, weight_decay)`` on the parameters of ``model``
    and ``head``; schedule: ``MultiStepLR(milestones, gamma)`` stepped once per epoch (the HPN
    schedule is lr 0.01, ×0.1 at epochs 100 and 200 of 250). ``amp=True`` autocasts the forward
    pass to bfloat16 on CUDA (ignored on the CPU; the loss is always computed in float32);
    ``channels_last=True`` converts the model and 4-D inputs to the channels-last memory format.

    Each epoch record holds ``epoch`` (1-based), ``lr``, ``train_loss`` (mean per-sample loss),
    ``train_accuracy`` (on the augmented batches, in train mode), ``epoch_time_s`` (training
    only; CUDA is synchronised), ``samples_per_s`` and, every ``eval_every`` epochs and at the
    last, ``eval_accuracy``/``eval_loss`` on ``eval_loader``. ``log`` is called with each record.

    Raises ``ValueError`` for ``epochs < 1`` or a non-finite training loss (divergence).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be an int >= 1, got {eval_every!r}")
    device = torch.device(device)
    model.to(device)
    head.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)
    train_loader = as_loader(train_loader)
    history: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=desc, unit="epoch", dynamic_ncols=True)
    try:
        for epoch in range(1, epochs + 1):
            model.train(), head.train()
            lr_now = opt.param_groups[0]["lr"]
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            total = 0
            t0 = time.perf_counter()
            for x, y in train_loader:
                x, y = _prepare(x, y, device, channels_last)
                with _autocast(device, amp):
                    z = model(x)
                z = z.float()
                loss = head.loss(z, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    per = loss.detach() if getattr(head, "reduction", "mean") == "sum" else loss.detach() * y.numel()
                    loss_sum += per
                    # argmax of the head's scores = its prediction, without the validation syncs
                    correct += (head(z.detach()).argmax(dim=1) == y).sum()
                total += y.numel()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            sched.step()
            if total == 0:
                raise ValueError("train_loader yielded no examples")
            train_loss = loss_sum.item() / total
            if not math.isfinite(train_loss):
                raise ValueError(f"training diverged: loss {train_loss} at epoch {epoch} (lower lr?)")
            rec = {
                "epoch": epoch,
                "lr": lr_now,
                "train_loss": train_loss,
                "train_accuracy": correct.item() / total,
                "epoch_time_s": dt,
                "samples_per_s": total / dt if dt > 0 else None,
            }
            if eval_loader is not None and (epoch % eval_every == 0 or epoch == epochs):
                ev = evaluate(model, head, eval_loader, device=device, amp=amp, channels_last=channels_last)
                rec["eval_accuracy"], rec["eval_loss"] = ev["accuracy"], ev["loss"]
            history.append(rec)
            if log is not None:
                log(rec)
            if bar is not None:
                bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k in ("train_loss", "eval_accuracy")})
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return history
