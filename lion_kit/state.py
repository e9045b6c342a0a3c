"""LION's per-sample state (spec: ../shared/LION_SPEC.md section 2): candidate weights of labeled
faces, the complementary-label bank of unlabeled faces, class prototypes. It lives in one object,
:class:`LionState`, with ``state_dict()`` / ``load_state_dict()``, like FlexMatch's
``selected_label`` in USB. Everything here is batched tensor code: no Python loop over the
samples of a batch and no ``.item()``, so the bookkeeping costs no device syncs.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .config import Config
from .labels import NEUTRAL


@dataclasses.dataclass(frozen=True)
class LionParams:
    """The constants LionState's update rules read, for one epoch. The defaults are the paper's,
    read from `Config` (their one source); a run's `methods.Lion` builds them from the config and
    the mapping (`weight_momentum` is the mapped one)."""

    delta_amb: float = Config.delta_amb
    """a labeled face is ambiguous when max_c p_c - p_y exceeds this"""
    proto_temp: float = Config.proto_temp
    """temperature of the prototype softmax"""
    weight_momentum: float = Config.weight_momentum
    """candidate-weight momentum per visit (mapped in a short run)"""
    collapse_at: float = Config.collapse_at
    """an open set collapses to one-hot above this top weight"""
    relabel_at: float = Config.relabel_at
    """... and relabels at or above this, on another class"""
    protect_neutral: bool = Config.protect_neutral
    """never relabel to or from neutral"""
    neutral: int = NEUTRAL
    """index of neutral"""
    reclose: bool = Config.reclose
    """an open set no longer ambiguous closes back to its label (not in the paper)"""


class LionState:
    """Per-sample state of a LION run.

    labels   (n_l,)      current training label of each labeled face (starts as given)
    given    (n_l,)      the given (observed) label
    weights  (n_l, K)    candidate weights; the candidate set is their support
    bank     (n_u, K)    complementary ("negative") labels of each unlabeled face
    protos   (K, D)      class prototypes; count (K,) for running means
    """

    def __init__(self, labels, n_unlabeled: int, num_classes: int = 7, dim: int = 512, device="cpu",
                 weights_dtype=torch.float32):
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.K = num_classes
        self.labels, self.given = labels.clone(), labels.clone()
        self.weights = F.one_hot(labels, num_classes).to(weights_dtype)  # float64 under the script's rules
        self.bank = torch.zeros(n_unlabeled, num_classes, dtype=torch.bool, device=device)
        self.protos = torch.zeros(num_classes, dim, device=device)
        self.count = torch.zeros(num_classes, device=device)
        self._events: list[tuple] = []   # (iteration, idx, old, new, mask) tensors, filtered lazily
        self.relabels: list[tuple[int, int, int, int]] = []

    # ---- persistence
    def state_dict(self) -> dict:
        self.flush_events()
        return {"labels": self.labels, "given": self.given, "weights": self.weights, "bank": self.bank,
                "protos": self.protos, "count": self.count,
                "relabels": torch.tensor(self.relabels, dtype=torch.long).reshape(-1, 4)}

    def load_state_dict(self, sd: dict):
        for k in ("labels", "given", "weights", "bank", "protos", "count"):
            getattr(self, k).copy_(sd[k])
        self._events = []
        self.relabels = [tuple(r) for r in sd["relabels"].tolist()]

    def flush_events(self):
        """Turn the batched relabel records into (iteration, index, old, new) rows (one sync)."""
        for it, idx, old, new, m in self._events:
            m = m.cpu()
            for i, o, n in zip(idx.cpu()[m].tolist(), old.cpu()[m].tolist(), new.cpu()[m].tolist()):
                self.relabels.append((int(it), i, o, n))
        self._events = []
        return self.relabels

    # ---- prototypes
    def reset_running_mean(self):
        self.count.zero_()

    def update_prototypes(self, f, y, use, running: bool, momentum: float = 0.99):
        """Move prototype y_j towards feature f_j for every j with `use`.

        running: mu_c = mean of this epoch's updates so far (count reset at epoch start);
        else the sequential EMA mu <- m mu + (1-m) f applied in batch order, in closed form:
        mu_c <- m^n_c mu_c + sum_j (1-m) m^(r_j) f_j, r_j = later same-class samples.
        """
        f = f.detach().float()
        oh = F.one_hot(y, self.K).float() * use.float()[:, None]          # (B, K)
        n = oh.sum(0)                                                       # (K,)
        if running:
            total = self.count + n
            s = oh.t() @ f                                                  # (K, D)
            new = (self.protos * self.count[:, None] + s) / total.clamp_min(1)[:, None]
            self.protos = torch.where((n > 0)[:, None], new, self.protos)
            self.count = total
        else:
            later = oh.flip(0).cumsum(0).flip(0) - oh                       # same-class samples after j
            r = (later * oh).sum(1)
            coef = (1 - momentum) * momentum ** r * oh.sum(1)              # zero for unused rows
            self.protos = momentum ** n[:, None] * self.protos + (oh * coef[:, None]).t() @ f

    # ---- label disambiguation
    def disambiguate(self, idx, probs, feats, it: int, cfg: LionParams) -> dict:
        """One visit of labeled samples `idx` (spec 2.2). Returns masks for the losses."""
        K = self.K
        y = self.labels[idx]
        w = self.weights[idx]
        pred = probs.argmax(1)
        amb = (probs.max(1).values - probs.gather(1, y[:, None]).squeeze(1)) > cfg.delta_amb
        closed = (w > 0).sum(1) == 1
        oh_y, oh_p = F.one_hot(y, K).bool(), F.one_hot(pred, K).bool()
        # a closed set opens to {y, y_hat} with the model's renormalised probabilities
        opened = probs * (oh_y | oh_p)
        opened = opened / opened.sum(1, keepdim=True).clamp_min(1e-12)
        # an open set takes in y_hat; w_c <- m w_c + (1-m) q_c for c in {y, y_hat}
        cand = (w > 0) | oh_p
        q = (feats.detach().float() @ self.protos.t() / cfg.proto_temp).masked_fill(~cand, float("-inf")).softmax(1)
        sel = oh_y | oh_p
        moved = torch.where(sel, cfg.weight_momentum * w + (1 - cfg.weight_momentum) * q, w)
        moved = moved / moved.sum(1, keepdim=True)
        may_open = amb & closed
        new = torch.where(may_open[:, None], opened, torch.where((amb & ~closed)[:, None], moved, w))
        top, arg = new.max(1)
        collapse = amb & (top > cfg.collapse_at)
        relabel = collapse & (arg != y) & (top >= cfg.relabel_at)
        if cfg.protect_neutral:
            relabel &= (arg != cfg.neutral) & (y != cfg.neutral)
        new = torch.where(collapse[:, None], F.one_hot(arg, K).float(), new)
        if cfg.reclose:  # not in the paper: a set no longer ambiguous rejoins L_x with its label
            new = torch.where((~amb & ~closed)[:, None], F.one_hot(y, K).float(), new)
        new_y = torch.where(relabel, arg, y)
        self.weights[idx] = new
        self.labels[idx] = new_y
        self._events.append((it, idx, y, new_y, relabel))
        onehot = (new > 0).sum(1) == 1
        return {"ambiguous": amb, "closed": onehot, "labels": new_y, "weights": new, "pred": pred}

    def disambiguate_as_script(self, idx, probs, feats, it: int, params, in_relabel_epoch: bool) -> dict:
        """One visit under the released script's rules (script_rules.disambiguate): the masks for
        the losses. L_x keeps the rows with one entry equal to 1, on the labels read before the
        visit (the script's targets were loaded before it relabels)."""
        from . import script_rules
        y = self.labels[idx].clone()
        amb, relabel = script_rules.disambiguate(self.weights, self.labels, idx, probs, feats, self.protos,
                                                 in_relabel_epoch, params)
        self._events.append((it, idx, y, self.labels[idx].clone(), relabel))
        w = self.weights[idx]
        return {"ambiguous": amb, "closed": script_rules.in_labeled_loss(w), "labels": y, "weights": w}

    # ---- complementary labels
    def grow_bank(self, idx, probs, low, delta_neg: float, max_size: int, per_visit: int = 1) -> torch.Tensor:
        """Progressive negative learning (spec 2.4): a low-confidence sample gains at most one
        complementary class per visit (`per_visit` in a mapped short run), its least likely
        classes not yet in the set, if their probability is <= delta_neg and the set holds
        fewer than `max_size` classes."""
        rows = self.bank[idx]
        p = probs.detach().masked_fill(rows, float("inf"))
        order = p.argsort(dim=1, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(self.K, device=p.device).expand_as(order))
        room = (max_size - rows.sum(1)).clamp(0, per_visit)
        add = low[:, None] & (p <= delta_neg) & (rank < room[:, None])
        rows = rows | add
        self.bank[idx] = rows
        return rows

    @staticmethod
    def instant_negatives(probs, low, delta_neg: float) -> torch.Tensor:
        """The no-progression ablation: every class with p <= delta_neg, this visit only."""
        return (probs.detach() <= delta_neg) & low[:, None]
