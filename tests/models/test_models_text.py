"""The text models (dispersion.models.text): the real MiniLM encoder, mean pooling, the
encoding cache and the spherical causal LM."""

import pytest
import torch

from conftest import needs_minilm
from dispersion.models.text import CausalTransformerLM, encode_cached, mean_pool


@needs_minilm
def test_minilm_paraphrase_closer_than_unrelated(encoder):
    s = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    z = encoder.encode(s, normalize=True)
    assert z.shape == (3, 384) and z.dtype == torch.float32
    cos = z @ z.T
    assert cos[0, 1] > 0.6 > cos[0, 2] + 0.3
    # mean pooling ignores padding: a sentence alone == the same sentence next to a longer one
    alone = encoder.encode(s[:1])
    assert torch.allclose(alone, encoder.encode(s)[:1], atol=1e-4)


def test_mean_pool_ignores_masked_positions():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(h, m), torch.tensor([[2.0, 3.0]]))


@needs_minilm
def test_encode_cached_reuses_file(encoder, tmp_path):
    texts = ["good film", "bad film"]
    f = tmp_path / "c.pt"
    a = encode_cached(encoder, texts, f, max_length=64)
    b = encode_cached(None, texts, f, max_length=64)  # cache hit: no encoder needed
    assert torch.equal(a, b) and a.shape == (2, 384)
    c = encode_cached(encoder, ["other"], f, max_length=64)
    assert c.shape == (1, 384) and torch.load(f)["n"] == 1


def test_spherical_lm_step_lowers_loss_and_stays_on_sphere():
    import geoopt

    import dispersion

    torch.manual_seed(0)
    V = 50
    m = CausalTransformerLM(V, 16, 1, 2, max_len=12, dropout=0.0, generator=torch.Generator().manual_seed(0))
    assert isinstance(m.E, geoopt.ManifoldParameter)
    x = torch.arange(13).remainder(5)[None].repeat(4, 1)  # a periodic sequence: learnable
    opt_e = geoopt.optim.RiemannianAdam([m.E], lr=5e-2)
    opt_d = torch.optim.Adam(m.dense_parameters(), lr=1e-2)
    reg = dispersion.build("sliced", generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(15):
        logits = m(x[:, :-1])
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        loss = ce + 10 * reg(m.E)
        opt_e.zero_grad(), opt_d.zero_grad()
        loss.backward()
        opt_e.step(), opt_d.step()
        losses.append(ce.item())
    assert losses[-1] < losses[0] - 0.5
    assert (m.E.detach().norm(dim=1) - 1).abs().max() < 1e-5
    # cosine logits are bounded by the scale
    assert m(x[:, :-1]).abs().max() <= m.scale.item() + 1e-4


def test_lm_is_causal_and_euclidean_is_unnormalised():
    m = CausalTransformerLM(30, 16, 2, 2, max_len=8, dropout=0.0).eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = a.clone()
    b[0, 4:] = 9
    assert torch.allclose(m(a)[:, :4], m(b)[:, :4], atol=1e-5)
    e = CausalTransformerLM(30, 16, 1, 2, max_len=8, embedding="euclidean")
    assert not torch.allclose(e.E.detach().norm(dim=1), torch.ones(30))
    assert torch.allclose(e.embedding_table().norm(dim=1), torch.ones(30))
    with pytest.raises(ValueError, match="embedding"):
        CausalTransformerLM(30, 16, embedding="hyperbolic")
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(1, 9, dtype=torch.int64))
