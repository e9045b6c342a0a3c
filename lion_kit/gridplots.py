"""The results grid's figures: accuracy per budget, paired per-seed differences, the budget
curve. They draw the frames `results.load` / `results.load_budgets` return and never import the
results modules (re-exported by viz)."""
from __future__ import annotations

import pandas as pd

from .config import Config
from .grid import PAIRS, VARIANTS, curve_labels, seed_difference


GRID_STYLE = {"supervised": ("k", "s", "-"), "fixmatch": ("tab:blue", "^", "-"), "lion": ("tab:red", "o", "-"),
         "lion-no-ld": ("tab:orange", "v", "--"), "lion-no-nl": ("tab:green", "D", "--"),
         "lion-nl-no-progression": ("tab:purple", "P", ":"), "lion-no-sn": ("tab:brown", "X", ":")}


def plot_grid(df: pd.DataFrame, metric="acc", ax=None):
    """A results grid's kept cells (`results.load`, finished rows only): mean ± sample std over
    seeds against the label budget (log axis); baselines solid, LION's ablations dashed or dotted
    with their own markers; y from just below the lowest error bar."""
    import matplotlib.pyplot as plt
    d = df[df["split_seed"] == Config.split_seed] if "split_seed" in df else df
    ax = ax or plt.subplots(figsize=(7, 4.2))[1]
    lows, highs = [], []
    budgets = sorted(d["n_labeled"].unique())
    groups = list(d.groupby("variant", sort=False))
    for k, (v, g) in enumerate(groups):
        s = g.groupby("n_labeled")[metric].agg(["mean", "std", "size"])
        err = s["std"].fillna(0)
        c, m, ls = GRID_STYLE.get(v, (None, "o", "-"))
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


def plot_paired(df: pd.DataFrame, metric="acc", ax=None):
    """Per-seed differences (grid.PAIRS) at each budget: one dot per seed, the mean as a bar,
    zero as a line. A difference whose dots straddle zero is no difference."""
    import matplotlib.pyplot as plt
    d = df[df["split_seed"] == Config.split_seed]
    budgets = sorted(d["n_labeled"].unique())
    ax = ax or plt.subplots(figsize=(8, 3.6))[1]
    labels, x = [], 0
    for n in budgets:
        at = d[d["n_labeled"] == n].set_index(["variant", "seed"])[metric]
        for a, b in PAIRS:
            diff = seed_difference(at, a, b)
            if diff is None:
                continue
            c = GRID_STYLE.get(a, ("0.4",))[0]
            ax.bar(x, diff.mean, color=c, alpha=0.35, width=0.7)
            ax.scatter([x] * diff.n, diff.values, color=c, zorder=3, s=18)
            labels.append(f"{a} − {b}\n{n} labels")
            x += 1
    ax.axhline(0, color="k", lw=1)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30, ha="right")
    ax.set(ylabel=f"difference in last-epoch {metric}", title="paired differences, one dot per seed")
    ax.grid(axis="y", alpha=0.3)
    return ax.figure


def plot_budget(df: pd.DataFrame, n_labeled=None):
    """The budget curve (`results.load_budgets`): left, last-epoch test accuracy (mean ± std over
    seeds) against the training length; right, what the semi-supervised parts did at each
    length — the confident-mask rate in the last epoch and LION's open candidate sets (as a share
    of the labeled set). Where a semi-supervised curve crosses supervised is where it pays."""
    import matplotlib.pyplot as plt
    n_labeled = curve_labels(df, n_labeled)
    d = df[(df["n_labeled"] == n_labeled) & (df["split_seed"] == Config.split_seed)]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    order = {v: i for i, v in enumerate(VARIANTS)}
    groups = sorted(d.groupby("variant"), key=lambda t: order.get(t[0], 99))
    for k, (v, g) in enumerate(groups):
        s = g.groupby("budget")["acc"].agg(["mean", "std", "size"])
        c, m, ls = GRID_STYLE.get(v, (None, "o", "-"))
        dodge = 1.03 ** (k - (len(groups) - 1) / 2)  # side by side: error bars stay apart
        lo, hi = int(s["size"].min()), int(s["size"].max())
        ax.errorbar(s.index * dodge, s["mean"], yerr=s["std"].fillna(0), color=c, marker=m, ls=ls, capsize=3, lw=1.4,
                    ms=5, label=f"{v} ({lo}{'' if lo == hi else f'–{hi}'} seed{'' if hi == 1 else 's'})")
        if v != "supervised":
            bx.plot(s.index, g.groupby("budget")["mask_last"].mean(), color=c, marker=m, ls=ls, label=f"{v}: mask rate")
        if v == "lion":
            bx.plot(s.index, g.groupby("budget")["open_sets"].mean() / n_labeled, color=c, marker=m, ls=":",
                    label="lion: open sets / labels")
    budgets = sorted(d["budget"].unique())
    for a in (ax, bx):
        a.set_xscale("log", base=2)
        a.set_xlim(min(budgets) / 1.5, max(budgets) * 1.5)
        a.set_xticks(budgets, [f"{b:g}×" for b in budgets])
        a.minorticks_off()
        a.grid(alpha=0.3)
        a.set_xlabel("training length (× the cpu preset's 900 iterations)")
    ax.margins(y=0.12)
    ax.set(ylabel="test accuracy (last epoch)", title=f"{n_labeled} labels: when does semi-supervision pay?")
    bx.set(ylabel="share", ylim=(0, 1), title="mechanisms at the last epoch")
    ax.legend(fontsize=8)
    bx.legend(fontsize=7)
    fig.tight_layout()
    return fig
