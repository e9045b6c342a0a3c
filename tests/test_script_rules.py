"""The released script's rules (`lion_rules="script"`, lion_kit/script_rules.py): against a plain
re-implementation of the script's loops (tests/script_reference.py) over many random iterations
across E_r, and rule by rule on hand-computed cases."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import script_reference as ref
from lion_kit import script_rules as S
from lion_kit.config import resolve
from lion_kit.distributed import Group
from lion_kit.mapping import RunMapping
from lion_kit.methods import Batch, Lion, RunContext

K = 7


def _run(n_l=40, n_u=30, dim=16, batch=8, epochs=4, relabel_epoch=2, **over):
    cfg = resolve("smoke", overrides={"lion_rules": "script", "epochs": epochs, "schedule_epochs": epochs,
                                      "relabel_epoch": relabel_epoch, "batch_size": batch, "unlabeled_batch_size": batch,
                                      **over})
    labels = torch.arange(n_l) % K
    lion = Lion(cfg, RunMapping.of(cfg, n_u), RunContext(labels.tolist(), n_u, None, None, Group(), torch.device("cpu")))
    lion.state.protos = torch.zeros(K, dim)  # the features of these tests are dim-dimensional
    return cfg, lion, ref.ScriptState(labels.tolist(), n_u, dim)


def _logits(g, n, scales=(0.3, 2.0, 6.0, 12.0, 40.0, 150.0)):
    """Rows from nearly uniform to saturated (p exactly 1.0 and 0.0 in float32 at scale 150)."""
    s = torch.tensor(scales)[torch.randint(len(scales), (n,), generator=g)]
    return torch.randn(n, K, generator=g) * s[:, None]


def _feats(g, n, dim):
    return F.normalize(torch.randn(n, dim, generator=g) + torch.randn(1, dim, generator=g), dim=1)


def test_script_rules_match_a_loop_by_loop_reimplementation_of_the_script_across_E_r():
    cfg, lion, r = _run()
    st = lion.state
    m = lion.mapping
    assert m.relabel_run_epoch == 2 and m.weight_momentum == 0.99 and m.max_negatives == K and lion.script
    g = torch.Generator().manual_seed(3)
    it, seen = 0, {"amb": 0, "raw_open": 0, "relabel_er": 0, "relabel_after": 0, "saturated": 0, "bank": 0}
    for epoch in range(1, cfg.epochs + 1):
        lion.begin_epoch(epoch)  # the running means start afresh at epochs 1 and E_r
        r.new_epoch()
        for _ in range(40):
            it += 1
            B = cfg.batch_size
            ix, iu = torch.randperm(40, generator=g)[:B], torch.randperm(30, generator=g)[:B]
            lx, lu, ls = _logits(g, B), _logits(g, B), _logits(g, B)
            fx, fu = _feats(g, B, 16), _feats(g, B, 16)
            b = Batch(x=torch.zeros(B, 1), y=st.labels[ix], ix=ix, iu=iu)
            n_rel = len(r.relabels)
            _, stats = lion.losses(b, it, lx, fx, lu, fu, ls)
            want = ref.iteration(r, epoch, 2, it, lx, fx, ix, lu, fu, ls, iu)
            # per-sample state: discrete parts exactly; weights to float32 rounding of the prototype
            # logits (the kit's batched f @ mu sums in another order than the script's per-class mm)
            torch.testing.assert_close(st.weights, r.weight_partial, rtol=0, atol=1e-7)
            assert st.labels.tolist() == r.label_list
            assert torch.equal(st.bank, r.c_label_bank.bool())
            torch.testing.assert_close(st.protos, r.protype, rtol=1e-5, atol=1e-6)
            assert st.flush_events() == r.relabels
            for kit, name in (("loss_x", "Lx"), ("loss_u", "Lu"), ("loss_n", "Ln"), ("loss_sn", "Lu_n"), ("loss_px", "partial_loss")):
                torch.testing.assert_close(getattr(stats, kit).double(), want[name].double(), rtol=1e-5, atol=1e-6,
                                           msg=f"{kit} at epoch {epoch}, iteration {it}")
            p = lx.softmax(1)
            amb = p.max(1).values - p.gather(1, st.given[ix, None]).squeeze(1) > 0.5
            seen["amb"] += int(amb.sum()) if epoch >= 2 else 0
            seen["saturated"] += int((p == 1).any(1).logical_and(amb).sum()) if epoch == 2 else 0
            seen["relabel_er" if epoch == 2 else "relabel_after"] += len(r.relabels) - n_rel
        if epoch == 2:
            raw = (st.weights > 0).sum(1) > 1
            seen["raw_open"] = int((raw & ((st.weights.sum(1) - 1).abs() > 1e-6)).sum())
    seen["bank"] = int(st.bank.any(1).sum())
    # the stream reached every path the comparison is meant to cover
    assert seen["amb"] > 50 and seen["saturated"] > 0 and seen["raw_open"] > 0, seen
    assert seen["relabel_er"] > 0 and seen["relabel_after"] > 0 and seen["bank"] > 0, seen


# ----------------------------------------------------------------------------- hand-computed cases

def _probs(rows):
    return torch.tensor(rows, dtype=torch.float32)


def _p(y, n, py, pn):
    """A probability row with p_y, p_n and the rest spread evenly over the other classes."""
    row = [(1 - py - pn) / (K - 2)] * K
    row[y], row[n] = py, pn
    return row


def test_in_E_r_the_stray_renormalisation_hits_row_i_and_leaves_the_ambiguous_faces_own_row_raw():
    # positions 0 and 3 ambiguous, 1 and 2 clear; position 1's row is an open raw row from earlier in E_r
    w = F.one_hot(torch.tensor([0, 1, 2, 3]), K).double()
    w[1] = 0
    w[1, 1], w[1, 4] = 0.3, 0.6
    labels = torch.tensor([0, 1, 2, 3])
    probs = _probs([_p(0, 5, 0.1, 0.8), _p(1, 0, 0.9, 0.02), _p(2, 0, 0.9, 0.02), _p(3, 6, 0.15, 0.75)])
    amb, rel = S.disambiguate(w, labels, torch.arange(4), probs, torch.zeros(4, 4), torch.zeros(K, 4), True, S.ScriptParams())
    assert amb.tolist() == [True, False, False, True] and not rel.any()
    # position 0 (every earlier position ambiguous: none) is normalised before its test
    assert w[0, 0] == pytest.approx(0.1 / 0.9) and w[0, 5] == pytest.approx(0.8 / 0.9)
    # the second ambiguous face renormalises row 1, not its own row 3, which stays raw
    assert w[1, 1] == pytest.approx(1 / 3) and w[1, 4] == pytest.approx(2 / 3)
    assert w[3, 3] == pytest.approx(0.15) and w[3, 6] == pytest.approx(0.75) and w[3].sum() == pytest.approx(0.9)
    assert torch.equal(w[2], F.one_hot(torch.tensor(2), K).double())


def test_in_E_r_raw_weights_collapse_in_0985_to_1_and_relabel_at_0996_but_a_saturated_1_stays():
    w = F.one_hot(torch.tensor([0, 1, 2]), K).double()
    labels = torch.tensor([0, 1, 2])
    # own rows are tested raw: position 0 is normalised first, so make it clear
    probs = _probs([[0.94] + [0.01] * 6, _p(1, 3, 0.001, 0.99), [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    amb, rel = S.disambiguate(w, labels, torch.arange(3), probs, torch.zeros(3, 4), torch.zeros(K, 4), True, S.ScriptParams())
    assert amb.tolist() == [False, True, True]
    # position 1: raw top 0.99 in (0.985, 1): closes on class 3 without relabelling (< 0.996)
    assert torch.equal(w[1], F.one_hot(torch.tensor(3), K).double()) and labels[1] == 1 and not rel[1]
    # position 2: p = 1.0 exactly: max w == 1 is not < 1, so no collapse; its single entry 1 keeps it in L_x on label 2
    assert w[2, 4] == 1 and w[2, 2] == 0 and labels[2] == 2
    assert S.in_labeled_loss(w).tolist() == [True, True, True]
    w2, lab2 = F.one_hot(torch.tensor([0, 1]), K).double(), torch.tensor([0, 1])
    amb, rel = S.disambiguate(w2, lab2, torch.arange(2), _probs([[0.94] + [0.01] * 6, _p(1, 3, 0.001, 0.997)]),
                              torch.zeros(2, 4), torch.zeros(K, 4), True, S.ScriptParams())
    assert rel.tolist() == [False, True] and lab2.tolist() == [0, 3]


def test_after_E_r_a_closed_face_collapses_back_and_a_set_closed_on_another_class_relabels():
    protos = torch.zeros(K, 2)
    protos[3] = torch.tensor([1.0, 0.0])  # f . mu_3 / T = 10 for f = (1, 0)
    w = F.one_hot(torch.tensor([0, 3]), K).double()  # face 1 (label 1) closed on class 3 in E_r, not relabelled
    labels = torch.tensor([0, 1])
    probs = _probs([_p(0, 5, 0.1, 0.8), _p(1, 3, 0.1, 0.8)])
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    amb, rel = S.disambiguate(w, labels, torch.arange(2), probs, feats, protos, False, S.ScriptParams())
    assert amb.all()
    # face 0: q over all K with logit 0 off the support {0}: w_0 = 0.99 + 0.01/7, w_5 = 0.01/7, renormalised > 0.985
    assert torch.equal(w[0], F.one_hot(torch.tensor(0), K).double()) and labels[0] == 0 and not rel[0]
    # face 1: support {3} with logit 10: q_3 = 0.9997, w_1 = 0.01 q_1 ~ 5e-7: collapses on 3 >= 0.996, a stale relabel
    # (with q_3 exactly 1 the row would stay exactly one-hot, max w = 1 is not < 1, and nothing would happen)
    assert torch.equal(w[1], F.one_hot(torch.tensor(3), K).double()) and labels[1] == 3 and rel[1]


def test_after_E_r_an_open_set_drifts_with_a_softmax_over_all_classes_and_its_own_renormalisation():
    protos = torch.zeros(K, 2)
    protos[0], protos[4] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    w = torch.zeros(1, K, dtype=torch.float64)
    w[0, 0], w[0, 4] = 0.5, 0.4  # raw, from E_r
    labels = torch.tensor([0])
    feats = torch.tensor([[0.6, 0.8]])
    S.disambiguate(w, labels, torch.arange(1), _probs([_p(0, 4, 0.1, 0.8)]), feats, protos, False, S.ScriptParams())
    logit = torch.tensor([6.0, 0, 0, 0, 8.0, 0, 0])  # f.mu/T on the support {0, 4}, 0 elsewhere
    q = logit.softmax(0).double()
    w0, w4 = 0.99 * 0.5 + 0.01 * q[0], 0.99 * 0.4 + 0.01 * q[4]
    assert w[0, 0] == pytest.approx(float(w0 / (w0 + w4))) and w[0, 4] == pytest.approx(float(w4 / (w0 + w4)))


def test_negatives_share_the_row_of_batch_position_1_and_its_last_write_survives():
    bank = torch.zeros(10, K, dtype=torch.bool)
    bank[7, 2] = True  # the stored row of the face at position 1 (index 7)
    iu = torch.tensor([4, 7, 5, 6])
    probs = _probs([[0.5, 0.3, 0.1, 0.095, 0.005, 0.0, 0.0],   # low: 0.0s are skipped, min 0.005 -> class 4
                    [0.95, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005],  # position 1: confident
                    [0.4, 0.3, 0.2, 0.05, 0.03, 0.015, 0.005],  # low: class 6
                    [0.3, 0.3, 0.3, 0.05, 0.021, 0.009, 0.02]])  # low: class 5; the last write
    low = torch.tensor([True, False, True, True])
    rows, shared, any_low = S.negatives(bank, iu, probs, low, 0.01, K)
    assert rows[0].nonzero().flatten().tolist() == [2, 4] and rows[2].nonzero().flatten().tolist() == [2, 6]
    assert rows[3].nonzero().flatten().tolist() == [2, 5] and not rows[1].any()
    assert bank[7].nonzero().flatten().tolist() == [2, 5] and bank.sum() == 2  # no other face gained a row
    assert shared.tolist() == bank[7].float().tolist() and bool(any_low)
    logits_s = torch.randn(4, K)
    s = torch.sigmoid(logits_s[1])
    want = F.binary_cross_entropy(s.max() - s, shared)
    torch.testing.assert_close(S.strong_negative_loss(logits_s[1], shared), want)


def test_the_shared_row_may_fill_all_K_classes_and_a_batch_without_low_faces_leaves_it():
    bank = torch.zeros(3, K, dtype=torch.bool)
    bank[1, :6] = True
    probs = _probs([[0.165] * 6 + [0.01]] * 2)
    rows, _, _ = S.negatives(bank, torch.tensor([0, 1]), probs, torch.tensor([True, False]), 0.01, K)
    assert bank[1].all() and rows[0].all()  # |C| < K: the seventh class joins
    rows, shared, any_low = S.negatives(bank, torch.tensor([0, 1]), probs, torch.tensor([False, False]), 0.01, K)
    assert bank[1].all() and not rows.any() and not bool(any_low)


def test_the_relabelling_iteration_trains_on_the_old_label_and_the_next_on_the_new():
    _, lion, _ = _run(n_l=7, batch=2)
    st = lion.state
    ix = torch.tensor([1, 0])
    lx = torch.tensor([[0.0, -20, -20, 9.0, -20, -20, -20], [9.0, 0, 0, 0, 0, 0, 0]])  # face 1: p_3 > 0.996
    fx = F.normalize(torch.ones(2, 16), dim=1)
    lu = torch.zeros(2, K)
    b = Batch(x=torch.zeros(2, 1), y=st.labels[ix], ix=ix, iu=torch.tensor([0, 1]))
    lion.begin_epoch(2)  # E_r
    _, stats = lion.losses(b, 1, lx, fx, lu, fx, lu)
    assert st.labels[1] == 3 and st.flush_events() == [(1, 1, 1, 3)]
    # face 1 sits at position 0, so its row was normalised before the test: one-hot on 3, in L_x with label 1
    ce_old = F.cross_entropy(lx, torch.tensor([1, 0]))
    torch.testing.assert_close(stats.loss_x, ce_old)
    _, stats = lion.losses(b, 2, lx, fx, lu, fx, lu)
    torch.testing.assert_close(stats.loss_x, F.cross_entropy(lx, torch.tensor([3, 0])))


def test_the_script_rule_set_is_checked_where_it_is_configured():
    with pytest.raises(ValueError, match="lion_rules"):
        resolve("smoke", overrides={"lion_rules": "authors"})
    with pytest.raises(ValueError, match="method lion"):
        resolve("smoke", overrides={"lion_rules": "script", "method": "fixmatch"})
    with pytest.raises(ValueError, match="reclose"):
        resolve("smoke", overrides={"lion_rules": "script", "reclose": True})
    with pytest.raises(ValueError, match="lion_rules='script'"):
        resolve("smoke", overrides={"quirks": "proto_softmax_all"})
    assert resolve("smoke", overrides={"quirks": "bgr"}).bgr  # an older run's config reads back
