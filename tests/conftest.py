import os
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def synth_cache(tmp_path_factory):
    """All tests share one SynthFER cache, isolated from the user's."""
    d = tmp_path_factory.mktemp("synth_cache")
    os.environ["LION_KIT_CACHE"] = str(d)
    os.environ["LION_KIT_PROGRESS"] = "0"
    return d


@pytest.fixture(scope="session")
def tiny():
    from lion_kit.data import load_dataset
    return load_dataset("synthfer", "train", size="tiny", image_size=32)


def _faces(n, split, size=40):
    from lion_kit import synth
    data = synth.load_split(synth.SynthConfig(size="tiny", image_size=size), split)
    return data["images"][:n], data["observed"][:n]


@pytest.fixture(scope="session")
def rafdb_root(tmp_path_factory):
    """A RAF-DB-shaped folder (EmoLabel/ + Image/aligned/) made of synthetic faces."""
    root = tmp_path_factory.mktemp("rafdb")
    (root / "EmoLabel").mkdir()
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for split, n in (("train", 120), ("test", 42)):
        imgs, labels = _faces(n, split)
        for i, (im, y) in enumerate(zip(imgs, labels), 1):
            name = f"{split}_{i:05d}.jpg"
            Image.fromarray(im).save(root / "Image" / "aligned" / f"{split}_{i:05d}_aligned.jpg", quality=92)
            lines.append(f"{name} {int(y) + 1}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
    """A class-per-folder tree with FER2013-style names, grayscale and palette images."""
    from lion_kit.labels import FER2013_ORDER, class_index
    root = tmp_path_factory.mktemp("folder")
    for split, n in (("train", 100), ("test", 40)):
        imgs, labels = _faces(n, split)
        names = {class_index(nm): nm for nm in FER2013_ORDER}
        for i, (im, y) in enumerate(zip(imgs, labels)):
            d = root / split / names[int(y)]
            d.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(im)
            if i % 3 == 1:
                pil = pil.convert("L")
            elif i % 3 == 2:
                pil = pil.convert("P")
            pil.save(d / f"img{i:04d}.png")
    return root
