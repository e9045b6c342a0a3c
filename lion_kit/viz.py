"""Plots for notebooks and the README: every figure the kit shows is made here. The tables and
arrays they draw come from analysis.py (re-exported here for the notebooks' convenience)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import (class_table, interesting_samples, negative_matrix, negative_precision_per_class,  # noqa: F401
                       negative_sizes, open_sets_per_epoch, relabel_epoch, run_given, unlabeled_truth)
from .gridplots import plot_budget, plot_grid, plot_paired  # noqa: F401
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


# ----------------------------------------------------------------------------- training

LOSS_NAMES = {"loss_x": "L_x (labeled)", "loss_u": "L_u (pseudo-labels)", "loss_n": "L_n (negative, weak)",
              "loss_sn": "L_sn (negative, strong)", "loss_px": "L_px (partial label)"}


def plot_losses(run, ax=None):
    """Each loss component per epoch (unweighted), so one can see which term drives training."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    m = run.metrics
    for k, label in LOSS_NAMES.items():
        if k in m and (m[k] != 0).any():
            ax.plot(m["epoch"], m[k], marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="loss (unweighted)", title=f"{run.config['method']}: loss components")
    ax.legend(fontsize=8)
    return ax.figure


def plot_accuracy(run, ax=None):
    """Test accuracy and mean class accuracy of the EMA model per epoch (observed and, on
    SynthFER, true labels). The best epoch is marked: choosing it on the test split is the
    paper's protocol, which flatters; the last epoch is the honest number."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    m = run.metrics
    for k, label, style in (("test_acc", "accuracy", "-"), ("test_mca", "mean class acc.", "-"),
                            ("test_acc_true", "accuracy (true class)", "--"), ("test_mca_true", "mean class acc. (true)", "--")):
        if k in m:
            ax.plot(m["epoch"], m[k], style, marker="o", label=label)
    b = m["test_acc"].idxmax()
    ax.axvline(m["epoch"][b], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="epoch", ylabel="test", ylim=(0, 1), title="EMA model on the test split (dotted: best epoch)")
    ax.legend(fontsize=8)
    return ax.figure


def plot_confusion(run, true: bool = False, ax=None):
    """Row-normalised confusion matrix of the last epoch (rows: label, columns: prediction)."""
    import seaborn as sns
    plt = _plt()
    ax = ax or plt.subplots(figsize=(5.5, 4.5))[1]
    cm = np.asarray(run.summary["last_epoch_true"]["confusion"] if true else run.summary["confusion"])
    sns.heatmap(cm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, xticklabels=CLASSES, yticklabels=CLASSES, ax=ax, cbar=False)
    ax.set(xlabel="predicted", ylabel="true class" if true else "label", title="confusion (row-normalised)")
    return ax.figure


def plot_per_class(run, ax=None):
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    df = pd.DataFrame({"class": CLASSES, "accuracy": run.summary["per_class_acc"]})
    ax.bar(df["class"], df["accuracy"], color="tab:blue")
    ax.axhline(run.summary["last_epoch"]["test_mca"], color="k", ls="--", lw=1, label="mean class accuracy")
    ax.set(ylim=(0, 1), ylabel="accuracy", title="per-class accuracy (last epoch)")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    return ax.figure


def face_gallery(dataset, indices, captions, ncols=8, title=None, strike=None):
    """Faces with a caption each; `strike` (optional) lists words per face to strike through."""
    plt = _plt()
    n = len(indices)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.45, nrows * 1.9), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(to_hwc(dataset.raw(int(indices[k]))))
        ax.set_title(captions[k], fontsize=7)
        if strike is not None:
            for j, word in enumerate(strike[k]):
                ax.text(0.02, 0.02 + 0.12 * j, word, transform=ax.transAxes, fontsize=7, color="red",
                        bbox=dict(facecolor="white", alpha=0.7, lw=0), fontstretch="condensed").set_path_effects([])
                ax.plot([0.02, 0.02 + 0.055 * len(word)], [0.06 + 0.12 * j] * 2, transform=ax.transAxes, color="red", lw=1)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def misclassified_gallery(run, n=16, seed=0):
    """Test faces the model got wrong: label -> prediction (and the true class on SynthFER)."""
    p = run.predictions
    wrong = np.flatnonzero(p["pred"] != p["target"])
    pick = np.random.default_rng(seed).choice(wrong, min(n, len(wrong)), replace=False) if len(wrong) else []
    caps = [f"{CLASSES[p['target'][i]][:5]}→{CLASSES[p['pred'][i]][:5]}" + (f"\ntrue {CLASSES[p['true'][i]][:5]}" if "true" in p else "")
            for i in pick]
    return face_gallery(run.dataset("test"), pick, caps, title="misclassified test faces: label → prediction")


# ----------------------------------------------------------------------------- candidate sets

def plot_open_sets(run, ax=None):
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    df = open_sets_per_epoch(run)
    ax.bar(df["epoch"], df["open_sets"], color="tab:orange", label="open candidate sets")
    ax.plot(df["epoch"], df["relabelled"], "k-o", label="relabelled samples")
    ax.axvline(relabel_epoch(run) - 0.5, color="grey", ls=":", lw=1)
    ax.set(xlabel="epoch", ylabel="labeled samples", title="label disambiguation per epoch (dotted: E_r)")
    ax.legend(fontsize=8)
    return ax.figure


def plot_weight_trajectories(run, samples, ax=None):
    """Candidate weights of a few labeled samples over epochs: one panel per sample."""
    plt = _plt()
    w = run.history["weights"].astype(np.float32)
    epochs = np.arange(1, len(w) + 1)
    given = run_given(run)
    fig, axes = plt.subplots(1, len(samples), figsize=(2.6 * len(samples), 2.6), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], samples):
        for c in range(len(CLASSES)):
            if w[:, s, c].max() > 0:
                ax.plot(epochs, w[:, s, c], marker=".", label=CLASSES[c])
        ax.set_title(f"sample {s} (given {CLASSES[given[s]]})", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=6)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("candidate weight")
    fig.tight_layout()
    return fig


def relabel_gallery(run, n=16):
    """The relabel events with their faces: old → new (and ✓/✗ against the true class)."""
    r = run.relabels.tail(n)
    lab = run.split["labeled"]
    caps = []
    for _, e in r.iterrows():
        mark = "" if pd.isna(e.get("true", np.nan)) or e.get("true", "") == "" else (" ✓" if int(e["true"]) == int(e["new"]) else " ✗")
        caps.append(f"{CLASSES[int(e['old'])][:5]}→{CLASSES[int(e['new'])][:5]}{mark}\nit {int(e['iteration'])}")
    return face_gallery(run.dataset("train"), lab[r["index"].astype(int).values] if len(r) else [], caps,
                        title="relabel events: old → new (✓ the new label is the true class)")


def plot_prototypes(run, ax=None):
    """How far apart the class prototypes are over epochs: mean and min cosine similarity
    between different classes' (normalised) prototypes. Falling similarity = separating."""
    plt = _plt()
    P = run.history["protos"].astype(np.float64)
    P = P / np.maximum(np.linalg.norm(P, axis=2, keepdims=True), 1e-12)
    sims = np.einsum("ekd,eld->ekl", P, P)
    off = ~np.eye(P.shape[1], dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.2, 1]})
    ep = np.arange(1, len(P) + 1)
    axes[0].plot(ep, sims[:, off].mean(1), "o-", label="mean")
    axes[0].plot(ep, sims[:, off].max(1), "o--", label="max (closest pair)")
    axes[0].set(xlabel="epoch", ylabel="cosine similarity", title="prototype similarity between classes")
    axes[0].legend(fontsize=8)
    import seaborn as sns
    sns.heatmap(sims[-1], vmin=-1, vmax=1, cmap="RdBu_r", xticklabels=CLASSES, yticklabels=CLASSES, ax=axes[1], cbar=False,
                annot=True, fmt=".1f", annot_kws={"fontsize": 7})
    axes[1].set_title("last epoch")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- negative labels

def plot_negative_growth(run):
    plt = _plt()
    df = negative_sizes(run)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot(df["epoch"], df["mean"], "o-")
    axes[0].set(xlabel="epoch", ylabel="mean |C_i|", title="complementary sets grow progressively")
    counts = df[[str(k) for k in range(len(CLASSES))]].values
    share = counts / counts.sum(1, keepdims=True)
    bottom = np.zeros(len(df))
    cmap = plt.get_cmap("viridis", len(CLASSES))
    for k in range(len(CLASSES)):
        axes[1].bar(df["epoch"], share[:, k], bottom=bottom, color=cmap(k), label=f"|C|={k}")
        bottom += share[:, k]
    axes[1].set(xlabel="epoch", ylabel="share of unlabeled samples", title="distribution of |C_i|")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_negative_heatmap(run, epoch=-1, ax=None):
    import seaborn as sns
    plt = _plt()
    ax = ax or plt.subplots(figsize=(5.5, 4.5))[1]
    _, has_true = unlabeled_truth(run)
    sns.heatmap(negative_matrix(run, epoch), annot=True, fmt=".2f", cmap="Reds", vmin=0, vmax=1, ax=ax, cbar=False)
    ax.set(xlabel="ruled out (complementary label)", ylabel="true class" if has_true else "dataset label",
           title="which expressions are ruled out for which\n(the diagonal is a mistake)")
    return ax.figure


def plot_negative_precision(run, ax=None):
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    s = negative_precision_per_class(run)
    ax.bar(s.index, s.values, color="tab:green")
    ax.axhline((len(CLASSES) - 1) / len(CLASSES), color="k", ls="--", lw=1, label="chance (6/7)")
    ax.set(ylim=(0, 1.02), ylabel="precision", title="negative labels that are right, per true class")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8, loc="lower right")
    return ax.figure


def negative_gallery(run, n=16, epoch=-1, seed=0):
    """Unlabeled faces with their complementary labels struck through."""
    b = run.history["bank"][epoch]
    truth, has_true = unlabeled_truth(run)
    has = np.flatnonzero(b.any(1))
    pick = np.random.default_rng(seed).choice(has, min(n, len(has)), replace=False) if len(has) else []
    caps = [(f"true {CLASSES[truth[i]]}" if has_true else f"label {CLASSES[truth[i]]}") + f"\n{int(b[i].sum())} ruled out" for i in pick]
    strike = [[CLASSES[c][:8] + (" ✗" if c == truth[i] else "") for c in np.flatnonzero(b[i])] for i in pick]
    return face_gallery(run.dataset("train"), run.split["unlabeled"][pick] if len(pick) else [], caps,
                        title="complementary labels (struck through; ✗ = wrongly ruled out)", strike=strike)
