"""A plain re-implementation of the released script's iteration body (main.py's `train`, lines
243-445, github NUM-7/LION), for the tests only: the same loops, `.item()` calls and indexing as
the script, fed tensors instead of a model and loaders. Deliberately not vectorised and not
shared with the package, so that `lion_kit.script_rules` is checked against an independent
reading. Differences from the script are only these: the batch size is a parameter (the script
writes 16), no `.cuda()`, the labeled dataset's label list is a plain list indexed by position,
and the relabel log keeps only the relabels that change a label (the script logs blocked ones too).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class ScriptState:
    """What the script keeps across iterations: weight_partial (float64, from numpy), the label
    list of the labeled set, the prototypes, the complementary-label bank and `nums`."""

    def __init__(self, labels, n_unlabeled, dim, K=7):
        c = np.expand_dims(np.asarray(labels), axis=1)
        self.weight_partial = torch.from_numpy((np.arange(K) == np.repeat(c, K, axis=1)).astype(float))
        self.label_list = list(int(v) for v in labels)
        self.protype = torch.zeros(K, dim)
        self.c_label_bank = torch.zeros(n_unlabeled, K)
        self.nums = torch.zeros(K, 1)
        self.relabels = []  # (iteration, position in the labeled set, old, new)

    def new_epoch(self):
        self.nums = torch.zeros(7, 1)  # `train` starts every epoch with nums = 0


def iteration(s: ScriptState, epoch, relabel_epoch, it, output_x, feature_x, index_x, outputs_u, feature_u,
              output_strong, index_u, temperature=0.1):
    """One iteration's bookkeeping and loss terms; returns dict(Lx, Lu, Ln, Lu_n, partial_loss)."""
    B = output_x.shape[0]
    weight_partial, protype, nums = s.weight_partial, s.protype, s.nums
    targets_x = torch.tensor([s.label_list[int(i)] for i in index_x])  # loaded before the iteration
    p = torch.softmax(outputs_u, dim=1)
    max_probs, max_idx = torch.max(p, dim=1)
    idxs = index_x
    if epoch >= relabel_epoch:
        sm = torch.softmax(output_x, dim=1)
        Pmax, predicated_labels = torch.max(sm, 1)
        Pgt = torch.gather(sm, 1, targets_x.view(-1, 1).long()).squeeze()
        isAmbiguous = (Pmax - Pgt > 0.5)
        labeledset_idx = isAmbiguous.nonzero().squeeze()
        for i in range(labeledset_idx.numel()):
            if labeledset_idx.numel() == 1:
                m = labeledset_idx.item()
                n = predicated_labels[m].item()
            else:
                m = int(labeledset_idx[i].item())
                n = int(predicated_labels[m].item())
            if epoch == relabel_epoch:
                weight_partial[idxs[m]][n] = sm[m][n]
                weight_partial[idxs[m]][int(targets_x[m].item())] = sm[m][int(targets_x[m].item())]
                weight_partial[idxs[i]][0:7] = torch.div(weight_partial[idxs[i]][0:7].clone(),
                                                         torch.sum(weight_partial[idxs[i]][0:7]))
            else:
                logits = torch.zeros(1, 7).squeeze()
                for k in range(7):
                    if weight_partial[idxs[m]][k] != 0:
                        logits[k] = torch.mm(feature_x[m].unsqueeze(0), protype[k].unsqueeze(1)) / temperature
                logits = F.softmax(logits, dim=0)
                weight_partial[idxs[m]][n] = 0.99 * weight_partial[idxs[m]][n].clone() + 0.01 * logits[n]
                weight_partial[idxs[m]][int(targets_x[m].item())] = 0.99 * weight_partial[idxs[m]][
                    int(targets_x[m].item())].clone() + 0.01 * logits[int(targets_x[m].item())]
                weight_partial[idxs[m]][0:7] = torch.div(weight_partial[idxs[m]][0:7].clone(),
                                                         torch.sum(weight_partial[idxs[m]][0:7]))
            if 0.985 < torch.max(weight_partial[idxs[m]][0:7]) < 1:
                dd = weight_partial[idxs[m]][0:7].detach().unsqueeze(0)
                lmax, llabel = torch.max(dd, -1)
                weight_partial[idxs[m]][0:7] = 0
                weight_partial[idxs[m]][int(llabel.item())] = 1
                pos = int(idxs[m])
                if s.label_list[pos] != int(llabel.item()) and lmax >= 0.996:
                    if s.label_list[pos] < 6 and int(llabel.item()) < 6:
                        s.relabels.append((it, pos, s.label_list[pos], int(llabel.item())))
                        s.label_list[pos] = int(llabel.item())
        unset_index = np.setdiff1d(torch.arange(B).numpy(), labeledset_idx.numpy())
        for k in range(len(unset_index)):
            cls = int(targets_x[unset_index[k]].item())
            if epoch == relabel_epoch:
                protype[cls] = torch.div((protype[cls].clone() * nums[cls, 0] + feature_x[unset_index[k]]),
                                         nums[cls, 0] + 1)
                nums[cls, 0] = nums[cls, 0] + 1
            else:
                protype[cls] = 0.99 * protype[cls].clone() + 0.01 * feature_x[unset_index[k]]
    else:
        update_idx = []
        ssm = torch.softmax(output_x, dim=1)
        _, p_labels = torch.max(ssm, 1)
        for i in range(B):
            if targets_x[i] == p_labels[i]:
                update_idx.append(i)
        for k in update_idx:
            t_cls = targets_x[k]
            if epoch == 1:
                protype[t_cls] = torch.div((protype[t_cls].clone() * nums[t_cls, 0] + feature_x[k]), nums[t_cls, 0] + 1)
                nums[t_cls, 0] = nums[t_cls, 0] + 1
            else:
                protype[t_cls] = 0.99 * protype[t_cls].clone() + 0.01 * feature_x[k]

    area, area_p = [], []
    for i in range(B):
        if (weight_partial[idxs[i]] == 1).sum() == 1:
            area.append(i)
        else:
            area_p.append(i)
    area = torch.tensor(area, dtype=torch.long)
    area_p = torch.tensor(area_p, dtype=torch.long)
    if area_p.shape[0] == 0:
        partial_loss = torch.tensor(0.0)
    else:
        logsm_outputs = F.log_softmax(output_x[area_p], dim=1)
        partial_loss = -((logsm_outputs * weight_partial[idxs[area_p]].detach()).sum(dim=1)).float().mean()
    if area.shape[0] == 0:
        Lx = torch.tensor(0.0)
    else:
        Lx = F.cross_entropy(output_x[area], targets_x[area].long(), reduction="none").mean()

    threshold = 0.8 + 0.01 * epoch
    mask = (max_probs >= threshold).float()  # mask_generate, class by class, gives the same
    mask_idx = np.where(mask == 0)[0]
    not_mask_idx = np.where(mask == 1)[0]
    for k in range(len(not_mask_idx)):
        clss = int(max_idx[not_mask_idx[k]].item())
        if epoch == 1:
            protype[clss] = torch.div((protype[clss].clone() * nums[clss, 0] + feature_u[not_mask_idx[k]]), nums[clss, 0] + 1)
            nums[clss, 0] = nums[clss, 0] + 1
        else:
            protype[clss] = 0.99 * protype[clss].clone() + 0.01 * feature_u[not_mask_idx[k]]
    Lu_n = torch.tensor(0.0)
    if len(mask_idx) == 0:
        Ln = torch.tensor(0.0)
    else:
        probs_u_w = p[mask_idx, :]
        p_value, _ = torch.max(probs_u_w, dim=-1)
        nll_mask = ~(p_value.ge(threshold))
        pred_s_softmax = probs_u_w[nll_mask]
        index_u = index_u[nll_mask.long()]
        c_label_u = s.c_label_bank[index_u]
        pred_s_softmax = pred_s_softmax.clone() * (1 - c_label_u)
        num = pred_s_softmax.shape[0]
        pred_s_softmax = pred_s_softmax.clone().contiguous().view(-1)
        pred_s_softmax[pred_s_softmax == 0] = 1
        pred_s_softmax = pred_s_softmax.clone().view(num, -1)
        min_c_value, min_c_index = torch.min(pred_s_softmax, dim=1)
        c_label_mask = c_label_u.sum(-1)
        c_label_mask = min_c_value.le(0.01) * (c_label_mask.clone() < 7)
        c_one_hot = F.one_hot(min_c_index, 7).float().detach() * c_label_mask.unsqueeze(1)
        c_label_u = c_label_u.clone() + c_one_hot
        for j in range(len(index_u)):  # `c_label_bank[index_u] = c_label_u`: the last write survives
            s.c_label_bank[index_u[j]] = c_label_u[j].detach()
        Ln = torch.mean(-(c_label_u * torch.log(torch.clamp(1. - probs_u_w[nll_mask], min=1e-5, max=1.))).sum(dim=-1))
        s_m = torch.sigmoid(output_strong)
        ma, _ = torch.max(s_m, -1)
        ms_m = ma.unsqueeze(1) - s_m
        Lu_n = torch.nn.BCELoss(reduction="none")(ms_m[nll_mask.long()], s.c_label_bank[index_u]).mean()
    Lu = (F.cross_entropy(output_strong, max_idx, reduction="none") * mask).mean()
    return {"Lx": Lx, "Lu": Lu, "Ln": Ln, "Lu_n": Lu_n, "partial_loss": partial_loss}
