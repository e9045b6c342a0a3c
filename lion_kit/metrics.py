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
    given and as now relabelled, the share of relabels that hit the true class, and how selective
    disambiguation is: the share of open sets among faces given a wrong label and among faces
    given the right one, and the mean candidate weight an open set puts on the true class."""
    rel = st.flush_events()
    # out of L_x: no single entry equal to 1 (the script's test; for the intended rules' weights
    # the same as an open set, which renormalised never holds a 1)
    row = {"open_sets": int(((st.weights > 0).sum(1) > 1).sum()), "out_of_lx": int(((st.weights == 1).sum(1) != 1).sum()),
           "relabels": len(rel),
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
    row.update(selectivity(st.weights.cpu().numpy(), st.given.cpu().numpy(), np.asarray(lab_true)))
    hits = [lab_true[i] == new for _, i, _, new in rel]
    row["relabel_precision"] = float(np.mean(hits)) if hits else float("nan")
    return row


def selectivity(weights, given, true) -> dict:
    """How selective disambiguation is, from one epoch's candidate weights (n × K), the labels the
    faces were given and their true classes: the share of open sets (more than one candidate)
    among faces given a wrong label (`open_wrong`) and among faces given the right one
    (`open_right`), and the mean weight an open set puts on the true class (`open_true_weight`).
    NaN where a group is empty. The training loop writes it per epoch to metrics.jsonl and
    `analysis.open_sets_per_epoch` recomputes it from a run's history, so both go through here."""
    weights, given, true = np.asarray(weights, np.float32), np.asarray(given), np.asarray(true)
    opened = (weights > 0).sum(1) > 1
    wrong = given != true
    on_true = weights[np.arange(len(true)), true]
    share = lambda m: float(opened[m].mean()) if m.any() else float("nan")
    return {"open_wrong": share(wrong), "open_right": share(~wrong),
            "open_true_weight": float(on_true[opened].mean()) if opened.any() else float("nan")}


def fixed_labels_report(given, lab_true, n_unlabeled: int, num_classes: int) -> dict:
    """`state_report`'s columns for a method whose labels never change and that keeps no
    candidate sets and no negative bank (supervised, FixMatch): what those columns read for it."""
    row = {"open_sets": 0, "out_of_lx": 0, "relabels": 0, "neg_mean_size": 0.0,
           "neg_sizes": [n_unlabeled] + [0] * num_classes}
    if lab_true is None:
        return row
    acc = float((given.cpu() == lab_true).float().mean())
    row.update({"neg_precision": float("nan"), "neg_chance": (num_classes - 1) / num_classes,
                "label_acc_given": acc, "label_acc_now": acc})
    row.update(selectivity(np.eye(num_classes, dtype=np.float32)[given.cpu().numpy()], given.cpu().numpy(), np.asarray(lab_true)))
    row["relabel_precision"] = float("nan")
    return row


def epoch_row(method, stats: dict, epoch: int, iters: int, head_norms, pred, test_targets, test_true, truth_known: bool) -> dict:
    """One line of metrics.jsonl: the epoch's mean step statistics (methods.STATS -> value), the
    classifier rows' norms, the method's schedules at this epoch, test accuracy (and against the
    true class where known) and the method's per-sample state."""
    row = {"epoch": epoch, "iteration": epoch * iters, **stats}
    # the logits of the L2-normalised head are bounded by these norms: they gate every threshold
    row["head_norms"] = [round(float(v), 4) for v in head_norms]
    row.update(method.schedule_row())
    test = classification_report(pred, test_targets)
    row["test_acc"], row["test_mca"] = test["acc"], test["mean_class_acc"]
    if test_true is not None:
        true = classification_report(pred, test_true)
        row["test_acc_true"], row["test_mca_true"] = true["acc"], true["mean_class_acc"]
    right = row.pop("pseudo_right")
    if truth_known and method.uses_unlabeled:
        row["pseudo_precision"] = right / row["mask_rate"] if row["mask_rate"] > 0 else float("nan")
    row.update(method.state_row())
    return row


def run_summary(t, pred, wall: float, fingerprints) -> dict:
    """summary.json: the last epoch (the headline) beside the best one (the paper's protocol),
    per-class accuracy and confusion, cost, the per-sample state's end, and whether all ranks
    of a multi-process run agree. `t` is the Trainer."""
    import resource
    cfg, last = t.cfg, t.metrics[-1]
    test = classification_report(pred, t.test_ds.targets)
    summary = {
        "method": cfg.method, "dataset": t.train_ds.signature, "n_labeled": len(t.lab_idx),
        "epochs": cfg.epochs, "last_epoch": {"test_acc": test["acc"], "test_mca": test["mean_class_acc"]},
        "best_epoch": t.best, "per_class_acc": test["per_class_acc"], "confusion": test["confusion"],
        "classes": list(t.train_ds.classes),
        "note": "last_epoch is the headline; best_epoch (chosen on the test split) is the paper's protocol",
        "wall_s": wall, "train_s": sum(x["seconds"] for x in t.timing),
        "images_per_s": float(np.mean([x["images_per_s"] for x in t.timing])),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "relabels": last.get("relabels"), "relabel_precision": last.get("relabel_precision"),
        "neg_precision": last.get("neg_precision"), "neg_mean_size": last.get("neg_mean_size"),
        "pretrained": t.pretrained, "world_size": t.world,
        "ranks_agree": bool(np.allclose(fingerprints, fingerprints[0], rtol=1e-6, atol=1e-6)),
        "rank_fingerprints": fingerprints,
    }
    if t.test_ds.true_targets is not None:
        true = classification_report(pred, t.test_ds.true_targets)
        summary["last_epoch_true"] = {"test_acc": true["acc"], "test_mca": true["mean_class_acc"],
                                      "per_class_acc": true["per_class_acc"], "confusion": true["confusion"]}
    return summary
