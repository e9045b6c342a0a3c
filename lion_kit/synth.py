"""SynthFER: procedurally rendered facial expressions with known ground truth.

Why it exists: the kit must run and teach with no download, and it must be able to measure
what no real dataset allows, namely whether a disambiguated label or a negative label is
actually right. Every face is rendered from facial-action-like parameters (FACS-inspired
"action units", AUs) mixed from one or two expression prototypes, so each face carries

* ``soft``: its true distribution over the 7 classes (blends and subtle faces are ambiguous),
* ``true``: the argmax of ``soft``,
* ``observed``: a label drawn from ``soft`` (plus optional symmetric noise), playing the role
  of a crowd annotator's vote.

Rendering is numpy + Pillow, deterministic for a seed (each face has its own RNG stream
keyed by (seed, split, index), so results do not depend on the number of worker processes)
and cached on disk under a hash of every parameter.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .labels import CLASSES, NEUTRAL, NUM_CLASSES, RAFDB_TEST_COUNTS, RAFDB_TRAIN_COUNTS  # noqa: F401 - re-exported
from .render import AUS, FACE_ZOOM, render_face  # noqa: F401 - the renderer, re-exported

RENDERER_VERSION = 2
_A = {n: i for i, n in enumerate(AUS)}

# Expression prototypes as AU intensities (lip_corner is signed: + pulled up, - pulled down).
_PROTO = {
    "surprise": dict(inner_brow_raise=1.0, outer_brow_raise=1.0, upper_lid_raise=0.9, jaw_drop=0.9),
    "fear": dict(inner_brow_raise=1.0, outer_brow_raise=0.5, brow_lower=0.6, upper_lid_raise=1.0,
                 lid_tighten=0.3, lip_stretch=1.0, jaw_drop=0.35),
    "disgust": dict(brow_lower=0.5, nose_wrinkle=1.0, upper_lip_raise=1.0, lip_corner=-0.4,
                    cheek_raise=0.3, lid_tighten=0.4),
    "happiness": dict(cheek_raise=1.0, lip_corner=1.0, lid_tighten=0.25, jaw_drop=0.25,
                      upper_lip_raise=0.2, lip_stretch=0.2),
    "sadness": dict(inner_brow_raise=1.0, brow_lower=0.5, lip_corner=-0.9, lid_tighten=0.15,
                    lip_press=0.25),
    "anger": dict(brow_lower=1.0, upper_lid_raise=0.5, lid_tighten=0.7, lip_press=1.0,
                  lip_corner=-0.1),
    "neutral": dict(),
}
PROTOTYPES = np.zeros((NUM_CLASSES, len(AUS)), np.float32)
for _c, _name in enumerate(CLASSES):
    for _au, _v in _PROTO[_name].items():
        PROTOTYPES[_c, _A[_au]] = _v

# A person's face geometry, drawn once per identity (render_face's `record`): pretraining may
# regress it beside the identity; none of it depends on the expression.
IDENTITY_GEOMETRY = ("face_width", "face_height", "eye_spacing", "eye_size", "brow_thickness", "brow_gap",
                     "mouth_width", "lip_thickness")

# Pairs that annotators confuse (and that share AUs): blends favour them.
CONFUSABLE = ((0, 1), (2, 5), (4, 6), (1, 4), (0, 3), (2, 4), (5, 6), (3, 6))

# RAF-DB basic per-class counts (surprise ... neutral).
SIZES = {"full": (RAFDB_TRAIN_COUNTS, RAFDB_TEST_COUNTS), "small": (1200, 400), "tiny": (280, 140)}


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Every parameter that changes the rendered bytes (all of it enters the cache key)."""

    size: str = "full"            # 'full' (RAF-DB's 12,271/3,068), 'small' (1,200/400), 'tiny' (280/140)
    image_size: int = 64          # side in pixels (100 matches RAF-DB's aligned faces)
    seed: int = 0                 # master seed
    ambiguity: float = 0.3        # share of faces that blend two expressions
    min_intensity: float = 0.25   # weakest expression intensity (subtle faces lie near neutral)
    label_noise: float = 0.0      # extra symmetric noise on observed labels
    annotator_sharpness: float = 2.0  # observed labels are drawn from soft**sharpness (renormalised):
                                      # a majority of annotators agrees more than one annotator
    occlusion: float = 0.15       # share of faces with an occluder
    supersample: int = 2          # render at this multiple, then downsample (anti-aliasing)

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"SynthFER size {self.size!r} unknown; expected one of {sorted(SIZES)}")
        if not 16 <= self.image_size <= 256:
            raise ValueError(f"SynthFER image_size={self.image_size}; expected 16..256")
        for f in ("ambiguity", "label_noise", "occlusion"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"SynthFER {f}={v}; expected a value in [0, 1]")
        if self.annotator_sharpness <= 0:
            raise ValueError(f"SynthFER annotator_sharpness={self.annotator_sharpness}; expected > 0")
        if not 0.0 < self.min_intensity <= 1.0:
            raise ValueError(f"SynthFER min_intensity={self.min_intensity}; expected (0, 1]")

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "v": RENDERER_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def split_counts(cfg: SynthConfig, split: str) -> np.ndarray:
    """Per-class counts of a split: RAF-DB's exactly for 'full', its proportions otherwise."""
    train, test = SIZES[cfg.size]
    spec = train if split == "train" else test
    if isinstance(spec, tuple):
        return np.asarray(spec)
    prior = np.asarray(RAFDB_TRAIN_COUNTS if split == "train" else RAFDB_TEST_COUNTS, float)
    raw = prior / prior.sum() * spec
    counts = np.floor(raw).astype(int)
    counts[np.argsort(counts - raw)[: spec - counts.sum()]] += 1  # largest remainders
    return np.maximum(counts, 1)


# ----------------------------------------------------------------------------- labels

def sample_labels(cfg: SynthConfig, split: str) -> dict[str, np.ndarray]:
    """Draw each face's expression mix, soft label, true and observed label (no pixels yet)."""
    counts = split_counts(cfg, split)
    rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, 7])
    primary = rng.permutation(np.repeat(np.arange(NUM_CLASSES), counts))
    n = len(primary)
    secondary = primary.copy()
    blend = np.zeros(n)
    is_blend = rng.random(n) < cfg.ambiguity
    partners = {c: [b if a == c else a for a, b in CONFUSABLE if c in (a, b)] for c in range(NUM_CLASSES)}
    for i in np.flatnonzero(is_blend):
        c = primary[i]
        if rng.random() < 0.7:
            secondary[i] = rng.choice(partners[c])
        else:
            secondary[i] = rng.choice([k for k in range(NUM_CLASSES) if k != c])
        blend[i] = rng.uniform(0.2, 0.45)
    intensity = rng.uniform(cfg.min_intensity, 1.0, n)
    intensity[primary == NEUTRAL] = 1.0
    mix = np.zeros((n, NUM_CLASSES))
    mix[np.arange(n), primary] += 1 - blend
    mix[np.arange(n), secondary] += blend
    # A weak expression looks partly neutral: its soft label moves mass to neutral.
    nu = 0.6 * np.clip((0.6 - intensity) / 0.6, 0, 1)
    soft = mix * (1 - nu)[:, None]
    soft[:, NEUTRAL] += nu
    true = soft.argmax(1)
    vote = soft ** cfg.annotator_sharpness
    vote /= vote.sum(1, keepdims=True)
    u = rng.random(n)[:, None]
    observed = (u > np.cumsum(vote, 1)).sum(1).clip(0, NUM_CLASSES - 1)
    flip = rng.random(n) < cfg.label_noise
    observed[flip] = rng.integers(0, NUM_CLASSES, flip.sum())
    return dict(primary=primary, secondary=secondary, blend=blend, intensity=intensity,
                soft=soft.astype(np.float32), vote=vote.astype(np.float32), true=true, observed=observed)


def action_units(labels: dict[str, np.ndarray], i: int, rng: np.random.Generator) -> np.ndarray:
    """AU vector of face i: the intensity-scaled prototype mix plus resting-face jitter."""
    p, s, b = labels["primary"][i], labels["secondary"][i], labels["blend"][i]
    au = labels["intensity"][i] * ((1 - b) * PROTOTYPES[p] + b * PROTOTYPES[s])
    au = au + rng.normal(0, 0.06, len(AUS))
    lo = np.zeros(len(AUS)); lo[_A["lip_corner"]] = -1
    return np.clip(au, lo, 1.0)


# ----------------------------------------------------------------------------- rendering

def _render_range(args):
    cfg, split, labels, lo, hi = args
    out = np.empty((hi - lo, cfg.image_size, cfg.image_size, 3), np.uint8)
    sid = 0 if split == "train" else 1
    for i in range(lo, hi):
        rng = np.random.default_rng([cfg.seed, sid, i])
        out[i - lo] = render_face(action_units(labels, i, rng), rng, cfg.image_size, cfg.occlusion, cfg.supersample)
    return out


def render_split(cfg: SynthConfig, split: str, workers: int | None = None) -> dict[str, np.ndarray]:
    """Render every face of a split; returns the label arrays plus ``images`` (N x H x W x 3)."""
    if split not in ("train", "test"):
        raise ValueError(f"SynthFER split {split!r}; expected 'train' or 'test'")
    labels = sample_labels(cfg, split)
    n = len(labels["true"])
    workers = workers or min(os.cpu_count() or 1, 8)
    import multiprocessing
    if multiprocessing.current_process().daemon:  # e.g. inside a DataLoader worker: no children allowed
        workers = 1
    chunks = [(cfg, split, labels, lo, min(n, lo + 256)) for lo in range(0, n, 256)]
    if workers > 1 and n > 256:
        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(_render_range, chunks))
    else:
        parts = [_render_range(c) for c in chunks]
    return {**labels, "images": np.concatenate(parts)}


def cache_dir() -> Path:
    """Where rendered sets live: $LION_KIT_CACHE, else ~/.cache/lion_kit."""
    return Path(os.environ.get("LION_KIT_CACHE", Path.home() / ".cache" / "lion_kit")) / "synthfer"


def load_split(cfg: SynthConfig, split: str, cache: bool = True) -> dict[str, np.ndarray]:
    """Rendered split from the cache, rendering (and caching atomically) on first use."""
    path = cache_dir() / cfg.key() / f"{split}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    data = render_split(cfg, split)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **data)
        os.replace(tmp, path)
    return data


def bench_render(size: str = "full", image_size: int = 64) -> dict:
    """Time a cold render (no cache) and a cache reload of both splits."""
    import tempfile
    cfg = SynthConfig(size=size, image_size=image_size)
    old = os.environ.get("LION_KIT_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LION_KIT_CACHE"] = tmp
        try:
            t0 = time.perf_counter()
            n = sum(len(load_split(cfg, s)["true"]) for s in ("train", "test"))
            t1 = time.perf_counter()
            for s in ("train", "test"):
                load_split(cfg, s)
            t2 = time.perf_counter()
        finally:
            if old is None:
                os.environ.pop("LION_KIT_CACHE")
            else:
                os.environ["LION_KIT_CACHE"] = old
    return dict(size=size, image_size=image_size, faces=n, workers=os.cpu_count(),
                render_s=round(t1 - t0, 2), reload_s=round(t2 - t1, 3))
