"""Classification metrics: accuracy, mean class accuracy, per-class accuracy, confusion."""
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
