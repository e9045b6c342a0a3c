"""The methods: `Supervised`, `FixMatch` and `Lion`, each a small class built once per run.

A method takes what it trains with from the config and the run's mapping when it is built (the
mapped values where the run maps them; it keeps no `Config`), owns its per-sample state, and
offers `begin_epoch`, `step`, its own columns of metrics.jsonl, a history snapshot, and
`state_dict()` / `load_state_dict()`. What every method shares (the loop, optimiser, decay, EMA,
evaluation, checkpoints) is in `train.Trainer`, which never asks which method it runs. Read
`Lion.losses` beside the paper: disambiguation of labeled faces -> prototypes -> pseudo-labels
-> progressive negatives -> the total loss (../shared/LION_SPEC.md section 2).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import losses as L
from . import script_rules
from .labels import NEUTRAL, NUM_CLASSES
from .mapping import RunMapping
from .metrics import fixed_labels_report, state_report
from .state import LionParams, LionState


@dataclasses.dataclass
class Batch:
    """Labeled images, their labels and positions in the labeled set; unlabeled weak and strong
    views and their positions in the unlabeled set (None for `supervised`)."""

    x: torch.Tensor
    y: torch.Tensor
    ix: torch.Tensor
    uw: torch.Tensor | None = None
    us: torch.Tensor | None = None
    iu: torch.Tensor | None = None


@dataclasses.dataclass
class StepStats:
    """Per-iteration statistics (0 where a method has no such term); averaged per epoch."""

    loss: torch.Tensor
    loss_x: torch.Tensor
    loss_u: torch.Tensor
    loss_n: torch.Tensor
    loss_sn: torch.Tensor
    loss_px: torch.Tensor
    mask_rate: torch.Tensor
    ambiguous_rate: torch.Tensor
    unlabeled_top_prob: torch.Tensor
    pseudo_right: torch.Tensor  # share of the unlabeled batch confident AND right (true class known)

    def stack(self) -> torch.Tensor:
        return torch.stack([getattr(self, f) for f in STATS]).detach()


STATS = tuple(f.name for f in dataclasses.fields(StepStats))
LOSS_TERMS = ("loss", "loss_x", "loss_u", "loss_n", "loss_sn", "loss_px")


def _stats(loss, zero, **kw) -> StepStats:
    return StepStats(loss=loss, **{f: kw.get(f, zero) for f in STATS if f != "loss"})


@dataclasses.dataclass
class RunContext:
    """What a method needs from the run besides the config: the labeled faces' given labels, the
    size of the unlabeled set, the true classes where known (SynthFER, FERPlus), the process
    group, the device and the EMA model."""

    labels: list
    n_unlabeled: int
    lab_true: torch.Tensor | None
    unl_true: torch.Tensor | None
    group: object
    device: torch.device
    ema: object = None


class Supervised:
    """L = w_x * CE on the labeled batch, with the batch's own labels."""

    uses_unlabeled = False
    ema_before_decay = False

    def __init__(self, cfg, mapping: RunMapping, ctx: RunContext):
        self.w_x = cfg.w_x
        self.mapping, self.ctx = mapping, ctx
        self.given = torch.as_tensor(ctx.labels, dtype=torch.long)
        self.schedule = mapping.at(1)

    @staticmethod
    def labeled_padding(cfg) -> str:
        """How the labeled weak view pads its random crop."""
        return "reflect"

    def begin_epoch(self, epoch: int, fresh: bool = True):
        """Set the epoch's schedules; `fresh`: the epoch starts now (not a resume in its middle)."""
        self.schedule = self.mapping.at(epoch)

    def step(self, net, b: Batch, it: int):
        logits_x, _ = net(b.x)
        L_x = L.labeled_loss(logits_x.float(), b.y, torch.ones_like(b.y, dtype=torch.bool))
        loss = self.w_x * L_x
        return loss, _stats(loss, L_x.new_zeros(()), loss_x=L_x)

    def schedule_row(self) -> dict:
        """metrics.jsonl's schedule columns (a method without a threshold of its own reports the paper's tau_e)."""
        return {"tau": self.schedule.tau, "lambda_n": 0.0}

    def state_row(self) -> dict:
        """metrics.jsonl's per-sample columns: labels never change, no candidate sets, no bank."""
        return fixed_labels_report(self.given, self.ctx.lab_true, self.ctx.n_unlabeled, NUM_CLASSES)

    def snapshot(self) -> dict | None:
        return None

    @property
    def relabels(self) -> list:
        return []

    def fingerprint(self) -> list:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict):
        pass


class FixMatch(Supervised):
    """L = w_x * L_x + w_u * L_u with FixMatch's fixed threshold (no disambiguation, no negatives)."""

    uses_unlabeled = True

    def __init__(self, cfg, mapping: RunMapping, ctx: RunContext):
        super().__init__(cfg, mapping, ctx)
        self.w_u, self.tau = cfg.w_u, cfg.fixmatch_tau

    def step(self, net, b: Batch, it: int):
        logits_u, _ = net(b.uw)
        logits_x, _ = net(b.x)
        logits_s, _ = net(b.us)
        L_x = L.labeled_loss(logits_x.float(), b.y, torch.ones_like(b.y, dtype=torch.bool))
        p_u = logits_u.float().softmax(1).detach()
        L_u, mask, pseudo = L.pseudo_label_loss(logits_s.float(), p_u, self.tau)
        loss = self.w_x * L_x + self.w_u * L_u
        return loss, _stats(loss, L_x.new_zeros(()), loss_x=L_x, loss_u=L_u, mask_rate=mask.float().mean(),
                            unlabeled_top_prob=p_u.max(1).values.mean(), pseudo_right=_right(self.ctx.unl_true, b, mask, pseudo))

    def schedule_row(self) -> dict:
        return {"tau": self.tau, "lambda_n": 0.0}


class Lion(FixMatch):
    """LION (spec 2.1-2.5) under the run's rules: intended (spec section 2, `state.LionState`) or
    the released script's (`script_rules`, `lion_rules="script"`)."""

    def __init__(self, cfg, mapping: RunMapping, ctx: RunContext):
        super().__init__(cfg, mapping, ctx)
        self.script = cfg.lion_rules == "script"
        self.ema_before_decay = self.script  # the script averages the weights before their decay
        self.w_px, self.sn_ratio, self.delta_neg = cfg.w_px, cfg.sn_ratio, cfg.delta_neg
        self.disambiguation, self.ambiguity_from_ema = cfg.disambiguation, cfg.ambiguity_model == "ema"
        self.negative, self.progressive, self.strong_negative = cfg.negative, cfg.progressive, cfg.strong_negative
        self.max_negatives, self.negatives_per_visit = mapping.max_negatives, mapping.negatives_per_visit
        self.proto_momentum = mapping.proto_momentum
        common = dict(delta_amb=cfg.delta_amb, proto_temp=cfg.proto_temp, weight_momentum=mapping.weight_momentum,
                      collapse_at=cfg.collapse_at, relabel_at=cfg.relabel_at, protect_neutral=cfg.protect_neutral,
                      neutral=NEUTRAL)
        self.params = script_rules.ScriptParams(**common) if self.script else LionParams(**common, reclose=cfg.reclose)
        self.state = LionState(ctx.labels, ctx.n_unlabeled, NUM_CLASSES, 512, ctx.device,
                               script_rules.WEIGHTS_DTYPE if self.script else torch.float32)

    @staticmethod
    def labeled_padding(cfg) -> str:
        return "constant" if cfg.lion_rules == "script" else "reflect"  # the script pads with zeros

    def begin_epoch(self, epoch: int, fresh: bool = True):
        super().begin_epoch(epoch, fresh)
        if fresh and self.schedule.running_mean:
            self.state.reset_running_mean()

    def step(self, net, b: Batch, it: int):
        """The forward passes, separately (BN statistics per sub-batch, as the authors do), then `losses`."""
        logits_u, f_u = net(b.uw)
        logits_x, f_x = net(b.x)
        logits_s, _ = net(b.us)
        p_amb = None
        if self.ambiguity_from_ema and self.disambiguation and self.schedule.disambiguating:
            with torch.no_grad():  # not in the paper: the evaluated model, no dropout
                p_amb = self.ctx.ema.module(b.x)[0].float().softmax(1)
        return self.losses(b, it, logits_x.float(), f_x, logits_u.float(), f_u, logits_s.float(), p_amb)

    def losses(self, b: Batch, it: int, logits_x, f_x, logits_u, f_u, logits_s, p_amb=None):
        """LION's bookkeeping and losses from one iteration's outputs."""
        st, g, s = self.state, self.ctx.group, self.schedule
        zero = torch.zeros((), device=b.x.device)
        p_x, p_u = logits_x.detach().softmax(1), logits_u.softmax(1)
        f_x, f_u = f_x.detach().float(), f_u.detach().float()

        # label disambiguation of labeled faces (2.2), from the relabel epoch E_r
        y = st.labels[b.ix]
        closed = torch.ones_like(y, dtype=torch.bool)        # in L_x: one-hot candidate weights
        ambiguous = torch.zeros_like(closed)
        L_px = zero
        disambiguating = self.disambiguation and s.disambiguating
        if disambiguating:
            every = g.gather(ix=b.ix, p=p_x if p_amb is None else p_amb, f=f_x)  # every rank applies every rank's visits
            if self.script:
                d = st.disambiguate_as_script(every.ix, every.p, every.f, it, self.params, s.relabel_epoch)
            else:
                d = st.disambiguate(every.ix, every.p, every.f, it, self.params)
            n = len(b.ix)
            y, closed, ambiguous = g.own(d["labels"], n), g.own(d["closed"], n), g.own(d["ambiguous"], n)
            L_px = L.partial_label_loss(logits_x, g.own(d["weights"], n).to(logits_x.dtype), ~closed)
        L_x = L.labeled_loss(logits_x, y, closed)

        # class prototypes (2.1) from labeled faces: predicted right before E_r, clear from E_r on
        use = ~ambiguous if disambiguating else p_x.argmax(1) == y
        lab = g.gather(f=f_x, y=y, use=use)
        st.update_prototypes(lab.f, lab.y, lab.use, running=s.running_mean, momentum=self.proto_momentum)

        # pseudo-labels on confident unlabeled faces (2.3); they also move the prototypes
        L_u, confident, pseudo = L.pseudo_label_loss(logits_s, p_u.detach(), s.tau)
        unl = g.gather(f=f_u, y=pseudo, use=confident, iu=b.iu, p=p_u.detach())
        st.update_prototypes(unl.f, unl.y, unl.use, running=s.epoch == 1, momentum=self.proto_momentum)

        # progressive negative learning on low-confidence unlabeled faces (2.4)
        low = ~confident
        L_n = L_sn = zero
        lam_n = s.lambda_n if self.negative else 0.0
        if self.negative and self.script:  # one shared bank row; L_sn on the strong view of position 1
            rows, shared, any_low = script_rules.negatives(st.bank, unl.iu, unl.p, ~unl.use, self.delta_neg, self.max_negatives)
            L_n = script_rules.negative_loss(p_u, g.own(rows, len(b.iu)), low)
            if self.strong_negative and g.rank == 0:  # position 1 is rank 0's; x world: DDP averages the ranks
                L_sn = script_rules.strong_negative_loss(logits_s[1], shared) * any_low * g.world
        elif self.negative:
            if self.progressive:
                bank = st.grow_bank(unl.iu, unl.p, ~unl.use, self.delta_neg, self.max_negatives, self.negatives_per_visit)
                neg = g.own(bank, len(b.iu)) & low[:, None]
            else:
                neg = LionState.instant_negatives(p_u, low, self.delta_neg)
            L_n = L.negative_loss(p_u, neg, low)
            if self.strong_negative:
                L_sn = L.strong_negative_loss(logits_s, neg, low)

        # the total (2.5)
        loss = self.w_x * L_x + self.w_u * L_u + lam_n * L_n + lam_n / self.sn_ratio * L_sn + self.w_px * L_px
        return loss, _stats(loss, zero, loss_x=L_x, loss_u=L_u, loss_n=L_n, loss_sn=L_sn, loss_px=L_px,
                            mask_rate=confident.float().mean(), ambiguous_rate=ambiguous.float().mean(),
                            unlabeled_top_prob=p_u.detach().max(1).values.mean(),
                            pseudo_right=_right(self.ctx.unl_true, b, confident, pseudo))

    def schedule_row(self) -> dict:
        return {"tau": self.schedule.tau, "lambda_n": self.schedule.lambda_n if self.negative else 0.0}

    def state_row(self) -> dict:
        return state_report(self.state, self.ctx.lab_true, self.ctx.unl_true)

    def snapshot(self) -> dict:
        """The per-sample state at the end of an epoch, for history.npz."""
        st = self.state
        return {"weights": st.weights.half().cpu().numpy(), "labels": st.labels.cpu().numpy().astype(np.int8),
                "bank": st.bank.cpu().numpy().copy(), "protos": st.protos.cpu().numpy().copy()}  # .cpu() aliases on CPU

    @property
    def relabels(self) -> list:
        return self.state.flush_events()

    def fingerprint(self) -> list:
        st = self.state
        return [st.bank.double().sum(), st.weights.double().sum(), st.labels.double().sum(), st.protos.double().sum()]

    def state_dict(self) -> dict:
        return self.state.state_dict()

    def load_state_dict(self, sd: dict):
        self.state.load_state_dict(sd)


def _right(unl_true, b: Batch, confident, pseudo):
    """Confident pseudo-labels that hit the face's true class, as a share of the batch (divided
    by the mask rate per epoch: the pseudo-labels' precision). Zero where no truth is known."""
    if unl_true is None:  # no truth (real data)
        return confident.new_zeros((), dtype=torch.float32)
    return (confident & (pseudo == unl_true[b.iu])).float().mean()


METHODS = {"supervised": Supervised, "fixmatch": FixMatch, "lion": Lion}


def build(cfg, mapping: RunMapping, ctx: RunContext):
    """The run's method, built once."""
    return METHODS[cfg.method](cfg, mapping, ctx)
