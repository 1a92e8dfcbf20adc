"""Generic classifier training (dispersion.training): heads, loader, epoch loop, evaluation."""

import math

import pytest
import torch
from torch import nn

from dispersion.data.images import DEBIAN_FASHION_MNIST
from dispersion.training import regularized_loss, PrototypeHead, SoftmaxHead, TensorLoader, as_loader, evaluate, train_classifier


pytestmark = pytest.mark.usefixtures("one_thread")

# Hand-made prototypes on S^1 and outputs whose cosines are known exactly.
P = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
Z = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -3.0], [-1.0, -0.5]])
Y = torch.tensor([0, 1, 2, 2])
# cos(z_i, p_{y_i}) = 1, 1/sqrt(2), 0, 1/sqrt(1.25)
PER_SAMPLE = [0.0, (1 - 1 / math.sqrt(2)) ** 2, 1.0, (1 - 1 / math.sqrt(1.25)) ** 2]


def test_prototype_head_loss_and_prediction_by_hand():
    head = PrototypeHead(P, reduction="sum")
    assert head(Z).shape == (4, 3)
    assert head.loss(Z, Y).item() == pytest.approx(sum(PER_SAMPLE), abs=1e-6)
    assert PrototypeHead(P, reduction="mean").loss(Z, Y).item() == pytest.approx(sum(PER_SAMPLE) / 4, abs=1e-6)
    # nearest prototype: [2,0]->0, [1,1] ties 0/1 (either), [0,-3] ties 0/2 (either), [-1,-.5]->2
    pred = head.predict(Z)
    assert pred[0] == 0 and pred[1] in (0, 1) and pred[2] in (0, 2) and pred[3] == 2
    assert torch.equal(head.predict(torch.tensor([[0.1, 1.0], [-3.0, 0.2]])), torch.tensor([1, 2]))
    # computed in float32 from bf16 outputs too
    assert head.loss(Z.bfloat16(), Y).dtype == torch.float32
    assert "prototypes" in dict(head.named_buffers()) and not list(head.parameters())


def test_prototype_head_rejects_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        PrototypeHead(P, reduction="max")
    with pytest.raises(ValueError, match="prototypes"):
        PrototypeHead(torch.ones(3))
    with pytest.raises(ValueError, match="unit sphere"):
        PrototypeHead(2 * P).loss(Z, Y)
    with pytest.raises(ValueError, match="z must have shape"):
        PrototypeHead(P).loss(torch.zeros(4, 3), Y)


def test_softmax_head_cross_entropy_by_hand():
    head = SoftmaxHead(2, 2)
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(2))
        head.linear.bias.zero_()
    z = torch.tensor([[0.0, math.log(3.0)], [5.0, 0.0]])
    y = torch.tensor([1, 1])
    # p(y=1 | z_0) = 3/4; p(y=1 | z_1) = 1/(1+e^5)
    expected = (-math.log(0.75) + math.log(1 + math.exp(5))) / 2
    assert head.loss(z, y).item() == pytest.approx(expected, rel=1e-6)
    assert head.predict(z).tolist() == [1, 0]
    with pytest.raises(ValueError, match="n_classes"):
        SoftmaxHead(2, 0)


def test_tensor_loader_covers_every_example_once():
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    loader = TensorLoader(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 4
    seen = torch.cat([yb for _, yb in loader])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    again = torch.cat([yb for _, yb in TensorLoader(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(seen, again)
    assert len(TensorLoader(x, y, 3, drop_last=True)) == 3
    assert [xb[:, 0].tolist() for xb, _ in TensorLoader(x, y, 4)][-1] == [8.0, 9.0]
    assert isinstance(as_loader((x, y)), TensorLoader)
    with pytest.raises(ValueError, match="same N"):
        TensorLoader(x, y[:5], 2)
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(x, y, 0)


def test_evaluate_counts_correct_predictions():
    head = PrototypeHead(P)
    z = torch.tensor([[2.0, 0.1], [0.1, 1.0], [-1.0, 0.2], [1.0, 0.0]])
    y = torch.tensor([0, 1, 2, 2])  # the last one is wrong
    res = evaluate(nn.Identity(), head, (z, y))
    assert res["accuracy"] == pytest.approx(0.75) and res["n"] == 4
    # rows = true class, columns = predicted: the class-2 point at (1, 0) is taken for class 0
    expected = torch.zeros(P.shape[0], P.shape[0], dtype=torch.long)
    expected[0, 0] = expected[1, 1] = expected[2, 2] = expected[2, 0] = 1
    assert torch.equal(res["confusion"], expected)


def _separable(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    y = torch.arange(n) % 3
    return centres[y] + torch.randn(n, 3, generator=g), y


@pytest.mark.parametrize("head_kind", ["prototype", "softmax"])
def test_train_classifier_frozen_features(head_kind):
    """A linear map on fixed features (the text experiment's use): separable classes are learnt."""
    torch.manual_seed(0)
    x, y = _separable()
    P3 = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [-0.5, 0.87, 0], [-0.5, -0.87, 0]]), dim=1)
    model = nn.Linear(3, 3)
    head = PrototypeHead(P3, reduction="mean") if head_kind == "prototype" else SoftmaxHead(3, 3)
    loader = TensorLoader(x, y, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    logged = []
    hist = train_classifier(model, head, loader, epochs=6, lr=0.1, milestones=[4], eval_loader=(x, y),
                            eval_every=3, log=logged.append, progress=False)
    assert [h["lr"] for h in hist] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert "eval_accuracy" in hist[2] and "eval_accuracy" not in hist[3] and "eval_accuracy" in hist[5]
    assert hist[-1]["eval_accuracy"] >= 0.97 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    # every record is logged as returned, except the last one's confusion matrix (C x C counts)
    confusion = hist[-1].pop("eval_confusion")
    assert logged == hist
    assert len(confusion) == 3 and sum(map(sum, confusion)) == len(y)
    assert [sum(row) for row in confusion] == torch.bincount(y).tolist()
    assert sum(row[c] for c, row in enumerate(confusion)) / len(y) == pytest.approx(hist[-1]["eval_accuracy"])
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(model, head, loader, epochs=0, progress=False)


def test_amp_flag_is_ignored_on_cpu():
    x, y = _separable(60)
    out = []
    for amp in (False, True):
        torch.manual_seed(0)
        model = nn.Linear(3, 3)
        hist = train_classifier(model, SoftmaxHead(3, 3), (x, y), epochs=2, lr=0.1, amp=amp, progress=False)
        out.append(hist[-1]["train_loss"])
    assert out[0] == out[1]


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.parametrize("head_kind", ["prototype", "softmax"])
def test_one_training_step_on_real_images_lowers_the_loss(fmnist_cache, head_kind):
    from dispersion.data.images import NORMALIZATION, BatchAugment, class_balanced_subset, load_fashion_mnist
    from dispersion.models.resnet import resnet
    from dispersion.prototypes import place_prototypes

    train, _ = load_fashion_mnist(fmnist_cache, download=False)
    idx = class_balanced_subset(train.labels, 8, seed=0)
    x = BatchAugment(*NORMALIZATION["fashion_mnist"])(train.images[idx], train=False)
    y = train.labels[idx]
    torch.manual_seed(0)
    model = resnet(8, 4, in_channels=1, width=4)
    if head_kind == "prototype":
        head = PrototypeHead(place_prototypes(10, 4, "mma", {}, steps=200, lr=0.01, seed=0), reduction="mean")
    else:
        head = SoftmaxHead(4, 10)

    def loss_now():
        model.train()  # batch statistics: the same batch gives the same normalisation
        with torch.no_grad():
            return head.loss(model(x), y).item()

    before = loss_now()
    train_classifier(model, head, TensorLoader(x, y, len(y)), epochs=1, lr=0.02, weight_decay=0.0, progress=False)
    assert loss_now() < before


def test_regularized_loss_per_token_is_the_summed_loss_over_tokens():
    """λ per token: the gradient equals that of (Σ_tokens CE + λ R) / n_tokens, computed naively."""
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)
    y = torch.randint(0, 5, (6,))
    E = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float32), dim=1).requires_grad_(True)

    def r_of(E):
        return (E @ E.T).pow(2).sum()

    regularized_loss(torch.nn.functional.cross_entropy(logits, y), r_of(E), 10.0, 6, "token").backward()
    g_logits, g_E = logits.grad.clone(), E.grad.clone()
    logits.grad, E.grad = None, None
    naive = (torch.nn.functional.cross_entropy(logits, y, reduction="sum") + 10.0 * r_of(E)) / 6
    naive.backward()
    assert torch.allclose(g_logits, logits.grad, atol=1e-6) and torch.allclose(g_E, E.grad, atol=1e-5)
    ce, r = torch.tensor(2.0), torch.tensor(3.0)
    assert regularized_loss(ce, r, 10.0, 1000, "batch").item() == pytest.approx(32.0)
    assert regularized_loss(ce, r, 10.0, 1000, "token").item() == pytest.approx(2.03)
    with pytest.raises(ValueError, match="lambda_per"):
        regularized_loss(ce, r, 10.0, 10, "sentence")
    with pytest.raises(ValueError, match="n_tokens"):
        regularized_loss(ce, r, 10.0, 0)
