"""`make demo`: the kit's main job, end to end, into one folder."""
from __future__ import annotations

import time
from pathlib import Path


def demo(out="runs/demo", quick: bool = False):
    import matplotlib
    matplotlib.use("Agg")
    from .data import load_dataset
    from .viz import class_table, sample_grid
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = load_dataset("synthfer", "train", size="tiny" if quick else "full")
    sample_grid(ds).savefig(out / "sample_grid.png", dpi=110, bbox_inches="tight")
    class_table(ds).to_csv(out / "class_table.csv", index=False)
    print(class_table(ds).to_string(index=False))
    print(f"[demo] data: {len(ds)} SynthFER faces, grid and class table in {out} ({time.perf_counter() - t0:.0f} s)")
