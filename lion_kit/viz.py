"""Plots for notebooks and the README: every figure the kit shows is made here."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import CLASSES


def _plt():
    import matplotlib.pyplot as plt
    return plt


def sample_grid(dataset, per_class: int = 8, seed: int = 0, by: str = "targets", ax=None):
    """One row of faces per class (`by`: 'targets' observed labels or 'true_targets')."""
    plt = _plt()
    labels = np.asarray(getattr(dataset, by))
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(labels == c)
        idx = rng.choice(idx, min(per_class, len(idx)), replace=False) if len(idx) else []
        rows.append([to_hwc(dataset.raw(int(i))) for i in idx])
    side = max(t.shape[0] for r in rows for t in r)
    blank = np.full((side, side, 3), 255, np.uint8)
    grid = np.concatenate([np.concatenate([_fit(t, side) for t in r] + [blank] * (per_class - len(r)), 1) for r in rows], 0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(per_class * 1.1, len(CLASSES) * 1.15))
    ax.imshow(grid)
    ax.set_yticks([side * (c + 0.5) for c in range(len(CLASSES))], CLASSES)
    ax.set_xticks([])
    ax.set_title(f"{dataset.signature}: {by.replace('_', ' ')}")
    return ax.figure


def to_hwc(img) -> np.ndarray:
    """A dataset's raw image (uint8 CHW tensor or PIL image) as an H x W x 3 uint8 array."""
    if hasattr(img, "permute"):
        return img.permute(1, 2, 0).numpy()
    return np.asarray(img)


def _fit(tile, side):
    if tile.shape[0] == side:
        return tile
    from PIL import Image
    return np.asarray(Image.fromarray(tile).resize((side, side)))


def class_table(dataset) -> pd.DataFrame:
    """Per-class counts of observed (and, on SynthFER, true) labels."""
    df = pd.DataFrame({"class": CLASSES,
                       "observed": np.bincount(dataset.targets, minlength=len(CLASSES))[: len(CLASSES)]})
    if dataset.true_targets is not None:
        df["true"] = np.bincount(dataset.true_targets, minlength=len(CLASSES))
        agree = np.asarray(dataset.targets) == np.asarray(dataset.true_targets)
        df["observed_is_true"] = [agree[np.asarray(dataset.true_targets) == c].mean().round(3) for c in range(len(CLASSES))]
    df["share"] = (df["observed"] / df["observed"].sum()).round(4)
    return df
