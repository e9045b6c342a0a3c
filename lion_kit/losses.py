"""LION's losses (spec: ../shared/LION_SPEC.md section 2), batched: no Python loop over the
samples of a batch. The per-sample state they read is in state.py, the schedules in mapping.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def labeled_loss(logits, labels, keep):
    """Cross-entropy over the samples with `keep` (closed candidate sets), mean over them."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    k = keep.float()
    return (ce * k).sum() / k.sum().clamp_min(1)


def partial_label_loss(logits, weights, keep):
    """-sum_c w_ic log p_ic over the samples with `keep` (open candidate sets)."""
    pl = -(weights * F.log_softmax(logits, 1)).sum(1)
    k = keep.float()
    return (pl * k).sum() / k.sum().clamp_min(1)


def pseudo_label_loss(logits_s, probs_w, tau):
    """FixMatch's consistency loss; returns (loss, confident mask, pseudo-labels)."""
    conf, pseudo = probs_w.max(1)
    mask = conf >= tau
    loss = (F.cross_entropy(logits_s, pseudo, reduction="none") * mask.float()).mean()
    return loss, mask, pseudo


def negative_loss(probs_w, neg, low):
    """L_n: mean over low-confidence samples of sum_{c in C_i} -log(clamp(1 - p_ic, 1e-5, 1))."""
    nl = -(torch.log((1 - probs_w).clamp(1e-5, 1)) * neg.float()).sum(1)
    k = low.float()
    return (nl * k).sum() / k.sum().clamp_min(1)


def strong_negative_loss(logits_s, neg, low):
    """L_sn: BCE between the sigmoid margin r_ic = max_k s_ik - s_ic and [c in C_i], mean over
    low-confidence samples and classes."""
    s = torch.sigmoid(logits_s)
    r = (s.max(1, keepdim=True).values - s).clamp(0, 1)
    bce = F.binary_cross_entropy(r, neg.float(), reduction="none").mean(1)
    k = low.float()
    return (bce * k).sum() / k.sum().clamp_min(1)
