"""Classification metrics (accuracy, mean class accuracy, per-class accuracy, confusion) and how
right LION's per-sample state is where the true class is known (SynthFER, FERPlus)."""
from __future__ import annotations

import numpy as np


def classification_report(pred, target, num_classes: int = 7) -> dict:
    """Overall and mean class accuracy, per-class accuracy and the row-normalised confusion
    matrix (rows: target class, columns: prediction). Classes absent from `target` get NaN."""
    pred, target = np.asarray(pred), np.asarray(target)
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (target, pred), 1)
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(cm) / support
        norm = cm / support[:, None]
    return {"acc": float((pred == target).mean()) if len(target) else float("nan"),
            "mean_class_acc": float(np.nanmean(per_class)) if support.any() else float("nan"),
            "per_class_acc": per_class.tolist(), "confusion": norm.tolist(), "counts": cm.tolist()}


def state_report(st, lab_true, unl_true) -> dict:
    """Open candidate sets, relabels, negative-bank mean size and how many unlabeled faces hold
    0, 1, ..., K negative labels; with the true classes of the labeled and unlabeled faces (or
    None) also the negative labels' precision (chance: (K-1)/K), the labeled labels' accuracy as
    given and as now relabelled, and the share of relabels that hit the true class."""
    rel = st.flush_events()
    row = {"open_sets": int(((st.weights > 0).sum(1) > 1).sum()), "relabels": len(rel),
           "neg_mean_size": float(st.bank.float().sum(1).mean()) if len(st.bank) else 0.0,
           "neg_sizes": np.bincount(st.bank.sum(1).cpu().numpy(), minlength=st.bank.shape[1] + 1).tolist()}
    if unl_true is None:
        return row
    k = st.bank.shape[1]
    nneg = st.bank.sum()
    wrong = st.bank.gather(1, unl_true.to(st.bank.device)[:, None]).sum()
    row["neg_precision"] = float(1 - wrong / nneg) if nneg > 0 else float("nan")
    row["neg_chance"] = (k - 1) / k
    row["label_acc_given"] = float((st.given.cpu() == lab_true).float().mean())
    row["label_acc_now"] = float((st.labels.cpu() == lab_true).float().mean())
    hits = [lab_true[i] == new for _, i, _, new in rel]
    row["relabel_precision"] = float(np.mean(hits)) if hits else float("nan")
    return row
