"""SynthFER's renderer: one face from its action units, drawn part by part with PIL.

`render_face` draws the background, head, eyes, brows, nose, mouth and accessories in a fixed
order, each part taking its random draws in turn, then poses and lights the face; the order is
what keeps every face (and every cached dataset) byte-identical.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FACE_ZOOM = 1.3  # the face fills the frame as in aligned RAF-DB crops
AUS = ("inner_brow_raise", "outer_brow_raise", "brow_lower", "upper_lid_raise", "lid_tighten",
       "cheek_raise", "nose_wrinkle", "upper_lip_raise", "lip_corner", "lip_stretch",
       "lip_press", "jaw_drop")


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
    never expression), which pretraining may use as a target.

    The parts are drawn in a fixed order, each taking its random draws in turn, so that every
    face (and every cached dataset) stays byte-identical: background, head, eyes, brows, nose,
    mouth, accessories, then pose and lighting."""
    f = SimpleNamespace(rng=rng, ident=rng if identity is None else identity, a=dict(zip(AUS, au)),
                        S=size * supersample, cx=0.5, cy=0.53)
    S = f.S
    f.P = lambda x, y: (x * S, y * S)
    img = _draw_background(f)
    for part in (_draw_head, _draw_eyes, _draw_brows, _draw_nose, _draw_mouth):
        part(f)
    _draw_accessories(f, occlusion)
    if record is not None:
        record.update(face_width=f.fw, face_height=f.fh, eye_spacing=f.es, eye_size=f.er, brow_thickness=f.brow_thickness,
                      brow_gap=f.brow_gap, mouth_width=f.mouth_width, lip_thickness=f.lip_thickness)
    return _pose_and_light(img, f, size)


def _draw_background(f):
    rng, S = f.rng, f.S
    f.bg = bg = rng.uniform(30, 230, 3)
    img = Image.new("RGB", (S, S), _rgb(bg))
    f.d = d = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 4)):  # background clutter
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * S
        w, h = rng.uniform(0.1, 0.6, 2) * S
        (d.rectangle if rng.random() < 0.5 else d.ellipse)(
            [x0, y0, x0 + w, y0 + h], fill=_rgb(bg + rng.normal(0, 40, 3)))
    return img


def _draw_head(f):
    """Skin and hair colours, head shape, hair mass, neck, ears, face and fringe."""
    ident, d, P, a, cx, cy = f.ident, f.d, f.P, f.a, f.cx, f.cy
    skin = np.array([ident.uniform(90, 245), 0, 0]); skin[1] = skin[0] * ident.uniform(0.7, 0.85)
    skin[2] = skin[1] * ident.uniform(0.75, 0.95)
    f.skin, f.dark = skin, skin * 0.55
    f.hair = hair = _rgb(ident.choice([[30, 20, 15], [80, 50, 20], [150, 110, 60], [200, 170, 110],
                                       [60, 60, 60], [120, 40, 20]]) + ident.normal(0, 10, 3))
    f.fw, f.fh = fw, fh = ident.uniform(0.27, 0.33), ident.uniform(0.33, 0.39)
    f.jaw_open = jaw_open = a["jaw_drop"] * 0.05
    if ident.random() < 0.85:  # hair mass behind the head
        d.ellipse([P(cx - fw - 0.04, cy - fh - 0.06), P(cx + fw + 0.04, cy + fh * ident.uniform(0.0, 0.7))], fill=hair)
    d.rectangle([P(cx - 0.11, cy + 0.2), P(cx + 0.11, 1.05)], fill=_rgb(skin * 0.9))  # neck
    d.ellipse([P(cx - fw - 0.03, cy - 0.06), P(cx - fw + 0.03, cy + 0.07)], fill=_rgb(skin * 0.95))
    d.ellipse([P(cx + fw - 0.03, cy - 0.06), P(cx + fw + 0.03, cy + 0.07)], fill=_rgb(skin * 0.95))
    d.ellipse([P(cx - fw, cy - fh), P(cx + fw, cy + fh + jaw_open)], fill=_rgb(skin))
    if ident.random() < 0.6:  # fringe
        d.chord([P(cx - fw, cy - fh - 0.02), P(cx + fw, cy - fh + ident.uniform(0.12, 0.3))], 180, 360, fill=hair)


def _draw_eyes(f):
    """Eyes open with AU5, close with AU7 and AU6; the lids' skin covers what they hide."""
    ident, d, P, a, cx, S, skin, dark = f.ident, f.d, f.P, f.a, f.cx, f.S, f.skin, f.dark
    f.ey, f.es, f.er = ey, es, er = f.cy - 0.06, ident.uniform(0.095, 0.125), ident.uniform(0.04, 0.055)
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


def _draw_brows(f):
    """Brows: inner ends rise with AU1, outer with AU2, both fall and knit with AU4."""
    ident, d, P, a, cx, S, dark, es, er = f.ident, f.d, f.P, f.a, f.cx, f.S, f.dark, f.es, f.er
    f.brow_thickness = ident.uniform(0.018, 0.03)
    bw = max(1, int(S * f.brow_thickness))
    f.brow_gap = ident.uniform(0.03, 0.05)
    by = f.ey - er - f.brow_gap
    for side in (-1, 1):
        ex = cx + side * es
        inner = (ex - side * er * (1.0 - 0.5 * a["brow_lower"]), by - 0.07 * a["inner_brow_raise"] + 0.045 * a["brow_lower"])
        outer = (ex + side * er * 1.3, by - 0.06 * a["outer_brow_raise"] + 0.01 * a["brow_lower"] + 0.01)
        mid = ((inner[0] + outer[0]) / 2, min(inner[1], outer[1]) - 0.015 - 0.02 * a["outer_brow_raise"])
        d.line(_quad(P(*inner), P(*mid), P(*outer)), fill=f.hair, width=bw)
    if a["brow_lower"] > 0.35:  # knit lines
        for dx in (-0.012, 0.012):
            d.line([P(cx + dx, by - 0.01), P(cx + dx * 0.6, by + 0.04)], fill=_rgb(dark), width=max(1, S // 96))
    if a["inner_brow_raise"] > 0.5 and a["outer_brow_raise"] > 0.4:  # forehead lines
        for k in range(2):
            yy = by - 0.06 - 0.025 * k
            d.line(_quad(P(cx - 0.1, yy), P(cx, yy - 0.015), P(cx + 0.1, yy)), fill=_rgb(dark * 1.2), width=max(1, S // 128))


def _draw_nose(f):
    """The nose; AU9 wrinkles its bridge and flares it; AU6 raises and reddens the cheeks."""
    d, P, a, cx, S, dark, ey, es = f.d, f.P, f.a, f.cx, f.S, f.dark, f.ey, f.es
    f.ny = ny = f.cy + 0.08
    f.nw = nw = 0.035 + 0.015 * a["nose_wrinkle"]
    d.line([P(cx, ey + 0.01), P(cx - 0.01, ny)], fill=_rgb(dark * 1.15), width=max(1, S // 96))
    d.line(_quad(P(cx - nw, ny - 0.005), P(cx, ny + 0.025), P(cx + nw, ny - 0.005)), fill=_rgb(dark), width=max(1, S // 80))
    for k in range(int(round(3 * a["nose_wrinkle"]))):
        yy = ey + 0.015 + 0.015 * k
        d.line([P(cx - 0.025, yy), P(cx + 0.025, yy)], fill=_rgb(dark), width=max(1, S // 96))
    if a["cheek_raise"] > 0.2:  # raised cheeks: rounder, redder
        blush = _rgb(f.skin * np.array([1.05, 0.85, 0.85]))
        for side in (-1, 1):
            r = 0.04 + 0.02 * a["cheek_raise"]
            x = cx + side * (es + 0.02)
            d.ellipse([P(x - r, ny - 0.03 - r * 0.7), P(x + r, ny - 0.03 + r * 0.7)], fill=blush)


def _draw_mouth(f):
    """Lips, the open mouth and teeth, nasolabial folds: AU10, 12/15, 20, 24 and 26."""
    ident, d, P, a, cx, S, dark, nw, ny = f.ident, f.d, f.P, f.a, f.cx, f.S, f.dark, f.nw, f.ny
    my = f.cy + 0.19 + 0.5 * f.jaw_open
    f.mouth_width = ident.uniform(0.9, 1.1)
    mw = 0.09 * (1 + 0.45 * a["lip_stretch"] + 0.25 * max(a["lip_corner"], 0) - 0.25 * a["lip_press"]) * f.mouth_width
    corner = my - 0.055 * a["lip_corner"] - 0.01 * a["lip_stretch"]
    top = my - 0.012 - 0.035 * a["upper_lip_raise"] - 0.01 * a["jaw_drop"]
    gap = 0.13 * a["jaw_drop"] + 0.03 * a["lip_stretch"] * a["jaw_drop"] + 0.02 * max(a["lip_corner"], 0) ** 2
    bottom = my + 0.012 + gap - 0.008 * a["lip_press"]
    f.lip_thickness = ident.uniform(0.8, 1.2)
    thick = 0.018 * (1 - 0.75 * a["lip_press"]) * f.lip_thickness
    lip = _rgb(f.skin * np.array([0.8, 0.5, 0.5]))
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


def _draw_accessories(f, occlusion: float):
    """Glasses (part of a person) and an occluder (a hand, a cup, a microphone: part of a photo)."""
    ident, rng, d, P, cx, S, es, er, ey = f.ident, f.rng, f.d, f.P, f.cx, f.S, f.es, f.er, f.ey
    if ident.random() < 0.2:  # glasses
        col = _rgb(ident.uniform(0, 90, 3))
        gr = er * 1.6
        for side in (-1, 1):
            d.ellipse([P(cx + side * es - gr, ey - gr * 0.8), P(cx + side * es + gr, ey + gr * 0.8)], outline=col, width=max(1, S // 64))
        d.line([P(cx - es + gr, ey), P(cx + es - gr, ey)], fill=col, width=max(1, S // 64))
    if rng.random() < occlusion:  # a hand, a cup, a microphone...
        ox, oy = rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.95)
        ow, oh = rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.3)
        col = _rgb(f.skin * rng.uniform(0.85, 1.1)) if rng.random() < 0.5 else _rgb(rng.uniform(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([P(ox - ow / 2, oy - oh / 2), P(ox + ow / 2, oy + oh / 2)], fill=col)


def _pose_and_light(img, f, size: int) -> np.ndarray:
    """Pose (in-plane rotation, scale and shift about the face centre), downsampling, blur, then
    lighting (a directional gradient, global gain and colour cast) and sensor noise."""
    rng, S = f.rng, f.S
    ang = math.radians(rng.normal(0, 8))
    sc = rng.uniform(0.88, 1.12) * FACE_ZOOM
    tx, ty = rng.normal(0, 0.035, 2) * S
    ty -= 0.06 * S  # centre the eyes-mouth region rather than the whole head
    c, s = math.cos(ang) / sc, math.sin(ang) / sc
    x0, y0 = S / 2, S / 2
    img = img.transform((S, S), Image.AFFINE, (c, s, x0 - c * x0 - s * y0 - tx, -s, c, y0 + s * x0 - c * y0 - ty),
                        resample=Image.BILINEAR, fillcolor=_rgb(f.bg))
    img = img.resize((size, size), Image.BOX)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * size / 64))
    x = np.asarray(img, np.float32)
    g = np.linspace(-1, 1, size, dtype=np.float32)
    th = rng.uniform(0, 2 * np.pi)
    shade = 1 + rng.uniform(0, 0.35) * (np.cos(th) * g[None, :] + np.sin(th) * g[:, None])
    x = x * shade[..., None] * rng.uniform(0.7, 1.2) * rng.uniform(0.92, 1.08, 3) + rng.uniform(-20, 20)
    x += rng.normal(0, rng.uniform(0, 8), x.shape).astype(np.float32)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)
