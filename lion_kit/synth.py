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
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .labels import CLASSES, NUM_CLASSES, NEUTRAL

RENDERER_VERSION = 2
FACE_ZOOM = 1.3  # the face fills the frame as in aligned RAF-DB crops

AUS = ("inner_brow_raise", "outer_brow_raise", "brow_lower", "upper_lid_raise", "lid_tighten",
       "cheek_raise", "nose_wrinkle", "upper_lip_raise", "lip_corner", "lip_stretch",
       "lip_press", "jaw_drop")
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
RAFDB_TRAIN_COUNTS = (1290, 281, 717, 4772, 1982, 705, 2524)
RAFDB_TEST_COUNTS = (329, 74, 160, 1185, 478, 162, 680)
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

def _quad(p0, p1, p2, n=8):
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t ** 2 * np.asarray(p2)
    return [tuple(q) for q in pts]


def _rgb(v):
    return tuple(int(x) for x in np.clip(v, 0, 255))


def render_face(au: np.ndarray, rng: np.random.Generator, size: int, occlusion: float,
                supersample: int = 2, identity: np.random.Generator | None = None,
                record: dict | None = None) -> np.ndarray:
    """Render one face (H x W x 3 uint8) from its AU vector; pose, lighting and nuisances come
    from `rng`. Identity (face shape, skin, hair, eyes, brows, lips, glasses) comes from
    `identity` when given (a generator seeded per person, so that several faces share it: the
    identity set of `lion_kit pretrain`), else from `rng` (one person per face). `record`, when
    given, receives the identity's face geometry (IDENTITY_GEOMETRY: drawn once per person,
    never expression), which pretraining may use as a target."""
    ident = rng if identity is None else identity
    a = dict(zip(AUS, au))
    S = size * supersample
    bg = rng.uniform(30, 230, 3)
    img = Image.new("RGB", (S, S), _rgb(bg))
    d = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 4)):  # background clutter
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * S
        w, h = rng.uniform(0.1, 0.6, 2) * S
        (d.rectangle if rng.random() < 0.5 else d.ellipse)(
            [x0, y0, x0 + w, y0 + h], fill=_rgb(bg + rng.normal(0, 40, 3)))
    P = lambda x, y: (x * S, y * S)  # noqa: E731

    skin = np.array([ident.uniform(90, 245), 0, 0]); skin[1] = skin[0] * ident.uniform(0.7, 0.85)
    skin[2] = skin[1] * ident.uniform(0.75, 0.95)
    dark = skin * 0.55
    hair = _rgb(ident.choice([[30, 20, 15], [80, 50, 20], [150, 110, 60], [200, 170, 110],
                            [60, 60, 60], [120, 40, 20]]) + ident.normal(0, 10, 3))
    cx, cy = 0.5, 0.53
    fw, fh = ident.uniform(0.27, 0.33), ident.uniform(0.33, 0.39)
    jaw_open = a["jaw_drop"] * 0.05
    if ident.random() < 0.85:  # hair mass behind the head
        d.ellipse([P(cx - fw - 0.04, cy - fh - 0.06), P(cx + fw + 0.04, cy + fh * ident.uniform(0.0, 0.7))], fill=hair)
    d.rectangle([P(cx - 0.11, cy + 0.2), P(cx + 0.11, 1.05)], fill=_rgb(skin * 0.9))  # neck
    d.ellipse([P(cx - fw - 0.03, cy - 0.06), P(cx - fw + 0.03, cy + 0.07)], fill=_rgb(skin * 0.95))
    d.ellipse([P(cx + fw - 0.03, cy - 0.06), P(cx + fw + 0.03, cy + 0.07)], fill=_rgb(skin * 0.95))
    d.ellipse([P(cx - fw, cy - fh), P(cx + fw, cy + fh + jaw_open)], fill=_rgb(skin))
    if ident.random() < 0.6:  # fringe
        d.chord([P(cx - fw, cy - fh - 0.02), P(cx + fw, cy - fh + ident.uniform(0.12, 0.3))], 180, 360, fill=hair)

    # eyes
    ey, es, er = cy - 0.06, ident.uniform(0.095, 0.125), ident.uniform(0.04, 0.055)
    open_h = er * np.clip(0.5 + 0.65 * a["upper_lid_raise"] - 0.35 * a["lid_tighten"] - 0.3 * a["cheek_raise"], 0.08, 1.3)
    iris = _rgb(ident.choice([[60, 40, 20], [40, 90, 140], [70, 110, 60], [30, 30, 30]]))
    for side in (-1, 1):
        ex = cx + side * es
        d.ellipse([P(ex - er, ey - open_h), P(ex + er, ey + open_h)], fill=(240, 240, 235), outline=_rgb(dark), width=max(1, S // 64))
        ir = min(er * 0.55, open_h)
        d.ellipse([P(ex - ir, ey - ir), P(ex + ir, ey + ir)], fill=iris)
        d.ellipse([P(ex - ir * 0.45, ey - ir * 0.45), P(ex + ir * 0.45, ey + ir * 0.45)], fill=(10, 10, 10))
        # eyelid skin covers what the lids hide (tightening pushes the lower lid up)
        lower = ey + open_h * (1 - 0.5 * a["lid_tighten"] - 0.4 * a["cheek_raise"])
        d.rectangle([P(ex - er * 1.1, lower), P(ex + er * 1.1, ey + open_h * 1.2)], fill=_rgb(skin))
        d.line(_quad(P(ex - er, ey), P(ex, lower + 0.012), P(ex + er, ey)), fill=_rgb(dark), width=max(1, S // 96))
        if a["cheek_raise"] > 0.3:  # crow's feet / raised cheek
            d.line([P(ex + side * er * 1.1, ey + 0.005), P(ex + side * er * 1.5, ey + 0.02)], fill=_rgb(dark), width=max(1, S // 96))

    # brows: inner ends rise with AU1, outer with AU2, both fall and knit with AU4
    brow_thickness = ident.uniform(0.018, 0.03)
    bw = max(1, int(S * brow_thickness))
    brow_gap = ident.uniform(0.03, 0.05)
    by = ey - er - brow_gap
    for side in (-1, 1):
        ex = cx + side * es
        inner = (ex - side * er * (1.0 - 0.5 * a["brow_lower"]), by - 0.07 * a["inner_brow_raise"] + 0.045 * a["brow_lower"])
        outer = (ex + side * er * 1.3, by - 0.06 * a["outer_brow_raise"] + 0.01 * a["brow_lower"] + 0.01)
        mid = ((inner[0] + outer[0]) / 2, min(inner[1], outer[1]) - 0.015 - 0.02 * a["outer_brow_raise"])
        d.line(_quad(P(*inner), P(*mid), P(*outer)), fill=hair, width=bw)
    if a["brow_lower"] > 0.35:  # knit lines
        for dx in (-0.012, 0.012):
            d.line([P(cx + dx, by - 0.01), P(cx + dx * 0.6, by + 0.04)], fill=_rgb(dark), width=max(1, S // 96))
    if a["inner_brow_raise"] > 0.5 and a["outer_brow_raise"] > 0.4:  # forehead lines
        for k in range(2):
            yy = by - 0.06 - 0.025 * k
            d.line(_quad(P(cx - 0.1, yy), P(cx, yy - 0.015), P(cx + 0.1, yy)), fill=_rgb(dark * 1.2), width=max(1, S // 128))

    # nose; AU9 wrinkles its bridge and flares it
    ny = cy + 0.08
    nw = 0.035 + 0.015 * a["nose_wrinkle"]
    d.line([P(cx, ey + 0.01), P(cx - 0.01, ny)], fill=_rgb(dark * 1.15), width=max(1, S // 96))
    d.line(_quad(P(cx - nw, ny - 0.005), P(cx, ny + 0.025), P(cx + nw, ny - 0.005)), fill=_rgb(dark), width=max(1, S // 80))
    for k in range(int(round(3 * a["nose_wrinkle"]))):
        yy = ey + 0.015 + 0.015 * k
        d.line([P(cx - 0.025, yy), P(cx + 0.025, yy)], fill=_rgb(dark), width=max(1, S // 96))
    if a["cheek_raise"] > 0.2:  # raised cheeks: rounder, redder
        blush = _rgb(skin * np.array([1.05, 0.85, 0.85]))
        for side in (-1, 1):
            r = 0.04 + 0.02 * a["cheek_raise"]
            x = cx + side * (es + 0.02)
            d.ellipse([P(x - r, ny - 0.03 - r * 0.7), P(x + r, ny - 0.03 + r * 0.7)], fill=blush)

    # mouth
    my = cy + 0.19 + 0.5 * jaw_open
    mouth_width = ident.uniform(0.9, 1.1)
    mw = 0.09 * (1 + 0.45 * a["lip_stretch"] + 0.25 * max(a["lip_corner"], 0) - 0.25 * a["lip_press"]) * mouth_width
    corner = my - 0.055 * a["lip_corner"] - 0.01 * a["lip_stretch"]
    top = my - 0.012 - 0.035 * a["upper_lip_raise"] - 0.01 * a["jaw_drop"]
    gap = 0.13 * a["jaw_drop"] + 0.03 * a["lip_stretch"] * a["jaw_drop"] + 0.02 * max(a["lip_corner"], 0) ** 2
    bottom = my + 0.012 + gap - 0.008 * a["lip_press"]
    lip_thickness = ident.uniform(0.8, 1.2)
    thick = 0.018 * (1 - 0.75 * a["lip_press"]) * lip_thickness
    if record is not None:
        record.update(face_width=fw, face_height=fh, eye_spacing=es, eye_size=er, brow_thickness=brow_thickness,
                      brow_gap=brow_gap, mouth_width=mouth_width, lip_thickness=lip_thickness)
    lip = _rgb(skin * np.array([0.8, 0.5, 0.5]))
    L, R = (cx - mw, corner), (cx + mw, corner)
    upper_in = _quad(P(*L), P(cx, top + thick + 0.006 * a["lip_corner"]), P(*R))
    lower_in = _quad(P(*R), P(cx, bottom - thick), P(*L))
    d.polygon(_quad(P(*L), P(cx, top - thick), P(*R)) + _quad(P(*R), P(cx, bottom + thick), P(*L)), fill=lip)
    if gap > 0.015:
        d.polygon(upper_in + lower_in, fill=(45, 15, 20))
        if a["upper_lip_raise"] > 0.3 or a["lip_corner"] > 0.4:
            teeth = _quad(P(cx - mw * 0.8, corner + 0.003), P(cx, top + thick + 0.03), P(cx + mw * 0.8, corner + 0.003))
            d.polygon(upper_in[1:-1] + teeth[::-1], fill=(235, 230, 215))
    else:
        d.line(upper_in, fill=(70, 25, 30), width=max(1, S // 64))
    if a["lip_corner"] > 0.45:  # nasolabial folds
        for side in (-1, 1):
            d.line(_quad(P(cx + side * nw * 1.4, ny), P(cx + side * (mw + 0.03), my - 0.04), P(cx + side * (mw + 0.01), corner + 0.02)),
                   fill=_rgb(dark * 1.1), width=max(1, S // 96))

    if ident.random() < 0.2:  # glasses
        col = _rgb(ident.uniform(0, 90, 3))
        gr = er * 1.6
        for side in (-1, 1):
            d.ellipse([P(cx + side * es - gr, ey - gr * 0.8), P(cx + side * es + gr, ey + gr * 0.8)], outline=col, width=max(1, S // 64))
        d.line([P(cx - es + gr, ey), P(cx + es - gr, ey)], fill=col, width=max(1, S // 64))
    if rng.random() < occlusion:  # a hand, a cup, a microphone...
        ox, oy = rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.95)
        ow, oh = rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.3)
        col = _rgb(skin * rng.uniform(0.85, 1.1)) if rng.random() < 0.5 else _rgb(rng.uniform(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([P(ox - ow / 2, oy - oh / 2), P(ox + ow / 2, oy + oh / 2)], fill=col)

    # pose: in-plane rotation, scale and shift, about the face centre
    ang = math.radians(rng.normal(0, 8))
    sc = rng.uniform(0.88, 1.12) * FACE_ZOOM
    tx, ty = rng.normal(0, 0.035, 2) * S
    ty -= 0.06 * S  # centre the eyes-mouth region rather than the whole head
    c, s = math.cos(ang) / sc, math.sin(ang) / sc
    x0, y0 = S / 2, S / 2
    img = img.transform((S, S), Image.AFFINE, (c, s, x0 - c * x0 - s * y0 - tx, -s, c, y0 + s * x0 - c * y0 - ty),
                        resample=Image.BILINEAR, fillcolor=_rgb(bg))
    img = img.resize((size, size), Image.BOX)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * size / 64))
    x = np.asarray(img, np.float32)
    # lighting: a directional gradient, global gain and colour cast, then sensor noise
    g = np.linspace(-1, 1, size, dtype=np.float32)
    th = rng.uniform(0, 2 * np.pi)
    shade = 1 + rng.uniform(0, 0.35) * (np.cos(th) * g[None, :] + np.sin(th) * g[:, None])
    x = x * shade[..., None] * rng.uniform(0.7, 1.2) * rng.uniform(0.92, 1.08, 3) + rng.uniform(-20, 20)
    x += rng.normal(0, rng.uniform(0, 8), x.shape).astype(np.float32)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


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
