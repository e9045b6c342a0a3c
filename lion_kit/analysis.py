"""Analysis of a run as tables and arrays (no drawing): what viz.py plots and notebooks print.

Everything reads the run directory (`lion_kit.load_run`): metrics, per-epoch history snapshots,
the split and the derived values the run wrote beside its configuration.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import CLASSES
from .metrics import selectivity


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


def run_given(run) -> np.ndarray:
    """The given (observed) labels of the labeled samples, in state order."""
    ds = run.dataset("train")
    return np.asarray(ds.targets)[run.split["labeled"]]


def relabel_epoch(run) -> int:
    """E_r in run epochs, as the run computed it (config.json's "derived")."""
    return run.config["derived"]["relabel_run_epoch"]


def open_sets_per_epoch(run) -> pd.DataFrame:
    """Per epoch: open candidate sets, relabelled samples and labeled-label accuracy; where the
    true class is known, how selective disambiguation is: the share of faces given a wrong label
    whose set is open (`open_wrong`), the same among faces given the right one (`open_right`), and
    the mean weight an open set puts on the true class (`open_true_weight`)."""
    w, lab = run.history["weights"].astype(np.float32), run.history["labels"]
    given = run_given(run)
    opened = (w > 0).sum(2) > 1
    df = pd.DataFrame({"epoch": np.arange(1, len(w) + 1), "open_sets": opened.sum(1),
                       "relabelled": (lab != given).sum(1)})
    if "ambiguous_rate" in run.metrics:
        df["ambiguous_rate"] = run.metrics["ambiguous_rate"].values[: len(df)]
    for k in ("label_acc_now", "label_acc_given", "relabel_precision"):
        if k in run.metrics:
            df[k] = run.metrics[k].values[: len(df)]
    ds = run.dataset("train")
    if ds.true_targets is not None:
        true = np.asarray(ds.true_targets)[run.split["labeled"]]
        sel = pd.DataFrame([selectivity(w[e], given, true) for e in range(len(w))])
        df[sel.columns] = sel.values
    return df


def interesting_samples(run, n=6) -> list[int]:
    """Labeled samples whose candidate sets were open longest (ties: first)."""
    w = run.history["weights"].astype(np.float32)
    open_epochs = ((w > 0).sum(2) > 1).sum(0)
    changed = (run.history["labels"] != run_given(run)).any(0)
    score = open_epochs + 100 * changed
    order = np.argsort(-score, kind="stable")
    return [int(i) for i in order[:n]]


def negative_sizes(run) -> pd.DataFrame:
    """Per epoch, how many unlabeled samples hold 0, 1, ..., 6 complementary labels."""
    b = run.history["bank"]
    sizes = b.sum(2)
    rows = [np.bincount(s, minlength=len(CLASSES)) for s in sizes]
    df = pd.DataFrame(rows, columns=[str(k) for k in range(len(CLASSES))])
    df.insert(0, "epoch", np.arange(1, len(b) + 1))
    df["mean"] = sizes.mean(1)
    return df


def unlabeled_truth(run):
    ds = run.dataset("train")
    src = ds.true_targets if ds.true_targets is not None else ds.targets
    return np.asarray(src)[run.split["unlabeled"]], ds.true_targets is not None


def negative_matrix(run, epoch=-1) -> pd.DataFrame:
    """Rows: true class (SynthFER) or dataset label; columns: complementary class; cells: the
    share of that class's unlabeled samples whose set rules the column class out."""
    truth, _ = unlabeled_truth(run)
    b = run.history["bank"][epoch]
    m = np.stack([b[truth == c].mean(0) if (truth == c).any() else np.zeros(len(CLASSES)) for c in range(len(CLASSES))])
    return pd.DataFrame(m, index=CLASSES, columns=CLASSES)


def negative_precision_per_class(run, epoch=-1) -> pd.Series:
    """Share of complementary labels that are right (not the true class), per true class."""
    truth, _ = unlabeled_truth(run)
    b = run.history["bank"][epoch]
    out = {}
    for c in range(len(CLASSES)):
        rows = b[truth == c]
        total = rows.sum()
        out[CLASSES[c]] = float(1 - rows[:, c].sum() / total) if total else np.nan
    return pd.Series(out, name="negative-label precision")


def mechanisms(metrics: pd.DataFrame, relabel_epoch: int | None = None) -> dict:
    """What a LION run's mechanisms did, from metrics.jsonl alone:
    the epochs whose confident-mask rate reached 0.3; the negative bank when λ_n reaches 0
    (end of the last epoch with λ_n > 0: the bank the negative losses last used): mean size,
    precision, set sizes present; open candidate sets, relabels and their precision beside the
    labeled set's observed-label accuracy; last-epoch and best-epoch accuracy; with `relabel_epoch`
    (E_r in run epochs) the open sets at its end."""
    m = metrics.reset_index(drop=True)
    er = m[m["epoch"] == relabel_epoch] if relabel_epoch else m.iloc[:0]
    live = m.index[m["lambda_n"] > 0]
    at = m.loc[live[-1]] if len(live) else m.iloc[-1]
    sizes = at.get("neg_sizes")
    present = [k for k, n in enumerate(sizes) if n] if isinstance(sizes, list) else None
    last = m.iloc[-1]
    return {"test_acc": float(last["test_acc"]), "best_acc": float(m["test_acc"].max()),
            "mask_rate": [round(float(x), 3) for x in m["mask_rate"]],
            "mask_epochs_over_0.3": int((m["mask_rate"] >= 0.3).sum()),
            "pseudo_precision": [None if pd.isna(x) else round(float(x), 3) for x in m["pseudo_precision"]]
            if "pseudo_precision" in m else None,
            "bank_epoch": int(at["epoch"]), "bank_mean": float(at["neg_mean_size"]),
            "bank_precision": None if pd.isna(at.get("neg_precision")) else float(at["neg_precision"]),
            "bank_sizes_present": present, "open_sets": int(last["open_sets"]),
            "open_sets_er": int(er["open_sets"].iloc[0]) if len(er) else None,
            "relabels": int(last["relabels"]),
            "relabel_precision": None if pd.isna(last.get("relabel_precision")) else float(last["relabel_precision"]),
            "label_acc_given": None if pd.isna(last.get("label_acc_given")) else float(last["label_acc_given"])}
