"""The committed results grid: cells kept small under results/, reused on a fresh
machine, and the README's table rebuilt from them alone."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lion_kit import grid, report, results

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lion_kit", "results", *args], capture_output=True, text=True, cwd=cwd)


def test_table_uses_the_sample_std_leaves_out_failures_and_adds_the_split_row():
    rows = [dict(variant="lion", n_labeled=400, seed=s, split_seed=5, status="kept", acc=a, mca=a, best_acc=a + 0.1,
                 relabels=2, relabel_precision=0.5, neg_precision=0.98, neg_mean_size=1.5, acc_true=a)
            for s, a in ((0, 0.5), (1, 0.6))]
    rows += [dict(variant="lion", n_labeled=400, seed=2, split_seed=5, status="failed"),
             dict(variant="supervised", n_labeled=400, seed=0, split_seed=5, status="done", acc=0.4, mca=0.3, best_acc=0.45),
             dict(variant="lion", n_labeled=400, seed=0, split_seed=6, status="kept", acc=0.7, mca=0.7, best_acc=0.7),
             dict(variant="lion", n_labeled=400, seed=0, split_seed=7, status="missing")]
    t = report.table(pd.DataFrame(rows)).set_index("variant")
    assert list(t.index) == ["supervised", "lion", "lion, split seeds [5, 6]"]  # baselines first, as VARIANTS orders them
    assert t.loc["lion", "accuracy (last epoch)"] == "0.550 ± 0.071" and t.loc["lion", "runs"] == 2
    assert t.loc["supervised", "accuracy (last epoch)"] == "0.400" and t.loc["supervised", "relabels"] == "–"
    assert t.loc["lion", "best-epoch acc. (paper's protocol)"] == "0.650 ± 0.071"
    assert t.loc["lion, split seeds [5, 6]", "accuracy (last epoch)"] == "0.600 ± 0.141"
    md = report.markdown(t.reset_index())
    assert md.splitlines()[0].startswith("| variant | labels | runs | accuracy (last epoch)") and len(md.splitlines()) == 5
    words = report.say_table(pd.DataFrame(rows))  # the other split's cell and the failed one are not in the ranking
    assert words == ("At 400 labels (1/2 seed(s) per variant), last epoch, best first: lion 0.550, supervised 0.400. "
                     "Read at its best epoch instead: lion 0.650 (+0.100), supervised 0.450 (+0.050).")


def test_a_paired_difference_uses_shared_seeds_only_and_is_judged_against_its_spread():
    at = pd.Series({("lion", 0): 0.50, ("lion", 1): 0.60, ("lion", 2): 0.55, ("fixmatch", 0): 0.40,
                    ("fixmatch", 1): 0.70, ("supervised", 0): 0.45, ("supervised", 1): 0.52, ("supervised", 2): 0.50})
    x = grid.seed_difference(at, "lion", "fixmatch")  # seed 2 has no FixMatch cell: left out, not guessed
    assert x.n == 2 and x.mean == pytest.approx(0.0) and x.within_spread and str(x) == "+0.000 ± 0.141"
    y = grid.seed_difference(at, "lion", "supervised")  # +0.05, +0.08, +0.05: all three agree in sign
    assert (y.n, y.agree) == (3, 3) and y.mean == pytest.approx(0.06) and not y.within_spread
    assert grid.seed_difference(at, "lion", "lion-no-ld") is None and grid.seed_difference(at, "lion", "lion") is None
    one = grid.seed_difference(at[at.index.get_level_values(1) == 0], "lion", "fixmatch")
    assert str(one) == "+0.100" and not one.within_spread  # one seed has no spread to judge by


def test_a_mechanism_the_variant_does_not_run_shows_a_dash_not_a_zero():
    cells = [dict(variant=v, n_labeled=400, seed=0, split_seed=5, status="kept", acc=0.5, mca=0.5, best_acc=0.5,
                  relabels=0, relabel_precision=float("nan"), neg_precision=float("nan"), neg_mean_size=0.0)
             for v in ("lion", "lion-no-ld", "lion-no-nl", "lion-nl-no-progression")]
    t = report.table(pd.DataFrame(cells)).set_index("variant")
    assert t.loc["lion", "neg. set size"] == "0.0" and t.loc["lion", "relabels"] == "0.0"
    assert t.loc["lion-no-ld", "relabels"] == "–" and t.loc["lion-no-ld", "neg. set size"] == "0.0"
    for v in ("lion-no-nl", "lion-nl-no-progression"):  # no bank: its size is not zero, it is not there
        assert t.loc[v, "neg. set size"] == "–" and t.loc[v, "neg. precision"] == "–"


def test_cells_are_kept_small_reused_on_a_fresh_machine_and_rebuild_the_readme_table(tmp_path):
    keep, runs = tmp_path / "results", tmp_path / "runs"
    where = ["--keep", str(keep), "--runs", str(runs), "--preset", "smoke", "--budgets", "100", "--split-seeds", ""]
    grid = [*where, "--set", "epochs=1", "--set", "iters=2", "--variants", "supervised,lion", "--seeds", "0,1"]
    r = _cli("run", *grid)
    assert r.returncode == 0, r.stderr
    assert "4 cells: 0 reused, 4 trained, 0 failed" in r.stdout
    cells = sorted(p.relative_to(keep).as_posix() for p in keep.glob("*/*"))
    assert cells == ["lion/n100_s0", "lion/n100_s1", "supervised/n100_s0", "supervised/n100_s1"]
    for c in keep.glob("*/*"):  # a few KB each: no checkpoint, no history
        assert sorted(f.name for f in c.iterdir()) == sorted(results.KEEP)
        assert sum(f.stat().st_size for f in c.iterdir()) < 64_000
    # once kept, a cell's checkpoints leave --runs; what needs one says how to remake it
    trained = runs / "lion" / "n100_s0"
    assert (trained / "summary.json").is_file() and not list(trained.glob("*.pt"))
    from lion_kit.evaluate import load_model
    with pytest.raises(FileNotFoundError, match=r"checkpoints were removed.*train --config .*--keep-checkpoints"):
        load_model(trained)
    r = _cli("run", *where, "--set", "epochs=1", "--set", "iters=2", "--variants", "supervised", "--seeds", "2",
             "--keep-checkpoints")
    assert r.returncode == 0 and (runs / "supervised" / "n100_s2" / "last.pt").is_file(), r.stderr
    shutil.rmtree(keep / "supervised" / "n100_s2")
    shutil.rmtree(runs)  # a fresh machine: only the committed cells are there
    r = _cli("status", *grid[:-2], "--seeds", "0,1,2")
    assert "6 cells: 4 reused, 0 trained, 0 failed, 2 missing" in r.stdout and "missing: lion n=100 seed=2" in r.stdout
    assert not runs.exists()  # status trains nothing
    r = _cli("run", *grid)
    assert r.returncode == 0 and "4 cells: 4 reused, 0 trained" in r.stdout, r.stdout + r.stderr
    assert not runs.exists() or not list(runs.glob("*/*/summary.json"))
    # a changed configuration is not a match: that cell trains again
    r = _cli("run", *where, "--set", "epochs=1", "--set", "iters=3", "--variants", "supervised", "--seeds", "0")
    assert "1 cells: 0 reused, 1 trained" in r.stdout, r.stdout + r.stderr
    assert json.loads((keep / "supervised/n100_s0/config.json").read_text())["iters"] == 3

    readme = tmp_path / "README.md"
    grid_options = f"--keep {keep} --preset smoke --set epochs=1 --set iters=2"
    readme.write_text(f"# x\n\n<!-- results table: {grid_options} -->\nold\n<!-- results table: end -->\n\n"
                      f"<!-- results table: {grid_options} --only lion -->\n<!-- results table: end -->\n\nmore\n")
    r = _cli("table", "--readme", str(readme), "--check")
    assert r.returncode == 1 and "results table --readme" in r.stderr
    assert _cli("table", "--readme", str(readme), "--write").returncode == 0
    r = _cli("table", "--readme", str(readme), "--check")
    assert r.returncode == 0, r.stderr
    [(options, block), (lion_options, lion_block)] = report.readme_blocks(readme)  # an empty block is filled too
    assert block == report.block_text(options) and readme.read_text().endswith("\n\nmore\n")
    assert lion_options.endswith("--only lion") and "| 100 | lion | 2 |" in lion_block and "| supervised |" not in lion_block
    only = _cli("table", *where, "--set", "epochs=1", "--set", "iters=2", "--only", "lion")
    assert "| 100 | lion | 2 |" in only.stdout and "| supervised |" not in only.stdout
    # the cell trained with iters=3 is not what this grid asks for: left out, and said so
    assert "| 100 | supervised | 1 |" in block and "| 100 | lion | 2 |" in block
    assert "1 kept cell(s) ran with another configuration" in r.stderr and "supervised/n100_s0" in r.stderr
    assert (keep / "table.csv").exists() and (keep / "accuracy.png").exists() and (keep / "cells.csv").exists()


def test_readme_tables_are_what_the_results_command_prints():
    """README's and docs/experiments.md's tables come from results/ alone, each through the options
    in its marker; `make results` rebuilds them after cells land."""
    for page in ("README.md", "docs/experiments.md"):
        blocks = report.readme_blocks(ROOT / page)
        assert blocks and any("Paired per-seed differences" in b for _, b in blocks), page
        for options, block in blocks:
            assert block == report.block_text(options), (page, options)


def test_every_figure_in_the_readme_and_docs_names_the_command_that_makes_it():
    """A figure is a claim: the line under it names `make demo`, `make results` or a
    `python -m lion_kit` command, and figures the demo draws are the ones it draws now."""
    from lion_kit.demo import FIGURES
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    shown = set()
    for page in pages:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            for path in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", line):
                target = (page.parent / path).resolve()
                assert target.is_file(), f"{page.name}: {path} does not exist"
                shown.add(target)
                below = lines[i + 1] if i + 1 < len(lines) else ""
                assert re.search(r"`(make demo|make results|python -m lion_kit [^`]+)`", below), f"{page.name}: {path}"
    figures = {p.resolve() for p in (ROOT / "docs" / "figures").glob("*.png")}
    assert figures <= shown, f"figures no page shows (stale?): {sorted(p.name for p in figures - shown)}"
    assert {p.name for p in figures} <= set(FIGURES)


def test_a_kept_cell_missing_a_file_is_an_error_naming_it(tmp_path):
    cell = tmp_path / "lion" / "n100_s0"
    cell.mkdir(parents=True)
    (cell / "summary.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"n100_s0: kept cell lacks \['config.json', 'metrics.jsonl'\]"):
        results.load(tmp_path)


def test_mechanisms_reads_the_bank_where_lambda_n_reaches_zero():
    from lion_kit.analysis import mechanisms
    m = pd.DataFrame({"epoch": [1, 2, 3, 4], "test_acc": [0.4, 0.6, 0.5, 0.55], "mask_rate": [0.0, 0.31, 0.3, 0.1],
                      "lambda_n": [0.2, 0.1, 0.01, 0.0], "neg_mean_size": [0.1, 0.5, 1.2, 2.0],
                      "neg_precision": [1.0, 0.99, 0.975, 0.95], "neg_sizes": [[9, 1, 0], [5, 5, 0], [2, 4, 4], [0, 0, 10]],
                      "open_sets": [0, 3, 5, 8], "relabels": [0, 0, 2, 4], "relabel_precision": [None, None, 0.5, 0.25],
                      "label_acc_given": [0.9] * 4})
    r = mechanisms(m)
    assert r["mask_epochs_over_0.3"] == 2 and r["bank_epoch"] == 3 and r["bank_mean"] == 1.2
    assert r["bank_precision"] == 0.975 and r["bank_sizes_present"] == [0, 1, 2]
    assert (r["test_acc"], r["best_acc"], r["open_sets"], r["relabels"], r["relabel_precision"]) == (0.55, 0.6, 8, 4, 0.25)


def test_docs_run_tables_are_what_the_results_runs_command_prints():
    """Every table in docs/experiments.md marked `<!-- runs: FOLDER: begin -->` is exactly what
    `python -m lion_kit results runs --keep FOLDER` prints from the committed small files."""
    blocks = report.runs_blocks(ROOT / "docs" / "experiments.md")
    assert blocks, "docs/experiments.md has no run tables"
    for folder, block in blocks:
        assert block == report.runs_table(ROOT / folder), folder


def test_budget_curve_joins_grids_of_different_lengths_and_pairs_by_seed(tmp_path):
    """`results budget` reads grids that differ only in `iters` (here 1× and 2× the smoke
    preset's 6) and reports each variant's accuracy, its paired difference from supervised, and
    what the mechanisms did — from the kept files alone."""
    roots = []
    for iters in (6, 12):
        keep = tmp_path / f"keep{iters}"
        r = _cli("run", "--keep", str(keep), "--runs", str(tmp_path / f"runs{iters}"), "--preset", "smoke",
                 "--budgets", "100", "--split-seeds", "", "--variants", "supervised,lion", "--seeds", "0",
                 "--set", "epochs=1", "--set", f"iters={iters}")
        assert r.returncode == 0, r.stderr
        roots.append(str(keep))
    out = tmp_path / "curve"
    r = _cli("budget", "--keep", ",".join(roots), "--out", str(out), "--preset", "smoke", "--set", "epochs=1")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out / "cells.csv")
    assert sorted(zip(df["budget"], df["variant"], df["iterations"])) == [
        (1.0, "lion", 6), (1.0, "supervised", 6), (2.0, "lion", 12), (2.0, "supervised", 12)]
    t = report.budget_table(df).set_index(["budget", "variant"])
    for b in (1.0, 2.0):
        at = df[df["budget"] == b].set_index("variant")
        assert t.loc[(f"{b:g}×", "lion"), "− supervised"] == f"{at.loc['lion', 'acc'] - at.loc['supervised', 'acc']:+.3f}"
        assert t.loc[(f"{b:g}×", "supervised"), "mask rate peak / last"] == "–"
        assert t.loc[(f"{b:g}×", "lion"), "open sets"] == f"{at.loc['lion', 'open_sets']:.0f}"
    assert r.stdout.strip() == (out / "table.md").read_text().strip() == report.budget_text(df)
    assert (out / "budget.png").stat().st_size > 10_000
    # a grid whose cells disagree on the length is not one point of the curve
    shutil.copytree(Path(roots[1]) / "lion", Path(roots[0]) / "lion-no-ld")
    with pytest.raises(ValueError, match=r"keep6: cells trained with different iters \[6, 12\]"):
        results.load_budgets([roots[0]], "smoke", {"epochs": 1})


def test_committed_budget_curve_is_what_the_results_budget_command_prints():
    """results/budget-curve/table.md is rebuilt by `python -m lion_kit results budget` from the
    committed grids (results/synthfer-cpu and its -2x/-4x/-8x siblings)."""
    text = report.budget_text(results.load_budgets([ROOT / r for r in results.CURVE]))
    assert (ROOT / "results" / "budget-curve" / "table.md").read_text().strip() == text


def test_cpu_long_is_the_cpu_preset_at_four_times_the_iterations_and_owns_the_4x_cells():
    """`--preset cpu-long` trains exactly what the 4x grid's cells were trained with, so
    `results status --preset cpu-long --keep results/synthfer-cpu-4x` reuses them (none stale) and
    the preset's claim (FixMatch above supervised at every seed) is read from those cells."""
    from dataclasses import asdict

    from lion_kit.config import resolve
    assert asdict(resolve("cpu-long")) == asdict(resolve("cpu", overrides={"iters": 600}))
    df = results.load(ROOT / "results" / "synthfer-cpu-4x", preset="cpu-long")
    assert len(df) and (df["status"] == "kept").all()
    acc = df.set_index(["variant", "seed"])["acc"]
    gain = acc["fixmatch"] - acc["supervised"]
    assert len(gain.dropna()) == 3 and (gain > 0).all()
    r = _cli("status", "--preset", "cpu-long", "--keep", str(ROOT / "results" / "synthfer-cpu-4x"),
             "--variants", "supervised,fixmatch", "--budgets", "400", "--split-seeds", "", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "6 cells: 6 reused, 0 trained, 0 failed, 0 missing" in r.stdout, r.stdout
