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
The image experiment and the text classification (frozen features: ``model`` is a small
projection on precomputed features) both use this module.

Language models (the text LM experiment): :func:`train_lm` runs the step loop with the loss
CE + λ·R(E) of :func:`regularized_loss` (λ per target token or per batch,
:func:`regularizer_weight`), :func:`warmup_cosine` is its learning-rate schedule,
:func:`evaluate_lm` measures held-out perplexity and next-token accuracy, and
:func:`embedding_geometry` the dispersion of the embedding table.

Translation (the ``nmt`` experiment) shares that loop (:func:`train_steps`, of which
:func:`train_lm` is the language-model case) and adds its batches (:class:`Seq2SeqBatches`,
:func:`seq2seq_loss`), the teacher-forced evaluation (:func:`evaluate_seq2seq`), greedy decoding
(:func:`translate`) and sacreBLEU's BLEU and chrF (:func:`translation_scores`).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from . import metrics
from ._loop import progress_bar, synchronize
from .optim import make_optimizer
from .prototypes import prototype_loss, prototype_predict

__all__ = [
    "LAMBDA_PER",
    "embedding_geometry",
    "evaluate_lm",
    "lm_batch",
    "regularized_loss",
    "regularizer_weight",
    "train_lm",
    "train_steps",
    "warmup_cosine",
    "tied_table_optimizers",
    "Seq2SeqBatches",
    "seq2seq_loss",
    "evaluate_seq2seq",
    "translate",
    "translation_scores",
    "PrototypeHead",
    "SoftmaxHead",
    "TensorLoader",
    "as_loader",
    "class_means",
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


def as_loader(data: tuple[torch.Tensor, torch.Tensor] | Iterable, batch_size: int = 128, *, shuffle: bool = False,
              generator: torch.Generator | None = None,
              transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterable:
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
    """Top-1 accuracy, mean loss and confusion matrix of ``head.predict(model(x))`` over ``loader``.

    Puts ``model`` and ``head`` in eval mode (batch-norm running statistics) and back into the
    mode they had. Returns ``{"accuracy": float in [0, 1], "loss": mean per-sample loss, "n":
    number of examples, "confusion": (C, C) int64 CPU tensor}``, ``confusion[i, j]`` = examples
    of class i predicted as j (C = ``head.n_classes``); ``loss`` is the head's loss with
    reduction "mean"-equivalent. Raises ``ValueError`` for an empty loader.
    """
    device = torch.device(device)
    was = (model.training, head.training)
    model.eval(), head.eval()
    C = int(head.n_classes)
    confusion = torch.zeros(C * C, dtype=torch.long)
    total, loss_sum = 0, 0.0
    try:
        for x, y in as_loader(loader):
            x, y = _prepare(x, y, device, channels_last)
            with _autocast(device, amp):
                z = model(x)
            z = z.float()
            confusion += torch.bincount((y * C + head.predict(z)).cpu(), minlength=C * C)
            loss_sum += _loss_sum(head, z, y)
            total += y.numel()
    finally:
        model.train(was[0]), head.train(was[1])
    if total == 0:
        raise ValueError("loader yielded no examples")
    confusion = confusion.view(C, C)
    return {"accuracy": confusion.diagonal().sum().item() / total, "loss": loss_sum / total, "n": total,
            "confusion": confusion}


@torch.no_grad()
def class_means(model: nn.Module, loader: Iterable, n_classes: int, *, device: torch.device | str = "cpu",
                amp: bool = False, channels_last: bool = False) -> torch.Tensor:
    """The mean unit output direction of ``model`` per class over ``loader``: (C, D) float32 CPU
    tensor, row c = mean over the examples of class c of ``model(x) / ‖model(x)‖``.

    ``model`` is run in eval mode (and put back in the mode it had). Used as the layout of the
    classes that :func:`dispersion.prototypes.match_prototypes` assigns prototypes to. Raises
    ``ValueError`` when a class has no example in ``loader``.
    """
    device = torch.device(device)
    was = model.training
    model.eval()
    sums, counts = None, torch.zeros(n_classes, dtype=torch.long)
    try:
        for x, y in as_loader(loader):
            x, y = _prepare(x, y, device, channels_last)
            with _autocast(device, amp):
                z = model(x)
            z = torch.nn.functional.normalize(z.float(), dim=1).cpu()
            sums = torch.zeros(n_classes, z.shape[1]) if sums is None else sums
            sums.index_add_(0, y.cpu(), z)
            counts += torch.bincount(y.cpu(), minlength=n_classes)
    finally:
        model.train(was)
    if sums is None or (counts == 0).any():
        missing = list(range(n_classes)) if sums is None else torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"loader has no example of class(es) {missing}")
    return sums / counts[:, None]


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
    last, ``eval_accuracy``/``eval_loss`` on ``eval_loader``. ``log`` is called with each record;
    the last record of the returned list also holds ``eval_confusion`` (C × C nested list of
    counts, rows = true class; :func:`evaluate`), which is not logged.

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
    bar = progress_bar(epochs, desc=desc, unit="epoch", enabled=progress)
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
            synchronize(device)
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
            if log is not None:
                log(dict(rec))
            if eval_loader is not None and epoch == epochs:
                rec["eval_confusion"] = ev["confusion"].tolist()  # in the returned history, not the log
            history.append(rec)
            bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k in ("train_loss", "eval_accuracy")})
            bar.update(1)
    finally:
        bar.close()
    return history


# --------------------------------------------------------------------------- language models


#: Conventions for the weight λ of the regularizer in the LM loss (see :func:`regularized_loss`).
LAMBDA_PER = ("token", "batch")


def regularized_loss(ce: torch.Tensor, r: torch.Tensor, lam: float, n_tokens: int,
                     lambda_per: str = "token") -> torch.Tensor:
    """The LM training loss: token-averaged cross-entropy plus the weighted regularizer.

    Parameters
    ----------
    ce : 0-d tensor
        Cross-entropy averaged over the ``n_tokens`` target tokens of the batch (nats/token).
    r : 0-d tensor
        The regularizer R(E) of the embedding table (or of its sampled rows).
    lam : float
        λ >= 0.
    n_tokens : int
        Target tokens in the batch (batch_size · seq_len), >= 1.
    lambda_per : ``"token"`` or ``"batch"``
        ``"token"`` (default): ``(Σ_tokens CE + λ·R) / n_tokens = ce + λ·R / n_tokens``, the
        reduction of NMT trainers such as fairseq, whose criterion sums the loss over the target
        tokens and whose trainer divides the gradient by their number; the paper's λ = 10 was set
        in such a trainer (the NMT experiment of arXiv:2502.08231). ``"batch"``: ``ce + λ·R``, λ
        per batch. The two differ by the factor n_tokens; with ``"batch"`` and λ = 10 the Sliced
        loss (:class:`~dispersion.regularizers.Sliced`), a *sum* over all V rows, outweighs the
        task (measured in the quick LM, V = 6 000: perplexity 1 221 against 198 without a
        regularizer).

    Returns a 0-d tensor. Raises ``ValueError`` for an unknown ``lambda_per``, a negative λ or
    ``n_tokens < 1``.
    """
    return ce + regularizer_weight(lam, n_tokens, lambda_per) * r


def regularizer_weight(lam: float, n_tokens: int, lambda_per: str = "token") -> float:
    """The factor of R(E) in :func:`regularized_loss`: ``lam / n_tokens`` (``"token"``) or
    ``lam`` (``"batch"``). Raises ``ValueError`` for an unknown ``lambda_per``, a negative λ or
    ``n_tokens < 1``."""
    if lambda_per not in LAMBDA_PER:
        raise ValueError(f"lambda_per must be one of {LAMBDA_PER}, got {lambda_per!r}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    return lam / n_tokens if lambda_per == "token" else lam


def lm_batch(stream: torch.Tensor, starts: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of the windows of ``stream`` (M,) int64 that begin at
    ``starts`` (B,): ``x`` (B, seq_len) = tokens s..s+T−1, ``y`` (B, seq_len) = tokens s+1..s+T."""
    idx = starts[:, None] + torch.arange(seq_len + 1, device=starts.device)[None, :]
    chunk = stream[idx]
    return chunk[:, :-1], chunk[:, 1:]


def warmup_cosine(steps: int, warmup: int, floor: float) -> Callable[[int], float]:
    """Learning-rate factor of ``torch.optim.lr_scheduler.LambdaLR``: linear warm-up over
    ``warmup`` steps, then cosine decay to ``floor`` (a fraction of the base rate) at ``steps``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    return factor


def tied_table_optimizers(model: nn.Module, embedding: str, train: dict, steps: int) -> tuple[list, list]:
    """The optimisers and schedules of a model with a tied embedding table ``model.E`` (the LM
    and the translation model): ``embedding == "sphere"`` puts the table's rows on the sphere with
    Riemannian Adam, else plain Adam, at ``train["embedding_lr"]``; the other parameters
    (``model.dense_parameters()``) take Adam at ``train["lr"]``; both follow
    :func:`warmup_cosine` (``train["warmup"]`` steps, floor ``train["min_lr_ratio"]``).
    Returns ``([table optimiser, dense optimiser], [their LambdaLR schedules])``."""
    lr_e = float(train["embedding_lr"])
    if embedding == "sphere":
        opt_e = make_optimizer("riemannian_adam", [model.E], lr=lr_e)
    else:
        opt_e = torch.optim.Adam([model.E], lr=lr_e)
    opt_d = torch.optim.Adam(model.dense_parameters(), lr=float(train["lr"]))
    factor = warmup_cosine(steps, int(train["warmup"]), float(train["min_lr_ratio"]))
    return [opt_e, opt_d], [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in (opt_e, opt_d)]


def train_lm(
    model: nn.Module,
    train_ids: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    seq_len: int,
    optimizers: list,
    schedulers: list = (),
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    lam: float = 0.0,
    lambda_per: str = "token",
    reg_rows: int | None = None,
    generator: torch.Generator,
    reg_generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    amp: bool = False,
    log_every: int = 50,
    log: Callable[[dict], None] | None = None,
    evaluate: Callable[[int], dict] | None = None,
    eval_every: int = 0,
    progress: bool = False,
    desc: str | None = None,
) -> dict:
    """Train a language model with loss CE + λ·R(E) (:func:`regularized_loss`) for ``steps`` steps.

    ``model`` has ``hidden(x)`` (B, T) → (B, T, d), ``logits(h)`` → (B, T, V), the embedding
    table ``E`` (V, d) and ``scale`` (the learned logit scale or None), as
    :class:`dispersion.models.text.CausalTransformerLM`. Each step draws ``batch_size`` windows
    of ``seq_len`` + 1 tokens of ``train_ids`` (M,) at random starts (``generator``, a CPU
    generator), evaluates the cross-entropy (bf16 autocast of ``model.hidden`` when ``amp``),
    adds ``regularizer`` of E — of ``reg_rows`` rows drawn with ``reg_generator`` when given and
    fewer than V — weighted per :func:`regularizer_weight`, and steps every optimiser of
    ``optimizers`` and then every scheduler of ``schedulers``.

    Every ``log_every`` steps and at the last, ``log`` receives ``step``, ``train_ce``,
    ``train_perplexity`` and ``regularizer`` (means since the last record), ``lr_embedding``
    (of the first optimiser), ``train_time_s``, ``tokens_per_s``, ``logit_scale`` when the
    model has one, and, every ``eval_every`` steps before the last, what ``evaluate(step)``
    returns. Only the update steps are timed (device synchronised).

    Returns ``{"train_time_s", "tokens_per_s", "steps"}``. Raises ``ValueError`` for a bad λ,
    ``lambda_per`` or a training stream shorter than ``seq_len`` + 1, and when the loss
    becomes non-finite (divergence).
    """
    device = torch.device(device)
    B, T = int(batch_size), int(seq_len)
    regularizer_weight(lam, B * T, lambda_per)  # λ and its convention checked once, before any training
    if train_ids.numel() <= T + 1:
        raise ValueError(f"the training stream ({train_ids.numel()} tokens) is shorter than seq_len + 1")
    V = int(model.E.shape[0])
    max_start = train_ids.numel() - T - 1

    def batch_loss() -> tuple[torch.Tensor, int]:
        starts = torch.randint(0, max_start + 1, (B,), generator=generator).to(device)
        x, y = lm_batch(train_ids, starts, T)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            h = model.hidden(x)
        logits = model.logits(h)
        return nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1)), B * T

    out = train_steps(model, batch_loss, steps=steps, optimizers=optimizers, schedulers=schedulers,
                      regularizer=regularizer, lam=lam, lambda_per=lambda_per, reg_rows=reg_rows,
                      reg_generator=reg_generator, device=device, log_every=log_every, log=log, evaluate=evaluate,
                      eval_every=eval_every, progress=progress, desc=desc)
    return {k: out[k] for k in ("train_time_s", "tokens_per_s", "steps")}


def train_steps(
    model: nn.Module,
    batch_loss: Callable[[], tuple[torch.Tensor, int]],
    *,
    steps: int,
    optimizers: list,
    schedulers: list = (),
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    lam: float = 0.0,
    lambda_per: str = "token",
    reg_rows: int | None = None,
    reg_generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    log_every: int = 50,
    log: Callable[[dict], None] | None = None,
    evaluate: Callable[[int], dict] | None = None,
    eval_every: int = 0,
    progress: bool = False,
    desc: str | None = None,
) -> dict:
    """The step loop of every model with a tied embedding table ``model.E`` (V, d): loss
    CE + λ·R(E) (:func:`regularized_loss`), ``steps`` times — :func:`train_lm` (language model)
    and the translation experiment (:mod:`dispersion.experiments.nmt`) draw their batches in
    ``batch_loss`` and share everything else.

    Each step calls ``batch_loss()`` (it draws the next batch and returns its cross-entropy
    averaged over its target tokens, a 0-d tensor, and the number n ≥ 1 of those tokens), adds
    ``regularizer`` of E — of ``reg_rows`` rows drawn with ``reg_generator`` when given and fewer
    than V — weighted per :func:`regularizer_weight` with that n, and steps every optimiser of
    ``optimizers`` and then every scheduler of ``schedulers``. ``model`` is put in train mode.

    Every ``log_every`` steps and at the last, ``log`` receives ``step``, ``train_ce``,
    ``train_perplexity`` and ``regularizer`` (means since the last record), ``lr_embedding``
    (of the first optimiser), ``train_time_s``, ``tokens_per_s`` (target tokens), ``logit_scale``
    when the model has one (``model.scale``), and, every ``eval_every`` steps before the last,
    what ``evaluate(step)`` returns. Only the update steps are timed (device synchronised),
    the batch drawing included.

    Returns ``{"train_time_s", "tokens_per_s", "steps", "tokens"}``. Raises ``ValueError`` for a
    bad λ or ``lambda_per``, and when the loss becomes non-finite (divergence).
    """
    device = torch.device(device)
    regularizer_weight(lam, 1, lambda_per)  # λ and its convention checked once, before any training
    V = int(model.E.shape[0])
    log_every = max(1, int(log_every))
    eval_every = int(eval_every or 0)
    train_time, ce_acc, reg_acc, n_acc, tokens = 0.0, 0.0, 0.0, 0, 0
    bar = progress_bar(steps, desc=desc, enabled=progress, mininterval=2.0)
    model.train()
    try:
        for step in range(1, steps + 1):
            synchronize(device)
            t0 = time.perf_counter()
            ce, n_tokens = batch_loss()
            loss = ce
            r = None
            if regularizer is not None:
                E = model.E
                if reg_rows is not None and reg_rows < V:
                    idx = torch.randperm(V, generator=reg_generator, device=device)[:reg_rows]
                    E = E[idx]
                r = regularizer(E)
                loss = regularized_loss(ce, r, lam, n_tokens, lambda_per)  # = ce + weight * r
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            for sched in schedulers:
                sched.step()
            synchronize(device)
            train_time += time.perf_counter() - t0
            tokens += int(n_tokens)
            ce_acc += ce.item()
            reg_acc += r.item() if r is not None else 0.0
            n_acc += 1
            if not math.isfinite(ce_acc):
                raise ValueError(f"training diverged: non-finite loss at step {step}")
            if step % log_every == 0 or step == steps:
                row = {"step": step, "train_ce": ce_acc / n_acc, "train_perplexity": math.exp(ce_acc / n_acc),
                       "regularizer": reg_acc / n_acc if regularizer is not None else None,
                       "lr_embedding": optimizers[0].param_groups[0]["lr"], "train_time_s": train_time,
                       "tokens_per_s": tokens / train_time if train_time > 0 else None}
                if getattr(model, "scale", None) is not None:
                    row["logit_scale"] = model.scale.item()
                if evaluate is not None and eval_every and (step % eval_every == 0) and step != steps:
                    row.update(evaluate(step))
                if log is not None:
                    log(row)
                ce_acc, reg_acc, n_acc = 0.0, 0.0, 0
            bar.update(1)
    finally:
        bar.close()
    return {"train_time_s": train_time, "tokens_per_s": tokens / train_time if train_time > 0 else None,
            "steps": steps, "tokens": tokens}


def evaluate_lm(model: nn.Module, stream: torch.Tensor, seq_len: int, batch_size: int = 32,
                max_tokens: int | None = None, device: torch.device | str = "cpu", amp: bool = False,
                unigram_logp: torch.Tensor | None = None) -> dict:
    """Held-out cross-entropy (nats/token), perplexity and next-token accuracy of ``model``.

    ``stream`` (M,) int64 is cut into windows of ``seq_len`` + 1 tokens; each window predicts
    its tokens 2..end from the preceding ones within the window. Without ``max_tokens`` the
    windows are consecutive and cover the whole stream; with it, ``ceil(max_tokens / seq_len)``
    windows are spread evenly over the stream (so a capped evaluation still samples every
    corpus of the concatenated stream). ``unigram_logp`` (V,) log-probabilities, if given, are
    scored on exactly the same target tokens (``unigram_perplexity`` in the result). Runs in
    eval mode without gradients.
    """
    n = stream.numel() - 1
    if n < seq_len:
        raise ValueError(f"the evaluation stream ({n + 1} tokens) is shorter than seq_len + 1")
    if max_tokens and int(max_tokens) < n:
        k = max(1, math.ceil(int(max_tokens) / seq_len))
        starts = torch.linspace(0, n - seq_len, k).round().long().tolist()
        lens = [seq_len] * k
    else:
        starts = list(range(0, n, seq_len))
        lens = [min(seq_len, n - s) for s in starts]
    was = model.training
    model.eval()
    total, loss_sum, correct, uni_sum = 0, 0.0, 0, 0.0
    dev = torch.device(device)
    try:
        with torch.no_grad():
            for b in range(0, len(starts), batch_size):
                group, glens = starts[b:b + batch_size], lens[b:b + batch_size]
                for L in sorted(set(glens)):  # windows of equal length together (only the last differs)
                    ss = torch.tensor([s for s, ln in zip(group, glens) if ln == L], device=dev)
                    x, y = lm_batch(stream, ss, L)
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
                        h = model.hidden(x)
                    logits = model.logits(h)
                    loss_sum += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                                  reduction="sum").item()
                    correct += (logits.argmax(-1) == y).sum().item()
                    total += y.numel()
                    if unigram_logp is not None:
                        uni_sum -= unigram_logp[y].sum().item()
    finally:
        model.train(was)
    ce = loss_sum / total
    out = {"loss": ce, "perplexity": math.exp(ce), "accuracy": correct / total, "tokens": total}
    if unigram_logp is not None:
        out["unigram_perplexity"] = math.exp(uni_sum / total)
    return out


def embedding_geometry(E: torch.Tensor, bins: int = 90) -> dict:
    """``min_angle``, ``circular_variance``, ``mean_nn_angle`` (radians) of the unit rows ``E``
    (V, d) and the histogram of nearest-neighbour angles over [0, π/2] (``bins`` counts; angles
    beyond π/2 fall in the last bin); ``min_angle_clamped`` is the minimum angle as the authors'
    code measures it (:func:`dispersion.metrics.clamped_angle`: never below 1.414·10⁻³ rad)."""
    nn_ang = metrics.nearest_neighbor_angles(E)
    hist = torch.histc(nn_ang.clamp(max=math.pi / 2).float().cpu(), bins=bins, min=0.0, max=math.pi / 2)
    return {
        "min_angle": nn_ang.min().item(),
        "min_angle_clamped": metrics.clamped_angle(nn_ang.min().item()).item(),
        "circular_variance": metrics.circular_variance(E).item(),
        "mean_nn_angle": nn_ang.mean().item(),
        "median_nn_angle": nn_ang.median().item(),
        "nn_angle_hist": [int(v) for v in hist.tolist()],
        "nn_angle_hist_max": math.pi / 2,
    }


# --------------------------------------------------------------------------- sequence to sequence


class Seq2SeqBatches:
    """Padded batches of tokenised sentence pairs for an encoder–decoder model.

    Parameters
    ----------
    src, tgt : list of list of int
        N token-id sequences each (no special tokens); pair i is ``(src[i], tgt[i])``.
    batch_size : int
        Pairs per batch.
    pad_id, bos_id, eos_id : int
        The special tokens: each batch is ``src`` (B, S) = tokens + EOS, ``tgt_in`` (B, T) =
        BOS + tokens and ``tgt_out`` (B, T) = tokens + EOS, right-padded with ``pad_id``.
    shuffle : bool
        Training order, new every pass (drawn on the CPU from ``generator``): the pairs are
        permuted, cut into pools of ``pool`` batches, sorted by length within a pool (less
        padding) and cut into batches, whose order is permuted again. Without it, one pass goes
        through the pairs sorted by source length, so an evaluation pads little; its results do
        not depend on the order.
    generator : torch.Generator, optional
    pool : int
        Batches per length-sorted pool when shuffling (default 100).
    device : torch.device or str

    Iterating yields one pass of ``(src, tgt_in, tgt_out)`` int64 tensors on ``device``;
    ``len()`` is the number of batches per pass (the last one may be smaller). Raises
    ``ValueError`` for ``src`` and ``tgt`` of different lengths, no pairs or ``batch_size < 1``.
    """

    def __init__(self, src, tgt, batch_size: int, *, pad_id: int, bos_id: int, eos_id: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, pool: int = 100, device: torch.device | str = "cpu"):
        if len(src) != len(tgt):
            raise ValueError(f"src ({len(src)}) and tgt ({len(tgt)}) must hold the same number of sentences")
        if not len(src):
            raise ValueError("no sentence pairs")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.src, self.tgt = list(src), list(tgt)
        self.batch_size, self.shuffle, self.generator, self.pool = batch_size, shuffle, generator, max(1, int(pool))
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.device = torch.device(device)

    def __len__(self) -> int:
        return math.ceil(len(self.src) / self.batch_size)

    def _order(self) -> list[list[int]]:
        B, n = self.batch_size, len(self.src)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: (len(self.src[i]), len(self.tgt[i])))
            return [order[s:s + B] for s in range(0, n, B)]
        perm = torch.randperm(n, generator=self.generator).tolist()
        batches = []
        for s in range(0, n, B * self.pool):
            chunk = sorted(perm[s:s + B * self.pool], key=lambda i: (len(self.src[i]), len(self.tgt[i])))
            batches += [chunk[k:k + B] for k in range(0, len(chunk), B)]
        return [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]

    def collate(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The padded ``(src, tgt_in, tgt_out)`` of the pairs ``idx`` (a list of indices)."""
        S = max(len(self.src[i]) for i in idx) + 1
        T = max(len(self.tgt[i]) for i in idx) + 1
        src = torch.full((len(idx), S), self.pad_id, dtype=torch.int64)
        tgt_in = torch.full((len(idx), T), self.pad_id, dtype=torch.int64)
        tgt_out = torch.full((len(idx), T), self.pad_id, dtype=torch.int64)
        for r, i in enumerate(idx):
            s, t = self.src[i], self.tgt[i]
            src[r, :len(s) + 1] = torch.tensor([*s, self.eos_id])
            tgt_in[r, :len(t) + 1] = torch.tensor([self.bos_id, *t])
            tgt_out[r, :len(t) + 1] = torch.tensor([*t, self.eos_id])
        return src.to(self.device), tgt_in.to(self.device), tgt_out.to(self.device)

    def __iter__(self):
        for idx in self._order():
            yield self.collate(idx)


def _seq2seq_logits(model, batch, pad_id: int, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (n, V) float32, targets (n,)) at the n non-padding target positions of ``batch``."""
    src, tgt_in, tgt_out = batch
    dev = src.device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
        h = model.hidden(src, tgt_in)
    keep = tgt_out != pad_id
    return model.logits(h[keep]), tgt_out[keep]


def seq2seq_loss(model, batch, *, pad_id: int, amp: bool = False) -> tuple[torch.Tensor, int]:
    """Teacher-forced cross-entropy of an encoder–decoder ``model`` (``hidden(src, tgt_in)`` →
    (B, T, d), ``logits(h)`` → (…, V), as :class:`dispersion.models.nmt.TransformerNMT`) on one
    ``batch`` ``(src, tgt_in, tgt_out)`` of :class:`Seq2SeqBatches`.

    The logits are formed only at the n non-padding target positions (an (n, V) product, not
    (B, T, V)); ``amp`` autocasts ``model.hidden`` to bfloat16 on CUDA (the logits stay float32).
    Returns ``(ce, n)``: ce the mean over those positions (nats per target token, a 0-d tensor
    with gradient), n their number — what :func:`train_steps`' ``batch_loss`` returns.
    """
    logits, y = _seq2seq_logits(model, batch, pad_id, amp)
    return nn.functional.cross_entropy(logits, y), int(y.numel())


@torch.no_grad()
def evaluate_seq2seq(model, batches, *, pad_id: int, amp: bool = False) -> dict:
    """Teacher-forced ``loss`` (nats per target token), ``perplexity``, next-token ``accuracy``
    and the number of target ``tokens`` of ``model`` over one pass of ``batches``
    (:class:`Seq2SeqBatches`, EOS included as a target, padding not). Runs in eval mode and puts
    the model back into the mode it had. Raises ``ValueError`` when there are no target tokens."""
    was = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    try:
        for batch in batches:
            logits, y = _seq2seq_logits(model, batch, pad_id, amp)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
            total += y.numel()
    finally:
        model.train(was)
    if total == 0:
        raise ValueError("the evaluation batches hold no target tokens")
    ce = loss_sum / total
    return {"loss": ce, "perplexity": math.exp(ce), "accuracy": correct / total, "tokens": total}


@torch.no_grad()
def translate(model, src, *, bos_id: int, eos_id: int, batch_size: int = 100, max_len_a: float = 1.5,
              max_len_b: int = 10, device: torch.device | str = "cpu", amp: bool = False,
              progress: bool = False) -> list[list[int]]:
    """Greedy translations (token ids, no special tokens) of the tokenised sources ``src`` (a list
    of N id lists, without EOS), in input order.

    Sentences are decoded in batches of ``batch_size`` sorted by length; sentence i may produce
    at most ``ceil(max_len_a · |src_i| + max_len_b)`` tokens (fairseq's ``--max-len-a/-b``), and
    never more than the model's ``max_len`` − 1; a source longer than ``max_len`` − 1 tokens is
    cut to fit. :meth:`dispersion.models.nmt.TransformerNMT.greedy_decode` does the decoding.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if max_len_a < 0 or max_len_b < 0:
        raise ValueError(f"max_len_a and max_len_b must be >= 0, got {max_len_a}, {max_len_b}")
    device = torch.device(device)
    cap = model.max_len - 1
    pad = model.pad_id
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out: list[list[int] | None] = [None] * len(src)
    batches = progress_bar(iterable=range(0, len(order), batch_size), desc="translate", unit="batch",
                           enabled=progress)
    for s in batches:
        idx = order[s:s + batch_size]
        seqs = [[*src[i][:cap], eos_id] for i in idx]
        x = torch.full((len(idx), max(map(len, seqs))), pad, dtype=torch.int64)
        for r, q in enumerate(seqs):
            x[r, :len(q)] = torch.tensor(q)
        limit = torch.tensor([math.ceil(max_len_a * len(src[i]) + max_len_b) for i in idx], dtype=torch.int64)
        hyps = model.greedy_decode(x.to(device), bos_id, eos_id, limit.to(device), amp=amp)
        for i, h in zip(idx, hyps):
            out[i] = h
    return out


def translation_scores(hypotheses, references) -> dict:
    """Corpus BLEU and chrF of detokenised ``hypotheses`` against one ``references`` each, with
    sacreBLEU (Post, *A call for clarity in reporting BLEU scores*, WMT 2018) at its defaults:
    BLEU with the 13a tokenizer, exponential smoothing, mixed case; chrF with character 6-grams,
    β = 2. Returns ``bleu``, ``chrf`` (0–100), ``bleu_signature``, ``chrf_signature`` (sacreBLEU's
    signature strings, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) and
    ``bleu_precisions`` (the four n-gram precisions), ``bleu_brevity_penalty``,
    ``bleu_length_ratio``. Raises ``ValueError`` for lists of different lengths or none."""
    from sacrebleu.metrics import BLEU, CHRF

    hyps, refs = list(hypotheses), list(references)
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need as many hypotheses as references (>= 1), got {len(hyps)} and {len(refs)}")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return {"bleu": float(b.score), "chrf": float(c.score), "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()), "bleu_precisions": [float(v) for v in b.precisions],
            "bleu_brevity_penalty": float(b.bp), "bleu_length_ratio": float(b.sys_len / max(b.ref_len, 1))}
