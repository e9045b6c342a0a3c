"""`python -m lion_kit <command>`: train, pretrain, splits, grid, bench, results, eval, predict, probe, demo."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path


def _dataset_args(p):
    p.add_argument("--dataset", default="synthfer", help="synthfer, rafdb, folder, fer2013, ferplus or affectnet")
    p.add_argument("--data-root", default=None, help="dataset folder (all but synthfer)")
    p.add_argument("--synth-size", default=None, help="SynthFER size: full, small, tiny")
    p.add_argument("--image-size", type=int, default=None, help="SynthFER render size / training input size")


def _synth_opts(a):
    if a.dataset != "synthfer":
        return {}
    o = {}
    if a.synth_size:
        o["size"] = a.synth_size
    if a.image_size:
        o["image_size"] = a.image_size
    return o


def cmd_splits(a):
    from .data import draw_split, load_dataset, write_split_file
    ds = load_dataset(a.dataset, "train", root=a.data_root, **_synth_opts(a))
    counts = [int(x) for x in a.counts.split(",")] if a.counts else None
    idx = draw_split(ds, n_labeled=a.n_labeled, counts=counts, seed=a.seed)
    write_split_file(a.out, ds, idx, a.seed)
    print(f"wrote {a.out}: {len(idx)} labeled samples of {ds.signature}")


def cmd_grid(a):
    import matplotlib
    matplotlib.use("Agg")
    from .data import load_dataset
    from .viz import class_table, sample_grid
    ds = load_dataset(a.dataset, a.split, root=a.data_root, **_synth_opts(a))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sample_grid(ds, per_class=a.per_class).savefig(out / "sample_grid.png", dpi=110, bbox_inches="tight")
    table = class_table(ds)
    table.to_csv(out / "class_table.csv", index=False)
    print(table.to_string(index=False))
    if ds.true_targets is not None:
        agree = sum(o == t for o, t in zip(ds.targets, ds.true_targets)) / len(ds)
        print(f"observed label = true class for {agree:.1%} of {len(ds)} faces")
    print(f"wrote {out / 'sample_grid.png'} and {out / 'class_table.csv'}")


def cmd_bench(a):
    from . import bench
    result = bench.run(a.what, a)
    print(json.dumps(result, indent=1))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=1))


def cmd_results(a):
    from . import report, results, sweep
    from .config import parse_set
    if a.what == "runs":
        print(report.runs_table(a.keep))
        return
    if a.what == "budget":
        roots = a.keep.split(",") if a.keep != "results/synthfer-cpu" else results.CURVE
        print(report.rebuild_budgets(roots, a.out or "results/budget-curve", a.preset, parse_set(a.set)))
        return
    if a.what in ("run", "status"):
        ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
        jobs = sweep.make_grid(a.variants.split(","), ints(a.budgets), ints(a.seeds), root=a.runs, preset=a.preset,
                               split_seeds=ints(a.split_seeds), **parse_set(a.set))
        run = a.what == "run"
        try:
            df = sweep.run_grid(jobs, workers=a.workers, keep=a.keep if run else None, reuse=None if run else a.keep,
                                train_missing=run, progress=run, keep_checkpoints=a.keep_checkpoints)
        except KeyboardInterrupt as e:
            print(f"interrupted: {e} (finished cells are kept in {a.keep}; run again to continue)", file=sys.stderr)
            raise SystemExit(130)
        print(f"{len(df)} cells: {(df['status'] == 'reused').sum()} reused, {(df['status'] == 'done').sum()} trained, "
              f"{(df['status'] == 'failed').sum()} failed, {(df['status'] == 'missing').sum()} missing; kept in {a.keep}")
        if a.what == "status":
            for _, r in df[df["status"] == "missing"].iterrows():
                print(f"  missing: {r['variant']} n={r['n_labeled']} seed={r['seed']} split seed={r['split_seed']}")
            return
    if a.readme:  # each block of the file holds its own options
        stale = report.refresh_readme(a.readme, write=a.write)
        for options in stale:
            print(f"{a.readme}: the block `results table {options}` {'was rebuilt' if a.write else 'is out of date'}",
                  file=sys.stderr)
        if stale and not a.write:
            print(f"rebuild with `python -m lion_kit results table --readme {a.readme} --write`", file=sys.stderr)
            raise SystemExit(1)
        return
    text = report.rebuild(a.keep, preset=a.preset, overrides=parse_set(a.set))
    print(report.table_text(report.pick(results.load(a.keep, a.preset, parse_set(a.set)), a.only, a.at))
          if a.only or a.at else text)


def cmd_demo(a):
    from .demo import demo
    demo(a.out, quick=a.quick)


TRAIN_DOC = """Train supervised, FixMatch or LION: `python -m lion_kit train --preset cpu --method lion --out runs/x`
(also under `torchrun --nproc_per_node=N -m lion_kit train ...`). Options come from lion_kit/config.py;
precedence: command line > --config file > --preset > defaults."""


def train_parser() -> argparse.ArgumentParser:
    from . import config as C
    ap = argparse.ArgumentParser(prog="python -m lion_kit train", description=TRAIN_DOC,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--preset", default=None, choices=sorted(C.PRESETS), help="paper, cpu, cpu-long (cpu at 4x the iterations), paper-visits (the paper's visits per face on SynthFER) or smoke")
    ap.add_argument("--config", default=None, help="JSON file of config keys (below the command line)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    ap.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    docs = C.field_docs()
    for f in dataclasses.fields(C.Config):
        flag = "--" + f.name.replace("_", "-")
        t = f.type if isinstance(f.type, type) else str(f.type)
        if f.type in (bool, "bool"):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=docs.get(f.name))
        else:
            conv = {"int": int, "float": float}.get(str(t), str)
            ap.add_argument(flag, type=conv, default=argparse.SUPPRESS, help=f"{docs.get(f.name)} (default {f.default})")
    return ap


def train_main(argv=None):
    import torch.distributed as dist
    from .train import train
    a = vars(train_parser().parse_args(argv))
    preset, file, resume, overwrite = (a.pop(k) for k in ("preset", "config", "resume", "overwrite"))
    try:
        summary = train(preset, file, resume=resume, overwrite=overwrite, **a)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        raise SystemExit(130)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({k: summary[k] for k in ("last_epoch", "best_epoch", "wall_s", "images_per_s")}, indent=1))
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


def _data_commands(sub):
    """splits and grid: labeled splits and sample grids of any dataset."""
    p = sub.add_parser("splits", help="draw a labeled split per class and write a split file")
    _dataset_args(p)
    p.add_argument("--n-labeled", type=int, default=None, help="budget from splits/paper_counts.csv")
    p.add_argument("--counts", default=None, help="explicit per-class counts, e.g. 15,10,15,15,15,15,15")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_splits)
    p = sub.add_parser("grid", help="write a per-class sample grid and class table")
    _dataset_args(p)
    p.add_argument("--split", default="train")
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--out", default="runs/grid")
    p.set_defaults(fn=cmd_grid)


def _experiment_commands(sub):
    """bench and results: speed benchmarks and the committed results grid."""
    p = sub.add_parser("bench", help="benchmarks: render, speed, confidence (the accuracy grid: `results`)")
    p.add_argument("what", choices=["render", "speed", "confidence"])
    p.add_argument("--run", default=None, help="confidence: a run directory")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument("--size", default="full", help="render: SynthFER size")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=10, help="speed: timed iterations per measurement")
    p.add_argument("--methods", default="supervised,fixmatch,lion")
    p.add_argument("--preset", default="cpu", help="speed: the preset whose shapes are measured")
    p.add_argument("--rounds", type=int, default=3, help="speed: interleaved rounds (best of)")
    p.add_argument("--formats", default="fp32", help="speed: number formats, some of fp32, channels-last, bf16, bf16-channels-last")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="speed: a config override, e.g. --set dataset=synthfer --set n_labeled=100")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("results", help="the committed results grid: train missing cells, rebuild the table")
    p.add_argument("what", choices=["run", "status", "table", "runs", "budget"],
                   help="run: train (or reuse) cells and keep them; status: which cells are kept or missing; "
                        "table: rebuild from kept cells alone; runs: a table of every run folder under --keep; "
                        "budget: the budget curve from grids that differ in training length")
    p.add_argument("--keep", default="results/synthfer-cpu",
                   help="where cells are kept (committed); budget: comma-separated grids (default: results/synthfer-cpu{,-2x,-4x,-8x})")
    p.add_argument("--out", default=None, help="budget: where its table and figure go (default results/budget-curve)")
    p.add_argument("--runs", default="runs/grid", help="run: where cells train (not committed)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--variants", default="supervised,fixmatch,lion,lion-no-ld,lion-no-nl,lion-nl-no-progression")
    p.add_argument("--budgets", default="100,400,1000")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--split-seeds", default="5,6,7", help="extra lion cells at 400 labels, seed 0 (5 is the grid's own)")
    p.add_argument("--workers", type=int, default=1, help="run: cells trained in parallel")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="run: leave last.pt / best.pt in --runs once a cell is kept (default: removed, ~15 GB for the grid)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override for every cell (table: the cells it expects)")
    p.add_argument("--readme", default=None, help="table: a markdown file whose `results table` blocks to --check or --write")
    p.add_argument("--only", default="", help="table: print only these variants (comma list)")
    p.add_argument("--at", default="", help="table: print only these label budgets (comma list)")
    p.add_argument("--check", action="store_true", help="table: exit 1 if the README's block differs")
    p.add_argument("--write", action="store_true", help="table: replace the README's block")
    p.set_defaults(fn=cmd_results)


def _run_commands(sub):
    """eval, predict, probe and demo: what one does with a trained run."""
    p = sub.add_parser("eval", help="evaluate a run's model on any dataset split (cross-dataset)")
    p.add_argument("--run", required=True, help="a run directory")
    p.add_argument("--checkpoint", default="last", choices=["last", "best"])
    p.add_argument("--dataset", required=True, help="synthfer, rafdb, folder, fer2013, ferplus or affectnet")
    p.add_argument("--data-root", default=None)
    p.add_argument("--split", default="test")
    p.set_defaults(fn=lambda a: __import__("lion_kit.evaluate", fromlist=["x"]).main_eval(a))
    p = sub.add_parser("predict", help="class probabilities of images or folders into a CSV")
    p.add_argument("--run", required=True, help="a run directory")
    p.add_argument("--checkpoint", default="last", choices=["last", "best"])
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="CSV to write")
    p.set_defaults(fn=lambda a: __import__("lion_kit.evaluate", fromlist=["x"]).main_predict(a))
    p = sub.add_parser("probe", help="probe a run's model against the true class: ambiguity, negatives, linear")
    p.add_argument("what", choices=["ambiguity", "negatives", "linear"])
    p.add_argument("runs", nargs="+", help="run directories (with a checkpoint)")
    p.add_argument("--checkpoint", default="last", choices=["last", "best"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="also print each result as one JSON line")
    p.set_defaults(fn=lambda a: __import__("lion_kit.probe", fromlist=["x"]).main(a))
    p = sub.add_parser("demo", help="the main job: data, a LION run and the notebooks into --out")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="tiny sizes (what the tests run)")
    p.set_defaults(fn=cmd_demo)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":  # train owns its (large) argument list
        return train_main(argv[1:])
    if argv and argv[0] == "pretrain":
        from .pretrain import main as pretrain_main
        return pretrain_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m lion_kit", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train", help="train a model (see `python -m lion_kit train --help`)")
    sub.add_parser("pretrain", help="train the SynthFER face-recognition trunk (see `python -m lion_kit pretrain --help`)")
    _data_commands(sub)
    _experiment_commands(sub)
    _run_commands(sub)
    a = ap.parse_args(argv)
    if a.cmd == "splits" and (a.n_labeled is None) == (a.counts is None):
        ap.error("splits: give exactly one of --n-labeled or --counts")
    try:
        return a.fn(a)
    except (ValueError, TypeError, OSError) as e:  # bad input: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
