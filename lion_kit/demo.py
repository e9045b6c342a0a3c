"""`make demo`: the kit's main job, end to end, into one folder.

1. render SynthFER (cached) and write its sample grid and class table;
2. train LION with the `cpu` preset;
3. execute the five notebooks (00 needs no run; 01-04 use it) with papermill, and export each to HTML.
"""
from __future__ import annotations

import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute_notebook(name: str, out_dir: Path, parameters: dict, html: bool = True) -> Path:
    """Run one notebook with papermill into out_dir (and an HTML export beside it)."""
    import papermill as pm
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / name
    pm.execute_notebook(str(NOTEBOOKS / name), str(dst), parameters=parameters, kernel_name="python3",
                        progress_bar=False, cwd=str(Path.cwd()))
    if html:
        from nbconvert import HTMLExporter
        body, _ = HTMLExporter().from_filename(str(dst))
        dst.with_suffix(".html").write_text(body)
    return dst


def demo(out="runs/demo", quick: bool = False):
    import matplotlib
    matplotlib.use("Agg")
    from .data import load_dataset
    from .train import train
    from .viz import class_table, sample_grid
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    synth_size = "small" if quick else "full"
    ds = load_dataset("synthfer", "train", size=synth_size, image_size=32 if quick else 64)
    sample_grid(ds).savefig(out / "sample_grid.png", dpi=110, bbox_inches="tight")
    table = class_table(ds)
    table.to_csv(out / "class_table.csv", index=False)
    print(table.to_string(index=False))
    t1 = time.perf_counter()
    print(f"[demo] data: {len(ds)} SynthFER faces; grid and class table in {out} ({t1 - t0:.0f} s)")

    preset = "smoke" if quick else "cpu"
    run_dir = out / "lion_run"
    s = train(preset, overwrite=True, method="lion", n_labeled=100 if quick else 400, out=str(run_dir))
    t2 = time.perf_counter()
    print(f"[demo] LION ({preset} preset): last-epoch accuracy {s['last_epoch']['test_acc']:.3f}, "
          f"best epoch {s['best_epoch']['test_acc']:.3f} ({t2 - t1:.0f} s)")

    execute_notebook("00_lion_by_hand.ipynb", out / "nb00", {"out_dir": str(out / "nb00"), "interactive": False})
    # notebook 01 trains the fixmatch baseline (LION's own run is above), at half the budget
    budget = dict(synth_size="small", epochs=2, iters=6) if quick else dict(epochs=3)
    execute_notebook("01_train.ipynb", out / "nb01", {"method": "fixmatch", "preset": preset, "n_labeled": 100 if quick else 400,
                                                       "out_dir": str(out / "nb01"), **budget})
    for name, d in (("02_candidate_evolution.ipynb", "nb02"), ("03_negative_labels.ipynb", "nb03")):
        execute_notebook(name, out / d, {"run_dir": str(run_dir), "out_dir": str(out / d), "interactive": False})
    grid = dict(variants=["supervised", "fixmatch", "lion"], budgets=[100], seeds=[0], out_dir=str(out / "nb04"),
                preset=preset, results_dir="")
    from .results import ROOT, load
    if quick:
        grid.update(synth_size="small", epochs=2, iters=6)
    elif {"supervised", "fixmatch", "lion"} <= set((kept := load(ROOT).query("status == 'kept'"))["variant"]):
        # the committed grid, once it holds LION and both baselines: from results/, nothing trained
        grid.update(variants=sorted(set(kept["variant"])), budgets=[100, 400, 1000], seeds=[0, 1, 2],
                    results_dir=ROOT, train_missing=False)
    else:
        grid.update(epochs=3, iters=50)  # a taste of the grid; `results run` trains the full one
    execute_notebook("04_ablations.ipynb", out / "nb04", grid)
    from .runs import load_run
    readme_figures(load_run(run_dir), out / "figures", out / "nb04" / "runs.csv")
    t3 = time.perf_counter()
    print(f"[demo] notebooks executed ({t3 - t2:.0f} s); total {t3 - t0:.0f} s")
    print(f"[demo] look at: {out}/sample_grid.png, {run_dir}/summary.json, and the executed notebooks "
          f"{out}/nb0*/*.html (open in a browser) or `make lab`")


FIGURES = ("01_accuracy.png", "02_trajectories.png", "03_negative_growth.png", "04_ablations.png")


def readme_figures(run, out, ablation_csv=None):
    """One figure per notebook (the same calls the notebooks make), for the README."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from .viz import interesting_samples, plot_accuracy, plot_grid, plot_negative_growth, plot_weight_trajectories
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = {"01_accuracy.png": plot_accuracy(run), "02_trajectories.png": plot_weight_trajectories(run, interesting_samples(run, 4)),
            "03_negative_growth.png": plot_negative_growth(run)}
    if ablation_csv is not None:
        cells = pd.read_csv(ablation_csv)
        figs["04_ablations.png"] = plot_grid(cells[cells["status"].isin(("done", "reused", "kept"))])
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return sorted(figs)
