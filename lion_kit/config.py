"""One configuration dataclass, its presets, and how they combine.

Precedence: command line > config file (JSON) > preset > dataclass defaults. The defaults are
the paper's constants (spec section 1); presets override a few fields; unknown keys are errors.
Schedules (tau_e, lambda_n, the relabel epoch) are written in *schedule epochs*: a run of
`epochs` epochs is mapped onto `schedule_epochs` of them, so a 6-epoch CPU run keeps the shape
of the paper's 30-epoch schedule (spec section 5; mapping.py computes them).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
from pathlib import Path

METHODS = ("supervised", "fixmatch", "lion")
RULES = ("intended", "script")  # lion_rules: the method as described (spec section 2) or as released (section 3)


def _interval(lo, hi, lo_open=False, hi_open=False):
    text = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    return ((lambda v: v > lo) if lo_open else (lambda v: v >= lo),
            (lambda v: v < hi) if hi_open else (lambda v: v <= hi), f"a value in {text}")


def _at_least(lo, what="a number"):
    return (lambda v: v >= lo), (lambda v: v < math.inf), f"{what} >= {lo}"


def _positive():
    return (lambda v: v > 0), (lambda v: v < math.inf), "a number > 0"


# the allowed range of every numeric field: checked before anything runs
RANGES = {
    **{f: _interval(0, 1) for f in ("tau_base", "tau_step", "fixmatch_tau", "delta_amb", "collapse_at", "relabel_at", "delta_neg")},
    **{f: _interval(0, 1, hi_open=True) for f in ("ema", "proto_momentum", "weight_momentum")},
    **{f: _positive() for f in ("lr", "proto_temp", "sn_ratio")},
    **{f: _at_least(0) for f in ("head_lr_scale", "weight_decay", "w_x", "w_u", "w_px", "neg_w0", "neg_w_step")},
    **{f: _at_least(1, "an integer") for f in ("epochs", "iters", "batch_size", "unlabeled_batch_size", "schedule_epochs",
                                                "relabel_epoch", "eval_batch_size")},
    **{f: _at_least(0, "an integer") for f in ("crop_padding", "workers", "threads", "unlabeled_pool", "split_seed",
                                                "synth_seed", "seed", "negatives_per_visit")},
    "tau_max": _interval(0, 1),
    "label_noise": _interval(0, 1, hi_open=True),
    "image_size": _at_least(16, "an integer"),
}


@dataclasses.dataclass
class Config:
    method: str = "lion"
    """supervised, fixmatch or lion"""
    dataset: str = "rafdb"
    """synthfer, rafdb, folder, fer2013, ferplus or affectnet"""
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
    counts: str = ""
    """explicit per-class label counts in canonical order, e.g. 15,10,15,15,15,15,15 (overrides n_labeled)"""
    split_seed: int = 5
    """seed of the per-class labeled draw (the paper's is 5)"""
    label_noise: float = 0.0
    """share of training labels replaced by another class, drawn uniformly (seeded by split_seed; test labels untouched)"""
    image_size: int = 224
    """network input side; SynthFER is also rendered at this size"""
    stem: str = "imagenet"
    """ResNet stem: imagenet (7x7/2 + max-pool) or small (3x3/1, no pool; for 32-64 px)"""
    pretrained: str | None = None
    """trunk weights: a local checkpoint (e.g. resnet18_msceleb.pth), synthfer-faces (the kit's identity-pretrained trunk) or none"""
    epochs: int = 30
    """training epochs"""
    iters: int = 800
    """iterations per epoch (an epoch is not a pass over the data)"""
    batch_size: int = 16
    """labeled batch size (per process)"""
    unlabeled_batch_size: int = 16
    """unlabeled batch size (per process)"""
    unlabeled_pool: int = 0
    """unlabeled faces used: a random subset (split_seed) of this many non-labeled train faces; 0 = all"""
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
    lion_rules: str = "intended"
    """lion's rules: intended (the method as described) or script (the authors' released main.py, differences 1-8 of docs/lion.md)"""
    bgr: bool = False
    """feed images as the released script does: BGR pixels normalised with RGB ImageNet statistics"""
    schedule_epochs: int = 30
    """the paper epochs that tau_e, lambda_n and E_r are written in; the run's epochs map onto them"""
    short_run: bool = False
    """map per-visit and per-step quantities (momenta, EMA, weight decay, negative labels per visit, head rate) so a short run keeps the paper's per-sample dynamics"""
    map_per_visit: bool = True
    """short_run: also map what acts per visit (candidate-weight and prototype momenta, negatives per visit); False maps only per-step quantities (EMA, decay, head rate), for runs that visit each face as often as the paper"""
    map_decay: bool = True
    """short_run: raise the per-step decay factor to the step ratio so the run's total shrink matches the paper's (False: the paper's per-step decay)"""
    negatives_per_visit: int = 0
    """complementary labels a face may gain per visit; 0: automatic (1; a short run: the visit ratio, capped so no set fills in one visit)"""
    head_lr_scale: float = 0.0
    """learning-rate multiplier of the classifier rows; 0: automatic (the step ratio with short_run, else 1)"""
    seed: int = 0
    """seed of initialisation, data order and augmentation"""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda"""
    bf16: bool = False
    """bf16 autocast: on CUDA, or on a CPU with native bf16 (AVX512-BF16 or AMX); refused on other CPUs"""
    channels_last: bool = False
    """channels-last memory format (CUDA or CPU)"""
    workers: int = 4
    """data-loader worker processes (0: load in the main process)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    eval_batch_size: int = 256
    """test-time batch size"""
    ambiguity_model: str = "train"
    """which model's probabilities the ambiguity test reads: train (the training forward, the paper) or ema (the EMA model in eval mode; not in the paper)"""
    reclose: bool = False
    """an open candidate set that is no longer ambiguous closes back to its label and rejoins L_x (not in the paper)"""
    tau_max: float = 0.0
    """upper bound of lion's tau_e, e.g. 0.95 (not in the paper); 0: no bound (tau_e passes 1.0 at epoch 20)"""
    history: bool = True
    """save per-epoch snapshots of candidate weights, bank and prototypes (history.npz)"""
    out: str = "runs/lion"
    """run directory"""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}; expected one of {METHODS}")
        if self.lion_rules not in RULES:
            raise ValueError(f"lion_rules={self.lion_rules!r}; expected one of {RULES}")
        if self.lion_rules == "script" and self.method != "lion":
            raise ValueError(f"lion_rules='script' is a rule set of method lion; method={self.method!r} trains with the kit's rules")
        if self.lion_rules == "script" and (self.reclose or not self.progressive):
            raise ValueError("reclose=True and progressive=False are variants of the intended rules; "
                             "lion_rules='script' has neither (its negatives share one bank row)")
        for f, (lo, hi, text) in RANGES.items():
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo(v) and hi(v)):
                raise ValueError(f"{f}={v!r}; expected {text}")
        if self.counts:
            parts = self.counts.split(",")
            if len(parts) != 7 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"counts={self.counts!r}; expected 7 non-negative integers in canonical class order, "
                                 "e.g. 15,10,15,15,15,15,15")
        if self.ambiguity_model not in ("train", "ema"):
            raise ValueError(f"ambiguity_model={self.ambiguity_model!r}; expected train or ema")
        if self.n_labeled == 0 or self.n_labeled < -1:
            raise ValueError(f"n_labeled={self.n_labeled}; expected a budget of splits/paper_counts.csv or -1 (all labels)")

    @classmethod
    def from_run(cls, d: dict) -> "Config":
        """The configuration a run's config.json (or checkpoint) recorded, read back."""
        return cls(**upgrade({k: v for k, v in d.items() if k != "derived"}, "a run's config"))


PRESETS = {
    "paper": {},  # the dataclass defaults are the paper's protocol (RAF-DB, 224 px, 30 x 800)
    # SynthFER at 64 px, 6 x 150 iterations (about 6 minutes of LION on 2 CPU cores). The EMA
    # decay keeps the paper's ratio of EMA time constant to run length roughly (4% -> 11%).
    # One loader worker: on 2 cores more workers steal time from the compute threads
    # (`python -m lion_kit bench speed` measures it).
    "cpu": dict(dataset="synthfer", image_size=64, crop_padding=2, epochs=6, iters=150, short_run=True,
                pretrained="synthfer-faces", unlabeled_pool=4000, workers=1, eval_batch_size=512),
    "smoke": dict(dataset="synthfer", synth_size="small", n_labeled=100, image_size=32, stem="imagenet",
                  crop_padding=1, epochs=2, iters=6, batch_size=8, unlabeled_batch_size=8, workers=0,
                  ema=0.9, eval_batch_size=200),
}
# `cpu` with 4x the iterations (50-80 minutes a FixMatch or LION run on one core): the shortest
# budget measured at which semi-supervision pays on SynthFER over three seeds (FixMatch over
# supervised; faithful LION does not: docs/experiments.md, section 4). Its cells are
# `results/synthfer-cpu-4x`.
PRESETS["cpu-long"] = {**PRESETS["cpu"], "iters": 600}
# The paper's visits per face on SynthFER (docs/lion.md, "A run shaped like the paper's"): the
# label budget and the unlabeled pool shrink instead of the iterations. 100 labels at 30 x 200
# iterations visit each labeled face 288 times before E_r and 960 in all, each of 3,000
# unlabeled faces 32 times: the paper's counts (RAF-DB, 400 labels, 30 x 800). E_r, tau_e and
# lambda_n sit at the paper's epochs; only per-step quantities (EMA, decay, head rate) are
# mapped, by the step ratio 4.
PRESETS["paper-visits"] = {**PRESETS["cpu"], "n_labeled": 100, "unlabeled_pool": 3000, "epochs": 30, "iters": 200,
                           "map_per_visit": False}


def field_docs() -> dict[str, str]:
    """Field name -> its one-line docstring (read from this file's source)."""
    tree = ast.parse(inspect.getsource(Config))
    body = tree.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = b.value.value
    return docs


def upgrade(d: dict, where: str) -> dict:
    """A configuration written before `quirks` became `lion_rules` and `bgr`: an empty `quirks`
    is dropped, `bgr` becomes its own switch; the partial script quirks have no equivalent."""
    if "quirks" not in d:
        return d
    d = dict(d)
    q = [x.strip() for x in d.pop("quirks").split(",") if x.strip()]
    if "bgr" in q:
        d["bgr"] = True
    rest = [x for x in q if x != "bgr"]
    if rest:
        raise ValueError(f"{where}: quirks {rest} are no longer offered one by one; the released script's rules are "
                         "lion_rules='script' (all of them, docs/lion.md), bgr is its own switch")
    return d


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
        fd.pop("derived", None)  # a run's config.json: what it derived is recomputed, never read back
        fd = upgrade(fd, str(p))
        check_keys(fd, str(p))
        d.update(fd)
    if overrides:
        overrides = upgrade(overrides, "overrides")
        check_keys(overrides, "overrides")
        d.update(overrides)
    if preset == "paper" and d.get("pretrained") is None:
        raise ValueError(
            "--preset paper needs --pretrained: the paper's protocol starts from a face-recognition trunk. "
            "Accepted: a checkpoint file (the MS-Celeb-1M resnet18_msceleb.pth; README, 'Pretrained trunks', "
            "says where it comes from), imagenet, synthfer-faces, or none to start from random weights on purpose")
    return Config(**d)


def parse_set(pairs) -> dict:
    """`--set KEY=VALUE` options as overrides (VALUE read as JSON when it parses, else text);
    the keys are checked where the overrides are resolved."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ValueError(f"--set {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out
