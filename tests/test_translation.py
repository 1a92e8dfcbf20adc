"""The sequence-to-sequence pieces of dispersion.training (batches, loss, the shared step loop,
greedy translation, sacreBLEU scores) and the authors' clamped minimum angle."""

import math

import pytest
import torch

import dispersion
from dispersion import metrics
from dispersion.models.nmt import TransformerNMT
from dispersion.training import (
    Seq2SeqBatches,
    embedding_geometry,
    evaluate_seq2seq,
    seq2seq_loss,
    train_steps,
    translate,
    translation_scores,
)

SRC = [[5, 6, 7], [8], [9, 10, 11, 12], [5, 9], [6, 7, 8]]
TGT = [[13, 14], [15, 16, 17], [18], [13], [14, 15]]


def test_batches_pad_and_shift_and_cover_every_pair_once():
    b = Seq2SeqBatches(SRC, TGT, 2, pad_id=0, bos_id=2, eos_id=3, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    assert len(b) == 3
    seen = []
    for src, tgt_in, tgt_out in b:
        for r in range(src.shape[0]):
            s = src[r][src[r] != 0].tolist()
            t_in, t_out = tgt_in[r][tgt_in[r] != 0].tolist(), tgt_out[r][tgt_out[r] != 0].tolist()
            assert s[-1] == 3 and t_in[0] == 2 and t_out[-1] == 3 and t_in[1:] == t_out[:-1]
            seen.append((tuple(s[:-1]), tuple(t_out[:-1])))
    assert sorted(seen) == sorted((tuple(s), tuple(t)) for s, t in zip(SRC, TGT))
    orders = [[tuple(x[0].flatten().tolist()) for x in b] for _ in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # a new order every pass
    with pytest.raises(ValueError, match="same number"):
        Seq2SeqBatches(SRC, TGT[:2], 2, pad_id=0, bos_id=2, eos_id=3)


def _model(seed=0):
    torch.manual_seed(seed)
    return TransformerNMT(20, 16, 1, 1, 2, max_len=10, dropout=0.0, generator=torch.Generator().manual_seed(seed))


def test_loss_is_over_the_non_padding_targets_only():
    m = _model()
    b = Seq2SeqBatches(SRC, TGT, 5, pad_id=0, bos_id=2, eos_id=3)
    batch = next(iter(b))
    ce, n = seq2seq_loss(m, batch, pad_id=0)
    assert n == sum(len(t) + 1 for t in TGT)
    logits = m(batch[0], batch[1])
    keep = batch[2] != 0
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(logits[keep], batch[2][keep]).item(), rel=1e-6)
    ev = evaluate_seq2seq(m, b, pad_id=0)
    assert ev["tokens"] == n and ev["loss"] == pytest.approx(ce.item(), rel=1e-6)


def test_train_steps_learns_a_copy_task_with_a_regularizer_on_the_sphere():
    from dispersion.optim import make_optimizer

    m = _model(1)
    pairs = [[4 + (i * 3 + k) % 12 for k in range(3)] for i in range(24)]
    b = Seq2SeqBatches(pairs, pairs, 8, pad_id=0, bos_id=2, eos_id=3, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    state = {"it": iter(b)}

    def batch_loss():
        try:
            batch = next(state["it"])
        except StopIteration:
            state["it"] = iter(b)
            batch = next(state["it"])
        return seq2seq_loss(m, batch, pad_id=0)

    before = evaluate_seq2seq(m, b, pad_id=0)["loss"]
    rows = []
    opt_e = make_optimizer("riemannian_adam", [m.E], lr=2e-2)
    opt_d = torch.optim.Adam(m.dense_parameters(), lr=5e-3)
    reg = dispersion.build("sliced", generator=torch.Generator().manual_seed(0))
    out = train_steps(m, batch_loss, steps=90, optimizers=[opt_e, opt_d], regularizer=reg, lam=10.0, log_every=30,
                      log=rows.append)
    assert out["steps"] == 90 and out["tokens"] == 90 * 8 * 4 and [r["step"] for r in rows] == [30, 60, 90]
    assert evaluate_seq2seq(m, b, pad_id=0)["loss"] < before - 1.0
    assert (m.E.detach().norm(dim=1) - 1).abs().max() < 1e-5 and rows[0]["regularizer"] > 0
    hyps = translate(m, pairs, bos_id=2, eos_id=3, batch_size=7, max_len_a=1.0, max_len_b=2)
    assert len(hyps) == len(pairs) and all(len(h) <= len(p) + 2 for h, p in zip(hyps, pairs))
    assert sum(h == p for h, p in zip(hyps, pairs)) >= len(pairs) // 2  # it copies


def test_translation_scores_are_sacrebleu_with_its_signatures():
    refs = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    same = translation_scores(refs, refs)
    assert same["bleu"] == pytest.approx(100.0) and same["chrf"] == pytest.approx(100.0)
    assert same["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert "nc:6" in same["chrf_signature"]
    other = translation_scores(["Ein Mann geht.", "Hunde im Schnee."], refs)
    assert 0 < other["bleu"] < 100 and 0 < other["chrf"] < 100
    with pytest.raises(ValueError, match="as many"):
        translation_scores(refs[:1], refs)


def test_clamped_min_angle_is_the_authors_floor_over_the_exact_angle():
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(60, 8, generator=g, dtype=torch.float64), dim=1)
    floor = math.acos(1 - metrics.AUTHORS_COSINE_CLAMP)
    assert floor == pytest.approx(1.4142e-3, rel=1e-4)
    # spread points: unchanged; the authors' formula, evaluated directly, agrees
    authors = torch.acos((X @ X.T - torch.eye(60, dtype=X.dtype)).clamp(-1 + 1e-6, 1 - 1e-6)).min()
    assert metrics.clamped_min_angle(X).item() == pytest.approx(metrics.min_angle(X).item(), abs=1e-12)
    assert metrics.clamped_min_angle(X).item() == pytest.approx(authors.item(), abs=1e-9)
    # a near-duplicate 1e-4 rad away: exactly 1e-4 in the exact metric, the floor in theirs
    Y = X.clone()
    t = torch.randn(8, generator=g, dtype=torch.float64)
    t = torch.nn.functional.normalize(t - (t @ Y[0]) * Y[0], dim=0)  # a unit tangent at Y[0]
    Y[1] = math.cos(1e-4) * Y[0] + math.sin(1e-4) * t
    assert metrics.min_angle(Y).item() == pytest.approx(1e-4, rel=1e-6)
    assert metrics.clamped_min_angle(Y).item() == pytest.approx(floor, rel=1e-9)
    geo = embedding_geometry(Y.float())
    assert geo["min_angle"] == pytest.approx(1e-4, rel=1e-3) and geo["min_angle_clamped"] == pytest.approx(floor)
    with pytest.raises(ValueError, match="eps"):
        metrics.clamped_angle(0.1, eps=0.0)
