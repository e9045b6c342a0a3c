"""Ablation grids: methods x switches x label budgets x seeds, one training run per cell.

Each cell is an independent job in its own run directory (`<root>/<variant>/n<labels>_s<seed>`).
A cell whose summary.json exists with the same configuration is reused; an interrupted cell
continues from its checkpoint; a failed cell is reported with its log (`log.txt` in its folder)
and does not stop the others. Jobs go to a local process pool by default, or to SLURM through
submitit (`executor="slurm"`; "submitit-local" runs submitit's local executor, which is how the
tests cover that path without a cluster).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from .grid import VARIANTS, cell_config, make_grid  # noqa: F401 - the grid's API, used with run_grid
from .results import keep as keep_cell, row as result_row, same_config

def _want(job) -> dict:
    return cell_config(job["preset"], job["overrides"])


def _finished(job, want: dict, kept=()) -> Path | None:
    """The folder (a kept cell, else the run) that already holds this job's result, if any."""
    for out in [Path(k) / job["key"] for k in kept if k] + [Path(job["out"])]:
        if (out / "summary.json").is_file() and (out / "config.json").is_file():
            if same_config(json.loads((out / "config.json").read_text()), want):
                return out
    return None


_GRID = {"parent": None, "stopped": False}  # in a pool worker: the grid's process, and whether a cell here was stopped


def _worker_init(parent: int):
    _GRID["parent"] = parent


def run_job(job) -> dict:
    """Train one cell with its output in <out>/log.txt; never raises, except KeyboardInterrupt
    when a signal stops the cell (its checkpoint written) or when the grid was stopped before it
    started: a pool worker whose cell was stopped, or whose grid process is gone, starts no other."""
    from .train import train
    if _GRID["stopped"] or (_GRID["parent"] is not None and os.getppid() != _GRID["parent"]):
        raise KeyboardInterrupt(f"cell {job['key']} not started: the grid was stopped")
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    os.environ["LION_KIT_PROGRESS"] = "0"
    row = {k: job[k] for k in ("variant", "n_labeled", "seed", "out")}
    resume = (out / "last.pt").is_file()
    try:
        with open(log, "a" if resume else "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            s = None
            if resume:  # an interrupted cell continues where its checkpoint left it
                try:
                    s = train(job["preset"], None, resume=True, **job["overrides"])
                except ValueError as e:  # another configuration, or an unreadable checkpoint: start afresh
                    print(f"[sweep] not resumed, training from the start: {e}")
            if s is None:
                s = train(job["preset"], None, overwrite=True, **job["overrides"])
        if job.get("keep"):  # committed as it lands: a session may end before the grid does
            keep_cell(out, Path(job["keep"]) / job["key"])
            if not job.get("keep_checkpoints"):
                drop_checkpoints(out)
        return {**row, "status": "done", "split_seed": _want(job)["split_seed"], **result_row(s)}
    except Exception as e:  # a failed cell is reported, the grid goes on
        with open(log, "a") as f:
            f.write(traceback.format_exc())
        return {**row, "status": "failed", "error": f"{type(e).__name__}: {e}", "log": str(log)}
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM stop the grid, not only this cell
        _GRID["stopped"] = True
        with open(log, "a") as f:
            f.write(traceback.format_exc())
        raise KeyboardInterrupt(_stopped(job)) from None
    except BaseException:
        with open(log, "a") as f:
            f.write(traceback.format_exc())
        raise


def drop_checkpoints(out) -> list[str]:
    """Remove a kept cell's checkpoints from its run folder (180-360 MB each, ~15 GB for the whole
    grid); its small files live on under results/. Returns the names removed."""
    gone = [f.name for f in (Path(out) / "last.pt", Path(out) / "best.pt") if f.is_file()]
    for name in gone:
        (Path(out) / name).unlink()
    return gone


def run_grid(jobs, workers: int = 1, executor: str = "local", slurm: dict | None = None, progress=True,
             keep: str | None = None, reuse: str | None = None, train_missing: bool = True,
             keep_checkpoints: bool = False) -> pd.DataFrame:
    """Run (or reuse) every job; one row per cell, failures included. `keep` (a folder such as
    results/synthfer-cpu): kept cells whose configuration matches are reused, and each newly
    finished cell is kept there. `reuse`: such a folder read, never written (notebooks).
    `train_missing=False` trains nothing and reports the cells not found as "missing". Once a cell
    is kept, its checkpoints are removed from its run folder unless `keep_checkpoints`."""
    rows, todo = [], []
    for j in jobs:
        want = _want(j)
        done = _finished(j, want, (keep, reuse))
        cell = {**{k: j[k] for k in ("variant", "n_labeled", "seed", "out")}, "split_seed": want["split_seed"]}
        if done is not None:
            rows.append({**cell, "status": "reused", **result_row(json.loads((done / "summary.json").read_text()))})
            if keep and done == Path(j["out"]):
                keep_cell(done, Path(keep) / j["key"])
                if not keep_checkpoints:
                    drop_checkpoints(done)
        elif not train_missing:
            rows.append({**cell, "status": "missing"})
        else:
            todo.append(j)
    for j in todo:
        j["keep"], j["keep_checkpoints"] = keep, keep_checkpoints
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
            rows.extend(_run_pool(todo, workers, progress))
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


def _run_pool(todo, workers, progress) -> list[dict]:
    """Cells in `workers` processes. Ctrl-C or SIGTERM to this process stops the whole grid: the
    cells not started are cancelled, the running ones get SIGTERM and write their checkpoints
    (the next `results run` continues them), and no worker outlives the grid or starts another
    cell — ProcessPoolExecutor alone would let its workers run the cells already queued."""
    import signal
    import threading

    def term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the stop short
        raise KeyboardInterrupt(f"signal {signum}")
    main = threading.current_thread() is threading.main_thread()  # only there can signals be handled
    old, old_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    if main:
        signal.signal(signal.SIGTERM, term)
    t0 = time.time() - 1
    ex = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(os.getpid(),))
    futs = [ex.submit(run_job, j) for j in todo]
    try:
        return list(_progress((f.result() for f in as_completed(futs)), len(todo), progress))
    except BaseException as e:  # a signal, or a worker that died: stop every worker before going on
        for sig in (signal.SIGTERM, signal.SIGINT) if main else ():  # a second signal must not cut checkpoints short
            signal.signal(sig, signal.SIG_IGN)
        procs = list((ex._processes or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
        if not isinstance(e, KeyboardInterrupt):
            raise
        said = [_stopped(j) for j in todo if (Path(j["out"]) / "log.txt").is_file()
                and (Path(j["out"]) / "log.txt").stat().st_mtime >= t0 and not (Path(j["out"]) / "summary.json").is_file()]
        raise KeyboardInterrupt("; ".join(said) or "the grid was stopped before a cell started") from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)
            signal.signal(signal.SIGINT, old_int)
        ex.shutdown(wait=False, cancel_futures=True)


def _stopped(job) -> str:
    """What became of a cell the grid's stop interrupted, read from its log (the worker's own
    message may not reach a pool that is shutting down)."""
    m = re.findall(r"at epoch (\d+), iteration (\d+)", (Path(job["out"]) / "log.txt").read_text())
    if m and (Path(job["out"]) / "last.pt").is_file():
        return (f"cell {job['key']} stopped at epoch {m[-1][0]}, iteration {m[-1][1]} with its checkpoint written; "
                "the next `results run` continues it from there")
    return f"cell {job['key']} stopped before its first checkpoint; the next `results run` trains it from the start"


def _progress(it, total, on):
    from .progress import bar, live
    if not on:
        return list(it)
    if live():
        return list(bar(it, total=total, desc="runs"))
    rows = []
    for r in it:  # a log: one line per finished cell
        rows.append(r)
        print(f"[grid] {len(rows)}/{total} {r['variant']} n={r['n_labeled']} seed={r['seed']}: {r['status']}"
              + (f", accuracy {r['acc']:.4f}" if "acc" in r else ""), flush=True)
    return rows
