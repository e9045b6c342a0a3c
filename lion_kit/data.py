"""Datasets, views and labeled splits.

Every dataset loads into one canonical form, a torch ``Dataset`` whose items are
``(image, label, index)`` in RAF-DB's class order, with torchvision-style ``classes`` and
``targets`` plus ``ids`` (the stable identifiers split files use). Only SynthFER also knows
``true_targets`` and ``soft_labels``.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2 as T
from torch.utils.data import Dataset

from . import formats, synth
from .faces import IMAGE_EXTENSIONS, FaceDataset, check_dir, scan
from .labels import NUM_CLASSES, class_index, class_names

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLITS_DIR = Path(__file__).resolve().parent.parent / "splits"


class IndexedSubset(Dataset):
    """A view of some samples of a dataset with its own transform; items carry the position
    within the subset, which is what per-sample training state is indexed by."""

    def __init__(self, base: FaceDataset, indices, transform=None):
        self.base, self.indices, self.transform = base, np.asarray(indices, dtype=np.int64), transform
        self.targets = [base.targets[i] for i in self.indices]
        self.ids = [base.ids[i] for i in self.indices]
        self.classes = base.classes

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        """`key` is a position j, or (j, draw seed) from :class:`InfiniteBatchSampler`: the
        augmentation is then a pure function of the draw, whatever process applies it."""
        j, seed = key if isinstance(key, tuple) else (key, None)
        img = self.base.raw(int(self.indices[j]))
        if self.transform is None:
            return img, self.targets[j], j
        if seed is None:
            return self.transform(img), self.targets[j], j
        with torch.random.fork_rng(devices=[]):  # the caller's RNG (dropout, ...) is left as it was
            torch.manual_seed(seed)
            return self.transform(img), self.targets[j], j


class InfiniteBatchSampler(torch.utils.data.Sampler):
    """Endless batches of ``(position, draw seed)``: a fresh permutation per pass (remainder
    dropped, so no batch repeats a sample), seeded by (seed, epoch, stream); rank r of w takes
    every w-th batch; `skip` batches are passed over, which is how a run resumes mid-epoch.

    Each draw carries its own augmentation seed, a function of (seed, epoch, stream, draw
    number) only, so the augmented pixels do not depend on the number of loader workers, on
    which worker loads a batch, or on where a run was interrupted and resumed."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, stream: int, rank=0, world=1, skip=0):
        if n < batch:
            raise ValueError(f"{n} samples cannot fill a batch of {batch}; lower the batch size")
        self.n, self.batch, self.rank, self.world, self.skip = n, batch, rank, world, skip
        self.seed = (seed * 1_000_003 + epoch * 101 + stream) % 2**62

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        k = 0
        while True:
            perm = torch.randperm(self.n, generator=g)
            for b in range(self.n // self.batch):
                if k % self.world == self.rank and k // self.world >= self.skip:
                    base = (self.seed * 7919 + k * self.batch) % 2**62
                    yield [(j, base + i) for i, j in enumerate(perm[b * self.batch:(b + 1) * self.batch].tolist())]
                k += 1

    def __len__(self):
        return 2**62


# ----------------------------------------------------------------------------- loaders

def _synthfer(split, root=None, **options):
    fields = {f.name for f in dataclasses.fields(synth.SynthConfig)}
    bad = set(options) - fields
    if bad:
        raise TypeError(f"unknown synthfer option(s) {sorted(bad)}; expected some of {sorted(fields)}")
    if root is not None:
        raise ValueError("synthfer is rendered, not read: leave root unset (the cache lives in $LION_KIT_CACHE)")
    cfg = synth.SynthConfig(**options)
    labels = synth.sample_labels(cfg, split)
    label_cfg = {k: v for k, v in dataclasses.asdict(cfg).items() if k in ("size", "seed", "ambiguity", "min_intensity", "label_noise", "annotator_sharpness")}
    sig = "synthfer:" + ",".join(f"{k}={v}" for k, v in sorted(label_cfg.items()))
    return FaceDataset("synthfer", range(len(labels["true"])), labels["observed"], class_names(),
                       images=lambda: synth.load_split(cfg, split)["images"],
                       true_targets=labels["true"], soft_labels=labels["soft"], signature=sig)


def _rafdb(split, root=None, images="aligned", skip_corrupt=False):
    if root is None:
        raise ValueError("rafdb needs root: the folder holding EmoLabel/ and Image/")
    root = Path(root)
    check_dir(root, "RAF-DB root")
    if images not in ("aligned", "original"):
        raise ValueError(f"rafdb images={images!r}; expected 'aligned' or 'original'")
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    if not label_file.is_file():
        raise FileNotFoundError(f"RAF-DB label file not found: {label_file}")
    img_dir = root / "Image" / images
    check_dir(img_dir, "RAF-DB image folder")
    if split not in ("train", "test"):
        raise ValueError(f"rafdb split {split!r}; expected 'train' or 'test'")
    ids, targets, paths = [], [], []
    for ln, line in enumerate(label_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{label_file}, line {ln}: expected '<name>.jpg <label 1-7>', got {line!r}")
        name, lab = parts[0], int(parts[1])
        if not 1 <= lab <= NUM_CLASSES:
            raise ValueError(f"{label_file}, line {ln}: label {lab} out of range; expected 1..{NUM_CLASSES}")
        if not name.startswith(split + "_"):
            continue
        stem, ext = name.rsplit(".", 1)
        p = img_dir / (f"{stem}_aligned.{ext}" if images == "aligned" else name)
        if not p.is_file():
            raise FileNotFoundError(f"{label_file}, line {ln}: image {p} does not exist")
        ids.append(name); targets.append(lab - 1); paths.append(p)
    if not ids:
        raise ValueError(f"{label_file}: no '{split}_*' entries")
    keep, skipped = scan(paths, skip_corrupt)
    return FaceDataset("rafdb", [ids[i] for i in keep], [targets[i] for i in keep], class_names(),
                       paths=[paths[i] for i in keep], signature="rafdb", skipped=skipped)


def _folder(split, root=None, include_contempt=False, skip_corrupt=False):
    if root is None:
        raise ValueError("folder needs root: <root>/<split>/<class name>/*.png")
    root = Path(root)
    check_dir(root, "dataset root")
    sdir = root / split
    check_dir(sdir, f"split folder '{split}'")
    classes = class_names(include_contempt)
    ids, targets, paths = [], [], []
    class_dirs = sorted(p for p in sdir.iterdir() if p.is_dir())
    if not class_dirs:
        raise FileNotFoundError(f"{sdir} holds no class folders; expected <class name>/ sub-folders")
    for cdir in class_dirs:
        try:
            c = class_index(cdir.name, include_contempt)
        except ValueError as e:
            raise ValueError(f"{cdir}: {e}") from None
        for p in sorted(cdir.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                ids.append(f"{cdir.name}/{p.name}"); targets.append(c); paths.append(p)
    if not ids:
        raise FileNotFoundError(f"{sdir}: no images with extensions {IMAGE_EXTENSIONS}")
    keep, skipped = scan(paths, skip_corrupt)
    return FaceDataset("folder", [ids[i] for i in keep], [targets[i] for i in keep], classes,
                       paths=[paths[i] for i in keep], signature=f"folder:{root.name}", skipped=skipped)


def _release(name):
    def load(split, root=None, **options):
        return getattr(formats, name)(split, root=root, **options)
    return load


DATASETS = {"synthfer": _synthfer, "rafdb": _rafdb, "folder": _folder,
            "fer2013": _release("fer2013"), "ferplus": _release("ferplus"), "affectnet": _release("affectnet")}


def load_dataset(name: str, split: str, root=None, **options) -> FaceDataset:
    """Load dataset `name` (synthfer, rafdb, folder, fer2013, ferplus, affectnet), split 'train' or
    'test' (and 'val' for fer2013 / ferplus)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name](split, root=root, **options)


def synth_options(cfg) -> dict:
    """The SynthFER options a run's configuration (a Config or its config.json dict) implies:
    the one place they are mapped."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k: getattr(cfg, k))
    return dict(size=get("synth_size"), image_size=get("image_size"), seed=get("synth_seed")) if get("dataset") == "synthfer" else {}


def with_label_noise(ds: FaceDataset, rate: float, seed: int) -> FaceDataset:
    """A copy of `ds` in which a share `rate` of the labels is replaced by another class, drawn
    uniformly: the symmetric noise of the noisy-label literature, to ask whether label
    disambiguation pays when more given labels are wrong. The labels are drawn before the labeled
    split, as an annotator's would be, so the split's per-class counts are of the noisy labels.
    Where the dataset knows no true class, its own labels become the true class, so relabels and
    negative labels are still scored."""
    if not 0 <= rate < 1:
        raise ValueError(f"label_noise={rate}; expected a share in [0, 1)")
    rng = np.random.default_rng([seed, 13])
    old = np.asarray(ds.targets)
    flip = rng.random(len(old)) < rate
    new = old.copy()
    new[flip] = (old[flip] + rng.integers(1, len(ds.classes), int(flip.sum()))) % len(ds.classes)
    noisy = copy.copy(ds)
    noisy.targets = new.tolist()
    noisy.true_targets = ds.true_targets if ds.true_targets is not None else old.tolist()
    noisy.signature = f"{ds.signature},label_noise={rate},noise_seed={seed}"
    return noisy


def build_data(cfg):
    """(train dataset, test dataset, labeled indices, unlabeled indices) of a run's configuration."""
    opts = synth_options(cfg)
    train = load_dataset(cfg.dataset, "train", root=cfg.data_root, **opts)
    if cfg.label_noise:
        train = with_label_noise(train, cfg.label_noise, cfg.split_seed)
    test = load_dataset(cfg.dataset, "test", root=cfg.data_root, **opts)
    if cfg.split_file:
        lab = read_split_file(cfg.split_file, train)
    elif cfg.counts:
        lab = draw_split(train, counts=[int(c) for c in cfg.counts.split(",")], seed=cfg.split_seed)
    elif cfg.n_labeled < 0:
        lab = list(range(len(train)))
    else:
        lab = draw_split(train, cfg.n_labeled, seed=cfg.split_seed)
    taken = np.zeros(len(train), bool)
    taken[lab] = True
    unl = np.flatnonzero(~taken)
    if len(unl) == 0:  # every label used: the unlabeled stream sees the whole set
        unl = np.arange(len(train))
    if 0 < cfg.unlabeled_pool < len(unl):  # a smaller pool: more visits per face in a short run
        unl = np.sort(np.random.default_rng([cfg.split_seed, 11]).choice(unl, cfg.unlabeled_pool, replace=False))
    return train, test, np.asarray(lab), unl



# ----------------------------------------------------------------------------- views

class RandomMagnitudeRandAugment(T.RandAugment):
    """RandAugment whose magnitude is drawn anew for every image, as LION's strong view does."""

    def forward(self, *inputs):
        self.magnitude = int(torch.randint(1, self.num_magnitude_bins, ()).item())
        return super().forward(*inputs)


def _finish():
    return [T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def eval_transform(size: int):
    return T.Compose([T.ToImage(), T.Resize((size, size), antialias=True), *_finish()])


def weak_transform(size: int, padding: int, padding_mode: str = "reflect"):
    """Resize, random crop with `padding` applied half the time, horizontal flip. The kit pads
    by reflection; the released script pads its labeled crops with zeros ("constant")."""
    return T.Compose([T.ToImage(), T.Resize((size, size), antialias=True),
                      T.RandomApply([T.RandomCrop(size, padding=padding, padding_mode=padding_mode)], p=0.5),
                      T.RandomHorizontalFlip(), *_finish()])


def strong_transform(size: int, padding: int):
    """Weak view, then RandAugment (3 ops, random magnitude), then a Cutout square up to
    half the side (RandomErasing with square boxes of up to a quarter of the area)."""
    return T.Compose([T.ToImage(), T.Resize((size, size), antialias=True),
                      T.RandomApply([T.RandomCrop(size, padding=padding, padding_mode="reflect")], p=0.5),
                      T.RandomHorizontalFlip(), RandomMagnitudeRandAugment(num_ops=3), *_finish(),
                      T.RandomErasing(p=1.0, scale=(0.01, 0.25), ratio=(1.0, 1.0), value=0)])


def bgr_quirk(x: torch.Tensor) -> torch.Tensor:
    """The released script reads images with OpenCV (BGR) and normalises them with the RGB
    ImageNet statistics. From a normalised RGB batch x (x_c = (img_c - m_c) / s_c) this rebuilds
    what the script feeds: channel c holds img_(2-c), normalised with (m_c, s_c). (Flipping the
    normalised channels would not reproduce that offset.)"""
    m = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype)[:, None, None]
    s = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype)[:, None, None]
    return ((x * s + m).flip(-3) - m) / s


class TwoViews:
    """Weak and strong view of one unlabeled image."""

    def __init__(self, weak, strong):
        self.weak, self.strong = weak, strong

    def __call__(self, img):
        return self.weak(img), self.strong(img)


# ----------------------------------------------------------------------------- splits

def paper_counts(n_labeled: int) -> list[int]:
    """Per-class label counts of the paper's split for a total budget (splits/paper_counts.csv)."""
    table = SPLITS_DIR / "paper_counts.csv"
    rows = [r for r in csv.reader(l for l in table.read_text().splitlines() if not l.startswith("#"))]
    header, body = rows[0], {int(r[0]): [int(x) for x in r[1:]] for r in rows[1:]}
    assert header[1:] == list(class_names()), f"{table}: columns must be {class_names()}"
    if n_labeled not in body:
        raise ValueError(f"no paper split for {n_labeled} labels; {table} defines {sorted(body)} "
                         "(or pass explicit per-class counts)")
    return body[n_labeled]


def draw_split(dataset: FaceDataset, n_labeled: int | None = None, counts=None, seed: int = 5) -> list[int]:
    """Indices of a labeled subset drawn per class (observed labels) from `dataset`."""
    counts = list(counts) if counts is not None else paper_counts(n_labeled)
    targets = np.asarray(dataset.targets)
    rng = np.random.default_rng(seed)
    chosen = []
    for c, k in enumerate(counts):
        pool = np.flatnonzero(targets == c)
        if k > len(pool):
            have = f"has only {len(pool)}" if len(pool) else "has no faces of that class"
            raise ValueError(f"split asks for {k} labels of class '{dataset.classes[c]}' but {dataset.signature} {have}; "
                             "pass explicit per-class numbers with --counts (0 for a class the dataset lacks)")
        chosen.extend(rng.choice(pool, k, replace=False).tolist())
    return sorted(chosen)


def write_split_file(path, dataset: FaceDataset, indices, seed: int):
    path = Path(path)
    counts = np.bincount(np.asarray(dataset.targets)[list(indices)], minlength=NUM_CLASSES)
    lines = ["# lion_kit split", f"# dataset: {dataset.signature}",
             "# counts: " + ",".join(map(str, counts.tolist())), f"# seed: {seed}"]
    lines += [str(dataset.ids[i]) for i in indices]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def read_split_file(path, dataset: FaceDataset) -> list[int]:
    """Indices (into `dataset`) of the ids listed in a split file; checks it is for this dataset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    header, ids = {}, []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            if ":" in line:
                k, v = line[1:].split(":", 1)
                header[k.strip()] = v.strip()
        elif line.strip():
            ids.append(line.strip())
    if header.get("dataset") != dataset.signature:
        raise ValueError(f"{path} is a split of {header.get('dataset')!r}, not of {dataset.signature!r}")
    pos = {str(i): k for k, i in enumerate(dataset.ids)}
    unknown = [i for i in ids if i not in pos]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} id(s) not in {dataset.signature}, e.g. {unknown[:3]}")
    if not ids:
        raise ValueError(f"{path}: lists no sample ids")
    return [pos[i] for i in ids]
