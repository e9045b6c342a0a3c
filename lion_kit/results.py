"""The committed results grid: each finished cell's small outputs kept under `results/`.

A grid takes hours on a 2-core machine and the machine that continues it may be a fresh one,
so cells cannot live in `runs/`. `sweep.run_grid(jobs, keep=ROOT)` copies each finished cell's
`config.json`, `summary.json` and `metrics.jsonl` (a few KB; no checkpoints, no history) to
`ROOT/<variant>/n<labels>_s<seed>[_split<k>]/` and reuses a kept cell whose configuration
matches instead of training it again. `report.py` reads those files alone: tables, paired
differences and README blocks are rebuilt without training.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .grid import VARIANTS, kept_cell_config
from .runs import NOT_CONFIG

ROOT = "results/synthfer-cpu"
KEEP = ("config.json", "summary.json", "metrics.jsonl")
IGNORED = set(NOT_CONFIG)  # options that do not change a number
OK = ("done", "reused", "kept")  # row statuses with numbers (not failed or missing)
ADDED = {"label_noise": 0.0, "lion_rules": "intended", "bgr": False, "map_per_visit": True}  # options added after cells were kept: a config without one ran as this value


def same_config(have: dict, want: dict) -> bool:
    """Whether a kept cell ran with the configuration `want` (both as plain dicts). An option the
    kit gained later is absent from older cells' configs; ADDED says what they ran with."""
    return all(have.get(k, ADDED.get(k)) == v for k, v in want.items() if k not in IGNORED)


def keep(run_dir, cell_dir) -> Path:
    """Copy a finished run's small outputs to `cell_dir`, replacing it as a whole: a folder
    beside it is filled first and renamed, so a cell is never half written."""
    run_dir, cell_dir = Path(run_dir), Path(cell_dir)
    missing = [f for f in KEEP if not (run_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished run: {missing} missing")
    tmp = cell_dir.with_name(f".{cell_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in KEEP:
        shutil.copy2(run_dir / f, tmp / f)
    old = cell_dir.with_name(f".{cell_dir.name}.old")
    if cell_dir.exists():
        cell_dir.rename(old)
    tmp.rename(cell_dir)
    shutil.rmtree(old, ignore_errors=True)
    return cell_dir


def row(summary: dict) -> dict:
    """The grid's columns from one run's summary.json."""
    r = {"acc": summary["last_epoch"]["test_acc"], "mca": summary["last_epoch"]["test_mca"],
         "best_acc": summary["best_epoch"]["test_acc"] if summary.get("best_epoch") else np.nan,
         "relabels": summary.get("relabels"), "relabel_precision": summary.get("relabel_precision"),
         "neg_precision": summary.get("neg_precision"), "neg_mean_size": summary.get("neg_mean_size"),
         "wall_s": summary.get("wall_s")}
    if "last_epoch_true" in summary:
        r["acc_true"] = summary["last_epoch_true"]["test_acc"]
    return r


def load(root=ROOT, preset="cpu", overrides=None) -> pd.DataFrame:
    """One row per kept cell (variant, labels, seed, split seed and the columns of `row`).
    A cell made with another configuration than `results run` would use now (an older preset,
    say) is marked `status="stale"` and left out of the table until it is trained again."""
    root = Path(root)
    rows = []
    for s in sorted(root.glob("*/*/summary.json")):
        cell = s.parent
        if cell.name.startswith("."):
            continue
        missing = [f for f in KEEP if not (cell / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{cell}: kept cell lacks {missing}; expected {list(KEEP)}")
        cfg = json.loads((cell / "config.json").read_text())
        ok = cell.parent.name in VARIANTS and same_config(cfg, kept_cell_config(cell.parent.name, cfg, preset, overrides))
        rows.append({"variant": cell.parent.name, "n_labeled": cfg["n_labeled"], "seed": cfg["seed"],
                     "split_seed": cfg["split_seed"], "cell": str(cell.relative_to(root)), "status": "kept" if ok else "stale",
                     **row(json.loads(s.read_text()))})
    cols = ["variant", "n_labeled", "seed", "split_seed", "cell", "status", "acc", "mca", "best_acc"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)


CURVE = ("results/synthfer-cpu", "results/synthfer-cpu-2x", "results/synthfer-cpu-4x", "results/synthfer-cpu-8x")


def load_budgets(roots=CURVE, preset="cpu", overrides=None) -> pd.DataFrame:
    """Kept cells of grids that differ only in training length (`results run --set iters=N
    --keep ROOT`), one row per cell with `iterations` (epochs × iters) and `budget` (× the
    preset's), plus what the semi-supervised mechanisms did (from metrics.jsonl): the
    confident-mask rate at its peak and in the last epoch, and LION's open candidate sets and
    the labeled set's label accuracy at the end. `overrides` are the --set every grid shares
    besides `iters`. A root that does not exist is skipped (the curve grows as grids land); one
    whose cells disagree on `iters` is an error."""
    from .analysis import mechanisms
    from .config import resolve
    overrides = {k: v for k, v in (overrides or {}).items() if k != "iters"}
    base = resolve(preset, None, overrides)
    frames = []
    for root in roots:
        root = Path(root)
        iters = {json.loads(c.read_text())["iters"] for c in root.glob("*/*/config.json") if not c.parent.name.startswith(".")}
        if not iters:
            continue
        if len(iters) > 1:
            raise ValueError(f"{root}: cells trained with different iters {sorted(iters)}; a budget-curve grid holds one")
        it = iters.pop()
        df = load(root, preset, {**overrides, "iters": it})
        df = df[df["status"].isin(OK)].copy()
        extra = []
        for cell in df["cell"]:
            metrics = pd.read_json(root / cell / "metrics.jsonl", lines=True)
            k, m = mechanisms(metrics), metrics.iloc[-1]
            extra.append({"mask_peak": max(k["mask_rate"]), "mask_last": k["mask_rate"][-1], "open_sets": k["open_sets"],
                          "label_acc_now": float(m["label_acc_now"]) if "label_acc_now" in m and pd.notna(m["label_acc_now"]) else np.nan})
        df = pd.concat([df.reset_index(drop=True), pd.DataFrame(extra, index=range(len(df)))], axis=1) if len(df) else df
        df["root"] = root.as_posix()
        df["iterations"] = base.epochs * it
        df["budget"] = it / base.iters
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", "budget", "acc"])
