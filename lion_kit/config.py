"""One configuration dataclass, its presets, and how they combine.

Precedence: command line > config file (JSON) > preset > dataclass defaults. The defaults are
the paper's constants (spec section 1); presets override a few fields; unknown keys are errors.
Schedules (tau_e, lambda_n, the relabel epoch) are written in *schedule epochs*: a run of
`epochs` epochs is mapped onto `schedule_epochs` of them, so a 6-epoch CPU run keeps the shape
of the paper's 30-epoch schedule (spec section 5).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
from pathlib import Path

METHODS = ("supervised", "fixmatch", "lion")
QUIRKS = ("bank_all_classes", "proto_softmax_all", "open_only_in_relabel_epoch", "bgr")


@dataclasses.dataclass
class Config:
    method: str = "lion"
    """supervised, fixmatch or lion"""
    dataset: str = "rafdb"
    """synthfer, rafdb or folder"""
    data_root: str | None = None
    """dataset folder (rafdb, folder); synthfer needs none"""
    synth_size: str = "full"
    """SynthFER size: full (RAF-DB's 12,271/3,068), small or tiny"""
    synth_seed: int = 0
    """SynthFER rendering seed"""
    n_labeled: int = 400
    """label budget; per-class counts from splits/paper_counts.csv, or -1 for all train labels"""
    split_file: str | None = None
    """a split file (overrides n_labeled)"""
    split_seed: int = 5
    """seed of the per-class labeled draw (the paper's is 5)"""
    image_size: int = 224
    """network input side; SynthFER is also rendered at this size"""
    stem: str = "imagenet"
    """ResNet stem: imagenet (7x7/2 + max-pool) or small (3x3/1, no pool; for 32-64 px)"""
    pretrained: str | None = None
    """local checkpoint for the trunk (e.g. resnet18_msceleb.pth)"""
    epochs: int = 30
    """training epochs"""
    iters: int = 800
    """iterations per epoch (an epoch is not a pass over the data)"""
    batch_size: int = 16
    """labeled batch size (per process)"""
    unlabeled_batch_size: int = 16
    """unlabeled batch size (per process)"""
    lr: float = 5e-4
    """Adam learning rate (constant)"""
    weight_decay: float = 0.02
    """after each step every float entry of the model state is multiplied by (1 - weight_decay * lr)"""
    ema: float = 0.999
    """EMA decay of the evaluated model"""
    crop_padding: int = 8
    """padding of the weak view's random crop, in pixels at image_size"""
    w_x: float = 1.6
    """weight of the labeled loss L_x"""
    w_u: float = 1.2
    """weight of the pseudo-label loss L_u"""
    tau_base: float = 0.8
    """confidence threshold tau_e = tau_base + tau_step * e (lion)"""
    tau_step: float = 0.01
    """per-schedule-epoch growth of tau_e"""
    fixmatch_tau: float = 0.95
    """fixed confidence threshold of fixmatch"""
    disambiguation: bool = True
    """lion: label disambiguation with candidate sets and prototypes"""
    relabel_epoch: int = 10
    """E_r, in schedule epochs: disambiguation starts here"""
    delta_amb: float = 0.5
    """a labeled sample is ambiguous when max_c p_c - p_y exceeds this"""
    proto_temp: float = 0.1
    """temperature T of the prototype softmax"""
    proto_momentum: float = 0.99
    """EMA momentum of the prototypes"""
    weight_momentum: float = 0.99
    """momentum of the candidate-weight update"""
    collapse_at: float = 0.985
    """a candidate set collapses to one-hot when its top weight exceeds this"""
    relabel_at: float = 0.996
    """... and relabels when the top weight, on another class, reaches this"""
    protect_neutral: bool = True
    """never relabel to or from neutral (the authors' behaviour)"""
    w_px: float = 0.0
    """weight of the partial-label loss on open candidate sets (the authors' is 0)"""
    negative: bool = True
    """lion: negative learning on low-confidence unlabeled samples"""
    progressive: bool = True
    """negative labels accumulate one per visit (False: every class below delta_neg, no memory)"""
    strong_negative: bool = True
    """lion: the strong-view negative loss L_sn"""
    delta_neg: float = 0.01
    """a class becomes complementary when its probability is at most this"""
    neg_w0: float = 0.24
    """lambda_n(e) = max(0, neg_w0 - neg_w_step * e)"""
    neg_w_step: float = 0.015
    """per-schedule-epoch decrease of lambda_n"""
    sn_ratio: float = 6.5
    """lambda_sn = lambda_n / sn_ratio"""
    quirks: str = ""
    """comma list of the released script's behaviours to reproduce: bank_all_classes, proto_softmax_all, open_only_in_relabel_epoch, bgr"""
    schedule_epochs: int = 30
    """the paper epochs that tau_e, lambda_n and E_r are written in; the run's epochs map onto them"""
    seed: int = 0
    """seed of initialisation, data order and augmentation"""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda"""
    bf16: bool = False
    """bf16 autocast (GPU only)"""
    channels_last: bool = False
    """channels-last memory format (GPU)"""
    workers: int = 4
    """data-loader worker processes (0: load in the main process)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    eval_batch_size: int = 256
    """test-time batch size"""
    history: bool = True
    """save per-epoch snapshots of candidate weights, bank and prototypes (history.npz)"""
    out: str = "runs/lion"
    """run directory"""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}; expected one of {METHODS}")
        bad = [q for q in self.quirk_list if q not in QUIRKS]
        if bad:
            raise ValueError(f"quirks {bad} unknown; expected some of {QUIRKS}")
        for f, lo in (("epochs", 1), ("iters", 1), ("batch_size", 1), ("unlabeled_batch_size", 1), ("image_size", 16)):
            if getattr(self, f) < lo:
                raise ValueError(f"{f}={getattr(self, f)}; expected at least {lo}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema={self.ema}; expected [0, 1)")

    @property
    def quirk_list(self) -> list[str]:
        return [q.strip() for q in self.quirks.split(",") if q.strip()]

    def schedule_epoch(self, epoch: int) -> float:
        """Run epoch (1-based) -> schedule epoch."""
        return epoch * self.schedule_epochs / self.epochs

    @property
    def relabel_run_epoch(self) -> int:
        """E_r in run epochs."""
        return max(1, math.ceil(self.relabel_epoch * self.epochs / self.schedule_epochs - 1e-9))


PRESETS = {
    "paper": {},  # the dataclass defaults are the paper's protocol (RAF-DB, 224 px, 30 x 800)
    # SynthFER at 64 px, 6 x 150 iterations (about 6 minutes of LION on 2 CPU cores). The EMA
    # decay keeps the paper's ratio of EMA time constant to run length roughly (4% -> 11%).
    # One loader worker: on 2 cores more workers steal time from the compute threads
    # (`python -m lion_kit bench speed` measures it).
    "cpu": dict(dataset="synthfer", image_size=64, crop_padding=2, epochs=6, iters=150, ema=0.99,
                workers=1, eval_batch_size=512),
    "smoke": dict(dataset="synthfer", synth_size="small", n_labeled=100, image_size=32, stem="imagenet",
                  crop_padding=1, epochs=2, iters=6, batch_size=8, unlabeled_batch_size=8, workers=0,
                  ema=0.9, eval_batch_size=200),
}


def field_docs() -> dict[str, str]:
    """Field name -> its one-line docstring (read from this file's source)."""
    tree = ast.parse(inspect.getsource(Config))
    body = tree.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = b.value.value
    return docs


def check_keys(d: dict, where: str):
    known = {f.name for f in dataclasses.fields(Config)}
    bad = sorted(set(d) - known)
    if bad:
        raise ValueError(f"{where}: unknown config key(s) {bad}; known keys: {sorted(known)}")


def resolve(preset: str | None = None, file: str | None = None, overrides: dict | None = None) -> Config:
    """Defaults < preset < config file < overrides (the command line)."""
    d: dict = {}
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        d.update(PRESETS[preset])
    if file:
        p = Path(file)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            fd = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {p} is not valid JSON: {e}") from e
        check_keys(fd, str(p))
        d.update(fd)
    if overrides:
        check_keys(overrides, "overrides")
        d.update(overrides)
    return Config(**d)
