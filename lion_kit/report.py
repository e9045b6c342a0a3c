"""What the kept cells say: tables, paired per-seed differences, the sentences under them, the
budget curve, and the README / docs blocks rebuilt from them.

Everything here reads the small files `results.py` keeps (never a checkpoint): `python -m
lion_kit results table` prints what a README block holds, and a test checks that each block of
README.md and docs/experiments.md is what its own command prints now.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from .grid import PAIRS, VARIANTS, curve_labels, seed_difference
from .results import CURVE, OK, ROOT, load, load_budgets
from .runs import atomic_write_text

# a block of README.md (or any markdown file) that `results table` prints, the block's own options
# in its first marker: `<!-- results table: --keep results/synthfer-cpu --at 400 -->` ... `<!-- results table: end -->`
# (an empty block is two marker lines; a block never runs into the next one)
BLOCK = re.compile(r"(<!-- results table: ([^\n]*?) -->\n)((?:(?!<!-- results table: )[\s\S])*?)\n?(<!-- results table: end -->)")


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
    # without progression negatives are drawn afresh each step: there is no bank to measure
    bank = lion and variant.get("negative", True) and variant.get("progressive", True)
    off |= set() if bank else {"neg_precision", "neg_mean_size"}
    return {name: (_fmt(g[c], 1 if c in ("relabels", "neg_mean_size") else 3) if c in g and c not in off else "–")
            for c, name in COLUMNS.items()}


def paired(df: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Per budget, per-seed differences A - B of last-epoch `metric` for the pairs of PAIRS: cells
    with the same seed share their labeled split and data order, so a difference removes what the
    split and the order contribute to both. Mean ± sample std over the seeds both have, how many
    seeds agree in sign with the mean, and a verdict: a difference no larger than its spread (or
    from one seed) is said to be one."""
    from .config import Config
    rows = []
    d = df[df["status"].isin(OK) & (df["split_seed"] == Config.split_seed)] if len(df) else df
    for n in sorted(d["n_labeled"].unique()) if len(d) else []:
        at = d[d["n_labeled"] == n].set_index(["variant", "seed"])[metric]
        for a, b in PAIRS:
            x = seed_difference(at, a, b)
            if x is None:
                continue
            if x.n == 1:
                verdict = "one seed: no spread to judge by"
            elif x.within_spread:
                verdict = "no larger than its spread"
            else:
                verdict = f"{'+' if x.mean > 0 else '-'}, larger than its spread"
            rows.append({"labels": int(n), "difference": f"{a} − {b}", "seeds": x.n, "mean ± std": str(x),
                         "seeds agreeing in sign": f"{x.agree}/{x.n}", "verdict": verdict})
    return pd.DataFrame(rows, columns=["labels", "difference", "seeds", "mean ± std", "seeds agreeing in sign", "verdict"])


def missing_line(df: pd.DataFrame) -> str:
    """One line for the cells a grid lacks (never a wall of empty rows) and the failed ones."""
    from .config import Config
    n = len(df)
    kept = int(df["status"].isin(OK).sum()) if n else 0
    line = f"{kept} of {n} cells have numbers"
    for status in ("missing", "failed"):
        g = df[df["status"] == status] if n else df
        if len(g):
            names = ", ".join(f"{r.variant} n={r.n_labeled} s={r.seed}" + ("" if r.split_seed == Config.split_seed else f" split {r.split_seed}")
                              for r in g.itertuples())
            line += f"; {status} ({len(g)}): {names}"
    return line


def say_table(df: pd.DataFrame) -> str:
    """The accuracy table in words: per label budget, the variants from best to worst last-epoch
    accuracy (default split), and where a variant's best epoch reads more than two points above its
    last — what the paper's protocol (the best epoch, chosen on the test split) would report."""
    from .config import Config
    d = df[df["status"].isin(OK) & (df["split_seed"] == Config.split_seed)] if len(df) else df
    if not len(d):
        return "No cells kept yet: `python -m lion_kit results run` trains them."
    lines = []
    for n, g in d.groupby("n_labeled"):
        m = g.groupby("variant")[["acc", "best_acc"]].mean().sort_values("acc", ascending=False)
        runs = g.groupby("variant").size()
        ranked = ", ".join(f"{v} {r.acc:.3f}" for v, r in m.iterrows())
        seeds = sorted(set(runs))
        line = f"At {n} labels ({'/'.join(map(str, seeds))} seed(s) per variant), last epoch, best first: {ranked}."
        flattered = [f"{v} {r.best_acc:.3f} (+{r.best_acc - r.acc:.3f})" for v, r in m.iterrows() if r.best_acc - r.acc > 0.02]
        if flattered:
            line += " Read at its best epoch instead: " + ", ".join(flattered) + "."
        lines.append(line)
    return "\n".join(lines)


def say(p: pd.DataFrame) -> str:
    """The paired differences in words, one sentence per row."""
    if p.empty:
        return "No paired differences yet: a comparison needs both variants at the same budget and seed."
    return "\n".join(f"At {r['labels']} labels, {r['difference']} is {r['mean ± std']} over {r['seeds']} seed(s), "
                     f"{r['seeds agreeing in sign']} agreeing in sign: {r['verdict']}." for _, r in p.iterrows())


def markdown(t: pd.DataFrame) -> str:
    """A GitHub table (no dependency on tabulate)."""
    if t.empty:
        return "_No cells kept yet: `python -m lion_kit results run` trains them._"
    head = "| " + " | ".join(t.columns) + " |"
    rule = "|" + "|".join("---:" if c in ("labels", "runs") else "---" for c in t.columns) + "|"
    body = ["| " + " | ".join(str(x) for x in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def table_text(df: pd.DataFrame, t: pd.DataFrame | None = None, p: pd.DataFrame | None = None) -> str:
    """What `results table` prints (and the README holds): the table, then the paired differences
    (`t`, `p`: the two, when the caller has them already)."""
    t = table(df) if t is None else t
    p = paired(df) if p is None else p
    return markdown(t) + ("" if p.empty else "\n\nPaired per-seed differences of last-epoch accuracy (same seed: "
                                                     "same labeled split and data order):\n\n" + markdown(p))


def _say_stale(df: pd.DataFrame, preset: str) -> pd.DataFrame:
    """Kept cells whose configuration differs from what the grid asks for are left out of every
    table, and said so (on stderr, naming them)."""
    stale = df[df["status"] == "stale"] if len(df) else df
    if len(stale):
        print(f"[results] {len(stale)} kept cell(s) ran with another configuration than `results run --preset {preset}` "
              f"uses now and are left out: {', '.join(stale['cell'])}; `results run` trains them again", file=sys.stderr)
    return df


def rebuild(root=ROOT, out=None, preset="cpu", overrides=None) -> str:
    """Table (markdown, printed and returned), CSV and plot from the kept cells alone."""
    import matplotlib
    matplotlib.use("Agg")
    df = _say_stale(load(root, preset, overrides), preset)
    t, p = table(df), paired(df)
    text = table_text(df, t, p)
    out = Path(out or root)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.md", text + "\n")
    atomic_write_text(out / "table.csv", t.to_csv(index=False))
    atomic_write_text(out / "paired.csv", p.to_csv(index=False))
    atomic_write_text(out / "cells.csv", df.to_csv(index=False))
    if len(df):
        from .viz import plot_grid
        fig = plot_grid(df[df["status"].isin(OK)])
        fig.savefig(out / "accuracy.png", dpi=120, bbox_inches="tight")
    if not p.empty:
        from .viz import plot_paired
        plot_paired(df[df["status"].isin(OK)]).savefig(out / "paired.png", dpi=120, bbox_inches="tight")
    return text


def runs_table(root) -> str:
    """A markdown table of every run folder under `root` (kept small files of any runs, a grid's
    cells included, named by their path under `root`): method, iterations, last- and best-epoch accuracy, and for semi-supervised
    runs the peak confident-mask rate, the open candidate sets and relabels at the end, how right
    the labeled set's labels were as given and are at the end (disambiguation's net effect), and the
    negative bank's mean size and precision when λ_n reaches 0 (`analysis.mechanisms`)."""
    from .analysis import mechanisms
    rows = []
    for cfg_file in sorted(Path(root).rglob("config.json")):
        run, cfg = cfg_file.parent, json.loads(cfg_file.read_text())
        if any(p.startswith(".") for p in run.relative_to(root).parts):
            continue
        m = pd.read_json(run / "metrics.jsonl", lines=True)
        k = mechanisms(m, cfg.get("derived", {}).get("relabel_run_epoch"))
        lion = cfg["method"] == "lion"
        ld = lion and cfg.get("disambiguation", True)
        last = m.iloc[-1]
        right = (f"{last['label_acc_given']:.3f} → {last['label_acc_now']:.3f}"
                 if ld and pd.notna(last.get("label_acc_given")) and pd.notna(last.get("label_acc_now")) else "–")
        rows.append({"run": run.relative_to(root).as_posix(), "method": cfg["method"], "labels": cfg["n_labeled"],
                     "px": cfg["image_size"], "iterations": cfg["epochs"] * cfg["iters"],
                     "last": f"{k['test_acc']:.3f}", "best": f"{k['best_acc']:.3f}",
                     "peak mask": f"{max(k['mask_rate']):.2f}" if cfg["method"] != "supervised" else "–",
                     "open sets (E_r → end)": f"{k['open_sets_er']} → {k['open_sets']}" if ld and k["open_sets_er"] is not None
                     else (str(k["open_sets"]) if ld else "–"),
                     "relabels (precision)": (f"{k['relabels']} ({k['relabel_precision']:.2f})" if k["relabel_precision"] is not None
                                              else str(k["relabels"])) if ld else "–",
                     "labels right (given → end)": right,
                     "bank (precision)": f"{k['bank_mean']:.2f} ({k['bank_precision']:.3f})"
                     if lion and cfg.get("negative", True) and k["bank_precision"] is not None else "–"})
    return markdown(pd.DataFrame(rows))


def block_text(options: str) -> str:
    """What `results table OPTIONS` prints, for a block's options: --keep, --preset, --set KEY=VALUE
    (repeated), --only VARIANTS and --at BUDGETS (comma lists that pick rows)."""
    import argparse
    import shlex
    from .config import parse_set
    ap = argparse.ArgumentParser(prog="results table block", exit_on_error=False)
    ap.add_argument("--keep", default=ROOT)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--only", default="")
    ap.add_argument("--at", default="")
    a = ap.parse_args(shlex.split(options))
    return table_text(pick(_say_stale(load(a.keep, a.preset, parse_set(a.set)), a.preset), a.only, a.at))


def pick(df: pd.DataFrame, only: str = "", at: str = "") -> pd.DataFrame:
    """The cells of some variants (`only`) at some budgets (`at`), both comma lists; empty: all."""
    if only and len(df):
        df = df[df["variant"].isin(only.split(","))]
    if at and len(df):
        df = df[df["n_labeled"].isin([int(x) for x in at.split(",")])]
    return df


def readme_blocks(readme="README.md") -> list[tuple[str, str]]:
    """(options, text) of every `results table` block of a markdown file."""
    return [(m.group(2), m.group(3).strip()) for m in BLOCK.finditer(Path(readme).read_text())]


def refresh_readme(readme="README.md", write: bool = True) -> list[str]:
    """Rebuild every `results table` block of `readme` from the committed cells (written when
    `write`); returns the options of the blocks that were out of date."""
    text = Path(readme).read_text()
    if not BLOCK.search(text):
        raise ValueError(f"{readme}: no results table block; expected a line '<!-- results table: OPTIONS -->' "
                         "and, below the table, '<!-- results table: end -->'")
    stale = []

    def sub(m):
        new = block_text(m.group(2))
        if new != m.group(3).strip():
            stale.append(m.group(2))
        return f"{m.group(1)}{new}\n{m.group(4)}"
    new = BLOCK.sub(sub, text)
    if write and stale:
        atomic_write_text(Path(readme), new)
    return stale


def budget_table(df: pd.DataFrame, n_labeled=None) -> pd.DataFrame:
    """Per budget and variant at `n_labeled` labels (default split): last-epoch accuracy (mean ±
    std over seeds), the paired differences from supervised and FixMatch where the same seeds
    exist, and the mechanisms' rates (means)."""
    from .config import Config
    n_labeled = curve_labels(df, n_labeled)
    d = df[(df["n_labeled"] == n_labeled) & (df["split_seed"] == Config.split_seed)] if len(df) else df
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows = []
    for (b, v), g in sorted(d.groupby(["budget", "variant"]), key=lambda t: (t[0][0], order.get(t[0][1], 99))):
        at = d[d["budget"] == b].set_index(["variant", "seed"])["acc"]

        def diff(ref):
            return str(seed_difference(at, v, ref) or "–")
        semi = VARIANTS.get(v, {}).get("method") != "supervised"
        lion_ld = VARIANTS.get(v, {}).get("method") == "lion" and VARIANTS[v].get("disambiguation", True)
        rows.append({"budget": f"{b:g}×", "iterations": int(g["iterations"].iloc[0]), "variant": v, "runs": len(g),
                     "accuracy (last epoch)": _fmt(g["acc"]), "− supervised": diff("supervised"), "− fixmatch": diff("fixmatch"),
                     "mask rate peak / last": f"{g['mask_peak'].mean():.2f} / {g['mask_last'].mean():.2f}" if semi else "–",
                     "open sets": f"{g['open_sets'].mean():.0f}" if lion_ld else "–",
                     "labels right (end)": _fmt(g["label_acc_now"]) if lion_ld else "–"})
    return pd.DataFrame(rows, columns=["budget", "iterations", "variant", "runs", "accuracy (last epoch)", "− supervised",
                                       "− fixmatch", "mask rate peak / last", "open sets", "labels right (end)"])


def say_budget(df: pd.DataFrame, n_labeled=None) -> str:
    """The budget curve in words: at each training length, the paired differences that decide
    the paper's claim (FixMatch − supervised, LION − supervised, LION − FixMatch) over the seeds
    both cells have, and whether any is larger than its spread."""
    from .config import Config
    if not len(df):
        return "No budget-curve cells kept yet: `python -m lion_kit results run --set iters=N --keep DIR` trains them."
    n_labeled = curve_labels(df, n_labeled)
    d = df[(df["n_labeled"] == n_labeled) & (df["split_seed"] == Config.split_seed)]
    lines = []
    for b, g in d.groupby("budget"):
        at = g.set_index(["variant", "seed"])["acc"]
        parts = []
        for a, ref in (("fixmatch", "supervised"), ("lion", "supervised"), ("lion", "fixmatch")):
            x = seed_difference(at, a, ref)
            if x is not None:
                parts.append(f"{a} − {ref} {x} " + ("(one seed)" if x.n == 1 else f"over {x.n} seeds"
                             + (" (no larger than its spread)" if x.within_spread else "")))
        lines.append(f"At {b:g}× ({int(g['iterations'].iloc[0])} iterations), {n_labeled} labels: "
                     + ("; ".join(parts) if parts else "no pair of supervised, fixmatch and lion kept yet") + ".")
    return "\n".join(lines)


def budget_text(df: pd.DataFrame) -> str:
    """What `results budget` prints (and results/budget-curve/table.md holds)."""
    t = budget_table(df)
    return markdown(t) if len(t) else "_No budget-curve cells kept yet._"


def rebuild_budgets(roots=CURVE, out="results/budget-curve", preset="cpu", overrides=None) -> str:
    """The budget curve's table (markdown, returned), CSV and figure from the kept cells alone."""
    import matplotlib
    matplotlib.use("Agg")
    df = load_budgets(roots, preset, overrides)
    text = budget_text(df)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.md", text + "\n")
    atomic_write_text(out / "cells.csv", df.to_csv(index=False))
    if len(df):
        from .viz import plot_budget
        plot_budget(df).savefig(out / "budget.png", dpi=120, bbox_inches="tight")
    return text


# a table of docs/experiments.md that `results runs --keep FOLDER` prints (empty until first filled)
RUNS_BLOCK = re.compile(r"(<!-- runs: (\S+): begin -->\n)((?:(?!<!-- runs: )[\s\S])*?)\n?(<!-- runs: \2: end -->)")


def runs_blocks(doc) -> list[tuple[str, str]]:
    """(folder, text) of every `runs` block of a markdown file."""
    return [(m.group(2), m.group(3).strip()) for m in RUNS_BLOCK.finditer(Path(doc).read_text())]


def refresh_runs_blocks(doc) -> int:
    """Replace every `<!-- runs: FOLDER: begin -->` … `end` block of the markdown file `doc` by
    what `results runs --keep FOLDER` prints now; returns how many blocks there were."""
    doc = Path(doc)
    text = doc.read_text()
    n = len(RUNS_BLOCK.findall(text))
    atomic_write_text(doc, RUNS_BLOCK.sub(lambda m: m.group(1) + runs_table(m.group(2)) + "\n" + m.group(4), text))
    return n
