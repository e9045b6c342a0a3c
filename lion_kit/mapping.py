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
    before = cfg.relabel_run_epoch - 1
    lab = lambda c, n, e: e * c.iters * c.batch_size / max(n, 1)  # noqa: E731
    return {"labeled_before_er": lab(cfg, n_labeled, before), "labeled": lab(cfg, n_labeled, cfg.epochs),
            "unlabeled": cfg.epochs * cfg.iters * cfg.unlabeled_batch_size / max(n_unlabeled, 1),
            "paper_labeled_before_er": lab(PAPER, PAPER.n_labeled, PAPER.relabel_run_epoch - 1),
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

    @classmethod
    def of(cls, cfg: Config, n_unlabeled: int, num_classes: int = NUM_CLASSES) -> "RunMapping":
        short, R = cfg.short_run, step_ratio(cfg)
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
            relabel_run_epoch=cfg.relabel_run_epoch,
            schedule_epoch=tuple(cfg.schedule_epoch(e) for e in range(1, cfg.epochs + 1)))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["schedule_epoch"] = list(self.schedule_epoch)
        return d
