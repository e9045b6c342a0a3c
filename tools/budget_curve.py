"""The issue-9 budget curve: supervised and LION at 1x, 2x, 4x the cpu preset's iterations (and
supervised at 96 px up to 8x), tabulated from the small files kept in results/issue9-cpu-regime
(no training). Prints the two markdown tables README's Results quotes.

    .venv/bin/python tools/budget_curve.py
"""
import json
import sys
from pathlib import Path

import pandas as pd

from lion_kit.analysis import mechanisms

ROOT = Path(__file__).resolve().parent.parent / "results" / "issue9-cpu-regime"


def metrics(name):
    return pd.read_json(ROOT / name / "metrics.jsonl", lines=True)


def iters(name):
    c = json.loads((ROOT / name / "config.json").read_text())
    return c["epochs"] * c["iters"]


# LION runs per budget: E_r mapped by block mean (run epoch 3 of 6, the kit now) and, for
# comparison, the runs made before that change (E_r at run epoch 2)
LION_NOW = ["lion_400_v3", "lion_400_x2_v3", "lion_400_x4_v3"]
LION_BEFORE = ["lion_400_v2", "lion_400_x2", "lion_400_x4"]


def main(root=ROOT):
    sup = {"all": ["sup_all_v2", "sup_all_x2", "sup_all_x4"], "400": ["sup_400_v2", "sup_400_x2", "sup_400_x4"]}

    def acc(name):
        return f"{metrics(name)['test_acc'].iloc[-1]:.3f}" if name and (root / name).is_dir() else "–"
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
        r = mechanisms(metrics(name))
        sizes = "" if r["bank_sizes_present"] is None else f", sizes {r['bank_sizes_present']}"
        pp = " / ".join(f"{x:.2f}" if x is not None else "–" for x in r["pseudo_precision"]) if r["pseudo_precision"] else "not recorded"
        right = round(r["relabels"] * r["relabel_precision"]) if r["relabel_precision"] is not None else 0
        when = ", E_r at run epoch 2 (before)" if name in LION_BEFORE else ""
        print(f"| {iters(name):,} iterations{when} | {' / '.join(f'{x:.2f}' for x in r['mask_rate'])} | {r['mask_epochs_over_0.3']} | {pp} | "
              f"{r['bank_mean']:.2f} at epoch {r['bank_epoch']}, {r['bank_precision']:.3f}{sizes} | {r['open_sets']} | "
              f"{r['relabels']} ({right}) | {r['label_acc_given']:.2f} | {r['test_acc']:.3f} ({r['best_acc']:.3f}) |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
