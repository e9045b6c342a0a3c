"""LION by hand: notebook 00's toy experiments, computed by the kit's own rules.

Every number here comes from the code the trainer runs -- `LionState.disambiguate` and
`grow_bank` (state.py), the losses in `losses.py`, the schedules of `mapping.py` -- applied to
inputs a student chooses (a probability vector, a 2-D feature and prototypes). Nothing is re-implemented,
so what the lesson shows is what training does.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import losses as L
from . import state as S
from .config import Config, resolve
from .mapping import RunMapping
from .labels import CLASSES, NUM_CLASSES as K


def as_probs(values) -> torch.Tensor:
    """Seven non-negative numbers -> a (1, 7) probability vector (normalised to sum to 1)."""
    v = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(1, -1)
    if v.shape[1] != K or bool((v < 0).any()) or float(v.sum()) <= 0:
        raise ValueError(f"probabilities={list(np.asarray(values).ravel())}; expected {K} non-negative numbers, not all 0")
    return v / v.sum()


def _params(**kw) -> S.LionParams:
    return S.LionParams(**kw)


def one_visit(probs, label: int, delta_amb: float = 0.5) -> dict:
    """A labeled face with given `label` and model probabilities `probs`, visited once from E_r
    on: is it ambiguous, and which candidate set opens with which weights?"""
    p = as_probs(probs)
    st = S.LionState(torch.tensor([label]), 0, K, dim=2)
    d = st.disambiguate(torch.tensor([0]), p, torch.zeros(1, 2), 1, _params(delta_amb=delta_amb))
    w = st.weights[0]
    return {"label": CLASSES[label], "predicted": CLASSES[int(p.argmax())],
            "gap": float(p.max() - p[0, label]), "ambiguous": bool(d["ambiguous"][0]),
            "in_L_x": bool(d["closed"][0]),
            "candidates": {CLASSES[c]: round(float(w[c]), 4) for c in range(K) if w[c] > 0}}


def prototypes_2d(spread: float = 1.0) -> torch.Tensor:
    """Seven class prototypes on the unit circle (a 2-D stand-in for the 512-d features)."""
    a = torch.arange(K, dtype=torch.float32) * 2 * torch.pi / K
    return spread * torch.stack([a.cos(), a.sin()], 1)


def feature_between(protos: torch.Tensor, a: int, b: int, t: float) -> torch.Tensor:
    """A unit feature a share `t` of the way from prototype `a` to prototype `b`."""
    f = (1 - t) * protos[a] + t * protos[b]
    return (f / f.norm())[None]


def visits(probs, label: int, t: float = 0.8, n: int = 600, momentum: float = 0.99, temp: float = 0.1,
           collapse_at: float = 0.985, relabel_at: float = 0.996) -> pd.DataFrame:
    """Visit one ambiguous face `n` times. The model keeps predicting the same class, and the
    face's feature sits a share `t` of the way from its label's prototype to the predicted one's.
    One row per visit: the weights of the label and the prediction, the set's state, the
    training label. `momentum` 0.99 is the paper's; a short run maps it per visit."""
    p = as_probs(probs)
    pred = int(p.argmax())
    protos = prototypes_2d()
    st = S.LionState(torch.tensor([label]), 0, K, dim=2)
    st.protos = protos.clone()
    f = feature_between(protos, label, pred, t)
    prm = _params(weight_momentum=momentum, proto_temp=temp, collapse_at=collapse_at, relabel_at=relabel_at,
                  protect_neutral=False)
    rows = []
    for v in range(1, n + 1):
        st.disambiguate(torch.tensor([0]), p, f, v, prm)
        w = st.weights[0]
        state = "open" if int((w > 0).sum()) > 1 else ("relabelled" if int(st.labels[0]) != label else "closed")
        rows.append({"visit": v, f"w_{CLASSES[label]}": float(w[label]), f"w_{CLASSES[pred]}": float(w[pred]),
                     "state": state, "training_label": CLASSES[int(st.labels[0])]})
        if state != "open":  # collapsed (and maybe relabelled): nothing moves any more
            break
    return pd.DataFrame(rows)


def schedules(preset: str = "cpu") -> pd.DataFrame:
    """tau_e and lambda_n over the paper's 30 epochs, and at each run epoch of `preset` (the
    block mean of the paper epochs it stands for)."""
    rows = []
    for name, cfg in (("paper", Config()), (preset, resolve(preset))):
        m = RunMapping.of(cfg, 1)
        rows += [{"schedule": name, "epoch": e, "paper_epoch": float(m.schedule_epoch[e - 1]), "tau": m.tau[e - 1],
                  "lambda_n": m.lambda_n[e - 1]} for e in range(1, cfg.epochs + 1)]
    return pd.DataFrame(rows)


def negatives(probs, n_visits: int = 4, delta_neg: float = 0.01, drift: float = 0.5) -> pd.DataFrame:
    """An unlabeled, low-confidence face visited `n_visits` times; between visits the model grows
    surer of the classes it already rules out (their probabilities shrink by `drift`). One row per
    visit: the complementary set grown one class per visit (progressive) against every class at
    or below delta_neg at once (no progression), and L_n, L_sn for the progressive set."""
    p = as_probs(probs)
    st = S.LionState(torch.tensor([0]), 1, K, dim=2)
    idx, low = torch.tensor([0]), torch.tensor([True])
    rows = []
    for v in range(1, n_visits + 1):
        bank = st.grow_bank(idx, p, low, delta_neg, K - 1, per_visit=1)
        instant = S.LionState.instant_negatives(p, low, delta_neg)
        logits = p.log()  # the strong view of the toy: the same prediction
        rows.append({"visit": v, "top_prob": float(p.max()),
                     "progressive": [CLASSES[c] for c in range(K) if bank[0, c]],
                     "instant": [CLASSES[c] for c in range(K) if instant[0, c]],
                     "L_n": float(L.negative_loss(p, bank, low)), "L_sn": float(L.strong_negative_loss(logits, bank, low))})
        shrink = torch.where(bank | (p <= 2 * delta_neg), p * drift, p)
        p = shrink / shrink.sum()
    return pd.DataFrame(rows)


def faces(soft_labels, size: int = 96, seed: int = 3) -> list[np.ndarray]:
    """One SynthFER person showing each soft label (a mix of the classes' action units), rendered
    by the dataset's own renderer with the same identity, pose and light."""
    from . import synth
    out = []
    for soft in soft_labels:
        s = np.asarray(soft, dtype=np.float32)
        au = (s / s.sum()) @ synth.PROTOTYPES
        rng = np.random.default_rng(seed)
        out.append(synth.render_face(au, rng, size, occlusion=0.0, identity=np.random.default_rng(seed + 1)))
    return out


# ----------------------------------------------------------------------------- figures

def plot_probs(probs, label: int, delta_amb: float = 0.5, ax=None):
    import matplotlib.pyplot as plt
    r = one_visit(probs, label, delta_amb)
    p = as_probs(probs)[0].numpy()
    ax = ax or plt.subplots(figsize=(6, 2.6))[1]
    colors = ["tab:green" if c == label else ("tab:red" if CLASSES[c] == r["predicted"] and r["ambiguous"] else "0.6")
              for c in range(K)]
    ax.bar(CLASSES, p, color=colors)
    ax.axhline(p[label] + delta_amb, color="k", ls=":", lw=1, label=f"p(label) + δ_amb = {p[label] + delta_amb:.2f}")
    ax.set(ylim=(0, 1), ylabel="probability",
           title=f"label {r['label']}: gap {r['gap']:.2f} → " + ("ambiguous, opens " + str(r["candidates"]) if r["ambiguous"] else "clear, stays in L_x"))
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure


def plot_visits(probs, label: int, t: float = 0.8, momenta=(0.99, 0.765), n: int = 600):
    """Left: prototypes and the face's feature in 2-D. Right: the label's weight over visits for
    each momentum, with the collapse (0.985) and relabel (0.996) lines."""
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    protos = prototypes_2d()
    pred = int(as_probs(probs).argmax())
    a.scatter(protos[:, 0], protos[:, 1], c="0.5")
    for c in range(K):
        a.annotate(CLASSES[c], protos[c].tolist(), fontsize=8, ha="center", va="bottom")
    f = feature_between(protos, label, pred, t)[0]
    a.scatter([f[0]], [f[1]], marker="*", s=160, c="tab:red", zorder=3)
    a.set(aspect="equal", xticks=[], yticks=[], xlim=(-1.35, 1.35), ylim=(-1.3, 1.35),
          title="prototypes (2-D); ★ the face's feature")
    for m in momenta:
        df = visits(probs, label, t, n, momentum=m)
        col = f"w_{CLASSES[pred]}"
        b.plot(df["visit"], df[col], label=f"momentum {m}: {df['state'].iloc[-1]} after {len(df)} visits")
    b.axhline(0.985, color="k", ls=":", lw=1)
    b.axhline(0.996, color="k", ls="--", lw=1)
    b.set(xscale="log", xlabel="visit (log)", ylabel=f"weight of {CLASSES[pred]}", ylim=(0, 1.02),
          title="candidate weight of the predicted class (collapse 0.985 ··· relabel 0.996 - -)")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_schedules(preset: str = "cpu"):
    import matplotlib.pyplot as plt
    df = schedules(preset)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, col, name in zip(axes, ("tau", "lambda_n"), ("τ_e (confidence threshold)", "λ_n (negative-loss weight)")):
        p, r = df[df.schedule == "paper"], df[df.schedule == preset]
        ax.plot(p.paper_epoch, p[col], "-", color="k", label="paper, 30 epochs")
        ax.plot(r.paper_epoch, r[col], "o", color="tab:red", label=f"{preset} run epochs at their block's mean")
        ax.set(xlabel="paper epoch", title=name)
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="tab:blue", ls=":", label="1.0: no probability can reach it")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_faces(soft_labels, titles, size: int = 96):
    import matplotlib.pyplot as plt
    imgs = faces(soft_labels, size)
    fig, axes = plt.subplots(1, len(imgs), figsize=(2.2 * len(imgs), 2.6))
    for ax, im, t in zip(np.atleast_1d(axes), imgs, titles):
        ax.imshow(im)
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    return fig


def ambiguity_widget(label: int = 0):
    """Sliders for a probability vector, the given label and δ_amb; the figure redraws."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    start = [0.10, 0.60, 0.05, 0.05, 0.10, 0.05, 0.05]
    sliders = [W.FloatSlider(value=v, min=0, max=1, step=0.01, description=c) for v, c in zip(start, CLASSES)]
    lab = W.Dropdown(options=[(c, i) for i, c in enumerate(CLASSES)], value=label, description="label")
    delta = W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="δ_amb")
    out = W.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            plot_probs([s.value for s in sliders], lab.value, delta.value)
            plt.show()
    for w in (*sliders, lab, delta):
        w.observe(draw, "value")
    draw()
    return W.HBox([W.VBox([*sliders, lab, delta]), out])
