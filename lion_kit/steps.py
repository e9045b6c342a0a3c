"""One training iteration per method: the losses of ../shared/LION_SPEC.md section 2.

Each step takes the run (`t`: config, network, per-sample state, process group), a batch already
on the device and the epoch, and returns the total loss and the iteration's statistics. What
every method shares (optimiser step, weight decay, EMA, BN averaging) is in `train.Trainer`.
Read `lion_step` beside the paper: forward passes -> disambiguation of labeled faces ->
prototypes -> pseudo-labels -> progressive negatives -> the total loss.
"""
from __future__ import annotations

import dataclasses

import torch

from . import losses as L
from . import script_rules
from .labels import NEUTRAL


@dataclasses.dataclass
class Batch:
    """Labeled images and their positions in the labeled set; unlabeled weak and strong views
    and their positions in the unlabeled set (None for `supervised`)."""

    x: torch.Tensor
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


def supervised_step(t, b: Batch, epoch: int, it: int):
    """L = w_x * CE on the labeled batch."""
    logits_x, _ = t.net(b.x)
    L_x = L.labeled_loss(logits_x.float(), t.state.labels[b.ix], torch.ones_like(b.ix, dtype=torch.bool))
    loss = t.cfg.w_x * L_x
    return loss, _stats(loss, L_x.new_zeros(()), loss_x=L_x)


def fixmatch_step(t, b: Batch, epoch: int, it: int):
    """L = w_x * L_x + w_u * L_u with FixMatch's fixed threshold (no disambiguation, no negatives)."""
    cfg = t.cfg
    logits_u, _ = t.net(b.uw)
    logits_x, _ = t.net(b.x)
    logits_s, _ = t.net(b.us)
    L_x = L.labeled_loss(logits_x.float(), t.state.labels[b.ix], torch.ones_like(b.ix, dtype=torch.bool))
    p_u = logits_u.float().softmax(1).detach()
    L_u, mask, pseudo = L.pseudo_label_loss(logits_s.float(), p_u, cfg.fixmatch_tau)
    loss = cfg.w_x * L_x + cfg.w_u * L_u
    return loss, _stats(loss, L_x.new_zeros(()), loss_x=L_x, loss_u=L_u, mask_rate=mask.float().mean(),
                        unlabeled_top_prob=p_u.max(1).values.mean(), pseudo_right=_right(t, b, mask, pseudo))


def lion_step(t, b: Batch, epoch: int, it: int):
    """One LION iteration (spec 2.1-2.5): the forward passes, then `lion_losses`."""
    # forward passes, separately: BN statistics per sub-batch, as the authors do
    logits_u, f_u = t.net(b.uw)
    logits_x, f_x = t.net(b.x)
    logits_s, _ = t.net(b.us)
    p_amb = None
    if t.cfg.ambiguity_model == "ema" and t.cfg.disambiguation and epoch >= t.map.relabel_run_epoch:
        with torch.no_grad():  # not in the paper: the evaluated model, no dropout
            p_amb = t.ema.module(b.x)[0].float().softmax(1)
    return lion_losses(t, b, epoch, it, logits_x.float(), f_x, logits_u.float(), f_u, logits_s.float(), p_amb)


def lion_losses(t, b: Batch, epoch: int, it: int, logits_x, f_x, logits_u, f_u, logits_s, p_amb=None):
    """LION's bookkeeping and losses from one iteration's outputs, under the run's rules
    (`cfg.lion_rules`: intended, spec section 2, or the released script's, script_rules.py)."""
    cfg, st, g = t.cfg, t.state, t.group
    script = cfg.lion_rules == "script"
    e = cfg.schedule_epoch(epoch)
    zero = torch.zeros((), device=b.x.device)
    p_x, p_u = logits_x.detach().softmax(1), logits_u.softmax(1)
    f_x, f_u = f_x.detach().float(), f_u.detach().float()

    # label disambiguation of labeled faces (2.2), from the relabel epoch E_r
    y = st.labels[b.ix]
    closed = torch.ones_like(y, dtype=torch.bool)        # in L_x: one-hot candidate weights
    ambiguous = torch.zeros_like(closed)
    L_px = zero
    disambiguating = cfg.disambiguation and epoch >= t.map.relabel_run_epoch
    if disambiguating:
        every = g.gather(ix=b.ix, p=p_x if p_amb is None else p_amb, f=f_x)  # every rank applies every rank's visits
        if script:
            d = st.disambiguate_as_script(every.ix, every.p, every.f, it, script_params(cfg, t.map),
                                          epoch == t.map.relabel_run_epoch)
        else:
            d = st.disambiguate(every.ix, every.p, every.f, it, L.LionParams.from_config(cfg, t.map.weight_momentum, NEUTRAL))
        n = len(b.ix)
        y, closed, ambiguous = g.own(d["labels"], n), g.own(d["closed"], n), g.own(d["ambiguous"], n)
        L_px = L.partial_label_loss(logits_x, g.own(d["weights"], n).to(logits_x.dtype), ~closed)
    L_x = L.labeled_loss(logits_x, y, closed)

    # class prototypes (2.1) from labeled faces: predicted right before E_r, clear from E_r on
    use = ~ambiguous if disambiguating else p_x.argmax(1) == y
    lab = g.gather(f=f_x, y=y, use=use)
    st.update_prototypes(lab.f, lab.y, lab.use, running=epoch in (1, t.map.relabel_run_epoch),
                         momentum=t.map.proto_momentum)

    # pseudo-labels on confident unlabeled faces (2.3); they also move the prototypes
    tau = cfg.tau(e)
    L_u, confident, pseudo = L.pseudo_label_loss(logits_s, p_u.detach(), tau)
    unl = g.gather(f=f_u, y=pseudo, use=confident, iu=b.iu, p=p_u.detach())
    st.update_prototypes(unl.f, unl.y, unl.use, running=epoch == 1, momentum=t.map.proto_momentum)

    # progressive negative learning on low-confidence unlabeled faces (2.4)
    low = ~confident
    L_n = L_sn = zero
    lam_n = L.negative_weight(e, cfg.neg_w0, cfg.neg_w_step) if cfg.negative else 0.0
    if cfg.negative and script:  # one shared bank row; L_sn on the strong view of position 1
        rows, shared, any_low = script_rules.negatives(st.bank, unl.iu, unl.p, ~unl.use, cfg.delta_neg, t.map.max_negatives)
        L_n = script_rules.negative_loss(p_u, g.own(rows, len(b.iu)), low)
        if cfg.strong_negative and g.rank == 0:  # position 1 is rank 0's; x world: DDP averages the ranks
            L_sn = script_rules.strong_negative_loss(logits_s[1], shared) * any_low * g.world
    elif cfg.negative:
        if cfg.progressive:
            bank = st.grow_bank(unl.iu, unl.p, ~unl.use, cfg.delta_neg, t.map.max_negatives, t.map.negatives_per_visit)
            neg = g.own(bank, len(b.iu)) & low[:, None]
        else:
            neg = L.LionState.instant_negatives(p_u, low, cfg.delta_neg)
        L_n = L.negative_loss(p_u, neg, low)
        if cfg.strong_negative:
            L_sn = L.strong_negative_loss(logits_s, neg, low)

    # the total (2.5)
    loss = cfg.w_x * L_x + cfg.w_u * L_u + lam_n * L_n + lam_n / cfg.sn_ratio * L_sn + cfg.w_px * L_px
    return loss, _stats(loss, zero, loss_x=L_x, loss_u=L_u, loss_n=L_n, loss_sn=L_sn, loss_px=L_px,
                        mask_rate=confident.float().mean(), ambiguous_rate=ambiguous.float().mean(),
                        unlabeled_top_prob=p_u.detach().max(1).values.mean(),
                        pseudo_right=_right(t, b, confident, pseudo))


def script_params(cfg, mapping) -> script_rules.ScriptParams:
    """The script's disambiguation constants: the config's thresholds, the run's momentum."""
    return script_rules.ScriptParams(delta_amb=cfg.delta_amb, proto_temp=cfg.proto_temp,
                                     weight_momentum=mapping.weight_momentum, collapse_at=cfg.collapse_at,
                                     relabel_at=cfg.relabel_at, protect_neutral=cfg.protect_neutral, neutral=NEUTRAL)


def _right(t, b: Batch, confident, pseudo):
    """Confident pseudo-labels that hit the face's true class, as a share of the batch (divided
    by the mask rate per epoch: the pseudo-labels' precision). Zero where no truth is known."""
    if t.unl_true is None:  # no truth (real data)
        return confident.new_zeros((), dtype=torch.float32)
    return (confident & (pseudo == t.unl_true[b.iu])).float().mean()


STEPS = {"supervised": supervised_step, "fixmatch": fixmatch_step, "lion": lion_step}
