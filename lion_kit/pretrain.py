"""A face-recognition trunk for SynthFER: the kit's analogue of the paper's MS-Celeb-1M start.

Why: LION's constants (tau_e from 0.8, delta_neg = 0.01, the relabel thresholds) assume a
network that is confident early, because the paper's ResNet-18 starts from a face-recognition
checkpoint. `python -m lion_kit pretrain` trains the same trunk to recognise SynthFER
*identities*, rendered apart from the expression set (their own random streams, keyed
(seed, 2, person) and (seed, 3, person, face), which the expression set never uses). Each
person is shown with random expressions, pose, lighting and occluders; the only target is who
it is. No expression label, soft label or action-unit vector is a target or an input.

Identity can be told apart by colour alone (skin, hair, iris), a shortcut that would teach the
trunk nothing about face geometry; colour jitter and random grayscale take that shortcut away.

The checkpoint, ``{'state_dict', 'config', 'hash', 'metrics'}``, holds the trunk in torchvision
key names (what `--pretrained` loads, like the MS-Celeb file), in fp16, and is named by the hash
of its configuration: ``synthfer-faces-<hash>.pt``. `--pretrained synthfer-faces` finds it in
the repository's ``weights/`` folder or the cache, or builds it there when missing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from torch.utils.data import DataLoader, Dataset

from . import synth
from .data import IMAGENET_MEAN, IMAGENET_STD
from .labels import NUM_CLASSES

NAME = "synthfer-faces"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything that changes the trunk (all of it enters the hash)."""

    identities: int = 1000
    """people in the identity set"""
    faces: int = 12
    """training faces per person"""
    heldout: int = 2
    """held-out faces per person (identity accuracy)"""
    image_size: int = 64
    """render and input side"""
    stem: str = "imagenet"
    """ResNet stem of the trunk"""
    seed: int = 0
    """rendering seed (identity streams are disjoint from the expression set's)"""
    epochs: int = 8
    """passes over the identity set"""
    batch_size: int = 64
    """faces per step"""
    lr: float = 1e-3
    """Adam learning rate (cosine decay to 0)"""
    scale: float = 16.0
    """cosine-classifier scale (normalised features and class weights, as face recognition)"""
    color_jitter: float = 0.4
    """brightness/contrast/saturation jitter; hue jitter is a quarter of it"""
    grayscale: float = 0.5
    """probability of a grayscale input"""
    geometry: float = 1.0
    """weight of the second identity target: regressing the person's face geometry (synth.IDENTITY_GEOMETRY); 0 = identity only"""

    def __post_init__(self):
        for f, lo in (("identities", 2), ("faces", 1), ("heldout", 1), ("epochs", 1), ("batch_size", 1), ("image_size", 16)):
            if getattr(self, f) < lo:
                raise ValueError(f"pretrain {f}={getattr(self, f)}; expected at least {lo}")
        if self.geometry < 0:
            raise ValueError(f"pretrain geometry={self.geometry}; expected >= 0")
        for f in ("lr", "scale"):
            if not getattr(self, f) > 0:
                raise ValueError(f"pretrain {f}={getattr(self, f)}; expected > 0")
        for f in ("color_jitter", "grayscale"):
            if not 0 <= getattr(self, f) <= 1:
                raise ValueError(f"pretrain {f}={getattr(self, f)}; expected a value in [0, 1]")

    def key(self) -> str:
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def filename(self) -> str:
        return f"{NAME}-{self.key()}.pt"


# ----------------------------------------------------------------------------- data

def random_action_units(rng: np.random.Generator) -> np.ndarray:
    """A random expression for a face of the identity set: a mix of one or two prototypes at a
    random intensity. It varies the face; it is never a target."""
    a, b = rng.integers(0, NUM_CLASSES, 2)
    w = rng.uniform(0, 0.5) if rng.random() < 0.3 else 0.0
    au = rng.uniform(0.25, 1.0) * ((1 - w) * synth.PROTOTYPES[a] + w * synth.PROTOTYPES[b])
    au = au + rng.normal(0, 0.06, len(synth.AUS))
    lo = np.zeros(len(synth.AUS)); lo[synth.AUS.index("lip_corner")] = -1
    return np.clip(au, lo, 1.0)


def _render_people(args):
    cfg, lo, hi = args
    per = cfg.faces + cfg.heldout
    out = np.empty(((hi - lo) * per, cfg.image_size, cfg.image_size, 3), np.uint8)
    geometry = np.empty((hi - lo, len(synth.IDENTITY_GEOMETRY)), np.float32)
    k = 0
    for person in range(lo, hi):
        for j in range(per):
            rng = np.random.default_rng([cfg.seed, 3, person, j])
            ident = np.random.default_rng([cfg.seed, 2, person])  # the same draws for every face
            rec = {}
            out[k] = synth.render_face(random_action_units(rng), rng, cfg.image_size, 0.15, 2, identity=ident, record=rec)
            k += 1
        geometry[person - lo] = [rec[n] for n in synth.IDENTITY_GEOMETRY]
    return out, geometry


def identity_set(cfg: PretrainConfig, cache: bool = True) -> dict[str, np.ndarray]:
    """Rendered identity faces (cached like SynthFER): ``images`` (N x H x W x 3), ``person``,
    ``heldout`` (True for the faces kept for identity accuracy) and ``geometry`` (one row of
    synth.IDENTITY_GEOMETRY per person)."""
    path = synth.cache_dir().parent / "identities" / _render_key(cfg) / "faces.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from concurrent.futures import ProcessPoolExecutor
    chunks = [(cfg, lo, min(cfg.identities, lo + 50)) for lo in range(0, cfg.identities, 50)]
    workers = min(os.cpu_count() or 1, 8)
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(_render_people, chunks))
    else:
        parts = [_render_people(c) for c in chunks]
    per = cfg.faces + cfg.heldout
    data = {"images": np.concatenate([p[0] for p in parts]), "person": np.repeat(np.arange(cfg.identities), per),
            "heldout": np.tile(np.arange(per) >= cfg.faces, cfg.identities),
            "geometry": np.concatenate([p[1] for p in parts])}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **data)
        os.replace(tmp, path)
    return data


def _render_key(cfg: PretrainConfig) -> str:
    fields = {k: getattr(cfg, k) for k in ("identities", "faces", "heldout", "image_size", "seed")}
    blob = json.dumps({**fields, "v": synth.RENDERER_VERSION, "geometry": 1}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class _Faces(Dataset):
    def __init__(self, images, person, transform):
        self.images, self.person, self.transform = images, person, transform

    def __len__(self):
        return len(self.person)

    def __getitem__(self, i):
        return self.transform(torch.from_numpy(self.images[i]).permute(2, 0, 1)), int(self.person[i])


def train_transform(cfg: PretrainConfig):
    j = cfg.color_jitter
    return T.Compose([T.RandomCrop(cfg.image_size, padding=max(1, cfg.image_size // 32), padding_mode="reflect"),
                      T.RandomHorizontalFlip(), T.ColorJitter(j, j, j, j / 4), T.RandomGrayscale(cfg.grayscale),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def test_transform():
    return T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# ----------------------------------------------------------------------------- training

class CosineClassifier(nn.Module):
    """logits = s * cos(feature, class weight): the usual face-recognition head."""

    def __init__(self, dim: int, n: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, dim) * 0.01)
        self.scale = scale

    def forward(self, f):
        return self.scale * F.normalize(f, dim=1) @ F.normalize(self.weight, dim=1).t()


def pretrain(cfg: PretrainConfig = PretrainConfig(), out: str | Path | None = None, workers: int = 1,
             threads: int = 0, log=print) -> Path:
    """Train the trunk on identity recognition; write the checkpoint (atomically); return its path."""
    from .model import LionNet, to_torchvision_keys
    from .runs import save_torch
    if threads:
        torch.set_num_threads(threads)
    out = Path(out) if out else cache_path(cfg)
    t0 = time.perf_counter()
    data = identity_set(cfg)
    t_render = time.perf_counter() - t0
    tr, ho = ~data["heldout"], data["heldout"]
    train_ds = _Faces(data["images"][tr], data["person"][tr], train_transform(cfg))
    test_ds = _Faces(data["images"][ho], data["person"][ho], test_transform())
    torch.manual_seed(cfg.seed)
    net = LionNet(NUM_CLASSES, stem=cfg.stem)
    head = CosineClassifier(512, cfg.identities, cfg.scale)
    geo = torch.from_numpy(data["geometry"])
    geo = (geo - geo.mean(0)) / geo.std(0)            # standardised targets, one row per person
    geo_head = nn.Linear(512, geo.shape[1])
    params = list(net.trunk.parameters()) + list(head.parameters()) + list(geo_head.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    dl = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=g,
                    num_workers=workers, persistent_workers=workers > 0)
    steps = cfg.epochs * len(dl)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.05,
                                                anneal_strategy="cos")
    from .progress import bar
    history = []
    for epoch in range(1, cfg.epochs + 1):
        net.train(); head.train()
        tot, n, hit = 0.0, 0, 0
        for x, y in bar(dl, desc=f"pretrain epoch {epoch}/{cfg.epochs}", leave=False):
            f = net.trunk(x).mean((2, 3))
            logits = head(f)
            loss = F.cross_entropy(logits, y)
            if cfg.geometry:
                loss = loss + cfg.geometry * F.mse_loss(geo_head(f), geo[y])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step(); sched.step()
            tot += loss.item() * len(y); n += len(y); hit += (logits.argmax(1) == y).sum().item()
        acc, r2 = evaluate(net, head, geo_head, test_ds, geo)
        history.append({"epoch": epoch, "loss": tot / n, "train_acc": hit / n, "heldout_acc": acc, "heldout_geometry_r2": r2})
        log(f"[pretrain] epoch {epoch}/{cfg.epochs} loss {tot / n:.3f} train acc {hit / n:.3f} "
            f"held-out identity acc {acc:.3f}, geometry R2 {r2:.3f} ({time.perf_counter() - t0:.0f} s)")
    trunk = {k: (v.half() if v.is_floating_point() else v) for k, v in to_torchvision_keys(net.state_dict()).items()
             if not k.startswith("fc.")}
    metrics = {"heldout_identity_acc": history[-1]["heldout_acc"], "chance": 1 / cfg.identities,
               "heldout_geometry_r2": history[-1]["heldout_geometry_r2"],
               "render_s": round(t_render, 1), "wall_s": round(time.perf_counter() - t0, 1),
               "faces": int(tr.sum()), "heldout_faces": int(ho.sum()), "history": history}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_torch(out, {"state_dict": trunk, "config": dataclasses.asdict(cfg), "hash": cfg.key(), "metrics": metrics})
    log(f"[pretrain] wrote {out} ({out.stat().st_size / 2**20:.1f} MB); held-out identity accuracy "
        f"{metrics['heldout_identity_acc']:.3f} (chance {1 / cfg.identities:.4f}), {metrics['wall_s']:.0f} s")
    return out


@torch.no_grad()
def evaluate(net, head, geo_head, ds, geo) -> tuple[float, float]:
    """Identity accuracy and geometry R^2 on held-out faces of the pretraining identities."""
    net.eval()
    hit, err = 0, 0.0
    for x, y in DataLoader(ds, batch_size=256):
        f = net.trunk(x).mean((2, 3))
        hit += (head(f).argmax(1) == y).sum().item()
        err += ((geo_head(f) - geo[y]) ** 2).sum().item()
    net.train()
    return hit / len(ds), 1 - err / (len(ds) * geo.shape[1])  # targets are standardised: variance 1


# ----------------------------------------------------------------------------- lookup

def cache_path(cfg: PretrainConfig) -> Path:
    return synth.cache_dir().parent / "weights" / cfg.filename()


def resolve(name: str | None, build: bool = True, log=print) -> str | None:
    """What `--pretrained` names -> a file path (or None for 'none').

    'synthfer-faces' is the trunk of the default PretrainConfig: the repository's copy in
    weights/, else the cache, else built into the cache now (minutes). 'imagenet' is
    torchvision's ResNet-18 ImageNet checkpoint. Anything else is a path.
    """
    if name is None or str(name).lower() in ("", "none"):
        return None
    if name == "imagenet":
        return imagenet_weights()
    if name != NAME:
        return str(name)
    cfg = PretrainConfig()
    for p in (WEIGHTS_DIR / cfg.filename(), cache_path(cfg)):
        if p.is_file():
            return str(p)
    if not build:
        raise FileNotFoundError(f"--pretrained {NAME}: neither {WEIGHTS_DIR / cfg.filename()} nor "
                                f"{cache_path(cfg)} exists; build it with `python -m lion_kit pretrain`")
    log(f"[pretrain] {NAME} ({cfg.filename()}) not found in {WEIGHTS_DIR} or the cache: training it now")
    return str(pretrain(cfg, cache_path(cfg), log=log))


def imagenet_weights() -> str:
    """torchvision's ResNet-18 ImageNet weights through torchvision's own weights API: from the
    torch cache, downloaded into it when online; offline and not cached, an error that says
    where to put the file."""
    import torchvision
    w = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
    if not path.is_file():
        try:
            w.get_state_dict(progress=False)
        except Exception as e:  # noqa: BLE001 - offline, proxy, ...: one clear message
            raise FileNotFoundError(f"--pretrained imagenet: {path} is not cached and could not be downloaded from "
                                    f"{w.url} ({type(e).__name__}: {e}); download it elsewhere and put it at {path} "
                                    "(or set TORCH_HOME)") from None
    return str(path)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m lion_kit pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = PretrainConfig()
    for f in dataclasses.fields(PretrainConfig):
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)),
                        default=getattr(defaults, f.name), help=f"(default {getattr(defaults, f.name)})")
    ap.add_argument("--out", default=None, help="checkpoint path (default: the cache, named by the hash)")
    ap.add_argument("--workers", type=int, default=1, help="data-loader workers")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    a = vars(ap.parse_args(argv))
    out, workers, threads = a.pop("out"), a.pop("workers"), a.pop("threads")
    try:
        cfg = PretrainConfig(**a)
        path = pretrain(cfg, out, workers=workers, threads=threads)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    print(path)
