"""How precise can negative labels be with a given model? Progressive negative learning rules out,
for a low-confidence unlabeled face, its least likely class once that class's probability is at
most δ_neg = 0.01. Whatever the schedule, a bank is at best as right as the model's ranking at the
bottom: if the true class is often the least likely one, no way of growing the bank reaches a high
precision. For a run's checkpoint this prints, over the first 2,000 unlabeled faces of its split
(SynthFER knows their true class), as training visits see them (the training model, not the EMA,
in train mode with weak augmentation: what LION's bank sees) and in eval mode:

- accuracy and mean top probability;
- the precision of the k-th least likely class (k = 1 … 6: the share of faces whose k-th least
  likely class is not their true class; chance 6/7 = 0.857);
- how many classes sit at p ≤ δ_neg per face, and the precision of those;
- the share of true-class probabilities below 0.01.

    .venv/bin/python tools/negative_probe.py RUN [RUN ...] [--checkpoint best] [--faces 2000]
"""
import argparse

import numpy as np
import torch

from lion_kit.evaluate import train_face_probs
from lion_kit.runs import load_run


def bottom_precision(p, true, delta_neg=0.01) -> dict:
    """Precision of the k-th least likely class and of the classes at p <= delta_neg."""
    order = np.argsort(p, 1)
    below = p <= delta_neg
    rows = np.arange(len(p))
    return {"accuracy": float((p.argmax(1) == true).mean()),
            "top_prob": float(p.max(1).mean()),
            "kth_least_likely": [float(1 - (order[:, k] == true).mean()) for k in range(p.shape[1] - 1)],
            "below_delta_per_face": float(below.sum(1).mean()),
            "below_delta_precision": float(1 - below[rows, true].sum() / max(below.sum(), 1)),
            "true_below_delta": float(below[rows, true].mean())}


def probe(run_dir, checkpoint="best", faces=2000):
    run = load_run(run_dir)
    idx = np.asarray(run.split["unlabeled"])[:faces]
    true = np.asarray(run.dataset("train").true_targets)[idx]
    epoch = torch.load(run.path / f"{checkpoint}.pt", map_location="cpu", weights_only=False)["epoch"]
    print(f"{run_dir}/{checkpoint}.pt (end of epoch {epoch}), {len(idx)} unlabeled faces")
    for name, visit in (("training visit", True), ("eval mode", False)):
        r = bottom_precision(train_face_probs(run, idx, checkpoint, visit), true)
        kth = " ".join(f"{x:.3f}" for x in r["kth_least_likely"])
        print(f"  {name}: accuracy {r['accuracy']:.3f}, top probability {r['top_prob']:.3f}; precision of the "
              f"1st…6th least likely class {kth}; classes at p ≤ 0.01 per face {r['below_delta_per_face']:.2f}, "
              f"precision {r['below_delta_precision']:.3f}; true class at p ≤ 0.01 for {r['true_below_delta']:.3f} of faces")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--checkpoint", default="best", choices=("best", "last"), help="best.pt or last.pt (default: best)")
    ap.add_argument("--faces", type=int, default=2000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for d in a.runs:
        probe(d, a.checkpoint, a.faces)
