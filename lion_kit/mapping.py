"""The short-run mapping: what a run that is R times shorter than the paper's does per visit and
per step so that, over the run, each mechanism moves as far as the paper's (docs/lion.md, "Short
runs"). Computed once per run (`RunMapping.of`), recorded in config.json's "derived", and read by
the trainer, the step and every reader; the paper's numbers come from the `Config` defaults.

A constant applied per visit or per step with momentum m is applied R times more often in the
paper than here, so m -> m**R keeps its effect per unit of training.
"""
from __future__ import annotations

import dataclasses

from .config import Config
from .labels import NUM_CLASSES, RAFDB_TRAIN_COUNTS

PAPER = Config()  # the paper's protocol: the dataclass defaults
PAPER_UNLABELED = sum(RAFDB_TRAIN_COUNTS) - PAPER.n_labeled  # RAF-DB faces left unlabeled at 400 labels


# ----------------------------------------------------------------------------- schedules

def schedule_epoch(cfg: Config, epoch: int) -> float:
    """Run epoch (1-based) -> schedule epoch: the mean paper epoch of the block the run epoch
    stands for. With k = schedule_epochs / epochs the block is paper epochs
    (epoch-1)k+1 .. epoch*k, whose mean is epoch*k - (k-1)/2; k = 1 gives the paper's own e.
    (Evaluating at the block's end would bias every short-run epoch late.)"""
    k = cfg.schedule_epochs / cfg.epochs
    return epoch * k - (k - 1) / 2


def tau(cfg: Config, e_sched: float) -> float:
    """lion's confidence threshold tau_e = 0.8 + 0.01 e at a schedule epoch. It reaches 1.0 at
    epoch 20 and exceeds it later, so from then on practically no unlabeled face counts as
    confident: the paper's schedule, reproduced (tau_max bounds it, when set; not in the paper)."""
    t = cfg.tau_base + cfg.tau_step * e_sched
    return min(t, cfg.tau_max) if cfg.tau_max else t


def negative_weight(e_sched: float, w0: float = Config.neg_w0, step: float = Config.neg_w_step) -> float:
    """lambda_n(e) = max(0, 0.24 - 0.015 e): negative learning fades out by epoch 16."""
    return max(0.0, w0 - step * e_sched)


def relabel_run_epoch(cfg: Config) -> int:
    """E_r in run epochs: the first run epoch whose block mean (`schedule_epoch`) reaches E_r,
    the rule tau_e and lambda_n follow, so disambiguation covers the paper's share of training
    (the first epoch whose block merely contains E_r would start it early: 5 of 6 epochs against
    the paper's 21 of 30). At least the last epoch, so a set E_r always runs."""
    on = [e for e in range(1, cfg.epochs + 1) if schedule_epoch(cfg, e) >= cfg.relabel_epoch - 1e-9]
    return on[0] if on else cfg.epochs


@dataclasses.dataclass(frozen=True)
class EpochSchedule:
    """What LION's schedules say for one run epoch (`RunMapping.at`)."""

    epoch: int
    tau: float
    """tau_e: the pseudo-label threshold"""
    lambda_n: float
    """the weight of L_n (L_sn gets lambda_n / sn_ratio)"""
    disambiguating: bool
    """from E_r on"""
    relabel_epoch: bool
    """this epoch is E_r: the script's sets open, labeled prototypes are a running mean"""
    running_mean: bool
    """epoch 1 and E_r start the prototypes' running means afresh"""


# ----------------------------------------------------------------------------- the mapping

def step_ratio(cfg: Config) -> float:
    """Paper iterations / this run's iterations (over the whole schedule)."""
    return cfg.schedule_epochs * PAPER.iters / (cfg.epochs * cfg.iters)


def visit_ratio(cfg: Config) -> float:
    """Paper draws of labeled faces / this run's: how many paper visits one visit stands for
    (the label budget is the same in both, so it cancels)."""
    return step_ratio(cfg) * PAPER.batch_size / cfg.batch_size


def unlabeled_visit_ratio(cfg: Config, n_unlabeled: int) -> float:
    """Visits per unlabeled face in the paper (RAF-DB, 400 labels) / in this run."""
    paper = cfg.schedule_epochs * PAPER.iters * PAPER.unlabeled_batch_size / PAPER_UNLABELED
    run = cfg.epochs * cfg.iters * cfg.unlabeled_batch_size / max(n_unlabeled, 1)
    return paper / run


def visits(cfg: Config, n_labeled: int, n_unlabeled: int) -> dict:
    """How often a run visits each face, beside the paper's (RAF-DB, 400 labels: 288 labeled
    visits before E_r, 960 in all, 32.3 per unlabeled face). What the per-visit rules do depends
    on these counts, which no per-visit mapping can stand in for: how well the labeled set is
    fit when disambiguation starts is set by the visits before E_r."""
    before = relabel_run_epoch(cfg) - 1
    lab = lambda c, n, e: e * c.iters * c.batch_size / max(n, 1)  # noqa: E731
    return {"labeled_before_er": lab(cfg, n_labeled, before), "labeled": lab(cfg, n_labeled, cfg.epochs),
            "unlabeled": cfg.epochs * cfg.iters * cfg.unlabeled_batch_size / max(n_unlabeled, 1),
            "paper_labeled_before_er": lab(PAPER, PAPER.n_labeled, relabel_run_epoch(PAPER) - 1),
            "paper_labeled": lab(PAPER, PAPER.n_labeled, PAPER.epochs),
            "paper_unlabeled": PAPER.epochs * PAPER.iters * PAPER.unlabeled_batch_size / PAPER_UNLABELED}


def negatives_per_visit(cfg: Config, n_unlabeled: int, num_classes: int = NUM_CLASSES) -> int:
    """Complementary labels a low-confidence face may gain per visit: 1 in the paper; a short
    run that visits each face R_u times less often lets each visit stand for R_u, capped at
    (K - 1) // 2 = 3 so that no set fills in one visit and negative learning stays progressive
    (uncapped, the `cpu` preset's R_u = 9 would fill all six at once)."""
    if cfg.negatives_per_visit:
        return cfg.negatives_per_visit
    if not (cfg.short_run and cfg.map_per_visit):
        return 1
    return max(1, min((num_classes - 1) // 2, round(unlabeled_visit_ratio(cfg, n_unlabeled))))


@dataclasses.dataclass(frozen=True)
class RunMapping:
    """The per-visit and per-step constants a run trains with (the paper's when not `short_run`)."""

    weight_momentum: float
    """candidate-weight momentum per visit"""
    proto_momentum: float
    """prototype momentum per update"""
    ema: float
    """EMA decay per step"""
    decay_factor: float
    """what every float entry of the model is multiplied by after each step"""
    head_lr_scale: float
    """learning-rate multiplier of the classifier rows"""
    negatives_per_visit: int
    """complementary labels a face may gain per visit"""
    max_negatives: int
    """the largest complementary set (K - 1; K under the script's rules)"""
    relabel_run_epoch: int
    """E_r in run epochs"""
    schedule_epoch: tuple
    """the paper epoch each run epoch stands for (its block's mean)"""
    tau: tuple
    """tau_e of each run epoch, at its schedule epoch"""
    lambda_n: tuple
    """lambda_n of each run epoch, at its schedule epoch"""

    @classmethod
    def of(cls, cfg: Config, n_unlabeled: int, num_classes: int = NUM_CLASSES) -> "RunMapping":
        short, R = cfg.short_run, step_ratio(cfg)
        e_s = [schedule_epoch(cfg, e) for e in range(1, cfg.epochs + 1)]
        per_visit = short and cfg.map_per_visit
        paper_decay = 1 - cfg.weight_decay * cfg.lr
        return cls(
            weight_momentum=cfg.weight_momentum ** visit_ratio(cfg) if per_visit else cfg.weight_momentum,
            proto_momentum=cfg.proto_momentum ** visit_ratio(cfg) if per_visit else cfg.proto_momentum,
            ema=cfg.ema ** R if short else cfg.ema,
            # over the paper's 24,000 steps the decay shrinks the model x0.79; raised to R, a short
            # run's steps shrink it as much (classifier rows included: their faster learning rate
            # does not change their decay, as in the paper)
            decay_factor=paper_decay ** R if short and cfg.map_decay else paper_decay,
            # the L2-normalised head's logits are bounded by its row norms, which grow with rate x steps
            head_lr_scale=cfg.head_lr_scale or (R if short else 1.0),
            negatives_per_visit=negatives_per_visit(cfg, n_unlabeled, num_classes),
            max_negatives=num_classes if cfg.lion_rules == "script" else num_classes - 1,
            relabel_run_epoch=relabel_run_epoch(cfg), schedule_epoch=tuple(e_s),
            tau=tuple(tau(cfg, e) for e in e_s), lambda_n=tuple(negative_weight(e, cfg.neg_w0, cfg.neg_w_step) for e in e_s))

    def at(self, epoch: int) -> EpochSchedule:
        """The schedules at run epoch `epoch` (1-based)."""
        er = self.relabel_run_epoch
        return EpochSchedule(epoch=epoch, tau=self.tau[epoch - 1], lambda_n=self.lambda_n[epoch - 1],
                             disambiguating=epoch >= er, relabel_epoch=epoch == er, running_mean=epoch in (1, er))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("schedule_epoch", "tau", "lambda_n"):
            d[k] = list(d[k])
        return d
