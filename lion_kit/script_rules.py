"""LION as its authors ran it: the released script's rules (`main.py` in LION.rar, github NUM-7/LION;
../shared/LION_SPEC.md section 3, docs/lion.md "The released script"), selected by
`lion_rules="script"`.

The script keeps its per-sample state in Python loops whose order matters (a renormalisation that
hits another row of the batch, several faces writing one bank row). Each function here computes
what those loops leave behind for a whole batch at once, in batch order, so the step stays free of
per-sample Python loops; `tests/script_reference.py` re-implements the loops line by line and
the tests feed both the same tensors. Weights are float64, as in the script (a numpy float array).
Under DDP the gathered batch (every rank's faces, in rank order) plays the part of the script's
one DataParallel batch.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .labels import NEUTRAL

WEIGHTS_DTYPE = torch.float64


@dataclasses.dataclass(frozen=True)
class ScriptParams:
    """The constants the script's disambiguation reads (its literals, or the run's mapped momentum)."""

    delta_amb: float = 0.5
    proto_temp: float = 0.1
    weight_momentum: float = 0.99
    collapse_at: float = 0.985
    relabel_at: float = 0.996
    protect_neutral: bool = True
    neutral: int = NEUTRAL


def disambiguate(weights, labels, idx, probs, feats, protos, in_relabel_epoch: bool, p: ScriptParams):
    """One batch of labeled faces from E_r on (main.py 262-302). `weights` (n_l, K) float64 and
    `labels` (n_l,) are updated in place; `labels[idx]` are the faces' training labels, read
    before the batch (the script's `targets_x`). Returns the batch's ambiguous mask and its
    relabel mask (the faces whose label changed; a relabel blocked by the neutral rule is not one).

    In E_r an ambiguous face's entries y and y_hat are re-set to the training forward's
    probabilities, other entries kept; the script then renormalises the row of batch position j
    at the j-th ambiguous face (`idxs[i]` for `idxs[m]`), so a face's own row is normalised
    before its collapse test only when every earlier position is ambiguous too, and the rows of
    positions 0..k-1 (k ambiguous faces) end normalised. After E_r an ambiguous face's y and
    y_hat entries move towards a softmax over all K classes of f.mu_c / T for the classes in its
    support and logit 0 for the others, then the row is normalised. Either way a row whose top
    weight lies in (collapse_at, 1) collapses to one-hot; on another class at >= relabel_at the
    face is relabelled."""
    K, B = weights.shape[1], len(idx)
    y = labels[idx]
    w = weights[idx]
    pred = probs.argmax(1)
    amb = (probs.max(1).values - probs.gather(1, y[:, None]).squeeze(1)) > p.delta_amb
    oh_y, oh_p = F.one_hot(y, K).bool(), F.one_hot(pred, K).bool()
    sel = (oh_y | oh_p) & amb[:, None]
    pos = torch.arange(B, device=idx.device)
    if in_relabel_epoch:
        raw = torch.where(sel, probs.to(w.dtype), w)
        own_first = amb & ((amb.cumsum(0) - amb.long()) == pos)  # every earlier position ambiguous
        tested = torch.where(own_first[:, None], raw / raw.sum(1, keepdim=True), raw)
    else:
        own_first = torch.zeros_like(amb)
        qlog = torch.where(w != 0, (feats.float() @ protos.t()) / p.proto_temp, torch.zeros((), device=w.device))
        q = (1 - p.weight_momentum) * qlog.softmax(1)  # float32, as the script's `0.01 * logits[n]`
        moved = torch.where(sel, p.weight_momentum * w + q.to(w.dtype), w)
        tested = torch.where(amb[:, None], moved / moved.sum(1, keepdim=True), w)
    top, arg = tested.max(1)
    collapse = amb & (top > p.collapse_at) & (top < 1)
    relabel = collapse & (arg != y) & (top >= p.relabel_at)
    if p.protect_neutral:
        relabel &= (arg != p.neutral) & (y != p.neutral)
    new = torch.where(collapse[:, None], F.one_hot(arg, K).to(w.dtype), tested)
    if in_relabel_epoch:  # the stray renormalisations of rows 0..k-1, after their own tests
        late = (pos < amb.sum()) & ~own_first
        new = torch.where(late[:, None], new / new.sum(1, keepdim=True), new)
    weights[idx] = new
    labels[idx] = torch.where(relabel, arg, y)
    return amb, relabel


def in_labeled_loss(weights_rows):
    """The script's L_x membership (main.py 336-341): rows with exactly one entry equal to 1."""
    return (weights_rows == 1).sum(1) == 1


def negatives(bank, iu, probs, low, delta_neg: float, max_size: int):
    """The script's complementary labels (main.py 386-409) for one unlabeled batch.

    Every low-confidence face reads the bank row of the face at batch position 1 (the indexing
    `index_u[nll_mask.long()]` with an all-true mask) and adds its own least likely class of this
    visit when that probability is <= delta_neg and the shared row holds fewer than `max_size`
    classes (probabilities of exactly 0, and the classes already held, are skipped as the
    script's `pred[pred == 0] = 1` does). Each face's row goes into L_n; all are written to the
    one shared bank row, the last low-confidence face's write surviving. Returns (rows (B, K)
    float, zero for confident faces; the shared row after the write, for L_sn; whether any face
    was low-confidence, without which the script has no L_n and no L_sn). `bank` is updated in place."""
    shared = iu[1]
    c = bank[shared].float()
    pr = probs.detach() * (1 - c)
    pr = torch.where(pr == 0, torch.ones_like(pr), pr)
    v, arg = pr.min(1)
    add = (v <= delta_neg) & (c.sum() < max_size)
    rows = (c + F.one_hot(arg, c.numel()).float() * add[:, None].float()) * low[:, None].float()
    any_low = low.any()
    last = torch.where(low, torch.arange(len(low), device=low.device), -1).max().clamp_min(0)
    bank[shared] = torch.where(any_low, rows[last] > 0, bank[shared])
    return rows, bank[shared].float(), any_low


def negative_loss(probs, rows, low):
    """L_n: mean over the low-confidence faces of sum_c rows_ic * -log(clamp(1 - p_ic, 1e-5, 1))."""
    nl = -(rows * torch.log((1 - probs).clamp(1e-5, 1))).sum(1)
    k = low.float()
    return (nl * k).sum() / k.sum().clamp_min(1)


def strong_negative_loss(logits_s_row, shared_row):
    """L_sn as the script computes it: the strong view of batch position 1 alone, against the
    shared bank row (BCE of the sigmoid margin, mean over classes)."""
    s = torch.sigmoid(logits_s_row)
    r = (s.max() - s).clamp(0, 1)
    return F.binary_cross_entropy(r, shared_row)
