"""Linear probe of a trunk on SynthFER expressions: frozen trunk features of 4,000 train faces ->
logistic regression (L-BFGS, small L2) on the true class -> test accuracy. Measures how much
expression a trunk already separates before any fine-tuning (README, Results: the trunk table).

    .venv/bin/python tools/linear_probe.py none weights/synthfer-faces-ac1377d20530.pt
"""
import sys
import time

import torch

from lion_kit.data import eval_transform, load_dataset
from lion_kit.model import LionNet, load_pretrained


def features(net, ds, n=None):
    tf, out = eval_transform(64), []
    idx = list(range(len(ds) if n is None else n))
    with torch.no_grad():
        for i in range(0, len(idx), 512):
            x = torch.stack([tf(ds.raw(j)) for j in idx[i:i + 512]])
            out.append(net.trunk(x).mean((2, 3)))
    return torch.cat(out)


def probe(name, train, test, n_train=4000):
    torch.manual_seed(0)
    net = LionNet().eval()
    if name != "none":
        load_pretrained(net, name)
    ftr, fte = features(net, train, n_train), features(net, test)
    m, s = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - m) / s, (fte - m) / s
    ytr, yte = torch.tensor(train.true_targets[:n_train]), torch.tensor(test.true_targets)
    w = torch.zeros(512, 7, requires_grad=True)
    b = torch.zeros(7, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ftr @ w + b, ytr) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return ((fte @ w + b).argmax(1) == yte).float().mean().item(), ((ftr @ w + b).argmax(1) == ytr).float().mean().item()


if __name__ == "__main__":
    torch.set_num_threads(2)
    train, test = load_dataset("synthfer", "train", image_size=64), load_dataset("synthfer", "test", image_size=64)
    for name in sys.argv[1:] or ["none"]:
        t = time.time()
        acc, tr = probe(name, train, test)
        print(f"{name}: linear probe on the true class, 4,000 train faces: test acc {acc:.3f} (train {tr:.3f}), {time.time() - t:.0f} s")
