"""The committed results grid: each finished cell's small outputs kept under `results/`.

A grid takes hours on a 2-core machine and the machine that continues it may be a fresh one,
so cells cannot live in `runs/`. `sweep.run_grid(jobs, keep=ROOT)` copies each finished cell's
`config.json`, `summary.json` and `metrics.jsonl` (a few KB; no checkpoints, no history) to
`ROOT/<variant>/n<labels>_s<seed>[_split<k>]/` and reuses a kept cell whose configuration
matches instead of training it again. Everything below reads those files alone: the table,
its CSV and the plot are rebuilt without training (`python -m lion_kit results table`), and a
test checks that the README's table is what that command prints.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import atomic_write_text

ROOT = "results/synthfer-cpu"
KEEP = ("config.json", "summary.json", "metrics.jsonl")
IGNORED = {"out", "workers", "threads", "device"}  # do not change a run's numbers
OK = ("done", "reused", "kept")  # row statuses with numbers (not failed or missing)
README_BEGIN, README_END = "<!-- results-table: begin -->", "<!-- results-table: end -->"


def same_config(have: dict, want: dict) -> bool:
    """Whether a kept cell ran with the configuration `want` (both as plain dicts)."""
    return all(have.get(k) == v for k, v in want.items() if k not in IGNORED)


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


def current_config(variant: str, cfg: dict, preset="cpu", overrides=None) -> dict:
    """The configuration `results run` would give this cell now (same variant, budget, seeds)."""
    import dataclasses
    from .config import resolve
    o = {**(overrides or {}), **_variants().get(variant, {}), "n_labeled": cfg["n_labeled"], "seed": cfg["seed"],
         "split_seed": cfg["split_seed"]}
    return dataclasses.asdict(resolve(preset, None, o))


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
        ok = cell.parent.name in _variants() and same_config(cfg, current_config(cell.parent.name, cfg, preset, overrides))
        rows.append({"variant": cell.parent.name, "n_labeled": cfg["n_labeled"], "seed": cfg["seed"],
                     "split_seed": cfg["split_seed"], "cell": str(cell.relative_to(root)), "status": "kept" if ok else "stale",
                     **row(json.loads(s.read_text()))})
    cols = ["variant", "n_labeled", "seed", "split_seed", "cell", "status", "acc", "mca", "best_acc"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)


def _variants() -> dict:
    """sweep.VARIANTS (imported late: sweep imports this module)."""
    from .sweep import VARIANTS
    return VARIANTS


def _fmt(values, digits=3) -> str:
    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


COLUMNS = {"acc": "accuracy (last epoch)", "mca": "mean class acc.", "acc_true": "acc. vs true class",
           "relabels": "relabels", "relabel_precision": "relabel precision", "neg_precision": "neg. precision",
           "neg_mean_size": "neg. set size", "best_acc": "best-epoch acc. (paper's protocol)"}


def table(df: pd.DataFrame, split_row=("lion", 400)) -> pd.DataFrame:
    """Mean ± sample std (ddof=1) over seeds per (variant, budget); cells at the default split
    seed make the main rows, and `split_row`'s cells with other split seeds one extra row over
    three split seeds (label choice is a large source of variance in semi-supervised FER)."""
    from .config import Config
    VARIANTS = _variants()
    default_split = Config.split_seed
    order = {v: i for i, v in enumerate(VARIANTS)}
    out = []
    df = df[df["status"].isin(OK)] if len(df) else df
    main = df[df["split_seed"] == default_split]
    for (v, n), g in sorted(main.groupby(["variant", "n_labeled"]), key=lambda t: (t[0][1], order.get(t[0][0], 99))):
        out.append({"labels": int(n), "variant": v, "runs": len(g), **_cells(g, VARIANTS.get(v, {}))})
    v, n = split_row
    g = df[(df["variant"] == v) & (df["n_labeled"] == n) & (df["seed"] == 0)] if len(df) else df
    if len(g) and g["split_seed"].nunique() > 1:
        out.append({"labels": int(n), "variant": f"{v}, split seeds {sorted(g['split_seed'].unique().tolist())}",
                    "runs": len(g), **_cells(g, VARIANTS.get(v, {}))})
    return pd.DataFrame(out, columns=["labels", "variant", "runs", *COLUMNS.values()])


def _cells(g, variant: dict) -> dict:
    """Formatted columns; a mechanism the variant does not run shows "–", not a zero."""
    lion = variant.get("method") == "lion"
    off = set() if lion and variant.get("disambiguation", True) else {"relabels", "relabel_precision"}
    off |= set() if lion and variant.get("negative", True) else {"neg_precision", "neg_mean_size"}
    return {name: (_fmt(g[c], 1 if c in ("relabels", "neg_mean_size") else 3) if c in g and c not in off else "–")
            for c, name in COLUMNS.items()}


def markdown(t: pd.DataFrame) -> str:
    """A GitHub table (no dependency on tabulate)."""
    if t.empty:
        return "_No cells kept yet: `python -m lion_kit results run` trains them._"
    head = "| " + " | ".join(t.columns) + " |"
    rule = "|" + "|".join("---:" if c in ("labels", "runs") else "---" for c in t.columns) + "|"
    body = ["| " + " | ".join(str(x) for x in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join([head, rule, *body])


STYLE = {"supervised": ("k", "s", "-"), "fixmatch": ("tab:blue", "^", "-"), "lion": ("tab:red", "o", "-"),
         "lion-no-ld": ("tab:orange", "v", "--"), "lion-no-nl": ("tab:green", "D", "--"),
         "lion-nl-no-progression": ("tab:purple", "P", ":"), "lion-no-sn": ("tab:brown", "X", ":")}


def plot(df: pd.DataFrame, metric="acc", ax=None):
    """Mean ± sample std over seeds against the label budget (log axis); baselines solid, LION's
    ablations dashed or dotted with their own markers; y from just below the lowest error bar."""
    import matplotlib.pyplot as plt
    from .config import Config
    d = df[df["split_seed"] == Config.split_seed] if "split_seed" in df else df
    d = d[d["status"].isin(OK)]
    ax = ax or plt.subplots(figsize=(7, 4.2))[1]
    lows, highs = [], []
    budgets = sorted(d["n_labeled"].unique())
    groups = list(d.groupby("variant", sort=False))
    for k, (v, g) in enumerate(groups):
        s = g.groupby("n_labeled")[metric].agg(["mean", "std", "size"])
        err = s["std"].fillna(0)
        c, m, ls = STYLE.get(v, (None, "o", "-"))
        dodge = 1.025 ** (k - (len(groups) - 1) / 2)  # side by side on the log axis: error bars stay apart
        ax.errorbar(s.index * dodge, s["mean"], yerr=err, color=c, marker=m, ls=ls, capsize=3, lw=1.4, ms=5,
                    label=f"{v} (n={int(s['size'].min())}–{int(s['size'].max())})" if s["size"].nunique() > 1 else f"{v} (n={int(s['size'].iloc[0])})")
        lows.append((s["mean"] - err).min()); highs.append((s["mean"] + err).max())
    if lows:
        lo, hi = min(lows), max(highs)
        pad = max(0.02, 0.08 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set(xscale="log", xlabel="labeled faces (log scale)", ylabel={"acc": "test accuracy", "mca": "mean class accuracy"}.get(metric, metric),
           title=f"last-epoch {metric}, mean ± std over seeds")
    if budgets:
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return ax.figure


def rebuild(root=ROOT, out=None, preset="cpu", overrides=None) -> str:
    """Table (markdown, printed and returned), CSV and plot from the kept cells alone."""
    import matplotlib
    matplotlib.use("Agg")
    df = load(root, preset, overrides)
    stale = df[df["status"] == "stale"]
    if len(stale):
        print(f"[results] {len(stale)} kept cell(s) ran with another configuration than `results run --preset {preset}` "
              f"uses now and are left out: {', '.join(stale['cell'])}; `results run` trains them again", file=sys.stderr)
    t = table(df)
    text = markdown(t)
    out = Path(out or root)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.md", text + "\n")
    atomic_write_text(out / "table.csv", t.to_csv(index=False))
    atomic_write_text(out / "cells.csv", df.to_csv(index=False))
    if len(df):
        fig = plot(df)
        fig.savefig(out / "accuracy.png", dpi=120, bbox_inches="tight")
    return text


def readme_block(readme="README.md") -> str:
    text = Path(readme).read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: no results table block; expected the lines {README_BEGIN!r} and {README_END!r}")
    return text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()


def write_readme(text: str, readme="README.md"):
    readme_block(readme)  # the markers must be there
    s = Path(readme).read_text()
    head, rest = s.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    atomic_write_text(Path(readme), f"{head}{README_BEGIN}\n{text}\n{README_END}{tail}")
