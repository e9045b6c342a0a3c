"""Probes of a finished run's model where the true class is known (SynthFER, FERPlus).

`python -m lion_kit probe ambiguity|negatives|linear RUN [--checkpoint last|best]`

- **ambiguity**: does LION's ambiguity test find the wrong labels? The share of labeled faces the
  model contradicts by more than δ_amb, among faces whose given label is wrong and among those
  whose label is right, in eval mode and as training visits see them (dropout, weak augmentation).
  A test that carries information flags wrong labels far more often than right ones.
- **negatives**: how precise can negative labels be with this model? A bank is at best as right as
  the model's ranking at the bottom: the precision of the k-th least likely class (chance 6/7),
  the classes at p ≤ δ_neg per face and their precision, on the run's unlabeled faces.
- **linear**: how much expression the run's trunk separates: a logistic regression on frozen
  trunk features of train faces (true class), scored on the test split.

Every probe reads the run's own configuration (image size, stem, dataset options) and checkpoint.
"""
from __future__ import annotations

import numpy as np
import torch

from .evaluate import load_model, train_face_probs
from .runs import load_run


def _truth(run, split="train"):
    ds = run.dataset(split)
    if ds.true_targets is None:
        raise ValueError(f"{run.path}: dataset {ds.signature} has no true classes; probes need SynthFER or FERPlus")
    return ds


def ambiguity(run_dir, checkpoint: str = "last", draws: int = 5, delta_amb: float = 0.5) -> dict:
    run = load_run(run_dir)
    ds, lab = _truth(run), np.asarray(run.split["labeled"])
    given, true = np.asarray(ds.targets)[lab], np.asarray(ds.true_targets)[lab]
    wrong = given != true

    def flagged(visit, seed):
        p = train_face_probs(run, lab, checkpoint, visit, seed)
        return p.max(1) - p[np.arange(len(p)), given] > delta_amb, p.argmax(1)
    amb, pred = flagged(False, 0)
    visits = np.stack([flagged(True, s)[0] for s in range(draws)])
    share = lambda m, sel: float(m[..., sel].mean()) if sel.any() else float("nan")  # noqa: E731
    return {"probe": "ambiguity", "run": str(run_dir), "checkpoint": checkpoint, "labeled": int(len(lab)),
            "wrong_labels": float(wrong.mean()), "agrees_with_given": float((pred == given).mean()),
            "eval": {"ambiguous": float(amb.mean()), "wrong": share(amb, wrong), "right": share(amb, ~wrong)},
            "visits": {"ambiguous": float(visits.mean()), "wrong": share(visits, wrong), "right": share(visits, ~wrong),
                       "in_any_of": draws, "any": float(visits.any(0).mean())}}


def bottom_precision(p, true, delta_neg: float = 0.01) -> dict:
    """Precision of the k-th least likely class and of the classes at p <= delta_neg."""
    order = np.argsort(p, 1)
    below = p <= delta_neg
    rows = np.arange(len(p))
    return {"accuracy": float((p.argmax(1) == true).mean()), "top_prob": float(p.max(1).mean()),
            "kth_least_likely": [float(1 - (order[:, k] == true).mean()) for k in range(p.shape[1] - 1)],
            "below_delta_per_face": float(below.sum(1).mean()),
            "below_delta_precision": float(1 - below[rows, true].sum() / max(below.sum(), 1)),
            "true_below_delta": float(below[rows, true].mean())}


def negatives(run_dir, checkpoint: str = "last", faces: int = 2000) -> dict:
    run = load_run(run_dir)
    idx = np.asarray(run.split["unlabeled"])[:faces]
    true = np.asarray(_truth(run).true_targets)[idx]
    delta = run.config["delta_neg"]
    return {"probe": "negatives", "run": str(run_dir), "checkpoint": checkpoint, "faces": int(len(idx)), "delta_neg": delta,
            "visit": bottom_precision(train_face_probs(run, idx, checkpoint, True), true, delta),
            "eval": bottom_precision(train_face_probs(run, idx, checkpoint, False), true, delta)}


@torch.no_grad()
def _features(net, ds, idx, tf):
    out = [net.trunk(torch.stack([tf(ds.raw(int(j))) for j in idx[i:i + 512]])).mean((2, 3)) for i in range(0, len(idx), 512)]
    return torch.cat(out)


def linear(run_dir, checkpoint: str = "last", faces: int = 4000, l2: float = 1e-3) -> dict:
    from .data import eval_transform
    run = load_run(run_dir)
    net, cfg = load_model(run_dir, checkpoint)
    train, test = _truth(run, "train"), _truth(run, "test")
    tf = eval_transform(cfg["image_size"])
    tr_idx = np.arange(min(faces, len(train)))
    ftr, fte = _features(net, train, tr_idx, tf), _features(net, test, np.arange(len(test)), tf)
    m, s = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - m) / s, (fte - m) / s
    ytr, yte = torch.tensor(np.asarray(train.true_targets)[tr_idx]), torch.tensor(test.true_targets)
    torch.manual_seed(0)
    w = torch.zeros(ftr.shape[1], net.fc.out_features, requires_grad=True)
    b = torch.zeros(net.fc.out_features, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ftr @ w + b, ytr) + l2 * (w ** 2).sum()
        loss.backward()
        return loss
    with torch.enable_grad():
        opt.step(closure)
    acc = lambda f, y: float(((f @ w + b).argmax(1) == y).float().mean())  # noqa: E731
    return {"probe": "linear", "run": str(run_dir), "checkpoint": checkpoint, "train_faces": int(len(tr_idx)),
            "test_faces": int(len(test)), "train_acc": acc(ftr, ytr), "test_acc": acc(fte, yte)}


PROBES = {"ambiguity": ambiguity, "negatives": negatives, "linear": linear}


def describe(r: dict) -> str:
    """One paragraph a person reads (the JSON holds the rest)."""
    head = f"{r['run']}/{r['checkpoint']}.pt"
    if r["probe"] == "ambiguity":
        e, v = r["eval"], r["visits"]
        return (f"{head}: {r['labeled']} labeled faces, {r['wrong_labels']:.3f} with a wrong label; the model agrees with the "
                f"given label on {r['agrees_with_given']:.3f}\n  eval mode: ambiguous {e['ambiguous']:.3f} (wrong labels "
                f"{e['wrong']:.3f}, right labels {e['right']:.3f})\n  training visits: {v['ambiguous']:.3f} per visit "
                f"(wrong {v['wrong']:.3f}, right {v['right']:.3f}); in at least one of {v['in_any_of']}: {v['any']:.3f}")
    if r["probe"] == "negatives":
        lines = [f"{head}: {r['faces']} unlabeled faces"]
        for name in ("visit", "eval"):
            x = r[name]
            kth = " ".join(f"{p:.3f}" for p in x["kth_least_likely"])
            lines.append(f"  {name}: accuracy {x['accuracy']:.3f}, top probability {x['top_prob']:.3f}; precision of the "
                         f"1st..6th least likely class {kth}; classes at p <= {r['delta_neg']} per face "
                         f"{x['below_delta_per_face']:.2f}, precision {x['below_delta_precision']:.3f}")
        return "\n".join(lines)
    return (f"{head}: linear probe of the trunk on the true class, {r['train_faces']} train faces: "
            f"test accuracy {r['test_acc']:.3f} (train {r['train_acc']:.3f})")


def main(a):
    import json
    if a.threads:
        torch.set_num_threads(a.threads)
    for run_dir in a.runs:
        r = PROBES[a.what](run_dir, a.checkpoint)
        print(describe(r))
        if a.json:
            print(json.dumps(r))
