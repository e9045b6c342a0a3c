"""The notebooks' ipywidgets explorers: controls above a figure that redraws when they change.

They draw with viz.py's functions; in JupyterLab the controls are live, under papermill the
first drawing is saved.
"""
from __future__ import annotations

import numpy as np

from .analysis import interesting_samples, run_given
from .labels import CLASSES
from .viz import _plt, negative_gallery, to_hwc


def candidate_explorer(run):
    """An ipywidgets control: scrub epochs and pick a labeled sample; shows its face, its
    candidate weights at that epoch and the labeled set's open-set count."""
    import ipywidgets as W
    plt = _plt()
    w = run.history["weights"].astype(np.float32)
    ds = run.dataset("train")
    lab, given = run.split["labeled"], run_given(run)
    samples = interesting_samples(run, 12)
    epoch = W.IntSlider(value=len(w), min=1, max=len(w), description="epoch", continuous_update=False)
    sample = W.Dropdown(options=[(f"#{s} given {CLASSES[given[s]]}", s) for s in samples], value=samples[0], description="sample")
    def render():
        e, s = epoch.value, sample.value
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(7, 2.8), gridspec_kw={"width_ratios": [1, 2]})
        a0.imshow(to_hwc(ds.raw(int(lab[s]))))
        a0.axis("off")
        a0.set_title(f"sample {s}, epoch {e}", fontsize=9)
        a1.bar(CLASSES, w[e - 1, s], color=["tab:red" if c == given[s] else "tab:blue" for c in range(len(CLASSES))])
        a1.set(ylim=(0, 1), title=f"candidate weights (red: given label); open sets: {int(((w[e - 1] > 0).sum(1) > 1).sum())}")
        a1.tick_params(axis="x", rotation=30, labelsize=8)
        fig.tight_layout()

    return _explorer([epoch, sample], render)


def _explorer(controls, render):
    """Controls above an output that `render()` redraws whenever a control's value changes;
    `box.draw()` redraws by hand (the tests use it)."""
    import ipywidgets as W
    out = W.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            render()
            _plt().show()

    for c in controls:
        c.observe(draw, "value")
    box = W.VBox([W.HBox(controls), out])
    box.draw = draw
    draw()
    return box


def negative_explorer(run):
    """Browse unlabeled faces and their complementary labels at any epoch."""
    import ipywidgets as W
    bank = run.history["bank"]
    epoch = W.IntSlider(value=len(bank), min=1, max=len(bank), description="epoch", continuous_update=False)
    page = W.IntSlider(value=0, min=0, max=20, description="page", continuous_update=False)
    return _explorer([epoch, page], lambda: negative_gallery(run, n=8, epoch=epoch.value - 1, seed=page.value))
