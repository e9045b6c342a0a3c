"""The issue-9 budget curve: supervised and LION at 1x, 2x, 4x (8x) the cpu preset's iterations,
tabulated from the small files kept in results/issue9-cpu-regime (no training). Prints the two
markdown tables README's Results quotes.

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


def main(root=ROOT):
    sup = {"all": ["sup_all_v2", "sup_all_x2", "sup_all_x4", "sup_all_x8"], "400": ["sup_400_v2", "sup_400_x2", "sup_400_x4"]}
    print("| iterations | supervised, all labels | supervised, 400 labels | LION, 400 labels |")
    print("|---:|---|---|---|")
    lion = ["lion_400_v2", "lion_400_x2", "lion_400_x4"]
    for k, mult in enumerate((1, 2, 4, 8)):
        cells = []
        for name in (sup["all"][k] if k < 4 else None, sup["400"][k] if k < 3 else None, lion[k] if k < 3 else None):
            cells.append(f"{metrics(name)['test_acc'].iloc[-1]:.3f}" if name and (root / name).is_dir() else "–")
        if any(c != "–" for c in cells):
            print(f"| {900 * mult:,} ({mult}×) | " + " | ".join(cells) + " |")
    for name, mult in (("sup_all_96", 1), ("sup_all_96_x2", 2), ("sup_all_96_x4", 4)):
        if (root / name).is_dir():
            print(f"| {900 * mult:,} ({mult}×) at 96 px | {metrics(name)['test_acc'].iloc[-1]:.3f} | – | – |")
    print()
    print("| LION 400 | mask rate per epoch | epochs ≥ 0.3 | pseudo-labels right, per epoch | bank at λ_n → 0: mean, precision, sizes | open sets | relabels (right) | observed labels right |")
    print("|---|---|---:|---|---|---:|---|---:|")
    for name in lion:
        if not (root / name).is_dir():
            continue
        r = mechanisms(metrics(name))
        sizes = "" if r["bank_sizes_present"] is None else f", sizes {r['bank_sizes_present']}"
        pp = " / ".join(f"{x:.2f}" if x is not None else "–" for x in r["pseudo_precision"]) if r["pseudo_precision"] else "not recorded"
        right = round(r["relabels"] * r["relabel_precision"]) if r["relabel_precision"] is not None else 0
        print(f"| {iters(name):,} iterations | {' / '.join(f'{x:.2f}' for x in r['mask_rate'])} | {r['mask_epochs_over_0.3']} | {pp} | "
              f"{r['bank_mean']:.2f} at epoch {r['bank_epoch']}, {r['bank_precision']:.3f}{sizes} | {r['open_sets']} | "
              f"{r['relabels']} ({right}) | {r['label_acc_given']:.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
