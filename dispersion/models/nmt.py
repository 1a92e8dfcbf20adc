"""A small encoder–decoder Transformer for machine translation whose one embedding table is
shared by the encoder input, the decoder input and the output projection — the NMT setting of
Tokarchuk, Bakker & Niculae (arXiv:2502.08231, its machine-translation experiment): a joint
source–target subword vocabulary, the table on the sphere with cosine logits and a learned scale.

:class:`TransformerNMT` is PyTorch's own ``nn.TransformerEncoder`` / ``nn.TransformerDecoder``
(pre-norm layers, GELU, a final LayerNorm on each side; Vaswani et al., *Attention is all you
need*, NeurIPS 2017, with the pre-norm placement of Xiong et al., ICML 2020) over token + learned
position embeddings. The table itself — ``E`` (V × d), its input scaling ``√d · E[ids]``, the
cosine logits ``s · normalize(h) · Eᵀ`` on the sphere or ``h · Eᵀ`` for the Euclidean baseline —
is :class:`dispersion.models.text.TiedEmbeddingTable`, the same as the language model's
(:class:`~dispersion.models.text.CausalTransformerLM`): one ``Parameter`` for all three uses.

Decoding is greedy (:meth:`TransformerNMT.greedy_decode`): at every step the most probable
token, the whole prefix re-decoded (no key/value cache), until every sentence has produced the
end token or the length limit is reached.
"""

from __future__ import annotations

import torch
from torch import nn

from .text import TiedEmbeddingTable

__all__ = ["TransformerNMT"]


class TransformerNMT(TiedEmbeddingTable, nn.Module):
    """Encoder–decoder Transformer with one tied embedding table (see the module docstring).

    Parameters
    ----------
    vocab_size : int
        V, rows of the joint source–target table (special tokens included).
    dim : int
        d, the model width and the table's dimension.
    n_encoder_layers, n_decoder_layers : int
        Layer counts (≥ 1 each).
    n_heads : int
        Attention heads (``dim`` divisible by it).
    ff_dim : int, optional
        Feed-forward width (default 4·dim).
    max_len : int
        Longest source or target sequence in tokens (learned position embeddings, one table
        shared by both sides).
    dropout : float
    embedding : {"sphere", "euclidean"}
        :class:`~dispersion.models.text.TiedEmbeddingTable`.
    logit_scale : float
        Initial cosine-logit scale s (spherical table only).
    pad_id : int
        The padding token (masked as attention key; never a target).
    generator : torch.Generator, optional
        CPU generator of the table's initialisation (drawn first).

    ``forward(src, tgt_in)`` takes int64 ids (B, S) and (B, T) — source tokens, and the target
    shifted right (BOS first) — and returns float32 logits (B, T, V). Raises ``ValueError`` for
    invalid sizes, ``TypeError`` for ids that are not int64 (B, L) tensors.
    """

    def __init__(self, vocab_size: int, dim: int = 128, n_encoder_layers: int = 3, n_decoder_layers: int = 3,
                 n_heads: int = 4, ff_dim: int | None = None, max_len: int = 128, dropout: float = 0.1,
                 embedding: str = "sphere", logit_scale: float = 10.0, pad_id: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__()
        for name, v, lo in (("vocab_size", vocab_size, 2), ("dim", dim, 2), ("n_encoder_layers", n_encoder_layers, 1),
                            ("n_decoder_layers", n_decoder_layers, 1), ("n_heads", n_heads, 1),
                            ("max_len", max_len, 2), ("pad_id", pad_id, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        if pad_id >= vocab_size:
            raise ValueError(f"pad_id ({pad_id}) must be < vocab_size ({vocab_size})")
        self._init_tied_table(vocab_size, dim, embedding, logit_scale, generator)
        self.max_len, self.pad_id = max_len, pad_id
        self.pos = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos.weight, std=0.02)
        ff = ff_dim or 4 * dim
        enc_layer = nn.TransformerEncoderLayer(dim, n_heads, ff, dropout, activation="gelu", batch_first=True,
                                               norm_first=True)
        dec_layer = nn.TransformerDecoderLayer(dim, n_heads, ff, dropout, activation="gelu", batch_first=True,
                                               norm_first=True)
        self.encoder = nn.TransformerEncoder(enc_layer, n_encoder_layers, norm=nn.LayerNorm(dim),
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec_layer, n_decoder_layers, norm=nn.LayerNorm(dim))
        self.drop = nn.Dropout(dropout)

    def _check_ids(self, ids: torch.Tensor, name: str) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or ids.dim() != 2:
            raise TypeError(f"{name} must be an int64 tensor of shape (B, L)")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"{name} has length {ids.shape[1]}, more than max_len={self.max_len}")

    def _inputs(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.drop(self.embed(ids) + self.pos(pos))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, d) of ``src`` (B, S) and its padding mask (B, S), True at pads."""
        self._check_ids(src, "src")
        pad = src == self.pad_id
        return self.encoder(self._inputs(src), src_key_padding_mask=pad), pad

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        """Final decoder states (B, T, d) of the shifted target ``tgt_in`` (B, T), causally masked,
        attending to ``memory`` (B, S, d) except where ``memory_pad`` (B, S) is True."""
        self._check_ids(tgt_in, "tgt_in")
        T = tgt_in.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).triu_(1)
        return self.decoder(self._inputs(tgt_in), memory, tgt_mask=causal, tgt_is_causal=True,
                            tgt_key_padding_mask=tgt_in == self.pad_id, memory_key_padding_mask=memory_pad)

    def hidden(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Decoder states (B, T, d) for ``src`` (B, S) and ``tgt_in`` (B, T) (teacher forcing)."""
        memory, pad = self.encode(src)
        return self.decode(tgt_in, memory, pad)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(src, tgt_in))

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, bos_id: int, eos_id: int, max_new_tokens: int | torch.Tensor,
                      amp: bool = False) -> list[list[int]]:
        """Greedy translations of the source batch ``src`` (B, S) int64.

        Starts every sentence with ``bos_id`` and appends the arg-max token of the last position
        (padding and BOS excluded) until it emits ``eos_id`` or has produced ``max_new_tokens``
        tokens — an int, or an int64 (B,) tensor of per-sentence limits — capped so that BOS +
        tokens fit ``max_len``.
        Returns B lists of token ids, BOS and EOS removed. Runs in eval mode (and puts the
        module back into the mode it had); ``amp`` autocasts the Transformer layers to bfloat16
        on CUDA (the logits stay float32).
        """
        self._check_ids(src, "src")
        B, dev = src.shape[0], src.device
        limit = torch.as_tensor(max_new_tokens, device=dev).expand(B).clamp(max=self.max_len - 1)
        steps = int(limit.max()) if B else 0
        was = self.training
        self.eval()
        try:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
                memory, pad = self.encode(src)
            out = torch.full((B, 1), bos_id, dtype=torch.int64, device=dev)
            done = limit <= 0
            for t in range(steps):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
                    h = self.decode(out, memory, pad)[:, -1]
                scores = self.logits(h)
                scores[:, [self.pad_id, bos_id]] = float("-inf")  # never outputs
                nxt = scores.argmax(dim=-1)
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                out = torch.cat([out, nxt[:, None]], dim=1)
                done |= (nxt == eos_id) | (t + 1 >= limit)
                if bool(done.all()):
                    break
        finally:
            self.train(was)
        result = []
        for row in out[:, 1:].tolist():
            toks = []
            for i in row:
                if i == eos_id or i == self.pad_id:
                    break
                toks.append(i)
            result.append(toks)
        return result
