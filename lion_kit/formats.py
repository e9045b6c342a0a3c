"""The common FER releases in the form people download them: FER2013, FERPlus, AffectNet.

Each loader returns a :class:`lion_kit.faces.FaceDataset` in the canonical (RAF-DB) class order.
Layouts (``root`` is the folder passed as ``--data-root``):

* ``fer2013``: ``root/fer2013.csv`` with columns ``emotion,pixels,Usage`` (48x48 gray pixels as a
  space-separated string; Usage Training / PublicTest / PrivateTest -> train / val / test).
* ``ferplus``: the FER2013 CSV plus FERPlus's vote table ``root/fer2013new.csv`` (columns
  ``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``,
  one row per FER2013 row, in the same order). The training label is FER2013's own (one
  annotator); ``true_targets`` is the ten annotators' majority and ``soft_labels`` their votes,
  so relabel and negative-label precision can be checked against more than one annotator.
  Faces whose majority is unknown or not-a-face are dropped, as the FERPlus authors do (and
  contempt-majority faces unless ``include_contempt``); the count is in ``dropped``.
* ``affectnet``: images plus ``root/<split>.csv`` with columns ``path,expression`` (path relative
  to root; AffectNet's order 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger,
  7 contempt; 8 none, 9 uncertain, 10 no-face are dropped and counted). Contempt is opt-in.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .faces import FaceDataset, check_dir, scan
from .labels import AFFECTNET_ORDER, affectnet_to_canonical, class_index, class_names, fer2013_to_canonical

FER_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")


def _csv_rows(path: Path, required: tuple[str, ...]):
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected columns {list(required)}, found {header}")
        reader.fieldnames = header
        for ln, row in enumerate(reader, 2):
            yield ln, row


def _root(name: str, root, holds: str, split=None, splits=None) -> Path:
    """The checks every loader opens with: a root given, a folder, a known split."""
    if root is None:
        raise ValueError(f"{name} needs root: the folder holding {holds}")
    root = Path(root)
    check_dir(root, f"{name} root")
    if splits is not None and split not in splits:
        raise ValueError(f"split {split!r}; expected one of {sorted(splits)}")
    return root


def _read_fer2013(root: Path):
    """Every row of fer2013.csv: (canonical labels, usage split names, N x 48 x 48 gray pixels)."""
    path = root / "fer2013.csv"
    to_canon = fer2013_to_canonical()
    labels, usage, pixels = [], [], []
    for ln, row in _csv_rows(path, ("emotion", "pixels", "Usage")):
        e = row["emotion"].strip()
        if not e.isdigit() or int(e) not in to_canon:
            raise ValueError(f"{path}, line {ln}: emotion {e!r}; expected 0..6 (FER2013 order)")
        if row["Usage"].strip() not in FER_USAGE:
            raise ValueError(f"{path}, line {ln}: Usage {row['Usage']!r}; expected one of {sorted(FER_USAGE)}")
        px = np.array(row["pixels"].split(), dtype=np.int64)
        if px.size != 48 * 48 or px.min(initial=0) < 0 or px.max(initial=0) > 255:
            raise ValueError(f"{path}, line {ln}: pixels must be 2304 (48 x 48) values in 0..255, got {px.size}")
        labels.append(to_canon[int(e)]); usage.append(FER_USAGE[row["Usage"].strip()]); pixels.append(px.astype(np.uint8))
    if not labels:
        raise ValueError(f"{path}: no rows")
    return np.array(labels), np.array(usage), np.stack(pixels).reshape(-1, 48, 48)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def fer2013(split, root=None):
    root = _root("fer2013", root, "fer2013.csv", split, FER_USAGE.values())
    labels, usage, gray = _read_fer2013(root)
    keep = np.flatnonzero(usage == split)
    if len(keep) == 0:
        raise ValueError(f"{root / 'fer2013.csv'}: no rows for split {split!r}")
    return FaceDataset("fer2013", [f"fer2013/{i}" for i in keep], labels[keep], class_names(),
                       images=_rgb(gray[keep]), signature="fer2013")


def ferplus(split, root=None, include_contempt=False):
    root = _root("ferplus", root, "fer2013.csv and fer2013new.csv", split, FER_USAGE.values())
    labels, usage, gray = _read_fer2013(root)
    path = root / "fer2013new.csv"
    votes, vusage = [], []
    for ln, row in _csv_rows(path, ("Usage",) + FERPLUS_COLUMNS):
        try:
            votes.append([float(row[c] or 0) for c in FERPLUS_COLUMNS])
        except ValueError:
            raise ValueError(f"{path}, line {ln}: vote counts must be numbers, got "
                             f"{[row[c] for c in FERPLUS_COLUMNS]}") from None
        vusage.append(FER_USAGE.get(row["Usage"].strip(), row["Usage"].strip()))
    if len(votes) != len(labels):
        raise ValueError(f"{path} has {len(votes)} rows but fer2013.csv has {len(labels)}; FERPlus has one row per FER2013 face")
    differ = np.flatnonzero(np.array(vusage) != usage)
    if len(differ):
        i = differ[0]
        raise ValueError(f"{path}, line {i + 2}: Usage {vusage[i]!r} but fer2013.csv's row {i + 1} is {usage[i]!r}: "
                         "the two files must list the same faces in the same order")
    votes = np.array(votes)
    names = class_names(include_contempt)
    # FERPlus column -> canonical index (contempt only when opted in)
    cols = [class_index(c, True) for c in FERPLUS_COLUMNS[:8]]
    soft = np.zeros((len(votes), len(names)), np.float32)
    for j, c in enumerate(cols):
        if c < len(names):
            soft[:, c] = votes[:, j]
    majority = votes.argmax(1)  # column index; 8 unknown, 9 not a face, 7 contempt
    drop = (majority >= 8) | (votes.sum(1) == 0)
    if not include_contempt:
        drop |= majority == 7
    keep = np.flatnonzero((usage == split) & ~drop)
    if len(keep) == 0:
        raise ValueError(f"{path}: no kept rows for split {split!r}")
    true = np.array([cols[m] for m in majority[keep]])
    soft = soft[keep] / soft[keep].sum(1, keepdims=True)
    ds = FaceDataset("ferplus", [f"fer2013/{i}" for i in keep], labels[keep], names, images=_rgb(gray[keep]),
                     true_targets=true, soft_labels=soft, signature="ferplus" + ("+contempt" if include_contempt else ""))
    ds.dropped = int(((usage == split) & drop).sum())
    return ds


def affectnet(split, root=None, include_contempt=False, skip_corrupt=False):
    root = _root("affectnet", root, "<split>.csv (path,expression) and the images")
    path = root / f"{split}.csv"
    to_canon = affectnet_to_canonical(include_contempt)
    ids, targets, paths, dropped = [], [], [], 0
    for ln, row in _csv_rows(path, ("path", "expression")):
        e = row["expression"].strip()
        if not e.lstrip("-").isdigit() or not 0 <= int(e) <= 10:
            raise ValueError(f"{path}, line {ln}: expression {e!r}; expected 0..10 (AffectNet order: "
                             f"{', '.join(f'{i} {n}' for i, n in enumerate(AFFECTNET_ORDER))}, 8-10 none/uncertain/no-face)")
        if int(e) not in to_canon:  # none, uncertain, no-face; contempt unless opted in
            dropped += 1
            continue
        p = root / row["path"].strip()
        if not p.is_file():
            raise FileNotFoundError(f"{path}, line {ln}: image {p} does not exist")
        ids.append(row["path"].strip()); targets.append(to_canon[int(e)]); paths.append(p)
    if not ids:
        raise ValueError(f"{path}: no usable rows")
    keep, skipped = scan(paths, skip_corrupt)
    ds = FaceDataset("affectnet", [ids[i] for i in keep], [targets[i] for i in keep], class_names(include_contempt),
                     paths=[paths[i] for i in keep], signature="affectnet" + ("+contempt" if include_contempt else ""),
                     skipped=skipped)
    ds.dropped = dropped
    return ds

