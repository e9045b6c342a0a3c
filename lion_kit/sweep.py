"""Ablation grids: methods x switches x label budgets x seeds, one training run per cell.

Each cell is an independent job in its own run directory (`<root>/<variant>/n<labels>_s<seed>`).
A cell whose summary.json exists with the same configuration is reused; a failed cell is
reported with its log and does not stop the others. Jobs go to a local process pool by
default, or to SLURM through submitit (`executor="slurm"`; "submitit-local" runs submitit's
local executor, which is how the tests cover that path without a cluster).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

VARIANTS = {
    "supervised": dict(method="supervised"),
    "fixmatch": dict(method="fixmatch"),
    "lion": dict(method="lion"),
    "lion-no-ld": dict(method="lion", disambiguation=False),
    "lion-no-nl": dict(method="lion", negative=False),
    "lion-nl-no-progression": dict(method="lion", progressive=False),
    "lion-no-sn": dict(method="lion", strong_negative=False),
}


def make_grid(variants=("supervised", "fixmatch", "lion"), budgets=(400,), seeds=(0,), root="runs/ablations",
              preset="cpu", **base) -> list[dict]:
    """One job description per cell. `base` holds config overrides shared by all cells."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; expected some of {sorted(VARIANTS)}")
    jobs = []
    for v in variants:
        for n in budgets:
            for s in seeds:
                out = Path(root) / v / f"n{n}_s{s}"
                jobs.append({"variant": v, "n_labeled": n, "seed": s, "preset": preset, "out": str(out),
                             "overrides": {**base, **VARIANTS[v], "n_labeled": n, "seed": s, "out": str(out)}})
    return jobs


def _finished(job) -> bool:
    from .config import resolve
    out = Path(job["out"])
    if not (out / "summary.json").is_file() or not (out / "config.json").is_file():
        return False
    want = dataclasses.asdict(resolve(job["preset"], None, job["overrides"]))
    have = json.loads((out / "config.json").read_text())
    ignore = {"workers", "threads", "device"}
    return all(have.get(k) == v for k, v in want.items() if k not in ignore)


def run_job(job) -> dict:
    """Train one cell with its output in <out>/log.txt; never raises."""
    from .train import train
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    os.environ["LION_KIT_PROGRESS"] = "0"
    row = {k: job[k] for k in ("variant", "n_labeled", "seed", "out")}
    try:
        with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            s = train(job["preset"], None, overwrite=True, **job["overrides"])
        return {**row, "status": "done", **_row(s)}
    except BaseException as e:  # noqa: BLE001 - a failed cell is reported, the grid goes on
        with open(log, "a") as f:
            f.write(traceback.format_exc())
        return {**row, "status": "failed", "error": f"{type(e).__name__}: {e}", "log": str(log)}


def _row(s: dict) -> dict:
    r = {"acc": s["last_epoch"]["test_acc"], "mca": s["last_epoch"]["test_mca"],
         "best_acc": s["best_epoch"]["test_acc"], "relabel_precision": s.get("relabel_precision"),
         "neg_precision": s.get("neg_precision"), "relabels": s.get("relabels"), "wall_s": s["wall_s"]}
    if "last_epoch_true" in s:
        r["acc_true"] = s["last_epoch_true"]["test_acc"]
    return r


def run_grid(jobs, workers: int = 1, executor: str = "local", slurm: dict | None = None, progress=True) -> pd.DataFrame:
    """Run (or reuse) every job; one row per cell, failures included."""
    rows, todo = [], []
    for j in jobs:
        if _finished(j):
            s = json.loads((Path(j["out"]) / "summary.json").read_text())
            rows.append({**{k: j[k] for k in ("variant", "n_labeled", "seed", "out")}, "status": "reused", **_row(s)})
        else:
            todo.append(j)
    if todo and executor == "local":
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        for j in todo:
            j["overrides"].setdefault("threads", threads)
            if workers > 1:
                j["overrides"].setdefault("workers", 0)
        if workers <= 1:
            it = (run_job(j) for j in todo)
            rows.extend(_progress(it, len(todo), progress))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
                futs = [ex.submit(run_job, j) for j in todo]
                rows.extend(_progress((f.result() for f in as_completed(futs)), len(todo), progress))
    elif todo and executor in ("slurm", "submitit-local"):
        try:
            import submitit
        except ImportError as e:
            raise RuntimeError(f"executor={executor!r} needs submitit: pip install submitit") from e
        folder = Path(todo[0]["out"]).parent.parent / "submitit"
        ex = submitit.AutoExecutor(folder=folder, cluster="local" if executor == "submitit-local" else None)
        ex.update_parameters(**(slurm or {"timeout_min": 60}))
        handles = [ex.submit(run_job, j) for j in todo]
        rows.extend(h.result() for h in handles)
    elif todo:
        raise ValueError(f"executor={executor!r}; expected local, slurm or submitit-local")
    df = pd.DataFrame(rows)
    failed = df[df["status"] == "failed"] if "status" in df else df.iloc[:0]
    for _, r in failed.iterrows():
        print(f"[sweep] FAILED {r['variant']} n={r['n_labeled']} seed={r['seed']}: {r['error']} (log: {r['log']})")
    return df


def _progress(it, total, on):
    if not on:
        return list(it)
    from tqdm.auto import tqdm
    return list(tqdm(it, total=total, desc="runs"))


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """mean ± std over seeds per (variant, budget) of every metric column. The std is the sample
    standard deviation (ddof=1); with one seed there is none, and only the mean is shown."""
    ok = df[df["status"].isin(["done", "reused"])]
    cols = [c for c in ("acc", "mca", "acc_true", "best_acc", "relabel_precision", "neg_precision") if c in ok]
    g = ok.groupby(["variant", "n_labeled"])[cols]
    mean, std, n = g.mean(), g.std(ddof=1), g.size()
    out = mean.copy()
    for c in cols:
        out[c] = [("" if pd.isna(m) else f"{m:.3f}" if pd.isna(s) else f"{m:.3f} ± {s:.3f}") for m, s in zip(mean[c], std[c])]
    out["seeds"] = n
    order = {v: i for i, v in enumerate(VARIANTS)}
    return out.reset_index().sort_values(["n_labeled", "variant"], key=lambda s: s.map(order) if s.name == "variant" else s)


def plot_grid(df: pd.DataFrame, metric="acc", ax=None):
    import matplotlib.pyplot as plt
    ok = df[df["status"].isin(["done", "reused"])]
    ax = ax or plt.subplots(figsize=(6.5, 3.8))[1]
    for v, g in ok.groupby("variant", sort=False):
        s = g.groupby("n_labeled")[metric].agg(["mean", "std"]).fillna(0)  # one seed: no error bar
        ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label=v)
    ax.set(xscale="log", xlabel="labels", ylabel=metric, title=f"last-epoch {metric} (mean ± std over seeds)")
    ax.set_xticks(sorted(ok["n_labeled"].unique()), [str(x) for x in sorted(ok["n_labeled"].unique())])
    ax.legend(fontsize=8)
    return ax.figure
