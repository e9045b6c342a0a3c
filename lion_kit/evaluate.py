"""Evaluate a trained run on any dataset, and predict on people's own images.

`python -m lion_kit eval --run DIR --dataset NAME --data-root R [--split test] [--checkpoint last|best]`
writes ``DIR/eval/<dataset>[_<root>-<hash>]_<split>_<checkpoint>.json`` (cross-dataset results kept
apart from the run's own; two data folders never share a file): accuracy, mean class accuracy over the classes the split holds, a per-class table
(classes absent from the split are reported as absent, not as 0) and the confusion matrix.

`python -m lion_kit predict --run DIR image_or_folder ... --out preds.csv` writes each image's
class probabilities and predicted class, with the preprocessing of evaluation; an unreadable
image is reported with its path and the others go on.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .config import upgrade
from .data import bgr_quirk, eval_transform, load_dataset, synth_options, weak_transform
from .faces import IMAGE_EXTENSIONS, read_image
from .labels import class_names
from .metrics import classification_report
from .model import LionNet
from .runs import atomic_write_text, read_checkpoint, write_json


def load_model(run_dir, checkpoint: str = "last", weights: str = "ema") -> tuple[LionNet, dict]:
    """The run's evaluated model (its EMA copy; weights="model": the trained model, which is what
    LION's per-sample rules see) from last.pt or best.pt, and its config."""
    run_dir = Path(run_dir)
    if checkpoint not in ("last", "best"):
        raise ValueError(f"checkpoint={checkpoint!r}; expected 'last' or 'best'")
    if weights not in ("ema", "model"):
        raise ValueError(f"weights={weights!r}; expected 'ema' or 'model'")
    cfg_file, ck_file = run_dir / "config.json", run_dir / f"{checkpoint}.pt"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: config.json missing")
    if not ck_file.is_file():
        if (run_dir / "summary.json").is_file():  # finished: a results-grid cell drops its checkpoints
            raise FileNotFoundError(
                f"{ck_file} not found: the run finished but its checkpoints were removed (a results-grid cell keeps "
                f"only its small files). Train it again with `python -m lion_kit train --config {cfg_file} "
                f"--out DIR`, or run the grid with `results run --keep-checkpoints`")
        raise FileNotFoundError(f"{ck_file} not found (the run has not finished an epoch)")
    cfg = upgrade(json.loads(cfg_file.read_text()), str(cfg_file))
    sd = read_checkpoint(ck_file, "cpu", f"cannot load the model of {run_dir}")[weights]
    net = LionNet(sd["fc.weight"].shape[0], stem=cfg["stem"])
    net.load_state_dict(sd)
    return net.eval(), cfg


@torch.no_grad()
def _probs(net, cfg, images, batch=256) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        x = torch.stack(images[i:i + batch])
        if cfg.get("bgr"):
            x = bgr_quirk(x)
        out.append(net(x)[0].softmax(1))
    return torch.cat(out).numpy() if out else np.zeros((0, net.fc.out_features))


@torch.no_grad()
def predict_labels(model, ds, batch_size: int, workers: int, device, bgr: bool = False, autocast=None) -> np.ndarray:
    """Predicted classes of `model` (put in eval mode for the pass, then back) on every item of
    `ds`, in order: the per-epoch evaluation of training."""
    from torch.utils.data import DataLoader
    was = model.training
    model.eval()
    preds = []
    for x, _, _ in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        x = x.to(device)
        if bgr:
            x = bgr_quirk(x)
        with (autocast() if autocast else contextlib.nullcontext()):
            preds.append(model(x)[0].argmax(1).cpu())
    model.train(was)
    return torch.cat(preds).numpy()


def train_face_probs(run, idx, checkpoint: str = "last", visit: bool = False, seed: int = 0) -> np.ndarray:
    """Class probabilities of a run's trained model (not the EMA: the one LION's per-sample rules
    see) on faces `idx` of its own train split; `visit=True` as a training visit sees them
    (train mode: dropout, weak augmentation, batch statistics), else in eval mode. The model is
    loaded afresh each call, since train-mode passes move the BatchNorm running statistics."""
    net, cfg = load_model(run.path, checkpoint, weights="model")
    ds = run.dataset("train")
    tf = weak_transform(cfg["image_size"], cfg["crop_padding"]) if visit else eval_transform(cfg["image_size"])
    torch.manual_seed(seed)
    return _probs(net.train(visit), cfg, [tf(ds.raw(int(j))) for j in idx])


def eval_name(dataset: str, data_root, split: str, checkpoint: str, options: dict | None = None) -> str:
    """`<dataset>[_<root name>-<hash>]_<split>_<checkpoint>.json`, the hash of the data folder's
    absolute path (and of any dataset options, such as another SynthFER rendering): two data
    folders never share a file, nor does the same folder name in two places."""
    if data_root is None and not options:
        return f"{dataset}_{split}_{checkpoint}.json"
    root = None if data_root is None else Path(data_root).resolve()
    key = json.dumps([str(root), sorted((options or {}).items())], default=str)
    tag = hashlib.sha1(key.encode()).hexdigest()[:8]
    name = "options" if root is None else ("".join(ch if ch.isalnum() or ch in "-." else "-" for ch in root.name) or "root")
    return f"{dataset}_{name}-{tag}_{split}_{checkpoint}.json"


@torch.no_grad()
def evaluate_run(run_dir, dataset: str, data_root=None, split: str = "test", checkpoint: str = "last", **options) -> dict:
    """Metrics of the run's model on a dataset split; written into the run directory."""
    net, cfg = load_model(run_dir, checkpoint)
    own = dataset == cfg["dataset"] and dataset == "synthfer" and not options  # the run's own test split
    if own:
        options = synth_options(cfg)
    ds = load_dataset(dataset, split, root=data_root, **options)
    tf = eval_transform(cfg["image_size"])
    probs = np.concatenate([_probs(net, cfg, [tf(ds.raw(j)) for j in range(i, min(len(ds), i + 512))])
                            for i in range(0, len(ds), 512)])
    pred = probs.argmax(1)
    k = net.fc.out_features
    rep = classification_report(pred, ds.targets, num_classes=k)
    counts = np.asarray(rep["counts"]).sum(1)
    names = list(class_names(k == 8))
    table = [{"class": names[c], "test_faces": int(counts[c]),
              "accuracy": rep["per_class_acc"][c] if counts[c] else "absent"} for c in range(k)]
    result = {"run": str(run_dir), "checkpoint": checkpoint, "dataset": ds.signature, "split": split, "faces": len(ds),
              "acc": rep["acc"], "mean_class_acc": rep["mean_class_acc"],
              "classes_present": [names[c] for c in range(k) if counts[c]],
              "absent": [names[c] for c in range(k) if not counts[c]],
              "per_class": table, "confusion": rep["confusion"], "confusion_counts": rep["counts"],
              "trained_on": cfg["dataset"]}
    if ds.true_targets is not None:
        t = classification_report(pred, ds.true_targets, num_classes=k)
        result["true_class"] = {"acc": t["acc"], "mean_class_acc": t["mean_class_acc"]}
    out = Path(run_dir) / "eval" / eval_name(dataset, data_root, split, checkpoint, None if own else options)
    out.parent.mkdir(exist_ok=True)
    if out.is_file():
        before = json.loads(out.read_text())
        result["replaces"] = {"acc": before.get("acc"), "evaluated_at": before.get("evaluated_at")}
        print(f"[eval] {out} held an evaluation of the same data (acc {before.get('acc')}); replaced by this one")
    result["data_root"] = None if data_root is None else str(Path(data_root).resolve())
    result["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(out, result)
    result["file"] = str(out)
    return result


def _images(paths) -> list[Path]:
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    if not found:
        raise FileNotFoundError(f"no images with extensions {IMAGE_EXTENSIONS} in {', '.join(map(str, paths))}")
    return found


def predict(run_dir, inputs, out, checkpoint: str = "last", log=print) -> dict:
    """Per-image probabilities and predicted class into a CSV; unreadable images are reported
    (path and reason) and skipped, the others go on."""
    net, cfg = load_model(run_dir, checkpoint)
    tf = eval_transform(cfg["image_size"])
    names = list(class_names(net.fc.out_features == 8))
    files = _images(inputs)
    ok, tensors, failed = [], [], []
    for f in files:
        try:
            tensors.append(tf(read_image(f)))
            ok.append(f)
        except OSError as e:
            failed.append((str(f), str(e)))
            log(f"unreadable image skipped: {e}")
    probs = _probs(net, cfg, tensors)
    rows = ["path,predicted," + ",".join(f"p_{n}" for n in names)]
    rows += [f"{f},{names[int(p.argmax())]}," + ",".join(f"{v:.5f}" for v in p) for f, p in zip(ok, probs)]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(rows) + "\n")
    return {"predicted": len(ok), "unreadable": failed, "out": str(out)}


def main_eval(a):
    r = evaluate_run(a.run, a.dataset, a.data_root, a.split, a.checkpoint)
    print(f"{r['dataset']} {r['split']} ({r['faces']} faces), {a.checkpoint} checkpoint of {a.run}: "
          f"accuracy {r['acc']:.4f}, mean class accuracy {r['mean_class_acc']:.4f} over {len(r['classes_present'])} classes")
    for row in r["per_class"]:
        acc = row["accuracy"]
        print(f"  {row['class']:<10} {row['test_faces']:>6}  {acc if isinstance(acc, str) else f'{acc:.4f}'}")
    print(f"wrote {r['file']}")


def main_predict(a):
    r = predict(a.run, a.inputs, a.out, a.checkpoint, log=lambda m: print(m, file=sys.stderr))
    print(f"wrote {r['out']}: {r['predicted']} image(s); {len(r['unreadable'])} unreadable")
