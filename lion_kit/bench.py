"""Benchmarks behind `python -m lion_kit bench ...`: numbers for the README come from here.

speed: for each method, in one process, on the `cpu` preset's shapes,
  (a) floor  - the same forward passes, backward and Adam step on tensors already in memory;
  (b) step   - a full training iteration (losses, LION bookkeeping, extra decay, EMA), same tensors;
  (c) loader - a full iteration fed by the default data loaders from the cached dataset.
Ratios b/a and c/a come from one run, so machine noise largely cancels.
"""
from __future__ import annotations

import tempfile
import time


def _timeit(fn, iters, warmup=2):
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


FORMATS = {"fp32": {}, "channels-last": {"channels_last": True}, "bf16": {"bf16": True},
           "bf16-channels-last": {"bf16": True, "channels_last": True}}


def speed(methods=("supervised", "fixmatch", "lion"), iters=10, rounds=3, preset="cpu", formats=("fp32",), **overrides) -> dict:
    """Per method and number format (FORMATS: fp32, channels-last, bf16 autocast, both), the
    three measurements of the module docstring; `speedup_over_fp32` is a format's training step
    against the fp32 step of the same run (fp32 is measured first when asked for)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"formats {bad} unknown; expected some of {sorted(FORMATS)}")
    out = {}
    for fmt in sorted(formats, key=lambda f: f != "fp32"):
        res = _speed(methods, iters, rounds, preset, **{**overrides, **FORMATS[fmt]})
        for m, r in res.items():
            key = m if fmt == "fp32" and len(formats) == 1 else f"{m}/{fmt}"
            out[key] = r
            if "fp32" in formats and fmt != "fp32":
                r["speedup_over_fp32"] = r["step_ips"] / out[f"{m}/fp32"]["step_ips"]
    import torch
    out["setup"] = {"preset": preset, "iters": iters, "rounds": rounds, "threads": torch.get_num_threads(),
                    "formats": list(formats), "workers": _workers(preset, overrides), **overrides}
    return out


def _workers(preset, overrides):
    from .config import resolve
    return resolve(preset, None, overrides).workers


def _speed(methods, iters, rounds, preset, **overrides) -> dict:
    import torch
    import torch.nn.functional as F
    from .config import resolve
    from .train import Trainer
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            cfg = resolve(preset, None, {"method": method, "out": f"{tmp}/{method}", **overrides})
            tr = Trainer(cfg)
            tr.model.train()
            lx = iter(tr.loader(tr.labeled, cfg.batch_size, 0))
            lu = iter(tr.loader(tr.unlabeled, cfg.unlabeled_batch_size, 1)) if method != "supervised" else None
            xb, ub = next(lx), (next(lu) if lu else None)
            x, y = xb[0], xb[1]
            views = [ub[0][0], x, ub[0][1]] if ub else [x]
            n_img = sum(len(v) for v in views)

            def floor():
                with tr._autocast():
                    loss = sum(F.cross_entropy(tr.model(v)[0].float(), y) for v in views)
                tr.opt.zero_grad(set_to_none=True)
                loss.backward()
                tr.opt.step()

            tr.method.begin_epoch(tr.map.relabel_run_epoch)  # disambiguation and negative learning both active

            def step():
                tr.step(xb, ub, 1)

            def loaded():
                tr.step(next(lx), next(lu) if lu else None, 1)

            # interleaved rounds, best of each: drift and neighbours' load hit all three alike
            a = b = c = float("inf")
            for _ in range(rounds):
                a, b, c = min(a, _timeit(floor, iters)), min(b, _timeit(step, iters)), min(c, _timeit(loaded, iters))
            tr.release()
            out[method] = {"images_per_iter": n_img, "floor_ips": n_img / a, "step_ips": n_img / b,
                           "loader_ips": n_img / c, "step_over_floor": b / a, "loader_over_floor": c / a}
    return out


def confidence(run_dir, n: int = 2000) -> dict:
    """How confident a run's last checkpoint is on unlabeled faces, against LION's thresholds:
    quantiles of the top and of the smallest class probability (EMA and raw model), and the
    shares of faces above tau = 0.8 and with a class at or below delta_neg = 0.01."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader
    from .config import Config
    from .data import IndexedSubset, eval_transform
    from .runs import load_run
    from .data import build_data
    from .evaluate import load_model
    run = load_run(run_dir)
    cfg = Config.from_run(run.config)
    train, _, _, unl = build_data(cfg)
    ds = IndexedSubset(train, unl[:n], eval_transform(cfg.image_size))
    out = {"run": str(run_dir), "faces": len(ds), "tau": cfg.tau_base, "delta_neg": cfg.delta_neg}
    for name in ("ema", "model"):
        m, _ = load_model(run_dir, "last", name)
        with torch.no_grad():
            p = torch.cat([m(x)[0].softmax(1) for x, _, _ in DataLoader(ds, batch_size=500)])
        top, low = p.max(1).values.numpy(), p.min(1).values.numpy()
        out[name] = {"top_prob_q50_q90_q99": np.quantile(top, [0.5, 0.9, 0.99]).round(3).tolist(),
                     "share_top_ge_tau": float((top >= cfg.tau_base).mean()),
                     "min_prob_q01_q10_q50": np.quantile(low, [0.01, 0.1, 0.5]).round(4).tolist(),
                     "share_min_le_delta_neg": float((low <= cfg.delta_neg).mean())}
    return out


def run(what: str, a) -> dict:
    from .config import parse_set
    if what == "render":
        from .synth import bench_render
        return bench_render(a.size, a.image_size)
    if what == "speed":
        return speed(tuple(a.methods.split(",")), iters=a.iters, rounds=a.rounds, preset=a.preset,
                     formats=tuple(a.formats.split(",")), **parse_set(a.set))
    if what == "confidence":
        if not a.run:
            raise ValueError("bench confidence needs --run <run directory>")
        return confidence(a.run)
    raise ValueError(what)
