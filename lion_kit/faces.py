"""The canonical face dataset and what every loader shares (reading images, checking folders).

`data.py` (SynthFER, RAF-DB, class folders) and `formats.py` (FER2013, FERPlus, AffectNet as
distributed) both build on this module; neither imports the other's internals.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image(path: Path) -> Image.Image:
    """Open an image as RGB (grayscale and palette images converted); errors name the path."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise OSError(f"cannot read image {path}: {e}") from e


class FaceDataset(Dataset):
    """Faces with labels in canonical order; items are ``(transform(image), label, index)``.

    Images are either an in-memory ``N x H x W x 3`` uint8 array (SynthFER) or file paths.
    """

    def __init__(self, name: str, ids: list, targets, classes, images=None, paths=None,
                 transform=None, true_targets=None, soft_labels=None, signature: str = "",
                 skipped: list | None = None):
        self.name, self.ids, self.classes = name, list(ids), list(classes)
        self.targets = [int(t) for t in targets]
        self._images, self.paths, self.transform = images, paths, transform
        self.true_targets = None if true_targets is None else [int(t) for t in true_targets]
        self.soft_labels = None if soft_labels is None else np.asarray(soft_labels, np.float32)
        self.signature = signature or name
        self.skipped = skipped or []

    def __len__(self):
        return len(self.targets)

    @property
    def images(self):
        if callable(self._images):  # lazily rendered / loaded
            self._images = self._images()
        return self._images

    def raw(self, i: int):
        """Untransformed image i: a uint8 CHW tensor for arrays, a PIL image for files."""
        if self.paths is not None:
            return read_image(self.paths[i])
        return torch.from_numpy(self.images[i]).permute(2, 0, 1)

    def __getitem__(self, i):
        img = self.raw(i)
        return (self.transform(img) if self.transform else img), self.targets[i], i


def check_dir(path: Path, what: str):
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path} is missing or not a folder")


def scan(paths, skip_corrupt):
    """With skip_corrupt, open every image now and drop (and report) the unreadable ones."""
    if not skip_corrupt:
        return list(range(len(paths))), []
    keep, skipped = [], []
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im.load()
            keep.append(i)
        except Exception as e:  # noqa: BLE001 - reported below, never silent
            skipped.append(f"{p}: {e}")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s): " + "; ".join(skipped[:5]))
    return keep, skipped
