"""Training: supervised, FixMatch and LION on any supported dataset (the command line is in cli.py).

`python -m lion_kit train --method lion --dataset synthfer --preset cpu --n-labeled 400 --out runs/x`
(also under `torchrun --nproc_per_node=N -m lion_kit train ...`). One iteration follows
../shared/LION_SPEC.md section 2 (each method, its settings and its state are in methods.py); the
run directory is described in runs.py. Read `Trainer.train` top to bottom: one epoch is
`_train_epoch` then `_end_epoch`.
"""
from __future__ import annotations

import dataclasses
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import distributed, progress
from .config import Config, resolve
from .data import IndexedSubset, InfiniteBatchSampler, TwoViews, bgr_quirk, build_data, eval_transform, strong_transform, weak_transform
from .evaluate import predict_labels
from .labels import NUM_CLASSES
from .mapping import RunMapping, visits
from .methods import LOSS_TERMS, METHODS, STATS, Batch, RunContext, build
from .metrics import epoch_row, run_summary
from .model import EMA, LionNet, load_pretrained
from .runs import (LOCK_NAME, atomic_link, fault_point, holds_run, load_checkpoint, lock_run_dir, remove_stale_temporaries,
                   save_torch, write_epoch_artifacts, write_json, write_npz)


class Trainer:
    """The run's state (model, EMA, optimiser, per-sample LION state, data, run folder) and its loop."""

    def __init__(self, cfg: Config, resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.rank, self.world = distributed.setup()
        self.group = distributed.Group(self.rank, self.world)
        self.main = self.rank == 0
        self.device = distributed.pick_device(cfg.device)
        if cfg.bf16:
            distributed.check_bf16(self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        self._lock = lock_run_dir(self.out) if self.main else None
        try:
            self._prepare_folder(resume, overwrite)
            self._setup(cfg)
            if resume:
                self._restore(self.out / "last.pt")
        except BaseException:
            self.release()
            raise

    def _prepare_folder(self, resume, overwrite):
        if not self.main:
            return
        if holds_run(self.out) and not (resume or overwrite):
            raise FileExistsError(f"{self.out} already holds a run; pass --resume to continue it or --overwrite to replace it")
        if (resume or overwrite) and (n := remove_stale_temporaries(self.out)):
            print(f"[run] removed {n} stale temporary file(s) an interrupted process left in {self.out}")
        if overwrite and not resume:
            for f in self.out.glob("*"):
                if f.is_file() and f.name not in (LOCK_NAME, "log.txt"):  # a grid cell's log is open
                    f.unlink()
        self.out.mkdir(parents=True, exist_ok=True)

    def _setup(self, cfg):
        _seed(cfg.seed)  # the same initial model on every rank
        self.train_ds, self.test_ds, self.lab_idx, self.unl_idx = build_data(cfg)
        size, pad = cfg.image_size, cfg.crop_padding
        self.labeled = IndexedSubset(self.train_ds, self.lab_idx, weak_transform(size, pad, METHODS[cfg.method].labeled_padding(cfg)))
        self.unlabeled = IndexedSubset(self.train_ds, self.unl_idx, TwoViews(weak_transform(size, pad), strong_transform(size, pad)))
        self.test_ds.transform = eval_transform(size)
        self.map = RunMapping.of(cfg, len(self.unl_idx), NUM_CLASSES)  # the short-run mapping, once
        if cfg.dataset == "synthfer":  # render/load once in the parent; workers inherit the array
            _ = self.train_ds.images, self.test_ds.images

        self.model = LionNet(NUM_CLASSES, stem=cfg.stem).to(self.device)
        from .pretrain import resolve as resolve_pretrained
        weights = resolve_pretrained(cfg.pretrained, log=print if self.main else (lambda *a: None))
        self.pretrained = load_pretrained(self.model, weights) if weights else None
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, self.map.ema)
        self.net = self.model if self.world == 1 else torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        head = [self.model.fc.weight, self.model.fc.bias]
        trunk = [p for p in self.model.parameters() if all(p is not h for h in head)]
        self.opt = torch.optim.Adam([{"params": trunk}, {"params": head, "lr": cfg.lr * self.map.head_lr_scale}], lr=cfg.lr)
        self._floats = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        self._buffers = [b for _, b in self.model.named_buffers() if b.is_floating_point()]
        true = self.train_ds.true_targets  # known on SynthFER and FERPlus: the per-sample state is checked against it
        self.lab_true, self.unl_true = (None, None) if true is None else (
            torch.as_tensor(np.asarray(true)[self.lab_idx]), torch.as_tensor(np.asarray(true)[self.unl_idx], device=self.device))
        self.method = build(cfg, self.map, RunContext(self.labeled.targets, len(self.unl_idx), self.lab_true, self.unl_true,
                                                      self.group, self.device, self.ema))
        _seed(cfg.seed + self.rank)  # different dropout and augmentation draws per rank
        self.epoch, self.iter_in_epoch, self.metrics, self.best, self.timing = 0, 0, [], None, []
        self.hist = {}  # name -> per-epoch snapshots of the method's per-sample state
        self._new_epoch_sums()
        self._stop = None  # the signal that asked the loop to stop, if any

    def derived(self) -> dict:
        """What the run computes from its configuration, written beside it (config.json's
        "derived") so that readers (viz, notebooks, bench) need not rebuild the config."""
        return {**self.map.as_dict(), "labeled_faces": len(self.lab_idx), "unlabeled_faces": len(self.unl_idx),
                "visits_per_face": visits(self.cfg, len(self.lab_idx), len(self.unl_idx)),
                "pretrained": None if self.pretrained is None else self.pretrained["file"]}

    # ---- the loop
    def train(self) -> dict:
        try:
            if self.main:
                write_json(self.out / "config.json", {**dataclasses.asdict(self.cfg), "derived": self.derived()})
                write_npz(self.out / "split.npz", labeled=self.lab_idx, unlabeled=self.unl_idx)
            t_start = time.perf_counter()
            with _signals_set_flag(self):
                while self.epoch < self.cfg.epochs:
                    self._train_epoch(self.epoch + 1)
                    if self._stop is not None:
                        self._interrupted()
                    self._end_epoch(self.epoch + 1)
            return self.finish(time.perf_counter() - t_start)
        finally:
            self.release()

    def _train_epoch(self, epoch: int):
        """The epoch's iterations from where it stands (a resumed run skips those it did);
        returns at the end of the epoch or at the first iteration after a stop signal."""
        cfg, skip = self.cfg, self.iter_in_epoch
        if skip == 0:
            self._new_epoch_sums()
        self.method.begin_epoch(epoch, fresh=skip == 0)
        lx = iter(self.loader(self.labeled, cfg.batch_size, 0, skip))
        lu = iter(self.loader(self.unlabeled, cfg.unlabeled_batch_size, 1, skip)) if self.method.uses_unlabeled else None
        t0 = time.perf_counter()
        self.model.train()
        bar = progress.bar(range(skip, cfg.iters), off=not self.main, desc=f"{cfg.method} epoch {epoch}/{cfg.epochs}", leave=False)
        for i in bar:
            batch = self._next_batch(lx, lu)
            if batch is None:  # the loader's workers ended with the stop signal
                break
            stats = self.step(*batch, (epoch - 1) * cfg.iters + i + 1)
            self._sums += stats
            self._n += 1
            self.iter_in_epoch = i + 1
            fault_point(f"iter:{epoch}:{i + 1}")
            if i % 25 == 0 and self.main:
                bar.set_postfix(loss=f"{stats[STATS.index('loss')]:.3f}", mask=f"{stats[STATS.index('mask_rate')]:.2f}")
            if self._stop is not None:
                break
        self._seconds += time.perf_counter() - t0

    def _next_batch(self, lx, lu):
        try:
            return next(lx), (next(lu) if lu else None)
        except RuntimeError:
            if self._stop is None:  # a Ctrl-C in a terminal also reaches the loader workers
                raise
            return None

    def _interrupted(self):
        self.save()
        raise KeyboardInterrupt(f"signal {self._stop}: checkpoint written to {self.out / 'last.pt'} at epoch {self.epoch + 1}, "
                                f"iteration {self.iter_in_epoch}; continue with --resume")

    def _end_epoch(self, epoch: int):
        """Evaluate the EMA model, record the epoch, then write the checkpoint and the artifacts."""
        cfg, n = self.cfg, self._n
        pred = self.predict()
        row = epoch_row(self.method, dict(zip(STATS, (self._sums / max(n, 1)).tolist())), epoch, cfg.iters, self.model.fc.weight.detach().norm(dim=1),
                        pred, self.test_ds.targets, self.test_ds.true_targets, self.unl_true is not None)
        self.metrics.append(row)
        images = cfg.batch_size + (2 * cfg.unlabeled_batch_size if self.method.uses_unlabeled else 0)
        self.timing.append({"epoch": epoch, "seconds": self._seconds, "images_per_s": n * images * self.world / max(self._seconds, 1e-9)})
        self.epoch, self.iter_in_epoch = epoch, 0
        snap = self.method.snapshot() if cfg.history else None
        for k, v in (snap or {}).items():
            self.hist.setdefault(k, []).append(v)
        is_best = self.best is None or row["test_acc"] > self.best["test_acc"]
        if is_best:
            self.best = {"epoch": epoch, "test_acc": row["test_acc"], "test_mca": row["test_mca"]}
        self.save()  # the checkpoint first: artifacts are rewritten from it on resume
        if self.main:
            if is_best:
                atomic_link(self.out / "last.pt", self.out / "best.pt")
            self._write_artifacts(pred)
            print(f"[{cfg.method}] epoch {epoch}/{cfg.epochs} loss {row['loss']:.3f} test acc {row['test_acc']:.4f} "
                  f"mca {row['test_mca']:.4f} mask {row['mask_rate']:.2f} relabels {row['relabels']} "
                  f"neg {row['neg_mean_size']:.2f}", flush=True)

    # ---- one iteration
    def step(self, xb, ub, it: int) -> torch.Tensor:
        """One iteration: the method's losses (methods.py), then what every method shares: the
        Adam step, the extra weight decay, BN averaging across processes and the EMA update.
        Returns the iteration's statistics (methods.STATS) as one detached tensor."""
        b = self._to_device(xb, ub)
        with self._autocast():
            loss, stats = self.method.step(self.net, b, it)
        terms = torch.stack([getattr(stats, k) for k in LOSS_TERMS])
        if not bool(torch.isfinite(terms).all()):  # before the step: the model stays as it was
            self._nonfinite(it, self.epoch + 1, terms, b)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        ema_first = self.method.ema_before_decay
        with torch.no_grad():
            self.group.average_(self._buffers)  # BN statistics of each rank's last forward
            if ema_first:
                self.ema.update()
            torch._foreach_mul_(self._floats, self.map.decay_factor)
        if not ema_first:
            self.ema.update()
        return stats.stack()

    def _to_device(self, xb, ub) -> Batch:
        dev, bgr = self.device, self.cfg.bgr
        put = (lambda v: bgr_quirk(v.to(dev, non_blocking=True))) if bgr else (lambda v: v.to(dev, non_blocking=True))
        b = Batch(x=put(xb[0]), y=xb[1].to(dev, non_blocking=True), ix=xb[2].to(dev, non_blocking=True))
        if ub is not None:
            (uw, us), _, iu = ub
            b.uw, b.us, b.iu = put(uw), put(us), iu.to(dev, non_blocking=True)
        return b

    def _nonfinite(self, it, epoch, terms, b: Batch):
        losses = {k.replace("loss_", "L_"): v for k, v in zip(LOSS_TERMS, terms.tolist())}  # the paper's names
        bad = [f"{k} = {v:.4g}" for k, v in losses.items() if not np.isfinite(v)]
        where = self.out / "nonfinite.pt"
        if self.main:
            save_torch(where, {"iteration": it, "epoch": epoch, "losses": losses, "labeled_positions": b.ix.cpu(),
                               "unlabeled_positions": None if b.iu is None else b.iu.cpu(),
                               "model": self.model.state_dict(), "state": self.method.state_dict(),
                               "config": dataclasses.asdict(self.cfg)})
        last = f"last.pt (end of epoch {self.epoch})" if (self.out / "last.pt").is_file() else "no checkpoint yet"
        raise FloatingPointError(f"non-finite loss at iteration {it} (epoch {epoch}): {', '.join(bad)}; "
                                 f"the batch, the model before the step and the per-sample state are in {where}; "
                                 f"the last good checkpoint is {last}, left as it was")

    # ---- data, evaluation
    def loader(self, ds, batch, stream, skip=0):
        cfg = self.cfg
        sampler = InfiniteBatchSampler(len(ds), batch, cfg.seed, self.epoch + 1, stream, self.rank, self.world, skip)
        g = torch.Generator().manual_seed(sampler.seed + 17)
        return DataLoader(ds, batch_sampler=sampler, num_workers=cfg.workers, generator=g,
                          pin_memory=self.device.type == "cuda", prefetch_factor=4 if cfg.workers else None)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16)

    def predict(self, model=None) -> np.ndarray:
        """Test-split predictions of the EMA model (or `model`)."""
        return predict_labels(model or self.ema.module, self.test_ds, self.cfg.eval_batch_size, self.cfg.workers,
                              self.device, self.cfg.bgr, self._autocast)

    # ---- persistence
    def _new_epoch_sums(self):
        self._sums, self._n, self._seconds = torch.zeros(len(STATS), device=self.device), 0, 0.0

    def save(self, name="last.pt"):
        if self.main:
            save_torch(self.out / name, {
                "model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "state": self.method.state_dict(), "epoch": self.epoch, "iter_in_epoch": self.iter_in_epoch,
                "config": dataclasses.asdict(self.cfg), "metrics": self.metrics, "best": self.best,
                "history": self.hist, "timing": self.timing,
                "partial": {"sums": self._sums, "n": self._n, "seconds": self._seconds},
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}})

    def _restore(self, path):
        ck = load_checkpoint(path, dataclasses.asdict(self.cfg), map_location=self.device)
        self.model.load_state_dict(ck["model"]); self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"]); self.method.load_state_dict(ck["state"])
        self.epoch, self.iter_in_epoch = ck["epoch"], ck["iter_in_epoch"]
        self.metrics, self.best, self.hist, self.timing = ck["metrics"], ck["best"], ck["history"], ck["timing"]
        self._sums, self._n, self._seconds = ck["partial"]["sums"], ck["partial"]["n"], ck["partial"]["seconds"]
        r = ck["rng"]
        torch.set_rng_state(r["torch"].cpu()); np.random.set_state(r["numpy"]); random.setstate(r["python"])
        if r["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(r["cuda"])

    def _write_artifacts(self, pred):
        ids, true = self.labeled.ids, self.train_ds.true_targets
        rows = [f"{it},{i},{ids[i]},{o},{n},{'' if true is None else true[self.lab_idx[i]]}" for it, i, o, n in self.method.relabels]
        preds = {"pred": pred, "target": np.asarray(self.test_ds.targets)}
        if self.test_ds.true_targets is not None:
            preds["true"] = np.asarray(self.test_ds.true_targets)
        write_epoch_artifacts(self.out, self.metrics, self.timing, self.hist or None, rows, preds)

    def release(self):
        """Let another process use the run directory (also happens when this process exits)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def rank_fingerprints(self) -> list[list[float]]:
        """Sums of every rank's per-sample state (the method's), model and EMA; on one process a
        single row. Ranks that agree have equal rows."""
        v = torch.stack([*[x.to(self.device) for x in self.method.fingerprint()],
                         sum(p.double().sum() for p in self.model.parameters()),
                         sum(p.double().sum() for p in self.ema.module.parameters())]).to(self.device)
        return [t.tolist() for t in self.group.gather(v=v[None]).v]

    def finish(self, wall) -> dict:
        summary = run_summary(self, self.predict(), wall, self.rank_fingerprints())
        if self.main:
            write_json(self.out / "summary.json", summary)
        return summary


def _seed(s):
    random.seed(s); np.random.seed(s % 2**32); torch.manual_seed(s)


class _signals_set_flag:
    """SIGINT / SIGTERM set `trainer._stop`, which the loop checks after every iteration (only
    the main thread may install handlers: elsewhere, e.g. a notebook's worker thread, none are)."""

    def __init__(self, trainer):
        self.trainer, self.old = trainer, {}

    def _set(self, signum, frame):
        self.trainer._stop = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._set) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def train(preset: str | None = None, config_file: str | None = None, resume=False, overwrite=False, **overrides) -> dict:
    """Resolve a configuration (preset < file < keyword overrides), train, return the summary."""
    return Trainer(resolve(preset, config_file, overrides), resume=resume, overwrite=overwrite).train()
