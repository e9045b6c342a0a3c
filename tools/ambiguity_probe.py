"""Does LION's ambiguity test find the wrong labels? For a finished run's trained model (last.pt, or best.pt), the
share of labeled faces whose given label the model contradicts by more than δ_amb = 0.5, among
faces whose observed label is wrong and among those whose label is right (SynthFER knows the
true class), in eval mode and as training visits see them (dropout, weak augmentation; 5 draws).
A test that carries information flags wrong labels far more often than right ones.

    .venv/bin/python tools/ambiguity_probe.py runs/sup400 [runs/lion400 ...] [--checkpoint best]
"""
import argparse

import numpy as np
import torch

from lion_kit.evaluate import train_face_probs
from lion_kit.runs import load_run


def probe(run_dir, checkpoint="last", draws=5, delta_amb=0.5):
    run = load_run(run_dir)
    ds = run.dataset("train")
    lab = run.split["labeled"]
    given, true = np.asarray(ds.targets)[lab], np.asarray(ds.true_targets)[lab]

    def ambiguous(visit, seed):
        p = train_face_probs(run, lab, checkpoint, visit, seed)
        return p.max(1) - p[np.arange(len(p)), given] > delta_amb, p.argmax(1)

    wrong = given != true
    amb, pred = ambiguous(False, 0)
    visits = np.stack([ambiguous(True, s)[0] for s in range(draws)])
    epoch = torch.load(run.path / f"{checkpoint}.pt", map_location="cpu", weights_only=False)["epoch"]
    print(f"{run_dir}/{checkpoint}.pt (end of epoch {epoch}): {len(lab)} labeled faces, {wrong.mean():.3f} with a wrong "
          f"observed label; model agrees with the given label on {(pred == given).mean():.3f}")
    print(f"  eval mode: ambiguous {amb.mean():.3f} (wrong labels {amb[wrong].mean():.3f}, right labels {amb[~wrong].mean():.3f})")
    print(f"  training visits (dropout + weak aug): {visits.mean():.3f} per visit (wrong {visits[:, wrong].mean():.3f}, "
          f"right {visits[:, ~wrong].mean():.3f}); ambiguous in at least one of {draws}: {visits.any(0).mean():.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--checkpoint", default="last", choices=("last", "best"), help="last.pt (default) or best.pt")
    a = ap.parse_args()
    torch.set_num_threads(1)
    for d in a.runs:
        probe(d, a.checkpoint)
