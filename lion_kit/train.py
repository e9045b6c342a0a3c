"""Training: supervised, FixMatch and LION on any supported dataset (the command line is in cli.py).

`python -m lion_kit train --method lion --dataset synthfer --preset cpu --n-labeled 400 --out runs/x`
(also under `torchrun --nproc_per_node=N -m lion_kit train ...`). One iteration follows
../shared/LION_SPEC.md section 2; the run directory is described in lion_kit/runs.py.
"""
from __future__ import annotations

import dataclasses
import random
import resource
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import config as C
from . import losses as L
from . import distributed, progress
from .data import (IndexedSubset, InfiniteBatchSampler, TwoViews, bgr_quirk, build_data, eval_transform,
                   strong_transform, weak_transform)
from .labels import NEUTRAL, NUM_CLASSES
from .metrics import classification_report, state_report
from .model import LionNet, load_pretrained
from .steps import LOSS_TERMS, STATS, STEPS, Batch, max_negatives
from .runs import (LOCK_NAME, atomic_link, atomic_write_text, fault_point, holds_run, lock_run_dir, remove_stale_temporaries,
                   save_torch, write_json, write_jsonl, write_npz)


# ----------------------------------------------------------------------------- trainer

class Trainer:
    """Owns model, EMA, optimiser, per-sample state and the run directory."""

    def __init__(self, cfg: C.Config, resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.rank, self.world = distributed.setup()
        self.group = distributed.Group(self.rank, self.world)
        self.main = self.rank == 0
        self.device = distributed.pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        self._lock = None
        if self.main:
            self._lock = lock_run_dir(self.out)
        try:
            self._setup(cfg, resume, overwrite)
        except BaseException:
            self.release()
            raise

    def _setup(self, cfg, resume, overwrite):
        if self.main:
            if holds_run(self.out) and not (resume or overwrite):
                raise FileExistsError(f"{self.out} already holds a run; pass --resume to continue it "
                                      "or --overwrite to replace it")
            if (resume or overwrite) and (n := remove_stale_temporaries(self.out)):
                print(f"[run] removed {n} stale temporary file(s) an interrupted process left in {self.out}")
            if overwrite and not resume:
                for f in self.out.glob("*"):
                    if f.is_file() and f.name not in (LOCK_NAME, "log.txt"):  # a grid cell's log is open
                        f.unlink()
            self.out.mkdir(parents=True, exist_ok=True)
        self._seed(cfg.seed)  # the same initial model on every rank
        self.train_ds, self.test_ds, self.lab_idx, self.unl_idx = build_data(cfg)
        size, pad = cfg.image_size, cfg.crop_padding
        self.labeled = IndexedSubset(self.train_ds, self.lab_idx, weak_transform(size, pad))
        self.unlabeled = IndexedSubset(self.train_ds, self.unl_idx, TwoViews(weak_transform(size, pad), strong_transform(size, pad)))
        self.test_ds.transform = eval_transform(size)
        if cfg.dataset == "synthfer":  # render/load once in the parent; workers inherit the array
            _ = self.train_ds.images, self.test_ds.images

        self.model = LionNet(NUM_CLASSES, stem=cfg.stem).to(self.device)
        from .pretrain import resolve as resolve_pretrained
        weights = resolve_pretrained(cfg.pretrained, log=print if self.main else (lambda *a: None))
        self.pretrained = load_pretrained(self.model, weights) if weights else None
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = LionNet(NUM_CLASSES, stem=cfg.stem).to(self.device)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.eval().requires_grad_(False)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        head = [self.model.fc.weight, self.model.fc.bias]
        trunk = [p for p in self.model.parameters() if all(p is not h for h in head)]
        self.opt = torch.optim.Adam([{"params": trunk}, {"params": head, "lr": cfg.lr * cfg.run_head_lr_scale}], lr=cfg.lr)
        self._floats = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        ema_sd, sd = self.ema.state_dict(), self.model.state_dict()
        self._ema_pairs = ([ema_sd[k] for k in sd if sd[k].is_floating_point()], [sd[k] for k in sd if sd[k].is_floating_point()])
        self._ema_ints = [(ema_sd[k], sd[k]) for k in sd if not sd[k].is_floating_point()]
        self._buffers = [b for n, b in self.model.named_buffers() if b.is_floating_point()]
        true = self.train_ds.true_targets  # known on SynthFER and FERPlus: the per-sample state is checked against it
        self.lab_true, self.unl_true = (None, None) if true is None else (
            torch.as_tensor(np.asarray(true)[self.lab_idx]), torch.as_tensor(np.asarray(true)[self.unl_idx], device=self.device))
        self.state = L.LionState(self.labeled.targets, len(self.unl_idx), NUM_CLASSES, 512, self.device)
        self._ema_decay, self._decay = cfg.run_ema, cfg.run_decay_factor
        self._method_step = STEPS[cfg.method]
        self.max_negatives = max_negatives(cfg.quirk_list)
        self.negatives_per_visit = cfg.run_negatives_per_visit(len(self.unl_idx), NUM_CLASSES)
        self._seed(cfg.seed + self.rank)  # different dropout and augmentation draws per rank
        self.epoch, self.iter_in_epoch, self.metrics, self.best = 0, 0, [], None
        self.hist = {"weights": [], "labels": [], "bank": [], "protos": []}
        self.timing = []
        self._sums, self._n, self._seconds = torch.zeros(len(STATS), device=self.device), 0, 0.0
        self._stop = None
        if resume:
            self._load(self.out / "last.pt")

    # ---- helpers
    @staticmethod
    def _seed(s):
        random.seed(s); np.random.seed(s % 2**32); torch.manual_seed(s)

    def _autocast(self):
        on = self.cfg.bf16 and self.device.type == "cuda"
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on) if self.device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def _loader(self, ds, batch, stream, skip=0):
        cfg = self.cfg
        sampler = InfiniteBatchSampler(len(ds), batch, cfg.seed, self.epoch + 1, stream, self.rank, self.world, skip)
        g = torch.Generator().manual_seed(sampler.seed + 17)
        return DataLoader(ds, batch_sampler=sampler, num_workers=cfg.workers, generator=g,
                          pin_memory=self.device.type == "cuda", prefetch_factor=4 if cfg.workers else None)

    def derived(self) -> dict:
        """What the run computes from its configuration, written beside it (config.json's
        "derived") so that readers (viz, notebooks, bench) need not rebuild the config."""
        cfg = self.cfg
        return {"relabel_run_epoch": cfg.relabel_run_epoch,
                "schedule_epoch": [cfg.schedule_epoch(e) for e in range(1, cfg.epochs + 1)],
                "weight_momentum": cfg.run_weight_momentum, "proto_momentum": cfg.run_proto_momentum,
                "ema": self._ema_decay, "decay_factor": self._decay, "head_lr_scale": cfg.run_head_lr_scale,
                "negatives_per_visit": self.negatives_per_visit, "max_negatives": self.max_negatives,
                "labeled_faces": len(self.lab_idx), "unlabeled_faces": len(self.unl_idx),
                "pretrained": None if self.pretrained is None else self.pretrained["file"]}

    def lion_params(self, epoch: int) -> L.LionParams:
        return L.LionParams.from_config(self.cfg, epoch, neutral=NEUTRAL)

    def _to_device(self, xb, ub) -> Batch:
        dev, bgr = self.device, "bgr" in self.cfg.quirk_list
        put = (lambda v: bgr_quirk(v.to(dev, non_blocking=True))) if bgr else (lambda v: v.to(dev, non_blocking=True))
        b = Batch(x=put(xb[0]), ix=xb[2].to(dev, non_blocking=True))
        if ub is not None:
            (uw, us), _, iu = ub
            b.uw, b.us, b.iu = put(uw), put(us), iu.to(dev, non_blocking=True)
        return b

    # ---- one iteration
    def step(self, xb, ub, epoch: int, it: int) -> torch.Tensor:
        """One iteration: the method's losses (steps.py), then what every method shares: the
        Adam step, the extra weight decay, BN averaging across processes and the EMA update.
        Returns the iteration's statistics (steps.STATS) as one detached tensor."""
        cfg = self.cfg
        b = self._to_device(xb, ub)
        with self._autocast():
            loss, stats = self._method_step(self, b, epoch, it)
        terms = torch.stack([getattr(stats, k) for k in LOSS_TERMS])
        if not bool(torch.isfinite(terms).all()):  # before the step: the model stays as it was
            self._nonfinite(it, epoch, terms, b.ix, b.iu)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.group.average_(self._buffers)  # BN statistics of each rank's last forward
            torch._foreach_mul_(self._floats, self._decay)  # decay, then EMA
            torch._foreach_lerp_(self._ema_pairs[0], self._ema_pairs[1], 1 - self._ema_decay)
            for e, m in self._ema_ints:
                e.copy_(m)
        return stats.stack()

    def _nonfinite(self, it, epoch, parts, ix, iu):
        names = ("loss", "L_x", "L_u", "L_n", "L_sn", "L_px")  # LOSS_TERMS as in the paper
        bad = [f"{n} = {v:.4g}" for n, v in zip(names, parts.tolist()) if not np.isfinite(v)]
        where = self.out / "nonfinite.pt"
        if self.main:
            save_torch(where, {"iteration": it, "epoch": epoch, "losses": dict(zip(names, parts.tolist())),
                               "labeled_positions": ix.cpu(), "unlabeled_positions": None if iu is None else iu.cpu(),
                               "model": self.model.state_dict(), "state": self.state.state_dict(),
                               "config": dataclasses.asdict(self.cfg)})
        last = f"last.pt (end of epoch {self.epoch})" if (self.out / "last.pt").is_file() else "no checkpoint yet"
        raise FloatingPointError(f"non-finite loss at iteration {it} (epoch {epoch}): {', '.join(bad)}; "
                                 f"the batch, the model before the step and the per-sample state are in {where}; "
                                 f"the last good checkpoint is {last}, left as it was")

    # ---- evaluation
    @torch.no_grad()
    def predict(self, model=None):
        model = model or self.ema
        was = model.training
        model.eval()
        dl = DataLoader(self.test_ds, batch_size=self.cfg.eval_batch_size, num_workers=self.cfg.workers)
        preds = []
        for x, _, _ in dl:
            x = x.to(self.device)
            if "bgr" in self.cfg.quirk_list:
                x = bgr_quirk(x)
            with self._autocast():
                preds.append(model(x)[0].argmax(1).cpu())
        model.train(was)
        return torch.cat(preds).numpy()

    def epoch_stats(self, sums, n, epoch, pred) -> dict:
        cfg, st = self.cfg, self.state
        avg = (sums / max(n, 1)).tolist()
        row = {"epoch": epoch, "iteration": epoch * cfg.iters, **dict(zip(STATS, avg))}
        # the logits of the L2-normalised head are bounded by these norms: they gate every threshold
        row["head_norms"] = [round(float(v), 4) for v in self.model.fc.weight.detach().norm(dim=1)]
        e_s = cfg.schedule_epoch(epoch)
        row["tau"] = cfg.fixmatch_tau if cfg.method == "fixmatch" else cfg.tau(e_s)
        row["lambda_n"] = L.negative_weight(e_s, cfg.neg_w0, cfg.neg_w_step) if cfg.method == "lion" and cfg.negative else 0.0
        test = classification_report(pred, self.test_ds.targets)
        row["test_acc"], row["test_mca"] = test["acc"], test["mean_class_acc"]
        true_test = self.test_ds.true_targets
        if true_test is not None:
            t = classification_report(pred, true_test)
            row["test_acc_true"], row["test_mca_true"] = t["acc"], t["mean_class_acc"]
        right = row.pop("pseudo_right")
        if self.unl_true is not None and cfg.method != "supervised":
            row["pseudo_precision"] = right / row["mask_rate"] if row["mask_rate"] > 0 else float("nan")
        row.update(state_report(st, self.lab_true, self.unl_true))
        return row, test

    # ---- persistence
    def _checkpoint(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "state": self.state.state_dict(), "epoch": self.epoch, "iter_in_epoch": self.iter_in_epoch,
                "config": dataclasses.asdict(self.cfg), "metrics": self.metrics, "best": self.best,
                "history": self.hist, "timing": self.timing,
                "partial": {"sums": self._sums, "n": self._n, "seconds": self._seconds},
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}}

    def _load(self, path):
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {path} does not exist")
        try:
            ck = torch.load(path, map_location=self.device, weights_only=False)
            ck["config"], ck["model"], ck["state"]  # noqa: B018 - a checkpoint of this kit
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear error
            best = path.with_name("best.pt")
            hint = (f"; {best} exists (the best epoch so far): copy it to {path.name} to resume from there"
                    if best.is_file() else "")
            raise ValueError(f"cannot resume: {path} is truncated or unreadable ({type(e).__name__}: {e}){hint}. "
                             "Nothing was overwritten") from None
        saved = {k: v for k, v in ck["config"].items() if k not in ("out", "workers", "device", "threads")}
        now = {k: v for k, v in dataclasses.asdict(self.cfg).items() if k in saved}
        diff = {k: (saved[k], now[k]) for k in saved if saved[k] != now[k]}
        if diff:
            raise ValueError(f"cannot resume {path}: configuration differs (saved, now): {diff}")
        self.model.load_state_dict(ck["model"]); self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"]); self.state.load_state_dict(ck["state"])
        self.epoch, self.iter_in_epoch = ck["epoch"], ck["iter_in_epoch"]
        self.metrics, self.best, self.hist, self.timing = ck["metrics"], ck["best"], ck["history"], ck["timing"]
        self._sums, self._n, self._seconds = ck["partial"]["sums"], ck["partial"]["n"], ck["partial"]["seconds"]
        r = ck["rng"]
        torch.set_rng_state(r["torch"].cpu()); np.random.set_state(r["numpy"]); random.setstate(r["python"])
        if r["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(r["cuda"])

    def _write_artifacts(self, test=None, pred=None):
        if not self.main:
            return
        out, st = self.out, self.state
        write_jsonl(out / "metrics.jsonl", self.metrics)
        write_jsonl(out / "timing.jsonl", self.timing)
        if self.cfg.history and self.hist["weights"]:
            write_npz(out / "history.npz", **{k: np.stack(v) for k, v in self.hist.items()})
        ids = self.labeled.ids
        true = self.train_ds.true_targets
        rows = ["iteration,index,id,old,new,true"] + [
            f"{it},{i},{ids[i]},{o},{n},{'' if true is None else true[self.lab_idx[i]]}" for it, i, o, n in st.relabels]
        atomic_write_text(out / "relabels.csv", "\n".join(rows) + "\n")
        if pred is not None:
            arrays = {"pred": pred, "target": np.asarray(self.test_ds.targets)}
            if self.test_ds.true_targets is not None:
                arrays["true"] = np.asarray(self.test_ds.true_targets)
            write_npz(out / "predictions.npz", **arrays)

    def save(self, name="last.pt"):
        if self.main:
            save_torch(self.out / name, self._checkpoint())

    # ---- the loop
    def _on_signal(self, signum, frame):
        self._stop = signum

    def train(self) -> dict:
        try:
            return self._train()
        finally:
            self.release()

    def _train(self) -> dict:
        cfg = self.cfg
        if self.main:
            write_json(self.out / "config.json", {**dataclasses.asdict(cfg), "derived": self.derived()})
            write_npz(self.out / "split.npz", labeled=self.lab_idx, unlabeled=self.unl_idx)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)} \
            if threading_main() else {}
        t_start = time.perf_counter()
        try:
            while self.epoch < cfg.epochs:
                epoch = self.epoch + 1
                if epoch == 1 and self.iter_in_epoch == 0 or epoch == cfg.relabel_run_epoch and self.iter_in_epoch == 0:
                    self.state.reset_running_mean()
                skip = self.iter_in_epoch
                lx = iter(self._loader(self.labeled, cfg.batch_size, 0, skip))
                lu = iter(self._loader(self.unlabeled, cfg.unlabeled_batch_size, 1, skip)) if cfg.method != "supervised" else None
                if skip == 0:
                    self._sums, self._n, self._seconds = torch.zeros(len(STATS), device=self.device), 0, 0.0
                t0 = time.perf_counter()
                bar = progress.bar(range(skip, cfg.iters), off=not self.main, desc=f"{cfg.method} epoch {epoch}/{cfg.epochs}",
                                   leave=False)
                self.model.train()
                for i in bar:
                    it = (epoch - 1) * cfg.iters + i + 1
                    try:
                        xb, ub = next(lx), (next(lu) if lu else None)
                    except RuntimeError:
                        if self._stop is None:  # a Ctrl-C in a terminal also ends the loader workers
                            raise
                        xb = None
                    if xb is not None:
                        stats = self.step(xb, ub, epoch, it)
                        self._sums += stats
                        self._n += 1
                        self.iter_in_epoch = i + 1
                        fault_point(f"iter:{epoch}:{i + 1}")
                    if i % 25 == 0 and self.main and xb is not None:
                        bar.set_postfix(loss=f"{stats[0].item():.3f}", mask=f"{stats[6].item():.2f}")
                    if self._stop is not None:
                        self._seconds += time.perf_counter() - t0
                        self.save()
                        raise KeyboardInterrupt(f"signal {self._stop}: checkpoint written to {self.out / 'last.pt'} "
                                                f"at epoch {epoch}, iteration {self.iter_in_epoch}; continue with --resume")
                seconds = self._seconds + time.perf_counter() - t0
                del lx, lu
                pred = self.predict()
                row, test = self.epoch_stats(self._sums, self._n, epoch, pred)
                self.metrics.append(row)
                n_img = cfg.batch_size + (2 * cfg.unlabeled_batch_size if cfg.method != "supervised" else 0)
                self.timing.append({"epoch": epoch, "seconds": seconds,
                                    "images_per_s": self._n * n_img * self.world / max(seconds, 1e-9)})
                self.epoch, self.iter_in_epoch = epoch, 0
                if cfg.history:
                    st = self.state
                    self.hist["weights"].append(st.weights.half().cpu().numpy())
                    self.hist["labels"].append(st.labels.cpu().numpy().astype(np.int8))
                    self.hist["bank"].append(st.bank.cpu().numpy().copy())  # .cpu() aliases on CPU
                    self.hist["protos"].append(st.protos.cpu().numpy().copy())
                is_best = self.best is None or row["test_acc"] > self.best["test_acc"]
                if is_best:
                    self.best = {"epoch": epoch, "test_acc": row["test_acc"], "test_mca": row["test_mca"]}
                self.save()  # the checkpoint first: artifacts are rewritten from it on resume
                if is_best and self.main:
                    atomic_link(self.out / "last.pt", self.out / "best.pt")
                self._write_artifacts(test, pred)
                if self.main:
                    print(f"[{cfg.method}] epoch {epoch}/{cfg.epochs} loss {row['loss']:.3f} test acc {row['test_acc']:.4f} "
                          f"mca {row['test_mca']:.4f} mask {row['mask_rate']:.2f} relabels {row['relabels']} "
                          f"neg {row['neg_mean_size']:.2f}", flush=True)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return self.finish(time.perf_counter() - t_start)

    def release(self):
        """Let another process use the run directory (also happens when this process exits)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def rank_fingerprints(self) -> list[list[float]]:
        """Sums of every rank's per-sample state, prototypes, model and EMA; on one process a
        single row. Ranks that agree have equal rows."""
        st = self.state
        v = torch.stack([st.bank.double().sum(), st.weights.double().sum(), st.labels.double().sum(),
                         st.protos.double().sum(), sum(p.double().sum() for p in self.model.parameters()),
                         sum(p.double().sum() for p in self.ema.parameters())]).to(self.device)
        return [t.tolist() for t in self.group.gather(v=v[None]).v]

    def finish(self, wall) -> dict:
        fingerprints = self.rank_fingerprints()
        pred = self.predict()
        test = classification_report(pred, self.test_ds.targets)
        last = self.metrics[-1]
        summary = {
            "method": self.cfg.method, "dataset": self.train_ds.signature, "n_labeled": len(self.lab_idx),
            "epochs": self.cfg.epochs, "last_epoch": {"test_acc": test["acc"], "test_mca": test["mean_class_acc"]},
            "best_epoch": self.best, "per_class_acc": test["per_class_acc"], "confusion": test["confusion"],
            "classes": list(self.train_ds.classes),
            "note": "last_epoch is the headline; best_epoch (chosen on the test split) is the paper's protocol",
            "wall_s": wall, "train_s": sum(t["seconds"] for t in self.timing),
            "images_per_s": float(np.mean([t["images_per_s"] for t in self.timing])),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "relabels": last.get("relabels"), "relabel_precision": last.get("relabel_precision"),
            "neg_precision": last.get("neg_precision"), "neg_mean_size": last.get("neg_mean_size"),
            "pretrained": self.pretrained, "world_size": self.world,
            "ranks_agree": bool(np.allclose(fingerprints, fingerprints[0], rtol=1e-6, atol=1e-6)),
            "rank_fingerprints": fingerprints,
        }
        if self.test_ds.true_targets is not None:
            t = classification_report(pred, self.test_ds.true_targets)
            summary["last_epoch_true"] = {"test_acc": t["acc"], "test_mca": t["mean_class_acc"],
                                          "per_class_acc": t["per_class_acc"], "confusion": t["confusion"]}
        if self.main:
            write_json(self.out / "summary.json", summary)
        return summary


def threading_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


# ----------------------------------------------------------------------------- entry points

def train(preset: str | None = None, config_file: str | None = None, resume=False, overwrite=False, **overrides) -> dict:
    """Resolve a configuration (preset < file < keyword overrides), train, return the summary."""
    cfg = C.resolve(preset, config_file, overrides)
    return Trainer(cfg, resume=resume, overwrite=overwrite).train()
