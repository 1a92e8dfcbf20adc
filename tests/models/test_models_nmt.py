"""The translation model (dispersion.models.nmt): one embedding table shared by the encoder input,
the decoder input and the output projection; cosine logits on the sphere; causal decoding,
source padding masked, greedy decoding."""

import geoopt
import pytest
import torch

from dispersion.models.nmt import TransformerNMT

V, D = 40, 16


def model(embedding="sphere", seed=0):
    torch.manual_seed(seed)
    return TransformerNMT(V, D, 1, 1, 2, max_len=12, dropout=0.0, embedding=embedding,
                          generator=torch.Generator().manual_seed(seed)).eval()


def batch():
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    tgt_in = torch.tensor([[2, 10, 11], [2, 12, 0]])
    return src, tgt_in


def test_one_table_serves_encoder_decoder_and_output():
    m = model()
    tables = [(n, p) for n, p in m.named_parameters() if p.shape == (V, D)]
    assert [n for n, _ in tables] == ["E"] and isinstance(m.E, geoopt.ManifoldParameter)
    src, tgt_in = batch()
    # the gradient of one loss reaches E through all three uses: the rows of the source-only
    # tokens (encoder input), of the target-input-only tokens (decoder input) and every row
    # (the output projection, the softmax over the whole vocabulary)
    m(src, tgt_in)[0, 1, 1].backward()  # one logit (position 1 sees BOS and 10): of token 1, in neither input
    g = m.E.grad.norm(dim=1)
    assert g[5] > 0 and g[10] > 0 and g[1] > 0
    m.zero_grad()
    # the encoder reads E: changing the row of a source token changes the decoder states
    h0 = m.hidden(src, tgt_in).detach()
    with torch.no_grad():
        m.E[6] = torch.nn.functional.normalize(torch.randn(D), dim=0)
    assert not torch.allclose(m.hidden(src, tgt_in)[0], h0[0])
    # the decoder reads E: so does the row of a target-input token (with the source unchanged)
    h1 = m.hidden(src, tgt_in).detach()
    with torch.no_grad():
        m.E[11] = torch.nn.functional.normalize(torch.randn(D), dim=0)
    assert not torch.allclose(m.hidden(src, tgt_in)[0, 2], h1[0, 2])


def test_cosine_logits_with_a_learned_scale():
    m = model()
    src, tgt_in = batch()
    h = m.hidden(src, tgt_in)
    expected = m.scale * torch.nn.functional.normalize(h, dim=-1) @ m.E.T
    assert torch.allclose(m(src, tgt_in), expected, atol=1e-6)
    assert m(src, tgt_in).abs().max() <= m.scale.item() + 1e-5
    assert (m.E.norm(dim=1) - 1).abs().max() < 1e-6
    e = model("euclidean")
    assert e.scale is None and not torch.allclose(e.E.norm(dim=1), torch.ones(V))
    assert torch.allclose(e(src, tgt_in), e.hidden(src, tgt_in) @ e.E.T, atol=1e-6)
    assert torch.allclose(e.embedding_table().norm(dim=1), torch.ones(V))


def test_decoder_is_causal_and_source_padding_is_masked():
    m = model()
    src, tgt_in = batch()
    out = m(src, tgt_in)
    changed = tgt_in.clone()
    changed[0, 2] = 20
    assert torch.allclose(m(src, changed)[0, :2], out[0, :2], atol=1e-6)
    # more padding after the second source sentence changes nothing
    padded = torch.cat([src, torch.zeros(2, 3, dtype=torch.int64)], dim=1)
    assert torch.allclose(m(padded, tgt_in), out, atol=1e-5)


def test_greedy_decode_is_the_argmax_path_and_stops():
    m = model(seed=1)
    src, _ = batch()
    hyps = m.greedy_decode(src, bos_id=2, eos_id=3, max_new_tokens=5)
    assert len(hyps) == 2 and all(len(h) <= 5 for h in hyps)
    # teacher-forcing the greedy output reproduces it token by token (BOS, padding never chosen)
    for i, h in enumerate(hyps):
        tgt_in = torch.tensor([[2, *h]])
        logits = m(src[i:i + 1, : int((src[i] != 0).sum())], tgt_in)[0]
        logits[:, [0, 2]] = float("-inf")
        assert logits.argmax(-1)[: len(h)].tolist() == h
    assert m.greedy_decode(src, 2, 3, torch.tensor([1, 0]))[1] == []
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(1, 13, dtype=torch.int64), torch.ones(1, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="int64"):
        m.encode(torch.ones(1, 3))


def test_invalid_sizes_are_named():
    with pytest.raises(ValueError, match="divisible"):
        TransformerNMT(V, 10, n_heads=4)
    with pytest.raises(ValueError, match="pad_id"):
        TransformerNMT(V, 16, pad_id=V)
    with pytest.raises(ValueError, match="embedding"):
        TransformerNMT(V, 16, embedding="hyperbolic")
