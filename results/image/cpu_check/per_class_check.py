"""Issue 5 diagnosis: why do D = 3 prototype networks plateau below softmax?

Fashion-MNIST, 2 000 training images per class (the full 10 000-image test set), ResNet-32,
12 epochs with lr / 10 at epoch 9. Prototype head: MM prototypes (10 000 Riemannian Adam steps),
HPN's summed (1 - cos)^2 loss, lr 0.01 (the paper-scale settings). Softmax head: mean
cross-entropy, lr 0.05 (as in the softmax CPU check). Prints the prototype cosines (x 100),
per-epoch train / test accuracy and the test confusion matrix (rows: true class).
Run from the repository root:

    python results/image/cpu_check/per_class_check.py proto 3    # or: proto 6, softmax 3

The committed output (2-core CPU, 2 threads, ~6 min per run) is per_class_check.txt.
"""

import sys

import torch
import yaml

from dispersion.experiments.image import _build_loaders, run_spec
from dispersion.models.resnet import resnet
from dispersion.prototypes import place_prototypes
from dispersion.training import PrototypeHead, SoftmaxHead, train_classifier

torch.set_num_threads(2)
head_kind, dim = sys.argv[1], int(sys.argv[2])
with open("config/config.yaml", encoding="utf-8") as f:  # the paper-scale data settings and loaders
    spec = run_spec(yaml.safe_load(f), "fashion_mnist", dim, "softmax" if head_kind == "softmax" else "mma")
spec["data"]["train_per_class"] = 2000
train, test, _ = _build_loaders(spec, torch.device("cpu"), seed=0)
torch.manual_seed(0)
if head_kind == "softmax":
    head, lr = SoftmaxHead(dim, 10), 0.05
else:
    P = place_prototypes(10, dim, "mma", {}, steps=10_000, lr=0.005, seed=0, progress=False, dtype=torch.float64)
    P = torch.nn.functional.normalize(P.float(), dim=1)
    head, lr = PrototypeHead(P, reduction="sum"), 0.01
    print("prototype cos matrix (rounded):\n", (P @ P.T).mul(100).round().int())
model = resnet(32, dim, 1, 16)
history = train_classifier(model, head, train, epochs=12, lr=lr, milestones=[9], eval_loader=test, eval_every=4,
                           progress=False)
for h in history:
    print(h["epoch"], round(h["train_accuracy"], 4), h.get("eval_accuracy"), round(h["epoch_time_s"]))
model.eval()
confusion = torch.zeros(10, 10, dtype=torch.int64)
with torch.no_grad():
    for x, y in test:
        confusion.index_put_((y, head.predict(model(x))), torch.ones_like(y), accumulate=True)
print(head_kind, dim, "per-class test acc:", [round(v, 3) for v in (confusion.diag() / confusion.sum(1)).tolist()])
print("confusion (rows true):\n", confusion)
