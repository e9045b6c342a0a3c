"""Every notebook runs headlessly under papermill on smoke parameters, and the JSON results it
writes are checked."""
import json
from pathlib import Path

import nbformat
import pytest

from lion_kit.demo import NOTEBOOKS, execute_notebook

SMOKE = dict(preset="smoke", epochs=3, iters=8)


def results(d):
    return json.loads((Path(d) / "results.json").read_text())


def test_notebooks_are_committed_clean_with_one_parameters_cell():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["00_lion_by_hand.ipynb", "01_train.ipynb", "02_candidate_evolution.ipynb", "03_negative_labels.ipynb", "04_ablations.ipynb"]
    for n in names:  # the .ipynb are the source: edit them in JupyterLab, clear outputs, commit
        nb = nbformat.read(NOTEBOOKS / n, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), n
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1, n


@pytest.fixture(scope="module")
def nb01(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb01")
    execute_notebook("01_train.ipynb", out, {"method": "lion", "n_labeled": 100, "out_dir": str(out), **SMOKE}, html=True)
    return out


def test_01_train(nb01):
    r = results(nb01)
    assert r["method"] == "lion" and r["epochs"] == 3
    # the notebook reports the run's own numbers: its summary and the last line of metrics.jsonl
    run = Path(r["run_dir"])
    summary = json.loads((run / "summary.json").read_text())
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert r["test_acc"] == summary["last_epoch"]["test_acc"] == last["test_acc"]
    assert r["best_acc"] == summary["best_epoch"]["test_acc"] >= r["test_acc"]
    assert r["loss_last"] == pytest.approx(last["loss"], rel=1e-9) and r["loss_last"] < r["loss_first"]  # via pandas
    nb = nbformat.read(nb01 / "01_train.ipynb", as_version=4)  # five figures: losses, accuracy, confusion, per class, faces
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures >= 5
    cross = r["cross_dataset"]  # evaluated on a differently rendered SynthFER test split
    [evaluated] = (run / "eval").glob("*.json")  # what `eval` wrote is what the notebook shows
    assert cross["faces"] == 400 and cross["acc"] == json.loads(evaluated.read_text())["acc"] and "seed=7" in cross["dataset"]
    assert (nb01 / "01_train.html").read_text().count("data:image/png;base64,") >= figures  # every figure embedded
    # another rendering of SynthFER: its own file, never the run's own test split's name
    assert [p.name.split("-")[0] for p in (Path(r["run_dir"]) / "eval").glob("*.json")] == ["synthfer_options"]


def test_00_lion_by_hand_needs_no_run_and_shows_every_rule(tmp_path):
    execute_notebook("00_lion_by_hand.ipynb", tmp_path, {"out_dir": str(tmp_path), "interactive": True}, html=False)
    r = results(tmp_path)
    assert r["ambiguous"] and r["candidates"] == {"fear": 0.1667, "sadness": 0.8333}  # opened from the probabilities
    # the mapped momentum closes the set in far fewer visits; the drift collapses it without a relabel
    assert r["visits_to_close"]["0.765"] * 10 < r["visits_to_close"]["0.99"]
    assert r["final_state"] == {"0.99": "closed", "0.765": "closed"}
    assert r["sure_face"]["state"] == "relabelled" and r["sure_face"]["visit"] == 1
    assert r["tau_paper_epoch_20"] == 1.0
    sizes = [len(s) for s in r["negatives_progressive"]]
    assert sizes == [1, 2, 3, 4] and len(r["negatives_instant"][0]) == 3  # one class per visit against all at once
    assert r["L_n"] == sorted(r["L_n"]) and r["exercises"] == 4
    assert not list(tmp_path.glob("run*"))  # trained nothing
    nb = nbformat.read(tmp_path / "00_lion_by_hand.ipynb", as_version=4)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) >= 4


def test_02_candidate_evolution_on_a_given_run(nb01, tmp_path):
    run_dir = results(nb01)["run_dir"]
    execute_notebook("02_candidate_evolution.ipynb", tmp_path, {"run_dir": run_dir, "out_dir": str(tmp_path), "interactive": True}, html=False)
    r = results(tmp_path)
    metrics = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert r["epochs"] == 3 and r["open_sets"] == [m["open_sets"] for m in metrics]  # the history agrees with the trainer's count
    assert r["open_sets"][0] == 0  # nothing opens before the relabel epoch
    assert len(r["samples"]) == 5
    nb = nbformat.read(tmp_path / "02_candidate_evolution.ipynb", as_version=4)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_03_negative_labels_trains_its_own_quick_run(tmp_path):
    execute_notebook("03_negative_labels.ipynb", tmp_path, {"out_dir": str(tmp_path), "n_labeled": 100, "interactive": False, **SMOKE}, html=False)
    r = results(tmp_path)
    assert len(r["mean_size"]) == 3 and r["mean_size"] == sorted(r["mean_size"])  # sets only grow
    metrics = [json.loads(line) for line in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert r["mean_size"] == pytest.approx([m["neg_mean_size"] for m in metrics])  # the history agrees with the trainer
    assert set(r["precision_per_class"]) == {"surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"}


def test_04_ablations_grid_and_reuse(tmp_path):
    params = {"variants": ["supervised", "lion", "lion-no-nl"], "budgets": [100], "seeds": [0, 1], "out_dir": str(tmp_path),
              "preset": "smoke", "epochs": 1, "iters": 3}
    execute_notebook("04_ablations.ipynb", tmp_path, params, html=False)
    r = results(tmp_path)
    assert r["runs"] == 6 and r["failed"] == 0 and r["missing"] == 0 and len(r["table"]) == 3
    # paired per-seed differences: lion - supervised and lion-no-nl - lion, over the two seeds
    assert [(p["difference"], p["seeds"]) for p in r["paired"]] == [("lion − supervised", 2), ("lion-no-nl − lion", 2)]
    assert (tmp_path / "paired.png").exists()
    assert all(row["runs"] == 2 and "±" in row["accuracy (last epoch)"] for row in r["table"])
    assert {row["variant"]: row["neg. precision"] for row in r["table"]}["lion-no-nl"] == "–"  # not run: no zero shown
    assert (tmp_path / "results_table.csv").exists() and (tmp_path / "accuracy.png").exists()
    # the budget curve is drawn from the committed grids alone (results/synthfer-cpu and its -Nx siblings)
    from lion_kit import report, results as kept_results
    curve = report.budget_table(kept_results.load_budgets())
    assert r["budget_curve"] == json.loads(curve.to_json(orient="records")) and r["budget_curve"][0]["budget"] == "1×"
    assert (tmp_path / "budget.png").stat().st_size > 10_000
    execute_notebook("04_ablations.ipynb", tmp_path, params, html=False)  # second time: every run reused
    import pandas as pd
    assert set(pd.read_csv(tmp_path / "runs.csv")["status"]) == {"reused"}
    # committed cells (results/) are drawn without training; cells not kept are reported missing
    from lion_kit.results import keep
    kept = tmp_path / "kept"
    for run in (tmp_path / "runs").glob("*/*"):
        keep(run, kept / run.parent.name / run.name)
    (kept / "supervised" / "n100_s1").rename(kept / "supervised" / ".gone")
    other = tmp_path / "other"
    execute_notebook("04_ablations.ipynb", other, {**params, "out_dir": str(other), "results_dir": str(kept),
                                                   "train_missing": False}, html=False)
    status = pd.read_csv(other / "runs.csv").set_index(["variant", "seed"])["status"]
    assert status[("supervised", 1)] == "missing" and (status.drop(("supervised", 1)) == "reused").all()
    assert results(other)["missing"] == 1
    assert not (other / "runs").exists()


def test_wrong_parameter_type_is_a_clear_error(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="notebook parameter n_labeled='400' has type str; expected int"):
        execute_notebook("01_train.ipynb", tmp_path, {"n_labeled": "400", "out_dir": str(tmp_path), **SMOKE}, html=False)


def test_demo_quick_produces_everything_it_promises(tmp_path):
    from lion_kit.demo import demo
    demo(tmp_path, quick=True)
    assert (tmp_path / "sample_grid.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "lion_run" / "summary.json").read_text())["method"] == "lion"
    for d, name in (("nb00", "00_lion_by_hand"), ("nb01", "01_train"), ("nb02", "02_candidate_evolution"), ("nb03", "03_negative_labels"), ("nb04", "04_ablations")):
        executed = nbformat.read(tmp_path / d / f"{name}.ipynb", as_version=4)
        figures = sum("image/png" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))
        assert figures >= 1 and (tmp_path / d / f"{name}.html").read_text().count("data:image/png;base64,") >= figures, name
        assert results(tmp_path / d)
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == [
        "01_accuracy.png", "02_trajectories.png", "03_negative_growth.png", "04_ablations.png"]


def _readme_papermill_commands():
    import shlex
    from papermill.cli import _resolve_type  # the type inference papermill's own -p applies
    import yaml
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    cmds = [line for line in readme.splitlines() if line.startswith(".venv/bin/papermill ")]
    for line in cmds:
        args, params = shlex.split(line)[1:], {}
        notebook, i = Path(args[0]).name, 2
        while i < len(args):
            if args[i] == "-p":
                params[args[i + 1]] = _resolve_type(args[i + 2]); i += 3
            elif args[i] == "-r":
                params[args[i + 1]] = args[i + 2]; i += 3
            elif args[i] == "-y":
                params.update(yaml.safe_load(args[i + 1])); i += 2
            else:
                raise AssertionError(f"README papermill command with an option this test does not know: {args[i]}")
        yield notebook, params
    assert len(cmds) == 5  # one per notebook


def test_readme_papermill_commands_pass_their_notebooks_parameter_checks():
    """Each README command's parameters, as papermill would inject them, pass the notebook's
    own check cell (without training anything); a list passed with -p is caught with a hint."""
    import ast
    for notebook, params in _readme_papermill_commands():
        cells = nbformat.read(NOTEBOOKS / notebook, as_version=4).cells
        defaults = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
        check = next(c.source for c in cells if "nb.check_params(" in c.source or "nb.lion_run(" in c.source)
        if "nb.lion_run(" in check:  # 02 and 03 check their parameters inside nb.lion_run, which then trains
            check = "from lion_kit import nb\nnb.check_params(nb.RUN_PARAMS, globals())"
        tree = ast.parse("\n".join(l for l in check.splitlines() if not l.lstrip().startswith("%")))
        keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) or "check_params" in ast.unparse(n)]
        run_check = compile(ast.Module(keep, []), f"{notebook}: check cell", "exec")
        ns = {}
        exec(defaults, ns)
        assert set(params) <= set(ns), f"{notebook}: unknown parameters {set(params) - set(ns)}"
        ns.update(params)
        exec(run_check, ns)
        if notebook == "04_ablations.ipynb":
            ns["budgets"] = "[100, 400]"
            with pytest.raises(TypeError, match=r"budgets='\[100, 400\]' has type str; expected list .*-y"):
                exec(run_check, ns)
