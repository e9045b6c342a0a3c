"""LION's update rules and losses against small hand-computed cases (spec section 2)."""
import math
import types

import pytest
import torch
import torch.nn.functional as F

from lion_kit import losses as L
from lion_kit.config import Config, resolve

K = 7


def params(**kw):
    d = dict(delta_amb=0.5, proto_temp=0.1, weight_momentum=0.99, collapse_at=0.985, relabel_at=0.996,
             protect_neutral=True, neutral=6, quirk_proto_softmax_all=False,
             quirk_open_only_in_relabel_epoch=False, _in_relabel_epoch=False)
    d.update(kw)
    return types.SimpleNamespace(**d)


def probs(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_schedules():
    assert L.confidence_threshold(1) == pytest.approx(0.81)
    assert L.confidence_threshold(20) == pytest.approx(1.0)
    assert L.confidence_threshold(25) > 1.0  # reproduced on purpose: nothing is confident late
    assert L.negative_weight(0) == pytest.approx(0.24)
    assert L.negative_weight(10) == pytest.approx(0.09)
    assert L.negative_weight(16) == 0.0 and L.negative_weight(30) == 0.0


def test_schedule_scaling_keeps_the_paper_shape():
    paper = Config()
    assert [paper.schedule_epoch(e) for e in (1, 10, 30)] == [1, 10, 30] and paper.relabel_run_epoch == 10
    short = Config(epochs=6)  # run epoch e stands for paper epochs 5e-4 .. 5e: their mean is 5e-2
    assert [short.schedule_epoch(e) for e in range(1, 7)] == pytest.approx([3, 8, 13, 18, 23, 28])
    assert short.relabel_run_epoch == 2
    # tau_e is linear, so the run epoch gets exactly the mean of its block's paper values
    block = [L.confidence_threshold(e) for e in range(6, 11)]
    assert L.confidence_threshold(short.schedule_epoch(2)) == pytest.approx(sum(block) / 5)
    # lambda_n reaches 0 after 37% of the run (paper epoch 16 of 30), not at half of it
    lam = [L.negative_weight(short.schedule_epoch(e)) for e in range(1, 7)]
    assert lam == pytest.approx([0.195, 0.12, 0.045, 0, 0, 0])
    assert Config(epochs=4).relabel_run_epoch == 2  # 10/30 of 4 epochs = 1.33 -> epoch 2


def test_short_run_maps_per_visit_and_per_step_constants():
    paper = resolve("paper")
    assert (paper.run_weight_momentum, paper.run_proto_momentum, paper.run_ema, paper.run_head_lr_scale) == (0.99, 0.99, 0.999, 1.0)
    assert paper.negatives_per_visit(11871) == 1
    cpu = resolve("cpu")
    # 30 x 800 x 16 labeled draws in the paper, 6 x 150 x 16 here: one visit stands for 26.7
    assert cpu.visit_ratio == pytest.approx(30 * 800 / (6 * 150))
    assert cpu.run_weight_momentum == pytest.approx(0.99 ** 26.667, rel=1e-4)
    # the mapped momentum moves a weight as far in one visit as the paper's does in 26.7
    w = 0.0
    for _ in range(800 * 30 // (150 * 6) * 3):  # 80 paper visits = 3 mapped ones
        w = 0.99 * w + 0.01
    w_run = 0.0
    for _ in range(3):
        w_run = cpu.run_weight_momentum * w_run + (1 - cpu.run_weight_momentum)
    assert w_run == pytest.approx(w, abs=0.01)
    assert cpu.run_ema == pytest.approx(0.999 ** 26.667, rel=1e-4)
    assert cpu.run_head_lr_scale == pytest.approx(26.667, rel=1e-4)
    assert resolve("cpu", overrides={"head_lr_scale": 3.0}).run_head_lr_scale == 3.0
    assert resolve("cpu", overrides={"head_lr_scale": 1.0}).run_head_lr_scale == 1.0
    # 2,000 unlabeled faces: each is visited 7.2 times here against 32.3 in the paper -> 4 per visit
    assert cpu.negatives_per_visit(2000) == round(30 * 800 * 16 / 11871 / (6 * 150 * 16 / 2000)) == 4
    assert cpu.negatives_per_visit(4000) == 6  # 9.0, capped at K - 1
    assert cpu.negatives_per_visit(100) == 1 and cpu.negatives_per_visit(10**6) == 6
    raw = resolve("cpu", overrides={"short_run": False})
    assert (raw.run_weight_momentum, raw.run_ema, raw.negatives_per_visit(4000)) == (0.99, 0.999, 1)


def test_ambiguity_opens_a_closed_set_with_model_probabilities():
    st = L.LionState(torch.tensor([0, 1]), 0, K, 4)
    p = probs([0.1, 0.8, 0.02, 0.02, 0.02, 0.02, 0.02],   # y=0, max-p_y = 0.7 > 0.5: ambiguous
              [0.1, 0.6, 0.1, 0.05, 0.05, 0.05, 0.05])    # y=1: clear
    r = st.disambiguate(torch.tensor([0, 1]), p, torch.zeros(2, 4), it=1, cfg=params())
    assert r["ambiguous"].tolist() == [True, False]
    w = st.weights[0]
    assert w[0] == pytest.approx(0.1 / 0.9) and w[1] == pytest.approx(0.8 / 0.9)
    assert (w > 0).sum() == 2
    assert r["closed"].tolist() == [False, True]  # the open set leaves L_x
    assert st.weights[1].tolist() == F.one_hot(torch.tensor(1), K).float().tolist()


def test_open_set_update_follows_prototypes_and_takes_in_prediction():
    st = L.LionState(torch.tensor([0]), 0, K, 2)
    st.protos = torch.tensor([[1.0, 0], [0, 1.0], [0.7071, 0.7071], [0, 0], [0, 0], [0, 0], [0, 0]])
    st.weights[0] = torch.tensor([0.6, 0.4, 0, 0, 0, 0, 0])
    f = torch.tensor([[0.0, 1.0]])
    p = probs([0.05, 0.05, 0.84, 0.02, 0.02, 0.01, 0.01])  # predicts class 2: ambiguous
    st.disambiguate(torch.tensor([0]), p, f, it=1, cfg=params())
    cand = torch.tensor([True, True, True, False, False, False, False])
    logit = (f @ st.protos.t() / 0.1)[0].masked_fill(~cand, -math.inf)
    q = logit.softmax(0)
    w = torch.tensor([0.6, 0.4, 0, 0, 0, 0, 0])
    expect = w.clone()
    for c in (0, 2):  # {y, y_hat}; class 1 is a candidate but not updated
        expect[c] = 0.99 * w[c] + 0.01 * q[c]
    expect /= expect.sum()
    torch.testing.assert_close(st.weights[0], expect)
    assert st.weights[0][2] > 0  # the prediction joined the candidate set


def test_open_but_clear_sample_keeps_its_weights():
    st = L.LionState(torch.tensor([0]), 0, K, 2)
    st.weights[0] = torch.tensor([0.7, 0.3, 0, 0, 0, 0, 0])
    r = st.disambiguate(torch.tensor([0]), probs([0.6, 0.3, 0.02, 0.02, 0.02, 0.02, 0.02]), torch.zeros(1, 2), 1, params())
    assert st.weights[0].tolist() == pytest.approx([0.7, 0.3, 0, 0, 0, 0, 0])
    assert r["closed"].tolist() == [False]


def test_collapse_relabel_and_neutral_protection():
    # opening straight into a collapse: p_yhat / (p_y + p_yhat) = 0.997 >= 0.996 -> relabel
    st = L.LionState(torch.tensor([0, 4, 6, 2]), 0, K, 2)
    p = probs([0.001, 0.997, 0.0005, 0.0005, 0.0005, 0.0005, 0.0005],   # 0 -> 1: relabel
              [0.001, 0.001, 0.001, 0.001, 0.002, 0.001, 0.993],          # 4 -> neutral: protected
              [0.001, 0.001, 0.001, 0.993, 0.001, 0.001, 0.002],          # neutral -> 3: protected
              [0.01, 0.01, 0.01, 0.96, 0.005, 0.005, 0.0])               # 2 -> 3 at 0.99: closes, no relabel
    r = st.disambiguate(torch.arange(4), p, torch.zeros(4, 2), it=7, cfg=params())
    assert st.labels.tolist() == [1, 4, 6, 2]
    assert [int(w.argmax()) for w in st.weights] == [1, 6, 3, 3]
    assert ((st.weights > 0).sum(1) == 1).all()  # all collapsed to one-hot
    assert r["closed"].all()
    assert st.flush_events() == [(7, 0, 0, 1)]
    st2 = L.LionState(torch.tensor([4]), 0, K, 2)
    st2.disambiguate(torch.tensor([0]), p[1:2], torch.zeros(1, 2), 1, params(protect_neutral=False))
    assert st2.labels.tolist() == [6]


def test_bank_grows_one_class_per_visit_up_to_k_minus_1_and_never_above_delta():
    st = L.LionState(torch.tensor([0]), 2, K, 2)
    p = probs([0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.979],
              [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.88])  # nothing <= 0.01
    low = torch.tensor([True, True])
    sizes = []
    for _ in range(9):
        st.grow_bank(torch.tensor([0, 1]), p, low, 0.01, K - 1)
        sizes.append(int(st.bank[0].sum()))
    assert sizes == [1, 2, 3, 4, 5, 6, 6, 6, 6]
    assert st.bank[0].tolist() == [True] * 6 + [False]  # added least likely first
    assert not st.bank[1].any()
    st.grow_bank(torch.tensor([1]), probs([0.001] * 6 + [0.994]), torch.tensor([False]), 0.01, K - 1)
    assert not st.bank[1].any()  # confident samples gain nothing
    st.bank[0] = False
    st.bank[0, :6] = True
    st.grow_bank(torch.tensor([0]), p[:1], torch.tensor([True]), 1.0, K)  # the script's |C| < K quirk
    assert st.bank[0].all()


def test_bank_grows_several_classes_per_visit_in_a_mapped_short_run():
    st = L.LionState(torch.tensor([0]), 3, K, 2)
    p = probs([0.004, 0.5, 0.001, 0.45, 0.02, 0.003, 0.022],   # three classes <= 0.01
              [0.004, 0.5, 0.001, 0.45, 0.02, 0.003, 0.022],
              [0.004, 0.5, 0.001, 0.45, 0.02, 0.003, 0.022])
    st.bank[2, 5] = True  # already holds one; max size 2 leaves room for one more
    st.grow_bank(torch.tensor([0, 1, 2]), p, torch.tensor([True, True, False]), 0.01, K - 1, per_visit=2)
    assert st.bank[0].tolist() == [False, False, True, False, False, True, False]  # the two least likely
    st.grow_bank(torch.tensor([0]), p[:1], torch.tensor([True]), 0.01, K - 1, per_visit=2)
    assert st.bank[0].tolist() == [True, False, True, False, False, True, False]  # then the third, nothing above delta
    assert st.bank[2].tolist() == [False] * 5 + [True, False]  # high confidence: unchanged
    st.grow_bank(torch.tensor([1]), p[:1], torch.tensor([True]), 0.01, 2, per_visit=6)
    assert st.bank[1].tolist() == [False, False, True, False, False, True, False]  # capped by max_size


def test_instant_negatives_ablation():
    p = probs([0.001, 0.5, 0.005, 0.4, 0.05, 0.02, 0.024])
    neg = L.LionState.instant_negatives(p, torch.tensor([True]), 0.01)
    assert neg[0].tolist() == [True, False, True, False, False, False, False]


def test_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0, 0, 0, 0], [0.0, 1.0, 0, 0, 0, 0, 0]])
    keep = torch.tensor([True, False])
    assert L.labeled_loss(logits, torch.tensor([0, 1]), keep) == pytest.approx(F.cross_entropy(logits[:1], torch.tensor([0])).item())
    p = logits.softmax(1)
    neg = torch.zeros(2, K, dtype=torch.bool)
    neg[0, 3] = neg[0, 4] = True
    low = torch.tensor([True, True])
    expect = (-math.log(1 - p[0, 3]) - math.log(1 - p[0, 4])) / 2  # mean over both low samples
    assert L.negative_loss(p, neg, low) == pytest.approx(expect, rel=1e-5)
    s = torch.sigmoid(logits)
    r = s.max(1, keepdim=True).values - s
    bce = F.binary_cross_entropy(r, neg.float(), reduction="none").mean(1)
    assert L.strong_negative_loss(logits, neg, low) == pytest.approx(bce.mean().item(), rel=1e-5)
    lu, mask, pseudo = L.pseudo_label_loss(logits, p, 0.4)
    assert mask.tolist() == [True, False] and pseudo.tolist() == [0, 1]
    assert lu == pytest.approx(F.cross_entropy(logits[:1], torch.tensor([0])).item() / 2)
    w = torch.tensor([[0, 0, 0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0, 0]])
    assert L.partial_label_loss(logits, w, ~keep) == pytest.approx(-(0.5 * p[1, 0].log() + 0.5 * p[1, 1].log()).item(), rel=1e-5)


def test_prototype_ema_equals_sequential_updates_and_running_mean():
    torch.manual_seed(0)
    st = L.LionState(torch.tensor([0]), 0, K, 3)
    st.protos = torch.randn(K, 3)
    f, y = torch.randn(6, 3), torch.tensor([1, 2, 1, 1, 0, 2])
    use = torch.tensor([True, True, False, True, True, True])
    mu = st.protos.clone()
    for j in range(6):
        if use[j]:
            mu[y[j]] = 0.99 * mu[y[j]] + 0.01 * f[j]
    st.update_prototypes(f, y, use, running=False)
    torch.testing.assert_close(st.protos, mu)
    st.reset_running_mean()
    st.update_prototypes(f[:3], y[:3], use[:3], running=True)
    st.update_prototypes(f[3:], y[3:], use[3:], running=True)
    torch.testing.assert_close(st.protos[1], (f[0] + f[3]) / 2)
    torch.testing.assert_close(st.protos[2], (f[1] + f[5]) / 2)
    assert st.count.tolist()[:3] == [1, 2, 2]


def test_state_dict_round_trips():
    st = L.LionState(torch.tensor([0, 1, 2]), 4, K, 3)
    st.bank[1, 2] = True
    st.weights[0] = torch.tensor([0.5, 0.5, 0, 0, 0, 0, 0])
    st.relabels.append((3, 1, 1, 2))
    other = L.LionState(torch.tensor([0, 1, 2]), 4, K, 3)
    other.load_state_dict(st.state_dict())
    assert other.bank[1, 2] and other.weights[0, 1] == 0.5 and other.relabels == [(3, 1, 1, 2)]


def test_config_precedence_and_unknown_keys(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"epochs": 3, "lr": 0.1}')
    cfg = resolve("cpu", str(f), {"lr": 0.2})
    assert cfg.dataset == "synthfer" and cfg.epochs == 3 and cfg.lr == 0.2
    f.write_text('{"epoch": 3}')
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\]"):
        resolve("cpu", str(f))
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("gpu")
    with pytest.raises(ValueError, match="method="):
        resolve(None, None, {"method": "mixmatch"})
    with pytest.raises(ValueError, match="quirks"):
        resolve(None, None, {"quirks": "bgr,typo"})
