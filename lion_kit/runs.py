"""The run directory: atomic writes while training, `load_run` for notebooks.

A run directory holds config.json, metrics.jsonl, history.npz, relabels.csv, summary.json,
predictions.npz, last.pt and best.pt. Every file is written to a temporary name and renamed,
so a crash never leaves a half-written artifact; a failed write (a full disk) removes its
temporary file and names the file it could not write. best.pt is a hard link to the last.pt of
its epoch, so the best epoch's checkpoint takes no second copy of the disk.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "last.pt")


def _clean(x):
    """JSON-safe: NaN/inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _write_failed(path, tmp, e: OSError):
    """Remove the partial temporary file (a full disk stays no fuller) and say which file failed."""
    tmp.unlink(missing_ok=True)
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 2**30:.1f} GiB free there"
    except OSError:
        free = ""
    kept = "the previous file is kept" if path.exists() else "nothing was written"
    return OSError(e.errno, f"cannot write {path}: {e.strerror or e}{free}; {kept}")


_FAULTS: dict = {}


def fault_point(point: str):
    """Test-only: with LION_KIT_FAULT="POINT[@N]=SIG[:parent]" (e.g. "write:history.npz@2=KILL",
    "iter:2:5=INT") this process sends itself SIG the N-th time it reaches POINT (with `:parent`,
    it sends SIG to its parent: a grid worker stopping the grid). The tests stop a run at an exact
    place this way, instead of racing a timer against it."""
    spec = os.environ.get("LION_KIT_FAULT")
    if not spec or "=" not in spec:
        return
    where, sig = spec.rsplit("=", 1)
    sig, _, whom = sig.partition(":")
    name, _, n = where.partition("@")
    if name == point:
        _FAULTS[point] = _FAULTS.get(point, 0) + 1
        if _FAULTS[point] == int(n or 1):
            import signal
            os.kill(os.getppid() if whom == "parent" else os.getpid(), getattr(signal, f"SIG{sig}"))


def remove_stale_temporaries(out) -> int:
    """Remove the `.NAME.tmpPID` files that a killed process left in a run folder (nothing can
    stop SIGKILL between writing a temporary and renaming it; the final files stay whole)."""
    stale = [f for f in Path(out).glob(".*.tmp*") if f.is_file()]
    for f in stale:
        f.unlink(missing_ok=True)
    return len(stale)


def atomic_write_bytes(path, data: bytes):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"write:{path.name}")
        os.replace(tmp, path)
    except OSError as e:
        raise _write_failed(path, tmp, e) from e


def atomic_link(src, dst):
    """`dst` becomes the same file as `src`, atomically: a hard link where the filesystem has them
    (a 180 MB checkpoint saved as best.pt and last.pt takes the disk once; rewriting last.pt
    later replaces its name, not the shared bytes), a copy where it does not."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        raise _write_failed(dst, tmp, e) from e


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode())


def write_json(path, obj):
    atomic_write_text(path, json.dumps(_clean(obj), indent=1) + "\n")


def write_jsonl(path, rows):
    atomic_write_text(path, "".join(json.dumps(_clean(r)) + "\n" for r in rows))


def write_npz(path, **arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_torch(path, obj):
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- checkpoints

NOT_CONFIG = ("out", "workers", "device", "threads")  # may change on resume: they do not change a number


def read_checkpoint(path: Path, map_location="cpu", purpose: str = "cannot read") -> dict:
    """A checkpoint of this kit (last.pt, best.pt), read: the one reader of checkpoints. A file
    that is missing, truncated or not the kit's is an error that begins with `purpose`."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{purpose}: {path} does not exist")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
        ck["config"], ck["model"], ck["ema"], ck["state"]  # noqa: B018 - a checkpoint of this kit
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear error
        best = path.with_name("best.pt")
        hint = (f"; {best} exists (the best epoch so far): copy it to {path.name} to resume from there"
                if best.is_file() and path.name != "best.pt" else "")
        raise ValueError(f"{purpose}: {path} is truncated or not a lion_kit checkpoint ({type(e).__name__}: {e}){hint}. "
                         "Nothing was overwritten") from None
    return ck


def load_checkpoint(path: Path, config: dict, map_location=None) -> dict:
    """A checkpoint to resume from, checked: readable, of this kit, and made with `config` (but
    for the keys of NOT_CONFIG). Every failure says what to do and that nothing was overwritten."""
    path = Path(path)
    ck = read_checkpoint(path, map_location, "cannot resume")
    saved = {k: v for k, v in ck["config"].items() if k not in NOT_CONFIG}
    diff = {k: (saved[k], config[k]) for k in saved if k in config and saved[k] != config[k]}
    if diff:
        raise ValueError(f"cannot resume {path}: configuration differs (saved, now): {diff}")
    return ck


def write_epoch_artifacts(out: Path, metrics, timing, history: dict | None, relabel_rows, predictions: dict | None):
    """Everything a reader needs after an epoch, each file atomically: metrics.jsonl, timing.jsonl,
    history.npz (per-epoch snapshots of the per-sample state), relabels.csv, predictions.npz."""
    write_jsonl(out / "metrics.jsonl", metrics)
    write_jsonl(out / "timing.jsonl", timing)
    if history and history["weights"]:
        write_npz(out / "history.npz", **{k: np.stack(v) for k, v in history.items()})
    atomic_write_text(out / "relabels.csv", "\n".join(["iteration,index,id,old,new,true", *relabel_rows]) + "\n")
    if predictions is not None:
        write_npz(out / "predictions.npz", **predictions)


LOCK_NAME = ".lock"


class RunLock:
    """Held while a training process writes into a run folder; `close()` releases it."""

    _held: set = set()  # folders this process holds: record locks do not exclude their own process

    def __init__(self, out: Path, f):
        self.out, self._f = out, f

    def close(self):
        if self._f is not None:
            RunLock._held.discard(self.out)
            self._f.close()
            self._f = None


def lock_run_dir(out: Path) -> RunLock:
    """An exclusive lock on `out` for as long as this process holds it: a second run on the same
    folder (a sweep scheduled twice, two shells, two notebook cells) is refused instead of both
    writing into it. A POSIX record lock (`lockf`), not `flock`: it belongs to the process, so
    forked DataLoader workers do not inherit it and a killed trainer frees the folder at once,
    even while its workers are still winding down."""
    import fcntl
    out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()

    def busy(holder):
        return FileExistsError(f"{out} is in use by a running training process ({holder}); "
                               "wait for it to finish or choose another --out")
    if key in RunLock._held:  # checked before opening: closing any descriptor drops our own lock
        raise busy(f"pid {os.getpid()}, this process")
    f = open(out / LOCK_NAME, "a+")
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise busy(holder) from None
    f.seek(0); f.truncate(); f.write(f"pid {os.getpid()}"); f.flush()
    RunLock._held.add(key)
    return RunLock(key, f)


def holds_run(path) -> bool:
    path = Path(path)
    return any((path / f).exists() for f in RUN_FILES)


@dataclasses.dataclass
class Run:
    """A finished (or running) run directory, read back."""

    path: Path
    config: dict
    metrics: "object"       # pandas DataFrame, one row per epoch
    summary: dict
    history: dict           # name -> array with a leading epoch axis
    relabels: "object"      # pandas DataFrame (iteration, index, id, old, new, true)
    predictions: dict       # test-set pred / target / true (SynthFER) of the last epoch
    split: dict             # labeled / unlabeled dataset indices
    _datasets: dict = dataclasses.field(default_factory=dict, repr=False)

    def dataset(self, split: str = "train"):
        """The run's dataset (same options, and on the train split the labels the run was given,
        injected noise included), e.g. to show the faces behind its samples. Loaded once per
        split: galleries and widget redraws reuse it."""
        if split not in self._datasets:
            from .data import load_dataset, synth_options, with_label_noise
            c = self.config
            ds = load_dataset(c["dataset"], split, root=c["data_root"], **synth_options(c))
            if split == "train" and c.get("label_noise"):
                ds = with_label_noise(ds, c["label_noise"], c["split_seed"])
            self._datasets[split] = ds
        return self._datasets[split]


def load_run(path) -> Run:
    import pandas as pd
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a run directory: config.json missing")
    config = json.loads((path / "config.json").read_text())
    mfile = path / "metrics.jsonl"
    metrics = pd.read_json(mfile, lines=True) if mfile.is_file() and mfile.stat().st_size else pd.DataFrame()
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else {}
    history, predictions, split = {}, {}, {}
    for name, target in (("history.npz", history), ("predictions.npz", predictions), ("split.npz", split)):
        if (path / name).is_file():
            with np.load(path / name) as z:
                target.update({k: z[k] for k in z.files})
    rfile = path / "relabels.csv"
    relabels = pd.read_csv(rfile) if rfile.is_file() else pd.DataFrame(columns=["iteration", "index", "id", "old", "new", "true"])
    return Run(path, config, metrics, summary, history, relabels, predictions, split)
