"""LION's update rules and losses against small hand-computed cases (spec section 2)."""
import math

import pytest
import torch
import torch.nn.functional as F

from lion_kit import losses as L
from lion_kit import mapping
from lion_kit import state as S
from lion_kit.config import Config, resolve
from lion_kit.mapping import RunMapping, negative_weight, relabel_run_epoch, schedule_epoch, tau

K = 7


def params(**kw):
    return S.LionParams(**kw)  # the paper's values unless given


def probs(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_schedules():
    assert tau(Config(), 1) == pytest.approx(0.81)
    assert tau(Config(), 20) == pytest.approx(1.0)
    assert tau(Config(), 25) > 1.0  # reproduced on purpose: nothing is confident late
    assert negative_weight(0) == pytest.approx(0.24)
    assert negative_weight(10) == pytest.approx(0.09)
    assert negative_weight(16) == 0.0 and negative_weight(30) == 0.0


def test_schedule_scaling_keeps_the_paper_shape():
    paper = Config()
    assert [schedule_epoch(paper, e) for e in (1, 10, 30)] == [1, 10, 30] and relabel_run_epoch(paper) == 10
    short = Config(epochs=6)  # run epoch e stands for paper epochs 5e-4 .. 5e: their mean is 5e-2
    assert [schedule_epoch(short, e) for e in range(1, 7)] == pytest.approx([3, 8, 13, 18, 23, 28])
    # E_r follows the same rule: run epoch 2 stands for paper epochs 6-10 (mean 8, before E_r = 10),
    # so disambiguation starts in epoch 3 and covers 4 of 6 epochs, as the paper's covers 21 of 30
    assert relabel_run_epoch(short) == 3
    assert relabel_run_epoch(Config(epochs=6, relabel_epoch=28)) == 6 and relabel_run_epoch(Config(epochs=6, relabel_epoch=30)) == 6
    # tau_e is linear, so the run epoch gets exactly the mean of its block's paper values
    block = [tau(Config(), e) for e in range(6, 11)]
    assert tau(short, schedule_epoch(short, 2)) == pytest.approx(sum(block) / 5)
    # lambda_n reaches 0 after 37% of the run (paper epoch 16 of 30), not at half of it
    lam = [negative_weight(schedule_epoch(short, e)) for e in range(1, 7)]
    assert lam == pytest.approx([0.195, 0.12, 0.045, 0, 0, 0])
    assert relabel_run_epoch(Config(epochs=4)) == 2  # blocks of 7.5 paper epochs: means 4.25, 11.75, ...


def test_short_run_maps_per_visit_and_per_step_constants():
    paper = RunMapping.of(resolve("paper", overrides={"pretrained": "none"}), 11871)
    assert (paper.weight_momentum, paper.proto_momentum, paper.ema, paper.head_lr_scale) == (0.99, 0.99, 0.999, 1.0)
    assert paper.negatives_per_visit == 1 and paper.decay_factor == 1 - 0.02 * 5e-4
    cpu_cfg = resolve("cpu")
    cpu = RunMapping.of(cpu_cfg, 4000)
    # 30 x 800 x 16 labeled draws in the paper, 6 x 150 x 16 here: one visit stands for 26.7
    assert mapping.visit_ratio(cpu_cfg) == pytest.approx(30 * 800 / (6 * 150))
    assert cpu.weight_momentum == pytest.approx(0.99 ** 26.667, rel=1e-4)
    # the mapped momentum moves a weight as far in one visit as the paper's does in 26.7
    w = 0.0
    for _ in range(800 * 30 // (150 * 6) * 3):  # 80 paper visits = 3 mapped ones
        w = 0.99 * w + 0.01
    w_run = 0.0
    for _ in range(3):
        w_run = cpu.weight_momentum * w_run + (1 - cpu.weight_momentum)
    assert w_run == pytest.approx(w, abs=0.01)
    assert cpu.ema == pytest.approx(0.999 ** 26.667, rel=1e-4)
    assert cpu.head_lr_scale == pytest.approx(26.667, rel=1e-4)
    assert RunMapping.of(resolve("cpu", overrides={"head_lr_scale": 3.0}), 4000).head_lr_scale == 3.0
    assert RunMapping.of(resolve("cpu", overrides={"head_lr_scale": 1.0}), 4000).head_lr_scale == 1.0
    # 1,000 unlabeled faces: each is visited 14.4 times here against 32.3 in the paper -> 2 per visit
    assert RunMapping.of(cpu_cfg, 1000).negatives_per_visit == round(30 * 800 * 16 / 11871 / (6 * 150 * 16 / 1000)) == 2
    # 4,000: 9.0 per visit would fill a set of K - 1 = 6 in one visit; capped at 3, it takes two or more
    assert cpu.negatives_per_visit == 3
    assert RunMapping.of(cpu_cfg, 100).negatives_per_visit == 1 and RunMapping.of(cpu_cfg, 10**6).negatives_per_visit == 3
    assert RunMapping.of(resolve("cpu", overrides={"negatives_per_visit": 6}), 4000).negatives_per_visit == 6  # set by hand: taken as given, not mapped
    # the decay: the run's 900 steps shrink the model as much as the paper's 24,000 (x0.787)
    assert cpu.decay_factor ** (6 * 150) == pytest.approx((1 - 0.02 * 5e-4) ** (30 * 800), rel=1e-9)
    assert cpu.decay_factor ** (6 * 150) == pytest.approx(0.787, abs=1e-3)
    assert RunMapping.of(resolve("cpu", overrides={"map_decay": False}), 4000).decay_factor == 1 - 0.02 * 5e-4
    raw = RunMapping.of(resolve("cpu", overrides={"short_run": False}), 4000)
    assert (raw.weight_momentum, raw.ema, raw.negatives_per_visit, raw.decay_factor) == (0.99, 0.999, 1, 1 - 0.02 * 5e-4)
    assert cpu.relabel_run_epoch == 3 and cpu.schedule_epoch == (3, 8, 13, 18, 23, 28)
    assert RunMapping.of(resolve("cpu", overrides={"lion_rules": "script"}), 4000).max_negatives == 7  # the script's |C| < K


def test_ambiguity_opens_a_closed_set_with_model_probabilities():
    st = S.LionState(torch.tensor([0, 1]), 0, K, 4)
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
    st = S.LionState(torch.tensor([0]), 0, K, 2)
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
    st = S.LionState(torch.tensor([0]), 0, K, 2)
    st.weights[0] = torch.tensor([0.7, 0.3, 0, 0, 0, 0, 0])
    r = st.disambiguate(torch.tensor([0]), probs([0.6, 0.3, 0.02, 0.02, 0.02, 0.02, 0.02]), torch.zeros(1, 2), 1, params())
    assert st.weights[0].tolist() == pytest.approx([0.7, 0.3, 0, 0, 0, 0, 0])
    assert r["closed"].tolist() == [False]


def test_collapse_relabel_and_neutral_protection():
    # opening straight into a collapse: p_yhat / (p_y + p_yhat) = 0.997 >= 0.996 -> relabel
    st = S.LionState(torch.tensor([0, 4, 6, 2]), 0, K, 2)
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
    st2 = S.LionState(torch.tensor([4]), 0, K, 2)
    st2.disambiguate(torch.tensor([0]), p[1:2], torch.zeros(1, 2), 1, params(protect_neutral=False))
    assert st2.labels.tolist() == [6]


def test_bank_grows_one_class_per_visit_up_to_k_minus_1_and_never_above_delta():
    st = S.LionState(torch.tensor([0]), 2, K, 2)
    p = probs([0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.979],
              [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.88])  # nothing <= 0.01
    low = torch.tensor([True, True])
    sizes = []
    for visit in range(9):
        st.grow_bank(torch.tensor([0, 1]), p, low, 0.01, K - 1)
        sizes.append(int(st.bank[0].sum()))
        if visit == 0:
            assert st.bank[0].tolist() == [True] + [False] * 6  # the least likely class enters first
        if visit == 1:
            assert st.bank[0].tolist() == [True, True] + [False] * 5
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
    st = S.LionState(torch.tensor([0]), 3, K, 2)
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
    neg = S.LionState.instant_negatives(p, torch.tensor([True]), 0.01)
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
    # a mix: only low-confidence samples count, and the mean is over them only
    neg2 = neg.clone()
    neg2[1, 0] = True
    mixed = torch.tensor([False, True])
    assert L.negative_loss(p, neg2, mixed) == pytest.approx(-math.log(1 - p[1, 0]), rel=1e-5)
    s2 = torch.sigmoid(logits)
    r2 = s2.max(1, keepdim=True).values - s2
    bce1 = F.binary_cross_entropy(r2[1], neg2[1].float())
    assert L.strong_negative_loss(logits, neg2, mixed) == pytest.approx(bce1.item(), rel=1e-5)
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
    st = S.LionState(torch.tensor([0]), 0, K, 3)
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
    st = S.LionState(torch.tensor([0, 1, 2]), 4, K, 3)
    st.labels[1] = 5
    st.bank[1, 2] = True
    st.weights[0] = torch.tensor([0.5, 0.5, 0, 0, 0, 0, 0])
    st.protos = torch.arange(K * 3, dtype=torch.float32).reshape(K, 3)
    st.count = torch.arange(K, dtype=torch.float32)
    st.relabels.append((3, 1, 1, 5))
    other = S.LionState(torch.tensor([0, 1, 2]), 4, K, 3)
    other.load_state_dict(st.state_dict())
    for k in ("labels", "given", "weights", "bank", "protos", "count"):
        assert torch.equal(getattr(other, k), getattr(st, k)), k
    assert other.relabels == [(3, 1, 1, 5)] and other.given.tolist() == [0, 1, 2]
    assert set(st.state_dict()) == {"labels", "given", "weights", "bank", "protos", "count", "relabels"}


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


# ----------------------------------------------------------------------------- candidate sets (intended)

def test_the_candidate_softmax_runs_over_the_candidate_set_only():
    """Prototypes chosen so that masking the softmax to the candidate set matters (the script's
    softmax over all K classes, logit 0 outside the support, is in test_script_rules.py)."""
    protos = torch.tensor([[1.0, 0], [0, 1.0], [0.6, 0.8], [-1, 0], [0, -1], [0.8, -0.6], [-0.6, 0.8]])
    f = torch.tensor([[0.6, 0.8]])
    p = probs([0.05, 0.05, 0.84, 0.02, 0.02, 0.01, 0.01])   # y = 0, y_hat = 2: ambiguous
    w0 = torch.tensor([0.6, 0.4, 0, 0, 0, 0, 0])             # open set {0, 1}; 2 joins now
    logits = (f @ protos.t() / 0.1)[0]
    st = S.LionState(torch.tensor([0]), 0, K, 2)
    st.protos, st.weights[0] = protos.clone(), w0.clone()
    st.disambiguate(torch.tensor([0]), p, f, 1, params(weight_momentum=0.5))
    cand = torch.tensor([1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    q = logits.masked_fill(~cand, -math.inf).softmax(0)
    w = w0.clone()
    for c in (0, 2):
        w[c] = 0.5 * w0[c] + 0.5 * q[c]
    torch.testing.assert_close(st.weights[0], w / w.sum())
    q_all = torch.where(w0 > 0, logits, torch.zeros(K)).softmax(0)  # the script's: class 2 gets logit 0, not 10
    assert q[2] > 0.5 and q_all[2] < 0.01


def test_an_opened_set_is_renormalised_so_a_sure_prediction_relabels_at_once():
    p = probs([0.001, 0.989, 0.002, 0.002, 0.002, 0.002, 0.002])  # y = 0, strongly predicts 1
    # (0.001, 0.989) / 0.990 -> 0.999 >= 0.996: relabelled (the script's raw 0.989 would only close)
    st = S.LionState(torch.tensor([0]), 0, K, 2)
    st.disambiguate(torch.tensor([0]), p, torch.zeros(1, 2), 1, params())
    assert st.labels[0] == 1 and st.flush_events() == [(1, 0, 0, 1)]


def test_bgr_quirk_normalises_bgr_pixels_with_rgb_statistics():
    from lion_kit.data import IMAGENET_MEAN, IMAGENET_STD, bgr_quirk
    img = torch.tensor([0.9, 0.5, 0.1])[:, None, None].expand(3, 2, 2)  # R, G, B
    m, s = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    x = (img - m) / s  # what the kit feeds
    got = bgr_quirk(x[None])[0]
    # the script's channel 0 is B = 0.1 normalised with R's statistics (0.485, 0.229), etc.
    want = torch.tensor([(0.1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.9 - 0.406) / 0.225])
    torch.testing.assert_close(got[:, 0, 0], want)
    assert not torch.allclose(got, x[None].flip(1)[0])  # a flip after normalising is not the same


def test_each_face_keeps_its_own_bank_row_unlike_the_scripts_mask_indexing():
    """The script indexes the bank with the 0/1 confidence mask used as integer indices (docs/lion.md
    quirk 1): every low-confidence face of a batch reads and writes row 1 (or 0). Reproduced here
    by hand to show what it does; the kit keeps one row per face, by dataset index."""
    p = probs([0.001, 0.3, 0.3, 0.1, 0.1, 0.1, 0.099], [0.3, 0.001, 0.3, 0.1, 0.1, 0.1, 0.099],
              [0.3, 0.3, 0.001, 0.1, 0.1, 0.1, 0.099])
    low = torch.tensor([True, True, True])
    script = torch.zeros(3, K, dtype=torch.bool)
    rows = low.long()                                    # the script's mask, used as indices: [1, 1, 1]
    script[rows] |= F.one_hot(p.argmin(1), K).bool()    # three faces write into one row
    assert script[[0, 2]].sum() == 0 and script[1].sum() == 1  # faces 0 and 2 have no row; row 1 holds one face's class
    st = S.LionState(torch.tensor([0]), 3, K, 2)
    st.grow_bank(torch.tensor([0, 1, 2]), p, low, 0.01, K - 1)
    assert st.bank.nonzero().tolist() == [[0, 0], [1, 1], [2, 2]]  # each face its own least likely class


# ----------------------------------------------------------------------------- a whole LION step

class _Net:
    """Stands in for the network: each input batch is a key (its first pixel) into fixed outputs."""

    def __init__(self, outputs):
        self.outputs = outputs

    def __call__(self, x):
        logits, f = self.outputs[int(x[0, 0, 0, 0])]
        return logits.clone().requires_grad_(), f


def _run(epoch, unl_true=None, **cfg_kw):
    from lion_kit.distributed import Group
    cfg = resolve("smoke", overrides=dict(epochs=30, schedule_epochs=30, relabel_epoch=10, **cfg_kw))
    from lion_kit.methods import Batch, Lion, RunContext
    lion = Lion(cfg, RunMapping.of(cfg, 2), RunContext([0, 1, 2], 2, None, unl_true, Group(), torch.device("cpu")))
    st = lion.state
    st.protos = torch.zeros(K, 3)  # 3-d features here
    big = 12.0
    lx = torch.full((3, K), -big)
    lx[0, 0] = lx[2, 2] = big
    lx[1, 1], lx[1, 2] = 1.0, 3.0                  # face 1 (label 1) is predicted as 2 (p 0.88): wrong and ambiguous
    fx = torch.eye(3)
    lu = torch.zeros(2, K)
    lu[0, 3] = big                                 # unlabeled face 0: confident, class 3
    fu = torch.tensor([[0.0, 0.6, 0.8], [0.8, 0.6, 0.0]])
    ls = torch.zeros(2, K)
    net = _Net({0: (lx, fx), 1: (lu, fu), 2: (ls, fu)})
    key = lambda k, n: torch.full((n, 3, 2, 2), float(k))  # noqa: E731
    b = Batch(x=key(0, 3), y=torch.tensor([0, 1, 2]), ix=torch.tensor([0, 1, 2]), uw=key(1, 2), us=key(2, 2), iu=torch.tensor([0, 1]))
    lion.begin_epoch(epoch)
    loss, stats = lion.step(net, b, it=1)
    return st, stats, fx, fu


def test_lion_step_prototype_sources_before_the_relabel_epoch():
    st, stats, fx, fu = _run(epoch=2)
    m = 0.99
    # labeled faces predicted right update their label's prototype; face 1 (label 1, predicted 2) does not
    torch.testing.assert_close(st.protos[0], (1 - m) * fx[0])
    torch.testing.assert_close(st.protos[1], torch.zeros(3))
    torch.testing.assert_close(st.protos[2], (1 - m) * fx[2])
    # confident unlabeled faces update their pseudo-label's prototype; low-confidence ones none
    torch.testing.assert_close(st.protos[3], (1 - m) * fu[0])
    assert st.protos[4:].abs().sum() == 0
    assert stats.mask_rate == 0.5 and stats.ambiguous_rate == 0  # no disambiguation before E_r
    assert stats.pseudo_right == 0  # no true classes known: nothing counted


def test_pseudo_label_precision_counts_confident_faces_that_hit_the_true_class():
    # unlabeled face 0 is confident with pseudo-label 3; face 1 is not confident
    assert _run(epoch=2, unl_true=torch.tensor([3, 3]))[1].pseudo_right == 0.5  # 1 of 2 faces: precision 0.5 / 0.5
    assert _run(epoch=2, unl_true=torch.tensor([4, 3]))[1].pseudo_right == 0.0


def test_lion_step_prototype_sources_from_the_relabel_epoch():
    st, stats, fx, fu = _run(epoch=10)
    # from E_r: clear labeled faces (0 and 2) update by running mean (count reset: the mean of one = f);
    # ambiguous face 1 opens its candidate set and updates nothing
    torch.testing.assert_close(st.protos[0], fx[0])
    torch.testing.assert_close(st.protos[2], fx[2])
    torch.testing.assert_close(st.protos[1], torch.zeros(3))
    assert stats.ambiguous_rate == pytest.approx(1 / 3, abs=1e-6) and st.weights[1, 1:3].tolist() == pytest.approx([0.119, 0.881], abs=1e-3)
    torch.testing.assert_close(st.protos[3], 0.01 * fu[0])  # unlabeled: EMA after epoch 1


def test_running_mean_resets_at_epoch_1_and_the_relabel_epoch(tmp_path, monkeypatch):
    from lion_kit.train import train
    seen = []
    real = S.LionState.reset_running_mean

    def spy(self):
        seen.append(int(self.count.sum()))
        real(self)

    monkeypatch.setattr(S.LionState, "reset_running_mean", spy)
    train("smoke", out=str(tmp_path / "r"), workers=0, epochs=3, iters=3, schedule_epochs=3, relabel_epoch=2)
    assert len(seen) == 2 and seen[0] == 0 and seen[1] > 0  # at the start of epoch 1 and of E_r = 2


def test_tau_max_bounds_the_threshold_only_when_set():
    paper = resolve("paper", overrides={"pretrained": "none"})
    assert tau(paper, 25) == pytest.approx(1.05)  # the paper's: past 1.0, nothing is confident
    capped = resolve("paper", overrides={"tau_max": 0.95, "pretrained": "none"})
    assert tau(capped, 5) == pytest.approx(0.85) and tau(capped, 25) == 0.95


def test_reclose_returns_a_no_longer_ambiguous_open_set_to_its_label():
    amb = probs([0.1, 0.8, 0.02, 0.02, 0.02, 0.02, 0.02])     # y = 0, ambiguous: opens {0, 1}
    clear = probs([0.7, 0.2, 0.02, 0.02, 0.02, 0.02, 0.02])   # y = 0, clear
    for reclose, want_closed in ((False, False), (True, True)):
        st = S.LionState(torch.tensor([0]), 0, K, 4)
        prm = S.LionParams(reclose=reclose)
        d = st.disambiguate(torch.tensor([0]), amb, torch.zeros(1, 4), 1, prm)
        assert not d["closed"][0]  # opened
        d = st.disambiguate(torch.tensor([0]), clear, torch.zeros(1, 4), 2, prm)
        assert bool(d["closed"][0]) is want_closed
        if reclose:
            assert st.weights[0].tolist() == [1.0] + [0.0] * 6 and st.labels[0] == 0 and not st.relabels
        else:
            assert (st.weights[0] > 0).sum() == 2  # the authors': it stays open, out of L_x
