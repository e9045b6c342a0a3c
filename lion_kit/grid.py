"""What the results grid is: its variants, its cells, and the configuration of each cell.

Both `sweep.py` (which trains cells) and `results.py` (which keeps and tabulates them) read a
cell's configuration from here, so the two can never disagree about what a cell is.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config, resolve

VARIANTS = {
    "supervised": dict(method="supervised"),
    "fixmatch": dict(method="fixmatch"),
    "lion": dict(method="lion"),
    "lion-script": dict(method="lion", lion_rules="script"),  # the authors' released script's rules
    "lion-no-ld": dict(method="lion", disambiguation=False),
    "lion-no-nl": dict(method="lion", negative=False),
    "lion-nl-no-progression": dict(method="lion", progressive=False),
    "lion-no-sn": dict(method="lion", strong_negative=False),
    # the kit's own variants, not in the paper: candidate explanations of where LION loses
    "lion-ema-ambiguity": dict(method="lion", ambiguity_model="ema"),
    "lion-reclose": dict(method="lion", reclose=True),
    "lion-tau-max-0.95": dict(method="lion", tau_max=0.95),
}

# the paired comparisons the table reports: (A, B) for A - B, seed by seed
PAIRS = [("lion", "supervised"), ("lion", "fixmatch"), ("fixmatch", "supervised"), ("lion-script", "lion"),
         ("lion-script", "fixmatch"), ("lion-script", "supervised"), ("lion-no-ld", "lion"),
         ("lion-no-nl", "lion"), ("lion-nl-no-progression", "lion"), ("lion-no-sn", "lion")]


def make_grid(variants=("supervised", "fixmatch", "lion"), budgets=(400,), seeds=(0,), root="runs/ablations",
              preset="cpu", split_seeds=(), split_variant="lion", split_budget=400, **base) -> list[dict]:
    """One job description per cell. `base` holds config overrides shared by all cells.
    `split_seeds` adds cells of `split_variant` at `split_budget`, seed 0, drawn with other
    labeled splits (the default split's cell is the grid's own)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; expected some of {sorted(VARIANTS)}")

    def job(v, n, s, split=None):
        key = f"{v}/n{n}_s{s}" + (f"_split{split}" if split is not None else "")
        extra = {"split_seed": split} if split is not None else {}
        return {"variant": v, "n_labeled": n, "seed": s, "preset": preset, "key": key, "out": str(Path(root) / key),
                "overrides": {**base, **VARIANTS[v], "n_labeled": n, "seed": s, **extra, "out": str(Path(root) / key)}}
    jobs = [job(v, n, s) for v in variants for n in budgets for s in seeds]
    if split_variant in variants and split_budget in budgets:
        jobs += [job(split_variant, split_budget, 0, k) for k in split_seeds if k != Config.split_seed]
    return jobs


def cell_config(preset: str, overrides: dict) -> dict:
    """The full configuration (a plain dict) a cell trains with: preset < the cell's overrides."""
    return dataclasses.asdict(resolve(preset, None, overrides))


def kept_cell_config(variant: str, cfg: dict, preset="cpu", overrides=None) -> dict:
    """The configuration `results run` would give the kept cell whose config is `cfg` now (same
    variant, budget, seed and split seed; the grid-wide `overrides` of --set)."""
    return cell_config(preset, {**(overrides or {}), **VARIANTS.get(variant, {}), "n_labeled": cfg["n_labeled"],
                                "seed": cfg["seed"], "split_seed": cfg["split_seed"]})


class SeedDifference:
    """A − B of one metric over the seeds both cells have. Cells with the same seed share their
    labeled split and data order, so the difference removes what those contribute to both; its
    spread is the sample std over seeds (none from one seed)."""

    def __init__(self, values: pd.Series):
        self.values = values
        self.n = len(values)
        self.mean = float(values.mean())
        self.std = float(values.std(ddof=1)) if self.n > 1 else float("nan")
        self.agree = int((np.sign(values) == np.sign(self.mean)).sum()) if self.mean else 0

    @property
    def within_spread(self) -> bool:
        """No larger than its spread: said to be no difference (one seed has no spread to judge by)."""
        return self.n > 1 and abs(self.mean) <= self.std

    def __str__(self) -> str:
        return f"{self.mean:+.3f}" + ("" if self.n == 1 else f" ± {self.std:.3f}")


def seed_difference(at: pd.Series, a: str, b: str):
    """`SeedDifference` of variants `a` − `b` from `at` (indexed by variant and seed), or None
    when either is absent or they share no seed."""
    have = set(at.index.get_level_values(0))
    if a == b or not {a, b} <= have:
        return None
    x = (at[a] - at[b]).dropna()
    return SeedDifference(x) if len(x) else None


def curve_labels(df: pd.DataFrame, n_labeled=None) -> int:
    """The label budget a curve is drawn at: `n_labeled`, else the grids' only one, else 400."""
    if n_labeled is None:
        present = sorted(df["n_labeled"].unique()) if len(df) else []
        n_labeled = present[0] if len(present) == 1 else 400
    return int(n_labeled)
