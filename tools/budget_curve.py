"""The issue-9 budget curve: supervised and LION at 1x, 2x, 4x the cpu preset's iterations (and
supervised at 96 px up to 8x), tabulated from the small files kept in results/issue9-cpu-regime
(no training). Prints the two markdown tables README's Results quotes; with --ablations, the
table of what each part of the short-run mapping does (the cpu preset with one change each).

    .venv/bin/python tools/budget_curve.py [--ablations]
"""
import argparse
import json
import math
from pathlib import Path

import pandas as pd

from lion_kit.analysis import mechanisms

ROOT = Path(__file__).resolve().parent.parent / "results" / "issue9-cpu-regime"


def metrics(name, root=ROOT):
    return pd.read_json(root / name / "metrics.jsonl", lines=True)


def config(name, root=ROOT):
    return json.loads((root / name / "config.json").read_text())


def relabels_right(r):
    """How many of a run's relabels were right (relabel precision is over all of them)."""
    return round(r["relabels"] * r["relabel_precision"]) if r["relabel_precision"] is not None else 0


# LION runs per budget: E_r mapped by block mean (run epoch 3 of 6, the kit now) and, for
# comparison, the runs made before that change (E_r at run epoch 2)
LION_NOW = ["lion_400_v3", "lion_400_x2_v3", "lion_400_x4_v3"]
LION_BEFORE = ["lion_400_v2", "lion_400_x2", "lion_400_x4"]


def main(root=ROOT):
    sup = {"all": ["sup_all_v2", "sup_all_x2", "sup_all_x4"], "400": ["sup_400_v2", "sup_400_x2", "sup_400_x4"]}

    def acc(name):
        return f"{metrics(name, root)['test_acc'].iloc[-1]:.3f}" if name and (root / name).is_dir() else "–"
    print("| iterations | supervised, all labels | supervised, 400 labels | LION, 400 labels | LION, 400 labels, E_r at run epoch 2 (before) |")
    print("|---:|---|---|---|---|")
    for k, mult in enumerate((1, 2, 4)):
        cells = [acc(sup["all"][k]), acc(sup["400"][k]), acc(LION_NOW[k]), acc(LION_BEFORE[k])]
        if any(c != "–" for c in cells):
            print(f"| {900 * mult:,} ({mult}×) | " + " | ".join(cells) + " |")
    for name, mult in (("sup_all_96", 1), ("sup_all_96_x2", 2), ("sup_all_96_x4", 4), ("sup_all_96_x8", 8)):
        if (root / name).is_dir():
            print(f"| {900 * mult:,} ({mult}×) at 96 px | {acc(name)} | – | – | – |")
    print()
    print("| LION 400 | mask rate per epoch | epochs ≥ 0.3 | pseudo-labels right, per epoch | bank at λ_n → 0: mean, precision, sizes | open sets | relabels (right) | observed labels right | accuracy: last (best) |")
    print("|---|---|---:|---|---|---:|---|---:|---|")
    for name in LION_NOW + LION_BEFORE:
        if not (root / name).is_dir():
            continue
        r, c = mechanisms(metrics(name, root)), config(name, root)
        sizes = "" if r["bank_sizes_present"] is None else f", sizes {r['bank_sizes_present']}"
        pp = " / ".join(f"{x:.2f}" if x is not None else "–" for x in r["pseudo_precision"]) if r["pseudo_precision"] else "not recorded"
        when = ", E_r at run epoch 2 (before)" if name in LION_BEFORE else ""
        print(f"| {c['epochs'] * c['iters']:,} iterations{when} | {' / '.join(f'{x:.2f}' for x in r['mask_rate'])} | {r['mask_epochs_over_0.3']} | {pp} | "
              f"{r['bank_mean']:.2f} at epoch {r['bank_epoch']}, {r['bank_precision']:.3f}{sizes} | {r['open_sets']} | "
              f"{r['relabels']} ({relabels_right(r)}) | {r['label_acc_given']:.2f} | {r['test_acc']:.3f} ({r['best_acc']:.3f}) |")


# (folder, variant, options): the cpu preset at 400 labels with one change each
ABLATIONS = [
    ("lion_400_v3", "**cpu preset**", ""),
    ("lion_400_nohead_v3", "no head scaling", "`--head-lr-scale 1`"),
    ("lion_400_head5_v3", "head rate ×5 instead of ×26.7", "`--head-lr-scale 5`"),
    ("lion_400_raw_v3", "no short-run mapping (the paper's per-visit and per-step values)", "`--no-short-run`"),
    ("lion_400_none_v3", "no trunk", "`--pretrained none`"),
    ("lion_400_v2_er20", "E_r later", "`--relabel-epoch 18` (made as `20` before e56bec6: the same run epoch)"),
    ("lion_400_er25", "E_r later still", "`--relabel-epoch 23` (made as `25` before e56bec6: the same run epoch)"),
    ("lion_400_v2", "E_r earlier: the cpu preset before e56bec6", "`--relabel-epoch 8` now"),
]


def relabel_run_epoch(c):
    """E_r's run epoch as the run had it: recorded in config.json's "derived" since the mapping
    was derived there; older runs used the first block of schedule epochs containing E_r."""
    d = c.get("derived") or {}
    return d.get("relabel_run_epoch") or math.ceil(c["relabel_epoch"] * c["epochs"] / c["schedule_epochs"])


def ablations(root=ROOT):
    print("| variant | options | E_r (run epoch) | mask rate: max, epochs ≥ 0.3 | bank at λ_n → 0: mean (precision) | open sets | relabels (right) | accuracy: last (best) |")
    print("|---|---|---:|---|---|---:|---|---|")
    for name, variant, options in ABLATIONS:
        if not (root / name).is_dir():
            continue
        r, c = mechanisms(metrics(name, root)), config(name, root)
        prec = "—" if r["bank_precision"] is None or r["bank_mean"] == 0 else f"{r['bank_precision']:.3f}"
        print(f"| {variant} | {options} | {relabel_run_epoch(c)} | {max(r['mask_rate']):.3f}, {r['mask_epochs_over_0.3']} | "
              f"{r['bank_mean']:.2f} at epoch {r['bank_epoch']} ({prec}) | {r['open_sets']} | {r['relabels']} ({relabels_right(r)}) | "
              f"{r['test_acc']:.3f} ({r['best_acc']:.3f}) |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="the folder of kept runs")
    ap.add_argument("--ablations", action="store_true", help="print the mapping-ablation table instead")
    a = ap.parse_args()
    (ablations if a.ablations else main)(a.root)
